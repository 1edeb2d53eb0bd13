/* HKDF-Expand-Label and traffic key/iv derivation against RFC 8448 section 3
 * (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256); HKDF-Expand against
 * RFC 5869 appendix A and, for SHA-384 (no published vector), against
 * OpenSSL's own HKDF. */
#include <check.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "testutil.h"

#include "hex.h"
#include "tls13_keys.h"

static void check_keys(const char *secret_hex, const char *key_hex, const char *iv_hex) {
  uint8_t secret[32], want_key[16], want_iv[12], key[KH_AEAD_MAX_KEY], iv[KH_AEAD_IV_LEN];
  size_t key_len;
  kh_error err;
  ck_assert_uint_eq(kh_unhex(secret_hex, secret, sizeof(secret)), 32);
  ck_assert_uint_eq(kh_unhex(key_hex, want_key, sizeof(want_key)), 16);
  ck_assert_uint_eq(kh_unhex(iv_hex, want_iv, sizeof(want_iv)), 12);
  ck_assert_msg(
      kh_tls13_traffic_keys(KH_SUITE_AES_128_GCM_SHA256, secret, 32, key, &key_len, iv, &err), "%s",
      err.msg);
  ck_assert_uint_eq(key_len, 16);
  ck_assert_mem_eq(key, want_key, 16);
  ck_assert_mem_eq(iv, want_iv, 12);
}

START_TEST(test_rfc8448_server_handshake_keys) {
  check_keys("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38",
             "3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30");
}
END_TEST

START_TEST(test_rfc8448_client_handshake_keys) {
  check_keys("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21",
             "dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f");
}
END_TEST

START_TEST(test_rfc8448_server_application_keys) {
  check_keys("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643",
             "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984");
}
END_TEST

START_TEST(test_key_lengths_per_suite) {
  uint8_t secret[48] = {1}, key[KH_AEAD_MAX_KEY], iv[KH_AEAD_IV_LEN];
  size_t key_len;
  kh_error err;
  ck_assert(
      kh_tls13_traffic_keys(KH_SUITE_AES_256_GCM_SHA384, secret, 48, key, &key_len, iv, &err));
  ck_assert_uint_eq(key_len, 32);
  ck_assert(kh_tls13_traffic_keys(KH_SUITE_CHACHA20_POLY1305_SHA256, secret, 32, key, &key_len, iv,
                                  &err));
  ck_assert_uint_eq(key_len, 32);
}
END_TEST

START_TEST(test_update_secret_changes_and_is_deterministic) {
  uint8_t a[32], b[32], orig[32];
  kh_error err;
  for (int i = 0; i < 32; i++) orig[i] = (uint8_t)i;
  memcpy(a, orig, 32);
  memcpy(b, orig, 32);
  ck_assert(kh_tls13_update_secret(KH_SUITE_AES_128_GCM_SHA256, a, 32, &err));
  ck_assert(kh_tls13_update_secret(KH_SUITE_AES_128_GCM_SHA256, b, 32, &err));
  ck_assert_mem_eq(a, b, 32);
  ck_assert(memcmp(a, orig, 32) != 0);
  /* "traffic upd" is HKDF-Expand-Label(secret, "traffic upd", "", Hash.length). */
  uint8_t c[32];
  ck_assert(kh_hkdf_expand_label(KH_SUITE_AES_128_GCM_SHA256, orig, 32, "traffic upd", NULL, 0, c,
                                 32, &err));
  ck_assert_mem_eq(a, c, 32);
}
END_TEST

START_TEST(test_label_too_long_rejected) {
  uint8_t s[32] = {0}, out[16];
  char label[300];
  memset(label, 'a', sizeof(label) - 1);
  label[sizeof(label) - 1] = '\0';
  kh_error err;
  ck_assert(
      !kh_hkdf_expand_label(KH_SUITE_AES_128_GCM_SHA256, s, 32, label, NULL, 0, out, 16, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
}
END_TEST

/* expand_vector checks kh_hkdf_expand (SHA-256) against an RFC 5869 case. */
static void expand_vector(const char *prk_hex, const char *info_hex, const char *okm_hex) {
  uint8_t prk[32], info[80], want[82], got[82];
  size_t info_len = kh_unhex(info_hex, info, sizeof(info));
  size_t len = kh_unhex(okm_hex, want, sizeof(want));
  ck_assert_uint_eq(kh_unhex(prk_hex, prk, sizeof(prk)), 32);
  ck_assert(info_len != (size_t)-1 && len != (size_t)-1);
  kh_error err;
  ck_assert_msg(
      kh_hkdf_expand(KH_SUITE_AES_128_GCM_SHA256, prk, 32, info, info_len, got, len, &err), "%s",
      err.msg);
  ck_assert_mem_eq(got, want, len);
}

START_TEST(test_rfc5869_a1_two_blocks) {
  expand_vector("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
                "f0f1f2f3f4f5f6f7f8f9",
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                "34007208d5b887185865");
}
END_TEST

START_TEST(test_rfc5869_a2_three_blocks) {
  expand_vector("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
                "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
                "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
                "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
                "cc30c58179ec3e87c14c01d5c1f3434f1d87");
}
END_TEST

/* OpenSSL's HKDF in expand-only mode, the reference for SHA-384. */
static void openssl_expand(const char *md, const uint8_t *prk, size_t prk_len, const uint8_t *info,
                           size_t info_len, uint8_t *out, size_t len) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *k = EVP_KDF_CTX_new(kdf);
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)prk, prk_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
      OSSL_PARAM_construct_end(),
  };
  ck_assert_int_eq(EVP_KDF_derive(k, out, len, params), 1);
  EVP_KDF_CTX_free(k);
  EVP_KDF_free(kdf);
}

START_TEST(test_sha384_matches_openssl_hkdf) {
  uint8_t prk[48], info[40], got[300], want[300];
  for (size_t i = 0; i < sizeof(prk); i++) prk[i] = (uint8_t)(3 * i + 1);
  for (size_t i = 0; i < sizeof(info); i++) info[i] = (uint8_t)(7 * i);
  kh_error err;
  for (size_t len = 1; len <= sizeof(got); len += 7) {
    ck_assert_msg(kh_hkdf_expand(KH_SUITE_AES_256_GCM_SHA384, prk, sizeof(prk), info, sizeof(info),
                                 got, len, &err),
                  "%s", err.msg);
    openssl_expand("SHA384", prk, sizeof(prk), info, sizeof(info), want, len);
    ck_assert_mem_eq(got, want, len);
  }
}
END_TEST

START_TEST(test_expand_output_limit) {
  static uint8_t out[255 * 32 + 1];
  uint8_t prk[32] = {1};
  kh_error err;
  ck_assert(kh_hkdf_expand(KH_SUITE_AES_128_GCM_SHA256, prk, 32, NULL, 0, out, 255 * 32, &err));
  ck_assert(!kh_hkdf_expand(KH_SUITE_AES_128_GCM_SHA256, prk, 32, NULL, 0, out, sizeof(out), &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tls13_keys");
  TCase *tc = tcase_create("rfc8448");
  tcase_add_test(tc, test_rfc8448_server_handshake_keys);
  tcase_add_test(tc, test_rfc8448_client_handshake_keys);
  tcase_add_test(tc, test_rfc8448_server_application_keys);
  tcase_add_test(tc, test_key_lengths_per_suite);
  tcase_add_test(tc, test_update_secret_changes_and_is_deterministic);
  tcase_add_test(tc, test_label_too_long_rejected);
  suite_add_tcase(s, tc);
  TCase *hk = tcase_create("hkdf_expand");
  tcase_add_test(hk, test_rfc5869_a1_two_blocks);
  tcase_add_test(hk, test_rfc5869_a2_three_blocks);
  tcase_add_test(hk, test_sha384_matches_openssl_hkdf);
  tcase_add_test(hk, test_expand_output_limit);
  suite_add_tcase(s, hk);
  return kh_test_run(s);
}

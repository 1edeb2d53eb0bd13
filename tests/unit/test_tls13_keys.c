/* HKDF-Expand-Label and traffic key/iv derivation against RFC 8448 section 3
 * (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256). */
#include <check.h>

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
  return kh_test_run(s);
}

/* sidecar/keys/pkcs11_sig: the mechanism for each TLS scheme, what C_Sign
 * signs (the digest, or DigestInfo || digest for PKCS#1), a token's r || s
 * ECDSA answer turned into DER that BoringSSL verifies (P-256 and P-384),
 * answers of the wrong length or with r = 0 refused, and CKA_EC_PARAMS
 * read as P-256 or P-384 only. */
#include <check.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <p11-kit/pkcs11.h>

#include "pkcs11_sig.h"
#include "testutil.h"

START_TEST(test_mechanisms) {
  kh_p11_mech m;
  kh_error err = {0};
  ck_assert(kh_p11_mech_for(KH_KEY_ECDSA_P256, SSL_SIGN_ECDSA_SECP256R1_SHA256, &m, &err));
  ck_assert_uint_eq(m.mechanism, CKM_ECDSA);
  ck_assert(m.ecdsa && m.prehash && !m.pss);
  ck_assert(kh_p11_mech_for(KH_KEY_RSA, SSL_SIGN_RSA_PSS_RSAE_SHA384, &m, &err));
  ck_assert_uint_eq(m.mechanism, CKM_RSA_PKCS_PSS);
  ck_assert(m.pss && m.prehash && !m.ecdsa);
  ck_assert_uint_eq(m.pss_hash, CKM_SHA384);
  ck_assert_uint_eq(m.pss_mgf, CKG_MGF1_SHA384);
  ck_assert_uint_eq(m.pss_salt, 48);
  ck_assert(kh_p11_mech_for(KH_KEY_RSA, SSL_SIGN_RSA_PKCS1_SHA256, &m, &err));
  ck_assert_uint_eq(m.mechanism, CKM_RSA_PKCS);
  ck_assert(!m.pss);
  ck_assert(kh_p11_mech_for(KH_KEY_ED25519, SSL_SIGN_ED25519, &m, &err));
  ck_assert_uint_eq(m.mechanism, CKM_EDDSA);
  ck_assert(!m.prehash);
  ck_assert(!kh_p11_mech_for(KH_KEY_ECDSA_P256, SSL_SIGN_RSA_PSS_RSAE_SHA256, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(!kh_p11_mech_for(KH_KEY_ECDSA_P256, SSL_SIGN_ECDSA_SECP384R1_SHA384, &m, &err));
}
END_TEST

START_TEST(test_sign_input) {
  static const uint8_t prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                   0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
  uint8_t digest[64], out[KH_P11_MAX_INPUT];
  size_t len = 0;
  kh_error err = {0};
  RAND_bytes(digest, sizeof(digest));
  ck_assert(kh_p11_sign_input(SSL_SIGN_RSA_PKCS1_SHA256, digest, 32, out, &len, sizeof(out), &err));
  ck_assert_uint_eq(len, sizeof(prefix) + 32);
  ck_assert_mem_eq(out, prefix, sizeof(prefix));
  ck_assert_mem_eq(out + sizeof(prefix), digest, 32);
  ck_assert(kh_p11_sign_input(SSL_SIGN_RSA_PKCS1_SHA512, digest, 64, out, &len, sizeof(out), &err));
  ck_assert_uint_eq(len, 19 + 64);
  ck_assert(
      kh_p11_sign_input(SSL_SIGN_RSA_PSS_RSAE_SHA256, digest, 32, out, &len, sizeof(out), &err));
  ck_assert_uint_eq(len, 32);
  ck_assert_mem_eq(out, digest, 32);
  ck_assert(
      kh_p11_sign_input(SSL_SIGN_ECDSA_SECP384R1_SHA384, digest, 48, out, &len, sizeof(out), &err));
  ck_assert_uint_eq(len, 48);
  /* A digest of the wrong length, Ed25519, no room. */
  ck_assert(
      !kh_p11_sign_input(SSL_SIGN_RSA_PSS_RSAE_SHA256, digest, 31, out, &len, sizeof(out), &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(!kh_p11_sign_input(SSL_SIGN_ED25519, digest, 32, out, &len, sizeof(out), &err));
  ck_assert(!kh_p11_sign_input(SSL_SIGN_RSA_PKCS1_SHA256, digest, 32, out, &len, 40, &err));
}
END_TEST

/* raw_round_trip: a BoringSSL signature as a token gives it (r || s),
 * converted back to DER by kh_p11_ecdsa_der, verifies. */
static void raw_round_trip(int nid, kh_key_type t, size_t half) {
  EC_KEY *key = EC_KEY_new_by_curve_name(nid);
  ck_assert(key != NULL && EC_KEY_generate_key(key));
  uint8_t digest[48], der[160], raw[96], back[160];
  unsigned der_len = sizeof(der);
  size_t back_len = 0;
  kh_error err = {0};
  RAND_bytes(digest, sizeof(digest));
  ck_assert(ECDSA_sign(0, digest, half, der, &der_len, key));
  ECDSA_SIG *sig = ECDSA_SIG_from_bytes(der, der_len);
  ck_assert(sig != NULL);
  ck_assert(BN_bn2bin_padded(raw, half, sig->r) && BN_bn2bin_padded(raw + half, half, sig->s));
  ECDSA_SIG_free(sig);
  ck_assert_msg(kh_p11_ecdsa_der(t, raw, 2 * half, back, &back_len, sizeof(back), &err), "%s",
                err.msg);
  ck_assert_int_eq(ECDSA_verify(0, digest, half, back, back_len, key), 1);
  /* Wrong lengths and no room. */
  ck_assert(!kh_p11_ecdsa_der(t, raw, 2 * half - 1, back, &back_len, sizeof(back), &err));
  ck_assert_int_eq(err.code, KH_ERR_INTERNAL);
  ck_assert(!kh_p11_ecdsa_der(t, raw, 2 * half, back, &back_len, 8, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  memset(raw, 0, half); /* r = 0 is no signature */
  ck_assert(!kh_p11_ecdsa_der(t, raw, 2 * half, back, &back_len, sizeof(back), &err));
  ck_assert_int_eq(err.code, KH_ERR_INTERNAL);
  EC_KEY_free(key);
}

START_TEST(test_ecdsa_der) {
  raw_round_trip(NID_X9_62_prime256v1, KH_KEY_ECDSA_P256, 32);
  raw_round_trip(NID_secp384r1, KH_KEY_ECDSA_P384, 48);
  uint8_t raw[64] = {1};
  uint8_t out[160];
  size_t len;
  kh_error err = {0};
  ck_assert(!kh_p11_ecdsa_der(KH_KEY_RSA, raw, sizeof(raw), out, &len, sizeof(out), &err));
}
END_TEST

START_TEST(test_ec_params) {
  static const uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  static const uint8_t p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
  static const uint8_t p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
  static const uint8_t trailing[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x00};
  kh_key_type t;
  kh_error err = {0};
  ck_assert(kh_p11_ec_type(p256, sizeof(p256), &t, &err));
  ck_assert_int_eq(t, KH_KEY_ECDSA_P256);
  ck_assert(kh_p11_ec_type(p384, sizeof(p384), &t, &err));
  ck_assert_int_eq(t, KH_KEY_ECDSA_P384);
  ck_assert(!kh_p11_ec_type(p521, sizeof(p521), &t, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(!kh_p11_ec_type(trailing, sizeof(trailing), &t, &err));
  ck_assert(!kh_p11_ec_type(p256, 3, &t, &err));
  ck_assert(!kh_p11_ec_type(NULL, 0, &t, &err));
}
END_TEST

int main(void) {
  Suite *s = suite_create("pkcs11_sig");
  TCase *tc = tcase_create("pkcs11_sig");
  tcase_add_test(tc, test_mechanisms);
  tcase_add_test(tc, test_sign_input);
  tcase_add_test(tc, test_ecdsa_der);
  tcase_add_test(tc, test_ec_params);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* sidecar/keyops/dpop: a proof is three base64url parts whose header and
 * claims are the JSON the RFC asks for and whose signature verifies under
 * the identity's certificate key (ECDSA r||s converted back to DER here);
 * the thumbprint is SHA-256 of the canonical JWK; bad inputs and key types
 * without a DPoP key are refused before anything is signed. */
#include <check.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "dpop.h"
#include "identity_fixture.h"
#include "testutil.h"

static kh_identity *g_p256, *g_rsa;

static void setup(void) {
  kh_fixture_pki("rsa");
  g_p256 = kh_fixture_identity("client");
  g_rsa = kh_fixture_identity("rsa");
}

static void teardown(void) {
  kh_identity_unref(g_p256);
  kh_identity_unref(g_rsa);
  kh_test_rmtree(kh_fixture_dir);
}

/* unb64url: |in|[0..n) decoded into |out|; its length. */
static size_t unb64url(const char *in, size_t n, uint8_t *out, size_t cap) {
  char tmp[8192];
  ck_assert_uint_lt(n + 4, sizeof(tmp));
  for (size_t i = 0; i < n; i++) tmp[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
  while (n % 4) tmp[n++] = '=';
  size_t len;
  ck_assert(EVP_DecodeBase64(out, &len, cap, (const uint8_t *)tmp, n));
  return len;
}

START_TEST(test_es256_proof_verifies) {
  kh_buf out = KH_BUF_INIT;
  kh_error err;
  uint8_t ath[32] = {1, 2, 3};
  ck_assert_msg(kh_dpop_proof(g_p256, NULL, "POST", "https://as.example.org/token", "n1", ath, 32,
                              1700000000, &out, &err),
                "%s", err.msg);
  const char *jws = (const char *)out.data;
  const char *d1 = strchr(jws, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  ck_assert_ptr_nonnull(d2);
  uint8_t hdr[1024], claims[4096], sig[128];
  size_t hl = unb64url(jws, (size_t)(d1 - jws), hdr, sizeof(hdr));
  size_t cl = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), claims, sizeof(claims));
  size_t sl = unb64url(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
  hdr[hl] = claims[cl] = '\0';
  ck_assert_ptr_nonnull(strstr((char *)hdr,
                               "{\"typ\":\"dpop+jwt\",\"alg\":\"ES256\",\"jwk\":{\"crv\":"
                               "\"P-256\",\"kty\":\"EC\",\"x\":\""));
  ck_assert_ptr_null(strstr((char *)hdr, "\"d\""));
  ck_assert_ptr_nonnull(strstr((char *)claims,
                               "\"htm\":\"POST\",\"htu\":\"https://as.example.org/"
                               "token\",\"iat\":1700000000,\"nonce\":\"n1\",\"ath\":"
                               "\"AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"));
  ck_assert_uint_eq(sl, 64);
  /* r || s back to DER, verified with the certificate's key. */
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
  ck_assert(ECDSA_SIG_set0(es, r, s));
  uint8_t *der;
  size_t der_len;
  ck_assert(ECDSA_SIG_to_bytes(&der, &der_len, es));
  EVP_PKEY *pub = X509_get_pubkey(kh_identity_leaf(g_p256));
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  ck_assert(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub));
  ck_assert_int_eq(EVP_DigestVerify(ctx, der, der_len, (const uint8_t *)jws, (size_t)(d2 - jws)),
                   1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pub);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  char jkt[64];
  ck_assert(kh_dpop_thumbprint(g_p256, "ES256", jkt, sizeof(jkt), &err));
  ck_assert_uint_eq(strlen(jkt), 43);
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_refusals) {
  kh_buf out = KH_BUF_INIT;
  kh_error err;
  const char *u = "https://a.example/t";
  ck_assert(!kh_dpop_proof(g_p256, NULL, "post", u, NULL, NULL, 0, 1, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(!kh_dpop_proof(g_p256, NULL, "GET", "https://a.example/t#frag", NULL, NULL, 0, 1, &out,
                           &err));
  ck_assert(!kh_dpop_proof(g_p256, NULL, "GET", "ftp://a.example/t", NULL, NULL, 0, 1, &out, &err));
  ck_assert(!kh_dpop_proof(g_p256, NULL, "GET", u, "bad\"nonce", NULL, 0, 1, &out, &err));
  uint8_t ath[16] = {0};
  ck_assert(!kh_dpop_proof(g_p256, NULL, "GET", u, NULL, ath, sizeof(ath), 1, &out, &err));
  ck_assert_str_eq(err.msg, "ath must be the 32-byte SHA-256 of the token");
  ck_assert(!kh_dpop_proof(g_p256, "EdDSA", "GET", u, NULL, NULL, 0, 1, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(!kh_dpop_proof(g_rsa, "EdDSA", "GET", u, NULL, NULL, 0, 1, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_uint_eq(out.len, 0); /* nothing written on a refusal */
  /* The RSA identity signs ES256 with its own dpop.key. */
  ck_assert_ptr_null(kh_identity_dpop_key(g_p256));
  ck_assert_ptr_nonnull(kh_identity_dpop_key(g_rsa));
  ck_assert_msg(kh_dpop_proof(g_rsa, NULL, "GET", u, NULL, NULL, 0, 1, &out, &err), "%s", err.msg);
  char a[64], b[64];
  ck_assert(kh_dpop_thumbprint(g_rsa, NULL, a, sizeof(a), &err));
  ck_assert(kh_dpop_thumbprint(g_p256, NULL, b, sizeof(b), &err));
  ck_assert_str_ne(a, b);
  kh_buf_free(&out);
}
END_TEST

int main(void) {
  Suite *su = suite_create("dpop");
  TCase *tc = tcase_create("dpop");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_es256_proof_verifies);
  tcase_add_test(tc, test_refusals);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

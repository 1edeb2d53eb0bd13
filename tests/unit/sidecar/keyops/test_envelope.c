/* sidecar/keyops/envelope: envelopes built here with BoringSSL's RSA
 * public-key encryption (OAEP-SHA256 and PKCS#1 v1.5) and AES-256-GCM open
 * to the message; a PKCS#1 v1.5 block with a wrong padding or a wrong key
 * length, an altered wrapped key, tag or header, and a truncated envelope
 * all fail with the one error; a non-RSA identity cannot open. */
#include <check.h>
#include <string.h>

#include <openssl/aead.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "envelope.h"
#include "identity_fixture.h"
#include "testutil.h"

static kh_identity *g_rsa, *g_p256;
static const uint8_t k_reject[KH_ENVELOPE_REJECT_KEY_LEN] = {7};

static void setup(void) {
  kh_fixture_pki("rsa");
  g_rsa = kh_fixture_identity("rsa");
  g_p256 = kh_fixture_identity("client");
}

static void teardown(void) {
  kh_identity_unref(g_rsa);
  kh_identity_unref(g_p256);
  kh_test_rmtree(kh_fixture_dir);
}

/* build: an envelope of |msg| in |out| whose key (|key_len| bytes) is
 * wrapped with |padding| (or raw |raw_block| for RSA_NO_PADDING); its length. */
static size_t build(int mode, int padding, const uint8_t *raw_block, size_t key_len,
                    const char *msg, uint8_t *out) {
  EVP_PKEY *pub = X509_get_pubkey(kh_identity_leaf(g_rsa));
  RSA *rsa = EVP_PKEY_get1_RSA(pub);
  uint8_t key[64];
  RAND_bytes(key, sizeof(key));
  size_t wl = 0;
  uint8_t *w = out + 7;
  if (padding == RSA_PKCS1_OAEP_PADDING) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    wl = 512;
    ck_assert(EVP_PKEY_encrypt_init(ctx) &&
              EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) &&
              EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) &&
              EVP_PKEY_encrypt(ctx, w, &wl, key, key_len));
    EVP_PKEY_CTX_free(ctx);
  } else {
    ck_assert(RSA_encrypt(rsa, &wl, w, 512, raw_block ? raw_block : key,
                          raw_block ? RSA_size(rsa) : key_len, padding));
  }
  memcpy(out, KH_ENVELOPE_MAGIC, 4);
  out[4] = (uint8_t)mode, out[5] = (uint8_t)(wl >> 8), out[6] = (uint8_t)wl;
  uint8_t *iv = w + wl, *ct = iv + 12;
  RAND_bytes(iv, 12);
  EVP_AEAD_CTX a;
  size_t cl;
  ck_assert(EVP_AEAD_CTX_init(&a, EVP_aead_aes_256_gcm(), key, 32, 16, NULL));
  ck_assert(EVP_AEAD_CTX_seal(&a, ct, &cl, strlen(msg) + 16, iv, 12, (const uint8_t *)msg,
                              strlen(msg), out, 7));
  EVP_AEAD_CTX_cleanup(&a);
  RSA_free(rsa);
  EVP_PKEY_free(pub);
  return 7 + wl + 12 + cl;
}

static const char *open_err(const uint8_t *env, size_t len, const kh_identity *id, kh_error *err) {
  kh_buf pt = KH_BUF_INIT;
  int ok = kh_envelope_open(id, env, len, k_reject, &pt, err);
  kh_buf_free(&pt);
  return ok ? NULL : err->msg;
}

START_TEST(test_both_modes_open) {
  uint8_t env[1024];
  const char *msg = "the quarterly numbers";
  for (int i = 0; i < 2; i++) {
    size_t n = i == 0 ? build(KH_ENVELOPE_OAEP, RSA_PKCS1_OAEP_PADDING, NULL, 32, msg, env)
                      : build(KH_ENVELOPE_PKCS1V15, RSA_PKCS1_PADDING, NULL, 32, msg, env);
    kh_buf pt = KH_BUF_INIT;
    kh_error err;
    ck_assert_msg(kh_envelope_open(g_rsa, env, n, k_reject, &pt, &err), "%s", err.msg);
    ck_assert_uint_eq(pt.len, strlen(msg));
    ck_assert_mem_eq(pt.data, msg, pt.len);
    kh_buf_free(&pt);
  }
}
END_TEST

START_TEST(test_one_error_for_every_fault) {
  uint8_t env[1024], block[256];
  kh_error err;
  char first[KH_ERROR_MSG_MAX];
  /* A PKCS#1 v1.5 block whose padding is wrong (0x00 0x01 ...). */
  memset(block, 0xff, sizeof(block));
  block[0] = 0, block[1] = 1, block[sizeof(block) - 33] = 0;
  size_t n = build(KH_ENVELOPE_PKCS1V15, RSA_NO_PADDING, block, 32, "x", env);
  snprintf(first, sizeof(first), "%s", open_err(env, n, g_rsa, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(first, "does not open with spiffe://example.org/rsa's key"));
  /* The right padding around a 31-byte key. */
  n = build(KH_ENVELOPE_PKCS1V15, RSA_PKCS1_PADDING, NULL, 31, "x", env);
  ck_assert_str_eq(open_err(env, n, g_rsa, &err), first);
  /* Altered: the wrapped key, the tag, the header's mode byte. */
  size_t good = build(KH_ENVELOPE_OAEP, RSA_PKCS1_OAEP_PADDING, NULL, 32, "x", env);
  env[20] ^= 1;
  ck_assert_str_eq(open_err(env, good, g_rsa, &err), first);
  good = build(KH_ENVELOPE_PKCS1V15, RSA_PKCS1_PADDING, NULL, 32, "x", env);
  env[good - 1] ^= 1;
  ck_assert_str_eq(open_err(env, good, g_rsa, &err), first);
  env[good - 1] ^= 1;
  env[4] = KH_ENVELOPE_OAEP; /* a v1.5 key presented as OAEP */
  ck_assert_str_eq(open_err(env, good, g_rsa, &err), first);
  ck_assert_str_eq(open_err(env, 40, g_rsa, &err), first); /* truncated */
  ck_assert_str_eq(open_err((const uint8_t *)"KHE9....", 8, g_rsa, &err),
                   "not an envelope (no KHE1 header)");
  good = build(KH_ENVELOPE_OAEP, RSA_PKCS1_OAEP_PADDING, NULL, 32, "x", env);
  ck_assert_ptr_nonnull(open_err(env, good, g_p256, &err)); /* a P-256 identity */
}
END_TEST

int main(void) {
  Suite *su = suite_create("envelope");
  TCase *tc = tcase_create("envelope");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_both_modes_open);
  tcase_add_test(tc, test_one_error_for_every_fault);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

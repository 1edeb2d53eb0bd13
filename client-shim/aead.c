/* aead.c: AES-GCM and ChaCha20-Poly1305 with a counter nonce (aead.h) on
 * OpenSSL 3 libcrypto EVP. */
#include "aead.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "kh_secret.h"

/* The ciphers are fetched once (OpenSSL 3 otherwise resolves the name again
 * on every EVP_CipherInit_ex with a built-in EVP_CIPHER). */
enum { CIPHER_AES_128_GCM, CIPHER_AES_256_GCM, CIPHER_CHACHA20_POLY1305, CIPHER_COUNT };
static EVP_CIPHER *g_cipher[CIPHER_COUNT];
static pthread_once_t g_cipher_once = PTHREAD_ONCE_INIT;

static void fetch_ciphers(void) {
  static const char *const names[CIPHER_COUNT] = {"AES-128-GCM", "AES-256-GCM",
                                                  "ChaCha20-Poly1305"};
  for (int i = 0; i < CIPHER_COUNT; i++) g_cipher[i] = EVP_CIPHER_fetch(NULL, names[i], NULL);
}

int kh_aead_init(kh_aead *a, kh_aead_alg alg, const uint8_t *key, size_t key_len,
                 const uint8_t iv[KH_AEAD_IV_LEN], int encrypt, kh_error *err) {
  int which = -1;
  if (alg == KH_AEAD_AES_GCM && key_len == 16) which = CIPHER_AES_128_GCM;
  if (alg == KH_AEAD_AES_GCM && key_len == 32) which = CIPHER_AES_256_GCM;
  if (alg == KH_AEAD_CHACHA20_POLY1305 && key_len == 32) which = CIPHER_CHACHA20_POLY1305;
  if (which < 0) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unsupported AEAD key size");
  pthread_once(&g_cipher_once, fetch_ciphers);
  const EVP_CIPHER *cipher = g_cipher[which];
  if (cipher == NULL) return kh_err(err, KH_ERR_INTERNAL, "AEAD unavailable in libcrypto");
  a->ctx = EVP_CIPHER_CTX_new();
  a->encrypt = encrypt;
  memcpy(a->iv, iv, KH_AEAD_IV_LEN);
  if (a->ctx == NULL || EVP_CipherInit_ex(a->ctx, cipher, NULL, NULL, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, KH_AEAD_IV_LEN, NULL) != 1 ||
      EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, encrypt) != 1) {
    kh_aead_cleanup(a);
    return kh_err(err, KH_ERR_INTERNAL, "AEAD initialisation failed");
  }
  return 1;
}

void kh_aead_cleanup(kh_aead *a) {
  EVP_CIPHER_CTX_free(a->ctx); /* clears the key schedule */
  a->ctx = NULL;
  kh_wipe(a->iv, sizeof(a->iv));
}

/* nonce = iv XOR counter, the counter big-endian in the last 8 bytes. */
static void make_nonce(const kh_aead *a, uint64_t counter, uint8_t nonce[KH_AEAD_IV_LEN]) {
  memcpy(nonce, a->iv, KH_AEAD_IV_LEN);
  for (int i = 0; i < 8; i++) nonce[KH_AEAD_IV_LEN - 1 - i] ^= (uint8_t)(counter >> (8 * i));
}

int kh_aead_seal_tail(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                      const uint8_t *in, size_t len, const uint8_t *tail, size_t tail_len,
                      uint8_t *out, uint8_t tag[KH_AEAD_TAG_LEN]) {
  int n;
  uint8_t nonce[KH_AEAD_IV_LEN];
  if (a->ctx == NULL || !a->encrypt || len > INT32_MAX || tail_len > INT32_MAX ||
      aad_len > INT32_MAX)
    return 0;
  make_nonce(a, counter, nonce);
  /* GCM and ChaCha20-Poly1305 in EVP take the message in any number of
   * updates, each output as long as its input. */
  return EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 1) == 1 &&
         (aad_len == 0 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, (int)aad_len) == 1) &&
         (len == 0 || EVP_CipherUpdate(a->ctx, out, &n, in, (int)len) == 1) &&
         (tail_len == 0 || EVP_CipherUpdate(a->ctx, out + len, &n, tail, (int)tail_len) == 1) &&
         EVP_CipherFinal_ex(a->ctx, out + len + tail_len, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, KH_AEAD_TAG_LEN, tag) == 1;
}

int kh_aead_seal(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                 const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[KH_AEAD_TAG_LEN]) {
  return kh_aead_seal_tail(a, counter, aad, aad_len, in, len, NULL, 0, out, tag);
}

int kh_aead_open(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                 const uint8_t *in, size_t len, const uint8_t tag[KH_AEAD_TAG_LEN], uint8_t *out) {
  int n;
  uint8_t nonce[KH_AEAD_IV_LEN];
  if (a->ctx == NULL || a->encrypt || len > INT32_MAX || aad_len > INT32_MAX) return 0;
  make_nonce(a, counter, nonce);
  int ok = EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, 0) == 1 &&
           (aad_len == 0 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, (int)aad_len) == 1) &&
           (len == 0 || EVP_CipherUpdate(a->ctx, out, &n, in, (int)len) == 1) &&
           EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, KH_AEAD_TAG_LEN, (void *)tag) == 1 &&
           EVP_CipherFinal_ex(a->ctx, out + len, &n) == 1;
  if (!ok) kh_wipe(out, len);
  return ok;
}

/* envelope.c: see envelope.h. */
#include "envelope.h"

#include <string.h>

#include <openssl/aead.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "kh_secret.h"

#define HEADER 7
#define IV_LEN 12
#define TAG_LEN 16
#define KEY_LEN 32
#define MAX_WRAPPED 1024 /* RSA-8192 */

int kh_envelope_mode(const uint8_t *in, size_t len) {
  if (len < HEADER || memcmp(in, KH_ENVELOPE_MAGIC, 4) != 0) return 0;
  return in[4] == KH_ENVELOPE_OAEP || in[4] == KH_ENVELOPE_PKCS1V15 ? in[4] : 0;
}

/* ct_zero: all ones if |a| is 0, else 0, without a branch. */
static size_t ct_zero(size_t a) {
  return (size_t)0 - ((~a & (a - 1)) >> (sizeof(size_t) * 8 - 1));
}

/* pkcs1_key: the 32-byte key of a PKCS#1 v1.5 block |em| (|k| bytes), or,
 * if the padding is wrong, |fallback|: chosen with masks, in time that does
 * not depend on where the padding fails. */
static void pkcs1_key(const uint8_t *em, size_t k, const uint8_t *fallback, uint8_t *key) {
  size_t good = ct_zero(em[0]) & ct_zero(em[1] ^ 2), zero_at = 0, looking = ~(size_t)0;
  for (size_t i = 2; i < k; i++) {
    size_t is_zero = ct_zero(em[i]);
    zero_at |= i & looking & is_zero;
    looking &= ~is_zero;
  }
  good &= ~looking;                                                    /* a separator was found */
  good &= ~((size_t)0 - ((zero_at - 10) >> (sizeof(size_t) * 8 - 1))); /* >= 8 padding bytes */
  good &= ct_zero((k - zero_at - 1) ^ KEY_LEN); /* the message is the 32-byte key */
  for (size_t i = 0; i < KEY_LEN; i++)
    key[i] = (uint8_t)((em[k - KEY_LEN + i] & good) | (fallback[i] & ~good));
}

static int no(const kh_identity *id, kh_error *err) {
  return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                "the envelope does not open with %s's key: altered, truncated, or for another key",
                kh_identity_name(id));
}

int kh_envelope_open(const kh_identity *id, const uint8_t *in, size_t len,
                     const uint8_t *reject_key, kh_buf *pt, kh_error *err) {
  int mode = kh_envelope_mode(in, len);
  if (mode == 0) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "not an envelope (no KHE1 header)");
  size_t wl = (size_t)in[5] << 8 | in[6];
  if (wl == 0 || wl > MAX_WRAPPED || len < HEADER + wl + IV_LEN + TAG_LEN) return no(id, err);
  const uint8_t *wrapped = in + HEADER, *iv = wrapped + wl, *ct = iv + IV_LEN;
  size_t ct_len = len - HEADER - wl - IV_LEN;
  uint8_t *block = kh_secret_alloc(MAX_WRAPPED), key[KEY_LEN];
  if (block == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  size_t n = 0;
  kh_error e = {.code = KH_OK};
  int ok;
  if (mode == KH_ENVELOPE_OAEP) {
    ok = kh_identity_rsa_decrypt(id, 1, wrapped, wl, block, &n, MAX_WRAPPED, &e) && n == KEY_LEN;
    if (ok) memcpy(key, block, KEY_LEN);
  } else {
    uint8_t fallback[SHA256_DIGEST_LENGTH];
    unsigned fl = 0;
    HMAC(EVP_sha256(), reject_key, KH_ENVELOPE_REJECT_KEY_LEN, wrapped, wl, fallback, &fl);
    ok = kh_identity_rsa_decrypt(id, 0, wrapped, wl, block, &n, MAX_WRAPPED, &e) && n == wl &&
         n >= 11 + KEY_LEN;
    if (ok) pkcs1_key(block, n, fallback, key);
    kh_wipe(fallback, sizeof(fallback));
  }
  kh_secret_free(block, MAX_WRAPPED);
  if (!ok) {
    kh_wipe(key, sizeof(key));
    /* A key backend that fails for its own reasons (a PKCS#11 token that
     * stalls, or lacks OAEP-SHA-256) says so: nothing the envelope holds
     * decides that. Anything the ciphertext causes is the one error. */
    if (n == 0 && e.code != KH_OK && e.code != KH_ERR_INVALID_ARGUMENT)
      return kh_err(err, e.code, "%s", e.msg);
    return no(id, err);
  }
  EVP_AEAD_CTX ctx;
  size_t out_len = 0;
  ok = EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), key, KEY_LEN, TAG_LEN, NULL);
  kh_wipe(key, sizeof(key));
  if (ok && kh_buf_reserve(pt, ct_len)) {
    ok = EVP_AEAD_CTX_open(&ctx, pt->data + pt->len, &out_len, ct_len, iv, IV_LEN, ct, ct_len, in,
                           HEADER);
    if (ok) pt->len += out_len;
  } else {
    ok = 0;
  }
  EVP_AEAD_CTX_cleanup(&ctx);
  return ok || no(id, err);
}

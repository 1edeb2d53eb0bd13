/* aead.h: the shim's AEAD, shared by TLS records (record.c) and the coming
 * secure-channel messages, on OpenSSL 3 libcrypto.
 *
 * AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 with 96-bit nonces and
 * 128-bit tags. A kh_aead is keyed once with a key and a static IV; each
 * seal/open takes a 64-bit counter and uses the nonce
 * IV XOR counter (the counter big-endian in the IV's last 8 bytes; RFC 8446
 * 5.3). With counter 0 the nonce is the IV itself, so a caller with an
 * explicit nonce passes it as the IV. Callers keep the counter and never
 * reuse one under a key. */
#ifndef KH_AEAD_H
#define KH_AEAD_H

#include <stddef.h>
#include <stdint.h>

#include "kh_error.h"
#include "kh_tls.h"

#define KH_AEAD_TAG_LEN 16
#define KH_AEAD_IV_LEN 12
#define KH_AEAD_MAX_KEY 32

typedef enum { KH_AEAD_AES_GCM = 0, KH_AEAD_CHACHA20_POLY1305 = 1 } kh_aead_alg;

typedef struct {
  void *ctx;                  /* EVP_CIPHER_CTX, keyed */
  uint8_t iv[KH_AEAD_IV_LEN]; /* static IV */
  int encrypt;
} kh_aead;

/* kh_aead_alg_of: the AEAD of a TLS 1.3 suite. */
static inline kh_aead_alg kh_aead_alg_of(kh_suite suite) {
  return suite == KH_SUITE_CHACHA20_POLY1305_SHA256 ? KH_AEAD_CHACHA20_POLY1305 : KH_AEAD_AES_GCM;
}

/* kh_aead_init keys |a| (zero-initialised or cleaned up) for sealing
 * (|encrypt| 1) or opening (0). |key_len| picks AES-128 (16) or AES-256 (32)
 * for GCM; ChaCha20-Poly1305 takes 32. Copies key schedule and IV; the
 * caller wipes its copies. */
KH_MUST_USE int kh_aead_init(kh_aead *a, kh_aead_alg alg, const uint8_t *key, size_t key_len,
                             const uint8_t iv[KH_AEAD_IV_LEN], int encrypt, kh_error *err);
/* kh_aead_cleanup wipes the key schedule and IV; |a| may be re-initialised. */
void kh_aead_cleanup(kh_aead *a);

/* kh_aead_seal encrypts |len| bytes (|in| may equal |out|) under the nonce
 * for |counter| and |aad|; the tag goes to |tag|. */
KH_MUST_USE int kh_aead_seal(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                             const uint8_t *in, size_t len, uint8_t *out,
                             uint8_t tag[KH_AEAD_TAG_LEN]);
/* kh_aead_seal_tail encrypts |in| (|len| bytes) followed by |tail|
 * (|tail_len| bytes) as one message into |out| (|len| + |tail_len| bytes,
 * not overlapping |in|): a TLS record sealed straight from the caller's
 * bytes, its content type as the tail, with no plaintext copy. */
KH_MUST_USE int kh_aead_seal_tail(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                                  const uint8_t *in, size_t len, const uint8_t *tail,
                                  size_t tail_len, uint8_t *out, uint8_t tag[KH_AEAD_TAG_LEN]);
/* kh_aead_open decrypts |len| bytes with |tag| (|in| may equal |out|);
 * returns 0 if authentication fails (|out| then holds no plaintext the
 * caller may use: it wipes it). */
KH_MUST_USE int kh_aead_open(kh_aead *a, uint64_t counter, const uint8_t *aad, size_t aad_len,
                             const uint8_t *in, size_t len, const uint8_t tag[KH_AEAD_TAG_LEN],
                             uint8_t *out);

#endif /* KH_AEAD_H */

/* noise.h: a sans-IO Noise Protocol Framework engine (revision 34) on
 * libsodium. Bytes in, bytes out: the engine never does I/O, so keyholdd's
 * SecureChannel service, the vector runner (tests/tools/noise_vectors) and
 * benchmarks drive the same code.
 *
 * The protocol is named by its Noise protocol name, e.g.
 * "Noise_XXpsk3_25519_ChaChaPoly_SHA256":
 *   patterns  every one-way, interactive and deferred pattern of the spec
 *             (N K X, NN KN NK KK NX KX XN IN XK IK XX IX, NK1 ... I1X1),
 *             with psk modifiers (pskN, several joined by '+')
 *   DH        25519 (448 is parsed and refused as unsupported)
 *   cipher    ChaChaPoly, AESGCM (only where crypto_aead_aes256gcm_is_available())
 *   hash      SHA256, SHA512, BLAKE2b (BLAKE2s is refused as unsupported)
 * A name that is well formed but asks for something above that is
 * KH_ERR_UNIMPLEMENTED; a malformed one KH_ERR_INVALID_ARGUMENT.
 *
 * After any failed call the handshake state is dead: every later call fails
 * with KH_ERR_FAILED_PRECONDITION. Secrets (s, e, ck, k, psks) live in
 * locked memory and are wiped by kh_noise_free. */
#ifndef KH_NOISE_H
#define KH_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"
#include "kh_error.h"

#define KH_NOISE_DH_LEN 32
#define KH_NOISE_KEY_LEN 32
#define KH_NOISE_PSK_LEN 32
#define KH_NOISE_TAG_LEN 16
#define KH_NOISE_MAX_HASH_LEN 64
#define KH_NOISE_MAX_MSG_LEN 65535
#define KH_NOISE_MAX_NAME_LEN 128

typedef enum { KH_NOISE_CHACHAPOLY = 0, KH_NOISE_AESGCM = 1 } kh_noise_cipher;
typedef enum { KH_NOISE_SHA256 = 0, KH_NOISE_SHA512 = 1, KH_NOISE_BLAKE2B = 2 } kh_noise_hash;

typedef struct kh_noise kh_noise;

/* kh_noise_new parses |protocol_name| and prepares a handshake for the
 * initiator (|initiator| 1) or the responder. Keys, prologue and psks are
 * set before the first message; pre-messages are mixed in then. */
KH_MUST_USE kh_noise *kh_noise_new(const char *protocol_name, int initiator, kh_error *err);
void kh_noise_free(kh_noise *n);

KH_MUST_USE int kh_noise_set_prologue(kh_noise *n, const uint8_t *prologue, size_t len,
                                      kh_error *err);
/* Our static key pair from its private half (the public half is derived). */
KH_MUST_USE int kh_noise_set_static(kh_noise *n, const uint8_t priv[KH_NOISE_DH_LEN],
                                    kh_error *err);
/* The peer's static public key, known in advance (a pre-message "s"). */
KH_MUST_USE int kh_noise_set_remote_static(kh_noise *n, const uint8_t pub[KH_NOISE_DH_LEN],
                                           kh_error *err);
/* A fixed ephemeral private key instead of a fresh random one: test vectors only. */
KH_MUST_USE int kh_noise_set_ephemeral(kh_noise *n, const uint8_t priv[KH_NOISE_DH_LEN],
                                       kh_error *err);
/* The psks, in the order the pattern's psk tokens use them. */
KH_MUST_USE int kh_noise_add_psk(kh_noise *n, const uint8_t psk[KH_NOISE_PSK_LEN], kh_error *err);

/* What the pattern needs before the first message, for callers that set
 * keys from policy: our static key, the peer's static key in advance, and
 * how many psks. */
int kh_noise_needs_static(const kh_noise *n);
int kh_noise_needs_remote_static(const kh_noise *n);
size_t kh_noise_psk_count(const kh_noise *n);
/* 1 for the one-way patterns N, K, X (and their psk variants). */
int kh_noise_is_one_way(const kh_noise *n);

/* kh_noise_write_message appends the next handshake message, carrying
 * |payload|, to |out|. KH_ERR_FAILED_PRECONDITION if it is not our turn or
 * the handshake is done; KH_ERR_INVALID_ARGUMENT if the message would
 * exceed KH_NOISE_MAX_MSG_LEN. */
KH_MUST_USE int kh_noise_write_message(kh_noise *n, const uint8_t *payload, size_t len, kh_buf *out,
                                       kh_error *err);
/* The same in two steps, so that the payload can depend on the handshake
 * hash as it stands after the message's tokens (kh_noise_handshake_hash
 * between the two calls): the tokens, then the payload. */
KH_MUST_USE int kh_noise_write_tokens(kh_noise *n, kh_buf *out, kh_error *err);
KH_MUST_USE int kh_noise_write_payload(kh_noise *n, const uint8_t *payload, size_t len, kh_buf *out,
                                       kh_error *err);
/* kh_noise_read_message processes the peer's next handshake message and
 * appends its payload to |payload|. KH_ERR_DECRYPT if authentication fails,
 * KH_ERR_PROTOCOL if the message is too short or too long. */
KH_MUST_USE int kh_noise_read_message(kh_noise *n, const uint8_t *msg, size_t len, kh_buf *payload,
                                      kh_error *err);

int kh_noise_my_turn(const kh_noise *n); /* 1: the next call is a write */
int kh_noise_done(const kh_noise *n);    /* 1: all handshake messages done */

/* The handshake hash h (hash length bytes, borrowed): the current one;
 * after kh_noise_write_tokens it is the hash the payload will be encrypted
 * under. kh_noise_payload_hash is h as it stood just before the last payload
 * was encrypted or decrypted: the value both sides share for that message. */
const uint8_t *kh_noise_handshake_hash(const kh_noise *n, size_t *len);
const uint8_t *kh_noise_payload_hash(const kh_noise *n, size_t *len);
/* The peer's static public key once known (pre-message or received), else NULL. */
const uint8_t *kh_noise_remote_static(const kh_noise *n);
/* Our static public key, or NULL if none was set. */
const uint8_t *kh_noise_local_static(const kh_noise *n);
kh_noise_cipher kh_noise_cipher_of(const kh_noise *n);
kh_noise_hash kh_noise_hash_of(const kh_noise *n);
const char *kh_noise_protocol_name(const kh_noise *n);

/* A transport CipherState: key and the next nonce. */
typedef struct {
  kh_noise_cipher cipher;
  uint8_t k[KH_NOISE_KEY_LEN];
  uint64_t n;
} kh_noise_cipherstate;

/* kh_noise_split, once done: the initiator's sending key in |i_to_r| and
 * the responder's sending key in |r_to_i| (Split(): c1, c2), nonces 0. For
 * a one-way pattern |r_to_i| is zeroed and must not be used. The caller
 * wipes both with kh_wipe. */
KH_MUST_USE int kh_noise_split(kh_noise *n, kh_noise_cipherstate *i_to_r,
                               kh_noise_cipherstate *r_to_i, kh_error *err);

/* Transport messages under a CipherState: the nonce is cs->n, which is then
 * incremented (KH_ERR_SEQ_OVERFLOW at 2^64-1). Appends to |out|. */
KH_MUST_USE int kh_noise_encrypt(kh_noise_cipherstate *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *pt, size_t len, kh_buf *out, kh_error *err);
KH_MUST_USE int kh_noise_decrypt(kh_noise_cipherstate *cs, const uint8_t *ad, size_t ad_len,
                                 const uint8_t *ct, size_t len, kh_buf *out, kh_error *err);
/* REKEY(k): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros). */
void kh_noise_rekey(kh_noise_cipherstate *cs);

/* A fresh X25519 key pair. */
KH_MUST_USE int kh_noise_keypair(uint8_t priv[KH_NOISE_DH_LEN], uint8_t pub[KH_NOISE_DH_LEN],
                                 kh_error *err);
/* The public half of an X25519 private key. */
KH_MUST_USE int kh_noise_public_key(const uint8_t priv[KH_NOISE_DH_LEN],
                                    uint8_t pub[KH_NOISE_DH_LEN], kh_error *err);

#endif /* KH_NOISE_H */

/* channel_record.h: the shim's secure-channel messages, sans-IO. After the
 * sidecar has run the Noise handshake, the shim holds the two transport
 * keys and seals and opens messages itself. Messages are independent: each
 * carries its key epoch and counter, so a transport may lose, delay or
 * reorder them (a broker, a relay, several hops).
 *
 * Message layout (KH_CHAN_HEADER_LEN + plaintext + KH_CHAN_TAG_LEN bytes):
 *   u8   version     KH_CHAN_VERSION
 *   u8   flags       bit 0: sent by the handshake's initiator
 *   [8]  channel id  from the handshake hash; the same both ways
 *   u32  epoch       key generation, big-endian
 *   u64  counter     message number, big-endian, never reused by a sender
 *   ...  ciphertext, then the 16-byte tag; the AEAD's associated data is
 *        the 22-byte header.
 * The AEAD is the handshake's Noise cipher (ChaChaPoly or AESGCM) keyed
 * with the epoch's key and with nonce = counter, encoded as Noise encodes
 * n for that cipher. Epoch 0 uses the split key; epoch e+1 uses REKEY() of
 * epoch e's key (Noise 11.3: the first 32 bytes of ENCRYPT(k, 2^64-1, "",
 * zeros)). The sender moves to the next epoch after |rekey_after| messages
 * or on kh_chan_record_rekey; counters keep counting across epochs.
 *
 * Receiving: the receiver holds the keys of its newest epoch and the one
 * before (so messages sent just before a rekey still open), and derives up
 * to KH_CHAN_MAX_EPOCH_SKIP epochs ahead. A sliding window of
 * KH_CHAN_REPLAY_WINDOW counters below the highest counter opened rejects
 * replays; older counters are too old. State changes only when a message
 * authenticates. */
#ifndef KH_CHANNEL_RECORD_H
#define KH_CHANNEL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"
#include "kh_error.h"

#define KH_CHAN_VERSION 0x01
#define KH_CHAN_HEADER_LEN 22
#define KH_CHAN_TAG_LEN 16
#define KH_CHAN_OVERHEAD (KH_CHAN_HEADER_LEN + KH_CHAN_TAG_LEN)
#define KH_CHAN_ID_LEN 8
#define KH_CHAN_KEY_LEN 32
#define KH_CHAN_REPLAY_WINDOW 1024
#define KH_CHAN_MAX_EPOCH_SKIP 16
#define KH_CHAN_MAX_PLAINTEXT (1u << 20)
#define KH_CHAN_DEFAULT_REKEY_AFTER (1u << 20)

typedef enum { KH_CHAN_CHACHAPOLY = 0, KH_CHAN_AESGCM = 1 } kh_chan_cipher;

/* The hand-off from the sidecar: fixed-size, no pointers, wiped with one
 * kh_wipe(&keys, sizeof keys). */
typedef struct {
  kh_chan_cipher cipher;
  int initiator; /* 1: we were the handshake's initiator */
  uint8_t channel_id[KH_CHAN_ID_LEN];
  uint8_t send_key[KH_CHAN_KEY_LEN];
  uint8_t recv_key[KH_CHAN_KEY_LEN];
  int can_send; /* 0 for the responder of a one-way pattern */
  int can_recv; /* 0 for the initiator of a one-way pattern */
} kh_chan_keys;

typedef struct kh_chan_record kh_chan_record;

/* kh_chan_record_new copies |keys| into locked memory (the caller wipes its
 * copy). |rekey_after|: messages per epoch, 0 for the default. */
KH_MUST_USE kh_chan_record *kh_chan_record_new(const kh_chan_keys *keys, uint64_t rekey_after,
                                               kh_error *err);
void kh_chan_record_free(kh_chan_record *c); /* wipes everything */

/* kh_chan_record_seal appends one message carrying |pt| to |out|.
 * KH_ERR_INVALID_ARGUMENT past KH_CHAN_MAX_PLAINTEXT, KH_ERR_SEQ_OVERFLOW
 * when counters run out, KH_ERR_FAILED_PRECONDITION if this side cannot send. */
KH_MUST_USE int kh_chan_record_seal(kh_chan_record *c, const uint8_t *pt, size_t len, kh_buf *out,
                                    kh_error *err);
/* kh_chan_record_open authenticates one message and appends its plaintext
 * to |out|. Errors, each leaving the state as it was:
 *   KH_ERR_PROTOCOL        shorter than the overhead, or unknown version
 *   KH_ERR_RECORD_OVERFLOW longer than KH_CHAN_MAX_PLAINTEXT + overhead
 *   KH_ERR_CHANNEL_WRONG   another channel's id, or our own direction
 *                          (a message reflected back to its sender)
 *   KH_ERR_CHANNEL_TOO_OLD counter below the window, or an epoch whose key
 *                          is gone (or too far ahead)
 *   KH_ERR_CHANNEL_REPLAY  counter already opened
 *   KH_ERR_CHANNEL_TAMPERED authentication failed */
KH_MUST_USE int kh_chan_record_open(kh_chan_record *c, const uint8_t *msg, size_t len, kh_buf *out,
                                    kh_error *err);
/* kh_chan_record_rekey: the next message goes out under the next epoch. */
KH_MUST_USE int kh_chan_record_rekey(kh_chan_record *c, kh_error *err);

typedef struct {
  uint64_t sent, opened, rejected;
  uint32_t send_epoch, recv_epoch;
} kh_chan_stats;
void kh_chan_record_stats(const kh_chan_record *c, kh_chan_stats *out);

#endif /* KH_CHANNEL_RECORD_H */

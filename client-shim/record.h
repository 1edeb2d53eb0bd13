/* record.h: the shim's TLS 1.3 record layer, sans-IO (bytes in, bytes out),
 * keyed from the traffic secrets the sidecar returns. OpenSSL 3 libcrypto.
 *
 * - key/iv via HKDF-Expand-Label; nonce = iv XOR 64-bit sequence number.
 * - AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 (aead.h).
 * - Inner content type recovered, zero padding stripped; plaintext <= 2^14,
 *   ciphertext <= 2^14 + 256 enforced (record_overflow).
 * - KeyUpdate received (update_requested -> our own KeyUpdate queued for the
 *   peer) and initiated; NewSessionTicket accepted and handed to a callback;
 *   other post-handshake handshake messages rejected (unexpected_message).
 * - close_notify sent on close and honoured on receive; other alerts map to
 *   KH_ERR_PEER_ALERT; a ChangeCipherSpec record (0x14 0x01) is refused
 *   after the handshake (RFC 8446 5: only allowed during it).
 * - Sequence-number overflow refused (KH_ERR_SEQ_OVERFLOW).
 * On any fatal error the record layer queues the matching alert in |to_peer|
 * (when one applies) and refuses further use. */
#ifndef KH_RECORD_H
#define KH_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "aead.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "kh_traffic.h"

#define KH_TLS_MAX_PLAINTEXT 16384
#define KH_TLS_MAX_CIPHERTEXT (16384 + 256)
#define KH_TLS_RECORD_HEADER 5
#define KH_TLS_LEGACY_VERSION 0x0303 /* legacy_record_version of protected records */

#define KH_CT_CHANGE_CIPHER_SPEC 20
#define KH_CT_ALERT 21
#define KH_CT_HANDSHAKE 22
#define KH_CT_APPLICATION_DATA 23

typedef struct kh_record kh_record;

/* Called with each complete NewSessionTicket handshake message (4-byte
 * header included) the peer sends, for resumption. May be NULL. */
typedef void (*kh_ticket_cb)(void *arg, const uint8_t *msg, size_t len);

/* kh_record_new keys a record layer from the traffic keys the handshake
 * produced (version 1.3, a known suite, its secret length). The secrets are
 * copied into locked memory (copy 4 of kh_traffic.h's list); the caller
 * wipes its copy. |on_ticket| may be NULL. */
KH_MUST_USE kh_record *kh_record_new(const kh_traffic_keys *keys, kh_ticket_cb on_ticket,
                                     void *ticket_arg, kh_error *err);
/* Wipes every key and secret. */
void kh_record_free(kh_record *r);

/* kh_record_seal encrypts |len| bytes of |content_type| into as many records
 * as needed (each <= 2^14 plaintext), appended to |out|. */
KH_MUST_USE int kh_record_seal(kh_record *r, uint8_t content_type, const uint8_t *data, size_t len,
                               kh_buf *out, kh_error *err);

/* kh_record_open processes complete records in |in| (partial trailing bytes
 * are left: |*consumed| < |in_len|). Application data goes to |app_out|;
 * bytes the record layer must send (KeyUpdate answer, alerts) go to
 * |to_peer|. Returns 1 on success (including "need more bytes"), 0 on a fatal
 * error. After the peer's close_notify, kh_record_peer_closed() is 1 and
 * later bytes are ignored. */
KH_MUST_USE int kh_record_open(kh_record *r, const uint8_t *in, size_t in_len, size_t *consumed,
                               kh_buf *app_out, kh_buf *to_peer, kh_error *err);

/* kh_record_key_update sends a KeyUpdate (update_requested if
 * |request_peer|) and switches our write keys. */
KH_MUST_USE int kh_record_key_update(kh_record *r, int request_peer, kh_buf *to_peer,
                                     kh_error *err);

/* kh_record_close appends a close_notify alert; later seals fail. */
KH_MUST_USE int kh_record_close(kh_record *r, kh_buf *to_peer, kh_error *err);

int kh_record_peer_closed(const kh_record *r);

/* Current sequence numbers (for tests and diagnostics). */
uint64_t kh_record_read_seq(const kh_record *r);
uint64_t kh_record_write_seq(const kh_record *r);

#endif /* KH_RECORD_H */

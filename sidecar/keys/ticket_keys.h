/* ticket_keys.h: the server's session-ticket keys. Replicas of a service
 * that load the same file resume each other's sessions.
 *
 * File format (text, mode 0600): one key per line, 96 hex digits = 16-byte
 * key name | 16-byte HMAC-SHA256 key | 16-byte AES-128-CBC key, e.g. from
 * `openssl rand -hex 48`. The first key encrypts new tickets; the others
 * still decrypt (tickets they opened are re-issued under the first), so a
 * rotation is: prepend a new line, later drop the last. '#' starts a comment.
 * Without a file keyholdd makes one random key at start-up (resumption then
 * works within one keyholdd only). Keys live in locked memory, wiped on free. */
#ifndef KH_TICKET_KEYS_H
#define KH_TICKET_KEYS_H

#include <openssl/base.h>
#include <stddef.h>

#include "kh_buf.h"
#include "kh_error.h"

#define KH_TICKET_KEYS_MAX 8

typedef struct kh_ticket_keys kh_ticket_keys;

KH_MUST_USE kh_ticket_keys *kh_ticket_keys_load(const char *path, kh_error *err);
KH_MUST_USE kh_ticket_keys *kh_ticket_keys_parse(const char *text, size_t len, kh_error *err);
KH_MUST_USE kh_ticket_keys *kh_ticket_keys_random(kh_error *err);
kh_ticket_keys *kh_ticket_keys_ref(kh_ticket_keys *k);
void kh_ticket_keys_unref(kh_ticket_keys *k);
/* The current keys live in a slot (main.c) that rotation replaces while
 * handshakes run on the worker threads: kh_ticket_keys_get returns a new
 * reference to *|slot| (or NULL), kh_ticket_keys_swap installs |k| (taking
 * over its reference) and drops the slot's reference to the old keys. */
kh_ticket_keys *kh_ticket_keys_get(kh_ticket_keys *const *slot);
void kh_ticket_keys_swap(kh_ticket_keys **slot, kh_ticket_keys *k);
size_t kh_ticket_keys_count(const kh_ticket_keys *k);

/* kh_ticket_keys_install makes |ctx| seal and open tickets with |k|, which it
 * finds through |get_keys| (called with the SSL being served). */
KH_MUST_USE int kh_ticket_keys_install(SSL_CTX *ctx, kh_ticket_keys *(*get_keys)(SSL *ssl));

/* Tickets sealed for S2A v2 clients, whose own TLS stack asks keyholdd to
 * encrypt and decrypt its session state (OffloadResumptionKeyOperation):
 *   key name (16) | IV (16) | AES-128-CBC, PKCS#7 padded | HMAC-SHA256 (32)
 * under the same keys as the v1 tickets, so replicas sharing the key file
 * open each other's tickets and an older key opens until it is dropped.
 * The MAC also covers a label, so a ticket of one kind never opens as the
 * other. Seal uses the first key. Errors: FAILED_PRECONDITION without keys;
 * open: INVALID_ARGUMENT for a size no seal makes, a bad MAC or padding;
 * NOT_FOUND for a key no longer loaded. Output is appended to |out|. */
#define KH_TICKET_SEAL_OVERHEAD 80u /* name + IV + up to a block of padding + MAC */
#define KH_TICKET_SEAL_MAX_IN (64u * 1024u)
KH_MUST_USE int kh_ticket_keys_seal(const kh_ticket_keys *k, const uint8_t *in, size_t len,
                                    kh_buf *out, kh_error *err);
KH_MUST_USE int kh_ticket_keys_open(const kh_ticket_keys *k, const uint8_t *in, size_t len,
                                    kh_buf *out, kh_error *err);

#endif /* KH_TICKET_KEYS_H */

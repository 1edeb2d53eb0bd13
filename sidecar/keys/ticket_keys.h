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

#endif /* KH_TICKET_KEYS_H */

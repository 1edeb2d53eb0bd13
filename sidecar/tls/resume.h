/* resume.h: client-side session resumption state in keyholdd.
 *
 * After a client handshake the engine is held for a short while (bounded in
 * number and time) so the NewSessionTicket messages the app's shim receives
 * and sends back (S2A resumption_ticket, on a new stream, with the
 * connection_id of the handshake) can be turned into resumable sessions.
 * A session is kept under a kh_resume_key: the caller uid, the local identity
 * and the certificate (leaf fingerprint) that made the handshake, and the
 * target (server name and expected peers). A later client_start offers it
 * only when all four are equal, and only once (kh_resume_take). Only the
 * caller (uid) that made the handshake may add its tickets. Thread-safe: one
 * mutex guards the tables (handshakes run on the crypto worker threads, the
 * sweep on the event loop). */
#ifndef KH_RESUME_H
#define KH_RESUME_H

#include <openssl/base.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kh_error.h"
#include "kh_tls.h"
#include "tls_engine.h"

#define KH_RESUME_MAX_SESSIONS 1024
#define KH_RESUME_MAX_PENDING 256
#define KH_RESUME_PENDING_MS 5000

/* What a session is bound to (strings borrowed; the cache copies them). */
typedef struct {
  uid_t uid;                   /* the caller that made the handshake */
  const char *identity;        /* local identity: its directory name */
  uint8_t cert[KH_SHA256_LEN]; /* SHA-256 of the local leaf that made it */
  const char *target;          /* server name and expected peers */
} kh_resume_key;

typedef struct kh_resume kh_resume;

KH_MUST_USE kh_resume *kh_resume_new(void);
void kh_resume_free(kh_resume *r);

/* kh_resume_take removes the session stored under |key| from the cache and
 * returns it (the caller frees it), or NULL. A session is offered at most
 * once (RFC 8446, C.4: a ticket reused on two connections links them; and a
 * resumption that fails cannot fail again with the same session). Entries
 * of |key->identity| made under another certificate than |key->cert| (the
 * identity rotated) and expired ones are dropped on the way. */
SSL_SESSION *kh_resume_take(kh_resume *r, const kh_resume_key *key);

/* kh_resume_put stores |s| (ownership passes) under |key|, replacing the
 * session stored there before. */
void kh_resume_put(kh_resume *r, const kh_resume_key *key, SSL_SESSION *s);

/* kh_resume_hold keeps |e| (ownership passes) for tickets of |conn_id|;
 * the sessions they make are stored under |key| (copied). */
void kh_resume_hold(kh_resume *r, uint64_t conn_id, const kh_resume_key *key, kh_tls_engine *e);

/* kh_resume_tickets processes |n| NewSessionTicket messages for |conn_id|
 * from caller |uid| and stores the last good session under the held key. */
KH_MUST_USE int kh_resume_tickets(kh_resume *r, uint64_t conn_id, uid_t uid,
                                  const uint8_t *const *msgs, const size_t *lens, size_t n,
                                  kh_error *err);

/* kh_resume_sweep frees held engines older than KH_RESUME_PENDING_MS. */
void kh_resume_sweep(kh_resume *r);

#endif /* KH_RESUME_H */

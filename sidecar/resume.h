/* resume.h: client-side session resumption state in keyholdd.
 *
 * After a client handshake the engine is held for a short while (bounded in
 * number and time) so the NewSessionTicket messages the app's shim receives
 * and sends back (S2A resumption_ticket, on a new stream, with the
 * connection_id of the handshake) can be turned into resumable sessions.
 * Sessions are kept per key = local identity + target (server name and
 * expected peers); a later client_start with the same key offers the most
 * recent one. Only the caller (uid) that made the handshake may add its
 * tickets. Thread-safe: one mutex guards the tables (handshakes run on the
 * crypto worker threads, the sweep on the event loop). */
#ifndef KH_RESUME_H
#define KH_RESUME_H

#include <openssl/base.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kh_error.h"
#include "tls_engine.h"

#define KH_RESUME_MAX_SESSIONS 1024
#define KH_RESUME_MAX_PENDING 256
#define KH_RESUME_PENDING_MS 5000

typedef struct kh_resume kh_resume;

kh_resume *kh_resume_new(void);
void kh_resume_free(kh_resume *r);

/* kh_resume_session returns a new reference to the session for |key|, or
 * NULL. Sessions that can no longer resume are dropped. */
SSL_SESSION *kh_resume_session(kh_resume *r, const char *key);

/* kh_resume_hold keeps |e| (ownership passes) for tickets of |conn_id|. */
void kh_resume_hold(kh_resume *r, uint64_t conn_id, uid_t uid, const char *key, kh_tls_engine *e);

/* kh_resume_tickets processes |n| NewSessionTicket messages for |conn_id|
 * from caller |uid| and stores the last good session under the held key. */
int kh_resume_tickets(kh_resume *r, uint64_t conn_id, uid_t uid, const uint8_t *const *msgs,
                      const size_t *lens, size_t n, kh_error *err);

/* kh_resume_sweep frees held engines older than KH_RESUME_PENDING_MS. */
void kh_resume_sweep(kh_resume *r);

#endif /* KH_RESUME_H */

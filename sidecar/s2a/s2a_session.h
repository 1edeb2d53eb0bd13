/* s2a_session.h: the S2A v1 SetUpSession state machine, sans-IO.
 * Serialized SessionReq in, serialized SessionResp out; no gRPC here.
 * States: START -> HANDSHAKING -> DONE, or FAILED. */
#ifndef KH_S2A_SESSION_H
#define KH_S2A_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "authz.h"
#include "policy_slot.h"
#include "caller.h"
#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "resume.h"
#include "ticket_keys.h"

typedef enum {
  KH_S2A_CONTINUE = 0, /* send |resp|, wait for the next request */
  KH_S2A_FINISHED = 1, /* send |resp| (carries the result), end with OK */
  KH_S2A_FAILED = 2,   /* send |resp| if non-empty (status + any alert), then
                          end the stream with |err| as the gRPC status */
} kh_s2a_outcome;

typedef struct kh_s2a_session kh_s2a_session;

/* What sessions share; everything is borrowed and outlives the sessions. */
typedef struct {
  const kh_identity_store *store;
  kh_policy_slot *policy;             /* NULL: no authorization (tests, fuzzing only) */
  kh_resume *resume;                  /* NULL: no client-side resumption */
  kh_ticket_keys *const *ticket_keys; /* current server ticket keys; NULL: none */
} kh_s2a_env;

/* |caller| is copied. NULL: out of memory. */
KH_MUST_USE kh_s2a_session *kh_s2a_session_new(const kh_s2a_env *env, const kh_caller *caller);
void kh_s2a_session_free(kh_s2a_session *s);

kh_s2a_outcome kh_s2a_session_handle(kh_s2a_session *s, const uint8_t *req, size_t req_len,
                                     kh_buf *resp, kh_error *err);

/* For the handshake log line: local/peer identity names once known ("-" else). */
const char *kh_s2a_session_local_name(const kh_s2a_session *s);
const char *kh_s2a_session_peer_name(const kh_s2a_session *s);

/* kh_s2a_session_is_server: has the session started a server-side handshake? */
int kh_s2a_session_is_server(const kh_s2a_session *s);

#endif /* KH_S2A_SESSION_H */

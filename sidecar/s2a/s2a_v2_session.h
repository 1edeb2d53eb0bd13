/* s2a_v2_session.h: S2A v2 SetUpSession (key-operation offload), sans-IO.
 *
 * The application runs its own TLS stack and asks, on one stream, for any
 * number of: its TLS configuration (GetTlsConfiguration), a signature with
 * its identity's key (OffloadPrivateKeyOperation SIGN), its session tickets
 * sealed or opened (OffloadResumptionKeyOperation) and a check of its
 * peer's chain (ValidatePeerCertificateChain). Every request gets one
 * response with a status; a bad request gets a non-zero status and the
 * stream stays usable. Serialized SessionReq in (either dialect, see
 * s2a_v2_wire.h), serialized SessionResp out; no gRPC here.
 *
 * The local identity is the request's local_identity, else (server side)
 * the identity whose certificate names the SNI, else the one the stream
 * used before, else the one identity the policy grants the caller for the
 * operation, else the only one keyholdd holds. Each operation is
 * authorised for the caller and that identity as v1 handshakes are. */
#ifndef KH_S2A_V2_SESSION_H
#define KH_S2A_V2_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"
#include "kh_error.h"
#include "s2a_session.h"
#include "s2a_v2_wire.h"

typedef struct kh_s2a_v2_session kh_s2a_v2_session;

/* |env| is shared with v1 (borrowed); |caller| is copied. */
KH_MUST_USE kh_s2a_v2_session *kh_s2a_v2_session_new(const kh_s2a_env *env, const kh_caller *caller,
                                                     kh_v2_dialect dialect);
void kh_s2a_v2_session_free(kh_s2a_v2_session *s);

/* kh_s2a_v2_session_handle answers one request into |resp|: KH_S2A_CONTINUE
 * (with a status, OK or not, in |resp|), or KH_S2A_FAILED when no response
 * can be made at all (out of memory), with |err|. */
kh_s2a_outcome kh_s2a_v2_session_handle(kh_s2a_v2_session *s, const uint8_t *req, size_t req_len,
                                        kh_buf *resp, kh_error *err);

/* For the server's log lines: the identity the stream uses, and the last
 * peer it validated ("-" while none). */
const char *kh_s2a_v2_session_local_name(const kh_s2a_v2_session *s);
const char *kh_s2a_v2_session_peer_name(const kh_s2a_v2_session *s);

#endif /* KH_S2A_V2_SESSION_H */

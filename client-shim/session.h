/* session.h: what the fd helpers (conn.c) need of a kh_session beyond the
 * public sans-IO API in keyhold.h. The session itself (session.c) owns the
 * S2A exchange, the sidecar stream while the handshake runs, the record
 * layer after it, and the queue of the peer's session tickets; it never
 * touches the application's socket. */
#ifndef KH_SESSION_H
#define KH_SESSION_H

#include <time.h>

#include "keyhold.h"
#include "kh_error.h"

/* The handshake's deadline (CLOCK_MONOTONIC), from kh_handshake_opts'
 * timeout_ms at kh_session_new. */
const struct timespec *kh_session_deadline(const kh_session *s);

/* kh_session_check_sidecar looks, without waiting, whether the sidecar has
 * ended the handshake's stream (its deadline, a refusal, the sidecar gone):
 * 1 while it is open or none is open, 0 with that status (and the session
 * failed) once it ended. For a caller waiting on the peer meanwhile. */
KH_MUST_USE int kh_session_check_sidecar(kh_session *s, kh_error *err);

/* kh_session_fail marks the session failed (the transport broke under it):
 * later calls fail with "connection failed earlier", close sends nothing. */
void kh_session_fail(kh_session *s);

/* kh_session_close is these two: kh_session_close_notify queues our
 * close_notify (a failed session: nothing, and 1), then
 * kh_session_flush_tickets_quietly hands queued tickets back, ignoring a
 * failure. Apart, so that the fd layer sends close_notify first. */
KH_MUST_USE int kh_session_close_notify(kh_session *s, kh_error *err);
void kh_session_flush_tickets_quietly(kh_session *s);

/* The client's gRPC channel to keyholdd, for the secure-channel calls
 * (channel.c), which share it with the TLS sessions. */
struct kh_sidecar;
struct kh_sidecar *kh_client_sidecar(kh_client *kc);

/* Handshake deadline when kh_handshake_opts.timeout_ms is 0. */
#define KH_DEFAULT_TIMEOUT_MS 10000

#endif /* KH_SESSION_H */

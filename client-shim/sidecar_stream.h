/* sidecar_stream.h: one bidirectional gRPC stream to keyholdd (gRPC C core,
 * `grpc` library, insecure credentials on a Unix socket). Blocking calls on a
 * private pluck completion queue, all bounded by the stream's deadline. Not
 * thread-safe: one thread uses a stream at a time. */
#ifndef KH_SIDECAR_STREAM_H
#define KH_SIDECAR_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"
#include "kh_error.h"

/* kh_sidecar: the gRPC channel to keyholdd (its Unix socket, or tcp://HOST:PORT for its --listen
 * address; not a secure channel: the name kh_channel is kept for that). Shared by threads. */
typedef struct kh_sidecar kh_sidecar;
typedef struct kh_stream kh_stream;

KH_MUST_USE kh_sidecar *kh_sidecar_new(const char *socket_path, kh_error *err);
void kh_sidecar_free(kh_sidecar *sc);

/* kh_stream_open starts a call to |method| that must end within |timeout_ms|. */
KH_MUST_USE kh_stream *kh_stream_open(kh_sidecar *sc, const char *method, int timeout_ms,
                                      kh_error *err);
/* kh_stream_open_async: the same, for a caller that must not block (an
 * event loop): it does not wait for the channel to connect, and its
 * exchanges can be started and finished apart, kh_stream_fd turning
 * readable when one has an answer. Every other call works as on a blocking
 * stream (and may wait). The first one starts the channel's pump thread. */
KH_MUST_USE kh_stream *kh_stream_open_async(kh_sidecar *sc, const char *method, int timeout_ms,
                                            kh_error *err);
/* kh_stream_fd: a non-blocking stream's eventfd, readable (POLLIN) once an
 * operation completed: then kh_stream_exchange_finish(s, 0, ...) again.
 * Spurious wake-ups happen. -1 for a blocking stream (or NULL). */
int kh_stream_fd(const kh_stream *s);
KH_MUST_USE int kh_stream_send(kh_stream *s, const uint8_t *msg, size_t len, kh_error *err);
/* kh_stream_recv reads the next message into |out| (replacing its contents).
 * If the sidecar ended the stream instead, it fails with the call's status. */
KH_MUST_USE int kh_stream_recv(kh_stream *s, kh_buf *out, kh_error *err);
/* kh_stream_exchange sends |msg| and reads the answer in one gRPC batch
 * (one wake-up instead of two); errors as kh_stream_recv. */
KH_MUST_USE int kh_stream_exchange(kh_stream *s, const uint8_t *msg, size_t len, kh_buf *out,
                                   kh_error *err);
/* kh_stream_exchange in two halves (any stream; one exchange at a time):
 * _start sends |msg| and asks for the answer; _finish takes it: with |wait|
 * it waits (as kh_stream_exchange), without it returns -1 at once if the
 * answer is not there yet. 1 with the answer in |out|, 0 on error. Closing
 * the stream meanwhile cancels the exchange. */
KH_MUST_USE int kh_stream_exchange_start(kh_stream *s, const uint8_t *msg, size_t len,
                                         kh_error *err);
KH_MUST_USE int kh_stream_exchange_finish(kh_stream *s, int wait, kh_buf *out, kh_error *err);
/* kh_stream_check looks, without waiting, whether the sidecar has ended the
 * stream (its status, the call's deadline, a broken transport): 1 while it
 * is open, 0 with the status as kh_stream_recv would report it once it
 * ended. For callers waiting on something else meanwhile (the peer's bytes):
 * it costs no network message, the status op is armed when the stream opens.
 * NULL |s|: 1. */
KH_MUST_USE int kh_stream_check(kh_stream *s, kh_error *err);
/* kh_stream_half_close tells the sidecar no more requests follow and
 * collects the status the stream ends with (always fails: with the status,
 * or KH_ERR_INTERNAL if it was OK without a result). */
KH_MUST_USE int kh_stream_half_close(kh_stream *s, kh_error *err);
/* kh_stream_close half-closes, collects the status and frees (cancels the
 * call first if |cancel|). */
void kh_stream_close(kh_stream *s, int cancel);

#endif /* KH_SIDECAR_STREAM_H */

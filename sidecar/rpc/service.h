/* service.h: what a keyholdd RPC service gives the server (rpc/server.c).
 *
 * A service serves one bidi-streaming method. Each call gets a session from
 * |session_new|; every request message is handed to |handle|, which fills
 * |resp| and says whether the call goes on, finished, or failed with |err|
 * (the gRPC status; |resp|, if not empty, is sent before it). The server
 * owns the transport, the caller's credentials, the handshake budget and
 * deadline, the worker threads and the log lines for calls it ends itself;
 * the service never sees gRPC. |handle| may run on a worker thread: it must
 * touch only its session and thread-safe shared state. */
#ifndef KH_SERVICE_H
#define KH_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"
#include "kh_error.h"
#include "caller.h"

typedef enum {
  KH_RPC_CONTINUE = 0, /* send |resp|, wait for the next request */
  KH_RPC_FINISHED = 1, /* send |resp|, end with OK */
  KH_RPC_FAILED = 2,   /* send |resp| if not empty, end with |err| */
} kh_rpc_outcome;

typedef struct {
  const char *method; /* full path, e.g. "/s2a.proto.S2AService/SetUpSession" */
  void *arg;          /* handed to session_new */
  void *(*session_new)(void *arg, const kh_caller *caller); /* NULL: out of memory */
  kh_rpc_outcome (*handle)(void *session, const uint8_t *req, size_t req_len, kh_buf *resp,
                           kh_error *err);
  void (*session_free)(void *session);
  /* For the server's log lines ("-" while unknown). */
  const char *(*local_name)(const void *session);
  const char *(*peer_name)(const void *session);
  /* Has the session started a server-side handshake? (Its slot then moves
   * to the process's server-side budget.) NULL: never. */
  int (*is_server_side)(const void *session);
  /* A probe (health checks): open to every caller that reaches the socket,
   * granted or not, and outside the handshake budget and deadline; at most
   * KH_MAX_PROBES such calls at once. */
  int probe;
  /* A server-streaming method: the call stays open after the client
   * half-closes, and watch() is called from the event loop about every
   * 100 ms; returning 1 with |resp| filled sends it. NULL: not streaming. */
  int (*watch)(void *session, kh_buf *resp);
} kh_service;

#define KH_MAX_PROBES 64

#endif /* KH_SERVICE_H */

/* server.h: keyholdd's gRPC front end (grpc_unsecure, C core). Serves
 * /s2a.proto.S2AService/SetUpSession on a Unix socket; each stream drives one
 * kh_s2a_session. One completion queue, one event-loop thread. */
#ifndef KH_SERVER_H
#define KH_SERVER_H

#include <signal.h>

#include "identity.h"
#include "kh_error.h"

typedef struct {
  const char *socket_path;
  const kh_identity_store *store; /* borrowed, outlives the server */
  unsigned max_message_bytes;     /* larger requests get RESOURCE_EXHAUSTED */
} kh_server_config;

/* kh_server_run serves until |*stop| becomes non-zero (set from a signal
 * handler), then cancels in-flight calls, drains, removes the socket file
 * and returns 1. Returns 0 with |err| set if it cannot start. */
int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err);

#endif /* KH_SERVER_H */

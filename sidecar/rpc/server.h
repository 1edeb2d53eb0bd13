/* server.h: keyholdd's gRPC front end (grpc_unsecure, C core). Serves
 * /s2a.proto.S2AService/SetUpSession on a Unix socket; each stream drives one
 * kh_s2a_session. One completion queue, one event-loop thread, and a pool
 * of crypto worker threads for the handshakes (server.c). */
#ifndef KH_SERVER_H
#define KH_SERVER_H

#include <signal.h>

#include "identity.h"
#include "kh_error.h"
#include "policy.h"
#include "resume.h"
#include "ticket_keys.h"

#include "listener.h"

typedef struct {
  const char *socket_path;      /* for logs */
  kh_listener *listener;        /* the bound socket (listener.h); borrowed */
  kh_identity_store *store;     /* borrowed, outlives the server */
  const kh_policy *policy;      /* borrowed: callers, limits, peers */
  kh_resume *resume;            /* borrowed: client session cache */
  kh_ticket_keys **ticket_keys; /* borrowed: current server ticket keys */
  unsigned max_message_bytes;   /* larger requests get RESOURCE_EXHAUSTED */
  unsigned workers;             /* crypto worker threads; 0 = handshakes run inline */
  /* Called once in the event-loop thread when the socket is live, before
   * the first call is served (the sandbox goes on here). */
  void (*after_listen)(void);
  /* Called from the event loop about every 100 ms (rotation, reload). */
  void (*tick)(void *arg);
  void *tick_arg;
} kh_server_config;

/* kh_server_run serves until |*stop| becomes non-zero (set from a signal
 * handler), then stops accepting, cancels in-flight calls, drains and
 * returns 1 (the caller closes the listener, which removes the socket). Returns 0 with |err| set if
 * it cannot start. */
int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err);

#endif /* KH_SERVER_H */

/* server.h: keyholdd's gRPC front end (grpc_unsecure, C core). Serves each
 * registered service (service.h) on the Unix socket the listener accepts
 * on; one completion queue, one event-loop thread, and a pool of crypto
 * worker threads for the services' work (server.c). */
#ifndef KH_SERVER_H
#define KH_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "kh_error.h"
#include "kh_limits.h"
#include "listener.h"
#include "service.h"

typedef struct {
  const char *socket_path;    /* for logs */
  const char *describe;       /* for the "listening on" line ("with 2 identities, ...") */
  kh_listener *listener;      /* the bound socket (listener.h); borrowed */
  const kh_service *services; /* borrowed: one registered method each */
  size_t n_services;          /* 1 to 12 */
  const kh_limits *limits;    /* borrowed: budgets, deadline, connections */
  /* Does the policy grant |caller| anything at all? (listener.h) */
  int (*admit)(void *arg, const kh_caller *caller);
  void *admit_arg;
  unsigned max_message_bytes; /* larger requests get RESOURCE_EXHAUSTED */
  unsigned workers;           /* crypto worker threads; 0 = handled inline */
  /* Called once in the event-loop thread when the socket is live, before
   * the first call is served (the sandbox goes on here). */
  void (*after_listen)(void);
  /* Called from the event loop about every 100 ms (rotation, caches). */
  void (*tick)(void *arg);
  void *tick_arg;
} kh_server_config;

/* kh_server_run serves until |*stop| becomes non-zero (set from a signal
 * handler), then stops accepting, cancels in-flight calls, drains and
 * returns 1 (the caller closes the listener). Returns 0 with |err| set if
 * it cannot start. */
KH_MUST_USE int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop,
                              kh_error *err);

#endif /* KH_SERVER_H */

/* server.c: keyholdd's gRPC C core event loop and the dispatch to services.
 *
 * Every call is a small state machine driven by completion-queue tags:
 *   REQUEST  a new call arrived (re-arm, then start it)
 *   RECV     a request arrived (and our previous response, if any, was sent)
 *   STATUS   our final response and status were sent
 *   CLOSE    the call is over on the wire (RECV_CLOSE_ON_SERVER)
 * A call is freed when CLOSE has fired and no batch is outstanding.
 *
 * One request is armed per registered service (kh_service, service.h) and
 * one for any other method (UNIMPLEMENTED). A call is checked against its
 * connection's credentials (listener.c) and takes a handshake slot
 * (budget.c) before any request is read; a caller the policy grants nothing
 * is refused there.
 *
 * Threads. One thread (the caller of kh_server_run) drives the completion
 * queue; --workers N crypto worker threads (workers.c) run the services'
 * handle(). on_recv queues the request and marks the call busy; a worker
 * handles it without any lock, then finishes it under srv->mu. With no
 * workers, on_recv handles the request itself.
 *
 * Locks: srv->mu guards every call's fields, the budget, live_calls,
 * shutting_down and srv->workers. The event loop holds it while dispatching
 * an event and sweeping; a worker holds it to finish a call
 * (grpc_call_start_batch is thread-safe; holding srv->mu keeps |outstanding|
 * exact). The worker pool's queue has its own lock, taken under srv->mu.
 * A busy call's session and job_req belong to the worker handling it:
 * nothing else reads or frees them while c->busy (maybe_free, the deadline
 * sweep, shedding and on_close leave busy calls alone; the worker frees the
 * call if it ended meanwhile). What services share is thread-safe on its
 * own (their files). */
#include "server.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "absl_tune.h"
#include "budget.h"
#include "kh_log.h"
#include "metrics.h"
#include "kh_secret.h"
#include "workers.h"

#define KH_MAX_SERVICES 12

typedef enum { TAG_REQUEST, TAG_RECV, TAG_SEND, TAG_STATUS, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

struct call;
typedef struct {
  struct call *call;
  tag_kind kind;
} tag;

typedef struct server {
  grpc_server *server;
  grpc_completion_queue *cq;
  void *methods[KH_MAX_SERVICES]; /* registered method handles, per service */
  const kh_server_config *cfg;
  kh_listener *listener;
  kh_budget *budget;
  kh_workers *workers; /* NULL: requests handled inline */
  int shutting_down;
  long live_calls;
  gpr_timespec last_trim;
  gpr_timespec last_call; /* when the last call took a slot */
  unsigned long calls_since_trim;
  unsigned probes;          /* probe calls alive (service.h) */
  struct call *probe_calls; /* probe calls alive, linked through next_probe */
  pthread_mutex_t mu;       /* see the top of the file */
} server;

/* A burst of at least this many concurrent handshakes (or connections) is
 * followed, once it is over, by malloc_trim(): glibc keeps freed session
 * memory that sits mid-heap and would never return it to the system. */
#define KH_TRIM_AFTER_PEAK 256

typedef struct call {
  server *srv;
  const kh_service *svc; /* NULL: a method no service serves */
  int svc_index;         /* which armed request this was (-1: unregistered) */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_call_details details;
  grpc_metadata_array request_md;
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *send_buf;
  int cancelled;
  int closed;      /* CLOSE fired */
  int status_sent; /* SEND_STATUS issued */
  int sent_initial_md;
  int outstanding; /* batches in flight */
  void *session;   /* the service's */
  kh_caller caller;
  kh_budget_slot slot;     /* the handshake slot (budget.h) */
  int busy;                /* a worker owns session and job_req */
  int cancel_log_deferred; /* the client went away while busy */
  grpc_slice job_req;      /* the request being handled */
  kh_job job;              /* workers.h */
  grpc_slice status_details;
  int probe;                 /* on srv->probe_calls, counted in srv->probes */
  int got_request, watching; /* a probe's request came; its client half-closed */
  int sending;               /* a pushed message is in flight */
  long probe_deadline_ms;
  int64_t admitted_ms;
  /* when the call was admitted (metrics) */ /* a probe with no request by then is cut */
  struct call *next_probe, **pprev_probe;
  grpc_byte_buffer *push_buf;
  tag t_request, t_recv, t_send, t_status, t_close;
} call;

static const char *local_name(const call *c) {
  return c->session && c->svc->local_name ? c->svc->local_name(c->session) : "-";
}

static const char *peer_name(const call *c) {
  return c->session && c->svc->peer_name ? c->svc->peer_name(c->session) : "-";
}

/* drop_session frees the service's session now (its TLS state with it). */
static void drop_session(call *c) {
  if (c->session) c->svc->session_free(c->session);
  c->session = NULL;
}

static void unlink_probe(call *c) {
  if (!c->probe) return;
  *c->pprev_probe = c->next_probe;
  if (c->next_probe) c->next_probe->pprev_probe = c->pprev_probe;
  c->probe = 0;
  c->srv->probes--;
}

static void call_free(call *c) {
  kh_budget_release(c->srv->budget, &c->slot);
  unlink_probe(c);
  if (c->push_buf) grpc_byte_buffer_destroy(c->push_buf);
  if (c->call) grpc_call_unref(c->call);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  if (c->send_buf) grpc_byte_buffer_destroy(c->send_buf);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->request_md);
  grpc_slice_unref(c->status_details);
  grpc_slice_unref(c->job_req);
  drop_session(c);
  c->srv->live_calls--;
  free(c);
}

/* maybe_free: a busy call is freed by its worker once handled. */
static void maybe_free(call *c) {
  if (!c->busy && c->outstanding == 0 && (c->closed || c->call == NULL)) call_free(c);
}

/* request_call arms one request: for service |i|, or any other method (-1). */
static void request_call(server *srv, int i) {
  if (srv->shutting_down) return;
  call *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    kh_log(KH_LOG_ERROR, "out of memory: cannot accept more calls");
    return;
  }
  c->srv = srv;
  c->svc_index = i;
  c->svc = i >= 0 ? &srv->cfg->services[i] : NULL;
  c->t_request = (tag){c, TAG_REQUEST};
  c->t_recv = (tag){c, TAG_RECV};
  c->t_send = (tag){c, TAG_SEND};
  c->t_status = (tag){c, TAG_STATUS};
  c->t_close = (tag){c, TAG_CLOSE};
  c->status_details = grpc_empty_slice();
  c->job_req = grpc_empty_slice();
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->request_md);
  srv->live_calls++;
  grpc_call_error e =
      i >= 0 ? grpc_server_request_registered_call(srv->server, srv->methods[i], &c->call,
                                                   &c->deadline, &c->request_md, NULL, srv->cq,
                                                   srv->cq, &c->t_request)
             : grpc_server_request_call(srv->server, &c->call, &c->details, &c->request_md, srv->cq,
                                        srv->cq, &c->t_request);
  if (e != GRPC_CALL_OK) {
    kh_log(KH_LOG_ERROR, "grpc request_call failed: %d", (int)e);
    call_free(c);
    return;
  }
  c->outstanding++;
}

static int start_batch(call *c, const grpc_op *ops, size_t n, tag *t) {
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    kh_log(KH_LOG_ERROR, "grpc_call_start_batch failed: %d", (int)e);
    return 0;
  }
  c->outstanding++;
  return 1;
}

static void add_initial_md(call *c, grpc_op *ops, size_t *n) {
  if (c->sent_initial_md) return;
  memset(&ops[*n], 0, sizeof(ops[*n]));
  ops[*n].op = GRPC_OP_SEND_INITIAL_METADATA;
  (*n)++;
  c->sent_initial_md = 1;
}

/* wipe_free: the destroy hook of response slices, which hold traffic secrets. */
static void wipe_free(void *p, size_t len) {
  kh_wipe(p, len);
  free(p);
}

/* take_response moves |resp|'s bytes into a byte buffer gRPC owns; the
 * buffer is wiped when gRPC releases it. */
static grpc_byte_buffer *take_response(kh_buf *resp) {
  uint8_t *p = resp->data;
  size_t len = resp->len;
  if (p == NULL) {
    p = malloc(1);
    len = 0;
  }
  *resp = (kh_buf)KH_BUF_INIT;
  grpc_slice s = grpc_slice_new_with_len(p, len, wipe_free);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* add_send appends SEND_MESSAGE of |resp| (ownership passes to gRPC). */
static void add_send(call *c, grpc_op *ops, size_t *n, kh_buf *resp) {
  memset(&ops[*n], 0, sizeof(ops[*n]));
  ops[*n].op = GRPC_OP_SEND_MESSAGE;
  c->send_buf = take_response(resp);
  ops[*n].data.send_message.send_message = c->send_buf;
  (*n)++;
}

/* finish sends an optional last message and the status. */
/* count_call: the metrics line of a finished service call (not probes). */
static void count_call(call *c, grpc_status_code code) {
  if (c->svc == NULL || c->probe || c->svc->probe) return;
  char service[100];
  const char *m = c->svc->method + (c->svc->method[0] == '/'), *slash = strchr(m, '/');
  snprintf(service, sizeof(service), "%.*s", slash ? (int)(slash - m) : (int)strlen(m), m);
  const char *side = "-";
  if (c->session != NULL && c->svc->is_server_side != NULL)
    side = c->svc->is_server_side(c->session) ? "server" : "client";
  double secs = c->admitted_ms ? (double)(kh_budget_now_ms() - c->admitted_ms) / 1000.0 : 0;
  kh_metrics_call(service, side, kh_code_name((kh_code)code), local_name(c), secs);
}

static void finish(call *c, kh_buf *resp, grpc_status_code code, const char *details) {
  count_call(c, code);
  grpc_op ops[3];
  size_t n = 0;
  add_initial_md(c, ops, &n);
  if (resp != NULL && resp->len > 0) add_send(c, ops, &n, resp);
  grpc_slice_unref(c->status_details);
  c->status_details = grpc_slice_from_copied_string(details);
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = &c->status_details;
  n++;
  c->status_sent = 1;
  kh_budget_release(c->srv->budget, &c->slot);
  start_batch(c, ops, n, &c->t_status);
}

/* continue_call sends |resp| (if any) and waits for the next request. The
 * initial metadata goes out with the first response, as a gRPC server's
 * usually does: sent when the call arrives, it cost one more write here and
 * one more wake-up of the client, which waits for the message anyway. */
static void continue_call(call *c, kh_buf *resp) {
  grpc_op ops[3];
  size_t n = 0;
  if (resp != NULL) {
    add_initial_md(c, ops, &n);
    add_send(c, ops, &n, resp);
  }
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &c->recv_buf;
  n++;
  start_batch(c, ops, n, &c->t_recv);
}

/* refuse_call: the one log line and the status for a call ended before its
 * session started. */
static void refuse_call(call *c, grpc_status_code code, const char *result, const char *msg) {
  kh_log(KH_LOG_WARN, "handshake caller_uid=%u caller_pid=%d result=%s reason=\"%s\"",
         (unsigned)c->caller.uid, (int)c->caller.pid, result, msg);
  finish(c, NULL, code, msg);
}

/* admit_call: who is calling, may they use keyholdd at all, and do they have
 * a free handshake slot? Ends the call with a precise status if not. */
static int admit_call(call *c) {
  server *srv = c->srv;
  char *peer = grpc_call_get_peer(c->call);
  int admitted = 0;
  int known = kh_listener_caller(srv->listener, peer, &c->caller, &admitted);
  gpr_free(peer);
  char msg[200];
  if (!known) {
    kh_log(KH_LOG_WARN, "call on a connection whose credentials are unknown: refused");
    finish(c, NULL, GRPC_STATUS_UNAVAILABLE, "connection credentials unavailable; reconnect");
    return 0;
  }
  /* Probes (health checks) are open to every caller, outside the budget. */
  if (c->svc->probe) {
    if (srv->probes >= KH_MAX_PROBES) {
      finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many health checks at once");
      return 0;
    }
    srv->probes++;
    c->probe = 1;
    c->probe_deadline_ms = kh_budget_now_ms() + (long)srv->cfg->limits->handshake_timeout_ms;
    c->next_probe = srv->probe_calls;
    if (c->next_probe) c->next_probe->pprev_probe = &c->next_probe;
    c->pprev_probe = &srv->probe_calls;
    srv->probe_calls = c;
    return 1;
  }
  /* A caller the policy grants nothing is refused before any request is
   * read: the answer is the same whatever identity it would have asked for. */
  if (!admitted) {
    char who[40];
    snprintf(msg, sizeof(msg), "%s is granted no identity by keyholdd's policy",
             kh_caller_name(&c->caller, who, sizeof(who)));
    refuse_call(c, GRPC_STATUS_PERMISSION_DENIED, "PERMISSION_DENIED", msg);
    return 0;
  }
  if (!kh_budget_admit(srv->budget, &c->slot, &c->caller, c, msg, sizeof(msg))) {
    refuse_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", msg);
    return 0;
  }
  srv->calls_since_trim++;
  srv->last_call = gpr_now(GPR_CLOCK_MONOTONIC);
  c->admitted_ms = kh_budget_now_ms();
  return 1;
}

/* cut_expired (kh_budget_expire): a stalled peer or app gets
 * DEADLINE_EXCEEDED and its session is freed now. A call a worker is
 * handling is cut off at a later sweep, if it still needs to be. */
static void cut_expired(void *owner) {
  call *c = owner;
  if (c->status_sent || c->busy) return;
  char msg[160];
  snprintf(msg, sizeof(msg), "handshake did not finish within %u ms",
           c->srv->cfg->limits->handshake_timeout_ms);
  kh_log(KH_LOG_WARN,
         "handshake caller_uid=%u caller_pid=%d local=%s peer=%s result=DEADLINE_EXCEEDED "
         "reason=\"%s\"",
         (unsigned)c->caller.uid, (int)c->caller.pid, local_name(c), peer_name(c), msg);
  drop_session(c);
  finish(c, NULL, GRPC_STATUS_DEADLINE_EXCEEDED, msg);
}

static void on_new_call(call *c, int ok) {
  server *srv = c->srv;
  if (!ok) { /* server shutting down: the request was never matched */
    c->call = NULL;
    return;
  }
  request_call(srv, c->svc_index); /* keep one request armed per kind */
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (!start_batch(c, &op, 1, &c->t_close)) {
    c->closed = 1;
    return;
  }
  if (c->svc == NULL) {
    char *method = grpc_slice_to_c_string(c->details.method);
    char msg[300];
    snprintf(msg, sizeof(msg), "method %.200s is not served by keyholdd", method);
    kh_log(KH_LOG_WARN, "rejected call to unknown method %.200s", method);
    gpr_free(method);
    finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
    return;
  }
  if (!admit_call(c)) return;
  c->session = c->svc->session_new(c->svc->arg, &c->caller);
  if (c->session == NULL) {
    finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  continue_call(c, NULL);
}

/* log_cancelled: the one line for a handshake the app abandoned. */
static void log_cancelled(call *c, const char *why) {
  if (c->session == NULL) return;
  kh_log(KH_LOG_WARN,
         "handshake caller_uid=%u caller_pid=%d local=%s peer=%s result=CANCELLED reason=\"%s\"",
         (unsigned)c->caller.uid, (int)c->caller.pid, local_name(c), peer_name(c), why);
}

/* can_shed (kh_budget_to_server): a call no worker holds and not ended. */
static int can_shed(void *owner) {
  call *o = owner;
  return !o->busy && !o->status_sent;
}

/* rebudget: once a call's first request shows a server-side handshake, its
 * slot moves to its process's server-side budget, so network peers of an
 * app's server cannot spend the app's client-side handshakes; past that
 * budget the process's oldest unfinished server-side handshake is shed
 * (every one of them is with a peer not yet authenticated). */
static void rebudget(call *c) {
  if (c->slot.kind != KH_SLOT_UID || c->session == NULL || c->svc->is_server_side == NULL ||
      !c->svc->is_server_side(c->session))
    return;
  unsigned active = 0;
  kh_budget_slot *victim = kh_budget_to_server(c->srv->budget, &c->slot, can_shed, &active);
  if (victim == NULL) return;
  call *oldest = victim->owner;
  char msg[200];
  snprintf(msg, sizeof(msg),
           "shed: process %d has %u server-side handshakes in progress "
           "(max_server_handshakes_per_process); the oldest goes first",
           (int)c->caller.pid, active);
  kh_log(KH_LOG_WARN,
         "handshake side=server caller_uid=%u caller_pid=%d local=%s peer=- "
         "result=RESOURCE_EXHAUSTED reason=\"%s\"",
         (unsigned)oldest->caller.uid, (int)oldest->caller.pid, local_name(oldest), msg);
  drop_session(oldest);
  finish(oldest, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

/* complete_request acts on a handled request's outcome (srv->mu held). A
 * call that ended on the wire while a worker held it gets nothing more. */
static void complete_request(call *c, kh_rpc_outcome out, kh_buf *resp, const kh_error *err) {
  if (out == KH_RPC_CONTINUE) rebudget(c);
  if (c->closed) {
    if (c->cancel_log_deferred && out == KH_RPC_CONTINUE) {
      log_cancelled(c, "client went away");
      count_call(c, GRPC_STATUS_CANCELLED);
    }
  } else {
    switch (out) {
      case KH_RPC_CONTINUE: continue_call(c, resp); break;
      case KH_RPC_FINISHED: finish(c, resp, GRPC_STATUS_OK, ""); break;
      case KH_RPC_FAILED:
        finish(c, resp, (grpc_status_code)kh_code_to_grpc(err->code), err->msg);
        break;
    }
  }
  kh_buf_free(resp);
}

/* run_job (a worker): handle the busy call's request with no lock held,
 * then finish it under srv->mu. */
static void run_job(kh_job *job, int refuse, void *arg) {
  server *srv = arg;
  call *c = (call *)((char *)job - offsetof(call, job));
  grpc_slice req = c->job_req;
  c->job_req = grpc_empty_slice();
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  kh_rpc_outcome out = KH_RPC_FAILED;
  if (refuse)
    kh_err(&err, KH_ERR_UNAVAILABLE, "keyholdd is shutting down");
  else
    out =
        c->svc->handle(c->session, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req), &resp, &err);
  grpc_slice_unref(req);

  pthread_mutex_lock(&srv->mu);
  c->busy = 0;
  if (refuse) log_cancelled(c, "keyholdd shut down before the request was handled");
  complete_request(c, out, &resp, &err);
  maybe_free(c);
  pthread_mutex_unlock(&srv->mu);
}

static void on_recv(call *c, int ok) {
  if (c->send_buf) {
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
  }
  if (!ok || c->status_sent) return; /* call cancelled: CLOSE will tidy up */
  if (c->recv_buf == NULL && c->svc->watch != NULL && c->got_request) {
    c->watching = 1; /* the client has said all it says; pushes follow */
    return;
  }
  if (c->recv_buf != NULL) c->got_request = 1;
  if (c->recv_buf == NULL) {
    /* The client half-closed before the handshake finished. */
    log_cancelled(c, "client closed the stream");
    finish(c, NULL, GRPC_STATUS_CANCELLED, "stream closed by the client before the session ended");
    return;
  }
  grpc_byte_buffer_reader reader;
  grpc_slice req = grpc_empty_slice();
  if (grpc_byte_buffer_reader_init(&reader, c->recv_buf)) {
    req = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
  }
  grpc_byte_buffer_destroy(c->recv_buf);
  c->recv_buf = NULL;

  if (c->srv->workers != NULL) { /* a worker handles it and finishes the call */
    c->busy = 1;
    c->job_req = req;
    kh_workers_push(c->srv->workers, &c->job);
    return;
  }
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  kh_rpc_outcome out =
      c->svc->handle(c->session, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req), &resp, &err);
  grpc_slice_unref(req);
  complete_request(c, out, &resp, &err);
}

/* on_close only marks a busy call: its worker logs and frees it. */
static void on_close(call *c) {
  c->closed = 1;
  unlink_probe(c);
  if (c->svc != NULL && c->svc->probe) return; /* not a handshake: nothing to log */
  if (!c->cancelled || c->status_sent) return;
  if (c->busy)
    c->cancel_log_deferred = 1;
  else
    log_cancelled(c, "client went away"), count_call(c, GRPC_STATUS_CANCELLED);
}

static void dispatch(tag *t, int ok) {
  call *c = t->call;
  c->outstanding--;
  switch (t->kind) {
    case TAG_REQUEST: on_new_call(c, ok); break;
    case TAG_RECV: on_recv(c, ok); break;
    case TAG_SEND:
      c->sending = 0;
      if (c->push_buf) grpc_byte_buffer_destroy(c->push_buf);
      c->push_buf = NULL;
      break;
    case TAG_STATUS:
      if (c->send_buf) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
      }
      break;
    case TAG_CLOSE: on_close(c); break;
    case TAG_SHUTDOWN: break;
  }
  maybe_free(c);
}

/* drain dispatches events: until the queue shuts down, or for about 100 ms
 * (so the caller's periodic work runs even under constant load). */
static void drain(server *srv, int until_shutdown) {
  gpr_timespec end = until_shutdown ? gpr_inf_future(GPR_CLOCK_REALTIME)
                                    : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                                   gpr_time_from_millis(100, GPR_TIMESPAN));
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(srv->cq, end, NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN || ev.type == GRPC_QUEUE_TIMEOUT) return;
    tag *t = ev.tag;
    pthread_mutex_lock(&srv->mu);
    if (t->kind == TAG_SHUTDOWN)
      srv->shutting_down = 2;
    else
      dispatch(t, ev.success);
    pthread_mutex_unlock(&srv->mu);
  }
}

/* maybe_trim returns freed memory (srv->mu held): after a burst of
 * handshakes or connections has drained, and once keyholdd has been quiet
 * for 2 s after serving (a steady trickle never makes a burst, but leaves as
 * much free memory mid-heap). At most once a second: the trim itself costs
 * ~15 ms after 10,000 sessions (docs/PERFORMANCE.md). The count restarts
 * from what is still in flight, so the tail of a large burst gets a second
 * trim. */
static void maybe_trim(server *srv, gpr_timespec now) {
  unsigned open, conn_peak;
  kh_listener_stats(srv->listener, &open, &conn_peak, 0);
  long in_flight = kh_budget_in_flight(srv->budget), peak = kh_budget_peak(srv->budget);
  int hs_burst = peak >= KH_TRIM_AFTER_PEAK && in_flight <= peak / 8;
  int conn_burst = conn_peak >= KH_TRIM_AFTER_PEAK && open <= conn_peak / 8;
  int quiet =
      in_flight == 0 && srv->calls_since_trim > 0 &&
      gpr_time_cmp(gpr_time_sub(now, srv->last_call), gpr_time_from_seconds(2, GPR_TIMESPAN)) >= 0;
  if (!hs_burst && !conn_burst && !quiet) return;
  if (gpr_time_cmp(gpr_time_sub(now, srv->last_trim), gpr_time_from_seconds(1, GPR_TIMESPAN)) < 0)
    return;
  malloc_trim(0);
  struct mallinfo2 mi = mallinfo2();
  kh_log(quiet ? KH_LOG_DEBUG : KH_LOG_INFO,
         "memory returned after a burst of %ld handshakes and %u connections: %ld in flight, %u "
         "open, heap in use %zu KiB",
         peak, conn_peak, in_flight, open, (mi.uordblks + mi.hblkhd) / 1024);
  srv->last_trim = now;
  srv->calls_since_trim = 0;
  kh_budget_reset_peak(srv->budget);
  kh_listener_stats(srv->listener, &open, &conn_peak, 1);
}

/* tend_probes (srv->mu held): a probe call whose request has not come
 * within handshake_timeout_ms is cut (KH_MAX_PROBES stalled clients would
 * otherwise block every health check); each streaming call's news is sent,
 * at most one message in flight per call. */
static void tend_probes(server *srv) {
  long now = kh_budget_now_ms();
  for (call *c = srv->probe_calls; c != NULL; c = c->next_probe) {
    if (c->status_sent || c->closed || c->busy) continue;
    if (!c->got_request && now > c->probe_deadline_ms) {
      finish(c, NULL, GRPC_STATUS_DEADLINE_EXCEEDED, "no health check request in time");
      continue;
    }
    if (!c->watching || c->sending) continue;
    kh_buf resp = KH_BUF_INIT;
    if (!c->svc->watch(c->session, &resp)) {
      kh_buf_free(&resp);
      continue;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    c->push_buf = take_response(&resp);
    op.data.send_message.send_message = c->push_buf;
    c->sending = start_batch(c, &op, 1, &c->t_send);
  }
}

static void loop_tick(server *srv, gpr_timespec *last) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(gpr_time_sub(now, *last), gpr_time_from_millis(90, GPR_TIMESPAN)) < 0) return;
  *last = now;
  pthread_mutex_lock(&srv->mu);
  kh_budget_expire(srv->budget, kh_budget_now_ms(), cut_expired);
  maybe_trim(srv, now);
  tend_probes(srv);
  kh_metrics_set_in_flight(kh_budget_in_flight(srv->budget));
  pthread_mutex_unlock(&srv->mu);
  if (srv->cfg->tick) srv->cfg->tick(srv->cfg->tick_arg);
}

/* stop_workers: queued jobs are answered (refused by then), then every
 * worker is joined; later requests are handled inline. */
static void stop_workers(server *srv) {
  kh_workers *w = srv->workers;
  kh_workers_stop(w); /* the workers take srv->mu: not held here */
  pthread_mutex_lock(&srv->mu);
  srv->workers = NULL;
  pthread_mutex_unlock(&srv->mu);
}

/* create_server: the gRPC server with keyholdd's channel arguments and one
 * registered method per service. */
static int create_server(server *srv, kh_error *err) {
  const kh_server_config *cfg = srv->cfg;
  grpc_arg args[3];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = (int)(cfg->max_message_bytes ? cfg->max_message_bytes : 256 * 1024);
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
  args[1].value.integer = 1024;
  /* A connection with no call for this long is closed (GOAWAY, then close);
   * the shim's channel reconnects when it next needs the sidecar. */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_MAX_CONNECTION_IDLE_MS;
  args[2].value.integer = (int)cfg->limits->idle_timeout_ms;
  grpc_channel_args chargs = {3, args};
  srv->cq = grpc_completion_queue_create_for_next(NULL);
  srv->server = grpc_server_create(&chargs, NULL);
  for (size_t i = 0; i < cfg->n_services; i++) {
    srv->methods[i] = grpc_server_register_method(srv->server, cfg->services[i].method, NULL,
                                                  GRPC_SRM_PAYLOAD_NONE, 0);
    if (srv->methods[i] == NULL)
      return kh_err(err, KH_ERR_INTERNAL, "cannot register %s", cfg->services[i].method);
  }
  grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
  grpc_server_start(srv->server);
  return 1;
}

/* shutdown_server: cancel what is in flight, drain, destroy. */
static void shutdown_server(server *srv) {
  /* live_calls counts the armed requests (one per kind) too. */
  long armed = (long)srv->cfg->n_services + 1;
  pthread_mutex_lock(&srv->mu);
  kh_log(KH_LOG_INFO, "shutting down: cancelling %ld in-flight calls",
         srv->live_calls > armed ? srv->live_calls - armed : 0);
  srv->shutting_down = 1;
  pthread_mutex_unlock(&srv->mu);
  kh_workers_refuse(srv->workers);
  tag shutdown_tag = {NULL, TAG_SHUTDOWN};
  grpc_server_shutdown_and_notify(srv->server, srv->cq, &shutdown_tag);
  grpc_server_cancel_all_calls(srv->server);
  while (srv->shutting_down != 2) drain(srv, 0); /* only this thread writes it */
  stop_workers(srv); /* before any call can be destroyed with the server */
  grpc_server_destroy(srv->server);
  grpc_completion_queue_shutdown(srv->cq);
  drain(srv, 1);
  grpc_completion_queue_destroy(srv->cq);
}

int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err) {
  if (cfg->n_services == 0 || cfg->n_services > KH_MAX_SERVICES)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "1 to %d services", KH_MAX_SERVICES);
  server srv = {.cfg = cfg, .listener = cfg->listener};
  if ((srv.budget = kh_budget_new(cfg->limits)) == NULL)
    return kh_err(err, KH_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&srv.mu, NULL);
  srv.workers = kh_workers_start(cfg->workers, run_job, &srv);
  kh_absl_tune();
  grpc_init();
  int ok = create_server(&srv, err);
  if (ok) {
    pthread_mutex_lock(&srv.mu);
    for (size_t i = 0; i < cfg->n_services; i++) request_call(&srv, (int)i);
    request_call(&srv, -1);
    pthread_mutex_unlock(&srv.mu);
    kh_listener_config lcfg = {
        .limits = *cfg->limits, .admit = cfg->admit, .admit_arg = cfg->admit_arg};
    ok = kh_listener_start(srv.listener, srv.server, &lcfg, err);
  }
  if (ok && cfg->after_listen) cfg->after_listen();
  if (ok) {
    kh_log(KH_LOG_INFO, "listening on unix:%s %s, %u crypto workers", cfg->socket_path,
           cfg->describe ? cfg->describe : "", kh_workers_count(srv.workers));
    gpr_timespec last = gpr_now(GPR_CLOCK_MONOTONIC);
    while (!*stop) {
      drain(&srv, 0);
      loop_tick(&srv, &last);
    }
  }
  kh_listener_stop_accepting(srv.listener);
  if (srv.server != NULL) shutdown_server(&srv);
  grpc_shutdown();
  kh_budget_free(srv.budget);
  pthread_mutex_destroy(&srv.mu);
  return ok;
}

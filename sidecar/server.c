/* server.c: the gRPC C core event loop of keyholdd.
 *
 * Every call is a small state machine driven by completion-queue tags:
 *   REQUEST  a new call arrived (re-arm, then start it)
 *   RECV     a request arrived (and our previous response, if any, was sent)
 *   STATUS   our final response and status were sent
 *   CLOSE    the call is over on the wire (RECV_CLOSE_ON_SERVER)
 * A call is freed when CLOSE has fired and no batch is outstanding.
 *
 * Each SetUpSession call is checked against its connection's credentials
 * (listener.c) and the policy before any request is read; every live call
 * is on a list swept for the handshake deadline.
 *
 * Threads. One thread (the caller of kh_server_run) drives the completion
 * queue; --workers N crypto worker threads run kh_s2a_session_handle (the
 * BoringSSL work). on_recv queues the request and marks the call busy; a
 * worker handles it without any lock, then finishes it under srv->mu. With
 * no workers, on_recv handles the request itself, as before.
 *
 * Locks (never held together, except srv->mu then srv->q_mu in on_recv):
 *   srv->mu    every call's fields, the per-uid counts, the active (deadline)
 *              list, live_calls, in_flight/peak, shutting_down, n_workers. The
 *              event loop holds it while dispatching an event and sweeping; a
 *              worker holds it to finish a call (grpc_call_start_batch is
 *              thread-safe; holding srv->mu keeps |outstanding| exact).
 *   srv->q_mu  the work queue (q_head/q_tail, job_next) and q_refuse/q_stop.
 *   A busy call's session and job_req belong to the worker handling it:
 *   nothing else reads or frees them while c->busy (maybe_free, the deadline
 *   sweep and on_close leave busy calls alone; the worker frees the call if
 *   it ended meanwhile). The identity store, resumption cache, ticket-key
 *   slot, TLS contexts and log are thread-safe on their own (their files);
 *   the policy and srv->env are read-only while serving. */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "absl_tune.h"
#include "kh_buf.h"
#include "kh_log.h"
#include "kh_secret.h"
#include "listener.h"
#include "s2a_session.h"

#define KH_S2A_METHOD "/s2a.proto.S2AService/SetUpSession"

typedef enum { TAG_REQUEST, TAG_RECV, TAG_STATUS, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

struct call;
typedef struct {
  struct call *call;
  tag_kind kind;
} tag;

typedef struct {
  uid_t uid;
  unsigned active;
} uid_count;

/* Server-side handshakes in progress of one calling process. */
typedef struct {
  uid_t uid;
  pid_t pid;
  unsigned active;
} proc_count;

/* Which budget a call's handshake slot is taken from: its uid's (every call
 * until its first request shows a server-side handshake, and client-side
 * ones), or its process's server-side budget. */
typedef enum { BUDGET_NONE, BUDGET_UID, BUDGET_PROC } budget;

typedef struct server {
  grpc_server *server;
  grpc_completion_queue *cq;
  void *method;
  const kh_server_config *cfg;
  kh_s2a_env env;
  kh_listener *listener;
  int shutting_down;
  long live_calls;
  struct call *active; /* calls holding a handshake slot (deadline sweep) */
  uid_count *counts;   /* handshakes in progress per caller uid */
  size_t n_counts;
  proc_count *procs; /* server-side handshakes in progress per process */
  size_t n_procs;
  unsigned conn_peak_seen;        /* listener's connection peak at the last trim check */
  long in_flight, peak_in_flight; /* handshakes holding a slot, and their peak */
  gpr_timespec last_trim;
  gpr_timespec last_call; /* when the last call arrived */
  unsigned long calls_since_trim;
  pthread_mutex_t mu; /* see the top of the file */
  /* Crypto workers and their queue: busy calls, linked through job_next.
   * A call is queued at most once (it is busy until handled), so the queue
   * never holds more jobs than there are live calls. */
  pthread_mutex_t q_mu;
  pthread_cond_t q_cond;
  struct call *q_head, *q_tail;
  int q_refuse;       /* shutting down: answer queued jobs without handling them */
  int q_stop;         /* workers exit once the queue is empty */
  pthread_t *workers; /* n_workers running; 0 = requests handled inline */
  unsigned n_workers;
} server;

/* A burst of at least this many concurrent handshakes is followed, once it
 * is over, by malloc_trim(): glibc keeps freed session memory that sits
 * mid-heap and would never return it to the system on its own. */
#define KH_TRIM_AFTER_PEAK 256

typedef struct call {
  server *srv;
  int registered; /* SetUpSession, or any other method (UNIMPLEMENTED) */
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
  kh_s2a_session *session;
  kh_caller caller;
  budget counted;           /* holds a handshake slot of this budget */
  gpr_timespec expires;     /* handshake deadline (monotonic) */
  struct call *prev, *next; /* srv->active */
  int busy;                 /* a worker owns session and job_req */
  int cancel_log_deferred;  /* the client went away while busy */
  grpc_slice job_req;       /* the request being handled */
  struct call *job_next;    /* srv->q_head */
  grpc_slice status_details;
  tag t_request, t_recv, t_status, t_close;
} call;

/* --- per-caller accounting ----------------------------------------------- */

static uid_count *count_for(server *srv, uid_t uid) {
  for (size_t i = 0; i < srv->n_counts; i++)
    if (srv->counts[i].uid == uid) return &srv->counts[i];
  uid_count *grown = realloc(srv->counts, (srv->n_counts + 1) * sizeof(*grown));
  if (grown == NULL) return NULL;
  srv->counts = grown;
  srv->counts[srv->n_counts] = (uid_count){.uid = uid};
  return &srv->counts[srv->n_counts++];
}

static proc_count *proc_for(server *srv, const kh_caller *c) {
  for (size_t i = 0; i < srv->n_procs; i++)
    if (srv->procs[i].pid == c->pid && srv->procs[i].uid == c->uid) return &srv->procs[i];
  proc_count *grown = realloc(srv->procs, (srv->n_procs + 1) * sizeof(*grown));
  if (grown == NULL) return NULL;
  srv->procs = grown;
  srv->procs[srv->n_procs] = (proc_count){.uid = c->uid, .pid = c->pid};
  return &srv->procs[srv->n_procs++];
}

/* uncount gives a call's handshake slot back to its budget. Emptied process
 * entries go (pids come and go); uid entries are few and stay. */
static void uncount(call *c) {
  server *srv = c->srv;
  if (c->counted == BUDGET_UID) {
    uid_count *n = count_for(srv, c->caller.uid);
    if (n && n->active) n->active--;
  } else if (c->counted == BUDGET_PROC) {
    proc_count *p = proc_for(srv, &c->caller);
    if (p && p->active && --p->active == 0) *p = srv->procs[--srv->n_procs];
  }
  c->counted = BUDGET_NONE;
}

/* release_slot ends a call's claim on its handshake budget and takes it off
 * the deadline list; the session (and its TLS state) goes with it. */
static void release_slot(call *c) {
  if (!c->counted) return;
  server *srv = c->srv;
  uncount(c);
  srv->in_flight--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->active = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void call_free(call *c) {
  release_slot(c);
  if (c->call) grpc_call_unref(c->call);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  if (c->send_buf) grpc_byte_buffer_destroy(c->send_buf);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->request_md);
  grpc_slice_unref(c->status_details);
  grpc_slice_unref(c->job_req);
  kh_s2a_session_free(c->session);
  c->srv->live_calls--;
  free(c);
}

/* maybe_free: a busy call is freed by its worker once handled. */
static void maybe_free(call *c) {
  if (!c->busy && c->outstanding == 0 && (c->closed || c->call == NULL)) call_free(c);
}

static void request_call(server *srv, int registered) {
  if (srv->shutting_down) return;
  call *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    kh_log(KH_LOG_ERROR, "out of memory: cannot accept more calls");
    return;
  }
  c->srv = srv;
  c->registered = registered;
  c->t_request = (tag){c, TAG_REQUEST};
  c->t_recv = (tag){c, TAG_RECV};
  c->t_status = (tag){c, TAG_STATUS};
  c->t_close = (tag){c, TAG_CLOSE};
  c->status_details = grpc_empty_slice();
  c->job_req = grpc_empty_slice();
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->request_md);
  srv->live_calls++;
  grpc_call_error e =
      registered ? grpc_server_request_registered_call(srv->server, srv->method, &c->call,
                                                       &c->deadline, &c->request_md, NULL, srv->cq,
                                                       srv->cq, &c->t_request)
                 : grpc_server_request_call(srv->server, &c->call, &c->details, &c->request_md,
                                            srv->cq, srv->cq, &c->t_request);
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

/* finish sends an optional last message and the status. */
static void finish(call *c, kh_buf *resp, grpc_status_code code, const char *details) {
  grpc_op ops[3];
  size_t n = 0;
  add_initial_md(c, ops, &n);
  if (resp != NULL && resp->len > 0) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    c->send_buf = take_response(resp);
    ops[n].data.send_message.send_message = c->send_buf;
    n++;
  }
  grpc_slice_unref(c->status_details);
  c->status_details = grpc_slice_from_copied_string(details);
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = &c->status_details;
  n++;
  c->status_sent = 1;
  release_slot(c);
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
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    c->send_buf = take_response(resp);
    ops[n].data.send_message.send_message = c->send_buf;
    n++;
  }
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &c->recv_buf;
  n++;
  start_batch(c, ops, n, &c->t_recv);
}

/* admit_call: who is calling, may they use keyholdd at all, and do they have
 * a free handshake slot? Ends the call with a precise status if not. */
static int admit_call(call *c) {
  server *srv = c->srv;
  const kh_policy *pol = srv->cfg->policy;
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
  /* A caller the policy grants nothing is refused before any request is
   * read: the answer is the same whatever identity it would have asked for. */
  if (!admitted) {
    snprintf(msg, sizeof(msg), "caller uid %u is granted no identity by keyholdd's policy",
             (unsigned)c->caller.uid);
    kh_log(KH_LOG_WARN,
           "handshake caller_uid=%u caller_pid=%d result=PERMISSION_DENIED reason=\"%s\"",
           (unsigned)c->caller.uid, (int)c->caller.pid, msg);
    finish(c, NULL, GRPC_STATUS_PERMISSION_DENIED, msg);
    return 0;
  }
  uid_count *n = count_for(srv, c->caller.uid);
  if (n == NULL) {
    finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return 0;
  }
  if (n->active >= pol->limits.max_handshakes_per_caller) {
    snprintf(msg, sizeof(msg), "caller uid %u already has %u handshakes in progress (the limit)",
             (unsigned)c->caller.uid, n->active);
    kh_log(KH_LOG_WARN,
           "handshake caller_uid=%u caller_pid=%d result=RESOURCE_EXHAUSTED "
           "reason=\"%s\"",
           (unsigned)c->caller.uid, (int)c->caller.pid, msg);
    finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    return 0;
  }
  n->active++;
  c->counted = BUDGET_UID;
  srv->calls_since_trim++;
  srv->last_call = gpr_now(GPR_CLOCK_MONOTONIC);
  if (++srv->in_flight > srv->peak_in_flight) srv->peak_in_flight = srv->in_flight;
  c->expires = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                            gpr_time_from_millis(pol->limits.handshake_timeout_ms, GPR_TIMESPAN));
  c->next = srv->active;
  if (srv->active) srv->active->prev = c;
  srv->active = c;
  return 1;
}

/* sweep_deadlines cuts off handshakes past the deadline: a stalled peer or
 * app gets DEADLINE_EXCEEDED and its session is freed now. A call a worker
 * is handling is cut off at a later sweep, if it still needs to be. */
static void sweep_deadlines(server *srv) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  call *c = srv->active;
  while (c != NULL) {
    call *next = c->next;
    if (gpr_time_cmp(now, c->expires) >= 0 && !c->status_sent && !c->busy) {
      char msg[160];
      snprintf(msg, sizeof(msg), "handshake did not finish within %u ms",
               srv->cfg->policy->limits.handshake_timeout_ms);
      kh_log(KH_LOG_WARN,
             "handshake caller_uid=%u caller_pid=%d local=%s peer=%s result=DEADLINE_EXCEEDED "
             "reason=\"%s\"",
             (unsigned)c->caller.uid, (int)c->caller.pid,
             c->session ? kh_s2a_session_local_name(c->session) : "-",
             c->session ? kh_s2a_session_peer_name(c->session) : "-", msg);
      kh_s2a_session_free(c->session);
      c->session = NULL;
      release_slot(c);
      finish(c, NULL, GRPC_STATUS_DEADLINE_EXCEEDED, msg);
    }
    c = next;
  }
}

static void on_new_call(call *c, int ok) {
  server *srv = c->srv;
  if (!ok) { /* server shutting down: the request was never matched */
    c->call = NULL;
    return;
  }
  request_call(srv, c->registered); /* keep one request armed per kind */
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (!start_batch(c, &op, 1, &c->t_close)) {
    c->closed = 1;
    return;
  }
  if (!c->registered) {
    char *method = grpc_slice_to_c_string(c->details.method);
    char msg[300];
    snprintf(msg, sizeof(msg), "method %.200s is not served by keyholdd", method);
    kh_log(KH_LOG_WARN, "rejected call to unknown method %.200s", method);
    gpr_free(method);
    finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
    return;
  }
  if (!admit_call(c)) return;
  c->session = kh_s2a_session_new(&srv->env, &c->caller);
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
         (unsigned)c->caller.uid, (int)c->caller.pid, kh_s2a_session_local_name(c->session),
         kh_s2a_session_peer_name(c->session), why);
}

/* shed_oldest_server: the oldest server-side handshake of |c|'s process
 * that no worker holds ends with RESOURCE_EXHAUSTED (srv->mu held). Every
 * unfinished server-side handshake is with a peer not yet authenticated. */
static void shed_oldest_server(call *c, unsigned active) {
  call *oldest = NULL;
  for (call *o = c->srv->active; o != NULL; o = o->next) /* newest first */
    if (o != c && o->counted == BUDGET_PROC && o->caller.pid == c->caller.pid &&
        o->caller.uid == c->caller.uid && !o->busy && !o->status_sent)
      oldest = o;
  if (oldest == NULL) return;
  char msg[200];
  snprintf(msg, sizeof(msg),
           "shed: process %d has %u server-side handshakes in progress "
           "(max_server_handshakes_per_process); the oldest goes first",
           (int)c->caller.pid, active);
  kh_log(KH_LOG_WARN,
         "handshake side=server caller_uid=%u caller_pid=%d local=%s peer=- "
         "result=RESOURCE_EXHAUSTED reason=\"%s\"",
         (unsigned)oldest->caller.uid, (int)oldest->caller.pid,
         oldest->session ? kh_s2a_session_local_name(oldest->session) : "-", msg);
  kh_s2a_session_free(oldest->session);
  oldest->session = NULL;
  finish(oldest, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

/* rebudget: once a call's first request shows a server-side handshake, its
 * slot moves from the uid's budget to its process's server-side budget, so
 * network peers of `serve` cannot spend the app's client-side handshakes. */
static void rebudget(call *c) {
  if (c->counted != BUDGET_UID || c->session == NULL || !kh_s2a_session_is_server(c->session))
    return;
  proc_count *p = proc_for(c->srv, &c->caller);
  if (p == NULL) return; /* out of memory: it stays on the uid's budget */
  uncount(c);
  c->counted = BUDGET_PROC;
  p->active++;
  unsigned cap = c->srv->cfg->policy->limits.max_server_handshakes_per_process;
  if (p->active > cap) shed_oldest_server(c, p->active);
}

/* complete_request acts on a handled request's outcome (srv->mu held). A
 * call that ended on the wire while a worker held it gets nothing more. */
static void complete_request(call *c, kh_s2a_outcome out, kh_buf *resp, const kh_error *err) {
  if (out == KH_S2A_CONTINUE) rebudget(c);
  if (c->closed) {
    if (c->cancel_log_deferred && out == KH_S2A_CONTINUE) log_cancelled(c, "client went away");
  } else {
    switch (out) {
      case KH_S2A_CONTINUE: continue_call(c, resp); break;
      case KH_S2A_FINISHED: finish(c, resp, GRPC_STATUS_OK, ""); break;
      case KH_S2A_FAILED:
        finish(c, resp, (grpc_status_code)kh_code_to_grpc(err->code), err->msg);
        break;
    }
  }
  kh_buf_free(resp);
}

/* queue_job hands a busy call to the workers (srv->mu held). */
static void queue_job(server *srv, call *c) {
  pthread_mutex_lock(&srv->q_mu);
  c->job_next = NULL;
  if (srv->q_tail)
    srv->q_tail->job_next = c;
  else
    srv->q_head = c;
  srv->q_tail = c;
  pthread_cond_signal(&srv->q_cond);
  pthread_mutex_unlock(&srv->q_mu);
}

/* worker_main: pop a busy call, handle its request with no lock held, then
 * finish it under srv->mu. Exits when told to stop and the queue is empty. */
static void *worker_main(void *arg) {
  server *srv = arg;
  for (;;) {
    pthread_mutex_lock(&srv->q_mu);
    while (srv->q_head == NULL && !srv->q_stop) pthread_cond_wait(&srv->q_cond, &srv->q_mu);
    call *c = srv->q_head;
    if (c != NULL) {
      srv->q_head = c->job_next;
      if (srv->q_head == NULL) srv->q_tail = NULL;
      c->job_next = NULL;
    }
    int refuse = srv->q_refuse;
    pthread_mutex_unlock(&srv->q_mu);
    if (c == NULL) return NULL;

    grpc_slice req = c->job_req;
    c->job_req = grpc_empty_slice();
    kh_buf resp = KH_BUF_INIT;
    kh_error err;
    kh_s2a_outcome out = KH_S2A_FAILED;
    if (refuse)
      kh_err(&err, KH_ERR_UNAVAILABLE, "keyholdd is shutting down");
    else
      out = kh_s2a_session_handle(c->session, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req),
                                  &resp, &err);
    grpc_slice_unref(req);

    pthread_mutex_lock(&srv->mu);
    c->busy = 0;
    if (refuse) log_cancelled(c, "keyholdd shut down before the request was handled");
    complete_request(c, out, &resp, &err);
    maybe_free(c);
    pthread_mutex_unlock(&srv->mu);
  }
}

static void on_recv(call *c, int ok) {
  if (c->send_buf) {
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
  }
  if (!ok || c->status_sent) return; /* call cancelled: CLOSE will tidy up */
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

  if (c->srv->n_workers > 0) { /* a worker handles it and finishes the call */
    c->busy = 1;
    c->job_req = req;
    queue_job(c->srv, c);
    return;
  }
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  kh_s2a_outcome out = kh_s2a_session_handle(c->session, GRPC_SLICE_START_PTR(req),
                                             GRPC_SLICE_LENGTH(req), &resp, &err);
  grpc_slice_unref(req);
  complete_request(c, out, &resp, &err);
}

/* on_close only marks a busy call: its worker logs and frees it. */
static void on_close(call *c) {
  c->closed = 1;
  if (!c->cancelled || c->status_sent) return;
  if (c->busy)
    c->cancel_log_deferred = 1;
  else
    log_cancelled(c, "client went away");
}

static void dispatch(tag *t, int ok) {
  call *c = t->call;
  c->outstanding--;
  switch (t->kind) {
    case TAG_REQUEST: on_new_call(c, ok); break;
    case TAG_RECV: on_recv(c, ok); break;
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

/* admit_uid: at accept time, does the policy grant this caller anything? */
static int admit_uid(void *arg, const kh_caller *c) {
  return kh_policy_admits((const kh_policy *)arg, c);
}

/* maybe_trim returns a finished burst's memory, at most once a second (the
 * trim itself costs ~15 ms after 10,000 sessions, see docs/PERFORMANCE.md).
 * The trim restarts the count from what is still in flight, so the tail of
 * a large burst (an eighth of 10,000 is still 1,250) gets a second trim. */
static void maybe_trim(server *srv, gpr_timespec now) {
  unsigned open, conn_peak;
  kh_listener_stats(srv->listener, &open, &conn_peak, 0);
  int hs_burst =
      srv->peak_in_flight >= KH_TRIM_AFTER_PEAK && srv->in_flight <= srv->peak_in_flight / 8;
  int conn_burst = conn_peak >= KH_TRIM_AFTER_PEAK && open <= conn_peak / 8;
  /* And once keyholdd goes quiet after serving: a steady trickle never
   * makes a burst, but leaves as much free memory mid-heap. */
  int quiet =
      srv->in_flight == 0 && srv->calls_since_trim > 0 &&
      gpr_time_cmp(gpr_time_sub(now, srv->last_call), gpr_time_from_seconds(2, GPR_TIMESPAN)) >= 0;
  if (!hs_burst && !conn_burst && !quiet) return;
  if (gpr_time_cmp(gpr_time_sub(now, srv->last_trim), gpr_time_from_seconds(1, GPR_TIMESPAN)) < 0)
    return;
  malloc_trim(0);
  struct mallinfo2 mi = mallinfo2();
  kh_log(quiet ? KH_LOG_DEBUG : KH_LOG_INFO,
         "memory returned after a burst of %ld handshakes and %u connections: %ld in flight, %u "
         "open, heap in use %zu KiB",
         srv->peak_in_flight, conn_peak, srv->in_flight, open, (mi.uordblks + mi.hblkhd) / 1024);
  srv->last_trim = now;
  srv->calls_since_trim = 0;
  srv->peak_in_flight = srv->in_flight;
  kh_listener_stats(srv->listener, &open, &conn_peak, 1);
}

static void loop_tick(server *srv, gpr_timespec *last) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(gpr_time_sub(now, *last), gpr_time_from_millis(90, GPR_TIMESPAN)) < 0) return;
  *last = now;
  pthread_mutex_lock(&srv->mu);
  sweep_deadlines(srv);
  maybe_trim(srv, now);
  pthread_mutex_unlock(&srv->mu);
  if (srv->cfg->resume) kh_resume_sweep(srv->cfg->resume);
  if (srv->cfg->tick) srv->cfg->tick(srv->cfg->tick_arg);
}

/* start_workers starts up to |n| crypto workers (fewer if threads cannot be
 * made; none: requests are handled inline). They block every signal: the
 * event loop's thread takes SIGTERM/SIGHUP. Called after capabilities were
 * dropped and before the seccomp filter, which then covers them (TSYNC). */
static void start_workers(server *srv, unsigned n) {
  if (n == 0 || (srv->workers = calloc(n, sizeof(*srv->workers))) == NULL) return;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  unsigned started = 0;
  while (started < n && pthread_create(&srv->workers[started], NULL, worker_main, srv) == 0) {
    char name[16];
    snprintf(name, sizeof(name), "kh-crypto-%u", started % 100u);
    pthread_setname_np(srv->workers[started], name);
    started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (started < n) kh_log(KH_LOG_WARN, "only %u of %u crypto worker threads started", started, n);
  srv->n_workers = started;
}

/* stop_workers: queued jobs are answered (q_refuse is set by then), then
 * every worker is joined; later requests are handled inline. */
static void stop_workers(server *srv) {
  pthread_mutex_lock(&srv->q_mu);
  srv->q_stop = 1;
  pthread_cond_broadcast(&srv->q_cond);
  pthread_mutex_unlock(&srv->q_mu);
  for (unsigned i = 0; i < srv->n_workers; i++) pthread_join(srv->workers[i], NULL);
  pthread_mutex_lock(&srv->mu);
  srv->n_workers = 0;
  pthread_mutex_unlock(&srv->mu);
  free(srv->workers);
  srv->workers = NULL;
}

int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err) {
  server srv = {.cfg = cfg, .listener = cfg->listener};
  pthread_mutex_init(&srv.mu, NULL);
  pthread_mutex_init(&srv.q_mu, NULL);
  pthread_cond_init(&srv.q_cond, NULL);
  start_workers(&srv, cfg->workers);
  srv.env = (kh_s2a_env){.store = cfg->store,
                         .policy = cfg->policy,
                         .resume = cfg->resume,
                         .ticket_keys = cfg->ticket_keys};
  kh_absl_tune();
  grpc_init();
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
  args[2].value.integer = (int)cfg->policy->limits.idle_timeout_ms;
  grpc_channel_args chargs = {3, args};
  srv.cq = grpc_completion_queue_create_for_next(NULL);
  srv.server = grpc_server_create(&chargs, NULL);
  srv.method =
      grpc_server_register_method(srv.server, KH_S2A_METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
  grpc_server_register_completion_queue(srv.server, srv.cq, NULL);
  grpc_server_start(srv.server);
  pthread_mutex_lock(&srv.mu);
  request_call(&srv, 1);
  request_call(&srv, 0);
  pthread_mutex_unlock(&srv.mu);
  kh_listener_config lcfg = {
      .limits = cfg->policy->limits, .admit = admit_uid, .admit_arg = (void *)cfg->policy};
  int ok = kh_listener_start(srv.listener, srv.server, &lcfg, err);
  if (ok && cfg->after_listen) cfg->after_listen();
  if (ok) {
    kh_log(KH_LOG_INFO, "listening on unix:%s with %zu identities, policy %s, %u crypto workers",
           cfg->socket_path, kh_identity_store_count(cfg->store),
           cfg->policy->file ? cfg->policy->file : "built-in (own uid only)", srv.n_workers);
    gpr_timespec last = gpr_now(GPR_CLOCK_MONOTONIC);
    while (!*stop) {
      drain(&srv, 0);
      loop_tick(&srv, &last);
    }
  }
  kh_listener_stop_accepting(srv.listener);

  /* live_calls counts the two armed requests (one per kind) too. */
  pthread_mutex_lock(&srv.mu);
  kh_log(KH_LOG_INFO, "shutting down: cancelling %ld in-flight calls",
         srv.live_calls > 2 ? srv.live_calls - 2 : 0);
  srv.shutting_down = 1;
  pthread_mutex_unlock(&srv.mu);
  pthread_mutex_lock(&srv.q_mu);
  srv.q_refuse = 1;
  pthread_mutex_unlock(&srv.q_mu);
  tag shutdown_tag = {NULL, TAG_SHUTDOWN};
  grpc_server_shutdown_and_notify(srv.server, srv.cq, &shutdown_tag);
  grpc_server_cancel_all_calls(srv.server);
  while (srv.shutting_down != 2) drain(&srv, 0); /* only this thread writes it */
  stop_workers(&srv); /* before any call can be destroyed with the server */
  grpc_server_destroy(srv.server);
  grpc_completion_queue_shutdown(srv.cq);
  drain(&srv, 1);
  grpc_completion_queue_destroy(srv.cq);
  grpc_shutdown();
  free(srv.counts);
  free(srv.procs);
  pthread_cond_destroy(&srv.q_cond);
  pthread_mutex_destroy(&srv.q_mu);
  pthread_mutex_destroy(&srv.mu);
  return ok;
}

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
 * is on a list swept for the handshake deadline. */
#include "server.h"

#include <errno.h>
#include <malloc.h>
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
  long in_flight, peak_in_flight; /* handshakes holding a slot, and their peak */
  gpr_timespec last_trim;
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
  int counted;              /* holds one of its uid's handshake slots */
  gpr_timespec expires;     /* handshake deadline (monotonic) */
  struct call *prev, *next; /* srv->active */
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

/* release_slot ends a call's claim on its uid's handshake limit and takes it
 * off the deadline list; the session (and its TLS state) goes with it. */
static void release_slot(call *c) {
  if (!c->counted) return;
  server *srv = c->srv;
  uid_count *n = count_for(srv, c->caller.uid);
  if (n && n->active) n->active--;
  srv->in_flight--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->active = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->counted = 0;
}

static void call_free(call *c) {
  release_slot(c);
  if (c->call) grpc_call_unref(c->call);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  if (c->send_buf) grpc_byte_buffer_destroy(c->send_buf);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->request_md);
  grpc_slice_unref(c->status_details);
  kh_s2a_session_free(c->session);
  c->srv->live_calls--;
  free(c);
}

static void maybe_free(call *c) {
  if (c->outstanding == 0 && (c->closed || c->call == NULL)) call_free(c);
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

/* continue_call sends |resp| (if any) and waits for the next request. */
static void continue_call(call *c, kh_buf *resp) {
  grpc_op ops[3];
  size_t n = 0;
  add_initial_md(c, ops, &n);
  if (resp != NULL) {
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
  /* A caller the policy grants nothing (flagged at accept) is still read
   * once, so its refusal can name the identity it asked for; the session
   * refuses it before any identity is touched. */
  (void)admitted;
  uid_count *n = count_for(srv, c->caller.uid);
  if (n == NULL) {
    finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return 0;
  }
  if (pol->max_handshakes_per_caller && n->active >= pol->max_handshakes_per_caller) {
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
  c->counted = 1;
  if (++srv->in_flight > srv->peak_in_flight) srv->peak_in_flight = srv->in_flight;
  c->expires = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                            gpr_time_from_millis(pol->handshake_timeout_ms, GPR_TIMESPAN));
  c->next = srv->active;
  if (srv->active) srv->active->prev = c;
  srv->active = c;
  return 1;
}

/* sweep_deadlines cuts off handshakes past the deadline: a stalled peer or
 * app gets DEADLINE_EXCEEDED and its session is freed now. */
static void sweep_deadlines(server *srv) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  call *c = srv->active;
  while (c != NULL) {
    call *next = c->next;
    if (gpr_time_cmp(now, c->expires) >= 0 && !c->status_sent) {
      char msg[160];
      snprintf(msg, sizeof(msg), "handshake did not finish within %u ms",
               srv->cfg->policy->handshake_timeout_ms);
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

  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  kh_s2a_outcome out = kh_s2a_session_handle(c->session, GRPC_SLICE_START_PTR(req),
                                             GRPC_SLICE_LENGTH(req), &resp, &err);
  grpc_slice_unref(req);
  switch (out) {
    case KH_S2A_CONTINUE: continue_call(c, &resp); break;
    case KH_S2A_FINISHED: finish(c, &resp, GRPC_STATUS_OK, ""); break;
    case KH_S2A_FAILED:
      finish(c, &resp, (grpc_status_code)kh_code_to_grpc(err.code), err.msg);
      break;
  }
  kh_buf_free(&resp);
}

static void on_close(call *c) {
  c->closed = 1;
  if (c->cancelled && !c->status_sent) log_cancelled(c, "client went away");
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
    if (t->kind == TAG_SHUTDOWN) {
      srv->shutting_down = 2;
      continue;
    }
    dispatch(t, ev.success);
  }
}

/* admit_uid: at accept time, does the policy grant this caller anything? */
static int admit_uid(void *arg, const kh_caller *c) {
  return kh_policy_admits((const kh_policy *)arg, c);
}

/* maybe_trim returns a finished burst's memory (at most every 5 s; the
 * trim itself costs ~15 ms after 10,000 sessions, see docs/PERFORMANCE.md). */
static void maybe_trim(server *srv, gpr_timespec now) {
  if (srv->peak_in_flight < KH_TRIM_AFTER_PEAK || srv->in_flight > srv->peak_in_flight / 8) return;
  if (gpr_time_cmp(gpr_time_sub(now, srv->last_trim), gpr_time_from_seconds(5, GPR_TIMESPAN)) < 0)
    return;
  malloc_trim(0);
  srv->last_trim = now;
  srv->peak_in_flight = srv->in_flight;
}

static void loop_tick(server *srv, gpr_timespec *last) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(gpr_time_sub(now, *last), gpr_time_from_millis(90, GPR_TIMESPAN)) < 0) return;
  *last = now;
  sweep_deadlines(srv);
  maybe_trim(srv, now);
  if (srv->cfg->resume) kh_resume_sweep(srv->cfg->resume);
  if (srv->cfg->tick) srv->cfg->tick(srv->cfg->tick_arg);
}

int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err) {
  server srv = {.cfg = cfg, .listener = cfg->listener};
  srv.env = (kh_s2a_env){.store = cfg->store,
                         .policy = cfg->policy,
                         .resume = cfg->resume,
                         .ticket_keys = cfg->ticket_keys};
  grpc_init();
  grpc_arg args[2];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = (int)(cfg->max_message_bytes ? cfg->max_message_bytes : 256 * 1024);
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
  args[1].value.integer = 1024;
  grpc_channel_args chargs = {2, args};
  srv.cq = grpc_completion_queue_create_for_next(NULL);
  srv.server = grpc_server_create(&chargs, NULL);
  srv.method =
      grpc_server_register_method(srv.server, KH_S2A_METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
  grpc_server_register_completion_queue(srv.server, srv.cq, NULL);
  grpc_server_start(srv.server);
  request_call(&srv, 1);
  request_call(&srv, 0);
  int ok = kh_listener_start(srv.listener, srv.server, admit_uid, (void *)cfg->policy, err);
  if (ok && cfg->after_listen) cfg->after_listen();
  if (ok) {
    kh_log(KH_LOG_INFO, "listening on unix:%s with %zu identities, policy %s", cfg->socket_path,
           kh_identity_store_count(cfg->store),
           cfg->policy->file ? cfg->policy->file : "built-in (own uid only)");
    gpr_timespec last = gpr_now(GPR_CLOCK_MONOTONIC);
    while (!*stop) {
      drain(&srv, 0);
      loop_tick(&srv, &last);
    }
  }
  kh_listener_stop_accepting(srv.listener);

  /* live_calls counts the two armed requests (one per kind) too. */
  kh_log(KH_LOG_INFO, "shutting down: cancelling %ld in-flight calls",
         srv.live_calls > 2 ? srv.live_calls - 2 : 0);
  srv.shutting_down = 1;
  tag shutdown_tag = {NULL, TAG_SHUTDOWN};
  grpc_server_shutdown_and_notify(srv.server, srv.cq, &shutdown_tag);
  grpc_server_cancel_all_calls(srv.server);
  while (srv.shutting_down != 2) drain(&srv, 0);
  grpc_server_destroy(srv.server);
  grpc_completion_queue_shutdown(srv.cq);
  drain(&srv, 1);
  grpc_completion_queue_destroy(srv.cq);
  grpc_shutdown();
  free(srv.counts);
  return ok;
}

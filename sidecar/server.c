/* server.c: the gRPC C core event loop of keyholdd.
 *
 * Every call is a small state machine driven by completion-queue tags:
 *   REQUEST  a new call arrived (re-arm, then start it)
 *   RECV     a request arrived (and our previous response, if any, was sent)
 *   STATUS   our final response and status were sent
 *   CLOSE    the call is over on the wire (RECV_CLOSE_ON_SERVER)
 * A call is freed when CLOSE has fired and no batch is outstanding. */
#include "server.h"

#include <errno.h>
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
#include "s2a_session.h"

#define KH_S2A_METHOD "/s2a.proto.S2AService/SetUpSession"

typedef enum { TAG_REQUEST, TAG_RECV, TAG_STATUS, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

struct call;
typedef struct {
  struct call *call;
  tag_kind kind;
} tag;

typedef struct server {
  grpc_server *server;
  grpc_completion_queue *cq;
  void *method;
  const kh_identity_store *store;
  int shutting_down;
  long live_calls;
} server;

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
  grpc_slice status_details;
  tag t_request, t_recv, t_status, t_close;
} call;

static void call_free(call *c) {
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
  c->session = kh_s2a_session_new(srv->store);
  if (c->session == NULL) {
    finish(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  continue_call(c, NULL);
}

static void on_recv(call *c, int ok) {
  if (c->send_buf) {
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
  }
  if (!ok || c->status_sent) return; /* call cancelled: CLOSE will tidy up */
  if (c->recv_buf == NULL) {
    /* The client half-closed before the handshake finished. */
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
  if (c->cancelled && !c->status_sent && c->session != NULL) {
    kh_log(KH_LOG_WARN, "handshake local=%s peer=%s result=CANCELLED reason=\"client went away\"",
           kh_s2a_session_local_name(c->session), kh_s2a_session_peer_name(c->session));
  }
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

/* prepare_socket refuses a live socket and removes a stale one. */
static int prepare_socket(const char *path, kh_error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "socket path too long: %s", path);
  struct stat st;
  if (lstat(path, &st) != 0) return 1;
  if (!S_ISSOCK(st.st_mode))
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "%s exists and is not a socket", path);
  memcpy(sa.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  if (fd >= 0) close(fd);
  if (live) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "another process is serving %s", path);
  if (unlink(path) != 0)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "cannot remove stale %s: %s", path,
                  strerror(errno));
  return 1;
}

static void drain(server *srv, int until_shutdown) {
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        srv->cq,
        until_shutdown
            ? gpr_inf_future(GPR_CLOCK_REALTIME)
            : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(200, GPR_TIMESPAN)),
        NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) return;
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
      if (!until_shutdown) return;
      continue;
    }
    tag *t = ev.tag;
    if (t->kind == TAG_SHUTDOWN) {
      srv->shutting_down = 2;
      continue;
    }
    dispatch(t, ev.success);
  }
}

int kh_server_run(const kh_server_config *cfg, volatile sig_atomic_t *stop, kh_error *err) {
  if (!prepare_socket(cfg->socket_path, err)) return 0;
  server srv = {.store = cfg->store};
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
  char addr[256];
  snprintf(addr, sizeof(addr), "unix:%s", cfg->socket_path);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(srv.server, addr, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    grpc_server_destroy(srv.server);
    grpc_completion_queue_shutdown(srv.cq);
    drain(&srv, 1);
    grpc_completion_queue_destroy(srv.cq);
    grpc_shutdown();
    return kh_err(err, KH_ERR_UNAVAILABLE, "cannot listen on %s", addr);
  }
  grpc_server_start(srv.server);
  /* Owner and group only: who may talk to the sidecar is who can open this. */
  chmod(cfg->socket_path, 0660);
  request_call(&srv, 1);
  request_call(&srv, 0);
  kh_log(KH_LOG_INFO, "listening on %s with %zu identities", addr,
         kh_identity_store_count(cfg->store));

  while (!*stop) drain(&srv, 0);

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
  unlink(cfg->socket_path);
  kh_log(KH_LOG_INFO, "stopped; socket %s removed", cfg->socket_path);
  return 1;
}

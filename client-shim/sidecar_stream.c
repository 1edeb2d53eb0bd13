/* sidecar_stream.c: bidi-stream helper over the gRPC C core. A blocking
 * stream has a pluck queue of its own, which the calling thread waits on; a
 * non-blocking one shares its channel's next queue, which one pump thread
 * drains, marking each stream's completed operations and waking its
 * eventfd (kh_stream_fd), so an event loop can wait for the sidecar. */
#include "sidecar_stream.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "kh_secret.h"

struct kh_sidecar {
  grpc_channel *channel;
  char path[256];
  /* Non-blocking streams' queue and its pump, started with the first one;
   * |mu| guards every such stream's done/ok bits. */
  pthread_mutex_t mu;
  grpc_completion_queue *async_cq;
  pthread_t pump;
};

/* A completion tag: which operation of which stream (bit in done/ok). */
typedef struct {
  kh_stream *s;
  unsigned bit;
} kh_tag;

struct kh_stream {
  kh_sidecar *sc;
  grpc_completion_queue *cq; /* its own (blocking) or the channel's async_cq */
  int async;
  int efd;                             /* async: readable once an operation completed */
  unsigned done, ok;                   /* async: completed operations and their success (sc->mu) */
  int in_flight;                       /* an exchange started and not yet finished */
  grpc_byte_buffer *send_bb, *recv_bb; /* its messages */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  int got_initial_md;
  int sent_initial_md; /* deferred to the first batch */
  int finished;        /* the armed RECV_STATUS_ON_CLIENT completed (and was plucked) */
  int half_closed;     /* SEND_CLOSE_FROM_CLIENT done */
  grpc_status_code status;
  grpc_slice status_details;
  kh_tag tags[3]; /* distinct tags: see TAG_* */
};

/* Tags, one per kind of operation, so that waiting for one never takes
 * another's event: the message batches (one at a time), the status op armed
 * once when the call starts, and the connectivity watch. */
#define TAG_BATCH(s) ((void *)&(s)->tags[0])
#define TAG_STATUS(s) ((void *)&(s)->tags[1])
#define TAG_WATCH(s) ((void *)&(s)->tags[2])

/* The wait for a status due at once; see status_error. */
#define KH_STATUS_GRACE_MS 1000

kh_sidecar *kh_sidecar_new(const char *socket_path, kh_error *err) {
  kh_sidecar *sc = calloc(1, sizeof(*sc));
  if (sc == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (strlen(socket_path) >= sizeof(sc->path) - 6) {
    free(sc);
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "sidecar socket path too long");
    return NULL;
  }
  snprintf(sc->path, sizeof(sc->path), "%s", socket_path);
  pthread_mutex_init(&sc->mu, NULL);
  char target[300];
  /* "tcp://HOST:PORT" reaches keyholdd's --listen (tests, clients without
   * Unix sockets); anything else is a socket path. */
  if (strncmp(socket_path, "tcp://", 6) == 0)
    snprintf(target, sizeof(target), "%s", socket_path + 6);
  else
    snprintf(target, sizeof(target), "unix:%s", socket_path);
  grpc_init();
  /* Keep the reconnect backoff short: after a sidecar restart, new
   * handshakes should find it again within a second. */
  grpc_arg args[3];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
  args[0].value.integer = 1000;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
  args[1].value.integer = 100;
  /* A handshake stream is not idempotent to replay against a restarted
   * sidecar, and a retried call on a dead transport waits out its whole
   * deadline: fail fast instead and let the next handshake reconnect. */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_ENABLE_RETRIES;
  args[2].value.integer = 0;
  grpc_channel_args chargs = {3, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  sc->channel = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  if (sc->channel == NULL) {
    grpc_shutdown();
    pthread_mutex_destroy(&sc->mu);
    free(sc);
    kh_err(err, KH_ERR_INTERNAL, "cannot create gRPC channel to %s", target);
    return NULL;
  }
  return sc;
}

void kh_sidecar_free(kh_sidecar *sc) {
  if (sc == NULL) return;
  if (sc->async_cq != NULL) { /* every stream is closed: only the shutdown is left */
    grpc_completion_queue_shutdown(sc->async_cq);
    pthread_join(sc->pump, NULL);
    grpc_completion_queue_destroy(sc->async_cq);
  }
  grpc_channel_destroy(sc->channel);
  pthread_mutex_destroy(&sc->mu);
  free(sc);
  grpc_shutdown();
}

/* --- waiting for an operation -------------------------------------------- */

/* pump drains the non-blocking streams' queue: each completion marks its
 * operation done and wakes the stream's eventfd, under sc->mu, which the
 * stream takes before it closes the fd. */
static void *pump(void *arg) {
  kh_sidecar *sc = arg;
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(sc->async_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) return NULL;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    kh_tag *t = ev.tag;
    pthread_mutex_lock(&sc->mu);
    t->s->done |= t->bit;
    t->s->ok = ev.success ? t->s->ok | t->bit : t->s->ok & ~t->bit;
    uint64_t one = 1;
    if (write(t->s->efd, &one, sizeof(one)) < 0) {
      /* EAGAIN: the counter is full, so it is readable anyway */
    }
    pthread_mutex_unlock(&sc->mu);
  }
}

static int start_pump(kh_sidecar *sc, kh_error *err) {
  pthread_mutex_lock(&sc->mu);
  int ok = 1;
  if (sc->async_cq == NULL) {
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&sc->pump, NULL, pump, sc) == 0) {
      sc->async_cq = cq;
    } else {
      grpc_completion_queue_shutdown(cq);
      grpc_completion_queue_destroy(cq);
      ok = kh_err(err, KH_ERR_INTERNAL, "cannot start the sidecar pump thread");
    }
  }
  pthread_mutex_unlock(&sc->mu);
  return ok;
}

/* taken: a non-blocking stream's operation |t| if it completed (0: not
 * yet, 1: succeeded, 2: failed), clearing its mark. The eventfd is emptied
 * under the lock the pump marks and writes under, so afterwards it is
 * readable only for a completion not yet looked at: an event loop polling it
 * for the next operation does not spin on one already taken. */
static int taken(kh_stream *s, const kh_tag *t) {
  pthread_mutex_lock(&s->sc->mu);
  uint64_t n;
  if (read(s->efd, &n, sizeof(n)) < 0) {
    /* EAGAIN: nothing new since the last look */
  }
  int r = 0;
  if (s->done & t->bit) {
    r = s->ok & t->bit ? 1 : 2;
    s->done &= ~t->bit;
  }
  pthread_mutex_unlock(&s->sc->mu);
  return r;
}

/* ms_until: milliseconds from now to |until| for poll (-1: never, 0: it
 * has passed), rounded up. */
static int ms_until(gpr_timespec until) {
  if (gpr_time_cmp(until, gpr_inf_future(until.clock_type)) == 0) return -1;
  gpr_timespec now = gpr_now(until.clock_type);
  if (gpr_time_cmp(until, now) <= 0) return 0;
  int64_t ms = gpr_time_to_millis(gpr_time_sub(until, now)) + 1;
  return ms > 1000000 ? 1000000 : (int)ms;
}

/* wait_tag waits until |until| for operation |tag|: 1 when it succeeded, 2
 * when it failed, 0 at |until| (gpr_inf_past: just a look). */
static int wait_tag(kh_stream *s, void *tag, gpr_timespec until) {
  if (!s->async) {
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, until, NULL);
    if (ev.type != GRPC_OP_COMPLETE) return 0;
    return ev.success ? 1 : 2;
  }
  for (;;) {
    int r = taken(s, tag);
    if (r != 0) return r;
    int ms = ms_until(until);
    if (ms == 0) return 0;
    struct pollfd p = {.fd = s->efd, .events = POLLIN};
    (void)poll(&p, 1, ms);
  }
}

/* start_batch starts |ops| (one batch at a time per stream). */
static int start_batch(kh_stream *s, const grpc_op *ops, size_t n, kh_error *err) {
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, TAG_BATCH(s), NULL);
  if (e != GRPC_CALL_OK) return kh_err(err, KH_ERR_INTERNAL, "gRPC start_batch failed (%d)", e);
  return 1;
}

/* wait_batch waits for the batch started (bounded by the deadline, then
 * cancelled, so that its completion is always collected): 1 done, 2 the op
 * failed (the stream ended), 0 the deadline passed. */
static int wait_batch(kh_stream *s, kh_error *err) {
  int r = wait_tag(s, TAG_BATCH(s), s->deadline);
  if (r != 0) return r;
  grpc_call_cancel_with_status(s->call, GRPC_STATUS_DEADLINE_EXCEEDED, "handshake deadline", NULL);
  wait_tag(s, TAG_BATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME));
  return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "sidecar did not answer before the deadline");
}

static int run_batch(kh_stream *s, const grpc_op *ops, size_t n, kh_error *err) {
  return start_batch(s, ops, n, err) ? wait_batch(s, err) : 0;
}

/* wait_ready waits (at most |ms|) for the channel to reach READY, asking it
 * to connect. A channel whose sidecar died keeps failing to reconnect and a
 * fail-fast call on it may otherwise wait for its whole deadline; this turns
 * "sidecar down" into a prompt UNAVAILABLE and still lets a restarted sidecar
 * be found within one reconnect backoff (at most 1 s). */
static int wait_ready(kh_stream *s, int ms) {
  gpr_timespec until =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
  if (gpr_time_cmp(until, s->deadline) > 0) until = s->deadline;
  for (;;) {
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(s->sc->channel, 1);
    if (st == GRPC_CHANNEL_READY) return 1;
    if (st == GRPC_CHANNEL_SHUTDOWN) return 0;
    grpc_channel_watch_connectivity_state(s->sc->channel, st, until, s->cq, TAG_WATCH(s));
    if (wait_tag(s, TAG_WATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME)) != 1)
      return 0; /* timed out in a state other than READY */
  }
}

/* open_stream: kh_stream_open and kh_stream_open_async. */
static kh_stream *open_stream(kh_sidecar *sc, const char *method, int timeout_ms, int async,
                              kh_error *err) {
  if (async && !start_pump(sc, err)) return NULL;
  kh_stream *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  s->sc = sc;
  for (unsigned i = 0; i < 3; i++) s->tags[i] = (kh_tag){s, 1u << i};
  s->async = async;
  s->efd = -1;
  if (async && (s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    kh_err(err, KH_ERR_INTERNAL, "eventfd: %s", strerror(errno));
    free(s);
    return NULL;
  }
  s->cq = async ? sc->async_cq : grpc_completion_queue_create_for_pluck(NULL);
  s->deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                   gpr_time_from_millis(timeout_ms > 0 ? timeout_ms : 10000, GPR_TIMESPAN));
  grpc_metadata_array_init(&s->initial_md);
  grpc_metadata_array_init(&s->trailing_md);
  s->status_details = grpc_empty_slice();
  /* Non-blocking: no wait for the channel; a fail-fast call on it waits
   * while it connects and fails UNAVAILABLE if it cannot. */
  if (async) grpc_channel_check_connectivity_state(sc->channel, 1);
  if (!async && !wait_ready(s, 1500)) {
    kh_err(err, KH_ERR_UNAVAILABLE, "sidecar unavailable at %s: cannot connect", sc->path);
    kh_stream_close(s, 0);
    return NULL;
  }
  grpc_slice m = grpc_slice_from_static_string(method);
  s->call = grpc_channel_create_call(sc->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                     s->deadline, NULL);
  if (s->call == NULL) {
    kh_err(err, KH_ERR_INTERNAL, "cannot create gRPC call");
    kh_stream_close(s, 0);
    return NULL;
  }
  /* The status op is armed now, in a batch of its own: it sends nothing and
   * completes whenever the call ends (the sidecar's status, its deadline, a
   * broken transport), so a caller waiting on something else (the peer) can
   * see that with kh_stream_check. gRPC allows one such op per call: every
   * later need for the status waits for this one. */
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
  op.data.recv_status_on_client.status = &s->status;
  op.data.recv_status_on_client.status_details = &s->status_details;
  grpc_call_error e = grpc_call_start_batch(s->call, &op, 1, TAG_STATUS(s), NULL);
  if (e != GRPC_CALL_OK) {
    kh_err(err, KH_ERR_INTERNAL, "gRPC start_batch (status) failed (%d)", e);
    grpc_call_unref(s->call); /* nothing started: nothing to collect */
    s->call = NULL;
    kh_stream_close(s, 0);
    return NULL;
  }
  /* Initial metadata goes out with the first message (one batch less). */
  return s;
}

kh_stream *kh_stream_open(kh_sidecar *sc, const char *method, int timeout_ms, kh_error *err) {
  return open_stream(sc, method, timeout_ms, 0, err);
}

kh_stream *kh_stream_open_async(kh_sidecar *sc, const char *method, int timeout_ms, kh_error *err) {
  return open_stream(sc, method, timeout_ms, 1, err);
}

int kh_stream_fd(const kh_stream *s) {
  return s != NULL && s->async ? s->efd : -1;
}

/* wait_status waits until |until| for the armed status op; 1 once it has
 * completed (s->status and s->status_details are then set). */
static int wait_status(kh_stream *s, gpr_timespec until) {
  if (s->finished) return 1;
  if (wait_tag(s, TAG_STATUS(s), until) == 0) return 0;
  s->finished = 1;
  return 1;
}

/* end_call makes sure the call has ended: after |until| it is cancelled with
 * |code| and |why| (which then become its status), so the status op always
 * completes and is collected. */
static void end_call(kh_stream *s, gpr_timespec until, grpc_status_code code, const char *why) {
  if (wait_status(s, until)) return;
  grpc_call_cancel_with_status(s->call, code, why, NULL);
  wait_status(s, gpr_inf_future(GPR_CLOCK_REALTIME));
}

/* fill_status turns the call's final status into |err|; returns 0. */
static int fill_status(kh_stream *s, kh_error *err) {
  char *details = grpc_slice_to_c_string(s->status_details);
  if (s->status == GRPC_STATUS_UNAVAILABLE) {
    kh_err(err, KH_ERR_UNAVAILABLE, "sidecar unavailable at %s: %s", s->sc->path, details);
  } else if (s->status == GRPC_STATUS_OK) {
    kh_err(err, KH_ERR_INTERNAL, "sidecar ended the stream without a result");
  } else {
    kh_err(err, (kh_code)s->status, "sidecar: %s", details);
  }
  gpr_free(details);
  return 0;
}

int kh_stream_check(kh_stream *s, kh_error *err) {
  if (s == NULL || s->call == NULL) return 1;
  if (!wait_status(s, gpr_inf_past(GPR_CLOCK_REALTIME))) return 1;
  return fill_status(s, err);
}

/* status_error turns the call's final status (from the armed status op)
 * into |err|. It is called once an op failed or the sidecar ended the
 * stream, so the status is due at once; after a broken transport (sidecar
 * killed) gRPC may only deliver it at the call's deadline, so the wait is
 * bounded and the call cancelled after it. */
static int status_error(kh_stream *s, kh_error *err) {
  gpr_timespec soon = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                   gpr_time_from_millis(KH_STATUS_GRACE_MS, GPR_TIMESPAN));
  if (gpr_time_cmp(soon, s->deadline) > 0) soon = s->deadline;
  end_call(s, soon, GRPC_STATUS_UNAVAILABLE, "connection to the sidecar lost");
  return fill_status(s, err);
}

/* add_initial_md appends SEND_INITIAL_METADATA to |ops| the first time any
 * batch goes out (it rides with the first message). */
static void add_initial_md(kh_stream *s, grpc_op *ops, size_t *n) {
  if (s->sent_initial_md) return;
  memset(&ops[*n], 0, sizeof(ops[*n]));
  ops[(*n)++].op = GRPC_OP_SEND_INITIAL_METADATA;
  s->sent_initial_md = 1;
}

/* add_send appends the ops that send |bb| to |ops|. */
static void add_send(kh_stream *s, grpc_op *ops, size_t *n, grpc_byte_buffer *bb) {
  add_initial_md(s, ops, n);
  memset(&ops[*n], 0, sizeof(ops[*n]));
  ops[*n].op = GRPC_OP_SEND_MESSAGE;
  ops[(*n)++].data.send_message.send_message = bb;
}

/* add_recv appends the ops that receive the next message into |*bb|. */
static void add_recv(kh_stream *s, grpc_op *ops, size_t *n, grpc_byte_buffer **bb) {
  add_initial_md(s, ops, n);
  if (!s->got_initial_md) {
    memset(&ops[*n], 0, sizeof(ops[*n]));
    ops[*n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[(*n)++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    s->got_initial_md = 1;
  }
  memset(&ops[*n], 0, sizeof(ops[*n]));
  ops[*n].op = GRPC_OP_RECV_MESSAGE;
  ops[(*n)++].data.recv_message.recv_message = bb;
}

/* take_message moves a received message into |out|, wiping gRPC's copy
 * (responses carry traffic secrets). NULL |bb|: the stream ended. */
static int take_message(kh_stream *s, grpc_byte_buffer *bb, kh_buf *out, kh_error *err) {
  if (bb == NULL) return status_error(s, err);
  kh_buf_reset(out);
  grpc_byte_buffer_reader reader;
  int ok = grpc_byte_buffer_reader_init(&reader, bb);
  grpc_slice slice;
  while (ok && grpc_byte_buffer_reader_next(&reader, &slice)) {
    ok = kh_buf_append(out, GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice));
    kh_wipe(GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice));
    grpc_slice_unref(slice);
  }
  grpc_byte_buffer_reader_destroy(&reader);
  grpc_byte_buffer_destroy(bb);
  if (!ok) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  return 1;
}

static grpc_byte_buffer *message(const uint8_t *msg, size_t len) {
  grpc_slice slice = grpc_slice_from_copied_buffer((const char *)msg, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return bb;
}

int kh_stream_send(kh_stream *s, const uint8_t *msg, size_t len, kh_error *err) {
  grpc_op ops[2];
  size_t n = 0;
  grpc_byte_buffer *bb = message(msg, len);
  add_send(s, ops, &n, bb);
  int r = run_batch(s, ops, n, err);
  grpc_byte_buffer_destroy(bb);
  if (r == 2) return status_error(s, err);
  return r;
}

int kh_stream_recv(kh_stream *s, kh_buf *out, kh_error *err) {
  grpc_op ops[3];
  size_t n = 0;
  grpc_byte_buffer *bb = NULL;
  add_recv(s, ops, &n, &bb);
  if (run_batch(s, ops, n, err) == 0) return 0;
  return take_message(s, bb, out, err);
}

int kh_stream_exchange_start(kh_stream *s, const uint8_t *msg, size_t len, kh_error *err) {
  if (s->in_flight) return kh_err(err, KH_ERR_INTERNAL, "an exchange is already in flight");
  grpc_op ops[5];
  size_t n = 0;
  s->send_bb = message(msg, len);
  s->recv_bb = NULL;
  add_send(s, ops, &n, s->send_bb);
  add_recv(s, ops, &n, &s->recv_bb);
  if (!start_batch(s, ops, n, err)) {
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    return 0;
  }
  s->in_flight = 1;
  return 1;
}

/* end_exchange takes the finished exchange's answer (|r| from wait_batch). */
static int end_exchange(kh_stream *s, int r, kh_buf *out, kh_error *err) {
  s->in_flight = 0;
  grpc_byte_buffer_destroy(s->send_bb);
  s->send_bb = NULL;
  grpc_byte_buffer *in = s->recv_bb;
  s->recv_bb = NULL;
  if (r == 0) {
    if (in) grpc_byte_buffer_destroy(in);
    return 0;
  }
  return take_message(s, in, out, err);
}

int kh_stream_exchange_finish(kh_stream *s, int wait, kh_buf *out, kh_error *err) {
  if (!s->in_flight) return kh_err(err, KH_ERR_INTERNAL, "no exchange in flight");
  if (!wait) {
    int r = wait_tag(s, TAG_BATCH(s), gpr_inf_past(GPR_CLOCK_REALTIME));
    return r == 0 ? -1 : end_exchange(s, r, out, err);
  }
  int r = wait_batch(s, err);
  return end_exchange(s, r, out, err);
}

int kh_stream_exchange(kh_stream *s, const uint8_t *msg, size_t len, kh_buf *out, kh_error *err) {
  return kh_stream_exchange_start(s, msg, len, err) && kh_stream_exchange_finish(s, 1, out, err);
}

int kh_stream_half_close(kh_stream *s, kh_error *err) {
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  if (run_batch(s, &op, 1, err) == 0) return 0;
  s->half_closed = 1;
  return status_error(s, err);
}

void kh_stream_close(kh_stream *s, int cancel) {
  if (s == NULL) return;
  if (s->call != NULL) {
    int closing = 0;
    if (s->in_flight) { /* a non-blocking exchange the caller gave up on */
      grpc_call_cancel(s->call, NULL);
      wait_tag(s, TAG_BATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME));
      kh_buf junk = KH_BUF_INIT; /* a late answer is wiped unread */
      kh_error ignored;
      if (!end_exchange(s, s->recv_bb != NULL, &junk, &ignored)) kh_error_clear(&ignored);
      kh_buf_free(&junk);
      cancel = 1;
    }
    if (!s->finished && cancel) {
      grpc_call_cancel(s->call, NULL);
    } else if (!s->finished && !s->half_closed) {
      grpc_op ops[2];
      size_t n = 0;
      memset(ops, 0, sizeof(ops));
      add_initial_md(s, ops, &n);
      ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
      closing = grpc_call_start_batch(s->call, ops, n, TAG_BATCH(s), NULL) == GRPC_CALL_OK;
    }
    /* Every started batch is collected before the queue goes: the status op
     * (cancelling at the deadline), then the close, which the call's end
     * completes. */
    end_call(s, s->deadline, GRPC_STATUS_CANCELLED, "stream closed");
    if (closing) wait_tag(s, TAG_BATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME));
    grpc_call_unref(s->call);
  }
  grpc_metadata_array_destroy(&s->initial_md);
  grpc_metadata_array_destroy(&s->trailing_md);
  grpc_slice_unref(s->status_details);
  if (s->async) {
    /* Every operation was collected; the pump's last wake-up of this fd
     * happened under the lock. */
    pthread_mutex_lock(&s->sc->mu);
    pthread_mutex_unlock(&s->sc->mu);
    close(s->efd);
  } else {
    grpc_completion_queue_shutdown(s->cq);
    while (
        grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s->cq);
  }
  free(s);
}

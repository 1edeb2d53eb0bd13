/* sidecar_stream.c: blocking bidi-stream helper over the gRPC C core. */
#include "sidecar_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

struct kh_stream {
  kh_sidecar *sc;
  grpc_completion_queue *cq;
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
  char tags[3]; /* distinct pluck tags: see TAG_* */
};

/* Pluck tags, one per kind of operation, so that plucking one never takes
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
    free(sc);
    kh_err(err, KH_ERR_INTERNAL, "cannot create gRPC channel to %s", target);
    return NULL;
  }
  return sc;
}

void kh_sidecar_free(kh_sidecar *sc) {
  if (sc == NULL) return;
  grpc_channel_destroy(sc->channel);
  free(sc);
  grpc_shutdown();
}

/* run_batch starts |ops| and waits for them (bounded by the deadline, plus a
 * grace period after a cancel so completion is always collected). */
static int run_batch(kh_stream *s, const grpc_op *ops, size_t n, kh_error *err) {
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, TAG_BATCH(s), NULL);
  if (e != GRPC_CALL_OK) return kh_err(err, KH_ERR_INTERNAL, "gRPC start_batch failed (%d)", e);
  grpc_event ev = grpc_completion_queue_pluck(s->cq, TAG_BATCH(s), s->deadline, NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) {
    grpc_call_cancel_with_status(s->call, GRPC_STATUS_DEADLINE_EXCEEDED, "handshake deadline",
                                 NULL);
    ev = grpc_completion_queue_pluck(s->cq, TAG_BATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "sidecar did not answer before the deadline");
  }
  return ev.success ? 1 : 2; /* 2: the op failed (stream ended) */
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
    grpc_event ev =
        grpc_completion_queue_pluck(s->cq, TAG_WATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!ev.success) return 0; /* timed out in a state other than READY */
  }
}

kh_stream *kh_stream_open(kh_sidecar *sc, const char *method, int timeout_ms, kh_error *err) {
  kh_stream *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  s->sc = sc;
  s->cq = grpc_completion_queue_create_for_pluck(NULL);
  s->deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                   gpr_time_from_millis(timeout_ms > 0 ? timeout_ms : 10000, GPR_TIMESPAN));
  grpc_metadata_array_init(&s->initial_md);
  grpc_metadata_array_init(&s->trailing_md);
  s->status_details = grpc_empty_slice();
  if (!wait_ready(s, 1500)) {
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

/* wait_status waits until |until| for the armed status op; 1 once it has
 * completed (s->status and s->status_details are then set). */
static int wait_status(kh_stream *s, gpr_timespec until) {
  if (s->finished) return 1;
  grpc_event ev = grpc_completion_queue_pluck(s->cq, TAG_STATUS(s), until, NULL);
  if (ev.type != GRPC_OP_COMPLETE) return 0;
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

int kh_stream_exchange(kh_stream *s, const uint8_t *msg, size_t len, kh_buf *out, kh_error *err) {
  grpc_op ops[5];
  size_t n = 0;
  grpc_byte_buffer *in = NULL, *bb = message(msg, len);
  add_send(s, ops, &n, bb);
  add_recv(s, ops, &n, &in);
  int r = run_batch(s, ops, n, err);
  grpc_byte_buffer_destroy(bb);
  if (r == 0) {
    if (in) grpc_byte_buffer_destroy(in);
    return 0;
  }
  return take_message(s, in, out, err);
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
    if (closing)
      grpc_completion_queue_pluck(s->cq, TAG_BATCH(s), gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_call_unref(s->call);
  }
  grpc_metadata_array_destroy(&s->initial_md);
  grpc_metadata_array_destroy(&s->trailing_md);
  grpc_slice_unref(s->status_details);
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(s->cq);
  free(s);
}

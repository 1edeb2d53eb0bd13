/* conn.c: libkeyhold's fd convenience layer: run the S2A exchange between
 * the sidecar stream and the peer fd, then move records over the fd. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyhold.h"
#include "kh_secret.h"
#include "record.h"
#include "s2a_hs.h"
#include "sidecar_stream.h"

#define KH_S2A_METHOD "/s2a.proto.S2AService/SetUpSession"
#define KH_DEFAULT_TIMEOUT_MS 10000
#define KH_READ_CHUNK (KH_TLS_MAX_CIPHERTEXT + KH_TLS_RECORD_HEADER)
#define KH_MAX_HS_ROUNDS 64
/* How often a handshake waiting on the peer looks whether the sidecar ended
 * the stream (no message: a look at the stream's completion queue). */
#define KH_SIDECAR_CHECK_MS 100

struct kh_client {
  kh_channel *channel;
};

struct kh_conn {
  int fd;
  kh_record *rec;
  kh_buf in;  /* ciphertext not yet processed */
  kh_buf app; /* plaintext not yet read */
  kh_buf out; /* bytes for the peer */
  int fatal;
  char alpn[256];
  char peer[512];
  char local[512];
  const char *suite_name;
  uint64_t connection_id;
  int resumed;
  /* Client side: NewSessionTicket messages not yet handed to the sidecar. */
  kh_client *kc;
  kh_buf tickets[KH_S2A_MAX_TICKETS];
  size_t n_tickets;
  char token[256]; /* access token for the ticket request ("" = none) */
  int token_set;
};

#define KH_TICKET_TIMEOUT_MS 1000

kh_client *kh_client_new(const char *sidecar_socket_path, kh_error *err) {
  if (sidecar_socket_path == NULL || sidecar_socket_path[0] == '\0') {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "no sidecar socket path");
    return NULL;
  }
  kh_client *kc = calloc(1, sizeof(*kc));
  if (kc == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  kc->channel = kh_channel_new(sidecar_socket_path, err);
  if (kc->channel == NULL) {
    free(kc);
    return NULL;
  }
  return kc;
}

void kh_client_free(kh_client *kc) {
  if (kc == NULL) return;
  kh_channel_free(kc->channel);
  free(kc);
}

/* --- fd helpers ---------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len, kh_error *err) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* non-blocking fd */
      struct pollfd pw = {.fd = fd, .events = POLLOUT};
      poll(&pw, 1, 1000);
      continue;
    }
    if (n < 0) return kh_err(err, KH_ERR_IO, "write to peer failed: %s", strerror(errno));
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

static long ms_left(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* read_some reads what the peer has (at least one byte) before |deadline|.
 * While it waits it looks at the sidecar stream |st| (if not NULL) every
 * KH_SIDECAR_CHECK_MS: if the sidecar ended the handshake meanwhile (its own
 * deadline, a refusal, the sidecar gone), that status is the error, not a
 * peer timeout much later. A peer that answers at once costs no check. */
static ssize_t read_some(int fd, uint8_t *buf, size_t len, const struct timespec *deadline,
                         kh_stream *st, kh_error *err) {
  for (;;) {
    long left = ms_left(deadline);
    if (left <= 0) return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "peer did not answer in time"), -1;
    long slice = st != NULL && left > KH_SIDECAR_CHECK_MS ? KH_SIDECAR_CHECK_MS : left;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)(slice > 1000000 ? 1000000 : slice));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return kh_err(err, KH_ERR_IO, "poll failed: %s", strerror(errno)), -1;
    if (r == 0) {
      /* Our own deadline is the peer's to miss: the call carries the same
       * deadline, and gRPC's DEADLINE_EXCEEDED for it is no news. */
      if (ms_left(deadline) > 0 && !kh_stream_check(st, err)) return -1;
      continue;
    }
    ssize_t n = read(fd, buf, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return kh_err(err, KH_ERR_IO, "read from peer failed: %s", strerror(errno)), -1;
    if (n == 0)
      return kh_err(err, KH_ERR_IO, "peer closed the connection during the handshake"), -1;
    return n;
  }
}

/* --- handshake ----------------------------------------------------------- */

/* on_ticket keeps a NewSessionTicket message for the sidecar (the first
 * KH_S2A_MAX_TICKETS per read; a peer sends one or two). */
static void on_ticket(void *arg, const uint8_t *msg, size_t len) {
  kh_conn *c = arg;
  if (c->n_tickets == KH_S2A_MAX_TICKETS) return;
  kh_buf_reset(&c->tickets[c->n_tickets]);
  if (kh_buf_append(&c->tickets[c->n_tickets], msg, len)) c->n_tickets++;
}

/* send_tickets hands collected tickets to the sidecar (S2A resumption_ticket
 * on a new stream), bounded by KH_TICKET_TIMEOUT_MS. Resumption is an
 * optimisation: a failure is dropped, the connection is unaffected. */
static void send_tickets(kh_conn *c) {
  if (c->n_tickets == 0) return;
  kh_buf req = KH_BUF_INIT, resp = KH_BUF_INIT;
  kh_error err;
  kh_stream *st = NULL;
  int ok = kh_s2a_ticket_req(c->connection_id, c->local, c->token_set ? c->token : NULL, c->tickets,
                             c->n_tickets, &req, &err) &&
           (st = kh_stream_open(c->kc->channel, KH_S2A_METHOD, KH_TICKET_TIMEOUT_MS, &err)) &&
           kh_stream_exchange(st, req.data, req.len, &resp, &err) &&
           kh_s2a_ticket_resp(resp.data, resp.len, &err);
  (void)ok;
  kh_stream_close(st, 0);
  for (size_t i = 0; i < c->n_tickets; i++) kh_buf_free(&c->tickets[i]);
  c->n_tickets = 0;
  kh_buf_free(&req);
  kh_buf_free(&resp);
}

static kh_conn *conn_from_result(kh_client *kc, int fd, const kh_s2a_hs *hs, int is_client,
                                 const kh_handshake_opts *opts, kh_error *err) {
  const kh_s2a_result *r = kh_s2a_hs_result(hs);
  kh_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (is_client) c->kc = kc;
  if (opts->access_token != NULL) {
    snprintf(c->token, sizeof(c->token), "%s", opts->access_token);
    c->token_set = 1;
  }
  c->fd = fd;
  /* A client's session tickets go back to the sidecar for resumption. */
  c->rec = kh_record_new(&r->keys, is_client ? on_ticket : NULL, c, err);
  const kh_buf *left = kh_s2a_hs_leftover(hs);
  if (c->rec == NULL || !kh_buf_append(&c->in, left->data, left->len)) {
    if (c->rec) kh_err(err, KH_ERR_NOMEM, "out of memory");
    kh_conn_free(c);
    return NULL;
  }
  snprintf(c->alpn, sizeof(c->alpn), "%s", r->alpn);
  snprintf(c->peer, sizeof(c->peer), "%s", r->peer_identity);
  snprintf(c->local, sizeof(c->local), "%s", r->local_identity);
  c->suite_name = kh_suite_name(r->keys.suite);
  c->connection_id = r->connection_id;
  c->resumed = r->resumed;
  return c;
}

/* exchange runs requests and responses until the result arrives. */
static int exchange(kh_stream *st, kh_s2a_hs *hs, int fd, kh_buf *req,
                    const struct timespec *deadline, kh_error *err) {
  kh_buf resp = KH_BUF_INIT, to_peer = KH_BUF_INIT;
  uint8_t buf[KH_READ_CHUNK];
  int ok = 0;
  for (int round = 0; round < KH_MAX_HS_ROUNDS; round++) {
    int done = 0;
    if (!kh_stream_exchange(st, req->data, req->len, &resp, err)) break;
    int good = kh_s2a_hs_on_resp(hs, resp.data, resp.len, &to_peer, &done, err);
    kh_buf_reset(&resp);
    /* Forward out_frames even on failure: they carry the alert. */
    kh_error werr;
    if (to_peer.len > 0 && !write_all(fd, to_peer.data, to_peer.len, good ? err : &werr)) {
      good = 0;
    }
    kh_buf_reset(&to_peer);
    if (!good) break;
    if (done) {
      ok = 1;
      break;
    }
    ssize_t n = read_some(fd, buf, sizeof(buf), deadline, st, err);
    if (n < 0 || !kh_s2a_hs_next(hs, buf, (size_t)n, req, err)) break;
  }
  if (!ok && err && err->code == KH_OK) kh_err(err, KH_ERR_INTERNAL, "handshake did not converge");
  kh_buf_free(&resp);
  kh_buf_free(&to_peer);
  return ok;
}

static kh_conn *handshake(kh_client *kc, int fd, const kh_handshake_opts *opts, int is_client,
                          kh_error *err) {
  kh_handshake_opts none = KH_HANDSHAKE_OPTS_INIT;
  if (opts == NULL) opts = &none;
  kh_error_clear(err);
  int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : KH_DEFAULT_TIMEOUT_MS;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout / 1000;
  deadline.tv_nsec += (long)(timeout % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  kh_s2a_hs *hs = kh_s2a_hs_new(is_client, opts, err);
  if (hs == NULL) return NULL;
  kh_buf req = KH_BUF_INIT;
  kh_conn *c = NULL;
  kh_stream *st = NULL;
  int ok;
  if (is_client) {
    ok = kh_s2a_hs_start(hs, NULL, 0, &req, err);
  } else {
    uint8_t buf[KH_READ_CHUNK];
    ssize_t n = read_some(fd, buf, sizeof(buf), &deadline, NULL, err); /* no stream yet */
    ok = n > 0 && kh_s2a_hs_start(hs, buf, (size_t)n, &req, err);
  }
  if (ok)
    ok = (st = kh_stream_open(kc->channel, KH_S2A_METHOD, (int)ms_left(&deadline), err)) != NULL;
  if (ok) ok = exchange(st, hs, fd, &req, &deadline, err);
  if (ok) c = conn_from_result(kc, fd, hs, is_client, opts, err);
  kh_stream_close(st, !ok);
  kh_buf_free(&req);
  kh_s2a_hs_free(hs);
  return c;
}

kh_conn *kh_connect_fd(kh_client *kc, int fd, const kh_handshake_opts *opts, kh_error *err) {
  return handshake(kc, fd, opts, 1, err);
}

kh_conn *kh_accept_fd(kh_client *kc, int fd, const kh_handshake_opts *opts, kh_error *err) {
  return handshake(kc, fd, opts, 0, err);
}

/* --- records over the fd ------------------------------------------------- */

static int flush_out(kh_conn *c, kh_error *err) {
  int ok = c->out.len == 0 || write_all(c->fd, c->out.data, c->out.len, err);
  kh_buf_reset(&c->out);
  return ok;
}

ssize_t kh_conn_read(kh_conn *c, void *buf, size_t len, kh_error *err) {
  uint8_t chunk[KH_READ_CHUNK];
  for (;;) {
    if (c->app.len > 0) {
      size_t n = len < c->app.len ? len : c->app.len;
      memcpy(buf, c->app.data, n);
      kh_buf_consume(&c->app, n);
      return (ssize_t)n;
    }
    if (kh_record_peer_closed(c->rec)) return 0;
    if (c->fatal) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier"), -1;
    if (c->in.len > 0) {
      size_t used = 0;
      int ok = kh_record_open(c->rec, c->in.data, c->in.len, &used, &c->app, &c->out, err);
      kh_buf_consume(&c->in, used);
      send_tickets(c);
      kh_error werr;
      flush_out(c, ok ? err : &werr); /* KeyUpdate answer or our alert */
      if (!ok) {
        c->fatal = 1;
        return -1;
      }
      if (c->app.len > 0 || kh_record_peer_closed(c->rec) || used > 0) continue;
    }
    ssize_t n = read(c->fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return kh_err(err, KH_ERR_WANT_READ, "no complete record yet"), -1;
    if (n < 0) return kh_err(err, KH_ERR_IO, "read from peer failed: %s", strerror(errno)), -1;
    if (n == 0) {
      c->fatal = 1;
      return kh_err(err, KH_ERR_IO, "peer closed the connection without close_notify"), -1;
    }
    if (!kh_buf_append(&c->in, chunk, (size_t)n))
      return kh_err(err, KH_ERR_NOMEM, "out of memory"), -1;
  }
}

int kh_conn_write(kh_conn *c, const void *buf, size_t len, kh_error *err) {
  if (c->fatal) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier");
  if (!kh_record_seal(c->rec, KH_CT_APPLICATION_DATA, buf, len, &c->out, err)) return 0;
  return flush_out(c, err);
}

int kh_conn_key_update(kh_conn *c, int request_peer, kh_error *err) {
  if (c->fatal) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier");
  if (!kh_record_key_update(c->rec, request_peer, &c->out, err)) return 0;
  return flush_out(c, err);
}

int kh_conn_close(kh_conn *c, kh_error *err) {
  if (c->fatal) return 1;
  if (!kh_record_close(c->rec, &c->out, err)) return 0;
  return flush_out(c, err);
}

size_t kh_conn_pending(const kh_conn *c) {
  return c->app.len;
}

void kh_conn_free(kh_conn *c) {
  if (c == NULL) return;
  kh_record_free(c->rec);
  kh_buf_free(&c->in);
  kh_buf_free(&c->app);
  kh_buf_free(&c->out);
  for (size_t i = 0; i < c->n_tickets; i++) kh_buf_free(&c->tickets[i]);
  kh_wipe(c->token, sizeof(c->token));
  free(c);
}

void kh_conn_get_info(const kh_conn *c, kh_conn_info *out) {
  out->version = "TLSv1.3";
  out->ciphersuite = c->suite_name;
  out->alpn = c->alpn;
  out->peer_identity = c->peer;
  out->local_identity = c->local;
  out->connection_id = c->connection_id;
  out->resumed = c->resumed;
}

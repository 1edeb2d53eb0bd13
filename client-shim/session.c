/* session.c: libkeyhold's sans-IO session (keyhold.h, "sans-IO sessions"):
 * the S2A exchange with the sidecar while the handshake runs, then the
 * record layer, on buffers. The application (or conn.c) moves the bytes. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kh_buf.h"
#include "kh_secret.h"
#include "record.h"
#include "s2a_hs.h"
#include "sidecar_stream.h"

#define KH_S2A_METHOD "/s2a.proto.S2AService/SetUpSession"
#define KH_MAX_HS_ROUNDS 64
#define KH_TICKET_TIMEOUT_MS 1000
/* Unprocessed peer bytes a session holds at most (kh_session_feed). */
#define KH_SESSION_MAX_INPUT (1u << 20)

struct kh_client {
  kh_sidecar *sidecar;
};

struct kh_session {
  kh_client *kc;
  int is_client;
  /* The options, with their strings copied into |strings|. */
  kh_handshake_opts opts;
  char *strings;
  size_t strings_len;
  struct timespec deadline;
  /* While the handshake runs. */
  kh_s2a_hs *hs;
  kh_stream *st;
  int nonblocking; /* kh_session_set_nonblocking */
  int waiting;     /* a request is with the sidecar */
  int started;
  int rounds;
  int done;
  int fatal;
  /* After it. */
  kh_record *rec;
  kh_buf in;  /* peer bytes not yet processed */
  kh_buf app; /* plaintext not yet read */
  kh_buf out; /* bytes for the peer */
  char alpn[256];
  char peer[512];
  char local[512];
  const char *suite_name;
  uint64_t connection_id;
  int resumed;
  /* Client side: NewSessionTicket messages not yet handed to the sidecar. */
  kh_buf tickets[KH_S2A_MAX_TICKETS];
  size_t n_tickets;
};

kh_sidecar *kh_client_sidecar(kh_client *kc) {
  return kc->sidecar;
}

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
  kc->sidecar = kh_sidecar_new(sidecar_socket_path, err);
  if (kc->sidecar == NULL) {
    free(kc);
    return NULL;
  }
  return kc;
}

void kh_client_free(kh_client *kc) {
  if (kc == NULL) return;
  kh_sidecar_free(kc->sidecar);
  free(kc);
}

/* --- options ------------------------------------------------------------- */

/* copy_opts copies |o| and every string it points to into |s| (one block). */
static int copy_opts(kh_session *s, const kh_handshake_opts *o, kh_error *err) {
  if (o->alpn_count > KH_MAX_PROTOCOLS || o->expect_peer_count > KH_MAX_PEERS)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "too many ALPN protocols or expected peers");
  const char *const *fields[2 + KH_MAX_PEERS + KH_MAX_PROTOCOLS + 1];
  const char **dst[2 + KH_MAX_PEERS + KH_MAX_PROTOCOLS + 1];
  size_t n = 0;
  s->opts = *o;
  fields[n] = &o->local_identity, dst[n++] = &s->opts.local_identity;
  fields[n] = &o->server_name, dst[n++] = &s->opts.server_name;
  fields[n] = &o->access_token, dst[n++] = &s->opts.access_token;
  for (size_t i = 0; i < o->expect_peer_count; i++)
    fields[n] = &o->expect_peers[i], dst[n++] = &s->opts.expect_peers[i];
  for (size_t i = 0; i < o->alpn_count; i++) fields[n] = &o->alpn[i], dst[n++] = &s->opts.alpn[i];
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    if (*fields[i] != NULL) total += strlen(*fields[i]) + 1;
  s->strings = malloc(total > 0 ? total : 1);
  if (s->strings == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  s->strings_len = total;
  char *p = s->strings;
  for (size_t i = 0; i < n; i++) {
    if (*fields[i] == NULL) continue; /* NULL stays NULL (access_token: the environment) */
    size_t len = strlen(*fields[i]) + 1;
    memcpy(p, *fields[i], len);
    *dst[i] = p;
    p += len;
  }
  return 1;
}

static long ms_left(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

kh_session *kh_session_new(kh_client *kc, kh_role role, const kh_handshake_opts *opts,
                           kh_error *err) {
  kh_handshake_opts none = KH_HANDSHAKE_OPTS_INIT;
  if (opts == NULL) opts = &none;
  if (kc == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "no kh_client");
    return NULL;
  }
  if (role != KH_ROLE_CLIENT && role != KH_ROLE_SERVER) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown role %d", (int)role);
    return NULL;
  }
  kh_session *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  s->kc = kc;
  s->is_client = role == KH_ROLE_CLIENT;
  int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : KH_DEFAULT_TIMEOUT_MS;
  clock_gettime(CLOCK_MONOTONIC, &s->deadline);
  s->deadline.tv_sec += timeout / 1000;
  s->deadline.tv_nsec += (long)(timeout % 1000) * 1000000;
  if (s->deadline.tv_nsec >= 1000000000) {
    s->deadline.tv_sec++;
    s->deadline.tv_nsec -= 1000000000;
  }
  if (!copy_opts(s, opts, err) || (s->hs = kh_s2a_hs_new(s->is_client, &s->opts, err)) == NULL) {
    kh_session_free(s);
    return NULL;
  }
  return s;
}

void kh_session_free(kh_session *s) {
  if (s == NULL) return;
  kh_stream_close(s->st, 1);
  kh_s2a_hs_free(s->hs);
  kh_record_free(s->rec);
  kh_buf_free(&s->in);
  kh_buf_free(&s->app);
  kh_buf_free(&s->out);
  for (size_t i = 0; i < s->n_tickets; i++) kh_buf_free(&s->tickets[i]);
  if (s->strings != NULL) kh_wipe(s->strings, s->strings_len); /* the access token */
  free(s->strings);
  free(s);
}

int kh_session_feed(kh_session *s, const void *in, size_t len, kh_error *err) {
  if (len > KH_SESSION_MAX_INPUT || s->in.len > KH_SESSION_MAX_INPUT - len)
    return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED,
                  "more than %u unprocessed bytes from the peer: process them first",
                  KH_SESSION_MAX_INPUT);
  if (!kh_buf_append(&s->in, in, len)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  return 1;
}

const uint8_t *kh_session_output(const kh_session *s, size_t *out_len) {
  *out_len = s->out.len;
  return s->out.data;
}

void kh_session_output_consumed(kh_session *s, size_t n) {
  kh_buf_consume(&s->out, n < s->out.len ? n : s->out.len);
}

/* --- handshake ----------------------------------------------------------- */

/* on_ticket keeps a NewSessionTicket message for the sidecar (the first
 * KH_S2A_MAX_TICKETS until they are handed back; a peer sends one or two). */
static void on_ticket(void *arg, const uint8_t *msg, size_t len) {
  kh_session *s = arg;
  if (s->n_tickets == KH_S2A_MAX_TICKETS) return;
  kh_buf_reset(&s->tickets[s->n_tickets]);
  if (kh_buf_append(&s->tickets[s->n_tickets], msg, len)) s->n_tickets++;
}

/* keyed builds the record layer from the handshake's result and takes the
 * bytes the handshake did not consume as its first input. */
static int keyed(kh_session *s, kh_error *err) {
  const kh_s2a_result *r = kh_s2a_hs_result(s->hs);
  /* A client's session tickets go back to the sidecar for resumption. */
  s->rec = kh_record_new(&r->keys, s->is_client ? on_ticket : NULL, s, err);
  const kh_buf *left = kh_s2a_hs_leftover(s->hs);
  /* The leftover came before anything fed since (while a non-blocking
   * session waited for the sidecar). */
  kh_buf in = KH_BUF_INIT;
  if (s->rec == NULL || !kh_buf_append(&in, left->data, left->len) ||
      !kh_buf_append(&in, s->in.data, s->in.len)) {
    if (s->rec) kh_err(err, KH_ERR_NOMEM, "out of memory");
    kh_buf_free(&in);
    return 0;
  }
  kh_buf_free(&s->in);
  s->in = in;
  snprintf(s->alpn, sizeof(s->alpn), "%s", r->alpn);
  snprintf(s->peer, sizeof(s->peer), "%s", r->peer_identity);
  snprintf(s->local, sizeof(s->local), "%s", r->local_identity);
  s->suite_name = kh_suite_name(r->keys.suite);
  s->connection_id = r->connection_id;
  s->resumed = r->resumed;
  return 1;
}

/* expected_client: a server's check of --expect-peer on the client keyholdd
 * verified (S2A v1 carries no expectations for servers). A client not on
 * the list gets a fatal access_denied alert. */
static int expected_client(kh_session *s, kh_error *err) {
  if (s->is_client || s->opts.expect_peer_count == 0) return 1;
  for (size_t i = 0; i < s->opts.expect_peer_count; i++)
    if (strcmp(s->peer, s->opts.expect_peers[i]) == 0) return 1;
  static const uint8_t access_denied[2] = {2, 49};
  kh_error e;
  if (!kh_record_seal(s->rec, 21, access_denied, sizeof(access_denied), &s->out, &e))
    kh_error_clear(&e); /* best effort: the refusal stands either way */
  return kh_err(err, KH_ERR_PERMISSION_DENIED, "client %.200s is not one of the %zu expected peers",
                s->peer[0] ? s->peer : "(no identity)", s->opts.expect_peer_count);
}

/* request sends the next request to the sidecar: the start (client: at
 * once; server: with the first bytes of the ClientHello), on a stream it
 * opens, or a next with every byte fed since. */
static int request(kh_session *s, kh_error *err) {
  kh_buf req = KH_BUF_INIT;
  int ok;
  if (!s->started) {
    ok = s->is_client ? kh_s2a_hs_start(s->hs, NULL, 0, &req, err)
                      : kh_s2a_hs_start(s->hs, s->in.data, s->in.len, &req, err);
    long left = ms_left(&s->deadline);
    if (ok && left <= 0) ok = kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "peer did not answer in time");
    if (ok)
      ok = (s->st = s->nonblocking
                        ? kh_stream_open_async(s->kc->sidecar, KH_S2A_METHOD, (int)left, err)
                        : kh_stream_open(s->kc->sidecar, KH_S2A_METHOD, (int)left, err)) != NULL;
    s->started = 1;
  } else {
    ok = kh_s2a_hs_next(s->hs, s->in.data, s->in.len, &req, err);
  }
  kh_buf_reset(&s->in); /* passed on: the S2A exchange keeps what the sidecar did not consume */
  if (ok) ok = kh_stream_exchange_start(s->st, req.data, req.len, err);
  kh_buf_free(&req);
  return ok;
}

/* answer takes the sidecar's answer (a non-blocking session: -1 if it is
 * not here yet); its out_frames go to the output even on failure: they
 * carry the alert. */
static int answer(kh_session *s, kh_error *err) {
  kh_buf resp = KH_BUF_INIT;
  int done = 0;
  int ok = kh_stream_exchange_finish(s->st, !s->nonblocking, &resp, err);
  if (ok < 0) return -1;
  if (ok) ok = kh_s2a_hs_on_resp(s->hs, resp.data, resp.len, &s->out, &done, err);
  kh_buf_free(&resp);
  if (!ok) return 0;
  if (done) {
    ok = keyed(s, err) && expected_client(s, err);
    kh_stream_close(s->st, !ok);
    s->st = NULL;
    kh_s2a_hs_free(s->hs); /* wipes the result */
    s->hs = NULL;
    if (!ok) return 0;
    s->done = 1;
  }
  return 1;
}

int kh_session_handshake(kh_session *s, kh_error *err) {
  if (s->done) return 1;
  if (s->fatal) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "handshake failed earlier");
  kh_error e;
  kh_error_clear(&e);
  if (!s->waiting) {
    /* A client starts at once; otherwise only peer bytes move the handshake. */
    if ((s->started || !s->is_client) && s->in.len == 0)
      return kh_err(err, KH_ERR_WANT_READ, "handshake needs more bytes from the peer");
    if (s->rounds++ == KH_MAX_HS_ROUNDS) {
      kh_err(&e, KH_ERR_INTERNAL, "handshake did not converge");
      goto failed;
    }
    if (!request(s, &e)) goto failed;
    s->waiting = 1;
  }
  int r = answer(s, &e);
  if (r < 0) return kh_err(err, KH_ERR_WANT_SIDECAR, "waiting for the sidecar's answer");
  s->waiting = 0;
  if (r > 0) {
    if (s->done) return 1;
    return kh_err(err, KH_ERR_WANT_READ, "handshake needs more bytes from the peer");
  }
failed:
  if (e.code == KH_OK) kh_err(&e, KH_ERR_INTERNAL, "handshake did not converge");
  s->fatal = 1;
  s->waiting = 0;
  kh_stream_close(s->st, 1);
  s->st = NULL;
  if (err != NULL) *err = e;
  return 0;
}

int kh_session_set_nonblocking(kh_session *s, kh_error *err) {
  if (s->started || s->fatal)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION,
                  "kh_session_set_nonblocking: the handshake has already started");
  s->nonblocking = 1;
  return 1;
}

int kh_session_sidecar_fd(const kh_session *s) {
  return s->waiting ? kh_stream_fd(s->st) : -1;
}

const struct timespec *kh_session_deadline(const kh_session *s) {
  return &s->deadline;
}

int kh_session_check_sidecar(kh_session *s, kh_error *err) {
  if (kh_stream_check(s->st, err)) return 1;
  s->fatal = 1;
  return 0;
}

void kh_session_fail(kh_session *s) {
  s->fatal = 1;
}

/* --- records ------------------------------------------------------------- */

static int established(const kh_session *s, kh_error *err) {
  if (s->fatal) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier");
  if (!s->done) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "handshake not finished");
  return 1;
}

ssize_t kh_session_open(kh_session *s, void *buf, size_t len, kh_error *err) {
  for (;;) {
    if (s->app.len > 0) {
      size_t n = len < s->app.len ? len : s->app.len;
      memcpy(buf, s->app.data, n);
      kh_buf_consume(&s->app, n);
      return (ssize_t)n;
    }
    if (s->rec != NULL && kh_record_peer_closed(s->rec)) return 0;
    if (!established(s, err)) return -1;
    if (s->in.len == 0) break;
    size_t used = 0;
    int ok = kh_record_open(s->rec, s->in.data, s->in.len, &used, &s->app, &s->out, err);
    kh_buf_consume(&s->in, used);
    if (!ok) {
      s->fatal = 1;
      return -1;
    }
    if (s->app.len == 0 && !kh_record_peer_closed(s->rec) && used == 0) break;
  }
  return kh_err(err, KH_ERR_WANT_READ, "no complete record yet"), -1;
}

int kh_session_seal(kh_session *s, const void *buf, size_t len, kh_error *err) {
  return established(s, err) &&
         kh_record_seal(s->rec, KH_CT_APPLICATION_DATA, buf, len, &s->out, err);
}

int kh_session_key_update(kh_session *s, int request_peer, kh_error *err) {
  return established(s, err) && kh_record_key_update(s->rec, request_peer, &s->out, err);
}

size_t kh_session_pending(const kh_session *s) {
  if (s->app.len > 0 || s->rec == NULL) return s->app.len;
  /* A whole record already here: opening it needs no more input. */
  const uint8_t *p = s->in.data;
  if (s->in.len >= 5 && s->in.len >= 5 + ((size_t)p[3] << 8 | p[4])) return s->in.len;
  return 0;
}

/* --- tickets and close --------------------------------------------------- */

int kh_session_flush_tickets(kh_session *s, kh_error *err) {
  if (s->n_tickets == 0) return 1;
  kh_buf req = KH_BUF_INIT, resp = KH_BUF_INIT;
  kh_stream *st = NULL;
  int ok =
      kh_s2a_ticket_req(s->connection_id, s->local, s->opts.access_token, s->tickets, s->n_tickets,
                        &req, err) &&
      (st = kh_stream_open(s->kc->sidecar, KH_S2A_METHOD, KH_TICKET_TIMEOUT_MS, err)) != NULL &&
      kh_stream_exchange(st, req.data, req.len, &resp, err) &&
      kh_s2a_ticket_resp(resp.data, resp.len, err);
  kh_stream_close(st, 0);
  for (size_t i = 0; i < s->n_tickets; i++) kh_buf_free(&s->tickets[i]);
  s->n_tickets = 0;
  kh_buf_free(&req);
  kh_buf_free(&resp);
  return ok;
}

int kh_session_close_notify(kh_session *s, kh_error *err) {
  if (s->fatal) return 1;
  return established(s, err) && kh_record_close(s->rec, &s->out, err);
}

void kh_session_flush_tickets_quietly(kh_session *s) {
  /* Resumption is an optimisation: a failure here is dropped. */
  kh_error terr;
  if (!kh_session_flush_tickets(s, &terr)) kh_error_clear(&terr);
}

int kh_session_close(kh_session *s, kh_error *err) {
  if (!kh_session_close_notify(s, err)) return 0;
  kh_session_flush_tickets_quietly(s);
  return 1;
}

void kh_session_get_info(const kh_session *s, kh_conn_info *out) {
  out->version = "TLSv1.3";
  out->ciphersuite = s->suite_name != NULL ? s->suite_name : "";
  out->alpn = s->alpn;
  out->peer_identity = s->peer;
  out->local_identity = s->local;
  out->connection_id = s->connection_id;
  out->resumed = s->resumed;
}

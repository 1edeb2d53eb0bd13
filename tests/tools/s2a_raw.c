/* s2a_raw: sends scripted (often malformed) S2A v1 requests to keyholdd and
 * prints the status it ends the stream with:
 *   s2a_raw --socket PATH --expect CODE CASE
 * Exit 0 when the final status name equals CODE.
 *   s2a_raw --socket PATH --half-open N
 * holds N handshakes open at once (client_start, then silence) and prints
 * how each ended: "half-open: N DEADLINE_EXCEEDED=a RESOURCE_EXHAUSTED=b
 * other=c"; exit 0 when other is 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kh_buf.h"
#include "s2a/s2a.pb-c.h"
#include "sidecar_stream.h"

#define METHOD "/s2a.proto.S2AService/SetUpSession"

static void pack(const S2a__Proto__SessionReq *r, kh_buf *out) {
  kh_buf_reset(out);
  if (!kh_buf_reserve(out, s2a__proto__session_req__get_packed_size(r))) abort();
  out->len = s2a__proto__session_req__pack(r, out->data);
}

static void client_start(kh_buf *out, const char *local) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ClientSessionStartReq cs = S2A__PROTO__CLIENT_SESSION_START_REQ__INIT;
  S2a__Proto__Identity id = S2A__PROTO__IDENTITY__INIT;
  cs.min_tls_version = cs.max_tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
  if (local) {
    id.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
    id.spiffe_id = (char *)local;
    cs.local_identity = &id;
  }
  cs.target_name = "localhost";
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START;
  r.client_start = &cs;
  pack(&r, out);
}

static void next(kh_buf *out, const uint8_t *data, size_t len) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__SessionNextReq nx = S2A__PROTO__SESSION_NEXT_REQ__INIT;
  nx.in_bytes.data = (uint8_t *)data;
  nx.in_bytes.len = len;
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_NEXT;
  r.next = &nx;
  pack(&r, out);
}

static void server_start(kh_buf *out, const uint8_t *data, size_t len) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ServerSessionStartReq ss = S2A__PROTO__SERVER_SESSION_START_REQ__INIT;
  S2a__Proto__Identity id = S2A__PROTO__IDENTITY__INIT, *ids[1] = {&id};
  id.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  id.spiffe_id = "spiffe://example.org/server";
  ss.n_local_identities = 1;
  ss.local_identities = ids;
  ss.in_bytes.data = (uint8_t *)data;
  ss.in_bytes.len = len;
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_SERVER_START;
  r.server_start = &ss;
  pack(&r, out);
}

/* run sends each message in |msgs| in turn, reading a response after each
 * until the stream ends; returns the final status. */
static int run(kh_sidecar *sc, const char *method, kh_buf *msgs, size_t n, int cancel_after,
               int half_close, kh_error *err) {
  kh_stream *s = kh_stream_open(sc, method, 5000, err);
  if (s == NULL) return 0;
  kh_buf resp = KH_BUF_INIT;
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    ok = kh_stream_send(s, msgs[i].data, msgs[i].len, err) && kh_stream_recv(s, &resp, err);
    if (ok && cancel_after) {
      kh_stream_close(s, 1);
      kh_buf_free(&resp);
      kh_err(err, KH_ERR_CANCELLED, "client went away mid-handshake");
      return 0;
    }
  }
  if (ok && half_close) ok = kh_stream_half_close(s, err);
  /* Keep reading until the sidecar ends the stream with its status. */
  for (int i = 0; ok && i < 8; i++) ok = kh_stream_recv(s, &resp, err);
  if (ok) kh_err(err, KH_ERR_INTERNAL, "stream still open");
  kh_stream_close(s, !ok ? 0 : 1);
  kh_buf_free(&resp);
  return 0;
}

/* half_open: |n| concurrent stalled handshakes on one connection. */
static int half_open(const char *sock, int n) {
  kh_error err;
  kh_sidecar *sc = kh_sidecar_new(sock, &err);
  if (sc == NULL || n <= 0 || n > 100000) return 2;
  kh_stream **s = calloc((size_t)n, sizeof(*s));
  kh_buf start = KH_BUF_INIT, resp = KH_BUF_INIT;
  client_start(&start, "spiffe://example.org/client");
  int deadline = 0, exhausted = 0, other = 0;
  for (int i = 0; i < n; i++) {
    s[i] = kh_stream_open(sc, METHOD, 30000, &err);
    if (s[i] == NULL) {
      other++;
      continue;
    }
    /* The ClientHello comes back at once, or the limit's refusal. */
    if (!kh_stream_send(s[i], start.data, start.len, &err) || !kh_stream_recv(s[i], &resp, &err)) {
      exhausted += err.code == KH_ERR_RESOURCE_EXHAUSTED;
      other += err.code != KH_ERR_RESOURCE_EXHAUSTED;
      kh_stream_close(s[i], 0);
      s[i] = NULL;
    }
  }
  for (int i = 0; i < n; i++) { /* now wait for each one's end */
    if (s[i] == NULL) continue;
    if (kh_stream_recv(s[i], &resp, &err)) kh_error_clear(&err); /* a message: not the end */
    deadline += err.code == KH_ERR_DEADLINE_EXCEEDED;
    other += err.code != KH_ERR_DEADLINE_EXCEEDED;
    kh_stream_close(s[i], 0);
  }
  printf("half-open: %d DEADLINE_EXCEEDED=%d RESOURCE_EXHAUSTED=%d other=%d\n", n, deadline,
         exhausted, other);
  kh_buf_free(&start);
  kh_buf_free(&resp);
  free(s);
  kh_sidecar_free(sc);
  return other == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *sock = NULL, *expect = NULL, *which = NULL;
  int many = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--half-open") == 0 && i + 1 < argc)
      many = atoi(argv[++i]);
    else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
      sock = argv[++i];
    else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc)
      expect = argv[++i];
    else
      which = argv[i];
  }
  if (sock != NULL && many > 0) return half_open(sock, many);
  if (sock == NULL || expect == NULL || which == NULL) {
    fprintf(stderr, "usage: s2a_raw --socket PATH --expect CODE CASE\n");
    return 2;
  }
  kh_error err = {0};
  kh_sidecar *sc = kh_sidecar_new(sock, &err);
  if (sc == NULL) return 2;
  kh_buf m[3] = {KH_BUF_INIT, KH_BUF_INIT, KH_BUF_INIT};
  static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  const char *method = METHOD;
  size_t n = 1;
  int cancel = 0, half_close = 0;
  if (strcmp(which, "next-first") == 0) {
    next(&m[0], (const uint8_t *)"x", 1);
  } else if (strcmp(which, "double-start") == 0) {
    client_start(&m[0], "spiffe://example.org/client");
    client_start(&m[1], "spiffe://example.org/client");
    n = 2;
  } else if (strcmp(which, "garbage") == 0) {
    if (!kh_buf_append(&m[0], "\xff\xff\xff\xff\x0f garbage", 13)) abort();
  } else if (strcmp(which, "no-request") == 0) {
    /* an empty SessionReq: valid protobuf, no oneof set */
    if (!kh_buf_append(&m[0], "", 0)) abort();
  } else if (strcmp(which, "empty-next") == 0) {
    client_start(&m[0], "spiffe://example.org/client");
    next(&m[1], NULL, 0);
    n = 2;
  } else if (strcmp(which, "unknown-identity") == 0) {
    client_start(&m[0], "spiffe://example.org/nobody");
  } else if (strcmp(which, "oversized") == 0) {
    size_t big = 300 * 1024;
    uint8_t *p = calloc(1, big);
    next(&m[0], p, big);
    free(p);
  } else if (strcmp(which, "garbage-tls") == 0) {
    server_start(&m[0], http, sizeof(http) - 1);
  } else if (strcmp(which, "disconnect-mid") == 0) {
    client_start(&m[0], "spiffe://example.org/client");
    cancel = 1;
  } else if (strcmp(which, "hold") == 0) {
    /* start a handshake and never continue it: for shutdown tests */
    client_start(&m[0], "spiffe://example.org/client");
  } else if (strcmp(which, "silent") == 0) {
    n = 0; /* open the stream, send nothing: a stalled app */
  } else if (strcmp(which, "half-close") == 0) {
    client_start(&m[0], "spiffe://example.org/client");
    half_close = 1;
  } else if (strcmp(which, "unknown-method") == 0) {
    method = "/s2a.proto.S2AService/NoSuchMethod";
    client_start(&m[0], NULL);
  } else {
    fprintf(stderr, "unknown case %s\n", which);
    return 2;
  }
  run(sc, method, m, n, cancel, half_close, &err);
  for (int i = 0; i < 3; i++) kh_buf_free(&m[i]);
  kh_sidecar_free(sc);
  printf("%s: %s %s\n", which, kh_code_name(err.code), err.msg);
  return strcmp(kh_code_name(err.code), expect) == 0 ? 0 : 1;
}

/* s2a_hs.c: S2A v1 client exchange (sans-IO). */
#include "s2a_hs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kh_secret.h"
#include "s2a/s2a.pb-c.h"

struct kh_s2a_hs {
  int is_client;
  kh_handshake_opts opts;
  kh_buf pending; /* bytes sent in the last request, until consumed */
  int started;
  int done;
  int failed;
  kh_s2a_result result;
};

kh_s2a_hs *kh_s2a_hs_new(int is_client, const kh_handshake_opts *opts, kh_error *err) {
  if (opts->alpn_count > KH_MAX_PROTOCOLS || opts->expect_peer_count > KH_MAX_PEERS) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "too many ALPN protocols or expected peers");
    return NULL;
  }
  kh_s2a_hs *hs = kh_secret_alloc(sizeof(*hs));
  if (hs == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  hs->is_client = is_client;
  hs->opts = *opts;
  return hs;
}

void kh_s2a_hs_free(kh_s2a_hs *hs) {
  if (hs == NULL) return;
  kh_buf_free(&hs->pending);
  kh_secret_free(hs, sizeof(*hs));
}

static void set_identity(S2a__Proto__Identity *id, const char *name) {
  s2a__proto__identity__init(id);
  if (strncmp(name, "spiffe://", 9) == 0) {
    id->identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
    id->spiffe_id = (char *)name;
  } else {
    id->identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
    id->hostname = (char *)name;
  }
}

/* set_token attaches the access token (|token|, else $S2A_ACCESS_TOKEN). */
static void set_token(S2a__Proto__SessionReq *r, S2a__Proto__AuthenticationMechanism *mech,
                      S2a__Proto__AuthenticationMechanism **mechs, const char *token) {
  s2a__proto__authentication_mechanism__init(mech);
  if (token == NULL) token = getenv("S2A_ACCESS_TOKEN");
  if (token == NULL || token[0] == '\0') return;
  mech->mechanism_oneof_case = S2A__PROTO__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  mech->token = (char *)token;
  r->n_auth_mechanisms = 1;
  r->auth_mechanisms = mechs;
}

static int pack_req(const S2a__Proto__SessionReq *r, kh_buf *out, kh_error *err) {
  size_t n = s2a__proto__session_req__get_packed_size(r);
  kh_buf_reset(out);
  if (!kh_buf_reserve(out, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  out->len = s2a__proto__session_req__pack(r, out->data);
  return 1;
}

static const S2a__Proto__Ciphersuite all_suites[] = {
    S2A__PROTO__CIPHERSUITE__AES_128_GCM_SHA256,
    S2A__PROTO__CIPHERSUITE__AES_256_GCM_SHA384,
    S2A__PROTO__CIPHERSUITE__CHACHA20_POLY1305_SHA256,
};

int kh_s2a_hs_start(kh_s2a_hs *hs, const uint8_t *first, size_t first_len, kh_buf *req,
                    kh_error *err) {
  if (hs->started) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "handshake already started");
  const kh_handshake_opts *o = &hs->opts;
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__Identity local, targets[KH_MAX_PEERS];
  S2a__Proto__Identity *target_ptrs[KH_MAX_PEERS], *local_ptrs[1];
  if (o->local_identity && o->local_identity[0]) set_identity(&local, o->local_identity);
  /* The access token rides on the start request, where the sidecar decides. */
  S2a__Proto__AuthenticationMechanism mech, *mechs[1] = {&mech};
  set_token(&r, &mech, mechs, o->access_token);
  int ok;
  if (hs->is_client) {
    S2a__Proto__ClientSessionStartReq cs = S2A__PROTO__CLIENT_SESSION_START_REQ__INIT;
    cs.n_application_protocols = o->alpn_count;
    cs.application_protocols = (char **)o->alpn;
    cs.min_tls_version = cs.max_tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
    cs.n_tls_ciphersuites = 3;
    cs.tls_ciphersuites = (S2a__Proto__Ciphersuite *)all_suites;
    for (size_t i = 0; i < o->expect_peer_count; i++) {
      set_identity(&targets[i], o->expect_peers[i]);
      target_ptrs[i] = &targets[i];
    }
    cs.n_target_identities = o->expect_peer_count;
    cs.target_identities = target_ptrs;
    if (o->local_identity && o->local_identity[0]) cs.local_identity = &local;
    cs.target_name = (char *)(o->server_name ? o->server_name : "");
    r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START;
    r.client_start = &cs;
    ok = pack_req(&r, req, err);
  } else {
    S2a__Proto__ServerSessionStartReq ss = S2A__PROTO__SERVER_SESSION_START_REQ__INIT;
    ss.n_application_protocols = o->alpn_count;
    ss.application_protocols = (char **)o->alpn;
    ss.min_tls_version = ss.max_tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
    ss.n_tls_ciphersuites = 3;
    ss.tls_ciphersuites = (S2a__Proto__Ciphersuite *)all_suites;
    if (o->local_identity && o->local_identity[0]) {
      local_ptrs[0] = &local;
      ss.n_local_identities = 1;
      ss.local_identities = local_ptrs;
    }
    kh_buf_reset(&hs->pending);
    if (!kh_buf_append(&hs->pending, first, first_len))
      return kh_err(err, KH_ERR_NOMEM, "out of memory");
    ss.in_bytes.data = hs->pending.data;
    ss.in_bytes.len = hs->pending.len;
    r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_SERVER_START;
    r.server_start = &ss;
    ok = pack_req(&r, req, err);
  }
  hs->started = ok;
  return ok;
}

int kh_s2a_hs_next(kh_s2a_hs *hs, const uint8_t *in, size_t in_len, kh_buf *req, kh_error *err) {
  if (!hs->started || hs->done || hs->failed)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "no handshake in progress");
  if (!kh_buf_append(&hs->pending, in, in_len)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  if (hs->pending.len == 0) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "no peer bytes to send");
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__SessionNextReq nx = S2A__PROTO__SESSION_NEXT_REQ__INIT;
  nx.in_bytes.data = hs->pending.data;
  nx.in_bytes.len = hs->pending.len;
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_NEXT;
  r.next = &nx;
  return pack_req(&r, req, err);
}

static void copy_identity(const S2a__Proto__Identity *id, char *out, size_t len) {
  const char *s = "";
  if (id != NULL && id->identity_oneof_case == S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID)
    s = id->spiffe_id;
  if (id != NULL && id->identity_oneof_case == S2A__PROTO__IDENTITY__IDENTITY_ONEOF_HOSTNAME)
    s = id->hostname;
  snprintf(out, len, "%s", s);
}

/* take_result validates the sidecar's result strictly before anyone keys a
 * record layer with it. */
static int take_result(kh_s2a_hs *hs, const S2a__Proto__SessionResult *res, kh_error *err) {
  const S2a__Proto__SessionState *st = res->state;
  if (st == NULL) return kh_err(err, KH_ERR_INTERNAL, "sidecar result has no session state");
  if (st->tls_version != S2A__PROTO__TLSVERSION__TLS1_3)
    return kh_err(err, KH_ERR_INTERNAL, "sidecar returned a TLS version other than 1.3");
  if ((int)st->tls_ciphersuite < 0 || (int)st->tls_ciphersuite >= KH_SUITE_COUNT)
    return kh_err(err, KH_ERR_INTERNAL, "sidecar returned unknown ciphersuite %d",
                  (int)st->tls_ciphersuite);
  size_t want = kh_suite_secret_len((int)st->tls_ciphersuite);
  if (st->in_key.len != want || st->out_key.len != want)
    return kh_err(err, KH_ERR_INTERNAL, "sidecar returned %zu/%zu-byte secrets, %s needs %zu",
                  st->in_key.len, st->out_key.len, kh_suite_name(st->tls_ciphersuite), want);
  kh_s2a_result *r = &hs->result;
  /* Out of the protobuf into locked memory (copy 3 of kh_traffic.h's list). */
  r->keys.tls_version = KH_TLS_VERSION_1_3;
  r->keys.suite = (kh_suite)st->tls_ciphersuite;
  r->keys.secret_len = want;
  memcpy(r->keys.in_secret, st->in_key.data, want);
  memcpy(r->keys.out_secret, st->out_key.data, want);
  r->keys.in_sequence = st->in_sequence;
  r->keys.out_sequence = st->out_sequence;
  r->connection_id = st->connection_id;
  r->resumed = st->is_handshake_resumed;
  snprintf(r->alpn, sizeof(r->alpn), "%s",
           res->application_protocol ? res->application_protocol : "");
  copy_identity(res->peer_identity, r->peer_identity, sizeof(r->peer_identity));
  copy_identity(res->local_identity, r->local_identity, sizeof(r->local_identity));
  return 1;
}

/* wipe_unpacked clears secrets from a decoded response before it is freed. */
static void wipe_unpacked(S2a__Proto__SessionResp *resp) {
  if (resp->result && resp->result->state) {
    S2a__Proto__SessionState *st = resp->result->state;
    kh_wipe(st->in_key.data, st->in_key.len);
    kh_wipe(st->out_key.data, st->out_key.len);
  }
}

int kh_s2a_hs_on_resp(kh_s2a_hs *hs, const uint8_t *resp, size_t resp_len, kh_buf *to_peer,
                      int *done, kh_error *err) {
  *done = 0;
  if (!hs->started || hs->done || hs->failed)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "no handshake in progress");
  S2a__Proto__SessionResp *r = s2a__proto__session_resp__unpack(NULL, resp_len, resp);
  if (r == NULL) {
    hs->failed = 1;
    return kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed SessionResp");
  }
  int ok = 1;
  if (r->out_frames.len > 0 && !kh_buf_append(to_peer, r->out_frames.data, r->out_frames.len))
    ok = kh_err(err, KH_ERR_NOMEM, "out of memory");
  if (ok && r->status && r->status->code != 0) {
    unsigned code = r->status->code;
    ok = kh_err(
        err, code <= 16 ? (kh_code)code : KH_ERR_UNKNOWN, "sidecar: %s",
        r->status->details && r->status->details[0] ? r->status->details : "handshake refused");
  }
  if (ok && r->bytes_consumed > hs->pending.len)
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar consumed %u bytes of %zu sent", r->bytes_consumed,
                hs->pending.len);
  if (ok) kh_buf_consume(&hs->pending, r->bytes_consumed);
  if (ok && r->result != NULL) {
    ok = take_result(hs, r->result, err);
    if (ok) hs->done = *done = 1;
  }
  wipe_unpacked(r);
  s2a__proto__session_resp__free_unpacked(r, NULL);
  if (!ok) hs->failed = 1;
  return ok;
}

const kh_s2a_result *kh_s2a_hs_result(const kh_s2a_hs *hs) {
  return hs->done ? &hs->result : NULL;
}

const kh_buf *kh_s2a_hs_leftover(const kh_s2a_hs *hs) {
  return &hs->pending;
}

int kh_s2a_ticket_req(uint64_t connection_id, const char *local_identity, const char *token,
                      const kh_buf *tickets, size_t n, kh_buf *req, kh_error *err) {
  if (n == 0 || n > KH_S2A_MAX_TICKETS)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "1 to %d tickets per request", KH_S2A_MAX_TICKETS);
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ResumptionTicketReq t = S2A__PROTO__RESUMPTION_TICKET_REQ__INIT;
  S2a__Proto__Identity local;
  ProtobufCBinaryData bytes[KH_S2A_MAX_TICKETS];
  for (size_t i = 0; i < n; i++) {
    bytes[i].data = tickets[i].data;
    bytes[i].len = tickets[i].len;
  }
  t.n_in_bytes = n;
  t.in_bytes = bytes;
  t.connection_id = connection_id;
  if (local_identity && local_identity[0]) {
    set_identity(&local, local_identity);
    t.local_identity = &local;
  }
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_RESUMPTION_TICKET;
  r.resumption_ticket = &t;
  S2a__Proto__AuthenticationMechanism mech, *mechs[1] = {&mech};
  set_token(&r, &mech, mechs, token);
  return pack_req(&r, req, err);
}

int kh_s2a_ticket_resp(const uint8_t *resp, size_t len, kh_error *err) {
  S2a__Proto__SessionResp *r = s2a__proto__session_resp__unpack(NULL, len, resp);
  if (r == NULL) return kh_err(err, KH_ERR_PROTOCOL, "malformed SessionResp from the sidecar");
  int ok = r->status == NULL || r->status->code == 0 ||
           kh_err(err, r->status->code <= 16 ? (kh_code)r->status->code : KH_ERR_UNKNOWN,
                  "sidecar: %s", r->status->details ? r->status->details : "");
  s2a__proto__session_resp__free_unpacked(r, NULL);
  return ok;
}

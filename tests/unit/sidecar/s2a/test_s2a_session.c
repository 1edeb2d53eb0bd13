/* The S2A v1 session state machine, sans-IO: packed requests in, packed
 * responses out. A client session and a server session handshake with each
 * other in memory; malformed and out-of-order requests get their statuses. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "identity.h"
#include "policy.h"
#include "s2a/s2a.pb-c.h"
#include "s2a_session.h"
#include "testutil.h"
#include "tls_session.h"

static char g_pki[256];
static kh_identity_store *g_store;

static void setup(void) {
  kh_error err;
  char dir[512];
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), ""));
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  g_store = kh_identity_store_load(dir, &err);
  ck_assert_msg(g_store != NULL, "%s", err.msg);
}

static void teardown(void) {
  kh_identity_store_free(g_store);
  kh_test_rmtree(g_pki);
}

static void pack(const S2a__Proto__SessionReq *r, kh_buf *out) {
  kh_buf_reset(out);
  ck_assert(kh_buf_reserve(out, s2a__proto__session_req__get_packed_size(r)));
  out->len = s2a__proto__session_req__pack(r, out->data);
}

static S2a__Proto__Identity spiffe(const char *id) {
  S2a__Proto__Identity i = S2A__PROTO__IDENTITY__INIT;
  i.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  i.spiffe_id = (char *)id;
  return i;
}

static void client_start(kh_buf *out, const char *local, const char *target, int suite) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ClientSessionStartReq cs = S2A__PROTO__CLIENT_SESSION_START_REQ__INIT;
  S2a__Proto__Identity l = spiffe(local), t = spiffe(target), *tp[1] = {&t};
  S2a__Proto__Ciphersuite suites[1] = {(S2a__Proto__Ciphersuite)suite};
  char *alpn[1] = {"grpc"};
  cs.local_identity = &l;
  cs.n_target_identities = target ? 1 : 0;
  cs.target_identities = tp;
  cs.n_application_protocols = 1;
  cs.application_protocols = alpn;
  cs.min_tls_version = cs.max_tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
  if (suite >= 0) {
    cs.n_tls_ciphersuites = 1;
    cs.tls_ciphersuites = suites;
  }
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START;
  r.client_start = &cs;
  pack(&r, out);
}

static void server_start(kh_buf *out, const uint8_t *in, size_t len) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ServerSessionStartReq ss = S2A__PROTO__SERVER_SESSION_START_REQ__INIT;
  S2a__Proto__Identity l = spiffe("spiffe://example.org/server"), *lp[1] = {&l};
  char *alpn[1] = {"grpc"};
  ss.n_local_identities = 1;
  ss.local_identities = lp;
  ss.n_application_protocols = 1;
  ss.application_protocols = alpn;
  ss.in_bytes.data = (uint8_t *)in;
  ss.in_bytes.len = len;
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_SERVER_START;
  r.server_start = &ss;
  pack(&r, out);
}

static void next(kh_buf *out, const uint8_t *in, size_t len) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__SessionNextReq nx = S2A__PROTO__SESSION_NEXT_REQ__INIT;
  nx.in_bytes.data = (uint8_t *)in;
  nx.in_bytes.len = len;
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_NEXT;
  r.next = &nx;
  pack(&r, out);
}

static S2a__Proto__SessionResp *handle(kh_s2a_session *s, kh_buf *req, kh_s2a_outcome want,
                                       kh_error *err) {
  kh_buf resp = KH_BUF_INIT;
  kh_s2a_outcome got = kh_s2a_session_handle(s, req->data, req->len, &resp, err);
  ck_assert_msg(got == want, "outcome %d, wanted %d (%s)", got, want, err->msg);
  S2a__Proto__SessionResp *r = s2a__proto__session_resp__unpack(NULL, resp.len, resp.data);
  ck_assert_msg(r != NULL, "unparseable response");
  kh_buf_free(&resp);
  return r;
}

START_TEST(test_full_handshake_between_sessions) {
  kh_s2a_session *c = kh_s2a_session_new(&(kh_s2a_env){.store = g_store}, NULL),
                 *s = kh_s2a_session_new(&(kh_s2a_env){.store = g_store}, NULL);
  kh_buf req = KH_BUF_INIT;
  kh_error err;
  client_start(&req, "spiffe://example.org/client", "spiffe://example.org/server", -1);
  S2a__Proto__SessionResp *cr = handle(c, &req, KH_S2A_CONTINUE, &err);
  ck_assert_uint_gt(cr->out_frames.len, 0); /* ClientHello */
  ck_assert(cr->local_identity != NULL);
  server_start(&req, cr->out_frames.data, cr->out_frames.len);
  S2a__Proto__SessionResp *sr = handle(s, &req, KH_S2A_CONTINUE, &err);
  ck_assert_uint_eq(sr->bytes_consumed, cr->out_frames.len);
  next(&req, sr->out_frames.data, sr->out_frames.len);
  S2a__Proto__SessionResp *cr2 = handle(c, &req, KH_S2A_FINISHED, &err);
  ck_assert_uint_eq(cr2->bytes_consumed, sr->out_frames.len);
  ck_assert(cr2->result != NULL);
  /* the client's Finished plus trailing application bytes in one next */
  kh_buf flight = KH_BUF_INIT;
  const uint8_t app[] = {23, 3, 3, 0, 2, 9, 9};
  ck_assert(kh_buf_append(&flight, cr2->out_frames.data, cr2->out_frames.len));
  ck_assert(kh_buf_append(&flight, app, sizeof(app)));
  next(&req, flight.data, flight.len);
  S2a__Proto__SessionResp *sr2 = handle(s, &req, KH_S2A_FINISHED, &err);
  ck_assert_uint_eq(sr2->bytes_consumed, cr2->out_frames.len);
  S2a__Proto__SessionResult *a = cr2->result, *b = sr2->result;
  ck_assert_int_eq(a->state->tls_version, S2A__PROTO__TLSVERSION__TLS1_3);
  ck_assert_int_eq(a->state->tls_ciphersuite, b->state->tls_ciphersuite);
  ck_assert_uint_eq(a->state->out_key.len, kh_suite_secret_len(a->state->tls_ciphersuite));
  ck_assert_mem_eq(a->state->out_key.data, b->state->in_key.data, a->state->out_key.len);
  ck_assert_mem_eq(a->state->in_key.data, b->state->out_key.data, a->state->in_key.len);
  ck_assert_str_eq(a->application_protocol, "grpc");
  ck_assert_str_eq(a->local_identity->spiffe_id, "spiffe://example.org/client");
  ck_assert_str_eq(a->peer_identity->spiffe_id, "spiffe://example.org/server");
  ck_assert_str_eq(b->peer_identity->spiffe_id, "spiffe://example.org/client");
  ck_assert_uint_eq(a->local_cert_fingerprint.len, 32);
  ck_assert_mem_eq(a->peer_cert_fingerprint.data, b->local_cert_fingerprint.data, 32);
  ck_assert(a->state->connection_id != b->state->connection_id);
  ck_assert(!a->state->is_handshake_resumed);
  /* after the result the session is over */
  next(&req, app, sizeof(app));
  S2a__Proto__SessionResp *late = handle(s, &req, KH_S2A_FAILED, &err);
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_uint_eq(late->status->code, 9);
  s2a__proto__session_resp__free_unpacked(cr, NULL);
  s2a__proto__session_resp__free_unpacked(sr, NULL);
  s2a__proto__session_resp__free_unpacked(cr2, NULL);
  s2a__proto__session_resp__free_unpacked(sr2, NULL);
  s2a__proto__session_resp__free_unpacked(late, NULL);
  kh_buf_free(&req);
  kh_buf_free(&flight);
  kh_s2a_session_free(c);
  kh_s2a_session_free(s);
}
END_TEST

/* expect_failure runs one request on a fresh session and checks the status. */
static void expect_failure(kh_buf *req, int first_start, unsigned code, const char *needle) {
  kh_s2a_session *s = kh_s2a_session_new(&(kh_s2a_env){.store = g_store}, NULL);
  kh_error err;
  if (first_start) {
    kh_buf st = KH_BUF_INIT;
    client_start(&st, "spiffe://example.org/client", NULL, -1);
    S2a__Proto__SessionResp *r = handle(s, &st, KH_S2A_CONTINUE, &err);
    s2a__proto__session_resp__free_unpacked(r, NULL);
    kh_buf_free(&st);
  }
  S2a__Proto__SessionResp *r = handle(s, req, KH_S2A_FAILED, &err);
  ck_assert(r->status != NULL);
  ck_assert_uint_eq(r->status->code, code);
  ck_assert_uint_eq(kh_code_to_grpc(err.code), code);
  ck_assert_msg(strstr(r->status->details, needle) != NULL, "details: %s", r->status->details);
  s2a__proto__session_resp__free_unpacked(r, NULL);
  kh_s2a_session_free(s);
}

START_TEST(test_next_before_start) {
  kh_buf req = KH_BUF_INIT;
  next(&req, (const uint8_t *)"x", 1);
  expect_failure(&req, 0, 9, "next before client_start/server_start");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_second_start) {
  kh_buf req = KH_BUF_INIT;
  client_start(&req, "spiffe://example.org/client", NULL, -1);
  expect_failure(&req, 1, 9, "client_start after the session already started");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_garbage_bytes) {
  kh_buf req = KH_BUF_INIT;
  ck_assert(kh_buf_append(&req, "\xff\xff\xff\xff\xff", 5));
  expect_failure(&req, 0, 3, "malformed SessionReq");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_empty_in_bytes) {
  kh_buf req = KH_BUF_INIT;
  next(&req, NULL, 0);
  expect_failure(&req, 1, 3, "empty in_bytes");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_unknown_identity) {
  kh_buf req = KH_BUF_INIT;
  client_start(&req, "spiffe://example.org/nobody", NULL, -1);
  expect_failure(&req, 0, 5, "unknown local identity 'spiffe://example.org/nobody'");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_non_tls_peer_bytes) {
  kh_buf req = KH_BUF_INIT;
  static const uint8_t http[] = "GET / HTTP/1.1\r\n\r\n";
  server_start(&req, http, sizeof(http) - 1);
  expect_failure(&req, 0, 3, "TLS handshake failed");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_unknown_ciphersuite) {
  kh_buf req = KH_BUF_INIT;
  client_start(&req, "spiffe://example.org/client", NULL, 7);
  expect_failure(&req, 0, 3, "unknown ciphersuite 7");
  kh_buf_free(&req);
}
END_TEST

START_TEST(test_oversized_in_bytes) {
  kh_buf req = KH_BUF_INIT;
  static uint8_t big[70000];
  next(&req, big, sizeof(big));
  expect_failure(&req, 1, 8, "exceeds");
  kh_buf_free(&req);
}
END_TEST

/* --- the grant applied to the handshake --- */

/* start_with_grants runs a client_start (ALPN "grpc", |suite|) of caller
 * |uid| under the grants of |policy|; returns the outcome, |err| its status. */
static kh_s2a_outcome start_with_grants(const char *policy, uid_t uid, int suite, kh_error *err) {
  kh_config cfg;
  kh_config_init(&cfg);
  kh_grants *g = kh_policy_parse("p.yaml", policy, strlen(policy), &cfg, err);
  ck_assert_msg(g != NULL, "%s", err->msg);
  kh_caller caller = {.uid = uid, .gid = uid};
  kh_policy_slot *slot = kh_policy_slot_new(g);
  kh_s2a_session *c = kh_s2a_session_new(&(kh_s2a_env){.store = g_store, .policy = slot}, &caller);
  kh_buf req = KH_BUF_INIT, resp = KH_BUF_INIT;
  client_start(&req, "spiffe://example.org/client", NULL, suite);
  kh_s2a_outcome got = kh_s2a_session_handle(c, req.data, req.len, &resp, err);
  kh_buf_free(&req);
  kh_buf_free(&resp);
  kh_s2a_session_free(c);
  kh_policy_slot_free(slot);
  kh_config_cleanup(&cfg);
  return got;
}

START_TEST(test_grant_refuses_other_caller) {
  kh_error err;
  const char *p = "identities: {\"*\": {callers: {uids: [1000]}}}\n";
  ck_assert_int_eq(start_with_grants(p, 1000, -1, &err), KH_S2A_CONTINUE);
  ck_assert_int_eq(start_with_grants(p, 4242, -1, &err), KH_S2A_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  /* The identity as the caller named it, not its directory. */
  ck_assert_str_eq(err.msg, "caller uid 4242 may not use identity 'spiffe://example.org/client'");
}
END_TEST

START_TEST(test_grant_narrows_alpn) {
  kh_error err;
  ck_assert_int_eq(
      start_with_grants("identities: {\"*\": {callers: {uids: [1]}, alpn: [h2, grpc]}}\n", 1, -1,
                        &err),
      KH_S2A_CONTINUE);
  ck_assert_int_eq(
      start_with_grants("identities: {\"*\": {callers: {uids: [1]}, alpn: [h2]}}\n", 1, -1, &err),
      KH_S2A_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_msg(
      strstr(err.msg, "none of the requested ALPN protocols is allowed for identity '") == err.msg,
      "%s", err.msg);
}
END_TEST

START_TEST(test_grant_narrows_suites) {
  kh_error err;
  const char *p =
      "identities: {\"*\": {callers: {uids: [1]}, ciphersuites: [AES_256_GCM_SHA384]}}\n";
  ck_assert_int_eq(start_with_grants(p, 1, KH_SUITE_AES_256_GCM_SHA384, &err), KH_S2A_CONTINUE);
  ck_assert_int_eq(start_with_grants(p, 1, -1, &err), KH_S2A_CONTINUE); /* all asked: narrowed */
  ck_assert_int_eq(start_with_grants(p, 1, KH_SUITE_AES_128_GCM_SHA256, &err), KH_S2A_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_msg(
      strstr(err.msg, "none of the requested ciphersuites is allowed for identity '") == err.msg,
      "%s", err.msg);
}
END_TEST

/* --- the client session cache --- */

static kh_identity *id_named(const char *name) {
  kh_error err;
  kh_identity *id = kh_identity_store_find(g_store, name, &err);
  ck_assert_msg(id != NULL, "%s", err.msg);
  return id;
}

/* cache_session stores a real session of the client identity in |r| under
 * caller |uid| and certificate |cert| (NULL: the identity's own), for a
 * client_start with no target (target ""). */
static void cache_session(kh_resume *r, uid_t uid, const uint8_t *cert) {
  kh_identity *client = id_named("spiffe://example.org/client");
  SSL_SESSION *sess = kh_test_client_session(client, id_named("spiffe://example.org/server"));
  ck_assert(sess != NULL);
  kh_resume_key k = {.uid = uid, .identity = kh_identity_dir_name(client), .target = ""};
  memcpy(k.cert, cert ? cert : kh_identity_fingerprint(client), KH_SHA256_LEN);
  kh_resume_put(r, &k, sess);
}

/* start_offers: does a client_start of caller |uid| offer a cached session
 * in its ClientHello? With |then_fail| the peer answers with a fatal alert. */
static int start_offers(kh_resume *r, uid_t uid, int then_fail) {
  kh_caller caller = {.uid = uid};
  kh_s2a_session *c = kh_s2a_session_new(&(kh_s2a_env){.store = g_store, .resume = r}, &caller);
  kh_buf req = KH_BUF_INIT;
  kh_error err;
  client_start(&req, "spiffe://example.org/client", NULL, -1);
  S2a__Proto__SessionResp *hello = handle(c, &req, KH_S2A_CONTINUE, &err);
  int offers = kh_test_offers_psk(hello->out_frames.data, hello->out_frames.len);
  s2a__proto__session_resp__free_unpacked(hello, NULL);
  if (then_fail) {
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40}; /* fatal handshake_failure */
    next(&req, alert, sizeof(alert));
    S2a__Proto__SessionResp *failed = handle(c, &req, KH_S2A_FAILED, &err);
    ck_assert_int_eq(err.code, KH_ERR_HANDSHAKE);
    s2a__proto__session_resp__free_unpacked(failed, NULL);
  }
  kh_buf_free(&req);
  kh_s2a_session_free(c);
  return offers;
}

START_TEST(test_cached_session_bound_to_caller_uid) {
  kh_resume *r = kh_resume_new();
  cache_session(r, 0, NULL);
  ck_assert(!start_offers(r, 65534, 0)); /* uid 0's session is not offered to uid 65534 */
  ck_assert(start_offers(r, 0, 0));      /* its own caller gets it */
  kh_resume_free(r);
}
END_TEST

START_TEST(test_cached_session_of_old_certificate_not_offered) {
  kh_resume *r = kh_resume_new();
  uint8_t old_cert[KH_SHA256_LEN];
  memset(old_cert, 0x5a, sizeof(old_cert));
  cache_session(r, 0, old_cert); /* made before the identity rotated */
  ck_assert(!start_offers(r, 0, 0));
  kh_resume_free(r);
}
END_TEST

START_TEST(test_failed_resumption_drops_session) {
  kh_resume *r = kh_resume_new();
  cache_session(r, 0, NULL);
  ck_assert(start_offers(r, 0, 1));  /* offered, then the handshake fails */
  ck_assert(!start_offers(r, 0, 0)); /* the next call is a full handshake */
  kh_resume_free(r);
}
END_TEST

int main(void) {
  Suite *su = suite_create("s2a_session");
  TCase *tc = tcase_create("session");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_full_handshake_between_sessions);
  tcase_add_test(tc, test_next_before_start);
  tcase_add_test(tc, test_second_start);
  tcase_add_test(tc, test_garbage_bytes);
  tcase_add_test(tc, test_empty_in_bytes);
  tcase_add_test(tc, test_unknown_identity);
  tcase_add_test(tc, test_non_tls_peer_bytes);
  tcase_add_test(tc, test_unknown_ciphersuite);
  tcase_add_test(tc, test_oversized_in_bytes);
  tcase_add_test(tc, test_grant_refuses_other_caller);
  tcase_add_test(tc, test_grant_narrows_alpn);
  tcase_add_test(tc, test_grant_narrows_suites);
  tcase_add_test(tc, test_cached_session_bound_to_caller_uid);
  tcase_add_test(tc, test_cached_session_of_old_certificate_not_offered);
  tcase_add_test(tc, test_failed_resumption_drops_session);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

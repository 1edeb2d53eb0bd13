/* The shim's sans-IO S2A v1 client: the requests it builds and how it
 * handles hand-built sidecar responses. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "s2a/s2a.pb-c.h"
#include "s2a_hs.h"

static void pack_resp(const S2a__Proto__SessionResp *r, kh_buf *out) {
  kh_buf_reset(out);
  ck_assert(kh_buf_reserve(out, s2a__proto__session_resp__get_packed_size(r)));
  out->len = s2a__proto__session_resp__pack(r, out->data);
}

static kh_s2a_hs *client(void) {
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = "spiffe://example.org/client";
  o.expect_peers[0] = "spiffe://example.org/server";
  o.expect_peers[1] = "api.example.org";
  o.expect_peer_count = 2;
  o.alpn[0] = "h2";
  o.alpn_count = 1;
  o.server_name = "api.example.org";
  kh_error err;
  kh_s2a_hs *hs = kh_s2a_hs_new(1, &o, &err);
  ck_assert(hs != NULL);
  return hs;
}

START_TEST(test_client_start_request) {
  kh_s2a_hs *hs = client();
  kh_buf req = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_s2a_hs_start(hs, NULL, 0, &req, &err));
  S2a__Proto__SessionReq *r = s2a__proto__session_req__unpack(NULL, req.len, req.data);
  ck_assert(r != NULL);
  ck_assert_int_eq(r->req_oneof_case, S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START);
  S2a__Proto__ClientSessionStartReq *cs = r->client_start;
  ck_assert_int_eq(cs->min_tls_version, S2A__PROTO__TLSVERSION__TLS1_3);
  ck_assert_int_eq(cs->max_tls_version, S2A__PROTO__TLSVERSION__TLS1_3);
  ck_assert_uint_eq(cs->n_tls_ciphersuites, 3);
  ck_assert_uint_eq(cs->n_application_protocols, 1);
  ck_assert_str_eq(cs->application_protocols[0], "h2");
  ck_assert_str_eq(cs->local_identity->spiffe_id, "spiffe://example.org/client");
  ck_assert_uint_eq(cs->n_target_identities, 2);
  ck_assert_str_eq(cs->target_identities[0]->spiffe_id, "spiffe://example.org/server");
  ck_assert_str_eq(cs->target_identities[1]->hostname, "api.example.org");
  ck_assert_str_eq(cs->target_name, "api.example.org");
  s2a__proto__session_req__free_unpacked(r, NULL);
  ck_assert(!kh_s2a_hs_start(hs, NULL, 0, &req, &err)); /* only once */
  kh_buf_free(&req);
  kh_s2a_hs_free(hs);
}
END_TEST

START_TEST(test_frames_and_unconsumed_bytes) {
  kh_s2a_hs *hs = client();
  kh_buf req = KH_BUF_INIT, to_peer = KH_BUF_INIT, resp = KH_BUF_INIT;
  kh_error err;
  int done;
  ck_assert(kh_s2a_hs_start(hs, NULL, 0, &req, &err));
  S2a__Proto__SessionResp r = S2A__PROTO__SESSION_RESP__INIT;
  r.out_frames.data = (uint8_t *)"HELLO";
  r.out_frames.len = 5;
  pack_resp(&r, &resp);
  ck_assert(kh_s2a_hs_on_resp(hs, resp.data, resp.len, &to_peer, &done, &err));
  ck_assert(!done);
  ck_assert_uint_eq(to_peer.len, 5);
  ck_assert_mem_eq(to_peer.data, "HELLO", 5);
  /* peer sends 10 bytes; the sidecar consumes 6 and finishes */
  ck_assert(kh_s2a_hs_next(hs, (const uint8_t *)"0123456789", 10, &req, &err));
  S2a__Proto__SessionReq *nx = s2a__proto__session_req__unpack(NULL, req.len, req.data);
  ck_assert_uint_eq(nx->next->in_bytes.len, 10);
  s2a__proto__session_req__free_unpacked(nx, NULL);
  S2a__Proto__SessionState st = S2A__PROTO__SESSION_STATE__INIT;
  S2a__Proto__SessionResult res = S2A__PROTO__SESSION_RESULT__INIT;
  S2a__Proto__Identity peer = S2A__PROTO__IDENTITY__INIT, local = S2A__PROTO__IDENTITY__INIT;
  uint8_t in[32], out[32];
  memset(in, 1, 32), memset(out, 2, 32);
  st.tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
  st.tls_ciphersuite = S2A__PROTO__CIPHERSUITE__CHACHA20_POLY1305_SHA256;
  st.in_key.data = in, st.in_key.len = 32;
  st.out_key.data = out, st.out_key.len = 32;
  st.in_sequence = 2;
  st.connection_id = 42;
  peer.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  peer.spiffe_id = "spiffe://example.org/server";
  local.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
  local.hostname = "client.example.org";
  res.state = &st;
  res.application_protocol = "h2";
  res.peer_identity = &peer;
  res.local_identity = &local;
  S2a__Proto__SessionResp r2 = S2A__PROTO__SESSION_RESP__INIT;
  r2.bytes_consumed = 6;
  r2.result = &res;
  pack_resp(&r2, &resp);
  kh_buf_reset(&to_peer);
  ck_assert_msg(kh_s2a_hs_on_resp(hs, resp.data, resp.len, &to_peer, &done, &err), "%s", err.msg);
  ck_assert(done);
  const kh_s2a_result *out_r = kh_s2a_hs_result(hs);
  ck_assert_int_eq(out_r->keys.tls_version, KH_TLS_VERSION_1_3);
  ck_assert_int_eq(out_r->keys.suite, KH_SUITE_CHACHA20_POLY1305_SHA256);
  ck_assert_uint_eq(out_r->keys.secret_len, 32);
  ck_assert_mem_eq(out_r->keys.in_secret, in, 32);
  ck_assert_mem_eq(out_r->keys.out_secret, out, 32);
  ck_assert_uint_eq(out_r->keys.in_sequence, 2);
  ck_assert_uint_eq(out_r->keys.out_sequence, 0);
  ck_assert_uint_eq(out_r->connection_id, 42);
  ck_assert_str_eq(out_r->alpn, "h2");
  ck_assert_str_eq(out_r->peer_identity, "spiffe://example.org/server");
  ck_assert_str_eq(out_r->local_identity, "client.example.org");
  const kh_buf *left = kh_s2a_hs_leftover(hs);
  ck_assert_uint_eq(left->len, 4); /* handed to the record layer */
  ck_assert_mem_eq(left->data, "6789", 4);
  kh_buf_free(&req), kh_buf_free(&to_peer), kh_buf_free(&resp);
  kh_s2a_hs_free(hs);
}
END_TEST

START_TEST(test_error_status_keeps_alert_and_details) {
  kh_s2a_hs *hs = client();
  kh_buf req = KH_BUF_INIT, to_peer = KH_BUF_INIT, resp = KH_BUF_INIT;
  kh_error err;
  int done;
  ck_assert(kh_s2a_hs_start(hs, NULL, 0, &req, &err));
  S2a__Proto__SessionResp r = S2A__PROTO__SESSION_RESP__INIT;
  S2a__Proto__SessionStatus st = S2A__PROTO__SESSION_STATUS__INIT;
  st.code = 5;
  st.details = "unknown local identity 'x'";
  r.status = &st;
  r.out_frames.data = (uint8_t *)"\x15\x03\x03\x00\x02\x02\x30";
  r.out_frames.len = 7;
  pack_resp(&r, &resp);
  ck_assert(!kh_s2a_hs_on_resp(hs, resp.data, resp.len, &to_peer, &done, &err));
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  ck_assert_str_eq(err.msg, "sidecar: unknown local identity 'x'");
  ck_assert_uint_eq(to_peer.len, 7); /* the alert still goes to the peer */
  kh_buf_free(&req), kh_buf_free(&to_peer), kh_buf_free(&resp);
  kh_s2a_hs_free(hs);
}
END_TEST

START_TEST(test_bad_results_rejected) {
  static const struct {
    int version, suite;
    size_t key_len;
    unsigned consumed;
    const char *needle;
  } cases[] = {
      {S2A__PROTO__TLSVERSION__TLS1_2, 0, 32, 0, "other than 1.3"},
      {S2A__PROTO__TLSVERSION__TLS1_3, 9, 32, 0, "unknown ciphersuite 9"},
      {S2A__PROTO__TLSVERSION__TLS1_3, 1, 32, 0, "needs 48"},
      {S2A__PROTO__TLSVERSION__TLS1_3, 0, 32, 99, "consumed 99 bytes of 0"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kh_s2a_hs *hs = client();
    kh_buf req = KH_BUF_INIT, to_peer = KH_BUF_INIT, resp = KH_BUF_INIT;
    kh_error err;
    int done;
    ck_assert(kh_s2a_hs_start(hs, NULL, 0, &req, &err));
    uint8_t key[48] = {0};
    S2a__Proto__SessionState st = S2A__PROTO__SESSION_STATE__INIT;
    S2a__Proto__SessionResult res = S2A__PROTO__SESSION_RESULT__INIT;
    S2a__Proto__SessionResp r = S2A__PROTO__SESSION_RESP__INIT;
    st.tls_version = (S2a__Proto__TLSVersion)cases[i].version;
    st.tls_ciphersuite = (S2a__Proto__Ciphersuite)cases[i].suite;
    st.in_key.data = st.out_key.data = key;
    st.in_key.len = st.out_key.len = cases[i].key_len;
    res.state = &st;
    r.result = &res;
    r.bytes_consumed = cases[i].consumed;
    pack_resp(&r, &resp);
    ck_assert(!kh_s2a_hs_on_resp(hs, resp.data, resp.len, &to_peer, &done, &err));
    ck_assert_msg(strstr(err.msg, cases[i].needle) != NULL, "case %zu: %s", i, err.msg);
    ck_assert(!done);
    kh_buf_free(&req), kh_buf_free(&to_peer), kh_buf_free(&resp);
    kh_s2a_hs_free(hs);
  }
}
END_TEST

START_TEST(test_server_start_carries_first_bytes) {
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  kh_error err;
  kh_s2a_hs *hs = kh_s2a_hs_new(0, &o, &err);
  kh_buf req = KH_BUF_INIT;
  ck_assert(kh_s2a_hs_start(hs, (const uint8_t *)"\x16\x03\x01", 3, &req, &err));
  S2a__Proto__SessionReq *r = s2a__proto__session_req__unpack(NULL, req.len, req.data);
  ck_assert_int_eq(r->req_oneof_case, S2A__PROTO__SESSION_REQ__REQ_ONEOF_SERVER_START);
  ck_assert_uint_eq(r->server_start->in_bytes.len, 3);
  ck_assert_uint_eq(r->server_start->n_local_identities, 0);
  s2a__proto__session_req__free_unpacked(r, NULL);
  /* garbage from the sidecar */
  kh_buf to_peer = KH_BUF_INIT;
  int done;
  ck_assert(!kh_s2a_hs_on_resp(hs, (const uint8_t *)"\xff\xff\xff", 3, &to_peer, &done, &err));
  ck_assert_msg(strstr(err.msg, "malformed SessionResp") != NULL, "%s", err.msg);
  kh_buf_free(&req), kh_buf_free(&to_peer);
  kh_s2a_hs_free(hs);
}
END_TEST

int main(void) {
  Suite *s = suite_create("s2a_hs");
  TCase *tc = tcase_create("s2a_hs");
  tcase_add_test(tc, test_client_start_request);
  tcase_add_test(tc, test_frames_and_unconsumed_bytes);
  tcase_add_test(tc, test_error_status_keeps_alert_and_details);
  tcase_add_test(tc, test_bad_results_rejected);
  tcase_add_test(tc, test_server_start_carries_first_bytes);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* sidecar/s2a/s2a_v2_wire: both S2A v2 dialects unpack to the same request;
 * responses pack in the caller's dialect; bad input is refused. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "s2a_v2_wire.h"

static size_t pack_v2_req(const S2a__Proto__V2__SessionReq *m, uint8_t *out) {
  ck_assert_uint_le(s2a__proto__v2__session_req__get_packed_size(m), 4096);
  return s2a__proto__v2__session_req__pack(m, out);
}

START_TEST(test_v2_request) {
  S2a__Proto__V2__Identity id = S2A__PROTO__V2__IDENTITY__INIT;
  id.identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  id.spiffe_id = "spiffe://example.org/server";
  S2a__Proto__V2__AuthenticationMechanism am = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__INIT;
  am.mechanism_oneof_case = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  am.token = "t0ken";
  S2a__Proto__V2__AuthenticationMechanism *ams[] = {&am};
  S2a__Proto__V2__GetTlsConfigurationReq tc = S2A__PROTO__V2__GET_TLS_CONFIGURATION_REQ__INIT;
  tc.connection_side = S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER;
  tc.sni = "api.example.org";
  S2a__Proto__V2__SessionReq m = S2A__PROTO__V2__SESSION_REQ__INIT;
  m.local_identity = &id;
  m.n_authentication_mechanisms = 1;
  m.authentication_mechanisms = ams;
  m.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_GET_TLS_CONFIGURATION_REQ;
  m.get_tls_configuration_req = &tc;
  uint8_t buf[4096];
  size_t n = pack_v2_req(&m, buf);

  kh_v2_req r;
  kh_error err;
  ck_assert(kh_v2_req_unpack(KH_V2_DIALECT_S2A, buf, n, &r, &err));
  ck_assert_int_eq(r.kind, KH_V2_REQ_TLS_CONFIG);
  ck_assert_str_eq(r.local_identity->spiffe_id, "spiffe://example.org/server");
  ck_assert_uint_eq(r.n_tokens, 1);
  ck_assert_str_eq(r.tokens[0], "t0ken");
  ck_assert_str_eq(r.u.tls_config->sni, "api.example.org");
  ck_assert_int_eq(r.u.tls_config->connection_side,
                   S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER);
  kh_v2_req_free(&r);
}
END_TEST

/* grpc-java's numbers (local_identity 1, identity 1) read the same; the same
 * bytes on the v2 path read as s2a-go's older field-1 identity. */
START_TEST(test_grpc_java_request_and_legacy_field) {
  S2a__Proto__V2__Identity id = S2A__PROTO__V2__IDENTITY__INIT;
  id.identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
  id.hostname = "api.example.org";
  Grpc__Gcp__S2a__AuthenticationMechanism am = GRPC__GCP__S2A__AUTHENTICATION_MECHANISM__INIT;
  am.identity = &id;
  am.mechanism_oneof_case = GRPC__GCP__S2A__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  am.token = "java-token";
  Grpc__Gcp__S2a__AuthenticationMechanism *ams[] = {&am};
  S2a__Proto__V2__OffloadPrivateKeyOperationReq pk =
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__INIT;
  pk.operation = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN;
  pk.signature_algorithm = S2A__PROTO__V2__SIGNATURE_ALGORITHM__S2A_SSL_SIGN_ECDSA_SECP256R1_SHA256;
  uint8_t digest[32] = {1, 2, 3};
  pk.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA256_DIGEST;
  pk.sha256_digest = (ProtobufCBinaryData){sizeof(digest), digest};
  Grpc__Gcp__S2a__SessionReq m = GRPC__GCP__S2A__SESSION_REQ__INIT;
  m.local_identity = &id;
  m.n_authentication_mechanisms = 1;
  m.authentication_mechanisms = ams;
  m.req_oneof_case = GRPC__GCP__S2A__SESSION_REQ__REQ_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_REQ;
  m.offload_private_key_operation_req = &pk;
  uint8_t buf[4096];
  size_t n = grpc__gcp__s2a__session_req__pack(&m, buf);

  for (int d = 0; d < 2; d++) {
    kh_v2_req r;
    kh_error err;
    ck_assert(kh_v2_req_unpack(d ? KH_V2_DIALECT_S2A : KH_V2_DIALECT_GRPC_JAVA, buf, n, &r, &err));
    ck_assert_int_eq(r.kind, KH_V2_REQ_PRIVATE_KEY);
    ck_assert_ptr_nonnull(r.local_identity);
    ck_assert_str_eq(r.local_identity->hostname, "api.example.org");
    ck_assert_uint_eq(r.n_tokens, 1);
    ck_assert_str_eq(r.tokens[0], "java-token");
    ck_assert_uint_eq(r.u.private_key->sha256_digest.len, 32);
    ck_assert_int_eq(r.u.private_key->sha256_digest.data[2], 3);
    kh_v2_req_free(&r);
  }
}
END_TEST

START_TEST(test_bad_requests) {
  kh_v2_req r;
  kh_error err;
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  ck_assert(!kh_v2_req_unpack(KH_V2_DIALECT_S2A, junk, sizeof(junk), &r, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(err.msg, "request is not a valid s2a.proto.v2.SessionReq");
  ck_assert(!kh_v2_req_unpack(KH_V2_DIALECT_GRPC_JAVA, junk, sizeof(junk), &r, &err));
  ck_assert_str_eq(err.msg, "request is not a valid grpc.gcp.s2a.SessionReq");
  ck_assert(!kh_v2_req_unpack(KH_V2_DIALECT_S2A, NULL, 0, &r, &err));
  ck_assert_str_eq(err.msg, "request carries no operation");
  ck_assert_ptr_null(r.msg);
  static uint8_t big[KH_V2_MAX_REQ + 1];
  ck_assert(!kh_v2_req_unpack(KH_V2_DIALECT_S2A, big, sizeof(big), &r, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "over the 262144-byte limit"));
  /* Nine tokens: one more than a request may carry. */
  S2a__Proto__V2__AuthenticationMechanism am = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__INIT;
  am.mechanism_oneof_case = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  am.token = "x";
  S2a__Proto__V2__AuthenticationMechanism *ams[KH_V2_MAX_TOKENS + 1];
  for (size_t i = 0; i <= KH_V2_MAX_TOKENS; i++) ams[i] = &am;
  S2a__Proto__V2__GetTlsConfigurationReq tc = S2A__PROTO__V2__GET_TLS_CONFIGURATION_REQ__INIT;
  S2a__Proto__V2__SessionReq m = S2A__PROTO__V2__SESSION_REQ__INIT;
  m.n_authentication_mechanisms = KH_V2_MAX_TOKENS + 1;
  m.authentication_mechanisms = ams;
  m.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_GET_TLS_CONFIGURATION_REQ;
  m.get_tls_configuration_req = &tc;
  uint8_t buf[4096];
  size_t n = pack_v2_req(&m, buf);
  ck_assert(!kh_v2_req_unpack(KH_V2_DIALECT_S2A, buf, n, &r, &err));
  ck_assert_str_eq(err.msg, "more than 8 authentication mechanisms");
}
END_TEST

/* S2AContext.local_identity is field 9 in v2 and 5 for grpc-java. */
START_TEST(test_response_dialects) {
  S2a__Proto__V2__Identity id = S2A__PROTO__V2__IDENTITY__INIT;
  id.identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  id.spiffe_id = "spiffe://example.org/client";
  char *fp[] = {"AAAA", "BBBB"};
  S2a__Proto__V2__S2AContext c = S2A__PROTO__V2__S2_ACONTEXT__INIT;
  c.leaf_cert_spiffe_id = "spiffe://example.org/peer";
  c.n_peer_certificate_chain_fingerprints = 2;
  c.peer_certificate_chain_fingerprints = fp;
  c.local_identity = &id;
  S2a__Proto__V2__ValidatePeerCertificateChainResp v =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__INIT;
  v.validation_result =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS;
  v.context = &c;
  S2a__Proto__V2__Status st = S2A__PROTO__V2__STATUS__INIT;
  S2a__Proto__V2__SessionResp resp = S2A__PROTO__V2__SESSION_RESP__INIT;
  resp.status = &st;
  resp.resp_oneof_case =
      S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_RESP;
  resp.validate_peer_certificate_chain_resp = &v;

  kh_error err;
  kh_buf out = KH_BUF_INIT;
  ck_assert(kh_v2_resp_pack(KH_V2_DIALECT_GRPC_JAVA, &resp, &out, &err));
  Grpc__Gcp__S2a__SessionResp *g = grpc__gcp__s2a__session_resp__unpack(NULL, out.len, out.data);
  ck_assert_ptr_nonnull(g);
  ck_assert_ptr_nonnull(g->status);
  ck_assert_uint_eq(g->status->code, 0);
  const Grpc__Gcp__S2a__S2AContext *gc = g->validate_peer_certificate_chain_resp->context;
  ck_assert_str_eq(gc->local_identity->spiffe_id, "spiffe://example.org/client");
  ck_assert_str_eq(gc->leaf_cert_spiffe_id, "spiffe://example.org/peer");
  ck_assert_uint_eq(gc->n_peer_certificate_chain_fingerprints, 2);
  ck_assert_str_eq(gc->peer_certificate_chain_fingerprints[1], "BBBB");
  grpc__gcp__s2a__session_resp__free_unpacked(g, NULL);
  /* Read as v2, the grpc-java bytes do not carry local_identity at 9. */
  S2a__Proto__V2__SessionResp *w = s2a__proto__v2__session_resp__unpack(NULL, out.len, out.data);
  ck_assert_ptr_nonnull(w);
  ck_assert_ptr_null(w->validate_peer_certificate_chain_resp->context->local_identity);
  s2a__proto__v2__session_resp__free_unpacked(w, NULL);

  kh_buf_reset(&out);
  ck_assert(kh_v2_resp_pack(KH_V2_DIALECT_S2A, &resp, &out, &err));
  w = s2a__proto__v2__session_resp__unpack(NULL, out.len, out.data);
  ck_assert_str_eq(w->validate_peer_certificate_chain_resp->context->local_identity->spiffe_id,
                   "spiffe://example.org/client");
  s2a__proto__v2__session_resp__free_unpacked(w, NULL);
  kh_buf_free(&out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("s2a_v2_wire");
  TCase *tc = tcase_create("wire");
  tcase_add_test(tc, test_v2_request);
  tcase_add_test(tc, test_grpc_java_request_and_legacy_field);
  tcase_add_test(tc, test_bad_requests);
  tcase_add_test(tc, test_response_dialects);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

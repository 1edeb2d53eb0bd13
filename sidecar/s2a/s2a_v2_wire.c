/* s2a_v2_wire.c: S2A v2 requests in either dialect, responses out. */
#include "s2a_v2_wire.h"

#include <string.h>

#include "kh_cursor.h"

/* legacy_identity: s2a-go before its v2 Identity change sent local_identity
 * as field 1, which s2a.proto.v2 now reserves; protobuf-c keeps it as an
 * unknown field whose bytes still start with the varint length. Returns the
 * unpacked identity or NULL. */
static S2a__Proto__V2__Identity *legacy_identity(const ProtobufCMessage *m) {
  for (unsigned i = 0; i < m->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *f = &m->unknown_fields[i];
    if (f->tag != 1 || f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) continue;
    kh_cursor c;
    kh_cursor_init(&c, f->data, f->len);
    uint64_t n = 0;
    uint8_t byte = 0x80;
    for (unsigned shift = 0; (byte & 0x80) && shift < 35; shift += 7) {
      if (!kh_cursor_u8(&c, &byte)) return NULL;
      n |= (uint64_t)(byte & 0x7f) << shift;
    }
    if ((byte & 0x80) || n != kh_cursor_left(&c)) return NULL;
    return s2a__proto__v2__identity__unpack(NULL, kh_cursor_left(&c), c.data);
  }
  return NULL;
}

/* take: the operation of a SessionReq whose oneof case is |which|. The
 * dialects number the oneof alike (3..6), and only the member |which| names
 * is read. */
_Static_assert(
    (int)S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_GET_TLS_CONFIGURATION_REQ == 3 &&
        (int)GRPC__GCP__S2A__SESSION_REQ__REQ_ONEOF_GET_TLS_CONFIGURATION_REQ == 3 &&
        (int)S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_REQ == 6 &&
        (int)GRPC__GCP__S2A__SESSION_REQ__REQ_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_REQ == 6,
    "both dialects number the SessionReq oneof 3..6");
static void take(kh_v2_req *r, int which, const S2a__Proto__V2__GetTlsConfigurationReq *tls,
                 const S2a__Proto__V2__OffloadPrivateKeyOperationReq *pk,
                 const S2a__Proto__V2__OffloadResumptionKeyOperationReq *rk,
                 const S2a__Proto__V2__ValidatePeerCertificateChainReq *val) {
  r->kind = KH_V2_REQ_NONE;
  switch (which) {
    case 3: r->kind = KH_V2_REQ_TLS_CONFIG, r->u.tls_config = tls; break;
    case 4: r->kind = KH_V2_REQ_PRIVATE_KEY, r->u.private_key = pk; break;
    case 5: r->kind = KH_V2_REQ_RESUMPTION_KEY, r->u.resumption_key = rk; break;
    case 6: r->kind = KH_V2_REQ_VALIDATE, r->u.validate = val; break;
    default: break;
  }
}

static int add_token(kh_v2_req *r, const char *token, kh_error *err) {
  if (r->n_tokens == KH_V2_MAX_TOKENS)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "more than %d authentication mechanisms",
                  KH_V2_MAX_TOKENS);
  r->tokens[r->n_tokens++] = token;
  return 1;
}

static int unpack_s2a(const uint8_t *data, size_t len, kh_v2_req *r, kh_error *err) {
  S2a__Proto__V2__SessionReq *m = s2a__proto__v2__session_req__unpack(NULL, len, data);
  if (m == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "request is not a valid s2a.proto.v2.SessionReq");
  r->msg = &m->base;
  r->local_identity = m->local_identity;
  if (r->local_identity == NULL) r->local_identity = r->legacy_identity = legacy_identity(&m->base);
  for (size_t i = 0; i < m->n_authentication_mechanisms; i++) {
    const S2a__Proto__V2__AuthenticationMechanism *a = m->authentication_mechanisms[i];
    if (a->mechanism_oneof_case ==
            S2A__PROTO__V2__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN &&
        !add_token(r, a->token, err))
      return 0;
  }
  take(r, (int)m->req_oneof_case, m->get_tls_configuration_req,
       m->offload_private_key_operation_req, m->offload_resumption_key_operation_req,
       m->validate_peer_certificate_chain_req);
  return 1;
}

static int unpack_grpc_java(const uint8_t *data, size_t len, kh_v2_req *r, kh_error *err) {
  Grpc__Gcp__S2a__SessionReq *m = grpc__gcp__s2a__session_req__unpack(NULL, len, data);
  if (m == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "request is not a valid grpc.gcp.s2a.SessionReq");
  r->msg = &m->base;
  r->local_identity = m->local_identity;
  for (size_t i = 0; i < m->n_authentication_mechanisms; i++) {
    const Grpc__Gcp__S2a__AuthenticationMechanism *a = m->authentication_mechanisms[i];
    if (a->mechanism_oneof_case ==
            GRPC__GCP__S2A__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN &&
        !add_token(r, a->token, err))
      return 0;
  }
  take(r, (int)m->req_oneof_case, m->get_tls_configuration_req,
       m->offload_private_key_operation_req, m->offload_resumption_key_operation_req,
       m->validate_peer_certificate_chain_req);
  return 1;
}

int kh_v2_req_unpack(kh_v2_dialect dialect, const uint8_t *data, size_t len, kh_v2_req *out,
                     kh_error *err) {
  memset(out, 0, sizeof(*out));
  out->dialect = dialect;
  if (len > KH_V2_MAX_REQ)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "request of %zu bytes is over the %u-byte limit",
                  len, KH_V2_MAX_REQ);
  int ok = dialect == KH_V2_DIALECT_GRPC_JAVA ? unpack_grpc_java(data, len, out, err)
                                              : unpack_s2a(data, len, out, err);
  if (ok && out->kind == KH_V2_REQ_NONE)
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "request carries no operation");
  if (!ok) kh_v2_req_free(out);
  return ok;
}

void kh_v2_req_free(kh_v2_req *r) {
  if (r->msg != NULL) protobuf_c_message_free_unpacked(r->msg, NULL);
  if (r->legacy_identity != NULL) s2a__proto__v2__identity__free_unpacked(r->legacy_identity, NULL);
  memset(r, 0, sizeof(*r));
  r->kind = KH_V2_REQ_NONE;
}

static int pack_into(const ProtobufCMessage *m, kh_buf *out, kh_error *err) {
  size_t n = protobuf_c_message_get_packed_size(m);
  if (!kh_buf_reserve(out, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory packing a response");
  out->len += protobuf_c_message_pack(m, out->data + out->len);
  return 1;
}

int kh_v2_resp_pack(kh_v2_dialect dialect, const S2a__Proto__V2__SessionResp *resp, kh_buf *out,
                    kh_error *err) {
  if (dialect == KH_V2_DIALECT_S2A) return pack_into(&resp->base, out, err);
  Grpc__Gcp__S2a__SessionResp g = GRPC__GCP__S2A__SESSION_RESP__INIT;
  Grpc__Gcp__S2a__ValidatePeerCertificateChainResp gv =
      GRPC__GCP__S2A__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__INIT;
  Grpc__Gcp__S2a__S2AContext gc = GRPC__GCP__S2A__S2_ACONTEXT__INIT;
  g.status = resp->status;
  switch (resp->resp_oneof_case) {
    case S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_GET_TLS_CONFIGURATION_RESP:
      g.resp_oneof_case = GRPC__GCP__S2A__SESSION_RESP__RESP_ONEOF_GET_TLS_CONFIGURATION_RESP;
      g.get_tls_configuration_resp = resp->get_tls_configuration_resp;
      break;
    case S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_RESP:
      g.resp_oneof_case =
          GRPC__GCP__S2A__SESSION_RESP__RESP_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_RESP;
      g.offload_private_key_operation_resp = resp->offload_private_key_operation_resp;
      break;
    case S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_OFFLOAD_RESUMPTION_KEY_OPERATION_RESP:
      g.resp_oneof_case =
          GRPC__GCP__S2A__SESSION_RESP__RESP_ONEOF_OFFLOAD_RESUMPTION_KEY_OPERATION_RESP;
      g.offload_resumption_key_operation_resp = resp->offload_resumption_key_operation_resp;
      break;
    case S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_RESP: {
      const S2a__Proto__V2__ValidatePeerCertificateChainResp *v =
          resp->validate_peer_certificate_chain_resp;
      gv.validation_result = v->validation_result;
      gv.validation_details = v->validation_details;
      if (v->context != NULL) {
        const S2a__Proto__V2__S2AContext *c = v->context;
        gc.leaf_cert_spiffe_id = c->leaf_cert_spiffe_id;
        gc.n_leaf_cert_uris = c->n_leaf_cert_uris;
        gc.leaf_cert_uris = c->leaf_cert_uris;
        gc.n_leaf_cert_dnsnames = c->n_leaf_cert_dnsnames;
        gc.leaf_cert_dnsnames = c->leaf_cert_dnsnames;
        gc.n_peer_certificate_chain_fingerprints = c->n_peer_certificate_chain_fingerprints;
        gc.peer_certificate_chain_fingerprints = c->peer_certificate_chain_fingerprints;
        gc.local_identity = c->local_identity;
        gc.local_leaf_cert_fingerprint = c->local_leaf_cert_fingerprint;
        gv.context = &gc;
      }
      g.resp_oneof_case =
          GRPC__GCP__S2A__SESSION_RESP__RESP_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_RESP;
      g.validate_peer_certificate_chain_resp = &gv;
      break;
    }
    default: break;
  }
  return pack_into(&g.base, out, err);
}

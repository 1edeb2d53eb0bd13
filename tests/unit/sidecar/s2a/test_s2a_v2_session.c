/* sidecar/s2a/s2a_v2_session: every S2A v2 operation on a real test PKI
 * (P-256, P-384, RSA, Ed25519): configurations, signatures checked with the
 * certificate's public key, tickets across replicas, peer validation and its
 * S2AContext, identity choice and policy refusals; each error answered with
 * a status while the stream goes on. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "identity.h"
#include "policy.h"
#include "s2a_v2_session.h"
#include "testutil.h"
#include "ticket_keys.h"

static char g_pki[256];
static kh_identity_store *g_store;
static kh_ticket_keys *g_keys;

static void setup(void) {
  kh_error err;
  char dir[512];
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), "p384 rsa ed25519"));
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  g_store = kh_identity_store_load(dir, &err);
  ck_assert_msg(g_store != NULL, "%s", err.msg);
  g_keys = kh_ticket_keys_random(&err);
  ck_assert(g_keys != NULL);
}

static void teardown(void) {
  kh_ticket_keys_unref(g_keys);
  kh_identity_store_free(g_store);
  kh_test_rmtree(g_pki);
}

/* --- requests and responses -------------------------------------------------- */

typedef struct {
  kh_s2a_v2_session *s;
  kh_s2a_env env;
  kh_policy_slot *slot; /* NULL: no grants */
  kh_buf resp;
  S2a__Proto__V2__SessionResp *m;
} stream;

static void open_stream(stream *st, const kh_grants *grants, kh_ticket_keys **keys) {
  memset(st, 0, sizeof(*st));
  st->slot = grants ? kh_policy_slot_new(kh_grants_ref((kh_grants *)grants)) : NULL;
  st->env = (kh_s2a_env){.store = g_store, .policy = st->slot, .ticket_keys = keys};
  kh_caller c = {.uid = 4242, .gid = 4242, .pid = 1};
  st->s = kh_s2a_v2_session_new(&st->env, &c, KH_V2_DIALECT_S2A);
  ck_assert_ptr_nonnull(st->s);
}

static void close_stream(stream *st) {
  if (st->m) s2a__proto__v2__session_resp__free_unpacked(st->m, NULL);
  kh_buf_free(&st->resp);
  kh_s2a_v2_session_free(st->s);
  kh_policy_slot_free(st->slot);
}

static S2a__Proto__V2__Identity spiffe(const char *name) {
  S2a__Proto__V2__Identity i = S2A__PROTO__V2__IDENTITY__INIT;
  i.identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  i.spiffe_id = (char *)name;
  return i;
}

/* send: one request (|local| may be NULL); returns the status code and
 * leaves the unpacked response in st->m. */
static unsigned send(stream *st, const char *local, S2a__Proto__V2__SessionReq *r) {
  S2a__Proto__V2__Identity id = spiffe(local);
  r->local_identity = local ? &id : NULL;
  uint8_t buf[65536];
  size_t n = s2a__proto__v2__session_req__get_packed_size(r);
  ck_assert_uint_le(n, sizeof(buf));
  n = s2a__proto__v2__session_req__pack(r, buf);
  kh_error err;
  ck_assert_int_eq(kh_s2a_v2_session_handle(st->s, buf, n, &st->resp, &err), KH_S2A_CONTINUE);
  if (st->m) s2a__proto__v2__session_resp__free_unpacked(st->m, NULL);
  st->m = s2a__proto__v2__session_resp__unpack(NULL, st->resp.len, st->resp.data);
  ck_assert_ptr_nonnull(st->m);
  ck_assert_ptr_nonnull(st->m->status);
  return st->m->status->code;
}

static unsigned get_config(stream *st, const char *local, int side, const char *sni) {
  S2a__Proto__V2__GetTlsConfigurationReq c = S2A__PROTO__V2__GET_TLS_CONFIGURATION_REQ__INIT;
  c.connection_side = side;
  if (sni) c.sni = (char *)sni;
  S2a__Proto__V2__SessionReq r = S2A__PROTO__V2__SESSION_REQ__INIT;
  r.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_GET_TLS_CONFIGURATION_REQ;
  r.get_tls_configuration_req = &c;
  return send(st, local, &r);
}

/* sign: SIGN with v2 algorithm |alg| over |msg|, as a digest of
 * |digest_len| bytes (0: raw bytes). */
static unsigned sign(stream *st, const char *local, int alg, const uint8_t *msg, size_t len,
                     size_t digest_len) {
  S2a__Proto__V2__OffloadPrivateKeyOperationReq k =
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__INIT;
  k.operation = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN;
  k.signature_algorithm = alg;
  uint8_t d[64];
  const EVP_MD *md = digest_len == 32   ? EVP_sha256()
                     : digest_len == 48 ? EVP_sha384()
                                        : EVP_sha512();
  unsigned dl = 0;
  if (digest_len) EVP_Digest(msg, len, d, &dl, md, NULL);
  ProtobufCBinaryData in =
      digest_len ? (ProtobufCBinaryData){dl, d} : (ProtobufCBinaryData){len, (uint8_t *)msg};
  switch (digest_len) {
    case 0:
      k.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_RAW_BYTES;
      k.raw_bytes = in;
      break;
    case 32:
      k.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA256_DIGEST;
      k.sha256_digest = in;
      break;
    case 48:
      k.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA384_DIGEST;
      k.sha384_digest = in;
      break;
    default:
      k.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA512_DIGEST;
      k.sha512_digest = in;
  }
  S2a__Proto__V2__SessionReq r = S2A__PROTO__V2__SESSION_REQ__INIT;
  r.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_REQ;
  r.offload_private_key_operation_req = &k;
  return send(st, local, &r);
}

static unsigned ticket(stream *st, int encrypt, const uint8_t *in, size_t len) {
  S2a__Proto__V2__OffloadResumptionKeyOperationReq k =
      S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__INIT;
  k.operation =
      encrypt
          ? S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__ENCRYPT
          : S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__DECRYPT;
  k.in_bytes = (ProtobufCBinaryData){len, (uint8_t *)in};
  S2a__Proto__V2__SessionReq r = S2A__PROTO__V2__SESSION_REQ__INIT;
  r.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_OFFLOAD_RESUMPTION_KEY_OPERATION_REQ;
  r.offload_resumption_key_operation_req = &k;
  return send(st, "spiffe://example.org/server", &r);
}

/* read_der: the first certificate of a PEM file, as DER (caller frees). */
static size_t read_der(const char *rel, uint8_t **out) {
  char path[600];
  snprintf(path, sizeof(path), "%s/%s", g_pki, rel);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  ck_assert_ptr_nonnull(x);
  *out = NULL;
  int n = i2d_X509(x, out);
  X509_free(x);
  ck_assert_int_gt(n, 0);
  return (size_t)n;
}

static unsigned validate(stream *st, const char *local, int client_peer, const char *rel,
                         const char *hostname, int mode) {
  uint8_t *der;
  size_t n = read_der(rel, &der);
  ProtobufCBinaryData certs[1] = {{n, der}};
  S2a__Proto__V2__ValidatePeerCertificateChainReq v =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__INIT;
  S2a__Proto__V2__ValidatePeerCertificateChainReq__ClientPeer cp =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__CLIENT_PEER__INIT;
  S2a__Proto__V2__ValidatePeerCertificateChainReq__ServerPeer sp =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__SERVER_PEER__INIT;
  v.mode = mode;
  if (client_peer) {
    cp.n_certificate_chain = 1, cp.certificate_chain = certs;
    v.peer_oneof_case = S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_CLIENT_PEER;
    v.client_peer = &cp;
  } else {
    sp.n_certificate_chain = 1, sp.certificate_chain = certs;
    sp.server_hostname = (char *)hostname;
    v.peer_oneof_case = S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_SERVER_PEER;
    v.server_peer = &sp;
  }
  S2a__Proto__V2__SessionReq r = S2A__PROTO__V2__SESSION_REQ__INIT;
  r.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_REQ;
  r.validate_peer_certificate_chain_req = &v;
  unsigned code = send(st, local, &r);
  OPENSSL_free(der);
  return code;
}

static EVP_PKEY *leaf_key(const char *dir) {
  char path[600];
  snprintf(path, sizeof(path), "%s/ids/%s/tls.crt", g_pki, dir);
  FILE *f = fopen(path, "r");
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  EVP_PKEY *k = X509_get_pubkey(x);
  X509_free(x);
  return k;
}

/* verified: does the last response's signature verify under |dir|'s leaf
 * with TLS scheme |tls| over |msg|? */
static int verified(stream *st, const char *dir, uint16_t tls, const uint8_t *msg, size_t len) {
  ck_assert_int_eq(st->m->resp_oneof_case,
                   S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_RESP);
  const ProtobufCBinaryData *sig = &st->m->offload_private_key_operation_resp->out_bytes;
  EVP_PKEY *k = leaf_key(dir);
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  EVP_PKEY_CTX *pctx;
  int ok = EVP_DigestVerifyInit(&ctx, &pctx, SSL_get_signature_algorithm_digest(tls), NULL, k);
  if (ok && SSL_is_signature_algorithm_rsa_pss(tls))
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1);
  ok = ok && EVP_DigestVerify(&ctx, sig->data, sig->len, msg, len);
  EVP_MD_CTX_cleanup(&ctx);
  EVP_PKEY_free(k);
  return ok;
}

static const char *details(stream *st) {
  return st->m->status->details;
}

/* --- tests ---------------------------------------------------------------------- */

START_TEST(test_tls_configuration) {
  stream st;
  open_stream(&st, NULL, &g_keys);
  ck_assert_uint_eq(get_config(&st, "spiffe://example.org/server",
                               S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER, NULL),
                    0);
  ck_assert_int_eq(st.m->resp_oneof_case,
                   S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_GET_TLS_CONFIGURATION_RESP);
  const S2a__Proto__V2__ServerTlsConfiguration *c =
      st.m->get_tls_configuration_resp->server_tls_configuration;
  ck_assert_uint_eq(c->n_certificate_chain, 1);
  ck_assert_ptr_nonnull(strstr(c->certificate_chain[0], "-----BEGIN CERTIFICATE-----"));
  ck_assert_int_eq(c->min_tls_version, S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_3);
  ck_assert_int_eq(c->max_tls_version, S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_3);
  ck_assert_int_eq(
      c->request_client_certificate,
      S2A__PROTO__V2__SERVER_TLS_CONFIGURATION__REQUEST_CLIENT_CERTIFICATE__REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ck_assert(c->tls_resumption_enabled);
  ck_assert_uint_eq(c->max_overhead_of_ticket_aead, KH_TICKET_SEAL_OVERHEAD);
  /* The PEM is the identity's leaf. */
  BIO *bio = BIO_new_mem_buf(c->certificate_chain[0], -1);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  ck_assert_ptr_nonnull(x);
  kh_error err;
  kh_identity *id = kh_identity_store_find_ref(g_store, "spiffe://example.org/server", &err);
  ck_assert_int_eq(X509_cmp(x, kh_identity_leaf(id)), 0);
  kh_identity_unref(id);
  X509_free(x);

  ck_assert_uint_eq(get_config(&st, "spiffe://example.org/client",
                               S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_CLIENT, NULL),
                    0);
  ck_assert_int_eq(
      st.m->get_tls_configuration_resp->tls_configuration_case,
      S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_CLIENT_TLS_CONFIGURATION);
  ck_assert_uint_eq(st.m->get_tls_configuration_resp->client_tls_configuration->n_certificate_chain,
                    1);
  ck_assert_uint_eq(get_config(&st, "spiffe://example.org/client", 0, NULL), 3);
  ck_assert_str_eq(details(&st), "connection_side must be CLIENT or SERVER, not 0");
  close_stream(&st);

  /* Without ticket keys, no resumption is offered. */
  open_stream(&st, NULL, NULL);
  ck_assert_uint_eq(get_config(&st, "spiffe://example.org/server",
                               S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER, NULL),
                    0);
  ck_assert(!st.m->get_tls_configuration_resp->server_tls_configuration->tls_resumption_enabled);
  close_stream(&st);
}
END_TEST

START_TEST(test_sign_every_key_type) {
  static const struct {
    const char *dir, *name;
    int v2;
    uint16_t tls;
    size_t digest;
  } k_cases[] = {
      {"client", "spiffe://example.org/client", 4, SSL_SIGN_ECDSA_SECP256R1_SHA256, 32},
      {"client", "spiffe://example.org/client", 4, SSL_SIGN_ECDSA_SECP256R1_SHA256, 0},
      {"p384", "spiffe://example.org/p384", 5, SSL_SIGN_ECDSA_SECP384R1_SHA384, 48},
      {"rsa", "spiffe://example.org/rsa", 7, SSL_SIGN_RSA_PSS_RSAE_SHA256, 32},
      {"rsa", "spiffe://example.org/rsa", 9, SSL_SIGN_RSA_PSS_RSAE_SHA512, 64},
      {"rsa", "spiffe://example.org/rsa", 1, SSL_SIGN_RSA_PKCS1_SHA256, 32},
      {"rsa", "spiffe://example.org/rsa", 2, SSL_SIGN_RSA_PKCS1_SHA384, 0},
      {"ed25519", "spiffe://example.org/ed25519", 10, SSL_SIGN_ED25519, 0},
  };
  const uint8_t msg[] = "TLS 1.3, server CertificateVerify\0 and the transcript hash";
  stream st;
  open_stream(&st, NULL, &g_keys);
  for (size_t i = 0; i < sizeof(k_cases) / sizeof(k_cases[0]); i++) {
    ck_assert_msg(
        sign(&st, k_cases[i].name, k_cases[i].v2, msg, sizeof(msg), k_cases[i].digest) == 0,
        "case %zu: %s", i, details(&st));
    ck_assert_msg(verified(&st, k_cases[i].dir, k_cases[i].tls, msg, sizeof(msg)), "case %zu", i);
  }
  close_stream(&st);
}
END_TEST

START_TEST(test_sign_errors_keep_the_stream) {
  const uint8_t msg[] = "m";
  stream st;
  open_stream(&st, NULL, &g_keys);
  const char *c = "spiffe://example.org/client";
  ck_assert_uint_eq(sign(&st, c, 7, msg, 1, 32), 3);
  ck_assert_str_eq(details(&st),
                   "signature algorithm RSA_PSS_RSAE_SHA256 does not fit identity "
                   "'spiffe://example.org/client', whose key is ECDSA P-256");
  ck_assert_uint_eq(sign(&st, c, 4, msg, 1, 48), 3);
  ck_assert_str_eq(details(&st),
                   "ECDSA_SECP256R1_SHA256 signs a sha256_digest, not a sha384_digest");
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/ed25519", 10, msg, 1, 64), 3);
  ck_assert_str_eq(details(&st), "ED25519 signs raw_bytes, not a digest");
  ck_assert_uint_eq(sign(&st, c, 0, msg, 1, 0), 3);
  ck_assert_str_eq(details(&st), "signature_algorithm 0 is not supported");
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/nobody", 4, msg, 1, 32), 5);
  ck_assert_ptr_nonnull(strstr(details(&st), "spiffe://example.org/nobody"));
  /* DECRYPT: no TLS 1.2 RSA key exchange. */
  S2a__Proto__V2__OffloadPrivateKeyOperationReq k =
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__INIT;
  k.operation = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__DECRYPT;
  S2a__Proto__V2__SessionReq r = S2A__PROTO__V2__SESSION_REQ__INIT;
  r.req_oneof_case = S2A__PROTO__V2__SESSION_REQ__REQ_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_REQ;
  r.offload_private_key_operation_req = &k;
  ck_assert_uint_eq(send(&st, c, &r), 9);
  ck_assert_str_eq(details(&st),
                   "DECRYPT is not offered: keyholdd does no TLS 1.2 RSA key exchange");
  /* No input at all. */
  k.operation = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN;
  k.signature_algorithm = 4;
  ck_assert_uint_eq(send(&st, c, &r), 3);
  ck_assert_str_eq(details(&st), "no input bytes to sign");
  /* The stream still serves. */
  ck_assert_uint_eq(sign(&st, c, 4, msg, 1, 32), 0);
  ck_assert(verified(&st, "client", SSL_SIGN_ECDSA_SECP256R1_SHA256, msg, 1));
  close_stream(&st);
}
END_TEST

/* A server names no identity: the SNI picks it, later requests keep it. */
START_TEST(test_identity_by_sni_is_kept) {
  const uint8_t msg[] = "transcript";
  stream st;
  open_stream(&st, NULL, &g_keys);
  ck_assert_uint_eq(sign(&st, NULL, 4, msg, sizeof(msg), 32), 3);
  ck_assert_ptr_nonnull(strstr(details(&st), "no local identity given"));
  ck_assert_uint_eq(get_config(&st, NULL, S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER,
                               "rsa.example.org"),
                    0);
  ck_assert_str_eq(kh_s2a_v2_session_local_name(st.s), "spiffe://example.org/rsa");
  ck_assert_uint_eq(sign(&st, NULL, 7, msg, sizeof(msg), 32), 0);
  ck_assert(verified(&st, "rsa", SSL_SIGN_RSA_PSS_RSAE_SHA256, msg, sizeof(msg)));
  close_stream(&st);
}
END_TEST

START_TEST(test_tickets_across_replicas) {
  const char *text1 =
      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
      "00112233445566778899aabbccddeeff\n";
  char text2[400];
  snprintf(text2, sizeof(text2),
           "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
           "ffeeddccbbaa99887766554433221100\n%s",
           text1);
  kh_error err;
  kh_ticket_keys *k1 = kh_ticket_keys_parse(text1, strlen(text1), &err);
  kh_ticket_keys *k2 = kh_ticket_keys_parse(text2, strlen(text2), &err);
  ck_assert(k1 && k2);
  stream a, b;
  open_stream(&a, NULL, &k1);
  open_stream(&b, NULL, &k2);
  const uint8_t state[] = "session state of a Go TLS server, 41 bytes";
  ck_assert_uint_eq(ticket(&a, 1, state, sizeof(state)), 0);
  ProtobufCBinaryData sealed = a.m->offload_resumption_key_operation_resp->out_bytes;
  ck_assert_uint_le(sealed.len, sizeof(state) + KH_TICKET_SEAL_OVERHEAD);
  uint8_t copy[256];
  memcpy(copy, sealed.data, sealed.len);
  size_t n = sealed.len;
  /* Replica b opens a's ticket: its second key is a's first. */
  ck_assert_uint_eq(ticket(&b, 0, copy, n), 0);
  ck_assert_uint_eq(b.m->offload_resumption_key_operation_resp->out_bytes.len, sizeof(state));
  ck_assert_mem_eq(b.m->offload_resumption_key_operation_resp->out_bytes.data, state,
                   sizeof(state));
  /* Tampering anywhere fails cleanly. */
  copy[n / 2] ^= 1;
  ck_assert_uint_eq(ticket(&b, 0, copy, n), 3);
  ck_assert_str_eq(details(&b), "the ticket does not authenticate");
  ck_assert_uint_eq(ticket(&b, 0, copy, 10), 3);
  ck_assert_str_eq(details(&b), "a sealed ticket of 10 bytes cannot be one of ours");
  /* b seals under its newer key, which a does not hold. */
  ck_assert_uint_eq(ticket(&b, 1, state, sizeof(state)), 0);
  sealed = b.m->offload_resumption_key_operation_resp->out_bytes;
  memcpy(copy, sealed.data, sealed.len);
  ck_assert_uint_eq(ticket(&a, 0, copy, sealed.len), 5);
  ck_assert_str_eq(details(&a), "the ticket's key is not (or no longer) loaded");
  close_stream(&a);
  close_stream(&b);
  kh_ticket_keys_unref(k1);
  kh_ticket_keys_unref(k2);
}
END_TEST

START_TEST(test_validate_and_context) {
  stream st;
  open_stream(&st, NULL, &g_keys);
  ck_assert_uint_eq(validate(&st, "spiffe://example.org/server", 1, "peer/client.crt", NULL, 1), 0);
  const S2a__Proto__V2__ValidatePeerCertificateChainResp *v =
      st.m->validate_peer_certificate_chain_resp;
  ck_assert_int_eq(
      v->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS);
  const S2a__Proto__V2__S2AContext *c = v->context;
  ck_assert_str_eq(c->leaf_cert_spiffe_id, "spiffe://example.org/peer-client");
  ck_assert_uint_eq(c->n_leaf_cert_uris, 1);
  ck_assert_str_eq(c->leaf_cert_uris[0], "spiffe://example.org/peer-client");
  ck_assert_uint_eq(c->n_peer_certificate_chain_fingerprints, 1);
  uint8_t *der;
  size_t n = read_der("peer/client.crt", &der);
  uint8_t h[32];
  char b64[64];
  SHA256(der, n, h);
  EVP_EncodeBlock((uint8_t *)b64, h, sizeof(h));
  OPENSSL_free(der);
  ck_assert_str_eq(c->peer_certificate_chain_fingerprints[0], b64);
  ck_assert_str_eq(c->local_identity->spiffe_id, "spiffe://example.org/server");
  ck_assert_uint_eq(c->local_leaf_cert_fingerprint.len, 32);
  ck_assert_str_eq(kh_s2a_v2_session_peer_name(st.s), "spiffe://example.org/peer-client");

  /* A server peer: its DNS name checked against server_hostname. */
  ck_assert_uint_eq(
      validate(&st, "spiffe://example.org/client", 0, "peer/server.crt", "localhost", 1), 0);
  ck_assert_int_eq(
      st.m->validate_peer_certificate_chain_resp->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS);
  ck_assert_uint_eq(st.m->validate_peer_certificate_chain_resp->context->n_leaf_cert_dnsnames, 1);
  ck_assert_uint_eq(
      validate(&st, "spiffe://example.org/client", 0, "peer/server.crt", "other.example", 0), 0);
  ck_assert_int_eq(
      st.m->validate_peer_certificate_chain_resp->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__FAILURE);
  ck_assert_ptr_nonnull(strstr(st.m->validate_peer_certificate_chain_resp->validation_details,
                               "does not match server name other.example"));
  /* Another CA. */
  ck_assert_uint_eq(validate(&st, "spiffe://example.org/server", 1, "rogue/client.crt", NULL, 1),
                    0);
  ck_assert_int_eq(
      st.m->validate_peer_certificate_chain_resp->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__FAILURE);
  /* CONNECT_TO_GOOGLE is not ours to check. */
  ck_assert_uint_eq(validate(&st, "spiffe://example.org/server", 1, "peer/client.crt", NULL, 2),
                    12);
  ck_assert_ptr_nonnull(strstr(details(&st), "CONNECT_TO_GOOGLE is not supported"));
  close_stream(&st);
}
END_TEST

START_TEST(test_policy_refuses_by_operation_name) {
  const char *yaml =
      "identities:\n"
      "  server:\n"
      "    callers: {uids: [4242]}\n"
      "    peers: {spiffe_ids: [spiffe://example.org/someone-else]}\n"
      "  client:\n"
      "    callers: {uids: [1]}\n"
      "  rsa:\n"
      "    callers: {uids: [4242]}\n"
      "    operations: [validate, ticket-keys]\n";
  kh_error err;
  kh_config conf;
  kh_config_init(&conf);
  kh_grants *p = kh_policy_parse("p.yaml", yaml, strlen(yaml), &conf, &err);
  ck_assert_msg(p != NULL, "%s", err.msg);
  stream st;
  open_stream(&st, p, &g_keys);
  const uint8_t msg[] = "m";
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/client", 4, msg, 1, 32), 7);
  ck_assert_str_eq(details(&st),
                   "caller uid 4242 may not use identity 'spiffe://example.org/client' "
                   "for OffloadPrivateKeyOperation (needs the 'sign' grant)");
  /* An identity that does not exist gets the same answer. */
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/nobody", 4, msg, 1, 32), 7);
  ck_assert_str_eq(details(&st),
                   "caller uid 4242 may not use identity 'spiffe://example.org/nobody' "
                   "for OffloadPrivateKeyOperation (needs the 'sign' grant)");
  /* The granted identity works, and its peer list applies to validation. */
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/server", 4, msg, 1, 32), 0);
  ck_assert_uint_eq(validate(&st, "spiffe://example.org/server", 1, "peer/client.crt", NULL, 1), 0);
  ck_assert_int_eq(
      st.m->validate_peer_certificate_chain_resp->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__FAILURE);
  ck_assert_ptr_nonnull(strstr(st.m->validate_peer_certificate_chain_resp->validation_details,
                               "not allowed by the policy"));
  /* No identity named: the one the policy grants this caller for the
   * operation (sign: only server), or none if several do (validate). */
  close_stream(&st);
  open_stream(&st, p, &g_keys);
  ck_assert_uint_eq(sign(&st, NULL, 4, msg, 1, 32), 0);
  ck_assert(verified(&st, "server", SSL_SIGN_ECDSA_SECP256R1_SHA256, msg, 1));
  close_stream(&st);
  open_stream(&st, p, &g_keys);
  ck_assert_uint_eq(validate(&st, NULL, 1, "peer/client.crt", NULL, 1), 7);
  ck_assert_str_eq(details(&st),
                   "caller uid 4242 may not use identity '(default)' for "
                   "ValidatePeerCertificateChain (needs the 'validate' grant)");
  /* Grants per operation: validate, but not sign nor its configuration. */
  ck_assert_uint_eq(sign(&st, "spiffe://example.org/rsa", 7, msg, 1, 32), 7);
  ck_assert_str_eq(details(&st),
                   "caller uid 4242 may not use identity 'spiffe://example.org/rsa' "
                   "for OffloadPrivateKeyOperation (needs the 'sign' grant)");
  ck_assert_uint_eq(get_config(&st, "spiffe://example.org/rsa",
                               S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_CLIENT, NULL),
                    7);
  ck_assert_uint_eq(validate(&st, "spiffe://example.org/rsa", 1, "peer/client.crt", NULL, 1), 0);
  ck_assert_int_eq(
      st.m->validate_peer_certificate_chain_resp->validation_result,
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS);
  close_stream(&st);
  kh_grants_free(p);
  kh_config_cleanup(&conf);
}
END_TEST

START_TEST(test_garbage_is_answered) {
  stream st;
  open_stream(&st, NULL, &g_keys);
  const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
  kh_error err;
  ck_assert_int_eq(kh_s2a_v2_session_handle(st.s, junk, sizeof(junk), &st.resp, &err),
                   KH_S2A_CONTINUE);
  S2a__Proto__V2__SessionResp *m =
      s2a__proto__v2__session_resp__unpack(NULL, st.resp.len, st.resp.data);
  ck_assert_uint_eq(m->status->code, 3);
  ck_assert_str_eq(m->status->details, "request is not a valid s2a.proto.v2.SessionReq");
  s2a__proto__v2__session_resp__free_unpacked(m, NULL);
  close_stream(&st);
}
END_TEST

int main(void) {
  Suite *s = suite_create("s2a_v2_session");
  TCase *tc = tcase_create("v2");
  tcase_add_unchecked_fixture(tc, setup, teardown); /* one PKI for all */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_tls_configuration);
  tcase_add_test(tc, test_sign_every_key_type);
  tcase_add_test(tc, test_sign_errors_keep_the_stream);
  tcase_add_test(tc, test_identity_by_sni_is_kept);
  tcase_add_test(tc, test_tickets_across_replicas);
  tcase_add_test(tc, test_validate_and_context);
  tcase_add_test(tc, test_policy_refuses_by_operation_name);
  tcase_add_test(tc, test_garbage_is_answered);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

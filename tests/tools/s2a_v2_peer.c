/* s2a_v2_peer: a TLS endpoint on BoringSSL that keeps its private key in
 * keyholdd, the way S2A v2 clients (s2a-go, grpc-java) do: its own TLS stack
 * runs the handshake; the chain and settings come from GetTlsConfiguration,
 * CertificateVerify is signed by OffloadPrivateKeyOperation, the peer chain
 * is checked by ValidatePeerCertificateChain and session tickets are sealed
 * by OffloadResumptionKeyOperation. Either wire dialect.
 *
 *   s2a_v2_peer --socket PATH [--dialect s2a|grpc-java] [--identity NAME]
 *               [--token T] [--raw] [--mode spiffe|unspecified]
 *       --connect PORT [--server-name NAME] [--message TEXT]
 *         client: handshake with 127.0.0.1:PORT, send TEXT and a newline,
 *         print the line that comes back
 *       --listen PORT_FILE [--accept N]
 *         server: listen on 127.0.0.1 (ephemeral port written to PORT_FILE),
 *         serve N connections: a line back reversed, or for "GET" a small
 *         HTTP/1.0 answer
 *   s2a_v2_peer --socket PATH [--dialect D] [--identity NAME] [--token T]
 *       --op config-client|config-server|sign|seal|open|validate-client|
 *            validate-server|decrypt|empty [--sigalg N] [--digest-len N]
 *            [--in HEX] [--chain FILE.pem] [--server-name NAME]
 *         one request; prints "status CODE DETAILS" and what came back
 *
 * Each handshake prints "handshake ok: ..." on stdout; failures print
 * "s2a_v2_peer: ..." on stderr and exit 1. Test tool, not a product. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "grpc_gcp_s2a/s2a.pb-c.h"
#include "kh_buf.h"
#include "s2a/v2/s2a.pb-c.h"
#include "sidecar_stream.h"

typedef S2a__Proto__V2__GetTlsConfigurationResp tls_config_resp;

static struct {
  const char *socket, *identity, *token, *server_name, *message, *port_file, *op;
  const char *chain_file, *in_hex;
  int grpc_java, raw, spiffe_mode, connect_port, accept_n, sigalg, digest_len;
} opt = {.message = "hello", .accept_n = 1, .spiffe_mode = 1, .digest_len = -1};

static kh_stream *g_stream;
static int g_server;
static uint16_t g_sigalg_used;
static S2a__Proto__V2__GetTlsConfigurationResp *g_config; /* owned by g_config_msg */
static ProtobufCMessage *g_config_msg;

__attribute__((noreturn)) static void die(const char *what) {
  fprintf(stderr, "s2a_v2_peer: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

/* --- one S2A v2 exchange, in either dialect ------------------------------ */

typedef struct {
  ProtobufCMessage *msg;
  unsigned code;
  const char *details;
  const S2a__Proto__V2__GetTlsConfigurationResp *tls;
  const ProtobufCBinaryData *out_bytes; /* private-key or resumption-key answer */
  int validation;                       /* ValidationResult, -1: none */
  const char *validation_details, *leaf_spiffe, *local_identity;
  size_t n_fingerprints, n_dns;
} v2_resp;

/* The request kinds are the SessionReq oneof's field numbers, the same in
 * both dialects (3..6); the oneof members are a union of pointers, so one
 * assignment sets whichever is meant. REQ_EMPTY sends no operation. */
typedef enum {
  REQ_CONFIG = 3,
  REQ_PRIVATE_KEY = 4,
  REQ_RESUMPTION_KEY = 5,
  REQ_VALIDATE = 6,
  REQ_EMPTY = 0
} req_kind;

static void pack_request(req_kind kind, void *inner, kh_buf *out) {
  S2a__Proto__V2__Identity id = S2A__PROTO__V2__IDENTITY__INIT;
  if (opt.identity != NULL) {
    int spiffe = strncmp(opt.identity, "spiffe://", 9) == 0;
    id.identity_oneof_case = spiffe ? S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID
                                    : S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
    if (spiffe)
      id.spiffe_id = (char *)opt.identity;
    else
      id.hostname = (char *)opt.identity;
  }
  S2a__Proto__V2__Identity *idp = opt.identity ? &id : NULL;
  /* The dialects differ only in where the identities go. */
  Grpc__Gcp__S2a__AuthenticationMechanism gam = GRPC__GCP__S2A__AUTHENTICATION_MECHANISM__INIT,
                                          *gams[1] = {&gam};
  S2a__Proto__V2__AuthenticationMechanism vam = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__INIT,
                                          *vams[1] = {&vam};
  Grpc__Gcp__S2a__SessionReq g = GRPC__GCP__S2A__SESSION_REQ__INIT;
  S2a__Proto__V2__SessionReq v = S2A__PROTO__V2__SESSION_REQ__INIT;
  gam.identity = vam.identity = idp;
  gam.mechanism_oneof_case = GRPC__GCP__S2A__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  vam.mechanism_oneof_case = S2A__PROTO__V2__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN;
  gam.token = vam.token = (char *)opt.token;
  g.local_identity = v.local_identity = idp;
  g.n_authentication_mechanisms = v.n_authentication_mechanisms = opt.token ? 1 : 0;
  g.authentication_mechanisms = gams;
  v.authentication_mechanisms = vams;
  g.req_oneof_case = (Grpc__Gcp__S2a__SessionReq__ReqOneofCase)kind;
  v.req_oneof_case = (S2a__Proto__V2__SessionReq__ReqOneofCase)kind;
  g.get_tls_configuration_req = v.get_tls_configuration_req = inner;
  const ProtobufCMessage *m = opt.grpc_java ? &g.base : &v.base;
  if (!kh_buf_reserve(out, protobuf_c_message_get_packed_size(m))) die("out of memory");
  out->len = protobuf_c_message_pack(m, out->data);
}

static void identity_name(const S2a__Proto__V2__Identity *id, const char **out) {
  if (id == NULL) return;
  *out = id->identity_oneof_case == S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID
             ? id->spiffe_id
             : id->hostname;
}

/* take: what a response of oneof case |which| (2..5, the same numbers in
 * both dialects) carries; only the member |which| names is read. */
static void take(v2_resp *r, int which, const S2a__Proto__V2__GetTlsConfigurationResp *tls,
                 const S2a__Proto__V2__OffloadPrivateKeyOperationResp *pk,
                 const S2a__Proto__V2__OffloadResumptionKeyOperationResp *rk) {
  if (which == 2) r->tls = tls;
  if (which == 3) r->out_bytes = &pk->out_bytes;
  if (which == 4) r->out_bytes = &rk->out_bytes;
}

static void take_validation(v2_resp *r, int result, const char *details, const char *spiffe,
                            size_t n_fingerprints, size_t n_dns,
                            const S2a__Proto__V2__Identity *local) {
  r->validation = result;
  r->validation_details = details;
  r->leaf_spiffe = spiffe;
  r->n_fingerprints = n_fingerprints;
  r->n_dns = n_dns;
  identity_name(local, &r->local_identity);
}

static int unpack_response(const kh_buf *in, v2_resp *r) {
  memset(r, 0, sizeof(*r));
  r->validation = -1;
  const S2a__Proto__V2__Status *st;
  if (opt.grpc_java) {
    Grpc__Gcp__S2a__SessionResp *m = grpc__gcp__s2a__session_resp__unpack(NULL, in->len, in->data);
    if (m == NULL) return 0;
    r->msg = &m->base;
    st = m->status;
    take(r, m->resp_oneof_case, m->get_tls_configuration_resp,
         m->offload_private_key_operation_resp, m->offload_resumption_key_operation_resp);
    if (m->resp_oneof_case == 5) {
      const Grpc__Gcp__S2a__ValidatePeerCertificateChainResp *v =
          m->validate_peer_certificate_chain_resp;
      const Grpc__Gcp__S2a__S2AContext *c = v->context;
      take_validation(r, v->validation_result, v->validation_details,
                      c ? c->leaf_cert_spiffe_id : NULL,
                      c ? c->n_peer_certificate_chain_fingerprints : 0,
                      c ? c->n_leaf_cert_dnsnames : 0, c ? c->local_identity : NULL);
    }
  } else {
    S2a__Proto__V2__SessionResp *m = s2a__proto__v2__session_resp__unpack(NULL, in->len, in->data);
    if (m == NULL) return 0;
    r->msg = &m->base;
    st = m->status;
    take(r, m->resp_oneof_case, m->get_tls_configuration_resp,
         m->offload_private_key_operation_resp, m->offload_resumption_key_operation_resp);
    if (m->resp_oneof_case == 5) {
      const S2a__Proto__V2__ValidatePeerCertificateChainResp *v =
          m->validate_peer_certificate_chain_resp;
      const S2a__Proto__V2__S2AContext *c = v->context;
      take_validation(r, v->validation_result, v->validation_details,
                      c ? c->leaf_cert_spiffe_id : NULL,
                      c ? c->n_peer_certificate_chain_fingerprints : 0,
                      c ? c->n_leaf_cert_dnsnames : 0, c ? c->local_identity : NULL);
    }
  }
  r->code = st ? st->code : 2;
  r->details = st ? st->details : "(no status in the response)";
  return 1;
}

static void resp_free(v2_resp *r) {
  if (r->msg) protobuf_c_message_free_unpacked(r->msg, NULL);
  r->msg = NULL;
}

/* exchange: one request, one response on the process's stream. 0 if the
 * stream failed (message on stderr); the status is the caller's to check. */
static int exchange(req_kind kind, void *inner, v2_resp *out) {
  kh_buf req = KH_BUF_INIT, resp = KH_BUF_INIT;
  kh_error err;
  pack_request(kind, inner, &req);
  int ok = kh_stream_exchange(g_stream, req.data, req.len, &resp, &err);
  if (!ok)
    fprintf(stderr, "s2a_v2_peer: stream ended: %s: %s\n", kh_code_name(err.code), err.msg);
  else if (!unpack_response(&resp, out))
    ok = 0, fprintf(stderr, "s2a_v2_peer: response does not parse\n");
  kh_buf_free(&req);
  kh_buf_free(&resp);
  return ok;
}

/* --- the TLS stack's hooks ------------------------------------------------ */

static int v2_sigalg(uint16_t tls) {
  switch (tls) {
    case SSL_SIGN_RSA_PKCS1_SHA256: return 1;
    case SSL_SIGN_RSA_PKCS1_SHA384: return 2;
    case SSL_SIGN_RSA_PKCS1_SHA512: return 3;
    case SSL_SIGN_ECDSA_SECP256R1_SHA256: return 4;
    case SSL_SIGN_ECDSA_SECP384R1_SHA384: return 5;
    case SSL_SIGN_ECDSA_SECP521R1_SHA512: return 6;
    case SSL_SIGN_RSA_PSS_RSAE_SHA256: return 7;
    case SSL_SIGN_RSA_PSS_RSAE_SHA384: return 8;
    case SSL_SIGN_RSA_PSS_RSAE_SHA512: return 9;
    case SSL_SIGN_ED25519: return 10;
    default: return 0;
  }
}

/* set_input: raw bytes, or (as s2a-go does) the digest of the sigalg's hash. */
static void set_input(S2a__Proto__V2__OffloadPrivateKeyOperationReq *r, uint16_t sigalg,
                      const uint8_t *in, size_t in_len, uint8_t *digest) {
  const EVP_MD *md = SSL_get_signature_algorithm_digest(sigalg);
  if (opt.raw || md == NULL) {
    r->in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_RAW_BYTES;
    r->raw_bytes = (ProtobufCBinaryData){in_len, (uint8_t *)in};
    return;
  }
  unsigned n = 0;
  EVP_Digest(in, in_len, digest, &n, md, NULL);
  ProtobufCBinaryData d = {n, digest};
  if (n == 32) {
    r->in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA256_DIGEST;
    r->sha256_digest = d;
  } else if (n == 48) {
    r->in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA384_DIGEST;
    r->sha384_digest = d;
  } else {
    r->in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA512_DIGEST;
    r->sha512_digest = d;
  }
}

static enum ssl_private_key_result_t pk_sign(SSL *ssl, uint8_t *out, size_t *out_len,
                                             size_t max_out, uint16_t sigalg, const uint8_t *in,
                                             size_t in_len) {
  (void)ssl;
  S2a__Proto__V2__OffloadPrivateKeyOperationReq r =
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__INIT;
  r.operation = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN;
  r.signature_algorithm = v2_sigalg(sigalg);
  uint8_t digest[EVP_MAX_MD_SIZE];
  set_input(&r, sigalg, in, in_len, digest);
  v2_resp resp;
  if (!exchange(REQ_PRIVATE_KEY, &r, &resp)) return ssl_private_key_failure;
  int ok = resp.code == 0 && resp.out_bytes && resp.out_bytes->len <= max_out;
  if (ok) {
    memcpy(out, resp.out_bytes->data, resp.out_bytes->len);
    *out_len = resp.out_bytes->len;
    g_sigalg_used = sigalg;
  } else {
    fprintf(stderr, "s2a_v2_peer: sign: status %u %s\n", resp.code, resp.details);
  }
  resp_free(&resp);
  return ok ? ssl_private_key_success : ssl_private_key_failure;
}

static enum ssl_private_key_result_t pk_decrypt(SSL *ssl, uint8_t *out, size_t *out_len,
                                                size_t max_out, const uint8_t *in, size_t in_len) {
  (void)ssl, (void)out, (void)out_len, (void)max_out, (void)in, (void)in_len;
  return ssl_private_key_failure;
}

static enum ssl_private_key_result_t pk_complete(SSL *ssl, uint8_t *out, size_t *out_len,
                                                 size_t max_out) {
  (void)ssl, (void)out, (void)out_len, (void)max_out;
  return ssl_private_key_failure;
}

static const SSL_PRIVATE_KEY_METHOD k_pk_method = {pk_sign, pk_decrypt, pk_complete};

static enum ssl_verify_result_t verify_peer(SSL *ssl, uint8_t *out_alert) {
  const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
  size_t n = chain ? sk_CRYPTO_BUFFER_num(chain) : 0;
  ProtobufCBinaryData certs[16];
  if (n == 0 || n > 16) {
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    return ssl_verify_invalid;
  }
  for (size_t i = 0; i < n; i++) {
    CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(chain, i);
    certs[i] = (ProtobufCBinaryData){CRYPTO_BUFFER_len(b), (uint8_t *)CRYPTO_BUFFER_data(b)};
  }
  S2a__Proto__V2__ValidatePeerCertificateChainReq r =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__INIT;
  S2a__Proto__V2__ValidatePeerCertificateChainReq__ClientPeer cp =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__CLIENT_PEER__INIT;
  S2a__Proto__V2__ValidatePeerCertificateChainReq__ServerPeer sp =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__SERVER_PEER__INIT;
  r.mode =
      opt.spiffe_mode
          ? S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__VERIFICATION_MODE__SPIFFE
          : S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__VERIFICATION_MODE__UNSPECIFIED;
  if (g_server) {
    cp.n_certificate_chain = n;
    cp.certificate_chain = certs;
    r.peer_oneof_case = S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_CLIENT_PEER;
    r.client_peer = &cp;
  } else {
    sp.n_certificate_chain = n;
    sp.certificate_chain = certs;
    sp.server_hostname = (char *)(opt.server_name ? opt.server_name : "");
    r.peer_oneof_case = S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_SERVER_PEER;
    r.server_peer = &sp;
  }
  v2_resp resp;
  if (!exchange(REQ_VALIDATE, &r, &resp)) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return ssl_verify_invalid;
  }
  int ok = resp.code == 0 &&
           resp.validation ==
               S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS;
  if (ok)
    printf("validated: peer %s, %zu fingerprints, %zu dns names, local %s\n",
           resp.leaf_spiffe && resp.leaf_spiffe[0] ? resp.leaf_spiffe : "(no spiffe id)",
           resp.n_fingerprints, resp.n_dns, resp.local_identity ? resp.local_identity : "(none)");
  else
    fprintf(stderr, "s2a_v2_peer: peer refused: status %u %s; %s\n", resp.code, resp.details,
            resp.validation_details ? resp.validation_details : "");
  resp_free(&resp);
  if (!ok) *out_alert = SSL_AD_BAD_CERTIFICATE;
  return ok ? ssl_verify_ok : ssl_verify_invalid;
}

static size_t ticket_overhead(SSL *ssl) {
  (void)ssl;
  return g_config->server_tls_configuration->max_overhead_of_ticket_aead;
}

static int ticket_op(int encrypt, uint8_t *out, size_t *out_len, size_t max_out, const uint8_t *in,
                     size_t in_len) {
  S2a__Proto__V2__OffloadResumptionKeyOperationReq r =
      S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__INIT;
  r.operation =
      encrypt
          ? S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__ENCRYPT
          : S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__DECRYPT;
  r.in_bytes = (ProtobufCBinaryData){in_len, (uint8_t *)in};
  v2_resp resp;
  if (!exchange(REQ_RESUMPTION_KEY, &r, &resp)) return 0;
  int ok = resp.code == 0 && resp.out_bytes && resp.out_bytes->len <= max_out;
  if (ok) {
    memcpy(out, resp.out_bytes->data, resp.out_bytes->len);
    *out_len = resp.out_bytes->len;
  } else {
    fprintf(stderr, "s2a_v2_peer: ticket %s: status %u %s\n", encrypt ? "seal" : "open", resp.code,
            resp.details);
  }
  resp_free(&resp);
  return ok;
}

static int ticket_seal(SSL *ssl, uint8_t *out, size_t *out_len, size_t max_out, const uint8_t *in,
                       size_t in_len) {
  (void)ssl;
  return ticket_op(1, out, out_len, max_out, in, in_len);
}

static enum ssl_ticket_aead_result_t ticket_open(SSL *ssl, uint8_t *out, size_t *out_len,
                                                 size_t max_out, const uint8_t *in, size_t in_len) {
  (void)ssl;
  return ticket_op(0, out, out_len, max_out, in, in_len) ? ssl_ticket_aead_success
                                                         : ssl_ticket_aead_ignore_ticket;
}

static const SSL_TICKET_AEAD_METHOD k_ticket_method = {ticket_overhead, ticket_seal, ticket_open};

static const char *alpn_name(int p) {
  switch (p) {
    case S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_GRPC: return "grpc";
    case S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_HTTP2: return "h2";
    case S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_HTTP1_1: return "http/1.1";
    default: return NULL;
  }
}

static uint8_t g_alpn_wire[64];
static size_t g_alpn_len;

static void alpn_wire(const S2a__Proto__V2__AlpnPolicy *p) {
  g_alpn_len = 0;
  if (p == NULL || !p->enable_alpn_negotiation) return;
  for (size_t i = 0; i < p->n_alpn_protocols; i++) {
    const char *name = alpn_name(p->alpn_protocols[i]);
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || g_alpn_len + 1 + n > sizeof(g_alpn_wire)) continue;
    g_alpn_wire[g_alpn_len++] = (uint8_t)n;
    memcpy(g_alpn_wire + g_alpn_len, name, n);
    g_alpn_len += n;
  }
}

static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                       unsigned in_len, void *arg) {
  (void)ssl, (void)arg;
  uint8_t *sel;
  if (g_alpn_len == 0) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&sel, out_len, g_alpn_wire, g_alpn_len, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static uint16_t tls_version(int v2) {
  switch (v2) {
    case S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_2: return TLS1_2_VERSION;
    case S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_3: return TLS1_3_VERSION;
    default: return 0;
  }
}

/* get_config asks for this side's configuration and builds the context. */
static SSL_CTX *get_config(void) {
  S2a__Proto__V2__GetTlsConfigurationReq r = S2A__PROTO__V2__GET_TLS_CONFIGURATION_REQ__INIT;
  r.connection_side = g_server ? S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER
                               : S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_CLIENT;
  v2_resp resp;
  if (!exchange(REQ_CONFIG, &r, &resp)) die("GetTlsConfiguration failed");
  if (resp.code != 0 || resp.tls == NULL) {
    fprintf(stderr, "s2a_v2_peer: GetTlsConfiguration: status %u %s\n", resp.code, resp.details);
    exit(1);
  }
  g_config_msg = resp.msg;
  g_config = (S2a__Proto__V2__GetTlsConfigurationResp *)resp.tls;
  char **pems;
  size_t n_pems;
  int min, max;
  const S2a__Proto__V2__AlpnPolicy *alpn;
  if (g_server) {
    if (g_config->tls_configuration_case !=
        S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_SERVER_TLS_CONFIGURATION)
      die("GetTlsConfiguration: no server configuration");
    const S2a__Proto__V2__ServerTlsConfiguration *c = g_config->server_tls_configuration;
    pems = c->certificate_chain, n_pems = c->n_certificate_chain;
    min = c->min_tls_version, max = c->max_tls_version, alpn = c->alpn_policy;
  } else {
    if (g_config->tls_configuration_case !=
        S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_CLIENT_TLS_CONFIGURATION)
      die("GetTlsConfiguration: no client configuration");
    const S2a__Proto__V2__ClientTlsConfiguration *c = g_config->client_tls_configuration;
    pems = c->certificate_chain, n_pems = c->n_certificate_chain;
    min = c->min_tls_version, max = c->max_tls_version, alpn = c->alpn_policy;
  }
  if (n_pems == 0 || n_pems > 16) die("GetTlsConfiguration: no certificate chain");
  CRYPTO_BUFFER *certs[16];
  for (size_t i = 0; i < n_pems; i++) {
    BIO *bio = BIO_new_mem_buf(pems[i], -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    uint8_t *der = NULL;
    int len = x ? i2d_X509(x, &der) : -1;
    X509_free(x);
    if (len <= 0) die("GetTlsConfiguration: a chain entry is not a PEM certificate");
    certs[i] = CRYPTO_BUFFER_new(der, (size_t)len, NULL);
    OPENSSL_free(der);
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (!SSL_CTX_set_chain_and_key(ctx, certs, n_pems, NULL, &k_pk_method))
    die("the chain does not load");
  for (size_t i = 0; i < n_pems; i++) CRYPTO_BUFFER_free(certs[i]);
  if (!SSL_CTX_set_min_proto_version(ctx, tls_version(min)) ||
      !SSL_CTX_set_max_proto_version(ctx, tls_version(max)))
    die("bad TLS versions in the configuration");
  alpn_wire(alpn);
  int verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  if (g_server) {
    const S2a__Proto__V2__ServerTlsConfiguration *c = g_config->server_tls_configuration;
    if (c->request_client_certificate !=
        S2A__PROTO__V2__SERVER_TLS_CONFIGURATION__REQUEST_CLIENT_CERTIFICATE__REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY)
      die("expected REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY");
    if (c->tls_resumption_enabled) SSL_CTX_set_ticket_aead_method(ctx, &k_ticket_method);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    printf("config: server, %zu certificates, TLS %d..%d, tickets %s (overhead %u)\n", n_pems, min,
           max, c->tls_resumption_enabled ? "on" : "off", c->max_overhead_of_ticket_aead);
  } else {
    if (g_alpn_len && SSL_CTX_set_alpn_protos(ctx, g_alpn_wire, g_alpn_len) != 0)
      die("bad ALPN list");
    printf("config: client, %zu certificates, TLS %d..%d\n", n_pems, min, max);
  }
  SSL_CTX_set_custom_verify(ctx, verify, verify_peer);
  fflush(stdout);
  return ctx;
}

/* --- connections ------------------------------------------------------------ */

static void report(SSL *ssl) {
  const uint8_t *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  printf("handshake ok: %s %s, signed with %s, resumed %d, alpn %.*s\n", SSL_get_version(ssl),
         SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)),
         SSL_session_reused(ssl) ? "(none: resumed)"
                                 : SSL_get_signature_algorithm_name(g_sigalg_used, 0),
         SSL_session_reused(ssl), alpn_len ? (int)alpn_len : 1,
         alpn_len ? (const char *)alpn : "-");
  fflush(stdout);
}

static int read_line(SSL *ssl, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    int r = SSL_read(ssl, buf + n, 1);
    if (r <= 0) break;
    if (buf[n++] == '\n') break;
  }
  buf[n] = '\0';
  return (int)n;
}

static void run_client(SSL_CTX *ctx) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.connect_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) die("connect failed");
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (opt.server_name) SSL_set_tlsext_host_name(ssl, opt.server_name);
  if (SSL_connect(ssl) != 1) die("handshake failed");
  report(ssl);
  char line[4096];
  snprintf(line, sizeof(line), "%s\n", opt.message);
  if (SSL_write(ssl, line, (int)strlen(line)) <= 0) die("write failed");
  if (read_line(ssl, line, sizeof(line)) <= 0) die("no answer from the peer");
  printf("got: %s", line);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
}

static void serve_one(SSL_CTX *ctx, int fd) {
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) {
    fprintf(stderr, "s2a_v2_peer: accept: handshake failed\n");
    ERR_print_errors_fp(stderr);
  } else {
    report(ssl);
    char line[4096];
    int n = read_line(ssl, line, sizeof(line));
    if (n > 0 && strncmp(line, "GET ", 4) == 0) {
      const char *body = "hello from s2a_v2_peer\n";
      char out[256];
      snprintf(out, sizeof(out), "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
               body);
      while (read_line(ssl, line, sizeof(line)) > 2) continue; /* the headers */
      SSL_write(ssl, out, (int)strlen(out));
    } else if (n > 0) {
      int len = line[n - 1] == '\n' ? n - 1 : n;
      for (int i = 0; i < len / 2; i++) {
        char c = line[i];
        line[i] = line[len - 1 - i];
        line[len - 1 - i] = c;
      }
      SSL_write(ssl, line, n);
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
}

static void run_server(SSL_CTX *ctx) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(a);
  if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 16) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
    die("cannot listen on 127.0.0.1");
  FILE *f = fopen(opt.port_file, "w");
  if (f == NULL) die("cannot write the port file");
  fprintf(f, "%u\n", ntohs(a.sin_port));
  fclose(f);
  for (int i = 0; i < opt.accept_n; i++) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) die("accept failed");
    serve_one(ctx, fd);
  }
  close(ls);
}

/* --- one-shot requests (negative tests) ------------------------------------- */

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  for (; hex[0] && hex[1] && n < cap; hex += 2) {
    unsigned v;
    if (sscanf(hex, "%2x", &v) != 1) break;
    out[n++] = (uint8_t)v;
  }
  return n;
}

static size_t read_chain(const char *path, uint8_t **der, size_t *lens, size_t max) {
  size_t n = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) die("cannot read the chain file");
  X509 *x;
  while (n < max && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
    der[n] = NULL;
    int len = i2d_X509(x, &der[n]);
    X509_free(x);
    if (len > 0) lens[n++] = (size_t)len;
  }
  ERR_clear_error();
  fclose(f);
  return n;
}

static int run_op(void) {
  static uint8_t in[1 << 20];
  size_t in_len = opt.in_hex ? unhex(opt.in_hex, in, sizeof(in)) : 0;
  v2_resp resp;
  int ok = 0;
  if (strncmp(opt.op, "config-", 7) == 0) {
    S2a__Proto__V2__GetTlsConfigurationReq r = S2A__PROTO__V2__GET_TLS_CONFIGURATION_REQ__INIT;
    r.connection_side = strcmp(opt.op, "config-server") == 0
                            ? S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER
                            : S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_CLIENT;
    if (strcmp(opt.op, "config-none") == 0) r.connection_side = 0;
    if (opt.server_name) r.sni = (char *)opt.server_name;
    ok = exchange(REQ_CONFIG, &r, &resp);
  } else if (strcmp(opt.op, "sign") == 0 || strcmp(opt.op, "decrypt") == 0) {
    S2a__Proto__V2__OffloadPrivateKeyOperationReq r =
        S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__INIT;
    r.operation =
        strcmp(opt.op, "sign") == 0
            ? S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN
            : S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__DECRYPT;
    r.signature_algorithm = opt.sigalg;
    ProtobufCBinaryData d = {in_len, in};
    switch (opt.digest_len) {
      case 32:
        r.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA256_DIGEST;
        r.sha256_digest = d;
        break;
      case 48:
        r.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA384_DIGEST;
        r.sha384_digest = d;
        break;
      case 64:
        r.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA512_DIGEST;
        r.sha512_digest = d;
        break;
      default:
        r.in_bytes_case = S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_RAW_BYTES;
        r.raw_bytes = d;
    }
    ok = exchange(REQ_PRIVATE_KEY, &r, &resp);
  } else if (strcmp(opt.op, "seal") == 0 || strcmp(opt.op, "open") == 0) {
    S2a__Proto__V2__OffloadResumptionKeyOperationReq r =
        S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__INIT;
    r.operation =
        strcmp(opt.op, "seal") == 0
            ? S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__ENCRYPT
            : S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__DECRYPT;
    r.in_bytes = (ProtobufCBinaryData){in_len, in};
    ok = exchange(REQ_RESUMPTION_KEY, &r, &resp);
  } else if (strncmp(opt.op, "validate-", 9) == 0) {
    uint8_t *der[64];
    size_t lens[64], n = opt.chain_file ? read_chain(opt.chain_file, der, lens, 64) : 0;
    ProtobufCBinaryData certs[64];
    for (size_t i = 0; i < n; i++) certs[i] = (ProtobufCBinaryData){lens[i], der[i]};
    if (in_len) certs[n++] = (ProtobufCBinaryData){in_len, in}; /* garbage after the chain */
    g_server = strcmp(opt.op, "validate-client") == 0;          /* we check a client peer */
    S2a__Proto__V2__ValidatePeerCertificateChainReq r =
        S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__INIT;
    S2a__Proto__V2__ValidatePeerCertificateChainReq__ClientPeer cp =
        S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__CLIENT_PEER__INIT;
    S2a__Proto__V2__ValidatePeerCertificateChainReq__ServerPeer sp =
        S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__SERVER_PEER__INIT;
    r.mode = opt.spiffe_mode ? 1 : 0;
    if (opt.sigalg == 2) r.mode = 2; /* --sigalg 2 with validate: CONNECT_TO_GOOGLE */
    if (g_server) {
      cp.n_certificate_chain = n, cp.certificate_chain = certs;
      r.peer_oneof_case =
          S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_CLIENT_PEER;
      r.client_peer = &cp;
    } else {
      sp.n_certificate_chain = n, sp.certificate_chain = certs;
      sp.server_hostname = (char *)(opt.server_name ? opt.server_name : "");
      r.peer_oneof_case =
          S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_SERVER_PEER;
      r.server_peer = &sp;
    }
    ok = exchange(REQ_VALIDATE, &r, &resp);
    for (size_t i = 0; i < n && opt.chain_file; i++)
      if (i < 64 && certs[i].data != in) OPENSSL_free(der[i]);
  } else if (strcmp(opt.op, "empty") == 0) {
    ok = exchange(REQ_EMPTY, NULL, &resp);
  } else {
    die("unknown --op");
  }
  if (!ok) return 1;
  printf("status %u %s\n", resp.code, resp.details);
  if (resp.out_bytes) {
    printf("out ");
    for (size_t i = 0; i < resp.out_bytes->len; i++) printf("%02x", resp.out_bytes->data[i]);
    printf("\n");
  }
  if (resp.validation >= 0)
    printf("validation %d %s peer=%s fingerprints=%zu local=%s\n", resp.validation,
           resp.validation_details ? resp.validation_details : "",
           resp.leaf_spiffe ? resp.leaf_spiffe : "", resp.n_fingerprints,
           resp.local_identity ? resp.local_identity : "");
  if (resp.tls &&
      resp.tls->tls_configuration_case ==
          S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_SERVER_TLS_CONFIGURATION) {
    const S2a__Proto__V2__ServerTlsConfiguration *c = resp.tls->server_tls_configuration;
    printf(
        "server chain=%zu min=%d max=%d request_client_certificate=%d resumption=%d "
        "overhead=%u alpn=%zu\n",
        c->n_certificate_chain, c->min_tls_version, c->max_tls_version,
        c->request_client_certificate, c->tls_resumption_enabled, c->max_overhead_of_ticket_aead,
        c->alpn_policy ? c->alpn_policy->n_alpn_protocols : 0);
  }
  if (resp.tls &&
      resp.tls->tls_configuration_case ==
          S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_CLIENT_TLS_CONFIGURATION) {
    const S2a__Proto__V2__ClientTlsConfiguration *c = resp.tls->client_tls_configuration;
    printf("client chain=%zu min=%d max=%d alpn=%zu\n", c->n_certificate_chain, c->min_tls_version,
           c->max_tls_version, c->alpn_policy ? c->alpn_policy->n_alpn_protocols : 0);
  }
  resp_free(&resp);
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name, field)           \
  if (strcmp(a, name) == 0 && v) { \
    field = v;                     \
    i++;                           \
    continue;                      \
  }
    ARG("--socket", opt.socket);
    ARG("--identity", opt.identity);
    ARG("--token", opt.token);
    ARG("--server-name", opt.server_name);
    ARG("--message", opt.message);
    ARG("--listen", opt.port_file);
    ARG("--op", opt.op);
    ARG("--chain", opt.chain_file);
    ARG("--in", opt.in_hex);
#undef ARG
    if (strcmp(a, "--dialect") == 0 && v) {
      opt.grpc_java = strcmp(v, "grpc-java") == 0;
      if (!opt.grpc_java && strcmp(v, "s2a") != 0) die("--dialect is s2a or grpc-java");
      i++;
    } else if (strcmp(a, "--mode") == 0 && v) {
      opt.spiffe_mode = strcmp(v, "spiffe") == 0;
      i++;
    } else if (strcmp(a, "--connect") == 0 && v) {
      opt.connect_port = atoi(argv[++i]);
    } else if (strcmp(a, "--accept") == 0 && v) {
      opt.accept_n = atoi(argv[++i]);
    } else if (strcmp(a, "--sigalg") == 0 && v) {
      opt.sigalg = atoi(argv[++i]);
    } else if (strcmp(a, "--digest-len") == 0 && v) {
      opt.digest_len = atoi(argv[++i]);
    } else if (strcmp(a, "--raw") == 0) {
      opt.raw = 1;
    } else {
      fprintf(stderr, "s2a_v2_peer: unknown or incomplete argument %s\n", a);
      return 2;
    }
  }
  if (opt.socket == NULL || (opt.op == NULL && !opt.connect_port && opt.port_file == NULL)) {
    fprintf(stderr, "usage: see the comment at the top of tests/tools/s2a_v2_peer.c\n");
    return 2;
  }
  kh_error err;
  kh_sidecar *ch = kh_sidecar_new(opt.socket, &err);
  if (ch == NULL) die(err.msg);
  const char *method = opt.grpc_java ? "/grpc.gcp.s2a.S2AService/SetUpSession"
                                     : "/s2a.proto.v2.S2AService/SetUpSession";
  g_stream = kh_stream_open(ch, method, 60000, &err);
  if (g_stream == NULL) die(err.msg);
  int rc = 0;
  if (opt.op != NULL) {
    rc = run_op();
  } else {
    g_server = opt.port_file != NULL;
    SSL_CTX *ctx = get_config();
    if (g_server)
      run_server(ctx);
    else
      run_client(ctx);
    SSL_CTX_free(ctx);
    protobuf_c_message_free_unpacked(g_config_msg, NULL);
  }
  kh_stream_close(g_stream, 1);
  kh_sidecar_free(ch);
  return rc;
}

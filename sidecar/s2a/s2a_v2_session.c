/* s2a_v2_session.c: S2A v2 SetUpSession, sans-IO. One request in, one response out;
 * keys, tickets and verification are keys/'s. */
#include "s2a_v2_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "authz.h"
#include "identity.h"
#include "kh_log.h"
#include "kh_secret.h"
#include "s2a_identity.h"
#include "ticket_keys.h"
#include "verify.h"

struct kh_s2a_v2_session {
  const kh_s2a_env *env;
  kh_caller caller;
  kh_v2_dialect dialect;
  const kh_grants *grants; /* the policy as the stream started (NULL: none) */
  kh_identity *identity;   /* the stream's identity once chosen (our reference) */
  char asked[256];         /* the local identity as the request named it */
  char local_name[512];
  char peer_name[512];
};

kh_s2a_v2_session *kh_s2a_v2_session_new(const kh_s2a_env *env, const kh_caller *caller,
                                         kh_v2_dialect dialect) {
  kh_s2a_v2_session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->env = env;
  s->dialect = dialect;
  s->grants = kh_policy_slot_get(env->policy);
  if (caller != NULL) s->caller = *caller;
  snprintf(s->local_name, sizeof(s->local_name), "-");
  snprintf(s->peer_name, sizeof(s->peer_name), "-");
  return s;
}

void kh_s2a_v2_session_free(kh_s2a_v2_session *s) {
  if (s == NULL) return;
  kh_identity_unref(s->identity);
  kh_policy_slot_put(s->grants);
  free(s);
}

const char *kh_s2a_v2_session_local_name(const kh_s2a_v2_session *s) {
  return s->local_name;
}

const char *kh_s2a_v2_session_peer_name(const kh_s2a_v2_session *s) {
  return s->peer_name;
}

/* --- what a response owns -------------------------------------------------- */

/* A response's strings and bytes live here until it is packed. The bound
 * covers the largest response, a validation context: its URI and DNS SANs
 * (KH_MAX_DNS_NAMES each) and a fingerprint per certificate. */
#define MAX_OWNED (8 + 2 * KH_MAX_DNS_NAMES + KH_MAX_PEER_CHAIN)
typedef struct {
  void *p[MAX_OWNED];
  size_t n;
} owned;

static void *own(owned *o, void *p) {
  if (p != NULL && o->n < MAX_OWNED) {
    o->p[o->n++] = p;
    return p;
  }
  free(p);
  return NULL;
}

static void owned_free(owned *o) {
  for (size_t i = 0; i < o->n; i++) free(o->p[i]);
  o->n = 0;
}

/* --- identity selection and authorisation ---------------------------------- */

static const char *op_name(kh_v2_req_kind k) {
  switch (k) {
    case KH_V2_REQ_TLS_CONFIG: return "GetTlsConfiguration";
    case KH_V2_REQ_PRIVATE_KEY: return "OffloadPrivateKeyOperation";
    case KH_V2_REQ_RESUMPTION_KEY: return "OffloadResumptionKeyOperation";
    case KH_V2_REQ_VALIDATE: return "ValidatePeerCertificateChain";
    default: return "(none)";
  }
}

static kh_operation operation(kh_v2_req_kind k) {
  switch (k) {
    case KH_V2_REQ_PRIVATE_KEY: return KH_OP_SIGN;
    case KH_V2_REQ_RESUMPTION_KEY: return KH_OP_TICKET_KEYS;
    case KH_V2_REQ_VALIDATE: return KH_OP_VALIDATE;
    default: return KH_OP_TLS_CONFIG;
  }
}

/* refuse: one answer whether the identity exists or not (as in v1), naming
 * the caller, the identity as asked, the operation and the grant it needs. */
static int refuse(const kh_s2a_v2_session *s, const kh_v2_req *r, kh_error *err) {
  char who[40];
  return kh_err(err, KH_ERR_PERMISSION_DENIED,
                "%s may not use identity '%.100s' for %s (needs the '%s' grant)%s",
                kh_caller_name(&s->caller, who, sizeof(who)), s->asked[0] ? s->asked : "(default)",
                op_name(r->kind), kh_grant_name(kh_operation_grant(operation(r->kind))),
                r->n_tokens ? "; the access token presented does not grant it" : "");
}

_Static_assert((int)S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID == KH_S2A_ID_SPIFFE &&
                   (int)S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_HOSTNAME == KH_S2A_ID_HOSTNAME &&
                   (int)S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF__NOT_SET == KH_S2A_ID_UNSET,
               "Identity's oneof numbers are s2a_identity.h's");

/* request_name: the request's local_identity (s2a_identity.h); "" when
 * absent. An empty hostname counts as absent here, as v2 clients may send
 * one for "no identity". */
static int request_name(const S2a__Proto__V2__Identity *id, const char **out, kh_error *err) {
  *out = "";
  if (id == NULL) return 1;
  int kind = (int)id->identity_oneof_case;
  if (kind == KH_S2A_ID_HOSTNAME && id->hostname[0] == '\0') return 1;
  return (*out = kh_s2a_identity_name(kind, id->spiffe_id, id->hostname, err)) != NULL;
}

/* choose_identity: the request's local_identity, else the SNI of a server's
 * GetTlsConfiguration, else the stream's identity, else the only one. */
static int choose_identity(kh_s2a_v2_session *s, const kh_v2_req *r, kh_error *err) {
  const char *name;
  if (!request_name(r->local_identity, &name, err)) return 0;
  if (name[0] == '\0' && r->kind == KH_V2_REQ_TLS_CONFIG &&
      r->u.tls_config->connection_side == S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER &&
      r->u.tls_config->sni[0] != '\0') {
    kh_identity *by_sni = kh_identity_store_find_ref(s->env->store, r->u.tls_config->sni, NULL);
    if (by_sni != NULL) {
      kh_identity_unref(s->identity);
      s->identity = by_sni;
      snprintf(s->asked, sizeof(s->asked), "%s", r->u.tls_config->sni);
      return 1;
    }
  }
  if (name[0] == '\0' && s->identity != NULL) return 1;
  /* No name: the one identity the policy grants this caller for this. */
  const char *def = name[0] == '\0' && s->grants != NULL
                        ? kh_authz_default_identity(s->grants, &s->caller, r->tokens, r->n_tokens,
                                                    operation(r->kind))
                        : NULL;
  kh_identity *by_policy = def ? kh_identity_store_find_dir_ref(s->env->store, def) : NULL;
  if (by_policy != NULL) {
    kh_identity_unref(s->identity);
    s->identity = by_policy;
    s->asked[0] = '\0';
    return 1;
  }
  snprintf(s->asked, sizeof(s->asked), "%s", name);
  kh_identity *id = kh_identity_store_find_ref(s->env->store, name, err);
  if (id == NULL) {
    /* Only keyholdd's own uid learns which identities exist. */
    if (s->grants != NULL && s->caller.uid != getuid()) refuse(s, r, err);
    return 0;
  }
  kh_identity_unref(s->identity);
  s->identity = id;
  return 1;
}

/* authorize: may the caller run this request's operation with the
 * identity? Fills |grant| (without grants, tests and fuzzing: anything). */
static int authorize(kh_s2a_v2_session *s, const kh_v2_req *r, kh_grant *grant, kh_error *err) {
  const char *dir = kh_identity_dir_name(s->identity);
  kh_operation op = operation(r->kind);
  if (s->grants == NULL) {
    *grant = (kh_grant){.identity = dir, .op = op};
    return 1;
  }
  if (!kh_authz_decide(s->grants, &s->caller, r->tokens, r->n_tokens, op, dir, grant, err))
    return refuse(s, r, err);
  return 1;
}

static void set_identity(S2a__Proto__V2__Identity *out, const kh_identity *id) {
  s2a__proto__v2__identity__init(out);
  const char *spiffe = kh_identity_spiffe_id(id);
  if (spiffe != NULL) {
    out->identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
    out->spiffe_id = (char *)spiffe;
  } else {
    out->identity_oneof_case = S2A__PROTO__V2__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
    out->hostname = (char *)kh_identity_name(id);
  }
}

/* --- GetTlsConfiguration ---------------------------------------------------- */

static char *cert_pem(X509 *x) {
  BIO *bio = BIO_new(BIO_s_mem());
  const uint8_t *data;
  size_t len;
  char *out = NULL;
  if (bio != NULL && PEM_write_bio_X509(bio, x) && BIO_mem_contents(bio, &data, &len) &&
      (out = malloc(len + 1)) != NULL) {
    memcpy(out, data, len);
    out[len] = '\0';
  }
  BIO_free(bio);
  return out;
}

static int alpn_protocol(const char *name) {
  if (strcmp(name, "grpc") == 0) return S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_GRPC;
  if (strcmp(name, "h2") == 0) return S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_HTTP2;
  if (strcmp(name, "http/1.1") == 0) return S2A__PROTO__V2__ALPN_PROTOCOL__ALPN_PROTOCOL_HTTP1_1;
  return 0;
}

#define MAX_CHAIN_OUT 16
#define KH_MAX_ALPN_V2 8 /* AlpnProtocol has three values */

typedef struct {
  S2a__Proto__V2__GetTlsConfigurationResp resp;
  S2a__Proto__V2__ClientTlsConfiguration client;
  S2a__Proto__V2__ServerTlsConfiguration server;
  S2a__Proto__V2__AlpnPolicy alpn;
  S2a__Proto__V2__AlpnProtocol protocols[KH_MAX_ALPN_V2];
  char *chain[MAX_CHAIN_OUT];
} tls_config_out;

static int tls_config(kh_s2a_v2_session *s, const S2a__Proto__V2__GetTlsConfigurationReq *r,
                      const kh_grant *g, tls_config_out *o, owned *own_list, kh_error *err) {
  int server = r->connection_side == S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_SERVER;
  if (!server && r->connection_side != S2A__PROTO__V2__CONNECTION_SIDE__CONNECTION_SIDE_CLIENT)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "connection_side must be CLIENT or SERVER, not %d",
                  (int)r->connection_side);
  /* The chain as configured, leaf first, without a self-signed root. */
  const STACK_OF(X509) *chain = kh_identity_chain(s->identity);
  size_t n = 0;
  for (size_t i = 0; i < sk_X509_num(chain) && n < MAX_CHAIN_OUT; i++) {
    X509 *x = sk_X509_value(chain, i);
    if (i > 0 && X509_check_issued(x, x) == X509_V_OK) continue;
    if ((o->chain[n] = own(own_list, cert_pem(x))) == NULL)
      return kh_err(err, KH_ERR_NOMEM, "out of memory writing the certificate chain");
    n++;
  }
  s2a__proto__v2__alpn_policy__init(&o->alpn);
  size_t np = 0;
  for (size_t i = 0; i < g->n_alpn && np < KH_MAX_ALPN_V2; i++) {
    int p = alpn_protocol(g->alpn[i]);
    if (p != 0) o->protocols[np++] = p;
  }
  o->alpn.enable_alpn_negotiation = np > 0;
  o->alpn.n_alpn_protocols = np;
  o->alpn.alpn_protocols = o->protocols;
  s2a__proto__v2__get_tls_configuration_resp__init(&o->resp);
  if (server) {
    s2a__proto__v2__server_tls_configuration__init(&o->server);
    o->server.n_certificate_chain = n;
    o->server.certificate_chain = o->chain;
    o->server.min_tls_version = o->server.max_tls_version =
        S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_3;
    o->server.request_client_certificate =
        S2A__PROTO__V2__SERVER_TLS_CONFIGURATION__REQUEST_CLIENT_CERTIFICATE__REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    o->server.tls_resumption_enabled = s->env->ticket_keys != NULL;
    o->server.max_overhead_of_ticket_aead = s->env->ticket_keys ? KH_TICKET_SEAL_OVERHEAD : 0;
    o->server.alpn_policy = &o->alpn;
    o->resp.tls_configuration_case =
        S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_SERVER_TLS_CONFIGURATION;
    o->resp.server_tls_configuration = &o->server;
  } else {
    s2a__proto__v2__client_tls_configuration__init(&o->client);
    o->client.n_certificate_chain = n;
    o->client.certificate_chain = o->chain;
    o->client.min_tls_version = o->client.max_tls_version =
        S2A__PROTO__V2__TLSVERSION__TLS_VERSION_1_3;
    o->client.alpn_policy = &o->alpn;
    o->resp.tls_configuration_case =
        S2A__PROTO__V2__GET_TLS_CONFIGURATION_RESP__TLS_CONFIGURATION_CLIENT_TLS_CONFIGURATION;
    o->resp.client_tls_configuration = &o->client;
  }
  return 1;
}

/* --- OffloadPrivateKeyOperation --------------------------------------------- */

typedef struct {
  int v2;
  uint16_t tls;
  const char *name;
  size_t digest_len; /* 0: whole messages only */
} sigalg_info;

static const sigalg_info k_sigalgs[] = {
    {1, SSL_SIGN_RSA_PKCS1_SHA256, "RSA_PKCS1_SHA256", 32},
    {2, SSL_SIGN_RSA_PKCS1_SHA384, "RSA_PKCS1_SHA384", 48},
    {3, SSL_SIGN_RSA_PKCS1_SHA512, "RSA_PKCS1_SHA512", 64},
    {4, SSL_SIGN_ECDSA_SECP256R1_SHA256, "ECDSA_SECP256R1_SHA256", 32},
    {5, SSL_SIGN_ECDSA_SECP384R1_SHA384, "ECDSA_SECP384R1_SHA384", 48},
    {6, SSL_SIGN_ECDSA_SECP521R1_SHA512, "ECDSA_SECP521R1_SHA512", 64},
    {7, SSL_SIGN_RSA_PSS_RSAE_SHA256, "RSA_PSS_RSAE_SHA256", 32},
    {8, SSL_SIGN_RSA_PSS_RSAE_SHA384, "RSA_PSS_RSAE_SHA384", 48},
    {9, SSL_SIGN_RSA_PSS_RSAE_SHA512, "RSA_PSS_RSAE_SHA512", 64},
    {10, SSL_SIGN_ED25519, "ED25519", 0},
};

static const char *digest_field(size_t len) {
  return len == 32 ? "sha256_digest" : len == 48 ? "sha384_digest" : "sha512_digest";
}

static int private_key(kh_s2a_v2_session *s, const S2a__Proto__V2__OffloadPrivateKeyOperationReq *r,
                       uint8_t *sig, size_t *sig_len, kh_error *err) {
  if (r->operation ==
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__DECRYPT)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION,
                  "DECRYPT is not offered: keyholdd does no TLS 1.2 RSA key exchange");
  if (r->operation !=
      S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__PRIVATE_KEY_OPERATION__SIGN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "private key operation %d is not SIGN",
                  (int)r->operation);
  const sigalg_info *a = NULL;
  for (size_t i = 0; i < sizeof(k_sigalgs) / sizeof(k_sigalgs[0]); i++)
    if (k_sigalgs[i].v2 == (int)r->signature_algorithm) a = &k_sigalgs[i];
  if (a == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature_algorithm %d is not supported",
                  (int)r->signature_algorithm);
  kh_key_type type = kh_identity_key_type(s->identity);
  if (!kh_sigalg_fits(type, a->tls))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "signature algorithm %s does not fit identity '%.100s', whose key is %s", a->name,
                  kh_identity_name(s->identity), kh_key_type_name(type));
  const ProtobufCBinaryData *in = NULL;
  size_t field_len = 0; /* the digest length the field's name promises */
  switch (r->in_bytes_case) {
    case S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_RAW_BYTES:
      return kh_identity_sign(s->identity, a->tls, r->raw_bytes.data, r->raw_bytes.len, sig,
                              sig_len, KH_MAX_SIGNATURE, err);
    case S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA256_DIGEST:
      in = &r->sha256_digest, field_len = 32;
      break;
    case S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA384_DIGEST:
      in = &r->sha384_digest, field_len = 48;
      break;
    case S2A__PROTO__V2__OFFLOAD_PRIVATE_KEY_OPERATION_REQ__IN_BYTES_SHA512_DIGEST:
      in = &r->sha512_digest, field_len = 64;
      break;
    default: return kh_err(err, KH_ERR_INVALID_ARGUMENT, "no input bytes to sign");
  }
  if (in->len != field_len)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s holds %zu bytes, not %zu",
                  digest_field(field_len), in->len, field_len);
  if (a->digest_len == 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s signs raw_bytes, not a digest", a->name);
  if (a->digest_len != field_len)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s signs a %s, not a %s", a->name,
                  digest_field(a->digest_len), digest_field(field_len));
  return kh_identity_sign_digest(s->identity, a->tls, in->data, in->len, sig, sig_len,
                                 KH_MAX_SIGNATURE, err);
}

/* --- OffloadResumptionKeyOperation ------------------------------------------ */

static int resumption_key(kh_s2a_v2_session *s,
                          const S2a__Proto__V2__OffloadResumptionKeyOperationReq *r, kh_buf *out,
                          kh_error *err) {
  int seal =
      r->operation ==
      S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__ENCRYPT;
  if (!seal &&
      r->operation !=
          S2A__PROTO__V2__OFFLOAD_RESUMPTION_KEY_OPERATION_REQ__RESUMPTION_KEY_OPERATION__DECRYPT)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "resumption key operation %d is not ENCRYPT or DECRYPT", (int)r->operation);
  if (s->env->ticket_keys == NULL)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "keyholdd has no ticket keys");
  kh_ticket_keys *k = kh_ticket_keys_get(s->env->ticket_keys);
  int ok = seal ? kh_ticket_keys_seal(k, r->in_bytes.data, r->in_bytes.len, out, err)
                : kh_ticket_keys_open(k, r->in_bytes.data, r->in_bytes.len, out, err);
  kh_ticket_keys_unref(k);
  return ok;
}

/* --- ValidatePeerCertificateChain ------------------------------------------- */

typedef struct {
  S2a__Proto__V2__ValidatePeerCertificateChainResp resp;
  S2a__Proto__V2__S2AContext ctx;
  S2a__Proto__V2__Identity local;
  char *uris[KH_MAX_DNS_NAMES];
  char *dns[KH_MAX_DNS_NAMES];
  char *fingerprints[KH_MAX_PEER_CHAIN];
  uint8_t local_fp[KH_SHA256_LEN];
} validate_out;

static char *fingerprint_b64(const uint8_t *der, size_t len) {
  uint8_t h[SHA256_DIGEST_LENGTH];
  SHA256(der, len, h);
  char *out = malloc(64);
  if (out != NULL) EVP_EncodeBlock((uint8_t *)out, h, sizeof(h));
  return out;
}

/* leaf_uris: every URI SAN of the leaf (the SPIFFE ID is one of them). */
static size_t leaf_uris(const uint8_t *der, size_t len, char **out, size_t max, owned *o) {
  const uint8_t *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)len);
  size_t n = 0;
  GENERAL_NAMES *names = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
  for (size_t i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && n < max; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const ASN1_STRING *u = g->d.uniformResourceIdentifier;
    char *s = malloc((size_t)ASN1_STRING_length(u) + 1);
    if (s == NULL) break;
    memcpy(s, ASN1_STRING_get0_data(u), (size_t)ASN1_STRING_length(u));
    s[ASN1_STRING_length(u)] = '\0';
    if ((out[n] = own(o, s)) != NULL) n++;
  }
  GENERAL_NAMES_free(names);
  X509_free(x);
  return n;
}

static int validate(kh_s2a_v2_session *s, const S2a__Proto__V2__ValidatePeerCertificateChainReq *r,
                    const kh_grant *g, validate_out *o, owned *own_list, kh_error *err) {
  if (r->mode ==
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__VERIFICATION_MODE__CONNECT_TO_GOOGLE)
    return kh_err(err, KH_ERR_UNIMPLEMENTED,
                  "verification mode CONNECT_TO_GOOGLE is not supported by keyholdd (it holds no "
                  "Google trust bundle); use SPIFFE or UNSPECIFIED");
  if (r->mode != S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__VERIFICATION_MODE__SPIFFE &&
      r->mode !=
          S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__VERIFICATION_MODE__UNSPECIFIED)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "verification mode %d is not supported",
                  (int)r->mode);
  kh_verify_params p = {.trust = kh_identity_trust(s->identity),
                        .peer_check = g->peer_check,
                        .policy_name = kh_identity_dir_name(s->identity)};
  size_t n;
  ProtobufCBinaryData *chain;
  if (r->peer_oneof_case ==
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_CLIENT_PEER) {
    p.peer_role = KH_PEER_IS_CLIENT;
    n = r->client_peer->n_certificate_chain, chain = r->client_peer->certificate_chain;
  } else if (r->peer_oneof_case ==
             S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_REQ__PEER_ONEOF_SERVER_PEER) {
    p.peer_role = KH_PEER_IS_SERVER;
    n = r->server_peer->n_certificate_chain, chain = r->server_peer->certificate_chain;
    if (r->server_peer->server_hostname[0] != '\0') p.server_name = r->server_peer->server_hostname;
  } else {
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "neither client_peer nor server_peer is set");
  }
  if (n > KH_MAX_PEER_CHAIN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "a chain of %zu certificates, at most %d", n,
                  KH_MAX_PEER_CHAIN);
  const uint8_t *certs[KH_MAX_PEER_CHAIN];
  size_t lens[KH_MAX_PEER_CHAIN];
  for (size_t i = 0; i < n; i++) certs[i] = chain[i].data, lens[i] = chain[i].len;

  s2a__proto__v2__validate_peer_certificate_chain_resp__init(&o->resp);
  s2a__proto__v2__s2_acontext__init(&o->ctx);
  kh_verified_peer peer = {0};
  uint8_t alert;
  kh_error why;
  if (!kh_verify_der(&p, certs, lens, n, &peer, &alert, &why)) {
    o->resp.validation_result =
        S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__FAILURE;
    o->resp.validation_details = own(own_list, strdup(why.msg));
    if (o->resp.validation_details == NULL) o->resp.validation_details = "";
    kh_log(KH_LOG_WARN, "s2a v2: caller uid=%u identity=%s peer chain refused: %s",
           (unsigned)s->caller.uid, kh_identity_name(s->identity), why.msg);
    return 1;
  }
  o->resp.validation_result =
      S2A__PROTO__V2__VALIDATE_PEER_CERTIFICATE_CHAIN_RESP__VALIDATION_RESULT__SUCCESS;
  o->resp.validation_details = "";
  o->ctx.leaf_cert_spiffe_id = peer.spiffe_id ? own(own_list, strdup(peer.spiffe_id)) : (char *)"";
  if (o->ctx.leaf_cert_spiffe_id == NULL) o->ctx.leaf_cert_spiffe_id = "";
  o->ctx.n_leaf_cert_uris = leaf_uris(certs[0], lens[0], o->uris, KH_MAX_DNS_NAMES, own_list);
  o->ctx.leaf_cert_uris = o->uris;
  for (size_t i = 0; i < peer.dns_count; i++)
    if ((o->dns[o->ctx.n_leaf_cert_dnsnames] = own(own_list, strdup(peer.dns[i]))) != NULL)
      o->ctx.n_leaf_cert_dnsnames++;
  o->ctx.leaf_cert_dnsnames = o->dns;
  for (size_t i = 0; i < n; i++)
    if ((o->fingerprints[o->ctx.n_peer_certificate_chain_fingerprints] =
             own(own_list, fingerprint_b64(certs[i], lens[i]))) != NULL)
      o->ctx.n_peer_certificate_chain_fingerprints++;
  o->ctx.peer_certificate_chain_fingerprints = o->fingerprints;
  set_identity(&o->local, s->identity);
  o->ctx.local_identity = &o->local;
  memcpy(o->local_fp, kh_identity_fingerprint(s->identity), KH_SHA256_LEN);
  o->ctx.local_leaf_cert_fingerprint = (ProtobufCBinaryData){KH_SHA256_LEN, o->local_fp};
  o->resp.context = &o->ctx;
  snprintf(s->peer_name, sizeof(s->peer_name), "%s",
           peer.spiffe_id   ? peer.spiffe_id
           : peer.dns_count ? peer.dns[0]
                            : "-");
  kh_verified_peer_free(&peer);
  return 1;
}

/* --- one request ------------------------------------------------------------- */

static int dispatch(kh_s2a_v2_session *s, const kh_v2_req *r, S2a__Proto__V2__SessionResp *resp,
                    owned *o, kh_buf *secret_out, kh_error *err) {
  kh_grant grant;
  if (!choose_identity(s, r, err) || !authorize(s, r, &grant, err)) return 0;
  snprintf(s->local_name, sizeof(s->local_name), "%s", kh_identity_name(s->identity));
  switch (r->kind) {
    case KH_V2_REQ_TLS_CONFIG: {
      tls_config_out *t = own(o, calloc(1, sizeof(*t)));
      if (t == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
      if (!tls_config(s, r->u.tls_config, &grant, t, o, err)) return 0;
      resp->resp_oneof_case = S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_GET_TLS_CONFIGURATION_RESP;
      resp->get_tls_configuration_resp = &t->resp;
      return 1;
    }
    case KH_V2_REQ_PRIVATE_KEY: {
      S2a__Proto__V2__OffloadPrivateKeyOperationResp *pk = own(o, malloc(sizeof(*pk)));
      uint8_t *sig = own(o, malloc(KH_MAX_SIGNATURE));
      size_t sig_len = 0;
      if (pk == NULL || sig == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
      if (!private_key(s, r->u.private_key, sig, &sig_len, err)) return 0;
      s2a__proto__v2__offload_private_key_operation_resp__init(pk);
      pk->out_bytes = (ProtobufCBinaryData){sig_len, sig};
      resp->resp_oneof_case =
          S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_OFFLOAD_PRIVATE_KEY_OPERATION_RESP;
      resp->offload_private_key_operation_resp = pk;
      return 1;
    }
    case KH_V2_REQ_RESUMPTION_KEY: {
      S2a__Proto__V2__OffloadResumptionKeyOperationResp *rk = own(o, malloc(sizeof(*rk)));
      if (rk == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
      if (!resumption_key(s, r->u.resumption_key, secret_out, err)) return 0;
      s2a__proto__v2__offload_resumption_key_operation_resp__init(rk);
      rk->out_bytes = (ProtobufCBinaryData){secret_out->len, secret_out->data};
      resp->resp_oneof_case =
          S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_OFFLOAD_RESUMPTION_KEY_OPERATION_RESP;
      resp->offload_resumption_key_operation_resp = rk;
      return 1;
    }
    case KH_V2_REQ_VALIDATE: {
      validate_out *v = own(o, calloc(1, sizeof(*v)));
      if (v == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
      if (!validate(s, r->u.validate, &grant, v, o, err)) return 0;
      resp->resp_oneof_case =
          S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF_VALIDATE_PEER_CERTIFICATE_CHAIN_RESP;
      resp->validate_peer_certificate_chain_resp = &v->resp;
      return 1;
    }
    default: return kh_err(err, KH_ERR_INVALID_ARGUMENT, "request carries no operation");
  }
}

kh_s2a_outcome kh_s2a_v2_session_handle(kh_s2a_v2_session *s, const uint8_t *req, size_t req_len,
                                        kh_buf *resp, kh_error *err) {
  kh_v2_req r;
  kh_error why;
  kh_error_clear(&why);
  owned o = {0};
  kh_buf opened = KH_BUF_INIT; /* a ticket's session state: wiped by kh_buf_free */
  S2a__Proto__V2__SessionResp m = S2A__PROTO__V2__SESSION_RESP__INIT;
  S2a__Proto__V2__Status st = S2A__PROTO__V2__STATUS__INIT;
  m.status = &st;
  st.details = "";
  int unpacked = kh_v2_req_unpack(s->dialect, req, req_len, &r, &why);
  if (!unpacked || !dispatch(s, &r, &m, &o, &opened, &why)) {
    m.resp_oneof_case = S2A__PROTO__V2__SESSION_RESP__RESP_ONEOF__NOT_SET;
    st.code = kh_code_to_grpc(why.code);
    st.details = why.msg;
    kh_log(why.code == KH_ERR_PERMISSION_DENIED ? KH_LOG_WARN : KH_LOG_INFO,
           "s2a v2: caller uid=%u %s refused: %s", (unsigned)s->caller.uid,
           unpacked ? op_name(r.kind) : "request", why.msg);
  }
  kh_buf_reset(resp);
  int ok = kh_v2_resp_pack(s->dialect, &m, resp, err);
  if (unpacked) kh_v2_req_free(&r);
  owned_free(&o);
  kh_buf_free(&opened);
  return ok ? KH_S2A_CONTINUE : KH_S2A_FAILED;
}

/* tls_engine.c: sans-IO TLS 1.3 handshakes on BoringSSL over memory BIOs.
 *
 * BoringSSL reads exactly one record at a time from its read BIO, so the
 * bytes left in the BIO when the handshake completes are exactly the bytes
 * the handshake did not consume (the peer's first application records,
 * NewSessionTickets). */
#include "tls_engine.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kh_cursor.h"
#include "kh_secret.h"
#include "tls_secrets.h"
#include "verify.h"

struct kh_tls_engine {
  kh_tls_side side;
  kh_identity *identity;
  SSL *ssl;
  BIO *rbio;          /* peer -> us; owned by |ssl| */
  BIO *wbio;          /* us -> peer; owned by |ssl| */
  uint8_t *alpn_wire; /* length-prefixed protocols, sized to fit (most have none) */
  size_t alpn_wire_len;
  uint32_t allowed_suites;
  char *server_name;
  char *expect_peers[KH_MAX_EXPECT_PEERS];
  size_t expect_peer_count;
  const kh_peer_check *peer_check;
  kh_ticket_keys *ticket_keys;
  char reason[256]; /* why verification failed, set by the verify callback */
  int done;
  int failed;
};

static int is_ip_literal(const char *s) {
  uint8_t buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* leaf_name writes |leaf|'s SPIFFE ID, else its first DNS SAN, else "",
 * and returns whether it was a SPIFFE ID. */
static int leaf_name(X509 *leaf, char *out, size_t len) {
  return kh_x509_primary_name(leaf, out, len);
}

/* verify_params: what keys/verify.c checks the peer against: the
 * identity's trust bundle, on the client side the expected peers or the
 * server name, on both the grant's peer lists. */
static void verify_params(const kh_tls_engine *e, kh_verify_params *p) {
  *p = (kh_verify_params){
      .trust = kh_identity_trust(e->identity),
      .peer_role = e->side == KH_TLS_CLIENT ? KH_PEER_IS_SERVER : KH_PEER_IS_CLIENT,
      .peer_check = e->peer_check,
      .policy_name = kh_identity_dir_name(e->identity),
  };
  if (e->side == KH_TLS_CLIENT) {
    p->expect_peers = e->expect_peers;
    p->expect_peer_count = e->expect_peer_count;
    p->server_name = e->server_name;
  }
}

/* suite_allowed: is the negotiated suite one the request and policy allow?
 * TLS 1.3 suites cannot be configured in BoringSSL, so this is checked once
 * negotiated: at verification, and again after a resumption (which skips
 * verification and may settle on another suite of the session's hash). */
static int suite_allowed(kh_tls_engine *e, uint8_t *out_alert) {
  const SSL_CIPHER *c = SSL_get_pending_cipher(e->ssl);
  if (c == NULL) c = SSL_get_current_cipher(e->ssl);
  int suite = c ? kh_suite_from_iana(SSL_CIPHER_get_protocol_id(c)) : -1;
  if (suite >= 0 && (e->allowed_suites & KH_SUITE_BIT(suite))) return 1;
  snprintf(e->reason, sizeof(e->reason), "negotiated ciphersuite %s is not allowed",
           c ? SSL_CIPHER_get_name(c) : "(none)");
  *out_alert = SSL_AD_HANDSHAKE_FAILURE;
  return 0;
}

/* verify_cb: the negotiated suite, then the peer through keys/verify.c. */
static enum ssl_verify_result_t verify_cb(SSL *ssl, uint8_t *out_alert) {
  kh_tls_engine *e = SSL_get_app_data(ssl);
  if (!suite_allowed(e, out_alert)) return ssl_verify_invalid;
  kh_verify_params p;
  verify_params(e, &p);
  kh_error err;
  if (kh_verify_chain(&p, SSL_get_peer_full_cert_chain(ssl), NULL, out_alert, &err))
    return ssl_verify_ok;
  snprintf(e->reason, sizeof(e->reason), "%s", err.msg);
  return ssl_verify_invalid;
}

/* Server ALPN: our preference order, first protocol the client also offers. */
static int alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                          unsigned in_len, void *arg) {
  (void)arg;
  kh_tls_engine *e = SSL_get_app_data(ssl);
  if (e->alpn_wire_len == 0) return SSL_TLSEXT_ERR_NOACK;
  kh_cursor our_list, ours;
  kh_cursor_init(&our_list, e->alpn_wire, e->alpn_wire_len);
  while (kh_cursor_u8_prefixed(&our_list, &ours)) {
    kh_cursor their_list, theirs;
    kh_cursor_init(&their_list, in, in_len);
    while (kh_cursor_u8_prefixed(&their_list, &theirs)) {
      if (kh_cursor_left(&theirs) == kh_cursor_left(&ours) &&
          memcmp(theirs.data, ours.data, kh_cursor_left(&ours)) == 0) {
        *out = theirs.data;
        *out_len = (uint8_t)kh_cursor_left(&theirs);
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  snprintf(e->reason, sizeof(e->reason), "no application protocol in common with the peer");
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int build_alpn(kh_tls_engine *e, const kh_tls_config *cfg, kh_error *err) {
  size_t total = 0;
  for (size_t i = 0; i < cfg->alpn_count; i++) {
    size_t n = cfg->alpn[i] ? strlen(cfg->alpn[i]) : 0;
    if (n == 0 || n > 255)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "ALPN protocol %zu is empty or too long", i);
    total += 1 + n;
  }
  if (total == 0) return 1;
  if ((e->alpn_wire = malloc(total)) == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < cfg->alpn_count; i++) {
    size_t n = strlen(cfg->alpn[i]);
    e->alpn_wire[e->alpn_wire_len++] = (uint8_t)n;
    memcpy(&e->alpn_wire[e->alpn_wire_len], cfg->alpn[i], n);
    e->alpn_wire_len += n;
  }
  return 1;
}

static kh_ticket_keys *engine_ticket_keys(SSL *ssl) {
  kh_tls_engine *e = SSL_get_app_data(ssl);
  return e ? e->ticket_keys : NULL;
}

/* The identity's key signs through BoringSSL's private-key method: the
 * engine calls kh_identity_sign synchronously (never retry), so the key
 * stays behind the key store's backend interface and a backend that is
 * slow (PKCS#11, later) changes nothing here but the retry. The identity is
 * the handshake's own (the engine's reference): a rotation that swaps the
 * identity mid-handshake does not change the key that signs it. */
static enum ssl_private_key_result_t key_sign(SSL *ssl, uint8_t *out, size_t *out_len,
                                              size_t max_out, uint16_t sigalg, const uint8_t *in,
                                              size_t in_len) {
  kh_tls_engine *e = SSL_get_app_data(ssl);
  kh_error err;
  if (e == NULL) return ssl_private_key_failure;
  if (!kh_identity_sign(e->identity, sigalg, in, in_len, out, out_len, max_out, &err)) {
    snprintf(e->reason, sizeof(e->reason), "%s", err.msg);
    return ssl_private_key_failure;
  }
  return ssl_private_key_success;
}

static enum ssl_private_key_result_t key_decrypt(SSL *ssl, uint8_t *out, size_t *out_len,
                                                 size_t max_out, const uint8_t *in, size_t in_len) {
  (void)ssl, (void)out, (void)out_len, (void)max_out, (void)in, (void)in_len;
  return ssl_private_key_failure; /* RSA key exchange: not in TLS 1.3 */
}

static enum ssl_private_key_result_t key_complete(SSL *ssl, uint8_t *out, size_t *out_len,
                                                  size_t max_out) {
  (void)ssl, (void)out, (void)out_len, (void)max_out;
  return ssl_private_key_failure; /* key_sign never returns retry */
}

static const SSL_PRIVATE_KEY_METHOD k_key_method = {
    .sign = key_sign, .decrypt = key_decrypt, .complete = key_complete};

/* build_ctx: everything about a TLS context that depends only on the identity
 * and the side. Per-handshake settings live on the SSL; callbacks find the
 * engine through SSL_get_app_data. */
static SSL_CTX *build_ctx(const kh_identity *id, kh_tls_side side, kh_error *err) {
  const STACK_OF(X509) *chain = kh_identity_chain(id);
  uint16_t sign_prefs[KH_MAX_SIGALGS];
  size_t n_sign = kh_identity_sigalgs(id, sign_prefs, KH_MAX_SIGALGS);
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  int ok = ctx != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) &&
           SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) &&
           SSL_CTX_use_certificate(ctx, kh_identity_leaf(id));
  for (size_t i = 1; ok && i < sk_X509_num(chain); i++)
    ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i));
  /* The key: signed through kh_identity_sign, with the schemes it fits. */
  if (ok) SSL_CTX_set_private_key_method(ctx, &k_key_method);
  ok = ok && n_sign > 0 && SSL_CTX_set_signing_algorithm_prefs(ctx, sign_prefs, n_sign);
  /* BoringSSL leaves Ed25519 out of its default verify list; peers with
   * Ed25519 leaves are allowed, so list every algorithm we accept. */
  static const uint16_t verify_prefs[] = {
      SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256,
      SSL_SIGN_ECDSA_SECP384R1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA384, SSL_SIGN_RSA_PKCS1_SHA384,
      SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA512,    SSL_SIGN_ED25519,
  };
  ok = ok && SSL_CTX_set_verify_algorithm_prefs(ctx, verify_prefs,
                                                sizeof(verify_prefs) / sizeof(verify_prefs[0]));
  /* Sessions resume only under the identity (certificate) that made them,
   * and for at most an hour: policy and trust changes take effect. */
  ok = ok && SSL_CTX_set_session_id_context(ctx, kh_identity_fingerprint(id), KH_SHA256_LEN);
  if (ok && side == KH_TLS_SERVER) ok = kh_ticket_keys_install(ctx, engine_ticket_keys);
  if (!ok) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    kh_err(err, KH_ERR_INTERNAL, "cannot configure TLS context for %s", kh_identity_name(id));
    return NULL;
  }
  /* mTLS always: a server requests and requires a client certificate. */
  SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
  if (side == KH_TLS_SERVER) SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
  SSL_CTX_set_session_psk_dhe_timeout(ctx, 3600);
  return ctx;
}

static void *make_client_ctx(const kh_identity *id, void *arg, kh_error *err) {
  (void)arg;
  return build_ctx(id, KH_TLS_CLIENT, err);
}

static void *make_server_ctx(const kh_identity *id, void *arg, kh_error *err) {
  (void)arg;
  return build_ctx(id, KH_TLS_SERVER, err);
}

static void free_ctx(void *ctx) {
  SSL_CTX_free(ctx);
}

/* shared_ctx returns the identity's context for |side|, built on first use
 * and kept in the identity's attachment slot for that side, so it is freed
 * with the identity (a rotated identity's contexts go when its last
 * handshake ends). Borrowed: the engine holds the identity, and SSL_new
 * takes the SSL's own reference. */
static SSL_CTX *shared_ctx(kh_identity *id, kh_tls_side side, kh_error *err) {
  if (side == KH_TLS_SERVER)
    return kh_identity_attachment(id, KH_IDENTITY_SLOT_TLS_SERVER, make_server_ctx, free_ctx, NULL,
                                  err);
  return kh_identity_attachment(id, KH_IDENTITY_SLOT_TLS_CLIENT, make_client_ctx, free_ctx, NULL,
                                err);
}

static int allowed_suite(uint32_t allowed_suites, const SSL_CIPHER *c) {
  int suite = c ? kh_suite_from_iana(SSL_CIPHER_get_protocol_id(c)) : -1;
  return suite >= 0 && ((allowed_suites ? allowed_suites : KH_SUITE_ALL) & KH_SUITE_BIT(suite));
}

int kh_tls_session_fits(const kh_identity *id, uint32_t allowed_suites, const SSL_SESSION *s) {
  unsigned len = 0;
  const uint8_t *sid_ctx = SSL_SESSION_get0_id_context(s, &len);
  return len == KH_SHA256_LEN && memcmp(sid_ctx, kh_identity_fingerprint(id), KH_SHA256_LEN) == 0 &&
         SSL_SESSION_is_resumable(s) && SSL_SESSION_get_protocol_version(s) == TLS1_3_VERSION &&
         allowed_suite(allowed_suites, SSL_SESSION_get0_cipher(s)) &&
         SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) > (uint64_t)time(NULL);
}

kh_tls_engine *kh_tls_engine_new(const kh_tls_config *cfg, kh_error *err) {
  if (cfg->identity == NULL || cfg->alpn_count > KH_MAX_ALPN ||
      cfg->expect_peer_count > KH_MAX_EXPECT_PEERS) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "invalid TLS engine configuration");
    return NULL;
  }
  kh_tls_engine *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  e->side = cfg->side;
  e->identity = kh_identity_ref(cfg->identity);
  e->allowed_suites = cfg->allowed_suites ? cfg->allowed_suites : KH_SUITE_ALL;
  e->peer_check = cfg->peer_check;
  e->ticket_keys = cfg->side == KH_TLS_SERVER ? kh_ticket_keys_ref(cfg->ticket_keys) : NULL;
  if (cfg->server_name && cfg->server_name[0]) e->server_name = strdup(cfg->server_name);
  for (size_t i = 0; i < cfg->expect_peer_count; i++) {
    if (cfg->expect_peers[i] && cfg->expect_peers[i][0])
      e->expect_peers[e->expect_peer_count++] = strdup(cfg->expect_peers[i]);
  }
  SSL_CTX *ctx;
  if (!build_alpn(e, cfg, err) || (ctx = shared_ctx(e->identity, e->side, err)) == NULL) goto fail;
  e->ssl = SSL_new(ctx);
  e->rbio = BIO_new(BIO_s_mem());
  e->wbio = BIO_new(BIO_s_mem());
  if (e->ssl == NULL || e->rbio == NULL || e->wbio == NULL) {
    BIO_free(e->rbio);
    BIO_free(e->wbio);
    e->rbio = e->wbio = NULL;
    kh_err(err, KH_ERR_NOMEM, "cannot create TLS session");
    goto fail;
  }
  SSL_set_bio(e->ssl, e->rbio, e->wbio);
  SSL_set_app_data(e->ssl, e);
  if (e->side == KH_TLS_CLIENT) {
    SSL_set_connect_state(e->ssl);
    /* A session that cannot resume here is not offered: the handshake is a
     * full one instead (see kh_tls_session_fits). */
    if (cfg->session != NULL && kh_tls_session_fits(e->identity, e->allowed_suites, cfg->session) &&
        !SSL_set_session(e->ssl, cfg->session))
      ERR_clear_error();
    if (e->server_name && !is_ip_literal(e->server_name) &&
        !SSL_set_tlsext_host_name(e->ssl, e->server_name)) {
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "invalid server name");
      goto fail;
    }
    if (e->alpn_wire_len && SSL_set_alpn_protos(e->ssl, e->alpn_wire, e->alpn_wire_len) != 0) {
      kh_err(err, KH_ERR_INTERNAL, "cannot set ALPN");
      goto fail;
    }
  } else {
    SSL_set_accept_state(e->ssl);
    if (e->ticket_keys == NULL) SSL_set_options(e->ssl, SSL_OP_NO_TICKET);
  }
  return e;
fail:
  ERR_clear_error();
  kh_tls_engine_free(e);
  return NULL;
}

void kh_tls_engine_free(kh_tls_engine *e) {
  if (e == NULL) return;
  SSL_free(e->ssl); /* frees both BIOs */
  kh_identity_unref(e->identity);
  kh_ticket_keys_unref(e->ticket_keys);
  free(e->server_name);
  free(e->alpn_wire);
  for (size_t i = 0; i < e->expect_peer_count; i++) free(e->expect_peers[i]);
  kh_wipe(e, sizeof(*e));
  free(e);
}

/* drain_output moves everything BoringSSL wrote into |out|. */
static int drain_output(kh_tls_engine *e, kh_buf *out, kh_error *err) {
  const uint8_t *data;
  size_t len;
  if (!BIO_mem_contents(e->wbio, &data, &len))
    return kh_err(err, KH_ERR_INTERNAL, "cannot read TLS output");
  if (len > 0 && !kh_buf_append(out, data, len)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  BIO_reset(e->wbio);
  return 1;
}

static int fail_step(kh_tls_engine *e, int ssl_err, kh_buf *out, kh_error *err) {
  e->failed = 1;
  char why[300];
  if (e->reason[0] != '\0') {
    snprintf(why, sizeof(why), "%s", e->reason);
  } else {
    unsigned long ec = ERR_peek_error();
    if (ec != 0) {
      ERR_error_string_n(ec, why, sizeof(why));
    } else if (ssl_err == SSL_ERROR_ZERO_RETURN || ssl_err == SSL_ERROR_SYSCALL) {
      snprintf(why, sizeof(why), "peer closed the connection during the handshake");
    } else {
      snprintf(why, sizeof(why), "TLS error %d", ssl_err);
    }
  }
  ERR_clear_error();
  kh_error ignored;
  drain_output(e, out, &ignored); /* the alert for the peer, if any */
  return kh_err(err, KH_ERR_HANDSHAKE, "TLS handshake failed: %s", why);
}

/* recheck_resumed: a resumed handshake skips certificate verification, so
 * the allowed suites and the policy's peer lists are checked again against
 * the session's suite and peer. */
static int recheck_resumed(kh_tls_engine *e, kh_buf *out, kh_error *err) {
  STACK_OF(X509) *chain = SSL_get_peer_full_cert_chain(e->ssl);
  X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
  uint8_t alert = 0;
  kh_verify_params p;
  verify_params(e, &p);
  kh_error why;
  if (leaf != NULL && suite_allowed(e, &alert)) {
    if (kh_verify_peer_check(&p, leaf, &alert, &why)) return 1;
    snprintf(e->reason, sizeof(e->reason), "%s", why.msg);
  }
  if (leaf == NULL) snprintf(e->reason, sizeof(e->reason), "resumed session has no peer");
  e->failed = 1;
  drain_output(e, out, err);
  return kh_err(err, KH_ERR_HANDSHAKE, "%s", e->reason);
}

SSL_SESSION *kh_tls_engine_ticket(kh_tls_engine *e, const uint8_t *msg, size_t len, kh_error *err) {
  if (!e->done || e->side != KH_TLS_CLIENT) {
    kh_err(err, KH_ERR_FAILED_PRECONDITION, "no completed client handshake");
    return NULL;
  }
  SSL_SESSION *s = SSL_process_tls13_new_session_ticket(e->ssl, msg, len);
  if (s == NULL) {
    ERR_clear_error();
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "not a valid NewSessionTicket message (%zu bytes)", len);
  }
  return s;
}

int kh_tls_engine_step(kh_tls_engine *e, const uint8_t *in, size_t in_len, size_t *out_consumed,
                       kh_buf *out, kh_error *err) {
  *out_consumed = 0;
  if (e->failed) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "TLS handshake already failed");
  if (e->done) return 1;
  if (in_len > 0 && BIO_write(e->rbio, in, (int)in_len) != (int)in_len)
    return kh_err(err, KH_ERR_NOMEM, "cannot buffer peer bytes");
  int r = SSL_do_handshake(e->ssl);
  *out_consumed = in_len - BIO_ctrl_pending(e->rbio);
  if (r == 1) {
    e->done = 1;
    if (SSL_session_reused(e->ssl) && !recheck_resumed(e, out, err)) return 0;
    /* A BoringSSL server holds its NewSessionTickets until the first write;
     * the app writes with its own record layer, so flush them now. They go
     * out with the last flight and the write sequence counts them. */
    if (e->side == KH_TLS_SERVER && e->ticket_keys != NULL && SSL_write(e->ssl, "", 0) < 0)
      ERR_clear_error();
  } else {
    int se = SSL_get_error(e->ssl, r);
    if (se != SSL_ERROR_WANT_READ) return fail_step(e, se, out, err);
  }
  return drain_output(e, out, err);
}

int kh_tls_engine_done(const kh_tls_engine *e) {
  return e->done;
}

int kh_tls_engine_result(kh_tls_engine *e, kh_tls_result *out, kh_error *err) {
  memset(out, 0, sizeof(*out));
  if (!e->done) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "handshake not complete");
  if (!kh_ssl_traffic_keys(e->ssl, &out->keys, err)) return 0;
  STACK_OF(X509) *chain = SSL_get_peer_full_cert_chain(e->ssl);
  X509 *peer = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
  if (peer != NULL) {
    unsigned n = 0;
    out->peer_name_is_spiffe = leaf_name(peer, out->peer_name, sizeof(out->peer_name));
    X509_digest(peer, EVP_sha256(), out->peer_fingerprint, &n);
  }
  const kh_identity *id = e->identity;
  snprintf(out->local_name, sizeof(out->local_name), "%s", kh_identity_name(id));
  out->local_name_is_spiffe = kh_identity_spiffe_id(id) != NULL;
  memcpy(out->local_fingerprint, kh_identity_fingerprint(id), KH_SHA256_LEN);
  const uint8_t *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(e->ssl, &alpn, &alpn_len);
  if (alpn_len > 0 && alpn_len < sizeof(out->alpn)) memcpy(out->alpn, alpn, alpn_len);
  out->resumed = SSL_session_reused(e->ssl);
  return 1;
}

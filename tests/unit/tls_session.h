/* tls_session.h: TLS 1.3 session helpers for the sidecar's unit tests
 * (header-only, BoringSSL). */
#ifndef KH_TEST_TLS_SESSION_H
#define KH_TEST_TLS_SESSION_H

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

static SSL_SESSION *g_test_ticket_session;

/* The test server signs with |server|'s key through the key store, as
 * keyholdd's contexts do (the identity is the SSL's app data). */
static enum ssl_private_key_result_t kh_test_key_sign(SSL *ssl, uint8_t *out, size_t *out_len,
                                                      size_t max_out, uint16_t sigalg,
                                                      const uint8_t *in, size_t in_len) {
  kh_error err;
  return kh_identity_sign(SSL_get_app_data(ssl), sigalg, in, in_len, out, out_len, max_out, &err)
             ? ssl_private_key_success
             : ssl_private_key_failure;
}

static enum ssl_private_key_result_t kh_test_key_complete(SSL *ssl, uint8_t *out, size_t *out_len,
                                                          size_t max_out) {
  (void)ssl, (void)out, (void)out_len, (void)max_out;
  return ssl_private_key_failure;
}

static const SSL_PRIVATE_KEY_METHOD kh_test_key_method = {
    .sign = kh_test_key_sign, .decrypt = NULL, .complete = kh_test_key_complete};

static int kh_test_keep_first_session(SSL *ssl, SSL_SESSION *s) {
  (void)ssl;
  if (g_test_ticket_session != NULL) return 0;
  g_test_ticket_session = s;
  return 1; /* the reference is ours */
}

/* kh_test_client_session: a real resumable TLS 1.3 client session, the
 * first ticket of an in-memory BoringSSL handshake between a client with
 * session ID context = |client|'s leaf fingerprint (as keyholdd's client
 * contexts set it) and a server holding |server|'s certificate. NULL on
 * failure; the caller frees it. */
static inline SSL_SESSION *kh_test_client_session(const kh_identity *client,
                                                  const kh_identity *server) {
  SSL_CTX *cctx = SSL_CTX_new(TLS_method()), *sctx = SSL_CTX_new(TLS_method());
  SSL *c = NULL, *s = NULL;
  BIO *cb = NULL, *sb = NULL;
  uint16_t prefs[KH_MAX_SIGALGS];
  size_t n_prefs = kh_identity_sigalgs(server, prefs, KH_MAX_SIGALGS);
  g_test_ticket_session = NULL;
  if (cctx == NULL || sctx == NULL || !SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION) ||
      !SSL_CTX_use_certificate(sctx, kh_identity_leaf(server)) ||
      !SSL_CTX_set_signing_algorithm_prefs(sctx, prefs, n_prefs) ||
      !SSL_CTX_set_session_id_context(cctx, kh_identity_fingerprint(client), KH_SHA256_LEN))
    goto out;
  SSL_CTX_set_private_key_method(sctx, &kh_test_key_method);
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(cctx, kh_test_keep_first_session);
  c = SSL_new(cctx);
  s = SSL_new(sctx);
  if (c == NULL || s == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0)) goto out;
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_app_data(s, (void *)server);
  SSL_set_connect_state(c);
  SSL_set_accept_state(s);
  for (int i = 0; i < 8 && !(SSL_is_init_finished(c) && SSL_is_init_finished(s)); i++) {
    SSL_do_handshake(c);
    SSL_do_handshake(s);
  }
  uint8_t byte;
  if (SSL_write(s, "x", 1) == 1) SSL_read(c, &byte, 1); /* the tickets come first */
out:
  SSL_free(c);
  SSL_free(s);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  return g_test_ticket_session;
}

/* kh_test_offers_psk: does the ClientHello record in |b| offer a session
 * (carry the pre_shared_key extension, 41)? */
static inline int kh_test_offers_psk(const uint8_t *b, size_t n) {
  size_t p = 5 + 4 + 2 + 32; /* record and handshake headers, version, random */
  if (n < p + 1) return 0;
  p += 1 + b[p]; /* legacy_session_id */
  if (n < p + 2) return 0;
  p += 2 + ((size_t)b[p] << 8 | b[p + 1]); /* cipher_suites */
  if (n < p + 1) return 0;
  p += 1 + b[p]; /* legacy_compression_methods */
  p += 2;        /* extensions length */
  while (p + 4 <= n) {
    unsigned type = (unsigned)b[p] << 8 | b[p + 1];
    size_t len = (size_t)b[p + 2] << 8 | b[p + 3];
    if (type == 41) return 1;
    p += 4 + len;
  }
  return 0;
}

#endif

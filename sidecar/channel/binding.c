/* binding.c: see binding.h. */
#include "binding.h"

#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kh_builder.h"
#include "kh_cursor.h"

#define LABEL "keyhold noise binding v1"
#define MAGIC "KHB1"
#define MAX_SIGNED (sizeof(LABEL) + 1 + 32 + 64)

/* The TLS 1.3 schemes a binding may use: no PKCS#1 v1.5, no SHA-1. */
static int scheme_allowed(uint16_t sigalg) {
  switch (sigalg) {
    case SSL_SIGN_ECDSA_SECP256R1_SHA256:
    case SSL_SIGN_ECDSA_SECP384R1_SHA384:
    case SSL_SIGN_ECDSA_SECP521R1_SHA512:
    case SSL_SIGN_RSA_PSS_RSAE_SHA256:
    case SSL_SIGN_RSA_PSS_RSAE_SHA384:
    case SSL_SIGN_RSA_PSS_RSAE_SHA512:
    case SSL_SIGN_ED25519: return 1;
    default: return 0;
  }
}

/* signed_content writes the bytes a binding signs into |out| (MAX_SIGNED). */
static size_t signed_content(int initiator, const uint8_t static_pub[32], const uint8_t *h,
                             size_t h_len, uint8_t *out) {
  size_t n = 0;
  memcpy(out, LABEL, sizeof(LABEL)); /* with its NUL */
  n += sizeof(LABEL);
  out[n++] = initiator ? 'I' : 'R';
  memcpy(out + n, static_pub, 32);
  n += 32;
  memcpy(out + n, h, h_len);
  return n + h_len;
}

int kh_binding_write(const kh_identity *id, int initiator, const uint8_t static_pub[32],
                     const uint8_t *h, size_t h_len, kh_buf *out, kh_error *err) {
  if (h_len > 64) return kh_err(err, KH_ERR_INTERNAL, "handshake hash too long");
  uint16_t algs[KH_MAX_SIGALGS];
  size_t n_algs = kh_identity_sigalgs(id, algs, KH_MAX_SIGALGS);
  uint16_t alg = 0;
  for (size_t i = 0; i < n_algs && alg == 0; i++)
    if (scheme_allowed(algs[i])) alg = algs[i];
  if (alg == 0)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION,
                  "identity '%s' has no key type a channel binding can sign with",
                  kh_identity_name(id));
  uint8_t msg[MAX_SIGNED], sig[KH_MAX_SIGNATURE];
  size_t msg_len = signed_content(initiator, static_pub, h, h_len, msg), sig_len = 0;
  if (!kh_identity_sign(id, alg, msg, msg_len, sig, &sig_len, sizeof(sig), err)) return 0;
  kh_builder b;
  kh_builder_init(&b, out, KH_BINDING_MAX_LEN);
  kh_builder_bytes(&b, MAGIC, 4);
  kh_builder_u16(&b, alg);
  kh_builder_open_u16(&b);
  kh_builder_bytes(&b, sig, sig_len);
  kh_builder_close(&b);
  const STACK_OF(X509) *chain = kh_identity_chain(id);
  size_t n_certs = sk_X509_num(chain);
  kh_builder_u8(&b, (uint32_t)n_certs);
  for (size_t i = 0; i < n_certs; i++) {
    int len = i2d_X509(sk_X509_value(chain, i), NULL);
    uint8_t *der = len > 0 ? kh_builder_space(&b, 3 + (size_t)len) : NULL;
    if (der == NULL) {
      kh_builder_fail(&b, len > 0 ? "binding too large" : "cannot encode certificate");
      break;
    }
    der[0] = (uint8_t)(len >> 16), der[1] = (uint8_t)(len >> 8), der[2] = (uint8_t)len;
    der += 3;
    i2d_X509(sk_X509_value(chain, i), &der);
  }
  return kh_builder_finish(&b, NULL, err);
}

/* check_signature verifies |sig| by |leaf_der|'s key over |msg|. */
static int check_signature(const uint8_t *leaf_der, size_t leaf_len, uint16_t alg,
                           const uint8_t *sig, size_t sig_len, const uint8_t *msg, size_t msg_len,
                           kh_error *err) {
  const uint8_t *p = leaf_der;
  X509 *leaf = d2i_X509(NULL, &p, (long)leaf_len);
  EVP_PKEY *key = leaf ? X509_get_pubkey(leaf) : NULL;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  int ok = key != NULL && ctx != NULL &&
           EVP_DigestVerifyInit(ctx, &pctx, SSL_get_signature_algorithm_digest(alg), NULL, key) &&
           (!SSL_is_signature_algorithm_rsa_pss(alg) ||
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1))) &&
           EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
  /* The scheme must also fit the key type (an RSA key cannot sign ECDSA). */
  if (ok && SSL_get_signature_algorithm_key_type(alg) != EVP_PKEY_id(key)) ok = 0;
  ERR_clear_error();
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  X509_free(leaf);
  if (!ok)
    return kh_err(err, KH_ERR_UNAUTHENTICATED,
                  "the peer's binding signature does not verify (its certificate key did not "
                  "sign this handshake and static key)");
  return 1;
}

int kh_binding_verify(const kh_verify_params *p, int initiator, const uint8_t static_pub[32],
                      const uint8_t *h, size_t h_len, const uint8_t *payload, size_t len,
                      kh_verified_peer *out, kh_error *err) {
  kh_cursor c, sig, cert;
  uint16_t alg;
  uint8_t n;
  kh_cursor_init(&c, payload, len);
  if (len < 4 || memcmp(payload, MAGIC, 4) != 0 || !kh_cursor_skip(&c, 4) ||
      !kh_cursor_u16(&c, &alg) || !kh_cursor_u16_prefixed(&c, &sig) || !kh_cursor_u8(&c, &n))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the peer's identity binding is malformed");
  if (!scheme_allowed(alg))
    return kh_err(err, KH_ERR_UNAUTHENTICATED,
                  "the peer's binding uses signature scheme 0x%04x, which channels do not accept",
                  alg);
  if (n == 0 || n > KH_MAX_PEER_CHAIN || h_len > 64)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the peer's binding has %u certificates", n);
  const uint8_t *certs[KH_MAX_PEER_CHAIN];
  size_t lens[KH_MAX_PEER_CHAIN];
  for (uint8_t i = 0; i < n; i++) {
    if (!kh_cursor_u24_prefixed(&c, &cert) || cert.len == 0 || cert.len > KH_MAX_PEER_CERT)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the peer's binding has a malformed certificate");
    certs[i] = cert.data;
    lens[i] = cert.len;
  }
  if (kh_cursor_left(&c) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "trailing bytes after the peer's binding");
  uint8_t alert = 0;
  if (!kh_verify_der(p, certs, lens, n, out, &alert, err)) {
    if (err != NULL && err->code != KH_ERR_NOMEM) err->code = KH_ERR_UNAUTHENTICATED;
    return 0;
  }
  uint8_t msg[MAX_SIGNED];
  size_t msg_len = signed_content(initiator, static_pub, h, h_len, msg);
  if (!check_signature(certs[0], lens[0], alg, sig.data, sig.len, msg, msg_len, err)) {
    kh_verified_peer_free(out);
    return 0;
  }
  return 1;
}

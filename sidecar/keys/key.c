/* key.c: the key interface: scheme tables and dispatch to the backend. */
#include "key.h"

#include <stdlib.h>

#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

struct kh_key {
  const kh_key_ops *ops;
  void *impl;
  kh_key_type type;
};

/* Preference order per key type: BoringSSL's default signing order
 * (kSignSignatureAlgorithms) restricted to the type, so handshakes sign as
 * they did when BoringSSL held the key itself. TLS 1.3 skips PKCS#1. */
static const uint16_t k_ecdsa_p256[] = {SSL_SIGN_ECDSA_SECP256R1_SHA256};
static const uint16_t k_ecdsa_p384[] = {SSL_SIGN_ECDSA_SECP384R1_SHA384};
static const uint16_t k_rsa[] = {
    SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256,    SSL_SIGN_RSA_PSS_RSAE_SHA384,
    SSL_SIGN_RSA_PKCS1_SHA384,    SSL_SIGN_RSA_PSS_RSAE_SHA512, SSL_SIGN_RSA_PKCS1_SHA512,
};
static const uint16_t k_ed25519[] = {SSL_SIGN_ED25519};

static const uint16_t *sigalgs_of(kh_key_type t, size_t *n) {
#define KH_LIST(a) (*n = sizeof(a) / sizeof(a[0]), a)
  switch (t) {
    case KH_KEY_ECDSA_P256: return KH_LIST(k_ecdsa_p256);
    case KH_KEY_ECDSA_P384: return KH_LIST(k_ecdsa_p384);
    case KH_KEY_RSA: return KH_LIST(k_rsa);
    case KH_KEY_ED25519: return KH_LIST(k_ed25519);
  }
#undef KH_LIST
  *n = 0;
  return NULL;
}

const char *kh_key_type_name(kh_key_type t) {
  switch (t) {
    case KH_KEY_ECDSA_P256: return "ECDSA P-256";
    case KH_KEY_ECDSA_P384: return "ECDSA P-384";
    case KH_KEY_RSA: return "RSA";
    case KH_KEY_ED25519: return "Ed25519";
  }
  return "unknown";
}

int kh_key_type_of(EVP_PKEY *key, const char *path, kh_key_type *out, kh_error *err) {
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_RSA:
      if (EVP_PKEY_bits(key) < 2048)
        return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: RSA key of %d bits (minimum 2048)", path,
                      EVP_PKEY_bits(key));
      *out = KH_KEY_RSA;
      return 1;
    case EVP_PKEY_ED25519: *out = KH_KEY_ED25519; return 1;
    case EVP_PKEY_EC: {
      const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
      int nid = g ? EC_GROUP_get_curve_name(g) : 0;
      if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1) {
        *out = nid == NID_secp384r1 ? KH_KEY_ECDSA_P384 : KH_KEY_ECDSA_P256;
        return 1;
      }
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: EC curve not supported (P-256, P-384 only)",
                    path);
    }
    default:
      return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                    "%s: unsupported key type (ECDSA P-256/P-384, RSA, Ed25519)", path);
  }
}

int kh_sigalg_fits(kh_key_type t, uint16_t sigalg) {
  size_t n;
  const uint16_t *l = sigalgs_of(t, &n);
  for (size_t i = 0; i < n; i++) {
    if (l[i] == sigalg) return 1;
  }
  return 0;
}

kh_key *kh_key_new(const kh_key_ops *ops, void *impl, kh_key_type type, kh_error *err) {
  size_t n;
  kh_key *k = sigalgs_of(type, &n) != NULL ? calloc(1, sizeof(*k)) : NULL;
  if (k == NULL) {
    ops->free(impl);
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  k->ops = ops;
  k->impl = impl;
  k->type = type;
  return k;
}

void kh_key_free(kh_key *k) {
  if (k == NULL) return;
  k->ops->free(k->impl);
  free(k);
}

kh_key_type kh_key_get_type(const kh_key *k) {
  return k->type;
}

const char *kh_key_backend(const kh_key *k) {
  return k->ops->name;
}

size_t kh_key_sigalgs(const kh_key *k, uint16_t *out, size_t max_out) {
  size_t n;
  const uint16_t *l = sigalgs_of(k->type, &n);
  if (n > max_out) n = max_out;
  for (size_t i = 0; i < n; i++) out[i] = l[i];
  return n;
}

int kh_key_sign(const kh_key *k, uint16_t sigalg, const uint8_t *in, size_t in_len, uint8_t *out,
                size_t *out_len, size_t max_out, kh_error *err) {
  *out_len = 0;
  if (!kh_sigalg_fits(k->type, sigalg))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature scheme 0x%04x does not fit a %s key",
                  sigalg, kh_key_type_name(k->type));
  return k->ops->sign(k->impl, sigalg, in, in_len, out, out_len, max_out, err);
}

int kh_key_sign_digest(const kh_key *k, uint16_t sigalg, const uint8_t *digest, size_t digest_len,
                       uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  *out_len = 0;
  if (!kh_sigalg_fits(k->type, sigalg))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature scheme 0x%04x does not fit a %s key",
                  sigalg, kh_key_type_name(k->type));
  const EVP_MD *md = SSL_get_signature_algorithm_digest(sigalg);
  if (md == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "a %s key signs whole messages, not digests",
                  kh_key_type_name(k->type));
  if (digest_len != EVP_MD_size(md))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "a digest of %zu bytes does not fit scheme 0x%04x (its hash is %zu bytes)",
                  digest_len, sigalg, EVP_MD_size(md));
  if (k->ops->sign_digest == NULL)
    return kh_err(err, KH_ERR_UNIMPLEMENTED, "the %s key backend does not sign digests",
                  k->ops->name);
  return k->ops->sign_digest(k->impl, sigalg, digest, digest_len, out, out_len, max_out, err);
}

int kh_key_rsa_decrypt(const kh_key *k, int oaep, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t *out_len, size_t max_out, kh_error *err) {
  *out_len = 0;
  if (k->type != KH_KEY_RSA || k->ops->rsa_decrypt == NULL)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "a %s key does not decrypt RSA envelopes",
                  kh_key_type_name(k->type));
  return k->ops->rsa_decrypt(k->impl, oaep, in, in_len, out, out_len, max_out, err);
}

EVP_PKEY *kh_key_public(const kh_key *k, kh_error *err) {
  return k->ops->public_key(k->impl, err);
}

/* pkcs11_sig.c: see pkcs11_sig.h. */
#include "pkcs11_sig.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <p11-kit/pkcs11.h>

int kh_p11_mech_for(kh_key_type t, uint16_t sigalg, kh_p11_mech *out, kh_error *err) {
  if (!kh_sigalg_fits(t, sigalg))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "scheme 0x%04x does not fit a %s key", sigalg,
                  kh_key_type_name(t));
  memset(out, 0, sizeof(*out));
  if (t == KH_KEY_ED25519) {
    out->mechanism = CKM_EDDSA;
    return 1;
  }
  out->prehash = 1;
  if (t != KH_KEY_RSA) {
    out->mechanism = CKM_ECDSA;
    out->ecdsa = 1;
    return 1;
  }
  if (!SSL_is_signature_algorithm_rsa_pss(sigalg)) {
    out->mechanism = CKM_RSA_PKCS;
    return 1;
  }
  out->mechanism = CKM_RSA_PKCS_PSS;
  out->pss = 1;
  switch (EVP_MD_type(SSL_get_signature_algorithm_digest(sigalg))) {
    case NID_sha256: out->pss_hash = CKM_SHA256, out->pss_mgf = CKG_MGF1_SHA256; break;
    case NID_sha384: out->pss_hash = CKM_SHA384, out->pss_mgf = CKG_MGF1_SHA384; break;
    case NID_sha512: out->pss_hash = CKM_SHA512, out->pss_mgf = CKG_MGF1_SHA512; break;
    default: return kh_err(err, KH_ERR_INVALID_ARGUMENT, "scheme 0x%04x: no PSS hash", sigalg);
  }
  out->pss_salt = EVP_MD_size(SSL_get_signature_algorithm_digest(sigalg));
  return 1;
}

int kh_p11_sign_input(uint16_t sigalg, const uint8_t *digest, size_t digest_len, uint8_t *out,
                      size_t *out_len, size_t max_out, kh_error *err) {
  const EVP_MD *md = SSL_get_signature_algorithm_digest(sigalg);
  if (md == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "scheme 0x%04x signs messages, not digests",
                  sigalg);
  if (digest_len != EVP_MD_size(md))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "digest of %zu bytes for scheme 0x%04x (needs %zu)",
                  digest_len, sigalg, EVP_MD_size(md));
  if (SSL_get_signature_algorithm_key_type(sigalg) != EVP_PKEY_RSA ||
      SSL_is_signature_algorithm_rsa_pss(sigalg)) {
    if (digest_len > max_out) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "no room for the digest");
    memcpy(out, digest, digest_len);
    *out_len = digest_len;
    return 1;
  }
  uint8_t *prefixed = NULL;
  size_t len = 0;
  int alloced = 0;
  int ok = RSA_add_pkcs1_prefix(&prefixed, &len, &alloced, EVP_MD_type(md), digest, digest_len);
  ERR_clear_error();
  if (ok && len <= max_out) memcpy(out, prefixed, len), *out_len = len;
  if (alloced) OPENSSL_free(prefixed);
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "cannot build DigestInfo for scheme 0x%04x", sigalg);
  return len <= max_out || kh_err(err, KH_ERR_INVALID_ARGUMENT, "no room for the DigestInfo");
}

int kh_p11_ecdsa_der(kh_key_type t, const uint8_t *raw, size_t raw_len, uint8_t *out,
                     size_t *out_len, size_t max_out, kh_error *err) {
  size_t half = t == KH_KEY_ECDSA_P256 ? 32 : t == KH_KEY_ECDSA_P384 ? 48 : 0;
  if (half == 0 || raw_len != 2 * half)
    return kh_err(err, KH_ERR_INTERNAL, "token answered an ECDSA signature of %zu bytes (%s: %zu)",
                  raw_len, kh_key_type_name(t), 2 * half);
  ECDSA_SIG *sig = ECDSA_SIG_new();
  uint8_t *der = NULL;
  size_t der_len = 0;
  int ok = sig != NULL && BN_bin2bn(raw, half, sig->r) != NULL &&
           BN_bin2bn(raw + half, half, sig->s) != NULL && !BN_is_zero(sig->r) &&
           !BN_is_zero(sig->s) && ECDSA_SIG_to_bytes(&der, &der_len, sig);
  ECDSA_SIG_free(sig);
  ERR_clear_error();
  if (ok && der_len <= max_out) memcpy(out, der, der_len), *out_len = der_len;
  OPENSSL_free(der);
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "token answered an invalid ECDSA signature");
  return der_len <= max_out || kh_err(err, KH_ERR_INVALID_ARGUMENT,
                                      "signature needs %zu bytes, room for %zu", der_len, max_out);
}

int kh_p11_ec_type(const uint8_t *params, size_t len, kh_key_type *out, kh_error *err) {
  CBS cbs;
  CBS_init(&cbs, params, len);
  EC_GROUP *g = EC_KEY_parse_curve_name(&cbs);
  int nid = g != NULL && CBS_len(&cbs) == 0 ? EC_GROUP_get_curve_name(g) : NID_undef;
  EC_GROUP_free(g);
  ERR_clear_error();
  if (nid == NID_X9_62_prime256v1) return *out = KH_KEY_ECDSA_P256, 1;
  if (nid == NID_secp384r1) return *out = KH_KEY_ECDSA_P384, 1;
  return kh_err(err, KH_ERR_INVALID_ARGUMENT, "EC key on a curve other than P-256 or P-384");
}

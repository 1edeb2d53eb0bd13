/* pkcs11_sig.h: the sans-IO half of the PKCS#11 key backend (key_pkcs11.c).
 *
 * What goes into C_Sign for a TLS SignatureScheme, and what comes out
 * turned into what TLS expects: no token, no module, bytes in and bytes out
 * (unit test tests/unit/keys/test_pkcs11_sig.c, fuzz target
 * fuzz/fuzz_pkcs11_sig.c: a token's answers are not trusted blindly).
 *
 *   ECDSA       CKM_ECDSA over the scheme's digest; the token answers r || s
 *               (PKCS#11 2.40 2.3.1), TLS wants a DER ECDSA-Sig-Value.
 *   RSA-PSS     CKM_RSA_PKCS_PSS over the digest, MGF1 with the same hash,
 *               salt as long as the hash (RFC 8446 4.2.3).
 *   RSA PKCS#1  CKM_RSA_PKCS over DigestInfo || digest.
 *   Ed25519     CKM_EDDSA over the whole message (no pre-hash form).
 * BoringSSL only. */
#ifndef KH_PKCS11_SIG_H
#define KH_PKCS11_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "kh_error.h"
#include "key.h"

/* One signing job's mechanism: numbers from PKCS#11 (CKM_*, CKG_*). */
typedef struct {
  unsigned long mechanism;
  int pss;                /* 1: the PSS parameters below apply */
  unsigned long pss_hash; /* CKM_SHA256 ... */
  unsigned long pss_mgf;  /* CKG_MGF1_SHA256 ... */
  unsigned long pss_salt; /* bytes */
  int ecdsa;              /* 1: the answer is r || s, see kh_p11_ecdsa_der */
  int prehash;            /* 1: the input is a digest (or DigestInfo) */
} kh_p11_mech;

/* kh_p11_mech_for: the mechanism for |sigalg| on a key of type |t|;
 * INVALID_ARGUMENT for a scheme that does not fit the key. */
KH_MUST_USE int kh_p11_mech_for(kh_key_type t, uint16_t sigalg, kh_p11_mech *out, kh_error *err);

/* KH_P11_MAX_INPUT: room for any C_Sign input built by kh_p11_sign_input
 * (DigestInfo of SHA-512: 19 + 64 bytes). */
#define KH_P11_MAX_INPUT 96

/* kh_p11_sign_input writes what C_Sign signs for |sigalg| given |digest|
 * (the scheme's hash of the message, of its exact length): the digest, or
 * DigestInfo || digest for PKCS#1. INVALID_ARGUMENT for a wrong length or
 * Ed25519 (which signs messages, not digests). */
KH_MUST_USE int kh_p11_sign_input(uint16_t sigalg, const uint8_t *digest, size_t digest_len,
                                  uint8_t *out, size_t *out_len, size_t max_out, kh_error *err);

/* kh_p11_ecdsa_der turns a token's r || s answer for a key of type |t|
 * (each half as long as the curve's order) into a DER ECDSA-Sig-Value.
 * INTERNAL for an answer of the wrong length or one that is not a valid
 * signature value (r or s zero); INVALID_ARGUMENT when |max_out| is short. */
KH_MUST_USE int kh_p11_ecdsa_der(kh_key_type t, const uint8_t *raw, size_t raw_len, uint8_t *out,
                                 size_t *out_len, size_t max_out, kh_error *err);

/* kh_p11_ec_type reads CKA_EC_PARAMS (a DER namedCurve OID) into a key type:
 * P-256 or P-384. INVALID_ARGUMENT for any other curve or malformed bytes. */
KH_MUST_USE int kh_p11_ec_type(const uint8_t *params, size_t len, kh_key_type *out, kh_error *err);

#endif /* KH_PKCS11_SIG_H */

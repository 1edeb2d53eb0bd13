/* dpop.h: DPoP proofs (RFC 9449) signed with an identity's key, sans-IO.
 * A proof is a compact JWS: header {"typ":"dpop+jwt","alg":ALG,"jwk":PUB},
 * claims {"jti","htm","htu","iat"[,"nonce"][,"ath"]}. ALG is ES256, signed
 * by the identity key when it is P-256, else by the identity's dedicated
 * P-256 dpop.key; or EdDSA with an Ed25519 identity key. The JWK thumbprint
 * (RFC 7638) is what an authorization server binds tokens to (cnf.jkt). */
#ifndef KH_DPOP_H
#define KH_DPOP_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"

#define KH_DPOP_MAX_HTU 2048
#define KH_DPOP_MAX_NONCE 512

/* kh_dpop_thumbprint writes the base64url SHA-256 JWK thumbprint of |id|'s
 * key for |alg| ("ES256" or "EdDSA"; NULL or "": the key's own) to |out|
 * (at least 44 bytes). */
KH_MUST_USE int kh_dpop_thumbprint(const kh_identity *id, const char *alg, char *out, size_t cap,
                                   kh_error *err);

/* kh_dpop_proof appends the proof for |htm| |htu| at |iat| to |out| (a C
 * string). |nonce| may be NULL or ""; |ath| (SHA-256 of the access token)
 * NULL or 32 bytes. htm must be an HTTP method token (A-Z), htu an absolute
 * http(s) URI without query or fragment, the nonce printable ASCII without
 * '"' and '\': anything else is INVALID_ARGUMENT, never an escaped JSON. */
KH_MUST_USE int kh_dpop_proof(const kh_identity *id, const char *alg, const char *htm,
                              const char *htu, const char *nonce, const uint8_t *ath,
                              size_t ath_len, int64_t iat, kh_buf *out, kh_error *err);

#endif /* KH_DPOP_H */

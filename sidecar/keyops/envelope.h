/* envelope.h: hybrid RSA envelopes, sans-IO: an AES-256-GCM message whose
 * 32-byte key is wrapped with the identity's RSA key, as pub/sub tools
 * build them (docs/KEYS.md "Hybrid RSA envelopes"):
 *   "KHE1" | mode (1 byte) | wrapped length (2 bytes, big-endian) | wrapped
 *   key | IV (12 bytes) | ciphertext and tag (16 bytes)
 * mode 1: RSAES-OAEP with SHA-256 and MGF1-SHA-256 (the default); mode 2:
 * RSAES-PKCS1-v1_5 (legacy, only where the policy enables it), unwrapped
 * with implicit rejection: a wrong padding yields a pseudo-random key (an
 * HMAC of the wrapped key under a secret of this process), never a distinct
 * error or timing, so the AES-GCM tag fails like any altered message. The
 * first 7 bytes are the AES-GCM associated data. */
#ifndef KH_ENVELOPE_H
#define KH_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"

#define KH_ENVELOPE_MAGIC "KHE1"
#define KH_ENVELOPE_OAEP 1
#define KH_ENVELOPE_PKCS1V15 2
#define KH_ENVELOPE_REJECT_KEY_LEN 32

/* kh_envelope_mode: the envelope's mode byte, or 0 if |in| is not one. */
int kh_envelope_mode(const uint8_t *in, size_t len);

/* kh_envelope_open writes the plaintext to |pt| (wipe it after). Any
 * envelope that does not open (altered, truncated, another key, a bad
 * padding in either mode) fails the same way: INVALID_ARGUMENT, "the
 * envelope does not open with ID's key ...". |reject_key|: the implicit
 * rejection secret (KH_ENVELOPE_REJECT_KEY_LEN bytes). */
KH_MUST_USE int kh_envelope_open(const kh_identity *id, const uint8_t *in, size_t len,
                                 const uint8_t *reject_key, kh_buf *pt, kh_error *err);

#endif /* KH_ENVELOPE_H */

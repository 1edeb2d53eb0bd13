/* binding.h: the identity binding a secure channel's handshake payload
 * carries (docs/CHANNELS.md "Binding").
 *
 * A Noise static key by itself names nobody. Each side therefore sends, in
 * the first handshake message it writes after its static key is known to
 * the peer, its certificate chain and a signature by the certificate's key
 * over
 *     "keyhold noise binding v1" 0x00 || role ('I' or 'R') || static public key || h
 * where h is the handshake hash the payload is encrypted under
 * (kh_noise_payload_hash on the reading side). The signature ties the
 * certificate to the static key and to this handshake (h covers both
 * ephemerals), so a binding cannot be replayed into another handshake or
 * moved to another key; the role byte stops a reflected binding. The
 * verifier checks the chain against its identity's trust bundle and the
 * names against the expected peers and the policy, exactly as for TLS.
 *
 * Payload layout (big-endian):
 *     "KHB1" | u16 sigalg (TLS SignatureScheme) | u16 sig_len | sig
 *            | u8 n_certs | n_certs x (u24 len | DER), leaf first
 * Sans-IO: bytes in, bytes out. */
#ifndef KH_BINDING_H
#define KH_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "verify.h"

#define KH_BINDING_MAX_LEN 60000 /* it must fit a Noise message with its tokens */

/* kh_binding_write appends |id|'s binding of |static_pub| for role
 * |initiator| under handshake hash |h| to |out|. */
KH_MUST_USE int kh_binding_write(const kh_identity *id, int initiator, const uint8_t static_pub[32],
                                 const uint8_t *h, size_t h_len, kh_buf *out, kh_error *err);

/* kh_binding_verify checks a peer's binding: the chain under |p|, then the
 * signature by the leaf over the peer's |static_pub|, role |initiator| and
 * |h|. On success |out| holds the peer's verified names (free with
 * kh_verified_peer_free). Failures are KH_ERR_UNAUTHENTICATED with the
 * reason, or KH_ERR_INVALID_ARGUMENT for a malformed payload. */
KH_MUST_USE int kh_binding_verify(const kh_verify_params *p, int initiator,
                                  const uint8_t static_pub[32], const uint8_t *h, size_t h_len,
                                  const uint8_t *payload, size_t len, kh_verified_peer *out,
                                  kh_error *err);

#endif /* KH_BINDING_H */

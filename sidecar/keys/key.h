/* key.h: an identity's private key behind a small backend interface.
 *
 * A kh_key is a signing key and the ops table of the backend that holds it:
 * sign, public key, free. The identity (identity.c) and everything above it
 * (the TLS engine's private-key method, S2A v2's signing, DPoP) use only the
 * functions below, so a key held elsewhere (a PKCS#11 token, later) is one
 * more backend file and a loader, with no caller changed. Backends:
 * key_file.c (PEM files: PKCS#8, SEC1, PKCS#1) and key_pkcs11.c (a key on
 * a PKCS#11 token, named by a URI in the key file).
 *
 * Signature algorithms are TLS SignatureScheme numbers (RFC 8446 4.2.3,
 * BoringSSL's SSL_SIGN_*); |in| is the whole message, hashed by the backend
 * with the scheme's hash (Ed25519 signs it as is). BoringSSL only. */
#ifndef KH_KEY_H
#define KH_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/base.h>

#include "kh_error.h"

typedef enum {
  KH_KEY_ECDSA_P256 = 1,
  KH_KEY_ECDSA_P384 = 2,
  KH_KEY_RSA = 3, /* at least 2048 bits */
  KH_KEY_ED25519 = 4,
} kh_key_type;

/* The most signature schemes a key type fits (RSA: PSS and PKCS#1, three
 * hashes each). */
#define KH_MAX_SIGALGS 6

/* KH_MAX_SIGNATURE: room for any signature of a supported key (RSA 16384). */
#define KH_MAX_SIGNATURE 2048

/* kh_key_ops: what a backend provides. |sign| is only called with a scheme
 * that fits the key's type (kh_sigalg_fits); it must fail cleanly, not
 * overrun, when |max_out| is too small, and be safe to call from several
 * threads at once. |public_key| returns a new public-only EVP_PKEY. |free|
 * releases |impl| and wipes whatever secret it held. */
typedef struct {
  const char *name; /* "file", for logs */
  int (*sign)(void *impl, uint16_t sigalg, const uint8_t *in, size_t in_len, uint8_t *out,
              size_t *out_len, size_t max_out, kh_error *err);
  /* |sign_digest| signs a digest of the scheme's hash computed elsewhere
   * (never called for Ed25519, which has no pre-hash form). NULL: the
   * backend signs whole messages only. */
  int (*sign_digest)(void *impl, uint16_t sigalg, const uint8_t *digest, size_t digest_len,
                     uint8_t *out, size_t *out_len, size_t max_out, kh_error *err);
  EVP_PKEY *(*public_key)(void *impl, kh_error *err);
  /* |rsa_decrypt| (RSA keys; NULL: the backend cannot) undoes an RSA
   * encryption: |oaep| 1, RSAES-OAEP with SHA-256 and MGF1-SHA-256; 0, the
   * raw RSA operation (the caller checks any padding in constant time). */
  int (*rsa_decrypt)(void *impl, int oaep, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t *out_len, size_t max_out, kh_error *err);
  void (*free)(void *impl);
} kh_key_ops;

typedef struct kh_key kh_key;

/* kh_key_new wraps a backend's |impl| (taken over: freed with |ops->free|
 * on failure too). For backends only. */
KH_MUST_USE kh_key *kh_key_new(const kh_key_ops *ops, void *impl, kh_key_type type, kh_error *err);
void kh_key_free(kh_key *k);

kh_key_type kh_key_get_type(const kh_key *k);
const char *kh_key_backend(const kh_key *k);

/* kh_key_type_name: "ECDSA P-256", "RSA", ... for messages. */
const char *kh_key_type_name(kh_key_type t);

/* kh_key_type_of: the type of |key| (private or public), or an error
 * naming |where| for one we do not support (RSA under 2048 bits, EC curves
 * other than P-256 and P-384, anything else). */
KH_MUST_USE int kh_key_type_of(EVP_PKEY *key, const char *where, kh_key_type *out, kh_error *err);

/* kh_private_file_ok: |fd| (opened from |path|) is a regular file that no
 * group or other may read, as every file holding a secret must be (Noise
 * keys, PINs); else an error that says how to fix it. */
KH_MUST_USE int kh_private_file_ok(int fd, const char *path, kh_error *err);

/* kh_sigalg_fits: can a key of type |t| sign with scheme |sigalg| in TLS
 * 1.3 terms (ECDSA curve and hash paired)? */
int kh_sigalg_fits(kh_key_type t, uint16_t sigalg);

/* kh_key_sigalgs writes the schemes |k| can sign with, in preference order
 * (BoringSSL's own order for a key of that type), and returns how many (at
 * most |max_out|; KH_MAX_SIGALGS is always enough). */
size_t kh_key_sigalgs(const kh_key *k, uint16_t *out, size_t max_out);

/* kh_key_sign signs |in| with scheme |sigalg| into |out| (room |max_out|),
 * setting |*out_len|. Fails (KH_ERR_INVALID_ARGUMENT) if the scheme does not
 * fit the key or |max_out| is too small. */
KH_MUST_USE int kh_key_sign(const kh_key *k, uint16_t sigalg, const uint8_t *in, size_t in_len,
                            uint8_t *out, size_t *out_len, size_t max_out, kh_error *err);

/* kh_key_sign_digest is kh_key_sign over |digest|, the scheme's hash of the
 * message. Fails (KH_ERR_INVALID_ARGUMENT) for Ed25519, for a digest whose
 * length is not the hash's, or a scheme that does not fit the key. */
KH_MUST_USE int kh_key_sign_digest(const kh_key *k, uint16_t sigalg, const uint8_t *digest,
                                   size_t digest_len, uint8_t *out, size_t *out_len, size_t max_out,
                                   kh_error *err);

/* kh_key_rsa_decrypt: see kh_key_ops.rsa_decrypt; FAILED_PRECONDITION for
 * a key that is not RSA. */
KH_MUST_USE int kh_key_rsa_decrypt(const kh_key *k, int oaep, const uint8_t *in, size_t in_len,
                                   uint8_t *out, size_t *out_len, size_t max_out, kh_error *err);

/* kh_key_public returns a new public-only EVP_PKEY (caller frees). */
KH_MUST_USE EVP_PKEY *kh_key_public(const kh_key *k, kh_error *err);

/* --- backends ------------------------------------------------------------ */

/* kh_key_file_load (key_file.c) loads the key file |path| (an identity's
 * tls.key) whose public half |cert_pub| certifies:
 *   - a PEM private key: PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA
 *     PRIVATE KEY"; ECDSA P-256/P-384, RSA >= 2048 bits, Ed25519;
 *   - or one line, a PKCS#11 URI ("pkcs11:..."), for kh_key_pkcs11_load.
 * The file's bytes pass through locked memory, wiped after parsing.
 * Messages name |path| and a parse step, never key bytes. */
KH_MUST_USE kh_key *kh_key_file_load(const char *path, EVP_PKEY *cert_pub, kh_error *err);

/* kh_key_pkcs11_load (key_pkcs11.c): the private key a PKCS#11 URI (RFC
 * 7512, NUL-terminated |uri|) names on a token, whose public half is
 * |cert_pub| (checked with a test signature). |where| starts messages. */
KH_MUST_USE kh_key *kh_key_pkcs11_load(const char *uri, const char *where, EVP_PKEY *cert_pub,
                                       kh_error *err);

#endif /* KH_KEY_H */

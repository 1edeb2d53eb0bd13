/* identity.h: the sidecar's key store. One identity per sub-directory of the
 * identities directory, in the kubernetes.io/tls layout:
 *   tls.crt  leaf first, then intermediates (PEM)
 *   tls.key  private key: PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY"
 *            (ECDSA P-256/P-384, RSA >= 2048, Ed25519)
 *   ca.crt   trust bundle used to verify peers (PEM)
 *   noise.key  static X25519 key for secure channels (noise_key.h; made on
 *            first load if missing)
 * An identity is named by its certificate: the SPIFFE ID (URI SAN spiffe://)
 * and DNS SANs. BoringSSL only (sidecar side). */
#ifndef KH_IDENTITY_H
#define KH_IDENTITY_H

#include <stddef.h>
#include <openssl/base.h>
#include <openssl/x509.h>

#include "cert_info.h"
#include "key.h"
#include "kh_error.h"
#include "kh_tls.h"

#define KH_MAX_DNS_NAMES 32
#define KH_MAX_IDENTITIES 256

/* An identity is opaque: its names, certificate chain, trust bundle and
 * fingerprint are read through the accessors below, and its private key is
 * used only through kh_identity_sign (the key itself sits behind key.h's
 * backend interface and never leaves identity.c). Identities are immutable
 * once loaded, except for the attachment slots; reference-counted, atomic. */
typedef struct kh_identity kh_identity;

/* kh_identity_load loads one identity directory (file key backend). */
KH_MUST_USE kh_identity *kh_identity_load(const char *dir, kh_error *err);
kh_identity *kh_identity_ref(kh_identity *id);
void kh_identity_unref(kh_identity *id);

/* kh_identity_name is the identity's primary name: the SPIFFE ID if present,
 * else the first DNS name, else the directory name. */
const char *kh_identity_name(const kh_identity *id);
/* The sub-directory name (what the policy and rotation call it). */
const char *kh_identity_dir_name(const kh_identity *id);
/* The URI SAN spiffe://..., or NULL. */
const char *kh_identity_spiffe_id(const kh_identity *id);
size_t kh_identity_dns_count(const kh_identity *id);
const char *kh_identity_dns_name(const kh_identity *id, size_t i); /* NULL past the end */

/* kh_identity_matches returns 1 if |id|'s certificate carries |name| as its
 * SPIFFE ID (when |name| starts with "spiffe://") or as a DNS SAN. */
int kh_identity_matches(const kh_identity *id, const char *name);

/* The certificate chain, leaf first (borrowed, lives as long as |id|). */
const STACK_OF(X509) * kh_identity_chain(const kh_identity *id);
X509 *kh_identity_leaf(const kh_identity *id);
/* The trust bundle (ca.crt) peers are verified against (borrowed). */
X509_STORE *kh_identity_trust(const kh_identity *id);
/* SHA-256 of the leaf's DER (KH_SHA256_LEN bytes, borrowed). */
const uint8_t *kh_identity_fingerprint(const kh_identity *id);
/* The leaf certificate's validity period and serial (cert_info.h). */
const kh_cert_info *kh_identity_cert_info(const kh_identity *id);

kh_key_type kh_identity_key_type(const kh_identity *id);
/* "file" or "pkcs11": where the private key is held (key.h). */
const char *kh_identity_key_backend(const kh_identity *id);

/* The identity's static X25519 key for Noise secure channels (noise_key.h;
 * borrowed, locked memory, lives as long as |id|). Only the secure-channel
 * engine reads the private half. */
struct kh_noise_static;
/* The identity's X25519 key for opening sealed boxes (seal.key beside the
 * certificate, kept like noise.key; keyhold.v1.KeyOperations). */
const struct kh_noise_static *kh_identity_seal_key(const kh_identity *id);
/* The identity's dedicated P-256 DPoP key (dpop.key, kept like noise.key),
 * or NULL when the identity's own key is P-256 and signs DPoP proofs. */
EVP_PKEY *kh_identity_dpop_key(const kh_identity *id);
const struct kh_noise_static *kh_identity_noise_key(const kh_identity *id);

/* kh_identity_sigalgs writes the TLS SignatureSchemes the identity's key can
 * sign with, in preference order, and returns how many (at most |max_out|;
 * KH_MAX_SIGALGS always suffices). */
size_t kh_identity_sigalgs(const kh_identity *id, uint16_t *out, size_t max_out);

/* kh_identity_sign signs |in| with the identity's key and scheme |sigalg|
 * (a TLS SignatureScheme that fits the key: see kh_identity_sigalgs) into
 * |out|, at most |max_out| bytes (KH_MAX_SIGNATURE always suffices), and
 * sets |*out_len|. Safe from any thread. */
KH_MUST_USE int kh_identity_sign(const kh_identity *id, uint16_t sigalg, const uint8_t *in,
                                 size_t in_len, uint8_t *out, size_t *out_len, size_t max_out,
                                 kh_error *err);

/* kh_identity_rsa_decrypt: kh_key_rsa_decrypt with the identity's key. */
KH_MUST_USE int kh_identity_rsa_decrypt(const kh_identity *id, int oaep, const uint8_t *in,
                                        size_t in_len, uint8_t *out, size_t *out_len,
                                        size_t max_out, kh_error *err);

/* kh_identity_sign_digest: kh_identity_sign over a digest of the scheme's
 * hash computed by the caller (kh_key_sign_digest's rules). */
KH_MUST_USE int kh_identity_sign_digest(const kh_identity *id, uint16_t sigalg,
                                        const uint8_t *digest, size_t digest_len, uint8_t *out,
                                        size_t *out_len, size_t max_out, kh_error *err);

/* Attachment slots: state that another layer derives from an identity and
 * that must live exactly as long as it, e.g. the TLS engine's contexts
 * (built on the identity's first handshake on a side, shared by the later
 * ones). The identity owns what is attached and frees it with the
 * destructor when its last reference goes; a rotated identity takes its
 * attachments with it, while running handshakes keep the old identity. A
 * slot rather than a table in the other layer keyed by identity: such a
 * table would need the identity to tell it when it goes anyway, and could
 * mistake a new identity at a freed one's address for the old one. */
typedef enum {
  KH_IDENTITY_SLOT_TLS_CLIENT = 0,
  KH_IDENTITY_SLOT_TLS_SERVER = 1,
  KH_IDENTITY_SLOTS = 4,
} kh_identity_slot;

/* kh_identity_attachment returns what is attached in |slot|, or calls
 * |make(id, arg, err)| to build it and attaches it with |destroy|. Builds
 * are serialised (handshakes of one identity may start on several threads
 * at once); an attached value is read without a lock. NULL (with |err| from
 * |make|) if the build fails; a later call tries again. */
KH_MUST_USE void *kh_identity_attachment(kh_identity *id, kh_identity_slot slot,
                                         void *(*make)(const kh_identity *id, void *arg,
                                                       kh_error *err),
                                         void (*destroy)(void *value), void *arg, kh_error *err);

/* kh_x509_names extracts a certificate's SPIFFE ID (first spiffe:// URI SAN,
 * malloc'd, or NULL) and up to |max_dns| DNS SANs (malloc'd). */
void kh_x509_names(X509 *leaf, char **out_spiffe, char **out_dns, size_t *out_dns_count,
                   size_t max_dns);

typedef struct kh_identity_store kh_identity_store;

/* kh_identity_store_load loads every sub-directory of |dir|. Fails if the
 * directory cannot be read, if any identity fails to load, or if none is found. */
KH_MUST_USE kh_identity_store *kh_identity_store_load(const char *dir, kh_error *err);
void kh_identity_store_free(kh_identity_store *store);
size_t kh_identity_store_count(const kh_identity_store *store);
const kh_identity *kh_identity_store_get(const kh_identity_store *store, size_t i);

/* kh_identity_store_find selects the identity named |name| (SPIFFE ID or
 * hostname). With |name| NULL or empty and exactly one identity loaded, that
 * one is returned. Failure: KH_ERR_NOT_FOUND with a message naming |name|.
 * The returned pointer is borrowed; take a reference to keep it. Not
 * safe against a concurrent reload: threads other than the one reloading
 * use kh_identity_store_find_ref. */
KH_MUST_USE kh_identity *kh_identity_store_find(const kh_identity_store *store, const char *name,
                                                kh_error *err);
/* kh_identity_store_find_ref: the same lookup, returning a new reference,
 * under the store's lock (safe from any thread while the store reloads). */
KH_MUST_USE kh_identity *kh_identity_store_find_ref(const kh_identity_store *store,
                                                    const char *name, kh_error *err);

/* kh_identity_store_find_dir_ref: a new reference to the identity in
 * sub-directory |dir_name| (the policy's name for it), or NULL. */
KH_MUST_USE kh_identity *kh_identity_store_find_dir_ref(const kh_identity_store *store,
                                                        const char *dir_name);

/* kh_identity_store_reload (re)loads sub-directory |name| of the store's
 * directory and swaps it in atomically: handshakes already running keep the
 * identity they started with, new ones get the new one. If the new files do
 * not load (half-written, key/cert mismatch, ...) the previous identity stays
 * in service and 0 is returned with |err| set. A new |name| is added. */
KH_MUST_USE int kh_identity_store_reload(kh_identity_store *store, const char *name, kh_error *err);
const char *kh_identity_store_dir(const kh_identity_store *store);

#endif /* KH_IDENTITY_H */

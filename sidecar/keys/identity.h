/* identity.h: the sidecar's key store. One identity per sub-directory of the
 * identities directory, in the kubernetes.io/tls layout:
 *   tls.crt  leaf first, then intermediates (PEM)
 *   tls.key  private key: PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY"
 *            (ECDSA P-256/P-384, RSA >= 2048, Ed25519)
 *   ca.crt   trust bundle used to verify peers (PEM)
 * An identity is named by its certificate: the SPIFFE ID (URI SAN spiffe://)
 * and DNS SANs. BoringSSL only (sidecar side). */
#ifndef KH_IDENTITY_H
#define KH_IDENTITY_H

#include <stddef.h>
#include <openssl/base.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kh_error.h"
#include "kh_tls.h"

#define KH_MAX_DNS_NAMES 32
#define KH_MAX_IDENTITIES 256

typedef struct kh_identity {
  char *dir_name;  /* sub-directory name, for logs */
  char *spiffe_id; /* URI SAN spiffe://..., or NULL */
  char *dns_names[KH_MAX_DNS_NAMES];
  size_t dns_count;
  STACK_OF(X509) * chain; /* leaf first */
  EVP_PKEY *key;          /* private key; never logged or returned */
  X509_STORE *trust;      /* from ca.crt */
  uint8_t leaf_fingerprint[KH_SHA256_LEN];
  int refs; /* kh_identity_ref / kh_identity_unref (atomic: any thread) */
  /* TLS contexts (client, server), built by the TLS engine on the
   * identity's first handshake on that side and shared by the later ones;
   * freed with the identity. */
  SSL_CTX *tls_ctx[2];
} kh_identity;

/* kh_identity_load loads one identity directory. */
kh_identity *kh_identity_load(const char *dir, kh_error *err);
kh_identity *kh_identity_ref(kh_identity *id);
void kh_identity_unref(kh_identity *id);

/* kh_identity_name is the identity's primary name: the SPIFFE ID if present,
 * else the first DNS name, else the directory name. */
const char *kh_identity_name(const kh_identity *id);

/* kh_identity_matches returns 1 if |id|'s certificate carries |name| as its
 * SPIFFE ID (when |name| starts with "spiffe://") or as a DNS SAN. */
int kh_identity_matches(const kh_identity *id, const char *name);

/* kh_x509_names extracts a certificate's SPIFFE ID (first spiffe:// URI SAN,
 * malloc'd, or NULL) and up to |max_dns| DNS SANs (malloc'd). */
int kh_x509_names(X509 *leaf, char **out_spiffe, char **out_dns, size_t *out_dns_count,
                  size_t max_dns);

typedef struct kh_identity_store kh_identity_store;

/* kh_identity_store_load loads every sub-directory of |dir|. Fails if the
 * directory cannot be read, if any identity fails to load, or if none is found. */
kh_identity_store *kh_identity_store_load(const char *dir, kh_error *err);
void kh_identity_store_free(kh_identity_store *store);
size_t kh_identity_store_count(const kh_identity_store *store);
const kh_identity *kh_identity_store_get(const kh_identity_store *store, size_t i);

/* kh_identity_store_find selects the identity named |name| (SPIFFE ID or
 * hostname). With |name| NULL or empty and exactly one identity loaded, that
 * one is returned. Failure: KH_ERR_NOT_FOUND with a message naming |name|.
 * The returned pointer is borrowed; take a reference to keep it. Not
 * safe against a concurrent reload: threads other than the one reloading
 * use kh_identity_store_find_ref. */
kh_identity *kh_identity_store_find(const kh_identity_store *store, const char *name,
                                    kh_error *err);
/* kh_identity_store_find_ref: the same lookup, returning a new reference,
 * under the store's lock (safe from any thread while the store reloads). */
kh_identity *kh_identity_store_find_ref(const kh_identity_store *store, const char *name,
                                        kh_error *err);

/* kh_identity_store_reload (re)loads sub-directory |name| of the store's
 * directory and swaps it in atomically: handshakes already running keep the
 * identity they started with, new ones get the new one. If the new files do
 * not load (half-written, key/cert mismatch, ...) the previous identity stays
 * in service and 0 is returned with |err| set. A new |name| is added. */
int kh_identity_store_reload(kh_identity_store *store, const char *name, kh_error *err);
const char *kh_identity_store_dir(const kh_identity_store *store);

#endif /* KH_IDENTITY_H */

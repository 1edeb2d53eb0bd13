/* identity.c: load kubernetes.io/tls identity directories with BoringSSL. */
#include "identity.h"

#include "noise_key.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kh_log.h"
#include "cert_info.h"
#include "kh_secret.h"

#define KH_MAX_PEM_FILE (1u << 20) /* 1 MiB: far above any real chain */

struct kh_identity {
  char *dir_name;  /* sub-directory name, for logs and the policy */
  char *spiffe_id; /* URI SAN spiffe://..., or NULL */
  char *dns_names[KH_MAX_DNS_NAMES];
  size_t dns_count;
  STACK_OF(X509) * chain; /* leaf first */
  kh_key *key;            /* behind key.h; never logged or returned */
  X509_STORE *trust;      /* from ca.crt */
  uint8_t leaf_fingerprint[KH_SHA256_LEN];
  kh_cert_info cert;      /* the leaf's validity and serial */
  kh_noise_static *noise; /* the static X25519 key for secure channels */
  kh_noise_static *seal;  /* the X25519 key sealed boxes are opened with (seal.key) */
  EVP_PKEY *dpop;         /* P-256 DPoP key (dpop.key) unless the identity key is P-256 */
  int refs;               /* kh_identity_ref / kh_identity_unref (atomic: any thread) */
  /* Attachments (kh_identity_attachment): written once under |attach_mu|,
   * read with acquire loads. */
  pthread_mutex_t attach_mu;
  void *attached[KH_IDENTITY_SLOTS];
  void (*detach[KH_IDENTITY_SLOTS])(void *value);
};

/* |mu| guards ids[] and count against kh_identity_store_reload (rotation, on
 * the event loop) while handshakes on the crypto workers look identities up
 * (kh_identity_store_find_ref). Only the event loop writes, so its own
 * unlocked reads (count, get, find) are safe. */
struct kh_identity_store {
  pthread_mutex_t mu;
  kh_identity *ids[KH_MAX_IDENTITIES];
  size_t count;
  char *dir;
};

/* read_file reads a whole file (bounded) into |*out|, locked memory of
 * KH_MAX_PEM_FILE + 1 bytes that the caller frees with kh_secret_free. */
static int read_file(const char *path, uint8_t **out, size_t *out_len, kh_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kh_err(err, KH_ERR_NOT_FOUND, "cannot open %s: %s", path, strerror(errno));
  uint8_t *buf = kh_secret_alloc(KH_MAX_PEM_FILE + 1);
  if (buf == NULL) {
    fclose(f);
    return kh_err(err, KH_ERR_NOMEM, "out of memory reading %s", path);
  }
  size_t n = fread(buf, 1, KH_MAX_PEM_FILE + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > KH_MAX_PEM_FILE) {
    kh_secret_free(buf, KH_MAX_PEM_FILE + 1);
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s", path,
                  bad ? "read error" : "file larger than 1 MiB");
  }
  *out = buf;
  *out_len = n;
  return 1;
}

static STACK_OF(X509) * load_certs(const char *path, kh_error *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  if (!read_file(path, &data, &len, err)) return NULL;
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  STACK_OF(X509) *certs = sk_X509_new_null();
  X509 *x;
  while (bio != NULL && certs != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_push(certs, x)) {
      X509_free(x);
      break;
    }
  }
  /* The loop ends with PEM_R_NO_START_LINE at EOF; anything else is an error. */
  unsigned long e = ERR_peek_last_error();
  int clean_eof = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  BIO_free(bio);
  kh_secret_free(data, KH_MAX_PEM_FILE + 1);
  if (certs == NULL || sk_X509_num(certs) == 0 || (e != 0 && !clean_eof)) {
    sk_X509_pop_free(certs, X509_free);
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: no valid PEM certificate", path);
    return NULL;
  }
  return certs;
}

static char *copy_asn1_string(const ASN1_IA5STRING *s) {
  const unsigned char *p = ASN1_STRING_get0_data(s);
  int n = ASN1_STRING_length(s);
  if (p == NULL || n <= 0 || n > 1024 || memchr(p, '\0', (size_t)n) != NULL) return NULL;
  char *out = malloc((size_t)n + 1);
  if (out == NULL) return NULL;
  memcpy(out, p, (size_t)n);
  out[n] = '\0';
  return out;
}

void kh_x509_names(X509 *leaf, char **out_spiffe, char **out_dns, size_t *out_dns_count,
                   size_t max_dns) {
  *out_spiffe = NULL;
  *out_dns_count = 0;
  GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  if (sans == NULL) return;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type == GEN_URI && *out_spiffe == NULL) {
      char *uri = copy_asn1_string(gn->d.uniformResourceIdentifier);
      if (uri != NULL && strncmp(uri, "spiffe://", 9) == 0) {
        *out_spiffe = uri;
      } else {
        free(uri);
      }
    } else if (gn->type == GEN_DNS && *out_dns_count < max_dns) {
      char *dns = copy_asn1_string(gn->d.dNSName);
      if (dns != NULL) out_dns[(*out_dns_count)++] = dns;
    }
  }
  GENERAL_NAMES_free(sans);
}

static int fingerprint(X509 *x, uint8_t out[KH_SHA256_LEN]) {
  unsigned len = 0;
  return X509_digest(x, EVP_sha256(), out, &len) && len == KH_SHA256_LEN;
}

static X509_STORE *load_trust(const char *path, kh_error *err) {
  STACK_OF(X509) *cas = load_certs(path, err);
  if (cas == NULL) return NULL;
  X509_STORE *store = X509_STORE_new();
  for (size_t i = 0; store != NULL && i < sk_X509_num(cas); i++) {
    if (!X509_STORE_add_cert(store, sk_X509_value(cas, i))) {
      X509_STORE_free(store);
      store = NULL;
    }
  }
  sk_X509_pop_free(cas, X509_free);
  if (store == NULL) kh_err(err, KH_ERR_INTERNAL, "%s: cannot build trust store", path);
  return store;
}

/* key_matches: is |key|'s public half the one |leaf| certifies? */
static int key_matches(X509 *leaf, const kh_key *key) {
  kh_error ignored;
  EVP_PKEY *pub = kh_key_public(key, &ignored);
  EVP_PKEY *cert_pub = X509_get_pubkey(leaf);
  int ok = pub != NULL && cert_pub != NULL && EVP_PKEY_cmp(pub, cert_pub) == 1;
  EVP_PKEY_free(pub);
  EVP_PKEY_free(cert_pub);
  ERR_clear_error();
  return ok;
}

static void identity_destroy(kh_identity *id) {
  free(id->dir_name);
  free(id->spiffe_id);
  for (size_t i = 0; i < id->dns_count; i++) free(id->dns_names[i]);
  sk_X509_pop_free(id->chain, X509_free);
  kh_key_free(id->key);
  X509_STORE_free(id->trust);
  kh_noise_static_free(id->noise);
  kh_noise_static_free(id->seal);
  EVP_PKEY_free(id->dpop);
  for (size_t i = 0; i < KH_IDENTITY_SLOTS; i++) {
    if (id->attached[i] != NULL) id->detach[i](id->attached[i]);
  }
  pthread_mutex_destroy(&id->attach_mu);
  kh_wipe(id, sizeof(*id));
  free(id);
}

kh_identity *kh_identity_load(const char *dir, kh_error *err) {
  char path[4096];
  kh_identity *id = calloc(1, sizeof(*id));
  if (id == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  id->refs = 1;
  pthread_mutex_init(&id->attach_mu, NULL);
  const char *base = strrchr(dir, '/');
  id->dir_name = strdup(base && base[1] ? base + 1 : dir);
  snprintf(path, sizeof(path), "%s/tls.crt", dir);
  if ((id->chain = load_certs(path, err)) == NULL) goto fail;
  X509 *leaf = sk_X509_value(id->chain, 0);
  EVP_PKEY *cert_pub = X509_get_pubkey(leaf);
  snprintf(path, sizeof(path), "%s/tls.key", dir);
  id->key = cert_pub != NULL ? kh_key_file_load(path, cert_pub, err) : NULL;
  if (cert_pub == NULL) kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: tls.crt: unreadable key", dir);
  EVP_PKEY_free(cert_pub);
  ERR_clear_error();
  if (id->key == NULL) goto fail;
  snprintf(path, sizeof(path), "%s/ca.crt", dir);
  if ((id->trust = load_trust(path, err)) == NULL) goto fail;
  if (!key_matches(leaf, id->key)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: tls.key does not match the tls.crt leaf", dir);
    goto fail;
  }
  kh_x509_names(leaf, &id->spiffe_id, id->dns_names, &id->dns_count, KH_MAX_DNS_NAMES);
  if (id->spiffe_id == NULL && id->dns_count == 0) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "%s: leaf certificate has neither a spiffe:// URI SAN nor a DNS SAN", dir);
    goto fail;
  }
  if (!kh_cert_info_get(leaf, &id->cert)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: tls.crt: unreadable validity dates", dir);
    goto fail;
  }
  if (!fingerprint(leaf, id->leaf_fingerprint)) {
    kh_err(err, KH_ERR_INTERNAL, "%s: cannot hash leaf certificate", dir);
    goto fail;
  }
  if ((id->noise = kh_noise_static_load(dir, err)) == NULL ||
      (id->seal = kh_x25519_file_load(dir, KH_SEAL_KEY_FILE, "sealing", err)) == NULL)
    goto fail;
  if (kh_key_get_type(id->key) != KH_KEY_ECDSA_P256 &&
      (id->dpop =
           kh_private_key_file_load(dir, KH_DPOP_KEY_FILE, "dpop", EVP_PKEY_EC, NULL, err)) == NULL)
    goto fail;
  return id;
fail:
  identity_destroy(id);
  return NULL;
}

kh_identity *kh_identity_ref(kh_identity *id) {
  if (id != NULL) __atomic_add_fetch(&id->refs, 1, __ATOMIC_RELAXED);
  return id;
}

void kh_identity_unref(kh_identity *id) {
  if (id != NULL && __atomic_sub_fetch(&id->refs, 1, __ATOMIC_ACQ_REL) == 0) identity_destroy(id);
}

const char *kh_identity_name(const kh_identity *id) {
  if (id->spiffe_id != NULL) return id->spiffe_id;
  if (id->dns_count > 0) return id->dns_names[0];
  return id->dir_name;
}

int kh_identity_matches(const kh_identity *id, const char *name) {
  if (name == NULL || name[0] == '\0') return 0;
  if (strncmp(name, "spiffe://", 9) == 0) return id->spiffe_id && strcmp(id->spiffe_id, name) == 0;
  for (size_t i = 0; i < id->dns_count; i++) {
    if (strcasecmp(id->dns_names[i], name) == 0) return 1;
  }
  return 0;
}

const char *kh_identity_dir_name(const kh_identity *id) {
  return id->dir_name;
}

const char *kh_identity_spiffe_id(const kh_identity *id) {
  return id->spiffe_id;
}

size_t kh_identity_dns_count(const kh_identity *id) {
  return id->dns_count;
}

const char *kh_identity_dns_name(const kh_identity *id, size_t i) {
  return i < id->dns_count ? id->dns_names[i] : NULL;
}

const STACK_OF(X509) * kh_identity_chain(const kh_identity *id) {
  return id->chain;
}

X509 *kh_identity_leaf(const kh_identity *id) {
  return sk_X509_value(id->chain, 0);
}

X509_STORE *kh_identity_trust(const kh_identity *id) {
  return id->trust;
}

const kh_cert_info *kh_identity_cert_info(const kh_identity *id) {
  return &id->cert;
}

const uint8_t *kh_identity_fingerprint(const kh_identity *id) {
  return id->leaf_fingerprint;
}

kh_key_type kh_identity_key_type(const kh_identity *id) {
  return kh_key_get_type(id->key);
}

const char *kh_identity_key_backend(const kh_identity *id) {
  return kh_key_backend(id->key);
}

EVP_PKEY *kh_identity_dpop_key(const kh_identity *id) {
  return id->dpop;
}

const struct kh_noise_static *kh_identity_seal_key(const kh_identity *id) {
  return id->seal;
}

const struct kh_noise_static *kh_identity_noise_key(const kh_identity *id) {
  return id->noise;
}

size_t kh_identity_sigalgs(const kh_identity *id, uint16_t *out, size_t max_out) {
  return kh_key_sigalgs(id->key, out, max_out);
}

int kh_identity_sign(const kh_identity *id, uint16_t sigalg, const uint8_t *in, size_t in_len,
                     uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  return kh_key_sign(id->key, sigalg, in, in_len, out, out_len, max_out, err);
}

int kh_identity_rsa_decrypt(const kh_identity *id, int oaep, const uint8_t *in, size_t in_len,
                            uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  return kh_key_rsa_decrypt(id->key, oaep, in, in_len, out, out_len, max_out, err);
}

int kh_identity_sign_digest(const kh_identity *id, uint16_t sigalg, const uint8_t *digest,
                            size_t digest_len, uint8_t *out, size_t *out_len, size_t max_out,
                            kh_error *err) {
  return kh_key_sign_digest(id->key, sigalg, digest, digest_len, out, out_len, max_out, err);
}

void *kh_identity_attachment(kh_identity *id, kh_identity_slot slot,
                             void *(*make)(const kh_identity *id, void *arg, kh_error *err),
                             void (*destroy)(void *value), void *arg, kh_error *err) {
  if ((unsigned)slot >= KH_IDENTITY_SLOTS) {
    kh_err(err, KH_ERR_INTERNAL, "no attachment slot %d", (int)slot);
    return NULL;
  }
  void *v = __atomic_load_n(&id->attached[slot], __ATOMIC_ACQUIRE);
  if (v != NULL) return v;
  pthread_mutex_lock(&id->attach_mu);
  if ((v = id->attached[slot]) == NULL && (v = make(id, arg, err)) != NULL) {
    id->detach[slot] = destroy;
    __atomic_store_n(&id->attached[slot], v, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&id->attach_mu);
  return v;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kh_identity_store *kh_identity_store_load(const char *dir, kh_error *err) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    kh_err(err, KH_ERR_NOT_FOUND, "cannot open identities directory %s: %s", dir, strerror(errno));
    return NULL;
  }
  char *names[KH_MAX_IDENTITIES];
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && n < KH_MAX_IDENTITIES) {
    if (de->d_name[0] == '.') continue; /* ".", "..", "..data" and other hidden entries */
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof(names[0]), cmp_names); /* deterministic order */

  kh_identity_store *store = calloc(1, sizeof(*store));
  if (store != NULL) pthread_mutex_init(&store->mu, NULL);
  int ok = store != NULL && (store->dir = strdup(dir)) != NULL;
  for (size_t i = 0; i < n; i++) {
    if (ok) {
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
      kh_identity *id = kh_identity_load(path, err);
      if (id == NULL) {
        ok = 0;
      } else {
        store->ids[store->count++] = id;
        kh_log(KH_LOG_INFO, "identity loaded dir=%s name=%s serial=%s not_after=%s", names[i],
               kh_identity_name(id), id->cert.serial, id->cert.not_after_text);
      }
    }
    free(names[i]);
  }
  if (ok && store->count == 0) {
    ok = kh_err(err, KH_ERR_NOT_FOUND, "no identity sub-directories in %s", dir);
  }
  if (!ok) {
    kh_identity_store_free(store);
    return NULL;
  }
  return store;
}

void kh_identity_store_free(kh_identity_store *store) {
  if (store == NULL) return;
  for (size_t i = 0; i < store->count; i++) kh_identity_unref(store->ids[i]);
  free(store->dir);
  pthread_mutex_destroy(&store->mu);
  free(store);
}

size_t kh_identity_store_count(const kh_identity_store *store) {
  return store->count;
}

const kh_identity *kh_identity_store_get(const kh_identity_store *store, size_t i) {
  return i < store->count ? store->ids[i] : NULL;
}

kh_identity *kh_identity_store_find(const kh_identity_store *store, const char *name,
                                    kh_error *err) {
  if (name == NULL || name[0] == '\0') {
    if (store->count == 1) return store->ids[0];
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "no local identity given and %zu identities are loaded: name one", store->count);
    return NULL;
  }
  for (size_t i = 0; i < store->count; i++) {
    if (kh_identity_matches(store->ids[i], name)) return store->ids[i];
  }
  kh_err(err, KH_ERR_NOT_FOUND, "unknown local identity '%.200s'", name);
  return NULL;
}

kh_identity *kh_identity_store_find_ref(const kh_identity_store *store, const char *name,
                                        kh_error *err) {
  pthread_mutex_t *mu = (pthread_mutex_t *)&store->mu; /* the lock is not the store's value */
  pthread_mutex_lock(mu);
  kh_identity *id = kh_identity_ref(kh_identity_store_find(store, name, err));
  pthread_mutex_unlock(mu);
  return id;
}

/* dir_index: where sub-directory |name| is in the store, or store->count. */
static size_t dir_index(const kh_identity_store *store, const char *name) {
  size_t i = 0;
  while (i < store->count && strcmp(store->ids[i]->dir_name, name) != 0) i++;
  return i;
}

kh_identity *kh_identity_store_find_dir_ref(const kh_identity_store *store, const char *dir_name) {
  pthread_mutex_t *mu = (pthread_mutex_t *)&store->mu;
  pthread_mutex_lock(mu);
  size_t i = dir_index(store, dir_name);
  kh_identity *id = i < store->count ? kh_identity_ref(store->ids[i]) : NULL;
  pthread_mutex_unlock(mu);
  return id;
}

const char *kh_identity_store_dir(const kh_identity_store *store) {
  return store->dir;
}

int kh_identity_store_reload(kh_identity_store *store, const char *name, kh_error *err) {
  if (name[0] == '.' || strchr(name, '/') != NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "invalid identity name '%.100s'", name);
  size_t i = dir_index(store, name);
  if (i == store->count && i == KH_MAX_IDENTITIES)
    return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "more than %d identities", KH_MAX_IDENTITIES);
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", store->dir, name);
  kh_identity *id = kh_identity_load(path, err);
  if (id == NULL) return 0;
  kh_identity *old = NULL;
  int same = 0, added = i == store->count;
  pthread_mutex_lock(&store->mu);
  if (!added) {
    old = store->ids[i];
    same = memcmp(id->leaf_fingerprint, old->leaf_fingerprint, KH_SHA256_LEN) == 0;
    store->ids[i] = id;
  } else {
    store->ids[store->count++] = id;
  }
  pthread_mutex_unlock(&store->mu);
  kh_identity_unref(old); /* in-flight handshakes keep their reference */
  kh_log(KH_LOG_INFO, "identity %s dir=%s name=%s serial=%s not_after=%s",
         added  ? "added"
         : same ? "reloaded (same certificate)"
                : "rotated",
         name, kh_identity_name(id), id->cert.serial, id->cert.not_after_text);
  return 1;
}

/* noise_key.c: see noise_key.h. One loader for every private key file kept
 * beside an identity's certificate (noise.key, seal.key, dpop.key): PKCS#8
 * PEM, refused if group- or world-readable, created 0600 when missing. */
#include "noise_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/curve25519.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>

#include "key.h"
#include "kh_log.h"
#include "kh_secret.h"

#define KH_MAX_KEY_FILE 4096

static const char *type_name(int type) {
  return type == EVP_PKEY_X25519 ? "X25519" : "EC P-256";
}

/* read_existing parses |fd| (at |path|) as a PKCS#8 private key of |type|. */
static EVP_PKEY *read_existing(const char *path, int fd, int type, kh_error *err) {
  if (!kh_private_file_ok(fd, path, err)) return NULL;
  uint8_t *buf = kh_secret_alloc(KH_MAX_KEY_FILE + 1);
  if (buf == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  ssize_t n = read(fd, buf, KH_MAX_KEY_FILE + 1);
  EVP_PKEY *key = NULL;
  if (n > 0 && n <= KH_MAX_KEY_FILE) {
    BIO *bio = BIO_new_mem_buf(buf, (int)n);
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    int ok = key != NULL && EVP_PKEY_id(key) == type &&
             (type != EVP_PKEY_EC || EC_GROUP_get_curve_name(EC_KEY_get0_group(
                                         EVP_PKEY_get0_EC_KEY(key))) == NID_X9_62_prime256v1);
    if (!ok) {
      EVP_PKEY_free(key);
      key = NULL;
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a PKCS#8 %s private key", path,
             type_name(type));
    }
  } else {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s", path,
           n < 0 ? strerror(errno) : "empty or larger than 4 KiB");
  }
  kh_secret_free(buf, KH_MAX_KEY_FILE + 1);
  return key;
}

/* write_new writes |key| to a new |path| (O_EXCL, 0600) as PKCS#8 PEM. 0 if
 * the file cannot be created; a half-written file is removed. */
static int write_new(const char *path, EVP_PKEY *key) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return 0;
  BIO *bio = BIO_new(BIO_s_mem());
  const uint8_t *pem = NULL;
  size_t len = 0;
  int ok = bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) &&
           BIO_mem_contents(bio, &pem, &len) && write(fd, pem, len) == (ssize_t)len &&
           fsync(fd) == 0;
  if (pem != NULL) kh_wipe((void *)pem, len);
  BIO_free(bio);
  if (close(fd) != 0) ok = 0;
  if (!ok) unlink(path);
  return ok;
}

static EVP_PKEY *generate(int type) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(type, NULL);
  EVP_PKEY *key = NULL;
  if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
      (type == EVP_PKEY_EC &&
       EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) != 1) ||
      EVP_PKEY_keygen(ctx, &key) != 1)
    key = NULL;
  EVP_PKEY_CTX_free(ctx);
  return key;
}

EVP_PKEY *kh_private_key_file_load(const char *dir, const char *file, const char *what, int type,
                                   int *persistent, kh_error *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    EVP_PKEY *key = read_existing(path, fd, type, err);
    close(fd);
    if (key != NULL && persistent != NULL) *persistent = 1;
    return key;
  }
  if (errno != ENOENT) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  EVP_PKEY *key = generate(type);
  if (key == NULL) {
    kh_err(err, KH_ERR_INTERNAL, "cannot generate a %s key", type_name(type));
    return NULL;
  }
  int kept = write_new(path, key);
  if (persistent != NULL) *persistent = kept;
  if (kept)
    kh_log(KH_LOG_INFO, "%s key created path=%s", what, path);
  else
    kh_log(KH_LOG_WARN,
           "%s key in memory only path=%s reason=\"cannot write it: %s\" (a new key at each "
           "restart: put a %s in the identity directory to keep one)",
           what, path, strerror(errno), file);
  return key;
}

kh_noise_static *kh_noise_static_load(const char *dir, kh_error *err) {
  return kh_x25519_file_load(dir, KH_NOISE_KEY_FILE, "noise", err);
}

kh_noise_static *kh_x25519_file_load(const char *dir, const char *file, const char *what,
                                     kh_error *err) {
  kh_noise_static *k = kh_secret_alloc(sizeof(*k));
  if (k == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  EVP_PKEY *key = kh_private_key_file_load(dir, file, what, EVP_PKEY_X25519, &k->persistent, err);
  size_t n = sizeof(k->priv);
  if (key == NULL || !EVP_PKEY_get_raw_private_key(key, k->priv, &n) || n != sizeof(k->priv)) {
    if (key != NULL) kh_err(err, KH_ERR_INTERNAL, "cannot read the %s key", what);
    EVP_PKEY_free(key);
    kh_noise_static_free(k);
    return NULL;
  }
  EVP_PKEY_free(key);
  X25519_public_from_private(k->pub, k->priv);
  return k;
}

void kh_noise_static_free(kh_noise_static *k) {
  if (k != NULL) kh_secret_free(k, sizeof(*k));
}

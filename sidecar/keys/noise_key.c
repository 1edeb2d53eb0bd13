/* noise_key.c: see noise_key.h. */
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
#include <openssl/pem.h>

#include "kh_log.h"
#include "kh_secret.h"

#define KH_MAX_NOISE_KEY_FILE 4096

/* from_pem parses a PKCS#8 X25519 private key into |k|. */
static int from_pem(const char *path, const uint8_t *pem, size_t len, kh_noise_static *k,
                    kh_error *err) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  size_t n = sizeof(k->priv);
  int ok = key != NULL && EVP_PKEY_id(key) == EVP_PKEY_X25519 &&
           EVP_PKEY_get_raw_private_key(key, k->priv, &n) && n == sizeof(k->priv);
  EVP_PKEY_free(key);
  if (!ok) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a PKCS#8 X25519 private key", path);
  X25519_public_from_private(k->pub, k->priv);
  return 1;
}

static int read_existing(const char *path, int fd, kh_noise_static *k, kh_error *err) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a regular file", path);
  if ((st.st_mode & 077) != 0)
    return kh_err(err, KH_ERR_PERMISSION_DENIED,
                  "%s: readable by group or others (mode %03o); chmod 600 it", path,
                  (unsigned)(st.st_mode & 0777));
  uint8_t *buf = kh_secret_alloc(KH_MAX_NOISE_KEY_FILE + 1);
  if (buf == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  ssize_t n = read(fd, buf, KH_MAX_NOISE_KEY_FILE + 1);
  int ok = n > 0 && n <= KH_MAX_NOISE_KEY_FILE
               ? from_pem(path, buf, (size_t)n, k, err)
               : kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s", path,
                        n < 0 ? strerror(errno) : "empty or larger than 4 KiB");
  kh_secret_free(buf, KH_MAX_NOISE_KEY_FILE + 1);
  return ok;
}

/* write_new writes |k| to a new |path| (O_EXCL, 0600) as PKCS#8 PEM. 0 if
 * the file cannot be created; a half-written file is removed. */
static int write_new(const char *path, const kh_noise_static *k) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return 0;
  EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, k->priv, sizeof(k->priv));
  BIO *bio = BIO_new(BIO_s_mem());
  const uint8_t *pem = NULL;
  size_t len = 0;
  int ok =
      key != NULL && bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) &&
      BIO_mem_contents(bio, &pem, &len) && write(fd, pem, len) == (ssize_t)len && fsync(fd) == 0;
  if (pem != NULL) kh_wipe((void *)pem, len);
  BIO_free(bio);
  EVP_PKEY_free(key);
  if (close(fd) != 0) ok = 0;
  if (!ok) unlink(path);
  return ok;
}

kh_noise_static *kh_noise_static_load(const char *dir, kh_error *err) {
  return kh_x25519_file_load(dir, KH_NOISE_KEY_FILE, "noise", err);
}

kh_noise_static *kh_x25519_file_load(const char *dir, const char *file, const char *what,
                                     kh_error *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  kh_noise_static *k = kh_secret_alloc(sizeof(*k));
  if (k == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    int ok = read_existing(path, fd, k, err);
    close(fd);
    if (!ok) {
      kh_noise_static_free(k);
      return NULL;
    }
    k->persistent = 1;
    return k;
  }
  if (errno != ENOENT) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
    kh_noise_static_free(k);
    return NULL;
  }
  X25519_keypair(k->pub, k->priv);
  k->persistent = write_new(path, k);
  if (k->persistent)
    kh_log(KH_LOG_INFO, "%s key created path=%s", what, path);
  else
    kh_log(KH_LOG_WARN,
           "%s key in memory only path=%s reason=\"cannot write it: %s\" (a new key at each "
           "restart: put a %s in the identity directory to keep one)",
           what, path, strerror(errno), file);
  return k;
}

void kh_noise_static_free(kh_noise_static *k) {
  if (k != NULL) kh_secret_free(k, sizeof(*k));
}

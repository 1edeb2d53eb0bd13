/* key_file.c: the file backend of key.h. The key is parsed from its PEM
 * file (read into locked memory, wiped after) into a BoringSSL EVP_PKEY,
 * which clears its key material when freed. */
#include "key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>

#include "kh_secret.h"

#define KH_MAX_KEY_FILE (1u << 20) /* 1 MiB, as for the certificate files */

/* file_sign_digest: a scheme with a hash, over the digest of the message
 * (S2A v2 clients hash the handshake transcript themselves; file_sign
 * hashes first and comes here too). */
static int file_sign_digest(void *impl, uint16_t sigalg, const uint8_t *digest, size_t digest_len,
                            uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(impl, NULL);
  size_t len = 0;
  int ok = pctx != NULL && EVP_PKEY_sign_init(pctx) &&
           EVP_PKEY_CTX_set_signature_md(pctx, SSL_get_signature_algorithm_digest(sigalg));
  if (ok && SSL_is_signature_algorithm_rsa_pss(sigalg))
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1 /* salt as long as the hash */);
  else if (ok && EVP_PKEY_id(impl) == EVP_PKEY_RSA)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING);
  ok = ok && EVP_PKEY_sign(pctx, NULL, &len, digest, digest_len); /* the largest size */
  if (ok && len > max_out) {
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature needs up to %zu bytes, room for %zu",
                  len, max_out);
  }
  len = max_out;
  ok = ok && EVP_PKEY_sign(pctx, out, &len, digest, digest_len);
  EVP_PKEY_CTX_free(pctx);
  ERR_clear_error();
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "signing with scheme 0x%04x failed", sigalg);
  *out_len = len;
  return 1;
}

/* file_sign: the whole message. Schemes with a hash sign its digest;
 * Ed25519 has no pre-hash form and signs the message itself. */
static int file_sign(void *impl, uint16_t sigalg, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t *out_len, size_t max_out, kh_error *err) {
  const EVP_MD *md = SSL_get_signature_algorithm_digest(sigalg);
  if (md != NULL) {
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (!EVP_Digest(in, in_len, digest, &n, md, NULL))
      return kh_err(err, KH_ERR_INTERNAL, "hashing for scheme 0x%04x failed", sigalg);
    return file_sign_digest(impl, sigalg, digest, n, out, out_len, max_out, err);
  }
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  size_t len = 0;
  int ok = EVP_DigestSignInit(&ctx, NULL, NULL, NULL, impl) &&
           EVP_DigestSign(&ctx, NULL, &len, in, in_len); /* the size */
  if (ok && len > max_out) {
    EVP_MD_CTX_cleanup(&ctx);
    ERR_clear_error();
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature needs up to %zu bytes, room for %zu",
                  len, max_out);
  }
  ok = ok && EVP_DigestSign(&ctx, out, &len, in, in_len);
  EVP_MD_CTX_cleanup(&ctx);
  ERR_clear_error();
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "signing with scheme 0x%04x failed", sigalg);
  *out_len = len;
  return 1;
}

/* file_public: a public-only copy, through its SubjectPublicKeyInfo. */
static EVP_PKEY *file_public(void *impl, kh_error *err) {
  CBB cbb;
  uint8_t *der = NULL;
  size_t der_len = 0;
  EVP_PKEY *pub = NULL;
  if (CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, impl) &&
      CBB_finish(&cbb, &der, &der_len)) {
    CBS cbs;
    CBS_init(&cbs, der, der_len);
    pub = EVP_parse_public_key(&cbs);
  } else {
    CBB_cleanup(&cbb);
  }
  OPENSSL_free(der);
  ERR_clear_error();
  if (pub == NULL) kh_err(err, KH_ERR_INTERNAL, "cannot extract the public key");
  return pub;
}

static int file_rsa_decrypt(void *impl, int oaep, const uint8_t *in, size_t in_len, uint8_t *out,
                            size_t *out_len, size_t max_out, kh_error *err) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(impl, NULL);
  *out_len = max_out;
  int ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, oaep ? RSA_PKCS1_OAEP_PADDING : RSA_NO_PADDING) &&
           (!oaep || (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) &&
                      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()))) &&
           EVP_PKEY_decrypt(ctx, out, out_len, in, in_len);
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  if (!ok) *out_len = 0;
  /* One answer for every failure: no padding oracle from the message. */
  return ok || kh_err(err, KH_ERR_INVALID_ARGUMENT, "the wrapped key does not decrypt");
}

static void file_free(void *impl) {
  EVP_PKEY_free(impl); /* BoringSSL clears key material on free */
}

static const kh_key_ops k_file_ops = {.name = "file",
                                      .sign = file_sign,
                                      .sign_digest = file_sign_digest,
                                      .public_key = file_public,
                                      .rsa_decrypt = file_rsa_decrypt,
                                      .free = file_free};

int kh_private_file_ok(int fd, const char *path, kh_error *err) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a regular file", path);
  if ((st.st_mode & 077) != 0)
    return kh_err(err, KH_ERR_PERMISSION_DENIED,
                  "%s: readable by group or others (mode %03o); chmod 600 it", path,
                  (unsigned)(st.st_mode & 0777));
  return 1;
}

/* read_key_file reads the whole (bounded) file into locked memory of
 * KH_MAX_KEY_FILE + 1 bytes; the caller frees it with kh_secret_free. */
static int read_key_file(const char *path, uint8_t **out, size_t *out_len, kh_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return kh_err(err, KH_ERR_NOT_FOUND, "cannot open %s: %s", path, strerror(errno));
  uint8_t *buf = kh_secret_alloc(KH_MAX_KEY_FILE + 1);
  if (buf == NULL) {
    fclose(f);
    return kh_err(err, KH_ERR_NOMEM, "out of memory reading %s", path);
  }
  size_t n = fread(buf, 1, KH_MAX_KEY_FILE + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > KH_MAX_KEY_FILE) {
    kh_secret_free(buf, KH_MAX_KEY_FILE + 1);
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s", path,
                  bad ? "read error" : "file larger than 1 MiB");
  }
  *out = buf;
  *out_len = n;
  return 1;
}

/* pkcs11_uri: is the file one line naming a PKCS#11 URI? Then load that
 * (the URI, NUL-terminated in place, may carry a PIN path, never a PIN). */
static int pkcs11_uri(uint8_t *data, size_t len) {
  if (len < 7 || memcmp(data, "pkcs11:", 7) != 0) return 0;
  while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) len--;
  data[len] = '\0'; /* room: the buffer has KH_MAX_KEY_FILE + 1 bytes */
  return 1;
}

/* PEM_read_bio_PrivateKey accepts PKCS#8, SEC1 and PKCS#1 PEM blocks. */
kh_key *kh_key_file_load(const char *path, EVP_PKEY *cert_pub, kh_error *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  if (!read_key_file(path, &data, &len, err)) return NULL;
  if (pkcs11_uri(data, len)) {
    kh_key *k = NULL;
    if (strchr((char *)data, '\n') != NULL)
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: a PKCS#11 URI is one line", path);
    else
      k = kh_key_pkcs11_load((const char *)data, path, cert_pub, err);
    kh_secret_free(data, KH_MAX_KEY_FILE + 1);
    return k;
  }
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  kh_secret_free(data, KH_MAX_KEY_FILE + 1);
  if (key == NULL) {
    char why[160];
    unsigned long e = ERR_get_error();
    if (e == 0) {
      snprintf(why, sizeof(why), "no PEM data");
    } else {
      ERR_error_string_n(e, why, sizeof(why));
    }
    ERR_clear_error();
    /* The reason names a parse step, never key bytes. */
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a PEM private key (%s)", path, why);
    return NULL;
  }
  kh_key_type type = KH_KEY_ECDSA_P256;
  if (!kh_key_type_of(key, path, &type, err)) {
    EVP_PKEY_free(key);
    return NULL;
  }
  return kh_key_new(&k_file_ops, key, type, err);
}

/* pki.c: development PKI for `keyhold init` (OpenSSL 3 libcrypto). */
#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DAYS 30

static EVP_PKEY *new_p256(void) {
  return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  int ok = ext != NULL && X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

/* make_cert signs a certificate for |key| with |ca_key| (self-signed when
 * |ca| is NULL). |san| is NULL for the CA. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, const char *san) {
  X509 *x = X509_new();
  if (x == NULL) return NULL;
  unsigned char serial[16];
  FILE *r = fopen("/dev/urandom", "rb");
  int ok = r != NULL && fread(serial, 1, sizeof(serial), r) == sizeof(serial);
  if (r) fclose(r);
  serial[0] &= 0x7f;
  BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
  ok = ok && bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
  BN_free(bn);
  X509_NAME *name = X509_NAME_new();
  ok =
      ok && X509_set_version(x, 2) &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) &&
      X509_set_subject_name(x, name) &&
      X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name) &&
      X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
      X509_gmtime_adj(X509_getm_notAfter(x), 60L * 60 * 24 * DAYS) && X509_set_pubkey(x, key);
  X509_NAME_free(name);
  X509 *issuer = ca ? ca : x;
  if (san == NULL) {
    ok = ok && add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") &&
         add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         add_ext(x, issuer, NID_subject_key_identifier, "hash");
  } else {
    ok = ok && add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") &&
         add_ext(x, issuer, NID_subject_alt_name, san) &&
         add_ext(x, issuer, NID_authority_key_identifier, "keyid");
  }
  ok = ok && X509_sign(x, ca_key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static int write_pem(const char *path, int mode, X509 *cert, EVP_PKEY *key) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return 0;
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    return 0;
  }
  int ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok;
}

static int write_identity(const char *dir, const char *name, const char *san, X509 *ca,
                          EVP_PKEY *ca_key, char *msg, size_t msg_len) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  if (mkdir(path, 0750) != 0) {
    snprintf(msg, msg_len, "cannot create %s: %s", path, strerror(errno));
    return 0;
  }
  EVP_PKEY *key = new_p256();
  X509 *cert = key ? make_cert(key, name, ca, ca_key, san) : NULL;
  char crt[4200], keyp[4200], cap[4200];
  snprintf(crt, sizeof(crt), "%s/tls.crt", path);
  snprintf(keyp, sizeof(keyp), "%s/tls.key", path);
  snprintf(cap, sizeof(cap), "%s/ca.crt", path);
  int ok = cert && write_pem(keyp, 0600, NULL, key) && write_pem(crt, 0644, cert, NULL) &&
           write_pem(cap, 0644, ca, NULL);
  if (!ok) snprintf(msg, msg_len, "cannot write identity %s", path);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

int kh_pki_init(const char *dir, char *msg, size_t msg_len) {
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    snprintf(msg, msg_len, "cannot create %s: %s", dir, strerror(errno));
    return 0;
  }
  char path[4096];
  struct stat st;
  static const char *names[] = {"client", "server"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (stat(path, &st) == 0) {
      snprintf(msg, msg_len, "%s already exists; not overwriting", path);
      return 0;
    }
  }
  EVP_PKEY *ca_key = new_p256();
  X509 *ca = ca_key ? make_cert(ca_key, "Keyhold Development CA", NULL, ca_key, NULL) : NULL;
  char crt[4200], key[4200];
  snprintf(crt, sizeof(crt), "%s/ca.crt", dir);
  snprintf(key, sizeof(key), "%s/ca.key", dir);
  int ok = ca && write_pem(key, 0600, NULL, ca_key) && write_pem(crt, 0644, ca, NULL);
  if (!ok) snprintf(msg, msg_len, "cannot create the development CA in %s", dir);
  ok = ok &&
       write_identity(dir, "client", "URI:spiffe://example.org/client", ca, ca_key, msg, msg_len) &&
       write_identity(dir, "server", "URI:spiffe://example.org/server,DNS:localhost,IP:127.0.0.1",
                      ca, ca_key, msg, msg_len);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return ok;
}

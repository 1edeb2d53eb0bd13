/* record_bench: libkeyhold's record layer (seal + open) against OpenSSL's
 * own TLS 1.3 (SSL_write + SSL_read over memory BIOs) with the same suite,
 * in the same run. Prints throughput of both and the ratio ours/baseline:
 *   RESULT record_<suite>_<size> ours=<MB/s> baseline=<MB/s> unit=MB/s ratio=<r>
 *     target=<t> cmp=ge
 * Targets on the ratio (docs/PERFORMANCE.md, issue 15): >= 1.25 at 16 KiB,
 * >= 1.0 at 1 KiB and 64 B.
 * Usage: record_bench [SECONDS_PER_CASE]  (default 1.0) */
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "record_bench: %s\n", what);
  exit(1);
}

/* A self-signed certificate for the baseline's in-memory handshake. */
static void self_signed(EVP_PKEY **out_key, X509 **out_cert) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  if (!key || !x) die("keygen");
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             (const unsigned char *)"bench", -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  if (!X509_sign(x, key, EVP_sha256())) die("sign");
  *out_key = key;
  *out_cert = x;
}

/* move pumps bytes between the two memory BIO pairs. */
static void move(BIO *from, BIO *to) {
  char buf[65536];
  int n;
  while ((n = BIO_read(from, buf, sizeof(buf))) > 0) BIO_write(to, buf, n);
}

static double baseline(const char *suite, size_t size, double secs) {
  EVP_PKEY *key;
  X509 *cert;
  self_signed(&key, &cert);
  SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
  SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(sctx, suite);
  SSL_CTX_set_ciphersuites(cctx, suite);
  SSL_CTX_use_certificate(sctx, cert);
  SSL_CTX_use_PrivateKey(sctx, key);
  SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
  BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
  BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
  SSL_set_bio(s, s_in, s_out);
  SSL_set_bio(c, c_in, c_out);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  for (int i = 0; i < 10 && (!SSL_is_init_finished(s) || !SSL_is_init_finished(c)); i++) {
    SSL_do_handshake(c);
    move(c_out, s_in);
    SSL_do_handshake(s);
    move(s_out, c_in);
  }
  if (!SSL_is_init_finished(s) || !SSL_is_init_finished(c)) die("baseline handshake");
  unsigned char *buf = malloc(size), *rbuf = malloc(size);
  memset(buf, 0x5a, size);
  size_t bytes = 0;
  double start = now(), t;
  do {
    for (int i = 0; i < 64; i++) {
      if (SSL_write(c, buf, (int)size) != (int)size) die("SSL_write");
      move(c_out, s_in);
      size_t got = 0;
      while (got < size) {
        int n = SSL_read(s, rbuf + got, (int)(size - got));
        if (n <= 0) die("SSL_read");
        got += (size_t)n;
      }
      bytes += size;
    }
    t = now() - start;
  } while (t < secs);
  free(buf), free(rbuf);
  SSL_free(s), SSL_free(c), SSL_CTX_free(sctx), SSL_CTX_free(cctx);
  EVP_PKEY_free(key), X509_free(cert);
  return (double)bytes / t / 1e6;
}

static double ours(kh_suite suite, size_t size, double secs) {
  size_t len = kh_suite_secret_len(suite);
  kh_error err;
  kh_traffic_keys a = {KH_TLS_VERSION_1_3, suite, len, {2}, {1}, 0, 0};
  kh_traffic_keys b = {KH_TLS_VERSION_1_3, suite, len, {1}, {2}, 0, 0};
  kh_record *w = kh_record_new(&a, NULL, NULL, &err), *r = kh_record_new(&b, NULL, NULL, &err);
  if (!w || !r) die(err.msg);
  uint8_t *buf = malloc(size);
  memset(buf, 0x5a, size);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  size_t bytes = 0;
  double start = now(), t;
  do {
    for (int i = 0; i < 64; i++) {
      size_t used;
      if (!kh_record_seal(w, KH_CT_APPLICATION_DATA, buf, size, &wire, &err) ||
          !kh_record_open(r, wire.data, wire.len, &used, &app, &back, &err) || app.len != size)
        die(err.msg);
      wire.len = 0; /* reuse without wiping: bench only, no secrets here */
      app.len = 0;
      bytes += size;
    }
    t = now() - start;
  } while (t < secs);
  free(buf);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  kh_record_free(w), kh_record_free(r);
  return (double)bytes / t / 1e6;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  static const struct {
    kh_suite suite;
    const char *name, *tag;
  } suites[] = {
      {KH_SUITE_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256", "aes128gcm"},
      {KH_SUITE_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384", "aes256gcm"},
      {KH_SUITE_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256", "chacha20"},
  };
  static const size_t sizes[] = {16384, 1024, 64};
  for (size_t i = 0; i < 3; i++) {
    for (size_t j = 0; j < 3; j++) {
      double b = baseline(suites[i].name, sizes[j], secs);
      double o = ours(suites[i].suite, sizes[j], secs);
      printf(
          "RESULT record_%s_%zu ours=%.1f baseline=%.1f unit=MB/s ratio=%.2f target=%.2f cmp=ge\n",
          suites[i].tag, sizes[j], o, b, o / b, sizes[j] == 16384 ? 1.25 : 1.0);
      fflush(stdout);
    }
  }
  return 0;
}

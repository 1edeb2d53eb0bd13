/* channel_bench: secure channels (docs/CHANNELS.md), measured against their
 * limits in the same run.
 *   1. Messages: libkeyhold's channel_record seal + open at 64 B, 1 KiB and
 *      16 KiB against libsodium's raw AEAD (encrypt + decrypt, no header, no
 *      replay window) on the same buffers, for each cipher:
 *        RESULT channel_<cipher>_<size> ours=<MB/s> baseline=<MB/s> unit=MB/s ratio=<r>
 *          target=0.90 cmp=ge
 *   2. Handshakes: complete XX handshakes, both sides offloaded (this
 *      process holds an initiator and a responder channel; each runs in its
 *      own keyholdd, A and B, two more processes), against the same Noise
 *      engine linked in-process running both sides with the same binding
 *      work done in-process with OpenSSL: each side signs (ECDSA P-256, the
 *      test PKI's keys) and verifies the other's signature and certificate
 *      chain (X509_verify_cert against the CA):
 *        RESULT channel_xx_handshakes ours=<hs/s> baseline=<hs/s> unit=hs/s ratio=<r>
 *          target=0.80 cmp=ge
 *        RESULT channel_xx_latency_p50 ours=<us> baseline=<us> unit=us ratio=<r>
 * Usage: channel_bench [SECONDS_PER_CASE (default 1.0)] */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_proc.h"
#include "channel_record.h"
#include "keyhold.h"
#include "noise.h"

static void die(const char *what) {
  fprintf(stderr, "channel_bench: %s\n", what);
  exit(1);
}

/* --- 1. messages ----------------------------------------------------------- */

static double ours_msgs(kh_chan_cipher cipher, size_t size, double secs) {
  kh_chan_keys a = {.cipher = cipher, .initiator = 1, .can_send = 1, .can_recv = 1};
  kh_chan_keys b = a;
  b.initiator = 0;
  memset(a.send_key, 1, 32), memset(a.recv_key, 2, 32);
  memset(b.send_key, 2, 32), memset(b.recv_key, 1, 32);
  kh_error err;
  kh_chan_record *s = kh_chan_record_new(&a, 0, &err), *r = kh_chan_record_new(&b, 0, &err);
  if (s == NULL || r == NULL) die("kh_chan_record_new");
  uint8_t *pt = calloc(1, size);
  kh_buf wire = KH_BUF_INIT, back = KH_BUF_INIT;
  size_t bytes = 0;
  double t0 = bp_now(), t;
  do {
    for (int i = 0; i < 64; i++) {
      wire.len = back.len = 0;
      if (!kh_chan_record_seal(s, pt, size, &wire, &err) ||
          !kh_chan_record_open(r, wire.data, wire.len, &back, &err))
        die(err.msg);
      bytes += size;
    }
  } while ((t = bp_now() - t0) < secs);
  kh_buf_free(&wire);
  kh_buf_free(&back);
  free(pt);
  kh_chan_record_free(s);
  kh_chan_record_free(r);
  return (double)bytes / t / 1e6;
}

static double raw_msgs(kh_chan_cipher cipher, size_t size, double secs) {
  uint8_t key[32], nonce[12] = {0};
  memset(key, 1, sizeof(key));
  uint8_t *pt = calloc(1, size), *ct = malloc(size + 16), *back = malloc(size);
  unsigned long long n;
  size_t bytes = 0;
  uint64_t ctr = 0;
  double t0 = bp_now(), t;
  do {
    for (int i = 0; i < 64; i++) {
      memcpy(nonce + 4, &ctr, 8);
      ctr++;
      int bad;
      if (cipher == KH_CHAN_CHACHAPOLY) {
        crypto_aead_chacha20poly1305_ietf_encrypt(ct, &n, pt, size, NULL, 0, NULL, nonce, key);
        bad = crypto_aead_chacha20poly1305_ietf_decrypt(back, &n, NULL, ct, size + 16, NULL, 0,
                                                        nonce, key);
      } else {
        crypto_aead_aes256gcm_encrypt(ct, &n, pt, size, NULL, 0, NULL, nonce, key);
        bad = crypto_aead_aes256gcm_decrypt(back, &n, NULL, ct, size + 16, NULL, 0, nonce, key);
      }
      if (bad) die("libsodium AEAD");
      bytes += size;
    }
  } while ((t = bp_now() - t0) < secs);
  free(pt);
  free(ct);
  free(back);
  return (double)bytes / t / 1e6;
}

/* --- 2. handshakes -------------------------------------------------------- */

#define MAX_SAMPLES 200000

static double percentile(double *v, size_t n, double p) {
  qsort(v, n, sizeof(*v), bp_cmp_double);
  return v[(size_t)(p * (double)(n - 1))];
}

/* The binding's public-key work for one side, in-process: sign the
 * transcript with |key|, then verify the signature and the chain of |cert|. */
typedef struct {
  EVP_PKEY *key[2];
  X509 *cert[2];
  X509_STORE *store;
} binding_keys;

static binding_keys g_bind;

static void load_binding(const char *tmp) {
  static const char *const names[2] = {"client", "server"};
  char path[256];
  g_bind.store = X509_STORE_new();
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "%s/pki/ids/%s/tls.key", tmp, names[i]);
    FILE *f = fopen(path, "r");
    if (f == NULL || (g_bind.key[i] = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
      die("test PKI key");
    fclose(f);
    snprintf(path, sizeof(path), "%s/pki/ids/%s/tls.crt", tmp, names[i]);
    if ((f = fopen(path, "r")) == NULL ||
        (g_bind.cert[i] = PEM_read_X509(f, NULL, NULL, NULL)) == NULL)
      die("test PKI certificate");
    fclose(f);
  }
  snprintf(path, sizeof(path), "%s/pki/ca/ca.crt", tmp);
  if (X509_STORE_load_file(g_bind.store, path) != 1) die("test PKI CA");
}

static void binding_work(int side, const uint8_t *h, size_t h_len) {
  uint8_t sig[128];
  size_t sig_len = sizeof(sig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g_bind.key[side]) != 1 ||
      EVP_DigestSign(md, sig, &sig_len, h, h_len) != 1)
    die("sign");
  EVP_MD_CTX_reset(md);
  if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(g_bind.cert[side])) !=
          1 ||
      EVP_DigestVerify(md, sig, sig_len, h, h_len) != 1)
    die("verify");
  EVP_MD_CTX_free(md);
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  if (X509_STORE_CTX_init(ctx, g_bind.store, g_bind.cert[side], NULL) != 1 ||
      X509_verify_cert(ctx) != 1)
    die("chain");
  X509_STORE_CTX_free(ctx);
}

/* One in-process XX handshake, both sides, same engine, with the binding
 * work of both sides. */
static void inproc_xx(const uint8_t is[32], const uint8_t rs[32]) {
  kh_error err;
  kh_noise *i = kh_noise_new("Noise_XX_25519_ChaChaPoly_SHA256", 1, &err);
  kh_noise *r = kh_noise_new("Noise_XX_25519_ChaChaPoly_SHA256", 0, &err);
  if (i == NULL || r == NULL || !kh_noise_set_static(i, is, &err) ||
      !kh_noise_set_static(r, rs, &err))
    die("kh_noise_new");
  kh_buf m = KH_BUF_INIT, p = KH_BUF_INIT;
  for (int step = 0; step < 3; step++) {
    kh_noise *w = step % 2 == 0 ? i : r, *rd = w == i ? r : i;
    m.len = p.len = 0;
    if (!kh_noise_write_message(w, NULL, 0, &m, &err) ||
        !kh_noise_read_message(rd, m.data, m.len, &p, &err))
      die(err.msg);
    if (step > 0) { /* messages 2 and 3 carry the responder's and the initiator's binding */
      size_t h_len;
      const uint8_t *h = kh_noise_payload_hash(rd, &h_len);
      binding_work(step == 1 ? 1 : 0, h, h_len);
    }
  }
  kh_noise_cipherstate c[4];
  if (!kh_noise_split(i, &c[0], &c[1], &err) || !kh_noise_split(r, &c[2], &c[3], &err))
    die("split");
  kh_buf_free(&m);
  kh_buf_free(&p);
  kh_noise_free(i);
  kh_noise_free(r);
}

/* One offloaded XX handshake: A's initiator and B's responder. */
static void offloaded_xx(kh_client *a, kh_client *b) {
  kh_error err;
  kh_channel *i = kh_channel_new(a, KH_CHANNEL_INITIATOR, NULL, &err);
  kh_channel *r = i ? kh_channel_new(b, KH_CHANNEL_RESPONDER, NULL, &err) : NULL;
  if (r == NULL) die(err.msg);
  kh_channel *from = i, *to = r;
  for (int step = 0; step < 3; step++) {
    size_t n;
    const uint8_t *f = kh_channel_output(from, &n);
    if (f == NULL) die("no handshake frame");
    uint8_t frame[4096];
    memcpy(frame, f, n);
    kh_channel_output_consumed(from);
    if (!kh_channel_handshake(to, frame, n, &err)) die(err.msg);
    kh_channel *t = from;
    from = to, to = t;
  }
  if (!kh_channel_established(i) || !kh_channel_established(r)) die("not established");
  kh_channel_free(i);
  kh_channel_free(r);
}

typedef struct {
  double rate, p50;
} hs_figures;

static hs_figures measure(int offloaded, kh_client *a, kh_client *b, double secs, double *samples) {
  uint8_t is[32], ip[32], rs[32], rp[32];
  kh_error err;
  if (!kh_noise_keypair(is, ip, &err) || !kh_noise_keypair(rs, rp, &err)) die("keypair");
  size_t n = 0;
  double t0 = bp_now(), t;
  do {
    double s = bp_now();
    if (offloaded)
      offloaded_xx(a, b);
    else
      inproc_xx(is, rs);
    if (n < MAX_SAMPLES) samples[n++] = bp_now() - s;
  } while ((t = bp_now() - t0) < secs);
  return (hs_figures){.rate = (double)n / t, .p50 = percentile(samples, n, 0.5) * 1e6};
}

static pid_t start_kd(const char *kd, const char *tmp, const char *name) {
  char sock[128], ids[128];
  snprintf(sock, sizeof(sock), "%s/%s.sock", tmp, name);
  snprintf(ids, sizeof(ids), "%s/%s", tmp, name);
  pid_t pid = bp_start_keyholdd(kd, sock, ids);
  if (pid < 0) die("keyholdd did not start");
  return pid;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  if (secs <= 0) die("usage: channel_bench [SECONDS_PER_CASE]");
  if (sodium_init() < 0) die("sodium_init");
  static const size_t sizes[] = {64, 1024, 16384};
  struct {
    kh_chan_cipher c;
    const char *tag;
  } ciphers[] = {{KH_CHAN_CHACHAPOLY, "chachapoly"}, {KH_CHAN_AESGCM, "aesgcm"}};
  char lines[8][160];
  int nl = 0;
  for (size_t c = 0; c < 2; c++) {
    if (ciphers[c].c == KH_CHAN_AESGCM && !crypto_aead_aes256gcm_is_available()) {
      printf("channel_bench: no AES-NI: libsodium has no AES-256-GCM here; skipped\n");
      continue;
    }
    for (size_t s = 0; s < 3; s++) {
      /* Alternate halves so drift on a shared machine hits both. */
      double o = ours_msgs(ciphers[c].c, sizes[s], secs / 2);
      double b = raw_msgs(ciphers[c].c, sizes[s], secs / 2);
      o = (o + ours_msgs(ciphers[c].c, sizes[s], secs / 2)) / 2;
      b = (b + raw_msgs(ciphers[c].c, sizes[s], secs / 2)) / 2;
      snprintf(
          lines[nl++], sizeof(lines[0]),
          "RESULT channel_%s_%zu ours=%.1f baseline=%.1f unit=MB/s ratio=%.2f target=0.90 cmp=ge",
          ciphers[c].tag, sizes[s], o, b, o / b);
      printf("channel_bench: %s\n", lines[nl - 1] + 7); /* progress; RESULT lines last */
    }
  }

  char kd[PATH_MAX], tmp[64];
  if (!bp_keyholdd(kd, NULL)) die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(tmp, "chbench");
  if (why != NULL) die(why);
  char cmd[512];
  snprintf(cmd, sizeof(cmd),
           "mkdir -p %s/a %s/b && cp -r %s/pki/ids/client %s/a/ && cp -r %s/pki/ids/server %s/b/",
           tmp, tmp, tmp, tmp, tmp, tmp);
  if (system(cmd) != 0) die("cannot lay out the identities");
  load_binding(tmp);
  pid_t pa = start_kd(kd, tmp, "a"), pb = start_kd(kd, tmp, "b");
  char sa[128], sb[128];
  snprintf(sa, sizeof(sa), "%s/a.sock", tmp);
  snprintf(sb, sizeof(sb), "%s/b.sock", tmp);
  kh_error err;
  kh_client *a = kh_client_new(sa, &err), *b = kh_client_new(sb, &err);
  if (a == NULL || b == NULL) die(err.msg);
  double *samples = malloc(MAX_SAMPLES * sizeof(double));
  offloaded_xx(a, b); /* warm: the gRPC channels connect */
  hs_figures o = measure(1, a, b, secs, samples);
  hs_figures base = measure(0, a, b, secs, samples);
  hs_figures o2 = measure(1, a, b, secs, samples);
  hs_figures base2 = measure(0, a, b, secs, samples);
  o.rate = (o.rate + o2.rate) / 2, o.p50 = (o.p50 + o2.p50) / 2;
  base.rate = (base.rate + base2.rate) / 2, base.p50 = (base.p50 + base2.p50) / 2;
  free(samples);
  kh_client_free(a);
  kh_client_free(b);
  int st;
  bp_stop(pa, 10, &st);
  bp_stop(pb, 10, &st);
  bp_remove_scratch(tmp, "channel_bench");
  for (int i = 0; i < nl; i++) printf("%s\n", lines[i]);
  printf(
      "RESULT channel_xx_handshakes ours=%.1f baseline=%.1f unit=hs/s ratio=%.2f target=0.80 "
      "cmp=ge\n",
      o.rate, base.rate, o.rate / base.rate);
  printf("RESULT channel_xx_latency_p50 ours=%.1f baseline=%.1f unit=us ratio=%.2f\n", o.p50,
         base.p50, o.p50 / base.p50);
  return 0;
}

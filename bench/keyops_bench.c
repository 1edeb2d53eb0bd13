/* keyops_bench: key operations through keyholdd (docs/KEYS.md) against the
 * same operation in-process, from the same run:
 *   RESULT keyops_sealed_open ours=<ops/s> baseline=<ops/s> unit=ops/s ratio=<r>
 * ours: kh_open_sealed of a 1 KiB sealed box (one unary gRPC call each,
 * keyholdd opening it with the identity's seal.key); baseline: libsodium's
 * crypto_box_seal_open of a box of the same size in this process.
 * Usage: keyops_bench [SECONDS_PER_CASE (default 1.0)] */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_proc.h"
#include "keyhold.h"

#define MSG 1024

static void die(const char *what) {
  fprintf(stderr, "keyops_bench: %s\n", what);
  exit(1);
}

static double ours(kh_client *kc, const uint8_t *box, double secs) {
  kh_keyop_opts o = {.local_identity = "spiffe://example.org/client"};
  uint8_t pt[MSG];
  kh_error err;
  long n = 0;
  double t0 = bp_now(), t;
  do {
    if (kh_open_sealed(kc, &o, box, MSG + crypto_box_SEALBYTES, pt, sizeof(pt), &err) != MSG)
      die(err.msg);
    n++;
  } while ((t = bp_now() - t0) < secs);
  return n / t;
}

static double baseline(double secs) {
  uint8_t pk[32], sk[32], box[MSG + crypto_box_SEALBYTES], pt[MSG] = {0};
  crypto_box_keypair(pk, sk);
  crypto_box_seal(box, pt, MSG, pk);
  long n = 0;
  double t0 = bp_now(), t;
  do {
    if (crypto_box_seal_open(pt, box, sizeof(box), pk, sk) != 0) die("crypto_box_seal_open");
    n++;
  } while ((t = bp_now() - t0) < secs);
  return n / t;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  if (secs <= 0) die("usage: keyops_bench [SECONDS_PER_CASE]");
  if (sodium_init() < 0) die("sodium_init");
  char kd[PATH_MAX], tmp[64], sock[128], ids[128];
  if (!bp_keyholdd(kd, NULL)) die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(tmp, "kobench");
  if (why != NULL) die(why);
  snprintf(sock, sizeof(sock), "%s/kd.sock", tmp);
  snprintf(ids, sizeof(ids), "%s/pki/ids", tmp);
  pid_t pid = bp_start_keyholdd(kd, sock, ids);
  if (pid < 0) die("keyholdd did not start");
  kh_error err;
  kh_client *kc = kh_client_new(sock, &err);
  if (kc == NULL) die(err.msg);
  kh_keyop_opts o = {.local_identity = "spiffe://example.org/client"};
  uint8_t pk[KH_SEALING_KEY_LEN], msg[MSG], box[MSG + crypto_box_SEALBYTES];
  if (!kh_sealing_key(kc, &o, pk, &err)) die(err.msg);
  randombytes_buf(msg, sizeof(msg));
  crypto_box_seal(box, msg, sizeof(msg), pk);
  ours(kc, box, secs / 10); /* warm: the gRPC channel connects */
  double a = ours(kc, box, secs / 2), b = baseline(secs / 2);
  a = (a + ours(kc, box, secs / 2)) / 2;
  b = (b + baseline(secs / 2)) / 2;
  kh_client_free(kc);
  int st;
  bp_stop(pid, 10, &st);
  bp_remove_scratch(tmp, "keyops_bench");
  printf("RESULT keyops_sealed_open ours=%.0f baseline=%.0f unit=ops/s ratio=%.2f\n", a, b, a / b);
  return 0;
}

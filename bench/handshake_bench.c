/* handshake_bench: offloaded mTLS handshakes (libkeyhold + keyholdd) against
 * in-process BoringSSL, side by side, in one run. No process loads both TLS
 * libraries: the baseline (hs_bssl), ours (hs_keyhold), the peer (hs_bssl)
 * and keyholdd are separate processes this program starts.
 *   handshake_bench [SECONDS_PER_CASE] [CONCURRENCY]     (default 3 s, 8)
 * Prints, last, RESULT lines for client-side and server-side throughput and
 * client-side p50/p99 latency at concurrency 1. Targets are on the ratio
 * (target=<t> cmp=<le|ge>): throughput >= 0.8 at CONCURRENCY connections;
 * p50 added <= 150 us (docs/PERFORMANCE.md), an absolute figure, so the
 * p50 line's target is (baseline + 150 us) / baseline of this run. */
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_driver.h"
#include "bench_proc.h"

static char g_dir[1024], g_bin[PATH_MAX], g_tmp[64];

static void path(char *out, const char *rel) {
  snprintf(out, PATH_MAX, "%.1000s/%.100s", g_dir, rel);
}

int main(int argc, char **argv) {
  const char *secs = argc > 1 ? argv[1] : "3";
  const char *conc = argc > 2 ? argv[2] : "8";
  signal(SIGPIPE, SIG_IGN);
  bd_init("handshake_bench", g_tmp);
  char kd[PATH_MAX];
  if (!bp_keyholdd(kd, g_bin)) bd_die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(g_tmp, "hsbench");
  if (why != NULL) bd_die(why);
  snprintf(g_dir, sizeof(g_dir), "%s/pki", g_tmp);

  char bssl[PATH_MAX], ours[PATH_MAX], sock[PATH_MAX], ids[PATH_MAX];
  char scrt[PATH_MAX], skey[PATH_MAX], ccrt[PATH_MAX], ckey[PATH_MAX], ca[PATH_MAX];
  snprintf(bssl, sizeof(bssl), "%.1000s/hs_bssl", g_bin);
  snprintf(ours, sizeof(ours), "%.1000s/hs_keyhold", g_bin);
  snprintf(sock, sizeof(sock), "%s/kd.sock", g_tmp);
  path(ids, "ids");
  path(scrt, "peer/server.crt");
  path(skey, "peer/server.key");
  path(ccrt, "peer/client.crt");
  path(ckey, "peer/client.key");
  path(ca, "ca/ca.crt");

  pid_t pid;
  char *kd_argv[] = {kd,       "--socket",    sock,    "--identities",
                     ids,      "--log-level", "error", "--max-handshakes-per-caller",
                     "100000", NULL};
  bd_spawn(kd_argv, &pid);
  struct stat st;
  for (int i = 0; i < 200 && stat(sock, &st) != 0; i++) usleep(10000);
  if (stat(sock, &st) != 0) bd_die("keyholdd did not start");

  /* Client side: both clients against one BoringSSL peer server. */
  char *peer_argv[] = {bssl, "server", scrt, skey, ca, (char *)conc, NULL};
  FILE *pf = bd_spawn(peer_argv, &pid);
  char port[16];
  snprintf(port, sizeof(port), "%d", bd_read_port(pf));
  char *base_c[] = {bssl, "client", port, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  char *ours_c[] = {ours, "client", sock, port, (char *)conc, (char *)secs, NULL};
  bd_result bc = bd_run_client(base_c), oc = bd_run_client(ours_c);
  printf("client side, %s connections: baseline %.0f/s (%zu failed), ours %.0f/s (%zu failed)\n",
         conc, bc.rate, bc.failed, oc.rate, oc.failed);

  /* Latency: one connection at a time. */
  char *base_l[] = {bssl, "client", port, ccrt, ckey, ca, "1", (char *)secs, NULL};
  char *ours_l[] = {ours, "client", sock, port, "1", (char *)secs, NULL};
  bd_result bl = bd_run_client(base_l), ol = bd_run_client(ours_l);
  printf(
      "latency, 1 connection: baseline p50 %.0f us p99 %.0f us; ours p50 %.0f us p99 %.0f us;"
      " added p50 %.0f us (target <= 150)\n",
      bl.p50, bl.p99, ol.p50, ol.p99, ol.p50 - bl.p50);

  /* The floor under the added latency: one S2A call, refused at once. */
  char *floor_argv[] = {ours, "floor", sock, (char *)secs, NULL};
  bd_result fl = bd_run_client(floor_argv);
  printf(
      "S2A call floor (gRPC call, one message each way, no TLS): p50 %.0f us p99 %.0f us;"
      " a handshake makes 2 such round trips\n",
      fl.p50, fl.p99);

  /* Server side: one BoringSSL client load against each server. */
  char *ours_s_argv[] = {ours, "server", sock, (char *)conc, NULL};
  FILE *of = bd_spawn(ours_s_argv, &pid);
  char oport[16];
  snprintf(oport, sizeof(oport), "%d", bd_read_port(of));
  char *load_b[] = {bssl, "client", port, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  char *load_o[] = {bssl, "client", oport, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  bd_result bs = bd_run_client(load_b), os = bd_run_client(load_o);
  printf("server side, %s connections: baseline %.0f/s (%zu failed), ours %.0f/s (%zu failed)\n",
         conc, bs.rate, bs.failed, os.rate, os.failed);

  printf("RESULT handshake_latency_p99 ours=%.1f baseline=%.1f unit=us ratio=%.2f\n", ol.p99,
         bl.p99, bl.p99 > 0 ? ol.p99 / bl.p99 : 0);
  printf(
      "RESULT handshake_latency_p50 ours=%.1f baseline=%.1f unit=us ratio=%.3f target=%.3f "
      "cmp=le\n",
      ol.p50, bl.p50, bl.p50 > 0 ? ol.p50 / bl.p50 : 0, bl.p50 > 0 ? (bl.p50 + 150) / bl.p50 : 0);
  printf(
      "RESULT handshake_server ours=%.1f baseline=%.1f unit=hs/s ratio=%.2f target=0.80 cmp=ge\n",
      os.rate, bs.rate, bs.rate > 0 ? os.rate / bs.rate : 0);
  printf(
      "RESULT handshake_client ours=%.1f baseline=%.1f unit=hs/s ratio=%.2f target=0.80 cmp=ge\n",
      oc.rate, bc.rate, bc.rate > 0 ? oc.rate / bc.rate : 0);
  fclose(pf);
  fclose(of);
  bd_cleanup();
  return oc.failed + os.failed + bc.failed + bs.failed > 0 ? 1 : 0;
}

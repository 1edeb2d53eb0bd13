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

#include "bench_proc.h"

typedef struct {
  double rate, p50, p99;
  size_t n, failed;
} result;

static char g_dir[1024], g_bin[PATH_MAX], g_tmp[64];
static pid_t g_pids[8];
static int g_npids;

static void cleanup(void) {
  int status;
  for (int i = 0; i < g_npids; i++) bp_stop(g_pids[i], 10, &status);
  g_npids = 0;
  bp_remove_scratch(g_tmp, "handshake_bench");
}

static void die(const char *what) {
  fprintf(stderr, "handshake_bench: %s\n", what);
  cleanup();
  exit(1);
}

/* spawn starts argv in the background; its stdout comes back on a FILE. */
static FILE *spawn(char *const argv[], pid_t *pid) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  *pid = fork();
  if (*pid < 0) die("fork");
  if (*pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  if (g_npids < 8) g_pids[g_npids++] = *pid;
  return fdopen(p[0], "r");
}

static int read_port(FILE *f) {
  int port = 0;
  char line[256];
  if (fgets(line, sizeof(line), f) == NULL || sscanf(line, "port %d", &port) != 1)
    die("a server did not start");
  return port;
}

static result run_client(char *const argv[]) {
  pid_t pid;
  FILE *f = spawn(argv, &pid);
  char line[512];
  result r = {0};
  if (fgets(line, sizeof(line), f) == NULL ||
      sscanf(line, "handshakes=%zu failed=%zu seconds=%*f rate=%lf p50_us=%lf p99_us=%lf", &r.n,
             &r.failed, &r.rate, &r.p50, &r.p99) != 5)
    die("a client produced no result");
  fclose(f);
  waitpid(pid, NULL, 0);
  g_npids--; /* it was the last one spawned */
  return r;
}

static void path(char *out, const char *rel) {
  snprintf(out, PATH_MAX, "%.1000s/%.100s", g_dir, rel);
}

int main(int argc, char **argv) {
  const char *secs = argc > 1 ? argv[1] : "3";
  const char *conc = argc > 2 ? argv[2] : "8";
  signal(SIGPIPE, SIG_IGN);
  char kd[PATH_MAX];
  if (!bp_keyholdd(kd, g_bin)) die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(g_tmp, "hsbench");
  if (why != NULL) die(why);
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
  spawn(kd_argv, &pid);
  struct stat st;
  for (int i = 0; i < 200 && stat(sock, &st) != 0; i++) usleep(10000);
  if (stat(sock, &st) != 0) die("keyholdd did not start");

  /* Client side: both clients against one BoringSSL peer server. */
  char *peer_argv[] = {bssl, "server", scrt, skey, ca, (char *)conc, NULL};
  FILE *pf = spawn(peer_argv, &pid);
  char port[16];
  snprintf(port, sizeof(port), "%d", read_port(pf));
  char *base_c[] = {bssl, "client", port, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  char *ours_c[] = {ours, "client", sock, port, (char *)conc, (char *)secs, NULL};
  result bc = run_client(base_c), oc = run_client(ours_c);
  printf("client side, %s connections: baseline %.0f/s (%zu failed), ours %.0f/s (%zu failed)\n",
         conc, bc.rate, bc.failed, oc.rate, oc.failed);

  /* Latency: one connection at a time. */
  char *base_l[] = {bssl, "client", port, ccrt, ckey, ca, "1", (char *)secs, NULL};
  char *ours_l[] = {ours, "client", sock, port, "1", (char *)secs, NULL};
  result bl = run_client(base_l), ol = run_client(ours_l);
  printf(
      "latency, 1 connection: baseline p50 %.0f us p99 %.0f us; ours p50 %.0f us p99 %.0f us;"
      " added p50 %.0f us (target <= 150)\n",
      bl.p50, bl.p99, ol.p50, ol.p99, ol.p50 - bl.p50);

  /* The floor under the added latency: one S2A call, refused at once. */
  char *floor_argv[] = {ours, "floor", sock, (char *)secs, NULL};
  result fl = run_client(floor_argv);
  printf(
      "S2A call floor (gRPC call, one message each way, no TLS): p50 %.0f us p99 %.0f us;"
      " a handshake makes 2 such round trips\n",
      fl.p50, fl.p99);

  /* Server side: one BoringSSL client load against each server. */
  char *ours_s_argv[] = {ours, "server", sock, (char *)conc, NULL};
  FILE *of = spawn(ours_s_argv, &pid);
  char oport[16];
  snprintf(oport, sizeof(oport), "%d", read_port(of));
  char *load_b[] = {bssl, "client", port, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  char *load_o[] = {bssl, "client", oport, ccrt, ckey, ca, (char *)conc, (char *)secs, NULL};
  result bs = run_client(load_b), os = run_client(load_o);
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
  cleanup();
  return oc.failed + os.failed + bc.failed + bs.failed > 0 ? 1 : 0;
}

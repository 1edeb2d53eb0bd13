/* proxy_bench: Keyhold against what a user would pick instead, a
 * TLS-terminating proxy sidecar (haproxy, and stunnel, from Debian). Every
 * path runs the same application (proxy_app) against the same peer
 * (proxy_peer: mTLS, TLS_AES_128_GCM_SHA256, X25519, session tickets) with
 * the same client certificate and CA:
 *   keyhold  proxy_app dials the peer with kh_connect_host (keyholdd holds
 *            the key, the records are the app's own);
 *   haproxy  proxy_app speaks plain TCP to haproxy (mode tcp), which
 *            originates the mTLS to the peer with the key file;
 *   stunnel  the same through stunnel (client = yes).
 *   proxy_bench [ROUNDS] [SECONDS] [CONNECTIONS]       (default 3 1.0 128)
 * Each round runs the three paths one after the other (the order rotating
 * from round to round), each path its four measurements: bulk (the peer's
 * stream read for SECONDS), 64-byte echo round trips (SECONDS), new
 * connections and resumed connections (CONNECTIONS set-ups each: connect,
 * handshake, first 64-byte round trip). Figures are medians over the rounds.
 * CPU per byte counts the app's CPU and its helper's (keyholdd, haproxy or
 * stunnel) over the bulk run. A set-up that did not resume (resumed) or
 * resumed (new), as the peer saw it, fails the benchmark.
 * RESULT lines: ours = keyhold, baseline = haproxy, with the targets
 * (docs/PERFORMANCE.md); the proxy_stunnel_* lines (baseline = stunnel)
 * carry none: the targets were set against haproxy. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_driver.h"
#include "hs_common.h"

#define PB_MAX_ROUNDS 15
#define PB_HAPROXY "/usr/sbin/haproxy"
#define PB_STUNNEL "/usr/bin/stunnel4"

enum { P_KEYHOLD, P_HAPROXY, P_STUNNEL, P_N };
enum { M_BULK, M_CPU, M_RTT50, M_RTT99, M_NEW50, M_NEW99, M_RES50, M_RES99, M_N };

static const char *const path_names[P_N] = {"keyhold", "haproxy", "stunnel"};

static char g_tmp[64];

typedef struct {
  char app[PATH_MAX], sock[PATH_MAX];
  char crt[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], pem[PATH_MAX];
  char peer_port[16];
  pid_t helper[P_N];
  int new_port[P_N], resume_port[P_N];
  double v[P_N][M_N][PB_MAX_ROUNDS];
} pb_bench;

static void on_signal(int sig) {
  (void)sig;
  bd_cleanup();
  _exit(1);
}

static void scratch_path(char *out, const char *rel) {
  snprintf(out, PATH_MAX, "%s/%s", g_tmp, rel);
}

/* free_port: a port nobody listens on now (the proxies cannot report an
 * ephemeral one; the window until they bind is short). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
    bd_die("cannot find a free port");
  close(fd);
  return ntohs(sa.sin_port);
}

/* wait_port waits (up to 10 s) until something accepts on |port|. */
static void wait_port(int port, const char *who) {
  for (int i = 0; i < 400; i++) {
    int fd = hs_connect(port);
    if (fd >= 0) {
      close(fd);
      return;
    }
    usleep(25000);
  }
  fprintf(stderr, "proxy_bench: %s did not start\n", who);
  bd_die("a proxy did not start");
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) bd_die("cannot write a config file");
}

/* spawn_helper starts |argv| (stdout to a pipe nobody reads: the proxies
 * write nothing there) and waits for its two ports. */
static pid_t spawn_helper(pb_bench *b, int path, char *const argv[]) {
  if (access(argv[0], X_OK) != 0) {
    fprintf(stderr, "proxy_bench: no %s (bash tools/install-deps.sh)\n", argv[0]);
    bd_die("a proxy is not installed");
  }
  pid_t pid;
  FILE *f = bd_spawn(argv, &pid);
  (void)f; /* stays open until the driver exits */
  wait_port(b->new_port[path], path_names[path]);
  wait_port(b->resume_port[path], path_names[path]);
  return pid;
}

/* haproxy: mode tcp; backend "new" never reuses a session (no-ssl-reuse),
 * backend "resume" does, as haproxy does by default. */
static void start_haproxy(pb_bench *b) {
  static const char *const fmt =
      "global\n  maxconn 2000\n  ssl-server-verify required\n"
      "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
      "frontend new\n  bind 127.0.0.1:%d\n  default_backend new\n"
      "frontend resume\n  bind 127.0.0.1:%d\n  default_backend resume\n"
      "backend new\n  server peer 127.0.0.1:%s %s no-ssl-reuse\n"
      "backend resume\n  server peer 127.0.0.1:%s %s\n";
  char ssl[3 * PATH_MAX], cfg[8 * PATH_MAX], path[PATH_MAX];
  snprintf(ssl, sizeof(ssl),
           "ssl verify required ca-file %s crt %s sni str(localhost) verifyhost localhost"
           " ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256",
           b->ca, b->pem);
  b->new_port[P_HAPROXY] = free_port();
  b->resume_port[P_HAPROXY] = free_port();
  snprintf(cfg, sizeof(cfg), fmt, b->new_port[P_HAPROXY], b->resume_port[P_HAPROXY], b->peer_port,
           ssl, b->peer_port, ssl);
  scratch_path(path, "haproxy.cfg");
  write_file(path, cfg);
  char *argv[] = {PB_HAPROXY, "-db", "-q", "-f", path, NULL};
  b->helper[P_HAPROXY] = spawn_helper(b, P_HAPROXY, argv);
}

/* stunnel: client = yes; service "new" with sessionResume = no. */
static void start_stunnel(pb_bench *b) {
  static const char *const svc =
      "[%s]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%s\n"
      "cert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\ncheckHost = localhost\n"
      "sni = localhost\nsslVersionMin = TLSv1.3\nciphersuites = TLS_AES_128_GCM_SHA256\n"
      "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n%s";
  char cfg[8 * PATH_MAX], path[PATH_MAX], pid[PATH_MAX];
  b->new_port[P_STUNNEL] = free_port();
  b->resume_port[P_STUNNEL] = free_port();
  scratch_path(pid, "stunnel.pid");
  int off = snprintf(cfg, sizeof(cfg), "foreground = yes\npid = %s\ndebug = 3\n", pid);
  off += snprintf(cfg + off, sizeof(cfg) - (size_t)off, svc, "new", b->new_port[P_STUNNEL],
                  b->peer_port, b->crt, b->key, b->ca, "sessionResume = no\n");
  snprintf(cfg + off, sizeof(cfg) - (size_t)off, svc, "resume", b->resume_port[P_STUNNEL],
           b->peer_port, b->crt, b->key, b->ca, "");
  scratch_path(path, "stunnel.conf");
  write_file(path, cfg);
  char *argv[] = {PB_STUNNEL, path, NULL};
  b->helper[P_STUNNEL] = spawn_helper(b, P_STUNNEL, argv);
}

static void start_keyholdd(pb_bench *b, char *kd) {
  char ids[PATH_MAX];
  scratch_path(ids, "pki/ids");
  scratch_path(b->sock, "kd.sock");
  char *argv[] = {kd,       "--socket",    b->sock, "--identities",
                  ids,      "--log-level", "error", "--max-handshakes-per-caller",
                  "100000", NULL};
  pid_t pid;
  bd_spawn(argv, &pid);
  struct stat st;
  for (int i = 0; i < 400 && stat(b->sock, &st) != 0; i++) usleep(25000);
  if (stat(b->sock, &st) != 0) bd_die("keyholdd did not start");
  b->helper[P_KEYHOLD] = pid;
}

static void start_peer(pb_bench *b, const char *bin) {
  char peer[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
  snprintf(peer, sizeof(peer), "%.1000s/proxy_peer", bin);
  scratch_path(crt, "pki/peer/server.crt");
  scratch_path(key, "pki/peer/server.key");
  char *argv[] = {peer, crt, key, b->ca, NULL};
  pid_t pid;
  FILE *f = bd_spawn(argv, &pid);
  snprintf(b->peer_port, sizeof(b->peer_port), "%d", bd_read_port(f));
}

/* The client identity's key and certificate in one PEM, for haproxy's crt. */
static void make_pem(pb_bench *b) {
  char cmd[4 * PATH_MAX];
  scratch_path(b->pem, "client.pem");
  snprintf(cmd, sizeof(cmd), "cat %s %s > %s", b->crt, b->key, b->pem);
  if (system(cmd) != 0) bd_die("cannot write client.pem");
}

/* measure runs one proxy_app phase on |path| and returns its result. */
static bd_result measure(pb_bench *b, int path, const char *phase, const char *secs,
                         const char *conns) {
  char a2[PATH_MAX], a3[16], helper[16];
  snprintf(helper, sizeof(helper), "%d", (int)b->helper[path]);
  if (path == P_KEYHOLD) {
    snprintf(a2, sizeof(a2), "%s", b->sock);
    snprintf(a3, sizeof(a3), "%s", b->peer_port);
  } else {
    snprintf(a2, sizeof(a2), "%d", b->new_port[path]);
    snprintf(a3, sizeof(a3), "%d", b->resume_port[path]);
  }
  char *argv[] = {b->app,       path == P_KEYHOLD ? "keyhold" : "plain",
                  a2,           a3,
                  helper,       (char *)phase,
                  (char *)secs, (char *)conns,
                  NULL};
  bd_result r = bd_run_client(argv);
  if (r.failed > 0 || r.n == 0) {
    fprintf(stderr,
            "proxy_bench: %s %s: %zu of %zu failed (a resumed set-up that did not resume,"
            " or a new one that did, counts)\n",
            path_names[path], phase, r.failed, r.failed + r.n);
    bd_die("a measurement failed");
  }
  return r;
}

static void run_path(pb_bench *b, int path, int round, const char *secs, const char *conns) {
  double *v[M_N];
  for (int m = 0; m < M_N; m++) v[m] = &b->v[path][m][round];
  bd_result r = measure(b, path, "bulk", secs, conns);
  *v[M_BULK] = r.rate / 1e6;
  *v[M_CPU] = r.cpu * 1e6 / ((double)r.n / 1e6); /* us per MB */
  r = measure(b, path, "rtt", secs, conns);
  *v[M_RTT50] = r.p50, *v[M_RTT99] = r.p99;
  r = measure(b, path, "new", secs, conns);
  *v[M_NEW50] = r.p50, *v[M_NEW99] = r.p99;
  r = measure(b, path, "resumed", secs, conns);
  *v[M_RES50] = r.p50, *v[M_RES99] = r.p99;
  printf(
      "round %d %-8s bulk %7.1f MB/s  cpu %6.0f us/MB  rtt p50 %5.0f p99 %5.0f us"
      "  new p50 %5.0f p99 %5.0f us  resumed p50 %5.0f p99 %5.0f us\n",
      round + 1, path_names[path], *v[M_BULK], *v[M_CPU], *v[M_RTT50], *v[M_RTT99], *v[M_NEW50],
      *v[M_NEW99], *v[M_RES50], *v[M_RES99]);
  fflush(stdout);
}

static double median(const double *in, int n) {
  double v[PB_MAX_ROUNDS];
  memcpy(v, in, sizeof(double) * (size_t)n);
  qsort(v, (size_t)n, sizeof(double), bp_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
  const char *name, *unit, *cmp;
  int metric;
  double target; /* 0: none */
} pb_line;

static const pb_line lines[] = {
    {"bulk", "MB/s", "ge", M_BULK, 1.5},        {"cpu_per_mb", "us/MB", "le", M_CPU, 0.5},
    {"rtt_p50", "us", "le", M_RTT50, 0.7},      {"rtt_p99", "us", "le", M_RTT99, 0},
    {"new_conn_p50", "us", "le", M_NEW50, 0.8}, {"new_conn_p99", "us", "le", M_NEW99, 0},
    {"resumed_p50", "us", "le", M_RES50, 0.9},  {"resumed_p99", "us", "le", M_RES99, 0.9},
};

static void print_results(const pb_bench *b, int rounds) {
  for (int base = P_HAPROXY; base <= P_STUNNEL; base++)
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
      const pb_line *l = &lines[i];
      double ours = median(b->v[P_KEYHOLD][l->metric], rounds);
      double theirs = median(b->v[base][l->metric], rounds);
      printf("RESULT proxy_%s%s ours=%.1f baseline=%.1f unit=%s ratio=%.3f",
             base == P_STUNNEL ? "stunnel_" : "", l->name, ours, theirs, l->unit,
             theirs > 0 ? ours / theirs : 0);
      if (base == P_HAPROXY && l->target > 0) printf(" target=%.2f cmp=%s", l->target, l->cmp);
      printf("\n");
    }
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 3;
  const char *secs = argc > 2 ? argv[2] : "1.0";
  const char *conns = argc > 3 ? argv[3] : "128";
  if (rounds < 1 || rounds > PB_MAX_ROUNDS || atof(secs) <= 0 || atoi(conns) < 1) {
    fprintf(stderr, "usage: proxy_bench [ROUNDS 1..%d] [SECONDS] [CONNECTIONS]\n", PB_MAX_ROUNDS);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  bd_init("proxy_bench", g_tmp);
  static pb_bench b;
  char kd[PATH_MAX], bin[PATH_MAX];
  if (!bp_keyholdd(kd, bin)) bd_die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(g_tmp, "proxy");
  if (why != NULL) bd_die(why);
  snprintf(b.app, sizeof(b.app), "%.1000s/proxy_app", bin);
  scratch_path(b.crt, "pki/ids/client/tls.crt");
  scratch_path(b.key, "pki/ids/client/tls.key");
  scratch_path(b.ca, "pki/ca/ca.crt");
  make_pem(&b);
  start_keyholdd(&b, kd);
  start_peer(&b, bin);
  start_haproxy(&b);
  start_stunnel(&b);
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < P_N; k++) run_path(&b, (r + k) % P_N, r, secs, conns);
  print_results(&b, rounds);
  bd_cleanup();
  return 0;
}

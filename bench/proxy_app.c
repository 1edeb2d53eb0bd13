/* proxy_app: the one application program of proxy_bench, the same on every
 * path to proxy_peer:
 *   proxy_app keyhold SOCK PORT HELPER PHASE SECS N
 *     dials the peer itself with kh_connect_host: mTLS offloaded to keyholdd
 *     (socket SOCK, pid HELPER), records in this process;
 *   proxy_app plain NEW_PORT RESUME_PORT HELPER PHASE SECS N
 *     plain TCP to a local proxy (pid HELPER: haproxy or stunnel) that
 *     originates the mTLS to the peer; NEW_PORT's service never resumes,
 *     RESUME_PORT's does (as the proxy does by default).
 * PHASE (one per run; prints one result line in hs_report's format):
 *   bulk     the peer's source stream read for SECS seconds: rate = bytes/s,
 *            cpu_s = this process's CPU + HELPER's over that time
 *   rtt      64-byte echo round trips on one connection for SECS seconds
 *   new      N connection set-ups (connect, handshake, first 64-byte round
 *            trip), each a full handshake
 *   resumed  N set-ups, each resuming the one before's session
 * The peer's answer to the first message says whether the handshake
 * resumed: a set-up that did not go as its phase wants counts as failed.
 * Keyhold's tickets go back to keyholdd (kh_conn_close) after the clock
 * stops; in `new` they are dropped (kh_conn_free). Two unmeasured set-ups
 * come first (the gRPC channel connects, a session left from an earlier
 * run is used up or one is made). */
#include <errno.h>
#include <signal.h>

#include "bench_driver.h"
#include "hs_common.h"
#include "keyhold.h"

#define PA_MSG 64
#define PA_MAX_SAMPLES 200000
#define PA_WARMUP 2

typedef struct {
  int keyhold;
  const char *sock, *port;   /* keyhold */
  int new_port, resume_port; /* plain */
  pid_t helper;
  kh_client *kc;
} pa_path;

typedef struct {
  kh_conn *kc; /* keyhold; NULL: plain */
  int fd;
} pa_conn;

static void die(const char *what, const char *detail) {
  fprintf(stderr, "proxy_app: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

/* pa_open connects; |resume| picks the proxy's resuming service (Keyhold
 * resumes whenever keyholdd holds a session). 0 on failure. */
static int pa_open(pa_path *p, int resume, pa_conn *c) {
  c->kc = NULL;
  if (!p->keyhold) {
    c->fd = hs_connect(resume ? p->resume_port : p->new_port);
    return c->fd >= 0;
  }
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = "spiffe://example.org/client";
  o.server_name = "localhost";
  kh_error err;
  c->kc = kh_connect_host(p->kc, "127.0.0.1", p->port, &o, &err);
  if (c->kc == NULL) fprintf(stderr, "proxy_app: %s\n", err.msg);
  return c->kc != NULL;
}

static int pa_write(pa_conn *c, const void *buf, size_t len) {
  kh_error err;
  if (c->kc != NULL) return kh_conn_write(c->kc, buf, len, &err);
  for (size_t off = 0; off < len;) {
    ssize_t n = write(c->fd, (const char *)buf + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    off += (size_t)n;
  }
  return 1;
}

/* pa_read: up to |len| bytes; <= 0 at the end or on an error. */
static ssize_t pa_read(pa_conn *c, void *buf, size_t len) {
  kh_error err;
  if (c->kc != NULL) return kh_conn_read(c->kc, buf, len, &err);
  ssize_t n;
  do n = read(c->fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n;
}

static int pa_read_msg(pa_conn *c, unsigned char *buf) {
  for (size_t got = 0; got < PA_MSG;) {
    ssize_t n = pa_read(c, buf + got, PA_MSG - got);
    if (n <= 0) return 0;
    got += (size_t)n;
  }
  return 1;
}

/* pa_end closes; |keep| hands Keyhold's tickets back to keyholdd first. */
static void pa_end(pa_conn *c, int keep) {
  if (c->kc == NULL) {
    close(c->fd);
    return;
  }
  kh_error err;
  if (keep && !kh_conn_close(c->kc, &err)) kh_error_clear(&err);
  kh_conn_free(c->kc); /* closes its socket */
}

/* pa_first sends the first message (|mode|) and reads the answer; the
 * peer's 'R' or 'F' (resumed or full), or 0. */
static int pa_first(pa_conn *c, char mode) {
  unsigned char msg[PA_MSG];
  memset(msg, 'x', sizeof(msg));
  msg[0] = (unsigned char)mode;
  if (!pa_write(c, msg, sizeof(msg)) || !pa_read_msg(c, msg)) return 0;
  return msg[0];
}

/* setup: one set-up; its seconds, or -1 if it failed or did not (full: 'F',
 * resumed: 'R') go as |want|. */
static double setup(pa_path *p, int want) {
  pa_conn c;
  double t0 = bp_now();
  if (!pa_open(p, want == 'R', &c)) return -1;
  int got = pa_first(&c, 'E');
  double took = bp_now() - t0;
  pa_end(&c, want == 'R');
  return got == want ? took : -1;
}

static void phase_setup(pa_path *p, int want, int n) {
  double *lat = malloc(sizeof(double) * PA_MAX_SAMPLES);
  size_t ok = 0, failed = 0;
  for (int i = 0; i < PA_WARMUP; i++) (void)setup(p, want);
  double t0 = bp_now(), cpu0 = hs_cpu();
  for (int i = 0; i < n && i < PA_MAX_SAMPLES; i++) {
    double took = setup(p, want);
    if (took >= 0)
      lat[ok++] = took;
    else
      failed++;
  }
  hs_report(ok, failed, bp_now() - t0, lat, hs_cpu() - cpu0);
  free(lat);
}

static void phase_rtt(pa_path *p, double secs) {
  pa_conn c;
  if (!pa_open(p, 1, &c) || pa_first(&c, 'E') == 0) die("rtt: no connection", NULL);
  double *lat = malloc(sizeof(double) * PA_MAX_SAMPLES);
  unsigned char msg[PA_MSG];
  memset(msg, 'r', sizeof(msg));
  size_t n = 0, failed = 0;
  double t0 = bp_now(), end = t0 + secs, cpu0 = hs_cpu();
  while (n < PA_MAX_SAMPLES && bp_now() < end) {
    double t = bp_now();
    if (!pa_write(&c, msg, sizeof(msg)) || !pa_read_msg(&c, msg)) {
      failed++;
      break;
    }
    lat[n++] = bp_now() - t;
  }
  hs_report(n, failed, bp_now() - t0, lat, hs_cpu() - cpu0);
  pa_end(&c, 0);
  free(lat);
}

static void phase_bulk(pa_path *p, double secs) {
  pa_conn c;
  if (!pa_open(p, 1, &c) || pa_first(&c, 'S') == 0) die("bulk: no connection", NULL);
  static unsigned char buf[65536];
  size_t bytes = 0;
  double h0 = bd_proc_cpu(p->helper), cpu0 = hs_cpu(), t0 = bp_now(), end = t0 + secs;
  while (bp_now() < end) {
    ssize_t n = pa_read(&c, buf, sizeof(buf));
    if (n <= 0) die("bulk: the stream ended", NULL);
    bytes += (size_t)n;
  }
  double t = bp_now() - t0, cpu = hs_cpu() - cpu0, h = bd_proc_cpu(p->helper) - h0;
  if (h0 < 0) die("bulk: cannot read the helper's CPU time", NULL);
  printf("handshakes=%zu failed=0 seconds=%.3f rate=%.1f p50_us=0 p99_us=0 cpu_s=%.4f\n", bytes, t,
         (double)bytes / t, cpu + h);
  fflush(stdout);
  pa_end(&c, 0);
}

static int parse_path(int argc, char **argv, pa_path *p) {
  if (argc != 8) return 0;
  p->keyhold = strcmp(argv[1], "keyhold") == 0;
  if (!p->keyhold && strcmp(argv[1], "plain") != 0) return 0;
  if (p->keyhold) {
    p->sock = argv[2];
    p->port = argv[3];
    kh_error err;
    p->kc = kh_client_new(p->sock, &err);
    if (p->kc == NULL) die(err.msg, NULL);
  } else {
    p->new_port = atoi(argv[2]);
    p->resume_port = atoi(argv[3]);
  }
  p->helper = (pid_t)atoi(argv[4]);
  return p->helper > 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  pa_path p = {0};
  if (!parse_path(argc, argv, &p)) {
    fprintf(stderr,
            "usage: proxy_app keyhold SOCK PORT HELPER PHASE SECS N"
            " | plain NEW_PORT RESUME_PORT HELPER PHASE SECS N\n"
            "  PHASE: bulk | rtt | new | resumed\n");
    return 2;
  }
  const char *phase = argv[5];
  double secs = atof(argv[6]);
  int n = atoi(argv[7]);
  if (strcmp(phase, "bulk") == 0)
    phase_bulk(&p, secs);
  else if (strcmp(phase, "rtt") == 0)
    phase_rtt(&p, secs);
  else if (strcmp(phase, "new") == 0 || strcmp(phase, "resumed") == 0)
    phase_setup(&p, phase[0] == 'n' ? 'F' : 'R', n);
  else
    die("unknown phase", phase);
  if (p.kc != NULL) kh_client_free(p.kc);
  return 0;
}

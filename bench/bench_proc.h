/* bench_proc.h: what every benchmark program shares: a monotonic clock, a
 * comparator for sorting samples, and, for the drivers that start keyholdd,
 * where it is built, a scratch directory holding the test PKI, stopping a
 * child within a bound, and removing the scratch directory. Header-only
 * (like hs_common.h): the worker programs link either TLS library, never
 * both, and share no object. */
#ifndef KH_BENCH_PROC_H
#define KH_BENCH_PROC_H

#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static inline double bp_now(void) { /* seconds, monotonic */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bp_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#ifdef KH_SOURCE_ROOT
/* bp_keyholdd writes the path of the keyholdd built beside bench/ (and, if
 * |bin| is not NULL, this program's directory) into PATH_MAX buffers. */
static inline int bp_keyholdd(char *kd, char *bin) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return 0;
  self[n] = '\0';
  const char *dir = dirname(self);
  if (bin != NULL) snprintf(bin, PATH_MAX, "%s", dir);
  snprintf(kd, PATH_MAX, "%.*s/../sidecar/keyholdd", PATH_MAX - 32, dir);
  return access(kd, X_OK) == 0;
}

/* bp_scratch makes /tmp/kh-NAME.XXXXXX in |tmp| (64 bytes) with the test PKI
 * of tests/make-test-pki.sh (or $KH_TEST_PKI) in tmp/pki. NULL on success,
 * else what failed. */
static inline const char *bp_scratch(char *tmp, const char *name) {
  snprintf(tmp, 64, "/tmp/kh-%.20s.XXXXXX", name);
  if (mkdtemp(tmp) == NULL) {
    tmp[0] = '\0';
    return "mkdtemp";
  }
  char cmd[PATH_MAX + 128];
  const char *pki = getenv("KH_TEST_PKI");
  snprintf(cmd, sizeof(cmd), "bash %s %s/pki >/dev/null 2>&1",
           pki ? pki : KH_SOURCE_ROOT "/tests/make-test-pki.sh", tmp);
  return system(cmd) == 0 ? NULL : "cannot make the test PKI";
}

/* The files of bp_scratch's PKI a handshake benchmark hands its workers:
 * keyholdd's identities, the peer's server and client pairs, the CA. */
typedef struct {
  char ids[PATH_MAX], ca[PATH_MAX];
  char scrt[PATH_MAX], skey[PATH_MAX]; /* peer/server.{crt,key} */
  char ccrt[PATH_MAX], ckey[PATH_MAX]; /* peer/client.{crt,key} */
} bp_pki;

static inline void bp_pki_paths(bp_pki *p, const char *tmp) {
  snprintf(p->ids, sizeof(p->ids), "%.200s/pki/ids", tmp);
  snprintf(p->ca, sizeof(p->ca), "%.200s/pki/ca/ca.crt", tmp);
  snprintf(p->scrt, sizeof(p->scrt), "%.200s/pki/peer/server.crt", tmp);
  snprintf(p->skey, sizeof(p->skey), "%.200s/pki/peer/server.key", tmp);
  snprintf(p->ccrt, sizeof(p->ccrt), "%.200s/pki/peer/client.crt", tmp);
  snprintf(p->ckey, sizeof(p->ckey), "%.200s/pki/peer/client.key", tmp);
}
#endif

/* bp_start_keyholdd starts |kd| on socket |sock| with identities |ids|
 * (stderr to /dev/null) and waits (up to 10 s) for the socket; -1 if it
 * did not come up. */
static inline pid_t bp_start_keyholdd(const char *kd, const char *sock, const char *ids) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (freopen("/dev/null", "w", stderr) == NULL) _exit(127);
    execl(kd, kd, "--socket", sock, "--identities", ids, (char *)NULL);
    _exit(127);
  }
  struct stat st;
  for (int i = 0; i < 400 && stat(sock, &st) != 0; i++) usleep(25000);
  return stat(sock, &st) == 0 ? pid : -1;
}

/* bp_stop sends SIGTERM to |pid| and waits up to |secs| for it, then sends
 * SIGKILL. Sets *status; returns the seconds it took, or -1 if killed. */
static inline double bp_stop(pid_t pid, double secs, int *status) {
  double t0 = bp_now();
  *status = 0;
  kill(pid, SIGTERM);
  pid_t r;
  while ((r = waitpid(pid, status, WNOHANG)) == 0 && bp_now() < t0 + secs) usleep(1000);
  if (r != 0) return bp_now() - t0;
  kill(pid, SIGKILL);
  waitpid(pid, status, 0);
  return -1;
}

/* bp_remove_scratch removes |tmp| (and empties it), unless KH_BENCH_KEEP is
 * set, then says where it is. */
static inline void bp_remove_scratch(char *tmp, const char *prog) {
  if (tmp[0] == '\0') return;
  if (getenv("KH_BENCH_KEEP") != NULL) {
    fprintf(stderr, "%s: kept %s (KH_BENCH_KEEP)\n", prog, tmp);
  } else {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "%s: cannot remove %s\n", prog, tmp);
  }
  tmp[0] = '\0';
}

#endif /* KH_BENCH_PROC_H */

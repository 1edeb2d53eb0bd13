/* bench_driver.h: the driver side of the benchmarks that start worker
 * programs (handshake_bench, grpc_floor_bench): spawn a worker with its
 * stdout on a pipe, read the "port N" line of a server, run a client to the
 * end and parse its result line (hs_common.h's hs_report), read a running
 * process's CPU time from /proc, and on any failure stop the workers,
 * remove the scratch directory and exit 1. Header-only, like bench_proc.h. */
#ifndef KH_BENCH_DRIVER_H
#define KH_BENCH_DRIVER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_proc.h"

#define BD_MAX_PIDS 8

/* What a client worker reports (hs_report's line). */
typedef struct {
  double rate, p50, p99, cpu; /* cpu: seconds of the worker's own CPU */
  size_t n, failed;
} bd_result;

/* The workers started so far (servers stay until bd_cleanup), and what
 * bd_cleanup removes: the driver's name and scratch directory (bd_init). */
static pid_t bd_pids[BD_MAX_PIDS];
static int bd_npids;
static const char *bd_prog = "bench";
static char *bd_tmp;

static inline void bd_init(const char *prog, char *tmp) {
  bd_prog = prog;
  bd_tmp = tmp;
}

/* bd_cleanup stops every worker still running (SIGTERM, then SIGKILL) and
 * removes the scratch directory (bp_remove_scratch). */
static inline void bd_cleanup(void) {
  int status;
  for (int i = 0; i < bd_npids; i++) bp_stop(bd_pids[i], 10, &status);
  bd_npids = 0;
  if (bd_tmp != NULL) bp_remove_scratch(bd_tmp, bd_prog);
}

static inline void bd_die(const char *what) {
  fprintf(stderr, "%s: %s\n", bd_prog, what);
  bd_cleanup();
  exit(1);
}

/* bd_spawn starts argv in the background; its stdout comes back on the
 * returned FILE. */
static inline FILE *bd_spawn(char *const argv[], pid_t *pid) {
  int p[2];
  if (bd_npids == BD_MAX_PIDS || pipe(p) != 0) bd_die("cannot start a worker");
  *pid = fork();
  if (*pid < 0) bd_die("fork");
  if (*pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  bd_pids[bd_npids++] = *pid;
  return fdopen(p[0], "r");
}

/* bd_read_port reads a server's "port N" line. */
static inline int bd_read_port(FILE *f) {
  int port = 0;
  char line[256];
  if (fgets(line, sizeof(line), f) == NULL || sscanf(line, "port %d", &port) != 1)
    bd_die("a server did not start");
  return port;
}

/* bd_run_client runs a client worker to its end and returns its result. */
static inline bd_result bd_run_client(char *const argv[]) {
  pid_t pid;
  FILE *f = bd_spawn(argv, &pid);
  char line[512];
  bd_result r = {0};
  if (fgets(line, sizeof(line), f) == NULL ||
      sscanf(line, "handshakes=%zu failed=%zu seconds=%*f rate=%lf p50_us=%lf p99_us=%lf cpu_s=%lf",
             &r.n, &r.failed, &r.rate, &r.p50, &r.p99, &r.cpu) != 6)
    bd_die("a client produced no result");
  fclose(f);
  waitpid(pid, NULL, 0);
  bd_npids--; /* it was the last one spawned */
  return r;
}

/* bd_proc_cpu: seconds of CPU (user + system, all threads) that process
 * |pid| has used, from /proc/PID/stat (clock-tick resolution); -1 if it
 * cannot be read. */
static inline double bd_proc_cpu(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long utime, stime;
  /* after ")": state, then fields 4..13, then utime (14) and stime (15) */
  if (p == NULL ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

#endif /* KH_BENCH_DRIVER_H */

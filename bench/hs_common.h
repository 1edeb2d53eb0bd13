/* hs_common.h: the parts of the handshake benchmark's worker programs that
 * do not touch TLS (sockets, clocks, latency statistics). Header-only so
 * the BoringSSL worker and the libkeyhold worker share it without linking a
 * common object into both process kinds. */
#ifndef KH_HS_COMMON_H
#define KH_HS_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_proc.h"

#define HS_MAX_SAMPLES 2000000

/* hs_listen: a TCP listener on 127.0.0.1:0; prints "port N" on stdout. */
static inline int hs_listen(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("listen");
    exit(1);
  }
  printf("port %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  return fd;
}

static inline int hs_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* hs_cpu: seconds of CPU (user + system, every thread) this process used. */
static inline double hs_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* hs_report prints the line the driver parses (bench_driver.h). |lat| holds
 * seconds; |cpu| is this process's CPU seconds over the same run. */
static inline void hs_report(size_t n, size_t failed, double secs, double *lat, double cpu) {
  qsort(lat, n, sizeof(double), bp_cmp_double);
  double p50 = n ? lat[n / 2] * 1e6 : 0, p99 = n ? lat[(n * 99) / 100] * 1e6 : 0;
  printf("handshakes=%zu failed=%zu seconds=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f cpu_s=%.4f\n", n,
         failed, secs, secs > 0 ? (double)n / secs : 0, p50, p99, cpu);
  fflush(stdout);
}

/* Samples of all client threads, merged by hs_merge. */
static pthread_mutex_t hs_mu = PTHREAD_MUTEX_INITIALIZER;
static double *hs_lat;
static size_t hs_n, hs_failed;

/* hs_merge adds one thread's |n| latencies and |failed| count, frees |lat|. */
static inline void hs_merge(double *lat, size_t n, size_t failed) {
  pthread_mutex_lock(&hs_mu);
  for (size_t i = 0; i < n && hs_n < HS_MAX_SAMPLES; i++) hs_lat[hs_n++] = lat[i];
  hs_failed += failed;
  pthread_mutex_unlock(&hs_mu);
  free(lat);
}

/* Two rounds: every client thread is set up, then the measured run starts. */
static pthread_barrier_t hs_barrier;

/* hs_wait_start: each client thread calls it once, when it is set up (and
 * has made its unmeasured first handshake: a gRPC channel connects then);
 * it returns when the measured run has started (*end is set). */
static inline void hs_wait_start(void) {
  pthread_barrier_wait(&hs_barrier);
  pthread_barrier_wait(&hs_barrier);
}

/* hs_run_clients runs |conc| threads of |client|; once all have called
 * hs_wait_start, they run until |*end| (set then to now + |secs|); then it
 * prints the result line from what they merged, with the CPU this process
 * used over the measured run (their set-up left out). */
static inline void hs_run_clients(int conc, double secs, void *(*client)(void *), double *end) {
  pthread_t *t = calloc((size_t)conc, sizeof(*t));
  hs_lat = malloc(sizeof(double) * HS_MAX_SAMPLES);
  pthread_barrier_init(&hs_barrier, NULL, (unsigned)conc + 1);
  for (int i = 0; i < conc; i++) pthread_create(&t[i], NULL, client, NULL);
  pthread_barrier_wait(&hs_barrier); /* all set up */
  double t0 = bp_now(), cpu0 = hs_cpu();
  *end = t0 + secs;
  pthread_barrier_wait(&hs_barrier); /* go */
  for (int i = 0; i < conc; i++) pthread_join(t[i], NULL);
  hs_report(hs_n, hs_failed, bp_now() - t0, hs_lat, hs_cpu() - cpu0);
  pthread_barrier_destroy(&hs_barrier);
  free(t);
}

#endif /* KH_HS_COMMON_H */

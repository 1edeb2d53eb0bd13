/* hs_keyhold: "ours" in the handshake benchmark: the same work as hs_bssl,
 * with the handshake offloaded to keyholdd through libkeyhold (this process
 * links OpenSSL's libcrypto, never BoringSSL).
 *   hs_keyhold server SOCKET THREADS            prints "port N", serves until killed
 *   hs_keyhold client SOCKET PORT CONC SECS [untimed-tickets]
 *                                                prints one result line; with
 *     untimed-tickets the peer's tickets go back to keyholdd after the clock
 *     stops (set-up latency: the application has its first byte by then)
 *   hs_keyhold floor SOCKET SECS                 one S2A call per iteration that
 *     keyholdd refuses at once (unknown identity): gRPC's call + round-trip
 *     cost without any TLS work, in the same result-line format */
#include <pthread.h>
#include <signal.h>

#include "hs_common.h"
#include "keyhold.h"

static const char *g_sock;
static int g_lfd, g_port, g_untimed_tickets;
static double g_end;

static kh_client *new_client(void) {
  kh_error err;
  kh_client *kc = kh_client_new(g_sock, &err);
  if (kc == NULL) {
    fprintf(stderr, "hs_keyhold: %s\n", err.msg);
    exit(1);
  }
  return kc;
}

static void *serve(void *arg) {
  (void)arg;
  kh_client *kc = new_client();
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = "spiffe://example.org/server";
  for (;;) {
    int fd = accept(g_lfd, NULL, NULL);
    if (fd < 0) continue;
    kh_error err;
    kh_conn *c = kh_accept_fd(kc, fd, &o, &err);
    if (c != NULL) {
      /* A client that already left makes these fail; the bench counts
       * handshakes on the client side only. */
      if (!kh_conn_write(c, "k", 1, &err) || !kh_conn_close(c, &err)) kh_error_clear(&err);
      kh_conn_free(c);
    }
    close(fd);
  }
  return NULL;
}

/* one_handshake: connect, handshake, read the server's byte; its seconds,
 * or -1. kh_connect_host runs the S2A start while TCP connects, as an
 * application should. */
static double one_handshake(kh_client *kc, const kh_handshake_opts *o) {
  double t0 = bp_now(), took = -1;
  char port[16];
  snprintf(port, sizeof(port), "%d", g_port);
  kh_error err;
  kh_conn *c = kh_connect_host(kc, "127.0.0.1", port, o, &err);
  char b;
  int ok = c != NULL && kh_conn_read(c, &b, 1, &err) == 1;
  /* Tickets that came with the byte go back to keyholdd inside the timed
   * window (as the read path used to do it) unless untimed-tickets; a
   * failure there is ignored. */
  if (ok && g_untimed_tickets) took = bp_now() - t0;
  if (ok && !kh_conn_flush_tickets(c, &err)) kh_error_clear(&err);
  if (ok && !g_untimed_tickets) took = bp_now() - t0;
  kh_conn_free(c); /* closes its socket */
  return took;
}

static void *client(void *arg) {
  (void)arg;
  kh_client *kc = new_client();
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = "spiffe://example.org/client";
  o.server_name = "localhost";
  double *lat = malloc(sizeof(double) * 200000);
  size_t n = 0, failed = 0;
  (void)one_handshake(kc, &o); /* unmeasured: the channel to keyholdd connects */
  hs_wait_start();
  while (bp_now() < g_end && n < 200000) {
    double took = one_handshake(kc, &o);
    if (took >= 0)
      lat[n++] = took;
    else
      failed++;
  }
  hs_merge(lat, n, failed);
  kh_client_free(kc);
  return NULL;
}

/* floor: kh_connect_fd on a socketpair (nothing reaches it) with an
 * identity keyholdd does not hold: ClientStart out, error status back. */
static void floor_run(double secs) {
  kh_client *kc = new_client();
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = "spiffe://example.org/no-such-identity";
  size_t n = 0, failed = 0;
  double t0 = bp_now(), end = t0 + secs, cpu0 = hs_cpu();
  while (bp_now() < end && n < HS_MAX_SAMPLES) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) break;
    double t = bp_now();
    kh_error err;
    kh_conn *c = kh_connect_fd(kc, sv[0], &o, &err);
    if (c == NULL && err.code == KH_ERR_NOT_FOUND)
      hs_lat[n++] = bp_now() - t;
    else
      failed++;
    kh_conn_free(c);
    close(sv[0]);
    close(sv[1]);
  }
  hs_report(n, failed, bp_now() - t0, hs_lat, hs_cpu() - cpu0);
  kh_client_free(kc);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && strcmp(argv[1], "server") == 0) {
    g_sock = argv[2];
    g_lfd = hs_listen();
    int threads = atoi(argv[3]);
    pthread_t t;
    for (int i = 0; i < threads; i++) pthread_create(&t, NULL, serve, NULL);
    pause();
    return 0;
  }
  if ((argc == 6 || (argc == 7 && strcmp(argv[6], "untimed-tickets") == 0)) &&
      strcmp(argv[1], "client") == 0) {
    g_untimed_tickets = argc == 7;
    g_sock = argv[2];
    g_port = atoi(argv[3]);
    hs_run_clients(atoi(argv[4]), atof(argv[5]), client, &g_end);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "floor") == 0) {
    g_sock = argv[2];
    hs_lat = malloc(sizeof(double) * HS_MAX_SAMPLES);
    floor_run(atof(argv[3]));
    return 0;
  }
  fprintf(stderr,
          "usage: hs_keyhold server SOCKET THREADS | client SOCKET PORT CONC SECS"
          " [untimed-tickets]"
          " | floor SOCKET SECS\n");
  return 2;
}

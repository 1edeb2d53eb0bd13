/* hs_bssl: the in-process baseline of the handshake benchmark (BoringSSL
 * only, like keyholdd). Also plays the peer.
 *   hs_bssl server CERT KEY CA THREADS          prints "port N", serves until killed
 *   hs_bssl client PORT CERT KEY CA CONC SECS   prints one result line
 *   hs_bssl hold CERT KEY CA N                  N client handshakes in flight in
 *     this process (scale_bench's baseline); prints "held=N rss_kib_per_session=X"
 * Every handshake is mutual TLS 1.3 with P-256 and chain verification; the
 * server writes one byte after it, the client reads it (so both sides have
 * finished) and closes. No tickets: every handshake is a full one. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hs_common.h"

static SSL_CTX *g_ctx;
static int g_lfd, g_port, g_conc;
static double g_end;

static SSL_CTX *make_ctx(int server, const char *cert, const char *key, const char *ca) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_use_certificate_chain_file(ctx, cert) ||
      !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) ||
      !SSL_CTX_load_verify_locations(ctx, ca, NULL)) {
    fprintf(stderr, "hs_bssl: cannot load %s / %s / %s\n", cert, key, ca);
    exit(1);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  (void)server;
  return ctx;
}

static void *serve(void *arg) {
  (void)arg;
  for (;;) {
    int fd = accept(g_lfd, NULL, NULL);
    if (fd < 0) continue;
    SSL *ssl = SSL_new(g_ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      SSL_write(ssl, "k", 1);
      SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
  }
  return NULL;
}

/* one_handshake: connect, handshake, read the server's byte; 1 if done. */
static int one_handshake(void) {
  int fd = hs_connect(g_port);
  SSL *ssl = SSL_new(g_ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  char b;
  int ok = fd >= 0 && SSL_connect(ssl) == 1 && SSL_read(ssl, &b, 1) == 1;
  ERR_clear_error();
  SSL_free(ssl);
  if (fd >= 0) close(fd);
  return ok;
}

static void *client(void *arg) {
  (void)arg;
  double *lat = malloc(sizeof(double) * 200000);
  size_t n = 0, failed = 0;
  one_handshake(); /* unmeasured, as hs_keyhold's first */
  hs_wait_start();
  while (bp_now() < g_end && n < 200000) {
    double t0 = bp_now();
    if (one_handshake())
      lat[n++] = bp_now() - t0;
    else
      failed++;
  }
  hs_merge(lat, n, failed);
  return NULL;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f != NULL && fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) v = strtol(line + 6, NULL, 10);
  if (f != NULL) fclose(f);
  return v;
}

/* held_client: an SSL that has sent its ClientHello and waits for the
 * server's flight, as an application's in-process client does: it writes to
 * a socket (here /dev/null, shared: nothing is buffered) and reads from an
 * empty memory BIO (retry: no socket is readable yet). */
static SSL *held_client(int devnull) {
  SSL *ssl = SSL_new(g_ctx);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new_fd(devnull, BIO_NOCLOSE);
  if (ssl == NULL || rb == NULL || wb == NULL) return NULL;
  SSL_set_bio(ssl, rb, wb);
  SSL_set_connect_state(ssl);
  SSL_set_tlsext_host_name(ssl, "localhost");
  int r = SSL_do_handshake(ssl);
  if (r == 1 || SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
    SSL_free(ssl);
    return NULL;
  }
  return ssl;
}

/* hold: VmRSS growth per held client handshake, after a warm-up of one. */
static int hold(int n) {
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  SSL **held = calloc((size_t)n, sizeof(*held));
  SSL *warm = devnull >= 0 && held != NULL ? held_client(devnull) : NULL;
  if (warm == NULL) return 1;
  SSL_free(warm);
  long before = rss_kib();
  for (int i = 0; i < n; i++)
    if ((held[i] = held_client(devnull)) == NULL) return 1;
  long after = rss_kib();
  printf("held=%d rss_kib_per_session=%.2f\n", n, (double)(after - before) / n);
  for (int i = 0; i < n; i++) SSL_free(held[i]);
  free(held);
  close(devnull);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 6 && strcmp(argv[1], "server") == 0) {
    g_ctx = make_ctx(1, argv[2], argv[3], argv[4]);
    g_lfd = hs_listen();
    int threads = atoi(argv[5]);
    pthread_t t;
    for (int i = 0; i < threads; i++) pthread_create(&t, NULL, serve, NULL);
    pause();
    return 0;
  }
  if (argc == 8 && strcmp(argv[1], "client") == 0) {
    g_port = atoi(argv[2]);
    g_ctx = make_ctx(0, argv[3], argv[4], argv[5]);
    g_conc = atoi(argv[6]);
    hs_run_clients(g_conc, atof(argv[7]), client, &g_end);
    return 0;
  }
  if (argc == 6 && strcmp(argv[1], "hold") == 0 && atoi(argv[5]) > 0) {
    g_ctx = make_ctx(0, argv[2], argv[3], argv[4]);
    return hold(atoi(argv[5]));
  }
  fprintf(stderr,
          "usage: hs_bssl server CERT KEY CA THREADS | client PORT CERT KEY CA CONC SECS"
          " | hold CERT KEY CA N\n");
  return 2;
}

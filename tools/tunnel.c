/* tunnel.c: `keyhold tunnel`, a TLS tunnel whose private key stays in keyholdd.
 *   client: plaintext TCP in on a loopback --listen, offloaded mTLS out to --target
 *   server: offloaded mTLS in on --listen, plaintext TCP out to a loopback --target
 * One detached thread per connection (at most --max-conns), one shared
 * kh_client (thread-safe). Each direction ends on its own: the app's EOF
 * becomes our close_notify, the peer's close_notify becomes shutdown(SHUT_WR)
 * on the plaintext socket; the connection closes once both ended. */
#include "tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "keyhold.h"

typedef struct {
  int server, allow_remote;
  const char *sidecar, *listen, *target;
  char *lhost, *lport, *thost, *tport; /* split copies of --listen and --target */
  long max_conns;
  kh_handshake_opts hs;
  kh_client *kc;
} tun_cfg;

typedef struct {
  const tun_cfg *cfg;
  int fd; /* the accepted connection */
  unsigned long id;
  char addr[64];
} tun_job;

typedef struct {
  kh_conn *c;
  int tls_fd, plain_fd;
  int app_open, peer_open;     /* still reading the plaintext side, the TLS side */
  unsigned long long up, down; /* bytes app -> peer, peer -> app */
  char why[320];
} relay;

static atomic_long active;
static atomic_ulong next_id;

static void usage(FILE *f) {
  fprintf(f,
          "usage:\n"
          "  keyhold tunnel client --sidecar PATH --listen 127.0.0.1:PORT --target HOST:PORT\n"
          "      [--identity ID] [--expect-peer ID]... [--alpn P]... [--servername NAME]\n"
          "      [--timeout MS] [--max-conns N] [--allow-remote]\n"
          "  keyhold tunnel server --sidecar PATH --listen HOST:PORT --target 127.0.0.1:PORT\n"
          "      [--identity ID] [--expect-peer ID]... [--alpn P]... [--timeout MS]\n"
          "      [--max-conns N] [--allow-remote]\n"
          "client: plaintext on --listen (loopback unless --allow-remote), mTLS to --target.\n"
          "server: mTLS on --listen, plaintext to --target (loopback unless --allow-remote).\n"
          "--sidecar defaults to $KEYHOLD_SIDECAR; --max-conns to 256. docs/SHIM.md.\n");
}

__attribute__((format(printf, 1, 2), noreturn)) static void bad_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("keyhold tunnel: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void add_opt(const char **list, size_t *n, size_t max, const char *flag, const char *v) {
  if (*n == max) bad_usage("too many %s (at most %zu)", flag, max);
  list[(*n)++] = v;
}

static void parse(int argc, char **argv, tun_cfg *o) {
  static const struct option opts[] = {
      {"sidecar", required_argument, NULL, 's'},
      {"listen", required_argument, NULL, 'l'},
      {"target", required_argument, NULL, 'g'},
      {"identity", required_argument, NULL, 'i'},
      {"expect-peer", required_argument, NULL, 'p'},
      {"alpn", required_argument, NULL, 'a'},
      {"servername", required_argument, NULL, 'n'},
      {"timeout", required_argument, NULL, 't'},
      {"max-conns", required_argument, NULL, 'm'},
      {"allow-remote", no_argument, NULL, 'r'},
      {"access-token", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  o->sidecar = getenv("KEYHOLD_SIDECAR");
  o->max_conns = 256;
  optind = 3;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 's': o->sidecar = optarg; break;
      case 'l': o->listen = optarg; break;
      case 'g': o->target = optarg; break;
      case 'i': o->hs.local_identity = optarg; break;
      case 'p':
        add_opt(o->hs.expect_peers, &o->hs.expect_peer_count, KH_MAX_PEERS, "--expect-peer",
                optarg);
        break;
      case 'a': add_opt(o->hs.alpn, &o->hs.alpn_count, KH_MAX_PROTOCOLS, "--alpn", optarg); break;
      case 'n': o->hs.server_name = optarg; break;
      case 't': o->hs.timeout_ms = (int)kh_cli_number("--timeout", optarg, 1, 3600000); break;
      case 'm': o->max_conns = kh_cli_number("--max-conns", optarg, 1, 65536); break;
      case 'r': o->allow_remote = 1; break;
      case 'T': o->hs.access_token = optarg; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (optind != argc) bad_usage("unexpected argument '%s'", argv[optind]);
}

static void split(const char *flag, const char *v, char **host, char **port) {
  if (v == NULL) bad_usage("%s is required", flag);
  char *copy = strdup(v);
  if (copy == NULL || !kh_cli_split_hostport(copy, host, port))
    bad_usage("%s '%s': HOST:PORT expected", flag, v);
  kh_cli_number(flag, *port, 0, 65535);
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  return sa->sa_family == AF_INET6 &&
         IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* resolve: the addresses of |host|:|port| or dies naming |flag|. */
static struct addrinfo *resolve(const char *flag, const char *host, const char *port, int flags) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = flags}, *res;
  int r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (r != 0) kh_cli_die("tunnel: %s: cannot resolve '%s': %s", flag, host, gai_strerror(r));
  return res;
}

/* require_loopback: plaintext must stay on this host unless --allow-remote. */
static void require_loopback(const tun_cfg *o, const char *flag, const char *host,
                             const char *port) {
  if (o->allow_remote) return;
  struct addrinfo *res = resolve(flag, host, port, AI_PASSIVE);
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
    if (!is_loopback(ai->ai_addr))
      bad_usage("%s %s:%s is not a loopback address and carries plaintext: add --allow-remote",
                flag, host, port);
  freeaddrinfo(res);
}

static void check(tun_cfg *o) {
  split("--listen", o->listen, &o->lhost, &o->lport);
  split("--target", o->target, &o->thost, &o->tport);
  if (o->sidecar == NULL) bad_usage("--sidecar PATH (or KEYHOLD_SIDECAR) is required");
  if (o->server && o->hs.server_name != NULL) bad_usage("--servername is for client mode");
  if (!o->server && o->hs.server_name == NULL) o->hs.server_name = o->thost;
  if (o->server)
    require_loopback(o, "--target", o->thost, o->tport);
  else
    require_loopback(o, "--listen", o->lhost, o->lport);
}

/* --- forwarding ------------------------------------------------------------ */

static int write_plain(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 0;
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

static int stop(relay *r, const char *what, const kh_error *err) {
  if (err != NULL)
    snprintf(r->why, sizeof(r->why), "%s: %s [%s]", what, err->msg, kh_code_name(err->code));
  else
    snprintf(r->why, sizeof(r->why), "%s: %s", what, strerror(errno));
  return -1;
}

/* from_app: one read of the plaintext side; its EOF sends our close_notify. */
static int from_app(relay *r) {
  char buf[16384];
  kh_error err;
  ssize_t n = read(r->plain_fd, buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
  if (n < 0) return stop(r, "app read failed", NULL);
  if (n == 0) {
    r->app_open = 0;
    if (!r->peer_open) snprintf(r->why, sizeof(r->why), "peer closed first");
    /* A peer that already sent its close_notify may be gone: no failure. */
    if (!kh_conn_close(r->c, &err) && r->peer_open) return stop(r, "close_notify failed", &err);
    return 0;
  }
  if (!kh_conn_write(r->c, buf, (size_t)n, &err)) return stop(r, "write to peer failed", &err);
  r->up += (unsigned long long)n;
  return 0;
}

/* from_peer: drains what the shim can decrypt now (at most 8 reads; run_relay
 * comes back while kh_conn_pending says more is held); the peer's
 * close_notify half-closes the app. -1 after a failure. */
static int from_peer(relay *r) {
  char buf[16384];
  kh_error err;
  for (int i = 0; i < 8; i++) {
    ssize_t n = kh_conn_read(r->c, buf, sizeof(buf), &err);
    if (n < 0 && err.code == KH_ERR_WANT_READ) return 0;
    if (n < 0) return stop(r, "peer", &err);
    if (n == 0) {
      r->peer_open = 0;
      if (!r->app_open) snprintf(r->why, sizeof(r->why), "app closed first");
      shutdown(r->plain_fd, SHUT_WR);
      return 0;
    }
    if (!write_plain(r->plain_fd, buf, (size_t)n)) return stop(r, "app write failed", NULL);
    r->down += (unsigned long long)n;
  }
  return 0;
}

/* run_relay forwards both ways until both directions ended (1) or one failed (0). */
static int run_relay(relay *r) {
  const short ready = POLLIN | POLLHUP | POLLERR;
  while (r->app_open || r->peer_open) {
    /* What the shim already holds (kh_conn_pending) is read before polling:
     * poll() cannot see it. */
    int held = r->peer_open && kh_conn_pending(r->c) > 0;
    struct pollfd p[2] = {{.fd = r->peer_open ? r->tls_fd : -1, .events = POLLIN},
                          {.fd = r->app_open ? r->plain_fd : -1, .events = POLLIN}};
    if (poll(p, 2, held ? 0 : -1) < 0) {
      if (errno == EINTR) continue;
      stop(r, "poll", NULL);
      return 0;
    }
    if (r->app_open && (p[1].revents & ready) && from_app(r) < 0) return 0;
    if (r->peer_open && (held || (p[0].revents & ready)) && from_peer(r) < 0) return 0;
  }
  return 1;
}

/* --- one connection -------------------------------------------------------- */

static long ms_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void log_open(const tun_job *j, const kh_conn *c) {
  kh_conn_info in;
  kh_conn_get_info(c, &in);
  fprintf(stderr, "keyhold: tunnel #%lu %s open peer=%s %s %s alpn=%s local=%s%s\n", j->id, j->addr,
          in.peer_identity[0] ? in.peer_identity : "-", in.version, in.ciphersuite,
          in.alpn[0] ? in.alpn : "-", in.local_identity, in.resumed ? " resumed" : "");
}

/* handshake: the TLS side of |j| (client: dials --target, the sidecar's
 * first round trip meanwhile; the connection owns that socket); NULL after
 * logging. */
static kh_conn *handshake(const tun_job *j, int *tls_fd) {
  const tun_cfg *o = j->cfg;
  kh_error err;
  kh_conn *c = o->server ? kh_accept_fd(o->kc, j->fd, &o->hs, &err)
                         : kh_connect_host(o->kc, o->thost, o->tport, &o->hs, &err);
  if (c == NULL)
    fprintf(stderr, "keyhold: tunnel #%lu %s handshake failed: %s [%s]\n", j->id, j->addr, err.msg,
            kh_code_name(err.code));
  else
    *tls_fd = kh_conn_fd(c);
  return c;
}

static void serve_conn(const tun_job *j) {
  const tun_cfg *o = j->cfg;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  relay r = {.plain_fd = j->fd, .app_open = 1, .peer_open = 1};
  if ((r.c = handshake(j, &r.tls_fd)) == NULL) return;
  char msg[300];
  if (o->server && (r.plain_fd = kh_cli_tcp_connect(o->thost, o->tport, msg, sizeof(msg))) < 0) {
    fprintf(stderr, "keyhold: tunnel #%lu %s failed: --target %s\n", j->id, j->addr, msg);
    kh_conn_free(r.c);
    return;
  }
  log_open(j, r.c);
  /* Non-blocking: records without application data (tickets, KeyUpdates)
   * must not hold the other direction hostage in kh_conn_read. */
  fcntl(r.tls_fd, F_SETFL, fcntl(r.tls_fd, F_GETFL) | O_NONBLOCK);
  int ok = run_relay(&r);
  kh_error err; /* tickets that came after our close_notify, for resumption */
  if (!o->server && ok && !kh_conn_flush_tickets(r.c, &err))
    fprintf(stderr, "keyhold: tunnel #%lu session tickets not handed back: %s\n", j->id, err.msg);
  fprintf(
      stderr,
      "keyhold: tunnel #%lu %s closed: %llu bytes app->peer, %llu bytes peer->app, %ld ms, %s%s\n",
      j->id, j->addr, r.up, r.down, ms_since(&t0), ok ? "" : "error: ", r.why);
  kh_conn_free(r.c); /* a client's: closes tls_fd */
  if (o->server) close(r.plain_fd);
}

static void *conn_thread(void *arg) {
  tun_job *j = arg;
  serve_conn(j);
  close(j->fd);
  atomic_fetch_sub(&active, 1);
  free(j);
  return NULL;
}

/* --- listener -------------------------------------------------------------- */

static int open_listener(const tun_cfg *o) {
  char addr[80], msg[300];
  int ls = kh_cli_tcp_listen(o->lhost, o->lport, 128, addr, sizeof(addr), msg, sizeof(msg));
  if (ls < 0) kh_cli_die("tunnel: --listen %s: %s", o->listen, msg);
  fprintf(stderr, "keyhold: tunnel %s -> %s\n", o->server ? "server (TLS in)" : "client (TLS out)",
          o->target);
  fprintf(stderr, "keyhold: tunnel listening on %s\n", addr);
  fflush(stderr);
  return ls;
}

static void spawn(const tun_cfg *o, int fd, const struct sockaddr_storage *peer) {
  tun_job *j = calloc(1, sizeof(*j));
  if (j == NULL) return (void)close(fd);
  j->cfg = o;
  j->fd = fd;
  j->id = atomic_fetch_add(&next_id, 1) + 1;
  kh_cli_format_addr(peer, j->addr, sizeof(j->addr));
  char why[64] = "cannot start a thread";
  pthread_t t;
  if (atomic_fetch_add(&active, 1) >= o->max_conns)
    snprintf(why, sizeof(why), "--max-conns %ld reached", o->max_conns);
  else if (pthread_create(&t, NULL, conn_thread, j) == 0)
    return (void)pthread_detach(t);
  fprintf(stderr, "keyhold: tunnel #%lu %s refused: %s\n", j->id, j->addr, why);
  atomic_fetch_sub(&active, 1);
  close(fd);
  free(j);
}

int kh_cli_tunnel(int argc, char **argv) {
  tun_cfg o = {0};
  const char *mode = argc > 2 ? argv[2] : "";
  if (strcmp(mode, "--help") == 0 || strcmp(mode, "-h") == 0) return usage(stdout), 0;
  if (strcmp(mode, "client") != 0 && strcmp(mode, "server") != 0) {
    usage(stderr);
    bad_usage("client or server expected, not '%s'", mode);
  }
  o.server = strcmp(mode, "server") == 0;
  parse(argc, argv, &o);
  check(&o);
  kh_error err;
  if ((o.kc = kh_client_new(o.sidecar, &err)) == NULL)
    kh_cli_die("tunnel: --sidecar %s: %s", o.sidecar, err.msg);
  int ls = open_listener(&o);
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t pl = sizeof(peer);
    int fd = accept4(ls, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    if (fd >= 0) {
      spawn(&o, fd, &peer);
    } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      fprintf(stderr, "keyhold: tunnel accept: %s\n", strerror(errno));
      usleep(100000);
    } else if (errno != EINTR && errno != ECONNABORTED) {
      kh_cli_die("tunnel: accept: %s", strerror(errno));
    }
  }
}

/* keyhold: command-line client of libkeyhold.
 *   keyhold connect ...   offloaded mTLS client, like `openssl s_client -quiet`
 *   keyhold serve ...     offloaded mTLS server (optionally echoing)
 *   keyhold channel ...   secure channels (channel_cmd.c)
 *   keyhold init DIR      development CA and two identities */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyhold.h"
#include "channel_cmd.h"
#include "cli_util.h"
#include "health_cmd.h"
#include "keys_cmd.h"
#include "pki.h"
#include "tunnel.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage:\n"
          "  keyhold connect --sidecar PATH [--identity ID] [--expect-peer ID]... [--alpn P]...\n"
          "                  [--servername NAME] [--key-update] [--timeout MS] HOST:PORT\n"
          "  keyhold serve   --sidecar PATH [--identity ID] [--expect-peer ID]... [--alpn P]...\n"
          "                  --listen HOST:PORT [--echo] [--once]\n"
          "  keyhold channel initiate|respond|pubkey ... (keyhold channel --help)\n"
          "  keyhold tunnel client|server ... (keyhold tunnel --help)\n"
          "  keyhold health  --sidecar PATH [--service NAME] [--timeout MS]\n"
          "  keyhold pubkey|seal|open|dpop ...  sealed messages, DPoP (keyhold seal --help)\n"
          "  keyhold init DIR   a development CA and two identities in a new directory DIR\n"
          "  keyhold --help | --version\n"
          "--sidecar defaults to $KEYHOLD_SIDECAR; --access-token TOKEN (connect and serve)\n"
          "to $S2A_ACCESS_TOKEN.\n");
}

typedef struct {
  const char *sidecar;
  const char *listen;
  const char *target;
  int echo, once, key_update;
  kh_handshake_opts hs;
} options;

static int parse(int argc, char **argv, options *o) {
  static const struct option opts[] = {
      {"sidecar", required_argument, NULL, 's'},
      {"identity", required_argument, NULL, 'i'},
      {"expect-peer", required_argument, NULL, 'p'},
      {"alpn", required_argument, NULL, 'a'},
      {"servername", required_argument, NULL, 'n'},
      {"listen", required_argument, NULL, 'l'},
      {"echo", no_argument, NULL, 'e'},
      {"once", no_argument, NULL, 'o'},
      {"key-update", no_argument, NULL, 'k'},
      {"timeout", required_argument, NULL, 't'},
      {"access-token", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof(*o));
  o->sidecar = getenv("KEYHOLD_SIDECAR");
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 's': o->sidecar = optarg; break;
      case 'i': o->hs.local_identity = optarg; break;
      case 'p':
        if (o->hs.expect_peer_count == KH_MAX_PEERS)
          kh_cli_die("too many --expect-peer (max %s)", "16");
        o->hs.expect_peers[o->hs.expect_peer_count++] = optarg;
        break;
      case 'a':
        if (o->hs.alpn_count == KH_MAX_PROTOCOLS) kh_cli_die("too many --alpn (max %s)", "16");
        o->hs.alpn[o->hs.alpn_count++] = optarg;
        break;
      case 'n': o->hs.server_name = optarg; break;
      case 'l': o->listen = optarg; break;
      case 'e': o->echo = 1; break;
      case 'o': o->once = 1; break;
      case 'k': o->key_update = 1; break;
      case 't': o->hs.timeout_ms = (int)kh_cli_number("--timeout", optarg, 1, 3600000); break;
      case 'T': o->hs.access_token = optarg; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return 0;
    }
  }
  if (optind < argc) o->target = argv[optind++];
  if (optind != argc) {
    kh_cli_fail("%s: unexpected argument '%s' (keyhold %s --help)", argv[1], argv[optind], argv[1]);
    return 0;
  }
  if (o->sidecar == NULL)
    kh_cli_die("%s", "no sidecar socket: use --sidecar PATH or KEYHOLD_SIDECAR");
  return 1;
}

static void print_info(const char *what, const kh_conn *c) {
  kh_conn_info info;
  kh_conn_get_info(c, &info);
  fprintf(stderr, "keyhold: %s %s %s alpn=%s peer=%s local=%s%s\n", what, info.version,
          info.ciphersuite, info.alpn[0] ? info.alpn : "-",
          info.peer_identity[0] ? info.peer_identity : "-", info.local_identity,
          info.resumed ? " resumed" : "");
}

/* --- connect ------------------------------------------------------------- */

/* pump copies stdin to the peer and the peer to stdout until both end. */
static int pump(kh_conn *c, int fd) {
  kh_error err;
  char buf[16384];
  int stdin_open = 1;
  for (;;) {
    if (kh_conn_pending(c) == 0) {
      struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
      if (poll(p, stdin_open ? 2 : 1, -1) < 0) {
        if (errno == EINTR) continue;
        kh_cli_die("poll: %s", strerror(errno));
      }
      if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n > 0) {
          if (!kh_conn_write(c, buf, (size_t)n, &err)) kh_cli_die("%s", err.msg);
        } else {
          stdin_open = 0;
          if (!kh_conn_close(c, &err)) kh_cli_die("%s", err.msg);
        }
      }
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    }
    ssize_t n = kh_conn_read(c, buf, sizeof(buf), &err);
    if (n < 0 && err.code == KH_ERR_WANT_READ) continue;
    if (n < 0) kh_cli_die("%s", err.msg);
    if (n == 0) { /* peer's close_notify */
      /* Our close_notify in answer; a peer already gone is no failure. */
      if (stdin_open && !kh_conn_close(c, &err))
        fprintf(stderr, "keyhold: close_notify not sent: %s\n", err.msg);
      return 0;
    }
    if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) kh_cli_die("%s", "stdout write failed");
    fflush(stdout);
  }
}

static int cmd_connect(options *o) {
  if (o->target == NULL) kh_cli_die("%s", "connect needs HOST:PORT");
  char *target = strdup(o->target), *host, *port;
  if (!kh_cli_split_hostport(target, &host, &port))
    kh_cli_die("bad address '%s' (want HOST:PORT)", o->target);
  if (o->hs.server_name == NULL) o->hs.server_name = host; /* DNS name or IP literal SAN */
  kh_error err;
  kh_client *kc = kh_client_new(o->sidecar, &err);
  if (kc == NULL) kh_cli_die("%s", err.msg);
  /* The sidecar's first round trip runs while the TCP connection is made. */
  kh_conn *c = kh_connect_host(kc, host, port, &o->hs, &err);
  if (c == NULL) kh_cli_die("%s [%s]", err.msg, kh_code_name(err.code));
  int fd = kh_conn_fd(c);
  print_info("connected", c);
  /* Non-blocking from here: records without application data (tickets,
   * KeyUpdates) must not hold stdin hostage in kh_conn_read. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (o->key_update && !kh_conn_key_update(c, 1, &err)) kh_cli_die("%s", err.msg);
  int rc = pump(c, fd);
  /* Tickets that came after our close_notify (kh_conn_close hands back
   * those before it): for the next connect's resumption. */
  if (!kh_conn_flush_tickets(c, &err))
    fprintf(stderr, "keyhold: session tickets not handed back: %s\n", err.msg);
  kh_conn_free(c); /* closes fd */
  kh_client_free(kc);
  free(target);
  return rc;
}

/* --- serve --------------------------------------------------------------- */

typedef struct {
  kh_client *kc;
  options *o;
  int fd;
  char addr[64];
} client_job;

static int serve_one(client_job *j) {
  kh_error err;
  kh_conn *c = kh_accept_fd(j->kc, j->fd, &j->o->hs, &err);
  if (c == NULL) {
    fprintf(stderr, "keyhold: client %s failed: %s [%s]\n", j->addr, err.msg,
            kh_code_name(err.code));
    return 1;
  }
  char what[100];
  snprintf(what, sizeof(what), "accepted %s", j->addr);
  print_info(what, c);
  int rc = 0;
  char buf[16384];
  for (;;) {
    ssize_t n = kh_conn_read(c, buf, sizeof(buf), &err);
    if (n == 0) break;
    if (n < 0) {
      fprintf(stderr, "keyhold: client %s failed: %s\n", j->addr, err.msg);
      rc = 1;
      break;
    }
    if (j->o->echo && !kh_conn_write(c, buf, (size_t)n, &err)) {
      fprintf(stderr, "keyhold: client %s failed: %s\n", j->addr, err.msg);
      rc = 1;
      break;
    }
    if (!j->o->echo) fwrite(buf, 1, (size_t)n, stdout), fflush(stdout);
  }
  if (rc == 0) {
    if (!kh_conn_close(c, &err))
      fprintf(stderr, "keyhold: client %s: close_notify not sent: %s\n", j->addr, err.msg);
    fprintf(stderr, "keyhold: client %s closed\n", j->addr);
  }
  kh_conn_free(c);
  return rc;
}

static void *serve_thread(void *arg) {
  client_job *j = arg;
  serve_one(j);
  close(j->fd);
  free(j);
  return NULL;
}

static int cmd_serve(options *o) {
  if (o->listen == NULL || o->target != NULL) kh_cli_die("%s", "serve needs --listen HOST:PORT");
  char *addr = strdup(o->listen), *host, *port;
  if (!kh_cli_split_hostport(addr, &host, &port))
    kh_cli_die("bad address '%s' (want HOST:PORT)", o->listen);
  char bound[80], msg[300];
  int ls = kh_cli_tcp_listen(host, port, 128, bound, sizeof(bound), msg, sizeof(msg));
  if (ls < 0) kh_cli_die("serve: --listen: %s", msg);
  kh_error err;
  kh_client *kc = kh_client_new(o->sidecar, &err);
  if (kc == NULL) kh_cli_die("%s", err.msg);
  fprintf(stderr, "keyhold: listening on %s\n", bound);
  fflush(stderr);
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t pl = sizeof(peer);
    int fd = accept4(ls, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      kh_cli_die("accept: %s", strerror(errno));
    }
    client_job *j = calloc(1, sizeof(*j));
    j->kc = kc;
    j->o = o;
    j->fd = fd;
    kh_cli_format_addr(&peer, j->addr, sizeof(j->addr));
    if (o->once) {
      int rc = serve_one(j);
      close(fd);
      free(j);
      kh_client_free(kc);
      close(ls);
      free(addr);
      return rc;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, serve_thread, j) != 0) {
      fprintf(stderr, "keyhold: cannot start a thread for %s\n", j->addr);
      close(fd);
      free(j);
      continue;
    }
    pthread_detach(t);
  }
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("keyhold %s\n", KEYHOLD_VERSION);
    return 0;
  }
  if (strcmp(cmd, "init") == 0) {
    if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
      printf(
          "usage: keyhold init DIR\n"
          "Writes a development CA and two identities (client, server) into DIR, which\n"
          "must not exist yet. For trying Keyhold out, never for production keys.\n");
      return 0;
    }
    if (argc != 3 || argv[2][0] == '-') {
      if (argc != 3)
        kh_cli_fail("%s", "init: one argument expected: DIR (keyhold init --help)");
      else
        kh_cli_fail("init: unknown option '%s' (keyhold init --help)", argv[2]);
      return 2;
    }
    char msg[512];
    if (!kh_pki_init(argv[2], msg, sizeof(msg))) kh_cli_die("init: %s", msg);
    fprintf(stderr, "keyhold: development CA and identities written to %s\n", argv[2]);
    return 0;
  }
  options o;
  if (strcmp(cmd, "channel") == 0) return kh_cli_channel(argc, argv);
  if (strcmp(cmd, "health") == 0) return kh_cli_health(argc, argv);
  if (strcmp(cmd, "pubkey") == 0 || strcmp(cmd, "seal") == 0 || strcmp(cmd, "open") == 0 ||
      strcmp(cmd, "dpop") == 0)
    return kh_cli_keys(argc, argv);
  if (strcmp(cmd, "tunnel") == 0) return kh_cli_tunnel(argc, argv);
  if (strcmp(cmd, "connect") == 0) return parse(argc, argv, &o) ? cmd_connect(&o) : 2;
  if (strcmp(cmd, "serve") == 0) return parse(argc, argv, &o) ? cmd_serve(&o) : 2;
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr,
          "keyhold: unknown command '%s' (one of connect, serve, channel, tunnel, health, pubkey, "
          "seal, open, dpop, init)\n",
          cmd);
  return 2;
}

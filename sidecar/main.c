/* keyholdd: the Keyhold handshake-offload sidecar. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "identity.h"
#include "kh_log.h"
#include "server.h"

#define KEYHOLD_VERSION "0.1.0"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyholdd --socket PATH --identities DIR [--log-level LEVEL]\n"
          "\n"
          "Holds the identities (kubernetes.io/tls directories) under DIR and serves\n"
          "S2A v1 handshakes on the Unix socket PATH.\n"
          "\n"
          "  --socket PATH       Unix socket to serve on (env KEYHOLD_SOCKET)\n"
          "  --identities DIR    one sub-directory per identity: tls.crt, tls.key, ca.crt\n"
          "                      (env KEYHOLD_IDENTITIES)\n"
          "  --log-level LEVEL   debug|info|warn|error|off (env KEYHOLD_LOG_LEVEL)\n"
          "  --help, --version\n"
          "Flags override environment variables.\n");
}

int main(int argc, char **argv) {
  const char *socket_path = getenv("KEYHOLD_SOCKET");
  const char *ids_dir = getenv("KEYHOLD_IDENTITIES");
  const char *level = NULL;
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},    {"identities", required_argument, NULL, 'i'},
      {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "s:i:l:hV", opts, NULL)) != -1) {
    switch (c) {
      case 's': socket_path = optarg; break;
      case 'i': ids_dir = optarg; break;
      case 'l': level = optarg; break;
      case 'h': usage(stdout); return 0;
      case 'V': printf("keyholdd %s\n", KEYHOLD_VERSION); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc || socket_path == NULL || ids_dir == NULL) {
    usage(stderr);
    return 2;
  }
  /* No core dumps or ptrace by other same-uid processes: keys live here. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (level != NULL) setenv("KEYHOLD_LOG_LEVEL", level, 1);
  kh_log_init("keyholdd");

  kh_error err;
  kh_identity_store *store = kh_identity_store_load(ids_dir, &err);
  if (store == NULL) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  kh_server_config cfg = {.socket_path = socket_path, .store = store};
  int ok = kh_server_run(&cfg, &g_stop, &err);
  kh_identity_store_free(store);
  if (!ok) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    return 1;
  }
  return 0;
}

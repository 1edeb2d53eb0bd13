/* keyholdd: the Keyhold handshake-offload sidecar. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "authz.h"
#include "config.h"
#include "identity.h"
#include "kh_asan.h"
#include "health.h"
#include <openssl/rand.h>

#include "envelope.h"
#include "key_operations.h"
#include "kh_secret.h"
#include "kh_log.h"
#include "metrics_http.h"
#include "notify.h"
#include "listener.h"
#include "policy.h"
#include "pkcs11_module.h"
#include "policy_reload.h"
#include "rotation.h"
#include "sandbox.h"
#include "s2a_v1.h"
#include "s2a_v2.h"
#include "secure_channel.h"
#include "server.h"
#include "status.h"

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_reload;        /* SIGHUP: identities */
static volatile sig_atomic_t g_policy_reload; /* SIGHUP: the policy file */
static int g_sandbox_failed;
static int g_sandbox_on;
static int g_notify_fd = -1;   /* $NOTIFY_SOCKET (notify.h) */
static volatile int g_drained; /* set once everything is released */
static unsigned g_drain_ms;

/* watchdog: once SIGTERM (or SIGINT) arrived, keyholdd exits within
 * drain_timeout_ms whatever gRPC or a caller is still doing. The normal
 * path releases everything well within it (tests check exit 0 and, under
 * LeakSanitizer, no leak); this is the bound an operator can rely on. */
static void *watchdog(void *arg) {
  (void)arg;
  const struct timespec step = {0, 50 * 1000 * 1000};
  while (!g_stop && !__atomic_load_n(&g_drained, __ATOMIC_ACQUIRE)) nanosleep(&step, NULL);
  for (unsigned waited = 0; waited < g_drain_ms; waited += 50) {
    if (__atomic_load_n(&g_drained, __ATOMIC_ACQUIRE)) return NULL;
    nanosleep(&step, NULL);
  }
  if (__atomic_load_n(&g_drained, __ATOMIC_ACQUIRE)) return NULL;
  kh_log(KH_LOG_ERROR, "not drained within drain_timeout_ms=%u after the stop signal: exiting now",
         g_drain_ms);
  _exit(1);
}

static void on_signal(int sig) {
  if (sig == SIGHUP)
    g_reload = g_policy_reload = 1;
  else
    g_stop = 1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyholdd [--policy FILE] --socket PATH --identities DIR [options]\n"
          "       keyholdd --check-config FILE [--identities DIR]\n"
          "\n"
          "Holds the identities (kubernetes.io/tls directories) under DIR and serves\n"
          "S2A (v1 handshakes, v2 key operations in both dialects) on the Unix socket\n"
          "PATH to the callers the policy allows (without a policy: callers running as\n"
          "keyholdd's own uid only).\n"
          "\n"
          "  --policy FILE       policy (YAML, docs/POLICY.md) (env KEYHOLD_POLICY)\n"
          "  --check-config FILE validate FILE (and its identities), print errors, exit\n"
          "  --socket PATH       Unix socket to serve on (env KEYHOLD_SOCKET)\n"
          "  --socket-mode MODE  octal, at most 0770 (default 0660)\n"
          "  --socket-group GRP  group owning the socket (name or number)\n"
          "  --listen tcp://HOST:PORT  also serve on loopback TCP (env KEYHOLD_LISTEN);\n"
          "                      no uid there: token grants only. PORT 0 picks one\n"
          "  --listen-allow-remote  let --listen bind a non-loopback address\n"
          "  --identities DIR    one sub-directory per identity: tls.crt, tls.key, ca.crt\n"
          "                      (env KEYHOLD_IDENTITIES); reloaded on change and SIGHUP\n"
          "  --LIMIT N           any limit of the policy's `limits:` map, '_' written '-'\n"
          "                      (docs/POLICY.md), e.g. --handshake-timeout-ms 10000,\n"
          "                      --max-handshakes-per-caller 256, --max-connections 4096,\n"
          "                      --max-server-handshakes-per-process 256,\n"
          "                      --max-connections-per-caller 256, --preface-timeout-ms 2000,\n"
          "                      --idle-timeout-ms 300000, --drain-timeout-ms 5000,\n"
          "                      --cert-expiry-warning-hours 168\n"
          "  --ticket-keys FILE  server session-ticket keys shared by replicas\n"
          "                      (env KEYHOLD_TICKET_KEYS; default: one random key)\n"
          "  --workers N         crypto worker threads for handshakes, at most 16\n"
          "                      (env KEYHOLD_WORKERS; default 0: on the event loop)\n"
          "  --log-level LEVEL   debug|info|warn|error|off (env KEYHOLD_LOG_LEVEL)\n"
          "  --metrics-listen ADDR  Prometheus metrics (GET /metrics) on tcp://127.0.0.1:PORT,\n"
          "                      tcp://[::1]:PORT or unix:PATH (env KEYHOLD_METRICS_LISTEN)\n"
          "  --log-format FMT    text|json: one JSON object per line (env KEYHOLD_LOG_FORMAT)\n"
          "  --no-sandbox        do not drop capabilities nor install the seccomp filter\n"
          "                      (env KEYHOLD_SANDBOX=0); for debugging only\n"
          "  --help, --version\n"
          "Flags override environment variables, which override the policy file.\n");
}

/* after_listen runs in the event-loop thread once the server listens and
 * before it serves: from here on keyholdd runs under the seccomp filter. A
 * failure stops the server before the first call; keyholdd then exits 1. */
static void after_listen(void) {
  /* systemd Type=notify: ready once serving under the sandbox; the
   * notification socket was opened before the filter forbids it. */
  kh_error err;
  if (!g_sandbox_on || kh_sandbox_apply(&err)) {
    kh_notify_send(g_notify_fd, "READY=1\nSTATUS=serving");
    return;
  }
  kh_log(KH_LOG_ERROR, "%s; refusing to serve without the sandbox (--no-sandbox to override)",
         err.msg);
  g_sandbox_failed = 1;
  g_stop = 1;
}

/* LeakSanitizer checks for leaks at exit from a helper that ptrace()s the
 * process: exactly what the sandbox forbids (no ptrace, no capabilities, not
 * dumpable), so a leak-checked keyholdd would spin at exit. ASan builds (the
 * CI's sanitizer suite) therefore run without the sandbox unless
 * KEYHOLD_SANDBOX=1 asks for it (tests/integration/sandbox.sh does, with
 * leak detection off). Release builds are never built this way. */

/* sandbox_default: on, unless KEYHOLD_SANDBOX=0|off|false|no (or, in a
 * leak-checked build, unless KEYHOLD_SANDBOX is set to something else). */
static int sandbox_default(void) {
  const char *v = getenv("KEYHOLD_SANDBOX");
  if (v == NULL) return !KH_ASAN;
  return !(strcmp(v, "0") == 0 || strcmp(v, "off") == 0 || strcmp(v, "false") == 0 ||
           strcmp(v, "no") == 0);
}

/* sandbox_selftest (hidden --sandbox-selftest=SYSCALL): apply the sandbox
 * (unless disabled), then attempt a forbidden syscall. Under the filter the
 * process dies of SIGSYS; returning means the syscall was let through. */
static int sandbox_selftest(const char *what, int sandbox) {
  if (strcmp(what, "execve") != 0 && strcmp(what, "inet-socket") != 0 &&
      strcmp(what, "ptrace") != 0) {
    fprintf(stderr, "keyholdd: --sandbox-selftest: execve|inet-socket|ptrace, not %s\n", what);
    return 2;
  }
  kh_error err;
  if (sandbox && !kh_sandbox_apply(&err)) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    return 1;
  }
  fprintf(stderr, "keyholdd: selftest: attempting %s (sandbox %s)\n", what, sandbox ? "on" : "off");
  if (strcmp(what, "execve") == 0) {
    char *const args[] = {"true", NULL};
    char *const env[] = {NULL};
    execve("/bin/true", args, env);
  } else if (strcmp(what, "inet-socket") == 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) close(fd);
    if (fd >= 0) errno = 0;
  } else {
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
  }
  fprintf(stderr, "keyholdd: selftest: %s was not blocked (%s)\n", what,
          errno ? strerror(errno) : "succeeded");
  return 3;
}

/* admit_uid: at accept time, could the grants give this caller anything? */
static int admit_uid(void *arg, const kh_caller *c) {
  const kh_grants *g = kh_policy_slot_get(arg);
  int admits = kh_authz_admits(g, c);
  kh_policy_slot_put(g);
  return admits;
}

/* What the event loop does about every 100 ms besides serving. */
typedef struct {
  kh_rotation *rotation; /* NULL: live rotation off */
  kh_resume *resume;
  kh_status *status;
  kh_policy_reload *policy; /* NULL: built-in policy */
} housekeeping;

static void tick(void *arg) {
  housekeeping *hk = arg;
  kh_resume_sweep(hk->resume);
  if (hk->rotation) kh_rotation_tick(hk->rotation);
  kh_status_refresh(hk->status, 0);
  if (hk->policy) kh_policy_reload_tick(hk->policy);
}

#define KH_MAX_WORKERS 16
#define KH_TOKEN_WORKERS 2 /* the default when a key is on a PKCS#11 token */
#define KH_MAX_LIMIT_FLAGS 16

/* limit_name: "--max-connections[=N]" -> "max_connections" in |out|. */
static int limit_name(const char *arg, char out[64]) {
  if (strncmp(arg, "--", 2) != 0) return 0;
  size_t n = strcspn(arg + 2, "=");
  if (n == 0 || n >= 64) return 0;
  for (size_t i = 0; i < n; i++) out[i] = arg[2 + i] == '-' ? '_' : arg[2 + i];
  out[n] = '\0';
  return kh_limits_known(out);
}

/* take_limit_flags moves every --LIMIT N / --LIMIT=N out of argv (before
 * getopt sees it) into |flags| as (name, value) pairs; argv keeps the rest. */
static int take_limit_flags(int *argc, char **argv, char names[][64], const char **flags) {
  int kept = 1;
  size_t n = 0;
  for (int i = 1; i < *argc; i++) {
    if (strcmp(argv[i], "--") == 0 || !limit_name(argv[i], names[n])) {
      argv[kept++] = argv[i];
      continue;
    }
    if (n == KH_MAX_LIMIT_FLAGS) {
      fprintf(stderr, "keyholdd: more than %d limit flags\n", KH_MAX_LIMIT_FLAGS);
      return 0;
    }
    const char *eq = strchr(argv[i], '=');
    if (eq == NULL && i + 1 == *argc) {
      fprintf(stderr, "keyholdd: %s needs a value\n", argv[i]);
      return 0;
    }
    flags[2 * n] = names[n];
    flags[2 * n + 1] = eq ? eq + 1 : argv[++i];
    n++;
  }
  argv[kept] = NULL;
  *argc = kept;
  return 1;
}

/* token_keys: how many identities in |store| keep their key on a token. */
static size_t token_keys(const kh_identity_store *store) {
  size_t n = 0;
  for (size_t i = 0; i < kh_identity_store_count(store); i++)
    n += strcmp(kh_identity_key_backend(kh_identity_store_get(store, i)), "pkcs11") == 0;
  return n;
}

/* parse_workers: "N" (0 to 16; larger is capped at 16), or NULL for the
 * default, 0: handshakes on the event loop. Measured on 2 cores, a worker
 * hand-off costs ~150 us of latency per handshake and gains no throughput
 * (docs/PERFORMANCE.md); workers pay off where keyholdd's event loop
 * saturates a core and others are free. -1 if not a number. */
static int parse_workers(const char *v) {
  if (v == NULL) return 0;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < 0) return -1;
  return n > KH_MAX_WORKERS ? KH_MAX_WORKERS : (int)n;
}

/* What the command line (and the environment) sets; NULL: not given. */
typedef struct {
  const char *socket_path, *identities_dir, *ticket_keys_file;
  const char *socket_mode, *socket_group;
  const char *const *limits; /* (name with '_', value) pairs, NULL-terminated */
} flags;

/* apply_paths: the flags' paths beat the file's. */
static int apply_paths(kh_config *cfg, const flags *f, kh_error *err) {
  const struct {
    const char *flag, *value;
    char **field;
  } paths[] = {{"--socket", f->socket_path, &cfg->socket_path},
               {"--identities", f->identities_dir, &cfg->identities_dir},
               {"--ticket-keys", f->ticket_keys_file, &cfg->ticket_keys_file}};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    kh_error e;
    if (paths[i].value != NULL && !kh_config_set_string(paths[i].field, paths[i].value, &e))
      return kh_err(err, e.code, "%s: %s", paths[i].flag, e.msg);
  }
  return 1;
}

/* apply_settings: the flags' limits, socket mode and group beat the file's,
 * checked by the same setters (config.h, kh_limits.h). */
static int apply_settings(kh_config *cfg, const flags *f, kh_error *err) {
  kh_error e;
  for (size_t i = 0; f->limits[i] != NULL; i += 2) {
    if (!kh_limits_set(&cfg->limits, f->limits[i], f->limits[i + 1], &e)) {
      char flag[100];
      snprintf(flag, sizeof(flag), "--%s", f->limits[i]);
      for (char *q = flag; *q; q++)
        if (*q == '_') *q = '-';
      return kh_err(err, e.code, "%s: %s", flag, e.msg);
    }
  }
  if (f->socket_mode != NULL && !kh_config_set_socket_mode(cfg, f->socket_mode, &e))
    return kh_err(err, e.code, "command line: socket.mode: %s", e.msg);
  if (f->socket_group != NULL && !kh_config_set_socket_group(cfg, f->socket_group, &e))
    return kh_err(err, e.code, "command line: socket.group: %s", e.msg);
  return 1;
}

/* init_log: the flags beat KEYHOLD_LOG_LEVEL / KEYHOLD_LOG_FORMAT; an
 * unknown name is refused with the accepted ones (0: exit 2). --check-config
 * logs warnings and errors only unless a level is given. */
static int init_log(const char *level, const char *format, int checking) {
  if (level == NULL && checking && getenv("KEYHOLD_LOG_LEVEL") == NULL) level = "warn";
  if (level != NULL) setenv("KEYHOLD_LOG_LEVEL", level, 1);
  if (format != NULL) setenv("KEYHOLD_LOG_FORMAT", format, 1);
  if (kh_log_init("keyholdd")) return 1;
  kh_log_level l;
  kh_log_format f;
  if (!kh_log_parse_level(getenv("KEYHOLD_LOG_LEVEL"), &l) && getenv("KEYHOLD_LOG_LEVEL"))
    fprintf(stderr, "keyholdd: --log-level: unknown level '%s' (one of " KH_LOG_LEVELS ")\n",
            getenv("KEYHOLD_LOG_LEVEL"));
  else if (!kh_log_parse_format(getenv("KEYHOLD_LOG_FORMAT"), &f))
    fprintf(stderr, "keyholdd: --log-format: unknown format '%s' (one of " KH_LOG_FORMATS ")\n",
            getenv("KEYHOLD_LOG_FORMAT"));
  return 0;
}

/* check_config: --check-config FILE. Prints "FILE: OK ..." or the error. */
static int check_config(const char *file, const char *ids_dir) {
  kh_error err;
  kh_config cfg;
  kh_config_init(&cfg);
  kh_grants *g = kh_policy_load(file, &cfg, &err);
  if (g == NULL) {
    fprintf(stderr, "%s\n", err.msg);
    kh_config_cleanup(&cfg);
    return 1;
  }
  if (ids_dir == NULL) ids_dir = cfg.identities_dir;
  kh_identity_store *store = NULL;
  int ok = 1;
  if (ids_dir != NULL) {
    store = kh_identity_store_load(ids_dir, &err);
    ok = store != NULL && kh_policy_check_identities(cfg.file, g, store, &err);
    if (!ok) fprintf(stderr, "%s\n", err.msg);
  }
  if (ok)
    printf("%s: OK (%zu identity rules%s%s)\n", file, g->n_rules,
           ids_dir ? ", identities checked in " : ", identities not checked",
           ids_dir ? ids_dir : "");
  kh_identity_store_free(store);
  kh_grants_free(g);
  kh_config_cleanup(&cfg);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *socket_path = getenv("KEYHOLD_SOCKET");
  const char *ids_dir = getenv("KEYHOLD_IDENTITIES");
  const char *level = NULL, *log_format = NULL;
  const char *selftest = NULL;
  const char *policy_file = getenv("KEYHOLD_POLICY");
  const char *check_file = NULL;
  const char *ticket_file = getenv("KEYHOLD_TICKET_KEYS");
  const char *workers_arg = getenv("KEYHOLD_WORKERS");
  const char *listen_tcp = getenv("KEYHOLD_LISTEN");
  const char *metrics_listen = getenv("KEYHOLD_METRICS_LISTEN");
  int allow_remote = 0;
  const char *over[2] = {NULL, NULL}; /* mode, group */
  /* --LIMIT VALUE pairs (limit name with '_', value), NULL-terminated. */
  const char *limit_flags[2 * KH_MAX_LIMIT_FLAGS + 1] = {NULL};
  char limit_names[KH_MAX_LIMIT_FLAGS][64];
  if (!take_limit_flags(&argc, argv, limit_names, limit_flags)) return 2;
  int sandbox = sandbox_default();
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},
      {"identities", required_argument, NULL, 'i'},
      {"log-level", required_argument, NULL, 'l'},
      {"log-format", required_argument, NULL, 'F'},
      {"policy", required_argument, NULL, 'p'},
      {"check-config", required_argument, NULL, 'C'},
      {"socket-mode", required_argument, NULL, 'm'},
      {"socket-group", required_argument, NULL, 'g'},
      {"ticket-keys", required_argument, NULL, 'K'},
      {"listen", required_argument, NULL, 'L'},
      {"listen-allow-remote", no_argument, NULL, 'R'},
      {"metrics-listen", required_argument, NULL, 'M'},
      {"no-sandbox", no_argument, NULL, 'N'},
      {"workers", required_argument, NULL, 'W'},
      {"sandbox-selftest", required_argument, NULL, 'T'}, /* hidden: tests only */
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "s:i:l:hV", opts, NULL)) != -1) {
    switch (c) {
      case 's': socket_path = optarg; break;
      case 'i': ids_dir = optarg; break;
      case 'l': level = optarg; break;
      case 'F': log_format = optarg; break;
      case 'p': policy_file = optarg; break;
      case 'C': check_file = optarg; break;
      case 'm': over[0] = optarg; break;
      case 'g': over[1] = optarg; break;
      case 'K': ticket_file = optarg; break;
      case 'L': listen_tcp = optarg; break;
      case 'R': allow_remote = 1; break;
      case 'M': metrics_listen = optarg; break;
      case 'N': sandbox = 0; break;
      case 'W': workers_arg = optarg; break;
      case 'T': selftest = optarg; break;
      case 'h': usage(stdout); return 0;
      case 'V': printf("keyholdd %s\n", KEYHOLD_VERSION); return 0;
      default: fprintf(stderr, "keyholdd --help shows every flag\n"); return 2;
    }
  }
  if (!init_log(level, log_format, check_file != NULL)) return 2;
  if (check_file != NULL) return check_config(check_file, ids_dir);
  int workers = parse_workers(workers_arg);
  if (workers < 0) {
    fprintf(stderr, "keyholdd: --workers: not a number from 0 to %d: %s\n", KH_MAX_WORKERS,
            workers_arg);
    return 2;
  }
  if (optind != argc) {
    fprintf(stderr, "keyholdd: unexpected argument '%s' (keyholdd --help)\n", argv[optind]);
    return 2;
  }
  /* No core dumps or ptrace by other same-uid processes: keys live here. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (selftest != NULL) return sandbox_selftest(selftest, sandbox);

  /* Everything below is released at |out|, on every path. */
  kh_error err;
  kh_config conf;
  kh_config_init(&conf);
  kh_grants *grants = NULL;
  kh_identity_store *store = NULL;
  kh_ticket_keys *tickets = NULL;
  kh_resume *resume = NULL;
  kh_rotation *rotation = NULL;
  kh_listener *listener = NULL;
  kh_metrics_http *metrics = NULL;
  kh_status *status = NULL;
  kh_policy_slot *policy = NULL;
  kh_policy_reload *policy_reload = NULL;
  uint8_t *reject_key = NULL;
  pthread_t watchdog_thread;
  int watchdog_started = 0;
  int rc = 2;
  /* The file first, then the flags and environment over it. */
  const flags given = {.socket_path = socket_path,
                       .identities_dir = ids_dir,
                       .ticket_keys_file = ticket_file,
                       .socket_mode = over[0],
                       .socket_group = over[1],
                       .limits = limit_flags};
  grants = policy_file ? kh_policy_load(policy_file, &conf, &err) : kh_grants_builtin(getuid());
  if (grants == NULL || !apply_paths(&conf, &given, &err)) {
    fprintf(stderr, "keyholdd: %s\n", policy_file || grants ? err.msg : "out of memory");
    goto out;
  }
  socket_path = conf.socket_path;
  ids_dir = conf.identities_dir;
  ticket_file = conf.ticket_keys_file;
  /* systemd socket activation: the socket is the .socket unit's. */
  int activated = sd_listen_fds(1);
  if (activated > 1) {
    fprintf(stderr, "keyholdd: socket activation passed %d sockets; keyholdd takes one\n",
            activated);
    goto out;
  }
  if ((socket_path == NULL && activated <= 0) || ids_dir == NULL) {
    fprintf(stderr, "keyholdd: %s\n",
            socket_path == NULL
                ? "no socket: give --socket PATH, KEYHOLD_SOCKET or the policy's socket.path"
                : "no identities: give --identities DIR, KEYHOLD_IDENTITIES or the policy's "
                  "identities_dir");
    fprintf(stderr, "keyholdd --help shows every flag\n");
    goto out;
  }
  if (!apply_settings(&conf, &given, &err) ||
      (store = kh_identity_store_load(ids_dir, &err)) == NULL ||
      !kh_policy_check_identities(conf.file, grants, store, &err)) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    goto out;
  }
  tickets = ticket_file ? kh_ticket_keys_load(ticket_file, &err) : kh_ticket_keys_random(&err);
  resume = kh_resume_new();
  if (tickets == NULL || resume == NULL) {
    fprintf(stderr, "keyholdd: %s\n", tickets == NULL ? err.msg : "out of memory");
    goto out;
  }
  rotation = kh_rotation_new(store, &g_reload, &err);
  if (rotation == NULL) kh_log(KH_LOG_WARN, "live rotation off: %s", err.msg);
  if (rotation != NULL && ticket_file != NULL)
    kh_rotation_watch_ticket_keys(rotation, ticket_file, &tickets);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  /* The socket is bound (and given its group) before capabilities go. */
  rc = 1;
  listener = activated == 1
                 ? kh_listener_adopt(SD_LISTEN_FDS_START, socket_path, &err)
                 : kh_listener_open(socket_path, conf.socket_mode,
                                    conf.has_socket_gid ? conf.socket_gid : (gid_t)-1, &err);
  if (listener == NULL) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    goto out;
  }
  socket_path = kh_listener_path(listener);
  int owns_path = kh_listener_owns_path(listener);
  if (!owns_path) kh_log(KH_LOG_INFO, "socket %s from systemd (socket activation)", socket_path);
  unsigned tcp_port = 0;
  if (listen_tcp != NULL && listen_tcp[0] != '\0') {
    if (!kh_listener_add_tcp(listener, listen_tcp, allow_remote, &tcp_port, &err)) {
      fprintf(stderr, "keyholdd: %s\n", err.msg);
      goto out;
    }
    kh_log(KH_LOG_INFO, "also listening on %s, port %u (no uid there: token grants only)",
           listen_tcp, tcp_port);
  }
  if (metrics_listen != NULL && metrics_listen[0] != '\0') {
    char where[200];
    if ((metrics = kh_metrics_http_start(metrics_listen, where, sizeof(where), &err)) == NULL) {
      fprintf(stderr, "keyholdd: %s\n", err.msg);
      goto out;
    }
    kh_log(KH_LOG_INFO, "metrics on %s%s/metrics", strncmp(where, "unix:", 5) ? "http://" : "",
           where);
  }
  /* The services keyholdd serves, each behind rpc/service.h. */
  policy = kh_policy_slot_new(grants);
  grants = NULL; /* the slot's now */
  if (policy == NULL ||
      (conf.file != NULL &&
       (policy_reload = kh_policy_reload_new(&conf, policy, store, &g_policy_reload)) == NULL)) {
    fprintf(stderr, "keyholdd: out of memory\n");
    goto out;
  }
  kh_s2a_env env = {.store = store, .policy = policy, .resume = resume, .ticket_keys = &tickets};
  kh_channel_env channel_env = {.store = store, .policy = policy};
  /* PKCS#1 v1.5 envelopes' implicit-rejection secret (envelope.h). */
  reject_key = kh_secret_alloc(KH_ENVELOPE_REJECT_KEY_LEN);
  if (reject_key != NULL) RAND_bytes(reject_key, KH_ENVELOPE_REJECT_KEY_LEN);
  kh_keyops_env keyops_env = {.store = store, .policy = policy, .reject_key = reject_key};
  static const char *const service_names[] = {"s2a.proto.S2AService",
                                              "s2a.proto.v2.S2AService",
                                              "grpc.gcp.s2a.S2AService",
                                              "keyhold.v1.SecureChannel",
                                              "keyhold.v1.KeyOperations",
                                              "grpc.health.v1.Health",
                                              NULL};
  kh_health health = {.serving = 0, .services = service_names};
  kh_service services[2 + KH_S2A_V2_SERVICES + KH_HEALTH_SERVICES + KH_KEY_OPS_SERVICES] = {
      kh_s2a_v1_service(&env), kh_secure_channel_service(&channel_env)};
  kh_s2a_v2_services(&env, &services[2]);
  kh_health_services(&health, &services[2 + KH_S2A_V2_SERVICES]);
  kh_key_ops_services(&keyops_env, &services[2 + KH_S2A_V2_SERVICES + KH_HEALTH_SERVICES]);
  status = kh_status_new(store, &health, (int64_t)conf.limits.cert_expiry_warning_hours * 3600);
  if (status == NULL) {
    fprintf(stderr, "keyholdd: out of memory\n");
    goto out;
  }
  kh_status_refresh(status, 1);
  char describe[300];
  snprintf(describe, sizeof(describe), "with %zu identities, policy %s",
           kh_identity_store_count(store), conf.file ? conf.file : "built-in (own uid only)");
  housekeeping hk = {
      .rotation = rotation, .resume = resume, .status = status, .policy = policy_reload};
  kh_server_config cfg = {.socket_path = socket_path,
                          .describe = describe,
                          .listener = listener,
                          .services = services,
                          .n_services = sizeof(services) / sizeof(services[0]),
                          .limits = &conf.limits,
                          .admit = admit_uid,
                          .admit_arg = policy,
                          .workers = (unsigned)workers,
                          .after_listen = after_listen,
                          .tick = tick,
                          .tick_arg = &hk};
  /* PKCS#11 modules are code: only those loaded by now (pkcs11_module.h). */
  kh_p11_freeze();
  if (workers_arg == NULL && token_keys(store) > 0) {
    /* A token signs slowly next to a key in memory: keep the event loop free. */
    cfg.workers = KH_TOKEN_WORKERS;
    kh_log(KH_LOG_INFO,
           "%zu identities keep their key on a PKCS#11 token: %d crypto workers "
           "(--workers to choose)",
           token_keys(store), KH_TOKEN_WORKERS);
  }
  if (sandbox) {
    /* Capabilities are per thread: drop them before gRPC starts its threads.
     * The seccomp filter follows once the socket is bound (after_listen). */
    if (!kh_sandbox_drop_caps(&err)) {
      fprintf(stderr, "keyholdd: %s\n", err.msg);
      goto out;
    }
    g_sandbox_on = 1;
  } else {
    kh_log(KH_LOG_WARN, "sandbox disabled%s: no seccomp filter, capabilities kept",
           KH_ASAN && getenv("KEYHOLD_SANDBOX") == NULL
               ? " (AddressSanitizer build: LeakSanitizer needs ptrace at exit; "
                 "KEYHOLD_SANDBOX=1 to force)"
               : "");
  }
  /* Started with every signal blocked: the signals stay the main thread's. */
  g_drain_ms = conf.limits.drain_timeout_ms;
  g_notify_fd = kh_notify_open();
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  watchdog_started = pthread_create(&watchdog_thread, NULL, watchdog, NULL) == 0;
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  if (!kh_server_run(&cfg, &g_stop, &err)) {
    fprintf(stderr, "keyholdd: %s\n", err.msg);
    goto out;
  }
  kh_log(KH_LOG_INFO, "stopped; socket %s %s", socket_path,
         owns_path ? "removed" : "left to systemd");
  kh_listener_close(listener);
  listener = NULL;
  rc = g_sandbox_failed ? 1 : 0;
out:
  if (reject_key != NULL) kh_secret_free(reject_key, KH_ENVELOPE_REJECT_KEY_LEN);
  kh_notify_close(g_notify_fd);
  kh_metrics_http_stop(metrics);
  kh_status_free(status);
  kh_listener_close(listener);
  kh_rotation_free(rotation);
  kh_resume_free(resume);
  kh_ticket_keys_unref(tickets);
  kh_identity_store_free(store);
  kh_grants_free(grants);
  kh_policy_reload_free(policy_reload);
  kh_policy_slot_free(policy);
  kh_p11_shutdown(); /* after every key is freed */
  kh_config_cleanup(&conf);
  if (watchdog_started) {
    __atomic_store_n(&g_drained, 1, __ATOMIC_RELEASE);
    pthread_join(watchdog_thread, NULL);
  }
  return rc;
}

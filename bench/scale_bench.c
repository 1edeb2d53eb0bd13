/* scale_bench: N concurrent in-flight handshakes (default 10,000) held by one
 * keyholdd: its RSS per in-flight session (target <= 64 KiB) and its RSS once
 * they are all gone (target: back to the baseline within 5%).
 *   scale_bench [N] [STREAMS_PER_CONNECTION] [CYCLES]   (default 10000, 500, 1)
 * keyholdd runs as a separate process (sandbox on, limits raised by flags:
 * --max-handshakes-per-caller 2N+1000, --handshake-timeout-ms 120000). This
 * process is the client: plain gRPC C core, one completion queue,
 * N/STREAMS_PER_CONNECTION connections (keyholdd caps a connection at 1024
 * concurrent streams; each channel has its own subchannel pool, so the
 * connections are distinct rather than shared).
 * Each stream sends an S2A ClientStart and waits for the response carrying
 * the ClientHello: keyholdd then holds a TLS client engine (SSL object,
 * key share, memory BIOs) and its gRPC call state for it. Streams are opened
 * in windows of 500, each window bounded by 30 s.
 * Phases, RSS read from /proc/PID/status (VmRSS) and smaps_rollup:
 *   baseline  after a warm-up (one stream per connection held and released,
 *             then 2 s settle): connections, SSL_CTX, gRPC threads
 *   peak      all N held (0.5 s after the last response)
 *   after     all N cancelled by the client (RST_STREAM), 2 s settle
 * With CYCLES > 1 the hold/release repeats on the same keyholdd; the figures
 * are cycle 1's peak and the last cycle's "after" (growth across cycles
 * would be a leak; a one-off rise that stays flat is allocator retention).
 * The same run measures the in-process counterpart first: `hs_bssl hold`
 * (BoringSSL, the library keyholdd runs the handshake with) holds N client
 * handshakes in its own process, each an SSL with the same identity's
 * certificate and key that has sent its ClientHello (to a socket: nothing
 * buffered) and waits for the server's flight; its VmRSS growth / N is what
 * an application pays per in-flight handshake without Keyhold.
 * Prints, last:
 *   RESULT scale_rss_per_session ours=(peak-baseline)/held
 *       baseline=<in-process BoringSSL KiB per held handshake> unit=KiB
 *       ratio=<ours/baseline> target=<64 KiB / baseline> cmp=le
 *     the target, 64 KiB per in-flight session, is absolute: as on every
 *     RESULT line the target is on the ratio, converted with this run's
 *     baseline (ratio <= target exactly when ours <= 64 KiB)
 *   RESULT scale_rss_after ours=<after KiB> baseline=<baseline KiB> unit=KiB
 *       target=1.05 cmp=le
 *     baseline = this run's own baseline RSS; ratio <= 1.05 is the target
 * Investigation hooks: KH_BENCH_KEEP=1 keeps the temp dir (keyholdd's log);
 * KH_SCALE_PROBE='shell command' runs after each phase with $KH_PHASE
 * (start, baseline, peak, after) and $KH_PID (keyholdd) set. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "bench_proc.h"
#include "s2a/s2a.pb-c.h"

#define METHOD "/s2a.proto.S2AService/SetUpSession"
#define WINDOW 500

typedef struct {
  grpc_call *call;
  grpc_metadata_array md, trailing;
  grpc_byte_buffer *resp;
  grpc_status_code status;
  grpc_slice details;
  int first_done, status_done, got_msg;
} hs;

typedef struct {
  long rss, anon, file, hwm; /* KiB */
  int threads;
} mem;

static char g_tmp[64], g_log[PATH_MAX];
static pid_t g_kd = -1;
static grpc_completion_queue *g_cq;
static grpc_channel **g_ch;
static int g_nch;
static hs *g_hs;
static int g_n_started, g_n_first, g_n_status;
static grpc_slice g_start; /* the serialized ClientStart */

/* stop_kd: SIGTERM, then SIGKILL if keyholdd has not exited within 30 s.
 * After heavy connection churn its grpc_shutdown() can take ~10 s (an
 * executor thread parked in epoll_wait is joined), so the exit time is shown
 * when it is not prompt. */
static void stop_kd(void) {
  if (g_kd <= 0) return;
  int status;
  double took = bp_stop(g_kd, 30, &status);
  if (took < 0)
    fprintf(stderr, "scale_bench: keyholdd ignored SIGTERM for 30 s; killed it\n");
  else if (took > 1.0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    printf("note: keyholdd took %.1f s to exit after SIGTERM (status 0x%x)\n", took, status);
  g_kd = -1;
}

static void cleanup(void) {
  stop_kd();
  bp_remove_scratch(g_tmp, "scale_bench");
}

static void show_log(void) {
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof(cmd), "tail -5 %s | sed 's/^/# keyholdd: /' >&2", g_log);
  if (g_log[0] && system(cmd) != 0) fprintf(stderr, "scale_bench: no keyholdd log\n");
}

static void die(const char *what) {
  fprintf(stderr, "scale_bench: %s\n", what);
  show_log();
  cleanup();
  exit(1);
}

/* field reads "Name:   123 kB" from a /proc file; -1 if absent. */
static long field(const char *file, const char *name) {
  FILE *f = fopen(file, "r");
  if (f == NULL) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(name);
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, name, n) == 0 && line[n] == ':') {
      v = strtol(line + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static mem read_mem(void) {
  char st[64], sm[64];
  snprintf(st, sizeof(st), "/proc/%d/status", (int)g_kd);
  snprintf(sm, sizeof(sm), "/proc/%d/smaps_rollup", (int)g_kd);
  mem m = {.rss = field(st, "VmRSS"),
           .hwm = field(st, "VmHWM"),
           .anon = field(sm, "Anonymous"),
           .file = field(st, "RssFile"),
           .threads = (int)field(st, "Threads")};
  if (m.rss < 0) die("cannot read keyholdd's RSS (did it die?)");
  return m;
}

/* probe runs $KH_SCALE_PROBE (if set) with KH_PHASE and KH_PID in its
 * environment, after each phase's figures: for investigations (smaps,
 * gdb). system() uses vfork+exec, safe with gRPC's threads running. */
static void probe(const char *phase) {
  const char *p = getenv("KH_SCALE_PROBE");
  if (p == NULL || *p == '\0') return;
  char cmd[4096];
  /* exported first, so that the command itself can expand them */
  snprintf(cmd, sizeof(cmd), "export KH_PHASE=%s KH_PID=%d; %.3900s", phase, (int)g_kd, p);
  if (system(cmd) != 0) fprintf(stderr, "scale_bench: probe failed at %s\n", phase);
}

static void print_mem(const char *what, mem m) {
  printf("%-9s RSS %ld KiB (anonymous %ld, file %ld), VmHWM %ld KiB, %d threads\n", what, m.rss,
         m.anon, m.file, m.hwm, m.threads);
  fflush(stdout);
  probe(what);
}

static void make_client_start(void) {
  S2a__Proto__SessionReq r = S2A__PROTO__SESSION_REQ__INIT;
  S2a__Proto__ClientSessionStartReq cs = S2A__PROTO__CLIENT_SESSION_START_REQ__INIT;
  S2a__Proto__Identity id = S2A__PROTO__IDENTITY__INIT;
  cs.min_tls_version = cs.max_tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
  id.identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
  id.spiffe_id = "spiffe://example.org/client";
  cs.local_identity = &id;
  cs.target_name = "localhost";
  r.req_oneof_case = S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START;
  r.client_start = &cs;
  size_t len = s2a__proto__session_req__get_packed_size(&r);
  g_start = grpc_slice_malloc(len);
  s2a__proto__session_req__pack(&r, GRPC_SLICE_START_PTR(g_start));
}

/* Tags: (index + 1) << 1 | kind; kind 0 = first batch, 1 = status. */
static void *tag_of(int i, int kind) {
  return (void *)(((uintptr_t)i + 1) << 1 | (uintptr_t)kind);
}

static int start_call(int i, gpr_timespec deadline) {
  hs *h = &g_hs[i];
  memset(h, 0, sizeof(*h));
  grpc_metadata_array_init(&h->md);
  grpc_metadata_array_init(&h->trailing);
  h->details = grpc_empty_slice();
  grpc_slice m = grpc_slice_from_static_string(METHOD);
  h->call = grpc_channel_create_call(g_ch[i % g_nch], NULL, GRPC_PROPAGATE_DEFAULTS, g_cq, m, NULL,
                                     deadline, NULL);
  if (h->call == NULL) return 0;
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&g_start, 1);
  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = bb;
  ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[2].data.recv_initial_metadata.recv_initial_metadata = &h->md;
  ops[3].op = GRPC_OP_RECV_MESSAGE;
  ops[3].data.recv_message.recv_message = &h->resp;
  grpc_call_error e = grpc_call_start_batch(h->call, ops, 4, tag_of(i, 0), NULL);
  grpc_byte_buffer_destroy(bb); /* the batch holds its own reference */
  if (e != GRPC_CALL_OK) return 0;
  grpc_op st;
  memset(&st, 0, sizeof(st));
  st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  st.data.recv_status_on_client.trailing_metadata = &h->trailing;
  st.data.recv_status_on_client.status = &h->status;
  st.data.recv_status_on_client.status_details = &h->details;
  if (grpc_call_start_batch(h->call, &st, 1, tag_of(i, 1), NULL) != GRPC_CALL_OK) return 0;
  g_n_started++;
  return 1;
}

/* pump handles completions until *count reaches target or |until| passes. */
static int pump(const int *count, int target, double until) {
  while (*count < target) {
    double left = until - bp_now();
    if (left <= 0) return 0;
    gpr_timespec d = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                  gpr_time_from_millis((int64_t)(left * 1000) + 1, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(g_cq, d, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) continue;
    if (ev.type != GRPC_OP_COMPLETE) return 0;
    uintptr_t t = (uintptr_t)ev.tag;
    hs *h = &g_hs[(t >> 1) - 1];
    if ((t & 1) == 0) {
      h->first_done = 1;
      h->got_msg = ev.success && h->resp != NULL;
      if (h->resp) grpc_byte_buffer_destroy(h->resp);
      h->resp = NULL;
      g_n_first++;
    } else {
      h->status_done = 1;
      g_n_status++;
    }
  }
  return 1;
}

/* hold opens streams [from, to) in windows; returns how many are held. */
static int hold(int from, int to, gpr_timespec deadline) {
  for (int lo = from; lo < to; lo += WINDOW) {
    int hi = lo + WINDOW < to ? lo + WINDOW : to;
    for (int i = lo; i < hi; i++)
      if (!start_call(i, deadline)) die("cannot start a gRPC call");
    if (!pump(&g_n_first, hi, bp_now() + 30)) {
      fprintf(stderr, "scale_bench: window %d..%d: only %d of %d first responses within 30 s\n", lo,
              hi, g_n_first - lo, hi - lo);
      break;
    }
  }
  int held = 0;
  for (int i = from; i < g_n_started; i++) held += g_hs[i].got_msg && !g_hs[i].status_done;
  return held;
}

/* status_summary counts how the ended streams in [from, to) ended. */
static void status_summary(const char *what, int from, int to) {
  static const char *const names[17] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
  int counts[17] = {0}, other = 0;
  for (int i = from; i < to; i++) {
    if (!g_hs[i].status_done) continue;
    if ((int)g_hs[i].status >= 0 && (int)g_hs[i].status < 17)
      counts[g_hs[i].status]++;
    else
      other++;
  }
  printf("%s:", what);
  for (int c = 0; c < 17; c++)
    if (counts[c]) printf(" %s=%d", names[c], counts[c]);
  if (other) printf(" other=%d", other);
  for (int i = from; i < to; i++) {
    if (g_hs[i].status_done && g_hs[i].status != GRPC_STATUS_CANCELLED) {
      char *d = grpc_slice_to_c_string(g_hs[i].details);
      printf(" (e.g. status %d: %s)", (int)g_hs[i].status, d);
      gpr_free(d);
      break;
    }
  }
  printf("\n");
}

/* release cancels every stream in [from, to) and waits for their ends. */
static int release(int from, int to) {
  for (int i = from; i < to; i++)
    if (g_hs[i].call && !g_hs[i].status_done) grpc_call_cancel(g_hs[i].call, NULL);
  return pump(&g_n_status, to, bp_now() + 30) && pump(&g_n_first, to, bp_now() + 5);
}

/* free_calls frees the ended streams in [from, to). */
static void free_calls(int from, int to) {
  for (int i = from; i < to; i++) {
    hs *h = &g_hs[i];
    if (h->call == NULL || !h->status_done || !h->first_done) continue;
    grpc_call_unref(h->call);
    h->call = NULL;
    grpc_metadata_array_destroy(&h->md);
    grpc_metadata_array_destroy(&h->trailing);
    grpc_slice_unref(h->details);
  }
}

/* inproc_per_session runs `hs_bssl hold` with N handshakes (the in-process
 * baseline, see the top); KiB of RSS per held handshake. */
static double inproc_per_session(const char *bin, int n) {
  char cmd[PATH_MAX * 2];
  const char *id = "pki/ids/client";
  snprintf(cmd, sizeof(cmd), "%.1000s/hs_bssl hold %s/%s/tls.crt %s/%s/tls.key %s/%s/ca.crt %d",
           bin, g_tmp, id, g_tmp, id, g_tmp, id, n);
  FILE *f = popen(cmd, "r");
  double per = -1;
  int held = 0;
  if (f == NULL) die("cannot run hs_bssl hold");
  if (fscanf(f, "held=%d rss_kib_per_session=%lf", &held, &per) != 2 || held != n) per = -1;
  if (pclose(f) != 0 || per <= 0) die("hs_bssl hold failed");
  return per;
}

static void spawn_kd(const char *kd, const char *sock, const char *ids, int n) {
  char max[32];
  snprintf(max, sizeof(max), "%d", 2 * n + 1000);
  char *argv[] = {(char *)kd,   "--socket",
                  (char *)sock, "--identities",
                  (char *)ids,  "--log-level",
                  "info",       "--max-handshakes-per-caller",
                  max,          "--handshake-timeout-ms",
                  "120000",     NULL};
  g_kd = fork();
  if (g_kd < 0) die("fork");
  if (g_kd == 0) {
    int lf = open(g_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (lf >= 0) dup2(lf, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  /* Serving once it says so (the log line follows the seccomp filter). */
  char cmd[PATH_MAX + 64];
  snprintf(cmd, sizeof(cmd), "grep -q 'listening on' %s 2>/dev/null", g_log);
  for (int i = 0; i < 500; i++) {
    if (system(cmd) == 0) return;
    if (waitpid(g_kd, NULL, WNOHANG) == g_kd) {
      g_kd = -1;
      die("keyholdd exited at start-up");
    }
    usleep(10000);
  }
  die("keyholdd did not start within 5 s");
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10000;
  int per_conn = argc > 2 ? atoi(argv[2]) : 500;
  int cycles = argc > 3 ? atoi(argv[3]) : 1;
  if (n < 1 || n > 1000000 || per_conn < 1 || per_conn > 1024 || cycles < 1 || cycles > 100) {
    fprintf(stderr,
            "usage: scale_bench [N] [STREAMS_PER_CONNECTION (1..1024)] [CYCLES (1..100)]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep order with stderr in logs */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  char kd[PATH_MAX], bin[PATH_MAX], sock[128], ids[128], target[160];
  if (!bp_keyholdd(kd, bin)) die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(g_tmp, "scalebench");
  if (why != NULL) die(why);
  snprintf(sock, sizeof(sock), "%s/kd.sock", g_tmp);
  snprintf(ids, sizeof(ids), "%s/pki/ids", g_tmp);
  snprintf(target, sizeof(target), "unix:%s", sock);
  snprintf(g_log, sizeof(g_log), "%s/kd.log", g_tmp);
  double inproc = inproc_per_session(bin, n);
  printf("in-process BoringSSL: %.2f KiB RSS per held client handshake (%d held)\n", inproc, n);
  spawn_kd(kd, sock, ids, n); /* fork before gRPC starts here */

  grpc_init();
  make_client_start();
  g_cq = grpc_completion_queue_create_for_next(NULL);
  g_nch = (n + per_conn - 1) / per_conn;
  g_ch = calloc((size_t)g_nch, sizeof(*g_ch));
  g_hs = calloc((size_t)n * (size_t)cycles + (size_t)g_nch, sizeof(*g_hs));
  if (g_ch == NULL || g_hs == NULL) die("out of memory");
  grpc_arg args[2];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL; /* one connection per channel */
  args[0].value.integer = 1;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_ENABLE_RETRIES;
  args[1].value.integer = 0;
  grpc_channel_args chargs = {2, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  for (int i = 0; i < g_nch; i++) g_ch[i] = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(600, GPR_TIMESPAN));
  printf("keyholdd pid %d; %d streams over %d connection%s (%d per connection)\n", (int)g_kd, n,
         g_nch, g_nch == 1 ? "" : "s", per_conn);
  mem start = read_mem();
  print_mem("start", start);

  /* Warm-up: one stream per connection (connects them all, builds the
   * identity's SSL_CTX). Its freed memory is reused by the first sessions,
   * which biases the per-session figure low by about 1/STREAMS_PER_CONNECTION. */
  int warm = hold(0, g_nch, deadline);
  if (warm != g_nch) {
    status_summary("warm-up", 0, g_n_started);
    die("warm-up streams were not all held");
  }
  if (!release(0, g_nch)) die("warm-up streams did not end within 30 s");
  free_calls(0, g_nch);
  sleep(2);
  mem base = read_mem();
  print_mem("baseline", base);

  /* Cycle 1 gives the figures; further cycles show whether anything grows
   * across rounds (a leak) rather than being retained once (allocator). */
  int held = 0, held_min = n, released = 1;
  mem peak = base, after = base;
  for (int cyc = 0; cyc < cycles; cyc++) {
    int from = g_n_started;
    if (cycles > 1) printf("-- cycle %d of %d\n", cyc + 1, cycles);
    double t0 = bp_now();
    int h = hold(from, from + n, deadline);
    double took = bp_now() - t0;
    usleep(500000);
    mem p = read_mem();
    printf("held %d of %d in %.2f s (%d streams started, %d already ended)\n", h, n, took,
           g_n_started - from, g_n_status - from);
    fflush(stdout);
    print_mem("peak", p);
    if (h < n) status_summary("streams that ended early", from, g_n_started);
    double r0 = bp_now();
    int r = release(from, g_n_started);
    printf("released in %.2f s%s\n", bp_now() - r0, r ? "" : " (NOT all ended within 30 s)");
    status_summary("release", from, g_n_started);
    free_calls(from, g_n_started);
    sleep(2);
    mem a = read_mem();
    print_mem("after", a);
    if (cyc == 0) {
      held = h;
      peak = p;
    }
    released = released && r;
    held_min = h < held_min ? h : held_min;
    after = a;
  }

  double per = held > 0 ? (double)(peak.rss - base.rss) / held : 0;
  double per_anon = held > 0 ? (double)(peak.anon - base.anon) / held : 0;
  printf(
      "per in-flight session: %.1f KiB RSS (%.1f KiB anonymous); after - baseline: %+ld KiB"
      " (%+.1f%%)\n",
      per, per_anon, after.rss - base.rss, 100.0 * (double)(after.rss - base.rss) / base.rss);

  for (int i = 0; i < g_nch; i++) grpc_channel_destroy(g_ch[i]);
  grpc_completion_queue_shutdown(g_cq);
  while (grpc_completion_queue_next(g_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(g_cq);
  grpc_slice_unref(g_start);
  grpc_shutdown();
  stop_kd(); /* before the RESULT lines: any note about its exit comes first */
  if (held_min < n) show_log();

  printf(
      "RESULT scale_rss_per_session ours=%.1f baseline=%.2f unit=KiB ratio=%.2f target=%.2f "
      "cmp=le\n",
      per, inproc, per / inproc, 64.0 / inproc);
  printf("RESULT scale_rss_after ours=%ld baseline=%ld unit=KiB ratio=%.3f target=1.05 cmp=le\n",
         after.rss, base.rss, (double)after.rss / (double)base.rss);
  free(g_ch);
  free(g_hs);
  cleanup();
  return held_min == n && released ? 0 : 1;
}

/* grpc_floor_bench: what an offloaded handshake costs above the gRPC floor
 * (issue 15, part 2), all in one run.
 *   grpc_floor_bench [SECONDS]      (default 2: each of the three below gets
 *                                    SECONDS, in two alternating halves)
 * 1. The floor: a bare gRPC C core bidi streaming call between two processes
 *    over a Unix socket, insecure credentials (as keyholdd and the shim use
 *    them), no crypto, doing what an S2A v1 client-side handshake does on
 *    its stream: open it, two request/response round trips with the message
 *    sizes of such a handshake, and close (the server ends the call with its
 *    second response and the status, as keyholdd does; the client then
 *    half-closes, as the shim does). This program forks and execs itself as
 *    the server (`serve SOCKET`: one completion-queue thread, the call's
 *    steps batched as keyholdd's server.c batches them) and as the client
 *    (`call SOCKET SECS`: one channel, one completion queue, one call at a
 *    time, the shim's batches). Both link grpc_unsecure (the shim links
 *    grpc, the same core with TLS credentials it does not use here).
 * 2. In-process: hs_bssl's client (BoringSSL), full mutual TLS 1.3
 *    handshakes one at a time against an hs_bssl peer server.
 * 3. Offloaded: hs_keyhold's client (libkeyhold + keyholdd), the same
 *    handshakes against the same peer.
 * Latency: p50 of a full exchange (1) or of connect + handshake + first byte
 * (2, 3), one at a time. CPU per exchange or handshake: the floor's client
 * and server; the in-process client; the shim's process and keyholdd (the
 * peer's CPU is the same for 2 and 3 and left out). Each client measures its
 * own CPU (getrusage, over its run); the servers' comes from /proc/PID/stat
 * before and after each client run (clock ticks: 10 ms).
 * Message sizes (bytes of the serialized S2A messages of a client-side
 * handshake with the test PKI's P-256 certificates, measured 2026-12-03 in
 * the shim's kh_stream_exchange): ClientStart 53 -> ClientHello 233; server
 * flight 808 -> client flight and result 874.
 * Prints, last (targets on the ratio, issue 15):
 *   RESULT grpc_floor_added_cpu ours=<keyhold CPU per handshake - in-process
 *     CPU per handshake> baseline=<floor CPU per exchange> unit=us
 *     ratio=<r> target=1.50 cmp=le
 *   RESULT grpc_floor_added_latency ours=<keyhold p50 - in-process p50>
 *     baseline=<floor p50> unit=us ratio=<r> */
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "bench_driver.h"
#include "bench_proc.h"
#include "hs_common.h"

#define METHOD "/s2a.proto.S2AService/SetUpSession"

static const size_t k_req[2] = {53, 808}, k_resp[2] = {233, 874};
static uint8_t g_zeros[1024];

static grpc_byte_buffer *message(size_t len) {
  grpc_slice s = grpc_slice_from_static_buffer(g_zeros, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

static _Noreturn void die_grpc(const char *what) {
  fprintf(stderr, "grpc_floor_bench: %s\n", what);
  exit(1);
}

/* --- the floor's server ----------------------------------------------------- */

enum { T_NEW, T_RECV, T_SENT, T_CLOSE };

typedef struct {
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *in, *out;
  int cancelled, closed, step, outstanding;
} scall;

static void *stag(scall *c, int kind) {
  return (void *)((uintptr_t)c | (uintptr_t)kind);
}

static void batch(scall *c, grpc_op *ops, size_t n, int kind) {
  if (grpc_call_start_batch(c->call, ops, n, stag(c, kind), NULL) != GRPC_CALL_OK)
    die_grpc("server start_batch");
  c->outstanding++;
}

static void arm(grpc_server *srv, void *method, grpc_completion_queue *cq) {
  scall *c = calloc(1, sizeof(*c));
  if (c == NULL) die_grpc("out of memory");
  grpc_metadata_array_init(&c->md);
  if (grpc_server_request_registered_call(srv, method, &c->call, &c->deadline, &c->md, NULL, cq, cq,
                                          stag(c, T_NEW)) != GRPC_CALL_OK)
    die_grpc("request_registered_call");
  c->outstanding++;
}

/* on_event moves one call a step on, as keyholdd's server does: on arrival,
 * watch for its end and read the request; after the first, answer with the
 * initial metadata and the first response and read again; after the second,
 * answer with the last response and the status. */
static void on_event(scall *c, int kind, int success, grpc_server *srv, void *method,
                     grpc_completion_queue *cq) {
  grpc_op ops[3];
  memset(ops, 0, sizeof(ops));
  c->outstanding--;
  if (c->out != NULL && kind != T_CLOSE) {
    grpc_byte_buffer_destroy(c->out);
    c->out = NULL;
  }
  if (kind == T_NEW) {
    arm(srv, method, cq);
    ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[0].data.recv_close_on_server.cancelled = &c->cancelled;
    batch(c, ops, 1, T_CLOSE);
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &c->in;
    batch(c, ops, 1, T_RECV);
  } else if (kind == T_RECV && success && c->in != NULL) {
    grpc_byte_buffer_destroy(c->in);
    c->in = NULL;
    c->out = message(k_resp[c->step]);
    if (c->step++ == 0) {
      ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
      ops[1].op = GRPC_OP_SEND_MESSAGE;
      ops[1].data.send_message.send_message = c->out;
      ops[2].op = GRPC_OP_RECV_MESSAGE;
      ops[2].data.recv_message.recv_message = &c->in;
      batch(c, ops, 3, T_RECV);
    } else {
      ops[0].op = GRPC_OP_SEND_MESSAGE;
      ops[0].data.send_message.send_message = c->out;
      ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
      ops[1].data.send_status_from_server.status = GRPC_STATUS_OK;
      batch(c, ops, 2, T_SENT);
    }
  } else if (kind == T_CLOSE) {
    c->closed = 1;
  }
  if (c->closed && c->outstanding == 0) {
    if (c->in) grpc_byte_buffer_destroy(c->in);
    if (c->out) grpc_byte_buffer_destroy(c->out);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_unref(c->call);
    free(c);
  }
}

/* floor_serve serves until killed (the driver's SIGTERM). */
static _Noreturn void floor_serve(const char *sock) {
  char addr[PATH_MAX + 8];
  snprintf(addr, sizeof(addr), "unix:%s", sock);
  grpc_init();
  grpc_server *srv = grpc_server_create(NULL, NULL);
  void *method = grpc_server_register_method(srv, METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(srv, cq, NULL);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  if (method == NULL || !grpc_server_add_http2_port(srv, addr, creds)) die_grpc("cannot listen");
  grpc_server_credentials_release(creds);
  grpc_server_start(srv);
  arm(srv, method, cq);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    uintptr_t t = (uintptr_t)ev.tag;
    on_event((scall *)(t & ~(uintptr_t)3), (int)(t & 3), ev.success, srv, method, cq);
  }
}

/* --- the floor's client ----------------------------------------------------- */

/* run_ops starts |ops| and waits for them; 0 if they failed. */
static int run_ops(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n, void *tag) {
  if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK) return 0;
  return grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).success;
}

/* exchange: one stream with two round trips; 1 if both answers and an OK
 * status came back. */
static int exchange(grpc_channel *ch, grpc_completion_queue *cq) {
  static char tags[3];
  grpc_slice m = grpc_slice_from_static_string(METHOD);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(10, GPR_TIMESPAN));
  grpc_call *call =
      grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
  grpc_metadata_array md, trailing;
  grpc_metadata_array_init(&md);
  grpc_metadata_array_init(&trailing);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op st, ops[4];
  memset(&st, 0, sizeof(st));
  st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  st.data.recv_status_on_client.trailing_metadata = &trailing;
  st.data.recv_status_on_client.status = &status;
  st.data.recv_status_on_client.status_details = &details;
  int ok = grpc_call_start_batch(call, &st, 1, &tags[0], NULL) == GRPC_CALL_OK;
  for (int i = 0; ok && i < 2; i++) {
    grpc_byte_buffer *out = message(k_req[i]), *in = NULL;
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (i == 0) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = out;
    if (i == 0) {
      ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[n++].data.recv_initial_metadata.recv_initial_metadata = &md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &in;
    ok = run_ops(call, cq, ops, n, &tags[1]) && in != NULL &&
         grpc_byte_buffer_length(in) == k_resp[i];
    grpc_byte_buffer_destroy(out);
    if (in) grpc_byte_buffer_destroy(in);
  }
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  int closing = ok && grpc_call_start_batch(call, ops, 1, &tags[2], NULL) == GRPC_CALL_OK;
  if (!ok) grpc_call_cancel(call, NULL);
  grpc_completion_queue_pluck(cq, &tags[0], gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (closing) grpc_completion_queue_pluck(cq, &tags[2], gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  grpc_metadata_array_destroy(&md);
  grpc_metadata_array_destroy(&trailing);
  grpc_slice_unref(details);
  grpc_call_unref(call);
  return ok && status == GRPC_STATUS_OK;
}

/* floor_call runs exchanges one after the other for |secs| after a first,
 * unmeasured one (the connection); prints hs_report's line. */
static int floor_call(const char *sock, double secs) {
  char target[PATH_MAX + 8];
  snprintf(target, sizeof(target), "unix:%s", sock);
  grpc_init();
  grpc_arg arg = {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0};
  grpc_channel_args args = {1, &arg}; /* as the shim: no retries */
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(target, creds, &args);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  hs_lat = malloc(sizeof(double) * HS_MAX_SAMPLES);
  if (hs_lat == NULL || !exchange(ch, cq)) die_grpc("the floor's first exchange failed");
  size_t n = 0, failed = 0;
  double t0 = bp_now(), cpu0 = hs_cpu();
  while (bp_now() < t0 + secs && n < HS_MAX_SAMPLES) {
    double t = bp_now();
    if (exchange(ch, cq))
      hs_lat[n++] = bp_now() - t;
    else
      failed++;
  }
  hs_report(n, failed, bp_now() - t0, hs_lat, hs_cpu() - cpu0);
  grpc_channel_destroy(ch);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_shutdown();
  return 0;
}

/* --- the driver ------------------------------------------------------------- */

static char g_tmp[64];

/* One of the three, summed over its runs. */
typedef struct {
  size_t n;
  double p50_sum, client_cpu, server_cpu; /* seconds */
  int runs;
} tally;

/* measure runs one client; |server| (or -1) is the process whose CPU counts
 * with the client's. */
static void measure(tally *t, char *const argv[], pid_t server) {
  double s0 = server > 0 ? bd_proc_cpu(server) : 0;
  bd_result r = bd_run_client(argv);
  double s1 = server > 0 ? bd_proc_cpu(server) : 0;
  if (r.failed > 0 || r.n == 0 || s0 < 0 || s1 < 0) bd_die("a run failed");
  t->n += r.n;
  t->p50_sum += r.p50;
  t->client_cpu += r.cpu;
  t->server_cpu += s1 - s0;
  t->runs++;
}

static double p50(const tally *t) {
  return t->p50_sum / t->runs;
}

static double cpu_us(const tally *t) { /* per exchange or handshake */
  return (t->client_cpu + t->server_cpu) / (double)t->n * 1e6;
}

static void wait_socket(const char *path, const char *what) {
  struct stat st;
  for (int i = 0; i < 400 && stat(path, &st) != 0; i++) usleep(25000);
  if (stat(path, &st) != 0) bd_die(what);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "serve") == 0) floor_serve(argv[2]);
  if (argc == 4 && strcmp(argv[1], "call") == 0) return floor_call(argv[2], atof(argv[3]));
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  if (argc > 2 || secs <= 0) {
    fprintf(stderr, "usage: grpc_floor_bench [SECONDS]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  bd_init("grpc_floor_bench", g_tmp);
  char kd[PATH_MAX], bin[PATH_MAX], self[PATH_MAX], bssl[PATH_MAX], ours[PATH_MAX];
  if (!bp_keyholdd(kd, bin)) bd_die("keyholdd is not built next to bench/");
  const char *why = bp_scratch(g_tmp, "floorbench");
  if (why != NULL) bd_die(why);
  snprintf(self, sizeof(self), "%.1000s/grpc_floor_bench", bin);
  snprintf(bssl, sizeof(bssl), "%.1000s/hs_bssl", bin);
  snprintf(ours, sizeof(ours), "%.1000s/hs_keyhold", bin);
  char sock[128], fsock[128];
  snprintf(sock, sizeof(sock), "%s/kd.sock", g_tmp);
  snprintf(fsock, sizeof(fsock), "%s/floor.sock", g_tmp);
  static bp_pki k;
  bp_pki_paths(&k, g_tmp);

  pid_t kd_pid, floor_pid, peer_pid;
  char *kd_argv[] = {kd,       "--socket",    sock,    "--identities",
                     k.ids,    "--log-level", "error", "--max-handshakes-per-caller",
                     "100000", NULL};
  bd_spawn(kd_argv, &kd_pid);
  wait_socket(sock, "keyholdd did not start");
  char *floor_argv[] = {self, "serve", fsock, NULL};
  bd_spawn(floor_argv, &floor_pid);
  wait_socket(fsock, "the floor's server did not start");
  char *peer_argv[] = {bssl, "server", k.scrt, k.skey, k.ca, "1", NULL};
  char port[16];
  snprintf(port, sizeof(port), "%d", bd_read_port(bd_spawn(peer_argv, &peer_pid)));

  char half[32];
  snprintf(half, sizeof(half), "%.3f", secs / 2);
  char *call_argv[] = {self, "call", fsock, half, NULL};
  char *inproc_argv[] = {bssl, "client", port, k.ccrt, k.ckey, k.ca, "1", half, NULL};
  char *ours_argv[] = {ours, "client", sock, port, "1", half, NULL};
  tally fl = {0}, in = {0}, kh = {0};
  for (int round = 0; round < 2; round++) { /* alternating halves */
    measure(&fl, call_argv, floor_pid);
    measure(&in, inproc_argv, -1);
    measure(&kh, ours_argv, kd_pid);
  }

  printf(
      "floor, bare gRPC stream with 2 round trips: %zu exchanges, p50 %.1f us, CPU %.1f us per "
      "exchange (client %.1f + server %.1f)\n",
      fl.n, p50(&fl), cpu_us(&fl), fl.client_cpu / fl.n * 1e6, fl.server_cpu / fl.n * 1e6);
  printf("in-process BoringSSL: %zu handshakes, p50 %.1f us, CPU %.1f us per handshake\n", in.n,
         p50(&in), cpu_us(&in));
  printf(
      "offloaded (libkeyhold + keyholdd): %zu handshakes, p50 %.1f us, CPU %.1f us per handshake "
      "(shim %.1f + keyholdd %.1f)\n",
      kh.n, p50(&kh), cpu_us(&kh), kh.client_cpu / kh.n * 1e6, kh.server_cpu / kh.n * 1e6);
  double added_cpu = cpu_us(&kh) - cpu_us(&in), added_p50 = p50(&kh) - p50(&in);
  bd_cleanup();
  printf(
      "RESULT grpc_floor_added_cpu ours=%.1f baseline=%.1f unit=us ratio=%.2f target=1.50 "
      "cmp=le\n",
      added_cpu, cpu_us(&fl), added_cpu / cpu_us(&fl));
  printf("RESULT grpc_floor_added_latency ours=%.1f baseline=%.1f unit=us ratio=%.2f\n", added_p50,
         p50(&fl), added_p50 / p50(&fl));
  return 0;
}

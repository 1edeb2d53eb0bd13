/* health_cmd.c: keyhold health --sidecar PATH [--service NAME] [--timeout MS]
 * Prints the status and exits 0 for SERVING, 1 for anything else (NOT_SERVING,
 * an unknown service, no answer): what an exec probe wants. */
#include "health_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "cli_util.h"
#include "grpc/health/v1/health.pb-c.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyhold health --sidecar PATH [--service NAME] [--timeout MS]\n"
          "Asks keyholdd's grpc.health.v1.Health/Check; prints the status; exits 0 when\n"
          "SERVING, 1 otherwise. --sidecar defaults to $KEYHOLD_SIDECAR; --timeout to 2000.\n");
}

static const char *status_name(int s) {
  switch (s) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
      return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
}

/* check: one unary call; the status in |*out| (or the gRPC error). */
static int check(const char *sidecar, const char *service, long timeout_ms, int *out) {
  char target[4200];
  snprintf(target, sizeof(target), "unix:%s", sidecar);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(target, creds, NULL);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_slice method = grpc_slice_from_static_string("/grpc.health.v1.Health/Check");
  grpc_call *call =
      grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);

  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)service;
  uint8_t buf[512];
  size_t n = grpc__health__v1__health_check_request__pack(&req, buf);
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, n);
  grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1), *recv = NULL;
  grpc_slice_unref(s);
  grpc_metadata_array md, trailers;
  grpc_metadata_array_init(&md);
  grpc_metadata_array_init(&trailers);
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailers;
  ops[5].data.recv_status_on_client.status = &code;
  ops[5].data.recv_status_on_client.status_details = &details;
  int ok = grpc_call_start_batch(call, ops, 6, (void *)1, NULL) == GRPC_CALL_OK;
  if (ok) grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (ok && code == GRPC_STATUS_OK && recv != NULL) {
    grpc_byte_buffer_reader r;
    grpc_slice all = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&r, recv)) {
      all = grpc_byte_buffer_reader_readall(&r);
      grpc_byte_buffer_reader_destroy(&r);
    }
    Grpc__Health__V1__HealthCheckResponse *resp = grpc__health__v1__health_check_response__unpack(
        NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    if (resp != NULL)
      *out = resp->status;
    else
      ok = kh_cli_fail("health: malformed HealthCheckResponse from %s", sidecar) == 0;
    grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    grpc_slice_unref(all);
  } else if (ok) {
    char *d = grpc_slice_to_c_string(details);
    kh_cli_fail("health: %s: gRPC status %d: %s", sidecar, (int)code, d);
    gpr_free(d);
    ok = 0;
  }
  if (recv) grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&md);
  grpc_metadata_array_destroy(&trailers);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_channel_destroy(ch);
  return ok;
}

int kh_cli_health(int argc, char **argv) {
  static const struct option opts[] = {
      {"sidecar", required_argument, NULL, 's'},
      {"service", required_argument, NULL, 'n'},
      {"timeout", required_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *sidecar = getenv("KEYHOLD_SIDECAR"), *service = "";
  long timeout_ms = 2000;
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 's': sidecar = optarg; break;
      case 'n': service = optarg; break;
      case 't': timeout_ms = kh_cli_number("--timeout", optarg, 1, 600000); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "keyhold: health: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (sidecar == NULL) {
    fprintf(stderr, "keyhold: health: --sidecar PATH is required (or KEYHOLD_SIDECAR)\n");
    return 2;
  }
  if (strlen(service) > 200) kh_cli_die("%s", "health: --service: at most 200 bytes");
  grpc_init();
  int status = -1;
  int ok = check(sidecar, service, timeout_ms, &status);
  grpc_shutdown();
  if (!ok) return 1;
  printf("%s\n", status_name(status));
  return status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 1;
}

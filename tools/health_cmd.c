/* health_cmd.c: keyhold health --sidecar PATH [--service NAME] [--timeout MS]
 * Prints the status and exits 0 for SERVING, 1 for anything else (NOT_SERVING,
 * an unknown service, no answer): what an exec probe wants. */
#include "health_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "keyhold.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: keyhold health --sidecar PATH [--service NAME] [--timeout MS]\n"
          "Asks keyholdd's grpc.health.v1.Health/Check; prints the status; exits 0 when\n"
          "SERVING, 1 otherwise. --sidecar defaults to $KEYHOLD_SIDECAR; --timeout to 2000.\n");
}

static const char *status_name(kh_health_status s) {
  switch (s) {
    case KH_HEALTH_SERVING: return "SERVING";
    case KH_HEALTH_NOT_SERVING: return "NOT_SERVING";
    case KH_HEALTH_SERVICE_UNKNOWN: return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
  }
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
  kh_error err;
  kh_client *kc = kh_client_new(sidecar, &err);
  if (kc == NULL) return kh_cli_fail("health: %s", err.msg);
  kh_health_status st = KH_HEALTH_UNKNOWN;
  int ok = kh_health_check(kc, service, (int)timeout_ms, &st, &err);
  kh_client_free(kc);
  if (!ok)
    return kh_cli_fail("health: %s: gRPC status %u: %s", sidecar, kh_code_to_grpc(err.code),
                       err.msg);
  printf("%s\n", status_name(st));
  return st == KH_HEALTH_SERVING ? 0 : 1;
}

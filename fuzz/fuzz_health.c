/* fuzz_health: grpc.health.v1 requests (untrusted bytes from any caller
 * that reaches the socket: probes are open to all) through Check and Watch,
 * first byte choosing the method and the serving state; then a Watch poll
 * and a second request, as a client could send. */
#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "kh_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"s2a.proto.S2AService", "keyhold.v1.SecureChannel", NULL};
  if (size < 1) return 0;
  kh_log_set_level(KH_LOG_OFF);
  kh_health h = {.serving = data[0] & 2, .services = names};
  kh_service svc[KH_HEALTH_SERVICES];
  kh_health_services(&h, svc);
  kh_service *s = &svc[data[0] & 1];
  kh_caller caller = {.uid = 1, .gid = 1, .pid = 1};
  void *session = s->session_new(s->arg, &caller);
  if (session == NULL) return 0;
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  kh_rpc_outcome out = s->handle(session, data + 1, size - 1, &resp, &err);
  kh_buf_reset(&resp);
  if (out == KH_RPC_CONTINUE && s->watch != NULL) {
    kh_health_set(&h, !(data[0] & 2));
    s->watch(session, &resp);
    kh_buf_reset(&resp);
    s->handle(session, data + 1, size - 1, &resp, &err);
  }
  kh_buf_free(&resp);
  s->session_free(session);
  return 0;
}

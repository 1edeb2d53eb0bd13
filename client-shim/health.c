/* health.c: libkeyhold's grpc.health.v1.Health/Check (one unary call on
 * the shim's sidecar stream). */
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "keyhold.h"
#include "session.h"
#include "sidecar_stream.h"

int kh_health_check(kh_client *kc, const char *service, int timeout_ms, kh_health_status *out,
                    kh_error *err) {
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  q.service = (char *)(service ? service : "");
  uint8_t msg[512];
  if (grpc__health__v1__health_check_request__get_packed_size(&q) > sizeof(msg))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "service name too long");
  size_t n = grpc__health__v1__health_check_request__pack(&q, msg);
  kh_buf resp = KH_BUF_INIT;
  kh_stream *s = kh_stream_open(kh_client_sidecar(kc), "/grpc.health.v1.Health/Check",
                                timeout_ms > 0 ? timeout_ms : KH_DEFAULT_TIMEOUT_MS, err);
  int ok = s != NULL && kh_stream_exchange(s, msg, n, &resp, err);
  if (s != NULL) kh_stream_close(s, !ok);
  Grpc__Health__V1__HealthCheckResponse *r =
      ok ? grpc__health__v1__health_check_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (ok && r == NULL)
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed HealthCheckResponse");
  if (ok) *out = (kh_health_status)r->status;
  if (r != NULL) grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
  return ok;
}

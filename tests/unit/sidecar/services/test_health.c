/* sidecar/services/health: Check answers SERVING / NOT_SERVING as the state
 * says, NOT_FOUND for an unknown service, refuses malformed and second
 * requests; Watch answers at once and pushes only changes. */
#include <check.h>

#include "testutil.h"

#include "grpc/health/v1/health.pb-c.h"
#include "health.h"

static const char *const names[] = {"s2a.proto.S2AService", NULL};

static size_t request(const char *service, uint8_t *out) {
  Grpc__Health__V1__HealthCheckRequest r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  r.service = (char *)service;
  return grpc__health__v1__health_check_request__pack(&r, out);
}

static int status_of(const kh_buf *b) {
  Grpc__Health__V1__HealthCheckResponse *r =
      grpc__health__v1__health_check_response__unpack(NULL, b->len, b->data);
  ck_assert_ptr_nonnull(r);
  int s = r->status;
  grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  return s;
}

/* call: one request to service |i| (0 Check, 1 Watch) of a new session. */
static kh_rpc_outcome call(kh_service *svc, void **session, const char *service, kh_buf *resp,
                           kh_error *err) {
  kh_caller c = {.uid = 1, .gid = 1, .pid = 1};
  *session = svc->session_new(svc->arg, &c);
  uint8_t req[300];
  size_t n = request(service, req);
  return svc->handle(*session, req, n, resp, err);
}

START_TEST(test_check) {
  kh_health h = {.serving = 0, .services = names};
  kh_service svc[KH_HEALTH_SERVICES];
  kh_health_services(&h, svc);
  ck_assert_str_eq(svc[0].method, "/grpc.health.v1.Health/Check");
  ck_assert(svc[0].probe && svc[0].watch == NULL);
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  void *s;
  ck_assert_int_eq(call(&svc[0], &s, "", &resp, &err), KH_RPC_FINISHED);
  ck_assert_int_eq(status_of(&resp), 2); /* NOT_SERVING */
  svc[0].session_free(s);
  ck_assert(kh_health_set(&h, 1));
  ck_assert(!kh_health_set(&h, 1)); /* no change */
  kh_buf_reset(&resp);
  ck_assert_int_eq(call(&svc[0], &s, "s2a.proto.S2AService", &resp, &err), KH_RPC_FINISHED);
  ck_assert_int_eq(status_of(&resp), 1); /* SERVING */
  /* A second request on the same call is refused. */
  uint8_t req[8];
  size_t n = request("", req);
  kh_buf_reset(&resp);
  ck_assert_int_eq(svc[0].handle(s, req, n, &resp, &err), KH_RPC_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  svc[0].session_free(s);
  kh_buf_reset(&resp);
  ck_assert_int_eq(call(&svc[0], &s, "no.Such", &resp, &err), KH_RPC_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  ck_assert_str_eq(err.msg, "grpc.health.v1: unknown service 'no.Such'");
  svc[0].session_free(s);
  /* Garbage: not a HealthCheckRequest. */
  s = svc[0].session_new(svc[0].arg, &(kh_caller){0});
  const uint8_t junk[] = {0x0a, 0x7f, 'x'};
  ck_assert_int_eq(svc[0].handle(s, junk, sizeof(junk), &resp, &err), KH_RPC_FAILED);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  svc[0].session_free(s);
  kh_buf_free(&resp);
}
END_TEST

START_TEST(test_watch_pushes_changes_only) {
  kh_health h = {.serving = 1, .services = names};
  kh_service svc[KH_HEALTH_SERVICES];
  kh_health_services(&h, svc);
  ck_assert_str_eq(svc[1].method, "/grpc.health.v1.Health/Watch");
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  void *s;
  ck_assert_int_eq(call(&svc[1], &s, "", &resp, &err), KH_RPC_CONTINUE);
  ck_assert_int_eq(status_of(&resp), 1);
  kh_buf_reset(&resp);
  ck_assert(!svc[1].watch(s, &resp)); /* nothing new */
  kh_health_set(&h, 0);
  ck_assert(svc[1].watch(s, &resp));
  ck_assert_int_eq(status_of(&resp), 2);
  kh_buf_reset(&resp);
  ck_assert(!svc[1].watch(s, &resp));
  svc[1].session_free(s);
  /* Unknown service: SERVICE_UNKNOWN, and the stream stays open. */
  ck_assert_int_eq(call(&svc[1], &s, "nope", &resp, &err), KH_RPC_CONTINUE);
  ck_assert_int_eq(status_of(&resp), 3);
  kh_buf_reset(&resp);
  kh_health_set(&h, 1);
  ck_assert(!svc[1].watch(s, &resp));
  svc[1].session_free(s);
  kh_buf_free(&resp);
}
END_TEST

int main(void) {
  Suite *s = suite_create("health");
  TCase *tc = tcase_create("health");
  tcase_add_test(tc, test_check);
  tcase_add_test(tc, test_watch_pushes_changes_only);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

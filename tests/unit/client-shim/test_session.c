/* The shim's sans-IO session (keyhold.h kh_session_*) without a sidecar:
 * argument checks, what it refuses before the handshake, the input bound,
 * the output window, and a sidecar that is not there. The handshake itself
 * runs against a real sidecar and peer in tests/integration/session_api.sh. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "session.h"

/* Nothing listens here: kh_client_new does not connect, a handshake fails. */
#define NO_SIDECAR "/nonexistent/keyhold-test.sock"

static kh_client *client(void) {
  kh_error err;
  kh_client *kc = kh_client_new(NO_SIDECAR, &err);
  ck_assert_msg(kc != NULL, "%s", err.msg);
  return kc;
}

START_TEST(test_new_checks_its_arguments) {
  kh_client *kc = client();
  kh_error err;
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  ck_assert(kh_session_new(NULL, KH_ROLE_CLIENT, &o, &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(kh_session_new(kc, (kh_role)7, &o, &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  o.alpn_count = KH_MAX_PROTOCOLS + 1;
  ck_assert(kh_session_new(kc, KH_ROLE_CLIENT, &o, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "too many ALPN") != NULL, "%s", err.msg);
  kh_session *s = kh_session_new(kc, KH_ROLE_SERVER, NULL, &err); /* NULL: defaults */
  ck_assert(s != NULL);
  kh_session_free(s);
  kh_session_free(NULL);
  kh_client_free(kc);
}
END_TEST

START_TEST(test_nothing_before_the_handshake) {
  kh_client *kc = client();
  kh_error err;
  kh_session *s = kh_session_new(kc, KH_ROLE_SERVER, NULL, &err);
  ck_assert(s != NULL);
  /* A server waits for the ClientHello: no sidecar call without bytes. */
  ck_assert(!kh_session_handshake(s, &err));
  ck_assert_int_eq(err.code, KH_ERR_WANT_READ);
  size_t len = 1;
  kh_session_output(s, &len);
  ck_assert_uint_eq(len, 0);
  uint8_t buf[16];
  ck_assert(!kh_session_seal(s, "x", 1, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_msg(strstr(err.msg, "handshake not finished") != NULL, "%s", err.msg);
  ck_assert_int_eq(kh_session_open(s, buf, sizeof(buf), &err), -1);
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(!kh_session_key_update(s, 1, &err));
  ck_assert(!kh_session_close(s, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_uint_eq(kh_session_pending(s), 0);
  ck_assert(kh_session_flush_tickets(s, &err)); /* none queued: nothing to do */
  kh_conn_info info;
  kh_session_get_info(s, &info);
  ck_assert_str_eq(info.version, "TLSv1.3");
  ck_assert_str_eq(info.ciphersuite, "");
  ck_assert_str_eq(info.peer_identity, "");
  ck_assert_int_eq(info.resumed, 0);
  kh_session_output_consumed(s, 100); /* more than there is: clamped */
  /* A NULL kh_error is allowed everywhere. */
  ck_assert(!kh_session_handshake(s, NULL));
  ck_assert_int_eq(kh_session_open(s, buf, sizeof(buf), NULL), -1);
  ck_assert(!kh_session_seal(s, "x", 1, NULL));
  ck_assert(!kh_session_feed(s, buf, SIZE_MAX, NULL));
  kh_session_free(s);
  kh_client_free(kc);
}
END_TEST

START_TEST(test_feed_is_bounded) {
  kh_client *kc = client();
  kh_error err;
  kh_session *s = kh_session_new(kc, KH_ROLE_SERVER, NULL, &err);
  static uint8_t big[1 << 20];
  ck_assert(kh_session_feed(s, big, sizeof(big), &err));
  ck_assert(!kh_session_feed(s, big, 1, &err));
  ck_assert_int_eq(err.code, KH_ERR_RESOURCE_EXHAUSTED);
  ck_assert(!kh_session_feed(s, big, SIZE_MAX, &err)); /* no overflow in the check */
  ck_assert_int_eq(err.code, KH_ERR_RESOURCE_EXHAUSTED);
  kh_session_free(s);
  kh_client_free(kc);
}
END_TEST

START_TEST(test_no_sidecar_fails_for_good) {
  kh_client *kc = client();
  kh_error err;
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  char name[32] = "api.example.org";
  o.server_name = name;
  kh_session *s = kh_session_new(kc, KH_ROLE_CLIENT, &o, &err);
  ck_assert(s != NULL);
  memset(name, 'x', sizeof(name) - 1);       /* the session has its own copy */
  ck_assert(!kh_session_handshake(s, &err)); /* a client starts at once */
  ck_assert_int_eq(err.code, KH_ERR_UNAVAILABLE);
  ck_assert_msg(strstr(err.msg, "sidecar unavailable at " NO_SIDECAR) != NULL, "%s", err.msg);
  ck_assert(!kh_session_handshake(s, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_msg(strstr(err.msg, "handshake failed earlier") != NULL, "%s", err.msg);
  uint8_t buf[4];
  ck_assert_int_eq(kh_session_open(s, buf, sizeof(buf), &err), -1);
  ck_assert_msg(strstr(err.msg, "connection failed earlier") != NULL, "%s", err.msg);
  kh_session_free(s);
  kh_client_free(kc);
}
END_TEST

int main(void) {
  Suite *s = suite_create("session");
  TCase *tc = tcase_create("session");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_new_checks_its_arguments);
  tcase_add_test(tc, test_nothing_before_the_handshake);
  tcase_add_test(tc, test_feed_is_bounded);
  tcase_add_test(tc, test_no_sidecar_fails_for_good);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* sidecar/policy/kh_limits: defaults, ranges, names, and errors that change nothing. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "kh_limits.h"

START_TEST(test_defaults) {
  kh_limits l;
  kh_limits_default(&l);
  ck_assert_uint_eq(l.max_handshakes_per_caller, 256);
  ck_assert_uint_eq(l.max_server_handshakes_per_process, 256);
  ck_assert_uint_eq(l.handshake_timeout_ms, 10000);
  ck_assert_uint_eq(l.max_connections_per_caller, 256);
  ck_assert_uint_eq(l.max_connections, 4096);
  ck_assert_uint_eq(l.preface_timeout_ms, 2000);
  ck_assert_uint_eq(l.idle_timeout_ms, 300000);
  ck_assert_uint_eq(l.drain_timeout_ms, 5000);
}
END_TEST

START_TEST(test_set_in_range) {
  kh_limits l;
  kh_limits_default(&l);
  kh_error err;
  ck_assert(kh_limits_set(&l, "max_connections", "16", &err));
  ck_assert_uint_eq(l.max_connections, 16);
  ck_assert(kh_limits_set(&l, "drain_timeout_ms", "600000", &err));
  ck_assert_uint_eq(l.drain_timeout_ms, 600000);
  ck_assert_uint_eq(l.max_handshakes_per_caller, 256); /* others untouched */
}
END_TEST

#define KH_WANT "expected a number from 16 to 1000000, found '"
START_TEST(test_set_refuses_bad_values_and_keeps_the_old) {
  static const char *const bad[] = {"15",  "1000001", "-1",  "",
                                    "12x", " 20",     "+20", "99999999999999999999"};
  kh_limits l;
  kh_limits_default(&l);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    kh_error err;
    ck_assert_msg(!kh_limits_set(&l, "max_connections", bad[i], &err), "accepted '%s'", bad[i]);
    ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strncmp(err.msg, KH_WANT, strlen(KH_WANT)) == 0, "%s", err.msg);
    ck_assert_uint_eq(l.max_connections, 4096);
  }
}
END_TEST

START_TEST(test_unknown_name) {
  kh_limits l;
  kh_limits_default(&l);
  kh_error err;
  ck_assert(!kh_limits_set(&l, "max_everything", "1", &err));
  ck_assert_str_eq(err.msg, "unknown limit");
  ck_assert(!kh_limits_known("max_everything"));
  ck_assert(kh_limits_known("idle_timeout_ms"));
}
END_TEST

START_TEST(test_names_list_every_limit) {
  const char *const *names = kh_limits_names();
  size_t n = 0;
  kh_limits l;
  kh_limits_default(&l);
  kh_error err;
  for (; names[n] != NULL; n++)
    ck_assert_msg(kh_limits_set(&l, names[n], "1000", &err), "%s", names[n]);
  ck_assert_uint_eq(n, sizeof(kh_limits) / sizeof(unsigned));
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_limits");
  TCase *tc = tcase_create("kh_limits");
  tcase_add_test(tc, test_defaults);
  tcase_add_test(tc, test_set_in_range);
  tcase_add_test(tc, test_set_refuses_bad_values_and_keeps_the_old);
  tcase_add_test(tc, test_unknown_name);
  tcase_add_test(tc, test_names_list_every_limit);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

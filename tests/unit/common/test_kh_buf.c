/* common/kh_buf: growth, consume, reset. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "kh_buf.h"

START_TEST(test_append_grows_and_keeps_bytes) {
  kh_buf b = KH_BUF_INIT;
  for (int i = 0; i < 1000; i++) {
    uint8_t v = (uint8_t)i;
    ck_assert(kh_buf_append(&b, &v, 1));
  }
  ck_assert_uint_eq(b.len, 1000);
  ck_assert_uint_ge(b.cap, 1000);
  for (int i = 0; i < 1000; i++) ck_assert_uint_eq(b.data[i], (uint8_t)i);
  kh_buf_free(&b);
  ck_assert(b.data == NULL && b.len == 0 && b.cap == 0);
}
END_TEST

START_TEST(test_consume_and_reset) {
  kh_buf b = KH_BUF_INIT;
  ck_assert(kh_buf_append(&b, "abcdef", 6));
  kh_buf_consume(&b, 2);
  ck_assert_uint_eq(b.len, 4);
  ck_assert_mem_eq(b.data, "cdef", 4);
  kh_buf_consume(&b, 100); /* more than held: empties */
  ck_assert_uint_eq(b.len, 0);
  ck_assert(kh_buf_append(&b, "xy", 2));
  size_t cap = b.cap;
  kh_buf_reset(&b);
  ck_assert_uint_eq(b.len, 0);
  ck_assert_uint_eq(b.cap, cap);
  ck_assert_uint_eq(b.data[0], 0); /* wiped */
  ck_assert(kh_buf_append(&b, NULL, 0));
  kh_buf_free(&b);
}
END_TEST

START_TEST(test_reserve_overflow_refused) {
  kh_buf b = KH_BUF_INIT;
  ck_assert(kh_buf_append(&b, "a", 1));
  ck_assert(!kh_buf_reserve(&b, SIZE_MAX - 2));
  ck_assert_uint_eq(b.len, 1);
  kh_buf_free(&b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_buf");
  TCase *tc = tcase_create("kh_buf");
  tcase_add_test(tc, test_append_grows_and_keeps_bytes);
  tcase_add_test(tc, test_consume_and_reset);
  tcase_add_test(tc, test_reserve_overflow_refused);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

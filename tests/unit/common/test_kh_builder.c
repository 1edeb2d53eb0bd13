/* common/kh_builder: big-endian integers, nested length-prefixed children,
 * the hard cap, sticky errors that roll the output back, fixed arrays, and a
 * round trip through kh_cursor. */
#include <check.h>

#include "testutil.h"

#include "kh_builder.h"
#include "kh_cursor.h"

START_TEST(test_integers_and_bytes) {
  kh_buf out = KH_BUF_INIT;
  kh_builder b;
  kh_builder_init(&b, &out, 64);
  kh_builder_u8(&b, 1);
  kh_builder_u16(&b, 0x0203);
  kh_builder_u24(&b, 0x040506);
  kh_builder_u32(&b, 0x0708090a);
  kh_builder_bytes(&b, "xy", 2);
  kh_builder_bytes(&b, NULL, 0);
  size_t n = 0;
  kh_error err;
  ck_assert(kh_builder_finish(&b, &n, &err));
  const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 'x', 'y'};
  ck_assert_uint_eq(n, sizeof(want));
  ck_assert_uint_eq(out.len, sizeof(want));
  ck_assert_mem_eq(out.data, want, sizeof(want));
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_appends_after_existing_bytes) {
  kh_buf out = KH_BUF_INIT;
  ck_assert(kh_buf_append(&out, "ab", 2));
  kh_builder b;
  kh_builder_init(&b, &out, 4); /* the cap counts this builder's bytes only */
  kh_builder_u32(&b, 0x01020304);
  ck_assert_uint_eq(kh_builder_len(&b), 4);
  ck_assert_mem_eq(kh_builder_data(&b), "\x01\x02\x03\x04", 4);
  kh_error err;
  ck_assert(kh_builder_finish(&b, NULL, &err));
  ck_assert_uint_eq(out.len, 6);
  ck_assert_mem_eq(out.data, "ab\x01\x02\x03\x04", 6);
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_nested_children_get_their_lengths) {
  kh_buf out = KH_BUF_INIT;
  kh_builder b;
  kh_builder_init(&b, &out, 1024);
  kh_builder_u8(&b, 22);
  kh_builder_open_u24(&b);
  kh_builder_open_u16(&b);
  kh_builder_open_u8(&b);
  kh_builder_bytes(&b, "abc", 3);
  kh_builder_close(&b);
  kh_builder_u8(&b, 9);
  kh_builder_close(&b);
  kh_builder_close(&b);
  kh_builder_open_u8(&b); /* an empty child */
  kh_builder_close(&b);
  kh_error err;
  ck_assert(kh_builder_finish(&b, NULL, &err));
  const uint8_t want[] = {22, 0, 0, 7, 0, 5, 3, 'a', 'b', 'c', 9, 0};
  ck_assert_uint_eq(out.len, sizeof(want));
  ck_assert_mem_eq(out.data, want, sizeof(want));
  /* and the bounded reader takes it apart again */
  kh_cursor c, l1, l2, l3;
  uint8_t type, last;
  kh_cursor_init(&c, out.data, out.len);
  ck_assert(kh_cursor_u8(&c, &type) && type == 22);
  ck_assert(kh_cursor_u24_prefixed(&c, &l1));
  ck_assert(kh_cursor_u16_prefixed(&l1, &l2) && kh_cursor_left(&l1) == 0);
  ck_assert(kh_cursor_u8_prefixed(&l2, &l3) && kh_cursor_left(&l3) == 3);
  ck_assert(kh_cursor_u8(&l2, &last) && last == 9);
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_cap_is_hard_and_failure_rolls_back) {
  kh_buf out = KH_BUF_INIT;
  ck_assert(kh_buf_append(&out, "keep", 4));
  kh_builder b;
  kh_builder_init(&b, &out, 5);
  kh_builder_u32(&b, 0xdeadbeef);
  kh_builder_u16(&b, 1);                      /* 6 > 5 */
  ck_assert(kh_builder_space(&b, 0) == NULL); /* sticky */
  kh_builder_u8(&b, 1);                       /* would fit, but the builder has failed */
  kh_error err;
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(err.msg, "builder: output exceeds the builder's cap");
  ck_assert_uint_eq(out.len, 4); /* back to where it started */
  ck_assert_mem_eq(out.data, "keep", 4);
  ck_assert_uint_eq(out.data[4], 0); /* and wiped */
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_child_too_long_for_prefix_fails) {
  kh_buf out = KH_BUF_INIT;
  uint8_t big[300] = {0};
  kh_builder b;
  kh_builder_init(&b, &out, 1000);
  kh_builder_open_u8(&b);
  kh_builder_bytes(&b, big, sizeof(big));
  kh_builder_close(&b);
  kh_error err;
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_str_eq(err.msg, "builder: child too long for its length prefix");
  ck_assert_uint_eq(out.len, 0);
  kh_buf_free(&out);
}
END_TEST

START_TEST(test_integer_too_wide_fails) {
  uint8_t mem[8];
  kh_builder b;
  kh_error err;
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_u8(&b, 0x100);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_u24(&b, 0x1000000);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_str_eq(err.msg, "builder: integer too large for its field");
}
END_TEST

START_TEST(test_open_children_and_stray_close_fail) {
  uint8_t mem[8];
  kh_builder b;
  kh_error err;
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_open_u16(&b);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_str_eq(err.msg, "builder: length-prefixed child left open");
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_close(&b);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_str_eq(err.msg, "builder: close without an open child");
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  for (int i = 0; i <= KH_BUILDER_MAX_DEPTH; i++) kh_builder_open_u8(&b);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  ck_assert_str_eq(err.msg, "builder: length-prefixed children nested too deep");
}
END_TEST

START_TEST(test_fixed_array_and_space) {
  uint8_t mem[6] = {0};
  kh_builder b;
  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_u16(&b, 0xabcd);
  uint8_t *p = kh_builder_space(&b, 4);
  ck_assert(p == mem + 2);
  memcpy(p, "wxyz", 4);
  ck_assert(kh_builder_space(&b, 1) == NULL); /* the array is full */
  kh_error err;
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  for (size_t i = 0; i < sizeof(mem); i++) ck_assert_uint_eq(mem[i], 0); /* wiped */

  kh_builder_init_fixed(&b, mem, sizeof(mem));
  kh_builder_u16(&b, 0xabcd);
  p = kh_builder_space(&b, 4);
  ck_assert(p != NULL);
  memcpy(p, "wxyz", 4);
  size_t n;
  ck_assert(kh_builder_finish(&b, &n, &err));
  ck_assert_uint_eq(n, 6);
  ck_assert_mem_eq(mem, "\xab\xcdwxyz", 6);
}
END_TEST

START_TEST(test_growth_keeps_open_children) {
  /* A child that spans several reallocations of the buffer. */
  kh_buf out = KH_BUF_INIT;
  kh_builder b;
  kh_builder_init(&b, &out, 1 << 20);
  kh_builder_reserve(&b, 3);
  ck_assert_uint_ge(out.cap, 3);
  ck_assert_uint_eq(out.len, 0);
  kh_builder_open_u24(&b);
  for (int i = 0; i < 5000; i++) kh_builder_u16(&b, (uint32_t)i);
  kh_builder_close(&b);
  kh_error err;
  ck_assert(kh_builder_finish(&b, NULL, &err));
  ck_assert_uint_eq(out.len, 3 + 10000);
  ck_assert_mem_eq(out.data, "\x00\x27\x10", 3);
  ck_assert_mem_eq(out.data + 3 + 2 * 4999, "\x13\x87", 2);
  kh_builder_abort(&b); /* after a finish, too */
  ck_assert_uint_eq(out.len, 0);
  kh_builder_init(&b, &out, 8);
  kh_builder_reserve(&b, 9);
  ck_assert(!kh_builder_finish(&b, NULL, &err));
  kh_buf_free(&out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_builder");
  TCase *tc = tcase_create("kh_builder");
  tcase_add_test(tc, test_integers_and_bytes);
  tcase_add_test(tc, test_appends_after_existing_bytes);
  tcase_add_test(tc, test_nested_children_get_their_lengths);
  tcase_add_test(tc, test_cap_is_hard_and_failure_rolls_back);
  tcase_add_test(tc, test_child_too_long_for_prefix_fails);
  tcase_add_test(tc, test_integer_too_wide_fails);
  tcase_add_test(tc, test_open_children_and_stray_close_fail);
  tcase_add_test(tc, test_fixed_array_and_space);
  tcase_add_test(tc, test_growth_keeps_open_children);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

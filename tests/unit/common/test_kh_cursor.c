/* common/kh_cursor: bounded reads never overrun and leave the cursor
 * unmoved on failure. */
#include <check.h>

#include "testutil.h"

#include "kh_cursor.h"

START_TEST(test_integers_and_bounds) {
  const uint8_t d[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  kh_cursor c;
  kh_cursor_init(&c, d, sizeof(d));
  uint8_t u8;
  uint16_t u16;
  uint32_t u24, u32;
  ck_assert(kh_cursor_u8(&c, &u8) && u8 == 1);
  ck_assert(kh_cursor_u16(&c, &u16) && u16 == 0x0203);
  ck_assert(kh_cursor_u24(&c, &u24) && u24 == 0x040506);
  ck_assert(kh_cursor_u32(&c, &u32) && u32 == 0x0708090a);
  ck_assert_uint_eq(kh_cursor_left(&c), 0);
  ck_assert(!kh_cursor_u8(&c, &u8));
  ck_assert(!kh_cursor_skip(&c, 1));
}
END_TEST

START_TEST(test_prefixed_failure_leaves_cursor) {
  const uint8_t d[] = {0, 0, 5, 'a', 'b'}; /* claims 5 bytes, has 2 */
  kh_cursor c, body;
  kh_cursor_init(&c, d, sizeof(d));
  ck_assert(!kh_cursor_u24_prefixed(&c, &body));
  ck_assert(c.data == d && c.len == sizeof(d));
  const uint8_t e[] = {2, 'h', 'i', 9};
  kh_cursor_init(&c, e, sizeof(e));
  ck_assert(kh_cursor_u8_prefixed(&c, &body));
  ck_assert_uint_eq(body.len, 2);
  ck_assert_mem_eq(body.data, "hi", 2);
  ck_assert_uint_eq(kh_cursor_left(&c), 1);
  const uint8_t f[] = {0, 3, 'x'};
  kh_cursor_init(&c, f, sizeof(f));
  ck_assert(!kh_cursor_u16_prefixed(&c, &body));
  ck_assert_uint_eq(kh_cursor_left(&c), 3);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_cursor");
  TCase *tc = tcase_create("kh_cursor");
  tcase_add_test(tc, test_integers_and_bounds);
  tcase_add_test(tc, test_prefixed_failure_leaves_cursor);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

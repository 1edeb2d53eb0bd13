/* sidecar/keys/ticket_keys: the key file's format, its errors, the size bound,
 * and the current-keys slot. */
#include <check.h>

#include "testutil.h"
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "ticket_keys.h"

#define K1                                                                                         \
  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddee" \
  "ff"
#define K2                                                                                         \
  "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA998877665544332211" \
  "00"

static kh_ticket_keys *parse(const char *text, kh_error *err) {
  return kh_ticket_keys_parse(text, strlen(text), err);
}

START_TEST(test_keys_comments_blank_lines_and_crlf) {
  kh_error err;
  kh_ticket_keys *k = parse("# rotated 2026-12-02\n\n  " K1 "  \r\n" K2 "\n# old one last\n", &err);
  ck_assert_msg(k != NULL, "%s", err.msg);
  ck_assert_uint_eq(kh_ticket_keys_count(k), 2);
  kh_ticket_keys_unref(k);
  k = parse(K1, &err); /* no final newline */
  ck_assert_msg(k != NULL, "%s", err.msg);
  ck_assert_uint_eq(kh_ticket_keys_count(k), 1);
  kh_ticket_keys_unref(k);
}
END_TEST

START_TEST(test_errors_name_the_line) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"", "no key in the file"},
      {"# only a comment\n\n", "no key in the file"},
      {K1 "0\n", "line 1: a key is 96 hex digits, found 97 characters"},
      {K1 "\nabc\n", "line 2: a key is 96 hex digits, found 3 characters"},
      {"\n\n" K1 "\n", NULL},
      {"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccd"
       "deeff\n",
       "line 1: not a hex digit"},
      {K1 "\n# x\n"
          "00112233445566778899aabbccddeeff00112233445566778899aabbccddee "
          "g00112233445566778899aabbccddeeff\n",
       "line 3: not a hex digit"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kh_error err = {0};
    kh_ticket_keys *k = parse(cases[i].text, &err);
    if (cases[i].want == NULL) {
      ck_assert_msg(k != NULL, "case %zu: %s", i, err.msg);
      kh_ticket_keys_unref(k);
      continue;
    }
    ck_assert_msg(k == NULL, "case %zu accepted", i);
    ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
    ck_assert_str_eq(err.msg, cases[i].want);
  }
}
END_TEST

START_TEST(test_at_most_eight_keys) {
  char text[16 * 100] = "";
  for (int i = 0; i < 8; i++) strcat(text, K1 "\n");
  kh_error err;
  kh_ticket_keys *k = parse(text, &err);
  ck_assert_msg(k != NULL, "%s", err.msg);
  ck_assert_uint_eq(kh_ticket_keys_count(k), KH_TICKET_KEYS_MAX);
  kh_ticket_keys_unref(k);
  strcat(text, K2 "\n");
  ck_assert(parse(text, &err) == NULL);
  ck_assert_str_eq(err.msg, "line 9: more than 8 keys");
}
END_TEST

START_TEST(test_load_missing_and_oversized_files) {
  kh_error err;
  ck_assert(kh_ticket_keys_load("/nonexistent/ticket-keys", &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  char path[] = "/tmp/kh-test-tk-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  for (int i = 0; i < 50; i++) ck_assert_int_eq(write(fd, "# " K1 "\n", 99), 99); /* 4950 bytes */
  close(fd);
  ck_assert(kh_ticket_keys_load(path, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "larger than 4096 bytes") != NULL, "%s", err.msg);
  fd = open(path, O_WRONLY | O_TRUNC);
  ck_assert_int_eq(write(fd, K2 "\n", 97), 97);
  close(fd);
  kh_ticket_keys *k = kh_ticket_keys_load(path, &err);
  ck_assert_msg(k != NULL, "%s", err.msg);
  ck_assert_uint_eq(kh_ticket_keys_count(k), 1);
  kh_ticket_keys_unref(k);
  unlink(path);
}
END_TEST

START_TEST(test_slot_get_and_swap) {
  kh_error err;
  kh_ticket_keys *slot = kh_ticket_keys_random(&err);
  ck_assert_msg(slot != NULL, "%s", err.msg);
  kh_ticket_keys *held = kh_ticket_keys_get(&slot); /* a handshake's reference */
  ck_assert_ptr_eq(held, slot);
  kh_ticket_keys *next = parse(K1 "\n" K2 "\n", &err);
  kh_ticket_keys_swap(&slot, next);
  ck_assert_ptr_eq(slot, next);
  ck_assert_uint_eq(kh_ticket_keys_count(held), 1); /* still valid after the swap */
  kh_ticket_keys_unref(held);
  kh_ticket_keys_swap(&slot, NULL);
  ck_assert_ptr_null(kh_ticket_keys_get(&slot));
}
END_TEST

int main(void) {
  Suite *s = suite_create("ticket_keys");
  TCase *tc = tcase_create("ticket_keys");
  tcase_add_test(tc, test_keys_comments_blank_lines_and_crlf);
  tcase_add_test(tc, test_errors_name_the_line);
  tcase_add_test(tc, test_at_most_eight_keys);
  tcase_add_test(tc, test_load_missing_and_oversized_files);
  tcase_add_test(tc, test_slot_get_and_swap);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* common/kh_log: level and format names are checked; a JSON line is one
 * valid object with the text line's fields, its key=value pairs as members,
 * and nothing an untrusted string could use to forge a field or a line. */
#include <check.h>
#include <json-c/json.h>

#include "testutil.h"

#include "kh_log.h"

static const char *member(json_object *o, const char *k) {
  json_object *v;
  return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

START_TEST(test_names) {
  kh_log_level l;
  kh_log_format f;
  ck_assert(kh_log_parse_level("debug", &l) && l == KH_LOG_DEBUG);
  ck_assert(kh_log_parse_level("off", &l) && l == KH_LOG_OFF);
  ck_assert(!kh_log_parse_level("verbose", &l));
  ck_assert(!kh_log_parse_level("INFO", &l));
  ck_assert(!kh_log_parse_level(NULL, &l));
  ck_assert(kh_log_parse_format("json", &f) && f == KH_LOG_JSON);
  ck_assert(kh_log_parse_format("text", &f) && f == KH_LOG_TEXT);
  ck_assert(!kh_log_parse_format("xml", &f));
  setenv("KEYHOLD_LOG_LEVEL", "verbose", 1);
  ck_assert(!kh_log_init("t"));
  setenv("KEYHOLD_LOG_LEVEL", "warn", 1);
  ck_assert(kh_log_init("t"));
  ck_assert(!kh_log_enabled(KH_LOG_INFO) && kh_log_enabled(KH_LOG_WARN));
  unsetenv("KEYHOLD_LOG_LEVEL");
}
END_TEST

START_TEST(test_text_line) {
  char line[256];
  kh_log_format_line(line, sizeof(line), KH_LOG_TEXT, "keyholdd", 42, KH_LOG_WARN,
                     "2026-12-03T00:00:00.000Z", "handshake result=ok");
  ck_assert_str_eq(line, "2026-12-03T00:00:00.000Z keyholdd[42] WARN handshake result=ok");
}
END_TEST

START_TEST(test_json_line) {
  char line[2048];
  kh_log_format_line(line, sizeof(line), KH_LOG_JSON, "keyholdd", 42, KH_LOG_INFO,
                     "2026-12-03T00:00:00.000Z",
                     "handshake caller_uid=1000 result=refused reason=\"no \\grant\" "
                     "level=forged 2x=no =no");
  json_object *o = json_tokener_parse(line);
  ck_assert_msg(o != NULL, "not JSON: %s", line);
  ck_assert_str_eq(member(o, "time"), "2026-12-03T00:00:00.000Z");
  ck_assert_str_eq(member(o, "prog"), "keyholdd");
  ck_assert_str_eq(member(o, "pid"), "42");
  ck_assert_str_eq(member(o, "level"), "INFO"); /* not the message's "level=forged" */
  ck_assert_str_eq(member(o, "caller_uid"), "1000");
  ck_assert_str_eq(member(o, "result"), "refused");
  ck_assert_str_eq(member(o, "reason"), "no \\grant");
  ck_assert_ptr_null(member(o, "2x"));
  ck_assert(strstr(member(o, "msg"), "reason=\"no \\grant\"") != NULL);
  ck_assert_int_eq(json_object_object_length(o), 8);
  json_object_put(o);
}
END_TEST

START_TEST(test_json_line_stays_one_object_when_cut) {
  char msg[1024], line[300];
  memset(msg, '"', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  kh_log_format_line(line, sizeof(line), KH_LOG_JSON, "p", 1, KH_LOG_ERROR, "t", msg);
  ck_assert_uint_lt(strlen(line), sizeof(line));
  ck_assert(line[strlen(line) - 1] == '}');
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_log");
  TCase *tc = tcase_create("kh_log");
  tcase_add_test(tc, test_names);
  tcase_add_test(tc, test_text_line);
  tcase_add_test(tc, test_json_line);
  tcase_add_test(tc, test_json_line_stays_one_object_when_cut);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

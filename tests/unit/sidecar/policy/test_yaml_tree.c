/* The bounded YAML tree: structure, positions, and refusals. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "yaml_tree.h"

static kh_yaml_node *parse(const char *text, kh_error *err) {
  return kh_yaml_parse(text, strlen(text), err);
}

START_TEST(test_maps_lists_positions) {
  kh_error err;
  kh_yaml_node *n = parse("a: 1\nb:\n  - x\n  - \"y\"\nc: {d: e}\n", &err);
  ck_assert_msg(n != NULL, "%s", err.msg);
  ck_assert_int_eq(n->kind, KH_YAML_MAP);
  ck_assert_uint_eq(n->count, 3);
  const kh_yaml_node *b = kh_yaml_get(n, "b");
  ck_assert_int_eq(b->kind, KH_YAML_SEQ);
  ck_assert_uint_eq(b->count, 2);
  ck_assert_str_eq(b->items[1]->value, "y");
  ck_assert_int_eq(b->items[1]->quoted, 1);
  ck_assert_int_eq(b->items[0]->quoted, 0);
  ck_assert_uint_eq(b->items[1]->line, 4);
  ck_assert_uint_eq(b->items[1]->col, 5);
  ck_assert_str_eq(kh_yaml_get(kh_yaml_get(n, "c"), "d")->value, "e");
  ck_assert_ptr_null(kh_yaml_get(n, "zz"));
  kh_yaml_free(n);
}
END_TEST

START_TEST(test_empty_is_empty_map) {
  kh_error err;
  kh_yaml_node *n = parse("", &err);
  ck_assert_ptr_nonnull(n);
  ck_assert_int_eq(n->kind, KH_YAML_MAP);
  ck_assert_uint_eq(n->count, 0);
  kh_yaml_free(n);
}
END_TEST

static void refused(const char *text, const char *want) {
  kh_error err;
  kh_yaml_node *n = parse(text, &err);
  ck_assert_msg(n == NULL, "accepted: %s", text);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err.msg, want) != NULL, "'%s' lacks '%s'", err.msg, want);
}

START_TEST(test_refusals) {
  refused("a: 1\na: 2\n", "2:1: duplicate key 'a'");
  refused("a: &x 1\nb: *x\n", "anchors are not supported");
  refused("a: [1, 2\n", "2:1:");
  refused("--- 1\n--- 2\n", "only one YAML document");
  refused("? [a]\n: b\n", "mapping keys must be plain scalars");
  char deep[200] = "";
  for (int i = 0; i < 20; i++) strcat(deep, "[");
  refused(deep, "nesting is too deep");
}
END_TEST

START_TEST(test_size_and_node_bounds) {
  kh_error err;
  size_t big = KH_YAML_MAX_BYTES + 1;
  char *buf = malloc(big);
  memset(buf, '#', big);
  ck_assert_ptr_null(kh_yaml_parse(buf, big, &err));
  ck_assert_int_eq(err.code, KH_ERR_RESOURCE_EXHAUSTED);
  /* 30k list items exceed the node bound well inside the size bound. */
  size_t n = 0;
  n += (size_t)sprintf(buf + n, "[");
  for (int i = 0; i < 30000; i++) n += (size_t)sprintf(buf + n, "1,");
  n += (size_t)sprintf(buf + n, "1]");
  ck_assert_ptr_null(kh_yaml_parse(buf, n, &err));
  ck_assert_msg(strstr(err.msg, "too many nodes") != NULL, "%s", err.msg);
  free(buf);
}
END_TEST

int main(void) {
  Suite *s = suite_create("yaml_tree");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_maps_lists_positions);
  tcase_add_test(tc, test_empty_is_empty_map);
  tcase_add_test(tc, test_refusals);
  tcase_add_test(tc, test_size_and_node_bounds);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* sidecar/policy/policy_slot: a session keeps the grants it took across a
 * swap; the old grants are freed when the last holder lets go (checked by
 * LeakSanitizer / valgrind on this test); a NULL slot means no grants. */
#include <check.h>
#include <unistd.h>

#include "testutil.h"

#include "policy_slot.h"

START_TEST(test_swap_keeps_held_grants) {
  kh_grants *a = kh_grants_builtin(1000), *b = kh_grants_builtin(2000);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  kh_policy_slot *slot = kh_policy_slot_new(a);
  const kh_grants *held = kh_policy_slot_get(slot);
  ck_assert_ptr_eq(held, a);
  kh_policy_slot_swap(slot, b);
  /* The holder still reads the old rules; new sessions get the new ones. */
  ck_assert_uint_eq(held->rules[0].uids[0], 1000);
  const kh_grants *now = kh_policy_slot_get(slot);
  ck_assert_uint_eq(now->rules[0].uids[0], 2000);
  kh_policy_slot_put(now);
  kh_policy_slot_put(held);  /* frees a */
  kh_policy_slot_free(slot); /* frees b */
  ck_assert_ptr_null(kh_policy_slot_get(NULL));
  kh_policy_slot_put(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("policy_slot");
  TCase *tc = tcase_create("policy_slot");
  tcase_add_test(tc, test_swap_keeps_held_grants);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

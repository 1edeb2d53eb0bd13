/* sidecar/rpc/budget: uid slots, the move to a process's server-side budget
 * and shedding its oldest, deadlines, release. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "budget.h"

typedef struct {
  kh_budget_slot slot;
  int busy;
  int cut;
} owner;

static kh_limits limits(unsigned per_uid, unsigned per_proc, unsigned timeout_ms) {
  kh_limits l;
  kh_limits_default(&l);
  l.max_handshakes_per_caller = per_uid;
  l.max_server_handshakes_per_process = per_proc;
  l.handshake_timeout_ms = timeout_ms;
  return l;
}

static int not_busy(void *o) {
  return !((owner *)o)->busy;
}

static void mark_cut(void *o) {
  ((owner *)o)->cut++;
}

START_TEST(test_uid_limit_and_release) {
  kh_limits l = limits(2, 8, 1000);
  kh_budget *b = kh_budget_new(&l);
  kh_caller c = {.uid = 1000, .pid = 7};
  owner o[3] = {0};
  char msg[200];
  ck_assert(kh_budget_admit(b, &o[0].slot, &c, &o[0], msg, sizeof(msg)));
  ck_assert(kh_budget_admit(b, &o[1].slot, &c, &o[1], msg, sizeof(msg)));
  ck_assert(!kh_budget_admit(b, &o[2].slot, &c, &o[2], msg, sizeof(msg)));
  ck_assert_str_eq(msg, "caller uid 1000 already has 2 handshakes in progress (the limit)");
  kh_caller other = {.uid = 1001, .pid = 8};
  ck_assert(kh_budget_admit(b, &o[2].slot, &other, &o[2], msg, sizeof(msg))); /* another uid */
  ck_assert_int_eq(kh_budget_in_flight(b), 3);
  kh_budget_release(b, &o[0].slot);
  kh_budget_release(b, &o[0].slot); /* twice: no-op */
  ck_assert_int_eq(kh_budget_in_flight(b), 2);
  ck_assert_int_eq(kh_budget_peak(b), 3);
  ck_assert(kh_budget_admit(b, &o[0].slot, &c, &o[0], msg, sizeof(msg)));
  for (int i = 0; i < 3; i++) kh_budget_release(b, &o[i].slot);
  ck_assert_int_eq(kh_budget_in_flight(b), 0);
  kh_budget_free(b);
}
END_TEST

START_TEST(test_server_side_moves_off_the_uid_and_sheds_the_oldest) {
  kh_limits l = limits(2, 3, 1000);
  kh_budget *b = kh_budget_new(&l);
  kh_caller c = {.uid = 0, .pid = 42};
  owner o[6] = {0};
  char msg[200];
  unsigned active = 0;
  /* Five server-side handshakes pass through a uid budget of 2. */
  for (int i = 0; i < 5; i++) {
    ck_assert_msg(kh_budget_admit(b, &o[i].slot, &c, &o[i], msg, sizeof(msg)), "%d: %s", i, msg);
    kh_budget_slot *victim = kh_budget_to_server(b, &o[i].slot, not_busy, &active);
    ck_assert_uint_eq(active, i < 3 ? (unsigned)i + 1 : 4u); /* counted before the shed */
    if (i < 3) {
      ck_assert_ptr_null(victim);
    } else {
      /* The oldest not yet shed: o[0], then o[1]. */
      ck_assert_ptr_eq(victim, &o[i - 3].slot);
      kh_budget_release(b, victim);
    }
  }
  /* The uid's client-side budget is untouched. */
  ck_assert(kh_budget_admit(b, &o[5].slot, &c, &o[5], msg, sizeof(msg)));
  /* A busy oldest is skipped. */
  o[2].busy = 1;
  kh_budget_release(b, &o[5].slot);
  ck_assert(kh_budget_admit(b, &o[5].slot, &c, &o[5], msg, sizeof(msg)));
  kh_budget_slot *victim = kh_budget_to_server(b, &o[5].slot, not_busy, &active);
  ck_assert_uint_eq(active, 4);
  ck_assert_ptr_eq(victim, &o[3].slot);
  for (int i = 0; i < 6; i++) kh_budget_release(b, &o[i].slot);
  ck_assert_int_eq(kh_budget_in_flight(b), 0);
  kh_budget_free(b);
}
END_TEST

START_TEST(test_expire_cuts_only_past_the_deadline) {
  kh_limits l = limits(8, 8, 1000);
  kh_budget *b = kh_budget_new(&l);
  kh_caller c = {.uid = 5, .pid = 5};
  owner o[2] = {0};
  char msg[200];
  ck_assert(kh_budget_admit(b, &o[0].slot, &c, &o[0], msg, sizeof(msg)));
  ck_assert(kh_budget_admit(b, &o[1].slot, &c, &o[1], msg, sizeof(msg)));
  o[1].slot.expires_ms += 5000;
  int64_t now = kh_budget_now_ms();
  kh_budget_expire(b, now, mark_cut);
  ck_assert_int_eq(o[0].cut + o[1].cut, 0);
  kh_budget_expire(b, now + 1000, mark_cut);
  ck_assert_int_eq(o[0].cut, 1);
  ck_assert_int_eq(o[1].cut, 0);
  kh_budget_release(b, &o[0].slot);
  kh_budget_release(b, &o[1].slot);
  kh_budget_free(b);
}
END_TEST

int main(void) {
  Suite *s = suite_create("budget");
  TCase *tc = tcase_create("budget");
  tcase_add_test(tc, test_uid_limit_and_release);
  tcase_add_test(tc, test_server_side_moves_off_the_uid_and_sheds_the_oldest);
  tcase_add_test(tc, test_expire_cuts_only_past_the_deadline);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* kh_secret: the wipe helper and the locked-memory pool. */
#include <check.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kh_asan.h"
#include "kh_secret.h"
#include "testutil.h"

/* AddressSanitizer intercepts mlock() and ignores it. */
#define MLOCK_WORKS (!KH_ASAN)

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != 0) return 0;
  return 1;
}

START_TEST(test_zeroed_and_writable_every_size) {
  static const size_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 248, 1776, 4096, 4097, 100000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i] ? sizes[i] : 1;
    uint8_t *p = kh_secret_alloc(sizes[i]);
    ck_assert_ptr_nonnull(p);
    ck_assert_msg(all_zero(p, n), "%zu bytes not zeroed", sizes[i]);
    memset(p, 0xaa, n);
    kh_secret_free(p, sizes[i]);
  }
}
END_TEST

START_TEST(test_freed_chunk_comes_back_wiped) {
  uint8_t *a = kh_secret_alloc(200);
  memset(a, 0x5a, 200);
  kh_secret_free(a, 200);
  uint8_t *b = kh_secret_alloc(200);
  ck_assert_ptr_eq(a, b); /* last freed, first reused */
  ck_assert(all_zero(b, 200));
  kh_secret_free(b, 200);
}
END_TEST

START_TEST(test_many_live_chunks_do_not_overlap) {
  enum { N = 3000, LEN = 100 };
  static uint8_t *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = kh_secret_alloc(LEN);
    ck_assert_ptr_nonnull(p[i]);
    memset(p[i], i & 0xff, LEN);
  }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < LEN; j++) ck_assert_int_eq(p[i][j], i & 0xff);
  for (int i = 0; i < N; i++) kh_secret_free(p[i], LEN);
}
END_TEST

/* vm_flags copies the VmFlags of the mapping holding |addr| from smaps. */
static int vm_flags(const void *addr, char *out, size_t len) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return 0;
  char line[512];
  int in = 0, found = 0;
  uintptr_t a = (uintptr_t)addr;
  while (!found && fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
      in = a >= lo && a < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, len, "%.200s", line + 8);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

START_TEST(test_pool_is_locked_undumpable_and_wiped_on_fork) {
  uint8_t *small = kh_secret_alloc(48), *big = kh_secret_alloc(20000);
  uint8_t *ptrs[2] = {small, big};
  for (int i = 0; i < 2; i++) {
    char flags[256];
    ck_assert(vm_flags(ptrs[i], flags, sizeof(flags)));
    ck_assert_msg(strstr(flags, " dd") != NULL, "not excluded from core dumps: %s", flags);
    ck_assert_msg(strstr(flags, " wf") != NULL, "not wiped on fork: %s", flags);
    if (geteuid() == 0 && MLOCK_WORKS)
      ck_assert_msg(strstr(flags, " lo") != NULL, "not locked: %s", flags);
  }
  memset(small, 0x77, 48);
  memset(big, 0x77, 20000);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) _exit(all_zero(small, 48) && all_zero(big, 20000) ? 0 : 1);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child saw the secrets");
  ck_assert_int_eq(small[0], 0x77); /* the parent keeps them */
  kh_secret_free(small, 48);
  kh_secret_free(big, 20000);
}
END_TEST

static void *churn(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  uint8_t *held[16] = {0};
  size_t len[16] = {0};
  for (int round = 0; round < 20000; round++) {
    int s = (int)(rand_r(&seed) % 16);
    if (held[s] != NULL) {
      for (size_t i = 0; i < len[s]; i++)
        if (held[s][i] != (uint8_t)s) return (void *)1;
      kh_secret_free(held[s], len[s]);
      held[s] = NULL;
    } else {
      len[s] = 1 + rand_r(&seed) % 3000;
      held[s] = kh_secret_alloc(len[s]);
      if (held[s] == NULL || !all_zero(held[s], len[s])) return (void *)1;
      memset(held[s], s, len[s]);
    }
  }
  for (int s = 0; s < 16; s++) kh_secret_free(held[s], len[s]);
  return NULL;
}

START_TEST(test_threads_share_the_pool) {
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
  for (int i = 0; i < 4; i++) {
    void *bad = NULL;
    pthread_join(t[i], &bad);
    ck_assert_msg(bad == NULL, "a thread saw another's bytes or unzeroed memory");
  }
}
END_TEST

START_TEST(test_wipe) {
  uint8_t b[32];
  memset(b, 0xff, sizeof(b));
  kh_wipe(b, sizeof(b));
  ck_assert(all_zero(b, sizeof(b)));
  kh_wipe(NULL, 5); /* no-op */
  kh_secret_free(NULL, 10);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kh_secret");
  TCase *tc = tcase_create("pool");
  tcase_add_test(tc, test_zeroed_and_writable_every_size);
  tcase_add_test(tc, test_freed_chunk_comes_back_wiped);
  tcase_add_test(tc, test_many_live_chunks_do_not_overlap);
  tcase_add_test(tc, test_pool_is_locked_undumpable_and_wiped_on_fork);
  tcase_add_test(tc, test_threads_share_the_pool);
  tcase_add_test(tc, test_wipe);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* testutil.h: helpers shared by unit tests (header-only, no crypto). */
#ifndef KH_TESTUTIL_H
#define KH_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* kh_test_pki makes a fresh test PKI (tests/make-test-pki.sh) in a new
 * temporary directory written to |out|; |keytypes| adds identities. */
static inline int kh_test_pki(char *out, size_t out_len, const char *keytypes) {
  const char *script = getenv("KH_TEST_PKI");
  char tmpl[] = "/tmp/kh-test-XXXXXX";
  if (script == NULL || mkdtemp(tmpl) == NULL) return 0;
  snprintf(out, out_len, "%s", tmpl);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "KEYTYPES='%s' bash '%s' '%s'", keytypes ? keytypes : "", script, out);
  return system(cmd) == 0;
}

static inline void kh_test_rmtree(const char *dir) {
  char cmd[600];
  if (strncmp(dir, "/tmp/kh-test-", 13) != 0) return;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

/* kh_test_run runs every test of |s|; the exit status of a test program. */
static inline int kh_test_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}

#endif

/* fuzz_pki.h: the identity store fuzz targets run against (header-only).
 * $KH_FUZZ_IDS names an identities directory; otherwise a test PKI is made
 * once with tests/make-test-pki.sh ($KH_TEST_PKI), with the extra key types
 * |keytypes| ("" for none). Exits 2 if neither works. */
#ifndef KH_FUZZ_PKI_H
#define KH_FUZZ_PKI_H

#include <stdio.h>
#include <stdlib.h>

#include "identity.h"
#include "kh_log.h"

static inline kh_identity_store *kh_fuzz_store(const char *target, const char *keytypes) {
  kh_log_set_level(KH_LOG_OFF);
  const char *ids = getenv("KH_FUZZ_IDS");
  char dir[300];
  if (ids == NULL) {
    const char *script = getenv("KH_TEST_PKI");
    char tmpl[] = "/tmp/kh-fuzz-XXXXXX", cmd[800];
    if (script == NULL || mkdtemp(tmpl) == NULL) {
      fprintf(stderr, "%s: set KH_FUZZ_IDS or KH_TEST_PKI\n", target);
      exit(2);
    }
    snprintf(cmd, sizeof(cmd), "KEYTYPES='%s' bash '%s' '%s' >/dev/null", keytypes, script, tmpl);
    if (system(cmd) != 0) exit(2);
    snprintf(dir, sizeof(dir), "%s/ids", tmpl);
    ids = dir;
  }
  kh_error err;
  kh_identity_store *store = kh_identity_store_load(ids, &err);
  if (store == NULL) {
    fprintf(stderr, "%s: %s\n", target, err.msg);
    exit(2);
  }
  return store;
}

#endif /* KH_FUZZ_PKI_H */

/* identity_fixture.h: sidecar unit tests' identities from a fresh test PKI
 * (header-only). kh_fixture_pki makes the PKI (extra key types as
 * tests/make-test-pki.sh's KEYTYPES); kh_fixture_identity loads
 * ids/NAME from it or fails the test. */
#ifndef KH_IDENTITY_FIXTURE_H
#define KH_IDENTITY_FIXTURE_H

#include <check.h>
#include <stdio.h>

#include "identity.h"
#include "testutil.h"

static char kh_fixture_dir[256];

static inline void kh_fixture_pki(const char *keytypes) {
  ck_assert(kh_test_pki(kh_fixture_dir, sizeof(kh_fixture_dir), keytypes));
}

static inline kh_identity *kh_fixture_identity(const char *name) {
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids/%s", kh_fixture_dir, name);
  kh_identity *id = kh_identity_load(dir, &err);
  ck_assert_msg(id != NULL, "%s", err.msg);
  return id;
}

#endif /* KH_IDENTITY_FIXTURE_H */

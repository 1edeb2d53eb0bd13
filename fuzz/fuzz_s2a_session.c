/* fuzz_s2a_session: keyholdd's S2A state machine (with the real BoringSSL
 * engine behind it) fed a sequence of arbitrary SessionReq messages, one per
 * 2-byte-length chunk. Identities come from $KH_FUZZ_IDS, or a test PKI made
 * once with tests/make-test-pki.sh ($KH_TEST_PKI). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_pki.h"
#include "kh_log.h"
#include "fuzz_service.h"
#include "s2a_v1.h"

static kh_identity_store *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_store = kh_fuzz_store("fuzz_s2a_session", "");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kh_s2a_env env;
  env.store = g_store;
  kh_service svc = kh_s2a_v1_service(&env);
  kh_fuzz_service(&svc, NULL, data, size);
  return 0;
}

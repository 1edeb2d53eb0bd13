/* fuzz_s2a_v2: keyholdd's S2A v2 session (both wire dialects, the real key
 * store, ticket keys and verification behind it) fed a sequence of arbitrary
 * SessionReq messages. The first byte picks the dialect (even: s2a.proto.v2,
 * odd: grpc.gcp.s2a), then one request per 2-byte-length chunk. Identities
 * come from $KH_FUZZ_IDS, or a test PKI made once with
 * tests/make-test-pki.sh ($KH_TEST_PKI, with RSA, P-384 and Ed25519 ones). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_pki.h"
#include "kh_log.h"
#include "fuzz_service.h"
#include "s2a_v2.h"
#include "ticket_keys.h"

static kh_identity_store *g_store;
static kh_ticket_keys *g_keys;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_store = kh_fuzz_store("fuzz_s2a_v2", "p384 rsa ed25519");
  kh_error err;
  g_keys = kh_ticket_keys_random(&err);
  if (g_keys == NULL) exit(2);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kh_s2a_env env;
  env.store = g_store;
  env.ticket_keys = &g_keys;
  if (size < 1) return 0;
  int java = data[0] & 1; /* services: [0] S2A v2, [1] grpc-java's dialect */
  data++, size--;
  kh_service svc[KH_S2A_V2_SERVICES];
  kh_s2a_v2_services(&env, svc);
  kh_fuzz_service(&svc[java], NULL, data, size);
  return 0;
}

/* fuzz_key_ops: keyhold.v1.KeyOperations requests (untrusted bytes from a
 * caller) through every method: the first byte picks GetPublicKeys,
 * OpenSealed, SignDpopProof, GetDpopThumbprint or OpenEnvelope (its RSA
 * unwrapping and PKCS#1 v1.5 implicit rejection), the rest is the request
 * (chunked, fuzz_service.h). The identities come from the test PKI. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_pki.h"
#include "fuzz_service.h"
#include "key_operations.h"

static kh_identity_store *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_store = kh_fuzz_store("fuzz_key_ops", "");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kh_keyops_env env;
  env.store = g_store;
  if (size < 1) return 0;
  kh_service svc[KH_KEY_OPS_SERVICES];
  kh_key_ops_services(&env, svc);
  kh_caller caller = {.uid = 1, .gid = 1, .pid = 1};
  kh_fuzz_service(&svc[data[0] % KH_KEY_OPS_SERVICES], &caller, data + 1, size - 1);
  return 0;
}

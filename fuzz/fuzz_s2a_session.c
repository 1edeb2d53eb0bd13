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
#include "s2a_session.h"

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
  kh_s2a_session *s = kh_s2a_session_new(&env, NULL);
  kh_buf resp = KH_BUF_INIT;
  while (s != NULL && size >= 2) {
    size_t n = ((size_t)data[0] << 8) | data[1];
    data += 2, size -= 2;
    if (n > size) n = size;
    kh_error err;
    kh_s2a_outcome o = kh_s2a_session_handle(s, data, n, &resp, &err);
    kh_buf_reset(&resp);
    data += n, size -= n;
    if (o != KH_S2A_CONTINUE) break;
  }
  kh_buf_free(&resp);
  kh_s2a_session_free(s);
  return 0;
}

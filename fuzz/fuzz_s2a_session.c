/* fuzz_s2a_session: keyholdd's S2A state machine (with the real BoringSSL
 * engine behind it) fed a sequence of arbitrary SessionReq messages, one per
 * 2-byte-length chunk. Identities come from $KH_FUZZ_IDS, or a test PKI made
 * once with tests/make-test-pki.sh ($KH_TEST_PKI). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kh_log.h"
#include "s2a_session.h"

static kh_identity_store *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  kh_log_set_level(KH_LOG_OFF);
  const char *ids = getenv("KH_FUZZ_IDS");
  char dir[300];
  if (ids == NULL) {
    const char *script = getenv("KH_TEST_PKI");
    char tmpl[] = "/tmp/kh-fuzz-XXXXXX", cmd[700];
    if (script == NULL || mkdtemp(tmpl) == NULL) {
      fprintf(stderr, "fuzz_s2a_session: set KH_FUZZ_IDS or KH_TEST_PKI\n");
      exit(2);
    }
    snprintf(cmd, sizeof(cmd), "bash '%s' '%s' >/dev/null", script, tmpl);
    if (system(cmd) != 0) exit(2);
    snprintf(dir, sizeof(dir), "%s/ids", tmpl);
    ids = dir;
  }
  kh_error err;
  g_store = kh_identity_store_load(ids, &err);
  if (g_store == NULL) {
    fprintf(stderr, "fuzz_s2a_session: %s\n", err.msg);
    exit(2);
  }
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

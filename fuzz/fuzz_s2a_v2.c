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

#include "kh_log.h"
#include "s2a_v2_session.h"
#include "ticket_keys.h"

static kh_identity_store *g_store;
static kh_ticket_keys *g_keys;

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
      fprintf(stderr, "fuzz_s2a_v2: set KH_FUZZ_IDS or KH_TEST_PKI\n");
      exit(2);
    }
    snprintf(cmd, sizeof(cmd), "KEYTYPES='p384 rsa ed25519' bash '%s' '%s' >/dev/null", script,
             tmpl);
    if (system(cmd) != 0) exit(2);
    snprintf(dir, sizeof(dir), "%s/ids", tmpl);
    ids = dir;
  }
  kh_error err;
  g_store = kh_identity_store_load(ids, &err);
  g_keys = kh_ticket_keys_random(&err);
  if (g_store == NULL || g_keys == NULL) {
    fprintf(stderr, "fuzz_s2a_v2: %s\n", err.msg);
    exit(2);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kh_s2a_env env;
  env.store = g_store;
  env.ticket_keys = &g_keys;
  if (size < 1) return 0;
  kh_v2_dialect d = (data[0] & 1) ? KH_V2_DIALECT_GRPC_JAVA : KH_V2_DIALECT_S2A;
  data++, size--;
  kh_s2a_v2_session *s = kh_s2a_v2_session_new(&env, NULL, d);
  kh_buf resp = KH_BUF_INIT;
  while (s != NULL && size >= 2) {
    size_t n = ((size_t)data[0] << 8) | data[1];
    data += 2, size -= 2;
    if (n > size) n = size;
    kh_error err;
    kh_s2a_outcome o = kh_s2a_v2_session_handle(s, data, n, &resp, &err);
    kh_buf_reset(&resp);
    data += n, size -= n;
    if (o != KH_S2A_CONTINUE) break;
  }
  kh_buf_free(&resp);
  kh_s2a_v2_session_free(s);
  return 0;
}

/* fuzz_tls_engine: the sidecar's TLS engine fed arbitrary peer bytes, as a
 * server (first byte even) or as a client after its ClientHello (odd), in
 * chunks of varying size. Identities as in fuzz_s2a_session. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_pki.h"
#include "kh_log.h"
#include "tls_engine.h"

static kh_identity_store *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_store = kh_fuzz_store("fuzz_tls_engine", "");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int client = data[0] & 1;
  size_t chunk = (size_t)data[1] + 1;
  data += 2, size -= 2;
  kh_error err;
  kh_tls_config cfg = {.side = client ? KH_TLS_CLIENT : KH_TLS_SERVER};
  cfg.identity = kh_identity_store_find(
      g_store, client ? "spiffe://example.org/client" : "spiffe://example.org/server", &err);
  cfg.alpn[0] = "h2";
  cfg.alpn_count = 1;
  cfg.server_name = "localhost";
  kh_tls_engine *e = kh_tls_engine_new(&cfg, &err);
  kh_buf out = KH_BUF_INIT;
  size_t used;
  int ok = e != NULL && (!client || kh_tls_engine_step(e, NULL, 0, &used, &out, &err));
  while (ok && size > 0 && !kh_tls_engine_done(e)) {
    size_t n = size < chunk ? size : chunk;
    ok = kh_tls_engine_step(e, data, n, &used, &out, &err);
    if (used > n) __builtin_trap(); /* consumed more than given */
    data += n, size -= n;
    kh_buf_reset(&out);
  }
  kh_buf_free(&out);
  kh_tls_engine_free(e);
  return 0;
}

/* fuzz_s2a_hs: the shim's S2A client fed arbitrary SessionResp bytes from a
 * (compromised or broken) sidecar, one response per 2-byte-length chunk. A
 * result it accepts is handed to kh_record_new as conn.c does: whatever
 * passed take_result's validation must key a record layer. */
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "s2a_hs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.server_name = "localhost";
  kh_error err;
  kh_s2a_hs *hs = kh_s2a_hs_new(1, &o, &err);
  kh_buf req = KH_BUF_INIT, to_peer = KH_BUF_INIT;
  if (hs == NULL || !kh_s2a_hs_start(hs, NULL, 0, &req, &err)) goto out;
  while (size >= 2) {
    size_t n = ((size_t)data[0] << 8) | data[1];
    data += 2, size -= 2;
    if (n > size) n = size;
    int done = 0;
    if (!kh_s2a_hs_on_resp(hs, data, n, &to_peer, &done, &err)) break;
    if (done) {
      /* A result that passed validation must key a record layer. */
      const kh_s2a_result *res = kh_s2a_hs_result(hs);
      kh_record *rec = res ? kh_record_new(&res->keys, NULL, NULL, &err) : NULL;
      if (rec == NULL) __builtin_trap();
      kh_record_free(rec);
      break;
    }
    data += n, size -= n;
    if (!kh_s2a_hs_next(hs, (const uint8_t *)"peer", 4, &req, &err)) break;
  }
out:
  kh_buf_free(&req);
  kh_buf_free(&to_peer);
  kh_s2a_hs_free(hs);
  return 0;
}

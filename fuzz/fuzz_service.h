/* fuzz_service.h: one call of a keyholdd RPC service (rpc/service.h) fed a
 * sequence of arbitrary request messages, each a 2-byte big-endian length
 * and that many bytes (cut at the end of the input), until the service ends
 * the call: what a caller on the socket can send (header-only). */
#ifndef KH_FUZZ_SERVICE_H
#define KH_FUZZ_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "service.h"

static inline void kh_fuzz_service(const kh_service *svc, const kh_caller *caller,
                                   const uint8_t *data, size_t size) {
  void *s = svc->session_new(svc->arg, caller);
  kh_buf resp = KH_BUF_INIT;
  while (s != NULL && size >= 2) {
    size_t n = ((size_t)data[0] << 8) | data[1];
    data += 2, size -= 2;
    if (n > size) n = size;
    kh_error err;
    kh_rpc_outcome o = svc->handle(s, data, n, &resp, &err);
    kh_buf_reset(&resp);
    data += n, size -= n;
    if (o != KH_RPC_CONTINUE) break;
  }
  kh_buf_free(&resp);
  if (s != NULL) svc->session_free(s);
}

#endif /* KH_FUZZ_SERVICE_H */

/* kh_buf.h: a growable byte buffer for engine output (bytes out).
 * kh_buf_free() wipes before releasing, so a buffer that carried handshake
 * or record bytes leaves nothing behind. */
#ifndef KH_BUF_H
#define KH_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "kh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} kh_buf;

#define KH_BUF_INIT \
  { NULL, 0, 0 }

/* kh_buf_reserve makes room for |extra| more bytes; returns 1/0. */
KH_MUST_USE int kh_buf_reserve(kh_buf *b, size_t extra);
/* kh_buf_append copies |len| bytes to the end; returns 1/0. */
KH_MUST_USE int kh_buf_append(kh_buf *b, const void *data, size_t len);
/* kh_buf_consume drops the first |n| bytes (n <= len). */
void kh_buf_consume(kh_buf *b, size_t n);
/* kh_buf_reset empties the buffer (wiping its contents), keeping capacity. */
void kh_buf_reset(kh_buf *b);
/* kh_buf_free wipes and frees; the buffer is empty and reusable after. */
void kh_buf_free(kh_buf *b);

#ifdef __cplusplus
}
#endif

#endif /* KH_BUF_H */

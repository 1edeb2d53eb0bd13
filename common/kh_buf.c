#include "kh_buf.h"

#include <stdlib.h>
#include <string.h>

#include "kh_secret.h"

int kh_buf_reserve(kh_buf *b, size_t extra) {
  if (extra <= b->cap - b->len) return 1;
  if (extra > SIZE_MAX / 2 - b->len) return 0;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  /* No realloc: the old block may hold secrets and must be wiped. */
  uint8_t *p = malloc(cap);
  if (p == NULL) return 0;
  if (b->len) memcpy(p, b->data, b->len);
  if (b->data) {
    kh_wipe(b->data, b->cap);
    free(b->data);
  }
  b->data = p;
  b->cap = cap;
  return 1;
}

int kh_buf_append(kh_buf *b, const void *data, size_t len) {
  if (len == 0) return 1;
  if (!kh_buf_reserve(b, len)) return 0;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 1;
}

void kh_buf_consume(kh_buf *b, size_t n) {
  if (n >= b->len) {
    kh_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  kh_wipe(b->data + b->len - n, n);
  b->len -= n;
}

void kh_buf_reset(kh_buf *b) {
  if (b->data) kh_wipe(b->data, b->len);
  b->len = 0;
}

void kh_buf_free(kh_buf *b) {
  if (b->data) {
    kh_wipe(b->data, b->cap);
    free(b->data);
  }
  b->data = NULL;
  b->len = b->cap = 0;
}

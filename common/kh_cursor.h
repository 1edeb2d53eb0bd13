/* kh_cursor.h: the one bounded reader for untrusted bytes.
 *
 * All parsing of peer bytes (outside protobuf-c) goes through a kh_cursor.
 * Every read checks the remaining length first and fails (returns 0) without
 * moving the cursor if there are not enough bytes; no caller does pointer
 * arithmetic on raw lengths. */
#ifndef KH_CURSOR_H
#define KH_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "kh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const uint8_t *data;
  size_t len;
} kh_cursor;

static inline void kh_cursor_init(kh_cursor *c, const uint8_t *data, size_t len) {
  c->data = data;
  c->len = len;
}

static inline size_t kh_cursor_left(const kh_cursor *c) {
  return c->len;
}

KH_MUST_USE static inline int kh_cursor_skip(kh_cursor *c, size_t n) {
  if (c->len < n) return 0;
  c->data += n;
  c->len -= n;
  return 1;
}

KH_MUST_USE static inline int kh_cursor_u8(kh_cursor *c, uint8_t *out) {
  if (c->len < 1) return 0;
  *out = c->data[0];
  return kh_cursor_skip(c, 1);
}

KH_MUST_USE static inline int kh_cursor_u16(kh_cursor *c, uint16_t *out) {
  if (c->len < 2) return 0;
  *out = (uint16_t)((c->data[0] << 8) | c->data[1]);
  return kh_cursor_skip(c, 2);
}

KH_MUST_USE static inline int kh_cursor_u24(kh_cursor *c, uint32_t *out) {
  if (c->len < 3) return 0;
  *out = ((uint32_t)c->data[0] << 16) | ((uint32_t)c->data[1] << 8) | c->data[2];
  return kh_cursor_skip(c, 3);
}

KH_MUST_USE static inline int kh_cursor_u32(kh_cursor *c, uint32_t *out) {
  if (c->len < 4) return 0;
  *out = ((uint32_t)c->data[0] << 24) | ((uint32_t)c->data[1] << 16) | ((uint32_t)c->data[2] << 8) |
         c->data[3];
  return kh_cursor_skip(c, 4);
}

/* kh_cursor_sub splits the next |n| bytes off into |out|. */
KH_MUST_USE static inline int kh_cursor_sub(kh_cursor *c, size_t n, kh_cursor *out) {
  if (c->len < n) return 0;
  kh_cursor_init(out, c->data, n);
  return kh_cursor_skip(c, n);
}

/* kh_cursor_u8_prefixed / u16 / u24 read a length and then that many bytes. */
KH_MUST_USE static inline int kh_cursor_u8_prefixed(kh_cursor *c, kh_cursor *out) {
  kh_cursor save = *c;
  uint8_t n;
  if (!kh_cursor_u8(c, &n) || !kh_cursor_sub(c, n, out)) {
    *c = save;
    return 0;
  }
  return 1;
}

KH_MUST_USE static inline int kh_cursor_u16_prefixed(kh_cursor *c, kh_cursor *out) {
  kh_cursor save = *c;
  uint16_t n;
  if (!kh_cursor_u16(c, &n) || !kh_cursor_sub(c, n, out)) {
    *c = save;
    return 0;
  }
  return 1;
}

KH_MUST_USE static inline int kh_cursor_u24_prefixed(kh_cursor *c, kh_cursor *out) {
  kh_cursor save = *c;
  uint32_t n;
  if (!kh_cursor_u24(c, &n) || !kh_cursor_sub(c, n, out)) {
    *c = save;
    return 0;
  }
  return 1;
}

#ifdef __cplusplus
}
#endif

#endif /* KH_CURSOR_H */

/* kh_builder.h: the one bounded writer for bytes we build (the counterpart
 * of kh_cursor.h), in the manner of BoringSSL's CBB.
 *
 * A builder appends to a kh_buf (growing it) or fills a caller's fixed
 * array, and never writes more than its hard cap. Length-prefixed children
 * (u8/u16/u24) nest: kh_builder_open_* writes a zero length, and
 * kh_builder_close fills in the child's length (failing if it does not fit
 * the prefix). Errors are sticky: the adders return nothing, every later
 * write is a no-op after the first failure, and kh_builder_finish reports
 * it; on failure the output is wiped and truncated back to where the
 * builder started, so a half-built message never escapes.
 *
 *   kh_builder b;
 *   kh_builder_init(&b, out, 512);
 *   kh_builder_u8(&b, type);
 *   kh_builder_open_u24(&b);
 *   kh_builder_bytes(&b, body, body_len);
 *   kh_builder_close(&b);
 *   if (!kh_builder_finish(&b, NULL, err)) return 0;
 *
 * A builder refers to itself only through its fields: it may be copied
 * before use, not while children are open. Not thread-safe. */
#ifndef KH_BUILDER_H
#define KH_BUILDER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kh_buf.h"
#include "kh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KH_BUILDER_MAX_DEPTH 4 /* nested length-prefixed children */

typedef struct {
  kh_buf *buf;                          /* growing mode: output appended here; NULL in fixed mode */
  uint8_t *mem;                         /* fixed mode: the caller's array */
  size_t start;                         /* buf->len when the builder started (growing mode) */
  size_t len;                           /* bytes written by this builder */
  size_t cap;                           /* hard cap on len */
  size_t open_at[KH_BUILDER_MAX_DEPTH]; /* offsets (from start) of open prefixes */
  uint8_t open_width[KH_BUILDER_MAX_DEPTH];
  size_t depth;
  const char *failure; /* first failure, NULL while all is well */
} kh_builder;

/* kh_builder_init appends to |out| (existing bytes are kept), at most |cap|
 * bytes. */
void kh_builder_init(kh_builder *b, kh_buf *out, size_t cap);
/* kh_builder_init_fixed writes into |mem|, at most |cap| bytes. */
void kh_builder_init_fixed(kh_builder *b, uint8_t *mem, size_t cap);

/* kh_builder_reserve makes room for |len| more bytes without writing them
 * (one allocation for a message whose size is known). */
void kh_builder_reserve(kh_builder *b, size_t len);

/* kh_builder_space appends |len| bytes for the caller to fill in place
 * (e.g. an AEAD tag) and returns them, or NULL after a failure. The pointer
 * is valid until the next write to the builder. */
KH_MUST_USE uint8_t *kh_builder_space_slow(kh_builder *b, size_t len);
void kh_builder_fail(kh_builder *b, const char *why);

/* The writers are inline: the record layer builds a header per record, and
 * writing into room already there (a fixed array, or what kh_builder_reserve
 * made) must cost no more than the stores themselves. Growing, the cap and
 * failures take kh_builder_space_slow. */
KH_MUST_USE static inline uint8_t *kh_builder_space(kh_builder *b, size_t len) {
  if (b->failure == NULL && len <= b->cap - b->len) {
    uint8_t *p = NULL;
    if (b->buf == NULL) {
      p = b->mem + b->len;
    } else if (b->buf->cap - b->buf->len >= len) { /* room kh_builder_reserve made */
      p = b->buf->data + b->buf->len;
      b->buf->len += len;
    }
    if (p != NULL) {
      b->len += len;
      return p;
    }
  }
  return kh_builder_space_slow(b, len);
}

static inline void kh_builder__put_be(kh_builder *b, uint32_t v, size_t width) {
  if (width < 4 && v >> (8 * width) != 0) {
    kh_builder_fail(b, "integer too large for its field");
    return;
  }
  uint8_t *p = kh_builder_space(b, width);
  if (p == NULL) return;
  for (size_t i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

/* Big-endian integers; a value too large for its width is a failure. */
static inline void kh_builder_u8(kh_builder *b, uint32_t v) {
  kh_builder__put_be(b, v, 1);
}
static inline void kh_builder_u16(kh_builder *b, uint32_t v) {
  kh_builder__put_be(b, v, 2);
}
static inline void kh_builder_u24(kh_builder *b, uint32_t v) {
  kh_builder__put_be(b, v, 3);
}
static inline void kh_builder_u32(kh_builder *b, uint32_t v) {
  kh_builder__put_be(b, v, 4);
}
static inline void kh_builder_bytes(kh_builder *b, const void *data, size_t len) {
  if (len == 0) return;
  uint8_t *p = kh_builder_space(b, len);
  if (p != NULL) memcpy(p, data, len);
}

/* kh_builder_open_u8 / u16 / u24 start a child with a length prefix of that
 * width; kh_builder_close ends the innermost open child. */
void kh_builder_open_u8(kh_builder *b);
void kh_builder_open_u16(kh_builder *b);
void kh_builder_open_u24(kh_builder *b);
void kh_builder_close(kh_builder *b);

/* kh_builder_data / kh_builder_len: the bytes written so far (valid until
 * the next write). */
uint8_t *kh_builder_data(const kh_builder *b);
size_t kh_builder_len(const kh_builder *b);

/* kh_builder_finish checks that nothing failed and no child is open, and
 * sets |*out_len| (may be NULL) to the bytes written. On failure the output
 * is wiped and truncated to where the builder started, and |err| says why
 * (KH_ERR_NOMEM for memory, else KH_ERR_INVALID_ARGUMENT). */
KH_MUST_USE int kh_builder_finish(kh_builder *b, size_t *out_len, kh_error *err);

/* kh_builder_abort wipes and drops everything the builder wrote, also after
 * a successful kh_builder_finish (e.g. when sealing the built bytes fails). */
void kh_builder_abort(kh_builder *b);

#ifdef __cplusplus
}
#endif

#endif /* KH_BUILDER_H */

/* kh_builder.c: the bounded writer (kh_builder.h). */
#include "kh_builder.h"

#include <string.h>

#include "kh_secret.h"

static const char *const k_nomem = "out of memory";

void kh_builder_init(kh_builder *b, kh_buf *out, size_t cap) {
  memset(b, 0, sizeof(*b));
  b->buf = out;
  b->start = out->len;
  b->cap = cap;
}

void kh_builder_init_fixed(kh_builder *b, uint8_t *mem, size_t cap) {
  memset(b, 0, sizeof(*b));
  b->mem = mem;
  b->cap = cap;
}

static void fail(kh_builder *b, const char *why) {
  if (b->failure == NULL) b->failure = why;
}

uint8_t *kh_builder_data(const kh_builder *b) {
  if (b->buf == NULL) return b->mem;
  return b->buf->data == NULL ? NULL : b->buf->data + b->start;
}

size_t kh_builder_len(const kh_builder *b) {
  return b->len;
}

uint8_t *kh_builder_space(kh_builder *b, size_t len) {
  if (b->failure != NULL) return NULL;
  if (len > b->cap - b->len) {
    fail(b, "output exceeds the builder's cap");
    return NULL;
  }
  uint8_t *p;
  if (b->buf != NULL) {
    if (!kh_buf_reserve(b->buf, len)) {
      fail(b, k_nomem);
      return NULL;
    }
    p = b->buf->data + b->buf->len;
    b->buf->len += len;
  } else {
    p = b->mem + b->len;
  }
  b->len += len;
  return p;
}

void kh_builder_reserve(kh_builder *b, size_t len) {
  if (b->failure != NULL) return;
  if (len > b->cap - b->len) {
    fail(b, "output exceeds the builder's cap");
    return;
  }
  if (b->buf != NULL && !kh_buf_reserve(b->buf, len)) fail(b, k_nomem);
}

static void put_be(kh_builder *b, uint32_t v, size_t width) {
  if (width < 4 && v >> (8 * width) != 0) {
    fail(b, "integer too large for its field");
    return;
  }
  uint8_t *p = kh_builder_space(b, width);
  if (p == NULL) return;
  for (size_t i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

void kh_builder_u8(kh_builder *b, uint32_t v) {
  put_be(b, v, 1);
}
void kh_builder_u16(kh_builder *b, uint32_t v) {
  put_be(b, v, 2);
}
void kh_builder_u24(kh_builder *b, uint32_t v) {
  put_be(b, v, 3);
}
void kh_builder_u32(kh_builder *b, uint32_t v) {
  put_be(b, v, 4);
}

void kh_builder_bytes(kh_builder *b, const void *data, size_t len) {
  if (len == 0) return;
  uint8_t *p = kh_builder_space(b, len);
  if (p != NULL) memcpy(p, data, len);
}

static void open_child(kh_builder *b, uint8_t width) {
  if (b->failure != NULL) return;
  if (b->depth == KH_BUILDER_MAX_DEPTH) {
    fail(b, "length-prefixed children nested too deep");
    return;
  }
  size_t at = b->len;
  uint8_t *p = kh_builder_space(b, width);
  if (p == NULL) return;
  memset(p, 0, width);
  b->open_at[b->depth] = at;
  b->open_width[b->depth] = width;
  b->depth++;
}

void kh_builder_open_u8(kh_builder *b) {
  open_child(b, 1);
}
void kh_builder_open_u16(kh_builder *b) {
  open_child(b, 2);
}
void kh_builder_open_u24(kh_builder *b) {
  open_child(b, 3);
}

void kh_builder_close(kh_builder *b) {
  if (b->failure != NULL) return;
  if (b->depth == 0) {
    fail(b, "close without an open child");
    return;
  }
  b->depth--;
  size_t at = b->open_at[b->depth], width = b->open_width[b->depth];
  size_t n = b->len - at - width;
  if (n >> (8 * width) != 0) {
    fail(b, "child too long for its length prefix");
    return;
  }
  uint8_t *p = kh_builder_data(b) + at;
  for (size_t i = 0; i < width; i++) p[i] = (uint8_t)(n >> (8 * (width - 1 - i)));
}

void kh_builder_abort(kh_builder *b) {
  uint8_t *p = kh_builder_data(b);
  if (p != NULL) kh_wipe(p, b->len);
  if (b->buf != NULL) b->buf->len = b->start;
  b->len = 0;
  b->depth = 0;
}

int kh_builder_finish(kh_builder *b, size_t *out_len, kh_error *err) {
  if (b->failure == NULL && b->depth != 0) fail(b, "length-prefixed child left open");
  if (b->failure != NULL) {
    const char *why = b->failure;
    kh_builder_abort(b);
    return kh_err(err, why == k_nomem ? KH_ERR_NOMEM : KH_ERR_INVALID_ARGUMENT, "builder: %s", why);
  }
  if (out_len != NULL) *out_len = b->len;
  return 1;
}

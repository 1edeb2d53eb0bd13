/* record.c: the shim's TLS 1.3 record layer (RFC 8446 section 5), sans-IO. */
#include "record.h"

#include <stdio.h>
#include <string.h>

#include "aead.h"
#include "kh_builder.h"
#include "kh_cursor.h"
#include "kh_secret.h"
#include "tls13_keys.h"

#define KH_HS_KEY_UPDATE 24
#define KH_HS_NEW_SESSION_TICKET 4
#define KH_MAX_HS_MESSAGE (64u * 1024u)

enum { ALERT_LEVEL_WARNING = 1, ALERT_LEVEL_FATAL = 2 };
enum {
  ALERT_CLOSE_NOTIFY = 0,
  ALERT_UNEXPECTED_MESSAGE = 10,
  ALERT_BAD_RECORD_MAC = 20,
  ALERT_RECORD_OVERFLOW = 22,
  ALERT_DECODE_ERROR = 50,
  ALERT_ILLEGAL_PARAMETER = 47,
  ALERT_INTERNAL_ERROR = 80,
};

typedef struct {
  kh_aead aead; /* keyed with this generation's key and IV */
  uint8_t secret[KH_MAX_SECRET_LEN];
  uint64_t seq;
} direction;

struct kh_record {
  kh_suite suite;
  size_t secret_len;
  direction rd, wr;
  kh_ticket_cb on_ticket;
  void *ticket_arg;
  kh_buf hs; /* handshake bytes of a message spanning records */
  int failed;
  int peer_closed;
  int write_closed;
};

/* --- keys ---------------------------------------------------------------- */

static int direction_key(kh_record *r, direction *d, int encrypt, kh_error *err) {
  uint8_t key[KH_AEAD_MAX_KEY], iv[KH_AEAD_IV_LEN];
  size_t key_len;
  kh_aead_cleanup(&d->aead);
  int ok = kh_tls13_traffic_keys(r->suite, d->secret, r->secret_len, key, &key_len, iv, err) &&
           kh_aead_init(&d->aead, kh_aead_alg_of(r->suite), key, key_len, iv, encrypt, err);
  kh_wipe(key, sizeof(key));
  kh_wipe(iv, sizeof(iv));
  return ok;
}

static int direction_update(kh_record *r, direction *d, int encrypt, kh_error *err) {
  if (!kh_tls13_update_secret(r->suite, d->secret, r->secret_len, err)) return 0;
  d->seq = 0;
  return direction_key(r, d, encrypt, err);
}

kh_record *kh_record_new(const kh_traffic_keys *keys, kh_ticket_cb on_ticket, void *ticket_arg,
                         kh_error *err) {
  if (keys->tls_version != KH_TLS_VERSION_1_3) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "traffic keys for TLS version 0x%04x, not 1.3",
           keys->tls_version);
    return NULL;
  }
  if ((int)keys->suite < 0 || (int)keys->suite >= KH_SUITE_COUNT ||
      keys->secret_len != kh_suite_secret_len(keys->suite)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "secret length %zu does not fit %s", keys->secret_len,
           kh_suite_name(keys->suite));
    return NULL;
  }
  kh_record *r = kh_secret_alloc(sizeof(*r));
  if (r == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  r->suite = keys->suite;
  r->secret_len = keys->secret_len;
  memcpy(r->rd.secret, keys->in_secret, keys->secret_len);
  memcpy(r->wr.secret, keys->out_secret, keys->secret_len);
  r->rd.seq = keys->in_sequence;
  r->wr.seq = keys->out_sequence;
  r->on_ticket = on_ticket;
  r->ticket_arg = ticket_arg;
  if (!direction_key(r, &r->rd, 0, err) || !direction_key(r, &r->wr, 1, err)) {
    kh_record_free(r);
    return NULL;
  }
  return r;
}

void kh_record_free(kh_record *r) {
  if (r == NULL) return;
  kh_aead_cleanup(&r->rd.aead);
  kh_aead_cleanup(&r->wr.aead);
  kh_buf_free(&r->hs);
  kh_secret_free(r, sizeof(*r));
}

/* --- sealing ------------------------------------------------------------- */

/* seal_one appends one record carrying |len| <= 2^14 bytes of |type|:
 * header (type 23, legacy version, length), then content || type || tag,
 * sealed with the header as additional data straight from |data| (no copy
 * of the plaintext into the output first). */
static int seal_one(kh_record *r, uint8_t type, const uint8_t *data, size_t len, kh_buf *out,
                    kh_error *err) {
  if (r->wr.seq == UINT64_MAX)
    return kh_err(err, KH_ERR_SEQ_OVERFLOW, "write sequence number exhausted: rekey or reconnect");
  size_t inner = len + 1;
  size_t clen = inner + KH_AEAD_TAG_LEN; /* in the header, hence in the AAD: known up front */
  kh_builder b;
  kh_builder_init(&b, out, KH_TLS_RECORD_HEADER + KH_TLS_MAX_CIPHERTEXT);
  kh_builder_reserve(&b, KH_TLS_RECORD_HEADER + clen); /* one allocation, then inline writes */
  kh_builder_u8(&b, KH_CT_APPLICATION_DATA);
  kh_builder_u16(&b, KH_TLS_LEGACY_VERSION);
  kh_builder_u16(&b, (uint32_t)clen);
  uint8_t *body = kh_builder_space(&b, inner + KH_AEAD_TAG_LEN); /* ciphertext || tag */
  if (!kh_builder_finish(&b, NULL, err)) return 0;               /* NULL |body| fails here */
  uint8_t *hdr = kh_builder_data(&b), *tag = body + inner;
  if (!kh_aead_seal_tail(&r->wr.aead, r->wr.seq, hdr, KH_TLS_RECORD_HEADER, data, len, &type, 1,
                         body, tag)) {
    kh_builder_abort(&b);
    return kh_err(err, KH_ERR_INTERNAL, "record encryption failed");
  }
  r->wr.seq++;
  return 1;
}

/* alert_msg builds an alert message (level, description) into |msg|. */
static int alert_msg(uint8_t level, uint8_t desc, uint8_t msg[2], kh_error *err) {
  kh_builder b;
  kh_builder_init_fixed(&b, msg, 2);
  kh_builder_u8(&b, level);
  kh_builder_u8(&b, desc);
  return kh_builder_finish(&b, NULL, err);
}

static int fail(kh_record *r, uint8_t alert, kh_buf *to_peer) {
  if (!r->failed && !r->write_closed && to_peer != NULL && alert != 0xff) {
    uint8_t msg[2];
    kh_error ignored; /* best effort: the error being reported is the caller's */
    if (alert_msg(ALERT_LEVEL_FATAL, alert, msg, &ignored))
      (void)seal_one(r, KH_CT_ALERT, msg, sizeof(msg), to_peer, &ignored);
  }
  r->failed = 1;
  return 0;
}

int kh_record_seal(kh_record *r, uint8_t content_type, const uint8_t *data, size_t len, kh_buf *out,
                   kh_error *err) {
  if (r->failed) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier");
  if (r->write_closed) return kh_err(err, KH_ERR_CLOSED, "connection closed for writing");
  do {
    size_t n = len > KH_TLS_MAX_PLAINTEXT ? KH_TLS_MAX_PLAINTEXT : len;
    if (!seal_one(r, content_type, data, n, out, err)) return 0;
    data += n;
    len -= n;
  } while (len > 0);
  return 1;
}

int kh_record_key_update(kh_record *r, int request_peer, kh_buf *to_peer, kh_error *err) {
  /* struct { HandshakeType msg_type; uint24 length; KeyUpdateRequest; } */
  uint8_t msg[5];
  kh_builder b;
  size_t n;
  kh_builder_init_fixed(&b, msg, sizeof(msg));
  kh_builder_u8(&b, KH_HS_KEY_UPDATE);
  kh_builder_open_u24(&b);
  kh_builder_u8(&b, request_peer ? 1 : 0);
  kh_builder_close(&b);
  if (!kh_builder_finish(&b, &n, err) || !kh_record_seal(r, KH_CT_HANDSHAKE, msg, n, to_peer, err))
    return 0;
  if (!direction_update(r, &r->wr, 1, err)) return fail(r, 0xff, NULL);
  return 1;
}

int kh_record_close(kh_record *r, kh_buf *to_peer, kh_error *err) {
  if (r->write_closed) return 1;
  uint8_t msg[2];
  if (!alert_msg(ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY, msg, err) ||
      !kh_record_seal(r, KH_CT_ALERT, msg, sizeof(msg), to_peer, err))
    return 0;
  r->write_closed = 1;
  return 1;
}

/* --- opening ------------------------------------------------------------- */

static const char *alert_name(uint8_t d) {
  switch (d) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 80: return "internal_error";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "unknown alert";
  }
}

/* handle_handshake processes the complete messages in r->hs. |record_end|
 * says whether the current record ended with them (a KeyUpdate must end its
 * record: keys change at a record boundary). */
static int handle_handshake(kh_record *r, kh_buf *to_peer, kh_error *err) {
  kh_cursor c;
  kh_cursor_init(&c, r->hs.data, r->hs.len);
  size_t used = 0;
  for (;;) {
    uint8_t type;
    kh_cursor body;
    kh_cursor save = c;
    if (!kh_cursor_u8(&c, &type) || !kh_cursor_u24_prefixed(&c, &body)) {
      c = save;
      break; /* incomplete: wait for the next record */
    }
    size_t msg_len = kh_cursor_left(&save) - kh_cursor_left(&c);
    if (type == KH_HS_NEW_SESSION_TICKET) {
      if (r->on_ticket) r->on_ticket(r->ticket_arg, save.data, msg_len);
    } else if (type == KH_HS_KEY_UPDATE) {
      uint8_t req = 0;
      if (kh_cursor_left(&body) != 1 || !kh_cursor_u8(&body, &req) || req > 1) {
        kh_err(err, KH_ERR_PROTOCOL, "malformed KeyUpdate");
        return fail(r, req > 1 ? ALERT_ILLEGAL_PARAMETER : ALERT_DECODE_ERROR, to_peer);
      }
      if (kh_cursor_left(&c) != 0) {
        kh_err(err, KH_ERR_PROTOCOL, "KeyUpdate not at the end of its record");
        return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
      }
      if (!direction_update(r, &r->rd, 0, err)) return fail(r, ALERT_INTERNAL_ERROR, to_peer);
      if (req == 1 && !r->write_closed && !kh_record_key_update(r, 0, to_peer, err)) return 0;
    } else {
      kh_err(err, KH_ERR_PROTOCOL, "unexpected post-handshake message type %u", type);
      return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
    }
    used += msg_len;
  }
  kh_buf_consume(&r->hs, used);
  if (r->hs.len > KH_MAX_HS_MESSAGE) {
    kh_err(err, KH_ERR_PROTOCOL, "post-handshake message larger than %u bytes", KH_MAX_HS_MESSAGE);
    return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
  }
  return 1;
}

/* open_one decrypts one record body into |app_out| and dispatches it. */
static int open_one(kh_record *r, const uint8_t hdr[KH_TLS_RECORD_HEADER], kh_cursor *body,
                    kh_buf *app_out, kh_buf *to_peer, kh_error *err) {
  size_t clen = kh_cursor_left(body);
  if (clen < 1 + KH_AEAD_TAG_LEN) {
    kh_err(err, KH_ERR_DECRYPT, "record too short to be protected");
    return fail(r, ALERT_BAD_RECORD_MAC, to_peer);
  }
  if (r->rd.seq == UINT64_MAX) {
    kh_err(err, KH_ERR_SEQ_OVERFLOW, "read sequence number exhausted");
    return fail(r, ALERT_INTERNAL_ERROR, to_peer);
  }
  size_t plen = clen - KH_AEAD_TAG_LEN;
  if (!kh_buf_reserve(app_out, plen)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  uint8_t *pt = app_out->data + app_out->len;
  kh_cursor ct; /* ciphertext; the tag is what stays in |body| */
  if (!kh_cursor_sub(body, plen, &ct) ||
      !kh_aead_open(&r->rd.aead, r->rd.seq, hdr, KH_TLS_RECORD_HEADER, ct.data, plen, body->data,
                    pt)) {
    kh_err(err, KH_ERR_DECRYPT, "record authentication failed (bad_record_mac)");
    return fail(r, ALERT_BAD_RECORD_MAC, to_peer);
  }
  r->rd.seq++;
  /* Inner plaintext: content || type || zeros. */
  size_t n = plen;
  while (n > 0 && pt[n - 1] == 0) n--;
  if (n == 0) {
    kh_err(err, KH_ERR_PROTOCOL, "record has no content type");
    return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
  }
  uint8_t type = pt[--n];
  if (n > KH_TLS_MAX_PLAINTEXT) {
    kh_err(err, KH_ERR_RECORD_OVERFLOW, "record plaintext of %zu bytes exceeds 2^14", n);
    return fail(r, ALERT_RECORD_OVERFLOW, to_peer);
  }
  if (type != KH_CT_HANDSHAKE && r->hs.len > 0) {
    kh_err(err, KH_ERR_PROTOCOL, "record interleaved with a fragmented handshake message");
    return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
  }
  switch (type) {
    case KH_CT_APPLICATION_DATA: app_out->len += n; return 1;
    case KH_CT_HANDSHAKE: {
      int ok = n > 0 && kh_buf_append(&r->hs, pt, n);
      kh_wipe(pt, plen);
      if (!ok) {
        kh_err(err, KH_ERR_PROTOCOL, "empty or oversized handshake record");
        return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
      }
      return handle_handshake(r, to_peer, err);
    }
    case KH_CT_ALERT: {
      kh_cursor alert;
      uint8_t level = 0, desc = 0;
      kh_cursor_init(&alert, pt, n);
      int well_formed = n == 2 && kh_cursor_u8(&alert, &level) && kh_cursor_u8(&alert, &desc);
      kh_wipe(pt, plen);
      if (!well_formed) {
        kh_err(err, KH_ERR_PROTOCOL, "malformed alert");
        return fail(r, ALERT_DECODE_ERROR, to_peer);
      }
      if (desc == ALERT_CLOSE_NOTIFY) {
        r->peer_closed = 1;
        return 1;
      }
      (void)level; /* TLS 1.3: every alert but close_notify and user_canceled is fatal */
      r->failed = 1;
      return kh_err(err, KH_ERR_PEER_ALERT, "peer sent alert %s (%u)", alert_name(desc), desc);
    }
    default:
      kh_wipe(pt, plen);
      kh_err(err, KH_ERR_PROTOCOL, "unexpected inner content type %u", type);
      return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
  }
}

int kh_record_open(kh_record *r, const uint8_t *in, size_t in_len, size_t *consumed,
                   kh_buf *app_out, kh_buf *to_peer, kh_error *err) {
  *consumed = 0;
  if (r->failed) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "connection failed earlier");
  kh_cursor c;
  kh_cursor_init(&c, in, in_len);
  while (!r->peer_closed) {
    kh_cursor rec = c, body;
    uint8_t type;
    uint16_t version;
    if (!kh_cursor_u8(&rec, &type) || !kh_cursor_u16(&rec, &version)) break;
    kh_cursor lenc = rec;
    uint16_t len;
    if (!kh_cursor_u16(&lenc, &len)) break;
    if (len > KH_TLS_MAX_CIPHERTEXT) {
      kh_err(err, KH_ERR_RECORD_OVERFLOW, "record of %u bytes exceeds 2^14+256", len);
      return fail(r, ALERT_RECORD_OVERFLOW, to_peer);
    }
    if (!kh_cursor_u16_prefixed(&rec, &body)) break; /* need more bytes */
    if (type == KH_CT_CHANGE_CIPHER_SPEC) {
      /* RFC 8446 5: only allowed before the peer's Finished; we are past it. */
      kh_err(err, KH_ERR_PROTOCOL, "ChangeCipherSpec after the handshake");
      return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
    }
    if (type != KH_CT_APPLICATION_DATA) {
      kh_err(err, KH_ERR_PROTOCOL, "unprotected record of type %u after the handshake", type);
      return fail(r, ALERT_UNEXPECTED_MESSAGE, to_peer);
    }
    if (!open_one(r, c.data, &body, app_out, to_peer, err)) {
      *consumed = in_len - kh_cursor_left(&c);
      return 0;
    }
    c = rec;
    *consumed = in_len - kh_cursor_left(&c);
  }
  if (r->peer_closed) *consumed = in_len; /* nothing after close_notify counts */
  return 1;
}

int kh_record_peer_closed(const kh_record *r) {
  return r->peer_closed;
}
uint64_t kh_record_read_seq(const kh_record *r) {
  return r->rd.seq;
}
uint64_t kh_record_write_seq(const kh_record *r) {
  return r->wr.seq;
}

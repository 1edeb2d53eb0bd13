/* channel_record.c: the shim's secure-channel messages (channel_record.h),
 * sans-IO, on the shim's AEAD (aead.h). */
#include "channel_record.h"

#include <string.h>

#include "aead.h"
#include "kh_secret.h"

#define WINDOW_WORDS (KH_CHAN_REPLAY_WINDOW / 64)
#define COUNTER_RESERVED UINT64_MAX /* REKEY's nonce: no message uses it */

_Static_assert(KH_CHAN_REPLAY_WINDOW % 64 == 0, "the window is whole 64-bit words");
_Static_assert(KH_CHAN_HEADER_LEN == 1 + 1 + KH_CHAN_ID_LEN + 4 + 8, "the header's fields");
_Static_assert(KH_CHAN_TAG_LEN == KH_AEAD_TAG_LEN, "the message tag is the AEAD's");
_Static_assert(KH_CHAN_KEY_LEN <= KH_AEAD_MAX_KEY, "a channel key fits the AEAD");

struct kh_chan_record {
  kh_chan_cipher cipher;
  int initiator, can_send, can_recv;
  uint8_t channel_id[KH_CHAN_ID_LEN];
  uint64_t rekey_after;
  /* Sending: the current epoch's key, its AEAD, the next counter and how
   * many messages went out under this epoch. */
  uint8_t send_key[KH_CHAN_KEY_LEN];
  kh_aead send;
  uint32_t send_epoch;
  uint64_t send_counter, send_in_epoch;
  /* Receiving: the newest epoch's key (the one later epochs derive from)
   * and AEAD, and the AEAD of the epoch before it (has_prev: it exists). */
  uint8_t recv_key[KH_CHAN_KEY_LEN];
  kh_aead recv, recv_prev;
  uint32_t recv_epoch;
  int has_prev;
  /* Replay window: bit d of the bitmap (word d / 64, bit d % 64) is set
   * once counter highest - d has opened; valid once opened_any. */
  int opened_any;
  uint64_t highest;
  uint64_t window[WINDOW_WORDS];
  uint64_t sent, opened, rejected;
};

/* --- keys ---------------------------------------------------------------- */

static kh_aead_alg alg_of(kh_chan_cipher c) {
  return c == KH_CHAN_AESGCM ? KH_AEAD_AES_GCM : KH_AEAD_CHACHA20_POLY1305;
}

/* aead_counter: what to hand kh_aead (IV zero, counter big-endian in the
 * nonce's last 8 bytes) for Noise's nonce n: AESGCM encodes n big-endian,
 * ChaChaPoly little-endian, both after 4 zero bytes (Noise 12.3, 12.4). */
static uint64_t aead_counter(kh_chan_cipher c, uint64_t n) {
  return c == KH_CHAN_AESGCM ? n : __builtin_bswap64(n);
}

static int key_aead(const kh_chan_record *c, kh_aead *a, const uint8_t key[KH_CHAN_KEY_LEN],
                    int encrypt, kh_error *err) {
  static const uint8_t zero_iv[KH_AEAD_IV_LEN] = {0};
  return kh_aead_init(a, alg_of(c->cipher), key, KH_CHAN_KEY_LEN, zero_iv, encrypt, err);
}

/* rekey replaces |key| with REKEY(key) (Noise 11.3): the first 32 bytes of
 * ENCRYPT(key, 2^64-1, "", 32 zero bytes), i.e. the ciphertext without the
 * tag. The nonce 2^64-1 is all ones in either encoding. */
static int rekey(const kh_chan_record *c, uint8_t key[KH_CHAN_KEY_LEN], kh_error *err) {
  static const uint8_t zeros[KH_CHAN_KEY_LEN] = {0};
  uint8_t next[KH_CHAN_KEY_LEN], tag[KH_AEAD_TAG_LEN];
  kh_aead a = {0};
  if (!key_aead(c, &a, key, 1, err)) return 0;
  int ok = kh_aead_seal(&a, aead_counter(c->cipher, COUNTER_RESERVED), NULL, 0, zeros,
                        sizeof(zeros), next, tag);
  kh_aead_cleanup(&a);
  if (ok) memcpy(key, next, KH_CHAN_KEY_LEN);
  kh_wipe(next, sizeof(next));
  kh_wipe(tag, sizeof(tag));
  return ok ? 1 : kh_err(err, KH_ERR_INTERNAL, "channel rekey failed");
}

kh_chan_record *kh_chan_record_new(const kh_chan_keys *keys, uint64_t rekey_after, kh_error *err) {
  if (keys->cipher != KH_CHAN_CHACHAPOLY && keys->cipher != KH_CHAN_AESGCM) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown channel cipher %d", (int)keys->cipher);
    return NULL;
  }
  kh_chan_record *c = kh_secret_alloc(sizeof(*c));
  if (c == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  c->cipher = keys->cipher;
  c->initiator = keys->initiator != 0;
  c->can_send = keys->can_send != 0;
  c->can_recv = keys->can_recv != 0;
  memcpy(c->channel_id, keys->channel_id, KH_CHAN_ID_LEN);
  c->rekey_after = rekey_after != 0 ? rekey_after : KH_CHAN_DEFAULT_REKEY_AFTER;
  /* A direction this side does not use keeps no key (a one-way pattern's
   * unused key is zeros). */
  if (c->can_send) memcpy(c->send_key, keys->send_key, KH_CHAN_KEY_LEN);
  if (c->can_recv) memcpy(c->recv_key, keys->recv_key, KH_CHAN_KEY_LEN);
  if ((c->can_send && !key_aead(c, &c->send, c->send_key, 1, err)) ||
      (c->can_recv && !key_aead(c, &c->recv, c->recv_key, 0, err))) {
    kh_chan_record_free(c);
    return NULL;
  }
  return c;
}

void kh_chan_record_free(kh_chan_record *c) {
  if (c == NULL) return;
  kh_aead_cleanup(&c->send);
  kh_aead_cleanup(&c->recv);
  kh_aead_cleanup(&c->recv_prev);
  kh_secret_free(c, sizeof(*c));
}

/* --- sealing ------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_u64(const uint8_t *p) {
  return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* next_send_epoch derives the next epoch's key and AEAD into |key| and |a|
 * without touching the current ones. */
static int next_send_epoch(kh_chan_record *c, uint8_t key[KH_CHAN_KEY_LEN], kh_aead *a,
                           kh_error *err) {
  if (c->send_epoch == UINT32_MAX)
    return kh_err(err, KH_ERR_SEQ_OVERFLOW, "channel key epochs exhausted");
  memcpy(key, c->send_key, KH_CHAN_KEY_LEN);
  if (!rekey(c, key, err) || !key_aead(c, a, key, 1, err)) {
    kh_wipe(key, KH_CHAN_KEY_LEN);
    return 0;
  }
  return 1;
}

/* commit_send_epoch makes the derived |key| and |a| current. */
static void commit_send_epoch(kh_chan_record *c, uint8_t key[KH_CHAN_KEY_LEN], kh_aead *a) {
  kh_aead_cleanup(&c->send);
  c->send = *a;
  memcpy(c->send_key, key, KH_CHAN_KEY_LEN);
  kh_wipe(key, KH_CHAN_KEY_LEN);
  kh_wipe(a, sizeof(*a));
  c->send_epoch++;
  c->send_in_epoch = 0;
}

int kh_chan_record_seal(kh_chan_record *c, const uint8_t *pt, size_t len, kh_buf *out,
                        kh_error *err) {
  if (!c->can_send) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "this side cannot send");
  if (len > KH_CHAN_MAX_PLAINTEXT)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "a %zu-byte message exceeds the %u-byte limit", len,
                  KH_CHAN_MAX_PLAINTEXT);
  if (c->send_counter == COUNTER_RESERVED)
    return kh_err(err, KH_ERR_SEQ_OVERFLOW, "channel message counter exhausted");
  /* After rekey_after messages the next one goes out under a new epoch;
   * the switch is committed with the message. */
  int new_epoch = c->send_in_epoch >= c->rekey_after;
  uint8_t next_key[KH_CHAN_KEY_LEN];
  kh_aead next = {0};
  if (new_epoch && !next_send_epoch(c, next_key, &next, err)) return 0;
  kh_aead *a = new_epoch ? &next : &c->send;
  int ok = kh_buf_reserve(out, KH_CHAN_OVERHEAD + len);
  if (!ok) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
  } else {
    uint8_t *hdr = out->data + out->len, *body = hdr + KH_CHAN_HEADER_LEN;
    hdr[0] = KH_CHAN_VERSION;
    hdr[1] = c->initiator ? 1 : 0;
    memcpy(hdr + 2, c->channel_id, KH_CHAN_ID_LEN);
    put_u32(hdr + 2 + KH_CHAN_ID_LEN, c->send_epoch + (new_epoch ? 1 : 0));
    put_u64(hdr + 6 + KH_CHAN_ID_LEN, c->send_counter);
    ok = kh_aead_seal(a, aead_counter(c->cipher, c->send_counter), hdr, KH_CHAN_HEADER_LEN, pt, len,
                      body, body + len);
    if (!ok) kh_err(err, KH_ERR_INTERNAL, "channel message encryption failed");
  }
  if (!ok) {
    if (new_epoch) {
      kh_aead_cleanup(&next);
      kh_wipe(next_key, sizeof(next_key));
    }
    return 0;
  }
  if (new_epoch) commit_send_epoch(c, next_key, &next);
  out->len += KH_CHAN_OVERHEAD + len;
  c->send_counter++;
  c->send_in_epoch++;
  c->sent++;
  return 1;
}

int kh_chan_record_rekey(kh_chan_record *c, kh_error *err) {
  if (!c->can_send) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "this side cannot send");
  uint8_t key[KH_CHAN_KEY_LEN];
  kh_aead a = {0};
  if (!next_send_epoch(c, key, &a, err)) return 0;
  commit_send_epoch(c, key, &a); /* the old key is gone from here on */
  return 1;
}

/* --- opening ------------------------------------------------------------- */

/* window_check: may |counter| open? KH_OK, or why not. */
static kh_code window_check(const kh_chan_record *c, uint64_t counter) {
  if (!c->opened_any || counter > c->highest) return KH_OK;
  uint64_t d = c->highest - counter;
  if (d >= KH_CHAN_REPLAY_WINDOW) return KH_ERR_CHANNEL_TOO_OLD;
  return c->window[d / 64] >> (d % 64) & 1 ? KH_ERR_CHANNEL_REPLAY : KH_OK;
}

/* window_mark records |counter| (window_check said KH_OK) as opened, sliding
 * the window up when it is the new highest. */
static void window_mark(kh_chan_record *c, uint64_t counter) {
  if (!c->opened_any) {
    memset(c->window, 0, sizeof(c->window));
    c->opened_any = 1;
    c->highest = counter;
  } else if (counter > c->highest) {
    uint64_t shift = counter - c->highest;
    if (shift >= KH_CHAN_REPLAY_WINDOW) {
      memset(c->window, 0, sizeof(c->window));
    } else {
      /* Bit d moves to bit d + shift: whole words, then the remainder. */
      size_t words = (size_t)(shift / 64);
      unsigned bits = (unsigned)(shift % 64);
      for (size_t i = WINDOW_WORDS; i-- > 0;) {
        uint64_t hi = i >= words ? c->window[i - words] : 0;
        uint64_t lo = i >= words + 1 ? c->window[i - words - 1] : 0;
        c->window[i] = bits == 0 ? hi : hi << bits | lo >> (64 - bits);
      }
    }
    c->highest = counter;
  }
  uint64_t d = c->highest - counter;
  c->window[d / 64] |= (uint64_t)1 << (d % 64);
}

static int reject(kh_chan_record *c, kh_error *err, kh_code code, const char *msg) {
  c->rejected++;
  return kh_err(err, code, "%s", msg);
}

/* ahead_keys derives, for a message |skip| (1..KH_CHAN_MAX_EPOCH_SKIP)
 * epochs past the newest, that epoch's key into |key| with its AEAD in |a|,
 * and the AEAD of the epoch before it in |a_prev| (left unkeyed when that
 * is the newest epoch, whose AEAD we already hold). */
static int ahead_keys(kh_chan_record *c, uint32_t skip, uint8_t key[KH_CHAN_KEY_LEN], kh_aead *a,
                      kh_aead *a_prev, kh_error *err) {
  memcpy(key, c->recv_key, KH_CHAN_KEY_LEN);
  for (uint32_t i = 0; i < skip; i++) {
    if (i == skip - 1 && skip > 1 && !key_aead(c, a_prev, key, 0, err)) break;
    if (!rekey(c, key, err)) break;
    if (i == skip - 1 && key_aead(c, a, key, 0, err)) return 1;
  }
  kh_aead_cleanup(a_prev);
  kh_wipe(key, KH_CHAN_KEY_LEN);
  return 0;
}

int kh_chan_record_open(kh_chan_record *c, const uint8_t *msg, size_t len, kh_buf *out,
                        kh_error *err) {
  if (!c->can_recv) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "this side cannot receive");
  if (len < KH_CHAN_OVERHEAD)
    return reject(c, err, KH_ERR_PROTOCOL, "channel message shorter than its overhead");
  if (msg[0] != KH_CHAN_VERSION)
    return reject(c, err, KH_ERR_PROTOCOL, "unknown channel message version");
  if (len > (size_t)KH_CHAN_MAX_PLAINTEXT + KH_CHAN_OVERHEAD)
    return reject(c, err, KH_ERR_RECORD_OVERFLOW, "channel message over the size limit");
  if (memcmp(msg + 2, c->channel_id, KH_CHAN_ID_LEN) != 0)
    return reject(c, err, KH_ERR_CHANNEL_WRONG, "message of another channel");
  if ((msg[1] & 1) == c->initiator)
    return reject(c, err, KH_ERR_CHANNEL_WRONG, "our own message reflected back");
  uint32_t epoch = get_u32(msg + 2 + KH_CHAN_ID_LEN);
  uint64_t counter = get_u64(msg + 6 + KH_CHAN_ID_LEN);

  /* Which key: the previous epoch's, the newest's, or one derived ahead. */
  kh_aead *a;
  uint32_t skip = 0;
  if (epoch == c->recv_epoch) {
    a = &c->recv;
  } else if (epoch < c->recv_epoch) {
    if (!c->has_prev || epoch != c->recv_epoch - 1)
      return reject(c, err, KH_ERR_CHANNEL_TOO_OLD, "message of an epoch whose key is gone");
    a = &c->recv_prev;
  } else {
    if (epoch - c->recv_epoch > KH_CHAN_MAX_EPOCH_SKIP)
      return reject(c, err, KH_ERR_CHANNEL_TOO_OLD, "message of an epoch too far ahead");
    skip = epoch - c->recv_epoch;
    a = NULL; /* derived below, once the counter passes */
  }
  kh_code why = window_check(c, counter);
  if (why == KH_ERR_CHANNEL_TOO_OLD)
    return reject(c, err, why, "message counter below the replay window");
  if (why == KH_ERR_CHANNEL_REPLAY) return reject(c, err, why, "message already opened");

  size_t plen = len - KH_CHAN_OVERHEAD;
  if (!kh_buf_reserve(out, plen)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  uint8_t key[KH_CHAN_KEY_LEN];
  kh_aead ahead = {0}, ahead_prev = {0};
  if (skip > 0) {
    if (!ahead_keys(c, skip, key, &ahead, &ahead_prev, err)) return 0;
    a = &ahead;
  }
  uint8_t scratch; /* somewhere to point at for an empty message into an empty buffer */
  uint8_t *pt = out->data != NULL ? out->data + out->len : &scratch;
  const uint8_t *ct = msg + KH_CHAN_HEADER_LEN;
  if (!kh_aead_open(a, aead_counter(c->cipher, counter), msg, KH_CHAN_HEADER_LEN, ct, plen,
                    ct + plen, pt)) {
    if (skip > 0) {
      kh_aead_cleanup(&ahead);
      kh_aead_cleanup(&ahead_prev);
      kh_wipe(key, sizeof(key));
    }
    return reject(c, err, KH_ERR_CHANNEL_TAMPERED, "channel message authentication failed");
  }

  /* Authentic: commit the epoch and the window. */
  if (skip > 0) {
    kh_aead_cleanup(&c->recv_prev);
    if (skip == 1) {
      c->recv_prev = c->recv;
    } else {
      kh_aead_cleanup(&c->recv);
      c->recv_prev = ahead_prev;
    }
    c->recv = ahead;
    c->has_prev = 1;
    c->recv_epoch = epoch;
    memcpy(c->recv_key, key, KH_CHAN_KEY_LEN);
    kh_wipe(key, sizeof(key));
    kh_wipe(&ahead, sizeof(ahead));
    kh_wipe(&ahead_prev, sizeof(ahead_prev));
  }
  window_mark(c, counter);
  out->len += plen;
  c->opened++;
  return 1;
}

void kh_chan_record_stats(const kh_chan_record *c, kh_chan_stats *out) {
  out->sent = c->sent;
  out->opened = c->opened;
  out->rejected = c->rejected;
  out->send_epoch = c->send_epoch;
  out->recv_epoch = c->recv_epoch;
}

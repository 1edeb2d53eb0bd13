/* fuzz_channel: the shim's secure-channel messages fed untrusted bytes, with
 * fixed keys. The first input byte picks the cipher (bit 1) and the mode
 * (bit 0): raw bytes, split into messages, straight into
 * kh_chan_record_open (lengths, version, channel id, direction, epochs,
 * window, authentication failures); or chunks each sealed by the peer's
 * record, then mutated, reordered, replayed or rekeyed between, so the
 * fuzzer reaches authentic messages, epoch derivation and the replay window.
 * After every open the receiver's stats must stay consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel_record.h"

static kh_chan_keys keys_for(kh_chan_cipher cipher, int initiator) {
  kh_chan_keys k;
  memset(&k, 0, sizeof(k));
  k.cipher = cipher;
  k.initiator = initiator;
  memcpy(k.channel_id, "fuzz-id!", KH_CHAN_ID_LEN);
  memset(k.send_key, initiator ? 0x11 : 0x22, KH_CHAN_KEY_LEN);
  memset(k.recv_key, initiator ? 0x22 : 0x11, KH_CHAN_KEY_LEN);
  k.can_send = k.can_recv = 1;
  return k;
}

/* open_one opens |msg| into |app| and checks the stats moved by exactly one
 * outcome, and the plaintext length is what the message length says. */
static int open_one(kh_chan_record *us, const uint8_t *msg, size_t len, kh_buf *app) {
  kh_chan_stats before, after;
  kh_error err;
  kh_chan_record_stats(us, &before);
  size_t had = app->len;
  int ok = kh_chan_record_open(us, msg, len, app, &err);
  kh_chan_record_stats(us, &after);
  if (ok) {
    if (app->len - had != len - KH_CHAN_OVERHEAD || after.opened != before.opened + 1 ||
        after.rejected != before.rejected || after.recv_epoch < before.recv_epoch)
      abort();
  } else {
    if (app->len != had || after.opened != before.opened || after.recv_epoch != before.recv_epoch)
      abort();
    int counted = err.code != KH_ERR_NOMEM && err.code != KH_ERR_INTERNAL;
    if (after.rejected != before.rejected + (counted ? 1 : 0)) abort();
  }
  kh_buf_reset(app);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  kh_chan_cipher cipher = data[0] & 2 ? KH_CHAN_AESGCM : KH_CHAN_CHACHAPOLY;
  int raw = data[0] & 1;
  data++, size--;
  kh_chan_keys pk = keys_for(cipher, 1), uk = keys_for(cipher, 0);
  kh_error err;
  kh_chan_record *peer = kh_chan_record_new(&pk, 4, &err); /* rekeys every 4 messages */
  kh_chan_record *us = kh_chan_record_new(&uk, 0, &err);
  kh_buf app = KH_BUF_INIT, wire = KH_BUF_INIT, sent = KH_BUF_INIT;
  if (peer == NULL || us == NULL) {
    size = 0; /* nothing to fuzz without both ends */
  } else if (raw) {
    /* messages: [len hi][len lo][bytes...] */
    while (size >= 2) {
      size_t n = (size_t)data[0] << 8 | data[1];
      data += 2, size -= 2;
      if (n > size) n = size;
      (void)open_one(us, data, n, &app);
      data += n, size -= n;
    }
    (void)open_one(us, data, size, &app);
  } else {
    /* chunks: [op][len][bytes...]; op bits 0-1: what to do with the sealed
     * message (open it, flip a bit then open it, open it twice, keep it to
     * open after the next one), bit 2: rekey first. A flip takes one more
     * input byte after the chunk: the byte to flip; op bits 3-5: the bit. */
    while (size >= 2) {
      uint8_t op = data[0];
      size_t n = data[1];
      data += 2, size -= 2;
      if (n > size) n = size;
      if ((op & 4) && !kh_chan_record_rekey(peer, &err)) break;
      kh_buf_reset(&wire);
      if (!kh_chan_record_seal(peer, data, n, &wire, &err)) break;
      data += n, size -= n;
      switch (op & 3) {
        case 0: (void)open_one(us, wire.data, wire.len, &app); break;
        case 1: {
          size_t pos = 0;
          if (size > 0) pos = data[0], data++, size--;
          size_t byte = pos % wire.len, bit = (size_t)(op >> 3 & 7);
          wire.data[byte] ^= (uint8_t)(1u << bit);
          if (open_one(us, wire.data, wire.len, &app)) abort(); /* a forgery opened */
          wire.data[byte] ^= (uint8_t)(1u << bit);
          (void)open_one(us, wire.data, wire.len, &app); /* the genuine one */
          break;
        }
        case 2:
          (void)open_one(us, wire.data, wire.len, &app);
          if (open_one(us, wire.data, wire.len, &app)) abort(); /* a replay opened */
          break;
        default:
          if (sent.len > 0) (void)open_one(us, sent.data, sent.len, &app);
          kh_buf_reset(&sent);
          if (!kh_buf_append(&sent, wire.data, wire.len)) size = 0;
          break;
      }
    }
    if (sent.len > 0) (void)open_one(us, sent.data, sent.len, &app);
    /* the last message once more, cut to the length of what input is left */
    if (wire.len > 0) (void)open_one(us, wire.data, wire.len < size ? wire.len : size, &app);
  }
  kh_buf_free(&app), kh_buf_free(&wire), kh_buf_free(&sent);
  kh_chan_record_free(peer);
  kh_chan_record_free(us);
  return 0;
}

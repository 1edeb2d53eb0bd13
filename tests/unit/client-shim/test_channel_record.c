/* client-shim/channel_record: round trips for both ciphers both ways,
 * out-of-order delivery, the replay window (replays, too old, a random
 * schedule against a model), bit flips anywhere leave the state as it was,
 * wrong channel, reflection, epochs (on demand, automatic, the previous
 * epoch, too far ahead), lengths, one-way sides, and known answers: the
 * message bytes and REKEY computed independently with OpenSSL EVP (Noise
 * nonces: ChaChaPoly little-endian, AESGCM big-endian). */
#include <check.h>

#include <openssl/evp.h>

#include "testutil.h"

#include "channel_record.h"
#include "hex.h"

#define PT_LEN 24 /* every message of the bulk helpers */
#define MSG_LEN (KH_CHAN_OVERHEAD + PT_LEN)

static const uint8_t k_id[KH_CHAN_ID_LEN] = {'c', 'h', 'a', 'n', '-', 'i', 'd', '!'};

static kh_chan_keys keys_for(kh_chan_cipher cipher, int initiator) {
  kh_chan_keys k;
  memset(&k, 0, sizeof(k));
  k.cipher = cipher;
  k.initiator = initiator;
  memcpy(k.channel_id, k_id, sizeof(k_id));
  /* The initiator sends with 0x00..0x1f, the responder with 0x80..0x9f. */
  for (int i = 0; i < KH_CHAN_KEY_LEN; i++) {
    k.send_key[i] = (uint8_t)((initiator ? 0x00 : 0x80) + i);
    k.recv_key[i] = (uint8_t)((initiator ? 0x80 : 0x00) + i);
  }
  k.can_send = k.can_recv = 1;
  return k;
}

static kh_chan_record *make(kh_chan_cipher cipher, int initiator, uint64_t rekey_after) {
  kh_chan_keys k = keys_for(cipher, initiator);
  kh_error err;
  kh_chan_record *c = kh_chan_record_new(&k, rekey_after, &err);
  ck_assert_msg(c != NULL, "kh_chan_record_new: %s", err.msg);
  return c;
}

/* seal_many appends |n| messages of PT_LEN bytes ("message %d") to |out|;
 * message i then starts at out->data + i * MSG_LEN (when |out| started empty). */
static void seal_many(kh_chan_record *c, int first, int n, kh_buf *out) {
  for (int i = first; i < first + n; i++) {
    char pt[PT_LEN + 1];
    snprintf(pt, sizeof(pt), "message %-16d", i);
    kh_error err;
    ck_assert_msg(kh_chan_record_seal(c, (const uint8_t *)pt, PT_LEN, out, &err), "seal: %s",
                  err.msg);
  }
}

static const uint8_t *nth(const kh_buf *b, int i) {
  return b->data + (size_t)i * MSG_LEN;
}

/* open_code opens one message, returns KH_OK or the error code; on success
 * checks the plaintext is message |i|'s. */
static kh_code open_code(kh_chan_record *c, const uint8_t *msg, size_t len, int i) {
  kh_buf out = KH_BUF_INIT;
  kh_error err;
  kh_code code = KH_OK;
  if (kh_chan_record_open(c, msg, len, &out, &err)) {
    char want[PT_LEN + 1];
    snprintf(want, sizeof(want), "message %-16d", i);
    ck_assert_uint_eq(out.len, PT_LEN);
    ck_assert_mem_eq(out.data, want, PT_LEN);
  } else {
    code = err.code;
    ck_assert_uint_eq(out.len, 0);
  }
  kh_buf_free(&out);
  return code;
}

static void opens(kh_chan_record *c, const kh_buf *b, int i) {
  ck_assert_int_eq(open_code(c, nth(b, i), MSG_LEN, i), KH_OK);
}

static uint32_t header_epoch(const uint8_t *m) {
  return (uint32_t)m[10] << 24 | (uint32_t)m[11] << 16 | (uint32_t)m[12] << 8 | m[13];
}
static uint64_t header_counter(const uint8_t *m) {
  uint64_t v = 0;
  for (int i = 14; i < 22; i++) v = v << 8 | m[i];
  return v;
}

static kh_chan_stats stats(const kh_chan_record *c) {
  kh_chan_stats s;
  kh_chan_record_stats(c, &s);
  return s;
}

/* --- independent computation with OpenSSL EVP ---------------------------- */

static void evp_seal(kh_chan_cipher cipher, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *ad, size_t ad_len, const uint8_t *pt, size_t len, uint8_t *ct,
                     uint8_t tag[16]) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  const EVP_CIPHER *c = cipher == KH_CHAN_AESGCM ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
  int n;
  ck_assert(ctx != NULL);
  ck_assert(EVP_EncryptInit_ex(ctx, c, NULL, NULL, NULL) == 1);
  ck_assert(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1);
  ck_assert(EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1);
  if (ad_len > 0) ck_assert(EVP_EncryptUpdate(ctx, NULL, &n, ad, (int)ad_len) == 1);
  if (len > 0) ck_assert(EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len) == 1);
  ck_assert(EVP_EncryptFinal_ex(ctx, ct + len, &n) == 1);
  ck_assert(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1);
  EVP_CIPHER_CTX_free(ctx);
}

/* Noise's nonce for n: 4 zero bytes, then n little-endian (ChaChaPoly) or
 * big-endian (AESGCM). */
static void noise_nonce(kh_chan_cipher cipher, uint64_t n, uint8_t nonce[12]) {
  memset(nonce, 0, 12);
  for (int i = 0; i < 8; i++)
    nonce[4 + i] = (uint8_t)(cipher == KH_CHAN_AESGCM ? n >> (56 - 8 * i) : n >> (8 * i));
}

/* REKEY(k) per Noise 11.3, straight from EVP. */
static void evp_rekey(kh_chan_cipher cipher, uint8_t key[32]) {
  uint8_t nonce[12], zeros[32] = {0}, ct[32], tag[16];
  noise_nonce(cipher, UINT64_MAX, nonce);
  evp_seal(cipher, key, nonce, NULL, 0, zeros, 32, ct, tag);
  memcpy(key, ct, 32);
}

/* expect_message checks |msg| is exactly header || ENCRYPT(key, counter,
 * header, pt) computed with EVP. */
static void expect_message(kh_chan_cipher cipher, const uint8_t key[32], int initiator,
                           uint32_t epoch, uint64_t counter, const uint8_t *pt, size_t len,
                           const uint8_t *msg, size_t msg_len) {
  uint8_t want[KH_CHAN_OVERHEAD + 64], nonce[12];
  ck_assert_uint_le(len, 64);
  ck_assert_uint_eq(msg_len, KH_CHAN_OVERHEAD + len);
  want[0] = KH_CHAN_VERSION;
  want[1] = initiator ? 1 : 0;
  memcpy(want + 2, k_id, 8);
  for (int i = 0; i < 4; i++) want[10 + i] = (uint8_t)(epoch >> (24 - 8 * i));
  for (int i = 0; i < 8; i++) want[14 + i] = (uint8_t)(counter >> (56 - 8 * i));
  noise_nonce(cipher, counter, nonce);
  evp_seal(cipher, key, nonce, want, KH_CHAN_HEADER_LEN, pt, len, want + KH_CHAN_HEADER_LEN,
           want + KH_CHAN_HEADER_LEN + len);
  ck_assert_mem_eq(msg, want, msg_len);
}

/* --- tests --------------------------------------------------------------- */

START_TEST(test_round_trip_both_ciphers_both_directions) {
  for (int cipher = 0; cipher < 2; cipher++) {
    kh_chan_record *a = make((kh_chan_cipher)cipher, 1, 0), *b = make((kh_chan_cipher)cipher, 0, 0);
    kh_chan_record *ends[2][2] = {{a, b}, {b, a}};
    for (int dir = 0; dir < 2; dir++) {
      kh_chan_record *tx = ends[dir][0], *rx = ends[dir][1];
      static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, KH_CHAN_MAX_PLAINTEXT};
      for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t len = sizes[s];
        uint8_t *pt = malloc(len + 1);
        ck_assert(pt != NULL);
        for (size_t i = 0; i < len; i++) pt[i] = (uint8_t)(i * 7 + s);
        kh_buf wire = KH_BUF_INIT, out = KH_BUF_INIT;
        kh_error err;
        ck_assert(kh_chan_record_seal(tx, pt, len, &wire, &err));
        ck_assert_uint_eq(wire.len, len + KH_CHAN_OVERHEAD);
        ck_assert_uint_eq(wire.data[0], KH_CHAN_VERSION);
        ck_assert_uint_eq(wire.data[1], dir == 0 ? 1 : 0);
        ck_assert_mem_eq(wire.data + 2, k_id, 8);
        ck_assert_uint_eq(header_counter(wire.data), s);
        /* plaintext is appended after what |out| already holds */
        ck_assert(kh_buf_append(&out, "xyz", 3));
        ck_assert_msg(kh_chan_record_open(rx, wire.data, wire.len, &out, &err), "%s", err.msg);
        ck_assert_uint_eq(out.len, 3 + len);
        ck_assert_mem_eq(out.data, "xyz", 3);
        if (len > 0) ck_assert_mem_eq(out.data + 3, pt, len);
        kh_buf_free(&wire), kh_buf_free(&out);
        free(pt);
      }
    }
    /* a NULL plaintext of length 0 into an empty buffer */
    kh_buf wire = KH_BUF_INIT, out = KH_BUF_INIT;
    kh_error err;
    ck_assert(kh_chan_record_seal(a, NULL, 0, &wire, &err));
    ck_assert(kh_chan_record_open(b, wire.data, wire.len, &out, &err));
    ck_assert_uint_eq(out.len, 0);
    kh_buf_free(&wire);
    kh_chan_stats sa = stats(a), sb = stats(b);
    ck_assert_uint_eq(sa.sent, 8);
    ck_assert_uint_eq(sa.opened, 7);
    ck_assert_uint_eq(sb.sent, 7);
    ck_assert_uint_eq(sb.opened, 8);
    ck_assert_uint_eq(sa.rejected + sb.rejected, 0);
    kh_chan_record_free(a);
    kh_chan_record_free(b);
  }
}
END_TEST

START_TEST(test_out_of_order_delivery_opens) {
  for (int cipher = 0; cipher < 2; cipher++) {
    kh_chan_record *tx = make((kh_chan_cipher)cipher, 1, 0),
                   *rx = make((kh_chan_cipher)cipher, 0, 0);
    kh_buf w = KH_BUF_INIT;
    seal_many(tx, 0, 3000, &w);
    /* blocks of 512, each backwards: never more than 511 below the highest */
    for (int blk = 0; blk < 3000; blk += 512)
      for (int i = (blk + 511 < 2999 ? blk + 511 : 2999); i >= blk; i--) opens(rx, &w, i);
    ck_assert_uint_eq(stats(rx).opened, 3000);
    /* a few short-range swaps */
    kh_chan_record *rx2 = make((kh_chan_cipher)cipher, 0, 0);
    static const int order[] = {5, 0, 3, 1, 2, 4, 1023, 6, 1000, 7};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) opens(rx2, &w, order[i]);
    kh_buf_free(&w);
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
    kh_chan_record_free(rx2);
  }
}
END_TEST

START_TEST(test_replay_refused) {
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT;
  seal_many(tx, 0, 10, &w);
  opens(rx, &w, 0);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_REPLAY);
  opens(rx, &w, 5);
  ck_assert_int_eq(open_code(rx, nth(&w, 5), MSG_LEN, 5), KH_ERR_CHANNEL_REPLAY); /* the highest */
  opens(rx, &w, 3);
  ck_assert_int_eq(open_code(rx, nth(&w, 3), MSG_LEN, 3),
                   KH_ERR_CHANNEL_REPLAY); /* in the window */
  ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_REPLAY);
  opens(rx, &w, 4);
  kh_chan_stats s = stats(rx);
  ck_assert_uint_eq(s.opened, 4);
  ck_assert_uint_eq(s.rejected, 4);
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

START_TEST(test_below_window_too_old) {
  kh_chan_record *tx = make(KH_CHAN_AESGCM, 1, 0), *rx = make(KH_CHAN_AESGCM, 0, 0);
  kh_buf w = KH_BUF_INIT;
  seal_many(tx, 0, 5000, &w);
  opens(rx, &w, 1025);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_TOO_OLD);
  ck_assert_int_eq(open_code(rx, nth(&w, 1), MSG_LEN, 1), KH_ERR_CHANNEL_TOO_OLD); /* 1024 below */
  opens(rx, &w, 2);                                                                /* 1023 below */
  ck_assert_int_eq(open_code(rx, nth(&w, 2), MSG_LEN, 2), KH_ERR_CHANNEL_REPLAY);
  /* a jump of more than the window forgets everything below it */
  opens(rx, &w, 4000);
  ck_assert_int_eq(open_code(rx, nth(&w, 2976), MSG_LEN, 2976), KH_ERR_CHANNEL_TOO_OLD);
  ck_assert_int_eq(open_code(rx, nth(&w, 1025), MSG_LEN, 1025), KH_ERR_CHANNEL_TOO_OLD);
  opens(rx, &w, 2977);
  /* a jump of 65 (across a word boundary) keeps what it should */
  opens(rx, &w, 4065);
  ck_assert_int_eq(open_code(rx, nth(&w, 4000), MSG_LEN, 4000), KH_ERR_CHANNEL_REPLAY);
  ck_assert_int_eq(open_code(rx, nth(&w, 2977), MSG_LEN, 2977), KH_ERR_CHANNEL_TOO_OLD);
  opens(rx, &w, 3042); /* exactly 1023 below */
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

/* A random schedule (with duplicates) against a model that remembers every
 * counter opened: the bitmap must agree with it everywhere. */
START_TEST(test_window_matches_a_model) {
  enum { N = 12000 };
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT;
  seal_many(tx, 0, N, &w);
  static uint8_t seen[N];
  memset(seen, 0, sizeof(seen));
  long highest = -1;
  uint32_t x = 12345;
  int frontier = 0, codes[3] = {0, 0, 0};
  for (int step = 0; step < 20000; step++) {
    x = x * 1103515245u + 12345u;
    int r = (int)((x >> 8) % 1400);
    if ((x >> 24) == 0 && frontier < N - 300) frontier += (int)((x >> 4) % 300); /* a jump */
    int i = frontier + 50 - r;
    if (i < 0) i = 0;
    if (i >= N) i = N - 1;
    if (r < 40 && frontier < N - 1) frontier++;
    kh_code want;
    if (highest >= 0 && i <= highest && highest - i >= KH_CHAN_REPLAY_WINDOW)
      want = KH_ERR_CHANNEL_TOO_OLD;
    else if (seen[i])
      want = KH_ERR_CHANNEL_REPLAY;
    else
      want = KH_OK;
    ck_assert_int_eq(open_code(rx, nth(&w, i), MSG_LEN, i), want);
    codes[want == KH_OK ? 0 : want == KH_ERR_CHANNEL_REPLAY ? 1 : 2]++;
    if (want == KH_OK) {
      seen[i] = 1;
      if (i > highest) highest = i;
    }
  }
  ck_assert_int_gt(highest, N / 2); /* the schedule went well past several windows */
  for (int k = 0; k < 3; k++) ck_assert_int_gt(codes[k], 1000); /* and hit every outcome */
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

/* Every single-bit flip of a message is refused with the code its position
 * calls for, and changes nothing: the genuine message and the next one still
 * open afterwards. */
START_TEST(test_bit_flips_refused_state_unchanged) {
  for (int cipher = 0; cipher < 2; cipher++) {
    kh_chan_record *tx = make((kh_chan_cipher)cipher, 1, 0),
                   *rx = make((kh_chan_cipher)cipher, 0, 0);
    kh_buf w = KH_BUF_INIT;
    seal_many(tx, 0, 3, &w);
    opens(rx, &w, 0);
    kh_chan_stats before = stats(rx);
    uint8_t m[MSG_LEN];
    uint64_t flips = 0;
    for (int pos = 0; pos < MSG_LEN; pos++) {
      for (int bit = 0; bit < 8; bit++) {
        memcpy(m, nth(&w, 1), MSG_LEN);
        m[pos] ^= (uint8_t)(1 << bit);
        kh_code want = KH_ERR_CHANNEL_TAMPERED;
        if (pos == 0) want = KH_ERR_PROTOCOL;
        if (pos == 1 && bit == 0) want = KH_ERR_CHANNEL_WRONG;
        if (pos >= 2 && pos < 10) want = KH_ERR_CHANNEL_WRONG;
        if (pos >= 10 && pos < 14 && header_epoch(m) > KH_CHAN_MAX_EPOCH_SKIP)
          want = KH_ERR_CHANNEL_TOO_OLD;
        if (pos >= 14 && pos < 22 && header_counter(m) == 0) want = KH_ERR_CHANNEL_REPLAY;
        ck_assert_msg(open_code(rx, m, MSG_LEN, 1) == want, "cipher %d byte %d bit %d", cipher, pos,
                      bit);
        flips++;
      }
    }
    kh_chan_stats after = stats(rx);
    ck_assert_uint_eq(after.opened, before.opened);
    ck_assert_uint_eq(after.rejected, before.rejected + flips);
    ck_assert_uint_eq(after.recv_epoch, 0);
    opens(rx, &w, 1); /* the genuine original */
    opens(rx, &w, 2); /* and the next */
    ck_assert_uint_eq(stats(rx).recv_epoch, 0);
    kh_buf_free(&w);
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
  }
}
END_TEST

/* A forged message of a later epoch derives keys but commits none of them:
 * the current epoch's messages still open and the epoch does not move. */
START_TEST(test_forged_future_epoch_commits_nothing) {
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT;
  seal_many(tx, 0, 2, &w);
  uint8_t m[MSG_LEN];
  memcpy(m, nth(&w, 1), MSG_LEN);
  m[13] = 3; /* epoch 3 */
  ck_assert_int_eq(open_code(rx, m, MSG_LEN, 1), KH_ERR_CHANNEL_TAMPERED);
  ck_assert_uint_eq(stats(rx).recv_epoch, 0);
  opens(rx, &w, 1);
  opens(rx, &w, 0);
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

START_TEST(test_wrong_channel_and_reflection) {
  kh_chan_keys k = keys_for(KH_CHAN_CHACHAPOLY, 1);
  k.channel_id[7] ^= 0x40;
  kh_error err;
  kh_chan_record *other = kh_chan_record_new(&k, 0, &err); /* same keys, another channel */
  ck_assert(other != NULL);
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT, wo = KH_BUF_INIT;
  seal_many(tx, 0, 2, &w);
  seal_many(other, 0, 1, &wo);
  ck_assert_int_eq(open_code(rx, nth(&wo, 0), MSG_LEN, 0), KH_ERR_CHANNEL_WRONG);
  /* our own message, reflected back: to the sender, and to a second
   * initiator holding the same keys */
  ck_assert_int_eq(open_code(tx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_WRONG);
  kh_chan_record *twin = make(KH_CHAN_CHACHAPOLY, 1, 0);
  ck_assert_int_eq(open_code(twin, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_WRONG);
  /* the responder's messages reflected to the responder */
  kh_buf wr = KH_BUF_INIT;
  seal_many(rx, 0, 1, &wr);
  ck_assert_int_eq(open_code(rx, nth(&wr, 0), MSG_LEN, 0), KH_ERR_CHANNEL_WRONG);
  opens(tx, &wr, 0);
  opens(rx, &w, 0);
  opens(rx, &w, 1);
  ck_assert_uint_eq(stats(rx).rejected, 2);
  kh_buf_free(&w), kh_buf_free(&wo), kh_buf_free(&wr);
  kh_chan_record_free(other);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
  kh_chan_record_free(twin);
}
END_TEST

START_TEST(test_rekey_on_demand_previous_epoch_opens) {
  for (int cipher = 0; cipher < 2; cipher++) {
    kh_chan_record *tx = make((kh_chan_cipher)cipher, 1, 0),
                   *rx = make((kh_chan_cipher)cipher, 0, 0);
    kh_buf w = KH_BUF_INIT;
    kh_error err;
    seal_many(tx, 0, 2, &w); /* 0, 1: epoch 0 */
    ck_assert(kh_chan_record_rekey(tx, &err));
    ck_assert_uint_eq(stats(tx).send_epoch, 1);
    seal_many(tx, 2, 2, &w); /* 2, 3: epoch 1 */
    ck_assert(kh_chan_record_rekey(tx, &err));
    ck_assert(kh_chan_record_rekey(tx, &err));
    seal_many(tx, 4, 2, &w); /* 4, 5: epoch 3 */
    static const uint32_t epochs[6] = {0, 0, 1, 1, 3, 3};
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(header_epoch(nth(&w, i)), epochs[i]);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(header_counter(nth(&w, i)), i);
    opens(rx, &w, 2); /* derives epoch 1 */
    ck_assert_uint_eq(stats(rx).recv_epoch, 1);
    opens(rx, &w, 0); /* the previous epoch still opens */
    opens(rx, &w, 4); /* skips epoch 2: 3 is newest, 2 the one before */
    ck_assert_uint_eq(stats(rx).recv_epoch, 3);
    ck_assert_int_eq(open_code(rx, nth(&w, 1), MSG_LEN, 1), KH_ERR_CHANNEL_TOO_OLD);
    ck_assert_int_eq(open_code(rx, nth(&w, 3), MSG_LEN, 3), KH_ERR_CHANNEL_TOO_OLD);
    opens(rx, &w, 5);
    ck_assert_int_eq(open_code(rx, nth(&w, 4), MSG_LEN, 4), KH_ERR_CHANNEL_REPLAY);
    kh_buf_free(&w);
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
  }
}
END_TEST

START_TEST(test_auto_rekey_after_n_messages) {
  for (int cipher = 0; cipher < 2; cipher++) {
    kh_chan_record *tx = make((kh_chan_cipher)cipher, 1, 3),
                   *rx = make((kh_chan_cipher)cipher, 0, 3);
    kh_buf w = KH_BUF_INIT;
    seal_many(tx, 0, 10, &w);
    for (int i = 0; i < 10; i++) {
      ck_assert_uint_eq(header_epoch(nth(&w, i)), (uint32_t)(i / 3));
      ck_assert_uint_eq(header_counter(nth(&w, i)), i);
    }
    ck_assert_uint_eq(stats(tx).send_epoch, 3);
    /* epoch 1's messages, then one of epoch 2, then the rest of epoch 1 */
    opens(rx, &w, 3);
    opens(rx, &w, 6);
    opens(rx, &w, 4); /* epoch 1: the one before 2 */
    ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_TOO_OLD);
    opens(rx, &w, 9);
    opens(rx, &w, 8); /* epoch 2: the one before 3 */
    ck_assert_int_eq(open_code(rx, nth(&w, 5), MSG_LEN, 5), KH_ERR_CHANNEL_TOO_OLD);
    kh_chan_stats s = stats(rx);
    ck_assert_uint_eq(s.recv_epoch, 3);
    ck_assert_uint_eq(s.opened, 5);
    ck_assert_uint_eq(s.rejected, 2);
    /* the other direction rekeys on its own count */
    kh_buf back = KH_BUF_INIT;
    seal_many(rx, 0, 4, &back);
    ck_assert_uint_eq(header_epoch(nth(&back, 3)), 1);
    for (int i = 0; i < 4; i++) opens(tx, &back, i);
    kh_buf_free(&w), kh_buf_free(&back);
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
  }
}
END_TEST

START_TEST(test_epochs_too_far_ahead) {
  kh_error err;
  for (int skip = KH_CHAN_MAX_EPOCH_SKIP; skip <= KH_CHAN_MAX_EPOCH_SKIP + 1; skip++) {
    kh_chan_record *tx = make(KH_CHAN_AESGCM, 1, 0), *rx = make(KH_CHAN_AESGCM, 0, 0);
    kh_buf w = KH_BUF_INIT;
    seal_many(tx, 0, 1, &w);
    for (int i = 0; i < skip; i++) ck_assert(kh_chan_record_rekey(tx, &err));
    seal_many(tx, 1, 2, &w);
    ck_assert_uint_eq(header_epoch(nth(&w, 1)), (uint32_t)skip);
    if (skip <= KH_CHAN_MAX_EPOCH_SKIP) {
      opens(rx, &w, 1);
      ck_assert_uint_eq(stats(rx).recv_epoch, (uint32_t)skip);
      ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN, 0), KH_ERR_CHANNEL_TOO_OLD);
    } else {
      ck_assert_int_eq(open_code(rx, nth(&w, 1), MSG_LEN, 1), KH_ERR_CHANNEL_TOO_OLD);
      ck_assert_uint_eq(stats(rx).recv_epoch, 0);
      opens(rx, &w, 0); /* nothing moved */
    }
    kh_buf_free(&w);
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
  }
  /* steps of at most the limit get there */
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT;
  for (int step = 0; step < 4; step++) {
    for (int i = 0; i < KH_CHAN_MAX_EPOCH_SKIP; i++) ck_assert(kh_chan_record_rekey(tx, &err));
    seal_many(tx, step, 1, &w);
    opens(rx, &w, step);
  }
  ck_assert_uint_eq(stats(rx).recv_epoch, 4 * KH_CHAN_MAX_EPOCH_SKIP);
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

START_TEST(test_lengths) {
  kh_chan_record *tx = make(KH_CHAN_CHACHAPOLY, 1, 0), *rx = make(KH_CHAN_CHACHAPOLY, 0, 0);
  kh_buf w = KH_BUF_INIT;
  kh_error err;
  seal_many(tx, 0, 2, &w);
  /* truncated below the overhead: PROTOCOL; above it, the tag is wrong */
  ck_assert_int_eq(open_code(rx, nth(&w, 0), 0, 0), KH_ERR_PROTOCOL);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), 1, 0), KH_ERR_PROTOCOL);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), KH_CHAN_OVERHEAD - 1, 0), KH_ERR_PROTOCOL);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), KH_CHAN_OVERHEAD, 0), KH_ERR_CHANNEL_TAMPERED);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN - 1, 0), KH_ERR_CHANNEL_TAMPERED);
  ck_assert_int_eq(open_code(rx, nth(&w, 0), MSG_LEN + 1, 0), KH_ERR_CHANNEL_TAMPERED); /* extra */
  opens(rx, &w, 0);
  /* oversized */
  size_t big = (size_t)KH_CHAN_MAX_PLAINTEXT + KH_CHAN_OVERHEAD + 1;
  uint8_t *m = calloc(1, big);
  ck_assert(m != NULL);
  memcpy(m, nth(&w, 1), KH_CHAN_HEADER_LEN);
  ck_assert_int_eq(open_code(rx, m, big, 1), KH_ERR_RECORD_OVERFLOW);
  ck_assert_int_eq(open_code(rx, m, big - 1, 1), KH_ERR_CHANNEL_TAMPERED); /* at the limit */
  m[0] = 2; /* the version is looked at first */
  ck_assert_int_eq(open_code(rx, m, big, 1), KH_ERR_PROTOCOL);
  ck_assert_int_eq(open_code(rx, m, MSG_LEN, 1), KH_ERR_PROTOCOL);
  kh_buf out = KH_BUF_INIT;
  ck_assert(!kh_chan_record_seal(tx, m, KH_CHAN_MAX_PLAINTEXT + 1, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(out.len, 0);
  free(m);
  opens(rx, &w, 1);
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
}
END_TEST

START_TEST(test_one_way_sides_and_bad_keys) {
  kh_error err;
  kh_chan_keys k = keys_for(KH_CHAN_CHACHAPOLY, 1);
  k.can_recv = 0;
  memset(k.recv_key, 0, sizeof(k.recv_key));
  kh_chan_record *tx = kh_chan_record_new(&k, 0, &err);
  k = keys_for(KH_CHAN_CHACHAPOLY, 0);
  k.can_send = 0;
  memset(k.send_key, 0, sizeof(k.send_key));
  kh_chan_record *rx = kh_chan_record_new(&k, 0, &err);
  ck_assert(tx != NULL && rx != NULL);
  kh_buf w = KH_BUF_INIT, out = KH_BUF_INIT;
  seal_many(tx, 0, 1, &w);
  opens(rx, &w, 0);
  ck_assert(!kh_chan_record_seal(rx, (const uint8_t *)"x", 1, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(!kh_chan_record_rekey(rx, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(!kh_chan_record_open(tx, w.data, w.len, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_uint_eq(out.len, 0);
  kh_buf_free(&w);
  kh_chan_record_free(tx);
  kh_chan_record_free(rx);
  kh_chan_record_free(NULL);

  k = keys_for(KH_CHAN_CHACHAPOLY, 1);
  k.cipher = (kh_chan_cipher)7;
  ck_assert(kh_chan_record_new(&k, 0, &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
}
END_TEST

/* The wire bytes, computed independently: epoch 0 under the split key,
 * epochs 1 and 2 under REKEY() done with EVP, each message's nonce Noise's
 * encoding of its counter (counter 1: ChaChaPoly 00000000 01000000 00000000,
 * AESGCM 00000000 00000000 00000001). */
START_TEST(test_known_answers_against_evp) {
  for (int ci = 0; ci < 2; ci++) {
    kh_chan_cipher cipher = (kh_chan_cipher)ci;
    kh_chan_keys k = keys_for(cipher, 1);
    uint8_t key[32];
    memcpy(key, k.send_key, 32);
    kh_chan_record *tx = make(cipher, 1, 0), *rx = make(cipher, 0, 0);
    static const char *const pts[] = {"first", "second message", "", "after two rekeys"};
    kh_buf w[4] = {KH_BUF_INIT, KH_BUF_INIT, KH_BUF_INIT, KH_BUF_INIT};
    kh_error err;
    for (int i = 0; i < 4; i++) {
      if (i == 2 || i == 3) ck_assert(kh_chan_record_rekey(tx, &err));
      ck_assert(kh_chan_record_seal(tx, (const uint8_t *)pts[i], strlen(pts[i]), &w[i], &err));
    }
    expect_message(cipher, key, 1, 0, 0, (const uint8_t *)pts[0], strlen(pts[0]), w[0].data,
                   w[0].len);
    expect_message(cipher, key, 1, 0, 1, (const uint8_t *)pts[1], strlen(pts[1]), w[1].data,
                   w[1].len);
    evp_rekey(cipher, key);
    expect_message(cipher, key, 1, 1, 2, (const uint8_t *)pts[2], 0, w[2].data, w[2].len);
    evp_rekey(cipher, key);
    expect_message(cipher, key, 1, 2, 3, (const uint8_t *)pts[3], strlen(pts[3]), w[3].data,
                   w[3].len);
    /* epochs 2 and 1 open; epoch 0 is two before epoch 2: its key is gone */
    for (int i = 3; i >= 0; i--) {
      kh_buf out = KH_BUF_INIT;
      int ok = kh_chan_record_open(rx, w[i].data, w[i].len, &out, &err);
      ck_assert_msg(ok == (i >= 2), "message %d", i);
      if (!ok) ck_assert_int_eq(err.code, KH_ERR_CHANNEL_TOO_OLD);
      ck_assert_uint_eq(out.len, ok ? strlen(pts[i]) : 0);
      if (out.len > 0) ck_assert_mem_eq(out.data, pts[i], out.len);
      kh_buf_free(&out);
      kh_buf_free(&w[i]);
    }
    kh_chan_record_free(tx);
    kh_chan_record_free(rx);
  }
}
END_TEST

/* Fixed values for key 0x00..0x1f, computed outside OpenSSL (libsodium's
 * crypto_aead_chacha20poly1305_ietf_encrypt and crypto_aead_aes256gcm_encrypt,
 * as the sidecar's Noise engine does, and Python's cryptography): REKEY(k),
 * which the EVP computation must give, and the initiator's message at
 * counter 1 ("second message"), which the record must give. */
START_TEST(test_fixed_vectors) {
  static const char *const rekey_hex[2] = {
      /* ChaChaPoly */ "50835543a205b22c9323f2022bc4f67d838f90e61d5ccf33c4513e01f85b5042",
      /* AESGCM */ "0201675c87335949b909793da5bb4d92fcf6d44b92a6e0792b6ae48b1881259d",
  };
  static const char *const msg1_hex[2] = {
      /* ChaChaPoly, nonce 00000000 01000000 00000000 */
      "01016368616e2d696421000000000000000000000001"
      "ec329030db4e8f754cc5dd3d35f05b4a8225891ec9b34450339be07261f7",
      /* AESGCM, nonce 00000000 00000000 00000001 */
      "01016368616e2d696421000000000000000000000001"
      "66b3dc932a9010736b5d22588bc30127c81e77152eff8362d336cd985bdd",
  };
  for (int ci = 0; ci < 2; ci++) {
    uint8_t key[32], want[32], want_msg[KH_CHAN_OVERHEAD + 14];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
    evp_rekey((kh_chan_cipher)ci, key);
    ck_assert_uint_eq(kh_unhex(rekey_hex[ci], want, sizeof(want)), 32);
    ck_assert_mem_eq(key, want, 32);

    kh_chan_record *tx = make((kh_chan_cipher)ci, 1, 0);
    kh_buf w = KH_BUF_INIT;
    kh_error err;
    ck_assert(kh_chan_record_seal(tx, (const uint8_t *)"first", 5, &w, &err));
    kh_buf_reset(&w);
    ck_assert(kh_chan_record_seal(tx, (const uint8_t *)"second message", 14, &w, &err));
    ck_assert_uint_eq(kh_unhex(msg1_hex[ci], want_msg, sizeof(want_msg)), sizeof(want_msg));
    ck_assert_uint_eq(w.len, sizeof(want_msg));
    ck_assert_mem_eq(w.data, want_msg, sizeof(want_msg));
    kh_buf_free(&w);
    kh_chan_record_free(tx);
  }
  /* the nonce 2^64-1 is all ones in both encodings */
  uint8_t a[12], b[12];
  noise_nonce(KH_CHAN_CHACHAPOLY, UINT64_MAX, a);
  noise_nonce(KH_CHAN_AESGCM, UINT64_MAX, b);
  ck_assert_uint_eq(kh_unhex("00000000ffffffffffffffff", b, sizeof(b)), 12);
  ck_assert_mem_eq(a, b, 12);
  noise_nonce(KH_CHAN_CHACHAPOLY, 1, a);
  ck_assert_uint_eq(kh_unhex("000000000100000000000000", b, sizeof(b)), 12);
  ck_assert_mem_eq(a, b, 12);
}
END_TEST

int main(void) {
  Suite *s = suite_create("channel_record");
  TCase *tc = tcase_create("channel_record");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_round_trip_both_ciphers_both_directions);
  tcase_add_test(tc, test_out_of_order_delivery_opens);
  tcase_add_test(tc, test_replay_refused);
  tcase_add_test(tc, test_below_window_too_old);
  tcase_add_test(tc, test_window_matches_a_model);
  tcase_add_test(tc, test_bit_flips_refused_state_unchanged);
  tcase_add_test(tc, test_forged_future_epoch_commits_nothing);
  tcase_add_test(tc, test_wrong_channel_and_reflection);
  tcase_add_test(tc, test_rekey_on_demand_previous_epoch_opens);
  tcase_add_test(tc, test_auto_rekey_after_n_messages);
  tcase_add_test(tc, test_epochs_too_far_ahead);
  tcase_add_test(tc, test_lengths);
  tcase_add_test(tc, test_one_way_sides_and_bad_keys);
  tcase_add_test(tc, test_known_answers_against_evp);
  tcase_add_test(tc, test_fixed_vectors);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

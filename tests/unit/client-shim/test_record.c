/* The shim's TLS 1.3 record layer: two record objects keyed with mirrored
 * secrets talk to each other in memory. */
#include <check.h>

#include "testutil.h"
#include <string.h>

#include "kh_secret.h"
#include "record.h"

typedef struct {
  kh_record *a, *b; /* a writes with s1, b reads with s1; and back with s2 */
  int tickets;
  size_t ticket_len;
} pair;

static void on_ticket(void *arg, const uint8_t *msg, size_t len) {
  pair *p = arg;
  ck_assert_uint_eq(msg[0], 4);
  p->tickets++;
  p->ticket_len = len;
}

static void make_pair(pair *p, kh_suite suite, uint64_t a_write_seq) {
  /* a reads with s2 and writes with s1; b the other way round */
  kh_traffic_keys ka = {KH_TLS_VERSION_1_3, suite, kh_suite_secret_len(suite), {0}, {0}, 0, 0};
  for (int i = 0; i < KH_MAX_SECRET_LEN; i++)
    ka.out_secret[i] = (uint8_t)i, ka.in_secret[i] = (uint8_t)(0x80 + i);
  ka.out_sequence = a_write_seq;
  kh_traffic_keys kb = ka;
  memcpy(kb.in_secret, ka.out_secret, sizeof(kb.in_secret));
  memcpy(kb.out_secret, ka.in_secret, sizeof(kb.out_secret));
  kb.in_sequence = a_write_seq;
  kb.out_sequence = 0;
  kh_error err;
  memset(p, 0, sizeof(*p));
  p->a = kh_record_new(&ka, on_ticket, p, &err);
  ck_assert_msg(p->a != NULL, "%s", err.msg);
  p->b = kh_record_new(&kb, on_ticket, p, &err);
  ck_assert_msg(p->b != NULL, "%s", err.msg);
  kh_wipe(&ka, sizeof(ka)), kh_wipe(&kb, sizeof(kb));
}

static void free_pair(pair *p) {
  kh_record_free(p->a);
  kh_record_free(p->b);
}

/* deliver opens everything in |wire| at |to|; returns kh_record_open's result. */
static int deliver(kh_record *to, kh_buf *wire, kh_buf *app, kh_buf *back, kh_error *err) {
  size_t used = 0;
  int ok = kh_record_open(to, wire->data, wire->len, &used, app, back, err);
  kh_buf_consume(wire, used);
  return ok;
}

START_TEST(test_round_trip_each_suite) {
  for (int s = 0; s < KH_SUITE_COUNT; s++) {
    pair p;
    make_pair(&p, (kh_suite)s, 0);
    kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
    kh_error err;
    ck_assert(
        kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"hello", 5, &wire, &err));
    ck_assert_uint_eq(wire.len, 5 + 5 + 1 + 16);
    ck_assert_uint_eq(wire.data[0], 23);
    ck_assert(deliver(p.b, &wire, &app, &back, &err));
    ck_assert_uint_eq(app.len, 5);
    ck_assert_mem_eq(app.data, "hello", 5);
    ck_assert_uint_eq(wire.len, 0);
    ck_assert_uint_eq(kh_record_read_seq(p.b), 1);
    /* and the other direction */
    kh_buf_reset(&app);
    ck_assert(kh_record_seal(p.b, KH_CT_APPLICATION_DATA, (const uint8_t *)"back", 4, &wire, &err));
    ck_assert(deliver(p.a, &wire, &app, &back, &err));
    ck_assert_mem_eq(app.data, "back", 4);
    kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
    free_pair(&p);
  }
}
END_TEST

START_TEST(test_large_write_splits_at_2_14) {
  pair p;
  make_pair(&p, KH_SUITE_AES_256_GCM_SHA384, 0);
  static uint8_t big[40000];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (uint8_t)(i * 7);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, big, sizeof(big), &wire, &err));
  ck_assert_uint_eq(kh_record_write_seq(p.a), 3); /* 16384 + 16384 + 7232 */
  ck_assert_uint_eq(wire.len, sizeof(big) + 3 * (5 + 1 + 16));
  ck_assert(deliver(p.b, &wire, &app, &back, &err));
  ck_assert_uint_eq(app.len, sizeof(big));
  ck_assert_mem_eq(app.data, big, sizeof(big));
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_byte_at_a_time_and_truncation) {
  pair p;
  make_pair(&p, KH_SUITE_CHACHA20_POLY1305_SHA256, 7);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"abcdef", 6, &wire, &err));
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"ghi", 3, &wire, &err));
  kh_buf pending = KH_BUF_INIT;
  for (size_t i = 0; i < wire.len; i++) {
    ck_assert(kh_buf_append(&pending, &wire.data[i], 1));
    size_t used;
    ck_assert_msg(kh_record_open(p.b, pending.data, pending.len, &used, &app, &back, &err), "%s",
                  err.msg);
    kh_buf_consume(&pending, used);
  }
  ck_assert_uint_eq(app.len, 9);
  ck_assert_mem_eq(app.data, "abcdefghi", 9);
  ck_assert_uint_eq(pending.len, 0);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back), kh_buf_free(&pending);
  free_pair(&p);
}
END_TEST

START_TEST(test_tampered_record_fails_with_alert) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"secret", 6, &wire, &err));
  wire.data[7] ^= 1;
  ck_assert(!deliver(p.b, &wire, &app, &back, &err));
  ck_assert_int_eq(err.code, KH_ERR_DECRYPT);
  ck_assert_uint_eq(app.len, 0);
  ck_assert_uint_gt(back.len, 0); /* bad_record_mac alert for the peer */
  kh_buf_reset(&app);
  ck_assert(deliver(p.a, &back, &app, &wire, &err) == 0);
  ck_assert_int_eq(err.code, KH_ERR_PEER_ALERT);
  ck_assert_msg(strstr(err.msg, "bad_record_mac") != NULL, "%s", err.msg);
  /* the failed record layer refuses further use */
  ck_assert(!kh_record_seal(p.b, KH_CT_APPLICATION_DATA, (const uint8_t *)"x", 1, &wire, &err));
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_oversize_record_rejected) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  uint8_t hdr[5] = {23, 3, 3, (16384 + 257) >> 8, (16384 + 257) & 0xff};
  kh_buf app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  size_t used;
  ck_assert(!kh_record_open(p.b, hdr, sizeof(hdr), &used, &app, &back, &err));
  ck_assert_int_eq(err.code, KH_ERR_RECORD_OVERFLOW);
  kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

/* seal_inner seals raw inner plaintext (content || type || padding) by
 * sealing it as type |last| with the layer itself: the type byte is |last|. */
START_TEST(test_padding_stripped_and_empty_inner_rejected) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  /* "hi" || 23 || 0 0 0: sealed as content "hi\x17\0\0" with type 0 */
  const uint8_t padded[] = {'h', 'i', 23, 0, 0};
  ck_assert(kh_record_seal(p.a, 0, padded, sizeof(padded), &wire, &err));
  ck_assert_msg(deliver(p.b, &wire, &app, &back, &err), "%s", err.msg);
  ck_assert_uint_eq(app.len, 2);
  ck_assert_mem_eq(app.data, "hi", 2);
  /* all zeros: no content type at all */
  const uint8_t zeros[] = {0, 0, 0};
  ck_assert(kh_record_seal(p.a, 0, zeros, sizeof(zeros), &wire, &err));
  ck_assert(!deliver(p.b, &wire, &app, &back, &err));
  ck_assert_int_eq(err.code, KH_ERR_PROTOCOL);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_key_update_requested_is_answered) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT, junk = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_key_update(p.a, 1, &wire, &err));
  ck_assert_uint_eq(kh_record_write_seq(p.a), 0); /* new epoch */
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"after", 5, &wire, &err));
  ck_assert_msg(deliver(p.b, &wire, &app, &back, &err), "%s", err.msg);
  ck_assert_mem_eq(app.data, "after", 5);
  ck_assert_uint_gt(back.len, 0); /* b's KeyUpdate(update_not_requested) */
  ck_assert(kh_record_seal(p.b, KH_CT_APPLICATION_DATA, (const uint8_t *)"reply", 5, &back, &err));
  kh_buf_reset(&app);
  ck_assert_msg(deliver(p.a, &back, &app, &junk, &err), "%s", err.msg);
  ck_assert_mem_eq(app.data, "reply", 5);
  ck_assert_uint_eq(junk.len, 0); /* not requested: a does not answer */
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back), kh_buf_free(&junk);
  free_pair(&p);
}
END_TEST

START_TEST(test_ticket_accepted_unknown_message_rejected) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  const uint8_t nst[] = {4, 0, 0, 3, 1, 2, 3};
  /* split across two records */
  ck_assert(kh_record_seal(p.a, KH_CT_HANDSHAKE, nst, 3, &wire, &err));
  ck_assert(kh_record_seal(p.a, KH_CT_HANDSHAKE, nst + 3, 4, &wire, &err));
  ck_assert_msg(deliver(p.b, &wire, &app, &back, &err), "%s", err.msg);
  ck_assert_int_eq(p.tickets, 1);
  ck_assert_uint_eq(p.ticket_len, sizeof(nst));
  const uint8_t finished[] = {20, 0, 0, 1, 0};
  ck_assert(kh_record_seal(p.a, KH_CT_HANDSHAKE, finished, sizeof(finished), &wire, &err));
  ck_assert(!deliver(p.b, &wire, &app, &back, &err));
  ck_assert_int_eq(err.code, KH_ERR_PROTOCOL);
  ck_assert_uint_gt(back.len, 0); /* unexpected_message alert */
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_close_notify_and_alerts) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_close(p.a, &wire, &err));
  ck_assert(!kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"x", 1, &wire, &err));
  ck_assert_int_eq(err.code, KH_ERR_CLOSED);
  ck_assert(deliver(p.b, &wire, &app, &back, &err));
  ck_assert(kh_record_peer_closed(p.b));
  /* a fatal alert from the peer */
  const uint8_t alert[] = {2, 48};
  ck_assert(kh_record_seal(p.b, KH_CT_ALERT, alert, 2, &back, &err));
  ck_assert(!deliver(p.a, &back, &app, &wire, &err));
  ck_assert_int_eq(err.code, KH_ERR_PEER_ALERT);
  ck_assert_msg(strstr(err.msg, "unknown_ca") != NULL, "%s", err.msg);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_ccs_after_handshake_refused) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 0);
  const uint8_t ccs[] = {20, 3, 3, 0, 1, 1};
  kh_buf app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  size_t used;
  ck_assert(!kh_record_open(p.b, ccs, sizeof(ccs), &used, &app, &back, &err));
  ck_assert_int_eq(err.code, KH_ERR_PROTOCOL);
  ck_assert_msg(strstr(err.msg, "ChangeCipherSpec") != NULL, "%s", err.msg);
  kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_sequence_overflow_refused) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, UINT64_MAX - 1);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"last", 4, &wire, &err));
  ck_assert(
      !kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"one more", 8, &wire, &err));
  ck_assert_int_eq(err.code, KH_ERR_SEQ_OVERFLOW);
  ck_assert(deliver(p.b, &wire, &app, &back, &err)); /* the last one still opens */
  ck_assert_mem_eq(app.data, "last", 4);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

START_TEST(test_wrong_secret_length_rejected) {
  kh_traffic_keys k = {KH_TLS_VERSION_1_3, KH_SUITE_AES_256_GCM_SHA384, 32, {0}, {0}, 0, 0};
  kh_error err;
  ck_assert(kh_record_new(&k, NULL, NULL, &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(err.msg, "secret length 32 does not fit TLS_AES_256_GCM_SHA384");
  k.suite = (kh_suite)KH_SUITE_COUNT;
  ck_assert(kh_record_new(&k, NULL, NULL, &err) == NULL);
}
END_TEST

START_TEST(test_version_other_than_1_3_rejected) {
  kh_traffic_keys k = {0x0303, KH_SUITE_AES_128_GCM_SHA256, 32, {0}, {0}, 0, 0};
  kh_error err;
  ck_assert(kh_record_new(&k, NULL, NULL, &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(err.msg, "traffic keys for TLS version 0x0303, not 1.3");
}
END_TEST

/* The record layer starts at the hand-off's sequence numbers: a record b
 * sealed at write sequence 5 opens only at a reader starting at 5. */
START_TEST(test_starts_at_the_handed_off_sequence_numbers) {
  pair p;
  make_pair(&p, KH_SUITE_AES_128_GCM_SHA256, 5);
  ck_assert_uint_eq(kh_record_write_seq(p.a), 5);
  ck_assert_uint_eq(kh_record_read_seq(p.b), 5);
  ck_assert_uint_eq(kh_record_write_seq(p.b), 0);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_record_seal(p.a, KH_CT_APPLICATION_DATA, (const uint8_t *)"x", 1, &wire, &err));
  ck_assert(deliver(p.b, &wire, &app, &back, &err));
  ck_assert_uint_eq(kh_record_read_seq(p.b), 6);
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  free_pair(&p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("record");
  TCase *tc = tcase_create("record");
  tcase_add_test(tc, test_round_trip_each_suite);
  tcase_add_test(tc, test_large_write_splits_at_2_14);
  tcase_add_test(tc, test_byte_at_a_time_and_truncation);
  tcase_add_test(tc, test_tampered_record_fails_with_alert);
  tcase_add_test(tc, test_oversize_record_rejected);
  tcase_add_test(tc, test_padding_stripped_and_empty_inner_rejected);
  tcase_add_test(tc, test_key_update_requested_is_answered);
  tcase_add_test(tc, test_ticket_accepted_unknown_message_rejected);
  tcase_add_test(tc, test_close_notify_and_alerts);
  tcase_add_test(tc, test_ccs_after_handshake_refused);
  tcase_add_test(tc, test_sequence_overflow_refused);
  tcase_add_test(tc, test_wrong_secret_length_rejected);
  tcase_add_test(tc, test_version_other_than_1_3_rejected);
  tcase_add_test(tc, test_starts_at_the_handed_off_sequence_numbers);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

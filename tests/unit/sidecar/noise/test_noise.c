/* sidecar/noise: the engine beyond the vectors (tests/tools/noise_vectors
 * runs cacophony's): handshakes with fresh keys agree on the hash and the
 * split keys, the two-step write shares the payload hash with the reader,
 * every misuse and every bad message has its error and kills the state,
 * names parse strictly, and the transport cipher states rekey in step. */
#include <check.h>

#include "noise.h"
#include "testutil.h"

static void keypair(uint8_t priv[32], uint8_t pub[32]) {
  kh_error err;
  ck_assert(kh_noise_keypair(priv, pub, &err));
}

/* Two sides of |name| with static keys where the pattern wants them. */
static void pair(const char *name, kh_noise **i, kh_noise **r) {
  kh_error err;
  uint8_t is[32], ip[32], rs[32], rp[32], psk[32];
  keypair(is, ip);
  keypair(rs, rp);
  memset(psk, 0x5a, sizeof(psk));
  *i = kh_noise_new(name, 1, &err);
  *r = kh_noise_new(name, 0, &err);
  ck_assert_ptr_nonnull(*i);
  ck_assert_ptr_nonnull(*r);
  if (kh_noise_needs_static(*i)) ck_assert(kh_noise_set_static(*i, is, &err));
  if (kh_noise_needs_static(*r)) ck_assert(kh_noise_set_static(*r, rs, &err));
  if (kh_noise_needs_remote_static(*i)) ck_assert(kh_noise_set_remote_static(*i, rp, &err));
  if (kh_noise_needs_remote_static(*r)) ck_assert(kh_noise_set_remote_static(*r, ip, &err));
  for (size_t k = 0; k < kh_noise_psk_count(*i); k++) {
    ck_assert(kh_noise_add_psk(*i, psk, &err));
    ck_assert(kh_noise_add_psk(*r, psk, &err));
  }
}

/* Runs the handshake to the end, |from| writing first. */
static void run(kh_noise *i, kh_noise *r) {
  kh_error err;
  kh_buf msg = KH_BUF_INIT, pl = KH_BUF_INIT;
  for (int step = 0; step < 8 && !(kh_noise_done(i) && kh_noise_done(r)); step++) {
    kh_noise *w = kh_noise_my_turn(i) ? i : r, *rd = w == i ? r : i;
    kh_buf_reset(&msg);
    kh_buf_reset(&pl);
    ck_assert(kh_noise_write_message(w, (const uint8_t *)"hi", 2, &msg, &err));
    ck_assert_msg(kh_noise_read_message(rd, msg.data, msg.len, &pl, &err), "%s", err.msg);
    ck_assert_uint_eq(pl.len, 2);
  }
  ck_assert(kh_noise_done(i) && kh_noise_done(r));
  kh_buf_free(&msg);
  kh_buf_free(&pl);
}

START_TEST(test_patterns_agree) {
  static const char *const names[] = {
      "Noise_XX_25519_ChaChaPoly_SHA256",     "Noise_IK_25519_AESGCM_BLAKE2b",
      "Noise_XXpsk3_25519_ChaChaPoly_SHA512", "Noise_N_25519_ChaChaPoly_SHA256",
      "Noise_K1X1_25519_ChaChaPoly_BLAKE2b",  "Noise_NNpsk0+psk2_25519_ChaChaPoly_SHA256",
  };
  kh_error err;
  for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
    kh_noise *i, *r;
    pair(names[t], &i, &r);
    run(i, r);
    size_t hi, hr;
    const uint8_t *h1 = kh_noise_handshake_hash(i, &hi), *h2 = kh_noise_handshake_hash(r, &hr);
    ck_assert_uint_eq(hi, hr);
    ck_assert_mem_eq(h1, h2, hi);
    kh_noise_cipherstate a[2], b[2];
    ck_assert(kh_noise_split(i, &a[0], &a[1], &err));
    ck_assert(kh_noise_split(r, &b[0], &b[1], &err));
    ck_assert_mem_eq(a[0].k, b[0].k, 32);
    ck_assert_mem_eq(a[1].k, b[1].k, 32);
    kh_buf ct = KH_BUF_INIT, pt = KH_BUF_INIT;
    ck_assert(kh_noise_encrypt(&a[0], NULL, 0, (const uint8_t *)"data", 4, &ct, &err));
    ck_assert(kh_noise_decrypt(&b[0], NULL, 0, ct.data, ct.len, &pt, &err));
    ck_assert_mem_eq(pt.data, "data", 4);
    /* Rekeyed on one side only: nothing opens; on both: it does again. */
    kh_noise_rekey(&a[0]);
    kh_buf_reset(&ct);
    ck_assert(kh_noise_encrypt(&a[0], NULL, 0, (const uint8_t *)"more", 4, &ct, &err));
    kh_noise_cipherstate stale = b[0];
    ck_assert(!kh_noise_decrypt(&stale, NULL, 0, ct.data, ct.len, &pt, &err));
    ck_assert_int_eq(err.code, KH_ERR_DECRYPT);
    kh_noise_rekey(&b[0]);
    ck_assert(kh_noise_decrypt(&b[0], NULL, 0, ct.data, ct.len, &pt, &err));
    if (kh_noise_is_one_way(i)) {
      uint8_t zero[32] = {0};
      ck_assert_mem_eq(a[1].k, zero, 32);
    }
    kh_buf_free(&ct);
    kh_buf_free(&pt);
    kh_noise_free(i);
    kh_noise_free(r);
  }
}
END_TEST

START_TEST(test_two_step_write_shares_the_payload_hash) {
  kh_noise *i, *r;
  kh_error err;
  pair("Noise_XX_25519_ChaChaPoly_SHA256", &i, &r);
  kh_buf m = KH_BUF_INIT, pl = KH_BUF_INIT;
  ck_assert(kh_noise_write_message(i, NULL, 0, &m, &err));
  ck_assert(kh_noise_read_message(r, m.data, m.len, &pl, &err));
  kh_buf_reset(&m);
  ck_assert(kh_noise_write_tokens(r, &m, &err));
  size_t len;
  uint8_t before[64];
  const uint8_t *h = kh_noise_handshake_hash(r, &len);
  memcpy(before, h, len);
  /* The payload before the tokens, or tokens twice, is refused. */
  ck_assert(!kh_noise_write_tokens(r, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(kh_noise_write_payload(r, (const uint8_t *)"bound", 5, &m, &err));
  ck_assert_mem_eq(kh_noise_payload_hash(r, &len), before, len);
  ck_assert(kh_noise_read_message(i, m.data, m.len, &pl, &err));
  ck_assert_mem_eq(kh_noise_payload_hash(i, &len), before, len);
  ck_assert_ptr_nonnull(kh_noise_remote_static(i));
  ck_assert_mem_eq(kh_noise_remote_static(i), kh_noise_local_static(r), 32);
  kh_buf_free(&m);
  kh_buf_free(&pl);
  kh_noise_free(i);
  kh_noise_free(r);
}
END_TEST

START_TEST(test_bad_messages_kill_the_state) {
  kh_error err;
  for (int what = 0; what < 3; what++) {
    kh_noise *i, *r;
    pair("Noise_XX_25519_ChaChaPoly_SHA256", &i, &r);
    kh_buf m = KH_BUF_INIT, pl = KH_BUF_INIT;
    ck_assert(kh_noise_write_message(i, NULL, 0, &m, &err));
    ck_assert(kh_noise_read_message(r, m.data, m.len, &pl, &err));
    kh_buf_reset(&m);
    ck_assert(kh_noise_write_message(r, (const uint8_t *)"x", 1, &m, &err));
    if (what == 0) m.data[40] ^= 1;       /* inside the encrypted static key */
    if (what == 1) m.len = 40;            /* truncated */
    if (what == 2) memset(m.data, 0, 32); /* a low-order ephemeral key */
    ck_assert(!kh_noise_read_message(i, m.data, m.len, &pl, &err));
    ck_assert_int_eq(err.code, what == 0 ? KH_ERR_DECRYPT : KH_ERR_PROTOCOL);
    ck_assert_uint_eq(pl.len, 0);
    ck_assert(!kh_noise_done(i) && !kh_noise_my_turn(i));
    ck_assert(!kh_noise_write_message(i, NULL, 0, &m, &err));
    ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
    kh_buf_free(&m);
    kh_buf_free(&pl);
    kh_noise_free(i);
    kh_noise_free(r);
  }
}
END_TEST

START_TEST(test_misuse) {
  kh_error err;
  kh_noise *i, *r;
  kh_buf m = KH_BUF_INIT, pl = KH_BUF_INIT;
  /* Missing keys are named at the first message. */
  i = kh_noise_new("Noise_IK_25519_ChaChaPoly_SHA256", 1, &err);
  ck_assert(kh_noise_needs_static(i) && kh_noise_needs_remote_static(i));
  ck_assert(!kh_noise_write_message(i, NULL, 0, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert_ptr_nonnull(strstr(err.msg, "static"));
  kh_noise_free(i);
  /* Out of turn, too long, psks: too many or too few. */
  pair("Noise_NN_25519_ChaChaPoly_SHA256", &i, &r);
  ck_assert(!kh_noise_read_message(i, (const uint8_t *)"x", 1, &pl, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  ck_assert(!kh_noise_write_message(r, NULL, 0, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  uint8_t *big = calloc(1, KH_NOISE_MAX_MSG_LEN);
  ck_assert(!kh_noise_write_message(i, big, KH_NOISE_MAX_MSG_LEN - 40, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  free(big);
  uint8_t psk[32] = {1};
  ck_assert(!kh_noise_add_psk(r, psk, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  kh_noise_free(i);
  kh_noise_free(r);
  i = kh_noise_new("Noise_XXpsk3_25519_ChaChaPoly_SHA256", 1, &err);
  ck_assert_uint_eq(kh_noise_psk_count(i), 1);
  ck_assert(!kh_noise_is_one_way(i));
  ck_assert(!kh_noise_write_message(i, NULL, 0, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  kh_noise_free(i);
  /* Keys after the first message, and split before the end. */
  pair("Noise_NN_25519_ChaChaPoly_SHA256", &i, &r);
  ck_assert(kh_noise_write_message(i, NULL, 0, &m, &err));
  ck_assert(!kh_noise_set_prologue(i, (const uint8_t *)"p", 1, &err));
  kh_noise_cipherstate a, b;
  ck_assert(!kh_noise_split(i, &a, &b, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  kh_noise_free(i);
  kh_noise_free(r);
  /* A prologue that differs: the responder's first encrypted payload fails. */
  pair("Noise_NN_25519_ChaChaPoly_SHA256", &i, &r);
  ck_assert(kh_noise_set_prologue(i, (const uint8_t *)"a", 1, &err));
  ck_assert(kh_noise_set_prologue(r, (const uint8_t *)"b", 1, &err));
  kh_buf_reset(&m);
  ck_assert(kh_noise_write_message(i, NULL, 0, &m, &err));
  ck_assert(kh_noise_read_message(r, m.data, m.len, &pl, &err));
  kh_buf_reset(&m);
  ck_assert(kh_noise_write_message(r, NULL, 0, &m, &err));
  ck_assert(!kh_noise_read_message(i, m.data, m.len, &pl, &err));
  ck_assert_int_eq(err.code, KH_ERR_DECRYPT);
  kh_noise_free(i);
  kh_noise_free(r);
  /* The last nonce is never used. */
  a.cipher = KH_NOISE_CHACHAPOLY;
  a.n = UINT64_MAX;
  kh_buf_reset(&m);
  ck_assert(!kh_noise_encrypt(&a, NULL, 0, (const uint8_t *)"x", 1, &m, &err));
  ck_assert_int_eq(err.code, KH_ERR_SEQ_OVERFLOW);
  kh_buf_free(&m);
  kh_buf_free(&pl);
}
END_TEST

START_TEST(test_names) {
  static const struct {
    const char *name;
    kh_code code;
  } cases[] = {
      {"Noise_XX_25519_ChaChaPoly", KH_ERR_INVALID_ARGUMENT},
      {"Noise_XX_25519_ChaChaPoly_SHA256_x", KH_ERR_INVALID_ARGUMENT},
      {"Nois_XX_25519_ChaChaPoly_SHA256", KH_ERR_INVALID_ARGUMENT},
      {"Noise_XX_25519_AES_SHA256", KH_ERR_INVALID_ARGUMENT},
      {"Noise_XX_25519_ChaChaPoly_MD5", KH_ERR_INVALID_ARGUMENT},
      {"Noise_XX_25519_ChaChaPoly_BLAKE2s", KH_ERR_UNIMPLEMENTED},
      {"Noise_XX_448_ChaChaPoly_SHA256", KH_ERR_UNIMPLEMENTED},
      {"Noise_XXfallback_25519_ChaChaPoly_SHA256", KH_ERR_UNIMPLEMENTED},
      {"Noise_ZZ_25519_ChaChaPoly_SHA256", KH_ERR_UNIMPLEMENTED},
      {"Noise_NNpsk9_25519_ChaChaPoly_SHA256", KH_ERR_INVALID_ARGUMENT},
      {"", KH_ERR_INVALID_ARGUMENT},
      {"Noise__XX_25519_ChaChaPoly_SHA256", KH_ERR_INVALID_ARGUMENT},
      {"Noise_XX_25519_ChaChaPoly_SHA256_", KH_ERR_INVALID_ARGUMENT},
  };
  for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
    kh_error err = {0};
    ck_assert_ptr_null(kh_noise_new(cases[t].name, 1, &err));
    ck_assert_msg(err.code == cases[t].code, "%s: %s", cases[t].name, err.msg);
  }
  kh_error err;
  kh_noise *n = kh_noise_new("Noise_X1K1_25519_ChaChaPoly_BLAKE2b", 0, &err);
  ck_assert_ptr_nonnull(n);
  ck_assert_str_eq(kh_noise_protocol_name(n), "Noise_X1K1_25519_ChaChaPoly_BLAKE2b");
  ck_assert_int_eq(kh_noise_hash_of(n), KH_NOISE_BLAKE2B);
  ck_assert(kh_noise_needs_static(n) && !kh_noise_needs_remote_static(n));
  kh_noise_free(n);
}
END_TEST

int main(void) {
  Suite *s = suite_create("noise");
  TCase *tc = tcase_create("noise");
  tcase_add_test(tc, test_patterns_agree);
  tcase_add_test(tc, test_two_step_write_shares_the_payload_hash);
  tcase_add_test(tc, test_bad_messages_kill_the_state);
  tcase_add_test(tc, test_misuse);
  tcase_add_test(tc, test_names);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* client-shim/aead: known answers through the counter nonce (RFC 8439 2.8.2
 * for ChaCha20-Poly1305, the GCM specification's test case 4 for
 * AES-128-GCM), nonce = IV XOR counter, in-place use, and the negative
 * cases: a changed counter, tag, AAD or ciphertext does not open, a wrong
 * key size is refused; a two-part seal is the one-part seal of the joined
 * message. Wycheproof vectors: test_aead_wycheproof.c. */
#include <check.h>

#include "testutil.h"

#include "aead.h"
#include "hex.h"

static const char *k_sunscreen =
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    "sunscreen would be it.";

START_TEST(test_chacha20_poly1305_rfc8439_through_the_counter) {
  uint8_t key[32], iv[12], aad[12], ct[128], tag[16];
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)(0x80 + i);
  /* The RFC's nonce is 07000000 4041424344454647; with counter 5 the IV
   * must end in ...42 for IV XOR counter to give it. */
  ck_assert_uint_eq(kh_unhex("070000004041424344454642", iv, sizeof(iv)), 12);
  ck_assert_uint_eq(kh_unhex("50515253c0c1c2c3c4c5c6c7", aad, sizeof(aad)), 12);
  size_t len = strlen(k_sunscreen);
  kh_aead enc = {0}, dec = {0};
  kh_error err;
  ck_assert(kh_aead_init(&enc, KH_AEAD_CHACHA20_POLY1305, key, 32, iv, 1, &err));
  ck_assert(kh_aead_seal(&enc, 5, aad, sizeof(aad), (const uint8_t *)k_sunscreen, len, ct, tag));
  uint8_t want_tag[16], want_ct16[16];
  ck_assert_uint_eq(kh_unhex("1ae10b594f09e26a7e902ecbd0600691", want_tag, 16), 16);
  ck_assert_uint_eq(kh_unhex("d31a8d34648e60db7b86afbc53ef7ec2", want_ct16, 16), 16);
  ck_assert_mem_eq(tag, want_tag, 16);
  ck_assert_mem_eq(ct, want_ct16, 16);

  uint8_t pt[128];
  ck_assert(kh_aead_init(&dec, KH_AEAD_CHACHA20_POLY1305, key, 32, iv, 0, &err));
  ck_assert(kh_aead_open(&dec, 5, aad, sizeof(aad), ct, len, tag, pt));
  ck_assert_mem_eq(pt, k_sunscreen, len);
  ck_assert(!kh_aead_open(&dec, 4, aad, sizeof(aad), ct, len, tag, pt)); /* other counter */
  kh_aead_cleanup(&enc);
  kh_aead_cleanup(&dec);
}
END_TEST

START_TEST(test_aes_128_gcm_spec_case_4_at_counter_0) {
  uint8_t key[16], iv[12], aad[20], msg[60], want_ct[60], want_tag[16], ct[60], tag[16];
  ck_assert_uint_eq(kh_unhex("feffe9928665731c6d6a8f9467308308", key, sizeof(key)), 16);
  ck_assert_uint_eq(kh_unhex("cafebabefacedbaddecaf888", iv, sizeof(iv)), 12);
  ck_assert_uint_eq(kh_unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, sizeof(aad)), 20);
  ck_assert_uint_eq(kh_unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                             "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                             msg, sizeof(msg)),
                    60);
  ck_assert_uint_eq(kh_unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                             "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                             want_ct, sizeof(want_ct)),
                    60);
  ck_assert_uint_eq(kh_unhex("5bc94fbc3221a5db94fae95ae7121a47", want_tag, 16), 16);
  kh_aead enc = {0};
  kh_error err;
  ck_assert(kh_aead_init(&enc, KH_AEAD_AES_GCM, key, 16, iv, 1, &err));
  ck_assert(kh_aead_seal(&enc, 0, aad, sizeof(aad), msg, sizeof(msg), ct, tag));
  ck_assert_mem_eq(ct, want_ct, sizeof(ct));
  ck_assert_mem_eq(tag, want_tag, 16);
  kh_aead_cleanup(&enc);
}
END_TEST

/* Sealing at counter N equals sealing at counter 0 with IV XOR N. */
START_TEST(test_counter_is_xored_into_the_iv_big_endian) {
  uint8_t key[32] = {9}, iv[12], iv2[12], a[40], b[40], ta[16], tb[16];
  for (int i = 0; i < 12; i++) iv[i] = (uint8_t)(0xa0 + i);
  const uint64_t counter = 0x0102030405060708ull;
  memcpy(iv2, iv, 12);
  for (int i = 0; i < 8; i++) iv2[4 + i] ^= (uint8_t)(i + 1);
  const uint8_t msg[40] = "forty bytes of plaintext, give or take.";
  for (int alg = 0; alg < 2; alg++) {
    kh_aead x = {0}, y = {0};
    kh_error err;
    ck_assert(kh_aead_init(&x, (kh_aead_alg)alg, key, 32, iv, 1, &err));
    ck_assert(kh_aead_init(&y, (kh_aead_alg)alg, key, 32, iv2, 1, &err));
    ck_assert(kh_aead_seal(&x, counter, NULL, 0, msg, sizeof(msg), a, ta));
    ck_assert(kh_aead_seal(&y, 0, NULL, 0, msg, sizeof(msg), b, tb));
    ck_assert_mem_eq(a, b, sizeof(a));
    ck_assert_mem_eq(ta, tb, 16);
    ck_assert(kh_aead_seal(&x, counter + 1, NULL, 0, msg, sizeof(msg), b, tb));
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    kh_aead_cleanup(&x);
    kh_aead_cleanup(&y);
  }
}
END_TEST

START_TEST(test_in_place_round_trip_and_tampering_each_alg) {
  static const struct {
    kh_aead_alg alg;
    size_t key_len;
  } algs[] = {{KH_AEAD_AES_GCM, 16}, {KH_AEAD_AES_GCM, 32}, {KH_AEAD_CHACHA20_POLY1305, 32}};
  uint8_t key[32], iv[12] = {1, 2, 3};
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)(3 * i);
  const uint8_t aad[5] = {23, 3, 3, 0, 33};
  for (size_t k = 0; k < sizeof(algs) / sizeof(algs[0]); k++) {
    kh_aead enc = {0}, dec = {0};
    kh_error err;
    ck_assert(kh_aead_init(&enc, algs[k].alg, key, algs[k].key_len, iv, 1, &err));
    ck_assert(kh_aead_init(&dec, algs[k].alg, key, algs[k].key_len, iv, 0, &err));
    uint8_t buf[17] = "sixteen bytes..", tag[16], saved[17];
    ck_assert(kh_aead_seal(&enc, 7, aad, sizeof(aad), buf, sizeof(buf), buf, tag));
    ck_assert(memcmp(buf, "sixteen bytes..", 16) != 0);
    memcpy(saved, buf, sizeof(buf));
    ck_assert(kh_aead_open(&dec, 7, aad, sizeof(aad), buf, sizeof(buf), tag, buf));
    ck_assert_mem_eq(buf, "sixteen bytes..", 16);
    uint8_t out[17];
    /* a flipped tag, AAD or ciphertext bit, or another counter: no plaintext */
    tag[0] ^= 1;
    ck_assert(!kh_aead_open(&dec, 7, aad, sizeof(aad), saved, sizeof(saved), tag, out));
    tag[0] ^= 1;
    uint8_t aad2[5] = {23, 3, 3, 0, 34};
    ck_assert(!kh_aead_open(&dec, 7, aad2, sizeof(aad2), saved, sizeof(saved), tag, out));
    saved[3] ^= 0x80;
    ck_assert(!kh_aead_open(&dec, 7, aad, sizeof(aad), saved, sizeof(saved), tag, out));
    for (size_t i = 0; i < sizeof(out); i++) ck_assert_uint_eq(out[i], 0); /* wiped */
    saved[3] ^= 0x80;
    ck_assert(!kh_aead_open(&dec, 8, aad, sizeof(aad), saved, sizeof(saved), tag, out));
    ck_assert(kh_aead_open(&dec, 7, aad, sizeof(aad), saved, sizeof(saved), tag, out));
    /* a sealing context does not open and an opening one does not seal */
    ck_assert(!kh_aead_open(&enc, 7, aad, sizeof(aad), saved, sizeof(saved), tag, out));
    ck_assert(!kh_aead_seal(&dec, 9, aad, sizeof(aad), out, sizeof(out), out, tag));
    kh_aead_cleanup(&enc);
    kh_aead_cleanup(&dec);
    ck_assert(enc.ctx == NULL);
    for (int i = 0; i < 12; i++) ck_assert_uint_eq(enc.iv[i], 0); /* IV wiped */
  }
}
END_TEST

/* A message sealed in two parts (the record layer's content, then its type
 * byte) is the one-part seal of the two joined, at every split, for each
 * algorithm: partial blocks carry over between the updates. */
START_TEST(test_seal_tail_equals_the_joined_seal_at_every_split) {
  static const struct {
    kh_aead_alg alg;
    size_t key_len;
  } algs[] = {{KH_AEAD_AES_GCM, 16}, {KH_AEAD_AES_GCM, 32}, {KH_AEAD_CHACHA20_POLY1305, 32}};
  uint8_t key[32], iv[12] = {9, 8, 7};
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)(5 * i + 1);
  const uint8_t aad[5] = {23, 3, 3, 0, 90};
  uint8_t msg[74];
  for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)(i * 7 + 3);
  for (size_t k = 0; k < sizeof(algs) / sizeof(algs[0]); k++) {
    kh_aead enc = {0}, dec = {0};
    kh_error err;
    ck_assert(kh_aead_init(&enc, algs[k].alg, key, algs[k].key_len, iv, 1, &err));
    ck_assert(kh_aead_init(&dec, algs[k].alg, key, algs[k].key_len, iv, 0, &err));
    for (size_t split = 0; split <= sizeof(msg); split++) {
      uint8_t one[74], two[74], tag1[16], tag2[16], back[74];
      ck_assert(kh_aead_seal(&enc, split, aad, sizeof(aad), msg, sizeof(msg), one, tag1));
      ck_assert(kh_aead_seal_tail(&enc, split, aad, sizeof(aad), msg, split, msg + split,
                                  sizeof(msg) - split, two, tag2));
      ck_assert_mem_eq(two, one, sizeof(msg));
      ck_assert_mem_eq(tag2, tag1, 16);
      ck_assert(kh_aead_open(&dec, split, aad, sizeof(aad), two, sizeof(msg), tag2, back));
      ck_assert_mem_eq(back, msg, sizeof(msg));
    }
    uint8_t out[1], tag[16];
    ck_assert(!kh_aead_seal_tail(&dec, 0, aad, sizeof(aad), msg, 0, msg, 1, out, tag));
    kh_aead_cleanup(&enc);
    kh_aead_cleanup(&dec);
  }
}
END_TEST

START_TEST(test_wrong_key_size_refused) {
  uint8_t key[32] = {0}, iv[12] = {0};
  kh_aead a = {0};
  kh_error err;
  ck_assert(!kh_aead_init(&a, KH_AEAD_AES_GCM, key, 24, iv, 1, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert(!kh_aead_init(&a, KH_AEAD_CHACHA20_POLY1305, key, 16, iv, 1, &err));
  ck_assert_str_eq(err.msg, "unsupported AEAD key size");
  ck_assert(a.ctx == NULL);
  kh_aead_cleanup(&a); /* harmless on a never-keyed context */
}
END_TEST

int main(void) {
  Suite *s = suite_create("aead");
  TCase *tc = tcase_create("aead");
  tcase_add_test(tc, test_chacha20_poly1305_rfc8439_through_the_counter);
  tcase_add_test(tc, test_aes_128_gcm_spec_case_4_at_counter_0);
  tcase_add_test(tc, test_counter_is_xored_into_the_iv_big_endian);
  tcase_add_test(tc, test_in_place_round_trip_and_tampering_each_alg);
  tcase_add_test(tc, test_seal_tail_equals_the_joined_seal_at_every_split);
  tcase_add_test(tc, test_wrong_key_size_refused);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

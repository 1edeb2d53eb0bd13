/* The shim's AEAD (aead.h) against Wycheproof AES-GCM and
 * ChaCha20-Poly1305 vectors ($KH_VECTORS_DIR/wycheproof). Only the
 * parameters TLS 1.3 uses are in scope: 96-bit nonces, 128-bit tags, 128- or
 * 256-bit keys; other groups are counted as out of scope, not silently
 * passed. */
#include <check.h>

#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "aead.h"

#define MAXB 8192

typedef struct {
  int iv_bits, key_bits, tag_bits;
  char key[200], iv[200], aad[MAXB], msg[MAXB], ct[MAXB], tag[100], result[20];
  int tc_id;
} vec;

/* field copies the JSON string value of |line| ("name": "value") into out. */
static int field(const char *line, const char *name, char *out, size_t cap) {
  char pat[40];
  snprintf(pat, sizeof(pat), "\"%s\": \"", name);
  const char *p = strstr(line, pat);
  if (p == NULL) return 0;
  p += strlen(pat);
  const char *e = strchr(p, '"');
  if (e == NULL || (size_t)(e - p) >= cap) return 0;
  memcpy(out, p, (size_t)(e - p));
  out[e - p] = '\0';
  return 1;
}

static int number(const char *line, const char *name, int *out) {
  char pat[40];
  snprintf(pat, sizeof(pat), "\"%s\": ", name);
  const char *p = strstr(line, pat);
  if (p == NULL) return 0;
  *out = atoi(p + strlen(pat));
  return 1;
}

typedef struct {
  int valid_ok, invalid_ok, out_of_scope;
} tally;

static uint8_t key[64], iv[64], aad[MAXB], msg[MAXB], ct[MAXB], tag[64], out[MAXB], otag[64];

static void run_vector(kh_aead_alg alg, const vec *v, tally *t) {
  if (v->iv_bits != 96 || v->tag_bits != 128 || (v->key_bits != 128 && v->key_bits != 256)) {
    t->out_of_scope++;
    return;
  }
  size_t kl = kh_unhex(v->key, key, sizeof(key)), il = kh_unhex(v->iv, iv, sizeof(iv));
  size_t al = kh_unhex(v->aad, aad, sizeof(aad)), ml = kh_unhex(v->msg, msg, sizeof(msg));
  size_t cl = kh_unhex(v->ct, ct, sizeof(ct)), tl = kh_unhex(v->tag, tag, sizeof(tag));
  ck_assert_msg(kl != (size_t)-1 && il == 12 && al != (size_t)-1 && ml != (size_t)-1 &&
                    cl != (size_t)-1 && tl == 16,
                "tcId %d: bad vector encoding", v->tc_id);
  int valid = strcmp(v->result, "invalid") != 0;
  kh_error err;
  kh_aead dec = {0}, enc = {0};
  ck_assert_msg(kh_aead_init(&dec, alg, key, kl, iv, 0, &err), "tcId %d: %s", v->tc_id, err.msg);
  int opened = cl == ml && kh_aead_open(&dec, 0, aad, al, ct, cl, tag, out);
  if (valid) {
    ck_assert_msg(opened, "tcId %d: valid vector did not open", v->tc_id);
    ck_assert_msg(ml == 0 || memcmp(out, msg, ml) == 0, "tcId %d: wrong plaintext", v->tc_id);
    ck_assert(kh_aead_init(&enc, alg, key, kl, iv, 1, &err));
    ck_assert_msg(kh_aead_seal(&enc, 0, aad, al, msg, ml, out, otag), "tcId %d: seal", v->tc_id);
    ck_assert_msg(ml == 0 || memcmp(out, ct, ml) == 0, "tcId %d: wrong ciphertext", v->tc_id);
    ck_assert_msg(memcmp(otag, tag, 16) == 0, "tcId %d: wrong tag", v->tc_id);
    kh_aead_cleanup(&enc);
    t->valid_ok++;
  } else {
    ck_assert_msg(!opened, "tcId %d: invalid vector opened", v->tc_id);
    t->invalid_ok++;
  }
  kh_aead_cleanup(&dec);
}

static tally run_file(const char *name, kh_aead_alg alg) {
  char path[512];
  const char *dir = getenv("KH_VECTORS_DIR");
  ck_assert_msg(dir != NULL, "KH_VECTORS_DIR not set");
  snprintf(path, sizeof(path), "%s/wycheproof/%s", dir, name);
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  static char line[2 * MAXB + 64];
  static vec v;
  tally t = {0, 0, 0};
  memset(&v, 0, sizeof(v));
  while (fgets(line, sizeof(line), f)) {
    number(line, "ivSize", &v.iv_bits);
    number(line, "keySize", &v.key_bits);
    number(line, "tagSize", &v.tag_bits);
    if (number(line, "tcId", &v.tc_id)) {
      v.key[0] = v.iv[0] = v.aad[0] = v.msg[0] = v.ct[0] = v.tag[0] = '\0';
    }
    field(line, "key", v.key, sizeof(v.key));
    field(line, "iv", v.iv, sizeof(v.iv));
    field(line, "aad", v.aad, sizeof(v.aad));
    field(line, "msg", v.msg, sizeof(v.msg));
    field(line, "ct", v.ct, sizeof(v.ct));
    field(line, "tag", v.tag, sizeof(v.tag));
    if (field(line, "result", v.result, sizeof(v.result))) run_vector(alg, &v, &t);
  }
  fclose(f);
  return t;
}

START_TEST(test_aes_gcm_wycheproof) {
  tally t = run_file("aes_gcm_test.json", KH_AEAD_AES_GCM);
  printf("aes_gcm: %d valid, %d invalid checked, %d out of scope\n", t.valid_ok, t.invalid_ok,
         t.out_of_scope);
  ck_assert_int_ge(t.valid_ok, 50);
  ck_assert_int_ge(t.invalid_ok, 20);
}
END_TEST

START_TEST(test_chacha20_poly1305_wycheproof) {
  tally t = run_file("chacha20_poly1305_test.json", KH_AEAD_CHACHA20_POLY1305);
  printf("chacha20_poly1305: %d valid, %d invalid checked, %d out of scope\n", t.valid_ok,
         t.invalid_ok, t.out_of_scope);
  ck_assert_int_ge(t.valid_ok, 50);
  ck_assert_int_ge(t.invalid_ok, 20);
}
END_TEST

int main(void) {
  Suite *s = suite_create("aead_wycheproof");
  TCase *tc = tcase_create("wycheproof");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_aes_gcm_wycheproof);
  tcase_add_test(tc, test_chacha20_poly1305_wycheproof);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

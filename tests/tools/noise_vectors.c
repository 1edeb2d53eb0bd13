/* noise_vectors FILE...: runs Noise test vectors in the cacophony / snow
 * JSON format ({"vectors": [...]}) against the sans-IO engine
 * (sidecar/noise). For each vector the initiator and the responder are set
 * up from init_* and resp_* (prologue, psks, static, ephemeral, remote
 * static), every message is written by its sender and compared with the
 * vector's ciphertext, read by the other side and compared with the
 * payload, and after the handshake the handshake hash is compared and the
 * transport messages run through Split()'s cipher states.
 *
 * Prints one line per failure ("FAIL name: why") and per skipped vector
 * ("SKIP name: why", a pattern or suite the engine does not support), then
 * "N passed, M failed, K skipped". Exit status 0 if none failed (and at
 * least one ran), 1 otherwise, 2 on a file that cannot be read. */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "kh_buf.h"
#include "hex.h"
#include "kh_error.h"
#include "noise.h"

typedef struct {
  kh_noise *hs;
  kh_noise_cipherstate send, recv;
} side;

/* unhex decodes |hex| (tests/unit/hex.h) and appends it to |out|. */
static int unhex(const char *hex, kh_buf *out) {
  size_t cap = strlen(hex) / 2;
  if (strlen(hex) % 2 != 0 || !kh_buf_reserve(out, cap + 1)) return 0;
  size_t n = kh_unhex(hex, out->data + out->len, cap);
  if (n == (size_t)-1) return 0;
  out->len += n;
  return 1;
}

/* The hex string |key| of |v| decoded into |out|; 0 if absent. -1 if bad. */
static int field(json_object *v, const char *key, kh_buf *out) {
  json_object *f;
  kh_buf_reset(out);
  if (!json_object_object_get_ex(v, key, &f)) return 0;
  if (!json_object_is_type(f, json_type_string)) return -1;
  return unhex(json_object_get_string(f), out) ? 1 : -1;
}

static int key32(json_object *v, const char *key, uint8_t out[32], const char **why) {
  kh_buf b = KH_BUF_INIT;
  int got = field(v, key, &b);
  if (got == 1 && b.len == 32) memcpy(out, b.data, 32);
  if (got == -1 || (got == 1 && b.len != 32)) *why = key, got = -1;
  kh_buf_free(&b);
  return got;
}

/* Sets up one side from its prefix ("init_" or "resp_"). */
static int setup(json_object *v, const char *prefix, kh_noise *hs, const char **why,
                 kh_error *err) {
  char key[64];
  uint8_t k[32];
  kh_buf b = KH_BUF_INIT;
  int ok = 1, got;
  snprintf(key, sizeof(key), "%sprologue", prefix);
  if ((got = field(v, key, &b)) == -1) *why = "prologue", ok = 0;
  if (ok && got == 1) ok = kh_noise_set_prologue(hs, b.data, b.len, err);
  snprintf(key, sizeof(key), "%sstatic", prefix);
  if (ok && (got = key32(v, key, k, why)) == -1) ok = 0;
  if (ok && got == 1) ok = kh_noise_set_static(hs, k, err);
  snprintf(key, sizeof(key), "%sephemeral", prefix);
  if (ok && (got = key32(v, key, k, why)) == -1) ok = 0;
  if (ok && got == 1) ok = kh_noise_set_ephemeral(hs, k, err);
  snprintf(key, sizeof(key), "%sremote_static", prefix);
  if (ok && (got = key32(v, key, k, why)) == -1) ok = 0;
  if (ok && got == 1) ok = kh_noise_set_remote_static(hs, k, err);
  snprintf(key, sizeof(key), "%spsks", prefix);
  json_object *psks;
  if (ok && json_object_object_get_ex(v, key, &psks)) {
    for (size_t i = 0; ok && i < json_object_array_length(psks); i++) {
      kh_buf_reset(&b);
      json_object *p = json_object_array_get_idx(psks, i);
      if (!json_object_is_type(p, json_type_string) || !unhex(json_object_get_string(p), &b) ||
          b.len != 32) {
        *why = "psks";
        ok = 0;
      } else {
        ok = kh_noise_add_psk(hs, b.data, err);
      }
    }
  }
  kh_buf_free(&b);
  return ok;
}

static void hexprint(char *out, size_t cap, const uint8_t *p, size_t len) {
  size_t i = 0;
  for (; i < len && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", p[i]);
  out[2 * i] = '\0';
}

/* Runs one vector: 1 passed, 0 failed, -1 skipped; |why| says why not. */
static int run(json_object *v, char *why, size_t why_len) {
  json_object *name_obj, *msgs;
  if (!json_object_object_get_ex(v, "protocol_name", &name_obj) ||
      !json_object_object_get_ex(v, "messages", &msgs)) {
    snprintf(why, why_len, "no protocol_name or messages");
    return 0;
  }
  const char *name = json_object_get_string(name_obj);
  kh_error err = {0};
  side sides[2] = {{0}, {0}};
  int result = 0;
  const char *bad = NULL;
  sides[0].hs = kh_noise_new(name, 1, &err);
  sides[1].hs = sides[0].hs != NULL ? kh_noise_new(name, 0, &err) : NULL;
  if (sides[1].hs == NULL) {
    snprintf(why, why_len, "%s", err.msg);
    kh_noise_free(sides[0].hs);
    return err.code == KH_ERR_UNIMPLEMENTED ? -1 : 0;
  }
  if (!setup(v, "init_", sides[0].hs, &bad, &err) || !setup(v, "resp_", sides[1].hs, &bad, &err)) {
    if (bad != NULL)
      snprintf(why, why_len, "bad field %s", bad);
    else
      snprintf(why, why_len, "setup: %s", err.msg);
    goto out;
  }
  int one_way = kh_noise_is_one_way(sides[0].hs);
  kh_buf want_pt = KH_BUF_INIT, want_ct = KH_BUF_INIT, ct = KH_BUF_INIT, pt = KH_BUF_INIT;
  size_t count = json_object_array_length(msgs);
  int ok = 1;
  for (size_t i = 0; ok && i < count; i++) {
    json_object *m = json_object_array_get_idx(msgs, i);
    if (field(m, "payload", &want_pt) != 1 || field(m, "ciphertext", &want_ct) != 1) {
      snprintf(why, why_len, "message %zu: bad payload or ciphertext", i);
      ok = 0;
      break;
    }
    side *from = &sides[one_way || i % 2 == 0 ? 0 : 1];
    side *to = &sides[from == &sides[0] ? 1 : 0];
    kh_buf_reset(&ct);
    kh_buf_reset(&pt);
    int in_handshake = !kh_noise_done(from->hs);
    if (in_handshake) {
      ok = kh_noise_write_message(from->hs, want_pt.data, want_pt.len, &ct, &err) &&
           kh_noise_read_message(to->hs, ct.data, ct.len, &pt, &err);
    } else {
      ok = kh_noise_encrypt(&from->send, NULL, 0, want_pt.data, want_pt.len, &ct, &err) &&
           kh_noise_decrypt(&to->recv, NULL, 0, ct.data, ct.len, &pt, &err);
    }
    if (!ok) {
      snprintf(why, why_len, "message %zu: %s", i, err.msg);
      break;
    }
    if (ct.len != want_ct.len || memcmp(ct.data, want_ct.data, ct.len) != 0) {
      char got[65];
      hexprint(got, sizeof(got), ct.data, ct.len);
      snprintf(why, why_len, "message %zu: ciphertext differs (got %s...)", i, got);
      ok = 0;
    } else if (pt.len != want_pt.len || (pt.len > 0 && memcmp(pt.data, want_pt.data, pt.len))) {
      snprintf(why, why_len, "message %zu: payload read back differs", i);
      ok = 0;
    }
    if (ok && in_handshake && kh_noise_done(sides[0].hs) && kh_noise_done(sides[1].hs)) {
      kh_buf hh = KH_BUF_INIT;
      size_t h_len;
      const uint8_t *h = kh_noise_handshake_hash(sides[0].hs, &h_len);
      int got = field(v, "handshake_hash", &hh);
      if (got == 1 && (hh.len != h_len || memcmp(hh.data, h, h_len) != 0)) {
        snprintf(why, why_len, "handshake hash differs");
        ok = 0;
      }
      kh_buf_free(&hh);
      kh_noise_cipherstate c1, c2;
      if (ok && (!kh_noise_split(sides[0].hs, &c1, &c2, &err))) {
        snprintf(why, why_len, "split: %s", err.msg);
        ok = 0;
      }
      if (ok) {
        sides[0].send = c1, sides[1].recv = c1;
        sides[1].send = c2, sides[0].recv = c2;
      }
    }
  }
  if (ok && (!kh_noise_done(sides[0].hs) || !kh_noise_done(sides[1].hs))) {
    snprintf(why, why_len, "the vector ends before the handshake does");
    ok = 0;
  }
  result = ok;
  kh_buf_free(&want_pt);
  kh_buf_free(&want_ct);
  kh_buf_free(&ct);
  kh_buf_free(&pt);
out:
  kh_noise_free(sides[0].hs);
  kh_noise_free(sides[1].hs);
  return result;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    fprintf(argc < 2 ? stderr : stdout, "usage: noise_vectors FILE.json...\n");
    return argc < 2 ? 2 : 0;
  }
  unsigned passed = 0, failed = 0, skipped = 0;
  for (int a = 1; a < argc; a++) {
    json_object *root = json_object_from_file(argv[a]), *vectors = NULL;
    if (root == NULL || !json_object_object_get_ex(root, "vectors", &vectors) ||
        !json_object_is_type(vectors, json_type_array)) {
      fprintf(stderr, "noise_vectors: %s: not a JSON file with a \"vectors\" array\n", argv[a]);
      json_object_put(root);
      return 2;
    }
    for (size_t i = 0; i < json_object_array_length(vectors); i++) {
      json_object *v = json_object_array_get_idx(vectors, i), *n;
      const char *name = json_object_object_get_ex(v, "protocol_name", &n)
                             ? json_object_get_string(n)
                             : "(unnamed)";
      char why[512] = "";
      int r = run(v, why, sizeof(why));
      if (r == 1) {
        passed++;
      } else if (r == -1) {
        skipped++;
        printf("SKIP %s: %s\n", name, why);
      } else {
        failed++;
        printf("FAIL %s (vector %zu): %s\n", name, i, why);
      }
    }
    json_object_put(root);
  }
  printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
  return failed == 0 && passed > 0 ? 0 : 1;
}

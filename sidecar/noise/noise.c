/* noise.c: see noise.h. The Noise Protocol Framework, revision 34, on
 * libsodium: CipherState, SymmetricState and HandshakeState as sections 5.1
 * to 5.3 define them, the patterns of sections 7.4 and 7.5 and the psk
 * modifiers of section 9. */
#include "noise.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kh_secret.h"

#define MAX_MSGS 4
#define MAX_TOKENS 8
#define MAX_PSKS 4

typedef enum { T_E, T_S, T_EE, T_ES, T_SE, T_SS, T_PSK } token;

/* A pattern as the spec writes it: pre-messages ("s" or "") and messages,
 * tokens separated by spaces, the initiator writing the even messages. */
typedef struct {
  const char *name;
  const char *pre_i;
  const char *pre_r;
  const char *msgs[MAX_MSGS];
} pattern;

static const pattern k_patterns[] = {
    /* One-way (7.4). */
    {"N", "", "s", {"e es"}},
    {"K", "s", "s", {"e es ss"}},
    {"X", "", "s", {"e es s ss"}},
    /* Interactive, fundamental (7.4). */
    {"NN", "", "", {"e", "e ee"}},
    {"NK", "", "s", {"e es", "e ee"}},
    {"NX", "", "", {"e", "e ee s es"}},
    {"XN", "", "", {"e", "e ee", "s se"}},
    {"XK", "", "s", {"e es", "e ee", "s se"}},
    {"XX", "", "", {"e", "e ee s es", "s se"}},
    {"KN", "s", "", {"e", "e ee se"}},
    {"KK", "s", "s", {"e es ss", "e ee se"}},
    {"KX", "s", "", {"e", "e ee se s es"}},
    {"IN", "", "", {"e s", "e ee se"}},
    {"IK", "", "s", {"e es s ss", "e ee se"}},
    {"IX", "", "", {"e s", "e ee se s es"}},
    /* Interactive, deferred (7.5). */
    {"NK1", "", "s", {"e", "e ee es"}},
    {"NX1", "", "", {"e", "e ee s", "es"}},
    {"X1N", "", "", {"e", "e ee", "s", "se"}},
    {"X1K", "", "s", {"e es", "e ee", "s", "se"}},
    {"XK1", "", "s", {"e", "e ee es", "s se"}},
    {"X1K1", "", "s", {"e", "e ee es", "s", "se"}},
    {"X1X", "", "", {"e", "e ee s es", "s", "se"}},
    {"XX1", "", "", {"e", "e ee s", "es s se"}},
    {"X1X1", "", "", {"e", "e ee s", "es s", "se"}},
    {"K1N", "s", "", {"e", "e ee", "se"}},
    {"K1K", "s", "s", {"e es", "e ee", "se"}},
    {"KK1", "s", "s", {"e", "e ee se es"}},
    {"K1K1", "s", "s", {"e", "e ee es", "se"}},
    {"K1X", "s", "", {"e", "e ee s es", "se"}},
    {"KX1", "s", "", {"e", "e ee se s", "es"}},
    {"K1X1", "s", "", {"e", "e ee s", "se es"}},
    {"I1N", "", "", {"e s", "e ee", "se"}},
    {"I1K", "", "s", {"e es s", "e ee", "se"}},
    {"IK1", "", "s", {"e s", "e ee se es"}},
    {"I1K1", "", "s", {"e s", "e ee es", "se"}},
    {"I1X", "", "", {"e s", "e ee s es", "se"}},
    {"IX1", "", "", {"e s", "e ee se s", "es"}},
    {"I1X1", "", "", {"e s", "e ee s", "se es"}},
};

struct kh_noise {
  char name[KH_NOISE_MAX_NAME_LEN + 1];
  int initiator;
  kh_noise_cipher cipher;
  kh_noise_hash hash;
  size_t hlen;
  int one_way;
  int pre_i_s, pre_r_s; /* the pre-messages: each side's static key, or none */
  token tokens[MAX_MSGS][MAX_TOKENS];
  size_t n_tokens[MAX_MSGS];
  size_t n_msgs;
  size_t msg; /* the next message's index */
  int psk_mode;
  size_t psks_needed, psks_added, psks_used;
  int started, prologue_set, dead, tokens_written;
  size_t tokens_len; /* bytes the current message's tokens took */
  /* SymmetricState and its CipherState. */
  uint8_t ck[KH_NOISE_MAX_HASH_LEN];
  uint8_t h[KH_NOISE_MAX_HASH_LEN];
  uint8_t payload_h[KH_NOISE_MAX_HASH_LEN];
  uint8_t k[KH_NOISE_KEY_LEN];
  int has_k;
  uint64_t n;
  /* Keys. */
  uint8_t s[KH_NOISE_DH_LEN], s_pub[KH_NOISE_DH_LEN];
  uint8_t e[KH_NOISE_DH_LEN], e_pub[KH_NOISE_DH_LEN];
  uint8_t rs[KH_NOISE_DH_LEN], re[KH_NOISE_DH_LEN];
  int has_s, has_e, has_rs, has_re;
  uint8_t psks[MAX_PSKS][KH_NOISE_PSK_LEN];
};

/* --- Hash functions (4.3), HMAC and HKDF ------------------------------ */

typedef union {
  crypto_hash_sha256_state sha256;
  crypto_hash_sha512_state sha512;
  crypto_generichash_blake2b_state blake2b;
} hash_state;

static size_t hash_len(kh_noise_hash h) {
  return h == KH_NOISE_SHA256 ? 32 : 64;
}

static size_t block_len(kh_noise_hash h) {
  return h == KH_NOISE_SHA256 ? 64 : 128;
}

static void hash_init(kh_noise_hash h, hash_state *st) {
  switch (h) {
    case KH_NOISE_SHA256: crypto_hash_sha256_init(&st->sha256); break;
    case KH_NOISE_SHA512: crypto_hash_sha512_init(&st->sha512); break;
    case KH_NOISE_BLAKE2B: crypto_generichash_blake2b_init(&st->blake2b, NULL, 0, 64); break;
  }
}

static void hash_update(kh_noise_hash h, hash_state *st, const uint8_t *in, size_t len) {
  switch (h) {
    case KH_NOISE_SHA256: crypto_hash_sha256_update(&st->sha256, in, len); break;
    case KH_NOISE_SHA512: crypto_hash_sha512_update(&st->sha512, in, len); break;
    case KH_NOISE_BLAKE2B: crypto_generichash_blake2b_update(&st->blake2b, in, len); break;
  }
}

static void hash_final(kh_noise_hash h, hash_state *st, uint8_t *out) {
  switch (h) {
    case KH_NOISE_SHA256: crypto_hash_sha256_final(&st->sha256, out); break;
    case KH_NOISE_SHA512: crypto_hash_sha512_final(&st->sha512, out); break;
    case KH_NOISE_BLAKE2B: crypto_generichash_blake2b_final(&st->blake2b, out, 64); break;
  }
  kh_wipe(st, sizeof(*st));
}

/* HMAC-HASH(key, a || b), RFC 2104; |key| is at most one block (it is
 * always HASHLEN here). */
static void hmac(kh_noise_hash h, const uint8_t *key, size_t key_len, const uint8_t *a,
                 size_t a_len, const uint8_t *b, size_t b_len, uint8_t *out) {
  uint8_t pad[128], inner[KH_NOISE_MAX_HASH_LEN];
  size_t bl = block_len(h);
  hash_state st;
  memset(pad, 0, sizeof(pad));
  memcpy(pad, key, key_len);
  for (size_t i = 0; i < bl; i++) pad[i] ^= 0x36;
  hash_init(h, &st);
  hash_update(h, &st, pad, bl);
  hash_update(h, &st, a, a_len);
  if (b_len > 0) hash_update(h, &st, b, b_len);
  hash_final(h, &st, inner);
  for (size_t i = 0; i < bl; i++) pad[i] ^= 0x36 ^ 0x5c;
  hash_init(h, &st);
  hash_update(h, &st, pad, bl);
  hash_update(h, &st, inner, hash_len(h));
  hash_final(h, &st, out);
  kh_wipe(pad, sizeof(pad));
  kh_wipe(inner, sizeof(inner));
}

/* HKDF(chaining_key, ikm, n) for n = 2 or 3 (4.3): |o3| may be NULL. */
static void hkdf(kh_noise_hash h, const uint8_t *ck, const uint8_t *ikm, size_t ikm_len,
                 uint8_t *o1, uint8_t *o2, uint8_t *o3) {
  size_t hl = hash_len(h);
  uint8_t temp[KH_NOISE_MAX_HASH_LEN];
  const uint8_t one = 1, two = 2, three = 3;
  hmac(h, ck, hl, ikm, ikm_len, NULL, 0, temp);
  hmac(h, temp, hl, &one, 1, NULL, 0, o1);
  hmac(h, temp, hl, o1, hl, &two, 1, o2);
  if (o3 != NULL) hmac(h, temp, hl, o2, hl, &three, 1, o3);
  kh_wipe(temp, sizeof(temp));
}

/* --- Cipher functions (4.2) -------------------------------------------- */

static void nonce_of(kh_noise_cipher c, uint64_t n, uint8_t nonce[12]) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) {
    uint8_t byte = (uint8_t)(n >> (8 * i));
    if (c == KH_NOISE_CHACHAPOLY)
      nonce[4 + i] = byte; /* little-endian */
    else
      nonce[11 - i] = byte; /* big-endian */
  }
}

/* ENCRYPT(k, n, ad, plaintext) into |out| (len + 16 bytes). */
static void aead_encrypt(kh_noise_cipher c, const uint8_t *k, uint64_t n, const uint8_t *ad,
                         size_t ad_len, const uint8_t *pt, size_t len, uint8_t *out) {
  uint8_t nonce[12];
  nonce_of(c, n, nonce);
  unsigned long long out_len;
  if (c == KH_NOISE_CHACHAPOLY)
    crypto_aead_chacha20poly1305_ietf_encrypt(out, &out_len, pt, len, ad, ad_len, NULL, nonce, k);
  else
    crypto_aead_aes256gcm_encrypt(out, &out_len, pt, len, ad, ad_len, NULL, nonce, k);
}

/* DECRYPT(k, n, ad, ciphertext) into |out| (len - 16 bytes); 0 if it does
 * not authenticate. */
static int aead_decrypt(kh_noise_cipher c, const uint8_t *k, uint64_t n, const uint8_t *ad,
                        size_t ad_len, const uint8_t *ct, size_t len, uint8_t *out) {
  uint8_t nonce[12];
  nonce_of(c, n, nonce);
  unsigned long long out_len;
  if (c == KH_NOISE_CHACHAPOLY)
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, &out_len, NULL, ct, len, ad, ad_len,
                                                     nonce, k) == 0;
  return crypto_aead_aes256gcm_decrypt(out, &out_len, NULL, ct, len, ad, ad_len, nonce, k) == 0;
}

static void rekey_key(kh_noise_cipher c, uint8_t k[KH_NOISE_KEY_LEN]) {
  uint8_t zeros[KH_NOISE_KEY_LEN] = {0}, out[KH_NOISE_KEY_LEN + KH_NOISE_TAG_LEN];
  aead_encrypt(c, k, UINT64_MAX, NULL, 0, zeros, sizeof(zeros), out);
  memcpy(k, out, KH_NOISE_KEY_LEN);
  kh_wipe(out, sizeof(out));
}

/* --- Protocol names ------------------------------------------------------ */

static int parse_token(const char *s, size_t len, token *out) {
  static const struct {
    const char *name;
    token t;
  } k_tokens[] = {{"e", T_E}, {"s", T_S}, {"ee", T_EE}, {"es", T_ES}, {"se", T_SE}, {"ss", T_SS}};
  for (size_t i = 0; i < sizeof(k_tokens) / sizeof(k_tokens[0]); i++)
    if (strlen(k_tokens[i].name) == len && memcmp(k_tokens[i].name, s, len) == 0) {
      *out = k_tokens[i].t;
      return 1;
    }
  return 0;
}

static void load_tokens(kh_noise *n, size_t msg, const char *spec) {
  const char *p = spec;
  while (*p != '\0') {
    const char *end = strchr(p, ' ');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    token t;
    if (parse_token(p, len, &t)) n->tokens[msg][n->n_tokens[msg]++] = t;
    p += len;
    if (*p == ' ') p++;
  }
}

/* Adds the psk modifiers in |mods| ("psk0+psk2"): psk0 opens the first
 * message, pskN closes message N. */
static int apply_modifiers(kh_noise *n, const char *mods, kh_error *err) {
  const char *p = mods;
  while (*p != '\0') {
    const char *end = strchr(p, '+');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    if (len != 4 || strncmp(p, "psk", 3) != 0 || p[3] < '0' || p[3] > '9')
      return kh_err(err, KH_ERR_UNIMPLEMENTED, "noise: pattern modifier \"%.*s\" is not supported",
                    (int)len, p);
    size_t at = (size_t)(p[3] - '0');
    if (at > n->n_msgs || n->psks_needed == MAX_PSKS)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: psk%zu does not fit the pattern", at);
    size_t msg = at == 0 ? 0 : at - 1;
    if (n->n_tokens[msg] == MAX_TOKENS)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: too many psk modifiers");
    if (at == 0) {
      memmove(&n->tokens[0][1], &n->tokens[0][0], n->n_tokens[0] * sizeof(token));
      n->tokens[0][0] = T_PSK;
      n->n_tokens[0]++;
    } else {
      n->tokens[msg][n->n_tokens[msg]++] = T_PSK;
    }
    n->psks_needed++;
    n->psk_mode = 1;
    p += len;
    if (*p == '+') p++;
  }
  return 1;
}

static int parse_name(kh_noise *n, const char *name, kh_error *err) {
  char buf[KH_NOISE_MAX_NAME_LEN + 1], *parts[5], *save = NULL;
  size_t len = strlen(name), count = 0;
  if (len == 0 || len > KH_NOISE_MAX_NAME_LEN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: protocol name of %zu bytes", len);
  if (strstr(name, "__") != NULL || name[len - 1] == '_')
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: \"%s\" has an empty part", name);
  memcpy(buf, name, len + 1);
  for (char *t = strtok_r(buf, "_", &save); t != NULL; t = strtok_r(NULL, "_", &save)) {
    if (count == 5) {
      count++; /* one part too many */
      break;
    }
    parts[count++] = t;
  }
  if (count != 5 || strcmp(parts[0], "Noise") != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: \"%s\" is not Noise_PATTERN_DH_CIPHER_HASH",
                  name);
  /* The pattern: its base name, then modifiers from the first lowercase letter. */
  const char *pat = parts[1];
  size_t base_len = 0;
  while (pat[base_len] != '\0' && (pat[base_len] < 'a' || pat[base_len] > 'z')) base_len++;
  const pattern *found = NULL;
  for (size_t i = 0; i < sizeof(k_patterns) / sizeof(k_patterns[0]); i++)
    if (strlen(k_patterns[i].name) == base_len && memcmp(k_patterns[i].name, pat, base_len) == 0)
      found = &k_patterns[i];
  if (found == NULL)
    return kh_err(err, KH_ERR_UNIMPLEMENTED, "noise: pattern \"%.*s\" is not supported",
                  (int)base_len, pat);
  if (strcmp(parts[2], "25519") != 0)
    return kh_err(err,
                  strcmp(parts[2], "448") == 0 ? KH_ERR_UNIMPLEMENTED : KH_ERR_INVALID_ARGUMENT,
                  "noise: DH function \"%s\" is not supported (25519 is)", parts[2]);
  if (strcmp(parts[3], "ChaChaPoly") == 0) {
    n->cipher = KH_NOISE_CHACHAPOLY;
  } else if (strcmp(parts[3], "AESGCM") == 0) {
    if (!crypto_aead_aes256gcm_is_available())
      return kh_err(err, KH_ERR_UNIMPLEMENTED, "noise: AESGCM needs AES-NI, which this CPU lacks");
    n->cipher = KH_NOISE_AESGCM;
  } else {
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: unknown cipher \"%s\"", parts[3]);
  }
  if (strcmp(parts[4], "SHA256") == 0) {
    n->hash = KH_NOISE_SHA256;
  } else if (strcmp(parts[4], "SHA512") == 0) {
    n->hash = KH_NOISE_SHA512;
  } else if (strcmp(parts[4], "BLAKE2b") == 0) {
    n->hash = KH_NOISE_BLAKE2B;
  } else {
    return kh_err(err,
                  strcmp(parts[4], "BLAKE2s") == 0 ? KH_ERR_UNIMPLEMENTED : KH_ERR_INVALID_ARGUMENT,
                  "noise: hash \"%s\" is not supported (SHA256, SHA512, BLAKE2b are)", parts[4]);
  }
  n->hlen = hash_len(n->hash);
  n->pre_i_s = found->pre_i[0] == 's';
  n->pre_r_s = found->pre_r[0] == 's';
  for (n->n_msgs = 0; n->n_msgs < MAX_MSGS && found->msgs[n->n_msgs] != NULL; n->n_msgs++)
    load_tokens(n, n->n_msgs, found->msgs[n->n_msgs]);
  n->one_way = n->n_msgs == 1;
  return apply_modifiers(n, pat + base_len, err);
}

/* --- SymmetricState (5.2) ----------------------------------------------- */

static void mix_hash(kh_noise *n, const uint8_t *data, size_t len) {
  hash_state st;
  hash_init(n->hash, &st);
  hash_update(n->hash, &st, n->h, n->hlen);
  hash_update(n->hash, &st, data, len);
  hash_final(n->hash, &st, n->h);
}

static void mix_key(kh_noise *n, const uint8_t *ikm, size_t len) {
  uint8_t temp_k[KH_NOISE_MAX_HASH_LEN];
  hkdf(n->hash, n->ck, ikm, len, n->ck, temp_k, NULL);
  memcpy(n->k, temp_k, KH_NOISE_KEY_LEN);
  n->has_k = 1;
  n->n = 0;
  kh_wipe(temp_k, sizeof(temp_k));
}

static void mix_key_and_hash(kh_noise *n, const uint8_t *ikm, size_t len) {
  uint8_t temp_h[KH_NOISE_MAX_HASH_LEN], temp_k[KH_NOISE_MAX_HASH_LEN];
  hkdf(n->hash, n->ck, ikm, len, n->ck, temp_h, temp_k);
  mix_hash(n, temp_h, n->hlen);
  memcpy(n->k, temp_k, KH_NOISE_KEY_LEN);
  n->has_k = 1;
  n->n = 0;
  kh_wipe(temp_h, sizeof(temp_h));
  kh_wipe(temp_k, sizeof(temp_k));
}

static int dead(kh_noise *n, kh_error *err, kh_code code, const char *what) {
  n->dead = 1;
  return kh_err(err, code, "noise: %s", what);
}

/* EncryptAndHash: appends the ciphertext (or the plaintext, before any key). */
static int encrypt_and_hash(kh_noise *n, const uint8_t *pt, size_t len, kh_buf *out,
                            kh_error *err) {
  size_t ct_len = len + (n->has_k ? KH_NOISE_TAG_LEN : 0);
  if (!kh_buf_reserve(out, ct_len)) return dead(n, err, KH_ERR_NOMEM, "out of memory");
  uint8_t *ct = out->data + out->len;
  if (n->has_k) {
    if (n->n == UINT64_MAX) return dead(n, err, KH_ERR_SEQ_OVERFLOW, "nonce exhausted");
    aead_encrypt(n->cipher, n->k, n->n++, n->h, n->hlen, pt, len, ct);
  } else if (len > 0) {
    memmove(ct, pt, len);
  }
  mix_hash(n, ct, ct_len);
  out->len += ct_len;
  return 1;
}

/* DecryptAndHash of |len| bytes, appending the plaintext. */
static int decrypt_and_hash(kh_noise *n, const uint8_t *ct, size_t len, kh_buf *out,
                            kh_error *err) {
  if (!n->has_k) {
    if (!kh_buf_append(out, ct, len)) return dead(n, err, KH_ERR_NOMEM, "out of memory");
    mix_hash(n, ct, len);
    return 1;
  }
  if (len < KH_NOISE_TAG_LEN) return dead(n, err, KH_ERR_PROTOCOL, "message too short");
  if (!kh_buf_reserve(out, len)) return dead(n, err, KH_ERR_NOMEM, "out of memory");
  if (n->n == UINT64_MAX) return dead(n, err, KH_ERR_SEQ_OVERFLOW, "nonce exhausted");
  if (!aead_decrypt(n->cipher, n->k, n->n, n->h, n->hlen, ct, len, out->data + out->len))
    return dead(n, err, KH_ERR_DECRYPT, "handshake message does not authenticate");
  n->n++;
  out->len += len - KH_NOISE_TAG_LEN;
  mix_hash(n, ct, len);
  return 1;
}

/* --- HandshakeState (5.3) ------------------------------------------------ */

kh_noise *kh_noise_new(const char *protocol_name, int initiator, kh_error *err) {
  if (sodium_init() < 0) {
    kh_err(err, KH_ERR_INTERNAL, "noise: libsodium does not initialise");
    return NULL;
  }
  if (protocol_name == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: no protocol name");
    return NULL;
  }
  kh_noise *n = kh_secret_alloc(sizeof(*n));
  if (n == NULL) {
    kh_err(err, KH_ERR_NOMEM, "noise: out of memory");
    return NULL;
  }
  if (!parse_name(n, protocol_name, err)) {
    kh_secret_free(n, sizeof(*n));
    return NULL;
  }
  snprintf(n->name, sizeof(n->name), "%s", protocol_name);
  n->initiator = initiator ? 1 : 0;
  /* InitializeSymmetric(protocol_name). */
  size_t len = strlen(protocol_name);
  if (len <= n->hlen) {
    memcpy(n->h, protocol_name, len);
  } else {
    hash_state st;
    hash_init(n->hash, &st);
    hash_update(n->hash, &st, (const uint8_t *)protocol_name, len);
    hash_final(n->hash, &st, n->h);
  }
  memcpy(n->ck, n->h, n->hlen);
  return n;
}

void kh_noise_free(kh_noise *n) {
  if (n != NULL) kh_secret_free(n, sizeof(*n));
}

static int settable(kh_noise *n, kh_error *err) {
  if (n->dead) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: handshake failed earlier");
  if (n->started)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: keys are set before the first message");
  return 1;
}

int kh_noise_set_prologue(kh_noise *n, const uint8_t *prologue, size_t len, kh_error *err) {
  if (!settable(n, err)) return 0;
  if (n->prologue_set) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: prologue set twice");
  mix_hash(n, prologue, len);
  n->prologue_set = 1;
  return 1;
}

int kh_noise_set_static(kh_noise *n, const uint8_t priv[KH_NOISE_DH_LEN], kh_error *err) {
  if (!settable(n, err)) return 0;
  memcpy(n->s, priv, KH_NOISE_DH_LEN);
  if (crypto_scalarmult_base(n->s_pub, n->s) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: static key is not usable");
  n->has_s = 1;
  return 1;
}

int kh_noise_set_remote_static(kh_noise *n, const uint8_t pub[KH_NOISE_DH_LEN], kh_error *err) {
  if (!settable(n, err)) return 0;
  memcpy(n->rs, pub, KH_NOISE_DH_LEN);
  n->has_rs = 1;
  return 1;
}

int kh_noise_set_ephemeral(kh_noise *n, const uint8_t priv[KH_NOISE_DH_LEN], kh_error *err) {
  if (!settable(n, err)) return 0;
  memcpy(n->e, priv, KH_NOISE_DH_LEN);
  if (crypto_scalarmult_base(n->e_pub, n->e) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: ephemeral key is not usable");
  n->has_e = 1;
  return 1;
}

int kh_noise_add_psk(kh_noise *n, const uint8_t psk[KH_NOISE_PSK_LEN], kh_error *err) {
  if (!settable(n, err)) return 0;
  if (n->psks_added == n->psks_needed)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: %s takes %zu psk(s)", n->name,
                  n->psks_needed);
  memcpy(n->psks[n->psks_added++], psk, KH_NOISE_PSK_LEN);
  return 1;
}

/* Whether |initiator|'s side sends its static key in a message. */
static int sends_static(const kh_noise *n, int initiator) {
  for (size_t m = initiator ? 0 : 1; m < n->n_msgs; m += 2)
    for (size_t t = 0; t < n->n_tokens[m]; t++)
      if (n->tokens[m][t] == T_S) return 1;
  return 0;
}

int kh_noise_needs_static(const kh_noise *n) {
  return (n->initiator ? n->pre_i_s : n->pre_r_s) || sends_static(n, n->initiator);
}

int kh_noise_needs_remote_static(const kh_noise *n) {
  return n->initiator ? n->pre_r_s : n->pre_i_s;
}

size_t kh_noise_psk_count(const kh_noise *n) {
  return n->psks_needed;
}

int kh_noise_is_one_way(const kh_noise *n) {
  return n->one_way;
}

/* Before the first message: the prologue (empty if none was set) and the
 * pre-messages, after checking the keys the pattern needs are there. */
static int start(kh_noise *n, kh_error *err) {
  if (n->started) return 1;
  if (kh_noise_needs_static(n) && !n->has_s)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: %s needs our static key", n->name);
  if (kh_noise_needs_remote_static(n) && !n->has_rs)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: %s needs the peer's static key",
                  n->name);
  if (n->psks_added != n->psks_needed)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: %s needs %zu psk(s), %zu given", n->name,
                  n->psks_needed, n->psks_added);
  if (!n->prologue_set) mix_hash(n, NULL, 0);
  if (n->pre_i_s) mix_hash(n, n->initiator ? n->s_pub : n->rs, KH_NOISE_DH_LEN);
  if (n->pre_r_s) mix_hash(n, n->initiator ? n->rs : n->s_pub, KH_NOISE_DH_LEN);
  n->started = 1;
  return 1;
}

static int usable(kh_noise *n, int writing, kh_error *err) {
  if (n->dead) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: handshake failed earlier");
  if (n->msg >= n->n_msgs)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: the handshake is done");
  if (kh_noise_my_turn(n) != writing)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: it is the peer's turn to %s",
                  writing ? "write" : "read");
  return start(n, err);
}

/* DH for the token |t| from our side, then MixKey. */
static int dh_token(kh_noise *n, token t, kh_error *err) {
  const uint8_t *priv, *pub;
  int ok;
  switch (t) {
    case T_EE: priv = n->e, pub = n->re, ok = n->has_e && n->has_re; break;
    case T_SS: priv = n->s, pub = n->rs, ok = n->has_s && n->has_rs; break;
    case T_ES:
      if (n->initiator)
        priv = n->e, pub = n->rs, ok = n->has_e && n->has_rs;
      else
        priv = n->s, pub = n->re, ok = n->has_s && n->has_re;
      break;
    default: /* T_SE */
      if (n->initiator)
        priv = n->s, pub = n->re, ok = n->has_s && n->has_re;
      else
        priv = n->e, pub = n->rs, ok = n->has_e && n->has_rs;
      break;
  }
  if (!ok) return dead(n, err, KH_ERR_FAILED_PRECONDITION, "a DH key is missing");
  uint8_t shared[KH_NOISE_DH_LEN];
  if (crypto_scalarmult(shared, priv, pub) != 0) {
    kh_wipe(shared, sizeof(shared));
    return dead(n, err, KH_ERR_PROTOCOL, "the peer's public key is a low-order point");
  }
  mix_key(n, shared, sizeof(shared));
  kh_wipe(shared, sizeof(shared));
  return 1;
}

static int psk_token(kh_noise *n, kh_error *err) {
  if (n->psks_used == n->psks_needed) return dead(n, err, KH_ERR_INTERNAL, "psk tokens miscounted");
  mix_key_and_hash(n, n->psks[n->psks_used++], KH_NOISE_PSK_LEN);
  return 1;
}

int kh_noise_write_tokens(kh_noise *n, kh_buf *out, kh_error *err) {
  if (n->tokens_written)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: the message's payload is due");
  if (!usable(n, 1, err)) return 0;
  size_t mark = out->len;
  for (size_t i = 0; i < n->n_tokens[n->msg]; i++) {
    token t = n->tokens[n->msg][i];
    int ok = 1;
    if (t == T_E) {
      if (!n->has_e) {
        randombytes_buf(n->e, sizeof(n->e));
        if (crypto_scalarmult_base(n->e_pub, n->e) != 0) return dead(n, err, KH_ERR_INTERNAL, "e");
        n->has_e = 1;
      }
      ok = kh_buf_append(out, n->e_pub, KH_NOISE_DH_LEN);
      if (!ok) return dead(n, err, KH_ERR_NOMEM, "out of memory");
      mix_hash(n, n->e_pub, KH_NOISE_DH_LEN);
      if (n->psk_mode) mix_key(n, n->e_pub, KH_NOISE_DH_LEN);
    } else if (t == T_S) {
      ok = encrypt_and_hash(n, n->s_pub, KH_NOISE_DH_LEN, out, err);
    } else if (t == T_PSK) {
      ok = psk_token(n, err);
    } else {
      ok = dh_token(n, t, err);
    }
    if (!ok) return 0;
  }
  if (out->len - mark > KH_NOISE_MAX_MSG_LEN)
    return dead(n, err, KH_ERR_INVALID_ARGUMENT, "handshake message too long");
  n->tokens_written = 1;
  n->tokens_len = out->len - mark;
  return 1;
}

static void message_done(kh_noise *n) {
  n->msg++;
  n->tokens_written = 0;
}

int kh_noise_write_payload(kh_noise *n, const uint8_t *payload, size_t len, kh_buf *out,
                           kh_error *err) {
  if (n->dead) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: handshake failed earlier");
  if (!n->tokens_written)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: the message's tokens come first");
  if (len > KH_NOISE_MAX_MSG_LEN - KH_NOISE_TAG_LEN - n->tokens_len)
    return dead(n, err, KH_ERR_INVALID_ARGUMENT, "handshake payload too long");
  memcpy(n->payload_h, n->h, n->hlen);
  if (!encrypt_and_hash(n, payload, len, out, err)) return 0;
  message_done(n);
  return 1;
}

int kh_noise_write_message(kh_noise *n, const uint8_t *payload, size_t len, kh_buf *out,
                           kh_error *err) {
  if (len > KH_NOISE_MAX_MSG_LEN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: handshake payload too long");
  return kh_noise_write_tokens(n, out, err) && kh_noise_write_payload(n, payload, len, out, err);
}

int kh_noise_read_message(kh_noise *n, const uint8_t *msg, size_t len, kh_buf *payload,
                          kh_error *err) {
  if (!usable(n, 0, err)) return 0;
  if (len > KH_NOISE_MAX_MSG_LEN)
    return dead(n, err, KH_ERR_PROTOCOL, "handshake message too long");
  size_t off = 0;
  for (size_t i = 0; i < n->n_tokens[n->msg]; i++) {
    token t = n->tokens[n->msg][i];
    int ok = 1;
    if (t == T_E) {
      if (len - off < KH_NOISE_DH_LEN) return dead(n, err, KH_ERR_PROTOCOL, "message too short");
      memcpy(n->re, msg + off, KH_NOISE_DH_LEN);
      n->has_re = 1;
      off += KH_NOISE_DH_LEN;
      mix_hash(n, n->re, KH_NOISE_DH_LEN);
      if (n->psk_mode) mix_key(n, n->re, KH_NOISE_DH_LEN);
    } else if (t == T_S) {
      size_t s_len = KH_NOISE_DH_LEN + (n->has_k ? KH_NOISE_TAG_LEN : 0);
      if (len - off < s_len) return dead(n, err, KH_ERR_PROTOCOL, "message too short");
      kh_buf rs = KH_BUF_INIT;
      ok = decrypt_and_hash(n, msg + off, s_len, &rs, err);
      if (ok) memcpy(n->rs, rs.data, KH_NOISE_DH_LEN), n->has_rs = 1;
      kh_buf_free(&rs);
      off += s_len;
    } else if (t == T_PSK) {
      ok = psk_token(n, err);
    } else {
      ok = dh_token(n, t, err);
    }
    if (!ok) return 0;
  }
  memcpy(n->payload_h, n->h, n->hlen);
  size_t mark = payload->len;
  if (!decrypt_and_hash(n, msg + off, len - off, payload, err)) {
    payload->len = mark;
    return 0;
  }
  message_done(n);
  return 1;
}

int kh_noise_my_turn(const kh_noise *n) {
  if (n->dead || n->msg >= n->n_msgs) return 0;
  return (n->msg % 2 == 0) == (n->initiator == 1);
}

int kh_noise_done(const kh_noise *n) {
  return !n->dead && n->msg >= n->n_msgs;
}

const uint8_t *kh_noise_handshake_hash(const kh_noise *n, size_t *len) {
  *len = n->hlen;
  return n->h;
}

const uint8_t *kh_noise_payload_hash(const kh_noise *n, size_t *len) {
  *len = n->hlen;
  return n->payload_h;
}

const uint8_t *kh_noise_remote_static(const kh_noise *n) {
  return n->has_rs ? n->rs : NULL;
}

const uint8_t *kh_noise_local_static(const kh_noise *n) {
  return n->has_s ? n->s_pub : NULL;
}

kh_noise_cipher kh_noise_cipher_of(const kh_noise *n) {
  return n->cipher;
}

kh_noise_hash kh_noise_hash_of(const kh_noise *n) {
  return n->hash;
}

const char *kh_noise_protocol_name(const kh_noise *n) {
  return n->name;
}

int kh_noise_split(kh_noise *n, kh_noise_cipherstate *i_to_r, kh_noise_cipherstate *r_to_i,
                   kh_error *err) {
  if (!kh_noise_done(n))
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "noise: split before the handshake is done");
  uint8_t k1[KH_NOISE_MAX_HASH_LEN], k2[KH_NOISE_MAX_HASH_LEN];
  hkdf(n->hash, n->ck, NULL, 0, k1, k2, NULL);
  i_to_r->cipher = r_to_i->cipher = n->cipher;
  i_to_r->n = r_to_i->n = 0;
  memcpy(i_to_r->k, k1, KH_NOISE_KEY_LEN);
  if (n->one_way)
    kh_wipe(r_to_i->k, KH_NOISE_KEY_LEN);
  else
    memcpy(r_to_i->k, k2, KH_NOISE_KEY_LEN);
  kh_wipe(k1, sizeof(k1));
  kh_wipe(k2, sizeof(k2));
  return 1;
}

int kh_noise_encrypt(kh_noise_cipherstate *cs, const uint8_t *ad, size_t ad_len, const uint8_t *pt,
                     size_t len, kh_buf *out, kh_error *err) {
  if (cs->n == UINT64_MAX) return kh_err(err, KH_ERR_SEQ_OVERFLOW, "noise: nonce exhausted");
  if (len > KH_NOISE_MAX_MSG_LEN - KH_NOISE_TAG_LEN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: transport message too long");
  if (!kh_buf_reserve(out, len + KH_NOISE_TAG_LEN))
    return kh_err(err, KH_ERR_NOMEM, "noise: out of memory");
  aead_encrypt(cs->cipher, cs->k, cs->n++, ad, ad_len, pt, len, out->data + out->len);
  out->len += len + KH_NOISE_TAG_LEN;
  return 1;
}

int kh_noise_decrypt(kh_noise_cipherstate *cs, const uint8_t *ad, size_t ad_len, const uint8_t *ct,
                     size_t len, kh_buf *out, kh_error *err) {
  if (cs->n == UINT64_MAX) return kh_err(err, KH_ERR_SEQ_OVERFLOW, "noise: nonce exhausted");
  if (len < KH_NOISE_TAG_LEN || len > KH_NOISE_MAX_MSG_LEN)
    return kh_err(err, KH_ERR_PROTOCOL, "noise: transport message of %zu bytes", len);
  if (!kh_buf_reserve(out, len)) return kh_err(err, KH_ERR_NOMEM, "noise: out of memory");
  if (!aead_decrypt(cs->cipher, cs->k, cs->n, ad, ad_len, ct, len, out->data + out->len))
    return kh_err(err, KH_ERR_DECRYPT, "noise: transport message does not authenticate");
  cs->n++;
  out->len += len - KH_NOISE_TAG_LEN;
  return 1;
}

void kh_noise_rekey(kh_noise_cipherstate *cs) {
  rekey_key(cs->cipher, cs->k);
}

int kh_noise_keypair(uint8_t priv[KH_NOISE_DH_LEN], uint8_t pub[KH_NOISE_DH_LEN], kh_error *err) {
  if (sodium_init() < 0)
    return kh_err(err, KH_ERR_INTERNAL, "noise: libsodium does not initialise");
  randombytes_buf(priv, KH_NOISE_DH_LEN);
  return kh_noise_public_key(priv, pub, err);
}

int kh_noise_public_key(const uint8_t priv[KH_NOISE_DH_LEN], uint8_t pub[KH_NOISE_DH_LEN],
                        kh_error *err) {
  if (sodium_init() < 0)
    return kh_err(err, KH_ERR_INTERNAL, "noise: libsodium does not initialise");
  if (crypto_scalarmult_base(pub, priv) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "noise: not a usable X25519 private key");
  return 1;
}

/* ticket_keys.c: session-ticket key file and the BoringSSL ticket callback. */
#include "ticket_keys.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/aes.h>
#include <openssl/cipher.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "kh_cursor.h"
#include "kh_secret.h"

#define KEY_LEN 48
#define MAX_FILE 4096

typedef struct {
  uint8_t name[16];
  uint8_t hmac[16];
  uint8_t aes[16];
} ticket_key;

struct kh_ticket_keys {
  ticket_key keys[KH_TICKET_KEYS_MAX];
  size_t n;
  int refs;
};

static kh_ticket_keys *keys_new(void) {
  kh_ticket_keys *k = kh_secret_alloc(sizeof(*k)); /* locked, zeroed */
  if (k != NULL) k->refs = 1;
  return k;
}

/* Reference counts are atomic: handshakes on the crypto worker threads hold
 * references while rotation swaps the current keys on the event loop. */
kh_ticket_keys *kh_ticket_keys_ref(kh_ticket_keys *k) {
  if (k != NULL) __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
  return k;
}

void kh_ticket_keys_unref(kh_ticket_keys *k) {
  if (k != NULL && __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) == 0)
    kh_secret_free(k, sizeof(*k));
}

/* g_slot_mu guards every "current keys" slot: reading the pointer and taking
 * a reference must not race with a swap that drops the last reference. */
static pthread_mutex_t g_slot_mu = PTHREAD_MUTEX_INITIALIZER;

kh_ticket_keys *kh_ticket_keys_get(kh_ticket_keys *const *slot) {
  pthread_mutex_lock(&g_slot_mu);
  kh_ticket_keys *k = kh_ticket_keys_ref(*slot);
  pthread_mutex_unlock(&g_slot_mu);
  return k;
}

void kh_ticket_keys_swap(kh_ticket_keys **slot, kh_ticket_keys *k) {
  pthread_mutex_lock(&g_slot_mu);
  kh_ticket_keys *old = *slot;
  *slot = k;
  pthread_mutex_unlock(&g_slot_mu);
  kh_ticket_keys_unref(old); /* handshakes in progress keep theirs */
}

size_t kh_ticket_keys_count(const kh_ticket_keys *k) {
  return k->n;
}

static int hexval(int c) {
  return isdigit(c)               ? c - '0'
         : (c >= 'a' && c <= 'f') ? c - 'a' + 10
         : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                  : -1;
}

/* next_line splits the next line (without its '\n') off |c|; 0 at the end. */
static int next_line(kh_cursor *c, kh_cursor *line) {
  if (kh_cursor_left(c) == 0) return 0;
  kh_cursor probe = *c;
  size_t n = 0;
  uint8_t b;
  while (kh_cursor_u8(&probe, &b) && b != '\n') n++;
  if (!kh_cursor_sub(c, n, line)) return 0;
  if (!kh_cursor_skip(c, 1)) {
    /* no '\n': a last line without one */
  }
  return 1;
}

/* trim drops leading and trailing white space from |line|. */
static void trim(kh_cursor *line) {
  kh_cursor probe = *line;
  size_t i = 0, first = 0, end = 0;
  uint8_t b;
  while (kh_cursor_u8(&probe, &b)) {
    i++;
    if (isspace(b)) continue;
    if (end == 0) first = i - 1;
    end = i;
  }
  kh_cursor rest = *line;
  if (!kh_cursor_skip(&rest, first) || !kh_cursor_sub(&rest, end - first, line))
    kh_cursor_init(line, NULL, 0);
}

/* hex_byte reads two hex digits off |c|. */
static int hex_byte(kh_cursor *c, uint8_t *out) {
  uint8_t a, b;
  if (!kh_cursor_u8(c, &a) || !kh_cursor_u8(c, &b)) return 0;
  int hi = hexval(a), lo = hexval(b);
  if (hi < 0 || lo < 0) return 0;
  *out = (uint8_t)(hi << 4 | lo);
  return 1;
}

kh_ticket_keys *kh_ticket_keys_parse(const char *text, size_t len, kh_error *err) {
  kh_ticket_keys *k = keys_new();
  if (k == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  unsigned line_no = 0;
  kh_cursor file, line;
  kh_cursor_init(&file, (const uint8_t *)text, len);
  while (next_line(&file, &line)) {
    line_no++;
    trim(&line);
    kh_cursor peek = line;
    uint8_t first;
    if (!kh_cursor_u8(&peek, &first) || first == '#') continue;
    if (kh_cursor_left(&line) != 2 * KEY_LEN) {
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: a key is %d hex digits, found %zu characters",
             line_no, 2 * KEY_LEN, kh_cursor_left(&line));
      goto fail;
    }
    if (k->n == KH_TICKET_KEYS_MAX) {
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: more than %d keys", line_no,
             KH_TICKET_KEYS_MAX);
      goto fail;
    }
    uint8_t *out = (uint8_t *)&k->keys[k->n];
    for (size_t j = 0; j < KEY_LEN; j++) {
      if (!hex_byte(&line, &out[j])) {
        kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: not a hex digit", line_no);
        goto fail;
      }
    }
    k->n++;
  }
  if (k->n == 0) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "no key in the file");
    goto fail;
  }
  return k;
fail:
  kh_ticket_keys_unref(k);
  return NULL;
}

kh_ticket_keys *kh_ticket_keys_load(const char *path, kh_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    kh_err(err, KH_ERR_NOT_FOUND, "ticket keys %s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = kh_secret_alloc(MAX_FILE + 1);
  size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
  fclose(f);
  kh_ticket_keys *k = NULL;
  kh_error e;
  if (buf == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
  } else if (n > MAX_FILE) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "ticket keys %s: larger than %d bytes", path, MAX_FILE);
  } else if ((k = kh_ticket_keys_parse(buf, n, &e)) == NULL) {
    kh_err(err, e.code, "ticket keys %s: %s", path, e.msg);
  }
  kh_secret_free(buf, MAX_FILE + 1);
  return k;
}

kh_ticket_keys *kh_ticket_keys_random(kh_error *err) {
  kh_ticket_keys *k = keys_new();
  if (k == NULL || !RAND_bytes((uint8_t *)&k->keys[0], KEY_LEN)) {
    kh_ticket_keys_unref(k);
    kh_err(err, KH_ERR_INTERNAL, "cannot make a ticket key");
    return NULL;
  }
  k->n = 1;
  return k;
}

static kh_ticket_keys *(*g_get_keys)(SSL *ssl);

/* ticket_cb: BoringSSL's ticket key callback (see ssl.h for its odd
 * return convention). Seals under the first key; opens under any. */
static int ticket_cb(SSL *ssl, uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx,
                     int encrypt) {
  kh_ticket_keys *(*get_keys)(SSL *) = __atomic_load_n(&g_get_keys, __ATOMIC_ACQUIRE);
  kh_ticket_keys *k = get_keys ? get_keys(ssl) : NULL;
  if (k == NULL || k->n == 0) return encrypt ? -1 : 0;
  if (encrypt) {
    const ticket_key *t = &k->keys[0];
    memcpy(key_name, t->name, 16);
    if (!RAND_bytes(iv, 16) || !EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, t->aes, iv) ||
        !HMAC_Init_ex(hctx, t->hmac, 16, EVP_sha256(), NULL))
      return -1;
    return 1;
  }
  for (size_t i = 0; i < k->n; i++) {
    const ticket_key *t = &k->keys[i];
    if (CRYPTO_memcmp(key_name, t->name, 16) != 0) continue;
    if (!HMAC_Init_ex(hctx, t->hmac, 16, EVP_sha256(), NULL) ||
        !EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, t->aes, iv))
      return -1;
    return i == 0 ? 1 : 2; /* opened with an older key: re-issue under the current one */
  }
  return 0; /* unknown key: full handshake */
}

int kh_ticket_keys_install(SSL_CTX *ctx, kh_ticket_keys *(*get_keys)(SSL *ssl)) {
  __atomic_store_n(&g_get_keys, get_keys, __ATOMIC_RELEASE); /* the same one every time */
  return SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_cb);
}

/* --- tickets sealed for S2A v2 clients (OffloadResumptionKeyOperation) ---- */

static const char k_seal_label[] = "keyhold s2a v2 ticket";

/* seal_mac: HMAC-SHA256 under |t| over the label, then |data|: the label
 * keeps tickets BoringSSL sealed for S2A v1 (same keys, no label) from
 * opening here. */
static int seal_mac(const ticket_key *t, const uint8_t *data, size_t len, uint8_t mac[32]) {
  HMAC_CTX h;
  HMAC_CTX_init(&h);
  unsigned n = 0;
  int ok = HMAC_Init_ex(&h, t->hmac, sizeof(t->hmac), EVP_sha256(), NULL) &&
           HMAC_Update(&h, (const uint8_t *)k_seal_label, sizeof(k_seal_label) - 1) &&
           HMAC_Update(&h, data, len) && HMAC_Final(&h, mac, &n) && n == 32;
  HMAC_CTX_cleanup(&h);
  return ok;
}

int kh_ticket_keys_seal(const kh_ticket_keys *k, const uint8_t *in, size_t len, kh_buf *out,
                        kh_error *err) {
  if (k == NULL || k->n == 0)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "no ticket keys are loaded");
  if (len > KH_TICKET_SEAL_MAX_IN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%zu bytes to seal, at most %u", len,
                  KH_TICKET_SEAL_MAX_IN);
  const ticket_key *t = &k->keys[0];
  size_t start = out->len;
  if (!kh_buf_reserve(out, len + KH_TICKET_SEAL_OVERHEAD))
    return kh_err(err, KH_ERR_NOMEM, "out of memory sealing a ticket");
  uint8_t *p = out->data + start;
  memcpy(p, t->name, 16);
  EVP_CIPHER_CTX c;
  EVP_CIPHER_CTX_init(&c);
  int n1 = 0, n2 = 0;
  int ok =
      RAND_bytes(p + 16, 16) && EVP_EncryptInit_ex(&c, EVP_aes_128_cbc(), NULL, t->aes, p + 16) &&
      EVP_EncryptUpdate(&c, p + 32, &n1, in, (int)len) && EVP_EncryptFinal_ex(&c, p + 32 + n1, &n2);
  EVP_CIPHER_CTX_cleanup(&c);
  size_t body = 32 + (size_t)n1 + (size_t)n2;
  ok = ok && seal_mac(t, p, body, p + body);
  if (!ok) {
    kh_wipe(p, len + KH_TICKET_SEAL_OVERHEAD);
    return kh_err(err, KH_ERR_INTERNAL, "sealing a ticket failed");
  }
  out->len = start + body + 32;
  return 1;
}

int kh_ticket_keys_open(const kh_ticket_keys *k, const uint8_t *in, size_t len, kh_buf *out,
                        kh_error *err) {
  if (k == NULL || k->n == 0)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "no ticket keys are loaded");
  if (len < 16 + 16 + 16 + 32 || (len - 16 - 16 - 32) % 16 != 0 ||
      len > KH_TICKET_SEAL_MAX_IN + KH_TICKET_SEAL_OVERHEAD)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "a sealed ticket of %zu bytes cannot be one of ours", len);
  const ticket_key *t = NULL;
  for (size_t i = 0; i < k->n && t == NULL; i++)
    if (CRYPTO_memcmp(in, k->keys[i].name, 16) == 0) t = &k->keys[i];
  if (t == NULL)
    return kh_err(err, KH_ERR_NOT_FOUND, "the ticket's key is not (or no longer) loaded");
  uint8_t mac[32];
  size_t body = len - 32;
  if (!seal_mac(t, in, body, mac) || CRYPTO_memcmp(mac, in + body, 32) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the ticket does not authenticate");
  size_t start = out->len;
  if (!kh_buf_reserve(out, body - 32))
    return kh_err(err, KH_ERR_NOMEM, "out of memory opening a ticket");
  EVP_CIPHER_CTX c;
  EVP_CIPHER_CTX_init(&c);
  int n1 = 0, n2 = 0;
  int ok = EVP_DecryptInit_ex(&c, EVP_aes_128_cbc(), NULL, t->aes, in + 16) &&
           EVP_DecryptUpdate(&c, out->data + start, &n1, in + 32, (int)(body - 32)) &&
           EVP_DecryptFinal_ex(&c, out->data + start + n1, &n2);
  EVP_CIPHER_CTX_cleanup(&c);
  if (!ok) {
    kh_wipe(out->data + start, body - 32);
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the ticket does not decrypt");
  }
  out->len = start + (size_t)n1 + (size_t)n2;
  return 1;
}

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

kh_ticket_keys *kh_ticket_keys_parse(const char *text, size_t len, kh_error *err) {
  kh_ticket_keys *k = keys_new();
  if (k == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  unsigned line = 0;
  for (size_t i = 0; i < len;) {
    size_t end = i;
    while (end < len && text[end] != '\n') end++;
    line++;
    size_t a = i, b = end;
    while (a < b && isspace((unsigned char)text[a])) a++;
    while (b > a && isspace((unsigned char)text[b - 1])) b--;
    i = end + 1;
    if (a == b || text[a] == '#') continue;
    if (b - a != 2 * KEY_LEN) {
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: a key is %d hex digits, found %zu characters",
             line, 2 * KEY_LEN, b - a);
      goto fail;
    }
    if (k->n == KH_TICKET_KEYS_MAX) {
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: more than %d keys", line, KH_TICKET_KEYS_MAX);
      goto fail;
    }
    uint8_t *out = (uint8_t *)&k->keys[k->n];
    for (size_t j = 0; j < KEY_LEN; j++) {
      int hi = hexval((unsigned char)text[a + 2 * j]),
          lo = hexval((unsigned char)text[a + 2 * j + 1]);
      if (hi < 0 || lo < 0) {
        kh_err(err, KH_ERR_INVALID_ARGUMENT, "line %u: not a hex digit", line);
        goto fail;
      }
      out[j] = (uint8_t)(hi << 4 | lo);
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

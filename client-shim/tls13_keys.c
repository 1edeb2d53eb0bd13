/* tls13_keys.c: HKDF-Expand-Label and traffic keys (RFC 8446 7.1-7.3) on
 * OpenSSL 3 libcrypto. */
#include "tls13_keys.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "kh_builder.h"
#include "kh_secret.h"

/* OpenSSL 3 looks an algorithm up by name on every fetch; with the caches
 * cold between handshakes the four derivations of a new connection cost
 * ~20 us that way. HMAC is fetched once per hash, with the digest set, and
 * every HMAC runs on a copy of that template (EVP_MAC_CTX_dup). */
enum { HASH_SHA256, HASH_SHA384, HASH_COUNT };
static EVP_MAC_CTX *g_hmac[HASH_COUNT];
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;

static void hmac_templates(void) {
  static const char *const names[HASH_COUNT] = {"SHA256", "SHA384"};
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  for (int i = 0; mac != NULL && i < HASH_COUNT; i++) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)names[i], 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
    if (c != NULL && EVP_MAC_CTX_set_params(c, params) != 1) {
      EVP_MAC_CTX_free(c);
      c = NULL;
    }
    g_hmac[i] = c;
  }
  EVP_MAC_free(mac);
}

static size_t suite_key_len(kh_suite suite) {
  return suite == KH_SUITE_AES_128_GCM_SHA256 ? 16 : 32;
}

int kh_hkdf_expand(kh_suite suite, const uint8_t *prk, size_t prk_len, const uint8_t *info,
                   size_t info_len, uint8_t *out, size_t out_len, kh_error *err) {
  size_t hash_len = kh_suite_secret_len(suite);
  if (out_len > 255 * hash_len)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "HKDF output of %zu bytes too long", out_len);
  pthread_once(&g_hmac_once, hmac_templates);
  EVP_MAC_CTX *tmpl = g_hmac[hash_len == 48 ? HASH_SHA384 : HASH_SHA256];
  if (tmpl == NULL) return kh_err(err, KH_ERR_INTERNAL, "HMAC unavailable in libcrypto");
  /* T(i) = HMAC(prk, T(i-1) || info || i); the output is T(1) || T(2) ... */
  uint8_t t[EVP_MAX_MD_SIZE];
  size_t t_len = 0;
  int ok = 1;
  for (uint8_t i = 1; ok && out_len > 0; i++) {
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(tmpl);
    ok = c != NULL && EVP_MAC_init(c, prk, prk_len, NULL) == 1 &&
         EVP_MAC_update(c, t, t_len) == 1 && EVP_MAC_update(c, info, info_len) == 1 &&
         EVP_MAC_update(c, &i, 1) == 1 && EVP_MAC_final(c, t, &t_len, sizeof(t)) == 1 &&
         t_len == hash_len;
    EVP_MAC_CTX_free(c); /* wipes the keyed state */
    if (ok) {
      size_t take = out_len < t_len ? out_len : t_len;
      memcpy(out, t, take);
      out += take;
      out_len -= take;
    }
  }
  kh_wipe(t, sizeof(t));
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "HKDF-Expand failed");
  return 1;
}

int kh_hkdf_expand_label(kh_suite suite, const uint8_t *secret, size_t secret_len,
                         const char *label, const uint8_t *context, size_t context_len,
                         uint8_t *out, size_t out_len, kh_error *err) {
  /* struct { uint16 length; opaque label<7..255> = "tls13 " + label;
   *          opaque context<0..255>; } HkdfLabel; */
  uint8_t info[2 + 1 + 255 + 1 + 255];
  size_t label_len = strlen(label), n = 0;
  if (label_len > 255 - 6 || context_len > 255 || out_len > 0xffff)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "HKDF label or context too long");
  kh_builder b;
  kh_builder_init_fixed(&b, info, sizeof(info));
  kh_builder_u16(&b, (uint32_t)out_len);
  kh_builder_open_u8(&b);
  kh_builder_bytes(&b, "tls13 ", 6);
  kh_builder_bytes(&b, label, label_len);
  kh_builder_close(&b);
  kh_builder_open_u8(&b);
  kh_builder_bytes(&b, context, context_len);
  kh_builder_close(&b);
  if (!kh_builder_finish(&b, &n, err)) return 0;

  int ok = kh_hkdf_expand(suite, secret, secret_len, info, n, out, out_len, err);
  kh_wipe(info, sizeof(info));
  return ok;
}

int kh_tls13_traffic_keys(kh_suite suite, const uint8_t *secret, size_t secret_len,
                          uint8_t key[KH_AEAD_MAX_KEY], size_t *out_key_len,
                          uint8_t iv[KH_AEAD_IV_LEN], kh_error *err) {
  size_t key_len = suite_key_len(suite);
  if (!kh_hkdf_expand_label(suite, secret, secret_len, "key", NULL, 0, key, key_len, err) ||
      !kh_hkdf_expand_label(suite, secret, secret_len, "iv", NULL, 0, iv, KH_AEAD_IV_LEN, err))
    return 0;
  *out_key_len = key_len;
  return 1;
}

int kh_tls13_update_secret(kh_suite suite, uint8_t *secret, size_t secret_len, kh_error *err) {
  uint8_t next[KH_MAX_SECRET_LEN];
  if (secret_len > sizeof(next))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "traffic secret too long");
  if (!kh_hkdf_expand_label(suite, secret, secret_len, "traffic upd", NULL, 0, next, secret_len,
                            err))
    return 0;
  memcpy(secret, next, secret_len);
  kh_wipe(next, sizeof(next));
  return 1;
}

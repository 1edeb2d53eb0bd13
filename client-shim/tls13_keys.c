/* tls13_keys.c: HKDF-Expand-Label and traffic keys (RFC 8446 7.1-7.3) on
 * OpenSSL 3 libcrypto. */
#include "tls13_keys.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "kh_secret.h"

static const char *suite_digest(kh_suite suite) {
  return suite == KH_SUITE_AES_256_GCM_SHA384 ? "SHA384" : "SHA256";
}

static size_t suite_key_len(kh_suite suite) {
  return suite == KH_SUITE_AES_128_GCM_SHA256 ? 16 : 32;
}

int kh_hkdf_expand_label(kh_suite suite, const uint8_t *secret, size_t secret_len,
                         const char *label, const uint8_t *context, size_t context_len,
                         uint8_t *out, size_t out_len, kh_error *err) {
  /* struct { uint16 length; opaque label<7..255> = "tls13 " + label;
   *          opaque context<0..255>; } HkdfLabel; */
  uint8_t info[2 + 1 + 255 + 1 + 255];
  size_t label_len = strlen(label);
  if (label_len > 255 - 6 || context_len > 255 || out_len > 0xffff)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "HKDF label or context too long");
  size_t n = 0;
  info[n++] = (uint8_t)(out_len >> 8);
  info[n++] = (uint8_t)out_len;
  info[n++] = (uint8_t)(6 + label_len);
  memcpy(&info[n], "tls13 ", 6);
  n += 6;
  memcpy(&info[n], label, label_len);
  n += label_len;
  info[n++] = (uint8_t)context_len;
  if (context_len) memcpy(&info[n], context, context_len);
  n += context_len;

  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)suite_digest(suite), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  int ok = kctx != NULL && EVP_KDF_derive(kctx, out, out_len, params) == 1;
  EVP_KDF_CTX_free(kctx);
  EVP_KDF_free(kdf);
  kh_wipe(info, sizeof(info));
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "HKDF-Expand-Label(%s) failed", label);
  return 1;
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

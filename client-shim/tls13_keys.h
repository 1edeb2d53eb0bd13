/* tls13_keys.h: TLS 1.3 key schedule pieces the shim needs (RFC 8446 7.1,
 * 7.2, 7.3), on OpenSSL 3 libcrypto. */
#ifndef KH_TLS13_KEYS_H
#define KH_TLS13_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "aead.h"
#include "kh_error.h"
#include "kh_tls.h"

/* HKDF-Expand(prk, info, out_len) (RFC 5869 2.3) with the suite's hash;
 * out_len at most 255 hash lengths. */
KH_MUST_USE int kh_hkdf_expand(kh_suite suite, const uint8_t *prk, size_t prk_len,
                               const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len,
                               kh_error *err);

/* HKDF-Expand-Label(secret, "tls13 " || label, context, out_len) with the
 * suite's hash. */
KH_MUST_USE int kh_hkdf_expand_label(kh_suite suite, const uint8_t *secret, size_t secret_len,
                                     const char *label, const uint8_t *context, size_t context_len,
                                     uint8_t *out, size_t out_len, kh_error *err);

/* Record key and IV from a traffic secret ("key", "iv"). */
KH_MUST_USE int kh_tls13_traffic_keys(kh_suite suite, const uint8_t *secret, size_t secret_len,
                                      uint8_t key[KH_AEAD_MAX_KEY], size_t *out_key_len,
                                      uint8_t iv[KH_AEAD_IV_LEN], kh_error *err);

/* Next-generation traffic secret for KeyUpdate ("traffic upd"), in place. */
KH_MUST_USE int kh_tls13_update_secret(kh_suite suite, uint8_t *secret, size_t secret_len,
                                       kh_error *err);

#endif /* KH_TLS13_KEYS_H */

/* kh_tls.h: TLS 1.3 facts shared by the sidecar engine and the shim's record
 * layer (no crypto library here). Suite numbers equal S2A v1's Ciphersuite. */
#ifndef KH_TLS_H
#define KH_TLS_H

#include <stdint.h>

typedef enum {
  KH_SUITE_AES_128_GCM_SHA256 = 0,
  KH_SUITE_AES_256_GCM_SHA384 = 1,
  KH_SUITE_CHACHA20_POLY1305_SHA256 = 2,
} kh_suite;

#define KH_SUITE_COUNT 3
#define KH_SUITE_BIT(s) (1u << (unsigned)(s))
#define KH_SUITE_ALL (KH_SUITE_BIT(0) | KH_SUITE_BIT(1) | KH_SUITE_BIT(2))

#define KH_MAX_SECRET_LEN 48 /* SHA-384 */
#define KH_SHA256_LEN 32

/* IANA code point <-> kh_suite; returns -1 for anything else. */
static inline int kh_suite_from_iana(uint16_t id) {
  switch (id) {
    case 0x1301: return KH_SUITE_AES_128_GCM_SHA256;
    case 0x1302: return KH_SUITE_AES_256_GCM_SHA384;
    case 0x1303: return KH_SUITE_CHACHA20_POLY1305_SHA256;
    default: return -1;
  }
}

static inline const char *kh_suite_name(int s) {
  switch (s) {
    case KH_SUITE_AES_128_GCM_SHA256: return "TLS_AES_128_GCM_SHA256";
    case KH_SUITE_AES_256_GCM_SHA384: return "TLS_AES_256_GCM_SHA384";
    case KH_SUITE_CHACHA20_POLY1305_SHA256: return "TLS_CHACHA20_POLY1305_SHA256";
    default: return "unknown";
  }
}

/* Secret length (hash length) of a suite. */
static inline unsigned kh_suite_secret_len(int s) {
  return s == KH_SUITE_AES_256_GCM_SHA384 ? 48u : 32u;
}

#endif /* KH_TLS_H */

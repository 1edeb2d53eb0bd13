/* noise_key.h: an identity's static X25519 key for Noise secure channels.
 *
 * It lives beside the certificate as `noise.key` (PKCS#8 PEM, as
 * `openssl genpkey -algorithm X25519` writes it), so it is rotated with the
 * identity: a reload reads it again. An identity directory without one gets
 * a fresh key written there with mode 0600 on first load. Where the
 * directory cannot be written (a read-only Kubernetes Secret mount), the key
 * is generated in memory and lasts until keyholdd restarts; a warning says
 * so, and IK initiators must then ask for the key again after a restart.
 * A noise.key readable by group or others is refused, as ssh refuses such
 * keys. BoringSSL only (sidecar side). */
#ifndef KH_NOISE_KEY_H
#define KH_NOISE_KEY_H

#include <stdint.h>

#include <openssl/base.h>

#include "kh_error.h"

#define KH_NOISE_KEY_FILE "noise.key"
#define KH_X25519_LEN 32

typedef struct kh_noise_static {
  uint8_t priv[KH_X25519_LEN];
  uint8_t pub[KH_X25519_LEN];
  int persistent; /* 0: generated in memory only (directory read-only) */
} kh_noise_static;

/* kh_noise_static_load reads or creates |dir|/noise.key. The key is in
 * locked memory; free it with kh_noise_static_free. */
KH_MUST_USE kh_noise_static *kh_noise_static_load(const char *dir, kh_error *err);
/* kh_x25519_file_load: the same for any X25519 key file |file| of the
 * identity directory (the sealing key, seal.key); |what| names it in logs. */
KH_MUST_USE kh_noise_static *kh_x25519_file_load(const char *dir, const char *file,
                                                 const char *what, kh_error *err);
#define KH_SEAL_KEY_FILE "seal.key"

/* kh_private_key_file_load: the PKCS#8 private key |dir|/|file| of |type|
 * (EVP_PKEY_X25519, or EVP_PKEY_EC for P-256), created 0600 when missing
 * (in memory only, with a warning, where the directory is read-only:
 * |*persistent| 0). Refused if group- or world-readable. */
KH_MUST_USE EVP_PKEY *kh_private_key_file_load(const char *dir, const char *file, const char *what,
                                               int type, int *persistent, kh_error *err);
#define KH_DPOP_KEY_FILE "dpop.key"
void kh_noise_static_free(kh_noise_static *k);

#endif /* KH_NOISE_KEY_H */

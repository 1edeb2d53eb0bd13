/* kh_traffic.h: the one traffic-keys hand-off type, shared by the sidecar's
 * TLS engine (which fills it), the S2A v1 session (which packs it), the
 * shim's S2A client (which unpacks into it) and the shim's record layer
 * (which is keyed from it). Fixed-size fields, no pointers: it can be wiped
 * with one kh_wipe(&keys, sizeof(keys)) and lives inside whatever memory its
 * holder chose (locked kh_secret_alloc memory in the shim).
 *
 * Where the secrets are copied on their way from BoringSSL to the record
 * layer, each copy into memory that is wiped after use:
 *   1. sidecar/tls/tls_secrets.cc kh_ssl_traffic_keys: BoringSSL's current
 *      secrets into kh_tls_result.keys (s2a_session.c respond()'s stack;
 *      wiped there once packed).
 *   2. sidecar/s2a/s2a_session.c respond(): protobuf-c packs them (in_key /
 *      out_key point into kh_tls_result.keys, no copy of their own) into the
 *      response kh_buf, which is wiped when reset or freed after the send.
 *      [gRPC then carries the message in slices of its own on both ends;
 *      the shim's sidecar_stream.c wipes its slices as it copies them out.]
 *   3. client-shim/s2a_hs.c: protobuf-c's unpack copies them into the
 *      decoded SessionResp (wiped by wipe_unpacked before it is freed), and
 *      take_result copies them into kh_s2a_result.keys inside the kh_s2a_hs
 *      (locked memory, wiped by kh_s2a_hs_free).
 *   4. client-shim/record.c kh_record_new: into the record layer's
 *      per-direction secrets (locked memory, wiped by kh_record_free), from
 *      which the key schedule derives key and IV for the AEAD.
 * Nothing else copies this struct or its secrets: the engine result, the
 * S2A result and the record configuration are this type or point to it. */
#ifndef KH_TRAFFIC_H
#define KH_TRAFFIC_H

#include <stddef.h>
#include <stdint.h>

#include "kh_tls.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KH_TLS_VERSION_1_3 0x0304

typedef struct {
  uint16_t tls_version; /* KH_TLS_VERSION_1_3 */
  kh_suite suite;
  size_t secret_len;                     /* kh_suite_secret_len(suite) */
  uint8_t in_secret[KH_MAX_SECRET_LEN];  /* the peer's application traffic secret */
  uint8_t out_secret[KH_MAX_SECRET_LEN]; /* ours */
  uint64_t in_sequence;                  /* next record sequence numbers, read and write */
  uint64_t out_sequence;
} kh_traffic_keys;

#ifdef __cplusplus
}
#endif

#endif /* KH_TRAFFIC_H */

/* key_ops.h: keyhold.v1.KeyOperations, sans-IO: one serialized request in,
 * one serialized response out (proto/keyhold/v1/key_ops.proto).
 *   GetPublicKeys  the identity's sealing public key (any caller the policy
 *                  grants the identity for `open-sealed`)
 *   OpenSealed     opens a libsodium sealed box with the identity's sealing
 *                  key (grant `open-sealed`); the plaintext is the only
 *                  secret that leaves keyholdd, and only to that caller.
 * Every call is logged: caller, identity, operation, result, sizes; never
 * the plaintext. */
#ifndef KH_KEY_OPS_H
#define KH_KEY_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "caller.h"
#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "policy_slot.h"

/* The largest sealed message OpenSealed takes (the plaintext is 48 bytes
 * shorter). */
#define KH_SEALED_MAX (256 * 1024)

typedef enum {
  KH_KEYOP_PUBLIC_KEYS = 0,
  KH_KEYOP_OPEN_SEALED = 1,
  KH_KEYOP_DPOP_PROOF = 2,      /* grant `dpop` (dpop.h) */
  KH_KEYOP_DPOP_THUMBPRINT = 3, /* grant `dpop` */
  KH_KEYOP_OPEN_ENVELOPE = 4,   /* grant `open-sealed` (+ `legacy-pkcs1v15`) */
} kh_keyop;

typedef struct {
  const kh_identity_store *store;
  kh_policy_slot *policy; /* NULL: no authorization (tests, fuzzing only) */
  /* The envelopes' implicit-rejection secret (envelope.h): random, per
   * process, in locked memory. NULL: PKCS#1 v1.5 envelopes refused. */
  const uint8_t *reject_key;
} kh_keyops_env;

/* kh_keyop_handle runs |op| on request |req|; on success |resp| holds the
 * serialized response. Errors: INVALID_ARGUMENT (malformed request, a sealed
 * box that does not open: too short, altered, or sealed to another key),
 * PERMISSION_DENIED, NOT_FOUND (own uid only), RESOURCE_EXHAUSTED (size). */
KH_MUST_USE int kh_keyop_handle(const kh_keyops_env *env, const kh_caller *caller, kh_keyop op,
                                const uint8_t *req, size_t len, kh_buf *resp, char *identity,
                                size_t identity_len, kh_error *err);

#endif /* KH_KEY_OPS_H */

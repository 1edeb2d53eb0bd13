/* authz.h: the one place keyholdd decides who may do what.
 *
 * The grants are the policy file's `identities:` rules (policy.h parses
 * them; without a file, kh_grants_builtin). A service asks kh_authz_decide
 * whether a caller, presenting its access tokens, may run an operation with
 * an identity, and gets back a kh_grant: plain data saying what the engine
 * must enforce (which peers, ALPN protocols and suites). The listener asks
 * kh_authz_admits at accept time whether a caller could be granted anything
 * at all. Nothing else looks at the rules. */
#ifndef KH_AUTHZ_H
#define KH_AUTHZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "caller.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "peer_check.h"

#define KH_TOKEN_HASH_LEN 32

/* One identity's rule. |name| is the identity's directory name, or "*" for
 * a rule that applies to every identity without a rule of its own. */
typedef struct {
  char *name;
  unsigned line; /* where the rule starts in the policy file, for messages */
  uid_t *uids;
  size_t n_uids;
  gid_t *gids;
  size_t n_gids;
  uint8_t (*tokens)[KH_TOKEN_HASH_LEN]; /* SHA-256 of each token; plaintext wiped */
  size_t n_tokens;
  kh_peer_check peers; /* peers: lists (empty: any verified peer) */
  kh_strlist alpn;     /* empty: any */
  uint32_t suites;     /* KH_SUITE_BIT mask; 0: any */
  uint32_t operations; /* KH_GRANT_* mask (the rule's `operations:`); 0: all */
} kh_grant_rule;

typedef struct {
  kh_grant_rule *rules;
  size_t n_rules;
  int refs; /* references beyond the first (kh_grants_ref), atomic */
} kh_grants;

/* kh_grants_builtin: the secure default: only |self| may use any identity. */
KH_MUST_USE kh_grants *kh_grants_builtin(uid_t self);

/* kh_grants_ref adds a reference (any thread); |g| may be NULL. */
kh_grants *kh_grants_ref(kh_grants *g);
/* kh_grants_free drops a reference; the last one wipes the token digests
 * and frees |g| (NULL is fine). */
void kh_grants_free(kh_grants *g);

/* What a caller asks to do with an identity, and the grant of the policy's
 * `operations:` list each one needs: S2A v1 handshakes (either side) need
 * `tls-offload`; S2A v2's GetTlsConfiguration and SIGN need `sign`,
 * ValidatePeerCertificateChain `validate`, OffloadResumptionKeyOperation
 * `ticket-keys`. Coming operations (secure channels, sealed-box open, DPoP)
 * join this list with grants of their own. */
typedef enum {
  KH_OP_TLS_CLIENT_HANDSHAKE = 0,
  KH_OP_TLS_SERVER_HANDSHAKE = 1,
  KH_OP_TLS_CONFIG = 2,
  KH_OP_SIGN = 3,
  KH_OP_VALIDATE = 4,
  KH_OP_TICKET_KEYS = 5,
  KH_OP_SECURE_CHANNEL = 6, /* a Noise handshake (keyhold.v1.SecureChannel) */
  KH_OP_OPEN_SEALED = 7,    /* open a sealed box (keyhold.v1.KeyOperations) */
  KH_OP_DPOP = 8,           /* sign a DPoP proof (keyhold.v1.KeyOperations) */
} kh_operation;

#define KH_GRANT_TLS_OFFLOAD (1u << 0)
#define KH_GRANT_SIGN (1u << 1)
#define KH_GRANT_VALIDATE (1u << 2)
#define KH_GRANT_TICKET_KEYS (1u << 3)
#define KH_GRANT_SECURE_CHANNEL (1u << 4)
#define KH_GRANT_OPEN_SEALED (1u << 5)
#define KH_GRANT_DPOP (1u << 6)
/* Not an operation of its own: it lets OpenEnvelope unwrap PKCS#1 v1.5
 * envelopes for the identity, and only when listed (a rule without
 * `operations:` does not include it). */
#define KH_GRANT_LEGACY_PKCS1V15 (1u << 7)

/* kh_operation_grant: the KH_GRANT_* bit |op| needs; kh_grant_name its name
 * in the policy ("tls-offload", "sign", "validate", "ticket-keys"), and
 * kh_grant_from_name the reverse (0: unknown). */
uint32_t kh_operation_grant(kh_operation op);
const char *kh_grant_name(uint32_t grant);
uint32_t kh_grant_from_name(const char *name);

/* kh_grant: what the caller may do with the identity; everything borrowed
 * from the kh_grants (and |identity| from the caller of decide), valid while
 * they are. The engine enforces it. No per-grant limits exist yet: limits
 * are per caller (kh_limits.h). */
typedef struct {
  const char *identity; /* the identity's directory name, as decided */
  kh_operation op;
  const kh_peer_check *peer_check; /* which verified peers; NULL: any */
  const char *const *alpn;         /* allowed ALPN protocols ... */
  size_t n_alpn;                   /* ... 0: any requested */
  uint32_t suites;                 /* KH_SUITE_BIT mask; 0: any */
  uint32_t operations;             /* the rule's `operations:` as written (0: none listed) */
} kh_grant;

/* kh_authz_decide: may |caller|, presenting |tokens|, run |op| with the
 * identity whose directory name is |identity|? Granted by uid, by primary
 * gid, or by a token (SHA-256 digests compared in constant time, every one
 * with every one), if the rule's operations include |op|'s grant. The
 * identity's own rule applies, else the "*" rule. On
 * success fills |out|. Refusal: KH_ERR_PERMISSION_DENIED, "caller uid N may
 * not use identity 'NAME'" (with " (the access token presented does not
 * grant it)" when tokens were presented). */
KH_MUST_USE int kh_authz_decide(const kh_grants *g, const kh_caller *caller,
                                const char *const *tokens, size_t n_tokens, kh_operation op,
                                const char *identity, kh_grant *out, kh_error *err);

/* kh_authz_default_identity: the caller's default identity for |op|: the
 * directory name of the one rule (other than "*") that grants |caller| (by
 * uid, gid or one of |tokens|) |op|, or NULL if none or several do. For
 * requests that name no identity. */
const char *kh_authz_default_identity(const kh_grants *g, const kh_caller *caller,
                                      const char *const *tokens, size_t n_tokens, kh_operation op);

/* kh_authz_admits: could |caller| be granted anything at all (by its uid or
 * gid, or, since tokens come per call, by any rule that takes tokens)?
 * Decided at accept time; a caller it does not admit is refused unread. */
KH_MUST_USE int kh_authz_admits(const kh_grants *g, const kh_caller *caller);

/* kh_grants_rule_for returns the rule for identity directory |name| (its
 * own or the "*" rule), or NULL if no rule names it. For tests and tools:
 * decisions go through kh_authz_decide. */
const kh_grant_rule *kh_grants_rule_for(const kh_grants *g, const char *name);

#endif /* KH_AUTHZ_H */

/* policy.h: who may use which identity, and how (keyholdd's policy file).
 *
 * The file is YAML (see docs/POLICY.md for the schema). Without a file the
 * built-in policy applies: only callers running as keyholdd's own uid may use
 * any identity. Errors name the file, line, column and field:
 *   policy.yaml:12:9: identities.web.callers.uids[1]: unknown user 'nobdy'
 * Parsing is bounded (size, depth, node count); this is a fuzz target. */
#ifndef KH_POLICY_H
#define KH_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "caller.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "kh_limits.h"
#include "peer_check.h"

#define KH_TOKEN_HASH_LEN 32

/* One identity's rules. |name| is the identity's directory name, or "*" for
 * a rule that applies to every identity without a rule of its own. */
typedef struct {
  char *name;
  unsigned line; /* where the rule starts, for messages */
  uid_t *uids;
  size_t n_uids;
  gid_t *gids;
  size_t n_gids;
  uint8_t (*tokens)[KH_TOKEN_HASH_LEN]; /* SHA-256 of each token; plaintext wiped */
  size_t n_tokens;
  kh_peer_check peers; /* peers: lists (empty: any verified peer) */
  kh_strlist alpn;     /* empty: any */
  uint32_t suites;     /* KH_SUITE_BIT mask; 0: any */
} kh_policy_rule;

typedef struct {
  char *file; /* NULL for the built-in policy */
  char *socket_path;
  char *identities_dir;
  int socket_mode;  /* -1: default 0660 */
  gid_t socket_gid; /* valid if has_socket_gid */
  int has_socket_gid;
  kh_limits limits; /* caps and timeouts (kh_limits.h) */
  char *ticket_keys_file;
  kh_policy_rule *rules;
  size_t n_rules;
} kh_policy;

/* kh_policy_builtin: the secure default (only |self| may use identities). */
kh_policy *kh_policy_builtin(uid_t self);

/* kh_policy_load parses |path|. |err| carries "path:line:col: field: reason". */
kh_policy *kh_policy_load(const char *path, kh_error *err);

/* kh_policy_parse parses |len| bytes named |name| in messages (tests, fuzzing). */
kh_policy *kh_policy_parse(const char *name, const char *data, size_t len, kh_error *err);

void kh_policy_free(kh_policy *p);

/* kh_policy_rule_for returns the rule for identity directory |name| (its own
 * or the "*" rule), or NULL if no rule names it. */
const kh_policy_rule *kh_policy_rule_for(const kh_policy *p, const char *name);

/* kh_policy_authorize: may |caller|, presenting |tokens|, use identity |name|?
 * Granted by uid, by primary gid, or by a token (constant-time compared).
 * Refusal: KH_ERR_PERMISSION_DENIED naming the uid and identity. */
int kh_policy_authorize(const kh_policy *p, const char *name, const kh_caller *caller,
                        const char *const *tokens, size_t n_tokens, kh_error *err);

/* kh_policy_admits: is |caller| granted any identity at all (by uid or
 * gid, or could it be by a token)? Decided at accept time. */
int kh_policy_admits(const kh_policy *p, const kh_caller *caller);

#endif /* KH_POLICY_H */

/* policy.h: keyholdd's policy file, parsed into daemon configuration
 * (config.h) and grants (authz.h). Only parsing here; the decisions are
 * authz.h's.
 *
 * The file is YAML (see docs/POLICY.md for the schema). Without a file the
 * built-in grants apply (kh_grants_builtin): only callers running as
 * keyholdd's own uid may use any identity. Errors name the file, line,
 * column and field:
 *   policy.yaml:12:9: identities.web.callers.uids[1]: unknown user 'nobdy'
 * Parsing is bounded (size, depth, node count); this is a fuzz target. */
#ifndef KH_POLICY_H
#define KH_POLICY_H

#include <stddef.h>

#include "authz.h"
#include "config.h"
#include "kh_error.h"

/* kh_policy_load parses |path|: the fields the file sets go into |cfg|
 * (kh_config_init'ed by the caller; its |file| becomes |path|), and the
 * grants are returned. |err| carries "path:line:col: field: reason". On
 * failure |cfg| may hold some fields (kh_config_cleanup frees them). */
KH_MUST_USE kh_grants *kh_policy_load(const char *path, kh_config *cfg, kh_error *err);

/* kh_policy_parse parses |len| bytes named |name| in messages (tests, fuzzing). */
KH_MUST_USE kh_grants *kh_policy_parse(const char *name, const char *data, size_t len,
                                       kh_config *cfg, kh_error *err);

#endif /* KH_POLICY_H */

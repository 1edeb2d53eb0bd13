/* choose_identity.h: which identity a keyhold.v1 call uses, and may the
 * caller use it for the operation: the identity the call names, else the
 * one the policy grants this caller for the operation, else the only one
 * loaded; then the authorizer's decision (authz.h). */
#ifndef KH_CHOOSE_IDENTITY_H
#define KH_CHOOSE_IDENTITY_H

#include "authz.h"
#include "identity.h"

/* kh_choose_identity: on success |*out| is a new reference and |grant| is
 * filled. |g| NULL: no authorization (tests, fuzzing): every operation,
 * including explicit-only ones, is granted. Refusals are
 * PERMISSION_DENIED, "CALLER may not use identity 'NAME' for WHAT (needs the
 * 'GRANT' grant)"; an identity that does not exist gets the same refusal
 * unless the caller is keyholdd's own uid (no existence oracle). */
KH_MUST_USE int kh_choose_identity(const kh_identity_store *store, const kh_grants *g,
                                   const kh_caller *caller, const char *name,
                                   const char *const *tokens, size_t n_tokens, kh_operation op,
                                   const char *what, kh_identity **out, kh_grant *grant,
                                   kh_error *err);

#endif /* KH_CHOOSE_IDENTITY_H */

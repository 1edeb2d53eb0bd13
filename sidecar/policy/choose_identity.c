/* choose_identity.c: see choose_identity.h. */
#include "choose_identity.h"

#include <unistd.h>

static int refuse(const kh_caller *c, const char *asked, kh_operation op, const char *what,
                  kh_error *err) {
  char who[40];
  return kh_err(err, KH_ERR_PERMISSION_DENIED,
                "%s may not use identity '%.100s' for %s (needs the '%s' grant)",
                kh_caller_name(c, who, sizeof(who)), asked[0] ? asked : "(default)", what,
                kh_grant_name(kh_operation_grant(op)));
}

int kh_choose_identity(const kh_identity_store *store, const kh_grants *g, const kh_caller *caller,
                       const char *name, const char *const *tokens, size_t n_tokens,
                       kh_operation op, const char *what, kh_identity **out, kh_grant *grant,
                       kh_error *err) {
  kh_identity *id = NULL;
  if (name[0] == '\0' && g != NULL) {
    const char *def = kh_authz_default_identity(g, caller, tokens, n_tokens, op);
    if (def != NULL) id = kh_identity_store_find_dir_ref(store, def);
  }
  if (id == NULL && (id = kh_identity_store_find_ref(store, name, err)) == NULL) {
    if (g != NULL && caller->uid != getuid()) refuse(caller, name, op, what, err);
    return 0;
  }
  const char *dir = kh_identity_dir_name(id);
  if (g == NULL) {
    *grant = (kh_grant){.identity = dir, .op = op, .operations = ~0u}; /* everything */
  } else if (!kh_authz_decide(g, caller, tokens, n_tokens, op, dir, grant, err)) {
    kh_identity_unref(id);
    return refuse(caller, name, op, what, err);
  }
  *out = id;
  return 1;
}

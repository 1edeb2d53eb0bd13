/* policy_reload.h: the policy file reloaded without a restart, on SIGHUP
 * and when the file changes (a Kubernetes ConfigMap's symlink swap, an
 * editor's rename, a rewrite). Atomic: a new file that does not parse, or
 * names an identity keyholdd does not hold, is refused with its error and
 * the rules in force stay. What is reloaded is the `identities:` rules
 * (who may do what); the socket, paths and limits are bound at start, so a
 * change to them is logged as needing a restart. */
#ifndef KH_POLICY_RELOAD_H
#define KH_POLICY_RELOAD_H

#include <signal.h>

#include "config.h"
#include "identity.h"
#include "policy_slot.h"

/* kh_policy_check_identities: every identity |g|'s rules name is in |store|. */
KH_MUST_USE int kh_policy_check_identities(const char *file, const kh_grants *g,
                                           const kh_identity_store *store, kh_error *err);

typedef struct kh_policy_reload kh_policy_reload;

/* Borrowed: |started| (the configuration in force), |slot|, |store| and
 * |sighup| (set by the signal handler, cleared here) outlive the reloader.
 * NULL: out of memory. */
KH_MUST_USE kh_policy_reload *kh_policy_reload_new(const kh_config *started, kh_policy_slot *slot,
                                                   const kh_identity_store *store,
                                                   volatile sig_atomic_t *sighup);
void kh_policy_reload_free(kh_policy_reload *r);

/* kh_policy_reload_tick (event loop, about every 100 ms): reload on SIGHUP,
 * or if the file's identity (device, inode, size, mtime) changed; the file
 * is looked at about once a second. */
void kh_policy_reload_tick(kh_policy_reload *r);

#endif /* KH_POLICY_RELOAD_H */

/* rotation.h: live reload of identities. Watches the identities directory and
 * every identity sub-directory with inotify (plain file replacement and the
 * Kubernetes Secret volume "..data" symlink swap both show up as events in the
 * sub-directory), waits for the writes to settle, then reloads the identity
 * through kh_identity_store_reload (atomic; a bad replacement is refused and
 * the previous identity stays). SIGHUP reloads everything. Driven from the
 * event loop by kh_rotation_tick; no thread of its own. */
#ifndef KH_ROTATION_H
#define KH_ROTATION_H

#include <signal.h>

#include "identity.h"
#include "kh_error.h"
#include "ticket_keys.h"

typedef struct kh_rotation kh_rotation;

/* |reload_all| is set by a SIGHUP handler; tick clears it. */
KH_MUST_USE kh_rotation *kh_rotation_new(kh_identity_store *store,
                                         volatile sig_atomic_t *reload_all, kh_error *err);
void kh_rotation_free(kh_rotation *r);

/* kh_rotation_watch_ticket_keys reloads the ticket key file |path| into
 * |*slot| when it changes (checked every tick; a file that does not parse
 * is refused with a log line and the current keys stay). */
void kh_rotation_watch_ticket_keys(kh_rotation *r, const char *path, kh_ticket_keys **slot);

/* kh_rotation_tick reads pending events and reloads identities whose files
 * have been quiet for the settle time (void * for kh_server_config.tick). */
void kh_rotation_tick(void *r);

#endif /* KH_ROTATION_H */

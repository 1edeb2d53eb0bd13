/* status.h: what keyholdd reports about its identities, refreshed from the
 * event loop about once a second: health (SERVING while some identity's
 * certificate is valid), the metrics' expiry gauges, and one warning line
 * per certificate that comes within the warning time of its notAfter (and
 * one error line when it expires). */
#ifndef KH_STATUS_H
#define KH_STATUS_H

#include <stdint.h>

#include "health.h"
#include "identity.h"

typedef struct kh_status kh_status;

/* |warn_seconds|: how long before notAfter the warning comes. Borrowed
 * |store| and |health| outlive the status. NULL: out of memory. */
kh_status *kh_status_new(const kh_identity_store *store, kh_health *health, int64_t warn_seconds);
void kh_status_free(kh_status *st);

/* kh_status_refresh looks again if a second has passed (or |force|). Event
 * loop thread only (where identities are reloaded). */
void kh_status_refresh(kh_status *st, int force);

#endif /* KH_STATUS_H */

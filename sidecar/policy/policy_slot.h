/* policy_slot.h: the grants in force, swapped atomically when the policy is
 * reloaded. A session takes the grants once when it starts and keeps them
 * to its end (a reload never changes the rules under a running handshake);
 * the next session gets the new ones. Thread-safe. */
#ifndef KH_POLICY_SLOT_H
#define KH_POLICY_SLOT_H

#include "authz.h"

typedef struct kh_policy_slot kh_policy_slot;

/* kh_policy_slot_new takes |g|. NULL: out of memory (|g| is freed). */
KH_MUST_USE kh_policy_slot *kh_policy_slot_new(kh_grants *g);
void kh_policy_slot_free(kh_policy_slot *s);

/* kh_policy_slot_get: a reference to the current grants (NULL for a NULL
 * slot: no authorization, tests and fuzzing); give it back with
 * kh_policy_slot_put. */
const kh_grants *kh_policy_slot_get(kh_policy_slot *s);
void kh_policy_slot_put(const kh_grants *g);

/* kh_policy_slot_swap puts |g| (taken) in force; the old grants are freed
 * when the last session holding them ends. */
void kh_policy_slot_swap(kh_policy_slot *s, kh_grants *g);

#endif /* KH_POLICY_SLOT_H */

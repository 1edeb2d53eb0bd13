/* budget.h: handshake admission for keyholdd's calls, no gRPC inside.
 *
 * A call that may run a handshake holds one slot from the moment it is
 * admitted until it ends. The slot is counted against its caller's uid
 * (max_handshakes_per_caller) until the call shows a server-side handshake;
 * then it moves to the caller process's server-side budget
 * (max_server_handshakes_per_process), past which the oldest such slot is
 * shed. Every slot carries its deadline (handshake_timeout_ms).
 *
 * Not thread-safe: the RPC server calls it under its own lock. Slots are
 * embedded in the caller's objects (|owner| points back). */
#ifndef KH_BUDGET_H
#define KH_BUDGET_H

#include "kh_error.h"
#include <stddef.h>
#include <stdint.h>

#include "kh_limits.h"
#include "caller.h"

typedef enum { KH_SLOT_NONE, KH_SLOT_UID, KH_SLOT_PROC } kh_slot_kind;

typedef struct kh_budget_slot {
  kh_slot_kind kind; /* NONE: holds nothing */
  kh_caller caller;
  int64_t expires_ms; /* monotonic */
  void *owner;
  struct kh_budget_slot *prev, *next; /* the budget's list, newest first */
} kh_budget_slot;

typedef struct kh_budget kh_budget;

KH_MUST_USE kh_budget *kh_budget_new(const kh_limits *limits);
void kh_budget_free(kh_budget *b);

/* kh_budget_now_ms: the monotonic clock the deadlines use. */
int64_t kh_budget_now_ms(void);

/* kh_budget_admit takes a uid slot for |caller| into |slot|. Returns 0 and
 * writes why into |msg| (RESOURCE_EXHAUSTED) when the uid is at its limit. */
KH_MUST_USE int kh_budget_admit(kh_budget *b, kh_budget_slot *slot, const kh_caller *caller,
                                void *owner, char *msg, size_t msg_len);

/* kh_budget_release gives the slot back (no-op if it holds nothing). */
void kh_budget_release(kh_budget *b, kh_budget_slot *slot);

/* kh_budget_to_server moves a uid slot to its process's server-side budget.
 * Past that budget it returns the oldest other server-side slot of the
 * process that |can_shed| allows (the caller ends it), with the process's
 * count in |*active|; else NULL. */
kh_budget_slot *kh_budget_to_server(kh_budget *b, kh_budget_slot *slot,
                                    int (*can_shed)(void *owner), unsigned *active);

/* kh_budget_expire calls |cut| on the owner of every slot past its deadline
 * at |now_ms|; |cut| may release that slot (and only that one). */
void kh_budget_expire(kh_budget *b, int64_t now_ms, void (*cut)(void *owner));

/* Handshakes holding a slot now, and their peak since kh_budget_reset_peak. */
long kh_budget_in_flight(const kh_budget *b);
long kh_budget_peak(const kh_budget *b);
void kh_budget_reset_peak(kh_budget *b);

#endif /* KH_BUDGET_H */

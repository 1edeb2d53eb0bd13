/* budget.c: per-uid and per-process handshake slots and their deadlines. */
#include "budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  uid_t uid;
  unsigned active;
} uid_count;

/* Server-side handshakes in progress of one calling process. */
typedef struct {
  uid_t uid;
  pid_t pid;
  unsigned active;
} proc_count;

struct kh_budget {
  kh_limits limits;
  uid_count *uids; /* few, and they stay */
  size_t n_uids;
  proc_count *procs; /* emptied entries go: pids come and go */
  size_t n_procs;
  kh_budget_slot *head; /* newest first */
  long in_flight, peak;
};

kh_budget *kh_budget_new(const kh_limits *limits) {
  kh_budget *b = calloc(1, sizeof(*b));
  if (b != NULL) b->limits = *limits;
  return b;
}

void kh_budget_free(kh_budget *b) {
  if (b == NULL) return;
  free(b->uids);
  free(b->procs);
  free(b);
}

int64_t kh_budget_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uid_count *uid_for(kh_budget *b, uid_t uid) {
  for (size_t i = 0; i < b->n_uids; i++)
    if (b->uids[i].uid == uid) return &b->uids[i];
  uid_count *grown = realloc(b->uids, (b->n_uids + 1) * sizeof(*grown));
  if (grown == NULL) return NULL;
  b->uids = grown;
  b->uids[b->n_uids] = (uid_count){.uid = uid};
  return &b->uids[b->n_uids++];
}

static proc_count *proc_for(kh_budget *b, const kh_caller *c) {
  for (size_t i = 0; i < b->n_procs; i++)
    if (b->procs[i].pid == c->pid && b->procs[i].uid == c->uid) return &b->procs[i];
  proc_count *grown = realloc(b->procs, (b->n_procs + 1) * sizeof(*grown));
  if (grown == NULL) return NULL;
  b->procs = grown;
  b->procs[b->n_procs] = (proc_count){.uid = c->uid, .pid = c->pid};
  return &b->procs[b->n_procs++];
}

/* uncount takes the slot off its count (it stays on the list). */
static void uncount(kh_budget *b, kh_budget_slot *s) {
  if (s->kind == KH_SLOT_UID) {
    uid_count *u = uid_for(b, s->caller.uid);
    if (u && u->active) u->active--;
  } else if (s->kind == KH_SLOT_PROC) {
    proc_count *p = proc_for(b, &s->caller);
    if (p && p->active && --p->active == 0) *p = b->procs[--b->n_procs];
  }
}

int kh_budget_admit(kh_budget *b, kh_budget_slot *slot, const kh_caller *caller, void *owner,
                    char *msg, size_t msg_len) {
  uid_count *u = uid_for(b, caller->uid);
  if (u == NULL) {
    snprintf(msg, msg_len, "out of memory");
    return 0;
  }
  if (u->active >= b->limits.max_handshakes_per_caller) {
    char who[40];
    snprintf(msg, msg_len, "%s already has %u handshakes in progress (the limit)",
             kh_caller_name(caller, who, sizeof(who)), u->active);
    return 0;
  }
  u->active++;
  *slot = (kh_budget_slot){.kind = KH_SLOT_UID,
                           .caller = *caller,
                           .owner = owner,
                           .expires_ms = kh_budget_now_ms() + b->limits.handshake_timeout_ms,
                           .next = b->head};
  if (b->head) b->head->prev = slot;
  b->head = slot;
  if (++b->in_flight > b->peak) b->peak = b->in_flight;
  return 1;
}

void kh_budget_release(kh_budget *b, kh_budget_slot *slot) {
  if (slot->kind == KH_SLOT_NONE) return;
  uncount(b, slot);
  b->in_flight--;
  if (slot->prev)
    slot->prev->next = slot->next;
  else
    b->head = slot->next;
  if (slot->next) slot->next->prev = slot->prev;
  slot->prev = slot->next = NULL;
  slot->kind = KH_SLOT_NONE;
}

kh_budget_slot *kh_budget_to_server(kh_budget *b, kh_budget_slot *slot,
                                    int (*can_shed)(void *owner), unsigned *active) {
  if (slot->kind != KH_SLOT_UID) return NULL;
  proc_count *p = proc_for(b, &slot->caller);
  if (p == NULL) return NULL; /* out of memory: it stays on the uid's budget */
  uncount(b, slot);           /* off the uid's count */
  slot->kind = KH_SLOT_PROC;
  unsigned n = ++p->active;
  *active = n;
  if (n <= b->limits.max_server_handshakes_per_process) return NULL;
  kh_budget_slot *oldest = NULL;
  for (kh_budget_slot *o = b->head; o != NULL; o = o->next) /* newest first */
    if (o != slot && o->kind == KH_SLOT_PROC && o->caller.pid == slot->caller.pid &&
        o->caller.uid == slot->caller.uid && can_shed(o->owner))
      oldest = o;
  return oldest;
}

void kh_budget_expire(kh_budget *b, int64_t now_ms, void (*cut)(void *owner)) {
  for (kh_budget_slot *s = b->head; s != NULL;) {
    kh_budget_slot *next = s->next;
    if (now_ms >= s->expires_ms) cut(s->owner);
    s = next;
  }
}

long kh_budget_in_flight(const kh_budget *b) {
  return b->in_flight;
}

long kh_budget_peak(const kh_budget *b) {
  return b->peak;
}

void kh_budget_reset_peak(kh_budget *b) {
  b->peak = b->in_flight;
}

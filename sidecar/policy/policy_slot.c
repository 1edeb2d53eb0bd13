/* policy_slot.c: a mutex around one pointer, and reference counts. */
#include "policy_slot.h"

#include <pthread.h>
#include <stdlib.h>

struct kh_policy_slot {
  pthread_mutex_t mu;
  kh_grants *g;
};

kh_policy_slot *kh_policy_slot_new(kh_grants *g) {
  kh_policy_slot *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    kh_grants_free(g);
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  s->g = g;
  return s;
}

void kh_policy_slot_free(kh_policy_slot *s) {
  if (s == NULL) return;
  kh_grants_free(s->g);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

const kh_grants *kh_policy_slot_get(kh_policy_slot *s) {
  if (s == NULL) return NULL;
  pthread_mutex_lock(&s->mu);
  kh_grants *g = kh_grants_ref(s->g);
  pthread_mutex_unlock(&s->mu);
  return g;
}

void kh_policy_slot_put(const kh_grants *g) {
  kh_grants_free((kh_grants *)g);
}

void kh_policy_slot_swap(kh_policy_slot *s, kh_grants *g) {
  pthread_mutex_lock(&s->mu);
  kh_grants *old = s->g;
  s->g = g;
  pthread_mutex_unlock(&s->mu);
  kh_grants_free(old);
}

/* resume.c: held client engines and the client session cache. Small linear
 * tables: both are bounded, and a lookup is a string compare per entry. */
#include "resume.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "kh_log.h"

typedef struct {
  uint64_t conn_id;
  uid_t uid;
  char *key;
  kh_tls_engine *engine;
  struct timespec held_at;
} pending;

typedef struct {
  char *key;
  SSL_SESSION *session;
  uint64_t used; /* LRU clock */
} cached;

/* |mu| guards everything: the public functions run on the crypto worker
 * threads (handshakes, tickets) and on the event loop (sweep). Held engines
 * are only touched under it; BoringSSL calls nothing back into this file. */
struct kh_resume {
  pthread_mutex_t mu;
  pending pend[KH_RESUME_MAX_PENDING];
  size_t n_pend;
  cached cache[KH_RESUME_MAX_SESSIONS];
  size_t n_cache;
  uint64_t clock;
};

kh_resume *kh_resume_new(void) {
  kh_resume *r = calloc(1, sizeof(kh_resume));
  if (r != NULL) pthread_mutex_init(&r->mu, NULL);
  return r;
}

static void drop_pending(kh_resume *r, size_t i) {
  kh_tls_engine_free(r->pend[i].engine);
  free(r->pend[i].key);
  r->pend[i] = r->pend[--r->n_pend];
}

static void drop_cached(kh_resume *r, size_t i) {
  SSL_SESSION_free(r->cache[i].session);
  free(r->cache[i].key);
  r->cache[i] = r->cache[--r->n_cache];
}

void kh_resume_free(kh_resume *r) {
  if (r == NULL) return;
  while (r->n_pend) drop_pending(r, 0);
  while (r->n_cache) drop_cached(r, 0);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

SSL_SESSION *kh_resume_session(kh_resume *r, const char *key) {
  SSL_SESSION *found = NULL;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n_cache; i++) {
    if (strcmp(r->cache[i].key, key) != 0) continue;
    SSL_SESSION *s = r->cache[i].session;
    if (!SSL_SESSION_is_resumable(s) ||
        (uint64_t)SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) < (uint64_t)time(NULL)) {
      drop_cached(r, i);
      break;
    }
    r->cache[i].used = ++r->clock;
    SSL_SESSION_up_ref(s); /* sessions are immutable; the reference is the caller's */
    found = s;
    break;
  }
  pthread_mutex_unlock(&r->mu);
  return found;
}

static long age_ms(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void sweep_locked(kh_resume *r);

void kh_resume_hold(kh_resume *r, uint64_t conn_id, uid_t uid, const char *key, kh_tls_engine *e) {
  pthread_mutex_lock(&r->mu);
  sweep_locked(r);
  if (r->n_pend == KH_RESUME_MAX_PENDING) { /* full: the oldest goes */
    size_t oldest = 0;
    for (size_t i = 1; i < r->n_pend; i++)
      if (age_ms(&r->pend[i].held_at) > age_ms(&r->pend[oldest].held_at)) oldest = i;
    drop_pending(r, oldest);
  }
  char *k = strdup(key);
  if (k == NULL) {
    kh_tls_engine_free(e);
  } else {
    pending *p = &r->pend[r->n_pend++];
    *p = (pending){.conn_id = conn_id, .uid = uid, .key = k, .engine = e};
    clock_gettime(CLOCK_MONOTONIC, &p->held_at);
  }
  pthread_mutex_unlock(&r->mu);
}

static void store(kh_resume *r, const char *key, SSL_SESSION *s) {
  size_t slot = r->n_cache;
  for (size_t i = 0; i < r->n_cache; i++) {
    if (strcmp(r->cache[i].key, key) == 0) {
      slot = i;
      break;
    }
  }
  if (slot == r->n_cache && r->n_cache == KH_RESUME_MAX_SESSIONS) {
    size_t lru = 0;
    for (size_t i = 1; i < r->n_cache; i++)
      if (r->cache[i].used < r->cache[lru].used) lru = i;
    drop_cached(r, lru);
    slot = r->n_cache;
  }
  if (slot == r->n_cache) {
    char *k = strdup(key);
    if (k == NULL) {
      SSL_SESSION_free(s);
      return;
    }
    r->cache[r->n_cache++] = (cached){.key = k};
  } else {
    SSL_SESSION_free(r->cache[slot].session);
  }
  r->cache[slot].session = s;
  r->cache[slot].used = ++r->clock;
}

int kh_resume_tickets(kh_resume *r, uint64_t conn_id, uid_t uid, const uint8_t *const *msgs,
                      const size_t *lens, size_t n, kh_error *err) {
  pthread_mutex_lock(&r->mu);
  sweep_locked(r);
  size_t i = 0;
  while (i < r->n_pend && r->pend[i].conn_id != conn_id) i++;
  int ok = 1, stored = 0;
  /* Another caller's connection looks exactly like an unknown one. */
  if (i == r->n_pend || r->pend[i].uid != uid)
    ok = kh_err(err, KH_ERR_NOT_FOUND,
                "no recent client handshake with connection_id %llu for this caller",
                (unsigned long long)conn_id);
  for (size_t j = 0; ok && j < n; j++) {
    SSL_SESSION *s = kh_tls_engine_ticket(r->pend[i].engine, msgs[j], lens[j], err);
    if (s == NULL) {
      ok = 0;
    } else {
      store(r, r->pend[i].key, s);
      stored++;
    }
  }
  pthread_mutex_unlock(&r->mu);
  if (ok)
    kh_log(KH_LOG_DEBUG, "stored %d session ticket(s) for connection %llu", stored,
           (unsigned long long)conn_id);
  return ok;
}

void kh_resume_sweep(kh_resume *r) {
  pthread_mutex_lock(&r->mu);
  sweep_locked(r);
  pthread_mutex_unlock(&r->mu);
}

static void sweep_locked(kh_resume *r) {
  for (size_t i = 0; i < r->n_pend;) {
    if (age_ms(&r->pend[i].held_at) >= KH_RESUME_PENDING_MS)
      drop_pending(r, i);
    else
      i++;
  }
}

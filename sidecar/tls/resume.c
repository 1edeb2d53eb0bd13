/* resume.c: held client engines and the client session cache. Small linear
 * tables: both are bounded, and a lookup is a few compares per entry. */
#include "resume.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "kh_log.h"

/* kh_resume_key with strings of its own. */
typedef struct {
  uid_t uid;
  char *identity;
  uint8_t cert[KH_SHA256_LEN];
  char *target;
} owned_key;

typedef struct {
  uint64_t conn_id;
  owned_key key;
  kh_tls_engine *engine;
  struct timespec held_at;
} pending;

typedef struct {
  owned_key key;
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

static int key_copy(owned_key *out, const kh_resume_key *k) {
  *out = (owned_key){.uid = k->uid, .identity = strdup(k->identity), .target = strdup(k->target)};
  memcpy(out->cert, k->cert, KH_SHA256_LEN);
  if (out->identity != NULL && out->target != NULL) return 1;
  free(out->identity);
  free(out->target);
  return 0;
}

static void key_free(owned_key *k) {
  free(k->identity);
  free(k->target);
}

static int key_eq(const owned_key *a, const kh_resume_key *b) {
  return a->uid == b->uid && memcmp(a->cert, b->cert, KH_SHA256_LEN) == 0 &&
         strcmp(a->identity, b->identity) == 0 && strcmp(a->target, b->target) == 0;
}

kh_resume *kh_resume_new(void) {
  kh_resume *r = calloc(1, sizeof(kh_resume));
  if (r != NULL) pthread_mutex_init(&r->mu, NULL);
  return r;
}

static void drop_pending(kh_resume *r, size_t i) {
  kh_tls_engine_free(r->pend[i].engine);
  key_free(&r->pend[i].key);
  r->pend[i] = r->pend[--r->n_pend];
}

static void drop_cached(kh_resume *r, size_t i) {
  SSL_SESSION_free(r->cache[i].session);
  key_free(&r->cache[i].key);
  r->cache[i] = r->cache[--r->n_cache];
}

void kh_resume_free(kh_resume *r) {
  if (r == NULL) return;
  while (r->n_pend) drop_pending(r, 0);
  while (r->n_cache) drop_cached(r, 0);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static int still_resumable(const SSL_SESSION *s, uint64_t now) {
  return SSL_SESSION_is_resumable(s) &&
         (uint64_t)SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) >= now;
}

SSL_SESSION *kh_resume_take(kh_resume *r, const kh_resume_key *key) {
  SSL_SESSION *found = NULL;
  uint64_t now = (uint64_t)time(NULL);
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n_cache;) {
    cached *c = &r->cache[i];
    /* Rotation purge. A lookup knows the identity's current certificate (the
     * handshake holds the identity), so entries this identity made under
     * another certificate go here, at its first handshake after a rotation,
     * rather than from the rotation code: that also catches sessions of
     * handshakes that began before the rotation and handed their tickets in
     * after it, and rotation needs no link to this cache. (A handshake that
     * took the old identity just before the swap drops the new entries
     * instead: one extra full handshake, never a wrong session.) */
    int rotated = strcmp(c->key.identity, key->identity) == 0 &&
                  memcmp(c->key.cert, key->cert, KH_SHA256_LEN) != 0;
    if (found == NULL && key_eq(&c->key, key) && still_resumable(c->session, now)) {
      found = c->session; /* taken: offered once */
      c->session = NULL;
      drop_cached(r, i);
    } else if (rotated || !still_resumable(c->session, now)) {
      drop_cached(r, i);
    } else {
      i++;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return found;
}

static void put_locked(kh_resume *r, const kh_resume_key *key, SSL_SESSION *s) {
  size_t slot = r->n_cache;
  for (size_t i = 0; i < r->n_cache; i++) {
    if (key_eq(&r->cache[i].key, key)) {
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
    cached *c = &r->cache[r->n_cache];
    if (!key_copy(&c->key, key)) {
      SSL_SESSION_free(s);
      return;
    }
    c->session = NULL;
    r->n_cache++;
  }
  SSL_SESSION_free(r->cache[slot].session);
  r->cache[slot].session = s;
  r->cache[slot].used = ++r->clock;
}

void kh_resume_put(kh_resume *r, const kh_resume_key *key, SSL_SESSION *s) {
  pthread_mutex_lock(&r->mu);
  put_locked(r, key, s);
  pthread_mutex_unlock(&r->mu);
}

static long age_ms(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void sweep_locked(kh_resume *r);

void kh_resume_hold(kh_resume *r, uint64_t conn_id, const kh_resume_key *key, kh_tls_engine *e) {
  pthread_mutex_lock(&r->mu);
  sweep_locked(r);
  if (r->n_pend == KH_RESUME_MAX_PENDING) { /* full: the oldest goes */
    size_t oldest = 0;
    for (size_t i = 1; i < r->n_pend; i++)
      if (age_ms(&r->pend[i].held_at) > age_ms(&r->pend[oldest].held_at)) oldest = i;
    drop_pending(r, oldest);
  }
  pending *p = &r->pend[r->n_pend];
  if (!key_copy(&p->key, key)) {
    kh_tls_engine_free(e);
  } else {
    p->conn_id = conn_id;
    p->engine = e;
    clock_gettime(CLOCK_MONOTONIC, &p->held_at);
    r->n_pend++;
  }
  pthread_mutex_unlock(&r->mu);
}

int kh_resume_tickets(kh_resume *r, uint64_t conn_id, uid_t uid, const uint8_t *const *msgs,
                      const size_t *lens, size_t n, kh_error *err) {
  pthread_mutex_lock(&r->mu);
  sweep_locked(r);
  size_t i = 0;
  while (i < r->n_pend && r->pend[i].conn_id != conn_id) i++;
  int ok = 1, stored = 0;
  /* Another caller's connection looks exactly like an unknown one. */
  if (i == r->n_pend || r->pend[i].key.uid != uid)
    ok = kh_err(err, KH_ERR_NOT_FOUND,
                "no recent client handshake with connection_id %llu for this caller",
                (unsigned long long)conn_id);
  for (size_t j = 0; ok && j < n; j++) {
    SSL_SESSION *s = kh_tls_engine_ticket(r->pend[i].engine, msgs[j], lens[j], err);
    if (s == NULL) {
      ok = 0;
    } else {
      const owned_key *k = &r->pend[i].key;
      kh_resume_key key = {.uid = k->uid, .identity = k->identity, .target = k->target};
      memcpy(key.cert, k->cert, KH_SHA256_LEN);
      put_locked(r, &key, s);
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

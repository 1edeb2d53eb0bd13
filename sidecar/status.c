/* status.c: health, expiry gauges and expiry warnings from one look at the
 * identities. */
#include "status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kh_log.h"
#include "metrics.h"

#define KH_STATUS_MAX_WARNED 256

typedef struct {
  uint8_t fingerprint[KH_SHA256_LEN];
  int expired; /* the error line was logged too */
} warned;

struct kh_status {
  const kh_identity_store *store;
  kh_health *health;
  int64_t warn_seconds;
  time_t last;
  warned w[KH_STATUS_MAX_WARNED]; /* certificates already warned about */
  size_t n_warned;
};

kh_status *kh_status_new(const kh_identity_store *store, kh_health *health, int64_t warn_seconds) {
  kh_status *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->store = store;
  st->health = health;
  st->warn_seconds = warn_seconds;
  return st;
}

void kh_status_free(kh_status *st) {
  free(st);
}

static warned *find_warned(kh_status *st, const uint8_t *fp, int add) {
  for (size_t i = 0; i < st->n_warned; i++)
    if (memcmp(st->w[i].fingerprint, fp, KH_SHA256_LEN) == 0) return &st->w[i];
  if (!add || st->n_warned == KH_STATUS_MAX_WARNED) return NULL;
  warned *w = &st->w[st->n_warned++];
  memcpy(w->fingerprint, fp, KH_SHA256_LEN);
  w->expired = 0;
  return w;
}

/* warn: the expiry lines, once per certificate (and once more on expiry). */
static void warn(kh_status *st, const kh_identity *id, const kh_cert_info *c, int64_t left) {
  if (left > st->warn_seconds) return;
  warned *w = find_warned(st, kh_identity_fingerprint(id), 0);
  if (w != NULL && (left > 0 || w->expired)) return;
  if (w == NULL && (w = find_warned(st, kh_identity_fingerprint(id), 1)) == NULL) return;
  if (left <= 0) {
    w->expired = 1;
    kh_log(KH_LOG_ERROR,
           "certificate expired dir=%s name=%s serial=%s not_after=%s; handshakes with it fail "
           "until it is rotated",
           kh_identity_dir_name(id), kh_identity_name(id), c->serial, c->not_after_text);
  } else {
    kh_log(KH_LOG_WARN,
           "certificate expires soon dir=%s name=%s serial=%s not_after=%s "
           "seconds_left=%lld",
           kh_identity_dir_name(id), kh_identity_name(id), c->serial, c->not_after_text,
           (long long)left);
  }
}

void kh_status_refresh(kh_status *st, int force) {
  time_t now = time(NULL);
  if (!force && now == st->last) return;
  st->last = now;
  size_t n = kh_identity_store_count(st->store), valid = 0;
  kh_metrics_clear_expiry();
  for (size_t i = 0; i < n; i++) {
    const kh_identity *id = kh_identity_store_get(st->store, i);
    const kh_cert_info *c = kh_identity_cert_info(id);
    int64_t left = c->not_after - (int64_t)now;
    kh_metrics_set_expiry(kh_identity_dir_name(id), kh_identity_name(id), (double)left);
    if (kh_cert_valid_at(c, now)) valid++;
    warn(st, id, c, left);
  }
  kh_metrics_set_identities(n);
  if (kh_health_set(st->health, valid > 0))
    kh_log(valid > 0 ? KH_LOG_INFO : KH_LOG_ERROR, "health status=%s valid_identities=%zu of %zu",
           valid > 0 ? "SERVING" : "NOT_SERVING", valid, n);
}

/* policy_reload.c: see policy_reload.h. */
#include "policy_reload.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kh_log.h"
#include "metrics.h"
#include "policy.h"

struct kh_policy_reload {
  const kh_config *started;
  kh_policy_slot *slot;
  const kh_identity_store *store;
  volatile sig_atomic_t *sighup;
  struct stat st; /* the file as last loaded (or tried) */
  int have_st;
  time_t last_look;
};

int kh_policy_check_identities(const char *file, const kh_grants *g, const kh_identity_store *store,
                               kh_error *err) {
  for (size_t i = 0; i < g->n_rules; i++) {
    const char *name = g->rules[i].name;
    if (strcmp(name, "*") == 0) continue;
    size_t j = 0;
    while (j < kh_identity_store_count(store) &&
           strcmp(kh_identity_dir_name(kh_identity_store_get(store, j)), name) != 0)
      j++;
    if (j == kh_identity_store_count(store))
      return kh_err(err, KH_ERR_NOT_FOUND, "%s:%u:3: identities.%.60s: no such identity in %.200s",
                    file ? file : "policy", g->rules[i].line, name, kh_identity_store_dir(store));
  }
  return 1;
}

kh_policy_reload *kh_policy_reload_new(const kh_config *started, kh_policy_slot *slot,
                                       const kh_identity_store *store,
                                       volatile sig_atomic_t *sighup) {
  kh_policy_reload *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->started = started;
  r->slot = slot;
  r->store = store;
  r->sighup = sighup;
  r->have_st = stat(started->file, &r->st) == 0;
  r->last_look = time(NULL);
  return r;
}

void kh_policy_reload_free(kh_policy_reload *r) {
  free(r);
}

static int same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int str_eq(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* bound_at_start: what the new file changes that only a restart applies. */
static const char *bound_at_start(const kh_config *old, const kh_config *new) {
  if (new->socket_path && !str_eq(old->socket_path, new->socket_path)) return "socket.path";
  if (new->identities_dir && !str_eq(old->identities_dir, new->identities_dir))
    return "identities_dir";
  if (new->ticket_keys_file && !str_eq(old->ticket_keys_file, new->ticket_keys_file))
    return "ticket_keys";
  if (memcmp(&old->limits, &new->limits, sizeof(old->limits)) != 0) return "limits";
  return NULL;
}

static void reload(kh_policy_reload *r, const char *why) {
  const char *file = r->started->file;
  kh_error err;
  kh_config cfg;
  kh_config_init(&cfg);
  kh_grants *g = kh_policy_load(file, &cfg, &err);
  if (g != NULL && !kh_policy_check_identities(file, g, r->store, &err)) {
    kh_grants_free(g);
    g = NULL;
  }
  kh_metrics_reload("policy", g != NULL);
  if (g == NULL) {
    kh_log(KH_LOG_ERROR, "policy reload (%s) refused, the rules in force stay: %s", why, err.msg);
    kh_config_cleanup(&cfg);
    return;
  }
  size_t n = g->n_rules;
  kh_policy_slot_swap(r->slot, g);
  kh_log(KH_LOG_INFO, "policy reloaded (%s) file=%s identity_rules=%zu", why, file, n);
  const char *kept = bound_at_start(r->started, &cfg);
  if (kept != NULL)
    kh_log(KH_LOG_WARN, "policy: the new %s takes effect only at restart; the old one stays", kept);
  kh_config_cleanup(&cfg);
}

void kh_policy_reload_tick(kh_policy_reload *r) {
  if (*r->sighup) {
    *r->sighup = 0;
    stat(r->started->file, &r->st);
    reload(r, "SIGHUP");
    return;
  }
  time_t now = time(NULL);
  if (now == r->last_look) return;
  r->last_look = now;
  struct stat st;
  if (stat(r->started->file, &st) != 0) return; /* mid-swap, or gone: keep what we have */
  if (r->have_st && same_file(&st, &r->st)) return;
  r->st = st;
  r->have_st = 1;
  reload(r, "file changed");
}

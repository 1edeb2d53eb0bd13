/* rotation.c: inotify -> debounced kh_identity_store_reload. */
#include "rotation.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kh_log.h"
#include "metrics.h"

#define SETTLE_MS 150
#define DIR_EVENTS                                                                    \
  (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | \
   IN_DELETE_SELF | IN_MOVE_SELF)

typedef struct {
  int wd;
  char name[NAME_MAX + 1];
  int dirty;
  struct timespec last_event;
} watch;

struct kh_rotation {
  kh_identity_store *store;
  volatile sig_atomic_t *reload_all;
  int fd;
  int top_wd;
  watch w[KH_MAX_IDENTITIES];
  size_t n;
  const char *tk_path; /* ticket keys file, or NULL */
  kh_ticket_keys **tk_slot;
  struct stat tk_st;
};

static int same_file(const struct stat *a, const struct stat *b) {
  return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void kh_rotation_watch_ticket_keys(kh_rotation *r, const char *path, kh_ticket_keys **slot) {
  r->tk_path = path;
  r->tk_slot = slot;
  stat(path, &r->tk_st);
}

static void check_ticket_keys(kh_rotation *r, int force) {
  struct stat st;
  if (r->tk_path == NULL || stat(r->tk_path, &st) != 0) return;
  if (!force && same_file(&st, &r->tk_st)) return;
  r->tk_st = st;
  kh_error err;
  kh_ticket_keys *k = kh_ticket_keys_load(r->tk_path, &err);
  kh_metrics_reload("ticket_keys", k != NULL);
  if (k == NULL) {
    kh_log(KH_LOG_ERROR, "new ticket keys refused, the previous keys stay: %s", err.msg);
    return;
  }
  kh_ticket_keys_swap(r->tk_slot, k); /* handshakes in progress keep theirs */
  kh_log(KH_LOG_INFO, "ticket keys reloaded from %s (%zu keys)", r->tk_path,
         kh_ticket_keys_count(k));
}

static long ms_since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static watch *find_name(kh_rotation *r, const char *name) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->w[i].name, name) == 0) return &r->w[i];
  return NULL;
}

static void mark(watch *w) {
  w->dirty = 1;
  clock_gettime(CLOCK_MONOTONIC, &w->last_event);
}

/* add_watch watches identity sub-directory |name| (idempotent). */
static watch *add_watch(kh_rotation *r, const char *name) {
  char path[PATH_MAX];
  struct stat st;
  snprintf(path, sizeof(path), "%s/%s", kh_identity_store_dir(r->store), name);
  if (name[0] == '.' || strlen(name) > NAME_MAX || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return NULL;
  watch *w = find_name(r, name);
  if (w == NULL) {
    if (r->n == KH_MAX_IDENTITIES) return NULL;
    w = &r->w[r->n++];
    snprintf(w->name, sizeof(w->name), "%s", name);
  }
  w->wd = inotify_add_watch(r->fd, path, DIR_EVENTS);
  if (w->wd < 0) kh_log(KH_LOG_WARN, "cannot watch %s: %s", path, strerror(errno));
  return w;
}

kh_rotation *kh_rotation_new(kh_identity_store *store, volatile sig_atomic_t *reload_all,
                             kh_error *err) {
  kh_rotation *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  r->store = store;
  r->reload_all = reload_all;
  r->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  const char *dir = kh_identity_store_dir(store);
  r->top_wd = r->fd < 0 ? -1
                        : inotify_add_watch(r->fd, dir,
                                            IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_DELETE_SELF);
  if (r->top_wd < 0) {
    kh_err(err, KH_ERR_UNAVAILABLE, "cannot watch %s: %s", dir, strerror(errno));
    kh_rotation_free(r);
    return NULL;
  }
  for (size_t i = 0; i < kh_identity_store_count(store); i++)
    add_watch(r, kh_identity_dir_name(kh_identity_store_get(store, i)));
  return r;
}

void kh_rotation_free(kh_rotation *r) {
  if (r == NULL) return;
  if (r->fd >= 0) close(r->fd);
  free(r);
}

static void read_events(kh_rotation *r) {
  char buf[16 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (int rounds = 0; rounds < 64; rounds++) {
    ssize_t n = read(r->fd, buf, sizeof(buf));
    if (n <= 0) return;
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      p += sizeof(*ev) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) { /* events lost: look at everything */
        for (size_t i = 0; i < r->n; i++) mark(&r->w[i]);
        continue;
      }
      if (ev->wd == r->top_wd) {
        watch *w = ev->len ? add_watch(r, ev->name) : NULL;
        if (w) mark(w);
        continue;
      }
      for (size_t i = 0; i < r->n; i++) {
        if (r->w[i].wd != ev->wd) continue;
        mark(&r->w[i]);
        if (ev->mask & IN_IGNORED) r->w[i].wd = -1; /* directory replaced: re-watch */
      }
    }
  }
}

static void reload(kh_rotation *r, watch *w) {
  kh_error err;
  w->dirty = 0;
  if (w->wd < 0) add_watch(r, w->name);
  int ok = kh_identity_store_reload(r->store, w->name, &err);
  kh_metrics_reload("identity", ok);
  if (!ok)
    kh_log(KH_LOG_ERROR, "identity %s: new files refused, the previous identity stays: %s", w->name,
           err.msg);
}

void kh_rotation_tick(void *arg) {
  kh_rotation *r = arg;
  read_events(r);
  check_ticket_keys(r, *r->reload_all);
  if (*r->reload_all) {
    *r->reload_all = 0;
    kh_log(KH_LOG_INFO, "SIGHUP: reloading every identity");
    DIR *d = opendir(kh_identity_store_dir(r->store));
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) add_watch(r, de->d_name);
    if (d) closedir(d);
    for (size_t i = 0; i < r->n; i++) reload(r, &r->w[i]);
    return;
  }
  for (size_t i = 0; i < r->n; i++)
    if (r->w[i].dirty && ms_since(&r->w[i].last_event) >= SETTLE_MS) reload(r, &r->w[i]);
}

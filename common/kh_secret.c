#define _DEFAULT_SOURCE
#include "kh_secret.h"

#include "kh_asan.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Under AddressSanitizer, free chunks and the unrequested tail of a used
 * chunk are poisoned, and the pool is a root for LeakSanitizer (it is not
 * malloc memory, but it points into the heap). */
#if KH_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define ROOT(p, n) __lsan_register_root_region(p, n)
#define UNROOT(p, n) __lsan_unregister_root_region(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define ROOT(p, n) ((void)(p), (void)(n))
#define UNROOT(p, n) ((void)(p), (void)(n))
#endif

void kh_wipe(void *p, size_t len) {
  if (p != NULL && len > 0) explicit_bzero(p, len);
}

/* Locked memory comes from a pool. Slabs of KH_SLAB bytes are mapped,
 * locked once (best effort), kept out of core dumps and zeroed in forked
 * children, then cut into chunks of one power-of-two size class each
 * (64 B to 4 KiB). A freed chunk is wiped and goes on its class's free
 * list; slabs stay locked for the life of the process, so a connection's
 * secrets cost no system call, and no page is unlocked while another
 * secret still lives on it (mlock and munlock act on whole pages).
 * Larger buffers (files holding keys) get a mapping of their own, treated
 * the same way and unmapped when freed. */
#define KH_SLAB (64 * 1024)
#define KH_MIN_SHIFT 6  /* 64 B */
#define KH_MAX_SHIFT 12 /* 4 KiB */
#define KH_CLASSES (KH_MAX_SHIFT - KH_MIN_SHIFT + 1)

typedef struct chunk {
  struct chunk *next;
} chunk;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static chunk *g_free[KH_CLASSES]; /* under g_mu */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* A fork while another thread holds g_mu must not leave the child's copy
 * locked forever. (The child's pool contents are zero: MADV_WIPEONFORK.
 * Its free lists then end early, which only wastes the rest of a slab.) */
static void fork_lock(void) {
  pthread_mutex_lock(&g_mu);
}
static void fork_unlock(void) {
  pthread_mutex_unlock(&g_mu);
}
static void at_fork(void) {
  pthread_atfork(fork_lock, fork_unlock, fork_unlock);
}

/* map_locked maps |len| (a multiple of the page size) of locked,
 * undumpable, wipe-on-fork memory. */
static void *map_locked(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  (void)madvise(p, len, MADV_DONTDUMP);
  (void)madvise(p, len, MADV_WIPEONFORK);
  (void)mlock(p, len); /* best effort: RLIMIT_MEMLOCK may refuse */
  ROOT(p, len);
  return p;
}

static size_t page_round(size_t len) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (len + page - 1) / page * page;
}

/* size_class: index of the smallest class holding |len|, or -1 if none. */
static int size_class(size_t len) {
  int c = 0;
  while (c < KH_CLASSES && ((size_t)1 << (KH_MIN_SHIFT + c)) < len) c++;
  return c < KH_CLASSES ? c : -1;
}

static size_t class_size(int c) {
  return (size_t)1 << (KH_MIN_SHIFT + c);
}

/* refill puts a new slab's chunks of class |c| on its free list (g_mu held). */
static int refill(int c) {
  pthread_once(&g_once, at_fork); /* before the first chunk is handed out */
  uint8_t *slab = map_locked(KH_SLAB);
  if (slab == NULL) return 0;
  size_t size = class_size(c);
  for (size_t off = KH_SLAB; off >= size; off -= size) {
    chunk *k = (chunk *)(slab + off - size);
    k->next = g_free[c];
    g_free[c] = k;
  }
  POISON(slab, KH_SLAB);
  return 1;
}

void *kh_secret_alloc(size_t len) {
  if (len == 0) len = 1;
  int c = size_class(len);
  if (c < 0) return map_locked(page_round(len)); /* zero-filled by the kernel */
  pthread_mutex_lock(&g_mu);
  chunk *k = g_free[c];
  if (k == NULL && refill(c)) k = g_free[c];
  if (k != NULL) {
    UNPOISON(k, sizeof(*k));
    g_free[c] = k->next;
  }
  pthread_mutex_unlock(&g_mu);
  if (k == NULL) return NULL;
  k->next = NULL;   /* the rest of a free chunk is zero already */
  UNPOISON(k, len); /* past |len| it stays poisoned */
  return k;
}

void kh_secret_free(void *p, size_t len) {
  if (p == NULL) return;
  if (len == 0) len = 1;
  int c = size_class(len);
  if (c < 0) {
    size_t mapped = page_round(len);
    kh_wipe(p, len);
    UNROOT(p, mapped);
    munmap(p, mapped);
    return;
  }
  UNPOISON(p, class_size(c));
  kh_wipe(p, class_size(c));
  chunk *k = p;
  pthread_mutex_lock(&g_mu);
  k->next = g_free[c];
  g_free[c] = k;
  POISON(k, class_size(c));
  pthread_mutex_unlock(&g_mu);
}

#define _DEFAULT_SOURCE
#include "kh_secret.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void kh_wipe(void *p, size_t len) {
  if (p != NULL && len > 0) explicit_bzero(p, len);
}

void *kh_secret_alloc(size_t len) {
  if (len == 0) len = 1;
  void *p = calloc(1, len);
  if (p == NULL) return NULL;
  (void)mlock(p, len); /* best effort; see header */
  return p;
}

void kh_secret_free(void *p, size_t len) {
  if (p == NULL) return;
  if (len == 0) len = 1;
  kh_wipe(p, len);
  (void)munlock(p, len);
  free(p);
}

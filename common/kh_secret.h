/* kh_secret.h: the one secret-wipe helper and locked secret memory.
 *
 * kh_wipe() zeroes memory in a way the compiler may not elide. Every buffer
 * that held a key, traffic secret or token is wiped with it before release.
 * kh_secret_alloc() returns zeroed memory that is locked (best effort: if
 * the lock limit is reached the memory is still usable and still wiped),
 * left out of core dumps and zeroed in a forked child; kh_secret_free(p,
 * len), with the length it was allocated with, wipes it and returns it to
 * the pool (kh_secret.c). keyholdd also turns core dumps off entirely with
 * PR_SET_DUMPABLE at start. Thread-safe. */
#ifndef KH_SECRET_H
#define KH_SECRET_H

#include <stddef.h>

#include "kh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

void kh_wipe(void *p, size_t len);
KH_MUST_USE void *kh_secret_alloc(size_t len);
void kh_secret_free(void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* KH_SECRET_H */

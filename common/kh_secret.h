/* kh_secret.h: the one secret-wipe helper and locked secret memory.
 *
 * kh_wipe() zeroes memory in a way the compiler may not elide. Every buffer
 * that held a key, traffic secret or token is wiped with it before release.
 * kh_secret_alloc() returns zeroed memory that is mlock()ed (best effort: if
 * the lock limit is reached the memory is still usable and still wiped);
 * kh_secret_free() wipes, unlocks and frees. Core dumps are a process-wide
 * matter: keyholdd turns them off with PR_SET_DUMPABLE at start. */
#ifndef KH_SECRET_H
#define KH_SECRET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void kh_wipe(void *p, size_t len);
void *kh_secret_alloc(size_t len);
void kh_secret_free(void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* KH_SECRET_H */

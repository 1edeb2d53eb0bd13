/* kh_asan.h: KH_ASAN is 1 in an AddressSanitizer build (gcc or clang; the
 * CI's sanitizer suite), else 0. The places that differ under it: the
 * locked pool's poisoning (kh_secret.c), keyholdd's sandbox default and
 * allowlist (main.c, sandbox.c), and a test that mlock() cannot pass (ASan
 * intercepts mlock and ignores it). */
#ifndef KH_ASAN_H
#define KH_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define KH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KH_ASAN 1
#endif
#endif
#ifndef KH_ASAN
#define KH_ASAN 0
#endif

#endif /* KH_ASAN_H */

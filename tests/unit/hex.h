/* hex.h: hex helpers for unit tests. */
#ifndef KH_TEST_HEX_H
#define KH_TEST_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* kh_unhex decodes |hex| into |out| (capacity |cap|); returns the length or
 * (size_t)-1 on bad input. Spaces are skipped. */
static inline size_t kh_unhex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  int hi = -1;
  for (const char *p = hex; *p; p++) {
    int v;
    if (*p == ' ') continue;
    if (*p >= '0' && *p <= '9')
      v = *p - '0';
    else if (*p >= 'a' && *p <= 'f')
      v = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F')
      v = *p - 'A' + 10;
    else
      return (size_t)-1;
    if (hi < 0) {
      hi = v;
    } else {
      if (n == cap) return (size_t)-1;
      out[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  return hi < 0 ? n : (size_t)-1;
}

#endif

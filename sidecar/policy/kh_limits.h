/* kh_limits.h: keyholdd's numeric limits (caps, timeouts), one table for the
 * policy file's `limits:` map and the command-line flags, so both accept the
 * same names, ranges and defaults (docs/POLICY.md lists them). */
#ifndef KH_LIMITS_H
#define KH_LIMITS_H

#include <stddef.h>

#include "kh_error.h"

typedef struct {
  /* Concurrent client-side (and not yet started) handshakes per caller uid. */
  unsigned max_handshakes_per_caller;
  /* Concurrent server-side handshakes per calling process (uid + pid); past
   * it the oldest such handshake is shed: network peers that never finish a
   * ClientHello cannot spend the app's client-side budget. */
  unsigned max_server_handshakes_per_process;
  unsigned handshake_timeout_ms;
  /* Open connections to the socket per caller uid, and in all. The last
   * eighth of max_connections is kept for callers holding fewer than
   * KH_FEW_CONNECTIONS connections, so a flood leaves room for new callers. */
  unsigned max_connections_per_caller;
  unsigned max_connections;
  /* A connection must send the HTTP/2 client preface within this time. */
  unsigned preface_timeout_ms;
  /* A connection with no call for this long is closed (gRPC max idle). */
  unsigned idle_timeout_ms;
  /* After SIGTERM keyholdd exits within this time, whatever is in flight. */
  unsigned drain_timeout_ms;
  /* A certificate this close to its notAfter gets a warning log line. */
  unsigned cert_expiry_warning_hours;
} kh_limits;

#define KH_FEW_CONNECTIONS 4u

/* kh_limits_default fills |l| with the documented defaults. */
void kh_limits_default(kh_limits *l);

/* kh_limits_known: is |name| (e.g. "handshake_timeout_ms") a known limit? */
int kh_limits_known(const char *name);

/* kh_limits_names lists the names, NULL-terminated (for error messages). */
const char *const *kh_limits_names(void);

/* kh_limits_set parses |value| (decimal) into the limit |name|. Errors are
 * the bare reason, "expected a number from MIN to MAX, found 'VALUE'" or
 * "unknown limit"; the caller names the field or flag. |l| is unchanged on
 * failure. */
KH_MUST_USE int kh_limits_set(kh_limits *l, const char *name, const char *value, kh_error *err);

#endif /* KH_LIMITS_H */

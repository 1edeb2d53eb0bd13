/* kh_limits.c: the table behind kh_limits. */
#include "kh_limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  size_t offset;
  unsigned long min, max, def;
} limit_def;

#define L(field, lo, hi, dflt) \
  { #field, offsetof(kh_limits, field), lo, hi, dflt }
static const limit_def defs[] = {
    L(max_handshakes_per_caller, 1, 1000000, 256),
    L(max_server_handshakes_per_process, 1, 1000000, 256),
    L(handshake_timeout_ms, 10, 600000, 10000),
    L(max_connections_per_caller, 1, 1000000, 256),
    L(max_connections, 16, 1000000, 4096),
    L(preface_timeout_ms, 10, 60000, 2000),
    L(idle_timeout_ms, 100, 86400000, 300000),
    L(drain_timeout_ms, 100, 600000, 5000),
    L(cert_expiry_warning_hours, 1, 87600, 168),
};
#undef L
#define N_DEFS (sizeof(defs) / sizeof(defs[0]))

static const limit_def *find(const char *name) {
  for (size_t i = 0; i < N_DEFS; i++)
    if (strcmp(defs[i].name, name) == 0) return &defs[i];
  return NULL;
}

static unsigned *slot(kh_limits *l, const limit_def *d) {
  return (unsigned *)((char *)l + d->offset);
}

void kh_limits_default(kh_limits *l) {
  for (size_t i = 0; i < N_DEFS; i++) *slot(l, &defs[i]) = (unsigned)defs[i].def;
}

int kh_limits_known(const char *name) {
  return find(name) != NULL;
}

const char *const *kh_limits_names(void) {
  static const char *names[N_DEFS + 1];
  for (size_t i = 0; i < N_DEFS; i++) names[i] = defs[i].name;
  return names;
}

int kh_limits_set(kh_limits *l, const char *name, const char *value, kh_error *err) {
  const limit_def *d = find(name);
  if (d == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown limit");
  char *end;
  errno = 0;
  unsigned long v = strtoul(value, &end, 10);
  if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0 || v < d->min || v > d->max)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "expected a number from %lu to %lu, found '%.60s'",
                  d->min, d->max, value);
  *slot(l, d) = (unsigned)v;
  return 1;
}

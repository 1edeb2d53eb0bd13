/* metrics.c: the registry behind metrics.h. A series is a metric family and
 * its rendered label set ({a="b",...}); lookups are linear (a few hundred
 * series at most, each update costs well under a microsecond). */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef enum {
  M_HANDSHAKES,
  M_DURATION, /* histogram: _bucket, _sum, _count */
  M_REFUSALS,
  M_RELOADS,
  M_IN_FLIGHT,
  M_IDENTITIES,
  M_EXPIRY,
  M_DROPPED,
  M_COUNT
} family;

static const struct {
  const char *name, *type, *help;
} families[M_COUNT] = {
    {"keyhold_handshakes_total", "counter",
     "Finished calls: handshakes (s2a_v1, secure_channel) and S2A v2 sessions, by result"},
    {"keyhold_handshake_duration_seconds", "histogram", "Time from a call's admission to its end"},
    {"keyhold_refusals_total", "counter", "Calls that ended with an error, by gRPC status"},
    {"keyhold_reloads_total", "counter", "Reloads of identities, ticket keys and the policy"},
    {"keyhold_handshakes_in_flight", "gauge", "Calls holding a handshake slot now"},
    {"keyhold_identities_loaded", "gauge", "Identities keyholdd holds"},
    {"keyhold_certificate_expiry_seconds", "gauge",
     "Seconds until each identity's certificate expires (negative: expired)"},
    {"keyhold_metrics_series_dropped_total", "counter",
     "Series not recorded because the registry was full"},
};

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct {
  family f;
  char labels[256];
  double value; /* counter or gauge; a histogram's sum */
  uint64_t count, bucket[N_BUCKETS];
} series;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series table[KH_METRICS_MAX_SERIES];
static size_t n_series;
static uint64_t dropped;

/* escape: a label value as the exposition format wants it. */
static void escape(char *out, size_t cap, const char *v) {
  size_t n = 0;
  for (; v != NULL && *v != '\0' && n + 3 < cap; v++) {
    if (*v == '\\' || *v == '"') out[n++] = '\\';
    if (*v == '\n') {
      out[n++] = '\\';
      out[n++] = 'n';
      continue;
    }
    out[n++] = *v;
  }
  out[n] = '\0';
}

/* labels renders |n| name/value pairs as {a="b",...} ("" for none). */
static void labels(char *out, size_t cap, int n, ...) {
  va_list ap;
  va_start(ap, n);
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    const char *k = va_arg(ap, const char *), *v = va_arg(ap, const char *);
    char e[128];
    escape(e, sizeof(e), v);
    int w = snprintf(out + len, cap - len, "%s%s=\"%s\"", i ? "," : "{", k, e);
    if (w < 0 || (size_t)w >= cap - len) break;
    len += (size_t)w;
  }
  va_end(ap);
  if (n > 0 && len + 1 < cap) out[len++] = '}', out[len] = '\0';
}

/* find: the series (mu held); created at zero if new; NULL when full. */
static series *find(family f, const char *lab) {
  for (size_t i = 0; i < n_series; i++)
    if (table[i].f == f && strcmp(table[i].labels, lab) == 0) return &table[i];
  if (n_series == KH_METRICS_MAX_SERIES) {
    dropped++;
    return NULL;
  }
  series *s = &table[n_series++];
  memset(s, 0, sizeof(*s));
  s->f = f;
  snprintf(s->labels, sizeof(s->labels), "%s", lab);
  return s;
}

static void add(family f, const char *lab, double v) {
  series *s = find(f, lab);
  if (s) s->value += v;
}

static void set(family f, const char *lab, double v) {
  series *s = find(f, lab);
  if (s) s->value = v;
}

void kh_metrics_call(const char *service, const char *side, const char *result,
                     const char *identity, double seconds) {
  char l[256];
  pthread_mutex_lock(&mu);
  labels(l, sizeof(l), 4, "service", service, "side", side, "result", result, "identity", identity);
  add(M_HANDSHAKES, l, 1);
  if (strcmp(result, "OK") != 0) {
    labels(l, sizeof(l), 2, "service", service, "reason", result);
    add(M_REFUSALS, l, 1);
  }
  labels(l, sizeof(l), 1, "service", service);
  series *h = find(M_DURATION, l);
  if (h != NULL) {
    h->value += seconds;
    h->count++;
    for (size_t i = 0; i < N_BUCKETS; i++)
      if (seconds <= buckets[i]) h->bucket[i]++;
  }
  pthread_mutex_unlock(&mu);
}

void kh_metrics_reload(const char *what, int ok) {
  char l[128];
  pthread_mutex_lock(&mu);
  labels(l, sizeof(l), 2, "kind", what, "result", ok ? "ok" : "refused");
  add(M_RELOADS, l, 1);
  pthread_mutex_unlock(&mu);
}

void kh_metrics_set_in_flight(long n) {
  pthread_mutex_lock(&mu);
  set(M_IN_FLIGHT, "", (double)n);
  pthread_mutex_unlock(&mu);
}

void kh_metrics_set_identities(size_t n) {
  pthread_mutex_lock(&mu);
  set(M_IDENTITIES, "", (double)n);
  pthread_mutex_unlock(&mu);
}

void kh_metrics_clear_expiry(void) {
  pthread_mutex_lock(&mu);
  size_t kept = 0;
  for (size_t i = 0; i < n_series; i++)
    if (table[i].f != M_EXPIRY) table[kept++] = table[i];
  n_series = kept;
  pthread_mutex_unlock(&mu);
}

void kh_metrics_set_expiry(const char *dir, const char *name, double seconds) {
  char l[256];
  pthread_mutex_lock(&mu);
  labels(l, sizeof(l), 2, "dir", dir, "identity", name);
  set(M_EXPIRY, l, seconds);
  pthread_mutex_unlock(&mu);
}

static int appendf(kh_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(kh_buf *out, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0) return 0;
  size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
  if (!kh_buf_reserve(out, len)) return 0;
  memcpy(out->data + out->len, line, len);
  out->len += len;
  return 1;
}

/* bucket_labels: a histogram series' labels plus le="...". */
static void bucket_labels(char *out, size_t cap, const char *lab, const char *le) {
  if (lab[0] == '\0')
    snprintf(out, cap, "{le=\"%s\"}", le);
  else
    snprintf(out, cap, "%.*s,le=\"%s\"}", (int)strlen(lab) - 1, lab, le);
}

static int render_series(kh_buf *out, const series *s) {
  const char *name = families[s->f].name;
  if (s->f != M_DURATION) return appendf(out, "%s%s %.17g\n", name, s->labels, s->value);
  int ok = 1;
  char l[300], le[32];
  for (size_t i = 0; i < N_BUCKETS; i++) {
    snprintf(le, sizeof(le), "%g", buckets[i]);
    bucket_labels(l, sizeof(l), s->labels, le);
    ok &= appendf(out, "%s_bucket%s %llu\n", name, l, (unsigned long long)s->bucket[i]);
  }
  bucket_labels(l, sizeof(l), s->labels, "+Inf");
  ok &= appendf(out, "%s_bucket%s %llu\n", name, l, (unsigned long long)s->count);
  ok &= appendf(out, "%s_sum%s %.17g\n", name, s->labels, s->value);
  ok &= appendf(out, "%s_count%s %llu\n", name, s->labels, (unsigned long long)s->count);
  return ok;
}

int kh_metrics_render(kh_buf *out) {
  int ok = 1;
  pthread_mutex_lock(&mu);
  for (int f = 0; f < M_COUNT; f++) {
    ok &= appendf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                  families[f].name, families[f].type);
    if (f == M_DROPPED)
      ok &= appendf(out, "%s %llu\n", families[f].name, (unsigned long long)dropped);
    for (size_t i = 0; i < n_series; i++)
      if ((int)table[i].f == f) ok &= render_series(out, &table[i]);
  }
  pthread_mutex_unlock(&mu);
  return ok;
}

void kh_metrics_reset(void) {
  pthread_mutex_lock(&mu);
  n_series = 0;
  dropped = 0;
  pthread_mutex_unlock(&mu);
}

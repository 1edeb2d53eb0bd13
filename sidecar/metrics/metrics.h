/* metrics.h: keyholdd's counters and gauges, rendered in the Prometheus
 * text exposition format (version 0.0.4). One registry per process, like the
 * logger: any thread records (under the registry's lock), the metrics
 * listener (metrics_http.c) renders. Sans-IO: nothing here does I/O.
 *
 * Label values are bounded by what keyholdd loads (identities, services,
 * status codes): a caller cannot create series at will; past
 * KH_METRICS_MAX_SERIES new series are dropped and counted in
 * keyhold_metrics_series_dropped_total. */
#ifndef KH_METRICS_H
#define KH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kh_buf.h"

#define KH_METRICS_MAX_SERIES 1024

/* A finished call of a service: a handshake (S2A v1, secure channel), an S2A
 * v2 session. |side| "client", "server" or "-"; |result| the gRPC status
 * name ("OK", "PERMISSION_DENIED", ...); |identity| the local identity or "-". */
void kh_metrics_call(const char *service, const char *side, const char *result,
                     const char *identity, double seconds);
/* A reload of |what| ("identity", "ticket_keys", "policy"), good or refused. */
void kh_metrics_reload(const char *what, int ok);
/* Gauges set from the event loop. */
void kh_metrics_set_in_flight(long n);
void kh_metrics_set_identities(size_t n);
/* seconds until identity |name| (directory |dir|)'s certificate expires
 * (negative: expired). kh_metrics_clear_expiry first drops the old set. */
void kh_metrics_clear_expiry(void);
void kh_metrics_set_expiry(const char *dir, const char *name, double seconds);

/* kh_metrics_render appends the whole exposition to |out|; 0 if out of memory. */
int kh_metrics_render(kh_buf *out);

/* kh_metrics_reset forgets everything (tests). */
void kh_metrics_reset(void);

#endif /* KH_METRICS_H */

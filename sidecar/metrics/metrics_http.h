/* metrics_http.h: the Prometheus scrape endpoint (GET /metrics) on its own
 * listener, served by libmicrohttpd's thread: loopback TCP or a Unix
 * socket, never the sidecar socket. */
#ifndef KH_METRICS_HTTP_H
#define KH_METRICS_HTTP_H

#include "kh_error.h"

typedef struct kh_metrics_http kh_metrics_http;

/* kh_metrics_http_start listens on |addr|: "tcp://HOST:PORT" with HOST a
 * loopback literal (127.0.0.0/8, [::1]; PORT 0 picks one) or "unix:PATH"
 * (mode 0660; a stale socket file is replaced). |*out_desc| gets what it
 * listens on ("127.0.0.1:43127", "unix:/run/m.sock") for the log. */
KH_MUST_USE kh_metrics_http *kh_metrics_http_start(const char *addr, char *out_desc,
                                                   size_t desc_len, kh_error *err);
void kh_metrics_http_stop(kh_metrics_http *m);

#endif /* KH_METRICS_HTTP_H */

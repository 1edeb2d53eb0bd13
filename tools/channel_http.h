/* channel_http.h: `keyhold channel --via http(s)://HOST:PORT`: frames posted
 * to and fetched from an HTTP mailbox (tools/channel_relay.py's protocol:
 * POST /box/NAME with the frame as the body; GET /box/NAME answers 200 with
 * the oldest frame or 204 when there is none), optionally through an HTTP
 * proxy (which may be a TLS-inspecting one: give its CA with --cacert). On
 * libcurl. */
#ifndef KH_CHANNEL_HTTP_H
#define KH_CHANNEL_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct kh_http_link kh_http_link;

/* kh_http_open prepares posting to |base|/box/|send_box| and fetching from
 * |base|/box/|recv_box|; |proxy| and |cacert| may be NULL. */
kh_http_link *kh_http_open(const char *base, const char *send_box, const char *recv_box,
                           const char *proxy, const char *cacert);
void kh_http_close(kh_http_link *h);
/* kh_http_post sends one frame; 0 with |err| on failure (HTTP status or transport). */
int kh_http_post(kh_http_link *h, const uint8_t *frame, size_t len, char *err, size_t err_len);
/* kh_http_fetch: 1 with a frame in |*out| (malloc'd), 0 when the box is
 * empty, -1 with |err| on failure. */
int kh_http_fetch(kh_http_link *h, uint8_t **out, size_t *len, char *err, size_t err_len);

#endif /* KH_CHANNEL_HTTP_H */

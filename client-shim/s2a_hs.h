/* s2a_hs.h: the shim's S2A v1 client exchange, sans-IO. Packed SessionReq
 * bytes out, packed SessionResp bytes in; no gRPC, no sockets. session.c drives
 * it over a sidecar stream and an fd; an app with its own event loop can
 * drive it the same way. */
#ifndef KH_S2A_HS_H
#define KH_S2A_HS_H

#include <stddef.h>
#include <stdint.h>

#include "keyhold.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "kh_traffic.h"

typedef struct {
  kh_traffic_keys keys; /* for kh_record_new, as the sidecar returned them */
  uint64_t connection_id;
  int resumed;
  char alpn[256];
  char peer_identity[512];
  char local_identity[512];
} kh_s2a_result;

typedef struct kh_s2a_hs kh_s2a_hs;

/* |opts| strings are copied into the request when it is built. */
KH_MUST_USE kh_s2a_hs *kh_s2a_hs_new(int is_client, const kh_handshake_opts *opts, kh_error *err);
/* Wipes the result and any buffered bytes. */
void kh_s2a_hs_free(kh_s2a_hs *hs);

/* kh_s2a_hs_start builds the first request: client_start, or server_start
 * carrying |first| (the first bytes read from the peer). */
KH_MUST_USE int kh_s2a_hs_start(kh_s2a_hs *hs, const uint8_t *first, size_t first_len, kh_buf *req,
                                kh_error *err);

/* kh_s2a_hs_next builds a next request carrying any bytes the sidecar did not
 * consume before, followed by |in|. */
KH_MUST_USE int kh_s2a_hs_next(kh_s2a_hs *hs, const uint8_t *in, size_t in_len, kh_buf *req,
                               kh_error *err);

/* kh_s2a_hs_on_resp consumes one response: out_frames are appended to
 * |to_peer| (also on failure: they may carry the alert for the peer);
 * |*done| is set once the result arrived. A non-OK status fails with the
 * status code as the kh_code and "sidecar: <details>". */
KH_MUST_USE int kh_s2a_hs_on_resp(kh_s2a_hs *hs, const uint8_t *resp, size_t resp_len,
                                  kh_buf *to_peer, int *done, kh_error *err);

/* After done: the result, and the peer bytes the handshake did not consume
 * (the first input of the record layer). */
KH_MUST_USE const kh_s2a_result *kh_s2a_hs_result(const kh_s2a_hs *hs);
const kh_buf *kh_s2a_hs_leftover(const kh_s2a_hs *hs);

#define KH_S2A_MAX_TICKETS 8

/* kh_s2a_ticket_req builds a resumption_ticket request: NewSessionTicket
 * messages (header included) the peer sent on connection |connection_id|,
 * for the sidecar's session cache. |token| NULL: $S2A_ACCESS_TOKEN. */
KH_MUST_USE int kh_s2a_ticket_req(uint64_t connection_id, const char *local_identity,
                                  const char *token, const kh_buf *tickets, size_t n, kh_buf *req,
                                  kh_error *err);

/* kh_s2a_ticket_resp checks the sidecar's answer to it. */
KH_MUST_USE int kh_s2a_ticket_resp(const uint8_t *resp, size_t len, kh_error *err);

#endif /* KH_S2A_HS_H */

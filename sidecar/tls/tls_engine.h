/* tls_engine.h: the sans-IO TLS 1.3 handshake engine (BoringSSL over memory
 * BIOs). Bytes in, bytes out: no sockets, no gRPC. Used by the S2A session
 * state machine in keyholdd, by tests and by fuzz targets.
 *
 * Every handshake is mutual: a client presents its identity's chain; a server
 * requests and requires a client certificate. The peer chain is verified
 * (keys/verify.h) against the identity's trust bundle (ca.crt); a client
 * additionally checks |expect_peers| (SPIFFE ID in a URI SAN or hostname in
 * a DNS SAN; any one suffices) and, when |expect_peers| is empty,
 * |server_name| against the peer's DNS/IP SANs. The identity's key signs
 * through BoringSSL's private-key method (kh_identity_sign). On failure the
 * alert for the peer is in |out|. */
#ifndef KH_TLS_ENGINE_H
#define KH_TLS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "kh_traffic.h"
#include "peer_check.h"
#include "ticket_keys.h"

typedef enum { KH_TLS_CLIENT = 0, KH_TLS_SERVER = 1 } kh_tls_side;

#define KH_MAX_ALPN 16
#define KH_MAX_EXPECT_PEERS 16

typedef struct {
  kh_tls_side side;
  kh_identity *identity; /* local identity; the engine takes a reference */
  const char *alpn[KH_MAX_ALPN];
  size_t alpn_count;       /* 0: no ALPN */
  uint32_t allowed_suites; /* KH_SUITE_BIT mask; 0 means all three */
  const char *server_name; /* client: SNI and hostname check; NULL/"" = none */
  const char *expect_peers[KH_MAX_EXPECT_PEERS]; /* client: allowed peer names */
  size_t expect_peer_count;
  const kh_peer_check *peer_check; /* the grant's peer lists (borrowed, outlives
                                      the engine); NULL: no restriction */
  SSL_SESSION *session;            /* client: session to offer for resumption if
                                      it fits (kh_tls_session_fits; the engine
                                      takes a reference); NULL: none */
  kh_ticket_keys *ticket_keys;     /* server: ticket keys (the engine takes a
                                      reference); NULL: no tickets */
} kh_tls_config;

typedef struct {
  kh_traffic_keys keys; /* application traffic secret 0 each way; sequence
                           numbers after the post-handshake flushes */
  char peer_name[512];  /* peer's SPIFFE ID, else first DNS SAN */
  int peer_name_is_spiffe;
  char local_name[512]; /* local identity name, same rule */
  int local_name_is_spiffe;
  uint8_t peer_fingerprint[KH_SHA256_LEN]; /* SHA-256 of leaf DER */
  uint8_t local_fingerprint[KH_SHA256_LEN];
  char alpn[256]; /* negotiated ALPN, "" if none */
  int resumed;
} kh_tls_result;

typedef struct kh_tls_engine kh_tls_engine;

KH_MUST_USE kh_tls_engine *kh_tls_engine_new(const kh_tls_config *cfg, kh_error *err);
void kh_tls_engine_free(kh_tls_engine *e);

/* kh_tls_engine_step feeds |in_len| peer bytes (may be 0, e.g. to produce the
 * ClientHello) and appends bytes for the peer to |out|. |*out_consumed| is the
 * exact number of input bytes the handshake used; bytes after the peer's last
 * handshake record are left unconsumed. Returns 1 if the handshake is still in
 * progress or finished (see kh_tls_engine_done), 0 on failure with |err| set
 * (KH_ERR_HANDSHAKE with the reason; |out| may hold an alert to forward). */
KH_MUST_USE int kh_tls_engine_step(kh_tls_engine *e, const uint8_t *in, size_t in_len,
                                   size_t *out_consumed, kh_buf *out, kh_error *err);

/* kh_tls_session_fits: can client session |s| resume a handshake of |id|
 * with |allowed_suites| (0: all)? Only if it was made under |id|'s current
 * certificate (its session ID context is that leaf's fingerprint, as the
 * identity's TLS context sets it), is a resumable TLS 1.3 session with an
 * allowed suite, and has not expired. kh_tls_engine_new offers
 * |cfg->session| only if it fits, else the handshake is a full one: BoringSSL
 * would check the context only after the peer accepted the session
 * (ATTEMPT_TO_REUSE_SESSION_IN_DIFFERENT_CONTEXT), too late to fall back. */
int kh_tls_session_fits(const kh_identity *id, uint32_t allowed_suites, const SSL_SESSION *s);

/* kh_tls_engine_done is 1 once the handshake has completed. */
int kh_tls_engine_done(const kh_tls_engine *e);

/* kh_tls_engine_ticket turns one NewSessionTicket message (header
 * included) the peer sent after a completed client handshake into a
 * resumable session (caller frees), or NULL with |err| set. */
KH_MUST_USE SSL_SESSION *kh_tls_engine_ticket(kh_tls_engine *e, const uint8_t *msg, size_t len,
                                              kh_error *err);

/* kh_tls_engine_result fills |out| after completion. The caller wipes |out|
 * with kh_wipe when done (it holds the traffic secrets). */
KH_MUST_USE int kh_tls_engine_result(kh_tls_engine *e, kh_tls_result *out, kh_error *err);

#endif /* KH_TLS_ENGINE_H */

/* keyhold.h: libkeyhold, the Keyhold client shim. The one public header.
 *
 * The application never loads a private key. It connects a TCP socket to its
 * peer and hands the fd to libkeyhold (or, from an event loop, moves the
 * bytes itself: "sans-IO sessions" below), which asks the keyholdd sidecar
 * (over a gRPC stream on a Unix socket, S2A v1) to run the TLS 1.3
 * handshake. The sidecar returns only the session's traffic secrets;
 * libkeyhold then encrypts and decrypts records itself. The peer is any
 * TLS 1.3 endpoint.
 *
 *   #include <keyhold/keyhold.h>                       // link: -lkeyhold
 *   kh_error err;
 *   kh_client *kc = kh_client_new("/run/keyhold/keyhold.sock", &err);
 *   kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
 *   o.server_name = "api.example.org";
 *   kh_conn *c = kh_connect_fd(kc, fd, &o, &err);      // fd: connected TCP
 *   kh_conn_write(c, "ping", 4, &err);
 *   ssize_t n = kh_conn_read(c, buf, sizeof buf, &err); // 0: peer closed
 *   kh_conn_close(c, &err);                            // close_notify
 *   kh_conn_free(c); close(fd); kh_client_free(kc);
 *
 * Errors: every function that can fail takes a kh_error* (may be NULL) and
 * returns 0/NULL/-1 with err->code (kh_code, below) and a one-line message that
 * includes the sidecar's status details when the sidecar refused. Nothing
 * from the peer or the sidecar makes libkeyhold abort.
 *
 * Threads: a kh_client may be shared by threads (concurrent handshakes); a
 * kh_conn or kh_session is used by one thread at a time.
 *
 * Secrets: traffic secrets and record keys live in locked memory and are
 * wiped by kh_conn_free / kh_session_free. */
#ifndef KEYHOLD_H
#define KEYHOLD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- errors -------------------------------------------------------------- */

#ifdef KH_BUILDING_LIBKEYHOLD
/* libkeyhold itself uses the internal definition (common/kh_error.h). */
#include "kh_error.h"
#else
/* The public copy of common/kh_error.h's error type, codes and functions,
 * so that this header stands alone; tests/header-check.sh fails the build
 * if the two differ. */
#ifndef KH_ERROR_H
#define KH_ERROR_H

typedef enum {
  KH_OK = 0,
  /* 1..16: same numbers as gRPC status codes. */
  KH_ERR_CANCELLED = 1,
  KH_ERR_UNKNOWN = 2,
  KH_ERR_INVALID_ARGUMENT = 3,
  KH_ERR_DEADLINE_EXCEEDED = 4,
  KH_ERR_NOT_FOUND = 5,
  KH_ERR_PERMISSION_DENIED = 7,
  KH_ERR_RESOURCE_EXHAUSTED = 8,
  KH_ERR_FAILED_PRECONDITION = 9,
  KH_ERR_ABORTED = 10,
  KH_ERR_UNIMPLEMENTED = 12,
  KH_ERR_INTERNAL = 13,
  KH_ERR_UNAVAILABLE = 14, /* the sidecar cannot be reached */
  KH_ERR_UNAUTHENTICATED = 16,
  /* 100+: TLS, record layer and I/O. */
  KH_ERR_HANDSHAKE = 100, /* handshake failed (reason in the message) */
  KH_ERR_PROTOCOL = 101,  /* peer broke the TLS protocol */
  KH_ERR_DECRYPT = 102,   /* record authentication failed */
  KH_ERR_RECORD_OVERFLOW = 103,
  KH_ERR_PEER_ALERT = 104, /* peer sent a fatal alert */
  KH_ERR_CLOSED = 105,     /* connection closed (close_notify seen or sent) */
  KH_ERR_IO = 106,         /* socket error or unexpected EOF */
  KH_ERR_SEQ_OVERFLOW = 107,
  KH_ERR_NOMEM = 108,
  KH_ERR_WANT_READ = 109, /* no complete record yet: give more peer bytes, call again */
  /* 110+: secure-channel messages. */
  KH_ERR_CHANNEL_TAMPERED = 110, /* message authentication failed */
  KH_ERR_CHANNEL_REPLAY = 111,   /* message already opened */
  KH_ERR_CHANNEL_TOO_OLD = 112,  /* below the replay window, or its key is gone */
  KH_ERR_CHANNEL_WRONG = 113,    /* another channel's message, or our own reflected */
  /* 120+: non-blocking sessions. */
  KH_ERR_WANT_SIDECAR = 120, /* the sidecar's answer is not here yet: poll its fd, call again */
} kh_code;

/* KH_MUST_USE marks every fallible function: ignoring its result is a
 * warning (an error under -Werror). */
#if defined(__GNUC__) || defined(__clang__)
#define KH_MUST_USE __attribute__((warn_unused_result))
#else
#define KH_MUST_USE
#endif

#define KH_ERROR_MSG_MAX 256

typedef struct {
  kh_code code;
  char msg[KH_ERROR_MSG_MAX];
} kh_error;

/* kh_code_name returns a stable short name for |code| ("INVALID_ARGUMENT"). */
const char *kh_code_name(kh_code code);

/* kh_err sets |err| (which may be NULL) to |code| and a printf-formatted
 * message, and returns 0 so callers can write `return kh_err(err, ...)`. */
int kh_err(kh_error *err, kh_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* kh_error_clear resets |err| to KH_OK with an empty message. */
void kh_error_clear(kh_error *err);

/* kh_code_to_grpc maps a code to the closest gRPC status code number. */
unsigned kh_code_to_grpc(kh_code code);

#endif /* KH_ERROR_H */
#endif /* KH_BUILDING_LIBKEYHOLD */

/* --- the sidecar --------------------------------------------------------- */

/* A connection to the sidecar (one gRPC channel). */
typedef struct kh_client kh_client;

/* kh_client_new prepares a channel to the sidecar's Unix socket. It does not
 * connect yet: an unreachable sidecar is reported by the first handshake as
 * KH_ERR_UNAVAILABLE. */
KH_MUST_USE kh_client *kh_client_new(const char *sidecar_socket_path, kh_error *err);
/* A client connection (or session) uses |kc| to hand the peer's session
 * tickets back to the sidecar (for resumption): free |kc| after them. */
void kh_client_free(kh_client *kc);

#define KH_MAX_PEERS 16
#define KH_MAX_PROTOCOLS 16

typedef struct {
  /* Local identity (SPIFFE ID or DNS name of one of the sidecar's
   * identities); NULL: the sidecar's only identity. */
  const char *local_identity;
  /* Client: accept only a peer whose certificate carries one of these
   * (spiffe://... URI SAN, or a DNS SAN; keyholdd checks). Empty: check
   * server_name. Server: accept only a client whose verified identity as
   * keyholdd reports it (its SPIFFE ID, else its first DNS name) is one of
   * these; another gets a fatal access_denied alert and
   * KH_ERR_PERMISSION_DENIED. Empty: any client the policy allows. */
  const char *expect_peers[KH_MAX_PEERS];
  size_t expect_peer_count;
  /* ALPN protocols in preference order; none: no ALPN. */
  const char *alpn[KH_MAX_PROTOCOLS];
  size_t alpn_count;
  /* Client: SNI and hostname (or IP) verification. */
  const char *server_name;
  /* Whole-handshake deadline in milliseconds; 0: 10 s. */
  int timeout_ms;
  /* Access token the sidecar's policy may grant identities to (sent as an
   * S2A auth_mechanisms token). NULL: the S2A_ACCESS_TOKEN environment
   * variable if set, like the reference S2A client; "": send none. */
  const char *access_token;
} kh_handshake_opts;

#define KH_HANDSHAKE_OPTS_INIT \
  { 0 }

/* An established TLS 1.3 connection over a caller-owned fd. */
typedef struct kh_conn kh_conn;

/* kh_connect_fd runs an offloaded client handshake over |fd| (a connected
 * stream socket, blocking). kh_accept_fd does the server side on an accepted
 * fd. On failure the fd is left open for the caller to close.
 * |fd| may also be a socket whose non-blocking connect() is still under way
 * (EINPROGRESS): the S2A start (the sidecar's first round trip) then runs
 * while the TCP handshake does, and the ClientHello waits for the
 * connection (at most until the handshake's deadline). The fd stays
 * non-blocking: see kh_conn_read. */
KH_MUST_USE kh_conn *kh_connect_fd(kh_client *kc, int fd, const kh_handshake_opts *opts,
                                   kh_error *err);
KH_MUST_USE kh_conn *kh_accept_fd(kh_client *kc, int fd, const kh_handshake_opts *opts,
                                  kh_error *err);

/* kh_connect_host resolves |host|, connects to |port| and runs the client
 * handshake, with the S2A start overlapping the TCP handshake as above: the
 * set-up costs the longer of the two, not their sum. The addresses
 * getaddrinfo returns are tried in turn (a refused one moves on, reusing
 * the ClientHello). |opts->server_name| NULL: |host|, which the peer's
 * certificate must then carry (DNS name or IP). The connection owns its
 * socket (blocking, TCP_NODELAY; kh_conn_fd), which kh_conn_free closes. */
KH_MUST_USE kh_conn *kh_connect_host(kh_client *kc, const char *host, const char *port,
                                     const kh_handshake_opts *opts, kh_error *err);

/* kh_conn_fd: the connection's socket (for poll; kh_connect_host's is the
 * connection's to close). */
int kh_conn_fd(const kh_conn *c);

/* kh_conn_read returns up to |len| plaintext bytes, 0 once the peer sent
 * close_notify, -1 on error. A peer that closes the TCP connection without
 * close_notify is an error (KH_ERR_IO: possible truncation). On a blocking fd
 * it waits for application data; on a non-blocking fd it fails with
 * KH_ERR_WANT_READ when the records that arrived carried none (tickets,
 * KeyUpdates): poll the fd and call again. */
KH_MUST_USE ssize_t kh_conn_read(kh_conn *c, void *buf, size_t len, kh_error *err);

/* kh_conn_write encrypts and sends all |len| bytes; returns 1/0. */
KH_MUST_USE int kh_conn_write(kh_conn *c, const void *buf, size_t len, kh_error *err);

/* kh_conn_key_update sends a KeyUpdate and switches to new write keys;
 * |request_peer| asks the peer to update its keys too. */
KH_MUST_USE int kh_conn_key_update(kh_conn *c, int request_peer, kh_error *err);

/* kh_conn_close sends close_notify (idempotent), then hands queued session
 * tickets back (as kh_conn_flush_tickets; a failure there is ignored).
 * Reading may continue until the peer's close_notify. */
KH_MUST_USE int kh_conn_close(kh_conn *c, kh_error *err);

/* kh_conn_free wipes all key material, drops tickets not handed back and
 * frees |c|; it does not close the fd. */
void kh_conn_free(kh_conn *c);

/* kh_conn_pending: how much kh_conn_read has without touching the fd (for
 * poll loops: read until it is 0, then poll): decrypted bytes, or, if there
 * are none, the bytes of complete records received but not yet opened (the
 * peer's first data often comes with the handshake's last flight). */
size_t kh_conn_pending(const kh_conn *c);

typedef struct {
  const char *version;       /* "TLSv1.3" */
  const char *ciphersuite;   /* "TLS_AES_128_GCM_SHA256", ... */
  const char *alpn;          /* negotiated protocol, "" if none */
  const char *peer_identity; /* peer's SPIFFE ID, else first DNS SAN */
  const char *local_identity;
  uint64_t connection_id;
  int resumed;
} kh_conn_info;

/* kh_conn_get_info fills |out| with pointers valid until kh_conn_free. */
void kh_conn_get_info(const kh_conn *c, kh_conn_info *out);

/* kh_conn_flush_tickets hands the session tickets the peer sent so far back
 * to the sidecar, for the next handshake's resumption (client side; one
 * short gRPC call, at most 1 s; nothing queued: returns 1 at once). Reading
 * never calls the sidecar: tickets wait in the connection (at most 8) until
 * this call or kh_conn_close. A failure is reported but harmless: the
 * tickets are dropped and the connection is unaffected. */
KH_MUST_USE int kh_conn_flush_tickets(kh_conn *c, kh_error *err);

/* --- sans-IO sessions, for event loops ------------------------------------
 *
 * The same connection without an fd: the application owns the socket and
 * moves the bytes. kh_connect_fd / kh_accept_fd / kh_conn_* are built on it.
 *
 *   kh_session *s = kh_session_new(kc, KH_ROLE_CLIENT, &o, &err);
 *   for (;;) {
 *     int done = kh_session_handshake(s, &err);    // 1: established
 *     send_all(kh_session_output(s, &n)); kh_session_output_consumed(s, n);
 *     if (done) break;
 *     if (err.code != KH_ERR_WANT_READ) fail;      // its alert was in the output
 *     kh_session_feed(s, bytes_from_peer, len, &err);
 *   }
 *   kh_session_seal(s, "ping", 4, &err);           // records into the output
 *   kh_session_feed(s, bytes_from_peer, len, &err);
 *   ssize_t n = kh_session_open(s, buf, sizeof buf, &err); // -1, WANT_READ: feed more
 *
 * After every call, send what kh_session_output holds (handshake flights,
 * records, KeyUpdate answers, alerts), also after a failure.
 *
 * Blocking: each kh_session_handshake step that has peer bytes to pass on
 * (and the first one of a client) makes one gRPC exchange with the sidecar,
 * a local round trip bounded by the handshake deadline, and by default waits
 * for it. A non-blocking session (kh_session_set_nonblocking) does not: the
 * step sends its request and fails with KH_ERR_WANT_SIDECAR; the loop waits
 * for kh_session_sidecar_fd to be readable (with the peer's socket, e.g. a
 * connect() still under way) and calls kh_session_handshake again:
 *
 *   kh_session_set_nonblocking(s, &err);            // before the first step
 *   connect(fd, ...);                                // non-blocking: EINPROGRESS
 *   for (;;) {
 *     int done = kh_session_handshake(s, &err);
 *     ...send the output once fd is writable...; if (done) break;
 *     if (err.code == KH_ERR_WANT_SIDECAR) poll kh_session_sidecar_fd(s) for POLLIN;
 *     else if (err.code == KH_ERR_WANT_READ) poll fd, feed what arrived;
 *     else fail;
 *   }
 *
 * Nothing else blocks, except the one short gRPC call of
 * kh_session_flush_tickets / kh_session_close when tickets are queued. A
 * session is used by one thread at a time. */
typedef struct kh_session kh_session;

typedef enum { KH_ROLE_CLIENT = 0, KH_ROLE_SERVER = 1 } kh_role;

/* kh_session_new prepares a handshake; |opts| as for kh_connect_fd (copied:
 * the strings need not outlive the call; timeout_ms counts from now).
 * Nothing is sent yet. */
KH_MUST_USE kh_session *kh_session_new(kh_client *kc, kh_role role, const kh_handshake_opts *opts,
                                       kh_error *err);

/* kh_session_set_nonblocking makes kh_session_handshake never wait for the
 * sidecar (above); call it before the first kh_session_handshake. The
 * deadline still holds: the sidecar's fd turns readable when it passes and
 * the next step fails with KH_ERR_DEADLINE_EXCEEDED. */
KH_MUST_USE int kh_session_set_nonblocking(kh_session *s, kh_error *err);

/* kh_session_sidecar_fd: while a non-blocking step waits for the sidecar
 * (KH_ERR_WANT_SIDECAR), an fd that turns readable (POLLIN) when its answer
 * is there (or may be: spurious wake-ups happen; libkeyhold drains it);
 * else -1. It changes from step to step: ask after each. */
int kh_session_sidecar_fd(const kh_session *s);

/* kh_session_feed queues |len| bytes received from the peer (at most 1 MiB
 * unprocessed: KH_ERR_RESOURCE_EXHAUSTED beyond). */
KH_MUST_USE int kh_session_feed(kh_session *s, const void *in, size_t len, kh_error *err);

/* kh_session_handshake advances the handshake with the bytes fed so far:
 * 1 once it is established (and at once on later calls); else 0 with
 * KH_ERR_WANT_READ when it needs more bytes from the peer, or with another
 * code when it failed (for good). Bytes fed after the handshake's last
 * record stay for kh_session_open. */
KH_MUST_USE int kh_session_handshake(kh_session *s, kh_error *err);

/* kh_session_output points at the bytes to send to the peer (|*out_len| of
 * them; valid until the next call on |s|); kh_session_output_consumed drops
 * the first |n| once they are sent (partial writes are fine). */
const uint8_t *kh_session_output(const kh_session *s, size_t *out_len);
void kh_session_output_consumed(kh_session *s, size_t n);

/* kh_session_seal encrypts |len| bytes of application data into records
 * (each at most 2^14 bytes of plaintext), appended to the output. */
KH_MUST_USE int kh_session_seal(kh_session *s, const void *buf, size_t len, kh_error *err);

/* kh_session_open decrypts the records fed so far: up to |len| plaintext
 * bytes, 0 once the peer sent close_notify, -1 on error, with
 * KH_ERR_WANT_READ when no complete record of application data is there yet
 * (tickets and KeyUpdates are handled on the way; answers go to the output). */
KH_MUST_USE ssize_t kh_session_open(kh_session *s, void *buf, size_t len, kh_error *err);

/* kh_session_pending: what kh_session_open has without more input:
 * decrypted bytes, else the bytes of complete records not yet opened. */
size_t kh_session_pending(const kh_session *s);

/* As kh_conn_key_update, kh_conn_close and kh_conn_flush_tickets, with the
 * records going to the output. */
KH_MUST_USE int kh_session_key_update(kh_session *s, int request_peer, kh_error *err);
KH_MUST_USE int kh_session_close(kh_session *s, kh_error *err);
KH_MUST_USE int kh_session_flush_tickets(kh_session *s, kh_error *err);

/* kh_session_get_info: as kh_conn_get_info (empty strings until established). */
void kh_session_get_info(const kh_session *s, kh_conn_info *out);

/* kh_session_free wipes all key material, drops tickets not handed back and
 * frees |s| (NULL: nothing). */
void kh_session_free(kh_session *s);

/* --- secure channels ------------------------------------------------------ */

/* A secure channel is message-oriented and end to end: keyholdd runs a Noise
 * handshake (XX, or IK when the initiator knows the responder's static key)
 * bound to both workloads' certificates, and libkeyhold seals and opens
 * messages itself. The handshake frames and the messages are opaque bytes
 * the application carries over any transport (a broker, relays, HTTP
 * through an inspecting proxy); messages may be lost, duplicated or
 * reordered. docs/CHANNELS.md.
 *
 *   kh_channel *ch = kh_channel_new(kc, KH_CHANNEL_INITIATOR, &o, &err);
 *   while (!kh_channel_established(ch)) {
 *     send(kh_channel_output(ch, &n), n);        // a frame for the peer
 *     kh_channel_output_consumed(ch);
 *     n = receive(frame);                        // the peer's answer
 *     if (!kh_channel_handshake(ch, frame, n, &err)) ...  // then send the output: an abort
 *   }
 *   send(kh_channel_output(...)) if not empty;   // XX: the initiator's last frame
 *   ssize_t m = kh_channel_seal(ch, "hi", 2, buf, sizeof buf, &err);
 *   ssize_t p = kh_channel_open(ch, frame, n, plain, sizeof plain, &err);
 * The responder starts with kh_channel_new (no output) and feeds the
 * initiator's first frame to kh_channel_handshake.
 *
 * After a failed handshake call, kh_channel_output may hold an abort frame
 * telling the peer why: send it. An abort frame received after the
 * handshake makes kh_channel_open fail with the peer's reason. */

typedef struct kh_channel kh_channel;
typedef enum { KH_CHANNEL_INITIATOR = 0, KH_CHANNEL_RESPONDER = 1 } kh_channel_role;

#define KH_CHANNEL_KEY_LEN 32
#define KH_CHANNEL_OVERHEAD 38            /* bytes a sealed message adds */
#define KH_CHANNEL_MAX_MESSAGE (1u << 20) /* plaintext bytes per message */
#define KH_CHANNEL_MAX_FRAME 65537        /* a handshake frame */
#define KH_CHANNEL_REPLAY_WINDOW 1024     /* counters below the newest that still open */

typedef struct {
  /* As in kh_handshake_opts. */
  const char *local_identity;
  const char *expect_peers[KH_MAX_PEERS];
  size_t expect_peer_count;
  const char *pattern; /* "XX" (NULL) or "IK" */
  const char *cipher;  /* "ChaChaPoly" (NULL) or "AESGCM" */
  const char *hash;    /* "SHA256" (NULL), "SHA512" or "BLAKE2b" */
  /* IK initiator: the responder's static key (kh_channel_static_key on the
   * responder's side), KH_CHANNEL_KEY_LEN bytes. */
  const uint8_t *responder_key;
  /* Bytes both sides bind into the handshake (must be equal). */
  const uint8_t *prologue;
  size_t prologue_len;
  uint64_t rekey_after; /* messages per key epoch; 0: 2^20 */
  int timeout_ms;       /* handshake deadline; 0: 10 s */
} kh_channel_opts;

#define KH_CHANNEL_OPTS_INIT \
  { 0 }

typedef struct {
  int established;
  int initiator;
  char protocol[128]; /* Noise_XX_25519_ChaChaPoly_SHA256 */
  char peer[256];     /* verified SPIFFE ID, else DNS name */
  char local[256];    /* our identity's name */
  uint8_t peer_static_key[KH_CHANNEL_KEY_LEN];
  uint8_t channel_id[8];
  uint64_t sent, opened, rejected;
  uint32_t send_epoch, recv_epoch;
} kh_channel_info;

/* kh_channel_new starts a handshake in keyholdd; the initiator's first frame
 * is then in kh_channel_output. */
KH_MUST_USE kh_channel *kh_channel_new(kh_client *kc, kh_channel_role role,
                                       const kh_channel_opts *opts, kh_error *err);
/* kh_channel_handshake hands the peer's frame to keyholdd; the answer (if
 * any) is then in kh_channel_output. Errors: the sidecar's status
 * (UNAUTHENTICATED for a peer that does not verify or is not expected,
 * PERMISSION_DENIED without the secure-channel grant, DEADLINE_EXCEEDED). */
KH_MUST_USE int kh_channel_handshake(kh_channel *ch, const void *frame, size_t len, kh_error *err);
/* The frame to send to the peer now (NULL, 0: none); valid until the next call. */
const uint8_t *kh_channel_output(const kh_channel *ch, size_t *len);
void kh_channel_output_consumed(kh_channel *ch);
int kh_channel_established(const kh_channel *ch);

/* kh_channel_seal writes one message (len + KH_CHANNEL_OVERHEAD bytes) to
 * |out| and returns its length, or -1. */
KH_MUST_USE ssize_t kh_channel_seal(kh_channel *ch, const void *msg, size_t len, void *out,
                                    size_t out_cap, kh_error *err);
/* kh_channel_open authenticates one message and writes its plaintext to
 * |out| (len - KH_CHANNEL_OVERHEAD bytes), or returns -1:
 * KH_ERR_CHANNEL_TAMPERED, _REPLAY, _TOO_OLD, _WRONG (another channel's or
 * our own message), KH_ERR_PROTOCOL (not a message). A rejected message
 * changes nothing: the channel goes on. */
KH_MUST_USE ssize_t kh_channel_open(kh_channel *ch, const void *frame, size_t len, void *out,
                                    size_t out_cap, kh_error *err);
/* kh_channel_rekey: our next message goes out under a new key. */
KH_MUST_USE int kh_channel_rekey(kh_channel *ch, kh_error *err);
void kh_channel_get_info(const kh_channel *ch, kh_channel_info *out);
/* kh_channel_free wipes the keys and frees |ch| (NULL: nothing). */
void kh_channel_free(kh_channel *ch);

/* kh_channel_static_key: an identity's Noise static public key (NULL: the
 * default one), for IK initiators to be given out of band. */
KH_MUST_USE int kh_channel_static_key(kh_client *kc, const char *identity,
                                      uint8_t out[KH_CHANNEL_KEY_LEN], int timeout_ms,
                                      kh_error *err);

/* --- health (grpc.health.v1; docs/OPERATIONS.md) ------------------------- */

typedef enum {
  KH_HEALTH_UNKNOWN = 0,
  KH_HEALTH_SERVING = 1,
  KH_HEALTH_NOT_SERVING = 2,
  KH_HEALTH_SERVICE_UNKNOWN = 3,
} kh_health_status;

/* kh_health_check asks the sidecar's grpc.health.v1.Health/Check about
 * |service| (NULL or "": the whole sidecar); |timeout_ms| 0: 10 s. Fails
 * with the call's status (NOT_FOUND for an unknown service, UNAVAILABLE
 * when the sidecar cannot be reached). */
KH_MUST_USE int kh_health_check(kh_client *kc, const char *service, int timeout_ms,
                                kh_health_status *out, kh_error *err);

/* --- key operations (keyhold.v1.KeyOperations; docs/KEYS.md) -------------- */

#define KH_SEALING_KEY_LEN 32 /* X25519 */
#define KH_SEALED_OVERHEAD 48 /* crypto_box_SEALBYTES */
#define KH_SEALED_MAX (256 * 1024)

typedef struct {
  const char *local_identity; /* NULL or "": the caller's default identity */
  const char *access_token;   /* NULL: none */
  int timeout_ms;             /* 0: 10 s */
} kh_keyop_opts;

/* kh_sealing_key: the identity's sealing public key: what senders seal to
 * (crypto_box_seal, `keyhold seal --to`). Needs the `open-sealed` grant. */
KH_MUST_USE int kh_sealing_key(kh_client *kc, const kh_keyop_opts *opts,
                               uint8_t out[KH_SEALING_KEY_LEN], kh_error *err);

/* kh_open_sealed opens a sealed box (at most KH_SEALED_MAX bytes) with the
 * identity's key, in keyholdd: the plaintext (|len| - KH_SEALED_OVERHEAD
 * bytes) goes to |out| (|out_cap| at least that) and its length is
 * returned; -1 with |err| otherwise (INVALID_ARGUMENT: too short, altered,
 * or sealed to another key; PERMISSION_DENIED: no `open-sealed` grant). */
KH_MUST_USE ssize_t kh_open_sealed(kh_client *kc, const kh_keyop_opts *opts, const uint8_t *sealed,
                                   size_t len, uint8_t *out, size_t out_cap, kh_error *err);

/* kh_open_envelope opens a hybrid RSA envelope ("KHE1": an AES-256-GCM
 * message whose key is wrapped with the identity's RSA key, RSA-OAEP-SHA256;
 * PKCS#1 v1.5 only where the policy lists `legacy-pkcs1v15`; docs/KEYS.md)
 * in keyholdd, as kh_open_sealed does a sealed box. |out_cap|: at least
 * |len| bytes always suffice. */
KH_MUST_USE ssize_t kh_open_envelope(kh_client *kc, const kh_keyop_opts *opts,
                                     const uint8_t *envelope, size_t len, uint8_t *out,
                                     size_t out_cap, kh_error *err);

/* kh_dpop_proof has keyholdd sign a DPoP proof (RFC 9449) for one request,
 * with the identity's key (ES256 with a P-256 identity, EdDSA with an
 * Ed25519 one; |alg| NULL: the key's own): the compact JWS into |proof|
 * (|proof_cap| bytes; 4096 suffice for a 2 KiB htu) and the JWK thumbprint
 * (cnf.jkt) into |jkt| (64 bytes). |nonce| NULL: none; |ath| NULL or the
 * SHA-256 (32 bytes) of the access token the request carries. Needs the
 * `dpop` grant. */
KH_MUST_USE int kh_dpop_proof(kh_client *kc, const kh_keyop_opts *opts, const char *alg,
                              const char *htm, const char *htu, const char *nonce,
                              const uint8_t *ath, char *proof, size_t proof_cap, char jkt[64],
                              kh_error *err);

/* kh_dpop_thumbprint: the RFC 7638 JWK thumbprint of the key kh_dpop_proof
 * signs with (for binding tokens with cnf.jkt before any proof). */
KH_MUST_USE int kh_dpop_thumbprint(kh_client *kc, const kh_keyop_opts *opts, const char *alg,
                                   char jkt[64], kh_error *err);

#ifdef __cplusplus
}
#endif

#endif /* KEYHOLD_H */

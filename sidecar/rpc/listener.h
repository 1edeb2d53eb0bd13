/* listener.h: keyholdd's own Unix-socket acceptor. gRPC 1.51 exposes no peer
 * credentials, so keyholdd accepts each connection itself, reads SO_PEERCRED
 * (uid, gid, pid), records it with the socket's inode, and hands the fd to
 * gRPC (grpc_server_add_channel_from_fd). A call later finds its connection's
 * credentials by the fd number in its peer string ("fd:N"); the inode check
 * makes a reused fd number fail closed instead of inheriting credentials. */
#ifndef KH_LISTENER_H
#define KH_LISTENER_H

#include <grpc/grpc.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "caller.h"
#include "kh_error.h"
#include "kh_limits.h"

typedef struct kh_listener kh_listener;

/* kh_listener_open binds |path| (refusing a live socket, replacing a stale
 * one), sets its mode (|mode| < 0: 0660) and group (|gid| (gid_t)-1: keep). */
KH_MUST_USE kh_listener *kh_listener_open(const char *path, int mode, gid_t gid, kh_error *err);

/* kh_listener_adopt takes a listening Unix socket from systemd (socket
 * activation, sd_listen_fds): its mode and group are the .socket unit's; it
 * stays in place when keyholdd exits. |path| (may be NULL) must be the
 * socket's own path. */
KH_MUST_USE kh_listener *kh_listener_adopt(int fd, const char *path, kh_error *err);
/* kh_listener_path: the socket's path; kh_listener_owns_path: is it ours to
 * remove at exit (not an adopted one)? */
const char *kh_listener_path(const kh_listener *l);
int kh_listener_owns_path(const kh_listener *l);

/* kh_parse_tcp_addr parses "tcp://HOST:PORT" (HOST an IPv4 literal or a
 * bracketed IPv6 one) into |ss|/|len| and says whether HOST is loopback;
 * errors name |flag|. */
KH_MUST_USE int kh_parse_tcp_addr(const char *flag, const char *addr, struct sockaddr_storage *ss,
                                  socklen_t *len, int *loopback, kh_error *err);

/* kh_listener_add_tcp also listens on |addr|, "tcp://HOST:PORT" with HOST
 * an IPv4 literal or a bracketed IPv6 one, for S2A clients that cannot
 * dial a Unix socket. A TCP peer has no uid: its caller is KH_CALLER_NONE
 * (uid and gid (uid_t)-1, pid 0), so only token grants apply to it, and
 * all TCP connections share one per-caller connection cap. HOST must be a
 * loopback address (127.0.0.0/8, ::1) unless |allow_remote|. PORT 0 picks
 * one; |*out_port| is the port bound. */
KH_MUST_USE int kh_listener_add_tcp(kh_listener *l, const char *addr, int allow_remote,
                                    unsigned *out_port, kh_error *err);

typedef struct {
  kh_limits limits; /* connection caps and the preface timeout */
  /* Does the policy grant |caller| anything? A caller it does not is kept to
   * REFUSED_CONNS_PER_UID connections, each call on them refused unread. */
  int (*admit)(void *arg, const kh_caller *caller);
  void *admit_arg;
} kh_listener_config;

/* kh_listener_start spawns the accept thread: SO_PEERCRED, the connection
 * caps (per uid, in all, with headroom for new callers), the HTTP/2 preface
 * within limits.preface_timeout_ms, then the fd goes to gRPC. */
KH_MUST_USE int kh_listener_start(kh_listener *l, grpc_server *server,
                                  const kh_listener_config *cfg, kh_error *err);

/* kh_listener_caller finds the credentials of the connection behind |peer|
 * (grpc_call_get_peer). Returns 1 and fills |out| / |*admitted|, or 0 if the
 * connection is unknown or its fd now refers to another socket. */
KH_MUST_USE int kh_listener_caller(kh_listener *l, const char *peer, kh_caller *out, int *admitted);

/* kh_listener_stats: connections open now, and their peak since the last
 * call with |reset_peak| (the event loop trims memory after a flood). */
void kh_listener_stats(kh_listener *l, unsigned *open, unsigned *peak, int reset_peak);

/* kh_listener_stop_accepting ends the accept thread (before gRPC shuts down). */
void kh_listener_stop_accepting(kh_listener *l);

/* kh_listener_close stops accepting, closes the socket and unlinks its path
 * if the path is still the socket file this listener bound (a successor
 * that took the path over while we drained keeps it). */
void kh_listener_close(kh_listener *l);

#endif /* KH_LISTENER_H */

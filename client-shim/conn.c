/* conn.c: libkeyhold's fd convenience layer over the sans-IO session
 * (session.c): move the session's bytes over a caller-owned fd, waiting on
 * the peer (and meanwhile watching the sidecar) during the handshake. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keyhold.h"
#include "record.h"
#include "session.h"

#define KH_READ_CHUNK (KH_TLS_MAX_CIPHERTEXT + KH_TLS_RECORD_HEADER)
/* How often a handshake waiting on the peer looks whether the sidecar ended
 * the stream (no message: a look at the stream's completion queue). */
#define KH_SIDECAR_CHECK_MS 100

struct kh_conn {
  int fd;
  int owns_fd; /* kh_connect_host's socket: closed by kh_conn_free */
  kh_session *s;
};

/* --- fd helpers ---------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len, kh_error *err) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* non-blocking fd */
      struct pollfd pw = {.fd = fd, .events = POLLOUT};
      poll(&pw, 1, 1000);
      continue;
    }
    if (n < 0) return kh_err(err, KH_ERR_IO, "write to peer failed: %s", strerror(errno));
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

/* flush_out writes the session's output to the fd (all of it; on a write
 * error it is dropped: the connection is broken). */
static int flush_out(int fd, kh_session *s, kh_error *err) {
  size_t len;
  const uint8_t *p = kh_session_output(s, &len);
  int ok = len == 0 || write_all(fd, p, len, err);
  kh_session_output_consumed(s, len);
  return ok;
}

static long ms_left(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* read_some reads what the peer has (at least one byte) before the
 * handshake's deadline. While it waits it looks at the session's sidecar
 * stream (if one is open) every KH_SIDECAR_CHECK_MS: if the sidecar ended
 * the handshake meanwhile (its own deadline, a refusal, the sidecar gone),
 * that status is the error, not a peer timeout much later. A peer that
 * answers at once costs no check. */
static ssize_t read_some(int fd, kh_session *s, uint8_t *buf, size_t len, kh_error *err) {
  const struct timespec *deadline = kh_session_deadline(s);
  for (;;) {
    long left = ms_left(deadline);
    if (left <= 0) return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "peer did not answer in time"), -1;
    long slice = left > KH_SIDECAR_CHECK_MS ? KH_SIDECAR_CHECK_MS : left;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)(slice > 1000000 ? 1000000 : slice));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return kh_err(err, KH_ERR_IO, "poll failed: %s", strerror(errno)), -1;
    if (r == 0) {
      /* Our own deadline is the peer's to miss: the call carries the same
       * deadline, and gRPC's DEADLINE_EXCEEDED for it is no news. */
      if (ms_left(deadline) > 0 && !kh_session_check_sidecar(s, err)) return -1;
      continue;
    }
    ssize_t n = read(fd, buf, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return kh_err(err, KH_ERR_IO, "read from peer failed: %s", strerror(errno)), -1;
    if (n == 0)
      return kh_err(err, KH_ERR_IO, "peer closed the connection during the handshake"), -1;
    return n;
  }
}

/* --- connecting --------------------------------------------------------- */

/* A client's TCP connection while it is still being made: the S2A start
 * (the sidecar's first round trip) runs meanwhile, and the ClientHello it
 * returns waits here until the connection is up. */
typedef struct {
  int fd;
  int ours;              /* kh_connect_host's socket, not the caller's */
  struct addrinfo *next; /* kh_connect_host: the addresses left to try */
  const char *host, *port;
} dialing;

/* dial_next starts a non-blocking connect to the next address that takes
 * one (a connect that fails at once moves on); 0 when none is left. */
static int dial_next(dialing *d, kh_error *err) {
  for (; d->next != NULL; d->next = d->next->ai_next) {
    struct addrinfo *ai = d->next;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      kh_err(err, KH_ERR_IO, "cannot connect to %s:%s: socket: %s", d->host, d->port,
             strerror(errno));
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
      d->fd = fd;
      d->next = ai->ai_next;
      return 1;
    }
    kh_err(err, KH_ERR_IO, "cannot connect to %s:%s: %s", d->host, d->port, strerror(errno));
    close(fd);
  }
  return 0;
}

/* connected waits (until the handshake's deadline) for the connect under
 * way on d->fd; one that fails moves on to the next address. A connected
 * fd costs one poll. kh_connect_host's socket is made blocking again. */
static int connected(dialing *d, const kh_session *s, kh_error *err) {
  for (;;) {
    struct pollfd p = {.fd = d->fd, .events = POLLOUT};
    long left = ms_left(kh_session_deadline(s));
    int r = left > 0 ? poll(&p, 1, (int)(left > 1000000 ? 1000000 : left)) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return kh_err(err, KH_ERR_IO, "poll failed: %s", strerror(errno));
    if (r == 0 && !d->ours)
      return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "connection to the peer not up in time");
    if (r == 0)
      return kh_err(err, KH_ERR_DEADLINE_EXCEEDED, "connect to %s:%s did not finish in time",
                    d->host, d->port);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
    if (soerr == 0) break;
    if (!d->ours)
      return kh_err(err, KH_ERR_IO, "connection to the peer failed: %s", strerror(soerr));
    kh_err(err, KH_ERR_IO, "cannot connect to %s:%s: %s", d->host, d->port, strerror(soerr));
    if (d->next == NULL) return 0;
    close(d->fd);
    d->fd = -1;
    if (!dial_next(d, err)) return 0;
  }
  if (d->ours) {
    int one = 1;
    setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(d->fd, F_SETFL, fcntl(d->fd, F_GETFL) & ~O_NONBLOCK);
  }
  return 1;
}

/* --- handshake ----------------------------------------------------------- */

/* handshake runs the session over |d->fd|; a client's first flight waits
 * for the connection (connected) while the S2A start has already run. */
static kh_conn *handshake(kh_client *kc, dialing *d, const kh_handshake_opts *opts, kh_role role,
                          kh_error *err) {
  kh_error_clear(err);
  kh_session *s = kh_session_new(kc, role, opts, err);
  if (s == NULL) return NULL;
  uint8_t buf[KH_READ_CHUNK];
  kh_error e;
  kh_error_clear(&e);
  int up = role == KH_ROLE_SERVER;
  for (;;) {
    int done = kh_session_handshake(s, &e);
    if (!up && (done || e.code == KH_ERR_WANT_READ)) {
      kh_error cerr; /* e holds the step's WANT_READ */
      if (!connected(d, s, &cerr)) {
        e = cerr;
        goto fail;
      }
      up = 1;
    }
    /* Send the output even on failure: it carries the alert. */
    kh_error werr;
    if (up && !flush_out(d->fd, s, done || e.code == KH_ERR_WANT_READ ? &e : &werr)) done = 0;
    if (done) break;
    if (e.code != KH_ERR_WANT_READ) goto fail;
    ssize_t n = read_some(d->fd, s, buf, sizeof(buf), &e);
    if (n < 0 || !kh_session_feed(s, buf, (size_t)n, &e)) goto fail;
  }
  kh_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    kh_err(&e, KH_ERR_NOMEM, "out of memory");
    goto fail;
  }
  c->fd = d->fd;
  c->s = s;
  return c;
fail:
  if (err != NULL) *err = e;
  kh_session_free(s);
  return NULL;
}

kh_conn *kh_connect_fd(kh_client *kc, int fd, const kh_handshake_opts *opts, kh_error *err) {
  dialing d = {.fd = fd, .host = "", .port = ""};
  return handshake(kc, &d, opts, KH_ROLE_CLIENT, err);
}

kh_conn *kh_accept_fd(kh_client *kc, int fd, const kh_handshake_opts *opts, kh_error *err) {
  dialing d = {.fd = fd, .host = "", .port = ""};
  return handshake(kc, &d, opts, KH_ROLE_SERVER, err);
}

kh_conn *kh_connect_host(kh_client *kc, const char *host, const char *port,
                         const kh_handshake_opts *opts, kh_error *err) {
  kh_error_clear(err);
  if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "kh_connect_host needs a host and a port");
    return NULL;
  }
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  if (opts != NULL) o = *opts;
  if (o.server_name == NULL) o.server_name = host; /* verify what we dial */
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  int r = getaddrinfo(host, port, &hints, &res);
  if (r != 0) {
    kh_err(err, KH_ERR_IO, "cannot resolve %s: %s", host, gai_strerror(r));
    return NULL;
  }
  dialing d = {.fd = -1, .ours = 1, .next = res, .host = host, .port = port};
  kh_conn *c = NULL;
  if (dial_next(&d, err)) c = handshake(kc, &d, &o, KH_ROLE_CLIENT, err);
  freeaddrinfo(res);
  if (c == NULL) {
    if (d.fd >= 0) close(d.fd);
    return NULL;
  }
  c->owns_fd = 1;
  return c;
}

int kh_conn_fd(const kh_conn *c) {
  return c->fd;
}

/* --- records over the fd ------------------------------------------------- */

ssize_t kh_conn_read(kh_conn *c, void *buf, size_t len, kh_error *err) {
  uint8_t chunk[KH_READ_CHUNK];
  kh_error e;
  for (;;) {
    kh_error_clear(&e);
    ssize_t got = kh_session_open(c->s, buf, len, &e);
    kh_error werr;
    flush_out(c->fd, c->s, got >= 0 ? &e : &werr); /* KeyUpdate answer or our alert */
    if (got >= 0) return got;
    if (e.code != KH_ERR_WANT_READ) break;
    ssize_t n = read(c->fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* e: WANT_READ */
    if (n < 0) {
      kh_err(&e, KH_ERR_IO, "read from peer failed: %s", strerror(errno));
      break;
    }
    if (n == 0) {
      kh_session_fail(c->s);
      kh_err(&e, KH_ERR_IO, "peer closed the connection without close_notify");
      break;
    }
    if (!kh_session_feed(c->s, chunk, (size_t)n, &e)) break;
  }
  if (err != NULL) *err = e;
  return -1;
}

int kh_conn_write(kh_conn *c, const void *buf, size_t len, kh_error *err) {
  return kh_session_seal(c->s, buf, len, err) && flush_out(c->fd, c->s, err);
}

int kh_conn_key_update(kh_conn *c, int request_peer, kh_error *err) {
  return kh_session_key_update(c->s, request_peer, err) && flush_out(c->fd, c->s, err);
}

int kh_conn_close(kh_conn *c, kh_error *err) {
  int ok = kh_session_close_notify(c->s, err) && flush_out(c->fd, c->s, err);
  if (ok) kh_session_flush_tickets_quietly(c->s); /* after close_notify is on its way */
  return ok;
}

int kh_conn_flush_tickets(kh_conn *c, kh_error *err) {
  return kh_session_flush_tickets(c->s, err);
}

size_t kh_conn_pending(const kh_conn *c) {
  return kh_session_pending(c->s);
}

void kh_conn_free(kh_conn *c) {
  if (c == NULL) return;
  kh_session_free(c->s);
  if (c->owns_fd) close(c->fd);
  free(c);
}

void kh_conn_get_info(const kh_conn *c, kh_conn_info *out) {
  kh_session_get_info(c->s, out);
}

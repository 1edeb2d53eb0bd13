/* session_client: drives libkeyhold's sans-IO session API (keyhold.h only,
 * no kh_conn_*, no fd given to libkeyhold) from a poll loop over its own
 * non-blocking socket, for tests/integration/session_api.sh.
 *
 *   session_client SIDECAR IDENTITY EXPECT_PEER PORT HS_CHUNK LINE
 *   session_client --serve SIDECAR IDENTITY HS_CHUNK
 *
 * Client: connects to 127.0.0.1:PORT, handshakes feeding the peer's bytes in
 * pieces of at most HS_CHUNK bytes and writing the output at most 100 bytes
 * a time, sends LINE, reads the answer line feeding one byte at a time (so
 * most kh_session_open calls see a partial record: WANT_READ), then waits
 * for a line on stdin before it hands the session tickets back, and closes.
 * Server: listens on an ephemeral port of 127.0.0.1 ("listening on PORT"),
 * accepts one client, handshakes the same way, echoes what it reads (fed one
 * byte at a time) until the client's close_notify, and closes.
 * Progress goes to stderr, the answer (client) to stdout.
 * --nonblocking first (either mode): the session never waits for the
 * sidecar (kh_session_set_nonblocking): a step that needs it returns
 * KH_ERR_WANT_SIDECAR and the loop polls kh_session_sidecar_fd; the client's
 * connect() is non-blocking too, still under way when the S2A start goes
 * out. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyhold.h"

static int g_nonblocking;

static void die(const char *what, const kh_error *err) {
  fprintf(stderr, "session_client: %s: %s [%s]\n", what, err ? err->msg : strerror(errno),
          err ? kh_code_name(err->code) : "errno");
  exit(1);
}

static void wait_fd(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  int r;
  do {
    r = poll(&p, 1, 10000);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) die(events == POLLIN ? "peer silent for 10 s" : "cannot write for 10 s", NULL);
}

/* send_output writes the session's output in pieces of at most 100 bytes,
 * telling the session after each what was sent. */
static void send_output(kh_session *s, int fd) {
  for (;;) {
    size_t len;
    const uint8_t *p = kh_session_output(s, &len);
    if (len == 0) return;
    ssize_t n = write(fd, p, len < 100 ? len : 100);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_fd(fd, POLLOUT);
      continue;
    }
    if (n < 0) die("write", NULL);
    kh_session_output_consumed(s, (size_t)n);
  }
}

/* feed_some reads at most |chunk| bytes from the peer into the session. */
static void feed_some(kh_session *s, int fd, size_t chunk) {
  uint8_t buf[4096];
  if (chunk > sizeof(buf)) chunk = sizeof(buf);
  for (;;) {
    ssize_t n = read(fd, buf, chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_fd(fd, POLLIN);
      continue;
    }
    if (n < 0) die("read", NULL);
    if (n == 0) {
      errno = ECONNRESET;
      die("peer closed the connection", NULL);
    }
    kh_error err;
    if (!kh_session_feed(s, buf, (size_t)n, &err)) die("feed", &err);
    return;
  }
}

/* handshake runs |s| to completion over |fd|; returns the WANT_READ steps. */
static int handshake(kh_session *s, int fd, size_t chunk) {
  kh_error err;
  int wants = 0, sidecar_waits = 0, spurious = 0, woke = 0;
  if (g_nonblocking && !kh_session_set_nonblocking(s, &err)) die("set_nonblocking", &err);
  for (;;) {
    int done = kh_session_handshake(s, &err);
    send_output(s, fd); /* also after a failure: the alert */
    if (done) break;
    if (err.code == KH_ERR_WANT_SIDECAR && g_nonblocking) {
      int sfd = kh_session_sidecar_fd(s);
      if (sfd < 0) die("WANT_SIDECAR without a sidecar fd", &err);
      if (woke) spurious++; /* the fd said readable, the answer was not there */
      sidecar_waits++;
      wait_fd(sfd, POLLIN);
      woke = 1;
      continue;
    }
    woke = 0;
    if (err.code != KH_ERR_WANT_READ) die("handshake", &err);
    if (kh_session_sidecar_fd(s) != -1) die("a sidecar fd while nothing waits for it", NULL);
    wants++;
    feed_some(s, fd, chunk);
  }
  if (kh_session_handshake(s, &err) != 1) die("handshake again", &err);
  kh_conn_info info;
  kh_session_get_info(s, &info);
  fprintf(stderr,
          "session_client: established %s %s peer=%s local=%s%s want_read=%d want_sidecar=%d "
          "spurious_wakes=%d\n",
          info.version, info.ciphersuite, info.peer_identity[0] ? info.peer_identity : "-",
          info.local_identity, info.resumed ? " resumed" : "", wants, sidecar_waits, spurious);
  return wants;
}

/* serve: one server-side session on an ephemeral port, echoing. */
static int serve(kh_client *kc, const char *identity, size_t chunk) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof(sa);
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&sa, &sl) != 0)
    die("listen", NULL);
  fprintf(stderr, "session_client: listening on %d\n", ntohs(sa.sin_port));
  int fd = accept(ls, NULL, NULL);
  if (fd < 0) die("accept", NULL);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  kh_error err;
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = identity;
  kh_session *s = kh_session_new(kc, KH_ROLE_SERVER, &o, &err);
  if (s == NULL) die("kh_session_new", &err);
  handshake(s, fd, chunk);
  char buf[1024];
  size_t echoed = 0;
  for (;;) {
    ssize_t n = kh_session_open(s, buf, sizeof(buf), &err);
    if (n == 0) break; /* the client's close_notify */
    if (n < 0 && err.code != KH_ERR_WANT_READ) die("open", &err);
    if (n < 0) {
      feed_some(s, fd, 1);
      continue;
    }
    if (!kh_session_seal(s, buf, (size_t)n, &err)) die("seal", &err);
    send_output(s, fd);
    echoed += (size_t)n;
  }
  if (!kh_session_close(s, &err)) die("close", &err);
  send_output(s, fd);
  fprintf(stderr, "session_client: echoed %zu bytes, closed\n", echoed);
  kh_session_free(s);
  close(fd);
  close(ls);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--nonblocking") == 0) {
    g_nonblocking = 1;
    argv++;
    argc--;
  }
  if (argc == 5 && strcmp(argv[1], "--serve") == 0) {
    kh_error err;
    kh_client *kc = kh_client_new(argv[2], &err);
    if (kc == NULL) die("kh_client_new", &err);
    int rc = serve(kc, argv[3], (size_t)atoi(argv[4]));
    kh_client_free(kc);
    return rc;
  }
  if (argc != 7) {
    fprintf(
        stderr,
        "usage: session_client [--nonblocking] SIDECAR IDENTITY EXPECT_PEER PORT HS_CHUNK LINE\n"
        "       session_client [--nonblocking] --serve SIDECAR IDENTITY HS_CHUNK\n");
    return 2;
  }
  size_t hs_chunk = (size_t)atoi(argv[5]);
  int fd = socket(AF_INET, SOCK_STREAM | (g_nonblocking ? SOCK_NONBLOCK : 0), 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Non-blocking: the handshake's first write waits for the connection. */
  if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS))
    die("connect", NULL);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  kh_error err;
  kh_client *kc = kh_client_new(argv[1], &err);
  if (kc == NULL) die("kh_client_new", &err);
  kh_handshake_opts o = KH_HANDSHAKE_OPTS_INIT;
  o.local_identity = argv[2];
  o.expect_peers[0] = argv[3];
  o.expect_peer_count = 1;
  kh_session *s = kh_session_new(kc, KH_ROLE_CLIENT, &o, &err);
  if (s == NULL) die("kh_session_new", &err);
  handshake(s, fd, hs_chunk);

  char line[1024];
  int open_wants = 0;
  snprintf(line, sizeof(line), "%s\n", argv[6]);
  if (!kh_session_seal(s, line, strlen(line), &err)) die("seal", &err);
  send_output(s, fd);

  char answer[1024];
  size_t got = 0;
  while (got == 0 || answer[got - 1] != '\n') {
    if (got == sizeof(answer)) die("answer too long", NULL);
    ssize_t n = kh_session_open(s, answer + got, sizeof(answer) - got, &err);
    send_output(s, fd); /* a KeyUpdate answer, if the peer asked */
    if (n == 0) die("peer closed before answering", NULL);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (err.code != KH_ERR_WANT_READ) die("open", &err);
    open_wants++;
    feed_some(s, fd, 1);
  }
  fwrite(answer, 1, got, stdout);
  fflush(stdout);
  fprintf(stderr, "session_client: answer read, want_read=%d pending=%zu\n", open_wants,
          kh_session_pending(s));

  /* The tickets came with the answer; nothing has gone to the sidecar. */
  if (fgets(line, sizeof(line), stdin) == NULL) line[0] = '\0';
  if (!kh_session_flush_tickets(s, &err)) die("flush tickets", &err);
  fprintf(stderr, "session_client: tickets handed back\n");
  if (!kh_session_close(s, &err)) die("close", &err);
  send_output(s, fd);
  fprintf(stderr, "session_client: closed\n");
  kh_session_free(s);
  close(fd);
  kh_client_free(kc);
  return 0;
}

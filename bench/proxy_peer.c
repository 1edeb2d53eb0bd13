/* proxy_peer: the TLS 1.3 server of proxy_bench, the same for every path
 * (Keyhold, haproxy, stunnel). OpenSSL libssl; mutual TLS (a client
 * certificate is required and verified against CA), TLS_AES_128_GCM_SHA256
 * and X25519 only, one stateless session ticket per handshake so the next
 * connection can resume. One thread per connection.
 *   proxy_peer CERT KEY CA                  prints "port N", serves until killed
 *
 * The protocol (after the handshake): the client sends a 64-byte message
 * whose first byte is the mode; the peer answers with 64 bytes whose first
 * byte says how this connection's handshake went ('R' resumed, 'F' full:
 * SSL_session_reused) and the rest is the message's, then
 *   'E' echo: echoes what it reads, until the client closes;
 *   'S' source: writes 16 KiB records until the client closes. */
#include <pthread.h>
#include <signal.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hs_common.h"

#define PP_MSG 64
#define PP_CHUNK 16384

static SSL_CTX *g_ctx;

static SSL_CTX *make_ctx(const char *cert, const char *key, const char *ca) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  static const unsigned char sid_ctx[] = "proxy_peer";
  if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
      !SSL_CTX_set1_groups_list(ctx, "X25519") || !SSL_CTX_use_certificate_chain_file(ctx, cert) ||
      !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) ||
      !SSL_CTX_load_verify_locations(ctx, ca, NULL) ||
      !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) ||
      !SSL_CTX_set_num_tickets(ctx, 1)) {
    fprintf(stderr, "proxy_peer: cannot load %s / %s / %s\n", cert, key, ca);
    exit(1);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return ctx;
}

/* read_msg reads exactly |len| bytes; 1 if it got them. */
static int read_msg(SSL *ssl, unsigned char *buf, int len) {
  for (int got = 0; got < len;) {
    int n = SSL_read(ssl, buf + got, len - got);
    if (n <= 0) return 0;
    got += n;
  }
  return 1;
}

static void echo(SSL *ssl) {
  unsigned char buf[PP_CHUNK];
  for (;;) {
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0 || SSL_write(ssl, buf, n) != n) return;
  }
}

static void source(SSL *ssl) {
  static unsigned char buf[PP_CHUNK]; /* zeros; only read */
  while (SSL_write(ssl, buf, sizeof(buf)) == (int)sizeof(buf)) {
  }
}

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  SSL *ssl = SSL_new(g_ctx);
  unsigned char msg[PP_MSG];
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1 && read_msg(ssl, msg, PP_MSG)) {
    unsigned char mode = msg[0];
    msg[0] = SSL_session_reused(ssl) ? 'R' : 'F';
    if (SSL_write(ssl, msg, PP_MSG) == PP_MSG) {
      if (mode == 'E') echo(ssl);
      if (mode == 'S') source(ssl);
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: proxy_peer CERT KEY CA\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_ctx = make_ctx(argv[1], argv[2], argv[3]);
  int lfd = hs_listen();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_t t;
    if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)fd) != 0) close(fd);
  }
}

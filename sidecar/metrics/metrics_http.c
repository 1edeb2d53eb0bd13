/* metrics_http.c: GET /metrics through libmicrohttpd (one internal polling
 * thread; the socket is ours, bound before the sandbox goes on). */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kh_buf.h"
#include "listener.h"
#include "metrics.h"

struct kh_metrics_http {
  struct MHD_Daemon *d;
  char *unix_path; /* removed at stop */
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             kh_buf *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_COPY);
  kh_buf_free(body);
  if (r == NULL) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  enum MHD_Result ret = MHD_queue_response(conn, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result text(struct MHD_Connection *conn, unsigned code, const char *msg) {
  kh_buf b = KH_BUF_INIT;
  size_t n = strlen(msg);
  if (kh_buf_reserve(&b, n)) memcpy(b.data, msg, n), b.len = n;
  return reply(conn, code, "text/plain; charset=utf-8", &b);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
  (void)cls, (void)version, (void)upload;
  if (*state == NULL) { /* first call: headers only */
    *state = conn;
    return MHD_YES;
  }
  if (*upload_size != 0) return text(conn, 413, "no request body expected\n");
  if (strcmp(url, "/metrics") != 0) return text(conn, 404, "keyholdd serves /metrics only\n");
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return text(conn, 405, "GET /metrics\n");
  kh_buf b = KH_BUF_INIT;
  if (!kh_metrics_render(&b)) {
    kh_buf_free(&b);
    return text(conn, 500, "out of memory\n");
  }
  return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

static int listen_unix(const char *path, char **saved, kh_error *err) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sun.sun_path)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "--metrics-listen unix:%.100s: path too long", path);
    return -1;
  }
  strcpy(sun.sun_path, path);
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path); /* stale */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(path, 0660) != 0 ||
      listen(fd, 16) != 0) {
    kh_err(err, KH_ERR_UNAVAILABLE, "--metrics-listen unix:%.100s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  *saved = strdup(path);
  return fd;
}

static int listen_tcp(const char *addr, char *desc, size_t desc_len, kh_error *err) {
  struct sockaddr_storage ss;
  socklen_t len;
  int loopback = 0;
  if (!kh_parse_tcp_addr("--metrics-listen", addr, &ss, &len, &loopback, err)) return -1;
  if (!loopback) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "--metrics-listen %.100s: not a loopback address (metrics stay on the host or pod; "
           "use a Unix socket or 127.0.0.1)",
           addr);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0) {
    kh_err(err, KH_ERR_UNAVAILABLE, "--metrics-listen %.100s: %s", addr, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  len = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &len);
  const char *host = addr + 6;
  unsigned port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
  snprintf(desc, desc_len, "%.*s:%u", (int)(strrchr(host, ':') - host), host, port);
  return fd;
}

kh_metrics_http *kh_metrics_http_start(const char *addr, char *desc, size_t desc_len,
                                       kh_error *err) {
  kh_metrics_http *m = calloc(1, sizeof(*m));
  if (m == NULL) {
    kh_err(err, KH_ERR_INTERNAL, "out of memory");
    return NULL;
  }
  int fd;
  if (strncmp(addr, "unix:", 5) == 0) {
    fd = listen_unix(addr + 5, &m->unix_path, err);
    snprintf(desc, desc_len, "%s", addr);
  } else {
    fd = listen_tcp(addr, desc, desc_len, err);
  }
  if (fd < 0) {
    free(m);
    return NULL;
  }
  m->d = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, NULL,
                          MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 16u,
                          MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (m->d == NULL) {
    kh_err(err, KH_ERR_INTERNAL, "--metrics-listen %.100s: libmicrohttpd did not start", addr);
    close(fd);
    kh_metrics_http_stop(m);
    return NULL;
  }
  return m;
}

void kh_metrics_http_stop(kh_metrics_http *m) {
  if (m == NULL) return;
  if (m->d) MHD_stop_daemon(m->d); /* closes the listening socket */
  if (m->unix_path) unlink(m->unix_path);
  free(m->unix_path);
  free(m);
}

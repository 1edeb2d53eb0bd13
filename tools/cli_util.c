/* cli_util.c: see cli_util.h. */
#include "cli_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((format(printf, 1, 0))) static void say(const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  fprintf(stderr, "keyhold: %s\n", line);
}

void kh_cli_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say(fmt, ap);
  va_end(ap);
  exit(1);
}

int kh_cli_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say(fmt, ap);
  va_end(ap);
  return 1;
}

long kh_cli_number(const char *flag, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
    kh_cli_die("%s '%s': a whole number from %ld to %ld expected", flag, s, min, max);
  return v;
}

int kh_cli_split_hostport(char *s, char **host, char **port) {
  char *colon = strrchr(s, ':');
  if (colon == NULL) return 0;
  *colon = '\0';
  *port = colon + 1;
  *host = s;
  if (s[0] == '[' && colon > s && colon[-1] == ']') {
    colon[-1] = '\0';
    *host = s + 1;
  }
  return **port != '\0';
}

int kh_cli_tcp_connect(const char *host, const char *port, char *msg, size_t len) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  int r = getaddrinfo(host, port, &hints, &res);
  if (r != 0) {
    snprintf(msg, len, "cannot resolve %s: %s", host, gai_strerror(r));
    return -1;
  }
  int fd = -1;
  snprintf(msg, len, "no address for %s", host);
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      snprintf(msg, len, "cannot connect to %s:%s: %s", host, port, strerror(errno));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

int kh_cli_tcp_listen(const char *host, const char *port, int backlog, char *bound,
                      size_t bound_len, char *msg, size_t len) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
  int r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (r != 0) {
    snprintf(msg, len, "cannot resolve %s: %s", host, gai_strerror(r));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
    snprintf(msg, len, "cannot listen on %s:%s: %s", host, port, strerror(errno));
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  kh_cli_format_addr(&ss, bound, bound_len);
  return fd;
}

void kh_cli_format_addr(const struct sockaddr_storage *ss, char *out, size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
    port = ntohs(s4->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
    port = ntohs(s6->sin6_port);
  }
  snprintf(out, len, ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

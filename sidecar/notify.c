/* notify.c: see notify.h. The protocol is one datagram of NAME=VALUE lines
 * to the AF_UNIX socket systemd names in $NOTIFY_SOCKET. */
#include "notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kh_log.h"

int kh_notify_open(void) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (path == NULL || path[0] == '\0') return -1;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
    kh_log(KH_LOG_WARN, "NOTIFY_SOCKET %.100s: not a socket path; no readiness notification", path);
    return -1;
  }
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa,
                        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) != 0) {
    kh_log(KH_LOG_WARN, "NOTIFY_SOCKET %.100s: cannot connect; no readiness notification", path);
    if (fd >= 0) close(fd);
    return -1;
  }
  unsetenv("NOTIFY_SOCKET");
  return fd;
}

void kh_notify_send(int fd, const char *msg) {
  if (fd < 0) return;
  if (send(fd, msg, strlen(msg), MSG_NOSIGNAL) < 0)
    kh_log(KH_LOG_WARN, "readiness notification not sent to systemd");
}

void kh_notify_close(int fd) {
  if (fd >= 0) close(fd);
}

/* listener.c: accept(2) + SO_PEERCRED in front of gRPC. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include "kh_log.h"

typedef struct {
  ino_t ino; /* 0: slot unused */
  kh_caller caller;
  int admitted;
} conn_slot;

struct kh_listener {
  char *path;
  int fd;
  int bound; /* we created |path| */
  pthread_t thread;
  int running;
  grpc_server *server;
  grpc_server_credentials *creds;
  int (*admit)(void *, const kh_caller *);
  void *admit_arg;
  pthread_mutex_t mu;
  conn_slot *slots; /* indexed by fd number */
  size_t n_slots;
};

/* prepare_path refuses a live socket and removes a stale one. */
static int prepare_path(const char *path, kh_error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "socket path too long: %s", path);
  struct stat st;
  if (lstat(path, &st) != 0) return 1;
  if (!S_ISSOCK(st.st_mode))
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "%s exists and is not a socket", path);
  memcpy(sa.sun_path, path, strlen(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  if (fd >= 0) close(fd);
  if (live) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "another process is serving %s", path);
  if (unlink(path) != 0)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "cannot remove stale %s: %s", path,
                  strerror(errno));
  return 1;
}

kh_listener *kh_listener_open(const char *path, int mode, gid_t gid, kh_error *err) {
  if (!prepare_path(path, err)) return NULL;
  kh_listener *l = calloc(1, sizeof(*l));
  struct rlimit rl;
  size_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                 ? (size_t)rl.rlim_cur
                 : 65536;
  if (n > (1u << 20)) n = 1u << 20;
  if (l == NULL || (l->path = strdup(path)) == NULL ||
      (l->slots = calloc(n, sizeof(*l->slots))) == NULL) {
    if (l) free(l->path);
    free(l);
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  l->n_slots = n;
  l->fd = -1;
  pthread_mutex_init(&l->mu, NULL);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path));
  /* Create the socket file with no access for anyone, then open it up to
   * exactly |mode|: there is no window where it is wider. */
  mode_t old = umask(0777);
  l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok = l->fd >= 0 && bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  umask(old);
  l->bound = ok;
  if (!ok) {
    kh_err(err, KH_ERR_UNAVAILABLE, "cannot bind %s: %s", path, strerror(errno));
  } else if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) {
    ok = kh_err(err, KH_ERR_PERMISSION_DENIED, "cannot give %s to group %u: %s", path,
                (unsigned)gid, strerror(errno));
  } else if (chmod(path, mode < 0 ? 0660 : (mode_t)mode) != 0 || listen(l->fd, 1024) != 0) {
    ok = kh_err(err, KH_ERR_UNAVAILABLE, "cannot listen on %s: %s", path, strerror(errno));
  }
  if (!ok) {
    kh_listener_close(l);
    return NULL;
  }
  return l;
}

static void *accept_loop(void *arg) {
  kh_listener *l = arg;
  int warned = 0;
  for (;;) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        if (!warned++) kh_log(KH_LOG_WARN, "accept: %s; new connections wait", strerror(errno));
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        continue;
      }
      return NULL; /* EINVAL after shutdown(): we are stopping */
    }
    warned = 0;
    struct ucred uc;
    socklen_t len = sizeof(uc);
    struct stat st;
    if ((size_t)fd >= l->n_slots || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 ||
        fstat(fd, &st) != 0) {
      kh_log(KH_LOG_WARN, "refused a connection: no peer credentials");
      close(fd);
      continue;
    }
    kh_caller c = {.uid = uc.uid, .gid = uc.gid, .pid = uc.pid};
    int admitted = l->admit ? l->admit(l->admit_arg, &c) : 1;
    if (!admitted)
      kh_log(KH_LOG_WARN, "connection from uid=%u gid=%u pid=%d: no identity is granted to it",
             (unsigned)c.uid, (unsigned)c.gid, (int)c.pid);
    else
      kh_log(KH_LOG_DEBUG, "connection from uid=%u gid=%u pid=%d", (unsigned)c.uid, (unsigned)c.gid,
             (int)c.pid);
    pthread_mutex_lock(&l->mu);
    l->slots[fd] = (conn_slot){.ino = st.st_ino ? st.st_ino : 1, .caller = c, .admitted = admitted};
    pthread_mutex_unlock(&l->mu);
    grpc_server_add_channel_from_fd(l->server, fd, l->creds);
  }
}

int kh_listener_start(kh_listener *l, grpc_server *server, int (*admit)(void *, const kh_caller *),
                      void *admit_arg, kh_error *err) {
  l->server = server;
  l->admit = admit;
  l->admit_arg = admit_arg;
  l->creds = grpc_insecure_server_credentials_create();
  if (pthread_create(&l->thread, NULL, accept_loop, l) != 0)
    return kh_err(err, KH_ERR_INTERNAL, "cannot start the accept thread");
  l->running = 1;
  return 1;
}

int kh_listener_caller(kh_listener *l, const char *peer, kh_caller *out, int *admitted) {
  char *end;
  if (peer == NULL || strncmp(peer, "fd:", 3) != 0) return 0;
  long fd = strtol(peer + 3, &end, 10);
  if (*end != '\0' || fd < 0 || (size_t)fd >= l->n_slots) return 0;
  struct stat st;
  if (fstat((int)fd, &st) != 0) return 0;
  pthread_mutex_lock(&l->mu);
  conn_slot s = l->slots[fd];
  pthread_mutex_unlock(&l->mu);
  if (s.ino == 0 || s.ino != (st.st_ino ? st.st_ino : 1)) return 0;
  *out = s.caller;
  *admitted = s.admitted;
  return 1;
}

void kh_listener_stop_accepting(kh_listener *l) {
  if (l == NULL || !l->running) return;
  shutdown(l->fd, SHUT_RDWR); /* accept() returns EINVAL */
  pthread_join(l->thread, NULL);
  l->running = 0;
}

void kh_listener_close(kh_listener *l) {
  if (l == NULL) return;
  kh_listener_stop_accepting(l);
  if (l->fd >= 0) close(l->fd);
  if (l->bound) unlink(l->path);
  if (l->creds) grpc_server_credentials_release(l->creds);
  pthread_mutex_destroy(&l->mu);
  free(l->slots);
  free(l->path);
  free(l);
}

/* listener.c: accept(2) + SO_PEERCRED in front of gRPC, with the connection
 * limits applied before gRPC sees a byte.
 *
 * One thread runs an epoll loop over the listening socket and the accepted
 * connections that have not yet sent the HTTP/2 client preface. Every
 * accepted fd has a slot (indexed by fd number) on one of two lists:
 *   PREFACE  accepted, counted, waiting (FIFO = deadline order) for the
 *            24-byte preface; closed at the deadline or on garbage;
 *   GRPC     handed to gRPC, which owns and closes the fd. We notice the
 *            close when the fd number comes back from accept4, or when the
 *            fd no longer refers to the same socket (dev/inode) at a prune.
 * Counts per uid and in all are exact up to that notice; a prune runs about
 * once a second and before any refusal for a full cap. |mu| guards slots and
 * counts (kh_listener_caller runs on gRPC's threads). */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include "kh_log.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
/* A caller the policy grants nothing keeps at most this many connections,
 * only so each call on them can be answered PERMISSION_DENIED. */
#define REFUSED_CONNS_PER_UID 2u
#define PRUNE_MS 1000

typedef enum { SLOT_FREE, SLOT_PREFACE, SLOT_GRPC } slot_state;

typedef struct {
  slot_state state;
  dev_t dev;
  ino_t ino;
  kh_caller caller;
  int admitted;
  long long deadline_ms; /* PREFACE */
  int prev, next;        /* the state's list; -1 ends it */
} conn_slot;

typedef struct {
  int head, tail;
} slot_list;

typedef struct {
  uid_t uid;
  unsigned n;
} uid_conns;

struct kh_listener {
  char *path;
  int fd;
  int tcp_fd;     /* kh_listener_add_tcp's socket, or -1 */
  int lock_fd;    /* flock()ed PATH.lock while |path| is ours; -1 after */
  int bound;      /* we created |path| */
  dev_t path_dev; /* the socket file we created: only that is unlinked */
  ino_t path_ino;
  int epfd;
  pthread_t thread;
  int running;
  int stopping;
  grpc_server *server;
  grpc_server_credentials *creds;
  kh_listener_config cfg;
  pthread_mutex_t mu;
  conn_slot *slots; /* indexed by fd number */
  size_t n_slots;
  slot_list preface, grpc;
  uid_conns *uids;
  size_t n_uids;
  unsigned open, peak; /* connections counted, and their peak since kh_listener_stats */
  long long last_prune_ms;
  long long last_refusal_log_ms;
  unsigned refusals_unlogged;
};

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- slot lists and counts (mu held) ------------------------------------- */

static void list_push(kh_listener *l, slot_list *list, int fd) {
  conn_slot *s = &l->slots[fd];
  s->prev = list->tail;
  s->next = -1;
  if (list->tail >= 0)
    l->slots[list->tail].next = fd;
  else
    list->head = fd;
  list->tail = fd;
}

static void list_remove(kh_listener *l, slot_list *list, int fd) {
  conn_slot *s = &l->slots[fd];
  if (s->prev >= 0)
    l->slots[s->prev].next = s->next;
  else
    list->head = s->next;
  if (s->next >= 0)
    l->slots[s->next].prev = s->prev;
  else
    list->tail = s->prev;
  s->prev = s->next = -1;
}

static uid_conns *uid_entry(kh_listener *l, uid_t uid, int create) {
  for (size_t i = 0; i < l->n_uids; i++)
    if (l->uids[i].uid == uid) return &l->uids[i];
  if (!create) return NULL;
  uid_conns *grown = realloc(l->uids, (l->n_uids + 1) * sizeof(*grown));
  if (grown == NULL) return NULL;
  l->uids = grown;
  l->uids[l->n_uids] = (uid_conns){.uid = uid};
  return &l->uids[l->n_uids++];
}

/* slot_release forgets |fd|'s connection (closed by gRPC or by us). */
static void slot_release(kh_listener *l, int fd) {
  conn_slot *s = &l->slots[fd];
  if (s->state == SLOT_FREE) return;
  list_remove(l, s->state == SLOT_PREFACE ? &l->preface : &l->grpc, fd);
  uid_conns *u = uid_entry(l, s->caller.uid, 0);
  if (u != NULL && u->n > 0 && --u->n == 0) *u = l->uids[--l->n_uids]; /* drop empty entries */
  l->open--;
  s->state = SLOT_FREE;
}

/* same_socket: does |fd| still refer to the socket accepted into its slot? */
static int same_socket(const conn_slot *s, int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino;
}

/* prune forgets connections gRPC has closed. */
static void prune(kh_listener *l, long long now) {
  l->last_prune_ms = now;
  for (int fd = l->grpc.head; fd >= 0;) {
    int next = l->slots[fd].next;
    if (!same_socket(&l->slots[fd], fd)) slot_release(l, fd);
    fd = next;
  }
}

/* --- the socket file ------------------------------------------------------ */

/* take_lock: PATH.lock, flock()ed for as long as PATH is ours. A successor
 * started while we drain waits here (at most KH_LOCK_WAIT_MS) until we have
 * stopped accepting and removed our socket file, so the path changes hands
 * in order: never two owners, never a successor's socket unlinked by us.
 * The lock file stays (removing a lock file reopens the race it closes). */
#define KH_LOCK_WAIT_MS 10000
static int take_lock(const char *path, kh_error *err) {
  char lock[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
  snprintf(lock, sizeof(lock), "%s.lock", path);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return kh_err(err, KH_ERR_UNAVAILABLE, "cannot open %s: %s", lock, strerror(errno)), -1;
  for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited += 50) {
    if (errno != EWOULDBLOCK || waited >= KH_LOCK_WAIT_MS) {
      close(fd);
      kh_err(err, KH_ERR_FAILED_PRECONDITION, "another keyholdd holds %s (serving %s)", lock, path);
      return -1;
    }
    if (waited == 0) kh_log(KH_LOG_INFO, "waiting for the keyholdd holding %s to stop", lock);
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
  return fd;
}

/* prepare_path refuses a live socket and removes a stale one. */
static int prepare_path(const char *path, kh_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) return 1;
  if (!S_ISSOCK(st.st_mode))
    return kh_err(err, KH_ERR_FAILED_PRECONDITION, "%s exists and is not a socket", path);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
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

/* fd_table_size: one slot per possible fd. The soft RLIMIT_NOFILE is raised
 * to the hard one first: connections are capped by max_connections, not by
 * an accident of the environment. */
static size_t fd_table_size(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  size_t n = rl.rlim_cur == RLIM_INFINITY ? 65536 : (size_t)rl.rlim_cur;
  return n > (1u << 20) ? 1u << 20 : n;
}

/* listener_new: the listener for |path| with its lock taken, no socket yet. */
static kh_listener *listener_new(const char *path, kh_error *err) {
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "socket path too long: %s", path);
    return NULL;
  }
  int lock_fd = take_lock(path, err);
  if (lock_fd < 0) return NULL;
  kh_listener *l = calloc(1, sizeof(*l));
  size_t n = fd_table_size();
  if (l == NULL || (l->path = strdup(path)) == NULL ||
      (l->slots = calloc(n, sizeof(*l->slots))) == NULL) {
    if (l) free(l->path);
    free(l);
    close(lock_fd);
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  l->n_slots = n;
  l->lock_fd = lock_fd;
  l->fd = l->epfd = l->tcp_fd = -1;
  l->preface = l->grpc = (slot_list){-1, -1};
  pthread_mutex_init(&l->mu, NULL);
  return l;
}

kh_listener *kh_listener_open(const char *path, int mode, gid_t gid, kh_error *err) {
  kh_listener *l = listener_new(path, err);
  if (l == NULL) return NULL;
  if (!prepare_path(path, err)) {
    kh_listener_close(l);
    return NULL;
  }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path));
  /* Create the socket file with no access for anyone, then open it up to
   * exactly |mode|: there is no window where it is wider. */
  mode_t old = umask(0777);
  l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int ok = l->fd >= 0 && bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  umask(old);
  struct stat st;
  if (ok && lstat(path, &st) == 0) {
    l->bound = 1;
    l->path_dev = st.st_dev;
    l->path_ino = st.st_ino;
  }
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

kh_listener *kh_listener_adopt(int fd, const char *path, kh_error *err) {
  struct sockaddr_un sa;
  socklen_t len = sizeof(sa);
  int type = 0, listening = 0;
  socklen_t tl = sizeof(type), ll = sizeof(listening);
  if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX ||
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
      getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) != 0 || !listening) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "socket activation: fd %d is not a listening Unix stream socket", fd);
    return NULL;
  }
  size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                    ? strnlen(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path))
                    : 0;
  if (path != NULL && (plen != strlen(path) || memcmp(sa.sun_path, path, plen) != 0)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "socket activation: the socket passed is %.*s, not --socket %s (ListenStream= and "
           "--socket must agree)",
           (int)plen, sa.sun_path, path);
    return NULL;
  }
  char own[sizeof(sa.sun_path) + 1];
  snprintf(own, sizeof(own), "%.*s", (int)plen, sa.sun_path);
  kh_listener *l = listener_new(own, err);
  if (l == NULL) return NULL;
  l->fd = fd; /* systemd's: the socket file stays when keyholdd exits (bound = 0) */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return l;
}

const char *kh_listener_path(const kh_listener *l) {
  return l->path;
}

int kh_listener_owns_path(const kh_listener *l) {
  return l->bound;
}

/* --- admission ------------------------------------------------------------ */

/* refusal: why a new connection from |c| may not be kept, or NULL (mu held). */
static const char *refusal(kh_listener *l, const kh_caller *c, int admitted, char *buf,
                           size_t len) {
  const kh_limits *lim = &l->cfg.limits;
  uid_conns *u = uid_entry(l, c->uid, 0);
  unsigned mine = u ? u->n : 0;
  unsigned cap = admitted ? lim->max_connections_per_caller : REFUSED_CONNS_PER_UID;
  unsigned reserve = lim->max_connections / 8;
  if (mine >= cap) {
    snprintf(buf, len, "uid %u already has %u connections (the limit%s)", (unsigned)c->uid, mine,
             admitted ? "" : " for a caller granted no identity");
  } else if (l->open >= lim->max_connections) {
    snprintf(buf, len, "%u connections open (max_connections)", l->open);
  } else if (l->open >= lim->max_connections - reserve &&
             (mine >= KH_FEW_CONNECTIONS || !admitted)) {
    snprintf(buf, len, "%u connections open; the last %u are kept for callers with fewer than %u",
             l->open, reserve, KH_FEW_CONNECTIONS);
  } else {
    return NULL;
  }
  return buf;
}

/* log_limited: one line a second at most, counting the ones not logged
 * (a flood must not become a flood of log lines). */
static void log_limited(kh_listener *l, const char *what, const kh_caller *c, const char *why,
                        long long now) {
  if (now - l->last_refusal_log_ms < 1000) {
    l->refusals_unlogged++;
    return;
  }
  kh_log(KH_LOG_WARN,
         "connection %s uid=%u gid=%u pid=%d reason=\"%s\" (%u more since the last such line)",
         what, (unsigned)c->uid, (unsigned)c->gid, (int)c->pid, why, l->refusals_unlogged);
  l->last_refusal_log_ms = now;
  l->refusals_unlogged = 0;
}

/* on_accept: credentials, caps, then wait for the preface. */
static void on_accept(kh_listener *l, int fd, int tcp, long long now) {
  struct ucred uc;
  socklen_t len = sizeof(uc);
  struct stat st;
  if ((size_t)fd >= l->n_slots ||
      (!tcp && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) || fstat(fd, &st) != 0) {
    kh_log(KH_LOG_WARN, "refused a connection: no peer credentials");
    close(fd);
    return;
  }
  kh_caller c = tcp ? KH_CALLER_NONE : (kh_caller){.uid = uc.uid, .gid = uc.gid, .pid = uc.pid};
  int admitted = l->cfg.admit ? l->cfg.admit(l->cfg.admit_arg, &c) : 1;
  char why[200];
  pthread_mutex_lock(&l->mu);
  slot_release(l, fd); /* the number came back: gRPC closed the old one */
  const char *no = refusal(l, &c, admitted, why, sizeof(why));
  if (no != NULL && now - l->last_prune_ms > 0) { /* maybe gRPC closed some: count again */
    prune(l, now);
    no = refusal(l, &c, admitted, why, sizeof(why));
  }
  uid_conns *u = no ? NULL : uid_entry(l, c.uid, 1);
  if (no == NULL && u == NULL) no = "out of memory";
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
  if (no == NULL && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) no = "epoll_ctl failed";
  if (no != NULL) {
    log_limited(l, "refused", &c, no, now);
    pthread_mutex_unlock(&l->mu);
    close(fd);
    return;
  }
  u->n++;
  if (++l->open > l->peak) l->peak = l->open;
  l->slots[fd] = (conn_slot){.state = SLOT_PREFACE,
                             .dev = st.st_dev,
                             .ino = st.st_ino,
                             .caller = c,
                             .admitted = admitted,
                             .deadline_ms = now + l->cfg.limits.preface_timeout_ms};
  list_push(l, &l->preface, fd);
  pthread_mutex_unlock(&l->mu);
  if (tcp)
    kh_log(KH_LOG_DEBUG, "connection over TCP (no uid: token grants only)");
  else if (!admitted) /* DEBUG: health probes come so; a refused call logs its own WARN */
    kh_log(KH_LOG_DEBUG, "connection from uid=%u gid=%u pid=%d: no identity is granted to it",
           (unsigned)c.uid, (unsigned)c.gid, (int)c.pid);
  else
    kh_log(KH_LOG_DEBUG, "connection from uid=%u gid=%u pid=%d", (unsigned)c.uid, (unsigned)c.gid,
           (int)c.pid);
}

/* drop_pending closes a connection that has not reached gRPC (mu held). */
static void drop_pending(kh_listener *l, int fd, const char *why) {
  conn_slot s = l->slots[fd];
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
  slot_release(l, fd);
  close(fd);
  log_limited(l, "closed", &s.caller, why, now_ms());
}

/* on_readable: has the preface arrived? Peeked, so gRPC reads it again. */
static void on_readable(kh_listener *l, int fd) {
  uint8_t buf[PREFACE_LEN];
  struct iovec iov = {buf, sizeof(buf)};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  ssize_t n = recvmsg(fd, &mh, MSG_PEEK);
  pthread_mutex_lock(&l->mu);
  if (l->slots[fd].state != SLOT_PREFACE) {
    pthread_mutex_unlock(&l->mu);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    pthread_mutex_unlock(&l->mu);
    return;
  }
  if (n <= 0) {
    drop_pending(l, fd, n == 0 ? "closed before the HTTP/2 preface" : "read error");
  } else if (memcmp(buf, PREFACE, (size_t)n) != 0) {
    drop_pending(l, fd, "not an HTTP/2 client (bad preface)");
  } else if (n == PREFACE_LEN) {
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    list_remove(l, &l->preface, fd);
    l->slots[fd].state = SLOT_GRPC;
    list_push(l, &l->grpc, fd);
    pthread_mutex_unlock(&l->mu);
    grpc_server_add_channel_from_fd(l->server, fd, l->creds);
    return;
  }
  pthread_mutex_unlock(&l->mu); /* a partial preface: edge-triggered, so wait for more */
}

/* expire closes connections whose preface is late; returns ms to the next. */
static int expire(kh_listener *l, long long now) {
  pthread_mutex_lock(&l->mu);
  while (l->preface.head >= 0 && l->slots[l->preface.head].deadline_ms <= now)
    drop_pending(l, l->preface.head, "no HTTP/2 preface within preface_timeout_ms");
  long long wait = l->preface.head >= 0 ? l->slots[l->preface.head].deadline_ms - now : PRUNE_MS;
  if (now - l->last_prune_ms >= PRUNE_MS) prune(l, now);
  pthread_mutex_unlock(&l->mu);
  return wait > PRUNE_MS ? PRUNE_MS : wait < 1 ? 1 : (int)wait;
}

static void accept_all(kh_listener *l, int lfd, long long now, int *warned) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      *warned = 0;
      on_accept(l, fd, lfd == l->tcp_fd, now);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      if (!(*warned)++) kh_log(KH_LOG_WARN, "accept: %s; new connections wait", strerror(errno));
      nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return; /* EAGAIN: all taken; EINVAL after shutdown(): stopping */
  }
}

static void *accept_loop(void *arg) {
  kh_listener *l = arg;
  int warned = 0, timeout = PRUNE_MS;
  struct epoll_event evs[64];
  while (!__atomic_load_n(&l->stopping, __ATOMIC_ACQUIRE)) {
    int n = epoll_wait(l->epfd, evs, 64, timeout);
    long long now = now_ms();
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == l->fd || evs[i].data.fd == l->tcp_fd)
        accept_all(l, evs[i].data.fd, now, &warned);
      else
        on_readable(l, evs[i].data.fd);
    }
    timeout = expire(l, now_ms());
  }
  return NULL;
}

int kh_listener_start(kh_listener *l, grpc_server *server, const kh_listener_config *cfg,
                      kh_error *err) {
  l->server = server;
  l->cfg = *cfg;
  l->creds = grpc_insecure_server_credentials_create();
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->fd};
  struct epoll_event tev = {.events = EPOLLIN, .data.fd = l->tcp_fd};
  if (l->epfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->fd, &ev) != 0 ||
      (l->tcp_fd >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tcp_fd, &tev) != 0))
    return kh_err(err, KH_ERR_INTERNAL, "cannot watch the socket: %s", strerror(errno));
  if (pthread_create(&l->thread, NULL, accept_loop, l) != 0)
    return kh_err(err, KH_ERR_INTERNAL, "cannot start the accept thread");
  pthread_setname_np(l->thread, "kh-accept");
  l->running = 1;
  return 1;
}

int kh_parse_tcp_addr(const char *flag, const char *addr, struct sockaddr_storage *ss,
                      socklen_t *len, int *loopback, kh_error *err) {
  if (strncmp(addr, "tcp://", 6) != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s %.100s: expected tcp://HOST:PORT", flag, addr);
  const char *host = addr + 6, *colon = strrchr(host, ':');
  char h[64];
  size_t hl = colon ? (size_t)(colon - host) : 0;
  if (colon == NULL || hl == 0 || hl >= sizeof(h))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s %.100s: expected tcp://HOST:PORT", flag, addr);
  memcpy(h, host, hl);
  h[hl] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s %.100s: bad port", flag, addr);
  memset(ss, 0, sizeof(*ss));
  if (h[0] == '[' && h[hl - 1] == ']') {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    h[hl - 1] = '\0';
    if (inet_pton(AF_INET6, h + 1, &s6->sin6_addr) != 1)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s %.100s: bad IPv6 address", flag, addr);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    *len = sizeof(*s6);
    return 1;
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, h, &s4->sin_addr) != 1)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s %.100s: HOST must be an IPv4 or [IPv6] address, not a name", flag, addr);
  s4->sin_family = AF_INET;
  s4->sin_port = htons((uint16_t)port);
  *loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
  *len = sizeof(*s4);
  return 1;
}

int kh_listener_add_tcp(kh_listener *l, const char *addr, int allow_remote, unsigned *out_port,
                        kh_error *err) {
  struct sockaddr_storage ss;
  socklen_t len;
  int loopback = 0;
  if (!kh_parse_tcp_addr("--listen", addr, &ss, &len, &loopback, err)) return 0;
  if (!loopback && !allow_remote)
    return kh_err(err, KH_ERR_PERMISSION_DENIED,
                  "--listen %.100s: not a loopback address; callers there have no uid and only "
                  "tokens protect the keys (--listen-allow-remote to insist)",
                  addr);
  if (!loopback)
    kh_log(KH_LOG_WARN,
           "listening on the non-loopback %s: every caller there is anonymous, "
           "only token grants protect the keys",
           addr);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    return kh_err(err, KH_ERR_UNAVAILABLE, "cannot listen on %.100s: %s", addr, strerror(e));
  }
  *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  l->tcp_fd = fd;
  return 1;
}

int kh_listener_caller(kh_listener *l, const char *peer, kh_caller *out, int *admitted) {
  char *end;
  if (peer == NULL || strncmp(peer, "fd:", 3) != 0) return 0;
  long fd = strtol(peer + 3, &end, 10);
  if (*end != '\0' || fd < 0 || (size_t)fd >= l->n_slots) return 0;
  pthread_mutex_lock(&l->mu);
  conn_slot s = l->slots[fd];
  pthread_mutex_unlock(&l->mu);
  if (s.state != SLOT_GRPC || !same_socket(&s, (int)fd)) return 0;
  *out = s.caller;
  *admitted = s.admitted;
  return 1;
}

void kh_listener_stats(kh_listener *l, unsigned *open, unsigned *peak, int reset_peak) {
  pthread_mutex_lock(&l->mu);
  *open = l->open;
  *peak = l->peak;
  if (reset_peak) l->peak = l->open;
  pthread_mutex_unlock(&l->mu);
}

/* unlink_own removes |path| only if it is still the socket file we bound
 * (checked under the lock, so no successor can have bound it meanwhile). */
static void unlink_own(kh_listener *l) {
  struct stat st;
  if (!l->bound || lstat(l->path, &st) != 0) return;
  if (S_ISSOCK(st.st_mode) && st.st_dev == l->path_dev && st.st_ino == l->path_ino)
    unlink(l->path);
  else
    kh_log(KH_LOG_WARN, "socket %s was replaced by another process: left in place", l->path);
  l->bound = 0;
}

/* release_path: stop owning the path (socket file gone, lock released). */
static void release_path(kh_listener *l) {
  unlink_own(l);
  if (l->lock_fd >= 0) close(l->lock_fd);
  l->lock_fd = -1;
}

void kh_listener_stop_accepting(kh_listener *l) {
  if (l == NULL || !l->running) return;
  __atomic_store_n(&l->stopping, 1, __ATOMIC_RELEASE);
  shutdown(l->fd, SHUT_RDWR); /* wakes epoll_wait; new connections are refused */
  pthread_join(l->thread, NULL);
  l->running = 0;
  if (l->tcp_fd >= 0) close(l->tcp_fd); /* refused from now on, like the socket */
  l->tcp_fd = -1;
  /* A successor may start now: it finds no socket file and takes the lock. */
  release_path(l);
  pthread_mutex_lock(&l->mu);
  while (l->preface.head >= 0) drop_pending(l, l->preface.head, "keyholdd is stopping");
  pthread_mutex_unlock(&l->mu);
}

void kh_listener_close(kh_listener *l) {
  if (l == NULL) return;
  kh_listener_stop_accepting(l);
  if (l->fd >= 0) close(l->fd);
  if (l->tcp_fd >= 0) close(l->tcp_fd);
  if (l->epfd >= 0) close(l->epfd);
  release_path(l);
  if (l->creds) grpc_server_credentials_release(l->creds);
  pthread_mutex_destroy(&l->mu);
  free(l->uids);
  free(l->slots);
  free(l->path);
  free(l);
}

/* notify.h: systemd's readiness protocol (sd_notify(3)) in two steps, so
 * the notification can follow the sandbox: the socket to $NOTIFY_SOCKET is
 * opened while keyholdd may still create sockets, and the message is sent
 * once it serves under its seccomp filter (which forbids new sockets). */
#ifndef KH_NOTIFY_H
#define KH_NOTIFY_H

/* kh_notify_open: a datagram socket connected to $NOTIFY_SOCKET (a path, or
 * "@name" in the abstract namespace), or -1 if unset or unusable. The
 * variable is unset so child processes do not inherit it. */
int kh_notify_open(void);

/* kh_notify_send sends |msg| ("READY=1\nSTATUS=...") on |fd| (no-op for -1). */
void kh_notify_send(int fd, const char *msg);

void kh_notify_close(int fd);

#endif /* KH_NOTIFY_H */

/* caller.h: who is calling keyholdd, as the kernel reports it.
 *
 * The listener reads SO_PEERCRED when it accepts a connection (rpc/listener.c)
 * and every call on that connection carries this value; the authorizer
 * (authz.h) decides with it. Plain data: no policy, no gRPC. */
#ifndef KH_CALLER_H
#define KH_CALLER_H

#include <stdio.h>
#include <sys/types.h>

typedef struct {
  uid_t uid;
  gid_t gid; /* primary gid */
  pid_t pid;
} kh_caller;

/* A caller reached over TCP: no uid, gid or pid (token grants only). */
#define KH_CALLER_NONE ((kh_caller){.uid = (uid_t)-1, .gid = (gid_t)-1, .pid = 0})

/* kh_caller_name: how messages name a caller: "caller uid 1000", or "a TCP
 * caller (no uid)". Returns |buf|. */
static inline const char *kh_caller_name(const kh_caller *c, char *buf, size_t len) {
  if (c->uid == (uid_t)-1)
    snprintf(buf, len, "a TCP caller (no uid)");
  else
    snprintf(buf, len, "caller uid %u", (unsigned)c->uid);
  return buf;
}

#endif /* KH_CALLER_H */

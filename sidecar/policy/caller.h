/* caller.h: who is calling keyholdd, as the kernel reports it.
 *
 * The listener reads SO_PEERCRED when it accepts a connection (rpc/listener.c)
 * and every call on that connection carries this value; the authorizer
 * (authz.h) decides with it. Plain data: no policy, no gRPC. */
#ifndef KH_CALLER_H
#define KH_CALLER_H

#include <sys/types.h>

typedef struct {
  uid_t uid;
  gid_t gid; /* primary gid */
  pid_t pid;
} kh_caller;

#endif /* KH_CALLER_H */

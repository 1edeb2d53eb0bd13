/* sandbox.h: keyholdd's process lock-down (capabilities, no_new_privs,
 * seccomp allowlist).
 *
 * Order of use in keyholdd:
 *   1. kh_sandbox_drop_caps() while the process is still single-threaded
 *      and after the socket is bound and given its group (capabilities are
 *      per thread: gRPC's threads and the crypto workers must start without any);
 *   2. kh_sandbox_apply() once the gRPC server listens, before the first call
 *      is served. It drops capabilities again (for the calling thread), sets
 *      no_new_privs and installs the seccomp filter on every thread (TSYNC).
 *
 * The filter allows only what the serving loop needs: gRPC's event loop and
 * threads, memory management, I/O on already-open descriptors, accept4 on the
 * listening socket, read-only opens (identity files are re-read at runtime),
 * inotify watches and unlink (socket removal at shutdown). A new Unix socket
 * fails with EACCES; anything else (execve, ptrace, fork, other sockets,
 * connect, mount, set*id, ...) kills the whole process with SIGSYS. */
#ifndef KH_SANDBOX_H
#define KH_SANDBOX_H

#include "kh_error.h"

/* kh_sandbox_drop_caps empties the effective, permitted, inheritable and
 * ambient capability sets of the calling thread and, when the process holds
 * CAP_SETPCAP, the bounding set. Returns 0 with |err| set if a capability
 * remains. */
KH_MUST_USE int kh_sandbox_drop_caps(kh_error *err);

/* kh_sandbox_apply drops capabilities (as above), sets PR_SET_NO_NEW_PRIVS
 * and installs the seccomp allowlist (default action: kill the process) on
 * all threads of the process. Irreversible. Returns 1, or 0 with |err| set;
 * on failure the caller must not go on serving. */
KH_MUST_USE int kh_sandbox_apply(kh_error *err);

#endif /* KH_SANDBOX_H */

/* sandbox.c: capabilities, no_new_privs and the seccomp allowlist of
 * keyholdd. See sandbox.h for when each step runs. */
#include "sandbox.h"

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kh_asan.h"
#include "kh_log.h"

int kh_sandbox_drop_caps(kh_error *err) {
  if (capng_get_caps_process() != 0)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: cannot read capabilities: %s", strerror(errno));
  int can_drop_bounds = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
  capng_clear(CAPNG_SELECT_BOTH);
  /* The bounding set goes first (it needs CAP_SETPCAP), then capset(2)
   * empties the effective, permitted and inheritable sets, which also empties
   * the ambient set. */
  int rc = capng_apply(can_drop_bounds ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS);
  if (rc != 0) return kh_err(err, KH_ERR_INTERNAL, "sandbox: cannot drop capabilities (%d)", rc);
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

  if (capng_get_caps_process() != 0)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: cannot read capabilities: %s", strerror(errno));
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: capabilities remain after dropping them");
  if (capng_have_capabilities(CAPNG_SELECT_BOUNDS) != CAPNG_NONE) {
    if (can_drop_bounds)
      return kh_err(err, KH_ERR_INTERNAL, "sandbox: bounding set not empty after dropping it");
    kh_log(KH_LOG_DEBUG, "sandbox: bounding set kept (no CAP_SETPCAP); no_new_privs covers it");
  }
  return 1;
}

/* Syscalls allowed whatever their arguments: what `strace -f` shows a
 * serving keyholdd doing (handshakes, resets, SIGTERM shutdown), plus the rare
 * paths noted. Argument-checked ones are in add_rules. */
static const char *const k_allowed[] = {
    /* gRPC's event loop (epoll1 poller, eventfd wake-ups) and threads. */
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "eventfd2",
    "futex",
    "set_robust_list", /* thread start (glibc) */
    "rseq",            /* thread start (glibc) */
    "sched_yield",
    "sched_getparam", /* gRPC thread start (pthread attributes) */
    "sched_getscheduler",
    "sched_getaffinity", /* CPU count */
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "uname", /* gRPC checks the kernel version for each new connection */
    "getpid",
    "gettid",
    "getuid", /* the policy compares callers with our own uid */
    "geteuid",
    "getgid",
    "getegid",
    "exit",
    "exit_group",
    "restart_syscall", /* a sleep interrupted by SIGTERM */
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    /* Memory (mmap and mprotect are checked below). */
    "brk",
    "munmap",
    "mremap", /* realloc of large blocks */
    "madvise",
    "mlock",
    "munlock",
    /* I/O on descriptors we already hold; new streams only come from accept4
     * on the listening Unix socket. */
    "read",
    "write",
    "readv",
    "writev",
    "sendmsg",
    "recvmsg",
    "recvfrom", /* the metrics listener (libmicrohttpd's recv/send) */
    "sendto",
    "accept4",
    "shutdown",
    "getsockopt", /* SO_PEERCRED of callers */
    "setsockopt",
    "getsockname",
    "getpeername",
    "close",
    "fcntl",
    "getrandom",
    /* Identity files are re-read at runtime (openat is checked below). */
    "newfstatat",
    "fstat",
    "lseek",
    "getdents64",
    "readlinkat", /* NSS (getpwnam for a reloaded policy) resolves /lib */
    "inotify_add_watch",
    "inotify_rm_watch",
    /* The socket file is removed at shutdown. */
    "unlink",
    /* A PKCS#11 token's p11-kit-remote child (forked before the filter) is
     * reaped when its module is finalized at shutdown. */
    "wait4",
};

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                    const struct scmp_arg_cmp *cmp, kh_error *err) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: unknown syscall %s", name);
  int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
  if (rc != 0)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: seccomp rule for %s: %s", name, strerror(-rc));
  return 1;
}

#if KH_ASAN
/* Sanitizer builds (tests only) need a few more syscalls: sigaltstack in
 * every thread, and LeakSanitizer's exit-time check stops the threads from a
 * ptrace-ing helper task sharing our memory. */
static int add_sanitizer_rules(scmp_filter_ctx ctx, kh_error *err) {
  static const char *const extra[] = {"sigaltstack", "getppid", "sched_getaffinity"};
  for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
    if (!add_rule(ctx, SCMP_ACT_ALLOW, extra[i], 0, NULL, err)) return 0;
  /* LeakSanitizer's tracer: clone(CLONE_VM | CLONE_UNTRACED ...), then
   * PTRACE_ATTACH / GETREGS / DETACH of our threads. PTRACE_TRACEME (the
   * selftest) stays fatal. */
  struct scmp_arg_cmp vm = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_VM, CLONE_VM);
  if (!add_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &vm, err)) return 0;
  struct scmp_arg_cmp not_traceme = SCMP_A0(SCMP_CMP_NE, PTRACE_TRACEME, 0);
  if (!add_rule(ctx, SCMP_ACT_ALLOW, "ptrace", 1, &not_traceme, err)) return 0;
  static const scmp_datum_t prctl_ok[] = {PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_SET_PTRACER,
                                          PR_SET_PDEATHSIG};
  for (size_t i = 0; i < sizeof(prctl_ok) / sizeof(prctl_ok[0]); i++) {
    struct scmp_arg_cmp opt = SCMP_A0(SCMP_CMP_EQ, prctl_ok[i], 0);
    if (!add_rule(ctx, SCMP_ACT_ALLOW, "prctl", 1, &opt, err)) return 0;
  }
  kh_log(KH_LOG_WARN, "sandbox: sanitizer build: ptrace and sigaltstack allowed for the runtime");
  return 1;
}
#endif

static int add_rules(scmp_filter_ctx ctx, kh_error *err) {
  for (size_t i = 0; i < sizeof(k_allowed) / sizeof(k_allowed[0]); i++)
    if (!add_rule(ctx, SCMP_ACT_ALLOW, k_allowed[i], 0, NULL, err)) return 0;

  /* Threads only: clone must share the thread group (no fork). clone3 passes
   * its flags in memory seccomp cannot read, so it fails with ENOSYS and
   * glibc falls back to clone. */
  struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
  if (!add_rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &thread, err)) return 0;
  if (!add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)) return 0;

  /* Memory is never writable and executable at once (W^X, as systemd's
   * MemoryDenyWriteExecute); read+exec stays possible for dlopen (NSS). */
  static const scmp_datum_t wx_ok[] = {0, PROT_WRITE, PROT_EXEC};
  for (size_t i = 0; i < sizeof(wx_ok) / sizeof(wx_ok[0]); i++) {
    struct scmp_arg_cmp prot = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, wx_ok[i]);
    if (!add_rule(ctx, SCMP_ACT_ALLOW, "mmap", 1, &prot, err)) return 0;
    if (!add_rule(ctx, SCMP_ACT_ALLOW, "mprotect", 1, &prot, err)) return 0;
  }

  /* Read-only opens. */
  struct scmp_arg_cmp rdonly =
      SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND, O_RDONLY);
  if (!add_rule(ctx, SCMP_ACT_ALLOW, "openat", 1, &rdonly, err)) return 0;

  /* No new sockets. A Unix one is refused with EACCES rather than fatal: NSS
   * (getpwnam for the policy) probes nscd/systemd that way and copes. */
  struct scmp_arg_cmp unix_only = SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0);
  if (!add_rule(ctx, SCMP_ACT_ERRNO(EACCES), "socket", 1, &unix_only, err)) return 0;

  /* Thread names only: no PR_SET_DUMPABLE (core dumps, ptrace) and friends. */
  static const scmp_datum_t prctl_ok[] = {PR_SET_NAME, PR_GET_NAME};
  for (size_t i = 0; i < sizeof(prctl_ok) / sizeof(prctl_ok[0]); i++) {
    struct scmp_arg_cmp opt = SCMP_A0(SCMP_CMP_EQ, prctl_ok[i], 0);
    if (!add_rule(ctx, SCMP_ACT_ALLOW, "prctl", 1, &opt, err)) return 0;
  }

  /* Signals to this process only (abort() raises SIGABRT with tgkill). */
  struct scmp_arg_cmp self = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0);
  if (!add_rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, &self, err)) return 0;
#if KH_ASAN
  return add_sanitizer_rules(ctx, err);
#else
  return 1;
#endif
}

int kh_sandbox_apply(kh_error *err) {
  if (!kh_sandbox_drop_caps(err)) return 0;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return kh_err(err, KH_ERR_INTERNAL, "sandbox: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));

  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == NULL) return kh_err(err, KH_ERR_INTERNAL, "sandbox: seccomp_init failed");
  int ok = 1;
  int rc;
  /* Every thread gets the filter (gRPC's threads already run); foreign
   * architectures (i386, x32 entry points) are killed too. */
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0 ||
      (rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) != 0 ||
      (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) != 0) {
    ok = kh_err(err, KH_ERR_INTERNAL, "sandbox: seccomp attribute: %s", strerror(-rc));
  }
  if (ok) ok = add_rules(ctx, err);
  if (ok && (rc = seccomp_load(ctx)) != 0)
    ok = kh_err(err, KH_ERR_INTERNAL, "sandbox: seccomp_load: %s", strerror(-rc));
  seccomp_release(ctx);
  if (ok) kh_log(KH_LOG_INFO, "sandbox: capabilities dropped, no_new_privs set, seccomp filter on");
  return ok;
}

/* kh_error.h: the one error convention of Keyhold.
 *
 * Functions that can fail return 1 on success and 0 on failure (pointers:
 * non-NULL / NULL), BoringSSL style, and fill a caller-provided kh_error with
 * a code and a one-line human-readable message. The message never contains
 * secret material. Codes mirror gRPC status codes where one fits, so the
 * sidecar can turn an error into a status without a table of special cases.
 */
#ifndef KH_ERROR_H
#define KH_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  KH_OK = 0,
  /* 1..16: same numbers as gRPC status codes. */
  KH_ERR_CANCELLED = 1,
  KH_ERR_UNKNOWN = 2,
  KH_ERR_INVALID_ARGUMENT = 3,
  KH_ERR_DEADLINE_EXCEEDED = 4,
  KH_ERR_NOT_FOUND = 5,
  KH_ERR_PERMISSION_DENIED = 7,
  KH_ERR_RESOURCE_EXHAUSTED = 8,
  KH_ERR_FAILED_PRECONDITION = 9,
  KH_ERR_ABORTED = 10,
  KH_ERR_UNIMPLEMENTED = 12,
  KH_ERR_INTERNAL = 13,
  KH_ERR_UNAVAILABLE = 14, /* the sidecar cannot be reached */
  KH_ERR_UNAUTHENTICATED = 16,
  /* 100+: TLS, record layer and I/O. */
  KH_ERR_HANDSHAKE = 100, /* handshake failed (reason in the message) */
  KH_ERR_PROTOCOL = 101,  /* peer broke the TLS protocol */
  KH_ERR_DECRYPT = 102,   /* record authentication failed */
  KH_ERR_RECORD_OVERFLOW = 103,
  KH_ERR_PEER_ALERT = 104, /* peer sent a fatal alert */
  KH_ERR_CLOSED = 105,     /* connection closed (close_notify seen or sent) */
  KH_ERR_IO = 106,         /* socket error or unexpected EOF */
  KH_ERR_SEQ_OVERFLOW = 107,
  KH_ERR_NOMEM = 108,
  KH_ERR_WANT_READ = 109, /* non-blocking fd: no complete record yet, poll and retry */
  /* 110+: secure-channel messages. */
  KH_ERR_CHANNEL_TAMPERED = 110, /* message authentication failed */
  KH_ERR_CHANNEL_REPLAY = 111,   /* message already opened */
  KH_ERR_CHANNEL_TOO_OLD = 112,  /* below the replay window, or its key is gone */
  KH_ERR_CHANNEL_WRONG = 113,    /* another channel's message, or our own reflected */
  /* 120+: non-blocking sessions. */
  KH_ERR_WANT_SIDECAR = 120, /* the sidecar's answer is not here yet: poll its fd, retry */
} kh_code;

/* KH_MUST_USE marks every fallible function (1/0 or pointer/NULL): ignoring
 * its result is a compile error under -Werror. */
#define KH_MUST_USE __attribute__((warn_unused_result))

#define KH_ERROR_MSG_MAX 256

typedef struct {
  kh_code code;
  char msg[KH_ERROR_MSG_MAX];
} kh_error;

/* kh_code_name returns a stable short name for |code| ("INVALID_ARGUMENT"). */
const char *kh_code_name(kh_code code);

/* kh_err sets |err| (which may be NULL) to |code| and a printf-formatted
 * message, and returns 0 so callers can write `return kh_err(err, ...)`. */
int kh_err(kh_error *err, kh_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* kh_error_clear resets |err| to KH_OK with an empty message. */
void kh_error_clear(kh_error *err);

/* kh_code_to_grpc maps a code to the closest gRPC status code number. */
unsigned kh_code_to_grpc(kh_code code);

#ifdef __cplusplus
}
#endif

#endif /* KH_ERROR_H */

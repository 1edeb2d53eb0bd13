#include "kh_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *kh_code_name(kh_code code) {
  switch (code) {
    case KH_OK: return "OK";
    case KH_ERR_CANCELLED: return "CANCELLED";
    case KH_ERR_UNKNOWN: return "UNKNOWN";
    case KH_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KH_ERR_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case KH_ERR_NOT_FOUND: return "NOT_FOUND";
    case KH_ERR_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case KH_ERR_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case KH_ERR_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KH_ERR_ABORTED: return "ABORTED";
    case KH_ERR_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case KH_ERR_INTERNAL: return "INTERNAL";
    case KH_ERR_UNAVAILABLE: return "UNAVAILABLE";
    case KH_ERR_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case KH_ERR_HANDSHAKE: return "HANDSHAKE";
    case KH_ERR_PROTOCOL: return "PROTOCOL";
    case KH_ERR_DECRYPT: return "DECRYPT";
    case KH_ERR_RECORD_OVERFLOW: return "RECORD_OVERFLOW";
    case KH_ERR_PEER_ALERT: return "PEER_ALERT";
    case KH_ERR_CLOSED: return "CLOSED";
    case KH_ERR_IO: return "IO";
    case KH_ERR_SEQ_OVERFLOW: return "SEQ_OVERFLOW";
    case KH_ERR_NOMEM: return "NOMEM";
    case KH_ERR_WANT_READ: return "WANT_READ";
    case KH_ERR_CHANNEL_TAMPERED: return "CHANNEL_TAMPERED";
    case KH_ERR_CHANNEL_REPLAY: return "CHANNEL_REPLAY";
    case KH_ERR_CHANNEL_TOO_OLD: return "CHANNEL_TOO_OLD";
    case KH_ERR_CHANNEL_WRONG: return "CHANNEL_WRONG";
    case KH_ERR_WANT_SIDECAR: return "WANT_SIDECAR";
  }
  return "UNKNOWN";
}

int kh_err(kh_error *err, kh_code code, const char *fmt, ...) {
  if (err == NULL) return 0;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  return 0;
}

void kh_error_clear(kh_error *err) {
  if (err == NULL) return;
  err->code = KH_OK;
  err->msg[0] = '\0';
}

unsigned kh_code_to_grpc(kh_code code) {
  if ((int)code >= 0 && (int)code <= 16) return (unsigned)code;
  switch (code) {
    case KH_ERR_HANDSHAKE:
    case KH_ERR_PROTOCOL:
    case KH_ERR_DECRYPT:
    case KH_ERR_RECORD_OVERFLOW:
    case KH_ERR_PEER_ALERT: return 3; /* INVALID_ARGUMENT: the peer's bytes were rejected */
    case KH_ERR_CLOSED:
    case KH_ERR_IO: return 14;   /* UNAVAILABLE */
    case KH_ERR_NOMEM: return 8; /* RESOURCE_EXHAUSTED */
    default: return 13;          /* INTERNAL */
  }
}

/* secure_channel.c: the SecureChannel service. */
#include "secure_channel.h"

static void *session_new(void *arg, const kh_caller *caller) {
  return kh_channel_session_new(arg, caller);
}

static kh_rpc_outcome handle(void *s, const uint8_t *req, size_t len, kh_buf *resp, kh_error *err) {
  return kh_channel_session_handle(s, req, len, resp, err);
}

static void session_free(void *s) {
  kh_channel_session_free(s);
}

static const char *local_name(const void *s) {
  return kh_channel_session_local_name(s);
}

static const char *peer_name(const void *s) {
  return kh_channel_session_peer_name(s);
}

kh_service kh_secure_channel_service(const kh_channel_env *env) {
  return (kh_service){.method = KH_SECURE_CHANNEL_METHOD,
                      .arg = (void *)env,
                      .session_new = session_new,
                      .handle = handle,
                      .session_free = session_free,
                      .local_name = local_name,
                      .peer_name = peer_name,
                      .is_server_side = NULL};
}

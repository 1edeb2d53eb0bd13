/* s2a_v1.c: the S2A v1 service. */
#include "s2a_v1.h"

_Static_assert((int)KH_S2A_CONTINUE == (int)KH_RPC_CONTINUE &&
                   (int)KH_S2A_FINISHED == (int)KH_RPC_FINISHED &&
                   (int)KH_S2A_FAILED == (int)KH_RPC_FAILED,
               "kh_s2a_outcome and kh_rpc_outcome agree");

static void *session_new(void *arg, const kh_caller *caller) {
  return kh_s2a_session_new(arg, caller);
}

static kh_rpc_outcome handle(void *s, const uint8_t *req, size_t len, kh_buf *resp, kh_error *err) {
  return (kh_rpc_outcome)kh_s2a_session_handle(s, req, len, resp, err);
}

static void session_free(void *s) {
  kh_s2a_session_free(s);
}

static const char *local_name(const void *s) {
  return kh_s2a_session_local_name(s);
}

static const char *peer_name(const void *s) {
  return kh_s2a_session_peer_name(s);
}

static int is_server_side(const void *s) {
  return kh_s2a_session_is_server(s);
}

kh_service kh_s2a_v1_service(const kh_s2a_env *env) {
  return (kh_service){.method = KH_S2A_V1_METHOD,
                      .arg = (void *)env,
                      .session_new = session_new,
                      .handle = handle,
                      .session_free = session_free,
                      .local_name = local_name,
                      .peer_name = peer_name,
                      .is_server_side = is_server_side};
}

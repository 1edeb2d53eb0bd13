/* s2a_v2.c: the S2A v2 services (both dialects). */
#include "s2a_v2.h"

#include "s2a_v2_session.h"

_Static_assert((int)KH_S2A_CONTINUE == (int)KH_RPC_CONTINUE &&
                   (int)KH_S2A_FAILED == (int)KH_RPC_FAILED,
               "kh_s2a_outcome and kh_rpc_outcome agree");

typedef struct {
  const kh_s2a_env *env;
  kh_v2_dialect dialect;
} binding;

static binding g_bindings[KH_S2A_V2_SERVICES];

static void *session_new(void *arg, const kh_caller *caller) {
  const binding *b = arg;
  return kh_s2a_v2_session_new(b->env, caller, b->dialect);
}

static kh_rpc_outcome handle(void *s, const uint8_t *req, size_t len, kh_buf *resp, kh_error *err) {
  return (kh_rpc_outcome)kh_s2a_v2_session_handle(s, req, len, resp, err);
}

static void session_free(void *s) {
  kh_s2a_v2_session_free(s);
}

static const char *local_name(const void *s) {
  return kh_s2a_v2_session_local_name(s);
}

static const char *peer_name(const void *s) {
  return kh_s2a_v2_session_peer_name(s);
}

void kh_s2a_v2_services(const kh_s2a_env *env, kh_service out[KH_S2A_V2_SERVICES]) {
  static const char *const methods[KH_S2A_V2_SERVICES] = {KH_S2A_V2_METHOD,
                                                          KH_S2A_GRPC_JAVA_METHOD};
  static const kh_v2_dialect dialects[KH_S2A_V2_SERVICES] = {KH_V2_DIALECT_S2A,
                                                             KH_V2_DIALECT_GRPC_JAVA};
  for (int i = 0; i < KH_S2A_V2_SERVICES; i++) {
    g_bindings[i] = (binding){.env = env, .dialect = dialects[i]};
    out[i] = (kh_service){.method = methods[i],
                          .arg = &g_bindings[i],
                          .session_new = session_new,
                          .handle = handle,
                          .session_free = session_free,
                          .local_name = local_name,
                          .peer_name = peer_name,
                          .is_server_side = NULL};
  }
}

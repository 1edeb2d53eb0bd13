/* key_operations.c: one request, one response per call. */
#include "key_operations.h"

#include <stdlib.h>

typedef struct {
  const kh_keyops_env *env;
  kh_keyop op;
  kh_caller caller;
  char identity[300];
} session;

static void *open_session(void *arg, const kh_caller *caller, kh_keyop op) {
  session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->env = arg;
  s->op = op;
  if (caller != NULL) s->caller = *caller;
  s->identity[0] = '-';
  return s;
}

static void *public_keys_new(void *arg, const kh_caller *caller) {
  return open_session(arg, caller, KH_KEYOP_PUBLIC_KEYS);
}

static void *open_sealed_new(void *arg, const kh_caller *caller) {
  return open_session(arg, caller, KH_KEYOP_OPEN_SEALED);
}

static void *dpop_proof_new(void *arg, const kh_caller *caller) {
  return open_session(arg, caller, KH_KEYOP_DPOP_PROOF);
}

static void *dpop_thumbprint_new(void *arg, const kh_caller *caller) {
  return open_session(arg, caller, KH_KEYOP_DPOP_THUMBPRINT);
}

static void *open_envelope_new(void *arg, const kh_caller *caller) {
  return open_session(arg, caller, KH_KEYOP_OPEN_ENVELOPE);
}

static kh_rpc_outcome handle(void *arg, const uint8_t *req, size_t len, kh_buf *resp,
                             kh_error *err) {
  session *s = arg;
  return kh_keyop_handle(s->env, &s->caller, s->op, req, len, resp, s->identity,
                         sizeof(s->identity), err)
             ? KH_RPC_FINISHED
             : KH_RPC_FAILED;
}

static void session_free(void *s) {
  free(s);
}

static const char *local_name(const void *s) {
  return ((const session *)s)->identity;
}

void kh_key_ops_services(const kh_keyops_env *env, kh_service out[KH_KEY_OPS_SERVICES]) {
  out[0] = (kh_service){.method = "/keyhold.v1.KeyOperations/GetPublicKeys",
                        .arg = (void *)env,
                        .session_new = public_keys_new,
                        .handle = handle,
                        .session_free = session_free,
                        .local_name = local_name};
  out[1] = out[0];
  out[1].method = "/keyhold.v1.KeyOperations/OpenSealed";
  out[1].session_new = open_sealed_new;
  out[2] = out[0];
  out[2].method = "/keyhold.v1.KeyOperations/SignDpopProof";
  out[2].session_new = dpop_proof_new;
  out[3] = out[0];
  out[3].method = "/keyhold.v1.KeyOperations/GetDpopThumbprint";
  out[3].session_new = dpop_thumbprint_new;
  out[4] = out[0];
  out[4].method = "/keyhold.v1.KeyOperations/OpenEnvelope";
  out[4].session_new = open_envelope_new;
}

/* fuzz_channel_session: the SecureChannel service's untrusted inputs.
 * First byte even: keyholdd's channel session fed a sequence of arbitrary
 * ChannelRequest messages (2-byte length chunks), as a caller could send.
 * Odd: the identity-binding payload parser and verifier (what a remote peer
 * puts in its Noise handshake payload) against the test PKI's trust. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binding.h"
#include "fuzz_service.h"
#include "secure_channel.h"
#include "fuzz_pki.h"

static kh_identity_store *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_store = kh_fuzz_store("fuzz_channel_session", "");
  return 0;
}

static void binding(const uint8_t *data, size_t size) {
  const kh_identity *id = kh_identity_store_get(g_store, 0);
  uint8_t pub[32] = {0}, h[32] = {0};
  if (size >= 64) {
    memcpy(pub, data, 32);
    memcpy(h, data + 32, 32);
    data += 64, size -= 64;
  }
  kh_verify_params p = {.trust = kh_identity_trust(id), .peer_role = KH_PEER_IS_CLIENT};
  kh_verified_peer peer;
  memset(&peer, 0, sizeof(peer));
  kh_error err;
  if (kh_binding_verify(&p, 1, pub, h, sizeof(h), data, size, &peer, &err))
    kh_verified_peer_free(&peer);
}

static void session(const uint8_t *data, size_t size) {
  static kh_channel_env env;
  env.store = g_store;
  kh_caller caller = {.uid = 1, .gid = 1, .pid = 1};
  kh_service svc = kh_secure_channel_service(&env);
  kh_fuzz_service(&svc, &caller, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1)
    binding(data + 1, size - 1);
  else
    session(data + 1, size - 1);
  return 0;
}

/* channel_session.h: one keyhold.v1.SecureChannel/Handshake call, sans-IO.
 *
 * The first request is a ChannelStart (or a StaticKeyRequest, answered at
 * once); then each request carries a frame the peer sent. Each response
 * carries the frame to send back, and the last one the ChannelResult: the
 * verified peer and the two transport keys. The session picks the identity,
 * asks the authorizer for the `secure-channel` grant, runs the Noise engine
 * (sidecar/noise) with the identity's static key and writes and checks the
 * identity bindings (binding.h). On a refusal it answers with an abort frame
 * for the peer and the status. docs/CHANNELS.md has the protocol. */
#ifndef KH_CHANNEL_SESSION_H
#define KH_CHANNEL_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "authz.h"
#include "policy_slot.h"
#include "caller.h"
#include "identity.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "service.h"

typedef struct kh_channel_session kh_channel_session;

/* What sessions share; borrowed, outlives them. */
typedef struct {
  const kh_identity_store *store;
  kh_policy_slot *policy; /* NULL: no authorization (tests, fuzzing only) */
} kh_channel_env;

KH_MUST_USE kh_channel_session *kh_channel_session_new(const kh_channel_env *env,
                                                       const kh_caller *caller);
void kh_channel_session_free(kh_channel_session *s);

/* kh_channel_session_handle: one ChannelRequest in, one ChannelResponse out
 * (kh_service's contract). */
kh_rpc_outcome kh_channel_session_handle(kh_channel_session *s, const uint8_t *req, size_t req_len,
                                         kh_buf *resp, kh_error *err);

const char *kh_channel_session_local_name(const kh_channel_session *s);
const char *kh_channel_session_peer_name(const kh_channel_session *s);

#endif /* KH_CHANNEL_SESSION_H */

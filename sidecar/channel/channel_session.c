/* channel_session.c: see channel_session.h. */
#include "channel_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "binding.h"
#include "choose_identity.h"
#include "keyhold/v1/secure_channel.pb-c.h"
#include "kh_channel_frame.h"
#include "kh_secret.h"
#include "noise.h"
#include "noise_key.h"
#include "verify.h"

#define PROLOGUE_LABEL "keyhold secure channel v1"
#define MAX_PROLOGUE 1024
#define MAX_NAME 256
#define CHANNEL_ID_LEN 8

/* Where each pattern carries the bindings: message index (0 = the
 * initiator's first) of the initiator's and of the responder's. Each is the
 * first message its writer sends once the peer knows its static key. */
typedef struct {
  const char *name;
  int initiator_binding_msg;
  int responder_binding_msg;
} pattern_info;

static const pattern_info k_patterns[] = {
    {"XX", 2, 1},
    {"IK", 0, 1},
};

typedef enum { ST_START, ST_RUNNING, ST_DONE } state;

struct kh_channel_session {
  const kh_channel_env *env;
  const kh_grants *grants; /* the policy as the call started (NULL: none) */
  kh_caller caller;
  state st;
  int initiator;
  const pattern_info *pattern;
  kh_identity *identity;
  kh_grant grant;
  kh_noise *noise;
  int msg_index; /* the next handshake message's index */
  char *expect[KH_MAX_PEER_CHAIN];
  size_t n_expect;
  kh_verified_peer peer;
  int peer_verified;
  char local_name[MAX_NAME];
  char peer_name[MAX_NAME];
};

kh_channel_session *kh_channel_session_new(const kh_channel_env *env, const kh_caller *caller) {
  kh_channel_session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->env = env;
  s->grants = kh_policy_slot_get(env->policy);
  s->caller = *caller;
  snprintf(s->local_name, sizeof(s->local_name), "-");
  snprintf(s->peer_name, sizeof(s->peer_name), "-");
  return s;
}

void kh_channel_session_free(kh_channel_session *s) {
  if (s == NULL) return;
  kh_noise_free(s->noise);
  kh_identity_unref(s->identity);
  for (size_t i = 0; i < s->n_expect; i++) free(s->expect[i]);
  kh_verified_peer_free(&s->peer);
  kh_policy_slot_put(s->grants);
  free(s);
}

const char *kh_channel_session_local_name(const kh_channel_session *s) {
  return s->local_name;
}

const char *kh_channel_session_peer_name(const kh_channel_session *s) {
  return s->peer_name;
}

/* --- responses ------------------------------------------------------------- */

static int pack(const Keyhold__V1__ChannelResponse *r, kh_buf *out, kh_error *err) {
  size_t n = keyhold__v1__channel_response__get_packed_size(r);
  if (!kh_buf_reserve(out, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  out->len += keyhold__v1__channel_response__pack(r, out->data + out->len);
  return 1;
}

/* fail answers a refusal: the status, an abort frame telling the peer why
 * (once the handshake has started, so there is a peer), and KH_RPC_FAILED. */
static kh_rpc_outcome fail(kh_channel_session *s, kh_buf *resp, kh_error *err) {
  Keyhold__V1__ChannelResponse r = KEYHOLD__V1__CHANNEL_RESPONSE__INIT;
  Keyhold__V1__ChannelStatus st = KEYHOLD__V1__CHANNEL_STATUS__INIT;
  st.code = kh_code_to_grpc(err->code);
  st.details = err->msg;
  r.status = &st;
  uint8_t frame[2 + KH_CHAN_ABORT_MAX];
  if (s->st == ST_RUNNING) {
    size_t n = strnlen(err->msg, KH_CHAN_ABORT_MAX);
    frame[0] = KH_CHAN_FRAME_ABORT;
    frame[1] = (uint8_t)st.code;
    memcpy(frame + 2, err->msg, n);
    r.output = (ProtobufCBinaryData){.data = frame, .len = 2 + n};
  }
  kh_buf_reset(resp);
  kh_error ignored;
  if (!pack(&r, resp, &ignored)) kh_buf_reset(resp);
  s->st = ST_DONE;
  return KH_RPC_FAILED;
}

/* --- start ----------------------------------------------------------------- */

/* choose_identity: the call's identity and the authorizer's decision
 * (choose_identity.h). */
static int choose_identity(kh_channel_session *s, const char *name, char *const *tokens,
                           size_t n_tokens, kh_error *err) {
  if (!kh_choose_identity(s->env->store, s->grants, &s->caller, name, (const char *const *)tokens,
                          n_tokens, KH_OP_SECURE_CHANNEL, "SecureChannel", &s->identity, &s->grant,
                          err))
    return 0;
  snprintf(s->local_name, sizeof(s->local_name), "%s", kh_identity_name(s->identity));
  return 1;
}

static const pattern_info *find_pattern(const char *name) {
  if (name[0] == '\0') return &k_patterns[0];
  for (size_t i = 0; i < sizeof(k_patterns) / sizeof(k_patterns[0]); i++)
    if (strcmp(k_patterns[i].name, name) == 0) return &k_patterns[i];
  return NULL;
}

/* protocol_name: Noise_<pattern>_25519_<cipher>_<hash> from the start
 * message, with the defaults and only the choices channels offer. */
static int protocol_name(const Keyhold__V1__ChannelStart *st, const pattern_info *p, char *out,
                         size_t len, kh_error *err) {
  const char *cipher = st->cipher[0] ? st->cipher : "ChaChaPoly";
  const char *hash = st->hash[0] ? st->hash : "SHA256";
  if (strcmp(cipher, "ChaChaPoly") != 0 && strcmp(cipher, "AESGCM") != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "cipher '%.40s': use ChaChaPoly or AESGCM", cipher);
  if (strcmp(hash, "SHA256") != 0 && strcmp(hash, "SHA512") != 0 && strcmp(hash, "BLAKE2b") != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "hash '%.40s': use SHA256, SHA512 or BLAKE2b",
                  hash);
  snprintf(out, len, "Noise_%s_25519_%s_%s", p->name, cipher, hash);
  return 1;
}

static int copy_expected(kh_channel_session *s, const Keyhold__V1__ChannelStart *st,
                         kh_error *err) {
  if (st->n_expected_peers > KH_MAX_PEER_CHAIN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "at most %d expected peers", KH_MAX_PEER_CHAIN);
  for (size_t i = 0; i < st->n_expected_peers; i++) {
    if (st->expected_peers[i][0] == '\0' || strlen(st->expected_peers[i]) >= MAX_NAME)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "expected peer %zu is empty or too long", i);
    if ((s->expect[s->n_expect] = strdup(st->expected_peers[i])) == NULL)
      return kh_err(err, KH_ERR_NOMEM, "out of memory");
    s->n_expect++;
  }
  return 1;
}

static int set_prologue(kh_noise *n, const Keyhold__V1__ChannelStart *st, kh_error *err) {
  if (st->prologue.len > MAX_PROLOGUE)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "prologue longer than %d bytes", MAX_PROLOGUE);
  uint8_t p[sizeof(PROLOGUE_LABEL) + MAX_PROLOGUE];
  memcpy(p, PROLOGUE_LABEL, sizeof(PROLOGUE_LABEL));
  if (st->prologue.len) memcpy(p + sizeof(PROLOGUE_LABEL), st->prologue.data, st->prologue.len);
  return kh_noise_set_prologue(n, p, sizeof(PROLOGUE_LABEL) + st->prologue.len, err);
}

static int start_noise(kh_channel_session *s, const Keyhold__V1__ChannelStart *st, kh_error *err) {
  if (st->role != KEYHOLD__V1__CHANNEL_ROLE__CHANNEL_ROLE_INITIATOR &&
      st->role != KEYHOLD__V1__CHANNEL_ROLE__CHANNEL_ROLE_RESPONDER)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "ChannelStart.role must be INITIATOR or RESPONDER");
  s->initiator = st->role == KEYHOLD__V1__CHANNEL_ROLE__CHANNEL_ROLE_INITIATOR;
  if ((s->pattern = find_pattern(st->pattern)) == NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "pattern '%.40s': channels use XX or IK",
                  st->pattern);
  char name[KH_NOISE_MAX_NAME_LEN];
  if (!protocol_name(st, s->pattern, name, sizeof(name), err) || !copy_expected(s, st, err))
    return 0;
  int needs_rs = strcmp(s->pattern->name, "IK") == 0 && s->initiator;
  if (needs_rs && st->responder_static_key.len != KH_NOISE_DH_LEN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "IK: the initiator must give the responder's 32-byte static key");
  if (!needs_rs && st->responder_static_key.len != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "responder_static_key is only for an IK initiator");
  const kh_noise_static *k = kh_identity_noise_key(s->identity);
  if ((s->noise = kh_noise_new(name, s->initiator, err)) == NULL) return 0;
  return set_prologue(s->noise, st, err) && kh_noise_set_static(s->noise, k->priv, err) &&
         (!needs_rs || kh_noise_set_remote_static(s->noise, st->responder_static_key.data, err));
}

/* --- handshake messages ---------------------------------------------------- */

static int binding_msg(const kh_channel_session *s, int of_initiator) {
  return of_initiator ? s->pattern->initiator_binding_msg : s->pattern->responder_binding_msg;
}

/* write_next: our next handshake message as a frame in |frame|, with our
 * binding in the payload if this is the message that carries it. */
static int write_next(kh_channel_session *s, kh_buf *frame, kh_error *err) {
  uint8_t type = KH_CHAN_FRAME_HANDSHAKE;
  kh_buf payload = KH_BUF_INIT;
  int ok = kh_buf_append(frame, &type, 1) && kh_noise_write_tokens(s->noise, frame, err);
  if (ok && s->msg_index == binding_msg(s, s->initiator)) {
    size_t h_len;
    const uint8_t *h = kh_noise_handshake_hash(s->noise, &h_len);
    ok = kh_binding_write(s->identity, s->initiator, kh_noise_local_static(s->noise), h, h_len,
                          &payload, err);
  }
  ok = ok && kh_noise_write_payload(s->noise, payload.data, payload.len, frame, err);
  kh_buf_free(&payload);
  if (ok) s->msg_index++;
  return ok;
}

static void name_peer(kh_channel_session *s) {
  const char *n = s->peer.spiffe_id ? s->peer.spiffe_id : s->peer.dns_count ? s->peer.dns[0] : "?";
  snprintf(s->peer_name, sizeof(s->peer_name), "%s", n);
}

/* read_next: the peer's frame; checks the peer's binding where it belongs. */
static int read_next(kh_channel_session *s, const uint8_t *frame, size_t len, kh_error *err) {
  if (len >= 1 && frame[0] == KH_CHAN_FRAME_ABORT) {
    char why[KH_CHAN_ABORT_MAX + 1];
    unsigned code = kh_chan_abort_reason(frame, len, why, sizeof(why));
    kh_err(err, code == 7 ? KH_ERR_PERMISSION_DENIED : KH_ERR_UNAUTHENTICATED,
           "the peer refused the channel: %s", why);
    s->st = ST_DONE; /* no abort back to a peer that has given up */
    return 0;
  }
  if (len < 1 || frame[0] != KH_CHAN_FRAME_HANDSHAKE)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "the peer's frame is not a handshake message (type 0x%02x)", len ? frame[0] : 0);
  kh_buf payload = KH_BUF_INIT;
  int ok = kh_noise_read_message(s->noise, frame + 1, len - 1, &payload, err);
  if (!ok && err != NULL && err->code == KH_ERR_DECRYPT)
    kh_err(err, KH_ERR_UNAUTHENTICATED,
           "the peer's handshake message %d does not authenticate (a wrong responder key for "
           "IK, or the message was altered)",
           s->msg_index);
  if (ok && s->msg_index == binding_msg(s, !s->initiator)) {
    size_t h_len;
    const uint8_t *h = kh_noise_payload_hash(s->noise, &h_len);
    kh_verify_params p = {
        .trust = kh_identity_trust(s->identity),
        .peer_role = s->initiator ? KH_PEER_IS_SERVER : KH_PEER_IS_CLIENT,
        .expect_peers = s->expect,
        .expect_peer_count = s->n_expect,
        .peer_check = s->grant.peer_check,
        .policy_name = s->grant.identity,
    };
    ok = payload.len > 0 ? kh_binding_verify(&p, !s->initiator, kh_noise_remote_static(s->noise), h,
                                             h_len, payload.data, payload.len, &s->peer, err)
                         : kh_err(err, KH_ERR_UNAUTHENTICATED,
                                  "the peer sent no identity binding where one was due");
    if (ok) {
      s->peer_verified = 1;
      name_peer(s);
    }
  } else if (ok && payload.len != 0) {
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "unexpected payload in handshake message %d",
                s->msg_index);
  }
  kh_buf_free(&payload);
  if (ok) s->msg_index++;
  return ok;
}

/* finish fills the result: names, hash, channel id and the transport keys. */
static int finish(kh_channel_session *s, Keyhold__V1__ChannelResponse *r,
                  Keyhold__V1__ChannelResult *res, Keyhold__V1__ChannelPeer *peer,
                  kh_noise_cipherstate cs[2], kh_error *err) {
  if (!s->peer_verified)
    return kh_err(err, KH_ERR_INTERNAL, "handshake finished without a verified peer");
  if (!kh_noise_split(s->noise, &cs[0], &cs[1], err)) return 0;
  size_t h_len;
  const uint8_t *h = kh_noise_handshake_hash(s->noise, &h_len);
  kh_noise_cipherstate *send = s->initiator ? &cs[0] : &cs[1];
  kh_noise_cipherstate *recv = s->initiator ? &cs[1] : &cs[0];
  peer->spiffe_id = s->peer.spiffe_id ? s->peer.spiffe_id : "";
  peer->dns_names = s->peer.dns;
  peer->n_dns_names = s->peer.dns_count;
  peer->static_key = (ProtobufCBinaryData){.data = (uint8_t *)kh_noise_remote_static(s->noise),
                                           .len = KH_NOISE_DH_LEN};
  peer->cert_fingerprint =
      (ProtobufCBinaryData){.data = s->peer.fingerprint, .len = sizeof(s->peer.fingerprint)};
  res->protocol_name = (char *)kh_noise_protocol_name(s->noise);
  res->peer = peer;
  res->local_identity = s->local_name;
  res->handshake_hash = (ProtobufCBinaryData){.data = (uint8_t *)h, .len = h_len};
  res->channel_id = (ProtobufCBinaryData){.data = (uint8_t *)h, .len = CHANNEL_ID_LEN};
  res->cipher = kh_noise_cipher_of(s->noise) == KH_NOISE_AESGCM
                    ? KEYHOLD__V1__CHANNEL_CIPHER__CHANNEL_CIPHER_AESGCM
                    : KEYHOLD__V1__CHANNEL_CIPHER__CHANNEL_CIPHER_CHACHAPOLY;
  res->send_key = (ProtobufCBinaryData){.data = send->k, .len = KH_NOISE_KEY_LEN};
  res->recv_key = (ProtobufCBinaryData){.data = recv->k, .len = KH_NOISE_KEY_LEN};
  r->result = res;
  return 1;
}

/* respond: after the peer's frame (or at the start), our next frame if it
 * is our turn, and the result once the handshake is done. */
static kh_rpc_outcome respond(kh_channel_session *s, kh_buf *resp, kh_error *err) {
  Keyhold__V1__ChannelResponse r = KEYHOLD__V1__CHANNEL_RESPONSE__INIT;
  Keyhold__V1__ChannelStatus st = KEYHOLD__V1__CHANNEL_STATUS__INIT;
  Keyhold__V1__ChannelResult res = KEYHOLD__V1__CHANNEL_RESULT__INIT;
  Keyhold__V1__ChannelPeer peer = KEYHOLD__V1__CHANNEL_PEER__INIT;
  kh_noise_cipherstate cs[2];
  memset(cs, 0, sizeof(cs));
  kh_buf frame = KH_BUF_INIT;
  r.status = &st;
  int ok = 1;
  if (!kh_noise_done(s->noise) && kh_noise_my_turn(s->noise)) ok = write_next(s, &frame, err);
  r.output = (ProtobufCBinaryData){.data = frame.data, .len = frame.len};
  int done = ok && kh_noise_done(s->noise);
  if (done) ok = finish(s, &r, &res, &peer, cs, err);
  ok = ok && pack(&r, resp, err);
  kh_wipe(cs, sizeof(cs));
  kh_buf_free(&frame);
  if (!ok) return fail(s, resp, err);
  if (!done) return KH_RPC_CONTINUE;
  s->st = ST_DONE;
  return KH_RPC_FINISHED;
}

static kh_rpc_outcome on_start(kh_channel_session *s, const Keyhold__V1__ChannelStart *st,
                               kh_buf *resp, kh_error *err) {
  if (strlen(st->local_identity) >= MAX_NAME ||
      !choose_identity(s, st->local_identity, st->access_tokens, st->n_access_tokens, err) ||
      !start_noise(s, st, err))
    return fail(s, resp, err);
  s->st = ST_RUNNING;
  return respond(s, resp, err);
}

static kh_rpc_outcome on_static_key(kh_channel_session *s, const Keyhold__V1__StaticKeyRequest *q,
                                    kh_buf *resp, kh_error *err) {
  if (strlen(q->local_identity) >= MAX_NAME || !choose_identity(s, q->local_identity, NULL, 0, err))
    return fail(s, resp, err);
  Keyhold__V1__ChannelResponse r = KEYHOLD__V1__CHANNEL_RESPONSE__INIT;
  Keyhold__V1__ChannelStatus st = KEYHOLD__V1__CHANNEL_STATUS__INIT;
  r.status = &st;
  r.static_key = (ProtobufCBinaryData){.data = (uint8_t *)kh_identity_noise_key(s->identity)->pub,
                                       .len = KH_NOISE_DH_LEN};
  if (!pack(&r, resp, err)) return fail(s, resp, err);
  s->st = ST_DONE;
  return KH_RPC_FINISHED;
}

kh_rpc_outcome kh_channel_session_handle(kh_channel_session *s, const uint8_t *req, size_t req_len,
                                         kh_buf *resp, kh_error *err) {
  if (s->st == ST_DONE) {
    kh_err(err, KH_ERR_FAILED_PRECONDITION, "the handshake is over");
    return KH_RPC_FAILED;
  }
  Keyhold__V1__ChannelRequest *r = keyhold__v1__channel_request__unpack(NULL, req_len, req);
  kh_rpc_outcome out;
  if (r == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "ChannelRequest does not parse");
    out = fail(s, resp, err);
  } else if (s->st == ST_START && r->req_case == KEYHOLD__V1__CHANNEL_REQUEST__REQ_START) {
    out = on_start(s, r->start, resp, err);
  } else if (s->st == ST_START && r->req_case == KEYHOLD__V1__CHANNEL_REQUEST__REQ_STATIC_KEY) {
    out = on_static_key(s, r->static_key, resp, err);
  } else if (s->st == ST_RUNNING && r->req_case == KEYHOLD__V1__CHANNEL_REQUEST__REQ_INPUT) {
    if (kh_noise_my_turn(s->noise)) {
      kh_err(err, KH_ERR_FAILED_PRECONDITION, "a peer frame arrived while it is our turn");
      out = fail(s, resp, err);
    } else if (!read_next(s, r->input.data, r->input.len, err)) {
      out = fail(s, resp, err);
    } else {
      out = respond(s, resp, err);
    }
  } else {
    kh_err(err, KH_ERR_FAILED_PRECONDITION, "%s",
           s->st == ST_START ? "the first request must be a start or a static key request"
                             : "after the start, requests carry peer frames (input)");
    out = fail(s, resp, err);
  }
  keyhold__v1__channel_request__free_unpacked(r, NULL);
  return out;
}

/* channel.c: the public secure-channel API (keyhold.h "secure channels"):
 * the handshake through keyholdd's SecureChannel service, then messages
 * sealed and opened here by channel_record.c. The sidecar stream is open
 * only while the handshake runs. */
#include <stdlib.h>
#include <string.h>

#include "channel_record.h"
#include "keyhold.h"
#include "keyhold/v1/secure_channel.pb-c.h"
#include "kh_channel_frame.h"
#include "kh_secret.h"
#include "session.h"
#include "sidecar_stream.h"

#define METHOD "/keyhold.v1.SecureChannel/Handshake"

_Static_assert(KH_CHANNEL_OVERHEAD == KH_CHAN_OVERHEAD, "keyhold.h's overhead is the record's");
_Static_assert(KH_CHANNEL_MAX_MESSAGE == KH_CHAN_MAX_PLAINTEXT,
               "keyhold.h's limit is the record's");

struct kh_channel {
  kh_stream *stream; /* while the handshake runs */
  kh_buf out;        /* the frame for the peer (kh_channel_output) */
  kh_chan_record *rec;
  uint64_t rekey_after;
  int failed;
  kh_channel_info info;
};

/* take_result keys the record layer from the handshake's result. */
static int take_result(kh_channel *ch, const Keyhold__V1__ChannelResult *r, kh_error *err) {
  if (r->send_key.len != KH_CHAN_KEY_LEN || r->recv_key.len != KH_CHAN_KEY_LEN ||
      r->channel_id.len != KH_CHAN_ID_LEN || r->peer == NULL ||
      r->peer->static_key.len != sizeof(ch->info.peer_static_key))
    return kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed ChannelResult");
  kh_chan_keys *k = kh_secret_alloc(sizeof(*k));
  if (k == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  k->cipher = r->cipher == KEYHOLD__V1__CHANNEL_CIPHER__CHANNEL_CIPHER_AESGCM ? KH_CHAN_AESGCM
                                                                              : KH_CHAN_CHACHAPOLY;
  k->initiator = ch->info.initiator;
  k->can_send = k->can_recv = 1;
  memcpy(k->channel_id, r->channel_id.data, KH_CHAN_ID_LEN);
  memcpy(k->send_key, r->send_key.data, KH_CHAN_KEY_LEN);
  memcpy(k->recv_key, r->recv_key.data, KH_CHAN_KEY_LEN);
  ch->rec = kh_chan_record_new(k, ch->rekey_after, err);
  kh_secret_free(k, sizeof(*k));
  if (ch->rec == NULL) return 0;
  kh_channel_info *i = &ch->info;
  snprintf(i->protocol, sizeof(i->protocol), "%s", r->protocol_name);
  const char *peer = r->peer->spiffe_id[0]  ? r->peer->spiffe_id
                     : r->peer->n_dns_names ? r->peer->dns_names[0]
                                            : "";
  snprintf(i->peer, sizeof(i->peer), "%s", peer);
  snprintf(i->local, sizeof(i->local), "%s", r->local_identity);
  memcpy(i->peer_static_key, r->peer->static_key.data, sizeof(i->peer_static_key));
  memcpy(i->channel_id, r->channel_id.data, sizeof(i->channel_id));
  i->established = 1;
  return 1;
}

/* check_status: 1 for OK (or no status), else the sidecar's refusal in |err|. */
static int check_status(const Keyhold__V1__ChannelStatus *st, kh_error *err) {
  if (st == NULL || st->code == 0) return 1;
  return kh_err(err, st->code <= 16 ? (kh_code)st->code : KH_ERR_UNKNOWN, "sidecar: %s",
                st->details[0] ? st->details : "channel refused");
}

/* request sends one ChannelRequest on |s| and takes the packed answer. */
static int request(kh_stream *s, const Keyhold__V1__ChannelRequest *req, kh_buf *resp,
                   kh_error *err) {
  uint8_t stack[1024];
  size_t n = keyhold__v1__channel_request__get_packed_size(req);
  uint8_t *msg = n <= sizeof(stack) ? stack : malloc(n);
  if (msg == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  keyhold__v1__channel_request__pack(req, msg);
  int ok = kh_stream_exchange(s, msg, n, resp, err);
  if (msg != stack) free(msg);
  return ok;
}

/* on_response decodes the sidecar's answer in |resp| (wiped after): the
 * output frame into ch->out, the status into |err|, and, at the end, the
 * result into the record layer. */
static int on_response(kh_channel *ch, kh_buf *resp, kh_error *err) {
  Keyhold__V1__ChannelResponse *r =
      keyhold__v1__channel_response__unpack(NULL, resp->len, resp->data);
  kh_wipe(resp->data, resp->len);
  if (r == NULL) return kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed ChannelResponse");
  int ok = 1;
  kh_buf_reset(&ch->out);
  if (r->output.len > 0 && !kh_buf_append(&ch->out, r->output.data, r->output.len))
    ok = kh_err(err, KH_ERR_NOMEM, "out of memory");
  ok = ok && check_status(r->status, err);
  if (ok && r->result != NULL) ok = take_result(ch, r->result, err);
  if (r->result != NULL) {
    kh_wipe(r->result->send_key.data, r->result->send_key.len);
    kh_wipe(r->result->recv_key.data, r->result->recv_key.len);
  }
  keyhold__v1__channel_response__free_unpacked(r, NULL);
  return ok;
}

/* exchange sends one request and takes the answer; the stream closes when
 * the handshake is over, either way. */
static int exchange(kh_channel *ch, const Keyhold__V1__ChannelRequest *req, kh_error *err) {
  kh_buf resp = KH_BUF_INIT;
  int ok = request(ch->stream, req, &resp, err) && on_response(ch, &resp, err);
  kh_buf_free(&resp);
  if (!ok || ch->rec != NULL) {
    kh_stream_close(ch->stream, !ok);
    ch->stream = NULL;
  }
  if (!ok) ch->failed = 1;
  return ok;
}

static int fill_start(Keyhold__V1__ChannelStart *st, kh_channel_role role, const kh_channel_opts *o,
                      kh_error *err) {
  st->role = role == KH_CHANNEL_INITIATOR ? KEYHOLD__V1__CHANNEL_ROLE__CHANNEL_ROLE_INITIATOR
                                          : KEYHOLD__V1__CHANNEL_ROLE__CHANNEL_ROLE_RESPONDER;
  if (o == NULL) return 1;
  if (o->expect_peer_count > KH_MAX_PEERS)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "at most %d expected peers", KH_MAX_PEERS);
  st->pattern = (char *)(o->pattern ? o->pattern : "");
  st->cipher = (char *)(o->cipher ? o->cipher : "");
  st->hash = (char *)(o->hash ? o->hash : "");
  st->local_identity = (char *)(o->local_identity ? o->local_identity : "");
  st->expected_peers = (char **)o->expect_peers;
  st->n_expected_peers = o->expect_peer_count;
  if (o->responder_key != NULL)
    st->responder_static_key =
        (ProtobufCBinaryData){.data = (uint8_t *)o->responder_key, .len = KH_CHANNEL_KEY_LEN};
  if (o->prologue_len > 0)
    st->prologue = (ProtobufCBinaryData){.data = (uint8_t *)o->prologue, .len = o->prologue_len};
  return 1;
}

kh_channel *kh_channel_new(kh_client *kc, kh_channel_role role, const kh_channel_opts *opts,
                           kh_error *err) {
  if (kc == NULL || (role != KH_CHANNEL_INITIATOR && role != KH_CHANNEL_RESPONDER)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "kh_channel_new: no client, or an unknown role");
    return NULL;
  }
  kh_channel *ch = calloc(1, sizeof(*ch));
  if (ch == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  ch->info.initiator = role == KH_CHANNEL_INITIATOR;
  ch->rekey_after = opts ? opts->rekey_after : 0;
  Keyhold__V1__ChannelStart st = KEYHOLD__V1__CHANNEL_START__INIT;
  Keyhold__V1__ChannelRequest req = KEYHOLD__V1__CHANNEL_REQUEST__INIT;
  req.req_case = KEYHOLD__V1__CHANNEL_REQUEST__REQ_START;
  req.start = &st;
  int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : KH_DEFAULT_TIMEOUT_MS;
  if (!fill_start(&st, role, opts, err) ||
      (ch->stream = kh_stream_open(kh_client_sidecar(kc), METHOD, timeout, err)) == NULL ||
      !exchange(ch, &req, err)) {
    kh_channel_free(ch);
    return NULL;
  }
  return ch;
}

int kh_channel_handshake(kh_channel *ch, const void *frame, size_t len, kh_error *err) {
  if (ch->failed) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "the channel failed earlier");
  if (ch->rec != NULL) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "the handshake is done");
  if (frame == NULL || len == 0 || len > KH_CHANNEL_MAX_FRAME)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "a handshake frame of %zu bytes", len);
  Keyhold__V1__ChannelRequest req = KEYHOLD__V1__CHANNEL_REQUEST__INIT;
  req.req_case = KEYHOLD__V1__CHANNEL_REQUEST__REQ_INPUT;
  req.input = (ProtobufCBinaryData){.data = (uint8_t *)frame, .len = len};
  return exchange(ch, &req, err);
}

const uint8_t *kh_channel_output(const kh_channel *ch, size_t *len) {
  *len = ch->out.len;
  return ch->out.len ? ch->out.data : NULL;
}

void kh_channel_output_consumed(kh_channel *ch) {
  kh_buf_reset(&ch->out);
}

int kh_channel_established(const kh_channel *ch) {
  return ch->rec != NULL && !ch->failed;
}

/* An abort frame after the handshake: the peer refused us after we were
 * done (XX: the responder checks the initiator's binding last). */
static int peer_abort(kh_channel *ch, const uint8_t *frame, size_t len, kh_error *err) {
  char why[KH_CHAN_ABORT_MAX + 1];
  unsigned code = kh_chan_abort_reason(frame, len, why, sizeof(why));
  ch->failed = 1;
  return kh_err(err, code == 7 ? KH_ERR_PERMISSION_DENIED : KH_ERR_UNAUTHENTICATED,
                "the peer refused the channel: %s", why);
}

static int usable(const kh_channel *ch, kh_error *err) {
  if (ch->failed) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "the channel failed earlier");
  if (ch->rec == NULL) return kh_err(err, KH_ERR_FAILED_PRECONDITION, "the handshake is not done");
  return 1;
}

/* into wraps the caller's buffer as a kh_buf that never grows: callers
 * check the room first, so nothing reallocates it. */
static kh_buf into(void *out, size_t cap) {
  return (kh_buf){.data = out, .len = 0, .cap = cap};
}

ssize_t kh_channel_seal(kh_channel *ch, const void *msg, size_t len, void *out, size_t out_cap,
                        kh_error *err) {
  if (!usable(ch, err)) return -1;
  if (len > KH_CHANNEL_MAX_MESSAGE || out_cap < len + KH_CHANNEL_OVERHEAD) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "a %zu-byte message needs %zu bytes of room, not %zu", len,
           len + KH_CHANNEL_OVERHEAD, out_cap);
    return -1;
  }
  kh_buf b = into(out, out_cap);
  return kh_chan_record_seal(ch->rec, msg, len, &b, err) ? (ssize_t)b.len : -1;
}

ssize_t kh_channel_open(kh_channel *ch, const void *frame, size_t len, void *out, size_t out_cap,
                        kh_error *err) {
  const uint8_t *f = frame;
  if (!usable(ch, err)) return -1;
  if (len >= 1 && f[0] == KH_CHAN_FRAME_ABORT) {
    peer_abort(ch, f, len, err);
    return -1;
  }
  if (len > KH_CHANNEL_MAX_MESSAGE + KH_CHANNEL_OVERHEAD) {
    kh_err(err, KH_ERR_RECORD_OVERFLOW, "a %zu-byte message is over the limit", len);
    return -1;
  }
  if (len >= KH_CHANNEL_OVERHEAD && out_cap < len - KH_CHANNEL_OVERHEAD) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "opening needs %zu bytes of room, not %zu",
           len - KH_CHANNEL_OVERHEAD, out_cap);
    return -1;
  }
  kh_buf b = into(out, out_cap);
  return kh_chan_record_open(ch->rec, f, len, &b, err) ? (ssize_t)b.len : -1;
}

int kh_channel_rekey(kh_channel *ch, kh_error *err) {
  return usable(ch, err) && kh_chan_record_rekey(ch->rec, err);
}

void kh_channel_get_info(const kh_channel *ch, kh_channel_info *out) {
  *out = ch->info;
  if (ch->rec != NULL) {
    kh_chan_stats st;
    kh_chan_record_stats(ch->rec, &st);
    out->sent = st.sent;
    out->opened = st.opened;
    out->rejected = st.rejected;
    out->send_epoch = st.send_epoch;
    out->recv_epoch = st.recv_epoch;
  }
}

void kh_channel_free(kh_channel *ch) {
  if (ch == NULL) return;
  if (ch->stream != NULL) kh_stream_close(ch->stream, 1);
  kh_chan_record_free(ch->rec);
  kh_buf_free(&ch->out);
  free(ch);
}

int kh_channel_static_key(kh_client *kc, const char *identity, uint8_t out[KH_CHANNEL_KEY_LEN],
                          int timeout_ms, kh_error *err) {
  Keyhold__V1__StaticKeyRequest q = KEYHOLD__V1__STATIC_KEY_REQUEST__INIT;
  Keyhold__V1__ChannelRequest req = KEYHOLD__V1__CHANNEL_REQUEST__INIT;
  q.local_identity = (char *)(identity ? identity : "");
  req.req_case = KEYHOLD__V1__CHANNEL_REQUEST__REQ_STATIC_KEY;
  req.static_key = &q;
  kh_stream *s = kh_stream_open(kh_client_sidecar(kc), METHOD,
                                timeout_ms > 0 ? timeout_ms : KH_DEFAULT_TIMEOUT_MS, err);
  kh_buf resp = KH_BUF_INIT;
  int ok = s != NULL && request(s, &req, &resp, err);
  Keyhold__V1__ChannelResponse *r =
      ok ? keyhold__v1__channel_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (ok && r == NULL) ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed response");
  ok = ok && check_status(r->status, err);
  if (ok && r->static_key.len != KH_CHANNEL_KEY_LEN)
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a %zu-byte static key", r->static_key.len);
  if (ok) memcpy(out, r->static_key.data, KH_CHANNEL_KEY_LEN);
  if (r != NULL) keyhold__v1__channel_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
  if (s != NULL) kh_stream_close(s, !ok);
  return ok;
}

/* key_ops.c: libkeyhold's calls of keyhold.v1.KeyOperations (unary: one
 * request, one response, on a stream of its own). */
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"
#include "keyhold/v1/key_ops.pb-c.h"
#include "kh_secret.h"
#include "session.h"
#include "sidecar_stream.h"

static int malformed(const char *what, kh_error *err) {
  return kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed %s", what);
}

/* call sends |req| to |method| and unpacks the answer as |desc| into
 * |*out| (free with protobuf_c_message_free_unpacked). The answer's wire
 * bytes are wiped (they may hold a plaintext). */
static int call(kh_client *kc, const kh_keyop_opts *o, const char *method,
                const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                ProtobufCMessage **out, kh_error *err) {
  size_t n = protobuf_c_message_get_packed_size(req);
  uint8_t *msg = malloc(n ? n : 1);
  if (msg == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  protobuf_c_message_pack(req, msg);
  int t = o != NULL && o->timeout_ms > 0 ? o->timeout_ms : KH_DEFAULT_TIMEOUT_MS;
  kh_buf resp = KH_BUF_INIT;
  kh_stream *s = kh_stream_open(kh_client_sidecar(kc), method, t, err);
  int ok = s != NULL && kh_stream_exchange(s, msg, n, &resp, err);
  if (s != NULL) kh_stream_close(s, !ok);
  free(msg);
  *out = ok ? protobuf_c_message_unpack(desc, NULL, resp.len, resp.data) : NULL;
  if (resp.data != NULL) kh_wipe(resp.data, resp.len);
  kh_buf_free(&resp);
  if (ok && *out == NULL) ok = malformed(desc->short_name, err);
  return ok;
}

/* The request fields every method has: identity and access token. */
#define SET_CALLER(q, o, token)                                                           \
  do {                                                                                    \
    (q).local_identity = (char *)((o) && (o)->local_identity ? (o)->local_identity : ""); \
    (token) = (char *)((o) ? (o)->access_token : NULL);                                   \
    (q).n_access_tokens = (token) != NULL && (token)[0] != '\0';                          \
    (q).access_tokens = &(token);                                                         \
  } while (0)

int kh_sealing_key(kh_client *kc, const kh_keyop_opts *o, uint8_t out[KH_SEALING_KEY_LEN],
                   kh_error *err) {
  Keyhold__V1__PublicKeysRequest q = KEYHOLD__V1__PUBLIC_KEYS_REQUEST__INIT;
  char *token;
  SET_CALLER(q, o, token);
  Keyhold__V1__PublicKeysResponse *r = NULL;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/GetPublicKeys", &q.base,
                &keyhold__v1__public_keys_response__descriptor, (ProtobufCMessage **)&r, err);
  if (ok && r->sealing_key.len != KH_SEALING_KEY_LEN) ok = malformed("sealing key", err);
  if (ok) memcpy(out, r->sealing_key.data, KH_SEALING_KEY_LEN);
  if (r != NULL) protobuf_c_message_free_unpacked(&r->base, NULL);
  return ok;
}

/* open_message: OpenSealed or (|envelope|) OpenEnvelope of |in|. */
static ssize_t open_message(kh_client *kc, const kh_keyop_opts *o, int envelope, const uint8_t *in,
                            size_t len, uint8_t *out, size_t out_cap, kh_error *err) {
  int ok = 1;
  size_t least = envelope ? 7 + 1 + 12 + 16 : KH_SEALED_OVERHEAD;
  if (len > KH_SEALED_MAX)
    ok = kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "message of %zu bytes: at most %u", len,
                (unsigned)KH_SEALED_MAX);
  else if (len < least)
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "sealed message too short: %zu bytes", len);
  else if (out_cap < len - (envelope ? least - 1 : KH_SEALED_OVERHEAD))
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "output buffer of %zu bytes, %zu needed", out_cap,
                len - (envelope ? least - 1 : KH_SEALED_OVERHEAD));
  if (!ok) return -1;
  char *token;
  Keyhold__V1__OpenSealedRequest q = KEYHOLD__V1__OPEN_SEALED_REQUEST__INIT;
  Keyhold__V1__OpenEnvelopeRequest e = KEYHOLD__V1__OPEN_ENVELOPE_REQUEST__INIT;
  if (envelope) {
    SET_CALLER(e, o, token);
    e.envelope.data = (uint8_t *)in;
    e.envelope.len = len;
  } else {
    SET_CALLER(q, o, token);
    q.sealed.data = (uint8_t *)in;
    q.sealed.len = len;
  }
  Keyhold__V1__OpenSealedResponse *r = NULL;
  ok = call(
      kc, o,
      envelope ? "/keyhold.v1.KeyOperations/OpenEnvelope" : "/keyhold.v1.KeyOperations/OpenSealed",
      envelope ? &e.base : &q.base, &keyhold__v1__open_sealed_response__descriptor,
      (ProtobufCMessage **)&r, err);
  if (ok && r->plaintext.len > out_cap) ok = malformed("plaintext", err);
  ssize_t got = ok ? (ssize_t)r->plaintext.len : -1;
  if (ok) memcpy(out, r->plaintext.data, r->plaintext.len);
  if (r != NULL) {
    kh_wipe(r->plaintext.data, r->plaintext.len);
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  return got;
}

ssize_t kh_open_sealed(kh_client *kc, const kh_keyop_opts *o, const uint8_t *sealed, size_t len,
                       uint8_t *out, size_t out_cap, kh_error *err) {
  return open_message(kc, o, 0, sealed, len, out, out_cap, err);
}

ssize_t kh_open_envelope(kh_client *kc, const kh_keyop_opts *o, const uint8_t *envelope, size_t len,
                         uint8_t *out, size_t out_cap, kh_error *err) {
  return open_message(kc, o, 1, envelope, len, out, out_cap, err);
}

/* copy_out: |s| into |out| (|cap| bytes), or the error naming |what|. */
static int copy_out(const char *s, char *out, size_t cap, const char *what, kh_error *err) {
  size_t n = strlen(s);
  if (n >= cap)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s of %zu bytes: buffer too small", what, n);
  memcpy(out, s, n + 1);
  return 1;
}

int kh_dpop_proof(kh_client *kc, const kh_keyop_opts *o, const char *alg, const char *htm,
                  const char *htu, const char *nonce, const uint8_t *ath, char *proof,
                  size_t proof_cap, char jkt[64], kh_error *err) {
  Keyhold__V1__DpopProofRequest q = KEYHOLD__V1__DPOP_PROOF_REQUEST__INIT;
  char *token;
  SET_CALLER(q, o, token);
  q.alg = (char *)(alg ? alg : "");
  q.htm = (char *)(htm ? htm : "");
  q.htu = (char *)(htu ? htu : "");
  q.nonce = (char *)(nonce ? nonce : "");
  q.ath.data = (uint8_t *)ath;
  q.ath.len = ath ? 32 : 0;
  Keyhold__V1__DpopProofResponse *r = NULL;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/SignDpopProof", &q.base,
                &keyhold__v1__dpop_proof_response__descriptor, (ProtobufCMessage **)&r, err) &&
           copy_out(r->proof, proof, proof_cap, "proof", err) &&
           copy_out(r->jkt, jkt, 64, "thumbprint", err);
  if (r != NULL) protobuf_c_message_free_unpacked(&r->base, NULL);
  return ok;
}

int kh_dpop_thumbprint(kh_client *kc, const kh_keyop_opts *o, const char *alg, char jkt[64],
                       kh_error *err) {
  Keyhold__V1__DpopThumbprintRequest q = KEYHOLD__V1__DPOP_THUMBPRINT_REQUEST__INIT;
  char *token;
  SET_CALLER(q, o, token);
  q.alg = (char *)(alg ? alg : "");
  Keyhold__V1__DpopThumbprintResponse *r = NULL;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/GetDpopThumbprint", &q.base,
                &keyhold__v1__dpop_thumbprint_response__descriptor, (ProtobufCMessage **)&r, err) &&
           copy_out(r->jkt, jkt, 64, "thumbprint", err);
  if (r != NULL) protobuf_c_message_free_unpacked(&r->base, NULL);
  return ok;
}

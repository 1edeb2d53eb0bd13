/* key_ops.c: libkeyhold's calls of keyhold.v1.KeyOperations (unary: one
 * request, one response, on a stream of its own). */
#include <stdlib.h>
#include <string.h>

#include "keyhold.h"
#include "keyhold/v1/key_ops.pb-c.h"
#include "kh_secret.h"
#include "session.h"
#include "sidecar_stream.h"

/* call: one request (|n| packed bytes in |msg|) to |method|; the answer in |resp|. */
static int call(kh_client *kc, const kh_keyop_opts *o, const char *method, const uint8_t *msg,
                size_t n, kh_buf *resp, kh_error *err) {
  int t = o != NULL && o->timeout_ms > 0 ? o->timeout_ms : KH_DEFAULT_TIMEOUT_MS;
  kh_stream *s = kh_stream_open(kh_client_sidecar(kc), method, t, err);
  int ok = s != NULL && kh_stream_exchange(s, msg, n, resp, err);
  if (s != NULL) kh_stream_close(s, !ok);
  return ok;
}

static char *identity_of(const kh_keyop_opts *o) {
  return (char *)(o != NULL && o->local_identity != NULL ? o->local_identity : "");
}

static size_t tokens_of(const kh_keyop_opts *o, char **one) {
  *one = (char *)(o != NULL ? o->access_token : NULL);
  return *one != NULL && (*one)[0] != '\0';
}

int kh_sealing_key(kh_client *kc, const kh_keyop_opts *o, uint8_t out[KH_SEALING_KEY_LEN],
                   kh_error *err) {
  Keyhold__V1__PublicKeysRequest q = KEYHOLD__V1__PUBLIC_KEYS_REQUEST__INIT;
  char *token;
  q.local_identity = identity_of(o);
  q.n_access_tokens = tokens_of(o, &token);
  q.access_tokens = &token;
  uint8_t msg[1024];
  size_t n = keyhold__v1__public_keys_request__get_packed_size(&q);
  if (n > sizeof(msg)) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "identity or token too long");
  keyhold__v1__public_keys_request__pack(&q, msg);
  kh_buf resp = KH_BUF_INIT;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/GetPublicKeys", msg, n, &resp, err);
  Keyhold__V1__PublicKeysResponse *r =
      ok ? keyhold__v1__public_keys_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (ok && (r == NULL || r->sealing_key.len != KH_SEALING_KEY_LEN))
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed PublicKeysResponse");
  if (ok) memcpy(out, r->sealing_key.data, KH_SEALING_KEY_LEN);
  if (r != NULL) keyhold__v1__public_keys_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
  return ok;
}

ssize_t kh_open_sealed(kh_client *kc, const kh_keyop_opts *o, const uint8_t *sealed, size_t len,
                       uint8_t *out, size_t out_cap, kh_error *err) {
  if (len > KH_SEALED_MAX)
    return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "sealed message of %zu bytes: at most %u", len,
                  (unsigned)KH_SEALED_MAX) -
           1;
  if (len < KH_SEALED_OVERHEAD)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "sealed message too short: %zu bytes", len) - 1;
  if (out_cap < len - KH_SEALED_OVERHEAD)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "output buffer of %zu bytes, %zu needed", out_cap,
                  len - KH_SEALED_OVERHEAD) -
           1;
  Keyhold__V1__OpenSealedRequest q = KEYHOLD__V1__OPEN_SEALED_REQUEST__INIT;
  char *token;
  q.local_identity = identity_of(o);
  q.n_access_tokens = tokens_of(o, &token);
  q.access_tokens = &token;
  q.sealed.data = (uint8_t *)sealed;
  q.sealed.len = len;
  size_t n = keyhold__v1__open_sealed_request__get_packed_size(&q);
  uint8_t *msg = malloc(n);
  if (msg == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory") - 1;
  keyhold__v1__open_sealed_request__pack(&q, msg);
  kh_buf resp = KH_BUF_INIT;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/OpenSealed", msg, n, &resp, err);
  free(msg);
  Keyhold__V1__OpenSealedResponse *r =
      ok ? keyhold__v1__open_sealed_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (resp.data != NULL) kh_wipe(resp.data, resp.len);
  ssize_t got = -1;
  if (ok && (r == NULL || r->plaintext.len > out_cap))
    kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed OpenSealedResponse");
  else if (ok)
    memcpy(out, r->plaintext.data, r->plaintext.len), got = (ssize_t)r->plaintext.len;
  if (r != NULL) {
    kh_wipe(r->plaintext.data, r->plaintext.len);
    keyhold__v1__open_sealed_response__free_unpacked(r, NULL);
  }
  kh_buf_free(&resp);
  return got;
}

int kh_dpop_proof(kh_client *kc, const kh_keyop_opts *o, const char *alg, const char *htm,
                  const char *htu, const char *nonce, const uint8_t *ath, char *proof,
                  size_t proof_cap, char jkt[64], kh_error *err) {
  Keyhold__V1__DpopProofRequest q = KEYHOLD__V1__DPOP_PROOF_REQUEST__INIT;
  char *token;
  q.local_identity = identity_of(o);
  q.n_access_tokens = tokens_of(o, &token);
  q.access_tokens = &token;
  q.alg = (char *)(alg ? alg : "");
  q.htm = (char *)(htm ? htm : "");
  q.htu = (char *)(htu ? htu : "");
  q.nonce = (char *)(nonce ? nonce : "");
  q.ath.data = (uint8_t *)ath;
  q.ath.len = ath ? 32 : 0;
  size_t n = keyhold__v1__dpop_proof_request__get_packed_size(&q);
  uint8_t *msg = malloc(n);
  if (msg == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  keyhold__v1__dpop_proof_request__pack(&q, msg);
  kh_buf resp = KH_BUF_INIT;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/SignDpopProof", msg, n, &resp, err);
  free(msg);
  Keyhold__V1__DpopProofResponse *r =
      ok ? keyhold__v1__dpop_proof_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (ok && (r == NULL || strlen(r->jkt) >= 64))
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed DpopProofResponse");
  if (ok && strlen(r->proof) >= proof_cap)
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "proof of %zu bytes: buffer too small",
                strlen(r->proof));
  if (ok) {
    memcpy(proof, r->proof, strlen(r->proof) + 1);
    memcpy(jkt, r->jkt, strlen(r->jkt) + 1);
  }
  if (r != NULL) keyhold__v1__dpop_proof_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
  return ok;
}

int kh_dpop_thumbprint(kh_client *kc, const kh_keyop_opts *o, const char *alg, char jkt[64],
                       kh_error *err) {
  Keyhold__V1__DpopThumbprintRequest q = KEYHOLD__V1__DPOP_THUMBPRINT_REQUEST__INIT;
  char *token;
  q.local_identity = identity_of(o);
  q.n_access_tokens = tokens_of(o, &token);
  q.access_tokens = &token;
  q.alg = (char *)(alg ? alg : "");
  uint8_t msg[1024];
  size_t n = keyhold__v1__dpop_thumbprint_request__get_packed_size(&q);
  if (n > sizeof(msg)) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "identity or token too long");
  keyhold__v1__dpop_thumbprint_request__pack(&q, msg);
  kh_buf resp = KH_BUF_INIT;
  int ok = call(kc, o, "/keyhold.v1.KeyOperations/GetDpopThumbprint", msg, n, &resp, err);
  Keyhold__V1__DpopThumbprintResponse *r =
      ok ? keyhold__v1__dpop_thumbprint_response__unpack(NULL, resp.len, resp.data) : NULL;
  if (ok && (r == NULL || strlen(r->jkt) >= 64))
    ok = kh_err(err, KH_ERR_INTERNAL, "sidecar sent a malformed DpopThumbprintResponse");
  if (ok) memcpy(jkt, r->jkt, strlen(r->jkt) + 1);
  if (r != NULL) keyhold__v1__dpop_thumbprint_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
  return ok;
}

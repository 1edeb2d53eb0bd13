/* key_ops.c: see key_ops.h. */
#include "key_ops.h"

#include <openssl/mem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "choose_identity.h"
#include "dpop.h"
#include "envelope.h"
#include "keyhold/v1/key_ops.pb-c.h"
#include "kh_log.h"
#include "kh_secret.h"
#include "noise_key.h"

static const char *op_name(kh_keyop op) {
  static const char *const names[] = {"get_public_keys", "open_sealed", "sign_dpop_proof",
                                      "get_dpop_thumbprint", "open_envelope"};
  return names[op];
}

/* choose: the identity the request names, checked for |op|. */
static kh_identity *choose_granted(const kh_keyops_env *env, const kh_caller *caller,
                                   kh_operation op, const char *name, char **tokens,
                                   size_t n_tokens, const char *what, kh_grant *grant,
                                   kh_error *err) {
  const kh_grants *g = kh_policy_slot_get(env->policy);
  kh_identity *id = NULL;
  int ok = kh_choose_identity(env->store, g, caller, name, (const char *const *)tokens, n_tokens,
                              op, what, &id, grant, err);
  kh_policy_slot_put(g);
  return ok ? id : NULL;
}

/* choose: the identity the request names, checked for |op|. */
static kh_identity *choose(const kh_keyops_env *env, const kh_caller *caller, kh_operation op,
                           const char *name, char **tokens, size_t n_tokens, const char *what,
                           kh_error *err) {
  kh_grant grant;
  return choose_granted(env, caller, op, name, tokens, n_tokens, what, &grant, err);
}

static int pack_public(const kh_identity *id, kh_buf *resp, kh_error *err) {
  Keyhold__V1__PublicKeysResponse r = KEYHOLD__V1__PUBLIC_KEYS_RESPONSE__INIT;
  r.identity = (char *)kh_identity_name(id);
  r.sealing_key.data = (uint8_t *)kh_identity_seal_key(id)->pub;
  r.sealing_key.len = KH_X25519_LEN;
  uint8_t *spki = NULL;
  if (kh_identity_key_type(id) == KH_KEY_RSA) {
    X509_PUBKEY *xp = X509_get_X509_PUBKEY(kh_identity_leaf(id));
    int n = xp ? i2d_X509_PUBKEY(xp, &spki) : -1;
    if (n > 0) r.rsa_public_key.data = spki, r.rsa_public_key.len = (size_t)n;
  }
  size_t n = keyhold__v1__public_keys_response__get_packed_size(&r);
  int ok = kh_buf_reserve(resp, n);
  if (ok) resp->len = keyhold__v1__public_keys_response__pack(&r, resp->data);
  OPENSSL_free(spki);
  return ok || kh_err(err, KH_ERR_NOMEM, "out of memory");
}

static int public_keys(const kh_keyops_env *env, const kh_caller *caller, const uint8_t *req,
                       size_t len, kh_buf *resp, kh_identity **used, kh_error *err) {
  Keyhold__V1__PublicKeysRequest *r = keyhold__v1__public_keys_request__unpack(NULL, len, req);
  if (r == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed PublicKeysRequest");
  *used = choose(env, caller, KH_OP_OPEN_SEALED, r->local_identity, r->access_tokens,
                 r->n_access_tokens, "KeyOperations.GetPublicKeys", err);
  keyhold__v1__public_keys_request__free_unpacked(r, NULL);
  return *used != NULL && pack_public(*used, resp, err);
}

/* open_box: the plaintext of |box| in locked memory, into |resp| as an
 * OpenSealedResponse (the response buffer is wiped when gRPC lets it go). */
static int open_box(const kh_identity *id, const ProtobufCBinaryData *box, kh_buf *resp,
                    kh_error *err) {
  if (box->len < crypto_box_SEALBYTES)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "sealed message too short: %zu bytes, a sealed box has at least %u", box->len,
                  (unsigned)crypto_box_SEALBYTES);
  size_t n = box->len - crypto_box_SEALBYTES;
  uint8_t *pt = kh_secret_alloc(n + 1);
  if (pt == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  const kh_noise_static *k = kh_identity_seal_key(id);
  int ok = crypto_box_seal_open(pt, box->data, box->len, k->pub, k->priv) == 0;
  if (!ok) {
    kh_secret_free(pt, n + 1);
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "the sealed message does not open with %s's sealing key: altered, truncated, "
                  "or sealed to another key",
                  kh_identity_name(id));
  }
  Keyhold__V1__OpenSealedResponse r = KEYHOLD__V1__OPEN_SEALED_RESPONSE__INIT;
  r.plaintext.data = pt;
  r.plaintext.len = n;
  size_t need = keyhold__v1__open_sealed_response__get_packed_size(&r);
  ok = kh_buf_reserve(resp, need);
  if (ok) resp->len = keyhold__v1__open_sealed_response__pack(&r, resp->data);
  kh_secret_free(pt, n + 1);
  return ok || kh_err(err, KH_ERR_NOMEM, "out of memory");
}

static int open_sealed(const kh_keyops_env *env, const kh_caller *caller, const uint8_t *req,
                       size_t len, kh_buf *resp, kh_identity **used, kh_error *err) {
  if (len > KH_SEALED_MAX + 4096)
    return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED,
                  "request of %zu bytes: sealed messages are at most %u", len,
                  (unsigned)KH_SEALED_MAX);
  Keyhold__V1__OpenSealedRequest *r = keyhold__v1__open_sealed_request__unpack(NULL, len, req);
  if (r == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed OpenSealedRequest");
  int ok = 0;
  if (r->sealed.len > KH_SEALED_MAX)
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "sealed message of %zu bytes: at most %u", r->sealed.len,
           (unsigned)KH_SEALED_MAX);
  else if ((*used = choose(env, caller, KH_OP_OPEN_SEALED, r->local_identity, r->access_tokens,
                           r->n_access_tokens, "KeyOperations.OpenSealed", err)) != NULL)
    ok = open_box(*used, &r->sealed, resp, err);
  keyhold__v1__open_sealed_request__free_unpacked(r, NULL);
  return ok;
}

static int pack_dpop(const char *proof, const char *jkt, kh_buf *resp, kh_error *err) {
  Keyhold__V1__DpopProofResponse r = KEYHOLD__V1__DPOP_PROOF_RESPONSE__INIT;
  r.proof = (char *)proof;
  r.jkt = (char *)jkt;
  size_t n = keyhold__v1__dpop_proof_response__get_packed_size(&r);
  if (!kh_buf_reserve(resp, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  resp->len = keyhold__v1__dpop_proof_response__pack(&r, resp->data);
  return 1;
}

static int dpop_proof(const kh_keyops_env *env, const kh_caller *caller, const uint8_t *req,
                      size_t len, kh_buf *resp, kh_identity **used, kh_error *err) {
  Keyhold__V1__DpopProofRequest *r = keyhold__v1__dpop_proof_request__unpack(NULL, len, req);
  if (r == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed DpopProofRequest");
  char jkt[64];
  kh_buf proof = KH_BUF_INIT;
  int ok = (*used = choose(env, caller, KH_OP_DPOP, r->local_identity, r->access_tokens,
                           r->n_access_tokens, "KeyOperations.SignDpopProof", err)) != NULL &&
           kh_dpop_proof(*used, r->alg, r->htm, r->htu, r->nonce, r->ath.len ? r->ath.data : NULL,
                         r->ath.len, (int64_t)time(NULL), &proof, err) &&
           kh_dpop_thumbprint(*used, r->alg, jkt, sizeof(jkt), err) &&
           pack_dpop((const char *)proof.data, jkt, resp, err);
  kh_buf_free(&proof);
  keyhold__v1__dpop_proof_request__free_unpacked(r, NULL);
  return ok;
}

static int dpop_thumbprint(const kh_keyops_env *env, const kh_caller *caller, const uint8_t *req,
                           size_t len, kh_buf *resp, kh_identity **used, kh_error *err) {
  Keyhold__V1__DpopThumbprintRequest *r =
      keyhold__v1__dpop_thumbprint_request__unpack(NULL, len, req);
  if (r == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed DpopThumbprintRequest");
  char jkt[64];
  int ok = (*used = choose(env, caller, KH_OP_DPOP, r->local_identity, r->access_tokens,
                           r->n_access_tokens, "KeyOperations.GetDpopThumbprint", err)) != NULL &&
           kh_dpop_thumbprint(*used, r->alg, jkt, sizeof(jkt), err);
  keyhold__v1__dpop_thumbprint_request__free_unpacked(r, NULL);
  if (!ok) return 0;
  Keyhold__V1__DpopThumbprintResponse t = KEYHOLD__V1__DPOP_THUMBPRINT_RESPONSE__INIT;
  t.jkt = jkt;
  size_t n = keyhold__v1__dpop_thumbprint_response__get_packed_size(&t);
  if (!kh_buf_reserve(resp, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  resp->len = keyhold__v1__dpop_thumbprint_response__pack(&t, resp->data);
  return 1;
}

static int open_envelope(const kh_keyops_env *env, const kh_caller *caller, const uint8_t *req,
                         size_t len, kh_buf *resp, kh_identity **used, kh_error *err) {
  if (len > KH_SEALED_MAX + 4096)
    return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "request of %zu bytes: envelopes are at most %u",
                  len, (unsigned)KH_SEALED_MAX);
  Keyhold__V1__OpenEnvelopeRequest *r = keyhold__v1__open_envelope_request__unpack(NULL, len, req);
  if (r == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed OpenEnvelopeRequest");
  kh_grant grant;
  kh_buf pt = KH_BUF_INIT;
  int mode = kh_envelope_mode(r->envelope.data, r->envelope.len), ok = 0;
  if (r->envelope.len > KH_SEALED_MAX)
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "envelope of %zu bytes: at most %u", r->envelope.len,
           (unsigned)KH_SEALED_MAX);
  else if ((*used = choose_granted(env, caller, KH_OP_OPEN_SEALED, r->local_identity,
                                   r->access_tokens, r->n_access_tokens,
                                   "KeyOperations.OpenEnvelope", &grant, err)) == NULL)
    ;
  else if (kh_identity_key_type(*used) != KH_KEY_RSA)
    kh_err(err, KH_ERR_FAILED_PRECONDITION,
           "identity '%.100s' has no RSA key: envelopes are for RSA identities (sealed boxes "
           "work for every identity)",
           kh_identity_dir_name(*used));
  else if (mode == KH_ENVELOPE_PKCS1V15 &&
           (env->reject_key == NULL || !(grant.operations & KH_GRANT_LEGACY_PKCS1V15)))
    kh_err(err, KH_ERR_PERMISSION_DENIED,
           "PKCS#1 v1.5 envelopes are not enabled for identity '%.100s' (legacy: the policy "
           "must list the 'legacy-pkcs1v15' operation for it; use RSA-OAEP)",
           kh_identity_dir_name(*used));
  else
    ok = kh_envelope_open(*used, r->envelope.data, r->envelope.len, env->reject_key, &pt, err);
  keyhold__v1__open_envelope_request__free_unpacked(r, NULL);
  if (ok) {
    Keyhold__V1__OpenSealedResponse o = KEYHOLD__V1__OPEN_SEALED_RESPONSE__INIT;
    o.plaintext.data = pt.data;
    o.plaintext.len = pt.len;
    size_t n = keyhold__v1__open_sealed_response__get_packed_size(&o);
    ok = kh_buf_reserve(resp, n) || kh_err(err, KH_ERR_NOMEM, "out of memory");
    if (ok) resp->len = keyhold__v1__open_sealed_response__pack(&o, resp->data);
  }
  if (pt.data != NULL) kh_wipe(pt.data, pt.len);
  kh_buf_free(&pt);
  return ok;
}

typedef int (*keyop_fn)(const kh_keyops_env *, const kh_caller *, const uint8_t *, size_t, kh_buf *,
                        kh_identity **, kh_error *);

int kh_keyop_handle(const kh_keyops_env *env, const kh_caller *caller, kh_keyop op,
                    const uint8_t *req, size_t len, kh_buf *resp, char *identity,
                    size_t identity_len, kh_error *err) {
  kh_identity *used = NULL;
  static const keyop_fn fns[] = {public_keys, open_sealed, dpop_proof, dpop_thumbprint,
                                 open_envelope};
  int ok = fns[op](env, caller, req, len, resp, &used, err);
  snprintf(identity, identity_len, "%s", used ? kh_identity_name(used) : "-");
  kh_identity_unref(used);
  if (ok)
    kh_log(KH_LOG_INFO, "key-op op=%s caller_uid=%u caller_pid=%d identity=%s result=OK bytes=%zu",
           op_name(op), (unsigned)caller->uid, (int)caller->pid, identity, len);
  else
    kh_log(KH_LOG_WARN,
           "key-op op=%s caller_uid=%u caller_pid=%d identity=%s result=%s reason=\"%s\"",
           op_name(op), (unsigned)caller->uid, (int)caller->pid, identity, kh_code_name(err->code),
           err->msg);
  return ok;
}

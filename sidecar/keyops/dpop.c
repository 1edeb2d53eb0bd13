/* dpop.c: see dpop.h. JSON is built from checked ASCII only (nothing needs
 * escaping); the ECDSA signature is converted from DER to JWS's r || s. */
#include "dpop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

/* b64url: base64url without padding of |in| into |out| (a C string). */
static void b64url(const uint8_t *in, size_t len, char *out, size_t cap) {
  size_t need = 4 * ((len + 2) / 3) + 1;
  if (cap < need) {
    out[0] = '\0';
    return;
  }
  size_t n = EVP_EncodeBlock((uint8_t *)out, in, len);
  while (n > 0 && out[n - 1] == '=') n--;
  out[n] = '\0';
  for (size_t i = 0; i < n; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

typedef struct {
  const char *alg;
  uint16_t sigalg;
  EVP_PKEY *dedicated; /* dpop.key (borrowed), or NULL: the identity key signs */
  char members[300];   /* the JWK's members in RFC 7638 (lexicographic) order */
} jwk;

/* key_jwk: the public key |id| signs DPoP proofs with for |alg|, as a JWK:
 * ES256 with the identity key if it is P-256, else with dpop.key; EdDSA
 * with an Ed25519 identity key. */
static int key_jwk(const kh_identity *id, const char *alg, jwk *k, kh_error *err) {
  kh_key_type t = kh_identity_key_type(id);
  const char *want = alg != NULL && alg[0] != '\0' ? alg : t == KH_KEY_ED25519 ? "EdDSA" : "ES256";
  if (strcmp(want, "ES256") != 0 && strcmp(want, "EdDSA") != 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "alg '%.20s': ES256 or EdDSA", want);
  int es256 = strcmp(want, "ES256") == 0;
  if (!es256 && t != KH_KEY_ED25519)
    return kh_err(err, KH_ERR_FAILED_PRECONDITION,
                  "identity %.200s has no EdDSA key for DPoP (EdDSA needs an Ed25519 identity "
                  "key; use ES256)",
                  kh_identity_name(id));
  k->dedicated = es256 ? kh_identity_dpop_key(id) : NULL;
  EVP_PKEY *pub = k->dedicated ? k->dedicated : X509_get_pubkey(kh_identity_leaf(id));
  int ok = pub != NULL;
  char x[64], y[64];
  if (ok && es256) {
    uint8_t pt[65];
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(pub);
    ok = ec != NULL &&
         EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                            POINT_CONVERSION_UNCOMPRESSED, pt, sizeof(pt), NULL) == sizeof(pt);
    b64url(pt + 1, 32, x, sizeof(x));
    b64url(pt + 33, 32, y, sizeof(y));
    snprintf(k->members, sizeof(k->members),
             "\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"", x, y);
    k->alg = "ES256";
    k->sigalg = SSL_SIGN_ECDSA_SECP256R1_SHA256;
  } else if (ok) {
    uint8_t raw[32];
    size_t rl = sizeof(raw);
    ok = EVP_PKEY_get_raw_public_key(pub, raw, &rl) && rl == 32;
    b64url(raw, 32, x, sizeof(x));
    snprintf(k->members, sizeof(k->members), "\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"", x);
    k->alg = "EdDSA";
    k->sigalg = SSL_SIGN_ED25519;
  }
  if (pub != k->dedicated) EVP_PKEY_free(pub);
  return ok || kh_err(err, KH_ERR_INTERNAL, "cannot read the identity's public key");
}

int kh_dpop_thumbprint(const kh_identity *id, const char *alg, char *out, size_t cap,
                       kh_error *err) {
  jwk k;
  if (!key_jwk(id, alg, &k, err)) return 0;
  char canon[320];
  int n = snprintf(canon, sizeof(canon), "{%s}", k.members);
  uint8_t h[SHA256_DIGEST_LENGTH];
  SHA256((const uint8_t *)canon, (size_t)n, h);
  b64url(h, sizeof(h), out, cap);
  return out[0] != '\0' || kh_err(err, KH_ERR_INTERNAL, "thumbprint buffer too small");
}

static int token_ok(const char *s, size_t max, int (*allowed)(int c)) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if (!allowed((unsigned char)s[i])) return 0;
  return 1;
}
static int method_char(int c) {
  return c >= 'A' && c <= 'Z';
}
static int uri_char(int c) { /* printable, no space, quote, backslash, query or fragment */
  return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?' && c != '#';
}
static int nonce_char(int c) { /* RFC 9449 NQCHAR */
  return c >= 0x21 && c <= 0x7e && c != '"' && c != '\\';
}

static int check_inputs(const char *htm, const char *htu, const char *nonce, size_t ath_len,
                        kh_error *err) {
  if (htm == NULL || !token_ok(htm, 16, method_char))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "htm must be an HTTP method (A-Z, at most 16)");
  if (htu == NULL || !token_ok(htu, KH_DPOP_MAX_HTU, uri_char) ||
      (strncmp(htu, "https://", 8) != 0 && strncmp(htu, "http://", 7) != 0))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "htu must be an absolute http(s) URI without query or fragment (at most %d)",
                  KH_DPOP_MAX_HTU);
  if (nonce != NULL && nonce[0] != '\0' && !token_ok(nonce, KH_DPOP_MAX_NONCE, nonce_char))
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "nonce must be printable ASCII without '\"' or '\\'");
  if (ath_len != 0 && ath_len != SHA256_DIGEST_LENGTH)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "ath must be the 32-byte SHA-256 of the token");
  return 1;
}

/* jws_signature: the identity's signature of |in|, as JWS wants it. */
static int jws_signature(const kh_identity *id, const jwk *k, const char *in, char *out, size_t cap,
                         kh_error *err) {
  uint8_t sig[KH_MAX_SIGNATURE];
  size_t sl = sizeof(sig);
  if (k->dedicated != NULL) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->dedicated) &&
             EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)in, strlen(in));
    EVP_MD_CTX_free(ctx);
    if (!ok) return kh_err(err, KH_ERR_INTERNAL, "DPoP key signature failed");
  } else if (!kh_identity_sign(id, k->sigalg, (const uint8_t *)in, strlen(in), sig, &sl,
                               sizeof(sig), err)) {
    return 0;
  }
  if (k->sigalg == SSL_SIGN_ED25519) {
    b64url(sig, sl, out, cap);
    return 1;
  }
  ECDSA_SIG *es = ECDSA_SIG_from_bytes(sig, sl);
  uint8_t raw[64];
  int ok = es != NULL && BN_bn2bin_padded(raw, 32, ECDSA_SIG_get0_r(es)) &&
           BN_bn2bin_padded(raw + 32, 32, ECDSA_SIG_get0_s(es));
  ECDSA_SIG_free(es);
  if (!ok) return kh_err(err, KH_ERR_INTERNAL, "cannot convert the ECDSA signature");
  b64url(raw, sizeof(raw), out, cap);
  return 1;
}

int kh_dpop_proof(const kh_identity *id, const char *alg, const char *htm, const char *htu,
                  const char *nonce, const uint8_t *ath, size_t ath_len, int64_t iat, kh_buf *out,
                  kh_error *err) {
  jwk k;
  if (!check_inputs(htm, htu, nonce, ath ? ath_len : 0, err) || !key_jwk(id, alg, &k, err))
    return 0;
  uint8_t rnd[16];
  char jti[32], athb[48] = "", hdr[400], claims[KH_DPOP_MAX_HTU + KH_DPOP_MAX_NONCE + 300];
  RAND_bytes(rnd, sizeof(rnd));
  b64url(rnd, sizeof(rnd), jti, sizeof(jti));
  if (ath != NULL && ath_len > 0) b64url(ath, ath_len, athb, sizeof(athb));
  snprintf(hdr, sizeof(hdr), "{\"typ\":\"dpop+jwt\",\"alg\":\"%s\",\"jwk\":{%s}}", k.alg,
           k.members);
  snprintf(claims, sizeof(claims),
           "{\"jti\":\"%s\",\"htm\":\"%s\",\"htu\":\"%s\",\"iat\":%lld%s%s%s%s%s%s}", jti, htm, htu,
           (long long)iat, nonce && nonce[0] ? ",\"nonce\":\"" : "", nonce && nonce[0] ? nonce : "",
           nonce && nonce[0] ? "\"" : "", athb[0] ? ",\"ath\":\"" : "", athb, athb[0] ? "\"" : "");
  /* signing input: b64url(header) "." b64url(claims) */
  size_t cap = 4 * (strlen(hdr) + strlen(claims)) / 3 + 16;
  char *input = malloc(cap), sig[200];
  if (input == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  b64url((const uint8_t *)hdr, strlen(hdr), input, cap);
  size_t hl = strlen(input);
  input[hl] = '.';
  b64url((const uint8_t *)claims, strlen(claims), input + hl + 1, cap - hl - 1);
  int ok = jws_signature(id, &k, input, sig, sizeof(sig), err);
  size_t il = strlen(input), sgl = strlen(sig);
  if (ok && !kh_buf_reserve(out, il + 1 + sgl + 1)) ok = kh_err(err, KH_ERR_NOMEM, "out of memory");
  if (ok) {
    memcpy(out->data + out->len, input, il);
    out->data[out->len + il] = '.';
    memcpy(out->data + out->len + il + 1, sig, sgl + 1);
    out->len += il + 1 + sgl;
  }
  free(input);
  return ok;
}

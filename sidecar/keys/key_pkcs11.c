/* key_pkcs11.c: the PKCS#11 backend of key.h. tls.key holds a one-line
 * RFC 7512 URI instead of a PEM key; the private key stays on the token and
 * keyholdd only ever holds its handle.
 *
 *   pkcs11:token=keyhold;object=client;type=private
 *       ?module-name=softhsm2&pin-source=file:/etc/keyhold/pin
 *       [&x-sessions=4][&x-timeout-ms=2000]
 *
 * A key is a pool: |sessions| PKCS#11 sessions, each owned by a thread of
 * its own that runs C_SignInit/C_Sign (and C_Decrypt for RSA envelopes) for
 * jobs queued by the callers. A caller waits at most |timeout_ms| for its
 * answer, so a token that is slow holds up its own callers only while
 * other sessions are free, and a token that stops answering fails the
 * handshake with a clear error instead of hanging it; the call that did not
 * return keeps its thread and session until it does. A lost session
 * (token removed, logged out) is reopened and logged into again once per
 * job. The public half comes from the certificate: at load a random
 * challenge is signed on the token and verified against tls.crt's key, so
 * a URI naming the wrong object fails at load, not in a handshake.
 *
 * Threads are detached: kh_key_free closes the pool and the last thread out
 * frees it (kh_p11_shutdown waits for them before finalizing modules). */
#include "key.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>

#include "kh_log.h"
#include "kh_secret.h"
#include "pkcs11_module.h"
#include "pkcs11_sig.h"

#define KH_P11_DEFAULT_SESSIONS 4
#define KH_P11_MAX_SESSIONS 16
#define KH_P11_DEFAULT_TIMEOUT_MS 2000
#define KH_P11_MAX_PIN 256
#define KH_P11_MAX_IN 65536 /* what a caller may sign whole (Ed25519) or decrypt */

typedef struct job {
  struct job *next;
  int decrypt; /* 0: sign with |mech|; 1: RSA decrypt, OAEP if |oaep| */
  kh_p11_mech mech;
  int oaep;
  uint8_t *in;
  size_t in_len;
  uint8_t out[KH_MAX_SIGNATURE];
  CK_ULONG out_len;
  CK_RV rv;
  int started, done, abandoned;
} job;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was queued, or the pool closes */
  pthread_cond_t done; /* a job finished (CLOCK_MONOTONIC) */
  job *head, *tail;
  unsigned live; /* threads running */
  int closing;
  CK_FUNCTION_LIST *f;
  CK_SLOT_ID slot;
  CK_OBJECT_HANDLE obj;
  kh_key_type type;
  EVP_PKEY *pub; /* the certificate's key */
  unsigned timeout_ms;
  char *pin; /* locked memory, KH_P11_MAX_PIN + 1 bytes; NULL: no login */
  size_t pin_len;
  char where[200]; /* ".../tls.key", for messages */
} pool;

static void job_free(job *j) {
  if (j == NULL) return;
  if (j->in != NULL) kh_wipe(j->in, j->in_len), free(j->in);
  kh_wipe(j->out, sizeof(j->out));
  free(j);
}

static void pool_destroy(pool *p) {
  EVP_PKEY_free(p->pub);
  if (p->pin != NULL) kh_secret_free(p->pin, KH_P11_MAX_PIN + 1);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

static CK_RV login(pool *p, CK_SESSION_HANDLE s) {
  if (p->pin == NULL) return CKR_OK;
  CK_RV rv = p->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)p->pin, p->pin_len);
  return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

static CK_RV open_session(pool *p, CK_SESSION_HANDLE *s) {
  CK_RV rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
  if (rv != CKR_OK) return rv;
  if ((rv = login(p, *s)) != CKR_OK) p->f->C_CloseSession(*s), *s = CK_INVALID_HANDLE;
  return rv;
}

static int session_lost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_TOKEN_NOT_PRESENT;
}

static CK_RV run_once(pool *p, CK_SESSION_HANDLE s, job *j) {
  CK_RV rv;
  j->out_len = sizeof(j->out);
  if (!j->decrypt) {
    CK_RSA_PKCS_PSS_PARAMS pss = {j->mech.pss_hash, j->mech.pss_mgf, j->mech.pss_salt};
    CK_MECHANISM m = {j->mech.mechanism, j->mech.pss ? &pss : NULL, j->mech.pss ? sizeof(pss) : 0};
    if ((rv = p->f->C_SignInit(s, &m, p->obj)) != CKR_OK) return rv;
    return p->f->C_Sign(s, j->in, j->in_len, j->out, &j->out_len);
  }
  CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_MECHANISM m = {j->oaep ? CKM_RSA_PKCS_OAEP : CKM_RSA_X_509, j->oaep ? &oaep : NULL,
                    j->oaep ? sizeof(oaep) : 0};
  if ((rv = p->f->C_DecryptInit(s, &m, p->obj)) != CKR_OK) return rv;
  return p->f->C_Decrypt(s, j->in, j->in_len, j->out, &j->out_len);
}

/* run: one job on the thread's session |*s|, reopened (at most once) when
 * it was lost or left with an operation active. */
static CK_RV run(pool *p, CK_SESSION_HANDLE *s, job *j) {
  CK_RV rv = *s == CK_INVALID_HANDLE ? open_session(p, s) : CKR_OK;
  if (rv != CKR_OK) return rv;
  rv = run_once(p, *s, j);
  if (rv == CKR_USER_NOT_LOGGED_IN && login(p, *s) == CKR_OK) return run_once(p, *s, j);
  if (session_lost(rv) || rv == CKR_OPERATION_ACTIVE || rv == CKR_BUFFER_TOO_SMALL) {
    p->f->C_CloseSession(*s);
    *s = CK_INVALID_HANDLE;
    if (session_lost(rv) && open_session(p, s) == CKR_OK) rv = run_once(p, *s, j);
  }
  return rv;
}

typedef struct {
  pool *p;
  CK_SESSION_HANDLE s;
} worker_arg;

static void *worker(void *arg) {
  worker_arg *w = arg;
  pool *p = w->p;
  CK_SESSION_HANDLE s = w->s;
  free(w);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->head == NULL && !p->closing) pthread_cond_wait(&p->work, &p->mu);
    if (p->head == NULL) break; /* closing, nothing queued */
    job *j = p->head;
    if ((p->head = j->next) == NULL) p->tail = NULL;
    j->started = 1;
    pthread_mutex_unlock(&p->mu);
    CK_RV rv = run(p, &s, j);
    pthread_mutex_lock(&p->mu);
    j->rv = rv;
    j->done = 1;
    if (j->abandoned) job_free(j); /* its caller gave up waiting */
    pthread_cond_broadcast(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  /* The session closes before this thread stops counting: the last thread
   * out frees the pool, and nothing here may touch it after that. */
  if (s != CK_INVALID_HANDLE) p->f->C_CloseSession(s);
  pthread_mutex_lock(&p->mu);
  int last = --p->live == 0;
  pthread_mutex_unlock(&p->mu);
  if (last) pool_destroy(p);
  kh_p11_thread_leave();
  return NULL;
}

/* start_worker: a detached thread owning session |s| (closed on failure);
 * signals blocked, as for keyholdd's other threads. */
static int start_worker(pool *p, CK_SESSION_HANDLE s) {
  worker_arg *w = malloc(sizeof(*w));
  pthread_attr_t attr;
  sigset_t all, old;
  if (w == NULL) {
    p->f->C_CloseSession(s);
    return 0;
  }
  *w = (worker_arg){.p = p, .s = s};
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  pthread_mutex_lock(&p->mu);
  kh_p11_thread_enter();
  pthread_t t;
  int ok = pthread_create(&t, &attr, worker, w) == 0;
  if (ok) {
    p->live++;
  } else {
    kh_p11_thread_leave();
  }
  pthread_mutex_unlock(&p->mu);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (!ok) free(w), p->f->C_CloseSession(s);
  return ok;
}

/* submit queues |j| and waits for it at most the pool's timeout. 1: |j| is
 * done (the caller frees it); 0: it is not, and is no longer the caller's. */
static int submit(pool *p, job *j, kh_error *err) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += p->timeout_ms / 1000;
  until.tv_nsec += (long)(p->timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&p->mu);
  if (p->tail != NULL)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  pthread_cond_signal(&p->work);
  while (!j->done && pthread_cond_timedwait(&p->done, &p->mu, &until) != ETIMEDOUT) {
  }
  if (j->done) {
    pthread_mutex_unlock(&p->mu);
    return 1;
  }
  if (j->started) {
    j->abandoned = 1; /* its thread frees it when the token answers */
  } else {            /* still queued: every session is busy */
    job **at = &p->head, *prev = NULL;
    while (*at != j) prev = *at, at = &(*at)->next;
    *at = j->next;
    if (p->tail == j) p->tail = prev;
    job_free(j);
  }
  pthread_mutex_unlock(&p->mu);
  return kh_err(err, KH_ERR_UNAVAILABLE, "%s: the PKCS#11 token did not answer within %u ms",
                p->where, p->timeout_ms);
}

static job *new_job(const uint8_t *in, size_t in_len, kh_error *err) {
  job *j = calloc(1, sizeof(*j));
  if (j != NULL && in_len > 0 && (j->in = malloc(in_len)) == NULL) free(j), j = NULL;
  if (j == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  if (in_len > 0) memcpy(j->in, in, in_len);
  j->in_len = in_len;
  return j;
}

/* token_error: a job the token answered with an error. */
static int token_error(const pool *p, const char *call, CK_RV rv, kh_error *err) {
  char b[32];
  return kh_err(err, KH_ERR_UNAVAILABLE, "%s: PKCS#11 %s failed: %s", p->where, call,
                kh_p11_rv(rv, b, sizeof(b)));
}

static int sign_input(pool *p, const kh_p11_mech *mech, const uint8_t *in, size_t in_len,
                      uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  if (in_len > KH_P11_MAX_IN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "message of %zu bytes to sign (at most %d)", in_len,
                  KH_P11_MAX_IN);
  job *j = new_job(in, in_len, err);
  if (j == NULL) return 0;
  j->mech = *mech;
  if (!submit(p, j, err)) return 0;
  int ok;
  if (j->rv != CKR_OK) {
    ok = token_error(p, "C_Sign", j->rv, err);
  } else if (mech->ecdsa) {
    ok = kh_p11_ecdsa_der(p->type, j->out, j->out_len, out, out_len, max_out, err);
  } else if (j->out_len > max_out) {
    ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "signature needs %lu bytes, room for %zu",
                (unsigned long)j->out_len, max_out);
  } else {
    memcpy(out, j->out, j->out_len);
    *out_len = j->out_len;
    ok = 1;
  }
  job_free(j);
  return ok;
}

static int p11_sign_digest(void *impl, uint16_t sigalg, const uint8_t *digest, size_t digest_len,
                           uint8_t *out, size_t *out_len, size_t max_out, kh_error *err) {
  pool *p = impl;
  kh_p11_mech mech;
  uint8_t input[KH_P11_MAX_INPUT];
  size_t input_len = 0;
  if (!kh_p11_mech_for(p->type, sigalg, &mech, err) ||
      !kh_p11_sign_input(sigalg, digest, digest_len, input, &input_len, sizeof(input), err))
    return 0;
  return sign_input(p, &mech, input, input_len, out, out_len, max_out, err);
}

static int p11_sign(void *impl, uint16_t sigalg, const uint8_t *in, size_t in_len, uint8_t *out,
                    size_t *out_len, size_t max_out, kh_error *err) {
  pool *p = impl;
  const EVP_MD *md = SSL_get_signature_algorithm_digest(sigalg);
  if (md == NULL) { /* Ed25519: the whole message */
    kh_p11_mech mech;
    return kh_p11_mech_for(p->type, sigalg, &mech, err) &&
           sign_input(p, &mech, in, in_len, out, out_len, max_out, err);
  }
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (!EVP_Digest(in, in_len, digest, &n, md, NULL))
    return kh_err(err, KH_ERR_INTERNAL, "hashing for scheme 0x%04x failed", sigalg);
  return p11_sign_digest(impl, sigalg, digest, n, out, out_len, max_out, err);
}

/* p11_rsa_decrypt: RSA-OAEP with SHA-256 (or the raw operation for the
 * envelope's PKCS#1 v1.5 mode) on the token. A token that supports only
 * SHA-1 OAEP (SoftHSM 2.6) refuses the parameters: that is said plainly,
 * not mistaken for a bad envelope. */
static int p11_rsa_decrypt(void *impl, int oaep, const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t *out_len, size_t max_out, kh_error *err) {
  pool *p = impl;
  *out_len = 0;
  if (in_len > KH_P11_MAX_IN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the wrapped key does not decrypt");
  job *j = new_job(in, in_len, err);
  if (j == NULL) return 0;
  j->decrypt = 1;
  j->oaep = oaep;
  if (!submit(p, j, err)) return 0;
  CK_RV rv = j->rv;
  int ok = rv == CKR_OK && j->out_len <= max_out;
  if (ok) memcpy(out, j->out, j->out_len), *out_len = j->out_len;
  job_free(j);
  if (ok) return 1;
  char b[32];
  if (oaep &&
      (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_MECHANISM_INVALID))
    return kh_err(err, KH_ERR_FAILED_PRECONDITION,
                  "%s: the token does not do RSA-OAEP with SHA-256 (%s)", p->where,
                  kh_p11_rv(rv, b, sizeof(b)));
  /* As the file backend: one answer for anything the ciphertext causes. A
   * token that fails for its own reasons says so. */
  if (rv == CKR_OK || rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
      rv == CKR_DATA_LEN_RANGE || rv == CKR_FUNCTION_FAILED)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "the wrapped key does not decrypt");
  return token_error(p, "C_Decrypt", rv, err);
}

static EVP_PKEY *p11_public(void *impl, kh_error *err) {
  (void)err;
  pool *p = impl;
  EVP_PKEY_up_ref(p->pub); /* public only, never changed: shared */
  return p->pub;
}

static void p11_free(void *impl) {
  pool *p = impl;
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  pthread_cond_broadcast(&p->work);
  int none = p->live == 0;
  pthread_mutex_unlock(&p->mu);
  if (none) pool_destroy(p);
}

static const kh_key_ops k_p11_ops = {.name = "pkcs11",
                                     .sign = p11_sign,
                                     .sign_digest = p11_sign_digest,
                                     .public_key = p11_public,
                                     .rsa_decrypt = p11_rsa_decrypt,
                                     .free = p11_free};

/* --- loading -------------------------------------------------------------- */

/* read_pin: pin-source=file:PATH (or a plain absolute PATH): the file's
 * first line, into locked memory. Like key files, it must not be group- or
 * world-readable. */
static int read_pin(pool *p, const char *source, kh_error *err) {
  const char *path = strncmp(source, "file:", 5) == 0 ? source + 5 : source;
  if (path[0] != '/')
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: pin-source must be file:/ABSOLUTE/PATH (or /ABSOLUTE/PATH)", p->where);
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    return kh_err(err, KH_ERR_NOT_FOUND, "%s: cannot open the PIN file %s: %s", p->where, path,
                  strerror(errno));
  if (!kh_private_file_ok(fileno(fp), path, err)) {
    fclose(fp);
    return 0;
  }
  if ((p->pin = kh_secret_alloc(KH_P11_MAX_PIN + 1)) == NULL) {
    fclose(fp);
    return kh_err(err, KH_ERR_NOMEM, "out of memory");
  }
  size_t n = fread(p->pin, 1, KH_P11_MAX_PIN + 1, fp);
  fclose(fp);
  size_t len = 0;
  while (len < n && p->pin[len] != '\n' && p->pin[len] != '\r') len++;
  if (len > KH_P11_MAX_PIN || len == 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: the PIN file %s is %s", p->where, path,
                  len == 0 ? "empty" : "longer than 256 bytes");
  kh_wipe(p->pin + len, KH_P11_MAX_PIN + 1 - len);
  p->pin_len = len;
  return 1;
}

/* number: a vendor query attribute x-NAME from |lo| to |hi|, else |def|. */
static int number(pool *p, P11KitUri *uri, const char *name, unsigned lo, unsigned hi, unsigned def,
                  unsigned *out, kh_error *err) {
  const char *v = p11_kit_uri_get_vendor_query(uri, name);
  *out = def;
  if (v == NULL) return 1;
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s=%s: not a number from %u to %u", p->where,
                  name, v, lo, hi);
  *out = (unsigned)n;
  return 1;
}

static int get_attr(pool *p, CK_SESSION_HANDLE s, CK_ATTRIBUTE_TYPE type, void *buf, size_t max,
                    size_t *len) {
  CK_ATTRIBUTE a = {type, buf, max};
  if (p->f->C_GetAttributeValue(s, p->obj, &a, 1) != CKR_OK || a.ulValueLen == (CK_ULONG)-1)
    return 0;
  *len = a.ulValueLen;
  return 1;
}

/* find_key: the one private key object the URI's attributes match; its
 * type, which must be the certificate's. */
static int find_key(pool *p, P11KitUri *uri, CK_SESSION_HANDLE s, kh_error *err) {
  CK_ULONG n_uri = 0;
  CK_ATTRIBUTE *attrs = p11_kit_uri_get_attributes(uri, &n_uri);
  CK_ATTRIBUTE tmpl[8];
  CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
  CK_ULONG n = 0;
  int has_class = 0;
  for (CK_ULONG i = 0; i < n_uri && n < 7; i++) {
    if (attrs[i].type == CKA_CLASS) {
      has_class = 1;
      if (attrs[i].ulValueLen != sizeof(priv) || *(CK_OBJECT_CLASS *)attrs[i].pValue != priv)
        return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                      "%s: the PKCS#11 URI names an object of another type; tls.key needs "
                      "type=private",
                      p->where);
    }
    tmpl[n++] = attrs[i];
  }
  if (!has_class) tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &priv, sizeof(priv)};
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  char b[32];
  CK_RV rv = p->f->C_FindObjectsInit(s, tmpl, n);
  if (rv == CKR_OK) {
    rv = p->f->C_FindObjects(s, found, 2, &count);
    p->f->C_FindObjectsFinal(s);
  }
  if (rv != CKR_OK)
    return kh_err(err, KH_ERR_UNAVAILABLE, "%s: C_FindObjects: %s", p->where,
                  kh_p11_rv(rv, b, sizeof(b)));
  if (count == 0)
    return kh_err(err, KH_ERR_NOT_FOUND,
                  "%s: no private key on the token matches the PKCS#11 URI (object=, id=)",
                  p->where);
  if (count > 1)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: several private keys match the PKCS#11 URI; name one (object=, id=)",
                  p->where);
  p->obj = found[0];

  CK_KEY_TYPE kt;
  CK_BBOOL always = CK_FALSE;
  uint8_t params[64];
  size_t len = 0;
  if (!get_attr(p, s, CKA_KEY_TYPE, &kt, sizeof(kt), &len))
    return kh_err(err, KH_ERR_UNAVAILABLE, "%s: cannot read the key's CKA_KEY_TYPE", p->where);
  if (get_attr(p, s, CKA_ALWAYS_AUTHENTICATE, &always, sizeof(always), &len) && always)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: the key needs a PIN for every signature (CKA_ALWAYS_AUTHENTICATE): not "
                  "supported",
                  p->where);
  kh_key_type token_type;
  if (kt == CKK_RSA) {
    token_type = KH_KEY_RSA;
  } else if (kt == CKK_EC_EDWARDS) {
    token_type = KH_KEY_ED25519;
  } else if (kt == CKK_EC) {
    if (!get_attr(p, s, CKA_EC_PARAMS, params, sizeof(params), &len))
      return kh_err(err, KH_ERR_UNAVAILABLE, "%s: cannot read the key's CKA_EC_PARAMS", p->where);
    if (!kh_p11_ec_type(params, len, &token_type, err)) return 0;
  } else {
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: token key type 0x%lx is not supported (ECDSA, RSA, Ed25519)", p->where,
                  (unsigned long)kt);
  }
  if (token_type != p->type)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: the token key is %s, tls.crt certifies %s",
                  p->where, kh_key_type_name(token_type), kh_key_type_name(p->type));
  return 1;
}

/* prove: sign a random challenge on the token with the key's first scheme
 * and verify it with the certificate's key. */
static int prove(kh_key *k, pool *p, kh_error *err) {
  uint16_t sigalg;
  uint8_t challenge[32], sig[KH_MAX_SIGNATURE];
  size_t sig_len = 0;
  RAND_bytes(challenge, sizeof(challenge));
  if (kh_key_sigalgs(k, &sigalg, 1) != 1 ||
      !kh_key_sign(k, sigalg, challenge, sizeof(challenge), sig, &sig_len, sizeof(sig), err))
    return 0;
  EVP_MD_CTX ctx;
  EVP_PKEY_CTX *pctx = NULL;
  EVP_MD_CTX_init(&ctx);
  int ok =
      EVP_DigestVerifyInit(&ctx, &pctx, SSL_get_signature_algorithm_digest(sigalg), NULL, p->pub);
  if (ok && SSL_is_signature_algorithm_rsa_pss(sigalg))
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1);
  ok = ok && EVP_DigestVerify(&ctx, sig, sig_len, challenge, sizeof(challenge));
  EVP_MD_CTX_cleanup(&ctx);
  ERR_clear_error();
  return ok || kh_err(err, KH_ERR_INVALID_ARGUMENT,
                      "%s: the token key does not match the tls.crt leaf (a test signature did "
                      "not verify)",
                      p->where);
}

/* open_pool: the token's sessions, logged in, the key found, the threads
 * started. |p| is freed by the caller on failure only while no thread runs. */
static int open_pool(pool *p, P11KitUri *uri, unsigned sessions, kh_error *err) {
  char b[32];
  CK_TOKEN_INFO ti;
  const char *source = p11_kit_uri_get_pin_source(uri);
  if ((p->f = kh_p11_module_for(uri, p->where, err)) == NULL ||
      !kh_p11_find_token(p->f, uri, p->where, &p->slot, err))
    return 0;
  CK_RV rv = p->f->C_GetTokenInfo(p->slot, &ti);
  if (rv != CKR_OK)
    return kh_err(err, KH_ERR_UNAVAILABLE, "%s: C_GetTokenInfo: %s", p->where,
                  kh_p11_rv(rv, b, sizeof(b)));
  if (ti.flags & CKF_LOGIN_REQUIRED) {
    if (source == NULL)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                    "%s: the token needs a PIN: add ?pin-source=file:/PATH to the URI", p->where);
    if (!read_pin(p, source, err)) return 0;
  }
  CK_SESSION_HANDLE s[KH_P11_MAX_SESSIONS];
  unsigned opened = 0;
  for (; opened < sessions; opened++) {
    if ((rv = open_session(p, &s[opened])) != CKR_OK) break;
  }
  if (rv == CKR_OK && !find_key(p, uri, s[0], err))
    rv = CKR_GENERAL_ERROR;
  else if (rv != CKR_OK)
    kh_err(err,
           rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ? KH_ERR_PERMISSION_DENIED
                                                           : KH_ERR_UNAVAILABLE,
           "%s: PKCS#11 C_OpenSession/C_Login: %s", p->where, kh_p11_rv(rv, b, sizeof(b)));
  if (rv != CKR_OK) {
    while (opened > 0) p->f->C_CloseSession(s[--opened]);
    return 0;
  }
  for (unsigned i = 0; i < opened; i++) start_worker(p, s[i]); /* closes |s[i]| if it fails */
  if (p->live == 0) return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "%s: no threads", p->where);
  return 1;
}

/* cert_key_type: the type tls.crt certifies, which the token key must have. */
static int cert_key_type(pool *p, EVP_PKEY *cert_pub, kh_error *err) {
  char what[sizeof(p->where) + 32];
  snprintf(what, sizeof(what), "%s: tls.crt's key", p->where);
  return kh_key_type_of(cert_pub, what, &p->type, err);
}

kh_key *kh_key_pkcs11_load(const char *text, const char *where, EVP_PKEY *cert_pub, kh_error *err) {
  pool *p = calloc(1, sizeof(*p));
  P11KitUri *uri = p11_kit_uri_new();
  pthread_condattr_t ca;
  if (p == NULL || uri == NULL) {
    free(p);
    if (uri != NULL) p11_kit_uri_free(uri);
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->done, &ca);
  pthread_condattr_destroy(&ca);
  snprintf(p->where, sizeof(p->where), "%s", where);
  EVP_PKEY_up_ref(cert_pub);
  p->pub = cert_pub;
  unsigned sessions = 0;
  int rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, uri);
  if (rc != P11_KIT_URI_OK) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: not a PKCS#11 URI: %s", where,
           p11_kit_uri_message(rc));
  } else if (p11_kit_uri_any_unrecognized(uri)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: the PKCS#11 URI has an attribute we do not know",
           where);
  } else if (p11_kit_uri_get_pin_value(uri) != NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "%s: pin-value is not accepted: put the PIN in a 0600 file and name it with "
           "pin-source=file:/PATH",
           where);
  } else if (!cert_key_type(p, cert_pub, err)) {
  } else if (number(p, uri, "x-sessions", 1, KH_P11_MAX_SESSIONS, KH_P11_DEFAULT_SESSIONS,
                    &sessions, err) &&
             number(p, uri, "x-timeout-ms", 10, 600000, KH_P11_DEFAULT_TIMEOUT_MS, &p->timeout_ms,
                    err) &&
             open_pool(p, uri, sessions, err)) {
    p11_kit_uri_free(uri);
    kh_key *k = kh_key_new(&k_p11_ops, p, p->type, err); /* frees |p| on failure */
    if (k != NULL && !prove(k, p, err)) kh_key_free(k), k = NULL;
    if (k != NULL)
      kh_log(KH_LOG_INFO, "pkcs11: %s: %s key on token, %u sessions, timeout %u ms", where,
             kh_key_type_name(p->type), p->live, p->timeout_ms);
    return k;
  }
  p11_kit_uri_free(uri);
  if (p->live > 0)
    p11_free(p);
  else
    pool_destroy(p);
  return NULL;
}

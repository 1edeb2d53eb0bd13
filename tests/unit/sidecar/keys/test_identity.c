/* The sidecar's key store: loading kubernetes.io/tls directories, naming and
 * selecting identities, refusing broken ones. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "identity.h"
#include "testutil.h"

static char g_pki[256];

static void setup(void) {
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), "rsa ed25519 p384"));
}
static void teardown(void) {
  kh_test_rmtree(g_pki);
}

/* sh runs a shell command in which every '@' stands for the PKI directory. */
static void sh(const char *tmpl, const char *dir) {
  char cmd[4096];
  size_t n = 0;
  for (const char *p = tmpl; *p && n + 300 < sizeof(cmd); p++) {
    if (*p == '@') {
      n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, "%s", dir);
    } else {
      cmd[n++] = *p;
    }
  }
  cmd[n] = '\0';
  ck_assert_msg(system(cmd) == 0, "%s", cmd);
}

START_TEST(test_load_all_key_types_and_find) {
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  kh_identity_store *s = kh_identity_store_load(dir, &err);
  ck_assert_msg(s != NULL, "%s", err.msg);
  ck_assert_uint_eq(kh_identity_store_count(s), 5);
  kh_identity *id = kh_identity_store_find(s, "spiffe://example.org/server", &err);
  ck_assert(id != NULL);
  ck_assert_str_eq(kh_identity_name(id), "spiffe://example.org/server");
  ck_assert(kh_identity_store_find(s, "LOCALHOST", &err) == id); /* DNS SAN, any case */
  ck_assert(kh_identity_store_find(s, "rsa.example.org", &err) != NULL);
  ck_assert(kh_identity_store_find(s, "spiffe://example.org/ed25519", &err) != NULL);
  ck_assert(kh_identity_store_find(s, "spiffe://example.org/nobody", &err) == NULL);
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  ck_assert_str_eq(err.msg, "unknown local identity 'spiffe://example.org/nobody'");
  ck_assert(kh_identity_store_find(s, NULL, &err) == NULL); /* 5 loaded: must name one */
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  kh_identity_store_free(s);
}
END_TEST

START_TEST(test_sole_identity_is_default_and_hidden_entries_skipped) {
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/one", g_pki);
  sh("mkdir -p @/one/..data @/one/.hidden && cp -r @/ids/client @/one/ && touch @/one/README",
     g_pki);
  kh_identity_store *s = kh_identity_store_load(dir, &err);
  ck_assert_msg(s != NULL, "%s", err.msg);
  kh_identity *id = kh_identity_store_find(s, "", &err);
  ck_assert(id != NULL);
  ck_assert_str_eq(kh_identity_name(id), "spiffe://example.org/client");
  kh_identity_store_free(s);
}
END_TEST

START_TEST(test_sec1_and_pkcs1_keys) {
  kh_error err;
  char dir[512];
  sh("cp -r @/ids/p384 @/sec1 && openssl ec -in @/ids/p384/tls.key -out @/sec1/tls.key 2>/dev/null",
     g_pki);
  snprintf(dir, sizeof(dir), "%s/sec1", g_pki);
  kh_identity *id = kh_identity_load(dir, &err);
  ck_assert_msg(id != NULL, "SEC1: %s", err.msg);
  kh_identity_unref(id);
  sh("cp -r @/ids/rsa @/pkcs1 && openssl rsa -traditional -in @/ids/rsa/tls.key -out "
     "@/pkcs1/tls.key 2>/dev/null",
     g_pki);
  snprintf(dir, sizeof(dir), "%s/pkcs1/tls.key", g_pki);
  FILE *f = fopen(dir, "r");
  char line[64] = "";
  ck_assert(f && fgets(line, sizeof(line), f));
  fclose(f);
  ck_assert_msg(strstr(line, "BEGIN RSA PRIVATE KEY") != NULL, "%s", line);
  snprintf(dir, sizeof(dir), "%s/pkcs1", g_pki);
  id = kh_identity_load(dir, &err);
  ck_assert_msg(id != NULL, "PKCS#1: %s", err.msg);
  kh_identity_unref(id);
}
END_TEST

START_TEST(test_mismatched_key_rejected) {
  kh_error err;
  char dir[512];
  sh("cp -r @/ids/client @/mix && cp @/ids/server/tls.key @/mix/tls.key", g_pki);
  snprintf(dir, sizeof(dir), "%s/mix", g_pki);
  ck_assert(kh_identity_load(dir, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "does not match") != NULL, "%s", err.msg);
  ck_assert(strstr(err.msg, "BEGIN") == NULL); /* no key material in messages */
}
END_TEST

START_TEST(test_missing_and_garbage_files_rejected) {
  kh_error err;
  char dir[512];
  sh("cp -r @/ids/client @/nokey && rm @/nokey/tls.key", g_pki);
  snprintf(dir, sizeof(dir), "%s/nokey", g_pki);
  ck_assert(kh_identity_load(dir, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "tls.key") != NULL, "%s", err.msg);
  sh("cp -r @/ids/client @/junk && echo junk > @/junk/tls.crt", g_pki);
  snprintf(dir, sizeof(dir), "%s/junk", g_pki);
  ck_assert(kh_identity_load(dir, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "no valid PEM certificate") != NULL, "%s", err.msg);
  /* one broken identity fails the whole store at start-up, naming it */
  snprintf(dir, sizeof(dir), "%s", g_pki);
  sh("mkdir -p @/store && cp -r @/ids/client @/junk @/store/", g_pki);
  snprintf(dir, sizeof(dir), "%s/store", g_pki);
  ck_assert(kh_identity_store_load(dir, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "junk") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(test_small_rsa_rejected) {
  kh_error err;
  char dir[512];
  sh("mkdir -p @/rsa1024 && cp @/ca/ca.crt @/rsa1024/ca.crt && "
     "openssl req -x509 -newkey rsa:1024 -nodes -keyout @/rsa1024/tls.key -out @/rsa1024/tls.crt "
     "-subj /CN=small -addext subjectAltName=DNS:small.example.org -days 1 2>/dev/null",
     g_pki);
  snprintf(dir, sizeof(dir), "%s/rsa1024", g_pki);
  ck_assert(kh_identity_load(dir, &err) == NULL);
  ck_assert_msg(strstr(err.msg, "RSA key of 1024 bits (minimum 2048)") != NULL, "%s", err.msg);
}
END_TEST

/* verify_sig checks |sig| over |msg| with scheme |sigalg| against the public
 * key of |id|'s leaf certificate (not the key store's own key). */
static int verify_sig(const kh_identity *id, uint16_t sigalg, const uint8_t *msg, size_t msg_len,
                      const uint8_t *sig, size_t sig_len) {
  EVP_PKEY *pub = X509_get_pubkey(kh_identity_leaf(id));
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  EVP_PKEY_CTX *pctx = NULL;
  int ok = pub != NULL &&
           EVP_DigestVerifyInit(&ctx, &pctx, SSL_get_signature_algorithm_digest(sigalg), NULL, pub);
  if (ok && SSL_is_signature_algorithm_rsa_pss(sigalg))
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1);
  ok = ok && EVP_DigestVerify(&ctx, sig, sig_len, msg, msg_len) == 1;
  EVP_MD_CTX_cleanup(&ctx);
  EVP_PKEY_free(pub);
  ERR_clear_error();
  return ok;
}

START_TEST(test_sign_with_every_key_type) {
  static const struct {
    const char *name;
    kh_key_type type;
    size_t n_sigalgs;
    uint16_t first;
  } cases[] = {
      {"spiffe://example.org/client", KH_KEY_ECDSA_P256, 1, SSL_SIGN_ECDSA_SECP256R1_SHA256},
      {"spiffe://example.org/p384", KH_KEY_ECDSA_P384, 1, SSL_SIGN_ECDSA_SECP384R1_SHA384},
      {"spiffe://example.org/rsa", KH_KEY_RSA, 6, SSL_SIGN_RSA_PSS_RSAE_SHA256},
      {"spiffe://example.org/ed25519", KH_KEY_ED25519, 1, SSL_SIGN_ED25519},
  };
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  kh_identity_store *s = kh_identity_store_load(dir, &err);
  ck_assert_msg(s != NULL, "%s", err.msg);
  static const uint8_t msg[] = "TLS 1.3, server CertificateVerify\0...transcript hash...";
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    kh_identity *id = kh_identity_store_find(s, cases[i].name, &err);
    ck_assert_msg(id != NULL, "%s", err.msg);
    ck_assert_int_eq(kh_identity_key_type(id), cases[i].type);
    uint16_t algs[KH_MAX_SIGALGS];
    size_t n = kh_identity_sigalgs(id, algs, KH_MAX_SIGALGS);
    ck_assert_uint_eq(n, cases[i].n_sigalgs);
    ck_assert_uint_eq(algs[0], cases[i].first);
    for (size_t j = 0; j < n; j++) {
      uint8_t sig[KH_MAX_SIGNATURE];
      size_t sig_len = 0;
      ck_assert_msg(
          kh_identity_sign(id, algs[j], msg, sizeof(msg), sig, &sig_len, sizeof(sig), &err),
          "%s 0x%04x: %s", cases[i].name, algs[j], err.msg);
      ck_assert_msg(verify_sig(id, algs[j], msg, sizeof(msg), sig, sig_len), "%s 0x%04x",
                    cases[i].name, algs[j]);
      sig[sig_len / 2] ^= 1; /* a flipped bit does not verify */
      ck_assert(!verify_sig(id, algs[j], msg, sizeof(msg), sig, sig_len));
      /* too little room: refused, nothing claimed written */
      ck_assert(!kh_identity_sign(id, algs[j], msg, sizeof(msg), sig, &sig_len, 8, &err));
      ck_assert_uint_eq(sig_len, 0);
    }
    /* a scheme that does not fit the key is refused, naming the key type */
    uint16_t wrong =
        cases[i].type == KH_KEY_ED25519 ? SSL_SIGN_ECDSA_SECP256R1_SHA256 : SSL_SIGN_ED25519;
    uint8_t sig[KH_MAX_SIGNATURE];
    size_t sig_len;
    ck_assert(!kh_identity_sign(id, wrong, msg, sizeof(msg), sig, &sig_len, sizeof(sig), &err));
    ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err.msg, kh_key_type_name(cases[i].type)) != NULL, "%s", err.msg);
  }
  /* P-256 with the P-384 hash: the curve and hash go together in TLS 1.3 */
  kh_identity *p256 = kh_identity_store_find(s, "spiffe://example.org/client", &err);
  ck_assert(p256 != NULL);
  uint8_t sig[KH_MAX_SIGNATURE];
  size_t sig_len;
  ck_assert(!kh_identity_sign(p256, SSL_SIGN_ECDSA_SECP384R1_SHA384, msg, sizeof(msg), sig,
                              &sig_len, sizeof(sig), &err));
  kh_identity_store_free(s);
}
END_TEST

START_TEST(test_accessors) {
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids/server", g_pki);
  kh_identity *id = kh_identity_load(dir, &err);
  ck_assert_msg(id != NULL, "%s", err.msg);
  ck_assert_str_eq(kh_identity_dir_name(id), "server");
  ck_assert_str_eq(kh_identity_spiffe_id(id), "spiffe://example.org/server");
  ck_assert_uint_eq(kh_identity_dns_count(id), 1);
  ck_assert_str_eq(kh_identity_dns_name(id, 0), "localhost");
  ck_assert(kh_identity_dns_name(id, 1) == NULL);
  ck_assert_int_ge(sk_X509_num(kh_identity_chain(id)), 1);
  ck_assert(kh_identity_leaf(id) == sk_X509_value(kh_identity_chain(id), 0));
  ck_assert(kh_identity_trust(id) != NULL);
  uint8_t fp[KH_SHA256_LEN];
  unsigned fp_len = 0;
  ck_assert(X509_digest(kh_identity_leaf(id), EVP_sha256(), fp, &fp_len));
  ck_assert_mem_eq(kh_identity_fingerprint(id), fp, KH_SHA256_LEN);
  kh_identity_unref(id);
}
END_TEST

static int g_destroyed;
static void *make_value(const kh_identity *id, void *arg, kh_error *err) {
  (void)id, (void)err;
  return arg;
}
static void *make_nothing(const kh_identity *id, void *arg, kh_error *err) {
  (void)id, (void)arg;
  kh_err(err, KH_ERR_INTERNAL, "cannot build");
  return NULL;
}
static void destroy_value(void *v) {
  ck_assert(v == &g_destroyed);
  g_destroyed++;
}

START_TEST(test_attachment_built_once_and_freed_with_the_identity) {
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids/client", g_pki);
  kh_identity *id = kh_identity_load(dir, &err);
  ck_assert_msg(id != NULL, "%s", err.msg);
  ck_assert(kh_identity_attachment(id, KH_IDENTITY_SLOT_TLS_SERVER, make_nothing, destroy_value,
                                   NULL, &err) == NULL);
  ck_assert_str_eq(err.msg, "cannot build");
  g_destroyed = 0;
  void *v = kh_identity_attachment(id, KH_IDENTITY_SLOT_TLS_CLIENT, make_value, destroy_value,
                                   &g_destroyed, &err);
  ck_assert(v == &g_destroyed);
  /* attached: |make| is not called again */
  ck_assert(kh_identity_attachment(id, KH_IDENTITY_SLOT_TLS_CLIENT, make_nothing, destroy_value,
                                   NULL, &err) == v);
  kh_identity_ref(id);
  kh_identity_unref(id);
  ck_assert_int_eq(g_destroyed, 0);
  kh_identity_unref(id); /* the last reference */
  ck_assert_int_eq(g_destroyed, 1);
}
END_TEST

int main(void) {
  Suite *su = suite_create("identity");
  TCase *tc = tcase_create("identity");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_load_all_key_types_and_find);
  tcase_add_test(tc, test_sole_identity_is_default_and_hidden_entries_skipped);
  tcase_add_test(tc, test_sec1_and_pkcs1_keys);
  tcase_add_test(tc, test_mismatched_key_rejected);
  tcase_add_test(tc, test_missing_and_garbage_files_rejected);
  tcase_add_test(tc, test_small_rsa_rejected);
  tcase_add_test(tc, test_sign_with_every_key_type);
  tcase_add_test(tc, test_accessors);
  tcase_add_test(tc, test_attachment_built_once_and_freed_with_the_identity);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

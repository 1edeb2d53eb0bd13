/* The sidecar's key store: loading kubernetes.io/tls directories, naming and
 * selecting identities, refusing broken ones. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

/* sidecar/keys/verify: peer chains against the trust bundle, name
 * expectations, the grant's peer lists, and the DER-bytes form with
 * garbage; each refusal with its reason text and TLS alert. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "identity.h"
#include "testutil.h"
#include "verify.h"

static char g_pki[256];
static kh_identity *g_local; /* its ca.crt is the trust bundle */

static void setup(void) {
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), NULL));
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids/client", g_pki);
  g_local = kh_identity_load(dir, &err);
  ck_assert_msg(g_local != NULL, "%s", err.msg);
}

static void teardown(void) {
  kh_identity_unref(g_local);
  kh_test_rmtree(g_pki);
}

/* chain_of reads PEM certificates from files under the PKI, in order. */
static STACK_OF(X509) * chain_of(const char *a, const char *b) {
  STACK_OF(X509) *chain = sk_X509_new_null();
  const char *files[] = {a, b};
  for (size_t i = 0; i < 2 && files[i] != NULL; i++) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_pki, files[i]);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert(x != NULL && sk_X509_push(chain, x));
  }
  return chain;
}

static kh_verify_params params(kh_peer_role role) {
  return (kh_verify_params){
      .trust = kh_identity_trust(g_local), .peer_role = role, .policy_name = "client"};
}

/* refused: verification of |chain| under |p| fails with |reason| and |alert|. */
static void refused(const kh_verify_params *p, STACK_OF(X509) * chain, const char *reason,
                    uint8_t alert) {
  kh_error err = {0};
  uint8_t got = 0;
  kh_verified_peer peer;
  ck_assert_msg(!kh_verify_chain(p, chain, &peer, &got, &err), "accepted, wanted: %s", reason);
  ck_assert_str_eq(err.msg, reason);
  ck_assert_uint_eq(got, alert);
}

START_TEST(test_good_chain_gives_the_peer) {
  STACK_OF(X509) *chain = chain_of("ids/server/tls.crt", NULL);
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  char *expect[] = {"spiffe://example.org/nobody", "spiffe://example.org/server"};
  p.expect_peers = expect;
  p.expect_peer_count = 2;
  kh_verified_peer peer;
  uint8_t alert = 0;
  kh_error err;
  ck_assert_msg(kh_verify_chain(&p, chain, &peer, &alert, &err), "%s", err.msg);
  ck_assert_str_eq(peer.spiffe_id, "spiffe://example.org/server");
  ck_assert_uint_eq(peer.dns_count, 1);
  ck_assert_str_eq(peer.dns[0], "localhost");
  uint8_t fp[KH_SHA256_LEN];
  unsigned fp_len;
  ck_assert(X509_digest(sk_X509_value(chain, 0), EVP_sha256(), fp, &fp_len));
  ck_assert_mem_eq(peer.fingerprint, fp, KH_SHA256_LEN);
  kh_verified_peer_free(&peer);
  /* the leaf with the CA certificate after it verifies too; a client peer */
  sk_X509_pop_free(chain, X509_free);
  chain = chain_of("ids/client/tls.crt", "ca/ca.crt");
  p = params(KH_PEER_IS_CLIENT);
  ck_assert_msg(kh_verify_chain(&p, chain, NULL, &alert, &err), "%s", err.msg);
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

START_TEST(test_no_certificate) {
  kh_verify_params p = params(KH_PEER_IS_CLIENT);
  refused(&p, NULL, "peer sent no certificate", SSL_AD_CERTIFICATE_REQUIRED);
  STACK_OF(X509) *empty = sk_X509_new_null();
  refused(&p, empty, "peer sent no certificate", SSL_AD_CERTIFICATE_REQUIRED);
  sk_X509_free(empty);
}
END_TEST

START_TEST(test_wrong_ca) {
  STACK_OF(X509) *chain = chain_of("rogue/server.crt", NULL);
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  refused(&p, chain, "peer certificate rejected: unable to get local issuer certificate",
          SSL_AD_UNKNOWN_CA);
  sk_X509_pop_free(chain, X509_free);
  chain = chain_of("rogue/server.crt", "other-ca/ca.crt"); /* its own root does not help */
  refused(&p, chain, "peer certificate rejected: self signed certificate in certificate chain",
          SSL_AD_UNKNOWN_CA);
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

START_TEST(test_expired_and_not_yet_valid) {
  STACK_OF(X509) *chain = chain_of("ids/server/tls.crt", NULL);
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  p.at = time(NULL) + 60 * 86400; /* the test PKI's certificates last 30 days */
  refused(&p, chain, "peer certificate rejected: certificate has expired",
          SSL_AD_CERTIFICATE_EXPIRED);
  p.at = time(NULL) - 2 * 86400;
  refused(&p, chain, "peer certificate rejected: certificate is not yet valid",
          SSL_AD_CERTIFICATE_EXPIRED);
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

START_TEST(test_name_mismatch) {
  STACK_OF(X509) *chain = chain_of("ids/server/tls.crt", NULL);
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  char *expect[] = {"spiffe://example.org/other", "other.example.org"};
  p.expect_peers = expect;
  p.expect_peer_count = 2;
  p.server_name = "localhost"; /* not consulted: expected peers come first */
  refused(&p, chain, "peer spiffe://example.org/server is not one of the 2 expected peers",
          SSL_AD_BAD_CERTIFICATE);
  p.expect_peer_count = 0;
  p.server_name = "example.com";
  refused(&p, chain,
          "peer certificate (spiffe://example.org/server) does not match server name example.com",
          SSL_AD_BAD_CERTIFICATE);
  p.server_name = "10.0.0.1";
  refused(&p, chain,
          "peer certificate (spiffe://example.org/server) does not match server name 10.0.0.1",
          SSL_AD_BAD_CERTIFICATE);
  kh_error err;
  uint8_t alert;
  const char *good[] = {"localhost", "LOCALHOST", "127.0.0.1"};
  for (size_t i = 0; i < 3; i++) {
    p.server_name = good[i];
    ck_assert_msg(kh_verify_chain(&p, chain, NULL, &alert, &err), "%s: %s", good[i], err.msg);
  }
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

START_TEST(test_peer_check_refusal) {
  STACK_OF(X509) *chain = chain_of("ids/server/tls.crt", NULL);
  char *ids[] = {"spiffe://example.org/someone-else"};
  char *tds[] = {"example.org"};
  kh_peer_check only_other = {.spiffe_ids = {ids, 1}};
  kh_peer_check whole_domain = {.trust_domains = {tds, 1}};
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  p.peer_check = &only_other;
  refused(&p, chain, "peer spiffe://example.org/server is not allowed by the policy for client",
          SSL_AD_ACCESS_DENIED);
  kh_error err = {0};
  uint8_t alert = 0;
  ck_assert(!kh_verify_peer_check(&p, sk_X509_value(chain, 0), &alert, &err));
  ck_assert_str_eq(err.msg,
                   "peer spiffe://example.org/server is not allowed by the policy for client");
  ck_assert_uint_eq(alert, SSL_AD_ACCESS_DENIED);
  p.peer_check = &whole_domain;
  ck_assert_msg(kh_verify_chain(&p, chain, NULL, &alert, &err), "%s", err.msg);
  ck_assert(kh_verify_peer_check(&p, sk_X509_value(chain, 0), &alert, &err));
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

START_TEST(test_der_form) {
  STACK_OF(X509) *chain = chain_of("ids/server/tls.crt", "ca/ca.crt");
  uint8_t *der[2] = {NULL, NULL};
  size_t lens[2];
  for (size_t i = 0; i < 2; i++) {
    int n = i2d_X509(sk_X509_value(chain, i), &der[i]);
    ck_assert_int_gt(n, 0);
    lens[i] = (size_t)n;
  }
  const uint8_t *certs[2] = {der[0], der[1]};
  kh_verify_params p = params(KH_PEER_IS_SERVER);
  p.server_name = "localhost";
  kh_verified_peer peer;
  uint8_t alert = 0;
  kh_error err;
  ck_assert_msg(kh_verify_der(&p, certs, lens, 2, &peer, &alert, &err), "%s", err.msg);
  ck_assert_str_eq(peer.spiffe_id, "spiffe://example.org/server");
  kh_verified_peer_free(&peer);
  ck_assert_msg(kh_verify_der(&p, certs, lens, 1, NULL, &alert, &err), "%s", err.msg);

  /* garbage, a truncated certificate, one with a byte after it */
  static const uint8_t garbage[] = "\x30\x82\xff\xff not a certificate";
  const uint8_t *bad[2] = {der[0], garbage};
  size_t bad_lens[2] = {lens[0], sizeof(garbage)};
  ck_assert(!kh_verify_der(&p, bad, bad_lens, 2, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer certificate 1 is not a DER certificate");
  ck_assert_uint_eq(alert, SSL_AD_BAD_CERTIFICATE);
  bad_lens[0] = lens[0] - 1;
  ck_assert(!kh_verify_der(&p, certs, bad_lens, 1, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer certificate 0 is not a DER certificate");
  uint8_t *longer = malloc(lens[0] + 1);
  memcpy(longer, der[0], lens[0]);
  longer[lens[0]] = 0;
  const uint8_t *trailing[1] = {longer};
  size_t trailing_len[1] = {lens[0] + 1};
  ck_assert(!kh_verify_der(&p, trailing, trailing_len, 1, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer certificate 0 is not a DER certificate");
  free(longer);
  size_t zero = 0;
  ck_assert(!kh_verify_der(&p, bad, &zero, 1, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer certificate 0 is not a DER certificate");

  /* none, too many, too large */
  ck_assert(!kh_verify_der(&p, certs, lens, 0, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer sent no certificate");
  const uint8_t *many[KH_MAX_PEER_CHAIN + 1];
  size_t many_lens[KH_MAX_PEER_CHAIN + 1];
  for (size_t i = 0; i <= KH_MAX_PEER_CHAIN; i++) many[i] = der[0], many_lens[i] = lens[0];
  ck_assert(!kh_verify_der(&p, many, many_lens, KH_MAX_PEER_CHAIN + 1, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer chain of 17 certificates (at most 16)");
  ck_assert_uint_eq(alert, SSL_AD_DECODE_ERROR);
  size_t huge = KH_MAX_PEER_CERT + 1;
  ck_assert(!kh_verify_der(&p, certs, &huge, 1, NULL, &alert, &err));
  ck_assert_str_eq(err.msg, "peer certificate 0 is larger than 65536 bytes");

  /* the DER form refuses like the X509 form */
  p.server_name = "example.com";
  ck_assert(!kh_verify_der(&p, certs, lens, 2, NULL, &alert, &err));
  ck_assert_str_eq(
      err.msg,
      "peer certificate (spiffe://example.org/server) does not match server name example.com");
  OPENSSL_free(der[0]);
  OPENSSL_free(der[1]);
  sk_X509_pop_free(chain, X509_free);
}
END_TEST

int main(void) {
  Suite *su = suite_create("verify");
  TCase *tc = tcase_create("verify");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_good_chain_gives_the_peer);
  tcase_add_test(tc, test_no_certificate);
  tcase_add_test(tc, test_wrong_ca);
  tcase_add_test(tc, test_expired_and_not_yet_valid);
  tcase_add_test(tc, test_name_mismatch);
  tcase_add_test(tc, test_peer_check_refusal);
  tcase_add_test(tc, test_der_form);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

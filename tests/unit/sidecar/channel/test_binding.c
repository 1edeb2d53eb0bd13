/* sidecar/channel/binding: the identity binding of a Noise static key. A
 * binding written by one identity verifies under the shared CA and names
 * it; the same bytes fail for the other role, another static key, another
 * handshake hash, a flipped signature bit, a foreign CA; malformed payloads
 * (truncated, trailing bytes, bad magic, no certificate) are
 * INVALID_ARGUMENT, never a crash. */
#include <check.h>
#include <string.h>

#include "binding.h"
#include "identity.h"
#include "identity_fixture.h"
#include "testutil.h"

static kh_identity *g_client, *g_server;

static void setup(void) {
  kh_fixture_pki(NULL);
  g_client = kh_fixture_identity("client");
  g_server = kh_fixture_identity("server");
}

static void teardown(void) {
  kh_identity_unref(g_client);
  kh_identity_unref(g_server);
  kh_test_rmtree(kh_fixture_dir);
}

static const uint8_t k_pub[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
static const uint8_t k_h[32] = {0xaa, 0xbb, 0xcc};

/* verify: the client's binding |b| checked by the server's trust. */
static int verify(const kh_buf *b, int initiator, const uint8_t *pub, const uint8_t *h,
                  X509_STORE *trust, kh_error *err) {
  kh_verify_params p = {.trust = trust, .peer_role = KH_PEER_IS_CLIENT};
  kh_verified_peer peer;
  memset(&peer, 0, sizeof(peer));
  int ok = kh_binding_verify(&p, initiator, pub, h, 32, b->data, b->len, &peer, err);
  if (ok) {
    ck_assert_str_eq(peer.spiffe_id, "spiffe://example.org/client");
    kh_verified_peer_free(&peer);
  }
  return ok;
}

START_TEST(test_round_trip_and_what_it_binds) {
  kh_buf b = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_binding_write(g_client, 1, k_pub, k_h, sizeof(k_h), &b, &err));
  X509_STORE *trust = kh_identity_trust(g_server);
  ck_assert_msg(verify(&b, 1, k_pub, k_h, trust, &err), "%s", err.msg);
  ck_assert(!verify(&b, 0, k_pub, k_h, trust, &err)); /* the other role */
  ck_assert_int_eq(err.code, KH_ERR_UNAUTHENTICATED);
  uint8_t pub2[32] = {9};
  ck_assert(!verify(&b, 1, pub2, k_h, trust, &err)); /* another static key */
  ck_assert_int_eq(err.code, KH_ERR_UNAUTHENTICATED);
  uint8_t h2[32] = {0xab};
  ck_assert(!verify(&b, 1, k_pub, h2, trust, &err)); /* another handshake */
  ck_assert_str_eq(err.msg,
                   "the peer's binding signature does not verify (its certificate key "
                   "did not sign this handshake and static key)");
  b.data[8] ^= 1; /* inside the signature */
  ck_assert(!verify(&b, 1, k_pub, k_h, trust, &err));
  ck_assert_int_eq(err.code, KH_ERR_UNAUTHENTICATED);
  kh_buf_free(&b);
}
END_TEST

START_TEST(test_foreign_ca) {
  kh_buf b = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_binding_write(g_client, 1, k_pub, k_h, sizeof(k_h), &b, &err));
  char path[512];
  snprintf(path, sizeof(path), "%s/other-ca/ca.crt", kh_fixture_dir);
  X509_STORE *other = X509_STORE_new();
  ck_assert(X509_STORE_load_locations(other, path, NULL));
  ck_assert(!verify(&b, 1, k_pub, k_h, other, &err));
  ck_assert_int_eq(err.code, KH_ERR_UNAUTHENTICATED);
  X509_STORE_free(other);
  kh_buf_free(&b);
}
END_TEST

START_TEST(test_malformed) {
  kh_buf b = KH_BUF_INIT;
  kh_error err;
  ck_assert(kh_binding_write(g_client, 1, k_pub, k_h, sizeof(k_h), &b, &err));
  X509_STORE *trust = kh_identity_trust(g_server);
  kh_buf cut = b;
  for (size_t n = 0; n < b.len; n += 97) { /* every truncation point class */
    cut.len = n;
    ck_assert(!verify(&cut, 1, k_pub, k_h, trust, &err));
    ck_assert_msg(err.code == KH_ERR_INVALID_ARGUMENT, "len %zu: %s", n, err.msg);
  }
  ck_assert(kh_buf_reserve(&b, 1));
  b.data[b.len++] = 0; /* trailing byte */
  ck_assert(!verify(&b, 1, k_pub, k_h, trust, &err));
  ck_assert_str_eq(err.msg, "trailing bytes after the peer's binding");
  b.len--;
  b.data[0] = 'X'; /* magic */
  ck_assert(!verify(&b, 1, k_pub, k_h, trust, &err));
  ck_assert_str_eq(err.msg, "the peer's identity binding is malformed");
  kh_buf_free(&b);
}
END_TEST

int main(void) {
  Suite *su = suite_create("binding");
  TCase *tc = tcase_create("binding");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_round_trip_and_what_it_binds);
  tcase_add_test(tc, test_foreign_ca);
  tcase_add_test(tc, test_malformed);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

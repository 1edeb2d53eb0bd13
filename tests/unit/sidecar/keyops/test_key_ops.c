/* sidecar/keyops/key_ops: GetPublicKeys gives the identity's sealing key; a
 * box sealed to it (libsodium, as any sender) opens to the same bytes; an
 * altered, short, mis-addressed or oversized box and a malformed request
 * fail with their codes; a policy without `open-sealed` refuses. */
#include <check.h>
#include <sodium.h>
#include <string.h>

#include "keyhold/v1/key_ops.pb-c.h"
#include "key_ops.h"
#include "policy.h"
#include "testutil.h"

static char g_pki[256];
static kh_identity_store *g_store;
static const kh_caller k_caller = {.uid = 1000, .gid = 1000, .pid = 7};

static void setup(void) {
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), NULL));
  char dir[512];
  kh_error err;
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  g_store = kh_identity_store_load(dir, &err);
  ck_assert_msg(g_store != NULL, "%s", err.msg);
}

static void teardown(void) {
  kh_identity_store_free(g_store);
  kh_test_rmtree(g_pki);
}

static int call(kh_policy_slot *slot, kh_keyop op, const uint8_t *req, size_t len, kh_buf *resp,
                kh_error *err) {
  kh_keyops_env env = {.store = g_store, .policy = slot};
  char id[300];
  kh_buf_reset(resp);
  return kh_keyop_handle(&env, &k_caller, op, req, len, resp, id, sizeof(id), err);
}

static void sealing_key(uint8_t pk[32]) {
  Keyhold__V1__PublicKeysRequest q = KEYHOLD__V1__PUBLIC_KEYS_REQUEST__INIT;
  q.local_identity = "spiffe://example.org/client";
  uint8_t req[256];
  size_t n = keyhold__v1__public_keys_request__pack(&q, req);
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  ck_assert_msg(call(NULL, KH_KEYOP_PUBLIC_KEYS, req, n, &resp, &err), "%s", err.msg);
  Keyhold__V1__PublicKeysResponse *r =
      keyhold__v1__public_keys_response__unpack(NULL, resp.len, resp.data);
  ck_assert_ptr_nonnull(r);
  ck_assert_str_eq(r->identity, "spiffe://example.org/client");
  ck_assert_uint_eq(r->sealing_key.len, 32);
  memcpy(pk, r->sealing_key.data, 32);
  keyhold__v1__public_keys_response__free_unpacked(r, NULL);
  kh_buf_free(&resp);
}

/* open_req: an OpenSealedRequest for the client identity around |box|. */
static size_t open_req(const uint8_t *box, size_t len, uint8_t **out) {
  Keyhold__V1__OpenSealedRequest q = KEYHOLD__V1__OPEN_SEALED_REQUEST__INIT;
  q.local_identity = "spiffe://example.org/client";
  q.sealed.data = (uint8_t *)box;
  q.sealed.len = len;
  size_t n = keyhold__v1__open_sealed_request__get_packed_size(&q);
  *out = malloc(n);
  return keyhold__v1__open_sealed_request__pack(&q, *out);
}

START_TEST(test_seal_then_open) {
  ck_assert_int_ge(sodium_init(), 0);
  uint8_t pk[32], box[64 + crypto_box_SEALBYTES];
  sealing_key(pk);
  const char *msg = "meet me at the usual place, 9pm";
  size_t mlen = strlen(msg);
  ck_assert_int_eq(crypto_box_seal(box, (const uint8_t *)msg, mlen, pk), 0);
  uint8_t *req;
  size_t n = open_req(box, mlen + crypto_box_SEALBYTES, &req);
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  ck_assert_msg(call(NULL, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err), "%s", err.msg);
  Keyhold__V1__OpenSealedResponse *r =
      keyhold__v1__open_sealed_response__unpack(NULL, resp.len, resp.data);
  ck_assert_ptr_nonnull(r);
  ck_assert_uint_eq(r->plaintext.len, mlen);
  ck_assert_mem_eq(r->plaintext.data, msg, mlen);
  keyhold__v1__open_sealed_response__free_unpacked(r, NULL);
  free(req);

  box[40] ^= 1; /* altered */
  n = open_req(box, mlen + crypto_box_SEALBYTES, &req);
  ck_assert(!call(NULL, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "altered, truncated, or sealed to another key"));
  ck_assert_uint_eq(resp.len, 0);
  free(req);
  n = open_req(box, 20, &req); /* shorter than a sealed box can be */
  ck_assert(!call(NULL, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err));
  ck_assert_str_eq(err.msg, "sealed message too short: 20 bytes, a sealed box has at least 48");
  free(req);
  uint8_t other_pk[32], other_sk[32];
  crypto_box_keypair(other_pk, other_sk);
  ck_assert_int_eq(crypto_box_seal(box, (const uint8_t *)msg, mlen, other_pk), 0);
  n = open_req(box, mlen + crypto_box_SEALBYTES, &req); /* mis-addressed */
  ck_assert(!call(NULL, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err));
  ck_assert_int_eq(err.code, KH_ERR_INVALID_ARGUMENT);
  free(req);
  kh_buf_free(&resp);
}
END_TEST

START_TEST(test_limits_and_garbage) {
  uint8_t *big = calloc(1, KH_SEALED_MAX + 1), *req;
  size_t n = open_req(big, KH_SEALED_MAX + 1, &req);
  kh_buf resp = KH_BUF_INIT;
  kh_error err;
  ck_assert(!call(NULL, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err));
  ck_assert_int_eq(err.code, KH_ERR_RESOURCE_EXHAUSTED);
  free(req);
  free(big);
  const uint8_t junk[] = {0x1a, 0x7f, 0x00};
  ck_assert(!call(NULL, KH_KEYOP_OPEN_SEALED, junk, sizeof(junk), &resp, &err));
  ck_assert_str_eq(err.msg, "malformed OpenSealedRequest");
  ck_assert(!call(NULL, KH_KEYOP_PUBLIC_KEYS, junk, sizeof(junk), &resp, &err));
  ck_assert_str_eq(err.msg, "malformed PublicKeysRequest");
  kh_buf_free(&resp);
}
END_TEST

START_TEST(test_needs_the_grant) {
  const char *p =
      "identities:\n  client:\n    callers: {uids: [1000]}\n"
      "    operations: [tls-offload]\n";
  kh_config cfg;
  kh_config_init(&cfg);
  kh_error err;
  kh_grants *g = kh_policy_parse("p.yaml", p, strlen(p), &cfg, &err);
  ck_assert_msg(g != NULL, "%s", err.msg);
  kh_policy_slot *slot = kh_policy_slot_new(g);
  uint8_t *req, box[60] = {0};
  size_t n = open_req(box, sizeof(box), &req);
  kh_buf resp = KH_BUF_INIT;
  ck_assert(!call(slot, KH_KEYOP_OPEN_SEALED, req, n, &resp, &err));
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_str_eq(err.msg,
                   "caller uid 1000 may not use identity 'spiffe://example.org/client' "
                   "for KeyOperations.OpenSealed (needs the 'open-sealed' grant)");
  free(req);
  kh_buf_free(&resp);
  kh_policy_slot_free(slot);
  kh_config_cleanup(&cfg);
}
END_TEST

int main(void) {
  Suite *su = suite_create("key_ops");
  TCase *tc = tcase_create("key_ops");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_seal_then_open);
  tcase_add_test(tc, test_limits_and_garbage);
  tcase_add_test(tc, test_needs_the_grant);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}

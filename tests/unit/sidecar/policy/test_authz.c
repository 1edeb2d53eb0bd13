/* sidecar/policy/authz: the one decision. Grants by uid, by primary gid and
 * by token; unknown identities and the "*" rule; the grant carries the
 * rule's peers, ALPN and suites; admits() at accept time; refusals worded
 * exactly as docs/POLICY.md says. */
#include <check.h>
#include <string.h>

#include "authz.h"
#include "policy.h"
#include "testutil.h"

#define TOKEN "s3cret-token-0123456789"

static const char *k_policy =
    "identities:\n"
    "  server:\n"
    "    callers:\n"
    "      uids: [1000]\n"
    "      gids: [2000]\n"
    "    peers:\n"
    "      spiffe_ids: [spiffe://example.org/client]\n"
    "    alpn: [h2, http/1.1]\n"
    "    ciphersuites: [AES_128_GCM_SHA256, CHACHA20_POLY1305_SHA256]\n"
    "  tokened:\n"
    "    callers: {tokens: [\"" TOKEN
    "\"]}\n"
    "  \"*\":\n"
    "    callers: {uids: [3000]}\n";

static kh_config g_cfg;
static kh_grants *g_grants;

static void setup(void) {
  kh_error err;
  kh_config_init(&g_cfg);
  g_grants = kh_policy_parse("p.yaml", k_policy, strlen(k_policy), &g_cfg, &err);
  ck_assert_msg(g_grants != NULL, "%s", err.msg);
}

static void teardown(void) {
  kh_grants_free(g_grants);
  kh_config_cleanup(&g_cfg);
}

static int decide(const kh_caller *c, const char *const *tokens, size_t n, const char *identity,
                  kh_grant *out, kh_error *err) {
  return kh_authz_decide(g_grants, c, tokens, n, KH_OP_TLS_CLIENT_HANDSHAKE, identity, out, err);
}

START_TEST(test_uid_grant) {
  kh_caller c = {.uid = 1000, .gid = 1, .pid = 7};
  kh_grant g;
  kh_error err;
  ck_assert_msg(decide(&c, NULL, 0, "server", &g, &err), "%s", err.msg);
  ck_assert_str_eq(g.identity, "server");
  ck_assert_int_eq(g.op, KH_OP_TLS_CLIENT_HANDSHAKE);
  /* The same rule grants the server side. */
  ck_assert(kh_authz_decide(g_grants, &c, NULL, 0, KH_OP_TLS_SERVER_HANDSHAKE, "server", &g, &err));
  ck_assert_int_eq(g.op, KH_OP_TLS_SERVER_HANDSHAKE);
}
END_TEST

START_TEST(test_gid_grant) {
  kh_caller by_gid = {.uid = 5, .gid = 2000}, other_gid = {.uid = 5, .gid = 2001};
  kh_grant g;
  kh_error err;
  ck_assert(decide(&by_gid, NULL, 0, "server", &g, &err));
  ck_assert(!decide(&other_gid, NULL, 0, "server", &g, &err));
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_str_eq(err.msg, "caller uid 5 may not use identity 'server'");
}
END_TEST

START_TEST(test_token_grant) {
  kh_caller nobody = {.uid = 4242, .gid = 4242};
  const char *good[] = {"wrong-token-xxxxxxxxxx", TOKEN}, *bad[] = {"wrong-token-xxxxxxxxxx"},
             *prefix[] = {"s3cret-token-012345678"};
  kh_grant g;
  kh_error err;
  ck_assert(decide(&nobody, good, 2, "tokened", &g, &err));
  ck_assert_str_eq(g.identity, "tokened");
  ck_assert(!decide(&nobody, bad, 1, "tokened", &g, &err));
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_str_eq(err.msg,
                   "caller uid 4242 may not use identity 'tokened' (the access token presented "
                   "does not grant it)");
  ck_assert(!decide(&nobody, prefix, 1, "tokened", &g, &err));
  ck_assert(!decide(&nobody, NULL, 0, "tokened", &g, &err));
  ck_assert_str_eq(err.msg, "caller uid 4242 may not use identity 'tokened'");
  /* A token grants only the identity whose rule lists it. */
  ck_assert(!decide(&nobody, good, 2, "server", &g, &err));
}
END_TEST

START_TEST(test_unknown_identity_and_star_rule) {
  kh_caller star = {.uid = 3000, .gid = 1}, by_uid = {.uid = 1000, .gid = 1};
  kh_grant g;
  kh_error err;
  /* "*" covers identities without a rule of their own... */
  ck_assert(decide(&star, NULL, 0, "no-such-identity", &g, &err));
  ck_assert_str_eq(g.identity, "no-such-identity");
  ck_assert_uint_eq(g.n_alpn, 0);
  ck_assert_uint_eq(g.suites, 0);
  ck_assert(kh_peer_check_allows(g.peer_check, "spiffe://anything.example/x", NULL, 0));
  /* ...not those that have one. */
  ck_assert(!decide(&star, NULL, 0, "server", &g, &err));
  ck_assert(!decide(&by_uid, NULL, 0, "no-such-identity", &g, &err));
  ck_assert_str_eq(err.msg, "caller uid 1000 may not use identity 'no-such-identity'");

  /* Without a "*" rule an unnamed identity is nobody's. */
  kh_config cfg;
  kh_config_init(&cfg);
  static const char text[] = "identities: {web: {callers: {uids: [1000]}}}\n";
  kh_grants *only_web = kh_policy_parse("q.yaml", text, strlen(text), &cfg, &err);
  ck_assert_ptr_nonnull(only_web);
  ck_assert(
      kh_authz_decide(only_web, &by_uid, NULL, 0, KH_OP_TLS_SERVER_HANDSHAKE, "web", &g, &err));
  ck_assert(
      !kh_authz_decide(only_web, &by_uid, NULL, 0, KH_OP_TLS_SERVER_HANDSHAKE, "other", &g, &err));
  ck_assert_str_eq(err.msg, "caller uid 1000 may not use identity 'other'");
  kh_grants_free(only_web);
  kh_config_cleanup(&cfg);
}
END_TEST

/* The grant carries the rule's narrowing as plain data. */
START_TEST(test_grant_narrows_alpn_suites_peers) {
  kh_caller c = {.uid = 1000};
  kh_grant g;
  kh_error err;
  ck_assert(decide(&c, NULL, 0, "server", &g, &err));
  ck_assert_uint_eq(g.n_alpn, 2);
  ck_assert_str_eq(g.alpn[0], "h2");
  ck_assert_str_eq(g.alpn[1], "http/1.1");
  ck_assert_uint_eq(g.suites, KH_SUITE_BIT(KH_SUITE_AES_128_GCM_SHA256) |
                                  KH_SUITE_BIT(KH_SUITE_CHACHA20_POLY1305_SHA256));
  ck_assert_ptr_nonnull(g.peer_check);
  ck_assert(kh_peer_check_allows(g.peer_check, "spiffe://example.org/client", NULL, 0));
  ck_assert(!kh_peer_check_allows(g.peer_check, "spiffe://example.org/other", NULL, 0));
}
END_TEST

START_TEST(test_admits) {
  kh_caller by_uid = {.uid = 1000, .gid = 9}, by_gid = {.uid = 9, .gid = 2000},
            star = {.uid = 3000, .gid = 9}, nobody = {.uid = 4242, .gid = 4242};
  /* A rule takes tokens, so anyone could be granted by one: admitted. */
  ck_assert(kh_authz_admits(g_grants, &nobody));
  ck_assert(kh_authz_admits(g_grants, &by_uid));

  kh_config cfg;
  kh_config_init(&cfg);
  kh_error err;
  static const char text[] =
      "identities: {web: {callers: {uids: [1000], gids: [2000]}}, \"*\": {callers: {uids: "
      "[3000]}}}\n";
  kh_grants *no_tokens = kh_policy_parse("q.yaml", text, strlen(text), &cfg, &err);
  ck_assert_msg(no_tokens != NULL, "%s", err.msg);
  ck_assert(kh_authz_admits(no_tokens, &by_uid));
  ck_assert(kh_authz_admits(no_tokens, &by_gid));
  ck_assert(kh_authz_admits(no_tokens, &star));
  ck_assert(!kh_authz_admits(no_tokens, &nobody));
  kh_grants_free(no_tokens);
  kh_config_cleanup(&cfg);
}
END_TEST

/* operations: a rule may grant only some operations; none listed: all. */
START_TEST(test_operations) {
  const char *text =
      "identities:\n"
      "  signer:\n"
      "    callers: {uids: [1000]}\n"
      "    operations: [sign, validate]\n"
      "  web:\n"
      "    callers: {uids: [1000]}\n";
  kh_config cfg;
  kh_config_init(&cfg);
  kh_error err;
  kh_grants *g = kh_policy_parse("q.yaml", text, strlen(text), &cfg, &err);
  ck_assert_msg(g != NULL, "%s", err.msg);
  kh_caller c = {.uid = 1000, .gid = 1};
  kh_grant out;
  ck_assert(kh_authz_decide(g, &c, NULL, 0, KH_OP_SIGN, "signer", &out, &err));
  ck_assert(kh_authz_decide(g, &c, NULL, 0, KH_OP_TLS_CONFIG, "signer", &out, &err));
  ck_assert(kh_authz_decide(g, &c, NULL, 0, KH_OP_VALIDATE, "signer", &out, &err));
  ck_assert(!kh_authz_decide(g, &c, NULL, 0, KH_OP_TICKET_KEYS, "signer", &out, &err));
  ck_assert(!kh_authz_decide(g, &c, NULL, 0, KH_OP_TLS_CLIENT_HANDSHAKE, "signer", &out, &err));
  ck_assert_str_eq(err.msg, "caller uid 1000 may not use identity 'signer'");
  for (int op = KH_OP_TLS_CLIENT_HANDSHAKE; op <= KH_OP_TICKET_KEYS; op++)
    ck_assert(kh_authz_decide(g, &c, NULL, 0, (kh_operation)op, "web", &out, &err));
  ck_assert_str_eq(kh_grant_name(kh_operation_grant(KH_OP_TLS_SERVER_HANDSHAKE)), "tls-offload");
  ck_assert_uint_eq(kh_grant_from_name("ticket-keys"), KH_GRANT_TICKET_KEYS);
  kh_grants_free(g);
  const char *bad =
      "identities:\n"
      "  web:\n"
      "    callers: {uids: [1000]}\n"
      "    operations: [sign, decrypt]\n";
  ck_assert_ptr_null(kh_policy_parse("q.yaml", bad, strlen(bad), &cfg, &err));
  ck_assert_str_eq(err.msg,
                   "q.yaml:4:24: identities.web.operations[1]: unknown operation "
                   "'decrypt' (tls-offload, sign, validate, ticket-keys, secure-channel, "
                   "open-sealed, dpop, legacy-pkcs1v15)");
  kh_config_cleanup(&cfg);
}
END_TEST

START_TEST(test_builtin_is_own_uid_only) {
  kh_grants *g = kh_grants_builtin(1234);
  kh_caller me = {.uid = 1234}, other = {.uid = 99};
  kh_grant grant;
  kh_error err;
  ck_assert(kh_authz_admits(g, &me));
  ck_assert(!kh_authz_admits(g, &other));
  ck_assert(kh_authz_decide(g, &me, NULL, 0, KH_OP_TLS_CLIENT_HANDSHAKE, "anything", &grant, &err));
  ck_assert_uint_eq(grant.n_alpn, 0);
  ck_assert_uint_eq(grant.suites, 0);
  ck_assert(
      !kh_authz_decide(g, &other, NULL, 0, KH_OP_TLS_CLIENT_HANDSHAKE, "anything", &grant, &err));
  ck_assert_str_eq(err.msg, "caller uid 99 may not use identity 'anything'");
  kh_grants_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("authz");
  TCase *tc = tcase_create("decide");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_uid_grant);
  tcase_add_test(tc, test_gid_grant);
  tcase_add_test(tc, test_token_grant);
  tcase_add_test(tc, test_unknown_identity_and_star_rule);
  tcase_add_test(tc, test_grant_narrows_alpn_suites_peers);
  tcase_add_test(tc, test_admits);
  tcase_add_test(tc, test_operations);
  tcase_add_test(tc, test_builtin_is_own_uid_only);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

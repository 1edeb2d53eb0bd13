/* The policy file: precise errors (file:line:col: field: reason), grants by
 * uid, gid and token, peer lists and DNS wildcards, the built-in default. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "testutil.h"

#define TOKEN "s3cret-token-0123456789"

static const char *k_good =
    "# a complete policy\n"
    "socket:\n"
    "  path: /run/keyhold/keyholdd.sock\n"
    "  mode: \"0660\"\n"
    "  group: 0\n"
    "identities_dir: /etc/keyhold/identities\n"
    "limits:\n"
    "  max_handshakes_per_caller: 8\n"
    "  handshake_timeout_ms: 2500\n"
    "identities:\n"
    "  server:\n"
    "    callers:\n"
    "      uids: [1000, root]\n"
    "      gids: [2000]\n"
    "      tokens: [\"" TOKEN
    "\"]\n"
    "    peers:\n"
    "      spiffe_ids: [spiffe://example.org/client]\n"
    "      trust_domains: [partner.example]\n"
    "      dns: [\"*.example.org\", localhost]\n"
    "    alpn: [h2, http/1.1]\n"
    "    tls_versions: [\"1.3\"]\n"
    "    ciphersuites: [AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256]\n"
    "  \"*\":\n"
    "    callers: {uids: [3000]}\n";

static kh_policy *parse(const char *text, kh_error *err) {
  return kh_policy_parse("p.yaml", text, strlen(text), err);
}

START_TEST(test_complete_policy) {
  kh_error err;
  kh_policy *p = parse(k_good, &err);
  ck_assert_msg(p != NULL, "%s", err.msg);
  ck_assert_str_eq(p->socket_path, "/run/keyhold/keyholdd.sock");
  ck_assert_int_eq(p->socket_mode, 0660);
  ck_assert_int_eq(p->has_socket_gid, 1);
  ck_assert_uint_eq(p->limits.max_handshakes_per_caller, 8);
  ck_assert_uint_eq(p->limits.handshake_timeout_ms, 2500);
  const kh_policy_rule *r = kh_policy_rule_for(p, "server");
  ck_assert_str_eq(r->name, "server");
  ck_assert_uint_eq(r->n_uids, 2);
  ck_assert_uint_eq(r->uids[1], 0);
  ck_assert_uint_eq(r->suites, KH_SUITE_BIT(0) | KH_SUITE_BIT(2));
  ck_assert_uint_eq(r->alpn.n, 2);
  ck_assert_str_eq(kh_policy_rule_for(p, "other")->name, "*");
  kh_policy_free(p);
}
END_TEST

START_TEST(test_authorize) {
  kh_error err;
  kh_policy *p = parse(k_good, &err);
  ck_assert_ptr_nonnull(p);
  kh_caller by_uid = {.uid = 1000, .gid = 1}, by_gid = {.uid = 5, .gid = 2000},
            nobody = {.uid = 4242, .gid = 4242}, star = {.uid = 3000, .gid = 1};
  const char *good[] = {"wrong-token-xxxxxxxxxx", TOKEN}, *bad[] = {"wrong-token-xxxxxxxxxx"};
  ck_assert(kh_policy_authorize(p, "server", &by_uid, NULL, 0, &err));
  ck_assert(kh_policy_authorize(p, "server", &by_gid, NULL, 0, &err));
  ck_assert(kh_policy_authorize(p, "server", &nobody, good, 2, &err));
  ck_assert(!kh_policy_authorize(p, "server", &nobody, bad, 1, &err));
  ck_assert_int_eq(err.code, KH_ERR_PERMISSION_DENIED);
  ck_assert_str_eq(err.msg,
                   "caller uid 4242 may not use identity 'server' (the access token presented "
                   "does not grant it)");
  ck_assert(!kh_policy_authorize(p, "server", &nobody, NULL, 0, &err));
  ck_assert_str_eq(err.msg, "caller uid 4242 may not use identity 'server'");
  /* "*" covers identities without their own rule, not "server". */
  ck_assert(kh_policy_authorize(p, "client", &star, NULL, 0, &err));
  ck_assert(!kh_policy_authorize(p, "server", &star, NULL, 0, &err));
  ck_assert(!kh_policy_authorize(p, "client", &by_uid, NULL, 0, &err));
  kh_policy_free(p);
}
END_TEST

START_TEST(test_builtin_is_own_uid_only) {
  kh_error err;
  kh_policy *p = kh_policy_builtin(1234);
  kh_caller me = {.uid = 1234}, other = {.uid = 99};
  ck_assert(kh_policy_admits(p, &me));
  ck_assert(!kh_policy_admits(p, &other));
  ck_assert(kh_policy_authorize(p, "anything", &me, NULL, 0, &err));
  ck_assert(!kh_policy_authorize(p, "anything", &other, NULL, 0, &err));
  ck_assert_str_eq(err.msg, "caller uid 99 may not use identity 'anything'");
  kh_policy_free(p);
}
END_TEST

START_TEST(test_peers_and_wildcards) {
  kh_error err;
  kh_policy *p = parse(k_good, &err);
  const kh_policy_rule *r = kh_policy_rule_for(p, "server");
  char *dns_ok[] = {"api.example.org"}, *dns_deep[] = {"a.b.example.org"},
       *dns_bare[] = {"example.org"}, *local[] = {"LOCALHOST"};
  ck_assert(kh_peer_check_allows(&r->peers, "spiffe://example.org/client", NULL, 0));
  ck_assert(!kh_peer_check_allows(&r->peers, "spiffe://example.org/clientX", NULL, 0));
  ck_assert(kh_peer_check_allows(&r->peers, "spiffe://partner.example/any/path", NULL, 0));
  ck_assert(!kh_peer_check_allows(&r->peers, "spiffe://partner.example.evil/x", NULL, 0));
  ck_assert(kh_peer_check_allows(&r->peers, NULL, dns_ok, 1));
  ck_assert(!kh_peer_check_allows(&r->peers, NULL, dns_deep, 1));
  ck_assert(!kh_peer_check_allows(&r->peers, NULL, dns_bare, 1));
  ck_assert(kh_peer_check_allows(&r->peers, NULL, local, 1));
  /* No peer lists: any verified peer. */
  ck_assert(kh_peer_check_allows(&kh_policy_rule_for(p, "x")->peers, NULL, NULL, 0));
  kh_policy_free(p);
}
END_TEST

/* Each broken policy and the exact error it must produce. */
static const struct {
  const char *text, *want;
} k_broken[] = {
    {"identities:\n  web:\n    callers:\n      uids: [1000, nosuchuser_kh]\n",
     "p.yaml:4:20: identities.web.callers.uids[1]: unknown user 'nosuchuser_kh'"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    colour: blue\n",
     "p.yaml:4:5: identities.web.colour: unknown field (expected one of: callers, peers, alpn, "
     "tls_versions, ciphersuites)"},
    {"socket:\n  mode: \"0666\"\nidentities:\n  web: {callers: {uids: [1]}}\n",
     "p.yaml:2:9: socket.mode: 0666 lets every local user reach the socket (at most 0770)"},
    {"identities:\n  web:\n    peers: {dns: [x]}\n",
     "p.yaml:3:5: identities.web: no 'callers': nobody could use this identity"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    tls_versions: [\"1.2\"]\n",
     "p.yaml:4:20: identities.web.tls_versions[0]: only TLS 1.3 is supported, found '1.2'"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    ciphersuites: [RC4]\n",
     "p.yaml:4:20: identities.web.ciphersuites[0]: unknown TLS 1.3 ciphersuite 'RC4'"},
    {"identities:\n  web:\n    callers: {tokens: [short]}\n",
     "p.yaml:3:24: identities.web.callers.tokens[0]: token is shorter than 16 characters"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    peers: {dns: [\"a.*.org\"]}\n",
     "p.yaml:4:19: identities.web.peers.dns[0]: 'a.*.org': a wildcard may only be a whole "
     "leftmost label"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    peers: {spiffe_ids: [example.org]}\n",
     "p.yaml:4:26: identities.web.peers.spiffe_ids[0]: expected spiffe://<trust-domain>/<path>"},
    {"limits:\n  handshake_timeout_ms: -5\nidentities: {web: {callers: {uids: [1]}}}\n",
     "p.yaml:2:25: limits.handshake_timeout_ms: expected a number from 10 to 600000, found '-5'"},
    {"socket: /tmp/x\nidentities: {}\n", "p.yaml:1:9: socket: expected a mapping, found a scalar"},
    {"identities: {}\n", "p.yaml:1:13: identities: no identity listed"},
    {"limits: {}\n", "p.yaml:1:1: identities: missing: the policy must list identities"},
    {"identities:\n  web:\n    callers: {uids: [1]}\n    alpn: []\n",
     "p.yaml:4:11: identities.web.alpn: list is empty"},
    {"identities:\n  web: {callers: {uids: [1]}}\n  web: {callers: {uids: [2]}}\n",
     "p.yaml:3:3: duplicate key 'web'"},
    {"identities:\n  web:\n  callers: [\n", "p.yaml:4:1:"},
    {"identities:\n  ../etc: {callers: {uids: [1]}}\n",
     "p.yaml:2:3: identities.../etc: an identity is named by its directory name"},
};

START_TEST(test_broken_policies) {
  for (size_t i = 0; i < sizeof(k_broken) / sizeof(k_broken[0]); i++) {
    kh_error err;
    kh_policy *p = parse(k_broken[i].text, &err);
    ck_assert_msg(p == NULL, "case %zu accepted", i);
    ck_assert_msg(strstr(err.msg, k_broken[i].want) == err.msg, "case %zu: got '%s' want '%s'", i,
                  err.msg, k_broken[i].want);
  }
}
END_TEST

START_TEST(test_load_file_errors) {
  kh_error err;
  ck_assert_ptr_null(kh_policy_load("/nonexistent/keyhold.yaml", &err));
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  ck_assert_msg(strstr(err.msg, "/nonexistent/keyhold.yaml: cannot open") == err.msg, "%s",
                err.msg);
  char path[] = "/tmp/kh-policy-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, k_good, strlen(k_good)), (int)strlen(k_good));
  close(fd);
  kh_policy *p = kh_policy_load(path, &err);
  ck_assert_msg(p != NULL, "%s", err.msg);
  ck_assert_str_eq(p->file, path);
  kh_policy_free(p);
  unlink(path);
}
END_TEST

int main(void) {
  Suite *s = suite_create("policy");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_complete_policy);
  tcase_add_test(tc, test_authorize);
  tcase_add_test(tc, test_builtin_is_own_uid_only);
  tcase_add_test(tc, test_peers_and_wildcards);
  tcase_add_test(tc, test_broken_policies);
  tcase_add_test(tc, test_load_file_errors);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

/* The policy file: daemon configuration and grants parsed from it, precise
 * errors (file:line:col: field: reason), peer lists and DNS wildcards. The
 * decisions made with the grants are test_authz.c's. */
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

static kh_config g_cfg;

static kh_grants *parse(const char *text, kh_error *err) {
  kh_config_cleanup(&g_cfg);
  kh_config_init(&g_cfg);
  return kh_policy_parse("p.yaml", text, strlen(text), &g_cfg, err);
}

static void teardown(void) {
  kh_config_cleanup(&g_cfg);
}

START_TEST(test_complete_policy) {
  kh_error err;
  kh_grants *g = parse(k_good, &err);
  ck_assert_msg(g != NULL, "%s", err.msg);
  ck_assert_str_eq(g_cfg.file, "p.yaml");
  ck_assert_str_eq(g_cfg.socket_path, "/run/keyhold/keyholdd.sock");
  ck_assert_str_eq(g_cfg.identities_dir, "/etc/keyhold/identities");
  ck_assert_int_eq(g_cfg.socket_mode, 0660);
  ck_assert_int_eq(g_cfg.has_socket_gid, 1);
  ck_assert_uint_eq(g_cfg.socket_gid, 0);
  ck_assert_ptr_null(g_cfg.ticket_keys_file);
  ck_assert_uint_eq(g_cfg.limits.max_handshakes_per_caller, 8);
  ck_assert_uint_eq(g_cfg.limits.handshake_timeout_ms, 2500);
  ck_assert_uint_eq(g_cfg.limits.max_connections, 4096); /* default kept */
  ck_assert_uint_eq(g->n_rules, 2);
  const kh_grant_rule *r = kh_grants_rule_for(g, "server");
  ck_assert_str_eq(r->name, "server");
  ck_assert_uint_eq(r->line, 11);
  ck_assert_uint_eq(r->n_uids, 2);
  ck_assert_uint_eq(r->uids[1], 0);
  ck_assert_uint_eq(r->n_gids, 1);
  ck_assert_uint_eq(r->n_tokens, 1);
  ck_assert_uint_eq(r->suites, KH_SUITE_BIT(0) | KH_SUITE_BIT(2));
  ck_assert_uint_eq(r->alpn.n, 2);
  ck_assert_str_eq(kh_grants_rule_for(g, "other")->name, "*");
  kh_grants_free(g);
}
END_TEST

/* A file without socket, limits or paths leaves the defaults. */
START_TEST(test_minimal_policy_keeps_defaults) {
  kh_error err;
  kh_grants *g = parse("identities: {web: {callers: {uids: [1]}}}\n", &err);
  ck_assert_msg(g != NULL, "%s", err.msg);
  ck_assert_ptr_null(g_cfg.socket_path);
  ck_assert_ptr_null(g_cfg.identities_dir);
  ck_assert_int_eq(g_cfg.socket_mode, -1);
  ck_assert_int_eq(g_cfg.has_socket_gid, 0);
  kh_limits def;
  kh_limits_default(&def);
  ck_assert_mem_eq(&g_cfg.limits, &def, sizeof(def));
  kh_grants_free(g);
}
END_TEST

/* The setters the flags use check exactly as the file does. */
START_TEST(test_config_setters) {
  kh_config c;
  kh_config_init(&c);
  kh_error err;
  ck_assert(kh_config_set_socket_mode(&c, "0640", &err));
  ck_assert_int_eq(c.socket_mode, 0640);
  ck_assert(!kh_config_set_socket_mode(&c, "0777", &err));
  ck_assert_str_eq(err.msg, "0777 lets every local user reach the socket (at most 0770)");
  ck_assert(!kh_config_set_socket_mode(&c, "0440", &err));
  ck_assert_str_eq(err.msg, "0440: the owner needs read and write");
  ck_assert(!kh_config_set_socket_mode(&c, "abc", &err));
  ck_assert_str_eq(err.msg, "expected a number from 0 to 511, found 'abc'");
  ck_assert_int_eq(c.socket_mode, 0640); /* unchanged by the refusals */
  ck_assert(kh_config_set_socket_group(&c, "0", &err));
  ck_assert_int_eq(c.has_socket_gid, 1);
  ck_assert(!kh_config_set_socket_group(&c, "nosuchgroup_kh", &err));
  ck_assert_str_eq(err.msg, "unknown group 'nosuchgroup_kh'");
  ck_assert(!kh_config_set_string(&c.socket_path, "", &err));
  ck_assert(kh_config_set_string(&c.socket_path, "/a", &err));
  ck_assert(kh_config_set_string(&c.socket_path, "/b", &err));
  ck_assert_str_eq(c.socket_path, "/b");
  kh_config_cleanup(&c);
}
END_TEST

START_TEST(test_builtin_is_one_star_rule) {
  kh_grants *g = kh_grants_builtin(1234);
  ck_assert_ptr_nonnull(g);
  ck_assert_uint_eq(g->n_rules, 1);
  ck_assert_str_eq(g->rules[0].name, "*");
  ck_assert_uint_eq(g->rules[0].n_uids, 1);
  ck_assert_uint_eq(g->rules[0].uids[0], 1234);
  kh_grants_free(g);
}
END_TEST

START_TEST(test_peers_and_wildcards) {
  kh_error err;
  kh_grants *p = parse(k_good, &err);
  const kh_grant_rule *r = kh_grants_rule_for(p, "server");
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
  ck_assert(kh_peer_check_allows(&kh_grants_rule_for(p, "x")->peers, NULL, NULL, 0));
  kh_grants_free(p);
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
     "tls_versions, ciphersuites, operations)"},
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
    kh_grants *p = parse(k_broken[i].text, &err);
    ck_assert_msg(p == NULL, "case %zu accepted", i);
    ck_assert_msg(strstr(err.msg, k_broken[i].want) == err.msg, "case %zu: got '%s' want '%s'", i,
                  err.msg, k_broken[i].want);
  }
}
END_TEST

START_TEST(test_load_file_errors) {
  kh_error err;
  kh_config_init(&g_cfg);
  ck_assert_ptr_null(kh_policy_load("/nonexistent/keyhold.yaml", &g_cfg, &err));
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  ck_assert_msg(strstr(err.msg, "/nonexistent/keyhold.yaml: cannot open") == err.msg, "%s",
                err.msg);
  char path[] = "/tmp/kh-policy-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, k_good, strlen(k_good)), (int)strlen(k_good));
  close(fd);
  kh_grants *p = kh_policy_load(path, &g_cfg, &err);
  ck_assert_msg(p != NULL, "%s", err.msg);
  ck_assert_str_eq(g_cfg.file, path);
  ck_assert_uint_eq(g_cfg.limits.handshake_timeout_ms, 2500);
  kh_grants_free(p);
  unlink(path);
}
END_TEST

int main(void) {
  Suite *s = suite_create("policy");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, test_complete_policy);
  tcase_add_test(tc, test_minimal_policy_keeps_defaults);
  tcase_add_test(tc, test_config_setters);
  tcase_add_test(tc, test_builtin_is_one_star_rule);
  tcase_add_test(tc, test_peers_and_wildcards);
  tcase_add_test(tc, test_broken_policies);
  tcase_add_test(tc, test_load_file_errors);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}

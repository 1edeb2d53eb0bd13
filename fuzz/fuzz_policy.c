/* fuzz_policy: the policy loader (YAML tree + schema walk) on arbitrary
 * bytes. Accepted policies are also exercised through the authorizer: a
 * decision per rule for both TLS sides, with and without a token, the
 * grant's peer check, and admits(). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "authz.h"
#include "kh_log.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  if (!init) {
    kh_log_set_level(KH_LOG_OFF);
    init = 1;
  }
  kh_error err;
  kh_config cfg;
  kh_config_init(&cfg);
  kh_grants *g = kh_policy_parse("fuzz.yaml", (const char *)data, size, &cfg, &err);
  if (g != NULL) {
    kh_caller c = {.uid = 1000, .gid = 1000, .pid = 1};
    const char *tokens[] = {"fuzz-token-0123456789"};
    char *dns[] = {"a.example.org"};
    for (size_t i = 0; i < g->n_rules; i++) {
      for (size_t n_tokens = 0; n_tokens <= 1; n_tokens++) {
        kh_grant grant;
        kh_operation op = n_tokens ? KH_OP_TLS_SERVER_HANDSHAKE : KH_OP_TLS_CLIENT_HANDSHAKE;
        if (kh_authz_decide(g, &c, tokens, n_tokens, op, g->rules[i].name, &grant, &err)) {
          if (grant.peer_check == NULL || grant.identity != g->rules[i].name) abort();
          (void)kh_peer_check_allows(grant.peer_check, "spiffe://example.org/x", dns, 1);
        }
      }
    }
    (void)kh_authz_admits(g, &c);
    kh_grants_free(g);
  }
  kh_config_cleanup(&cfg);
  return 0;
}

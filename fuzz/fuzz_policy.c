/* fuzz_policy: the policy loader (YAML tree + schema walk) on arbitrary
 * bytes. Accepted policies are also exercised through every decision. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kh_log.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  if (!init) {
    kh_log_set_level(KH_LOG_OFF);
    init = 1;
  }
  kh_error err;
  kh_policy *p = kh_policy_parse("fuzz.yaml", (const char *)data, size, &err);
  if (p == NULL) return 0;
  kh_caller c = {.uid = 1000, .gid = 1000, .pid = 1};
  const char *tokens[] = {"fuzz-token-0123456789"};
  char *dns[] = {"a.example.org"};
  for (size_t i = 0; i < p->n_rules; i++) {
    kh_policy_authorize(p, p->rules[i].name, &c, tokens, 1, &err);
    kh_peer_check_allows(&p->rules[i].peers, "spiffe://example.org/x", dns, 1);
  }
  kh_policy_admits(p, &c);
  kh_policy_free(p);
  return 0;
}

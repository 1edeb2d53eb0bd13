/* authz.c: the grants and the one decision made with them. */
#include "authz.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "kh_secret.h"

kh_grants *kh_grants_builtin(uid_t self) {
  kh_grants *g = calloc(1, sizeof(*g));
  if (g == NULL) return NULL;
  g->rules = calloc(1, sizeof(*g->rules));
  if (g->rules != NULL) {
    g->n_rules = 1;
    g->rules[0].name = strdup("*");
    g->rules[0].uids = malloc(sizeof(uid_t));
  }
  if (g->rules == NULL || g->rules[0].name == NULL || g->rules[0].uids == NULL) {
    kh_grants_free(g);
    return NULL;
  }
  g->rules[0].uids[0] = self;
  g->rules[0].n_uids = 1;
  return g;
}

kh_grants *kh_grants_ref(kh_grants *g) {
  if (g != NULL) __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
  return g;
}

void kh_grants_free(kh_grants *g) {
  if (g == NULL || __atomic_fetch_sub(&g->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  for (size_t i = 0; i < g->n_rules; i++) {
    kh_grant_rule *r = &g->rules[i];
    free(r->name);
    free(r->uids);
    free(r->gids);
    if (r->tokens) kh_wipe(r->tokens, r->n_tokens * KH_TOKEN_HASH_LEN);
    free(r->tokens);
    kh_peer_check_free(&r->peers);
    kh_strlist_free(&r->alpn);
  }
  free(g->rules);
  free(g);
}

const kh_grant_rule *kh_grants_rule_for(const kh_grants *g, const char *name) {
  const kh_grant_rule *star = NULL;
  for (size_t i = 0; i < g->n_rules; i++) {
    if (strcmp(g->rules[i].name, name) == 0) return &g->rules[i];
    if (strcmp(g->rules[i].name, "*") == 0) star = &g->rules[i];
  }
  return star;
}

/* token_granted compares every configured hash with every presented one,
 * without early exit, so timing says nothing about which or how much matched. */
static int token_granted(const kh_grant_rule *r, const char *const *tokens, size_t n) {
  int granted = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t h[KH_TOKEN_HASH_LEN];
    SHA256((const uint8_t *)tokens[i], strlen(tokens[i]), h);
    for (size_t j = 0; j < r->n_tokens; j++)
      granted |= CRYPTO_memcmp(h, r->tokens[j], KH_TOKEN_HASH_LEN) == 0;
    kh_wipe(h, sizeof(h));
  }
  return granted;
}

/* rule_grants: does |r| grant |caller| (by uid, gid or a token) |op|? */
static int rule_grants(const kh_grant_rule *r, const kh_caller *caller, const char *const *tokens,
                       size_t n_tokens, kh_operation op) {
  int ok = 0;
  for (size_t i = 0; i < r->n_uids; i++) ok |= r->uids[i] == caller->uid;
  for (size_t i = 0; i < r->n_gids; i++) ok |= r->gids[i] == caller->gid;
  ok |= token_granted(r, tokens, n_tokens);
  return ok && (r->operations == 0 || (r->operations & kh_operation_grant(op)) != 0);
}

int kh_authz_decide(const kh_grants *g, const kh_caller *caller, const char *const *tokens,
                    size_t n_tokens, kh_operation op, const char *identity, kh_grant *out,
                    kh_error *err) {
  const kh_grant_rule *r = kh_grants_rule_for(g, identity);
  int ok = r != NULL && rule_grants(r, caller, tokens, n_tokens, op);
  char who[40];
  if (!ok)
    return kh_err(err, KH_ERR_PERMISSION_DENIED, "%s may not use identity '%.100s'%s",
                  kh_caller_name(caller, who, sizeof(who)), identity,
                  n_tokens ? " (the access token presented does not grant it)" : "");
  *out = (kh_grant){.identity = identity,
                    .op = op,
                    .operations = r->operations,
                    .peer_check = &r->peers,
                    .alpn = (const char *const *)r->alpn.v,
                    .n_alpn = r->alpn.n,
                    .suites = r->suites};
  return 1;
}

const char *kh_authz_default_identity(const kh_grants *g, const kh_caller *caller,
                                      const char *const *tokens, size_t n_tokens, kh_operation op) {
  const char *found = NULL;
  for (size_t i = 0; i < g->n_rules; i++) {
    const kh_grant_rule *r = &g->rules[i];
    if (strcmp(r->name, "*") == 0 || !rule_grants(r, caller, tokens, n_tokens, op)) continue;
    if (found != NULL) return NULL; /* several: the request must name one */
    found = r->name;
  }
  return found;
}

uint32_t kh_operation_grant(kh_operation op) {
  switch (op) {
    case KH_OP_TLS_CLIENT_HANDSHAKE:
    case KH_OP_TLS_SERVER_HANDSHAKE: return KH_GRANT_TLS_OFFLOAD;
    case KH_OP_TLS_CONFIG:
    case KH_OP_SIGN: return KH_GRANT_SIGN;
    case KH_OP_VALIDATE: return KH_GRANT_VALIDATE;
    case KH_OP_TICKET_KEYS: return KH_GRANT_TICKET_KEYS;
    case KH_OP_SECURE_CHANNEL: return KH_GRANT_SECURE_CHANNEL;
    case KH_OP_OPEN_SEALED: return KH_GRANT_OPEN_SEALED;
    case KH_OP_DPOP: return KH_GRANT_DPOP;
  }
  return 0;
}

static const struct {
  uint32_t bit;
  const char *name;
} k_grant_names[] = {{KH_GRANT_TLS_OFFLOAD, "tls-offload"},
                     {KH_GRANT_SIGN, "sign"},
                     {KH_GRANT_VALIDATE, "validate"},
                     {KH_GRANT_TICKET_KEYS, "ticket-keys"},
                     {KH_GRANT_SECURE_CHANNEL, "secure-channel"},
                     {KH_GRANT_OPEN_SEALED, "open-sealed"},
                     {KH_GRANT_DPOP, "dpop"},
                     {KH_GRANT_LEGACY_PKCS1V15, "legacy-pkcs1v15"}};

const char *kh_grant_name(uint32_t grant) {
  for (size_t i = 0; i < sizeof(k_grant_names) / sizeof(k_grant_names[0]); i++)
    if (k_grant_names[i].bit == grant) return k_grant_names[i].name;
  return "?";
}

uint32_t kh_grant_from_name(const char *name) {
  for (size_t i = 0; i < sizeof(k_grant_names) / sizeof(k_grant_names[0]); i++)
    if (strcmp(k_grant_names[i].name, name) == 0) return k_grant_names[i].bit;
  return 0;
}

int kh_authz_admits(const kh_grants *g, const kh_caller *caller) {
  for (size_t i = 0; i < g->n_rules; i++) {
    const kh_grant_rule *r = &g->rules[i];
    if (r->n_tokens) return 1; /* the token is checked per call */
    for (size_t j = 0; j < r->n_uids; j++)
      if (r->uids[j] == caller->uid) return 1;
    for (size_t j = 0; j < r->n_gids; j++)
      if (r->gids[j] == caller->gid) return 1;
  }
  return 0;
}

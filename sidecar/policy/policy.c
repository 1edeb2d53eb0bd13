/* policy.c: the policy file (YAML, schema in docs/POLICY.md) and the checks
 * made with it. */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "kh_secret.h"
#include "yaml_tree.h"

#define KH_POLICY_MAX_FILE (1u << 20)
#define KH_POLICY_MAX_LIST 256

/* --- error reporting ------------------------------------------------------ */

typedef struct {
  const char *file;
  kh_error *err;
} ctx;

/* bad reports "file:line:col: field: reason". */
static int bad(ctx *c, const kh_yaml_node *n, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(ctx *c, const kh_yaml_node *n, const char *field, const char *fmt, ...) {
  char reason[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  return kh_err(c->err, KH_ERR_INVALID_ARGUMENT, "%s:%u:%u: %s: %s", c->file, n ? n->line : 1,
                n ? n->col : 1, field, reason);
}

static const char *kind_name(kh_yaml_kind k) {
  return k == KH_YAML_MAP ? "a mapping" : k == KH_YAML_SEQ ? "a list" : "a scalar";
}

static int want(ctx *c, const kh_yaml_node *n, kh_yaml_kind k, const char *field) {
  if (n->kind == k) return 1;
  return bad(c, n, field, "expected %s, found %s", kind_name(k), kind_name(n->kind));
}

/* check_keys refuses keys outside |known| (NULL-terminated). */
static int check_keys(ctx *c, const kh_yaml_node *map, const char *field,
                      const char *const *known) {
  for (size_t i = 0; i < map->count; i++) {
    const char *k = map->keys[i]->value;
    size_t j = 0;
    while (known[j] && strcmp(known[j], k) != 0) j++;
    if (known[j] == NULL) {
      char list[200] = "";
      for (j = 0; known[j]; j++) {
        strncat(list, j ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, known[j], sizeof(list) - strlen(list) - 1);
      }
      char f[200];
      snprintf(f, sizeof(f), "%s%s%.60s", field, field[0] ? "." : "", k);
      return bad(c, map->keys[i], f, "unknown field (expected one of: %s)", list);
    }
  }
  return 1;
}

/* --- scalars -------------------------------------------------------------- */

static int get_uint(ctx *c, const kh_yaml_node *n, const char *field, unsigned long min,
                    unsigned long max, int base, unsigned long *out) {
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  char *end;
  errno = 0;
  unsigned long v = strtoul(n->value, &end, base);
  if (n->value[0] == '\0' || n->value[0] == '-' || *end != '\0' || errno != 0 || v < min || v > max)
    return bad(c, n, field, "expected a number from %lu to %lu, found '%.60s'", min, max, n->value);
  *out = v;
  return 1;
}

static int get_string(ctx *c, const kh_yaml_node *n, const char *field, char **out) {
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  if (n->value[0] == '\0') return bad(c, n, field, "must not be empty");
  free(*out);
  *out = strdup(n->value);
  return *out != NULL || kh_err(c->err, KH_ERR_NOMEM, "out of memory");
}

static int is_number(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

static int get_uid(ctx *c, const kh_yaml_node *n, const char *field, uid_t *out) {
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  if (is_number(n->value)) {
    unsigned long v;
    if (!get_uint(c, n, field, 0, UINT_MAX - 1, 10, &v)) return 0;
    *out = (uid_t)v;
    return 1;
  }
  struct passwd *pw = getpwnam(n->value);
  if (pw == NULL) return bad(c, n, field, "unknown user '%.60s'", n->value);
  *out = pw->pw_uid;
  return 1;
}

static int get_gid(ctx *c, const kh_yaml_node *n, const char *field, gid_t *out) {
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  if (is_number(n->value)) {
    unsigned long v;
    if (!get_uint(c, n, field, 0, UINT_MAX - 1, 10, &v)) return 0;
    *out = (gid_t)v;
    return 1;
  }
  struct group *gr = getgrnam(n->value);
  if (gr == NULL) return bad(c, n, field, "unknown group '%.60s'", n->value);
  *out = gr->gr_gid;
  return 1;
}

/* --- lists ---------------------------------------------------------------- */

typedef int (*item_fn)(ctx *c, const kh_yaml_node *n, const char *field, void *out, size_t i);

/* each_item checks |n| is a non-empty bounded list and calls |fn| per item
 * with a field name like "identities.web.alpn[2]". |*out| is an array of
 * |size|-byte elements allocated here. */
static int each_item(ctx *c, const kh_yaml_node *n, const char *field, size_t size, void **out,
                     size_t *count, item_fn fn) {
  if (!want(c, n, KH_YAML_SEQ, field)) return 0;
  if (n->count == 0) return bad(c, n, field, "list is empty (leave the field out instead)");
  if (n->count > KH_POLICY_MAX_LIST)
    return bad(c, n, field, "more than %d entries", KH_POLICY_MAX_LIST);
  *out = calloc(n->count, size);
  if (*out == NULL) return kh_err(c->err, KH_ERR_NOMEM, "out of memory");
  *count = n->count;
  for (size_t i = 0; i < n->count; i++) {
    char f[256];
    snprintf(f, sizeof(f), "%.220s[%zu]", field, i);
    if (!fn(c, n->items[i], f, *out, i)) return 0;
  }
  return 1;
}

static int uid_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  return get_uid(c, n, f, &((uid_t *)out)[i]);
}
static int gid_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  return get_gid(c, n, f, &((gid_t *)out)[i]);
}

static int token_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!want(c, n, KH_YAML_SCALAR, f)) return 0;
  size_t len = strlen(n->value);
  if (len < 16) return bad(c, n, f, "token is shorter than 16 characters");
  SHA256((const uint8_t *)n->value, len, ((uint8_t(*)[KH_TOKEN_HASH_LEN])out)[i]);
  return 1;
}

static int spiffe_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!get_string(c, n, f, &((char **)out)[i])) return 0;
  const char *v = n->value;
  if (strncmp(v, "spiffe://", 9) != 0 || strchr(v + 9, '/') == NULL || v[9] == '/')
    return bad(c, n, f, "expected spiffe://<trust-domain>/<path>, found '%.60s'", v);
  return 1;
}

static int domain_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!get_string(c, n, f, &((char **)out)[i])) return 0;
  for (const char *p = n->value; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
      return bad(c, n, f, "'%.60s' is not a trust domain name (no scheme, no path)", n->value);
  return 1;
}

static int dns_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!get_string(c, n, f, &((char **)out)[i])) return 0;
  const char *v = n->value;
  const char *rest = strncmp(v, "*.", 2) == 0 ? v + 2 : v;
  if (*rest == '\0' || strchr(rest, '*') != NULL)
    return bad(c, n, f, "'%.60s': a wildcard may only be a whole leftmost label ('*.example.org')",
               v);
  return 1;
}

static int alpn_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!get_string(c, n, f, &((char **)out)[i])) return 0;
  if (strlen(n->value) > 255) return bad(c, n, f, "ALPN protocol longer than 255 bytes");
  return 1;
}

static int strlist(ctx *c, const kh_yaml_node *n, const char *f, kh_strlist *out, item_fn fn) {
  return each_item(c, n, f, sizeof(char *), (void **)&out->v, &out->n, fn);
}

static int suite_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  static const char *const names[KH_SUITE_COUNT][2] = {
      {"AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"},
      {"AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
      {"CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
  };
  if (!want(c, n, KH_YAML_SCALAR, f)) return 0;
  for (int s = 0; s < KH_SUITE_COUNT; s++) {
    if (strcmp(n->value, names[s][0]) == 0 || strcmp(n->value, names[s][1]) == 0) {
      ((uint32_t *)out)[i] = KH_SUITE_BIT(s);
      return 1;
    }
  }
  return bad(c, n, f,
             "unknown TLS 1.3 ciphersuite '%.60s' (AES_128_GCM_SHA256, AES_256_GCM_SHA384, "
             "CHACHA20_POLY1305_SHA256)",
             n->value);
}

static int version_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  (void)out;
  (void)i;
  if (!want(c, n, KH_YAML_SCALAR, f)) return 0;
  if (strcmp(n->value, "1.3") == 0 || strcmp(n->value, "TLS1_3") == 0) return 1;
  return bad(c, n, f, "only TLS 1.3 is supported, found '%.60s'", n->value);
}

/* --- sections ------------------------------------------------------------- */

static int parse_callers(ctx *c, const kh_yaml_node *n, const char *f, kh_policy_rule *r) {
  static const char *const keys[] = {"uids", "gids", "tokens", NULL};
  if (!want(c, n, KH_YAML_MAP, f) || !check_keys(c, n, f, keys)) return 0;
  char sub[256];
  for (size_t i = 0; i < n->count; i++) {
    const char *k = n->keys[i]->value;
    const kh_yaml_node *v = n->items[i];
    snprintf(sub, sizeof(sub), "%.180s.%.60s", f, k);
    int ok;
    if (strcmp(k, "uids") == 0) {
      ok = each_item(c, v, sub, sizeof(uid_t), (void **)&r->uids, &r->n_uids, uid_item);
    } else if (strcmp(k, "gids") == 0) {
      ok = each_item(c, v, sub, sizeof(gid_t), (void **)&r->gids, &r->n_gids, gid_item);
    } else {
      ok = each_item(c, v, sub, KH_TOKEN_HASH_LEN, (void **)&r->tokens, &r->n_tokens, token_item);
    }
    if (!ok) return 0;
  }
  return 1;
}

static int parse_peers(ctx *c, const kh_yaml_node *n, const char *f, kh_policy_rule *r) {
  static const char *const keys[] = {"spiffe_ids", "trust_domains", "dns", NULL};
  if (!want(c, n, KH_YAML_MAP, f) || !check_keys(c, n, f, keys)) return 0;
  char sub[256];
  for (size_t i = 0; i < n->count; i++) {
    const char *k = n->keys[i]->value;
    snprintf(sub, sizeof(sub), "%.180s.%.60s", f, k);
    int ok = strcmp(k, "spiffe_ids") == 0
                 ? strlist(c, n->items[i], sub, &r->peers.spiffe_ids, spiffe_item)
             : strcmp(k, "trust_domains") == 0
                 ? strlist(c, n->items[i], sub, &r->peers.trust_domains, domain_item)
                 : strlist(c, n->items[i], sub, &r->peers.dns, dns_item);
    if (!ok) return 0;
  }
  return 1;
}

static int parse_rule(ctx *c, const kh_yaml_node *key, const kh_yaml_node *n, kh_policy_rule *r) {
  static const char *const keys[] = {"callers",      "peers",        "alpn",
                                     "tls_versions", "ciphersuites", NULL};
  char f[200];
  snprintf(f, sizeof(f), "identities.%.60s", key->value);
  r->line = key->line;
  r->name = strdup(key->value);
  if (r->name == NULL) return kh_err(c->err, KH_ERR_NOMEM, "out of memory");
  if (key->value[0] == '\0' ||
      (strcmp(key->value, "*") != 0 && (key->value[0] == '.' || strchr(key->value, '/') != NULL)))
    return bad(c, key, f, "an identity is named by its directory name (or '*')");
  if (!want(c, n, KH_YAML_MAP, f) || !check_keys(c, n, f, keys)) return 0;
  if (kh_yaml_get(n, "callers") == NULL)
    return bad(c, n, f, "no 'callers': nobody could use this identity");
  char sub[256];
  for (size_t i = 0; i < n->count; i++) {
    const char *k = n->keys[i]->value;
    const kh_yaml_node *v = n->items[i];
    snprintf(sub, sizeof(sub), "%.180s.%.60s", f, k);
    int ok = 1;
    if (strcmp(k, "callers") == 0) {
      ok = parse_callers(c, v, sub, r);
    } else if (strcmp(k, "peers") == 0) {
      ok = parse_peers(c, v, sub, r);
    } else if (strcmp(k, "alpn") == 0) {
      ok = strlist(c, v, sub, &r->alpn, alpn_item);
    } else if (strcmp(k, "tls_versions") == 0) {
      void *unused = NULL;
      size_t count;
      ok = each_item(c, v, sub, 1, &unused, &count, version_item);
      free(unused);
    } else {
      uint32_t *bits = NULL;
      size_t count = 0;
      ok = each_item(c, v, sub, sizeof(uint32_t), (void **)&bits, &count, suite_item);
      for (size_t j = 0; ok && j < count; j++) r->suites |= bits[j];
      free(bits);
    }
    if (!ok) return 0;
  }
  if (r->n_uids + r->n_gids + r->n_tokens == 0)
    return bad(c, kh_yaml_get(n, "callers"), f,
               "callers grants nobody (give uids, gids or tokens)");
  return 1;
}

static int parse_socket(ctx *c, const kh_yaml_node *n, kh_policy *p) {
  static const char *const keys[] = {"path", "mode", "group", NULL};
  if (!want(c, n, KH_YAML_MAP, "socket") || !check_keys(c, n, "socket", keys)) return 0;
  const kh_yaml_node *v;
  if ((v = kh_yaml_get(n, "path")) && !get_string(c, v, "socket.path", &p->socket_path)) return 0;
  if ((v = kh_yaml_get(n, "mode"))) {
    unsigned long mode;
    if (!get_uint(c, v, "socket.mode", 0, 0777, 8, &mode)) return 0;
    if (mode & 007)
      return bad(c, v, "socket.mode", "%04lo lets every local user reach the socket (at most 0770)",
                 mode);
    if ((mode & 0600) != 0600)
      return bad(c, v, "socket.mode", "%04lo: the owner needs read and write", mode);
    p->socket_mode = (int)mode;
  }
  if ((v = kh_yaml_get(n, "group"))) {
    if (!get_gid(c, v, "socket.group", &p->socket_gid)) return 0;
    p->has_socket_gid = 1;
  }
  return 1;
}

static int parse_limits(ctx *c, const kh_yaml_node *n, kh_policy *p) {
  if (!want(c, n, KH_YAML_MAP, "limits") || !check_keys(c, n, "limits", kh_limits_names()))
    return 0;
  for (size_t i = 0; i < n->count; i++) {
    char field[100];
    snprintf(field, sizeof(field), "limits.%s", n->keys[i]->value);
    kh_error e;
    if (!want(c, n->items[i], KH_YAML_SCALAR, field)) return 0;
    if (!kh_limits_set(&p->limits, n->keys[i]->value, n->items[i]->value, &e))
      return bad(c, n->items[i], field, "%s", e.msg);
  }
  return 1;
}

static kh_policy *policy_new(void) {
  kh_policy *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->socket_mode = -1;
  kh_limits_default(&p->limits);
  return p;
}

static int parse_root(ctx *c, const kh_yaml_node *root, kh_policy *p) {
  static const char *const keys[] = {"socket",      "identities_dir", "limits",
                                     "ticket_keys", "identities",     NULL};
  if (!want(c, root, KH_YAML_MAP, "(top level)") || !check_keys(c, root, "", keys)) return 0;
  const kh_yaml_node *v;
  if ((v = kh_yaml_get(root, "socket")) && !parse_socket(c, v, p)) return 0;
  if ((v = kh_yaml_get(root, "limits")) && !parse_limits(c, v, p)) return 0;
  if ((v = kh_yaml_get(root, "identities_dir")) &&
      !get_string(c, v, "identities_dir", &p->identities_dir))
    return 0;
  if ((v = kh_yaml_get(root, "ticket_keys")) &&
      !get_string(c, v, "ticket_keys", &p->ticket_keys_file))
    return 0;
  v = kh_yaml_get(root, "identities");
  if (v == NULL) return bad(c, root, "identities", "missing: the policy must list identities");
  if (!want(c, v, KH_YAML_MAP, "identities")) return 0;
  if (v->count == 0) return bad(c, v, "identities", "no identity listed");
  p->rules = calloc(v->count, sizeof(*p->rules));
  if (p->rules == NULL) return kh_err(c->err, KH_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < v->count; i++) {
    p->n_rules = i + 1;
    if (!parse_rule(c, v->keys[i], v->items[i], &p->rules[i])) return 0;
  }
  return 1;
}

kh_policy *kh_policy_parse(const char *name, const char *data, size_t len, kh_error *err) {
  ctx c = {.file = name, .err = err};
  kh_error yerr;
  kh_yaml_node *root = kh_yaml_parse(data, len, &yerr);
  if (root == NULL) {
    kh_err(err, yerr.code, "%s:%s", name, yerr.msg);
    return NULL;
  }
  kh_policy *p = policy_new();
  int ok = p != NULL ? parse_root(&c, root, p) : kh_err(err, KH_ERR_NOMEM, "out of memory");
  kh_yaml_free(root);
  if (ok) ok = (p->file = strdup(name)) != NULL || kh_err(err, KH_ERR_NOMEM, "out of memory");
  if (!ok) {
    kh_policy_free(p);
    return NULL;
  }
  return p;
}

kh_policy *kh_policy_load(const char *path, kh_error *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    kh_err(err, KH_ERR_NOT_FOUND, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  /* The file may hold tokens: read it into locked memory, wipe after. */
  char *buf = kh_secret_alloc(KH_POLICY_MAX_FILE + 1);
  size_t len = buf ? fread(buf, 1, KH_POLICY_MAX_FILE + 1, f) : 0;
  int read_error = ferror(f);
  fclose(f);
  kh_policy *p = NULL;
  if (buf == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
  } else if (read_error) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: read error", path);
  } else if (len > KH_POLICY_MAX_FILE) {
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "%s: larger than %u bytes", path, KH_POLICY_MAX_FILE);
  } else {
    p = kh_policy_parse(path, buf, len, err);
  }
  kh_secret_free(buf, KH_POLICY_MAX_FILE + 1);
  return p;
}

kh_policy *kh_policy_builtin(uid_t self) {
  kh_policy *p = policy_new();
  if (p == NULL) return NULL;
  p->rules = calloc(1, sizeof(*p->rules));
  if (p->rules != NULL) {
    p->n_rules = 1;
    p->rules[0].name = strdup("*");
    p->rules[0].uids = malloc(sizeof(uid_t));
  }
  if (p->rules == NULL || p->rules[0].name == NULL || p->rules[0].uids == NULL) {
    kh_policy_free(p);
    return NULL;
  }
  p->rules[0].uids[0] = self;
  p->rules[0].n_uids = 1;
  return p;
}

void kh_policy_free(kh_policy *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->n_rules; i++) {
    kh_policy_rule *r = &p->rules[i];
    free(r->name);
    free(r->uids);
    free(r->gids);
    if (r->tokens) kh_wipe(r->tokens, r->n_tokens * KH_TOKEN_HASH_LEN);
    free(r->tokens);
    kh_peer_check_free(&r->peers);
    kh_strlist_free(&r->alpn);
  }
  free(p->rules);
  free(p->file);
  free(p->socket_path);
  free(p->identities_dir);
  free(p->ticket_keys_file);
  free(p);
}

/* --- decisions ------------------------------------------------------------ */

const kh_policy_rule *kh_policy_rule_for(const kh_policy *p, const char *name) {
  const kh_policy_rule *star = NULL;
  for (size_t i = 0; i < p->n_rules; i++) {
    if (strcmp(p->rules[i].name, name) == 0) return &p->rules[i];
    if (strcmp(p->rules[i].name, "*") == 0) star = &p->rules[i];
  }
  return star;
}

/* token_granted compares every configured hash with every presented one,
 * without early exit, so timing says nothing about which or how much matched. */
static int token_granted(const kh_policy_rule *r, const char *const *tokens, size_t n) {
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

int kh_policy_authorize(const kh_policy *p, const char *name, const kh_caller *caller,
                        const char *const *tokens, size_t n_tokens, kh_error *err) {
  const kh_policy_rule *r = kh_policy_rule_for(p, name);
  int ok = 0;
  if (r != NULL) {
    for (size_t i = 0; i < r->n_uids; i++) ok |= r->uids[i] == caller->uid;
    for (size_t i = 0; i < r->n_gids; i++) ok |= r->gids[i] == caller->gid;
    ok |= token_granted(r, tokens, n_tokens);
  }
  if (ok) return 1;
  return kh_err(err, KH_ERR_PERMISSION_DENIED, "caller uid %u may not use identity '%.100s'%s",
                (unsigned)caller->uid, name,
                n_tokens ? " (the access token presented does not grant it)" : "");
}

int kh_policy_admits(const kh_policy *p, const kh_caller *caller) {
  for (size_t i = 0; i < p->n_rules; i++) {
    const kh_policy_rule *r = &p->rules[i];
    if (r->n_tokens) return 1; /* the token is checked per call */
    for (size_t j = 0; j < r->n_uids; j++)
      if (r->uids[j] == caller->uid) return 1;
    for (size_t j = 0; j < r->n_gids; j++)
      if (r->gids[j] == caller->gid) return 1;
  }
  return 0;
}

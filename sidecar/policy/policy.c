/* policy.c: the policy file (YAML, schema in docs/POLICY.md), parsed into a
 * kh_config and kh_grants. Values shared with the flags are checked by
 * config.c; decisions are authz.c's. */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* from_setter reports a config.h setter's or parser's bare reason at |n|. */
static int from_setter(ctx *c, const kh_yaml_node *n, const char *field, const kh_error *e) {
  if (e->code == KH_ERR_NOMEM) return kh_err(c->err, KH_ERR_NOMEM, "out of memory");
  return bad(c, n, field, "%s", e->msg);
}

static int get_string(ctx *c, const kh_yaml_node *n, const char *field, char **out) {
  kh_error e;
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  return kh_config_set_string(out, n->value, &e) || from_setter(c, n, field, &e);
}

static int get_uid(ctx *c, const kh_yaml_node *n, const char *field, uid_t *out) {
  kh_error e;
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  return kh_config_parse_uid(n->value, out, &e) || from_setter(c, n, field, &e);
}

static int get_gid(ctx *c, const kh_yaml_node *n, const char *field, gid_t *out) {
  kh_error e;
  if (!want(c, n, KH_YAML_SCALAR, field)) return 0;
  return kh_config_parse_gid(n->value, out, &e) || from_setter(c, n, field, &e);
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

static int operation_item(ctx *c, const kh_yaml_node *n, const char *f, void *out, size_t i) {
  if (!want(c, n, KH_YAML_SCALAR, f)) return 0;
  if ((((uint32_t *)out)[i] = kh_grant_from_name(n->value)) != 0) return 1;
  return bad(c, n, f,
             "unknown operation '%.60s' (tls-offload, sign, validate, ticket-keys, "
             "secure-channel, open-sealed, dpop, legacy-pkcs1v15)",
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

static int parse_callers(ctx *c, const kh_yaml_node *n, const char *f, kh_grant_rule *r) {
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

static int parse_peers(ctx *c, const kh_yaml_node *n, const char *f, kh_grant_rule *r) {
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

static int parse_rule(ctx *c, const kh_yaml_node *key, const kh_yaml_node *n, kh_grant_rule *r) {
  static const char *const keys[] = {"callers",      "peers",      "alpn", "tls_versions",
                                     "ciphersuites", "operations", NULL};
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
    } else if (strcmp(k, "operations") == 0) {
      uint32_t *bits = NULL;
      size_t count = 0;
      ok = each_item(c, v, sub, sizeof(uint32_t), (void **)&bits, &count, operation_item);
      for (size_t j = 0; ok && j < count; j++) r->operations |= bits[j];
      free(bits);
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

static int parse_socket(ctx *c, const kh_yaml_node *n, kh_config *cfg) {
  static const char *const keys[] = {"path", "mode", "group", NULL};
  if (!want(c, n, KH_YAML_MAP, "socket") || !check_keys(c, n, "socket", keys)) return 0;
  const kh_yaml_node *v;
  kh_error e;
  if ((v = kh_yaml_get(n, "path")) && !get_string(c, v, "socket.path", &cfg->socket_path)) return 0;
  if ((v = kh_yaml_get(n, "mode")) &&
      (!want(c, v, KH_YAML_SCALAR, "socket.mode") ||
       (!kh_config_set_socket_mode(cfg, v->value, &e) && !from_setter(c, v, "socket.mode", &e))))
    return 0;
  if ((v = kh_yaml_get(n, "group")) &&
      (!want(c, v, KH_YAML_SCALAR, "socket.group") ||
       (!kh_config_set_socket_group(cfg, v->value, &e) && !from_setter(c, v, "socket.group", &e))))
    return 0;
  return 1;
}

static int parse_limits(ctx *c, const kh_yaml_node *n, kh_config *cfg) {
  if (!want(c, n, KH_YAML_MAP, "limits") || !check_keys(c, n, "limits", kh_limits_names()))
    return 0;
  for (size_t i = 0; i < n->count; i++) {
    char field[100];
    snprintf(field, sizeof(field), "limits.%s", n->keys[i]->value);
    kh_error e;
    if (!want(c, n->items[i], KH_YAML_SCALAR, field)) return 0;
    if (!kh_limits_set(&cfg->limits, n->keys[i]->value, n->items[i]->value, &e))
      return bad(c, n->items[i], field, "%s", e.msg);
  }
  return 1;
}

static int parse_root(ctx *c, const kh_yaml_node *root, kh_config *cfg, kh_grants *g) {
  static const char *const keys[] = {"socket",      "identities_dir", "limits",
                                     "ticket_keys", "identities",     NULL};
  if (!want(c, root, KH_YAML_MAP, "(top level)") || !check_keys(c, root, "", keys)) return 0;
  const kh_yaml_node *v;
  if ((v = kh_yaml_get(root, "socket")) && !parse_socket(c, v, cfg)) return 0;
  if ((v = kh_yaml_get(root, "limits")) && !parse_limits(c, v, cfg)) return 0;
  if ((v = kh_yaml_get(root, "identities_dir")) &&
      !get_string(c, v, "identities_dir", &cfg->identities_dir))
    return 0;
  if ((v = kh_yaml_get(root, "ticket_keys")) &&
      !get_string(c, v, "ticket_keys", &cfg->ticket_keys_file))
    return 0;
  v = kh_yaml_get(root, "identities");
  if (v == NULL) return bad(c, root, "identities", "missing: the policy must list identities");
  if (!want(c, v, KH_YAML_MAP, "identities")) return 0;
  if (v->count == 0) return bad(c, v, "identities", "no identity listed");
  g->rules = calloc(v->count, sizeof(*g->rules));
  if (g->rules == NULL) return kh_err(c->err, KH_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < v->count; i++) {
    g->n_rules = i + 1;
    if (!parse_rule(c, v->keys[i], v->items[i], &g->rules[i])) return 0;
  }
  return 1;
}

kh_grants *kh_policy_parse(const char *name, const char *data, size_t len, kh_config *cfg,
                           kh_error *err) {
  ctx c = {.file = name, .err = err};
  kh_error yerr;
  kh_yaml_node *root = kh_yaml_parse(data, len, &yerr);
  if (root == NULL) {
    kh_err(err, yerr.code, "%s:%s", name, yerr.msg);
    return NULL;
  }
  kh_grants *g = calloc(1, sizeof(*g));
  int ok = g != NULL ? parse_root(&c, root, cfg, g) : kh_err(err, KH_ERR_NOMEM, "out of memory");
  kh_yaml_free(root);
  if (ok) ok = kh_config_set_string(&cfg->file, name, err);
  if (!ok) {
    kh_grants_free(g);
    return NULL;
  }
  return g;
}

kh_grants *kh_policy_load(const char *path, kh_config *cfg, kh_error *err) {
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
  kh_grants *g = NULL;
  if (buf == NULL) {
    kh_err(err, KH_ERR_NOMEM, "out of memory");
  } else if (read_error) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: read error", path);
  } else if (len > KH_POLICY_MAX_FILE) {
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "%s: larger than %u bytes", path, KH_POLICY_MAX_FILE);
  } else {
    g = kh_policy_parse(path, buf, len, cfg, err);
  }
  kh_secret_free(buf, KH_POLICY_MAX_FILE + 1);
  return g;
}

/* peer_check.c: peer name lists applied to a verified peer. */
#include "peer_check.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int kh_dns_match(const char *pattern, const char *name) {
  if (strncmp(pattern, "*.", 2) != 0) return strcasecmp(pattern, name) == 0;
  const char *dot = strchr(name, '.');
  return dot != NULL && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
}

static int trust_domain_match(const char *td, const char *spiffe_id) {
  size_t n = strlen(td);
  return strncmp(spiffe_id, "spiffe://", 9) == 0 && strncasecmp(spiffe_id + 9, td, n) == 0 &&
         (spiffe_id[9 + n] == '/' || spiffe_id[9 + n] == '\0');
}

int kh_peer_check_allows(const kh_peer_check *c, const char *spiffe_id, char *const *dns,
                         size_t n_dns) {
  if (c == NULL || c->spiffe_ids.n + c->trust_domains.n + c->dns.n == 0) return 1;
  if (spiffe_id != NULL) {
    for (size_t i = 0; i < c->spiffe_ids.n; i++)
      if (strcmp(c->spiffe_ids.v[i], spiffe_id) == 0) return 1;
    for (size_t i = 0; i < c->trust_domains.n; i++)
      if (trust_domain_match(c->trust_domains.v[i], spiffe_id)) return 1;
  }
  for (size_t i = 0; i < c->dns.n; i++)
    for (size_t j = 0; j < n_dns; j++)
      if (kh_dns_match(c->dns.v[i], dns[j])) return 1;
  return 0;
}

void kh_strlist_free(kh_strlist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v ? l->v[i] : NULL);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

void kh_peer_check_free(kh_peer_check *c) {
  kh_strlist_free(&c->spiffe_ids);
  kh_strlist_free(&c->trust_domains);
  kh_strlist_free(&c->dns);
}

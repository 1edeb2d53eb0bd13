/* peer_check.h: which verified peers a handshake accepts, as plain data.
 *
 * The authorizer builds a kh_peer_check from the policy's peer lists for the
 * caller's grant; verification (TLS today, S2A v2 and secure channels next)
 * applies it to a peer whose chain has already been verified against the
 * identity's trust bundle. No crypto library and no policy types here. */
#ifndef KH_PEER_CHECK_H
#define KH_PEER_CHECK_H

#include <stddef.h>

typedef struct {
  char **v;
  size_t n;
} kh_strlist;

typedef struct {
  kh_strlist spiffe_ids;    /* exact spiffe://td/path */
  kh_strlist trust_domains; /* spiffe://<td>/... */
  kh_strlist dns;           /* exact, or "*.suffix" (one leftmost label) */
} kh_peer_check;

/* kh_peer_check_allows: does a verified peer (SPIFFE ID and/or DNS SANs)
 * satisfy |c|? A check with no entries (or NULL) allows any verified peer. */
int kh_peer_check_allows(const kh_peer_check *c, const char *spiffe_id, char *const *dns,
                         size_t n_dns);

/* kh_dns_match: |pattern| is a hostname or "*.suffix"; case-insensitive.
 * "*" matches exactly one leftmost label. */
int kh_dns_match(const char *pattern, const char *name);

/* kh_strlist_free frees the strings and the array; the list is empty after. */
void kh_strlist_free(kh_strlist *l);
void kh_peer_check_free(kh_peer_check *c);

#endif /* KH_PEER_CHECK_H */

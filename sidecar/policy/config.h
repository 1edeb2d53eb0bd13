/* config.h: keyholdd's daemon configuration, apart from the grants.
 *
 * Where to serve (socket path, mode, group), where the identities are, the
 * numeric limits and the ticket-key file. The policy file fills it
 * (policy.h) and main.c's flags and environment variables override fields
 * directly, through the same setters, so a value is checked the same way
 * wherever it comes from. Setter errors carry the bare reason ("0777 lets
 * every local user reach the socket (at most 0770)"); the caller says where
 * the value came from (file:line:col: field, or the flag). */
#ifndef KH_CONFIG_H
#define KH_CONFIG_H

#include <sys/types.h>

#include "kh_error.h"
#include "kh_limits.h"

typedef struct {
  char *file; /* the policy file it came from; NULL: none (built-in policy) */
  char *socket_path;
  char *identities_dir;
  int socket_mode;  /* -1: default 0660 */
  gid_t socket_gid; /* valid if has_socket_gid */
  int has_socket_gid;
  kh_limits limits; /* caps and timeouts (kh_limits.h) */
  char *ticket_keys_file;
} kh_config;

/* kh_config_init fills |c| with the defaults (no paths, limits' defaults). */
void kh_config_init(kh_config *c);

/* kh_config_cleanup frees what |c| holds; |c| may be re-initialised. */
void kh_config_cleanup(kh_config *c);

/* kh_config_set_string replaces |*field| (one of |c|'s strings) with a copy
 * of |value|, which must not be empty. */
KH_MUST_USE int kh_config_set_string(char **field, const char *value, kh_error *err);

/* kh_config_set_socket_mode: octal |value|, at most 0770, owner rw. */
KH_MUST_USE int kh_config_set_socket_mode(kh_config *c, const char *value, kh_error *err);

/* kh_config_set_socket_group: a group name or number. */
KH_MUST_USE int kh_config_set_socket_group(kh_config *c, const char *value, kh_error *err);

/* The value parsers behind the setters, shared with the grants' uid and
 * gid lists. kh_config_parse_uint: digits only in |base| (no sign, no
 * space), from |min| to |max|. */
KH_MUST_USE int kh_config_parse_uint(const char *value, unsigned long min, unsigned long max,
                                     int base, unsigned long *out, kh_error *err);
/* kh_config_parse_uid / _gid: a number, or a user / group name. */
KH_MUST_USE int kh_config_parse_uid(const char *value, uid_t *out, kh_error *err);
KH_MUST_USE int kh_config_parse_gid(const char *value, gid_t *out, kh_error *err);

#endif /* KH_CONFIG_H */

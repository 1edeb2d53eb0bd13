/* config.c: keyholdd's daemon configuration and its value checks. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

void kh_config_init(kh_config *c) {
  memset(c, 0, sizeof(*c));
  c->socket_mode = -1;
  kh_limits_default(&c->limits);
}

void kh_config_cleanup(kh_config *c) {
  free(c->file);
  free(c->socket_path);
  free(c->identities_dir);
  free(c->ticket_keys_file);
  memset(c, 0, sizeof(*c));
}

int kh_config_set_string(char **field, const char *value, kh_error *err) {
  if (value[0] == '\0') return kh_err(err, KH_ERR_INVALID_ARGUMENT, "must not be empty");
  char *copy = strdup(value);
  if (copy == NULL) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  free(*field);
  *field = copy;
  return 1;
}

int kh_config_parse_uint(const char *value, unsigned long min, unsigned long max, int base,
                         unsigned long *out, kh_error *err) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(value, &end, base);
  if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno != 0 || v < min || v > max)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "expected a number from %lu to %lu, found '%.60s'",
                  min, max, value);
  *out = v;
  return 1;
}

static int is_number(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return 0;
  return 1;
}

int kh_config_parse_uid(const char *value, uid_t *out, kh_error *err) {
  if (is_number(value)) {
    unsigned long v;
    if (!kh_config_parse_uint(value, 0, UINT_MAX - 1, 10, &v, err)) return 0;
    *out = (uid_t)v;
    return 1;
  }
  struct passwd *pw = getpwnam(value);
  if (pw == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown user '%.60s'", value);
  *out = pw->pw_uid;
  return 1;
}

int kh_config_parse_gid(const char *value, gid_t *out, kh_error *err) {
  if (is_number(value)) {
    unsigned long v;
    if (!kh_config_parse_uint(value, 0, UINT_MAX - 1, 10, &v, err)) return 0;
    *out = (gid_t)v;
    return 1;
  }
  struct group *gr = getgrnam(value);
  if (gr == NULL) return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown group '%.60s'", value);
  *out = gr->gr_gid;
  return 1;
}

int kh_config_set_socket_mode(kh_config *c, const char *value, kh_error *err) {
  unsigned long mode;
  if (!kh_config_parse_uint(value, 0, 0777, 8, &mode, err)) return 0;
  if (mode & 007)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%04lo lets every local user reach the socket (at most 0770)", mode);
  if ((mode & 0600) != 0600)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "%04lo: the owner needs read and write", mode);
  c->socket_mode = (int)mode;
  return 1;
}

int kh_config_set_socket_group(kh_config *c, const char *value, kh_error *err) {
  if (!kh_config_parse_gid(value, &c->socket_gid, err)) return 0;
  c->has_socket_gid = 1;
  return 1;
}

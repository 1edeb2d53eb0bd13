/* cli_util.h: what every `keyhold` sub-command shares: one way to fail,
 * strict numbers, HOST:PORT. */
#ifndef KH_CLI_UTIL_H
#define KH_CLI_UTIL_H

#include <stddef.h>

/* kh_cli_die prints "keyhold: MESSAGE" to stderr and exits 1. */
__attribute__((format(printf, 1, 2), noreturn)) void kh_cli_die(const char *fmt, ...);
/* kh_cli_fail prints the same and returns 1 (an exit status). */
__attribute__((format(printf, 1, 2))) int kh_cli_fail(const char *fmt, ...);
/* kh_cli_number parses a whole decimal number in [min, max] or dies naming |flag|. */
long kh_cli_number(const char *flag, const char *s, long min, long max);
/* kh_cli_split_hostport splits "host:port" or "[v6]:port" in place. */
int kh_cli_split_hostport(char *s, char **host, char **port);

#endif /* KH_CLI_UTIL_H */

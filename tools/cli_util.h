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

struct sockaddr_storage;
/* kh_cli_tcp_connect dials |host|:|port| (each address in turn): the fd, or
 * -1 with the reason in |msg|. */
int kh_cli_tcp_connect(const char *host, const char *port, char *msg, size_t len);
/* kh_cli_tcp_listen binds and listens on |host|:|port| (SO_REUSEADDR; PORT 0
 * picks one): the fd with the bound address in |bound| ("127.0.0.1:4321",
 * "[::1]:4321"), or -1 with the reason in |msg|. */
int kh_cli_tcp_listen(const char *host, const char *port, int backlog, char *bound,
                      size_t bound_len, char *msg, size_t len);
/* kh_cli_format_addr: "IP:PORT" or "[IPv6]:PORT" of a socket address. */
void kh_cli_format_addr(const struct sockaddr_storage *ss, char *out, size_t len);

#endif /* KH_CLI_UTIL_H */

/* cli_util.c: see cli_util.h. */
#include "cli_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 1, 0))) static void say(const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  fprintf(stderr, "keyhold: %s\n", line);
}

void kh_cli_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say(fmt, ap);
  va_end(ap);
  exit(1);
}

int kh_cli_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  say(fmt, ap);
  va_end(ap);
  return 1;
}

long kh_cli_number(const char *flag, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
    kh_cli_die("%s '%s': a whole number from %ld to %ld expected", flag, s, min, max);
  return v;
}

int kh_cli_split_hostport(char *s, char **host, char **port) {
  char *colon = strrchr(s, ':');
  if (colon == NULL) return 0;
  *colon = '\0';
  *port = colon + 1;
  *host = s;
  if (s[0] == '[' && colon > s && colon[-1] == ']') {
    colon[-1] = '\0';
    *host = s + 1;
  }
  return **port != '\0';
}

#include "kh_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "keyhold";
static kh_log_level g_level = KH_LOG_INFO;

static kh_log_level parse_level(const char *s) {
  if (s == NULL) return KH_LOG_INFO;
  if (strcmp(s, "debug") == 0) return KH_LOG_DEBUG;
  if (strcmp(s, "warn") == 0) return KH_LOG_WARN;
  if (strcmp(s, "error") == 0) return KH_LOG_ERROR;
  if (strcmp(s, "off") == 0) return KH_LOG_OFF;
  return KH_LOG_INFO;
}

void kh_log_init(const char *progname) {
  if (progname != NULL) g_prog = progname;
  g_level = parse_level(getenv("KEYHOLD_LOG_LEVEL"));
}

void kh_log_set_level(kh_log_level level) {
  g_level = level;
}

int kh_log_enabled(kh_log_level level) {
  return level >= g_level && level < KH_LOG_OFF;
}

void kh_log(kh_log_level level, const char *fmt, ...) {
  static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  if (!kh_log_enabled(level)) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char line[1024];
  int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (long)(tv.tv_usec / 1000), g_prog, (long)getpid(), names[level]);
  if (n < 0) return;
  if ((size_t)n < sizeof(line)) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
  }
  /* Control characters from untrusted strings must not forge log lines. */
  for (char *p = line; *p != '\0'; p++) {
    if ((unsigned char)*p < 0x20) *p = '?';
  }
  /* One write(2) per line: lines from the crypto worker threads and the
   * event loop never interleave. */
  size_t len = strlen(line);
  if (len > sizeof(line) - 2) len = sizeof(line) - 2;
  line[len++] = '\n';
  for (size_t off = 0; off < len;) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
}

#include "kh_log.h"

#include <ctype.h>
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
static kh_log_format g_format = KH_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const upper_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int kh_log_parse_level(const char *s, kh_log_level *out) {
  for (int i = KH_LOG_DEBUG; s != NULL && i <= KH_LOG_OFF; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (kh_log_level)i;
      return 1;
    }
  }
  return 0;
}

int kh_log_parse_format(const char *s, kh_log_format *out) {
  if (s != NULL && strcmp(s, "text") == 0)
    *out = KH_LOG_TEXT;
  else if (s != NULL && strcmp(s, "json") == 0)
    *out = KH_LOG_JSON;
  else
    return 0;
  return 1;
}

int kh_log_init(const char *progname) {
  if (progname != NULL) g_prog = progname;
  const char *level = getenv("KEYHOLD_LOG_LEVEL"), *format = getenv("KEYHOLD_LOG_FORMAT");
  int ok = 1;
  if (level != NULL && !kh_log_parse_level(level, &g_level)) ok = 0;
  if (format != NULL && !kh_log_parse_format(format, &g_format)) ok = 0;
  return ok;
}

void kh_log_set_level(kh_log_level level) {
  g_level = level;
}

void kh_log_set_format(kh_log_format format) {
  g_format = format;
}

int kh_log_enabled(kh_log_level level) {
  return level >= g_level && level < KH_LOG_OFF;
}

/* A bounded writer: what does not fit is cut, the result stays a C string. */
typedef struct {
  char *p;
  size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n) {
  if (o->cap == 0) return;
  size_t room = o->cap - 1 - o->len;
  if (n > room) n = room;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void puts_(out_buf *o, const char *s) {
  put(o, s, strlen(s));
}

/* put_json_string: |s|[0..n) as a JSON string (control characters were
 * already replaced; quotes and backslashes are escaped). */
static void put_json_string(out_buf *o, const char *s, size_t n) {
  put(o, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') put(o, "\\", 1);
    put(o, &s[i], 1);
  }
  put(o, "\"", 1);
}

static int reserved(const char *k, size_t n) {
  static const char *const names[] = {"time", "prog", "pid", "level", "msg"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && memcmp(names[i], k, n) == 0) return 1;
  return 0;
}

/* put_pairs: every key=value and key="value" of |msg| as a JSON member. */
static void put_pairs(out_buf *o, const char *msg) {
  const char *p = msg;
  while (*p != '\0') {
    while (*p == ' ') p++;
    const char *k = p;
    while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_') p++;
    size_t klen = (size_t)(p - k);
    if (klen == 0 || *p != '=' || !islower((unsigned char)*k)) {
      while (*p != '\0' && *p != ' ') p++; /* not a pair: skip the word */
      continue;
    }
    p++;
    const char *v = p;
    size_t vlen;
    if (*p == '"') {
      v = ++p;
      while (*p != '\0' && *p != '"') p++;
      vlen = (size_t)(p - v);
      if (*p == '"') p++;
    } else {
      while (*p != '\0' && *p != ' ') p++;
      vlen = (size_t)(p - v);
    }
    if (reserved(k, klen)) continue;
    put(o, ",", 1);
    put_json_string(o, k, klen);
    put(o, ":", 1);
    put_json_string(o, v, vlen);
  }
}

void kh_log_format_line(char *out, size_t cap, kh_log_format format, const char *prog, long pid,
                        kh_log_level level, const char *time, const char *msg) {
  out_buf o = {out, cap, 0};
  if (cap > 0) out[0] = '\0';
  char num[32];
  snprintf(num, sizeof(num), "%ld", pid);
  const char *lv = upper_names[level < KH_LOG_OFF ? level : KH_LOG_ERROR];
  if (format == KH_LOG_TEXT) {
    puts_(&o, time), puts_(&o, " "), puts_(&o, prog), puts_(&o, "["), puts_(&o, num);
    puts_(&o, "] "), puts_(&o, lv), puts_(&o, " "), puts_(&o, msg);
    return;
  }
  /* Keep room for the closing brace whatever the message's length. */
  if (cap < 2) return;
  o.cap = cap - 1;
  puts_(&o, "{\"time\":\""), puts_(&o, time), puts_(&o, "\",\"prog\":");
  put_json_string(&o, prog, strlen(prog));
  puts_(&o, ",\"pid\":"), puts_(&o, num), puts_(&o, ",\"level\":\""), puts_(&o, lv);
  puts_(&o, "\",\"msg\":");
  put_json_string(&o, msg, strlen(msg));
  put_pairs(&o, msg);
  o.cap = cap;
  put(&o, "}", 1);
}

void kh_log(kh_log_level level, const char *fmt, ...) {
  if (!kh_log_enabled(level)) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char when[80];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  /* Control characters from untrusted strings must not forge log lines. */
  for (char *p = msg; *p != '\0'; p++) {
    if ((unsigned char)*p < 0x20) *p = '?';
  }
  /* Big enough for any JSON rendering of a 1 KiB message (each byte at
   * most twice in "msg", twice more as pair values). */
  char line[6144];
  kh_log_format_line(line, sizeof(line) - 1, g_format, g_prog, (long)getpid(), level, when, msg);
  /* One write(2) per line: lines from the crypto worker threads and the
   * event loop never interleave. */
  size_t len = strlen(line);
  line[len++] = '\n';
  for (size_t off = 0; off < len;) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
}

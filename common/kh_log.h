/* kh_log.h: the one logger. One line per event on stderr, either text:
 *   2026-11-22T12:00:00.123Z keyholdd[pid] LEVEL msg key=value ...
 * or JSON, one object per line with the same fields:
 *   {"time":"2026-11-22T12:00:00.123Z","prog":"keyholdd","pid":7,
 *    "level":"INFO","msg":"msg key=value ...","key":"value",...}
 * (every key=value / key="value" pair of the message becomes a field too).
 * Never pass secret material (keys, traffic secrets, tokens) to it.
 * The threshold comes from KEYHOLD_LOG_LEVEL (debug|info|warn|error|off),
 * default info; the format from KEYHOLD_LOG_FORMAT (text|json), default
 * text. */
#ifndef KH_LOG_H
#define KH_LOG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KH_LOG_DEBUG = 0, KH_LOG_INFO, KH_LOG_WARN, KH_LOG_ERROR, KH_LOG_OFF } kh_log_level;
typedef enum { KH_LOG_TEXT = 0, KH_LOG_JSON } kh_log_format;

/* The accepted names, for usage and error messages. */
#define KH_LOG_LEVELS "debug|info|warn|error|off"
#define KH_LOG_FORMATS "text|json"

/* kh_log_init sets the program name shown in each line and reads
 * KEYHOLD_LOG_LEVEL and KEYHOLD_LOG_FORMAT. Safe to skip: defaults are
 * "keyhold", info and text. Returns 0 (and keeps the defaults) if either
 * variable holds an unknown name, so a program can refuse to start. */
int kh_log_init(const char *progname);
/* kh_log_parse_level / _format: 1 and |*out| set, or 0 for an unknown name. */
int kh_log_parse_level(const char *s, kh_log_level *out);
int kh_log_parse_format(const char *s, kh_log_format *out);
void kh_log_set_level(kh_log_level level);
void kh_log_set_format(kh_log_format format);
int kh_log_enabled(kh_log_level level);
void kh_log(kh_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* kh_log_format_line renders one line (no newline) into |out|: what kh_log
 * writes, with the time given. For tests. */
void kh_log_format_line(char *out, size_t cap, kh_log_format format, const char *prog, long pid,
                        kh_log_level level, const char *time, const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* KH_LOG_H */

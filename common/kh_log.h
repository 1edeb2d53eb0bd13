/* kh_log.h: the one logger. One line per event on stderr:
 *   2026-11-22T12:00:00.123Z keyholdd[pid] LEVEL msg key=value ...
 * Never pass secret material (keys, traffic secrets, tokens) to it.
 * The threshold comes from KEYHOLD_LOG_LEVEL (debug|info|warn|error|off),
 * default info. */
#ifndef KH_LOG_H
#define KH_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KH_LOG_DEBUG = 0, KH_LOG_INFO, KH_LOG_WARN, KH_LOG_ERROR, KH_LOG_OFF } kh_log_level;

/* kh_log_init sets the program name shown in each line and reads
 * KEYHOLD_LOG_LEVEL. Safe to skip: defaults are "keyhold" and info. */
void kh_log_init(const char *progname);
void kh_log_set_level(kh_log_level level);
int kh_log_enabled(kh_log_level level);
void kh_log(kh_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif /* KH_LOG_H */

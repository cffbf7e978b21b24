/*
 * eg_log.h — the one logging call. Log ids, never payloads or keys (STYLE §9).
 */
#ifndef EG_LOG_H
#define EG_LOG_H

enum eg_log_level { EG_LOG_ERROR = 0, EG_LOG_WARN, EG_LOG_INFO, EG_LOG_DEBUG };

/* Messages above this level are dropped. Default EG_LOG_INFO. */
void eg_log_set_level(enum eg_log_level level);
/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int eg_log_level_parse(const char *s);

/* Writes "<UTC time> <level> <message>\n" to stderr, one line, thread-safe. */
void log_msg(enum eg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

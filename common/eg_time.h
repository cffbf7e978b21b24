/*
 * eg_time.h — instants as int64 milliseconds since the Unix epoch (UTC).
 * Times are compared as instants, never as strings (SPEC §2).
 */
#ifndef EG_TIME_H
#define EG_TIME_H

#include <stdint.h>

#define EG_TIME_STRLEN 25 /* "2026-11-24T06:30:00.123Z" + NUL */

/* Current wall-clock time in ms since the epoch. */
int64_t eg_now_ms(void);
/* Monotonic clock in ms, for timeouts. */
int64_t eg_mono_ms(void);
/* Monotonic clock in µs, for latency measurements. */
int64_t eg_mono_us(void);

/* Parses an RFC 3339 date-time with offset ("Z", "z" or "+HH:MM"/"-HH:MM"),
 * optional fraction of any length (truncated to ms), 'T' or 't' separator.
 * Validates ranges (month 1-12, day within month incl. leap years, hour
 * 0-23, minute 0-59, second 0-60 where 60 is treated as 59.999).
 * The instant (after the offset) must lie in years 0000-9999 UTC, so that
 * eg_time_format writes it back unchanged.
 * Returns 0 and sets *ms, or -1 if s is not such a timestamp. */
int eg_time_parse(const char *s, int64_t *ms);

/* Parses a full date "YYYY-MM-DD" (FHIR date): *ms = 00:00:00 UTC that day.
 * Returns 0 or -1. */
int eg_date_parse(const char *s, int64_t *ms);

/* Formats ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out[EG_TIME_STRLEN]. */
void eg_time_format(int64_t ms, char out[EG_TIME_STRLEN]);

#endif

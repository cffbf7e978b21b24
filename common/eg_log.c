/*
 * eg_log.c — line-buffered logging to stderr with UTC timestamps.
 */
#include "eg_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum eg_log_level log_level = EG_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void eg_log_set_level(enum eg_log_level level) { log_level = level; }

int eg_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void log_msg(enum eg_log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level > log_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level]);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* a value from the wire (a message id, say) must not forge log lines:
     * control characters become '?' */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    /* one fputs per line: stdio locks the stream, so lines never interleave;
     * a line cut at the buffer's end keeps its newline */
    {
        size_t l = strlen(line);
        if (l >= sizeof line - 1)
            l = sizeof line - 2;
        line[l] = '\n';
        line[l + 1] = '\0';
    }
    fputs(line, stderr);
}

/*
 * eg_time.c — RFC 3339 timestamps <-> int64 milliseconds since the epoch (UTC).
 *
 * Calendar arithmetic is done here (proleptic Gregorian days-from-civil and
 * its inverse), never through mktime/timegm, so the result does not depend
 * on TZ or on the C library's range of time_t. Grammar: RFC 3339 §5.6
 * date-time, years 0000-9999.
 */
#include "eg_time.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define MS_PER_DAY 86400000LL
/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in ms (the format range). */
#define EG_TIME_MIN_MS (-62167219200000LL)
#define EG_TIME_MAX_MS (253402300799999LL)

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;

    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t eg_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t eg_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t eg_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && is_leap(y))
        return 29;
    return dim[m - 1];
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d. The year is
 * shifted to start in March so the leap day is the last day of the shifted
 * year; eras are 400-year cycles of 146097 days. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    if (m <= 2)
        y -= 1;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;                                   /* [0, 399] */
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468; /* 719468 = days from 0000-03-01 to 1970-01-01 */
}

/* Inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;                                      /* [0, 146096] */
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2 ? 1 : 0);
}

/* Reads exactly n decimal digits at s; returns the value or -1. */
static int digits(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Parses "YYYY-MM-DD" at s (10 chars) into days since the epoch. */
static int parse_full_date(const char *s, int64_t *days)
{
    int y, m, d;

    y = digits(s, 4);
    if (y < 0 || s[4] != '-')
        return -1;
    m = digits(s + 5, 2);
    if (m < 1 || m > 12 || s[7] != '-')
        return -1;
    d = digits(s + 8, 2);
    if (d < 1 || d > days_in_month(y, m))
        return -1;
    *days = days_from_civil(y, m, d);
    return 0;
}

int eg_time_parse(const char *s, int64_t *ms)
{
    int64_t days, t;
    int hh, mi, ss, frac = 0, fdigits = 0, sign, oh, om;
    const char *p;

    if (s == NULL || ms == NULL)
        return -1;
    /* full-date "T" partial-time: 19 fixed characters before fraction/offset.
     * Each digits() stops at a NUL, so short strings are never over-read. */
    if (parse_full_date(s, &days) != 0 || (s[10] != 'T' && s[10] != 't'))
        return -1;
    hh = digits(s + 11, 2);
    if (hh < 0 || hh > 23 || s[13] != ':')
        return -1;
    mi = digits(s + 14, 2);
    if (mi < 0 || mi > 59 || s[16] != ':')
        return -1;
    ss = digits(s + 17, 2);
    if (ss < 0 || ss > 60)
        return -1;
    p = s + 19;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fdigits < 3)
                frac = frac * 10 + (*p - '0');
            fdigits++;
            p++;
        }
        if (fdigits == 0)
            return -1; /* time-secfrac = "." 1*DIGIT */
        for (; fdigits < 3; fdigits++)
            frac *= 10;
    }
    if (ss == 60) { /* leap second: the instant is taken as :59.999 */
        ss = 59;
        frac = 999;
    }
    if (*p == 'Z' || *p == 'z') {
        sign = 0;
        oh = om = 0;
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = (*p == '-') ? -1 : 1;
        oh = digits(p + 1, 2);
        if (oh < 0 || oh > 23 || p[3] != ':')
            return -1;
        om = digits(p + 4, 2);
        if (om < 0 || om > 59)
            return -1;
        p += 6;
    } else {
        return -1; /* time-offset is mandatory */
    }
    if (*p != '\0')
        return -1;
    t = days * MS_PER_DAY + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000 + frac;
    /* local = UTC + offset, so UTC = local - offset */
    t -= (int64_t)sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    /* an offset can move the instant out of years 0000-9999, which
     * eg_time_format could not write back as it is: refused */
    if (t < EG_TIME_MIN_MS || t > EG_TIME_MAX_MS)
        return -1;
    *ms = t;
    return 0;
}

int eg_date_parse(const char *s, int64_t *ms)
{
    int64_t days;
    int i;

    if (s == NULL || ms == NULL)
        return -1;
    for (i = 0; i < 10; i++)
        if (s[i] == '\0')
            return -1;
    if (s[10] != '\0' || parse_full_date(s, &days) != 0)
        return -1;
    *ms = days * MS_PER_DAY;
    return 0;
}

/* Writes v as exactly n decimal digits (v >= 0, v < 10^n). */
static void put_digits(char *out, int64_t v, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void eg_time_format(int64_t ms, char out[EG_TIME_STRLEN])
{
    int64_t days, rem, y;
    int m, d;

    /* Clamp to what the 4-digit-year format can express. */
    if (ms < EG_TIME_MIN_MS)
        ms = EG_TIME_MIN_MS;
    if (ms > EG_TIME_MAX_MS)
        ms = EG_TIME_MAX_MS;
    days = ms / MS_PER_DAY;
    rem = ms % MS_PER_DAY;
    if (rem < 0) { /* floor division for instants before 1970 */
        rem += MS_PER_DAY;
        days -= 1;
    }
    civil_from_days(days, &y, &m, &d);
    put_digits(out, y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, rem / 3600000, 2);
    out[13] = ':';
    put_digits(out + 14, rem / 60000 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, rem / 1000 % 60, 2);
    out[19] = '.';
    put_digits(out + 20, rem % 1000, 3);
    out[23] = 'Z';
    out[24] = '\0';
}

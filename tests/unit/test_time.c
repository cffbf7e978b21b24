/*
 * test_time.c — CUnit tests for common/eg_time: RFC 3339 parsing with
 * offsets, FHIR dates, formatting, and the clocks. Expected epoch values
 * were computed independently (Python datetime), not with this code.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "eg_time.h"

static const struct {
    const char *s;
    int64_t ms;
} good[] = {
    {"2026-11-24T06:30:00.123Z", 1795501800123LL},
    {"2026-11-24T06:30:00.123z", 1795501800123LL},
    {"2026-11-24t06:30:00.123Z", 1795501800123LL},
    {"2026-11-24T06:30:00.123+00:00", 1795501800123LL},
    {"2026-11-24T06:30:00.123-00:00", 1795501800123LL},
    {"2026-11-24T06:30:00.123456789Z", 1795501800123LL}, /* truncated to ms */
    {"2026-11-24T06:30:00.1239Z", 1795501800123LL},      /* truncated, not rounded */
    {"2026-11-24T06:30:00.1Z", 1795501800100LL},
    {"2026-11-24T06:30:00.12Z", 1795501800120LL},
    {"2026-11-24T06:30:00Z", 1795501800000LL},
    {"2026-11-24T06:30:00+05:30", 1795482000000LL},
    {"2026-11-24T06:30:00-09:45", 1795536900000LL},
    {"1970-01-01T00:00:00Z", 0},
    {"1970-01-01T01:00:00+01:00", 0},
    {"1969-12-31T23:59:59.999Z", -1},
    {"1969-12-31T19:00:00-05:00", 0}, /* crosses midnight and the year */
    {"2024-02-29T12:00:00Z", 1709208000000LL},
    {"2026-12-31T23:30:00-01:00", 1798763400000LL}, /* = 2027-01-01T00:30Z */
    {"2027-01-01T00:30:00+01:00", 1798759800000LL}, /* = 2026-12-31T23:30Z */
    {"2000-03-01T00:00:00Z", 951868800000LL},
    {"1900-03-01T00:00:00Z", -2203891200000LL},
    {"0000-01-01T00:00:00Z", -62167219200000LL},
    {"0001-01-01T00:00:00Z", -62135596800000LL},
    {"9999-12-31T23:59:59.999Z", 253402300799999LL},
    {"2026-11-24T23:59:60Z", 1795564799999LL}, /* leap second -> :59.999 */
    {"2026-11-24T23:59:60.5Z", 1795564799999LL},
    {"2026-11-24T06:30:00.000+23:59", 1795501800000LL - (23 * 3600 + 59 * 60) * 1000LL},
};

static const char *bad_stamps[] = {
    "",
    "2026-11-24T06:30:00",     /* no offset */
    "2026-11-24T06:30:00.123", /* no offset */
    "2026-11-24 06:30:00Z",    /* space separator */
    "2026-11-24T06:30Z",       /* no seconds */
    "2026-11-24",              /* date only */
    "2026-02-29T00:00:00Z",    /* not a leap year */
    "2100-02-29T00:00:00Z",    /* century, not a leap year */
    "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-01T00:00:00Z",
    "2026-11-00T00:00:00Z",
    "2026-11-24T24:00:00Z",
    "2026-11-24T06:60:00Z",
    "2026-11-24T06:30:61Z",
    "2026-11-24T06:30:00.Z",    /* empty fraction */
    "2026-11-24T06:30:00,123Z", /* comma */
    "2026-11-24T06:30:00+0530", /* offset without colon */
    "2026-11-24T06:30:00+05",
    "2026-11-24T06:30:00+24:00",
    "2026-11-24T06:30:00+05:60",
    "2026-11-24T06:30:00ZZ", /* trailing data */
    "2026-11-24T06:30:00Z ",
    " 2026-11-24T06:30:00Z",
    "26-11-24T06:30:00Z",
    "20261-11-24T06:30:00Z",
    "2026-1-24T06:30:00Z",
    "2026-11-24T6:30:00Z",
    "+2026-11-24T06:30:00Z",
    "-2026-11-24T06:30:00Z",
    "2026/11/24T06:30:00Z",
    "2026-11-24T06:30:00.12a3Z",
    "2026-11-24T06:30:00UTC",
    "2026-11-24T06:30:00+05:30Z",
};

static void test_parse_good(void)
{
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = 42;
        int rc = eg_time_parse(good[i].s, &ms);
        if (rc != 0 || ms != good[i].ms)
            fprintf(stderr, "\n  %s -> rc %d ms %lld (want %lld)\n", good[i].s, rc, (long long)ms,
                    (long long)good[i].ms);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(ms, good[i].ms);
    }
}

static void test_parse_bad(void)
{
    size_t i;
    int64_t ms;

    for (i = 0; i < sizeof bad_stamps / sizeof bad_stamps[0]; i++) {
        int rc = eg_time_parse(bad_stamps[i], &ms);
        if (rc != -1)
            fprintf(stderr, "\n  accepted bad timestamp \"%s\"\n", bad_stamps[i]);
        CU_ASSERT_EQUAL(rc, -1);
    }
    CU_ASSERT_EQUAL(eg_time_parse(NULL, &ms), -1);
    /* an offset that moves the instant out of years 0000-9999 (found by
     * fuzz_request): refused, so every accepted time formats back as is */
    CU_ASSERT_EQUAL(eg_time_parse("9999-12-31T23:59:59-05:00", &ms), -1);
    CU_ASSERT_EQUAL(eg_time_parse("0000-01-01T00:00:00+01:00", &ms), -1);
    CU_ASSERT_EQUAL(eg_time_parse("9999-12-31T23:59:59+05:00", &ms), 0);
    CU_ASSERT_EQUAL(eg_time_parse("0000-01-01T00:00:00-01:00", &ms), 0);
}

static void test_parse_truncated_prefixes(void)
{
    /* Every proper prefix of a valid timestamp must be rejected (and not
     * over-read; the sanitizer build checks that part). */
    const char *full = "2026-11-24T06:30:00.123+05:30";
    char buf[64];
    size_t n;
    int64_t ms;

    for (n = 0; n < strlen(full); n++) {
        memcpy(buf, full, n);
        buf[n] = '\0';
        CU_ASSERT_EQUAL(eg_time_parse(buf, &ms), -1);
    }
    CU_ASSERT_EQUAL(eg_time_parse(full, &ms), 0);
}

static void test_instants_not_strings(void)
{
    int64_t a, b;

    /* Same instant written three ways. */
    CU_ASSERT_EQUAL(eg_time_parse("2026-11-24T06:30:00Z", &a), 0);
    CU_ASSERT_EQUAL(eg_time_parse("2026-11-24T07:30:00+01:00", &b), 0);
    CU_ASSERT_EQUAL(a, b);
    CU_ASSERT_EQUAL(eg_time_parse("2026-11-23T20:30:00-10:00", &b), 0);
    CU_ASSERT_EQUAL(a, b);
}

static void test_date_parse(void)
{
    int64_t ms;

    CU_ASSERT_EQUAL(eg_date_parse("2026-11-24", &ms), 0);
    CU_ASSERT_EQUAL(ms, 1795478400000LL);
    CU_ASSERT_EQUAL(eg_date_parse("1970-01-01", &ms), 0);
    CU_ASSERT_EQUAL(ms, 0);
    CU_ASSERT_EQUAL(eg_date_parse("2024-02-29", &ms), 0);
    CU_ASSERT_EQUAL(ms, 1709164800000LL);
    CU_ASSERT_EQUAL(eg_date_parse("2000-02-29", &ms), 0);
    CU_ASSERT_EQUAL(eg_date_parse("2026-02-29", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("1900-02-29", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("2026-11-24T00:00:00Z", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("2026-11", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("2026-11-2", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("2026-11-24 ", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("2026-13-01", &ms), -1);
    CU_ASSERT_EQUAL(eg_date_parse("", &ms), -1);
}

static void test_format(void)
{
    char out[EG_TIME_STRLEN];

    eg_time_format(1795501800123LL, out);
    CU_ASSERT_STRING_EQUAL(out, "2026-11-24T06:30:00.123Z");
    eg_time_format(0, out);
    CU_ASSERT_STRING_EQUAL(out, "1970-01-01T00:00:00.000Z");
    eg_time_format(-1, out);
    CU_ASSERT_STRING_EQUAL(out, "1969-12-31T23:59:59.999Z");
    eg_time_format(1709208000000LL, out);
    CU_ASSERT_STRING_EQUAL(out, "2024-02-29T12:00:00.000Z");
    eg_time_format(951868800000LL, out);
    CU_ASSERT_STRING_EQUAL(out, "2000-03-01T00:00:00.000Z");
    eg_time_format(-62167219200000LL, out);
    CU_ASSERT_STRING_EQUAL(out, "0000-01-01T00:00:00.000Z");
    eg_time_format(253402300799999LL, out);
    CU_ASSERT_STRING_EQUAL(out, "9999-12-31T23:59:59.999Z");
    /* out of the 4-digit-year range: clamped */
    eg_time_format(INT64_MIN, out);
    CU_ASSERT_STRING_EQUAL(out, "0000-01-01T00:00:00.000Z");
    eg_time_format(INT64_MAX, out);
    CU_ASSERT_STRING_EQUAL(out, "9999-12-31T23:59:59.999Z");
}

static void test_format_parse_roundtrip(void)
{
    /* Every day boundary of 0000..9999 would be slow; step ~ 7.3 days with
     * an odd ms part so that all months, leap days and eras are crossed. */
    int64_t t;
    unsigned long bad = 0;

    for (t = -62167219200000LL; t <= 253402300799999LL; t += 631152000LL + 12345) {
        char out[EG_TIME_STRLEN];
        int64_t back = 0;
        eg_time_format(t, out);
        if (eg_time_parse(out, &back) != 0 || back != t)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_clocks(void)
{
    int64_t now = eg_now_ms();
    int64_t m1 = eg_mono_ms(), m2;

    CU_ASSERT(now > 1700000000000LL); /* after 2023-11 */
    m2 = eg_mono_ms();
    CU_ASSERT(m2 >= m1);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("time", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "parse valid RFC 3339", test_parse_good) ||
        !CU_add_test(s, "reject invalid RFC 3339", test_parse_bad) ||
        !CU_add_test(s, "reject truncated prefixes", test_parse_truncated_prefixes) ||
        !CU_add_test(s, "instants not strings", test_instants_not_strings) ||
        !CU_add_test(s, "date parse", test_date_parse) || !CU_add_test(s, "format", test_format) ||
        !CU_add_test(s, "format/parse round trip 0000..9999", test_format_parse_roundtrip) ||
        !CU_add_test(s, "clocks", test_clocks)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

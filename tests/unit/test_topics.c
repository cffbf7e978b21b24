/*
 * test_topics.c — gateway/eg_topics: the SPEC §3 topic tree.
 *
 * Parsing of good topics next to broken ones (wrong prefix, missing or
 * extra levels, invalid or over-long ids, wildcards), the builders and
 * their truncation, and the subscription filters.
 */
#include <CUnit/Basic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "eg_topics.h"
#include "eg_testutil.h"

/* Row size of the filters array in eg_topic_filters()'s prototype. */
#ifdef EG_TOPIC_FILTER_MAX
#define FILTER_LEN EG_TOPIC_FILTER_MAX
#else
#define FILTER_LEN 96
#endif

/* ---- helpers ---------------------------------------------------------- */

/* Parses topic under prefix and checks the kind and the id. */
static void expect_parse(const char *prefix, const char *topic, enum eg_topic_kind kind,
                         const char *id, unsigned line)
{
    char got[65];
    enum eg_topic_kind k;

    memset(got, 'Z', sizeof got);
    k = eg_topic_parse(prefix, topic, got);
    check_at(line, k == kind, "\"%s\" under \"%s\": kind %d, want %d", topic, prefix, k, kind);
    check_at(line, memchr(got, '\0', sizeof got) != NULL, "\"%s\": id not terminated", topic);
    if (memchr(got, '\0', sizeof got))
        check_at(line, strcmp(got, id) == 0, "\"%s\": id \"%s\", want \"%s\"", topic, got, id);
}
#define GOOD(prefix, topic, kind, id) expect_parse((prefix), (topic), (kind), (id), __LINE__)
#define BAD(prefix, topic) expect_parse((prefix), (topic), EG_T_UNKNOWN, "", __LINE__)

/* ---- tests ------------------------------------------------------------ */

static void test_parse_good(void)
{
    char topic[128], id64[65];

    GOOD("ehr", "ehr/device/D1/telemetry", EG_T_DEVICE_TELEMETRY, "D1");
    GOOD("ehr", "ehr/device/a-B_9.z/telemetry", EG_T_DEVICE_TELEMETRY, "a-B_9.z");
    GOOD("ehr", "ehr/hospital/H1/records", EG_T_HOSPITAL_RECORDS, "H1");
    GOOD("ehr", "ehr/anchor/gw1/request", EG_T_ANCHOR_REQUEST, "gw1");
    GOOD("ehr", "ehr/patient/P1/consent", EG_T_PATIENT_CONSENT, "P1");
    GOOD("ehr", "ehr/patient/P1/request", EG_T_PATIENT_REQUEST, "P1");
    GOOD("ehr", "ehr/feed/authority/request", EG_T_FEED_REQUEST, "authority");
    GOOD("ehr", "ehr/admin/request", EG_T_ADMIN_REQUEST, "");
    GOOD("clinic.a", "clinic.a/device/D1/telemetry", EG_T_DEVICE_TELEMETRY, "D1");
    GOOD("ehr", "ehr/device/x/telemetry", EG_T_DEVICE_TELEMETRY, "x");

    memset(id64, 'd', 64);
    id64[64] = '\0';
    snprintf(topic, sizeof topic, "ehr/device/%s/telemetry", id64);
    GOOD("ehr", topic, EG_T_DEVICE_TELEMETRY, id64);
}

static void test_parse_bad(void)
{
    char topic[160], id65[66];

    /* wrong prefix */
    BAD("ehr", "ehrx/device/D1/telemetry");
    BAD("ehr", "eh/device/D1/telemetry");
    BAD("ehr", "EHR/device/D1/telemetry");
    BAD("ehr", "/ehr/device/D1/telemetry");
    BAD("ehr", "device/D1/telemetry");
    BAD("clinic", "ehr/device/D1/telemetry");
    BAD("ehr", "ehr");
    BAD("ehr", "ehr/");
    BAD("ehr", "");
    /* missing levels */
    BAD("ehr", "ehr/device/D1");
    BAD("ehr", "ehr/device/D1/");
    BAD("ehr", "ehr/device/");
    BAD("ehr", "ehr/device");
    BAD("ehr", "ehr/device//telemetry");
    BAD("ehr", "ehr//D1/telemetry");
    /* extra levels and wrong leaves */
    BAD("ehr", "ehr/device/D1/telemetry/x");
    BAD("ehr", "ehr/device/D1/telemetry/");
    BAD("ehr", "ehr/device/D1/x/telemetry");
    BAD("ehr", "ehr/device/D1/receipts");
    BAD("ehr", "ehr/device/D1/Telemetry");
    BAD("ehr", "ehr/device/D1/telemetryx");
    BAD("ehr", "ehr/hospital/H1/telemetry");
    BAD("ehr", "ehr/hospital/H1/receipts");
    BAD("ehr", "ehr/anchor/gw1/replies");
    BAD("ehr", "ehr/anchor/gw1/blocks");
    BAD("ehr", "ehr/devices/D1/telemetry");
    BAD("ehr", "ehr/patient/P1/replies");
    BAD("ehr", "ehr/patient/P1/consent/x");
    BAD("ehr", "ehr/patient/a b/consent");
    BAD("ehr", "ehr/feed/authority");
    BAD("ehr", "ehr/feed/authority/replies");
    BAD("ehr", "ehr/admin/replies");
    BAD("ehr", "ehr/admin/request/x");
    BAD("ehr", "ehr/admin");
    /* invalid ids */
    BAD("ehr", "ehr/device/a b/telemetry");
    BAD("ehr", "ehr/device/a+b/telemetry");
    BAD("ehr", "ehr/device/+/telemetry");
    BAD("ehr", "ehr/device/#");
    BAD("ehr", "ehr/device/D\xc3\xa9/telemetry");
    BAD("ehr", "ehr/device/D:1/telemetry");
    memset(id65, 'd', 65);
    id65[65] = '\0';
    snprintf(topic, sizeof topic, "ehr/device/%s/telemetry", id65);
    BAD("ehr", topic);
    snprintf(topic, sizeof topic, "ehr/anchor/%s/request", id65);
    BAD("ehr", topic);
}

static void test_builders(void)
{
    char buf[128];

    CU_ASSERT_EQUAL(eg_topic_device_receipts(buf, sizeof buf, "ehr", "D1"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/device/D1/receipts");
    CU_ASSERT_EQUAL(eg_topic_hospital_receipts(buf, sizeof buf, "ehr", "H1"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/hospital/H1/receipts");
    CU_ASSERT_EQUAL(eg_topic_status(buf, sizeof buf, "ehr", "gw1"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/gateway/gw1/status");
    CU_ASSERT_EQUAL(eg_topic_stats(buf, sizeof buf, "clinic", "gw1"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "clinic/gateway/gw1/stats");
    CU_ASSERT_EQUAL(eg_topic_anchor(buf, sizeof buf, "ehr", "gw1", "blocks"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/anchor/gw1/blocks");
    CU_ASSERT_EQUAL(eg_topic_anchor(buf, sizeof buf, "ehr", "gw1", "head"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/anchor/gw1/head");
    CU_ASSERT_EQUAL(eg_topic_anchor(buf, sizeof buf, "ehr", "gw1", "replies"), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ehr/anchor/gw1/replies");
}

static void test_builders_truncate(void)
{
    const char *want = "ehr/device/D1/receipts"; /* 22 chars */
    char buf[64];

    /* exactly enough room (22 + NUL) */
    CU_ASSERT_EQUAL(eg_topic_device_receipts(buf, 23, "ehr", "D1"), 0);
    CU_ASSERT_STRING_EQUAL(buf, want);
    /* one byte short: -1, and never a write past size */
    memset(buf, 'Q', sizeof buf);
    CU_ASSERT_EQUAL(eg_topic_device_receipts(buf, 22, "ehr", "D1"), -1);
    CU_ASSERT_EQUAL(buf[22], 'Q');
    CU_ASSERT_EQUAL(eg_topic_device_receipts(buf, 1, "ehr", "D1"), -1);
    CU_ASSERT_EQUAL(eg_topic_device_receipts(buf, 0, "ehr", "D1"), -1);
    CU_ASSERT_EQUAL(eg_topic_hospital_receipts(buf, 10, "ehr", "H1"), -1);
    CU_ASSERT_EQUAL(eg_topic_status(buf, 22, "ehr", "gw1"), -1); /* needs 23 */
    CU_ASSERT_EQUAL(eg_topic_status(buf, 23, "ehr", "gw1"), 0);
    CU_ASSERT_EQUAL(eg_topic_stats(buf, 21, "ehr", "gw1"), -1); /* needs 22 */
    CU_ASSERT_EQUAL(eg_topic_stats(buf, 22, "ehr", "gw1"), 0);
    CU_ASSERT_EQUAL(eg_topic_anchor(buf, 21, "ehr", "gw1", "blocks"), -1); /* needs 22 */
    CU_ASSERT_EQUAL(eg_topic_anchor(buf, 22, "ehr", "gw1", "blocks"), 0);
}

static void test_filters(void)
{
    char f[8][FILTER_LEN];
    int n;

    n = eg_topic_filters("ehr", "gw1", f, 8);
    CU_ASSERT_EQUAL_FATAL(n, 7);
    CU_ASSERT_STRING_EQUAL(f[0], "ehr/device/+/telemetry");
    CU_ASSERT_STRING_EQUAL(f[1], "ehr/hospital/+/records");
    CU_ASSERT_STRING_EQUAL(f[2], "ehr/anchor/gw1/request");
    CU_ASSERT_STRING_EQUAL(f[3], "ehr/patient/+/consent");
    CU_ASSERT_STRING_EQUAL(f[4], "ehr/patient/+/request");
    CU_ASSERT_STRING_EQUAL(f[5], "ehr/feed/+/request");
    CU_ASSERT_STRING_EQUAL(f[6], "ehr/admin/request");
    n = eg_topic_filters("ehr", "gw1", f, 1);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(eg_topic_filters("ehr", "gw1", f, 0), 0);
    /* every filter parses back as the kind it subscribes to */
    {
        char id[65];
        n = eg_topic_filters("ehr", "gw1", f, 8);
        CU_ASSERT_EQUAL(eg_topic_parse("ehr", f[2], id), EG_T_ANCHOR_REQUEST);
        CU_ASSERT_STRING_EQUAL(id, "gw1");
    }
}

/* topic_prefix and name may each be 64 characters (eg_config_validate
 * accepts them); the filters must then be complete, or the function must
 * say it could not build them, never subscribe to a cut-off filter. */
static void test_filters_long_ids(void)
{
    char f[8][FILTER_LEN], prefix[65], name[65], want[200];
    int n;

    memset(prefix, 'p', 64);
    prefix[64] = '\0';
    memset(name, 'n', 64);
    name[64] = '\0';
    n = eg_topic_filters(prefix, name, f, 8);
    snprintf(want, sizeof want, "%s/anchor/%s/request", prefix, name);
    CHECKF(n < 3 || strcmp(f[2], want) == 0,
           "anchor filter silently truncated to \"%s\" (%zu chars, want %zu)", n >= 3 ? f[2] : "",
           n >= 3 ? strlen(f[2]) : 0, strlen(want));
    snprintf(want, sizeof want, "%s/device/+/telemetry", prefix);
    CHECKF(n < 1 || strcmp(f[0], want) == 0, "device filter \"%s\"", n >= 1 ? f[0] : "");
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("topics", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "parse good topics", test_parse_good) ||
        !CU_add_test(s, "parse broken topics", test_parse_bad) ||
        !CU_add_test(s, "builders", test_builders) ||
        !CU_add_test(s, "builders report truncation", test_builders_truncate) ||
        !CU_add_test(s, "subscription filters", test_filters) ||
        !CU_add_test(s, "filters with 64-char prefix and name", test_filters_long_ids)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

/*
 * test_hl7.c — CUnit tests of gateway/eg_hl7.c: HL7 v2 ORU^R01 (ER7) ->
 * normalized FHIR R4 Observations, and the ER7 ACKs (SPEC §5, §13).
 *
 * Most cases are fixtures under tests/fixtures/hl7/ listed in cases.txt,
 * written by hand from HL7 v2.5.1: good messages with the exact expected
 * Observations (X.expected next to X.hl7, worked out by hand), broken ones
 * with their wire code, msg_id and exact detail. The rest builds small
 * messages inline (units, numbers, times, limits) and checks exact ACKs.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_hl7.h"
#include "eg_hospital.h"
#include "eg_json.h"
#include "eg_testutil.h"

#define FIXDIR EG_FIXTURES "/hl7/"
#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define NOW_DTM "20261124063000.000+0000"
#define MAX_CASES 256

/* Checks got == want; on a mismatch reports where, with some context. */
static void expect_same(const char *what, const char *got, const char *want)
{
    size_t at = 0, from;

    if (!got) {
        CHECKF(0, "%s: no output", what);
        return;
    }
    while (got[at] && got[at] == want[at])
        at++;
    from = at > 60 ? at - 60 : 0;
    CHECKF(got[at] == want[at], "%s: differs at byte %zu:\n got  ...%.120s\n want ...%.120s", what,
           at, got + from, want + from);
}

/* ------------------------------------------------------------ fixtures */

struct fcase {
    char file[96];
    int offset;
    char expect[32];
    char msg_id[220];
    char detail[300];
};

static struct fcase cases[MAX_CASES];
static size_t ncases;

/* Copies field [s, s+n) trimmed of spaces into dst[cap]. */
static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Loads cases.txt: "file | offset | ok-or-code | msg_id | detail-or-note". */
static int load_cases(void)
{
    char *text = read_file(FIXDIR "cases.txt", NULL), *line, *save = NULL;

    if (!text)
        return -1;
    ncases = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *f[5] = {line, NULL, NULL, NULL, NULL};
        char buf[32];
        size_t len[5];
        struct fcase *c;
        int k;

        if (line[0] == '#' || line[0] == '\0' || ncases == MAX_CASES)
            continue;
        for (k = 1; k < 5; k++) {
            const char *bar = strstr(f[k - 1], " | ");

            if (!bar)
                break;
            f[k] = bar + 3;
        }
        for (k = 0; k < 5; k++)
            len[k] = !f[k] ? 0 : (k < 4 && f[k + 1]) ? (size_t)(f[k + 1] - 3 - f[k]) : strlen(f[k]);
        c = &cases[ncases++];
        copy_field(c->file, sizeof c->file, f[0], len[0]);
        copy_field(buf, sizeof buf, f[1] ? f[1] : "0", len[1]);
        c->offset = atoi(buf);
        copy_field(c->expect, sizeof c->expect, f[2] ? f[2] : "", len[2]);
        copy_field(c->msg_id, sizeof c->msg_id, f[3] ? f[3] : "", len[3]);
        copy_field(c->detail, sizeof c->detail, f[4] ? f[4] : "", len[4]);
    }
    free(text);
    return 0;
}

static eg_err parse_buf(const void *buf, size_t len, int offset, struct eg_hmsg *h,
                        struct eg_error *e)
{
    struct eg_hosp_ctx ctx = {"H1", offset, NOW_MS};

    return eg_hl7_parse((const uint8_t *)buf, len, &ctx, h, e);
}

static void test_fixture_cases_loaded(void)
{
    size_t good = 0, bad = 0, i;

    CU_ASSERT_EQUAL_FATAL(load_cases(), 0);
    for (i = 0; i < ncases; i++) {
        if (strcmp(cases[i].expect, "ok") == 0)
            good++;
        else
            bad++;
    }
    CHECKF(good >= 12 && bad >= 60, "cases.txt: %zu good, %zu bad cases", good, bad);
}

/* The header line of one expected Observation. */
static void obs_header(const struct eg_hobs *o, char *buf, size_t n)
{
    size_t off;
    int k;

    off = (size_t)snprintf(buf, n, "category=%s effective_ms=%lld idents=", o->category,
                           (long long)o->effective_ms);
    for (k = 0; k < o->nidents && off < n; k++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", k ? "," : "", o->idents[k]);
}

static void test_fixtures_good(void)
{
    size_t i, k;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        char path[512], *payload, *expected, *line, *save = NULL, what[160], head[1400];
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        size_t len;
        eg_err rc;

        if (strcmp(c->expect, "ok") != 0)
            continue;
        snprintf(path, sizeof path, FIXDIR "%.200s", c->file);
        payload = read_file(path, &len);
        snprintf(path, sizeof path, FIXDIR "%.*s.expected", (int)(strlen(c->file) - 4), c->file);
        expected = read_file(path, NULL);
        CHECKF(payload && expected, "%s: cannot read the fixture or its .expected", c->file);
        if (!payload || !expected) {
            free(payload);
            free(expected);
            continue;
        }
        rc = parse_buf(payload, len, c->offset, &h, &e);
        CHECKF(rc == EG_OK, "%s: %s: %s", c->file, eg_wire_code(rc), e.detail);
        CHECKF(h.have_msg_id && strcmp(h.msg_id, c->msg_id) == 0, "%s: msg_id \"%s\", want \"%s\"",
               c->file, h.msg_id, c->msg_id);
        k = 0;
        for (line = strtok_r(expected, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *json = strtok_r(NULL, "\n", &save), *got;

            if (k >= h.n) {
                CHECKF(0, "%s: %zu Observations, more expected", c->file, h.n);
                break;
            }
            snprintf(what, sizeof what, "%s[%zu] header", c->file, k);
            obs_header(&h.obs[k], head, sizeof head);
            expect_same(what, head, line);
            CHECKF(h.obs[k].patient_id[0] == '\0', "%s[%zu]: patient_id set", c->file, k);
            got = egjson_print(h.obs[k].resource, NULL);
            snprintf(what, sizeof what, "%s[%zu]", c->file, k);
            expect_same(what, got, json ? json : "");
            free(got);
            k++;
        }
        CHECKF(k == h.n, "%s: %zu Observations, %zu expected", c->file, h.n, k);
        eg_hmsg_clear(&h);
        free(payload);
        free(expected);
    }
}

static void test_fixtures_bad(void)
{
    size_t i;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        char path[512], *payload;
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        size_t len;
        eg_err rc;

        if (strcmp(c->expect, "ok") == 0)
            continue;
        snprintf(path, sizeof path, FIXDIR "%.200s", c->file);
        payload = read_file(path, &len);
        CHECKF(payload != NULL, "%s: cannot read", c->file);
        if (!payload)
            continue;
        rc = parse_buf(payload, len, c->offset, &h, &e);
        CHECKF(strcmp(eg_wire_code(rc), c->expect) == 0, "%s: got %s (%s), want %s", c->file,
               eg_wire_code(rc), e.detail, c->expect);
        CHECKF(rc == EG_OK || strcmp(e.detail, c->detail) == 0, "%s: detail\n got  %s\n want %s",
               c->file, e.detail, c->detail);
        CHECKF(h.n == 0 && h.obs == NULL, "%s: %zu Observations kept after an error", c->file, h.n);
        if (strcmp(c->msg_id, "-") == 0) {
            CHECKF(!h.have_msg_id && h.msg_id[0] == '\0', "%s: msg_id \"%s\", want none", c->file,
                   h.msg_id);
        } else {
            CHECKF(h.have_msg_id && strcmp(h.msg_id, c->msg_id) == 0,
                   "%s: msg_id \"%s\", want \"%s\"", c->file, h.msg_id, c->msg_id);
        }
        eg_hmsg_clear(&h);
        free(payload);
    }
}

/* ---------------------------------------------------- inline messages */

#define MSH_LINE "MSH|^~\\&|LABSYS|HOSP1|EHRGATE|GW1|20261124063005||ORU^R01|M1|P|2.5.1\r"

/* Parses MSH_LINE + PID + one "OBX|1|<obx>" ending with OBX-14 06:00. */
static eg_err parse_obx(const char *obx, int offset, struct eg_hmsg *h, struct eg_error *e)
{
    char msg[4096];
    int n = snprintf(msg, sizeof msg, MSH_LINE "PID|1||X1\rOBX|1|%s\r", obx);

    return parse_buf(msg, (size_t)n, offset, h, e);
}

/* The compact JSON of obs[0].resource[key] (malloc'ed), or NULL. */
static char *obs_item(const struct eg_hmsg *h, const char *key)
{
    const cJSON *it;

    if (h->n < 1)
        return NULL;
    it = cJSON_GetObjectItemCaseSensitive(h->obs[0].resource, key);
    return it ? egjson_print(it, NULL) : NULL;
}

/* Checks that OBX "<type>|...|<value>|<unit>" gives valueQuantity want. */
static void check_quantity(const char *type, const char *code, const char *value, const char *unit,
                           const char *want)
{
    char obx[512], *got;
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;

    snprintf(obx, sizeof obx, "%s|%s||%s|%s|||||F|||20261124060000", type, code, value, unit);
    rc = parse_obx(obx, 0, &h, &e);
    CHECKF(rc == EG_OK, "%s: %s %s", obx, eg_wire_code(rc), e.detail);
    got = obs_item(&h, "valueQuantity");
    expect_same(obx, got, want);
    free(got);
    eg_hmsg_clear(&h);
}

/* UCUM plausibility (the rule of read_unit) for codes without a §4 code. */
static void test_units_ucum(void)
{
    static const char *const ucum[] = {
        "10*9/L",    "mL/min/{1.73_m2}",
        "/[HPF]",    "m[iU]/L",
        "mm/h",      "umol/L",
        "fL",        "pg",
        "{ratio}",   "1",
        "s-1",       "kg.m-2",
        "(mg/dL)/h", "g/(24.h)",
        "daL",       "%",
        "[arb'U]",   "ug{FEU}/mL",
        "cm[H2O]",   "meq/L",
    };
    static const char *const not_ucum[] = {
        "furlong",
        "IU/L",
        "mEq/L",
        "cells/uL",
        "mcg",
        "sec",
        "10*",
        "mg/",
        "/",
        "{open",
        "((((((((((m))))))))))",
        "m[Hg",
        "mg//dL",
        "xg",
        "kg..m",
    };
    char want[256];
    size_t i;

    for (i = 0; i < sizeof ucum / sizeof ucum[0]; i++) {
        snprintf(want, sizeof want,
                 "{\"value\":5,\"unit\":\"%s\",\"system\":\"http://"
                 "unitsofmeasure.org\",\"code\":\"%s\"}",
                 ucum[i], ucum[i]);
        check_quantity("NM", "X^Test^L", "5", ucum[i], want);
    }
    for (i = 0; i < sizeof not_ucum / sizeof not_ucum[0]; i++) {
        snprintf(want, sizeof want, "{\"value\":5,\"unit\":\"%s\"}", not_ucum[i]);
        check_quantity("NM", "X^Test^L", "5", not_ucum[i], want);
    }
    /* a plausible code the sender says is not UCUM: text only */
    check_quantity("NM", "X^Test^L", "5", "mg/L^^L", "{\"value\":5,\"unit\":\"mg/L\"}");
    check_quantity("NM", "X^Test^L", "5", "mg/L^^UCUM",
                   "{\"value\":5,\"unit\":\"mg/L\",\"system\":\"http://unitsofmeasure.org\","
                   "\"code\":\"mg/L\"}");
    /* SPEC §4 spellings map to their UCUM code, whatever the code */
    check_quantity("NM", "X^Test^L", "5", "mmHg^^L",
                   "{\"value\":5,\"unit\":\"mm[Hg]\",\"system\":\"http://unitsofmeasure.org\","
                   "\"code\":\"mm[Hg]\"}");
    /* no unit at all, or only text */
    check_quantity("NM", "X^Test^L", "5", "", "{\"value\":5}");
    check_quantity("NM", "X^Test^L", "5", "^per high power field",
                   "{\"value\":5,\"unit\":\"per high power field\"}");
    /* escaped delimiters in a unit are decoded first */
    check_quantity("NM", "X^Test^L", "5", "10\\S\\3/uL",
                   "{\"value\":5,\"unit\":\"10^3/uL\",\"system\":\"http://unitsofmeasure.org\","
                   "\"code\":\"10^3/uL\"}");
    /* an escaped unit is decoded first: mg\S\L is "mg^L", not UCUM */
    check_quantity("NM", "X^Test^L", "5", "mg\\S\\L", "{\"value\":5,\"unit\":\"mg^L\"}");
}

/* HL7 NM (v2.5.1 §2.A.47) kept with the sender's precision. */
static void test_numbers(void)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"+007.50", "7.50"},
        {".5", "0.5"},
        {"5.", "5"},
        {"-0", "0"},
        {"-0.00", "0.00"},
        {" 12 ", "12"},
        {"-3.25", "-3.25"},
        {"000", "0"},
        {"123456789012345678901234567890", "123456789012345678901234567890"},
        {"0.000001", "0.000001"},
    };
    static const char *const bad[] = {"1,5",  "--1", "1.2.3", "1e3", "+",       ".",
                                      "0x10", "5 5", "NaN",   "inf", "\\X31\\a"};
    char obx[256], want[256], detail[256];
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    size_t i;
    eg_err rc;

    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(want, sizeof want, "{\"value\":%s}", ok[i].out);
        check_quantity("NM", "X^Test^L", ok[i].in, "", want);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(obx, sizeof obx, "NM|X^Test^L||%s||||||F|||20261124060000", bad[i]);
        rc = parse_obx(obx, 0, &h, &e);
        CHECKF(rc == EG_E_SCHEMA && strstr(e.detail, "is not numeric for NM"), "NM \"%s\": %s %s",
               bad[i], eg_wire_code(rc), e.detail);
        eg_hmsg_clear(&h);
    }
    /* 31 digits */
    rc = parse_obx("NM|X^Test^L||1234567890123456789012345678901||||||F|||20261124060000", 0, &h,
                   &e);
    snprintf(detail, sizeof detail,
             "OBX[1]-5: \"1234567890123456789012345678901\" has more than 30 digits");
    CU_ASSERT_EQUAL(rc, EG_E_SCHEMA);
    CU_ASSERT_STRING_EQUAL(e.detail, detail);
    eg_hmsg_clear(&h);
    /* §4 values are rounded to 2 decimals like the device path */
    check_quantity("NM", "8310-5^Temp^LN", "36.999", "Cel",
                   "{\"value\":37,\"unit\":\"Cel\",\"system\":\"http://unitsofmeasure.org\","
                   "\"code\":\"Cel\"}");
    check_quantity("NM", "8867-4^HR^LN", "20", "", /* inclusive bound, default unit */
                   "{\"value\":20,\"unit\":\"/min\",\"system\":\"http://unitsofmeasure.org\","
                   "\"code\":\"/min\"}");
}

/* HL7 DTM edge cases: what is refused, and the hospital offset. */
static void test_times(void)
{
    static const char *const bad[] = {
        "20260230",
        "2026112424",
        "202611240660",
        "2026112406+05",
        "20261124063000.12345",
        "20261124063000.",
        "2026112406.5",
        "20261324",
        "202613",
        "20261",
        "2026-11-24",
        "20261124T0600",
        "20261124063000+2400",
        "20261124063000+0060",
        "1",
        "20261124063061",
        "00001231",
    };
    static const struct {
        const char *in;
        int offset;
        const char *out;
        long long ms;
    } ok[] = {
        {"202611241215", 345, "2026-11-24T06:30:00.000Z", NOW_MS}, /* +05:45 */
        {"20261124+0100", 0, "2026-11-24", 1795478400000LL},       /* a date keeps no offset */
        {"20261124063000-0000", -300, "2026-11-24T06:30:00.000Z", NOW_MS},
        {"20261124002959.9", -360, "2026-11-24T06:29:59.900Z", NOW_MS - 100},
        {"20261124000000+1400", 0, "2026-11-23T10:00:00.000Z", 1795428000000LL},
        {"20000229", 0, "2000-02-29", 951782400000LL},
        {"20261124063500", 0, "2026-11-24T06:35:00.000Z", NOW_MS + 300000}, /* exactly 300 s */
    };
    char obx[256], *got, want[64];
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    size_t i;
    eg_err rc;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(obx, sizeof obx, "NM|X^Test^L||1||||||F|||%s", bad[i]);
        rc = parse_obx(obx, 0, &h, &e);
        CHECKF(rc == EG_E_SCHEMA && strstr(e.detail, "is not an HL7 DTM"), "DTM \"%s\": %s %s",
               bad[i], eg_wire_code(rc), e.detail);
        eg_hmsg_clear(&h);
    }
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(obx, sizeof obx, "NM|X^Test^L||1||||||F|||%s", ok[i].in);
        rc = parse_obx(obx, ok[i].offset, &h, &e);
        CHECKF(rc == EG_OK, "DTM \"%s\": %s %s", ok[i].in, eg_wire_code(rc), e.detail);
        got = obs_item(&h, "effectiveDateTime");
        snprintf(want, sizeof want, "\"%s\"", ok[i].out);
        expect_same(ok[i].in, got, want);
        CHECKF(h.n == 1 && h.obs[0].effective_ms == ok[i].ms, "DTM \"%s\": effective_ms %lld",
               ok[i].in, h.n ? (long long)h.obs[0].effective_ms : 0LL);
        free(got);
        eg_hmsg_clear(&h);
    }
    /* 300.001 s ahead */
    rc = parse_obx("NM|X^Test^L||1||||||F|||20261124063500.001", 0, &h, &e);
    CU_ASSERT_EQUAL(rc, EG_E_RANGE);
    CU_ASSERT_STRING_EQUAL(e.detail, "OBX[1]-14: 2026-11-24T06:35:00.001Z is 300.001 s in the "
                                     "future (at most 300 s allowed)");
    eg_hmsg_clear(&h);
}

/* PID-3 keeps the first EG_HOSP_MAX_IDENTS identifiers, in order. */
static void test_idents_cap(void)
{
    const char *msg = MSH_LINE "PID|1||I1~I2^^^A~I3~I4~I5~I6~I7~I8~I9~I10\r"
                               "OBX|1|NM|X^Test^L||1||||||F|||20261124060000\r";
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    eg_err rc = parse_buf(msg, strlen(msg), 0, &h, &e);
    int k;

    CU_ASSERT_EQUAL_FATAL(rc, EG_OK);
    CU_ASSERT_EQUAL(h.obs[0].nidents, EG_HOSP_MAX_IDENTS);
    for (k = 0; k < h.obs[0].nidents; k++) {
        char want[16];

        snprintf(want, sizeof want, "I%d", k + 1);
        CU_ASSERT_STRING_EQUAL(h.obs[0].idents[k], want);
    }
    eg_hmsg_clear(&h);
}

/* EG_HOSP_MAX_OBS OBX are fine, one more is schema. */
static void test_max_obs(void)
{
    size_t cap = 64 * (EG_HOSP_MAX_OBS + 2), off;
    char *msg = malloc(cap);
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;
    int i;

    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    off = (size_t)snprintf(msg, cap, MSH_LINE "PID|1||X1\rOBR|1|||p^p^L|||20261124060000\r");
    for (i = 0; i < EG_HOSP_MAX_OBS; i++)
        off += (size_t)snprintf(msg + off, cap - off, "OBX|%d|NM|X^Test^L||%d||||||F\r", i + 1, i);
    rc = parse_buf(msg, off, 0, &h, &e);
    CU_ASSERT_EQUAL(rc, EG_OK);
    CU_ASSERT_EQUAL(h.n, EG_HOSP_MAX_OBS);
    if (h.n == EG_HOSP_MAX_OBS) {
        char *id = egjson_print(
            cJSON_GetObjectItemCaseSensitive(h.obs[EG_HOSP_MAX_OBS - 1].resource, "identifier"),
            NULL);

        expect_same("last identifier", id,
                    "[{\"system\":\"urn:ehrgate:hospital:H1\",\"value\":\"H1/M1/511\"}]");
        free(id);
    }
    eg_hmsg_clear(&h);
    off += (size_t)snprintf(msg + off, cap - off, "OBX|513|NM|X^Test^L||1||||||F\r");
    rc = parse_buf(msg, off, 0, &h, &e);
    CU_ASSERT_EQUAL(rc, EG_E_SCHEMA);
    CU_ASSERT_STRING_EQUAL(e.detail, "OBX[513]: more than 512 observations in a message");
    CU_ASSERT_EQUAL(h.n, 0);
    CU_ASSERT_PTR_NULL(h.obs);
    CU_ASSERT_STRING_EQUAL(h.msg_id, "M1");
    free(msg);
}

/* The ingest step's eg_hobs_set_subject() puts subject right after code. */
static void test_subject_and_shape(void)
{
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    eg_err rc = parse_obx("NM|8867-4^HR^LN||72|/min|||||F|||20261124060000", 0, &h, &e);
    const char *keys[] = {"resourceType", "meta", "identifier", "status",
                          "category",     "code", "subject",    "effectiveDateTime",
                          "valueQuantity"};
    const cJSON *it;
    size_t k = 0;

    CU_ASSERT_EQUAL_FATAL(rc, EG_OK);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(h.obs[0].resource, "subject"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(h.obs[0].resource, "id"));
    CU_ASSERT_EQUAL_FATAL(eg_hobs_set_subject(&h.obs[0], "P001"), 0);
    cJSON_ArrayForEach(it, h.obs[0].resource)
    {
        CHECKF(k < sizeof keys / sizeof keys[0] && strcmp(it->string, keys[k]) == 0,
               "key %zu is %s", k, it->string);
        k++;
    }
    CU_ASSERT_EQUAL(k, sizeof keys / sizeof keys[0]);
    eg_hmsg_clear(&h);
}

/* Bad arguments and reuse of the output struct. */
static void test_arguments(void)
{
    struct eg_hosp_ctx ctx = {"H1", 0, NOW_MS}, noid = {NULL, 0, NOW_MS};
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    const char *msg = MSH_LINE "PID|1||X1\rOBX|1|NM|X^T^L||1||||||F|||20261124060000\r";

    memset(&h, 0xA5, sizeof h); /* garbage in: the parser starts afresh */
    CU_ASSERT_EQUAL(eg_hl7_parse((const uint8_t *)msg, strlen(msg), NULL, &h, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(h.n, 0);
    CU_ASSERT_EQUAL(eg_hl7_parse((const uint8_t *)msg, strlen(msg), &noid, &h, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_hl7_parse(NULL, 5, &ctx, &h, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_hl7_parse((const uint8_t *)msg, strlen(msg), &ctx, NULL, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_hl7_parse(NULL, 0, &ctx, &h, &e), EG_E_PARSE);
    CU_ASSERT_EQUAL(eg_hl7_parse((const uint8_t *)msg, strlen(msg), &ctx, &h, NULL), EG_OK);
    CU_ASSERT_EQUAL(h.n, 1);
    eg_hmsg_clear(&h);
    eg_hmsg_clear(&h);
    CU_ASSERT_EQUAL(h.n, 0);
}

/* ----------------------------------------------------------------- ACKs */

static void check_ack(const char *what, const void *buf, size_t len, const char *code,
                      const char *text, const char *control, const char *want)
{
    char *got = eg_hl7_ack((const uint8_t *)buf, len, code, text, NOW_MS, control);

    expect_same(what, got, want);
    free(got);
}

static void check_ack_fixture(const char *file, const char *code, const char *text,
                              const char *control, const char *want)
{
    char path[512], *payload;
    size_t len;

    snprintf(path, sizeof path, FIXDIR "%s", file);
    payload = read_file(path, &len);
    CHECKF(payload != NULL, "%s: cannot read", file);
    if (!payload)
        return;
    check_ack(file, payload, len, code, text, control, want);
    free(payload);
}

static void test_ack_fixtures(void)
{
    check_ack_fixture("good_basic.hl7", "AA", NULL, "ACK-1",
                      "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|ACK-1|P|2.5.1\r"
                      "MSA|AA|MSG-0001\r");
    /* custom delimiters: only the message's own are escaped */
    check_ack_fixture("good_custom_seps.hl7", "AE", "OBX[1]-5: a|b^c~d\\e&f #$*@! done", "ACK-2",
                      "MSH#$*@!#EHRGATE#GW1#LABSYS#HOSP1#" NOW_DTM "##ACK$R01$ACK#ACK-2#P#2.5.1\r"
                      "MSA#AE#MSG@F@SEP#OBX[1]-5: a|b^c~d\\e&f @F@@S@@R@@E@@T@ done\r");
    /* 8859/1 fields copied as UTF-8 */
    check_ack_fixture("good_latin1.hl7", "AA", NULL, "ACK-3",
                      "MSH|^~\\&|EHRGATE|GW1|LABSYS|H\xC3\x94PITAL|" NOW_DTM
                      "||ACK^R01^ACK|ACK-3|P|2.5.1\r"
                      "MSA|AA|LAT1\r");
    /* v2.7: five encoding characters, the truncation character as \P\ */
    check_ack_fixture("good_v27_truncation.hl7", "AE", "x#y", "ACK-4",
                      "MSH|^~\\&#|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|ACK-4|P|2.7\r"
                      "MSA|AE|V27\\P\\1|x\\P\\y\r");
    /* MSH ends at MSH-10: defaults for MSH-11/MSH-12 */
    check_ack_fixture("bad_msh_truncated.hl7", "AR", "MSH: truncated", "ACK-5",
                      "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|ACK-5|P|2.5.1\r"
                      "MSA|AR|TRUNC1|MSH: truncated\r");
    check_ack_fixture("bad_wrong_type.hl7", "AR", "MSH-9: ADT^A01 is not ORU^R01", "ACK-6",
                      "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|ACK-6|P|2.5.1\r"
                      "MSA|AR|ADT1|MSH-9: ADT\\S\\A01 is not ORU\\S\\R01\r");
    /* no MSH: default delimiters, empty MSA-2 */
    check_ack_fixture("bad_no_msh.hl7", "AR", "payload: does not start with an MSH segment",
                      "ACK-7",
                      "MSH|^~\\&|||||" NOW_DTM "||ACK^R01^ACK|ACK-7|P|2.5.1\r"
                      "MSA|AR||payload: does not start with an MSH segment\r");
    check_ack_fixture("bad_msh2_alnum.hl7", "AR", NULL, "ACK-8",
                      "MSH|^~\\&|||||" NOW_DTM "||ACK^R01^ACK|ACK-8|P|2.5.1\r"
                      "MSA|AR|\r");
}

static void test_ack_inline(void)
{
    static const char garbage[] = "\xff\x00hello";
    static const char copied[] = "MSH|^~\\&|A\x01\xff"
                                 "B|F|R\\T\\X|RF|x||ORU^R01|M\\F\\2|T^T|2.3\r";

    check_ack("empty", NULL, 0, "AR", NULL, "C1",
              "MSH|^~\\&|||||" NOW_DTM "||ACK^R01^ACK|C1|P|2.5.1\rMSA|AR|\r");
    check_ack("garbage", garbage, sizeof garbage - 1, "AR", "bad", "C2",
              "MSH|^~\\&|||||" NOW_DTM "||ACK^R01^ACK|C2|P|2.5.1\rMSA|AR||bad\r");
    /* a truncated MSH: what is there is copied */
    check_ack("truncated", "MSH|^~\\&|LAB|FAC", 16, "AE", NULL, "C3",
              "MSH|^~\\&|||LAB|FAC|" NOW_DTM "||ACK^R01^ACK|C3|P|2.5.1\rMSA|AE|\r");
    /* every default delimiter and control characters in MSA-3 and MSH-10 */
    check_ack("escaped text", MSH_LINE, strlen(MSH_LINE), "AE", "a|b^c~d\\e&f\ng\th", "C|4",
              "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|C\\F\\4|P|2.5.1\r"
              "MSA|AE|M1|a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X0A\\g\\X09\\h\r");
    /* UTF-8 in MSA-3 is kept; a broken byte is \Xhh\ */
    check_ack("utf8 text", MSH_LINE, strlen(MSH_LINE), "AE", "caf\xC3\xA9 \xC3", "C5",
              "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|C5|P|2.5.1\r"
              "MSA|AE|M1|caf\xC3\xA9 \\XC3\\\r");
    /* control and invalid bytes in copied fields; MSH-11/12 copied */
    check_ack("copied fields", copied, strlen(copied), "AA", NULL, "C6",
              "MSH|^~\\&|R\\T\\X|RF|A\\X01\\\\XFF\\B|F|" NOW_DTM "||ACK^R01^ACK|C6|T^T|2.3\r"
              "MSA|AA|M\\F\\2\r");
    /* an unknown acknowledgment code becomes AE; NULL control id is empty */
    check_ack("bad code", MSH_LINE, strlen(MSH_LINE), "XX", NULL, NULL,
              "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK||P|2.5.1\r"
              "MSA|AE|M1\r");
    check_ack("null code", MSH_LINE, strlen(MSH_LINE), NULL, NULL, "C8",
              "MSH|^~\\&|EHRGATE|GW1|LABSYS|HOSP1|" NOW_DTM "||ACK^R01^ACK|C8|P|2.5.1\r"
              "MSA|AE|M1\r");
}

int main(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"fixture cases load", test_fixture_cases_loaded},
        {"good fixtures: exact Observations", test_fixtures_good},
        {"bad fixtures: code, msg_id, detail", test_fixtures_bad},
        {"units: UCUM or text", test_units_ucum},
        {"NM numbers", test_numbers},
        {"DTM times", test_times},
        {"PID-3 identifier cap", test_idents_cap},
        {"at most 512 OBX", test_max_obs},
        {"subject insertion and key order", test_subject_and_shape},
        {"arguments", test_arguments},
        {"ACKs of fixtures", test_ack_fixtures},
        {"ACKs inline", test_ack_inline},
    };
    CU_pSuite suite;
    unsigned fails;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    suite = CU_add_suite("hl7", NULL, NULL);
    if (!suite) {
        CU_cleanup_registry();
        return 2;
    }
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!CU_add_test(suite, tests[i].name, tests[i].fn)) {
            CU_cleanup_registry();
            return 2;
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    fails = CU_get_number_of_failures();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}

/*
 * test_telemetry.c — CUnit tests of devices/: the SPEC §4 reading table
 * (eg_readings.h) and device telemetry -> FHIR Observation (eg_telemetry.h).
 *
 * Most cases are fixtures under tests/fixtures/telemetry/ listed in
 * cases.txt: good payloads with the exact expected compact Observations
 * (X.expected next to X.json), broken payloads with their wire code and a
 * detail substring. The rest checks the table API directly.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_readings.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "eg_testutil.h"

#define FIXDIR EG_FIXTURES "/telemetry/"
#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define MAX_CASES 256

/* Checks got == want; on a mismatch reports where, with some context. */
static void expect_same(const char *file, size_t k, const char *got, const char *want)
{
    size_t at = 0, from;

    if (!got) {
        CHECKF(0, "%s[%zu]: no output", file, k);
        return;
    }
    while (got[at] && got[at] == want[at])
        at++;
    from = at > 50 ? at - 50 : 0;
    CHECKF(got[at] == want[at], "%s[%zu]: differs at byte %zu:\n got  ...%.100s\n want ...%.100s",
           file, k, at, got + from, want + from);
}

struct fcase {
    char file[96];
    char device[32];
    char expect[32];
    char detail[256];
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

/* Loads cases.txt: "file | device | ok-or-code | note-or-detail". */
static int load_cases(void)
{
    char *text = read_file(FIXDIR "cases.txt", NULL), *line, *save = NULL;

    if (!text)
        return -1;
    ncases = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct fcase *c;
        const char *f[4] = {line, NULL, NULL, NULL};
        size_t len[4];
        int k;

        if (line[0] == '#' || line[0] == '\0' || ncases == MAX_CASES)
            continue;
        for (k = 1; k < 4; k++) {
            const char *bar = strstr(f[k - 1], " | ");
            if (!bar)
                break;
            f[k] = bar + 3;
        }
        for (k = 0; k < 4; k++) {
            if (!f[k]) {
                len[k] = 0;
                continue;
            }
            len[k] = (k < 3 && f[k + 1]) ? (size_t)(f[k + 1] - 3 - f[k]) : strlen(f[k]);
        }
        c = &cases[ncases++];
        copy_field(c->file, sizeof c->file, f[0], len[0]);
        copy_field(c->device, sizeof c->device, f[1] ? f[1] : "", len[1]);
        copy_field(c->expect, sizeof c->expect, f[2] ? f[2] : "", len[2]);
        copy_field(c->detail, sizeof c->detail, f[3] ? f[3] : "", len[3]);
    }
    free(text);
    return 0;
}

/* Runs one payload through parse and normalize. */
static eg_err run_payload(const char *payload, size_t len, const char *device, struct eg_obs *out,
                          size_t *n, struct eg_telemetry *t, struct eg_error *e)
{
    cJSON *root = NULL;
    int dt = eg_device_type_parse(device);
    eg_err rc;

    *n = 0;
    if (dt < 0)
        return eg_fail(e, EG_E_USAGE, "bad device type %s in cases.txt", device);
    rc = egjson_parse((const uint8_t *)payload, len, &root, e);
    if (rc == EG_OK)
        rc = eg_telemetry_parse(root, NOW_MS, t, e);
    if (rc == EG_OK)
        rc = eg_telemetry_normalize(t, (enum eg_device_type)dt, "D001", "P001", out, n, e);
    /* the Observations own their strings: the tree can go */
    cJSON_Delete(root);
    return rc;
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
    CHECKF(good >= 10 && bad >= 50, "cases.txt: %zu good, %zu bad cases", good, bad);
}

static void test_fixtures_good(void)
{
    static struct eg_obs out[EG_MAX_READINGS];
    size_t i, k;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        char path[512], *payload, *expected, *line, *save = NULL;
        struct eg_telemetry t;
        struct eg_error e = {EG_OK, ""};
        size_t len, n = 0;
        eg_err rc;

        if (strcmp(c->expect, "ok") != 0)
            continue;
        snprintf(path, sizeof path, FIXDIR "%.95s", c->file);
        payload = read_file(path, &len);
        CHECKF(payload != NULL, "%s: cannot read", c->file);
        snprintf(path, sizeof path, FIXDIR "%.*s.expected", (int)(strlen(c->file) - 5), c->file);
        expected = read_file(path, NULL);
        CHECKF(expected != NULL, "%s: cannot read", path);
        if (!payload || !expected) {
            free(payload);
            free(expected);
            continue;
        }
        rc = run_payload(payload, len, c->device, out, &n, &t, &e);
        CHECKF(rc == EG_OK, "%s: expected ok, got %s: %s", c->file, eg_wire_code(rc), e.detail);
        k = 0;
        for (line = strtok_r(expected, "\n", &save); rc == EG_OK && line;
             line = strtok_r(NULL, "\n", &save), k++) {
            char *got;

            CHECKF(k < n, "%s: only %zu Observations, expected more", c->file, n);
            if (k >= n)
                break;
            got = egjson_print(out[k].resource, NULL);
            expect_same(c->file, k, got, line);
            CHECKF(out[k].category &&
                       strcmp(out[k].category,
                              strstr(line, "\"laboratory\"") ? "laboratory" : "vital-signs") == 0,
                   "%s[%zu]: category %s", c->file, k,
                   out[k].category ? out[k].category : "(null)");
            free(got);
        }
        CHECKF(rc != EG_OK || k == n, "%s: %zu Observations, expected %zu", c->file, n, k);
        eg_obs_free(out, n);
        free(payload);
        free(expected);
    }
}

static void test_fixtures_bad(void)
{
    static struct eg_obs out[EG_MAX_READINGS];
    size_t i, j;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        char path[512], *payload;
        struct eg_telemetry t;
        struct eg_error e = {EG_OK, ""};
        size_t len, n = 99;
        eg_err rc;

        if (strcmp(c->expect, "ok") == 0)
            continue;
        snprintf(path, sizeof path, FIXDIR "%.95s", c->file);
        payload = read_file(path, &len);
        CHECKF(payload != NULL, "%s: cannot read", c->file);
        if (!payload)
            continue;
        for (j = 0; j < EG_MAX_READINGS; j++)
            out[j].resource = NULL;
        rc = run_payload(payload, len, c->device, out, &n, &t, &e);
        CHECKF(rc != EG_OK && strcmp(eg_wire_code(rc), c->expect) == 0,
               "%s: expected %s, got %s: %s", c->file, c->expect, eg_wire_code(rc), e.detail);
        CHECKF(rc == EG_OK || strstr(e.detail, c->detail) != NULL, "%s: detail \"%s\" lacks \"%s\"",
               c->file, e.detail, c->detail);
        CHECKF(n == 0, "%s: n = %zu after a rejection", c->file, n);
        for (j = 0; j < EG_MAX_READINGS; j++)
            CHECKF(out[j].resource == NULL, "%s: out[%zu] left after a rejection", c->file, j);
        if (rc == EG_OK)
            eg_obs_free(out, n);
        free(payload);
    }
}

/* Parses a literal payload with egjson_parse; NULL if it does not parse. */
static cJSON *parse_text(const char *s)
{
    cJSON *root = NULL;
    struct eg_error e;

    if (egjson_parse((const uint8_t *)s, strlen(s), &root, &e) != EG_OK)
        return NULL;
    return root;
}

static void test_msg_id_on_rejection(void)
{
    struct eg_telemetry t;
    struct eg_error e;
    cJSON *root;

    root = parse_text("{\"seq\":1043,\"ts\":\"2026-11-24T06:30:00\",\"readings\":[]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(eg_telemetry_parse(root, NOW_MS, &t, &e), EG_E_SCHEMA);
    CU_ASSERT_STRING_EQUAL(t.msg_id, "1043");
    CU_ASSERT_EQUAL(t.seq, 1043);
    cJSON_Delete(root);

    root = parse_text("{\"seq\":\"1043\",\"ts\":\"2026-11-24T06:30:00Z\",\"readings\":[]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(eg_telemetry_parse(root, NOW_MS, &t, &e), EG_E_SCHEMA);
    CU_ASSERT_STRING_EQUAL(t.msg_id, "");
    cJSON_Delete(root);

    root = parse_text("{\"seq\":9007199254740991,\"ts\":\"2026-11-24T06:30:00Z\","
                      "\"patient\":\"P-1_a.b\",\"readings\":[{\"type\":\"spo2\",\"value\":97}]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(eg_telemetry_parse(root, NOW_MS, &t, &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(t.msg_id, "9007199254740991");
    CU_ASSERT_EQUAL(t.ts_ms, NOW_MS);
    CU_ASSERT_PTR_NOT_NULL(t.patient);
    if (t.patient)
        CU_ASSERT_STRING_EQUAL(t.patient, "P-1_a.b");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(t.readings), 1);
    cJSON_Delete(root);
}

/* A telemetry with a hand-built readings array (no egjson_parse). */
static void test_normalize_direct(void)
{
    struct eg_obs out[EG_MAX_READINGS];
    struct eg_telemetry t;
    struct eg_error e = {EG_OK, ""};
    cJSON *arr = cJSON_CreateArray(), *rd;
    size_t n = 7;

    CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
    memset(&t, 0, sizeof t);
    t.seq = 5;
    snprintf(t.msg_id, sizeof t.msg_id, "5");
    t.ts_ms = NOW_MS;
    t.readings = arr;

    rd = cJSON_CreateObject();
    cJSON_AddStringToObject(rd, "type", "heart_rate");
    cJSON_AddNumberToObject(rd, "value", 72);
    cJSON_AddItemToArray(arr, rd);
    CU_ASSERT_EQUAL(eg_telemetry_normalize(&t, EG_DEV_MONITOR, "D9", "P9", out, &n, &e), EG_OK);
    CU_ASSERT_EQUAL(n, 1);
    eg_obs_free(out, n);
    CU_ASSERT_PTR_NULL(out[0].resource);

    /* bad arguments from the caller, not from the payload */
    CU_ASSERT_EQUAL(eg_telemetry_normalize(&t, EG_DEV_MONITOR, "D 9", "P9", out, &n, &e),
                    EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_telemetry_normalize(&t, EG_DEV_MONITOR, "D9", "", out, &n, &e),
                    EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_telemetry_normalize(&t, EG_DEV__COUNT, "D9", "P9", out, &n, &e),
                    EG_E_INTERNAL);

    /* a non-finite value (JSON cannot carry one, a caller's tree can) */
    rd = cJSON_CreateObject();
    cJSON_AddStringToObject(rd, "type", "spo2");
    cJSON_AddNumberToObject(rd, "value", INFINITY);
    cJSON_AddItemToArray(arr, rd);
    CU_ASSERT_EQUAL(eg_telemetry_normalize(&t, EG_DEV_MONITOR, "D9", "P9", out, &n, &e),
                    EG_E_RANGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "readings[1].value: spo2 value is not a finite"));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_PTR_NULL(out[0].resource);
    CU_ASSERT_PTR_NULL(out[1].resource);
    cJSON_Delete(arr);

    eg_obs_free(NULL, 3);
}

static void test_unit_spellings(void)
{
    static const struct {
        const char *spelling, *ucum;
    } ok[] = {
        {"/min", "/min"},       {"bpm", "/min"},      {"%", "%"},           {"Cel", "Cel"},
        {"C", "Cel"},           {"\u00B0C", "Cel"},   {"[degF]", "[degF]"}, {"degF", "[degF]"},
        {"\u00B0F", "[degF]"},  {"mm[Hg]", "mm[Hg]"}, {"mmHg", "mm[Hg]"},   {"kg", "kg"},
        {"[lb_av]", "[lb_av]"}, {"lb", "[lb_av]"},    {"lbs", "[lb_av]"},   {"mg/dL", "mg/dL"},
        {"mmol/L", "mmol/L"},
    };
    static const char *const unknown[] = {
        "BPM",    "/MIN",   "min",  "1/min",   "beats/min", "F",   "c",   "cel",
        "\u2109", "\u2103", "mmhg", "mm Hg",   "kgs",       "Kg",  "LB",  "lb_av",
        "mg/dl",  "mmol/l", "g",    "percent", "",          " kg", "kg ", "furlongs"};
    size_t i;

    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *got = eg_unit_canonical(ok[i].spelling);
        CHECKF(got && strcmp(got, ok[i].ucum) == 0, "unit \"%s\" -> %s, want %s", ok[i].spelling,
               got ? got : "NULL", ok[i].ucum);
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECKF(eg_unit_canonical(unknown[i]) == NULL, "unit \"%s\" accepted", unknown[i]);
    CU_ASSERT_PTR_NULL(eg_unit_canonical(NULL));
}

static void test_reading_lookup(void)
{
    static const struct {
        const char *loinc, *name;
        int part;
        const char *unit, *first_code;
    } rows[] = {
        {"8867-4", "heart_rate", 0, "/min", "8867-4"},
        {"2708-6", "spo2", 0, "%", "2708-6"},
        {"59408-5", "spo2", 0, "%", "2708-6"},
        {"9279-1", "resp_rate", 0, "/min", "9279-1"},
        {"8310-5", "body_temp", 0, "Cel", "8310-5"},
        {"85354-9", "blood_pressure", -1, NULL, NULL},
        {"8480-6", "blood_pressure", 0, "mm[Hg]", "8480-6"},
        {"8462-4", "blood_pressure", 1, "mm[Hg]", "8462-4"},
        {"29463-7", "body_weight", 0, "kg", "29463-7"},
        {"2339-0", "glucose", 0, "mg/dL", "2339-0"},
        {"15074-8", "glucose", 0, "mmol/L", "15074-8"},
    };
    static const char *const names[EG_READ__COUNT] = {
        "heart_rate", "spo2", "resp_rate", "body_temp", "blood_pressure", "body_weight", "glucose"};
    struct eg_loinc_match m;
    size_t i;

    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int rc = eg_reading_by_loinc(rows[i].loinc, &m);

        CHECKF(rc == 0, "LOINC %s not found", rows[i].loinc);
        if (rc != 0)
            continue;
        CHECKF(strcmp(m.spec->name, rows[i].name) == 0 && m.part == rows[i].part,
               "LOINC %s -> %s part %d", rows[i].loinc, m.spec->name, m.part);
        if (rows[i].unit) {
            CHECKF(m.rule && strcmp(m.rule->stored, rows[i].unit) == 0 &&
                       strcmp(m.rule->codes[0].code, rows[i].first_code) == 0,
                   "LOINC %s -> rule %s", rows[i].loinc, m.rule ? m.rule->stored : "NULL");
        } else {
            CU_ASSERT_PTR_NULL(m.rule);
        }
    }
    CU_ASSERT_EQUAL(eg_reading_by_loinc("8867-5", &m), -1);
    CU_ASSERT_EQUAL(eg_reading_by_loinc("", NULL), -1);
    CU_ASSERT_EQUAL(eg_reading_by_loinc(NULL, NULL), -1);
    CU_ASSERT_EQUAL(eg_reading_by_loinc("59408-5", NULL), 0);

    for (i = 0; i < EG_READ__COUNT; i++) {
        const struct eg_reading_spec *s = eg_reading_by_name(names[i]);

        CHECKF(s && s->type == (enum eg_reading_type)i && s == eg_reading_spec(s->type),
               "reading %s", names[i]);
        CHECKF(s && strcmp(s->category, i == EG_READ_GLUCOSE ? "laboratory" : "vital-signs") == 0,
               "category of %s", names[i]);
    }
    CU_ASSERT_PTR_NULL(eg_reading_by_name("Heart_rate"));
    CU_ASSERT_PTR_NULL(eg_reading_by_name("temperature"));
    CU_ASSERT_PTR_NULL(eg_reading_by_name(NULL));
    CU_ASSERT_PTR_NULL(eg_reading_spec(EG_READ__COUNT));
}

static void test_conversions(void)
{
    const struct eg_reading_spec *temp = eg_reading_spec(EG_READ_BODY_TEMP);
    const struct eg_reading_spec *wt = eg_reading_spec(EG_READ_BODY_WEIGHT);
    const struct eg_reading_spec *glu = eg_reading_spec(EG_READ_GLUCOSE);
    const struct eg_unit_rule *f = eg_quantity_rule(&temp->parts[0], "[degF]");
    const struct eg_unit_rule *lb = eg_quantity_rule(&wt->parts[0], "[lb_av]");
    const struct eg_unit_rule *mmol = eg_quantity_rule(&glu->parts[0], "mmol/L");
    double zero;

    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mmol);
    CU_ASSERT_STRING_EQUAL(f->stored, "Cel");
    CU_ASSERT_STRING_EQUAL(lb->stored, "kg");
    CU_ASSERT_EQUAL(eg_unit_convert(f, 98.6), 37.0);
    CU_ASSERT_EQUAL(eg_unit_convert(f, 212), 100.0);
    CU_ASSERT_EQUAL(eg_unit_convert(lb, 150), 68.04);
    CU_ASSERT_EQUAL(eg_unit_convert(lb, 1), 0.45);
    zero = eg_unit_convert(f, 31.999);
    CU_ASSERT(zero == 0.0 && !signbit(zero));
    CU_ASSERT_EQUAL(eg_round2(36.456), 36.46);
    CU_ASSERT_EQUAL(eg_round2(-1.005e13), -1.005e13);
    CU_ASSERT_PTR_NULL(eg_quantity_rule(&temp->parts[0], "kg"));
    CU_ASSERT_STRING_EQUAL(eg_quantity_rule(&temp->parts[0], NULL)->unit, "Cel");
    CU_ASSERT_STRING_EQUAL(eg_quantity_rule(&glu->parts[0], NULL)->unit, "mg/dL");

    /* mmol/L bounds are 10..1000 mg/dL through EG_GLUCOSE_MGDL_PER_MMOLL */
    CU_ASSERT_EQUAL(mmol->lo, eg_round2(10 / EG_GLUCOSE_MGDL_PER_MMOLL));
    CU_ASSERT_EQUAL(mmol->hi, eg_round2(1000 / EG_GLUCOSE_MGDL_PER_MMOLL));
    CU_ASSERT_EQUAL(mmol->conv, EG_CONV_NONE);
}

/* The hospital path's use: a LOINC code constrains the unit. */
static void test_quantity_normalize_loinc(void)
{
    const struct eg_reading_spec *glu = eg_reading_spec(EG_READ_GLUCOSE);
    const struct eg_reading_spec *bp = eg_reading_spec(EG_READ_BLOOD_PRESSURE);
    struct eg_value v[2];
    struct eg_error e = {EG_OK, ""};

    CU_ASSERT_EQUAL(eg_quantity_normalize(&glu->parts[0], "2339-0", "mmol/L", 5.5, "OBX[1].5",
                                          "OBX[1].6", &v[0], &e),
                    EG_E_UNIT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "OBX[1].6: unit \"mmol/L\" does not fit LOINC 2339-0"));
    CU_ASSERT_EQUAL(
        eg_quantity_normalize(&glu->parts[0], "15074-8", NULL, 5.456, "v", "u", &v[0], &e), EG_OK);
    CU_ASSERT_EQUAL(v[0].value, 5.46);
    CU_ASSERT_STRING_EQUAL(v[0].rule->codes[0].code, "15074-8");
    CU_ASSERT_EQUAL(
        eg_quantity_normalize(&bp->parts[0], "8480-6", "mmHg", 120, "v", "u", &v[0], &e), EG_OK);
    CU_ASSERT_EQUAL(eg_quantity_normalize(&bp->parts[1], NULL, NULL, 120, "v", "u", &v[1], &e),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_reading_check_parts(bp, v, "OBX", &e), EG_E_RANGE);
    CU_ASSERT_STRING_EQUAL(e.detail,
                           "OBX: blood_pressure systolic 120 must be greater than diastolic 120");
}

static void test_device_types(void)
{
    static const char *const names[EG_DEV__COUNT] = {"pulse_oximeter", "bp_monitor", "thermometer",
                                                     "glucometer",     "scale",      "monitor"};
    /* SPEC §4, rows: device types; columns: enum eg_reading_type order */
    static const int measures[EG_DEV__COUNT][EG_READ__COUNT] = {
        /* hr spo2 rr temp bp weight glucose */
        {1, 1, 0, 0, 0, 0, 0}, /* pulse_oximeter */
        {1, 0, 0, 0, 1, 0, 0}, /* bp_monitor */
        {0, 0, 0, 1, 0, 0, 0}, /* thermometer */
        {0, 0, 0, 0, 0, 0, 1}, /* glucometer */
        {0, 0, 0, 0, 0, 1, 0}, /* scale */
        {1, 1, 1, 1, 1, 1, 1}, /* monitor */
    };
    int d, r;

    for (d = 0; d < EG_DEV__COUNT; d++) {
        CU_ASSERT_EQUAL(eg_device_type_parse(names[d]), d);
        CU_ASSERT_STRING_EQUAL(eg_device_type_name((enum eg_device_type)d), names[d]);
        for (r = 0; r < EG_READ__COUNT; r++)
            CHECKF(eg_device_measures((enum eg_device_type)d, (enum eg_reading_type)r) ==
                       measures[d][r],
                   "%s measures reading %d", names[d], r);
    }
    CU_ASSERT_EQUAL(eg_device_type_parse("Monitor"), -1);
    CU_ASSERT_EQUAL(eg_device_type_parse("oximeter"), -1);
    CU_ASSERT_EQUAL(eg_device_type_parse(""), -1);
    CU_ASSERT_EQUAL(eg_device_type_parse(NULL), -1);
    CU_ASSERT_PTR_NULL(eg_device_type_name(EG_DEV__COUNT));
    CU_ASSERT_EQUAL(eg_device_measures(EG_DEV__COUNT, EG_READ_SPO2), 0);
    CU_ASSERT_EQUAL(eg_device_measures(EG_DEV_MONITOR, EG_READ__COUNT), 0);
}

static void test_id_valid(void)
{
    char id[66];

    CU_ASSERT_TRUE(eg_id_valid("P001"));
    CU_ASSERT_TRUE(eg_id_valid("a"));
    CU_ASSERT_TRUE(eg_id_valid("A-z_0.9"));
    memset(id, 'x', 64);
    id[64] = '\0';
    CU_ASSERT_TRUE(eg_id_valid(id));
    id[64] = 'x';
    id[65] = '\0';
    CU_ASSERT_FALSE(eg_id_valid(id));
    CU_ASSERT_FALSE(eg_id_valid(""));
    CU_ASSERT_FALSE(eg_id_valid(NULL));
    CU_ASSERT_FALSE(eg_id_valid("P 1"));
    CU_ASSERT_FALSE(eg_id_valid("P/1"));
    CU_ASSERT_FALSE(eg_id_valid("P+1"));
    CU_ASSERT_FALSE(eg_id_valid("\xC3\xA9"));
}

static void test_detail_str(void)
{
    char buf[64], small[8];

    CU_ASSERT_STRING_EQUAL(eg_detail_str(buf, sizeof buf, "furlongs"), "furlongs");
    CU_ASSERT_STRING_EQUAL(eg_detail_str(buf, sizeof buf, "a\"b\\c\nd"), "a\\\"b\\\\c?d");
    CU_ASSERT_STRING_EQUAL(eg_detail_str(buf, sizeof buf, NULL), "");
    /* 40 bytes kept at most, cut on a character boundary */
    CU_ASSERT_STRING_EQUAL(
        eg_detail_str(buf, sizeof buf, "0123456789012345678901234567890123456789XYZ"),
        "0123456789012345678901234567890123456789...");
    CU_ASSERT_STRING_EQUAL(
        eg_detail_str(buf, sizeof buf, "012345678901234567890123456789012345678\u00B0F"),
        "012345678901234567890123456789012345678...");
    CU_ASSERT_STRING_EQUAL(eg_detail_str(small, sizeof small, "abcdefgh"), "abcd...");
    CU_ASSERT_STRING_EQUAL(eg_detail_str(buf, sizeof buf, "\xFF\xC3"), "??");
}

int main(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"fixture cases load", test_fixture_cases_loaded},
        {"fixtures: good payloads", test_fixtures_good},
        {"fixtures: bad payloads", test_fixtures_bad},
        {"msg_id set before a rejection", test_msg_id_on_rejection},
        {"normalize: direct calls", test_normalize_direct},
        {"unit spellings", test_unit_spellings},
        {"reading lookup by name and LOINC", test_reading_lookup},
        {"conversions and rounding", test_conversions},
        {"quantity normalize with LOINC", test_quantity_normalize_loinc},
        {"device types", test_device_types},
        {"identifier rule", test_id_valid},
        {"detail quoting", test_detail_str},
    };
    CU_pSuite suite;
    unsigned fails;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    suite = CU_add_suite("telemetry", NULL, NULL);
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
    return fails != 0;
}

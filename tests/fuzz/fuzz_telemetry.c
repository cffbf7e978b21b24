/*
 * fuzz_telemetry.c — libFuzzer target for device telemetry (SPEC §4):
 * egjson_parse, eg_telemetry_parse, then eg_telemetry_normalize once for
 * each of the six device types (as gateway/eg_ingest.c does for a device
 * of that type from the registry: device "D001", patient "P001"), then
 * eg_obs_free.
 *
 * Checks the promises of eg_telemetry.h and the SPEC §4 table, written
 * out again below from the SPEC (not read from devices/eg_readings.c):
 *   - parse: msg_id is the decimal seq or ""; on success 1..64 readings,
 *     ts not before 1900 and at most 300 s ahead; a patient is a valid id;
 *   - normalize: all-or-nothing (n == 0 and every out[] NULL on failure),
 *     only the documented error codes, a printable UTF-8 detail;
 *   - an accepted message gives one Observation per reading (1..64), each
 *     of a reading type the device measures, with every stored value
 *     finite, rounded to 2 decimals, in the stored unit of its LOINC code
 *     and inside the plausible range (bounds inclusive; blood pressure
 *     systolic > diastolic); subject, identifier and effectiveDateTime as
 *     documented; the Observation prints as strict JSON (monitor only);
 *   - whatever one device type accepts, a monitor (all seven) accepts, and
 *     what a monitor accepts another type refuses only as unsupported.
 *
 *   tests/fuzz/CMakeLists.txt builds it (clang, EHRGATE_FUZZ=ON);
 *   ./fuzz_telemetry -dict=tests/fuzz/telemetry.dict work tests/fuzz/corpus/telemetry
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_readings.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "fuzz_util.h"

#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z, as in the unit tests */
#define DEVICE_ID "D001"
#define PATIENT_ID "P001"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* SPEC §4: one row per stored quantity, keyed by its LOINC code. The
 * mmol/L glucose bounds are the 10..1000 mg/dL of the SPEC through
 * EG_GLUCOSE_MGDL_PER_MMOLL, rounded to 2 decimals, as eg_readings.h
 * documents. */
static const struct range_row {
    const char *loinc;
    const char *unit; /* stored UCUM code */
    double lo, hi;
    enum eg_reading_type type;
    const char *category;
} ranges[] = {
    {"8867-4", "/min", 20, 300, EG_READ_HEART_RATE, "vital-signs"},
    {"2708-6", "%", 50, 100, EG_READ_SPO2, "vital-signs"},
    {"9279-1", "/min", 2, 80, EG_READ_RESP_RATE, "vital-signs"},
    {"8310-5", "Cel", 25, 45, EG_READ_BODY_TEMP, "vital-signs"},
    {"8480-6", "mm[Hg]", 40, 300, EG_READ_BLOOD_PRESSURE, "vital-signs"}, /* systolic */
    {"8462-4", "mm[Hg]", 20, 200, EG_READ_BLOOD_PRESSURE, "vital-signs"}, /* diastolic */
    {"29463-7", "kg", 0.2, 500, EG_READ_BODY_WEIGHT, "vital-signs"},
    {"2339-0", "mg/dL", 10, 1000, EG_READ_GLUCOSE, "laboratory"},
    {"15074-8", "mmol/L", 0.56, 55.51, EG_READ_GLUCOSE, "laboratory"},
};

/* SPEC §4 device types -> readings (rows: enum eg_device_type order;
 * columns: hr spo2 rr temp bp weight glucose). */
static const unsigned char measures[EG_DEV__COUNT][EG_READ__COUNT] = {
    {1, 1, 0, 0, 0, 0, 0}, /* pulse_oximeter */
    {1, 0, 0, 0, 1, 0, 0}, /* bp_monitor */
    {0, 0, 0, 1, 0, 0, 0}, /* thermometer */
    {0, 0, 0, 0, 0, 0, 1}, /* glucometer */
    {0, 0, 0, 0, 0, 1, 0}, /* scale */
    {1, 1, 1, 1, 1, 1, 1}, /* monitor */
};

static const struct range_row *row_of(const char *loinc)
{
    size_t i;

    for (i = 0; loinc && i < sizeof ranges / sizeof ranges[0]; i++)
        if (strcmp(ranges[i].loinc, loinc) == 0)
            return &ranges[i];
    return NULL;
}

/* The first coding's code of a CodeableConcept. */
static const char *first_code(const cJSON *concept)
{
    const cJSON *coding = cJSON_GetObjectItemCaseSensitive(concept, "coding");

    return egjson_str(cJSON_GetArrayItem(coding, 0), "code");
}

/* True if v is what rounding to 2 decimals gives: the double nearest to
 * some k/100, which is what "%.2f" prints and reads back. */
static int two_decimals(double v)
{
    char buf[64];

    snprintf(buf, sizeof buf, "%.2f", v);
    return strtod(buf, NULL) == v;
}

/* Checks a valueQuantity {value, unit, system, code} against the range row
 * of loinc; returns the value. */
static double check_quantity(const cJSON *q, const char *loinc)
{
    const struct range_row *r = row_of(loinc);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, "value");
    const char *unit = egjson_str(q, "unit"), *code = egjson_str(q, "code");
    const char *sys = egjson_str(q, "system");

    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(cJSON_IsNumber(v));
    FUZZ_CHECK(isfinite(v->valuedouble));
    FUZZ_CHECK(v->valuedouble >= r->lo && v->valuedouble <= r->hi);
    FUZZ_CHECK(two_decimals(v->valuedouble));
    FUZZ_CHECK(unit && code && strcmp(unit, r->unit) == 0 && strcmp(code, r->unit) == 0);
    FUZZ_CHECK(sys && strcmp(sys, EG_UCUM_SYSTEM) == 0);
    return v->valuedouble;
}

/* One accepted Observation (reading idx) of device type dt. */
static void check_obs(const struct eg_obs *o, const struct eg_telemetry *t, enum eg_device_type dt,
                      size_t idx, const char *when)
{
    const cJSON *res = o->resource, *ids, *vq, *comp;
    const char *code, *s;
    const struct range_row *r;
    enum eg_reading_type rt;
    char want[128];

    FUZZ_CHECK(cJSON_IsObject(res));
    FUZZ_CHECK(o->category != NULL);
    s = egjson_str(res, "resourceType");
    FUZZ_CHECK(s && strcmp(s, "Observation") == 0);
    s = egjson_str(res, "status");
    FUZZ_CHECK(s && strcmp(s, "final") == 0);
    s = egjson_str(cJSON_GetObjectItemCaseSensitive(res, "subject"), "reference");
    FUZZ_CHECK(s && strcmp(s, "Patient/" PATIENT_ID) == 0);
    s = egjson_str(res, "effectiveDateTime");
    FUZZ_CHECK(s && strcmp(s, when) == 0);
    ids = cJSON_GetObjectItemCaseSensitive(res, "identifier");
    snprintf(want, sizeof want, DEVICE_ID "/%s/%zu", t->msg_id, idx);
    s = egjson_str(cJSON_GetArrayItem(ids, 0), "value");
    FUZZ_CHECK(cJSON_GetArraySize(ids) == 1 && s && strcmp(s, want) == 0);

    code = first_code(cJSON_GetObjectItemCaseSensitive(res, "code"));
    FUZZ_CHECK(code != NULL);
    vq = cJSON_GetObjectItemCaseSensitive(res, "valueQuantity");
    comp = cJSON_GetObjectItemCaseSensitive(res, "component");
    if (strcmp(code, "85354-9") == 0) {
        /* blood pressure panel: systolic then diastolic, sys > dia */
        double sys, dia;

        FUZZ_CHECK(vq == NULL && cJSON_GetArraySize(comp) == 2);
        FUZZ_CHECK(strcmp(first_code(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(comp, 0),
                                                                      "code")),
                          "8480-6") == 0);
        FUZZ_CHECK(strcmp(first_code(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(comp, 1),
                                                                      "code")),
                          "8462-4") == 0);
        sys = check_quantity(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(comp, 0), "valueQuantity"),
            "8480-6");
        dia = check_quantity(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(comp, 1), "valueQuantity"),
            "8462-4");
        FUZZ_CHECK(sys > dia);
        rt = EG_READ_BLOOD_PRESSURE;
        FUZZ_CHECK(strcmp(o->category, "vital-signs") == 0);
    } else {
        FUZZ_CHECK(comp == NULL && vq != NULL);
        r = row_of(code);
        FUZZ_CHECK(r != NULL && r->type != EG_READ_BLOOD_PRESSURE);
        (void)check_quantity(vq, code);
        rt = r->type;
        FUZZ_CHECK(strcmp(o->category, r->category) == 0);
    }
    FUZZ_CHECK(measures[dt][rt]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct eg_obs out[EG_MAX_READINGS];
    struct eg_telemetry t;
    struct eg_error e = {EG_OK, ""};
    cJSON *root = NULL;
    char when[EG_TIME_STRLEN], seqtxt[24];
    eg_err rcs[EG_DEV__COUNT];
    size_t count, i, n;
    uint64_t seq;
    eg_err rc;
    int d;

    if (egjson_parse(data, size, &root, &e) != EG_OK)
        return 0;
    rc = eg_telemetry_parse(root, NOW_MS, &t, &e);
    /* msg_id: the decimal seq as soon as seq is readable, else "" */
    FUZZ_CHECK(strnlen(t.msg_id, sizeof t.msg_id) < sizeof t.msg_id);
    if (cJSON_IsObject(root) &&
        egjson_get_u53(cJSON_GetObjectItemCaseSensitive(root, "seq"), &seq) == 0) {
        snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, seq);
        FUZZ_CHECK(strcmp(t.msg_id, seqtxt) == 0 && t.seq == seq);
    } else {
        FUZZ_CHECK(t.msg_id[0] == '\0');
    }
    if (rc != EG_OK) {
        FUZZ_CHECK(rc == EG_E_SCHEMA || rc == EG_E_RANGE);
        FUZZ_CHECK(e.code == rc && fuzz_detail_ok(&e));
        goto out;
    }
    FUZZ_CHECK(cJSON_IsArray(t.readings));
    count = (size_t)cJSON_GetArraySize(t.readings);
    FUZZ_CHECK(count >= 1 && count <= EG_MAX_READINGS);
    FUZZ_CHECK(t.ts_ms >= EG_EARLIEST_MS && t.ts_ms - NOW_MS <= EG_FUTURE_SKEW_MS);
    FUZZ_CHECK(t.patient == NULL || eg_id_valid(t.patient));
    eg_time_format(t.ts_ms, when);

    for (d = 0; d < EG_DEV__COUNT; d++) {
        enum eg_device_type dt = (enum eg_device_type)d;

        for (i = 0; i < EG_MAX_READINGS; i++)
            out[i].resource = NULL;
        n = 99;
        e.code = EG_OK;
        e.detail[0] = '\0';
        rc = eg_telemetry_normalize(&t, dt, DEVICE_ID, PATIENT_ID, out, &n, &e);
        rcs[d] = rc;
        if (rc != EG_OK) {
            FUZZ_CHECK(rc == EG_E_SCHEMA || rc == EG_E_UNSUPPORTED || rc == EG_E_UNIT ||
                       rc == EG_E_RANGE);
            FUZZ_CHECK(e.code == rc && fuzz_detail_ok(&e));
            FUZZ_CHECK(n == 0); /* all-or-nothing */
            for (i = 0; i < EG_MAX_READINGS; i++)
                FUZZ_CHECK(out[i].resource == NULL);
            continue;
        }
        FUZZ_CHECK(n == count && n >= 1 && n <= EG_MAX_READINGS);
        for (i = 0; i < n; i++) {
            check_obs(&out[i], &t, dt, i, when);
            if (dt == EG_DEV_MONITOR)
                FUZZ_CHECK(fuzz_json_ok(out[i].resource));
        }
        for (i = n; i < EG_MAX_READINGS; i++)
            FUZZ_CHECK(out[i].resource == NULL);
        eg_obs_free(out, n);
        for (i = 0; i < n; i++)
            FUZZ_CHECK(out[i].resource == NULL);
    }
    /* a monitor measures all seven reading types: what it accepts, another
     * type refuses only as unsupported; what it refuses, nobody accepts */
    for (d = 0; d < EG_DEV__COUNT; d++)
        FUZZ_CHECK(rcs[EG_DEV_MONITOR] == EG_OK ? rcs[d] == EG_OK || rcs[d] == EG_E_UNSUPPORTED
                                                : rcs[d] != EG_OK);
out:
    cJSON_Delete(root);
    return 0;
}

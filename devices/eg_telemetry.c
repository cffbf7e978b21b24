/*
 * eg_telemetry.c — device types, the SPEC §2 identifier rule, and device
 * telemetry (SPEC §4) -> FHIR R4 Observations (vital-signs profile, SPEC §6).
 *
 * eg_telemetry_parse() checks the message header, eg_telemetry_normalize()
 * turns each reading into an Observation using the reading table of
 * eg_readings.c. Details name the field path and the reason (SPEC §7).
 */
#include "eg_telemetry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "eg_json.h"
#include "eg_time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define BIT(r) (1u << (r))
#define ALL_READINGS (BIT(EG_READ__COUNT) - 1u)
#define ID_MAX 64
#define DEVICE_URN "urn:ehrgate:device:"

/* Device types (SPEC §4) and the readings each may send. */
static const struct {
    const char *name;
    unsigned measures; /* BIT(enum eg_reading_type) */
} device_types[EG_DEV__COUNT] = {
    [EG_DEV_PULSE_OXIMETER] = {"pulse_oximeter", BIT(EG_READ_HEART_RATE) | BIT(EG_READ_SPO2)},
    [EG_DEV_BP_MONITOR] = {"bp_monitor", BIT(EG_READ_BLOOD_PRESSURE) | BIT(EG_READ_HEART_RATE)},
    [EG_DEV_THERMOMETER] = {"thermometer", BIT(EG_READ_BODY_TEMP)},
    [EG_DEV_GLUCOMETER] = {"glucometer", BIT(EG_READ_GLUCOSE)},
    [EG_DEV_SCALE] = {"scale", BIT(EG_READ_BODY_WEIGHT)},
    [EG_DEV_MONITOR] = {"monitor", ALL_READINGS},
};

/* Keys allowed at the top level of a telemetry message. */
static const char *const top_keys[] = {"seq", "ts", "patient", "readings"};

/* Keys every reading may carry besides its value key(s). */
static const char *const reading_keys[] = {"type", "unit"};

int eg_device_type_parse(const char *name)
{
    size_t i;

    if (!name)
        return -1;
    for (i = 0; i < ARRAY_LEN(device_types); i++)
        if (strcmp(device_types[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *eg_device_type_name(enum eg_device_type t)
{
    if ((int)t < 0 || t >= EG_DEV__COUNT)
        return NULL;
    return device_types[t].name;
}

int eg_device_measures(enum eg_device_type t, enum eg_reading_type r)
{
    if ((int)t < 0 || t >= EG_DEV__COUNT || (int)r < 0 || r >= EG_READ__COUNT)
        return 0;
    return (device_types[t].measures & BIT(r)) != 0;
}

int eg_id_valid(const char *s)
{
    size_t i;

    if (!s)
        return 0;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';

        if (!ok || i >= ID_MAX)
            return 0;
    }
    return i > 0;
}

static int in_list(const char *const *list, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

eg_err eg_telemetry_parse(const cJSON *root, int64_t now_ms, struct eg_telemetry *t,
                          struct eg_error *e)
{
    char qb[64];
    const cJSON *seq, *ts, *patient, *readings, *it;
    int count, i;
    int64_t ahead;

    if (!t)
        return eg_fail(e, EG_E_INTERNAL, "eg_telemetry_parse: no output");
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(root))
        return eg_fail(e, EG_E_SCHEMA, "payload: must be a JSON object");

    seq = cJSON_GetObjectItemCaseSensitive(root, "seq");
    if (!seq)
        return eg_fail(e, EG_E_SCHEMA, "seq: required (integer 0..2^53-1)");
    if (egjson_get_u53(seq, &t->seq) != 0)
        return eg_fail(e, EG_E_SCHEMA, "seq: must be an integer 0..2^53-1");
    snprintf(t->msg_id, sizeof t->msg_id, "%" PRIu64, t->seq);

    cJSON_ArrayForEach(it, root)
    {
        if (!in_list(top_keys, ARRAY_LEN(top_keys), it->string))
            return eg_fail(e, EG_E_SCHEMA, "%s: unknown key (allowed: seq, ts, patient, readings)",
                           eg_detail_str(qb, sizeof qb, it->string));
    }

    ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    if (!ts)
        return eg_fail(e, EG_E_SCHEMA, "ts: required (RFC 3339 date-time with offset)");
    if (!cJSON_IsString(ts))
        return eg_fail(e, EG_E_SCHEMA, "ts: must be a string (RFC 3339 date-time with offset)");
    if (eg_time_parse(ts->valuestring, &t->ts_ms) != 0)
        return eg_fail(e, EG_E_SCHEMA, "ts: \"%s\" is not an RFC 3339 date-time with offset",
                       eg_detail_str(qb, sizeof qb, ts->valuestring));

    patient = cJSON_GetObjectItemCaseSensitive(root, "patient");
    if (patient) {
        if (!cJSON_IsString(patient) || !eg_id_valid(patient->valuestring))
            return eg_fail(e, EG_E_SCHEMA,
                           "patient: must be an id of 1-64 characters A-Z a-z 0-9 . _ -");
        t->patient = patient->valuestring;
    }

    readings = cJSON_GetObjectItemCaseSensitive(root, "readings");
    if (!readings)
        return eg_fail(e, EG_E_SCHEMA, "readings: required (array of 1..%d readings)",
                       EG_MAX_READINGS);
    if (!cJSON_IsArray(readings))
        return eg_fail(e, EG_E_SCHEMA, "readings: must be an array of 1..%d readings",
                       EG_MAX_READINGS);
    count = cJSON_GetArraySize(readings);
    if (count < 1 || count > EG_MAX_READINGS)
        return eg_fail(e, EG_E_SCHEMA, "readings: must hold 1..%d readings, got %d",
                       EG_MAX_READINGS, count);
    i = 0;
    cJSON_ArrayForEach(it, readings)
    {
        if (!cJSON_IsObject(it))
            return eg_fail(e, EG_E_SCHEMA, "readings[%d]: must be an object", i);
        i++;
    }
    t->readings = readings;

    ahead = t->ts_ms - now_ms;
    if (ahead > EG_FUTURE_SKEW_MS)
        return eg_fail(e, EG_E_RANGE,
                       "ts: %" PRId64 ".%03" PRId64 " s in the future (at most %d s allowed)",
                       ahead / 1000, ahead % 1000, EG_FUTURE_SKEW_MS / 1000);
    if (t->ts_ms < EG_EARLIEST_MS)
        return eg_fail(e, EG_E_RANGE, "ts: before 1900-01-01 is not a plausible measurement time");
    return EG_OK;
}

/* What every Observation of one message shares. */
struct obs_ctx {
    enum eg_device_type type;
    const char *device_id;
    const char *patient_id;
    const char *msg_id;
    char effective[EG_TIME_STRLEN];
};

/* Checks reading number idx and fills vals[0..spec->nparts); *spec_out is
 * its spec. Details are prefixed with path ("readings[idx]"). */
static eg_err check_reading(const cJSON *rd, const char *path, const struct obs_ctx *c,
                            const struct eg_reading_spec **spec_out, struct eg_value *vals,
                            struct eg_error *e)
{
    char qb[64], vfield[64], ufield[48];
    const struct eg_reading_spec *s;
    const cJSON *type, *unit, *it;
    const char *unit_str = NULL;
    size_t p;
    eg_err rc;

    type = cJSON_GetObjectItemCaseSensitive(rd, "type");
    if (!type)
        return eg_fail(e, EG_E_SCHEMA, "%s.type: required", path);
    if (!cJSON_IsString(type))
        return eg_fail(e, EG_E_SCHEMA, "%s.type: must be a string", path);
    s = eg_reading_by_name(type->valuestring);
    if (!s)
        return eg_fail(e, EG_E_SCHEMA, "%s.type: unknown reading type \"%s\"", path,
                       eg_detail_str(qb, sizeof qb, type->valuestring));
    if (!eg_device_measures(c->type, s->type))
        return eg_fail(e, EG_E_UNSUPPORTED, "%s.type: a %s device does not measure %s", path,
                       eg_device_type_name(c->type), s->name);

    cJSON_ArrayForEach(it, rd)
    {
        int known = in_list(reading_keys, ARRAY_LEN(reading_keys), it->string);

        for (p = 0; !known && p < s->nparts; p++)
            known = strcmp(s->parts[p].key, it->string) == 0;
        if (!known)
            return eg_fail(e, EG_E_SCHEMA, "%s.%s: unknown key for %s", path,
                           eg_detail_str(qb, sizeof qb, it->string), s->name);
    }

    for (p = 0; p < s->nparts; p++) {
        it = cJSON_GetObjectItemCaseSensitive(rd, s->parts[p].key);
        if (!it)
            return eg_fail(e, EG_E_SCHEMA, "%s.%s: required number", path, s->parts[p].key);
        if (!cJSON_IsNumber(it))
            return eg_fail(e, EG_E_SCHEMA, "%s.%s: must be a number", path, s->parts[p].key);
    }
    unit = cJSON_GetObjectItemCaseSensitive(rd, "unit");
    if (unit) {
        if (!cJSON_IsString(unit))
            return eg_fail(e, EG_E_SCHEMA, "%s.unit: must be a string", path);
        unit_str = unit->valuestring;
    }

    snprintf(ufield, sizeof ufield, "%s.unit", path);
    for (p = 0; p < s->nparts; p++) {
        it = cJSON_GetObjectItemCaseSensitive(rd, s->parts[p].key);
        snprintf(vfield, sizeof vfield, "%s.%s", path, s->parts[p].key);
        rc = eg_quantity_normalize(&s->parts[p], NULL, unit_str, it->valuedouble, vfield, ufield,
                                   &vals[p], e);
        if (rc != EG_OK)
            return rc;
    }
    rc = eg_reading_check_parts(s, vals, path, e);
    if (rc != EG_OK)
        return rc;
    *spec_out = s;
    return EG_OK;
}

/* Adds {key: {sub: text}} to parent. Returns 0 or -1 on OOM. */
static int add_wrapped_string(cJSON *parent, const char *key, const char *sub, const char *text)
{
    cJSON *o = cJSON_AddObjectToObject(parent, key);

    return o && cJSON_AddStringToObject(o, sub, text) ? 0 : -1;
}

/* Adds child under key, taking it (also on failure). Returns 0 or -1. */
static int add_taken(cJSON *parent, const char *key, cJSON *child)
{
    if (!child)
        return -1;
    if (!cJSON_AddItemToObject(parent, key, child)) {
        cJSON_Delete(child);
        return -1;
    }
    return 0;
}

/* The Observation of reading idx (SPEC §6), or NULL on OOM. */
static cJSON *build_observation(const struct obs_ctx *c, size_t idx,
                                const struct eg_reading_spec *s, const struct eg_value *vals)
{
    char urn[128], ident[128], ref[96], dev[128];
    cJSON *obs = cJSON_CreateObject(), *ids, *id;

    if (!obs)
        return NULL;
    snprintf(urn, sizeof urn, DEVICE_URN "%s", c->device_id);
    snprintf(ident, sizeof ident, "%s/%s/%zu", c->device_id, c->msg_id, idx);
    snprintf(ref, sizeof ref, "Patient/%s", c->patient_id);
    snprintf(dev, sizeof dev, "%s %s", eg_device_type_name(c->type), c->device_id);

    if (!cJSON_AddStringToObject(obs, "resourceType", "Observation") ||
        add_wrapped_string(obs, "meta", "source", urn))
        goto fail;
    ids = cJSON_AddArrayToObject(obs, "identifier");
    id = cJSON_CreateObject();
    if (!ids || !id || !cJSON_AddItemToArray(ids, id)) {
        cJSON_Delete(id);
        goto fail;
    }
    if (!cJSON_AddStringToObject(id, "system", urn) ||
        !cJSON_AddStringToObject(id, "value", ident) ||
        !cJSON_AddStringToObject(obs, "status", "final") ||
        add_taken(obs, "category", eg_fhir_category(s)) ||
        add_taken(obs, "code", eg_fhir_code(s, vals)) ||
        add_wrapped_string(obs, "subject", "reference", ref) ||
        !cJSON_AddStringToObject(obs, "effectiveDateTime", c->effective) ||
        add_wrapped_string(obs, "device", "display", dev) || eg_fhir_add_value(obs, s, vals))
        goto fail;
    return obs;
fail:
    cJSON_Delete(obs);
    return NULL;
}

eg_err eg_telemetry_normalize(const struct eg_telemetry *t, enum eg_device_type type,
                              const char *device_id, const char *patient_id, struct eg_obs *out,
                              size_t *n, struct eg_error *e)
{
    struct eg_value vals[EG_READING_MAX_PARTS];
    struct obs_ctx c;
    const cJSON *rd;
    size_t count = 0, i = 0;
    eg_err rc = EG_OK;

    if (n)
        *n = 0;
    if (!t || !out || !n || (int)type < 0 || type >= EG_DEV__COUNT)
        return eg_fail(e, EG_E_INTERNAL, "eg_telemetry_normalize: bad arguments");
    if (!eg_id_valid(device_id) || !eg_id_valid(patient_id))
        return eg_fail(e, EG_E_INTERNAL, "eg_telemetry_normalize: invalid device or patient id");
    if (!cJSON_IsArray(t->readings) || cJSON_GetArraySize(t->readings) < 1 ||
        cJSON_GetArraySize(t->readings) > EG_MAX_READINGS)
        return eg_fail(e, EG_E_SCHEMA, "readings: must hold 1..%d readings", EG_MAX_READINGS);
    count = (size_t)cJSON_GetArraySize(t->readings);
    for (i = 0; i < count; i++) {
        out[i].resource = NULL;
        out[i].category = NULL;
    }

    c.type = type;
    c.device_id = device_id;
    c.patient_id = patient_id;
    c.msg_id = t->msg_id;
    eg_time_format(t->ts_ms, c.effective);

    i = 0;
    cJSON_ArrayForEach(rd, t->readings)
    {
        const struct eg_reading_spec *s = NULL;
        char path[32];

        snprintf(path, sizeof path, "readings[%zu]", i);
        if (!cJSON_IsObject(rd)) {
            rc = eg_fail(e, EG_E_SCHEMA, "%s: must be an object", path);
            goto out;
        }
        rc = check_reading(rd, path, &c, &s, vals, e);
        if (rc != EG_OK)
            goto out;
        out[i].resource = build_observation(&c, i, s, vals);
        if (!out[i].resource) {
            rc = eg_fail(e, EG_E_NOMEM, "%s: out of memory building the Observation", path);
            goto out;
        }
        out[i].category = s->category;
        i++;
    }
    *n = count;
out:
    if (rc != EG_OK)
        eg_obs_free(out, count);
    return rc;
}

void eg_obs_free(struct eg_obs *out, size_t n)
{
    size_t i;

    if (!out)
        return;
    for (i = 0; i < n; i++) {
        cJSON_Delete(out[i].resource);
        out[i].resource = NULL;
        out[i].category = NULL;
    }
}

/*
 * eg_fhir_in.c — FHIR R4 JSON input from hospitals (SPEC §5, §13): an
 * Observation, or a Bundle (any type) whose entries are Observations, is
 * validated and normalized into struct eg_hmsg (eg_hospital.h), so that a
 * hospital Observation looks like a device one (SPEC §6, eg_telemetry.c).
 * Also the two helpers of eg_hospital.h shared with the HL7 v2 parser.
 *
 * Normalization (docs/protocol.md lists these decisions):
 *  - keys in the order of the device path: resourceType, meta, identifier,
 *    status, category, code, (subject, added by eg_hobs_set_subject),
 *    effective[x], issued, dataAbsentReason, interpretation, note, bodySite,
 *    method, referenceRange, value[x], component;
 *  - meta is only {"source":"urn:ehrgate:hospital:{hid}"} (versionId,
 *    lastUpdated, profile, security, tag are the hospital server's);
 *  - identifier: ours "{hid}/{msg_id}/{index}" first, then the hospital's
 *    "id", both in system urn:ehrgate:hospital:{hid}, then the hospital's
 *    own identifiers (without assigner); urn:ehrgate: systems are reserved;
 *  - SPEC §4 LOINC codes: category, code (codings + text), value and units
 *    rebuilt by the device path's builders (eg_readings.h); referenceRange
 *    is dropped for them (it may be in the unconverted unit);
 *  - other codes: code, value[x], component[] kept as given; category is the
 *    first observation-category coding, or none ("unknown");
 *  - dropped: id (moved), text (narrative), contained, extension and "_x"
 *    primitive extensions, language, subject (re-added by ingest),
 *    references to resources the gateway does not hold (basedOn, partOf,
 *    focus, encounter, performer, specimen, device, hasMember,
 *    derivedFrom), note[].author;
 *  - refused as unsupported: modifierExtension, implicitRules (they change
 *    the meaning of what we would keep);
 *  - unknown elements -> schema (R4 JSON has none).
 */
#include "eg_fhir_in.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_hospital.h"
#include "eg_json.h"
#include "eg_readings.h"
#include "eg_telemetry.h" /* eg_id_valid, EG_FUTURE_SKEW_MS */
#include "eg_time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HOSPITAL_URN "urn:ehrgate:hospital:"
#define RESERVED_URN "urn:ehrgate:"
#define FHIR_ID_MAX 64
#define MIN_INSTANT_MS (-62135596800000LL) /* 0001-01-01T00:00:00Z: FHIR has no year 0 */
#define PATH_MAX_LEN 48                    /* "entry[511].resource." */

/* R4 ObservationStatus (http://hl7.org/fhir/R4/valueset-observation-status.html). */
static const char *const obs_status[] = {
    "registered", "preliminary",      "final",   "amended", "corrected",
    "cancelled",  "entered-in-error", "unknown",
};

/* R4 observation-category codes and displays
 * (http://terminology.hl7.org/CodeSystem/observation-category). */
static const struct {
    const char *code, *display;
} obs_categories[] = {
    {"social-history", "Social History"},
    {"vital-signs", "Vital Signs"},
    {"imaging", "Imaging"},
    {"laboratory", "Laboratory"},
    {"procedure", "Procedure"},
    {"survey", "Survey"},
    {"exam", "Exam"},
    {"therapy", "Therapy"},
    {"activity", "Activity"},
};

/* R4 Bundle.type codes (http://hl7.org/fhir/R4/valueset-bundle-type.html). */
static const char *const bundle_types[] = {
    "document",       "message", "transaction", "transaction-response", "batch",
    "batch-response", "history", "searchset",   "collection",
};

/* What happens to each element of an R4 Observation. */
enum disp {
    D_USE,         /* checked, then normalized or kept */
    D_DROP,        /* dropped (see the top of this file) */
    D_REFUSE,      /* EG_E_UNSUPPORTED: a modifier we cannot honour */
    D_NOT_ACCEPTED /* EG_E_SCHEMA: a value[x]/effective[x] type SPEC §5 does not take */
};

static const struct {
    const char *key;
    enum disp d;
} obs_elements[] = {
    {"resourceType", D_USE},
    {"id", D_USE},
    {"meta", D_DROP},
    {"implicitRules", D_REFUSE},
    {"language", D_DROP},
    {"text", D_DROP},
    {"contained", D_DROP},
    {"extension", D_DROP},
    {"modifierExtension", D_REFUSE},
    {"identifier", D_USE},
    {"basedOn", D_DROP},
    {"partOf", D_DROP},
    {"status", D_USE},
    {"category", D_USE},
    {"code", D_USE},
    {"subject", D_USE},
    {"focus", D_DROP},
    {"encounter", D_DROP},
    {"effectiveDateTime", D_USE},
    {"effectivePeriod", D_USE},
    {"effectiveTiming", D_NOT_ACCEPTED},
    {"effectiveInstant", D_NOT_ACCEPTED},
    {"issued", D_USE},
    {"performer", D_DROP},
    {"valueQuantity", D_USE},
    {"valueCodeableConcept", D_USE},
    {"valueString", D_USE},
    {"valueBoolean", D_NOT_ACCEPTED},
    {"valueInteger", D_NOT_ACCEPTED},
    {"valueRange", D_NOT_ACCEPTED},
    {"valueRatio", D_NOT_ACCEPTED},
    {"valueSampledData", D_NOT_ACCEPTED},
    {"valueTime", D_NOT_ACCEPTED},
    {"valueDateTime", D_NOT_ACCEPTED},
    {"valuePeriod", D_NOT_ACCEPTED},
    {"dataAbsentReason", D_USE},
    {"interpretation", D_USE},
    {"note", D_USE},
    {"bodySite", D_USE},
    {"method", D_USE},
    {"specimen", D_DROP},
    {"device", D_DROP},
    {"referenceRange", D_USE},
    {"hasMember", D_DROP},
    {"derivedFrom", D_DROP},
    {"component", D_USE},
};

/* R4 Bundle and Bundle.entry elements (all ignored but resource/entry). */
static const char *const bundle_keys[] = {
    "resourceType", "id",        "meta",  "implicitRules", "language", "identifier",
    "type",         "timestamp", "total", "link",          "entry",    "signature",
};
static const char *const entry_keys[] = {
    "id",       "extension", "modifierExtension", "link",     "fullUrl",
    "resource", "search",    "request",           "response",
};

/* One message being parsed. */
struct pctx {
    const struct eg_hosp_ctx *ctx;
    const char *msg_id;
    char urn[sizeof HOSPITAL_URN + FHIR_ID_MAX];
    char path[PATH_MAX_LEN]; /* prefix of every detail: "" or "entry[i].resource." */
    struct eg_error *e;
};

/* eg_fail with the current path in front of the detail. */
__attribute__((format(printf, 3, 4))) static eg_err fail(struct pctx *c, eg_err code,
                                                         const char *fmt, ...)
{
    char msg[sizeof c->e->detail];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return eg_fail(c->e, code, "%s%s", c->path, msg);
}

static int in_list(const char *const *list, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* True if s is a non-empty string. */
static int nonempty_str(const cJSON *s)
{
    return cJSON_IsString(s) && s->valuestring[0] != '\0';
}

/* True if s is an R4 id: [A-Za-z0-9\-\.]{1,64}. */
static int fhir_id_valid(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        char ch = s[i];
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '.';
        if (!ok || i >= FHIR_ID_MAX)
            return 0;
    }
    return i > 0;
}

/* An R4 dateTime we accept: a full date "YYYY-MM-DD" (*is_date = 1), or an
 * RFC 3339 date-time with offset written as R4 requires (upper-case T and Z,
 * offset within -14:00..+14:00, year >= 0001). Partial dates (YYYY,
 * YYYY-MM) are refused: an observation needs an instant for consent and the
 * future rule. Returns 0 and sets *ms, or -1. */
static int fhir_datetime(const char *s, int64_t *ms, int *is_date)
{
    size_t len = strlen(s);

    *is_date = 0;
    if (eg_date_parse(s, ms) == 0) {
        *is_date = 1;
        return *ms >= MIN_INSTANT_MS ? 0 : -1;
    }
    if (eg_time_parse(s, ms) != 0 || s[10] != 'T' || strchr(s, 'z'))
        return -1;
    if (s[len - 1] != 'Z') { /* "+hh:mm" at the end */
        int oh = (s[len - 5] - '0') * 10 + (s[len - 4] - '0');
        if (oh > 14 || (oh == 14 && strcmp(s + len - 2, "00") != 0))
            return -1;
    }
    return *ms >= MIN_INSTANT_MS ? 0 : -1;
}

/* "2026-11" style partial date? (for a better detail) */
static int partial_date(const char *s)
{
    size_t len = strlen(s), i;

    if (len != 4 && len != 7)
        return 0;
    for (i = 0; i < len; i++)
        if (i == 4 ? s[i] != '-' : (s[i] < '0' || s[i] > '9'))
            return 0;
    return 1;
}

/* Checks an R4 dateTime at field; sets *ms. */
static eg_err check_datetime(struct pctx *c, const cJSON *v, const char *field, int64_t *ms,
                             int *is_date)
{
    char qb[64];

    if (!cJSON_IsString(v))
        return fail(c, EG_E_SCHEMA, "%s: must be a string (FHIR dateTime)", field);
    if (partial_date(v->valuestring))
        return fail(c, EG_E_SCHEMA,
                    "%s: partial date \"%s\" not accepted (a full date YYYY-MM-DD or a date-time "
                    "with offset is required)",
                    field, eg_detail_str(qb, sizeof qb, v->valuestring));
    if (fhir_datetime(v->valuestring, ms, is_date) != 0)
        return fail(c, EG_E_SCHEMA,
                    "%s: \"%s\" is not a FHIR dateTime (YYYY-MM-DD or RFC 3339 with offset)", field,
                    eg_detail_str(qb, sizeof qb, v->valuestring));
    return EG_OK;
}

/* The >300 s-in-the-future rule (SPEC §2, §13). */
static eg_err check_future(struct pctx *c, int64_t ms, const char *field)
{
    int64_t ahead = ms - c->ctx->now_ms;

    if (ahead > EG_FUTURE_SKEW_MS)
        return fail(c, EG_E_RANGE,
                    "%s: %" PRId64 ".%03" PRId64 " s in the future (at most %d s allowed)", field,
                    ahead / 1000, ahead % 1000, EG_FUTURE_SKEW_MS / 1000);
    return EG_OK;
}

/* A CodeableConcept that must carry coding[] (1+ items, each with system and
 * code strings); display must be a string and text a string when present. */
static eg_err check_coded(struct pctx *c, const cJSON *cc, const char *field)
{
    const cJSON *codings, *it;
    int i = 0;

    if (!cc)
        return fail(c, EG_E_SCHEMA, "%s: required", field);
    if (!cJSON_IsObject(cc))
        return fail(c, EG_E_SCHEMA, "%s: must be a CodeableConcept object", field);
    it = get(cc, "text");
    if (it && !nonempty_str(it))
        return fail(c, EG_E_SCHEMA, "%s.text: must be a non-empty string", field);
    codings = get(cc, "coding");
    if (!codings)
        return fail(c, EG_E_SCHEMA, "%s.coding: required", field);
    if (!cJSON_IsArray(codings) || cJSON_GetArraySize(codings) == 0)
        return fail(c, EG_E_SCHEMA, "%s.coding: must be a non-empty array", field);
    cJSON_ArrayForEach(it, codings)
    {
        const cJSON *sys = get(it, "system"), *code = get(it, "code"), *disp = get(it, "display");

        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "%s.coding[%d]: must be an object", field, i);
        if (!sys)
            return fail(c, EG_E_SCHEMA, "%s.coding[%d].system: required", field, i);
        if (!nonempty_str(sys))
            return fail(c, EG_E_SCHEMA, "%s.coding[%d].system: must be a non-empty string", field,
                        i);
        if (!code)
            return fail(c, EG_E_SCHEMA, "%s.coding[%d].code: required", field, i);
        if (!nonempty_str(code))
            return fail(c, EG_E_SCHEMA, "%s.coding[%d].code: must be a non-empty string", field, i);
        if (disp && !nonempty_str(disp))
            return fail(c, EG_E_SCHEMA, "%s.coding[%d].display: must be a non-empty string", field,
                        i);
        i++;
    }
    return EG_OK;
}

/* A CodeableConcept kept as given: an object with coding[] and/or text. */
static eg_err check_concept_loose(struct pctx *c, const cJSON *cc, const char *field)
{
    const cJSON *codings, *text, *it;

    if (!cJSON_IsObject(cc))
        return fail(c, EG_E_SCHEMA, "%s: must be a CodeableConcept object", field);
    codings = get(cc, "coding");
    text = get(cc, "text");
    if (!codings && !text)
        return fail(c, EG_E_SCHEMA, "%s: needs coding or text", field);
    if (text && !nonempty_str(text))
        return fail(c, EG_E_SCHEMA, "%s.text: must be a non-empty string", field);
    if (codings) {
        if (!cJSON_IsArray(codings) || cJSON_GetArraySize(codings) == 0)
            return fail(c, EG_E_SCHEMA, "%s.coding: must be a non-empty array", field);
        cJSON_ArrayForEach(it, codings)
        {
            if (!cJSON_IsObject(it))
                return fail(c, EG_E_SCHEMA, "%s.coding: items must be objects", field);
        }
    }
    return EG_OK;
}

/* An array of objects (1+ items). */
static eg_err check_obj_array(struct pctx *c, const cJSON *a, const char *field)
{
    const cJSON *it;

    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0)
        return fail(c, EG_E_SCHEMA, "%s: must be a non-empty array", field);
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "%s: items must be objects", field);
    }
    return EG_OK;
}

/* valueQuantity of a non-§4 observation: an object with a number "value". */
static eg_err check_quantity_loose(struct pctx *c, const cJSON *q, const char *field)
{
    const cJSON *v, *it;
    static const char *const str_keys[] = {"comparator", "unit", "system", "code"};
    size_t i;

    if (!cJSON_IsObject(q))
        return fail(c, EG_E_SCHEMA, "%s: must be a Quantity object", field);
    v = get(q, "value");
    if (!v)
        return fail(c, EG_E_SCHEMA, "%s.value: required (a number)", field);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(c, EG_E_SCHEMA, "%s.value: must be a number", field);
    for (i = 0; i < ARRAY_LEN(str_keys); i++) {
        it = get(q, str_keys[i]);
        if (it && !nonempty_str(it))
            return fail(c, EG_E_SCHEMA, "%s.%s: must be a non-empty string", field, str_keys[i]);
    }
    return EG_OK;
}

/* The value[x] of an Observation or component: exactly one of valueQuantity,
 * valueString, valueCodeableConcept (others -> schema). *val is the one
 * found (NULL if none), *vkey its key. */
static eg_err find_value(struct pctx *c, const cJSON *o, const char *field, const cJSON **val,
                         const char **vkey)
{
    static const char *const accepted[] = {"valueQuantity", "valueString", "valueCodeableConcept"};
    const cJSON *it;

    *val = NULL;
    *vkey = NULL;
    cJSON_ArrayForEach(it, o)
    {
        if (strncmp(it->string, "value", 5) != 0 || it->string[5] < 'A' || it->string[5] > 'Z')
            continue;
        if (!in_list(accepted, ARRAY_LEN(accepted), it->string))
            return fail(c, EG_E_SCHEMA,
                        "%s%s: not accepted (valueQuantity, valueString, valueCodeableConcept or "
                        "component[])",
                        field, it->string);
        if (*val)
            return fail(c, EG_E_SCHEMA, "%s%s: only one value[x] allowed (also %s)", field,
                        it->string, *vkey);
        *val = it;
        *vkey = it->string;
    }
    if (!*val)
        return EG_OK;
    if (strcmp(*vkey, "valueString") == 0 && !nonempty_str(*val))
        return fail(c, EG_E_SCHEMA, "%svalueString: must be a non-empty string", field);
    return EG_OK;
}

/* Checks a kept value[x] of a non-§4 observation or component. */
static eg_err check_value_loose(struct pctx *c, const cJSON *val, const char *vkey,
                                const char *field)
{
    char f[96];

    snprintf(f, sizeof f, "%s%s", field, vkey);
    if (strcmp(vkey, "valueQuantity") == 0)
        return check_quantity_loose(c, val, f);
    if (strcmp(vkey, "valueCodeableConcept") == 0)
        return check_concept_loose(c, val, f);
    return EG_OK; /* valueString checked by find_value */
}

/* Deep copy of v, without extensions, added under key. Returns 0 or -1 on
 * OOM. */
static void strip_extensions(cJSON *v);
static int add_copy(cJSON *obj, const char *key, const cJSON *v)
{
    cJSON *d = cJSON_Duplicate(v, 1);

    if (!d)
        return -1;
    strip_extensions(d);
    if (!cJSON_AddItemToObject(obj, key, d)) {
        cJSON_Delete(d);
        return -1;
    }
    return 0;
}

/* {"system": system, "value": value} appended to array ids. */
static int add_identifier(cJSON *ids, const char *system, const char *value)
{
    cJSON *id = cJSON_CreateObject();

    if (egjson_add_taken(ids, NULL, id))
        return -1;
    return cJSON_AddStringToObject(id, "system", system) &&
                   cJSON_AddStringToObject(id, "value", value)
               ? 0
               : -1;
}

/* What was learnt about one Observation while checking it. */
struct obs_in {
    const cJSON *o;
    /* §4 */
    int s4;
    struct eg_loinc_match m;
    const char *loinc; /* the §4 code the Observation carries */
    struct eg_value vals[EG_READING_MAX_PARTS];
    /* other codes */
    const char *cat_code, *cat_display; /* NULL: unknown */
    /* value */
    const cJSON *val;
    const char *vkey;
};

/* Finds the §4 LOINC coding(s) of code (checked by check_coded). All §4
 * codings must name the same reading part and unit rule. */
static eg_err find_s4(struct pctx *c, const cJSON *code, struct obs_in *in)
{
    char qa[32], qb[32];
    const cJSON *it;
    int i = 0;

    in->s4 = 0;
    cJSON_ArrayForEach(it, get(code, "coding"))
    {
        struct eg_loinc_match m;
        const char *sys = egjson_str(it, "system"), *cd = egjson_str(it, "code");

        if (strcmp(sys, EG_LOINC_SYSTEM) == 0 && eg_reading_by_loinc(cd, &m) == 0) {
            if (!in->s4) {
                in->s4 = 1;
                in->m = m;
                in->loinc = cd;
            } else if (m.spec != in->m.spec || m.part != in->m.part || m.rule != in->m.rule) {
                return fail(c, EG_E_SCHEMA,
                            "code.coding[%d]: LOINC %s contradicts LOINC %s (different SPEC §4 "
                            "readings or units)",
                            i, eg_detail_str(qa, sizeof qa, cd),
                            eg_detail_str(qb, sizeof qb, in->loinc));
            }
        }
        i++;
    }
    return EG_OK;
}

/* The first observation-category coding of category[] (non-§4 codes). */
static eg_err find_category(struct pctx *c, const cJSON *cat, struct obs_in *in)
{
    char qb[64];
    const cJSON *cc, *cd;
    int i = 0, j;
    size_t k;

    in->cat_code = NULL;
    in->cat_display = NULL;
    if (!cat)
        return EG_OK;
    if (!cJSON_IsArray(cat))
        return fail(c, EG_E_SCHEMA, "category: must be an array of CodeableConcepts");
    cJSON_ArrayForEach(cc, cat)
    {
        const cJSON *codings;

        if (!cJSON_IsObject(cc))
            return fail(c, EG_E_SCHEMA, "category[%d]: must be a CodeableConcept object", i);
        codings = get(cc, "coding");
        if (codings && !cJSON_IsArray(codings))
            return fail(c, EG_E_SCHEMA, "category[%d].coding: must be an array", i);
        j = 0;
        cJSON_ArrayForEach(cd, codings)
        {
            const char *sys, *code;

            if (!cJSON_IsObject(cd))
                return fail(c, EG_E_SCHEMA, "category[%d].coding[%d]: must be an object", i, j);
            sys = egjson_str(cd, "system");
            if (in->cat_code || !sys || strcmp(sys, EG_OBSCAT_SYSTEM) != 0) {
                j++;
                continue;
            }
            code = egjson_str(cd, "code");
            if (!code)
                return fail(c, EG_E_SCHEMA, "category[%d].coding[%d].code: required", i, j);
            for (k = 0; k < ARRAY_LEN(obs_categories); k++)
                if (strcmp(obs_categories[k].code, code) == 0)
                    break;
            if (k == ARRAY_LEN(obs_categories))
                return fail(c, EG_E_SCHEMA,
                            "category[%d].coding[%d].code: \"%s\" is not an observation-category "
                            "code",
                            i, j, eg_detail_str(qb, sizeof qb, code));
            in->cat_code = obs_categories[k].code;
            in->cat_display = obs_categories[k].display;
            j++;
        }
        i++;
    }
    return EG_OK;
}

/* The unit spelling of a §4 valueQuantity: its code (UCUM system, or no
 * system), else its unit, else NULL (the default unit of SPEC §4). A unit
 * that names another known unit than the code -> unit. *ufield names the
 * field the spelling came from. */
static eg_err s4_unit(struct pctx *c, const cJSON *q, const char *field, const char **spelling,
                      char *ufield, size_t ufn)
{
    char qa[64], qb[64];
    const cJSON *code = get(q, "code"), *unit = get(q, "unit"), *sys = get(q, "system");

    if (get(q, "comparator"))
        return fail(c, EG_E_SCHEMA, "%s.comparator: not accepted for a SPEC §4 reading", field);
    if ((code && !cJSON_IsString(code)) || (unit && !cJSON_IsString(unit)) ||
        (sys && !cJSON_IsString(sys)))
        return fail(c, EG_E_SCHEMA, "%s: unit, system and code must be strings", field);
    if (code && sys && strcmp(sys->valuestring, EG_UCUM_SYSTEM) != 0)
        return fail(c, EG_E_UNIT, "%s.system: \"%s\" is not UCUM (" EG_UCUM_SYSTEM ")", field,
                    eg_detail_str(qa, sizeof qa, sys->valuestring));
    if (code && unit) {
        const char *cc = eg_unit_canonical(code->valuestring);
        const char *cu = eg_unit_canonical(unit->valuestring);

        if (cc && cu && strcmp(cc, cu) != 0)
            return fail(c, EG_E_UNIT, "%s.unit: \"%s\" contradicts code \"%s\"", field,
                        eg_detail_str(qa, sizeof qa, unit->valuestring),
                        eg_detail_str(qb, sizeof qb, code->valuestring));
    }
    *spelling = code ? code->valuestring : unit ? unit->valuestring : NULL;
    snprintf(ufield, ufn, "%s%s.%s", c->path, field, code ? "code" : "unit");
    return EG_OK;
}

/* Normalizes the §4 valueQuantity q (at field) of quantity qt with LOINC
 * loinc into *out. */
static eg_err s4_quantity(struct pctx *c, const cJSON *q, const char *field,
                          const struct eg_quantity *qt, const char *loinc, struct eg_value *out)
{
    char vfield[128], ufield[128];
    const char *spelling = NULL;
    const cJSON *v;
    eg_err rc;

    if (!q)
        return fail(c, EG_E_SCHEMA, "%s: required for %s (LOINC %s)", field, qt->name, loinc);
    if (!cJSON_IsObject(q))
        return fail(c, EG_E_SCHEMA, "%s: must be a Quantity object", field);
    v = get(q, "value");
    if (!v)
        return fail(c, EG_E_SCHEMA, "%s.value: required (a number)", field);
    if (!cJSON_IsNumber(v))
        return fail(c, EG_E_SCHEMA, "%s.value: must be a number", field);
    rc = s4_unit(c, q, field, &spelling, ufield, sizeof ufield);
    if (rc != EG_OK)
        return rc;
    snprintf(vfield, sizeof vfield, "%s%s.value", c->path, field);
    return eg_quantity_normalize(qt, loinc, spelling, v->valuedouble, vfield, ufield, out, c->e);
}

/* §4 value: valueQuantity for a single quantity, component[] for a panel. */
static eg_err s4_value(struct pctx *c, struct obs_in *in)
{
    const struct eg_reading_spec *s = in->m.spec;
    const cJSON *comps = get(in->o, "component"), *it;
    int seen[EG_READING_MAX_PARTS] = {0};
    char field[64], qb[32];
    size_t p;
    int i = 0;
    eg_err rc;

    if (in->m.part >= 0) { /* one quantity */
        if (comps)
            return fail(c, EG_E_SCHEMA, "component: not accepted for %s (LOINC %s)",
                        in->m.spec->parts[in->m.part].name, in->loinc);
        if (in->val && strcmp(in->vkey, "valueQuantity") != 0)
            return fail(c, EG_E_SCHEMA, "%s: %s (LOINC %s) takes valueQuantity", in->vkey, s->name,
                        in->loinc);
        return s4_quantity(c, in->val, "valueQuantity", &s->parts[in->m.part], in->loinc,
                           &in->vals[0]);
    }
    /* a panel (blood pressure): one component per part, nothing else */
    if (in->val)
        return fail(c, EG_E_SCHEMA, "%s: %s (LOINC %s) takes component[], not a value", in->vkey,
                    s->name, in->loinc);
    if (!comps)
        return fail(c, EG_E_SCHEMA, "component: required for %s (LOINC %s)", s->name, in->loinc);
    if (!cJSON_IsArray(comps))
        return fail(c, EG_E_SCHEMA, "component: must be an array");
    cJSON_ArrayForEach(it, comps)
    {
        struct eg_loinc_match m;
        const char *loinc = NULL;
        const cJSON *cd, *val;
        const char *vkey;
        int part = -1;

        snprintf(field, sizeof field, "component[%d]", i);
        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "%s: must be an object", field);
        snprintf(field, sizeof field, "component[%d].code", i);
        rc = check_coded(c, get(it, "code"), field);
        if (rc != EG_OK)
            return rc;
        cJSON_ArrayForEach(cd, get(get(it, "code"), "coding"))
        {
            const char *code = egjson_str(cd, "code");

            if (strcmp(egjson_str(cd, "system"), EG_LOINC_SYSTEM) == 0 &&
                eg_reading_by_loinc(code, &m) == 0 && m.spec == s && m.part >= 0) {
                part = m.part;
                loinc = code;
                break;
            }
        }
        if (part < 0)
            return fail(c, EG_E_SCHEMA, "%s: not a component of %s (LOINC %s)", field, s->name,
                        in->loinc);
        if (seen[part])
            return fail(c, EG_E_SCHEMA, "%s: %s %s given twice", field, s->name,
                        eg_detail_str(qb, sizeof qb, s->parts[part].key));
        seen[part] = 1;
        snprintf(field, sizeof field, "component[%d].", i);
        rc = find_value(c, it, field, &val, &vkey);
        if (rc != EG_OK)
            return rc;
        if (val && strcmp(vkey, "valueQuantity") != 0)
            return fail(c, EG_E_SCHEMA, "%s%s: %s takes valueQuantity", field, vkey, loinc);
        snprintf(field, sizeof field, "component[%d].valueQuantity", i);
        rc = s4_quantity(c, val, field, &s->parts[part], loinc, &in->vals[part]);
        if (rc != EG_OK)
            return rc;
        i++;
    }
    for (p = 0; p < s->nparts; p++)
        if (!seen[p])
            return fail(c, EG_E_SCHEMA, "component: %s %s (LOINC %s) required", s->name,
                        s->parts[p].key, s->parts[p].rules[0].codes[0].code);
    {
        char f[PATH_MAX_LEN + 16];

        snprintf(f, sizeof f, "%scomponent", c->path);
        return eg_reading_check_parts(s, in->vals, f, c->e);
    }
}

/* Non-§4 components: each an object with a coded code and a value[x] (or a
 * dataAbsentReason); kept as given. */
static eg_err check_components_loose(struct pctx *c, const cJSON *comps)
{
    char field[64];
    const cJSON *it, *val;
    const char *vkey;
    int i = 0;
    eg_err rc;

    if (!cJSON_IsArray(comps) || cJSON_GetArraySize(comps) == 0)
        return fail(c, EG_E_SCHEMA, "component: must be a non-empty array");
    cJSON_ArrayForEach(it, comps)
    {
        snprintf(field, sizeof field, "component[%d]", i);
        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "%s: must be an object", field);
        snprintf(field, sizeof field, "component[%d].code", i);
        rc = check_coded(c, get(it, "code"), field);
        if (rc != EG_OK)
            return rc;
        snprintf(field, sizeof field, "component[%d].", i);
        rc = find_value(c, it, field, &val, &vkey);
        if (rc != EG_OK)
            return rc;
        if (val) {
            rc = check_value_loose(c, val, vkey, field);
            if (rc != EG_OK)
                return rc;
            if (get(it, "dataAbsentReason"))
                return fail(c, EG_E_SCHEMA, "%sdataAbsentReason: not allowed with %s", field, vkey);
        } else if (!get(it, "dataAbsentReason")) {
            return fail(c, EG_E_SCHEMA,
                        "%svalue: required (valueQuantity, valueString, valueCodeableConcept or "
                        "dataAbsentReason)",
                        field);
        }
        i++;
    }
    return EG_OK;
}

/* The subject: "Patient/{id}" (SPEC §2 id) and/or identifier.value. */
static eg_err check_subject(struct pctx *c, const cJSON *subj, struct eg_hobs *ob)
{
    const cJSON *ref, *ident, *type;

    if (!subj)
        return fail(c, EG_E_SCHEMA, "subject: required");
    if (!cJSON_IsObject(subj))
        return fail(c, EG_E_SCHEMA, "subject: must be a Reference object");
    type = get(subj, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "Patient") == 0))
        return fail(c, EG_E_SCHEMA, "subject.type: must be \"Patient\"");
    ref = get(subj, "reference");
    ident = get(subj, "identifier");
    if (!ref && !ident)
        return fail(c, EG_E_SCHEMA,
                    "subject: needs reference \"Patient/{id}\" or identifier.value");
    if (ref) {
        const char *r = cJSON_IsString(ref) ? ref->valuestring : NULL;

        /* the value is not repeated in the detail: it may name the patient */
        if (!r || strncmp(r, "Patient/", 8) != 0 || !eg_id_valid(r + 8))
            return fail(c, EG_E_SCHEMA,
                        "subject.reference: must be Patient/{id} with an id of 1-64 "
                        "characters A-Z a-z 0-9 . _ -");
        snprintf(ob->patient_id, sizeof ob->patient_id, "%s", r + 8);
    }
    if (ident) {
        const cJSON *v;

        if (!cJSON_IsObject(ident))
            return fail(c, EG_E_SCHEMA, "subject.identifier: must be an Identifier object");
        v = get(ident, "value");
        if (!v)
            return fail(c, EG_E_SCHEMA, "subject.identifier.value: required");
        if (!nonempty_str(v))
            return fail(c, EG_E_SCHEMA, "subject.identifier.value: must be a non-empty string");
        if (strlen(v->valuestring) >= EG_HOSP_IDENT_MAX)
            return fail(c, EG_E_SCHEMA, "subject.identifier.value: longer than %d bytes",
                        EG_HOSP_IDENT_MAX - 1);
        snprintf(ob->idents[0], sizeof ob->idents[0], "%s", v->valuestring);
        ob->nidents = 1;
    }
    return EG_OK;
}

/* effectiveDateTime or effectivePeriod(.start); the future rule. */
static eg_err check_effective(struct pctx *c, const cJSON *o, struct eg_hobs *ob)
{
    const cJSON *edt = get(o, "effectiveDateTime"), *ep = get(o, "effectivePeriod"), *it;
    int64_t start, end;
    int is_date;
    eg_err rc;

    cJSON_ArrayForEach(it, o)
    {
        if (strcmp(it->string, "effectiveTiming") == 0 ||
            strcmp(it->string, "effectiveInstant") == 0)
            return fail(c, EG_E_SCHEMA,
                        "%s: not accepted (effectiveDateTime or effectivePeriod.start)",
                        it->string);
    }
    if (edt && ep)
        return fail(c, EG_E_SCHEMA, "effectivePeriod: only one effective[x] allowed");
    if (edt) {
        rc = check_datetime(c, edt, "effectiveDateTime", &ob->effective_ms, &is_date);
        if (rc == EG_OK)
            rc = check_future(c, ob->effective_ms, "effectiveDateTime");
        return rc;
    }
    if (!ep)
        return fail(c, EG_E_SCHEMA, "effectiveDateTime: required (or effectivePeriod.start)");
    if (!cJSON_IsObject(ep))
        return fail(c, EG_E_SCHEMA, "effectivePeriod: must be a Period object");
    cJSON_ArrayForEach(it, ep)
    {
        if (strcmp(it->string, "start") != 0 && strcmp(it->string, "end") != 0)
            return fail(c, EG_E_SCHEMA, "effectivePeriod.%.40s: unknown element (start, end)",
                        it->string);
    }
    if (!get(ep, "start"))
        return fail(c, EG_E_SCHEMA, "effectivePeriod.start: required");
    rc = check_datetime(c, get(ep, "start"), "effectivePeriod.start", &start, &is_date);
    if (rc == EG_OK)
        rc = check_future(c, start, "effectivePeriod.start");
    if (rc != EG_OK)
        return rc;
    ob->effective_ms = start;
    if (get(ep, "end")) {
        rc = check_datetime(c, get(ep, "end"), "effectivePeriod.end", &end, &is_date);
        if (rc == EG_OK && end < start)
            rc = fail(c, EG_E_SCHEMA, "effectivePeriod.end: before start (per-1)");
        if (rc == EG_OK)
            rc = check_future(c, end, "effectivePeriod.end");
    }
    return rc;
}

/* The hospital's identifiers: objects with a non-empty string value and a
 * system outside urn:ehrgate:. */
static eg_err check_identifiers(struct pctx *c, const cJSON *ids)
{
    const cJSON *it;
    int i = 0;

    if (!ids)
        return EG_OK;
    if (!cJSON_IsArray(ids))
        return fail(c, EG_E_SCHEMA, "identifier: must be an array");
    cJSON_ArrayForEach(it, ids)
    {
        const cJSON *sys = get(it, "system"), *v = get(it, "value");

        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "identifier[%d]: must be an object", i);
        if (!v)
            return fail(c, EG_E_SCHEMA, "identifier[%d].value: required", i);
        if (!nonempty_str(v))
            return fail(c, EG_E_SCHEMA, "identifier[%d].value: must be a non-empty string", i);
        if (sys && !nonempty_str(sys))
            return fail(c, EG_E_SCHEMA, "identifier[%d].system: must be a non-empty string", i);
        if (sys && strncmp(sys->valuestring, RESERVED_URN, strlen(RESERVED_URN)) == 0)
            return fail(c, EG_E_SCHEMA, "identifier[%d].system: " RESERVED_URN " is reserved", i);
        i++;
    }
    return EG_OK;
}

/* note[]: each with a text; only time and text are kept. */
static eg_err check_notes(struct pctx *c, const cJSON *notes)
{
    const cJSON *it;
    int i = 0, is_date;
    int64_t ms;
    eg_err rc;

    rc = check_obj_array(c, notes, "note");
    if (rc != EG_OK)
        return rc;
    cJSON_ArrayForEach(it, notes)
    {
        char f[32];

        if (!nonempty_str(get(it, "text")))
            return fail(c, EG_E_SCHEMA, "note[%d].text: required (a non-empty string)", i);
        if (get(it, "time")) {
            snprintf(f, sizeof f, "note[%d].time", i);
            rc = check_datetime(c, get(it, "time"), f, &ms, &is_date);
            if (rc != EG_OK)
                return rc;
        }
        i++;
    }
    return EG_OK;
}

/* Checks Observation o (already known to be one) into in and ob. */
/* ---- shapes of the elements copied through (review M4) ------------------
 * Elements that are kept are checked against an allow-list of their FHIR R4
 * datatype's members, so that what we store is valid R4 and nothing is
 * smuggled through; `modifierExtension` anywhere changes the meaning of
 * what it sits in and is refused (`unsupported`); `extension` and
 * primitive extensions (`_x`) are dropped from every copy. */

enum shape { SH_CC, SH_CODING, SH_QTY, SH_RANGE, SH_RATIO, SH_PERIOD, SH_COMPONENT, SH_REFRANGE };

struct member {
    const char *key;
    int array;        /* 1: an array of the shape */
    int shape;        /* enum shape, or -1 for a primitive */
};

static const struct member m_cc[] = {{"coding", 1, SH_CODING}, {"text", 0, -1}, {NULL, 0, 0}};
static const struct member m_coding[] = {{"system", 0, -1}, {"version", 0, -1},
                                         {"code", 0, -1},   {"display", 0, -1},
                                         {"userSelected", 0, -1}, {NULL, 0, 0}};
static const struct member m_qty[] = {{"value", 0, -1}, {"comparator", 0, -1}, {"unit", 0, -1},
                                      {"system", 0, -1}, {"code", 0, -1},      {NULL, 0, 0}};
static const struct member m_range[] = {{"low", 0, SH_QTY}, {"high", 0, SH_QTY}, {NULL, 0, 0}};
static const struct member m_ratio[] = {
    {"numerator", 0, SH_QTY}, {"denominator", 0, SH_QTY}, {NULL, 0, 0}};
static const struct member m_period[] = {{"start", 0, -1}, {"end", 0, -1}, {NULL, 0, 0}};
static const struct member m_component[] = {{"code", 0, SH_CC},
                                             {"valueQuantity", 0, SH_QTY},
                                             {"valueCodeableConcept", 0, SH_CC},
                                             {"valueString", 0, -1},
                                             {"valueBoolean", 0, -1},
                                             {"valueInteger", 0, -1},
                                             {"valueRange", 0, SH_RANGE},
                                             {"valueRatio", 0, SH_RATIO},
                                             {"valueTime", 0, -1},
                                             {"valueDateTime", 0, -1},
                                             {"valuePeriod", 0, SH_PERIOD},
                                             {"dataAbsentReason", 0, SH_CC},
                                             {"interpretation", 1, SH_CC},
                                             {"referenceRange", 1, SH_REFRANGE},
                                             {NULL, 0, 0}};
static const struct member m_refrange[] = {{"low", 0, SH_QTY},       {"high", 0, SH_QTY},
                                           {"type", 0, SH_CC},       {"appliesTo", 1, SH_CC},
                                           {"age", 0, SH_RANGE},     {"text", 0, -1},
                                           {NULL, 0, 0}};
static const struct member *const shapes[] = {m_cc,     m_coding, m_qty,       m_range,
                                              m_ratio,  m_period, m_component, m_refrange};
static const char *const shape_names[] = {"CodeableConcept", "Coding", "Quantity", "Range",
                                          "Ratio", "Period", "component", "referenceRange"};

static eg_err check_shape(struct pctx *c, const cJSON *v, int sh, const char *path, int depth)
{
    const cJSON *it;
    if (depth > 8)
        return fail(c, EG_E_SCHEMA, "%s: nested too deeply", path);
    if (!cJSON_IsObject(v))
        return fail(c, EG_E_SCHEMA, "%s: must be a %s object", path, shape_names[sh]);
    cJSON_ArrayForEach(it, v)
    {
        const struct member *m;
        char sub[160];
        if (strcmp(it->string, "modifierExtension") == 0)
            return fail(c, EG_E_UNSUPPORTED, "%s.modifierExtension: not accepted", path);
        if (strcmp(it->string, "extension") == 0 || strcmp(it->string, "id") == 0 ||
            it->string[0] == '_')
            continue; /* dropped from the copy (id: an element id, harmless) */
        for (m = shapes[sh]; m->key; m++)
            if (strcmp(m->key, it->string) == 0)
                break;
        if (!m->key) {
            char qb2[64];
            return fail(c, EG_E_SCHEMA, "%s: \"%s\" is not a member of %s", path,
                        eg_detail_str(qb2, sizeof qb2, it->string), shape_names[sh]);
        }
        snprintf(sub, sizeof sub, "%.100s.%s", path, m->key);
        if (m->shape < 0) {
            if (cJSON_IsObject(it) || cJSON_IsArray(it))
                return fail(c, EG_E_SCHEMA, "%s: must be a primitive value", sub);
            continue;
        }
        if (m->array) {
            const cJSON *el;
            int i = 0;
            eg_err rc;
            if (!cJSON_IsArray(it))
                return fail(c, EG_E_SCHEMA, "%s: must be an array", sub);
            cJSON_ArrayForEach(el, it)
            {
                char sub2[180];
                snprintf(sub2, sizeof sub2, "%s[%d]", sub, i++);
                if ((rc = check_shape(c, el, m->shape, sub2, depth + 1)) != EG_OK)
                    return rc;
            }
        } else {
            eg_err rc = check_shape(c, it, m->shape, sub, depth + 1);
            if (rc != EG_OK)
                return rc;
        }
    }
    return EG_OK;
}

/* The Observation's kept elements against their shapes. */
static eg_err check_nested(struct pctx *c, const cJSON *o)
{
    static const struct {
        const char *key;
        int array, shape;
    } kept[] = {{"code", 0, SH_CC},
                {"valueQuantity", 0, SH_QTY},
                {"valueCodeableConcept", 0, SH_CC},
                {"dataAbsentReason", 0, SH_CC},
                {"interpretation", 1, SH_CC},
                {"bodySite", 0, SH_CC},
                {"method", 0, SH_CC},
                {"component", 1, SH_COMPONENT},
                {"referenceRange", 1, SH_REFRANGE},
                {"effectivePeriod", 0, SH_PERIOD}};
    for (size_t k = 0; k < ARRAY_LEN(kept); k++) {
        const cJSON *it = get(o, kept[k].key), *el;
        eg_err rc;
        int i = 0;
        if (!it)
            continue;
        if (!kept[k].array) {
            if ((rc = check_shape(c, it, kept[k].shape, kept[k].key, 0)) != EG_OK)
                return rc;
            continue;
        }
        if (!cJSON_IsArray(it))
            return fail(c, EG_E_SCHEMA, "%s: must be an array", kept[k].key);
        cJSON_ArrayForEach(el, it)
        {
            char path[96];
            snprintf(path, sizeof path, "%s[%d]", kept[k].key, i++);
            if ((rc = check_shape(c, el, kept[k].shape, path, 0)) != EG_OK)
                return rc;
        }
    }
    return EG_OK;
}

/* Removes "extension" and primitive extensions ("_x") at every level. */
static void strip_extensions(cJSON *v)
{
    cJSON *it = v ? v->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (cJSON_IsObject(v) && it->string &&
            (strcmp(it->string, "extension") == 0 || it->string[0] == '_'))
            cJSON_Delete(cJSON_DetachItemViaPointer(v, it));
        else
            strip_extensions(it);
        it = next;
    }
}

static eg_err check_observation(struct pctx *c, const cJSON *o, struct obs_in *in,
                                struct eg_hobs *ob)
{
    char qb[64];
    const cJSON *it, *status, *id;
    size_t k;
    int64_t ms;
    int is_date;
    eg_err rc;

    memset(in, 0, sizeof *in);
    in->o = o;
    if ((rc = check_nested(c, o)) != EG_OK)
        return rc;
    cJSON_ArrayForEach(it, o)
    {
        if (it->string[0] == '_') /* primitive extensions: dropped */
            continue;
        for (k = 0; k < ARRAY_LEN(obs_elements); k++)
            if (strcmp(obs_elements[k].key, it->string) == 0)
                break;
        if (k == ARRAY_LEN(obs_elements))
            return fail(c, EG_E_SCHEMA, "%s: unknown element of Observation",
                        eg_detail_str(qb, sizeof qb, it->string));
        if (obs_elements[k].d == D_REFUSE)
            return fail(c, EG_E_UNSUPPORTED, "%s: not supported (it would change the meaning)",
                        it->string);
    }

    id = get(o, "id");
    if (id && !(cJSON_IsString(id) && fhir_id_valid(id->valuestring)))
        return fail(c, EG_E_SCHEMA, "id: must be a FHIR id (1-64 characters A-Z a-z 0-9 - .)");

    status = get(o, "status");
    if (!status)
        return fail(c, EG_E_SCHEMA, "status: required");
    if (!cJSON_IsString(status))
        return fail(c, EG_E_SCHEMA, "status: must be a string (R4 ObservationStatus)");
    if (!in_list(obs_status, ARRAY_LEN(obs_status), status->valuestring))
        return fail(c, EG_E_SCHEMA,
                    "status: \"%s\" is not an R4 ObservationStatus (registered, preliminary, "
                    "final, amended, corrected, cancelled, entered-in-error, unknown)",
                    eg_detail_str(qb, sizeof qb, status->valuestring));

    rc = check_identifiers(c, get(o, "identifier"));
    if (rc != EG_OK)
        return rc;
    rc = check_coded(c, get(o, "code"), "code");
    if (rc != EG_OK)
        return rc;
    rc = find_s4(c, get(o, "code"), in);
    if (rc != EG_OK)
        return rc;
    rc = find_category(c, get(o, "category"), in);
    if (rc != EG_OK)
        return rc;
    rc = check_subject(c, get(o, "subject"), ob);
    if (rc != EG_OK)
        return rc;
    rc = check_effective(c, o, ob);
    if (rc != EG_OK)
        return rc;
    if (get(o, "issued")) {
        rc = check_datetime(c, get(o, "issued"), "issued", &ms, &is_date);
        if (rc == EG_OK && is_date)
            rc = fail(c, EG_E_SCHEMA, "issued: must be an instant (date-time with offset)");
        if (rc != EG_OK)
            return rc;
    }

    /* elements kept as given: their shape */
    if ((it = get(o, "interpretation")) && (rc = check_obj_array(c, it, "interpretation")))
        return rc;
    if ((it = get(o, "referenceRange")) && (rc = check_obj_array(c, it, "referenceRange")))
        return rc;
    if ((it = get(o, "note")) && (rc = check_notes(c, it)))
        return rc;
    if ((it = get(o, "bodySite")) && (rc = check_concept_loose(c, it, "bodySite")))
        return rc;
    if ((it = get(o, "method")) && (rc = check_concept_loose(c, it, "method")))
        return rc;
    if ((it = get(o, "dataAbsentReason")) && (rc = check_concept_loose(c, it, "dataAbsentReason")))
        return rc;

    rc = find_value(c, o, "", &in->val, &in->vkey);
    if (rc != EG_OK)
        return rc;
    if (!in->val && !get(o, "component"))
        return fail(c, EG_E_SCHEMA,
                    "value: required (valueQuantity, valueString, valueCodeableConcept or "
                    "component[])");
    if (in->val && get(o, "dataAbsentReason"))
        return fail(c, EG_E_SCHEMA, "dataAbsentReason: not allowed with %s (obs-6)", in->vkey);

    if (in->s4) {
        if (get(o, "dataAbsentReason"))
            return fail(c, EG_E_SCHEMA, "dataAbsentReason: not accepted for LOINC %s", in->loinc);
        rc = s4_value(c, in);
        if (rc != EG_OK)
            return rc;
        snprintf(ob->category, sizeof ob->category, "%s", in->m.spec->category);
        return EG_OK;
    }
    if (in->val) {
        rc = check_value_loose(c, in->val, in->vkey, "");
        if (rc != EG_OK)
            return rc;
    }
    if ((it = get(o, "component")) && (rc = check_components_loose(c, it)))
        return rc;
    snprintf(ob->category, sizeof ob->category, "%s", in->cat_code ? in->cat_code : "unknown");
    return EG_OK;
}

/* category: [{"coding":[{system, code, display}], "text": display}] of an
 * observation-category code (same shape as eg_fhir_category). */
static cJSON *category_of(const char *code, const char *display)
{
    cJSON *arr = cJSON_CreateArray(), *cc = cJSON_CreateObject(), *codings, *cd;

    if (egjson_add_taken(arr, NULL, cc))
        goto fail;
    codings = cJSON_AddArrayToObject(cc, "coding");
    cd = cJSON_CreateObject();
    if (!codings || egjson_add_taken(codings, NULL, cd) ||
        !cJSON_AddStringToObject(cd, "system", EG_OBSCAT_SYSTEM) ||
        !cJSON_AddStringToObject(cd, "code", code) ||
        !cJSON_AddStringToObject(cd, "display", display) ||
        !cJSON_AddStringToObject(cc, "text", display))
        goto fail;
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}

/* An identifier of the hospital kept without its assigner (a reference to
 * a resource the gateway does not hold). */
static cJSON *identifier_copy(const cJSON *id)
{
    cJSON *d = cJSON_Duplicate(id, 1);

    if (d)
        cJSON_DeleteItemFromObjectCaseSensitive(d, "assigner");
    return d;
}

/* Builds the normalized Observation of in (index idx). NULL on OOM. */
static cJSON *build(struct pctx *c, const struct obs_in *in, size_t idx)
{
    char ident[sizeof HOSPITAL_URN + FHIR_ID_MAX + EG_HOSP_MSGID_MAX + 32];
    const cJSON *o = in->o, *it;
    cJSON *obs = cJSON_CreateObject(), *meta, *ids;
    const struct eg_reading_spec *s = in->m.spec;

    if (!obs)
        return NULL;
    snprintf(ident, sizeof ident, "%s/%s/%zu", c->ctx->hospital_id, c->msg_id, idx);
    if (!cJSON_AddStringToObject(obs, "resourceType", "Observation"))
        goto fail;
    meta = cJSON_AddObjectToObject(obs, "meta");
    if (!meta || !cJSON_AddStringToObject(meta, "source", c->urn))
        goto fail;
    ids = cJSON_AddArrayToObject(obs, "identifier");
    if (!ids || add_identifier(ids, c->urn, ident))
        goto fail;
    if ((it = get(o, "id")) && add_identifier(ids, c->urn, it->valuestring))
        goto fail;
    cJSON_ArrayForEach(it, get(o, "identifier"))
    {
        if (egjson_add_taken(ids, NULL, identifier_copy(it)))
            goto fail;
    }
    if (add_copy(obs, "status", get(o, "status")))
        goto fail;

    if (in->s4) {
        const struct eg_coding *codes = in->m.part < 0 ? s->panel : in->vals[0].rule->codes;
        size_t ncodes = in->m.part < 0 ? s->npanel : in->vals[0].rule->ncodes;

        if (egjson_add_taken(obs, "category", eg_fhir_category(s)) ||
            egjson_add_taken(obs, "code", eg_fhir_concept(codes, ncodes)))
            goto fail;
    } else {
        if (in->cat_code && egjson_add_taken(obs, "category", category_of(in->cat_code, in->cat_display)))
            goto fail;
        if (add_copy(obs, "code", get(o, "code")))
            goto fail;
    }

    if ((it = get(o, "effectiveDateTime"))) {
        if (eg_date_parse(it->valuestring, &(int64_t){0}) == 0) {
            if (add_copy(obs, "effectiveDateTime", it))
                goto fail;
        } else {
            char t[EG_TIME_STRLEN];
            int64_t ms = 0;

            eg_time_parse(it->valuestring, &ms);
            eg_time_format(ms, t);
            if (!cJSON_AddStringToObject(obs, "effectiveDateTime", t))
                goto fail;
        }
    } else if (add_copy(obs, "effectivePeriod", get(o, "effectivePeriod"))) {
        goto fail;
    }
    if ((it = get(o, "issued"))) {
        char t[EG_TIME_STRLEN];
        int64_t ms = 0;

        eg_time_parse(it->valuestring, &ms);
        eg_time_format(ms, t);
        if (!cJSON_AddStringToObject(obs, "issued", t))
            goto fail;
    }
    if (!in->s4 && (it = get(o, "dataAbsentReason")) && add_copy(obs, "dataAbsentReason", it))
        goto fail;
    if ((it = get(o, "interpretation")) && add_copy(obs, "interpretation", it))
        goto fail;
    if ((it = get(o, "note"))) {
        const cJSON *n;
        cJSON *notes = cJSON_AddArrayToObject(obs, "note");

        if (!notes)
            goto fail;
        cJSON_ArrayForEach(n, it)
        {
            cJSON *nn = cJSON_CreateObject();

            if (egjson_add_taken(notes, NULL, nn) ||
                (get(n, "time") && add_copy(nn, "time", get(n, "time"))) ||
                add_copy(nn, "text", get(n, "text")))
                goto fail;
        }
    }
    if ((it = get(o, "bodySite")) && add_copy(obs, "bodySite", it))
        goto fail;
    if ((it = get(o, "method")) && add_copy(obs, "method", it))
        goto fail;

    if (in->s4) {
        if (in->m.part < 0) {
            if (eg_fhir_add_value(obs, s, in->vals))
                goto fail;
        } else if (egjson_add_taken(obs, "valueQuantity", eg_fhir_quantity(&in->vals[0]))) {
            goto fail;
        }
        return obs;
    }
    if ((it = get(o, "referenceRange")) && add_copy(obs, "referenceRange", it))
        goto fail;
    if (in->val && add_copy(obs, in->vkey, in->val))
        goto fail;
    if ((it = get(o, "component")) && add_copy(obs, "component", it))
        goto fail;
    return obs;
fail:
    cJSON_Delete(obs);
    return NULL;
}

/* Checks and builds Observation o as observation number idx into ob. */
static eg_err one_observation(struct pctx *c, const cJSON *o, size_t idx, struct eg_hobs *ob)
{
    struct obs_in in;
    eg_err rc;

    memset(ob, 0, sizeof *ob);
    rc = check_observation(c, o, &in, ob);
    if (rc != EG_OK)
        return rc;
    ob->resource = build(c, &in, idx);
    if (!ob->resource)
        return fail(c, EG_E_NOMEM, "out of memory building the Observation");
    return EG_OK;
}

/* Sets h->msg_id from string v at field. */
static eg_err set_msg_id(struct pctx *c, struct eg_hmsg *h, const cJSON *v, const char *field)
{
    if (!cJSON_IsString(v))
        return fail(c, EG_E_SCHEMA, "%s: must be a string", field);
    if (v->valuestring[0] == '\0')
        return fail(c, EG_E_SCHEMA, "%s: must not be empty", field);
    if (strlen(v->valuestring) >= EG_HOSP_MSGID_MAX)
        return fail(c, EG_E_SCHEMA, "%s: longer than %d bytes", field, EG_HOSP_MSGID_MAX - 1);
    snprintf(h->msg_id, sizeof h->msg_id, "%s", v->valuestring);
    h->have_msg_id = 1;
    c->msg_id = h->msg_id;
    return EG_OK;
}

/* Bundle: checks its own elements and entries (all Observations); *entries
 * is entry[], *count its size. */
static eg_err check_bundle(struct pctx *c, const cJSON *root, const cJSON **entries, size_t *count)
{
    char qb[64];
    const cJSON *it, *type, *entry;
    int i = 0;

    cJSON_ArrayForEach(it, root)
    {
        if (it->string[0] == '_')
            continue;
        if (!in_list(bundle_keys, ARRAY_LEN(bundle_keys), it->string))
            return fail(c, EG_E_SCHEMA, "%s: unknown element of Bundle",
                        eg_detail_str(qb, sizeof qb, it->string));
    }
    if (get(root, "implicitRules"))
        return fail(c, EG_E_UNSUPPORTED, "implicitRules: not supported");
    type = get(root, "type");
    if (!type)
        return fail(c, EG_E_SCHEMA, "type: required (Bundle.type)");
    if (!cJSON_IsString(type) || !in_list(bundle_types, ARRAY_LEN(bundle_types), type->valuestring))
        return fail(c, EG_E_SCHEMA, "type: not an R4 Bundle type");
    entry = get(root, "entry");
    if (!entry)
        return fail(c, EG_E_SCHEMA, "entry: required (1..%d Observations)", EG_HOSP_MAX_OBS);
    if (!cJSON_IsArray(entry))
        return fail(c, EG_E_SCHEMA, "entry: must be an array");
    *count = (size_t)cJSON_GetArraySize(entry);
    if (*count < 1 || *count > EG_HOSP_MAX_OBS)
        return fail(c, EG_E_SCHEMA, "entry: must hold 1..%d Observations, got %zu", EG_HOSP_MAX_OBS,
                    *count);
    /* first the resource types: a non-Observation makes the message unsupported */
    cJSON_ArrayForEach(it, entry)
    {
        const cJSON *res, *rt, *k;

        if (!cJSON_IsObject(it))
            return fail(c, EG_E_SCHEMA, "entry[%d]: must be an object", i);
        cJSON_ArrayForEach(k, it)
        {
            if (k->string[0] != '_' && !in_list(entry_keys, ARRAY_LEN(entry_keys), k->string))
                return fail(c, EG_E_SCHEMA, "entry[%d].%s: unknown element of Bundle.entry", i,
                            eg_detail_str(qb, sizeof qb, k->string));
        }
        if (get(it, "modifierExtension"))
            return fail(c, EG_E_UNSUPPORTED, "entry[%d].modifierExtension: not supported", i);
        res = get(it, "resource");
        if (!res)
            return fail(c, EG_E_SCHEMA, "entry[%d].resource: required", i);
        if (!cJSON_IsObject(res))
            return fail(c, EG_E_SCHEMA, "entry[%d].resource: must be an object", i);
        rt = get(res, "resourceType");
        if (!rt)
            return fail(c, EG_E_SCHEMA, "entry[%d].resource.resourceType: required", i);
        if (!cJSON_IsString(rt))
            return fail(c, EG_E_SCHEMA, "entry[%d].resource.resourceType: must be a string", i);
        if (strcmp(rt->valuestring, "Observation") != 0)
            return fail(c, EG_E_UNSUPPORTED,
                        "entry[%d].resource.resourceType: %s is not Observation", i,
                        eg_detail_str(qb, sizeof qb, rt->valuestring));
        i++;
    }
    *entries = entry;
    return EG_OK;
}

/* h must be zero-initialized or have been used with these functions before:
 * its old observations are freed first (eg_hmsg_clear). Checks run in this
 * order: message id, resourceType, Bundle elements and entry types (so a
 * non-Observation entry is "unsupported" whatever else is wrong), then each
 * Observation in order; the first error wins. */
eg_err eg_fhir_in_parse(const cJSON *root, const struct eg_hosp_ctx *ctx, struct eg_hmsg *h,
                        struct eg_error *e)
{
    char qb[64];
    struct pctx c;
    const cJSON *rt, *id, *entries = NULL, *it;
    size_t count = 1, i = 0;
    int bundle;
    eg_err rc = EG_OK;

    if (!h || !ctx || !ctx->hospital_id)
        return eg_fail(e, EG_E_INTERNAL, "eg_fhir_in_parse: bad arguments");
    eg_hmsg_clear(h);
    h->msg_id[0] = '\0';
    h->have_msg_id = 0;
    if (!eg_id_valid(ctx->hospital_id))
        return eg_fail(e, EG_E_INTERNAL, "eg_fhir_in_parse: invalid hospital id");
    memset(&c, 0, sizeof c);
    c.ctx = ctx;
    c.e = e;
    c.msg_id = "";
    snprintf(c.urn, sizeof c.urn, HOSPITAL_URN "%s", ctx->hospital_id);

    if (!cJSON_IsObject(root))
        return fail(&c, EG_E_SCHEMA, "payload: must be a JSON object (a FHIR resource)");
    /* the message id first, so that any rejection can carry it */
    id = get(root, "id");
    if (id && (rc = set_msg_id(&c, h, id, "id")) != EG_OK)
        return rc;
    rt = get(root, "resourceType");
    if (!rt)
        return fail(&c, EG_E_SCHEMA, "resourceType: required");
    if (!cJSON_IsString(rt))
        return fail(&c, EG_E_SCHEMA, "resourceType: must be a string");
    bundle = strcmp(rt->valuestring, "Bundle") == 0;
    if (!bundle && strcmp(rt->valuestring, "Observation") != 0)
        return fail(&c, EG_E_UNSUPPORTED, "resourceType: %s is not Observation or Bundle",
                    eg_detail_str(qb, sizeof qb, rt->valuestring));
    if (bundle && !id) {
        const cJSON *bid = get(root, "identifier");

        if (bid && !cJSON_IsObject(bid))
            return fail(&c, EG_E_SCHEMA, "identifier: must be an Identifier object");
        if (bid && get(bid, "value") &&
            (rc = set_msg_id(&c, h, get(bid, "value"), "identifier.value")) != EG_OK)
            return rc;
    }
    if (!h->have_msg_id)
        return fail(&c, EG_E_SCHEMA,
                    bundle ? "id: required (or identifier.value): the message id"
                           : "id: required (the message id)");
    if (id && !fhir_id_valid(id->valuestring))
        return fail(&c, EG_E_SCHEMA, "id: must be a FHIR id (1-64 characters A-Z a-z 0-9 - .)");

    if (bundle && (rc = check_bundle(&c, root, &entries, &count)) != EG_OK)
        return rc;
    h->obs = calloc(count, sizeof *h->obs);
    if (!h->obs)
        return fail(&c, EG_E_NOMEM, "out of memory");
    if (!bundle) {
        rc = one_observation(&c, root, 0, &h->obs[0]);
        if (rc == EG_OK)
            h->n = 1;
    } else {
        cJSON_ArrayForEach(it, entries)
        {
            snprintf(c.path, sizeof c.path, "entry[%zu].resource.", i);
            rc = one_observation(&c, get(it, "resource"), i, &h->obs[i]);
            if (rc != EG_OK)
                break;
            h->n = ++i;
        }
    }
    if (rc != EG_OK) {
        /* all-or-nothing: the failed one may hold nothing, the others go */
        eg_hmsg_clear(h);
    }
    return rc;
}

void eg_hmsg_clear(struct eg_hmsg *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->n; i++)
        cJSON_Delete(h->obs[i].resource);
    free(h->obs);
    h->obs = NULL;
    h->n = 0;
}

int eg_hobs_set_subject(struct eg_hobs *obs, const char *patient_id)
{
    cJSON *subj, *code;
    char *ref;
    size_t n;

    if (!obs || !obs->resource || !patient_id)
        return -1;
    n = strlen(patient_id) + sizeof "Patient/";
    ref = malloc(n);
    if (!ref)
        return -1;
    snprintf(ref, n, "Patient/%s", patient_id);
    subj = cJSON_CreateObject();
    if (!subj || !cJSON_AddStringToObject(subj, "reference", ref)) {
        cJSON_Delete(subj);
        free(ref);
        return -1;
    }
    free(ref);
    cJSON_DeleteItemFromObjectCaseSensitive(obs->resource, "subject");
    /* adding names the item with cJSON's allocator; then it moves after
     * "code". cJSON 1.7.15's cJSON_InsertItemInArray refuses some valid
     * positions, so the node is linked by hand (cJSON keeps the last child
     * in child->prev). */
    if (!cJSON_AddItemToObject(obs->resource, "subject", subj)) {
        cJSON_Delete(subj);
        return -1;
    }
    code = cJSON_GetObjectItemCaseSensitive(obs->resource, "code");
    if (code && code->next != subj) {
        cJSON_DetachItemViaPointer(obs->resource, subj);
        subj->prev = code;
        subj->next = code->next;
        if (code->next)
            code->next->prev = subj;
        else
            obs->resource->child->prev = subj;
        code->next = subj;
    }
    return 0;
}

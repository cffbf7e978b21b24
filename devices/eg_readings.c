/*
 * eg_readings.c — the SPEC §4 reading table (LOINC codings, UCUM units and
 * their accepted spellings, conversions, plausible ranges) and the FHIR R4
 * pieces (category, code, valueQuantity, component) built from it.
 *
 * LOINC displays are the LOINC long common names; the FHIR R4 vital-signs
 * profiles (http://hl7.org/fhir/R4/observation-vitalsigns.html) fix the
 * codes and UCUM units used here; the oxygen-saturation profile requires
 * 2708-6 in Observation.code, so spo2 carries it first, then 59408-5.
 */
#include "eg_readings.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eg_json.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DETAIL_STR_MAX 40 /* bytes of untrusted text quoted in a detail */

/* LOINC codings (long common names). */
static const struct eg_coding c_heart_rate[] = {{"8867-4", "Heart rate"}};
static const struct eg_coding c_spo2[] = {
    {"2708-6", "Oxygen saturation in Arterial blood"},
    {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"},
};
static const struct eg_coding c_resp_rate[] = {{"9279-1", "Respiratory rate"}};
static const struct eg_coding c_body_temp[] = {{"8310-5", "Body temperature"}};
static const struct eg_coding c_bp_panel[] = {
    {"85354-9", "Blood pressure panel with all children optional"}};
static const struct eg_coding c_systolic[] = {{"8480-6", "Systolic blood pressure"}};
static const struct eg_coding c_diastolic[] = {{"8462-4", "Diastolic blood pressure"}};
static const struct eg_coding c_body_weight[] = {{"29463-7", "Body weight"}};
static const struct eg_coding c_glucose_mass[] = {{"2339-0", "Glucose [Mass/volume] in Blood"}};
static const struct eg_coding c_glucose_moles[] = {{"15074-8", "Glucose [Moles/volume] in Blood"}};

#define CODES(c) c, ARRAY_LEN(c)

/* Accepted units per quantity; the first one is the default (SPEC §4). */
static const struct eg_unit_rule r_heart_rate[] = {
    {"/min", "/min", EG_CONV_NONE, 20, 300, CODES(c_heart_rate)},
};
static const struct eg_unit_rule r_spo2[] = {
    {"%", "%", EG_CONV_NONE, 50, 100, CODES(c_spo2)},
};
static const struct eg_unit_rule r_resp_rate[] = {
    {"/min", "/min", EG_CONV_NONE, 2, 80, CODES(c_resp_rate)},
};
static const struct eg_unit_rule r_body_temp[] = {
    {"Cel", "Cel", EG_CONV_NONE, 25, 45, CODES(c_body_temp)},
    {"[degF]", "Cel", EG_CONV_DEGF_TO_CEL, 25, 45, CODES(c_body_temp)},
};
static const struct eg_unit_rule r_systolic[] = {
    {"mm[Hg]", "mm[Hg]", EG_CONV_NONE, 40, 300, CODES(c_systolic)},
};
static const struct eg_unit_rule r_diastolic[] = {
    {"mm[Hg]", "mm[Hg]", EG_CONV_NONE, 20, 200, CODES(c_diastolic)},
};
static const struct eg_unit_rule r_body_weight[] = {
    {"kg", "kg", EG_CONV_NONE, 0.2, 500, CODES(c_body_weight)},
    {"[lb_av]", "kg", EG_CONV_LB_TO_KG, 0.2, 500, CODES(c_body_weight)},
};
/* Glucose is kept in the unit given, each unit with its own LOINC code. The
 * mmol/L bounds are SPEC §4's 10..1000 mg/dL divided by
 * EG_GLUCOSE_MGDL_PER_MMOLL and rounded to 2 decimals (checked in a test). */
static const struct eg_unit_rule r_glucose[] = {
    {"mg/dL", "mg/dL", EG_CONV_NONE, 10, 1000, CODES(c_glucose_mass)},
    {"mmol/L", "mmol/L", EG_CONV_NONE, 0.56, 55.51, CODES(c_glucose_moles)},
};

#define RULES(r) r, ARRAY_LEN(r)

static const struct eg_quantity q_heart_rate[] = {{"heart_rate", "value", RULES(r_heart_rate)}};
static const struct eg_quantity q_spo2[] = {{"spo2", "value", RULES(r_spo2)}};
static const struct eg_quantity q_resp_rate[] = {{"resp_rate", "value", RULES(r_resp_rate)}};
static const struct eg_quantity q_body_temp[] = {{"body_temp", "value", RULES(r_body_temp)}};
static const struct eg_quantity q_blood_pressure[] = {
    {"blood_pressure", "systolic", RULES(r_systolic)},
    {"blood_pressure", "diastolic", RULES(r_diastolic)},
};
static const struct eg_quantity q_body_weight[] = {{"body_weight", "value", RULES(r_body_weight)}};
static const struct eg_quantity q_glucose[] = {{"glucose", "value", RULES(r_glucose)}};

#define PARTS(q) q, ARRAY_LEN(q)
#define VITAL "vital-signs", "Vital Signs"
#define LAB "laboratory", "Laboratory"

static const struct eg_reading_spec specs[EG_READ__COUNT] = {
    [EG_READ_HEART_RATE] = {EG_READ_HEART_RATE, "heart_rate", VITAL, NULL, 0, PARTS(q_heart_rate),
                            0},
    [EG_READ_SPO2] = {EG_READ_SPO2, "spo2", VITAL, NULL, 0, PARTS(q_spo2), 0},
    [EG_READ_RESP_RATE] = {EG_READ_RESP_RATE, "resp_rate", VITAL, NULL, 0, PARTS(q_resp_rate), 0},
    [EG_READ_BODY_TEMP] = {EG_READ_BODY_TEMP, "body_temp", VITAL, NULL, 0, PARTS(q_body_temp), 0},
    [EG_READ_BLOOD_PRESSURE] = {EG_READ_BLOOD_PRESSURE, "blood_pressure", VITAL, CODES(c_bp_panel),
                                PARTS(q_blood_pressure), 1},
    [EG_READ_BODY_WEIGHT] = {EG_READ_BODY_WEIGHT, "body_weight", VITAL, NULL, 0,
                             PARTS(q_body_weight), 0},
    [EG_READ_GLUCOSE] = {EG_READ_GLUCOSE, "glucose", LAB, NULL, 0, PARTS(q_glucose), 0},
};

/* Unit spellings: the exact UCUM codes of SPEC §4 map to themselves, and
 * only SPEC §4's aliases are mapped ("\u00B0" is the degree sign, UTF-8). */
static const struct {
    const char *spelling;
    const char *ucum;
} unit_names[] = {
    /* UCUM codes */
    {"/min", "/min"},
    {"%", "%"},
    {"Cel", "Cel"},
    {"[degF]", "[degF]"},
    {"mm[Hg]", "mm[Hg]"},
    {"kg", "kg"},
    {"[lb_av]", "[lb_av]"},
    {"mg/dL", "mg/dL"},
    {"mmol/L", "mmol/L"},
    /* aliases */
    {"bpm", "/min"},
    {"mmHg", "mm[Hg]"},
    {"degF", "[degF]"},
    {"\u00B0F", "[degF]"},
    {"C", "Cel"},
    {"\u00B0C", "Cel"},
    {"lb", "[lb_av]"},
    {"lbs", "[lb_av]"},
};

const struct eg_reading_spec *eg_reading_spec(enum eg_reading_type t)
{
    if ((int)t < 0 || t >= EG_READ__COUNT)
        return NULL;
    return &specs[t];
}

const struct eg_reading_spec *eg_reading_by_name(const char *name)
{
    size_t i;

    if (!name)
        return NULL;
    for (i = 0; i < ARRAY_LEN(specs); i++)
        if (strcmp(specs[i].name, name) == 0)
            return &specs[i];
    return NULL;
}

static int codes_have(const struct eg_coding *codes, size_t n, const char *code)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(codes[i].code, code) == 0)
            return 1;
    return 0;
}

int eg_reading_by_loinc(const char *code, struct eg_loinc_match *m)
{
    size_t i, p, r;

    if (!code)
        return -1;
    for (i = 0; i < ARRAY_LEN(specs); i++) {
        const struct eg_reading_spec *s = &specs[i];

        if (s->panel && codes_have(s->panel, s->npanel, code)) {
            if (m) {
                m->spec = s;
                m->part = -1;
                m->rule = NULL;
            }
            return 0;
        }
        for (p = 0; p < s->nparts; p++) {
            const struct eg_quantity *q = &s->parts[p];

            for (r = 0; r < q->nrules; r++) {
                if (!codes_have(q->rules[r].codes, q->rules[r].ncodes, code))
                    continue;
                if (m) {
                    m->spec = s;
                    m->part = (int)p;
                    m->rule = &q->rules[r];
                }
                return 0;
            }
        }
    }
    return -1;
}

const char *eg_unit_canonical(const char *spelling)
{
    size_t i;

    if (!spelling)
        return NULL;
    for (i = 0; i < ARRAY_LEN(unit_names); i++)
        if (strcmp(unit_names[i].spelling, spelling) == 0)
            return unit_names[i].ucum;
    return NULL;
}

const struct eg_unit_rule *eg_quantity_rule(const struct eg_quantity *q, const char *ucum)
{
    size_t i;

    if (!q || q->nrules == 0)
        return NULL;
    if (!ucum)
        return &q->rules[0];
    for (i = 0; i < q->nrules; i++)
        if (strcmp(q->rules[i].unit, ucum) == 0)
            return &q->rules[i];
    return NULL;
}

double eg_round2(double v)
{
    double r;

    if (!isfinite(v) || fabs(v) >= 1e13)
        return v;
    r = round(v * 100.0) / 100.0;
    return r == 0.0 ? 0.0 : r; /* no "-0" */
}

double eg_unit_convert(const struct eg_unit_rule *r, double v)
{
    switch (r->conv) {
    case EG_CONV_DEGF_TO_CEL:
        v = (v - 32.0) * 5.0 / 9.0;
        break;
    case EG_CONV_LB_TO_KG:
        v = v * 0.45359237;
        break;
    case EG_CONV_NONE:
        break;
    }
    return eg_round2(v);
}

/* Shortest readable text of a (rounded) number for details. */
static const char *num_str(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.15g", v);
    return buf;
}

/* "Cel, [degF]": the accepted UCUM codes of q (restricted to loinc if set). */
static const char *units_str(char *buf, size_t n, const struct eg_quantity *q, const char *loinc)
{
    size_t i, off = 0;

    buf[0] = '\0';
    for (i = 0; i < q->nrules; i++) {
        int w;

        if (loinc && !codes_have(q->rules[i].codes, q->rules[i].ncodes, loinc))
            continue;
        w = snprintf(buf + off, n - off, "%s%s", off ? ", " : "", q->rules[i].unit);
        if (w < 0 || (size_t)w >= n - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

/* The first rule of q carrying LOINC code loinc, or NULL. */
static const struct eg_unit_rule *rule_for_loinc(const struct eg_quantity *q, const char *loinc)
{
    size_t i;

    for (i = 0; i < q->nrules; i++)
        if (codes_have(q->rules[i].codes, q->rules[i].ncodes, loinc))
            return &q->rules[i];
    return NULL;
}

eg_err eg_quantity_normalize(const struct eg_quantity *q, const char *loinc, const char *unit,
                             double value, const char *value_field, const char *unit_field,
                             struct eg_value *out, struct eg_error *e)
{
    char ubuf[64], list[64], vb[32], lob[32], hib[32], gb[32];
    const char *ucum = NULL, *sep, *key;
    const struct eg_unit_rule *r;
    double v;

    if (!q || !out)
        return eg_fail(e, EG_E_INTERNAL, "eg_quantity_normalize: no quantity");
    /* "blood_pressure systolic", but plain "heart_rate" for a "value" */
    sep = strcmp(q->key, "value") ? " " : "";
    key = *sep ? q->key : "";
    if (unit) {
        ucum = eg_unit_canonical(unit);
        if (!ucum)
            return eg_fail(e, EG_E_UNIT, "%s: unknown unit \"%s\" for %s", unit_field,
                           eg_detail_str(ubuf, sizeof ubuf, unit), q->name);
        r = eg_quantity_rule(q, ucum);
    } else {
        r = loinc ? rule_for_loinc(q, loinc) : eg_quantity_rule(q, NULL);
    }
    if (!r)
        return eg_fail(e, EG_E_UNIT, "%s: unit \"%s\" is not accepted for %s (accepted: %s)",
                       unit_field, eg_detail_str(ubuf, sizeof ubuf, unit ? unit : ""), q->name,
                       units_str(list, sizeof list, q, loinc));
    if (loinc && !codes_have(r->codes, r->ncodes, loinc))
        return eg_fail(e, EG_E_UNIT, "%s: unit \"%s\" does not fit LOINC %s (accepted: %s)",
                       unit_field, eg_detail_str(ubuf, sizeof ubuf, unit ? unit : ""),
                       eg_detail_str(gb, sizeof gb, loinc), units_str(list, sizeof list, q, loinc));
    if (!isfinite(value))
        return eg_fail(e, EG_E_RANGE, "%s: %s%s%s value is not a finite number", value_field,
                       q->name, sep, key);
    v = eg_unit_convert(r, value);
    if (!(v >= r->lo && v <= r->hi)) {
        num_str(vb, sizeof vb, v);
        num_str(lob, sizeof lob, r->lo);
        num_str(hib, sizeof hib, r->hi);
        if (r->conv != EG_CONV_NONE)
            return eg_fail(e, EG_E_RANGE, "%s: %s%s%s %s outside %s..%s %s (converted from %s %s)",
                           value_field, q->name, sep, key, vb, lob, hib, r->stored,
                           num_str(gb, sizeof gb, value), r->unit);
        if (q->nrules > 1)
            return eg_fail(e, EG_E_RANGE, "%s: %s%s%s %s outside %s..%s %s", value_field, q->name,
                           sep, key, vb, lob, hib, r->stored);
        return eg_fail(e, EG_E_RANGE, "%s: %s%s%s %s outside %s..%s", value_field, q->name, sep,
                       key, vb, lob, hib);
    }
    out->value = v;
    out->rule = r;
    return EG_OK;
}

eg_err eg_reading_check_parts(const struct eg_reading_spec *s, const struct eg_value *vals,
                              const char *field, struct eg_error *e)
{
    char ab[32], bb[32];
    size_t p;

    if (!s || !vals)
        return eg_fail(e, EG_E_INTERNAL, "eg_reading_check_parts: no reading");
    if (!s->parts_descending)
        return EG_OK;
    for (p = 0; p + 1 < s->nparts; p++) {
        if (vals[p].value > vals[p + 1].value)
            continue;
        return eg_fail(e, EG_E_RANGE, "%s: %s %s %s must be greater than %s %s", field, s->name,
                       s->parts[p].key, num_str(ab, sizeof ab, vals[p].value), s->parts[p + 1].key,
                       num_str(bb, sizeof bb, vals[p + 1].value));
    }
    return EG_OK;
}

/* {"system","code","display"} or NULL on OOM. */
static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();

    if (!c || !cJSON_AddStringToObject(c, "system", system) ||
        !cJSON_AddStringToObject(c, "code", code) ||
        !cJSON_AddStringToObject(c, "display", display)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

cJSON *eg_fhir_category(const struct eg_reading_spec *s)
{
    cJSON *arr = cJSON_CreateArray(), *cc = NULL, *codings;

    if (!arr || !s)
        goto fail;
    cc = cJSON_CreateObject();
    if (egjson_add_taken(arr, NULL, cc))
        goto fail;
    codings = cJSON_AddArrayToObject(cc, "coding");
    if (!codings ||
        egjson_add_taken(codings, NULL, coding(EG_OBSCAT_SYSTEM, s->category, s->category_display)))
        goto fail;
    if (!cJSON_AddStringToObject(cc, "text", s->category_display))
        goto fail;
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}

cJSON *eg_fhir_concept(const struct eg_coding *codes, size_t ncodes)
{
    cJSON *cc, *codings;
    size_t i;

    if (!codes || ncodes == 0)
        return NULL;
    cc = cJSON_CreateObject();
    if (!cc)
        return NULL;
    codings = cJSON_AddArrayToObject(cc, "coding");
    if (!codings)
        goto fail;
    for (i = 0; i < ncodes; i++)
        if (egjson_add_taken(codings, NULL, coding(EG_LOINC_SYSTEM, codes[i].code, codes[i].display)))
            goto fail;
    if (!cJSON_AddStringToObject(cc, "text", codes[0].display))
        goto fail;
    return cc;
fail:
    cJSON_Delete(cc);
    return NULL;
}

cJSON *eg_fhir_code(const struct eg_reading_spec *s, const struct eg_value *vals)
{
    if (!s)
        return NULL;
    if (s->panel)
        return eg_fhir_concept(s->panel, s->npanel);
    if (!vals || !vals[0].rule)
        return NULL;
    return eg_fhir_concept(vals[0].rule->codes, vals[0].rule->ncodes);
}

cJSON *eg_fhir_quantity(const struct eg_value *v)
{
    cJSON *q;

    if (!v || !v->rule)
        return NULL;
    q = cJSON_CreateObject();
    if (!q || !egjson_add_number2(q, "value", v->value) ||
        !cJSON_AddStringToObject(q, "unit", v->rule->stored) ||
        !cJSON_AddStringToObject(q, "system", EG_UCUM_SYSTEM) ||
        !cJSON_AddStringToObject(q, "code", v->rule->stored)) {
        cJSON_Delete(q);
        return NULL;
    }
    return q;
}

int eg_fhir_add_value(cJSON *obs, const struct eg_reading_spec *s, const struct eg_value *vals)
{
    cJSON *components, *comp;
    size_t p;

    if (!obs || !s || !vals)
        return -1;
    if (s->nparts == 1)
        return egjson_add_taken(obs, "valueQuantity", eg_fhir_quantity(&vals[0]));
    components = cJSON_AddArrayToObject(obs, "component");
    if (!components)
        return -1;
    for (p = 0; p < s->nparts; p++) {
        comp = cJSON_CreateObject();
        if (egjson_add_taken(components, NULL, comp))
            return -1;
        if (!vals[p].rule ||
            egjson_add_taken(comp, "code", eg_fhir_concept(vals[p].rule->codes, vals[p].rule->ncodes)) ||
            egjson_add_taken(comp, "valueQuantity", eg_fhir_quantity(&vals[p])))
            return -1;
    }
    return 0;
}

/* Length of the UTF-8 sequence at p (1..4), or 0 if it is not a complete,
 * well-formed lead + continuation sequence. */
static size_t utf8_len(const unsigned char *p)
{
    size_t len, i;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        len = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        len = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        len = 4;
    else
        return 0;
    for (i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    /* no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629) */
    if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) ||
        (p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))
        return 0;
    return len;
}

char *eg_detail_str(char *buf, size_t n, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t in = 0, o = 0;
    int cut = 0;

    if (!buf || n == 0)
        return buf;
    if (n < 4) {
        buf[0] = '\0';
        return buf;
    }
    while (p[in]) {
        size_t len = utf8_len(p + in), need;
        int esc = p[in] == '"' || p[in] == '\\';
        int ctl = p[in] < 0x20 || p[in] == 0x7F || len == 0;

        if (len == 0)
            len = 1;
        need = ctl ? 1 : esc ? 2 : len;
        if (in + len > DETAIL_STR_MAX || o + need + 4 > n) { /* keep room for "...\0" */
            cut = 1;
            break;
        }
        if (ctl) {
            buf[o++] = '?';
        } else {
            if (esc)
                buf[o++] = '\\';
            memcpy(buf + o, p + in, len);
            o += len;
        }
        in += len;
    }
    if (cut) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

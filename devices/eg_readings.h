/*
 * eg_readings.h — the reading table of SPEC §4: reading types, their LOINC
 * codings, UCUM units (with the accepted non-UCUM spellings), conversions
 * and plausible ranges, plus the FHIR R4 pieces built from them.
 *
 * Shared by the device path (eg_telemetry.c) and the hospital path (SPEC §5:
 * an observation with a §4 LOINC code gets the same codings, units, ranges
 * and category as a device reading). Pure table code: no MQTT, no database.
 *
 * Numbers: every stored value is rounded to 2 decimals (eg_round2), whether
 * or not it was converted, and the plausible range is checked on that
 * rounded value, i.e. on exactly what gets stored. Bounds are inclusive.
 */
#ifndef EG_READINGS_H
#define EG_READINGS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "eg_err.h"

#define EG_LOINC_SYSTEM "http://loinc.org"
#define EG_UCUM_SYSTEM "http://unitsofmeasure.org"
#define EG_OBSCAT_SYSTEM "http://terminology.hl7.org/CodeSystem/observation-category"

/* mg/dL of glucose per mmol/L (molar mass of glucose 180.156 g/mol). Used
 * only to derive the mmol/L plausible range from SPEC §4's 10-1000 mg/dL:
 * 10/18.0156 = 0.555.. and 1000/18.0156 = 55.507.., rounded to the stored
 * precision: 0.56..55.51 mmol/L. Glucose values are never converted. */
#define EG_GLUCOSE_MGDL_PER_MMOLL 18.0156

/* Most quantity parts a reading has (blood pressure: systolic, diastolic). */
#define EG_READING_MAX_PARTS 2

/* The reading types of SPEC §4, in the order of its table. */
enum eg_reading_type {
    EG_READ_HEART_RATE = 0,
    EG_READ_SPO2,
    EG_READ_RESP_RATE,
    EG_READ_BODY_TEMP,
    EG_READ_BLOOD_PRESSURE,
    EG_READ_BODY_WEIGHT,
    EG_READ_GLUCOSE,
    EG_READ__COUNT
};

/* A LOINC coding (system EG_LOINC_SYSTEM) with its LOINC long common name. */
struct eg_coding {
    const char *code;
    const char *display;
};

/* How an accepted unit becomes the stored unit. */
enum eg_conv {
    EG_CONV_NONE = 0,    /* kept as given */
    EG_CONV_DEGF_TO_CEL, /* [degF] -> Cel: (F - 32) * 5 / 9 */
    EG_CONV_LB_TO_KG     /* [lb_av] -> kg: * 0.45359237 (exact by definition) */
};

/* One accepted unit of a quantity: what it is stored as, its plausible range
 * and the LOINC codings the quantity carries in that unit (glucose has one
 * code per unit; for the others all rules of a quantity share the codings). */
struct eg_unit_rule {
    const char *unit;   /* accepted UCUM code (canonical spelling) */
    const char *stored; /* UCUM code of the stored value */
    enum eg_conv conv;
    double lo, hi;                 /* plausible range in `stored`, inclusive */
    const struct eg_coding *codes; /* Observation.code / component code codings */
    size_t ncodes;                 /* 1, or 2 for spo2 (2708-6 first) */
};

/* One quantity-valued part of a reading: the reading's own value, or one
 * component of a panel (blood pressure: systolic, diastolic). */
struct eg_quantity {
    const char *name;                 /* reading type name, "blood_pressure" */
    const char *key;                  /* key in a device reading: "value", "systolic", ... */
    const struct eg_unit_rule *rules; /* rules[0] is the unit meant when none is given */
    size_t nrules;
};

/* A reading type of SPEC §4. */
struct eg_reading_spec {
    enum eg_reading_type type;
    const char *name;              /* "heart_rate", ... as on the wire */
    const char *category;          /* "vital-signs" or "laboratory" */
    const char *category_display;  /* "Vital Signs" or "Laboratory" */
    const struct eg_coding *panel; /* Observation.code of a component reading, else NULL */
    size_t npanel;
    const struct eg_quantity *parts; /* 1 part: valueQuantity; more: component[] */
    size_t nparts;
    int parts_descending; /* each part must be > the next (systolic > diastolic) */
};

/* A normalized quantity: the stored (converted, rounded) value and the rule
 * that produced it (rule->stored is its UCUM unit, rule->codes its codings). */
struct eg_value {
    double value;
    const struct eg_unit_rule *rule;
};

/* Where a LOINC code was found (eg_reading_by_loinc). */
struct eg_loinc_match {
    const struct eg_reading_spec *spec;
    int part;                        /* index into spec->parts; -1 for a panel code */
    const struct eg_unit_rule *rule; /* the rule carrying the code; NULL for a panel code */
};

/* The spec of a reading type; NULL if t is out of range. */
const struct eg_reading_spec *eg_reading_spec(enum eg_reading_type t);

/* Looks a reading type up by its wire name ("heart_rate"; case-sensitive).
 * Returns NULL if unknown. */
const struct eg_reading_spec *eg_reading_by_name(const char *name);

/* Looks up any LOINC code of SPEC §4 (8867-4, 2708-6, 59408-5, 9279-1,
 * 8310-5, 85354-9, 8480-6, 8462-4, 29463-7, 2339-0, 15074-8). Returns 0 and
 * fills *m (m may be NULL), or -1 if code is not one of them. */
int eg_reading_by_loinc(const char *code, struct eg_loinc_match *m);

/* Canonical UCUM code for a unit spelling: the exact UCUM codes of SPEC §4
 * (/min % Cel [degF] mm[Hg] kg [lb_av] mg/dL mmol/L) map to themselves, and
 * only the aliases bpm, mmHg, degF, °F, C, °C, lb, lbs are mapped. Exact,
 * case-sensitive match. Returns a static string, or NULL if unknown. */
const char *eg_unit_canonical(const char *spelling);

/* The rule of q accepting canonical UCUM code ucum (NULL: q's default unit,
 * rules[0]). Returns NULL if q does not accept that unit. */
const struct eg_unit_rule *eg_quantity_rule(const struct eg_quantity *q, const char *ucum);

/* v rounded to 2 decimals (half away from zero). Non-finite values and
 * values of magnitude >= 1e13 (already exact beyond 2 decimals) are returned
 * unchanged. */
double eg_round2(double v);

/* v (in r->unit) converted to r->stored and rounded to 2 decimals. */
double eg_unit_convert(const struct eg_unit_rule *r, double v);

/* Normalizes one value of quantity q given in unit spelling `unit` (NULL:
 * the default unit): canonicalises the unit, picks the rule, converts,
 * rounds, checks the plausible range. If loinc is not NULL, the rule must
 * carry that code (a 2339-0 glucose must be in mg/dL). value_field and
 * unit_field name the fields in details, e.g. "readings[0].value",
 * "readings[0].unit". Returns EG_OK and fills *out, or
 *   EG_E_UNIT:  `readings[0].unit: unknown unit "furlongs" for body_temp`,
 *               unit known but not accepted here, or not fitting loinc;
 *   EG_E_RANGE: `readings[1].value: spo2 150 outside 50..100` (the stored
 *               unit is appended for types with several units, and the
 *               given value when converted), or a non-finite value. */
eg_err eg_quantity_normalize(const struct eg_quantity *q, const char *loinc, const char *unit,
                             double value, const char *value_field, const char *unit_field,
                             struct eg_value *out, struct eg_error *e);

/* Checks the rules between the parts of a reading (blood pressure: systolic
 * > diastolic) on the stored values vals[0..s->nparts). field names the
 * reading in the detail. Returns EG_OK or EG_E_RANGE, e.g.
 * "readings[1]: blood_pressure systolic 80 must be greater than diastolic 80". */
eg_err eg_reading_check_parts(const struct eg_reading_spec *s, const struct eg_value *vals,
                              const char *field, struct eg_error *e);

/* FHIR R4 builders (cJSON, keys in the order of SPEC §6). Each returns a new
 * tree owned by the caller, or NULL on OOM. */

/* Observation.category: [{"coding":[{system, code, display}], "text"}]. */
cJSON *eg_fhir_category(const struct eg_reading_spec *s);

/* A CodeableConcept of LOINC codings: {"coding":[...],"text":codes[0].display}. */
cJSON *eg_fhir_concept(const struct eg_coding *codes, size_t ncodes);

/* Observation.code of a reading: the panel code for a component reading,
 * else the codings of vals[0]'s rule. */
cJSON *eg_fhir_code(const struct eg_reading_spec *s, const struct eg_value *vals);

/* A Quantity {"value","unit","system","code"} with unit = code = the stored
 * UCUM code; value via egjson_add_number2 (so 37.0 prints 37). */
cJSON *eg_fhir_quantity(const struct eg_value *v);

/* Adds "valueQuantity" (one part) or "component" (several parts, each
 * {"code","valueQuantity"}) to obs. Returns 0, or -1 on OOM (obs may then
 * hold a partial value; the caller deletes it). */
int eg_fhir_add_value(cJSON *obs, const struct eg_reading_spec *s, const struct eg_value *vals);

/* Copies untrusted text s into buf[0..n) for quoting in a detail: at most
 * 40 bytes of it, cut on a UTF-8 character boundary ("..." appended when
 * cut), with control bytes replaced by '?' and '"' and '\' escaped by '\'.
 * buf is always NUL-terminated (n >= 1). Returns buf. */
char *eg_detail_str(char *buf, size_t n, const char *s);

#endif

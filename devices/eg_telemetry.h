/*
 * eg_telemetry.h — device types and device telemetry (SPEC §4) -> FHIR R4
 * Observations (vital-signs profile; SPEC §6). The reading table (LOINC
 * codes, UCUM units, conversions, plausible ranges) is eg_readings.h.
 *
 * Pure functions: no MQTT, no database. The gateway looks the device up in
 * its registry, then calls eg_telemetry_parse() and eg_telemetry_normalize().
 */
#ifndef EG_TELEMETRY_H
#define EG_TELEMETRY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_readings.h"

#define EG_MAX_READINGS 64
#define EG_FUTURE_SKEW_MS 300000 /* SPEC §2: > 300 s in the future -> range */
/* Effective times before 1900-01-01T00:00:00Z are implausible -> range (and
 * FHIR cannot even write the year 0000). */
#define EG_EARLIEST_MS (-2208988800000LL)

enum eg_device_type {
    EG_DEV_PULSE_OXIMETER = 0,
    EG_DEV_BP_MONITOR,
    EG_DEV_THERMOMETER,
    EG_DEV_GLUCOMETER,
    EG_DEV_SCALE,
    EG_DEV_MONITOR,
    EG_DEV__COUNT
};

/* "pulse_oximeter" ... "monitor" -> enum; -1 if unknown (exact,
 * case-sensitive). */
int eg_device_type_parse(const char *name);
/* The wire name of t; NULL if t is out of range. */
const char *eg_device_type_name(enum eg_device_type t);

/* 1 if a device of type t may send readings of type r (SPEC §4:
 * pulse_oximeter heart_rate+spo2, bp_monitor blood_pressure+heart_rate,
 * thermometer body_temp, glucometer glucose, scale body_weight, monitor all
 * seven), else 0 (also for out-of-range arguments). */
int eg_device_measures(enum eg_device_type t, enum eg_reading_type r);

/* SPEC §2 identifier rule: 1-64 chars of A-Z a-z 0-9 . _ - */
int eg_id_valid(const char *s);

/* The header of a telemetry message (SPEC §4), borrowed from the cJSON tree. */
struct eg_telemetry {
    uint64_t seq;
    char msg_id[24];       /* decimal text of seq; "" until seq was read */
    int64_t ts_ms;         /* measurement time */
    const char *patient;   /* optional "patient", NULL if absent */
    const cJSON *readings; /* array, 1..64 items */
};

/* Reads seq (required u53 integer literal), ts (required RFC 3339 with
 * offset), patient (optional, valid id) and readings (array of 1..64
 * objects) from root. Sets t->msg_id as soon as seq is readable so a
 * rejection receipt can carry it. ts more than EG_FUTURE_SKEW_MS after
 * now_ms -> EG_E_RANGE. Errors: EG_E_SCHEMA / EG_E_RANGE with a detail
 * naming the field, e.g. "seq: must be an integer 0..2^53-1".
 * Only seq, ts, patient and readings are allowed at the top level (any other
 * key -> EG_E_SCHEMA naming it). Checked in this order: seq, unknown keys,
 * ts syntax, patient, readings, then the future-time rule. root must have
 * been parsed by egjson_parse() (integer literals are recognised there).
 * On failure t->seq/t->msg_id are valid if seq was readable, msg_id is ""
 * otherwise; the other fields must not be used. */
eg_err eg_telemetry_parse(const cJSON *root, int64_t now_ms, struct eg_telemetry *t,
                          struct eg_error *e);

/* One normalized observation. resource is owned by the caller after a
 * successful eg_telemetry_normalize(). category is static
 * ("vital-signs" or "laboratory"). */
struct eg_obs {
    cJSON *resource;
    const char *category;
};

/* Turns every reading into a FHIR R4 Observation for patient_id, measured
 * by device_id of the given type. All-or-nothing: on any bad reading returns
 * the error (EG_E_SCHEMA, EG_E_UNSUPPORTED, EG_E_UNIT, EG_E_RANGE) with a
 * detail naming the field path and the reason, such as
 * "readings[1].value: spo2 150 outside 50..100", and out holds nothing
 * (every out[i].resource NULL). On success out[0..*n) are filled (n ==
 * number of readings). out must have room for the number of readings
 * (EG_MAX_READINGS always suffices); *n is output only.
 *
 * Per reading, checked in this order:
 *   "type" a known reading type (EG_E_SCHEMA `unknown reading type "foo"`),
 *   measured by this device type (EG_E_UNSUPPORTED), no keys besides type,
 *   unit and the value key(s) (EG_E_SCHEMA naming the key: strict), value
 *   key(s) present as JSON numbers ("value", or "systolic" and "diastolic"
 *   for blood_pressure) and "unit" a string if present (EG_E_SCHEMA), the
 *   unit (EG_E_UNIT), plausible range and systolic > diastolic (EG_E_RANGE);
 *   see eg_quantity_normalize() for units, conversion and rounding.
 * Each Observation holds, in this key order: resourceType, meta.source
 * "urn:ehrgate:device:{device_id}", identifier [{system: the same urn,
 * value "{device_id}/{msg_id}/{index}"}] (index 0-based), status "final",
 * category, code, subject "Patient/{patient_id}", effectiveDateTime (ts in
 * UTC, eg_time_format), device.display "{device type} {device_id}", then
 * valueQuantity or component (eg_fhir_add_value). Out of memory: EG_E_NOMEM.
 * device_id and patient_id must satisfy eg_id_valid() (EG_E_INTERNAL
 * otherwise: they come from the registry, not from the payload). */
eg_err eg_telemetry_normalize(const struct eg_telemetry *t, enum eg_device_type type,
                              const char *device_id, const char *patient_id, struct eg_obs *out,
                              size_t *n, struct eg_error *e);

/* Frees out[0..n) resources and sets them to NULL (out NULL or resources
 * NULL are fine). */
void eg_obs_free(struct eg_obs *out, size_t n);

#endif

/*
 * sim_hospital_msgs.h — payloads of a simulated hospital information system
 * for ehr/hospital/{hospital_id}/records (SPEC §5, docs/protocol.md §6):
 * plausible lab and vital-sign results for one patient, as a FHIR R4 Bundle
 * of Observations or as an HL7 v2.5 ORU^R01 (ER7).
 *
 * Pure functions: no MQTT, no clock, no global state. The content (which
 * tests, which values) is drawn from a struct sim_rand, so a run is
 * reproducible from its seed. Every payload is accepted by the gateway's own
 * parsers (gateway/eg_fhir_in.c, gateway/eg_hl7.c): SPEC §4 codes carry §4's
 * UCUM units and values well inside §4's plausible ranges.
 */
#ifndef SIM_HOSPITAL_MSGS_H
#define SIM_HOSPITAL_MSGS_H

#include <stddef.h>
#include <stdint.h>

#include "sim_rand.h"

/* Hard cap on a generated payload (SPEC §2's default max_payload_bytes). */
#define SIM_HOSP_MAX_BYTES 262144

/* A plausible lab/vitals result for one patient of a simulated hospital, as
 * the payload of ehr/hospital/{hospital_id}/records. Both return a malloc'ed
 * NUL-terminated payload (*len = strlen; the caller frees it), or NULL on
 * OOM, on a NULL argument, or if the payload would exceed SIM_HOSP_MAX_BYTES
 * (only with absurdly long ids). msg_id is the message id the gateway will
 * use for dedup (FHIR: Bundle.identifier.value; HL7: MSH-10). mrn is the
 * patient's identifier at that hospital (FHIR: subject.identifier.value;
 * HL7: PID-3.1). effective_ms is the observation time (ms since the epoch,
 * UTC); every observation of the message carries it. The content is drawn
 * from r; the same r state gives the same bytes.
 *
 * Both draw 1-4 results from glucose 2339-0, hemoglobin 718-7, potassium
 * 2823-3, creatinine 2160-0 (category laboratory) and heart rate 8867-4,
 * body temperature 8310-5, SpO2 2708-6/59408-5, blood pressure 85354-9
 * (vital-signs). FHIR: one Observation per result (blood pressure with
 * components 8480-6/8462-4), 1-4 entries. HL7: one OBX per value (blood
 * pressure as two OBX 8480-6 and 8462-4, as eg_hl7.c requires), 1-4 OBX,
 * under one OBR per group (lab report 11502-2, vital signs panel 85353-1).
 * Ids are written as given (JSON-escaped, or HL7-escaped: \F\ \S\ \R\ \E\
 * \T\ and \Xhh\ for control bytes); they should be printable UTF-8. */
char *sim_hosp_fhir_bundle(const char *hospital_id, const char *msg_id, const char *mrn,
                           int64_t effective_ms, struct sim_rand *r, size_t *len);
char *sim_hosp_hl7_oru(const char *hospital_id, const char *msg_id, const char *mrn,
                       int64_t effective_ms, struct sim_rand *r, size_t *len);

#endif

/*
 * eg_fhir_in.h — FHIR R4 JSON input from hospitals (SPEC §5): an
 * Observation, or a Bundle (any type) whose entries are Observations.
 */
#ifndef EG_FHIR_IN_H
#define EG_FHIR_IN_H

#include <cjson/cJSON.h>

#include "eg_err.h"
#include "eg_hospital.h"

/* Validates and normalizes root (already strictly parsed with egjson_parse)
 * into h. Message id: the top resource's "id", else Bundle.identifier.value
 * (EG_E_SCHEMA if neither); h->msg_id is set as soon as it is known, also
 * when an error follows. Per Observation: status, code.coding[] with system
 * and code, a subject (reference "Patient/{id}" or identifier.value),
 * effectiveDateTime or effectivePeriod.start, and valueQuantity /
 * valueString / valueCodeableConcept or component[] are required
 * (EG_E_SCHEMA naming the path, e.g. "entry[2].resource.status: required").
 * A Bundle entry that is not an Observation -> EG_E_UNSUPPORTED. SPEC §4's
 * units and ranges apply to §4 LOINC codes (EG_E_UNIT / EG_E_RANGE); an
 * effective time more than 300 s after ctx->now_ms -> EG_E_RANGE.
 * All-or-nothing: on error h holds no observations. */
eg_err eg_fhir_in_parse(const cJSON *root, const struct eg_hosp_ctx *ctx, struct eg_hmsg *h,
                        struct eg_error *e);

#endif

/*
 * eg_hospital.h — what the hospital input parsers (FHIR R4 JSON in
 * eg_fhir_in.c, HL7 v2 ORU^R01 in eg_hl7.c) hand to the ingest step
 * (SPEC §5). The parsers are pure: no database, no MQTT. They validate and
 * normalize every observation; the ingest step then resolves patients
 * through the registry, sets Observation.subject, and commits.
 */
#ifndef EG_HOSPITAL_H
#define EG_HOSPITAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"

#define EG_HOSP_MAX_OBS 512     /* observations per message (more -> EG_E_SCHEMA) */
#define EG_HOSP_MAX_IDENTS 8    /* candidate patient identifiers per observation */
#define EG_HOSP_IDENT_MAX 129   /* identifier value, NUL included */
#define EG_HOSP_MSGID_MAX 200   /* message id, NUL included */

/* Parser input: who sent it and when it arrived. */
struct eg_hosp_ctx {
    const char *hospital_id;
    int utc_offset_min;   /* for HL7 DTM without offset (registry; default 0) */
    int64_t now_ms;       /* for the "> 300 s in the future -> range" rule */
};

/* One observation, normalized, before patient resolution. */
struct eg_hobs {
    /* FHIR R4 Observation, fully normalized (SPEC §5, §6): no "id"; the
     * hospital's own id (FHIR) moved into an identifier with system
     * urn:ehrgate:hospital:{hospital_id}; an identifier with system
     * urn:ehrgate:hospital:{hospital_id} and value "{hospital_id}/{msg_id}/{index}";
     * meta.source "urn:ehrgate:hospital:{hospital_id}"; §4 codes carry §4's
     * codings, category, units (converted, rounded) and passed §4's ranges.
     * "subject" is ABSENT: the ingest step adds {"reference":"Patient/{id}"}
     * with eg_hobs_set_subject(). Key order as the device path: resourceType,
     * meta, identifier, status, category, code, (subject), effective[x],
     * ... value[x] / component, ... Owned. */
    cJSON *resource;
    /* vital-signs | laboratory | another observation-category code | unknown */
    char category[64];
    /* effective instant (effectiveDateTime, or effectivePeriod.start; a date
     * counts as 00:00 UTC of that day) */
    int64_t effective_ms;
    /* patient: a direct id (FHIR subject.reference "Patient/{id}"), or
     * identifier values to look up as (hospital_id, value), first mapped
     * wins (HL7 PID-3 repetitions, component 1; FHIR subject.identifier.value) */
    char patient_id[65];
    char idents[EG_HOSP_MAX_IDENTS][EG_HOSP_IDENT_MAX];
    int nidents;
};

/* A parsed hospital message. */
struct eg_hmsg {
    char msg_id[EG_HOSP_MSGID_MAX]; /* "" until known */
    int have_msg_id;
    struct eg_hobs *obs; /* n entries, malloc'ed */
    size_t n;
};

/* Frees the observations (and their resources); the struct stays usable. */
void eg_hmsg_clear(struct eg_hmsg *h);

/* Inserts "subject":{"reference":"Patient/{patient_id}"} into obs->resource
 * right after "code" (replacing any "subject"). Returns 0, or -1 on OOM. */
int eg_hobs_set_subject(struct eg_hobs *obs, const char *patient_id);

#endif

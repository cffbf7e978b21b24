/*
 * eg_consent.h — consent directives and the forwarding policy (SPEC §8,
 * §13): grants and revocations from the patient's signed directives, the
 * FHIR R4 Consent resource of a `consent` entry, and the decision, inside
 * the committing transaction, whether an observation may go to a grantee.
 * Default: deny.
 */
#ifndef EG_CONSENT_H
#define EG_CONSENT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eg_config.h"
#include "eg_err.h"
#include "eg_store.h"

#define EG_GRANTEES_MAX 32

/* A configured grantee (--grantee NAME:PURPOSE). */
struct eg_grantee {
    char name[65];
    char purpose[65];
};

/* Parses cfg->grantee into out (at most EG_GRANTEES_MAX); returns the count
 * or -1 on a malformed value. */
int eg_grantees_parse(const struct eg_config *cfg, struct eg_grantee *out, int max);

/* The observation-category codes consent may name (SPEC §13). */
#define EG_CAT_COUNT 9
extern const char *const eg_consent_categories[EG_CAT_COUNT];

/* A validated directive. Absent period/data_period bounds are INT64_MIN /
 * INT64_MAX. purposes: NULL-terminated list, npurposes == 0 means absent. */
struct eg_directive {
    char consent_id[65];
    int grant;                /* 1 grant, 0 revoke */
    char grantee[65];
    unsigned categories;      /* bit i = eg_consent_categories[i] */
    char purposes[8][65];
    int npurposes;
    int64_t period_start, period_end;
    int64_t data_start, data_end;
    int has_period, has_data_period;
};

/* Validates a directive's JSON (already signature- and replay-checked; the
 * nonce and issued members are allowed and ignored). Grant: consent_id,
 * action "grant", grantee (configured, else EG_E_SCHEMA), categories
 * (non-empty, each one of eg_consent_categories, else EG_E_SCHEMA),
 * purposes? (strings), period? {start?, end?}, data_period? {start?,
 * end?} (RFC 3339, start <= end). Revoke: consent_id, action "revoke".
 * Unknown members -> EG_E_SCHEMA naming them. */
eg_err eg_directive_parse(const cJSON *root, const struct eg_grantee *g, int ng,
                          struct eg_directive *d, struct eg_error *e);

/* The FHIR R4 Consent of a directive (SPEC §8): status active/inactive,
 * scope patient-privacy, category LOINC 59284-0, patient, dateTime (now_ms),
 * policyRule v3-ActCode OPTIN, provision {type permit, period, actor
 * [grantee], purpose, class/code for the categories, dataPeriod}. For a
 * revoke, prev (the directive being revoked) supplies the provision and
 * status is inactive. Returns NULL on OOM. */
cJSON *eg_consent_resource(const struct eg_directive *d, const struct eg_directive *prev,
                           const char *patient_id, int64_t now_ms);

/* Applies a directive in the caller's transaction (seq: its consent
 * entry). A grant with an existing consent_id replaces it. A revoke of an
 * unknown (or already revoked) consent_id -> EG_E_NOT_FOUND. (For a revoke
 * the caller first fetches the grant with eg_consent_lookup, to build the
 * Consent resource and to answer not_found before appending an entry.) */
eg_err eg_consent_apply(struct eg_store *st, const char *patient, const struct eg_directive *d,
                        uint64_t seq, int64_t now_ms);

/* The active grant patient/consent_id. EG_OK, EG_E_NOT_FOUND, or a storage
 * error. */
eg_err eg_consent_lookup(struct eg_store *st, const char *patient, const char *consent_id,
                         struct eg_directive *d);

/* The policy (SPEC §8): 1 if patient has an active grant to g whose
 * categories contain category, whose purposes contain g->purpose (or are
 * absent), whose period contains commit_ms and whose data_period (if any)
 * contains effective_ms; 0 if not (default deny); -1 on a storage error. */
int eg_consent_permits(struct eg_store *st, const char *patient, const struct eg_grantee *g,
                       const char *category, int64_t commit_ms, int64_t effective_ms);

/* The grants in force at now_ms (not revoked, not expired) as a JSON array
 * for the patient "consents" reply: [{"consent_id","grantee","categories",
 * "purposes"?, "period"?, "data_period"?}]. */
eg_err eg_consent_list(struct eg_store *st, const char *patient, int64_t now_ms, cJSON **out);

#endif

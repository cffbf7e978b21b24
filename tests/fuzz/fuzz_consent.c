/*
 * fuzz_consent.c — libFuzzer target for consent directives (SPEC §8):
 * egjson_parse (strict), then eg_directive_parse with a fixed set of
 * configured grantees, then eg_consent_resource on every accepted
 * directive (a revoke both with the SPEC's grant as the revoked directive
 * and without one). No database is opened: gateway/eg_consent.c is linked
 * with gateway/eg_store.c and sqlite3 only because the same file holds the
 * consents table code.
 *
 * Checks the promises of eg_consent.h and the decisions in eg_consent.c's
 * header comment:
 *   - a refusal is EG_E_SCHEMA with a printable UTF-8 detail, and leaves the
 *     directive as freshly initialised (bounds INT64_MIN / INT64_MAX);
 *   - an accepted directive has a valid consent_id equal to the payload's,
 *     only the members allowed for its action, and for a grant a configured
 *     grantee, 1-9 distinct known categories, 0-8 distinct valid purposes
 *     and periods with start <= end (unbounded sides INT64_MIN / INT64_MAX);
 *     with no grantees configured no grant is accepted, a revoke still is;
 *   - the Consent is a JSON object that prints and parses strictly again,
 *     with resourceType, status, identifier, dateTime and provision (code
 *     per category, purpose per purpose, period/dataPeriod bounds that read
 *     back as the same instants inside the 0000-9999 range) as documented;
 *     prev is ignored for a grant.
 *
 *   ./fuzz_consent -dict=tests/fuzz/consent.dict work tests/fuzz/corpus/consent
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_consent.h"
#include "eg_json.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "fuzz_util.h"

#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define PATIENT "P001"
/* The range eg_time_format can write (years 0000-9999). */
#define FMT_MIN_MS (-62167219200000LL)
#define FMT_MAX_MS (253402300799999LL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* As in tests/unit/test_consent.c, plus a name of the maximum length. */
static const struct eg_grantee grantees[] = {
    {"authority", "public-health"},
    {"lab-net", "treatment"},
    {"g234567890123456789012345678901234567890123456789012345678901234", "research"},
};
#define NGRANTEES ((int)(sizeof grantees / sizeof grantees[0]))

static const char *const grant_members[] = {"consent_id",  "action",   "grantee",
                                            "categories",  "purposes", "period",
                                            "data_period", "nonce",    "issued"};
static const char *const revoke_members[] = {"consent_id", "action", "nonce", "issued"};

/* SPEC §8's grant: the revoked directive for eg_consent_resource. */
static const char spec_grant[] =
    "{\"consent_id\":\"c-001\",\"action\":\"grant\",\"grantee\":\"authority\","
    "\"categories\":[\"vital-signs\",\"laboratory\"],\"purposes\":[\"public-health\"],"
    "\"period\":{\"start\":\"2026-11-24T00:00:00Z\",\"end\":\"2027-11-24T00:00:00Z\"},"
    "\"data_period\":{\"start\":\"2020-01-01T00:00:00Z\"},"
    "\"nonce\":17,\"issued\":\"2026-11-24T06:00:00.000Z\"}";
static struct eg_directive prev_grant;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct eg_error e = {EG_OK, ""};
    cJSON *root = NULL;

    (void)argc;
    (void)argv;
    if (egjson_parse((const uint8_t *)spec_grant, strlen(spec_grant), &root, &e) != EG_OK ||
        eg_directive_parse(root, grantees, NGRANTEES, &prev_grant, &e) != EG_OK) {
        fprintf(stderr, "fuzz_consent: the SPEC §8 grant does not parse: %s\n", e.detail);
        abort();
    }
    cJSON_Delete(root);
    return 0;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

static int popcount(unsigned v)
{
    int n = 0;

    for (; v; v &= v - 1)
        n++;
    return n;
}

/* The state eg_directive_parse leaves after a refusal. */
static void check_reset(const struct eg_directive *d)
{
    FUZZ_CHECK(d->consent_id[0] == '\0' && d->grant == 0 && d->grantee[0] == '\0');
    FUZZ_CHECK(d->categories == 0 && d->npurposes == 0);
    FUZZ_CHECK(!d->has_period && !d->has_data_period);
    FUZZ_CHECK(d->period_start == INT64_MIN && d->period_end == INT64_MAX);
    FUZZ_CHECK(d->data_start == INT64_MIN && d->data_end == INT64_MAX);
}

/* An accepted directive against its JSON. */
static void check_directive(const cJSON *root, const struct eg_directive *d)
{
    const cJSON *it;
    const char *s;
    int i, j, k;

    FUZZ_CHECK(strnlen(d->consent_id, sizeof d->consent_id) < sizeof d->consent_id);
    FUZZ_CHECK(eg_id_valid(d->consent_id));
    s = egjson_str(root, "consent_id");
    FUZZ_CHECK(s && strcmp(s, d->consent_id) == 0);
    s = egjson_str(root, "action");
    FUZZ_CHECK(s && strcmp(s, d->grant ? "grant" : "revoke") == 0);
    cJSON_ArrayForEach(it, root)
    {
        FUZZ_CHECK(d->grant ? in_list(it->string, grant_members, 9)
                            : in_list(it->string, revoke_members, 4));
    }
    if (!d->grant) {
        FUZZ_CHECK(d->grantee[0] == '\0' && d->categories == 0 && d->npurposes == 0);
        FUZZ_CHECK(!d->has_period && !d->has_data_period);
        return;
    }
    for (k = 0; k < NGRANTEES; k++)
        if (strcmp(d->grantee, grantees[k].name) == 0)
            break;
    FUZZ_CHECK(k < NGRANTEES);
    FUZZ_CHECK(d->categories != 0 && d->categories < (1u << EG_CAT_COUNT));
    FUZZ_CHECK(popcount(d->categories) ==
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "categories")));
    FUZZ_CHECK(d->npurposes >= 0 && d->npurposes <= 8);
    FUZZ_CHECK(d->npurposes ==
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "purposes")));
    for (i = 0; i < d->npurposes; i++) {
        FUZZ_CHECK(eg_id_valid(d->purposes[i]));
        for (j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(d->purposes[i], d->purposes[j]) != 0);
    }
    FUZZ_CHECK(d->has_period == (cJSON_GetObjectItemCaseSensitive(root, "period") != NULL));
    FUZZ_CHECK(d->has_data_period ==
               (cJSON_GetObjectItemCaseSensitive(root, "data_period") != NULL));
    FUZZ_CHECK(d->period_start <= d->period_end && d->data_start <= d->data_end);
    if (d->has_period)
        FUZZ_CHECK(d->period_start != INT64_MIN || d->period_end != INT64_MAX);
    else
        FUZZ_CHECK(d->period_start == INT64_MIN && d->period_end == INT64_MAX);
    if (d->has_data_period)
        FUZZ_CHECK(d->data_start != INT64_MIN || d->data_end != INT64_MAX);
    else
        FUZZ_CHECK(d->data_start == INT64_MIN && d->data_end == INT64_MAX);
}

/* A FHIR Period written for [start, end]: absent sides for unbounded ones,
 * present ones read back as the same instant inside the format range. */
static void check_period(const cJSON *p, int64_t start, int64_t end)
{
    const char *s;
    int64_t ms;

    FUZZ_CHECK(cJSON_IsObject(p));
    s = egjson_str(p, "start");
    FUZZ_CHECK((s != NULL) == (start != INT64_MIN));
    if (s) {
        FUZZ_CHECK(eg_time_parse(s, &ms) == 0);
        if (start >= FMT_MIN_MS && start <= FMT_MAX_MS)
            FUZZ_CHECK(ms == start);
    }
    s = egjson_str(p, "end");
    FUZZ_CHECK((s != NULL) == (end != INT64_MAX));
    if (s) {
        FUZZ_CHECK(eg_time_parse(s, &ms) == 0);
        if (end >= FMT_MIN_MS && end <= FMT_MAX_MS)
            FUZZ_CHECK(ms == end);
    }
}

/* The Consent of d (p: the directive supplying the provision, or NULL). */
static void check_resource(const cJSON *r, const struct eg_directive *d,
                           const struct eg_directive *p)
{
    const cJSON *prov, *ident;
    const char *s;
    char when[EG_TIME_STRLEN];

    FUZZ_CHECK(cJSON_IsObject(r));
    FUZZ_CHECK(fuzz_json_ok(r));
    s = egjson_str(r, "resourceType");
    FUZZ_CHECK(s && strcmp(s, "Consent") == 0);
    s = egjson_str(r, "status");
    FUZZ_CHECK(s && strcmp(s, d->grant ? "active" : "inactive") == 0);
    ident = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "identifier"), 0);
    s = egjson_str(ident, "value");
    FUZZ_CHECK(s && strcmp(s, d->consent_id) == 0);
    s = egjson_str(ident, "system");
    FUZZ_CHECK(s && strcmp(s, "urn:ehrgate:consent:" PATIENT) == 0);
    s = egjson_str(cJSON_GetObjectItemCaseSensitive(r, "patient"), "reference");
    FUZZ_CHECK(s && strcmp(s, "Patient/" PATIENT) == 0);
    eg_time_format(NOW_MS, when);
    s = egjson_str(r, "dateTime");
    FUZZ_CHECK(s && strcmp(s, when) == 0);
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(r, "policyRule") != NULL);
    prov = cJSON_GetObjectItemCaseSensitive(r, "provision");
    if (!p) {
        FUZZ_CHECK(prov == NULL);
        return;
    }
    FUZZ_CHECK(cJSON_IsObject(prov));
    s = egjson_str(prov, "type");
    FUZZ_CHECK(s && strcmp(s, "permit") == 0);
    FUZZ_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(prov, "code")) ==
               popcount(p->categories));
    FUZZ_CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(prov, "purpose")) ==
               p->npurposes);
    s = egjson_str(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(prov, "actor"), 0), "reference"),
        "display");
    FUZZ_CHECK(s && strcmp(s, p->grantee) == 0);
    if (p->has_period)
        check_period(cJSON_GetObjectItemCaseSensitive(prov, "period"), p->period_start,
                     p->period_end);
    else
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(prov, "period") == NULL);
    if (p->has_data_period)
        check_period(cJSON_GetObjectItemCaseSensitive(prov, "dataPeriod"), p->data_start,
                     p->data_end);
    else
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(prov, "dataPeriod") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eg_directive d, d0;
    struct eg_error e = {EG_OK, ""}, e0 = {EG_OK, ""};
    cJSON *root = NULL, *r = NULL, *r2 = NULL;
    char *t1 = NULL, *t2 = NULL;
    eg_err rc, rc0;

    if (egjson_parse(data, size, &root, &e) != EG_OK)
        return 0;
    memset(&d, 0x5A, sizeof d);
    rc = eg_directive_parse(root, grantees, NGRANTEES, &d, &e);
    /* the same without configured grantees: only revokes can pass */
    memset(&d0, 0xA5, sizeof d0);
    rc0 = eg_directive_parse(root, NULL, 0, &d0, &e0);
    if (rc0 != EG_OK) {
        FUZZ_CHECK(rc0 == EG_E_SCHEMA && fuzz_detail_ok(&e0));
        check_reset(&d0);
    } else {
        FUZZ_CHECK(!d0.grant);
    }
    FUZZ_CHECK(rc != EG_OK || d.grant || rc0 == EG_OK);
    if (rc != EG_OK) {
        FUZZ_CHECK(rc == EG_E_SCHEMA && e.code == rc && fuzz_detail_ok(&e));
        check_reset(&d);
        FUZZ_CHECK(rc0 != EG_OK);
        goto out;
    }
    check_directive(root, &d);

    if (d.grant) {
        r = eg_consent_resource(&d, NULL, PATIENT, NOW_MS);
        FUZZ_CHECK(r != NULL);
        check_resource(r, &d, &d);
        /* prev is ignored for a grant */
        r2 = eg_consent_resource(&d, &prev_grant, PATIENT, NOW_MS);
        FUZZ_CHECK(r2 != NULL);
        t1 = egjson_print(r, NULL);
        t2 = egjson_print(r2, NULL);
        FUZZ_CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    } else {
        r = eg_consent_resource(&d, &prev_grant, PATIENT, NOW_MS);
        FUZZ_CHECK(r != NULL);
        check_resource(r, &d, &prev_grant);
        r2 = eg_consent_resource(&d, NULL, PATIENT, NOW_MS);
        FUZZ_CHECK(r2 != NULL);
        check_resource(r2, &d, NULL);
    }
out:
    free(t1);
    free(t2);
    cJSON_Delete(r);
    cJSON_Delete(r2);
    cJSON_Delete(root);
    return 0;
}

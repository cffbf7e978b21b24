/*
 * eg_consent.c — consent directives and the forwarding policy (SPEC §8,
 * §13; see eg_consent.h): directive validation, the FHIR R4 Consent of a
 * `consent` entry, the consents table, and the per-observation decision
 * taken inside the committing transaction. Default: deny.
 *
 * Decisions the SPEC leaves open (to be written into docs/protocol.md):
 *  - Directives are strict. A grant takes consent_id, action, grantee,
 *    categories, purposes, period, data_period (+ nonce, issued); a revoke
 *    only consent_id and action (+ nonce, issued); anything else is
 *    `schema` naming the members. period/data_period take only start/end
 *    and need at least one of them. Optional members may not be null.
 *  - consent_id and every purpose: 1-64 characters of SPEC §2's id alphabet
 *    (A-Z a-z 0-9 . _ -). purposes: 1-8 distinct strings; an empty array is
 *    `schema` (omit the member to allow any purpose). categories: 1-9
 *    distinct observation-category codes, case-sensitive.
 *  - period/data_period bounds are RFC 3339 with offset, compared as
 *    instants (ms); start <= end; both bounds are inclusive; a missing bound
 *    is unbounded.
 *  - A grant replaces a grant (or a revoked grant) of the same consent_id;
 *    revoking an unknown or already revoked consent_id is `not_found`.
 *    Revoked rows are kept with active = 0.
 *  - "In force now" (the `consents` reply) = active and now within period
 *    (a grant whose period starts later is not listed), ordered by
 *    consent_id; categories in SPEC §13 order.
 *  - Configured grantees (--grantee NAME:PURPOSE): NAME an id, PURPOSE 1-64
 *    of the id alphabet, each NAME once.
 *
 * Storage: categories and purposes are JSON arrays written by this file
 * (cJSON) from validated strings of the id alphabet, so they contain no
 * escapes and `"code"` (with its quotes) occurs in the text exactly when
 * code is an element: the policy query tests membership with instr() on the
 * quoted code ("vital" never matches "vital-signs"), without parsing JSON
 * per observation. It reads the partial index consents_active (patient,
 * grantee, active rows only) by INDEXED BY: left alone, the planner takes
 * the primary key range of the patient, which also walks revoked and
 * replaced rows. Period bounds are checked against the commit time and
 * data_period bounds against the effective time the caller passes.
 *
 * The Consent (FHIR R4 4.0.1): identifier {urn:ehrgate:consent:{patient},
 * consent_id}; scope consentscope#patient-privacy (so ppc-2 needs patient,
 * which is always given); category LOINC 59284-0; policyRule
 * v3-ActCode#OPTIN (ppc-1); provision: type permit, period, actor role
 * v3-ParticipationType#IRCP with reference {identifier urn:ehrgate:grantee,
 * display}, action consentaction#disclose, purpose (system
 * urn:ehrgate:purpose, the directive's strings as codes — they are free
 * strings matched against the configured grantee purposes, not
 * v3-PurposeOfUse codes, so they are carried unmapped and exact), class
 * resource-types#Observation, code one observation-category CodeableConcept
 * per category, dataPeriod. Times are written in UTC with Z and ms.
 */
#include "eg_consent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_log.h"
#include "eg_telemetry.h"
#include "eg_time.h"

/* SPEC §13 order = the order of the R4 observation-category CodeSystem. */
const char *const eg_consent_categories[EG_CAT_COUNT] = {
    "social-history", "vital-signs", "imaging", "laboratory", "procedure",
    "survey",         "exam",        "therapy", "activity",
};

static const char *const cat_display[EG_CAT_COUNT] = {
    "Social History", "Vital Signs", "Imaging", "Laboratory", "Procedure",
    "Survey",         "Exam",        "Therapy", "Activity",
};

#define SYS_OBS_CAT "http://terminology.hl7.org/CodeSystem/observation-category"
#define SYS_SCOPE "http://terminology.hl7.org/CodeSystem/consentscope"
#define SYS_ACTCODE "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#define SYS_PARTTYPE "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#define SYS_ACTION "http://terminology.hl7.org/CodeSystem/consentaction"
#define SYS_RESTYPE "http://hl7.org/fhir/resource-types"
#define SYS_PURPOSE "urn:ehrgate:purpose"
#define SYS_GRANTEE "urn:ehrgate:grantee"
#define ID_RULE "1-64 of A-Z a-z 0-9 . _ -"
#define PURPOSES_MAX 8

static int cat_index(const char *code)
{
    for (int i = 0; i < EG_CAT_COUNT; i++)
        if (strcmp(code, eg_consent_categories[i]) == 0)
            return i;
    return -1;
}

/* ---- configured grantees ---------------------------------------------- */

int eg_grantees_parse(const struct eg_config *cfg, struct eg_grantee *out, int max)
{
    int n = 0;

    if (!cfg || max < 0 || (max > 0 && !out))
        return -1;
    for (int i = 0; i < cfg->grantee.n; i++) {
        const char *v = cfg->grantee.v[i];
        const char *colon = v ? strchr(v, ':') : NULL;
        size_t nlen;

        if (!colon || n >= max)
            return -1;
        nlen = (size_t)(colon - v);
        if (nlen == 0 || nlen >= sizeof out[n].name || strlen(colon + 1) >= sizeof out[n].purpose)
            return -1;
        memcpy(out[n].name, v, nlen);
        out[n].name[nlen] = '\0';
        snprintf(out[n].purpose, sizeof out[n].purpose, "%s", colon + 1);
        if (!eg_id_valid(out[n].name) || !eg_id_valid(out[n].purpose))
            return -1;
        for (int j = 0; j < n; j++)
            if (strcmp(out[j].name, out[n].name) == 0)
                return -1;
        n++;
    }
    return n;
}

/* ---- directive validation --------------------------------------------- */

/* Copies untrusted text (valid UTF-8) for a detail: at most max bytes, cut
 * before a UTF-8 lead byte, control characters, quotes and backslashes as
 * '?', "..." when cut. */
static void show(char *buf, size_t size, const char *s, size_t max)
{
    size_t i = 0, o = 0;

    if (size == 0)
        return;
    for (; s[i] && i < max && o + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        /* do not end inside a multi-byte sequence */
        while (o > 0 && i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80) {
            o--;
            i--;
        }
        if (o + 4 <= size) {
            memcpy(buf + o, "...", 3);
            o += 3;
        }
    }
    buf[o] = '\0';
}

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return 1;
    return 0;
}

/* EG_E_SCHEMA naming every member of obj not in allowed (as many as fit). */
static eg_err check_members(const cJSON *obj, const char *const *allowed, size_t nallowed,
                            const char *where, struct eg_error *e)
{
    char list[200], one[48];
    size_t len = 0;
    int count = 0;

    list[0] = '\0';
    for (const cJSON *it = obj->child; it; it = it->next) {
        int w;
        if (in_list(it->string, allowed, nallowed))
            continue;
        show(one, sizeof one, it->string, 40);
        w = snprintf(list + len, sizeof list - len, "%s\"%s\"", count ? ", " : "", one);
        if (w < 0 || (size_t)w >= sizeof list - len) {
            list[len] = '\0';
            if (len + 5 < sizeof list)
                memcpy(list + len, ", ...", 6);
            count++;
            break;
        }
        len += (size_t)w;
        count++;
    }
    if (count == 0)
        return EG_OK;
    return eg_fail(e, EG_E_SCHEMA, "%s: unknown member%s of %s", list, count > 1 ? "s" : "", where);
}

static const char *const grant_members[] = {"consent_id",  "action",   "grantee",
                                            "categories",  "purposes", "period",
                                            "data_period", "nonce",    "issued"};
static const char *const revoke_members[] = {"consent_id", "action", "nonce", "issued"};
static const char *const period_members[] = {"start", "end"};

/* A required string member; NULL with e set when absent or not a string. */
static const char *req_string(const cJSON *obj, const char *key, struct eg_error *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!it) {
        eg_fail(e, EG_E_SCHEMA, "%s: required", key);
        return NULL;
    }
    if (!cJSON_IsString(it) || !it->valuestring) {
        eg_fail(e, EG_E_SCHEMA, "%s: must be a string", key);
        return NULL;
    }
    return it->valuestring;
}

static eg_err parse_bound(const cJSON *obj, const char *name, const char *key, int64_t *out,
                          struct eg_error *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!it)
        return EG_OK;
    if (!cJSON_IsString(it) || !it->valuestring || eg_time_parse(it->valuestring, out) != 0)
        return eg_fail(e, EG_E_SCHEMA, "%s.%s: must be an RFC 3339 date-time with offset", name,
                       key);
    return EG_OK;
}

/* period / data_period: {start?, end?}, at least one, start <= end. */
static eg_err parse_period(const cJSON *root, const char *name, int64_t *start, int64_t *end,
                           int *has, struct eg_error *e)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, name);
    eg_err rc;

    *start = INT64_MIN;
    *end = INT64_MAX;
    *has = 0;
    if (!p)
        return EG_OK;
    if (!cJSON_IsObject(p))
        return eg_fail(e, EG_E_SCHEMA, "%s: must be an object {start?, end?}", name);
    if ((rc = check_members(p, period_members, 2, name, e)) != EG_OK)
        return rc;
    if (!p->child)
        return eg_fail(e, EG_E_SCHEMA, "%s: needs start or end (omit it for no limit)", name);
    if ((rc = parse_bound(p, name, "start", start, e)) != EG_OK ||
        (rc = parse_bound(p, name, "end", end, e)) != EG_OK)
        return rc;
    if (*start > *end)
        return eg_fail(e, EG_E_SCHEMA, "%s: start is after end", name);
    *has = 1;
    return EG_OK;
}

static eg_err parse_categories(const cJSON *root, struct eg_directive *d, struct eg_error *e)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "categories");
    int i = 0;

    if (!a)
        return eg_fail(e, EG_E_SCHEMA, "categories: required");
    if (!cJSON_IsArray(a) || !a->child)
        return eg_fail(e, EG_E_SCHEMA,
                       "categories: must be a non-empty array of "
                       "observation-category codes");
    for (const cJSON *it = a->child; it; it = it->next, i++) {
        char txt[48];
        int k;
        if (!cJSON_IsString(it) || !it->valuestring)
            return eg_fail(e, EG_E_SCHEMA, "categories[%d]: must be a string", i);
        k = cat_index(it->valuestring);
        show(txt, sizeof txt, it->valuestring, 32);
        if (k < 0)
            return eg_fail(e, EG_E_SCHEMA,
                           "categories[%d]: \"%s\" is not an observation-category code "
                           "(social-history, vital-signs, imaging, laboratory, procedure, "
                           "survey, exam, therapy, activity)",
                           i, txt);
        if (d->categories & (1u << k))
            return eg_fail(e, EG_E_SCHEMA, "categories[%d]: \"%s\" is given twice", i, txt);
        d->categories |= 1u << k;
    }
    return EG_OK;
}

static eg_err parse_purposes(const cJSON *root, struct eg_directive *d, struct eg_error *e)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "purposes");
    int i = 0;

    if (!a)
        return EG_OK;
    if (!cJSON_IsArray(a))
        return eg_fail(e, EG_E_SCHEMA, "purposes: must be an array of strings");
    if (!a->child)
        return eg_fail(e, EG_E_SCHEMA,
                       "purposes: must not be empty (omit it to allow any purpose)");
    if (cJSON_GetArraySize(a) > PURPOSES_MAX)
        return eg_fail(e, EG_E_SCHEMA, "purposes: at most %d", PURPOSES_MAX);
    for (const cJSON *it = a->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring)
            return eg_fail(e, EG_E_SCHEMA, "purposes[%d]: must be a string", i);
        if (!eg_id_valid(it->valuestring))
            return eg_fail(e, EG_E_SCHEMA, "purposes[%d]: must be " ID_RULE, i);
        for (int j = 0; j < i; j++)
            if (strcmp(d->purposes[j], it->valuestring) == 0)
                return eg_fail(e, EG_E_SCHEMA, "purposes[%d]: \"%s\" is given twice", i,
                               it->valuestring);
        snprintf(d->purposes[i], sizeof d->purposes[i], "%s", it->valuestring);
    }
    d->npurposes = i;
    return EG_OK;
}

static void directive_init(struct eg_directive *d)
{
    memset(d, 0, sizeof *d);
    d->period_start = d->data_start = INT64_MIN;
    d->period_end = d->data_end = INT64_MAX;
}

eg_err eg_directive_parse(const cJSON *root, const struct eg_grantee *g, int ng,
                          struct eg_directive *d, struct eg_error *e)
{
    const char *id, *action, *grantee;
    eg_err rc;
    int k;

    if (!d)
        return eg_fail(e, EG_E_INTERNAL, "eg_directive_parse: no output");
    directive_init(d);
    if (!cJSON_IsObject(root))
        return eg_fail(e, EG_E_SCHEMA, "directive: must be a JSON object");
    if (!(id = req_string(root, "consent_id", e)))
        return EG_E_SCHEMA;
    if (!eg_id_valid(id))
        return eg_fail(e, EG_E_SCHEMA, "consent_id: must be " ID_RULE);
    if (!(action = req_string(root, "action", e)))
        return EG_E_SCHEMA;
    if (strcmp(action, "grant") == 0) {
        d->grant = 1;
    } else if (strcmp(action, "revoke") != 0) {
        char txt[48];
        show(txt, sizeof txt, action, 32);
        return eg_fail(e, EG_E_SCHEMA, "action: \"%s\" must be \"grant\" or \"revoke\"", txt);
    }
    rc = d->grant
             ? check_members(root, grant_members, sizeof grant_members / sizeof grant_members[0],
                             "a grant", e)
             : check_members(root, revoke_members, sizeof revoke_members / sizeof revoke_members[0],
                             "a revoke (it takes consent_id, action, nonce, issued)", e);
    if (rc != EG_OK)
        goto fail;
    snprintf(d->consent_id, sizeof d->consent_id, "%s", id);
    if (!d->grant)
        return EG_OK;

    if (!(grantee = req_string(root, "grantee", e))) {
        rc = EG_E_SCHEMA;
        goto fail;
    }
    for (k = 0; k < ng; k++)
        if (g && strcmp(g[k].name, grantee) == 0)
            break;
    if (k >= ng) {
        char txt[80];
        show(txt, sizeof txt, grantee, 64);
        rc = eg_fail(e, EG_E_SCHEMA, "grantee: \"%s\" is not a configured grantee", txt);
        goto fail;
    }
    snprintf(d->grantee, sizeof d->grantee, "%s", grantee);
    if ((rc = parse_categories(root, d, e)) != EG_OK ||
        (rc = parse_purposes(root, d, e)) != EG_OK ||
        (rc = parse_period(root, "period", &d->period_start, &d->period_end, &d->has_period, e)) !=
            EG_OK ||
        (rc = parse_period(root, "data_period", &d->data_start, &d->data_end, &d->has_data_period,
                           e)) != EG_OK)
        goto fail;
    return EG_OK;
fail:
    directive_init(d);
    return rc;
}

/* ---- the FHIR R4 Consent ---------------------------------------------- */

/* Adds item to obj (or array when key is NULL); 0 and item freed on error. */
static int put(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!(key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item))) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int put_str(cJSON *obj, const char *key, const char *s)
{
    return put(obj, key, cJSON_CreateString(s));
}

static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();

    if (c && put_str(c, "system", system) && put_str(c, "code", code) &&
        (!display || put_str(c, "display", display)))
        return c;
    cJSON_Delete(c);
    return NULL;
}

/* {"coding":[coding]} */
static cJSON *concept(const char *system, const char *code, const char *display)
{
    cJSON *cc = cJSON_CreateObject(), *arr = cJSON_CreateArray();

    if (cc && put(cc, "coding", arr) && put(arr, NULL, coding(system, code, display)))
        return cc;
    if (!cc)
        cJSON_Delete(arr);
    cJSON_Delete(cc);
    return NULL;
}

/* [concept] */
static cJSON *concept_list(const char *system, const char *code, const char *display)
{
    cJSON *arr = cJSON_CreateArray();

    if (arr && put(arr, NULL, concept(system, code, display)))
        return arr;
    cJSON_Delete(arr);
    return NULL;
}

/* FHIR Period of inclusive bounds; unbounded sides are left out. */
static cJSON *period_json(int64_t start, int64_t end)
{
    cJSON *p = cJSON_CreateObject();
    char t[EG_TIME_STRLEN];

    if (!p)
        return NULL;
    if (start != INT64_MIN) {
        eg_time_format(start, t);
        if (!put_str(p, "start", t))
            goto oom;
    }
    if (end != INT64_MAX) {
        eg_time_format(end, t);
        if (!put_str(p, "end", t))
            goto oom;
    }
    return p;
oom:
    cJSON_Delete(p);
    return NULL;
}

static cJSON *actor_json(const char *grantee)
{
    cJSON *arr = cJSON_CreateArray(), *a = cJSON_CreateObject(), *ref = cJSON_CreateObject(),
          *ident = cJSON_CreateObject();
    int ok = arr && a && ref && ident;

    if (ok) {
        ok = put_str(ident, "system", SYS_GRANTEE) && put_str(ident, "value", grantee);
        ok = put(ref, "identifier", ident) && ok;
        ident = NULL;
        ok = ok && put_str(ref, "display", grantee);
        ok = put(a, "role", concept(SYS_PARTTYPE, "IRCP", "information recipient")) && ok;
        ok = put(a, "reference", ref) && ok;
        ref = NULL;
        ok = put(arr, NULL, a) && ok;
        a = NULL;
    }
    cJSON_Delete(ident);
    cJSON_Delete(ref);
    cJSON_Delete(a);
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

static cJSON *provision_json(const struct eg_directive *p)
{
    cJSON *prov = cJSON_CreateObject(), *arr;

    if (!prov || !put_str(prov, "type", "permit"))
        goto oom;
    if (p->has_period && !put(prov, "period", period_json(p->period_start, p->period_end)))
        goto oom;
    if (!put(prov, "actor", actor_json(p->grantee)) ||
        !put(prov, "action", concept_list(SYS_ACTION, "disclose", "Disclose")))
        goto oom;
    if (p->npurposes > 0) {
        if (!put(prov, "purpose", arr = cJSON_CreateArray()))
            goto oom;
        for (int i = 0; i < p->npurposes && i < PURPOSES_MAX; i++)
            if (!put(arr, NULL, coding(SYS_PURPOSE, p->purposes[i], NULL)))
                goto oom;
    }
    if (!put(prov, "class", arr = cJSON_CreateArray()) ||
        !put(arr, NULL, coding(SYS_RESTYPE, "Observation", "Observation")))
        goto oom;
    if (!put(prov, "code", arr = cJSON_CreateArray()))
        goto oom;
    for (int i = 0; i < EG_CAT_COUNT; i++)
        if ((p->categories & (1u << i)) &&
            !put(arr, NULL, concept(SYS_OBS_CAT, eg_consent_categories[i], cat_display[i])))
            goto oom;
    if (p->has_data_period && !put(prov, "dataPeriod", period_json(p->data_start, p->data_end)))
        goto oom;
    return prov;
oom:
    cJSON_Delete(prov);
    return NULL;
}

cJSON *eg_consent_resource(const struct eg_directive *d, const struct eg_directive *prev,
                           const char *patient_id, int64_t now_ms)
{
    const struct eg_directive *p = d && d->grant ? d : prev;
    cJSON *r = NULL, *arr, *obj;
    char buf[160], t[EG_TIME_STRLEN];

    if (!d || !patient_id)
        return NULL;
    if (!(r = cJSON_CreateObject()) || !put_str(r, "resourceType", "Consent"))
        goto oom;
    snprintf(buf, sizeof buf, "urn:ehrgate:consent:%s", patient_id);
    if (!put(r, "identifier", arr = cJSON_CreateArray()) ||
        !put(arr, NULL, obj = cJSON_CreateObject()) || !put_str(obj, "system", buf) ||
        !put_str(obj, "value", d->consent_id))
        goto oom;
    if (!put_str(r, "status", d->grant ? "active" : "inactive") ||
        !put(r, "scope", concept(SYS_SCOPE, "patient-privacy", "Privacy Consent")) ||
        !put(r, "category", concept_list("http://loinc.org", "59284-0", "Patient Consent")))
        goto oom;
    snprintf(buf, sizeof buf, "Patient/%s", patient_id);
    if (!put(r, "patient", obj = cJSON_CreateObject()) || !put_str(obj, "reference", buf))
        goto oom;
    eg_time_format(now_ms, t);
    if (!put_str(r, "dateTime", t) ||
        !put(r, "policyRule", concept(SYS_ACTCODE, "OPTIN", "opt-in")))
        goto oom;
    if (p && !put(r, "provision", provision_json(p)))
        goto oom;
    return r;
oom:
    cJSON_Delete(r);
    return NULL;
}

/* ---- the consents table ----------------------------------------------- */

static void bind_bound(sqlite3_stmt *s, int i, int64_t v, int64_t unbounded)
{
    if (v == unbounded)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int64(s, i, v);
}

/* JSON array text of the category bitmask (SPEC §13 order) / the purposes
 * (NULL when absent). malloc'ed; NULL on OOM. */
static char *categories_text(unsigned cats)
{
    const char *v[EG_CAT_COUNT];
    int n = 0;
    cJSON *a;
    char *s;

    for (int i = 0; i < EG_CAT_COUNT; i++)
        if (cats & (1u << i))
            v[n++] = eg_consent_categories[i];
    a = cJSON_CreateStringArray(v, n);
    s = a ? egjson_print(a, NULL) : NULL;
    cJSON_Delete(a);
    return s;
}

static char *purposes_text(const struct eg_directive *d)
{
    const char *v[PURPOSES_MAX];
    cJSON *a;
    char *s;

    for (int i = 0; i < d->npurposes; i++)
        v[i] = d->purposes[i];
    a = cJSON_CreateStringArray(v, d->npurposes);
    s = a ? egjson_print(a, NULL) : NULL;
    cJSON_Delete(a);
    return s;
}

static int directive_ok(const struct eg_directive *d)
{
    if (!eg_id_valid(d->consent_id))
        return 0;
    if (!d->grant)
        return 1;
    if (!eg_id_valid(d->grantee) || d->categories == 0 || d->categories >= (1u << EG_CAT_COUNT) ||
        d->npurposes < 0 || d->npurposes > PURPOSES_MAX || d->period_start > d->period_end ||
        d->data_start > d->data_end)
        return 0;
    for (int i = 0; i < d->npurposes; i++)
        if (!eg_id_valid(d->purposes[i]))
            return 0;
    return 1;
}

eg_err eg_consent_apply(struct eg_store *st, const char *patient, const struct eg_directive *d,
                        uint64_t seq, int64_t now_ms)
{
    sqlite3_stmt *s;
    char *cats = NULL, *purps = NULL;
    eg_err rc = EG_OK;
    int src;

    if (!st || !patient || !d || !directive_ok(d) || seq > (uint64_t)INT64_MAX)
        return EG_E_USAGE;
    if (!d->grant) {
        s = eg_store_stmt(st, "UPDATE consents SET active = 0, seq = ?3, updated_at = ?4"
                              " WHERE patient_id = ?1 AND consent_id = ?2 AND active = 1");
        if (!s)
            return EG_E_DB;
        sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, d->consent_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)seq);
        sqlite3_bind_int64(s, 4, now_ms);
        src = sqlite3_step(s);
        sqlite3_reset(s);
        if (src != SQLITE_DONE) {
            log_msg(EG_LOG_ERROR, "consent revoke %s/%s: %s", patient, d->consent_id,
                    sqlite3_errmsg(eg_store_db(st)));
            return eg_store_err(src);
        }
        return sqlite3_changes(eg_store_db(st)) == 0 ? EG_E_NOT_FOUND : EG_OK;
    }

    cats = categories_text(d->categories);
    purps = d->npurposes > 0 ? purposes_text(d) : NULL;
    if (!cats || (d->npurposes > 0 && !purps)) {
        rc = EG_E_NOMEM;
        goto out;
    }
    s = eg_store_stmt(st,
                      "INSERT INTO consents(patient_id, consent_id, grantee, categories,"
                      " purposes, period_start, period_end, data_start, data_end, active,"
                      " seq, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?11)"
                      " ON CONFLICT(patient_id, consent_id) DO UPDATE SET"
                      " grantee = excluded.grantee, categories = excluded.categories,"
                      " purposes = excluded.purposes, period_start = excluded.period_start,"
                      " period_end = excluded.period_end, data_start = excluded.data_start,"
                      " data_end = excluded.data_end, active = 1, seq = excluded.seq,"
                      " updated_at = excluded.updated_at");
    if (!s) {
        rc = EG_E_DB;
        goto out;
    }
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, d->consent_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, d->grantee, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, cats, -1, SQLITE_STATIC);
    if (purps)
        sqlite3_bind_text(s, 5, purps, -1, SQLITE_STATIC);
    bind_bound(s, 6, d->period_start, INT64_MIN);
    bind_bound(s, 7, d->period_end, INT64_MAX);
    bind_bound(s, 8, d->data_start, INT64_MIN);
    bind_bound(s, 9, d->data_end, INT64_MAX);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)seq);
    sqlite3_bind_int64(s, 11, now_ms);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE) {
        log_msg(EG_LOG_ERROR, "consent grant %s/%s: %s", patient, d->consent_id,
                sqlite3_errmsg(eg_store_db(st)));
        rc = eg_store_err(src);
        if (rc == EG_OK)
            rc = EG_E_DB;
    }
out:
    free(cats);
    free(purps);
    return rc;
}

/* Fills d (a grant) from columns first.. of s: grantee, categories,
 * purposes, period_start, period_end, data_start, data_end. EG_E_DB when
 * the stored row is not what eg_consent_apply writes. */
static eg_err row_to_directive(sqlite3_stmt *s, int first, struct eg_directive *d)
{
    const char *grantee = (const char *)sqlite3_column_text(s, first);
    const char *cats = (const char *)sqlite3_column_text(s, first + 1);
    const char *purps = (const char *)sqlite3_column_text(s, first + 2);
    cJSON *a = NULL;
    eg_err rc = EG_E_DB;
    int i;

    d->grant = 1;
    if (!grantee || !eg_id_valid(grantee) || !cats)
        goto out;
    snprintf(d->grantee, sizeof d->grantee, "%s", grantee);
    if (!(a = cJSON_Parse(cats)) || !cJSON_IsArray(a))
        goto out;
    for (const cJSON *it = a->child; it; it = it->next) {
        int k = cJSON_IsString(it) ? cat_index(it->valuestring) : -1;
        if (k < 0)
            goto out;
        d->categories |= 1u << k;
    }
    if (d->categories == 0)
        goto out;
    cJSON_Delete(a);
    a = NULL;
    if (purps) {
        if (!(a = cJSON_Parse(purps)) || !cJSON_IsArray(a))
            goto out;
        i = 0;
        for (const cJSON *it = a->child; it; it = it->next, i++) {
            if (i >= PURPOSES_MAX || !cJSON_IsString(it) || !eg_id_valid(it->valuestring))
                goto out;
            snprintf(d->purposes[i], sizeof d->purposes[i], "%s", it->valuestring);
        }
        if (i == 0)
            goto out;
        d->npurposes = i;
    }
    if (sqlite3_column_type(s, first + 3) != SQLITE_NULL)
        d->period_start = sqlite3_column_int64(s, first + 3);
    if (sqlite3_column_type(s, first + 4) != SQLITE_NULL)
        d->period_end = sqlite3_column_int64(s, first + 4);
    if (sqlite3_column_type(s, first + 5) != SQLITE_NULL)
        d->data_start = sqlite3_column_int64(s, first + 5);
    if (sqlite3_column_type(s, first + 6) != SQLITE_NULL)
        d->data_end = sqlite3_column_int64(s, first + 6);
    d->has_period = d->period_start != INT64_MIN || d->period_end != INT64_MAX;
    d->has_data_period = d->data_start != INT64_MIN || d->data_end != INT64_MAX;
    rc = EG_OK;
out:
    cJSON_Delete(a);
    return rc;
}

eg_err eg_consent_lookup(struct eg_store *st, const char *patient, const char *consent_id,
                         struct eg_directive *d)
{
    sqlite3_stmt *s;
    eg_err rc;
    int src;

    if (!st || !patient || !consent_id || !d)
        return EG_E_USAGE;
    directive_init(d);
    s = eg_store_stmt(st, "SELECT grantee, categories, purposes, period_start, period_end,"
                          " data_start, data_end FROM consents"
                          " WHERE patient_id = ?1 AND consent_id = ?2 AND active = 1");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, consent_id, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        snprintf(d->consent_id, sizeof d->consent_id, "%s", consent_id);
        rc = row_to_directive(s, 0, d);
        if (rc != EG_OK) {
            log_msg(EG_LOG_ERROR, "consent %s/%s: stored row is malformed", patient, consent_id);
            directive_init(d);
        }
    } else {
        rc = src == SQLITE_DONE ? EG_E_NOT_FOUND : eg_store_err(src);
        if (rc == EG_OK)
            rc = EG_E_DB;
    }
    sqlite3_reset(s);
    return rc;
}

int eg_consent_permits(struct eg_store *st, const char *patient, const struct eg_grantee *g,
                       const char *category, int64_t commit_ms, int64_t effective_ms)
{
    sqlite3_stmt *s;
    char cat[24], purpose[72];
    int src;

    if (!st || !patient || !g || !category || cat_index(category) < 0)
        return 0; /* "unknown" and anything no grant can name: deny */
    snprintf(cat, sizeof cat, "\"%s\"", category);
    s = eg_store_stmt(st, "SELECT 1 FROM consents INDEXED BY consents_active"
                          " WHERE patient_id = ?1 AND grantee = ?2 AND active = 1"
                          " AND instr(categories, ?3) > 0"
                          " AND (purposes IS NULL OR instr(purposes, ?4) > 0)"
                          " AND (period_start IS NULL OR period_start <= ?5)"
                          " AND (period_end IS NULL OR period_end >= ?5)"
                          " AND (data_start IS NULL OR data_start <= ?6)"
                          " AND (data_end IS NULL OR data_end >= ?6) LIMIT 1");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, g->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, cat, -1, SQLITE_STATIC);
    /* a purpose outside the id alphabet can only meet grants without purposes */
    if (eg_id_valid(g->purpose)) {
        snprintf(purpose, sizeof purpose, "\"%s\"", g->purpose);
        sqlite3_bind_text(s, 4, purpose, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(s, 5, commit_ms);
    sqlite3_bind_int64(s, 6, effective_ms);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src == SQLITE_ROW)
        return 1;
    if (src == SQLITE_DONE)
        return 0;
    log_msg(EG_LOG_ERROR, "consent policy for %s/%s: %s", patient, g->name,
            sqlite3_errmsg(eg_store_db(st)));
    return -1;
}

/* {"consent_id","grantee","categories","purposes"?,"period"?,"data_period"?} */
static cJSON *grant_json(const struct eg_directive *d)
{
    cJSON *o = cJSON_CreateObject(), *arr;

    if (!o || !put_str(o, "consent_id", d->consent_id) || !put_str(o, "grantee", d->grantee) ||
        !put(o, "categories", arr = cJSON_CreateArray()))
        goto oom;
    for (int i = 0; i < EG_CAT_COUNT; i++)
        if ((d->categories & (1u << i)) && !put_str(arr, NULL, eg_consent_categories[i]))
            goto oom;
    if (d->npurposes > 0) {
        if (!put(o, "purposes", arr = cJSON_CreateArray()))
            goto oom;
        for (int i = 0; i < d->npurposes; i++)
            if (!put_str(arr, NULL, d->purposes[i]))
                goto oom;
    }
    if (d->has_period && !put(o, "period", period_json(d->period_start, d->period_end)))
        goto oom;
    if (d->has_data_period && !put(o, "data_period", period_json(d->data_start, d->data_end)))
        goto oom;
    return o;
oom:
    cJSON_Delete(o);
    return NULL;
}

eg_err eg_consent_list(struct eg_store *st, const char *patient, int64_t now_ms, cJSON **out)
{
    sqlite3_stmt *s;
    cJSON *arr = NULL;
    eg_err rc = EG_OK;
    int src;

    if (!out)
        return EG_E_USAGE;
    *out = NULL;
    if (!st || !patient)
        return EG_E_USAGE;
    s = eg_store_stmt(st, "SELECT consent_id, grantee, categories, purposes, period_start,"
                          " period_end, data_start, data_end FROM consents"
                          " WHERE patient_id = ?1 AND active = 1"
                          " AND (period_start IS NULL OR period_start <= ?2)"
                          " AND (period_end IS NULL OR period_end >= ?2)"
                          " ORDER BY consent_id");
    if (!s)
        return EG_E_DB;
    if (!(arr = cJSON_CreateArray()))
        return EG_E_NOMEM;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        struct eg_directive d;
        const char *id = (const char *)sqlite3_column_text(s, 0);

        directive_init(&d);
        if (!id || !eg_id_valid(id) || row_to_directive(s, 1, &d) != EG_OK) {
            log_msg(EG_LOG_ERROR, "consent %s/%s: stored row is malformed", patient,
                    id && eg_id_valid(id) ? id : "?");
            rc = EG_E_DB;
            goto out;
        }
        snprintf(d.consent_id, sizeof d.consent_id, "%s", id);
        if (!put(arr, NULL, grant_json(&d))) {
            rc = EG_E_NOMEM;
            goto out;
        }
    }
    if (src != SQLITE_DONE) {
        rc = eg_store_err(src);
        if (rc == EG_OK)
            rc = EG_E_DB;
    }
out:
    sqlite3_reset(s);
    if (rc != EG_OK) {
        cJSON_Delete(arr);
        return rc;
    }
    *out = arr;
    return EG_OK;
}

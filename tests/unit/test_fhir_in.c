/*
 * test_fhir_in.c — CUnit tests of gateway/eg_fhir_in.c: FHIR R4 JSON input
 * from hospitals (SPEC §5, §13) and the eg_hospital.h helpers
 * (eg_hmsg_clear, eg_hobs_set_subject).
 *
 * Most cases are fixtures under tests/fixtures/fhir_in/ listed in
 * cases.txt: good payloads with the exact expected compact Observations and
 * eg_hobs fields (X.expected next to X.json, written by hand), broken
 * payloads with their wire code, message id and a detail substring. The
 * rest checks the helpers, limits, all-or-nothing, that §4 readings come out
 * exactly as the device path builds them, and that the validated samples in
 * tests/fixtures/fhir/sample_hospital_*.json are what the parser makes.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_fhir_in.h"
#include "eg_hospital.h"
#include "eg_json.h"
#include "eg_readings.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "eg_testutil.h"

#define FIXDIR EG_FIXTURES "/fhir_in/"
#define SAMPLEDIR EG_FIXTURES "/fhir/"
#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define MAX_CASES 256

static const struct eg_hosp_ctx CTX = {"H1", 0, NOW_MS};

/* Checks got == want; on a mismatch reports where, with some context. */
static void expect_same(const char *what, size_t k, const char *got, const char *want)
{
    size_t at = 0, from;

    if (!got) {
        CHECKF(0, "%s[%zu]: no output", what, k);
        return;
    }
    while (got[at] && got[at] == want[at])
        at++;
    from = at > 50 ? at - 50 : 0;
    CHECKF(got[at] == want[at], "%s[%zu]: differs at byte %zu:\n got  ...%.120s\n want ...%.120s",
           what, k, at, got + from, want + from);
}

/* Parses file (under FIXDIR) strictly and runs eg_fhir_in_parse into h. */
static eg_err run_file(const char *dir, const char *file, struct eg_hmsg *h, struct eg_error *e)
{
    char path[512], *payload;
    cJSON *root = NULL;
    size_t len = 0;
    eg_err rc;

    snprintf(path, sizeof path, "%s%s", dir, file);
    payload = read_file(path, &len);
    if (!payload)
        return eg_fail(e, EG_E_IO, "%s: cannot read", path);
    rc = egjson_parse((const uint8_t *)payload, len, &root, e);
    free(payload);
    if (rc == EG_OK)
        rc = eg_fhir_in_parse(root, &CTX, h, e);
    /* the Observations own their strings: the tree can go */
    cJSON_Delete(root);
    return rc;
}

/* Parses text (a small Observation) with a given hospital id. */
static eg_err run_text(const char *text, const struct eg_hosp_ctx *ctx, struct eg_hmsg *h,
                       struct eg_error *e)
{
    cJSON *root = NULL;
    eg_err rc = egjson_parse((const uint8_t *)text, strlen(text), &root, e);

    if (rc == EG_OK)
        rc = eg_fhir_in_parse(root, ctx, h, e);
    cJSON_Delete(root);
    return rc;
}

struct fcase {
    char file[96];
    char expect[32];
    char msg_id[256];
    char detail[256];
};

static struct fcase cases[MAX_CASES];
static size_t ncases;

/* Copies field [s, s+n) trimmed of spaces into dst[cap]. */
static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Loads cases.txt: "file | ok-or-code | msg_id | note-or-detail". */
static int load_cases(void)
{
    char *text = read_file(FIXDIR "cases.txt", NULL), *line, *save = NULL;

    if (!text)
        return -1;
    ncases = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *f[4] = {line, NULL, NULL, NULL};
        size_t len[4];
        struct fcase *c;
        int k;

        if (line[0] == '#' || line[0] == '\0' || ncases == MAX_CASES)
            continue;
        for (k = 1; k < 4; k++) {
            const char *bar = strstr(f[k - 1], " | ");
            if (!bar)
                break;
            f[k] = bar + 3;
        }
        for (k = 0; k < 4; k++) {
            if (!f[k]) {
                len[k] = 0;
                continue;
            }
            len[k] = (k < 3 && f[k + 1]) ? (size_t)(f[k + 1] - 3 - f[k]) : strlen(f[k]);
        }
        c = &cases[ncases++];
        copy_field(c->file, sizeof c->file, f[0], len[0]);
        copy_field(c->expect, sizeof c->expect, f[1] ? f[1] : "", len[1]);
        copy_field(c->msg_id, sizeof c->msg_id, f[2] ? f[2] : "", len[2]);
        copy_field(c->detail, sizeof c->detail, f[3] ? f[3] : "", len[3]);
    }
    free(text);
    return 0;
}

static void test_fixture_cases_loaded(void)
{
    size_t good = 0, bad = 0, i;

    CU_ASSERT_EQUAL_FATAL(load_cases(), 0);
    for (i = 0; i < ncases; i++) {
        if (strcmp(cases[i].expect, "ok") == 0)
            good++;
        else
            bad++;
    }
    CHECKF(good >= 10 && bad >= 80, "cases.txt: %zu good, %zu bad cases", good, bad);
}

/* Checks the "# category=C patient=P ident=I effective=T" line against ob. */
static void check_hobs(const char *file, size_t k, const char *line, const struct eg_hobs *ob)
{
    char cat[64], pat[80], ident[160], eff[40], got_eff[EG_TIME_STRLEN];

    if (sscanf(line, "# category=%63s patient=%79s ident=%159s effective=%39s", cat, pat, ident,
               eff) != 4) {
        CHECKF(0, "%s[%zu]: bad meta line %s", file, k, line);
        return;
    }
    eg_time_format(ob->effective_ms, got_eff);
    CHECKF(strcmp(ob->category, cat) == 0, "%s[%zu]: category %s, want %s", file, k, ob->category,
           cat);
    CHECKF(strcmp(ob->patient_id, strcmp(pat, "-") ? pat : "") == 0,
           "%s[%zu]: patient_id %s, want %s", file, k, ob->patient_id, pat);
    if (strcmp(ident, "-") == 0) {
        CHECKF(ob->nidents == 0, "%s[%zu]: %d idents, want none", file, k, ob->nidents);
    } else {
        CHECKF(ob->nidents == 1 && strcmp(ob->idents[0], ident) == 0,
               "%s[%zu]: idents[0] %s, want %s", file, k, ob->nidents ? ob->idents[0] : "(none)",
               ident);
    }
    CHECKF(strcmp(got_eff, eff) == 0, "%s[%zu]: effective %s, want %s", file, k, got_eff, eff);
}

static void test_fixtures_good(void)
{
    size_t i;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        char path[512], *expected, *line, *save = NULL;
        size_t k = 0;
        eg_err rc;

        if (strcmp(c->expect, "ok") != 0)
            continue;
        memset(&h, 0, sizeof h);
        snprintf(path, sizeof path, FIXDIR "%.*s.expected", (int)(strlen(c->file) - 5), c->file);
        expected = read_file(path, NULL);
        CHECKF(expected != NULL, "%s: cannot read", path);
        if (!expected)
            continue;
        rc = run_file(FIXDIR, c->file, &h, &e);
        CHECKF(rc == EG_OK, "%s: expected ok, got %s: %s", c->file, eg_wire_code(rc), e.detail);
        CHECKF(h.have_msg_id && strcmp(h.msg_id, c->msg_id) == 0, "%s: msg_id \"%s\", want %s",
               c->file, h.msg_id, c->msg_id);
        for (line = strtok_r(expected, "\n", &save); rc == EG_OK && line;
             line = strtok_r(NULL, "\n", &save), k++) {
            char *got, *json = strtok_r(NULL, "\n", &save);

            CHECKF(k < h.n, "%s: only %zu Observations, expected more", c->file, h.n);
            if (k >= h.n || !json)
                break;
            check_hobs(c->file, k, line, &h.obs[k]);
            got = egjson_print(h.obs[k].resource, NULL);
            expect_same(c->file, k, got, json);
            CHECKF(cJSON_GetObjectItemCaseSensitive(h.obs[k].resource, "subject") == NULL,
                   "%s[%zu]: subject present", c->file, k);
            free(got);
        }
        CHECKF(rc != EG_OK || k == h.n, "%s: %zu Observations, expected %zu", c->file, h.n, k);
        eg_hmsg_clear(&h);
        free(expected);
    }
}

static void test_fixtures_bad(void)
{
    size_t i;

    for (i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        eg_err rc;

        if (strcmp(c->expect, "ok") == 0)
            continue;
        memset(&h, 0, sizeof h);
        rc = run_file(FIXDIR, c->file, &h, &e);
        CHECKF(rc != EG_OK && strcmp(eg_wire_code(rc), c->expect) == 0,
               "%s: expected %s, got %s: %s", c->file, c->expect, eg_wire_code(rc), e.detail);
        CHECKF(rc == EG_OK || strstr(e.detail, c->detail) != NULL, "%s: detail \"%s\" lacks \"%s\"",
               c->file, e.detail, c->detail);
        if (strcmp(c->msg_id, "-") == 0) {
            CHECKF(!h.have_msg_id && h.msg_id[0] == '\0', "%s: msg_id \"%s\" set", c->file,
                   h.msg_id);
        } else {
            CHECKF(h.have_msg_id && strcmp(h.msg_id, c->msg_id) == 0, "%s: msg_id \"%s\", want %s",
                   c->file, h.msg_id, c->msg_id);
        }
        CHECKF(h.n == 0 && h.obs == NULL, "%s: %zu observations left after a rejection", c->file,
               h.n);
        eg_hmsg_clear(&h);
    }
}

/* The key names of obj in order, comma-separated, into buf. */
static const char *keys_of(const cJSON *obj, char *buf, size_t n)
{
    const cJSON *it;
    size_t off = 0;

    buf[0] = '\0';
    cJSON_ArrayForEach(it, obj)
    {
        int w = snprintf(buf + off, n - off, "%s%s", off ? "," : "", it->string);
        if (w < 0 || (size_t)w >= n - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

/* A Bundle "big{n}" of n heart-rate Observations (malloc'ed text). */
static char *big_bundle(size_t n)
{
    static const char obs[] =
        "{\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{"
        "\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"}]},\"subject\":{"
        "\"reference\":\"Patient/P001\"},\"effectiveDateTime\":\"2026-11-24T06:00:00Z\","
        "\"valueQuantity\":{\"value\":60}}}";
    size_t cap = 128 + n * sizeof obs, off, i;
    char *text = malloc(cap);

    if (!text)
        return NULL;
    off = (size_t)snprintf(text, cap,
                           "{\"resourceType\":\"Bundle\",\"id\":\"big%zu\",\"type\":\"batch\","
                           "\"entry\":[",
                           n);
    for (i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, cap - off, "%s%s", i ? "," : "", obs);
    snprintf(text + off, cap - off, "]}");
    return text;
}

static void test_bundle_max(void)
{
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    const cJSON *ids;
    char *text;
    eg_err rc;

    memset(&h, 0, sizeof h);
    text = big_bundle(EG_HOSP_MAX_OBS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    rc = run_text(text, &CTX, &h, &e);
    free(text);
    CHECKF(rc == EG_OK, "512 entries: %s: %s", eg_wire_code(rc), e.detail);
    CU_ASSERT_EQUAL(h.n, EG_HOSP_MAX_OBS);
    if (rc == EG_OK && h.n == EG_HOSP_MAX_OBS) {
        ids = cJSON_GetObjectItemCaseSensitive(h.obs[511].resource, "identifier");
        CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(ids, 0), "value"), "H1/big512/511");
        CU_ASSERT_EQUAL(cJSON_GetArraySize(ids), 1);
    }
    text = big_bundle(EG_HOSP_MAX_OBS + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    rc = run_text(text, &CTX, &h, &e);
    free(text);
    CU_ASSERT_EQUAL(rc, EG_E_SCHEMA);
    CU_ASSERT_STRING_EQUAL(e.detail, "entry: must hold 1..512 Observations, got 513");
    CU_ASSERT_STRING_EQUAL(h.msg_id, "big513");
    CU_ASSERT_EQUAL(h.n, 0);
    eg_hmsg_clear(&h);
}

static void test_set_subject(void)
{
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    struct eg_hobs bare;
    char keys[512];
    const cJSON *s;
    eg_err rc;

    memset(&h, 0, sizeof h);
    rc = run_file(FIXDIR, "good_single_hr.json", &h, &e);
    CU_ASSERT_EQUAL_FATAL(rc, EG_OK);
    CU_ASSERT_EQUAL_FATAL(h.n, 1);
    CU_ASSERT_EQUAL(eg_hobs_set_subject(&h.obs[0], "P001"), 0);
    CU_ASSERT_STRING_EQUAL(keys_of(h.obs[0].resource, keys, sizeof keys),
                           "resourceType,meta,identifier,status,category,code,subject,"
                           "effectiveDateTime,issued,interpretation,note,bodySite,method,"
                           "valueQuantity");
    /* again: replaced, still right after code, only once */
    CU_ASSERT_EQUAL(eg_hobs_set_subject(&h.obs[0], "P-2.x_y"), 0);
    CU_ASSERT_STRING_EQUAL(keys_of(h.obs[0].resource, keys, sizeof keys),
                           "resourceType,meta,identifier,status,category,code,subject,"
                           "effectiveDateTime,issued,interpretation,note,bodySite,method,"
                           "valueQuantity");
    s = cJSON_GetObjectItemCaseSensitive(h.obs[0].resource, "subject");
    CU_ASSERT_STRING_EQUAL(egjson_str(s, "reference"), "Patient/P-2.x_y");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(s), 1);
    eg_hmsg_clear(&h);

    /* code last; an existing subject elsewhere; no code at all */
    memset(&bare, 0, sizeof bare);
    bare.resource =
        cJSON_Parse("{\"subject\":{\"display\":\"x\"},\"status\":\"final\",\"code\":{}}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bare.resource);
    CU_ASSERT_EQUAL(eg_hobs_set_subject(&bare, "P9"), 0);
    CU_ASSERT_STRING_EQUAL(keys_of(bare.resource, keys, sizeof keys), "status,code,subject");
    {
        char *txt = egjson_print(bare.resource, NULL);
        CU_ASSERT_STRING_EQUAL(txt, "{\"status\":\"final\",\"code\":{},\"subject\":{\"reference\":"
                                    "\"Patient/P9\"}}");
        free(txt);
    }
    cJSON_Delete(bare.resource);
    bare.resource = cJSON_Parse("{\"status\":\"final\"}");
    CU_ASSERT_EQUAL(eg_hobs_set_subject(&bare, "P9"), 0);
    CU_ASSERT_STRING_EQUAL(keys_of(bare.resource, keys, sizeof keys), "status,subject");
    cJSON_Delete(bare.resource);
    bare.resource = NULL;
    CU_ASSERT_EQUAL(eg_hobs_set_subject(&bare, "P9"), -1);
    CU_ASSERT_EQUAL(eg_hobs_set_subject(NULL, "P9"), -1);
}

static void test_hmsg_clear(void)
{
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};

    memset(&h, 0, sizeof h);
    eg_hmsg_clear(&h); /* empty: fine */
    eg_hmsg_clear(NULL);
    CU_ASSERT_EQUAL(run_file(FIXDIR, "good_bundle_collection.json", &h, &e), EG_OK);
    CU_ASSERT_EQUAL(h.n, 5);
    /* parsing again into the same h frees the old observations (ASan) */
    CU_ASSERT_EQUAL(run_file(FIXDIR, "good_bundle_transaction.json", &h, &e), EG_OK);
    CU_ASSERT_EQUAL(h.n, 3);
    CU_ASSERT_STRING_EQUAL(h.msg_id, "MSG-0001");
    /* and a rejection after a success leaves nothing, with the new id */
    CU_ASSERT_EQUAL(run_file(FIXDIR, "bad_bundle_last_range.json", &h, &e), EG_E_RANGE);
    CU_ASSERT_EQUAL(h.n, 0);
    CU_ASSERT_PTR_NULL(h.obs);
    CU_ASSERT_STRING_EQUAL(h.msg_id, "coll-7");
    CU_ASSERT_EQUAL(run_file(FIXDIR, "bad_no_id.json", &h, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(h.have_msg_id, 0);
    CU_ASSERT_STRING_EQUAL(h.msg_id, "");
    CU_ASSERT_EQUAL(run_file(FIXDIR, "good_period.json", &h, &e), EG_OK);
    eg_hmsg_clear(&h);
    CU_ASSERT_EQUAL(h.n, 0);
    CU_ASSERT_PTR_NULL(h.obs);
    eg_hmsg_clear(&h); /* twice: fine */
}

static void test_bad_arguments(void)
{
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    struct eg_hosp_ctx bad = {"H 1", 0, NOW_MS};
    cJSON *root = cJSON_Parse("{\"resourceType\":\"Observation\",\"id\":\"x\"}");

    memset(&h, 0, sizeof h);
    CU_ASSERT_EQUAL(eg_fhir_in_parse(root, &bad, &h, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_fhir_in_parse(root, NULL, &h, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_fhir_in_parse(root, &CTX, NULL, &e), EG_E_INTERNAL);
    CU_ASSERT_EQUAL(eg_fhir_in_parse(NULL, &CTX, &h, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_fhir_in_parse(root, &CTX, &h, NULL), EG_E_SCHEMA); /* e may be NULL */
    CU_ASSERT_EQUAL(h.n, 0);
    cJSON_Delete(root);
}

static void test_msg_id_limits(void)
{
    static const char head[] = "{\"resourceType\":\"Bundle\",\"identifier\":{\"value\":\"";
    static const char tail[] =
        "\"},\"type\":\"batch\",\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
        "\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":"
        "\"8867-4\"}]},\"subject\":{\"reference\":\"Patient/P1\"},\"effectiveDateTime\":"
        "\"2026-11-24T06:00:00Z\",\"valueQuantity\":{\"value\":60}}}]}";
    char text[1024], id[256];
    struct eg_hosp_ctx ctx64 = {"HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH",
                                0, NOW_MS};
    struct eg_hmsg h;
    struct eg_error e = {EG_OK, ""};
    const cJSON *ids;

    memset(&h, 0, sizeof h);
    /* 199 bytes (any characters, this is not a FHIR id): ok */
    memset(id, 'm', 199);
    id[0] = '/';
    id[199] = '\0';
    snprintf(text, sizeof text, "%s%s%s", head, id, tail);
    CU_ASSERT_EQUAL(run_text(text, &ctx64, &h, &e), EG_OK);
    CU_ASSERT_EQUAL(strlen(h.msg_id), 199);
    if (h.n == 1) {
        char want[300];

        snprintf(want, sizeof want, "%s/%s/0", ctx64.hospital_id, id);
        ids = cJSON_GetObjectItemCaseSensitive(h.obs[0].resource, "identifier");
        CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(ids, 0), "value"), want);
        CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(ids, 0), "system"),
                               "urn:ehrgate:hospital:HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH"
                               "HHHHHHHHHHHHHHHHHHH");
    }
    /* 200 bytes: schema, no id */
    memset(id, 'm', 200);
    id[200] = '\0';
    snprintf(text, sizeof text, "%s%s%s", head, id, tail);
    CU_ASSERT_EQUAL(run_text(text, &CTX, &h, &e), EG_E_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "identifier.value: longer than 199 bytes"));
    CU_ASSERT_EQUAL(h.have_msg_id, 0);
    /* empty: schema */
    snprintf(text, sizeof text, "%s%s", head, tail);
    CU_ASSERT_EQUAL(run_text(text, &CTX, &h, &e), EG_E_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "identifier.value: must not be empty"));
    eg_hmsg_clear(&h);
}

/* Small Observations for the shape errors the fixtures do not cover. */
#define OBS(members) "{\"resourceType\":\"Observation\",\"id\":\"t1\"," members "}"
#define ST "\"status\":\"final\""
#define HR "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"}]}"
#define LAB "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"718-7\"}]}"
#define BP "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"85354-9\"}]}"
#define SUBJ "\"subject\":{\"reference\":\"Patient/P1\"}"
#define EFF "\"effectiveDateTime\":\"2026-11-24T06:00:00Z\""
#define VQ "\"valueQuantity\":{\"value\":60}"
#define SYS_C "{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]}"
static const struct {
    const char *json;
    eg_err code;
    const char *detail;
} shapes[] = {
    {OBS(ST "," HR "," SUBJ "," EFF "," VQ), EG_OK, ""},
    {OBS(ST ",\"code\":[]," SUBJ "," EFF "," VQ), EG_E_SCHEMA, "code: must be a CodeableConcept"},
    {OBS(ST ",\"code\":{\"text\":\"\",\"coding\":[]}," SUBJ "," EFF "," VQ), EG_E_SCHEMA,
     "code.text: must be a non-empty string"},
    {OBS(ST ",\"code\":{\"coding\":[1]}," SUBJ "," EFF "," VQ), EG_E_SCHEMA,
     "code.coding[0]: must be a Coding object"},
    {OBS(ST ",\"code\":{\"coding\":[{\"system\":\"\",\"code\":\"x\"}]}," SUBJ "," EFF "," VQ),
     EG_E_SCHEMA, "code.coding[0].system: must be a non-empty string"},
    {OBS(ST ",\"code\":{\"coding\":[{\"system\":\"s\",\"code\":5}]}," SUBJ "," EFF "," VQ),
     EG_E_SCHEMA, "code.coding[0].code: must be a non-empty string"},
    {OBS(ST ",\"code\":{\"coding\":[{\"system\":\"s\",\"code\":\"x\",\"display\":null}]}," SUBJ
            "," EFF "," VQ),
     EG_E_SCHEMA, "code.coding[0].display: must be a non-empty string"},
    {OBS(ST "," HR ",\"subject\":\"Patient/P1\"," EFF "," VQ), EG_E_SCHEMA,
     "subject: must be a Reference object"},
    {OBS(ST "," HR ",\"subject\":{\"identifier\":\"MRN1\"}," EFF "," VQ), EG_E_SCHEMA,
     "subject.identifier: must be an Identifier object"},
    {OBS(ST "," HR ",\"subject\":{\"identifier\":{\"system\":\"x\"}}," EFF "," VQ), EG_E_SCHEMA,
     "subject.identifier.value: required"},
    {OBS(ST "," HR ",\"subject\":{\"reference\":\"Patient/\"}," EFF "," VQ), EG_E_SCHEMA,
     "subject.reference: must be Patient/{id}"},
    {OBS(ST "," HR "," SUBJ ",\"effectiveDateTime\":20261124," VQ), EG_E_SCHEMA,
     "effectiveDateTime: must be a string"},
    {OBS(ST "," HR "," SUBJ ",\"effectiveDateTime\":\"2026-11-24T06:00:00+14:30\"," VQ),
     EG_E_SCHEMA, "is not a FHIR dateTime"},
    {OBS(ST "," HR "," SUBJ ",\"effectiveDateTime\":\"0000-01-01T00:00:00Z\"," VQ), EG_E_SCHEMA,
     "is not a FHIR dateTime"},
    {OBS(ST "," HR "," SUBJ ",\"effectiveDateTime\":\"2026-02-29\"," VQ), EG_E_SCHEMA,
     "is not a FHIR dateTime"},
    {OBS(ST "," HR "," SUBJ ",\"effectiveDateTime\":\"2026-11-23T06:00:00-14:00\"," VQ), EG_OK, ""},
    {OBS(ST "," HR "," SUBJ ",\"effectivePeriod\":[]," VQ), EG_E_SCHEMA,
     "effectivePeriod: must be a Period object"},
    {OBS(ST "," HR "," SUBJ ",\"effectivePeriod\":{\"start\":\"2026-11-24\",\"mid\":1}," VQ),
     EG_E_SCHEMA, "effectivePeriod: \"mid\" is not a member of Period"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"identifier\":{}," VQ), EG_E_SCHEMA,
     "identifier: must be an array"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"identifier\":[[]]," VQ), EG_E_SCHEMA,
     "identifier[0]: must be an object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"identifier\":[{\"value\":\"\"}]," VQ), EG_E_SCHEMA,
     "identifier[0].value: must be a non-empty string"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"identifier\":[{\"value\":\"a\",\"system\":1}]," VQ),
     EG_E_SCHEMA, "identifier[0].system: must be a non-empty string"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"category\":[1]," VQ), EG_E_SCHEMA,
     "category[0]: must be a CodeableConcept object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"category\":[{\"coding\":{}}]," VQ), EG_E_SCHEMA,
     "category[0].coding: must be an array"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"category\":[{\"coding\":[null]}]," VQ), EG_E_SCHEMA,
     "category[0].coding[0]: must be an object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"category\":[{\"text\":\"x\"},{\"coding\":[{\"system\":"
            "\"" EG_OBSCAT_SYSTEM "\"}]}]," VQ),
     EG_E_SCHEMA, "category[1].coding[0].code: required"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"interpretation\":[]," VQ), EG_E_SCHEMA,
     "interpretation: must be a non-empty array"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"referenceRange\":[3]," VQ), EG_E_SCHEMA,
     "referenceRange[0]: must be a referenceRange object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"method\":\"x\"," VQ), EG_E_SCHEMA,
     "method: must be a CodeableConcept object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"bodySite\":{}," VQ), EG_E_SCHEMA,
     "bodySite: needs coding or text"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"bodySite\":{\"text\":\"\"}," VQ), EG_E_SCHEMA,
     "bodySite.text: must be a non-empty string"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"bodySite\":{\"coding\":[]}," VQ), EG_E_SCHEMA,
     "bodySite.coding: must be a non-empty array"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"bodySite\":{\"coding\":[7]}," VQ), EG_E_SCHEMA,
     "bodySite.coding[0]: must be a Coding object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"note\":[{\"text\":\"a\",\"time\":\"2026\"}]," VQ),
     EG_E_SCHEMA, "note[0].time: partial date"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"dataAbsentReason\":{\"text\":\"x\"}"), EG_E_SCHEMA,
     "value: required"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"valueQuantity\":5"), EG_E_SCHEMA,
     "valueQuantity: must be a Quantity object"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"valueQuantity\":{\"value\":60,\"unit\":[]}"), EG_E_SCHEMA,
     "valueQuantity.unit: must be a primitive value"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueQuantity\":5"), EG_E_SCHEMA,
     "valueQuantity: must be a Quantity object"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueQuantity\":{\"unit\":\"g\"}"), EG_E_SCHEMA,
     "valueQuantity.value: required"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueQuantity\":{\"value\":1,\"unit\":\"\"}"), EG_E_SCHEMA,
     "valueQuantity.unit: must be a non-empty string"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueString\":\"\""), EG_E_SCHEMA,
     "valueString: must be a non-empty string"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueCodeableConcept\":{}"), EG_E_SCHEMA,
     "valueCodeableConcept: needs coding or text"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"valueString\":\"x\",\"dataAbsentReason\":{\"text\":"
            "\"y\"}"),
     EG_E_SCHEMA, "dataAbsentReason: not allowed with valueString"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":{}"), EG_E_SCHEMA,
     "component: must be an array"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":[1]"), EG_E_SCHEMA,
     "component[0]: must be a component object"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":[{}]"), EG_E_SCHEMA,
     "component[0].code: required"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":[" SYS_C ",\"valueInteger\":1}]"), EG_E_SCHEMA,
     "component[0].valueInteger: not accepted"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":[" SYS_C ",\"valueQuantity\":{}}]"),
     EG_E_SCHEMA, "component[0].valueQuantity.value: required"},
    {OBS(ST "," LAB "," SUBJ "," EFF ",\"component\":[" SYS_C
            ",\"valueString\":\"a\",\"dataAbsentReason\":{\"text\":\"b\"}}]"),
     EG_E_SCHEMA, "component[0].dataAbsentReason: not allowed with valueString"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"valueQuantity\":{\"value\":60},\"dataAbsentReason\":{"
            "\"text\":\"x\"}"),
     EG_E_SCHEMA, "dataAbsentReason: not allowed with valueQuantity"},
    {OBS(ST "," BP "," SUBJ "," EFF), EG_E_SCHEMA, "value: required"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":{}"), EG_E_SCHEMA,
     "component: must be an array"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":[7]"), EG_E_SCHEMA,
     "component[0]: must be a component object"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":[" SYS_C ",\"valueString\":\"120\"}]"),
     EG_E_SCHEMA, "component[0].valueString: 8480-6 takes valueQuantity"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":[" SYS_C "}]"), EG_E_SCHEMA,
     "component[0].valueQuantity: required for blood_pressure (LOINC 8480-6)"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":[" SYS_C ",\"valueQuantity\":[]}]"),
     EG_E_SCHEMA, "component[0].valueQuantity: must be a Quantity object"},
    {OBS(ST "," BP "," SUBJ "," EFF ",\"component\":[" SYS_C ",\"valueQuantity\":{\"value\":120,"
            "\"unit\":\"cmHg\"}}]"),
     EG_E_UNIT, "component[0].valueQuantity.unit: unknown unit \"cmHg\" for blood_pressure"},
    {OBS(ST "," HR "," SUBJ "," EFF ",\"dataAbsentReason\":{\"text\":\"x\"},\"component\":[" SYS_C
            ",\"valueString\":\"a\"}]"),
     EG_E_SCHEMA, "dataAbsentReason: not accepted for LOINC 8867-4"},
    {"{\"resourceType\":7,\"id\":\"t1\"}", EG_E_SCHEMA, "resourceType: must be a string"},
    {"{\"resourceType\":\"Bundle\",\"identifier\":[],\"type\":\"batch\"}", EG_E_SCHEMA,
     "identifier: must be an Identifier object"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":{}}", EG_E_SCHEMA,
     "entry: must be an array"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[1]}", EG_E_SCHEMA,
     "entry[0]: must be an object"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[{\"resource\":1}]}",
     EG_E_SCHEMA, "entry[0].resource: must be an object"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[{\"resource\":{"
     "\"resourceType\":1}}]}",
     EG_E_SCHEMA, "entry[0].resource.resourceType: must be a string"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[{\"x\":1}]}",
     EG_E_SCHEMA, "entry[0].x: unknown element of Bundle.entry"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[{"
     "\"modifierExtension\":[]}]}",
     EG_E_UNSUPPORTED, "entry[0].modifierExtension: not supported"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[],\"x\":1}",
     EG_E_SCHEMA, "x: unknown element of Bundle"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"implicitRules\":\"r\",\"type\":\"batch\"}",
     EG_E_UNSUPPORTED, "implicitRules: not supported"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"entry\":[]}", EG_E_SCHEMA,
     "type: required (Bundle.type)"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b c\",\"type\":\"batch\",\"entry\":[]}", EG_E_SCHEMA,
     "id: must be a FHIR id"},
    {"{\"resourceType\":\"Bundle\",\"id\":\"b\",\"type\":\"batch\",\"entry\":[{\"resource\":"
     "{\"resourceType\":\"Observation\",\"id\":\"x y\"," ST "}}]}",
     EG_E_SCHEMA, "entry[0].resource.id: must be a FHIR id"},
};

static void test_shapes(void)
{
    size_t i;

    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        eg_err rc;

        memset(&h, 0, sizeof h);
        rc = run_text(shapes[i].json, &CTX, &h, &e);
        CHECKF(rc == shapes[i].code, "shapes[%zu]: expected %s, got %s: %s\n  %s", i,
               eg_wire_code(shapes[i].code), eg_wire_code(rc), e.detail, shapes[i].json);
        CHECKF(rc == EG_OK || strstr(e.detail, shapes[i].detail) != NULL,
               "shapes[%zu]: detail \"%s\" lacks \"%s\"", i, e.detail, shapes[i].detail);
        CHECKF(rc == EG_OK ? h.n == 1 : (h.n == 0 && h.obs == NULL), "shapes[%zu]: n = %zu", i,
               h.n);
        eg_hmsg_clear(&h);
    }
}

/* Sub-tree key of obj printed compactly (malloc'ed). */
static char *print_key(const cJSON *obj, const char *key)
{
    return egjson_print(cJSON_GetObjectItemCaseSensitive(obj, key), NULL);
}

/* A hospital Observation with a §4 code carries exactly the device path's
 * category, code and value (eg_telemetry.c builds the device one). */
static void test_same_as_device(void)
{
    static const struct {
        const char *reading; /* device reading */
        const char *fhir;    /* the same as hospital code + value */
    } pairs[] = {
        {"{\"type\":\"heart_rate\",\"value\":72}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"}]},"
         "\"valueQuantity\":{\"value\":72,\"unit\":\"bpm\"}"},
        {"{\"type\":\"spo2\",\"value\":97}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"59408-5\"}]},"
         "\"valueQuantity\":{\"value\":97,\"system\":\"http://"
         "unitsofmeasure.org\",\"code\":\"%\"}"},
        {"{\"type\":\"resp_rate\",\"value\":16,\"unit\":\"/min\"}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"9279-1\"}]},"
         "\"valueQuantity\":{\"value\":16}"},
        {"{\"type\":\"body_temp\",\"value\":100.4,\"unit\":\"degF\"}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8310-5\"}]},"
         "\"valueQuantity\":{\"value\":100.4,\"unit\":\"\u00b0F\"}"},
        {"{\"type\":\"blood_pressure\",\"systolic\":121,\"diastolic\":79}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"85354-9\"}]},"
         "\"component\":[{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":"
         "\"8480-6\"}]},\"valueQuantity\":{\"value\":121,\"unit\":\"mmHg\"}},{\"code\":{\"coding\":"
         "[{\"system\":\"http://loinc.org\",\"code\":\"8462-4\"}]},\"valueQuantity\":{\"value\":79,"
         "\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}}]"},
        {"{\"type\":\"body_weight\",\"value\":150,\"unit\":\"lbs\"}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"29463-7\"}]},"
         "\"valueQuantity\":{\"value\":150,\"system\":\"http://unitsofmeasure.org\",\"code\":"
         "\"[lb_av]\"}"},
        {"{\"type\":\"glucose\",\"value\":95}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"2339-0\"}]},"
         "\"valueQuantity\":{\"value\":95,\"unit\":\"mg/dL\"}"},
        {"{\"type\":\"glucose\",\"value\":5.5,\"unit\":\"mmol/L\"}",
         "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"15074-8\"}]},"
         "\"valueQuantity\":{\"value\":5.5,\"unit\":\"mmol/L\"}"},
    };
    static const char *const keys[] = {"category", "code", "valueQuantity", "component"};
    size_t i, k;

    for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char dev[512], hosp[1024];
        struct eg_telemetry t;
        struct eg_obs out[1];
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        cJSON *root = NULL;
        size_t n = 0;
        eg_err rc;

        memset(&h, 0, sizeof h);
        out[0].resource = NULL;
        snprintf(dev, sizeof dev, "{\"seq\":1,\"ts\":\"2026-11-24T06:00:00Z\",\"readings\":[%s]}",
                 pairs[i].reading);
        rc = egjson_parse((const uint8_t *)dev, strlen(dev), &root, &e);
        if (rc == EG_OK)
            rc = eg_telemetry_parse(root, NOW_MS, &t, &e);
        if (rc == EG_OK)
            rc = eg_telemetry_normalize(&t, EG_DEV_MONITOR, "D1", "P001", out, &n, &e);
        CHECKF(rc == EG_OK, "device %s: %s", pairs[i].reading, e.detail);
        snprintf(hosp, sizeof hosp,
                 "{\"resourceType\":\"Observation\",\"id\":\"x%zu\",\"status\":\"final\",%s,"
                 "\"subject\":{\"reference\":\"Patient/P001\"},\"effectiveDateTime\":"
                 "\"2026-11-24T06:00:00Z\"}",
                 i, pairs[i].fhir);
        /* value keys after effectiveDateTime do not matter for the output order */
        rc = rc == EG_OK ? run_text(hosp, &CTX, &h, &e) : rc;
        CHECKF(rc == EG_OK, "hospital %s: %s", pairs[i].fhir, e.detail);
        if (rc == EG_OK && n == 1 && h.n == 1) {
            for (k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                char *a = print_key(out[0].resource, keys[k]);
                char *b = print_key(h.obs[0].resource, keys[k]);

                CHECKF((!a && !b) || (a && b && strcmp(a, b) == 0),
                       "%s %s:\n device   %s\n hospital %s", pairs[i].reading, keys[k],
                       a ? a : "(none)", b ? b : "(none)");
                free(a);
                free(b);
            }
            CHECKF(strcmp(h.obs[0].category, out[0].category) == 0, "%s: category %s vs %s",
                   pairs[i].reading, h.obs[0].category, out[0].category);
        }
        eg_obs_free(out, n);
        eg_hmsg_clear(&h);
        cJSON_Delete(root);
    }
}

/* The samples validated by tests/fhir/run.sh are what the parser makes
 * (plus the subject the ingest step adds). */
static void test_samples_current(void)
{
    static const struct {
        const char *sample, *source;
        size_t index;
    } samples[] = {
        {"sample_hospital_heart_rate.json", "good_single_hr.json", 0},
        {"sample_hospital_spo2.json", "good_bundle_transaction.json", 0},
        {"sample_hospital_blood_pressure.json", "good_bundle_transaction.json", 1},
        {"sample_hospital_body_temp.json", "good_bundle_transaction.json", 2},
        {"sample_hospital_hemoglobin.json", "good_bundle_searchset.json", 0},
    };
    size_t i;

    for (i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        struct eg_hmsg h;
        struct eg_error e = {EG_OK, ""};
        char path[512], *text, *want = NULL, *got = NULL;
        cJSON *sample = NULL;
        size_t len = 0;

        memset(&h, 0, sizeof h);
        snprintf(path, sizeof path, SAMPLEDIR "%s", samples[i].sample);
        text = read_file(path, &len);
        CHECKF(text != NULL, "%s: cannot read", path);
        if (text && egjson_parse((const uint8_t *)text, len, &sample, &e) == EG_OK)
            want = egjson_print(sample, NULL);
        CHECKF(run_file(FIXDIR, samples[i].source, &h, &e) == EG_OK, "%s: %s", samples[i].source,
               e.detail);
        if (h.n > samples[i].index && eg_hobs_set_subject(&h.obs[samples[i].index], "P001") == 0)
            got = egjson_print(h.obs[samples[i].index].resource, NULL);
        CHECKF(want != NULL, "%s: not strict JSON", samples[i].sample);
        if (want)
            expect_same(samples[i].sample, samples[i].index, got, want);
        free(got);
        free(want);
        free(text);
        cJSON_Delete(sample);
        eg_hmsg_clear(&h);
    }
}

int main(void)
{
    CU_pSuite s;
    unsigned fails;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    s = CU_add_suite("fhir_in", NULL, NULL);
    if (!s || !CU_add_test(s, "fixture cases load", test_fixture_cases_loaded) ||
        !CU_add_test(s, "good fixtures: exact Observations", test_fixtures_good) ||
        !CU_add_test(s, "bad fixtures: code, detail, msg id", test_fixtures_bad) ||
        !CU_add_test(s, "512 entries; identifier index", test_bundle_max) ||
        !CU_add_test(s, "eg_hobs_set_subject", test_set_subject) ||
        !CU_add_test(s, "eg_hmsg_clear and reuse", test_hmsg_clear) ||
        !CU_add_test(s, "bad arguments", test_bad_arguments) ||
        !CU_add_test(s, "message id limits", test_msg_id_limits) ||
        !CU_add_test(s, "shape errors", test_shapes) ||
        !CU_add_test(s, "§4 readings as the device path", test_same_as_device) ||
        !CU_add_test(s, "validated samples are current", test_samples_current)) {
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}

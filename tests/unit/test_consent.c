/*
 * test_consent.c — CUnit tests of gateway/eg_consent.c: consent directives,
 * their FHIR R4 Consent, the consents table and the forwarding policy
 * (SPEC §8, §9 "consents", §13 Categories).
 *
 * Directive validation runs over fixtures under tests/fixtures/consent/
 * listed in cases.txt (good directives with a hand-written summary of the
 * parsed struct, broken ones next to them with their code and detail). The
 * Consent resources are compared with tests/fixtures/fhir/sample_consent_*.json,
 * which tests/fhir/run.sh validates against FHIR R4. Store, policy and list
 * run on a real SQLite file in a mkdtemp() dir.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eg_config.h"
#include "eg_consent.h"
#include "eg_json.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_testutil.h"

#define FIXDIR EG_FIXTURES "/consent/"
#define SAMPLEDIR EG_FIXTURES "/fhir/"
#define NOW_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define MAX_CASES 128

static char tmpdir[64];
static struct eg_store *st;
static const struct eg_grantee GRANTEES[2] = {{"authority", "public-health"},
                                              {"lab-net", "treatment"}};
static const struct eg_grantee *AUTH = &GRANTEES[0];
static const struct eg_grantee *LAB = &GRANTEES[1];

/* ---- helpers ---------------------------------------------------------- */

static long long query_int(struct eg_store *s0, const char *text)
{
    sqlite3_stmt *s;
    long long v = -1;

    if (sqlite3_prepare_v2(eg_store_db(s0), text, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_type(s, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int64_t ms(const char *rfc3339)
{
    int64_t v = 0;
    if (eg_time_parse(rfc3339, &v) != 0) {
        CHECKF(0, "bad test time %s", rfc3339);
    }
    return v;
}

static void bound(char *buf, size_t size, int64_t v, int64_t open)
{
    if (v == open) {
        snprintf(buf, size, "..");
    } else {
        char t[EG_TIME_STRLEN];
        eg_time_format(v, t);
        snprintf(buf, size, "%s", t);
    }
}

/* The summary format of cases.txt. */
static void summary(const struct eg_directive *d, char *buf, size_t size)
{
    char cats[256] = "", purps[640] = "", per[80] = "-", dat[80] = "-";
    char a[32], b[32];
    size_t n = 0;

    if (!d->grant) {
        snprintf(buf, size, "revoke %s", d->consent_id);
        return;
    }
    for (int i = 0; i < EG_CAT_COUNT; i++)
        if (d->categories & (1u << i))
            n += (size_t)snprintf(cats + n, sizeof cats - n, "%s%s", n ? "," : "",
                                  eg_consent_categories[i]);
    n = 0;
    for (int i = 0; i < d->npurposes; i++)
        n += (size_t)snprintf(purps + n, sizeof purps - n, "%s%s", n ? "," : "", d->purposes[i]);
    if (!d->npurposes)
        snprintf(purps, sizeof purps, "-");
    if (d->has_period) {
        bound(a, sizeof a, d->period_start, INT64_MIN);
        bound(b, sizeof b, d->period_end, INT64_MAX);
        snprintf(per, sizeof per, "%s/%s", a, b);
    }
    if (d->has_data_period) {
        bound(a, sizeof a, d->data_start, INT64_MIN);
        bound(b, sizeof b, d->data_end, INT64_MAX);
        snprintf(dat, sizeof dat, "%s/%s", a, b);
    }
    snprintf(buf, size, "grant %s grantee=%s categories=%s purposes=%s period=%s data_period=%s",
             d->consent_id, d->grantee, cats, purps, per, dat);
}

static eg_err parse_text(const char *text, struct eg_directive *d, struct eg_error *e)
{
    cJSON *root = NULL;
    eg_err rc = egjson_parse((const uint8_t *)text, strlen(text), &root, e);

    if (rc == EG_OK)
        rc = eg_directive_parse(root, GRANTEES, 2, d, e);
    cJSON_Delete(root);
    return rc;
}

static eg_err parse_file(const char *name, struct eg_directive *d, struct eg_error *e)
{
    char path[512], *text;
    eg_err rc;

    snprintf(path, sizeof path, FIXDIR "%s", name);
    if (!(text = read_file(path, NULL)))
        return eg_fail(e, EG_E_IO, "%s: cannot read", path);
    rc = parse_text(text, d, e);
    free(text);
    return rc;
}

/* Parses a directive and applies it for patient in its own transaction. */
static eg_err apply_text(const char *patient, const char *text, uint64_t seq, int64_t now)
{
    struct eg_directive d;
    struct eg_error e = {EG_OK, ""};
    eg_err rc = parse_text(text, &d, &e);

    CHECKF(rc == EG_OK, "parse %s: %s", text, e.detail);
    if (rc != EG_OK)
        return rc;
    if (eg_store_begin(st) != EG_OK)
        return EG_E_DB;
    rc = eg_consent_apply(st, patient, &d, seq, now);
    if (eg_store_commit(st) != EG_OK)
        return EG_E_DB;
    return rc;
}

static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0)
            return 0;
        p++;
        for (; n > 0; n--, p++)
            if ((*p & 0xc0) != 0x80)
                return 0;
    }
    return 1;
}

/* ---- configured grantees ---------------------------------------------- */

static int grantees_of(const char *const *vals, int n, struct eg_grantee *out, int max)
{
    static char bufs[EG_CFG_LIST_MAX][200];
    struct eg_config cfg;

    memset(&cfg, 0, sizeof cfg);
    for (int i = 0; i < n && i < EG_CFG_LIST_MAX; i++) {
        snprintf(bufs[i], sizeof bufs[i], "%s", vals[i]);
        cfg.grantee.v[i] = bufs[i];
    }
    cfg.grantee.n = n;
    return eg_grantees_parse(&cfg, out, max);
}

static void test_grantees_parse(void)
{
    static const char *const good[] = {"authority:public-health", "lab-net:treatment", "A.b_c-9:x"};
    static const char *const bad[] = {
        "authority",               /* no colon */
        ":public-health",          /* empty name */
        "authority:",              /* empty purpose */
        "auth ority:x",            /* name outside the id alphabet */
        "authority:public health", /* purpose outside the alphabet */
        "authority:a:b",           /* second colon is in the purpose */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:x", /* 65 */
        "a:ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp", /* 65 */
    };
    struct eg_grantee out[EG_GRANTEES_MAX];
    const char *dup[] = {"authority:public-health", "authority:research"};
    const char *one[1];
    char id64[80];

    CU_ASSERT_EQUAL(grantees_of(good, 3, out, EG_GRANTEES_MAX), 3);
    CU_ASSERT_STRING_EQUAL(out[0].name, "authority");
    CU_ASSERT_STRING_EQUAL(out[0].purpose, "public-health");
    CU_ASSERT_STRING_EQUAL(out[1].name, "lab-net");
    CU_ASSERT_STRING_EQUAL(out[1].purpose, "treatment");
    CU_ASSERT_STRING_EQUAL(out[2].name, "A.b_c-9");
    CU_ASSERT_STRING_EQUAL(out[2].purpose, "x");
    CU_ASSERT_EQUAL(grantees_of(good, 0, out, EG_GRANTEES_MAX), 0);
    CU_ASSERT_EQUAL(grantees_of(good, 0, NULL, 0), 0);
    CU_ASSERT_EQUAL(grantees_of(good, 3, out, 2), -1); /* more than max: refused */
    CU_ASSERT_EQUAL(grantees_of(dup, 2, out, EG_GRANTEES_MAX), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        one[0] = bad[i];
        CHECKF(grantees_of(one, 1, out, EG_GRANTEES_MAX) == -1, "\"%s\" accepted", bad[i]);
    }
    memset(id64, 'g', 64);
    snprintf(id64 + 64, sizeof id64 - 64, ":%s", "p");
    one[0] = id64;
    CU_ASSERT_EQUAL(grantees_of(one, 1, out, EG_GRANTEES_MAX), 1);
    CU_ASSERT_EQUAL(strlen(out[0].name), 64);
    CU_ASSERT_EQUAL(eg_grantees_parse(NULL, out, 1), -1);
}

/* ---- directive fixtures ----------------------------------------------- */

struct fcase {
    char file[96];
    char code[24];
    char want[512];
};

static struct fcase cases[MAX_CASES];
static int ncases;

static int load_cases(void)
{
    char *text = read_file(FIXDIR "cases.txt", NULL), *line, *save = NULL;

    if (!text)
        return -1;
    ncases = 0;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *b1, *b2;
        struct fcase *c;

        if (line[0] == '#' || line[0] == '\0' || ncases == MAX_CASES)
            continue;
        b1 = strstr(line, " | ");
        b2 = b1 ? strstr(b1 + 3, " | ") : NULL;
        if (!b2)
            continue;
        *b1 = *b2 = '\0';
        c = &cases[ncases++];
        snprintf(c->file, sizeof c->file, "%s", line);
        snprintf(c->code, sizeof c->code, "%s", b1 + 3);
        snprintf(c->want, sizeof c->want, "%s", b2 + 3);
    }
    free(text);
    return ncases;
}

static void test_fixtures_listed(void)
{
    DIR *d = opendir(FIXDIR);
    struct dirent *de;
    int files = 0, good = 0, bad = 0;

    CU_ASSERT_FATAL(d != NULL);
    CHECKF(load_cases() >= 50, "cases.txt: %d cases", ncases);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        int listed = 0;
        if (n < 5 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        files++;
        for (int i = 0; i < ncases; i++)
            listed |= strcmp(cases[i].file, de->d_name) == 0;
        CHECKF(listed, "%s is not in cases.txt", de->d_name);
    }
    closedir(d);
    for (int i = 0; i < ncases; i++) {
        good += strncmp(cases[i].file, "good_", 5) == 0;
        bad += strncmp(cases[i].file, "bad_", 4) == 0;
    }
    CHECKF(files == ncases, "%d files, %d cases", files, ncases);
    CHECKF(good >= 10 && bad >= 40, "%d good, %d bad", good, bad);
}

static void test_fixtures(void)
{
    if (ncases == 0)
        load_cases();
    CU_ASSERT_FATAL(ncases > 0);
    for (int i = 0; i < ncases; i++) {
        const struct fcase *c = &cases[i];
        struct eg_directive d;
        struct eg_error e = {EG_OK, ""};
        eg_err rc;
        char got[1024];

        memset(&d, 0x5a, sizeof d);
        rc = parse_file(c->file, &d, &e);
        if (strcmp(c->code, "ok") == 0) {
            CHECKF(rc == EG_OK, "%s: %s (%s)", c->file, eg_wire_code(rc), e.detail);
            if (rc != EG_OK)
                continue;
            summary(&d, got, sizeof got);
            CHECKF(strcmp(got, c->want) == 0, "%s:\n got  %s\n want %s", c->file, got, c->want);
            if (!d.grant) {
                /* a revoke carries nothing else */
                CHECKF(d.grantee[0] == '\0' && d.categories == 0 && d.npurposes == 0 &&
                           !d.has_period && !d.has_data_period && d.period_start == INT64_MIN &&
                           d.period_end == INT64_MAX && d.data_start == INT64_MIN &&
                           d.data_end == INT64_MAX,
                       "%s: revoke fields not cleared", c->file);
            } else {
                CHECKF(d.has_period || (d.period_start == INT64_MIN && d.period_end == INT64_MAX),
                       "%s: absent period bounds", c->file);
                CHECKF(d.has_data_period || (d.data_start == INT64_MIN && d.data_end == INT64_MAX),
                       "%s: absent data_period bounds", c->file);
            }
        } else {
            CHECKF(rc != EG_OK && strcmp(eg_wire_code(rc), c->code) == 0,
                   "%s: got %s (%s), want %s", c->file, eg_wire_code(rc), e.detail, c->code);
            CHECKF(e.code == rc, "%s: e.code %d rc %d", c->file, e.code, rc);
            CHECKF(strstr(e.detail, c->want) != NULL, "%s:\n detail \"%s\"\n lacks  \"%s\"",
                   c->file, e.detail, c->want);
            CHECKF(d.consent_id[0] == '\0' && d.grant == 0 && d.categories == 0,
                   "%s: output not cleared on failure", c->file);
        }
    }
}

static void test_directive_edges(void)
{
    struct eg_directive d;
    struct eg_error e = {EG_OK, ""};
    char text[2048], name[160];
    cJSON *root;

    /* no root, no grantees configured */
    CU_ASSERT_EQUAL(eg_directive_parse(NULL, GRANTEES, 2, &d, &e), EG_E_SCHEMA);
    root = cJSON_Parse("{\"consent_id\":\"c\",\"action\":\"grant\",\"grantee\":\"authority\","
                       "\"categories\":[\"exam\"]}");
    CU_ASSERT_FATAL(root != NULL);
    CU_ASSERT_EQUAL(eg_directive_parse(root, NULL, 0, &d, &e), EG_E_SCHEMA);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "not a configured grantee"));
    CU_ASSERT_EQUAL(eg_directive_parse(root, LAB, 1, &d, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_directive_parse(root, GRANTEES, 2, &d, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_directive_parse(root, GRANTEES, 2, NULL, &e), EG_E_INTERNAL);
    cJSON_Delete(root);

    /* nonce and issued are not checked here (done before, by eg_signed) */
    CU_ASSERT_EQUAL(parse_text("{\"consent_id\":\"c\",\"action\":\"revoke\",\"nonce\":\"x\","
                               "\"issued\":[]}",
                               &d, &e),
                    EG_OK);

    /* a long non-ASCII member name is cut at a character boundary */
    name[0] = 'a'; /* then 30 x é: byte 40 is inside a character */
    for (int i = 0; i < 30; i++)
        memcpy(name + 1 + 2 * i, "\xc3\xa9", 2);
    name[61] = '\0';
    snprintf(text, sizeof text,
             "{\"consent_id\":\"c\",\"action\":\"grant\",\"grantee\":\"authority\","
             "\"categories\":[\"exam\"],\"%s\":1}",
             name);
    CU_ASSERT_EQUAL(parse_text(text, &d, &e), EG_E_SCHEMA);
    CHECKF(utf8_ok(e.detail), "detail not UTF-8: %s", e.detail);
    CHECKF(strstr(e.detail, "...\": unknown member of a grant") != NULL, "%s", e.detail);

    /* many unknown members: listed as far as they fit */
    snprintf(text, sizeof text, "{\"consent_id\":\"c\",\"action\":\"revoke\"");
    for (int i = 0; i < 40; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), ",\"extra_member_%02d\":%d", i,
                 i);
    snprintf(text + strlen(text), sizeof text - strlen(text), "}");
    CU_ASSERT_EQUAL(parse_text(text, &d, &e), EG_E_SCHEMA);
    CHECKF(strncmp(e.detail, "\"extra_member_00\", \"extra_member_01\"", 36) == 0 &&
               strstr(e.detail, ", ...: unknown members of a revoke") != NULL,
           "%s", e.detail);

    /* control characters and quotes in a shown value */
    CU_ASSERT_EQUAL(parse_text("{\"consent_id\":\"c\",\"action\":\"gr\\\"a\\nnt\"}", &d, &e),
                    EG_E_SCHEMA);
    CHECKF(strcmp(e.detail, "action: \"gr?a?nt\" must be \"grant\" or \"revoke\"") == 0, "%s",
           e.detail);

    /* category codes are matched exactly */
    CU_ASSERT_EQUAL(parse_text("{\"consent_id\":\"c\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"vital-signs \"]}",
                               &d, &e),
                    EG_E_SCHEMA);
}

/* ---- the FHIR R4 Consent ---------------------------------------------- */

static char *sample_compact(const char *name)
{
    char path[512], *text, *out = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    struct eg_error e = {EG_OK, ""};

    snprintf(path, sizeof path, SAMPLEDIR "%s", name);
    text = read_file(path, &len);
    CHECKF(text != NULL, "%s: cannot read", path);
    if (text && egjson_parse((const uint8_t *)text, len, &root, &e) == EG_OK)
        out = egjson_print(root, NULL);
    CHECKF(out != NULL, "%s: not strict JSON (%s)", name, e.detail);
    cJSON_Delete(root);
    free(text);
    return out;
}

static void expect_resource(const char *sample, const struct eg_directive *d,
                            const struct eg_directive *prev, const char *patient, int64_t now)
{
    cJSON *r = eg_consent_resource(d, prev, patient, now);
    char *got = r ? egjson_print(r, NULL) : NULL, *want = sample_compact(sample);

    CHECKF(got != NULL, "%s: no resource", sample);
    if (got && want)
        CHECKF(strcmp(got, want) == 0, "%s:\n got  %s\n want %s", sample, got, want);
    free(got);
    free(want);
    cJSON_Delete(r);
}

/* The validated samples are what eg_consent_resource makes. */
static void test_resource_samples(void)
{
    struct eg_directive grant, minimal, revoke;
    struct eg_error e = {EG_OK, ""};

    CU_ASSERT_EQUAL_FATAL(parse_file("good_grant_spec.json", &grant, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(parse_file("good_grant_minimal.json", &minimal, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(parse_file("good_revoke_spec.json", &revoke, &e), EG_OK);
    expect_resource("sample_consent_grant.json", &grant, NULL, "P001",
                    ms("2026-11-24T06:00:00.250Z"));
    /* prev is ignored for a grant */
    expect_resource("sample_consent_grant.json", &grant, &minimal, "P001",
                    ms("2026-11-24T06:00:00.250Z"));
    expect_resource("sample_consent_minimal.json", &minimal, NULL, "P002", NOW_MS);
    expect_resource("sample_consent_revoke.json", &revoke, &grant, "P001",
                    ms("2026-11-25T06:00:00Z"));
}

static void test_resource_shapes(void)
{
    struct eg_directive revoke, all;
    struct eg_error e = {EG_OK, ""};
    cJSON *r, *code;
    const cJSON *prov;
    char *s;

    CU_ASSERT_EQUAL_FATAL(parse_file("good_revoke_spec.json", &revoke, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(parse_file("good_all_categories.json", &all, &e), EG_OK);
    /* a revoke without the grant: inactive, no provision */
    r = eg_consent_resource(&revoke, NULL, "P001", NOW_MS);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "inactive");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "dateTime"), "2026-11-24T06:30:00.000Z");
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(r, "provision"));
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(r, "policyRule"));
    cJSON_Delete(r);
    /* all nine categories, in SPEC §13 order; no period, purpose, dataPeriod */
    r = eg_consent_resource(&all, NULL, "P9", NOW_MS);
    CU_ASSERT_FATAL(r != NULL);
    prov = cJSON_GetObjectItemCaseSensitive(r, "provision");
    code = cJSON_GetObjectItemCaseSensitive(prov, "code");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(code), EG_CAT_COUNT);
    for (int i = 0; i < EG_CAT_COUNT && i < cJSON_GetArraySize(code); i++) {
        const cJSON *c0 = cJSON_GetArrayItem(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(code, i), "coding"), 0);
        CU_ASSERT_STRING_EQUAL(egjson_str(c0, "code"), eg_consent_categories[i]);
        CU_ASSERT_STRING_EQUAL(egjson_str(c0, "system"),
                               "http://terminology.hl7.org/CodeSystem/observation-category");
    }
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(prov, "period"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(prov, "purpose"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(prov, "dataPeriod"));
    s = egjson_print(r, NULL);
    CU_ASSERT_PTR_NOT_NULL(s);
    if (s) {
        CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"patient\":{\"reference\":\"Patient/P9\"}"));
    }
    free(s);
    cJSON_Delete(r);
    CU_ASSERT_PTR_NULL(eg_consent_resource(NULL, NULL, "P1", NOW_MS));
    CU_ASSERT_PTR_NULL(eg_consent_resource(&all, NULL, NULL, NOW_MS));
}

/* ---- the consents table ----------------------------------------------- */

static const char *GRANT_SPEC =
    "{\"consent_id\":\"c-001\",\"action\":\"grant\",\"grantee\":\"authority\","
    "\"categories\":[\"vital-signs\",\"laboratory\"],\"purposes\":[\"public-health\"],"
    "\"period\":{\"start\":\"2026-11-24T00:00:00Z\",\"end\":\"2027-11-24T00:00:00Z\"},"
    "\"data_period\":{\"start\":\"2020-01-01T00:00:00Z\"},"
    "\"nonce\":17,\"issued\":\"2026-11-24T06:00:00.000Z\"}";
static const char *REVOKE_SPEC = "{\"consent_id\":\"c-001\",\"action\":\"revoke\"}";

static void expect_lookup(const char *patient, const char *id, const char *want)
{
    struct eg_directive d;
    char got[1024];
    eg_err rc = eg_consent_lookup(st, patient, id, &d);

    if (!want) {
        CHECKF(rc == EG_E_NOT_FOUND, "lookup %s/%s: %s, want not_found", patient, id,
               eg_strerror(rc));
        return;
    }
    CHECKF(rc == EG_OK, "lookup %s/%s: %s", patient, id, eg_strerror(rc));
    if (rc != EG_OK)
        return;
    summary(&d, got, sizeof got);
    CHECKF(strcmp(got, want) == 0, "lookup %s/%s:\n got  %s\n want %s", patient, id, got, want);
}

static void test_apply_lookup(void)
{
    struct eg_directive d;
    struct eg_error e = {EG_OK, ""};
    char want[1024];

    /* grant */
    CU_ASSERT_EQUAL(apply_text("P001", GRANT_SPEC, 10, NOW_MS), EG_OK);
    CU_ASSERT_EQUAL(parse_text(GRANT_SPEC, &d, &e), EG_OK);
    summary(&d, want, sizeof want);
    expect_lookup("P001", "c-001", want);
    CU_ASSERT_EQUAL(query_int(st, "SELECT seq FROM consents WHERE patient_id = 'P001'"), 10);
    CU_ASSERT_EQUAL(query_int(st, "SELECT active FROM consents WHERE patient_id = 'P001'"), 1);
    CU_ASSERT_EQUAL(query_int(st, "SELECT updated_at FROM consents WHERE patient_id = 'P001'"),
                    NOW_MS);
    CU_ASSERT_EQUAL(query_int(st, "SELECT data_end IS NULL AND data_start = 1577836800000"
                                  " FROM consents WHERE patient_id = 'P001'"),
                    1);
    CU_ASSERT_EQUAL(query_int(st, "SELECT categories = '[\"vital-signs\",\"laboratory\"]'"
                                  " AND purposes = '[\"public-health\"]'"
                                  " FROM consents WHERE patient_id = 'P001'"),
                    1);
    /* the same consent_id is another patient's own */
    expect_lookup("P002", "c-001", NULL);
    expect_lookup("P001", "c-002", NULL);

    /* replace by the same consent_id */
    CU_ASSERT_EQUAL(apply_text("P001",
                               "{\"consent_id\":\"c-001\",\"action\":\"grant\",\"grantee\":"
                               "\"lab-net\",\"categories\":[\"imaging\"]}",
                               11, NOW_MS + 1),
                    EG_OK);
    expect_lookup("P001", "c-001",
                  "grant c-001 grantee=lab-net categories=imaging purposes=- period=-"
                  " data_period=-");
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM consents WHERE patient_id = 'P001'"), 1);
    CU_ASSERT_EQUAL(query_int(st, "SELECT seq FROM consents WHERE patient_id = 'P001'"), 11);
    CU_ASSERT_EQUAL(query_int(st, "SELECT purposes IS NULL AND period_start IS NULL AND"
                                  " period_end IS NULL AND data_start IS NULL"
                                  " FROM consents WHERE patient_id = 'P001'"),
                    1);

    /* revoke */
    CU_ASSERT_EQUAL(apply_text("P001", REVOKE_SPEC, 12, NOW_MS + 2), EG_OK);
    expect_lookup("P001", "c-001", NULL);
    CU_ASSERT_EQUAL(query_int(st, "SELECT active FROM consents WHERE patient_id = 'P001'"), 0);
    CU_ASSERT_EQUAL(query_int(st, "SELECT seq FROM consents WHERE patient_id = 'P001'"), 12);
    /* revoke twice, revoke unknown, revoke another patient's: not_found, nothing changes */
    CU_ASSERT_EQUAL(apply_text("P001", REVOKE_SPEC, 13, NOW_MS + 3), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(query_int(st, "SELECT seq FROM consents WHERE patient_id = 'P001'"), 12);
    CU_ASSERT_EQUAL(query_int(st, "SELECT updated_at FROM consents WHERE patient_id = 'P001'"),
                    NOW_MS + 2);
    CU_ASSERT_EQUAL(
        apply_text("P001", "{\"consent_id\":\"nope\",\"action\":\"revoke\"}", 14, NOW_MS),
        EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(apply_text("P002", REVOKE_SPEC, 15, NOW_MS), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM consents WHERE patient_id = 'P002'"), 0);

    /* a grant again with the revoked id: active again */
    CU_ASSERT_EQUAL(apply_text("P001", GRANT_SPEC, 16, NOW_MS + 4), EG_OK);
    expect_lookup("P001", "c-001", want);
    CU_ASSERT_EQUAL(query_int(st, "SELECT active FROM consents WHERE patient_id = 'P001'"), 1);

    /* the caller's transaction: a rollback undoes it */
    CU_ASSERT_EQUAL(parse_text(REVOKE_SPEC, &d, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_consent_apply(st, "P001", &d, 17, NOW_MS), EG_OK);
    expect_lookup("P001", "c-001", NULL);
    eg_store_rollback(st);
    expect_lookup("P001", "c-001", want);

    /* a struct that eg_directive_parse cannot make */
    CU_ASSERT_EQUAL(parse_text(GRANT_SPEC, &d, &e), EG_OK);
    d.categories = 0;
    CU_ASSERT_EQUAL(eg_consent_apply(st, "P001", &d, 18, NOW_MS), EG_E_USAGE);
    CU_ASSERT_EQUAL(eg_consent_apply(st, NULL, &d, 18, NOW_MS), EG_E_USAGE);
    CU_ASSERT_EQUAL(eg_consent_lookup(st, "P001", NULL, &d), EG_E_USAGE);
    expect_lookup("P001", "c-001", want);
}

/* ---- the policy ------------------------------------------------------- */

static int permits(const char *patient, const struct eg_grantee *g, const char *cat,
                   const char *commit, const char *effective)
{
    return eg_consent_permits(st, patient, g, cat, ms(commit), ms(effective));
}

#define IN_PERIOD "2026-11-24T06:30:00Z"
#define IN_DATA "2026-03-01T12:00:00Z"

static void test_permits(void)
{
    const struct eg_grantee research = {"authority", "research"};
    const struct eg_grantee prefix = {"authority", "public"};
    const struct eg_grantee quote = {"authority", "x\",\"public-health"};
    const struct eg_grantee stranger = {"insurer", "public-health"};
    const char *cats[] = {"vital-signs", "laboratory"};

    /* PP: the grant of the matrix */
    CU_ASSERT_EQUAL(apply_text("PP",
                               "{\"consent_id\":\"m\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"vital-signs\",\"laboratory\"],"
                               "\"purposes\":[\"research-x\",\"public-health\"],"
                               "\"period\":{\"start\":\"2026-11-24T00:00:00Z\","
                               "\"end\":\"2026-11-25T00:00:00+01:00\"},"
                               "\"data_period\":{\"start\":\"2026-01-01T00:00:00Z\","
                               "\"end\":\"2026-06-30T23:59:59.999Z\"}}",
                               20, NOW_MS),
                    EG_OK);
    /* and one for lab-net under another patient */
    CU_ASSERT_EQUAL(apply_text("PQ",
                               "{\"consent_id\":\"q\",\"action\":\"grant\",\"grantee\":"
                               "\"lab-net\",\"categories\":[\"vital-signs\"]}",
                               21, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK); /* as inside the commit */

    for (int i = 0; i < 2; i++) {
        /* inside everything */
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, IN_DATA) == 1, "%s", cats[i]);
        /* period: bounds inclusive, instants (end 2026-11-24T23:00:00Z) */
        CHECKF(permits("PP", AUTH, cats[i], "2026-11-23T23:59:59.999Z", IN_DATA) == 0, "before");
        CHECKF(permits("PP", AUTH, cats[i], "2026-11-24T00:00:00Z", IN_DATA) == 1, "start");
        CHECKF(permits("PP", AUTH, cats[i], "2026-11-24T23:00:00Z", IN_DATA) == 1, "end");
        CHECKF(permits("PP", AUTH, cats[i], "2026-11-24T23:00:00.001Z", IN_DATA) == 0, "after");
        CHECKF(permits("PP", AUTH, cats[i], "2026-11-24T23:30:00Z", IN_DATA) == 0, "after (Z)");
        /* data_period against the effective time */
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, "2025-12-31T23:59:59.999Z") == 0,
               "data before");
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, "2026-01-01T00:00:00Z") == 1, "data start");
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, "2026-06-30T23:59:59.999Z") == 1,
               "data end");
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, "2026-07-01T00:00:00Z") == 0, "data after");
        CHECKF(permits("PP", AUTH, cats[i], IN_PERIOD, "2026-07-01T01:00:00+02:00") == 1,
               "data end with offset (= 2026-06-30T23:00Z)");
    }
    /* categories: exact */
    CU_ASSERT_EQUAL(permits("PP", AUTH, "imaging", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "vital", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "Vital-Signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "unknown", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "vital-signs\",\"laboratory", IN_PERIOD, IN_DATA), 0);
    /* purposes: the grantee's purpose must be listed, exactly */
    CU_ASSERT_EQUAL(permits("PP", &research, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", &prefix, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", &quote, "vital-signs", IN_PERIOD, IN_DATA), 0);
    /* other grantee, other patient, nobody */
    CU_ASSERT_EQUAL(permits("PP", LAB, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", &stranger, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PQ", AUTH, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PQ", LAB, "vital-signs", IN_PERIOD, IN_DATA), 1);
    CU_ASSERT_EQUAL(permits("PX", AUTH, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(eg_consent_permits(st, NULL, AUTH, "vital-signs", NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PP", NULL, "vital-signs", NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PP", AUTH, NULL, NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);

    /* purposes absent: any grantee purpose; no period/data_period: any time */
    CU_ASSERT_EQUAL(apply_text("PA",
                               "{\"consent_id\":\"any\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"exam\"]}",
                               22, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", AUTH, "exam", INT64_MIN, INT64_MIN), 1);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", AUTH, "exam", INT64_MAX, INT64_MAX), 1);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", &research, "exam", NOW_MS, NOW_MS), 1);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", &quote, "exam", NOW_MS, NOW_MS), 1);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", AUTH, "vital-signs", NOW_MS, NOW_MS), 0);
    /* a purpose that merely starts with the grantee's purpose does not count */
    CU_ASSERT_EQUAL(apply_text("PB",
                               "{\"consent_id\":\"b\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"exam\"],"
                               "\"purposes\":[\"public-health-2\",\"x-public-health\"]}",
                               23, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PB", AUTH, "exam", NOW_MS, NOW_MS), 0);

    /* every condition must hold on one grant: an expired vital-signs grant
     * and a current laboratory grant do not make vital-signs pass */
    CU_ASSERT_EQUAL(apply_text("PC",
                               "{\"consent_id\":\"old\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"vital-signs\"],"
                               "\"period\":{\"end\":\"2026-01-01T00:00:00Z\"}}",
                               24, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL(apply_text("PC",
                               "{\"consent_id\":\"new\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"laboratory\"],"
                               "\"purposes\":[\"treatment\"]}",
                               25, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PC", AUTH, "vital-signs", NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PC", AUTH, "laboratory", NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(
        eg_consent_permits(st, "PC", AUTH, "vital-signs", ms("2025-12-01T00:00:00Z"), NOW_MS), 1);
    /* a second grant adds to the first */
    CU_ASSERT_EQUAL(apply_text("PC",
                               "{\"consent_id\":\"new2\",\"action\":\"grant\",\"grantee\":"
                               "\"authority\",\"categories\":[\"laboratory\"]}",
                               26, NOW_MS),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PC", AUTH, "laboratory", NOW_MS, NOW_MS), 1);

    /* revoked -> deny, from the next commit on (here: inside the same transaction) */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "vital-signs", IN_PERIOD, IN_DATA), 1);
    {
        struct eg_directive d;
        struct eg_error e = {EG_OK, ""};
        CU_ASSERT_EQUAL(parse_text("{\"consent_id\":\"m\",\"action\":\"revoke\"}", &d, &e), EG_OK);
        CU_ASSERT_EQUAL(eg_consent_apply(st, "PP", &d, 27, NOW_MS), EG_OK);
    }
    CU_ASSERT_EQUAL(permits("PP", AUTH, "vital-signs", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "laboratory", IN_PERIOD, IN_DATA), 0);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_EQUAL(permits("PP", AUTH, "vital-signs", IN_PERIOD, IN_DATA), 0);
}

/* The policy query runs on the partial index consents_active, and is cheap. */
static void test_permits_plan(void)
{
    sqlite3 *db = eg_store_db(st);
    sqlite3_stmt *s = NULL, *plan = NULL;
    const char *sql = NULL;
    char text[2048];
    int uses_index = 0, n, yes = 0;
    struct timespec t0, t1;
    double secs;

    /* make sure it is cached, then find it among the connection's statements */
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PA", AUTH, "exam", NOW_MS, NOW_MS), 1);
    while ((s = sqlite3_next_stmt(db, s)) != NULL)
        if (strstr(sqlite3_sql(s), "instr(categories") != NULL)
            sql = sqlite3_sql(s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sql);
    snprintf(text, sizeof text, "EXPLAIN QUERY PLAN %s", sql);
    CU_ASSERT_EQUAL_FATAL(sqlite3_prepare_v2(db, text, -1, &plan, NULL), SQLITE_OK);
    while (sqlite3_step(plan) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(plan, 3);
        if (detail && strstr(detail, "consents_active") && strstr(detail, "grantee=?"))
            uses_index = 1;
        if (detail)
            CHECKF(strstr(detail, "SCAN") == NULL, "plan scans: %s", detail);
    }
    sqlite3_finalize(plan);
    CU_ASSERT(uses_index);

    /* 200 patients with 3 grants each; 100000 decisions in one transaction */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    for (int p = 0; p < 200; p++) {
        char patient[16], json[512];
        struct eg_directive d;
        struct eg_error e = {EG_OK, ""};
        snprintf(patient, sizeof patient, "L%03d", p);
        for (int k = 0; k < 3; k++) {
            snprintf(json, sizeof json,
                     "{\"consent_id\":\"g%d\",\"action\":\"grant\",\"grantee\":\"%s\","
                     "\"categories\":[\"%s\",\"exam\"],%s"
                     "\"period\":{\"start\":\"2026-01-01T00:00:00Z\"}}",
                     k, k == 2 ? "lab-net" : "authority", k == 0 ? "vital-signs" : "laboratory",
                     k == 2 ? "" : "\"purposes\":[\"public-health\"],");
            if (parse_text(json, &d, &e) != EG_OK ||
                eg_consent_apply(st, patient, &d, (uint64_t)(1000 + p * 3 + k), NOW_MS) != EG_OK)
                CHECKF(0, "%s: %s", json, e.detail);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = 100000;
    for (int i = 0; i < n; i++) {
        char patient[16];
        snprintf(patient, sizeof patient, "L%03d", i % 200);
        yes += eg_consent_permits(st, patient, (i & 1) ? LAB : AUTH,
                                  (i & 2) ? "vital-signs" : "laboratory", NOW_MS, NOW_MS);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    /* AUTH: vital-signs (g0) and laboratory (g1) pass; LAB: only laboratory
     * (g2, no purposes) */
    CU_ASSERT_EQUAL(yes, n / 2 + n / 4);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("\n    %d decisions in %.3f s (%.0f/s) ", n, secs, n / (secs > 0 ? secs : 1e-9));
    CHECKF(secs < 20.0, "%d decisions took %.1f s", n, secs);
}

/* ---- the consents reply ----------------------------------------------- */

static void expect_list(const char *patient, int64_t now, const char *want)
{
    cJSON *out = (cJSON *)1;
    char *got;
    eg_err rc = eg_consent_list(st, patient, now, &out);

    CHECKF(rc == EG_OK, "list %s: %s", patient, eg_strerror(rc));
    if (rc != EG_OK)
        return;
    got = egjson_print(out, NULL);
    CHECKF(got && strcmp(got, want) == 0, "list %s:\n got  %s\n want %s", patient,
           got ? got : "(null)", want);
    free(got);
    cJSON_Delete(out);
}

static void test_list(void)
{
    static const char *const grants[] = {
        "{\"consent_id\":\"f-edge\",\"action\":\"grant\",\"grantee\":\"authority\","
        "\"categories\":[\"laboratory\",\"vital-signs\"],\"period\":{\"end\":\"2026-11-24T06:30:"
        "00Z\"}}",
        "{\"consent_id\":\"a-now\",\"action\":\"grant\",\"grantee\":\"authority\","
        "\"categories\":[\"vital-signs\",\"laboratory\"],\"purposes\":[\"public-health\","
        "\"research\"],"
        "\"period\":{\"start\":\"2026-11-24T00:00:00+01:00\",\"end\":\"2027-11-24T00:00:00Z\"},"
        "\"data_period\":{\"start\":\"2020-01-01T00:00:00Z\"}}",
        "{\"consent_id\":\"b-open\",\"action\":\"grant\",\"grantee\":\"lab-net\","
        "\"categories\":[\"exam\"],\"data_period\":{\"end\":\"2026-01-01T00:00:00Z\"}}",
        "{\"consent_id\":\"c-expired\",\"action\":\"grant\",\"grantee\":\"authority\","
        "\"categories\":[\"exam\"],\"period\":{\"end\":\"2026-11-24T06:29:59.999Z\"}}",
        "{\"consent_id\":\"d-future\",\"action\":\"grant\",\"grantee\":\"authority\","
        "\"categories\":[\"exam\"],\"period\":{\"start\":\"2026-11-24T06:30:00.001Z\"}}",
        "{\"consent_id\":\"e-revoked\",\"action\":\"grant\",\"grantee\":\"authority\","
        "\"categories\":[\"exam\"]}",
        "{\"consent_id\":\"g-start\",\"action\":\"grant\",\"grantee\":\"lab-net\","
        "\"categories\":[\"survey\"],\"purposes\":[\"treatment\"],"
        "\"period\":{\"start\":\"2026-11-24T06:30:00Z\"}}",
    };
    cJSON *out = (cJSON *)1;

    for (size_t i = 0; i < sizeof grants / sizeof grants[0]; i++)
        CU_ASSERT_EQUAL(apply_text("PL", grants[i], 100 + i, NOW_MS), EG_OK);
    CU_ASSERT_EQUAL(
        apply_text("PL", "{\"consent_id\":\"e-revoked\",\"action\":\"revoke\"}", 110, NOW_MS),
        EG_OK);
    CU_ASSERT_EQUAL(apply_text("PM", grants[1], 111, NOW_MS), EG_OK);

    /* now = 2026-11-24T06:30:00.000Z: bounds inclusive, ordered by consent_id */
    expect_list(
        "PL", NOW_MS,
        "[{\"consent_id\":\"a-now\",\"grantee\":\"authority\","
        "\"categories\":[\"vital-signs\",\"laboratory\"],"
        "\"purposes\":[\"public-health\",\"research\"],"
        "\"period\":{\"start\":\"2026-11-23T23:00:00.000Z\",\"end\":\"2027-11-24T00:00:00.000Z\"},"
        "\"data_period\":{\"start\":\"2020-01-01T00:00:00.000Z\"}},"
        "{\"consent_id\":\"b-open\",\"grantee\":\"lab-net\",\"categories\":[\"exam\"],"
        "\"data_period\":{\"end\":\"2026-01-01T00:00:00.000Z\"}},"
        "{\"consent_id\":\"f-edge\",\"grantee\":\"authority\","
        "\"categories\":[\"vital-signs\",\"laboratory\"],"
        "\"period\":{\"end\":\"2026-11-24T06:30:00.000Z\"}},"
        "{\"consent_id\":\"g-start\",\"grantee\":\"lab-net\",\"categories\":[\"survey\"],"
        "\"purposes\":[\"treatment\"],\"period\":{\"start\":\"2026-11-24T06:30:00.000Z\"}}]");
    /* one ms later f-edge has expired and d-future has started */
    expect_list(
        "PL", NOW_MS + 1,
        "[{\"consent_id\":\"a-now\",\"grantee\":\"authority\","
        "\"categories\":[\"vital-signs\",\"laboratory\"],"
        "\"purposes\":[\"public-health\",\"research\"],"
        "\"period\":{\"start\":\"2026-11-23T23:00:00.000Z\",\"end\":\"2027-11-24T00:00:00.000Z\"},"
        "\"data_period\":{\"start\":\"2020-01-01T00:00:00.000Z\"}},"
        "{\"consent_id\":\"b-open\",\"grantee\":\"lab-net\",\"categories\":[\"exam\"],"
        "\"data_period\":{\"end\":\"2026-01-01T00:00:00.000Z\"}},"
        "{\"consent_id\":\"d-future\",\"grantee\":\"authority\",\"categories\":[\"exam\"],"
        "\"period\":{\"start\":\"2026-11-24T06:30:00.001Z\"}},"
        "{\"consent_id\":\"g-start\",\"grantee\":\"lab-net\",\"categories\":[\"survey\"],"
        "\"purposes\":[\"treatment\"],\"period\":{\"start\":\"2026-11-24T06:30:00.000Z\"}}]");
    /* long ago: only those without a start */
    expect_list("PL", ms("2020-01-01T00:00:00Z"),
                "[{\"consent_id\":\"b-open\",\"grantee\":\"lab-net\",\"categories\":[\"exam\"],"
                "\"data_period\":{\"end\":\"2026-01-01T00:00:00.000Z\"}},"
                "{\"consent_id\":\"c-expired\",\"grantee\":\"authority\",\"categories\":[\"exam\"],"
                "\"period\":{\"end\":\"2026-11-24T06:29:59.999Z\"}},"
                "{\"consent_id\":\"f-edge\",\"grantee\":\"authority\","
                "\"categories\":[\"vital-signs\",\"laboratory\"],"
                "\"period\":{\"end\":\"2026-11-24T06:30:00.000Z\"}}]");
    expect_list("PX", NOW_MS, "[]");
    CU_ASSERT_EQUAL(eg_consent_list(st, "PL", NOW_MS, NULL), EG_E_USAGE);
    CU_ASSERT_EQUAL(eg_consent_list(st, NULL, NOW_MS, &out), EG_E_USAGE);
    CU_ASSERT_PTR_NULL(out);
}

/* ---- storage errors ----------------------------------------------------- */

static void test_storage_errors(void)
{
    struct eg_store *bad = NULL;
    struct eg_directive d;
    struct eg_error e = {EG_OK, ""};
    char path[128];
    cJSON *out = (cJSON *)1;

    /* a row that eg_consent_apply would never write */
    CU_ASSERT_EQUAL(eg_store_exec(st,
                                  "INSERT INTO consents VALUES('PR', 'r', 'authority',"
                                  " '[\"vital\"]', NULL, NULL, NULL, NULL, NULL, 1, 1, 1)",
                                  &e),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_lookup(st, "PR", "r", &d), EG_E_DB);
    CU_ASSERT_EQUAL(eg_consent_list(st, "PR", NOW_MS, &out), EG_E_DB);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(eg_consent_permits(st, "PR", AUTH, "vital-signs", NOW_MS, NOW_MS), 0);
    CU_ASSERT_EQUAL(eg_store_exec(st,
                                  "UPDATE consents SET categories = '[\"exam\"]',"
                                  " purposes = '[]' WHERE patient_id = 'PR'",
                                  &e),
                    EG_OK);
    CU_ASSERT_EQUAL(eg_consent_lookup(st, "PR", "r", &d), EG_E_DB);

    /* no consents table: -1 / EG_E_DB, never a permit */
    snprintf(path, sizeof path, "%s/broken.db", tmpdir);
    CU_ASSERT_EQUAL_FATAL(eg_store_open(path, EG_STORE_CREATE, &bad, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_store_exec(bad, "DROP TABLE consents", &e), EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(bad, "P1", AUTH, "vital-signs", NOW_MS, NOW_MS), -1);
    CU_ASSERT_EQUAL(eg_consent_lookup(bad, "P1", "c", &d), EG_E_DB);
    CU_ASSERT_EQUAL(eg_consent_list(bad, "P1", NOW_MS, &out), EG_E_DB);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(parse_text(GRANT_SPEC, &d, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_consent_apply(bad, "P1", &d, 1, NOW_MS), EG_E_DB);
    eg_store_close(bad);

    /* read-only connection: apply fails, reads work */
    snprintf(path, sizeof path, "%s/consent.db", tmpdir);
    CU_ASSERT_EQUAL_FATAL(eg_store_open(path, EG_STORE_READONLY, &bad, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_consent_permits(bad, "PA", AUTH, "exam", NOW_MS, NOW_MS), 1);
    CU_ASSERT_EQUAL(eg_consent_apply(bad, "P1", &d, 1, NOW_MS), EG_E_DB);
    eg_store_close(bad);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;
    char db[128];
    struct eg_error e = {EG_OK, ""};

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_consent_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/consent.db", tmpdir);
    if (eg_store_open(db, EG_STORE_CREATE, &st, &e) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        remove_tree(tmpdir);
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("directive", NULL, NULL);
    if (!s || !CU_add_test(s, "eg_grantees_parse NAME:PURPOSE", test_grantees_parse) ||
        !CU_add_test(s, "every fixture is listed in cases.txt", test_fixtures_listed) ||
        !CU_add_test(s, "good and bad directives (cases.txt)", test_fixtures) ||
        !CU_add_test(s, "edges: no grantees, nonce/issued, details", test_directive_edges)) {
        CU_cleanup_registry();
        return 1;
    }
    s = CU_add_suite("resource", NULL, NULL);
    if (!s || !CU_add_test(s, "validated samples are current", test_resource_samples) ||
        !CU_add_test(s, "revoke without grant, all categories", test_resource_shapes)) {
        CU_cleanup_registry();
        return 1;
    }
    s = CU_add_suite("store", NULL, NULL);
    if (!s || !CU_add_test(s, "grant, replace, revoke, not_found", test_apply_lookup) ||
        !CU_add_test(s, "policy: category, purpose, period, data_period", test_permits) ||
        !CU_add_test(s, "policy query plan and rate", test_permits_plan) ||
        !CU_add_test(s, "consents in force now", test_list) ||
        !CU_add_test(s, "storage errors deny", test_storage_errors)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    eg_store_close(st);
    remove_tree(tmpdir);
    return failures != 0;
}

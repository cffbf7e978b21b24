/*
 * test_sim_hospital.c — CUnit tests of firmware-sim/sim_hospital_msgs.c:
 * the simulated hospital's FHIR Bundles and HL7 ORU^R01 messages must be
 * accepted by the gateway's own parsers exactly as the ingest step runs
 * them for ehr/hospital/{id}/records (gateway/eg_ingest.c: a payload
 * starting with MSH -> eg_hl7_parse, else egjson_parse + eg_fhir_in_parse),
 * with the expected number of observations, the message id and the MRN as
 * the patient identifier; and they must be reproducible from the seed.
 */
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_fhir_in.h"
#include "eg_hl7.h"
#include "eg_hospital.h"
#include "eg_json.h"
#include "eg_testutil.h"
#include "sim_hospital_msgs.h"
#include "sim_rand.h"

#define SEEDS 500
#define BASE_MS 1795501800000LL /* 2026-11-24T06:30:00.000Z */
#define HOSP "H1"

typedef char *(*gen_fn)(const char *, const char *, const char *, int64_t, struct sim_rand *,
                        size_t *);

/* The inputs of seed i: some ids carry HL7 delimiters and JSON specials to
 * exercise escaping, and some times have milliseconds. */
static void inputs(uint64_t i, char *msg_id, size_t mn, char *mrn, size_t rn, int64_t *ms)
{
    if (i % 7 == 3) {
        snprintf(msg_id, mn, "MSG|%" PRIu64 "^a~b\\c&d\"e", i);
        snprintf(mrn, rn, "MRN^%" PRIu64 "|x&y~z\\w\"q", i);
    } else {
        snprintf(msg_id, mn, "SIM-%" PRIu64, i);
        snprintf(mrn, rn, "MRN-" HOSP "-%" PRIu64, i % 50 + 1);
    }
    *ms = BASE_MS + (int64_t)i * 3600000 + (i % 3 == 0 ? (int64_t)(i % 1000) : 0);
}

/* Number of OBX segments of an ER7 message (segments end in \r). */
static size_t count_obx(const char *s)
{
    size_t n = 0;

    if (strncmp(s, "OBX|", 4) == 0)
        n++;
    for (s = strchr(s, '\r'); s; s = strchr(s + 1, '\r'))
        if (strncmp(s + 1, "OBX|", 4) == 0)
            n++;
    return n;
}

/* Number of Bundle entries, parsed independently of the gateway. */
static size_t count_entries(const char *s)
{
    cJSON *root = cJSON_Parse(s);
    size_t n = (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "entry"));

    cJSON_Delete(root);
    return n;
}

/* Checks what the gateway made of one message. */
static void check_parsed(const char *what, uint64_t seed, eg_err rc, const struct eg_error *e,
                         const struct eg_hmsg *h, size_t want_n, const char *msg_id,
                         const char *mrn, int64_t ms)
{
    size_t k;

    CHECKF(rc == EG_OK, "%s seed %" PRIu64 ": rejected %s: %s", what, seed, eg_wire_code(rc),
           e->detail);
    if (rc != EG_OK)
        return;
    CHECKF(want_n >= 1 && want_n <= 4, "%s seed %" PRIu64 ": %zu observations", what, seed, want_n);
    CHECKF(h->n == want_n, "%s seed %" PRIu64 ": gateway saw %zu observations, want %zu", what,
           seed, h->n, want_n);
    CHECKF(h->have_msg_id && strcmp(h->msg_id, msg_id) == 0,
           "%s seed %" PRIu64 ": msg_id \"%s\", want \"%s\"", what, seed, h->msg_id, msg_id);
    for (k = 0; k < h->n; k++) {
        const struct eg_hobs *o = &h->obs[k];
        const char *status =
            egjson_str(o->resource, "status") ? egjson_str(o->resource, "status") : "";

        CHECKF(o->nidents >= 1 && strcmp(o->idents[0], mrn) == 0 && o->patient_id[0] == '\0',
               "%s seed %" PRIu64 " obs %zu: patient identifier \"%s\", want \"%s\"", what, seed, k,
               o->nidents ? o->idents[0] : "", mrn);
        CHECKF(o->effective_ms == ms,
               "%s seed %" PRIu64 " obs %zu: effective %" PRId64 ", want %" PRId64, what, seed, k,
               o->effective_ms, ms);
        CHECKF(strcmp(o->category, "laboratory") == 0 || strcmp(o->category, "vital-signs") == 0,
               "%s seed %" PRIu64 " obs %zu: category %s", what, seed, k, o->category);
        CHECKF(strcmp(status, "final") == 0, "%s seed %" PRIu64 " obs %zu: status %s", what, seed,
               k, status);
    }
}

/* Which LOINC codes and message sizes the seeds produced. */
struct seen {
    int code[9];
    int count[5];
};

static const char *const codes[9] = {"2339-0", "718-7",  "2823-3",  "2160-0", "8867-4",
                                     "8310-5", "2708-6", "59408-5", "8480-6"};

static void note_seen(struct seen *sn, const char *payload, size_t n)
{
    size_t i;

    for (i = 0; i < 9; i++)
        if (strstr(payload, codes[i]))
            sn->code[i] = 1;
    if (n <= 4)
        sn->count[n] = 1;
}

static void check_variety(const char *what, const struct seen *sn)
{
    size_t i;

    for (i = 0; i < 9; i++)
        CHECKF(sn->code[i], "%s: LOINC %s never drawn in %d seeds", what, codes[i], SEEDS);
    for (i = 1; i <= 4; i++)
        CHECKF(sn->count[i], "%s: never %zu observations in %d seeds", what, i, SEEDS);
}

static void test_hl7_accepted(void)
{
    struct seen sn;
    uint64_t i;

    memset(&sn, 0, sizeof sn);
    for (i = 1; i <= SEEDS; i++) {
        char msg_id[64], mrn[64];
        struct sim_rand r;
        struct eg_hmsg h;
        struct eg_error e = {0};
        struct eg_hosp_ctx ctx;
        int64_t ms;
        size_t len = 0, n;
        char *p;
        eg_err rc;

        inputs(i, msg_id, sizeof msg_id, mrn, sizeof mrn, &ms);
        sim_rand_seed(&r, i);
        p = sim_hosp_hl7_oru(HOSP, msg_id, mrn, ms, &r, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(len, strlen(p));
        CU_ASSERT_EQUAL(strncmp(p, "MSH|^~\\&|", 9), 0);
        CHECKF(p[len - 1] == '\r', "seed %" PRIu64 ": last segment not ended by CR", i);
        CHECKF(!strchr(p, '\n'), "seed %" PRIu64 ": LF in an ER7 message", i);
        n = count_obx(p);
        note_seen(&sn, p, n);
        /* as the ingest step does; a hospital with a UTC offset must not
         * shift the times (they carry +0000) */
        ctx.hospital_id = HOSP;
        ctx.utc_offset_min = (int)(i % 5) * 60 - 120;
        ctx.now_ms = ms + 1000;
        memset(&h, 0, sizeof h);
        rc = eg_hl7_parse((const uint8_t *)p, len, &ctx, &h, &e);
        check_parsed("hl7", i, rc, &e, &h, n, msg_id, mrn, ms);
        eg_hmsg_clear(&h);
        /* the gateway's ACK of it names the message id */
        if (rc == EG_OK && i % 7 != 3) {
            char *ack = eg_hl7_ack((const uint8_t *)p, len, "AA", NULL, ms, "EG1");
            char want[96];

            snprintf(want, sizeof want, "\rMSA|AA|%s\r", msg_id);
            CHECKF(ack && strstr(ack, want), "seed %" PRIu64 ": ACK %s", i, ack ? ack : "(null)");
            free(ack);
        }
        free(p);
    }
    check_variety("hl7", &sn);
}

static void test_fhir_accepted(void)
{
    struct seen sn;
    uint64_t i;

    memset(&sn, 0, sizeof sn);
    for (i = 1; i <= SEEDS; i++) {
        char msg_id[64], mrn[64];
        struct sim_rand r;
        struct eg_hmsg h;
        struct eg_error e = {0};
        struct eg_hosp_ctx ctx;
        cJSON *root = NULL;
        int64_t ms;
        size_t len = 0, n;
        char *p;
        eg_err rc;

        inputs(i, msg_id, sizeof msg_id, mrn, sizeof mrn, &ms);
        sim_rand_seed(&r, i);
        p = sim_hosp_fhir_bundle(HOSP, msg_id, mrn, ms, &r, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(len, strlen(p));
        CU_ASSERT_NOT_EQUAL(strncmp(p, "MSH", 3), 0); /* routed to the FHIR parser */
        n = count_entries(p);
        note_seen(&sn, p, n);
        ctx.hospital_id = HOSP;
        ctx.utc_offset_min = 0;
        ctx.now_ms = ms + 1000;
        memset(&h, 0, sizeof h);
        rc = egjson_parse((const uint8_t *)p, len, &root, &e);
        CHECKF(rc == EG_OK, "fhir seed %" PRIu64 ": egjson_parse: %s", i, e.detail);
        if (rc == EG_OK)
            rc = eg_fhir_in_parse(root, &ctx, &h, &e);
        check_parsed("fhir", i, rc, &e, &h, n, msg_id, mrn, ms);
        eg_hmsg_clear(&h);
        cJSON_Delete(root);
        free(p);
    }
    check_variety("fhir", &sn);
}

/* Same seed -> same bytes (and the same state after); another msg_id ->
 * other bytes; another seed -> (almost always) other content. */
static void check_repro(const char *what, gen_fn gen)
{
    size_t differ = 0;
    uint64_t i;

    for (i = 1; i <= SEEDS; i++) {
        struct sim_rand r1, r2, r3, r4;
        size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
        char *a, *b, *c, *d;

        sim_rand_seed(&r1, i);
        sim_rand_seed(&r2, i);
        sim_rand_seed(&r3, i);
        sim_rand_seed(&r4, i + 100000);
        a = gen(HOSP, "M-1", "MRN-7", BASE_MS, &r1, &l1);
        b = gen(HOSP, "M-1", "MRN-7", BASE_MS, &r2, &l2);
        c = gen(HOSP, "M-2", "MRN-7", BASE_MS, &r3, &l3);
        d = gen(HOSP, "M-1", "MRN-7", BASE_MS, &r4, &l4);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CHECKF(l1 == l2 && memcmp(a, b, l1) == 0, "%s seed %" PRIu64 ": same seed, other bytes",
               what, i);
        CHECKF(memcmp(&r1, &r2, sizeof r1) == 0, "%s seed %" PRIu64 ": other state after", what, i);
        CHECKF(l1 != l3 || memcmp(a, c, l1) != 0, "%s seed %" PRIu64 ": another msg_id, same bytes",
               what, i);
        differ += l1 != l4 || memcmp(a, d, l1) != 0;
        free(a);
        free(b);
        free(c);
        free(d);
    }
    CHECKF(differ > SEEDS * 9 / 10, "%s: only %zu of %d seed pairs differ", what, differ, SEEDS);
}

static void test_repro_hl7(void)
{
    check_repro("hl7", sim_hosp_hl7_oru);
}

static void test_repro_fhir(void)
{
    check_repro("fhir", sim_hosp_fhir_bundle);
}

static void test_shape(void)
{
    struct sim_rand r;
    size_t len = 0;
    char *p;

    /* one fixed message of each kind, read as a person would */
    sim_rand_seed(&r, 42);
    p = sim_hosp_hl7_oru(HOSP, "MSG00042", "MRN-4711", BASE_MS + 123, &r, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(strncmp(p,
                            "MSH|^~\\&|SIMLAB|H1|EHRGATE|NATIONAL|20261124063000.123+0000||"
                            "ORU^R01^ORU_R01|MSG00042|P|2.5\rPID|1||MRN-4711^^^H1^MR||",
                            strlen("MSH|^~\\&|SIMLAB|H1|EHRGATE|NATIONAL|20261124063000.123+0000||"
                                   "ORU^R01^ORU_R01|MSG00042|P|2.5\rPID|1||MRN-4711^^^H1^MR||")),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(p, "\rOBR|1||MSG00042-1|"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p, "|||20261124063000.123+0000\r"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p, "|||F|||20261124063000.123+0000\r"));
    free(p);

    sim_rand_seed(&r, 42);
    p = sim_hosp_fhir_bundle(HOSP, "MSG00042", "MRN-4711", BASE_MS, &r, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(strncmp(p,
                            "{\"resourceType\":\"Bundle\",\"identifier\":{\"system\":"
                            "\"urn:ehrgate-sim:hospital:H1:message\",\"value\":\"MSG00042\"},"
                            "\"type\":\"collection\",\"timestamp\":\"2026-11-24T06:30:00.000Z\","
                            "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                            "\"status\":\"final\",\"category\":",
                            strlen("{\"resourceType\":\"Bundle\",\"identifier\":{\"system\":"
                                   "\"urn:ehrgate-sim:hospital:H1:message\",\"value\":"
                                   "\"MSG00042\"},\"type\":\"collection\",\"timestamp\":"
                                   "\"2026-11-24T06:30:00.000Z\",\"entry\":[{\"resource\":{"
                                   "\"resourceType\":\"Observation\",\"status\":\"final\","
                                   "\"category\":")),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(p,
                                  "\"subject\":{\"identifier\":{\"system\":"
                                  "\"urn:ehrgate-sim:hospital:H1:mrn\",\"value\":\"MRN-4711\"}}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p, "\"effectiveDateTime\":\"2026-11-24T06:30:00.000Z\""));
    CU_ASSERT_PTR_NULL(strstr(p, "\"id\":"));
    free(p);
}

static void test_arguments(void)
{
    struct sim_rand r;
    size_t len = 0;

    sim_rand_seed(&r, 1);
    CU_ASSERT_PTR_NULL(sim_hosp_hl7_oru(NULL, "M", "R", BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_hl7_oru(HOSP, NULL, "R", BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_hl7_oru(HOSP, "M", NULL, BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_hl7_oru(HOSP, "M", "R", BASE_MS, NULL, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_hl7_oru(HOSP, "M", "R", BASE_MS, &r, NULL));
    CU_ASSERT_PTR_NULL(sim_hosp_fhir_bundle(NULL, "M", "R", BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_fhir_bundle(HOSP, NULL, "R", BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_fhir_bundle(HOSP, "M", NULL, BASE_MS, &r, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_fhir_bundle(HOSP, "M", "R", BASE_MS, NULL, &len));
    CU_ASSERT_PTR_NULL(sim_hosp_fhir_bundle(HOSP, "M", "R", BASE_MS, &r, NULL));
}

static int no_setup(void) { return 0; }
static void no_teardown(void) {}

int main(void)
{
    static const struct eg_test list[] = {
        {"HL7 ORU^R01 accepted by eg_hl7_parse", test_hl7_accepted},
        {"FHIR Bundle accepted by eg_fhir_in_parse", test_fhir_accepted},
        {"HL7 reproducible from the seed", test_repro_hl7},
        {"FHIR reproducible from the seed", test_repro_fhir},
        {"fixed messages", test_shape},
        {"arguments", test_arguments},
    };
    char dir[] = "/tmp/eg_test_sim_hospital_XXXXXX";
    return eg_test_main("sim_hospital", dir, list, sizeof list / sizeof list[0], no_setup,
                        no_teardown);
}

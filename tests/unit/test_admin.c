/*
 * test_admin.c — gateway/eg_admin: the configured admin keys and the admin
 * operations (SPEC §10, §13), plus the registry functions they use.
 *
 * A real SQLite file in a mkdtemp() directory. Each request is parsed with
 * egjson_parse and executed between eg_store_begin and eg_store_commit, as
 * the gateway's pipeline will. For every refusal (rejected / not_found) a
 * dump of the registry tables taken before and after must be identical:
 * nothing changed. Admin keys are made by eg_key_generate and written to
 * PEM files; the fixture p256.pub checks the signer name against a
 * fingerprint computed by openssl (tests/fixtures/keys/README).
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_admin.h"
#include "eg_config.h"
#include "eg_crypto.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_queue.h"
#include "eg_registry.h"
#include "eg_signed.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_testutil.h"

#define KEYS EG_FIXTURES "/keys/"
#define NOW_MS 1795501800150LL   /* 2026-11-24T06:30:00.150Z */
#define T_REBIND 1795503600000LL /* 2026-11-24T07:00:00.000Z */
#define ADMIN_TOPIC "ehr/admin/request"

static char tmpdir[64];
static struct eg_store *st;
static struct eg_rng *rng;
static struct eg_key *pk1, *pk2, *ak1, *ak2, *stranger;
static char pem1[EG_PEM_PUB_MAX], pem2[EG_PEM_PUB_MAX];
static char ak1_path[256], ak2_path[256];

/* ---- helpers ---------------------------------------------------------- */

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f)
        return -1;
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return 0;
}

/* JSON string literal of s (PEM newlines escaped) into out. */
static void json_quote(const char *s, char *out, size_t size)
{
    cJSON *str = cJSON_CreateString(s);
    char *t = cJSON_PrintUnformatted(str);
    snprintf(out, size, "%s", t ? t : "null");
    free(t);
    cJSON_Delete(str);
}

/* Every registry row (and pending erasures) as one text, to prove that a
 * refused request changed nothing. */
static int dump_cb(void *arg, int n, char **vals, char **cols)
{
    char *buf = arg;
    size_t len = strlen(buf);
    (void)cols;
    for (int i = 0; i < n && len < 65000; i++)
        len += (size_t)snprintf(buf + len, 65536 - len, "%s|", vals[i] ? vals[i] : "NULL");
    if (len < 65000)
        buf[len++] = '\n', buf[len] = '\0';
    return 0;
}

static char *dump(void)
{
    static const char *const sql[] = {
        "SELECT patient_id, pubkey, last_nonce, created_at FROM patients ORDER BY 1",
        "SELECT hospital_id, value, patient_id FROM identifiers ORDER BY 1, 2",
        "SELECT hospital_id, pubkey, utc_offset_min FROM hospitals ORDER BY 1",
        "SELECT device_id, type, pubkey, active FROM devices ORDER BY 1",
        "SELECT device_id, from_ms, patient_id FROM bindings ORDER BY 1, 2",
        "SELECT patient_id, requested_at FROM erase_requests ORDER BY 1",
        "SELECT signer, last_nonce FROM signers ORDER BY 1"};
    char *buf = calloc(1, 65536);
    CU_ASSERT_FATAL(buf != NULL);
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, 65536 - len, "--\n");
        CU_ASSERT(sqlite3_exec(eg_store_db(st), sql[i], dump_cb, buf, NULL) == SQLITE_OK);
    }
    return buf;
}

/* Executes one request (JSON text) in its own transaction. Returns the
 * reply (caller frees); approve receives approve_patient. */
static cJSON *exec_at(unsigned line, const char *json, char approve[65])
{
    cJSON *req = NULL, *reply = NULL;
    struct eg_error e = {0};
    char dummy[65];
    eg_err rc;

    if (!approve)
        approve = dummy;
    rc = egjson_parse((const uint8_t *)json, strlen(json), &req, &e);
    check_at(line, rc == EG_OK, "request does not parse: %s (%s)", e.detail, json);
    if (rc != EG_OK)
        return NULL;
    check_at(line, eg_store_begin(st) == EG_OK, "BEGIN");
    rc = eg_admin_execute(st, req, NOW_MS, &reply, approve);
    check_at(line, rc == EG_OK, "eg_admin_execute returned %s for %s", eg_strerror(rc), json);
    check_at(line, rc != EG_OK || reply != NULL, "no reply");
    if (rc == EG_OK)
        check_at(line, eg_store_commit(st) == EG_OK, "COMMIT");
    else
        eg_store_rollback(st);
    cJSON_Delete(req);
    return reply;
}

/* Expects status "ok" and returns the reply. */
static cJSON *ok_at(unsigned line, const char *op, const char *json)
{
    cJSON *r = exec_at(line, json, NULL);
    const char *status = r ? egjson_str(r, "status") : NULL;
    char *text = r ? cJSON_PrintUnformatted(r) : NULL;
    check_at(line, status && strcmp(status, "ok") == 0, "want ok, got %s", text ? text : "NULL");
    check_at(line, r && egjson_str(r, "op") && strcmp(egjson_str(r, "op"), op) == 0,
             "op not echoed: %s", text ? text : "NULL");
    free(text);
    return r;
}
#define OK(op, json) ok_at(__LINE__, (op), (json))

/* Expects a refusal: status (rejected / not_found) and for rejected the
 * wire code and a detail starting with prefix; the registry must be
 * unchanged. */
static void refused_at(unsigned line, const char *json, const char *status, const char *code,
                       const char *prefix)
{
    char *before = dump(), *after, *text;
    char approve[65] = "x";
    cJSON *r = exec_at(line, json, approve);
    const cJSON *err = r ? cJSON_GetObjectItemCaseSensitive(r, "error") : NULL;

    after = dump();
    text = r ? cJSON_PrintUnformatted(r) : NULL;
    check_at(line, r && egjson_str(r, "status") && strcmp(egjson_str(r, "status"), status) == 0,
             "want %s, got %s (%s)", status, text ? text : "NULL", json);
    check_at(line, strcmp(before, after) == 0, "the registry changed: %s", json);
    check_at(line, approve[0] == '\0', "approve_patient set on a refusal");
    if (strcmp(status, "rejected") == 0) {
        const char *c = egjson_str(err, "code"), *d = egjson_str(err, "detail");
        check_at(line, c && strcmp(c, code) == 0, "want code %s, got %s", code,
                 text ? text : "NULL");
        if (prefix)
            check_at(line, d && strncmp(d, prefix, strlen(prefix)) == 0,
                     "detail should start with \"%s\": %s", prefix, text ? text : "NULL");
    } else {
        check_at(line, err == NULL, "not_found carries no error: %s", text ? text : "NULL");
    }
    free(text);
    free(before);
    free(after);
    cJSON_Delete(r);
}
#define REJECTED(json, code, prefix) refused_at(__LINE__, (json), "rejected", (code), (prefix))
#define NOT_FOUND(json) refused_at(__LINE__, (json), "not_found", NULL, NULL)

static int setup(void)
{
    struct eg_error e = {0};
    char path[128];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg-admin-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof path, "%s/gw.db", tmpdir);
    if (eg_store_open(path, EG_STORE_CREATE, &st, &e) != EG_OK || eg_rng_new(&rng) != EG_OK ||
        eg_key_generate(rng, &pk1, &e) != EG_OK || eg_key_generate(rng, &pk2, &e) != EG_OK ||
        eg_key_generate(rng, &ak1, &e) != EG_OK || eg_key_generate(rng, &ak2, &e) != EG_OK ||
        eg_key_generate(rng, &stranger, &e) != EG_OK ||
        eg_key_public_pem(pk1, pem1, sizeof pem1) != EG_OK ||
        eg_key_public_pem(pk2, pem2, sizeof pem2) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        return -1;
    }
    /* admin public keys as files, as --admin-pubkey names them */
    snprintf(ak1_path, sizeof ak1_path, "%s/admin1.pub", tmpdir);
    snprintf(ak2_path, sizeof ak2_path, "%s/admin2.pub", tmpdir);
    {
        char pem[EG_PEM_PUB_MAX];
        if (eg_key_public_pem(ak1, pem, sizeof pem) != EG_OK || write_text(ak1_path, pem) != 0 ||
            eg_key_public_pem(ak2, pem, sizeof pem) != EG_OK || write_text(ak2_path, pem) != 0)
            return -1;
    }
    return 0;
}

static void teardown(void)
{
    eg_store_close(st);
    eg_key_free(pk1);
    eg_key_free(pk2);
    eg_key_free(ak1);
    eg_key_free(ak2);
    eg_key_free(stranger);
    eg_rng_free(rng);
    if (tmpdir[0])
        remove_tree(tmpdir);
}

/* ---- tests ------------------------------------------------------------- */

static void test_register_patient(void)
{
    char req[2048], q[600], pem[EG_PUBKEY_PEM_MAX], patient[EG_ID_MAX];
    cJSON *r;
    struct eg_key *k = NULL;
    uint8_t fp[32];
    char hex[65];

    json_quote(pem1, q, sizeof q);
    snprintf(req, sizeof req,
             "{\"op\":\"register_patient\",\"nonce\":1,\"issued\":\"2026-11-24T06:30:00Z\","
             "\"patient_id\":\"P1\",\"pubkey\":%s,\"identifiers\":[{\"hospital\":\"H1\","
             "\"value\":\"MRN-001\"},{\"hospital\":\"H2\",\"value\":\"77 12\"}]}",
             q);
    r = OK("register_patient", req);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P1");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(r, "identifiers")->valuedouble, 2);
    CU_ASSERT_EQUAL_FATAL(eg_key_parse_public(pem1, strlen(pem1) + 1, &k, NULL), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(k, fp), EG_OK);
    eg_key_free(k);
    {
        static const char hexd[] = "0123456789abcdef";
        for (int i = 0; i < 32; i++)
            hex[2 * i] = hexd[fp[i] >> 4], hex[2 * i + 1] = hexd[fp[i] & 15];
        hex[64] = '\0';
    }
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "key_fingerprint"), hex);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_patient_key(st, "P1", pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, pem1);
    CU_ASSERT_EQUAL(eg_registry_identifier(st, "H1", "MRN-001", patient), EG_OK);
    CU_ASSERT_STRING_EQUAL(patient, "P1");
    CU_ASSERT_EQUAL(eg_registry_identifier(st, "H2", "77 12", patient), EG_OK);
    CU_ASSERT_STRING_EQUAL(patient, "P1");

    /* no key, no identifiers */
    r = OK("register_patient", "{\"op\":\"register_patient\",\"patient_id\":\"P2\"}");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(r, "identifiers")->valuedouble, 0);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(r, "key_fingerprint"));
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_patient_key(st, "P2", pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, "");
    r = OK("register_patient",
           "{\"op\":\"register_patient\",\"patient_id\":\"P3\",\"identifiers\":[]}");
    cJSON_Delete(r);

    /* an existing id -> conflict */
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P1\"}", "conflict", "patient P1");
    /* an identifier already registered: the patient is not created either
     * (and the detail does not repeat the identifier value) */
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P4\",\"identifiers\":[{\"hospital\":"
             "\"H9\",\"value\":\"A\"},{\"hospital\":\"H1\",\"value\":\"MRN-001\"}]}",
             "conflict", "identifiers[1]: this hospital identifier is already registered");
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P4"), EG_E_UNKNOWN_PATIENT);
    CU_ASSERT_EQUAL(eg_registry_identifier(st, "H9", "A", patient), EG_E_UNKNOWN_PATIENT);
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P4\",\"identifiers\":[{\"hospital\":"
             "\"H9\",\"value\":\"A\"},{\"hospital\":\"H9\",\"value\":\"A\"}]}",
             "conflict", "identifiers[1]");

    /* schema */
    REJECTED("{\"op\":\"register_patient\"}", "schema", "patient_id: missing");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P 5\"}", "schema", "patient_id:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"\"}", "schema", "patient_id:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":5}", "schema", "patient_id:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"pubkey\":\"nope\"}", "schema",
             "pubkey:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"pubkey\":null}", "schema",
             "pubkey: must be a string");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":{}}", "schema",
             "identifiers: must be an array");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":[\"H1:1\"]}",
             "schema", "identifiers[0]: must be an object");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":[{\"hospital\":"
             "\"H1\"}]}",
             "schema", "identifiers[0].value:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":[{\"hospital\":"
             "\"H1\",\"value\":\"\"}]}",
             "schema", "identifiers[0].value:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":[{\"hospital\":"
             "\"H 1\",\"value\":\"1\"}]}",
             "schema", "identifiers[0].hospital:");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"identifiers\":[{\"hospital\":"
             "\"H1\",\"value\":\"1\",\"system\":\"x\"}]}",
             "schema", "identifiers[0].system: unknown member");
    REJECTED("{\"op\":\"register_patient\",\"patient_id\":\"P5\",\"pubkeys\":\"x\"}", "schema",
             "pubkeys: unknown member");
    /* keys that are not P-256 */
    {
        char rsa[1024], p384[1024];
        CU_ASSERT_FATAL(read_text(KEYS "rsa2048.pub", rsa, sizeof rsa) == 0);
        CU_ASSERT_FATAL(read_text(KEYS "p384.pub", p384, sizeof p384) == 0);
        json_quote(rsa, q, sizeof q);
        snprintf(req, sizeof req,
                 "{\"op\":\"register_patient\",\"patient_id\":\"P5\","
                 "\"pubkey\":%s}",
                 q);
        REJECTED(req, "schema", "pubkey: not a P-256 public key");
        json_quote(p384, q, sizeof q);
        snprintf(req, sizeof req,
                 "{\"op\":\"register_patient\",\"patient_id\":\"P5\","
                 "\"pubkey\":%s}",
                 q);
        REJECTED(req, "schema", "pubkey: not a P-256 public key");
    }
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P5"), EG_E_UNKNOWN_PATIENT);
}

static void test_ops_and_schema(void)
{
    /* unknown op -> unsupported, echoed */
    char *before = dump(), *after;
    cJSON *r = exec_at(__LINE__, "{\"op\":\"drop_tables\",\"nonce\":1}", NULL);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "op"), "drop_tables");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "rejected");
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetObjectItem(r, "error"), "code"), "unsupported");
    cJSON_Delete(r);
    /* missing op / not a string: op null, schema */
    r = exec_at(__LINE__, "{\"nonce\":1,\"patient_id\":\"P1\"}", NULL);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(r, "op")));
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetObjectItem(r, "error"), "code"), "schema");
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetObjectItem(r, "error"), "detail"), "op: missing");
    cJSON_Delete(r);
    r = exec_at(__LINE__, "{\"op\":7}", NULL);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(r, "op")));
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetObjectItem(r, "error"), "code"), "schema");
    cJSON_Delete(r);
    r = exec_at(__LINE__, "[\"register_patient\"]", NULL);
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetObjectItem(r, "error"), "code"), "schema");
    cJSON_Delete(r);
    after = dump();
    CU_ASSERT_STRING_EQUAL(before, after);
    free(before);
    free(after);
    REJECTED("{\"op\":\"Register_Patient\",\"patient_id\":\"P9\"}", "unsupported", "op:");
    /* nonce and issued are allowed members of every op */
    r = OK("register_hospital", "{\"op\":\"register_hospital\",\"nonce\":9,\"issued\":"
                                "\"2026-11-24T06:30:00Z\",\"hospital_id\":\"H0\"}");
    cJSON_Delete(r);
}

static void test_set_patient_key(void)
{
    char req[2048], q[600], pem[EG_PUBKEY_PEM_MAX];
    cJSON *r;

    json_quote(pem2, q, sizeof q);
    snprintf(req, sizeof req, "{\"op\":\"set_patient_key\",\"patient_id\":\"P1\",\"pubkey\":%s}",
             q);
    r = OK("set_patient_key", req);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P1");
    CU_ASSERT_EQUAL(strlen(egjson_str(r, "key_fingerprint")), 64);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_patient_key(st, "P1", pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, pem2);
    /* a patient without a key gets one */
    snprintf(req, sizeof req, "{\"op\":\"set_patient_key\",\"patient_id\":\"P2\",\"pubkey\":%s}",
             q);
    cJSON_Delete(OK("set_patient_key", req));
    CU_ASSERT_EQUAL(eg_registry_patient_key(st, "P2", pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, pem2);

    /* the old key is useless from now on, the new one works (eg_signed) */
    {
        const char *payload = "{\"op\":\"consents\",\"nonce\":1,\"issued\":"
                              "\"2026-11-24T06:30:00Z\"}";
        const char *topic = "ehr/patient/P1/request";
        char sig[EG_SIG_B64_MAX];
        uint8_t digest[32];
        struct eg_signed s;
        struct eg_error e = {0};
        struct eg_msg *m;

        eg_topic_digest(topic, payload, strlen(payload), digest);
        CU_ASSERT_EQUAL_FATAL(eg_key_sign_digest(pk1, rng, digest, sig, sizeof sig), EG_OK);
        m = eg_msg_new(topic, strlen(topic), payload, strlen(payload), sig, strlen(sig), NULL, 0,
                       NULL, 0);
        CU_ASSERT_EQUAL(eg_registry_patient_key(st, "P1", pem), EG_OK);
        CU_ASSERT_EQUAL(eg_signed_check(st, m, "patient:P1", pem, NOW_MS, &s, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
        CU_ASSERT_EQUAL_FATAL(eg_key_sign_digest(pk2, rng, digest, sig, sizeof sig), EG_OK);
        m = eg_msg_new(topic, strlen(topic), payload, strlen(payload), sig, strlen(sig), NULL, 0,
                       NULL, 0);
        CU_ASSERT_EQUAL(eg_signed_check(st, m, "patient:P1", pem, NOW_MS, &s, &e), EG_OK);
        eg_signed_clear(&s);
        eg_msg_free(m);
    }

    /* unknown patient -> not_found naming it */
    snprintf(req, sizeof req, "{\"op\":\"set_patient_key\",\"patient_id\":\"P77\",\"pubkey\":%s}",
             q);
    NOT_FOUND(req);
    r = exec_at(__LINE__, req, NULL);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P77");
    cJSON_Delete(r);
    /* schema */
    REJECTED("{\"op\":\"set_patient_key\",\"patient_id\":\"P1\"}", "schema", "pubkey: missing");
    REJECTED("{\"op\":\"set_patient_key\",\"patient_id\":\"P1\",\"pubkey\":\"x\"}", "schema",
             "pubkey:");
    REJECTED("{\"op\":\"set_patient_key\",\"patient_id\":\"P1\",\"pubkey\":\"\"}", "schema",
             "pubkey:");
    snprintf(req, sizeof req, "{\"op\":\"set_patient_key\",\"pubkey\":%s}", q);
    REJECTED(req, "schema", "patient_id: missing");
    /* a bad key for an unknown patient: the request is malformed first */
    REJECTED("{\"op\":\"set_patient_key\",\"patient_id\":\"P77\",\"pubkey\":\"x\"}", "schema",
             "pubkey:");
}

static void test_devices(void)
{
    char req[2048], q[600], patient[EG_ID_MAX];
    struct eg_device_rec d;
    cJSON *r;

    json_quote(pem1, q, sizeof q);
    snprintf(req, sizeof req,
             "{\"op\":\"register_device\",\"device_id\":\"D1\",\"patient_id\":\"P1\","
             "\"type\":\"pulse_oximeter\",\"pubkey\":%s}",
             q);
    r = OK("register_device", req);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "device_id"), "D1");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P1");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "type"), "pulse_oximeter");
    CU_ASSERT_PTR_NOT_NULL(egjson_str(r, "key_fingerprint"));
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D1", &d), EG_OK);
    CU_ASSERT_STRING_EQUAL(d.pubkey, pem1);
    CU_ASSERT_EQUAL(d.active, 1);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", NOW_MS, patient), EG_OK);
    CU_ASSERT_STRING_EQUAL(patient, "P1");
    cJSON_Delete(OK("register_device", "{\"op\":\"register_device\",\"device_id\":\"D2\","
                                       "\"patient_id\":\"P2\",\"type\":\"monitor\"}"));

    /* refusals */
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D1\",\"patient_id\":\"P2\","
             "\"type\":\"monitor\"}",
             "conflict", "device D1");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P99\","
             "\"type\":\"monitor\"}",
             "unknown_patient", "patient P99");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P1\","
             "\"type\":\"toaster\"}",
             "schema", "type:");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P1\"}", "schema",
             "type: missing");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P1\","
             "\"type\":1}",
             "schema", "type: must be a string");
    REJECTED("{\"op\":\"register_device\",\"patient_id\":\"P1\",\"type\":\"monitor\"}", "schema",
             "device_id: missing");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D/3\",\"patient_id\":\"P1\","
             "\"type\":\"monitor\"}",
             "schema", "device_id:");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"type\":\"monitor\"}", "schema",
             "patient_id: missing");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P1\","
             "\"type\":\"monitor\",\"pubkey\":\"-----BEGIN PUBLIC KEY-----\"}",
             "schema", "pubkey:");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D3\",\"patient_id\":\"P1\","
             "\"type\":\"monitor\",\"from\":\"2026-11-24T06:30:00Z\"}",
             "schema", "from: unknown member for register_device");

    /* rebind: history by time */
    r = OK("rebind_device", "{\"op\":\"rebind_device\",\"device_id\":\"D1\",\"patient_id\":"
                            "\"P2\",\"from\":\"2026-11-24T08:00:00+01:00\"}");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "from"), "2026-11-24T07:00:00.000Z");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P2");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T_REBIND - 1, patient), EG_OK);
    CU_ASSERT_STRING_EQUAL(patient, "P1");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T_REBIND, patient), EG_OK);
    CU_ASSERT_STRING_EQUAL(patient, "P2");
    NOT_FOUND("{\"op\":\"rebind_device\",\"device_id\":\"D404\",\"patient_id\":\"P1\","
              "\"from\":\"2026-11-24T07:00:00Z\"}");
    {
        cJSON *nf = exec_at(__LINE__,
                            "{\"op\":\"rebind_device\",\"device_id\":\"D404\","
                            "\"patient_id\":\"P1\",\"from\":\"2026-11-24T07:00:00Z\"}",
                            NULL);
        CU_ASSERT_STRING_EQUAL(egjson_str(nf, "op"), "rebind_device");
        CU_ASSERT_STRING_EQUAL(egjson_str(nf, "device_id"), "D404");
        cJSON_Delete(nf);
    }
    REJECTED("{\"op\":\"rebind_device\",\"device_id\":\"D1\",\"patient_id\":\"P99\","
             "\"from\":\"2026-11-24T09:00:00Z\"}",
             "unknown_patient", "patient P99");
    REJECTED("{\"op\":\"rebind_device\",\"device_id\":\"D1\",\"patient_id\":\"P1\","
             "\"from\":\"2026-11-24T09:00:00\"}",
             "schema", "from: must be an RFC 3339");
    REJECTED("{\"op\":\"rebind_device\",\"device_id\":\"D1\",\"patient_id\":\"P1\","
             "\"from\":1795503600000}",
             "schema", "from: must be a string");
    REJECTED("{\"op\":\"rebind_device\",\"device_id\":\"D1\",\"patient_id\":\"P1\"}", "schema",
             "from: missing");
    /* a malformed request about an unknown device is `schema`, not not_found */
    REJECTED("{\"op\":\"rebind_device\",\"device_id\":\"D404\",\"patient_id\":\"P1\","
             "\"from\":\"soon\"}",
             "schema", "from:");

    /* deregister: unknown to telemetry afterwards; history kept */
    r = OK("deregister_device", "{\"op\":\"deregister_device\",\"device_id\":\"D2\"}");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "device_id"), "D2");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D2", &d), EG_E_UNKNOWN_DEVICE);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D2", NOW_MS, patient), EG_OK);
    NOT_FOUND("{\"op\":\"deregister_device\",\"device_id\":\"D2\"}");
    NOT_FOUND("{\"op\":\"deregister_device\",\"device_id\":\"D404\"}");
    REJECTED("{\"op\":\"deregister_device\"}", "schema", "device_id: missing");
    /* a deregistered device cannot be rebound nor registered again */
    NOT_FOUND("{\"op\":\"rebind_device\",\"device_id\":\"D2\",\"patient_id\":\"P1\","
              "\"from\":\"2026-11-24T07:00:00Z\"}");
    REJECTED("{\"op\":\"register_device\",\"device_id\":\"D2\",\"patient_id\":\"P1\","
             "\"type\":\"monitor\"}",
             "conflict", "device D2");
    /* D1 is untouched */
    CU_ASSERT_EQUAL(eg_registry_device(st, "D1", &d), EG_OK);
}

static void test_hospitals(void)
{
    struct eg_hospital_rec h;
    char req[2048], q[600];
    cJSON *r;

    r = OK("register_hospital", "{\"op\":\"register_hospital\",\"hospital_id\":\"H1\","
                                "\"utc_offset\":\"-05:30\"}");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "hospital_id"), "H1");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "utc_offset"), "-05:30");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_hospital(st, "H1", &h), EG_OK);
    CU_ASSERT_EQUAL(h.utc_offset_min, -330);
    CU_ASSERT_STRING_EQUAL(h.pubkey, "");

    json_quote(pem2, q, sizeof q);
    snprintf(req, sizeof req,
             "{\"op\":\"register_hospital\",\"hospital_id\":\"H2\",\"pubkey\":%s,"
             "\"utc_offset\":\"+14:00\"}",
             q);
    r = OK("register_hospital", req);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "utc_offset"), "+14:00");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_registry_hospital(st, "H2", &h), EG_OK);
    CU_ASSERT_EQUAL(h.utc_offset_min, 840);
    CU_ASSERT_STRING_EQUAL(h.pubkey, pem2);
    r = OK("register_hospital", "{\"op\":\"register_hospital\",\"hospital_id\":\"H3\"}");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "utc_offset"), "+00:00");
    cJSON_Delete(r);

    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H1\"}", "conflict", "hospital H1");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"utc_offset\":\"+5:30\"}",
             "schema", "utc_offset:");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"utc_offset\":\"+15:00\"}",
             "schema", "utc_offset:");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"utc_offset\":\"Z\"}", "schema",
             "utc_offset:");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"utc_offset\":-300}", "schema",
             "utc_offset: must be a string");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"pubkey\":\"x\"}", "schema",
             "pubkey:");
    REJECTED("{\"op\":\"register_hospital\"}", "schema", "hospital_id: missing");
    REJECTED("{\"op\":\"register_hospital\",\"hospital_id\":\"H4\",\"patient_id\":\"P1\"}",
             "schema", "patient_id: unknown member");
}

static void test_approve_erase(void)
{
    char approve[65] = "x";
    cJSON *r;

    /* nothing pending */
    NOT_FOUND("{\"op\":\"approve_erase\",\"patient_id\":\"P1\"}");
    NOT_FOUND("{\"op\":\"approve_erase\",\"patient_id\":\"P404\"}");
    r = exec_at(__LINE__, "{\"op\":\"approve_erase\",\"patient_id\":\"P1\"}", approve);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "not_found");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P1");
    CU_ASSERT_STRING_EQUAL(approve, "");
    cJSON_Delete(r);
    REJECTED("{\"op\":\"approve_erase\"}", "schema", "patient_id: missing");

    /* pending (as a patient `erase` in admin mode leaves it) */
    CU_ASSERT_EQUAL(sqlite3_exec(eg_store_db(st),
                                 "INSERT INTO erase_requests VALUES('P1', 1795501000000),"
                                 "('P2', 1795501000001)",
                                 NULL, NULL, NULL),
                    SQLITE_OK);
    REJECTED("{\"op\":\"approve_erase\",\"patient_id\":\"P 1\"}", "schema", "patient_id:");
    r = exec_at(__LINE__, "{\"op\":\"approve_erase\",\"patient_id\":\"P1\"}", approve);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "ok");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "patient_id"), "P1");
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "requested_at"), "2026-11-24T06:16:40.000Z");
    CU_ASSERT_STRING_EQUAL(approve, "P1");
    cJSON_Delete(r);
    /* the row is gone, P2's stays; approving again -> not_found */
    {
        sqlite3_stmt *s;
        CU_ASSERT_FATAL(sqlite3_prepare_v2(eg_store_db(st),
                                           "SELECT group_concat(patient_id) FROM erase_requests",
                                           -1, &s, NULL) == SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_ROW);
        CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(s, 0), "P2");
        sqlite3_finalize(s);
    }
    snprintf(approve, sizeof approve, "x");
    r = exec_at(__LINE__, "{\"op\":\"approve_erase\",\"patient_id\":\"P1\"}", approve);
    CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "not_found");
    CU_ASSERT_STRING_EQUAL(approve, "");
    cJSON_Delete(r);

    /* the caller's rollback (e.g. its erasure failed) keeps the request pending */
    {
        cJSON *req = NULL;
        const char *text = "{\"op\":\"approve_erase\",\"patient_id\":\"P2\"}";
        CU_ASSERT_EQUAL_FATAL(egjson_parse((const uint8_t *)text, strlen(text), &req, NULL), EG_OK);
        CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
        r = NULL;
        CU_ASSERT_EQUAL(eg_admin_execute(st, req, NOW_MS, &r, approve), EG_OK);
        CU_ASSERT_STRING_EQUAL(approve, "P2");
        eg_store_rollback(st);
        cJSON_Delete(r);
        cJSON_Delete(req);
        r = exec_at(__LINE__, "{\"op\":\"approve_erase\",\"patient_id\":\"P2\"}", approve);
        CU_ASSERT_STRING_EQUAL(egjson_str(r, "status"), "ok");
        CU_ASSERT_STRING_EQUAL(approve, "P2");
        cJSON_Delete(r);
    }
}

static void test_storage_error(void)
{
    char path[128];
    struct eg_store *ro = NULL;
    struct eg_error e = {0};
    cJSON *req = NULL, *reply = (cJSON *)1;
    char approve[65] = "x";
    const char *text = "{\"op\":\"register_patient\",\"patient_id\":\"PRO\"}";

    snprintf(path, sizeof path, "%s/gw.db", tmpdir);
    CU_ASSERT_EQUAL_FATAL(eg_store_open(path, EG_STORE_READONLY, &ro, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(egjson_parse((const uint8_t *)text, strlen(text), &req, &e), EG_OK);
    /* a write that fails is an error for the caller, not a reply */
    CU_ASSERT(eg_admin_execute(ro, req, NOW_MS, &reply, approve) == EG_E_DB);
    CU_ASSERT_PTR_NULL(reply);
    CU_ASSERT_STRING_EQUAL(approve, "");
    /* the connection is still usable (the savepoint was undone) */
    CU_ASSERT(sqlite3_get_autocommit(eg_store_db(ro)) != 0);
    cJSON_Delete(req);
    eg_store_close(ro);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "PRO"), EG_E_UNKNOWN_PATIENT);
}

/* A message on ADMIN_TOPIC signed by k (NULL: unsigned). */
static struct eg_msg *admin_msg(const struct eg_key *k, const char *payload)
{
    char sig[EG_SIG_B64_MAX];
    uint8_t digest[32];
    eg_topic_digest(ADMIN_TOPIC, payload, strlen(payload), digest);
    if (k)
        CU_ASSERT_FATAL(eg_key_sign_digest(k, rng, digest, sig, sizeof sig) == EG_OK);
    return eg_msg_new(ADMIN_TOPIC, strlen(ADMIN_TOPIC), payload, strlen(payload), k ? sig : NULL,
                      k ? strlen(sig) : 0, NULL, 0, NULL, 0);
}

static void test_keys(void)
{
    struct eg_config cfg;
    struct eg_admin_keys *keys = NULL;
    struct eg_error e = {0};
    char signer[48], expect[48], pem[EG_PEM_PUB_MAX];
    const char *kpem = NULL;
    uint8_t fp[32];
    struct eg_msg *m;
    const char *payload = "{\"op\":\"deregister_device\",\"nonce\":5,\"issued\":"
                          "\"2026-11-24T06:31:00Z\",\"device_id\":\"D1\"}";

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&cfg), EG_OK);
    /* zero keys: loads, and every request is `signature` */
    CU_ASSERT_EQUAL(eg_admin_keys_load(&cfg, &keys, &e), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(keys);
    m = admin_msg(ak1, payload);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_E_SIGNATURE);
    CU_ASSERT_STRING_EQUAL(e.detail, "sig: not made by a configured admin key");
    CU_ASSERT_PTR_NULL(kpem);
    eg_msg_free(m);
    eg_admin_keys_free(keys);
    keys = NULL;
    eg_admin_keys_free(NULL);

    CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", ak1_path, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", ak2_path, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", ak2_path, &e), EG_OK); /* twice */
    CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", KEYS "p256.pub", &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_admin_keys_load(&cfg, &keys, &e), EG_OK);

    /* signed by the second key: its signer name and PEM */
    m = admin_msg(ak2, payload);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(ak2, fp), EG_OK);
    snprintf(expect, sizeof expect, "admin:%02x%02x%02x%02x%02x%02x%02x%02x", fp[0], fp[1], fp[2],
             fp[3], fp[4], fp[5], fp[6], fp[7]);
    CU_ASSERT_STRING_EQUAL(signer, expect);
    CU_ASSERT_EQUAL(eg_key_public_pem(ak2, pem, sizeof pem), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kpem);
    CU_ASSERT_STRING_EQUAL(kpem, pem);
    /* the whole gate with that signer: check, execute, accept */
    {
        struct eg_signed s;
        cJSON *reply = NULL;
        char approve[65];
        uint64_t last = 0;
        CU_ASSERT_EQUAL_FATAL(eg_signed_check(st, m, signer, kpem, NOW_MS, &s, &e), EG_OK);
        CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
        CU_ASSERT_EQUAL(eg_admin_execute(st, s.root, NOW_MS, &reply, approve), EG_OK);
        CU_ASSERT_EQUAL(eg_signed_accept(st, signer, s.nonce), EG_OK);
        CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
        CU_ASSERT_STRING_EQUAL(egjson_str(reply, "status"), "ok");
        cJSON_Delete(reply);
        eg_signed_clear(&s);
        CU_ASSERT_EQUAL(eg_signed_last(st, signer, &last), 0);
        CU_ASSERT_EQUAL(last, 5);
        /* the same request again: replay */
        CU_ASSERT_EQUAL(eg_signed_check(st, m, signer, kpem, NOW_MS, &s, &e), EG_E_REPLAY);
    }
    eg_msg_free(m);

    /* the first key matches too, with its own name */
    m = admin_msg(ak1, payload);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(ak1, fp), EG_OK);
    snprintf(expect, sizeof expect, "admin:%02x%02x%02x%02x%02x%02x%02x%02x", fp[0], fp[1], fp[2],
             fp[3], fp[4], fp[5], fp[6], fp[7]);
    CU_ASSERT_STRING_EQUAL(signer, expect);
    eg_msg_free(m);

    /* the fixture key: signer name from the fingerprint openssl computed */
    {
        struct eg_key *fk = NULL;
        char want[80], fph[80];
        CU_ASSERT_EQUAL_FATAL(eg_key_load_private(KEYS "p256_sec1.pem", &fk, &e), EG_OK);
        CU_ASSERT_FATAL(read_text(KEYS "p256.pub.sha256", fph, sizeof fph) == 0);
        snprintf(want, sizeof want, "admin:%.16s", fph);
        m = admin_msg(fk, payload);
        CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_OK);
        CU_ASSERT_STRING_EQUAL(signer, want);
        eg_msg_free(m);
        eg_key_free(fk);
    }

    /* a key that is not configured, no signature, a broken signature */
    m = admin_msg(stranger, payload);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_E_SIGNATURE);
    CU_ASSERT_STRING_EQUAL(e.detail, "sig: not made by a configured admin key");
    eg_msg_free(m);
    m = admin_msg(NULL, payload);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_E_SIGNATURE);
    CU_ASSERT_NSTRING_EQUAL(e.detail, "sig: missing", 12);
    eg_msg_free(m);
    m = eg_msg_new(ADMIN_TOPIC, strlen(ADMIN_TOPIC), payload, strlen(payload), "AAAA", 4, NULL, 0,
                   NULL, 0);
    CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_E_SIGNATURE);
    eg_msg_free(m);
    /* an admin signature made for another topic */
    {
        char sig[EG_SIG_B64_MAX];
        uint8_t digest[32];
        eg_topic_digest("ehr/patient/P1/request", payload, strlen(payload), digest);
        CU_ASSERT_EQUAL(eg_key_sign_digest(ak1, rng, digest, sig, sizeof sig), EG_OK);
        m = eg_msg_new(ADMIN_TOPIC, strlen(ADMIN_TOPIC), payload, strlen(payload), sig, strlen(sig),
                       NULL, 0, NULL, 0);
        CU_ASSERT_EQUAL(eg_admin_keys_match(keys, m, signer, &kpem, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
    }
    eg_admin_keys_free(keys);
    eg_config_free(&cfg);

    /* unusable files: EG_E_KEY naming the file */
    {
        static const char *bad[] = {KEYS "rsa2048.pub", KEYS "p384.pub", KEYS "p256_truncated.pem",
                                    "/nonexistent/admin.pub"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            CU_ASSERT_EQUAL_FATAL(eg_config_init(&cfg), EG_OK);
            CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", ak1_path, &e), EG_OK);
            CU_ASSERT_EQUAL(eg_config_set(&cfg, "admin_pubkey", bad[i], &e), EG_OK);
            keys = (struct eg_admin_keys *)1;
            memset(&e, 0, sizeof e);
            CHECKF(eg_admin_keys_load(&cfg, &keys, &e) == EG_E_KEY, "%s loads", bad[i]);
            CHECKF(strstr(e.detail, bad[i]) != NULL, "detail does not name %s: %s", bad[i],
                   e.detail);
            CU_ASSERT_PTR_NULL(keys);
            eg_config_free(&cfg);
        }
    }
}

int main(void)
{
    CU_pSuite s;
    unsigned failures;

    if (setup() != 0 || CU_initialize_registry() != CUE_SUCCESS) {
        teardown();
        return 2;
    }
    s = CU_add_suite("admin", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "register_patient", test_register_patient) ||
        !CU_add_test(s, "op: unknown, missing, allowed members", test_ops_and_schema) ||
        !CU_add_test(s, "set_patient_key", test_set_patient_key) ||
        !CU_add_test(s, "register/rebind/deregister device", test_devices) ||
        !CU_add_test(s, "register_hospital", test_hospitals) ||
        !CU_add_test(s, "approve_erase", test_approve_erase) ||
        !CU_add_test(s, "storage errors are errors", test_storage_error) ||
        !CU_add_test(s, "admin keys: load and match", test_keys)) {
        CU_cleanup_registry();
        teardown();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    teardown();
    return failures ? 1 : 0;
}

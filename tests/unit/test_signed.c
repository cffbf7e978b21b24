/*
 * test_signed.c — gateway/eg_signed: the gate of signed JSON requests
 * (SPEC §3 "Signatures", "Replay"; §2 integers and timestamps).
 *
 * Requests are built as the gateway receives them (struct eg_msg from
 * eg_msg_new) and signed here with keys from eg_key_generate over
 * eg_topic_digest. The gateway clock is a fixed NOW_MS, so no assertion
 * depends on the wall clock. The nonce counters live in a real database in
 * a mkdtemp() directory.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_crypto.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_queue.h"
#include "eg_signed.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_testutil.h"

#define NOW_MS 1795501800150LL /* 2026-11-24T06:30:00.150Z */
#define TOPIC "ehr/patient/P1/request"

static char tmpdir[64];
static struct eg_store *st;
static struct eg_rng *rng;
static struct eg_key *key1, *key2;
static char pem1[EG_PEM_PUB_MAX], pem2[EG_PEM_PUB_MAX];

/* ---- helpers ---------------------------------------------------------- */

/* base64 signature of payload on topic with key k */
static void sign(const struct eg_key *k, const char *topic, const char *payload, char *sig)
{
    uint8_t digest[32];
    eg_topic_digest(topic, payload, strlen(payload), digest);
    CU_ASSERT_FATAL(eg_key_sign_digest(k, rng, digest, sig, EG_SIG_B64_MAX) == EG_OK);
}

/* A message as the MQTT callback makes it: topic, payload, sig (NULL: none). */
static struct eg_msg *msg(const char *topic, const char *payload, const char *sig)
{
    struct eg_msg *m = eg_msg_new(topic, strlen(topic), payload, strlen(payload), sig,
                                  sig ? strlen(sig) : 0, NULL, 0, NULL, 0);
    CU_ASSERT_FATAL(m != NULL);
    m->received_ms = NOW_MS;
    return m;
}

/* A request signed with key1 on TOPIC. */
static struct eg_msg *signed_msg(const char *payload)
{
    char sig[EG_SIG_B64_MAX];
    sign(key1, TOPIC, payload, sig);
    return msg(TOPIC, payload, sig);
}

/* An "issued" value delta_ms from NOW_MS, in UTC with Z. */
static const char *issued_at(int64_t delta_ms)
{
    static char buf[EG_TIME_STRLEN];
    eg_time_format(NOW_MS + delta_ms, buf);
    return buf;
}

/* {"op":"consents","nonce":<nonce text>,"issued":"<issued>"} */
static void request(char *buf, size_t size, const char *nonce_text, const char *issued)
{
    snprintf(buf, size, "{\"op\":\"consents\",\"nonce\":%s,\"issued\":\"%s\"}", nonce_text, issued);
}

/* Runs eg_signed_check on m as signer with pem, returns the code; e is
 * filled. On failure out.root must be NULL; on success it is cleared. */
static eg_err run(const struct eg_msg *m, const char *signer, const char *pem,
                  struct eg_signed *out, struct eg_error *e)
{
    eg_err rc;
    memset(e, 0, sizeof *e);
    out->root = (cJSON *)1; /* must be overwritten */
    rc = eg_signed_check(st, m, signer, pem, NOW_MS, out, e);
    if (rc != EG_OK)
        CHECKF(out->root == NULL, "root left set on failure (%s)", e->detail);
    return rc;
}

/* Checks one payload signed correctly; expects code and a detail starting
 * with prefix (NULL: any). */
static void expect(const char *payload, eg_err code, const char *prefix, unsigned line)
{
    struct eg_msg *m = signed_msg(payload);
    struct eg_signed s;
    struct eg_error e;
    eg_err rc = run(m, "patient:P1", pem1, &s, &e);

    check_at(line, rc == code, "%s: got %s (%s), want %s", payload, eg_wire_code(rc), e.detail,
             eg_wire_code(code));
    if (rc != EG_OK && prefix)
        check_at(line, strncmp(e.detail, prefix, strlen(prefix)) == 0,
                 "%s: detail \"%s\" does not start with \"%s\"", payload, e.detail, prefix);
    if (rc == EG_OK)
        eg_signed_clear(&s);
    eg_msg_free(m);
}
#define EXPECT(payload, code, prefix) expect((payload), (code), (prefix), __LINE__)

static long long count_signers(void)
{
    sqlite3_stmt *s;
    long long n = -1;
    if (sqlite3_prepare_v2(eg_store_db(st), "SELECT count(*) FROM signers", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static int setup(void)
{
    struct eg_error e = {0};
    char path[128];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg-signed-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof path, "%s/gw.db", tmpdir);
    if (eg_store_open(path, EG_STORE_CREATE, &st, &e) != EG_OK || eg_rng_new(&rng) != EG_OK ||
        eg_key_generate(rng, &key1, &e) != EG_OK || eg_key_generate(rng, &key2, &e) != EG_OK ||
        eg_key_public_pem(key1, pem1, sizeof pem1) != EG_OK ||
        eg_key_public_pem(key2, pem2, sizeof pem2) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        return -1;
    }
    return 0;
}

static void teardown(void)
{
    eg_store_close(st);
    eg_key_free(key1);
    eg_key_free(key2);
    eg_rng_free(rng);
    if (tmpdir[0])
        remove_tree(tmpdir);
}

/* ---- tests ------------------------------------------------------------- */

static void test_good(void)
{
    char p[256];
    struct eg_msg *m;
    struct eg_signed s;
    struct eg_error e;
    uint64_t last = 0;

    request(p, sizeof p, "42", "2026-11-24T06:30:00.123Z");
    m = signed_msg(p);
    CU_ASSERT_EQUAL_FATAL(run(m, "patient:P1", pem1, &s, &e), EG_OK);
    CU_ASSERT(cJSON_IsObject(s.root));
    CU_ASSERT_STRING_EQUAL(egjson_str(s.root, "op"), "consents");
    CU_ASSERT_EQUAL(s.nonce, 42);
    CU_ASSERT_EQUAL(s.issued_ms, 1795501800123LL);
    /* the check does not advance the counter */
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:P1", &last), 1);
    CU_ASSERT_EQUAL(count_signers(), 0);
    eg_signed_clear(&s);
    CU_ASSERT_PTR_NULL(s.root);
    eg_signed_clear(&s); /* twice is harmless */
    eg_signed_clear(NULL);
    eg_msg_free(m);

    /* nonce 0 is fine for a signer with no counter yet; 2^53-1 too */
    request(p, sizeof p, "0", issued_at(0));
    EXPECT(p, EG_OK, NULL);
    request(p, sizeof p, "9007199254740991", issued_at(0));
    EXPECT(p, EG_OK, NULL);
    /* another offset for the same instant */
    EXPECT("{\"nonce\":1,\"issued\":\"2026-11-24T08:30:00+02:00\"}", EG_OK, NULL);
    EXPECT("{\"nonce\":1,\"issued\":\"2026-11-23T20:30:00.150-10:00\"}", EG_OK, NULL);
}

static void test_signature(void)
{
    char p[256], sig[EG_SIG_B64_MAX];
    struct eg_msg *m;
    struct eg_signed s;
    struct eg_error e;
    static const char *garbage[] = {
        "!!!!", "AAAA",     "not base64 at all",
        "QUJD", "MEUCIQ==", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};

    request(p, sizeof p, "1", issued_at(0));

    /* missing sig */
    m = msg(TOPIC, p, NULL);
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
    CU_ASSERT_STRING_EQUAL(e.detail, "sig: missing user property (signed request)");
    eg_msg_free(m);

    /* no registered key: NULL or "" */
    m = signed_msg(p);
    CU_ASSERT_EQUAL(run(m, "patient:P1", NULL, &s, &e), EG_E_SIGNATURE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "no registered key"));
    CU_ASSERT_EQUAL(run(m, "patient:P1", "", &s, &e), EG_E_SIGNATURE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, "no registered key"));
    /* an unusable registered key */
    CU_ASSERT_EQUAL(run(m, "patient:P1", "-----BEGIN PUBLIC KEY-----\nxx\n", &s, &e),
                    EG_E_SIGNATURE);
    CU_ASSERT_NSTRING_EQUAL(e.detail, "sig: ", 5);
    /* wrong key */
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem2, &s, &e), EG_E_SIGNATURE);
    CU_ASSERT_NSTRING_EQUAL(e.detail, "sig: does not verify", 20);
    /* the right key works on the same message */
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_OK);
    eg_signed_clear(&s);
    eg_msg_free(m);

    /* a signature made for another topic */
    sign(key1, "ehr/patient/P1/consent", p, sig);
    m = msg(TOPIC, p, sig);
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
    eg_msg_free(m);
    /* ... and for another patient's topic */
    sign(key1, "ehr/patient/P2/request", p, sig);
    m = msg(TOPIC, p, sig);
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
    eg_msg_free(m);

    /* garbage base64 / not DER */
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        m = msg(TOPIC, p, garbage[i]);
        CHECKF(run(m, "patient:P1", pem1, &s, &e) == EG_E_SIGNATURE, "sig \"%s\"", garbage[i]);
        eg_msg_free(m);
    }
    /* a valid signature with trailing base64 garbage or whitespace */
    sign(key1, TOPIC, p, sig);
    {
        char bad[EG_SIG_B64_MAX + 16];
        snprintf(bad, sizeof bad, "%s\n", sig);
        m = msg(TOPIC, p, bad);
        CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
        snprintf(bad, sizeof bad, "%sAAAA", sig);
        m = msg(TOPIC, p, bad);
        CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
    }

    /* payload changed after signing: one byte, and one appended space */
    {
        char changed[512];
        snprintf(changed, sizeof changed, "%s", p);
        changed[strlen(changed) - 3] ^= 1;
        m = msg(TOPIC, changed, sig);
        CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
        snprintf(changed, sizeof changed, "%s ", p);
        m = msg(TOPIC, changed, sig);
        CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
        eg_msg_free(m);
    }

    /* the signature comes first: unsigned junk is `signature`, not `parse` */
    m = msg(TOPIC, "{not json", NULL);
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_SIGNATURE);
    eg_msg_free(m);
    CU_ASSERT_EQUAL(count_signers(), 0);
}

static void test_json(void)
{
    EXPECT("{not json", EG_E_PARSE, NULL);
    EXPECT("", EG_E_PARSE, NULL);
    EXPECT("{\"nonce\":1,\"nonce\":2,\"issued\":\"2026-11-24T06:30:00Z\"}", EG_E_PARSE,
           "duplicate key");
    EXPECT("{\"nonce\":1,\"issued\":\"2026-11-24T06:30:00Z\"} x", EG_E_PARSE, NULL);
    EXPECT("{\"nonce\":1,\"issued\":\"2026-11-24T06:30:00Z\",\"x\":\"\\u0000\"}", EG_E_PARSE, NULL);
    EXPECT("[1,2]", EG_E_SCHEMA, "request:");
    EXPECT("\"text\"", EG_E_SCHEMA, "request:");
    EXPECT("7", EG_E_SCHEMA, "request:");
}

static void test_nonce_syntax(void)
{
    static const char *bad[] = {"1.0",  "-1",  "9007199254740992",     "1e3", "\"5\"", "null",
                                "true", "[1]", "18446744073709551616", "-0.0"};
    char p[256];

    EXPECT("{\"op\":\"consents\",\"issued\":\"2026-11-24T06:30:00Z\"}", EG_E_SCHEMA,
           "nonce: missing");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request(p, sizeof p, bad[i], issued_at(0));
        EXPECT(p, EG_E_SCHEMA, "nonce: must be an integer 0..2^53-1");
    }
    /* nonce is checked before issued */
    EXPECT("{\"nonce\":1.5,\"issued\":\"yesterday\"}", EG_E_SCHEMA, "nonce:");
}

static void test_issued(void)
{
    static const char *bad[] = {"2026-11-24T06:30:00",
                                "2026-11-24T06:30:00.150",
                                "2026-11-24",
                                "06:30:00Z",
                                "2026-11-24 06:30:00Z",
                                "2026-13-24T06:30:00Z",
                                "2026-11-24T06:30:00+0200",
                                "yesterday",
                                ""};
    char p[256];

    EXPECT("{\"op\":\"consents\",\"nonce\":3}", EG_E_SCHEMA, "issued: missing");
    EXPECT("{\"nonce\":3,\"issued\":1795501800150}", EG_E_SCHEMA, "issued: must be");
    EXPECT("{\"nonce\":3,\"issued\":null}", EG_E_SCHEMA, "issued: must be");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request(p, sizeof p, "3", bad[i]);
        EXPECT(p, EG_E_SCHEMA, "issued: must be an RFC 3339 date-time with offset");
    }

    /* the window: +-300 s inclusive, compared as instants */
    request(p, sizeof p, "3", issued_at(301000));
    EXPECT(p, EG_E_REPLAY, "issued:");
    request(p, sizeof p, "3", issued_at(-301000));
    EXPECT(p, EG_E_REPLAY, "issued:");
    request(p, sizeof p, "3", issued_at(300001));
    EXPECT(p, EG_E_REPLAY, "issued:");
    request(p, sizeof p, "3", issued_at(-300001));
    EXPECT(p, EG_E_REPLAY, "issued:");
    request(p, sizeof p, "3", issued_at(299000));
    EXPECT(p, EG_OK, NULL);
    request(p, sizeof p, "3", issued_at(-299000));
    EXPECT(p, EG_OK, NULL);
    request(p, sizeof p, "3", issued_at(300000));
    EXPECT(p, EG_OK, NULL);
    request(p, sizeof p, "3", issued_at(-300000));
    EXPECT(p, EG_OK, NULL);
    /* strings that sort inside the window but are instants outside it, and
     * the other way round */
    EXPECT("{\"nonce\":3,\"issued\":\"2026-11-24T06:30:00.150+01:00\"}", EG_E_REPLAY, "issued:");
    EXPECT("{\"nonce\":3,\"issued\":\"2026-11-24T11:59:00+05:30\"}", EG_OK, NULL);
    EXPECT("{\"nonce\":3,\"issued\":\"2026-11-24t06:34:00z\"}", EG_OK, NULL);
    /* the detail says how far off */
    {
        struct eg_msg *m;
        struct eg_signed s;
        struct eg_error e;
        request(p, sizeof p, "3", issued_at(-3600000));
        m = signed_msg(p);
        CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_REPLAY);
        CHECKF(strstr(e.detail, "3600 s behind") != NULL, "detail: %s", e.detail);
        eg_msg_free(m);
    }
    CU_ASSERT_EQUAL(count_signers(), 0);
}

static void test_replay(void)
{
    char p[256];
    uint64_t last = 0;
    struct eg_msg *m;
    struct eg_signed s;
    struct eg_error e;

    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:P1", &last), 1);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:P1", 10), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:P1", &last), 0);
    CU_ASSERT_EQUAL(last, 10);

    /* equal and below -> replay; above -> ok */
    request(p, sizeof p, "10", issued_at(0));
    EXPECT(p, EG_E_REPLAY, "nonce: 10 is not greater than the last accepted nonce 10");
    request(p, sizeof p, "9", issued_at(0));
    EXPECT(p, EG_E_REPLAY, "nonce:");
    request(p, sizeof p, "0", issued_at(0));
    EXPECT(p, EG_E_REPLAY, "nonce:");
    request(p, sizeof p, "11", issued_at(0));
    EXPECT(p, EG_OK, NULL);

    /* a stale issued with a replayed nonce reports issued (the window first) */
    request(p, sizeof p, "5", issued_at(-600000));
    EXPECT(p, EG_E_REPLAY, "issued:");

    /* accept, then a lower nonce is a replay; the exact message again too */
    request(p, sizeof p, "20", issued_at(0));
    m = signed_msg(p);
    CU_ASSERT_EQUAL_FATAL(run(m, "patient:P1", pem1, &s, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:P1", s.nonce), EG_OK);
    eg_signed_clear(&s);
    CU_ASSERT_EQUAL(run(m, "patient:P1", pem1, &s, &e), EG_E_REPLAY);
    eg_msg_free(m);
    request(p, sizeof p, "15", issued_at(0));
    EXPECT(p, EG_E_REPLAY, "nonce: 15 is not greater than the last accepted nonce 20");

    /* the counter never moves backwards */
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:P1", 3), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:P1", &last), 0);
    CU_ASSERT_EQUAL(last, 20);
    /* and holds 2^53-1; beyond is refused */
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:P9", EG_U53_MAX), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:P9", &last), 0);
    CU_ASSERT_EQUAL(last, EG_U53_MAX);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:P9", EG_U53_MAX + 1), EG_E_USAGE);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "", 1), EG_E_USAGE);
}

static void test_per_signer(void)
{
    char p[256], sig[EG_SIG_B64_MAX];
    uint64_t last = 0;
    struct eg_msg *m;
    struct eg_signed s;
    struct eg_error e;

    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:A", 100), EG_OK);
    /* the same nonce from another signer (even with the same key) is fresh */
    request(p, sizeof p, "50", issued_at(0));
    m = signed_msg(p);
    CU_ASSERT_EQUAL(run(m, "patient:A", pem1, &s, &e), EG_E_REPLAY);
    CU_ASSERT_EQUAL(run(m, "patient:B", pem1, &s, &e), EG_OK);
    eg_signed_clear(&s);
    CU_ASSERT_EQUAL(run(m, "admin:0123456789abcdef", pem1, &s, &e), EG_OK);
    eg_signed_clear(&s);
    eg_msg_free(m);

    /* B's counter advances on its own */
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:B", 50), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:A", &last), 0);
    CU_ASSERT_EQUAL(last, 100);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:B", &last), 0);
    CU_ASSERT_EQUAL(last, 50);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:C", &last), 1);

    /* a signer with key2: its own counter */
    request(p, sizeof p, "51", issued_at(0));
    sign(key2, "ehr/patient/B/consent", p, sig);
    m = msg("ehr/patient/B/consent", p, sig);
    CU_ASSERT_EQUAL(run(m, "patient:B", pem2, &s, &e), EG_OK);
    eg_signed_clear(&s);
    eg_msg_free(m);

    /* counters survive in the database: inside a rolled-back transaction an
     * accept leaves nothing */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:B", 60), EG_OK);
    eg_store_rollback(st);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:B", &last), 0);
    CU_ASSERT_EQUAL(last, 50);
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_accept(st, "patient:B", 60), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_EQUAL(eg_signed_last(st, "patient:B", &last), 0);
    CU_ASSERT_EQUAL(last, 60);
}

int main(void)
{
    CU_pSuite s;
    unsigned failures;

    if (setup() != 0 || CU_initialize_registry() != CUE_SUCCESS) {
        teardown();
        return 2;
    }
    s = CU_add_suite("signed", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "good request", test_good) ||
        !CU_add_test(s, "signature: missing, wrong key, other topic, garbage, changed",
                     test_signature) ||
        !CU_add_test(s, "strict JSON object", test_json) ||
        !CU_add_test(s, "nonce syntax", test_nonce_syntax) ||
        !CU_add_test(s, "issued syntax and window", test_issued) ||
        !CU_add_test(s, "replay: nonce counter", test_replay) ||
        !CU_add_test(s, "counters are per signer", test_per_signer)) {
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

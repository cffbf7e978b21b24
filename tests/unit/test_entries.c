/*
 * test_entries.c — gateway/eg_entries: the SPEC §6 entry bytes, leaf
 * hashes and encrypted rows.
 *
 * The entry bytes are compared with exact expected strings written by hand
 * from SPEC §6 (the random salt replaced by a placeholder after checking it
 * is 32 lowercase hex characters). Leaf hashes are recomputed here as
 * SHA-256 over a buffer holding 0x00 followed by the bytes, and the stored
 * ciphertexts are opened here with the documented key and AAD
 * ("e|{seq}|{patient}"). Tampering is done with plain SQL on the rows.
 */
#include <CUnit/Basic.h>
#include <ctype.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_crypto.h"
#include "eg_entries.h"
#include "eg_json.h"
#include "eg_store.h"
#include "eg_vault.h"
#include "eg_testutil.h"

#define RECEIVED_MS 1795501800150LL /* 2026-11-24T06:30:00.150Z */

static char tmpdir[64];
static struct eg_rng *rng;
static struct eg_store *st;
static struct eg_vault *vault;

/* ---- helpers ---------------------------------------------------------- */

static void sql(const char *text)
{
    char *err = NULL;

    CHECKF(sqlite3_exec(eg_store_db(st), text, NULL, NULL, &err) == SQLITE_OK, "%s: %s", text,
           err ? err : "");
    sqlite3_free(err);
}

static long long query_int(const char *text)
{
    sqlite3_stmt *s;
    long long v = -1;

    if (sqlite3_prepare_v2(eg_store_db(st), text, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_type(s, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Copies a blob column of one entry (malloc'ed). */
static uint8_t *entry_blob(uint64_t seq, const char *col, size_t *len)
{
    char q[128];
    sqlite3_stmt *s;
    uint8_t *out = NULL;

    *len = 0;
    snprintf(q, sizeof q, "SELECT %s FROM entries WHERE seq = ?1", col);
    if (sqlite3_prepare_v2(eg_store_db(st), q, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(s, 0);
        out = malloc(*len + 1);
        if (out && *len)
            memcpy(out, sqlite3_column_blob(s, 0), *len);
    }
    sqlite3_finalize(s);
    return out;
}

static void set_ct(uint64_t seq, const uint8_t *ct, size_t len)
{
    sqlite3_stmt *s;

    CU_ASSERT_FATAL(sqlite3_prepare_v2(eg_store_db(st), "UPDATE entries SET ct = ?1 WHERE seq = ?2",
                                       -1, &s, NULL) == SQLITE_OK);
    sqlite3_bind_blob(s, 1, ct, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
    CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

/* Independent leaf hash: SHA-256 over a buffer 0x00 || bytes. */
static void leaf_of(const char *bytes, size_t len, uint8_t out[32])
{
    uint8_t *buf = malloc(len + 1);

    CU_ASSERT_FATAL(buf != NULL);
    buf[0] = 0x00;
    memcpy(buf + 1, bytes, len);
    eg_sha256(buf, len + 1, out);
    free(buf);
}

/* Checks and blanks the salt: "salt":"<32 lowercase hex>" -> "salt":"SALT".
 * Returns a malloc'ed copy. */
static char *blank_salt(const char *bytes, char salt_out[33])
{
    const char *p = strstr(bytes, "\"salt\":\"");
    char *out;
    size_t pre;

    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p += 8;
    for (int i = 0; i < 32; i++) {
        CHECKF(isxdigit((unsigned char)p[i]) && !isupper((unsigned char)p[i]),
               "salt char %d is '%c'", i, p[i]);
    }
    CU_ASSERT_EQUAL_FATAL(p[32], '"');
    if (salt_out) {
        memcpy(salt_out, p, 32);
        salt_out[32] = '\0';
    }
    pre = (size_t)(p - bytes);
    out = malloc(strlen(bytes) + 8);
    CU_ASSERT_FATAL(out != NULL);
    snprintf(out, strlen(bytes) + 8, "%.*sSALT%s", (int)pre, bytes, p + 32);
    return out;
}

static cJSON *parse(const char *text)
{
    cJSON *j = NULL;
    struct eg_error e = {0};

    CHECKF(egjson_parse((const uint8_t *)text, strlen(text), &j, &e) == EG_OK, "%s: %s", text,
           e.detail);
    return j;
}

static struct eg_entry_in obs_in(const char *patient, const cJSON *resource)
{
    struct eg_entry_in in = {
        .kind = "observation",
        .patient = patient,
        .category = "vital-signs",
        .src_type = "device",
        .src_id = "D001",
        .msg_id = "1042",
        .received_at = RECEIVED_MS,
        .effective_at = RECEIVED_MS - 27,
        .resource = resource,
        .extra = NULL,
    };
    return in;
}

/* ---- entry bytes ------------------------------------------------------ */

static void test_bytes_exact(void)
{
    cJSON *res = parse("{\"resourceType\":\"Observation\",\"status\":\"final\","
                       "\"valueQuantity\":{\"value\":72,\"unit\":\"/min\"}}");
    struct eg_entry_in in = obs_in("P001", res);
    size_t len = 0;
    char *b = eg_entry_bytes("gw1", 12345, &in, rng, &len), *blank;
    char salt[33];

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(len, strlen(b));
    blank = blank_salt(b, salt);
    CU_ASSERT_STRING_EQUAL(
        blank, "{\"v\":1,\"seq\":12345,\"entry_id\":\"gw1-12345\",\"kind\":\"observation\","
               "\"patient\":\"P001\",\"category\":\"vital-signs\","
               "\"source\":{\"type\":\"device\",\"id\":\"D001\",\"msg_id\":\"1042\"},"
               "\"received_at\":\"2026-11-24T06:30:00.150Z\",\"salt\":\"SALT\","
               "\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\","
               "\"valueQuantity\":{\"value\":72,\"unit\":\"/min\"}}}");
    /* one line, no whitespace outside strings */
    CU_ASSERT_PTR_NULL(strchr(b, '\n'));
    CU_ASSERT_PTR_NULL(strchr(b, ' '));
    free(blank);

    /* a fresh salt every time */
    {
        size_t len2;
        char *b2 = eg_entry_bytes("gw1", 12345, &in, rng, &len2), salt2[33];
        CU_ASSERT_PTR_NOT_NULL_FATAL(b2);
        blank = blank_salt(b2, salt2);
        CU_ASSERT_STRING_NOT_EQUAL(salt, salt2);
        free(blank);
        free(b2);
    }
    free(b);
    cJSON_Delete(res);
}

static void test_bytes_nulls_and_extra(void)
{
    cJSON *extra = parse("{\"erased\":3}");
    cJSON *consent_extra =
        parse("{\"directive\":\"{\\\"nonce\\\":17}\",\"topic\":\"ehr/patient/P001/consent\","
              "\"sig\":\"MEUCIQ==\"}");
    cJSON *res = parse("{\"resourceType\":\"Consent\"}");
    struct eg_entry_in in = {
        .kind = "erasure",
        .patient = "P001",
        .category = "erasure",
        .src_type = "gateway",
        .src_id = "gw1",
        .msg_id = NULL,
        .received_at = 0,
        .effective_at = INT64_MIN,
        .resource = NULL,
        .extra = extra,
    };
    size_t len;
    char *b, *blank;

    b = eg_entry_bytes("gw1", 0, &in, rng, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    blank = blank_salt(b, NULL);
    CU_ASSERT_STRING_EQUAL(blank,
                           "{\"v\":1,\"seq\":0,\"entry_id\":\"gw1-0\",\"kind\":\"erasure\","
                           "\"patient\":\"P001\",\"category\":\"erasure\","
                           "\"source\":{\"type\":\"gateway\",\"id\":\"gw1\",\"msg_id\":null},"
                           "\"received_at\":\"1970-01-01T00:00:00.000Z\",\"salt\":\"SALT\","
                           "\"resource\":null,\"erased\":3}");
    free(blank);
    free(b);

    /* consent: directive, topic and sig follow the resource, in order */
    in.kind = "consent";
    in.category = "consent";
    in.src_type = "patient";
    in.src_id = "P001";
    in.msg_id = "17";
    in.resource = res;
    in.extra = consent_extra;
    in.received_at = RECEIVED_MS;
    b = eg_entry_bytes("edge-gw.2", 9007199254740991ULL, &in, rng, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    blank = blank_salt(b, NULL);
    CU_ASSERT_STRING_EQUAL(
        blank, "{\"v\":1,\"seq\":9007199254740991,\"entry_id\":\"edge-gw.2-9007199254740991\","
               "\"kind\":\"consent\",\"patient\":\"P001\",\"category\":\"consent\","
               "\"source\":{\"type\":\"patient\",\"id\":\"P001\",\"msg_id\":\"17\"},"
               "\"received_at\":\"2026-11-24T06:30:00.150Z\",\"salt\":\"SALT\","
               "\"resource\":{\"resourceType\":\"Consent\"},"
               "\"directive\":\"{\\\"nonce\\\":17}\",\"topic\":\"ehr/patient/P001/consent\","
               "\"sig\":\"MEUCIQ==\"}");
    free(blank);
    free(b);

    /* the borrowed trees are untouched and still usable */
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(extra, "erased"));
    CU_ASSERT_STRING_EQUAL(egjson_str(res, "resourceType"), "Consent");
    cJSON_Delete(extra);
    cJSON_Delete(consent_extra);
    cJSON_Delete(res);
}

/* ---- stored entries --------------------------------------------------- */

static void test_append_read(void)
{
    cJSON *r1 = parse("{\"resourceType\":\"Observation\",\"id\":\"first\"}");
    cJSON *r2 = parse("{\"resourceType\":\"Observation\",\"id\":\"second\"}");
    cJSON *audit = parse("{\"resourceType\":\"AuditEvent\"}");
    struct eg_entry_in a = obs_in("P1", r1), b = obs_in("P2", r2), c = obs_in("P1", audit);
    uint8_t leaf[3][32], want[32], stored[32];
    uint64_t next = 99;
    char *bytes;
    size_t len;

    c.kind = "access";
    c.category = "access";
    c.src_type = "gateway";
    c.src_id = "gw1";
    c.msg_id = NULL;
    c.effective_at = INT64_MIN;

    CU_ASSERT_EQUAL(eg_entry_next_seq(st, &next), EG_OK);
    CU_ASSERT_EQUAL(next, 0);
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_entry_append(st, vault, "gw1", 0, &a, leaf[0]), EG_OK);
    CU_ASSERT_EQUAL(eg_entry_append(st, vault, "gw1", 1, &b, leaf[1]), EG_OK);
    CU_ASSERT_EQUAL(eg_entry_append(st, vault, "gw1", 2, &c, leaf[2]), EG_OK);
    /* a seq cannot be used twice */
    CU_ASSERT_NOT_EQUAL(eg_entry_append(st, vault, "gw1", 1, &a, want), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_EQUAL(eg_entry_next_seq(st, &next), EG_OK);
    CU_ASSERT_EQUAL(next, 3);

    for (uint64_t seq = 0; seq < 3; seq++) {
        bytes = NULL;
        CU_ASSERT_EQUAL(eg_entry_read(st, vault, seq, &bytes, &len), EG_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
        CU_ASSERT_EQUAL(len, strlen(bytes));
        leaf_of(bytes, len, want);
        CU_ASSERT_EQUAL(memcmp(leaf[seq], want, 32), 0);
        CU_ASSERT_EQUAL(eg_entry_leaf(st, seq, stored), EG_OK);
        CU_ASSERT_EQUAL(memcmp(stored, want, 32), 0);
        {
            cJSON *j = parse(bytes);
            char id[32];
            snprintf(id, sizeof id, "gw1-%llu", (unsigned long long)seq);
            CU_ASSERT_STRING_EQUAL(egjson_str(j, "entry_id"), id);
            cJSON_Delete(j);
        }
        free(bytes);
    }

    /* the clear columns; the ciphertext holds none of the entry text */
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE seq = 0 AND kind = 'observation'"
                              " AND patient = 'P1' AND category = 'vital-signs' AND"
                              " source_type = 'device' AND source_id = 'D001' AND"
                              " msg_id = '1042' AND received_at = 1795501800150 AND"
                              " effective_at = 1795501800123 AND block IS NULL"),
                    1);
    CU_ASSERT_EQUAL(query_int("SELECT effective_at FROM entries WHERE seq = 2"), -2);
    CU_ASSERT_EQUAL(query_int("SELECT msg_id FROM entries WHERE seq = 2"), -2);
    {
        size_t ctlen;
        uint8_t *ct = entry_blob(0, "ct", &ctlen);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ct);
        bytes = NULL;
        CU_ASSERT_EQUAL(eg_entry_read(st, vault, 0, &bytes, &len), EG_OK);
        CU_ASSERT_EQUAL(ctlen, len + EG_GCM_NONCE + EG_GCM_TAG);
        CU_ASSERT_FALSE(has_bytes(ct, ctlen, "Observation", 11));
        CU_ASSERT_FALSE(has_bytes(ct, ctlen, "\"kind\"", 6));
        free(ct);
        free(bytes);
    }

    /* observations open under the patient's key, access entries under the
     * audit key, both with AAD "e|{seq}|{patient}" */
    {
        uint8_t key[32], pt[4096];
        size_t ctlen, ptlen;
        uint8_t *ct = entry_blob(1, "ct", &ctlen);
        CU_ASSERT_EQUAL(eg_vault_patient_key(vault, st, "P2", 0, key), EG_OK);
        CU_ASSERT_EQUAL(eg_aead_open(key, "e|1|P2", 6, ct, ctlen, pt, sizeof pt, &ptlen), EG_OK);
        CU_ASSERT_EQUAL(eg_aead_open(key, "e|1|P1", 6, ct, ctlen, pt, sizeof pt, &ptlen),
                        EG_E_CRYPTO);
        free(ct);
        ct = entry_blob(2, "ct", &ctlen);
        CU_ASSERT_EQUAL(
            eg_aead_open(eg_vault_audit_key(vault), "e|2|P1", 6, ct, ctlen, pt, sizeof pt, &ptlen),
            EG_OK);
        free(ct);
    }

    CU_ASSERT_EQUAL(eg_entry_leaf(st, 99, stored), EG_E_NOT_FOUND);
    bytes = (char *)&bytes;
    CU_ASSERT_EQUAL(eg_entry_read(st, vault, 99, &bytes, &len), EG_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(bytes);
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    cJSON_Delete(audit);
}

/* Appends n entries for patient from seq first, committed. */
static void append_n(uint64_t first, int n, const char *patient, const char *kind)
{
    cJSON *r = parse("{\"resourceType\":\"Observation\"}");
    struct eg_entry_in in = obs_in(patient, r);
    uint8_t leaf[32];

    in.kind = kind;
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(eg_entry_append(st, vault, "gw1", first + (uint64_t)i, &in, leaf), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    cJSON_Delete(r);
}

static eg_err read_rc(uint64_t seq)
{
    char *bytes = NULL;
    size_t len;
    eg_err rc = eg_entry_read(st, vault, seq, &bytes, &len);

    free(bytes);
    return rc;
}

static void test_tamper(void)
{
    uint64_t base;
    uint8_t *ct, *ct2;
    size_t len, len2;

    CU_ASSERT_EQUAL_FATAL(eg_entry_next_seq(st, &base), EG_OK);
    append_n(base, 4, "P7", "observation"); /* base .. base+3 */
    append_n(base + 4, 2, "P8", "access");  /* base+4, base+5 under the audit key */
    for (uint64_t s = base; s < base + 6; s++)
        CU_ASSERT_EQUAL(read_rc(s), EG_OK);

    /* one flipped byte anywhere: nonce, body, tag */
    ct = entry_blob(base, "ct", &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ct);
    {
        size_t where[3] = {0, len / 2, len - 1};
        for (int i = 0; i < 3; i++) {
            ct[where[i]] ^= 0x01;
            set_ct(base, ct, len);
            CHECKF(read_rc(base) == EG_E_CRYPTO, "flipped byte %zu accepted", where[i]);
            ct[where[i]] ^= 0x01;
        }
    }
    set_ct(base, ct, len);
    CU_ASSERT_EQUAL(read_rc(base), EG_OK); /* restored */
    /* truncated, and shorter than nonce + tag */
    set_ct(base, ct, len - 1);
    CU_ASSERT_EQUAL(read_rc(base), EG_E_CRYPTO);
    set_ct(base, ct, 10);
    CU_ASSERT_EQUAL(read_rc(base), EG_E_CRYPTO);
    set_ct(base, ct, len);

    /* moved to another seq of the same patient (same key): AAD binds seq */
    ct2 = entry_blob(base + 1, "ct", &len2);
    set_ct(base + 1, ct, len);
    CU_ASSERT_EQUAL(read_rc(base + 1), EG_E_CRYPTO);
    set_ct(base + 1, ct2, len2);
    CU_ASSERT_EQUAL(read_rc(base + 1), EG_OK);
    free(ct2);
    free(ct);

    /* audit-key entries share one key: only the AAD keeps them apart */
    ct = entry_blob(base + 4, "ct", &len);
    ct2 = entry_blob(base + 5, "ct", &len2);
    set_ct(base + 5, ct, len);
    CU_ASSERT_EQUAL(read_rc(base + 5), EG_E_CRYPTO);
    set_ct(base + 5, ct2, len2);
    CU_ASSERT_EQUAL(read_rc(base + 5), EG_OK);
    /* ... and the patient: relabelling the row's patient breaks it */
    {
        char q[128];
        snprintf(q, sizeof q, "UPDATE entries SET patient = 'P9' WHERE seq = %llu",
                 (unsigned long long)(base + 4));
        sql(q);
        CU_ASSERT_EQUAL(read_rc(base + 4), EG_E_CRYPTO);
        snprintf(q, sizeof q, "UPDATE entries SET patient = 'P8' WHERE seq = %llu",
                 (unsigned long long)(base + 4));
        sql(q);
        CU_ASSERT_EQUAL(read_rc(base + 4), EG_OK);
    }
    free(ct);
    free(ct2);

    /* a row swapped to another seq number: the AAD no longer matches */
    {
        char q[160];
        snprintf(q, sizeof q, "UPDATE entries SET seq = %llu WHERE seq = %llu",
                 (unsigned long long)(base + 100), (unsigned long long)(base + 2));
        sql(q);
        CU_ASSERT_EQUAL(read_rc(base + 100), EG_E_CRYPTO);
        CU_ASSERT_EQUAL(read_rc(base + 2), EG_E_NOT_FOUND);
        snprintf(q, sizeof q, "UPDATE entries SET seq = %llu WHERE seq = %llu",
                 (unsigned long long)(base + 2), (unsigned long long)(base + 100));
        sql(q);
        CU_ASSERT_EQUAL(read_rc(base + 2), EG_OK);
    }

    /* erasure: the patient's wrapped key gone -> not found, leaf hash kept */
    {
        uint8_t leaf[32];
        sql("UPDATE patient_keys SET wrapped = NULL WHERE patient_id = 'P7'");
        eg_vault_cache_clear(vault);
        CU_ASSERT_EQUAL(read_rc(base + 3), EG_E_NOT_FOUND);
        CU_ASSERT_EQUAL(eg_entry_leaf(st, base + 3, leaf), EG_OK);
        /* the audit trail outlives it */
        CU_ASSERT_EQUAL(read_rc(base + 4), EG_OK);
    }
}

static void test_next_seq(void)
{
    uint64_t next = 0, after;

    CU_ASSERT_EQUAL(eg_entry_next_seq(st, &next), EG_OK);
    CU_ASSERT(next > 0);
    /* it follows max(seq), not the row count */
    append_n(next + 10, 1, "P1", "observation");
    CU_ASSERT_EQUAL(eg_entry_next_seq(st, &after), EG_OK);
    CU_ASSERT_EQUAL(after, next + 11);
    /* a rolled-back append is not counted */
    {
        cJSON *r = parse("{}");
        struct eg_entry_in in = obs_in("P1", r);
        uint8_t leaf[32];
        CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
        CU_ASSERT_EQUAL(eg_entry_append(st, vault, "gw1", after, &in, leaf), EG_OK);
        eg_store_rollback(st);
        eg_vault_cache_clear(vault);
        cJSON_Delete(r);
    }
    CU_ASSERT_EQUAL(eg_entry_next_seq(st, &next), EG_OK);
    CU_ASSERT_EQUAL(next, after);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;
    char db[128], key[128], mk[128];
    struct eg_error e = {0};

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_entries_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/entries.db", tmpdir);
    snprintf(key, sizeof key, "%s/gw.key", tmpdir);
    snprintf(mk, sizeof mk, "%s/master.key", tmpdir);
    if (eg_rng_new(&rng) != EG_OK || eg_store_open(db, EG_STORE_CREATE, &st, &e) != EG_OK ||
        eg_vault_open_gateway(st, key, mk, rng, &vault, &e) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        remove_tree(tmpdir);
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("entries", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "entry bytes: exact keys, order, compact", test_bytes_exact) ||
        !CU_add_test(s, "entry bytes: null msg_id/resource, extra members",
                     test_bytes_nulls_and_extra) ||
        !CU_add_test(s, "append, read, leaf hash, keys and AAD", test_append_read) ||
        !CU_add_test(s, "tampered and moved ciphertexts", test_tamper) ||
        !CU_add_test(s, "next_seq", test_next_seq)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    eg_vault_free(vault);
    eg_store_close(st);
    eg_rng_free(rng);
    remove_tree(tmpdir);
    return failures != 0;
}

/*
 * test_ingest.c — gateway/eg_ingest: one device message inside the
 * pipeline's transaction (SPEC §4, §6, §7): dedup, validation, entries,
 * quarantine of rejections and the receipts written to the outbox.
 *
 * Messages are built with eg_msg_new for ehr/device/{id}/telemetry and
 * processed between eg_store_begin and eg_store_commit with a real vault and
 * registry (SQLite files in a mkdtemp() directory), exactly as the gateway's
 * pipeline does; the receipts are then read back from the outbox table and
 * checked field by field: payload_sha256 and every leaf_hash are recomputed
 * here from the payload and from the decrypted entry bytes. Signatures are
 * made with a key from eg_key_generate over eg_topic_digest. The message
 * time is fixed (received_ms), so no assertion depends on the clock.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_codec.h"
#include "eg_config.h"
#include "eg_crypto.h"
#include "eg_entries.h"
#include "eg_ingest.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_outbox.h"
#include "eg_quarantine.h"
#include "eg_queue.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_vault.h"
#include "eg_testutil.h"

#define NOW_MS 1795501800150LL /* 2026-11-24T06:30:00.150Z, the messages' arrival */
#define TS "2026-11-24T06:30:00.123Z"
#define T_REBIND 1795503600000LL /* 2026-11-24T07:00:00.000Z */
#define HR "{\"type\":\"heart_rate\",\"value\":72}"
#define D1_TOPIC "ehr/device/D1/telemetry"
#define D1_RECEIPTS "ehr/device/D1/receipts"

static char tmpdir[64];
static struct eg_rng *rng;
static struct eg_store *st;
static struct eg_vault *vault;
static struct eg_config cfg;
static struct eg_ingest *ig;
static struct eg_key *ds_key, *other_key;

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

static const char *query_text(const char *text, char *buf, size_t size)
{
    sqlite3_stmt *s;

    buf[0] = '\0';
    if (sqlite3_prepare_v2(eg_store_db(st), text, -1, &s, NULL) != SQLITE_OK)
        return buf;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

static void hex_sha256(const void *data, size_t len, char out[65])
{
    uint8_t h[32];

    eg_sha256(data, len, h);
    eg_hex_encode(h, 32, out);
}

/* Leaf hash of a stored entry, recomputed from its decrypted bytes as
 * SHA-256 over a buffer holding 0x00 || bytes. */
static int leaf_hex_of(uint64_t seq, char out[65])
{
    char *bytes = NULL;
    size_t len = 0;
    uint8_t *buf, h[32];

    if (eg_entry_read(st, vault, seq, &bytes, &len) != EG_OK)
        return -1;
    buf = malloc(len + 1);
    if (!buf) {
        free(bytes);
        return -1;
    }
    buf[0] = 0x00;
    memcpy(buf + 1, bytes, len);
    eg_sha256(buf, len + 1, h);
    eg_hex_encode(h, 32, out);
    free(buf);
    free(bytes);
    return 0;
}

/* A telemetry payload: seq, the fixed ts, and the given readings. */
static const char *tele(char *buf, size_t size, unsigned long long seq, const char *readings)
{
    snprintf(buf, size, "{\"seq\":%llu,\"ts\":\"" TS "\",\"readings\":[%s]}", seq, readings);
    return buf;
}

static struct eg_msg *mk(const char *topic, const void *payload, size_t len, const char *sig)
{
    struct eg_msg *m = eg_msg_new(topic, strlen(topic), payload, len, sig, sig ? strlen(sig) : 0,
                                  NULL, 0, NULL, 0);

    CU_ASSERT_FATAL(m != NULL);
    m->received_ms = NOW_MS;
    return m;
}

/* The SPEC §3 signature of payload on topic by key. */
static void sign(const struct eg_key *key, const char *topic, const char *payload, char *sig,
                 size_t size)
{
    uint8_t digest[32];

    eg_topic_digest(topic, payload, strlen(payload), digest);
    CU_ASSERT_FATAL(eg_key_sign_digest(key, rng, digest, sig, size) == EG_OK);
}

/* One transaction over msgs (freed), as the pipeline runs it. */
static void run_batch(struct eg_msg **msgs, int n)
{
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    for (int i = 0; i < n; i++)
        CHECKF(eg_ingest_process(ig, msgs[i]) == EG_OK, "message %d on %s not processed", i,
               msgs[i]->topic);
    CU_ASSERT_EQUAL(eg_ingest_flush(ig), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_store_commit(st), EG_OK);
    eg_ingest_committed(ig);
    for (int i = 0; i < n; i++)
        eg_msg_free(msgs[i]);
}

static void run_one(const char *topic, const char *payload, const char *sig)
{
    struct eg_msg *m = mk(topic, payload, strlen(payload), sig);

    run_batch(&m, 1);
}

/* Takes the outbox rows for topic (deleting them): the number of messages
 * and all their receipts, in order, as one array (caller deletes). Each
 * message must be {"gateway":"gw1","receipts":[...]} with QoS 1, no retain. */
static cJSON *take_receipts(const char *topic, int *nmsgs)
{
    struct eg_outbox_row rows[64];
    cJSON *all = cJSON_CreateArray();
    int64_t after = 0;
    int n;

    *nmsgs = 0;
    CU_ASSERT_FATAL(all != NULL);
    while ((n = eg_outbox_fetch(st, after, 64, rows)) > 0) {
        for (int i = 0; i < n; i++) {
            after = rows[i].id;
            if (strcmp(rows[i].topic, topic) == 0) {
                cJSON *j = NULL, *r;
                struct eg_error e = {0};
                (*nmsgs)++;
                CHECKF(rows[i].qos == 1 && rows[i].retain == 0, "receipt qos %d retain %d",
                       rows[i].qos, rows[i].retain);
                CHECKF(egjson_parse(rows[i].payload, rows[i].len, &j, &e) == EG_OK,
                       "receipt message does not parse: %s", e.detail);
                CHECKF(j && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "gateway")) &&
                           strcmp(egjson_str(j, "gateway"), "gw1") == 0,
                       "gateway member missing or wrong");
                if (j && j->child) {
                    CHECKF(strcmp(j->child->string, "gateway") == 0, "first key is %s",
                           j->child->string);
                }
                cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(j, "receipts"))
                    cJSON_AddItemToArray(all, cJSON_Duplicate(r, 1));
                cJSON_Delete(j);
                CU_ASSERT_EQUAL(eg_outbox_delete(st, &rows[i].id, 1), EG_OK);
            }
            eg_outbox_row_clear(&rows[i]);
        }
    }
    return all;
}

/* Exactly one outbox message for topic; its receipts (caller deletes). */
static cJSON *one_message(const char *topic, unsigned line)
{
    int nmsgs;
    cJSON *r = take_receipts(topic, &nmsgs);

    check_at(line, nmsgs == 1, "%d outbox message(s) on %s, want 1", nmsgs, topic);
    return r;
}

/* Checks one receipt's msg_id (NULL: JSON null), payload_sha256, status and,
 * for rejections, error.code with a non-empty detail. Keys in SPEC §7
 * order: msg_id, payload_sha256, status. */
static void check_receipt(const cJSON *r, const char *msg_id, const char *payload, size_t plen,
                          const char *status, const char *code, unsigned line)
{
    const cJSON *mid, *err;
    char sha[65];

    check_at(line, cJSON_IsObject(r), "no receipt");
    if (!cJSON_IsObject(r))
        return;
    mid = cJSON_GetObjectItemCaseSensitive(r, "msg_id");
    if (msg_id) {
        check_at(line, cJSON_IsString(mid) && strcmp(mid->valuestring, msg_id) == 0,
                 "msg_id %s, want \"%s\"",
                 cJSON_IsString(mid) ? mid->valuestring : "(not a string)", msg_id);
    } else {
        check_at(line, cJSON_IsNull(mid), "msg_id must be null");
    }
    hex_sha256(payload, plen, sha);
    check_at(line,
             egjson_str(r, "payload_sha256") && strcmp(egjson_str(r, "payload_sha256"), sha) == 0,
             "payload_sha256 %s, want %s", egjson_str(r, "payload_sha256"), sha);
    check_at(line, egjson_str(r, "status") && strcmp(egjson_str(r, "status"), status) == 0,
             "status %s, want %s", egjson_str(r, "status"), status);
    check_at(line,
             r->child && strcmp(r->child->string, "msg_id") == 0 && r->child->next &&
                 strcmp(r->child->next->string, "payload_sha256") == 0 && r->child->next->next &&
                 strcmp(r->child->next->next->string, "status") == 0,
             "receipt keys not in the order msg_id, payload_sha256, status");
    err = cJSON_GetObjectItemCaseSensitive(r, "error");
    if (code) {
        const char *got = egjson_str(err, "code"), *detail = egjson_str(err, "detail");
        check_at(line, got && strcmp(got, code) == 0, "error.code %s, want %s (detail: %s)",
                 got ? got : "(none)", code, detail ? detail : "-");
        check_at(line, detail && detail[0], "error.detail missing or empty");
        check_at(line, !cJSON_GetObjectItemCaseSensitive(r, "entries"), "rejected with entries");
    } else {
        check_at(line, err == NULL, "unexpected error member");
    }
}
#define CHECK_RECEIPT(r, id, payload, status, code)                                                \
    check_receipt((r), (id), (payload), strlen(payload), (status), (code), __LINE__)

/* Checks receipt entries: n of them, entry ids gw1-{first..}, leaf hashes
 * recomputed from the stored entry bytes. Returns the first seq or -1. */
static long long check_entries(const cJSON *r, int n, unsigned line)
{
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(r, "entries"), *e;
    long long first = -1;
    int i = 0;

    check_at(line, cJSON_IsArray(entries) && cJSON_GetArraySize(entries) == n,
             "%d entries, want %d", cJSON_IsArray(entries) ? cJSON_GetArraySize(entries) : -1, n);
    cJSON_ArrayForEach(e, entries)
    {
        const char *id = egjson_str(e, "entry_id"), *leaf = egjson_str(e, "leaf_hash");
        unsigned long long seq;
        char want[65], tail;
        if (!id || sscanf(id, "gw1-%llu%c", &seq, &tail) != 1) {
            check_at(line, 0, "entry_id \"%s\" is not gw1-N", id ? id : "(none)");
            return -1;
        }
        if (i == 0)
            first = (long long)seq;
        check_at(line, (long long)seq == first + i, "entry_id %s, want gw1-%lld", id, first + i);
        check_at(line, leaf_hex_of(seq, want) == 0 && leaf && strcmp(leaf, want) == 0,
                 "leaf_hash of %s is %s, want %s", id, leaf ? leaf : "-", want);
        i++;
    }
    return first;
}

static long long count(const char *table)
{
    char q[96];

    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    return query_int(q);
}

/* The newest quarantine row: its code and source. */
static void last_quarantine(char *code, char *source, size_t size)
{
    query_text("SELECT code FROM quarantine ORDER BY id DESC LIMIT 1", code, size);
    query_text("SELECT source FROM quarantine ORDER BY id DESC LIMIT 1", source, size);
}

/* ---- tests ------------------------------------------------------------ */

static void test_accepted(void)
{
    char p[512], sha[65], leaf[3][65], want[2048], *bytes = NULL;
    struct eg_outbox_row rows[4];
    struct eg_ingest_stats s;
    size_t len;
    int n;

    tele(p, sizeof p, 1,
         HR ",{\"type\":\"blood_pressure\",\"systolic\":121,\"diastolic\":79},"
            "{\"type\":\"body_temp\",\"value\":98.6,\"unit\":\"[degF]\"}");
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), 0);
    run_one(D1_TOPIC, p, NULL);
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), 3);

    /* the whole receipt message, byte for byte */
    n = eg_outbox_fetch(st, 0, 4, rows);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    hex_sha256(p, strlen(p), sha);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(leaf_hex_of((uint64_t)i, leaf[i]), 0);
    snprintf(want, sizeof want,
             "{\"gateway\":\"gw1\",\"receipts\":[{\"msg_id\":\"1\",\"payload_sha256\":\"%s\","
             "\"status\":\"accepted\",\"entries\":[{\"entry_id\":\"gw1-0\",\"leaf_hash\":\"%s\"},"
             "{\"entry_id\":\"gw1-1\",\"leaf_hash\":\"%s\"},"
             "{\"entry_id\":\"gw1-2\",\"leaf_hash\":\"%s\"}]}]}",
             sha, leaf[0], leaf[1], leaf[2]);
    CU_ASSERT_STRING_EQUAL(rows[0].topic, D1_RECEIPTS);
    CU_ASSERT_EQUAL(rows[0].len, strlen(want));
    CU_ASSERT_STRING_EQUAL((char *)rows[0].payload, want);
    CU_ASSERT_EQUAL(eg_outbox_delete(st, &rows[0].id, 1), EG_OK);
    eg_outbox_row_clear(&rows[0]);

    /* the stored entries and the dedup record */
    CU_ASSERT_EQUAL(count("entries"), 3);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE patient = 'P1' AND"
                              " kind = 'observation' AND source_type = 'device' AND"
                              " source_id = 'D1' AND msg_id = '1' AND received_at = 1795501800150"
                              " AND effective_at = 1795501800123"),
                    3);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM msgs WHERE source_type = 'device' AND"
                              " source_id = 'D1' AND msg_id = '1' AND first_seq = 0 AND"
                              " count = 3"),
                    1);
    CU_ASSERT_EQUAL(eg_entry_read(st, vault, 2, &bytes, &len), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    CU_ASSERT_PTR_NOT_NULL(strstr(bytes, "\"entry_id\":\"gw1-2\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(bytes, "\"patient\":\"P1\""));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(bytes, "\"source\":{\"type\":\"device\",\"id\":\"D1\",\"msg_id\":\"1\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(bytes, "\"received_at\":\"2026-11-24T06:30:00.150Z\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(bytes, "\"value\":\"D1/1/2\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(bytes, "\"value\":37,"));
    free(bytes);
    CU_ASSERT_EQUAL(count("quarantine"), 0);

    eg_ingest_get_stats(ig, &s);
    CU_ASSERT_EQUAL(s.msgs, 1);
    CU_ASSERT_EQUAL(s.accepted, 1);
    CU_ASSERT_EQUAL(s.entries, 3);
    CU_ASSERT_EQUAL(s.rejected, 0);
}

static void test_duplicate_conflict(void)
{
    char p[512], p2[512];
    cJSON *r, *orig;
    long long entries = count("entries"), first;

    /* the accepted message of test_accepted, resent unchanged */
    tele(p, sizeof p, 1,
         HR ",{\"type\":\"blood_pressure\",\"systolic\":121,\"diastolic\":79},"
            "{\"type\":\"body_temp\",\"value\":98.6,\"unit\":\"[degF]\"}");
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(r), 1);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "duplicate", NULL);
    first = check_entries(cJSON_GetArrayItem(r, 0), 3, __LINE__);
    CU_ASSERT_EQUAL(first, 0); /* the original entries */
    orig =
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r, 0), "entries"), 1);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(count("entries"), entries);
    CU_ASSERT_EQUAL(count("msgs"), 1);
    CU_ASSERT_EQUAL(count("quarantine"), 0);

    /* the same seq with other bytes: conflict, quarantined, nothing stored */
    tele(p2, sizeof p2, 1, HR);
    run_one(D1_TOPIC, p2, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p2, "rejected", "conflict");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(count("entries"), entries);
    CU_ASSERT_EQUAL(count("quarantine"), 1);

    /* a resend is a duplicate even after the device was deregistered */
    sql("UPDATE devices SET active = 0 WHERE device_id = 'D1'");
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "duplicate", NULL);
    CU_ASSERT_TRUE(cJSON_Compare(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r, 0), "entries"), orig, 1));
    cJSON_Delete(r);
    run_one(D1_TOPIC, p2, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p2, "rejected", "unknown_device");
    cJSON_Delete(r);
    sql("UPDATE devices SET active = 1 WHERE device_id = 'D1'");
    cJSON_Delete(orig);

    /* a rejected message does not use up its seq */
    tele(p, sizeof p, 2, "{\"type\":\"heart_rate\",\"value\":500}");
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "range");
    cJSON_Delete(r);
    tele(p, sizeof p, 2, HR);
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "accepted", NULL);
    CU_ASSERT_EQUAL(check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__), entries);
    cJSON_Delete(r);
    sql("DELETE FROM outbox");
}

struct reject_case {
    const char *device;
    const char *payload;
    const char *msg_id; /* NULL: null */
    const char *code;
};

static void test_rejections(void)
{
    static const struct reject_case cases[] = {
        {"D1", "{\"seq\":3,", NULL, "parse"},
        {"D1", "", NULL, "parse"},
        {"D1", "{\"seq\":3,\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR "]}", NULL, "parse"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR "],\"x\":\"\xff\"}", NULL, "parse"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR "]} x", NULL, "parse"},
        {"D1", "[1,2]", NULL, "schema"},
        {"D1", "{\"seq\":\"3\",\"ts\":\"" TS "\",\"readings\":[" HR "]}", NULL, "schema"},
        {"D1", "{\"seq\":3.0,\"ts\":\"" TS "\",\"readings\":[" HR "]}", NULL, "schema"},
        {"D1", "{\"seq\":-3,\"ts\":\"" TS "\",\"readings\":[" HR "]}", NULL, "schema"},
        {"D1", "{\"ts\":\"" TS "\",\"readings\":[" HR "]}", NULL, "schema"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR "],\"extra\":1}", "3", "schema"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[]}", "3", "schema"},
        {"D1", "{\"seq\":3,\"readings\":[" HR "]}", "3", "schema"},
        {"D1", "{\"seq\":3,\"ts\":\"2026-11-24 06:30:00\",\"readings\":[" HR "]}", "3", "schema"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[{\"type\":\"foo\",\"value\":1}]}", "3",
         "schema"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[{\"type\":\"heart_rate\"}]}", "3",
         "schema"},
        {"D9", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR "]}", "3", "unknown_device"},
        {"D1", "{\"seq\":3,\"ts\":\"" TS "\",\"patient\":\"P2\",\"readings\":[" HR "]}", "3",
         "binding"},
        {"D1",
         "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[{\"type\":\"heart_rate\",\"value\":500}]}",
         "3", "range"},
        {"D1", "{\"seq\":3,\"ts\":\"2026-11-24T06:36:41.000Z\",\"readings\":[" HR "]}", "3",
         "range"}, /* 400 s after arrival */
        {"D1",
         "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[" HR ",{\"type\":\"spo2\",\"value\":150}]}",
         "3", "range"}, /* one bad reading rejects all */
        {"D1",
         "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[{\"type\":\"body_temp\",\"value\":300,"
         "\"unit\":\"K\"}]}",
         "3", "unit"},
        {"D2", "{\"seq\":3,\"ts\":\"" TS "\",\"readings\":[{\"type\":\"glucose\",\"value\":90}]}",
         "3", "unsupported"},
    };
    char topic[64], receipts[64], code[64], source[96], want_source[96];
    long long entries = count("entries"), msgs = count("msgs");

    sql("DELETE FROM outbox");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct reject_case *c = &cases[i];
        long long q = count("quarantine");
        cJSON *r;
        snprintf(topic, sizeof topic, "ehr/device/%s/telemetry", c->device);
        snprintf(receipts, sizeof receipts, "ehr/device/%s/receipts", c->device);
        run_one(topic, c->payload, NULL);
        r = one_message(receipts, __LINE__);
        CHECKF(cJSON_GetArraySize(r) == 1, "case %zu: %d receipts", i, cJSON_GetArraySize(r));
        check_receipt(cJSON_GetArrayItem(r, 0), c->msg_id, c->payload, strlen(c->payload),
                      "rejected", c->code, __LINE__);
        {
            const char *got = egjson_str(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r, 0), "error"), "code");
            CHECKF(got && strcmp(got, c->code) == 0, "case %zu (%s): code %s, want %s", i,
                   c->payload, got ? got : "-", c->code);
        }
        cJSON_Delete(r);
        /* every rejection is kept in quarantine, under its source */
        CHECKF(count("quarantine") == q + 1, "case %zu: not quarantined", i);
        last_quarantine(code, source, sizeof code);
        snprintf(want_source, sizeof want_source, "device:%s", c->device);
        CHECKF(strcmp(code, c->code) == 0, "case %zu: quarantine code %s", i, code);
        CHECKF(strcmp(source, want_source) == 0, "case %zu: quarantine source %s", i, source);
    }
    CU_ASSERT_EQUAL(count("entries"), entries);
    CU_ASSERT_EQUAL(count("msgs"), msgs);
    CU_ASSERT_EQUAL(eg_outbox_pending(st), 0);

    /* the quarantined payload is the rejected one, byte for byte */
    {
        uint8_t *pl = NULL;
        size_t len = 0;
        int64_t id = query_int("SELECT max(id) FROM quarantine");
        const char *last = cases[sizeof cases / sizeof cases[0] - 1].payload;
        CU_ASSERT_EQUAL(eg_quarantine_payload(st, vault, id, &pl, &len), EG_OK);
        CU_ASSERT_EQUAL(len, strlen(last));
        if (pl) {
            CU_ASSERT_EQUAL(memcmp(pl, last, len), 0);
        }
        free(pl);
    }
}

static void test_too_large(void)
{
    char p[1024];
    size_t n;
    cJSON *r;
    long long first = (long long)eg_ingest_next_seq(ig);

    cfg.max_payload_bytes = 256;
    /* 300 bytes of a valid message: too_large, not parsed, so msg_id null */
    tele(p, sizeof p, 4, HR);
    n = strlen(p);
    memset(p + n - 1, ' ', 300 - n);
    memcpy(p + 299, "}", 2);
    CU_ASSERT_EQUAL(strlen(p), 300);
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), NULL, p, "rejected", "too_large");
    cJSON_Delete(r);

    /* exactly max_payload_bytes is taken */
    tele(p, sizeof p, 4, HR);
    n = strlen(p);
    memset(p + n - 1, ' ', 256 - n);
    memcpy(p + 255, "}", 2);
    CU_ASSERT_EQUAL(strlen(p), 256);
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "4", p, "accepted", NULL);
    CU_ASSERT_EQUAL(check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__), first);
    cJSON_Delete(r);
    cfg.max_payload_bytes = 262144;
}

static void test_signatures(void)
{
    const char *topic = "ehr/device/DS/telemetry", *receipts = "ehr/device/DS/receipts";
    char p[512], p2[512], sig[EG_SIG_B64_MAX], code[64], source[96];
    cJSON *r;

    /* good */
    tele(p, sizeof p, 1, HR);
    sign(ds_key, topic, p, sig, sizeof sig);
    run_one(topic, p, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "accepted", NULL);
    check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__);
    cJSON_Delete(r);

    /* missing, made for another topic, another key, garbage */
    tele(p, sizeof p, 2, HR);
    run_one(topic, p, NULL);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "signature");
    cJSON_Delete(r);
    last_quarantine(code, source, sizeof code);
    CU_ASSERT_STRING_EQUAL(code, "signature");
    /* unauthenticated junk is kept apart from the device's own rejections */
    CU_ASSERT_STRING_EQUAL(source, "device:DS:unverified");

    sign(ds_key, D1_TOPIC, p, sig, sizeof sig);
    run_one(topic, p, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "signature");
    cJSON_Delete(r);
    sign(other_key, topic, p, sig, sizeof sig);
    run_one(topic, p, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "signature");
    cJSON_Delete(r);
    run_one(topic, p, "not base64!");
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "signature");
    cJSON_Delete(r);
    /* a signature over other bytes */
    tele(p2, sizeof p2, 2, "{\"type\":\"heart_rate\",\"value\":73}");
    sign(ds_key, topic, p2, sig, sizeof sig);
    run_one(topic, p, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p, "rejected", "signature");
    cJSON_Delete(r);

    /* correctly signed but invalid: the device's own bucket */
    snprintf(p2, sizeof p2, "{\"seq\":2,\"ts\":\"" TS "\",\"readings\":[]}");
    sign(ds_key, topic, p2, sig, sizeof sig);
    run_one(topic, p2, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "2", p2, "rejected", "schema");
    cJSON_Delete(r);
    last_quarantine(code, source, sizeof code);
    CU_ASSERT_STRING_EQUAL(source, "device:DS");

    /* seq 1 again with other bytes: unsigned -> signature, signed -> conflict */
    tele(p2, sizeof p2, 1, "{\"type\":\"heart_rate\",\"value\":99}");
    run_one(topic, p2, NULL);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p2, "rejected", "signature");
    cJSON_Delete(r);
    sign(ds_key, topic, p2, sig, sizeof sig);
    run_one(topic, p2, sig);
    r = one_message(receipts, __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p2, "rejected", "conflict");
    cJSON_Delete(r);

    /* a new key registered for the device: the old one no longer verifies */
    {
        char pem[EG_PEM_PUB_MAX];
        sqlite3_stmt *s;
        CU_ASSERT_EQUAL_FATAL(eg_key_public_pem(other_key, pem, sizeof pem), EG_OK);
        CU_ASSERT_FATAL(sqlite3_prepare_v2(eg_store_db(st),
                                           "UPDATE devices SET pubkey = ?1 WHERE device_id = 'DS'",
                                           -1, &s, NULL) == SQLITE_OK);
        sqlite3_bind_text(s, 1, pem, -1, SQLITE_TRANSIENT);
        CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
        tele(p, sizeof p, 3, HR);
        sign(ds_key, topic, p, sig, sizeof sig);
        run_one(topic, p, sig);
        r = one_message(receipts, __LINE__);
        CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "3", p, "rejected", "signature");
        cJSON_Delete(r);
        sign(other_key, topic, p, sig, sizeof sig);
        run_one(topic, p, sig);
        r = one_message(receipts, __LINE__);
        CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "3", p, "accepted", NULL);
        cJSON_Delete(r);
    }
}

/* Several messages to one device in one transaction: one outbox message
 * with their receipts in order; another device gets its own. */
static void test_batch_one_message(void)
{
    char p[5][512];
    struct eg_msg *m[6];
    cJSON *r, *r9;
    long long first = (long long)eg_ingest_next_seq(ig), a, b;

    sql("DELETE FROM outbox");
    tele(p[0], sizeof p[0], 100, HR "," HR);
    tele(p[1], sizeof p[1], 101, "{\"type\":\"heart_rate\",\"value\":5}");
    tele(p[2], sizeof p[2], 102, HR);
    snprintf(p[3], sizeof p[3], "not json");
    tele(p[4], sizeof p[4], 7, HR);
    m[0] = mk(D1_TOPIC, p[0], strlen(p[0]), NULL);
    m[1] = mk(D1_TOPIC, p[1], strlen(p[1]), NULL);
    m[2] = mk(D1_TOPIC, p[0], strlen(p[0]), NULL); /* duplicate inside the same transaction */
    m[3] = mk("ehr/device/D9/telemetry", p[4], strlen(p[4]), NULL);
    m[4] = mk(D1_TOPIC, p[2], strlen(p[2]), NULL);
    m[5] = mk(D1_TOPIC, p[3], strlen(p[3]), NULL);
    run_batch(m, 6);

    CU_ASSERT_EQUAL(eg_outbox_pending(st), 2);
    r = one_message(D1_RECEIPTS, __LINE__);
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(r), 5);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "100", p[0], "accepted", NULL);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 1), "101", p[1], "rejected", "range");
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 2), "100", p[0], "duplicate", NULL);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 3), "102", p[2], "accepted", NULL);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 4), NULL, p[3], "rejected", "parse");
    a = check_entries(cJSON_GetArrayItem(r, 0), 2, __LINE__);
    CU_ASSERT_EQUAL(a, first);
    CU_ASSERT_EQUAL(check_entries(cJSON_GetArrayItem(r, 2), 2, __LINE__), first);
    b = check_entries(cJSON_GetArrayItem(r, 3), 1, __LINE__);
    CU_ASSERT_EQUAL(b, first + 2); /* no gap for the rejected or duplicate ones */
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), (uint64_t)first + 3);
    r9 = one_message("ehr/device/D9/receipts", __LINE__);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(r9), 1);
    CHECK_RECEIPT(cJSON_GetArrayItem(r9, 0), "7", p[4], "rejected", "unknown_device");
    cJSON_Delete(r);
    cJSON_Delete(r9);
}

/* Many receipts for one topic: all arrive, in order, in messages that each
 * stay within the receipt size limit of eg_ingest.c (16384 bytes). */
static void test_many_receipts(void)
{
    enum { N = 150 };
    struct eg_msg *m[N];
    char p[N][64];
    struct eg_outbox_row rows[64];
    int nrows, nmsgs;
    cJSON *r;

    sql("DELETE FROM outbox");
    for (int i = 0; i < N; i++) {
        snprintf(p[i], sizeof p[i], "{\"seq\":%d,\"bad\":", 1000 + i); /* parse errors */
        m[i] = mk(D1_TOPIC, p[i], strlen(p[i]), NULL);
    }
    run_batch(m, N);
    nrows = eg_outbox_fetch(st, 0, 64, rows);
    CU_ASSERT(nrows >= 1);
    for (int i = 0; i < nrows; i++) {
        CHECKF(rows[i].len <= 16384, "receipt message of %zu bytes", rows[i].len);
        eg_outbox_row_clear(&rows[i]);
    }
    r = take_receipts(D1_RECEIPTS, &nmsgs);
    CU_ASSERT_EQUAL(nmsgs, nrows);
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(r), N);
    for (int i = 0; i < N; i++)
        check_receipt(cJSON_GetArrayItem(r, i), NULL, p[i], strlen(p[i]), "rejected", "parse",
                      __LINE__);
    cJSON_Delete(r);
}

static void test_abort_restores(void)
{
    char p[512], p2[512];
    struct eg_msg *m;
    struct eg_ingest_stats before, after;
    uint64_t seq = eg_ingest_next_seq(ig);
    long long entries = count("entries"), msgs = count("msgs"), q = count("quarantine");
    cJSON *r;

    sql("DELETE FROM outbox");
    eg_ingest_get_stats(ig, &before);
    tele(p, sizeof p, 200, HR "," HR);
    tele(p2, sizeof p2, 201, "{\"type\":\"heart_rate\",\"value\":5}");
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    m = mk(D1_TOPIC, p, strlen(p), NULL);
    CU_ASSERT_EQUAL(eg_ingest_process(ig, m), EG_OK);
    eg_msg_free(m);
    m = mk(D1_TOPIC, p2, strlen(p2), NULL);
    CU_ASSERT_EQUAL(eg_ingest_process(ig, m), EG_OK);
    eg_msg_free(m);
    CU_ASSERT_EQUAL(eg_ingest_flush(ig), EG_OK);
    CU_ASSERT_EQUAL(count("entries"), entries + 2); /* written, not yet committed */
    CU_ASSERT_EQUAL(count("quarantine"), q + 1);
    eg_store_rollback(st);
    eg_ingest_abort(ig);

    CU_ASSERT_EQUAL(count("entries"), entries);
    CU_ASSERT_EQUAL(count("msgs"), msgs);
    CU_ASSERT_EQUAL(count("quarantine"), q);
    CU_ASSERT_EQUAL(eg_outbox_pending(st), 0);
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), seq);
    eg_ingest_get_stats(ig, &after);
    CU_ASSERT_EQUAL(after.msgs, before.msgs);
    CU_ASSERT_EQUAL(after.accepted, before.accepted);
    CU_ASSERT_EQUAL(after.rejected, before.rejected);
    CU_ASSERT_EQUAL(after.entries, before.entries);

    /* abort without flush drops the buffered receipts too */
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    m = mk(D1_TOPIC, p2, strlen(p2), NULL);
    CU_ASSERT_EQUAL(eg_ingest_process(ig, m), EG_OK);
    eg_msg_free(m);
    eg_store_rollback(st);
    eg_ingest_abort(ig);

    /* the same message again: accepted (not a duplicate), reusing the seq */
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(r), 1); /* nothing left over from the aborts */
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "200", p, "accepted", NULL);
    CU_ASSERT_EQUAL(check_entries(cJSON_GetArrayItem(r, 0), 2, __LINE__), (long long)seq);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), seq + 2);
    eg_ingest_get_stats(ig, &after);
    CU_ASSERT_EQUAL(after.accepted, before.accepted + 1);
    CU_ASSERT_EQUAL(after.entries, before.entries + 2);
}

/* Readings are attributed by their ts to the binding in force then. */
static void test_binding_history(void)
{
    char p[512], code[64], q[160];
    struct eg_error e = {0};
    struct eg_msg *m;
    cJSON *r;
    long long s1, s2;

    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "monitor", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_rebind(st, "D4", "P2", T_REBIND, &e), EG_OK);
    sql("DELETE FROM outbox");

    snprintf(p, sizeof p, "{\"seq\":1,\"ts\":\"2026-11-24T06:59:59.999Z\",\"readings\":[" HR "]}");
    m = mk("ehr/device/D4/telemetry", p, strlen(p), NULL);
    m->received_ms = T_REBIND + 60000;
    run_batch(&m, 1);
    snprintf(p, sizeof p, "{\"seq\":2,\"ts\":\"2026-11-24T07:00:00.000Z\",\"readings\":[" HR "]}");
    m = mk("ehr/device/D4/telemetry", p, strlen(p), NULL);
    m->received_ms = T_REBIND + 60000;
    run_batch(&m, 1);
    /* the same instant in another offset */
    snprintf(p, sizeof p,
             "{\"seq\":3,\"ts\":\"2026-11-24T08:00:00.000+01:00\",\"patient\":\"P2\","
             "\"readings\":[" HR "]}");
    m = mk("ehr/device/D4/telemetry", p, strlen(p), NULL);
    m->received_ms = T_REBIND + 60000;
    run_batch(&m, 1);
    /* naming the earlier patient after the rebind */
    snprintf(p, sizeof p,
             "{\"seq\":4,\"ts\":\"2026-11-24T07:00:00.000Z\",\"patient\":\"P1\","
             "\"readings\":[" HR "]}");
    m = mk("ehr/device/D4/telemetry", p, strlen(p), NULL);
    m->received_ms = T_REBIND + 60000;
    run_batch(&m, 1);

    {
        int nmsgs;
        r = take_receipts("ehr/device/D4/receipts", &nmsgs);
        CU_ASSERT_EQUAL(nmsgs, 4); /* one per transaction */
    }
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(r), 4);
    s1 = check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__);
    s2 = check_entries(cJSON_GetArrayItem(r, 1), 1, __LINE__);
    snprintf(q, sizeof q, "SELECT patient FROM entries WHERE seq = %lld", s1);
    CU_ASSERT_STRING_EQUAL(query_text(q, code, sizeof code), "P1");
    snprintf(q, sizeof q, "SELECT patient FROM entries WHERE seq = %lld", s2);
    CU_ASSERT_STRING_EQUAL(query_text(q, code, sizeof code), "P2");
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(r, 2), "status"), "accepted");
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(r, 3), "status"), "rejected");
    CU_ASSERT_STRING_EQUAL(
        egjson_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r, 3), "error"), "code"),
        "binding");
    cJSON_Delete(r);
}

/* A patient whose data key was destroyed (erasure) while a device is still
 * bound to them: the message cannot be stored. It must get exactly one
 * receipt, a rejection, and leave nothing behind. */
static void test_erased_patient(void)
{
    char p[512], code[64], source[96];
    struct eg_error e = {0};
    cJSON *r;
    long long entries, msgs;
    uint64_t seq;

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P3", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D3", "P3", "monitor", NULL, &e), EG_OK);
    sql("DELETE FROM outbox");
    tele(p, sizeof p, 1, HR);
    run_one("ehr/device/D3/telemetry", p, NULL);
    r = one_message("ehr/device/D3/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "accepted", NULL);
    cJSON_Delete(r);

    sql("UPDATE patient_keys SET wrapped = NULL, erased_at = 1 WHERE patient_id = 'P3'");
    eg_vault_cache_clear(vault);
    entries = count("entries");
    msgs = count("msgs");
    seq = eg_ingest_next_seq(ig);
    tele(p, sizeof p, 2, HR "," HR);
    run_one("ehr/device/D3/telemetry", p, NULL);
    r = one_message("ehr/device/D3/receipts", __LINE__);
    CHECKF(cJSON_GetArraySize(r) == 1, "%d receipts for one message", cJSON_GetArraySize(r));
    CHECK_RECEIPT(cJSON_GetArrayItem(r, cJSON_GetArraySize(r) - 1), "2", p, "rejected",
                  "unknown_patient");
    for (int i = 0; i < cJSON_GetArraySize(r); i++)
        CHECKF(strcmp(egjson_str(cJSON_GetArrayItem(r, i), "status"), "accepted") != 0,
               "receipt %d says accepted", i);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(count("entries"), entries);
    CU_ASSERT_EQUAL(count("msgs"), msgs);
    CU_ASSERT_EQUAL(eg_ingest_next_seq(ig), seq);
    last_quarantine(code, source, sizeof code);
    CU_ASSERT_STRING_EQUAL(code, "unknown_patient");
    CU_ASSERT_STRING_EQUAL(source, "device:D3");
    /* and the next message of another patient takes the unused seq */
    tele(p, sizeof p, 300, HR);
    run_one(D1_TOPIC, p, NULL);
    r = one_message(D1_RECEIPTS, __LINE__);
    CU_ASSERT_EQUAL(check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__), (long long)seq);
    cJSON_Delete(r);
}

static void test_replay(void)
{
    char p[512], buf[64], qq[128];
    struct eg_error e = {0};
    struct eg_msg *due;
    int64_t qid;
    cJSON *r;
    long long rows;

    sql("DELETE FROM outbox");
    /* a replayed message arrives again now (wall clock): its ts is long past */
    snprintf(p, sizeof p, "{\"seq\":1,\"ts\":\"2020-01-01T00:00:00.000Z\",\"readings\":[" HR "]}");
    /* rejected: the device is not registered yet */
    run_one("ehr/device/D7/telemetry", p, NULL);
    r = one_message("ehr/device/D7/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "rejected", "unknown_device");
    cJSON_Delete(r);
    qid = query_int("SELECT max(id) FROM quarantine");
    rows = count("quarantine");

    /* replayed unchanged: rejected again, same row updated */
    CU_ASSERT_EQUAL(eg_quarantine_request_replay(st, qid), EG_OK);
    due = eg_quarantine_due(st, vault, 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(due);
    CU_ASSERT_EQUAL(due->quarantine_id, qid);
    CU_ASSERT_PTR_NULL(due->next);
    run_batch(&due, 1);
    r = one_message("ehr/device/D7/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "rejected", "unknown_device");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(count("quarantine"), rows);
    snprintf(qq, sizeof qq, "SELECT replay FROM quarantine WHERE id = %lld", (long long)qid);
    CU_ASSERT_EQUAL(query_int(qq), 0);

    /* registered, replayed: accepted, and the row says so */
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D7", "P1", "monitor", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_quarantine_request_replay(st, qid), EG_OK);
    due = eg_quarantine_due(st, vault, 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(due);
    run_batch(&due, 1);
    r = one_message("ehr/device/D7/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "accepted", NULL);
    check_entries(cJSON_GetArrayItem(r, 0), 1, __LINE__);
    cJSON_Delete(r);
    snprintf(qq, sizeof qq, "SELECT code FROM quarantine WHERE id = %lld", (long long)qid);
    CU_ASSERT_STRING_EQUAL(query_text(qq, buf, sizeof buf), "accepted");
    CU_ASSERT_EQUAL(count("quarantine"), rows);

    /* replayed once more: a duplicate, recorded as such */
    CU_ASSERT_EQUAL(eg_quarantine_request_replay(st, qid), EG_OK);
    due = eg_quarantine_due(st, vault, 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(due);
    run_batch(&due, 1);
    r = one_message("ehr/device/D7/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "duplicate", NULL);
    cJSON_Delete(r);
    CU_ASSERT_STRING_EQUAL(query_text(qq, buf, sizeof buf), "duplicate");
    snprintf(qq, sizeof qq, "SELECT replay FROM quarantine WHERE id = %lld", (long long)qid);
    CU_ASSERT_EQUAL(query_int(qq), 0);
}

static void test_topics_and_internal(void)
{
    char p[512], code[64], source[96], id65[66], topic[128], receipts[128];
    long long q = count("quarantine");
    struct eg_msg *m;
    struct eg_error e = {0};
    cJSON *r;
    int nmsgs;

    sql("DELETE FROM outbox");
    tele(p, sizeof p, 1, HR);
    /* topics the gateway does not take: ignored, nothing answered or kept */
    {
        static const char *const ignored[] = {"ehr/patient/P1/other", D1_RECEIPTS,
                                              "other/device/D1/telemetry", "ehr/device/D1",
                                              "ehr/device/D1/telemetry/x"};
        for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
            m = mk(ignored[i], p, strlen(p), NULL);
            run_batch(&m, 1);
        }
    }
    CU_ASSERT_EQUAL(eg_outbox_pending(st), 0);
    CU_ASSERT_EQUAL(count("quarantine"), q);

    /* an invalid device id in the topic: still answered on its receipts topic */
    run_one("ehr/device/a b/telemetry", p, NULL);
    r = one_message("ehr/device/a b/receipts", __LINE__);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(r), 1);
    CU_ASSERT_STRING_EQUAL(egjson_str(cJSON_GetArrayItem(r, 0), "status"), "rejected");
    CU_ASSERT_STRING_EQUAL(
        egjson_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r, 0), "error"), "code"),
        "schema");
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(count("quarantine"), q + 1);
    memset(id65, 'd', 65);
    id65[65] = '\0';
    snprintf(topic, sizeof topic, "ehr/device/%s/telemetry", id65);
    snprintf(receipts, sizeof receipts, "ehr/device/%s/receipts", id65);
    run_one(topic, p, NULL);
    r = take_receipts(receipts, &nmsgs);
    CU_ASSERT_EQUAL(nmsgs, 1);
    cJSON_Delete(r);

    /* a registry row of an unknown device type: internal */
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D5", "P1", "monitor", NULL, &e), EG_OK);
    sql("UPDATE devices SET type = 'toaster' WHERE device_id = 'D5'");
    run_one("ehr/device/D5/telemetry", p, NULL);
    r = one_message("ehr/device/D5/receipts", __LINE__);
    CHECK_RECEIPT(cJSON_GetArrayItem(r, 0), "1", p, "rejected", "internal");
    cJSON_Delete(r);
    last_quarantine(code, source, sizeof code);
    CU_ASSERT_STRING_EQUAL(code, "internal");
    CU_ASSERT_STRING_EQUAL(source, "device:D5");
}

/* ---- setup ------------------------------------------------------------ */

static int setup(void)
{
    char db[128], key[128], mk_path[128], pem[EG_PEM_PUB_MAX];
    struct eg_error e = {0};

    snprintf(db, sizeof db, "%s/ingest.db", tmpdir);
    snprintf(key, sizeof key, "%s/gw.key", tmpdir);
    snprintf(mk_path, sizeof mk_path, "%s/master.key", tmpdir);
    if (eg_config_init(&cfg) != EG_OK || eg_rng_new(&rng) != EG_OK ||
        eg_store_open(db, EG_STORE_CREATE, &st, &e) != EG_OK ||
        eg_vault_open_gateway(st, key, mk_path, rng, &vault, &e) != EG_OK ||
        eg_key_generate(rng, &ds_key, &e) != EG_OK ||
        eg_key_generate(rng, &other_key, &e) != EG_OK ||
        eg_key_public_pem(ds_key, pem, sizeof pem) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        return -1;
    }
    if (eg_registry_add_patient(st, "P1", NULL, &e) != EG_OK ||
        eg_registry_add_patient(st, "P2", NULL, &e) != EG_OK ||
        eg_registry_add_device(st, "D1", "P1", "monitor", NULL, &e) != EG_OK ||
        eg_registry_add_device(st, "D2", "P1", "pulse_oximeter", NULL, &e) != EG_OK ||
        eg_registry_add_device(st, "DS", "P2", "monitor", pem, &e) != EG_OK ||
        eg_ingest_new(st, vault, &cfg, NULL, &ig, &e) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        return -1;
    }
    return 0;
}

static void teardown(void)
{
    eg_ingest_free(ig);
    eg_key_free(ds_key);
    eg_key_free(other_key);
    eg_vault_free(vault);
    eg_store_close(st);
    eg_rng_free(rng);
    eg_config_free(&cfg);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_ingest_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (setup() != 0 || CU_initialize_registry() != CUE_SUCCESS) {
        teardown();
        remove_tree(tmpdir);
        return 1;
    }
    /* the tests share one database and run in this order */
    s = CU_add_suite("ingest", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "accepted: receipt, entries, dedup row", test_accepted) ||
        !CU_add_test(s, "duplicate, conflict, seq not used up", test_duplicate_conflict) ||
        !CU_add_test(s, "rejection codes, msg_id, quarantine", test_rejections) ||
        !CU_add_test(s, "too_large and its boundary", test_too_large) ||
        !CU_add_test(s, "signatures", test_signatures) ||
        !CU_add_test(s, "one transaction, one receipts message per topic",
                     test_batch_one_message) ||
        !CU_add_test(s, "many receipts split, complete and in order", test_many_receipts) ||
        !CU_add_test(s, "abort after rollback restores seq", test_abort_restores) ||
        !CU_add_test(s, "binding history by ts", test_binding_history) ||
        !CU_add_test(s, "erased patient: one rejection, nothing stored", test_erased_patient) ||
        !CU_add_test(s, "quarantine replay", test_replay) ||
        !CU_add_test(s, "other topics, invalid ids, internal", test_topics_and_internal)) {
        CU_cleanup_registry();
        teardown();
        remove_tree(tmpdir);
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    teardown();
    remove_tree(tmpdir);
    return failures != 0;
}

/*
 * test_requests.c — consent, feeds, access entries and erasure inside one
 * pipeline transaction (gateway/eg_feed.c, gateway/eg_requests.c; SPEC §8,
 * §9, §13), driven through eg_ingest_process like the pipeline does, on a
 * real SQLite file. What the integration tests cannot pin down by timing:
 * the order of directives and observations inside one transaction, and an
 * erasure withdrawing a forward queued in the same transaction.
 */
#include <CUnit/Basic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_codec.h"
#include "eg_config.h"
#include "eg_crypto.h"
#include "eg_entries.h"
#include "eg_ingest.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_outbox.h"
#include "eg_queue.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_testutil.h"
#include "eg_time.h"
#include "eg_topics.h"
#include "eg_vault.h"

static char tmpdir[64];
static struct eg_rng *rng;
static struct eg_store *st;
static struct eg_vault *vault;
static struct eg_config cfg;
static struct eg_ingest *ig;
static struct eg_key *pkey;
static uint64_t nonce = 1000, dseq = 0;

static long long query_int(const char *text)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(eg_store_db(st), text, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static struct eg_msg *msg(const char *topic, const char *payload, int signed_by_patient)
{
    char sig[EG_SIG_B64_MAX] = "";
    struct eg_msg *m;
    if (signed_by_patient) {
        uint8_t digest[32];
        eg_topic_digest(topic, payload, strlen(payload), digest);
        CU_ASSERT_FATAL(eg_key_sign_digest(pkey, rng, digest, sig, sizeof sig) == EG_OK);
    }
    m = eg_msg_new(topic, strlen(topic), payload, strlen(payload), sig[0] ? sig : NULL,
                   strlen(sig), NULL, 0, NULL, 0);
    CU_ASSERT_FATAL(m != NULL);
    m->received_ms = eg_now_ms();
    return m;
}

/* A signed directive or request of P1; fields without nonce and issued. */
static struct eg_msg *patient_msg(const char *leaf, const char *fields)
{
    char topic[64], payload[1024], when[EG_TIME_STRLEN];
    eg_time_format(eg_now_ms(), when);
    snprintf(topic, sizeof topic, "ehr/patient/P1/%s", leaf);
    snprintf(payload, sizeof payload, "{%s,\"nonce\":%llu,\"issued\":\"%s\"}", fields,
             (unsigned long long)++nonce, when);
    return msg(topic, payload, 1);
}

static struct eg_msg *reading(void)
{
    char payload[256], when[EG_TIME_STRLEN];
    eg_time_format(eg_now_ms() - 1000, when);
    snprintf(payload, sizeof payload,
             "{\"seq\":%llu,\"ts\":\"%s\",\"readings\":[{\"type\":\"heart_rate\",\"value\":70}]}",
             (unsigned long long)++dseq, when);
    return msg("ehr/device/D1/telemetry", payload, 0);
}

static void run_batch(struct eg_msg **msgs, int n)
{
    CU_ASSERT_EQUAL_FATAL(eg_store_begin(st), EG_OK);
    for (int i = 0; i < n; i++)
        CHECKF(eg_ingest_process(ig, msgs[i]) == EG_OK, "message %d on %s", i, msgs[i]->topic);
    CU_ASSERT_EQUAL(eg_ingest_flush(ig), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_store_commit(st), EG_OK);
    eg_ingest_committed(ig);
    for (int i = 0; i < n; i++)
        eg_msg_free(msgs[i]);
}

/* Outbox rows on topic (counted, then all rows deleted when clear). */
static int outbox_count(const char *topic, char *first_payload, size_t size)
{
    struct eg_outbox_row rows[256];
    int n = eg_outbox_fetch(st, 0, 256, rows), k = 0;
    CU_ASSERT(n >= 0);
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].topic, topic) == 0) {
            if (k == 0 && first_payload)
                snprintf(first_payload, size, "%.*s", (int)rows[i].len, (char *)rows[i].payload);
            k++;
        }
        eg_outbox_row_clear(&rows[i]);
    }
    return k;
}

static void outbox_clear(void)
{
    char *err = NULL;
    sqlite3_exec(eg_store_db(st), "DELETE FROM outbox", NULL, NULL, &err);
    sqlite3_free(err);
}

/* Grant, readings and a revocation in one transaction: only the reading
 * committed between them is forwarded, with feed_seq 0, and one access
 * entry names exactly it. */
static void test_order_inside_one_transaction(void)
{
    struct eg_msg *b[5];
    char feed[4096], want[64];
    long long seq2;

    outbox_clear();
    b[0] = reading();
    b[1] = patient_msg("consent", "\"consent_id\":\"c1\",\"action\":\"grant\",\"grantee\":"
                                  "\"authority\",\"categories\":[\"vital-signs\"]");
    b[2] = reading();
    b[3] = patient_msg("consent", "\"consent_id\":\"c1\",\"action\":\"revoke\"");
    b[4] = reading();
    run_batch(b, 5);
    CU_ASSERT_EQUAL(outbox_count("ehr/feed/authority", feed, sizeof feed), 1);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM feed"), 1);
    CU_ASSERT_EQUAL(query_int("SELECT min(feed_seq) FROM feed"), 0);
    seq2 = query_int("SELECT seq FROM feed");
    /* the forwarded entry is the reading between grant and revoke */
    CU_ASSERT_EQUAL(seq2, query_int("SELECT seq FROM entries WHERE kind = 'observation'"
                                    " ORDER BY seq LIMIT 1 OFFSET 1"));
    snprintf(want, sizeof want, "\"entry_id\":\"gw1-%lld\"", seq2);
    CHECKF(contains(feed, want), "feed message %.200s lacks %s", feed, want);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE kind = 'access'"), 1);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE kind = 'consent'"), 2);
    /* the access entry comes after everything it records */
    CU_ASSERT(query_int("SELECT seq FROM entries WHERE kind = 'access'") >
              query_int("SELECT max(seq) FROM entries WHERE kind <> 'access'"));
    {
        char *bytes = NULL;
        size_t len = 0;
        char id[64];
        snprintf(id, sizeof id, "\"value\":\"gw1-%lld\"", seq2);
        CU_ASSERT_EQUAL(eg_entry_read(st, vault,
                                      (uint64_t)query_int("SELECT seq FROM entries"
                                                          " WHERE kind = 'access'"),
                                      &bytes, &len),
                        EG_OK);
        CHECKF(bytes && contains(bytes, id) && contains(bytes, "\"AuditEvent\""),
               "access entry %.300s", bytes ? bytes : "");
        free(bytes);
    }
}

/* An erasure in the same transaction as a forward withdraws the queued
 * feed message; the feed row stays (since answers null, no feed_seq gap). */
static void test_erase_withdraws_queued_forward(void)
{
    struct eg_msg *b[3];
    long long feed_before = query_int("SELECT count(*) FROM feed");

    b[0] = patient_msg("consent", "\"consent_id\":\"c2\",\"action\":\"grant\",\"grantee\":"
                                  "\"authority\",\"categories\":[\"vital-signs\"]");
    run_batch(b, 1);
    outbox_clear();
    b[0] = reading();
    b[1] = patient_msg("request", "\"op\":\"records\"");
    b[2] = patient_msg("request", "\"op\":\"erase\"");
    run_batch(b, 3);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM feed"), feed_before + 1);
    CU_ASSERT_EQUAL(outbox_count("ehr/feed/authority", NULL, 0), 0);
    /* the records reply queued before the erasure is withdrawn too; only
     * the erase reply remains on the patient's replies topic */
    {
        char reply[512];
        CU_ASSERT_EQUAL(outbox_count("ehr/patient/P1/replies", reply, sizeof reply), 1);
        CHECKF(contains(reply, "\"op\":\"erase\"") && contains(reply, "\"erased\":"),
               "reply %s", reply);
    }
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM patient_keys WHERE patient_id = 'P1'"
                              " AND wrapped IS NULL"),
                    1);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM consents WHERE active = 1"), 0);
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE kind = 'erasure'"), 1);
    /* the access entry of the withdrawn forward is still there: the
     * decision was made and is part of the anchored history */
    CU_ASSERT_EQUAL(query_int("SELECT count(*) FROM entries WHERE kind = 'access'"), 2);
}

static int setup(void)
{
    char db[128], key[128], mk_path[128], pem[EG_PEM_PUB_MAX];
    struct eg_error e = {0};

    snprintf(db, sizeof db, "%s/req.db", tmpdir);
    snprintf(key, sizeof key, "%s/gw.key", tmpdir);
    snprintf(mk_path, sizeof mk_path, "%s/master.key", tmpdir);
    if (eg_config_init(&cfg) != EG_OK ||
        eg_config_set(&cfg, "grantee", "authority:public-health", &e) != EG_OK ||
        eg_rng_new(&rng) != EG_OK || eg_store_open(db, EG_STORE_CREATE, &st, &e) != EG_OK ||
        eg_vault_open_gateway(st, key, mk_path, rng, &vault, &e) != EG_OK ||
        eg_key_generate(rng, &pkey, &e) != EG_OK ||
        eg_key_public_pem(pkey, pem, sizeof pem) != EG_OK ||
        eg_registry_add_patient(st, "P1", pem, &e) != EG_OK ||
        eg_registry_add_device(st, "D1", "P1", "monitor", NULL, &e) != EG_OK ||
        eg_ingest_new(st, vault, &cfg, NULL, &ig, &e) != EG_OK) {
        fprintf(stderr, "setup: %s\n", e.detail);
        return -1;
    }
    eg_store_set_outbox_key(st, eg_vault_outbox_key(vault), rng);
    return 0;
}

static void teardown(void)
{
    eg_ingest_free(ig);
    eg_key_free(pkey);
    eg_vault_free(vault);
    eg_store_close(st);
    eg_rng_free(rng);
    eg_config_free(&cfg);
}

int main(void)
{
    static const struct eg_test tests[] = {
        {"directives and readings in one transaction", test_order_inside_one_transaction},
        {"erasure withdraws what is queued", test_erase_withdraws_queued_forward},
    };
    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_requests_XXXXXX");
    return eg_test_main("requests", tmpdir, tests, sizeof tests / sizeof tests[0], setup,
                        teardown);
}

/*
 * test_store.c — gateway/eg_store (SQLite connection, schema, statement
 * cache, transactions, meta) and gateway/eg_registry (patients, devices,
 * hospitals, identifiers, binding history).
 *
 * Real database files in a mkdtemp() directory, removed at the end. Files
 * that are not ehrgate databases (a newer schema, another application's
 * database, a text file) are made here with the plain sqlite3 API.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eg_registry.h"
#include "eg_store.h"
#include "eg_telemetry.h"
#include "eg_testutil.h"

#define KEYS EG_FIXTURES "/keys/"

static char tmpdir[64];

/* ---- helpers ---------------------------------------------------------- */

static void db_path(const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", tmpdir, name);
}

static struct eg_store *open_new(const char *name)
{
    char path[256];
    struct eg_store *st = NULL;
    struct eg_error e = {0};

    db_path(name, path, sizeof path);
    CHECKF(eg_store_open(path, EG_STORE_CREATE, &st, &e) == EG_OK, "open %s: %s", path, e.detail);
    CU_ASSERT_FATAL(st != NULL);
    return st;
}

/* One integer from a query on the store's connection; -1 on error. */
static long long query_int(struct eg_store *st, const char *sql)
{
    sqlite3_stmt *s;
    long long v = -1;

    if (sqlite3_prepare_v2(eg_store_db(st), sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Runs SQL on a plain sqlite3 connection (files made without eg_store). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;

    CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
    CHECKF(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
}

static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s;
    long long v = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return v;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    CU_ASSERT_FATAL(f != NULL);
    buf = malloc(8192);
    CU_ASSERT_FATAL(buf != NULL);
    n = fread(buf, 1, 8191, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- store ------------------------------------------------------------ */

static void test_create_reopen(void)
{
    char path[256], buf[64];
    struct eg_store *st;
    struct eg_error e = {0};

    db_path("a.db", path, sizeof path);
    st = open_new("a.db");
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA user_version"), EG_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA foreign_keys"), 1);
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA secure_delete"), 1);
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA synchronous"), 2); /* FULL */
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                                  " name IN ('meta','patients','patient_keys','identifiers',"
                                  "'hospitals','devices','bindings','entries','msgs',"
                                  "'quarantine','outbox','blocks')"),
                    12);
    {
        sqlite3_stmt *s;
        CU_ASSERT_FATAL(sqlite3_prepare_v2(eg_store_db(st), "PRAGMA journal_mode", -1, &s, NULL) ==
                        SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_ROW);
        CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
    }
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "k", "v1"), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    eg_store_close(st);
    eg_store_close(NULL);

    /* reopen without CREATE: the data is there, the schema not re-run */
    st = NULL;
    CHECKF(eg_store_open(path, 0, &st, &e) == EG_OK, "reopen: %s", e.detail);
    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "k", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "v1");
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P1"), EG_OK);
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA user_version"), EG_SCHEMA_VERSION);
    eg_store_close(st);

    /* and again with CREATE: nothing is lost */
    st = open_new("a.db");
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P1"), EG_OK);
    eg_store_close(st);
}

/* How to take a current database back to schema 1, one step per migration
 * (undo[v] undoes migration v-1 -> v). A new migration needs its undo step
 * here, so that this test keeps proving the upgrade path from the first
 * schema. */
static const char *const undo[] = {
    [2] = "DROP INDEX entries_chain;",
    [3] = "DROP TRIGGER quarantine_usage_ins; DROP TRIGGER quarantine_usage_del;"
          " DROP TABLE quarantine_usage; ALTER TABLE quarantine DROP COLUMN truncated;",
    [4] = "DROP TABLE signers; DROP INDEX consents_active; DROP TABLE consents;"
          " DROP TABLE feed; DROP TABLE erase_requests;",
    [5] = "DROP INDEX consent_log_patient; DROP TABLE consent_log; DROP INDEX outbox_patient;"
          " ALTER TABLE outbox DROP COLUMN patient; ALTER TABLE outbox DROP COLUMN sealed;",
    [6] = "DROP INDEX entries_block_leaf; CREATE INDEX entries_leaf ON entries(leaf_hash);",
};

/* A schema-1 database is migrated on open, keeping its data. */
static void test_migrate_older(void)
{
    char path[256], buf[64];
    struct eg_store *st;
    struct eg_error e = {0};
    int nundo = (int)(sizeof undo / sizeof undo[0]);

    CHECKF(EG_SCHEMA_VERSION < nundo, "schema %d: add the undo of its migration to this test",
           EG_SCHEMA_VERSION);
    if (EG_SCHEMA_VERSION >= nundo)
        return;
    db_path("old.db", path, sizeof path);
    st = open_new("old.db");
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "kept", "yes"), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    eg_store_close(st);
    for (int v = EG_SCHEMA_VERSION; v >= 2; v--)
        raw_exec(path, undo[v]);
    raw_exec(path, "PRAGMA user_version = 1;"
                   "INSERT INTO quarantine(topic, source, received_at, code, detail, size, ct)"
                   " VALUES('ehr/device/D1/telemetry', 'device:D1', 1, 'parse', 'x', 22,"
                   " zeroblob(50));");

    /* read-only does not migrate: it refuses, saying why */
    st = NULL;
    CU_ASSERT_EQUAL(eg_store_open(path, EG_STORE_READONLY, &st, &e), EG_E_DB);
    CU_ASSERT_PTR_NULL(st);
    CHECKF(contains(e.detail, path), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(raw_int(path, "PRAGMA user_version"), 1);

    st = open_new("old.db");
    CU_ASSERT_EQUAL(query_int(st, "PRAGMA user_version"), EG_SCHEMA_VERSION);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                  " AND name = 'entries_chain'"),
                    1);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                  " AND name IN ('entries_block_leaf', 'entries_leaf')"),
                    1);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "kept", buf, sizeof buf), 0);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P1"), EG_OK);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM quarantine"), 1);
    if (EG_SCHEMA_VERSION >= 3) {
        CU_ASSERT_EQUAL(query_int(st, "SELECT bytes FROM quarantine_usage"), 50);
    }
    eg_store_close(st);
}

static void test_open_refusals(void)
{
    char path[256];
    struct eg_store *st = (struct eg_store *)&st; /* must be reset to NULL */
    struct eg_error e = {0};
    eg_err rc;

    /* without CREATE a missing file is an error naming it, and not created */
    db_path("missing.db", path, sizeof path);
    rc = eg_store_open(path, 0, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    CU_ASSERT_PTR_NULL(st);
    CHECKF(contains(e.detail, path), "detail \"%s\"", e.detail);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
    rc = eg_store_open(path, EG_STORE_READONLY, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);

    /* a newer schema is refused, whatever the flags */
    db_path("newer.db", path, sizeof path);
    raw_exec(path,
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); PRAGMA user_version = 99;");
    memset(&e, 0, sizeof e);
    rc = eg_store_open(path, EG_STORE_CREATE, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    CU_ASSERT_PTR_NULL(st);
    CHECKF(contains(e.detail, path) && contains(e.detail, "99"), "detail \"%s\"", e.detail);
    rc = eg_store_open(path, 0, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    rc = eg_store_open(path, EG_STORE_READONLY, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    CU_ASSERT_EQUAL(raw_int(path, "PRAGMA user_version"), 99);

    /* read-only: another application's database is refused */
    db_path("other.db", path, sizeof path);
    raw_exec(path, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
                   "INSERT INTO notes(body) VALUES('hello');");
    memset(&e, 0, sizeof e);
    rc = eg_store_open(path, EG_STORE_READONLY, &st, &e);
    CU_ASSERT_EQUAL(rc, EG_E_DB);
    CU_ASSERT_PTR_NULL(st);
    CHECKF(contains(e.detail, path), "detail \"%s\"", e.detail);

    /* read-only: a file that is not SQLite at all */
    db_path("text.db", path, sizeof path);
    {
        FILE *f = fopen(path, "w");
        CU_ASSERT_FATAL(f != NULL);
        fputs("this is not a database, just some text that is long enough\n", f);
        fclose(f);
    }
    rc = eg_store_open(path, EG_STORE_READONLY, &st, &e);
    CU_ASSERT_NOT_EQUAL(rc, EG_OK);
    CU_ASSERT_PTR_NULL(st);
    rc = eg_store_open(path, EG_STORE_CREATE, &st, &e);
    CU_ASSERT_NOT_EQUAL(rc, EG_OK);
    CU_ASSERT_PTR_NULL(st);
    CHECKF(contains(e.detail, path), "detail \"%s\"", e.detail);
}

/* eg_store.h: "Opens (and with EG_STORE_CREATE creates/migrates)". Without
 * CREATE, another application's database must not get the ehrgate schema
 * (ehrctl `quarantine replay` opens this way, so a mistyped --db would
 * change someone else's file). */
static void test_open_nocreate_foreign(void)
{
    char path[256];
    struct eg_store *st = NULL;
    struct eg_error e = {0};
    eg_err rc;

    db_path("foreign.db", path, sizeof path);
    raw_exec(path, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);");
    rc = eg_store_open(path, 0, &st, &e);
    CHECKF(rc != EG_OK, "a non-ehrgate database was opened for writing without CREATE");
    eg_store_close(st);
    CHECKF(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'entries'") == 0,
           "the ehrgate schema was written into another application's database");
    CHECKF(raw_int(path, "PRAGMA user_version") == 0, "user_version changed to %lld",
           raw_int(path, "PRAGMA user_version"));
}

static void test_readonly(void)
{
    char path[256], buf[64];
    struct eg_store *rw, *ro = NULL;
    struct eg_error e = {0};

    db_path("ro.db", path, sizeof path);
    rw = open_new("ro.db");
    CU_ASSERT_EQUAL(eg_store_meta_set(rw, "state", "one"), EG_OK);
    CHECKF(eg_store_open(path, EG_STORE_READONLY, &ro, &e) == EG_OK, "read-only: %s", e.detail);
    CU_ASSERT_FATAL(ro != NULL);
    CU_ASSERT_EQUAL(eg_store_meta_get(ro, "state", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "one");

    /* WAL: the reader sees the last commit, never the writer's open transaction */
    CU_ASSERT_EQUAL(eg_store_begin(rw), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_set(rw, "state", "two"), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_get(ro, "state", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "one");
    CU_ASSERT_EQUAL(eg_store_commit(rw), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_get(ro, "state", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "two");

    /* and it cannot write */
    CU_ASSERT_NOT_EQUAL(eg_store_meta_set(ro, "state", "three"), EG_OK);
    CU_ASSERT_NOT_EQUAL(eg_store_exec(ro, "INSERT INTO meta VALUES('x', 'y')", &e), EG_OK);
    eg_store_close(ro);
    eg_store_close(rw);
}

static void test_meta(void)
{
    struct eg_store *st = open_new("meta.db");
    char buf[64], small[4];

    CU_ASSERT_EQUAL(eg_store_meta_get(st, "absent", buf, sizeof buf), 1);
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "k", "first"), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "k", "second"), EG_OK); /* replaces */
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "k", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "second");
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM meta WHERE key = 'k'"), 1);
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "empty", ""), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "empty", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "");
    /* a short buffer gets a terminated prefix */
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "k", small, sizeof small), 0);
    CU_ASSERT_STRING_EQUAL(small, "sec");
    /* keys are exact */
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "K", buf, sizeof buf), 1);
    eg_store_close(st);
}

static void test_transactions(void)
{
    struct eg_store *st = open_new("tx.db");
    char buf[64];
    struct eg_error e = {0};

    CU_ASSERT_FALSE(eg_store_in_tx(st));
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_TRUE(eg_store_in_tx(st));
    /* no nested BEGIN */
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_E_DB);
    CU_ASSERT_TRUE(eg_store_in_tx(st));
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "rolled", "back"), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "PX", NULL, &e), EG_OK);
    eg_store_rollback(st);
    CU_ASSERT_FALSE(eg_store_in_tx(st));
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "rolled", buf, sizeof buf), 1);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "PX"), EG_E_UNKNOWN_PATIENT);

    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_store_meta_set(st, "committed", "yes"), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_FALSE(eg_store_in_tx(st));
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "committed", buf, sizeof buf), 0);

    /* COMMIT and ROLLBACK outside a transaction */
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_E_DB);
    eg_store_rollback(st);
    CU_ASSERT_FALSE(eg_store_in_tx(st));
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "committed", buf, sizeof buf), 0);

    /* a second writer cannot BEGIN IMMEDIATE while the first holds the lock */
    {
        char path[256];
        struct eg_store *other = NULL;
        db_path("tx.db", path, sizeof path);
        CU_ASSERT_EQUAL_FATAL(eg_store_open(path, 0, &other, &e), EG_OK);
        sqlite3_busy_timeout(eg_store_db(other), 1); /* do not wait the 5 s */
        CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
        CU_ASSERT_EQUAL(eg_store_begin(other), EG_E_DB);
        CU_ASSERT_FALSE(eg_store_in_tx(other));
        CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
        CU_ASSERT_EQUAL(eg_store_begin(other), EG_OK);
        CU_ASSERT_EQUAL(eg_store_commit(other), EG_OK);
        eg_store_close(other);
    }
    eg_store_close(st);
}

static void test_exec_stmt_err(void)
{
    struct eg_store *st = open_new("exec.db");
    struct eg_error e = {0};
    static const char sql[] = "SELECT count(*) FROM meta";
    sqlite3_stmt *a, *b;

    CU_ASSERT_EQUAL(eg_store_exec(st, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", &e), EG_OK);
    CU_ASSERT_EQUAL(query_int(st, "SELECT x FROM t"), 1);
    CU_ASSERT_EQUAL(eg_store_exec(st, "SELEKT nonsense", &e), EG_E_DB);
    CHECKF(contains(e.detail, "sqlite"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_store_exec(st, "INSERT INTO no_such_table VALUES(1)", &e), EG_E_DB);
    CHECKF(contains(e.detail, "no_such_table"), "detail \"%s\"", e.detail);

    /* the cache returns the same statement, reset, for the same literal */
    a = eg_store_stmt(st, sql);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(sqlite3_step(a), SQLITE_ROW);
    b = eg_store_stmt(st, sql);
    CU_ASSERT_PTR_EQUAL(a, b);
    CU_ASSERT_EQUAL(sqlite3_step(b), SQLITE_ROW); /* reset: steps again from the start */
    sqlite3_reset(b);
    CU_ASSERT_PTR_NULL(eg_store_stmt(st, "SELECT * FROM no_such_table"));

    CU_ASSERT_EQUAL(eg_store_err(SQLITE_OK), EG_OK);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_DONE), EG_OK);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_ROW), EG_OK);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_FULL), EG_E_DB_FULL);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_NOMEM), EG_E_NOMEM);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_BUSY), EG_E_DB);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_CONSTRAINT_PRIMARYKEY), EG_E_DB);
    CU_ASSERT_EQUAL(eg_store_err(SQLITE_IOERR_WRITE), EG_E_DB);
    eg_store_close(st);
}

/* ---- registry --------------------------------------------------------- */

static void test_registry_patients(void)
{
    struct eg_store *st = open_new("reg_p.db");
    struct eg_error e = {0};
    char *pub = slurp(KEYS "p256.pub"), *p384 = slurp(KEYS "p384.pub");
    char *rsa = slurp(KEYS "rsa2048.pub");
    char id64[65], id65[66];

    memset(id64, 'p', 64);
    id64[64] = '\0';
    memset(id65, 'p', 65);
    id65[65] = '\0';

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P2", pub, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, id64, NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P1"), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "p1"), EG_E_UNKNOWN_PATIENT);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P9"), EG_E_UNKNOWN_PATIENT);

    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_E_CONFLICT);
    CHECKF(contains(e.detail, "P1"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P2", pub, &e), EG_E_CONFLICT);

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "a b", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, id65, NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P/1", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P:1", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P3", "not a key", &e), EG_E_SCHEMA);
    CHECKF(contains(e.detail, "pubkey"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P3", "", &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P3", p384, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P3", rsa, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_patient_exists(st, "P3"), EG_E_UNKNOWN_PATIENT);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM patients"), 3);
    free(pub);
    free(p384);
    free(rsa);
    eg_store_close(st);
}

static void test_registry_hospitals_identifiers(void)
{
    struct eg_store *st = open_new("reg_h.db");
    struct eg_error e = {0};
    struct eg_hospital_rec h;
    char *pub = slurp(KEYS "p256_other.pub");
    char v128[129], v129[130];

    memset(v128, 'v', 128);
    v128[128] = '\0';
    memset(v129, 'v', 129);
    v129[129] = '\0';

    CU_ASSERT_EQUAL(eg_registry_add_hospital(st, "H1", NULL, 60, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_hospital(st, "H2", pub, -330, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_hospital(st, "H1", NULL, 0, &e), EG_E_CONFLICT);
    CU_ASSERT_EQUAL(eg_registry_add_hospital(st, "H 3", NULL, 0, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_hospital(st, "H3", "-----BEGIN PUBLIC KEY-----\n", 0, &e),
                    EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_hospital(st, "H1", &h), EG_OK);
    CU_ASSERT_STRING_EQUAL(h.hospital_id, "H1");
    CU_ASSERT_EQUAL(h.utc_offset_min, 60);
    CU_ASSERT_STRING_EQUAL(h.pubkey, "");
    CU_ASSERT_EQUAL(eg_registry_hospital(st, "H2", &h), EG_OK);
    CU_ASSERT_EQUAL(h.utc_offset_min, -330);
    CU_ASSERT_STRING_EQUAL(h.pubkey, pub);
    CU_ASSERT_EQUAL(eg_registry_hospital(st, "H3", &h), EG_E_UNKNOWN_HOSPITAL);

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P2", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", "MRN-1", "P1", &e), EG_OK);
    /* MRNs are unique only within a hospital */
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H2", "MRN-1", "P2", &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", "MRN-2", "P1", &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", v128, "P2", &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", "MRN-1", "P2", &e), EG_E_CONFLICT);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", "MRN-9", "P9", &e), EG_E_UNKNOWN_PATIENT);
    CHECKF(contains(e.detail, "P9"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", "", "P1", &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H1", v129, "P1", &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_identifier(st, "H/1", "MRN-5", "P1", &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM identifiers"), 4);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM identifiers WHERE hospital_id = 'H2'"
                                  " AND value = 'MRN-1' AND patient_id = 'P2'"),
                    1);
    free(pub);
    eg_store_close(st);
}

static void test_registry_devices(void)
{
    struct eg_store *st = open_new("reg_d.db");
    struct eg_error e = {0};
    struct eg_device_rec d;
    char *pub = slurp(KEYS "p256.pub"), *p384 = slurp(KEYS "p384.pub");
    static const char *const types[] = {"pulse_oximeter", "bp_monitor", "thermometer",
                                        "glucometer",     "scale",      "monitor"};
    char id[16];

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D1", "P1", "monitor", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D2", "P1", "pulse_oximeter", pub, &e), EG_OK);
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "T%d", i);
        CHECKF(eg_registry_add_device(st, id, "P1", types[i], NULL, &e) == EG_OK, "type %s: %s",
               types[i], e.detail);
        CU_ASSERT_EQUAL(eg_registry_device(st, id, &d), EG_OK);
        CU_ASSERT_EQUAL(d.type, eg_device_type_parse(types[i]));
    }

    CU_ASSERT_EQUAL(eg_registry_device(st, "D1", &d), EG_OK);
    CU_ASSERT_STRING_EQUAL(d.device_id, "D1");
    CU_ASSERT_EQUAL(d.type, EG_DEV_MONITOR);
    CU_ASSERT_EQUAL(d.active, 1);
    CU_ASSERT_STRING_EQUAL(d.pubkey, "");
    CU_ASSERT_EQUAL(eg_registry_device(st, "D2", &d), EG_OK);
    CU_ASSERT_EQUAL(d.type, EG_DEV_PULSE_OXIMETER);
    CU_ASSERT_STRING_EQUAL(d.pubkey, pub);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D9", &d), EG_E_UNKNOWN_DEVICE);

    /* registering an existing device again is refused; the binding is unchanged */
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D1", "P1", "scale", NULL, &e), EG_E_CONFLICT);
    CHECKF(contains(e.detail, "D1"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D1", &d), EG_OK);
    CU_ASSERT_EQUAL(d.type, EG_DEV_MONITOR);

    /* the patient must exist; nothing is left behind when it does not */
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D3", "P9", "monitor", NULL, &e),
                    EG_E_UNKNOWN_PATIENT);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D3", &d), EG_E_UNKNOWN_DEVICE);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM bindings WHERE device_id = 'D3'"), 0);

    /* broken ids, types and keys */
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D 4", "P1", "monitor", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "", "P1", "monitor", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "toaster", NULL, &e), EG_E_SCHEMA);
    CHECKF(contains(e.detail, "toaster"), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "Monitor", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "", NULL, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "monitor", "garbage", &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D4", "P1", "monitor", p384, &e), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D4", &d), EG_E_UNKNOWN_DEVICE);

    /* a deregistered device is unknown */
    CU_ASSERT_EQUAL(sqlite3_exec(eg_store_db(st),
                                 "UPDATE devices SET active = 0"
                                 " WHERE device_id = 'D1'",
                                 NULL, NULL, NULL),
                    SQLITE_OK);
    CU_ASSERT_EQUAL(eg_registry_device(st, "D1", &d), EG_E_UNKNOWN_DEVICE);
    free(pub);
    free(p384);
    eg_store_close(st);
}

static void test_registry_bindings(void)
{
    struct eg_store *st = open_new("reg_b.db");
    struct eg_error e = {0};
    char p[EG_ID_MAX];
    const int64_t T = 1795503600000LL; /* 2026-11-24T07:00:00Z */

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P2", NULL, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_add_device(st, "D1", "P1", "monitor", NULL, &e), EG_OK);

    /* bound from the beginning of time */
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", INT64_MIN, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", 0, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");

    /* rebind at T: before T the old patient, at and after T the new one */
    CU_ASSERT_EQUAL(eg_registry_rebind(st, "D1", "P2", T, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T - 1, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P2");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T + 1, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P2");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", INT64_MAX, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P2");

    /* and back to P1 one hour later: three periods */
    CU_ASSERT_EQUAL(eg_registry_rebind(st, "D1", "P1", T + 3600000, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T + 1800000, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P2");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T + 3600000, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T - 1, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");

    /* a rebind at the same instant replaces that binding */
    CU_ASSERT_EQUAL(eg_registry_rebind(st, "D1", "P1", T, &e), EG_OK);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");

    /* an unknown patient is refused */
    CU_ASSERT_EQUAL(eg_registry_rebind(st, "D1", "P9", T + 5, &e), EG_E_UNKNOWN_PATIENT);
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D1", T + 5, p), EG_OK);
    CU_ASSERT_STRING_EQUAL(p, "P1");

    /* no binding at all for an unknown device */
    CU_ASSERT_EQUAL(eg_registry_binding_at(st, "D9", T, p), EG_E_BINDING);
    eg_store_close(st);
}

/* Rebinding a device that was never registered must say so; it must not
 * report a conflict ("binding of D9 already registered"). SPEC §13 answers
 * rebind_device of an unknown device with not_found. */
static void test_registry_rebind_unknown_device(void)
{
    struct eg_store *st = open_new("reg_r.db");
    struct eg_error e = {0};
    eg_err rc;

    CU_ASSERT_EQUAL(eg_registry_add_patient(st, "P1", NULL, &e), EG_OK);
    memset(&e, 0, sizeof e);
    rc = eg_registry_rebind(st, "D9", "P1", 1000, &e);
    CU_ASSERT_NOT_EQUAL(rc, EG_OK);
    CHECKF(rc == EG_E_UNKNOWN_DEVICE || rc == EG_E_NOT_FOUND,
           "rebind of an unregistered device: rc %d (%s) \"%s\", want EG_E_UNKNOWN_DEVICE or "
           "EG_E_NOT_FOUND",
           rc, eg_wire_code(rc), e.detail);
    CU_ASSERT_EQUAL(query_int(st, "SELECT count(*) FROM bindings"), 0);
    eg_store_close(st);
}

static void test_utc_offset(void)
{
    static const struct {
        const char *s;
        int min;
    } good[] = {{"+00:00", 0},    {"-00:00", 0},    {"+05:30", 330},
                {"-03:00", -180}, {"+14:00", 840},  {"-12:00", -720},
                {"+00:01", 1},    {"-09:30", -570}, {"+01:59", 119}};
    static const char *const bad[] = {
        "05:30", "+5:30", "+05:3",  "+0530",  "+05:60", "+15:00", "+05:30 ", " +05:30",
        "",      "Z",     "+a5:30", "+05-30", "05:30+", "++5:30", "+05:3a",  "+05:30:00"};
    int m;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        m = 12345;
        CHECKF(eg_utc_offset_parse(good[i].s, &m) == 0, "\"%s\" refused", good[i].s);
        CHECKF(m == good[i].min, "\"%s\" -> %d, want %d", good[i].s, m, good[i].min);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = 12345;
        CHECKF(eg_utc_offset_parse(bad[i], &m) == -1, "\"%s\" accepted (%d)", bad[i], m);
        CHECKF(m == 12345, "\"%s\": output written on error", bad[i]);
    }
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_store_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("store", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "create, schema, reopen keeps data", test_create_reopen) ||
        !CU_add_test(s, "an older schema is migrated", test_migrate_older) ||
        !CU_add_test(s, "missing, newer-schema and foreign files refused", test_open_refusals) ||
        !CU_add_test(s, "open without CREATE leaves a foreign database alone",
                     test_open_nocreate_foreign) ||
        !CU_add_test(s, "read-only connection beside a writer", test_readonly) ||
        !CU_add_test(s, "meta get/set", test_meta) ||
        !CU_add_test(s, "BEGIN/COMMIT/ROLLBACK", test_transactions) ||
        !CU_add_test(s, "exec, statement cache, error mapping", test_exec_stmt_err)) {
        CU_cleanup_registry();
        remove_tree(tmpdir);
        return 1;
    }
    s = CU_add_suite("registry", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "patients", test_registry_patients) ||
        !CU_add_test(s, "hospitals and identifiers", test_registry_hospitals_identifiers) ||
        !CU_add_test(s, "devices", test_registry_devices) ||
        !CU_add_test(s, "binding history", test_registry_bindings) ||
        !CU_add_test(s, "rebind of an unregistered device", test_registry_rebind_unknown_device) ||
        !CU_add_test(s, "eg_utc_offset_parse", test_utc_offset)) {
        CU_cleanup_registry();
        remove_tree(tmpdir);
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    remove_tree(tmpdir);
    return failures != 0;
}

/*
 * eg_store.c — SQLite connection, schema migrations, statement cache and
 * transactions (STYLE §6: WAL, statements prepared once, schema version
 * table, every return code checked, group commit by the caller).
 */
#include "eg_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_crypto.h"
#include "eg_log.h"

#define STMT_CACHE_MAX 128

struct stmt_slot {
    const char *sql;
    sqlite3_stmt *stmt;
};

struct eg_store {
    sqlite3 *db;
    int in_tx;
    int nstmt;
    struct stmt_slot stmts[STMT_CACHE_MAX];
    uint8_t outbox_key[32];
    int has_outbox_key;
    struct eg_rng *rng;
};

/*
 * Schema, version 1. Entries keep only what queries need in the clear
 * (seq, patient id, kind, category, times, leaf hash); the entry bytes are
 * AES-256-GCM ciphertext. See docs/architecture.md.
 */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE patients(patient_id TEXT PRIMARY KEY, pubkey TEXT, last_nonce INTEGER,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE patient_keys(patient_id TEXT PRIMARY KEY, wrapped BLOB,"
    "  created_at INTEGER NOT NULL, erased_at INTEGER) WITHOUT ROWID;"
    "CREATE TABLE identifiers(hospital_id TEXT NOT NULL, value TEXT NOT NULL,"
    "  patient_id TEXT NOT NULL REFERENCES patients(patient_id),"
    "  PRIMARY KEY(hospital_id, value)) WITHOUT ROWID;"
    "CREATE TABLE hospitals(hospital_id TEXT PRIMARY KEY, pubkey TEXT,"
    "  utc_offset_min INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE devices(device_id TEXT PRIMARY KEY, type TEXT NOT NULL, pubkey TEXT,"
    "  active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE bindings(device_id TEXT NOT NULL REFERENCES devices(device_id),"
    "  from_ms INTEGER NOT NULL, patient_id TEXT NOT NULL REFERENCES patients(patient_id),"
    "  PRIMARY KEY(device_id, from_ms)) WITHOUT ROWID;"
    "CREATE TABLE entries(seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, patient TEXT NOT NULL,"
    "  category TEXT NOT NULL, source_type TEXT NOT NULL, source_id TEXT NOT NULL,"
    "  msg_id TEXT, received_at INTEGER NOT NULL, effective_at INTEGER,"
    "  leaf_hash BLOB NOT NULL, ct BLOB NOT NULL, block INTEGER);"
    "CREATE INDEX entries_patient ON entries(patient, seq);"
    "CREATE INDEX entries_leaf ON entries(leaf_hash);"
    "CREATE TABLE msgs(source_type TEXT NOT NULL, source_id TEXT NOT NULL, msg_id TEXT NOT NULL,"
    "  payload_sha256 BLOB NOT NULL, first_seq INTEGER NOT NULL, count INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  PRIMARY KEY(source_type, source_id, msg_id)) WITHOUT ROWID;"
    "CREATE TABLE quarantine(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
    "  source TEXT NOT NULL, received_at INTEGER NOT NULL, code TEXT NOT NULL,"
    "  detail TEXT NOT NULL, size INTEGER NOT NULL, sig TEXT, ct BLOB NOT NULL,"
    "  replay INTEGER NOT NULL DEFAULT 0, replayed_at INTEGER);"
    "CREATE INDEX quarantine_source ON quarantine(source, id);"
    "CREATE INDEX quarantine_replay ON quarantine(replay) WHERE replay = 1;"
    "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
    "  payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    "  props TEXT, created_at INTEGER NOT NULL);"
    "CREATE TABLE blocks(height INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL,"
    "  count INTEGER NOT NULL, merkle_root BLOB NOT NULL, prev_hash BLOB NOT NULL,"
    "  sealed_at INTEGER NOT NULL, hash BLOB NOT NULL, sig TEXT NOT NULL);",
    /* 1 -> 2: a narrow covering index, so chain verification and proofs scan
     * leaf hashes without reading the wide encrypted rows */
    "CREATE INDEX entries_chain ON entries(seq, leaf_hash, block);",
    /* 2 -> 3: oversized rejected payloads are kept truncated, and the bytes
     * the quarantine holds are counted by triggers so a global cap is cheap */
    "ALTER TABLE quarantine ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE quarantine_usage(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  bytes INTEGER NOT NULL);"
    "INSERT INTO quarantine_usage VALUES(1,"
    "  (SELECT CAST(total(length(ct)) AS INTEGER) FROM quarantine));"
    "CREATE TRIGGER quarantine_usage_ins AFTER INSERT ON quarantine BEGIN"
    "  UPDATE quarantine_usage SET bytes = bytes + length(NEW.ct) WHERE id = 1; END;"
    "CREATE TRIGGER quarantine_usage_del AFTER DELETE ON quarantine BEGIN"
    "  UPDATE quarantine_usage SET bytes = bytes - length(OLD.ct) WHERE id = 1; END;",
    /* 3 -> 4: signed requests and consent (SPEC §3 Replay, §8-10).
     * signers: the replay counter of each signer ("patient:P1",
     * "admin:<key fingerprint>"), advanced by every accepted signed message.
     * consents: the directives in force; an accepted directive is also a
     * `consent` entry (seq). feed: what each grantee was sent, by feed_seq.
     * erase_requests: erasures waiting for approve_erase (erase_mode admin). */
    "CREATE TABLE signers(signer TEXT PRIMARY KEY, last_nonce INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE consents(patient_id TEXT NOT NULL, consent_id TEXT NOT NULL,"
    "  grantee TEXT NOT NULL, categories TEXT NOT NULL, purposes TEXT,"
    "  period_start INTEGER, period_end INTEGER, data_start INTEGER, data_end INTEGER,"
    "  active INTEGER NOT NULL, seq INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(patient_id, consent_id)) WITHOUT ROWID;"
    "CREATE INDEX consents_active ON consents(patient_id, grantee) WHERE active = 1;"
    "CREATE TABLE feed(grantee TEXT NOT NULL, feed_seq INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  PRIMARY KEY(grantee, feed_seq)) WITHOUT ROWID;"
    "CREATE TABLE erase_requests(patient_id TEXT PRIMARY KEY, requested_at INTEGER NOT NULL)"
    "  WITHOUT ROWID;",
    /* 4 -> 5: outbox payloads may be sealed (AES-256-GCM under a key derived
     * from the master key: feed messages are entry bytes, i.e. PHI);
     * consent_log keeps every consent change of a patient (the consent
     * entries themselves become unreadable with an erasure, the audit
     * trail must not) */
    "ALTER TABLE outbox ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE outbox ADD COLUMN patient TEXT;"
    "CREATE INDEX outbox_patient ON outbox(patient) WHERE patient IS NOT NULL;"
    "CREATE TABLE consent_log(seq INTEGER PRIMARY KEY, patient_id TEXT NOT NULL,"
    "  consent_id TEXT NOT NULL, action TEXT NOT NULL, grantee TEXT NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE INDEX consent_log_patient ON consent_log(patient_id, seq);",
    /* 5 -> 6: leaf hashes indexed after their block, so that appending an
     * entry writes to the hot end of the index instead of a random page
     * (docs/performance.md: the random index halved ingest at 10M entries) */
    "DROP INDEX entries_leaf; CREATE INDEX entries_block_leaf ON entries(block, leaf_hash);",
};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

eg_err eg_store_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return EG_OK;
    case SQLITE_FULL:
        return EG_E_DB_FULL;
    case SQLITE_NOMEM:
        return EG_E_NOMEM;
    default:
        return EG_E_DB;
    }
}

eg_err eg_store_fail(struct eg_store *st, struct eg_error *e, int rc, const char *what)
{
    return eg_fail(e, eg_store_err(rc), "%s: %s", what, st ? sqlite3_errmsg(st->db) : "");
}

sqlite3 *eg_store_db(struct eg_store *st) { return st->db; }

sqlite3_stmt *eg_store_stmt(struct eg_store *st, const char *sql)
{
    int rc;
    for (int i = 0; i < st->nstmt; i++) {
        if (st->stmts[i].sql == sql) {
            sqlite3_reset(st->stmts[i].stmt);
            sqlite3_clear_bindings(st->stmts[i].stmt);
            return st->stmts[i].stmt;
        }
    }
    if (st->nstmt >= STMT_CACHE_MAX) {
        log_msg(EG_LOG_ERROR, "statement cache full");
        return NULL;
    }
    rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[st->nstmt].stmt,
                            NULL);
    if (rc != SQLITE_OK) {
        log_msg(EG_LOG_ERROR, "prepare failed: %s", sqlite3_errmsg(st->db));
        return NULL;
    }
    st->stmts[st->nstmt].sql = sql;
    return st->stmts[st->nstmt++].stmt;
}

eg_err eg_store_exec(struct eg_store *st, const char *sql, struct eg_error *e)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        eg_err err = eg_fail(e, eg_store_err(rc), "sqlite: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return err;
    }
    return EG_OK;
}

static eg_err tx_exec(struct eg_store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        log_msg(EG_LOG_ERROR, "%s failed: %s", sql, sqlite3_errmsg(st->db));
        return eg_store_err(rc);
    }
    return EG_OK;
}

eg_err eg_store_begin(struct eg_store *st)
{
    eg_err rc = tx_exec(st, "BEGIN IMMEDIATE");
    if (rc == EG_OK)
        st->in_tx = 1;
    return rc;
}

eg_err eg_store_commit(struct eg_store *st)
{
    eg_err rc = tx_exec(st, "COMMIT");
    if (rc == EG_OK)
        st->in_tx = 0;
    return rc;
}

void eg_store_rollback(struct eg_store *st)
{
    if (sqlite3_get_autocommit(st->db) == 0)
        (void)tx_exec(st, "ROLLBACK");
    st->in_tx = 0;
}

int eg_store_in_tx(struct eg_store *st) { return st->in_tx; }

int eg_store_meta_get(struct eg_store *st, const char *key, char *buf, size_t size)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT value FROM meta WHERE key = ?1");
    int rc;
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 1 : -1;
}

eg_err eg_store_meta_set(struct eg_store *st, const char *key, const char *value)
{
    sqlite3_stmt *s = eg_store_stmt(st, "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static eg_err migrate(struct eg_store *st, const char *path, struct eg_error *e)
{
    int v = user_version(st->db);
    eg_err rc = EG_OK;
    if (v < 0)
        return eg_fail(e, EG_E_DB, "%s: cannot read schema version: %s", path,
                       sqlite3_errmsg(st->db));
    if (v > NMIGRATIONS)
        return eg_fail(e, EG_E_DB, "%s: schema version %d is newer than this program (%d)", path,
                       v, NMIGRATIONS);
    for (; v < NMIGRATIONS; v++) {
        char pragma[64];
        if ((rc = eg_store_begin(st)) != EG_OK)
            return eg_fail(e, rc, "%s: cannot begin migration: %s", path, sqlite3_errmsg(st->db));
        rc = eg_store_exec(st, migrations[v], e);
        if (rc == EG_OK) {
            snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
            rc = eg_store_exec(st, pragma, e);
        }
        if (rc == EG_OK)
            rc = eg_store_commit(st);
        if (rc != EG_OK) {
            eg_store_rollback(st);
            return eg_fail(e, rc, "%s: migration to schema %d failed", path, v + 1);
        }
        log_msg(EG_LOG_INFO, "database %s at schema version %d", path, v + 1);
    }
    return EG_OK;
}

eg_err eg_store_open(const char *path, int flags, struct eg_store **out, struct eg_error *e)
{
    struct eg_store *st = calloc(1, sizeof *st);
    int oflags = (flags & EG_STORE_READONLY)
                     ? SQLITE_OPEN_READONLY
                     : SQLITE_OPEN_READWRITE | ((flags & EG_STORE_CREATE) ? SQLITE_OPEN_CREATE : 0);
    eg_err rc = EG_OK;
    int src;

    *out = NULL;
    if (!st)
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    src = sqlite3_open_v2(path, &st->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = eg_fail(e, EG_E_DB, "%s: cannot open database: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(src));
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    /* without EG_STORE_CREATE, never turn someone else's file into ours */
    if (!(flags & (EG_STORE_READONLY | EG_STORE_CREATE)) && user_version(st->db) == 0) {
        rc = eg_fail(e, EG_E_DB, "%s: not an ehrgate database", path);
        goto out;
    }
    if (!(flags & EG_STORE_READONLY)) {
        rc = eg_store_exec(st,
                           "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                           " PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
                           e);
        if (rc != EG_OK) {
            char inner[sizeof e->detail];
            snprintf(inner, sizeof inner, "%s", e->detail);
            rc = eg_fail(e, rc, "%s: %s", path, inner);
            goto out;
        }
        rc = migrate(st, path, e);
        if (rc != EG_OK)
            goto out;
    } else {
        int v = user_version(st->db);
        if (v >= 1 && v < NMIGRATIONS) {
            rc = eg_fail(e, EG_E_DB,
                         "%s: database schema %d is older than this program's (%d); start "
                         "ehrgate on it once to upgrade it",
                         path, v, NMIGRATIONS);
            goto out;
        }
        if (v != NMIGRATIONS) {
            rc = eg_fail(e, EG_E_DB, "%s: not an ehrgate database of schema %d", path,
                         NMIGRATIONS);
            goto out;
        }
    }
out:
    if (rc != EG_OK) {
        eg_store_close(st);
        return rc;
    }
    *out = st;
    return EG_OK;
}

static int64_t pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

int64_t eg_store_set_max_bytes(struct eg_store *st, int64_t bytes)
{
    char sql[80];
    int64_t page = pragma_int(st->db, "PRAGMA page_size");
    int64_t pages = bytes > 0 && page > 0 ? (bytes + page - 1) / page : 4294967294LL;
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    return pragma_int(st->db, sql);
}

void eg_store_set_outbox_key(struct eg_store *st, const uint8_t key[32], struct eg_rng *rng)
{
    memcpy(st->outbox_key, key, 32);
    st->has_outbox_key = 1;
    st->rng = rng;
}

const uint8_t *eg_store_outbox_key(const struct eg_store *st, struct eg_rng **rng)
{
    if (rng)
        *rng = st->rng;
    return st->has_outbox_key ? st->outbox_key : NULL;
}

void eg_store_close(struct eg_store *st)
{
    if (!st)
        return;
    eg_wipe(st->outbox_key, sizeof st->outbox_key);
    for (int i = 0; i < st->nstmt; i++)
        sqlite3_finalize(st->stmts[i].stmt);
    sqlite3_close(st->db);
    free(st);
}

/* ---- checkpointer --------------------------------------------------------- */
struct eg_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    int pending; /* WAL pages written since the last checkpoint request */
};

/* Runs in the writer's thread after each commit (sqlite3_wal_hook). */
static int wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
    struct eg_checkpointer *c = ctx;
    (void)name;
    if (pages >= EG_CKPT_BACKSTOP_PAGES) /* the checkpointer fell behind */
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    else if (pages >= EG_CKPT_PAGES) {
        pthread_mutex_lock(&c->mu);
        c->pending = 1;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_run(void *arg)
{
    struct eg_checkpointer *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        int rc;
        if (!c->pending) {
            pthread_cond_wait(&c->cond, &c->mu);
            continue;
        }
        c->pending = 0;
        pthread_mutex_unlock(&c->mu);
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_msg(EG_LOG_DEBUG, "checkpoint: %s", sqlite3_errstr(rc));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

eg_err eg_store_tune_writer(struct eg_store *st, const char *path, int cache_kib,
                            struct eg_checkpointer **out, struct eg_error *e)
{
    struct eg_checkpointer *c = calloc(1, sizeof *c);
    char sql[64];
    eg_err rc;

    *out = NULL;
    if (!c)
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    /* the WAL file is cut back to 64 MiB whenever it restarts */
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%d; PRAGMA journal_size_limit = 67108864",
             cache_kib);
    if ((rc = eg_store_exec(st, sql, e)) != EG_OK) {
        free(c);
        return rc;
    }
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = eg_fail(e, EG_E_DB, "%s: cannot open the checkpointer's connection: %s", path,
                     c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return rc;
    }
    sqlite3_busy_timeout(c->db, 1000);
    /* a checkpoint syncs the WAL before copying and the database after, as
     * the writer would (durability does not depend on the build's default) */
    sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_run, c) != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return eg_fail(e, EG_E_INTERNAL, "cannot start the checkpointer thread");
    }
    sqlite3_wal_hook(st->db, wal_hook, c); /* replaces the automatic checkpoint */
    *out = c;
    return EG_OK;
}

void eg_checkpointer_free(struct eg_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->db);
    free(c);
}

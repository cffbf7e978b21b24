/*
 * eg_store.h — the SQLite store: schema and migrations, prepared-statement
 * cache, transactions, and the meta table.
 *
 * One struct eg_store wraps one connection. The gateway's pipeline thread
 * owns the only writing connection; the outbox publisher and ehrctl open
 * their own (WAL lets readers run beside the writer). The store knows no
 * MQTT and no JSON; the modules on top (registry, entries, quarantine,
 * outbox) use eg_store_stmt() to share the cache.
 */
#ifndef EG_STORE_H
#define EG_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "eg_err.h"

#define EG_SCHEMA_VERSION 6

enum {
    EG_STORE_CREATE = 1,   /* create the file and schema if missing */
    EG_STORE_READONLY = 2, /* read-only connection */
};

struct eg_store;

/* Opens (and with EG_STORE_CREATE creates/migrates) the database at path:
 * WAL, synchronous=FULL, foreign keys, secure_delete, busy timeout 5 s.
 * A database of a newer schema is refused. Errors name the path. */
eg_err eg_store_open(const char *path, int flags, struct eg_store **out, struct eg_error *e);
/* Finalizes cached statements and closes. NULL is a no-op. */
void eg_store_close(struct eg_store *st);

/* The gateway's writer connection: a page cache of cache_kib KiB, and WAL
 * checkpoints moved off the writer's thread onto a checkpointer thread
 * with its own connection (PASSIVE, whenever the WAL has grown by
 * EG_CKPT_PAGES pages). The writer checkpoints by itself as a backstop at
 * EG_CKPT_BACKSTOP_PAGES, so under sustained writes the WAL restarts at
 * about that size (64 MB) unless a reader holds an old snapshot (as in
 * stock SQLite); the file is cut back to 64 MiB when it restarts. */
#define EG_CKPT_PAGES 1000
#define EG_CKPT_BACKSTOP_PAGES 16000
struct eg_checkpointer;
eg_err eg_store_tune_writer(struct eg_store *st, const char *path, int cache_kib,
                            struct eg_checkpointer **out, struct eg_error *e);
/* Stops and joins the thread; NULL is a no-op. */
void eg_checkpointer_free(struct eg_checkpointer *c);

/* Caps the database at about bytes (PRAGMA max_page_count; 0 = SQLite's
 * own maximum). Beyond it writes fail with SQLITE_FULL, as on a full disk.
 * Returns the page count limit now in force, or -1. */
int64_t eg_store_set_max_bytes(struct eg_store *st, int64_t bytes);

struct eg_rng;
/* Gives the connection the outbox key (copied): from then on eg_outbox_put
 * seals payloads with it and eg_outbox_fetch opens sealed rows. */
void eg_store_set_outbox_key(struct eg_store *st, const uint8_t key[32], struct eg_rng *rng);
/* The outbox key, or NULL if none was set. */
const uint8_t *eg_store_outbox_key(const struct eg_store *st, struct eg_rng **rng);

sqlite3 *eg_store_db(struct eg_store *st);

/* Returns a cached prepared statement for sql (reset, bindings cleared).
 * sql must be a string literal (the cache is keyed by its address).
 * NULL on a prepare error (logged). */
sqlite3_stmt *eg_store_stmt(struct eg_store *st, const char *sql);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK with every return code checked.
 * EG_E_DB_FULL when SQLite reports SQLITE_FULL, EG_E_DB otherwise. */
eg_err eg_store_begin(struct eg_store *st);
eg_err eg_store_commit(struct eg_store *st);
void eg_store_rollback(struct eg_store *st);
int eg_store_in_tx(struct eg_store *st);

/* Maps an SQLite result code to eg_err (SQLITE_FULL -> EG_E_DB_FULL). */
eg_err eg_store_err(int sqlite_rc);
/* Records an SQLite failure in e with the connection's message. */
eg_err eg_store_fail(struct eg_store *st, struct eg_error *e, int sqlite_rc, const char *what);

/* Runs a statement-less SQL text (no results). */
eg_err eg_store_exec(struct eg_store *st, const char *sql, struct eg_error *e);

/* meta key/value. get: 0 found, 1 missing, -1 error. */
int eg_store_meta_get(struct eg_store *st, const char *key, char *buf, size_t size);
eg_err eg_store_meta_set(struct eg_store *st, const char *key, const char *value);

#endif

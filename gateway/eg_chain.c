/*
 * eg_chain.c — sealing blocks inside the pipeline's transactions
 * (see eg_chain.h; SPEC §11, RFC 6962 §2.1).
 */
#include "eg_chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_log.h"
#include "eg_merkle.h"
#include "eg_time.h"

struct eg_chain {
    struct eg_store *st;
    struct eg_vault *v;
    uint8_t gateway_id[32];
    /* last sealed block */
    int have_last;
    uint64_t next_height;
    uint8_t prev_hash[32];
    /* open block */
    uint64_t open_first; /* seq of its first entry (= next seq if empty) */
    uint8_t (*leaves)[32];
    uint64_t nleaves, cap;
    int64_t first_mono; /* monotonic ms when its first entry was added */
};

eg_err eg_block_load(struct eg_store *st, uint64_t height, const uint8_t gateway_id[32],
                     struct eg_block *b)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT first_seq, count, merkle_root, prev_hash,"
                                        " sealed_at, hash, sig FROM blocks WHERE height = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)height);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_NOT_FOUND : eg_store_err(rc);
    }
    memset(b, 0, sizeof *b);
    b->version = 1;
    memcpy(b->gateway_id, gateway_id, 32);
    b->height = height;
    b->first_seq = (uint64_t)sqlite3_column_int64(s, 0);
    b->count = (uint32_t)sqlite3_column_int64(s, 1);
    if (sqlite3_column_bytes(s, 2) == 32)
        memcpy(b->merkle_root, sqlite3_column_blob(s, 2), 32);
    if (sqlite3_column_bytes(s, 3) == 32)
        memcpy(b->prev_hash, sqlite3_column_blob(s, 3), 32);
    b->sealed_at = (uint64_t)sqlite3_column_int64(s, 4);
    if (sqlite3_column_bytes(s, 5) == 32)
        memcpy(b->hash, sqlite3_column_blob(s, 5), 32);
    snprintf(b->sig, sizeof b->sig, "%s",
             sqlite3_column_text(s, 6) ? (const char *)sqlite3_column_text(s, 6) : "");
    sqlite3_reset(s);
    return EG_OK;
}

eg_err eg_leaves_load(struct eg_store *st, uint64_t first, uint64_t count, uint8_t (**out)[32])
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT seq, leaf_hash FROM entries WHERE seq >= ?1"
                                        " AND seq < ?2 ORDER BY seq");
    uint8_t(*leaves)[32] = malloc((size_t)(count ? count : 1) * 32);
    uint64_t n = 0;
    int rc;
    *out = NULL;
    if (!leaves)
        return EG_E_NOMEM;
    if (!s) {
        free(leaves);
        return EG_E_DB;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)first);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)(first + count));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if ((uint64_t)sqlite3_column_int64(s, 0) != first + n ||
            sqlite3_column_bytes(s, 1) != 32)
            break;
        memcpy(leaves[n++], sqlite3_column_blob(s, 1), 32);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        free(leaves);
        return eg_store_err(rc);
    }
    if (n != count) {
        free(leaves);
        return EG_E_CONFLICT;
    }
    *out = leaves;
    return EG_OK;
}

static eg_err reserve(struct eg_chain *c, uint64_t n)
{
    if (n <= c->cap)
        return EG_OK;
    {
        uint64_t cap = c->cap ? c->cap : 1024;
        void *p;
        while (cap < n)
            cap *= 2;
        p = realloc(c->leaves, (size_t)cap * 32);
        if (!p)
            return EG_E_NOMEM;
        c->leaves = p;
        c->cap = cap;
    }
    return EG_OK;
}

static eg_err load(struct eg_chain *c, struct eg_error *e)
{
    sqlite3_stmt *s;
    uint64_t next_seq = 0, count;
    int rc;
    eg_err err;

    c->have_last = 0;
    c->next_height = 0;
    memset(c->prev_hash, 0, 32);
    c->open_first = 0;
    c->nleaves = 0;
    s = eg_store_stmt(c->st, "SELECT height, first_seq, count, hash FROM blocks"
                             " ORDER BY height DESC LIMIT 1");
    if (!s)
        return eg_fail(e, EG_E_DB, "cannot read blocks");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        c->have_last = 1;
        c->next_height = (uint64_t)sqlite3_column_int64(s, 0) + 1;
        c->open_first = (uint64_t)sqlite3_column_int64(s, 1) + (uint64_t)sqlite3_column_int64(s, 2);
        if (sqlite3_column_bytes(s, 3) == 32)
            memcpy(c->prev_hash, sqlite3_column_blob(s, 3), 32);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return eg_fail(e, EG_E_DB, "cannot read blocks");
    s = eg_store_stmt(c->st, "SELECT coalesce(max(seq) + 1, 0) FROM entries");
    if (!s || sqlite3_step(s) != SQLITE_ROW) {
        if (s)
            sqlite3_reset(s);
        return eg_fail(e, EG_E_DB, "cannot read entries");
    }
    next_seq = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (next_seq < c->open_first)
        return eg_fail(e, EG_E_CONFLICT, "the last block ends after the last entry (seq %llu)",
                       (unsigned long long)next_seq);
    count = next_seq - c->open_first;
    if (count) {
        uint8_t(*leaves)[32];
        if ((err = eg_leaves_load(c->st, c->open_first, count, &leaves)) != EG_OK)
            return eg_fail(e, err, "entries %llu..%llu are not contiguous",
                           (unsigned long long)c->open_first, (unsigned long long)next_seq - 1);
        if ((err = reserve(c, count)) != EG_OK) {
            free(leaves);
            return eg_fail(e, err, "out of memory");
        }
        memcpy(c->leaves, leaves, (size_t)count * 32);
        free(leaves);
        c->nleaves = count;
        /* the open block waits at most one interval after a restart */
        c->first_mono = eg_mono_ms();
    }
    return EG_OK;
}

eg_err eg_chain_open(struct eg_store *st, struct eg_vault *v, struct eg_chain **out,
                     struct eg_error *e)
{
    struct eg_chain *c = calloc(1, sizeof *c);
    eg_err rc;
    *out = NULL;
    if (!c)
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    c->st = st;
    c->v = v;
    if ((rc = eg_key_fingerprint(eg_vault_signing_key(v), c->gateway_id)) != EG_OK ||
        (rc = load(c, e)) != EG_OK) {
        eg_chain_free(c);
        return rc;
    }
    *out = c;
    return EG_OK;
}

void eg_chain_free(struct eg_chain *c)
{
    if (!c)
        return;
    free(c->leaves);
    free(c);
}

eg_err eg_chain_add(struct eg_chain *c, uint64_t seq, const uint8_t leaf[32])
{
    eg_err rc;
    if (seq != c->open_first + c->nleaves)
        return EG_E_INTERNAL; /* entries must join in seq order without gaps */
    if ((rc = reserve(c, c->nleaves + 1)) != EG_OK)
        return rc;
    if (c->nleaves == 0)
        c->first_mono = eg_mono_ms();
    memcpy(c->leaves[c->nleaves++], leaf, 32);
    return EG_OK;
}

uint64_t eg_chain_open_count(const struct eg_chain *c) { return c->nleaves; }

int eg_chain_due(const struct eg_chain *c, int64_t max_entries, int64_t interval_ms)
{
    if (c->nleaves == 0)
        return 0;
    return c->nleaves >= (uint64_t)max_entries || eg_mono_ms() - c->first_mono >= interval_ms;
}

eg_err eg_chain_seal(struct eg_chain *c, uint64_t count, struct eg_block *b)
{
    sqlite3_stmt *s;
    eg_err rc;
    int src;

    if (count > c->nleaves)
        count = c->nleaves;
    if (count == 0 || count > UINT32_MAX)
        return EG_E_INTERNAL; /* no empty blocks */
    memset(b, 0, sizeof *b);
    b->version = 1;
    memcpy(b->gateway_id, c->gateway_id, 32);
    b->height = c->next_height;
    memcpy(b->prev_hash, c->prev_hash, 32);
    b->first_seq = c->open_first;
    b->count = (uint32_t)count;
    b->sealed_at = (uint64_t)eg_now_ms();
    if ((rc = eg_merkle_root((const uint8_t(*)[32])c->leaves, (size_t)count, b->merkle_root)) !=
        EG_OK)
        return rc;
    if ((rc = eg_block_sign(b, eg_vault_signing_key(c->v), eg_vault_rng(c->v))) != EG_OK)
        return rc;
    s = eg_store_stmt(c->st, "INSERT INTO blocks(height, first_seq, count, merkle_root,"
                             " prev_hash, sealed_at, hash, sig)"
                             " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)b->height);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)b->first_seq);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)b->count);
    sqlite3_bind_blob(s, 4, b->merkle_root, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, b->prev_hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)b->sealed_at);
    sqlite3_bind_blob(s, 7, b->hash, 32, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, b->sig, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return eg_store_err(src);
    s = eg_store_stmt(c->st, "UPDATE entries SET block = ?1 WHERE seq >= ?2 AND seq < ?3");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)b->height);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)b->first_seq);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)(b->first_seq + count));
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return eg_store_err(src);
    if ((uint64_t)sqlite3_changes(eg_store_db(c->st)) != count)
        return EG_E_INTERNAL;
    /* the chain moves on (restored by eg_chain_abort if the tx fails) */
    c->have_last = 1;
    c->next_height++;
    memcpy(c->prev_hash, b->hash, 32);
    c->open_first += count;
    memmove(c->leaves, c->leaves + count, (size_t)(c->nleaves - count) * 32);
    c->nleaves -= count;
    if (c->nleaves)
        c->first_mono = eg_mono_ms();
    return EG_OK;
}

void eg_chain_committed(struct eg_chain *c) { (void)c; }

eg_err eg_chain_abort_to(struct eg_chain *c, uint64_t seq)
{
    if (seq < c->open_first)
        return eg_chain_abort(c); /* a block was sealed since: reload */
    if (seq - c->open_first < c->nleaves)
        c->nleaves = seq - c->open_first;
    return EG_OK;
}

eg_err eg_chain_abort(struct eg_chain *c)
{
    struct eg_error e;
    eg_err rc = load(c, &e);
    if (rc != EG_OK)
        log_msg(EG_LOG_ERROR, "cannot reload the chain after a rollback: %s", e.detail);
    return rc;
}

eg_err eg_chain_seal_full(struct eg_chain *c, uint64_t max_entries)
{
    while (eg_chain_open_count(c) >= max_entries) {
        struct eg_block b;
        eg_err rc = eg_chain_seal(c, max_entries, &b);
        if (rc != EG_OK)
            return rc;
    }
    return EG_OK;
}

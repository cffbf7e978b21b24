/*
 * eg_quarantine.c — quarantine table (see eg_quarantine.h).
 */
#include "eg_quarantine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_log.h"
#include "eg_time.h"

static void q_aad(const char *topic, int64_t received_at, char *aad, size_t size)
{
    snprintf(aad, size, "q|%s|%lld", topic, (long long)received_at);
}

static eg_err evict(struct eg_store *st, const char *source, int64_t quota, int *evicted)
{
    sqlite3_stmt *s = eg_store_stmt(
        st, "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE source = ?1"
            " ORDER BY id DESC LIMIT -1 OFFSET ?2)");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, quota);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return eg_store_err(rc);
    *evicted = sqlite3_changes(eg_store_db(st));
    return EG_OK;
}

/* Drops the oldest rows until the quarantine holds at most max_bytes. */
static eg_err cap_total(struct eg_store *st, int64_t max_bytes, int64_t keep_id, int *evicted)
{
    for (;;) {
        sqlite3_stmt *s = eg_store_stmt(st, "SELECT bytes FROM quarantine_usage WHERE id = 1");
        int64_t bytes = 0;
        int rc;
        if (!s)
            return EG_E_DB;
        if ((rc = sqlite3_step(s)) == SQLITE_ROW)
            bytes = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return eg_store_err(rc);
        if (bytes <= max_bytes)
            return EG_OK;
        /* one at a time, oldest first, never the row just added */
        s = eg_store_stmt(st, "DELETE FROM quarantine WHERE id ="
                              " (SELECT min(id) FROM quarantine WHERE id <> ?1)");
        if (!s)
            return EG_E_DB;
        sqlite3_bind_int64(s, 1, keep_id);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return eg_store_err(rc);
        if (sqlite3_changes(eg_store_db(st)) == 0)
            return EG_OK;
        *evicted += sqlite3_changes(eg_store_db(st));
    }
}

eg_err eg_quarantine_put(struct eg_store *st, struct eg_vault *v, const struct eg_msg *m,
                         const char *source, const char *code, const char *detail,
                         const struct eg_config *cfg, int *evicted)
{
    char aad[512];
    uint8_t *ct;
    size_t ctlen, keep;
    sqlite3_stmt *s;
    eg_err rc;
    int src, more = 0;
    int64_t new_id;

    *evicted = 0;
    if (m->quarantine_id > 0) {
        s = eg_store_stmt(st, "UPDATE quarantine SET code = ?2, detail = ?3, replay = 0,"
                              " replayed_at = ?4 WHERE id = ?1");
        if (!s)
            return EG_E_DB;
        sqlite3_bind_int64(s, 1, m->quarantine_id);
        sqlite3_bind_text(s, 2, code, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, detail, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, eg_now_ms());
        src = sqlite3_step(s);
        sqlite3_reset(s);
        return src == SQLITE_DONE ? EG_OK : eg_store_err(src);
    }
    q_aad(m->topic, m->received_ms, aad, sizeof aad);
    /* an oversized payload is kept truncated: a rejected sender must not be
     * able to fill the disk with one message */
    keep = m->len > (size_t)cfg->max_payload_bytes ? (size_t)cfg->max_payload_bytes : m->len;
    ct = malloc(keep + EG_GCM_NONCE + EG_GCM_TAG);
    if (!ct)
        return EG_E_NOMEM;
    rc = eg_aead_seal(eg_vault_rng(v), eg_vault_quarantine_key(v), aad, strlen(aad), m->payload,
                      keep, ct, keep + EG_GCM_NONCE + EG_GCM_TAG, &ctlen);
    if (rc != EG_OK)
        goto out;
    s = eg_store_stmt(st, "INSERT INTO quarantine(topic, source, received_at, code, detail, size,"
                          " sig, ct, truncated) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (!s) {
        rc = EG_E_DB;
        goto out;
    }
    sqlite3_bind_text(s, 1, m->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, m->received_ms);
    sqlite3_bind_text(s, 4, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, detail, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)m->len);
    if (m->sig)
        sqlite3_bind_text(s, 7, m->sig, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 8, ct, (int)ctlen, SQLITE_STATIC);
    sqlite3_bind_int(s, 9, keep < m->len);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE) {
        rc = eg_store_err(src);
        goto out;
    }
    new_id = sqlite3_last_insert_rowid(eg_store_db(st));
    rc = evict(st, source, cfg->quarantine_quota, evicted);
    if (rc == EG_OK) {
        rc = cap_total(st, cfg->quarantine_max_bytes, new_id, &more);
        *evicted += more;
    }
out:
    free(ct);
    return rc;
}

eg_err eg_quarantine_done(struct eg_store *st, int64_t id, const char *outcome)
{
    sqlite3_stmt *s = eg_store_stmt(st, "UPDATE quarantine SET replay = 0, replayed_at = ?2,"
                                        " code = ?3, detail = ?3 || ' on replay'"
                                        " WHERE id = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, eg_now_ms());
    sqlite3_bind_text(s, 3, outcome, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

eg_err eg_quarantine_request_replay(struct eg_store *st, int64_t id)
{
    sqlite3_stmt *s = eg_store_stmt(st, "UPDATE quarantine SET replay = 1 WHERE id = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return eg_store_err(rc);
    return sqlite3_changes(eg_store_db(st)) ? EG_OK : EG_E_NOT_FOUND;
}

static eg_err decrypt_row(struct eg_vault *v, const char *topic, int64_t received_at,
                          const uint8_t *ct, size_t ctlen, uint8_t **payload, size_t *len)
{
    char aad[512];
    uint8_t *pt;
    eg_err rc;
    if (ctlen < EG_GCM_NONCE + EG_GCM_TAG)
        return EG_E_CRYPTO;
    q_aad(topic, received_at, aad, sizeof aad);
    if (!(pt = malloc(ctlen + 1)))
        return EG_E_NOMEM;
    rc = eg_aead_open(eg_vault_quarantine_key(v), aad, strlen(aad), ct, ctlen, pt, ctlen, len);
    if (rc != EG_OK) {
        free(pt);
        return rc;
    }
    pt[*len] = 0;
    *payload = pt;
    return EG_OK;
}

struct eg_msg *eg_quarantine_due(struct eg_store *st, struct eg_vault *v, int max)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT id, topic, received_at, sig, ct, truncated"
                                        " FROM quarantine WHERE replay = 1 ORDER BY id LIMIT ?1");
    struct eg_msg *head = NULL, **tail = &head;
    int64_t failed[64];
    int nfailed = 0;
    if (!s)
        return NULL;
    sqlite3_bind_int(s, 1, max);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *topic = (const char *)sqlite3_column_text(s, 1);
        const char *sig = (const char *)sqlite3_column_text(s, 3);
        uint8_t *pt = NULL;
        size_t len = 0;
        struct eg_msg *m;
        int64_t id = sqlite3_column_int64(s, 0);
        if (decrypt_row(v, topic, sqlite3_column_int64(s, 2), sqlite3_column_blob(s, 4),
                        (size_t)sqlite3_column_bytes(s, 4), &pt, &len) != EG_OK) {
            log_msg(EG_LOG_ERROR, "quarantine %lld: cannot decrypt; not replayed", (long long)id);
            if (nfailed < (int)(sizeof failed / sizeof failed[0]))
                failed[nfailed++] = id;
            continue;
        }
        if (sqlite3_column_int(s, 5)) {
            /* only a prefix was kept: replaying it would just fail again */
            log_msg(EG_LOG_WARN, "quarantine %lld: payload was kept truncated; not replayed",
                    (long long)id);
            free(pt);
            if (nfailed < (int)(sizeof failed / sizeof failed[0]))
                failed[nfailed++] = id;
            continue;
        }
        m = eg_msg_new(topic, strlen(topic), pt, len, sig, sig ? strlen(sig) : 0, NULL, 0, NULL,
                       0);
        free(pt);
        if (!m)
            break;
        m->received_ms = eg_now_ms();
        m->quarantine_id = id;
        *tail = m;
        tail = &m->next;
    }
    sqlite3_reset(s);
    /* rows that cannot be replayed lose their mark (a write: the caller's
     * connection is the gateway's only writer and is not in a transaction) */
    for (int i = 0; i < nfailed; i++) {
        sqlite3_stmt *u = eg_store_stmt(st, "UPDATE quarantine SET replay = 0 WHERE id = ?1");
        if (!u)
            break;
        sqlite3_bind_int64(u, 1, failed[i]);
        sqlite3_step(u);
        sqlite3_reset(u);
    }
    return head;
}

eg_err eg_quarantine_payload(struct eg_store *st, struct eg_vault *v, int64_t id,
                             uint8_t **payload, size_t *len)
{
    sqlite3_stmt *s =
        eg_store_stmt(st, "SELECT topic, received_at, ct FROM quarantine WHERE id = ?1");
    eg_err rc;
    int src;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, id);
    src = sqlite3_step(s);
    if (src != SQLITE_ROW) {
        sqlite3_reset(s);
        return src == SQLITE_DONE ? EG_E_NOT_FOUND : eg_store_err(src);
    }
    rc = decrypt_row(v, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
                     sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), payload, len);
    sqlite3_reset(s);
    return rc;
}

eg_err eg_quarantine_expire(struct eg_store *st, int64_t cutoff_ms, int *n)
{
    sqlite3_stmt *s = eg_store_stmt(st, "DELETE FROM quarantine WHERE received_at < ?1");
    int rc;
    *n = 0;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, cutoff_ms);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return eg_store_err(rc);
    *n = sqlite3_changes(eg_store_db(st));
    return EG_OK;
}

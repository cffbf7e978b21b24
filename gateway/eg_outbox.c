/*
 * eg_outbox.c — outbox table access (see eg_outbox.h).
 */
#include "eg_outbox.h"

#include <stdlib.h>
#include <string.h>

#include "eg_crypto.h"
#include "eg_log.h"
#include "eg_time.h"

/* Sealed rows: AES-256-GCM under the outbox key with AAD "o|" topic, so a
 * payload cannot be moved to another topic. */
static void outbox_aad(const char *topic, char **aad, size_t *len)
{
    size_t tl = strlen(topic);
    *aad = malloc(tl + 3);
    if (*aad) {
        memcpy(*aad, "o|", 2);
        memcpy(*aad + 2, topic, tl + 1);
        *len = tl + 2;
    }
}

eg_err eg_outbox_put(struct eg_store *st, const char *topic, const void *payload, size_t len,
                     int qos, int retain, const char *props)
{
    return eg_outbox_put_for(st, NULL, topic, payload, len, qos, retain, props);
}

eg_err eg_outbox_put_for(struct eg_store *st, const char *patient, const char *topic,
                         const void *payload, size_t len, int qos, int retain, const char *props)
{
    sqlite3_stmt *s = eg_store_stmt(st, "INSERT INTO outbox(topic, payload, qos, retain, props,"
                                        " created_at, sealed, patient)"
                                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    struct eg_rng *rng = NULL;
    const uint8_t *key = eg_store_outbox_key(st, &rng);
    uint8_t *ct = NULL;
    size_t ctlen = 0;
    int rc;
    if (!s)
        return EG_E_DB;
    if (key) {
        char *aad = NULL;
        size_t alen = 0;
        eg_err erc;
        outbox_aad(topic, &aad, &alen);
        if (!aad || !(ct = malloc(len + EG_GCM_NONCE + EG_GCM_TAG))) {
            free(aad);
            return EG_E_NOMEM;
        }
        erc = eg_aead_seal(rng, key, aad, alen, payload, len, ct, len + EG_GCM_NONCE + EG_GCM_TAG,
                           &ctlen);
        free(aad);
        if (erc != EG_OK) {
            free(ct);
            return erc;
        }
    }
    sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
    if (ct)
        sqlite3_bind_blob(s, 2, ct, (int)ctlen, SQLITE_STATIC);
    else
        sqlite3_bind_blob(s, 2, len ? payload : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, qos);
    sqlite3_bind_int(s, 4, retain);
    if (props)
        sqlite3_bind_text(s, 5, props, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, eg_now_ms());
    sqlite3_bind_int(s, 7, ct != NULL);
    if (patient)
        sqlite3_bind_text(s, 8, patient, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    free(ct);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

/* Opens a sealed payload in place; -1 if it does not authenticate or no
 * key is set. */
static int unseal(struct eg_store *st, struct eg_outbox_row *r)
{
    const uint8_t *key = eg_store_outbox_key(st, NULL);
    char *aad = NULL;
    size_t alen = 0, ptlen = 0;
    uint8_t *pt;
    if (!key || r->len < EG_GCM_NONCE + EG_GCM_TAG)
        return -1;
    outbox_aad(r->topic, &aad, &alen);
    pt = malloc(r->len);
    if (!aad || !pt ||
        eg_aead_open(key, aad, alen, r->payload, r->len, pt, r->len, &ptlen) != EG_OK) {
        free(aad);
        free(pt);
        return -1;
    }
    free(aad);
    pt[ptlen] = 0; /* ptlen = len - 28 < len */
    free(r->payload);
    r->payload = pt;
    r->len = ptlen;
    return 0;
}

static char *col_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? strdup((const char *)t) : NULL;
}

int eg_outbox_fetch(struct eg_store *st, int64_t after_id, int max, struct eg_outbox_row *rows)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT id, topic, payload, qos, retain, props, sealed"
                                        " FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2");
    int n = 0, rc;
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct eg_outbox_row *r = &rows[n];
        int len = sqlite3_column_bytes(s, 2);
        const void *p = sqlite3_column_blob(s, 2);
        memset(r, 0, sizeof *r);
        r->id = sqlite3_column_int64(s, 0);
        r->topic = col_dup(s, 1);
        r->payload = malloc((size_t)len + 1);
        r->qos = sqlite3_column_int(s, 3);
        r->retain = sqlite3_column_int(s, 4);
        r->props = col_dup(s, 5);
        if (!r->topic || !r->payload) {
            eg_outbox_row_clear(r);
            break;
        }
        if (len)
            memcpy(r->payload, p, (size_t)len);
        r->payload[len] = 0;
        r->len = (size_t)len;
        if (sqlite3_column_int(s, 6) && unseal(st, r) != 0) {
            /* cannot happen with the right key; never skip a row silently */
            log_msg(EG_LOG_ERROR, "outbox row %lld does not authenticate",
                    (long long)r->id);
            eg_outbox_row_clear(r);
            rc = SQLITE_CORRUPT;
            break;
        }
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && n == 0)
        return -1;
    return n;
}

void eg_outbox_row_clear(struct eg_outbox_row *row)
{
    free(row->topic);
    free(row->payload);
    free(row->props);
    memset(row, 0, sizeof *row);
}

eg_err eg_outbox_purge_patient(struct eg_store *st, const char *patient, const char *replies,
                               int *purged)
{
    sqlite3_stmt *s = eg_store_stmt(st, "DELETE FROM outbox WHERE patient = ?1"
                                        " OR topic = ?2 OR substr(topic, 1, ?3) = ?2 || '/'");
    int rc;
    *purged = 0;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, replies, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, (int)strlen(replies) + 1);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return eg_store_err(rc);
    *purged = sqlite3_changes(eg_store_db(st));
    return EG_OK;
}

eg_err eg_outbox_delete(struct eg_store *st, const int64_t *ids, size_t n)
{
    sqlite3_stmt *s = eg_store_stmt(st, "DELETE FROM outbox WHERE id = ?1");
    if (!s)
        return EG_E_DB;
    for (size_t i = 0; i < n; i++) {
        int rc;
        sqlite3_bind_int64(s, 1, ids[i]);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return eg_store_err(rc);
    }
    return EG_OK;
}

int64_t eg_outbox_max_id(struct eg_store *st)
{
    /* AUTOINCREMENT: sqlite_sequence holds the highest id ever used */
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT coalesce((SELECT seq FROM sqlite_sequence"
                                        " WHERE name = 'outbox'), 0)");
    int64_t n = -1;
    if (!s)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

int64_t eg_outbox_pending(struct eg_store *st)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT count(*) FROM outbox");
    int64_t n = -1;
    if (!s)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

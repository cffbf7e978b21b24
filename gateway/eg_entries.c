/*
 * eg_entries.c — entry bytes, leaf hashes and encrypted rows (SPEC §6).
 */
#include "eg_entries.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_codec.h"
#include "eg_json.h"
#include "eg_merkle.h"
#include "eg_time.h"

static int uses_patient_key(const char *kind)
{
    return strcmp(kind, "observation") == 0 || strcmp(kind, "consent") == 0;
}

static void entry_aad(uint64_t seq, const char *patient, char *aad, size_t size)
{
    snprintf(aad, size, "e|%llu|%s", (unsigned long long)seq, patient);
}

char *eg_entry_bytes(const char *gw_name, uint64_t seq, const struct eg_entry_in *in,
                     struct eg_rng *rng, size_t *len)
{
    char entry_id[96], when[EG_TIME_STRLEN], salt_hex[33];
    uint8_t salt[16];
    cJSON *o = cJSON_CreateObject(), *src, *item;
    char *out = NULL;

    if (!o)
        return NULL;
    if (eg_rng_bytes(rng, salt, sizeof salt) != EG_OK)
        goto out;
    eg_hex_encode(salt, sizeof salt, salt_hex);
    snprintf(entry_id, sizeof entry_id, "%s-%llu", gw_name, (unsigned long long)seq);
    eg_time_format(in->received_at, when);

    if (!cJSON_AddNumberToObject(o, "v", 1))
        goto out;
    if (!(item = egjson_create_u64(seq)))
        goto out;
    cJSON_AddItemToObject(o, "seq", item);
    if (!cJSON_AddStringToObject(o, "entry_id", entry_id) ||
        !cJSON_AddStringToObject(o, "kind", in->kind) ||
        !cJSON_AddStringToObject(o, "patient", in->patient) ||
        !cJSON_AddStringToObject(o, "category", in->category) ||
        !(src = cJSON_AddObjectToObject(o, "source")) ||
        !cJSON_AddStringToObject(src, "type", in->src_type) ||
        !cJSON_AddStringToObject(src, "id", in->src_id))
        goto out;
    if (in->msg_id ? !cJSON_AddStringToObject(src, "msg_id", in->msg_id)
                   : !cJSON_AddNullToObject(src, "msg_id"))
        goto out;
    if (!cJSON_AddStringToObject(o, "received_at", when) ||
        !cJSON_AddStringToObject(o, "salt", salt_hex))
        goto out;
    if (in->resource) {
        /* a reference prints the borrowed tree without copying it */
        if (!cJSON_AddItemReferenceToObject(o, "resource", (cJSON *)in->resource))
            goto out;
    } else if (!cJSON_AddNullToObject(o, "resource")) {
        goto out;
    }
    if (in->extra) {
        for (cJSON *c = in->extra->child; c; c = c->next)
            if (!cJSON_AddItemReferenceToObject(o, c->string, c))
                goto out;
    }
    out = egjson_print(o, len);
out:
    cJSON_Delete(o); /* references do not free their targets */
    return out;
}

eg_err eg_entry_append(struct eg_store *st, struct eg_vault *v, const char *gw_name, uint64_t seq,
                       const struct eg_entry_in *in, uint8_t leaf[32])
{
    return eg_entry_append_ex(st, v, gw_name, seq, in, leaf, NULL, NULL);
}

eg_err eg_entry_append_ex(struct eg_store *st, struct eg_vault *v, const char *gw_name,
                          uint64_t seq, const struct eg_entry_in *in, uint8_t leaf[32],
                          char **bytes_out, size_t *len_out)
{
    char aad[128];
    uint8_t key[32];
    uint8_t *ct = NULL;
    size_t len = 0, ctlen = 0;
    char *bytes = NULL;
    sqlite3_stmt *s;
    eg_err rc;
    int src;

    bytes = eg_entry_bytes(gw_name, seq, in, eg_vault_rng(v), &len);
    if (!bytes)
        return EG_E_NOMEM;
    if (in->max_bytes && len > in->max_bytes) {
        free(bytes);
        return EG_E_TOO_LARGE;
    }
    eg_merkle_leaf(bytes, len, leaf);
    if (uses_patient_key(in->kind)) {
        if ((rc = eg_vault_patient_key(v, st, in->patient, 1, key)) != EG_OK)
            goto out;
    } else {
        memcpy(key, eg_vault_audit_key(v), 32);
    }
    entry_aad(seq, in->patient, aad, sizeof aad);
    if (!(ct = malloc(len + EG_GCM_NONCE + EG_GCM_TAG))) {
        rc = EG_E_NOMEM;
        goto out;
    }
    rc = eg_aead_seal(eg_vault_rng(v), key, aad, strlen(aad), bytes, len, ct,
                      len + EG_GCM_NONCE + EG_GCM_TAG, &ctlen);
    if (rc != EG_OK)
        goto out;
    s = eg_store_stmt(st, "INSERT INTO entries(seq, kind, patient, category, source_type,"
                          " source_id, msg_id, received_at, effective_at, leaf_hash, ct)"
                          " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    if (!s) {
        rc = EG_E_DB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(s, 2, in->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, in->patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, in->category, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, in->src_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, in->src_id, -1, SQLITE_STATIC);
    if (in->msg_id)
        sqlite3_bind_text(s, 7, in->msg_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, in->received_at);
    if (in->effective_at != INT64_MIN)
        sqlite3_bind_int64(s, 9, in->effective_at);
    sqlite3_bind_blob(s, 10, leaf, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 11, ct, (int)ctlen, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    rc = src == SQLITE_DONE ? EG_OK : eg_store_err(src);
out:
    eg_wipe(key, sizeof key);
    if (rc == EG_OK && bytes_out) {
        *bytes_out = bytes;
        *len_out = len;
        bytes = NULL;
    }
    if (bytes) {
        eg_wipe(bytes, len);
        free(bytes);
    }
    free(ct);
    return rc;
}

eg_err eg_entry_next_seq(struct eg_store *st, uint64_t *next)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT max(seq) FROM entries");
    int rc;
    if (!s)
        return EG_E_DB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *next = sqlite3_column_type(s, 0) == SQLITE_NULL
                    ? 0
                    : (uint64_t)sqlite3_column_int64(s, 0) + 1;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? EG_OK : eg_store_err(rc);
}

eg_err eg_entry_leaf(struct eg_store *st, uint64_t seq, uint8_t leaf[32])
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT leaf_hash FROM entries WHERE seq = ?1");
    int rc;
    eg_err err = EG_E_NOT_FOUND;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 32) {
        memcpy(leaf, sqlite3_column_blob(s, 0), 32);
        err = EG_OK;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = eg_store_err(rc);
    }
    sqlite3_reset(s);
    return err;
}

eg_err eg_entry_read(struct eg_store *st, struct eg_vault *v, uint64_t seq, char **bytes,
                     size_t *len)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT kind, patient, ct FROM entries WHERE seq = ?1");
    char kind[32], patient[80], aad[128];
    uint8_t key[32];
    uint8_t *ct = NULL;
    size_t ctlen;
    char *pt = NULL;
    eg_err rc = EG_OK;
    int src;

    *bytes = NULL;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    src = sqlite3_step(s);
    if (src != SQLITE_ROW) {
        sqlite3_reset(s);
        return src == SQLITE_DONE ? EG_E_NOT_FOUND : eg_store_err(src);
    }
    snprintf(kind, sizeof kind, "%s", (const char *)sqlite3_column_text(s, 0));
    snprintf(patient, sizeof patient, "%s", (const char *)sqlite3_column_text(s, 1));
    ctlen = (size_t)sqlite3_column_bytes(s, 2);
    ct = malloc(ctlen ? ctlen : 1);
    if (ct && ctlen)
        memcpy(ct, sqlite3_column_blob(s, 2), ctlen);
    sqlite3_reset(s);
    if (!ct)
        return EG_E_NOMEM;
    if (ctlen < EG_GCM_NONCE + EG_GCM_TAG) {
        rc = EG_E_CRYPTO;
        goto out;
    }
    if (uses_patient_key(kind)) {
        if ((rc = eg_vault_patient_key(v, st, patient, 0, key)) != EG_OK)
            goto out;
    } else {
        memcpy(key, eg_vault_audit_key(v), 32);
    }
    entry_aad(seq, patient, aad, sizeof aad);
    if (!(pt = malloc(ctlen + 1))) {
        rc = EG_E_NOMEM;
        goto out;
    }
    rc = eg_aead_open(key, aad, strlen(aad), ct, ctlen, (uint8_t *)pt, ctlen, len);
    if (rc != EG_OK)
        goto out;
    pt[*len] = '\0';
    *bytes = pt;
    pt = NULL;
out:
    eg_wipe(key, sizeof key);
    free(pt);
    free(ct);
    return rc;
}

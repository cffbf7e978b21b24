/*
 * eg_api.c — reply routing and the auditors' proof API (see eg_api.h).
 */
#include "eg_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_block.h"
#include "eg_chain.h"
#include "eg_codec.h"
#include "eg_json.h"
#include "eg_merkle.h"
#include "eg_outbox.h"
#include "eg_topics.h"

int eg_api_route(const struct eg_msg *m, const char *family_replies, char *topic, size_t size,
                 char **props)
{
    size_t fl = strlen(family_replies);
    int forbidden = 0;

    *props = NULL;
    snprintf(topic, size, "%s", family_replies);
    if (m->resp_topic) {
        /* inside the family: equal, or below it at a level boundary; no wildcards */
        if (strncmp(m->resp_topic, family_replies, fl) == 0 &&
            (m->resp_topic[fl] == '\0' || m->resp_topic[fl] == '/') &&
            !strpbrk(m->resp_topic, "+#") && strlen(m->resp_topic) < size)
            snprintf(topic, size, "%s", m->resp_topic);
        else
            forbidden = 1;
    }
    if (m->corr && m->corr_len && m->corr_len <= 256) {
        char hex[513];
        cJSON *o = cJSON_CreateObject();
        eg_hex_encode(m->corr, m->corr_len, hex);
        if (o && cJSON_AddStringToObject(o, "corr", hex))
            *props = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    return forbidden;
}

cJSON *eg_api_rejected(const char *op, eg_err code, const char *detail)
{
    cJSON *r = cJSON_CreateObject(), *e;
    if (!r)
        return NULL;
    if (op)
        cJSON_AddStringToObject(r, "op", op);
    else
        cJSON_AddNullToObject(r, "op");
    cJSON_AddStringToObject(r, "status", "rejected");
    e = cJSON_AddObjectToObject(r, "error");
    if (e) {
        cJSON_AddStringToObject(e, "code", eg_wire_code(code));
        cJSON_AddStringToObject(e, "detail", detail);
    }
    return r;
}

eg_err eg_api_reply(struct eg_store *st, const struct eg_msg *m, const char *family_replies,
                    const char *op, cJSON *reply)
{
    char topic[512], *props = NULL, *text;
    size_t len;
    eg_err rc;

    if (eg_api_route(m, family_replies, topic, sizeof topic, &props)) {
        cJSON_Delete(reply);
        reply = eg_api_rejected(op, EG_E_FORBIDDEN,
                                "response topic: must be the replies topic of this family or "
                                "below it");
    }
    if (!reply) {
        free(props);
        return EG_E_NOMEM;
    }
    text = egjson_print(reply, &len);
    cJSON_Delete(reply);
    if (!text) {
        free(props);
        return EG_E_NOMEM;
    }
    rc = eg_outbox_put(st, topic, text, len, 1, 0, props);
    free(text);
    free(props);
    return rc;
}

/* ---- anchor API (SPEC §11) --------------------------------------------------- */

static cJSON *reply_new(const char *op, const char *status)
{
    cJSON *r = cJSON_CreateObject();
    if (r) {
        cJSON_AddStringToObject(r, "op", op);
        cJSON_AddStringToObject(r, "status", status);
    }
    return r;
}

/* One lookup: 0 found (outputs set), 1 none, <0 storage error. */
static int entry_row(sqlite3_stmt *s, uint64_t *seq, int64_t *block, uint8_t leaf_out[32])
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(s, 0);
        *block = sqlite3_column_type(s, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 1);
        if (sqlite3_column_bytes(s, 2) == 32)
            memcpy(leaf_out, sqlite3_column_blob(s, 2), 32);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : -(int)eg_store_err(rc);
}

/* Finds the entry by entry_id ("{name}-{seq}") or leaf hash. 0 found,
 * 1 not found, <0 storage error.
 *
 * Leaf hashes are indexed by (block, leaf_hash), not by leaf_hash alone:
 * an index on random 32-byte keys takes a random page write per entry, and
 * at 10M entries those writes (and their checkpoints) halved the ingest
 * rate (docs/performance.md). With the block first, new entries (block
 * NULL) stay in a small hot part of the index and move to its end when
 * sealed. A lookup by leaf hash probes the unsealed entries, then each
 * block from the newest: one index probe per block. */
static int find_entry(struct eg_store *st, const struct eg_config *cfg, const char *entry_id,
                      const uint8_t *leaf, uint64_t *seq, int64_t *block, uint8_t leaf_out[32])
{
    sqlite3_stmt *s;
    int rc;
    int64_t height = -1;
    if (entry_id) {
        size_t nl = strlen(cfg->name);
        const char *p = entry_id + nl + 1;
        char *end;
        unsigned long long v;
        if (strncmp(entry_id, cfg->name, nl) != 0 || entry_id[nl] != '-' || *p < '0' ||
            *p > '9' || (p[0] == '0' && p[1]))
            return 1;
        v = strtoull(p, &end, 10);
        if (*end || v > EG_U53_MAX)
            return 1;
        s = eg_store_stmt(st, "SELECT seq, block, leaf_hash FROM entries WHERE seq = ?1");
        if (!s)
            return -EG_E_DB;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)v);
        return entry_row(s, seq, block, leaf_out);
    }
    s = eg_store_stmt(st, "SELECT seq, block, leaf_hash FROM entries"
                          " WHERE block IS NULL AND leaf_hash = ?1");
    if (!s)
        return -EG_E_DB;
    sqlite3_bind_blob(s, 1, leaf, 32, SQLITE_STATIC);
    if ((rc = entry_row(s, seq, block, leaf_out)) != 1)
        return rc;
    s = eg_store_stmt(st, "SELECT max(height) FROM blocks");
    if (!s)
        return -EG_E_DB;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        height = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    s = eg_store_stmt(st, "SELECT seq, block, leaf_hash FROM entries"
                          " WHERE block = ?2 AND leaf_hash = ?1");
    if (!s)
        return -EG_E_DB;
    for (int64_t h = height; h >= 0; h--) {
        sqlite3_bind_blob(s, 1, leaf, 32, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, h);
        if ((rc = entry_row(s, seq, block, leaf_out)) != 1)
            return rc;
    }
    return 1;
}

static int gateway_id(struct eg_store *st, uint8_t id[32])
{
    char hex[80];
    return eg_store_meta_get(st, "gateway_key_fpr", hex, sizeof hex) == 0 &&
                   eg_hex_decode(hex, id, 32) == 0
               ? 0
               : -1;
}

static eg_err op_proof(struct eg_store *st, const struct eg_config *cfg, const cJSON *req,
                       cJSON **out)
{
    const char *entry_id = egjson_str(req, "entry_id");
    const char *leaf_hex = egjson_str(req, "leaf_hash");
    uint8_t leaf[32], gid[32], (*leaves)[32] = NULL, path[64][32];
    char hex[65], id[96];
    uint64_t seq = 0;
    int64_t height = -1;
    size_t depth;
    struct eg_block b;
    cJSON *r, *arr;
    eg_err rc;
    int f;

    if ((entry_id != NULL) == (leaf_hex != NULL)) {
        *out = eg_api_rejected("proof", EG_E_SCHEMA,
                               "entry_id or leaf_hash: exactly one of them is required");
        return EG_OK;
    }
    if (leaf_hex && (strlen(leaf_hex) != 64 || strspn(leaf_hex, "0123456789abcdef") != 64 ||
                     eg_hex_decode(leaf_hex, leaf, 32) != 0)) {
        *out = eg_api_rejected("proof", EG_E_SCHEMA, "leaf_hash: must be 64 lowercase hex");
        return EG_OK;
    }
    f = find_entry(st, cfg, entry_id, leaf_hex ? leaf : NULL, &seq, &height, leaf);
    if (f < 0)
        return (eg_err)-f;
    if (f == 1) {
        *out = reply_new("proof", "not_found");
        return EG_OK;
    }
    snprintf(id, sizeof id, "%s-%llu", cfg->name, (unsigned long long)seq);
    eg_hex_encode(leaf, 32, hex);
    if (height < 0) {
        r = reply_new("proof", "pending");
        cJSON_AddStringToObject(r, "entry_id", id);
        cJSON_AddStringToObject(r, "leaf_hash", hex);
        *out = r;
        return EG_OK;
    }
    if (gateway_id(st, gid) != 0)
        return EG_E_DB;
    if ((rc = eg_block_load(st, (uint64_t)height, gid, &b)) != EG_OK)
        return rc == EG_E_NOT_FOUND ? EG_E_DB : rc;
    if ((rc = eg_leaves_load(st, b.first_seq, b.count, &leaves)) != EG_OK)
        return rc == EG_E_CONFLICT ? EG_E_DB : rc;
    rc = eg_merkle_path((const uint8_t(*)[32])leaves, b.count, (size_t)(seq - b.first_seq), path,
                        &depth);
    free(leaves);
    if (rc != EG_OK)
        return EG_E_INTERNAL;
    r = reply_new("proof", "ok");
    cJSON_AddStringToObject(r, "entry_id", id);
    cJSON_AddStringToObject(r, "leaf_hash", hex);
    cJSON_AddItemToObject(r, "leaf_index", egjson_create_u64(seq - b.first_seq));
    arr = cJSON_AddArrayToObject(r, "audit_path");
    for (size_t i = 0; i < depth; i++) {
        eg_hex_encode(path[i], 32, hex);
        cJSON_AddItemToArray(arr, cJSON_CreateString(hex));
    }
    cJSON_AddItemToObject(r, "block", eg_block_to_json(&b));
    *out = r;
    return EG_OK;
}

static eg_err op_block(struct eg_store *st, const cJSON *req, cJSON **out)
{
    uint64_t height;
    uint8_t gid[32];
    struct eg_block b;
    cJSON *r;
    eg_err rc;

    if (egjson_get_u53(cJSON_GetObjectItemCaseSensitive(req, "height"), &height) != 0) {
        *out = eg_api_rejected("block", EG_E_SCHEMA, "height: must be an integer 0..2^53-1");
        return EG_OK;
    }
    if (gateway_id(st, gid) != 0)
        return EG_E_DB;
    rc = eg_block_load(st, height, gid, &b);
    if (rc == EG_E_NOT_FOUND) {
        *out = reply_new("block", "not_found");
        return EG_OK;
    }
    if (rc != EG_OK)
        return rc;
    r = reply_new("block", "ok");
    cJSON_AddItemToObject(r, "block", eg_block_to_json(&b));
    *out = r;
    return EG_OK;
}

eg_err eg_api_anchor(struct eg_store *st, const struct eg_config *cfg, const struct eg_msg *m)
{
    char family[256];
    struct eg_error err = {0};
    cJSON *req = NULL, *reply = NULL;
    const char *op = NULL;
    eg_err rc = EG_OK;

    eg_topic_anchor(family, sizeof family, cfg->topic_prefix, cfg->name, "replies");
    if (m->len > (size_t)cfg->max_payload_bytes) {
        reply = eg_api_rejected(NULL, EG_E_TOO_LARGE, "payload: larger than max_payload_bytes");
    } else if (egjson_parse(m->payload, m->len, &req, &err) != EG_OK) {
        reply = eg_api_rejected(NULL, EG_E_PARSE, err.detail);
    } else if (!cJSON_IsObject(req) || !(op = egjson_str(req, "op"))) {
        reply = eg_api_rejected(NULL, EG_E_SCHEMA, "op: required string");
    } else if (strcmp(op, "proof") == 0) {
        rc = op_proof(st, cfg, req, &reply);
    } else if (strcmp(op, "block") == 0) {
        rc = op_block(st, req, &reply);
    } else {
        char detail[128];
        snprintf(detail, sizeof detail, "op: \"%.40s\" is not proof or block", op);
        reply = eg_api_rejected(op, EG_E_UNSUPPORTED, detail);
    }
    if (rc == EG_OK) {
        /* op is borrowed from req, so reply before freeing it */
        if (!reply)
            rc = EG_E_NOMEM;
        else
            rc = eg_api_reply(st, m, family, op, reply);
    } else {
        cJSON_Delete(reply);
    }
    cJSON_Delete(req);
    return rc;
}

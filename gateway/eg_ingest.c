/*
 * eg_ingest.c — per-message processing (see eg_ingest.h).
 *
 * Order of checks for device telemetry, chosen so that a publisher always
 * learns as much as can be known (SPEC §7: msg_id whenever it is readable):
 *   too_large -> parse -> (seq readable: dedup -> duplicate / conflict)
 *   -> unknown_device -> signature -> schema/range of the header
 *   -> binding -> readings (schema/unsupported/unit/range) -> commit.
 * Dedup comes before the registry so that a resend of an accepted message
 * is answered `duplicate` even if the device was deregistered since.
 * All validation happens before the first write; writes fail only for
 * storage reasons, which abort the whole transaction.
 */
#include "eg_ingest.h"

#include <stdlib.h>
#include <string.h>

#include "eg_api.h"
#include "eg_chain.h"
#include "eg_codec.h"
#include "eg_entries.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_log.h"
#include "eg_outbox.h"
#include "eg_quarantine.h"
#include "eg_registry.h"
#include "eg_telemetry.h"
#include "eg_topics.h"

#define KEY_CACHE 1024
#define MAX_GROUPS 4096

struct key_slot {
    char id[EG_ID_MAX];
    char pem[EG_PUBKEY_PEM_MAX];
    struct eg_key *key;
};

struct group {
    char *topic;
    cJSON *receipts;
};

struct eg_ingest {
    struct eg_store *st;
    struct eg_vault *v;
    const struct eg_config *cfg;
    struct eg_chain *chain;
    uint64_t next_seq, committed_seq;
    struct group *groups;
    int ngroups, last_group;
    struct key_slot *keys;
    struct eg_ingest_stats stats, committed_stats;
};

/* ---- receipts ---------------------------------------------------------- */

static cJSON *group_for(struct eg_ingest *ig, const char *topic)
{
    struct group *g;
    if (ig->last_group >= 0 && ig->last_group < ig->ngroups &&
        strcmp(ig->groups[ig->last_group].topic, topic) == 0)
        return ig->groups[ig->last_group].receipts;
    for (int i = 0; i < ig->ngroups; i++) {
        if (strcmp(ig->groups[i].topic, topic) == 0) {
            ig->last_group = i;
            return ig->groups[i].receipts;
        }
    }
    if (ig->ngroups >= MAX_GROUPS)
        return NULL;
    g = &ig->groups[ig->ngroups];
    g->topic = strdup(topic);
    g->receipts = cJSON_CreateArray();
    if (!g->topic || !g->receipts) {
        free(g->topic);
        cJSON_Delete(g->receipts);
        return NULL;
    }
    ig->last_group = ig->ngroups++;
    return g->receipts;
}

static void groups_clear(struct eg_ingest *ig)
{
    for (int i = 0; i < ig->ngroups; i++) {
        free(ig->groups[i].topic);
        cJSON_Delete(ig->groups[i].receipts);
    }
    ig->ngroups = 0;
    ig->last_group = -1;
}

static cJSON *receipt_new(const char *msg_id, const uint8_t sha[32], const char *status)
{
    char hex[65];
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return NULL;
    eg_hex_encode(sha, 32, hex);
    if ((msg_id ? !cJSON_AddStringToObject(r, "msg_id", msg_id)
                : !cJSON_AddNullToObject(r, "msg_id")) ||
        !cJSON_AddStringToObject(r, "payload_sha256", hex) ||
        !cJSON_AddStringToObject(r, "status", status)) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static eg_err add_entry_ref(struct eg_ingest *ig, cJSON *arr, uint64_t seq, const uint8_t leaf[32])
{
    char id[96], hex[65];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return EG_E_NOMEM;
    snprintf(id, sizeof id, "%s-%llu", ig->cfg->name, (unsigned long long)seq);
    eg_hex_encode(leaf, 32, hex);
    if (!cJSON_AddStringToObject(o, "entry_id", id) ||
        !cJSON_AddStringToObject(o, "leaf_hash", hex)) {
        cJSON_Delete(o);
        return EG_E_NOMEM;
    }
    cJSON_AddItemToArray(arr, o);
    return EG_OK;
}

/* ---- context of one message ------------------------------------------- */

struct msgctx {
    const struct eg_msg *m;
    const char *src_type; /* "device" */
    const char *src_id;
    char receipts_topic[256];
    char msg_id[24];
    int have_msg_id;
    uint8_t sha[32];
};

static eg_err reject(struct eg_ingest *ig, struct msgctx *c, const struct eg_error *err)
{
    char source[96];
    int evicted = 0;
    cJSON *arr, *r, *eo;
    eg_err rc;

    snprintf(source, sizeof source, "%s:%s", c->src_type, c->src_id);
    rc = eg_quarantine_put(ig->st, ig->v, c->m, source, eg_wire_code(err->code), err->detail,
                           ig->cfg->quarantine_quota, &evicted);
    if (rc != EG_OK)
        return rc;
    if (evicted) {
        ig->stats.quarantine_evicted += (uint64_t)evicted;
        log_msg(EG_LOG_WARN, "quarantine quota of %s reached: %d oldest row(s) dropped", source,
                evicted);
    }
    if (!(arr = group_for(ig, c->receipts_topic)))
        return EG_E_NOMEM;
    if (!(r = receipt_new(c->have_msg_id ? c->msg_id : NULL, c->sha, "rejected")))
        return EG_E_NOMEM;
    eo = cJSON_AddObjectToObject(r, "error");
    if (!eo || !cJSON_AddStringToObject(eo, "code", eg_wire_code(err->code)) ||
        !cJSON_AddStringToObject(eo, "detail", err->detail)) {
        cJSON_Delete(r);
        return EG_E_NOMEM;
    }
    cJSON_AddItemToArray(arr, r);
    ig->stats.rejected++;
    log_msg(EG_LOG_INFO, "rejected %s:%s msg %s: %s", c->src_type, c->src_id,
            c->have_msg_id ? c->msg_id : "-", eg_wire_code(err->code));
    return EG_OK;
}

static int is_storage_error(eg_err rc)
{
    return rc == EG_E_DB || rc == EG_E_DB_FULL || rc == EG_E_NOMEM || rc == EG_E_CRYPTO;
}

/* Looks up (source, msg_id). 0: not seen; 1: same bytes (receipt added);
 * 2: other bytes (conflict). <0: storage error (negated eg_err). */
static int dedup(struct eg_ingest *ig, struct msgctx *c)
{
    sqlite3_stmt *s = eg_store_stmt(ig->st, "SELECT payload_sha256, first_seq, count FROM msgs"
                                            " WHERE source_type = ?1 AND source_id = ?2"
                                            " AND msg_id = ?3");
    uint64_t first;
    int64_t count;
    int rc, same;
    cJSON *arr, *r, *entries;

    if (!s)
        return -EG_E_DB;
    sqlite3_bind_text(s, 1, c->src_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, c->src_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, c->msg_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return -(int)eg_store_err(rc);
    }
    same = sqlite3_column_bytes(s, 0) == 32 && memcmp(sqlite3_column_blob(s, 0), c->sha, 32) == 0;
    first = (uint64_t)sqlite3_column_int64(s, 1);
    count = sqlite3_column_int64(s, 2);
    sqlite3_reset(s);
    if (!same)
        return 2;
    if (!(arr = group_for(ig, c->receipts_topic)) ||
        !(r = receipt_new(c->msg_id, c->sha, "duplicate")))
        return -EG_E_NOMEM;
    cJSON_AddItemToArray(arr, r);
    if (!(entries = cJSON_AddArrayToObject(r, "entries")))
        return -EG_E_NOMEM;
    for (int64_t i = 0; i < count; i++) {
        uint8_t leaf[32];
        eg_err erc = eg_entry_leaf(ig->st, first + (uint64_t)i, leaf);
        if (erc != EG_OK)
            return -(int)(erc == EG_E_NOT_FOUND ? EG_E_DB : erc);
        if ((erc = add_entry_ref(ig, entries, first + (uint64_t)i, leaf)) != EG_OK)
            return -(int)erc;
    }
    ig->stats.duplicates++;
    return 1;
}

static eg_err record_msg(struct eg_ingest *ig, struct msgctx *c, uint64_t first, size_t count)
{
    sqlite3_stmt *s = eg_store_stmt(ig->st, "INSERT INTO msgs(source_type, source_id, msg_id,"
                                            " payload_sha256, first_seq, count, received_at)"
                                            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, c->src_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, c->src_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, c->msg_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, c->sha, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)first);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)count);
    sqlite3_bind_int64(s, 7, c->m->received_ms);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

/* Verifies the SPEC §3 signature against a PEM key, caching parsed keys. */
static eg_err check_sig(struct eg_ingest *ig, const char *id, const char *pem,
                        const struct eg_msg *m, struct eg_error *err)
{
    unsigned h = 2166136261u;
    struct key_slot *slot;
    uint8_t digest[32];

    if (!m->sig)
        return eg_fail(err, EG_E_SIGNATURE,
                       "sig: missing user property; %s has a registered key", id);
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    slot = &ig->keys[h % KEY_CACHE];
    if (!slot->key || strcmp(slot->id, id) != 0 || strcmp(slot->pem, pem) != 0) {
        struct eg_key *k = NULL;
        struct eg_error tmp;
        if (eg_key_parse_public(pem, strlen(pem) + 1, &k, &tmp) != EG_OK)
            return eg_fail(err, EG_E_SIGNATURE, "sig: registered key of %s is unusable", id);
        eg_key_free(slot->key);
        slot->key = k;
        snprintf(slot->id, sizeof slot->id, "%s", id);
        snprintf(slot->pem, sizeof slot->pem, "%s", pem);
    }
    eg_topic_digest(m->topic, m->payload, m->len, digest);
    if (eg_key_verify_digest(slot->key, digest, m->sig) != EG_OK)
        return eg_fail(err, EG_E_SIGNATURE,
                       "sig: does not verify over topic and payload with the key of %s", id);
    return EG_OK;
}

/* ---- device telemetry (SPEC §4) --------------------------------------- */

static eg_err telemetry(struct eg_ingest *ig, struct msgctx *c)
{
    struct eg_error err = {0};
    struct eg_device_rec dev;
    struct eg_telemetry t;
    struct eg_obs obs[EG_MAX_READINGS];
    size_t nobs = 0;
    char patient[EG_ID_MAX];
    cJSON *root = NULL, *arr, *r, *entries;
    uint64_t first;
    eg_err rc = EG_OK;
    int d;

    if (c->m->len > (size_t)ig->cfg->max_payload_bytes) {
        eg_fail(&err, EG_E_TOO_LARGE, "payload: %zu bytes exceed max_payload_bytes %lld",
                c->m->len, (long long)ig->cfg->max_payload_bytes);
        return reject(ig, c, &err);
    }
    if (egjson_parse(c->m->payload, c->m->len, &root, &err) != EG_OK)
        return reject(ig, c, &err);
    if (!cJSON_IsObject(root)) {
        eg_fail(&err, EG_E_SCHEMA, "payload: must be a JSON object");
        goto rejected;
    }
    {
        uint64_t seq;
        if (egjson_get_u53(cJSON_GetObjectItemCaseSensitive(root, "seq"), &seq) == 0) {
            snprintf(c->msg_id, sizeof c->msg_id, "%llu", (unsigned long long)seq);
            c->have_msg_id = 1;
        }
    }
    if (c->have_msg_id) {
        d = dedup(ig, c);
        if (d < 0) {
            rc = (eg_err)-d;
            goto out;
        }
        if (d == 1)
            goto out;
        if (d == 2) {
            eg_fail(&err, EG_E_CONFLICT,
                    "seq: %s was already accepted from %s with other payload bytes", c->msg_id,
                    c->src_id);
            goto rejected;
        }
    }
    rc = eg_registry_device(ig->st, c->src_id, &dev);
    if (rc == EG_E_UNKNOWN_DEVICE) {
        eg_fail(&err, EG_E_UNKNOWN_DEVICE, "device: %s is not registered", c->src_id);
        goto rejected;
    }
    if (rc != EG_OK)
        goto out;
    if (dev.type < 0) {
        eg_fail(&err, EG_E_INTERNAL, "device: %s has an unknown type in the registry", c->src_id);
        goto rejected;
    }
    if (dev.pubkey[0] && check_sig(ig, c->src_id, dev.pubkey, c->m, &err) != EG_OK)
        goto rejected;
    if (eg_telemetry_parse(root, c->m->received_ms, &t, &err) != EG_OK)
        goto rejected;
    rc = eg_registry_binding_at(ig->st, c->src_id, t.ts_ms, patient);
    if (rc == EG_E_BINDING) {
        eg_fail(&err, EG_E_BINDING, "ts: device %s is bound to no patient at that time",
                c->src_id);
        goto rejected;
    }
    if (rc != EG_OK)
        goto out;
    if (t.patient && strcmp(t.patient, patient) != 0) {
        eg_fail(&err, EG_E_BINDING, "patient: %s is not the patient device %s is bound to at ts",
                t.patient, c->src_id);
        goto rejected;
    }
    if (eg_telemetry_normalize(&t, (enum eg_device_type)dev.type, c->src_id, patient, obs, &nobs,
                               &err) != EG_OK)
        goto rejected;

    /* accepted: every write below fails only for storage reasons */
    if (!(arr = group_for(ig, c->receipts_topic)) ||
        !(r = receipt_new(c->msg_id, c->sha, "accepted"))) {
        rc = EG_E_NOMEM;
        goto out;
    }
    cJSON_AddItemToArray(arr, r);
    if (!(entries = cJSON_AddArrayToObject(r, "entries"))) {
        rc = EG_E_NOMEM;
        goto out;
    }
    first = ig->next_seq;
    for (size_t i = 0; i < nobs; i++) {
        uint8_t leaf[32];
        struct eg_entry_in in = {
            .kind = "observation",
            .patient = patient,
            .category = obs[i].category,
            .src_type = c->src_type,
            .src_id = c->src_id,
            .msg_id = c->msg_id,
            .received_at = c->m->received_ms,
            .effective_at = t.ts_ms,
            .resource = obs[i].resource,
        };
        rc = eg_entry_append(ig->st, ig->v, ig->cfg->name, ig->next_seq, &in, leaf);
        if (rc == EG_OK && ig->chain)
            rc = eg_chain_add(ig->chain, ig->next_seq, leaf);
        if (rc != EG_OK)
            goto out;
        if ((rc = add_entry_ref(ig, entries, ig->next_seq, leaf)) != EG_OK)
            goto out;
        ig->next_seq++;
        ig->stats.entries++;
    }
    if ((rc = record_msg(ig, c, first, nobs)) != EG_OK)
        goto out;
    if (c->m->quarantine_id > 0 && (rc = eg_quarantine_done(ig->st, c->m->quarantine_id)) != EG_OK)
        goto out;
    ig->stats.accepted++;
    goto out;

rejected:
    rc = reject(ig, c, &err);
out:
    eg_obs_free(obs, nobs);
    cJSON_Delete(root);
    return rc;
}

/* ---- public ------------------------------------------------------------ */

eg_err eg_ingest_process(struct eg_ingest *ig, const struct eg_msg *m)
{
    struct msgctx c;
    char id[65];
    eg_err rc;

    memset(&c, 0, sizeof c);
    c.m = m;
    ig->stats.msgs++;
    switch (eg_topic_parse(ig->cfg->topic_prefix, m->topic, id)) {
    case EG_T_DEVICE_TELEMETRY:
        c.src_type = "device";
        c.src_id = id;
        eg_topic_device_receipts(c.receipts_topic, sizeof c.receipts_topic,
                                 ig->cfg->topic_prefix, id);
        eg_sha256(m->payload, m->len, c.sha);
        rc = telemetry(ig, &c);
        break;
    case EG_T_ANCHOR_REQUEST:
        /* auditors' requests: read-only, answered through the outbox */
        return eg_api_anchor(ig->st, ig->cfg, m);
    default:
        /* not subscribed to; nothing to answer on */
        log_msg(EG_LOG_WARN, "message on an unexpected topic ignored");
        return EG_OK;
    }
    if (rc != EG_OK && !is_storage_error(rc)) {
        struct eg_error err;
        eg_fail(&err, EG_E_INTERNAL, "internal: %s", eg_strerror(rc));
        rc = reject(ig, &c, &err);
    }
    return rc;
}

eg_err eg_ingest_flush(struct eg_ingest *ig)
{
    for (int i = 0; i < ig->ngroups; i++) {
        cJSON *o = cJSON_CreateObject();
        char *text;
        size_t len;
        eg_err rc;
        if (!o || !cJSON_AddStringToObject(o, "gateway", ig->cfg->name)) {
            cJSON_Delete(o);
            return EG_E_NOMEM;
        }
        cJSON_AddItemReferenceToObject(o, "receipts", ig->groups[i].receipts);
        text = egjson_print(o, &len);
        cJSON_Delete(o);
        if (!text)
            return EG_E_NOMEM;
        rc = eg_outbox_put(ig->st, ig->groups[i].topic, text, len, 1, 0, NULL);
        free(text);
        if (rc != EG_OK)
            return rc;
    }
    groups_clear(ig);
    return EG_OK;
}

void eg_ingest_committed(struct eg_ingest *ig)
{
    ig->committed_seq = ig->next_seq;
    ig->committed_stats = ig->stats;
    groups_clear(ig);
}

void eg_ingest_abort(struct eg_ingest *ig)
{
    ig->next_seq = ig->committed_seq;
    ig->stats = ig->committed_stats;
    groups_clear(ig);
    eg_vault_cache_clear(ig->v);
}

void eg_ingest_get_stats(const struct eg_ingest *ig, struct eg_ingest_stats *out)
{
    *out = ig->committed_stats;
}

uint64_t eg_ingest_next_seq(const struct eg_ingest *ig) { return ig->committed_seq; }

eg_err eg_ingest_new(struct eg_store *st, struct eg_vault *v, const struct eg_config *cfg,
                     struct eg_chain *chain, struct eg_ingest **out, struct eg_error *e)
{
    struct eg_ingest *ig = calloc(1, sizeof *ig);
    eg_err rc;
    *out = NULL;
    if (!ig || !(ig->groups = calloc(MAX_GROUPS, sizeof *ig->groups)) ||
        !(ig->keys = calloc(KEY_CACHE, sizeof *ig->keys))) {
        eg_ingest_free(ig);
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    }
    ig->st = st;
    ig->v = v;
    ig->cfg = cfg;
    ig->chain = chain;
    ig->last_group = -1;
    if ((rc = eg_entry_next_seq(st, &ig->next_seq)) != EG_OK) {
        eg_ingest_free(ig);
        return eg_fail(e, rc, "cannot read the entry sequence");
    }
    ig->committed_seq = ig->next_seq;
    *out = ig;
    return EG_OK;
}

void eg_ingest_free(struct eg_ingest *ig)
{
    if (!ig)
        return;
    if (ig->groups)
        groups_clear(ig);
    free(ig->groups);
    if (ig->keys)
        for (int i = 0; i < KEY_CACHE; i++)
            eg_key_free(ig->keys[i].key);
    free(ig->keys);
    free(ig);
}

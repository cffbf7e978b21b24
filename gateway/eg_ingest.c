/*
 * eg_ingest.c — per-message processing (see eg_ingest.h).
 *
 * Order of checks for device telemetry, chosen so that a publisher always
 * learns as much as can be known (SPEC §7: msg_id whenever it is readable):
 *   too_large -> parse -> (seq readable: dedup: duplicate) -> unknown_device
 *   -> signature -> (dedup: conflict) -> schema/range of the header
 *   -> binding -> readings (schema/unsupported/unit/range) -> commit.
 * A resend of an accepted message is answered `duplicate` before anything
 * else (even if the device was deregistered since); `conflict` is only
 * answered once the message passed the signature check, so an unsigned
 * payload cannot pose as a keyed device's conflicting resend.
 * Each message runs inside a SAVEPOINT: validation happens before the first
 * write, and if anything fails after it, the message's writes are rolled
 * back and it is answered `internal` instead — never a receipt for
 * half-written data. Storage errors abort the whole transaction.
 */
#include "eg_ingest.h"
#include "eg_ingest_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_api.h"
#include "eg_chain.h"
#include "eg_codec.h"
#include "eg_entries.h"
#include "eg_fhir_in.h"
#include "eg_hl7.h"
#include "eg_hospital.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_log.h"
#include "eg_outbox.h"
#include "eg_quarantine.h"
#include "eg_registry.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "eg_topics.h"

#define KEY_CACHE 1024

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
    if (ig->ngroups >= ig->max_groups) {
        struct group *ng = realloc(ig->groups, (size_t)ig->max_groups * 2 * sizeof *ng);
        if (!ng)
            return NULL;
        ig->groups = ng;
        ig->max_groups *= 2;
    }
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

#define MSGID_MAX EG_HOSP_MSGID_MAX

struct msgctx {
    const struct eg_msg *m;
    const char *src_type; /* "device" | "hospital" */
    const char *src_id;   /* a valid SPEC §2 id, or "(invalid)" */
    char receipts_topic[512];
    char msg_id[MSGID_MAX];
    int have_msg_id;
    int hl7;              /* an HL7 v2 message: receipts carry "hl7_ack" */
    int sig_checked;      /* the source has a key and m's signature verified */
    int over_rate;        /* the source had no token left for m */
    const char *pubkey;   /* the source's registered key, if looked up */
    uint8_t sha[32];
};

/* Hook for format-specific receipt members (HL7 ACKs); EG_OK if none. */
static eg_err add_ack(struct msgctx *c, cJSON *r, const char *status, eg_err code,
                      const char *detail);

/* Queues a receipt object (consumed). */
static eg_err push_receipt(struct eg_ingest *ig, struct msgctx *c, cJSON *r)
{
    cJSON *arr = group_for(ig, c->receipts_topic);
    if (!arr) {
        cJSON_Delete(r);
        return EG_E_NOMEM;
    }
    cJSON_AddItemToArray(arr, r);
    return EG_OK;
}

/* ---- signatures ---------------------------------------------------------- */

/* Verifies the SPEC §3 signature against a PEM key, caching parsed keys.
 * With err NULL it only answers EG_OK or EG_E_SIGNATURE. */
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

/* The quarantine bucket of a rejection: "device:D1". A source with a
 * registered key whose signature did not verify goes to
 * "device:D1:unverified", so that unauthenticated junk cannot push a keyed
 * source's genuine rejections out of its quota. */
static void quarantine_source(struct eg_ingest *ig, struct msgctx *c, char *buf, size_t size)
{
    const char *pem = c->pubkey;
    struct eg_device_rec d;
    struct eg_hospital_rec hr;
    int unverified = 0;

    if (!pem && strcmp(c->src_id, "(invalid)") != 0) {
        if (strcmp(c->src_type, "device") == 0 && eg_registry_device(ig->st, c->src_id, &d) == EG_OK)
            pem = d.pubkey;
        else if (strcmp(c->src_type, "hospital") == 0 &&
                 eg_registry_hospital(ig->st, c->src_id, &hr) == EG_OK)
            pem = hr.pubkey;
    }
    if (pem && pem[0] && !c->sig_checked)
        unverified = check_sig(ig, c->src_id, pem, c->m, NULL) != EG_OK;
    snprintf(buf, size, "%s:%s%s", c->src_type, c->src_id, unverified ? ":unverified" : "");
}

/* ---- rejections ---------------------------------------------------------- */

static eg_err reject(struct eg_ingest *ig, struct msgctx *c, const struct eg_error *err)
{
    char source[160];
    int evicted = 0;
    cJSON *r, *eo;
    eg_err rc;

    quarantine_source(ig, c, source, sizeof source);
    rc = eg_quarantine_put(ig->st, ig->v, c->m, source, eg_wire_code(err->code), err->detail,
                           ig->cfg, &evicted);
    if (rc != EG_OK)
        return rc;
    if (evicted) {
        ig->stats.quarantine_evicted += (uint64_t)evicted;
        log_msg(EG_LOG_WARN, "quarantine quota of %s reached: %d oldest row(s) dropped", source,
                evicted);
    }
    if (!(r = receipt_new(c->have_msg_id ? c->msg_id : NULL, c->sha, "rejected")))
        return EG_E_NOMEM;
    eo = cJSON_AddObjectToObject(r, "error");
    if (!eo || !cJSON_AddStringToObject(eo, "code", eg_wire_code(err->code)) ||
        !cJSON_AddStringToObject(eo, "detail", err->detail) ||
        add_ack(c, r, "rejected", err->code, err->detail) != EG_OK) {
        cJSON_Delete(r);
        return EG_E_NOMEM;
    }
    if ((rc = push_receipt(ig, c, r)) != EG_OK)
        return rc;
    ig->stats.rejected++;
    log_msg(EG_LOG_INFO, "rejected %s:%s msg %s: %s", c->src_type, c->src_id,
            c->have_msg_id ? c->msg_id : "-", eg_wire_code(err->code));
    return EG_OK;
}

int ig_is_storage_error(eg_err rc)
{
    return rc == EG_E_DB || rc == EG_E_DB_FULL || rc == EG_E_NOMEM;
}

void ig_mark(const struct eg_ingest *ig, struct ig_mark *mk)
{
    mk->stats = ig->stats;
    mk->next_seq = ig->next_seq;
    mk->nfwd = ig->nfwd;
    memcpy(mk->feed_next, ig->feed_next, sizeof mk->feed_next);
}

eg_err ig_undo(struct eg_ingest *ig, const struct ig_mark *mk)
{
    ig->stats = mk->stats;
    ig->next_seq = mk->next_seq;
    ig->nfwd = mk->nfwd;
    memcpy(ig->feed_next, mk->feed_next, sizeof ig->feed_next);
    /* a patient key created inside the savepoint is gone with it */
    eg_vault_cache_clear(ig->v);
    if (ig->chain && eg_chain_abort_to(ig->chain, mk->next_seq) != EG_OK)
        return EG_E_DB;
    return EG_OK;
}

eg_err ig_append(struct eg_ingest *ig, const struct eg_entry_in *in, uint64_t *seq,
                 uint8_t leaf[32], char **bytes, size_t *len)
{
    eg_err rc = eg_entry_append_ex(ig->st, ig->v, ig->cfg->name, ig->next_seq, in, leaf, bytes,
                                   len);
    if (rc != EG_OK)
        return rc;
    if (ig->chain && (rc = eg_chain_add(ig->chain, ig->next_seq, leaf)) != EG_OK) {
        if (bytes) {
            eg_wipe(*bytes, *len);
            free(*bytes);
            *bytes = NULL;
        }
        return rc;
    }
    *seq = ig->next_seq++;
    ig->stats.entries++;
    return EG_OK;
}

/* ---- idempotence (SPEC §7) --------------------------------------------- */

struct seen {
    int found, same;
    uint64_t first;
    int64_t count;
};

static eg_err dedup_lookup(struct eg_ingest *ig, struct msgctx *c, struct seen *s)
{
    sqlite3_stmt *q = eg_store_stmt(ig->st, "SELECT payload_sha256, first_seq, count FROM msgs"
                                            " WHERE source_type = ?1 AND source_id = ?2"
                                            " AND msg_id = ?3");
    int rc;
    memset(s, 0, sizeof *s);
    if (!q)
        return EG_E_DB;
    sqlite3_bind_text(q, 1, c->src_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->src_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, c->msg_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        s->found = 1;
        s->same = sqlite3_column_bytes(q, 0) == 32 &&
                  memcmp(sqlite3_column_blob(q, 0), c->sha, 32) == 0;
        s->first = (uint64_t)sqlite3_column_int64(q, 1);
        s->count = sqlite3_column_int64(q, 2);
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

/* The `duplicate` receipt with the original entries. */
static eg_err duplicate(struct eg_ingest *ig, struct msgctx *c, const struct seen *s)
{
    cJSON *r = receipt_new(c->msg_id, c->sha, "duplicate"), *entries;
    eg_err rc = EG_OK;
    if (!r || !(entries = cJSON_AddArrayToObject(r, "entries"))) {
        cJSON_Delete(r);
        return EG_E_NOMEM;
    }
    for (int64_t i = 0; i < s->count && rc == EG_OK; i++) {
        uint8_t leaf[32];
        rc = eg_entry_leaf(ig->st, s->first + (uint64_t)i, leaf);
        if (rc == EG_E_NOT_FOUND)
            rc = EG_E_DB; /* a msgs row without its entries: the store is damaged */
        if (rc == EG_OK)
            rc = add_entry_ref(ig, entries, s->first + (uint64_t)i, leaf);
    }
    if (rc == EG_OK)
        rc = add_ack(c, r, "duplicate", EG_OK, NULL);
    if (rc != EG_OK) {
        cJSON_Delete(r);
        return rc;
    }
    if ((rc = push_receipt(ig, c, r)) != EG_OK)
        return rc;
    /* a replayed row that had been accepted meanwhile is done too */
    if (c->m->quarantine_id > 0 &&
        (rc = eg_quarantine_done(ig->st, c->m->quarantine_id, "duplicate")) != EG_OK)
        return rc;
    ig->stats.duplicates++;
    return EG_OK;
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

/* ---- committing an accepted message ------------------------------------- */

/* One observation to store. */
struct obs_out {
    const cJSON *resource;
    const char *patient;
    const char *category;
    int64_t effective_ms;
};

/*
 * Writes the entries, the dedup row and the `accepted` receipt of one
 * message inside a SAVEPOINT. A storage error is returned as is (the whole
 * transaction rolls back); any other failure rolls back to the savepoint and
 * is returned so the caller can answer `internal`.
 */
static eg_err commit_accepted(struct eg_ingest *ig, struct msgctx *c, const struct obs_out *o,
                              size_t n)
{
    uint64_t first = ig->next_seq;
    cJSON *r = NULL, *entries;
    eg_err rc;
    struct eg_error e;
    struct ig_mark mk;

    ig_mark(ig, &mk);
    if ((rc = eg_store_exec(ig->st, "SAVEPOINT msg", &e)) != EG_OK)
        return rc;
    if (!(r = receipt_new(c->msg_id, c->sha, "accepted")) ||
        !(entries = cJSON_AddArrayToObject(r, "entries"))) {
        rc = EG_E_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t leaf[32];
        struct eg_entry_in in = {
            .kind = "observation",
            .patient = o[i].patient,
            .category = o[i].category,
            .src_type = c->src_type,
            .src_id = c->src_id,
            .msg_id = c->msg_id,
            .received_at = c->m->received_ms,
            .effective_at = o[i].effective_ms,
            .resource = o[i].resource,
            /* one normalized observation is never much larger than the
             * payload it came from; bounds what a crafted message can store */
            .max_bytes = (size_t)ig->cfg->max_payload_bytes + 65536,
        };
        uint64_t seq;
        char *bytes = NULL;
        size_t blen = 0;
        if ((rc = ig_append(ig, &in, &seq, leaf, ig->ngrantees ? &bytes : NULL, &blen)) != EG_OK)
            goto fail;
        /* consent is decided here, inside the committing transaction */
        rc = bytes ? eg_feed_decide(ig, seq, &in, bytes, blen) : EG_OK;
        if (bytes) {
            eg_wipe(bytes, blen);
            free(bytes);
        }
        if (rc != EG_OK || (rc = add_entry_ref(ig, entries, seq, leaf)) != EG_OK)
            goto fail;
    }
    if ((rc = add_ack(c, r, "accepted", EG_OK, NULL)) != EG_OK ||
        (rc = record_msg(ig, c, first, n)) != EG_OK)
        goto fail;
    if (c->m->quarantine_id > 0 &&
        (rc = eg_quarantine_done(ig->st, c->m->quarantine_id, "accepted")) != EG_OK)
        goto fail;
    if ((rc = eg_store_exec(ig->st, "RELEASE msg", &e)) != EG_OK)
        goto fail;
    rc = push_receipt(ig, c, r);
    r = NULL;
    if (rc != EG_OK)
        return rc;
    ig->stats.accepted++;
    return EG_OK;
fail:
    cJSON_Delete(r);
    (void)first;
    if (ig_is_storage_error(rc)) {
        ig->next_seq = mk.next_seq;
        return rc;
    }
    /* undo this message's writes, keep the transaction */
    if (eg_store_exec(ig->st, "ROLLBACK TO msg", &e) != EG_OK ||
        eg_store_exec(ig->st, "RELEASE msg", &e) != EG_OK)
        return EG_E_DB;
    if (ig_undo(ig, &mk) != EG_OK)
        return EG_E_DB;
    return rc;
}

/* Commits an accepted message; if that fails for a reason of the message
 * (not storage), answers it instead: too_large for an oversized entry,
 * internal otherwise. */
static eg_err accept_or_answer(struct eg_ingest *ig, struct msgctx *c, const struct obs_out *o,
                               size_t n)
{
    struct eg_error err = {0};
    eg_err rc;
    for (size_t i = 0; i < n; i++) {
        int erased = eg_patient_erased(ig->st, o[i].patient);
        if (erased < 0)
            return EG_E_DB;
        if (erased) {
            /* kept without its payload: the patient's data must not be
             * stored again, not even in the quarantine */
            struct eg_msg bare = *c->m;
            const struct eg_msg *orig = c->m;
            bare.payload = (uint8_t *)"";
            bare.len = 0;
            bare.next = NULL;
            eg_fail(&err, EG_E_UNKNOWN_PATIENT,
                    "patient: %s was erased; no new records are accepted for it (the payload "
                    "is not kept)",
                    o[i].patient);
            c->m = &bare;
            rc = reject(ig, c, &err);
            c->m = orig;
            return rc;
        }
    }
    rc = commit_accepted(ig, c, o, n);
    if (rc == EG_OK || ig_is_storage_error(rc))
        return rc;
    if (rc == EG_E_TOO_LARGE)
        eg_fail(&err, EG_E_TOO_LARGE, "entry: a normalized observation exceeds %lld bytes",
                (long long)ig->cfg->max_payload_bytes + 65536);
    else if (rc == EG_E_NOT_FOUND) /* the vault has no key: the patient was erased */
        eg_fail(&err, EG_E_UNKNOWN_PATIENT,
                "patient: the patient was erased; no new records are accepted for it");
    else
        eg_fail(&err, EG_E_INTERNAL, "internal: could not store the message (%s)",
                eg_strerror(rc));
    return reject(ig, c, &err);
}

static int rate_limited(struct eg_ingest *ig, struct msgctx *c, eg_err *rc);
static void rate_take(struct eg_ingest *ig, struct msgctx *c);

/* ---- device telemetry (SPEC §4) --------------------------------------- */

static eg_err telemetry(struct eg_ingest *ig, struct msgctx *c)
{
    struct eg_error err = {0};
    struct eg_device_rec dev;
    struct eg_telemetry t;
    struct eg_obs obs[EG_MAX_READINGS];
    struct obs_out out[EG_MAX_READINGS];
    struct seen seen = {0};
    size_t nobs = 0;
    char patient[EG_ID_MAX];
    cJSON *root = NULL;
    eg_err rc = EG_OK;

    rate_take(ig, c);
    if (c->m->len > (size_t)ig->cfg->max_payload_bytes) {
        eg_fail(&err, EG_E_TOO_LARGE, "payload: %zu bytes exceed max_payload_bytes %lld",
                c->m->len, (long long)ig->cfg->max_payload_bytes);
        return reject(ig, c, &err);
    }
    if (egjson_parse(c->m->payload, c->m->len, &root, &err) != EG_OK)
        return err.code == EG_E_NOMEM ? EG_E_NOMEM : reject(ig, c, &err);
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
        if ((rc = dedup_lookup(ig, c, &seen)) != EG_OK)
            goto out;
        if (seen.found && seen.same) {
            rc = duplicate(ig, c, &seen);
            goto out;
        }
    }
    /* a resend of a stored message is answered above, also over the limit */
    if (rate_limited(ig, c, &rc))
        goto out;
    rc = eg_registry_device(ig->st, c->src_id, &dev);
    if (rc == EG_E_UNKNOWN_DEVICE) {
        rc = EG_OK;
        eg_fail(&err, EG_E_UNKNOWN_DEVICE, "device: %s is not registered", c->src_id);
        goto rejected;
    }
    if (rc != EG_OK)
        goto out;
    c->pubkey = dev.pubkey;
    if (dev.type < 0) {
        eg_fail(&err, EG_E_INTERNAL, "device: %s has an unknown type in the registry", c->src_id);
        goto rejected;
    }
    if (dev.pubkey[0]) {
        if (check_sig(ig, c->src_id, dev.pubkey, c->m, &err) != EG_OK)
            goto rejected;
        c->sig_checked = 1;
    }
    if (seen.found) {
        eg_fail(&err, EG_E_CONFLICT,
                "seq: %s was already accepted from %s with other payload bytes", c->msg_id,
                c->src_id);
        goto rejected;
    }
    if (eg_telemetry_parse(root, c->m->received_ms, &t, &err) != EG_OK)
        goto rejected;
    rc = eg_registry_binding_at(ig->st, c->src_id, t.ts_ms, patient);
    if (rc == EG_E_BINDING) {
        rc = EG_OK;
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
                               &err) != EG_OK) {
        if (err.code == EG_E_NOMEM) {
            rc = EG_E_NOMEM;
            goto out;
        }
        goto rejected;
    }
    for (size_t i = 0; i < nobs; i++) {
        out[i].resource = obs[i].resource;
        out[i].patient = patient;
        out[i].category = obs[i].category;
        out[i].effective_ms = t.ts_ms;
    }
    rc = accept_or_answer(ig, c, out, nobs);
    goto out;

rejected:
    rc = reject(ig, c, &err);
out:
    eg_obs_free(obs, nobs);
    cJSON_Delete(root);
    return rc;
}

/* ---- HL7 ACKs ------------------------------------------------------------ */

/* SPEC §13: AR for parse, unsupported, too_large, signature and
 * unknown_hospital; AE for every other rejection; AA otherwise. */
static const char *ack_code(const char *status, eg_err code)
{
    if (strcmp(status, "rejected") != 0)
        return "AA";
    switch (code) {
    case EG_E_PARSE:
    case EG_E_UNSUPPORTED:
    case EG_E_TOO_LARGE:
    case EG_E_SIGNATURE:
    case EG_E_UNKNOWN_HOSPITAL:
        return "AR";
    default:
        return "AE";
    }
}

/* An HL7 v2 message's receipt carries the ER7 ACK as "hl7_ack". */
static eg_err add_ack(struct msgctx *c, cJSON *r, const char *status, eg_err code,
                      const char *detail)
{
    char ctl[24], hex[65];
    char *ack;
    if (!c->hl7)
        return EG_OK;
    eg_hex_encode(c->sha, 32, hex);
    snprintf(ctl, sizeof ctl, "EG%.16s", hex); /* <= 20 chars (HL7 v2.5.1 MSH-10) */
    ack = eg_hl7_ack(c->m->payload, c->m->len, ack_code(status, code), detail,
                     c->m->received_ms, ctl);
    if (!ack)
        return EG_E_NOMEM;
    if (!cJSON_AddStringToObject(r, "hl7_ack", ack)) {
        free(ack);
        return EG_E_NOMEM;
    }
    free(ack);
    return EG_OK;
}

/* ---- hospital records (SPEC §5) ---------------------------------------- */

/* The patient of one observation: a direct Patient/{id} (must be
 * registered), else the first of its identifiers mapped for this hospital. */
static eg_err resolve_patient(struct eg_ingest *ig, const char *hospital_id,
                              const struct eg_hobs *o, size_t index, char patient[EG_ID_MAX],
                              struct eg_error *err)
{
    eg_err rc;
    if (o->patient_id[0]) {
        rc = eg_registry_patient_exists(ig->st, o->patient_id);
        if (rc == EG_E_UNKNOWN_PATIENT)
            return eg_fail(err, EG_E_UNKNOWN_PATIENT,
                           "observation %zu: subject Patient/%s is not a registered patient",
                           index, o->patient_id);
        if (rc != EG_OK)
            return rc;
        /* a subject that also names an identifier must name the same
         * patient: never store a record under one of two conflicting ids */
        for (int i = 0; i < o->nidents; i++) {
            char mapped[EG_ID_MAX];
            rc = eg_registry_identifier(ig->st, hospital_id, o->idents[i], mapped);
            if (rc == EG_OK && strcmp(mapped, o->patient_id) != 0)
                return eg_fail(err, EG_E_UNKNOWN_PATIENT,
                               "observation %zu: subject.reference and subject.identifier name "
                               "different patients",
                               index);
            if (rc == EG_E_UNKNOWN_PATIENT)
                return eg_fail(err, EG_E_UNKNOWN_PATIENT,
                               "observation %zu: subject.identifier is not mapped for hospital "
                               "%s, so it cannot confirm subject.reference",
                               index, hospital_id);
            if (rc != EG_OK)
                return rc;
        }
        snprintf(patient, EG_ID_MAX, "%s", o->patient_id);
        return EG_OK;
    }
    for (int i = 0; i < o->nidents; i++) {
        rc = eg_registry_identifier(ig->st, hospital_id, o->idents[i], patient);
        if (rc != EG_E_UNKNOWN_PATIENT)
            return rc; /* found, or a storage error */
    }
    /* the identifier values themselves are not repeated: they are PHI */
    return eg_fail(err, EG_E_UNKNOWN_PATIENT,
                   "observation %zu: none of its %d patient identifier(s) is mapped for "
                   "hospital %s",
                   index, o->nidents, hospital_id);
}

/*
 * Order of checks: too_large -> parse (JSON, or ER7 structure) -> (message id
 * readable) duplicate -> unknown_hospital -> signature -> conflict -> the
 * parser's content errors (schema, unsupported, unit, range) ->
 * unknown_patient -> commit. The parser runs before the registry decides
 * because the message id comes from it; its verdict is applied in order.
 */
static eg_err hospital(struct eg_ingest *ig, struct msgctx *c)
{
    struct eg_error err = {0}, perr = {0};
    struct eg_hospital_rec hosp;
    struct eg_hosp_ctx hctx;
    struct eg_hmsg h;
    struct seen seen = {0};
    struct obs_out *out = NULL;
    char (*patients)[EG_ID_MAX] = NULL;
    cJSON *root = NULL;
    eg_err rc, prc;
    int have_hosp;

    memset(&h, 0, sizeof h);
    c->hl7 = c->m->len >= 3 && memcmp(c->m->payload, "MSH", 3) == 0;
    rate_take(ig, c);
    if (c->m->len > (size_t)ig->cfg->max_payload_bytes) {
        eg_fail(&err, EG_E_TOO_LARGE, "payload: %zu bytes exceed max_payload_bytes %lld",
                c->m->len, (long long)ig->cfg->max_payload_bytes);
        return reject(ig, c, &err);
    }
    rc = eg_registry_hospital(ig->st, c->src_id, &hosp);
    if (rc != EG_OK && rc != EG_E_UNKNOWN_HOSPITAL)
        return rc;
    have_hosp = rc == EG_OK;
    rc = EG_OK;
    hctx.hospital_id = c->src_id;
    hctx.utc_offset_min = have_hosp ? hosp.utc_offset_min : 0;
    hctx.now_ms = c->m->received_ms;

    if (c->hl7) {
        prc = eg_hl7_parse(c->m->payload, c->m->len, &hctx, &h, &perr);
    } else if ((prc = egjson_parse(c->m->payload, c->m->len, &root, &perr)) == EG_OK) {
        prc = eg_fhir_in_parse(root, &hctx, &h, &perr);
    }
    if (prc == EG_E_NOMEM) {
        rc = prc;
        goto out;
    }
    if (h.have_msg_id) {
        /* a message id with control characters is no id (it would end up
         * in logs, entries and identifiers) */
        int bad = 0;
        for (const char *q = h.msg_id; *q; q++)
            bad |= (unsigned char)*q < 0x20 || *q == 0x7f;
        if (bad || strspn(h.msg_id, " ") == strlen(h.msg_id)) {
            eg_fail(&err, EG_E_SCHEMA, "message id: must be printable and not blank");
            goto rejected;
        }
        snprintf(c->msg_id, sizeof c->msg_id, "%s", h.msg_id);
        c->have_msg_id = 1;
    }
    if (prc == EG_E_PARSE) {
        err = perr;
        goto rejected;
    }
    if (c->have_msg_id) {
        if ((rc = dedup_lookup(ig, c, &seen)) != EG_OK)
            goto out;
        if (seen.found && seen.same) {
            rc = duplicate(ig, c, &seen);
            goto out;
        }
    }
    if (rate_limited(ig, c, &rc))
        goto out;
    if (!have_hosp) {
        eg_fail(&err, EG_E_UNKNOWN_HOSPITAL, "hospital: %s is not registered", c->src_id);
        goto rejected;
    }
    c->pubkey = hosp.pubkey;
    if (hosp.pubkey[0]) {
        if (check_sig(ig, c->src_id, hosp.pubkey, c->m, &err) != EG_OK)
            goto rejected;
        c->sig_checked = 1;
    }
    if (seen.found) {
        eg_fail(&err, EG_E_CONFLICT,
                "message id: %.64s was already accepted from %s with other payload bytes",
                c->msg_id, c->src_id);
        goto rejected;
    }
    if (prc != EG_OK) {
        err = perr;
        goto rejected;
    }
    if (h.n == 0) {
        eg_fail(&err, EG_E_SCHEMA, "message: contains no observation");
        goto rejected;
    }
    if (!(patients = calloc(h.n, sizeof *patients)) || !(out = calloc(h.n, sizeof *out))) {
        rc = EG_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < h.n; i++) {
        rc = resolve_patient(ig, c->src_id, &h.obs[i], i, patients[i], &err);
        if (rc == EG_E_UNKNOWN_PATIENT) {
            rc = EG_OK;
            goto rejected;
        }
        if (rc != EG_OK)
            goto out;
        if (eg_hobs_set_subject(&h.obs[i], patients[i]) != 0) {
            rc = EG_E_NOMEM;
            goto out;
        }
        if (h.obs[i].effective_ms < EG_EARLIEST_MS) {
            eg_fail(&err, EG_E_RANGE,
                    "observation %zu: effective time before 1900-01-01 is not plausible", i);
            goto rejected;
        }
        out[i].resource = h.obs[i].resource;
        out[i].patient = patients[i];
        out[i].category = h.obs[i].category;
        out[i].effective_ms = h.obs[i].effective_ms;
    }
    rc = accept_or_answer(ig, c, out, h.n);
    goto out;

rejected:
    rc = reject(ig, c, &err);
out:
    free(out);
    free(patients);
    eg_hmsg_clear(&h);
    cJSON_Delete(root);
    return rc;
}

/* ---- rate limits (per source) ------------------------------------------ */

/*
 * A token bucket per device or hospital: source_burst tokens, refilled at
 * source_rate per second (of the messages' arrival times). Kept in memory
 * only (a restart forgets it, which errs on the side of taking messages);
 * the table is fixed in size: a source that does not find a slot within 8
 * probes takes the least recently used of them. Returns 1 if m may be
 * taken now.
 */
static int rate_ok(struct eg_ingest *ig, const char *type, const char *id, int64_t at_ms)
{
    char key[80];
    unsigned h = 2166136261u;
    struct bucket *b = NULL, *oldest = NULL, *free_slot = NULL;
    double rate = (double)ig->cfg->source_rate, burst = (double)ig->cfg->source_burst;

    if (ig->cfg->source_rate <= 0 || !ig->buckets)
        return 1;
    snprintf(key, sizeof key, "%c:%s", type[0], id);
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (int i = 0; i < 8 && !b; i++) {
        struct bucket *c = &ig->buckets[(h + (unsigned)i) % EG_BUCKETS];
        if (strcmp(c->key, key) == 0)
            b = c;
        else if (c->key[0] == 0)
            free_slot = free_slot ? free_slot : c;
        else if (!oldest || c->last_ms < oldest->last_ms)
            oldest = c;
    }
    if (!b) {
        b = free_slot ? free_slot : oldest;
        snprintf(b->key, sizeof b->key, "%s", key);
        b->tokens = burst;
        b->last_ms = at_ms;
    }
    if (at_ms > b->last_ms) {
        b->tokens += (double)(at_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ms = at_ms;
    }
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    if (ig->ntaken < EG_TAKEN_MAX)
        ig->taken[ig->ntaken++] = b;
    return 1;
}

/* Every message of a source takes a token when it is first looked at —
 * also one that turns out too large, unparsable or a duplicate — so that
 * junk counts too. A transaction that rolls back gives its tokens back
 * (eg_ingest_abort), so retries during a storage outage cost nothing. */
static void rate_take(struct eg_ingest *ig, struct msgctx *c)
{
    c->over_rate = c->m->quarantine_id <= 0 && !rate_ok(ig, c->src_type, c->src_id, eg_mono_ms());
}

/* Answers m rate_limited (receipt, quarantine) if its source was over its
 * rate; 1 if it was answered. Called once its msg_id is known and a
 * duplicate was answered. */
static int rate_limited(struct eg_ingest *ig, struct msgctx *c, eg_err *rc)
{
    struct eg_error err;
    if (!c->over_rate)
        return 0;
    eg_fail(&err, EG_E_RATE_LIMITED,
            "source: more than %lld messages/s (burst %lld) from %s %s; send again later",
            (long long)ig->cfg->source_rate, (long long)ig->cfg->source_burst, c->src_type,
            c->src_id);
    ig->stats.rate_limited++;
    *rc = reject(ig, c, &err);
    return 1;
}

/* ---- public ------------------------------------------------------------ */

static void ctx_init(struct msgctx *c, const struct eg_msg *m)
{
    memset(c, 0, sizeof *c);
    c->m = m;
    eg_sha256(m->payload, m->len, c->sha);
}

eg_err eg_ingest_process(struct eg_ingest *ig, const struct eg_msg *m)
{
    struct msgctx c;
    struct eg_error err;
    char id[65];
    const char *family;
    eg_err rc;

    ctx_init(&c, m);
    ig->stats.msgs++;
    switch (eg_topic_parse(ig->cfg->topic_prefix, m->topic, id)) {
    case EG_T_DEVICE_TELEMETRY:
        c.src_type = "device";
        c.src_id = id;
        eg_topic_device_receipts(c.receipts_topic, sizeof c.receipts_topic,
                                 ig->cfg->topic_prefix, id);
        rc = telemetry(ig, &c);
        break;
    case EG_T_HOSPITAL_RECORDS:
        c.src_type = "hospital";
        c.src_id = id;
        eg_topic_hospital_receipts(c.receipts_topic, sizeof c.receipts_topic,
                                   ig->cfg->topic_prefix, id);
        rc = hospital(ig, &c);
        break;
    case EG_T_ANCHOR_REQUEST:
        /* auditors' requests: read-only, answered through the outbox */
        if (strcmp(id, ig->cfg->name) != 0)
            return EG_OK;
        if (m->quarantine_id > 0)
            return eg_quarantine_done(ig->st, m->quarantine_id, "not replayable");
        return eg_api_anchor(ig->st, ig->cfg, m);
    case EG_T_PATIENT_CONSENT:
        return eg_req_consent(ig, m, id);
    case EG_T_PATIENT_REQUEST:
        return eg_req_patient(ig, m, id);
    case EG_T_ADMIN_REQUEST:
        return eg_req_admin(ig, m);
    case EG_T_FEED_REQUEST:
        if (m->quarantine_id > 0)
            return eg_quarantine_done(ig->st, m->quarantine_id, "not replayable");
        return eg_feed_request(ig, m, id);
    default:
        /* a source topic with an invalid id: still answered (SPEC §2, §13) */
        family = eg_topic_source_raw(ig->cfg->topic_prefix, m->topic, c.receipts_topic,
                                     sizeof c.receipts_topic);
        if (!family) {
            log_msg(EG_LOG_WARN, "message on an unexpected topic ignored");
            if (m->quarantine_id > 0)
                return eg_quarantine_done(ig->st, m->quarantine_id, "not replayable");
            return EG_OK;
        }
        c.src_type = family;
        c.src_id = "(invalid)";
        c.hl7 = strcmp(family, "hospital") == 0 && m->len >= 3 &&
                memcmp(m->payload, "MSH", 3) == 0;
        eg_fail(&err, EG_E_SCHEMA, "topic: the %s id must be 1-64 characters of A-Z a-z 0-9 . _ -",
                family);
        rc = reject(ig, &c, &err);
        break;
    }
    return rc;
}

eg_err eg_ingest_reject_internal(struct eg_ingest *ig, const struct eg_msg *m)
{
    struct msgctx c;
    struct eg_error err;
    char id[65];

    ctx_init(&c, m);
    switch (eg_topic_parse(ig->cfg->topic_prefix, m->topic, id)) {
    case EG_T_DEVICE_TELEMETRY:
        c.src_type = "device";
        eg_topic_device_receipts(c.receipts_topic, sizeof c.receipts_topic,
                                 ig->cfg->topic_prefix, id);
        break;
    case EG_T_HOSPITAL_RECORDS:
        c.src_type = "hospital";
        eg_topic_hospital_receipts(c.receipts_topic, sizeof c.receipts_topic,
                                   ig->cfg->topic_prefix, id);
        break;
    case EG_T_PATIENT_CONSENT:
    case EG_T_PATIENT_REQUEST:
    case EG_T_ADMIN_REQUEST:
        return eg_req_reject_internal(ig, m, id); /* answered and kept */
    default:
        return EG_OK; /* read-only requests (anchor, feed) keep nothing */
    }
    c.src_id = id;
    c.hl7 = strcmp(c.src_type, "hospital") == 0 && m->len >= 3 && memcmp(m->payload, "MSH", 3) == 0;
    eg_fail(&err, EG_E_INTERNAL, "internal: the gateway could not process this message; it is "
                                 "kept in quarantine");
    return reject(ig, &c, &err);
}

/*
 * One outbox message per receipts topic per transaction, split so that none
 * exceeds receipt_max_bytes (a device's MQTT Maximum Packet Size may be
 * small, and a broker drops a larger message while still acknowledging it);
 * a single receipt larger than that still goes alone.
 */
eg_err eg_ingest_flush(struct eg_ingest *ig)
{
    char head[128];
    size_t hl = (size_t)snprintf(head, sizeof head, "{\"gateway\":\"%s\",\"receipts\":[",
                                 ig->cfg->name);
    eg_err rc = eg_feed_access_entries(ig);

    for (int i = 0; i < ig->ngroups && rc == EG_OK; i++) {
        char *buf = NULL;
        size_t len = 0, cap = 0, count = 0;
        cJSON *r;
        cJSON_ArrayForEach(r, ig->groups[i].receipts)
        {
            size_t rl;
            char *text = egjson_print(r, &rl);
            if (!text) {
                rc = EG_E_NOMEM;
                break;
            }
            if (count && len + 1 + rl + 2 > (size_t)ig->cfg->receipt_max_bytes) {
                memcpy(buf + len, "]}", 2);
                rc = eg_outbox_put(ig->st, ig->groups[i].topic, buf, len + 2, 1, 0, NULL);
                len = 0;
                count = 0;
            }
            if (rc == EG_OK && len + rl + hl + 4 > cap) {
                size_t ncap = (len + rl + hl + 4) * 2;
                char *nb = realloc(buf, ncap);
                if (!nb)
                    rc = EG_E_NOMEM;
                else {
                    buf = nb;
                    cap = ncap;
                }
            }
            if (rc == EG_OK) {
                if (count == 0) {
                    memcpy(buf, head, hl);
                    len = hl;
                } else {
                    buf[len++] = ',';
                }
                memcpy(buf + len, text, rl);
                len += rl;
                count++;
            }
            free(text);
            if (rc != EG_OK)
                break;
        }
        if (rc == EG_OK && count) {
            memcpy(buf + len, "]}", 2);
            rc = eg_outbox_put(ig->st, ig->groups[i].topic, buf, len + 2, 1, 0, NULL);
        }
        free(buf);
    }
    if (rc == EG_OK)
        groups_clear(ig);
    return rc;
}

void eg_ingest_committed(struct eg_ingest *ig)
{
    ig->ntaken = 0;
    ig->committed_seq = ig->next_seq;
    ig->committed_stats = ig->stats;
    memcpy(ig->feed_committed, ig->feed_next, sizeof ig->feed_committed);
    ig->nfwd = 0;
    groups_clear(ig);
    if (ig->erased_in_tx)
        ig->want_checkpoint = 1;
    ig->erased_in_tx = 0;
    if (ig->want_checkpoint) {
        /* SPEC §9: after an erasure the wrapped key must not linger in the
         * WAL. secure_delete is on for the connection; TRUNCATE copies the
         * WAL back and empties it. A reader (the publisher) can make it
         * busy: then it is tried again after the next commit. */
        int busy = -1, logn = -1, ckpt = -1;
        int rc = sqlite3_wal_checkpoint_v2(eg_store_db(ig->st), NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                           &logn, &ckpt);
        busy = rc == SQLITE_BUSY;
        if (rc == SQLITE_OK) {
            ig->want_checkpoint = 0;
            log_msg(EG_LOG_INFO, "erasure: WAL checkpointed and truncated");
        } else if (!busy) {
            log_msg(EG_LOG_WARN, "erasure: WAL checkpoint failed (%s); retrying",
                    sqlite3_errstr(rc));
        }
    }
}

void eg_ingest_abort(struct eg_ingest *ig)
{
    /* a rolled-back transaction gives its rate tokens back */
    for (size_t i = 0; i < ig->ntaken; i++)
        if (ig->taken[i]->tokens + 1.0 <= (double)ig->cfg->source_burst)
            ig->taken[i]->tokens += 1.0;
    ig->ntaken = 0;
    ig->next_seq = ig->committed_seq;
    ig->stats = ig->committed_stats;
    memcpy(ig->feed_next, ig->feed_committed, sizeof ig->feed_next);
    ig->nfwd = 0;
    ig->erased_in_tx = 0; /* an erasure rolled back needs no checkpoint */
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
    if (!ig || !(ig->keys = calloc(KEY_CACHE, sizeof *ig->keys)) ||
        !(ig->buckets = calloc(EG_BUCKETS, sizeof *ig->buckets))) {
        eg_ingest_free(ig);
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    }
    /* at most one receipts topic per message: sized to a batch, grown if a
     * caller processes more per transaction */
    ig->max_groups = (int)cfg->batch_max + 128;
    if (!(ig->groups = calloc((size_t)ig->max_groups, sizeof *ig->groups))) {
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
    if ((ig->ngrantees = eg_grantees_parse(cfg, ig->grantees, EG_GRANTEES_MAX)) < 0) {
        eg_ingest_free(ig);
        return eg_fail(e, EG_E_USAGE, "grantee: each must be NAME:PURPOSE (ids of A-Z a-z 0-9 . _ "
                                      "-, each name once, at most %d)",
                       EG_GRANTEES_MAX);
    }
    if ((rc = eg_admin_keys_load(cfg, &ig->admin, e)) != EG_OK ||
        (rc = eg_feed_load(ig)) != EG_OK) {
        eg_ingest_free(ig);
        return rc == EG_E_DB ? eg_fail(e, rc, "cannot read the feeds") : rc;
    }
    memcpy(ig->feed_committed, ig->feed_next, sizeof ig->feed_committed);
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
    free(ig->fwds);
    free(ig->buckets);
    eg_admin_keys_free(ig->admin);
    free(ig);
}

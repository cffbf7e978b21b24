/*
 * eg_requests.c — the signed request families (SPEC §3, §8–10, §13):
 * consent directives on {p}/patient/{id}/consent, patient requests on
 * {p}/patient/{id}/request, admin requests on {p}/admin/request; and
 * erasure by crypto-shredding.
 *
 * Every request is handled inside the pipeline's transaction, in this
 * order: Response Topic inside the family's replies topic (else
 * `forbidden`) -> the signer's key (registered patient key, or a configured
 * admin key) -> signature, JSON, nonce and issued (eg_signed_check) -> the
 * request itself. A rejection changes nothing but the quarantine (the
 * payload is kept, SPEC §13) and the reply. An accepted request runs in a
 * SAVEPOINT together with the advance of its signer's nonce counter, so a
 * request either happens with its counter advanced or not at all.
 * Logs name ids and codes, never payloads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_api.h"
#include "eg_codec.h"
#include "eg_ingest_int.h"
#include "eg_json.h"
#include "eg_log.h"
#include "eg_outbox.h"
#include "eg_quarantine.h"
#include "eg_signed.h"
#include "eg_time.h"
#include "eg_topics.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000

int eg_patient_erased(struct eg_store *st, const char *patient)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT 1 FROM patient_keys WHERE patient_id = ?1"
                                        " AND wrapped IS NULL");
    int rc;
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- common ---------------------------------------------------------------- */

/* The op to echo before the request is verified: a known op name read from
 * the payload if it parses, else the family's default. */
static const char *peek_op(const struct eg_msg *m, const char *const *known, const char *dflt)
{
    cJSON *root = NULL;
    struct eg_error e;
    const char *op = dflt;
    if (m->len <= 65536 && egjson_parse(m->payload, m->len, &root, &e) == EG_OK) {
        const char *s = egjson_str(root, "op");
        for (int i = 0; s && known[i]; i++)
            if (strcmp(s, known[i]) == 0)
                op = known[i];
    }
    cJSON_Delete(root);
    return op;
}

/* A rejected request: kept in quarantine under source, answered on the
 * family's replies topic. */
static eg_err req_reject(struct eg_ingest *ig, const struct eg_msg *m, const char *replies,
                         const char *op, const char *source, int verified,
                         const struct eg_error *err)
{
    char src[160];
    int evicted = 0;
    eg_err rc;
    /* rejections before the signature verified go to their own bucket, so
     * unsigned junk cannot push a signer's genuine rejections out of its
     * quota */
    snprintf(src, sizeof src, "%s%s", source, verified ? "" : ":unverified");
    rc = eg_quarantine_put(ig->st, ig->v, m, src, eg_wire_code(err->code), err->detail, ig->cfg,
                           &evicted);
    if (rc != EG_OK)
        return rc;
    if (evicted) {
        ig->stats.quarantine_evicted += (uint64_t)evicted;
        log_msg(EG_LOG_WARN, "quarantine quota of %s reached: %d oldest row(s) dropped", src,
                evicted);
    }
    ig->stats.rejected++;
    log_msg(EG_LOG_INFO, "rejected %s %s: %s", source, op, eg_wire_code(err->code));
    return eg_api_reply(ig->st, m, replies, op, eg_api_rejected(op, err->code, err->detail));
}

static cJSON *reply_new(const char *op, const char *status)
{
    cJSON *r = cJSON_CreateObject();
    if (r &&
        (!cJSON_AddStringToObject(r, "op", op) || !cJSON_AddStringToObject(r, "status", status))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static void entry_id(const struct eg_ingest *ig, uint64_t seq, char out[96])
{
    snprintf(out, 96, "%s-%llu", ig->cfg->name, (unsigned long long)seq);
}

static eg_err savepoint(struct eg_ingest *ig, struct ig_mark *mk)
{
    struct eg_error e;
    ig_mark(ig, mk);
    return eg_store_exec(ig->st, "SAVEPOINT req", &e);
}

static eg_err release(struct eg_ingest *ig)
{
    struct eg_error e;
    return eg_store_exec(ig->st, "RELEASE req", &e);
}

/* Undoes the savepoint after a failure rc. A storage error is returned as
 * is (the transaction rolls back); otherwise EG_OK, and the caller answers
 * `internal`. */
static eg_err undo(struct eg_ingest *ig, const struct ig_mark *mk, eg_err rc)
{
    struct eg_error e;
    if (ig_is_storage_error(rc)) {
        ig->next_seq = mk->next_seq;
        return rc;
    }
    if (eg_store_exec(ig->st, "ROLLBACK TO req", &e) != EG_OK ||
        eg_store_exec(ig->st, "RELEASE req", &e) != EG_OK || ig_undo(ig, mk) != EG_OK)
        return EG_E_DB;
    return EG_OK;
}

static eg_err internal(struct eg_ingest *ig, const struct eg_msg *m, const char *replies,
                       const char *op, const char *source, eg_err why)
{
    struct eg_error err;
    eg_fail(&err, EG_E_INTERNAL, "internal: the request could not be carried out (%s)",
            eg_strerror(why));
    return req_reject(ig, m, replies, op, source, 1, &err);
}

/* The end of an accepted request: marks a replayed quarantine row done,
 * releases the savepoint and queues reply (consumed); on a failure rc (or
 * one here) undoes the savepoint and answers `internal`. */
static eg_err finish(struct eg_ingest *ig, const struct eg_msg *m, const struct ig_mark *mk,
                     eg_err rc, const char *replies, const char *op, const char *source,
                     cJSON *reply)
{
    const char *status = egjson_str(reply, "status");
    if (rc == EG_OK && m->quarantine_id > 0)
        rc = eg_quarantine_done(ig->st, m->quarantine_id, status ? status : "accepted");
    if (rc == EG_OK)
        rc = release(ig);
    if (rc != EG_OK) {
        eg_err why = rc;
        cJSON_Delete(reply);
        if ((rc = undo(ig, mk, rc)) == EG_OK)
            rc = internal(ig, m, replies, op, source, why);
        return rc;
    }
    log_msg(EG_LOG_INFO, "%s: %s %s", source, op, status ? status : "?");
    return eg_api_reply(ig->st, m, replies, op, reply);
}

/* Members allowed in a request besides nonce and issued. */
static int check_members(const cJSON *root, const char *const *allowed, struct eg_error *err)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        int ok = strcmp(it->string, "nonce") == 0 || strcmp(it->string, "issued") == 0;
        for (int i = 0; !ok && allowed[i]; i++)
            ok = strcmp(it->string, allowed[i]) == 0;
        if (!ok) {
            eg_fail(err, EG_E_SCHEMA, "%.40s: unknown member", it->string);
            return -1;
        }
    }
    return 0;
}

/* ---- erasure (SPEC §9) --------------------------------------------------- */

/* Runs a statement taking ?1 = patient and ?2 = a time. */
static eg_err exec_patient(struct eg_ingest *ig, const char *sql, const char *patient, int64_t at)
{
    sqlite3_stmt *s = eg_store_stmt(ig->st, sql);
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, at);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

/*
 * Crypto-shreds patient inside the transaction: the wrapped data key is
 * overwritten with NULL (secure_delete is on, and the WAL is checkpointed
 * with TRUNCATE after COMMIT), the patient's grants end, a pending request
 * is settled, and an `erasure` entry records how many observation and
 * consent entries became unreadable. *erased = -1 if the patient was
 * erased already (nothing changes).
 */
static eg_err erase_patient(struct eg_ingest *ig, const char *patient, int64_t now, int64_t *erased,
                            uint64_t *seq_out)
{
    sqlite3_stmt *s;
    int rc, was;
    uint64_t seq;
    uint8_t leaf[32];
    eg_err erc;
    cJSON *extra;

    if ((was = eg_patient_erased(ig->st, patient)) < 0)
        return EG_E_DB;
    if (was) {
        *erased = -1;
        return EG_OK;
    }
    if (!(s = eg_store_stmt(ig->st, "SELECT count(*) FROM entries WHERE patient = ?1"
                                    " AND kind IN ('observation', 'consent')")))
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    *erased = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return eg_store_err(rc);
    /* the tombstone also keeps the vault from ever creating a new key */
    if ((erc = exec_patient(ig, "INSERT INTO patient_keys(patient_id, wrapped, created_at,"
                                " erased_at) VALUES(?1, NULL, ?2, ?2)"
                                " ON CONFLICT(patient_id) DO UPDATE SET wrapped = NULL,"
                                " erased_at = ?2",
                            patient, now)) != EG_OK)
        return erc;
    eg_vault_cache_clear(ig->v); /* no cached copy of the key survives */
    if ((erc = exec_patient(ig, "UPDATE consents SET active = 0, updated_at = ?2"
                                " WHERE patient_id = ?1 AND active = 1",
                            patient, now)) != EG_OK ||
        (erc = exec_patient(ig, "DELETE FROM erase_requests WHERE patient_id = ?1", patient,
                            now)) != EG_OK)
        return erc;
    /* what still waits to be published or replayed would carry the data
     * out after the erasure: feed messages and replies not yet handed to
     * the broker, and the rejected payloads of the patient's own requests
     * and of devices only ever bound to the patient */
    {
        char replies[256];
        int purged = 0;
        if (eg_topic_patient(replies, sizeof replies, ig->cfg->topic_prefix, patient,
                             "replies") != 0)
            return EG_E_INTERNAL;
        if ((erc = eg_outbox_purge_patient(ig->st, patient, replies, &purged)) != EG_OK)
            return erc;
        if (purged)
            log_msg(EG_LOG_INFO, "patient %s erased: %d queued message(s) withdrawn", patient,
                    purged);
    }
    if ((erc = exec_patient(
             ig,
             "DELETE FROM quarantine WHERE source IN ('patient:' || ?1,"
             " 'patient:' || ?1 || ':unverified') OR source IN (SELECT 'device:' || device_id"
             " FROM bindings GROUP BY device_id HAVING min(patient_id) = ?1 AND"
             " max(patient_id) = ?1) OR source IN (SELECT 'device:' || device_id ||"
             " ':unverified' FROM bindings GROUP BY device_id HAVING min(patient_id) = ?1 AND"
             " max(patient_id) = ?1)",
             patient, now)) != EG_OK)
        return erc;
    if (!(extra = cJSON_CreateObject()) ||
        egjson_add_taken(extra, "erased", egjson_create_u64((uint64_t)*erased)) != 0) {
        cJSON_Delete(extra);
        return EG_E_NOMEM;
    }
    {
        struct eg_entry_in in = {
            .kind = "erasure",
            .patient = patient,
            .category = "erasure",
            .src_type = "gateway",
            .src_id = ig->cfg->name,
            .msg_id = NULL,
            .received_at = now,
            .effective_at = INT64_MIN,
            .resource = NULL,
            .extra = extra,
        };
        erc = ig_append(ig, &in, &seq, leaf, NULL, NULL);
    }
    cJSON_Delete(extra);
    if (erc != EG_OK)
        return erc;
    *seq_out = seq;
    ig->erased_in_tx = 1;
    log_msg(EG_LOG_INFO, "patient %s erased: %lld entries made unreadable", patient,
            (long long)*erased);
    return EG_OK;
}

/* SPEC §2: a payload above max_payload_bytes is not parsed. */
static int too_large(const struct eg_ingest *ig, const struct eg_msg *m, struct eg_error *err)
{
    if ((int64_t)m->len <= ig->cfg->max_payload_bytes)
        return 0;
    eg_fail(err, EG_E_TOO_LARGE, "payload: %zu bytes, more than max_payload_bytes %lld", m->len,
            (long long)ig->cfg->max_payload_bytes);
    return 1;
}

/* After eg_signed_check failed with err: 1 if the signature itself had
 * verified (a signer's own malformed or stale request), 0 for a bad
 * signature or a replay (which anyone can send again). */
static int signature_ok(const struct eg_error *err)
{
    return err->code != EG_E_SIGNATURE && err->code != EG_E_REPLAY &&
           err->code != EG_E_UNKNOWN_PATIENT && err->code != EG_E_FORBIDDEN &&
           err->code != EG_E_TOO_LARGE;
}

/* The common part of the patient families: Response Topic, registered
 * key, signature, JSON, nonce and issued. EG_OK with *sg filled; a storage
 * error; or EG_E_INTERNAL once the request was answered (rejected). */
static eg_err patient_verify(struct eg_ingest *ig, const struct eg_msg *m, const char *patient,
                             const char *op, const char *replies, int64_t now,
                             struct eg_signed *sg)
{
    char source[96], pem[EG_PUBKEY_PEM_MAX], route[512], *props = NULL;
    struct eg_error err = {0};
    eg_err rc;

    ig->stats.requests++;
    snprintf(source, sizeof source, "patient:%s", patient);
    if (eg_api_route(m, replies, route, sizeof route, &props)) {
        free(props);
        eg_fail(&err, EG_E_FORBIDDEN, "response topic: must be %s or below it", replies);
    } else if (too_large(ig, m, &err)) {
        free(props);
    } else {
        free(props);
        rc = eg_registry_patient_key(ig->st, patient, pem);
        if (rc == EG_E_UNKNOWN_PATIENT)
            eg_fail(&err, EG_E_UNKNOWN_PATIENT, "patient: %s is not registered", patient);
        else if (rc != EG_OK)
            return rc;
        else if ((rc = eg_signed_check(ig->st, m, source, pem, now, sg, &err)) == EG_OK)
            return EG_OK;
        else if (ig_is_storage_error(rc))
            return rc;
    }
    rc = req_reject(ig, m, replies, op, source, signature_ok(&err), &err);
    return rc == EG_OK ? EG_E_INTERNAL : rc;
}

/* ---- consent directives (SPEC §8) ------------------------------------------ */

static eg_err consent_log(struct eg_ingest *ig, uint64_t seq, const char *patient,
                          const struct eg_directive *d, const char *grantee, int64_t now)
{
    sqlite3_stmt *s = eg_store_stmt(ig->st, "INSERT INTO consent_log(seq, patient_id, consent_id,"
                                            " action, grantee, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(s, 2, patient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, d->consent_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, d->grant ? "grant" : "revoke", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, grantee, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

eg_err eg_req_consent(struct eg_ingest *ig, const struct eg_msg *m, const char *patient)
{
    static const char *const known[] = {NULL};
    const char *op = peek_op(m, known, "consent");
    char replies[256], source[96], signer[96];
    char eid[96], hex[65], nonce[24];
    struct eg_error err = {0};
    struct eg_signed sg = {0};
    struct eg_directive d, prev;
    struct ig_mark mk;
    int64_t now = eg_now_ms();
    uint64_t seq = 0;
    uint8_t leaf[32];
    cJSON *res = NULL, *extra = NULL, *reply = NULL;
    char *directive = NULL;
    eg_err rc;
    int erased;

    if (eg_topic_patient(replies, sizeof replies, ig->cfg->topic_prefix, patient, "replies") != 0)
        return EG_OK;
    snprintf(source, sizeof source, "patient:%s", patient);
    snprintf(signer, sizeof signer, "patient:%s", patient);
    if ((rc = patient_verify(ig, m, patient, op, replies, now, &sg)) != EG_OK)
        return rc == EG_E_INTERNAL ? EG_OK : rc;
    /* a refused directive is not accepted: the nonce counter stays (SPEC §3
     * "advanced by every accepted signed message") */
    if ((rc = eg_directive_parse(sg.root, ig->grantees, ig->ngrantees, &d, &err)) != EG_OK) {
        eg_signed_clear(&sg);
        return req_reject(ig, m, replies, op, source, 1, &err);
    }
    if ((erased = eg_patient_erased(ig->st, patient)) != 0) {
        eg_signed_clear(&sg);
        if (erased < 0)
            return EG_E_DB;
        eg_fail(&err, EG_E_UNKNOWN_PATIENT, "patient: %s was erased", patient);
        return req_reject(ig, m, replies, op, source, 1, &err);
    }
    if (!d.grant) {
        rc = eg_consent_lookup(ig->st, patient, d.consent_id, &prev);
        if (rc == EG_E_NOT_FOUND) {
            eg_signed_clear(&sg);
            if (!(reply = reply_new(op, "not_found")) ||
                !cJSON_AddStringToObject(reply, "consent_id", d.consent_id)) {
                cJSON_Delete(reply);
                return EG_E_NOMEM;
            }
            if (m->quarantine_id > 0 &&
                (rc = eg_quarantine_done(ig->st, m->quarantine_id, "not_found")) != EG_OK)
                return rc;
            return eg_api_reply(ig->st, m, replies, op, reply);
        }
        if (rc != EG_OK) {
            eg_signed_clear(&sg);
            return ig_is_storage_error(rc) ? rc : EG_E_DB;
        }
    }
    snprintf(nonce, sizeof nonce, "%llu", (unsigned long long)sg.nonce);
    if (!(directive = malloc(m->len + 1))) {
        eg_signed_clear(&sg);
        return EG_E_NOMEM;
    }
    memcpy(directive, m->payload, m->len);
    directive[m->len] = 0;
    res = eg_consent_resource(&d, d.grant ? NULL : &prev, patient, now);
    extra = cJSON_CreateObject();
    if (!res || !extra || !cJSON_AddStringToObject(extra, "directive", directive) ||
        !cJSON_AddStringToObject(extra, "topic", m->topic) ||
        !cJSON_AddStringToObject(extra, "sig", m->sig ? m->sig : "")) {
        rc = EG_E_NOMEM;
        goto out;
    }
    if ((rc = savepoint(ig, &mk)) != EG_OK)
        goto out;
    {
        struct eg_entry_in in = {
            .kind = "consent",
            .patient = patient,
            .category = "consent",
            .src_type = "patient",
            .src_id = patient,
            .msg_id = nonce,
            .received_at = m->received_ms,
            .effective_at = INT64_MIN,
            .resource = res,
            .extra = extra,
            .max_bytes = (size_t)ig->cfg->max_payload_bytes * 2 + 65536,
        };
        rc = ig_append(ig, &in, &seq, leaf, NULL, NULL);
    }
    if (rc == EG_OK)
        rc = eg_consent_apply(ig->st, patient, &d, seq, now);
    if (rc == EG_OK)
        rc = consent_log(ig, seq, patient, &d, d.grant ? d.grantee : prev.grantee, now);
    if (rc == EG_OK)
        rc = eg_signed_accept(ig->st, signer, sg.nonce);
    if (rc == EG_OK) {
        entry_id(ig, seq, eid);
        eg_hex_encode(leaf, 32, hex);
        if (!(reply = reply_new(op, "ok")) ||
            !cJSON_AddStringToObject(reply, "consent_id", d.consent_id) ||
            !cJSON_AddStringToObject(reply, "action", d.grant ? "grant" : "revoke") ||
            !cJSON_AddStringToObject(reply, "entry_id", eid) ||
            !cJSON_AddStringToObject(reply, "leaf_hash", hex))
            rc = EG_E_NOMEM;
    }
    rc = finish(ig, m, &mk, rc, replies, op, source, reply);
out:
    cJSON_Delete(res);
    cJSON_Delete(extra);
    free(directive);
    eg_signed_clear(&sg);
    return rc;
}

/* ---- patient requests (SPEC §9) ------------------------------------------- */

static eg_err parse_list_args(const cJSON *root, int64_t *since, uint64_t *limit,
                              struct eg_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "since");
    *since = INT64_MIN;
    *limit = LIST_DEFAULT;
    if (it && (!cJSON_IsString(it) || eg_time_parse(it->valuestring, since) != 0))
        return eg_fail(err, EG_E_SCHEMA, "since: must be an RFC 3339 time with offset");
    it = cJSON_GetObjectItemCaseSensitive(root, "limit");
    if (it && (!egjson_is_intlit(it) || egjson_get_u53(it, limit) != 0 || *limit < 1 ||
               *limit > LIST_MAX))
        return eg_fail(err, EG_E_SCHEMA, "limit: an integer 1..%d", LIST_MAX);
    return EG_OK;
}

static int add_event(cJSON *events, int64_t at, const char *event, const char *grantee,
                     const char *eid)
{
    char when[EG_TIME_STRLEN];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return 0;
    cJSON_AddItemToArray(events, o);
    eg_time_format(at, when);
    return cJSON_AddStringToObject(o, "at", when) && cJSON_AddStringToObject(o, "event", event) &&
           (grantee ? cJSON_AddStringToObject(o, "grantee", grantee) != NULL
                    : cJSON_AddNullToObject(o, "grantee") != NULL) &&
           cJSON_AddStringToObject(o, "entry_id", eid);
}

/* The forwards an access entry records: its grantee and entry ids. */
static eg_err access_events(struct eg_ingest *ig, uint64_t seq, int64_t at, cJSON *events,
                            uint64_t limit, int *more)
{
    char *bytes = NULL, grantee[72] = "";
    size_t len;
    cJSON *root = NULL;
    const cJSON *res, *it;
    struct eg_error e;
    eg_err rc = eg_entry_read(ig->st, ig->v, seq, &bytes, &len);
    /* a damaged access entry fails this request (answered `internal`), not
     * the batch */
    if (rc != EG_OK)
        return ig_is_storage_error(rc) ? rc : EG_E_INTERNAL;
    rc = egjson_parse((const uint8_t *)bytes, len, &root, &e);
    free(bytes);
    if (rc != EG_OK)
        return EG_E_INTERNAL;
    res = cJSON_GetObjectItemCaseSensitive(root, "resource");
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res, "agent"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(it, "who"), "identifier");
        const char *sys = egjson_str(id, "system"), *val = egjson_str(id, "value");
        if (sys && val && strcmp(sys, "urn:ehrgate:grantee") == 0)
            snprintf(grantee, sizeof grantee, "%s", val);
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res, "entity"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(it, "what"), "identifier");
        const char *sys = egjson_str(id, "system"), *val = egjson_str(id, "value");
        if (!sys || !val || strcmp(sys, "urn:ehrgate:entry") != 0)
            continue;
        if ((uint64_t)cJSON_GetArraySize(events) >= limit) {
            *more = 1;
            break;
        }
        if (!add_event(events, at, "forward", grantee, val)) {
            cJSON_Delete(root);
            return EG_E_NOMEM;
        }
    }
    cJSON_Delete(root);
    return EG_OK;
}

static eg_err op_audit(struct eg_ingest *ig, const char *patient, int64_t since, uint64_t limit,
                       cJSON *reply)
{
    cJSON *events = cJSON_AddArrayToObject(reply, "events");
    sqlite3_stmt *s =
        eg_store_stmt(ig->st, "SELECT seq, kind, received_at, NULL FROM entries WHERE patient = ?1"
                              " AND kind IN ('access', 'erasure') AND received_at >= ?2"
                              " UNION ALL SELECT seq, 'consent', at, grantee FROM consent_log"
                              " WHERE patient_id = ?1 AND at >= ?2 ORDER BY 1");
    int src, more = 0;
    eg_err rc = EG_OK;
    if (!events)
        return EG_E_NOMEM;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, since);
    while (rc == EG_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        const char *kind = (const char *)sqlite3_column_text(s, 1);
        int64_t at = sqlite3_column_int64(s, 2);
        char eid[96];
        if ((uint64_t)cJSON_GetArraySize(events) >= limit) {
            more = 1;
            break;
        }
        entry_id(ig, seq, eid);
        if (strcmp(kind, "access") == 0) {
            rc = access_events(ig, seq, at, events, limit, &more);
            if (more)
                break;
        } else if (strcmp(kind, "erasure") == 0) {
            if (!add_event(events, at, "erasure", NULL, eid))
                rc = EG_E_NOMEM;
        } else {
            if (!add_event(events, at, "consent", (const char *)sqlite3_column_text(s, 3), eid))
                rc = EG_E_NOMEM;
        }
    }
    sqlite3_reset(s);
    if (rc != EG_OK)
        return rc;
    if (!cJSON_AddBoolToObject(reply, "more", more))
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_records(struct eg_ingest *ig, const char *patient, int64_t since, uint64_t limit,
                         cJSON *reply)
{
    cJSON *records = cJSON_AddArrayToObject(reply, "records");
    sqlite3_stmt *s = eg_store_stmt(ig->st, "SELECT seq, block FROM entries WHERE patient = ?1"
                                            " AND kind IN ('observation', 'consent')"
                                            " AND received_at >= ?2 ORDER BY seq");
    int src, more = 0, erased = eg_patient_erased(ig->st, patient);
    eg_err rc = EG_OK;
    if (!records)
        return EG_E_NOMEM;
    if (!s || erased < 0)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, since);
    size_t total = 0;
    while (!erased && rc == EG_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        int has_block = sqlite3_column_type(s, 1) != SQLITE_NULL;
        int64_t block = sqlite3_column_int64(s, 1);
        char *bytes = NULL;
        size_t len;
        eg_err erc;
        cJSON *o;
        if ((uint64_t)cJSON_GetArraySize(records) >= limit ||
            (total && total >= (size_t)ig->cfg->reply_max_bytes)) {
            more = 1;
            break;
        }
        erc = eg_entry_read(ig->st, ig->v, seq, &bytes, &len);
        if (erc == EG_E_NOT_FOUND)
            continue;
        if (erc != EG_OK) {
            rc = ig_is_storage_error(erc) ? erc : EG_E_INTERNAL;
            break;
        }
        total += ig_json_cost(bytes, len);
        o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "entry", bytes) ||
            !(has_block ? cJSON_AddNumberToObject(o, "block", (double)block)
                        : cJSON_AddNullToObject(o, "block")))
            rc = EG_E_NOMEM;
        if (o)
            cJSON_AddItemToArray(records, o);
        eg_wipe(bytes, len);
        free(bytes);
    }
    sqlite3_reset(s);
    if (rc != EG_OK)
        return rc;
    if (!cJSON_AddBoolToObject(reply, "more", more))
        return EG_E_NOMEM;
    return EG_OK;
}

eg_err eg_req_patient(struct eg_ingest *ig, const struct eg_msg *m, const char *patient)
{
    static const char *const known[] = {"consents", "audit", "records", "erase", NULL};
    static const char *const list_members[] = {"op", "since", "limit", NULL};
    static const char *const plain_members[] = {"op", NULL};
    const char *op = peek_op(m, known, "request");
    char replies[256], source[96], signer[96];
    struct eg_error err = {0};
    struct eg_signed sg = {0};
    struct ig_mark mk;
    int64_t now = eg_now_ms(), since = INT64_MIN;
    uint64_t limit = LIST_DEFAULT;
    const char *o;
    cJSON *reply = NULL;
    eg_err rc;

    if (eg_topic_patient(replies, sizeof replies, ig->cfg->topic_prefix, patient, "replies") != 0)
        return EG_OK;
    snprintf(source, sizeof source, "patient:%s", patient);
    snprintf(signer, sizeof signer, "patient:%s", patient);
    if ((rc = patient_verify(ig, m, patient, op, replies, now, &sg)) != EG_OK)
        return rc == EG_E_INTERNAL ? EG_OK : rc;
    /* the operation is the verified request's, never the echo's guess */
    o = egjson_str(sg.root, "op");
    op = "request";
    for (int i = 0; o && known[i]; i++)
        if (strcmp(o, known[i]) == 0)
            op = known[i];
    if (!o) {
        eg_fail(&err, EG_E_SCHEMA, "op: required, a string");
    } else if (strcmp(op, "audit") == 0 || strcmp(op, "records") == 0) {
        if (check_members(sg.root, list_members, &err) == 0)
            parse_list_args(sg.root, &since, &limit, &err);
    } else if (strcmp(op, "consents") == 0 || strcmp(op, "erase") == 0) {
        check_members(sg.root, plain_members, &err);
    } else {
        eg_fail(&err, EG_E_UNSUPPORTED, "op: \"%.40s\" is not a patient request", o);
    }
    if (err.code != EG_OK) {
        /* refused: not accepted, so the nonce counter stays (SPEC §3) */
        eg_signed_clear(&sg);
        return req_reject(ig, m, replies, op, source, 1, &err);
    }
    if ((rc = savepoint(ig, &mk)) != EG_OK) {
        eg_signed_clear(&sg);
        return rc;
    }
    rc = eg_signed_accept(ig->st, signer, sg.nonce);
    if (rc == EG_OK && strcmp(op, "erase") == 0 && strcmp(ig->cfg->erase_mode, "admin") == 0) {
        /* recorded until an admin approve_erase (SPEC §9) */
        sqlite3_stmt *s = eg_store_stmt(ig->st, "INSERT INTO erase_requests(patient_id,"
                                                " requested_at) VALUES(?1, ?2)"
                                                " ON CONFLICT(patient_id) DO NOTHING");
        int src;
        if (!s) {
            rc = EG_E_DB;
        } else {
            sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, now);
            src = sqlite3_step(s);
            sqlite3_reset(s);
            rc = src == SQLITE_DONE ? EG_OK : eg_store_err(src);
        }
        if (rc == EG_OK && !(reply = reply_new(op, "pending")))
            rc = EG_E_NOMEM;
        if (rc == EG_OK)
            log_msg(EG_LOG_INFO, "patient %s: erasure requested, pending admin approval", patient);
    } else if (rc == EG_OK && strcmp(op, "erase") == 0) {
        int64_t n = 0;
        uint64_t seq = 0;
        rc = erase_patient(ig, patient, now, &n, &seq);
        if (rc == EG_OK &&
            (!(reply = reply_new(op, "ok")) ||
             egjson_add_taken(reply, "erased", egjson_create_u64(n < 0 ? 0 : (uint64_t)n)) != 0))
            rc = EG_E_NOMEM;
        if (rc == EG_OK && n >= 0) {
            char eid[96];
            entry_id(ig, seq, eid);
            if (!cJSON_AddStringToObject(reply, "entry_id", eid))
                rc = EG_E_NOMEM;
        }
    } else if (rc == EG_OK) {
        if (!(reply = reply_new(op, "ok")))
            rc = EG_E_NOMEM;
        else if (strcmp(op, "consents") == 0) {
            cJSON *list = NULL;
            rc = eg_consent_list(ig->st, patient, now, &list);
            if (rc == EG_OK && egjson_add_taken(reply, "consents", list) != 0)
                rc = EG_E_NOMEM;
        } else if (strcmp(op, "audit") == 0) {
            rc = op_audit(ig, patient, since, limit, reply);
        } else {
            rc = op_records(ig, patient, since, limit, reply);
        }
    }
    eg_signed_clear(&sg);
    return finish(ig, m, &mk, rc, replies, op, source, reply);
}

/* ---- admin requests (SPEC §10) --------------------------------------------- */

eg_err eg_req_admin(struct eg_ingest *ig, const struct eg_msg *m)
{
    static const char *const known[] = {
        "register_patient",  "set_patient_key",   "register_device", "rebind_device",
        "deregister_device", "register_hospital", "approve_erase",   NULL};
    const char *op = peek_op(m, known, "admin");
    char replies[256], signer[48], source[64], approve[65], route[512], *props = NULL;
    const char *pem = NULL;
    struct eg_error err = {0};
    struct eg_signed sg = {0};
    struct ig_mark mk;
    int64_t now = eg_now_ms();
    cJSON *reply = NULL;
    const char *status;
    eg_err rc;

    if (eg_topic_admin(replies, sizeof replies, ig->cfg->topic_prefix, "replies") != 0)
        return EG_OK;
    ig->stats.requests++;
    if (eg_api_route(m, replies, route, sizeof route, &props)) {
        free(props);
        eg_fail(&err, EG_E_FORBIDDEN, "response topic: must be %s or below it", replies);
        return req_reject(ig, m, replies, op, "admin", 0, &err);
    }
    free(props);
    if (too_large(ig, m, &err) || eg_admin_keys_match(ig->admin, m, signer, &pem, &err) != EG_OK)
        return req_reject(ig, m, replies, op, "admin", 0, &err);
    snprintf(source, sizeof source, "%s", signer);
    if ((rc = eg_signed_check(ig->st, m, signer, pem, now, &sg, &err)) != EG_OK)
        return ig_is_storage_error(rc)
                   ? rc
                   : req_reject(ig, m, replies, op, source, signature_ok(&err), &err);
    if ((rc = savepoint(ig, &mk)) != EG_OK) {
        eg_signed_clear(&sg);
        return rc;
    }
    rc = eg_admin_execute(ig->st, sg.root, now, &reply, approve);
    status = rc == EG_OK ? egjson_str(reply, "status") : NULL;
    if (rc == EG_OK && status && strcmp(status, "rejected") == 0) {
        /* refused: nothing changes, not even the nonce counter (SPEC §3:
         * only accepted messages advance it); quarantined like any rejected
         * request */
        const cJSON *eo = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const char *code = egjson_str(eo, "code"), *detail = egjson_str(eo, "detail");
        int evicted = 0;
        eg_signed_clear(&sg);
        if ((rc = undo(ig, &mk, EG_E_INTERNAL)) != EG_OK ||
            (rc = eg_quarantine_put(ig->st, ig->v, m, source, code ? code : "schema",
                                    detail ? detail : "", ig->cfg, &evicted)) != EG_OK) {
            cJSON_Delete(reply);
            return rc;
        }
        ig->stats.rejected++;
        log_msg(EG_LOG_INFO, "rejected %s %s: %s", source, op, code ? code : "?");
        return eg_api_reply(ig->st, m, replies, op, reply);
    }
    if (rc == EG_OK && status && strcmp(status, "ok") == 0)
        rc = eg_signed_accept(ig->st, signer, sg.nonce); /* not_found changes nothing */
    if (rc == EG_OK && approve[0]) {
        int64_t n = 0;
        uint64_t seq = 0;
        rc = erase_patient(ig, approve, now, &n, &seq);
        if (rc == EG_OK &&
            egjson_add_taken(reply, "erased", egjson_create_u64(n < 0 ? 0 : (uint64_t)n)) != 0)
            rc = EG_E_NOMEM;
    }
    eg_signed_clear(&sg);
    return finish(ig, m, &mk, rc, replies, op, source, reply);
}

eg_err eg_req_reject_internal(struct eg_ingest *ig, const struct eg_msg *m, const char *patient)
{
    char replies[256], source[96];
    struct eg_error err;
    int rc = patient[0]
                 ? eg_topic_patient(replies, sizeof replies, ig->cfg->topic_prefix, patient,
                                    "replies")
                 : eg_topic_admin(replies, sizeof replies, ig->cfg->topic_prefix, "replies");
    if (rc != 0)
        return EG_OK;
    snprintf(source, sizeof source, patient[0] ? "patient:%s" : "admin%s", patient);
    eg_fail(&err, EG_E_INTERNAL,
            "internal: the gateway could not process this request; it is kept in quarantine");
    return req_reject(ig, m, replies, strstr(m->topic, "/consent") ? "consent" : "request",
                      source, 1, &err);
}

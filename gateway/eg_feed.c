/*
 * eg_feed.c — forwarding to grantees (SPEC §8, §13): the consent decision
 * for each committed observation, inside its transaction; the feed message
 * (the entry bytes, unchanged, with the user property feed_seq) queued in
 * the outbox; the `access` entry that anchors each forward; and the
 * grantees' "since" catch-up request.
 *
 * Order inside one transaction: each accepted message appends its
 * observation entries and, per entry and grantee, asks eg_consent_permits()
 * against the consents table as it stands at that point of the transaction
 * (so a revocation processed earlier in the same transaction already
 * holds). A permitted entry gets the grantee's next feed_seq, a `feed` row
 * and an outbox row, and is remembered in ig->fwds. Before COMMIT,
 * eg_feed_access_entries() turns ig->fwds into one `access` entry per
 * (patient, grantee), listing the forwarded entry ids. A message rolled
 * back to its savepoint takes its forwards with it (ig_mark/ig_undo). So no
 * forward is ever published without its committed access entry, and none
 * is decided at publish time.
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
#include "eg_time.h"
#include "eg_topics.h"

#define SINCE_DEFAULT 100
#define SINCE_MAX 1000

eg_err eg_feed_load(struct eg_ingest *ig)
{
    sqlite3_stmt *s = eg_store_stmt(ig->st, "SELECT coalesce(max(feed_seq) + 1, 0) FROM feed"
                                            " WHERE grantee = ?1");
    if (!s)
        return EG_E_DB;
    for (int i = 0; i < ig->ngrantees; i++) {
        int rc;
        sqlite3_bind_text(s, 1, ig->grantees[i].name, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            ig->feed_next[i] = (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW)
            return eg_store_err(rc);
    }
    return EG_OK;
}

static eg_err remember(struct eg_ingest *ig, const char *patient, int g, uint64_t seq)
{
    if (ig->nfwd == ig->capfwd) {
        size_t ncap = ig->capfwd ? ig->capfwd * 2 : 64;
        struct fwd *nf = realloc(ig->fwds, ncap * sizeof *nf);
        if (!nf)
            return EG_E_NOMEM;
        ig->fwds = nf;
        ig->capfwd = ncap;
    }
    snprintf(ig->fwds[ig->nfwd].patient, sizeof ig->fwds[ig->nfwd].patient, "%s", patient);
    ig->fwds[ig->nfwd].grantee = g;
    ig->fwds[ig->nfwd].seq = seq;
    ig->nfwd++;
    return EG_OK;
}

eg_err eg_feed_decide(struct eg_ingest *ig, uint64_t seq, const struct eg_entry_in *in,
                      const char *bytes, size_t len)
{
    int64_t now = eg_now_ms(); /* the commit time: this transaction commits now */
    sqlite3_stmt *s;

    for (int g = 0; g < ig->ngrantees; g++) {
        char topic[256], props[96];
        uint64_t fs;
        int ok = eg_consent_permits(ig->st, in->patient, &ig->grantees[g], in->category, now,
                                    in->effective_at),
            rc;
        if (ok < 0)
            return EG_E_DB;
        if (!ok) {
            ig->stats.withheld++;
            continue;
        }
        fs = ig->feed_next[g];
        if (!(s = eg_store_stmt(ig->st, "INSERT INTO feed(grantee, feed_seq, seq)"
                                        " VALUES(?1, ?2, ?3)")))
            return EG_E_DB;
        sqlite3_bind_text(s, 1, ig->grantees[g].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)fs);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)seq);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return eg_store_err(rc);
        if (eg_topic_feed(topic, sizeof topic, ig->cfg->topic_prefix, ig->grantees[g].name, NULL) !=
            0)
            return EG_E_INTERNAL;
        snprintf(props, sizeof props, "{\"user\":[[\"feed_seq\",\"%llu\"]]}",
                 (unsigned long long)fs);
        if ((rc = eg_outbox_put_for(ig->st, in->patient, topic, bytes, len, 1, 0, props)) != EG_OK)
            return rc;
        if ((rc = remember(ig, in->patient, g, seq)) != EG_OK)
            return rc;
        ig->feed_next[g] = fs + 1;
        ig->stats.forwarded++;
    }
    return EG_OK;
}

/* ---- access entries ------------------------------------------------------ */

static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();
    if (c && (!cJSON_AddStringToObject(c, "system", system) ||
              !cJSON_AddStringToObject(c, "code", code) ||
              (display && !cJSON_AddStringToObject(c, "display", display)))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *ident_ref(const char *system, const char *value, const char *display)
{
    cJSON *r = cJSON_CreateObject(), *id;
    if (!r)
        return NULL;
    id = cJSON_AddObjectToObject(r, "identifier");
    if (!id || !cJSON_AddStringToObject(id, "system", system) ||
        !cJSON_AddStringToObject(id, "value", value) ||
        (display && !cJSON_AddStringToObject(r, "display", display))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/*
 * The FHIR R4 AuditEvent of one access entry: type DCM 110106 "Export",
 * action R, outcome 0, recorded (commit time), purposeOfEvent (the
 * grantee's configured purpose, system urn:ehrgate:purpose), agents: the
 * gateway (requestor: it pushes) and the grantee (v3-ParticipationType
 * IRCP, identifier urn:ehrgate:grantee), source.observer the gateway,
 * entities: the patient (audit-entity-type 1, object-role 1) and each
 * forwarded entry of f[0..n) (all of patient and grantee g) (audit-entity-type 2, identifier urn:ehrgate:entry with
 * the entry_id).
 */
static cJSON *audit_event(struct eg_ingest *ig, const char *patient, int g, const struct fwd *f,
                          size_t n, int64_t now)
{
    char when[EG_TIME_STRLEN], ref[96], eid[96];
    cJSON *a = cJSON_CreateObject(), *agents, *ag, *ents, *en, *po, *src;
    const char *name = ig->cfg->name;
    eg_time_format(now, when);
    snprintf(ref, sizeof ref, "Patient/%s", patient);
    if (!a || !cJSON_AddStringToObject(a, "resourceType", "AuditEvent") ||
        egjson_add_taken(
            a, "type",
            coding("http://dicom.nema.org/resources/ontology/DCM", "110106", "Export")) != 0 ||
        !cJSON_AddStringToObject(a, "action", "R") ||
        !cJSON_AddStringToObject(a, "recorded", when) ||
        !cJSON_AddStringToObject(a, "outcome", "0"))
        goto oom;
    if (!(po = cJSON_AddArrayToObject(a, "purposeOfEvent")))
        goto oom;
    {
        cJSON *cc = cJSON_CreateObject(), *arr;
        if (!cc)
            goto oom;
        cJSON_AddItemToArray(po, cc);
        if (!(arr = cJSON_AddArrayToObject(cc, "coding")))
            goto oom;
        cJSON *c1 = coding("urn:ehrgate:purpose", ig->grantees[g].purpose, NULL);
        if (!c1)
            goto oom;
        cJSON_AddItemToArray(arr, c1);
    }
    if (!(agents = cJSON_AddArrayToObject(a, "agent")))
        goto oom;
    if (!(ag = cJSON_CreateObject()))
        goto oom;
    cJSON_AddItemToArray(agents, ag);
    if (egjson_add_taken(ag, "who", ident_ref("urn:ehrgate:gateway", name, name)) != 0 ||
        !cJSON_AddBoolToObject(ag, "requestor", 1))
        goto oom;
    if (!(ag = cJSON_CreateObject()))
        goto oom;
    cJSON_AddItemToArray(agents, ag);
    {
        cJSON *t = cJSON_CreateObject(), *arr;
        if (!t || egjson_add_taken(ag, "type", t) != 0 ||
            !(arr = cJSON_AddArrayToObject(t, "coding")))
            goto oom;
        cJSON *c1 = coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP",
                           "information recipient");
        if (!c1)
            goto oom;
        cJSON_AddItemToArray(arr, c1);
    }
    if (egjson_add_taken(
            ag, "who",
            ident_ref("urn:ehrgate:grantee", ig->grantees[g].name, ig->grantees[g].name)) != 0 ||
        !cJSON_AddBoolToObject(ag, "requestor", 0))
        goto oom;
    if (!(src = cJSON_AddObjectToObject(a, "source")) ||
        egjson_add_taken(src, "observer", ident_ref("urn:ehrgate:gateway", name, name)) != 0)
        goto oom;
    if (!(ents = cJSON_AddArrayToObject(a, "entity")) || !(en = cJSON_CreateObject()))
        goto oom;
    cJSON_AddItemToArray(ents, en);
    {
        cJSON *w = cJSON_CreateObject();
        if (!w || egjson_add_taken(en, "what", w) != 0 ||
            !cJSON_AddStringToObject(w, "reference", ref) ||
            egjson_add_taken(en, "type",
                             coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1",
                                    "Person")) != 0 ||
            egjson_add_taken(
                en, "role",
                coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient")) != 0)
            goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(eid, sizeof eid, "%s-%llu", name, (unsigned long long)f[i].seq);
        if (!(en = cJSON_CreateObject()))
            goto oom;
        cJSON_AddItemToArray(ents, en);
        if (egjson_add_taken(en, "what", ident_ref("urn:ehrgate:entry", eid, NULL)) != 0 ||
            egjson_add_taken(en, "type",
                             coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2",
                                    "System Object")) != 0)
            goto oom;
    }
    return a;
oom:
    cJSON_Delete(a);
    return NULL;
}

static int fwd_cmp(const void *a, const void *b)
{
    const struct fwd *x = a, *y = b;
    int c;
    if (x->grantee != y->grantee)
        return x->grantee < y->grantee ? -1 : 1;
    if ((c = strcmp(x->patient, y->patient)) != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

eg_err eg_feed_access_entries(struct eg_ingest *ig)
{
    int64_t now = eg_now_ms();
    size_t n = ig->nfwd, i = 0;
    eg_err rc = EG_OK;

    /* one access entry per (patient, grantee): sorted once, so the cost is
     * n log n however many patients a batch touches */
    if (n > 1)
        qsort(ig->fwds, n, sizeof *ig->fwds, fwd_cmp);
    while (i < n && rc == EG_OK) {
        size_t j = i + 1;
        while (j < n && ig->fwds[j].grantee == ig->fwds[i].grantee &&
               strcmp(ig->fwds[j].patient, ig->fwds[i].patient) == 0)
            j++;
        cJSON *res = audit_event(ig, ig->fwds[i].patient, ig->fwds[i].grantee, ig->fwds + i,
                                 j - i, now);
        struct eg_entry_in in = {
            .kind = "access",
            .patient = ig->fwds[i].patient,
            .category = "access",
            .src_type = "gateway",
            .src_id = ig->cfg->name,
            .msg_id = NULL,
            .received_at = now,
            .effective_at = INT64_MIN,
            .resource = res,
        };
        uint64_t seq;
        uint8_t leaf[32];
        if (!res)
            return EG_E_NOMEM;
        rc = ig_append(ig, &in, &seq, leaf, NULL, NULL);
        cJSON_Delete(res);
        if (rc == EG_OK)
            ig->stats.access_entries++;
        i = j;
    }
    if (rc == EG_OK)
        ig->nfwd = 0;
    /* anything but storage would leave forwards without their record: the
     * transaction must not commit */
    return rc == EG_OK || ig_is_storage_error(rc) ? rc : EG_E_DB;
}

/* ---- "since" ------------------------------------------------------------ */

size_t ig_json_cost(const char *bytes, size_t len)
{
    size_t n = len + 48; /* quotes, the member name, feed_seq/block */
    for (size_t i = 0; i < len; i++)
        n += bytes[i] == '"' || bytes[i] == '\\' || (unsigned char)bytes[i] < 0x20 ? 5 : 0;
    return n;
}

static int grantee_index(const struct eg_ingest *ig, const char *name)
{
    for (int i = 0; i < ig->ngrantees; i++)
        if (strcmp(ig->grantees[i].name, name) == 0)
            return i;
    return -1;
}

eg_err eg_feed_request(struct eg_ingest *ig, const struct eg_msg *m, const char *grantee)
{
    char replies[256], detail[160];
    cJSON *root = NULL, *reply = NULL, *items;
    const cJSON *it;
    struct eg_error err = {0};
    uint64_t from = 0, limit = SINCE_DEFAULT;
    size_t total = 0;
    int more = 0;
    eg_err bad = EG_OK;
    const char *op = "since";
    sqlite3_stmt *s;
    int g, src;
    eg_err rc = EG_OK;

    if (eg_topic_feed(replies, sizeof replies, ig->cfg->topic_prefix, grantee, "replies") != 0)
        return EG_OK;
    ig->stats.requests++;
    if ((g = grantee_index(ig, grantee)) < 0) {
        /* SPEC §3/§13: naming something that does not exist is a status */
        cJSON *nf = cJSON_CreateObject();
        if (!nf || !cJSON_AddStringToObject(nf, "op", op) ||
            !cJSON_AddStringToObject(nf, "status", "not_found") ||
            !cJSON_AddStringToObject(nf, "grantee", grantee)) {
            cJSON_Delete(nf);
            return EG_E_NOMEM;
        }
        return eg_api_reply(ig->st, m, replies, op, nf);
    }
    if ((size_t)m->len > (size_t)ig->cfg->max_payload_bytes)
        return eg_api_reply(ig->st, m, replies, op,
                            eg_api_rejected(op, EG_E_TOO_LARGE, "payload: too large"));
    if (egjson_parse(m->payload, m->len, &root, &err) != EG_OK)
        return eg_api_reply(ig->st, m, replies, op, eg_api_rejected(op, err.code, err.detail));
    if (!cJSON_IsObject(root)) {
        eg_fail(&err, EG_E_SCHEMA, "request: must be a JSON object");
        goto refuse;
    }
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "op") != 0 && strcmp(it->string, "feed_seq") != 0 &&
            strcmp(it->string, "limit") != 0) {
            eg_fail(&err, EG_E_SCHEMA, "%.40s: unknown member", it->string);
            goto refuse;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, "since") != 0) {
        eg_fail(&err, cJSON_IsString(it) ? EG_E_UNSUPPORTED : EG_E_SCHEMA, "op: must be \"since\"");
        goto refuse;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "feed_seq");
    if (!it || !egjson_is_intlit(it) || egjson_get_u53(it, &from) != 0) {
        eg_fail(&err, EG_E_SCHEMA, "feed_seq: required, an integer 0..2^53-1");
        goto refuse;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "limit");
    if (it && (!egjson_is_intlit(it) || egjson_get_u53(it, &limit) != 0 || limit < 1 ||
               limit > SINCE_MAX)) {
        eg_fail(&err, EG_E_SCHEMA, "limit: an integer 1..%d", SINCE_MAX);
        goto refuse;
    }
    cJSON_Delete(root);
    root = NULL;

    if (!(reply = cJSON_CreateObject()) || !cJSON_AddStringToObject(reply, "op", op) ||
        !cJSON_AddStringToObject(reply, "status", "ok") ||
        !(items = cJSON_AddArrayToObject(reply, "items"))) {
        cJSON_Delete(reply);
        return EG_E_NOMEM;
    }
    if (!(s = eg_store_stmt(ig->st, "SELECT feed_seq, seq FROM feed WHERE grantee = ?1"
                                    " AND feed_seq >= ?2 ORDER BY feed_seq LIMIT ?3"))) {
        cJSON_Delete(reply);
        return EG_E_DB;
    }
    sqlite3_bind_text(s, 1, grantee, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)from);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
    {
        /* collect first: eg_entry_read uses its own statement */
        uint64_t(*rows)[2] = malloc((size_t)limit * sizeof *rows);
        size_t nr = 0;
        if (!rows) {
            sqlite3_reset(s);
            cJSON_Delete(reply);
            return EG_E_NOMEM;
        }
        while ((src = sqlite3_step(s)) == SQLITE_ROW && nr < limit) {
            rows[nr][0] = (uint64_t)sqlite3_column_int64(s, 0);
            rows[nr][1] = (uint64_t)sqlite3_column_int64(s, 1);
            nr++;
        }
        sqlite3_reset(s);
        if (src != SQLITE_DONE && src != SQLITE_ROW)
            rc = eg_store_err(src);
        for (size_t i = 0; i < nr && rc == EG_OK; i++) {
            char *bytes = NULL;
            size_t len;
            cJSON *o;
            eg_err erc;
            if (total && total >= (size_t)ig->cfg->reply_max_bytes) {
                more = 1;
                break;
            }
            o = cJSON_CreateObject();
            erc = eg_entry_read(ig->st, ig->v, rows[i][1], &bytes, &len);
            if (erc == EG_OK)
                total += ig_json_cost(bytes, len);
            if (!o || egjson_add_taken(o, "feed_seq", egjson_create_u64(rows[i][0])) != 0) {
                cJSON_Delete(o);
                o = NULL;
                rc = EG_E_NOMEM;
            } else if (erc == EG_OK) {
                if (!cJSON_AddStringToObject(o, "entry", bytes))
                    rc = EG_E_NOMEM;
            } else if (erc == EG_E_NOT_FOUND) {
                if (!cJSON_AddNullToObject(o, "entry")) /* erased */
                    rc = EG_E_NOMEM;
            } else if (ig_is_storage_error(erc)) {
                rc = erc;
            } else {
                bad = erc; /* a damaged entry: this request fails, not the batch */
            }
            if (bytes) {
                eg_wipe(bytes, len);
                free(bytes);
            }
            if (o)
                cJSON_AddItemToArray(items, o);
        }
        if (!more && nr && nr == limit && rows[nr - 1][0] + 1 < ig->feed_next[g])
            more = 1;
        free(rows);
    }
    if (rc == EG_OK && (egjson_add_taken(reply, "next_feed_seq",
                                         egjson_create_u64(ig->feed_next[g])) != 0 ||
                        !cJSON_AddBoolToObject(reply, "more", more)))
        rc = EG_E_NOMEM;
    if (rc != EG_OK) {
        cJSON_Delete(reply);
        return rc;
    }
    if (bad != EG_OK) {
        cJSON_Delete(reply);
        snprintf(detail, sizeof detail, "internal: a stored entry could not be read (%s)",
                 eg_strerror(bad));
        return eg_api_reply(ig->st, m, replies, op,
                            eg_api_rejected(op, EG_E_INTERNAL, detail));
    }
    log_msg(EG_LOG_INFO, "feed %s: since %llu answered", grantee, (unsigned long long)from);
    return eg_api_reply(ig->st, m, replies, op, reply);
refuse:
    cJSON_Delete(root);
    return eg_api_reply(ig->st, m, replies, op, eg_api_rejected(op, err.code, err.detail));
}

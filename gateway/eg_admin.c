/*
 * eg_admin.c — admin requests (SPEC §10, §13): the configured admin keys,
 * which of them signed a request, and the registry operations themselves.
 *
 * An operation is validated in two steps: first its members (names, types,
 * id syntax, timestamps, offsets) without touching the database, then the
 * registry changes inside a SAVEPOINT, rolled back when the registry refuses
 * (conflict, unknown_patient, ...). So a request answered `rejected` or
 * `not_found` changes nothing; only a storage failure is returned as an
 * error, and then the caller rolls back its whole transaction.
 *
 * The operations are a table (name, allowed members, handler) rather than a
 * strcmp chain. Unknown members are refused with `schema` naming them, as
 * for telemetry, so a misspelt optional field is never silently ignored.
 */
#include "eg_admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_api.h"
#include "eg_codec.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_registry.h"
#include "eg_telemetry.h"
#include "eg_time.h"

#define ADMIN_IDENTIFIERS_MAX 64

/* ---- keys ----------------------------------------------------------------- */

struct admin_key {
    struct eg_key *key;
    char pem[EG_PEM_PUB_MAX];
    char signer[48];
};

struct eg_admin_keys {
    int n;
    struct admin_key k[EG_CFG_LIST_MAX];
};

void eg_admin_keys_free(struct eg_admin_keys *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        eg_key_free(k->k[i].key);
    free(k);
}

eg_err eg_admin_keys_load(const struct eg_config *cfg, struct eg_admin_keys **out,
                          struct eg_error *e)
{
    struct eg_admin_keys *k = calloc(1, sizeof *k);
    eg_err rc = EG_OK;

    *out = NULL;
    if (!k)
        return eg_fail(e, EG_E_NOMEM, "admin keys: out of memory");
    for (int i = 0; i < cfg->admin_pubkey.n && i < EG_CFG_LIST_MAX; i++) {
        const char *path = cfg->admin_pubkey.v[i];
        struct admin_key *a = &k->k[k->n];
        struct eg_error sub = {EG_OK, ""};
        uint8_t fp[32];
        char hex[65];
        int dup = 0;

        if (eg_key_load_public(path, &a->key, &sub) != EG_OK) {
            /* sub.detail names the file ("PATH: reason") */
            rc = eg_fail(e, EG_E_KEY, "admin_pubkey %.200s", sub.detail);
            goto out;
        }
        if (eg_key_fingerprint(a->key, fp) != EG_OK ||
            eg_key_public_pem(a->key, a->pem, sizeof a->pem) != EG_OK) {
            eg_key_free(a->key);
            a->key = NULL;
            rc = eg_fail(e, EG_E_KEY, "admin_pubkey %.200s: unusable public key", path);
            goto out;
        }
        eg_hex_encode(fp, sizeof fp, hex);
        snprintf(a->signer, sizeof a->signer, "admin:%.16s", hex);
        /* the same key named twice is one signer */
        for (int j = 0; j < k->n; j++)
            if (strcmp(k->k[j].pem, a->pem) == 0)
                dup = 1;
        if (dup) {
            eg_key_free(a->key);
            memset(a, 0, sizeof *a);
            continue;
        }
        k->n++;
    }
    *out = k;
    k = NULL;
out:
    eg_admin_keys_free(k);
    return rc;
}

eg_err eg_admin_keys_match(const struct eg_admin_keys *k, const struct eg_msg *m, char signer[48],
                           const char **pem, struct eg_error *e)
{
    uint8_t digest[32];

    signer[0] = '\0';
    *pem = NULL;
    if (!m->sig)
        return eg_fail(e, EG_E_SIGNATURE, "sig: missing user property (signed request)");
    if (k && k->n > 0) {
        eg_topic_digest(m->topic, m->payload, m->len, digest);
        for (int i = 0; i < k->n; i++) {
            if (eg_key_verify_digest(k->k[i].key, digest, m->sig) == EG_OK) {
                snprintf(signer, 48, "%s", k->k[i].signer);
                *pem = k->k[i].pem;
                return EG_OK;
            }
        }
    }
    return eg_fail(e, EG_E_SIGNATURE, "sig: not made by a configured admin key");
}

/* ---- operations ------------------------------------------------------------ */

struct op_ctx {
    struct eg_store *st;
    const cJSON *req;
    const char *op;
    int64_t now_ms;
    cJSON *reply;        /* status "ok": built by the handler */
    struct eg_error err; /* EG_OK: ok; EG_E_NOT_FOUND: not_found; else rejected */
    char *approve;       /* approve_patient[65] */
    const char *nf_key;  /* not_found: the member that named nothing */
    const char *nf_val;
};

struct op_def {
    const char *name;
    const char *members[6]; /* besides op, nonce, issued; NULL-terminated */
    eg_err (*run)(struct op_ctx *c);
};

static int is_storage(eg_err rc)
{
    return rc == EG_E_DB || rc == EG_E_DB_FULL || rc == EG_E_NOMEM || rc == EG_E_IO;
}

/* Records a rejection (or not_found) with a formatted detail; returns EG_OK
 * (the request was answered). */
__attribute__((format(printf, 3, 4))) static eg_err refuse(struct op_ctx *c, eg_err code,
                                                           const char *fmt, ...)
{
    va_list ap;
    c->err.code = code;
    va_start(ap, fmt);
    vsnprintf(c->err.detail, sizeof c->err.detail, fmt, ap);
    va_end(ap);
    return EG_OK;
}

/* Records a not_found answer about member key = value. */
static eg_err not_found(struct op_ctx *c, const char *key, const char *value)
{
    c->nf_key = key;
    c->nf_val = value;
    return refuse(c, EG_E_NOT_FOUND, "%s: %.64s", key, value);
}

/* A registry result: storage errors are returned, refusals recorded. */
static eg_err registry_result(struct op_ctx *c, eg_err rc, const struct eg_error *e)
{
    if (rc == EG_OK)
        return EG_OK;
    if (is_storage(rc))
        return rc;
    return refuse(c, rc, "%s", e->detail[0] ? e->detail : eg_strerror(rc));
}

/* Builds {"op":..,"status":"ok"} into c->reply; NULL on OOM. */
static cJSON *ok_reply(struct op_ctx *c)
{
    c->reply = cJSON_CreateObject();
    if (!c->reply || !cJSON_AddStringToObject(c->reply, "op", c->op) ||
        !cJSON_AddStringToObject(c->reply, "status", "ok")) {
        cJSON_Delete(c->reply);
        c->reply = NULL;
    }
    return c->reply;
}

static eg_err add_str(cJSON *o, const char *key, const char *value)
{
    return cJSON_AddStringToObject(o, key, value) ? EG_OK : EG_E_NOMEM;
}

/* Member `key` as an SPEC §2 id: required, a string, 1-64 of the set.
 * Returns the id or NULL after recording the rejection. */
static const char *member_id(struct op_ctx *c, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c->req, key);
    if (!it) {
        refuse(c, EG_E_SCHEMA, "%s: missing", key);
        return NULL;
    }
    if (!cJSON_IsString(it) || !eg_id_valid(it->valuestring)) {
        refuse(c, EG_E_SCHEMA, "%s: must be 1-64 characters of A-Z a-z 0-9 . _ -", key);
        return NULL;
    }
    return it->valuestring;
}

/* Optional string member: 0 with *out (NULL if absent), -1 after recording a
 * rejection. */
static int member_opt_str(struct op_ctx *c, const char *key, const char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c->req, key);
    *out = NULL;
    if (!it)
        return 0;
    if (!cJSON_IsString(it)) {
        refuse(c, EG_E_SCHEMA, "%s: must be a string", key);
        return -1;
    }
    *out = it->valuestring;
    return 0;
}

/* Optional "pubkey": a string holding a P-256 SPKI PEM. */
static int member_pubkey(struct op_ctx *c, int required, const char **out)
{
    struct eg_key *k = NULL;
    struct eg_error sub = {EG_OK, ""};
    if (member_opt_str(c, "pubkey", out) != 0)
        return -1;
    if (!*out) {
        if (required) {
            refuse(c, EG_E_SCHEMA, "pubkey: missing");
            return -1;
        }
        return 0;
    }
    if (strlen(*out) >= EG_PUBKEY_PEM_MAX ||
        eg_key_parse_public(*out, strlen(*out) + 1, &k, &sub) != EG_OK) {
        refuse(c, EG_E_SCHEMA, "pubkey: not a P-256 public key (PEM SubjectPublicKeyInfo)");
        return -1;
    }
    eg_key_free(k);
    return 0;
}

/* Adds "key_fingerprint" (SHA-256 of the DER SPKI, hex) of a valid PEM. */
static eg_err add_fingerprint(cJSON *o, const char *pem)
{
    struct eg_key *k = NULL;
    struct eg_error sub = {EG_OK, ""};
    uint8_t fp[32];
    char hex[65];
    eg_err rc = eg_key_parse_public(pem, strlen(pem) + 1, &k, &sub);
    if (rc == EG_OK)
        rc = eg_key_fingerprint(k, fp);
    eg_key_free(k);
    if (rc != EG_OK)
        return rc == EG_E_NOMEM ? EG_E_NOMEM : EG_OK; /* validated before: cannot happen */
    eg_hex_encode(fp, sizeof fp, hex);
    return add_str(o, "key_fingerprint", hex);
}

static eg_err op_register_patient(struct op_ctx *c)
{
    const char *patient, *pubkey;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c->req, "identifiers"), *it;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;
    int n = 0;

    if (!(patient = member_id(c, "patient_id")) || member_pubkey(c, 0, &pubkey) != 0)
        return EG_OK;
    if (ids) {
        if (!cJSON_IsArray(ids))
            return refuse(c, EG_E_SCHEMA, "identifiers: must be an array");
        if (cJSON_GetArraySize(ids) > ADMIN_IDENTIFIERS_MAX)
            return refuse(c, EG_E_SCHEMA, "identifiers: at most %d", ADMIN_IDENTIFIERS_MAX);
        cJSON_ArrayForEach(it, ids)
        {
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(it, "hospital");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
            const cJSON *m;
            if (!cJSON_IsObject(it))
                return refuse(c, EG_E_SCHEMA, "identifiers[%d]: must be an object", n);
            cJSON_ArrayForEach(m, it)
            {
                if (strcmp(m->string, "hospital") != 0 && strcmp(m->string, "value") != 0)
                    return refuse(c, EG_E_SCHEMA, "identifiers[%d].%.40s: unknown member", n,
                                  m->string);
            }
            if (!cJSON_IsString(h) || !eg_id_valid(h->valuestring))
                return refuse(c, EG_E_SCHEMA,
                              "identifiers[%d].hospital: must be a hospital id (1-64 characters "
                              "of A-Z a-z 0-9 . _ -)",
                              n);
            if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 128)
                return refuse(c, EG_E_SCHEMA,
                              "identifiers[%d].value: must be a string of 1-128 characters", n);
            n++;
        }
    }

    rc = eg_registry_add_patient(c->st, patient, pubkey, &e);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    n = 0;
    cJSON_ArrayForEach(it, ids)
    {
        const char *h = egjson_str(it, "hospital"), *v = egjson_str(it, "value");
        rc = eg_registry_add_identifier(c->st, h, v, patient, &e);
        if (rc == EG_E_CONFLICT) /* the detail would name the value: say which item instead */
            return refuse(c, EG_E_CONFLICT,
                          "identifiers[%d]: this hospital identifier is already registered", n);
        if (rc != EG_OK)
            return registry_result(c, rc, &e);
        n++;
    }
    if (!ok_reply(c) || add_str(c->reply, "patient_id", patient) != EG_OK ||
        !cJSON_AddNumberToObject(c->reply, "identifiers", n) ||
        (pubkey && add_fingerprint(c->reply, pubkey) != EG_OK))
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_set_patient_key(struct op_ctx *c)
{
    const char *patient, *pubkey;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;

    if (!(patient = member_id(c, "patient_id")) || member_pubkey(c, 1, &pubkey) != 0)
        return EG_OK;
    rc = eg_registry_set_patient_key(c->st, patient, pubkey, &e);
    if (rc == EG_E_UNKNOWN_PATIENT)
        return not_found(c, "patient_id", patient);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    if (!ok_reply(c) || add_str(c->reply, "patient_id", patient) != EG_OK ||
        add_fingerprint(c->reply, pubkey) != EG_OK)
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_register_device(struct op_ctx *c)
{
    const char *device, *patient, *type, *pubkey;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;

    if (!(device = member_id(c, "device_id")) || !(patient = member_id(c, "patient_id")) ||
        member_opt_str(c, "type", &type) != 0 || member_pubkey(c, 0, &pubkey) != 0)
        return EG_OK;
    if (!type)
        return refuse(c, EG_E_SCHEMA, "type: missing");
    if (eg_device_type_parse(type) < 0)
        return refuse(c, EG_E_SCHEMA,
                      "type: \"%.40s\" is not one of pulse_oximeter, bp_monitor, thermometer, "
                      "glucometer, scale, monitor",
                      type);
    rc = eg_registry_add_device(c->st, device, patient, type, pubkey, &e);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    if (!ok_reply(c) || add_str(c->reply, "device_id", device) != EG_OK ||
        add_str(c->reply, "patient_id", patient) != EG_OK ||
        add_str(c->reply, "type", type) != EG_OK ||
        (pubkey && add_fingerprint(c->reply, pubkey) != EG_OK))
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_rebind_device(struct op_ctx *c)
{
    const char *device, *patient, *from;
    struct eg_device_rec d;
    struct eg_error e = {EG_OK, ""};
    char when[EG_TIME_STRLEN];
    int64_t from_ms;
    eg_err rc;

    if (!(device = member_id(c, "device_id")) || !(patient = member_id(c, "patient_id")) ||
        member_opt_str(c, "from", &from) != 0)
        return EG_OK;
    if (!from)
        return refuse(c, EG_E_SCHEMA, "from: missing");
    if (eg_time_parse(from, &from_ms) != 0)
        return refuse(c, EG_E_SCHEMA, "from: must be an RFC 3339 date-time with offset");
    /* a deregistered device is unknown here too */
    rc = eg_registry_device(c->st, device, &d);
    if (rc == EG_E_UNKNOWN_DEVICE)
        return not_found(c, "device_id", device);
    if (rc != EG_OK)
        return is_storage(rc) ? rc : EG_E_DB;
    rc = eg_registry_rebind(c->st, device, patient, from_ms, &e);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    eg_time_format(from_ms, when);
    if (!ok_reply(c) || add_str(c->reply, "device_id", device) != EG_OK ||
        add_str(c->reply, "patient_id", patient) != EG_OK ||
        add_str(c->reply, "from", when) != EG_OK)
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_deregister_device(struct op_ctx *c)
{
    const char *device;
    struct eg_error e = {EG_OK, ""};
    eg_err rc;

    if (!(device = member_id(c, "device_id")))
        return EG_OK;
    rc = eg_registry_deregister_device(c->st, device, &e);
    if (rc == EG_E_UNKNOWN_DEVICE)
        return not_found(c, "device_id", device);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    if (!ok_reply(c) || add_str(c->reply, "device_id", device) != EG_OK)
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_register_hospital(struct op_ctx *c)
{
    const char *hospital, *pubkey, *offset;
    struct eg_error e = {EG_OK, ""};
    int offset_min = 0;
    char norm[8];
    eg_err rc;

    if (!(hospital = member_id(c, "hospital_id")) || member_pubkey(c, 0, &pubkey) != 0 ||
        member_opt_str(c, "utc_offset", &offset) != 0)
        return EG_OK;
    if (offset && eg_utc_offset_parse(offset, &offset_min) != 0)
        return refuse(c, EG_E_SCHEMA, "utc_offset: must be +HH:MM or -HH:MM (at most 14:00)");
    rc = eg_registry_add_hospital(c->st, hospital, pubkey, offset_min, &e);
    if (rc != EG_OK)
        return registry_result(c, rc, &e);
    {
        int a = offset_min < 0 ? -offset_min : offset_min;
        snprintf(norm, sizeof norm, "%c%02d:%02d", offset_min < 0 ? '-' : '+', (a / 60) % 100,
                 a % 60);
    }
    if (!ok_reply(c) || add_str(c->reply, "hospital_id", hospital) != EG_OK ||
        add_str(c->reply, "utc_offset", norm) != EG_OK ||
        (pubkey && add_fingerprint(c->reply, pubkey) != EG_OK))
        return EG_E_NOMEM;
    return EG_OK;
}

static eg_err op_approve_erase(struct op_ctx *c)
{
    const char *patient;
    sqlite3_stmt *s;
    int64_t requested_at;
    char when[EG_TIME_STRLEN];
    int src;

    if (!(patient = member_id(c, "patient_id")))
        return EG_OK;
    s = eg_store_stmt(c->st, "SELECT requested_at FROM erase_requests WHERE patient_id = ?1");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    requested_at = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (src == SQLITE_DONE)
        return not_found(c, "patient_id", patient);
    if (src != SQLITE_ROW)
        return eg_store_err(src);
    s = eg_store_stmt(c->st, "DELETE FROM erase_requests WHERE patient_id = ?1");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return eg_store_err(src);
    snprintf(c->approve, 65, "%s", patient);
    eg_time_format(requested_at, when);
    if (!ok_reply(c) || add_str(c->reply, "patient_id", patient) != EG_OK ||
        add_str(c->reply, "requested_at", when) != EG_OK)
        return EG_E_NOMEM;
    return EG_OK;
}

static const struct op_def ops[] = {
    {"register_patient", {"patient_id", "pubkey", "identifiers", NULL}, op_register_patient},
    {"set_patient_key", {"patient_id", "pubkey", NULL}, op_set_patient_key},
    {"register_device", {"device_id", "patient_id", "type", "pubkey", NULL}, op_register_device},
    {"rebind_device", {"device_id", "patient_id", "from", NULL}, op_rebind_device},
    {"deregister_device", {"device_id", NULL}, op_deregister_device},
    {"register_hospital", {"hospital_id", "pubkey", "utc_offset", NULL}, op_register_hospital},
    {"approve_erase", {"patient_id", NULL}, op_approve_erase},
};
#define NOPS (sizeof ops / sizeof ops[0])

/* Every member of the request must be op, nonce, issued or one of def's. */
static int check_members(struct op_ctx *c, const struct op_def *def)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, c->req)
    {
        int known = strcmp(m->string, "op") == 0 || strcmp(m->string, "nonce") == 0 ||
                    strcmp(m->string, "issued") == 0;
        for (int i = 0; !known && def->members[i]; i++)
            known = strcmp(m->string, def->members[i]) == 0;
        if (!known) {
            refuse(c, EG_E_SCHEMA, "%.60s: unknown member for %s", m->string, def->name);
            return -1;
        }
    }
    return 0;
}

/* SAVEPOINT helpers: statements are cached like every other. */
static eg_err sp_exec(struct eg_store *st, const char *sql)
{
    sqlite3_stmt *s = eg_store_stmt(st, sql);
    int rc;
    if (!s)
        return EG_E_DB;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

static void sp_undo(struct eg_store *st)
{
    (void)sp_exec(st, "ROLLBACK TO eg_admin_op");
    (void)sp_exec(st, "RELEASE eg_admin_op");
}

/* The reply for a refusal: not_found (naming what was not found) or
 * rejected with {code, detail}. */
static cJSON *refusal_reply(const struct op_ctx *c)
{
    cJSON *r;
    if (c->err.code != EG_E_NOT_FOUND)
        return eg_api_rejected(c->op, c->err.code, c->err.detail);
    r = cJSON_CreateObject();
    if (!r || !cJSON_AddStringToObject(r, "op", c->op) ||
        !cJSON_AddStringToObject(r, "status", "not_found") ||
        !cJSON_AddStringToObject(r, c->nf_key, c->nf_val)) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

eg_err eg_admin_execute(struct eg_store *st, const cJSON *req, int64_t now_ms, cJSON **reply,
                        char approve_patient[65])
{
    struct op_ctx c;
    const struct op_def *def = NULL;
    const cJSON *op;
    eg_err rc = EG_OK;

    memset(&c, 0, sizeof c);
    c.st = st;
    c.req = req;
    c.now_ms = now_ms; /* the registry stamps its rows itself */
    c.approve = approve_patient;
    approve_patient[0] = '\0';
    *reply = NULL;

    op = cJSON_IsObject(req) ? cJSON_GetObjectItemCaseSensitive(req, "op") : NULL;
    if (!cJSON_IsObject(req)) {
        refuse(&c, EG_E_SCHEMA, "request: must be a JSON object");
    } else if (!op) {
        refuse(&c, EG_E_SCHEMA, "op: missing");
    } else if (!cJSON_IsString(op)) {
        refuse(&c, EG_E_SCHEMA, "op: must be a string");
    } else {
        c.op = op->valuestring;
        for (size_t i = 0; i < NOPS && !def; i++)
            if (strcmp(ops[i].name, c.op) == 0)
                def = &ops[i];
        if (!def)
            refuse(&c, EG_E_UNSUPPORTED, "op: \"%.40s\" is not an admin operation", c.op);
    }
    if (def && check_members(&c, def) == 0) {
        if ((rc = sp_exec(st, "SAVEPOINT eg_admin_op")) != EG_OK)
            return rc;
        rc = def->run(&c);
        if (rc != EG_OK || c.err.code != EG_OK) {
            sp_undo(st);
            approve_patient[0] = '\0';
        } else {
            rc = sp_exec(st, "RELEASE eg_admin_op");
            if (rc != EG_OK)
                sp_undo(st);
        }
        if (rc != EG_OK) {
            cJSON_Delete(c.reply);
            approve_patient[0] = '\0';
            return rc;
        }
    }
    if (c.err.code != EG_OK) {
        cJSON_Delete(c.reply);
        c.reply = refusal_reply(&c);
    }
    if (!c.reply) {
        approve_patient[0] = '\0';
        return EG_E_NOMEM;
    }
    *reply = c.reply;
    return EG_OK;
}

/*
 * eg_signed.c — the gate every signed JSON request passes (SPEC §3
 * "Signatures", "Replay"): signature over SHA-256(topic || 0x00 || payload),
 * strict JSON, "nonce" and "issued" syntax, the ±300 s window on `issued`
 * (instants, never strings) and the per-signer nonce counter in `signers`.
 *
 * The checks are read-only; the counter is advanced by eg_signed_accept()
 * inside the caller's transaction, together with whatever the request
 * changes, so a rolled-back request does not use up its nonce.
 *
 * Public keys are parsed per call rather than cached: parsing a P-256 SPKI
 * costs a small fraction of the ECDSA verification, and the API has no
 * handle that could own (and free) a cache without global state.
 */
#include "eg_signed.h"

#include <stdio.h>
#include <string.h>

#include "eg_json.h"
#include "eg_key.h"
#include "eg_time.h"

/* SPEC §3: base64 DER ECDSA P-256 over SHA-256(topic || 0x00 || payload). */
static eg_err check_signature(const struct eg_msg *m, const char *signer, const char *pem,
                              struct eg_error *e)
{
    struct eg_key *k = NULL;
    struct eg_error sub = {EG_OK, ""};
    uint8_t digest[32];
    eg_err rc;

    if (!pem || !pem[0])
        return eg_fail(e, EG_E_SIGNATURE, "sig: %.64s has no registered key", signer);
    if (!m->sig)
        return eg_fail(e, EG_E_SIGNATURE, "sig: missing user property (signed request)");
    if (eg_key_parse_public(pem, strlen(pem) + 1, &k, &sub) != EG_OK)
        return eg_fail(e, EG_E_SIGNATURE, "sig: the registered key of %.64s is unusable", signer);
    eg_topic_digest(m->topic, m->payload, m->len, digest);
    rc = eg_key_verify_digest(k, digest, m->sig);
    eg_key_free(k);
    if (rc != EG_OK)
        return eg_fail(e, EG_E_SIGNATURE,
                       "sig: does not verify over topic and payload with the key of %.64s", signer);
    return EG_OK;
}

eg_err eg_signed_check(struct eg_store *st, const struct eg_msg *m, const char *signer,
                       const char *pubkey_pem, int64_t now_ms, struct eg_signed *out,
                       struct eg_error *e)
{
    cJSON *root = NULL;
    const cJSON *item;
    const char *issued;
    uint64_t nonce = 0, last = 0;
    int64_t issued_ms = 0, skew;
    eg_err rc;
    int found;

    out->root = NULL;
    out->nonce = 0;
    out->issued_ms = 0;
    if (!m || !m->topic || !signer || !signer[0])
        return eg_fail(e, EG_E_USAGE, "eg_signed_check: missing argument");

    if ((rc = check_signature(m, signer, pubkey_pem, e)) != EG_OK)
        return rc;

    if ((rc = egjson_parse(m->payload, m->len, &root, e)) != EG_OK)
        return rc;
    if (!cJSON_IsObject(root)) {
        rc = eg_fail(e, EG_E_SCHEMA, "request: must be a JSON object");
        goto out;
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "nonce");
    if (!item) {
        rc = eg_fail(e, EG_E_SCHEMA, "nonce: missing");
        goto out;
    }
    if (egjson_get_u53(item, &nonce) != 0) {
        rc = eg_fail(e, EG_E_SCHEMA, "nonce: must be an integer 0..2^53-1");
        goto out;
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "issued");
    if (!item) {
        rc = eg_fail(e, EG_E_SCHEMA, "issued: missing");
        goto out;
    }
    issued = cJSON_IsString(item) ? item->valuestring : NULL;
    if (!issued || eg_time_parse(issued, &issued_ms) != 0) {
        rc = eg_fail(e, EG_E_SCHEMA, "issued: must be an RFC 3339 date-time with offset");
        goto out;
    }

    /* SPEC §2, §3: compared as instants; exactly ±300 s is still inside */
    skew = issued_ms - now_ms;
    if (skew > EG_ISSUED_SKEW_MS || skew < -EG_ISSUED_SKEW_MS) {
        char when[EG_TIME_STRLEN];
        eg_time_format(issued_ms, when);
        rc = eg_fail(e, EG_E_REPLAY,
                     "issued: %s is %lld s %s the gateway's clock (at most %d s allowed)", when,
                     (long long)((skew < 0 ? -skew : skew) / 1000),
                     skew < 0 ? "behind" : "ahead of", EG_ISSUED_SKEW_MS / 1000);
        goto out;
    }

    found = eg_signed_last(st, signer, &last);
    if (found < 0) {
        rc = eg_fail(e, EG_E_DB, "signers: cannot read the nonce counter of %.64s", signer);
        goto out;
    }
    if (found == 0 && nonce <= last) {
        rc = eg_fail(e, EG_E_REPLAY, "nonce: %llu is not greater than the last accepted nonce %llu",
                     (unsigned long long)nonce, (unsigned long long)last);
        goto out;
    }

    out->root = root;
    out->nonce = nonce;
    out->issued_ms = issued_ms;
    root = NULL;
    rc = EG_OK;
out:
    cJSON_Delete(root);
    return rc;
}

eg_err eg_signed_accept(struct eg_store *st, const char *signer, uint64_t nonce)
{
    /* max(): the counter only moves forward, whatever the caller passes */
    sqlite3_stmt *s = eg_store_stmt(st, "INSERT INTO signers(signer, last_nonce) VALUES(?1, ?2)"
                                        " ON CONFLICT(signer) DO UPDATE SET last_nonce ="
                                        " max(last_nonce, excluded.last_nonce)");
    int rc;

    if (!signer || !signer[0] || nonce > EG_U53_MAX)
        return EG_E_USAGE;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, signer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)nonce);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? EG_OK : eg_store_err(rc);
}

int eg_signed_last(struct eg_store *st, const char *signer, uint64_t *nonce)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT last_nonce FROM signers WHERE signer = ?1");
    int rc, found = -1;

    if (!s || !signer)
        return -1;
    sqlite3_bind_text(s, 1, signer, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(s, 0);
        *nonce = v < 0 ? 0 : (uint64_t)v;
        found = 0;
    } else if (rc == SQLITE_DONE) {
        found = 1;
    }
    sqlite3_reset(s);
    return found;
}

void eg_signed_clear(struct eg_signed *s)
{
    if (!s)
        return;
    cJSON_Delete(s->root);
    s->root = NULL;
}

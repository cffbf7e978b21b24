/*
 * eg_registry.c — registry tables (see eg_registry.h).
 */
#include "eg_registry.h"

#include <stdio.h>
#include <string.h>

#include "eg_key.h"
#include "eg_telemetry.h"
#include "eg_time.h"

static eg_err check_pubkey(const char *pem, struct eg_error *e)
{
    struct eg_key *k = NULL;
    eg_err rc;
    if (!pem)
        return EG_OK;
    if (strlen(pem) >= EG_PUBKEY_PEM_MAX)
        return eg_fail(e, EG_E_SCHEMA, "pubkey: PEM too long");
    rc = eg_key_parse_public(pem, strlen(pem) + 1, &k, e);
    eg_key_free(k);
    if (rc != EG_OK)
        return eg_fail(e, EG_E_SCHEMA, "pubkey: not a P-256 public key (PEM SubjectPublicKeyInfo)");
    return EG_OK;
}

static eg_err step_done(struct eg_store *st, sqlite3_stmt *s, struct eg_error *e, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return EG_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return eg_fail(e, EG_E_CONFLICT, "%s already registered", what);
    return eg_store_fail(st, e, rc, what);
}

eg_err eg_registry_patient_exists(struct eg_store *st, const char *patient_id)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT 1 FROM patients WHERE patient_id = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return EG_OK;
    return rc == SQLITE_DONE ? EG_E_UNKNOWN_PATIENT : eg_store_err(rc);
}

eg_err eg_registry_add_patient(struct eg_store *st, const char *patient_id, const char *pubkey,
                               struct eg_error *e)
{
    sqlite3_stmt *s;
    eg_err rc;
    char what[96];
    if (!eg_id_valid(patient_id))
        return eg_fail(e, EG_E_SCHEMA, "patient id \"%.64s\" must be 1-64 of A-Z a-z 0-9 . _ -",
                       patient_id);
    if ((rc = check_pubkey(pubkey, e)) != EG_OK)
        return rc;
    s = eg_store_stmt(st, "INSERT INTO patients(patient_id, pubkey, last_nonce, created_at)"
                          " VALUES(?1, ?2, NULL, ?3)");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, patient_id, -1, SQLITE_STATIC);
    if (pubkey)
        sqlite3_bind_text(s, 2, pubkey, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, eg_now_ms());
    snprintf(what, sizeof what, "patient %s", patient_id);
    return step_done(st, s, e, what);
}

eg_err eg_registry_add_identifier(struct eg_store *st, const char *hospital_id, const char *value,
                                  const char *patient_id, struct eg_error *e)
{
    sqlite3_stmt *s;
    char what[256];
    if (!eg_id_valid(hospital_id))
        return eg_fail(e, EG_E_SCHEMA, "hospital id \"%.64s\" is not a valid id", hospital_id);
    if (!*value || strlen(value) > 128)
        return eg_fail(e, EG_E_SCHEMA, "identifier value must be 1-128 characters");
    if (eg_registry_patient_exists(st, patient_id) != EG_OK)
        return eg_fail(e, EG_E_UNKNOWN_PATIENT, "patient %.64s is not registered", patient_id);
    s = eg_store_stmt(st, "INSERT INTO identifiers(hospital_id, value, patient_id)"
                          " VALUES(?1, ?2, ?3)");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, hospital_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, patient_id, -1, SQLITE_STATIC);
    snprintf(what, sizeof what, "identifier %.64s:%.128s", hospital_id, value);
    return step_done(st, s, e, what);
}

eg_err eg_registry_add_hospital(struct eg_store *st, const char *hospital_id, const char *pubkey,
                                int utc_offset_min, struct eg_error *e)
{
    sqlite3_stmt *s;
    eg_err rc;
    char what[96];
    if (!eg_id_valid(hospital_id))
        return eg_fail(e, EG_E_SCHEMA,
                       "hospital id \"%.64s\" must be 1-64 of A-Z a-z 0-9 . _ -", hospital_id);
    if ((rc = check_pubkey(pubkey, e)) != EG_OK)
        return rc;
    s = eg_store_stmt(st, "INSERT INTO hospitals(hospital_id, pubkey, utc_offset_min, created_at)"
                          " VALUES(?1, ?2, ?3, ?4)");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, hospital_id, -1, SQLITE_STATIC);
    if (pubkey)
        sqlite3_bind_text(s, 2, pubkey, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, utc_offset_min);
    sqlite3_bind_int64(s, 4, eg_now_ms());
    snprintf(what, sizeof what, "hospital %s", hospital_id);
    return step_done(st, s, e, what);
}

eg_err eg_registry_add_device(struct eg_store *st, const char *device_id, const char *patient_id,
                              const char *type, const char *pubkey, struct eg_error *e)
{
    sqlite3_stmt *s;
    eg_err rc;
    char what[96];
    if (!eg_id_valid(device_id))
        return eg_fail(e, EG_E_SCHEMA, "device id \"%.64s\" must be 1-64 of A-Z a-z 0-9 . _ -",
                       device_id);
    if (eg_device_type_parse(type) < 0)
        return eg_fail(e, EG_E_SCHEMA,
                       "type \"%.40s\" is not one of pulse_oximeter, bp_monitor, thermometer, "
                       "glucometer, scale, monitor",
                       type);
    if ((rc = check_pubkey(pubkey, e)) != EG_OK)
        return rc;
    if (eg_registry_patient_exists(st, patient_id) != EG_OK)
        return eg_fail(e, EG_E_UNKNOWN_PATIENT, "patient %.64s is not registered", patient_id);
    s = eg_store_stmt(st, "INSERT INTO devices(device_id, type, pubkey, active, created_at)"
                          " VALUES(?1, ?2, ?3, 1, ?4)");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
    if (pubkey)
        sqlite3_bind_text(s, 3, pubkey, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, eg_now_ms());
    snprintf(what, sizeof what, "device %s", device_id);
    if ((rc = step_done(st, s, e, what)) != EG_OK)
        return rc;
    return eg_registry_rebind(st, device_id, patient_id, INT64_MIN, e);
}

eg_err eg_registry_rebind(struct eg_store *st, const char *device_id, const char *patient_id,
                          int64_t from_ms, struct eg_error *e)
{
    sqlite3_stmt *s;
    char what[96];
    int rc;
    s = eg_store_stmt(st, "SELECT 1 FROM devices WHERE device_id = ?1");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return eg_fail(e, EG_E_UNKNOWN_DEVICE, "device %.64s is not registered", device_id);
    if (rc != SQLITE_ROW)
        return eg_store_fail(st, e, rc, "device lookup");
    if (eg_registry_patient_exists(st, patient_id) != EG_OK)
        return eg_fail(e, EG_E_UNKNOWN_PATIENT, "patient %.64s is not registered", patient_id);
    s = eg_store_stmt(st, "INSERT INTO bindings(device_id, from_ms, patient_id) VALUES(?1, ?2, ?3)"
                          " ON CONFLICT(device_id, from_ms) DO UPDATE SET"
                          " patient_id = excluded.patient_id");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, from_ms);
    sqlite3_bind_text(s, 3, patient_id, -1, SQLITE_STATIC);
    snprintf(what, sizeof what, "binding of %s", device_id);
    return step_done(st, s, e, what);
}

static void copy_col(sqlite3_stmt *s, int col, char *buf, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(buf, size, "%s", t ? (const char *)t : "");
}

eg_err eg_registry_device(struct eg_store *st, const char *device_id, struct eg_device_rec *out)
{
    sqlite3_stmt *s =
        eg_store_stmt(st, "SELECT type, pubkey, active FROM devices WHERE device_id = ?1");
    int rc;
    char type[32];
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_UNKNOWN_DEVICE : eg_store_err(rc);
    }
    snprintf(out->device_id, sizeof out->device_id, "%s", device_id);
    copy_col(s, 0, type, sizeof type);
    copy_col(s, 1, out->pubkey, sizeof out->pubkey);
    out->active = sqlite3_column_int(s, 2);
    out->type = eg_device_type_parse(type);
    sqlite3_reset(s);
    if (!out->active)
        return EG_E_UNKNOWN_DEVICE;
    return EG_OK;
}

eg_err eg_registry_hospital(struct eg_store *st, const char *hospital_id,
                            struct eg_hospital_rec *out)
{
    sqlite3_stmt *s = eg_store_stmt(
        st, "SELECT pubkey, utc_offset_min FROM hospitals WHERE hospital_id = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, hospital_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_UNKNOWN_HOSPITAL : eg_store_err(rc);
    }
    snprintf(out->hospital_id, sizeof out->hospital_id, "%s", hospital_id);
    copy_col(s, 0, out->pubkey, sizeof out->pubkey);
    out->utc_offset_min = sqlite3_column_int(s, 1);
    sqlite3_reset(s);
    return EG_OK;
}

eg_err eg_registry_binding_at(struct eg_store *st, const char *device_id, int64_t ts_ms,
                              char patient[EG_ID_MAX])
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT patient_id FROM bindings WHERE device_id = ?1"
                                        " AND from_ms <= ?2 ORDER BY from_ms DESC LIMIT 1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, ts_ms);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_BINDING : eg_store_err(rc);
    }
    copy_col(s, 0, patient, EG_ID_MAX);
    sqlite3_reset(s);
    return EG_OK;
}

eg_err eg_registry_identifier(struct eg_store *st, const char *hospital_id, const char *value,
                              char patient[EG_ID_MAX])
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT patient_id FROM identifiers"
                                        " WHERE hospital_id = ?1 AND value = ?2");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, hospital_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_UNKNOWN_PATIENT : eg_store_err(rc);
    }
    copy_col(s, 0, patient, EG_ID_MAX);
    sqlite3_reset(s);
    return EG_OK;
}

/* ---- admin changes (SPEC §10) -------------------------------------------- */

eg_err eg_registry_patient_key(struct eg_store *st, const char *patient_id,
                               char pem[EG_PUBKEY_PEM_MAX])
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT pubkey FROM patients WHERE patient_id = ?1");
    int rc;
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? EG_E_UNKNOWN_PATIENT : eg_store_err(rc);
    }
    copy_col(s, 0, pem, EG_PUBKEY_PEM_MAX);
    sqlite3_reset(s);
    return EG_OK;
}

eg_err eg_registry_set_patient_key(struct eg_store *st, const char *patient_id, const char *pubkey,
                                   struct eg_error *e)
{
    sqlite3_stmt *s;
    eg_err rc;
    int src;
    if (!pubkey)
        return eg_fail(e, EG_E_SCHEMA, "pubkey: missing");
    if ((rc = check_pubkey(pubkey, e)) != EG_OK)
        return rc;
    s = eg_store_stmt(st, "UPDATE patients SET pubkey = ?2 WHERE patient_id = ?1");
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, patient_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, pubkey, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return eg_store_fail(st, e, src, "patient key update");
    if (sqlite3_changes(eg_store_db(st)) == 0)
        return eg_fail(e, EG_E_UNKNOWN_PATIENT, "patient %.64s is not registered", patient_id);
    return EG_OK;
}

eg_err eg_registry_deregister_device(struct eg_store *st, const char *device_id, struct eg_error *e)
{
    sqlite3_stmt *s =
        eg_store_stmt(st, "UPDATE devices SET active = 0 WHERE device_id = ?1 AND active = 1");
    int src;
    if (!s)
        return eg_fail(e, EG_E_DB, "prepare failed");
    sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return eg_store_fail(st, e, src, "device deregistration");
    if (sqlite3_changes(eg_store_db(st)) == 0)
        return eg_fail(e, EG_E_UNKNOWN_DEVICE, "device %.64s is not registered", device_id);
    return EG_OK;
}

int eg_utc_offset_parse(const char *s, int *minutes)
{
    int h, m;
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return -1;
    if (s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' || s[4] < '0' || s[4] > '9' ||
        s[5] < '0' || s[5] > '9')
        return -1;
    h = (s[1] - '0') * 10 + (s[2] - '0');
    m = (s[4] - '0') * 10 + (s[5] - '0');
    if (h > 14 || m > 59)
        return -1;
    *minutes = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
    return 0;
}

/*
 * eg_registry.h — patients, their hospital identifiers, hospitals, devices
 * and device bindings (with history), stored in the database.
 *
 * The gateway reads the registry inside its transactions, so a change made
 * by ehrctl (or the admin API) is seen by the next transaction (SPEC §10:
 * within 2 s).
 */
#ifndef EG_REGISTRY_H
#define EG_REGISTRY_H

#include <stdint.h>

#include "eg_err.h"
#include "eg_store.h"

#define EG_ID_MAX 65
#define EG_PUBKEY_PEM_MAX 512

struct eg_device_rec {
    char device_id[EG_ID_MAX];
    int type; /* enum eg_device_type */
    int active;
    char pubkey[EG_PUBKEY_PEM_MAX]; /* "" if none */
};

struct eg_hospital_rec {
    char hospital_id[EG_ID_MAX];
    int utc_offset_min;
    char pubkey[EG_PUBKEY_PEM_MAX];
};

/* Registration. Ids must follow SPEC §2 and PEM keys must be P-256 SPKI
 * (EG_E_SCHEMA otherwise); an existing id -> EG_E_CONFLICT; a device's or
 * identifier's patient must be registered (EG_E_UNKNOWN_PATIENT). */
eg_err eg_registry_add_patient(struct eg_store *st, const char *patient_id, const char *pubkey,
                               struct eg_error *e);
eg_err eg_registry_add_identifier(struct eg_store *st, const char *hospital_id, const char *value,
                                  const char *patient_id, struct eg_error *e);
eg_err eg_registry_add_hospital(struct eg_store *st, const char *hospital_id, const char *pubkey,
                                int utc_offset_min, struct eg_error *e);
/* Registers a device bound to patient_id from the beginning of time. */
eg_err eg_registry_add_device(struct eg_store *st, const char *device_id, const char *patient_id,
                              const char *type, const char *pubkey, struct eg_error *e);
/* Starts a new binding of device_id to patient_id at from_ms. */
eg_err eg_registry_rebind(struct eg_store *st, const char *device_id, const char *patient_id,
                          int64_t from_ms, struct eg_error *e);

/* Lookups. EG_E_UNKNOWN_DEVICE / EG_E_UNKNOWN_HOSPITAL when missing (or a
 * deregistered device), EG_E_DB on a database error. */
eg_err eg_registry_device(struct eg_store *st, const char *device_id, struct eg_device_rec *out);
eg_err eg_registry_hospital(struct eg_store *st, const char *hospital_id,
                            struct eg_hospital_rec *out);
/* The patient device_id was bound to at ts_ms; EG_E_BINDING if none. */
eg_err eg_registry_binding_at(struct eg_store *st, const char *device_id, int64_t ts_ms,
                              char patient[EG_ID_MAX]);
/* The patient mapped to (hospital_id, value); EG_E_UNKNOWN_PATIENT if none. */
eg_err eg_registry_identifier(struct eg_store *st, const char *hospital_id, const char *value,
                              char patient[EG_ID_MAX]);
/* EG_OK if the patient is registered, EG_E_UNKNOWN_PATIENT if not. */
eg_err eg_registry_patient_exists(struct eg_store *st, const char *patient_id);

/* Admin changes (SPEC §10). */
/* The patient's registered public key (PEM) into pem ("" if none).
 * EG_E_UNKNOWN_PATIENT if not registered, EG_E_DB on a database error. */
eg_err eg_registry_patient_key(struct eg_store *st, const char *patient_id,
                               char pem[EG_PUBKEY_PEM_MAX]);
/* Replaces the patient's public key (pubkey must be P-256 SPKI PEM, else
 * EG_E_SCHEMA); EG_E_UNKNOWN_PATIENT if not registered. */
eg_err eg_registry_set_patient_key(struct eg_store *st, const char *patient_id, const char *pubkey,
                                   struct eg_error *e);
/* Marks an active device as deregistered (active = 0): from then on
 * eg_registry_device() answers EG_E_UNKNOWN_DEVICE; its binding history is
 * kept. EG_E_UNKNOWN_DEVICE if it is not registered or already
 * deregistered. */
eg_err eg_registry_deregister_device(struct eg_store *st, const char *device_id,
                                     struct eg_error *e);

/* Parses "+HH:MM"/"-HH:MM" into minutes; -1 on error. */
int eg_utc_offset_parse(const char *s, int *minutes);

#endif

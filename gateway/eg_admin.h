/*
 * eg_admin.h — admin requests (SPEC §10, §13), signed by an admin key
 * listed in the config (--admin-pubkey), on {p}/admin/request; replies on
 * {p}/admin/replies.
 */
#ifndef EG_ADMIN_H
#define EG_ADMIN_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eg_config.h"
#include "eg_err.h"
#include "eg_queue.h"
#include "eg_store.h"

struct eg_admin_keys;

/* Loads every cfg->admin_pubkey file (PEM SPKI, P-256). EG_E_KEY naming the
 * file if one is unusable. Zero keys is allowed (then every admin request is
 * rejected `signature`). */
eg_err eg_admin_keys_load(const struct eg_config *cfg, struct eg_admin_keys **out,
                          struct eg_error *e);
void eg_admin_keys_free(struct eg_admin_keys *k);

/* Finds the configured admin key whose signature m carries. On success
 * writes the signer name "admin:<first 16 hex of the key fingerprint>" and
 * the key's PEM (static storage owned by k) for eg_signed_check.
 * EG_E_SIGNATURE ("sig: not made by a configured admin key") otherwise. */
eg_err eg_admin_keys_match(const struct eg_admin_keys *k, const struct eg_msg *m,
                           char signer[48], const char **pem, struct eg_error *e);

/* Executes one verified admin request inside the caller's transaction and
 * builds its reply ({"op":..,"status":"ok"|"not_found"|"rejected",...}).
 * Ops: register_patient {patient_id, pubkey?, identifiers?: [{hospital,
 * value}]}, set_patient_key {patient_id, pubkey}, register_device
 * {device_id, patient_id, type, pubkey?}, rebind_device {device_id,
 * patient_id, from}, deregister_device {device_id}, register_hospital
 * {hospital_id, pubkey?, utc_offset?}, approve_erase {patient_id}.
 * not_found: rebind_device/deregister_device of an unknown device,
 * set_patient_key of an unknown patient, approve_erase with nothing
 * pending. For approve_erase with a pending request, the erasure itself is
 * the caller's (it needs the vault and the chain): *approve_patient is set
 * to the patient id and the pending row is deleted; otherwise it is "".
 * Returns a storage error (the transaction must roll back), else EG_OK
 * with *reply set (validation failures are replies with status
 * "rejected", code schema/conflict/unknown_patient..., never errors). */
eg_err eg_admin_execute(struct eg_store *st, const cJSON *req, int64_t now_ms, cJSON **reply,
                        char approve_patient[65]);

#endif

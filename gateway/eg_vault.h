/*
 * eg_vault.h — the gateway's keys: the P-256 signing key, the master key
 * and what is derived from it, and the per-patient data keys.
 *
 * Key hierarchy (docs/security.md):
 *   master key (32 bytes, file of 64 hex chars, mode 0600)
 *     HMAC(master, "ehrgate/v1/wrap")       wraps per-patient data keys
 *     HMAC(master, "ehrgate/v1/audit")      encrypts access/erasure entries
 *     HMAC(master, "ehrgate/v1/quarantine") encrypts quarantined payloads
 *     HMAC(master, "ehrgate/v1/outbox")     seals outbox payloads (feeds, replies)
 *     HMAC(master, "ehrgate/v1/fingerprint") is recorded in the database
 *   patient data key (32 random bytes) encrypts observation/consent entries;
 *     stored wrapped (AES-256-GCM, AAD = "dk|" patient id); destroying it
 *     erases the patient (crypto-shredding).
 * Keys are created only together with a new database (SPEC §12); later the
 * files must match the fingerprints recorded in the meta table.
 */
#ifndef EG_VAULT_H
#define EG_VAULT_H

#include <stdint.h>

#include "eg_crypto.h"
#include "eg_err.h"
#include "eg_key.h"
#include "eg_store.h"

struct eg_vault;

/* Gateway start: loads the signing key and master key, creating both (and
 * recording their fingerprints and paths) if the database has none yet.
 * A missing file, a key that does not match the database, a master key
 * file that is group/other-readable or malformed -> EG_E_KEY with a detail
 * naming the file. The caller exits 2 on EG_E_KEY. */
eg_err eg_vault_open_gateway(struct eg_store *st, const char *key_path,
                             const char *master_path, struct eg_rng *rng, struct eg_vault **out,
                             struct eg_error *e);

/* ehrctl: loads the master key only, from master_path or, when NULL, the
 * path recorded in the database; checks it against the recorded
 * fingerprint. */
eg_err eg_vault_open_master(struct eg_store *st, const char *master_path, struct eg_rng *rng,
                            struct eg_vault **out, struct eg_error *e);

void eg_vault_free(struct eg_vault *v);

/* Reads a master key file (64 hex chars + optional newline, mode 0600). */
eg_err eg_master_key_read(const char *path, uint8_t key[32], struct eg_error *e);

/* The signing key (NULL for a master-only vault). */
const struct eg_key *eg_vault_signing_key(const struct eg_vault *v);
struct eg_rng *eg_vault_rng(const struct eg_vault *v);
const uint8_t *eg_vault_audit_key(const struct eg_vault *v);
const uint8_t *eg_vault_quarantine_key(const struct eg_vault *v);
const uint8_t *eg_vault_outbox_key(const struct eg_vault *v);

/* The data key of patient. With create, a missing key is generated and
 * inserted (inside the caller's transaction). EG_E_NOT_FOUND if the patient
 * has no key (and !create) or was erased. */
eg_err eg_vault_patient_key(struct eg_vault *v, struct eg_store *st, const char *patient,
                            int create, uint8_t key[32]);

/* Forgets cached data keys: call after a ROLLBACK or an erasure. */
void eg_vault_cache_clear(struct eg_vault *v);

#endif

/*
 * eg_entries.h — entries (SPEC §6): their exact bytes, leaf hashes and
 * encrypted storage.
 *
 * Entry bytes are one line of compact JSON with keys in the order
 * v, seq, entry_id, kind, patient, category, source, received_at, salt,
 * resource (then kind-specific keys). They are built once, hashed once
 * (leaf = SHA-256(0x00 || bytes)) and stored as AES-256-GCM ciphertext with
 * AAD "e|{seq}|{patient}", so a ciphertext cannot move to another row.
 */
#ifndef EG_ENTRIES_H
#define EG_ENTRIES_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_store.h"
#include "eg_vault.h"

struct eg_entry_in {
    const char *kind;     /* observation | consent | access | erasure */
    const char *patient;
    const char *category;
    const char *src_type; /* device | hospital | patient | gateway */
    const char *src_id;
    const char *msg_id;   /* NULL -> JSON null */
    int64_t received_at;
    int64_t effective_at; /* for consent decisions; INT64_MIN if none */
    const cJSON *resource; /* borrowed; NULL -> JSON null */
    const cJSON *extra;    /* borrowed object whose members follow resource, or NULL */
    size_t max_bytes;      /* entry bytes above this -> EG_E_TOO_LARGE; 0 = no limit */
};

/* Builds the entry bytes for seq (malloc'ed, *len set) using a fresh salt
 * from rng. NULL on OOM. */
char *eg_entry_bytes(const char *gw_name, uint64_t seq, const struct eg_entry_in *in,
                     struct eg_rng *rng, size_t *len);

/* Builds, hashes, encrypts and inserts entry seq (inside the caller's
 * transaction). leaf receives the leaf hash. */
eg_err eg_entry_append(struct eg_store *st, struct eg_vault *v, const char *gw_name, uint64_t seq,
                       const struct eg_entry_in *in, uint8_t leaf[32]);

/* The same; on success, when bytes_out is not NULL, also hands over the
 * entry bytes (malloc'ed, not NUL-terminated, *len_out set): for feeds. */
eg_err eg_entry_append_ex(struct eg_store *st, struct eg_vault *v, const char *gw_name,
                          uint64_t seq, const struct eg_entry_in *in, uint8_t leaf[32],
                          char **bytes_out, size_t *len_out);

/* Next unused seq (max(seq)+1, or 0). */
eg_err eg_entry_next_seq(struct eg_store *st, uint64_t *next);

/* Leaf hash of a stored entry. EG_E_NOT_FOUND if no such seq. */
eg_err eg_entry_leaf(struct eg_store *st, uint64_t seq, uint8_t leaf[32]);

/* Decrypts entry seq into a malloc'ed buffer (*len set, NUL-terminated).
 * EG_E_NOT_FOUND if there is no such entry or its patient was erased,
 * EG_E_CRYPTO if the ciphertext does not authenticate. */
eg_err eg_entry_read(struct eg_store *st, struct eg_vault *v, uint64_t seq, char **bytes,
                     size_t *len);

#endif

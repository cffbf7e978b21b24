/*
 * eg_block.h — the 125-byte block header of SPEC §11, its hash, signature
 * and JSON form.
 */
#ifndef EG_BLOCK_H
#define EG_BLOCK_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_key.h"

#define EG_BLOCK_HEADER_LEN 125

struct eg_block {
    uint8_t version; /* 1 */
    uint8_t gateway_id[32];
    uint64_t height;
    uint8_t prev_hash[32];
    uint8_t merkle_root[32];
    uint64_t first_seq;
    uint32_t count;
    uint64_t sealed_at; /* ms since the Unix epoch */
    uint8_t hash[32];   /* SHA-256(header) */
    char sig[EG_SIG_B64_MAX];
};

/* Big-endian header bytes, field order of SPEC §11. */
void eg_block_encode(const struct eg_block *b, uint8_t out[EG_BLOCK_HEADER_LEN]);
/* Computes b->hash from the header fields. */
void eg_block_hash(struct eg_block *b);
/* Computes hash and signs it with key into b->sig. */
eg_err eg_block_sign(struct eg_block *b, const struct eg_key *key, struct eg_rng *rng);
/* Checks b->hash against the fields and b->sig against key. EG_OK,
 * EG_E_SIGNATURE (bad sig) or EG_E_CONFLICT (hash does not match fields). */
eg_err eg_block_verify(const struct eg_block *b, const struct eg_key *key);

/* JSON object with the SPEC §11 keys in order: version, gateway_id, height,
 * prev_hash, merkle_root, first_seq, count, sealed_at, hash, sig. */
cJSON *eg_block_to_json(const struct eg_block *b);
/* Parses that object (strict: all keys, lowercase hex of the right length,
 * integer literals). EG_OK or EG_E_SCHEMA with detail. */
eg_err eg_block_from_json(const cJSON *obj, struct eg_block *b, struct eg_error *e);

#endif

/*
 * eg_chain.h — the chain of blocks over the entries (SPEC §11).
 *
 * Every committed entry joins the open block. The pipeline seals it inside
 * its transaction when it holds block_max_entries entries or
 * block_interval_ms has passed since its first entry, and on shutdown: the
 * RFC 6962 root over the block's leaf hashes in seq order, the link to the
 * previous block's hash, the P-256 signature, the block row and the
 * entries' assignment all commit together. So across restarts and SIGKILL
 * there is never a block sealed twice, a seq gap or a fork.
 */
#ifndef EG_CHAIN_H
#define EG_CHAIN_H

#include <stdint.h>

#include "eg_block.h"
#include "eg_err.h"
#include "eg_store.h"
#include "eg_vault.h"

struct eg_chain;

/* Loads the last block and the open (unsealed) entries. EG_E_DB or
 * EG_E_CONFLICT (detail) if the stored chain is inconsistent. */
eg_err eg_chain_open(struct eg_store *st, struct eg_vault *v, struct eg_chain **out,
                     struct eg_error *e);
void eg_chain_free(struct eg_chain *c);

/* Adds a just-appended entry to the open block (inside the transaction). */
eg_err eg_chain_add(struct eg_chain *c, uint64_t seq, const uint8_t leaf[32]);

/* Number of entries in the open block. */
uint64_t eg_chain_open_count(const struct eg_chain *c);
/* 1 if the open block must be sealed now. */
int eg_chain_due(const struct eg_chain *c, int64_t max_entries, int64_t interval_ms);

/* Seals the first min(count, open) entries of the open block into the next
 * block (inside the caller's transaction); *out receives it. */
eg_err eg_chain_seal(struct eg_chain *c, uint64_t count, struct eg_block *out);
/* Seals every full block of max_entries in the open one (for tools that
 * publish nothing: ehrgate-fill, the bench's setup). */
eg_err eg_chain_seal_full(struct eg_chain *c, uint64_t max_entries);

/* Forgets open-block entries with seq >= seq (after a ROLLBACK TO a
 * savepoint taken before they were added). */
eg_err eg_chain_abort_to(struct eg_chain *c, uint64_t seq);

/* After COMMIT / after ROLLBACK (reloads from the database). */
void eg_chain_committed(struct eg_chain *c);
eg_err eg_chain_abort(struct eg_chain *c);

/* Reads block height from the database. EG_E_NOT_FOUND if absent. */
eg_err eg_block_load(struct eg_store *st, uint64_t height, const uint8_t gateway_id[32],
                     struct eg_block *b);
/* The leaf hashes of seqs [first, first+count) into a malloc'ed array.
 * EG_E_CONFLICT if one is missing. */
eg_err eg_leaves_load(struct eg_store *st, uint64_t first, uint64_t count, uint8_t (**leaves)[32]);

#endif

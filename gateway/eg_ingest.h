/*
 * eg_ingest.h — what happens to one incoming message inside the pipeline's
 * transaction: dedup (SPEC §7), validation and normalization (SPEC §4),
 * entries (SPEC §6), quarantine of rejections, and the receipt.
 *
 * Receipts are buffered per receipts topic and written to the outbox by
 * eg_ingest_flush() in the same transaction, one message per topic per
 * transaction (SPEC §7 allows batching). Nothing here publishes.
 */
#ifndef EG_INGEST_H
#define EG_INGEST_H

#include <stdint.h>

#include "eg_config.h"
#include "eg_err.h"
#include "eg_queue.h"
#include "eg_store.h"
#include "eg_vault.h"

struct eg_ingest_stats {
    uint64_t msgs, accepted, rejected, duplicates, entries, quarantine_evicted;
    uint64_t forwarded, withheld, access_entries, requests, rate_limited;
};

struct eg_ingest;

struct eg_chain;

/* chain may be NULL (then entries join no block; used by tools and tests). */
eg_err eg_ingest_new(struct eg_store *st, struct eg_vault *v, const struct eg_config *cfg,
                     struct eg_chain *chain, struct eg_ingest **out, struct eg_error *e);
void eg_ingest_free(struct eg_ingest *ig);

/* Processes one message inside the open transaction. Returns EG_OK (the
 * message was accepted or rejected with a receipt), or a storage error
 * (EG_E_DB, EG_E_DB_FULL, EG_E_NOMEM): then the transaction must be rolled
 * back and eg_ingest_abort() called. */
eg_err eg_ingest_process(struct eg_ingest *ig, const struct eg_msg *m);

/* Answers m `internal` (receipt and quarantine row) without processing it:
 * for a message that fails every time (inside the caller's transaction). */
eg_err eg_ingest_reject_internal(struct eg_ingest *ig, const struct eg_msg *m);

/* Writes the buffered receipts to the outbox (inside the transaction). */
eg_err eg_ingest_flush(struct eg_ingest *ig);
/* After COMMIT: the batch is final. */
void eg_ingest_committed(struct eg_ingest *ig);
/* After ROLLBACK: restores seq, drops buffered receipts and cached keys. */
void eg_ingest_abort(struct eg_ingest *ig);

void eg_ingest_get_stats(const struct eg_ingest *ig, struct eg_ingest_stats *out);
uint64_t eg_ingest_next_seq(const struct eg_ingest *ig);

#endif

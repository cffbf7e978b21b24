/*
 * eg_quarantine.h — rejected payloads, kept encrypted (SPEC §7, §13).
 *
 * Every rejected payload is stored with its topic, time, code and detail,
 * encrypted under the quarantine key (AAD "q|{topic}|{received_at}"), so
 * nothing is silently lost. A quota per source keeps the newest rows (the
 * oldest of that source go first, counted in the log); a retention period
 * deletes old rows. `ehrctl quarantine replay ID` marks a row and the
 * running gateway processes it again within 2 s.
 */
#ifndef EG_QUARANTINE_H
#define EG_QUARANTINE_H

#include <stdint.h>

#include "eg_config.h"
#include "eg_err.h"
#include "eg_queue.h"
#include "eg_store.h"
#include "eg_vault.h"

/* Stores m's payload (inside the caller's transaction). source is e.g.
 * "device:D1". A payload larger than cfg->max_payload_bytes is kept
 * truncated to that size (its real size is recorded). Then at most
 * cfg->quarantine_quota rows are kept for source and at most
 * cfg->quarantine_max_bytes in all, the oldest going first. If
 * m->quarantine_id > 0 the existing row is updated instead. *evicted counts
 * rows dropped. */
eg_err eg_quarantine_put(struct eg_store *st, struct eg_vault *v, const struct eg_msg *m,
                         const char *source, const char *code, const char *detail,
                         const struct eg_config *cfg, int *evicted);

/* A replayed row was answered this time (outcome: "accepted",
 * "duplicate", ...): clear its replay mark and record the outcome. */
eg_err eg_quarantine_done(struct eg_store *st, int64_t id, const char *outcome);

/* ehrctl: marks row id for replay. EG_E_NOT_FOUND if absent. */
eg_err eg_quarantine_request_replay(struct eg_store *st, int64_t id);

/* Loads the rows marked for replay as messages (decrypted; received_ms =
 * now, quarantine_id = row id), at most max. Returns the list or NULL. */
struct eg_msg *eg_quarantine_due(struct eg_store *st, struct eg_vault *v, int max);

/* Decrypts one row's payload (malloc'ed). EG_E_NOT_FOUND if absent. */
eg_err eg_quarantine_payload(struct eg_store *st, struct eg_vault *v, int64_t id,
                             uint8_t **payload, size_t *len);

/* Deletes rows received before cutoff_ms. *n receives the count. */
eg_err eg_quarantine_expire(struct eg_store *st, int64_t cutoff_ms, int *n);

#endif

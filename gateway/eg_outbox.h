/*
 * eg_outbox.h — the transactional outbox (SPEC §1).
 *
 * Everything the gateway publishes is first written to the outbox table in
 * the transaction that commits the data it speaks about; the publisher
 * (eg_publisher.c) drains it after COMMIT and the pipeline deletes rows
 * once the broker has acknowledged them. So a receipt or feed message
 * exists only for committed data, and none is lost across a crash.
 */
#ifndef EG_OUTBOX_H
#define EG_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_store.h"

struct eg_outbox_row {
    int64_t id;
    char *topic;
    uint8_t *payload;
    size_t len;
    int qos;
    int retain;
    char *props; /* JSON: {"user":[[name,value],...],"corr":"hex"} or NULL */
};

/* Queues a message (inside the caller's transaction). */
eg_err eg_outbox_put(struct eg_store *st, const char *topic, const void *payload, size_t len,
                     int qos, int retain, const char *props);

/* The same, tagged with the patient whose data the payload carries (feed
 * messages), so an erasure can withdraw it before it is published. */
eg_err eg_outbox_put_for(struct eg_store *st, const char *patient, const char *topic,
                         const void *payload, size_t len, int qos, int retain, const char *props);

/* Withdraws what is still queued for patient (inside the caller's
 * transaction): rows tagged with it and rows on its replies topic (equal or
 * below). *purged counts them. Rows the publisher already handed to the
 * broker cannot be recalled. */
eg_err eg_outbox_purge_patient(struct eg_store *st, const char *patient, const char *replies,
                               int *purged);

/* Reads up to max rows with id > after_id, oldest first, into rows (owned by
 * the caller: eg_outbox_row_clear each). Returns the count or -1 on error. */
int eg_outbox_fetch(struct eg_store *st, int64_t after_id, int max, struct eg_outbox_row *rows);
void eg_outbox_row_clear(struct eg_outbox_row *row);

/* Deletes acknowledged rows (inside the caller's transaction). */
eg_err eg_outbox_delete(struct eg_store *st, const int64_t *ids, size_t n);

/* Highest row id ever used (0 if none). -1 on error. */
int64_t eg_outbox_max_id(struct eg_store *st);

/* Number of rows waiting. -1 on error. */
int64_t eg_outbox_pending(struct eg_store *st);

#endif

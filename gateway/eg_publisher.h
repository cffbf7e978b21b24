/*
 * eg_publisher.h — drains the outbox to the broker (SPEC §1).
 *
 * Its own thread and its own read-only SQLite connection. It publishes rows
 * in id order with at most `outbox_inflight` awaiting acknowledgement,
 * starts again from the oldest unacknowledged row after every reconnect or
 * failed send, and hands acknowledged row ids to the pipeline, which
 * deletes them in its next transaction (one writer).
 */
#ifndef EG_PUBLISHER_H
#define EG_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_mqtt.h"

struct eg_publisher;

eg_err eg_publisher_start(const char *db_path, const uint8_t outbox_key[32], struct eg_mqtt *mqtt,
                          int max_inflight, struct eg_publisher **out, struct eg_error *e);
/* Wakes the publisher: new rows were committed. */
void eg_publisher_notify(struct eg_publisher *p);
/* Moves up to max acknowledged ids into ids; returns the count. */
size_t eg_publisher_take_acked(struct eg_publisher *p, int64_t *ids, size_t max);
/* Waits until every row with id <= upto_id was answered by the broker (or
 * timeout). 0 if drained, -1 on timeout. */
int eg_publisher_drain(struct eg_publisher *p, int64_t upto_id, int timeout_ms);
/* Stops the thread (idempotent). Sends still in flight keep a pointer to
 * p: free it only after the MQTT client is destroyed. NULL is a no-op. */
void eg_publisher_stop(struct eg_publisher *p);
/* Stops if needed and frees. NULL is a no-op. */
void eg_publisher_free(struct eg_publisher *p);
/* Messages acknowledged by the broker since start. */
uint64_t eg_publisher_sent(struct eg_publisher *p);

#endif

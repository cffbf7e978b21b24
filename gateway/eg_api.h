/*
 * eg_api.h — request/reply APIs answered through the outbox (SPEC §3
 * "Replies", §11 auditor requests).
 *
 * Every request family has a replies topic. A request may name an MQTT v5
 * Response Topic only inside it (equal to it or below it); the reply then
 * goes there with the request's Correlation Data. Any other Response Topic
 * is answered `forbidden` on the family's replies topic. Every reply is a
 * JSON object with "op" (echoing the request) and "status".
 */
#ifndef EG_API_H
#define EG_API_H

#include <cjson/cJSON.h>

#include "eg_config.h"
#include "eg_err.h"
#include "eg_queue.h"
#include "eg_store.h"

/* Where a reply to m goes: *topic (buffer of size) and props JSON for the
 * outbox (malloc'ed or NULL). Returns 1 if m's Response Topic lies outside
 * family_replies (the reply must then be `forbidden`), 0 otherwise. */
int eg_api_route(const struct eg_msg *m, const char *family_replies, char *topic, size_t size,
                 char **props);

/* Queues reply (consumed) for m in the outbox, following eg_api_route. If
 * the Response Topic was outside the family, a `forbidden` reply with op
 * replaces it. */
eg_err eg_api_reply(struct eg_store *st, const struct eg_msg *m, const char *family_replies,
                    const char *op, cJSON *reply);

/* A reply {"op":op,"status":"rejected","error":{"code","detail"}}. */
cJSON *eg_api_rejected(const char *op, eg_err code, const char *detail);

/* Handles one request on {p}/anchor/{name}/request: "proof" by entry_id or
 * leaf_hash, and "block" by height (SPEC §11). Storage errors are returned
 * (the transaction must roll back); everything else is answered. */
eg_err eg_api_anchor(struct eg_store *st, const struct eg_config *cfg, const struct eg_msg *m);

#endif

/*
 * eg_mqtt.h — the gateway's MQTT v5 link over Paho's async client.
 *
 * Clean Start 0 with a session expiry, so the broker queues for the gateway
 * while it restarts (SPEC §1); QoS 1 subscriptions, renewed on every
 * (re)connect; a retained `offline` will. Reconnects are driven by
 * eg_mqtt_tick() with exponential backoff. The message callback only copies
 * the message into the intake queue (STYLE §5) and returns 1.
 */
#ifndef EG_MQTT_H
#define EG_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_queue.h"
#include "eg_topics.h"

#define EG_MQTT_MAX_FILTERS 256

struct eg_mqtt_opts {
    const char *uri; /* mqtt://host:port or mqtts://host:port */
    const char *client_id;
    const char *cafile, *cert, *keyfile;
    int64_t session_expiry_s;
    const char *will_topic;
    const char *will_payload;
    char filters[EG_MQTT_MAX_FILTERS][EG_TOPIC_FILTER_MAX];
    int nfilters;
    void *ctx;
    void (*on_ready)(void *ctx); /* connected and subscribed (Paho thread) */
    void (*on_lost)(void *ctx);  /* connection lost (Paho thread) */
};

struct eg_mqtt;

eg_err eg_mqtt_new(const struct eg_mqtt_opts *opts, struct eg_queue *q, struct eg_mqtt **out,
                   struct eg_error *e);
void eg_mqtt_free(struct eg_mqtt *m);

/* Starts a connection attempt when disconnected and the backoff allows.
 * Call every few hundred ms from one thread. */
void eg_mqtt_tick(struct eg_mqtt *m);

/* 1 when connected and subscribed. */
int eg_mqtt_ready(struct eg_mqtt *m);
/* Connection generation: changes at every (re)connect. */
uint64_t eg_mqtt_generation(struct eg_mqtt *m);

/* Outcome of a publish, passed to done(). */
enum { EG_MQTT_FAILED = 0, EG_MQTT_ACKED = 1, EG_MQTT_REFUSED = 2 };

/* Sends a message. props is the outbox's JSON
 * ({"user":[[name,value],...],"resp":"topic","corr":"hex"}) or NULL.
 * done(ctx, outcome) is called once from a Paho thread: EG_MQTT_ACKED when
 * the broker acknowledged it (for QoS 0: when it was written),
 * EG_MQTT_REFUSED when its PUBACK carried a failure reason code (final),
 * EG_MQTT_FAILED when the send failed (retry). Returns 0 if queued (done will be called), -1 if not. */
int eg_mqtt_publish(struct eg_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                    int retain, const char *props, void (*done)(void *ctx, int outcome),
                    void *ctx);

/* Stops taking messages: arriving ones are not queued (they are not
 * receipted, so publishers resend them). */
void eg_mqtt_close_intake(struct eg_mqtt *m);

/* Clean disconnect (the will is not published). */
void eg_mqtt_disconnect(struct eg_mqtt *m, int timeout_ms);

/* Messages dropped because intake was closed or memory ran out. */
uint64_t eg_mqtt_dropped(struct eg_mqtt *m);

#endif

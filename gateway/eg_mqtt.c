/*
 * eg_mqtt.c — Paho async MQTT v5 link (see eg_mqtt.h).
 *
 * Threads: Paho calls our callbacks from its own threads. on_message blocks
 * in eg_queue_push() when the intake queue is full. While it waits, the
 * socket is not read and TCP flow control holds the broker back —
 * back-pressure without unbounded memory and without returning 0 from the
 * callback. Paho's own sends (MQTTAsync_sendMessage from the publisher
 * thread, keepalive pings) also wait meanwhile, so the invariant that keeps
 * this deadlock-free is: the pipeline thread, which is what frees queue
 * space, never calls Paho and never waits for the publisher.
 */
#include "eg_mqtt.h"

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_codec.h"
#include "eg_json.h"
#include "eg_log.h"
#include "eg_time.h"

enum { ST_DOWN, ST_CONNECTING, ST_SUBSCRIBING, ST_READY };

struct eg_mqtt {
    MQTTAsync client;
    struct eg_mqtt_opts o;
    struct eg_queue *q;
    atomic_int state;
    atomic_int intake_open;
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t dropped;
    int64_t next_attempt_ms;
    int backoff_ms;
    uint64_t jitter; /* xorshift state: each client its own retry schedule */
    MQTTProperties connect_props;
    MQTTProperties will_props;
};

struct send_ctx {
    void (*done)(void *, int);
    void *ctx;
};

/* ---- inbound ------------------------------------------------------------ */

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
    struct eg_mqtt *m = context;
    const char *sig = NULL, *resp = NULL;
    const void *corr = NULL;
    size_t sig_len = 0, resp_len = 0, corr_len = 0;
    int64_t feed_seq = -1;
    struct eg_msg *em;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);

    for (int i = 0; i < msg->properties.count; i++) {
        MQTTProperty *p = &msg->properties.array[i];
        if (p->identifier == MQTTPROPERTY_CODE_USER_PROPERTY && p->value.data.len == 3 &&
            memcmp(p->value.data.data, "sig", 3) == 0 && !sig) {
            sig = p->value.value.data;
            sig_len = (size_t)p->value.value.len;
        } else if (p->identifier == MQTTPROPERTY_CODE_USER_PROPERTY && p->value.data.len == 8 &&
                   memcmp(p->value.data.data, "feed_seq", 8) == 0 && p->value.value.len > 0 &&
                   p->value.value.len < 20) {
            char num[24];
            memcpy(num, p->value.value.data, (size_t)p->value.value.len);
            num[p->value.value.len] = 0;
            feed_seq = strtoll(num, NULL, 10);
        } else if (p->identifier == MQTTPROPERTY_CODE_RESPONSE_TOPIC) {
            resp = p->value.data.data;
            resp_len = (size_t)p->value.data.len;
        } else if (p->identifier == MQTTPROPERTY_CODE_CORRELATION_DATA) {
            corr = p->value.data.data;
            corr_len = (size_t)p->value.data.len;
        }
    }
    em = atomic_load(&m->intake_open)
             ? eg_msg_new(topic, tl, msg->payload, (size_t)msg->payloadlen, sig, sig_len, resp,
                          resp_len, corr, corr_len)
             : NULL;
    if (em) {
        em->received_ms = eg_now_ms();
        em->received_us = eg_mono_us();
        em->feed_seq = feed_seq;
        if (eg_queue_push(m->q, em) != 0)
            atomic_fetch_add(&m->dropped, 1);
    } else {
        atomic_fetch_add(&m->dropped, 1);
    }
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    return 1;
}

static void on_lost(void *context, char *cause)
{
    struct eg_mqtt *m = context;
    log_msg(EG_LOG_WARN, "broker connection lost%s%s", cause ? ": " : "", cause ? cause : "");
    atomic_store(&m->state, ST_DOWN);
    if (m->o.on_lost)
        m->o.on_lost(m->o.ctx);
}

/* ---- connect / subscribe ----------------------------------------------- */

static void on_subscribed(void *context, MQTTAsync_successData5 *r)
{
    struct eg_mqtt *m = context;
    /* Paho fills alt.sub only for more than one filter (else it is garbage) */
    for (int i = 0; r && m->o.nfilters > 1 && r->alt.sub.reasonCodes &&
                    i < r->alt.sub.reasonCodeCount; i++) {
        if (r->alt.sub.reasonCodes[i] >= 0x80) {
            log_msg(EG_LOG_ERROR, "broker refused subscription %d (reason 0x%02x); retrying", i,
                    r->alt.sub.reasonCodes[i]);
            MQTTAsync_disconnect(m->client, NULL);
            atomic_store(&m->state, ST_DOWN);
            return;
        }
    }
    if (r && r->reasonCode >= 0x80) {
        log_msg(EG_LOG_ERROR, "broker refused subscription (reason 0x%02x); retrying",
                r->reasonCode);
        MQTTAsync_disconnect(m->client, NULL);
        atomic_store(&m->state, ST_DOWN);
        return;
    }
    atomic_fetch_add(&m->generation, 1);
    atomic_store(&m->state, ST_READY);
    m->backoff_ms = 0;
    log_msg(EG_LOG_INFO, "subscribed to %d topic filter(s); ready", m->o.nfilters);
    if (m->o.on_ready)
        m->o.on_ready(m->o.ctx);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData5 *r)
{
    struct eg_mqtt *m = context;
    log_msg(EG_LOG_ERROR, "subscribe failed (%d); reconnecting", r ? r->code : -1);
    MQTTAsync_disconnect(m->client, NULL);
    atomic_store(&m->state, ST_DOWN);
}

static void on_connected(void *context, MQTTAsync_successData5 *r)
{
    struct eg_mqtt *m = context;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    char *filters[EG_MQTT_MAX_FILTERS];
    int qos[EG_MQTT_MAX_FILTERS];
    MQTTSubscribe_options so[EG_MQTT_MAX_FILTERS];
    int rc;

    log_msg(EG_LOG_INFO, "connected to %s (session %s)", m->o.uri,
            r && r->alt.connect.sessionPresent ? "resumed" : "new");
    atomic_store(&m->state, ST_SUBSCRIBING);
    if (m->o.nfilters == 0) { /* a publisher only (the bench's load links) */
        on_subscribed(m, NULL);
        return;
    }
    for (int i = 0; i < m->o.nfilters; i++) {
        MQTTSubscribe_options init = MQTTSubscribe_options_initializer;
        filters[i] = m->o.filters[i];
        qos[i] = 1;
        /* retained messages are not input: a retained telemetry or request
         * would otherwise be processed again at every (re)subscription */
        so[i] = init;
        so[i].retainHandling = 2;
    }
    ro.subscribeOptionsList = so;
    ro.subscribeOptionsCount = m->o.nfilters;
    ro.onSuccess5 = on_subscribed;
    ro.onFailure5 = on_subscribe_failed;
    ro.context = m;
    rc = MQTTAsync_subscribeMany(m->client, m->o.nfilters, filters, qos, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        log_msg(EG_LOG_ERROR, "subscribe request failed (%d)", rc);
        atomic_store(&m->state, ST_DOWN);
    }
}

static void on_connect_failed(void *context, MQTTAsync_failureData5 *r)
{
    struct eg_mqtt *m = context;
    log_msg(EG_LOG_WARN, "cannot connect to %s: %s (retry in %d ms)", m->o.uri,
            r && r->message ? r->message : "connection refused", m->backoff_ms);
    atomic_store(&m->state, ST_DOWN);
}

void eg_mqtt_tick(struct eg_mqtt *m)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    int64_t now = eg_mono_ms();
    int rc;

    if (atomic_load(&m->state) != ST_DOWN || now < m->next_attempt_ms)
        return;
    /* exponential backoff 0.5 s .. 30 s with jitter */
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : 500;
    if (m->backoff_ms > 30000)
        m->backoff_ms = 30000;
    m->jitter ^= m->jitter << 13;
    m->jitter ^= m->jitter >> 7;
    m->jitter ^= m->jitter << 17;
    m->next_attempt_ms = now + m->backoff_ms + (int64_t)(m->jitter % (uint64_t)(m->backoff_ms / 4 + 1));

    co.keepAliveInterval = 20;
    co.cleanstart = 0;
    co.connectProperties = &m->connect_props;
    co.onSuccess5 = on_connected;
    co.onFailure5 = on_connect_failed;
    co.context = m;
    co.connectTimeout = 10;
    co.maxInflight = 65535;
    if (m->o.will_topic) {
        will.topicName = m->o.will_topic;
        will.message = m->o.will_payload;
        will.qos = 1;
        will.retained = 1;
        co.will = &will;
        co.willProperties = &m->will_props;
    }
    if (strncmp(m->o.uri, "mqtts://", 8) == 0) {
        ssl.trustStore = m->o.cafile;
        ssl.keyStore = m->o.cert;
        ssl.privateKey = m->o.keyfile;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        co.ssl = &ssl;
    }
    atomic_store(&m->state, ST_CONNECTING);
    log_msg(EG_LOG_DEBUG, "connecting to %s", m->o.uri);
    rc = MQTTAsync_connect(m->client, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        log_msg(EG_LOG_WARN, "connect request to %s failed (%d)", m->o.uri, rc);
        atomic_store(&m->state, ST_DOWN);
    }
}

int eg_mqtt_ready(struct eg_mqtt *m) { return atomic_load(&m->state) == ST_READY; }
uint64_t eg_mqtt_generation(struct eg_mqtt *m) { return atomic_load(&m->generation); }
uint64_t eg_mqtt_dropped(struct eg_mqtt *m) { return atomic_load(&m->dropped); }
void eg_mqtt_close_intake(struct eg_mqtt *m) { atomic_store(&m->intake_open, 0); }

/* ---- outbound ------------------------------------------------------------ */

static void on_sent(void *context, MQTTAsync_successData5 *r)
{
    struct send_ctx *sc = context;
    /* a PUBACK with a reason code >= 0x80 is the broker's final refusal
     * (e.g. 0x87 not authorized): reported as such, not as a failed send */
    if (r && r->reasonCode >= 0x80) {
        log_msg(EG_LOG_ERROR, "broker refused a message on %s (reason 0x%02x)",
                r->alt.pub.destinationName ? r->alt.pub.destinationName : "?", r->reasonCode);
        sc->done(sc->ctx, EG_MQTT_REFUSED);
    } else {
        sc->done(sc->ctx, EG_MQTT_ACKED);
    }
    free(sc);
}

static void on_send_failed(void *context, MQTTAsync_failureData5 *r)
{
    struct send_ctx *sc = context;
    (void)r;
    sc->done(sc->ctx, EG_MQTT_FAILED);
    free(sc);
}

static int add_user_prop(MQTTProperties *props, const char *name, const char *value)
{
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    p.value.data.data = (char *)name;
    p.value.data.len = (int)strlen(name);
    p.value.value.data = (char *)value;
    p.value.value.len = (int)strlen(value);
    return MQTTProperties_add(props, &p);
}

/* Fills props from the outbox JSON; returns 0 or -1 on malformed props. */
static int props_from_json(MQTTProperties *props, const char *json)
{
    cJSON *root = cJSON_Parse(json), *user, *corr, *item;
    int rc = 0;
    if (!root)
        return -1;
    user = cJSON_GetObjectItemCaseSensitive(root, "user");
    cJSON_ArrayForEach(item, user)
    {
        cJSON *n = cJSON_GetArrayItem(item, 0), *v = cJSON_GetArrayItem(item, 1);
        if (cJSON_IsString(n) && cJSON_IsString(v))
            rc |= add_user_prop(props, n->valuestring, v->valuestring);
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "resp");
    if (cJSON_IsString(item)) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC;
        p.value.data.data = item->valuestring;
        p.value.data.len = (int)strlen(item->valuestring);
        rc |= MQTTProperties_add(props, &p); /* copies the data */
    }
    corr = cJSON_GetObjectItemCaseSensitive(root, "corr");
    if (cJSON_IsString(corr)) {
        size_t hl = strlen(corr->valuestring);
        uint8_t buf[256];
        if (hl % 2 == 0 && hl / 2 <= sizeof buf &&
            eg_hex_decode(corr->valuestring, buf, hl / 2) == 0) {
            MQTTProperty p;
            memset(&p, 0, sizeof p);
            p.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
            p.value.data.data = (char *)buf;
            p.value.data.len = (int)(hl / 2);
            rc |= MQTTProperties_add(props, &p); /* copies the data */
        }
    }
    cJSON_Delete(root);
    return rc ? -1 : 0;
}

int eg_mqtt_publish(struct eg_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                    int retain, const char *props, void (*done)(void *ctx, int outcome),
                    void *ctx)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    struct send_ctx *sc;
    int rc;

    if (atomic_load(&m->state) != ST_READY)
        return -1;
    if (!(sc = malloc(sizeof *sc)))
        return -1;
    sc->done = done;
    sc->ctx = ctx;
    msg.payload = (void *)payload;
    msg.payloadlen = (int)len;
    msg.qos = qos;
    msg.retained = retain;
    if (props && props_from_json(&msg.properties, props) != 0)
        log_msg(EG_LOG_WARN, "outbox row has malformed properties; sent without some");
    ro.onSuccess5 = on_sent;
    ro.onFailure5 = on_send_failed;
    ro.context = sc;
    rc = MQTTAsync_sendMessage(m->client, topic, &msg, &ro);
    MQTTProperties_free(&msg.properties);
    if (rc != MQTTASYNC_SUCCESS) {
        free(sc);
        return -1;
    }
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

eg_err eg_mqtt_new(const struct eg_mqtt_opts *opts, struct eg_queue *q, struct eg_mqtt **out,
                   struct eg_error *e)
{
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
    MQTTProperty p;
    struct eg_mqtt *m = calloc(1, sizeof *m);
    int rc;

    *out = NULL;
    if (!m)
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    m->o = *opts;
    m->q = q;
    m->jitter = (uint64_t)(uintptr_t)m ^ ((uint64_t)eg_now_ms() << 16) ^ (uint64_t)getpid() ^
                0x9e3779b97f4a7c15ULL;
    atomic_store(&m->intake_open, 1);
    atomic_store(&m->state, ST_DOWN);
    cro.sendWhileDisconnected = 0;
    /* Paho refuses a send (MQTTASYNC_MAX_BUFFERED_MESSAGES) while this many
     * are queued in the client and not yet written, even when connected; its
     * default of 100 made the outbox publisher stall under load. Callers
     * bound what they have in flight themselves (outbox_inflight). */
    cro.maxBufferedMessages = 100000;
    rc = MQTTAsync_createWithOptions(&m->client, opts->uri, opts->client_id,
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
    if (rc != MQTTASYNC_SUCCESS) {
        free(m);
        return eg_fail(e, EG_E_USAGE, "broker: cannot use \"%s\" (Paho error %d)", opts->uri, rc);
    }
    memset(&p, 0, sizeof p);
    p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
    p.value.integer4 = (unsigned int)opts->session_expiry_s;
    MQTTProperties_add(&m->connect_props, &p);
    MQTTAsync_setCallbacks(m->client, m, on_lost, on_message, NULL);
    *out = m;
    return EG_OK;
}

void eg_mqtt_disconnect(struct eg_mqtt *m, int timeout_ms)
{
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
    int64_t until = eg_mono_ms() + timeout_ms;
    if (!MQTTAsync_isConnected(m->client))
        return;
    d.timeout = timeout_ms;
    if (MQTTAsync_disconnect(m->client, &d) == MQTTASYNC_SUCCESS) {
        while (MQTTAsync_isConnected(m->client) && eg_mono_ms() < until)
            usleep(10000);
    }
    atomic_store(&m->state, ST_DOWN);
}

void eg_mqtt_free(struct eg_mqtt *m)
{
    if (!m)
        return;
    MQTTAsync_destroy(&m->client);
    MQTTProperties_free(&m->connect_props);
    MQTTProperties_free(&m->will_props);
    free(m);
}

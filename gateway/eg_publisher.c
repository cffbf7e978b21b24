/*
 * eg_publisher.c — outbox publisher thread (see eg_publisher.h).
 */
#include "eg_publisher.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eg_log.h"
#include "eg_outbox.h"
#include "eg_store.h"
#include "eg_time.h"

#define FETCH_MAX 256
#define ACKED_MAX 65536

struct eg_publisher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct eg_store *st;
    struct eg_mqtt *mqtt;
    int max_inflight;
    int stop;
    int rewind;      /* start again from the oldest row */
    int inflight;    /* sends of the current generation awaiting an answer */
    uint64_t gen;    /* connection generation the sends belong to */
    int64_t cursor;  /* highest id sent in this pass */
    int backoff_ms;  /* while the client library takes no more: 5 ms doubling to 200 ms */
    uint64_t sent;
    int64_t *acked;  /* acknowledged, not yet handed to the pipeline */
    size_t nacked;
    int joined; /* the thread was joined */
};

struct send {
    struct eg_publisher *p;
    int64_t id;
    uint64_t gen;
};

static void on_done(void *ctx, int outcome)
{
    struct send *s = ctx;
    struct eg_publisher *p = s->p;
    pthread_mutex_lock(&p->mu);
    if (s->gen == p->gen && p->inflight > 0)
        p->inflight--;
    /* refused by the broker (logged by eg_mqtt): final, not resent, so one
     * refused row cannot make the publisher resend everything forever */
    if (outcome == EG_MQTT_ACKED || outcome == EG_MQTT_REFUSED) {
        p->sent++;
        if (p->nacked < ACKED_MAX)
            p->acked[p->nacked++] = s->id;
        /* else: the row stays and is sent again later: at-least-once */
    } else {
        p->rewind = 1;
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    free(s);
}

static void wait_ms(struct eg_publisher *p, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cond, &p->mu, &ts);
}

static int is_acked(struct eg_publisher *p, int64_t id)
{
    for (size_t i = 0; i < p->nacked; i++)
        if (p->acked[i] == id)
            return 1;
    return 0;
}

static void *run(void *arg)
{
    struct eg_publisher *p = arg;
    struct eg_outbox_row rows[FETCH_MAX];

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t gen = eg_mqtt_generation(p->mqtt);
        int room, n, blocked;
        int64_t after;
        if (!eg_mqtt_ready(p->mqtt)) {
            wait_ms(p, 100);
            continue;
        }
        if (gen != p->gen || p->rewind) {
            /* new connection or a failed send: resend everything not acknowledged */
            p->gen = gen;
            p->cursor = 0;
            p->inflight = 0;
            p->rewind = 0;
        }
        room = p->max_inflight - p->inflight;
        if (room <= 0) {
            wait_ms(p, 100);
            continue;
        }
        if (room > FETCH_MAX)
            room = FETCH_MAX;
        if (p->backoff_ms && room > 16)
            room = 16; /* the library was full: probe with a few rows */
        after = p->cursor;
        pthread_mutex_unlock(&p->mu);
        n = eg_outbox_fetch(p->st, after, room, rows);
        pthread_mutex_lock(&p->mu);
        if (n < 0) {
            log_msg(EG_LOG_ERROR, "outbox read failed; retrying");
            wait_ms(p, 500);
            continue;
        }
        blocked = 0;
        for (int i = 0; i < n; i++) {
            struct send *s;
            if (blocked || p->rewind || p->gen != eg_mqtt_generation(p->mqtt)) {
                eg_outbox_row_clear(&rows[i]);
                continue;
            }
            if (is_acked(p, rows[i].id)) {
                p->cursor = rows[i].id;
                eg_outbox_row_clear(&rows[i]);
                continue;
            }
            s = malloc(sizeof *s);
            if (s) {
                s->p = p;
                s->id = rows[i].id;
                s->gen = p->gen;
                p->inflight++;
                pthread_mutex_unlock(&p->mu);
                if (eg_mqtt_publish(p->mqtt, rows[i].topic, rows[i].payload, rows[i].len,
                                    rows[i].qos, rows[i].retain, rows[i].props, on_done,
                                    s) != 0) {
                    /* not queued (the client's buffer is full, or the link
                     * just went down): the cursor stays before this row, so
                     * it is fetched and sent again; nothing in flight is
                     * sent twice. A lost connection is a new generation. */
                    pthread_mutex_lock(&p->mu);
                    p->inflight--;
                    blocked = 1;
                    free(s);
                } else {
                    pthread_mutex_lock(&p->mu);
                    if (!p->rewind)
                        p->cursor = rows[i].id;
                }
            } else {
                blocked = 1; /* out of memory: try again shortly */
            }
            eg_outbox_row_clear(&rows[i]);
        }
        if (blocked) {
            p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 5;
            if (p->backoff_ms > 200)
                p->backoff_ms = 200;
            wait_ms(p, p->backoff_ms);
        } else {
            if (n > 0)
                p->backoff_ms = 0;
            if (n == 0 || p->rewind)
                wait_ms(p, p->rewind ? 200 : 100);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

eg_err eg_publisher_start(const char *db_path, const uint8_t outbox_key[32], struct eg_mqtt *mqtt,
                          int max_inflight, struct eg_publisher **out, struct eg_error *e)
{
    struct eg_publisher *p = calloc(1, sizeof *p);
    pthread_condattr_t ca;
    eg_err rc;

    *out = NULL;
    if (!p || !(p->acked = calloc(ACKED_MAX, sizeof *p->acked))) {
        if (p)
            free(p);
        return eg_fail(e, EG_E_NOMEM, "out of memory");
    }
    if ((rc = eg_store_open(db_path, EG_STORE_READONLY, &p->st, e)) != EG_OK) {
        free(p->acked);
        free(p);
        return rc;
    }
    eg_store_set_outbox_key(p->st, outbox_key, NULL);
    p->mqtt = mqtt;
    p->max_inflight = max_inflight;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        eg_store_close(p->st);
        free(p->acked);
        free(p);
        return eg_fail(e, EG_E_INTERNAL, "cannot start the publisher thread");
    }
    *out = p;
    return EG_OK;
}

void eg_publisher_notify(struct eg_publisher *p)
{
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

size_t eg_publisher_take_acked(struct eg_publisher *p, int64_t *ids, size_t max)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->nacked < max ? p->nacked : max;
    memcpy(ids, p->acked + (p->nacked - n), n * sizeof *ids);
    p->nacked -= n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int eg_publisher_drain(struct eg_publisher *p, int64_t upto_id, int timeout_ms)
{
    int64_t until = eg_mono_ms() + timeout_ms;
    int rc = -1;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cond);
    while (eg_mono_ms() < until) {
        /* rows are sent in id order: once the cursor passed upto_id and
         * nothing is in flight, every row up to it was answered */
        if (p->cursor >= upto_id && p->inflight == 0 && !p->rewind &&
            p->gen == eg_mqtt_generation(p->mqtt)) {
            rc = 0;
            break;
        }
        wait_ms(p, 50);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

uint64_t eg_publisher_sent(struct eg_publisher *p)
{
    uint64_t n;
    pthread_mutex_lock(&p->mu);
    n = p->sent;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void eg_publisher_stop(struct eg_publisher *p)
{
    if (!p || p->joined)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->joined = 1;
}

void eg_publisher_free(struct eg_publisher *p)
{
    if (!p)
        return;
    eg_publisher_stop(p);
    eg_store_close(p->st);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p->acked);
    free(p);
}

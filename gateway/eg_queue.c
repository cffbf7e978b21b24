/*
 * eg_queue.c — bounded intake queue (see eg_queue.h).
 */
#include "eg_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct eg_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct eg_msg *head, *tail;
    size_t msgs, bytes, peak;
    size_t max_msgs, max_bytes;
    int closed;
};

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

struct eg_msg *eg_msg_new(const char *topic, size_t topic_len, const void *payload, size_t len,
                          const char *sig, size_t sig_len, const char *resp_topic,
                          size_t resp_len, const void *corr, size_t corr_len)
{
    struct eg_msg *m = calloc(1, sizeof *m);
    if (m)
        m->feed_seq = -1;
    if (!m)
        return NULL;
    m->topic = dupn(topic, topic_len);
    /* one spare NUL byte so parsers may treat the payload as a C string */
    m->payload = malloc(len + 1);
    if (!m->topic || !m->payload)
        goto fail;
    if (len)
        memcpy(m->payload, payload, len);
    m->payload[len] = 0;
    m->len = len;
    if (sig && !(m->sig = dupn(sig, sig_len)))
        goto fail;
    if (resp_topic && !(m->resp_topic = dupn(resp_topic, resp_len)))
        goto fail;
    if (corr && corr_len) {
        if (!(m->corr = malloc(corr_len)))
            goto fail;
        memcpy(m->corr, corr, corr_len);
        m->corr_len = corr_len;
    }
    return m;
fail:
    eg_msg_free(m);
    return NULL;
}

void eg_msg_free(struct eg_msg *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->payload);
    free(m->sig);
    free(m->resp_topic);
    free(m->corr);
    free(m);
}

void eg_msg_free_list(struct eg_msg *m)
{
    while (m) {
        struct eg_msg *next = m->next;
        eg_msg_free(m);
        m = next;
    }
}

static size_t msg_bytes(const struct eg_msg *m)
{
    return sizeof *m + m->len + strlen(m->topic) + m->corr_len;
}

struct eg_queue *eg_queue_new(size_t max_msgs, size_t max_bytes)
{
    struct eg_queue *q = calloc(1, sizeof *q);
    pthread_condattr_t ca;
    if (!q)
        return NULL;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    q->max_msgs = max_msgs;
    q->max_bytes = max_bytes;
    return q;
}

void eg_queue_free(struct eg_queue *q)
{
    if (!q)
        return;
    eg_msg_free_list(q->head);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static void deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int eg_queue_push(struct eg_queue *q, struct eg_msg *m)
{
    size_t b = msg_bytes(m);
    pthread_mutex_lock(&q->mu);
    /* an empty queue always takes one message, however large */
    while (!q->closed && q->msgs > 0 &&
           (q->msgs >= q->max_msgs || q->bytes + b > q->max_bytes))
        pthread_cond_wait(&q->not_full, &q->mu);
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        eg_msg_free(m);
        return -1;
    }
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->msgs++;
    q->bytes += b;
    if (q->msgs > q->peak)
        q->peak = q->msgs;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

struct eg_msg *eg_queue_pop_many(struct eg_queue *q, size_t max, int wait_ms, size_t *n)
{
    struct eg_msg *head, *m, *last = NULL;
    size_t k = 0;
    pthread_mutex_lock(&q->mu);
    if (!q->head && wait_ms > 0) {
        struct timespec ts;
        deadline(&ts, wait_ms);
        while (!q->head && !q->closed) {
            if (pthread_cond_timedwait(&q->not_empty, &q->mu, &ts) == ETIMEDOUT)
                break;
        }
    }
    head = q->head;
    for (m = head; m && k < max; m = m->next) {
        q->bytes -= msg_bytes(m);
        last = m;
        k++;
    }
    if (last) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->msgs -= k;
        pthread_cond_broadcast(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    *n = k;
    return k ? head : NULL;
}

void eg_queue_close(struct eg_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

void eg_queue_stats(struct eg_queue *q, size_t *msgs, size_t *bytes, size_t *peak)
{
    pthread_mutex_lock(&q->mu);
    *msgs = q->msgs;
    *bytes = q->bytes;
    *peak = q->peak;
    pthread_mutex_unlock(&q->mu);
}

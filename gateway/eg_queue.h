/*
 * eg_queue.h — the bounded intake queue between the Paho callback and the
 * pipeline thread (STYLE §5).
 *
 * The callback copies each message into a struct eg_msg and pushes it; the
 * pipeline pops many at a time. The queue is bounded in messages and in
 * bytes. When it is full, eg_queue_push() waits (on a condition variable)
 * for the pipeline to make room: the MQTT reader thread stops reading the
 * socket, so TCP flow control pushes back on the broker. The pipeline never
 * waits on MQTT, so this cannot deadlock with our own publishes.
 */
#ifndef EG_QUEUE_H
#define EG_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct eg_msg {
    struct eg_msg *next;
    char *topic;
    uint8_t *payload;
    size_t len;
    char *sig;        /* user property "sig", or NULL */
    char *resp_topic; /* MQTT v5 Response Topic, or NULL */
    uint8_t *corr;    /* Correlation Data, or NULL */
    size_t corr_len;
    int64_t received_ms;
    int64_t received_us;   /* monotonic µs at arrival (eg_mono_us), for latency figures */
    int64_t quarantine_id; /* > 0 when replayed from quarantine */
    int64_t feed_seq;      /* user property feed_seq (a grantee's feed), or -1 */
};

/* Allocates a message with copies of the given parts (any may be NULL/0).
 * NULL on OOM. eg_msg_free(NULL) is a no-op. */
struct eg_msg *eg_msg_new(const char *topic, size_t topic_len, const void *payload, size_t len,
                          const char *sig, size_t sig_len, const char *resp_topic,
                          size_t resp_len, const void *corr, size_t corr_len);
void eg_msg_free(struct eg_msg *m);
/* Frees a list linked by next. */
void eg_msg_free_list(struct eg_msg *m);

struct eg_queue;

struct eg_queue *eg_queue_new(size_t max_msgs, size_t max_bytes);
void eg_queue_free(struct eg_queue *q); /* frees queued messages too */

/* Appends m (taking ownership). Waits while the queue is full unless it was
 * closed; returns 0, or -1 if the queue is closed (m is then freed). */
int eg_queue_push(struct eg_queue *q, struct eg_msg *m);

/* Takes up to max messages as a list, oldest first. Waits up to wait_ms for
 * the first one. *n receives the count. Returns NULL if none. */
struct eg_msg *eg_queue_pop_many(struct eg_queue *q, size_t max, int wait_ms, size_t *n);

/* Refuses further pushes and wakes waiting pushers. */
void eg_queue_close(struct eg_queue *q);

/* Current depth and high-water mark, for stats. */
void eg_queue_stats(struct eg_queue *q, size_t *msgs, size_t *bytes, size_t *peak_msgs);

#endif

/*
 * test_queue.c — gateway/eg_queue: the bounded intake queue (STYLE §5).
 *
 * FIFO order, pop_many counts, the message and byte bounds that make a
 * pusher wait until the consumer makes room, the empty queue that takes one
 * oversized message, close waking a blocked pusher, and the stats.
 *
 * Blocking is checked with a producer thread that reports when its push
 * returns. Every wait for it has a generous timeout, after which the queue
 * is closed to release the thread, so a bug fails the test instead of
 * hanging it. No assertion depends on timing: a correct queue passes
 * whatever the scheduler does.
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eg_queue.h"

#define WAIT_MS 10000 /* how long a thread may take to report before we give up */

/* ---- helpers ---------------------------------------------------------- */

static struct eg_msg *msg(const char *topic, size_t payload_len)
{
    char *p = malloc(payload_len ? payload_len : 1);
    struct eg_msg *m;

    CU_ASSERT_FATAL(p != NULL);
    memset(p, 'x', payload_len ? payload_len : 1);
    m = eg_msg_new(topic, strlen(topic), p, payload_len, NULL, 0, NULL, 0, NULL, 0);
    free(p);
    CU_ASSERT_FATAL(m != NULL);
    return m;
}

/* The byte cost the queue charges for a message (its header, payload, topic
 * and correlation data): measured through eg_queue_stats, not assumed. */
static size_t cost_of(const char *topic, size_t payload_len)
{
    struct eg_queue *q = eg_queue_new(10, 1u << 30);
    size_t msgs, bytes, peak, n;
    struct eg_msg *m;

    CU_ASSERT_FATAL(q != NULL);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg(topic, payload_len)), 0);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    m = eg_queue_pop_many(q, 10, 0, &n);
    eg_msg_free_list(m);
    eg_queue_free(q);
    return bytes;
}

/* A producer thread that pushes one message and reports the result. */
struct pusher {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct eg_queue *q;
    struct eg_msg *m;
    int done, rc;
};

static void *pusher_main(void *arg)
{
    struct pusher *p = arg;
    int rc = eg_queue_push(p->q, p->m);

    pthread_mutex_lock(&p->mu);
    p->rc = rc;
    p->done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pusher_start(struct pusher *p, struct eg_queue *q, struct eg_msg *m)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->q = q;
    p->m = m;
    p->rc = -2;
    CU_ASSERT_FATAL(pthread_create(&p->th, NULL, pusher_main, p) == 0);
}

static int pusher_done(struct pusher *p)
{
    int d;

    pthread_mutex_lock(&p->mu);
    d = p->done;
    pthread_mutex_unlock(&p->mu);
    return d;
}

/* Waits up to ms for the push to return; 1 if it did. */
static int pusher_wait(struct pusher *p, int ms)
{
    struct timespec ts;
    int d;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->done)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
            break;
    d = p->done;
    pthread_mutex_unlock(&p->mu);
    return d;
}

/* Joins the thread; if it is still blocked, closes the queue to free it
 * (and detaches it if even that does not help, so the test ends). */
static void pusher_finish(struct pusher *p)
{
    if (!pusher_wait(p, WAIT_MS)) {
        eg_queue_close(p->q);
        if (!pusher_wait(p, WAIT_MS)) {
            CU_FAIL("pusher still blocked after close");
            pthread_detach(p->th);
            return;
        }
    }
    pthread_join(p->th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* Gives a blocked thread a chance to run (not an assertion on timing). */
static void let_run(void)
{
    struct timespec ts = {0, 50 * 1000000L};

    for (int i = 0; i < 4; i++) {
        sched_yield();
        nanosleep(&ts, NULL);
    }
}

static void check_topics(struct eg_msg *list, const char *const *want, size_t n)
{
    size_t i = 0;

    for (struct eg_msg *m = list; m; m = m->next, i++) {
        if (i < n) {
            CU_ASSERT_STRING_EQUAL(m->topic, want[i]);
        }
    }
    CU_ASSERT_EQUAL(i, n);
}

/* ---- tests ------------------------------------------------------------ */

static void test_msg_new(void)
{
    const uint8_t corr[3] = {1, 0, 2};
    struct eg_msg *m = eg_msg_new("ehr/device/D1/telemetryXXX", 23, "ab\0cd", 5, "c2lnbmF0dXJl", 12,
                                  "ehr/x/replies", 13, corr, sizeof corr);

    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(m->topic, "ehr/device/D1/telemetry");
    CU_ASSERT_EQUAL(m->len, 5);
    CU_ASSERT_EQUAL(memcmp(m->payload, "ab\0cd", 5), 0);
    CU_ASSERT_EQUAL(m->payload[5], 0); /* spare NUL */
    CU_ASSERT_STRING_EQUAL(m->sig, "c2lnbmF0dXJl");
    CU_ASSERT_STRING_EQUAL(m->resp_topic, "ehr/x/replies");
    CU_ASSERT_EQUAL(m->corr_len, 3);
    CU_ASSERT_EQUAL(memcmp(m->corr, corr, 3), 0);
    CU_ASSERT_PTR_NULL(m->next);
    CU_ASSERT_EQUAL(m->quarantine_id, 0);
    eg_msg_free(m);

    /* optional parts absent; an empty payload still gets its NUL */
    m = eg_msg_new("t", 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->len, 0);
    CU_ASSERT_PTR_NOT_NULL(m->payload);
    CU_ASSERT_EQUAL(m->payload[0], 0);
    CU_ASSERT_PTR_NULL(m->sig);
    CU_ASSERT_PTR_NULL(m->resp_topic);
    CU_ASSERT_PTR_NULL(m->corr);
    CU_ASSERT_EQUAL(m->corr_len, 0);
    eg_msg_free(m);
    eg_msg_free(NULL);
    eg_msg_free_list(NULL);
}

static void test_fifo_and_pop_many(void)
{
    static const char *const all[] = {"t0", "t1", "t2", "t3", "t4"};
    struct eg_queue *q = eg_queue_new(100, 1u << 20);
    struct eg_msg *list;
    size_t n = 99;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    /* empty: nothing, with and without waiting */
    CU_ASSERT_PTR_NULL(eg_queue_pop_many(q, 10, 0, &n));
    CU_ASSERT_EQUAL(n, 0);
    n = 99;
    CU_ASSERT_PTR_NULL(eg_queue_pop_many(q, 10, 20, &n));
    CU_ASSERT_EQUAL(n, 0);

    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(eg_queue_push(q, msg(all[i], 10)), 0);
    /* max 0 takes nothing */
    CU_ASSERT_PTR_NULL(eg_queue_pop_many(q, 0, 0, &n));
    CU_ASSERT_EQUAL(n, 0);
    list = eg_queue_pop_many(q, 2, 0, &n);
    CU_ASSERT_EQUAL(n, 2);
    check_topics(list, all, 2);
    eg_msg_free_list(list);
    list = eg_queue_pop_many(q, 1, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    check_topics(list, all + 2, 1);
    eg_msg_free_list(list);
    /* more than there is: the rest */
    list = eg_queue_pop_many(q, 100, 0, &n);
    CU_ASSERT_EQUAL(n, 2);
    check_topics(list, all + 3, 2);
    eg_msg_free_list(list);
    CU_ASSERT_PTR_NULL(eg_queue_pop_many(q, 10, 0, &n));

    /* the queue keeps working after it was emptied (tail reset) */
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("t0", 1)), 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("t1", 1)), 0);
    list = eg_queue_pop_many(q, 10, 0, &n);
    CU_ASSERT_EQUAL(n, 2);
    check_topics(list, all, 2);
    eg_msg_free_list(list);
    /* free with messages still queued frees them (ASan build) */
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("left", 100)), 0);
    eg_queue_free(q);
    eg_queue_free(NULL);
}

static void test_message_bound_blocks(void)
{
    struct eg_queue *q = eg_queue_new(2, 1u << 30);
    struct pusher p;
    struct eg_msg *list;
    size_t n, msgs, bytes, peak;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("a", 1)), 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("b", 1)), 0);
    pusher_start(&p, q, msg("c", 1));
    let_run();
    CU_ASSERT_FALSE(pusher_done(&p)); /* full: the third push waits */
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 2);
    CU_ASSERT_EQUAL(peak, 2);

    list = eg_queue_pop_many(q, 1, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(list->topic, "a");
    eg_msg_free_list(list);
    CU_ASSERT_TRUE(pusher_wait(&p, WAIT_MS)); /* room made: it returns */
    CU_ASSERT_EQUAL(p.rc, 0);
    pusher_finish(&p);

    list = eg_queue_pop_many(q, 10, 0, &n);
    CU_ASSERT_EQUAL(n, 2);
    {
        static const char *const want[] = {"b", "c"};
        check_topics(list, want, 2);
    }
    eg_msg_free_list(list);
    eg_queue_free(q);
}

static void test_byte_bound_blocks(void)
{
    size_t b = cost_of("bytes", 100);
    struct eg_queue *q;
    struct pusher p;
    struct eg_msg *list;
    size_t n, msgs, bytes, peak;

    CU_ASSERT_FATAL(b > 100);
    /* room for two such messages, not three; plenty of message slots */
    q = eg_queue_new(1000, 2 * b + b / 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("bytes", 100)), 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("bytes", 100)), 0);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(bytes, 2 * b);
    pusher_start(&p, q, msg("bytes", 100));
    let_run();
    CU_ASSERT_FALSE(pusher_done(&p));

    list = eg_queue_pop_many(q, 1, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    eg_msg_free_list(list);
    CU_ASSERT_TRUE(pusher_wait(&p, WAIT_MS));
    CU_ASSERT_EQUAL(p.rc, 0);
    pusher_finish(&p);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 2);
    CU_ASSERT_EQUAL(bytes, 2 * b);
    list = eg_queue_pop_many(q, 10, 0, &n);
    eg_msg_free_list(list);
    eg_queue_free(q);
}

static void test_oversized_into_empty(void)
{
    struct eg_queue *q = eg_queue_new(10, 100);
    struct pusher p;
    struct eg_msg *list;
    size_t n, msgs, bytes, peak;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    /* far over max_bytes, but the queue is empty: taken at once */
    pusher_start(&p, q, msg("big", 5000));
    CU_ASSERT_TRUE(pusher_wait(&p, WAIT_MS));
    CU_ASSERT_EQUAL(p.rc, 0);
    pusher_finish(&p);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 1);
    CU_ASSERT(bytes > 5000);

    /* now it is not empty: even a small message waits */
    pusher_start(&p, q, msg("small", 1));
    let_run();
    CU_ASSERT_FALSE(pusher_done(&p));
    list = eg_queue_pop_many(q, 10, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(list->topic, "big");
    eg_msg_free_list(list);
    CU_ASSERT_TRUE(pusher_wait(&p, WAIT_MS));
    CU_ASSERT_EQUAL(p.rc, 0);
    pusher_finish(&p);
    list = eg_queue_pop_many(q, 10, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    if (list) {
        CU_ASSERT_STRING_EQUAL(list->topic, "small");
    }
    eg_msg_free_list(list);
    eg_queue_free(q);
}

static void test_close(void)
{
    struct eg_queue *q = eg_queue_new(1, 1u << 20);
    struct pusher p;
    struct eg_msg *list;
    size_t n;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("kept", 1)), 0);
    pusher_start(&p, q, msg("blocked", 1));
    let_run();
    CU_ASSERT_FALSE(pusher_done(&p));
    eg_queue_close(q);
    CU_ASSERT_TRUE(pusher_wait(&p, WAIT_MS)); /* woken by close */
    CU_ASSERT_EQUAL(p.rc, -1);                /* its message was freed (ASan build) */
    pusher_finish(&p);

    /* after close: push refuses at once and frees the message */
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("late", 1)), -1);
    /* what was queued before close can still be taken */
    list = eg_queue_pop_many(q, 10, 0, &n);
    CU_ASSERT_EQUAL(n, 1);
    if (list) {
        CU_ASSERT_STRING_EQUAL(list->topic, "kept");
    }
    eg_msg_free_list(list);
    /* a waiting pop on a closed, empty queue returns without waiting out */
    CU_ASSERT_PTR_NULL(eg_queue_pop_many(q, 10, 60000, &n));
    CU_ASSERT_EQUAL(n, 0);
    eg_queue_free(q);
}

/* A consumer thread waiting in pop_many is woken by a push. */
struct popper {
    struct eg_queue *q;
    struct eg_msg *got;
    size_t n;
};

static void *popper_main(void *arg)
{
    struct popper *p = arg;

    p->got = eg_queue_pop_many(p->q, 10, WAIT_MS, &p->n);
    return NULL;
}

static void test_pop_waits_for_push(void)
{
    struct eg_queue *q = eg_queue_new(10, 1u << 20);
    struct popper p = {q, NULL, 0};
    pthread_t th;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_FATAL(pthread_create(&th, NULL, popper_main, &p) == 0);
    let_run();
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("wake", 3)), 0);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(p.n, 1);
    if (p.got) {
        CU_ASSERT_STRING_EQUAL(p.got->topic, "wake");
    }
    eg_msg_free_list(p.got);
    eg_queue_free(q);
}

static void test_stats(void)
{
    size_t b1 = cost_of("s", 10), b2 = cost_of("s", 200);
    struct eg_queue *q = eg_queue_new(100, 1u << 20);
    struct eg_msg *list;
    size_t n, msgs, bytes, peak;

    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(b2 - b1, 190); /* the payload is counted byte for byte */
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 0);
    CU_ASSERT_EQUAL(bytes, 0);
    CU_ASSERT_EQUAL(peak, 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("s", 10)), 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("s", 200)), 0);
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("s", 10)), 0);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 3);
    CU_ASSERT_EQUAL(bytes, 2 * b1 + b2);
    CU_ASSERT_EQUAL(peak, 3);
    list = eg_queue_pop_many(q, 2, 0, &n);
    eg_msg_free_list(list);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 1);
    CU_ASSERT_EQUAL(bytes, b1);
    CU_ASSERT_EQUAL(peak, 3); /* high-water mark stays */
    CU_ASSERT_EQUAL(eg_queue_push(q, msg("s", 10)), 0);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 2);
    CU_ASSERT_EQUAL(peak, 3);
    list = eg_queue_pop_many(q, 10, 0, &n);
    eg_msg_free_list(list);
    eg_queue_stats(q, &msgs, &bytes, &peak);
    CU_ASSERT_EQUAL(msgs, 0);
    CU_ASSERT_EQUAL(bytes, 0);
    eg_queue_free(q);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("queue", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "eg_msg_new copies its parts", test_msg_new) ||
        !CU_add_test(s, "FIFO order and pop_many counts", test_fifo_and_pop_many) ||
        !CU_add_test(s, "message bound makes push wait", test_message_bound_blocks) ||
        !CU_add_test(s, "byte bound makes push wait", test_byte_bound_blocks) ||
        !CU_add_test(s, "empty queue takes one oversized message", test_oversized_into_empty) ||
        !CU_add_test(s, "close wakes a blocked pusher; push after close", test_close) ||
        !CU_add_test(s, "pop_many waits for a push", test_pop_waits_for_push) ||
        !CU_add_test(s, "stats and peak", test_stats)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

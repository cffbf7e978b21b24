/*
 * eg_gateway.c — the daemon's threads and their lifecycle.
 *
 *   Paho threads   -> on_message copies into the bounded intake queue
 *   pipeline thread -> takes up to batch_max messages, one SQLite
 *                      transaction: entries, dedup rows, quarantine rows,
 *                      receipts and status into the outbox; COMMIT; wakes
 *                      the publisher. Also deletes acknowledged outbox rows,
 *                      replays quarantined messages and expires old ones.
 *   publisher thread -> outbox -> broker (eg_publisher.c)
 *   main thread     -> reconnects with backoff, waits for the stop signal.
 * See docs/architecture.md.
 */
#include "eg_gateway.h"

#include <pthread.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "eg_chain.h"
#include "eg_codec.h"
#include "eg_ingest.h"
#include "eg_json.h"
#include "eg_log.h"
#include "eg_mqtt.h"
#include "eg_outbox.h"
#include "eg_publisher.h"
#include "eg_quarantine.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_topics.h"
#include "eg_vault.h"

#define ACK_BATCH 8192
#define REPLAY_BATCH 64
#define STOP_GIVE_UP_MS 10000 /* how long a stopping gateway retries a failing commit */

struct gw {
    const struct eg_config *cfg;
    struct eg_store *st;
    struct eg_rng *rng;
    struct eg_vault *vault;
    struct eg_queue *q;
    struct eg_mqtt *mqtt;
    struct eg_publisher *pub;
    struct eg_ingest *ig;
    struct eg_chain *chain;
    char gateway_id[65];
    char status_topic[256];
    atomic_int want_online;  /* set by on_ready: queue the online status */
    atomic_int stop_pipeline;
    atomic_int pipeline_done;
    atomic_int degraded;     /* the last transaction failed */
    atomic_int db_full;      /* the last transaction failed: database or disk full */
    atomic_int_fast64_t max_bytes; /* db_max_bytes to apply (pipeline), -1 none */
    atomic_int unclean;      /* stopped with messages it could not commit */
    atomic_int chain_bad;    /* the chain could not be reloaded after a rollback */
    int64_t *acked;
};

static void status_sent(void *ctx, int outcome)
{
    (void)ctx;
    (void)outcome; /* best effort: the outbox carries the next status */
}

static char *status_json(struct gw *g, const char *status, size_t *len)
{
    char at[EG_TIME_STRLEN];
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    eg_time_format(eg_now_ms(), at);
    if (o && cJSON_AddStringToObject(o, "status", status) &&
        cJSON_AddStringToObject(o, "name", g->cfg->name) &&
        cJSON_AddStringToObject(o, "gateway_id", g->gateway_id) &&
        cJSON_AddStringToObject(o, "at", at))
        s = egjson_print(o, len);
    cJSON_Delete(o);
    return s;
}

/* While the database is full nothing reaches the outbox (it is in the
 * database): the main thread publishes this status directly, retained, so
 * operators see why receipts stopped. The next successful transaction
 * queues the normal `online` status, which replaces it. */
static void status_direct(struct gw *g, const char *status, const char *degraded)
{
    size_t len;
    char *s = status_json(g, status, &len);
    cJSON *o = s ? cJSON_Parse(s) : NULL;
    char *t = NULL;
    free(s);
    if (o && (!degraded || cJSON_AddStringToObject(o, "degraded", degraded)) &&
        (t = egjson_print(o, &len)))
        eg_mqtt_publish(g->mqtt, g->status_topic, t, len, 1, 1, NULL, status_sent, NULL);
    free(t);
    cJSON_Delete(o);
}

static void status_degraded(struct gw *g)
{
    status_direct(g, "online",
                  "database full: receipts paused, nothing committed is lost; waiting for room");
}

static eg_err put_status(struct gw *g, const char *status)
{
    size_t len;
    char *s = status_json(g, status, &len);
    eg_err rc;
    if (!s)
        return EG_E_NOMEM;
    rc = eg_outbox_put(g->st, g->status_topic, s, len, 1, 1, NULL);
    free(s);
    return rc;
}

static eg_err put_stats(struct gw *g)
{
    struct eg_ingest_stats s;
    size_t qm, qb, qp, len;
    char topic[256], *text;
    cJSON *o = cJSON_CreateObject();
    eg_err rc = EG_E_NOMEM;

    eg_ingest_get_stats(g->ig, &s);
    eg_queue_stats(g->q, &qm, &qb, &qp);
    eg_topic_stats(topic, sizeof topic, g->cfg->topic_prefix, g->cfg->name);
    if (o && cJSON_AddNumberToObject(o, "messages", (double)s.msgs) &&
        cJSON_AddNumberToObject(o, "accepted", (double)s.accepted) &&
        cJSON_AddNumberToObject(o, "rejected", (double)s.rejected) &&
        cJSON_AddNumberToObject(o, "duplicates", (double)s.duplicates) &&
        cJSON_AddNumberToObject(o, "entries", (double)s.entries) &&
        cJSON_AddNumberToObject(o, "forwarded", (double)s.forwarded) &&
        cJSON_AddNumberToObject(o, "withheld", (double)s.withheld) &&
        cJSON_AddNumberToObject(o, "access_entries", (double)s.access_entries) &&
        cJSON_AddNumberToObject(o, "requests", (double)s.requests) &&
        cJSON_AddNumberToObject(o, "rate_limited", (double)s.rate_limited) &&
        cJSON_AddNumberToObject(o, "next_seq", (double)eg_ingest_next_seq(g->ig)) &&
        cJSON_AddNumberToObject(o, "queue", (double)qm) &&
        cJSON_AddNumberToObject(o, "queue_peak", (double)qp) &&
        cJSON_AddNumberToObject(o, "published", (double)eg_publisher_sent(g->pub)) &&
        cJSON_AddNumberToObject(o, "dropped_at_shutdown", (double)eg_mqtt_dropped(g->mqtt)) &&
        cJSON_AddBoolToObject(o, "degraded", atomic_load(&g->degraded)) &&
        cJSON_AddBoolToObject(o, "db_full", atomic_load(&g->db_full)) &&
        (text = egjson_print(o, &len))) {
        rc = eg_outbox_put(g->st, topic, text, len, 0, 0, NULL);
        free(text);
    }
    cJSON_Delete(o);
    return rc;
}

/* Seals one block of up to count entries and queues it on .../blocks and,
 * retained, on .../head (SPEC §11). */
static eg_err seal_one(struct gw *g, uint64_t count)
{
    struct eg_block b;
    char topic[256], *text;
    size_t len;
    cJSON *o;
    eg_err rc;

    if ((rc = eg_chain_seal(g->chain, count, &b)) != EG_OK)
        return rc;
    if (!(o = eg_block_to_json(&b)) || !(text = egjson_print(o, &len))) {
        cJSON_Delete(o);
        return EG_E_NOMEM;
    }
    cJSON_Delete(o);
    eg_topic_anchor(topic, sizeof topic, g->cfg->topic_prefix, g->cfg->name, "blocks");
    rc = eg_outbox_put(g->st, topic, text, len, 1, 0, NULL);
    if (rc == EG_OK) {
        eg_topic_anchor(topic, sizeof topic, g->cfg->topic_prefix, g->cfg->name, "head");
        rc = eg_outbox_put(g->st, topic, text, len, 1, 1, NULL);
    }
    free(text);
    if (rc == EG_OK)
        log_msg(EG_LOG_DEBUG, "sealed block %llu: seq %llu..%llu", (unsigned long long)b.height,
                (unsigned long long)b.first_seq,
                (unsigned long long)(b.first_seq + b.count - 1));
    return rc;
}

/* Seals every block that is full, then the rest if the interval has passed
 * (or if all is set, on shutdown). */
static eg_err seal_due(struct gw *g, int all)
{
    uint64_t max = (uint64_t)g->cfg->block_max_entries;
    eg_err rc;
    while (eg_chain_open_count(g->chain) >= max)
        if ((rc = seal_one(g, max)) != EG_OK)
            return rc;
    if (eg_chain_open_count(g->chain) &&
        (all || eg_chain_due(g->chain, g->cfg->block_max_entries, g->cfg->block_interval_ms)))
        return seal_one(g, max);
    return EG_OK;
}

/* A message that fails on its own every time: answer it `internal` (and
 * quarantine it) in a transaction of its own. */
/* Answers a message that fails every time `internal` and quarantines it.
 * 0 done; -1 when even that cannot be written: then the store itself is
 * failing (not the message), and the message stays pending. */
static int reject_poison(struct gw *g, struct eg_msg *m)
{
    if (eg_store_begin(g->st) == EG_OK && eg_ingest_reject_internal(g->ig, m) == EG_OK &&
        eg_ingest_flush(g->ig) == EG_OK && eg_store_commit(g->st) == EG_OK) {
        eg_ingest_committed(g->ig);
        log_msg(EG_LOG_ERROR, "a message on a %s topic failed repeatedly; answered internal "
                              "and quarantined",
                strstr(m->topic, "/hospital/") ? "hospital"
                : strstr(m->topic, "/device/") ? "device"
                                               : "request");
        return 0;
    }
    eg_store_rollback(g->st);
    eg_ingest_abort(g->ig);
    if (eg_chain_abort(g->chain) != EG_OK)
        atomic_store(&g->chain_bad, 1);
    return -1;
}

/* One transaction: the batch, acknowledged deletions, status and stats.
 * Returns EG_OK after COMMIT, or the error after ROLLBACK. */
static eg_err commit_batch(struct gw *g, struct eg_msg *batch, size_t limit, const int64_t *acked,
                           size_t nacked, int online, int stats, int offline)
{
    size_t k = 0;
    eg_err rc = eg_store_begin(g->st);
    if (rc != EG_OK)
        goto fail;
    for (struct eg_msg *m = batch; m && k < limit; m = m->next, k++)
        if ((rc = eg_ingest_process(g->ig, m)) != EG_OK)
            goto fail;
    if ((rc = eg_ingest_flush(g->ig)) != EG_OK)
        goto fail;
    if ((rc = seal_due(g, offline)) != EG_OK)
        goto fail;
    if (nacked && (rc = eg_outbox_delete(g->st, acked, nacked)) != EG_OK)
        goto fail;
    if (online && (rc = put_status(g, "online")) != EG_OK)
        goto fail;
    if (stats && (rc = put_stats(g)) != EG_OK)
        goto fail;
    if (offline && (rc = put_status(g, "offline")) != EG_OK)
        goto fail;
    if ((rc = eg_store_commit(g->st)) != EG_OK)
        goto fail;
    eg_ingest_committed(g->ig);
    eg_chain_committed(g->chain);
    return EG_OK;
fail:
    eg_store_rollback(g->st);
    eg_ingest_abort(g->ig);
    if (eg_chain_abort(g->chain) != EG_OK)
        atomic_store(&g->chain_bad, 1); /* reloaded before the next transaction */
    return rc;
}

static void *pipeline(void *arg)
{
    struct gw *g = arg;
    struct eg_msg *pending = NULL; /* taken but not yet committed */
    size_t npending = 0, limit = SIZE_MAX;
    int64_t pending_acked_n = 0;
    int64_t next_replay = 0, next_expire = 0, next_stats = 0, give_up_at = 0;
    int backoff = 0, failures = 0;

    for (;;) {
        int stopping = atomic_load(&g->stop_pipeline);
        int online = 0, stats = 0, work;
        eg_err rc;
        size_t n = 0;
        int64_t now = eg_mono_ms();
        int64_t want = atomic_exchange(&g->max_bytes, -1);

        if (want >= 0) {
            int64_t pages = eg_store_set_max_bytes(g->st, want);
            log_msg(EG_LOG_INFO, "db_max_bytes %lld%s (max_page_count %lld)", (long long)want,
                    want ? "" : " = no limit", (long long)pages);
        }

        if (!pending) {
            pending = eg_queue_pop_many(g->q, (size_t)g->cfg->batch_max, stopping ? 0 : 20, &n);
            npending = n;
            limit = SIZE_MAX;
        }
        if (!pending && !stopping && now >= next_replay) {
            pending = eg_quarantine_due(g->st, g->vault, REPLAY_BATCH);
            for (struct eg_msg *m = pending; m; m = m->next)
                npending++;
            if (pending)
                log_msg(EG_LOG_INFO, "replaying %zu quarantined message(s)", npending);
            next_replay = now + 1000;
        }
        if (now >= next_expire) {
            int expired = 0;
            int64_t cutoff = eg_now_ms() - g->cfg->quarantine_retention_days * 86400000LL;
            if (eg_store_begin(g->st) == EG_OK &&
                eg_quarantine_expire(g->st, cutoff, &expired) == EG_OK &&
                eg_store_commit(g->st) == EG_OK) {
                if (expired)
                    log_msg(EG_LOG_INFO, "quarantine: %d row(s) past retention deleted", expired);
            } else {
                eg_store_rollback(g->st);
            }
            next_expire = now + 3600 * 1000;
        }
        if (pending_acked_n == 0)
            pending_acked_n = (int64_t)eg_publisher_take_acked(g->pub, g->acked, ACK_BATCH);
        if (atomic_exchange(&g->want_online, 0))
            online = 1;
        if (g->cfg->stats_interval_s > 0 && now >= next_stats) {
            /* QoS 0 and only of the moment: not queued while disconnected */
            stats = next_stats != 0 && eg_mqtt_ready(g->mqtt);
            next_stats = now + g->cfg->stats_interval_s * 1000;
        }
        work = pending || pending_acked_n || online || stats ||
               eg_chain_due(g->chain, g->cfg->block_max_entries, g->cfg->block_interval_ms);
        if (!work) {
            if (stopping)
                break;
            continue;
        }
        if (atomic_load(&g->chain_bad)) {
            /* never append to a chain whose state we could not reload */
            if (eg_chain_abort(g->chain) != EG_OK) {
                if (stopping) {
                    atomic_store(&g->unclean, 1);
                    break;
                }
                usleep(500000);
                continue;
            }
            atomic_store(&g->chain_bad, 0);
        }
        rc = commit_batch(g, pending, limit, g->acked, (size_t)pending_acked_n, online, stats, 0);
        if (rc != EG_OK) {
            /* nothing was receipted; keep the batch and try again */
            size_t tried = npending < limit ? npending : limit;
            if (online)
                atomic_store(&g->want_online, 1);
            atomic_store(&g->degraded, 1);
            if (rc == EG_E_DB_FULL && !atomic_exchange(&g->db_full, 1))
                log_msg(EG_LOG_ERROR, "database full: receipts paused; nothing committed is "
                                      "lost; retrying until there is room (db_max_bytes or disk)");
            if (rc == EG_E_DB_FULL && pending_acked_n &&
                commit_batch(g, NULL, 0, g->acked, (size_t)pending_acked_n, 0, 0, 0) == EG_OK)
                pending_acked_n = 0; /* the published rows' pages are free again */
            failures++;
            if (stopping) {
                if (!give_up_at)
                    give_up_at = now + STOP_GIVE_UP_MS;
                if (now >= give_up_at) {
                    log_msg(EG_LOG_ERROR, "stopping: %zu message(s) could not be committed; "
                                          "not receipted, so their publishers resend them",
                            npending);
                    atomic_store(&g->unclean, 1);
                    break;
                }
            }
            if (rc != EG_E_DB_FULL && pending && failures >= 2 && limit > 1) {
                /* maybe one message is the cause: go on one at a time */
                limit = 1;
                log_msg(EG_LOG_WARN, "transaction failed twice; processing the batch one "
                                     "message at a time");
                continue;
            }
            if (rc != EG_E_DB_FULL && pending && limit == 1 && failures >= 4) {
                struct eg_msg *m = pending;
                pending = m->next;
                m->next = NULL;
                if (reject_poison(g, m) == 0) {
                    npending--;
                    eg_msg_free(m);
                    failures = 0;
                    continue;
                }
                /* the store fails, not the message: keep it, wait, retry */
                m->next = pending;
                pending = m;
                failures = 2;
                log_msg(EG_LOG_ERROR, "the database refuses every write; waiting (nothing is "
                                      "receipted meanwhile)");
            }
            backoff = backoff ? (backoff * 2 > 5000 ? 5000 : backoff * 2) : 50;
            log_msg(EG_LOG_ERROR, "transaction of %zu message(s) failed (%s); retrying in %d ms",
                    tried, eg_strerror(rc), backoff);
            usleep((useconds_t)backoff * 1000);
            continue;
        }
        if (atomic_exchange(&g->degraded, 0))
            log_msg(EG_LOG_INFO, "transactions succeed again");
        if (atomic_exchange(&g->db_full, 0))
            atomic_store(&g->want_online, 1); /* replaces the degraded status */
        backoff = 0;
        failures = 0;
        give_up_at = 0;
        /* free what was committed; with limit 1 the rest stays pending */
        {
            size_t k = 0;
            while (pending && k < limit) {
                struct eg_msg *m = pending;
                pending = m->next;
                eg_msg_free(m);
                k++;
                npending--;
            }
        }
        pending_acked_n = 0;
        eg_publisher_notify(g->pub);
    }
    eg_msg_free_list(pending);
    atomic_store(&g->pipeline_done, 1);
    return NULL;
}

static void on_ready(void *ctx)
{
    struct gw *g = ctx;
    atomic_store(&g->want_online, 1);
}

/* exit 2: the operator gave something unusable (keys, options, a database
 * that cannot be opened or is not ours); 1: anything else */
static int fatal_code(eg_err rc)
{
    return rc == EG_E_KEY || rc == EG_E_USAGE || rc == EG_E_DB ? 2 : 1;
}

/* SIGHUP: re-reads db_max_bytes from the config file (the only option that
 * can change while running; the pipeline thread applies it). */
static void reload_limits(struct gw *g)
{
    struct eg_config tmp;
    struct eg_error e = {0};
    if (!g->cfg->config_path) {
        log_msg(EG_LOG_WARN, "SIGHUP: no -c file to re-read");
        return;
    }
    if (eg_config_init(&tmp) != EG_OK || eg_config_load_file(&tmp, g->cfg->config_path, &e) != EG_OK) {
        log_msg(EG_LOG_ERROR, "SIGHUP: %s: %s; nothing changed", g->cfg->config_path, e.detail);
        eg_config_free(&tmp);
        return;
    }
    log_msg(EG_LOG_INFO, "SIGHUP: %s re-read", g->cfg->config_path);
    atomic_store(&g->max_bytes, tmp.db_max_bytes);
    eg_config_free(&tmp);
}

int eg_gateway_run(const struct eg_config *cfg, volatile sig_atomic_t *stop,
                   volatile sig_atomic_t *reload)
{
    struct gw g;
    struct eg_error e = {0};
    struct eg_mqtt_opts mo;
    pthread_t thread;
    int started = 0, exit_code = 0, lock_fd = -1;
    struct eg_checkpointer *ckpt = NULL;
    char client_id[128], will[512];
    eg_err rc;

    memset(&g, 0, sizeof g);
    memset(&mo, 0, sizeof mo);
    g.cfg = cfg;
    atomic_store(&g.max_bytes, cfg->db_max_bytes ? cfg->db_max_bytes : -1);
    if ((rc = eg_rng_new(&g.rng)) != EG_OK) {
        fprintf(stderr, "ehrgate: cannot seed the random generator\n");
        return 1;
    }
    if ((rc = eg_store_open(cfg->db, EG_STORE_CREATE, &g.st, &e)) != EG_OK)
        goto fail;
    /* one gateway per database: two would publish the same outbox twice */
    lock_fd = open(cfg->db, O_RDONLY | O_CLOEXEC);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = eg_fail(&e, EG_E_USAGE, "%s: another ehrgate is already running on this database",
                     cfg->db);
        goto fail;
    }
    /* 32 MiB of page cache (measured: the default 2 MiB spilled under load)
     * and checkpoints on their own thread (docs/performance.md) */
    if ((rc = eg_store_tune_writer(g.st, cfg->db, 32768, &ckpt, &e)) != EG_OK)
        goto fail;
    if ((rc = eg_vault_open_gateway(g.st, cfg->key, cfg->master_key, g.rng, &g.vault, &e)) !=
        EG_OK)
        goto fail;
    {
        uint8_t id[32];
        if ((rc = eg_key_fingerprint(eg_vault_signing_key(g.vault), id)) != EG_OK)
            goto fail;
        eg_hex_encode(id, 32, g.gateway_id);
    }
    eg_store_set_outbox_key(g.st, eg_vault_outbox_key(g.vault), g.rng);
    if ((rc = eg_chain_open(g.st, g.vault, &g.chain, &e)) != EG_OK)
        goto fail;
    if ((rc = eg_ingest_new(g.st, g.vault, cfg, g.chain, &g.ig, &e)) != EG_OK)
        goto fail;
    if (!(g.q = eg_queue_new((size_t)cfg->queue_max_msgs, (size_t)cfg->queue_max_bytes)) ||
        !(g.acked = calloc(ACK_BATCH, sizeof *g.acked))) {
        rc = eg_fail(&e, EG_E_NOMEM, "out of memory");
        goto fail;
    }
    eg_topic_status(g.status_topic, sizeof g.status_topic, cfg->topic_prefix, cfg->name);
    {
        size_t len;
        char *s = status_json(&g, "offline", &len);
        snprintf(will, sizeof will, "%s", s ? s : "{\"status\":\"offline\"}");
        free(s);
    }
    snprintf(client_id, sizeof client_id, "%s",
             cfg->client_id ? cfg->client_id : "");
    if (!cfg->client_id) {
        /* a broker's ACL does not bind client ids to identities: with a
         * guessable id any client could take over the gateway's session.
         * The id carries a random part, kept in the database so that the
         * session (Clean Start 0) survives restarts. */
        char stored[96];
        if (eg_store_meta_get(g.st, "mqtt_client_id", stored, sizeof stored) == 0 && stored[0]) {
            snprintf(client_id, sizeof client_id, "%s", stored);
        } else {
            uint8_t r[8];
            char hex[17];
            if (eg_rng_bytes(g.rng, r, sizeof r) != EG_OK) {
                rc = eg_fail(&e, EG_E_INTERNAL, "random generator failed");
                goto fail;
            }
            eg_hex_encode(r, sizeof r, hex);
            snprintf(client_id, sizeof client_id, "ehrgate-%.40s-%s", cfg->name, hex);
            if ((rc = eg_store_meta_set(g.st, "mqtt_client_id", client_id)) != EG_OK) {
                eg_fail(&e, rc, "cannot record the MQTT client id");
                goto fail;
            }
        }
    }
    mo.uri = cfg->broker;
    mo.client_id = client_id;
    mo.cafile = cfg->cafile;
    mo.cert = cfg->cert;
    mo.keyfile = cfg->keyfile;
    mo.session_expiry_s = cfg->session_expiry_s;
    mo.will_topic = g.status_topic;
    mo.will_payload = will;
    mo.nfilters =
        eg_topic_filters(cfg->topic_prefix, cfg->name, mo.filters, EG_MQTT_MAX_FILTERS);
    if (mo.nfilters < 0) {
        rc = eg_fail(&e, EG_E_USAGE, "topic_prefix and name do not fit in a topic filter");
        goto fail;
    }
    mo.ctx = &g;
    mo.on_ready = on_ready;
    if ((rc = eg_mqtt_new(&mo, g.q, &g.mqtt, &e)) != EG_OK)
        goto fail;
    if ((rc = eg_publisher_start(cfg->db, eg_vault_outbox_key(g.vault), g.mqtt, (int)cfg->outbox_inflight, &g.pub, &e)) !=
        EG_OK)
        goto fail;
    if (pthread_create(&thread, NULL, pipeline, &g) != 0) {
        rc = eg_fail(&e, EG_E_INTERNAL, "cannot start the pipeline thread");
        goto fail;
    }
    started = 1;
    log_msg(EG_LOG_INFO, "ehrgate %s: gateway %s (id %.16s...), database %s, next seq %llu",
            "started", cfg->name, g.gateway_id, cfg->db,
            (unsigned long long)eg_ingest_next_seq(g.ig));

    {
        int announced = 0;
        while (!*stop) {
            eg_mqtt_tick(g.mqtt);
            if (reload && *reload) {
                *reload = 0;
                reload_limits(&g);
            }
            if (!eg_mqtt_ready(g.mqtt) || !atomic_load(&g.db_full)) {
                announced = 0; /* after a reconnect the broker may hold the will */
            } else if (!announced) {
                status_degraded(&g);
                announced = 1;
            }
            usleep(100000);
        }
    }

    /* clean shutdown (SPEC §12) */
    log_msg(EG_LOG_INFO, "shutting down: no new messages; committing what was taken");
    eg_mqtt_close_intake(g.mqtt);
    eg_queue_close(g.q);
    atomic_store(&g.stop_pipeline, 1);
    pthread_join(thread, NULL);
    started = 0;
    {
        /* seal the open block, the offline status, then drain the outbox */
        int64_t acked_n = 0;
        /* seal the open block and say offline; retried, as SPEC §12 wants
         * the seal: exit 1 if it cannot be done */
        {
            int64_t until = eg_mono_ms() + STOP_GIVE_UP_MS;
            eg_err src;
            while ((src = commit_batch(&g, NULL, 0, NULL, 0, 0, 0, 1)) != EG_OK &&
                   eg_mono_ms() < until)
                usleep(200000);
            if (src != EG_OK) {
                log_msg(EG_LOG_ERROR, "could not seal the open block and queue the offline "
                                      "status (%s)",
                        eg_strerror(src));
                atomic_store(&g.unclean, 1);
                /* the clean disconnect below suppresses the will: say
                 * `offline` directly, or the retained status would lie */
                status_direct(&g, "offline", NULL);
                usleep(300000);
            }
        }
        eg_publisher_notify(g.pub);
        /* wait until the broker has answered everything up to the offline
         * status, so the retained status is right before the clean
         * disconnect suppresses the will */
        if (!eg_mqtt_ready(g.mqtt) ||
            eg_publisher_drain(g.pub, eg_outbox_max_id(g.st), 10000) != 0)
            log_msg(EG_LOG_WARN, "outbox not fully drained; the rest is sent after restart");
        acked_n = (int64_t)eg_publisher_take_acked(g.pub, g.acked, ACK_BATCH);
        if (acked_n && commit_batch(&g, NULL, 0, g.acked, (size_t)acked_n, 0, 0, 0) != EG_OK)
            log_msg(EG_LOG_WARN, "could not delete acknowledged outbox rows (resent later)");
    }
    eg_publisher_stop(g.pub);
    eg_mqtt_disconnect(g.mqtt, 2000);
    if (eg_mqtt_dropped(g.mqtt))
        log_msg(EG_LOG_INFO, "%llu message(s) arrived during shutdown were not taken; their "
                             "publishers resend them",
                (unsigned long long)eg_mqtt_dropped(g.mqtt));
    if (atomic_load(&g.unclean)) {
        log_msg(EG_LOG_ERROR, "stopped, but not everything taken could be committed");
        exit_code = 1;
    } else {
        log_msg(EG_LOG_INFO, "stopped cleanly");
        exit_code = 0;
    }
    goto out;

fail:
    fprintf(stderr, "ehrgate: %s\n", e.detail[0] ? e.detail : eg_strerror(rc));
    exit_code = fatal_code(rc);
out:
    if (started) {
        atomic_store(&g.stop_pipeline, 1);
        eg_queue_close(g.q);
        pthread_join(thread, NULL);
    }
    eg_publisher_stop(g.pub);
    /* destroying the client fails the sends still in flight: their
     * callbacks use the publisher, which therefore goes after it */
    eg_mqtt_free(g.mqtt);
    eg_publisher_free(g.pub);
    eg_ingest_free(g.ig);
    eg_chain_free(g.chain);
    eg_queue_free(g.q);
    eg_vault_free(g.vault);
    if (g.st)
        sqlite3_wal_hook(eg_store_db(g.st), NULL, NULL);
    eg_checkpointer_free(ckpt);
    eg_store_close(g.st);
    eg_rng_free(g.rng);
    free(g.acked);
    if (lock_fd >= 0)
        close(lock_fd); /* releases the lock */
    return exit_code;
}

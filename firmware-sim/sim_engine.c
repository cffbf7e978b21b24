/*
 * sim_engine.c — store-and-forward for simulated sources (see
 * sim_engine.h).
 *
 * One thread: ticks the MQTT links, drains receipts from the intake queue,
 * makes the messages that are due, resends the unreceipted ones, and
 * commits all of it to the state file in one SQLite transaction per tick —
 * a new message is in the file before it is sent, like firmware writing
 * to flash before the radio goes on.
 */
#include "sim_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "eg_codec.h"
#include "eg_json.h"
#include "eg_log.h"
#include "eg_time.h"

#define TICK_MS 10
#define MAX_SENDS_PER_TICK 2000

static const char *const codes[] = {
    "parse",      "schema",  "unsupported", "too_large", "unknown_device", "unknown_hospital",
    "unknown_patient", "binding", "range",    "unit",      "signature",      "conflict",
    "replay",     "forbidden", "not_found", "rate_limited", "internal"};
#define NCODES (sizeof codes / sizeof codes[0])

const char sim_faults_help[] =
    "  --fault LIST        inject faults, each with its probability per message (default\n"
    "                      0.01): malformed, range, unit, duplicate, conflict, badsig,\n"
    "                      oversized, disconnect, skew; e.g. --fault range:0.05,duplicate\n";

int sim_faults_parse(const char *spec, unsigned *mask, double p[16])
{
    static const char *const names[] = {"malformed", "range",  "unit",      "duplicate", "conflict",
                                        "badsig",    "oversized", "disconnect", "skew"};
    char buf[512], *save = NULL, *tok;
    *mask = 0;
    for (int i = 0; i < 16; i++)
        p[i] = 0.01;
    if (!spec || !*spec)
        return 0;
    snprintf(buf, sizeof buf, "%s", spec);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        size_t k;
        if (colon)
            *colon = 0;
        for (k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(tok, names[k]) == 0)
                break;
        if (k == sizeof names / sizeof names[0]) {
            fprintf(stderr, "ehrgate-sim: --fault: unknown fault \"%s\"\n", tok);
            return -1;
        }
        *mask |= 1u << k;
        if (colon && sim_parse_double("--fault", colon + 1, 0, 1, &p[k]) != 0)
            return -1;
    }
    return 0;
}

struct sim_engine {
    const struct sim_engine_cfg *cfg;
    struct sim_source *src;
    size_t n;
    struct sim_link *links;
    int nlinks;
    struct eg_queue *q;
    sqlite3 *db;
    sqlite3_stmt *ins, *del, *upd;
    struct sim_rand rand;
    struct eg_rng *rng;
    struct sim_stats st;
    int lock_fd;
    size_t *map; /* open addressing: receipts topic -> source index + 1 */
    size_t mapsize;
};

struct sim_rand *sim_engine_rand(struct sim_engine *e) { return &e->rand; }
const struct sim_engine_cfg *sim_engine_cfg(struct sim_engine *e) { return e->cfg; }
struct eg_rng *sim_engine_rng(struct sim_engine *e) { return e->rng; }

/* ---- state file -------------------------------------------------------------- */

static int db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "ehrgate-sim: state: %s\n", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int state_open(struct sim_engine *e)
{
    char path[1024];
    if (mkdir(e->cfg->o->state_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "ehrgate-sim: --state %s: %s\n", e->cfg->o->state_dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s.db", e->cfg->o->state_dir, e->cfg->kind);
    /* one process per state file: two would make the same seqs twice */
    {
        char lock[1100];
        snprintf(lock, sizeof lock, "%s.lock", path);
        e->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (e->lock_fd < 0 || flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            fprintf(stderr, "ehrgate-sim: %s is in use by another ehrgate-sim (use another "
                            "--state)\n",
                    path);
            return -1;
        }
    }
    if (sqlite3_open(path, &e->db) != SQLITE_OK) {
        fprintf(stderr, "ehrgate-sim: %s: %s\n", path, sqlite3_errmsg(e->db));
        return -1;
    }
    sqlite3_busy_timeout(e->db, 5000);
    if (db_exec(e->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                       "CREATE TABLE IF NOT EXISTS sources(id TEXT PRIMARY KEY,"
                       " next_seq INTEGER NOT NULL) WITHOUT ROWID;"
                       "CREATE TABLE IF NOT EXISTS pending(id TEXT NOT NULL, msg_id TEXT NOT NULL,"
                       " payload BLOB NOT NULL, sig TEXT, created INTEGER NOT NULL,"
                       " PRIMARY KEY(id, msg_id));") != 0)
        return -1;
    if (sqlite3_prepare_v2(e->db,
                           "INSERT OR REPLACE INTO pending(id, msg_id, payload, sig, created)"
                           " VALUES(?1, ?2, ?3, ?4, ?5)",
                           -1, &e->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(e->db, "DELETE FROM pending WHERE id = ?1 AND msg_id = ?2", -1,
                           &e->del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(e->db,
                           "INSERT INTO sources(id, next_seq) VALUES(?1, ?2)"
                           " ON CONFLICT(id) DO UPDATE SET next_seq = ?2",
                           -1, &e->upd, NULL) != SQLITE_OK) {
        fprintf(stderr, "ehrgate-sim: state: %s\n", sqlite3_errmsg(e->db));
        return -1;
    }
    return 0;
}

static void pend_free(struct sim_pend *p)
{
    free(p->payload);
    free(p->sig);
    memset(p, 0, sizeof *p);
}

static int pend_push(struct sim_source *s, struct sim_pend *p)
{
    if (s->npend == s->cap) {
        int ncap = s->cap ? s->cap * 2 : 8;
        struct sim_pend *np = realloc(s->pend, (size_t)ncap * sizeof *np);
        if (!np)
            return -1;
        s->pend = np;
        s->cap = ncap;
    }
    s->pend[s->npend++] = *p;
    return 0;
}

static void pend_remove(struct sim_engine *e, struct sim_source *s, int i)
{
    sqlite3_bind_text(e->del, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(e->del, 2, s->pend[i].msg_id, -1, SQLITE_STATIC);
    if (sqlite3_step(e->del) != SQLITE_DONE)
        fprintf(stderr, "ehrgate-sim: state: %s\n", sqlite3_errmsg(e->db));
    sqlite3_reset(e->del);
    pend_free(&s->pend[i]);
    memmove(&s->pend[i], &s->pend[i + 1], (size_t)(s->npend - i - 1) * sizeof *s->pend);
    s->npend--;
}

static int state_load(struct sim_engine *e)
{
    sqlite3_stmt *q1 = NULL, *q2 = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(e->db, "SELECT next_seq FROM sources WHERE id = ?1", -1, &q1,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(e->db,
                           "SELECT msg_id, payload, sig, created FROM pending WHERE id = ?1"
                           " ORDER BY created, rowid",
                           -1, &q2, NULL) != SQLITE_OK) {
        /* pending is WITHOUT ROWID-free: rowid exists */
        fprintf(stderr, "ehrgate-sim: state: %s\n", sqlite3_errmsg(e->db));
        sqlite3_finalize(q1);
        return -1;
    }
    for (size_t i = 0; i < e->n && rc == 0; i++) {
        struct sim_source *s = &e->src[i];
        sqlite3_bind_text(q1, 1, s->id, -1, SQLITE_STATIC);
        s->next_seq = sqlite3_step(q1) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(q1, 0) : 1;
        sqlite3_reset(q1);
        sqlite3_bind_text(q2, 1, s->id, -1, SQLITE_STATIC);
        while (sqlite3_step(q2) == SQLITE_ROW) {
            struct sim_pend p;
            const char *sig = (const char *)sqlite3_column_text(q2, 2);
            memset(&p, 0, sizeof p);
            snprintf(p.msg_id, sizeof p.msg_id, "%s", (const char *)sqlite3_column_text(q2, 0));
            p.len = (size_t)sqlite3_column_bytes(q2, 1);
            p.payload = malloc(p.len + 1);
            p.sig = sig ? strdup(sig) : NULL;
            p.created_ms = sqlite3_column_int64(q2, 3);
            if (!p.payload || (sig && !p.sig) || pend_push(s, &p) != 0) {
                pend_free(&p);
                rc = -1;
                break;
            }
            memcpy(p.payload, sqlite3_column_blob(q2, 1), p.len);
            p.payload[p.len] = 0;
            eg_sha256(p.payload, p.len, s->pend[s->npend - 1].sha);
        }
        sqlite3_reset(q2);
    }
    sqlite3_finalize(q1);
    sqlite3_finalize(q2);
    return rc;
}

/* ---- receipts ------------------------------------------------------------- */

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int map_build(struct sim_engine *e)
{
    e->mapsize = e->n * 2 + 1;
    if (!(e->map = calloc(e->mapsize, sizeof *e->map)))
        return -1;
    for (size_t i = 0; i < e->n; i++) {
        size_t h = hash(e->src[i].receipts) % e->mapsize;
        while (e->map[h])
            h = (h + 1) % e->mapsize;
        e->map[h] = i + 1;
    }
    return 0;
}

static struct sim_source *map_find(struct sim_engine *e, const char *topic)
{
    size_t h = hash(topic) % e->mapsize;
    while (e->map[h]) {
        struct sim_source *s = &e->src[e->map[h] - 1];
        if (strcmp(s->receipts, topic) == 0)
            return s;
        h = (h + 1) % e->mapsize;
    }
    return NULL;
}

static void on_receipt(struct sim_engine *e, struct sim_source *s, const cJSON *r)
{
    const char *status = egjson_str(r, "status"), *sha_hex = egjson_str(r, "payload_sha256");
    const char *msg_id = egjson_str(r, "msg_id"), *ack = egjson_str(r, "hl7_ack");
    uint8_t sha[32];
    int found = -1;

    if (!status)
        return;
    if (sha_hex && strlen(sha_hex) == 64 && eg_hex_decode(sha_hex, sha, 32) == 0)
        for (int i = 0; i < s->npend && found < 0; i++)
            if (memcmp(s->pend[i].sha, sha, 32) == 0)
                found = i;
    if (found < 0 && msg_id && !sha_hex && strcmp(status, "rejected") != 0)
        for (int i = 0; i < s->npend && found < 0; i++)
            if (strcmp(s->pend[i].msg_id, msg_id) == 0)
                found = i;
    if (ack) {
        if (strstr(ack, "MSA|AA|"))
            e->st.hl7_aa++;
        else if (strstr(ack, "MSA|AE|"))
            e->st.hl7_ae++;
        else if (strstr(ack, "MSA|AR|"))
            e->st.hl7_ar++;
    }
    /* every receipt is counted by its status and code; a message is settled
     * (removed from the buffer) by the first receipt that matches it */
    if (strcmp(status, "duplicate") == 0) {
        e->st.duplicate++;
    } else if (strcmp(status, "accepted") != 0) {
        const char *code = egjson_str(cJSON_GetObjectItemCaseSensitive(r, "error"), "code");
        for (size_t k = 0; code && k < NCODES; k++)
            if (strcmp(code, codes[k]) == 0)
                e->st.rejected_by[k]++;
        if (e->cfg->o->verbose)
            log_msg(EG_LOG_INFO, "%s msg %s rejected: %s", s->id, msg_id ? msg_id : "-",
                    code ? code : "?");
    }
    if (found < 0) {
        e->st.unmatched++; /* a resend's receipt after it settled, or a fault probe */
        return;
    }
    {
        const char *code = egjson_str(cJSON_GetObjectItemCaseSensitive(r, "error"), "code");
        if (code && strcmp(code, "rate_limited") == 0) {
            /* not settled: sent again later, with the message's backoff */
            return;
        }
    }
    if (strcmp(status, "accepted") == 0 || strcmp(status, "duplicate") == 0) {
        const char *m = s->pend[found].msg_id, *dash = strrchr(m, '-');
        e->st.accepted++;
        s->last_ok_seq = strtoull(dash ? dash + 1 : m, NULL, 10);
    } else {
        e->st.rejected++;
    }
    pend_remove(e, s, found);
}

static void drain_queue(struct sim_engine *e)
{
    size_t n;
    struct eg_msg *list = eg_queue_pop_many(e->q, 4096, 0, &n);
    for (struct eg_msg *m = list; m; m = m->next) {
        struct sim_source *s = map_find(e, m->topic);
        cJSON *root = NULL, *r;
        struct eg_error err;
        if (!s || egjson_parse(m->payload, m->len, &root, &err) != EG_OK) {
            cJSON_Delete(root);
            continue;
        }
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(root, "receipts"))
            on_receipt(e, s, r);
        cJSON_Delete(root);
    }
    eg_msg_free_list(list);
}

/* ---- sending ------------------------------------------------------------------ */

/* Sends p; the next try waits receipt_timeout, doubling with every attempt
 * up to 60 s, with jitter, so a backlog does not turn into a flood. */
static int send_pend(struct sim_engine *e, struct sim_source *s, struct sim_pend *p, int64_t now)
{
    int64_t wait = e->cfg->receipt_timeout_ms;
    if (sim_publish(&e->links[s->link], s->topic, p->payload, p->len, p->sig, NULL, NULL, 0) != 0)
        return -1;
    if (p->attempts++)
        e->st.resent++;
    else
        e->st.sent++;
    for (int k = 1; k < p->attempts && wait < 60000; k++)
        wait *= 2;
    if (wait > 60000)
        wait = 60000;
    p->sent_ms = now;
    p->next_ms = now + wait + (int64_t)(sim_rand_uniform(&e->rand) * (double)wait * 0.2);
    if (p->fault & SIM_F_DUPLICATE)
        sim_publish(&e->links[s->link], s->topic, p->payload, p->len, p->sig, NULL, NULL, 0);
    if (p->fault & SIM_F_DISCONNECT) {
        e->st.reconnects++;
        sim_link_bounce(&e->links[s->link]);
    }
    p->fault = 0; /* once */
    return 0;
}

static int roll(struct sim_engine *e, unsigned bit)
{
    int k = __builtin_ctz(bit);
    return (e->cfg->faults & bit) && sim_rand_uniform(&e->rand) < e->cfg->fault_p[k];
}

/* Makes, persists and sends the next message of s. */
static void produce(struct sim_engine *e, struct sim_source *s, sim_gen_fn gen, int64_t now)
{
    struct sim_pend p;
    unsigned fault = 0;
    char sig[EG_SIG_B64_MAX];
    size_t len = 0;
    char *payload;

    for (unsigned bit = 1; bit <= SIM_F_SKEW; bit <<= 1)
        if (roll(e, bit))
            fault |= bit;
    memset(&p, 0, sizeof p);
    payload = gen(e, s, s->next_seq, p.msg_id, &len, &fault);
    if (!payload)
        return;
    e->st.generated++;
    if (fault & SIM_F_MALFORMED)
        len = len > 2 ? len / 2 : 1;
    if ((fault & SIM_F_OVERSIZED) && e->cfg->max_payload > 0 &&
        (size_t)e->cfg->max_payload + 1 > len) {
        size_t big = (size_t)e->cfg->max_payload + 1;
        char *np = realloc(payload, big + 1);
        if (np) {
            memset(np + len, ' ', big - len);
            np[big] = 0;
            payload = np;
            len = big;
        }
    }
    if (s->key) {
        if (sim_sign(s->key, e->rng, s->topic, payload, len, sig, sizeof sig) != 0) {
            free(payload);
            return;
        }
        if (fault & SIM_F_BADSIG)
            sig[5] = sig[5] == 'A' ? 'B' : 'A';
    }
    if (fault & SIM_F_CONFLICT) {
        /* an earlier seq with other bytes: sent once, never buffered (its
         * original is), answered `conflict` */
        sim_publish(&e->links[s->link], s->topic, payload, len, s->key ? sig : NULL, NULL, NULL,
                    0);
        free(payload);
        return;
    }
    p.payload = payload;
    p.len = len;
    p.sig = s->key ? strdup(sig) : NULL;
    p.created_ms = eg_now_ms();
    p.fault = fault & (SIM_F_DUPLICATE | SIM_F_DISCONNECT); /* applied when sent */
    eg_sha256(payload, len, p.sha);
    s->next_seq++;
    /* bounded buffer: the oldest goes, counted */
    while (s->npend >= e->cfg->buffer) {
        e->st.dropped++;
        if (e->st.dropped == 1 || e->st.dropped % 1000 == 0)
            log_msg(EG_LOG_WARN, "buffer of %s full (%d): oldest unreceipted message dropped "
                                 "(%llu dropped so far)",
                    s->id, e->cfg->buffer, (unsigned long long)e->st.dropped);
        pend_remove(e, s, 0);
    }
    sqlite3_bind_text(e->ins, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(e->ins, 2, p.msg_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(e->ins, 3, p.payload, (int)p.len, SQLITE_STATIC);
    if (p.sig)
        sqlite3_bind_text(e->ins, 4, p.sig, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(e->ins, 4);
    sqlite3_bind_int64(e->ins, 5, p.created_ms);
    if (sqlite3_step(e->ins) != SQLITE_DONE)
        fprintf(stderr, "ehrgate-sim: state: %s\n", sqlite3_errmsg(e->db));
    sqlite3_reset(e->ins);
    sqlite3_bind_text(e->upd, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(e->upd, 2, (sqlite3_int64)s->next_seq);
    if (sqlite3_step(e->upd) != SQLITE_DONE)
        fprintf(stderr, "ehrgate-sim: state: %s\n", sqlite3_errmsg(e->db));
    sqlite3_reset(e->upd);
    if (pend_push(s, &p) != 0)
        pend_free(&p);
    /* sent after the tick's COMMIT: never on the air before it is stored */
    (void)now;
}

/* ---- the loop ---------------------------------------------------------------- */

static uint64_t pending_total(const struct sim_engine *e)
{
    uint64_t n = 0;
    for (size_t i = 0; i < e->n; i++)
        n += (uint64_t)e->src[i].npend;
    return n;
}

static int links_up(struct sim_engine *e)
{
    int up = 0;
    for (int k = 0; k < e->nlinks; k++)
        up += sim_link_ready(&e->links[k]);
    return up;
}

static void progress(struct sim_engine *e, int final, const char *phase)
{
    if (e->cfg->o->quiet && !final)
        return;
    sim_progress(final,
                 "%s %s: %zu on %d/%d conn | sent %llu resent %llu | accepted %llu dup %llu "
                 "rejected %llu | waiting %llu dropped %llu",
                 e->cfg->kind, phase, e->n, links_up(e), e->nlinks,
                 (unsigned long long)e->st.sent, (unsigned long long)e->st.resent,
                 (unsigned long long)e->st.accepted, (unsigned long long)e->st.duplicate,
                 (unsigned long long)e->st.rejected, (unsigned long long)pending_total(e),
                 (unsigned long long)e->st.dropped);
}

static void tick(struct sim_engine *e, sim_gen_fn gen, int generate, int64_t now)
{
    int budget = MAX_SENDS_PER_TICK;
    double interval = e->cfg->rate > 0 ? 1000.0 / e->cfg->rate : 0;

    for (int k = 0; k < e->nlinks; k++) {
        uint64_t g;
        sim_link_tick(&e->links[k]);
        g = e->links[k].m ? eg_mqtt_generation(e->links[k].m) : 0;
        if (g != e->links[k].gen && sim_link_ready(&e->links[k])) {
            /* (re)connected: everything unreceipted goes again, spread over
             * one receipt timeout rather than all at once */
            if (e->links[k].gen || e->st.generated)
                e->st.reconnects += e->links[k].gen != 0; /* bounces count themselves */
            e->links[k].gen = g;
            for (size_t i = 0; i < e->n; i++)
                if (e->src[i].link == k)
                    for (int j = 0; j < e->src[i].npend; j++) {
                        e->src[i].pend[j].sent_ms = 0;
                        e->src[i].pend[j].next_ms =
                            now + (int64_t)(sim_rand_uniform(&e->rand) *
                                            (double)e->cfg->receipt_timeout_ms);
                    }
        }
    }
    /* receipts settle and new messages are stored in one transaction ... */
    db_exec(e->db, "BEGIN");
    drain_queue(e);
    for (size_t i = 0; generate && interval > 0 && i < e->n; i++) {
        struct sim_source *s = &e->src[i];
        if (now >= s->next_due) {
            /* firmware keeps measuring while offline: the buffer holds it */
            produce(e, s, gen, now);
            s->next_due += (int64_t)(interval * (0.8 + 0.4 * sim_rand_uniform(&e->rand)));
            if (s->next_due < now - 5000)
                s->next_due = now; /* after a stall: no catch-up burst */
        }
    }
    if (db_exec(e->db, "COMMIT") != 0) {
        db_exec(e->db, "ROLLBACK");
        return; /* nothing is sent that is not stored */
    }
    /* ... and only then does anything go on the air: at most `window`
     * messages per source waiting for their receipt, each resent with its
     * own backoff */
    for (size_t i = 0; i < e->n && budget > 0; i++) {
        struct sim_source *s = &e->src[i];
        int recent = 0;
        if (!sim_link_ready(&e->links[s->link]))
            continue;
        for (int j = 0; j < s->npend; j++)
            recent += s->pend[j].sent_ms && now < s->pend[j].next_ms;
        for (int j = 0; j < s->npend && budget > 0 && recent < e->cfg->window; j++) {
            struct sim_pend *p = &s->pend[j];
            int was_recent = p->sent_ms && now < p->next_ms;
            if (was_recent || now < p->next_ms)
                continue;
            if (send_pend(e, s, p, now) != 0)
                break;
            recent++;
            budget--;
        }
    }
}

static void write_summary(struct sim_engine *e, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ehrgate-sim: --summary %s: %s\n", path, strerror(errno));
        return;
    }
    fprintf(f,
            "{\"kind\":\"%s\",\"sources\":%zu,\"generated\":%llu,\"sent\":%llu,\"resent\":%llu,"
            "\"accepted\":%llu,\"duplicate\":%llu,\"rejected\":%llu,\"dropped\":%llu,"
            "\"unmatched\":%llu,\"reconnects\":%llu,\"waiting\":%llu,"
            "\"hl7\":{\"AA\":%llu,\"AE\":%llu,\"AR\":%llu},\"rejected_by\":{",
            e->cfg->kind, e->n, (unsigned long long)e->st.generated,
            (unsigned long long)e->st.sent, (unsigned long long)e->st.resent,
            (unsigned long long)e->st.accepted, (unsigned long long)e->st.duplicate,
            (unsigned long long)e->st.rejected, (unsigned long long)e->st.dropped,
            (unsigned long long)e->st.unmatched, (unsigned long long)e->st.reconnects,
            (unsigned long long)pending_total(e), (unsigned long long)e->st.hl7_aa,
            (unsigned long long)e->st.hl7_ae, (unsigned long long)e->st.hl7_ar);
    for (size_t k = 0, first = 1; k < NCODES; k++)
        if (e->st.rejected_by[k]) {
            fprintf(f, "%s\"%s\":%llu", first ? "" : ",", codes[k],
                    (unsigned long long)e->st.rejected_by[k]);
            first = 0;
        }
    fprintf(f, "},\"next_seq\":{");
    for (size_t i = 0; i < e->n; i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", e->src[i].id,
                (unsigned long long)e->src[i].next_seq);
    fprintf(f, "}}\n");
    fclose(f);
}

int sim_engine_run(const struct sim_engine_cfg *cfg, struct sim_source *src, size_t n,
                   sim_gen_fn gen)
{
    struct sim_engine e;
    int code = 2;
    int64_t start = eg_mono_ms(), end, now;

    memset(&e, 0, sizeof e);
    e.lock_fd = -1;
    e.cfg = cfg;
    e.src = src;
    e.n = n;
    sim_rand_seed(&e.rand, cfg->o->seed);
    if (n == 0 || eg_rng_new(&e.rng) != EG_OK || state_open(&e) != 0 || state_load(&e) != 0 ||
        map_build(&e) != 0 || !(e.q = eg_queue_new(200000, (size_t)256 << 20)))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (strlen(src[i].receipts) >= EG_TOPIC_FILTER_MAX ||
            strlen(src[i].topic) + 1 >= sizeof src[i].topic) {
            fprintf(stderr, "ehrgate-sim: topics of %s too long (--topic-prefix)\n", src[i].id);
            goto out;
        }
    e.nlinks = (int)((n + (size_t)cfg->per_conn - 1) / (size_t)cfg->per_conn);
    if (!(e.links = calloc((size_t)e.nlinks, sizeof *e.links)))
        goto out;
    for (int k = 0; k < e.nlinks; k++) {
        static char filters[EG_MQTT_MAX_FILTERS][EG_TOPIC_FILTER_MAX];
        char client[160];
        int nf = 0;
        for (size_t i = (size_t)k * (size_t)cfg->per_conn; i < n && nf < cfg->per_conn; i++) {
            src[i].link = k;
            memcpy(filters[nf++], src[i].receipts, strlen(src[i].receipts) + 1); /* checked */
        }
        /* stable per fleet slice, so the broker's session survives a restart */
        snprintf(client, sizeof client, "sim-%s-%s", cfg->kind, src[(size_t)k * cfg->per_conn].id);
        if (cfg->cert_dir) {
            /* each source its own identity: the broker's ACL names it */
            struct sim_opts lo = *cfg->o;
            char cert[1024], key[1024];
            snprintf(cert, sizeof cert, "%s/%s.crt", cfg->cert_dir, src[k].id);
            snprintf(key, sizeof key, "%s/%s.key", cfg->cert_dir, src[k].id);
            lo.cert = cert;
            lo.keyfile = key;
            if (sim_link_open(&e.links[k], &lo, client, filters, nf, e.q, 3600) != 0)
                goto out;
        } else if (sim_link_open(&e.links[k], cfg->o, client, filters, nf, e.q, 3600) != 0) {
            goto out;
        }
    }
    now = eg_mono_ms();
    for (size_t i = 0; i < n; i++)
        src[i].next_due =
            now + (cfg->rate > 0 ? (int64_t)(sim_rand_uniform(&e.rand) * 1000.0 / cfg->rate) : 0);
    end = cfg->o->duration_s > 0 ? start + (int64_t)(cfg->o->duration_s * 1000) : INT64_MAX;
    if (!cfg->o->quiet)
        fprintf(stderr, "ehrgate-sim %s: %zu source(s) on %d connection(s) to %s; state in %s/\n",
                cfg->kind, n, e.nlinks, cfg->o->broker, cfg->o->state_dir);
    while (!sim_stop && (now = eg_mono_ms()) < end) {
        tick(&e, gen, 1, now);
        progress(&e, 0, "running");
        usleep(TICK_MS * 1000);
    }
    /* drain: no new messages; wait for the receipts of what is outstanding */
    sim_stop = 0;
    end = eg_mono_ms() + (int64_t)(cfg->drain_s * 1000);
    while (!sim_stop && pending_total(&e) > 0 && (now = eg_mono_ms()) < end) {
        tick(&e, gen, 0, now);
        progress(&e, 0, "draining");
        usleep(TICK_MS * 1000);
    }
    progress(&e, 1, "done");
    if (cfg->summary)
        write_summary(&e, cfg->summary);
    code = pending_total(&e) ? 1 : 0;
    if (code && !cfg->o->quiet)
        fprintf(stderr, "ehrgate-sim %s: %llu message(s) still without a receipt; they stay in "
                        "%s/ and are resent on the next run\n",
                cfg->kind, (unsigned long long)pending_total(&e), cfg->o->state_dir);
out:
    for (int k = 0; e.links && k < e.nlinks; k++)
        sim_link_close(&e.links[k]);
    free(e.links);
    if (e.q)
        eg_queue_free(e.q);
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < src[i].npend; j++)
            pend_free(&src[i].pend[j]);
        free(src[i].pend);
        src[i].pend = NULL;
        src[i].npend = src[i].cap = 0;
    }
    sqlite3_finalize(e.ins);
    sqlite3_finalize(e.del);
    sqlite3_finalize(e.upd);
    if (e.db)
        sqlite3_close(e.db);
    free(e.map);
    eg_rng_free(e.rng);
    if (e.lock_fd >= 0)
        close(e.lock_fd); /* releases the lock */
    return code;
}

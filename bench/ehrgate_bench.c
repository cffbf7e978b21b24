/*
 * ehrgate_bench.c — `ehrgate-bench`: measures the gateway against the raw
 * broker in one run on loopback (issue 8; method in docs/performance.md).
 *
 *  1. raw relay: publisher -> Mosquitto -> subscriber, QoS 1, through the
 *     same client library (eg_mqtt over Paho) and with the same window of
 *     messages in flight, at the telemetry payload's size and others;
 *  2. the gateway at maximum rate (a closed loop: --window messages sent and
 *     not yet receipted) for 10, 1,000 and 10,000 devices: accepted
 *     records/s, receipt latency, device->feed latency, sealing delay, the
 *     gateway's CPU and peak RSS, and the ratio gateway/raw;
 *  3. on the headline fleet: the same load paced at half the maximum rate,
 *     signed telemetry, FHIR Bundles and HL7 v2 from hospitals, and proof
 *     requests/s; then `ehrctl verify`, Merkle-only and full;
 *  4. with --fill: a database grown directly (ehrgate-fill) to each size,
 *     the gateway's startup time on it, and the ingest rate on it.
 *
 * Every figure is measured here, in this run; nothing is asserted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "bench_setup.h"
#include <sqlite3.h>

#include "eg_codec.h"
#include "eg_key.h"
#include "eg_log.h"
#include "eg_time.h"
#include "sim_hospital_msgs.h"

#define MAX_CONNS 32
#define GRANTEE "authority"

enum kind { K_RAW, K_TELEMETRY, K_SIGNED, K_FHIR, K_HL7, K_PROOF };
static const char *const kind_name[] = {"raw relay", "telemetry", "signed telemetry",
                                        "FHIR Bundle", "HL7 v2 ORU", "proof requests"};

/* ---- options --------------------------------------------------------------- */
static struct {
    const char *work, *json, *mosquitto, *bin;
    double duration, warmup;
    long devices[8];
    int ndevices;
    long main_devices, conns, window, patients, hospitals, signed_msgs;
    long sizes[8];
    int nsizes;
    long long fill[8];
    int nfill;
    const char *paths; /* headline extras to run */
    const char *gw_opts[16];
    int ngw_opts;
    int keep, quick, reuse_fill;
} opt = {.duration = 10, .warmup = 2, .devices = {10, 1000, 10000}, .ndevices = 3,
         .main_devices = 1000, .conns = 4, .window = 2000, .patients = 1000, .hospitals = 4,
         .signed_msgs = 6000, .sizes = {1024, 4096}, .nsizes = 2};

static volatile sig_atomic_t stop_flag;
static int failures; /* checks that failed: lost messages, rejections, verify, exit codes */
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ehrgate-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- results ----------------------------------------------------------------- */
struct result {
    enum kind kind;
    char label[48];
    long devices;
    size_t payload;    /* typical payload bytes */
    double target;     /* paced rate, 0 = max */
    double msgs_s, recs_s;
    uint64_t sent, accepted, rejected, lost, feed;
    double r50, r99, f50, f99, s50, s99, smax; /* ms */
    double gw_cpu, bench_cpu, broker_cpu;      /* % of one core */
    double gw_rss_mb, gw_hwm_mb;
};
static struct result results[64];
static int nresults;

static struct {
    char label[48];
    uint64_t entries;
    double merkle_eps, sig_bps, chain_s, full_eps, full_s;
} verifies[8];
static int nverifies;

static struct {
    long long entries;
    double startup_s, rate, db_mb;
} fills[8];
static int nfills;

/* ---- the broker --------------------------------------------------------------- */
static char broker_uri[64];
static pid_t broker_pid;
static const char *tool_mosquitto = "mosquitto";
static char tool_gateway[PATH_MAX], tool_ctl[PATH_MAX], tool_fill[PATH_MAX];

static int start_broker(void)
{
    char conf[PATH_MAX], log[PATH_MAX];
    char *argv[] = {(char *)tool_mosquitto, "-c", conf, NULL};
    int port = bench_free_port();
    FILE *f;

    snprintf(conf, sizeof conf, "%s/mosquitto.conf", opt.work);
    snprintf(log, sizeof log, "%s/mosquitto.log", opt.work);
    if (!port || !(f = fopen(conf, "w")))
        return -1;
    /* as config/mosquitto.conf: a Receive Maximum of 1000 (docs/architecture.md) */
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
               "max_queued_messages 100000\nmax_inflight_messages 1000\n", port);
    fclose(f);
    snprintf(broker_uri, sizeof broker_uri, "mqtt://127.0.0.1:%d", port);
    if ((broker_pid = bench_spawn(argv, log)) < 0)
        return -1;
    for (int i = 0; i < 100; i++) {
        usleep(50000);
        if (waitpid(broker_pid, NULL, WNOHANG) == broker_pid) {
            broker_pid = -1;
            break;
        }
        if (bench_port_open(port))
            return 0;
    }
    say("mosquitto (%s) did not start: see %s", tool_mosquitto, log);
    return -1;
}

/* ---- a load run: sources -> broker -> (gateway|subscriber) -------------------- */
struct run {
    struct link load[MAX_CONNS], rx, fx;
    int nload;
    pid_t gw_pid;
    char dir[PATH_MAX], db[PATH_MAX + 16], key[PATH_MAX + 16], mk[PATH_MAX + 16];
    char conf[PATH_MAX + 16], log[PATH_MAX + 16];
    uint64_t seq_base, sealed_to; /* sealed_to: one past the last sealed seq seen */
    int64_t *send_us;             /* by message number k */
    uint8_t *done;                /* receipt (or relay) seen for k */
    size_t kcap;
    uint64_t k_next;
    uint64_t k_off; /* message ids on the wire are k + k_off: unique across runs on one database */
    int64_t *commit_us; /* receipt arrival by seq - seq_base */
    size_t ccap;
    uint8_t *fed; /* feed message seen, by seq - seq_base */
    size_t fcap;
    struct eg_key *key_signer;
    struct eg_rng *rng;
    long devices;
    struct sim_rand rand;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 65536;
    void *n;
    if (need < *cap)
        return 0;
    while (c <= need)
        c *= 2;
    if (!(n = realloc(*p, c * elem)))
        return -1;
    memset((char *)n + *cap * elem, 0, (c - *cap) * elem);
    *p = n;
    *cap = c;
    return 0;
}

static int track_send(struct run *r, uint64_t k)
{
    size_t cap = r->kcap;
    if (grow((void **)&r->send_us, &cap, k, sizeof *r->send_us) ||
        grow((void **)&r->done, &r->kcap, k, sizeof *r->done))
        return -1;
    r->send_us[k] = eg_mono_us();
    return 0;
}

/* per-phase counters */
struct phase {
    enum kind kind;
    uint64_t k0;                 /* first message number of the phase */
    uint64_t sent, answered;     /* answered: receipts (or deliveries, replies) */
    uint64_t acc_win, recs_win;  /* accepted messages and records inside the window */
    uint64_t accepted, rejected, feed;
    double t0, t_win, t_end;
    int64_t win_lo_us, win_hi_us; /* latency samples: messages sent in the window */
    int64_t last_answer_us;
    struct samples rlat, flat, seal;
    const char *first_error;
    char err_buf[160];
};

static int in_window(const struct phase *ph, const struct run *r, uint64_t k)
{
    return r->send_us[k] >= ph->win_lo_us && r->send_us[k] <= ph->win_hi_us;
}

static void note_error(struct phase *ph, const char *p, const char *end)
{
    const char *c = memmem(p, (size_t)(end - p), "\"code\":\"", 8), *q;
    if (ph->first_error || !c)
        return;
    c += 8;
    q = memchr(c, '"', (size_t)(end - c));
    snprintf(ph->err_buf, sizeof ph->err_buf, "%.*s", q ? (int)(q - c) : 0, c);
    ph->first_error = ph->err_buf;
}

/* Receipts: {"gateway":..,"receipts":[{"msg_id":"K",..,"status":"accepted","entries":[{"entry_id":"gw1-S",..}]},..]} */
static void on_receipts(struct run *r, struct phase *ph, const struct eg_msg *m)
{
    const char *p = (const char *)m->payload, *end = p + m->len;
    const char *key = "\"msg_id\":\"";
    double now = (double)m->received_us / 1e6;
    while ((p = memmem(p, (size_t)(end - p), key, strlen(key)))) {
        const char *next = memmem(p + 1, (size_t)(end - p - 1), key, strlen(key));
        const char *seg_end = next ? next : end, *q;
        uint64_t k, seq, recs = 0;
        int accepted;
        if (!scan_u64(p, seg_end, key, &k) || k < r->k_off || (k -= r->k_off) < ph->k0 ||
            k >= r->k_next || r->done[k]) {
            p = seg_end;
            continue;
        }
        r->done[k] = 1;
        ph->answered++;
        ph->last_answer_us = m->received_us;
        accepted = memmem(p, (size_t)(seg_end - p), "\"status\":\"accepted\"", 19) != NULL;
        for (q = p; (q = scan_u64(q, seg_end, "\"entry_id\":\"gw1-", &seq));) {
            recs++;
            if (seq >= r->seq_base &&
                grow((void **)&r->commit_us, &r->ccap, seq - r->seq_base, sizeof *r->commit_us) == 0)
                r->commit_us[seq - r->seq_base] = m->received_us;
        }
        if (in_window(ph, r, k))
            samples_add(&ph->rlat, (double)(m->received_us - r->send_us[k]) / 1000.0);
        if (accepted) {
            ph->accepted++;
            if (now >= ph->t_win && now <= ph->t_end) {
                ph->acc_win++;
                ph->recs_win += recs;
            }
        } else {
            ph->rejected++;
            note_error(ph, p, seg_end);
        }
        p = seg_end;
    }
}

/* A feed message: the entry bytes; its source msg_id is our message number. */
static void on_feed(struct run *r, struct phase *ph, const struct eg_msg *m)
{
    const char *p = (const char *)m->payload, *end = p + m->len;
    uint64_t k, seq;
    /* the entry's first "seq" is its own; the first "msg_id" is its source's */
    if (!scan_u64(p, end, "\"seq\":", &seq) || seq < r->seq_base ||
        !scan_u64(p, end, "\"msg_id\":\"", &k) || k < r->k_off || (k -= r->k_off) < ph->k0 ||
        k >= r->k_next ||
        grow((void **)&r->fed, &r->fcap, seq - r->seq_base, 1) != 0 || r->fed[seq - r->seq_base])
        return; /* not this phase's, or a repeat (feeds are at least once) */
    r->fed[seq - r->seq_base] = 1;
    ph->feed++;
    if (in_window(ph, r, k))
        samples_add(&ph->flat, (double)(m->received_us - r->send_us[k]) / 1000.0);
}

/* A block: every entry in it waited from its commit (its receipt) until now. */
static void on_block(struct run *r, struct phase *ph, const struct eg_msg *m)
{
    const char *p = (const char *)m->payload, *end = p + m->len;
    uint64_t first, count;
    if (!scan_u64(p, end, "\"first_seq\":", &first) || !scan_u64(p, end, "\"count\":", &count))
        return;
    if (first + count > r->sealed_to)
        r->sealed_to = first + count;
    for (uint64_t s = first; s < first + count; s++) {
        if (s < r->seq_base || s - r->seq_base >= r->ccap || !r->commit_us[s - r->seq_base])
            continue;
        samples_add(&ph->seal, (double)(m->received_us - r->commit_us[s - r->seq_base]) / 1000.0);
        r->commit_us[s - r->seq_base] = 0;
    }
}

static void on_relayed(struct run *r, struct phase *ph, const struct eg_msg *m)
{
    uint64_t k;
    double now = (double)m->received_us / 1e6;
    if (!scan_u64((const char *)m->payload, (const char *)m->payload + m->len, "k=", &k) ||
        k < ph->k0 || k >= r->k_next || r->done[k])
        return;
    r->done[k] = 1;
    ph->answered++;
    ph->accepted++;
    ph->last_answer_us = m->received_us;
    if (now >= ph->t_win && now <= ph->t_end) {
        ph->acc_win++;
        ph->recs_win++;
    }
    if (in_window(ph, r, k))
        samples_add(&ph->rlat, (double)(m->received_us - r->send_us[k]) / 1000.0);
}

static void on_reply(struct run *r, struct phase *ph, const struct eg_msg *m)
{
    uint64_t k = 0;
    double now = (double)m->received_us / 1e6;
    if (m->corr_len != 8)
        return;
    for (int i = 0; i < 8; i++)
        k = k << 8 | m->corr[i];
    if (k < ph->k0 || k >= r->k_next || r->done[k])
        return;
    r->done[k] = 1;
    ph->answered++;
    ph->last_answer_us = m->received_us;
    if (in_window(ph, r, k))
        samples_add(&ph->rlat, (double)(m->received_us - r->send_us[k]) / 1000.0);
    if (memmem(m->payload, m->len, "\"status\":\"ok\"", 13)) {
        ph->accepted++;
        if (now >= ph->t_win && now <= ph->t_end)
            ph->acc_win++;
    } else {
        ph->rejected++;
        note_error(ph, (const char *)m->payload, (const char *)m->payload + m->len);
    }
}

static void drain(struct run *r, struct phase *ph, int wait_ms)
{
    struct link *ls[2] = {&r->rx, &r->fx};
    for (int i = 0; i < 2; i++) {
        size_t n;
        struct eg_msg *list, *m;
        if (!ls[i]->q)
            continue;
        list = eg_queue_pop_many(ls[i]->q, 4096, i == 0 ? wait_ms : 0, &n);
        for (m = list; m; m = m->next) {
            const char *t = m->topic;
            size_t tl = strlen(t);
            if (ph->kind == K_RAW)
                on_relayed(r, ph, m);
            else if (tl > 9 && strcmp(t + tl - 9, "/receipts") == 0)
                on_receipts(r, ph, m);
            else if (strncmp(t, "ehr/feed/", 9) == 0)
                on_feed(r, ph, m);
            else if (tl > 7 && strcmp(t + tl - 7, "/blocks") == 0)
                on_block(r, ph, m);
            else if (strstr(t, "/replies"))
                on_reply(r, ph, m);
        }
        eg_msg_free_list(list);
    }
}

/* ---- message makers ------------------------------------------------------------- */
struct outmsg {
    char topic[96];
    char *payload;
    size_t len;
    char props[320];
};

static size_t raw_size = 1024;

static char **signed_payloads;
static char (*signed_sigs)[200];
static uint64_t signed_base, signed_count;
static long signed_devices = 100;

static int make_msg(struct run *r, enum kind kind, uint64_t k, struct outmsg *o)
{
    char ts[EG_TIME_STRLEN], id[32], mrn[64];
    int64_t now = eg_now_ms();
    o->props[0] = 0;
    switch (kind) {
    case K_RAW:
        snprintf(o->topic, sizeof o->topic, "bench/raw/%llu", (unsigned long long)(k % 1000));
        if (!(o->payload = malloc(raw_size + 1)))
            return -1;
        memset(o->payload, 'x', raw_size);
        snprintf(o->payload, raw_size, "k=%llu;", (unsigned long long)k);
        o->payload[strlen(o->payload)] = 'x';
        o->len = raw_size;
        return 0;
    case K_TELEMETRY:
        eg_time_format(now, ts);
        snprintf(o->topic, sizeof o->topic, "ehr/device/BD%llu/telemetry",
                 (unsigned long long)(k % (uint64_t)r->devices));
        if (asprintf(&o->payload, "{\"seq\":%llu,\"ts\":\"%s\",\"readings\":[{\"type\":\"heart_rate\",\"value\":%llu}]}",
                     (unsigned long long)(k + r->k_off), ts, (unsigned long long)(55 + k % 60)) < 0)
            return -1;
        o->len = strlen(o->payload);
        return 0;
    case K_SIGNED:
        if (k - signed_base >= signed_count)
            return 1; /* the pre-signed messages are used up */
        snprintf(o->topic, sizeof o->topic, "ehr/device/BS%llu/telemetry",
                 (unsigned long long)(k % (uint64_t)signed_devices));
        if (!(o->payload = strdup(signed_payloads[k - signed_base])))
            return -1;
        o->len = strlen(o->payload);
        snprintf(o->props, sizeof o->props, "{\"user\":[[\"sig\",\"%s\"]]}", signed_sigs[k - signed_base]);
        return 0;
    case K_FHIR:
    case K_HL7:
        snprintf(id, sizeof id, "BH%llu", (unsigned long long)(k % (uint64_t)opt.hospitals));
        snprintf(mrn, sizeof mrn, "MRN-%s-%llu", id, (unsigned long long)(k % (uint64_t)opt.patients));
        snprintf(o->topic, sizeof o->topic, "ehr/hospital/%s/records", id);
        {
            char msg_id[24];
            snprintf(msg_id, sizeof msg_id, "%llu", (unsigned long long)(k + r->k_off));
            o->payload = kind == K_FHIR ? sim_hosp_fhir_bundle(id, msg_id, mrn, now - 60000, &r->rand, &o->len)
                                        : sim_hosp_hl7_oru(id, msg_id, mrn, now - 60000, &r->rand, &o->len);
        }
        return o->payload ? 0 : -1;
    case K_PROOF: {
        uint64_t span = r->sealed_to > r->seq_base ? r->sealed_to - r->seq_base : 1;
        uint64_t seq = r->seq_base + sim_rand_below(&r->rand, span);
        snprintf(o->topic, sizeof o->topic, "ehr/anchor/gw1/request");
        if (asprintf(&o->payload, "{\"op\":\"proof\",\"entry_id\":\"gw1-%llu\"}", (unsigned long long)seq) < 0)
            return -1;
        o->len = strlen(o->payload);
        snprintf(o->props, sizeof o->props, "{\"resp\":\"ehr/anchor/gw1/replies/bench\",\"corr\":\"%016llx\"}",
                 (unsigned long long)k);
        return 0;
    }
    }
    return -1;
}

/* Pre-signs the signed-telemetry messages, so that signing (a device's
 * work) does not share the measured seconds. */
static int presign(struct run *r, uint64_t base, uint64_t count)
{
    char ts[EG_TIME_STRLEN];
    double t0 = bench_now();
    signed_base = base;
    signed_count = count;
    signed_payloads = calloc(count, sizeof *signed_payloads);
    signed_sigs = calloc(count, sizeof *signed_sigs);
    if (!signed_payloads || !signed_sigs)
        return -1;
    eg_time_format(eg_now_ms(), ts);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t k = base + i;
        char topic[96];
        snprintf(topic, sizeof topic, "ehr/device/BS%llu/telemetry", (unsigned long long)(k % (uint64_t)signed_devices));
        if (asprintf(&signed_payloads[i], "{\"seq\":%llu,\"ts\":\"%s\",\"readings\":[{\"type\":\"spo2\",\"value\":%llu}]}",
                     (unsigned long long)(k + r->k_off), ts, (unsigned long long)(90 + k % 10)) < 0)
            return -1;
        if (eg_key_sign_topic(r->key_signer, r->rng, topic, signed_payloads[i], strlen(signed_payloads[i]),
                              signed_sigs[i], sizeof signed_sigs[i]) != EG_OK)
            return -1;
    }
    say("signed %llu telemetry messages in %.1f s (before the phase)", (unsigned long long)count, bench_now() - t0);
    return 0;
}

static void presign_free(void)
{
    for (uint64_t i = 0; signed_payloads && i < signed_count; i++)
        free(signed_payloads[i]);
    free(signed_payloads);
    free(signed_sigs);
    signed_payloads = NULL;
    signed_sigs = NULL;
    signed_count = 0;
}

/* ---- one measured phase ------------------------------------------------------------ */
static void proc_pair(pid_t gw, struct proc_sample s[3])
{
    proc_read(gw, &s[0]);
    proc_read(0, &s[1]);
    proc_read(broker_pid, &s[2]);
}

static struct result *phase_run(struct run *r, enum kind kind, double rate, const char *label)
{
    struct phase ph;
    struct result *res = &results[nresults < 63 ? nresults++ : 63];
    struct proc_sample a0[3], a[3], b[3];
    double now, last_print = 0, drain_until = 0, win, t_a = 0, t_b = 0;
    long window = kind == K_PROOF ? 200 : opt.window;
    size_t bytes = 0;
    int ci = 0, have_a = 0, have_b = 0, early = 0;

    memset(&ph, 0, sizeof ph);
    memset(res, 0, sizeof *res);
    ph.kind = kind;
    ph.k0 = r->k_next;
    res->kind = kind;
    res->devices = kind == K_FHIR || kind == K_HL7 ? opt.hospitals
                   : kind == K_SIGNED              ? signed_devices
                   : kind == K_RAW                 ? opt.conns
                                                   : r->devices;
    res->target = rate;
    snprintf(res->label, sizeof res->label, "%s", label);
    say("%s: %.0f s%s", label, opt.duration, rate > 0 ? " (paced)" : " at maximum rate");
    proc_pair(r->gw_pid, a0);
    ph.t0 = bench_now();
    ph.t_win = ph.t0 + opt.warmup;
    ph.t_end = ph.t0 + opt.duration;
    ph.win_lo_us = (int64_t)(ph.t_win * 1e6);
    ph.win_hi_us = (int64_t)(ph.t_end * 1e6);
    while (!stop_flag) {
        uint64_t sent_now = 0;
        now = bench_now();
        if (now >= ph.t_win && !have_a && !early) {
            proc_pair(r->gw_pid, a);
            t_a = now;
            have_a = 1;
        }
        if (now < ph.t_end && !early) {
            uint64_t allowed = ph.answered + (uint64_t)window;
            if (rate > 0) {
                uint64_t due = (uint64_t)((now - ph.t0) * rate) + 1;
                allowed = due < allowed ? due : allowed;
            }
            while (ph.sent < allowed && sent_now < 200) {
                struct outmsg o;
                uint64_t k = r->k_next;
                int mk = make_msg(r, kind, k, &o);
                if (mk > 0) {
                    /* out of pre-made messages: this phase measures them
                     * all, from the first send to the last answer */
                    early = 1;
                    ph.t_win = ph.t0;
                    ph.win_lo_us = (int64_t)(ph.t0 * 1e6);
                    break;
                }
                if (mk < 0 || track_send(r, k) != 0) {
                    say("%s: cannot make a message (out of memory?)", label);
                    stop_flag = 1;
                    break;
                }
                if (link_pub(&r->load[ci], o.topic, o.payload, o.len, o.props[0] ? o.props : NULL) != 0) {
                    free(o.payload);
                    break; /* not queued by Paho: try again on the next turn */
                }
                bytes += o.len;
                free(o.payload);
                ci = (ci + 1) % r->nload;
                r->k_next++;
                ph.sent++;
                sent_now++;
            }
        } else {
            if (!have_b) {
                proc_pair(r->gw_pid, b);
                t_b = now;
                have_b = 1;
                if (!early)
                    ph.t_end = now;
                drain_until = now + 60;
            }
            if (ph.answered >= ph.sent || now > drain_until)
                break;
        }
        /* wait for answers when there is nothing to send now (no spinning:
         * the bench shares the two cores with the broker and the gateway) */
        drain(r, &ph, sent_now ? 0 : 1);
        if (now - last_print >= 1) {
            last_print = now;
            fprintf(stderr, "\r  %.0f s: %llu sent, %llu answered, %llu accepted, %llu rejected   ",
                    now - ph.t0, (unsigned long long)ph.sent, (unsigned long long)ph.answered,
                    (unsigned long long)ph.accepted, (unsigned long long)ph.rejected);
        }
    }
    if (!have_a) { /* stopped early (Ctrl-C, or the pool ran out in the warm-up) */
        memcpy(a, a0, sizeof a);
        t_a = ph.t0;
    }
    if (early) {
        /* a finite load: the window ends with its last answer */
        proc_pair(r->gw_pid, b);
        memcpy(a, a0, sizeof a);
        t_a = ph.t0;
        ph.t_end = ph.last_answer_us ? (double)ph.last_answer_us / 1e6 : bench_now();
        t_b = ph.t_end;
        ph.acc_win = ph.accepted;
        ph.recs_win = ph.accepted; /* one reading per pre-signed message */
    } else if (!have_b) {
        proc_pair(r->gw_pid, b);
        t_b = bench_now();
    }
    /* the feed and the blocks trail the receipts: wait for the feed of
     * every accepted device record (up to 10 s), then for the block */
    {
        double until = bench_now() + (kind == K_RAW || kind == K_PROOF ? 0.2 : 10);
        int need_feed = kind == K_TELEMETRY || kind == K_SIGNED;
        while (bench_now() < until && !stop_flag) {
            drain(r, &ph, 20);
            if (need_feed && ph.feed >= ph.accepted) {
                until = bench_now() + 1.5; /* then the last block */
                need_feed = 0;
            }
        }
    }
    fprintf(stderr, "\n");
    win = ph.t_end - ph.t_win;
    if (win > 0.001) {
        res->msgs_s = (double)ph.acc_win / win;
        res->recs_s = (double)ph.recs_win / win;
    }
    if (t_b - t_a > 0.001) {
        res->gw_cpu = r->gw_pid > 0 ? 100.0 * (b[0].cpu_s - a[0].cpu_s) / (t_b - t_a) : 0;
        res->bench_cpu = 100.0 * (b[1].cpu_s - a[1].cpu_s) / (t_b - t_a);
        res->broker_cpu = 100.0 * (b[2].cpu_s - a[2].cpu_s) / (t_b - t_a);
    }
    res->gw_rss_mb = (double)b[0].rss_kb / 1024.0;
    res->gw_hwm_mb = (double)b[0].hwm_kb / 1024.0;
    res->payload = ph.sent ? bytes / ph.sent : 0;
    res->sent = ph.sent;
    res->accepted = ph.accepted;
    res->rejected = ph.rejected;
    res->lost = ph.sent - ph.answered;
    res->feed = ph.feed;
    res->r50 = samples_pct(&ph.rlat, 50);
    res->r99 = samples_pct(&ph.rlat, 99);
    res->f50 = samples_pct(&ph.flat, 50);
    res->f99 = samples_pct(&ph.flat, 99);
    res->s50 = samples_pct(&ph.seal, 50);
    res->s99 = samples_pct(&ph.seal, 99);
    res->smax = samples_pct(&ph.seal, 100);
    /* what was not sealed yet does not count against the next phase */
    if (r->commit_us)
        memset(r->commit_us, 0, r->ccap * sizeof *r->commit_us);
    if (!stop_flag && (ph.rejected || res->lost ||
                       ((kind == K_TELEMETRY || kind == K_SIGNED) && ph.feed < ph.accepted)))
        failures++;
    if (ph.rejected)
        say("%s: %llu rejected (first error: %s)", label, (unsigned long long)ph.rejected,
            ph.first_error ? ph.first_error : "?");
    if (res->lost)
        say("%s: %llu messages not answered within 60 s", label, (unsigned long long)res->lost);
    if ((kind == K_TELEMETRY || kind == K_SIGNED) && ph.feed < ph.accepted)
        say("%s: %llu accepted records, only %llu on the feed", label,
            (unsigned long long)ph.accepted, (unsigned long long)ph.feed);
    say("%s: %.0f msgs/s, %.0f records/s; latency p50 %.1f ms p99 %.1f ms", label, res->msgs_s,
        res->recs_s, res->r50, res->r99);
    samples_free(&ph.rlat);
    samples_free(&ph.flat);
    samples_free(&ph.seal);
    return res;
}

/* ---- links ---------------------------------------------------------------------------- */
static int open_load(struct run *r, const char *tag)
{
    char cid[64];
    r->nload = (int)opt.conns;
    for (int i = 0; i < r->nload; i++) {
        snprintf(cid, sizeof cid, "bench-%s-load-%d", tag, i);
        if (link_open(&r->load[i], broker_uri, cid, NULL, 0) != 0)
            return -1;
    }
    return 0;
}

static void close_run(struct run *r)
{
    for (int i = 0; i < r->nload; i++)
        link_close(&r->load[i]);
    r->nload = 0;
    link_close(&r->rx);
    link_close(&r->fx);
    free(r->send_us);
    free(r->done);
    free(r->commit_us);
    free(r->fed);
    r->send_us = NULL;
    r->done = NULL;
    r->commit_us = NULL;
    r->fed = NULL;
    r->kcap = r->ccap = r->fcap = 0;
}

/* ---- raw relay ------------------------------------------------------------------------ */
static int raw_relay(size_t size)
{
    struct run r;
    static const char *const filt[] = {"bench/raw/#"};
    char label[48];
    int rc = -1;
    memset(&r, 0, sizeof r);
    r.gw_pid = -1;
    raw_size = size < 16 ? 16 : size;
    if (open_load(&r, "raw") != 0 || link_open(&r.rx, broker_uri, "bench-raw-sub", filt, 1) != 0)
        goto out;
    snprintf(label, sizeof label, "raw relay %zu B", raw_size);
    phase_run(&r, K_RAW, 0, label);
    rc = 0;
out:
    close_run(&r);
    return rc;
}

/* ---- the gateway ------------------------------------------------------------------------ */
static void remove_db(const char *dir)
{
    static const char *const names[] = {"ehrgate.db", "ehrgate.db-wal", "ehrgate.db-shm",
                                        "gateway.key", "gateway.pub", "master.key", NULL};
    char path[PATH_MAX + 32];
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
}

static int gw_prepare(struct run *r, const char *dir, long devices, uint64_t *setup_s)
{
    struct bench_setup s;
    FILE *f;
    double t0 = bench_now();
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    mkdir(dir, 0700);
    snprintf(r->db, sizeof r->db, "%s/ehrgate.db", dir);
    snprintf(r->key, sizeof r->key, "%s/gateway.key", dir);
    snprintf(r->mk, sizeof r->mk, "%s/master.key", dir);
    snprintf(r->conf, sizeof r->conf, "%s/ehrgate.conf", dir);
    snprintf(r->log, sizeof r->log, "%s/ehrgate.log", dir);
    memset(&s, 0, sizeof s);
    s.db = r->db;
    s.key_path = r->key;
    s.master_key = r->mk;
    s.grantee = GRANTEE;
    s.patients = (uint64_t)opt.patients;
    s.devices = (uint64_t)devices;
    s.signed_devices = (uint64_t)signed_devices;
    s.hospitals = (uint64_t)opt.hospitals;
    s.key = r->key_signer;
    s.rng = r->rng;
    r->devices = devices;
    if (bench_setup_db(&s, &r->seq_base) != 0)
        return -1;
    r->sealed_to = r->seq_base;
    /* message ids continue above every earlier run's on this database (ms
     * since the epoch x 1000 stays below 2^53) */
    r->k_off = (uint64_t)eg_now_ms() * 1000 - r->k_next;
    /* per-seq bookkeeping starts again at the new seq_base */
    free(r->commit_us);
    free(r->fed);
    r->commit_us = NULL;
    r->fed = NULL;
    r->ccap = r->fcap = 0;
    if (setup_s)
        *setup_s = (uint64_t)(bench_now() - t0);
    if (!(f = fopen(r->conf, "w")))
        return -1;
    /* the defaults, except: no per-source rate limit (the load is many
     * times 100 messages/s per source), no session kept for a gateway that
     * the bench will not restart, and warnings only in the log */
    fprintf(f, "broker = %s\ndb = %s\nkey = %s\nmaster_key = %s\nname = gw1\n"
               "grantee = " GRANTEE ":public-health\nsource_rate = 0\nsession_expiry_s = 0\n"
               "log_level = warn\n",
            broker_uri, r->db, r->key, r->mk);
    for (int i = 0; i < opt.ngw_opts; i++) {
        const char *eq = strchr(opt.gw_opts[i], '=');
        fprintf(f, "%.*s = %s\n", (int)(eq - opt.gw_opts[i]), opt.gw_opts[i], eq + 1);
    }
    fclose(f);
    return 0;
}

/* Starts the gateway; returns the seconds until its retained status said
 * online, or -1. */
static double gw_start(struct run *r)
{
    char *argv[] = {tool_gateway, "-c", r->conf, NULL};
    static const char *const rxf[] = {"ehr/device/+/receipts", "ehr/hospital/+/receipts"};
    static const char *const fxf[] = {"ehr/feed/" GRANTEE, "ehr/anchor/gw1/blocks",
                                      "ehr/anchor/gw1/replies/bench", "ehr/gateway/gw1/status"};
    double t0, end;
    if (!r->rx.m && (link_open(&r->rx, broker_uri, "bench-rx", rxf, 2) != 0 ||
                     link_open(&r->fx, broker_uri, "bench-fx", fxf, 4) != 0))
        return -1;
    /* old retained statuses are not news */
    for (size_t n = 1; n;)
        eg_msg_free_list(eg_queue_pop_many(r->fx.q, 4096, 50, &n));
    t0 = bench_now();
    if ((r->gw_pid = bench_spawn(argv, r->log)) < 0)
        return -1;
    end = t0 + 600;
    while (bench_now() < end && !stop_flag) {
        size_t n;
        struct eg_msg *list = eg_queue_pop_many(r->fx.q, 64, 100, &n), *m;
        int online = 0;
        for (m = list; m; m = m->next)
            online |= strstr(m->topic, "/status") && memmem(m->payload, m->len, "\"online\"", 8);
        eg_msg_free_list(list);
        if (online)
            return bench_now() - t0;
        if (waitpid(r->gw_pid, NULL, WNOHANG) == r->gw_pid) {
            r->gw_pid = -1;
            break;
        }
    }
    say("the gateway did not come online (see %s)", r->log);
    return -1;
}

static int gw_stop(struct run *r)
{
    int st = bench_stop(r->gw_pid, 60000);
    r->gw_pid = -1;
    if (st != 0) {
        failures++;
        say("the gateway exited with %d (see %s)", st, r->log);
    }
    return st;
}

/* ehrctl verify, Merkle-only and full */
static void run_verify(struct run *r, const char *label)
{
    char out[PATH_MAX + 32], out_full[PATH_MAX + 32], line[512];
    char *merkle[] = {tool_ctl, "--db", r->db, "verify", NULL};
    char *full[] = {tool_ctl, "--db", r->db, "--master-key", r->mk, "verify", NULL};
    FILE *f;
    double t0;
    int n = nverifies < 8 ? nverifies++ : 7;
    memset(&verifies[n], 0, sizeof verifies[n]);
    snprintf(verifies[n].label, sizeof verifies[n].label, "%s", label);
    snprintf(out, sizeof out, "%s/verify.out", r->dir);
    snprintf(out_full, sizeof out_full, "%s/verify-full.out", r->dir);
    unlink(out);
    unlink(out_full);
    say("ehrctl verify (Merkle-only) on %s", label);
    if (bench_wait(bench_spawn(merkle, out)) != 0) {
        failures++;
        say("ehrctl verify FAILED (see %s)", out);
    }
    say("ehrctl verify --master-key (full) on %s", label);
    t0 = bench_now();
    if (bench_wait(bench_spawn(full, out_full)) != 0) {
        failures++;
        say("ehrctl verify --master-key FAILED (see %s)", out);
    }
    verifies[n].full_s = bench_now() - t0;
    for (int pass = 0; pass < 2; pass++) {
    if (!(f = fopen(pass ? out_full : out, "r")))
        continue;
    while (fgets(line, sizeof line, f)) {
        unsigned long long cnt;
        double s, rate;
        if (!pass && sscanf(line, "merkle: %llu leaf hashes read and hashed to roots in %lf s (%lf", &cnt, &s, &rate) == 3) {
            verifies[n].entries = cnt;
            verifies[n].merkle_eps = rate;
        } else if (!pass && sscanf(line, "signatures: %llu block headers hashed and verified in %lf s (%lf", &cnt, &s, &rate) == 3) {
            char *c = strstr(line, "chain check ");
            verifies[n].sig_bps = rate;
            if (c)
                verifies[n].chain_s = atof(c + 12);
        } else if (pass && sscanf(line, "entries: %llu decrypted and re-hashed in %lf s (%lf", &cnt, &s, &rate) == 3) {
            verifies[n].full_eps = rate;
        }
    }
    fclose(f);
    }
}


static int want(const char *path)
{
    const char *p = opt.paths;
    size_t n = strlen(path);
    if (!p)
        return 1;
    while ((p = strstr(p, path))) {
        if ((p == opt.paths || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
        p += n;
    }
    return 0;
}

static int gateway_fleet(long devices, int headline, struct eg_key *key, struct eg_rng *rng)
{
    struct run r;
    char dir[PATH_MAX], label[48];
    struct result *max;
    double startup;
    int rc = -1;

    memset(&r, 0, sizeof r);
    r.gw_pid = -1;
    r.key_signer = key;
    r.rng = rng;
    sim_rand_seed(&r.rand, 42);
    snprintf(dir, sizeof dir, "%s/gw-%ld", opt.work, devices);
    say("gateway with %ld devices: setting up %s", devices, dir);
    mkdir(dir, 0700);
    remove_db(dir); /* a reused --work: message numbers start again at 0 */
    if (gw_prepare(&r, dir, devices, NULL) != 0 || open_load(&r, "gw") != 0 ||
        (startup = gw_start(&r)) < 0)
        goto out;
    say("gateway online after %.2f s", startup);
    snprintf(label, sizeof label, "telemetry, %ld devices", devices);
    max = phase_run(&r, K_TELEMETRY, 0, label);
    if (headline && !stop_flag) {
        double half = max->msgs_s / 2;
        snprintf(label, sizeof label, "telemetry at half rate (%.0f/s)", half);
        if (half >= 1 && want("half"))
            phase_run(&r, K_TELEMETRY, half, label);
        if (!stop_flag && want("signed") && presign(&r, r.k_next, (uint64_t)opt.signed_msgs) == 0) {
            phase_run(&r, K_SIGNED, 0, "signed telemetry");
            presign_free();
        }
        if (!stop_flag && want("fhir"))
            phase_run(&r, K_FHIR, 0, "hospital FHIR Bundle");
        if (!stop_flag && want("hl7"))
            phase_run(&r, K_HL7, 0, "hospital HL7 v2 ORU^R01");
        if (!stop_flag && want("proof"))
            phase_run(&r, K_PROOF, 0, "proof requests");
    }
    if (gw_stop(&r) != 0)
        goto out;
    if (headline && want("verify")) {
        snprintf(label, sizeof label, "%ld-device run", devices);
        run_verify(&r, label);
    }
    rc = 0;
out:
    if (r.gw_pid > 0)
        gw_stop(&r);
    close_run(&r);
    return rc;
}

/* a database grown directly to each size in opt.fill */
static int fill_runs(struct eg_key *key, struct eg_rng *rng)
{
    struct run r;
    char dir[PATH_MAX], label[64];
    long long have = 0;
    int rc = -1;
    memset(&r, 0, sizeof r);
    r.gw_pid = -1;
    r.key_signer = key;
    r.rng = rng;
    sim_rand_seed(&r.rand, 7);
    snprintf(dir, sizeof dir, "%s/big", opt.work);
    mkdir(dir, 0700);
    snprintf(r.db, sizeof r.db, "%s/ehrgate.db", dir);
    if (opt.reuse_fill && access(r.db, F_OK) == 0) {
        const char *db = r.db;
        sqlite3 *h = NULL;
        sqlite3_stmt *q = NULL;
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(h, "SELECT count(*) FROM entries WHERE source_id LIKE 'FILL-%'", -1, &q,
                               NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            have = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(h);
        say("reusing %s: %lld filled entries", db, have);
    } else {
        remove_db(dir);
    }
    for (int i = 0; i < opt.nfill && !stop_flag; i++) {
        struct result *res;
        struct stat sb;
        double startup;
        if (opt.fill[i] > have) {
            char count[32], log[PATH_MAX + 16];
            char *argv[] = {tool_fill, "-c", r.conf, "--count", count, "--devices", "1000", NULL};
            if (!r.conf[0] && gw_prepare(&r, dir, opt.main_devices, NULL) != 0)
                goto out;
            snprintf(count, sizeof count, "%lld", opt.fill[i] - have);
            snprintf(log, sizeof log, "%s/fill.log", dir);
            say("growing %s by %s entries with ehrgate-fill (progress in %s)", r.db, count, log);
            if (bench_wait(bench_spawn(argv, log)) != 0) {
                say("ehrgate-fill failed (see %s)", log);
                goto out;
            }
            have = opt.fill[i];
        }
        if (gw_prepare(&r, dir, opt.main_devices, NULL) != 0)
            goto out;
        /* message numbers continue past the earlier runs' on this database */
        if ((!r.nload && open_load(&r, "big") != 0) || (startup = gw_start(&r)) < 0)
            goto out;
        say("gateway online after %.2f s on %lld filled entries", startup, have);
        snprintf(label, sizeof label, "telemetry, DB of %lld entries", have);
        res = phase_run(&r, K_TELEMETRY, 0, label);
        if (gw_stop(&r) != 0)
            goto out;
        fills[nfills].entries = have;
        fills[nfills].startup_s = startup;
        fills[nfills].rate = res->msgs_s;
        fills[nfills].db_mb = stat(r.db, &sb) == 0 ? (double)sb.st_size / 1048576.0 : 0;
        nfills++;
    }
    if (have >= 1000000 && !stop_flag)
        run_verify(&r, "filled database");
    rc = 0;
out:
    if (r.gw_pid > 0)
        gw_stop(&r);
    close_run(&r);
    return rc;
}

/* ---- report ---------------------------------------------------------------------------- */
static double raw_rate_at(size_t size)
{
    double best = 0;
    size_t bestd = SIZE_MAX;
    for (int i = 0; i < nresults; i++) {
        size_t d;
        if (results[i].kind != K_RAW)
            continue;
        d = results[i].payload > size ? results[i].payload - size : size - results[i].payload;
        if (d < bestd) {
            bestd = d;
            best = results[i].msgs_s;
        }
    }
    return best;
}

static void report(FILE *out)
{
    fprintf(out, "\n%-34s %7s %6s %9s %9s %8s %8s %8s %8s %8s %8s %6s %6s %6s %7s %6s\n", "phase",
            "sources", "bytes", "msgs/s", "records/s", "rcpt p50", "rcpt p99", "feed p50", "feed p99",
            "seal p50", "seal p99", "gw CPU", "bench", "broker", "gw RSS", "x raw");
    for (int i = 0; i < nresults; i++) {
        const struct result *x = &results[i];
        double raw = x->kind == K_RAW || x->kind == K_PROOF || x->target > 0 ? 0 : raw_rate_at(x->payload);
        fprintf(out, "%-34s %7ld %6zu %9.0f %9.0f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %5.0f%% %5.0f%% %5.0f%% %5.1fMB",
                x->label, x->devices, x->payload, x->msgs_s, x->recs_s, x->r50, x->r99, x->f50, x->f99,
                x->s50, x->s99, x->gw_cpu, x->bench_cpu, x->broker_cpu, x->gw_hwm_mb);
        if (raw > 0)
            fprintf(out, " %6.2f", x->msgs_s / raw);
        fputc('\n', out);
    }
    fprintf(out, "(latencies in ms; rcpt: publish -> receipt, feed: publish -> feed message, seal: receipt ->\n"
                 " block message; CPU in %% of one core over the measured window; gw RSS: peak; x raw: msgs/s\n"
                 " over the raw relay rate at the nearest payload size)\n");
    for (int i = 0; i < nverifies; i++)
        fprintf(out, "ehrctl verify (%s): %llu entries; Merkle-only %.0f entries/s, %.0f block signatures/s, "
                     "chain %.2f s; full (decrypt + re-hash) %.0f entries/s, %.1f s in all\n",
                verifies[i].label, (unsigned long long)verifies[i].entries, verifies[i].merkle_eps,
                verifies[i].sig_bps, verifies[i].chain_s, verifies[i].full_eps, verifies[i].full_s);
    for (int i = 0; i < nfills; i++)
        fprintf(out, "database of %lld filled entries (%.0f MB): startup %.2f s, telemetry %.0f msgs/s\n",
                fills[i].entries, fills[i].db_mb, fills[i].startup_s, fills[i].rate);
}

static void report_json(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        say("cannot write %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "{\"duration_s\":%.1f,\"warmup_s\":%.1f,\"conns\":%ld,\"window\":%ld,\"phases\":[", opt.duration,
            opt.warmup, opt.conns, opt.window);
    for (int i = 0; i < nresults; i++) {
        const struct result *x = &results[i];
        fprintf(f, "%s{\"phase\":\"%s\",\"kind\":\"%s\",\"sources\":%ld,\"payload_bytes\":%zu,\"target_rate\":%.0f,"
                   "\"msgs_per_s\":%.1f,\"records_per_s\":%.1f,\"sent\":%llu,\"accepted\":%llu,\"rejected\":%llu,"
                   "\"unanswered\":%llu,\"feed_msgs\":%llu,\"receipt_ms\":{\"p50\":%.2f,\"p99\":%.2f},"
                   "\"feed_ms\":{\"p50\":%.2f,\"p99\":%.2f},\"seal_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
                   "\"gateway_cpu_pct\":%.1f,\"bench_cpu_pct\":%.1f,\"broker_cpu_pct\":%.1f,\"gateway_peak_rss_mb\":%.1f,"
                   "\"ratio_to_raw\":%.3f}",
                i ? "," : "", x->label, kind_name[x->kind], x->devices, x->payload, x->target, x->msgs_s, x->recs_s,
                (unsigned long long)x->sent, (unsigned long long)x->accepted, (unsigned long long)x->rejected,
                (unsigned long long)x->lost, (unsigned long long)x->feed, x->r50, x->r99, x->f50, x->f99, x->s50,
                x->s99, x->smax, x->gw_cpu, x->bench_cpu, x->broker_cpu, x->gw_hwm_mb,
                x->kind == K_RAW || x->kind == K_PROOF || x->target > 0 || !raw_rate_at(x->payload) ? 0 : x->msgs_s / raw_rate_at(x->payload));
    }
    fprintf(f, "],\"verify\":[");
    for (int i = 0; i < nverifies; i++)
        fprintf(f, "%s{\"on\":\"%s\",\"entries\":%llu,\"merkle_entries_per_s\":%.0f,\"signatures_per_s\":%.0f,"
                   "\"chain_s\":%.3f,\"full_entries_per_s\":%.0f,\"full_s\":%.2f}",
                i ? "," : "", verifies[i].label, (unsigned long long)verifies[i].entries, verifies[i].merkle_eps,
                verifies[i].sig_bps, verifies[i].chain_s, verifies[i].full_eps, verifies[i].full_s);
    fprintf(f, "],\"fill\":[");
    for (int i = 0; i < nfills; i++)
        fprintf(f, "%s{\"entries\":%lld,\"db_mb\":%.0f,\"startup_s\":%.3f,\"telemetry_msgs_per_s\":%.1f}", i ? "," : "",
                fills[i].entries, fills[i].db_mb, fills[i].startup_s, fills[i].rate);
    fprintf(f, "]}\n");
    fclose(f);
    say("figures written to %s", path);
}

/* ---- main --------------------------------------------------------------------------------- */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: ehrgate-bench [options]\n\n"
            "Measures, in one run on loopback, the raw broker relay rate and the gateway\n"
            "driven at its maximum rate, and prints one table (docs/performance.md).\n"
            "Starts its own mosquitto on a free port and its own gateways; needs mosquitto\n"
            "on PATH (or --mosquitto) and the built ehrgate, ehrctl and ehrgate-fill.\n\n"
            "  --duration S        seconds per measured phase (default 10)\n"
            "  --warmup S          seconds at a phase's start left out of its rate (default 2)\n"
            "  --devices LIST      fleets for the scaling runs (default 10,1000,10000)\n"
            "  --main-devices N    the fleet of the headline run with the other paths (default 1000)\n"
            "  --patients N        patients (default 1000), every one consenting to the feed\n"
            "  --hospitals N       hospitals for the FHIR and HL7 paths (default 4)\n"
            "  --conns N           connections the load shares (default 4)\n"
            "  --window N          messages in flight (sent, not yet receipted) (default 2000)\n"
            "  --sizes LIST        raw relay payload sizes besides the telemetry size (default 1024,4096)\n"
            "  --signed-msgs N     pre-signed telemetry messages (default 6000)\n"
            "  --fill LIST         grow a database directly to each of these entry counts and\n"
            "                      measure startup and ingest on it (e.g. 1000000,10000000)\n"
            "  --reuse-fill        keep a database an earlier --fill left in --work DIR/big\n"
            "  --quick             a short run: 3 s phases, fleets 10,100, no fill\n"
            "  --paths LIST        what the headline run measures besides telemetry at maximum\n"
            "                      rate (default half,signed,fhir,hl7,proof,verify)\n"
            "  --gateway-opt K=V   an extra line \"K = V\" in the gateways' config (repeatable)\n"
            "  --work DIR          working directory (default: a new /tmp/ehrgate-bench-*)\n"
            "  --keep              keep the working directory\n"
            "  --json FILE         also write the figures as JSON\n"
            "  --mosquitto PATH    the broker binary (default: mosquitto on PATH)\n"
            "  --bin DIR           where ehrgate, ehrctl and ehrgate-fill are (default: the build tree)\n"
            "  -h, --help          this text\n\n"
            "Exit status: 0 when every message of every phase was answered and accepted and\n"
            "ehrctl verify passed; 1 when a check failed; 2 on a usage error. Rates and\n"
            "latencies are reported, never judged.\n");
}

static int parse_list(const char *s, long long *out, int max)
{
    int n = 0;
    char *end;
    while (*s && n < max) {
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n ? n : -1;
}

static void find_tool(char *out, size_t size, const char *name, const char *const *subdirs)
{
    char exe[2048], *slash;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (opt.bin) {
        snprintf(out, size, "%s/%s", opt.bin, name);
        if (access(out, X_OK) == 0)
            return;
    }
    if (n > 0) {
        exe[n] = 0;
        if ((slash = strrchr(exe, '/')))
            *slash = 0;
        for (int i = 0; subdirs[i]; i++) {
            snprintf(out, size, "%s/%s/%s", exe, subdirs[i], name);
            if (access(out, X_OK) == 0)
                return;
        }
    }
    snprintf(out, size, "%s", name); /* from PATH */
}

int main(int argc, char **argv)
{
    static const char *const gw_dirs[] = {".", "../gateway", NULL};
    static const char *const ctl_dirs[] = {".", "../tools", NULL};
    static const char *const fill_dirs[] = {".", "../bench", NULL};
    char work[PATH_MAX];
    struct eg_rng *rng = NULL;
    struct eg_key *key = NULL;
    struct eg_error e = {0};
    double t_start = bench_now();
    int made_work = 0, rc = 1, reported = 0;
    long long lst[8];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
            opt.duration = 3;
            opt.warmup = 1;
            opt.devices[0] = 10;
            opt.devices[1] = 100;
            opt.ndevices = 2;
            opt.main_devices = 100;
            opt.patients = 100;
            opt.signed_msgs = 1000;
            opt.sizes[0] = 1024;
            opt.nsizes = 1;
            continue;
        } else if (strcmp(a, "--reuse-fill") == 0) {
            opt.reuse_fill = 1;
            continue;
        } else if (strcmp(a, "--keep") == 0) {
            opt.keep = 1;
            continue;
        }
        if (!v || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ehrgate-bench: unknown argument \"%s\" (see --help)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--duration") == 0 && (opt.duration = atof(v)) >= 1)
            ;
        else if (strcmp(a, "--warmup") == 0 && (opt.warmup = atof(v)) >= 0)
            ;
        else if (strcmp(a, "--devices") == 0 && (n = parse_list(v, lst, 8)) > 0) {
            opt.ndevices = n;
            for (int j = 0; j < n; j++)
                opt.devices[j] = (long)lst[j];
        } else if (strcmp(a, "--sizes") == 0 && (n = parse_list(v, lst, 8)) > 0) {
            opt.nsizes = n;
            for (int j = 0; j < n; j++)
                opt.sizes[j] = (long)lst[j];
        } else if (strcmp(a, "--fill") == 0 && (n = parse_list(v, opt.fill, 8)) > 0)
            opt.nfill = n;
        else if (strcmp(a, "--main-devices") == 0 && (opt.main_devices = atol(v)) >= 1)
            ;
        else if (strcmp(a, "--patients") == 0 && (opt.patients = atol(v)) >= 1)
            ;
        else if (strcmp(a, "--hospitals") == 0 && (opt.hospitals = atol(v)) >= 1)
            ;
        else if (strcmp(a, "--conns") == 0 && (opt.conns = atol(v)) >= 1 && opt.conns <= MAX_CONNS)
            ;
        else if (strcmp(a, "--window") == 0 && (opt.window = atol(v)) >= 1)
            ;
        else if (strcmp(a, "--signed-msgs") == 0 && (opt.signed_msgs = atol(v)) >= 1)
            ;
        else if (strcmp(a, "--gateway-opt") == 0 && strchr(v, '=') && opt.ngw_opts < 16)
            opt.gw_opts[opt.ngw_opts++] = v;
        else if (strcmp(a, "--paths") == 0)
            opt.paths = v;
        else if (strcmp(a, "--work") == 0)
            opt.work = v;
        else if (strcmp(a, "--json") == 0)
            opt.json = v;
        else if (strcmp(a, "--mosquitto") == 0)
            tool_mosquitto = v;
        else if (strcmp(a, "--bin") == 0)
            opt.bin = v;
        else {
            fprintf(stderr, "ehrgate-bench: bad or unknown option %s %s (see --help)\n", a, v);
            return 2;
        }
    }
    if (opt.warmup >= opt.duration) {
        fprintf(stderr, "ehrgate-bench: --warmup must be shorter than --duration\n");
        return 2;
    }
    {
        /* no SA_RESTART: a Ctrl-C ends the waits for ehrgate-fill and ehrctl */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        bench_stop_flag = &stop_flag;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
    }
    eg_log_set_level(EG_LOG_ERROR);
    find_tool(tool_gateway, sizeof tool_gateway, "ehrgate", gw_dirs);
    find_tool(tool_ctl, sizeof tool_ctl, "ehrctl", ctl_dirs);
    find_tool(tool_fill, sizeof tool_fill, "ehrgate-fill", fill_dirs);
    if (strcmp(tool_mosquitto, "mosquitto") == 0 && access("/usr/sbin/mosquitto", X_OK) == 0)
        tool_mosquitto = "/usr/sbin/mosquitto"; /* Debian's, often not on a user's PATH */
    if (!opt.work) {
        snprintf(work, sizeof work, "/tmp/ehrgate-bench-XXXXXX");
        if (!mkdtemp(work)) {
            say("cannot make a working directory: %s", strerror(errno));
            return 1;
        }
        opt.work = work;
        made_work = 1;
    } else if (mkdir(opt.work, 0700) != 0 && errno != EEXIST) {
        say("cannot make %s: %s", opt.work, strerror(errno));
        return 1;
    }
    chmod(opt.work, 0755);
    say("working in %s; gateway %s", opt.work, tool_gateway);
    if (eg_rng_new(&rng) != EG_OK || eg_key_generate(rng, &key, &e) != EG_OK) {
        say("cannot make a key: %s", e.detail);
        goto out;
    }
    if (start_broker() != 0)
        goto out;

    /* 1. raw relay, first at the telemetry payload's size */
    {
        struct run tr;
        struct outmsg o;
        memset(&tr, 0, sizeof tr);
        tr.devices = opt.main_devices;
        if (make_msg(&tr, K_TELEMETRY, 1000000, &o) != 0 || raw_relay(o.len) != 0)
            goto out;
        free(o.payload);
        for (int i = 0; i < opt.nsizes && !stop_flag; i++)
            if (raw_relay((size_t)opt.sizes[i]) != 0)
                goto out;
    }
    /* 2, 3. the gateway: the scaling fleets; the headline one runs every path */
    {
        int did_main = 0;
        for (int i = 0; i < opt.ndevices && !stop_flag; i++) {
            int headline = opt.devices[i] == opt.main_devices;
            did_main |= headline;
            if (gateway_fleet(opt.devices[i], headline, key, rng) != 0)
                goto out;
        }
        if (!did_main && !stop_flag && gateway_fleet(opt.main_devices, 1, key, rng) != 0)
            goto out;
    }
    /* 4. a grown database */
    if (opt.nfill && !stop_flag && fill_runs(key, rng) != 0)
        goto out;
    report(stdout);
    reported = 1;
    if (opt.json)
        report_json(opt.json);
    say("done in %.0f s", bench_now() - t_start);
    if (failures)
        say("%d check(s) FAILED: see the messages above", failures);
    rc = stop_flag || failures ? 1 : 0;
out:
    if (!reported && nresults)
        report(stdout);
    bench_stop(broker_pid, 5000);
    eg_key_free(key);
    eg_rng_free(rng);
    if (made_work && !opt.keep) {
        char *rm[] = {"rm", "-rf", work, NULL};
        bench_wait(bench_spawn(rm, "/dev/null"));
    } else {
        say("kept %s", opt.work);
    }
    return rc;
}

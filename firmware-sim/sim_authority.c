/*
 * sim_authority.c — `ehrgate-sim authority`: the national health
 * authority's feed subscriber (SPEC §8, §11). It receives the entry bytes
 * on ehr/feed/{grantee}, dedups by entry_id, fills feed_seq gaps with
 * `since`, and for every record fetches its inclusion proof from the anchor
 * API and checks it offline: the leaf hash of the bytes as received, the
 * RFC 6962 audit path to the block's Merkle root, and the block header's
 * hash and P-256 signature under the gateway's public key. With --expect it
 * also checks that only consenting patients' records arrive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eg_block.h"
#include "eg_codec.h"
#include "eg_json.h"
#include "eg_merkle.h"
#include "eg_time.h"
#include "sim.h"

struct rec {
    char entry_id[96];
    char patient[65];
    char *bytes;
    size_t len;
    int state; /* 0 proof needed, 1 requested, 2 verified, 3 failed */
    int tries;
    int64_t next_try;
};

struct auth {
    struct sim_opts o;
    const char *grantee;
    struct eg_key *gwkey;
    uint8_t gwid[32];
    struct sim_link link;
    struct eg_queue *q;
    struct sim_rand r;
    char feed[256], since_topic[256], since_reply[320], anchor_req[256], anchor_reply[320];
    char blocks_topic[256], stats_topic[256];
    struct rec *recs;
    size_t nrecs, cap;
    size_t *index, index_cap; /* entry_id -> recs index + 1, open addressing */
    size_t first_open;        /* every record below is verified or failed */
    uint64_t waiting;         /* records without a checked proof yet */
    uint8_t *seen; /* by feed_seq */
    size_t seen_cap;
    uint64_t low, high, have_high;
    int64_t low_since;
    char **expect;
    size_t nexpect;
    uint64_t received, dups, ok, failed, unexpected, erased, blocks, gaps_asked;
    uint64_t inflight;
    int tail_check;    /* at the end: ask since(low) once more */
    int since_pending; /* a since request waits for its reply */
    cJSON *stats;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim authority --pubkey GW.pub [options]\n"
            "A grantee's feed subscriber: receives the entries forwarded to it, checks every\n"
            "one's inclusion proof and block signature, fills feed gaps with since, and shows\n"
            "one live line with the gateway's stats.\n\n"
            "  --grantee NAME      the feed to read (default authority)\n"
            "  --pubkey GW.pub     the gateway's public key (required)\n"
            "  --expect P1,P2,...  the patients that granted consent: a record of anyone else\n"
            "                      is counted as unexpected (exit 1)\n"
            "  --expect-file F     the same, one patient id per line\n"
            "  --summary FILE      write a JSON summary at the end\n"
            "%s",
            sim_common_help);
}

static int expected(struct auth *a, const char *patient)
{
    if (!a->expect)
        return 1;
    for (size_t i = 0; i < a->nexpect; i++)
        if (strcmp(a->expect[i], patient) == 0)
            return 1;
    return 0;
}

static int add_expect(struct auth *a, const char *id)
{
    char **ne = realloc(a->expect, (a->nexpect + 1) * sizeof *ne);
    if (!ne)
        return -1;
    a->expect = ne;
    if (!(a->expect[a->nexpect] = strdup(id)))
        return -1;
    a->nexpect++;
    return 0;
}

static size_t id_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct rec *find(struct auth *a, const char *entry_id)
{
    if (!a->index_cap)
        return NULL;
    for (size_t h = id_hash(entry_id) % a->index_cap; a->index[h]; h = (h + 1) % a->index_cap)
        if (strcmp(a->recs[a->index[h] - 1].entry_id, entry_id) == 0)
            return &a->recs[a->index[h] - 1];
    return NULL;
}

/* Indexes recs[i]; grows the table at half load. */
static int index_add(struct auth *a, size_t i)
{
    if ((a->nrecs + 1) * 2 > a->index_cap) {
        size_t ncap = a->index_cap ? a->index_cap * 2 : 1024;
        size_t *ni = calloc(ncap, sizeof *ni);
        if (!ni)
            return -1;
        for (size_t k = 0; k < a->index_cap; k++)
            if (a->index[k]) {
                size_t h = id_hash(a->recs[a->index[k] - 1].entry_id) % ncap;
                while (ni[h])
                    h = (h + 1) % ncap;
                ni[h] = a->index[k];
            }
        free(a->index);
        a->index = ni;
        a->index_cap = ncap;
    }
    {
        size_t h = id_hash(a->recs[i].entry_id) % a->index_cap;
        while (a->index[h])
            h = (h + 1) % a->index_cap;
        a->index[h] = i + 1;
    }
    return 0;
}

static void mark_seen(struct auth *a, uint64_t fs)
{
    if (fs >= a->seen_cap) {
        size_t ncap = (size_t)fs * 2 + 1024;
        uint8_t *ns = realloc(a->seen, ncap);
        if (!ns)
            return;
        memset(ns + a->seen_cap, 0, ncap - a->seen_cap);
        a->seen = ns;
        a->seen_cap = ncap;
    }
    a->seen[fs] = 1;
    if (!a->have_high || fs > a->high)
        a->high = fs;
    a->have_high = 1;
    while (a->low < a->seen_cap && a->seen[a->low]) {
        a->low++;
        a->low_since = eg_mono_ms();
    }
}

/* One feed entry (from the feed or from a since reply). */
static void take_entry(struct auth *a, int64_t feed_seq, const char *bytes, size_t len)
{
    cJSON *j = NULL;
    struct eg_error e;
    const char *eid, *patient;
    struct rec *r;
    if (feed_seq >= 0)
        mark_seen(a, (uint64_t)feed_seq);
    if (!bytes) {
        a->erased++;
        return;
    }
    if (egjson_parse((const uint8_t *)bytes, len, &j, &e) != EG_OK ||
        !(eid = egjson_str(j, "entry_id")) || !(patient = egjson_str(j, "patient"))) {
        cJSON_Delete(j);
        a->failed++;
        return;
    }
    if (find(a, eid)) {
        a->dups++;
        cJSON_Delete(j);
        return;
    }
    a->received++;
    if (!expected(a, patient)) {
        a->unexpected++;
        fprintf(stderr, "\nehrgate-sim authority: record %s of patient %s, who did not grant "
                        "consent\n",
                eid, patient);
    }
    if (a->nrecs == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 256;
        struct rec *nr = realloc(a->recs, ncap * sizeof *nr);
        if (!nr) {
            cJSON_Delete(j);
            return;
        }
        a->recs = nr;
        a->cap = ncap;
    }
    r = &a->recs[a->nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->entry_id, sizeof r->entry_id, "%s", eid);
    snprintf(r->patient, sizeof r->patient, "%s", patient);
    r->bytes = malloc(len);
    if (r->bytes)
        memcpy(r->bytes, bytes, len);
    r->len = len;
    a->waiting++;
    index_add(a, a->nrecs - 1);
    cJSON_Delete(j);
}

/* Checks a proof reply for r (SPEC §11): 0 verified, -1 not. */
static int check_proof(struct auth *a, struct rec *r, const cJSON *p)
{
    uint8_t leaf[32], want[32], (*path)[32] = NULL;
    struct eg_block b;
    struct eg_error e = {0};
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(p, "audit_path"), *it;
    const char *lh = egjson_str(p, "leaf_hash");
    uint64_t index = 0;
    size_t depth = 0;
    int rc = -1;

    eg_merkle_leaf(r->bytes, r->len, leaf);
    if (!lh || strlen(lh) != 64 || eg_hex_decode(lh, want, 32) != 0 || memcmp(leaf, want, 32) ||
        egjson_get_u53(cJSON_GetObjectItemCaseSensitive(p, "leaf_index"), &index) != 0 ||
        eg_block_from_json(cJSON_GetObjectItemCaseSensitive(p, "block"), &b, &e) != EG_OK ||
        memcmp(b.gateway_id, a->gwid, 32) != 0 || eg_block_verify(&b, a->gwkey) != EG_OK)
        return -1;
    if (cJSON_GetArraySize(ap) > 0 &&
        !(path = calloc((size_t)cJSON_GetArraySize(ap), sizeof *path)))
        return -1;
    cJSON_ArrayForEach(it, ap)
    {
        if (!cJSON_IsString(it) || strlen(it->valuestring) != 64 ||
            eg_hex_decode(it->valuestring, path[depth], 32) != 0)
            goto out;
        depth++;
    }
    if (eg_merkle_verify(leaf, (size_t)index, b.count, (const uint8_t(*)[32])path, depth,
                         b.merkle_root) == EG_OK)
        rc = 0;
out:
    free(path);
    return rc;
}

static void on_message(struct auth *a, struct eg_msg *m)
{
    cJSON *j = NULL;
    struct eg_error e;
    if (strcmp(m->topic, a->feed) == 0) {
        take_entry(a, m->feed_seq, (const char *)m->payload, m->len);
        return;
    }
    if (strcmp(m->topic, a->blocks_topic) == 0) {
        a->blocks++;
        return;
    }
    if (egjson_parse(m->payload, m->len, &j, &e) != EG_OK)
        return;
    if (strcmp(m->topic, a->stats_topic) == 0) {
        cJSON_Delete(a->stats);
        a->stats = j;
        return;
    }
    if (strcmp(m->topic, a->since_reply) == 0) {
        const cJSON *it;
        const cJSON *more = cJSON_GetObjectItemCaseSensitive(j, "more");
        a->since_pending = 0;
        if (cJSON_IsTrue(more))
            a->tail_check = 1; /* a long tail: ask again from the new low */
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "items"))
        {
            uint64_t fs;
            const cJSON *en = cJSON_GetObjectItemCaseSensitive(it, "entry");
            if (egjson_get_u53(cJSON_GetObjectItemCaseSensitive(it, "feed_seq"), &fs) != 0)
                continue;
            take_entry(a, (int64_t)fs, cJSON_IsString(en) ? en->valuestring : NULL,
                       cJSON_IsString(en) ? strlen(en->valuestring) : 0);
        }
    } else if (strcmp(m->topic, a->anchor_reply) == 0 && m->corr_len == 8) {
        uint64_t idx;
        memcpy(&idx, m->corr, 8);
        if (idx < a->nrecs && a->recs[idx].state == 1) {
            struct rec *r = &a->recs[idx];
            const char *status = egjson_str(j, "status");
            a->inflight--;
            if (status && strcmp(status, "ok") == 0) {
                a->waiting--;
                if (check_proof(a, r, j) == 0) {
                    r->state = 2;
                    a->ok++;
                } else {
                    r->state = 3;
                    a->failed++;
                    fprintf(stderr, "\nehrgate-sim authority: the proof of %s does NOT verify\n",
                            r->entry_id);
                }
                free(r->bytes);
                r->bytes = NULL;
            } else {
                /* pending until its block is sealed; not_found if asked too early */
                r->state = 0;
                r->next_try = eg_mono_ms() + 500 + 250 * (r->tries < 8 ? r->tries : 8);
                if (++r->tries > 60) {
                    r->state = 3;
                    a->failed++;
                    a->waiting--;
                }
            }
        }
    }
    cJSON_Delete(j);
}

static void ask(struct auth *a, int64_t now)
{
    while (a->first_open < a->nrecs && a->recs[a->first_open].state >= 2)
        a->first_open++;
    for (size_t i = a->first_open; i < a->nrecs && a->inflight < 64; i++) {
        struct rec *r = &a->recs[i];
        char body[160];
        uint64_t idx = i;
        if (r->state != 0 || now < r->next_try || !r->bytes)
            continue;
        snprintf(body, sizeof body, "{\"op\":\"proof\",\"entry_id\":\"%s\"}", r->entry_id);
        if (sim_publish(&a->link, a->anchor_req, body, strlen(body), NULL, a->anchor_reply,
                        (const uint8_t *)&idx, 8) != 0)
            return;
        r->state = 1;
        r->next_try = now + 10000; /* a lost reply: asked again */
        a->inflight++;
    }
    /* a request whose reply never came */
    for (size_t i = a->first_open; i < a->nrecs; i++)
        if (a->recs[i].state == 1 && now > a->recs[i].next_try) {
            a->recs[i].state = 0;
            a->inflight--;
        }
    /* feed gap: the lowest missing feed_seq stayed missing for 2 s; or the
     * final catch-up (tail_check) for anything after the last one seen */
    if ((a->have_high && a->low <= a->high && now - a->low_since > 2000) ||
        (a->tail_check && !a->since_pending)) {
        char body[128];
        snprintf(body, sizeof body, "{\"op\":\"since\",\"feed_seq\":%llu,\"limit\":200}",
                 (unsigned long long)a->low);
        if (sim_publish(&a->link, a->since_topic, body, strlen(body), NULL, a->since_reply, NULL,
                        0) == 0) {
            a->gaps_asked++;
            a->low_since = now;
            a->since_pending = 1;
            a->tail_check = 0;
        }
    }
}

static long long stat_of(const struct auth *a, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a->stats, k);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0; /* 0 until the first stats */
}

static void line(struct auth *a, int final)
{
    static long long prev_entries = -1;
    static int64_t prev_at;
    static double rate;
    uint64_t waiting = a->waiting;
    long long entries = stat_of(a, "entries"), receipts;
    int64_t now = eg_mono_ms();
    /* records/s from the gateway's own stats, over at least 2 s */
    if (entries >= 0 && (prev_entries < 0 || now - prev_at >= 2000)) {
        if (prev_entries >= 0 && entries >= prev_entries)
            rate = (double)(entries - prev_entries) * 1000.0 / (double)(now - prev_at);
        prev_entries = entries;
        prev_at = now;
    }
    receipts = stat_of(a, "accepted") + stat_of(a, "rejected") + stat_of(a, "duplicates");
    sim_progress(final,
                 "gateway: %.0f records/s, %lld receipts (%lld rejected), forwarded %lld, "
                 "withheld %lld | authority: %llu records, %llu proofs ok, %llu waiting, "
                 "%llu failed, %llu blocks%s",
                 rate, a->stats ? receipts : 0, stat_of(a, "rejected"), stat_of(a, "forwarded"),
                 stat_of(a, "withheld"), (unsigned long long)a->received,
                 (unsigned long long)a->ok, (unsigned long long)waiting,
                 (unsigned long long)a->failed, (unsigned long long)a->blocks,
                 a->unexpected ? " | UNEXPECTED RECORDS" : "");
}

int sim_cmd_authority(int argc, char **argv)
{
    struct auth a;
    const char *pubkey = NULL, *summary = NULL;
    char filters[5][EG_TOPIC_FILTER_MAX];
    int code = 2;
    double drain = 10;
    int64_t start, end;

    memset(&a, 0, sizeof a);
    sim_opts_init(&a.o);
    a.grantee = "authority";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int c = sim_arg(&a.o, argc, argv, &i, "authority", usage, NULL, &v, &code);
        if (c == SIM_ARG_EXIT)
            goto out;
        if (c == SIM_ARG_WORD) {
            code = sim_arg_unknown("authority", s);
            goto out;
        }
        if (c == SIM_ARG_DONE)
            continue;
        code = 2;
        if (strcmp(s, "--grantee") == 0)
            a.grantee = v;
        else if (strcmp(s, "--pubkey") == 0)
            pubkey = v;
        else if (strcmp(s, "--summary") == 0)
            summary = v;
        else if (strcmp(s, "--drain") == 0) {
            if (sim_parse_double(s, v, 0, 3600, &drain) != 0)
                goto out;
        } else if (strcmp(s, "--expect") == 0) {
            char buf[8192], *save = NULL;
            snprintf(buf, sizeof buf, "%s", v);
            if (!a.expect && add_expect(&a, "") != 0) /* an empty list still restricts */
                goto out;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (add_expect(&a, t) != 0)
                    goto out;
        } else if (strcmp(s, "--expect-file") == 0) {
            FILE *f = fopen(v, "r");
            char l[128];
            if (!f) {
                fprintf(stderr, "ehrgate-sim authority: %s: cannot open\n", v);
                goto out;
            }
            if (!a.expect && add_expect(&a, "") != 0) {
                fclose(f);
                goto out;
            }
            while (fgets(l, sizeof l, f)) {
                l[strcspn(l, "\r\n")] = 0;
                if (l[0] && add_expect(&a, l) != 0)
                    break;
            }
            fclose(f);
        } else {
            code = sim_arg_unknown("authority", s);
            goto out;
        }
    }
    if (!pubkey) {
        usage(stderr);
        goto out;
    }
    {
        struct eg_error e = {0};
        if (eg_key_load_public(pubkey, &a.gwkey, &e) != EG_OK) {
            fprintf(stderr, "ehrgate-sim authority: %s: %s\n", pubkey, e.detail);
            goto out;
        }
        eg_key_fingerprint(a.gwkey, a.gwid);
    }
    sim_rand_seed(&a.r, a.o.seed);
    snprintf(a.feed, sizeof a.feed, "%s/feed/%s", a.o.prefix, a.grantee);
    snprintf(a.since_topic, sizeof a.since_topic, "%s/feed/%s/request", a.o.prefix, a.grantee);
    {
        char fam[256];
        snprintf(fam, sizeof fam, "%s/feed/%s/replies", a.o.prefix, a.grantee);
        sim_reply_topic(a.since_reply, sizeof a.since_reply, fam, &a.r);
        snprintf(fam, sizeof fam, "%s/anchor/%s/replies", a.o.prefix, a.o.gateway);
        sim_reply_topic(a.anchor_reply, sizeof a.anchor_reply, fam, &a.r);
    }
    snprintf(a.anchor_req, sizeof a.anchor_req, "%s/anchor/%s/request", a.o.prefix, a.o.gateway);
    snprintf(a.blocks_topic, sizeof a.blocks_topic, "%s/anchor/%s/blocks", a.o.prefix,
             a.o.gateway);
    snprintf(a.stats_topic, sizeof a.stats_topic, "%s/gateway/%s/stats", a.o.prefix,
             a.o.gateway);
    {
        const char *t[5] = {a.feed, a.since_reply, a.anchor_reply, a.blocks_topic, a.stats_topic};
        for (int k = 0; k < 5; k++) {
            if (strlen(t[k]) >= EG_TOPIC_FILTER_MAX) {
                fprintf(stderr, "ehrgate-sim authority: topic too long: %s\n", t[k]);
                goto out;
            }
            memcpy(filters[k], t[k], strlen(t[k]) + 1);
        }
    }
    if (!(a.q = eg_queue_new(200000, 256 << 20)))
        goto out;
    {
        char client[160];
        /* a persistent session: feed messages published while we are away wait
         * for us (the rest is filled with since) */
        snprintf(client, sizeof client, "sim-grantee-%s", a.grantee);
        if (sim_link_open(&a.link, &a.o, client, filters, 5, a.q, 86400) != 0)
            goto out;
    }
    sim_signals();
    start = eg_mono_ms();
    a.low_since = start;
    end = a.o.duration_s > 0 ? start + (int64_t)(a.o.duration_s * 1000) : INT64_MAX;
    for (int phase = 0; phase < 2; phase++) {
        if (phase == 1) {
            /* drain: one last since for whatever came after the last record
             * seen, then the proofs of records still waiting for their block */
            sim_stop = 0;
            end = eg_mono_ms() + (int64_t)(drain * 1000);
            a.tail_check = 1;
        }
        while (!sim_stop && eg_mono_ms() < end) {
            size_t n;
            struct eg_msg *list = eg_queue_pop_many(a.q, 1024, 50, &n);
            for (struct eg_msg *m = list; m; m = m->next)
                on_message(&a, m);
            eg_msg_free_list(list);
            sim_link_tick(&a.link);
            if (sim_link_ready(&a.link))
                ask(&a, eg_mono_ms());
            if (!a.o.quiet)
                line(&a, 0);
            if (phase == 1 && a.waiting == 0 && !a.tail_check && !a.since_pending)
                break;
        }
    }
    line(&a, 1);
    if (summary) {
        FILE *f = fopen(summary, "w");
        if (f) {
            fprintf(f,
                    "{\"grantee\":\"%s\",\"records\":%llu,\"duplicates\":%llu,\"proofs_ok\":%llu,"
                    "\"failed\":%llu,\"unexpected\":%llu,\"erased\":%llu,\"blocks\":%llu,"
                    "\"since_requests\":%llu,\"next_feed_seq\":%llu}\n",
                    a.grantee, (unsigned long long)a.received, (unsigned long long)a.dups,
                    (unsigned long long)a.ok, (unsigned long long)a.failed,
                    (unsigned long long)a.unexpected, (unsigned long long)a.erased,
                    (unsigned long long)a.blocks, (unsigned long long)a.gaps_asked,
                    (unsigned long long)a.low);
            fclose(f);
        }
    }
    code = a.failed || a.unexpected || a.ok < a.received ? 1 : 0;
out:
    sim_link_close(&a.link);
    if (a.q)
        eg_queue_free(a.q);
    for (size_t i = 0; i < a.nrecs; i++)
        free(a.recs[i].bytes);
    free(a.recs);
    free(a.index);
    free(a.seen);
    for (size_t i = 0; i < a.nexpect; i++)
        free(a.expect[i]);
    free(a.expect);
    cJSON_Delete(a.stats);
    eg_key_free(a.gwkey);
    return code;
}

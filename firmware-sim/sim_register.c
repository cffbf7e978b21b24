/*
 * sim_register.c — `ehrgate-sim register`: registers a simulated fleet
 * through the signed admin API (SPEC §10): hospitals, patients (each with
 * a fresh P-256 key for the patient app, and an MRN at every hospital) and
 * devices bound to them, named as `devices` and `hospitals` name them.
 * Requests are pipelined on one connection (their nonces increase in
 * publish order, which the broker keeps); an id registered before counts
 * as done, so a re-run is harmless.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eg_codec.h"
#include "eg_json.h"
#include "eg_time.h"
#include "sim.h"

#define WINDOW 128

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim register --admin-key KEY [options]\n"
            "Registers hospitals H1..Hn, patients and devices through the signed admin API, in\n"
            "the naming `devices` and `hospitals` use (device i is bound to patient\n"
            "((i-1) mod patients)+1; patient j has MRN-H{k}-{j} at every hospital k).\n\n"
            "  --admin-key KEY     the operator's key (its .pub given to ehrgate --admin-pubkey)\n"
            "  --patients N        patients P00001.. (default 10)\n"
            "  --devices N         devices D00001.. (default 10)\n"
            "  --hospitals N       hospitals H1.. (default 0)\n"
            "  --keys DIR          patient app keys DIR/{patient}.key/.pub, made if missing\n"
            "                      (default sim-keys)\n"
            "  --device-keys       also give every device a key (DIR/{device}.key): then its\n"
            "                      telemetry must be signed\n"
            "  --timeout S         for all replies (default 60 s + 50 ms per request); a request\n"
            "                      without a reply for 30 s is sent again\n"
            "Parties registered by an earlier run (listed in {state}/registered) are skipped.\n"
            "%s",
            sim_common_help);
}

/* Loads DIR/{id}.key, creating it (and .pub) when missing; the PEM of the
 * public key into pem. */
static int ensure_key(const char *dir, const char *id, struct eg_rng *rng, char *pem, size_t size)
{
    char kpath[1024], ppath[1024];
    struct eg_key *k = NULL;
    struct eg_error e = {0};
    int rc;
    snprintf(kpath, sizeof kpath, "%s/%s.key", dir, id);
    snprintf(ppath, sizeof ppath, "%s/%s.pub", dir, id);
    rc = sim_key_load(kpath, &k);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        FILE *f;
        if (eg_key_generate(rng, &k, &e) != EG_OK ||
            eg_key_write_private(k, kpath, &e) != EG_OK) {
            fprintf(stderr, "ehrgate-sim register: %s: %s\n", kpath, e.detail);
            eg_key_free(k);
            return -1;
        }
        if (eg_key_public_pem(k, pem, size) == EG_OK && (f = fopen(ppath, "w"))) {
            fputs(pem, f);
            fclose(f);
        }
    }
    rc = eg_key_public_pem(k, pem, size) == EG_OK ? 0 : -1;
    eg_key_free(k);
    return rc;
}

struct req {
    cJSON *body;
    char what[96];
    uint8_t corr[16];
    int state; /* 0 waiting to be sent, 1 sent, 2 answered */
    int64_t sent_at;
};

/* {state}/registered: the parties registered by earlier runs ("patient
 * P00001"), skipped on a re-run so the gateway's quarantine does not fill
 * with `conflict` answers. */
static int known(char **list, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], what) == 0)
            return 1;
    return 0;
}

static void remember(FILE *f, const char *what)
{
    if (f) {
        fprintf(f, "%s\n", what);
        fflush(f);
    }
}

int sim_cmd_register(int argc, char **argv)
{
    struct sim_opts o;
    const char *admin_key = NULL, *keys = "sim-keys";
    long npat = 10, ndev = 10, nhosp = 0, device_keys = 0;
    double timeout = 0;
    char **knowns = NULL;
    size_t nknown = 0, skipped = 0;
    FILE *done = NULL;
    struct eg_key *akey = NULL;
    struct eg_rng *rng = NULL;
    struct eg_queue *q = NULL;
    struct sim_link link = {0};
    struct sim_rand r;
    struct req *reqs = NULL;
    size_t nreq = 0, answered = 0;
    long ok = 0, existed = 0, failed = 0;
    char topic[256], replies[256], reply_topic[320], signer[128];
    char filters[1][EG_TOPIC_FILTER_MAX], pem[EG_PEM_PUB_MAX];
    int code = 2;

    sim_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        static const char *const flags[] = {"--device-keys", NULL};
        const char *a = argv[i], *v;
        int c = sim_arg(&o, argc, argv, &i, "register", usage, flags, &v, &code);
        if (c == SIM_ARG_EXIT)
            return code;
        if (c == SIM_ARG_DONE)
            continue;
        if (c == SIM_ARG_WORD) {
            if (strcmp(a, "--device-keys") != 0)
                return sim_arg_unknown("register", a);
            device_keys = 1;
            continue;
        }
        if (strcmp(a, "--admin-key") == 0)
            admin_key = v;
        else if (strcmp(a, "--keys") == 0)
            keys = v;
        else if (strcmp(a, "--patients") == 0) {
            if (sim_parse_int(a, v, 1, 99999, &npat) != 0)
                return 2;
        } else if (strcmp(a, "--devices") == 0) {
            if (sim_parse_int(a, v, 0, 99999, &ndev) != 0)
                return 2;
        } else if (strcmp(a, "--hospitals") == 0) {
            if (sim_parse_int(a, v, 0, 999, &nhosp) != 0)
                return 2;
        } else if (strcmp(a, "--timeout") == 0) {
            if (sim_parse_double(a, v, 1, 864000, &timeout) != 0)
                return 2;
        } else {
            return sim_arg_unknown("register", a);
        }
    }
    if (!admin_key) {
        usage(stderr);
        return 2;
    }
    {
        struct eg_error e = {0};
        uint8_t fp[32];
        char hex[65];
        if (eg_key_load_private(admin_key, &akey, &e) != EG_OK) {
            fprintf(stderr, "ehrgate-sim register: %s: %s\n", admin_key, e.detail);
            return 2;
        }
        eg_key_fingerprint(akey, fp);
        eg_hex_encode(fp, 32, hex);
        snprintf(signer, sizeof signer, "admin_%.16s", hex);
    }
    if (mkdir(keys, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "ehrgate-sim register: --keys %s: %s\n", keys, strerror(errno));
        goto out;
    }
    if (eg_rng_new(&rng) != EG_OK ||
        !(reqs = calloc((size_t)(npat + ndev + nhosp), sizeof *reqs)))
        goto out;
    for (long h = 1; h <= nhosp; h++) {
        cJSON *b = cJSON_CreateObject();
        char id[24];
        snprintf(id, sizeof id, "H%ld", h);
        cJSON_AddStringToObject(b, "op", "register_hospital");
        cJSON_AddStringToObject(b, "hospital_id", id);
        cJSON_AddStringToObject(b, "utc_offset", "+00:00");
        reqs[nreq].body = b;
        snprintf(reqs[nreq++].what, 96, "hospital %s", id);
    }
    for (long p = 1; p <= npat; p++) {
        cJSON *b = cJSON_CreateObject(), *ids;
        char id[65];
        sim_patient_id(id, "P", (uint64_t)p);
        if (ensure_key(keys, id, rng, pem, sizeof pem) != 0) {
            cJSON_Delete(b);
            goto out;
        }
        cJSON_AddStringToObject(b, "op", "register_patient");
        cJSON_AddStringToObject(b, "patient_id", id);
        cJSON_AddStringToObject(b, "pubkey", pem);
        if (nhosp) {
            ids = cJSON_AddArrayToObject(b, "identifiers");
            for (long h = 1; h <= nhosp; h++) {
                cJSON *x = cJSON_CreateObject();
                char hid[24], mrn[96];
                snprintf(hid, sizeof hid, "H%ld", h);
                sim_mrn(mrn, hid, (uint64_t)p);
                cJSON_AddStringToObject(x, "hospital", hid);
                cJSON_AddStringToObject(x, "value", mrn);
                cJSON_AddItemToArray(ids, x);
            }
        }
        reqs[nreq].body = b;
        snprintf(reqs[nreq++].what, 96, "patient %s", id);
    }
    for (long d = 1; d <= ndev; d++) {
        cJSON *b = cJSON_CreateObject();
        char id[65], pid[65];
        sim_device_id(id, "D", (uint64_t)d);
        sim_patient_id(pid, "P", sim_patient_of((uint64_t)d, (uint64_t)npat));
        cJSON_AddStringToObject(b, "op", "register_device");
        cJSON_AddStringToObject(b, "device_id", id);
        cJSON_AddStringToObject(b, "patient_id", pid);
        cJSON_AddStringToObject(b, "type", sim_device_type((uint64_t)d));
        if (device_keys) {
            if (ensure_key(keys, id, rng, pem, sizeof pem) != 0) {
                cJSON_Delete(b);
                goto out;
            }
            cJSON_AddStringToObject(b, "pubkey", pem);
        }
        reqs[nreq].body = b;
        snprintf(reqs[nreq++].what, 96, "device %s", id);
    }

    /* skip what earlier runs registered */
    {
        char path[1024], line[128];
        FILE *f;
        size_t kept = 0;
        snprintf(path, sizeof path, "%s/registered", o.state_dir);
        mkdir(o.state_dir, 0700);
        if ((f = fopen(path, "r"))) {
            while (fgets(line, sizeof line, f)) {
                char **nk = realloc(knowns, (nknown + 1) * sizeof *nk);
                line[strcspn(line, "\r\n")] = 0;
                if (!nk || !(nk[nknown] = strdup(line))) {
                    knowns = nk ? nk : knowns;
                    break;
                }
                knowns = nk;
                nknown++;
            }
            fclose(f);
        }
        for (size_t k = 0; k < nreq; k++) {
            if (known(knowns, nknown, reqs[k].what)) {
                cJSON_Delete(reqs[k].body);
                reqs[k].body = NULL;
                skipped++;
            } else {
                reqs[kept++] = reqs[k];
            }
        }
        for (size_t k = kept; k < nreq; k++)
            reqs[k].body = NULL;
        nreq = kept;
        done = fopen(path, "a");
    }
    if (timeout == 0)
        timeout = 60 + (double)nreq / 20; /* the gateway takes admin requests one by one */
    sim_rand_seed(&r, o.seed);
    snprintf(topic, sizeof topic, "%s/admin/request", o.prefix);
    snprintf(replies, sizeof replies, "%s/admin/replies", o.prefix);
    sim_reply_topic(reply_topic, sizeof reply_topic, replies, &r);
    if (strlen(reply_topic) >= EG_TOPIC_FILTER_MAX) {
        fprintf(stderr, "ehrgate-sim register: --topic-prefix too long\n");
        goto out;
    }
    snprintf(filters[0], EG_TOPIC_FILTER_MAX, "%.159s", reply_topic);
    if (!(q = eg_queue_new(100000, 256 << 20)))
        goto out;
    {
        char client[96];
        snprintf(client, sizeof client, "sim-register-%ld", (long)getpid());
        if (sim_link_open(&link, &o, client, filters, 1, q, 0) != 0)
            goto out;
    }
    code = 1;
    if (sim_link_wait(&link, 15000) != 0) {
        fprintf(stderr, "ehrgate-sim register: cannot reach %s\n", o.broker);
        goto out;
    }
    {
        int64_t until = eg_mono_ms() + (int64_t)(timeout * 1000);
        size_t inflight = 0, next = 0;
        while (answered < nreq && eg_mono_ms() < until && !sim_stop) {
            size_t n;
            struct eg_msg *list;
            int64_t now = eg_mono_ms();
            /* a request without a reply for 30 s is sent again (new nonce) */
            for (size_t k = 0; k < nreq; k++)
                if (reqs[k].state == 1 && now - reqs[k].sent_at > 30000) {
                    reqs[k].state = 0;
                    inflight--;
                    if (k < next)
                        next = k;
                }
            /* keep WINDOW requests in flight */
            for (; next < nreq && inflight < WINDOW; next++) {
                struct req *rq = &reqs[next];
                char when[EG_TIME_STRLEN], sig[EG_SIG_B64_MAX], *payload;
                if (rq->state != 0)
                    continue;
                eg_time_format(eg_now_ms(), when);
                cJSON_DeleteItemFromObject(rq->body, "nonce");
                cJSON_DeleteItemFromObject(rq->body, "issued");
                cJSON_AddItemToObject(rq->body, "nonce",
                                      egjson_create_u64(sim_next_nonce(o.state_dir, signer)));
                cJSON_AddStringToObject(rq->body, "issued", when);
                payload = cJSON_PrintUnformatted(rq->body);
                for (size_t k = 0; k < sizeof rq->corr; k++)
                    rq->corr[k] = (uint8_t)sim_rand_u64(&r);
                if (!payload ||
                    sim_sign(akey, rng, topic, payload, strlen(payload), sig, sizeof sig) != 0 ||
                    sim_publish(&link, topic, payload, strlen(payload), sig, reply_topic,
                                rq->corr, sizeof rq->corr) != 0) {
                    free(payload);
                    break; /* not connected: try again after the next tick */
                }
                free(payload);
                rq->state = 1;
                rq->sent_at = now;
                inflight++;
            }
            list = eg_queue_pop_many(q, 256, 100, &n);
            for (struct eg_msg *m = list; m; m = m->next) {
                cJSON *j = NULL;
                struct eg_error e;
                if (m->corr_len != 16 || egjson_parse(m->payload, m->len, &j, &e) != EG_OK)
                    continue;
                for (size_t k = 0; k < nreq; k++) {
                    const char *status, *ecode;
                    if (reqs[k].state != 1 || memcmp(reqs[k].corr, m->corr, 16) != 0)
                        continue;
                    reqs[k].state = 2;
                    answered++;
                    inflight--;
                    status = egjson_str(j, "status");
                    ecode = egjson_str(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
                    if (status && strcmp(status, "ok") == 0) {
                        ok++;
                        remember(done, reqs[k].what);
                    } else if (ecode && strcmp(ecode, "conflict") == 0) {
                        existed++;
                        remember(done, reqs[k].what);
                    } else {
                        char *t = cJSON_PrintUnformatted(j);
                        fprintf(stderr, "ehrgate-sim register: %s: %s\n", reqs[k].what,
                                t ? t : "?");
                        free(t);
                        failed++;
                    }
                    break;
                }
                cJSON_Delete(j);
            }
            eg_msg_free_list(list);
            sim_link_tick(&link);
            if (!o.quiet)
                sim_progress(0, "register: %zu/%zu answered (%ld new, %ld existed, %ld failed)",
                             answered, nreq, ok, existed, failed);
        }
    }
    if (!o.quiet)
        sim_progress(1,
                     "register: %zu/%zu answered (%ld new, %ld existed, %ld failed; %zu registered "
                     "before)",
                     answered, nreq, ok, existed, failed, skipped);
    if (answered < nreq)
        fprintf(stderr, "ehrgate-sim register: %zu request(s) without a reply\n",
                nreq - answered);
    code = answered == nreq && failed == 0 ? 0 : 1;
out:
    sim_link_close(&link);
    if (q)
        eg_queue_free(q);
    for (size_t k = 0; reqs && k < (size_t)(npat + ndev + nhosp); k++)
        cJSON_Delete(reqs[k].body);
    free(reqs);
    for (size_t k = 0; k < nknown; k++)
        free(knowns[k]);
    free(knowns);
    if (done)
        fclose(done);
    eg_key_free(akey);
    eg_rng_free(rng);
    return code;
}

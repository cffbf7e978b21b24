/*
 * ehrgate_fill.c — `ehrgate-fill`: grows a gateway database directly, without
 * MQTT, through the gateway's own ingest code (strict JSON, normalization,
 * encryption, dedup rows) and chain sealing, in large transactions. For
 * measuring `ehrctl verify` and startup on big databases (issue 4, 8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eg_chain.h"
#include "eg_config.h"
#include "eg_ingest.h"
#include "eg_log.h"
#include "eg_queue.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_vault.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: ehrgate-fill [--db DB --key K --master-key MK --block-max-entries N]\n"
                 "                    [--count N] [--devices N] [--readings N]\n\n"
                 "Appends about --count entries (default 1000000) from --devices simulated\n"
                 "monitors (default 100), --readings per message (default 4), through the\n"
                 "gateway's ingest code, sealing blocks as the gateway does. Progress goes to\n"
                 "stderr. Keys are created with a new database as by ehrgate.\n\n");
    eg_config_print_help(out, EG_CFG_GATEWAY);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct eg_config cfg;
    struct eg_error e = {0};
    struct eg_store *st = NULL;
    struct eg_rng *rng = NULL;
    struct eg_vault *v = NULL;
    struct eg_chain *chain = NULL;
    struct eg_ingest *ig = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    long long count = 1000000, devices = 100, readings = 4, done = 0, msgs = 0;
    int nrest = 0, code = 1;
    double t0;
    uint64_t start_seq;

    if (!rest || eg_config_init(&cfg) != EG_OK)
        return 1;
    eg_log_set_level(EG_LOG_WARN);
    if (eg_config_parse_args(&cfg, EG_CFG_GATEWAY, argc, argv, rest, &nrest, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-fill: %s\n", e.detail);
        return 2;
    }
    for (int i = 0; i < nrest; i++) {
        const char *a = rest[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 < nrest && strcmp(a, "--count") == 0)
            count = atoll(rest[++i]);
        else if (i + 1 < nrest && strcmp(a, "--devices") == 0)
            devices = atoll(rest[++i]);
        else if (i + 1 < nrest && strcmp(a, "--readings") == 0)
            readings = atoll(rest[++i]);
        else {
            fprintf(stderr, "ehrgate-fill: unknown argument \"%s\" (see --help)\n", a);
            return 2;
        }
    }
    if (count < 1 || devices < 1 || devices > 100000 || readings < 1 || readings > 64) {
        fprintf(stderr, "ehrgate-fill: --count >= 1, --devices 1..100000, --readings 1..64\n");
        return 2;
    }
    if (eg_rng_new(&rng) != EG_OK || eg_store_open(cfg.db, EG_STORE_CREATE, &st, &e) != EG_OK ||
        eg_vault_open_gateway(st, cfg.key, cfg.master_key, rng, &v, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-fill: %s\n", e.detail);
        code = 2;
        goto out;
    }
    /* one patient per device, registered once */
    if (eg_store_begin(st) != EG_OK)
        goto out;
    for (long long d = 0; d < devices; d++) {
        char dev[32], pat[32];
        struct eg_device_rec rec;
        snprintf(dev, sizeof dev, "FILL-D%lld", d);
        snprintf(pat, sizeof pat, "FILL-P%lld", d);
        if (eg_registry_device(st, dev, &rec) == EG_OK)
            continue;
        if (eg_registry_add_patient(st, pat, NULL, &e) != EG_OK ||
            eg_registry_add_device(st, dev, pat, "monitor", NULL, &e) != EG_OK) {
            fprintf(stderr, "ehrgate-fill: %s\n", e.detail);
            eg_store_rollback(st);
            goto out;
        }
    }
    if (eg_store_commit(st) != EG_OK)
        goto out;
    if (eg_chain_open(st, v, &chain, &e) != EG_OK ||
        eg_ingest_new(st, v, &cfg, chain, &ig, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-fill: %s\n", e.detail);
        goto out;
    }
    start_seq = eg_ingest_next_seq(ig);
    t0 = now_s();
    while (done < count) {
        if (eg_store_begin(st) != EG_OK)
            goto out;
        for (int k = 0; k < 2000 && done < count; k++, msgs++) {
            char topic[96], payload[4096], ts[EG_TIME_STRLEN];
            size_t n = 0;
            long long d = msgs % devices;
            struct eg_msg *m;
            /* seq unique per device and per run: continue after earlier fills */
            long long seq = (long long)start_seq + msgs;
            eg_time_format(eg_now_ms() - 60000, ts);
            snprintf(topic, sizeof topic, "ehr/device/FILL-D%lld/telemetry", d);
            n += (size_t)snprintf(payload + n, sizeof payload - n,
                                  "{\"seq\":%lld,\"ts\":\"%s\",\"readings\":[", seq, ts);
            for (long long r = 0; r < readings; r++)
                n += (size_t)snprintf(payload + n, sizeof payload - n,
                                      "%s{\"type\":\"heart_rate\",\"value\":%lld}", r ? "," : "",
                                      60 + (seq + r) % 60);
            n += (size_t)snprintf(payload + n, sizeof payload - n, "]}");
            m = eg_msg_new(topic, strlen(topic), payload, n, NULL, 0, NULL, 0, NULL, 0);
            if (!m)
                goto out;
            m->received_ms = eg_now_ms();
            if (eg_ingest_process(ig, m) != EG_OK) {
                eg_msg_free(m);
                fprintf(stderr, "ehrgate-fill: storage error\n");
                eg_store_rollback(st);
                goto out;
            }
            eg_msg_free(m);
            done += readings;
        }
        if (eg_chain_seal_full(chain, (uint64_t)cfg.block_max_entries) != EG_OK)
            goto out;
        if (eg_store_commit(st) != EG_OK)
            goto out;
        eg_ingest_committed(ig); /* receipts are not needed here: dropped */
        fprintf(stderr, "\rehrgate-fill: %lld/%lld entries (%.0f entries/s)", done, count,
                (double)done / (now_s() - t0 + 1e-9));
    }
    /* seal the rest so every entry is in a block */
    if (eg_chain_open_count(chain)) {
        struct eg_block b;
        if (eg_store_begin(st) != EG_OK || eg_chain_seal(chain, eg_chain_open_count(chain), &b) != EG_OK ||
            eg_store_commit(st) != EG_OK)
            goto out;
    }
    fprintf(stderr, "\nehrgate-fill: %lld entries in %.1f s; next seq %llu\n", done, now_s() - t0,
            (unsigned long long)eg_ingest_next_seq(ig));
    code = 0;
out:
    eg_ingest_free(ig);
    eg_chain_free(chain);
    eg_vault_free(v);
    eg_store_close(st);
    eg_rng_free(rng);
    eg_config_free(&cfg);
    free(rest);
    return code;
}

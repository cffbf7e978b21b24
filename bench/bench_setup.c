/*
 * bench_setup.c — prepares a gateway database for the bench, directly (the
 * way `ehrctl register` does offline) and through the gateway's own ingest
 * code for the consent directives, before the gateway starts:
 *
 *  - patients BP{i} (one shared public key), each with an MRN at every
 *    bench hospital (BH{h}, no key), and one signed consent directive
 *    granting the bench grantee every category, so every observation is
 *    forwarded: the heaviest path, and the one the ceiling assumes;
 *  - monitors BD{i} bound to patient i mod patients (no key), and signed
 *    monitors BS{i} (the shared key) for the signed-telemetry path.
 *
 * Idempotent: what exists is kept, so it also runs on a database grown by
 * ehrgate-fill.
 */
#include "bench_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_chain.h"
#include "eg_config.h"
#include "eg_consent.h"
#include "eg_ingest.h"
#include "eg_key.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_time.h"
#include "eg_vault.h"

static int fail(const char *what, const struct eg_error *e)
{
    fprintf(stderr, "ehrgate-bench: setup: %s: %s\n", what, e && e->detail[0] ? e->detail : "failed");
    return -1;
}

static int consent(struct eg_ingest *ig, const struct bench_setup *s, const char *patient,
                   uint64_t nonce)
{
    char topic[160], payload[512], ts[EG_TIME_STRLEN], sig[200];
    struct eg_msg *m;
    int n;

    eg_time_format(eg_now_ms(), ts);
    snprintf(topic, sizeof topic, "ehr/patient/%s/consent", patient);
    n = snprintf(payload, sizeof payload,
                 "{\"consent_id\":\"bench\",\"action\":\"grant\",\"grantee\":\"%s\","
                 "\"categories\":[\"vital-signs\",\"laboratory\"],\"nonce\":%llu,\"issued\":\"%s\"}",
                 s->grantee, (unsigned long long)nonce, ts);
    if (eg_key_sign_topic(s->key, s->rng, topic, payload, (size_t)n, sig, sizeof sig) != EG_OK)
        return -1;
    m = eg_msg_new(topic, strlen(topic), payload, (size_t)n, sig, strlen(sig), NULL, 0, NULL, 0);
    if (!m)
        return -1;
    m->received_ms = eg_now_ms();
    n = eg_ingest_process(ig, m) == EG_OK ? 0 : -1;
    eg_msg_free(m);
    return n;
}

int bench_setup_db(const struct bench_setup *s, uint64_t *next_seq)
{
    struct eg_config cfg;
    struct eg_error e = {0};
    struct eg_store *st = NULL;
    struct eg_vault *v = NULL;
    struct eg_chain *chain = NULL;
    struct eg_ingest *ig = NULL;
    char pub[1024], grantee_opt[160];
    char *argv[] = {"bench", "--db", (char *)s->db, "--key", (char *)s->key_path,
                    "--master-key", (char *)s->master_key, "--grantee", grantee_opt, NULL};
    char **rest = calloc(16, sizeof *rest);
    int nrest = 0, rc = -1;
    uint64_t todo = 0;

    snprintf(grantee_opt, sizeof grantee_opt, "%s:public-health", s->grantee);
    if (!rest || eg_config_init(&cfg) != EG_OK) {
        free(rest);
        return fail("config", NULL);
    }
    if (eg_config_parse_args(&cfg, EG_CFG_GATEWAY, 9, argv, rest, &nrest, &e) != EG_OK) {
        fail("config", &e);
        goto out;
    }
    if (eg_key_public_pem(s->key, pub, sizeof pub) != EG_OK ||
        eg_store_open(cfg.db, EG_STORE_CREATE, &st, &e) != EG_OK ||
        eg_vault_open_gateway(st, cfg.key, cfg.master_key, s->rng, &v, &e) != EG_OK) {
        fail(s->db, &e);
        goto out;
    }
    if (eg_store_begin(st) != EG_OK)
        goto out;
    for (uint64_t h = 0; h < s->hospitals; h++) {
        char hid[32];
        snprintf(hid, sizeof hid, "BH%llu", (unsigned long long)h);
        eg_err r = eg_registry_add_hospital(st, hid, NULL, 0, &e);
        if (r != EG_OK && r != EG_E_CONFLICT) {
            fail(hid, &e);
            goto rollback;
        }
    }
    for (uint64_t p = 0; p < s->patients; p++) {
        char pid[32];
        snprintf(pid, sizeof pid, "BP%llu", (unsigned long long)p);
        eg_err r = eg_registry_add_patient(st, pid, pub, &e);
        if (r != EG_OK) {
            if (r != EG_E_CONFLICT) {
                fail(pid, &e);
                goto rollback;
            }
            continue; /* registered, with its consent, by an earlier run */
        }
        todo++;
        for (uint64_t h = 0; h < s->hospitals; h++) {
            char hid[32], mrn[64];
            snprintf(hid, sizeof hid, "BH%llu", (unsigned long long)h);
            snprintf(mrn, sizeof mrn, "MRN-%s-%llu", hid, (unsigned long long)p);
            if (eg_registry_add_identifier(st, hid, mrn, pid, &e) != EG_OK) {
                fail(mrn, &e);
                goto rollback;
            }
        }
    }
    for (uint64_t d = 0; d < s->devices + s->signed_devices; d++) {
        char did[32], pid[32];
        struct eg_device_rec rec;
        int is_signed = d >= s->devices;
        uint64_t i = is_signed ? d - s->devices : d;
        snprintf(did, sizeof did, is_signed ? "BS%llu" : "BD%llu", (unsigned long long)i);
        snprintf(pid, sizeof pid, "BP%llu", (unsigned long long)(i % s->patients));
        if (eg_registry_device(st, did, &rec) == EG_OK)
            continue;
        if (eg_registry_add_device(st, did, pid, "monitor", is_signed ? pub : NULL, &e) != EG_OK) {
            fail(did, &e);
            goto rollback;
        }
    }
    if (eg_store_commit(st) != EG_OK)
        goto out;

    /* the consent directives, as the gateway would take them */
    if (eg_chain_open(st, v, &chain, &e) != EG_OK ||
        eg_ingest_new(st, v, &cfg, chain, &ig, &e) != EG_OK) {
        fail("ingest", &e);
        goto out;
    }
    if (todo) {
        if (eg_store_begin(st) != EG_OK)
            goto out;
        for (uint64_t p = 0; p < s->patients; p++) {
            char pid[32];
            struct eg_directive d;
            snprintf(pid, sizeof pid, "BP%llu", (unsigned long long)p);
            if (eg_consent_lookup(st, pid, "bench", &d) == EG_OK)
                continue;
            if (consent(ig, s, pid, (uint64_t)eg_now_ms()) != 0 ||
                eg_consent_lookup(st, pid, "bench", &d) != EG_OK) {
                fprintf(stderr, "ehrgate-bench: setup: the consent of %s was not taken\n", pid);
                goto rollback;
            }
        }
        if (eg_ingest_flush(ig) != EG_OK)
            goto rollback;
        if (eg_chain_seal_full(chain, (uint64_t)cfg.block_max_entries) != EG_OK)
            goto rollback;
        if (eg_store_commit(st) != EG_OK)
            goto out;
        eg_ingest_committed(ig);
    }
    *next_seq = eg_ingest_next_seq(ig);
    rc = 0;
    goto out;
rollback:
    eg_store_rollback(st);
out:
    eg_ingest_free(ig);
    eg_chain_free(chain);
    eg_vault_free(v);
    eg_store_close(st);
    eg_config_free(&cfg);
    free(rest);
    return rc;
}

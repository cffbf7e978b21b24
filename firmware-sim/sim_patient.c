/*
 * sim_patient.c — `ehrgate-sim patient`: a patient's companion app (SPEC
 * §8, §9). Builds the directive or request, stamps nonce and issued, signs
 * it with the patient's key over topic || 0x00 || payload, publishes it
 * with a Response Topic below the patient's replies topic, and prints the
 * reply (one JSON line on stdout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eg_json.h"
#include "eg_time.h"
#include "sim.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim patient --id PATIENT --key KEY ACTION [options]\n"
            "A patient's app: signs and publishes one consent directive or request and prints\n"
            "the gateway's reply as one JSON line. Exit 0 when the reply is ok, pending or\n"
            "not_found; 1 when rejected or no reply came; 2 on bad usage.\n\n"
            "actions:\n"
            "  grant --consent-id ID --grantee NAME --categories C1,C2 [--purposes P1,P2]\n"
            "        [--period-start T] [--period-end T] [--data-start T] [--data-end T]\n"
            "  revoke --consent-id ID\n"
            "  consents | audit [--since T] [--limit N] | records [--since T] [--limit N] | erase\n\n"
            "  --timeout S         wait this long for the reply (default 10)\n"
            "%s",
            sim_common_help);
}

static cJSON *csv_array(const char *csv)
{
    cJSON *a = cJSON_CreateArray();
    char buf[1024], *save = NULL;
    snprintf(buf, sizeof buf, "%s", csv);
    for (char *t = strtok_r(buf, ",", &save); a && t; t = strtok_r(NULL, ",", &save))
        cJSON_AddItemToArray(a, cJSON_CreateString(t));
    return a;
}

int sim_cmd_patient(int argc, char **argv)
{
    struct sim_opts o;
    const char *id = NULL, *keypath = NULL, *action = NULL, *cid = NULL, *grantee = NULL;
    const char *cats = NULL, *purposes = NULL, *ps = NULL, *pe = NULL, *ds = NULL, *de = NULL;
    const char *since = NULL;
    long limit = 0;
    double timeout = 10;
    struct eg_key *key = NULL;
    struct eg_rng *rng = NULL;
    struct eg_queue *q = NULL;
    struct sim_link link = {0};
    struct sim_rand r;
    char topic[256], replies[256], reply_topic[320], signer[96], when[EG_TIME_STRLEN];
    char filters[1][EG_TOPIC_FILTER_MAX], sig[EG_SIG_B64_MAX], *payload = NULL;
    cJSON *body = NULL, *reply = NULL;
    int code = 2;

    sim_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        const char **slot = NULL;
        int c = sim_arg(&o, argc, argv, &i, "patient", usage, NULL, &v, &code);
        if (c == SIM_ARG_EXIT)
            return code;
        if (c == SIM_ARG_DONE)
            continue;
        if (c == SIM_ARG_WORD) {
            if (action) {
                fprintf(stderr, "ehrgate-sim patient: one action only (\"%s\"?)\n", a);
                return 2;
            }
            action = a;
            continue;
        }
        if (strcmp(a, "--id") == 0)
            slot = &id;
        else if (strcmp(a, "--key") == 0)
            slot = &keypath;
        else if (strcmp(a, "--consent-id") == 0)
            slot = &cid;
        else if (strcmp(a, "--grantee") == 0)
            slot = &grantee;
        else if (strcmp(a, "--categories") == 0)
            slot = &cats;
        else if (strcmp(a, "--purposes") == 0)
            slot = &purposes;
        else if (strcmp(a, "--period-start") == 0)
            slot = &ps;
        else if (strcmp(a, "--period-end") == 0)
            slot = &pe;
        else if (strcmp(a, "--data-start") == 0)
            slot = &ds;
        else if (strcmp(a, "--data-end") == 0)
            slot = &de;
        else if (strcmp(a, "--since") == 0)
            slot = &since;
        else if (strcmp(a, "--limit") == 0 || strcmp(a, "--timeout") == 0) {
            if ((a[2] == 'l' ? sim_parse_int(a, v, 1, 1000, &limit)
                             : sim_parse_double(a, v, 0.1, 3600, &timeout)) != 0)
                return 2;
            continue;
        }
        if (!slot)
            return sim_arg_unknown("patient", a);
        *slot = v;
    }
    if (!id || !keypath || !action) {
        usage(stderr);
        return 2;
    }
    if (!(body = cJSON_CreateObject()))
        return 2;
    if (strcmp(action, "grant") == 0 || strcmp(action, "revoke") == 0) {
        if (!cid || (action[0] == 'g' && (!grantee || !cats))) {
            fprintf(stderr, "ehrgate-sim patient: %s needs --consent-id%s\n", action,
                    action[0] == 'g' ? ", --grantee and --categories" : "");
            goto out;
        }
        cJSON_AddStringToObject(body, "consent_id", cid);
        cJSON_AddStringToObject(body, "action", action);
        if (action[0] == 'g') {
            cJSON_AddStringToObject(body, "grantee", grantee);
            cJSON_AddItemToObject(body, "categories", csv_array(cats));
            if (purposes)
                cJSON_AddItemToObject(body, "purposes", csv_array(purposes));
            if (ps || pe) {
                cJSON *p = cJSON_AddObjectToObject(body, "period");
                if (ps)
                    cJSON_AddStringToObject(p, "start", ps);
                if (pe)
                    cJSON_AddStringToObject(p, "end", pe);
            }
            if (ds || de) {
                cJSON *p = cJSON_AddObjectToObject(body, "data_period");
                if (ds)
                    cJSON_AddStringToObject(p, "start", ds);
                if (de)
                    cJSON_AddStringToObject(p, "end", de);
            }
        }
        snprintf(topic, sizeof topic, "%s/patient/%s/consent", o.prefix, id);
    } else if (strcmp(action, "consents") == 0 || strcmp(action, "audit") == 0 ||
               strcmp(action, "records") == 0 || strcmp(action, "erase") == 0) {
        cJSON_AddStringToObject(body, "op", action);
        if (since)
            cJSON_AddStringToObject(body, "since", since);
        if (limit)
            cJSON_AddNumberToObject(body, "limit", (double)limit);
        snprintf(topic, sizeof topic, "%s/patient/%s/request", o.prefix, id);
    } else {
        fprintf(stderr, "ehrgate-sim patient: unknown action \"%s\"\n", action);
        goto out;
    }
    snprintf(signer, sizeof signer, "patient_%s", id);
    eg_time_format(eg_now_ms(), when);
    cJSON_AddItemToObject(body, "nonce", egjson_create_u64(sim_next_nonce(o.state_dir, signer)));
    cJSON_AddStringToObject(body, "issued", when);
    if (!(payload = cJSON_PrintUnformatted(body)))
        goto out;
    {
        struct eg_error e = {0};
        if (eg_key_load_private(keypath, &key, &e) != EG_OK) {
            fprintf(stderr, "ehrgate-sim patient: %s: %s\n", keypath, e.detail);
            goto out;
        }
    }
    if (eg_rng_new(&rng) != EG_OK ||
        sim_sign(key, rng, topic, payload, strlen(payload), sig, sizeof sig) != 0)
        goto out;
    sim_rand_seed(&r, o.seed);
    snprintf(replies, sizeof replies, "%s/patient/%s/replies", o.prefix, id);
    sim_reply_topic(reply_topic, sizeof reply_topic, replies, &r);
    if (strlen(reply_topic) >= EG_TOPIC_FILTER_MAX) {
        fprintf(stderr, "ehrgate-sim patient: --topic-prefix or --id too long\n");
        goto out;
    }
    snprintf(filters[0], EG_TOPIC_FILTER_MAX, "%.159s", reply_topic);
    if (!(q = eg_queue_new(1024, 64 << 20)))
        goto out;
    {
        char client[160];
        snprintf(client, sizeof client, "sim-app-%s-%ld", id, (long)getpid());
        if (sim_link_open(&link, &o, client, filters, 1, q, 0) != 0)
            goto out;
    }
    code = 1;
    if (sim_link_wait(&link, (int)(timeout * 1000)) != 0) {
        fprintf(stderr, "ehrgate-sim patient: cannot reach %s\n", o.broker);
        goto out;
    }
    if (sim_request(&link, q, topic, payload, strlen(payload), sig, reply_topic, &r,
                    (int)(timeout * 1000), &reply) != 0) {
        fprintf(stderr, "ehrgate-sim patient: no reply within %.0f s\n", timeout);
        goto out;
    }
    {
        char *text = cJSON_PrintUnformatted(reply);
        const char *status = egjson_str(reply, "status");
        printf("%s\n", text ? text : "{}");
        free(text);
        code = status && strcmp(status, "rejected") != 0 ? 0 : 1;
    }
out:
    sim_link_close(&link);
    if (q)
        eg_queue_free(q);
    cJSON_Delete(body);
    cJSON_Delete(reply);
    free(payload);
    eg_key_free(key);
    eg_rng_free(rng);
    return code;
}

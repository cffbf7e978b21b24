/*
 * sim_hospitals.c — `ehrgate-sim hospitals`: hospital information systems
 * (SPEC §5) publishing lab and vitals results for their patients, as FHIR
 * R4 Bundles and as HL7 v2 ORU^R01, through the same store-and-forward
 * engine as the devices (a result is kept until its receipt, with the HL7
 * ACK, arrives). Patients are named by their MRN at the hospital, as
 * `register` maps them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_time.h"
#include "sim.h"
#include "sim_engine.h"
#include "sim_hospital_msgs.h"

struct hosp {
    int format; /* 0 mixed, 1 fhir, 2 hl7 */
    uint64_t npatients;
    int next_hl7;
};

static char *gen_hospital(struct sim_engine *e, struct sim_source *s, uint64_t seq,
                          char msg_id[72], size_t *len, unsigned *fault)
{
    struct hosp *h = s->model;
    struct sim_rand *r = sim_engine_rand(e);
    char mrn[96];
    int hl7;
    uint64_t patient = 1 + sim_rand_below(r, h->npatients);

    *fault &= ~(SIM_F_RANGE | SIM_F_UNIT | SIM_F_SKEW); /* refused at the command line */
    if (*fault & SIM_F_CONFLICT) {
        if (s->last_ok_seq == 0)
            *fault &= ~SIM_F_CONFLICT;
        else
            seq = s->last_ok_seq; /* a stored message id, another result: conflict */
    }
    sim_mrn(mrn, s->id, patient);
    snprintf(msg_id, 72, "%s-%llu", s->id, (unsigned long long)seq);
    hl7 = h->format == 2 || (h->format == 0 && (h->next_hl7 = !h->next_hl7));
    {
        char *p = hl7 ? sim_hosp_hl7_oru(s->id, msg_id, mrn, eg_now_ms() - 60000, r, len)
                      : sim_hosp_fhir_bundle(s->id, msg_id, mrn, eg_now_ms() - 60000, r, len);
        if (p && hl7 && (*fault & SIM_F_MALFORMED)) {
            /* cutting an ER7 message may leave a valid one: break MSH instead,
             * which makes it neither HL7 nor JSON (parse) */
            p[2] = 'X';
            *fault &= ~SIM_F_MALFORMED;
        }
        return p;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim hospitals [options]\n"
            "Runs simulated hospital systems H1..Hn that publish lab and vital-sign results\n"
            "(SPEC §5) for patients P00001.. (by their MRN at the hospital), as FHIR R4\n"
            "Bundles and HL7 v2 ORU^R01, kept until receipted (the receipt carries the HL7\n"
            "ACK).\n\n"
            "  --count N           hospitals (default 3)\n"
            "  --patients N        patients with MRNs at each hospital (default 10)\n"
            "  --format F          fhir, hl7 or mixed (default mixed)\n"
            "  --rate R            messages per second per hospital (default 1)\n"
            "  --buffer N          unreceipted messages kept per hospital (default 10000)\n"
            "  --receipt-timeout MS  resend after this long without a receipt (default 5000)\n"
            "  --keys DIR          sign with DIR/{hospital}.key where it exists\n"
            "  --drain S           at the end, wait up to S s for outstanding receipts (15)\n"
            "  --summary FILE      write a JSON summary at the end\n"
            "  --cert-dir DIR      mqtts: hospital H connects with DIR/H.crt/.key\n"
            "%s\n%s",
            sim_faults_help, sim_common_help);
}

int sim_cmd_hospitals(int argc, char **argv)
{
    struct sim_opts o;
    struct sim_engine_cfg cfg;
    const char *keys = NULL, *faults = NULL, *format = "mixed";
    long count = 3, npat = 10, buffer = 10000, timeout = 5000;
    double rate = 1, drain = 15;
    struct sim_source *src;
    struct hosp *models;
    int code = 0, fmt;

    sim_opts_init(&o);
    memset(&cfg, 0, sizeof cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int c = sim_arg(&o, argc, argv, &i, "hospitals", usage, NULL, &v, &code);
        if (c == SIM_ARG_EXIT)
            return code;
        if (c == SIM_ARG_WORD)
            return sim_arg_unknown("hospitals", a);
        if (c == SIM_ARG_DONE)
            continue;
        if (strcmp(a, "--count") == 0) {
            if (sim_parse_int(a, v, 1, 999, &count) != 0)
                return 2;
        } else if (strcmp(a, "--patients") == 0) {
            if (sim_parse_int(a, v, 1, 99999, &npat) != 0)
                return 2;
        } else if (strcmp(a, "--buffer") == 0) {
            if (sim_parse_int(a, v, 1, 1000000, &buffer) != 0)
                return 2;
        } else if (strcmp(a, "--receipt-timeout") == 0) {
            if (sim_parse_int(a, v, 50, 3600000, &timeout) != 0)
                return 2;
        } else if (strcmp(a, "--rate") == 0) {
            if (sim_parse_double(a, v, 0.001, 10000, &rate) != 0)
                return 2;
        } else if (strcmp(a, "--drain") == 0) {
            if (sim_parse_double(a, v, 0, 86400, &drain) != 0)
                return 2;
        } else if (strcmp(a, "--format") == 0) {
            format = v;
        } else if (strcmp(a, "--keys") == 0) {
            keys = v;
        } else if (strcmp(a, "--fault") == 0) {
            faults = v;
        } else if (strcmp(a, "--summary") == 0) {
            cfg.summary = v;
        } else if (strcmp(a, "--cert-dir") == 0) {
            cfg.cert_dir = v;
        } else {
            return sim_arg_unknown("hospitals", a);
        }
    }
    fmt = strcmp(format, "mixed") == 0 ? 0
          : strcmp(format, "fhir") == 0 ? 1
          : strcmp(format, "hl7") == 0  ? 2
                                        : -1;
    if (fmt < 0) {
        fprintf(stderr, "ehrgate-sim hospitals: --format must be fhir, hl7 or mixed\n");
        return 2;
    }
    if (sim_faults_parse(faults, &cfg.faults, cfg.fault_p) != 0)
        return 2;
    if (cfg.faults & (SIM_F_RANGE | SIM_F_UNIT | SIM_F_SKEW)) {
        fprintf(stderr, "ehrgate-sim hospitals: --fault range, unit and skew apply to devices "
                        "only\n");
        return 2;
    }
    if ((cfg.faults & SIM_F_BADSIG) && !keys) {
        fprintf(stderr, "ehrgate-sim hospitals: --fault badsig needs --keys (unsigned records "
                        "have no signature to break)\n");
        return 2;
    }
    src = calloc((size_t)count, sizeof *src);
    models = calloc((size_t)count, sizeof *models);
    if (!src || !models) {
        free(src);
        free(models);
        return 2;
    }
    for (long i = 0; i < count && code == 0; i++) {
        struct sim_source *s = &src[i];
        s->index = (uint64_t)i + 1;
        snprintf(s->id, sizeof s->id, "H%ld", i + 1);
        snprintf(s->topic, sizeof s->topic, "%s/hospital/%s/records", o.prefix, s->id);
        snprintf(s->receipts, sizeof s->receipts, "%s/hospital/%s/receipts", o.prefix, s->id);
        models[i].format = fmt;
        models[i].npatients = (uint64_t)npat;
        s->model = &models[i];
        if (keys) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s.key", keys, s->id);
            if (sim_key_load(path, &s->key) < 0)
                code = 2;
        }
    }
    if (code == 0) {
        cfg.o = &o;
        cfg.kind = "hospitals";
        cfg.per_conn = 1; /* each hospital its own connection, as separate systems */
        cfg.buffer = (int)buffer;
        cfg.receipt_timeout_ms = (int)timeout;
        cfg.window = 50;
        cfg.rate = rate;
        cfg.drain_s = drain;
        cfg.max_payload = 262144;
        sim_signals();
        code = sim_engine_run(&cfg, src, (size_t)count, gen_hospital);
    }
    for (long i = 0; i < count; i++)
        eg_key_free(src[i].key);
    free(src);
    free(models);
    return code;
}

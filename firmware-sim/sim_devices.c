/*
 * sim_devices.c — `ehrgate-sim devices`: a fleet of simulated medical
 * devices (SPEC §4) with physiologically plausible readings: each vital
 * sign follows a mean-reverting random walk around a per-patient baseline,
 * with a circadian swing (lowest heart rate and temperature at night) and
 * occasional anomalies (a tachycardia or desaturation episode lasting a few
 * readings). Thermometers, scales and glucometers sometimes report in °F,
 * lb and mmol/L, as real devices configured for other markets do.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eg_time.h"
#include "sim.h"
#include "sim_engine.h"

struct vitals {
    double hr, spo2, temp, sys, dia, glucose, weight, resp;
    double base_hr, base_spo2, base_temp, base_sys, base_dia, base_glucose, base_resp;
    int episode; /* readings left in an anomaly */
    char type[24];
};

static double walk(struct sim_rand *r, double v, double base, double pull, double sd)
{
    return v + (base - v) * pull + sd * sim_rand_normal(r);
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static void vitals_init(struct vitals *v, struct sim_rand *r, const char *type)
{
    memset(v, 0, sizeof *v);
    snprintf(v->type, sizeof v->type, "%s", type);
    v->base_hr = 62 + 18 * sim_rand_uniform(r);
    v->base_spo2 = 95.5 + 3 * sim_rand_uniform(r);
    v->base_temp = 36.5 + 0.5 * sim_rand_uniform(r);
    v->base_sys = 108 + 30 * sim_rand_uniform(r);
    v->base_dia = 68 + 14 * sim_rand_uniform(r);
    v->base_glucose = 85 + 60 * sim_rand_uniform(r);
    v->base_resp = 12 + 6 * sim_rand_uniform(r);
    v->weight = 50 + 60 * sim_rand_uniform(r);
    v->hr = v->base_hr;
    v->spo2 = v->base_spo2;
    v->temp = v->base_temp;
    v->sys = v->base_sys;
    v->dia = v->base_dia;
    v->glucose = v->base_glucose;
    v->resp = v->base_resp;
}

static void vitals_step(struct vitals *v, struct sim_rand *r, int64_t now_ms)
{
    /* circadian: a cosine with its low at 04:00 UTC-ish */
    double hour = (double)((now_ms / 1000) % 86400) / 3600.0;
    double c = cos(2 * M_PI * (hour - 16) / 24); /* +1 at 16:00, -1 at 04:00 */
    double hr_base = v->base_hr + 6 * c, temp_base = v->base_temp + 0.3 * c;
    if (v->episode == 0 && sim_rand_uniform(r) < 0.003)
        v->episode = 3 + (int)sim_rand_below(r, 8);
    if (v->episode > 0) {
        v->episode--;
        hr_base += 45;
        v->spo2 -= 1.5;
    }
    v->hr = clampd(walk(r, v->hr, hr_base, 0.2, 2.0), 35, 190);
    v->spo2 = clampd(walk(r, v->spo2, v->base_spo2, 0.3, 0.4), 82, 100);
    v->temp = clampd(walk(r, v->temp, temp_base, 0.2, 0.05), 35, 40.5);
    v->sys = clampd(walk(r, v->sys, v->base_sys + 5 * c, 0.2, 3), 80, 200);
    v->dia = clampd(walk(r, v->dia, v->base_dia + 3 * c, 0.2, 2), 45, 120);
    if (v->dia >= v->sys - 15)
        v->dia = v->sys - 15;
    v->glucose = clampd(walk(r, v->glucose, v->base_glucose, 0.1, 6), 45, 400);
    v->resp = clampd(walk(r, v->resp, v->base_resp, 0.3, 0.8), 6, 40);
    v->weight = clampd(v->weight + 0.02 * sim_rand_normal(r), 2, 250);
}

/* Appends one reading (with a leading comma unless first). */
static size_t put(char *buf, size_t size, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t size, size_t at, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (at >= size)
        return at;
    va_start(ap, fmt);
    n = vsnprintf(buf + at, size - at, fmt, ap);
    va_end(ap);
    return n < 0 ? at : at + (size_t)n;
}

/* The readings a device of type v->type sends. The range fault makes the
 * first reading implausible and the unit fault gives it an unknown unit,
 * whatever the device type. */
static size_t readings(struct vitals *v, struct sim_rand *r, unsigned *fault, char *b, size_t size)
{
    const char *t = v->type;
    int all = strcmp(t, "monitor") == 0, bad_range = !!(*fault & SIM_F_RANGE);
    int bad_unit = !!(*fault & SIM_F_UNIT);
    size_t at = 0;
    *fault &= ~(SIM_F_RANGE | SIM_F_UNIT);
#define SEP (at ? "," : "")
#define FIRST (at == 0)
    if (all || strcmp(t, "pulse_oximeter") == 0 || strcmp(t, "bp_monitor") == 0)
        at = put(b, size, at, "%s{\"type\":\"heart_rate\",\"value\":%.0f%s}", SEP,
                 FIRST && bad_range ? 400.0 : v->hr, FIRST && bad_unit ? ",\"unit\":\"Hz\"" : "");
    if (all || strcmp(t, "pulse_oximeter") == 0)
        at = put(b, size, at, "%s{\"type\":\"spo2\",\"value\":%.0f,\"unit\":\"%%\"}", SEP, v->spo2);
    if (all || strcmp(t, "bp_monitor") == 0)
        at = put(b, size, at, "%s{\"type\":\"blood_pressure\",\"systolic\":%.0f,\"diastolic\":%.0f}",
                 SEP, v->sys, v->dia);
    if (all)
        at = put(b, size, at, "%s{\"type\":\"resp_rate\",\"value\":%.0f}", SEP, v->resp);
    if (all || strcmp(t, "thermometer") == 0) {
        if (FIRST && (bad_range || bad_unit))
            at = put(b, size, at, "%s{\"type\":\"body_temp\",\"value\":%.1f,\"unit\":\"%s\"}",
                     SEP, bad_range ? 60.0 : v->temp + 273.15, bad_range ? "Cel" : "K");
        else if (sim_rand_uniform(r) < 0.3)
            at = put(b, size, at, "%s{\"type\":\"body_temp\",\"value\":%.1f,\"unit\":\"[degF]\"}",
                     SEP, v->temp * 9 / 5 + 32);
        else
            at = put(b, size, at, "%s{\"type\":\"body_temp\",\"value\":%.1f,\"unit\":\"Cel\"}", SEP,
                     v->temp);
    }
    if (all || strcmp(t, "glucometer") == 0) {
        if (FIRST && (bad_range || bad_unit))
            at = put(b, size, at, "%s{\"type\":\"glucose\",\"value\":%.0f,\"unit\":\"%s\"}", SEP,
                     bad_range ? 5000.0 : v->glucose, bad_range ? "mg/dL" : "mg");
        else if (sim_rand_uniform(r) < 0.3)
            at = put(b, size, at, "%s{\"type\":\"glucose\",\"value\":%.1f,\"unit\":\"mmol/L\"}", SEP,
                     v->glucose / 18.016);
        else
            at = put(b, size, at, "%s{\"type\":\"glucose\",\"value\":%.0f,\"unit\":\"mg/dL\"}", SEP,
                     v->glucose);
    }
    if (all || strcmp(t, "scale") == 0) {
        if (FIRST && (bad_range || bad_unit))
            at = put(b, size, at, "%s{\"type\":\"body_weight\",\"value\":%.1f,\"unit\":\"%s\"}",
                     SEP, bad_range ? 900.0 : v->weight / 6.35, bad_range ? "kg" : "stone");
        else if (sim_rand_uniform(r) < 0.3)
            at = put(b, size, at, "%s{\"type\":\"body_weight\",\"value\":%.1f,\"unit\":\"[lb_av]\"}",
                     SEP, v->weight * 2.20462);
        else
            at = put(b, size, at, "%s{\"type\":\"body_weight\",\"value\":%.1f,\"unit\":\"kg\"}",
                     SEP, v->weight);
    }
#undef FIRST
#undef SEP
    return at;
}

static char *gen_device(struct sim_engine *e, struct sim_source *s, uint64_t seq, char msg_id[72],
                        size_t *len, unsigned *fault)
{
    struct vitals *v = s->model;
    struct sim_rand *r = sim_engine_rand(e);
    char ts[EG_TIME_STRLEN], body[2048], *out;
    int64_t now = eg_now_ms();
    size_t n;

    if (*fault & SIM_F_CONFLICT) {
        if (s->last_ok_seq == 0)
            *fault &= ~SIM_F_CONFLICT; /* nothing stored yet to conflict with */
        else
            seq = s->last_ok_seq; /* a stored seq, a new reading: other bytes */
    }
    vitals_step(v, r, now);
    eg_time_format((*fault & SIM_F_SKEW) ? now + 600000 : now - 200, ts);
    *fault &= ~SIM_F_SKEW;
    n = readings(v, r, fault, body, sizeof body);
    if (!(out = malloc(n + 128)))
        return NULL;
    *len = (size_t)snprintf(out, n + 128, "{\"seq\":%llu,\"ts\":\"%s\",\"readings\":[%s]}",
                            (unsigned long long)seq, ts, body);
    snprintf(msg_id, 72, "%llu", (unsigned long long)seq);
    return out;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ehrgate-sim devices [options]\n"
            "Runs simulated medical devices (SPEC §4) that publish telemetry over MQTT v5 QoS 1,\n"
            "keep every message in a persisted buffer until its receipt arrives and resend it\n"
            "unchanged after a timeout or reconnect.\n\n"
            "  --count N           devices (default 10)\n"
            "  --first K           number of the first device (default 1): ids {prefix}{K:05}...\n"
            "  --id-prefix P       device id prefix (default D)\n"
            "  --rate R            messages per second per device (default 1)\n"
            "  --per-conn N        devices sharing one MQTT connection (default 100, max %d)\n"
            "  --buffer N          unreceipted messages kept per device (default 1000)\n"
            "  --receipt-timeout MS  first resend after this long without a receipt (default\n"
            "                      5000); each further one waits twice as long, up to 60 s\n"
            "  --window N          most messages per device waiting for a receipt (default 50)\n"
            "  --keys DIR          sign with DIR/{device}.key where it exists\n"
            "  --drain S           at the end, wait up to S s for outstanding receipts (default 15)\n"
            "  --max-payload N     the gateway's max_payload_bytes, for oversized (262144)\n"
            "  --summary FILE      write a JSON summary at the end\n"
            "  --cert-dir DIR      mqtts: each device connects alone with DIR/{device}.crt/.key\n"
            "                      (its own identity for the broker's ACL; with --cafile)\n"
            "%s\n%s",
            EG_MQTT_MAX_FILTERS, sim_faults_help, sim_common_help);
}

int sim_cmd_devices(int argc, char **argv)
{
    struct sim_opts o;
    struct sim_engine_cfg cfg;
    const char *id_prefix = "D", *keys = NULL, *faults = NULL;
    long count = 10, first = 1, per = 100, buffer = 1000, timeout = 5000, maxp = 262144, window = 50;
    double rate = 1, drain = 15;
    struct sim_source *src;
    struct vitals *models;
    struct sim_rand r;
    int code;

    sim_opts_init(&o);
    memset(&cfg, 0, sizeof cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int c = sim_arg(&o, argc, argv, &i, "devices", usage, NULL, &v, &code);
        if (c == SIM_ARG_EXIT)
            return code;
        if (c == SIM_ARG_WORD)
            return sim_arg_unknown("devices", a);
        if (c == SIM_ARG_DONE)
            continue;
        if ((strcmp(a, "--count") == 0 && sim_parse_int(a, v, 1, 1000000, &count) != 0) ||
            (strcmp(a, "--first") == 0 && sim_parse_int(a, v, 1, 99999, &first) != 0) ||
            (strcmp(a, "--per-conn") == 0 &&
             sim_parse_int(a, v, 1, EG_MQTT_MAX_FILTERS, &per) != 0) ||
            (strcmp(a, "--buffer") == 0 && sim_parse_int(a, v, 1, 1000000, &buffer) != 0) ||
            (strcmp(a, "--receipt-timeout") == 0 &&
             sim_parse_int(a, v, 50, 3600000, &timeout) != 0) ||
            (strcmp(a, "--max-payload") == 0 && sim_parse_int(a, v, 256, 1L << 30, &maxp) != 0) ||
            (strcmp(a, "--window") == 0 && sim_parse_int(a, v, 1, 100000, &window) != 0) ||
            (strcmp(a, "--rate") == 0 && sim_parse_double(a, v, 0.001, 10000, &rate) != 0) ||
            (strcmp(a, "--drain") == 0 && sim_parse_double(a, v, 0, 86400, &drain) != 0))
            return 2;
        if (strcmp(a, "--id-prefix") == 0)
            id_prefix = v;
        else if (strcmp(a, "--keys") == 0)
            keys = v;
        else if (strcmp(a, "--fault") == 0)
            faults = v;
        else if (strcmp(a, "--summary") == 0)
            cfg.summary = v;
        else if (strcmp(a, "--cert-dir") == 0)
            cfg.cert_dir = v;
        else if (strcmp(a, "--count") && strcmp(a, "--first") && strcmp(a, "--per-conn") &&
                 strcmp(a, "--buffer") && strcmp(a, "--receipt-timeout") &&
                 strcmp(a, "--max-payload") && strcmp(a, "--rate") && strcmp(a, "--drain") &&
                 strcmp(a, "--cert-dir") && strcmp(a, "--window")) {
            return sim_arg_unknown("devices", a);
        }
    }
    if (first + count - 1 > 99999) {
        fprintf(stderr, "ehrgate-sim devices: --first + --count must stay within 99999\n");
        return 2;
    }
    if (sim_faults_parse(faults, &cfg.faults, cfg.fault_p) != 0)
        return 2;
    if ((cfg.faults & SIM_F_BADSIG) && !keys) {
        fprintf(stderr, "ehrgate-sim devices: --fault badsig needs --keys (unsigned messages "
                        "have no signature to break)\n");
        return 2;
    }
    src = calloc((size_t)count, sizeof *src);
    models = calloc((size_t)count, sizeof *models);
    if (!src || !models) {
        free(src);
        free(models);
        fprintf(stderr, "ehrgate-sim devices: out of memory\n");
        return 2;
    }
    sim_rand_seed(&r, o.seed ^ 0x5eed);
    code = 0;
    for (long i = 0; i < count && code == 0; i++) {
        struct sim_source *s = &src[i];
        uint64_t idx = (uint64_t)(first + i);
        s->index = idx;
        sim_device_id(s->id, id_prefix, idx);
        snprintf(s->topic, sizeof s->topic, "%s/device/%s/telemetry", o.prefix, s->id);
        snprintf(s->receipts, sizeof s->receipts, "%s/device/%s/receipts", o.prefix, s->id);
        vitals_init(&models[i], &r, sim_device_type(idx));
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
        cfg.kind = "devices";
        cfg.per_conn = cfg.cert_dir ? 1 : (int)per; /* a certificate is one identity */
        cfg.buffer = (int)buffer;
        cfg.receipt_timeout_ms = (int)timeout;
        cfg.window = (int)window;
        cfg.rate = rate;
        cfg.drain_s = drain;
        cfg.max_payload = maxp;
        sim_signals();
        code = sim_engine_run(&cfg, src, (size_t)count, gen_device);
    }
    for (long i = 0; i < count; i++)
        eg_key_free(src[i].key);
    free(src);
    free(models);
    return code;
}

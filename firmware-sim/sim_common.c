/*
 * sim_common.c — options, MQTT links, signing and progress output shared by
 * the ehrgate-sim subcommands (see sim.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eg_codec.h"
#include "eg_json.h"
#include "eg_log.h"
#include "eg_time.h"
#include "sim.h"

volatile sig_atomic_t sim_stop;

static void on_signal(int sig)
{
    (void)sig;
    sim_stop = 1;
}

void sim_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

const char sim_common_help[] =
    "common options:\n"
    "  --broker URL        mqtt://host:port or mqtts://host:port (default mqtt://127.0.0.1:1883)\n"
    "  --cafile F --cert F --keyfile F   TLS files for mqtts://\n"
    "  --topic-prefix P    topic prefix (default ehr)\n"
    "  --gateway NAME      the gateway's name (default gw1)\n"
    "  --state DIR         persisted state (default ./sim-state)\n"
    "  --duration S        stop after S seconds (default: run until Ctrl-C)\n"
    "  --seed N            random seed (default: from the clock)\n"
    "  --quiet | --verbose less or more output on stderr\n";

void sim_opts_init(struct sim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->broker = "mqtt://127.0.0.1:1883";
    o->prefix = "ehr";
    o->gateway = "gw1";
    o->state_dir = "sim-state";
    o->seed = (uint64_t)eg_now_ms() ^ ((uint64_t)getpid() << 32);
}

int sim_parse_double(const char *opt, const char *v, double min, double max, double *out)
{
    char *end;
    double d;
    errno = 0;
    d = strtod(v, &end);
    if (end == v || *end || errno || !(d >= min && d <= max)) {
        fprintf(stderr, "ehrgate-sim: %s \"%s\": a number from %g to %g\n", opt, v, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

int sim_parse_int(const char *opt, const char *v, long min, long max, long *out)
{
    char *end;
    long n;
    errno = 0;
    n = strtol(v, &end, 10);
    if (end == v || *end || errno || n < min || n > max) {
        fprintf(stderr, "ehrgate-sim: %s \"%s\": an integer from %ld to %ld\n", opt, v, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

int sim_common_opt(struct sim_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    const char **slot = NULL;
    if (strcmp(a, "--quiet") == 0) {
        o->quiet = 1;
        return 1;
    }
    if (strcmp(a, "--verbose") == 0) {
        o->verbose = 1;
        return 1;
    }
    if (strcmp(a, "--broker") == 0)
        slot = &o->broker;
    else if (strcmp(a, "--cafile") == 0)
        slot = &o->cafile;
    else if (strcmp(a, "--cert") == 0)
        slot = &o->cert;
    else if (strcmp(a, "--keyfile") == 0)
        slot = &o->keyfile;
    else if (strcmp(a, "--topic-prefix") == 0)
        slot = &o->prefix;
    else if (strcmp(a, "--gateway") == 0)
        slot = &o->gateway;
    else if (strcmp(a, "--state") == 0)
        slot = &o->state_dir;
    else if (strcmp(a, "--duration") != 0 && strcmp(a, "--seed") != 0)
        return 0;
    if (!v) {
        fprintf(stderr, "ehrgate-sim: %s needs a value\n", a);
        return -1;
    }
    (*i)++;
    if (slot) {
        *slot = v;
        return 1;
    }
    if (strcmp(a, "--duration") == 0)
        return sim_parse_double(a, v, 0, 1e9, &o->duration_s) == 0 ? 1 : -1;
    {
        long n;
        if (sim_parse_int(a, v, 0, 0x7fffffffL, &n) != 0)
            return -1;
        o->seed = (uint64_t)n;
    }
    return 1;
}

int sim_arg(struct sim_opts *o, int argc, char **argv, int *i, const char *cmd,
            void (*usage)(FILE *), const char *const *flags, const char **v, int *code)
{
    const char *a = argv[*i];
    int c = sim_common_opt(o, argc, argv, i);
    *v = NULL;
    if (c < 0) {
        *code = 2;
        return SIM_ARG_EXIT;
    }
    if (c > 0)
        return SIM_ARG_DONE;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        usage(stdout);
        *code = 0;
        return SIM_ARG_EXIT;
    }
    if (a[0] != '-')
        return SIM_ARG_WORD;
    for (int k = 0; flags && flags[k]; k++)
        if (strcmp(a, flags[k]) == 0)
            return SIM_ARG_WORD;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ehrgate-sim %s: unknown option \"%s\" (or it needs a value)\n", cmd, a);
        *code = 2;
        return SIM_ARG_EXIT;
    }
    *v = argv[++*i];
    return SIM_ARG_VALUE;
}

int sim_arg_unknown(const char *cmd, const char *a)
{
    fprintf(stderr, "ehrgate-sim %s: unknown option \"%s\"\n", cmd, a);
    return 2;
}

/* ---- links --------------------------------------------------------------- */

int sim_link_open(struct sim_link *l, const struct sim_opts *o, const char *client_id,
                  char (*filters)[EG_TOPIC_FILTER_MAX], int nfilters, struct eg_queue *q,
                  int64_t session_expiry_s)
{
    struct eg_mqtt_opts *mo = NULL;
    struct eg_error e = {0};
    memset(l, 0, sizeof *l);
    if (nfilters > EG_MQTT_MAX_FILTERS || !(mo = calloc(1, sizeof *mo)) ||
        !(mo->client_id = strdup(client_id))) {
        free(mo);
        return -1;
    }
    if ((o->cert && !(l->cert = strdup(o->cert))) ||
        (o->keyfile && !(l->keyfile = strdup(o->keyfile)))) {
        free((char *)mo->client_id);
        free(mo);
        free(l->cert);
        l->cert = NULL;
        return -1;
    }
    mo->uri = o->broker;
    mo->cafile = o->cafile;
    mo->cert = l->cert;
    mo->keyfile = l->keyfile;
    mo->session_expiry_s = session_expiry_s;
    for (int i = 0; i < nfilters; i++)
        memcpy(mo->filters[i], filters[i], EG_TOPIC_FILTER_MAX);
    mo->nfilters = nfilters;
    l->mo = mo;
    l->q = q;
    if (eg_mqtt_new(mo, q, &l->m, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-sim: %s: %s\n", o->broker, e.detail);
        sim_link_close(l);
        return -1;
    }
    return 0;
}

int sim_link_bounce(struct sim_link *l)
{
    struct eg_error e = {0};
    /* a fresh client: Paho does not reliably connect again a client it
     * disconnected, and destroying a connected one leaks its buffers */
    eg_mqtt_disconnect(l->m, 0); /* in-flight messages are abandoned, as on a radio loss */
    eg_mqtt_free(l->m);
    l->m = NULL;
    l->gen = 0;
    if (eg_mqtt_new(l->mo, l->q, &l->m, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-sim: %s\n", e.detail);
        return -1;
    }
    return 0;
}

void sim_link_tick(struct sim_link *l)
{
    if (l->m)
        eg_mqtt_tick(l->m);
}

int sim_link_ready(struct sim_link *l) { return l->m && eg_mqtt_ready(l->m); }

static void ignore_outcome(void *ctx, int outcome)
{
    (void)ctx;
    (void)outcome; /* a PUBACK is not acceptance: only a receipt or reply is */
}

int sim_publish(struct sim_link *l, const char *topic, const void *payload, size_t len,
                const char *sig, const char *resp_topic, const uint8_t *corr, size_t corr_len)
{
    char *props = NULL;
    int rc;
    if (!sim_link_ready(l))
        return -1;
    if (sig || resp_topic || corr) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return -1;
        if (sig) {
            cJSON *user = cJSON_AddArrayToObject(o, "user"), *pair = cJSON_CreateArray();
            if (!user || !pair) {
                cJSON_Delete(pair);
                cJSON_Delete(o);
                return -1;
            }
            cJSON_AddItemToArray(pair, cJSON_CreateString("sig"));
            cJSON_AddItemToArray(pair, cJSON_CreateString(sig));
            cJSON_AddItemToArray(user, pair);
        }
        if (resp_topic)
            cJSON_AddStringToObject(o, "resp", resp_topic);
        if (corr && corr_len && corr_len <= 128) {
            char hex[257];
            eg_hex_encode(corr, corr_len, hex);
            cJSON_AddStringToObject(o, "corr", hex);
        }
        props = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!props)
            return -1;
    }
    rc = eg_mqtt_publish(l->m, topic, payload, len, 1, 0, props, ignore_outcome, NULL);
    free(props);
    return rc;
}

void sim_link_close(struct sim_link *l)
{
    if (l->m) {
        eg_mqtt_disconnect(l->m, 1000);
        eg_mqtt_free(l->m);
        l->m = NULL;
    }
    if (l->mo) {
        free((char *)l->mo->client_id);
        free(l->mo);
        l->mo = NULL;
    }
    free(l->cert);
    free(l->keyfile);
    l->cert = l->keyfile = NULL;
}

/* ---- keys ------------------------------------------------------------------ */

int sim_sign(const struct eg_key *k, struct eg_rng *rng, const char *topic, const void *payload,
             size_t len, char *sig, size_t size)
{
    return eg_key_sign_topic(k, rng, topic, payload, len, sig, size) == EG_OK ? 0 : -1;
}

int sim_key_load(const char *path, struct eg_key **out)
{
    struct stat sb;
    struct eg_error e = {0};
    *out = NULL;
    if (stat(path, &sb) != 0)
        return 0;
    if (eg_key_load_private(path, out, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-sim: %s: %s\n", path, e.detail);
        return -1;
    }
    return 1;
}

/* ---- fleet naming ------------------------------------------------------------ */

const char *sim_device_type(uint64_t i)
{
    static const char *const types[] = {"monitor",    "pulse_oximeter", "bp_monitor",
                                        "thermometer", "glucometer",    "scale"};
    return types[(i - 1) % 6];
}

void sim_device_id(char out[65], const char *prefix, uint64_t i)
{
    snprintf(out, 65, "%.40s%05llu", prefix, (unsigned long long)i);
}

void sim_patient_id(char out[65], const char *prefix, uint64_t i)
{
    snprintf(out, 65, "%.40s%05llu", prefix, (unsigned long long)i);
}

uint64_t sim_patient_of(uint64_t device, uint64_t npatients)
{
    return npatients ? (device - 1) % npatients + 1 : device;
}

void sim_mrn(char out[96], const char *hospital, uint64_t patient)
{
    snprintf(out, 96, "MRN-%.64s-%llu", hospital, (unsigned long long)patient);
}

/* ---- progress ------------------------------------------------------------------ */

void sim_progress(int final, const char *fmt, ...)
{
    static int64_t last;
    static int tty = -1;
    char line[512];
    va_list ap;
    int64_t now = eg_mono_ms();
    if (tty < 0)
        tty = isatty(STDERR_FILENO);
    if (!final && !tty && now - last < 5000)
        return;
    if (!final && tty && now - last < 250)
        return;
    last = now;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (tty)
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* ---- requests and replies ---------------------------------------------------- */

void sim_reply_topic(char *out, size_t size, const char *family_replies, struct sim_rand *r)
{
    snprintf(out, size, "%s/sim-%ld-%08llx", family_replies, (long)getpid(),
             (unsigned long long)(sim_rand_u64(r) & 0xffffffffULL));
}

int sim_link_wait(struct sim_link *l, int timeout_ms)
{
    int64_t until = eg_mono_ms() + timeout_ms;
    while (!sim_link_ready(l) && eg_mono_ms() < until && !sim_stop) {
        sim_link_tick(l);
        usleep(20000);
    }
    return sim_link_ready(l) ? 0 : -1;
}

int sim_request(struct sim_link *l, struct eg_queue *q, const char *topic, const void *payload,
                size_t len, const char *sig, const char *reply_topic, struct sim_rand *r,
                int timeout_ms, struct cJSON **reply)
{
    uint8_t corr[16];
    int64_t until = eg_mono_ms() + timeout_ms;
    *reply = NULL;
    for (size_t i = 0; i < sizeof corr; i++)
        corr[i] = (uint8_t)sim_rand_u64(r);
    if (sim_publish(l, topic, payload, len, sig, reply_topic, corr, sizeof corr) != 0)
        return -1;
    while (eg_mono_ms() < until && !sim_stop) {
        size_t n;
        struct eg_msg *list = eg_queue_pop_many(q, 64, 100, &n);
        for (struct eg_msg *m = list; m && !*reply; m = m->next) {
            struct eg_error e;
            cJSON *j = NULL;
            if (m->corr_len == sizeof corr && memcmp(m->corr, corr, sizeof corr) == 0 &&
                egjson_parse(m->payload, m->len, &j, &e) == EG_OK)
                *reply = j;
        }
        eg_msg_free_list(list);
        if (*reply)
            return 0;
        sim_link_tick(l);
    }
    return -1;
}

uint64_t sim_next_nonce(const char *dir, const char *signer)
{
    char path[1024], safe[128];
    unsigned long long last = 0;
    uint64_t now = (uint64_t)eg_now_ms(), next;
    FILE *f;
    size_t k = 0;
    for (const char *p = signer; *p && k + 1 < sizeof safe; p++)
        safe[k++] = (*p == '/' || *p == ':') ? '_' : *p;
    safe[k] = 0;
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/nonce-%s", dir, safe);
    if ((f = fopen(path, "r"))) {
        if (fscanf(f, "%llu", &last) != 1)
            last = 0;
        fclose(f);
    }
    next = now > last ? now : last + 1;
    if ((f = fopen(path, "w"))) {
        fprintf(f, "%llu\n", (unsigned long long)next);
        fclose(f);
    }
    return next;
}

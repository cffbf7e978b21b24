/*
 * sim.h — ehrgate-sim: simulated device firmware, hospital systems, patient
 * apps, an operator and the authority's feed subscriber (issue 6).
 *
 * Every subcommand is an MQTT v5 client of the broker, exactly like the
 * real parties: it knows topics and payloads (SPEC §3-§11), nothing of the
 * gateway's internals. The MQTT link is the gateway's own eg_mqtt (Clean
 * Start 0 with a session expiry, reconnect with exponential backoff and
 * jitter, resubscribe); incoming messages land in an eg_queue that the
 * subcommand's single thread drains.
 */
#ifndef SIM_H
#define SIM_H

#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "eg_crypto.h"
#include "eg_key.h"
#include "eg_mqtt.h"
#include "eg_queue.h"
#include "eg_topics.h"
#include "sim_rand.h"

struct sim_opts {
    const char *broker;
    const char *prefix;     /* topic prefix, default "ehr" */
    const char *gateway;    /* gateway name, default "gw1" */
    const char *cafile, *cert, *keyfile;
    const char *state_dir;  /* persisted state, default ./sim-state */
    double duration_s;      /* 0: until Ctrl-C */
    uint64_t seed;
    int quiet, verbose;
};

extern volatile sig_atomic_t sim_stop;

/* SIGINT/SIGTERM set sim_stop. */
void sim_signals(void);

/* Defaults for o. */
void sim_opts_init(struct sim_opts *o);
/* Consumes argv[*i] (and its value) if it is a common option: returns 1;
 * 0 if it is not one; -1 (message printed) on a bad value. */
int sim_common_opt(struct sim_opts *o, int argc, char **argv, int *i);
/* The shared head of every subcommand's option loop, for argv[*i]:
 * SIM_ARG_DONE: a common option, handled; SIM_ARG_VALUE: an option with
 * its value in *v (*i advanced past it) for the caller; SIM_ARG_WORD: a
 * word without a leading '-' (an action), or one of flags (NULL-terminated
 * list of options that take no value); SIM_ARG_EXIT: stop with *code (0
 * after --help printed usage, 2 after an error message). */
enum { SIM_ARG_DONE, SIM_ARG_VALUE, SIM_ARG_WORD, SIM_ARG_EXIT };
int sim_arg(struct sim_opts *o, int argc, char **argv, int *i, const char *cmd,
            void (*usage)(FILE *), const char *const *flags, const char **v, int *code);
/* "unknown option": message, returns 2. */
int sim_arg_unknown(const char *cmd, const char *a);

/* The common options' help text. */
extern const char sim_common_help[];

/* Parses a positive number; -1 (message printed naming opt) if malformed. */
int sim_parse_double(const char *opt, const char *v, double min, double max, double *out);
int sim_parse_int(const char *opt, const char *v, long min, long max, long *out);

/* One MQTT connection. */
struct sim_link {
    struct eg_mqtt *m;
    struct eg_mqtt_opts *mo; /* kept to make the link again */
    char *cert, *keyfile;    /* owned copies of the client certificate paths */
    struct eg_queue *q;
    uint64_t gen; /* generation last seen by the owner */
};

/* Connects client_id with the given subscriptions; messages go to q. The
 * connection is made by sim_link_tick(). */
int sim_link_open(struct sim_link *l, const struct sim_opts *o, const char *client_id,
                  char (*filters)[EG_TOPIC_FILTER_MAX], int nfilters, struct eg_queue *q,
                  int64_t session_expiry_s);
void sim_link_tick(struct sim_link *l);
int sim_link_ready(struct sim_link *l);
/* QoS 1 publish with optional sig user property, Response Topic and
 * Correlation Data. 0 queued, -1 not (not connected). */
int sim_publish(struct sim_link *l, const char *topic, const void *payload, size_t len,
                const char *sig, const char *resp_topic, const uint8_t *corr, size_t corr_len);
void sim_link_close(struct sim_link *l);
/* Drops the connection (like a radio that goes away mid-stream) and starts
 * over with a fresh client; the next sim_link_tick() reconnects. */
int sim_link_bounce(struct sim_link *l);

/* A private replies topic below family_replies for this process. */
void sim_reply_topic(char *out, size_t size, const char *family_replies, struct sim_rand *r);

struct cJSON;
/* Publishes a request (signed when sig) naming reply_topic as Response
 * Topic with fresh Correlation Data, then waits up to timeout_ms for the
 * reply carrying it (other messages in q are dropped). 0 with *reply (the
 * caller deletes), -1 on timeout or when not connected. */
int sim_request(struct sim_link *l, struct eg_queue *q, const char *topic, const void *payload,
                size_t len, const char *sig, const char *reply_topic, struct sim_rand *r,
                int timeout_ms, struct cJSON **reply);

/* Waits up to timeout_ms (ticking l) until l is connected and subscribed. */
int sim_link_wait(struct sim_link *l, int timeout_ms);

/* A nonce above every one this process family used for signer, persisted
 * in dir/nonce-{signer}: max(now in ms, last + 1). */
uint64_t sim_next_nonce(const char *dir, const char *signer);

/* The SPEC §3 signature of payload on topic. 0 or -1. */
int sim_sign(const struct eg_key *k, struct eg_rng *rng, const char *topic, const void *payload,
             size_t len, char *sig, size_t size);

/* Loads PREFIX.key if it exists: 1 loaded, 0 no such file, -1 unusable. */
int sim_key_load(const char *path, struct eg_key **out);

/* A status line: rewritten in place on a terminal, one line every 5 s
 * otherwise. final prints it once more with a newline. */
void sim_progress(int final, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Device ids, types and patients of a fleet, shared by `devices` and
 * `register` so both agree: device i (from 1) is {prefix}{i:05}, of type
 * sim_device_type(i), bound to patient sim_patient_of(i, npatients). */
const char *sim_device_type(uint64_t i);
void sim_device_id(char out[65], const char *prefix, uint64_t i);
void sim_patient_id(char out[65], const char *prefix, uint64_t i);
uint64_t sim_patient_of(uint64_t device, uint64_t npatients);
/* A patient's identifier (MRN) at a hospital: "MRN-{hospital}-{i}". */
void sim_mrn(char out[96], const char *hospital, uint64_t patient);

/* Subcommands. */
int sim_cmd_devices(int argc, char **argv);
int sim_cmd_hospitals(int argc, char **argv);
int sim_cmd_patient(int argc, char **argv);
int sim_cmd_register(int argc, char **argv);
int sim_cmd_authority(int argc, char **argv);

#endif

/*
 * sim_engine.h — store-and-forward like firmware, for simulated devices and
 * hospitals (issue 6 §2).
 *
 * Each source (a device or a hospital) numbers its messages (seq, kept in
 * a SQLite file under --state so it survives restarts), writes every new
 * message to its persisted buffer before sending it, and keeps it until a
 * receipt for it arrives (matched by payload_sha256, or by msg_id). It
 * resends unreceipted messages unchanged after --receipt-timeout and after
 * every reconnect. The buffer is bounded: when full, the oldest message is
 * dropped and counted. Sources share a few MQTT connections (--per-conn),
 * each subscribed to its sources' receipts topics.
 */
#ifndef SIM_ENGINE_H
#define SIM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"
#include "sim_rand.h"

/* Fault modes (issue 6 §3), chosen per message with probability fault_p. */
enum {
    SIM_F_MALFORMED = 1 << 0,  /* truncated JSON: parse */
    SIM_F_RANGE = 1 << 1,      /* an implausible value: range */
    SIM_F_UNIT = 1 << 2,       /* an unknown unit: unit */
    SIM_F_DUPLICATE = 1 << 3,  /* sent twice at once: duplicate */
    SIM_F_CONFLICT = 1 << 4,   /* an earlier seq again with other bytes: conflict */
    SIM_F_BADSIG = 1 << 5,     /* a corrupted signature: signature */
    SIM_F_OVERSIZED = 1 << 6,  /* above max_payload_bytes: too_large */
    SIM_F_DISCONNECT = 1 << 7, /* the connection dropped right after sending */
    SIM_F_SKEW = 1 << 8,       /* the clock 10 min ahead: range */
};
/* Parses "malformed,range:0.05,..." into a mask and per-fault
 * probabilities (default 0.01); -1 with a message on error. */
int sim_faults_parse(const char *spec, unsigned *mask, double p[16]);
extern const char sim_faults_help[];

struct sim_pend {
    char msg_id[72];
    uint8_t sha[32];
    char *payload;
    size_t len;
    char *sig;
    int64_t created_ms, sent_ms;
    int64_t next_ms;  /* when it may be sent (again): 0 = now */
    int attempts;
    unsigned fault;   /* send-time faults of this message (duplicate, disconnect) */
};

struct sim_source {
    char id[65];
    char topic[192], receipts[192];
    uint64_t index;    /* 1-based number in the fleet */
    uint64_t next_seq; /* persisted */
    struct sim_pend *pend;
    int npend, cap;
    int link;
    int64_t next_due;
    uint64_t last_ok_seq;  /* the last seq a receipt settled as accepted (conflict probes) */
    struct eg_key *key; /* signs its messages, or NULL */
    void *model;        /* the generator's per-source state */
};

struct sim_engine;

/* Makes the next message of s with sequence number seq: a malloc'ed payload
 * (*len set) and its msg_id. fault: the faults drawn for this message
 * (the generator applies the content faults it understands and clears
 * them). NULL: nothing to send now. */
typedef char *(*sim_gen_fn)(struct sim_engine *e, struct sim_source *s, uint64_t seq,
                            char msg_id[72], size_t *len, unsigned *fault);

struct sim_engine_cfg {
    const struct sim_opts *o;
    const char *kind;   /* "devices" or "hospitals": client ids, state file, output */
    int per_conn;       /* sources per MQTT connection */
    int buffer;         /* unreceipted messages kept per source */
    int receipt_timeout_ms; /* first resend; then doubling up to 60 s per message */
    int window;             /* most messages in flight per source */
    double rate;        /* messages per second per source */
    double drain_s;     /* at the end: wait this long for outstanding receipts */
    unsigned faults;
    double fault_p[16];
    int64_t max_payload; /* for SIM_F_OVERSIZED */
    const char *summary; /* write a JSON summary here at the end, or NULL */
    const char *cert_dir; /* per-source client certificates DIR/{id}.crt/.key (one
                           * connection per source), or NULL */
};

/* accepted/rejected: messages settled by their receipt (a `duplicate`
 * receipt settles as accepted: stored earlier); duplicate and rejected_by
 * count every receipt with that status or code; unmatched: receipts for
 * nothing waiting (a resend's second receipt, a fault probe). */
struct sim_stats {
    uint64_t generated, sent, resent, accepted, duplicate, rejected, dropped, unmatched;
    uint64_t rejected_by[32]; /* by error code index (sim_code_index) */
    uint64_t reconnects, hl7_aa, hl7_ae, hl7_ar;
};

struct sim_rand *sim_engine_rand(struct sim_engine *e);
const struct sim_engine_cfg *sim_engine_cfg(struct sim_engine *e);
struct eg_rng *sim_engine_rng(struct sim_engine *e);

/* Runs sources until --duration or Ctrl-C, then drains. Returns the exit
 * code: 0, 1 if messages were still unreceipted after the drain, 2 on a
 * setup error. */
int sim_engine_run(const struct sim_engine_cfg *cfg, struct sim_source *src, size_t n,
                   sim_gen_fn gen);

#endif

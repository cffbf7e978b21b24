/*
 * eg_ingest_int.h — what the pipeline's per-message modules share inside one
 * transaction: eg_ingest.c (telemetry, hospital records, receipts),
 * eg_feed.c (consent decisions, feeds, access entries) and eg_requests.c
 * (consent directives, patient, admin and feed requests). Not an API: the
 * rest of the gateway uses eg_ingest.h.
 */
#ifndef EG_INGEST_INT_H
#define EG_INGEST_INT_H

#include <stddef.h>
#include <stdint.h>

#include "eg_admin.h"
#include "eg_consent.h"
#include "eg_entries.h"
#include "eg_ingest.h"
#include "eg_registry.h"

struct key_slot {
    char id[EG_ID_MAX];
    char pem[EG_PUBKEY_PEM_MAX];
    struct eg_key *key;
};

struct group {
    char *topic;
    cJSON *receipts;
};

/* One observation forwarded in the open transaction (for its access entry). */
struct fwd {
    char patient[EG_ID_MAX];
    int grantee;
    uint64_t seq;
};

/* A token bucket of one source (rate limits). */
struct bucket {
    char key[80]; /* "d:D1" / "h:H1"; "" = free */
    double tokens;
    int64_t last_ms;
};
#define EG_BUCKETS 16384
#define EG_TAKEN_MAX 65536

struct eg_ingest {
    struct eg_store *st;
    struct eg_vault *v;
    const struct eg_config *cfg;
    struct eg_chain *chain;
    uint64_t next_seq, committed_seq;
    struct group *groups;
    int ngroups, max_groups, last_group;
    struct key_slot *keys;
    struct eg_ingest_stats stats, committed_stats;
    /* consent and feeds */
    struct eg_grantee grantees[EG_GRANTEES_MAX];
    int ngrantees;
    uint64_t feed_next[EG_GRANTEES_MAX], feed_committed[EG_GRANTEES_MAX];
    struct fwd *fwds;
    size_t nfwd, capfwd;
    struct eg_admin_keys *admin;
    struct bucket *buckets; /* EG_BUCKETS, open addressing */
    struct bucket *taken[EG_TAKEN_MAX]; /* tokens taken in the open transaction */
    size_t ntaken;
    int erased_in_tx;    /* an erasure in the open transaction */
    int want_checkpoint; /* an erasure committed: checkpoint the WAL (retried while busy) */
};

/* The state a SAVEPOINT rolls back, so memory follows the database. */
struct ig_mark {
    struct eg_ingest_stats stats;
    uint64_t next_seq;
    size_t nfwd;
    uint64_t feed_next[EG_GRANTEES_MAX];
};
void ig_mark(const struct eg_ingest *ig, struct ig_mark *mk);
/* After ROLLBACK TO the savepoint taken with mk: forgets what followed. */
eg_err ig_undo(struct eg_ingest *ig, const struct ig_mark *mk);

/* Appends an entry at the next seq and adds it to the open block; *seq and
 * leaf receive it; with bytes non-NULL, the entry bytes are handed over. */
eg_err ig_append(struct eg_ingest *ig, const struct eg_entry_in *in, uint64_t *seq,
                 uint8_t leaf[32], char **bytes, size_t *len);

int ig_is_storage_error(eg_err rc);

/* eg_feed.c */
/* About how many bytes entry bytes take as a JSON string in a reply. */
size_t ig_json_cost(const char *bytes, size_t len);
/* Decides, for each configured grantee, whether observation entry seq may
 * go to it (SPEC §8, inside the transaction) and queues the feed message
 * with the next feed_seq. */
eg_err eg_feed_decide(struct eg_ingest *ig, uint64_t seq, const struct eg_entry_in *in,
                      const char *bytes, size_t len);
/* Appends one `access` entry per (patient, grantee) forwarded to in this
 * transaction. Called once, before COMMIT. */
eg_err eg_feed_access_entries(struct eg_ingest *ig);
/* Loads each grantee's next feed_seq. */
eg_err eg_feed_load(struct eg_ingest *ig);
/* {p}/feed/{grantee}/request: "since". */
eg_err eg_feed_request(struct eg_ingest *ig, const struct eg_msg *m, const char *grantee);

/* eg_requests.c */
/* 1 if patient was erased, 0 if not, -1 on a storage error. */
int eg_patient_erased(struct eg_store *st, const char *patient);
eg_err eg_req_consent(struct eg_ingest *ig, const struct eg_msg *m, const char *patient);
eg_err eg_req_patient(struct eg_ingest *ig, const struct eg_msg *m, const char *patient);
eg_err eg_req_admin(struct eg_ingest *ig, const struct eg_msg *m);
/* Answers a signed request that fails every time `internal` and keeps it
 * in the quarantine (patient is "" for admin requests). */
eg_err eg_req_reject_internal(struct eg_ingest *ig, const struct eg_msg *m, const char *patient);

#endif

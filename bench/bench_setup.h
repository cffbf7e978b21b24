/*
 * bench_setup.h — the bench's parties in a gateway database (see
 * bench_setup.c).
 */
#ifndef BENCH_SETUP_H
#define BENCH_SETUP_H

#include <stdint.h>

#include "eg_crypto.h"
#include "eg_key.h"

struct bench_setup {
    const char *db, *key_path, *master_key;
    const char *grantee;
    uint64_t patients, devices, signed_devices, hospitals;
    struct eg_key *key; /* signs consents and signed telemetry; its public half is registered */
    struct eg_rng *rng;
};

/* Registers what is missing and grants consent; *next_seq: the next entry
 * seq. 0 or -1 (message printed). */
int bench_setup_db(const struct bench_setup *s, uint64_t *next_seq);

#endif

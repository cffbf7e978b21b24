/*
 * eg_gateway.h — wires the gateway together: store, keys, intake queue,
 * MQTT link, pipeline thread and outbox publisher.
 */
#ifndef EG_GATEWAY_H
#define EG_GATEWAY_H

#include <signal.h>

#include "eg_config.h"

/* Runs until *stop becomes non-zero (set from a signal handler), then shuts
 * down cleanly: stop taking messages, commit what was taken, publish the
 * `offline` status, drain the outbox, disconnect. Returns the process exit
 * code: 0 clean, 2 bad configuration or keys (message on stderr), 1 other
 * fatal errors. */
/* Runs until *stop; *reload (SIGHUP) re-reads db_max_bytes from
 * cfg->config_path. */
int eg_gateway_run(const struct eg_config *cfg, volatile sig_atomic_t *stop,
                   volatile sig_atomic_t *reload);

#endif

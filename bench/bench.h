/*
 * bench.h — shared parts of ehrgate-bench (issue 8): processes, MQTT links,
 * samples, /proc readings.
 *
 * The bench is a client of the broker like any device or auditor: it talks
 * to the gateway only over MQTT (the same eg_mqtt link over Paho that the
 * gateway and the simulator use) and sets up its database directly, before
 * the gateway starts, through the gateway's own registry and ingest code.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <sys/types.h>

#include "eg_mqtt.h"
#include "eg_queue.h"

/* ---- samples ------------------------------------------------------------- */
struct samples {
    double *v;
    size_t n, cap;
};
void samples_add(struct samples *s, double x);
/* p in 0..100 over the samples (sorted in place); 0 when there are none. */
double samples_pct(struct samples *s, double p);
void samples_free(struct samples *s);

/* ---- processes ----------------------------------------------------------- */
/* Starts argv[0] with stdout and stderr appended to log. -1 on failure. */
pid_t bench_spawn(char *const argv[], const char *log);
/* SIGTERM, waits up to timeout_ms, then SIGKILL. Returns the exit status
 * (WEXITSTATUS) or -1 when it had to be killed or died of a signal. */
int bench_stop(pid_t pid, int timeout_ms);
/* Waits for pid to exit; its exit status, or -1. */
int bench_wait(pid_t pid);
/* A free TCP port on 127.0.0.1, 0 on failure. */
int bench_free_port(void);
/* 1 when something accepts connections on 127.0.0.1:port. */
int bench_port_open(int port);
/* Set by the caller's SIGINT/SIGTERM handler: bench_wait() then stops the
 * child (SIGTERM) instead of waiting for it to finish. */
extern volatile sig_atomic_t *bench_stop_flag;

/* CPU seconds (user + system) of pid (0: this process) and its peak and
 * current resident set in KiB. Missing values are 0. */
struct proc_sample {
    double cpu_s;
    long hwm_kb, rss_kb;
};
void proc_read(pid_t pid, struct proc_sample *out);

double bench_now(void); /* monotonic seconds */

/* ---- MQTT ------------------------------------------------------------------ */
struct link {
    struct eg_mqtt *m;
    struct eg_queue *q;
};
/* Connects (waits up to 10 s for the connection and subscriptions). */
int link_open(struct link *l, const char *uri, const char *client_id, const char *const *filters,
              int nfilters);
void link_close(struct link *l);
/* QoS 1 publish; props as for eg_mqtt_publish. 0 queued, -1 not. */
int link_pub(struct link *l, const char *topic, const void *payload, size_t len,
             const char *props);

/* ---- text scanning (no JSON parse on the hot path) ----------------------- */
/* Finds key (e.g. "\"msg_id\":\"") in [p, end) and reads the unsigned
 * decimal right after it. Returns a pointer past the number, or NULL. */
const char *scan_u64(const char *p, const char *end, const char *key, uint64_t *out);

#endif

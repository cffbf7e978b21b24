/*
 * bench_util.c — see bench.h.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eg_time.h"

void samples_add(struct samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return; /* a lost sample, not a crash */
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double samples_pct(struct samples *s, double p)
{
    size_t i;
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return s->v[i < s->n ? i : s->n - 1];
}

void samples_free(struct samples *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

volatile sig_atomic_t *bench_stop_flag;

pid_t bench_spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setpgid(0, 0); /* a Ctrl-C on the bench is the bench's to handle */
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* and a bench that dies takes them along */
        execvp(argv[0], argv);
        _exit(127); /* the bench reports the exit status */
    }
    return pid;
}

int bench_wait(pid_t pid)
{
    int st;
    if (pid <= 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
        if (bench_stop_flag && *bench_stop_flag) {
            bench_stop(pid, 10000);
            return -1; /* interrupted: not a result */
        }
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bench_stop(pid_t pid, int timeout_ms)
{
    int st;
    double end = bench_now() + timeout_ms / 1000.0;
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    while (bench_now() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (r < 0 && errno != EINTR)
            return -1;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int bench_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int bench_port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

void proc_read(pid_t pid, struct proc_sample *out)
{
    char path[64], buf[4096];
    FILE *f;
    long tck = sysconf(_SC_CLK_TCK);
    memset(out, 0, sizeof *out);
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/stat");
    else
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if ((f = fopen(path, "r"))) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        char *p;
        buf[n] = 0;
        /* fields after the ")" that ends comm: state is field 3, utime 14, stime 15 */
        if ((p = strrchr(buf, ')'))) {
            unsigned long ut = 0, st = 0;
            if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) ==
                2)
                out->cpu_s = (double)(ut + st) / (double)(tck > 0 ? tck : 100);
        }
        fclose(f);
    }
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/status");
    else
        snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if ((f = fopen(path, "r"))) {
        while (fgets(buf, sizeof buf, f)) {
            if (strncmp(buf, "VmHWM:", 6) == 0)
                out->hwm_kb = atol(buf + 6);
            else if (strncmp(buf, "VmRSS:", 6) == 0)
                out->rss_kb = atol(buf + 6);
        }
        fclose(f);
    }
}

double bench_now(void)
{
    return (double)eg_mono_us() / 1e6;
}

int link_open(struct link *l, const char *uri, const char *client_id, const char *const *filters,
              int nfilters)
{
    struct eg_mqtt_opts *o = calloc(1, sizeof *o);
    struct eg_error e = {0};
    double end;
    int rc = -1;

    memset(l, 0, sizeof *l);
    if (!o || nfilters > EG_MQTT_MAX_FILTERS)
        goto out;
    o->uri = uri;
    o->client_id = client_id;
    o->session_expiry_s = 0;
    for (int i = 0; i < nfilters; i++)
        snprintf(o->filters[i], sizeof o->filters[i], "%s", filters[i]);
    o->nfilters = nfilters;
    /* a generous queue: the bench reads it as fast as it can */
    if (!(l->q = eg_queue_new(1000000, (size_t)1 << 30)) || eg_mqtt_new(o, l->q, &l->m, &e) != EG_OK) {
        fprintf(stderr, "ehrgate-bench: %s: %s\n", client_id, e.detail);
        goto out;
    }
    end = bench_now() + 10;
    while (!eg_mqtt_ready(l->m) && bench_now() < end) {
        eg_mqtt_tick(l->m);
        usleep(10000);
    }
    if (!eg_mqtt_ready(l->m)) {
        fprintf(stderr, "ehrgate-bench: %s: cannot connect to %s\n", client_id, uri);
        goto out;
    }
    rc = 0;
out:
    free(o); /* eg_mqtt_new copies its options */
    if (rc != 0)
        link_close(l);
    return rc;
}

void link_close(struct link *l)
{
    if (l->m) {
        eg_mqtt_disconnect(l->m, 1000);
        eg_mqtt_free(l->m);
    }
    if (l->q)
        eg_queue_free(l->q);
    memset(l, 0, sizeof *l);
}

static void pub_done(void *ctx, int outcome)
{
    (void)ctx;
    (void)outcome;
}

int link_pub(struct link *l, const char *topic, const void *payload, size_t len, const char *props)
{
    return eg_mqtt_publish(l->m, topic, payload, len, 1, 0, props, pub_done, NULL);
}

const char *scan_u64(const char *p, const char *end, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    const char *q;
    uint64_t v = 0;
    if (!p || p >= end || !(q = memmem(p, (size_t)(end - p), key, kl)))
        return NULL;
    q += kl;
    if (q >= end || *q < '0' || *q > '9')
        return NULL;
    while (q < end && *q >= '0' && *q <= '9')
        v = v * 10 + (uint64_t)(*q++ - '0');
    *out = v;
    return q;
}

/*
 * eg_config.c — option table, config file reader, flag parser, help and
 * example output. See eg_config.h.
 */
#include "eg_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eg_log.h"

enum opt_type { OPT_STR, OPT_INT, OPT_LIST, OPT_ENUM };

struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    const char *def; /* default as text; NULL = unset */
    int64_t min, max;
    const char *choices; /* OPT_ENUM: "a|b|c" */
    int scope;
    const char *help;
};

#define O(f) offsetof(struct eg_config, f)
static const struct opt opts[] = {
    {"broker", OPT_STR, O(broker), "mqtt://127.0.0.1:1883", 0, 0, NULL, EG_CFG_BOTH,
     "broker URL, mqtt://host:port or mqtts://host:port"},
    {"cafile", OPT_STR, O(cafile), NULL, 0, 0, NULL, EG_CFG_BOTH,
     "CA certificate (PEM) to verify an mqtts:// broker"},
    {"cert", OPT_STR, O(cert), NULL, 0, 0, NULL, EG_CFG_BOTH,
     "client certificate (PEM) for mqtts://"},
    {"keyfile", OPT_STR, O(keyfile), NULL, 0, 0, NULL, EG_CFG_BOTH,
     "client certificate's private key (PEM) for mqtts://"},
    {"client_id", OPT_STR, O(client_id), NULL, 0, 0, NULL, EG_CFG_GATEWAY,
     "MQTT client id (default: ehrgate-NAME)"},
    {"session_expiry_s", OPT_INT, O(session_expiry_s), "86400", 0, 4294967295LL, NULL,
     EG_CFG_GATEWAY, "MQTT session expiry: how long the broker queues for a stopped gateway"},
    {"db", OPT_STR, O(db), "ehrgate.db", 0, 0, NULL, EG_CFG_BOTH, "SQLite database file"},
    {"key", OPT_STR, O(key), "gateway.key", 0, 0, NULL, EG_CFG_BOTH,
     "gateway P-256 signing key (PEM); created with a new database"},
    {"master_key", OPT_STR, O(master_key), "master.key", 0, 0, NULL, EG_CFG_BOTH,
     "master key file, 64 hex chars, mode 0600; created with a new database"},
    {"name", OPT_STR, O(name), "gw1", 0, 0, NULL, EG_CFG_BOTH,
     "gateway name: entry ids and anchor/status topics"},
    {"topic_prefix", OPT_STR, O(topic_prefix), "ehr", 0, 0, NULL, EG_CFG_BOTH,
     "first level of every topic"},
    {"grantee", OPT_LIST, O(grantee), NULL, 0, 0, NULL, EG_CFG_BOTH,
     "NAME:PURPOSE of a feed subscriber (repeatable)"},
    {"admin_pubkey", OPT_LIST, O(admin_pubkey), NULL, 0, 0, NULL, EG_CFG_BOTH,
     "PEM public key allowed to sign admin requests (repeatable)"},
    {"block_max_entries", OPT_INT, O(block_max_entries), "1024", 1, 1048576, NULL, EG_CFG_BOTH,
     "seal a block when it holds this many entries"},
    {"block_interval_ms", OPT_INT, O(block_interval_ms), "1000", 10, 86400000, NULL, EG_CFG_BOTH,
     "seal a block this long after its first entry"},
    {"max_payload_bytes", OPT_INT, O(max_payload_bytes), "262144", 256, 16777216, NULL,
     EG_CFG_BOTH, "larger payloads are rejected too_large without parsing"},
    {"queue_max_msgs", OPT_INT, O(queue_max_msgs), "8192", 16, 1048576, NULL, EG_CFG_GATEWAY,
     "intake queue bound (messages); beyond it the MQTT reader waits"},
    {"queue_max_bytes", OPT_INT, O(queue_max_bytes), "67108864", 1048576, 4294967296LL, NULL,
     EG_CFG_GATEWAY, "intake queue bound (bytes); beyond it the MQTT reader waits"},
    {"db_max_bytes", OPT_INT, O(db_max_bytes), "0", 0, 1LL << 50, NULL, EG_CFG_GATEWAY,
     "the database may grow to at most this many bytes (0: no limit); beyond it writes fail "
     "as on a full disk: receipts pause until there is room (raise it and send SIGHUP)"},
    {"source_rate", OPT_INT, O(source_rate), "100", 0, 1000000, NULL, EG_CFG_GATEWAY,
     "messages per second one device or hospital may send on average (0: no limit); "
     "above it (after source_burst) messages are answered rate_limited"},
    {"source_burst", OPT_INT, O(source_burst), "5000", 1, 10000000, NULL, EG_CFG_GATEWAY,
     "messages one device or hospital may send at once before source_rate applies"},
    {"batch_max", OPT_INT, O(batch_max), "512", 1, 65536, NULL, EG_CFG_GATEWAY,
     "most messages committed in one SQLite transaction"},
    {"outbox_inflight", OPT_INT, O(outbox_inflight), "512", 1, 65535, NULL, EG_CFG_GATEWAY,
     "most outbox messages awaiting the broker's acknowledgement"},
    {"receipt_max_bytes", OPT_INT, O(receipt_max_bytes), "8192", 1024, 16777216, NULL,
     EG_CFG_GATEWAY,
     "receipts sent in one message are split below this size (a device's MQTT Maximum "
     "Packet Size)"},
    {"reply_max_bytes", OPT_INT, O(reply_max_bytes), "1048576", 65536, 268435456, NULL,
     EG_CFG_GATEWAY,
     "records and since replies stop adding entries above this size and say \"more\" (at "
     "least one entry is always sent)"},
    {"quarantine_quota", OPT_INT, O(quarantine_quota), "10000", 1, 100000000, NULL, EG_CFG_BOTH,
     "rejected payloads kept per source; the oldest go first"},
    {"quarantine_retention_days", OPT_INT, O(quarantine_retention_days), "30", 1, 36500, NULL,
     EG_CFG_BOTH, "rejected payloads are deleted after this many days"},
    {"quarantine_max_bytes", OPT_INT, O(quarantine_max_bytes), "268435456", 1048576,
     1099511627776LL, NULL, EG_CFG_BOTH,
     "bytes the quarantine may hold in all; beyond it the oldest rows go first"},
    {"stats_interval_s", OPT_INT, O(stats_interval_s), "10", 0, 86400, NULL, EG_CFG_GATEWAY,
     "publish stats this often (0 = never)"},
    {"erase_mode", OPT_ENUM, O(erase_mode), "patient", 0, 0, "patient|admin", EG_CFG_BOTH,
     "patient: erase requests take effect; admin: they wait for approve_erase"},
    {"log_level", OPT_ENUM, O(log_level), "info", 0, 0, "error|warn|info|debug", EG_CFG_BOTH,
     "log verbosity (ids only, never payloads or keys)"},
};
#undef O
#define NOPTS (sizeof opts / sizeof opts[0])
#define NOPTS_MAX 64
_Static_assert(sizeof opts / sizeof opts[0] <= NOPTS_MAX, "raise NOPTS_MAX");

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *o = opts[i].name;
        size_t j;
        if (strlen(o) != len)
            continue;
        for (j = 0; j < len; j++) {
            char c = name[j] == '-' ? '_' : name[j];
            if (c != o[j])
                break;
        }
        if (j == len)
            return &opts[i];
    }
    return NULL;
}

int eg_config_is_option(const char *name, int scope)
{
    const struct opt *o = find_opt(name, strlen(name));
    return o && (o->scope & scope);
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;
    if (!*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

static eg_err apply(struct eg_config *cfg, const struct opt *o, const char *value,
                    struct eg_error *e)
{
    char *base = (char *)cfg;
    switch (o->type) {
    case OPT_INT: {
        int64_t v;
        if (parse_int(value, &v) != 0)
            return eg_fail(e, EG_E_USAGE, "%s: \"%s\" is not an integer", o->name, value);
        if (v < o->min || v > o->max)
            return eg_fail(e, EG_E_USAGE, "%s: %lld outside %lld..%lld", o->name, (long long)v,
                           (long long)o->min, (long long)o->max);
        *(int64_t *)(base + o->off) = v;
        return EG_OK;
    }
    case OPT_ENUM:
        if (!choice_ok(o->choices, value))
            return eg_fail(e, EG_E_USAGE, "%s: \"%s\" is not one of %s", o->name, value,
                           o->choices);
        /* fall through */
    case OPT_STR: {
        char **slot = (char **)(base + o->off);
        char *dup = strdup(value);
        if (!dup)
            return eg_fail(e, EG_E_NOMEM, "out of memory");
        free(*slot);
        *slot = dup;
        return EG_OK;
    }
    case OPT_LIST: {
        struct eg_strlist *l = (struct eg_strlist *)(base + o->off);
        if (l->n >= EG_CFG_LIST_MAX)
            return eg_fail(e, EG_E_USAGE, "%s: at most %d values", o->name, EG_CFG_LIST_MAX);
        if (!(l->v[l->n] = strdup(value)))
            return eg_fail(e, EG_E_NOMEM, "out of memory");
        l->n++;
        return EG_OK;
    }
    }
    return eg_fail(e, EG_E_INTERNAL, "bad option type");
}

eg_err eg_config_init(struct eg_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTS; i++) {
        if (!opts[i].def)
            continue;
        if (apply(cfg, &opts[i], opts[i].def, NULL) != EG_OK) {
            eg_config_free(cfg);
            return EG_E_NOMEM;
        }
    }
    return EG_OK;
}

void eg_config_free(struct eg_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NOPTS; i++) {
        char *slot = (char *)cfg + opts[i].off;
        if (opts[i].type == OPT_LIST) {
            struct eg_strlist *l = (struct eg_strlist *)slot;
            for (int j = 0; j < l->n; j++)
                free(l->v[j]);
            l->n = 0;
        } else if (opts[i].type != OPT_INT) {
            free(*(char **)slot);
            *(char **)slot = NULL;
        }
    }
    free(cfg->config_path);
    cfg->config_path = NULL;
}

eg_err eg_config_set(struct eg_config *cfg, const char *name, const char *value,
                     struct eg_error *e)
{
    const struct opt *o = find_opt(name, strlen(name));
    if (!o)
        return eg_fail(e, EG_E_USAGE, "unknown option \"%s\"", name);
    return apply(cfg, o, value, e);
}

static char *trim(char *s)
{
    char *end;
    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

eg_err eg_config_load_file(struct eg_config *cfg, const char *path, struct eg_error *e)
{
    char line[4096];
    int lineno = 0;
    eg_err rc = EG_OK;
    FILE *f = fopen(path, "r");

    if (!f)
        return eg_fail(e, EG_E_USAGE, "%s: cannot open: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        char *p, *eq, *key, *val;
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = eg_fail(e, EG_E_USAGE, "%s:%d: line too long", path, lineno);
            goto out;
        }
        p = trim(line);
        if (*p == '\0' || *p == '#')
            continue;
        eq = strchr(p, '=');
        if (!eq) {
            rc = eg_fail(e, EG_E_USAGE, "%s:%d: expected key = value", path, lineno);
            goto out;
        }
        *eq = '\0';
        key = trim(p);
        val = trim(eq + 1);
        rc = eg_config_set(cfg, key, val, e);
        if (rc != EG_OK) {
            char inner[sizeof e->detail];
            snprintf(inner, sizeof inner, "%s", e->detail);
            rc = eg_fail(e, rc, "%s:%d: %s", path, lineno, inner);
            goto out;
        }
    }
    if (ferror(f))
        rc = eg_fail(e, EG_E_IO, "%s: read error", path);
out:
    fclose(f);
    return rc;
}

eg_err eg_config_parse_args(struct eg_config *cfg, int scope, int argc, char **argv, char **rest,
                            int *nrest, struct eg_error *e)
{
    int i;
    *nrest = 0;
    /* pass 1: the config file, so that flags override it */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            eg_err rc;
            if (i + 1 >= argc)
                return eg_fail(e, EG_E_USAGE, "%s needs a file", argv[i]);
            rc = eg_config_load_file(cfg, argv[i + 1], e);
            if (rc != EG_OK)
                return rc;
            free(cfg->config_path);
            cfg->config_path = strdup(argv[i + 1]);
            i++;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            eg_err rc = eg_config_load_file(cfg, argv[i] + 9, e);
            if (rc != EG_OK)
                return rc;
            free(cfg->config_path);
            cfg->config_path = strdup(argv[i] + 9);
        }
    }
    /* pass 2: flags. A list option given as a flag replaces the file's values
     * (flags override the file); repeated flags then append. */
    int cleared[NOPTS_MAX] = {0};
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = NULL;
        const char *val = NULL;
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++)
                rest[(*nrest)++] = argv[i];
            break;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            const char *n = a + 2;
            const char *eq = strchr(n, '=');
            o = find_opt(n, eq ? (size_t)(eq - n) : strlen(n));
            if (o && !(o->scope & scope))
                o = NULL;
            if (o)
                val = eq ? eq + 1 : NULL;
        }
        if (!o) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return eg_fail(e, EG_E_USAGE, "--%s needs a value", o->name);
            val = argv[++i];
        }
        if (o->type == OPT_LIST && !cleared[o - opts]) {
            struct eg_strlist *l = (struct eg_strlist *)((char *)cfg + o->off);
            for (int j = 0; j < l->n; j++)
                free(l->v[j]);
            l->n = 0;
            cleared[o - opts] = 1;
        }
        {
            eg_err rc = apply(cfg, o, val, e);
            if (rc != EG_OK)
                return rc;
        }
    }
    return EG_OK;
}

static void flag_name(const char *name, char *out, size_t size)
{
    size_t i;
    for (i = 0; name[i] && i + 1 < size; i++)
        out[i] = name[i] == '_' ? '-' : name[i];
    out[i] = '\0';
}

void eg_config_print_help(FILE *out, int scope)
{
    fprintf(out, "Options (also as `name = value` in the -c file; flags win):\n");
    fprintf(out, "  -c, --config FILE              read options from FILE\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64], arg[96];
        const struct opt *o = &opts[i];
        if (!(o->scope & scope))
            continue;
        flag_name(o->name, flag, sizeof flag);
        snprintf(arg, sizeof arg, "--%s %s", flag,
                 o->type == OPT_INT ? "N" : o->type == OPT_ENUM ? o->choices : "VALUE");
        fprintf(out, "  %-30s %s", arg, o->help);
        if (o->def)
            fprintf(out, " [%s]", o->def);
        if (o->type == OPT_INT)
            fprintf(out, " (%lld..%lld)", (long long)o->min, (long long)o->max);
        fputc('\n', out);
    }
}

void eg_config_write_example(FILE *out)
{
    fprintf(out, "# ehrgate configuration: every option with its default.\n"
                 "# Generated by `ehrctl config-example`; read by ehrgate -c and ehrctl -c.\n"
                 "# Syntax: key = value; '#' starts a comment; list options repeat.\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        fprintf(out, "\n# %s", o->help);
        if (o->type == OPT_INT)
            fprintf(out, " (%lld..%lld)", (long long)o->min, (long long)o->max);
        if (o->type == OPT_ENUM)
            fprintf(out, " (%s)", o->choices);
        if (o->type == OPT_LIST)
            fprintf(out, " (repeatable)");
        fputc('\n', out);
        if (o->def)
            fprintf(out, "%s = %s\n", o->name, o->def);
        else
            fprintf(out, "# %s =\n", o->name);
    }
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

eg_err eg_config_validate(const struct eg_config *cfg, struct eg_error *e)
{
    if (!id_ok(cfg->name))
        return eg_fail(e, EG_E_USAGE, "name: \"%s\" must be 1-64 of A-Z a-z 0-9 . _ -",
                       cfg->name);
    if (!id_ok(cfg->topic_prefix))
        return eg_fail(e, EG_E_USAGE, "topic_prefix: \"%s\" must be 1-64 of A-Z a-z 0-9 . _ -",
                       cfg->topic_prefix);
    if (strncmp(cfg->broker, "mqtt://", 7) != 0 && strncmp(cfg->broker, "mqtts://", 8) != 0)
        return eg_fail(e, EG_E_USAGE, "broker: \"%s\" must start with mqtt:// or mqtts://",
                       cfg->broker);
    if (strncmp(cfg->broker, "mqtts://", 8) == 0 && !cfg->cafile)
        return eg_fail(e, EG_E_USAGE, "broker: mqtts:// needs --cafile");
    if ((cfg->cert == NULL) != (cfg->keyfile == NULL))
        return eg_fail(e, EG_E_USAGE, "cert and keyfile go together");
    for (int i = 0; i < cfg->grantee.n; i++) {
        char buf[160];
        char *colon;
        snprintf(buf, sizeof buf, "%s", cfg->grantee.v[i]);
        colon = strchr(buf, ':');
        if (!colon)
            return eg_fail(e, EG_E_USAGE, "grantee: \"%s\" must be NAME:PURPOSE",
                           cfg->grantee.v[i]);
        *colon = '\0';
        if (!id_ok(buf) || !id_ok(colon + 1))
            return eg_fail(e, EG_E_USAGE,
                           "grantee: \"%s\" must be NAME:PURPOSE, each 1-64 of A-Z a-z 0-9 . _ -",
                           cfg->grantee.v[i]);
        for (int j = 0; j < i; j++) {
            size_t nl = strlen(buf);
            if (strncmp(cfg->grantee.v[j], buf, nl) == 0 && cfg->grantee.v[j][nl] == ':')
                return eg_fail(e, EG_E_USAGE, "grantee: %s is given twice", buf);
        }
    }
    return EG_OK;
}

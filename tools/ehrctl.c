/*
 * ehrctl.c — the operator's tool (SPEC §12): keys, signatures, registry,
 * quarantine and export. Works on the gateway's database through the same
 * store, registry and config modules; read-only commands open the database
 * read-only, so they work while the gateway runs.
 *
 * Exit codes: 0 success, 1 a check failed or not found, 2 usage or bad
 * input (with a message on stderr naming what was wrong).
 */
#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eg_block.h"
#include "eg_chain.h"
#include "eg_codec.h"
#include "eg_config.h"
#include "eg_consent.h"
#include "eg_crypto.h"
#include "eg_entries.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_log.h"
#include "eg_merkle.h"
#include "eg_quarantine.h"
#include "eg_registry.h"
#include "eg_store.h"
#include "eg_telemetry.h"
#include "eg_time.h"
#include "eg_vault.h"
#include "eg_version.h"

#define MAX_FILE (16 * 1024 * 1024)

struct ctl {
    struct eg_config cfg;
    int argc;
    char **argv;
};

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("ehrctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ehrctl [-c FILE] [--db DB] COMMAND [ARGS]\n\n"
            "Commands:\n"
            "  keygen PREFIX                    write PREFIX.key (P-256, mode 0600) and PREFIX.pub\n"
            "  sign KEY --topic TOPIC [FILE]    print the `sig` user property for FILE (or stdin)\n"
            "                                   published on TOPIC (SPEC §3)\n"
            "  acl [--gateway-user NAME] [--admin-user NAME]... [--auditor-user NAME]... [-o FILE]\n"
            "                                   a Mosquitto acl_file from the registry: each device,\n"
            "                                   hospital, patient and --grantee only on its own\n"
            "                                   topics (usernames = certificate CNs)\n"
            "  publish --topic TOPIC [--sign KEY] [--stamp] [--reply [--timeout S]] [FILE]\n"
            "                                   publish FILE (or stdin) with MQTT v5 QoS 1 on\n"
            "                                   --broker; --stamp first sets \"nonce\" (ms since\n"
            "                                   the epoch) and \"issued\" (now) in the JSON object;\n"
            "                                   --sign adds the `sig` property; --reply\n"
            "                                   waits up to S s (10) for the reply on a private\n"
            "                                   topic under the family's replies topic and prints\n"
            "                                   it (exit 1 on timeout)\n"
            "  register patient ID [--pubkey PUB] [--mrn HOSPITAL:VALUE]...\n"
            "  register device ID --patient PID --type TYPE [--pubkey PUB]\n"
            "           TYPE: pulse_oximeter bp_monitor thermometer glucometer scale monitor\n"
            "  register hospital ID [--pubkey PUB] [--utc-offset +HH:MM]\n"
            "  quarantine [list]                JSON lines: id, topic, received_at, code, detail, size\n"
            "  quarantine show ID               print the rejected payload (needs the master key)\n"
            "  quarantine replay ID             have the running gateway process it again\n"
            "  export [--entries]               JSON lines: gateway, blocks, entries; with\n"
            "                                   --entries also the entry bytes (master key)\n"
            "  verify [--pubkey GW.pub] [--head HEAD.json]\n"
            "                                   check every block's links, signature and Merkle\n"
            "                                   root; with --master-key also decrypt and re-hash\n"
            "                                   every entry; --head: a kept head block must be in\n"
            "                                   the chain. Exit 1 names the first broken place\n"
            "  verify-proof PROOF.json ENTRY_FILE --pubkey GW.pub\n"
            "                                   exit 0 if the entry bytes are in a signed block\n"
            "  config-example                   print a config file with every default\n"
            "  --version, -h/--help\n\n"
            "--master-key PATH defaults to the path recorded in the database.\n\n");
    eg_config_print_help(out, EG_CFG_CTL);
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : stdin;
    size_t cap = 4096, n = 0;
    char *buf;
    if (!f)
        return -1;
    buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        if (cap >= MAX_FILE) {
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        cap *= 2;
        {
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    if (path)
        fclose(f);
    if (!buf)
        return -1;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- keygen, sign --------------------------------------------------------- */

static int cmd_keygen(struct ctl *c)
{
    char kpath[4096], ppath[4096], pem[EG_PEM_PUB_MAX];
    struct eg_rng *rng = NULL;
    struct eg_key *k = NULL;
    struct eg_error e = {0};
    FILE *f;
    int code = 0;

    if (c->argc != 2)
        return die(2, "usage: ehrctl keygen PREFIX");
    snprintf(kpath, sizeof kpath, "%s.key", c->argv[1]);
    snprintf(ppath, sizeof ppath, "%s.pub", c->argv[1]);
    if (eg_rng_new(&rng) != EG_OK)
        return die(1, "cannot seed the random generator");
    if (eg_key_generate(rng, &k, &e) != EG_OK || eg_key_write_private(k, kpath, &e) != EG_OK) {
        code = die(2, "%s: %s", kpath, e.detail);
        goto out;
    }
    if (eg_key_public_pem(k, pem, sizeof pem) != EG_OK || !(f = fopen(ppath, "w"))) {
        code = die(2, "%s: cannot write: %s", ppath, strerror(errno));
        goto out;
    }
    fputs(pem, f);
    if (fclose(f) != 0) {
        code = die(2, "%s: cannot write: %s", ppath, strerror(errno));
        goto out;
    }
    printf("%s\n%s\n", kpath, ppath);
out:
    eg_key_free(k);
    eg_rng_free(rng);
    return code;
}

static int cmd_sign(struct ctl *c)
{
    const char *key = NULL, *topic = NULL, *file = NULL;
    struct eg_key *k = NULL;
    struct eg_rng *rng = NULL;
    struct eg_error e = {0};
    char sig[EG_SIG_B64_MAX], *data = NULL;
    size_t len;
    int code = 0;

    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--topic") == 0 && i + 1 < c->argc)
            topic = c->argv[++i];
        else if (!key)
            key = c->argv[i];
        else if (!file)
            file = c->argv[i];
        else
            return die(2, "sign: unexpected argument \"%s\"", c->argv[i]);
    }
    if (!key || !topic)
        return die(2, "usage: ehrctl sign KEY --topic TOPIC [FILE]");
    if (eg_key_load_private(key, &k, &e) != EG_OK)
        return die(2, "%s: %s", key, e.detail);
    if (read_file(file, &data, &len) != 0) {
        code = die(2, "%s: cannot read: %s", file ? file : "stdin", strerror(errno));
        goto out;
    }
    if (eg_rng_new(&rng) != EG_OK ||
        eg_key_sign_topic(k, rng, topic, data, len, sig, sizeof sig) != EG_OK) {
        code = die(1, "signing failed");
        goto out;
    }
    printf("%s\n", sig);
out:
    free(data);
    eg_key_free(k);
    eg_rng_free(rng);
    return code;
}

/* ---- register ---------------------------------------------------------------- */

static int load_pem(const char *path, char **pem)
{
    size_t len;
    if (read_file(path, pem, &len) != 0)
        return die(2, "%s: cannot read: %s", path, strerror(errno));
    return 0;
}

static int cmd_register(struct ctl *c)
{
    struct eg_store *st = NULL;
    struct eg_error e = {0};
    const char *what, *id, *patient = NULL, *type = NULL, *pubpath = NULL, *offset = NULL;
    const char *mrns[64];
    int nmrn = 0, code = 0, offset_min = 0;
    char *pem = NULL;
    eg_err rc;

    if (c->argc < 3)
        return die(2, "usage: ehrctl register patient|device|hospital ID [options]");
    what = c->argv[1];
    id = c->argv[2];
    for (int i = 3; i < c->argc; i++) {
        const char *a = c->argv[i];
        if (i + 1 >= c->argc)
            return die(2, "register: %s needs a value", a);
        if (strcmp(a, "--pubkey") == 0)
            pubpath = c->argv[++i];
        else if (strcmp(a, "--patient") == 0 && strcmp(what, "device") == 0)
            patient = c->argv[++i];
        else if (strcmp(a, "--type") == 0 && strcmp(what, "device") == 0)
            type = c->argv[++i];
        else if (strcmp(a, "--mrn") == 0 && strcmp(what, "patient") == 0 && nmrn < 64)
            mrns[nmrn++] = c->argv[++i];
        else if (strcmp(a, "--utc-offset") == 0 && strcmp(what, "hospital") == 0)
            offset = c->argv[++i];
        else
            return die(2, "register %s: unknown option \"%s\"", what, a);
    }
    if (strcmp(what, "device") == 0 && (!patient || !type))
        return die(2, "usage: ehrctl register device ID --patient PID --type TYPE [--pubkey PUB]");
    if (strcmp(what, "patient") != 0 && strcmp(what, "device") != 0 &&
        strcmp(what, "hospital") != 0)
        return die(2, "register: \"%s\" is not patient, device or hospital", what);
    if (offset && eg_utc_offset_parse(offset, &offset_min) != 0)
        return die(2, "register hospital: --utc-offset \"%s\" must be +HH:MM or -HH:MM", offset);
    for (int i = 0; i < nmrn; i++)
        if (!strchr(mrns[i], ':'))
            return die(2, "register patient: --mrn \"%s\" must be HOSPITAL:VALUE", mrns[i]);
    if (pubpath && (code = load_pem(pubpath, &pem)) != 0)
        return code;
    if (access(c->cfg.db, F_OK) != 0)
        fprintf(stderr, "ehrctl: %s does not exist; creating a new database\n", c->cfg.db);
    if (eg_store_open(c->cfg.db, EG_STORE_CREATE, &st, &e) != EG_OK) {
        code = die(2, "%s", e.detail);
        goto out;
    }
    if ((rc = eg_store_begin(st)) != EG_OK) {
        code = die(1, "%s: database is busy or unwritable", c->cfg.db);
        goto out;
    }
    if (strcmp(what, "patient") == 0) {
        rc = eg_registry_add_patient(st, id, pem, &e);
        for (int i = 0; rc == EG_OK && i < nmrn; i++) {
            char hosp[80];
            const char *colon = strchr(mrns[i], ':');
            snprintf(hosp, sizeof hosp, "%.*s", (int)(colon - mrns[i]), mrns[i]);
            rc = eg_registry_add_identifier(st, hosp, colon + 1, id, &e);
        }
    } else if (strcmp(what, "device") == 0) {
        rc = eg_registry_add_device(st, id, patient, type, pem, &e);
    } else {
        rc = eg_registry_add_hospital(st, id, pem, offset_min, &e);
    }
    if (rc == EG_OK)
        rc = eg_store_commit(st);
    if (rc != EG_OK) {
        eg_store_rollback(st);
        code = die(rc == EG_E_DB || rc == EG_E_DB_FULL ? 1 : 2, "register %s %s: %s", what, id,
                   e.detail[0] ? e.detail : eg_strerror(rc));
        goto out;
    }
    printf("registered %s %s\n", what, id);
out:
    free(pem);
    eg_store_close(st);
    return code;
}

/* ---- quarantine ----------------------------------------------------------------- */

static int open_ro(struct ctl *c, struct eg_store **st)
{
    struct eg_error e = {0};
    if (eg_store_open(c->cfg.db, EG_STORE_READONLY, st, &e) != EG_OK)
        return die(2, "%s", e.detail);
    return 0;
}

static int open_vault(struct ctl *c, struct eg_store *st, struct eg_rng **rng,
                      struct eg_vault **v)
{
    struct eg_error e = {0};
    if (eg_rng_new(rng) != EG_OK)
        return die(1, "cannot seed the random generator");
    if (eg_vault_open_master(st, c->cfg.master_key, *rng, v, &e) != EG_OK)
        return die(2, "%s", e.detail);
    return 0;
}

static int parse_id(const char *s, int64_t *id)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -1;
    *id = v;
    return 0;
}

static int quarantine_list(struct eg_store *st)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT id, topic, received_at, code, detail, size"
                                        " FROM quarantine ORDER BY id");
    int rc;
    if (!s)
        return die(1, "cannot read the quarantine");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char at[EG_TIME_STRLEN], *line;
        cJSON *o = cJSON_CreateObject();
        eg_time_format(sqlite3_column_int64(s, 2), at);
        cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(s, 0));
        cJSON_AddStringToObject(o, "topic", (const char *)sqlite3_column_text(s, 1));
        cJSON_AddStringToObject(o, "received_at", at);
        cJSON_AddStringToObject(o, "code", (const char *)sqlite3_column_text(s, 3));
        cJSON_AddStringToObject(o, "detail", (const char *)sqlite3_column_text(s, 4));
        cJSON_AddNumberToObject(o, "size", (double)sqlite3_column_int64(s, 5));
        line = cJSON_PrintUnformatted(o);
        if (line)
            puts(line);
        free(line);
        cJSON_Delete(o);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : die(1, "quarantine read failed");
}

static int cmd_quarantine(struct ctl *c)
{
    const char *sub = c->argc > 1 ? c->argv[1] : "list";
    struct eg_store *st = NULL;
    struct eg_vault *v = NULL;
    struct eg_rng *rng = NULL;
    struct eg_error e = {0};
    int64_t id = 0;
    int code = 0;

    if (strcmp(sub, "list") == 0) {
        if (c->argc > 2)
            return die(2, "usage: ehrctl quarantine list");
        if ((code = open_ro(c, &st)) != 0)
            return code;
        code = quarantine_list(st);
        eg_store_close(st);
        return code;
    }
    if ((strcmp(sub, "show") != 0 && strcmp(sub, "replay") != 0) || c->argc != 3)
        return die(2, "usage: ehrctl quarantine [list|show ID|replay ID]");
    if (parse_id(c->argv[2], &id) != 0)
        return die(2, "quarantine %s: \"%s\" is not a quarantine id", sub, c->argv[2]);
    if (strcmp(sub, "show") == 0) {
        uint8_t *payload = NULL;
        size_t len = 0;
        eg_err rc;
        if ((code = open_ro(c, &st)) != 0)
            return code;
        if ((code = open_vault(c, st, &rng, &v)) != 0)
            goto out;
        rc = eg_quarantine_payload(st, v, id, &payload, &len);
        if (rc == EG_E_NOT_FOUND)
            code = die(1, "quarantine: no row %lld", (long long)id);
        else if (rc != EG_OK)
            code = die(1, "quarantine %lld: cannot decrypt (%s)", (long long)id, eg_strerror(rc));
        else if (fwrite(payload, 1, len, stdout) != len)
            code = die(1, "write failed");
        free(payload);
        goto out;
    }
    if (eg_store_open(c->cfg.db, 0, &st, &e) != EG_OK)
        return die(2, "%s", e.detail);
    switch (eg_quarantine_request_replay(st, id)) {
    case EG_OK:
        printf("quarantine %lld marked for replay; a running gateway processes it within 2 s\n",
               (long long)id);
        break;
    case EG_E_NOT_FOUND:
        code = die(1, "quarantine: no row %lld", (long long)id);
        break;
    default:
        code = die(1, "quarantine: cannot mark %lld: %s", (long long)id,
                   sqlite3_errmsg(eg_store_db(st)));
    }
out:
    eg_vault_free(v);
    eg_rng_free(rng);
    eg_store_close(st);
    return code;
}

/* ---- acl ----------------------------------------------------------------------------- */

/*
 * `acl [--gateway-user NAME] [--admin-user NAME]... [-o FILE]`: a Mosquitto
 * acl_file from the registry, for a broker that takes the client
 * certificate's CN as the username (use_identity_as_username): each
 * device, hospital, patient and configured grantee may publish and
 * subscribe only on its own topics (with its replies subtree), the
 * operators on the admin topics, the gateway on everything under the
 * prefix; every authenticated client may read the gateway's status,
 * blocks and head and use the auditors' anchor API (no patient data).
 */
/* What every authenticated client may do: read the gateway's status,
 * blocks and head, and use the auditors' anchor API (no patient data).
 * Written into each user block: Mosquitto's `pattern` lines would do it
 * once but warn about every pattern without %u or %c. */
static void acl_common(FILE *f, const char *p, const char *name)
{
    fprintf(f,
            "topic read %s/gateway/%s/status\ntopic read %s/anchor/%s/blocks\n"
            "topic read %s/anchor/%s/head\ntopic write %s/anchor/%s/request\n"
            "topic read %s/anchor/%s/replies/#\n\n",
            p, name, p, name, p, name, p, name, p, name);
}

/* One `user` block per registered id of kind ('d' device, 'h' hospital,
 * 'p' patient); *n counts them. */
static int acl_list(FILE *f, struct eg_store *st, char kind, const char *p, const char *name,
                    int *n)
{
    const char *sql = kind == 'd'   ? "SELECT device_id FROM devices WHERE active = 1"
                                      " ORDER BY device_id"
                      : kind == 'h' ? "SELECT hospital_id FROM hospitals ORDER BY hospital_id"
                                    : "SELECT patient_id FROM patients ORDER BY patient_id";
    sqlite3_stmt *s = eg_store_stmt(st, sql);
    int rc;
    if (!s)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (kind == 'd')
            fprintf(f, "user %s\ntopic write %s/device/%s/telemetry\n"
                       "topic read %s/device/%s/receipts\n",
                    id, p, id, p, id);
        else if (kind == 'h')
            fprintf(f, "user %s\ntopic write %s/hospital/%s/records\n"
                       "topic read %s/hospital/%s/receipts\n",
                    id, p, id, p, id);
        else
            fprintf(f, "user %s\ntopic write %s/patient/%s/consent\n"
                       "topic write %s/patient/%s/request\ntopic read %s/patient/%s/replies/#\n",
                    id, p, id, p, id, p, id);
        acl_common(f, p, name);
        (*n)++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Every name the ACL gives rights to, with its role: Mosquitto merges
 * `user` blocks of the same name, so one name in two roles would get both
 * sets of rights. Returns the first name used twice, or NULL. */
static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *acl_duplicate(struct eg_store *st, const char *const *fixed, size_t nfixed,
                           char **owned, size_t *nowned, size_t cap)
{
    static const char *const sql[] = {"SELECT device_id FROM devices WHERE active = 1",
                                      "SELECT hospital_id FROM hospitals",
                                      "SELECT patient_id FROM patients"};
    char **all;
    char *dup = NULL;
    size_t n = 0;
    for (size_t k = 0; k < 3; k++) {
        sqlite3_stmt *s = eg_store_stmt(st, sql[k]);
        while (s && sqlite3_step(s) == SQLITE_ROW && *nowned < cap) {
            char *id = strdup((const char *)sqlite3_column_text(s, 0));
            if (id)
                owned[(*nowned)++] = id;
        }
        if (s)
            sqlite3_reset(s);
    }
    if (!(all = malloc((nfixed + *nowned) * sizeof *all + 1)))
        return NULL;
    for (size_t i = 0; i < nfixed; i++)
        all[n++] = (char *)fixed[i];
    for (size_t i = 0; i < *nowned; i++)
        all[n++] = owned[i];
    qsort(all, n, sizeof *all, name_cmp);
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(all[i - 1], all[i]) == 0)
            dup = all[i];
    free(all);
    return dup;
}

static int cmd_acl(struct ctl *c)
{
    const char *gw_user = "gateway", *out = NULL, *admins[16], *auditors[16];
    int nauditor = 0;
    char tmp_path[4096];
    const char *p = c->cfg.topic_prefix, *name = c->cfg.name;
    int nadmin = 0, ndev = 0, nhosp = 0, npat = 0, code = 0;
    struct eg_grantee g[EG_GRANTEES_MAX];
    struct eg_store *st = NULL;
    char when[EG_TIME_STRLEN];
    FILE *f = stdout;
    int ng;

    for (int i = 1; i < c->argc; i++) {
        const char *a = c->argv[i], *v = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!v)
            return die(2, "usage: ehrctl acl [--gateway-user NAME] [--admin-user NAME]... "
                          "[-o FILE]");
        i++;
        if (strcmp(a, "-o") != 0 && !eg_id_valid(v))
            return die(2, "acl: %s \"%s\": 1-64 of A-Z a-z 0-9 . _ -", a, v);
        if (strcmp(a, "--gateway-user") == 0)
            gw_user = v;
        else if (strcmp(a, "--admin-user") == 0 && nadmin < 16)
            admins[nadmin++] = v;
        else if (strcmp(a, "--auditor-user") == 0 && nauditor < 16)
            auditors[nauditor++] = v;
        else if (strcmp(a, "-o") == 0)
            out = v;
        else
            return die(2, "acl: unknown option \"%s\"", a);
    }
    if ((ng = eg_grantees_parse(&c->cfg, g, EG_GRANTEES_MAX)) < 0)
        return die(2, "acl: grantee: each must be NAME:PURPOSE");
    if ((code = open_ro(c, &st)) != 0)
        return code;
    {
        /* one name, one role */
        const char *fixed[1 + 16 + 16 + EG_GRANTEES_MAX];
        size_t nfixed = 0, nowned = 0, cap = 1000000;
        char **owned = calloc(cap, sizeof *owned), *dup;
        fixed[nfixed++] = gw_user;
        for (int i = 0; i < nadmin; i++)
            fixed[nfixed++] = admins[i];
        for (int i = 0; i < nauditor; i++)
            fixed[nfixed++] = auditors[i];
        for (int i = 0; i < ng; i++)
            fixed[nfixed++] = g[i].name;
        dup = owned ? acl_duplicate(st, fixed, nfixed, owned, &nowned, cap) : NULL;
        if (dup)
            code = die(2, "acl: \"%s\" names two parties (gateway/admin/auditor user, grantee, "
                          "device, hospital or patient); each needs its own certificate name",
                       dup);
        for (size_t i = 0; i < nowned; i++)
            free(owned[i]);
        free(owned);
        if (code)
            goto done;
    }
    /* written to a temporary file and renamed: a broker reloading it never
     * sees half a file, and a failure leaves the old one */
    if (out) {
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", out, (long)getpid());
        if (!(f = fopen(tmp_path, "w"))) {
            code = die(2, "%s: %s", tmp_path, strerror(errno));
            f = NULL;
            goto done;
        }
    }
    eg_time_format(eg_now_ms(), when);
    fprintf(f,
            "# Mosquitto acl_file for ehrgate, written by `ehrctl acl` at %s from %s.\n"
            "# Usernames are client certificate CNs (use_identity_as_username true).\n"
            "# Regenerate after registry changes and reload the broker (SIGHUP).\n\n"
            "# Every client may also read the gateway's status, blocks and head and use the\n"
            "# auditors' anchor API (no patient data).\n\n"
            "user %s\ntopic readwrite %s/#\n\n",
            when, c->cfg.db, gw_user, p);
    for (int i = 0; i < nadmin; i++) {
        fprintf(f,
                "user %s\ntopic write %s/admin/request\ntopic read %s/admin/replies/#\n"
                "topic read %s/gateway/%s/stats\n",
                admins[i], p, p, p, name);
        acl_common(f, p, name);
    }
    for (int i = 0; i < nauditor; i++) {
        fprintf(f, "user %s\ntopic read %s/gateway/%s/stats\n", auditors[i], p, name);
        acl_common(f, p, name);
    }
    for (int i = 0; i < ng; i++) {
        fprintf(f,
                "user %s\ntopic read %s/feed/%s\ntopic write %s/feed/%s/request\n"
                "topic read %s/feed/%s/replies/#\n",
                g[i].name, p, g[i].name, p, g[i].name, p, g[i].name);
        acl_common(f, p, name);
    }
    if (acl_list(f, st, 'd', p, name, &ndev) != 0 || acl_list(f, st, 'h', p, name, &nhosp) != 0 ||
        acl_list(f, st, 'p', p, name, &npat) != 0) {
        code = die(1, "acl: cannot read the registry: %s", sqlite3_errmsg(eg_store_db(st)));
        goto done;
    }
    if (fflush(f) != 0 || (out && fsync(fileno(f)) != 0))
        code = die(1, "acl: write failed: %s", strerror(errno));
    fprintf(stderr, "ehrctl: acl: gateway user %s, %d admin user(s), %d grantee(s), %d device(s), "
                    "%d hospital(s), %d patient(s)\n",
            gw_user, nadmin, ng, ndev, nhosp, npat);
done:
    if (out && f && f != stdout) {
        fclose(f);
        if (code == 0 && rename(tmp_path, out) != 0)
            code = die(1, "acl: %s: %s", out, strerror(errno));
        if (code != 0)
            unlink(tmp_path);
    }
    eg_store_close(st);
    return code;
}

/* ---- export ------------------------------------------------------------------------ */

static void print_json_line(cJSON *o)
{
    char *line = cJSON_PrintUnformatted(o);
    if (line)
        puts(line);
    free(line);
    cJSON_Delete(o);
}

static int cmd_export(struct ctl *c)
{
    struct eg_store *st = NULL;
    struct eg_vault *v = NULL;
    struct eg_rng *rng = NULL;
    int entries = 0, code = 0, rc;
    char buf[4096];
    sqlite3_stmt *s;
    cJSON *o;

    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--entries") == 0)
            entries = 1;
        else
            return die(2, "export: unknown argument \"%s\"", c->argv[i]);
    }
    if ((code = open_ro(c, &st)) != 0)
        return code;
    if (entries && (code = open_vault(c, st, &rng, &v)) != 0)
        goto out;
    /* one read transaction: blocks and entries from the same snapshot, even
     * while the gateway writes */
    if (sqlite3_exec(eg_store_db(st), "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        code = die(1, "cannot read the database");
        goto out;
    }

    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "gateway");
    if (eg_store_meta_get(st, "gateway_key_fpr", buf, sizeof buf) == 0)
        cJSON_AddStringToObject(o, "gateway_id", buf);
    else
        cJSON_AddNullToObject(o, "gateway_id");
    if (eg_store_meta_get(st, "gateway_pubkey", buf, sizeof buf) == 0)
        cJSON_AddStringToObject(o, "pubkey", buf);
    else
        cJSON_AddNullToObject(o, "pubkey");
    print_json_line(o);

    {
        uint8_t gid[32];
        uint64_t h = 0;
        struct eg_block b;
        eg_err erc = EG_OK;
        if (eg_store_meta_get(st, "gateway_key_fpr", buf, sizeof buf) != 0 ||
            eg_hex_decode(buf, gid, 32) != 0)
            memset(gid, 0, sizeof gid);
        s = eg_store_stmt(st, "SELECT height FROM blocks ORDER BY height");
        if (!s) {
            code = die(1, "cannot read blocks");
            goto out;
        }
        /* heights first (the statement cache is shared with eg_block_load) */
        {
            uint64_t *hs = NULL;
            size_t n = 0, cap = 0;
            while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (n == cap) {
                    uint64_t *nh = realloc(hs, (cap = cap ? cap * 2 : 256) * sizeof *hs);
                    if (!nh)
                        break;
                    hs = nh;
                }
                hs[n++] = (uint64_t)sqlite3_column_int64(s, 0);
            }
            sqlite3_reset(s);
            if (rc != SQLITE_DONE)
                erc = EG_E_DB;
            for (size_t i = 0; i < n && erc == EG_OK; i++) {
                cJSON *bj;
                h = hs[i];
                if ((erc = eg_block_load(st, h, gid, &b)) != EG_OK)
                    break;
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", "block");
                bj = eg_block_to_json(&b);
                for (cJSON *it = bj ? bj->child : NULL; it;) {
                    cJSON *next = it->next;
                    cJSON_AddItemToObject(o, it->string, cJSON_DetachItemViaPointer(bj, it));
                    it = next;
                }
                cJSON_Delete(bj);
                print_json_line(o);
            }
            free(hs);
        }
        if (erc != EG_OK) {
            code = die(1, "block %llu: cannot read", (unsigned long long)h);
            goto out;
        }
    }

    s = eg_store_stmt(st, "SELECT seq, leaf_hash FROM entries ORDER BY seq");
    if (!s) {
        code = die(1, "cannot read entries");
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char hex[65];
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "entry");
        cJSON_AddItemToObject(o, "seq", egjson_create_u64(seq));
        eg_hex_encode(sqlite3_column_blob(s, 1), 32, hex);
        cJSON_AddStringToObject(o, "leaf_hash", hex);
        if (entries) {
            char *bytes = NULL;
            size_t len;
            eg_err erc = eg_entry_read(st, v, seq, &bytes, &len);
            if (erc == EG_OK)
                cJSON_AddStringToObject(o, "entry", bytes);
            else if (erc == EG_E_NOT_FOUND)
                cJSON_AddNullToObject(o, "entry"); /* erased */
            else {
                cJSON_Delete(o);
                code = die(1, "entry %llu: cannot decrypt (%s)", (unsigned long long)seq,
                           eg_strerror(erc));
                free(bytes);
                break;
            }
            free(bytes);
        }
        print_json_line(o);
    }
    sqlite3_reset(s);
    if (code == 0 && rc != SQLITE_DONE)
        code = die(1, "export: reading entries failed: %s", sqlite3_errmsg(eg_store_db(st)));
out:
    if (st)
        sqlite3_exec(eg_store_db(st), "COMMIT", NULL, NULL, NULL);
    eg_vault_free(v);
    eg_rng_free(rng);
    eg_store_close(st);
    if (fflush(stdout) != 0 || ferror(stdout))
        code = die(1, "write failed");
    return code;
}

/* ---- verify, verify-proof (SPEC §11, §12) ----------------------------------------- */

static int load_gateway_key(struct eg_store *st, const char *pubpath, struct eg_key **k)
{
    struct eg_error e = {0};
    char pem[EG_PEM_PUB_MAX * 2];
    if (pubpath) {
        if (eg_key_load_public(pubpath, k, &e) != EG_OK)
            return die(2, "%s: %s", pubpath, e.detail);
        return 0;
    }
    if (eg_store_meta_get(st, "gateway_pubkey", pem, sizeof pem) != 0)
        return die(2, "the database records no gateway key; pass --pubkey");
    if (eg_key_parse_public(pem, strlen(pem) + 1, k, &e) != EG_OK)
        return die(1, "the gateway key recorded in the database is unusable: %s", e.detail);
    fprintf(stderr, "ehrctl: verify: no --pubkey given; using the gateway key recorded in the "
                    "database\n");
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every erased patient needs an erasure entry. 0 yes, 1 no, -1 error. */
static int has_erasure(struct eg_store *st, const char *patient)
{
    sqlite3_stmt *s = eg_store_stmt(st, "SELECT 1 FROM entries WHERE kind = 'erasure'"
                                        " AND patient = ?1 LIMIT 1");
    int rc;
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

/* Compares the clear columns of an entries row (seq, patient, leaf_hash,
 * kind, category, source_type, source_id, msg_id) with the decrypted entry
 * bytes. Returns the name of the first column that differs, or NULL. */
static const char *entry_columns_mismatch(sqlite3_stmt *s, uint64_t seq, const char *bytes,
                                          size_t len)
{
    static const struct {
        int col;
        const char *key, *sub;
    } cols[] = {{1, "patient", NULL},  {3, "kind", NULL},       {4, "category", NULL},
                {5, "source", "type"}, {6, "source", "id"},     {7, "source", "msg_id"}};
    cJSON *e = NULL;
    struct eg_error pe = {0};
    uint64_t eseq;
    const char *bad = NULL;

    if (egjson_parse((const uint8_t *)bytes, len, &e, &pe) != EG_OK)
        return "entry bytes";
    if (egjson_get_u53(cJSON_GetObjectItemCaseSensitive(e, "seq"), &eseq) != 0 || eseq != seq)
        bad = "seq";
    for (size_t i = 0; !bad && i < sizeof cols / sizeof cols[0]; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(e, cols[i].key);
        const unsigned char *colv = sqlite3_column_text(s, cols[i].col);
        if (cols[i].sub)
            it = cJSON_GetObjectItemCaseSensitive(it, cols[i].sub);
        if (cJSON_IsNull(it) ? colv != NULL
                             : !cJSON_IsString(it) || !colv ||
                                   strcmp(it->valuestring, (const char *)colv) != 0)
            bad = cols[i].sub ? (i == 3 ? "source_type" : i == 4 ? "source_id" : "msg_id")
                              : cols[i].key;
    }
    cJSON_Delete(e);
    return bad;
}

/* --head: a block the auditor kept (e.g. the retained .../head) must be in
 * the verified chain, with the same hash: a database cut off after an
 * earlier block is otherwise a consistent shorter chain. nblocks is the
 * verified chain's length; its blocks link, so the stored block at the
 * kept height must carry the kept hash. */
static int check_head(struct eg_store *st, const char *path, const struct eg_key *k,
                      const uint8_t gid[32], uint64_t nblocks)
{
    char *text = NULL;
    size_t len;
    cJSON *j = NULL, *blk;
    struct eg_error e = {0};
    struct eg_block b;
    int code = 0;

    if (read_file(path, &text, &len) != 0)
        return die(2, "%s: cannot read: %s", path, strerror(errno));
    if (egjson_parse((const uint8_t *)text, len, &j, &e) != EG_OK) {
        code = die(2, "%s: %s", path, e.detail);
        goto out;
    }
    /* a block, or a proof/block reply or export line that holds one */
    blk = cJSON_GetObjectItemCaseSensitive(j, "block");
    if (eg_block_from_json(blk ? blk : j, &b, &e) != EG_OK) {
        code = die(2, "%s: not a block: %s", path, e.detail);
        goto out;
    }
    if (memcmp(b.gateway_id, gid, 32) != 0 || eg_block_verify(&b, k) != EG_OK) {
        code = die(2, "%s: the block is not signed by this gateway's key", path);
        goto out;
    }
    if (b.height >= nblocks) {
        code = die(1, "verify: FAILED: the database ends at height %lld but the kept head is at "
                      "height %llu (blocks removed from the end?)",
                   (long long)nblocks - 1, (unsigned long long)b.height);
        goto out;
    }
    {
        struct eg_block stored;
        if (eg_block_load(st, b.height, gid, &stored) != EG_OK ||
            memcmp(stored.hash, b.hash, 32) != 0)
            code = die(1, "verify: FAILED at height %llu: differs from the kept head (a "
                          "rewritten chain?)",
                       (unsigned long long)b.height);
    }
out:
    cJSON_Delete(j);
    free(text);
    return code;
}

static int verify_entries(struct eg_store *st, struct eg_vault *v, uint64_t *n_out)
{
    sqlite3_stmt *s;
    uint64_t n = 0;
    int rc, code = 0;
    /* a separate statement from the cache: eg_entry_read uses the cache too */
    if (sqlite3_prepare_v2(eg_store_db(st),
                           "SELECT seq, patient, leaf_hash, kind, category, source_type,"
                           " source_id, msg_id FROM entries ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK)
        return die(1, "cannot read entries");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        char patient[80];
        char *bytes = NULL;
        size_t len;
        uint8_t leaf[32];
        eg_err erc;
        snprintf(patient, sizeof patient, "%s", (const char *)sqlite3_column_text(s, 1));
        erc = eg_entry_read(st, v, seq, &bytes, &len);
        if (erc == EG_E_NOT_FOUND) {
            if (has_erasure(st, patient) != 0) {
                code = die(1, "verify: FAILED at seq %llu: entry of patient %s is unreadable "
                              "and there is no erasure entry for that patient",
                           (unsigned long long)seq, patient);
                break;
            }
            continue;
        }
        if (erc != EG_OK) {
            code = die(1, "verify: FAILED at seq %llu: the ciphertext does not authenticate "
                          "(changed, or moved from another row)",
                       (unsigned long long)seq);
            break;
        }
        eg_merkle_leaf(bytes, len, leaf);
        {
            /* the clear columns the gateway acts on (category decides what
             * may be forwarded) must say what the signed entry says */
            const char *bad = entry_columns_mismatch(s, seq, bytes, len);
            if (bad) {
                eg_wipe(bytes, len);
                free(bytes);
                code = die(1, "verify: FAILED at seq %llu: the stored %s column does not match "
                              "the entry",
                           (unsigned long long)seq, bad);
                break;
            }
        }
        eg_wipe(bytes, len);
        free(bytes);
        if (sqlite3_column_bytes(s, 2) != 32 ||
            memcmp(leaf, sqlite3_column_blob(s, 2), 32) != 0) {
            code = die(1, "verify: FAILED at seq %llu: the entry bytes do not hash to the "
                          "stored leaf hash",
                       (unsigned long long)seq);
            break;
        }
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = die(1, "verify: cannot read entries");
    sqlite3_finalize(s);
    *n_out = n;
    return code;
}

static int cmd_verify(struct ctl *c)
{
    const char *pubpath = NULL, *headpath = NULL;
    struct eg_store *st = NULL;
    struct eg_key *k = NULL;
    struct eg_vault *v = NULL;
    struct eg_rng *rng = NULL;
    sqlite3_stmt *bs = NULL, *es = NULL;
    uint8_t gid[32], prev[32] = {0}, (*leaves)[32] = NULL;
    uint64_t want_height = 0, want_seq = 0, nblocks = 0, sealed = 0, open = 0, readable = 0;
    size_t cap = 0;
    int code = 0, erc = SQLITE_DONE, brc;
    double t0, t_merkle = 0, t_sig = 0, t1;

    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--pubkey") == 0 && i + 1 < c->argc)
            pubpath = c->argv[++i];
        else if (strcmp(c->argv[i], "--head") == 0 && i + 1 < c->argc)
            headpath = c->argv[++i];
        else
            return die(2, "usage: ehrctl --db DB verify [--pubkey GW.pub] [--master-key MK] "
                          "[--head HEAD.json]");
    }
    if ((code = open_ro(c, &st)) != 0)
        return code;
    if ((code = load_gateway_key(st, pubpath, &k)) != 0)
        goto out;
    if (c->cfg.master_key && (code = open_vault(c, st, &rng, &v)) != 0)
        goto out;
    eg_key_fingerprint(k, gid);
    t0 = now_s();
    if (sqlite3_prepare_v2(eg_store_db(st),
                           "SELECT height, first_seq, count, merkle_root, prev_hash, sealed_at,"
                           " hash, sig FROM blocks ORDER BY height",
                           -1, &bs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(eg_store_db(st), "SELECT seq, leaf_hash, block FROM entries"
                                             " ORDER BY seq", -1, &es, NULL) != SQLITE_OK) {
        code = die(1, "cannot read the database");
        goto out;
    }
    erc = sqlite3_step(es);
    while ((brc = sqlite3_step(bs)) == SQLITE_ROW) {
        struct eg_block b;
        uint64_t height = (uint64_t)sqlite3_column_int64(bs, 0);
        uint64_t count = (uint64_t)sqlite3_column_int64(bs, 2);
        uint8_t root[32];
        eg_err vr;

        memset(&b, 0, sizeof b);
        if (height != want_height) {
            code = die(1, "verify: FAILED at height %llu: block missing (found height %llu "
                          "next)",
                       (unsigned long long)want_height, (unsigned long long)height);
            goto out;
        }
        b.version = 1;
        memcpy(b.gateway_id, gid, 32);
        b.height = height;
        b.first_seq = (uint64_t)sqlite3_column_int64(bs, 1);
        b.count = (uint32_t)count;
        b.sealed_at = (uint64_t)sqlite3_column_int64(bs, 5);
        if (sqlite3_column_bytes(bs, 3) != 32 || sqlite3_column_bytes(bs, 4) != 32 ||
            sqlite3_column_bytes(bs, 6) != 32 || count == 0 || count > UINT32_MAX) {
            code = die(1, "verify: FAILED at height %llu: malformed block row",
                       (unsigned long long)height);
            goto out;
        }
        memcpy(b.merkle_root, sqlite3_column_blob(bs, 3), 32);
        memcpy(b.prev_hash, sqlite3_column_blob(bs, 4), 32);
        memcpy(b.hash, sqlite3_column_blob(bs, 6), 32);
        snprintf(b.sig, sizeof b.sig, "%s",
                 sqlite3_column_text(bs, 7) ? (const char *)sqlite3_column_text(bs, 7) : "");
        if (b.first_seq != want_seq) {
            code = die(1, "verify: FAILED at height %llu: first_seq %llu, expected %llu",
                       (unsigned long long)height, (unsigned long long)b.first_seq,
                       (unsigned long long)want_seq);
            goto out;
        }
        if (memcmp(b.prev_hash, prev, 32) != 0) {
            code = die(1, "verify: FAILED at height %llu: prev_hash does not link to %s",
                       (unsigned long long)height,
                       height ? "the previous block's hash" : "zeros (genesis)");
            goto out;
        }
        t1 = now_s();
        if (count > cap) {
            void *p = realloc(leaves, (size_t)count * 32);
            if (!p) {
                code = die(1, "out of memory");
                goto out;
            }
            leaves = p;
            cap = (size_t)count;
        }
        for (uint64_t i = 0; i < count; i++, want_seq++) {
            if (erc != SQLITE_ROW || (uint64_t)sqlite3_column_int64(es, 0) != want_seq) {
                code = die(1, "verify: FAILED at seq %llu: entry missing (block %llu)",
                           (unsigned long long)want_seq, (unsigned long long)height);
                goto out;
            }
            if (sqlite3_column_type(es, 2) == SQLITE_NULL ||
                (uint64_t)sqlite3_column_int64(es, 2) != height ||
                sqlite3_column_bytes(es, 1) != 32) {
                code = die(1, "verify: FAILED at seq %llu: not recorded as part of block %llu",
                           (unsigned long long)want_seq, (unsigned long long)height);
                goto out;
            }
            memcpy(leaves[i], sqlite3_column_blob(es, 1), 32);
            erc = sqlite3_step(es);
        }
        eg_merkle_root((const uint8_t(*)[32])leaves, (size_t)count, root);
        t_merkle += now_s() - t1;
        if (memcmp(root, b.merkle_root, 32) != 0) {
            code = die(1, "verify: FAILED at height %llu: merkle_root does not match the stored "
                          "leaf hashes of seq %llu..%llu",
                       (unsigned long long)height, (unsigned long long)b.first_seq,
                       (unsigned long long)(b.first_seq + count - 1));
            goto out;
        }
        t1 = now_s();
        vr = eg_block_verify(&b, k);
        t_sig += now_s() - t1;
        if (vr == EG_E_CONFLICT) {
            code = die(1, "verify: FAILED at height %llu: hash does not match the header fields",
                       (unsigned long long)height);
            goto out;
        }
        if (vr != EG_OK) {
            code = die(1, "verify: FAILED at height %llu: signature does not verify with the "
                          "gateway key",
                       (unsigned long long)height);
            goto out;
        }
        memcpy(prev, b.hash, 32);
        want_height++;
        sealed += count;
        nblocks++;
    }
    if (brc != SQLITE_DONE) {
        code = die(1, "verify: cannot read blocks");
        goto out;
    }
    /* entries after the last block: the open block, contiguous and unassigned */
    while (erc == SQLITE_ROW) {
        if ((uint64_t)sqlite3_column_int64(es, 0) != want_seq) {
            code = die(1, "verify: FAILED at seq %llu: entry missing", (unsigned long long)want_seq);
            goto out;
        }
        if (sqlite3_column_type(es, 2) != SQLITE_NULL) {
            code = die(1, "verify: FAILED at seq %llu: assigned to block %lld, which does not "
                          "exist",
                       (unsigned long long)want_seq, (long long)sqlite3_column_int64(es, 2));
            goto out;
        }
        want_seq++;
        open++;
        erc = sqlite3_step(es);
    }
    if (headpath && (code = check_head(st, headpath, k, gid, nblocks)) != 0)
        goto out;
    {
        double t = now_s() - t0;
        printf("ok: %llu blocks verified (links, signatures, Merkle roots), %llu entries sealed, "
               "%llu in the open block\n",
               (unsigned long long)nblocks, (unsigned long long)sealed, (unsigned long long)open);
        printf("merkle: %llu leaf hashes read and hashed to roots in %.3f s (%.0f entries/s)\n",
               (unsigned long long)sealed, t_merkle, t_merkle > 0 ? (double)sealed / t_merkle : 0.0);
        printf("signatures: %llu block headers hashed and verified in %.3f s (%.0f blocks/s); "
               "chain check %.3f s in all\n",
               (unsigned long long)nblocks, t_sig, t_sig > 0 ? (double)nblocks / t_sig : 0.0, t);
    }
    if (v) {
        double t;
        t0 = now_s();
        if ((code = verify_entries(st, v, &readable)) != 0)
            goto out;
        t = now_s() - t0;
        printf("entries: %llu decrypted and re-hashed in %.3f s (%.0f entries/s); %llu "
               "unreadable (erased)\n",
               (unsigned long long)readable, t, t > 0 ? (double)readable / t : 0.0,
               (unsigned long long)(sealed + open - readable));
    }
out:
    sqlite3_finalize(bs);
    sqlite3_finalize(es);
    free(leaves);
    eg_key_free(k);
    eg_vault_free(v);
    eg_rng_free(rng);
    eg_store_close(st);
    return code;
}

static int cmd_verify_proof(struct ctl *c)
{
    const char *proof_path = NULL, *entry_path = NULL, *pubpath = NULL;
    char *ptext = NULL, *entry = NULL;
    size_t plen, elen;
    cJSON *proof = NULL, *item;
    struct eg_error e = {0};
    struct eg_key *k = NULL;
    struct eg_block b;
    uint8_t leaf[32], want_leaf[32], gid[32], path[64][32];
    uint64_t index;
    size_t depth = 0;
    const char *hex;
    int code = 0;

    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--pubkey") == 0 && i + 1 < c->argc)
            pubpath = c->argv[++i];
        else if (!proof_path)
            proof_path = c->argv[i];
        else if (!entry_path)
            entry_path = c->argv[i];
        else
            proof_path = NULL;
    }
    if (!proof_path || !entry_path || !pubpath)
        return die(2, "usage: ehrctl verify-proof PROOF.json ENTRY_FILE --pubkey GW.pub");
    if (eg_key_load_public(pubpath, &k, &e) != EG_OK)
        return die(2, "%s: %s", pubpath, e.detail);
    if (read_file(proof_path, &ptext, &plen) != 0) {
        code = die(2, "%s: cannot read: %s", proof_path, strerror(errno));
        goto out;
    }
    if (read_file(entry_path, &entry, &elen) != 0) {
        code = die(2, "%s: cannot read: %s", entry_path, strerror(errno));
        goto out;
    }
    /* entry bytes are compact JSON and never end in a newline: drop one */
    if (elen && entry[elen - 1] == '\n')
        elen--;
    if (egjson_parse((const uint8_t *)ptext, plen, &proof, &e) != EG_OK) {
        code = die(2, "%s: %s", proof_path, e.detail);
        goto out;
    }
    if (!egjson_str(proof, "status") || strcmp(egjson_str(proof, "status"), "ok") != 0) {
        code = die(2, "%s: not a proof with status \"ok\"", proof_path);
        goto out;
    }
    hex = egjson_str(proof, "leaf_hash");
    item = cJSON_GetObjectItemCaseSensitive(proof, "audit_path");
    if (!hex || eg_hex_decode(hex, want_leaf, 32) != 0 ||
        egjson_get_u53(cJSON_GetObjectItemCaseSensitive(proof, "leaf_index"), &index) != 0 ||
        !cJSON_IsArray(item) || cJSON_GetArraySize(item) > 64 ||
        eg_block_from_json(cJSON_GetObjectItemCaseSensitive(proof, "block"), &b, &e) != EG_OK) {
        code = die(2, "%s: malformed proof (%s)", proof_path,
                   e.detail[0] ? e.detail : "leaf_hash, leaf_index, audit_path or block");
        goto out;
    }
    {
        cJSON *h;
        cJSON_ArrayForEach(h, item)
        {
            if (!cJSON_IsString(h) || eg_hex_decode(h->valuestring, path[depth], 32) != 0) {
                code = die(2, "%s: audit_path: entries must be 64 hex characters", proof_path);
                goto out;
            }
            depth++;
        }
    }
    eg_merkle_leaf(entry, elen, leaf);
    if (memcmp(leaf, want_leaf, 32) != 0) {
        code = die(1, "verify-proof: FAILED: the entry bytes do not hash to the proof's leaf_hash");
        goto out;
    }
    {
        /* the entry must say it is the entry at that place: its own seq and
         * entry_id, not just a hash that happens to be in the block */
        cJSON *ej = NULL;
        struct eg_error pe = {0};
        uint64_t eseq;
        const char *eid, *pid = egjson_str(proof, "entry_id");
        if (egjson_parse((const uint8_t *)entry, elen, &ej, &pe) != EG_OK ||
            egjson_get_u53(cJSON_GetObjectItemCaseSensitive(ej, "seq"), &eseq) != 0 ||
            !(eid = egjson_str(ej, "entry_id"))) {
            cJSON_Delete(ej);
            code = die(1, "verify-proof: FAILED: ENTRY_FILE is not an entry (no seq/entry_id)");
            goto out;
        }
        if (eseq != b.first_seq + index || (pid && strcmp(pid, eid) != 0)) {
            code = die(1, "verify-proof: FAILED: the entry says seq %llu (%s) but the proof "
                          "places it at seq %llu",
                       (unsigned long long)eseq, eid, (unsigned long long)(b.first_seq + index));
            cJSON_Delete(ej); /* eid points into it */
            goto out;
        }
        cJSON_Delete(ej);
    }
    eg_key_fingerprint(k, gid);
    if (memcmp(gid, b.gateway_id, 32) != 0) {
        code = die(1, "verify-proof: FAILED: the block's gateway_id is not this key's");
        goto out;
    }
    if (eg_block_verify(&b, k) != EG_OK) {
        code = die(1, "verify-proof: FAILED: block %llu's hash or signature does not verify",
                   (unsigned long long)b.height);
        goto out;
    }
    if (eg_merkle_verify(leaf, (size_t)index, b.count, (const uint8_t(*)[32])path, depth,
                         b.merkle_root) != EG_OK) {
        code = die(1, "verify-proof: FAILED: the audit path does not lead to block %llu's "
                      "merkle_root",
                   (unsigned long long)b.height);
        goto out;
    }
    {
        char gidhex[65];
        eg_hex_encode(gid, 32, gidhex);
        printf("ok: entry %s is leaf %llu of block %llu (seq %llu..%llu), signed by gateway "
               "%.16s...\n",
               egjson_str(proof, "entry_id") ? egjson_str(proof, "entry_id") : "?",
               (unsigned long long)index, (unsigned long long)b.height,
               (unsigned long long)b.first_seq, (unsigned long long)(b.first_seq + b.count - 1),
               gidhex);
    }
out:
    cJSON_Delete(proof);
    free(ptext);
    free(entry);
    eg_key_free(k);
    return code;
}

/* ---- publish (SPEC §3 Signatures, Replies) ------------------------------------------ */

/*
 * `publish --topic TOPIC [--sign KEY] [--reply [--timeout S]] [FILE]`: one
 * MQTT v5 QoS 1 message to cfg.broker, optionally signed (`sig` user
 * property, as `sign` makes it). With --reply it first subscribes to a
 * topic of its own below the request family's replies topic, names it as
 * the Response Topic with random Correlation Data, and prints the payload
 * of the reply carrying that Correlation Data. Paho's callbacks only record
 * what happened under a mutex; this thread does the waiting.
 */
#define PUB_CORR_LEN 16

struct pub_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connected, conn_failed, subscribed, sub_failed, acked, ack_failed, lost;
    int reason; /* MQTT v5 reason code of a refusal */
    char why[200];
    const char *reply_topic;
    uint8_t corr[PUB_CORR_LEN];
    char *reply;
    size_t reply_len;
    int have_reply;
};

static void pub_note(struct pub_state *s, int *flag, int reason, const char *why)
{
    pthread_mutex_lock(&s->mu);
    *flag = 1;
    if (reason)
        s->reason = reason;
    if (why && !s->why[0])
        snprintf(s->why, sizeof s->why, "%s", why);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static const char *pub_failure_text(MQTTAsync_failureData5 *r)
{
    if (!r)
        return "failed";
    if (r->message)
        return r->message;
    if (r->reasonCode)
        return MQTTReasonCode_toString(r->reasonCode);
    return MQTTAsync_strerror(r->code);
}

static void pub_on_connected(void *ctx, MQTTAsync_successData5 *r)
{
    struct pub_state *s = ctx;
    (void)r;
    pub_note(s, &s->connected, 0, NULL);
}

static void pub_on_connect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
    struct pub_state *s = ctx;
    pub_note(s, &s->conn_failed, r ? (int)r->reasonCode : 0, pub_failure_text(r));
}

static void pub_on_subscribed(void *ctx, MQTTAsync_successData5 *r)
{
    struct pub_state *s = ctx;
    if (r && r->reasonCode >= 0x80)
        pub_note(s, &s->sub_failed, (int)r->reasonCode, MQTTReasonCode_toString(r->reasonCode));
    else
        pub_note(s, &s->subscribed, 0, NULL);
}

static void pub_on_subscribe_failed(void *ctx, MQTTAsync_failureData5 *r)
{
    struct pub_state *s = ctx;
    pub_note(s, &s->sub_failed, r ? (int)r->reasonCode : 0, pub_failure_text(r));
}

static void pub_on_sent(void *ctx, MQTTAsync_successData5 *r)
{
    struct pub_state *s = ctx;
    /* a PUBACK reason code >= 0x80 (e.g. 0x87 not authorized) is a refusal */
    if (r && r->reasonCode >= 0x80)
        pub_note(s, &s->ack_failed, (int)r->reasonCode, MQTTReasonCode_toString(r->reasonCode));
    else
        pub_note(s, &s->acked, 0, NULL);
}

static void pub_on_send_failed(void *ctx, MQTTAsync_failureData5 *r)
{
    struct pub_state *s = ctx;
    pub_note(s, &s->ack_failed, r ? (int)r->reasonCode : 0, pub_failure_text(r));
}

static void pub_on_lost(void *ctx, char *cause)
{
    struct pub_state *s = ctx;
    pub_note(s, &s->lost, 0, cause ? cause : "connection lost");
}

/* Keeps the first message on the reply topic whose Correlation Data is ours. */
static int pub_on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
    struct pub_state *s = ctx;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    int ours = 0;

    if (tl == strlen(s->reply_topic) && memcmp(topic, s->reply_topic, tl) == 0) {
        for (int i = 0; i < msg->properties.count; i++) {
            MQTTProperty *p = &msg->properties.array[i];
            if (p->identifier == MQTTPROPERTY_CODE_CORRELATION_DATA &&
                p->value.data.len == PUB_CORR_LEN &&
                memcmp(p->value.data.data, s->corr, PUB_CORR_LEN) == 0)
                ours = 1;
        }
    }
    pthread_mutex_lock(&s->mu);
    if (ours && !s->have_reply) {
        size_t n = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
        s->reply = malloc(n + 1);
        if (s->reply) {
            if (n)
                memcpy(s->reply, msg->payload, n);
            s->reply[n] = '\0';
            s->reply_len = n;
        }
        s->have_reply = 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    return 1;
}

/* Waits until *a or *b or the connection is lost, or until deadline
 * (monotonic ms). Returns 1 if something happened, 0 on timeout. */
static int pub_wait(struct pub_state *s, const int *a, const int *b, int64_t deadline)
{
    int done;
    pthread_mutex_lock(&s->mu);
    while (!(done = *a || *b || s->lost)) {
        int64_t left = deadline - eg_mono_ms();
        struct timespec ts;
        if (left <= 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* The replies topic of a request family: ".../request" and ".../consent"
 * are answered on the sibling ".../replies" (SPEC §3 topic table). */
static int pub_replies_topic(const char *topic, char *out, size_t size)
{
    const char *slash = strrchr(topic, '/');
    if (!slash || slash == topic ||
        (strcmp(slash + 1, "request") != 0 && strcmp(slash + 1, "consent") != 0))
        return -1;
    snprintf(out, size, "%.*s/replies", (int)(slash - topic), topic);
    return 0;
}

static int pub_add_prop(MQTTProperties *props, int id, const char *name, const void *data,
                        size_t len)
{
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = id;
    if (id == MQTTPROPERTY_CODE_USER_PROPERTY) {
        p.value.data.data = (char *)name;
        p.value.data.len = (int)strlen(name);
        p.value.value.data = (char *)data;
        p.value.value.len = (int)len;
    } else {
        p.value.data.data = (char *)data;
        p.value.data.len = (int)len;
    }
    return MQTTProperties_add(props, &p); /* copies the data */
}

static int cmd_publish(struct ctl *c)
{
    const char *topic = NULL, *keypath = NULL, *file = NULL, *url = c->cfg.broker;
    int want_reply = 0, stamp = 0, code = 0, have_client = 0, state_init = 0;
    double timeout_s = 10;
    char sig[EG_SIG_B64_MAX], replies[1024], reply_topic[1100], client_id[64], *data = NULL;
    uint8_t rnd[8];
    size_t len = 0;
    struct eg_rng *rng = NULL;
    struct pub_state s;
    MQTTAsync client = NULL;
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    pthread_condattr_t ca;
    int64_t deadline;
    int rc;

    memset(&s, 0, sizeof s);
    sig[0] = '\0';
    for (int i = 1; i < c->argc; i++) {
        const char *a = c->argv[i];
        if (strcmp(a, "--topic") == 0 && i + 1 < c->argc) {
            topic = c->argv[++i];
        } else if (strcmp(a, "--sign") == 0 && i + 1 < c->argc) {
            keypath = c->argv[++i];
        } else if (strcmp(a, "--reply") == 0) {
            want_reply = 1;
        } else if (strcmp(a, "--stamp") == 0) {
            stamp = 1;
        } else if (strcmp(a, "--timeout") == 0 && i + 1 < c->argc) {
            char *end;
            const char *v = c->argv[++i];
            timeout_s = strtod(v, &end);
            if (end == v || *end || !(timeout_s > 0 && timeout_s <= 86400))
                return die(2, "publish: --timeout \"%s\" must be seconds in (0, 86400]", v);
        } else if (a[0] == '-' && a[1] == '-') {
            return die(2, "publish: unknown option \"%s\" (or it needs a value)", a);
        } else if (!file) {
            file = a;
        } else {
            return die(2, "publish: unexpected argument \"%s\"", a);
        }
    }
    if (!topic)
        return die(2, "usage: ehrctl publish --topic TOPIC [--sign KEY] [--stamp] [--broker URL] "
                      "[--reply [--timeout S]] [FILE]");
    if (!topic[0] || strpbrk(topic, "+#") || strlen(topic) > 65535)
        return die(2, "publish: --topic \"%s\" must be a topic name without wildcards", topic);
    if (want_reply && pub_replies_topic(topic, replies, sizeof replies) != 0)
        return die(2,
                   "publish: --reply needs a request topic (\".../request\" or "
                   "\".../consent\"); \"%s\" has no replies topic",
                   topic);
    if (!url || !url[0])
        return die(2, "publish: no broker (--broker URL or broker in the config)");
    if (file && strcmp(file, "-") == 0)
        file = NULL;
    if (read_file(file, &data, &len) != 0)
        return die(2, "%s: cannot read: %s", file ? file : "stdin", strerror(errno));
    if (stamp) {
        /* a fresh nonce (ms since the epoch) and issued (now), so a signed
         * request can be sent without editing the file each time */
        cJSON *o = cJSON_ParseWithLength(data, len);
        char when[EG_TIME_STRLEN], *text;
        int64_t now = eg_now_ms();
        eg_time_format(now, when);
        cJSON_DeleteItemFromObjectCaseSensitive(o, "nonce");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "issued");
        if (!cJSON_IsObject(o) ||
            egjson_add_taken(o, "nonce", egjson_create_u64((uint64_t)now)) != 0 ||
            !cJSON_AddStringToObject(o, "issued", when) || !(text = egjson_print(o, &len))) {
            cJSON_Delete(o);
            code = die(2, "publish: --stamp needs a JSON object in %s", file ? file : "stdin");
            goto out;
        }
        cJSON_Delete(o);
        free(data);
        data = text;
    }
    if (eg_rng_new(&rng) != EG_OK) {
        code = die(2, "cannot seed the random generator");
        goto out;
    }

    /* the signature (SPEC §3), exactly as `ehrctl sign` makes it */
    if (keypath) {
        struct eg_key *k = NULL;
        struct eg_error e = {0};
        if (eg_key_load_private(keypath, &k, &e) != EG_OK) {
            code = die(2, "%s: %s", keypath, e.detail);
            goto out;
        }
        rc = eg_key_sign_topic(k, rng, topic, data, len, sig, sizeof sig) != EG_OK;
        eg_key_free(k);
        if (rc) {
            code = die(2, "%s: signing failed", keypath);
            goto out;
        }
    }

    if (eg_rng_bytes(rng, rnd, sizeof rnd) != EG_OK ||
        eg_rng_bytes(rng, s.corr, sizeof s.corr) != EG_OK) {
        code = die(2, "random generator failed");
        goto out;
    }
    snprintf(client_id, sizeof client_id, "ehrctl-%ld-%02x%02x%02x%02x", (long)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    snprintf(reply_topic, sizeof reply_topic, "%s/ehrctl-%ld-%02x%02x%02x%02x", replies,
             (long)getpid(), rnd[4], rnd[5], rnd[6], rnd[7]);
    s.reply_topic = reply_topic;

    if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&s.mu, NULL) != 0 || pthread_cond_init(&s.cv, &ca) != 0) {
        code = die(2, "cannot initialise a mutex");
        goto out;
    }
    pthread_condattr_destroy(&ca);
    state_init = 1;

    rc = MQTTAsync_createWithOptions(&client, url, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                     &cro);
    if (rc != MQTTASYNC_SUCCESS) {
        code = die(2, "--broker \"%s\": not a usable broker URL (%s)", url, MQTTAsync_strerror(rc));
        goto out;
    }
    have_client = 1;
    MQTTAsync_setCallbacks(client, &s, pub_on_lost, pub_on_message, NULL);
    co.keepAliveInterval = 30;
    co.cleanstart = 1;
    co.connectTimeout = timeout_s < 10 ? (int)timeout_s + 1 : 10;
    co.onSuccess5 = pub_on_connected;
    co.onFailure5 = pub_on_connect_failed;
    co.context = &s;
    if (strncmp(url, "mqtts://", 8) == 0) {
        ssl.trustStore = c->cfg.cafile;
        ssl.keyStore = c->cfg.cert;
        ssl.privateKey = c->cfg.keyfile;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        co.ssl = &ssl;
    }
    if ((rc = MQTTAsync_connect(client, &co)) != MQTTASYNC_SUCCESS) {
        code = die(2, "cannot connect to %s: %s", url, MQTTAsync_strerror(rc));
        goto out;
    }
    if (!pub_wait(&s, &s.connected, &s.conn_failed,
                  eg_mono_ms() + co.connectTimeout * 1000 + 2000) ||
        !s.connected) {
        code = die(2, "cannot connect to %s: %s", url, s.why[0] ? s.why : "timed out");
        goto out;
    }

    if (want_reply) {
        ro.onSuccess5 = pub_on_subscribed;
        ro.onFailure5 = pub_on_subscribe_failed;
        ro.context = &s;
        if (MQTTAsync_subscribe(client, reply_topic, 1, &ro) != MQTTASYNC_SUCCESS ||
            !pub_wait(&s, &s.subscribed, &s.sub_failed, eg_mono_ms() + 10000) || !s.subscribed) {
            code =
                die(2, "cannot subscribe to %s: %s", reply_topic, s.why[0] ? s.why : "no SUBACK");
            goto out;
        }
    }

    msg.payload = data;
    msg.payloadlen = (int)len;
    msg.qos = 1;
    msg.retained = 0;
    if ((sig[0] && pub_add_prop(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, "sig", sig,
                                strlen(sig)) != 0) ||
        (want_reply && (pub_add_prop(&msg.properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC, NULL,
                                     reply_topic, strlen(reply_topic)) != 0 ||
                        pub_add_prop(&msg.properties, MQTTPROPERTY_CODE_CORRELATION_DATA, NULL,
                                     s.corr, sizeof s.corr) != 0))) {
        MQTTProperties_free(&msg.properties);
        code = die(2, "cannot build the message properties");
        goto out;
    }
    so.onSuccess5 = pub_on_sent;
    so.onFailure5 = pub_on_send_failed;
    so.context = &s;
    deadline = eg_mono_ms() + (int64_t)(timeout_s * 1000);
    rc = MQTTAsync_sendMessage(client, topic, &msg, &so);
    MQTTProperties_free(&msg.properties);
    if (rc != MQTTASYNC_SUCCESS) {
        code = die(2, "cannot publish on %s: %s", topic, MQTTAsync_strerror(rc));
        goto out;
    }

    if (!pub_wait(&s, &s.acked, &s.ack_failed, deadline)) {
        code = die(1, "no PUBACK for %s within %g s", topic, timeout_s);
        goto out;
    }
    if (s.ack_failed || s.lost) {
        code = die(2, "broker refused the message on %s: %s%s", topic, s.why[0] ? s.why : "failed",
                   s.lost ? " (connection lost)" : "");
        goto out;
    }
    if (want_reply) {
        if (!pub_wait(&s, &s.have_reply, &s.ack_failed, deadline)) {
            code = die(1, "no reply on %s within %g s", reply_topic, timeout_s);
            goto out;
        }
        if (!s.have_reply) {
            code = die(2, "connection to %s lost while waiting for the reply", url);
            goto out;
        }
        if (!s.reply) {
            code = die(2, "out of memory");
            goto out;
        }
        fwrite(s.reply, 1, s.reply_len, stdout);
        if (s.reply_len == 0 || s.reply[s.reply_len - 1] != '\n')
            fputc('\n', stdout);
        if (fflush(stdout) != 0)
            code = die(2, "cannot write the reply: %s", strerror(errno));
    }
out:
    if (have_client) {
        if (MQTTAsync_isConnected(client)) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
            int64_t until = eg_mono_ms() + 2000;
            d.timeout = 1000;
            if (MQTTAsync_disconnect(client, &d) == MQTTASYNC_SUCCESS)
                while (MQTTAsync_isConnected(client) && eg_mono_ms() < until)
                    usleep(10000);
        }
        MQTTAsync_destroy(&client);
    }
    if (state_init) {
        pthread_cond_destroy(&s.cv);
        pthread_mutex_destroy(&s.mu);
    }
    free(s.reply);
    free(data);
    eg_rng_free(rng);
    return code;
}

int main(int argc, char **argv)
{
    struct ctl c;
    struct eg_error e = {0};
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0, code = 2;

    if (!rest || eg_config_init(&c.cfg) != EG_OK)
        return die(1, "out of memory");
    /* unset means "the path recorded in the database" for ehrctl */
    free(c.cfg.master_key);
    c.cfg.master_key = NULL;
    eg_log_set_level(EG_LOG_WARN);
    if (eg_config_parse_args(&c.cfg, EG_CFG_CTL, argc, argv, rest, &nrest, &e) != EG_OK) {
        code = die(2, "%s", e.detail);
        goto out;
    }
    c.argc = nrest;
    c.argv = rest;
    if (nrest == 0) {
        usage(stderr);
        goto out;
    }
    if (strcmp(rest[0], "-h") == 0 || strcmp(rest[0], "--help") == 0 ||
        strcmp(rest[0], "help") == 0) {
        usage(stdout);
        code = 0;
    } else if (strcmp(rest[0], "--version") == 0) {
        printf("ehrctl %s\n", eg_version());
        code = 0;
    } else if (strcmp(rest[0], "keygen") == 0) {
        code = cmd_keygen(&c);
    } else if (strcmp(rest[0], "sign") == 0) {
        code = cmd_sign(&c);
    } else if (strcmp(rest[0], "publish") == 0) {
        code = cmd_publish(&c);
    } else if (strcmp(rest[0], "register") == 0) {
        code = cmd_register(&c);
    } else if (strcmp(rest[0], "quarantine") == 0) {
        code = cmd_quarantine(&c);
    } else if (strcmp(rest[0], "export") == 0) {
        code = cmd_export(&c);
    } else if (strcmp(rest[0], "verify") == 0) {
        code = cmd_verify(&c);
    } else if (strcmp(rest[0], "verify-proof") == 0) {
        code = cmd_verify_proof(&c);
    } else if (strcmp(rest[0], "acl") == 0) {
        code = cmd_acl(&c);
    } else if (strcmp(rest[0], "config-example") == 0) {
        eg_config_write_example(stdout);
        code = 0;
    } else {
        code = die(2, "unknown command \"%s\" (see ehrctl --help)", rest[0]);
    }
out:
    eg_config_free(&c.cfg);
    free(rest);
    return code;
}

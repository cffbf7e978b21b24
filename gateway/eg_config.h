/*
 * eg_config.h — the one option table shared by ehrgate and ehrctl.
 *
 * Every option has a name, type, default, bounds and one line of help
 * (STYLE §7). The config file (`key = value`, `#` comments), the command
 * line flags (`--key value`, `--key=value`; '_' and '-' are the same),
 * `--help` and config/ehrgate.conf.example all come from the same table.
 * Precedence: defaults < config file (-c) < flags.
 */
#ifndef EG_CONFIG_H
#define EG_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "eg_err.h"

#define EG_CFG_LIST_MAX 32

struct eg_strlist {
    int n;
    char *v[EG_CFG_LIST_MAX];
};

struct eg_config {
    /* connection */
    char *broker;
    char *cafile;
    char *cert;
    char *keyfile;
    char *client_id;
    int64_t session_expiry_s;
    /* storage and keys */
    char *db;
    char *key;
    char *master_key;
    /* identity and topics */
    char *name;
    char *topic_prefix;
    struct eg_strlist grantee;
    struct eg_strlist admin_pubkey;
    /* blocks */
    int64_t block_max_entries;
    int64_t block_interval_ms;
    /* intake */
    int64_t max_payload_bytes;
    int64_t queue_max_msgs;
    int64_t queue_max_bytes;
    int64_t batch_max;
    int64_t outbox_inflight;
    int64_t receipt_max_bytes;
    int64_t reply_max_bytes;
    int64_t source_rate, source_burst;
    int64_t db_max_bytes;
    char *config_path; /* the last -c FILE, for SIGHUP (not an option) */
    /* quarantine */
    int64_t quarantine_quota;
    int64_t quarantine_retention_days;
    int64_t quarantine_max_bytes;
    /* misc */
    int64_t stats_interval_s;
    char *erase_mode;
    char *log_level;
};

/* Which program an option applies to. */
enum { EG_CFG_GATEWAY = 1, EG_CFG_CTL = 2, EG_CFG_BOTH = 3 };

/* Fills cfg with the defaults of the table (strings are malloc'ed). */
eg_err eg_config_init(struct eg_config *cfg);
/* Frees what the config owns; the struct itself is the caller's. */
void eg_config_free(struct eg_config *cfg);

/* Sets one option by name ("block_max_entries" or "block-max-entries") from
 * text, checking type and bounds. List options append. EG_E_USAGE with a
 * detail naming the option on a bad name or value. */
eg_err eg_config_set(struct eg_config *cfg, const char *name, const char *value,
                     struct eg_error *e);

/* Reads a `key = value` file. Errors name the file and line. */
eg_err eg_config_load_file(struct eg_config *cfg, const char *path, struct eg_error *e);

/*
 * Command line: first loads `-c FILE` / `--config FILE` if present, then
 * applies every `--option value` / `--option=value` of the table that is in
 * scope. Arguments that are not table options are moved, in order, to
 * rest[0..*nrest) (rest must hold argc entries); "--" ends option parsing.
 * `--help`/`-h` are left in rest for the caller.
 */
eg_err eg_config_parse_args(struct eg_config *cfg, int scope, int argc, char **argv, char **rest,
                            int *nrest, struct eg_error *e);

/* True if name (without leading dashes) is a table option in scope. */
int eg_config_is_option(const char *name, int scope);

/* Prints the option list for --help. */
void eg_config_print_help(FILE *out, int scope);
/* Writes an example config file with every default shown. */
void eg_config_write_example(FILE *out);

/* Checks cross-option rules (erase_mode values, TLS files for mqtts://,
 * ids). EG_E_USAGE with detail. */
eg_err eg_config_validate(const struct eg_config *cfg, struct eg_error *e);

#endif

/*
 * test_config.c — gateway/eg_config: the one option table (STYLE §7).
 *
 * Defaults, setting by name ('-' or '_'), integer bounds and non-integers,
 * enum choices, list options and their cap, the `key = value` file reader
 * (comments, blank lines, spaces, CRLF, errors naming file:line), the flag
 * parser (file < flags, --opt=value, "--", rest[] order, scope), the
 * cross-option checks, and the example file read back to the same values.
 * Files are written into a mkdtemp() directory removed at the end.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eg_config.h"
#include "eg_testutil.h"

static char tmpdir[64];

/* ---- helpers ---------------------------------------------------------- */

/* Writes text to tmpdir/name; returns the path in a static-free buffer. */
static void write_file(const char *name, const char *text, char *path, size_t size)
{
    FILE *f;

    snprintf(path, size, "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* Sets name=value and expects EG_E_USAGE with a detail naming want. */
static void expect_refused(struct eg_config *cfg, const char *name, const char *value,
                           const char *want, unsigned line)
{
    struct eg_error e = {0};
    eg_err rc = eg_config_set(cfg, name, value, &e);

    check_at(line, rc == EG_E_USAGE, "%s = \"%s\": rc %d, want EG_E_USAGE", name, value, rc);
    check_at(line, contains(e.detail, want), "%s = \"%s\": detail \"%s\" does not name \"%s\"",
             name, value, e.detail, want);
}
#define REFUSED(cfg, name, value, want) expect_refused((cfg), (name), (value), (want), __LINE__)

/* ---- tests ------------------------------------------------------------ */

static void test_defaults(void)
{
    struct eg_config c;

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.broker, "mqtt://127.0.0.1:1883");
    CU_ASSERT_PTR_NULL(c.cafile);
    CU_ASSERT_PTR_NULL(c.cert);
    CU_ASSERT_PTR_NULL(c.keyfile);
    CU_ASSERT_PTR_NULL(c.client_id);
    CU_ASSERT_EQUAL(c.session_expiry_s, 86400);
    CU_ASSERT_STRING_EQUAL(c.db, "ehrgate.db");
    CU_ASSERT_STRING_EQUAL(c.key, "gateway.key");
    CU_ASSERT_STRING_EQUAL(c.master_key, "master.key");
    CU_ASSERT_STRING_EQUAL(c.name, "gw1");
    CU_ASSERT_STRING_EQUAL(c.topic_prefix, "ehr");
    CU_ASSERT_EQUAL(c.grantee.n, 0);
    CU_ASSERT_EQUAL(c.admin_pubkey.n, 0);
    CU_ASSERT_EQUAL(c.block_max_entries, 1024);
    CU_ASSERT_EQUAL(c.block_interval_ms, 1000);
    CU_ASSERT_EQUAL(c.max_payload_bytes, 262144);
    CU_ASSERT_EQUAL(c.queue_max_msgs, 8192);
    CU_ASSERT_EQUAL(c.queue_max_bytes, 67108864);
    CU_ASSERT_EQUAL(c.batch_max, 512);
    CU_ASSERT_EQUAL(c.outbox_inflight, 512);
    CU_ASSERT_EQUAL(c.quarantine_quota, 10000);
    CU_ASSERT_EQUAL(c.quarantine_retention_days, 30);
    CU_ASSERT_EQUAL(c.stats_interval_s, 10);
    CU_ASSERT_STRING_EQUAL(c.erase_mode, "patient");
    CU_ASSERT_STRING_EQUAL(c.log_level, "info");
    {
        struct eg_error e = {0};
        CU_ASSERT_EQUAL(eg_config_validate(&c, &e), EG_OK);
    }
    eg_config_free(&c);
    /* freeing twice is harmless: the struct is left empty */
    eg_config_free(&c);
    eg_config_free(NULL);
}

static void test_set_by_name(void)
{
    struct eg_config c;
    struct eg_error e = {0};

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&c, "block_max_entries", "7", &e), EG_OK);
    CU_ASSERT_EQUAL(c.block_max_entries, 7);
    CU_ASSERT_EQUAL(eg_config_set(&c, "block-max-entries", "9", &e), EG_OK);
    CU_ASSERT_EQUAL(c.block_max_entries, 9);
    CU_ASSERT_EQUAL(eg_config_set(&c, "topic-prefix", "clinic", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.topic_prefix, "clinic");
    CU_ASSERT_EQUAL(eg_config_set(&c, "master_key", "/tmp/mk", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.master_key, "/tmp/mk");
    CU_ASSERT_EQUAL(eg_config_set(&c, "cafile", "/etc/ca.pem", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.cafile, "/etc/ca.pem");
    /* replacing a string frees the old one (checked by the ASan build) */
    CU_ASSERT_EQUAL(eg_config_set(&c, "cafile", "/etc/ca2.pem", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.cafile, "/etc/ca2.pem");

    /* unknown names, also near misses */
    REFUSED(&c, "no_such_option", "1", "no_such_option");
    REFUSED(&c, "Block_max_entries", "1", "Block_max_entries");
    REFUSED(&c, "block_max_entrie", "1", "block_max_entrie");
    REFUSED(&c, "block_max_entriess", "1", "block_max_entriess");
    REFUSED(&c, "", "1", "unknown option");

    CU_ASSERT_TRUE(eg_config_is_option("block-max-entries", EG_CFG_CTL));
    CU_ASSERT_TRUE(eg_config_is_option("client_id", EG_CFG_GATEWAY));
    CU_ASSERT_FALSE(eg_config_is_option("client-id", EG_CFG_CTL));
    CU_ASSERT_FALSE(eg_config_is_option("queue_max_msgs", EG_CFG_CTL));
    CU_ASSERT_FALSE(eg_config_is_option("nonsense", EG_CFG_BOTH));
    CU_ASSERT_FALSE(eg_config_is_option("config", EG_CFG_BOTH));
    eg_config_free(&c);
}

static void test_int_bounds(void)
{
    struct eg_config c;
    struct eg_error e = {0};

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    /* block_max_entries 1..1048576 */
    CU_ASSERT_EQUAL(eg_config_set(&c, "block_max_entries", "1", &e), EG_OK);
    CU_ASSERT_EQUAL(c.block_max_entries, 1);
    CU_ASSERT_EQUAL(eg_config_set(&c, "block_max_entries", "1048576", &e), EG_OK);
    CU_ASSERT_EQUAL(c.block_max_entries, 1048576);
    REFUSED(&c, "block_max_entries", "0", "block_max_entries");
    REFUSED(&c, "block_max_entries", "1048577", "block_max_entries");
    REFUSED(&c, "block_max_entries", "-1", "block_max_entries");
    /* a refused value leaves the option as it was */
    CU_ASSERT_EQUAL(c.block_max_entries, 1048576);

    /* stats_interval_s 0..86400: 0 is allowed (never) */
    CU_ASSERT_EQUAL(eg_config_set(&c, "stats_interval_s", "0", &e), EG_OK);
    CU_ASSERT_EQUAL(c.stats_interval_s, 0);
    REFUSED(&c, "stats-interval-s", "86401", "stats_interval_s");

    /* 64-bit bounds */
    CU_ASSERT_EQUAL(eg_config_set(&c, "session_expiry_s", "4294967295", &e), EG_OK);
    CU_ASSERT_EQUAL(c.session_expiry_s, 4294967295LL);
    REFUSED(&c, "session_expiry_s", "4294967296", "session_expiry_s");
    CU_ASSERT_EQUAL(eg_config_set(&c, "queue_max_bytes", "4294967296", &e), EG_OK);
    CU_ASSERT_EQUAL(c.queue_max_bytes, 4294967296LL);
    REFUSED(&c, "queue_max_bytes", "1048575", "queue_max_bytes");
    REFUSED(&c, "max_payload_bytes", "255", "max_payload_bytes");

    /* not integers: the detail names the option and says why */
    REFUSED(&c, "batch_max", "", "batch_max");
    REFUSED(&c, "batch_max", "12x", "batch_max");
    REFUSED(&c, "batch_max", "1.5", "batch_max");
    REFUSED(&c, "batch_max", "1e3", "batch_max");
    REFUSED(&c, "batch_max", "abc", "batch_max");
    REFUSED(&c, "batch_max", "0x10", "batch_max");
    REFUSED(&c, "batch_max", "10 ", "batch_max");
    REFUSED(&c, "batch_max", "99999999999999999999", "batch_max");
    REFUSED(&c, "batch_max", "abc", "not an integer");
    CU_ASSERT_EQUAL(c.batch_max, 512);
    eg_config_free(&c);
}

static void test_enum_choices(void)
{
    struct eg_config c;
    struct eg_error e = {0};

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&c, "erase_mode", "admin", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.erase_mode, "admin");
    CU_ASSERT_EQUAL(eg_config_set(&c, "erase-mode", "patient", &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.erase_mode, "patient");
    REFUSED(&c, "erase_mode", "Admin", "erase_mode");
    REFUSED(&c, "erase_mode", "", "erase_mode");
    REFUSED(&c, "erase_mode", "adm", "erase_mode");
    REFUSED(&c, "erase_mode", "patientx", "erase_mode");
    REFUSED(&c, "erase_mode", "patient|admin", "erase_mode");
    REFUSED(&c, "erase_mode", "nobody", "patient|admin");
    CU_ASSERT_STRING_EQUAL(c.erase_mode, "patient");

    for (const char *const *l = (const char *const[]){"error", "warn", "info", "debug", NULL}; *l;
         l++) {
        CHECKF(eg_config_set(&c, "log_level", *l, &e) == EG_OK, "log_level %s refused", *l);
        CHECKF(strcmp(c.log_level, *l) == 0, "log_level is %s, want %s", c.log_level, *l);
    }
    REFUSED(&c, "log_level", "verbose", "log_level");
    REFUSED(&c, "log_level", "verbose", "error|warn|info|debug");
    REFUSED(&c, "log_level", "war", "log_level");
    eg_config_free(&c);
}

static void test_list_options(void)
{
    struct eg_config c;
    struct eg_error e = {0};
    char v[32];

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&c, "grantee", "authority:public-health", &e), EG_OK);
    CU_ASSERT_EQUAL(eg_config_set(&c, "grantee", "research:research", &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(c.grantee.n, 2);
    CU_ASSERT_STRING_EQUAL(c.grantee.v[0], "authority:public-health");
    CU_ASSERT_STRING_EQUAL(c.grantee.v[1], "research:research");
    CU_ASSERT_EQUAL(eg_config_set(&c, "admin-pubkey", "a.pub", &e), EG_OK);
    CU_ASSERT_EQUAL(c.admin_pubkey.n, 1);
    CU_ASSERT_EQUAL(c.grantee.n, 2);

    /* the cap: EG_CFG_LIST_MAX values, the next is refused naming the option */
    for (int i = c.admin_pubkey.n; i < EG_CFG_LIST_MAX; i++) {
        snprintf(v, sizeof v, "k%d.pub", i);
        CHECKF(eg_config_set(&c, "admin_pubkey", v, &e) == EG_OK, "admin_pubkey #%d refused", i);
    }
    CU_ASSERT_EQUAL(c.admin_pubkey.n, EG_CFG_LIST_MAX);
    REFUSED(&c, "admin_pubkey", "one-too-many.pub", "admin_pubkey");
    CU_ASSERT_EQUAL(c.admin_pubkey.n, EG_CFG_LIST_MAX);
    CU_ASSERT_STRING_EQUAL(c.admin_pubkey.v[0], "a.pub");
    CU_ASSERT_STRING_EQUAL(c.admin_pubkey.v[EG_CFG_LIST_MAX - 1], "k31.pub");
    eg_config_free(&c);
    CU_ASSERT_EQUAL(c.admin_pubkey.n, 0);
}

static void test_file_good(void)
{
    char path[256];
    struct eg_config c;
    struct eg_error e = {0};

    write_file("good.conf",
               "# a comment\n"
               "\n"
               "   # an indented comment\n"
               "name = filegw\n"
               "\t block_max_entries\t=\t 77  \n"
               "block-interval-ms=250\n"
               "db = /var/lib/ehrgate/x.db\r\n"
               "grantee = authority:public-health\n"
               "grantee = research:research\r\n"
               "   \t  \n"
               "\r\n"
               "erase_mode = admin", /* last line without a newline */
               path, sizeof path);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_load_file(&c, path, &e), EG_OK);
    CHECKF(e.detail[0] == '\0', "unexpected detail \"%s\"", e.detail);
    CU_ASSERT_STRING_EQUAL(c.name, "filegw");
    CU_ASSERT_EQUAL(c.block_max_entries, 77);
    CU_ASSERT_EQUAL(c.block_interval_ms, 250);
    CU_ASSERT_STRING_EQUAL(c.db, "/var/lib/ehrgate/x.db");
    CU_ASSERT_EQUAL_FATAL(c.grantee.n, 2);
    CU_ASSERT_STRING_EQUAL(c.grantee.v[0], "authority:public-health");
    CU_ASSERT_STRING_EQUAL(c.grantee.v[1], "research:research");
    CU_ASSERT_STRING_EQUAL(c.erase_mode, "admin");
    /* untouched options keep their defaults */
    CU_ASSERT_EQUAL(c.batch_max, 512);
    CU_ASSERT_STRING_EQUAL(c.topic_prefix, "ehr");
    eg_config_free(&c);

    /* a value may itself contain '=' (only the first one splits) */
    write_file("eq.conf", "broker = mqtt://host:1883/?a=b\n", path, sizeof path);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_load_file(&c, path, &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(c.broker, "mqtt://host:1883/?a=b");
    eg_config_free(&c);

    /* an empty file is fine */
    write_file("empty.conf", "", path, sizeof path);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_load_file(&c, path, &e), EG_OK);
    eg_config_free(&c);
}

/* Loads text and expects EG_E_USAGE whose detail contains want1 and want2. */
static void expect_file_error(const char *text, const char *want2, unsigned line)
{
    char path[256], want1[300];
    struct eg_config c;
    struct eg_error e = {0};
    eg_err rc;

    write_file("bad.conf", text, path, sizeof path);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    rc = eg_config_load_file(&c, path, &e);
    check_at(line, rc == EG_E_USAGE, "rc %d, want EG_E_USAGE", rc);
    /* want2 carries the line number: "%s:N" is checked by the caller text */
    snprintf(want1, sizeof want1, "%s:", path);
    check_at(line, contains(e.detail, want1), "detail \"%s\" does not name the file", e.detail);
    check_at(line, contains(e.detail, want2), "detail \"%s\" lacks \"%s\"", e.detail, want2);
    eg_config_free(&c);
}

static void test_file_bad(void)
{
    char path[256];
    struct eg_config c;
    struct eg_error e = {0};

    expect_file_error("name = gw1\n# fine\njust a line\n", "bad.conf:3:", __LINE__);
    expect_file_error("name = gw1\n# fine\njust a line\n", "key = value", __LINE__);
    expect_file_error("\n\nbogus_key = 1\n", "bad.conf:3:", __LINE__);
    expect_file_error("\n\nbogus_key = 1\n", "bogus_key", __LINE__);
    expect_file_error("name = a\r\nblock_max_entries = zero\r\n", "bad.conf:2:", __LINE__);
    expect_file_error("name = a\r\nblock_max_entries = zero\r\n", "block_max_entries", __LINE__);
    expect_file_error("block_max_entries = 0\n", "bad.conf:1:", __LINE__);
    expect_file_error("erase_mode = sometimes\n", "erase_mode", __LINE__);
    expect_file_error("= value\n", "bad.conf:1:", __LINE__);

    /* a line longer than the reader's buffer is an error, not two lines */
    {
        size_t n = 5000;
        char *big = malloc(n + 16);
        CU_ASSERT_FATAL(big != NULL);
        memcpy(big, "name = ", 7);
        memset(big + 7, 'a', n);
        memcpy(big + 7 + n, "\n", 2);
        expect_file_error(big, "bad.conf:1:", __LINE__);
        free(big);
    }

    /* a missing file names the path */
    snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    CU_ASSERT_EQUAL(eg_config_load_file(&c, path, &e), EG_E_USAGE);
    CHECKF(contains(e.detail, path), "detail \"%s\" does not name the file", e.detail);
    eg_config_free(&c);
}

static void test_parse_args(void)
{
    char path[256], cflag[300];
    struct eg_config c;
    struct eg_error e = {0};
    char *rest[32];
    int nrest = -1;

    write_file("args.conf", "name = filegw\nblock_max_entries = 5\ndb = file.db\n", path,
               sizeof path);

    /* file < flags, whatever their order on the line */
    {
        char *argv[] = {"ehrctl", "--name",  "flaggw",  "register", "-c", path,
                        "--db",   "flag.db", "patient", "P1",       NULL};
        int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_CTL, argc, argv, rest, &nrest, &e), EG_OK);
        CU_ASSERT_STRING_EQUAL(c.name, "flaggw");
        CU_ASSERT_STRING_EQUAL(c.db, "flag.db");
        CU_ASSERT_EQUAL(c.block_max_entries, 5);
        CU_ASSERT_EQUAL_FATAL(nrest, 3);
        CU_ASSERT_STRING_EQUAL(rest[0], "register");
        CU_ASSERT_STRING_EQUAL(rest[1], "patient");
        CU_ASSERT_STRING_EQUAL(rest[2], "P1");
        eg_config_free(&c);
    }

    /* --opt=value, --config=FILE, "--" ends options, --help left for the caller */
    snprintf(cflag, sizeof cflag, "--config=%s", path);
    {
        char *argv[] = {"ehrgate", "--block-interval-ms=250",
                        cflag,     "a",
                        "--help",  "--name",
                        "x1",      "--",
                        "--name",  "x2",
                        "-c",      "nofile",
                        NULL};
        int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, argc, argv, rest, &nrest, &e),
                        EG_OK);
        CU_ASSERT_EQUAL(c.block_interval_ms, 250);
        CU_ASSERT_EQUAL(c.block_max_entries, 5); /* from the file */
        CU_ASSERT_STRING_EQUAL(c.name, "x1");
        CU_ASSERT_EQUAL_FATAL(nrest, 6);
        CU_ASSERT_STRING_EQUAL(rest[0], "a");
        CU_ASSERT_STRING_EQUAL(rest[1], "--help");
        CU_ASSERT_STRING_EQUAL(rest[2], "--name");
        CU_ASSERT_STRING_EQUAL(rest[3], "x2");
        CU_ASSERT_STRING_EQUAL(rest[4], "-c");
        CU_ASSERT_STRING_EQUAL(rest[5], "nofile");
        eg_config_free(&c);
    }

    /* repeatable flags append in order; --opt= sets an empty string */
    {
        char *argv[] = {"ehrgate", "--grantee", "a:b", "--grantee=c:d", "--client-id=", NULL};
        int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, argc, argv, rest, &nrest, &e),
                        EG_OK);
        CU_ASSERT_EQUAL_FATAL(c.grantee.n, 2);
        CU_ASSERT_STRING_EQUAL(c.grantee.v[0], "a:b");
        CU_ASSERT_STRING_EQUAL(c.grantee.v[1], "c:d");
        CU_ASSERT_PTR_NOT_NULL_FATAL(c.client_id);
        CU_ASSERT_STRING_EQUAL(c.client_id, "");
        CU_ASSERT_EQUAL(nrest, 0);
        eg_config_free(&c);
    }

    /* a list given as flags replaces the file's list (flags win); the file
     * alone keeps its own */
    {
        char lpath[256];
        char *argv[] = {"ehrgate", "-c", lpath, "--grantee", "c:d", "--grantee=e:f", NULL};
        int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
        write_file("list.conf", "grantee = a:b\ngrantee = x:y\n", lpath, sizeof lpath);
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, argc, argv, rest, &nrest, &e),
                        EG_OK);
        CU_ASSERT_EQUAL_FATAL(c.grantee.n, 2);
        CU_ASSERT_STRING_EQUAL(c.grantee.v[0], "c:d");
        CU_ASSERT_STRING_EQUAL(c.grantee.v[1], "e:f");
        eg_config_free(&c);
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 3, argv, rest, &nrest, &e), EG_OK);
        CU_ASSERT_EQUAL_FATAL(c.grantee.n, 2);
        CU_ASSERT_STRING_EQUAL(c.grantee.v[0], "a:b");
        CU_ASSERT_STRING_EQUAL(c.grantee.v[1], "x:y");
        eg_config_free(&c);
    }

    /* an option out of scope is not taken: it is left in rest */
    {
        char *argv[] = {"ehrctl", "--client-id", "cid", "--queue-max-msgs=20", NULL};
        int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_CTL, argc, argv, rest, &nrest, &e), EG_OK);
        CU_ASSERT_PTR_NULL(c.client_id);
        CU_ASSERT_EQUAL(c.queue_max_msgs, 8192);
        CU_ASSERT_EQUAL_FATAL(nrest, 3);
        CU_ASSERT_STRING_EQUAL(rest[0], "--client-id");
        CU_ASSERT_STRING_EQUAL(rest[1], "cid");
        CU_ASSERT_STRING_EQUAL(rest[2], "--queue-max-msgs=20");
        eg_config_free(&c);
    }

    /* errors: a flag without its value, a bad value, -c without a file, a bad file */
    {
        char *argv[] = {"ehrgate", "--name", NULL};
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 2, argv, rest, &nrest, &e),
                        EG_E_USAGE);
        CHECKF(contains(e.detail, "name"), "detail \"%s\"", e.detail);
        eg_config_free(&c);
    }
    {
        char *argv[] = {"ehrgate", "--block-max-entries", "lots", NULL};
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 3, argv, rest, &nrest, &e),
                        EG_E_USAGE);
        CHECKF(contains(e.detail, "block_max_entries"), "detail \"%s\"", e.detail);
        eg_config_free(&c);
    }
    {
        char *argv[] = {"ehrgate", "--batch-max=0", NULL};
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 2, argv, rest, &nrest, &e),
                        EG_E_USAGE);
        CHECKF(contains(e.detail, "batch_max"), "detail \"%s\"", e.detail);
        eg_config_free(&c);
    }
    {
        char *argv[] = {"ehrgate", "-c", NULL};
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 2, argv, rest, &nrest, &e),
                        EG_E_USAGE);
        CHECKF(contains(e.detail, "-c"), "detail \"%s\"", e.detail);
        eg_config_free(&c);
    }
    {
        char bad[256];
        char *argv[] = {"ehrgate", "--config", bad, NULL};
        write_file("bad-args.conf", "name = ok\nwhat is this\n", bad, sizeof bad);
        CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
        CU_ASSERT_EQUAL(eg_config_parse_args(&c, EG_CFG_GATEWAY, 3, argv, rest, &nrest, &e),
                        EG_E_USAGE);
        CHECKF(contains(e.detail, "bad-args.conf:2:"), "detail \"%s\"", e.detail);
        eg_config_free(&c);
    }
}

/* Validates after setting name=value (NULL value: leave as is). */
static eg_err validate_with(const char *name, const char *value, const char *name2,
                            const char *value2, struct eg_error *e)
{
    struct eg_config c;
    eg_err rc;

    memset(e, 0, sizeof *e);
    if (eg_config_init(&c) != EG_OK)
        return EG_E_NOMEM;
    if (name && eg_config_set(&c, name, value, e) != EG_OK) {
        eg_config_free(&c);
        return EG_E__COUNT;
    }
    if (name2 && eg_config_set(&c, name2, value2, e) != EG_OK) {
        eg_config_free(&c);
        return EG_E__COUNT;
    }
    rc = eg_config_validate(&c, e);
    eg_config_free(&c);
    return rc;
}

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

static void expect_valid(const char *n, const char *v, const char *n2, const char *v2,
                         unsigned line)
{
    struct eg_error e;
    eg_err rc = validate_with(n, v, n2, v2, &e);

    check_at(line, rc == EG_OK, "%s=%s %s=%s refused: %s", or_dash(n), or_dash(v), or_dash(n2),
             or_dash(v2), e.detail);
}

static void expect_invalid(const char *n, const char *v, const char *n2, const char *v2,
                           const char *want, unsigned line)
{
    struct eg_error e;
    eg_err rc = validate_with(n, v, n2, v2, &e);

    check_at(line, rc == EG_E_USAGE, "%s=%s %s=%s: rc %d, want EG_E_USAGE", or_dash(n), or_dash(v),
             or_dash(n2), or_dash(v2), rc);
    check_at(line, contains(e.detail, want), "detail \"%s\" lacks \"%s\"", e.detail, want);
}
#define VALID(n, v, n2, v2) expect_valid((n), (v), (n2), (v2), __LINE__)
#define INVALID(n, v, n2, v2, want) expect_invalid((n), (v), (n2), (v2), (want), __LINE__)

static void test_validate(void)
{
    char name64[65], name65[66];

    memset(name64, 'n', 64);
    name64[64] = '\0';
    memset(name65, 'n', 65);
    name65[65] = '\0';

    VALID(NULL, NULL, NULL, NULL);
    VALID("name", "gw-2.a_B", NULL, NULL);
    VALID("name", name64, NULL, NULL);
    INVALID("name", name65, NULL, NULL, "name");
    INVALID("name", "bad name", NULL, NULL, "name");
    INVALID("name", "gw/1", NULL, NULL, "name");
    INVALID("name", "gw+", NULL, NULL, "name");
    INVALID("name", "", NULL, NULL, "name");
    INVALID("topic_prefix", "ehr/x", NULL, NULL, "topic_prefix");
    INVALID("topic_prefix", "#", NULL, NULL, "topic_prefix");

    INVALID("broker", "tcp://127.0.0.1:1883", NULL, NULL, "broker");
    INVALID("broker", "127.0.0.1:1883", NULL, NULL, "broker");
    VALID("broker", "mqtt://broker.example:1883", NULL, NULL);
    INVALID("broker", "mqtts://broker.example:8883", NULL, NULL, "cafile");
    VALID("broker", "mqtts://broker.example:8883", "cafile", "/etc/ca.pem");

    INVALID("cert", "client.pem", NULL, NULL, "keyfile");
    INVALID("keyfile", "client.key", NULL, NULL, "cert");
    VALID("cert", "client.pem", "keyfile", "client.key");

    VALID("grantee", "authority:public-health", NULL, NULL);
    INVALID("grantee", "authority", NULL, NULL, "grantee");
    INVALID("grantee", "authority", NULL, NULL, "NAME:PURPOSE");
    INVALID("grantee", "authority:", NULL, NULL, "grantee");
    INVALID("grantee", ":public-health", NULL, NULL, "grantee");
    INVALID("grantee", "auth ority:public-health", NULL, NULL, "grantee");
    INVALID("grantee", "authority:public-health", "grantee", "bad", "\"bad\"");
}

/* Every field of two configs. */
static void check_same(const struct eg_config *a, const struct eg_config *b)
{
#define SAME_STR(f)                                                                                \
    CHECKF((a->f == NULL && b->f == NULL) || (a->f && b->f && strcmp(a->f, b->f) == 0),            \
           #f ": \"%s\" vs \"%s\"", a->f ? a->f : "(null)", b->f ? b->f : "(null)")
#define SAME_INT(f) CHECKF(a->f == b->f, #f ": %lld vs %lld", (long long)a->f, (long long)b->f)
    SAME_STR(broker);
    SAME_STR(cafile);
    SAME_STR(cert);
    SAME_STR(keyfile);
    SAME_STR(client_id);
    SAME_INT(session_expiry_s);
    SAME_STR(db);
    SAME_STR(key);
    SAME_STR(master_key);
    SAME_STR(name);
    SAME_STR(topic_prefix);
    SAME_INT(grantee.n);
    SAME_INT(admin_pubkey.n);
    SAME_INT(block_max_entries);
    SAME_INT(block_interval_ms);
    SAME_INT(max_payload_bytes);
    SAME_INT(queue_max_msgs);
    SAME_INT(queue_max_bytes);
    SAME_INT(batch_max);
    SAME_INT(outbox_inflight);
    SAME_INT(quarantine_quota);
    SAME_INT(quarantine_retention_days);
    SAME_INT(quarantine_max_bytes);
    SAME_INT(stats_interval_s);
    SAME_STR(erase_mode);
    SAME_STR(log_level);
#undef SAME_STR
#undef SAME_INT
}

static void test_example_reloads(void)
{
    static const char *const changes[][2] = {
        {"broker", "mqtt://elsewhere:1"},
        {"session_expiry_s", "5"},
        {"db", "other.db"},
        {"key", "other.key"},
        {"master_key", "other.master"},
        {"name", "other"},
        {"topic_prefix", "other"},
        {"block_max_entries", "3"},
        {"block_interval_ms", "33"},
        {"max_payload_bytes", "333"},
        {"queue_max_msgs", "33"},
        {"queue_max_bytes", "3333333"},
        {"batch_max", "3"},
        {"outbox_inflight", "3"},
        {"quarantine_quota", "3"},
        {"quarantine_retention_days", "3"},
        {"quarantine_max_bytes", "3333333"},
        {"stats_interval_s", "3"},
        {"erase_mode", "admin"},
        {"log_level", "debug"},
    };
    char path[256], line[512];
    struct eg_config def, c;
    struct eg_error e = {0};
    FILE *f;
    int settings = 0;

    snprintf(path, sizeof path, "%s/example.conf", tmpdir);
    f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    eg_config_write_example(f);
    fclose(f);

    CU_ASSERT_EQUAL_FATAL(eg_config_init(&def), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_config_init(&c), EG_OK);
    /* move every option with a default away from it, so the file must set it */
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
        CHECKF(eg_config_set(&c, changes[i][0], changes[i][1], &e) == EG_OK, "%s: %s",
               changes[i][0], e.detail);
    CU_ASSERT_EQUAL(eg_config_load_file(&c, path, &e), EG_OK);
    CHECKF(e.detail[0] == '\0', "example does not load: %s", e.detail);
    check_same(&def, &c);
    CU_ASSERT_EQUAL(eg_config_validate(&c, &e), EG_OK);

    /* every setting line names a table option, once; every option changed
     * above is among them (options without a default are commented out) */
    f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    {
        char seen[64][64];
        while (fgets(line, sizeof line, f)) {
            char *eq = strchr(line, '=');
            size_t kl;
            if (line[0] == '#' || !eq)
                continue;
            kl = (size_t)(eq - line);
            while (kl > 0 && line[kl - 1] == ' ')
                kl--;
            line[kl] = '\0';
            CHECKF(eg_config_is_option(line, EG_CFG_BOTH), "example sets unknown \"%s\"", line);
            for (int i = 0; i < settings && i < 64; i++)
                CHECKF(strcmp(seen[i], line) != 0, "example sets %s twice", line);
            if (settings < 64)
                snprintf(seen[settings], sizeof seen[settings], "%.63s", line);
            settings++;
        }
        for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
            int found = 0;
            for (int j = 0; j < settings && j < 64; j++)
                found |= strcmp(seen[j], changes[i][0]) == 0;
            CHECKF(found, "example does not set %s", changes[i][0]);
        }
    }
    fclose(f);
    eg_config_free(&def);
    eg_config_free(&c);
}

static void test_help_scope(void)
{
    char path[256], buf[8192];
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "%s/help.txt", tmpdir);
    f = fopen(path, "w+");
    CU_ASSERT_FATAL(f != NULL);
    eg_config_print_help(f, EG_CFG_CTL);
    rewind(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    CU_ASSERT_TRUE(contains(buf, "--block-max-entries N"));
    CU_ASSERT_TRUE(contains(buf, "--erase-mode patient|admin"));
    CU_ASSERT_TRUE(contains(buf, "(1..1048576)"));
    CU_ASSERT_FALSE(contains(buf, "--client-id"));
    CU_ASSERT_FALSE(contains(buf, "--queue-max-msgs"));
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_config_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("config", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "defaults", test_defaults) ||
        !CU_add_test(s, "set by name with - or _, unknown names", test_set_by_name) ||
        !CU_add_test(s, "integer bounds and non-integers", test_int_bounds) ||
        !CU_add_test(s, "enum choices", test_enum_choices) ||
        !CU_add_test(s, "list options append up to the cap", test_list_options) ||
        !CU_add_test(s, "config file: comments, blanks, spaces, CRLF", test_file_good) ||
        !CU_add_test(s, "config file errors name file:line", test_file_bad) ||
        !CU_add_test(s, "parse_args: precedence, forms, --, rest, scope", test_parse_args) ||
        !CU_add_test(s, "validate cross-option rules", test_validate) ||
        !CU_add_test(s, "example file reloads to the defaults", test_example_reloads) ||
        !CU_add_test(s, "help lists the options in scope", test_help_scope)) {
        CU_cleanup_registry();
        remove_tree(tmpdir);
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    remove_tree(tmpdir);
    return failures != 0;
}

/*
 * test_vault.c — gateway/eg_vault: the gateway's key files, their
 * fingerprints in the database, the keys derived from the master key and
 * the per-patient data keys.
 *
 * Keys are created only with a new database (SPEC §12); afterwards a
 * missing, different, malformed or group-readable key is EG_E_KEY naming the
 * file. The adoption case uses the fixture key tests/fixtures/keys/
 * p256_pkcs8.pem, whose fingerprint was computed with the openssl CLI
 * (p256.pub.sha256). Derived keys are recomputed here from the master key
 * file with HMAC-SHA-256 and the documented labels.
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eg_codec.h"
#include "eg_crypto.h"
#include "eg_key.h"
#include "eg_store.h"
#include "eg_vault.h"
#include "eg_testutil.h"

#define KEYS EG_FIXTURES "/keys/"

static char tmpdir[64];
static struct eg_rng *rng;

/* ---- helpers ---------------------------------------------------------- */

static void path_of(const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", tmpdir, name);
}

/* Writes len bytes to tmpdir/name with the given mode (replacing it). */
static void write_bytes(const char *name, const void *data, size_t len, mode_t mode, char *path,
                        size_t size)
{
    int fd;

    path_of(name, path, size);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, data, len) == (ssize_t)len);
    close(fd);
    CU_ASSERT_FATAL(chmod(path, mode) == 0); /* whatever the umask */
}

static size_t read_all(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    CU_ASSERT_FATAL(f != NULL);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

static struct eg_store *open_db(const char *name)
{
    char path[256];
    struct eg_store *st = NULL;
    struct eg_error e = {0};

    path_of(name, path, sizeof path);
    CHECKF(eg_store_open(path, EG_STORE_CREATE, &st, &e) == EG_OK, "open %s: %s", path, e.detail);
    CU_ASSERT_FATAL(st != NULL);
    return st;
}

static int file_mode(const char *path)
{
    struct stat sb;

    if (stat(path, &sb) != 0)
        return -1;
    return (int)(sb.st_mode & 07777);
}

/* Opens a gateway vault expecting rc; checks the detail names want. */
static struct eg_vault *open_gw(struct eg_store *st, const char *key, const char *mk, eg_err want,
                                const char *want_detail, unsigned line)
{
    struct eg_vault *v = (struct eg_vault *)&v;
    struct eg_error e = {0};
    eg_err rc = eg_vault_open_gateway(st, key, mk, rng, &v, &e);

    check_at(line, rc == want, "open_gateway(%s, %s): rc %d (%s), want %d", key, mk, rc, e.detail,
             want);
    if (want_detail)
        check_at(line, contains(e.detail, want_detail), "detail \"%s\" does not name \"%s\"",
                 e.detail, want_detail);
    if (rc != EG_OK) {
        check_at(line, v == NULL, "*out not NULL on error");
        return NULL;
    }
    return v;
}
#define OPEN_GW(st, key, mk, want, detail) open_gw((st), (key), (mk), (want), (detail), __LINE__)

/* The documented derivation: HMAC-SHA-256(master, label). */
static void derive(const char *mk_path, const char *label, uint8_t out[32])
{
    char hex[128];
    uint8_t master[32];

    read_all(mk_path, hex, sizeof hex);
    hex[64] = '\0';
    CU_ASSERT_FATAL(eg_hex_decode(hex, master, 32) == 0);
    eg_hmac_sha256(master, 32, label, strlen(label), out);
}

/* ---- tests ------------------------------------------------------------ */

static void test_create_on_new_db(void)
{
    char key[256], pub[256], mk[256], buf[4096], meta[4096];
    struct eg_store *st = open_db("new.db");
    struct eg_vault *v;
    struct eg_key *pk = NULL;
    struct eg_error e = {0};
    uint8_t fa[32], fb[32];
    char fhex[65];

    path_of("gw.key", key, sizeof key);
    path_of("gw.pub", pub, sizeof pub);
    path_of("master.key", mk, sizeof mk);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);

    /* both key files, mode 0600, and the public key beside the private one */
    CU_ASSERT_EQUAL(file_mode(key), 0600);
    CU_ASSERT_EQUAL(file_mode(mk), 0600);
    CU_ASSERT_NOT_EQUAL(file_mode(pub), -1);
    CU_ASSERT_EQUAL(read_all(mk, buf, sizeof buf), 65);
    CU_ASSERT_EQUAL(buf[64], '\n');
    buf[64] = '\0';
    for (int i = 0; i < 64; i++) {
        CU_ASSERT_TRUE((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f'));
    }
    CU_ASSERT_EQUAL(eg_key_load_public(pub, &pk, &e), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pk);
    CU_ASSERT_PTR_NOT_NULL_FATAL(eg_vault_signing_key(v));
    CU_ASSERT_EQUAL(eg_key_fingerprint(pk, fa), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(eg_vault_signing_key(v), fb), EG_OK);
    CU_ASSERT_EQUAL(memcmp(fa, fb, 32), 0);

    /* the database records the fingerprints, public key and paths */
    eg_hex_encode(fa, 32, fhex);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "gateway_key_fpr", meta, sizeof meta), 0);
    CU_ASSERT_STRING_EQUAL(meta, fhex);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "gateway_pubkey", meta, sizeof meta), 0);
    read_all(pub, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(meta, buf);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "master_key_path", meta, sizeof meta), 0);
    CU_ASSERT_STRING_EQUAL(meta, mk);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "gateway_key_path", meta, sizeof meta), 0);
    CU_ASSERT_STRING_EQUAL(meta, key);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "master_key_fpr", meta, sizeof meta), 0);
    {
        uint8_t f[32];
        char h[65];
        derive(mk, "ehrgate/v1/fingerprint", f);
        eg_hex_encode(f, 32, h);
        CU_ASSERT_STRING_EQUAL(meta, h);
    }
    /* the derived keys follow the documented labels and differ */
    {
        uint8_t a[32], q[32];
        derive(mk, "ehrgate/v1/audit", a);
        derive(mk, "ehrgate/v1/quarantine", q);
        CU_ASSERT_EQUAL(memcmp(eg_vault_audit_key(v), a, 32), 0);
        CU_ASSERT_EQUAL(memcmp(eg_vault_quarantine_key(v), q, 32), 0);
        CU_ASSERT_NOT_EQUAL(memcmp(a, q, 32), 0);
    }
    CU_ASSERT_PTR_EQUAL(eg_vault_rng(v), rng);
    CU_ASSERT_FALSE(eg_store_in_tx(st));
    eg_key_free(pk);
    eg_vault_free(v);
    eg_vault_free(NULL);

    /* reopening with the same files works and loads the same key */
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(eg_key_fingerprint(eg_vault_signing_key(v), fb), EG_OK);
    CU_ASSERT_EQUAL(memcmp(fa, fb, 32), 0);
    eg_vault_free(v);
    eg_store_close(st);

    /* also through a fresh connection to the file */
    st = open_db("new.db");
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL(v);
    eg_vault_free(v);
    eg_store_close(st);
}

static void test_wrong_keys_refused(void)
{
    char key[256], mk[256], other_mk[256], other_key[256], bad[256], meta[128], buf[8192];
    struct eg_store *st = open_db("wrong.db");
    struct eg_vault *v;
    static const char hex64[] =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

    path_of("w.key", key, sizeof key);
    path_of("w.master", mk, sizeof mk);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    eg_vault_free(v);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "master_key_fpr", meta, sizeof meta), 0);

    /* another valid master key */
    write_bytes("other.master", hex64, 65, 0600, other_mk, sizeof other_mk);
    OPEN_GW(st, key, other_mk, EG_E_KEY, other_mk);
    /* another valid gateway key (a fixture) */
    {
        size_t n = read_all(KEYS "p256_other.pem", buf, sizeof buf);
        write_bytes("other.key", buf, n, 0600, other_key, sizeof other_key);
    }
    OPEN_GW(st, other_key, mk, EG_E_KEY, other_key);
    /* not a P-256 key at all */
    {
        size_t n = read_all(KEYS "rsa2048.pem", buf, sizeof buf);
        write_bytes("rsa.key", buf, n, 0600, bad, sizeof bad);
    }
    OPEN_GW(st, bad, mk, EG_E_KEY, bad);

    /* missing files are errors once the database has keys: never re-created */
    path_of("gone.key", bad, sizeof bad);
    OPEN_GW(st, bad, mk, EG_E_KEY, bad);
    CU_ASSERT_EQUAL(file_mode(bad), -1);
    path_of("gone.master", bad, sizeof bad);
    OPEN_GW(st, key, bad, EG_E_KEY, bad);
    CU_ASSERT_EQUAL(file_mode(bad), -1);

    /* the right master key, but readable by the group or others */
    CU_ASSERT_EQUAL_FATAL(chmod(mk, 0640), 0);
    OPEN_GW(st, key, mk, EG_E_KEY, mk);
    CU_ASSERT_EQUAL_FATAL(chmod(mk, 0604), 0);
    OPEN_GW(st, key, mk, EG_E_KEY, mk);
    CU_ASSERT_EQUAL_FATAL(chmod(mk, 0600), 0);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    eg_vault_free(v);

    /* the gateway's private key, readable by the group or others */
    CU_ASSERT_EQUAL_FATAL(chmod(key, 0644), 0);
    OPEN_GW(st, key, mk, EG_E_KEY, key);
    CU_ASSERT_EQUAL_FATAL(chmod(key, 0600), 0);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    eg_vault_free(v);

    /* malformed master key files */
    {
        static const struct {
            const char *text;
            size_t len;
        } malformed[] = {
            {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n", 64}, /* 63 */
            {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0", 65},
            {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg", 64},
            {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\n", 66},
            {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\r\n", 66},
            {" 0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 64},
            {"", 0},
        };
        for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
            uint8_t k[32];
            struct eg_error e = {0};
            write_bytes("malformed.master", malformed[i].text, malformed[i].len, 0600, bad,
                        sizeof bad);
            CHECKF(eg_master_key_read(bad, k, &e) == EG_E_KEY, "malformed #%zu accepted", i);
            CHECKF(contains(e.detail, bad), "malformed #%zu: detail \"%s\"", i, e.detail);
            if (i == 0)
                OPEN_GW(st, key, bad, EG_E_KEY, bad);
        }
    }
    /* the database still holds the original fingerprint */
    {
        char now[128];
        CU_ASSERT_EQUAL(eg_store_meta_get(st, "master_key_fpr", now, sizeof now), 0);
        CU_ASSERT_STRING_EQUAL(now, meta);
    }
    eg_store_close(st);
}

static void test_master_key_read(void)
{
    static const char hex64[] = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
    char path[256];
    uint8_t k[32];
    struct eg_error e = {0};

    /* 64 hex characters, with or without one newline (either case) */
    write_bytes("mk1", hex64, 64, 0600, path, sizeof path);
    CU_ASSERT_EQUAL(eg_master_key_read(path, k, &e), EG_OK);
    CU_ASSERT_EQUAL(k[0], 0x00);
    CU_ASSERT_EQUAL(k[10], 0xaa);
    CU_ASSERT_EQUAL(k[31], 0xff);
    write_bytes("mk2", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65,
                0400, path, sizeof path);
    CU_ASSERT_EQUAL(eg_master_key_read(path, k, &e), EG_OK);
    /* modes */
    write_bytes("mk3", hex64, 64, 0644, path, sizeof path);
    CU_ASSERT_EQUAL(eg_master_key_read(path, k, &e), EG_E_KEY);
    CHECKF(contains(e.detail, path) && contains(e.detail, "0644"), "detail \"%s\"", e.detail);
    write_bytes("mk4", hex64, 64, 0620, path, sizeof path);
    CU_ASSERT_EQUAL(eg_master_key_read(path, k, &e), EG_E_KEY);
    /* not a regular file, not there */
    CU_ASSERT_EQUAL(eg_master_key_read(tmpdir, k, &e), EG_E_KEY);
    path_of("nope", path, sizeof path);
    CU_ASSERT_EQUAL(eg_master_key_read(path, k, &e), EG_E_KEY);
    CHECKF(contains(e.detail, path), "detail \"%s\"", e.detail);
}

/* Existing key files are adopted by a new database (docs/protocol.md §8). */
static void test_adopt_existing_files(void)
{
    char key[256], mk[256], buf[8192], fpr_hex[65], want[128];
    struct eg_store *st = open_db("adopt.db");
    struct eg_vault *v;
    static const char hex64[] =
        "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677\n";
    uint8_t f[32];

    {
        size_t n = read_all(KEYS "p256_pkcs8.pem", buf, sizeof buf);
        write_bytes("adopt.key", buf, n, 0600, key, sizeof key);
    }
    write_bytes("adopt.master", hex64, 65, 0600, mk, sizeof mk);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(eg_key_fingerprint(eg_vault_signing_key(v), f), EG_OK);
    eg_hex_encode(f, 32, fpr_hex);
    read_all(KEYS "p256.pub.sha256", want, sizeof want);
    want[64] = '\0';
    CU_ASSERT_STRING_EQUAL(fpr_hex, want);
    CU_ASSERT_EQUAL(eg_store_meta_get(st, "gateway_key_fpr", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, want);
    /* the master key file was not rewritten */
    read_all(mk, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, hex64);
    eg_vault_free(v);
    eg_store_close(st);
}

static void test_open_master(void)
{
    char key[256], mk[256], other[256];
    struct eg_store *st = open_db("master.db"), *fresh = open_db("nokeys.db");
    struct eg_vault *gw, *v = NULL;
    struct eg_error e = {0};
    static const char hex64[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    path_of("m.key", key, sizeof key);
    path_of("m.master", mk, sizeof mk);
    gw = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gw);

    /* explicit path */
    CU_ASSERT_EQUAL(eg_vault_open_master(st, mk, rng, &v, &e), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_PTR_NULL(eg_vault_signing_key(v));
    CU_ASSERT_EQUAL(memcmp(eg_vault_audit_key(v), eg_vault_audit_key(gw), 32), 0);
    CU_ASSERT_EQUAL(memcmp(eg_vault_quarantine_key(v), eg_vault_quarantine_key(gw), 32), 0);
    eg_vault_free(v);
    /* the path recorded in the database */
    v = NULL;
    CU_ASSERT_EQUAL(eg_vault_open_master(st, NULL, rng, &v, &e), EG_OK);
    CU_ASSERT_PTR_NOT_NULL(v);
    eg_vault_free(v);

    /* another key, a group-readable key, a missing file */
    write_bytes("m.other", hex64, 64, 0600, other, sizeof other);
    CU_ASSERT_EQUAL(eg_vault_open_master(st, other, rng, &v, &e), EG_E_KEY);
    CU_ASSERT_PTR_NULL(v);
    CHECKF(contains(e.detail, other), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL_FATAL(chmod(mk, 0644), 0);
    CU_ASSERT_EQUAL(eg_vault_open_master(st, NULL, rng, &v, &e), EG_E_KEY);
    CHECKF(contains(e.detail, mk), "detail \"%s\"", e.detail);
    CU_ASSERT_EQUAL_FATAL(chmod(mk, 0600), 0);
    path_of("m.none", other, sizeof other);
    CU_ASSERT_EQUAL(eg_vault_open_master(st, other, rng, &v, &e), EG_E_KEY);

    /* a database without keys: nothing to check against */
    CU_ASSERT_EQUAL(eg_vault_open_master(fresh, mk, rng, &v, &e), EG_E_KEY);
    CU_ASSERT_PTR_NULL(v);
    eg_vault_free(gw);
    eg_store_close(fresh);
    eg_store_close(st);
}

static long long count_keys(struct eg_store *st)
{
    sqlite3_stmt *s;
    long long n = -1;

    if (sqlite3_prepare_v2(eg_store_db(st), "SELECT count(*) FROM patient_keys", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static void sql(struct eg_store *st, const char *text)
{
    char *err = NULL;

    CHECKF(sqlite3_exec(eg_store_db(st), text, NULL, NULL, &err) == SQLITE_OK, "%s: %s", text,
           err ? err : "");
    sqlite3_free(err);
}

static void test_patient_keys(void)
{
    char key[256], mk[256];
    struct eg_store *st = open_db("pk.db");
    struct eg_vault *v, *v2 = NULL;
    struct eg_error e = {0};
    uint8_t k1[32], k1b[32], k2[32], zero[32] = {0};

    path_of("pk.key", key, sizeof key);
    path_of("pk.master", mk, sizeof mk);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);

    /* without create: not found, nothing inserted */
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 0, k1), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(count_keys(st), 0);
    /* create (inside a transaction, as the pipeline does) */
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 1, k1), EG_OK);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P2", 1, k2), EG_OK);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_EQUAL(count_keys(st), 2);
    CU_ASSERT_NOT_EQUAL(memcmp(k1, zero, 32), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(k1, k2, 32), 0);
    /* the key is stored wrapped, never in the clear: 12 nonce + 32 + 16 tag */
    {
        sqlite3_stmt *s;
        CU_ASSERT_FATAL(sqlite3_prepare_v2(eg_store_db(st),
                                           "SELECT wrapped FROM patient_keys WHERE"
                                           " patient_id = 'P1'",
                                           -1, &s, NULL) == SQLITE_OK);
        CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_ROW);
        CU_ASSERT_EQUAL(sqlite3_column_bytes(s, 0), 60);
        if (sqlite3_column_bytes(s, 0) == 60) {
            CU_ASSERT_FALSE(has_bytes(sqlite3_column_blob(s, 0), 60, k1, 32));
        }
        sqlite3_finalize(s);
    }
    /* cached, then from the database after a cache clear, and in a new vault */
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 0, k1b), EG_OK);
    CU_ASSERT_EQUAL(memcmp(k1, k1b, 32), 0);
    eg_vault_cache_clear(v);
    memset(k1b, 0, 32);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 0, k1b), EG_OK);
    CU_ASSERT_EQUAL(memcmp(k1, k1b, 32), 0);
    CU_ASSERT_EQUAL(eg_vault_open_master(st, mk, rng, &v2, &e), EG_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    memset(k1b, 0, 32);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v2, st, "P1", 0, k1b), EG_OK);
    CU_ASSERT_EQUAL(memcmp(k1, k1b, 32), 0);
    /* create on an existing key returns it, not a new one */
    CU_ASSERT_EQUAL(eg_vault_patient_key(v2, st, "P2", 1, k1b), EG_OK);
    CU_ASSERT_EQUAL(memcmp(k2, k1b, 32), 0);
    CU_ASSERT_EQUAL(count_keys(st), 2);

    /* a rolled-back creation leaves nothing behind once the cache is cleared */
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P3", 1, k1b), EG_OK);
    eg_store_rollback(st);
    eg_vault_cache_clear(v);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P3", 0, k1b), EG_E_NOT_FOUND);

    /* a wrapped key moved to another patient does not unwrap (AAD binds the id) */
    sql(st, "UPDATE patient_keys SET wrapped = (SELECT wrapped FROM patient_keys"
            " WHERE patient_id = 'P1') WHERE patient_id = 'P2'");
    eg_vault_cache_clear(v);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P2", 0, k1b), EG_E_CRYPTO);
    /* a changed byte does not unwrap */
    sql(st, "UPDATE patient_keys SET wrapped = zeroblob(60) WHERE patient_id = 'P2'");
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P2", 0, k1b), EG_E_CRYPTO);

    /* erasure (crypto-shredding): wrapped set to NULL */
    sql(st, "UPDATE patient_keys SET wrapped = NULL, erased_at = 1 WHERE patient_id = 'P1'");
    eg_vault_cache_clear(v);
    eg_vault_cache_clear(v2);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 0, k1b), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v2, st, "P1", 0, k1b), EG_E_NOT_FOUND);
    /* and an erased patient's key is not silently re-created */
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    CU_ASSERT_EQUAL(eg_vault_patient_key(v, st, "P1", 1, k1b), EG_E_NOT_FOUND);
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    CU_ASSERT_EQUAL(count_keys(st), 2);

    eg_vault_free(v2);
    eg_vault_free(v);
    eg_store_close(st);
}

/* Many patients: the cache is direct-mapped, collisions must not mix keys. */
static void test_patient_key_cache_collisions(void)
{
    char key[256], mk[256], id[16];
    struct eg_store *st = open_db("many.db");
    struct eg_vault *v;
    enum { N = 3000 };
    uint8_t(*keys)[32] = calloc(N, 32);
    uint8_t k[32];

    CU_ASSERT_PTR_NOT_NULL_FATAL(keys);
    path_of("many.key", key, sizeof key);
    path_of("many.master", mk, sizeof mk);
    v = OPEN_GW(st, key, mk, EG_OK, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(eg_store_begin(st), EG_OK);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "P%d", i);
        if (eg_vault_patient_key(v, st, id, 1, keys[i]) != EG_OK) {
            CHECKF(0, "cannot create the key of %s", id);
            break;
        }
    }
    CU_ASSERT_EQUAL(eg_store_commit(st), EG_OK);
    for (int i = N - 1; i >= 0; i--) {
        snprintf(id, sizeof id, "P%d", i);
        if (eg_vault_patient_key(v, st, id, 0, k) != EG_OK || memcmp(k, keys[i], 32) != 0) {
            CHECKF(0, "key of %s changed", id);
            break;
        }
    }
    free(keys);
    eg_vault_free(v);
    eg_store_close(st);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/eg_test_vault_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (eg_rng_new(&rng) != EG_OK || CU_initialize_registry() != CUE_SUCCESS) {
        remove_tree(tmpdir);
        return 1;
    }
    s = CU_add_suite("vault", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "keys created with a new database", test_create_on_new_db) ||
        !CU_add_test(s, "different, missing, open or malformed keys refused",
                     test_wrong_keys_refused) ||
        !CU_add_test(s, "eg_master_key_read", test_master_key_read) ||
        !CU_add_test(s, "existing key files adopted by a new database",
                     test_adopt_existing_files) ||
        !CU_add_test(s, "eg_vault_open_master", test_open_master) ||
        !CU_add_test(s, "patient data keys", test_patient_keys) ||
        !CU_add_test(s, "patient key cache collisions", test_patient_key_cache_collisions)) {
        CU_cleanup_registry();
        eg_rng_free(rng);
        remove_tree(tmpdir);
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    eg_rng_free(rng);
    remove_tree(tmpdir);
    return failures != 0;
}

/*
 * eg_vault.c — key files, fingerprints, derived keys and the cache of
 * unwrapped patient data keys. Key material is never logged.
 */
#include "eg_vault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eg_codec.h"
#include "eg_log.h"

#define DK_CACHE 1024 /* direct-mapped cache of unwrapped patient keys */

struct dk_slot {
    char patient[65];
    uint8_t key[32];
    int used;
};

struct eg_vault {
    struct eg_key *sign;
    struct eg_rng *rng; /* borrowed */
    uint8_t wrap[32], audit[32], quarantine[32], outbox[32], fpr[32];
    struct dk_slot *cache;
};

static void derive(const uint8_t master[32], const char *label, uint8_t out[32])
{
    eg_hmac_sha256(master, 32, label, strlen(label), out);
}

eg_err eg_master_key_read(const char *path, uint8_t key[32], struct eg_error *e)
{
    char buf[80];
    struct stat sb;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    eg_err rc = EG_OK;

    if (fd < 0)
        return eg_fail(e, EG_E_KEY, "%s: cannot open master key: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = eg_fail(e, EG_E_KEY, "%s: master key is not a regular file", path);
        goto out;
    }
    if (sb.st_mode & 077) {
        rc = eg_fail(e, EG_E_KEY, "%s: master key has mode %04o; it must not be readable by "
                                  "group or others (chmod 600)",
                     path, (unsigned)(sb.st_mode & 07777));
        goto out;
    }
    n = read(fd, buf, sizeof buf);
    if (n == 65 && buf[64] == '\n')
        n = 64;
    if (n == 64)
        buf[64] = '\0';
    if (n != 64 || eg_hex_decode(buf, key, 32) != 0) {
        rc = eg_fail(e, EG_E_KEY, "%s: master key must be 64 hex characters (optionally one "
                                  "newline)",
                     path);
        goto out;
    }
out:
    eg_wipe(buf, sizeof buf);
    close(fd);
    return rc;
}

static eg_err master_key_create(const char *path, struct eg_rng *rng, uint8_t key[32],
                                struct eg_error *e)
{
    char hex[66];
    eg_err rc;
    int fd;

    if ((rc = eg_rng_bytes(rng, key, 32)) != EG_OK)
        return eg_fail(e, rc, "cannot draw random bytes");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return eg_fail(e, EG_E_KEY, "%s: cannot create master key: %s", path, strerror(errno));
    eg_hex_encode(key, 32, hex);
    hex[64] = '\n';
    if (write(fd, hex, 65) != 65 || fsync(fd) != 0) {
        rc = eg_fail(e, EG_E_KEY, "%s: cannot write master key: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        eg_wipe(hex, sizeof hex);
        return rc;
    }
    close(fd);
    eg_wipe(hex, sizeof hex);
    return EG_OK;
}

static eg_err vault_new(struct eg_rng *rng, const uint8_t master[32], struct eg_vault **out)
{
    struct eg_vault *v = calloc(1, sizeof *v);
    if (!v || !(v->cache = calloc(DK_CACHE, sizeof *v->cache))) {
        free(v);
        return EG_E_NOMEM;
    }
    v->rng = rng;
    derive(master, "ehrgate/v1/wrap", v->wrap);
    derive(master, "ehrgate/v1/audit", v->audit);
    derive(master, "ehrgate/v1/quarantine", v->quarantine);
    derive(master, "ehrgate/v1/outbox", v->outbox);
    derive(master, "ehrgate/v1/fingerprint", v->fpr);
    *out = v;
    return EG_OK;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Private keys must not be readable by group or others. */
static eg_err check_private_mode(const char *path, const char *what, struct eg_error *e)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return eg_fail(e, EG_E_KEY, "%s: cannot open %s: %s", path, what, strerror(errno));
    if (sb.st_mode & 077)
        return eg_fail(e, EG_E_KEY, "%s: %s has mode %04o; it must not be readable by group "
                                    "or others (chmod 600)",
                       path, what, (unsigned)(sb.st_mode & 07777));
    return EG_OK;
}

/* The absolute form of path for the meta table (so ehrctl finds the key
 * from any directory); path itself if it cannot be resolved. */
static void abs_path(const char *path, char *out, size_t size)
{
    char *r = realpath(path, NULL);
    snprintf(out, size, "%s", r ? r : path);
    free(r);
}

/* Writes PREFIX.pub next to a key file "PREFIX.key" (or "KEYFILE.pub"). */
static void write_pub_beside(const struct eg_key *k, const char *key_path)
{
    char path[4096], pem[EG_PEM_PUB_MAX];
    size_t n = strlen(key_path);
    FILE *f;
    if (n > 4 && strcmp(key_path + n - 4, ".key") == 0)
        snprintf(path, sizeof path, "%.*s.pub", (int)(n - 4), key_path);
    else
        snprintf(path, sizeof path, "%s.pub", key_path);
    if (eg_key_public_pem(k, pem, sizeof pem) != EG_OK || !(f = fopen(path, "w")))
        return;
    fputs(pem, f);
    fclose(f);
}

eg_err eg_vault_open_gateway(struct eg_store *st, const char *key_path,
                             const char *master_path, struct eg_rng *rng, struct eg_vault **out,
                             struct eg_error *e)
{
    char rec_gw[80], rec_mk[80], hex[65];
    uint8_t master[32], gwfpr[32];
    struct eg_vault *v = NULL;
    struct eg_key *k = NULL;
    int have_gw, have_mk;
    eg_err rc;

    *out = NULL;
    have_gw = eg_store_meta_get(st, "gateway_key_fpr", rec_gw, sizeof rec_gw) == 0;
    have_mk = eg_store_meta_get(st, "master_key_fpr", rec_mk, sizeof rec_mk) == 0;

    /* signing key */
    if (!have_gw && !file_exists(key_path)) {
        if ((rc = eg_key_generate(rng, &k, e)) != EG_OK)
            goto out;
        if ((rc = eg_key_write_private(k, key_path, e)) != EG_OK)
            goto out;
        write_pub_beside(k, key_path);
        log_msg(EG_LOG_INFO, "created gateway key %s", key_path);
    } else {
        if ((rc = check_private_mode(key_path, "gateway key", e)) != EG_OK)
            goto out;
        if ((rc = eg_key_load_private(key_path, &k, e)) != EG_OK) {
            char inner[sizeof e->detail];
            snprintf(inner, sizeof inner, "%s", e->detail);
            rc = eg_fail(e, EG_E_KEY, "%s: %s", key_path, inner);
            goto out;
        }
    }
    if ((rc = eg_key_fingerprint(k, gwfpr)) != EG_OK)
        goto out;
    eg_hex_encode(gwfpr, 32, hex);
    if (have_gw && strcmp(hex, rec_gw) != 0) {
        rc = eg_fail(e, EG_E_KEY, "%s: gateway key does not match the one recorded in the "
                                  "database (fingerprint %.16s..., expected %.16s...)",
                     key_path, hex, rec_gw);
        goto out;
    }

    /* master key */
    if (!have_mk && !file_exists(master_path)) {
        if ((rc = master_key_create(master_path, rng, master, e)) != EG_OK)
            goto out;
        log_msg(EG_LOG_INFO, "created master key %s", master_path);
    } else if ((rc = eg_master_key_read(master_path, master, e)) != EG_OK) {
        goto out;
    }
    rc = vault_new(rng, master, &v);
    eg_wipe(master, sizeof master);
    if (rc != EG_OK)
        goto out;
    {
        char mhex[65];
        eg_hex_encode(v->fpr, 32, mhex);
        if (have_mk && strcmp(mhex, rec_mk) != 0) {
            rc = eg_fail(e, EG_E_KEY, "%s: master key does not match the one recorded in the "
                                      "database",
                         master_path);
            goto out;
        }
        if (!have_gw || !have_mk) {
            char pem[EG_PEM_PUB_MAX], kabs[4096], mabs[4096];
            abs_path(key_path, kabs, sizeof kabs);
            abs_path(master_path, mabs, sizeof mabs);
            if ((rc = eg_store_begin(st)) != EG_OK)
                goto out;
            if (eg_key_public_pem(k, pem, sizeof pem) != EG_OK ||
                eg_store_meta_set(st, "gateway_key_fpr", hex) != EG_OK ||
                eg_store_meta_set(st, "gateway_pubkey", pem) != EG_OK ||
                eg_store_meta_set(st, "gateway_key_path", kabs) != EG_OK ||
                eg_store_meta_set(st, "master_key_fpr", mhex) != EG_OK ||
                eg_store_meta_set(st, "master_key_path", mabs) != EG_OK ||
                (rc = eg_store_commit(st)) != EG_OK) {
                eg_store_rollback(st);
                rc = eg_fail(e, rc ? rc : EG_E_DB, "cannot record key fingerprints");
                goto out;
            }
            log_msg(EG_LOG_INFO, "keys recorded in the database (gateway_id %.16s...)", hex);
        }
    }
    v->sign = k;
    k = NULL;
out:
    eg_key_free(k);
    if (rc != EG_OK) {
        eg_vault_free(v);
        return rc;
    }
    *out = v;
    return EG_OK;
}

eg_err eg_vault_open_master(struct eg_store *st, const char *master_path, struct eg_rng *rng,
                            struct eg_vault **out, struct eg_error *e)
{
    char rec_mk[80], rec_path[4096], mhex[65];
    uint8_t master[32];
    struct eg_vault *v = NULL;
    eg_err rc;

    *out = NULL;
    if (eg_store_meta_get(st, "master_key_fpr", rec_mk, sizeof rec_mk) != 0)
        return eg_fail(e, EG_E_KEY, "the database has no master key yet (start ehrgate once)");
    if (!master_path) {
        if (eg_store_meta_get(st, "master_key_path", rec_path, sizeof rec_path) != 0)
            return eg_fail(e, EG_E_KEY, "no master key path recorded; pass --master-key");
        master_path = rec_path;
    }
    if ((rc = eg_master_key_read(master_path, master, e)) != EG_OK)
        return rc;
    rc = vault_new(rng, master, &v);
    eg_wipe(master, sizeof master);
    if (rc != EG_OK)
        return eg_fail(e, rc, "out of memory");
    eg_hex_encode(v->fpr, 32, mhex);
    if (strcmp(mhex, rec_mk) != 0) {
        eg_vault_free(v);
        return eg_fail(e, EG_E_KEY, "%s: master key does not match the one recorded in the "
                                    "database",
                       master_path);
    }
    *out = v;
    return EG_OK;
}

void eg_vault_free(struct eg_vault *v)
{
    if (!v)
        return;
    eg_key_free(v->sign);
    if (v->cache) {
        eg_wipe(v->cache, DK_CACHE * sizeof *v->cache);
        free(v->cache);
    }
    eg_wipe(v, sizeof *v);
    free(v);
}

const struct eg_key *eg_vault_signing_key(const struct eg_vault *v) { return v->sign; }
struct eg_rng *eg_vault_rng(const struct eg_vault *v) { return v->rng; }
const uint8_t *eg_vault_audit_key(const struct eg_vault *v) { return v->audit; }
const uint8_t *eg_vault_quarantine_key(const struct eg_vault *v) { return v->quarantine; }
const uint8_t *eg_vault_outbox_key(const struct eg_vault *v) { return v->outbox; }

void eg_vault_cache_clear(struct eg_vault *v)
{
    eg_wipe(v->cache, DK_CACHE * sizeof *v->cache);
}

static unsigned slot_of(const char *patient)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *p = patient; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % DK_CACHE;
}

static void dk_aad(const char *patient, char *aad, size_t size)
{
    snprintf(aad, size, "dk|%s", patient);
}

eg_err eg_vault_patient_key(struct eg_vault *v, struct eg_store *st, const char *patient,
                            int create, uint8_t key[32])
{
    struct dk_slot *slot = &v->cache[slot_of(patient)];
    sqlite3_stmt *s;
    char aad[80];
    eg_err rc = EG_OK;
    int src;

    if (slot->used && strcmp(slot->patient, patient) == 0) {
        memcpy(key, slot->key, 32);
        return EG_OK;
    }
    dk_aad(patient, aad, sizeof aad);
    s = eg_store_stmt(st, "SELECT wrapped FROM patient_keys WHERE patient_id = ?1");
    if (!s)
        return EG_E_DB;
    sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        const uint8_t *w = sqlite3_column_blob(s, 0);
        int wlen = sqlite3_column_bytes(s, 0);
        size_t outlen;
        if (!w) {
            rc = EG_E_NOT_FOUND; /* erased */
        } else {
            uint8_t tmp[64];
            rc = eg_aead_open(v->wrap, aad, strlen(aad), w, (size_t)wlen, tmp, sizeof tmp,
                              &outlen);
            if (rc == EG_OK && outlen != 32)
                rc = EG_E_CRYPTO;
            if (rc == EG_OK)
                memcpy(key, tmp, 32);
            eg_wipe(tmp, sizeof tmp);
        }
        sqlite3_reset(s);
    } else if (src == SQLITE_DONE) {
        sqlite3_reset(s);
        if (!create)
            return EG_E_NOT_FOUND;
        {
            uint8_t wrapped[32 + EG_GCM_NONCE + EG_GCM_TAG];
            size_t wlen;
            if ((rc = eg_rng_bytes(v->rng, key, 32)) != EG_OK)
                return rc;
            rc = eg_aead_seal(v->rng, v->wrap, aad, strlen(aad), key, 32, wrapped, sizeof wrapped,
                              &wlen);
            if (rc != EG_OK)
                return rc;
            s = eg_store_stmt(st, "INSERT INTO patient_keys(patient_id, wrapped, created_at)"
                                  " VALUES(?1, ?2, strftime('%s','now') * 1000)");
            if (!s)
                return EG_E_DB;
            sqlite3_bind_text(s, 1, patient, -1, SQLITE_STATIC);
            sqlite3_bind_blob(s, 2, wrapped, (int)wlen, SQLITE_STATIC);
            src = sqlite3_step(s);
            sqlite3_reset(s);
            if (src != SQLITE_DONE)
                return eg_store_err(src);
        }
    } else {
        sqlite3_reset(s);
        return eg_store_err(src);
    }
    if (rc == EG_OK) {
        snprintf(slot->patient, sizeof slot->patient, "%s", patient);
        memcpy(slot->key, key, 32);
        slot->used = 1;
    }
    return rc;
}

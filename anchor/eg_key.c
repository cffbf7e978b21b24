/*
 * eg_key.c — ECDSA P-256 keys over mbedTLS 2.28 pk/ecdsa.
 *
 * Private keys are read as PEM: SEC1 "EC PRIVATE KEY" (RFC 5915, optionally
 * after an "EC PARAMETERS" block as `openssl ecparam -genkey` writes it) or
 * unencrypted PKCS#8 "PRIVATE KEY" (RFC 5208); they are written as SEC1 PEM.
 * Public keys are PEM SubjectPublicKeyInfo (RFC 5480). Only the curve
 * secp256r1 (P-256, FIPS 186-4) is accepted; anything else is EG_E_KEY.
 * Signatures are DER ECDSA-Sig-Value (RFC 5480 §2.2 / SEC1) in standard
 * padded base64 (RFC 4648 §4), over a SHA-256 digest, deterministic per
 * RFC 6979 in this mbedTLS build (SPEC §2, §3).
 *
 * Key material never leaves this file except through eg_key_write_private();
 * buffers that held it are wiped, and nothing here logs.
 */
#include "eg_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "eg_codec.h"

#define KEY_FILE_MAX 16384    /* no PEM key of ours comes near this */
#define KEY_PEM_PRIV_MAX 1024 /* SEC1 PEM of a P-256 key is ~230 bytes */
#define SPKI_DER_MAX 160      /* DER SPKI of a P-256 key is 91 bytes */
#define SIG_DER_MAX 80        /* DER ECDSA P-256 signature is <= 72 bytes */

struct eg_key {
    mbedtls_pk_context pk;
    int has_private;
};

/* mbedTLS 2.28 takes non-const contexts even for read-only operations. */
static mbedtls_pk_context *pk_of(const struct eg_key *key)
{
    return (mbedtls_pk_context *)&key->pk;
}

static struct eg_key *key_new(void)
{
    struct eg_key *key = calloc(1, sizeof *key);

    if (key != NULL)
        mbedtls_pk_init(&key->pk);
    return key;
}

void eg_key_free(struct eg_key *key)
{
    if (key == NULL)
        return;
    mbedtls_pk_free(&key->pk);
    mbedtls_platform_zeroize(key, sizeof *key);
    free(key);
}

/* Short mbedTLS error text for a detail (never contains key material). */
static const char *mbed_msg(int ret, char *buf, size_t size)
{
    mbedtls_strerror(ret, buf, size);
    return buf;
}

/* Accepts only EC keys on secp256r1. what names the key in the detail. */
static eg_err check_p256(const mbedtls_pk_context *pk, const char *what, struct eg_error *e)
{
    mbedtls_pk_type_t type = mbedtls_pk_get_type(pk);
    const mbedtls_ecp_keypair *ec;
    const mbedtls_ecp_curve_info *ci;

    if (type != MBEDTLS_PK_ECKEY && type != MBEDTLS_PK_ECDSA)
        return eg_fail(e, EG_E_KEY, "%s: %s key, only ECDSA P-256 keys are accepted", what,
                       mbedtls_pk_get_name(pk));
    ec = mbedtls_pk_ec(*pk);
    if (ec->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
        ci = mbedtls_ecp_curve_info_from_grp_id(ec->grp.id);
        return eg_fail(e, EG_E_KEY, "%s: curve %s, only P-256 (prime256v1) is accepted", what,
                       ci != NULL ? ci->name : "unknown");
    }
    return EG_OK;
}

/* Reads a whole text file (at most KEY_FILE_MAX bytes, no NUL bytes) into a
 * malloc'ed NUL-terminated buffer. *len excludes the NUL. The caller wipes
 * and frees *out. */
static eg_err read_text_file(const char *path, char **out, size_t *len, struct eg_error *e)
{
    eg_err rc = EG_OK;
    int fd = -1;
    char *buf = NULL;
    size_t used = 0;
    struct stat st;

    *out = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = eg_fail(e, EG_E_IO, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size > KEY_FILE_MAX) {
        rc = eg_fail(e, EG_E_KEY, "%s: too large for a PEM key (%lld bytes)", path,
                     (long long)st.st_size);
        goto out;
    }
    buf = malloc(KEY_FILE_MAX + 1);
    if (buf == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + used, KEY_FILE_MAX + 1 - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > KEY_FILE_MAX) {
            rc = eg_fail(e, EG_E_KEY, "%s: too large for a PEM key", path);
            goto out;
        }
    }
    if (memchr(buf, '\0', used) != NULL) {
        rc = eg_fail(e, EG_E_KEY, "%s: not a PEM file (binary data)", path);
        goto out;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;
out:
    if (buf != NULL) {
        mbedtls_platform_zeroize(buf, KEY_FILE_MAX + 1);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

eg_err eg_key_generate(struct eg_rng *rng, struct eg_key **out, struct eg_error *e)
{
    eg_err rc = EG_OK;
    struct eg_key *key = NULL;
    char msg[128];
    int ret;

    if (out == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_generate: no output");
    *out = NULL;
    if (rng == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_generate: no random generator");
    key = key_new();
    if (key == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "key generation: out of memory");
        goto out;
    }
    ret = mbedtls_pk_setup(&key->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret != 0) {
        rc = eg_fail(e, EG_E_CRYPTO, "key generation: %s", mbed_msg(ret, msg, sizeof msg));
        goto out;
    }
    ret =
        mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key->pk), eg_rng_mbedtls, rng);
    if (ret != 0) {
        rc = eg_fail(e, EG_E_CRYPTO, "key generation: %s", mbed_msg(ret, msg, sizeof msg));
        goto out;
    }
    key->has_private = 1;
    *out = key;
    key = NULL;
out:
    eg_key_free(key);
    return rc;
}

eg_err eg_key_load_private(const char *path, struct eg_key **out, struct eg_error *e)
{
    eg_err rc = EG_OK;
    struct eg_key *key = NULL;
    char *pem = NULL;
    size_t len = 0;
    char msg[128];
    int ret;

    if (out == NULL || path == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_load_private: missing argument");
    *out = NULL;
    rc = read_text_file(path, &pem, &len, e);
    if (rc != EG_OK)
        goto out;
    key = key_new();
    if (key == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    /* PEM input must include the terminating NUL in its length. */
    ret = mbedtls_pk_parse_key(&key->pk, (const unsigned char *)pem, len + 1, NULL, 0);
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || ret == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        rc = eg_fail(e, EG_E_KEY, "%s: encrypted private keys are not supported", path);
        goto out;
    }
    if (ret == MBEDTLS_ERR_PK_UNKNOWN_NAMED_CURVE) {
        rc = eg_fail(e, EG_E_KEY, "%s: curve not supported, only P-256 (prime256v1) is accepted",
                     path);
        goto out;
    }
    if (ret != 0) {
        rc = eg_fail(e, EG_E_KEY, "%s: not a PEM private key (%s)", path,
                     mbed_msg(ret, msg, sizeof msg));
        goto out;
    }
    rc = check_p256(&key->pk, path, e);
    if (rc != EG_OK)
        goto out;
    /* A SEC1 file may carry a public point that is not d*G: refuse it. */
    ret = mbedtls_ecp_check_pub_priv(mbedtls_pk_ec(key->pk), mbedtls_pk_ec(key->pk));
    if (ret != 0) {
        rc = eg_fail(e, EG_E_KEY, "%s: public and private parts do not match", path);
        goto out;
    }
    key->has_private = 1;
    *out = key;
    key = NULL;
out:
    if (pem != NULL) {
        mbedtls_platform_zeroize(pem, len);
        free(pem);
    }
    eg_key_free(key);
    return rc;
}

eg_err eg_key_parse_public(const char *pem, size_t len, struct eg_key **out, struct eg_error *e)
{
    eg_err rc = EG_OK;
    struct eg_key *key = NULL;
    unsigned char *buf = NULL;
    char msg[128];
    int ret;

    if (out == NULL || pem == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_parse_public: missing argument");
    *out = NULL;
    if (len > 0 && pem[len - 1] == '\0')
        len--;
    if (len == 0 || len > KEY_FILE_MAX) {
        rc = eg_fail(e, EG_E_KEY, "public key: %s", len == 0 ? "empty" : "too large");
        goto out;
    }
    if (memchr(pem, '\0', len) != NULL) {
        rc = eg_fail(e, EG_E_KEY, "public key: not PEM (NUL byte inside)");
        goto out;
    }
    buf = malloc(len + 1);
    key = key_new();
    if (buf == NULL || key == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "public key: out of memory");
        goto out;
    }
    memcpy(buf, pem, len);
    buf[len] = '\0';
    ret = mbedtls_pk_parse_public_key(&key->pk, buf, len + 1);
    if (ret == MBEDTLS_ERR_PK_UNKNOWN_NAMED_CURVE) {
        rc = eg_fail(e, EG_E_KEY, "public key: curve not supported, only P-256 is accepted");
        goto out;
    }
    if (ret != 0) {
        rc = eg_fail(e, EG_E_KEY, "public key: not a PEM SubjectPublicKeyInfo (%s)",
                     mbed_msg(ret, msg, sizeof msg));
        goto out;
    }
    rc = check_p256(&key->pk, "public key", e);
    if (rc != EG_OK)
        goto out;
    *out = key;
    key = NULL;
out:
    free(buf);
    eg_key_free(key);
    return rc;
}

eg_err eg_key_load_public(const char *path, struct eg_key **out, struct eg_error *e)
{
    eg_err rc;
    char *pem = NULL;
    size_t len = 0;
    struct eg_error sub = {EG_OK, ""};
    const char *tail;

    if (out == NULL || path == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_load_public: missing argument");
    *out = NULL;
    rc = read_text_file(path, &pem, &len, e);
    if (rc != EG_OK)
        goto out;
    rc = eg_key_parse_public(pem, len, out, &sub);
    if (rc != EG_OK) {
        /* Name the file: "public key: REASON" -> "PATH: REASON". */
        tail = strncmp(sub.detail, "public key: ", 12) == 0 ? sub.detail + 12 : sub.detail;
        eg_fail(e, rc, "%s: %.200s", path, tail);
    }
out:
    free(pem);
    return rc;
}

/* write(2) all of buf, retrying on EINTR and short writes. */
static int write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

eg_err eg_key_write_private(const struct eg_key *key, const char *path, struct eg_error *e)
{
    eg_err rc = EG_OK;
    unsigned char pem[KEY_PEM_PRIV_MAX];
    int fd = -1, created = 0;
    char msg[128];
    int ret;

    if (key == NULL || path == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_key_write_private: missing argument");
    if (!key->has_private)
        return eg_fail(e, EG_E_KEY, "%s: key has no private part", path);
    ret = mbedtls_pk_write_key_pem(pk_of(key), pem, sizeof pem);
    if (ret != 0) {
        rc = eg_fail(e, EG_E_CRYPTO, "%s: %s", path, mbed_msg(ret, msg, sizeof msg));
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    created = 1;
    /* The umask may only remove bits; make the mode exactly 0600. */
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0 || write_all(fd, pem, strlen((const char *)pem)) != 0 ||
        fsync(fd) != 0) {
        rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    ret = close(fd);
    fd = -1;
    if (ret != 0) {
        rc = eg_fail(e, EG_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (rc != EG_OK && created)
        unlink(path);
    mbedtls_platform_zeroize(pem, sizeof pem);
    return rc;
}

eg_err eg_key_public_pem(const struct eg_key *key, char *buf, size_t size)
{
    int ret;

    if (key == NULL || buf == NULL || size == 0)
        return EG_E_USAGE;
    ret = mbedtls_pk_write_pubkey_pem(pk_of(key), (unsigned char *)buf, size);
    if (ret != 0) {
        buf[0] = '\0';
        return ret == MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL ? EG_E_USAGE : EG_E_CRYPTO;
    }
    return EG_OK;
}

eg_err eg_key_fingerprint(const struct eg_key *key, uint8_t out[32])
{
    unsigned char der[SPKI_DER_MAX];
    int len;

    if (key == NULL || out == NULL)
        return EG_E_USAGE;
    /* Writes at the END of der and returns the length. */
    len = mbedtls_pk_write_pubkey_der(pk_of(key), der, sizeof der);
    if (len <= 0)
        return EG_E_CRYPTO;
    if (mbedtls_sha256_ret(der + sizeof der - (size_t)len, (size_t)len, out, 0) != 0)
        return EG_E_CRYPTO;
    return EG_OK;
}

eg_err eg_key_sign_digest(const struct eg_key *key, struct eg_rng *rng, const uint8_t digest[32],
                          char *b64, size_t size)
{
    eg_err rc = EG_OK;
    unsigned char sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t siglen = 0;

    if (key == NULL || rng == NULL || digest == NULL || b64 == NULL || size < EG_SIG_B64_MAX)
        return EG_E_USAGE;
    b64[0] = '\0';
    if (!key->has_private)
        return EG_E_KEY;
    /* Deterministic k (RFC 6979); rng only blinds the computation. */
    if (mbedtls_ecdsa_write_signature(mbedtls_pk_ec(*pk_of(key)), MBEDTLS_MD_SHA256, digest, 32,
                                      sig, &siglen, eg_rng_mbedtls, rng) != 0) {
        rc = EG_E_CRYPTO;
        goto out;
    }
    if (eg_base64_encode(sig, siglen, b64, size) < 0) {
        b64[0] = '\0';
        rc = EG_E_CRYPTO;
        goto out;
    }
out:
    mbedtls_platform_zeroize(sig, sizeof sig);
    return rc;
}

eg_err eg_key_verify_digest(const struct eg_key *key, const uint8_t digest[32], const char *b64)
{
    unsigned char sig[SIG_DER_MAX];
    size_t b64len;
    int siglen;

    if (key == NULL || digest == NULL)
        return EG_E_USAGE;
    if (b64 == NULL)
        return EG_E_SIGNATURE;
    b64len = strnlen(b64, EG_SIG_B64_MAX);
    if (b64len == 0 || b64len >= EG_SIG_B64_MAX)
        return EG_E_SIGNATURE;
    siglen = eg_base64_decode(b64, b64len, sig, sizeof sig);
    if (siglen <= 0)
        return EG_E_SIGNATURE;
    /* Rejects trailing bytes after the DER SEQUENCE as well. */
    if (mbedtls_ecdsa_read_signature(mbedtls_pk_ec(*pk_of(key)), digest, 32, sig, (size_t)siglen) !=
        0)
        return EG_E_SIGNATURE;
    return EG_OK;
}

void eg_topic_digest(const char *topic, const void *payload, size_t len, uint8_t out[32])
{
    static const unsigned char sep = 0x00;
    mbedtls_sha256_context ctx;

    mbedtls_sha256_init(&ctx);
    (void)mbedtls_sha256_starts_ret(&ctx, 0);
    (void)mbedtls_sha256_update_ret(&ctx, (const unsigned char *)topic, strlen(topic));
    (void)mbedtls_sha256_update_ret(&ctx, &sep, 1);
    if (len > 0)
        (void)mbedtls_sha256_update_ret(&ctx, payload, len);
    (void)mbedtls_sha256_finish_ret(&ctx, out);
    mbedtls_sha256_free(&ctx);
}

eg_err eg_key_sign_topic(const struct eg_key *key, struct eg_rng *rng, const char *topic,
                         const void *payload, size_t len, char *b64, size_t size)
{
    uint8_t digest[32];
    eg_topic_digest(topic, payload, len, digest);
    return eg_key_sign_digest(key, rng, digest, b64, size);
}

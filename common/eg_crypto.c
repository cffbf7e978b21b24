/*
 * eg_crypto.c — SHA-256 (FIPS 180-4), HMAC-SHA-256 (RFC 2104), AES-256-GCM
 * (NIST SP 800-38D) and a CTR-DRBG (NIST SP 800-90A) over mbedTLS 2.28.
 *
 * mbedTLS 2.28 naming: the *_ret functions are used throughout; the plain
 * deprecated names break a -Werror build (TOOLCHAIN.md).
 */
#include "eg_crypto.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#define EG_RNG_PERS "ehrgate eg_rng CTR-DRBG v1"

struct eg_rng {
    pthread_mutex_t mu;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

void eg_sha256(const void *data, size_t len, uint8_t out[32])
{
    if (mbedtls_sha256_ret(data, len, out, 0) != 0)
        memset(out, 0, 32); /* cannot fail in the software implementation */
}

void eg_sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    mbedtls_sha256_context ctx;
    int ret;

    mbedtls_sha256_init(&ctx);
    ret = mbedtls_sha256_starts_ret(&ctx, 0);
    if (ret == 0)
        ret = mbedtls_sha256_update_ret(&ctx, a, alen);
    if (ret == 0)
        ret = mbedtls_sha256_update_ret(&ctx, b, blen);
    if (ret == 0)
        ret = mbedtls_sha256_finish_ret(&ctx, out);
    if (ret != 0)
        memset(out, 0, 32);
    mbedtls_sha256_free(&ctx);
}

void eg_hmac_sha256(const uint8_t *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);

    if (md == NULL || mbedtls_md_hmac(md, key, klen, msg, mlen, out) != 0)
        memset(out, 0, 32);
}

eg_err eg_rng_new(struct eg_rng **out)
{
    struct eg_rng *rng = NULL;
    unsigned char pers[sizeof EG_RNG_PERS + 3 * sizeof(uint64_t)];
    uint64_t extra[3];
    struct timespec ts;
    eg_err rc = EG_OK;
    bool mutex_ok = false;

    if (out == NULL)
        return EG_E_USAGE;
    *out = NULL;
    rng = calloc(1, sizeof *rng);
    if (rng == NULL) {
        rc = EG_E_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&rng->mu, NULL) != 0) {
        rc = EG_E_INTERNAL;
        goto out;
    }
    mutex_ok = true;
    mbedtls_entropy_init(&rng->entropy);
    mbedtls_ctr_drbg_init(&rng->drbg);

    /* Personalization (SP 800-90A §8.7.1): a fixed label plus values that
     * differ between instances; not secret, only separates the streams. */
    clock_gettime(CLOCK_REALTIME, &ts);
    extra[0] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    extra[1] = (uint64_t)getpid();
    extra[2] = (uint64_t)(uintptr_t)rng;
    memcpy(pers, EG_RNG_PERS, sizeof EG_RNG_PERS);
    memcpy(pers + sizeof EG_RNG_PERS, extra, sizeof extra);
    if (mbedtls_ctr_drbg_seed(&rng->drbg, mbedtls_entropy_func, &rng->entropy, pers, sizeof pers) !=
        0) {
        rc = EG_E_CRYPTO;
        goto out;
    }
    *out = rng;
    rng = NULL;
out:
    if (rng != NULL) {
        mbedtls_ctr_drbg_free(&rng->drbg);
        mbedtls_entropy_free(&rng->entropy);
        if (mutex_ok)
            pthread_mutex_destroy(&rng->mu);
        free(rng);
    }
    return rc;
}

/* Fills out from the DRBG under the mutex; returns 0 or an mbedTLS error. */
static int rng_fill(struct eg_rng *rng, unsigned char *out, size_t len)
{
    int ret = 0;

    if (pthread_mutex_lock(&rng->mu) != 0)
        return MBEDTLS_ERR_CTR_DRBG_REQUEST_TOO_BIG; /* any nonzero mbedTLS code */
    while (len > 0 && ret == 0) {
        size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        ret = mbedtls_ctr_drbg_random(&rng->drbg, out, n);
        out += n;
        len -= n;
    }
    pthread_mutex_unlock(&rng->mu);
    return ret;
}

eg_err eg_rng_bytes(struct eg_rng *rng, uint8_t *out, size_t len)
{
    if (rng == NULL || (out == NULL && len > 0))
        return EG_E_USAGE;
    return rng_fill(rng, out, len) == 0 ? EG_OK : EG_E_CRYPTO;
}

void eg_rng_free(struct eg_rng *rng)
{
    if (rng == NULL)
        return;
    mbedtls_ctr_drbg_free(&rng->drbg);
    mbedtls_entropy_free(&rng->entropy);
    pthread_mutex_destroy(&rng->mu);
    eg_wipe(rng, sizeof *rng);
    free(rng);
}

int eg_rng_mbedtls(void *p_rng, unsigned char *out, size_t len)
{
    if (p_rng == NULL || (out == NULL && len > 0))
        return MBEDTLS_ERR_CTR_DRBG_REQUEST_TOO_BIG;
    return rng_fill(p_rng, out, len);
}

eg_err eg_aead_seal(struct eg_rng *rng, const uint8_t key[32], const void *aad, size_t aadlen,
                    const void *pt, size_t ptlen, uint8_t *out, size_t outsize, size_t *outlen)
{
    mbedtls_gcm_context gcm;
    eg_err rc = EG_OK;

    mbedtls_gcm_init(&gcm);
    if (rng == NULL || key == NULL || out == NULL || outlen == NULL || (pt == NULL && ptlen > 0) ||
        (aad == NULL && aadlen > 0) || ptlen > SIZE_MAX - EG_GCM_NONCE - EG_GCM_TAG ||
        outsize < ptlen + EG_GCM_NONCE + EG_GCM_TAG) {
        rc = EG_E_USAGE;
        goto out;
    }
    if ((rc = eg_rng_bytes(rng, out, EG_GCM_NONCE)) != EG_OK)
        goto out;
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256) != 0 ||
        mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, ptlen, out, EG_GCM_NONCE, aad, aadlen,
                                  pt, out + EG_GCM_NONCE, EG_GCM_TAG,
                                  out + EG_GCM_NONCE + ptlen) != 0) {
        rc = EG_E_CRYPTO;
        goto out;
    }
    *outlen = ptlen + EG_GCM_NONCE + EG_GCM_TAG;
out:
    if (rc == EG_E_CRYPTO) /* sizes were checked before anything was written */
        eg_wipe(out, ptlen + EG_GCM_NONCE + EG_GCM_TAG);
    mbedtls_gcm_free(&gcm);
    return rc;
}

eg_err eg_aead_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in,
                    size_t inlen, uint8_t *out, size_t outsize, size_t *outlen)
{
    mbedtls_gcm_context gcm;
    size_t ptlen;
    eg_err rc = EG_OK;
    int ret;

    mbedtls_gcm_init(&gcm);
    if (key == NULL || in == NULL || outlen == NULL || (aad == NULL && aadlen > 0)) {
        rc = EG_E_USAGE;
        goto out;
    }
    if (inlen < EG_GCM_NONCE + EG_GCM_TAG) {
        rc = EG_E_CRYPTO; /* too short to be anything we sealed */
        goto out;
    }
    ptlen = inlen - EG_GCM_NONCE - EG_GCM_TAG;
    if (outsize < ptlen || (out == NULL && ptlen > 0)) {
        rc = EG_E_USAGE;
        goto out;
    }
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 256) != 0) {
        rc = EG_E_CRYPTO;
        goto out;
    }
    /* auth_decrypt checks the tag in constant time and zeroes out on failure. */
    ret = mbedtls_gcm_auth_decrypt(&gcm, ptlen, in, EG_GCM_NONCE, aad, aadlen,
                                   in + EG_GCM_NONCE + ptlen, EG_GCM_TAG, in + EG_GCM_NONCE, out);
    if (ret != 0) {
        if (out != NULL)
            eg_wipe(out, ptlen);
        rc = EG_E_CRYPTO;
        goto out;
    }
    *outlen = ptlen;
out:
    mbedtls_gcm_free(&gcm);
    return rc;
}

int eg_ct_memcmp(const void *a, const void *b, size_t len)
{
    const volatile unsigned char *x = a;
    const volatile unsigned char *y = b;
    unsigned char diff = 0;
    size_t i;

    for (i = 0; i < len; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff != 0;
}

void eg_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        mbedtls_platform_zeroize(p, len);
}

/*
 * eg_crypto.h — symmetric crypto and randomness over mbedTLS 2.28:
 * SHA-256, HMAC-SHA-256, AES-256-GCM, CTR-DRBG.
 */
#ifndef EG_CRYPTO_H
#define EG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"

#define EG_GCM_NONCE 12
#define EG_GCM_TAG 16

/* SHA-256 of data. */
void eg_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256(a || b) and SHA-256(prefix byte || data) helpers. */
void eg_sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]);

/* HMAC-SHA-256. */
void eg_hmac_sha256(const uint8_t *key, size_t klen, const void *msg, size_t mlen,
                    uint8_t out[32]);

/* Random generator: CTR-DRBG seeded from the system entropy source.
 * Thread-safe (internal mutex). eg_rng_free(NULL) is a no-op. */
struct eg_rng;
eg_err eg_rng_new(struct eg_rng **out);
eg_err eg_rng_bytes(struct eg_rng *rng, uint8_t *out, size_t len);
void eg_rng_free(struct eg_rng *rng);
/* The mbedTLS f_rng/p_rng pair for APIs that want one (ECDSA, keygen). */
int eg_rng_mbedtls(void *p_rng, unsigned char *out, size_t len);

/* AES-256-GCM. seal: out receives EG_GCM_NONCE nonce (random from rng) ||
 * ciphertext || EG_GCM_TAG tag, so outsize must be >= ptlen + 28; *outlen is
 * set. open: takes that same layout, writes ptlen = inlen - 28 bytes.
 * open returns EG_E_CRYPTO if the tag does not verify (wrong key, AAD or a
 * changed byte). */
eg_err eg_aead_seal(struct eg_rng *rng, const uint8_t key[32], const void *aad, size_t aadlen,
                    const void *pt, size_t ptlen, uint8_t *out, size_t outsize, size_t *outlen);
eg_err eg_aead_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in,
                    size_t inlen, uint8_t *out, size_t outsize, size_t *outlen);

/* Constant-time comparison; 0 if equal. */
int eg_ct_memcmp(const void *a, const void *b, size_t len);
/* Overwrites memory in a way the compiler keeps. */
void eg_wipe(void *p, size_t len);

#endif

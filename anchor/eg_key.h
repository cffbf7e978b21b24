/*
 * eg_key.h — ECDSA P-256 keys, signatures and fingerprints (mbedTLS 2.28).
 *
 * Signatures on the wire are base64 (standard, padded) of DER ECDSA over a
 * SHA-256 digest (SPEC §2). Public keys are PEM SubjectPublicKeyInfo.
 * A key's fingerprint (and a gateway's gateway_id, SPEC §11) is
 * SHA-256(DER SubjectPublicKeyInfo).
 */
#ifndef EG_KEY_H
#define EG_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "eg_crypto.h"
#include "eg_err.h"

#define EG_SIG_B64_MAX 108 /* base64 of a DER P-256 signature (<= 72 bytes) + NUL */
#define EG_PEM_PUB_MAX 256

struct eg_key; /* private or public-only P-256 key */

/* Generates a new P-256 key pair. */
eg_err eg_key_generate(struct eg_rng *rng, struct eg_key **out, struct eg_error *e);

/* Loads a PEM private key (EC or PKCS#8) from a file; refuses keys that are
 * not P-256. */
eg_err eg_key_load_private(const char *path, struct eg_key **out, struct eg_error *e);

/* Parses a PEM SubjectPublicKeyInfo (len excludes or includes the NUL;
 * both work). Refuses keys that are not P-256. */
eg_err eg_key_parse_public(const char *pem, size_t len, struct eg_key **out, struct eg_error *e);
/* Same, from a file. */
eg_err eg_key_load_public(const char *path, struct eg_key **out, struct eg_error *e);

/* Writes the private key as PEM to path, created with mode 0600 (fails if
 * the file exists). */
eg_err eg_key_write_private(const struct eg_key *key, const char *path, struct eg_error *e);

/* PEM SubjectPublicKeyInfo of the key into buf (NUL-terminated). */
eg_err eg_key_public_pem(const struct eg_key *key, char *buf, size_t size);

/* SHA-256 of the DER SubjectPublicKeyInfo. */
eg_err eg_key_fingerprint(const struct eg_key *key, uint8_t out[32]);

/* Signs a 32-byte digest; writes base64 DER into b64 (size >= EG_SIG_B64_MAX).
 * Requires a private key. Deterministic (RFC 6979) in this mbedTLS build. */
eg_err eg_key_sign_digest(const struct eg_key *key, struct eg_rng *rng, const uint8_t digest[32],
                          char *b64, size_t size);

/* Verifies base64 DER sig over a digest. EG_OK, or EG_E_SIGNATURE for a bad
 * encoding or a signature that does not verify. */
eg_err eg_key_verify_digest(const struct eg_key *key, const uint8_t digest[32], const char *b64);

/* The SPEC §3 message digest: SHA-256(topic || 0x00 || payload). */
void eg_topic_digest(const char *topic, const void *payload, size_t len, uint8_t out[32]);

/* The SPEC §3 signature of payload published on topic: eg_key_sign_digest
 * over eg_topic_digest. */
eg_err eg_key_sign_topic(const struct eg_key *key, struct eg_rng *rng, const char *topic,
                         const void *payload, size_t len, char *b64, size_t size);

void eg_key_free(struct eg_key *key);

#endif

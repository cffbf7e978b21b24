/*
 * eg_signed.h — signed JSON requests (SPEC §3 "Signatures", "Replay"):
 * consent directives, patient requests and admin requests.
 *
 * A signed message carries the MQTT v5 user property `sig`: base64 DER
 * ECDSA P-256 over SHA-256(topic || 0x00 || payload). Its JSON carries
 * "nonce" (integer literal 0..2^53-1) and "issued" (RFC 3339). The nonce
 * must be greater than the last nonce accepted from the same signer (one
 * counter per signer, table `signers`, advanced by every accepted signed
 * message of that signer whatever its kind) and `issued` within +-300 s of
 * the gateway's clock, compared as instants; otherwise `replay`, and
 * nothing changes.
 */
#ifndef EG_SIGNED_H
#define EG_SIGNED_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eg_err.h"
#include "eg_queue.h"
#include "eg_store.h"

#define EG_ISSUED_SKEW_MS 300000

/* A verified signed request. */
struct eg_signed {
    cJSON *root;       /* owned, strictly parsed JSON object */
    uint64_t nonce;
    int64_t issued_ms;
};

/* Checks m as a signed request of signer (e.g. "patient:P1", "admin:ab12..")
 * whose public key is pubkey_pem (NULL or "" -> EG_E_SIGNATURE "no
 * registered key"). Order: signature (EG_E_SIGNATURE) -> strict JSON object
 * (EG_E_PARSE / EG_E_SCHEMA) -> nonce, issued present and well-formed
 * (EG_E_SCHEMA) -> issued within +-EG_ISSUED_SKEW_MS of now_ms (EG_E_REPLAY)
 * -> nonce > the signer's last accepted nonce (EG_E_REPLAY). Details name
 * the field. Does not advance the counter. On success out->root is owned by
 * the caller (eg_signed_clear). */
eg_err eg_signed_check(struct eg_store *st, const struct eg_msg *m, const char *signer,
                       const char *pubkey_pem, int64_t now_ms, struct eg_signed *out,
                       struct eg_error *e);

/* Records nonce as signer's last accepted one (inside the caller's
 * transaction, together with what the request changes). */
eg_err eg_signed_accept(struct eg_store *st, const char *signer, uint64_t nonce);

/* The signer's last accepted nonce; 0 found, 1 none yet, -1 error. */
int eg_signed_last(struct eg_store *st, const char *signer, uint64_t *nonce);

void eg_signed_clear(struct eg_signed *s);

#endif

/*
 * eg_block.c — block headers of SPEC §11: the 125-byte big-endian encoding,
 * hash = SHA-256(header), sig = ECDSA P-256 over SHA-256(header), and the
 * JSON form published on ehr/anchor/{name}/blocks.
 *
 * Header layout (offsets): version 0 (1), gateway_id 1 (32), height 33 (8),
 * prev_hash 41 (32), merkle_root 73 (32), first_seq 105 (8), count 113 (4),
 * sealed_at 117 (8); 125 bytes. merkle_root is the RFC 6962 §2.1 MTH of the
 * block's leaves (eg_merkle.c).
 */
#include "eg_block.h"

#include <mbedtls/sha256.h>
#include <string.h>

#include "eg_codec.h"
#include "eg_json.h"

#define BLOCK_SIG_DER_MAX 72 /* DER ECDSA P-256 signature */

static uint8_t *put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return p + n;
}

static uint8_t *put_bytes(uint8_t *p, const uint8_t *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

void eg_block_encode(const struct eg_block *b, uint8_t out[EG_BLOCK_HEADER_LEN])
{
    uint8_t *p = out;

    p = put_be(p, b->version, 1);
    p = put_bytes(p, b->gateway_id, 32);
    p = put_be(p, b->height, 8);
    p = put_bytes(p, b->prev_hash, 32);
    p = put_bytes(p, b->merkle_root, 32);
    p = put_be(p, b->first_seq, 8);
    p = put_be(p, b->count, 4);
    (void)put_be(p, b->sealed_at, 8);
}

/* SHA-256 of the encoded header fields of b. */
static void header_hash(const struct eg_block *b, uint8_t out[32])
{
    uint8_t hdr[EG_BLOCK_HEADER_LEN];

    eg_block_encode(b, hdr);
    (void)mbedtls_sha256_ret(hdr, sizeof hdr, out, 0);
}

void eg_block_hash(struct eg_block *b)
{
    header_hash(b, b->hash);
}

eg_err eg_block_sign(struct eg_block *b, const struct eg_key *key, struct eg_rng *rng)
{
    if (b == NULL || key == NULL)
        return EG_E_USAGE;
    eg_block_hash(b);
    return eg_key_sign_digest(key, rng, b->hash, b->sig, sizeof b->sig);
}

eg_err eg_block_verify(const struct eg_block *b, const struct eg_key *key)
{
    uint8_t h[32];

    if (b == NULL || key == NULL)
        return EG_E_USAGE;
    header_hash(b, h);
    if (memcmp(h, b->hash, 32) != 0)
        return EG_E_CONFLICT;
    /* The signed digest is the recomputed hash, which equals b->hash here. */
    if (eg_key_verify_digest(key, h, b->sig) != EG_OK)
        return EG_E_SIGNATURE;
    return EG_OK;
}

/* Adds item under key, deleting it if that fails. Returns 0 or -1. */
static int add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL)
        return -1;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

static int add_hex32(cJSON *obj, const char *key, const uint8_t v[32])
{
    char hex[65];

    eg_hex_encode(v, 32, hex);
    return add_item(obj, key, cJSON_CreateString(hex));
}

cJSON *eg_block_to_json(const struct eg_block *b)
{
    cJSON *obj = NULL;
    char sig[EG_SIG_B64_MAX];

    if (b == NULL)
        return NULL;
    obj = cJSON_CreateObject();
    if (obj == NULL)
        goto fail;
    /* Always NUL-terminate the copy, whatever the caller left in b->sig. */
    memcpy(sig, b->sig, sizeof sig);
    sig[sizeof sig - 1] = '\0';
    if (add_item(obj, "version", egjson_create_u64(b->version)) != 0 ||
        add_hex32(obj, "gateway_id", b->gateway_id) != 0 ||
        add_item(obj, "height", egjson_create_u64(b->height)) != 0 ||
        add_hex32(obj, "prev_hash", b->prev_hash) != 0 ||
        add_hex32(obj, "merkle_root", b->merkle_root) != 0 ||
        add_item(obj, "first_seq", egjson_create_u64(b->first_seq)) != 0 ||
        add_item(obj, "count", egjson_create_u64(b->count)) != 0 ||
        add_item(obj, "sealed_at", egjson_create_u64(b->sealed_at)) != 0 ||
        add_hex32(obj, "hash", b->hash) != 0 || add_item(obj, "sig", cJSON_CreateString(sig)) != 0)
        goto fail;
    return obj;
fail:
    cJSON_Delete(obj);
    return NULL;
}

static const cJSON *get_key(const cJSON *obj, const char *key, struct eg_error *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (it == NULL)
        eg_fail(e, EG_E_SCHEMA, "block: missing \"%s\"", key);
    return it;
}

/* obj[key] as an integer literal in [0, max]. */
static eg_err get_uint(const cJSON *obj, const char *key, uint64_t max, uint64_t *out,
                       struct eg_error *e)
{
    const cJSON *it = get_key(obj, key, e);

    if (it == NULL)
        return EG_E_SCHEMA;
    if (egjson_get_u53(it, out) != 0 || *out > max)
        return eg_fail(e, EG_E_SCHEMA, "block: \"%s\" must be an integer from 0 to %llu", key,
                       (unsigned long long)max);
    return EG_OK;
}

/* obj[key] as exactly 64 lowercase hex characters. */
static eg_err get_hex32(const cJSON *obj, const char *key, uint8_t out[32], struct eg_error *e)
{
    const cJSON *it = get_key(obj, key, e);
    const char *s;

    if (it == NULL)
        return EG_E_SCHEMA;
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return eg_fail(e, EG_E_SCHEMA, "block: \"%s\" must be a string", key);
    s = it->valuestring;
    if (strlen(s) != 64)
        return eg_fail(e, EG_E_SCHEMA, "block: \"%s\" must be 64 lowercase hex characters", key);
    for (size_t i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return eg_fail(e, EG_E_SCHEMA, "block: \"%s\" must be lowercase hex (bad char at %zu)",
                           key, i);
    }
    if (eg_hex_decode(s, out, 32) != 0)
        return eg_fail(e, EG_E_SCHEMA, "block: \"%s\" is not valid hex", key);
    return EG_OK;
}

eg_err eg_block_from_json(const cJSON *obj, struct eg_block *b, struct eg_error *e)
{
    struct eg_block t;
    const cJSON *it;
    uint64_t v;
    uint8_t der[BLOCK_SIG_DER_MAX + 8];
    size_t siglen;
    int derlen;
    eg_err rc;

    if (b == NULL)
        return eg_fail(e, EG_E_USAGE, "eg_block_from_json: no output");
    if (!cJSON_IsObject(obj))
        return eg_fail(e, EG_E_SCHEMA, "block: not a JSON object");
    memset(&t, 0, sizeof t);

    if ((rc = get_uint(obj, "version", 255, &v, e)) != EG_OK)
        return rc;
    if (v != 1)
        return eg_fail(e, EG_E_SCHEMA, "block: unsupported version %llu", (unsigned long long)v);
    t.version = (uint8_t)v;
    if ((rc = get_hex32(obj, "gateway_id", t.gateway_id, e)) != EG_OK ||
        (rc = get_uint(obj, "height", EG_U53_MAX, &t.height, e)) != EG_OK ||
        (rc = get_hex32(obj, "prev_hash", t.prev_hash, e)) != EG_OK ||
        (rc = get_hex32(obj, "merkle_root", t.merkle_root, e)) != EG_OK ||
        (rc = get_uint(obj, "first_seq", EG_U53_MAX, &t.first_seq, e)) != EG_OK)
        return rc;
    if ((rc = get_uint(obj, "count", UINT32_MAX, &v, e)) != EG_OK)
        return rc;
    if (v == 0) /* SPEC §11: no empty blocks */
        return eg_fail(e, EG_E_SCHEMA, "block: \"count\" must be at least 1");
    t.count = (uint32_t)v;
    if ((rc = get_uint(obj, "sealed_at", EG_U53_MAX, &t.sealed_at, e)) != EG_OK ||
        (rc = get_hex32(obj, "hash", t.hash, e)) != EG_OK)
        return rc;

    if ((it = get_key(obj, "sig", e)) == NULL)
        return EG_E_SCHEMA;
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return eg_fail(e, EG_E_SCHEMA, "block: \"sig\" must be a string");
    siglen = strlen(it->valuestring);
    if (siglen == 0 || siglen >= sizeof t.sig)
        return eg_fail(e, EG_E_SCHEMA, "block: \"sig\" has a bad length");
    derlen = eg_base64_decode(it->valuestring, siglen, der, sizeof der);
    if (derlen <= 0 || derlen > BLOCK_SIG_DER_MAX)
        return eg_fail(e, EG_E_SCHEMA, "block: \"sig\" is not base64 of a P-256 signature");
    memcpy(t.sig, it->valuestring, siglen + 1);

    *b = t;
    return EG_OK;
}

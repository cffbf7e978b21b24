/*
 * fuzz_proof.c — libFuzzer target for the proof verifier (SPEC §11): the
 * block JSON (eg_block_from_json), the block check (eg_block_verify with a
 * fixed P-256 key) and RFC 6962 inclusion (eg_merkle_verify).
 *
 * The first byte picks the input kind:
 *   '{'   JSON (egjson_parse). An object with a "block" member is a proof
 *         reply {"leaf_hash","leaf_index","audit_path":[hex..],"block"} and
 *         is checked as an auditor does (firmware-sim/sim_authority.c):
 *         leaf_hash, leaf_index, eg_block_from_json, eg_block_verify, then
 *         eg_merkle_verify(leaf, leaf_index, block.count, path, root).
 *         Any other object is taken as a block on its own.
 *   else  a binary Merkle record; bit 0 of the first byte:
 *     0  tree: n = 1 + b[1] % 48 leaves, leaf i = eg_merkle_leaf(b[3+i]);
 *        eg_merkle_root and eg_merkle_path for index b[2] % n, then the
 *        (op, arg) byte pairs after the leaves change the leaf, a path
 *        hash, the index, the size or the path length before
 *        eg_merkle_verify runs against the real root;
 *     1  raw: n (u64 LE, b[1..8]), index (u64 LE, b[9..16]), flags b[17],
 *        leaf b[18..49], root b[50..81], path = the rest in 32-byte
 *        hashes; flags bit 0 replaces the root by the one the reference
 *        below computes from the path, so huge trees verify too.
 *
 * Checks:
 *   - leaf, root and path are passed in heap buffers of exactly their size,
 *     so any out-of-bounds read of eg_merkle_verify is an ASan report;
 *   - eg_merkle_verify agrees with a reference written here from RFC 6962
 *     §2.1.1 (recursive, top-down, leaf-to-root path order) on every input:
 *     EG_E_SCHEMA for index >= n or a path of the wrong length, EG_OK
 *     exactly when the path hashes to the root, else EG_E_NOT_FOUND;
 *   - tree mode: eg_merkle_root equals the recursive RFC 6962 MTH, the real
 *     path verifies, and a changed proof that still verifies for the same
 *     n is the real one (leaf and path equal eg_merkle_path's for that
 *     index, and eg_merkle_root over the leaves with that leaf put in
 *     reproduces the root);
 *   - blocks: eg_block_from_json accepts only what eg_block.h promises
 *     (version 1, count >= 1, 53-bit integers, a base64 sig) and round-trips
 *     through eg_block_to_json; eg_block_encode follows the SPEC §11 byte
 *     table written out here; eg_block_verify says CONFLICT exactly when the
 *     hash does not match the fields, and a verified block no longer
 *     verifies once a field changes (re-hashed or not).
 *
 * The key is tests/fixtures/keys/p256.pub (a test key; the seed blocks are
 * signed with its private half, p256_sec1.pem, so the good path is reached).
 *
 *   ./fuzz_proof -dict=tests/fuzz/proof.dict work tests/fuzz/corpus/proof
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "eg_block.h"
#include "eg_codec.h"
#include "eg_json.h"
#include "eg_key.h"
#include "eg_merkle.h"
#include "fuzz_util.h"

#define TREE_MAX 48

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char gateway_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEd6/JhhyGmrOYL0YTWOXwaqJGAbQL\n"
    "RyOOhSgbivv2mIiCWSUc2rN0QLP/nV3j9cP77UsyXrfyK1m7MVb+3zmzNg==\n"
    "-----END PUBLIC KEY-----\n";
static struct eg_key *gateway_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct eg_error e = {EG_OK, ""};

    (void)argc;
    (void)argv;
    if (eg_key_parse_public(gateway_pem, sizeof gateway_pem, &gateway_key, &e) != EG_OK) {
        fprintf(stderr, "fuzz_proof: the embedded key does not parse: %s\n", e.detail);
        abort();
    }
    return 0;
}

/* ---- the RFC 6962 reference --------------------------------------------- */

static void ref_node(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    uint8_t buf[65];

    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    (void)mbedtls_sha256_ret(buf, sizeof buf, out, 0);
}

/* The largest power of two smaller than n (n >= 2). */
static size_t ref_split(size_t n)
{
    size_t k = 1;

    while (k < n - k)
        k <<= 1;
    return k;
}

/* MTH(D[n]) of RFC 6962 §2.1, recursively. */
static void ref_mth(const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
    uint8_t l[32], r[32];
    size_t k;

    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    k = ref_split(n);
    ref_mth(leaves, k, l);
    ref_mth(leaves + k, n - k, r);
    ref_node(l, r, out);
}

/* Length of PATH(m, D[n]) (RFC 6962 §2.1.1). */
static size_t ref_len(size_t m, size_t n)
{
    size_t k;

    if (n <= 1)
        return 0;
    k = ref_split(n);
    return 1 + (m < k ? ref_len(m, k) : ref_len(m - k, n - k));
}

/* The root PATH(m, D[n]) leads to from leaf; path[0] is next to the leaf,
 * path[len-1] next to the root, len == ref_len(m, n). */
static void ref_root(const uint8_t leaf[32], size_t m, size_t n, const uint8_t (*path)[32],
                     size_t len, uint8_t out[32])
{
    uint8_t sub[32];
    size_t k;

    if (n == 1) {
        memcpy(out, leaf, 32);
        return;
    }
    k = ref_split(n);
    if (m < k) {
        ref_root(leaf, m, k, path, len - 1, sub);
        ref_node(sub, path[len - 1], out);
    } else {
        ref_root(leaf, m - k, n - k, path, len - 1, sub);
        ref_node(path[len - 1], sub, out);
    }
}

/* What eg_merkle_verify must answer. */
static eg_err ref_verify(const uint8_t leaf[32], size_t m, size_t n, const uint8_t (*path)[32],
                         size_t len, const uint8_t root[32])
{
    uint8_t r[32];

    if (m >= n || len != ref_len(m, n))
        return EG_E_SCHEMA;
    ref_root(leaf, m, n, path, len, r);
    return memcmp(r, root, 32) == 0 ? EG_OK : EG_E_NOT_FOUND;
}

/* eg_merkle_verify on exact-size heap copies, checked against ref_verify. */
static eg_err verify_both(const uint8_t leaf[32], size_t m, size_t n, const uint8_t (*path)[32],
                          size_t len, const uint8_t root[32])
{
    uint8_t *hl = malloc(32), *hr = malloc(32), (*hp)[32] = NULL;
    eg_err got, want;

    FUZZ_CHECK(hl && hr);
    memcpy(hl, leaf, 32);
    memcpy(hr, root, 32);
    if (len > 0) {
        hp = malloc(len * 32);
        FUZZ_CHECK(hp != NULL);
        memcpy(hp, path, len * 32);
    }
    got = eg_merkle_verify(hl, m, n, (const uint8_t(*)[32])hp, len, hr);
    want = ref_verify(leaf, m, n, path, len, root);
    if (got != want) {
        fprintf(stderr, "eg_merkle_verify(index %zu, n %zu, depth %zu) = %d, RFC 6962 says %d\n", m,
                n, len, (int)got, (int)want);
        abort();
    }
    free(hl);
    free(hr);
    free(hp);
    return got;
}

/* ---- binary Merkle records ---------------------------------------------- */

static void tree_mode(const uint8_t *data, size_t size)
{
    static uint8_t leaves[TREE_MAX][32], path[64][32], real[64][32], mine[TREE_MAX][32];
    uint8_t root[32], ref[32], leaf[32], again[32];
    size_t n, m, depth, rdepth, i, len, n2, m2;

    if (size < 3)
        return;
    n = 1 + data[1] % TREE_MAX;
    m = data[2] % n;
    for (i = 0; i < n; i++) {
        uint8_t b = 3 + i < size ? data[3 + i] : (uint8_t)i;
        eg_merkle_leaf(&b, 1, leaves[i]);
    }
    FUZZ_CHECK(eg_merkle_root((const uint8_t(*)[32])leaves, n, root) == EG_OK);
    ref_mth((const uint8_t(*)[32])leaves, n, ref);
    FUZZ_CHECK(memcmp(root, ref, 32) == 0);
    FUZZ_CHECK(eg_merkle_path((const uint8_t(*)[32])leaves, n, m, path, &depth) == EG_OK);
    FUZZ_CHECK(depth == ref_len(m, n) && depth <= 64);
    FUZZ_CHECK(verify_both(leaves[m], m, n, (const uint8_t(*)[32])path, depth, root) == EG_OK);
    FUZZ_CHECK(eg_merkle_path((const uint8_t(*)[32])leaves, n, n, real, &rdepth) == EG_E_SCHEMA);

    /* the changes: (op, arg) pairs after the leaf bytes */
    memcpy(leaf, leaves[m], 32);
    m2 = m;
    n2 = n;
    len = depth;
    for (i = 3 + n; i + 1 < size; i += 2) {
        uint8_t op = data[i], arg = data[i + 1];

        switch (op % 6) {
        case 0: /* a bit of the leaf */
            leaf[arg % 32] ^= (uint8_t)(1u << (arg >> 5));
            break;
        case 1: /* a bit of a path hash */
            if (len > 0)
                path[arg % len][(arg / 4) % 32] ^= (uint8_t)(1u << (arg % 8));
            break;
        case 2: /* the index */
            m2 = (size_t)((int64_t)m2 + (int8_t)arg);
            break;
        case 3: /* the tree size */
            n2 = (size_t)((int64_t)n2 + (int8_t)arg);
            break;
        case 4: /* the path length: drop or repeat the top hash */
            if (arg & 1) {
                if (len > 0)
                    len--;
            } else if (len < 64) {
                memcpy(path[len], len > 0 ? path[len - 1] : leaf, 32);
                len++;
            }
            break;
        default: /* another leaf */
            memcpy(leaf, leaves[arg % n], 32);
            break;
        }
    }
    if (verify_both(leaf, m2, n2, (const uint8_t(*)[32])path, len, root) != EG_OK || n2 != n)
        return;
    /* it verifies for the same tree size: it is the real proof of m2 */
    FUZZ_CHECK(m2 < n);
    FUZZ_CHECK(eg_merkle_path((const uint8_t(*)[32])leaves, n, m2, real, &rdepth) == EG_OK);
    FUZZ_CHECK(rdepth == len && memcmp(real, path, len * 32) == 0);
    FUZZ_CHECK(memcmp(leaf, leaves[m2], 32) == 0);
    memcpy(mine, leaves, n * 32);
    memcpy(mine[m2], leaf, 32);
    FUZZ_CHECK(eg_merkle_root((const uint8_t(*)[32])mine, n, again) == EG_OK);
    FUZZ_CHECK(memcmp(again, root, 32) == 0);
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void raw_mode(const uint8_t *data, size_t size)
{
    const size_t head = 82;
    uint8_t root[32];
    size_t n, m, len;
    const uint8_t(*path)[32];

    if (size < head)
        return;
    n = (size_t)get_le64(data + 1);
    m = (size_t)get_le64(data + 9);
    len = (size - head) / 32;
    path = (const uint8_t(*)[32])(data + head);
    memcpy(root, data + 50, 32);
    if ((data[17] & 1) && m < n && len == ref_len(m, n))
        ref_root(data + 18, m, n, path, len, root);
    (void)verify_both(data + 18, m, n, path, len, root);
}

/* ---- blocks ---------------------------------------------------------------- */

/* SPEC §11: the header bytes, big-endian, written out from the table. */
static void spec_header(const struct eg_block *b, uint8_t out[EG_BLOCK_HEADER_LEN])
{
    size_t o = 0;
    int i;

    out[o++] = b->version;
    memcpy(out + o, b->gateway_id, 32);
    o += 32;
    for (i = 7; i >= 0; i--)
        out[o++] = (uint8_t)(b->height >> (8 * i));
    memcpy(out + o, b->prev_hash, 32);
    o += 32;
    memcpy(out + o, b->merkle_root, 32);
    o += 32;
    for (i = 7; i >= 0; i--)
        out[o++] = (uint8_t)(b->first_seq >> (8 * i));
    for (i = 3; i >= 0; i--)
        out[o++] = (uint8_t)(b->count >> (8 * i));
    for (i = 7; i >= 0; i--)
        out[o++] = (uint8_t)(b->sealed_at >> (8 * i));
    FUZZ_CHECK(o == EG_BLOCK_HEADER_LEN);
}

static int same_block(const struct eg_block *a, const struct eg_block *b)
{
    return a->version == b->version && memcmp(a->gateway_id, b->gateway_id, 32) == 0 &&
           a->height == b->height && memcmp(a->prev_hash, b->prev_hash, 32) == 0 &&
           memcmp(a->merkle_root, b->merkle_root, 32) == 0 && a->first_seq == b->first_seq &&
           a->count == b->count && a->sealed_at == b->sealed_at &&
           memcmp(a->hash, b->hash, 32) == 0 && strcmp(a->sig, b->sig) == 0;
}

/* eg_block_from_json on obj; returns 1 and fills *b if it was accepted. */
static int check_block(const cJSON *obj, struct eg_block *b)
{
    struct eg_error e = {EG_OK, ""};
    struct eg_block back, t;
    uint8_t hdr[EG_BLOCK_HEADER_LEN], want[EG_BLOCK_HEADER_LEN], h[32], der[80];
    cJSON *j = NULL;
    char *txt;
    eg_err rc;
    size_t siglen, len = 0;

    memset(b, 0x5A, sizeof *b);
    rc = eg_block_from_json(obj, b, &e);
    if (rc != EG_OK) {
        FUZZ_CHECK(rc == EG_E_SCHEMA && e.code == rc && fuzz_detail_ok(&e));
        return 0;
    }
    FUZZ_CHECK(b->version == 1 && b->count >= 1);
    FUZZ_CHECK(b->height <= EG_U53_MAX && b->first_seq <= EG_U53_MAX && b->sealed_at <= EG_U53_MAX);
    siglen = strnlen(b->sig, sizeof b->sig);
    FUZZ_CHECK(siglen > 0 && siglen < sizeof b->sig);
    FUZZ_CHECK(eg_base64_decode(b->sig, siglen, der, sizeof der) > 0);

    /* round trip through the JSON text (eg_block_to_json writes the
     * integers as raw text, which only egjson_parse turns into literals) */
    j = eg_block_to_json(b);
    FUZZ_CHECK(j != NULL);
    txt = egjson_print(j, &len);
    cJSON_Delete(j);
    j = NULL;
    FUZZ_CHECK(txt && egjson_parse((const uint8_t *)txt, len, &j, &e) == EG_OK);
    memset(&back, 0, sizeof back);
    FUZZ_CHECK(eg_block_from_json(j, &back, &e) == EG_OK && same_block(b, &back));
    cJSON_Delete(j);
    free(txt);

    /* the header layout and the hash */
    eg_block_encode(b, hdr);
    spec_header(b, want);
    FUZZ_CHECK(memcmp(hdr, want, sizeof hdr) == 0);
    (void)mbedtls_sha256_ret(want, sizeof want, h, 0);
    t = *b;
    eg_block_hash(&t);
    FUZZ_CHECK(memcmp(t.hash, h, 32) == 0);

    rc = eg_block_verify(b, gateway_key);
    FUZZ_CHECK(rc == EG_OK || rc == EG_E_CONFLICT || rc == EG_E_SIGNATURE);
    FUZZ_CHECK((rc == EG_E_CONFLICT) == (memcmp(b->hash, h, 32) != 0));
    if (rc == EG_OK) {
        /* a changed field: the stale hash conflicts, a new hash is unsigned */
        t = *b;
        t.sealed_at ^= 1;
        FUZZ_CHECK(eg_block_verify(&t, gateway_key) == EG_E_CONFLICT);
        eg_block_hash(&t);
        FUZZ_CHECK(eg_block_verify(&t, gateway_key) == EG_E_SIGNATURE);
    }
    return 1;
}

/* A proof reply, checked the way an auditor does. */
static void check_proof(const cJSON *reply)
{
    struct eg_block b;
    const cJSON *ap, *it;
    const char *lh;
    uint8_t leaf[32], (*path)[32] = NULL;
    uint64_t index = 0;
    size_t depth = 0;

    if (!check_block(cJSON_GetObjectItemCaseSensitive(reply, "block"), &b))
        return;
    lh = egjson_str(reply, "leaf_hash");
    if (!lh || strlen(lh) != 64 || eg_hex_decode(lh, leaf, 32) != 0 ||
        egjson_get_u53(cJSON_GetObjectItemCaseSensitive(reply, "leaf_index"), &index) != 0)
        return;
    ap = cJSON_GetObjectItemCaseSensitive(reply, "audit_path");
    if (!cJSON_IsArray(ap))
        return;
    if (cJSON_GetArraySize(ap) > 0) {
        path = calloc((size_t)cJSON_GetArraySize(ap), sizeof *path);
        FUZZ_CHECK(path != NULL);
    }
    cJSON_ArrayForEach(it, ap)
    {
        if (!cJSON_IsString(it) || strlen(it->valuestring) != 64 ||
            eg_hex_decode(it->valuestring, path[depth], 32) != 0)
            goto out;
        depth++;
    }
    (void)verify_both(leaf, (size_t)index, b.count, (const uint8_t(*)[32])path, depth,
                      b.merkle_root);
out:
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eg_error e = {EG_OK, ""};
    struct eg_block b;
    cJSON *root = NULL;

    if (size == 0)
        return 0;
    if (data[0] != '{') {
        if (data[0] & 1)
            raw_mode(data, size);
        else
            tree_mode(data, size);
        return 0;
    }
    if (egjson_parse(data, size, &root, &e) != EG_OK)
        return 0;
    if (cJSON_GetObjectItemCaseSensitive(root, "block"))
        check_proof(root);
    else
        (void)check_block(root, &b);
    cJSON_Delete(root);
    return 0;
}

/*
 * eg_merkle.c — RFC 6962 Merkle Tree Hash and audit paths, RFC 9162
 * inclusion verification.
 *
 * MTH (RFC 6962 §2.1) splits n leaves at k, the largest power of two smaller
 * than n: the left part is always a perfect tree of k leaves. So the root can
 * be folded left to right with a stack of perfect-subtree hashes, one slot
 * per bit of n (the "compact range"): after leaf i is pushed, equal-sized
 * neighbours are merged, and at the end the remaining subtrees (sizes are the
 * set bits of n, largest at the bottom) are combined right to left. This is
 * O(n) hashes and O(log n) memory.
 *
 * PATH (RFC 6962 §2.1.1) is walked top-down, recording at each split the
 * MTH of the other side; the list is then reversed so it runs leaf to root.
 * Verification follows RFC 9162 §2.1.3.2 step by step.
 */
#include "eg_merkle.h"

#include <mbedtls/sha256.h>
#include <string.h>

#define MERKLE_MAX_DEPTH 64 /* a size_t tree is at most 64 levels deep */

/* SHA-256(0x01 || left || right), RFC 6962 §2.1. out may alias either input. */
static void node_hash(mbedtls_sha256_context *ctx, const uint8_t left[32], const uint8_t right[32],
                      uint8_t out[32])
{
    uint8_t buf[65];

    buf[0] = 0x01;
    memcpy(buf + 1, left, 32);
    memcpy(buf + 33, right, 32);
    /* Cannot fail for SHA-256 without hardware acceleration hooks. */
    (void)mbedtls_sha256_starts_ret(ctx, 0);
    (void)mbedtls_sha256_update_ret(ctx, buf, sizeof buf);
    (void)mbedtls_sha256_finish_ret(ctx, out);
}

void eg_merkle_leaf(const void *data, size_t len, uint8_t out[32])
{
    static const uint8_t prefix = 0x00;
    mbedtls_sha256_context ctx;

    mbedtls_sha256_init(&ctx);
    (void)mbedtls_sha256_starts_ret(&ctx, 0);
    (void)mbedtls_sha256_update_ret(&ctx, &prefix, 1);
    if (len > 0)
        (void)mbedtls_sha256_update_ret(&ctx, data, len);
    (void)mbedtls_sha256_finish_ret(&ctx, out);
    mbedtls_sha256_free(&ctx);
}

/* MTH of leaves[0..n), n >= 1, with a caller-supplied hashing context. */
static void subtree_root(mbedtls_sha256_context *ctx, const uint8_t (*leaves)[32], size_t n,
                         uint8_t out[32])
{
    uint8_t stack[MERKLE_MAX_DEPTH + 1][32];
    size_t top = 0; /* number of subtree hashes on the stack */

    for (size_t i = 0; i < n; i++) {
        memcpy(stack[top++], leaves[i], 32);
        /* Leaf i completes one perfect subtree per trailing one bit of i. */
        for (size_t c = i; c & 1; c >>= 1) {
            node_hash(ctx, stack[top - 2], stack[top - 1], stack[top - 2]);
            top--;
        }
    }
    /* Remaining subtrees shrink from bottom to top; fold from the right. */
    while (top > 1) {
        node_hash(ctx, stack[top - 2], stack[top - 1], stack[top - 2]);
        top--;
    }
    memcpy(out, stack[0], 32);
}

eg_err eg_merkle_root(const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
    mbedtls_sha256_context ctx;

    if (out == NULL || (n > 0 && leaves == NULL))
        return EG_E_USAGE;
    if (n == 0) {
        /* RFC 6962 §2.1: the hash of an empty list is the hash of "". */
        (void)mbedtls_sha256_ret(NULL, 0, out, 0);
        return EG_OK;
    }
    mbedtls_sha256_init(&ctx);
    subtree_root(&ctx, leaves, n, out);
    mbedtls_sha256_free(&ctx);
    return EG_OK;
}

/* Largest power of two strictly smaller than n (n >= 2). */
static size_t split_point(size_t n)
{
    size_t k = 1;

    while (k < n - k) /* k * 2 < n, without overflow */
        k <<= 1;
    return k;
}

eg_err eg_merkle_path(const uint8_t (*leaves)[32], size_t n, size_t index, uint8_t (*path)[32],
                      size_t *depth)
{
    mbedtls_sha256_context ctx;
    size_t lo = 0, count = n, m = index, d = 0;

    if (leaves == NULL || path == NULL || depth == NULL)
        return EG_E_USAGE;
    *depth = 0;
    if (index >= n)
        return EG_E_SCHEMA;

    mbedtls_sha256_init(&ctx);
    /* Top-down: path[d] is the sibling at depth d from the root. */
    while (count > 1) {
        size_t k = split_point(count);

        if (m < k) {
            subtree_root(&ctx, leaves + lo + k, count - k, path[d]);
            count = k;
        } else {
            subtree_root(&ctx, leaves + lo, k, path[d]);
            lo += k;
            m -= k;
            count -= k;
        }
        d++;
    }
    mbedtls_sha256_free(&ctx);

    /* RFC 6962 §2.1.1 lists the path from the leaf up: reverse in place. */
    for (size_t i = 0; i < d / 2; i++) {
        uint8_t tmp[32];

        memcpy(tmp, path[i], 32);
        memcpy(path[i], path[d - 1 - i], 32);
        memcpy(path[d - 1 - i], tmp, 32);
    }
    *depth = d;
    return EG_OK;
}

/* Length of the inclusion proof for index in a tree of n leaves (index < n):
 * the number of loop rounds RFC 9162 §2.1.3.2 takes until sn reaches 0. */
static size_t proof_length(size_t index, size_t n)
{
    size_t fn = index, sn = n - 1, len = 0;

    while (sn > 0) {
        if ((fn & 1) || fn == sn) {
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        }
        fn >>= 1;
        sn >>= 1;
        len++;
    }
    return len;
}

eg_err eg_merkle_verify(const uint8_t leaf[32], size_t index, size_t n, const uint8_t (*path)[32],
                        size_t depth, const uint8_t root[32])
{
    mbedtls_sha256_context ctx;
    uint8_t r[32];
    size_t fn, sn;
    eg_err rc = EG_E_NOT_FOUND;

    if (leaf == NULL || root == NULL || (depth > 0 && path == NULL))
        return EG_E_USAGE;
    /* RFC 9162 §2.1.3.2 step 1. */
    if (index >= n)
        return EG_E_SCHEMA;
    if (depth != proof_length(index, n))
        return EG_E_SCHEMA;

    mbedtls_sha256_init(&ctx);
    fn = index; /* step 2 */
    sn = n - 1;
    memcpy(r, leaf, 32);                 /* step 3 */
    for (size_t i = 0; i < depth; i++) { /* step 4 */
        if (sn == 0)
            goto out; /* 4a: cannot happen after the length check */
        if ((fn & 1) || fn == sn) {
            node_hash(&ctx, path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            node_hash(&ctx, r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* Step 5. Roots are public, so plain memcmp is fine. */
    if (sn == 0 && memcmp(r, root, 32) == 0)
        rc = EG_OK;
out:
    mbedtls_sha256_free(&ctx);
    return rc;
}

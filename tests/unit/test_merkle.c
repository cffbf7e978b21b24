/*
 * test_merkle.c — anchor/eg_merkle against published RFC 6962 vectors.
 *
 * The eight inputs, the roots of the trees of sizes 1..8 and the audit
 * paths come from Certificate Transparency's C++ suite
 * (google/certificate-transparency cpp/merkletree/merkle_tree_test.cc,
 * kInputs / kSHA256Roots / kSHA256Paths; that suite numbers leaves from 1,
 * here indices are 0-based). One extra path (index 2 of 5) was derived by
 * hand with the openssl CLI (leaf = SHA-256(0x00||d), node =
 * SHA-256(0x01||l||r)), see path_vectors below. Verification follows
 * RFC 9162 §2.1.3.2; every leaf of every tree size 1..70 is checked, with
 * tampered paths, leaves, indices and sizes.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/sha256.h>

#include "eg_merkle.h"

/* ---- helpers ---------------------------------------------------------- */

static int unhex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes lowercase hex of exactly 2*len chars; aborts the test on misuse. */
static void unhex(const char *hex, uint8_t *out, size_t len)
{
    CU_ASSERT_FATAL(strlen(hex) == 2 * len);
    for (size_t i = 0; i < len; i++) {
        int hi = unhex_nibble(hex[2 * i]), lo = unhex_nibble(hex[2 * i + 1]);

        CU_ASSERT_FATAL(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int hash_is(const uint8_t h[32], const char *hex)
{
    uint8_t want[32];

    unhex(hex, want, 32);
    return memcmp(h, want, 32) == 0;
}

/* ---- the RFC 6962 reference tree -------------------------------------- */

static const char *const ct_inputs[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};

static const char *const ct_roots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static const char empty_hash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct path_vector {
    size_t index, size, len;
    const char *path[3];
};

static const struct path_vector path_vectors[] = {
    /* CT {1, 1, 0}: a single leaf has an empty path. */
    {0, 1, 0, {NULL, NULL, NULL}},
    /* CT {1, 8, 3} */
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    /* CT {6, 8, 3} */
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    /* CT {3, 3, 1} */
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125", NULL, NULL}},
    /* CT {2, 5, 3} */
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    /* Index 2 of 5, derived by hand: sibling leaf 3 = SHA-256(00 2021)
     * (`printf '\x00\x20\x21' | openssl dgst -sha256`), then MTH(d0,d1) =
     * root of size 2, then leaf 4 = SHA-256(00 3031). */
    {2,
     5,
     3,
     {"07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

static uint8_t ct_leaves[8][32];

static void make_ct_leaves(void)
{
    for (size_t i = 0; i < 8; i++) {
        uint8_t data[16];
        size_t len = strlen(ct_inputs[i]) / 2;

        unhex(ct_inputs[i], data, len);
        eg_merkle_leaf(data, len, ct_leaves[i]);
    }
}

/* Recursive MTH straight from RFC 6962 §2.1, as an independent reference
 * for the iterative implementation on sizes beyond the vectors. */
static void ref_mth(const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
    uint8_t buf[65];
    size_t k = 1;

    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    while (2 * k < n)
        k *= 2;
    buf[0] = 0x01;
    ref_mth(leaves, k, buf + 1);
    ref_mth(leaves + k, n - k, buf + 33);
    mbedtls_sha256_ret(buf, sizeof buf, out, 0);
}

/* ---- tests ------------------------------------------------------------ */

static void test_leaf_hash(void)
{
    uint8_t h[32];

    make_ct_leaves();
    /* The 1-leaf root is the leaf hash of the empty input. */
    CU_ASSERT(hash_is(ct_leaves[0], ct_roots[0]));
    /* Leaf hashes that appear in CT's published paths. */
    CU_ASSERT(hash_is(ct_leaves[1], path_vectors[1].path[0]));
    CU_ASSERT(hash_is(ct_leaves[4], path_vectors[2].path[0]));
    CU_ASSERT(hash_is(ct_leaves[0], path_vectors[4].path[0]));
    /* A leaf hash is not the plain SHA-256 of the data. */
    eg_merkle_leaf("", 0, h);
    CU_ASSERT(!hash_is(h, empty_hash));
}

static void test_roots(void)
{
    uint8_t root[32];

    make_ct_leaves();
    CU_ASSERT_EQUAL(eg_merkle_root(NULL, 0, root), EG_OK);
    CU_ASSERT(hash_is(root, empty_hash));
    for (size_t n = 1; n <= 8; n++) {
        CU_ASSERT_EQUAL_FATAL(eg_merkle_root((const uint8_t(*)[32])ct_leaves, n, root), EG_OK);
        if (!hash_is(root, ct_roots[n - 1]))
            fprintf(stderr, "root of size %zu differs\n", n);
        CU_ASSERT(hash_is(root, ct_roots[n - 1]));
    }
    /* Interior nodes seen in the published paths. */
    CU_ASSERT_EQUAL(eg_merkle_root((const uint8_t(*)[32])ct_leaves + 2, 2, root), EG_OK);
    CU_ASSERT(hash_is(root, "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"));
    CU_ASSERT_EQUAL(eg_merkle_root((const uint8_t(*)[32])ct_leaves + 4, 4, root), EG_OK);
    CU_ASSERT(hash_is(root, "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"));
}

static void test_path_vectors(void)
{
    uint8_t path[64][32], want[3][32], root[32];
    size_t depth;

    make_ct_leaves();
    for (size_t v = 0; v < sizeof path_vectors / sizeof path_vectors[0]; v++) {
        const struct path_vector *pv = &path_vectors[v];

        CU_ASSERT_EQUAL_FATAL(
            eg_merkle_path((const uint8_t(*)[32])ct_leaves, pv->size, pv->index, path, &depth),
            EG_OK);
        CU_ASSERT_EQUAL(depth, pv->len);
        for (size_t j = 0; j < pv->len && j < depth; j++) {
            if (!hash_is(path[j], pv->path[j]))
                fprintf(stderr, "path %zu of %zu: element %zu differs\n", pv->index, pv->size, j);
            CU_ASSERT(hash_is(path[j], pv->path[j]));
        }
        /* The published path verifies against the published root. */
        for (size_t j = 0; j < pv->len; j++)
            unhex(pv->path[j], want[j], 32);
        unhex(ct_roots[pv->size - 1], root, 32);
        CU_ASSERT_EQUAL(eg_merkle_verify(ct_leaves[pv->index], pv->index, pv->size,
                                         (const uint8_t(*)[32])want, pv->len, root),
                        EG_OK);
    }
}

static void test_verify_all_sizes(void)
{
    enum { MAXN = 70 };
    static uint8_t leaves[MAXN][32];
    uint8_t path[64][32], root[32], ref[32], bad[32];
    size_t depth;
    const uint8_t(*cpath)[32] = (const uint8_t(*)[32])path;

    for (size_t i = 0; i < MAXN; i++) {
        uint8_t d[2] = {(uint8_t)i, 0xA5};

        eg_merkle_leaf(d, sizeof d, leaves[i]);
    }
    for (size_t n = 1; n <= MAXN; n++) {
        CU_ASSERT_EQUAL_FATAL(eg_merkle_root((const uint8_t(*)[32])leaves, n, root), EG_OK);
        ref_mth((const uint8_t(*)[32])leaves, n, ref);
        CU_ASSERT(memcmp(root, ref, 32) == 0);

        for (size_t i = 0; i < n; i++) {
            CU_ASSERT_EQUAL_FATAL(eg_merkle_path((const uint8_t(*)[32])leaves, n, i, path, &depth),
                                  EG_OK);
            CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], i, n, cpath, depth, root), EG_OK);

            /* Tampered path elements. */
            for (size_t j = 0; j < depth; j++) {
                path[j][j % 32] ^= 0x01;
                CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], i, n, cpath, depth, root),
                                EG_E_NOT_FOUND);
                path[j][j % 32] ^= 0x01;
            }
            /* Tampered leaf, and another leaf at this index. */
            memcpy(bad, leaves[i], 32);
            bad[31] ^= 0x80;
            CU_ASSERT_EQUAL(eg_merkle_verify(bad, i, n, cpath, depth, root), EG_E_NOT_FOUND);
            if (n > 1)
                CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[(i + 1) % n], i, n, cpath, depth, root),
                                    EG_OK);
            /* Tampered root. */
            memcpy(bad, root, 32);
            bad[0] ^= 0x01;
            CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], i, n, cpath, depth, bad), EG_E_NOT_FOUND);
            /* Wrong index (inside the tree). */
            if (i > 0)
                CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[i], i - 1, n, cpath, depth, root),
                                    EG_OK);
            if (i + 1 < n)
                CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[i], i + 1, n, cpath, depth, root),
                                    EG_OK);
            if ((i ^ 2) < n && (i ^ 2) != i)
                CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[i], i ^ 2, n, cpath, depth, root),
                                    EG_OK);
            /* Wrong tree size. */
            CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[i], i, 2 * n, cpath, depth, root), EG_OK);
            if (n / 2 > i)
                CU_ASSERT_NOT_EQUAL(eg_merkle_verify(leaves[i], i, n / 2, cpath, depth, root),
                                    EG_OK);
            /* Index outside the tree. */
            CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], n, n, cpath, depth, root), EG_E_SCHEMA);
            CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], n + i, n, cpath, depth, root), EG_E_SCHEMA);
            /* Path of the wrong length: one too many, one too few. */
            memcpy(path[depth], root, 32);
            CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], i, n, cpath, depth + 1, root), EG_E_SCHEMA);
            if (depth > 0)
                CU_ASSERT_EQUAL(eg_merkle_verify(leaves[i], i, n, cpath, depth - 1, root),
                                EG_E_SCHEMA);
        }
        CU_ASSERT_EQUAL(eg_merkle_path((const uint8_t(*)[32])leaves, n, n, path, &depth),
                        EG_E_SCHEMA);
    }
    /* Degenerate inputs. */
    CU_ASSERT_EQUAL(eg_merkle_verify(leaves[0], 0, 0, cpath, 0, root), EG_E_SCHEMA);
    CU_ASSERT_EQUAL(eg_merkle_path((const uint8_t(*)[32])leaves, 0, 0, path, &depth), EG_E_SCHEMA);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Root of a large tree, with its rate printed (not asserted). The path of a
 * leaf in it must verify against that root. */
static void test_large_tree_rate(void)
{
    const size_t n = 1000000 + 12345; /* not a power of two */
    uint8_t(*leaves)[32] = malloc(n * 32);
    uint8_t root[32], path[64][32];
    size_t depth = 0, idx = 777777;
    double t0, t1;

    CU_ASSERT_FATAL(leaves != NULL);
    for (size_t i = 0; i < n; i++) {
        memset(leaves[i], 0, 32);
        memcpy(leaves[i], &i, sizeof i);
    }
    t0 = now_s();
    CU_ASSERT_EQUAL(eg_merkle_root((const uint8_t(*)[32])leaves, n, root), EG_OK);
    t1 = now_s();
    printf("\n    eg_merkle_root: %zu leaves in %.3f s = %.2f M leaves/s\n", n, t1 - t0,
           (double)n / (t1 - t0) / 1e6);
    CU_ASSERT_EQUAL(eg_merkle_path((const uint8_t(*)[32])leaves, n, idx, path, &depth), EG_OK);
    CU_ASSERT_EQUAL(depth, 20);
    CU_ASSERT_EQUAL(eg_merkle_verify(leaves[idx], idx, n, (const uint8_t(*)[32])path, depth, root),
                    EG_OK);
    free(leaves);
}

int main(void)
{
    CU_pSuite s;
    int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    s = CU_add_suite("merkle", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "leaf hash (RFC 6962 §2.1)", test_leaf_hash) ||
        !CU_add_test(s, "roots of sizes 0..8 (CT vectors)", test_roots) ||
        !CU_add_test(s, "audit paths (CT vectors, RFC 6962 §2.1.1)", test_path_vectors) ||
        !CU_add_test(s, "verify every leaf of sizes 1..70 (RFC 9162 §2.1.3.2)",
                     test_verify_all_sizes) ||
        !CU_add_test(s, "1M-leaf root rate", test_large_tree_rate)) {
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = (int)CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

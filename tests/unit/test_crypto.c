/*
 * test_crypto.c — CUnit tests for common/eg_crypto against published
 * vectors: SHA-256 (FIPS 180-2 appendix B), HMAC-SHA-256 (RFC 4231 §4.2,
 * §4.3, §4.7), AES-256-GCM (McGrew & Viega, "The Galois/Counter Mode of
 * Operation", test cases 14, 15 and 16), plus seal/open round trips,
 * tampering and the DRBG.
 */
#include <CUnit/Basic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_crypto.h"

/* Local hex helper so these tests do not depend on eg_codec. */
static size_t unhex(const char *h, uint8_t *out, size_t outsize)
{
    size_t n = strlen(h) / 2, i;

    CU_ASSERT_FATAL(n <= outsize);
    for (i = 0; i < n; i++) {
        unsigned v;
        CU_ASSERT_FATAL(sscanf(h + 2 * i, "%2x", &v) == 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void assert_hex(const uint8_t *got, size_t len, const char *want_hex)
{
    uint8_t want[256];
    size_t n = unhex(want_hex, want, sizeof want);

    CU_ASSERT_EQUAL(n, len);
    CU_ASSERT_EQUAL(memcmp(got, want, len), 0);
}

static void test_sha256_fips(void)
{
    uint8_t d[32];
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

    eg_sha256("abc", 3, d);
    assert_hex(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    eg_sha256("", 0, d);
    assert_hex(d, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    eg_sha256(m2, strlen(m2), d);
    assert_hex(d, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_sha256_2(void)
{
    uint8_t d[32], d2[32];
    const uint8_t leaf = 0x00;

    /* SHA-256("ab" || "c") is SHA-256("abc") */
    eg_sha256_2("ab", 2, "c", 1, d);
    assert_hex(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    eg_sha256_2("", 0, "abc", 3, d);
    assert_hex(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    eg_sha256_2("", 0, "", 0, d);
    assert_hex(d, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* prefix byte form, as used for RFC 6962 leaves: SHA-256(0x00 || "") */
    eg_sha256_2(&leaf, 1, "", 0, d);
    eg_sha256(&leaf, 1, d2);
    CU_ASSERT_EQUAL(memcmp(d, d2, 32), 0);
    assert_hex(d, 32, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

static void test_hmac_rfc4231(void)
{
    uint8_t key[131], mac[32];

    /* Test case 1 */
    memset(key, 0x0b, 20);
    eg_hmac_sha256(key, 20, "Hi There", 8, mac);
    assert_hex(mac, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* Test case 2 */
    eg_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, mac);
    assert_hex(mac, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* Test case 6: key longer than the block size */
    memset(key, 0xaa, 131);
    eg_hmac_sha256(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, mac);
    assert_hex(mac, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* Builds nonce || ct || tag from a published GCM case and opens it. */
static void gcm_open_case(const char *key_hex, const char *iv_hex, const char *aad_hex,
                          const char *pt_hex, const char *ct_hex, const char *tag_hex)
{
    uint8_t key[32], aad[64], pt[64], in[128], out[64];
    size_t aadlen, ptlen, ctlen, outlen = 0;
    eg_err rc;

    CU_ASSERT_EQUAL_FATAL(unhex(key_hex, key, sizeof key), 32);
    CU_ASSERT_EQUAL_FATAL(unhex(iv_hex, in, EG_GCM_NONCE), EG_GCM_NONCE);
    aadlen = unhex(aad_hex, aad, sizeof aad);
    ptlen = unhex(pt_hex, pt, sizeof pt);
    ctlen = unhex(ct_hex, in + EG_GCM_NONCE, sizeof in - EG_GCM_NONCE);
    CU_ASSERT_EQUAL_FATAL(ctlen, ptlen);
    CU_ASSERT_EQUAL_FATAL(unhex(tag_hex, in + EG_GCM_NONCE + ctlen, EG_GCM_TAG), EG_GCM_TAG);

    rc = eg_aead_open(key, aadlen ? aad : NULL, aadlen, in, ctlen + 28, out, sizeof out, &outlen);
    CU_ASSERT_EQUAL(rc, EG_OK);
    CU_ASSERT_EQUAL(outlen, ptlen);
    CU_ASSERT_EQUAL(memcmp(out, pt, ptlen), 0);

    /* the same input with one tag bit flipped must fail */
    in[EG_GCM_NONCE + ctlen] ^= 0x01;
    rc = eg_aead_open(key, aadlen ? aad : NULL, aadlen, in, ctlen + 28, out, sizeof out, &outlen);
    CU_ASSERT_EQUAL(rc, EG_E_CRYPTO);
}

static void test_gcm_published(void)
{
    static const char k15[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    static const char iv15[] = "cafebabefacedbaddecaf888";
    static const char pt15[] = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                               "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    static const char ct15[] = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                               "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
    char pt16[121], ct16[121];

    /* Test case 14: zero key, zero IV, 16 zero bytes */
    gcm_open_case("0000000000000000000000000000000000000000000000000000000000000000",
                  "000000000000000000000000", "", "00000000000000000000000000000000",
                  "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919");
    /* Test case 15 */
    gcm_open_case(k15, iv15, "", pt15, ct15, "b094dac5d93471bdec1a502270e3cc6c");
    /* Test case 16: with AAD, 60-byte plaintext */
    snprintf(pt16, sizeof pt16, "%.120s", pt15);
    snprintf(ct16, sizeof ct16, "%.120s", ct15);
    gcm_open_case(k15, iv15, "feedfacedeadbeeffeedfacedeadbeefabaddad2", pt16, ct16,
                  "76fc6ece0f4e1768cddf8853bb2d551b");
}

static void test_gcm_roundtrip_and_tamper(void)
{
    struct eg_rng *rng = NULL;
    uint8_t key[32], key2[32], sealed[128], sealed2[128], out[128];
    const char *msg = "blood pressure 120/80 mm[Hg]";
    const char *aad = "patient:P-001";
    size_t mlen = strlen(msg), slen = 0, slen2 = 0, olen = 0, i;

    CU_ASSERT_EQUAL_FATAL(eg_rng_new(&rng), EG_OK);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng, key, sizeof key), EG_OK);
    memcpy(key2, key, 32);
    key2[31] ^= 0x80;

    CU_ASSERT_EQUAL(
        eg_aead_seal(rng, key, aad, strlen(aad), msg, mlen, sealed, sizeof sealed, &slen), EG_OK);
    CU_ASSERT_EQUAL(slen, mlen + EG_GCM_NONCE + EG_GCM_TAG);
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen, out, sizeof out, &olen),
                    EG_OK);
    CU_ASSERT_EQUAL(olen, mlen);
    CU_ASSERT_EQUAL(memcmp(out, msg, mlen), 0);

    /* a fresh nonce each time */
    CU_ASSERT_EQUAL(
        eg_aead_seal(rng, key, aad, strlen(aad), msg, mlen, sealed2, sizeof sealed2, &slen2),
        EG_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(sealed, sealed2, EG_GCM_NONCE), 0);

    /* flipping any single byte (nonce, ciphertext or tag) is detected */
    for (i = 0; i < slen; i++) {
        sealed[i] ^= 0x04;
        CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen, out, sizeof out, &olen),
                        EG_E_CRYPTO);
        sealed[i] ^= 0x04;
    }
    /* wrong AAD, missing AAD, wrong key, truncated */
    CU_ASSERT_EQUAL(eg_aead_open(key, "patient:P-002", 13, sealed, slen, out, sizeof out, &olen),
                    EG_E_CRYPTO);
    CU_ASSERT_EQUAL(eg_aead_open(key, NULL, 0, sealed, slen, out, sizeof out, &olen), EG_E_CRYPTO);
    CU_ASSERT_EQUAL(eg_aead_open(key2, aad, strlen(aad), sealed, slen, out, sizeof out, &olen),
                    EG_E_CRYPTO);
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen - 1, out, sizeof out, &olen),
                    EG_E_CRYPTO);
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, 27, out, sizeof out, &olen),
                    EG_E_CRYPTO);
    /* the original still opens */
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen, out, sizeof out, &olen),
                    EG_OK);

    /* buffer sizes */
    CU_ASSERT_EQUAL(eg_aead_seal(rng, key, NULL, 0, msg, mlen, sealed, mlen + 27, &slen),
                    EG_E_USAGE);
    CU_ASSERT_EQUAL(eg_aead_seal(rng, key, NULL, 0, msg, mlen, sealed, mlen + 28, &slen), EG_OK);
    CU_ASSERT_EQUAL(eg_aead_open(key, NULL, 0, sealed, slen, out, mlen - 1, &olen), EG_E_USAGE);

    /* empty plaintext */
    CU_ASSERT_EQUAL(eg_aead_seal(rng, key, aad, strlen(aad), NULL, 0, sealed, 28, &slen), EG_OK);
    CU_ASSERT_EQUAL(slen, 28);
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen, NULL, 0, &olen), EG_OK);
    CU_ASSERT_EQUAL(olen, 0);
    sealed[20] ^= 1;
    CU_ASSERT_EQUAL(eg_aead_open(key, aad, strlen(aad), sealed, slen, NULL, 0, &olen), EG_E_CRYPTO);
    eg_rng_free(rng);
}

struct rng_thread_arg {
    struct eg_rng *rng;
    int failures;
};

static void *rng_thread(void *p)
{
    struct rng_thread_arg *a = p;
    uint8_t buf[3000];
    int i;

    for (i = 0; i < 200; i++)
        if (eg_rng_bytes(a->rng, buf, sizeof buf) != EG_OK)
            a->failures++;
    return NULL;
}

static void test_rng(void)
{
    struct eg_rng *rng = NULL, *rng2 = NULL;
    uint8_t a[32], b[32], big[5000], zero[32] = {0};
    struct rng_thread_arg args[4];
    pthread_t th[4];
    size_t i, nonzero = 0;

    CU_ASSERT_EQUAL_FATAL(eg_rng_new(&rng), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_rng_new(&rng2), EG_OK);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng, a, sizeof a), EG_OK);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng, b, sizeof b), EG_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, 32), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, zero, 32), 0);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng2, b, sizeof b), EG_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, 32), 0);
    /* more than one CTR-DRBG request (1024 bytes) */
    memset(big, 0, sizeof big);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng, big, sizeof big), EG_OK);
    for (i = sizeof big - 64; i < sizeof big; i++)
        nonzero += big[i] != 0;
    CU_ASSERT(nonzero > 32);
    CU_ASSERT_EQUAL(eg_rng_bytes(rng, a, 0), EG_OK);
    CU_ASSERT_EQUAL(eg_rng_bytes(NULL, a, 1), EG_E_USAGE);
    /* the mbedTLS f_rng wrapper */
    CU_ASSERT_EQUAL(eg_rng_mbedtls(rng, a, sizeof a), 0);
    CU_ASSERT_NOT_EQUAL(eg_rng_mbedtls(NULL, a, sizeof a), 0);
    /* several threads on one generator */
    for (i = 0; i < 4; i++) {
        args[i].rng = rng;
        args[i].failures = 0;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, rng_thread, &args[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(args[i].failures, 0);
    }
    eg_rng_free(rng);
    eg_rng_free(rng2);
    eg_rng_free(NULL);
}

static void test_ct_memcmp_and_wipe(void)
{
    uint8_t a[16], b[16];

    memset(a, 0x5a, sizeof a);
    memset(b, 0x5a, sizeof b);
    CU_ASSERT_EQUAL(eg_ct_memcmp(a, b, 16), 0);
    b[15] ^= 0x80;
    CU_ASSERT_NOT_EQUAL(eg_ct_memcmp(a, b, 16), 0);
    b[15] ^= 0x80;
    b[0] ^= 0x01;
    CU_ASSERT_NOT_EQUAL(eg_ct_memcmp(a, b, 16), 0);
    CU_ASSERT_EQUAL(eg_ct_memcmp(a, b, 0), 0);

    eg_wipe(a, sizeof a);
    memset(b, 0, sizeof b);
    CU_ASSERT_EQUAL(memcmp(a, b, 16), 0);
    eg_wipe(NULL, 0);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("crypto", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "SHA-256 FIPS 180-2 vectors", test_sha256_fips) ||
        !CU_add_test(s, "SHA-256 of two parts", test_sha256_2) ||
        !CU_add_test(s, "HMAC-SHA-256 RFC 4231", test_hmac_rfc4231) ||
        !CU_add_test(s, "AES-256-GCM published cases 14-16", test_gcm_published) ||
        !CU_add_test(s, "AES-256-GCM round trip and tamper", test_gcm_roundtrip_and_tamper) ||
        !CU_add_test(s, "CTR-DRBG", test_rng) ||
        !CU_add_test(s, "ct_memcmp and wipe", test_ct_memcmp_and_wipe)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

/*
 * test_block.c — anchor/eg_block: the SPEC §11 header, hash, signature and
 * JSON form.
 *
 * The header layout is checked byte by byte against a hand-written table of
 * offsets; the hash of that header and a signature over it were made with
 * the openssl CLI from bytes written by hand (xxd -r -p), independently of
 * this code (tests/fixtures/keys/README).
 */
#include <CUnit/Basic.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_block.h"
#include "eg_codec.h"
#include "eg_crypto.h"
#include "eg_json.h"
#include "eg_key.h"

#define KEYS EG_FIXTURES "/keys/"

static struct eg_rng *rng;

/* ---- helpers ---------------------------------------------------------- */

static size_t slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    CU_ASSERT_FATAL(f != NULL);
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static struct eg_key *load(int priv, const char *path)
{
    struct eg_key *k = NULL;
    struct eg_error e = {0};

    eg_err rc = priv ? eg_key_load_private(path, &k, &e) : eg_key_load_public(path, &k, &e);

    CU_ASSERT_EQUAL(rc, EG_OK);
    return k;
}

/* The block whose fields are distinct byte patterns:
 * gateway_id 20..3f, height 0102..08, prev_hash 40..5f, merkle_root 60..7f,
 * first_seq 1112..18, count 21222324, sealed_at 3132..38. */
static void pattern_block(struct eg_block *b)
{
    memset(b, 0, sizeof *b);
    b->version = 1;
    for (int i = 0; i < 32; i++) {
        b->gateway_id[i] = (uint8_t)(0x20 + i);
        b->prev_hash[i] = (uint8_t)(0x40 + i);
        b->merkle_root[i] = (uint8_t)(0x60 + i);
    }
    b->height = 0x0102030405060708ULL;
    b->first_seq = 0x1112131415161718ULL;
    b->count = 0x21222324U;
    b->sealed_at = 0x3132333435363738ULL;
}

/* Test-side decoder of the SPEC §11 layout, for the byte-flip test. */
static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void decode_header(const uint8_t h[EG_BLOCK_HEADER_LEN], struct eg_block *b)
{
    b->version = h[0];
    memcpy(b->gateway_id, h + 1, 32);
    b->height = get_be(h + 33, 8);
    memcpy(b->prev_hash, h + 41, 32);
    memcpy(b->merkle_root, h + 73, 32);
    b->first_seq = get_be(h + 105, 8);
    b->count = (uint32_t)get_be(h + 113, 4);
    b->sealed_at = get_be(h + 117, 8);
}

static int hash_is(const uint8_t h[32], const char *hex)
{
    char got[65];

    eg_hex_encode(h, 32, got);
    return strcmp(got, hex) == 0;
}

/* Copy of s with the first occurrence of from replaced by to (malloc'ed). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out;

    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    out = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    memcpy(out, s, (size_t)(at - s));
    memcpy(out + (at - s), to, strlen(to));
    memcpy(out + (at - s) + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    return out;
}

/* egjson_parse then eg_block_from_json. */
static eg_err parse_text(const char *text, struct eg_block *b, struct eg_error *e)
{
    cJSON *obj = NULL;
    eg_err rc = egjson_parse((const uint8_t *)text, strlen(text), &obj, e);

    if (rc == EG_OK)
        rc = eg_block_from_json(obj, b, e);
    cJSON_Delete(obj);
    return rc;
}

/* A realistic signed block (SPEC §11 example numbers), printed as JSON. */
static char *good_block_json(struct eg_block *b)
{
    struct eg_key *k = load(1, KEYS "p256_sec1.pem");
    cJSON *obj;
    char *text;
    size_t len;

    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    memset(b, 0, sizeof *b);
    b->version = 1;
    CU_ASSERT_EQUAL(eg_key_fingerprint(k, b->gateway_id), EG_OK);
    b->height = 7;
    memset(b->prev_hash, 0xab, 32);
    memset(b->merkle_root, 0xcd, 32);
    b->first_seq = 7168;
    b->count = 1024;
    b->sealed_at = 1795500000000ULL;
    CU_ASSERT_EQUAL_FATAL(eg_block_sign(b, k, rng), EG_OK);
    obj = eg_block_to_json(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
    text = egjson_print(obj, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON_Delete(obj);
    eg_key_free(k);
    return text;
}

/* ---- tests ------------------------------------------------------------ */

static void test_encode_layout(void)
{
    struct eg_block b;
    uint8_t h[EG_BLOCK_HEADER_LEN + 1];
    static const uint8_t height[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t first_seq[8] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
    static const uint8_t count[4] = {0x21, 0x22, 0x23, 0x24};
    static const uint8_t sealed_at[8] = {0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38};

    CU_ASSERT_EQUAL(EG_BLOCK_HEADER_LEN, 125);
    pattern_block(&b);
    h[EG_BLOCK_HEADER_LEN] = 0xEE; /* guard: nothing written past 125 */
    eg_block_encode(&b, h);
    CU_ASSERT_EQUAL(h[EG_BLOCK_HEADER_LEN], 0xEE);

    CU_ASSERT_EQUAL(h[0], 0x01); /* version */
    for (int i = 0; i < 32; i++) {
        CU_ASSERT_EQUAL(h[1 + i], 0x20 + i);  /* gateway_id */
        CU_ASSERT_EQUAL(h[41 + i], 0x40 + i); /* prev_hash */
        CU_ASSERT_EQUAL(h[73 + i], 0x60 + i); /* merkle_root */
    }
    CU_ASSERT(memcmp(h + 33, height, 8) == 0);
    CU_ASSERT(memcmp(h + 105, first_seq, 8) == 0);
    CU_ASSERT(memcmp(h + 113, count, 4) == 0);
    CU_ASSERT(memcmp(h + 117, sealed_at, 8) == 0);
    CU_ASSERT_EQUAL(117 + 8, EG_BLOCK_HEADER_LEN);
}

static void test_hash_and_openssl_sig(void)
{
    struct eg_block b;
    struct eg_key *pub = load(0, KEYS "p256.pub");
    struct eg_key *other = load(0, KEYS "p256_other.pub");

    CU_ASSERT_FATAL(pub != NULL && other != NULL);
    pattern_block(&b);
    eg_block_hash(&b);
    /* openssl dgst -sha256 over the hand-written 125 bytes. */
    CU_ASSERT(hash_is(b.hash, "b84acbde514a669d52b1664354075361f81ed9931bfbbe84841b0b9aa1de2a8b"));
    /* openssl dgst -sha256 -sign p256_sec1.pem over the same bytes. */
    slurp(KEYS "block_header_p256.sig", b.sig, sizeof b.sig);
    CU_ASSERT_EQUAL(eg_block_verify(&b, pub), EG_OK);
    CU_ASSERT_EQUAL(eg_block_verify(&b, other), EG_E_SIGNATURE);
    eg_key_free(pub);
    eg_key_free(other);
}

static void test_sign_verify_tamper(void)
{
    struct eg_key *k = NULL, *other = NULL;
    struct eg_error e = {0};
    struct eg_block b, t;
    uint8_t h[EG_BLOCK_HEADER_LEN];
    size_t siglen;

    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &k, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &other, &e), EG_OK);
    pattern_block(&b);
    CU_ASSERT_EQUAL_FATAL(eg_block_sign(&b, k, rng), EG_OK);
    CU_ASSERT_EQUAL(eg_block_verify(&b, k), EG_OK);
    CU_ASSERT_EQUAL(eg_block_verify(&b, other), EG_E_SIGNATURE);

    /* The signature is over SHA-256(header) = b.hash. */
    CU_ASSERT(hash_is(b.hash, "b84acbde514a669d52b1664354075361f81ed9931bfbbe84841b0b9aa1de2a8b"));
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, b.hash, b.sig), EG_OK);

    /* Every header byte matters: a flipped byte no longer matches the
     * hash, and re-hashing it does not match the signature. */
    for (size_t i = 0; i < EG_BLOCK_HEADER_LEN; i++) {
        eg_block_encode(&b, h);
        h[i] ^= 0x01;
        t = b;
        decode_header(h, &t);
        CU_ASSERT_EQUAL(eg_block_verify(&t, k), EG_E_CONFLICT);
        eg_block_hash(&t);
        CU_ASSERT_EQUAL(eg_block_verify(&t, k), EG_E_SIGNATURE);
    }
    /* A changed stored hash. */
    t = b;
    t.hash[31] ^= 0x01;
    CU_ASSERT_EQUAL(eg_block_verify(&t, k), EG_E_CONFLICT);
    /* A changed signature character, or none at all. */
    t = b;
    siglen = strlen(t.sig);
    t.sig[siglen / 2] = t.sig[siglen / 2] == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(eg_block_verify(&t, k), EG_E_SIGNATURE);
    t = b;
    t.sig[0] = '\0';
    CU_ASSERT_EQUAL(eg_block_verify(&t, k), EG_E_SIGNATURE);

    eg_key_free(k);
    eg_key_free(other);
}

static void test_json_round_trip(void)
{
    struct eg_block b, back;
    struct eg_error e = {0};
    char *text = good_block_json(&b);
    char gw[65], prev[65], root[65], hash[65], want[512];
    struct eg_key *pub = load(0, KEYS "p256.pub");

    eg_hex_encode(b.gateway_id, 32, gw);
    eg_hex_encode(b.prev_hash, 32, prev);
    eg_hex_encode(b.merkle_root, 32, root);
    eg_hex_encode(b.hash, 32, hash);
    /* gateway_id of p256.pub as computed by openssl (p256.pub.sha256). */
    {
        char fp[80];

        slurp(KEYS "p256.pub.sha256", fp, sizeof fp);
        CU_ASSERT(strncmp(fp, gw, 64) == 0);
    }
    /* Keys in SPEC §11 order, compact, integers exact. */
    snprintf(want, sizeof want,
             "{\"version\":1,\"gateway_id\":\"%s\",\"height\":7,\"prev_hash\":\"%s\","
             "\"merkle_root\":\"%s\",\"first_seq\":7168,\"count\":1024,"
             "\"sealed_at\":1795500000000,\"hash\":\"%s\",\"sig\":\"%s\"}",
             gw, prev, root, hash, b.sig);
    CU_ASSERT_STRING_EQUAL(text, want);

    memset(&back, 0x5a, sizeof back);
    CU_ASSERT_EQUAL_FATAL(parse_text(text, &back, &e), EG_OK);
    CU_ASSERT_EQUAL(back.version, b.version);
    CU_ASSERT(memcmp(back.gateway_id, b.gateway_id, 32) == 0);
    CU_ASSERT_EQUAL(back.height, b.height);
    CU_ASSERT(memcmp(back.prev_hash, b.prev_hash, 32) == 0);
    CU_ASSERT(memcmp(back.merkle_root, b.merkle_root, 32) == 0);
    CU_ASSERT_EQUAL(back.first_seq, b.first_seq);
    CU_ASSERT_EQUAL(back.count, b.count);
    CU_ASSERT_EQUAL(back.sealed_at, b.sealed_at);
    CU_ASSERT(memcmp(back.hash, b.hash, 32) == 0);
    CU_ASSERT_STRING_EQUAL(back.sig, b.sig);
    CU_ASSERT_EQUAL(eg_block_verify(&back, pub), EG_OK);

    /* Large integers print exactly (no exponent) and the largest JSON
     * integer (2^53-1) reads back. */
    {
        struct eg_block big = b;
        cJSON *obj;
        char *t2;
        size_t len;

        big.height = EG_U53_MAX;
        big.first_seq = EG_U53_MAX;
        big.sealed_at = EG_U53_MAX;
        big.count = UINT32_MAX;
        obj = eg_block_to_json(&big);
        t2 = egjson_print(obj, &len);
        CU_ASSERT_PTR_NOT_NULL(strstr(t2, "\"height\":9007199254740991,"));
        CU_ASSERT_PTR_NOT_NULL(strstr(t2, "\"count\":4294967295,"));
        CU_ASSERT_EQUAL(parse_text(t2, &back, &e), EG_OK);
        CU_ASSERT_EQUAL(back.height, EG_U53_MAX);
        CU_ASSERT_EQUAL(back.count, UINT32_MAX);
        free(t2);
        cJSON_Delete(obj);
    }
    /* Keys outside SPEC §11 are ignored (export lines carry "type"). */
    {
        char *t3 = replace(text, "{\"version\"", "{\"type\":\"block\",\"version\"");

        CU_ASSERT_EQUAL(parse_text(t3, &back, &e), EG_OK);
        free(t3);
    }
    eg_key_free(pub);
    free(text);
}

/* Each mutation of the good text must be rejected with EG_E_SCHEMA. */
static void expect_schema(const char *text, const char *from, const char *to)
{
    char *bad = replace(text, from, to);
    struct eg_block b;
    struct eg_error e = {0};
    eg_err rc = parse_text(bad, &b, &e);

    if (rc != EG_E_SCHEMA)
        fprintf(stderr, "\n    accepted (%d) after %s -> %s\n", rc, from, to);
    CU_ASSERT_EQUAL(rc, EG_E_SCHEMA);
    CU_ASSERT(strlen(e.detail) > 0);
    free(bad);
}

static void test_json_strict(void)
{
    struct eg_block b;
    char *text = good_block_json(&b);
    char gw[65], up[65], hash[65], key[80], sig[EG_SIG_B64_MAX + 8];
    static const char *const keys[] = {"version",     "gateway_id", "height", "prev_hash",
                                       "merkle_root", "first_seq",  "count",  "sealed_at",
                                       "hash",        "sig"};
    static const char *const ints[][2] = {
        {"\"version\":1,", "\"version\":1.0,"},
        {"\"height\":7,", "\"height\":7.0,"},
        {"\"first_seq\":7168,", "\"first_seq\":7168.0,"},
        {"\"count\":1024,", "\"count\":1024.0,"},
        {"\"sealed_at\":1795500000000,", "\"sealed_at\":1795500000000.0,"},
        {"\"height\":7,", "\"height\":7e0,"},
        {"\"height\":7,", "\"height\":\"7\","},
        {"\"height\":7,", "\"height\":-7,"},
        {"\"height\":7,", "\"height\":true,"},
        {"\"height\":7,", "\"height\":null,"},
        {"\"height\":7,", "\"height\":9007199254740992,"}, /* 2^53 */
        {"\"first_seq\":7168,", "\"first_seq\":18446744073709551615,"},
        {"\"version\":1,", "\"version\":2,"},
        {"\"version\":1,", "\"version\":0,"},
        {"\"count\":1024,", "\"count\":0,"},
        {"\"count\":1024,", "\"count\":4294967296,"},
    };

    eg_hex_encode(b.gateway_id, 32, gw);
    eg_hex_encode(b.hash, 32, hash);

    /* Uppercase hex, whole or one character, in every hex field. */
    for (int i = 0; i < 64; i++)
        up[i] = (char)toupper((unsigned char)gw[i]);
    up[64] = '\0';
    CU_ASSERT_STRING_NOT_EQUAL(up, gw);
    expect_schema(text, gw, up);
    memcpy(up, gw, sizeof up);
    for (int i = 0; i < 64; i++) {
        if (up[i] >= 'a') {
            up[i] = (char)toupper((unsigned char)up[i]);
            break;
        }
    }
    expect_schema(text, gw, up);
    expect_schema(text, "\"prev_hash\":\"abab", "\"prev_hash\":\"ABAB");
    expect_schema(text, "\"merkle_root\":\"cdcd", "\"merkle_root\":\"cDcd");
    for (int i = 0; i < 64; i++)
        up[i] = (char)toupper((unsigned char)hash[i]);
    if (strcmp(up, hash) != 0)
        expect_schema(text, hash, up);
    /* Wrong length, bad characters. */
    expect_schema(text, "\"prev_hash\":\"abab", "\"prev_hash\":\"ab");
    expect_schema(text, "\"prev_hash\":\"abab", "\"prev_hash\":\"ababab");
    expect_schema(text, "\"merkle_root\":\"cdcd", "\"merkle_root\":\"gdcd");
    expect_schema(text, "\"merkle_root\":\"cdcd", "\"merkle_root\":\" dcd");
    expect_schema(text, "\"prev_hash\":\"", "\"prev_hash\":7,\"x\":\"");

    /* Integers: fractions, exponents, strings, negatives, ranges. */
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        expect_schema(text, ints[i][0], ints[i][1]);

    /* sig: not a string, empty, not base64, too long, not DER-sized. */
    snprintf(sig, sizeof sig, "\"sig\":\"%s\"", b.sig);
    expect_schema(text, sig, "\"sig\":123");
    expect_schema(text, sig, "\"sig\":\"\"");
    expect_schema(text, sig, "\"sig\":\"!!!!\"");
    expect_schema(text, sig, "\"sig\":\"MEUC IQ==\"");
    expect_schema(text, sig,
                  "\"sig\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"");

    /* Every key is required. */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cJSON *obj = NULL;
        struct eg_block out;
        struct eg_error e = {0};

        CU_ASSERT_EQUAL_FATAL(egjson_parse((const uint8_t *)text, strlen(text), &obj, &e), EG_OK);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, keys[i]);
        CU_ASSERT_EQUAL(eg_block_from_json(obj, &out, &e), EG_E_SCHEMA);
        snprintf(key, sizeof key, "\"%s\"", keys[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, key));
        cJSON_Delete(obj);
    }
    /* Not an object; a case-changed key is a missing key. */
    {
        struct eg_block out;
        struct eg_error e = {0};

        CU_ASSERT_EQUAL(parse_text("[]", &out, &e), EG_E_SCHEMA);
        CU_ASSERT_EQUAL(parse_text("{}", &out, &e), EG_E_SCHEMA);
    }
    expect_schema(text, "\"count\":", "\"Count\":");
    free(text);
}

int main(void)
{
    CU_pSuite s;
    int failures;

    if (eg_rng_new(&rng) != EG_OK)
        return 2;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    s = CU_add_suite("block", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "125-byte header layout", test_encode_layout) ||
        !CU_add_test(s, "hash and openssl signature", test_hash_and_openssl_sig) ||
        !CU_add_test(s, "sign, verify, tampering", test_sign_verify_tamper) ||
        !CU_add_test(s, "JSON form and round trip", test_json_round_trip) ||
        !CU_add_test(s, "strict JSON parse", test_json_strict)) {
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = (int)CU_get_number_of_failures();
    CU_cleanup_registry();
    eg_rng_free(rng);
    return failures != 0;
}

/*
 * test_codec.c — CUnit tests for common/eg_codec: hex and strict base64,
 * checked against the RFC 4648 §10 test vectors plus hostile inputs.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "eg_codec.h"

static const struct {
    const char *plain;
    const char *b64;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_hex_roundtrip(void)
{
    const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff};
    char hex[2 * sizeof in + 1];
    uint8_t back[sizeof in];

    eg_hex_encode(in, sizeof in, hex);
    CU_ASSERT_STRING_EQUAL(hex, "00017f80abcdefff");
    CU_ASSERT_EQUAL(eg_hex_decode(hex, back, sizeof back), 0);
    CU_ASSERT_EQUAL(memcmp(in, back, sizeof in), 0);

    eg_hex_encode(in, 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "");
    CU_ASSERT_EQUAL(eg_hex_decode("", back, 0), 0);
}

static void test_hex_decode_upper_and_bad(void)
{
    uint8_t out[4];

    CU_ASSERT_EQUAL(eg_hex_decode("DEADbeef", out, 4), 0);
    CU_ASSERT_EQUAL(out[0], 0xde);
    CU_ASSERT_EQUAL(out[3], 0xef);
    CU_ASSERT_EQUAL(eg_hex_decode("deadbee", out, 4), -1);   /* short */
    CU_ASSERT_EQUAL(eg_hex_decode("deadbeef0", out, 4), -1); /* long */
    CU_ASSERT_EQUAL(eg_hex_decode("deadbeef00", out, 4), -1);
    CU_ASSERT_EQUAL(eg_hex_decode("deadbeeg", out, 4), -1); /* bad char */
    CU_ASSERT_EQUAL(eg_hex_decode("dead beef", out, 4), -1);
    CU_ASSERT_EQUAL(eg_hex_decode(" deadbee", out, 4), -1);
    CU_ASSERT_EQUAL(eg_hex_decode("0x00", out, 2), -1);
    CU_ASSERT_EQUAL(eg_hex_decode(NULL, out, 4), -1);
}

static void test_b64_rfc4648_vectors(void)
{
    size_t i;

    for (i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        char enc[16];
        uint8_t dec[16];
        size_t plen = strlen(rfc4648[i].plain);
        int n = eg_base64_encode((const uint8_t *)rfc4648[i].plain, plen, enc, sizeof enc);
        CU_ASSERT_EQUAL(n, (int)strlen(rfc4648[i].b64));
        CU_ASSERT_STRING_EQUAL(enc, rfc4648[i].b64);
        n = eg_base64_decode(rfc4648[i].b64, strlen(rfc4648[i].b64), dec, sizeof dec);
        CU_ASSERT_EQUAL(n, (int)plen);
        if (n == (int)plen)
            CU_ASSERT_EQUAL(memcmp(dec, rfc4648[i].plain, plen), 0);
    }
}

static void test_b64_all_bytes_roundtrip(void)
{
    uint8_t in[256], back[256];
    char enc[((256 + 2) / 3) * 4 + 1];
    size_t len;

    for (len = 0; len < 256; len++)
        in[len] = (uint8_t)(255 - len);
    for (len = 0; len <= 256; len += 1) {
        int n = eg_base64_encode(in, len, enc, sizeof enc);
        CU_ASSERT_EQUAL_FATAL(n, (int)(((len + 2) / 3) * 4));
        CU_ASSERT_EQUAL(eg_base64_decode(enc, (size_t)n, back, sizeof back), (int)len);
        CU_ASSERT_EQUAL(memcmp(in, back, len), 0);
    }
}

static void test_b64_encode_buffer_size(void)
{
    char out[9];

    /* "foobar" needs 8 chars + NUL */
    CU_ASSERT_EQUAL(eg_base64_encode((const uint8_t *)"foobar", 6, out, 8), -1);
    CU_ASSERT_EQUAL(eg_base64_encode((const uint8_t *)"foobar", 6, out, 9), 8);
    CU_ASSERT_EQUAL(eg_base64_encode((const uint8_t *)"", 0, out, 0), -1);
    CU_ASSERT_EQUAL(eg_base64_encode((const uint8_t *)"", 0, out, 1), 0);
}

static void test_b64_strict_rejections(void)
{
    static const char *bad[] = {
        "Zg",                    /* missing padding */
        "Zg=",                   /* short padding */
        "Zm8",                   /* missing padding */
        "Zm9vYg",                /* missing padding */
        "Zm9v\n",                /* trailing newline */
        "Zm9v Zm9v",             /* inner space */
        " Zm9v",                 /* leading space */
        "Zm\r\n9v",              /* line break */
        "Zm9v====",              /* too much padding */
        "Z===",                  /* 3 pads */
        "====",      "Zg==Zm9v", /* padding in the middle */
        "Zm=v",                  /* '=' inside a quantum */
        "Zm9-",                  /* URL-safe alphabet */
        "Zm9_",      "Zm9v*A==", /* bad char */
        "Zh==",                  /* non-zero pad bits (canonical form is Zg==) */
        "Zm9=",                  /* non-zero pad bits (canonical form is Zm8=) */
        "Zm8",       "A",
    };
    uint8_t out[16];
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = eg_base64_decode(bad[i], strlen(bad[i]), out, sizeof out);
        if (n != -1)
            fprintf(stderr, "\n  accepted bad base64 \"%s\"\n", bad[i]);
        CU_ASSERT_EQUAL(n, -1);
    }
    /* embedded NUL inside the given length */
    CU_ASSERT_EQUAL(eg_base64_decode("Zm9v\0AAA", 8, out, sizeof out), -1);
    /* short output buffer */
    CU_ASSERT_EQUAL(eg_base64_decode("Zm9vYmFy", 8, out, 5), -1);
    CU_ASSERT_EQUAL(eg_base64_decode("Zm9vYmFy", 8, out, 6), 6);
    CU_ASSERT_EQUAL(eg_base64_decode("Zm9vYg==", 8, out, 4), 4);
    /* length is honoured: only the first 4 chars are decoded */
    CU_ASSERT_EQUAL(eg_base64_decode("Zm9vYmFy", 4, out, sizeof out), 3);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("codec", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "hex round trip", test_hex_roundtrip) ||
        !CU_add_test(s, "hex decode upper case and bad input", test_hex_decode_upper_and_bad) ||
        !CU_add_test(s, "base64 RFC 4648 §10 vectors", test_b64_rfc4648_vectors) ||
        !CU_add_test(s, "base64 round trip 0..256 bytes", test_b64_all_bytes_roundtrip) ||
        !CU_add_test(s, "base64 encode buffer size", test_b64_encode_buffer_size) ||
        !CU_add_test(s, "base64 strict rejections", test_b64_strict_rejections)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

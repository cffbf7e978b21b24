/*
 * test_key.c — anchor/eg_key: P-256 keys, fingerprints and signatures.
 *
 * Checked against independent tools and published values, not against the
 * module's own output: the fixtures in tests/fixtures/keys/ were made with
 * the openssl CLI (see README there), including a signature over
 * SHA-256(topic || 0x00 || payload) (SPEC §3) and the openssl fingerprint of
 * the public key; the deterministic signatures are RFC 6979 §A.2.5 (P-256,
 * SHA-256, messages "sample" and "test").
 */
#include <CUnit/Basic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "eg_crypto.h"
#include "eg_key.h"

#define KEYS EG_FIXTURES "/keys/"

static struct eg_rng *rng;

/* ---- helpers ---------------------------------------------------------- */

/* Reads a small fixture file into buf (NUL-terminated); returns its length. */
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

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned v;

        CU_ASSERT_FATAL(sscanf(hex + 2 * i, "%2x", &v) == 1);
        out[i] = (uint8_t)v;
    }
}

static struct eg_key *load_priv(const char *name)
{
    struct eg_key *k = NULL;
    struct eg_error e = {0};

    CU_ASSERT_EQUAL(eg_key_load_private(name, &k, &e), EG_OK);
    if (k == NULL)
        fprintf(stderr, "load %s: %s\n", name, e.detail);
    return k;
}

static struct eg_key *load_pub(const char *name)
{
    struct eg_key *k = NULL;
    struct eg_error e = {0};

    CU_ASSERT_EQUAL(eg_key_load_public(name, &k, &e), EG_OK);
    if (k == NULL)
        fprintf(stderr, "load %s: %s\n", name, e.detail);
    return k;
}

/* ---- tests ------------------------------------------------------------ */

static void test_generate_sign_verify(void)
{
    struct eg_key *k = NULL, *other = NULL;
    struct eg_error e = {0};
    uint8_t digest[32], digest2[32];
    char sig[EG_SIG_B64_MAX], sig2[EG_SIG_B64_MAX];

    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &k, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &other, &e), EG_OK);
    eg_topic_digest("ehr/patient/P1/consent", "{\"nonce\":1}", 11, digest);

    CU_ASSERT_EQUAL(eg_key_sign_digest(k, rng, digest, sig, sizeof sig), EG_OK);
    CU_ASSERT(strlen(sig) > 0 && strlen(sig) < EG_SIG_B64_MAX);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, sig), EG_OK);

    /* Changed digest, other key. */
    memcpy(digest2, digest, 32);
    digest2[7] ^= 0x10;
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest2, sig), EG_E_SIGNATURE);
    CU_ASSERT_EQUAL(eg_key_verify_digest(other, digest, sig), EG_E_SIGNATURE);

    /* Deterministic (RFC 6979): same key and digest give the same bytes. */
    CU_ASSERT_EQUAL(eg_key_sign_digest(k, rng, digest, sig2, sizeof sig2), EG_OK);
    CU_ASSERT_STRING_EQUAL(sig, sig2);
    CU_ASSERT_EQUAL(eg_key_sign_digest(other, rng, digest, sig2, sizeof sig2), EG_OK);
    CU_ASSERT_STRING_NOT_EQUAL(sig, sig2);

    /* Buffer smaller than EG_SIG_B64_MAX is refused. */
    CU_ASSERT_NOT_EQUAL(eg_key_sign_digest(k, rng, digest, sig2, 64), EG_OK);

    eg_key_free(k);
    eg_key_free(other);
    eg_key_free(NULL); /* no-op */
}

static void test_verify_garbage(void)
{
    struct eg_key *k = NULL;
    struct eg_error e = {0};
    uint8_t digest[32] = {1, 2, 3};
    char sig[EG_SIG_B64_MAX], bad[EG_SIG_B64_MAX + 8];
    size_t len;

    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &k, &e), EG_OK);
    CU_ASSERT_EQUAL_FATAL(eg_key_sign_digest(k, rng, digest, sig, sizeof sig), EG_OK);
    len = strlen(sig);

    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, ""), EG_E_SIGNATURE);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, NULL), EG_E_SIGNATURE);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, "!!!not base64!!!"), EG_E_SIGNATURE);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, "AAAA"), EG_E_SIGNATURE);
    /* Valid base64 that is not DER. */
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, "aGVsbG8gd29ybGQ="), EG_E_SIGNATURE);
    /* Truncated: drop the last 4 base64 characters. */
    memcpy(bad, sig, len - 4);
    bad[len - 4] = '\0';
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, bad), EG_E_SIGNATURE);
    /* Leading whitespace (strict base64 has none). */
    snprintf(bad, sizeof bad, " %s", sig);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, bad), EG_E_SIGNATURE);
    /* One character changed in the middle. */
    memcpy(bad, sig, len + 1);
    bad[len / 2] = bad[len / 2] == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, bad), EG_E_SIGNATURE);
    /* Too long to be a P-256 signature. */
    memset(bad, 'A', sizeof bad - 1);
    bad[sizeof bad - 1] = '\0';
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, bad), EG_E_SIGNATURE);
    /* The original still verifies. */
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, sig), EG_OK);
    eg_key_free(k);
}

static void test_load_fixtures(void)
{
    struct eg_key *sec1 = load_priv(KEYS "p256_sec1.pem");
    struct eg_key *pkcs8 = load_priv(KEYS "p256_pkcs8.pem");
    struct eg_key *pub = load_pub(KEYS "p256.pub");
    uint8_t fp1[32], fp2[32], fp3[32], want[32];
    char hex[80], pem[EG_PEM_PUB_MAX], file[EG_PEM_PUB_MAX];

    CU_ASSERT_FATAL(sec1 != NULL && pkcs8 != NULL && pub != NULL);
    /* Fingerprint = SHA-256(DER SPKI), as
     * `openssl pkey -pubin -in p256.pub -outform DER | sha256sum` says. */
    slurp(KEYS "p256.pub.sha256", hex, sizeof hex);
    unhex(hex, want, 32);
    CU_ASSERT_EQUAL(eg_key_fingerprint(sec1, fp1), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(pkcs8, fp2), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(pub, fp3), EG_OK);
    CU_ASSERT(memcmp(fp1, want, 32) == 0);
    CU_ASSERT(memcmp(fp2, want, 32) == 0);
    CU_ASSERT(memcmp(fp3, want, 32) == 0);

    /* The PEM we write is byte for byte what `openssl pkey -pubout` wrote. */
    slurp(KEYS "p256.pub", file, sizeof file);
    CU_ASSERT_EQUAL(eg_key_public_pem(sec1, pem, sizeof pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, file);
    CU_ASSERT_EQUAL(eg_key_public_pem(pub, pem, sizeof pem), EG_OK);
    CU_ASSERT_STRING_EQUAL(pem, file);
    CU_ASSERT_NOT_EQUAL(eg_key_public_pem(pub, pem, 40), EG_OK);

    eg_key_free(sec1);
    eg_key_free(pkcs8);
    eg_key_free(pub);
}

static void expect_refused(int is_private, const char *path, eg_err code, const char *needle)
{
    struct eg_key *k = NULL;
    struct eg_error e = {0};
    eg_err rc = is_private ? eg_key_load_private(path, &k, &e) : eg_key_load_public(path, &k, &e);

    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(e.code, code);
    CU_ASSERT_PTR_NULL(k);
    if (needle != NULL && strstr(e.detail, needle) == NULL) {
        fprintf(stderr, "detail for %s lacks \"%s\": %s\n", path, needle, e.detail);
        CU_FAIL("detail");
    }
    /* The detail names the file. */
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, path));
    eg_key_free(k);
}

static void test_refuse_keys(void)
{
    expect_refused(1, KEYS "p384.pem", EG_E_KEY, "P-256");
    expect_refused(0, KEYS "p384.pub", EG_E_KEY, "P-256");
    expect_refused(1, KEYS "rsa2048.pem", EG_E_KEY, "RSA");
    expect_refused(0, KEYS "rsa2048.pub", EG_E_KEY, "RSA");
    expect_refused(1, KEYS "p256_encrypted.pem", EG_E_KEY, "encrypted");
    expect_refused(1, KEYS "p256_truncated.pem", EG_E_KEY, NULL);
    /* A public key is not a private key, and the other way round. */
    expect_refused(1, KEYS "p256.pub", EG_E_KEY, NULL);
    expect_refused(0, KEYS "p256_sec1.pem", EG_E_KEY, NULL);
    expect_refused(1, KEYS "no-such-file.pem", EG_E_IO, NULL);
    expect_refused(0, KEYS "no-such-file.pub", EG_E_IO, NULL);
    expect_refused(1, KEYS, EG_E_IO, NULL); /* a directory */
}

static void test_parse_public(void)
{
    char pem[EG_PEM_PUB_MAX + 16];
    size_t len = slurp(KEYS "p256.pub", pem, sizeof pem);
    struct eg_key *k = NULL;
    struct eg_error e = {0};

    /* len excluding and including the NUL both work. */
    CU_ASSERT_EQUAL(eg_key_parse_public(pem, len, &k, &e), EG_OK);
    eg_key_free(k);
    k = NULL;
    CU_ASSERT_EQUAL(eg_key_parse_public(pem, len + 1, &k, &e), EG_OK);
    eg_key_free(k);
    k = NULL;
    /* Truncated, empty, NUL inside, garbage. */
    CU_ASSERT_EQUAL(eg_key_parse_public(pem, len / 2, &k, &e), EG_E_KEY);
    CU_ASSERT_EQUAL(eg_key_parse_public(pem, 0, &k, &e), EG_E_KEY);
    pem[40] = '\0';
    CU_ASSERT_EQUAL(eg_key_parse_public(pem, len, &k, &e), EG_E_KEY);
    CU_ASSERT_EQUAL(eg_key_parse_public("hello", 5, &k, &e), EG_E_KEY);
    CU_ASSERT_PTR_NULL(k);
}

/* The SPEC §3 example: a signature made with
 * printf 'ehr/device/D1/telemetry\0{"seq":1}' | openssl dgst -sha256 -sign k.pem | base64 -w0 */
static void test_openssl_signature(void)
{
    static const char topic[] = "ehr/device/D1/telemetry";
    static const char payload[] = "{\"seq\":1}";
    struct eg_key *pub = load_pub(KEYS "p256.pub");
    struct eg_key *priv = load_priv(KEYS "p256_sec1.pem");
    struct eg_key *other = load_pub(KEYS "p256_other.pub");
    uint8_t digest[32], want[32];
    char sig[EG_SIG_B64_MAX + 4];

    CU_ASSERT_FATAL(pub != NULL && priv != NULL && other != NULL);
    slurp(KEYS "p256_telemetry.sig", sig, sizeof sig);
    eg_topic_digest(topic, payload, strlen(payload), digest);
    /* `printf ... | openssl dgst -sha256` */
    unhex("4ed9a1ca70a6bef78cc0bfd5043fa05c53dd5f28800deaf9641969cd4871ca24", want, 32);
    CU_ASSERT(memcmp(digest, want, 32) == 0);

    CU_ASSERT_EQUAL(eg_key_verify_digest(pub, digest, sig), EG_OK);
    CU_ASSERT_EQUAL(eg_key_verify_digest(priv, digest, sig), EG_OK);
    CU_ASSERT_EQUAL(eg_key_verify_digest(other, digest, sig), EG_E_SIGNATURE);
    /* Another topic or payload: the signature does not carry over. */
    eg_topic_digest("ehr/device/D2/telemetry", payload, strlen(payload), digest);
    CU_ASSERT_EQUAL(eg_key_verify_digest(pub, digest, sig), EG_E_SIGNATURE);
    eg_topic_digest(topic, "{\"seq\":2}", 9, digest);
    CU_ASSERT_EQUAL(eg_key_verify_digest(pub, digest, sig), EG_E_SIGNATURE);
    /* The separator matters: topic||payload without the 0x00 differs. */
    {
        uint8_t plain[32];
        char joined[64];
        int n = snprintf(joined, sizeof joined, "%s%s", topic, payload);

        mbedtls_sha256_ret((const unsigned char *)joined, (size_t)n, plain, 0);
        eg_topic_digest(topic, payload, strlen(payload), digest);
        CU_ASSERT(memcmp(plain, digest, 32) != 0);
    }
    eg_key_free(pub);
    eg_key_free(priv);
    eg_key_free(other);
}

/* RFC 6979 §A.2.5: P-256, private key x = C9AFA9D8...0F6721, SHA-256. */
static void test_rfc6979_vectors(void)
{
    struct eg_key *k = load_priv(KEYS "rfc6979_p256.pem");
    uint8_t digest[32];
    char sig[EG_SIG_B64_MAX], again[EG_SIG_B64_MAX];

    CU_ASSERT_FATAL(k != NULL);
    /* "sample": r = EFD48B2A...AF3716, s = F7CB1C94...3ACDA8, as DER base64. */
    mbedtls_sha256_ret((const unsigned char *)"sample", 6, digest, 0);
    CU_ASSERT_EQUAL(eg_key_sign_digest(k, rng, digest, sig, sizeof sig), EG_OK);
    CU_ASSERT_STRING_EQUAL(sig, "MEYCIQDv1IsqrLao/RFA3ZzUXoHWnSyHe1aq+ZHDTQ6oTq83FgIhAPfLHJQtZXxB1D"
                                "bHobbin2Xz6QDbua/0Bk3Eqy+EOs2o");
    CU_ASSERT_EQUAL(eg_key_sign_digest(k, rng, digest, again, sizeof again), EG_OK);
    CU_ASSERT_STRING_EQUAL(sig, again);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, sig), EG_OK);
    /* "test": r = F1ABB023...D38367, s = 019F4113...6F0083 (short s). */
    mbedtls_sha256_ret((const unsigned char *)"test", 4, digest, 0);
    CU_ASSERT_EQUAL(eg_key_sign_digest(k, rng, digest, sig, sizeof sig), EG_OK);
    CU_ASSERT_STRING_EQUAL(sig, "MEUCIQDxq7AjUYNRzXHYgVZ7HqZj7T789sUTKzVPKNOwt9ODZwIgAZ9BE3QqKxS9JZ"
                                "JrScZJFV8mfmDTgUtMDMhCUORvAIM=");
    eg_key_free(k);
}

static void test_public_only_cannot_sign(void)
{
    struct eg_key *pub = load_pub(KEYS "p256.pub");
    uint8_t digest[32] = {0};
    char sig[EG_SIG_B64_MAX];
    char path[] = "/tmp/eg_test_key_XXXXXX";
    struct eg_error e = {0};

    CU_ASSERT_FATAL(pub != NULL);
    CU_ASSERT_EQUAL(eg_key_sign_digest(pub, rng, digest, sig, sizeof sig), EG_E_KEY);
    CU_ASSERT_FATAL(mkdtemp(path) != NULL);
    {
        char file[64];

        snprintf(file, sizeof file, "%s/pub.key", path);
        CU_ASSERT_EQUAL(eg_key_write_private(pub, file, &e), EG_E_KEY);
        CU_ASSERT_NOT_EQUAL(access(file, F_OK), 0);
    }
    rmdir(path);
    eg_key_free(pub);
}

static void test_write_private(void)
{
    char dir[] = "/tmp/eg_test_key_XXXXXX";
    char file[64], before[1024], after[1024];
    struct eg_key *k = NULL, *back = NULL;
    struct eg_error e = {0};
    struct stat st;
    uint8_t fp1[32], fp2[32], digest[32] = {9};
    char sig[EG_SIG_B64_MAX];
    mode_t old;

    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/gw.key", dir);
    CU_ASSERT_EQUAL_FATAL(eg_key_generate(rng, &k, &e), EG_OK);

    old = umask(0); /* a permissive umask must not widen the mode */
    CU_ASSERT_EQUAL(eg_key_write_private(k, file, &e), EG_OK);
    umask(old);
    CU_ASSERT_EQUAL_FATAL(stat(file, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    CU_ASSERT(S_ISREG(st.st_mode));

    /* Reads back as the same key (SEC1 PEM). */
    slurp(file, before, sizeof before);
    CU_ASSERT_PTR_NOT_NULL(strstr(before, "-----BEGIN EC PRIVATE KEY-----"));
    back = load_priv(file);
    CU_ASSERT_FATAL(back != NULL);
    CU_ASSERT_EQUAL(eg_key_fingerprint(k, fp1), EG_OK);
    CU_ASSERT_EQUAL(eg_key_fingerprint(back, fp2), EG_OK);
    CU_ASSERT(memcmp(fp1, fp2, 32) == 0);
    CU_ASSERT_EQUAL(eg_key_sign_digest(back, rng, digest, sig, sizeof sig), EG_OK);
    CU_ASSERT_EQUAL(eg_key_verify_digest(k, digest, sig), EG_OK);

    /* Refused if the file exists; the file is left as it was. */
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(eg_key_write_private(back, file, &e), EG_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, file));
    slurp(file, after, sizeof after);
    CU_ASSERT_STRING_EQUAL(before, after);

    unlink(file);
    rmdir(dir);
    eg_key_free(k);
    eg_key_free(back);
}

int main(void)
{
    CU_pSuite s;
    int failures;

    if (eg_rng_new(&rng) != EG_OK)
        return 2;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    s = CU_add_suite("key", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "generate, sign, verify", test_generate_sign_verify) ||
        !CU_add_test(s, "verify rejects garbage", test_verify_garbage) ||
        !CU_add_test(s, "SEC1/PKCS#8/SPKI fixtures, fingerprint", test_load_fixtures) ||
        !CU_add_test(s, "refuse non-P-256 and broken keys", test_refuse_keys) ||
        !CU_add_test(s, "parse public PEM", test_parse_public) ||
        !CU_add_test(s, "openssl CLI signature (SPEC §3)", test_openssl_signature) ||
        !CU_add_test(s, "RFC 6979 A.2.5 deterministic signatures", test_rfc6979_vectors) ||
        !CU_add_test(s, "public-only key cannot sign", test_public_only_cannot_sign) ||
        !CU_add_test(s, "write private key 0600, O_EXCL", test_write_private)) {
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

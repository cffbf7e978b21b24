/*
 * test_json.c — CUnit tests for common/eg_json: strict intake (UTF-8, NUL,
 * duplicate keys, depth, trailing data), integer-literal tracking, u53
 * extraction and number printing. Good and hostile inputs side by side,
 * inline and from tests/fixtures/json/ (good_*.json must parse, bad_*.json
 * must be rejected with EG_E_PARSE).
 */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"

/* Parses a string literal of known length (may contain NUL). */
static eg_err parse_n(const char *s, size_t n, cJSON **out, struct eg_error *e)
{
    memset(e, 0, sizeof *e);
    return egjson_parse((const uint8_t *)s, n, out, e);
}

#define PARSE_LIT(lit, out, e) parse_n((lit), sizeof(lit) - 1, (out), (e))

/* Expects EG_E_PARSE and a detail containing want. */
static void expect_bad_n(const char *s, size_t n, const char *want)
{
    struct eg_error e;
    cJSON *j = (cJSON *)&e; /* must be reset to NULL */
    eg_err rc = parse_n(s, n, &j, &e);

    CU_ASSERT_EQUAL(rc, EG_E_PARSE);
    CU_ASSERT_EQUAL(e.code, EG_E_PARSE);
    CU_ASSERT_PTR_NULL(j);
    if (rc != EG_E_PARSE || strstr(e.detail, want) == NULL)
        fprintf(stderr, "\n  input %.40s: rc %d detail \"%s\", wanted \"%s\"\n", s, rc, e.detail,
                want);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.detail, want));
    if (rc == EG_OK)
        cJSON_Delete(j);
}

#define BAD(lit, want) expect_bad_n((lit), sizeof(lit) - 1, (want))

static void expect_good_n(const char *s, size_t n)
{
    struct eg_error e;
    cJSON *j = NULL;
    eg_err rc = parse_n(s, n, &j, &e);

    if (rc != EG_OK)
        fprintf(stderr, "\n  input %.40s rejected: %s\n", s, e.detail);
    CU_ASSERT_EQUAL(rc, EG_OK);
    CU_ASSERT_PTR_NOT_NULL(j);
    cJSON_Delete(j);
}

#define GOOD(lit) expect_good_n((lit), sizeof(lit) - 1)

static void test_good_documents(void)
{
    GOOD("{}");
    GOOD("[]");
    GOOD("{\"a\":1,\"b\":[1,2,{\"c\":\"x\"}],\"d\":null,\"e\":true,\"f\":false}");
    GOOD(" \t\r\n{ \"a\" : [ 1 , 2 ] }\r\n\t ");
    GOOD("1");
    GOOD("-0.5e-3");
    GOOD("\"x\"");
    GOOD("null");
    /* same key in different objects is not a duplicate; case matters */
    GOOD("[{\"a\":1},{\"a\":2},{\"a\":{\"a\":3}}]");
    GOOD("{\"a\":1,\"A\":2,\"a \":3}");
    /* valid UTF-8 of every length, and boundary code points */
    GOOD("{\"s\":\"caf\xc3\xa9\"}");                      /* U+00E9 */
    GOOD("{\"s\":\"\xe2\x82\xac\"}");                     /* U+20AC */
    GOOD("{\"s\":\"\xf0\x9f\x98\x80\"}");                 /* U+1F600 */
    GOOD("{\"s\":\"\xc2\x80\xdf\xbf\"}");                 /* U+0080, U+07FF */
    GOOD("{\"s\":\"\xe0\xa0\x80\xed\x9f\xbf\"}");         /* U+0800, U+D7FF */
    GOOD("{\"s\":\"\xee\x80\x80\xef\xbf\xbf\"}");         /* U+E000, U+FFFF */
    GOOD("{\"s\":\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}"); /* U+10000, U+10FFFF */
    GOOD("{\"\xc3\xa9\":1}");                             /* non-ASCII key */
    /* escapes */
    GOOD("{\"s\":\"\\u00e9 \\ud83d\\ude00 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}");
    GOOD("{\"s\":\"\\u0001\"}");
}

static void test_escaped_backslash_u0000(void)
{
    struct eg_error e;
    cJSON *j = NULL;

    /* "\\u0000" is an escaped backslash followed by the text u0000: allowed */
    CU_ASSERT_EQUAL_FATAL(PARSE_LIT("{\"s\":\"\\\\u0000\"}", &j, &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(egjson_str(j, "s"), "\\u0000");
    cJSON_Delete(j);
    /* three backslashes: escaped backslash, then a real \u0000 escape */
    BAD("{\"s\":\"\\\\\\u0000\"}", "\\u0000 in string at byte 8");
    /* escaped quote, then \u0000 */
    BAD("{\"s\":\"\\\"\\u0000\"}", "\\u0000 in string at byte 8");
    CU_ASSERT_EQUAL_FATAL(PARSE_LIT("{\"s\":\"\\\\\\\\u0000\"}", &j, &e), EG_OK);
    CU_ASSERT_STRING_EQUAL(egjson_str(j, "s"), "\\\\u0000");
    cJSON_Delete(j);
}

static void test_nul(void)
{
    BAD("{\"a\":\"\\u0000\"}", "\\u0000 in string at byte 6");
    BAD("{\"\\u0000\":1}", "\\u0000 in string at byte 2");
    BAD("{\"a\":\"x\\u0000y\"}", "\\u0000 in string at byte 7");
    BAD("{\"a\":\"x\0y\"}", "NUL byte at byte 7");
    BAD("{\"a\":1}\0", "NUL byte at byte 7");
    BAD("\0{}", "NUL byte at byte 0");
}

static void test_bad_utf8(void)
{
    BAD("{\"s\":\"\xc0\xaf\"}", "invalid UTF-8 at byte 6");         /* overlong '/' */
    BAD("{\"s\":\"\xc1\xbf\"}", "invalid UTF-8 at byte 6");         /* overlong */
    BAD("{\"s\":\"\xe0\x80\xaf\"}", "invalid UTF-8 at byte 6");     /* overlong 3 */
    BAD("{\"s\":\"\xf0\x80\x80\xaf\"}", "invalid UTF-8 at byte 6"); /* overlong 4 */
    BAD("{\"s\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 6");     /* CESU U+D800 */
    BAD("{\"s\":\"\xed\xbf\xbf\"}", "invalid UTF-8 at byte 6");     /* U+DFFF */
    BAD("{\"s\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8 at byte 6"); /* U+110000 */
    BAD("{\"s\":\"\xf5\x80\x80\x80\"}", "invalid UTF-8 at byte 6");
    BAD("{\"s\":\"\xff\"}", "invalid UTF-8 at byte 6");
    BAD("{\"s\":\"\xfe\"}", "invalid UTF-8 at byte 6");
    BAD("{\"s\":\"\x80\"}", "invalid UTF-8 at byte 6"); /* lone continuation */
    BAD("{\"s\":\"ab\xbf\"}", "invalid UTF-8 at byte 8");
    BAD("{\"s\":\"\xc3\"}", "invalid UTF-8 at byte 6");         /* truncated 2 */
    BAD("{\"s\":\"\xe2\x82\"}", "invalid UTF-8 at byte 6");     /* truncated 3 */
    BAD("{\"s\":\"\xf0\x9f\x98\"}", "invalid UTF-8 at byte 6"); /* truncated 4 */
    BAD("{\"s\":\"\xe2\x82", "invalid UTF-8 at byte 6");        /* at end of input */
    BAD("{\"s\":\"\xc3\xa9\xc3\"}", "invalid UTF-8 at byte 8");
    BAD("{\"\xc0\xaf\":1}", "invalid UTF-8 at byte 2");  /* in a key */
    BAD("{\"s\":1}\xc0\xaf", "invalid UTF-8 at byte 7"); /* outside strings */
    /* valid UTF-8 outside a string is still not JSON */
    BAD("{\"s\":\xc3\xa9}", "not valid JSON near byte 5");
}

static void test_duplicate_keys(void)
{
    BAD("{\"a\":1,\"a\":2}", "duplicate key \"a\"");
    BAD("{\"seq\":1,\"x\":true,\"seq\":1}", "duplicate key \"seq\"");
    BAD("{\"x\":[{\"y\":{\"seq\":1,\"z\":[],\"seq\":2}}]}", "duplicate key \"seq\"");
    BAD("[1,[2,{\"k\":{\"k\":{\"a\":0,\"b\":0,\"a\":0}}}]]", "duplicate key \"a\"");
    /* keys are compared after decoding escapes */
    BAD("{\"seq\":1,\"\\u0073eq\":2}", "duplicate key \"seq\"");
    BAD("{\"\\u00e9\":1,\"\xc3\xa9\":2}", "duplicate key");
    BAD("{\"\":1,\"\":2}", "duplicate key \"\"");
}

static void test_duplicate_keys_large_object(void)
{
    /* 5000 distinct keys parse; adding one duplicate at the end is caught */
    size_t cap = 5000 * 16 + 64, n = 0;
    char *buf = malloc(cap);
    int i;

    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    n += (size_t)snprintf(buf + n, cap - n, "{");
    for (i = 0; i < 5000; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "}");
    expect_good_n(buf, n);
    n -= 1;
    n += (size_t)snprintf(buf + n, cap - n, ",\"k4321\":0}");
    expect_bad_n(buf, n, "duplicate key \"k4321\"");
    free(buf);
}

static void test_depth(void)
{
    char buf[200];
    size_t i;

    for (i = 0; i < 64; i++) {
        buf[i] = '[';
        buf[64 + i] = ']';
    }
    expect_good_n(buf, 128);
    for (i = 0; i < 65; i++) {
        buf[i] = '[';
        buf[65 + i] = ']';
    }
    expect_bad_n(buf, 130, "nesting deeper than 64");
    /* objects count too; brackets inside strings do not */
    {
        char *big = malloc(1000);
        size_t n = 0;
        CU_ASSERT_PTR_NOT_NULL_FATAL(big);
        for (i = 0; i < 63; i++)
            n += (size_t)snprintf(big + n, 1000 - n, "{\"a\":");
        n += (size_t)snprintf(big + n, 1000 - n, "\"[[[[{{{{\"");
        for (i = 0; i < 63; i++)
            big[n++] = '}';
        expect_good_n(big, n);
        n = 0;
        for (i = 0; i < 64; i++)
            n += (size_t)snprintf(big + n, 1000 - n, "{\"a\":");
        n += (size_t)snprintf(big + n, 1000 - n, "[1]");
        for (i = 0; i < 64; i++)
            big[n++] = '}';
        expect_bad_n(big, n, "nesting deeper than 64");
        free(big);
    }
}

static void test_not_json(void)
{
    BAD("", "empty input");
    BAD("   \n ", "empty input");
    BAD("{} x", "trailing data after JSON value at byte 3");
    BAD("{}{}", "trailing data after JSON value at byte 2");
    BAD("1 2", "trailing data after JSON value at byte 2");
    BAD("[1]]", "trailing data after JSON value at byte 3");
    BAD("{\"a\":1}\"", "trailing data after JSON value at byte 7");
    BAD("{\"a\" 1}", "not valid JSON near byte 5");
    BAD("{'a':1}", "not valid JSON near byte 1");
    BAD("[1,]", "not valid JSON near byte");
    BAD("{\"a\":1,}", "not valid JSON near byte");
    BAD("[", "not valid JSON near byte");
    BAD("{\"a\":", "not valid JSON near byte");
    BAD("{\"a\":\"x", "unterminated string at byte 5");
    BAD("{\"a\":\"x\\", "unterminated string at byte 5");
    BAD("tru", "not valid JSON near byte 0");
    BAD("True", "not valid JSON near byte 0");
    BAD("nul", "not valid JSON near byte 0");
    BAD("\xef\xbb\xbf{}", "not valid JSON near byte 0"); /* BOM */
    BAD("\x01{}", "not valid JSON near byte 0");         /* cJSON would skip it */
    BAD("{}\x0b", "trailing data after JSON value at byte 2");
    BAD("{\"a\":\"tab\there\"}", "control character in string at byte 9");
    BAD("{\"a\":\"\\x41\"}", "bad escape in string at byte 6");
    BAD("{\"a\":\"\\\xc3\xa9\"}", "bad escape in string at byte 6");
    BAD("{\"a\":\"\\\0\"}", "bad escape in string at byte 6");
    BAD("]", "not valid JSON near byte 0");
    BAD("}", "not valid JSON near byte 0");
    BAD(" ,", "not valid JSON near byte 1");
    BAD(":1", "not valid JSON near byte 0");
    BAD("[1]}", "trailing data after JSON value at byte 3");
    BAD("[1}", "not valid JSON near byte");
    BAD("{\"a\":[1}]", "not valid JSON near byte");
    BAD("{\"a\":\"\\u12\"}", "bad \\u escape at byte 6");
    BAD("{\"a\":\"\\udc00\"}", "not valid JSON near byte"); /* lone low surrogate */
    BAD("{\"a\":\"\\ud800\"}", "not valid JSON near byte"); /* lone high surrogate */
    /* numbers outside the RFC 8259 grammar */
    BAD("[01]", "not valid JSON near byte");
    BAD("[-01]", "not valid JSON near byte");
    BAD("[1.]", "not valid JSON near byte");
    BAD("[.5]", "not valid JSON near byte");
    BAD("[+1]", "not valid JSON near byte");
    BAD("[-]", "not valid JSON near byte");
    BAD("[1e]", "not valid JSON near byte");
    BAD("[1e+]", "not valid JSON near byte");
    BAD("[1.5.2]", "not valid JSON near byte");
    BAD("[0x10]", "not valid JSON near byte");
    BAD("[NaN]", "not valid JSON near byte");
    BAD("[Infinity]", "not valid JSON near byte");
    BAD("[-Infinity]", "not valid JSON near byte");
    BAD("[1e400]", "number out of range");
}

static cJSON *must_parse(const char *s)
{
    struct eg_error e;
    cJSON *j = NULL;

    if (parse_n(s, strlen(s), &j, &e) != EG_OK)
        fprintf(stderr, "\n  %s: %s\n", s, e.detail);
    return j;
}

static void test_intlit_and_u53(void)
{
    static const struct {
        const char *text;
        int ok;
        uint64_t v;
    } cases[] = {
        {"1", 0, 1},
        {"0", 0, 0},
        {"1.0", -1, 0},
        {"1e0", -1, 0},
        {"1E2", -1, 0},
        {"10.5", -1, 0},
        {"-1", -1, 0},
        {"-0", -1, 0},
        {"9007199254740991", 0, 9007199254740991ULL},
        {"9007199254740992", -1, 0},
        {"9007199254740993", -1, 0},
        {"18446744073709551616", -1, 0},
        {"2147483648", 0, 2147483648ULL}, /* above INT_MAX: valueint saturates */
        {"4294967297", 0, 4294967297ULL},
        {"\"1\"", -1, 0},
        {"true", -1, 0},
        {"null", -1, 0},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[64];
        cJSON *j, *item;
        uint64_t v = 12345;
        int rc;

        snprintf(doc, sizeof doc, "{\"seq\":%s}", cases[i].text);
        j = must_parse(doc);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        item = cJSON_GetObjectItemCaseSensitive(j, "seq");
        rc = egjson_get_u53(item, &v);
        if (rc != cases[i].ok)
            fprintf(stderr, "\n  get_u53(%s) = %d\n", cases[i].text, rc);
        CU_ASSERT_EQUAL(rc, cases[i].ok);
        if (cases[i].ok == 0) {
            CU_ASSERT_EQUAL(v, cases[i].v);
        } else {
            CU_ASSERT_EQUAL(v, 12345); /* untouched */
        }
        cJSON_Delete(j);
    }
    CU_ASSERT_EQUAL(egjson_get_u53(NULL, NULL), -1);
    CU_ASSERT_FALSE(egjson_is_intlit(NULL));
}

static void test_intlit_document_order(void)
{
    cJSON *j = must_parse("{\"a\":[1.5,{\"b\":2},[3e0,[4]]],\"c\":3.0,\"d\":4,"
                          "\"e\":{\"f\":-7,\"g\":\"8\",\"h\":0.0,\"i\":5}}");
    cJSON *a, *e, *dup;

    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    a = cJSON_GetObjectItemCaseSensitive(j, "a");
    e = cJSON_GetObjectItemCaseSensitive(j, "e");
    CU_ASSERT_FALSE(egjson_is_intlit(cJSON_GetArrayItem(a, 0)));
    CU_ASSERT_TRUE(
        egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, 1), "b")));
    CU_ASSERT_FALSE(egjson_is_intlit(cJSON_GetArrayItem(cJSON_GetArrayItem(a, 2), 0)));
    CU_ASSERT_TRUE(
        egjson_is_intlit(cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(a, 2), 1), 0)));
    CU_ASSERT_FALSE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(j, "c")));
    CU_ASSERT_TRUE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(j, "d")));
    CU_ASSERT_TRUE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(e, "f")));
    CU_ASSERT_FALSE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(e, "g")));
    CU_ASSERT_FALSE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(e, "h")));
    CU_ASSERT_TRUE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(e, "i")));
    /* the flag does not disturb cJSON: kind tests, printing, duplication */
    CU_ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "d")));
    dup = cJSON_Duplicate(j, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dup);
    CU_ASSERT_TRUE(egjson_is_intlit(cJSON_GetObjectItemCaseSensitive(dup, "d")));
    CU_ASSERT_TRUE(cJSON_Compare(j, dup, 1));
    {
        size_t len = 0;
        char *s = egjson_print(j, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_EQUAL(s, "{\"a\":[1.5,{\"b\":2},[3,[4]]],\"c\":3,\"d\":4,"
                                  "\"e\":{\"f\":-7,\"g\":\"8\",\"h\":0,\"i\":5}}");
        CU_ASSERT_EQUAL(len, strlen(s));
        cJSON_free(s);
    }
    cJSON_Delete(dup);
    cJSON_Delete(j);
}

static void test_str(void)
{
    cJSON *j = must_parse("{\"s\":\"x\",\"n\":1,\"S\":\"y\",\"o\":{},\"z\":null}");

    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(egjson_str(j, "s"), "x");
    CU_ASSERT_STRING_EQUAL(egjson_str(j, "S"), "y"); /* case-sensitive */
    CU_ASSERT_PTR_NULL(egjson_str(j, "n"));
    CU_ASSERT_PTR_NULL(egjson_str(j, "o"));
    CU_ASSERT_PTR_NULL(egjson_str(j, "z"));
    CU_ASSERT_PTR_NULL(egjson_str(j, "missing"));
    CU_ASSERT_PTR_NULL(egjson_str(NULL, "s"));
    cJSON_Delete(j);
}

/* Prints {"v":<node>} and compares. */
static void expect_printed(cJSON *obj, const char *want)
{
    size_t len = 0;
    char *s = egjson_print(obj, &len);

    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    if (strcmp(s, want) != 0)
        fprintf(stderr, "\n  printed %s, wanted %s\n", s, want);
    CU_ASSERT_STRING_EQUAL(s, want);
    CU_ASSERT_EQUAL(len, strlen(want));
    cJSON_free(s);
}

static void test_create_u64(void)
{
    cJSON *o = cJSON_CreateObject();

    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    cJSON_AddItemToObject(o, "a", egjson_create_u64(0));
    cJSON_AddItemToObject(o, "b", egjson_create_u64(1000000000000000ULL)); /* 1e+15 in cJSON */
    cJSON_AddItemToObject(o, "c", egjson_create_u64(9007199254740993ULL));
    cJSON_AddItemToObject(o, "d", egjson_create_u64(UINT64_MAX));
    expect_printed(o, "{\"a\":0,\"b\":1000000000000000,\"c\":9007199254740993,"
                      "\"d\":18446744073709551615}");
    cJSON_Delete(o);
}

static void test_add_number2(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {(98.6 - 32.0) * 5.0 / 9.0, "37"}, /* 36.99999999999999 before rounding */
        {36.6, "36.6"},
        {0.1 + 0.2, "0.3"},
        {80.0, "80"},
        {1.5, "1.5"},
        {0.125, "0.13"}, /* half away from zero */
        {-0.125, "-0.13"},
        {-0.001, "0"}, /* no "-0" */
        {0.004999, "0"},
        {0.005, "0.01"},
        {70.0 * 0.45359237, "31.75"},
        {123456.789, "123456.79"},
        {-40.0, "-40"},
        {1e20, "1e+20"},
        {5e-324, "0"},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *o = cJSON_CreateObject();
        char want[64];
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        CU_ASSERT_PTR_NOT_NULL(egjson_add_number2(o, "v", cases[i].v));
        snprintf(want, sizeof want, "{\"v\":%s}", cases[i].want);
        expect_printed(o, want);
        cJSON_Delete(o);
    }
    {
        cJSON *o = cJSON_CreateObject();
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        CU_ASSERT_PTR_NULL(egjson_add_number2(o, "v", NAN));
        CU_ASSERT_PTR_NULL(egjson_add_number2(o, "v", INFINITY));
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(o, "v"));
        cJSON_Delete(o);
    }
}

/* Large values where cJSON's "%1.15g" would lose digits: the node must
 * still print text that reads back as exactly the rounded value. */
static void test_add_number2_large(void)
{
    static const double vals[] = {12345678901234567.0, 98765432109876.54, 4503599627370497.0,
                                  -1234567890123456.7};
    size_t i;

    for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        cJSON *o = cJSON_CreateObject(), *n;
        char *s;
        double r = round(vals[i] * 100.0) / 100.0;
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        n = egjson_add_number2(o, "v", vals[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        s = egjson_print(n, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        if (strtod(s, NULL) != r)
            fprintf(stderr, "\n  %.17g printed as %s\n", r, s);
        CU_ASSERT_EQUAL(strtod(s, NULL), r);
        CU_ASSERT(strlen(s) <= 24);
        cJSON_free(s);
        cJSON_Delete(o);
    }
}

/* Every printed value of a 2-decimal grid reads back as the rounded value
 * and is no longer than the shortest decimal form. */
static void test_add_number2_grid(void)
{
    int k;
    unsigned long bad = 0;

    for (k = -100000; k <= 100000; k += 7) {
        cJSON *o = cJSON_CreateObject();
        char *s, want[32];
        double v = k / 100.0;
        if (o == NULL || egjson_add_number2(o, "v", v) == NULL) {
            bad++;
            cJSON_Delete(o);
            continue;
        }
        s = egjson_print(o, NULL);
        snprintf(want, sizeof want, "{\"v\":%.15g}", v);
        if (s == NULL || strcmp(s, want) != 0)
            bad++;
        cJSON_free(s);
        cJSON_Delete(o);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_fixtures(void)
{
    const char *dir = EG_FIXTURES "/json";
    DIR *d = opendir(dir);
    struct dirent *de;
    int ngood = 0, nbad = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    while ((de = readdir(d)) != NULL) {
        char path[512];
        uint8_t *buf = NULL;
        long n;
        FILE *f;
        int good = strncmp(de->d_name, "good_", 5) == 0;
        int bad = strncmp(de->d_name, "bad_", 4) == 0;
        struct eg_error e;
        cJSON *j = NULL;
        eg_err rc;

        if (!good && !bad)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        rewind(f);
        buf = malloc((size_t)n + 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
        CU_ASSERT_EQUAL(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        memset(&e, 0, sizeof e);
        rc = egjson_parse(buf, (size_t)n, &j, &e);
        if ((good && rc != EG_OK) || (bad && rc != EG_E_PARSE))
            fprintf(stderr, "\n  fixture %s: rc %d (%s)\n", de->d_name, rc, e.detail);
        CU_ASSERT_EQUAL(rc, good ? EG_OK : EG_E_PARSE);
        if (good && rc == EG_OK && strcmp(de->d_name, "good_telemetry.json") == 0) {
            uint64_t v = 0;
            CU_ASSERT_EQUAL(egjson_get_u53(cJSON_GetObjectItemCaseSensitive(j, "seq"), &v), 0);
            CU_ASSERT_EQUAL(v, 42);
            CU_ASSERT_EQUAL(egjson_get_u53(cJSON_GetObjectItemCaseSensitive(j, "nonce"), &v), 0);
            CU_ASSERT_EQUAL(v, 9007199254740991ULL);
        }
        ngood += good;
        nbad += bad;
        cJSON_Delete(j);
        free(buf);
    }
    closedir(d);
    CU_ASSERT(ngood >= 3);
    CU_ASSERT(nbad >= 10);
}

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("json", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "good documents", test_good_documents) ||
        !CU_add_test(s, "\\\\u0000 vs \\u0000", test_escaped_backslash_u0000) ||
        !CU_add_test(s, "NUL bytes and \\u0000", test_nul) ||
        !CU_add_test(s, "invalid UTF-8", test_bad_utf8) ||
        !CU_add_test(s, "duplicate keys", test_duplicate_keys) ||
        !CU_add_test(s, "duplicate keys, large object", test_duplicate_keys_large_object) ||
        !CU_add_test(s, "nesting depth", test_depth) ||
        !CU_add_test(s, "not JSON", test_not_json) ||
        !CU_add_test(s, "integer literals and get_u53", test_intlit_and_u53) ||
        !CU_add_test(s, "integer literal flags in document order", test_intlit_document_order) ||
        !CU_add_test(s, "egjson_str", test_str) ||
        !CU_add_test(s, "egjson_create_u64", test_create_u64) ||
        !CU_add_test(s, "egjson_add_number2", test_add_number2) ||
        !CU_add_test(s, "egjson_add_number2 grid", test_add_number2_grid) ||
        !CU_add_test(s, "egjson_add_number2 large values", test_add_number2_large) ||
        !CU_add_test(s, "fixtures", test_fixtures)) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures != 0;
}

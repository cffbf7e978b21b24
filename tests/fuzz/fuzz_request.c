/*
 * fuzz_request.c — libFuzzer target for the pure parts of request intake:
 * the signed-request envelope fields (SPEC §2, §3 "Replay") and the feed
 * `since` request members (SPEC §8, §13).
 *
 * What it can reach: eg_signed_check (gateway/eg_signed.c) reads the
 * signer's nonce counter from the store, and eg_feed_request
 * (gateway/eg_feed.c) needs a struct eg_ingest with a store and answers
 * through eg_api_reply into the outbox; neither is reachable without a
 * database, and neither file is changed for this. So this target drives
 * the helpers those checks are made of, in their order:
 *   egjson_parse (strict intake) -> nonce: egjson_get_u53 -> issued:
 *   eg_time_parse -> the +-EG_ISSUED_SKEW_MS window, and
 *   members op/feed_seq/limit -> op "since" -> feed_seq: egjson_is_intlit +
 *   egjson_get_u53 -> limit 1..1000,
 * and on every node of the tree egjson_is_intlit / egjson_get_u53 and, on
 * every string, eg_time_parse. eg_time_parse also gets the raw input as a
 * C string, and eg_time_format an instant taken from the input bytes.
 *
 * Checks:
 *   - egjson_get_u53 succeeds exactly for integer literals with a value in
 *     0..2^53-1 (not "-0"), returning that value; never for other nodes;
 *   - eg_time_parse agrees with an independent RFC 3339 §5.6 reader written
 *     here (other calendar arithmetic: leap years counted, not the
 *     days-from-civil formula) on acceptance and on the instant, including
 *     "t"/"z", fractions truncated to ms, leap second 60 as :59.999, and
 *     offsets +-hh:mm with hh <= 23;
 *   - eg_time_format writes 24 characters that eg_time_parse reads back as
 *     the same instant inside 0000-9999 (else as the clamped bound);
 *   - an envelope that passes has nonce <= 2^53-1 and issued within +-300 s;
 *     a since request that passes has feed_seq <= 2^53-1 and limit 1..1000.
 *
 *   ./fuzz_request -dict=tests/fuzz/request.dict work tests/fuzz/corpus/request
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_json.h"
#include "eg_time.h"
#include "fuzz_util.h"

#define NOW_MS 1795501800000LL         /* 2026-11-24T06:30:00.000Z */
#define ISSUED_SKEW_MS 300000          /* SPEC §3: +-300 s (EG_ISSUED_SKEW_MS) */
#define SINCE_MAX 1000                 /* gateway/eg_feed.c */
#define FMT_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define FMT_MAX_MS (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- an independent RFC 3339 reader ------------------------------------ */

static int num(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 0000-01-01 to y-01-01 (proleptic Gregorian; year 0 is leap). */
static int64_t days_to_year(int y)
{
    int64_t leaps = y > 0 ? 1 + (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400 : 0;

    return (int64_t)365 * y + leaps;
}

/* RFC 3339 §5.6 date-time, years 0000-9999; 0 and *ms, or -1. */
static int ref_time(const char *s, int64_t *ms)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t len = strlen(s), p = 19;
    int y, mo, d, h, mi, se, frac = 0, nfrac = 0, oh = 0, om = 0, sign = 0, dim, k;
    int64_t days;

    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return -1;
    y = num(s, 4);
    mo = num(s + 5, 2);
    d = num(s + 8, 2);
    h = num(s + 11, 2);
    mi = num(s + 14, 2);
    se = num(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
        return -1;
    dim = mdays[mo - 1] + (mo == 2 && leap(y));
    if (d < 1 || d > dim)
        return -1;
    if (s[p] == '.') {
        for (p++; s[p] >= '0' && s[p] <= '9'; p++, nfrac++)
            if (nfrac < 3)
                frac = frac * 10 + (s[p] - '0');
        if (nfrac == 0)
            return -1;
        for (; nfrac < 3; nfrac++)
            frac *= 10;
    }
    if ((s[p] == 'Z' || s[p] == 'z') && p + 1 == len) {
        sign = 0;
    } else if ((s[p] == '+' || s[p] == '-') && p + 6 == len && s[p + 3] == ':') {
        sign = s[p] == '-' ? -1 : 1;
        oh = num(s + p + 1, 2);
        om = num(s + p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
    } else {
        return -1;
    }
    if (se == 60) { /* eg_time.h: a leap second is taken as :59.999 */
        se = 59;
        frac = 999;
    }
    days = days_to_year(y) - days_to_year(1970);
    for (k = 1; k < mo; k++)
        days += mdays[k - 1] + (k == 2 && leap(y));
    days += d - 1;
    *ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + frac -
          (int64_t)sign * (oh * 60 + om) * 60000;
    /* eg_time.h: the instant must stay within years 0000-9999 UTC */
    if (*ms < FMT_MIN_MS || *ms > FMT_MAX_MS)
        return -1;
    return 0;
}

/* eg_time_parse against ref_time, then the format round trip. */
static void check_time(const char *s)
{
    int64_t got = 0, want = 0, back = 0;
    int rg = eg_time_parse(s, &got), rw = ref_time(s, &want);
    char txt[EG_TIME_STRLEN];

    FUZZ_CHECK(rg == rw);
    if (rg != 0)
        return;
    FUZZ_CHECK(got == want);
    eg_time_format(got, txt);
    FUZZ_CHECK(strlen(txt) == 24 && eg_time_parse(txt, &back) == 0);
    FUZZ_CHECK(back == got); /* every accepted instant formats back as is */
}

/* eg_time_format on any instant. */
static void check_format(int64_t ms)
{
    char txt[EG_TIME_STRLEN];
    int64_t back = 0;

    memset(txt, 0x7F, sizeof txt);
    eg_time_format(ms, txt);
    FUZZ_CHECK(txt[24] == '\0' && strlen(txt) == 24);
    FUZZ_CHECK(eg_time_parse(txt, &back) == 0 && ref_time(txt, &back) == 0);
    FUZZ_CHECK(back == (ms < FMT_MIN_MS ? FMT_MIN_MS : ms > FMT_MAX_MS ? FMT_MAX_MS : ms));
}

/* ---- integer literals --------------------------------------------------- */

static void check_int(const cJSON *it)
{
    uint64_t v = 12345;
    int rc = egjson_get_u53(it, &v);
    int intlit = egjson_is_intlit(it);

    FUZZ_CHECK(egjson_get_u53(it, NULL) != 0);
    if (!cJSON_IsNumber(it)) {
        FUZZ_CHECK(!intlit && rc != 0 && v == 12345);
        return;
    }
    if (rc == 0) {
        FUZZ_CHECK(intlit && v <= EG_U53_MAX && (double)v == it->valuedouble);
        return;
    }
    FUZZ_CHECK(v == 12345);
    /* refused: not an integer literal, or negative (incl. -0), or too big */
    FUZZ_CHECK(!intlit || it->valuedouble < 0 || signbit(it->valuedouble) ||
               it->valuedouble > (double)EG_U53_MAX);
}

static void walk(const cJSON *it, int depth)
{
    const cJSON *c;

    FUZZ_CHECK(depth <= 64);
    check_int(it);
    if (cJSON_IsString(it) && it->valuestring)
        check_time(it->valuestring);
    for (c = it->child; c; c = c->next)
        walk(c, depth + 1);
}

/* ---- the rules of eg_signed_check and eg_feed_request ------------------- */

/* eg_signed_check without the signature and the counter: 0 passes. */
static int envelope(const cJSON *root)
{
    const cJSON *it;
    uint64_t nonce;
    int64_t issued, skew;

    it = cJSON_GetObjectItemCaseSensitive(root, "nonce");
    if (!it || egjson_get_u53(it, &nonce) != 0)
        return -1; /* schema */
    it = cJSON_GetObjectItemCaseSensitive(root, "issued");
    if (!cJSON_IsString(it) || eg_time_parse(it->valuestring, &issued) != 0)
        return -1; /* schema */
    skew = issued - NOW_MS;
    if (skew > ISSUED_SKEW_MS || skew < -ISSUED_SKEW_MS)
        return -2; /* replay */
    FUZZ_CHECK(nonce <= EG_U53_MAX);
    FUZZ_CHECK(issued >= NOW_MS - ISSUED_SKEW_MS && issued <= NOW_MS + ISSUED_SKEW_MS);
    return 0;
}

/* eg_feed_request's member checks: 0 passes. */
static int since(const cJSON *root)
{
    const cJSON *it;
    uint64_t from = 0, limit = 100;

    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "op") != 0 && strcmp(it->string, "feed_seq") != 0 &&
            strcmp(it->string, "limit") != 0)
            return -1;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, "since") != 0)
        return -1;
    it = cJSON_GetObjectItemCaseSensitive(root, "feed_seq");
    if (!it || !egjson_is_intlit(it) || egjson_get_u53(it, &from) != 0)
        return -1;
    it = cJSON_GetObjectItemCaseSensitive(root, "limit");
    if (it && (!egjson_is_intlit(it) || egjson_get_u53(it, &limit) != 0 || limit < 1 ||
               limit > SINCE_MAX))
        return -1;
    FUZZ_CHECK(from <= EG_U53_MAX && limit >= 1 && limit <= SINCE_MAX);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eg_error e = {EG_OK, ""};
    cJSON *root = NULL;
    char *s;
    int64_t ms = 0;
    size_t i;

    /* the raw bytes as a timestamp, and as an instant */
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_time(s);
    free(s);
    for (i = 0; i < 8 && i < size; i++)
        ms = (int64_t)((uint64_t)ms << 8 | data[i]);
    check_format(ms);

    if (egjson_parse(data, size, &root, &e) != EG_OK) {
        FUZZ_CHECK(root == NULL && e.code == EG_E_PARSE && fuzz_detail_ok(&e));
        return 0;
    }
    walk(root, 0);
    if (cJSON_IsObject(root)) {
        (void)envelope(root);
        (void)since(root);
    }
    cJSON_Delete(root);
    return 0;
}

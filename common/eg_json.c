/*
 * eg_json.c — strict JSON intake on top of cJSON (SPEC §2, RFC 8259).
 *
 * egjson_parse() works in three steps:
 *  1. a pre-scan of the raw bytes: UTF-8 validity (RFC 3629: no overlongs,
 *     no surrogates, nothing above U+10FFFF, no truncated sequences), no raw
 *     NUL, no raw control character inside strings, no \u0000 escape, only
 *     JSON whitespace and tokens outside strings, strict number grammar,
 *     nesting depth <= 64; it also notes, for each number token in document
 *     order, whether it was an integer literal;
 *  2. cJSON_ParseWithLengthOpts() on a NUL-terminated copy, then a check
 *     that only whitespace follows the value;
 *  3. a depth-first walk of the tree in document order that rejects
 *     duplicate keys and flags integer-literal numbers with EG_JSON_INTLIT.
 */
#include "eg_json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Private flag OR-ed into cJSON.type of numbers written as integer literals.
 * Safe: cJSON 1.7.x only uses bits up to cJSON_StringIsConst (512) for flags
 * and always tests the kind as (type & 0xFF), copies other bits through
 * (cJSON_Duplicate keeps them) and never interprets bit 14. */
#define EG_JSON_INTLIT (1 << 14)

#define EG_JSON_MAX_DEPTH 64

/* Result of the pre-scan. */
struct prescan {
    uint8_t *intlit; /* bit i set: number token i was an integer literal */
    size_t nnumbers;
};

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}
static bool is_hex(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Length of the valid UTF-8 sequence at buf[i] (lead byte >= 0x80), or 0 if
 * it is invalid (RFC 3629 §4 table of well-formed byte sequences). */
static size_t utf8_seq_len(const uint8_t *buf, size_t len, size_t i)
{
    uint8_t c = buf[i], lo = 0x80, hi = 0xBF;
    size_t n, k;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (len - i < n)
        return 0;
    if (buf[i + 1] < lo || buf[i + 1] > hi)
        return 0;
    for (k = 2; k < n; k++)
        if (buf[i + k] < 0x80 || buf[i + k] > 0xBF)
            return 0;
    return n;
}

/* Scans a JSON number at buf[*i] (RFC 8259 §6). Returns 0 and advances *i,
 * setting *is_int, or -1 (with *i at the offending byte). */
static int scan_number(const uint8_t *buf, size_t len, size_t *i, bool *is_int)
{
    size_t p = *i;

    *is_int = true;
    if (p < len && buf[p] == '-')
        p++;
    if (p < len && buf[p] == '0') {
        p++;
    } else if (p < len && buf[p] >= '1' && buf[p] <= '9') {
        while (p < len && is_digit(buf[p]))
            p++;
    } else {
        goto bad;
    }
    if (p < len && buf[p] == '.') {
        *is_int = false;
        p++;
        if (p >= len || !is_digit(buf[p]))
            goto bad;
        while (p < len && is_digit(buf[p]))
            p++;
    }
    if (p < len && (buf[p] == 'e' || buf[p] == 'E')) {
        *is_int = false;
        p++;
        if (p < len && (buf[p] == '+' || buf[p] == '-'))
            p++;
        if (p >= len || !is_digit(buf[p]))
            goto bad;
        while (p < len && is_digit(buf[p]))
            p++;
    }
    /* The token must end here, or cJSON (which eats [0-9+-.eE]) would see
     * a different token: "01", "1.2.3", "1e5e5" are errors. */
    if (p < len && (is_digit(buf[p]) || buf[p] == '.' || buf[p] == 'e' || buf[p] == 'E' ||
                    buf[p] == '+' || buf[p] == '-'))
        goto bad;
    *i = p;
    return 0;
bad:
    *i = p;
    return -1;
}

/* Step 1. On failure returns EG_E_PARSE with a detail; ps->intlit is owned by
 * the caller either way. */
static eg_err prescan(const uint8_t *buf, size_t len, struct prescan *ps, struct eg_error *e)
{
    size_t i = 0, depth = 0;
    bool seen_value = false;

    /* Each number token takes at least one byte plus a separator. */
    ps->intlit = calloc(len / 16 + 1, 1);
    ps->nnumbers = 0;
    if (ps->intlit == NULL)
        return eg_fail(e, EG_E_NOMEM, "out of memory");

    while (i < len) {
        uint8_t c = buf[i];

        if (c == '\0')
            return eg_fail(e, EG_E_PARSE, "NUL byte at byte %zu", i);
        if (c >= 0x80 && utf8_seq_len(buf, len, i) == 0)
            return eg_fail(e, EG_E_PARSE, "invalid UTF-8 at byte %zu", i);
        /* A complete top-level value was seen: only whitespace may follow. */
        if (seen_value && depth == 0 && !is_ws(c))
            return eg_fail(e, EG_E_PARSE, "trailing data after JSON value at byte %zu", i);
        if (c >= 0x80) /* valid UTF-8, but outside a string */
            return eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu", i);
        if (is_ws(c)) {
            i++;
        } else if (c == '"') {
            size_t start = i++;
            for (;;) {
                if (i >= len)
                    return eg_fail(e, EG_E_PARSE, "unterminated string at byte %zu", start);
                c = buf[i];
                if (c == '"') {
                    i++;
                    break;
                }
                if (c == '\0')
                    return eg_fail(e, EG_E_PARSE, "NUL byte at byte %zu", i);
                if (c >= 0x80) {
                    size_t n = utf8_seq_len(buf, len, i);
                    if (n == 0)
                        return eg_fail(e, EG_E_PARSE, "invalid UTF-8 at byte %zu", i);
                    i += n;
                } else if (c < 0x20) {
                    /* RFC 8259 §7: control characters must be escaped */
                    return eg_fail(e, EG_E_PARSE, "control character in string at byte %zu", i);
                } else if (c == '\\') {
                    if (i + 1 >= len)
                        return eg_fail(e, EG_E_PARSE, "unterminated string at byte %zu", start);
                    if (buf[i + 1] == 'u') {
                        if (len - i < 6 || !is_hex(buf[i + 2]) || !is_hex(buf[i + 3]) ||
                            !is_hex(buf[i + 4]) || !is_hex(buf[i + 5]))
                            return eg_fail(e, EG_E_PARSE, "bad \\u escape at byte %zu", i);
                        if (memcmp(buf + i + 2, "0000", 4) == 0)
                            return eg_fail(e, EG_E_PARSE, "\\u0000 in string at byte %zu", i);
                        i += 6;
                    } else if (strchr("\"\\/bfnrt", buf[i + 1]) != NULL && buf[i + 1] != 0) {
                        /* skip the pair, so an escaped quote or backslash
                         * is not misread as the end of the string or an escape */
                        i += 2;
                    } else {
                        return eg_fail(e, EG_E_PARSE, "bad escape in string at byte %zu", i);
                    }
                } else {
                    i++;
                }
            }
            seen_value = true;
        } else if (c == '[' || c == '{') {
            if (++depth > EG_JSON_MAX_DEPTH)
                return eg_fail(e, EG_E_PARSE, "nesting deeper than %d at byte %zu",
                               EG_JSON_MAX_DEPTH, i);
            i++;
            seen_value = true;
        } else if ((c == ']' || c == '}' || c == ',' || c == ':') && depth == 0) {
            /* nothing to close or separate at the top level */
            return eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu", i);
        } else if (c == ']' || c == '}') {
            depth--;
            i++;
        } else if (c == ',' || c == ':') {
            i++;
        } else if (c == '-' || is_digit(c)) {
            bool is_int;
            size_t at = i;
            if (scan_number(buf, len, &i, &is_int) != 0)
                return eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu (bad number)", i);
            if (ps->nnumbers / 8 >= len / 16 + 1)
                return eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu", at);
            if (is_int)
                ps->intlit[ps->nnumbers / 8] |= (uint8_t)(1u << (ps->nnumbers % 8));
            ps->nnumbers++;
            seen_value = true;
        } else if (c == 't' && len - i >= 4 && memcmp(buf + i, "true", 4) == 0) {
            i += 4;
            seen_value = true;
        } else if (c == 'f' && len - i >= 5 && memcmp(buf + i, "false", 5) == 0) {
            i += 5;
            seen_value = true;
        } else if (c == 'n' && len - i >= 4 && memcmp(buf + i, "null", 4) == 0) {
            i += 4;
            seen_value = true;
        } else {
            return eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu", i);
        }
    }
    if (!seen_value)
        return eg_fail(e, EG_E_PARSE, "empty input (no JSON value)");
    return EG_OK;
}

/* Copies a key into out for an error detail: printable ASCII only, cut short. */
static void key_for_detail(const char *key, char *out, size_t outsize)
{
    size_t i, o = 0;

    for (i = 0; key[i] != '\0' && o + 4 < outsize; i++) {
        unsigned char c = (unsigned char)key[i];
        out[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
        if (i == 63) {
            out[o++] = '.';
            out[o++] = '.';
            out[o++] = '.';
            break;
        }
    }
    out[o] = '\0';
}

static int cmp_keys(const void *a, const void *b)
{
    const cJSON *const *x = a;
    const cJSON *const *y = b;
    return strcmp((*x)->string, (*y)->string);
}

/* Rejects duplicate (decoded) keys among obj's members: sorts pointers to the
 * members so large objects cost n log n, not n^2. */
static eg_err check_dup_keys(const cJSON *obj, struct eg_error *e)
{
    const cJSON *it;
    const cJSON **v = NULL;
    size_t n = 0, k;
    eg_err rc = EG_OK;
    char shown[80];

    for (it = obj->child; it != NULL; it = it->next)
        n++;
    if (n < 2)
        goto out;
    v = malloc(n * sizeof *v);
    if (v == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "out of memory");
        goto out;
    }
    for (k = 0, it = obj->child; it != NULL; it = it->next) {
        if (it->string == NULL) {
            rc = eg_fail(e, EG_E_PARSE, "object member without a key");
            goto out;
        }
        v[k++] = it;
    }
    qsort(v, n, sizeof *v, cmp_keys);
    for (k = 1; k < n; k++) {
        if (strcmp(v[k - 1]->string, v[k]->string) == 0) {
            key_for_detail(v[k]->string, shown, sizeof shown);
            rc = eg_fail(e, EG_E_PARSE, "duplicate key \"%s\"", shown);
            goto out;
        }
    }
out:
    free(v);
    return rc;
}

/* Step 3: depth-first, document order (cJSON keeps members in order). Depth
 * is bounded by the pre-scan, so recursion is at most 64 deep. */
static eg_err walk(cJSON *item, const struct prescan *ps, size_t *numidx, struct eg_error *e)
{
    eg_err rc = EG_OK;
    cJSON *child;

    switch (item->type & 0xFF) {
    case cJSON_Number:
        if (*numidx >= ps->nnumbers)
            return eg_fail(e, EG_E_PARSE, "not valid JSON (number count mismatch)");
        if (!isfinite(item->valuedouble))
            return eg_fail(e, EG_E_PARSE, "number out of range");
        if (ps->intlit[*numidx / 8] & (1u << (*numidx % 8)))
            item->type |= EG_JSON_INTLIT;
        (*numidx)++;
        break;
    case cJSON_Object:
        if ((rc = check_dup_keys(item, e)) != EG_OK)
            return rc;
        /* fall through */
    case cJSON_Array:
        for (child = item->child; child != NULL; child = child->next)
            if ((rc = walk(child, ps, numidx, e)) != EG_OK)
                return rc;
        break;
    default:
        break;
    }
    return rc;
}

eg_err egjson_parse(const uint8_t *buf, size_t len, cJSON **out, struct eg_error *e)
{
    struct prescan ps = {NULL, 0};
    char *copy = NULL;
    const char *end = NULL;
    cJSON *root = NULL;
    size_t numidx = 0, i;
    eg_err rc;

    if (out == NULL) {
        rc = eg_fail(e, EG_E_USAGE, "egjson_parse: out is NULL");
        goto out;
    }
    *out = NULL;
    if (buf == NULL && len > 0) {
        rc = eg_fail(e, EG_E_USAGE, "egjson_parse: buf is NULL");
        goto out;
    }
    if ((rc = prescan(buf, len, &ps, e)) != EG_OK)
        goto out;

    /* buf is not NUL-terminated: hand cJSON a terminated copy (and its length
     * without the NUL), then check the tail ourselves so the error can say
     * "trailing data". The parse-end pointer is per call, unlike the global
     * cJSON_GetErrorPtr(), so this is safe from several threads. */
    copy = malloc(len + 1);
    if (copy == NULL) {
        rc = eg_fail(e, EG_E_NOMEM, "out of memory");
        goto out;
    }
    memcpy(copy, buf, len);
    copy[len] = '\0';
    root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    if (root == NULL) {
        size_t off = (end != NULL && end >= copy) ? (size_t)(end - copy) : 0;
        if (off > len)
            off = len;
        rc = eg_fail(e, EG_E_PARSE, "not valid JSON near byte %zu", off);
        goto out;
    }
    if (end == NULL || end < copy || end > copy + len) {
        rc = eg_fail(e, EG_E_PARSE, "not valid JSON");
        goto out;
    }
    for (i = (size_t)(end - copy); i < len; i++) {
        if (!is_ws((uint8_t)copy[i])) {
            rc = eg_fail(e, EG_E_PARSE, "trailing data after JSON value at byte %zu", i);
            goto out;
        }
    }
    if ((rc = walk(root, &ps, &numidx, e)) != EG_OK)
        goto out;
    if (numidx != ps.nnumbers) {
        rc = eg_fail(e, EG_E_PARSE, "not valid JSON (number count mismatch)");
        goto out;
    }
    *out = root;
    root = NULL;
    rc = EG_OK;
out:
    cJSON_Delete(root);
    free(copy);
    free(ps.intlit);
    return rc;
}

bool egjson_is_intlit(const cJSON *item)
{
    return item != NULL && (item->type & 0xFF) == cJSON_Number &&
           (item->type & EG_JSON_INTLIT) != 0;
}

int egjson_get_u53(const cJSON *item, uint64_t *out)
{
    double d;

    if (!egjson_is_intlit(item) || out == NULL)
        return -1;
    d = item->valuedouble;
    /* "-0" is an integer literal but not a non-negative identifier. */
    if (!isfinite(d) || signbit(d) || d > (double)EG_U53_MAX || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

const char *egjson_str(const cJSON *obj, const char *key)
{
    const cJSON *it;

    if (obj == NULL || key == NULL || !cJSON_IsObject(obj))
        return NULL;
    it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return NULL;
    return it->valuestring;
}

cJSON *egjson_create_u64(uint64_t v)
{
    char text[24];

    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(text);
}

/* The text cJSON 1.7.15 print_number() would produce for d: "%1.15g", or
 * "%1.17g" if that does not read back within DBL_EPSILON. */
static void cjson_number_text(double d, char *out, size_t outsize)
{
    double back = 0.0, m;

    snprintf(out, outsize, "%1.15g", d);
    if (sscanf(out, "%lg", &back) == 1) {
        m = fabs(d) > fabs(back) ? fabs(d) : fabs(back);
        if (fabs(back - d) <= m * DBL_EPSILON)
            return;
    }
    snprintf(out, outsize, "%1.17g", d);
}

/* "%.15g" (%g drops trailing zeros, so a value rounded to 2 decimals prints
 * as its shortest decimal, "37" or "36.6"), or more digits if needed to read
 * back as exactly d. Starting below 15 would give "8e+01" for 80. */
static void shortest_number_text(double d, char *out, size_t outsize)
{
    int prec;

    for (prec = 15; prec <= 17; prec++) {
        snprintf(out, outsize, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

cJSON *egjson_add_number2(cJSON *obj, const char *key, double v)
{
    double r;
    char mine[32], theirs[32];
    cJSON *node;

    if (obj == NULL || key == NULL || !isfinite(v))
        return NULL;
    r = round(v * 100.0) / 100.0; /* round() is half away from zero */
    if (!isfinite(r))
        return NULL;
    if (r == 0.0)
        r = 0.0; /* no "-0" */
    shortest_number_text(r, mine, sizeof mine);
    cjson_number_text(r, theirs, sizeof theirs);
    if (strcmp(mine, theirs) == 0)
        node = cJSON_CreateNumber(r);
    else
        node = cJSON_CreateRaw(mine); /* cJSON would print a long form */
    if (node == NULL)
        return NULL;
    if (!cJSON_AddItemToObject(obj, key, node)) {
        cJSON_Delete(node);
        return NULL;
    }
    return node;
}

char *egjson_print(const cJSON *item, size_t *len)
{
    char *s;

    if (item == NULL)
        return NULL;
    s = cJSON_PrintUnformatted(item);
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

int egjson_add_taken(cJSON *parent, const char *key, cJSON *child)
{
    cJSON_bool ok;

    if (!child)
        return -1;
    ok = key ? cJSON_AddItemToObject(parent, key, child) : cJSON_AddItemToArray(parent, child);
    if (!ok) {
        cJSON_Delete(child);
        return -1;
    }
    return 0;
}

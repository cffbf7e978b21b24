/*
 * fuzz_util.h — small checks shared by the libFuzzer targets of tests/fuzz/
 * (header only, static inline: each target is one translation unit).
 *
 *   fuzz_utf8_ok     well-formed UTF-8 (RFC 3629 §4: no overlongs, no
 *                    surrogates, nothing above U+10FFFF)
 *   fuzz_detail_ok   an error detail as it goes into a receipt or reply:
 *                    non-empty, NUL-terminated inside its buffer, valid
 *                    UTF-8, no C0 control characters and no DEL
 *   fuzz_json_ok     a cJSON tree prints, and the printed text passes the
 *                    gateway's own strict intake (egjson_parse) again
 *   FUZZ_CHECK       abort() with the failed condition and the line, so a
 *                    crash report says which promise was broken
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eg_err.h"
#include "eg_json.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* True if s[0..n) is well-formed UTF-8. */
static inline int fuzz_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0, len, k;

    while (i < n) {
        unsigned char c = s[i], lo = 0x80, hi = 0xBF;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            len = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            len = 4;
        else
            return 0;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        else if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* True if e carries a usable detail (see the top of this file). */
static inline int fuzz_detail_ok(const struct eg_error *e)
{
    size_t n = strnlen(e->detail, sizeof e->detail), i;

    if (n == 0 || n >= sizeof e->detail || !fuzz_utf8_ok((const unsigned char *)e->detail, n))
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)e->detail[i] < 0x20 || e->detail[i] == 0x7F)
            return 0;
    return 1;
}

/* True if item prints and the text parses strictly again. */
static inline int fuzz_json_ok(const cJSON *item)
{
    struct eg_error e = {EG_OK, ""};
    cJSON *back = NULL;
    size_t len = 0;
    char *txt = egjson_print(item, &len);
    int ok;

    if (!txt)
        return 0;
    ok = egjson_parse((const uint8_t *)txt, len, &back, &e) == EG_OK;
    cJSON_Delete(back);
    free(txt);
    return ok;
}

#endif

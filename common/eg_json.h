/*
 * eg_json.h — strict JSON intake on top of cJSON (SPEC §2).
 *
 * cJSON alone accepts duplicate keys, invalid UTF-8, \u0000 and cannot tell
 * 1 from 1.0. egjson_parse() rejects all of these and marks numbers that
 * were written as integer literals, so identifying integers (seq, nonce)
 * are checked exactly.
 */
#ifndef EG_JSON_H
#define EG_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eg_err.h"

#define EG_U53_MAX 9007199254740991ULL /* 2^53 - 1 */

/* Parses buf[0..len) strictly: valid UTF-8 (no overlongs, no surrogates,
 * <= U+10FFFF), no raw NUL byte and no \u0000 escape, no duplicate keys in
 * any object, exactly one JSON value with only whitespace after it, nesting
 * depth <= 64. On success *out owns the tree (cJSON_Delete it) and EG_OK is
 * returned. On failure returns EG_E_PARSE with e->detail saying what and
 * where (byte offset), e.g. "invalid UTF-8 at byte 17",
 * "duplicate key \"seq\"", "\\u0000 in string at byte 9". */
eg_err egjson_parse(const uint8_t *buf, size_t len, cJSON **out, struct eg_error *e);

/* True if item is a number that was written as an integer literal
 * (no fraction, no exponent) in the text given to egjson_parse(). */
bool egjson_is_intlit(const cJSON *item);

/* If item is an integer literal in [0, 2^53-1], stores it and returns 0;
 * otherwise -1. Never reads valueint (it saturates at 2^31). */
int egjson_get_u53(const cJSON *item, uint64_t *out);

/* Returns the string value of obj[key] if it is a string, else NULL. */
const char *egjson_str(const cJSON *obj, const char *key);

/* Writes the decimal text of v (no exponent) into a raw cJSON node; use for
 * integers that must print exactly (seq): cJSON prints 1e+15 otherwise.
 * Returns NULL on OOM. */
cJSON *egjson_create_u64(uint64_t v);

/* Adds a number rounded to 2 decimals that prints in its shortest form
 * (98.6 °F -> 37, 1.5 -> 1.5, 80.0 -> 80). Returns the node or NULL. */
cJSON *egjson_add_number2(cJSON *obj, const char *key, double v);

/* Adds child to an object under key, or to an array when key is NULL,
 * taking ownership of child also on failure (then it is freed). Returns 0,
 * or -1 if child is NULL or cannot be added. */
int egjson_add_taken(cJSON *parent, const char *key, cJSON *child);

/* cJSON_PrintUnformatted into a malloc'ed buffer; *len = strlen. NULL on OOM. */
char *egjson_print(const cJSON *item, size_t *len);

#endif

/*
 * eg_codec.h — lowercase hex and standard padded base64 (RFC 4648 §4).
 */
#ifndef EG_CODEC_H
#define EG_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lowercase hex chars plus NUL into out (size >= 2*len+1). */
void eg_hex_encode(const uint8_t *in, size_t len, char *out);

/* Decodes exactly 2*outlen hex chars (either case) from in (NUL-terminated
 * or not, strlen(in) must equal 2*outlen). Returns 0, or -1 on a bad char or
 * wrong length. */
int eg_hex_decode(const char *in, uint8_t *out, size_t outlen);

/* Base64 (standard alphabet, '=' padding). Returns the number of chars
 * written (excluding NUL), or -1 if outsize < ((len+2)/3)*4+1. */
int eg_base64_encode(const uint8_t *in, size_t len, char *out, size_t outsize);

/* Strict decoding: standard alphabet, padding required, no whitespace.
 * Returns the number of bytes written, or -1 on bad input / short buffer. */
int eg_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsize);

#endif

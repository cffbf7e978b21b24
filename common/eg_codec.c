/*
 * eg_codec.c — lowercase hex and strict standard base64 (RFC 4648 §4).
 *
 * Decoders are strict on purpose: hex must have exactly the expected length,
 * base64 must use the standard alphabet with '=' padding, no whitespace, no
 * line breaks and zero pad bits (RFC 4648 §3.5 "canonical encoding").
 */
#include "eg_codec.h"

#include <string.h>

static const char hex_digits[] = "0123456789abcdef";
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void eg_hex_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

/* Value of one hex digit (either case), or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int eg_hex_decode(const char *in, uint8_t *out, size_t outlen)
{
    size_t i;

    if (in == NULL || (outlen > 0 && out == NULL) || outlen > (SIZE_MAX - 1) / 2)
        return -1;
    /* strlen(in) must be exactly 2*outlen; never look further than one past. */
    if (strnlen(in, 2 * outlen + 1) != 2 * outlen)
        return -1;
    for (i = 0; i < outlen; i++) {
        int hi = hex_value(in[2 * i]);
        int lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return 0;
}

int eg_base64_encode(const uint8_t *in, size_t len, char *out, size_t outsize)
{
    size_t need, i, o = 0;

    if (len > ((size_t)INT32_MAX / 4) * 3 - 3)
        return -1; /* result length would not fit the int return value */
    need = ((len + 2) / 3) * 4 + 1;
    if (out == NULL || outsize < need || (len > 0 && in == NULL))
        return -1;
    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = b64_alphabet[v & 0x3f];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (int)o;
}

/* Value of one base64 character of the standard alphabet, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int eg_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsize)
{
    size_t i, o = 0, need, pad = 0;

    if (in == NULL || inlen % 4 != 0 || inlen / 4 > (size_t)INT32_MAX / 3)
        return -1;
    if (inlen == 0)
        return 0;
    if (in[inlen - 1] == '=')
        pad = (in[inlen - 2] == '=') ? 2 : 1;
    need = inlen / 4 * 3 - pad;
    if (out == NULL || outsize < need)
        return -1;
    for (i = 0; i < inlen; i += 4) {
        int v[4], k;
        int last = (i + 4 == inlen);
        int nchars = last ? 4 - (int)pad : 4;
        uint32_t w = 0;

        for (k = 0; k < 4; k++) {
            if (k < nchars) {
                v[k] = b64_value(in[i + k]);
                if (v[k] < 0)
                    return -1; /* bad char, whitespace, or '=' in the middle */
            } else {
                v[k] = 0; /* a padding '=' (already checked above) */
            }
            w = (w << 6) | (uint32_t)v[k];
        }
        out[o++] = (uint8_t)(w >> 16);
        if (nchars > 2)
            out[o++] = (uint8_t)(w >> 8);
        if (nchars > 3)
            out[o++] = (uint8_t)w;
        /* Canonical encoding: the bits dropped by padding must be zero. */
        if ((nchars == 2 && (v[1] & 0x0f) != 0) || (nchars == 3 && (v[2] & 0x03) != 0))
            return -1;
    }
    return (int)o;
}

/*
 * b64.c — strict base64url without padding (RFC 7515 §2, RFC 4648 §5).
 *
 * Every JWT segment and every JWK member passes fx_b64url_valid() before
 * anything decodes it. Only the 64 URL-safe characters are accepted: no
 * '=', no '+' or '/', no whitespace, no junk to be skipped. The leftover
 * bits of the last character must be zero, so a byte string has exactly
 * one encoding and "the same signature, spelled differently" cannot exist.
 * A table maps each byte to its 6-bit value or 0xff.
 */
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 0xff: not in the alphabet. Built at compile time from the alphabet's ranges. */
#define R4(v) v, v, v, v
#define R16(v) R4(v), R4(v), R4(v), R4(v)
static const uint8_t value_of[256] = {
    R16(0xff), R16(0xff),                                                   /* 0x00-0x1f */
    R4(0xff), R4(0xff), R4(0xff), 0xff, 62, 0xff, 0xff,                     /* 0x20-0x2f */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0-9 */
    0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,                 /* @A-O */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 0xff, 0xff, 0xff, 0xff, 63, /* P-Z _ */
    0xff, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,       /* `a-o */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 0xff, 0xff, 0xff, 0xff, 0xff, /* p-z */
    R16(0xff), R16(0xff), R16(0xff), R16(0xff),                             /* 0x80-0xbf */
    R16(0xff), R16(0xff), R16(0xff), R16(0xff),                             /* 0xc0-0xff */
};

int fx_b64url_valid(const char *s, size_t len)
{
    if (len % 4 == 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (value_of[(unsigned char)s[i]] == 0xff)
            return 0;
    if (len % 4 == 2)
        return (value_of[(unsigned char)s[len - 1]] & 0x0f) == 0;
    if (len % 4 == 3)
        return (value_of[(unsigned char)s[len - 1]] & 0x03) == 0;
    return 1;
}

size_t fx_b64url_decoded_len(size_t len)
{
    size_t n = len / 4 * 3;
    if (len % 4 == 2)
        n += 1;
    else if (len % 4 == 3)
        n += 2;
    return n;
}

int fx_b64url_decode(const char *s, size_t len, unsigned char *out, size_t *outlen)
{
    if (!fx_b64url_valid(s, len))
        return -1;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t v = (uint32_t)value_of[p[i]] << 18 | (uint32_t)value_of[p[i + 1]] << 12 |
                     (uint32_t)value_of[p[i + 2]] << 6 | value_of[p[i + 3]];
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (len - i == 2) {
        uint32_t v = (uint32_t)value_of[p[i]] << 18 | (uint32_t)value_of[p[i + 1]] << 12;
        out[o++] = (unsigned char)(v >> 16);
    } else if (len - i == 3) {
        uint32_t v = (uint32_t)value_of[p[i]] << 18 | (uint32_t)value_of[p[i + 1]] << 12 |
                     (uint32_t)value_of[p[i + 2]] << 6;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
    }
    *outlen = o;
    return 0;
}

size_t fx_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void fx_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
}

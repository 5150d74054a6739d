/*
 * slice.h — (pointer, length) views of bytes owned by someone else.
 *
 * Wire data (request lines, header names and values, path segments) is
 * passed around as slices into the buffer that holds it, never as copies.
 * A slice is valid as long as its owner (usually the request arena) is.
 */
#ifndef FX_SLICE_H
#define FX_SLICE_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct fx_slice {
    const char *p;
    size_t n;
} fx_slice;

#define FX_SLICE_LIT(s) ((fx_slice){(s), sizeof(s) - 1})
#define FX_SLICE_NULL ((fx_slice){NULL, 0})

static inline fx_slice fx_slice_make(const char *p, size_t n)
{
    return (fx_slice){p, n};
}

static inline fx_slice fx_slice_cstr(const char *s)
{
    return (fx_slice){s, s ? strlen(s) : 0};
}

static inline int fx_slice_eq(fx_slice a, fx_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* ASCII case-insensitive equality (header names, methods in config). */
static inline int fx_slice_ieq(fx_slice a, fx_slice b)
{
    return a.n == b.n && (a.n == 0 || strncasecmp(a.p, b.p, a.n) == 0);
}

static inline int fx_slice_ieq_lit(fx_slice a, const char *lit)
{
    return fx_slice_ieq(a, fx_slice_cstr(lit));
}

static inline int fx_slice_starts_with(fx_slice a, fx_slice prefix)
{
    return a.n >= prefix.n && memcmp(a.p, prefix.p, prefix.n) == 0;
}

/* Trim optional whitespace (SP / HTAB) at both ends. */
static inline fx_slice fx_slice_trim(fx_slice s)
{
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

#endif

/*
 * cloudevent.c — change events as CloudEvents 1.0 structured JSON (see
 * cloudevent.h and DESIGN.md "Event contract").
 *
 *   utf8_seq            one well-formed UTF-8 sequence (or the length of the
 *                       ill-formed prefix to replace); the base of every check
 *   fx_ce_json_valid    strict RFC 8259 check: iterative, the open containers
 *                       kept as bits of one uint64_t (nesting ≤ 64), no allocation
 *   claim lookup        the type of a claim, read from fx_jwt_claims_json: the
 *                       rendered form alone cannot tell the string "true" from true
 *   fx_ce_render_key    literal text, percent-decoded {param}, {token.CLAIM}
 *   fx_ce_uuid7 / time  ids and timestamps, no libc time functions
 *   fx_ce_build         the event, written twice by one function: a counting pass
 *                       sizes the single allocation exactly, the second pass fills it
 */
#include "cloudevent.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/*
 * The length (1..4) of the well-formed UTF-8 sequence at s, or 0 with *bad =
 * the length of its maximal ill-formed prefix (≥ 1; Unicode's "maximal
 * subpart", the unit one U+FFFD replaces). Overlongs, UTF-16 surrogates and
 * code points above U+10FFFF are ill-formed (RFC 3629 table).
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* below: overlong */
        else if (c == 0xED)
            hi = 0x9F; /* above: surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* below: overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above: beyond U+10FFFF */
    } else {
        *bad = 1; /* 80..C1 (continuation, overlong lead) and F5..FF */
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t bad;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(s + i, n - i, &bad);
        if (!l)
            return 0;
        i += l;
    }
    return 1;
}

/* Bytes a JSON string cannot hold as they are: C0 controls, '"', '\\', and
 * the bytes of multi-byte UTF-8 (to be checked). The rest are copied in runs. */
static const unsigned char str_special[256] = {
    [0 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xFF] = 1,
};

/* ---- JSON check ----------------------------------------------------------------------------- */

#define JSON_MAX_DEPTH 64

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Four hex digits at s (bounded by e), or -1. */
static long hex4(const unsigned char *s, const unsigned char *e)
{
    if (e - s < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

static const unsigned char *json_ws(const unsigned char *s, const unsigned char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    return s;
}

/* s at '"': past the closing quote, or NULL. Escapes must be complete and
 * \u surrogates paired (high then low); raw bytes must be UTF-8 and ≥ 0x20. */
static const unsigned char *json_string(const unsigned char *s, const unsigned char *e)
{
    size_t bad;
    for (s++; s < e;) {
        while (s < e && !str_special[*s])
            s++;
        if (s >= e)
            break;
        unsigned char c = *s;
        if (c == '"')
            return s + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            size_t l = utf8_seq(s, (size_t)(e - s), &bad);
            if (!l)
                return NULL;
            s += l;
            continue;
        }
        if (e - s < 2)
            return NULL;
        switch (s[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            s += 2;
            continue;
        case 'u':
            break;
        default:
            return NULL;
        }
        long cp = hex4(s + 2, e);
        if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
            return NULL; /* a low surrogate without its high one */
        s += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = e - s >= 2 && s[0] == '\\' && s[1] == 'u' ? hex4(s + 2, e) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return NULL;
            s += 6;
        }
    }
    return NULL;
}

/* -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? — past it, or NULL. */
static const unsigned char *json_number(const unsigned char *s, const unsigned char *e)
{
#define DIGIT(p) ((p) < e && *(p) >= '0' && *(p) <= '9')
    if (s < e && *s == '-')
        s++;
    if (s < e && *s == '0') {
        s++;
    } else if (DIGIT(s)) {
        while (DIGIT(s))
            s++;
    } else {
        return NULL;
    }
    if (s < e && *s == '.') {
        s++;
        if (!DIGIT(s))
            return NULL;
        while (DIGIT(s))
            s++;
    }
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < e && (*s == '+' || *s == '-'))
            s++;
        if (!DIGIT(s))
            return NULL;
        while (DIGIT(s))
            s++;
    }
    return s;
#undef DIGIT
}

int fx_ce_json_valid(const char *p, size_t n)
{
    if (!p)
        return 0;
    const unsigned char *s = (const unsigned char *)p, *e = s + n;
    uint64_t objects = 0; /* bit d-1 set: the container at depth d is an object */
    unsigned depth = 0;
    s = json_ws(s, e);
value:
    if (s >= e)
        return 0;
    switch (*s) {
    case '{':
    case '[':
        if (depth == JSON_MAX_DEPTH)
            return 0;
        if (*s == '{')
            objects |= (uint64_t)1 << depth;
        else
            objects &= ~((uint64_t)1 << depth);
        depth++;
        s = json_ws(s + 1, e);
        if (s < e && *s == (objects >> (depth - 1) & 1 ? '}' : ']')) {
            s++;
            depth--;
            goto after;
        }
        if (objects >> (depth - 1) & 1)
            goto key;
        goto value;
    case '"':
        s = json_string(s, e);
        break;
    case 't':
        s = e - s >= 4 && !memcmp(s, "true", 4) ? s + 4 : NULL;
        break;
    case 'f':
        s = e - s >= 5 && !memcmp(s, "false", 5) ? s + 5 : NULL;
        break;
    case 'n':
        s = e - s >= 4 && !memcmp(s, "null", 4) ? s + 4 : NULL;
        break;
    default:
        s = json_number(s, e);
        break;
    }
    if (!s)
        return 0;
after:
    s = json_ws(s, e);
    if (depth == 0)
        return s == e;
    if (s >= e)
        return 0;
    int in_object = objects >> (depth - 1) & 1;
    if (*s == ',') {
        s = json_ws(s + 1, e);
        if (in_object)
            goto key;
        goto value;
    }
    if (*s != (in_object ? '}' : ']'))
        return 0;
    s++;
    depth--;
    goto after;
key:
    if (s >= e || *s != '"' || !(s = json_string(s, e)))
        return 0;
    s = json_ws(s, e);
    if (s >= e || *s != ':')
        return 0;
    s = json_ws(s + 1, e);
    goto value;
}

int fx_ce_content_type_is_json(fx_slice ct)
{
    const char *semi = ct.n ? memchr(ct.p, ';', ct.n) : NULL;
    if (semi)
        ct.n = (size_t)(semi - ct.p);
    ct = fx_slice_trim(ct);
    const char *slash = ct.n ? memchr(ct.p, '/', ct.n) : NULL;
    if (!slash || slash == ct.p || slash == ct.p + ct.n - 1)
        return 0;
    fx_slice type = fx_slice_make(ct.p, (size_t)(slash - ct.p));
    fx_slice sub = fx_slice_make(slash + 1, (size_t)(ct.p + ct.n - slash - 1));
    /* both must be RFC 9110 tokens: no second '/', no spaces inside */
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < ct.n; i++) {
        unsigned char c = (unsigned char)ct.p[i];
        if (ct.p + i != slash &&
            !((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c && strchr(tchar_extra, c))))
            return 0;
    }
    if (fx_slice_ieq_lit(type, "application") && fx_slice_ieq_lit(sub, "json"))
        return 1;
    return sub.n > 5 && fx_slice_ieq_lit(fx_slice_make(sub.p + sub.n - 5, 5), "+json");
}

/* ---- claims ------------------------------------------------------------------------------------ */

/*
 * fx_jwt_claim_render gives the value but not the type: the string "true"
 * and the boolean true render alike. The type comes from the claims' compact
 * JSON (fx_jwt_claims_json, written by jansson, so well-formed), walked here
 * the way the library's lookup walks the payload: a top-level member of the
 * whole name first, else one object per dotted segment.
 */
typedef enum claim_kind {
    CK_ABSENT = 0,
    CK_NULL,
    CK_STRING,
    CK_INTEGER,
    CK_REAL,
    CK_BOOLEAN,
    CK_OBJECT,
    CK_ARRAY,
} claim_kind;

static const char *cj_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at '\\': the decoded bytes (UTF-8) in buf, *bn of them; past the escape, or NULL. */
static const char *cj_unescape(const char *p, unsigned char buf[4], size_t *bn)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *f = p[1] ? strchr(from, p[1]) : NULL;
    if (f) {
        buf[0] = (unsigned char)to[f - from];
        *bn = 1;
        return p + 2;
    }
    if (p[1] != 'u')
        return NULL;
    const unsigned char *u = (const unsigned char *)p + 2;
    long cp = hex4(u, u + strnlen((const char *)u, 4));
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u') {
        u = (const unsigned char *)p + 2;
        long lo = hex4(u, u + strnlen((const char *)u, 4));
        if (lo < 0xDC00 || lo > 0xDFFF)
            return NULL;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    } else if (cp < 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return NULL;
    }
    if (cp < 0x80) {
        buf[0] = (unsigned char)cp, *bn = 1;
    } else if (cp < 0x800) {
        buf[0] = (unsigned char)(0xC0 | cp >> 6), buf[1] = (unsigned char)(0x80 | (cp & 0x3F)), *bn = 2;
    } else if (cp < 0x10000) {
        buf[0] = (unsigned char)(0xE0 | cp >> 12), buf[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        buf[2] = (unsigned char)(0x80 | (cp & 0x3F)), *bn = 3;
    } else {
        buf[0] = (unsigned char)(0xF0 | cp >> 18), buf[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        buf[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), buf[3] = (unsigned char)(0x80 | (cp & 0x3F)), *bn = 4;
    }
    return p;
}

/*
 * p at a string's '"': compares its decoded bytes with want (when want is not
 * NULL) and counts them (*len). Returns past the closing quote, or NULL.
 */
static const char *cj_string(const char *p, const char *want, size_t wn, int *eq, size_t *len)
{
    size_t i = 0;
    int same = 1;
    for (p++; *p != '"';) {
        unsigned char buf[4];
        size_t bn = 1;
        if (*p == '\0')
            return NULL;
        if (*p == '\\') {
            if (!(p = cj_unescape(p, buf, &bn)))
                return NULL;
        } else {
            buf[0] = (unsigned char)*p++;
        }
        if (want && same && (i + bn > wn || memcmp(want + i, buf, bn)))
            same = 0;
        i += bn;
    }
    if (eq)
        *eq = same && i == wn;
    if (len)
        *len = i;
    return p + 1;
}

/* Past one value (any nesting, no recursion), or NULL. */
static const char *cj_skip(const char *p)
{
    size_t depth = 0;
    do {
        p = cj_ws(p);
        if (*p == '"') {
            if (!(p = cj_string(p, NULL, 0, NULL, NULL)))
                return NULL;
        } else if (*p == '{' || *p == '[') {
            depth++, p++;
        } else if (*p == '}' || *p == ']') {
            if (!depth)
                return NULL;
            depth--, p++;
        } else if (*p == ',' || *p == ':') {
            if (!depth)
                return NULL;
            p++;
        } else {
            const char *s = p;
            while (*p && !strchr(",:]} \t\r\n", *p))
                p++;
            if (p == s)
                return NULL;
        }
    } while (depth);
    return p;
}

/* p at '{': the value of the member named seg, or NULL. */
static const char *cj_member(const char *p, const char *seg, size_t segn)
{
    p = cj_ws(p + 1);
    if (*p == '}')
        return NULL;
    for (;;) {
        int eq;
        if (*p != '"' || !(p = cj_string(p, seg, segn, &eq, NULL)))
            return NULL;
        p = cj_ws(p);
        if (*p != ':')
            return NULL;
        p = cj_ws(p + 1);
        if (eq)
            return p;
        if (!(p = cj_skip(p)))
            return NULL;
        p = cj_ws(p);
        if (*p != ',')
            return NULL;
        p = cj_ws(p + 1);
    }
}

/* The kind of claim `name`, and (strings, integers) the length it renders to. */
static claim_kind claim_lookup(const char *json, const char *name, size_t *rendered_len)
{
    const char *root = json ? cj_ws(json) : "";
    if (*root != '{')
        return CK_ABSENT;
    const char *v = cj_member(root, name, strlen(name));
    if (!v && strchr(name, '.')) {
        v = root;
        for (const char *seg = name; v;) {
            const char *dot = strchr(seg, '.');
            size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
            v = *v == '{' ? cj_member(v, seg, n) : NULL;
            if (!dot)
                break;
            seg = dot + 1;
        }
    }
    if (!v)
        return CK_ABSENT;
    switch (*v) {
    case '"':
        return cj_string(v, NULL, 0, NULL, rendered_len) ? CK_STRING : CK_ABSENT;
    case '{':
        return CK_OBJECT;
    case '[':
        return CK_ARRAY;
    case 't':
    case 'f':
        return CK_BOOLEAN;
    case 'n':
        return CK_NULL;
    default: {
        size_t n = strspn(v, "-0123456789");
        *rendered_len = n;
        return strchr(".eE", v[n]) && v[n] ? CK_REAL : CK_INTEGER;
    }
    }
}

/* ---- keys --------------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static long fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* C0, DEL and C1 (Unicode category Cc): never part of a key. cp from a well-formed sequence. */
static int is_control(const unsigned char *s, size_t l)
{
    return (l == 1 && (s[0] < 0x20 || s[0] == 0x7F)) || (l == 2 && s[0] == 0xC2 && s[1] < 0xA0);
}

/* The first problem of decoded key text: 0 none, 1 a control character, 2 not UTF-8. */
static int key_text_problem(const unsigned char *s, size_t n, size_t *at)
{
    size_t bad;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(s + i, n - i, &bad);
        *at = i;
        if (!l)
            return 2;
        if (is_control(s + i, l))
            return 1;
        i += l;
    }
    return 0;
}

#define NAME_FMT "%.*s"
#define NAME_ARG(n, p) (int)((n) > 64 ? 64 : (n)), (p)

static long put_param(const fx_ce_param *params, size_t nparams, const char *name, size_t nn, char *out,
                      size_t room, char *why, size_t whylen)
{
    const fx_ce_param *pm = NULL;
    for (size_t i = 0; i < nparams && !pm; i++)
        if (params[i].name.n == nn && !memcmp(params[i].name.p, name, nn))
            pm = &params[i];
    if (!pm)
        return fail(why, whylen, "the key template names '{" NAME_FMT "}', which the route did not bind",
                    NAME_ARG(nn, name));
    /* percent-decode; '+' stays '+' (a path, not a form) */
    const char *v = pm->value.p;
    size_t len = 0;
    for (size_t i = 0; i < pm->value.n; i++, len++) {
        if (len >= room)
            return -2;
        if (v[i] != '%') {
            out[len] = v[i];
            continue;
        }
        int hi = i + 2 < pm->value.n ? hexval((unsigned char)v[i + 1]) : -1;
        int lo = hi >= 0 ? hexval((unsigned char)v[i + 2]) : -1;
        if (lo < 0)
            return fail(why, whylen, "path parameter '" NAME_FMT "' has a bad percent-escape at byte %zu",
                        NAME_ARG(nn, name), i + 1);
        out[len] = (char)(hi << 4 | lo);
        i += 2;
    }
    size_t at;
    int problem = key_text_problem((const unsigned char *)out, len, &at);
    if (problem == 1)
        return fail(why, whylen, "path parameter '" NAME_FMT "' decodes to a control character (0x%02x)",
                    NAME_ARG(nn, name), (unsigned char)out[at] == 0xC2 ? (unsigned char)out[at + 1]
                                                                           : (unsigned char)out[at]);
    if (problem == 2)
        return fail(why, whylen, "path parameter '" NAME_FMT "' does not decode to valid UTF-8 (at decoded byte %zu)",
                    NAME_ARG(nn, name), at + 1);
    return (long)len;
}

static long put_claim(const fx_jwt_claims *claims, const char *name, size_t nn, char *out, size_t room, char *why,
                      size_t whylen)
{
    static const char *const kinds[] = {
        [CK_REAL] = "a number with a fraction or exponent", [CK_BOOLEAN] = "a boolean",
        [CK_OBJECT] = "an object", [CK_ARRAY] = "an array"};
    char cname[256];
    if (nn >= sizeof(cname))
        return fail(why, whylen, "the claim name in '{token." NAME_FMT "...}' is too long", NAME_ARG(nn, name));
    memcpy(cname, name, nn);
    cname[nn] = '\0';
    if (!claims)
        return fail(why, whylen, "the request has no token, so the key's '{token.%s}' has no value", cname);
    size_t rlen = 0;
    claim_kind k = claim_lookup(fx_jwt_claims_json(claims), cname, &rlen);
    if (k == CK_ABSENT)
        return fail(why, whylen, "the token has no '%s' claim", cname);
    if (k == CK_NULL)
        return fail(why, whylen, "the token's '%s' claim is null", cname);
    if (k != CK_STRING && k != CK_INTEGER)
        return fail(why, whylen, "the token's '%s' claim is %s; a key takes only a string or an integer", cname,
                    kinds[k]);
    if (rlen >= room)
        return -2;
    int n = fx_jwt_claim_render(claims, cname, out, room);
    if (n < 0 || (size_t)n != rlen)
        return fail(why, whylen, "the token's '%s' claim could not be rendered", cname);
    size_t at;
    int problem = key_text_problem((const unsigned char *)out, (size_t)n, &at);
    if (problem)
        return fail(why, whylen, "the token's '%s' claim contains %s", cname,
                    problem == 1 ? "a control character" : "invalid UTF-8");
    return n;
}

long fx_ce_render_key(const char *tmpl, const fx_ce_param *params, size_t nparams, const fx_jwt_claims *claims,
                      char *out, size_t cap, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!out || cap < 2)
        return fail(why, whylen, "no room for a key");
    out[0] = '\0';
    if (!tmpl)
        return fail(why, whylen, "no key template");
    size_t len = 0;
    for (const char *t = tmpl; *t;) {
        if (*t != '{') {
            const char *b = strchr(t, '{');
            size_t n = b ? (size_t)(b - t) : strlen(t);
            if (n > cap - 1 - len)
                goto too_long;
            memcpy(out + len, t, n);
            len += n;
            t += n;
            continue;
        }
        const char *close = strchr(t + 1, '}');
        if (!close)
            return fail(why, whylen, "the key template has '{' without '}'");
        const char *name = t + 1;
        size_t nn = (size_t)(close - name);
        long r = nn > 6 && !memcmp(name, "token.", 6)
                     ? put_claim(claims, name + 6, nn - 6, out + len, cap - len, why, whylen)
                     : put_param(params, nparams, name, nn, out + len, cap - 1 - len, why, whylen);
        if (r == -2)
            goto too_long;
        if (r < 0) {
            out[0] = '\0';
            return -1;
        }
        len += (size_t)r;
        t = close + 1;
    }
    out[len] = '\0';
    if (len == 0)
        return fail(why, whylen, "the key is empty (every part of the template rendered as empty text)");
    return (long)len;
too_long:
    out[0] = '\0';
    return fail(why, whylen, "the key is longer than %zu bytes", cap - 1);
}

/* ---- ids and time ------------------------------------------------------------------------------- */

static const char hexdigits[] = "0123456789abcdef";

int fx_ce_uuid7(uint64_t unix_ms, char out[37])
{
    unsigned char rnd[10];
    if (RAND_bytes(rnd, 10) != 1) {
        out[0] = '\0';
        return -1;
    }
    fx_ce_uuid7_from(unix_ms, rnd, out);
    return 0;
}

void fx_ce_uuid7_from(uint64_t unix_ms, const unsigned char rnd[10], char out[37])
{
    unsigned char b[16];
    memcpy(b + 6, rnd, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(unix_ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0F)); /* version 7 */
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3F)); /* variant 10 */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hexdigits[b[i] >> 4];
        *o++ = hexdigits[b[i] & 15];
    }
    *o = '\0';
}

static void digits(char *o, unsigned v, int n)
{
    while (n--) {
        o[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* 9999-12-31T23:59:59.999Z: the last instant the 24-character form can show. */
#define MAX_TIME_MS UINT64_C(253402300799999)

void fx_ce_time(uint64_t unix_ms, char out[25])
{
    if (unix_ms > MAX_TIME_MS)
        unix_ms = MAX_TIME_MS;
    uint64_t secs = unix_ms / 1000, days = secs / 86400;
    unsigned sod = (unsigned)(secs % 86400);
    /* civil date from days since 1970-01-01 (proleptic Gregorian, eras of 400 years) */
    uint64_t z = days + 719468, era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    unsigned y = (unsigned)(yoe + era * 400) + (m <= 2);
    memcpy(out, "0000-00-00T00:00:00.000Z", 25);
    digits(out, y, 4);
    digits(out + 5, m, 2);
    digits(out + 8, d, 2);
    digits(out + 11, sod / 3600, 2);
    digits(out + 14, sod / 60 % 60, 2);
    digits(out + 17, sod % 60, 2);
    digits(out + 20, (unsigned)(unix_ms % 1000), 3);
}

/* ---- the event ---------------------------------------------------------------------------------- */

/* A writer that only counts while p is NULL: the same code sizes and fills the event. */
typedef struct wbuf {
    char *p;
    size_t n;
} wbuf;

static void w_put(wbuf *w, const void *s, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

#define W_LIT(w, s) w_put((w), (s), sizeof(s) - 1)

/*
 * s as the inside of a JSON string: '"', '\\' and C0 controls escaped (short
 * forms where JSON has them, else \u00XX); each ill-formed UTF-8 subpart
 * replaced by U+FFFD, so outside bytes can never make the event invalid.
 */
static void w_esc(wbuf *w, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t start = 0, i = 0, bad;
    if (!n)
        return; /* str may be NULL (an empty slice) */
    while (i < n) {
        unsigned char c = s[i];
        if (!str_special[c]) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq(s + i, n - i, &bad);
            if (l) {
                i += l;
                continue;
            }
            w_put(w, s + start, i - start);
            W_LIT(w, "\xEF\xBF\xBD");
            start = i += bad;
            continue;
        }
        w_put(w, s + start, i - start);
        char e[6] = {'\\', 0};
        switch (c) {
        case '"': case '\\': e[1] = (char)c; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hexdigits[c >> 4];
            e[5] = hexdigits[c & 15];
        }
        w_put(w, e, e[1] == 'u' ? 6 : 2);
        start = ++i;
    }
    w_put(w, s + start, n - start);
}

static void w_member(wbuf *w, const char *name, size_t nn, const char *s, size_t n)
{
    w_put(w, name, nn);
    w_put(w, "\"", 1);
    w_esc(w, s, n);
    w_put(w, "\"", 1);
}

/* ",\"name\":\"<escaped>\"" */
#define W_MEMBER(w, name, s, n) w_member((w), ",\"" name "\":", sizeof(",\"" name "\":") - 1, (s), (n))

static void w_base64(wbuf *w, const unsigned char *s, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = (n + 2) / 3 * 4;
    if (w->p) {
        char *o = w->p + w->n;
        size_t i = 0;
        for (; i + 3 <= n; i += 3, o += 4) {
            uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
            o[0] = al[v >> 18], o[1] = al[v >> 12 & 63], o[2] = al[v >> 6 & 63], o[3] = al[v & 63];
        }
        if (i < n) {
            uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
            o[0] = al[v >> 18], o[1] = al[v >> 12 & 63];
            o[2] = i + 1 < n ? al[v >> 6 & 63] : '=';
            o[3] = '=';
        }
    }
    w->n += out;
}

enum data_form { DATA_NONE, DATA_OMITTED, DATA_JSON, DATA_STRING, DATA_BASE64 };

static void w_event(wbuf *w, const fx_ce_input *in, enum data_form form, fx_slice ct, const char *body,
                    size_t body_len)
{
    fx_slice key = fx_slice_cstr(in->key), type = fx_slice_cstr(in->type), route = fx_slice_cstr(in->source_route),
             id = fx_slice_cstr(in->id);
    char time[25], status[16];
    fx_ce_time(in->time_ms, time);
    W_LIT(w, "{\"specversion\":\"1.0\"");
    W_MEMBER(w, "id", id.p, id.n);
    W_LIT(w, ",\"source\":\"/ficus/");
    w_esc(w, route.p, route.n);
    W_LIT(w, "\"");
    W_MEMBER(w, "type", type.p, type.n);
    W_MEMBER(w, "subject", key.p, key.n);
    W_MEMBER(w, "partitionkey", key.p, key.n);
    W_MEMBER(w, "time", time, 24);
    if (form == DATA_JSON || form == DATA_STRING || form == DATA_BASE64) {
        if (ct.n)
            W_MEMBER(w, "datacontenttype", ct.p, ct.n);
        else if (form == DATA_BASE64)
            W_LIT(w, ",\"datacontenttype\":\"application/octet-stream\"");
        else
            W_LIT(w, ",\"datacontenttype\":\"text/plain; charset=utf-8\"");
    }
    if (form == DATA_JSON) {
        W_LIT(w, ",\"data\":");
        w_put(w, body, body_len);
    } else if (form == DATA_STRING) {
        W_MEMBER(w, "data", body, body_len);
    } else if (form == DATA_BASE64) {
        W_LIT(w, ",\"data_base64\":\"");
        w_base64(w, (const unsigned char *)body, body_len);
        W_LIT(w, "\"");
    }
    W_MEMBER(w, "ficusrequestid", in->request_id.p, in->request_id.n);
    if (in->actor)
        W_MEMBER(w, "ficusactor", in->actor, strlen(in->actor));
    W_MEMBER(w, "ficusmethod", in->method.p, in->method.n);
    int sn = snprintf(status, sizeof(status), "%d", in->status);
    W_LIT(w, ",\"ficusstatus\":");
    w_put(w, status, (size_t)sn);
    if (form == DATA_OMITTED) {
        if (in->omitted == FX_CE_DATA_TOO_LARGE)
            W_LIT(w, ",\"ficusdataomitted\":\"too_large\"");
        else
            W_LIT(w, ",\"ficusdataomitted\":\"incomplete\"");
    }
    W_LIT(w, "}");
}

int fx_ce_build(const fx_ce_input *in, char **out, size_t *outlen)
{
    *out = NULL;
    if (outlen)
        *outlen = 0;
    const char *body = in->body ? in->body : "";
    size_t body_len = in->body ? in->body_len : 0;
    fx_slice ct = fx_slice_trim(in->content_type.p ? in->content_type : FX_SLICE_NULL);
    enum data_form form;
    if (!in->has_data)
        form = DATA_NONE;
    else if (in->omitted != FX_CE_DATA_COMPLETE)
        form = DATA_OMITTED;
    else if (fx_ce_content_type_is_json(ct) && fx_ce_json_valid(body, body_len))
        form = DATA_JSON;
    else if (utf8_valid((const unsigned char *)body, body_len))
        form = DATA_STRING;
    else
        form = DATA_BASE64;
    wbuf w = {NULL, 0};
    w_event(&w, in, form, ct, body, body_len);
    size_t n = w.n;
    if (!(w.p = malloc(n + 1)))
        return -1;
    w.n = 0;
    w_event(&w, in, form, ct, body, body_len);
    w.p[n] = '\0';
    *out = w.p;
    if (outlen)
        *outlen = n;
    return 0;
}

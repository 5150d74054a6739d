/*
 * expr.c — the policy expression language: compiled once, evaluated with no
 * allocation and no parsing (docs/policy-language.md is the user's view).
 *
 *   lexer          lex(): one token at a time, positions as byte offsets
 *   parser         parse_or .. parse_primary: recursive descent with a depth
 *                  limit, building a flat node array; field selections are
 *                  folded into one PATH node (root + segments), && and ||
 *                  chains into one n-ary node, so evaluation recursion is
 *                  bounded by the nesting limit, never by the length
 *   load checks    check_*: unknown roots, fields and functions, arity, and
 *                  comparisons whose static types can never match (a list
 *                  against an int) are errors with an offset
 *   values         val: a view (JSON node, slice, literal list, key-value
 *                  list); nothing is copied, lower() only sets a fold flag
 *   evaluation     ev(): short-circuit logic; a missing field or a type
 *                  mismatch makes the comparison false
 *
 * Node kinds, operators and static types come first, then the lexer.
 */
#include "policy_internal.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- types ------------------------------------------------------------------------- */

enum node_kind {
    N_LIT_NULL = 1, N_LIT_BOOL, N_LIT_INT, N_LIT_STR, N_LIST, /* literals */
    N_PATH,                                                   /* token.a.b, request.headers['x'] */
    N_AND, N_OR, N_NOT,
    N_EQ, N_NE, N_LT, N_LE, N_GT, N_GE, N_IN,
    N_HAS, N_SIZE, N_STARTS, N_ENDS, N_LOWER,
};

/* Where a path starts. */
enum root {
    R_TOKEN = 1, R_CONTEXT,
    R_METHOD, R_PATH, R_ROUTE,          /* request.method / .path / .route */
    R_PARAMS, R_HEADERS, R_QUERY,       /* request.params / .headers / .query */
};

/* Static types: what the compiler knows before any request. */
enum stype { T_DYN = 0, T_NULL, T_BOOL, T_INT, T_STR, T_LIST, T_MAP };

static const char *const stype_name[] = {"a value", "null", "a bool", "an int", "a string", "a list", "a map"};

/* A path segment: a constant key, a constant list index, or an expression. */
typedef struct seg {
    uint8_t kind; /* SEG_KEY, SEG_INDEX, SEG_EXPR */
    uint32_t a;   /* KEY: string offset; INDEX: index; EXPR: node */
    uint32_t len; /* KEY: length */
} seg;
enum { SEG_KEY = 1, SEG_INDEX, SEG_EXPR };

typedef struct node {
    uint8_t kind;
    uint8_t type;   /* enum stype */
    uint8_t root;   /* N_PATH */
    uint32_t start, end; /* source span */
    uint32_t qstart, qend; /* what explain quotes: the span with its parentheses */
    uint32_t first, n;   /* N_LIST/AND/OR/calls: kids[first..first+n); N_PATH: segs[first..); */
    uint32_t a, b;       /* unary/binary operands; N_LIT_STR: string offset (a) and length (b) */
    int64_t i;           /* N_LIT_INT / N_LIT_BOOL */
} node;

struct fx_expr {
    node *nodes;
    size_t nnodes, capnodes;
    uint32_t *kids;
    size_t nkids, capkids;
    seg *segs;
    size_t nsegs, capsegs;
    char *strs;        /* string literals and keys, unescaped */
    size_t nstrs, capstrs;
    char *src;         /* a copy of the source, for explain */
    size_t srclen;
    uint32_t top;
    unsigned needs;
    struct { uint8_t kind; uint32_t off, len; } *reads; /* header / query names read by name */
    size_t nreads, capreads;
    unsigned reads_any;  /* FX_EXPR_READS_*: a header / query read by a computed name */
};

/* ---- lexer ------------------------------------------------------------------------------ */

enum tok {
    K_EOF = 0, K_IDENT, K_INT, K_STR,
    K_LP, K_RP, K_LB, K_RB, K_COMMA, K_DOT,
    K_EQ, K_NE, K_LT, K_LE, K_GT, K_GE, K_AND, K_OR, K_NOT, K_MINUS,
    K_ERR,
};

typedef struct lexer {
    const char *s;
    size_t len, pos;
    enum tok t;
    size_t tstart, tend; /* the token's bytes */
    size_t prev_end;     /* where the token before it ended (node spans end there) */
    int64_t ival;
} lexer;

typedef struct parser {
    lexer lx;
    fx_expr *e;
    fx_expr_error *err;
    int failed;
    int depth;
} parser;

static void __attribute__((format(printf, 3, 4))) fail_at(parser *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    p->err->offset = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
    va_end(ap);
}

/* Well-formed UTF-8 (no overlongs, no surrogates); returns the offset of the first bad byte
 * or len. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return i;
        }
        if (i + n >= len)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
                return i;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident_char(int c) { return isalnum(c) || c == '_'; }

/* The next token. Strings are checked here and unescaped by str_literal() later. */
static void lex(parser *p)
{
    lexer *l = &p->lx;
    l->prev_end = l->tend;
    while (l->pos < l->len && (l->s[l->pos] == ' ' || l->s[l->pos] == '\t' ||
                               l->s[l->pos] == '\n' || l->s[l->pos] == '\r'))
        l->pos++;
    l->tstart = l->pos;
    if (l->pos >= l->len) {
        l->t = K_EOF;
        l->tend = l->pos;
        return;
    }
    const char *s = l->s;
    size_t i = l->pos;
    int c = (unsigned char)s[i];
    if (is_ident_start(c)) {
        while (i < l->len && is_ident_char((unsigned char)s[i]))
            i++;
        l->t = K_IDENT;
    } else if (isdigit(c)) {
        uint64_t v = 0;
        while (i < l->len && isdigit((unsigned char)s[i])) {
            unsigned d = (unsigned)(s[i] - '0');
            if (v > ((uint64_t)INT64_MAX + 1 - d) / 10) {
                fail_at(p, l->tstart, "integer literal is out of range (64-bit)");
                l->t = K_ERR;
                return;
            }
            v = v * 10 + d;
            i++;
        }
        if (i < l->len && (is_ident_char((unsigned char)s[i]) || s[i] == '.')) {
            fail_at(p, i, "malformed number: only decimal integers are supported");
            l->t = K_ERR;
            return;
        }
        if (s[l->tstart] == '0' && i - l->tstart > 1) {
            fail_at(p, l->tstart, "malformed number: no leading zeros (octal is not supported)");
            l->t = K_ERR;
            return;
        }
        l->ival = (int64_t)(v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v);
        l->t = K_INT;
        if (v > (uint64_t)INT64_MAX)
            l->ival = INT64_MIN; /* only valid after unary minus; checked there */
    } else if (c == '\'' || c == '"') {
        i++;
        for (;;) {
            if (i >= l->len) {
                fail_at(p, l->tstart, "unterminated string: no closing %c", c);
                l->t = K_ERR;
                return;
            }
            if ((unsigned char)s[i] == c)
                break;
            if (s[i] == '\n' || s[i] == '\r') {
                fail_at(p, i, "unterminated string: a line break inside a string literal");
                l->t = K_ERR;
                return;
            }
            if (s[i] == '\\') {
                if (i + 1 >= l->len) {
                    fail_at(p, l->tstart, "unterminated string: no closing %c", c);
                    l->t = K_ERR;
                    return;
                }
                if (!strchr("\\'\"ntr", s[i + 1])) {
                    fail_at(p, i, "unknown escape '\\%c' (use \\\\ \\' \\\" \\n \\t \\r)",
                            isprint((unsigned char)s[i + 1]) ? s[i + 1] : '?');
                    l->t = K_ERR;
                    return;
                }
                i++;
            }
            i++;
        }
        i++;
        l->t = K_STR;
    } else {
        int c2 = i + 1 < l->len ? (unsigned char)s[i + 1] : 0;
        i++;
        switch (c) {
        case '(': l->t = K_LP; break;
        case ')': l->t = K_RP; break;
        case '[': l->t = K_LB; break;
        case ']': l->t = K_RB; break;
        case ',': l->t = K_COMMA; break;
        case '.': l->t = K_DOT; break;
        case '-': l->t = K_MINUS; break;
        case '=':
            if (c2 != '=') {
                fail_at(p, l->tstart, "'=' is not an operator: use '==' to compare");
                l->t = K_ERR;
                return;
            }
            i++, l->t = K_EQ;
            break;
        case '!':
            if (c2 == '=')
                i++, l->t = K_NE;
            else
                l->t = K_NOT;
            break;
        case '<':
            if (c2 == '=')
                i++, l->t = K_LE;
            else
                l->t = K_LT;
            break;
        case '>':
            if (c2 == '=')
                i++, l->t = K_GE;
            else
                l->t = K_GT;
            break;
        case '&':
            if (c2 != '&') {
                fail_at(p, l->tstart, "'&' is not an operator: use '&&'");
                l->t = K_ERR;
                return;
            }
            i++, l->t = K_AND;
            break;
        case '|':
            if (c2 != '|') {
                fail_at(p, l->tstart, "'|' is not an operator: use '||'");
                l->t = K_ERR;
                return;
            }
            i++, l->t = K_OR;
            break;
        default:
            if (c >= 0x20 && c < 0x7f)
                fail_at(p, l->tstart, "unexpected character '%c'", c);
            else
                fail_at(p, l->tstart, "unexpected byte 0x%02x", (unsigned)c);
            l->t = K_ERR;
            return;
        }
    }
    l->pos = i;
    l->tend = i;
}

static int tok_is(const parser *p, const char *word)
{
    size_t n = strlen(word);
    return p->lx.t == K_IDENT && p->lx.tend - p->lx.tstart == n &&
           memcmp(p->lx.s + p->lx.tstart, word, n) == 0;
}

static const char *tok_desc(const parser *p, char *buf, size_t cap)
{
    switch (p->lx.t) {
    case K_EOF: return "the end of the expression";
    case K_STR: return "a string";
    case K_INT: return "a number";
    default: break;
    }
    size_t n = p->lx.tend - p->lx.tstart;
    if (n > 40)
        n = 40;
    snprintf(buf, cap, "'%.*s'", (int)n, p->lx.s + p->lx.tstart);
    return buf;
}

/* ---- building ---------------------------------------------------------------------------- */

static void *grow(void *v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return v;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *nv = realloc(v, c * size);
    if (nv)
        *cap = c;
    return nv;
}

static uint32_t new_node(parser *p, int kind, size_t start)
{
    fx_expr *e = p->e;
    node *nv = grow(e->nodes, &e->capnodes, e->nnodes + 1, sizeof(node));
    if (!nv) {
        fail_at(p, start, "out of memory");
        return 0;
    }
    e->nodes = nv;
    node *n = &e->nodes[e->nnodes];
    memset(n, 0, sizeof(*n));
    n->kind = (uint8_t)kind;
    n->start = (uint32_t)start;
    n->end = (uint32_t)start;
    return (uint32_t)e->nnodes++;
}

static node *N(parser *p, uint32_t i) { return &p->e->nodes[i]; }

static uint32_t add_kids(parser *p, const uint32_t *k, size_t n)
{
    fx_expr *e = p->e;
    uint32_t *nv = grow(e->kids, &e->capkids, e->nkids + n + 1, sizeof(uint32_t));
    if (!nv) {
        fail_at(p, 0, "out of memory");
        return 0;
    }
    e->kids = nv;
    uint32_t first = (uint32_t)e->nkids;
    memcpy(e->kids + first, k, n * sizeof(uint32_t));
    e->nkids += n;
    return first;
}

static uint32_t add_str(parser *p, const char *s, size_t n)
{
    fx_expr *e = p->e;
    char *nv = grow(e->strs, &e->capstrs, e->nstrs + n + 1, 1);
    if (!nv) {
        fail_at(p, 0, "out of memory");
        return 0;
    }
    e->strs = nv;
    uint32_t off = (uint32_t)e->nstrs;
    memcpy(e->strs + off, s, n);
    e->strs[off + n] = '\0';
    e->nstrs += n + 1;
    return off;
}

/* The current K_STR token, unescaped, into the string pool. */
static uint32_t str_literal(parser *p, uint32_t *len)
{
    const char *s = p->lx.s + p->lx.tstart + 1;
    size_t n = p->lx.tend - p->lx.tstart - 2;
    char buf[FX_POLICY_MAX_EXPR_BYTES]; /* a literal is shorter than the expression it is in */
    if (n > sizeof(buf)) {
        fail_at(p, p->lx.tstart, "string literal is too long");
        return 0;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\') {
            c = s[++i];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
        buf[o++] = c;
    }
    *len = (uint32_t)o;
    return add_str(p, buf, o);
}

#define MAX_SEGS 64 /* field selections and indexes in one path */

static int add_seg(parser *p, seg *local, size_t *n, seg s)
{
    if (*n == MAX_SEGS) {
        fail_at(p, p->lx.tstart, "a field path has at most %d parts", MAX_SEGS);
        return -1;
    }
    local[(*n)++] = s;
    return 0;
}

static int push_seg(parser *p, seg s)
{
    fx_expr *e = p->e;
    seg *nv = grow(e->segs, &e->capsegs, e->nsegs + 1, sizeof(seg));
    if (!nv) {
        fail_at(p, 0, "out of memory");
        return -1;
    }
    e->segs = nv;
    e->segs[e->nsegs++] = s;
    return 0;
}

/* ---- did you mean --------------------------------------------------------------------------- */

/* " (did you mean 'x'?)" or "" */
static const char *did_you_mean(const char *got, size_t len, const char *const *cands, char *buf,
                                size_t cap)
{
    const char *best = fx_authz_closest(got, len, cands, SIZE_MAX);
    if (!best)
        return "";
    snprintf(buf, cap, " (did you mean '%s'?)", best);
    return buf;
}

/* ---- parser ------------------------------------------------------------------------------ */

static uint32_t parse_or(parser *p);

/* Where a node starts as written: before its parentheses, if it has any. */
static size_t outer_start(const node *n)
{
    return n->qend ? n->qstart : n->start;
}

static int enter(parser *p, size_t off)
{
    if (++p->depth > FX_EXPR_MAX_DEPTH) {
        fail_at(p, off, "expression nests deeper than %d levels", FX_EXPR_MAX_DEPTH);
        return -1;
    }
    return 0;
}

static int expect(parser *p, enum tok t, const char *what)
{
    if (p->failed)
        return -1;
    if (p->lx.t != t) {
        char b[64];
        fail_at(p, p->lx.tstart, "expected %s, found %s", what, tok_desc(p, b, sizeof(b)));
        return -1;
    }
    lex(p);
    return 0;
}

static const char *const roots[] = {"token", "request", "context", NULL};
static const char *const request_fields[] = {"method", "path", "route", "params", "headers", "query", NULL};
static const char *const functions[] = {"has", "size", "startsWith", "endsWith", "lower", NULL};

/* Function name → node kind and arity (including the receiver). */
static int function_kind(const char *s, size_t n, int *arity)
{
    static const struct { const char *name; int kind, arity; } fns[] = {
        {"has", N_HAS, 1}, {"size", N_SIZE, 1}, {"startsWith", N_STARTS, 2},
        {"endsWith", N_ENDS, 2}, {"lower", N_LOWER, 1},
    };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (strlen(fns[i].name) == n && memcmp(fns[i].name, s, n) == 0) {
            *arity = fns[i].arity;
            return fns[i].kind;
        }
    return 0;
}

/* Arguments after '(' up to ')', appended to args[] (which holds the receiver, if any). */
static int parse_args(parser *p, uint32_t *args, size_t *nargs, size_t max)
{
    if (p->lx.t == K_RP) {
        lex(p);
        return 0;
    }
    for (;;) {
        uint32_t a = parse_or(p);
        if (p->failed)
            return -1;
        if (*nargs < max)
            args[*nargs] = a;
        (*nargs)++;
        if (p->lx.t == K_COMMA) {
            lex(p);
            continue;
        }
        return expect(p, K_RP, "',' or ')' after a function argument");
    }
}

static uint32_t make_call(parser *p, const char *name, size_t namelen, size_t start, size_t name_off,
                          uint32_t *args, size_t nargs, int receiver)
{
    int arity = 0;
    int kind = function_kind(name, namelen, &arity);
    if (!kind) {
        char b[64];
        fail_at(p, name_off, "unknown function '%.*s'%s; the functions are has, size, startsWith, "
                "endsWith and lower", (int)(namelen > 40 ? 40 : namelen), name,
                did_you_mean(name, namelen, functions, b, sizeof(b)));
        return 0;
    }
    if ((int)nargs != arity) {
        if (receiver)
            fail_at(p, name_off, "%.*s takes %d argument%s after its receiver (%zu given)",
                    (int)namelen, name, arity - 1, arity - 1 == 1 ? "" : "s", nargs - 1);
        else
            fail_at(p, name_off, "%.*s takes %d argument%s (%zu given)", (int)namelen, name, arity,
                    arity == 1 ? "" : "s", nargs);
        return 0;
    }
    if (kind == N_HAS && N(p, args[0])->kind != N_PATH) {
        fail_at(p, N(p, args[0])->start, "has() takes a field, such as has(token.email)");
        return 0;
    }
    if (kind == N_HAS && receiver) {
        fail_at(p, name_off, "has is a function, not a method: write has(x.y)");
        return 0;
    }
    uint32_t n = new_node(p, kind, start);
    if (p->failed)
        return 0;
    uint32_t first = add_kids(p, args, nargs);
    N(p, n)->first = first;
    N(p, n)->n = (uint32_t)nargs;
    N(p, n)->end = (uint32_t)p->lx.prev_end;
    return n;
}

/* A field path: the root identifier was just read (at `start`). */
static uint32_t parse_path(parser *p, size_t start, size_t rootlen)
{
    const char *name = p->lx.s + start;
    uint32_t n = new_node(p, N_PATH, start);
    if (p->failed)
        return 0;
    /* this path's segments are gathered here and appended at the end: an index expression
     * is a path of its own, whose segments must not interleave with ours */
    seg local[MAX_SEGS];
    size_t nlocal = 0;
    int root;
    if (rootlen == 5 && memcmp(name, "token", 5) == 0) {
        root = R_TOKEN;
        p->e->needs |= FX_AUTHZ_NEEDS_TOKEN;
    } else if (rootlen == 7 && memcmp(name, "context", 7) == 0) {
        root = R_CONTEXT;
        p->e->needs |= FX_AUTHZ_NEEDS_CONTEXT;
    } else if (rootlen == 7 && memcmp(name, "request", 7) == 0) {
        root = 0;
    } else {
        char b[64];
        if ((rootlen == 3 && memcmp(name, "and", 3) == 0) || (rootlen == 2 && memcmp(name, "or", 2) == 0) ||
            (rootlen == 3 && memcmp(name, "not", 3) == 0))
            fail_at(p, start, "'%.*s' is not an operator: use %s", (int)rootlen, name,
                    name[0] == 'a' ? "'&&'" : name[0] == 'o' ? "'||'" : "'!'");
        else
            fail_at(p, start, "unknown name '%.*s'%s; an expression reads token, request and context",
                    (int)(rootlen > 40 ? 40 : rootlen), name, did_you_mean(name, rootlen, roots, b, sizeof(b)));
        return 0;
    }
    if (root == 0) {
        /* request.FIELD is fixed */
        lex(p);
        if (p->lx.t != K_DOT) {
            fail_at(p, start, "'request' alone is not a value: use request.method, .path, .route, "
                    ".params, .headers or .query");
            return 0;
        }
        lex(p);
        if (p->lx.t != K_IDENT) {
            char b[64];
            fail_at(p, p->lx.tstart, "expected a field of request after '.', found %s",
                    tok_desc(p, b, sizeof(b)));
            return 0;
        }
        const char *f = p->lx.s + p->lx.tstart;
        size_t fl = p->lx.tend - p->lx.tstart;
        static const int rmap[] = {R_METHOD, R_PATH, R_ROUTE, R_PARAMS, R_HEADERS, R_QUERY};
        for (int i = 0; request_fields[i]; i++)
            if (strlen(request_fields[i]) == fl && memcmp(request_fields[i], f, fl) == 0)
                root = rmap[i];
        if (!root) {
            char b[64];
            fail_at(p, p->lx.tstart, "request has no field '%.*s'%s; it has method, path, route, "
                    "params, headers and query", (int)(fl > 40 ? 40 : fl), f,
                    did_you_mean(f, fl, request_fields, b, sizeof(b)));
            return 0;
        }
        p->e->needs |= root == R_HEADERS ? FX_AUTHZ_NEEDS_HEADERS
                     : root == R_QUERY   ? FX_AUTHZ_NEEDS_QUERY
                     : root == R_PARAMS  ? FX_AUTHZ_NEEDS_PARAMS
                                         : 0;
        lex(p);
    } else {
        lex(p);
    }
    N(p, n)->root = (uint8_t)root;
    N(p, n)->end = (uint32_t)p->lx.prev_end;
    /* segments; a '.name(' is a method call, which ends the path */
    for (;;) {
        if (p->lx.t == K_DOT) {
            size_t save_pos = p->lx.pos, save_prev = p->lx.prev_end;
            lex(p);
            if (p->lx.t != K_IDENT) {
                char b[64];
                fail_at(p, p->lx.tstart, "expected a field name after '.', found %s",
                        tok_desc(p, b, sizeof(b)));
                return 0;
            }
            /* peek: a call? */
            size_t k = p->lx.tend;
            while (k < p->lx.len && (p->lx.s[k] == ' ' || p->lx.s[k] == '\t' || p->lx.s[k] == '\n' ||
                                     p->lx.s[k] == '\r'))
                k++;
            if (k < p->lx.len && p->lx.s[k] == '(') {
                /* rewind to the '.': the caller handles the method call */
                p->lx.pos = save_pos - 1;
                lex(p);
                p->lx.prev_end = save_prev;
                break;
            }
            if (root == R_METHOD || root == R_PATH || root == R_ROUTE) {
                fail_at(p, p->lx.tstart, "request.%s is a string and has no fields",
                        root == R_METHOD ? "method" : root == R_PATH ? "path" : "route");
                return 0;
            }
            seg s = {SEG_KEY, add_str(p, p->lx.s + p->lx.tstart, p->lx.tend - p->lx.tstart),
                     (uint32_t)(p->lx.tend - p->lx.tstart)};
            if (p->failed || add_seg(p, local, &nlocal, s) < 0)
                return 0;
            lex(p);
        } else if (p->lx.t == K_LB) {
            size_t lb = p->lx.tstart;
            if (enter(p, lb) < 0)
                return 0;
            lex(p);
            /* any expression; a lone string or non-negative int literal becomes a constant
             * key or index, so `token['a-b']` and `token.roles[0]` cost no evaluation */
            seg s = {SEG_EXPR, parse_or(p), 0};
            if (!p->failed) {
                const node *k = N(p, s.a);
                if (k->kind == N_LIT_STR) {
                    s = (seg){SEG_KEY, k->a, k->b};
                } else if (k->kind == N_LIT_INT && k->i >= 0) {
                    s = (seg){SEG_INDEX, (uint32_t)(k->i > UINT32_MAX ? UINT32_MAX : k->i), 0};
                }
            }
            if (p->failed || expect(p, K_RB, "']'") < 0)
                return 0;
            p->depth--;
            if (root == R_METHOD || root == R_PATH || root == R_ROUTE) {
                fail_at(p, lb, "request.%s is a string and cannot be indexed",
                        root == R_METHOD ? "method" : root == R_PATH ? "path" : "route");
                return 0;
            }
            if (s.kind == SEG_KEY && root == R_HEADERS) {
                /* header names are compared case-insensitively: store them lower-case */
                for (uint32_t i = 0; i < s.len; i++)
                    p->e->strs[s.a + i] = (char)tolower((unsigned char)p->e->strs[s.a + i]);
            }
            if (add_seg(p, local, &nlocal, s) < 0)
                return 0;
        } else {
            break;
        }
        N(p, n)->end = (uint32_t)p->lx.prev_end;
    }
    node *nd = N(p, n);
    uint32_t segfirst = (uint32_t)p->e->nsegs;
    for (size_t i = 0; i < nlocal; i++)
        if (push_seg(p, local[i]) < 0)
            return 0;
    nd = N(p, n);
    nd->first = segfirst;
    nd->n = (uint32_t)nlocal;
    if ((root == R_HEADERS || root == R_QUERY) && nlocal) {
        /* which names this expression reads: a repeated one is ambiguous (fx_policy_set_reads) */
        int kind = root == R_HEADERS ? FX_EXPR_READS_HEADER : FX_EXPR_READS_QUERY;
        if (local[0].kind == SEG_EXPR) {
            p->e->reads_any |= (unsigned)kind;
        } else if (local[0].kind == SEG_KEY) {
            fx_expr *e = p->e;
            void *nv = grow(e->reads, &e->capreads, e->nreads + 1, sizeof(*e->reads));
            if (!nv) {
                fail_at(p, nd->start, "out of memory");
                return 0;
            }
            e->reads = nv;
            e->reads[e->nreads].kind = (uint8_t)kind;
            e->reads[e->nreads].off = local[0].a;
            e->reads[e->nreads].len = local[0].len;
            e->nreads++;
        }
    }
    if ((root == R_PARAMS || root == R_HEADERS || root == R_QUERY) && nd->n > 1) {
        fail_at(p, nd->start, "request.%s values are strings and have no fields",
                root == R_PARAMS ? "params" : root == R_HEADERS ? "headers" : "query");
        return 0;
    }
    if (root == R_METHOD || root == R_PATH || root == R_ROUTE)
        nd->type = T_STR;
    else if (root == R_PARAMS || root == R_HEADERS || root == R_QUERY)
        nd->type = nd->n ? T_STR : T_MAP;
    else
        nd->type = T_DYN;
    return n;
}

static uint32_t parse_primary(parser *p)
{
    if (p->failed)
        return 0;
    size_t start = p->lx.tstart;
    char b[64];
    switch (p->lx.t) {
    case K_INT: {
        if (p->lx.ival == INT64_MIN) {
            fail_at(p, start, "integer literal is out of range (64-bit)");
            return 0;
        }
        uint32_t n = new_node(p, N_LIT_INT, start);
        if (p->failed)
            return 0;
        N(p, n)->i = p->lx.ival;
        N(p, n)->type = T_INT;
        lex(p);
        N(p, n)->end = (uint32_t)p->lx.prev_end;
        return n;
    }
    case K_MINUS: {
        lex(p);
        if (p->lx.t != K_INT) {
            fail_at(p, start, "'-' is only allowed before a number");
            return 0;
        }
        uint32_t n = new_node(p, N_LIT_INT, start);
        if (p->failed)
            return 0;
        N(p, n)->i = p->lx.ival == INT64_MIN ? INT64_MIN : -p->lx.ival;
        N(p, n)->type = T_INT;
        lex(p);
        N(p, n)->end = (uint32_t)p->lx.prev_end;
        return n;
    }
    case K_STR: {
        uint32_t len = 0;
        uint32_t off = str_literal(p, &len);
        uint32_t n = new_node(p, N_LIT_STR, start);
        if (p->failed)
            return 0;
        N(p, n)->a = off;
        N(p, n)->b = len;
        N(p, n)->type = T_STR;
        lex(p);
        N(p, n)->end = (uint32_t)p->lx.prev_end;
        return n;
    }
    case K_LP: {
        if (enter(p, start) < 0)
            return 0;
        lex(p);
        uint32_t n = parse_or(p);
        if (p->failed)
            return 0;
        if (p->lx.t != K_RP) {
            fail_at(p, p->lx.tstart, "expected ')' to close a '(', found %s", tok_desc(p, b, sizeof(b)));
            return 0;
        }
        lex(p);
        p->depth--;
        /* explain quotes what was written, parentheses included (errors and `missing`
         * keep the inner span) */
        N(p, n)->qstart = (uint32_t)start;
        N(p, n)->qend = (uint32_t)p->lx.prev_end;
        return n;
    }
    case K_LB: {
        if (enter(p, start) < 0)
            return 0;
        lex(p);
        uint32_t items[256];
        size_t ni = 0;
        if (p->lx.t != K_RB) {
            for (;;) {
                uint32_t it = parse_or(p);
                if (p->failed)
                    return 0;
                if (ni == 256) {
                    fail_at(p, N(p, it)->start, "a list literal has at most 256 items");
                    return 0;
                }
                items[ni++] = it;
                if (p->lx.t == K_COMMA) {
                    lex(p);
                    continue;
                }
                if (p->lx.t != K_RB) {
                    fail_at(p, p->lx.tstart, "expected ',' or ']' in a list, found %s",
                            tok_desc(p, b, sizeof(b)));
                    return 0;
                }
                break;
            }
        }
        lex(p);
        p->depth--;
        uint32_t n = new_node(p, N_LIST, start);
        if (p->failed)
            return 0;
        uint32_t first = add_kids(p, items, ni);
        N(p, n)->first = first;
        N(p, n)->n = (uint32_t)ni;
        N(p, n)->type = T_LIST;
        N(p, n)->end = (uint32_t)p->lx.prev_end;
        return n;
    }
    case K_IDENT: {
        const char *s = p->lx.s + start;
        size_t len = p->lx.tend - start;
        if (tok_is(p, "true") || tok_is(p, "false") || tok_is(p, "null")) {
            uint32_t n = new_node(p, s[0] == 'n' ? N_LIT_NULL : N_LIT_BOOL, start);
            if (p->failed)
                return 0;
            N(p, n)->i = s[0] == 't';
            N(p, n)->type = s[0] == 'n' ? T_NULL : T_BOOL;
            lex(p);
            N(p, n)->end = (uint32_t)p->lx.prev_end;
            return n;
        }
        if (tok_is(p, "in")) {
            fail_at(p, start, "expected a value, found 'in'");
            return 0;
        }
        /* a function call? */
        size_t k = p->lx.tend;
        while (k < p->lx.len && (p->lx.s[k] == ' ' || p->lx.s[k] == '\t' || p->lx.s[k] == '\n' ||
                                 p->lx.s[k] == '\r'))
            k++;
        if (k < p->lx.len && p->lx.s[k] == '(') {
            lex(p);
            if (enter(p, start) < 0)
                return 0;
            lex(p); /* the '(' */
            uint32_t args[4];
            size_t nargs = 0;
            if (parse_args(p, args, &nargs, 4) < 0)
                return 0;
            p->depth--;
            return make_call(p, s, len, start, start, args, nargs, 0);
        }
        return parse_path(p, start, len);
    }
    case K_EOF:
        fail_at(p, start, "expected a value, found the end of the expression");
        return 0;
    default:
        fail_at(p, start, "expected a value, found %s", tok_desc(p, b, sizeof(b)));
        return 0;
    }
}

/* primary, then method calls: x.startsWith('a').lower() ... */
static uint32_t parse_member(parser *p)
{
    size_t start = p->lx.tstart;
    uint32_t n = parse_primary(p);
    int calls = 0;
    while (!p->failed && p->lx.t == K_DOT) {
        lex(p);
        if (p->lx.t != K_IDENT) {
            char b[64];
            fail_at(p, p->lx.tstart, "expected a method name after '.', found %s",
                    tok_desc(p, b, sizeof(b)));
            return 0;
        }
        const char *name = p->lx.s + p->lx.tstart;
        size_t namelen = p->lx.tend - p->lx.tstart, name_off = p->lx.tstart;
        lex(p);
        if (p->lx.t != K_LP) {
            fail_at(p, name_off, "only a field can have fields: '.%.*s' follows a value that is not one",
                    (int)(namelen > 40 ? 40 : namelen), name);
            return 0;
        }
        if (enter(p, name_off) < 0)
            return 0;
        calls++;
        lex(p);
        uint32_t args[4] = {n};
        size_t nargs = 1;
        if (parse_args(p, args, &nargs, 4) < 0)
            return 0;
        n = make_call(p, name, namelen, start, name_off, args, nargs, 1);
    }
    p->depth -= calls;
    return n;
}

static uint32_t parse_unary(parser *p)
{
    if (p->lx.t == K_NOT) {
        size_t start = p->lx.tstart;
        if (enter(p, start) < 0)
            return 0;
        lex(p);
        uint32_t a = parse_unary(p);
        p->depth--;
        uint32_t n = new_node(p, N_NOT, start);
        if (p->failed)
            return 0;
        N(p, n)->a = a;
        N(p, n)->type = T_BOOL;
        N(p, n)->end = (uint32_t)p->lx.prev_end; /* a parenthesized operand's ')' included */
        return n;
    }
    return parse_member(p);
}

static int rel_kind(enum tok t, const parser *p)
{
    switch (t) {
    case K_EQ: return N_EQ;
    case K_NE: return N_NE;
    case K_LT: return N_LT;
    case K_LE: return N_LE;
    case K_GT: return N_GT;
    case K_GE: return N_GE;
    default: return tok_is(p, "in") ? N_IN : 0;
    }
}

static uint32_t parse_rel(parser *p)
{
    uint32_t a = parse_unary(p);
    if (p->failed)
        return 0;
    int k = rel_kind(p->lx.t, p);
    if (!k)
        return a;
    size_t opoff = p->lx.tstart;
    lex(p);
    uint32_t b = parse_unary(p);
    if (p->failed)
        return 0;
    if (rel_kind(p->lx.t, p)) {
        fail_at(p, p->lx.tstart, "comparisons do not chain (a < b < c): write a < b && b < c");
        return 0;
    }
    uint32_t n = new_node(p, k, outer_start(N(p, a)));
    if (p->failed)
        return 0;
    N(p, n)->a = a;
    N(p, n)->b = b;
    N(p, n)->type = T_BOOL;
    N(p, n)->end = (uint32_t)p->lx.prev_end;
    N(p, n)->i = (int64_t)opoff;
    return n;
}

/* a && b && c (or ||): one n-ary node. */
static uint32_t parse_chain(parser *p, enum tok op, int kind, uint32_t (*sub)(parser *))
{
    uint32_t first = sub(p);
    if (p->failed || p->lx.t != op)
        return first;
    uint32_t items[64];
    uint32_t *v = items;
    size_t n = 0, cap = 64;
    v[n++] = first;
    while (!p->failed && p->lx.t == op) {
        lex(p);
        uint32_t x = sub(p);
        if (p->failed)
            break;
        if (n == cap) {
            uint32_t *nv = malloc(cap * 2 * sizeof(*nv));
            if (!nv) {
                fail_at(p, 0, "out of memory");
                break;
            }
            memcpy(nv, v, n * sizeof(*nv));
            if (v != items)
                free(v);
            v = nv;
            cap *= 2;
        }
        v[n++] = x;
    }
    uint32_t r = 0;
    if (!p->failed) {
        r = new_node(p, kind, outer_start(N(p, first)));
        if (!p->failed) {
            uint32_t f = add_kids(p, v, n);
            N(p, r)->first = f;
            N(p, r)->n = (uint32_t)n;
            N(p, r)->type = T_BOOL;
            N(p, r)->end = (uint32_t)p->lx.prev_end;
        }
    }
    if (v != items)
        free(v);
    return r;
}

static uint32_t parse_and(parser *p) { return parse_chain(p, K_AND, N_AND, parse_rel); }
static uint32_t parse_or(parser *p) { return parse_chain(p, K_OR, N_OR, parse_and); }

/* ---- load-time checks ------------------------------------------------------------------------ */

static int known(int t) { return t != T_DYN; }

static void check_node(parser *p, uint32_t i)
{
    if (p->failed)
        return;
    node *n = N(p, i);
    const uint32_t *k = p->e->kids;
    switch (n->kind) {
    case N_AND:
    case N_OR:
        for (uint32_t j = 0; j < n->n; j++) {
            node *c = N(p, k[n->first + j]);
            check_node(p, k[n->first + j]);
            if (known(c->type) && c->type != T_BOOL) {
                fail_at(p, c->start, "'%s' needs booleans on both sides, but this is %s",
                        n->kind == N_AND ? "&&" : "||", stype_name[c->type]);
                return;
            }
        }
        break;
    case N_NOT: {
        node *c = N(p, n->a);
        check_node(p, n->a);
        if (known(c->type) && c->type != T_BOOL)
            fail_at(p, c->start, "'!' needs a boolean, but this is %s", stype_name[c->type]);
        break;
    }
    case N_EQ: case N_NE: case N_LT: case N_LE: case N_GT: case N_GE: {
        check_node(p, n->a);
        check_node(p, n->b);
        int ta = N(p, n->a)->type, tb = N(p, n->b)->type;
        if (p->failed)
            return;
        if (n->kind == N_EQ || n->kind == N_NE) {
            if (known(ta) && known(tb) && ta != tb && ta != T_NULL && tb != T_NULL)
                fail_at(p, (size_t)n->i, "%s and %s never compare: this comparison is always false",
                        stype_name[ta], stype_name[tb]);
        } else {
            int bad_a = known(ta) && ta != T_INT && ta != T_STR;
            int bad_b = known(tb) && tb != T_INT && tb != T_STR;
            if (bad_a || bad_b)
                fail_at(p, (size_t)n->i, "'<', '<=', '>' and '>=' compare numbers or strings, not %s",
                        stype_name[bad_a ? ta : tb]);
            else if (known(ta) && known(tb) && ta != tb)
                fail_at(p, (size_t)n->i, "%s cannot be ordered against %s", stype_name[ta],
                        stype_name[tb]);
        }
        break;
    }
    case N_IN: {
        check_node(p, n->a);
        check_node(p, n->b);
        int tb = N(p, n->b)->type;
        if (!p->failed && known(tb) && tb != T_LIST && tb != T_MAP && tb != T_STR)
            fail_at(p, N(p, n->b)->start, "'in' needs a list, a map or a space-separated string on "
                    "its right, not %s", stype_name[tb]);
        break;
    }
    case N_LIST:
        for (uint32_t j = 0; j < n->n; j++)
            check_node(p, k[n->first + j]);
        break;
    case N_PATH:
        for (uint32_t j = 0; j < n->n; j++) {
            const seg *s = &p->e->segs[n->first + j];
            if (s->kind == SEG_EXPR) {
                check_node(p, s->a);
                int t = N(p, s->a)->type;
                if (!p->failed && known(t) && t != T_STR && t != T_INT)
                    fail_at(p, N(p, s->a)->start, "an index must be a string or an int, not %s",
                            stype_name[t]);
            }
        }
        break;
    case N_HAS:
        check_node(p, k[n->first]);
        n->type = T_BOOL;
        break;
    case N_SIZE: {
        uint32_t a = k[n->first];
        check_node(p, a);
        int t = N(p, a)->type;
        if (!p->failed && known(t) && t != T_STR && t != T_LIST && t != T_MAP)
            fail_at(p, N(p, a)->start, "size() takes a string, a list or a map, not %s", stype_name[t]);
        n->type = T_INT;
        break;
    }
    case N_STARTS: case N_ENDS: case N_LOWER:
        for (uint32_t j = 0; j < n->n; j++) {
            uint32_t a = k[n->first + j];
            check_node(p, a);
            int t = N(p, a)->type;
            if (!p->failed && known(t) && t != T_STR)
                fail_at(p, N(p, a)->start, "%s takes strings, not %s",
                        n->kind == N_STARTS ? "startsWith" : n->kind == N_ENDS ? "endsWith" : "lower",
                        stype_name[t]);
        }
        n->type = n->kind == N_LOWER ? T_STR : T_BOOL;
        break;
    default:
        break;
    }
}

/* ---- compile ----------------------------------------------------------------------------------- */

void fx_expr_free(fx_expr *e)
{
    if (!e)
        return;
    free(e->nodes);
    free(e->kids);
    free(e->segs);
    free(e->strs);
    free(e->src);
    free(e->reads);
    free(e);
}

fx_expr *fx_expr_compile(const char *src, size_t len, fx_expr_error *err)
{
    memset(err, 0, sizeof(*err));
    if (len > FX_POLICY_MAX_EXPR_BYTES) {
        err->offset = FX_POLICY_MAX_EXPR_BYTES;
        snprintf(err->msg, sizeof(err->msg), "expression is longer than %d bytes",
                 FX_POLICY_MAX_EXPR_BYTES);
        return NULL;
    }
    size_t bad = utf8_check((const unsigned char *)src, len);
    if (bad < len) {
        err->offset = bad;
        snprintf(err->msg, sizeof(err->msg), "expression is not valid UTF-8");
        return NULL;
    }
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\0') {
            err->offset = i;
            snprintf(err->msg, sizeof(err->msg), "expression contains a NUL byte");
            return NULL;
        }
    fx_expr *e = calloc(1, sizeof(*e));
    if (!e || !(e->src = malloc(len + 1))) {
        free(e);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return NULL;
    }
    memcpy(e->src, src, len);
    e->src[len] = '\0';
    e->srclen = len;
    parser p = {.lx = {.s = e->src, .len = len}, .e = e, .err = err};
    lex(&p);
    if (!p.failed && p.lx.t == K_EOF)
        fail_at(&p, 0, "empty expression: write 'true' to match every request");
    uint32_t top = p.failed ? 0 : parse_or(&p);
    if (!p.failed && p.lx.t != K_EOF) {
        char b[64];
        if (tok_is(&p, "and") || tok_is(&p, "or"))
            fail_at(&p, p.lx.tstart, "'%s' is not an operator: use %s", tok_is(&p, "and") ? "and" : "or",
                    tok_is(&p, "and") ? "'&&'" : "'||'");
        else
            fail_at(&p, p.lx.tstart, "expected an operator or the end of the expression, found %s",
                    tok_desc(&p, b, sizeof(b)));
    }
    if (!p.failed)
        check_node(&p, top);
    if (!p.failed) {
        int t = e->nodes[top].type;
        if (known(t) && t != T_BOOL)
            fail_at(&p, e->nodes[top].start, "a `when` must be a boolean, but this is %s", stype_name[t]);
    }
    if (p.failed) {
        fx_expr_free(e);
        return NULL;
    }
    e->top = top;
    return e;
}

unsigned fx_expr_needs(const fx_expr *e) { return e->needs; }

unsigned fx_expr_reads(const fx_expr *e, void (*fn)(void *arg, int kind, const char *name, size_t len),
                       void *arg)
{
    for (size_t i = 0; i < e->nreads; i++)
        fn(arg, e->reads[i].kind, e->strs + e->reads[i].off, e->reads[i].len);
    return e->reads_any;
}

/* ---- values ------------------------------------------------------------------------------------- */

enum vtype { V_MISSING = 0, V_NULL, V_BOOL, V_INT, V_REAL, V_STR, V_LIST, V_MAP };
enum vsrc { S_JSON = 1, S_LIT, S_KV };

typedef struct val {
    uint8_t t;
    uint8_t src;  /* V_LIST / V_MAP: where the items are */
    uint8_t fold; /* V_STR: compare as ASCII lower case */
    uint8_t ci;   /* S_KV maps: names compare case-insensitively (headers) */
    union {
        int b;
        int64_t i;
        double d;
        struct { const char *p; size_t n; } s;
        const json_t *j;                            /* S_JSON */
        struct { uint32_t first, n; } lit;          /* S_LIT: node kids */
        struct { const fx_authz_kv *kv; size_t n; } kv; /* S_KV */
    } u;
} val;

typedef struct ectx {
    const fx_expr *e;
    const fx_authz_request *r;
    fx_authz_str *missing; /* explain: the first missing field, else NULL */
} ectx;

static void ev(const ectx *x, uint32_t i, val *out);

static void from_json(const json_t *j, val *v)
{
    memset(v, 0, sizeof(*v));
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT: v->t = V_MAP, v->src = S_JSON, v->u.j = j; break;
    case JSON_ARRAY: v->t = V_LIST, v->src = S_JSON, v->u.j = j; break;
    case JSON_STRING:
        v->t = V_STR, v->u.s.p = json_string_value(j), v->u.s.n = json_string_length(j);
        break;
    case JSON_INTEGER: v->t = V_INT, v->u.i = (int64_t)json_integer_value(j); break;
    case JSON_REAL: v->t = V_REAL, v->u.d = json_real_value(j); break;
    case JSON_TRUE: v->t = V_BOOL, v->u.b = 1; break;
    case JSON_FALSE: v->t = V_BOOL, v->u.b = 0; break;
    default: v->t = V_NULL; break;
    }
}

static void from_str(const char *p, size_t n, val *v)
{
    memset(v, 0, sizeof(*v));
    v->t = V_STR;
    v->u.s.p = p ? p : ""; /* an empty field of a zeroed request */
    v->u.s.n = p ? n : 0;
}

static void from_kv(const fx_authz_kv *kv, size_t n, int ci, val *v)
{
    memset(v, 0, sizeof(*v));
    v->t = V_MAP;
    v->src = S_KV;
    v->ci = (uint8_t)ci;
    v->u.kv.kv = kv;
    v->u.kv.n = n;
}

static int kv_name_eq(const fx_authz_str *name, const char *k, size_t n, int ci)
{
    if (name->len != n)
        return 0;
    return ci ? strncasecmp(name->p, k, n) == 0 : memcmp(name->p, k, n) == 0;
}

/* map[key] → out (V_MISSING when absent). */
static void map_get(const val *m, const char *k, size_t n, val *out)
{
    memset(out, 0, sizeof(*out));
    if (m->src == S_JSON) {
        const json_t *j = json_object_getn(m->u.j, k, n);
        if (j)
            from_json(j, out);
    } else if (m->src == S_KV) {
        for (size_t i = 0; i < m->u.kv.n; i++)
            if (kv_name_eq(&m->u.kv.kv[i].name, k, n, m->ci)) {
                from_str(m->u.kv.kv[i].value.p, m->u.kv.kv[i].value.len, out);
                return;
            }
    }
}

static size_t list_len(const val *l)
{
    return l->src == S_JSON ? json_array_size(l->u.j) : l->u.lit.n;
}

static void list_get(const ectx *x, const val *l, size_t i, val *out)
{
    if (l->src == S_JSON)
        from_json(json_array_get(l->u.j, i), out);
    else
        ev(x, x->e->kids[l->u.lit.first + i], out);
}

static void note_missing(const ectx *x, const node *n)
{
    if (x->missing && x->missing->len == 0) {
        x->missing->p = x->e->src + n->start;
        x->missing->len = n->end - n->start;
    }
}

static void eval_path(const ectx *x, const node *n, val *out)
{
    const fx_authz_request *r = x->r;
    memset(out, 0, sizeof(*out));
    val cur;
    switch (n->root) {
    case R_TOKEN:
        if (!r->token) {
            note_missing(x, n);
            return;
        }
        from_json(DOC_JSON(r->token), &cur);
        break;
    case R_CONTEXT:
        if (!r->context) {
            /* an empty object */
            static const fx_authz_kv none[1];
            from_kv(none, 0, 0, &cur);
        } else {
            from_json(DOC_JSON(r->context), &cur);
        }
        break;
    case R_METHOD: from_str(r->method.p, r->method.len, out); return;
    case R_PATH: from_str(r->path.p, r->path.len, out); return;
    case R_ROUTE: from_str(r->route.p, r->route.len, out); return;
    case R_PARAMS: from_kv(r->params, r->nparams, 0, &cur); break;
    case R_HEADERS: from_kv(r->headers, r->nheaders, 1, &cur); break;
    case R_QUERY: from_kv(r->query, r->nquery, 0, &cur); break;
    default: return;
    }
    for (uint32_t k = 0; k < n->n; k++) {
        const seg *s = &x->e->segs[n->first + k];
        val key;
        if (s->kind == SEG_EXPR) {
            ev(x, s->a, &key);
        } else if (s->kind == SEG_KEY) {
            from_str(x->e->strs + s->a, s->len, &key);
        } else {
            memset(&key, 0, sizeof(key));
            key.t = V_INT;
            key.u.i = s->a;
        }
        val next;
        memset(&next, 0, sizeof(next));
        if (cur.t == V_MAP && key.t == V_STR && !key.fold) {
            map_get(&cur, key.u.s.p, key.u.s.n, &next);
        } else if (cur.t == V_LIST && key.t == V_INT && key.u.i >= 0 &&
                   (size_t)key.u.i < list_len(&cur)) {
            list_get(x, &cur, (size_t)key.u.i, &next);
        } else if (cur.t == V_MAP && key.t == V_STR) {
            /* a lower()'d key: only for header maps, which ignore case anyway */
            if (cur.src == S_KV && cur.ci)
                map_get(&cur, key.u.s.p, key.u.s.n, &next);
        }
        if (next.t == V_MISSING) {
            note_missing(x, n);
            return;
        }
        cur = next;
    }
    *out = cur;
}

static int fold_c(int c, int fold) { return fold && c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int str_cmp(const val *a, const val *b)
{
    size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
    if (!a->fold && !b->fold) {
        int c = memcmp(a->u.s.p, b->u.s.p, n);
        if (c)
            return c;
    } else {
        for (size_t i = 0; i < n; i++) {
            int ca = fold_c((unsigned char)a->u.s.p[i], a->fold);
            int cb = fold_c((unsigned char)b->u.s.p[i], b->fold);
            if (ca != cb)
                return ca - cb;
        }
    }
    return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
}

static int seg_eq(const char *a, int fa, const char *b, int fb, size_t n)
{
    if (!fa && !fb)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++)
        if (fold_c((unsigned char)a[i], fa) != fold_c((unsigned char)b[i], fb))
            return 0;
    return 1;
}

/* 1 equal, 0 not equal, -1 not comparable (missing, or types that cannot meet). */
static int val_eq(const ectx *x, const val *a, const val *b, int depth)
{
    if (a->t == V_MISSING || b->t == V_MISSING)
        return -1;
    if (a->t == V_NULL || b->t == V_NULL)
        return a->t == b->t;
    if ((a->t == V_INT || a->t == V_REAL) && (b->t == V_INT || b->t == V_REAL)) {
        if (a->t == V_INT && b->t == V_INT)
            return a->u.i == b->u.i;
        double da = a->t == V_INT ? (double)a->u.i : a->u.d;
        double db = b->t == V_INT ? (double)b->u.i : b->u.d;
        return da == db;
    }
    if (a->t != b->t)
        return -1;
    switch (a->t) {
    case V_BOOL: return a->u.b == b->u.b;
    case V_STR: return a->u.s.n == b->u.s.n && str_cmp(a, b) == 0;
    case V_LIST: {
        if (depth > 8)
            return -1;
        size_t n = list_len(a), nb = list_len(b);
        /* a missing element makes the comparison false both ways, whatever the lengths */
        for (size_t i = 0; i < n + nb; i++) {
            val ev_;
            list_get(x, i < n ? a : b, i < n ? i : i - n, &ev_);
            if (ev_.t == V_MISSING)
                return -1;
        }
        if (n != nb)
            return 0;
        for (size_t i = 0; i < n; i++) {
            val ea, eb;
            list_get(x, a, i, &ea);
            list_get(x, b, i, &eb);
            int r = val_eq(x, &ea, &eb, depth + 1);
            if (r != 1)
                return r; /* an element not comparable (missing) makes the lists so */
        }
        return 1;
    }
    case V_MAP:
        if (a->src == S_JSON && b->src == S_JSON)
            return json_equal((json_t *)a->u.j, (json_t *)b->u.j);
        return -1;
    default:
        return -1;
    }
}

/* <0, 0, >0, or 2 for not comparable */
static int val_order(const val *a, const val *b)
{
    if ((a->t == V_INT || a->t == V_REAL) && (b->t == V_INT || b->t == V_REAL)) {
        if (a->t == V_INT && b->t == V_INT)
            return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        double da = a->t == V_INT ? (double)a->u.i : a->u.d;
        double db = b->t == V_INT ? (double)b->u.i : b->u.d;
        if (da != da || db != db)
            return 2;
        return da < db ? -1 : da > db;
    }
    if (a->t == V_STR && b->t == V_STR) {
        int c = str_cmp(a, b);
        return c < 0 ? -1 : c > 0;
    }
    return 2;
}

/* needle in a space-separated word list (an OAuth "scope" string) */
static int word_in(const val *needle, const val *hay)
{
    const char *p = hay->u.s.p, *end = p + hay->u.s.n;
    size_t n = needle->u.s.n;
    if (n == 0)
        return 0;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *w = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - w) == n && seg_eq(w, hay->fold, needle->u.s.p, needle->fold, n))
            return 1;
    }
    return 0;
}

static int eval_in(const ectx *x, const val *a, const val *b)
{
    if (a->t == V_MISSING)
        return 0;
    if (b->t == V_LIST) {
        size_t n = list_len(b);
        for (size_t i = 0; i < n; i++) {
            val item;
            list_get(x, b, i, &item);
            if (val_eq(x, a, &item, 0) == 1)
                return 1;
        }
        return 0;
    }
    if (b->t == V_MAP && a->t == V_STR) {
        val got;
        if (a->fold && !(b->src == S_KV && b->ci))
            return 0;
        map_get(b, a->u.s.p, a->u.s.n, &got);
        return got.t != V_MISSING;
    }
    if (b->t == V_STR && a->t == V_STR)
        return word_in(a, b);
    return 0;
}

static int64_t utf8_len(const char *s, size_t n)
{
    int64_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static int truthy(const val *v) { return v->t == V_BOOL && v->u.b; }

static void set_bool(val *out, int b)
{
    memset(out, 0, sizeof(*out));
    out->t = V_BOOL;
    out->u.b = b;
}

static void ev(const ectx *x, uint32_t i, val *out)
{
    const fx_expr *e = x->e;
    const node *n = &e->nodes[i];
    const uint32_t *k = e->kids;
    val a, b;
    switch (n->kind) {
    case N_LIT_NULL:
        memset(out, 0, sizeof(*out));
        out->t = V_NULL;
        return;
    case N_LIT_BOOL: set_bool(out, (int)n->i); return;
    case N_LIT_INT:
        memset(out, 0, sizeof(*out));
        out->t = V_INT;
        out->u.i = n->i;
        return;
    case N_LIT_STR: from_str(e->strs + n->a, n->b, out); return;
    case N_LIST:
        memset(out, 0, sizeof(*out));
        out->t = V_LIST;
        out->src = S_LIT;
        out->u.lit.first = n->first;
        out->u.lit.n = n->n;
        return;
    case N_PATH: eval_path(x, n, out); return;
    case N_AND:
        for (uint32_t j = 0; j < n->n; j++) {
            ev(x, k[n->first + j], &a);
            if (!truthy(&a)) {
                set_bool(out, 0);
                return;
            }
        }
        set_bool(out, 1);
        return;
    case N_OR:
        for (uint32_t j = 0; j < n->n; j++) {
            ev(x, k[n->first + j], &a);
            if (truthy(&a)) {
                set_bool(out, 1);
                return;
            }
        }
        set_bool(out, 0);
        return;
    case N_NOT:
        ev(x, n->a, &a);
        set_bool(out, !truthy(&a));
        return;
    case N_EQ:
    case N_NE: {
        ev(x, n->a, &a);
        ev(x, n->b, &b);
        int r = val_eq(x, &a, &b, 0);
        if (r < 0)
            set_bool(out, 0);
        else
            set_bool(out, n->kind == N_EQ ? r : !r);
        return;
    }
    case N_LT: case N_LE: case N_GT: case N_GE: {
        ev(x, n->a, &a);
        ev(x, n->b, &b);
        int c = val_order(&a, &b);
        if (c == 2)
            set_bool(out, 0);
        else
            set_bool(out, n->kind == N_LT ? c < 0 : n->kind == N_LE ? c <= 0 : n->kind == N_GT ? c > 0 : c >= 0);
        return;
    }
    case N_IN:
        ev(x, n->a, &a);
        ev(x, n->b, &b);
        set_bool(out, eval_in(x, &a, &b));
        return;
    case N_HAS:
        ev(x, k[n->first], &a);
        set_bool(out, a.t != V_MISSING);
        return;
    case N_SIZE:
        ev(x, k[n->first], &a);
        memset(out, 0, sizeof(*out));
        if (a.t == V_STR)
            out->t = V_INT, out->u.i = utf8_len(a.u.s.p, a.u.s.n);
        else if (a.t == V_LIST)
            out->t = V_INT, out->u.i = (int64_t)list_len(&a);
        else if (a.t == V_MAP)
            out->t = V_INT, out->u.i = a.src == S_JSON ? (int64_t)json_object_size(a.u.j) : (int64_t)a.u.kv.n;
        return; /* else missing: a type mismatch */
    case N_STARTS:
    case N_ENDS:
        ev(x, k[n->first], &a);
        ev(x, k[n->first + 1], &b);
        if (a.t != V_STR || b.t != V_STR || b.u.s.n > a.u.s.n) {
            set_bool(out, 0);
            return;
        }
        set_bool(out, seg_eq(a.u.s.p + (n->kind == N_ENDS ? a.u.s.n - b.u.s.n : 0), a.fold, b.u.s.p,
                             b.fold, b.u.s.n));
        return;
    case N_LOWER:
        ev(x, k[n->first], out);
        if (out->t == V_STR)
            out->fold = 1;
        else
            memset(out, 0, sizeof(*out));
        return;
    default:
        memset(out, 0, sizeof(*out));
        return;
    }
}

int fx_expr_eval(const fx_expr *e, const fx_authz_request *req)
{
    ectx x = {e, req, NULL};
    val v;
    ev(&x, e->top, &v);
    return truthy(&v);
}

static void quote(const fx_expr *e, const node *n, fx_authz_str *out)
{
    uint32_t a = n->qend ? n->qstart : n->start, b = n->qend ? n->qend : n->end;
    out->p = e->src + a;
    out->len = b - a;
}

int fx_expr_explain(const fx_expr *e, const fx_authz_request *req, fx_authz_str *why,
                    fx_authz_str *missing)
{
    missing->p = "";
    missing->len = 0;
    ectx x = {e, req, missing};
    val v;
    const node *top = &e->nodes[e->top];
    quote(e, top, why);
    if (top->kind == N_AND) {
        for (uint32_t j = 0; j < top->n; j++) {
            const node *c = &e->nodes[e->kids[top->first + j]];
            ev(&x, e->kids[top->first + j], &v);
            if (!truthy(&v)) {
                quote(e, c, why);
                return 0;
            }
        }
        return 1;
    }
    ev(&x, e->top, &v);
    return truthy(&v);
}

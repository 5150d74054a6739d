/*
 * shadow_compare.c — the primary's answer against the shadow's (see shadow_compare.h).
 *
 *   parse_path / path_matches   `shadow.ignore` JSON paths, matched against the path of
 *                               the value being compared ($, .name, .*, [N], [*])
 *   same_json                   the semantic comparison (recursive, depth ≤ 64: bodies are
 *                               checked with fx_ce_json_valid before jansson parses them)
 *   headers_differ              headers by name, values in order, noise left out
 *   fx_shadow_compare           status, headers, body; the first difference of each kind
 *                               goes into the summary
 */
#include "shadow_compare.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cloudevent.h"

#define MAX_DEPTH 64
#define MAX_STEPS 32
#define SHOW 60 /* characters of a value shown in a summary */

enum step_kind { STEP_KEY, STEP_ANY_KEY, STEP_INDEX, STEP_ANY_INDEX };

typedef struct step {
    int kind;
    const char *key;  /* STEP_KEY: into the path text or the JSON object (not NUL-terminated) */
    size_t klen;
    size_t index;
} step;

typedef struct jpath {
    step steps[MAX_STEPS];
    size_t n;
} jpath;

/* "$.a[3].*" → steps; 0, or -1 for a path this code cannot use (config.c refuses those). */
static int parse_path(const char *s, jpath *out)
{
    out->n = 0;
    if (s[0] != '$')
        return -1;
    for (const char *p = s + 1; *p;) {
        if (out->n == MAX_STEPS)
            return -1;
        step *st = &out->steps[out->n++];
        if (*p == '.') {
            p++;
            if (*p == '*') {
                st->kind = STEP_ANY_KEY;
                p++;
            } else {
                st->kind = STEP_KEY;
                st->key = p;
                while (*p && *p != '.' && *p != '[')
                    p++;
                st->klen = (size_t)(p - st->key);
                if (!st->klen)
                    return -1;
            }
        } else if (*p == '[') {
            p++;
            if (*p == '*') {
                st->kind = STEP_ANY_INDEX;
                p++;
            } else {
                st->kind = STEP_INDEX;
                st->index = 0;
                if (*p < '0' || *p > '9')
                    return -1;
                while (*p >= '0' && *p <= '9')
                    st->index = st->index * 10 + (size_t)(*p++ - '0');
            }
            if (*p++ != ']')
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

typedef struct cmp {
    const jpath *ignore;
    size_t nignore;
    step at[MAX_DEPTH + 1]; /* the path of the value being compared */
    size_t depth;
    char *out;              /* where the first difference is described */
    size_t outlen;
} cmp;

static int step_matches(const step *pattern, const step *s)
{
    switch (pattern->kind) {
    case STEP_KEY:
        return s->kind == STEP_KEY && s->klen == pattern->klen && !memcmp(s->key, pattern->key, s->klen);
    case STEP_ANY_KEY:
        return s->kind == STEP_KEY;
    case STEP_INDEX:
        return s->kind == STEP_INDEX && s->index == pattern->index;
    default:
        return s->kind == STEP_INDEX;
    }
}

/* Is the value at the current path left out? */
static int ignored(const cmp *c)
{
    for (size_t i = 0; i < c->nignore; i++) {
        const jpath *p = &c->ignore[i];
        if (p->n != c->depth)
            continue;
        size_t k = 0;
        while (k < p->n && step_matches(&p->steps[k], &c->at[k]))
            k++;
        if (k == p->n)
            return 1;
    }
    return 0;
}

static size_t render_path(const cmp *c, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "$");
    for (size_t i = 0; i < c->depth && n < cap; i++) {
        const step *s = &c->at[i];
        if (s->kind == STEP_KEY)
            n += (size_t)snprintf(buf + n, cap - n, ".%.*s", (int)(s->klen > 40 ? 40 : s->klen), s->key);
        else
            n += (size_t)snprintf(buf + n, cap - n, "[%zu]", s->index);
    }
    return n < cap ? n : cap - 1;
}

static void render_value(const json_t *v, char *buf, size_t cap)
{
    if (!v) {
        snprintf(buf, cap, "(missing)");
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        snprintf(buf, cap, "?");
        return;
    }
    size_t len = strlen(s);
    if (len > SHOW)
        snprintf(buf, cap, "%.*s…", SHOW, s);
    else
        snprintf(buf, cap, "%s", s);
    free(s);
}

/* Records the first difference: PATH: A != B. Returns 1 (different). */
static int differ(cmp *c, const json_t *a, const json_t *b)
{
    if (c->out && c->out[0] == '\0') {
        char path[200], va[SHOW + 8], vb[SHOW + 8];
        render_path(c, path, sizeof(path));
        render_value(a, va, sizeof(va));
        render_value(b, vb, sizeof(vb));
        snprintf(c->out, c->outlen, "body %s: %s != %s", path, va, vb);
    }
    return 1;
}

static int same_json(cmp *c, const json_t *a, const json_t *b)
{
    if (ignored(c))
        return 1;
    if (!a || !b)
        return a == b ? 1 : !differ(c, a, b);
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b) ? 1 : !differ(c, a, b);
        return json_number_value(a) == json_number_value(b) ? 1 : !differ(c, a, b);
    }
    if (json_typeof(a) != json_typeof(b))
        return !differ(c, a, b);
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
                       !memcmp(json_string_value(a), json_string_value(b), json_string_length(a))
                   ? 1
                   : !differ(c, a, b);
    case JSON_ARRAY: {
        size_t na = json_array_size(a), nb = json_array_size(b), n = na > nb ? na : nb;
        if (c->depth == MAX_DEPTH)
            return !differ(c, a, b); /* cannot happen: bodies are checked for nesting first */
        for (size_t i = 0; i < n; i++) {
            c->at[c->depth++] = (step){.kind = STEP_INDEX, .index = i};
            int eq = same_json(c, json_array_get(a, i), json_array_get(b, i));
            c->depth--;
            if (!eq)
                return 0;
        }
        return 1;
    }
    case JSON_OBJECT: {
        if (c->depth == MAX_DEPTH)
            return !differ(c, a, b);
        const char *key;
        size_t klen;
        json_t *va;
        /* every key of a, then the keys only b has */
        json_object_keylen_foreach((json_t *)a, key, klen, va)
        {
            c->at[c->depth++] = (step){.kind = STEP_KEY, .key = key, .klen = klen};
            int eq = same_json(c, va, json_object_getn(b, key, klen));
            c->depth--;
            if (!eq)
                return 0;
        }
        json_object_keylen_foreach((json_t *)b, key, klen, va)
        {
            if (json_object_getn(a, key, klen))
                continue;
            c->at[c->depth++] = (step){.kind = STEP_KEY, .key = key, .klen = klen};
            int eq = same_json(c, NULL, va);
            c->depth--;
            if (!eq)
                return 0;
        }
        return 1;
    }
    default: /* true, false, null: same type is the same value */
        return 1;
    }
}

/* ---- headers ---------------------------------------------------------------------------------- */

static int noise_header(fx_slice name, char *const *ignore, size_t nignore)
{
    static const char *const noise[] = {"connection", "keep-alive", "transfer-encoding", "content-length",
                                        "te",         "trailer",    "upgrade",           "date",
                                        "server",     "x-request-id"};
    for (size_t i = 0; i < sizeof(noise) / sizeof(noise[0]); i++)
        if (fx_slice_ieq_lit(name, noise[i]))
            return 1;
    if (name.n >= 6 && !strncasecmp(name.p, "proxy-", 6))
        return 1;
    for (size_t i = 0; i < nignore; i++)
        if (ignore[i][0] != '$' && fx_slice_ieq_lit(name, ignore[i]))
            return 1;
    return 0;
}

/* The values of `name` on one side, in order, joined with ", " into buf (truncated). -1: absent. */
static long header_values(const fx_shadow_answer *a, fx_slice name, char *buf, size_t cap)
{
    size_t n = 0;
    int found = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < a->nheaders; i++) {
        if (!fx_slice_ieq(a->headers[i].name, name))
            continue;
        fx_slice v = a->headers[i].value;
        int w = snprintf(buf + n, cap - n, "%s%.*s", found ? ", " : "", (int)v.n, v.p);
        found = 1;
        if (w < 0 || (size_t)w >= cap - n) {
            n = cap - 1;
            break;
        }
        n += (size_t)w;
    }
    return found ? (long)n : -1;
}

/* 1 when a header of `side` named like one already seen in `side` before index i (first of its name only). */
static int seen_before(const fx_shadow_answer *side, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (fx_slice_ieq(side->headers[k].name, side->headers[i].name))
            return 1;
    return 0;
}

static int compare_header(fx_slice name, const fx_shadow_answer *p, const fx_shadow_answer *s, char *out,
                          size_t outlen)
{
    char va[1024], vb[1024];
    long la = header_values(p, name, va, sizeof(va)), lb = header_values(s, name, vb, sizeof(vb));
    if (la == lb && (la < 0 || !strcmp(va, vb)))
        return 0;
    snprintf(out, outlen, "header %.*s: %s%.*s%s != %s%.*s%s", (int)(name.n > 60 ? 60 : name.n), name.p,
             la < 0 ? "(missing)" : "\"", la < 0 ? 0 : SHOW, la < 0 ? "" : va, la < 0 ? "" : "\"",
             lb < 0 ? "(missing)" : "\"", lb < 0 ? 0 : SHOW, lb < 0 ? "" : vb, lb < 0 ? "" : "\"");
    return 1;
}

static int headers_differ(char *const *ignore, size_t nignore, const fx_shadow_answer *p,
                          const fx_shadow_answer *s, char *out, size_t outlen)
{
    for (size_t i = 0; i < p->nheaders; i++) {
        fx_slice name = p->headers[i].name;
        if (!noise_header(name, ignore, nignore) && !seen_before(p, i) && compare_header(name, p, s, out, outlen))
            return 1;
    }
    for (size_t i = 0; i < s->nheaders; i++) {
        fx_slice name = s->headers[i].name;
        if (noise_header(name, ignore, nignore) || seen_before(s, i))
            continue;
        char tmp[4];
        if (header_values(p, name, tmp, sizeof(tmp)) < 0 && compare_header(name, p, s, out, outlen))
            return 1;
    }
    return 0;
}

/* ---- bodies ----------------------------------------------------------------------------------- */

static fx_slice content_type(const fx_shadow_answer *a)
{
    for (size_t i = 0; i < a->nheaders; i++)
        if (fx_slice_ieq_lit(a->headers[i].name, "content-type"))
            return a->headers[i].value;
    return FX_SLICE_NULL;
}

static json_t *parse_json(const fx_shadow_answer *a)
{
    if (!fx_ce_content_type_is_json(content_type(a)) || !fx_ce_json_valid(a->body ? a->body : "", a->body_len))
        return NULL;
    return json_loadb(a->body, a->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int bodies_differ(char *const *ignore, size_t nignore, const fx_shadow_answer *p,
                         const fx_shadow_answer *s, char *out, size_t outlen)
{
    json_t *ja = parse_json(p), *jb = ja ? parse_json(s) : NULL;
    if (ja && jb) {
        jpath paths[16];
        size_t np = 0;
        for (size_t i = 0; i < nignore && np < sizeof(paths) / sizeof(paths[0]); i++)
            if (ignore[i][0] == '$' && parse_path(ignore[i], &paths[np]) == 0)
                np++;
        cmp c = {.ignore = paths, .nignore = np, .out = out, .outlen = outlen};
        out[0] = '\0';
        int eq = same_json(&c, ja, jb);
        json_decref(ja);
        json_decref(jb);
        return !eq;
    }
    json_decref(ja);
    json_decref(jb);
    size_t n = p->body_len < s->body_len ? p->body_len : s->body_len, i = 0;
    while (i < n && p->body[i] == s->body[i])
        i++;
    if (i == n && p->body_len == s->body_len)
        return 0;
    snprintf(out, outlen, "body differs at byte %zu (%zu and %zu bytes)", i, p->body_len, s->body_len);
    return 1;
}

unsigned fx_shadow_compare(unsigned compare, char *const *ignore, size_t nignore, const fx_shadow_answer *primary,
                           const fx_shadow_answer *shadow, fx_shadow_diff *diff)
{
    char part[3][300];
    unsigned kinds = 0;
    part[0][0] = part[1][0] = part[2][0] = '\0';
    if ((compare & FX_SHADOW_STATUS) && primary->status != shadow->status) {
        kinds |= FX_SHADOW_STATUS;
        snprintf(part[0], sizeof(part[0]), "status %d != %d", primary->status, shadow->status);
    }
    if ((compare & FX_SHADOW_HEADERS) && headers_differ(ignore, nignore, primary, shadow, part[1], sizeof(part[1])))
        kinds |= FX_SHADOW_HEADERS;
    if ((compare & FX_SHADOW_BODY) && bodies_differ(ignore, nignore, primary, shadow, part[2], sizeof(part[2])))
        kinds |= FX_SHADOW_BODY;
    diff->kinds = kinds;
    size_t n = 0;
    diff->summary[0] = '\0';
    for (int k = 0; k < 3; k++) {
        if (!part[k][0] || n >= sizeof(diff->summary) - 1)
            continue;
        int w = snprintf(diff->summary + n, sizeof(diff->summary) - n, "%s%s", n ? "; " : "", part[k]);
        if (w > 0)
            n += (size_t)w;
    }
    return kinds;
}

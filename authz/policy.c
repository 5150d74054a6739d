/*
 * policy.c — policy sets: build (checks that need the whole set, compile),
 * index by route, decide, explain. The YAML readers are in policy_file.c,
 * the expression language in expr.c.
 *
 *   diagnostics     fx_authz_diag_add / _print / _free
 *   documents       fx_authz_doc_parse / _free (JSON for context and tests)
 *   builder         fx_policy_builder_*: ids unique across files (a small
 *                   hash), route names known, `when` compiled with errors
 *                   mapped back into the file
 *   index           finish(): per route, the forbids and the permits that
 *                   apply to it (its own and the global ones), in file order
 *   decide          fx_policy_eval: forbids first (any match denies), then
 *                   permits; fx_policy_explain walks every policy
 */
#include "policy_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- types -------------------------------------------------------------------------- */

typedef struct policy {
    char *id;
    char *file;
    int line, col;
    fx_policy_effect effect;
    char **methods; /* NULL: every method */
    size_t nmethods;
    uint32_t *routes; /* route indices; NULL: every route */
    size_t nroutes;
    fx_expr *when;
} policy;

/* What applies to one route: forbids and permits, each in file order. */
typedef struct route_ix {
    uint32_t *forbid, *permit;
    size_t nforbid, npermit;
} route_ix;

struct fx_policy_builder {
    char **routes; /* known names (copied), or the names policies used (any_route) */
    size_t nroutes, caproutes;
    int any_route;
    policy *v;
    size_t n, cap;
    struct seen_id *seen; /* every id read, also of policies that had errors, so a
                             duplicate is reported in the same run as the other error */
    size_t nseen, capseen;
    uint32_t *ids;        /* open addressing over seen: index + 1, 0 empty */
    size_t idcap;
    int failed;
};

typedef struct seen_id {
    char *id, *file;
    int line, col;
} seen_id;

struct fx_policy_set {
    atomic_uint refs;
    policy *v;
    size_t n;
    char **routes;
    size_t nroutes;
    route_ix *ix;     /* [nroutes] */
    route_ix global;  /* a route the set does not know: only policies without `routes` */
    unsigned needs;
    char **hdr_reads, **query_reads; /* names read by name (headers lower-case), distinct */
    size_t nhdr_reads, nquery_reads;
    unsigned reads_any;              /* FX_EXPR_READS_*: some name is read by a computed name */
};

/* ---- diagnostics --------------------------------------------------------------------- */

void fx_authz_diag_add(fx_authz_diags *d, const char *file, int line, int col, const char *fmt, ...)
{
    if (!d)
        return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        fx_authz_diag *v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return;
        d->v = v;
        d->cap = cap;
    }
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    char *f = strdup(file ? file : "<input>");
    if (!f) {
        free(msg);
        return;
    }
    d->v[d->n++] = (fx_authz_diag){f, line, col, msg};
}

void fx_authz_diags_print(const fx_authz_diags *d, void *stdio_file)
{
    FILE *out = stdio_file;
    for (size_t i = 0; d && i < d->n; i++)
        fprintf(out, "%s:%d:%d: error: %s\n", d->v[i].file, d->v[i].line, d->v[i].col, d->v[i].msg);
}

void fx_authz_diags_free(fx_authz_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    memset(d, 0, sizeof(*d));
}

/* ---- documents -------------------------------------------------------------------------- */

int fx_json_too_deep(const json_t *j, int max)
{
    if (!json_is_object(j) && !json_is_array(j))
        return 0;
    if (max == 0)
        return 1;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            if (fx_json_too_deep(v, max - 1))
                return 1;
        }
        return 0;
    }
    for (size_t i = 0; i < json_array_size(j); i++)
        if (fx_json_too_deep(json_array_get(j, i), max - 1))
            return 1;
    return 0;
}

fx_authz_doc *fx_authz_doc_parse(const char *json, size_t len, char *err, size_t errlen)
{
    if (len > ((size_t)1 << 20)) {
        snprintf(err, errlen, "JSON document is larger than 1 MiB");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (fx_json_too_deep(j, 64)) {
        json_decref(j);
        snprintf(err, errlen, "JSON document nests deeper than 64 levels");
        return NULL;
    }
    return JSON_DOC(j);
}

void fx_authz_doc_free(fx_authz_doc *d)
{
    if (d)
        json_decref((json_t *)(void *)d);
}

/* ---- builder ------------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void policy_free(policy *p)
{
    free(p->id);
    free(p->file);
    for (size_t i = 0; i < p->nmethods; i++)
        free(p->methods[i]);
    free(p->methods);
    free(p->routes);
    fx_expr_free(p->when);
}

static int route_index(char *const *routes, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(routes[i]) == len && memcmp(routes[i], name, len) == 0)
            return (int)i;
    return -1;
}

fx_policy_builder *fx_policy_builder_new(const char *const *routes, size_t nroutes)
{
    fx_policy_builder *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->any_route = routes == NULL;
    if (routes && nroutes) {
        b->routes = calloc(nroutes, sizeof(char *));
        if (!b->routes) {
            free(b);
            return NULL;
        }
        b->caproutes = nroutes;
        for (size_t i = 0; i < nroutes; i++) {
            if (!(b->routes[i] = strdup(routes[i]))) {
                b->nroutes = i;
                fx_policy_builder_free(b);
                return NULL;
            }
        }
        b->nroutes = nroutes;
    }
    return b;
}

void fx_policy_builder_free(fx_policy_builder *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        policy_free(&b->v[i]);
    free(b->v);
    for (size_t i = 0; i < b->nroutes; i++)
        free(b->routes[i]);
    free(b->routes);
    for (size_t i = 0; i < b->nseen; i++) {
        free(b->seen[i].id);
        free(b->seen[i].file);
    }
    free(b->seen);
    free(b->ids);
    free(b);
}

void fx_policy_builder_fail(fx_policy_builder *b) { b->failed = 1; }

/* The id seen before, or NULL; *slot gets where it would go. */
static const seen_id *id_find(const fx_policy_builder *b, const char *id, size_t len, size_t *slot)
{
    size_t mask = b->idcap - 1, i = hash_bytes(id, len) & mask;
    while (b->ids[i]) {
        const seen_id *p = &b->seen[b->ids[i] - 1];
        if (strlen(p->id) == len && memcmp(p->id, id, len) == 0)
            return p;
        i = (i + 1) & mask;
    }
    *slot = i;
    return NULL;
}

static int id_table_grow(fx_policy_builder *b)
{
    if (b->nseen == b->capseen) {
        size_t cap = b->capseen ? b->capseen * 2 : 64;
        seen_id *v = realloc(b->seen, cap * sizeof(*v));
        if (!v)
            return -1;
        b->seen = v;
        b->capseen = cap;
    }
    if (b->idcap && (b->nseen + 1) * 2 < b->idcap)
        return 0;
    size_t cap = b->idcap ? b->idcap * 2 : 64;
    uint32_t *t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    free(b->ids);
    b->ids = t;
    b->idcap = cap;
    for (size_t k = 0; k < b->nseen; k++) {
        size_t i = hash_bytes(b->seen[k].id, strlen(b->seen[k].id)) & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = (uint32_t)k + 1;
    }
    return 0;
}

/* Remembers an id (first definition only), whatever becomes of its policy. */
static int id_remember(fx_policy_builder *b, const fx_policy_spec *sp, size_t slot)
{
    seen_id *e = &b->seen[b->nseen];
    e->id = strndup(sp->id, sp->idlen);
    e->file = strdup(sp->file ? sp->file : "<input>");
    e->line = sp->pos.line;
    e->col = sp->pos.col;
    if (!e->id || !e->file) {
        free(e->id);
        free(e->file);
        return -1;
    }
    b->ids[slot] = (uint32_t)b->nseen + 1;
    b->nseen++;
    return 0;
}

static int add_route_name(fx_policy_builder *b, const char *name, size_t len)
{
    if (b->nroutes == b->caproutes) {
        size_t cap = b->caproutes ? b->caproutes * 2 : 16;
        char **v = realloc(b->routes, cap * sizeof(*v));
        if (!v)
            return -1;
        b->routes = v;
        b->caproutes = cap;
    }
    if (!(b->routes[b->nroutes] = strndup(name, len)))
        return -1;
    return (int)b->nroutes++;
}

int fx_policy_builder_add(fx_policy_builder *b, const fx_policy_spec *sp, fx_authz_diags *d)
{
    const char *file = sp->file;
    int errors = 0;
    size_t slot = 0;
    if (b->n >= FX_POLICY_MAX_POLICIES) {
        fx_authz_diag_add(d, file, sp->pos.line, sp->pos.col, "more than %d policies in one set",
                          FX_POLICY_MAX_POLICIES);
        b->failed = 1;
        return -1;
    }
    if (id_table_grow(b) < 0)
        goto oom;
    const seen_id *dup = id_find(b, sp->id, sp->idlen, &slot);
    if (dup) {
        fx_authz_diag_add(d, file, sp->id_pos.line, sp->id_pos.col,
                          "duplicate policy id '%.*s' (first defined at %s:%d:%d)", (int)sp->idlen,
                          sp->id, dup->file, dup->line, dup->col);
        errors++;
    } else if (id_remember(b, sp, slot) < 0) {
        goto oom;
    }
    policy p = {0};
    p.effect = sp->effect;
    p.line = sp->pos.line;
    p.col = sp->pos.col;
    if (sp->has_routes) {
        if (!(p.routes = calloc(sp->nroutes ? sp->nroutes : 1, sizeof(uint32_t))))
            goto oom;
        for (size_t i = 0; i < sp->nroutes; i++) {
            int r = route_index(b->routes, b->nroutes, sp->routes[i].p, sp->routes[i].len);
            if (r < 0 && b->any_route && (r = add_route_name(b, sp->routes[i].p, sp->routes[i].len)) < 0) {
                policy_free(&p);
                goto oom;
            }
            if (r < 0) {
                const char *near = fx_authz_closest(sp->routes[i].p, sp->routes[i].len,
                                                    (const char *const *)b->routes, b->nroutes);
                fx_authz_diag_add(d, file, sp->route_pos[i].line, sp->route_pos[i].col,
                                  "policy '%.*s': no route is named '%.*s'%s%s%s", (int)sp->idlen, sp->id,
                                  (int)sp->routes[i].len, sp->routes[i].p, near ? " (did you mean '" : "",
                                  near ? near : "", near ? "'?)" : "");
                errors++;
                continue;
            }
            p.routes[p.nroutes++] = (uint32_t)r;
        }
    }
    if (sp->has_methods) {
        if (!(p.methods = calloc(sp->nmethods ? sp->nmethods : 1, sizeof(char *)))) {
            policy_free(&p);
            goto oom;
        }
        for (size_t i = 0; i < sp->nmethods; i++) {
            if (!(p.methods[i] = strndup(sp->methods[i].p, sp->methods[i].len))) {
                policy_free(&p);
                goto oom;
            }
            p.nmethods++;
        }
    }
    fx_expr_error ee;
    p.when = fx_expr_compile(sp->when, sp->whenlen, &ee);
    if (!p.when) {
        fx_src_pos at = sp->when_pos;
        if (sp->when_map)
            sp->when_map(sp->when_map_arg, ee.offset, &at);
        fx_authz_diag_add(d, file, at.line, at.col, "policy '%.*s': when: %s", (int)sp->idlen, sp->id, ee.msg);
        errors++;
    }
    if (errors) {
        policy_free(&p);
        b->failed = 1;
        return -1;
    }
    if (!(p.id = strndup(sp->id, sp->idlen)) || !(p.file = strdup(file ? file : "<input>"))) {
        policy_free(&p);
        goto oom;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        policy *v = realloc(b->v, cap * sizeof(*v));
        if (!v) {
            policy_free(&p);
            goto oom;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n] = p;
    b->n++;
    return 0;
oom:
    fx_authz_diag_add(d, file, sp->pos.line, sp->pos.col, "out of memory");
    b->failed = 1;
    return -1;
}

/* ---- the set ---------------------------------------------------------------------------------- */

static void ix_free(route_ix *x)
{
    free(x->forbid);
    free(x->permit);
}

static void set_free(fx_policy_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        policy_free(&s->v[i]);
    free(s->v);
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i]);
        if (s->ix)
            ix_free(&s->ix[i]);
    }
    free(s->routes);
    free(s->ix);
    ix_free(&s->global);
    for (size_t i = 0; i < s->nhdr_reads; i++)
        free(s->hdr_reads[i]);
    for (size_t i = 0; i < s->nquery_reads; i++)
        free(s->query_reads[i]);
    free(s->hdr_reads);
    free(s->query_reads);
    free(s);
}

typedef struct reads_acc {
    fx_policy_set *s;
    int oom;
} reads_acc;

static int name_in(char *const *v, size_t n, const char *name, size_t len, int ci)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) == len && (ci ? strncasecmp(v[i], name, len) : memcmp(v[i], name, len)) == 0)
            return 1;
    return 0;
}

static void add_read(void *arg, int kind, const char *name, size_t len)
{
    reads_acc *acc = arg;
    fx_policy_set *s = acc->s;
    char ***v = kind == FX_EXPR_READS_HEADER ? &s->hdr_reads : &s->query_reads;
    size_t *n = kind == FX_EXPR_READS_HEADER ? &s->nhdr_reads : &s->nquery_reads;
    if (name_in(*v, *n, name, len, kind == FX_EXPR_READS_HEADER))
        return;
    char **nv = realloc(*v, (*n + 1) * sizeof(char *));
    char *copy = strndup(name, len);
    if (!nv || !copy) {
        if (nv)
            *v = nv;
        free(copy);
        acc->oom = 1;
        return;
    }
    if (kind == FX_EXPR_READS_HEADER)
        for (size_t i = 0; i < len; i++)
            copy[i] = (char)tolower((unsigned char)copy[i]);
    *v = nv;
    nv[(*n)++] = copy;
}

int fx_policy_set_reads_header(const fx_policy_set *s, const char *name, size_t len)
{
    return s && ((s->reads_any & FX_EXPR_READS_HEADER) || name_in(s->hdr_reads, s->nhdr_reads, name, len, 1));
}

int fx_policy_set_reads_query(const fx_policy_set *s, const char *name, size_t len)
{
    return s && ((s->reads_any & FX_EXPR_READS_QUERY) || name_in(s->query_reads, s->nquery_reads, name, len, 0));
}

static int applies_to(const policy *p, uint32_t route)
{
    if (!p->routes)
        return 1;
    for (size_t i = 0; i < p->nroutes; i++)
        if (p->routes[i] == route)
            return 1;
    return 0;
}

/* Fills the forbid and permit lists of one route (UINT32_MAX: the global lists). */
static int build_ix(const fx_policy_set *s, uint32_t route, route_ix *x)
{
    size_t nf = 0, np = 0;
    for (size_t i = 0; i < s->n; i++) {
        const policy *p = &s->v[i];
        if (route == UINT32_MAX ? p->routes != NULL : !applies_to(p, route))
            continue;
        if (p->effect == FX_POLICY_FORBID)
            nf++;
        else
            np++;
    }
    x->forbid = calloc(nf ? nf : 1, sizeof(uint32_t));
    x->permit = calloc(np ? np : 1, sizeof(uint32_t));
    if (!x->forbid || !x->permit)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        const policy *p = &s->v[i];
        if (route == UINT32_MAX ? p->routes != NULL : !applies_to(p, route))
            continue;
        if (p->effect == FX_POLICY_FORBID)
            x->forbid[x->nforbid++] = (uint32_t)i;
        else
            x->permit[x->npermit++] = (uint32_t)i;
    }
    return 0;
}

fx_policy_set *fx_policy_builder_finish(fx_policy_builder *b, fx_authz_diags *d)
{
    if (!b)
        return NULL;
    if (b->failed) {
        fx_policy_builder_free(b);
        return NULL;
    }
    fx_policy_set *s = calloc(1, sizeof(*s));
    if (!s) {
        fx_authz_diag_add(d, NULL, 0, 0, "out of memory");
        fx_policy_builder_free(b);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->v = b->v;
    s->n = b->n;
    s->routes = b->routes;
    s->nroutes = b->nroutes;
    b->v = NULL;
    b->n = 0;
    b->routes = NULL;
    b->nroutes = 0;
    fx_policy_builder_free(b);
    reads_acc acc = {s, 0};
    for (size_t i = 0; i < s->n; i++) {
        s->needs |= fx_expr_needs(s->v[i].when);
        s->reads_any |= fx_expr_reads(s->v[i].when, add_read, &acc);
    }
    s->ix = calloc(s->nroutes ? s->nroutes : 1, sizeof(route_ix));
    int bad = acc.oom || !s->ix || build_ix(s, UINT32_MAX, &s->global) < 0;
    for (size_t r = 0; !bad && r < s->nroutes; r++)
        bad = build_ix(s, (uint32_t)r, &s->ix[r]) < 0;
    if (bad) {
        fx_authz_diag_add(d, NULL, 0, 0, "out of memory");
        set_free(s);
        return NULL;
    }
    return s;
}

fx_policy_set *fx_policy_set_ref(fx_policy_set *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void fx_policy_set_unref(fx_policy_set *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        set_free(s);
}

size_t fx_policy_set_count(const fx_policy_set *s) { return s ? s->n : 0; }
unsigned fx_policy_set_needs(const fx_policy_set *s) { return s ? s->needs : 0; }

int fx_policy_set_route(const fx_policy_set *s, const char *name, size_t len)
{
    return route_index(s->routes, s->nroutes, name, len);
}

const char *fx_policy_id(const fx_policy_set *s, uint32_t i) { return i < s->n ? s->v[i].id : NULL; }

fx_policy_effect fx_policy_effect_of(const fx_policy_set *s, uint32_t i)
{
    return i < s->n ? s->v[i].effect : FX_POLICY_FORBID;
}

const char *fx_policy_file(const fx_policy_set *s, uint32_t i, int *line, int *col)
{
    if (i >= s->n)
        return NULL;
    *line = s->v[i].line;
    *col = s->v[i].col;
    return s->v[i].file;
}

/* ---- decide ----------------------------------------------------------------------------------- */

const char *fx_authz_reason_name(fx_authz_reason r)
{
    switch (r) {
    case FX_AUTHZ_PERMITTED: return "permitted";
    case FX_AUTHZ_FORBIDDEN: return "forbidden";
    default: return "no_policy";
    }
}

static int method_ok(const policy *p, const fx_authz_request *r)
{
    if (!p->methods)
        return 1;
    for (size_t i = 0; i < p->nmethods; i++)
        if (strlen(p->methods[i]) == r->method.len && memcmp(p->methods[i], r->method.p, r->method.len) == 0)
            return 1;
    return 0;
}

static void record(fx_authz_decision *out, uint32_t i)
{
    if (out->nmatched < FX_AUTHZ_MAX_MATCHED)
        out->matched[out->nmatched] = i;
    out->nmatched++;
}

/* Evaluates one list; returns how many matched (recorded into out). */
static size_t eval_list(const fx_policy_set *s, const uint32_t *list, size_t n, const fx_authz_request *r,
                        fx_authz_decision *out)
{
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const policy *p = &s->v[list[i]];
        if (method_ok(p, r) && fx_expr_eval(p->when, r)) {
            record(out, list[i]);
            hits++;
        }
    }
    return hits;
}

void fx_policy_eval(const fx_policy_set *s, const fx_authz_request *r, fx_authz_decision *out)
{
    out->allow = 0;
    out->reason = FX_AUTHZ_NO_MATCH;
    out->nmatched = 0;
    if (!s)
        return;
    const route_ix *x = r->route_index >= 0 && (size_t)r->route_index < s->nroutes ? &s->ix[r->route_index]
                                                                                   : &s->global;
    if (eval_list(s, x->forbid, x->nforbid, r, out)) {
        out->reason = FX_AUTHZ_FORBIDDEN;
        return;
    }
    if (eval_list(s, x->permit, x->npermit, r, out)) {
        out->reason = FX_AUTHZ_PERMITTED;
        out->allow = 1;
    }
}

void fx_policy_explain(const fx_policy_set *s, const fx_authz_request *r, fx_authz_decision *out,
                       void (*fn)(void *arg, const fx_policy_explain_item *item), void *arg)
{
    fx_policy_eval(s, r, out);
    if (!s || !fn)
        return;
    int known = r->route_index >= 0 && (size_t)r->route_index < s->nroutes;
    for (size_t i = 0; i < s->n; i++) {
        const policy *p = &s->v[i];
        fx_policy_explain_item it = {.policy = (uint32_t)i, .why = {"", 0}, .missing = {"", 0}};
        if (p->routes && !(known && applies_to(p, (uint32_t)r->route_index)))
            it.outcome = FX_POLICY_NOT_FOR_ROUTE;
        else if (!method_ok(p, r))
            it.outcome = FX_POLICY_NOT_FOR_METHOD;
        else if (fx_expr_explain(p->when, r, &it.why, &it.missing))
            it.outcome = FX_POLICY_MATCHED;
        else
            it.outcome = FX_POLICY_WHEN_FALSE;
        if (it.outcome == FX_POLICY_MATCHED) {
            it.why = (fx_authz_str){"", 0};
            it.missing = (fx_authz_str){"", 0}; /* it matched: nothing was missing that mattered */
        }
        fn(arg, &it);
    }
}

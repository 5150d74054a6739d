/*
 * test_router.c — Check suite "router" for gateway/router.c.
 *
 *   route specs      routes are written as small tables ("kind, path, methods,
 *                    host") and turned into fx_route_conf here, the way the
 *                    config loader would (templates split at '/' into literal
 *                    and {param} segments) but without YAML
 *   match cases      one table row per request: the routes in file order, the
 *                    request (method, host, path), the route that must win
 *                    (or none) and the params it must bind
 *   single tests     params point into the request path; out may be NULL;
 *                    FX_ROUTE_MAX_PARAMS is never exceeded
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llhttp.h"
#include "router.h"

#define MAX_ROUTES 4
#define MAX_EXPECT_PARAMS 4

typedef struct route_spec {
    int kind;         /* 0 ends the list */
    const char *path; /* prefix, exact path or template */
    uint64_t methods; /* 0 = any */
    const char *host; /* NULL = any; lower case, like the loader stores it */
} route_spec;

typedef struct router_case {
    const char *name;
    route_spec routes[MAX_ROUTES];
    int method;
    const char *host;
    const char *path;
    int want; /* index of the winning route, -1 for none */
    const char *params[MAX_EXPECT_PARAMS][2];
} router_case;

#define GET FX_METHOD_BIT(HTTP_GET)
#define HEAD FX_METHOD_BIT(HTTP_HEAD)
#define PUT FX_METHOD_BIT(HTTP_PUT)
#define POST FX_METHOD_BIT(HTTP_POST)
#define DEL FX_METHOD_BIT(HTTP_DELETE)
#define PFX FX_MATCH_PREFIX
#define EXA FX_MATCH_EXACT
#define TPL FX_MATCH_TEMPLATE

/* clang-format off */
static const router_case cases[] = {
    /* prefix */
    {.name = "prefix matches below it",
     .routes = {{.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/x/y", .want = 0},
    {.name = "prefix matches itself",
     .routes = {{.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/", .want = 0},
    {.name = "prefix needs its trailing slash",
     .routes = {{.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/api", .want = -1},
    {.name = "prefix is case-sensitive",
     .routes = {{.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/API/x", .want = -1},
    {.name = "prefix / matches everything",
     .routes = {{.kind = PFX, .path = "/"}},
     .method = HTTP_DELETE, .host = "a", .path = "/anything/at/all", .want = 0},
    {.name = "prefix without slash is a string prefix",
     .routes = {{.kind = PFX, .path = "/api"}},
     .method = HTTP_GET, .host = "a", .path = "/apix", .want = 0},
    {.name = "prefix longer than the path",
     .routes = {{.kind = PFX, .path = "/api/documents/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/", .want = -1},
    /* exact */
    {.name = "exact matches",
     .routes = {{.kind = EXA, .path = "/healthz"}},
     .method = HTTP_GET, .host = "a", .path = "/healthz", .want = 0},
    {.name = "exact rejects a trailing slash",
     .routes = {{.kind = EXA, .path = "/healthz"}},
     .method = HTTP_GET, .host = "a", .path = "/healthz/", .want = -1},
    {.name = "exact rejects a longer path",
     .routes = {{.kind = EXA, .path = "/healthz"}},
     .method = HTTP_GET, .host = "a", .path = "/healthzz", .want = -1},
    {.name = "exact rejects a shorter path",
     .routes = {{.kind = EXA, .path = "/healthz"}},
     .method = HTTP_GET, .host = "a", .path = "/health", .want = -1},
    {.name = "exact root",
     .routes = {{.kind = EXA, .path = "/"}},
     .method = HTTP_GET, .host = "a", .path = "/", .want = 0},
    {.name = "exact root is not a prefix",
     .routes = {{.kind = EXA, .path = "/"}},
     .method = HTTP_GET, .host = "a", .path = "/x", .want = -1},
    /* templates, one param */
    {.name = "template binds one param",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/42", .want = 0,
     .params = {{"id", "42"}}},
    {.name = "template param with odd bytes",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/a%20b.c-d", .want = 0,
     .params = {{"id", "a%20b.c-d"}}},
    {.name = "template: empty segment never binds",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/", .want = -1},
    {.name = "template: missing segment",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents", .want = -1},
    {.name = "template: trailing slash does not match",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/42/", .want = -1},
    {.name = "template: extra segment does not match",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/42/x", .want = -1},
    {.name = "template: literal must match fully",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documentsX/42", .want = -1},
    {.name = "template: literal is case-sensitive",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/Documents/42", .want = -1},
    {.name = "template: double slash is an empty segment",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api//documents/42", .want = -1},
    {.name = "template: param first",
     .routes = {{.kind = TPL, .path = "/{tenant}/items"}},
     .method = HTTP_GET, .host = "a", .path = "/acme/items", .want = 0,
     .params = {{"tenant", "acme"}}},
    {.name = "template: path without leading slash",
     .routes = {{.kind = TPL, .path = "/{tenant}/items"}},
     .method = HTTP_GET, .host = "a", .path = "acme/items", .want = -1},
    {.name = "template: empty path",
     .routes = {{.kind = TPL, .path = "/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "", .want = -1},
    {.name = "template: root path, empty param",
     .routes = {{.kind = TPL, .path = "/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/", .want = -1},
    /* templates, two params */
    {.name = "template binds two params",
     .routes = {{.kind = TPL, .path = "/api/users/{uid}/docs/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/users/7/docs/99", .want = 0,
     .params = {{"uid", "7"}, {"id", "99"}}},
    {.name = "template: two adjacent params",
     .routes = {{.kind = TPL, .path = "/v1/{a}/{b}"}},
     .method = HTTP_GET, .host = "a", .path = "/v1/x/yy", .want = 0,
     .params = {{"a", "x"}, {"b", "yy"}}},
    {.name = "template: first of two params empty",
     .routes = {{.kind = TPL, .path = "/api/users/{uid}/docs/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/users//docs/99", .want = -1},
    {.name = "template: second of two params empty",
     .routes = {{.kind = TPL, .path = "/api/users/{uid}/docs/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/users/7/docs/", .want = -1},
    {.name = "template: two params, trailing slash",
     .routes = {{.kind = TPL, .path = "/api/users/{uid}/docs/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/api/users/7/docs/99/", .want = -1},
    /* methods */
    {.name = "methods: listed method matches",
     .routes = {{.kind = PFX, .path = "/", .methods = GET | HEAD}},
     .method = HTTP_HEAD, .host = "a", .path = "/x", .want = 0},
    {.name = "methods: unlisted method does not",
     .routes = {{.kind = PFX, .path = "/", .methods = GET | HEAD}},
     .method = HTTP_POST, .host = "a", .path = "/x", .want = -1},
    {.name = "methods: 0 means any",
     .routes = {{.kind = PFX, .path = "/", .methods = 0}},
     .method = HTTP_PATCH, .host = "a", .path = "/x", .want = 0},
    {.name = "methods: DELETE is bit 0",
     .routes = {{.kind = PFX, .path = "/", .methods = DEL}},
     .method = HTTP_DELETE, .host = "a", .path = "/x", .want = 0},
    {.name = "methods: DELETE bit does not admit GET",
     .routes = {{.kind = PFX, .path = "/", .methods = DEL}},
     .method = HTTP_GET, .host = "a", .path = "/x", .want = -1},
    {.name = "methods: negative method with a mask",
     .routes = {{.kind = PFX, .path = "/", .methods = GET}},
     .method = -1, .host = "a", .path = "/x", .want = -1},
    {.name = "methods: method 64 with a mask",
     .routes = {{.kind = PFX, .path = "/", .methods = GET}},
     .method = 64, .host = "a", .path = "/x", .want = -1},
    {.name = "methods: read/write split on one template",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}", .methods = GET | HEAD}, {.kind = TPL,
     .path = "/api/documents/{id}", .methods = PUT | DEL}},
     .method = HTTP_PUT, .host = "a", .path = "/api/documents/5", .want = 1,
     .params = {{"id", "5"}}},
    /* host */
    {.name = "host: exact",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "api.example.com"}},
     .method = HTTP_GET, .host = "api.example.com", .path = "/", .want = 0},
    {.name = "host: case-insensitive",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "api.example.com"}},
     .method = HTTP_GET, .host = "API.Example.COM", .path = "/", .want = 0},
    {.name = "host: other host",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "api.example.com"}},
     .method = HTTP_GET, .host = "www.example.com", .path = "/", .want = -1},
    {.name = "host: suffix is not enough",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "example.com"}},
     .method = HTTP_GET, .host = "api.example.com", .path = "/", .want = -1},
    {.name = "host: prefix is not enough",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "api.example.com"}},
     .method = HTTP_GET, .host = "api.example.co", .path = "/", .want = -1},
    {.name = "host: empty request host",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "api.example.com"}},
     .method = HTTP_GET, .host = "", .path = "/", .want = -1},
    {.name = "host: route without host takes any",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = NULL}},
     .method = HTTP_GET, .host = "", .path = "/", .want = 0},
    {.name = "host: falls through to a host-less route",
     .routes = {{.kind = PFX, .path = "/", .methods = 0, .host = "admin.example.com"},
     {.kind = PFX, .path = "/", .methods = 0, .host = NULL}},
     .method = HTTP_GET, .host = "www.example.com", .path = "/", .want = 1},
    /* order */
    {.name = "first match wins (prefix before exact)",
     .routes = {{.kind = PFX, .path = "/api/"}, {.kind = EXA, .path = "/api/x"}},
     .method = HTTP_GET, .host = "a", .path = "/api/x", .want = 0},
    {.name = "first match wins (exact before prefix)",
     .routes = {{.kind = EXA, .path = "/api/x"}, {.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/x", .want = 0},
    {.name = "later route when earlier fails",
     .routes = {{.kind = EXA, .path = "/api/x"}, {.kind = PFX, .path = "/api/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/y", .want = 1},
    {.name = "template before catch-all",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}, {.kind = PFX, .path = "/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/1", .want = 0,
     .params = {{"id", "1"}}},
    {.name = "catch-all after failed template binds nothing",
     .routes = {{.kind = TPL, .path = "/api/documents/{id}"}, {.kind = PFX, .path = "/"}},
     .method = HTTP_GET, .host = "a", .path = "/api/documents/1/x", .want = 1},
    {.name = "method mismatch skips to the next route",
     .routes = {{.kind = PFX, .path = "/api/", .methods = GET}, {.kind = PFX, .path = "/api/",
     .methods = POST}},
     .method = HTTP_POST, .host = "a", .path = "/api/z", .want = 1},
    {.name = "nothing matches",
     .routes = {{.kind = PFX, .path = "/api/"}, {.kind = EXA, .path = "/healthz"}, {.kind = TPL,
     .path = "/d/{id}"}},
     .method = HTTP_GET, .host = "a", .path = "/other", .want = -1},
    {.name = "no routes at all",
     .method = HTTP_GET, .host = "a", .path = "/", .want = -1},
};
/* clang-format on */

/* --- building routes as the loader would -------------------------------------- */

static void build_route(fx_route_conf *r, const route_spec *sp)
{
    memset(r, 0, sizeof(*r));
    r->name = strdup(sp->path);
    r->kind = sp->kind;
    r->path = strdup(sp->path);
    r->path_len = strlen(sp->path);
    r->methods = sp->methods;
    r->host = sp->host ? strdup(sp->host) : NULL;
    ck_assert_ptr_nonnull(r->path);
    if (sp->kind != FX_MATCH_TEMPLATE)
        return;
    /* "/a/{b}/c" → "a", {b}, "c": one segment per '/' */
    for (const char *p = sp->path; *p; p++)
        r->nsegs += *p == '/';
    r->segs = calloc(r->nsegs, sizeof(*r->segs));
    ck_assert_ptr_nonnull(r->segs);
    const char *p = sp->path + 1;
    for (size_t i = 0; i < r->nsegs; i++) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        fx_path_seg *seg = &r->segs[i];
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            seg->is_param = 1;
            seg->text = strndup(p + 1, len - 2);
            seg->len = len - 2;
        } else {
            seg->text = strndup(p, len);
            seg->len = len;
        }
        ck_assert_ptr_nonnull(seg->text);
        p += len + 1;
    }
}

static void free_route(fx_route_conf *r)
{
    for (size_t i = 0; i < r->nsegs; i++)
        free(r->segs[i].text);
    free(r->segs);
    free(r->name);
    free(r->path);
    free(r->host);
}

static void build_config(fx_config *cfg, const route_spec *specs, size_t n)
{
    memset(cfg, 0, sizeof(*cfg));
    size_t count = 0;
    while (count < n && specs[count].kind)
        count++;
    cfg->routes = calloc(count ? count : 1, sizeof(*cfg->routes));
    ck_assert_ptr_nonnull(cfg->routes);
    for (size_t i = 0; i < count; i++)
        build_route(&cfg->routes[i], &specs[i]);
    cfg->nroutes = count;
}

static void free_config(fx_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        free_route(&cfg->routes[i]);
    free(cfg->routes);
}

/* --- the table ------------------------------------------------------------------ */

START_TEST(test_match_table)
{
    const router_case *tc = &cases[_i];
    fx_config cfg;
    build_config(&cfg, tc->routes, MAX_ROUTES);

    /* the path in a buffer of its own size, like a slice into a request head */
    size_t plen = strlen(tc->path);
    char *path = malloc(plen ? plen : 1);
    ck_assert_ptr_nonnull(path);
    memcpy(path, tc->path, plen);
    fx_slice ps = fx_slice_make(path, plen);

    fx_route_match m;
    memset(&m, 0xa5, sizeof(m)); /* garbage in: the router must set what it reports */
    const fx_route_conf *r = fx_router_match(&cfg, tc->method, fx_slice_cstr(tc->host), ps, &m);
    if (tc->want < 0) {
        ck_assert_msg(r == NULL, "%s: matched route %td, want none", tc->name,
                      r ? r - cfg.routes : -1);
        ck_assert_ptr_null(m.route);
        ck_assert_uint_eq(m.nparams, 0);
    } else {
        ck_assert_msg(r == &cfg.routes[tc->want], "%s: matched route %td, want %d", tc->name,
                      r ? r - cfg.routes : -1, tc->want);
        ck_assert_ptr_eq(m.route, r);
        size_t nwant = 0;
        while (nwant < MAX_EXPECT_PARAMS && tc->params[nwant][0])
            nwant++;
        ck_assert_msg(m.nparams == nwant, "%s: %zu params, want %zu", tc->name, m.nparams, nwant);
        for (size_t i = 0; i < nwant; i++) {
            ck_assert_msg(fx_slice_eq(m.params[i].name, fx_slice_cstr(tc->params[i][0])),
                          "%s: param %zu is named '%.*s', want '%s'", tc->name, i,
                          (int)m.params[i].name.n, m.params[i].name.p, tc->params[i][0]);
            ck_assert_msg(fx_slice_eq(m.params[i].value, fx_slice_cstr(tc->params[i][1])),
                          "%s: param %s = '%.*s', want '%s'", tc->name, tc->params[i][0],
                          (int)m.params[i].value.n, m.params[i].value.p, tc->params[i][1]);
            /* values are slices of the request path, not copies */
            ck_assert_msg(m.params[i].value.p >= path &&
                              m.params[i].value.p + m.params[i].value.n <= path + plen,
                          "%s: param %s does not point into the request path", tc->name,
                          tc->params[i][0]);
        }
    }
    /* fx_route_matches agrees on each route, with and without an out struct */
    int first = -1;
    for (size_t i = 0; i < cfg.nroutes; i++) {
        fx_route_match one;
        int a = fx_route_matches(&cfg.routes[i], tc->method, fx_slice_cstr(tc->host), ps, &one);
        int b = fx_route_matches(&cfg.routes[i], tc->method, fx_slice_cstr(tc->host), ps, NULL);
        ck_assert_msg(!a == !b, "%s: route %zu matches differently with out == NULL", tc->name, i);
        if (a && first < 0)
            first = (int)i;
    }
    ck_assert_msg(first == tc->want, "%s: first matching route by fx_route_matches is %d, want %d",
                  tc->name, first, tc->want);
    /* the router works without an out struct too */
    ck_assert(fx_router_match(&cfg, tc->method, fx_slice_cstr(tc->host), ps, NULL) == r);

    free(path);
    free_config(&cfg);
}
END_TEST

/* The exact addresses of bound params: offsets in the path, not copies. */
START_TEST(test_params_point_into_path)
{
    static const route_spec spec[] = {{TPL, "/t/{tenant}/d/{doc}", 0, NULL}, {0}};
    fx_config cfg;
    build_config(&cfg, spec, 2);
    char path[] = "/t/acme/d/1234";
    fx_route_match m;
    ck_assert_ptr_nonnull(
        fx_router_match(&cfg, HTTP_GET, FX_SLICE_LIT("x"), fx_slice_make(path, strlen(path)), &m));
    ck_assert_uint_eq(m.nparams, 2);
    ck_assert_ptr_eq(m.params[0].value.p, path + 3);
    ck_assert_uint_eq(m.params[0].value.n, 4);
    ck_assert_ptr_eq(m.params[1].value.p, path + 10);
    ck_assert_uint_eq(m.params[1].value.n, 4);
    /* names point at the route's own text */
    ck_assert_ptr_eq(m.params[0].name.p, cfg.routes[0].segs[1].text);
    ck_assert_ptr_eq(m.params[1].name.p, cfg.routes[0].segs[3].text);
    /* a path that is a prefix of a longer buffer: only path.n bytes count */
    char longer[] = "/t/acme/d/12/extra";
    ck_assert_ptr_nonnull(
        fx_router_match(&cfg, HTTP_GET, FX_SLICE_LIT("x"), fx_slice_make(longer, 12), &m));
    ck_assert_uint_eq(m.params[1].value.n, 2);
    free_config(&cfg);
}
END_TEST

/* A template with more {params} than FX_ROUTE_MAX_PARAMS never writes past params[]. */
START_TEST(test_max_params)
{
    char tpl[512] = "", path[512] = "";
    enum { NP = FX_ROUTE_MAX_PARAMS + 4 };
    for (int i = 0; i < NP; i++) {
        char seg[32];
        snprintf(seg, sizeof(seg), "/{p%d}", i);
        strcat(tpl, seg);
        snprintf(seg, sizeof(seg), "/v%d", i);
        strcat(path, seg);
    }
    route_spec spec[] = {{TPL, tpl, 0, NULL}, {0}};
    fx_config cfg;
    build_config(&cfg, spec, 2);
    ck_assert_uint_eq(cfg.routes[0].nsegs, NP);

    /* guard bytes after the struct catch a write past params[] (with ASan: an overflow) */
    struct {
        fx_route_match m;
        unsigned char guard[64];
    } box;
    memset(box.guard, 0x5c, sizeof(box.guard));
    const fx_route_conf *r =
        fx_router_match(&cfg, HTTP_GET, FX_SLICE_LIT("x"), fx_slice_cstr(path), &box.m);
    for (size_t i = 0; i < sizeof(box.guard); i++)
        ck_assert_int_eq(box.guard[i], 0x5c);
    if (r) {
        ck_assert_uint_le(box.m.nparams, FX_ROUTE_MAX_PARAMS);
        for (size_t i = 0; i < box.m.nparams; i++) {
            char want[32];
            snprintf(want, sizeof(want), "v%zu", i);
            ck_assert(fx_slice_eq(box.m.params[i].value, fx_slice_cstr(want)));
        }
    }
    free_config(&cfg);

    /* exactly FX_ROUTE_MAX_PARAMS params all bind */
    tpl[0] = path[0] = '\0';
    for (int i = 0; i < FX_ROUTE_MAX_PARAMS; i++) {
        char seg[32];
        snprintf(seg, sizeof(seg), "/{p%d}", i);
        strcat(tpl, seg);
        snprintf(seg, sizeof(seg), "/v%d", i);
        strcat(path, seg);
    }
    route_spec spec2[] = {{TPL, tpl, 0, NULL}, {0}};
    build_config(&cfg, spec2, 2);
    fx_route_match m;
    ck_assert_ptr_nonnull(
        fx_router_match(&cfg, HTTP_GET, FX_SLICE_LIT("x"), fx_slice_cstr(path), &m));
    ck_assert_uint_eq(m.nparams, FX_ROUTE_MAX_PARAMS);
    ck_assert(fx_slice_eq(m.params[FX_ROUTE_MAX_PARAMS - 1].name, FX_SLICE_LIT("p15")));
    ck_assert(fx_slice_eq(m.params[FX_ROUTE_MAX_PARAMS - 1].value, FX_SLICE_LIT("v15")));
    free_config(&cfg);
}
END_TEST

/* Every llhttp method number below 64 can be routed by its bit. */
START_TEST(test_every_method_bit)
{
    static const route_spec spec[] = {{PFX, "/", 0, NULL}, {0}};
    fx_config cfg;
    build_config(&cfg, spec, 2);
    for (int m = 0; m <= HTTP_RECORD; m++) {
        cfg.routes[0].methods = FX_METHOD_BIT(m);
        ck_assert_msg(
            fx_route_matches(&cfg.routes[0], m, FX_SLICE_LIT("x"), FX_SLICE_LIT("/"), NULL),
            "method %d not matched by its own bit", m);
        int other = m == HTTP_GET ? HTTP_POST : HTTP_GET;
        ck_assert(
            !fx_route_matches(&cfg.routes[0], other, FX_SLICE_LIT("x"), FX_SLICE_LIT("/"), NULL));
    }
    free_config(&cfg);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_match_table, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_params_point_into_path);
    tcase_add_test(tc, test_max_params);
    tcase_add_test(tc, test_every_method_bit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * test_policy.c — Check suite "policy" for policy sets (authz/policy.c):
 * built through fx_policy_builder_new / fx_policy_builder_add (specs filled
 * by hand, no YAML) / fx_policy_builder_finish, decided by fx_policy_eval and
 * fx_policy_explain.
 *
 *   helpers      pol: one policy in a line (id, effect, routes, methods,
 *                when); build() turns a table of them into a set, with
 *                made-up but distinct positions for every part
 *   decisions    default deny, forbid overrides permit, the route index
 *                (route-only, global, unknown route), methods, matched
 *                lists in file order and counted past FX_AUTHZ_MAX_MATCHED
 *   building     duplicate ids, unknown routes (did you mean), any route
 *                without a route list, `when` errors mapped into the file,
 *                all or nothing, the size limit, refcounts
 *   then         documents (fx_authz_doc_parse), explain, accessors, no
 *                allocation in fx_policy_eval (ASan only), threads
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_internal.h"

/* Any UBSan report fails the test it happens in (meson does not set UBSAN_OPTIONS). */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

#define S(x) {x, sizeof(x) - 1}
#define PERMIT FX_POLICY_PERMIT
#define FORBID FX_POLICY_FORBID
#define N_(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct pol {
    const char *id;
    fx_policy_effect effect;
    const char *routes[4];  /* NULL-terminated; none: `routes` not given */
    const char *methods[4]; /* NULL-terminated; none: `methods` not given */
    const char *when;
    const char *file; /* NULL: "test.yaml" */
} pol;

static const char *const routes3[] = {"documents-read", "documents-write", "profiles"};

/* Where build() says each part of policy i was written. */
#define POS_LINE(i) ((int)(i) * 10 + 1)
#define ID_COL 7
#define ROUTE_COL(k) (20 + 3 * (int)(k))
#define WHEN_COL 40

static int map_calls;
/* when_map: the expression starts at line 1000 + policy, column 11; one byte, one column */
static void map_fixed(void *arg, size_t off, fx_src_pos *out)
{
    int i = *(const int *)arg;
    map_calls++;
    out->line = 1000 + i;
    out->col = 11 + (int)off;
}

static int fill_spec(const pol *p, int i, fx_policy_spec *sp, fx_authz_str *routes,
                     fx_src_pos *route_pos, fx_authz_str *methods, fx_src_pos *method_pos)
{
    memset(sp, 0, sizeof(*sp));
    sp->file = p->file ? p->file : "test.yaml";
    sp->pos = (fx_src_pos){POS_LINE(i), 3};
    sp->id = p->id;
    sp->idlen = strlen(p->id);
    sp->id_pos = (fx_src_pos){POS_LINE(i), ID_COL};
    sp->effect = p->effect;
    size_t nr = 0, nm = 0;
    while (nr < 4 && p->routes[nr]) {
        routes[nr] = (fx_authz_str){p->routes[nr], strlen(p->routes[nr])};
        route_pos[nr] = (fx_src_pos){POS_LINE(i) + 1, ROUTE_COL(nr)};
        nr++;
    }
    while (nm < 4 && p->methods[nm]) {
        methods[nm] = (fx_authz_str){p->methods[nm], strlen(p->methods[nm])};
        method_pos[nm] = (fx_src_pos){POS_LINE(i) + 2, 20 + 5 * (int)nm};
        nm++;
    }
    sp->has_routes = nr > 0;
    sp->routes = routes;
    sp->route_pos = route_pos;
    sp->nroutes = nr;
    sp->has_methods = nm > 0;
    sp->methods = methods;
    sp->method_pos = method_pos;
    sp->nmethods = nm;
    sp->when = p->when;
    sp->whenlen = strlen(p->when);
    sp->when_pos = (fx_src_pos){POS_LINE(i) + 3, WHEN_COL};
    return 0;
}

/* Adds policies first..first+n of v to b (i is the policy's number for positions). */
static int add_all(fx_policy_builder *b, const pol *v, size_t n, fx_authz_diags *d, int mapped)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        fx_policy_spec sp;
        fx_authz_str routes[4], methods[4];
        fx_src_pos rpos[4], mpos[4];
        int num = (int)i;
        fill_spec(&v[i], (int)i, &sp, routes, rpos, methods, mpos);
        if (mapped) {
            sp.when_map = map_fixed;
            sp.when_map_arg = &num;
        }
        if (fx_policy_builder_add(b, &sp, d) != 0)
            bad++;
    }
    return bad;
}

/* A set from v[] over the three routes (or any route with routes == NULL); NULL on error. */
static fx_policy_set *build_with(const char *const *routes, size_t nroutes, const pol *v, size_t n,
                                 fx_authz_diags *d)
{
    fx_policy_builder *b = fx_policy_builder_new(routes, nroutes);
    ck_assert_ptr_nonnull(b);
    add_all(b, v, n, d, 0);
    return fx_policy_builder_finish(b, d);
}

static fx_policy_set *build(const pol *v, size_t n)
{
    fx_authz_diags d = {0};
    fx_policy_set *s = build_with(routes3, 3, v, n, &d);
    if (!s) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s:%d:%d: error: %s\n", d.v[i].file, d.v[i].line, d.v[i].col, d.v[i].msg);
    }
    ck_assert_msg(s != NULL, "the set did not build (%zu diagnostics)", d.n);
    ck_assert_uint_eq(d.n, 0);
    fx_authz_diags_free(&d);
    return s;
}

static fx_authz_doc *parse_doc(const char *json)
{
    char err[256];
    fx_authz_doc *doc = fx_authz_doc_parse(json, strlen(json), err, sizeof(err));
    ck_assert_msg(doc != NULL, "fixture JSON: %s", err);
    return doc;
}

/* A request on a route of s (by name; NULL: route_index -1). */
static fx_authz_request request_on(const fx_policy_set *s, const char *route, const char *method,
                                   const fx_authz_doc *token)
{
    fx_authz_request r = {0};
    r.method = (fx_authz_str){method, strlen(method)};
    r.path = (fx_authz_str){"/x", 2};
    r.route = route ? (fx_authz_str){route, strlen(route)} : (fx_authz_str){"", 0};
    r.route_index = route ? fx_policy_set_route(s, route, strlen(route)) : -1;
    r.token = token;
    return r;
}

static void assert_decision(const fx_authz_decision *d, int allow, fx_authz_reason reason,
                            const uint32_t *matched, size_t nmatched)
{
    ck_assert_int_eq(d->allow, allow);
    ck_assert_int_eq(d->reason, reason);
    ck_assert_uint_eq(d->nmatched, nmatched);
    for (size_t i = 0; i < nmatched && i < FX_AUTHZ_MAX_MATCHED; i++)
        ck_assert_msg(d->matched[i] == matched[i], "matched[%zu] is %u, expected %u", i,
                      d->matched[i], matched[i]);
}

/* fx_policy_explain's items, collected. */
typedef struct items {
    fx_policy_explain_item v[64];
    size_t n;
} items;

static void on_item(void *arg, const fx_policy_explain_item *it)
{
    items *x = arg;
    ck_assert_uint_lt(x->n, N_(x->v));
    x->v[x->n++] = *it;
}

static int str_is(fx_authz_str s, const char *want)
{
    return s.p && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static int diag_has(const fx_authz_diags *d, size_t i, const char *file, int line, int col,
                    const char *fragment)
{
    return i < d->n && strcmp(d->v[i].file, file) == 0 && d->v[i].line == line &&
           d->v[i].col == col && strstr(d->v[i].msg, fragment) != NULL;
}

#define ASSERT_DIAG(d, i, f_, l_, c_, frag_)                                              \
    ck_assert_msg(diag_has(d, i, f_, l_, c_, frag_),                                      \
                  "diagnostic %zu: '%s:%d:%d: %s', expected '%s:%d:%d: ...%s...'", (size_t)(i),    \
                  (i) < (d)->n ? (d)->v[i].file : "-", (i) < (d)->n ? (d)->v[i].line : 0,         \
                  (i) < (d)->n ? (d)->v[i].col : 0, (i) < (d)->n ? (d)->v[i].msg : "(none)",      \
                  f_, l_, c_, frag_)

/* ---- decisions ------------------------------------------------------------------------------- */

START_TEST(test_default_deny)
{
    /* an empty set, and a set whose only permit does not match: deny, no policy */
    fx_policy_set *s = build(NULL, 0);
    ck_assert_uint_eq(fx_policy_set_count(s), 0);
    fx_authz_request r = request_on(s, "profiles", "GET", NULL);
    fx_authz_decision d;
    memset(&d, 0x5a, sizeof(d));
    fx_policy_eval(s, &r, &d);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    fx_policy_set_unref(s);

    static const pol v[] = {{"only-admins", PERMIT, {NULL}, {NULL}, "'admin' in token.roles", NULL}};
    s = build(v, 1);
    fx_authz_doc *tok = parse_doc("{\"roles\": [\"user\"]}");
    r = request_on(s, "profiles", "GET", tok);
    fx_policy_eval(s, &r, &d);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    r.token = NULL; /* anonymous: token.roles is missing, the permit is false */
    fx_policy_eval(s, &r, &d);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    ck_assert_str_eq(fx_authz_reason_name(d.reason), "no_policy");
    fx_authz_doc_free(tok);
    fx_policy_set_unref(s);

    /* no set at all */
    memset(&d, 0x5a, sizeof(d));
    fx_policy_eval(NULL, &r, &d);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
}
END_TEST

START_TEST(test_forbid_overrides_permit)
{
    /* the three rules of DESIGN.md, plus a permit that always matches; the forbid is
     * written before the permits once and after them once */
    static const pol after[] = {
        {"documents-read", PERMIT, {"documents-read"}, {NULL}, "'documents:read' in token.scope", NULL},
        {"owner-or-admin-writes", PERMIT, {"documents-write"}, {NULL},
         "token.sub == request.params.id || 'admin' in token.roles", NULL},
        {"everyone", PERMIT, {NULL}, {NULL}, "true", NULL},
        {"suspended", FORBID, {NULL}, {NULL}, "token.status == 'suspended'", NULL},
    };
    static const pol before[] = {
        {"suspended", FORBID, {NULL}, {NULL}, "token.status == 'suspended'", NULL},
        {"documents-read", PERMIT, {"documents-read"}, {NULL}, "'documents:read' in token.scope", NULL},
        {"owner-or-admin-writes", PERMIT, {"documents-write"}, {NULL},
         "token.sub == request.params.id || 'admin' in token.roles", NULL},
        {"everyone", PERMIT, {NULL}, {NULL}, "true", NULL},
    };
    fx_authz_doc *ok = parse_doc("{\"sub\": \"42\", \"scope\": \"documents:read\", \"roles\": []}");
    fx_authz_doc *bad = parse_doc("{\"sub\": \"42\", \"scope\": \"documents:read\", \"roles\": [\"admin\"],"
                                  " \"status\": \"suspended\"}");
    static const fx_authz_kv params[] = {{S("id"), S("42")}};
    for (int k = 0; k < 2; k++) {
        fx_policy_set *s = build(k ? before : after, 4);
        uint32_t forbid = k ? 0 : 3, read = k ? 1 : 0, write = k ? 2 : 1, every = k ? 3 : 2;
        fx_authz_decision d;
        fx_authz_request r = request_on(s, "documents-read", "GET", ok);
        fx_policy_eval(s, &r, &d);
        uint32_t m2[] = {read, every};
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m2, 2);
        ck_assert_str_eq(fx_authz_reason_name(d.reason), "permitted");
        r.token = bad;
        fx_policy_eval(s, &r, &d);
        uint32_t mf[] = {forbid};
        assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, mf, 1);
        ck_assert_str_eq(fx_authz_reason_name(d.reason), "forbidden");
        r = request_on(s, "documents-write", "PUT", ok);
        r.params = params;
        r.nparams = 1;
        fx_policy_eval(s, &r, &d);
        uint32_t mw[] = {write, every};
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, mw, 2);
        r.token = bad; /* an admin, but suspended */
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, mf, 1);
        /* a route no policy names: the global ones */
        r = request_on(s, NULL, "GET", bad);
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, mf, 1);
        r.token = ok;
        fx_policy_eval(s, &r, &d);
        uint32_t me[] = {every};
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, me, 1);
        fx_policy_set_unref(s);
    }
    fx_authz_doc_free(ok);
    fx_authz_doc_free(bad);
}
END_TEST

START_TEST(test_routes_index)
{
    static const pol v[] = {
        {"read-only", PERMIT, {"documents-read"}, {NULL}, "true", NULL},
        {"write-forbid", FORBID, {"documents-write"}, {NULL}, "true", NULL},
        {"global", PERMIT, {NULL}, {NULL}, "token.sub == 'g'", NULL},
        {"two-routes", PERMIT, {"documents-write", "profiles"}, {NULL}, "token.sub == 'two'", NULL},
        {"same-route-twice", PERMIT, {"profiles", "profiles"}, {NULL}, "token.sub == 'twice'", NULL},
    };
    fx_policy_set *s = build(v, N_(v));
    ck_assert_int_eq(fx_policy_set_route(s, "documents-read", 14), 0);
    ck_assert_int_eq(fx_policy_set_route(s, "documents-write", 15), 1);
    ck_assert_int_eq(fx_policy_set_route(s, "profiles", 8), 2);
    ck_assert_int_eq(fx_policy_set_route(s, "profile", 7), -1);
    ck_assert_int_eq(fx_policy_set_route(s, "profiles-x", 8), 2); /* (name, len) */
    ck_assert_int_eq(fx_policy_set_route(s, "public", 6), -1);
    ck_assert_int_eq(fx_policy_set_route(s, "", 0), -1);
    fx_authz_doc *g = parse_doc("{\"sub\": \"g\"}");
    fx_authz_doc *two = parse_doc("{\"sub\": \"two\"}");
    fx_authz_doc *twice = parse_doc("{\"sub\": \"twice\"}");
    fx_authz_decision d;

    /* documents-read: its own policy and the global one */
    fx_authz_request r = request_on(s, "documents-read", "GET", NULL);
    fx_policy_eval(s, &r, &d);
    uint32_t m0[] = {0};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m0, 1);
    r.token = g;
    fx_policy_eval(s, &r, &d);
    uint32_t m02[] = {0, 2};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m02, 2);
    /* documents-write: the forbid of that route; the read permit never applies here */
    r = request_on(s, "documents-write", "GET", two);
    fx_policy_eval(s, &r, &d);
    uint32_t m1[] = {1};
    assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, m1, 1);
    /* profiles: neither read-only nor write-forbid */
    r = request_on(s, "profiles", "GET", NULL);
    fx_policy_eval(s, &r, &d);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    r.token = two;
    fx_policy_eval(s, &r, &d);
    uint32_t m3[] = {3};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m3, 1);
    r.token = twice;
    fx_policy_eval(s, &r, &d);
    uint32_t m4[] = {4};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m4, 1);
    r.token = g;
    fx_policy_eval(s, &r, &d);
    uint32_t m2[] = {2};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m2, 1);
    /* a route the set does not know (-1, or out of range): only global policies */
    static const int unknown[] = {-1, -2, 3, 1000, INT32_MAX};
    for (size_t i = 0; i < N_(unknown); i++) {
        r = request_on(s, NULL, "GET", g);
        r.route_index = unknown[i];
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m2, 1);
        r.token = two;
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    }
    /* the route index decides, not request.route */
    r = request_on(s, "documents-read", "GET", NULL);
    r.route = (fx_authz_str)S("documents-write");
    fx_policy_eval(s, &r, &d);
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m0, 1);
    fx_authz_doc_free(g);
    fx_authz_doc_free(two);
    fx_authz_doc_free(twice);
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_methods_filter)
{
    static const pol v[] = {
        {"reads", PERMIT, {NULL}, {"GET", "HEAD"}, "true", NULL},
        {"no-deletes", FORBID, {"documents-write"}, {"DELETE"}, "true", NULL},
        {"writes", PERMIT, {"documents-write"}, {"PUT", "PATCH", "DELETE"}, "true", NULL},
    };
    fx_policy_set *s = build(v, N_(v));
    fx_authz_decision d;
    static const struct {
        const char *route, *method;
        int allow;
        fx_authz_reason reason;
        uint32_t m;
    } rows[] = {
        {"profiles", "GET", 1, FX_AUTHZ_PERMITTED, 0},
        {"profiles", "HEAD", 1, FX_AUTHZ_PERMITTED, 0},
        {"profiles", "POST", 0, FX_AUTHZ_NO_MATCH, 0},
        {"profiles", "get", 0, FX_AUTHZ_NO_MATCH, 0}, /* methods are case-sensitive tokens */
        {"profiles", "GE", 0, FX_AUTHZ_NO_MATCH, 0},
        {"profiles", "GETS", 0, FX_AUTHZ_NO_MATCH, 0},
        {"profiles", "", 0, FX_AUTHZ_NO_MATCH, 0},
        {"documents-write", "PUT", 1, FX_AUTHZ_PERMITTED, 2},
        {"documents-write", "DELETE", 0, FX_AUTHZ_FORBIDDEN, 1},
        {"documents-write", "GET", 1, FX_AUTHZ_PERMITTED, 0},
        {NULL, "DELETE", 0, FX_AUTHZ_NO_MATCH, 0},
        {NULL, "HEAD", 1, FX_AUTHZ_PERMITTED, 0},
    };
    for (size_t i = 0; i < N_(rows); i++) {
        fx_authz_request r = request_on(s, rows[i].route, rows[i].method, NULL);
        fx_policy_eval(s, &r, &d);
        ck_assert_msg(d.allow == rows[i].allow && d.reason == rows[i].reason,
                      "%s %s: allow %d reason %d", rows[i].route ? rows[i].route : "(none)",
                      rows[i].method, d.allow, d.reason);
        if (d.reason != FX_AUTHZ_NO_MATCH)
            ck_assert_uint_eq(d.matched[0], rows[i].m);
    }
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_matched_file_order_and_count)
{
    /* 40 policies: permits, and forbids that match only a "bad" token, interleaved with
     * route-only ones; matched lists keep file order and nmatched counts them all */
    enum { NP = 40 };
    pol v[NP];
    char ids[NP][16];
    for (int i = 0; i < NP; i++) {
        snprintf(ids[i], sizeof(ids[i]), "p%02d", i);
        v[i] = (pol){ids[i], i % 3 == 2 ? FORBID : PERMIT, {NULL}, {NULL},
                     i % 3 == 2 ? "token.bad == true" : "true", NULL};
        if (i % 5 == 4)
            v[i].routes[0] = "profiles";
    }
    fx_policy_set *s = build(v, NP);
    fx_authz_doc *good = parse_doc("{\"bad\": false}");
    fx_authz_doc *bad = parse_doc("{\"bad\": true}");
    for (int k = 0; k < 2; k++) {
        fx_authz_request r = request_on(s, k ? "profiles" : "documents-read", "GET", good);
        uint32_t want[NP];
        size_t nwant = 0;
        for (int i = 0; i < NP; i++)
            if (i % 3 != 2 && (k || i % 5 != 4))
                want[nwant++] = (uint32_t)i;
        fx_authz_decision d;
        fx_policy_eval(s, &r, &d);
        ck_assert_uint_gt(nwant, FX_AUTHZ_MAX_MATCHED);
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, want, nwant);
        r.token = bad;
        nwant = 0;
        for (int i = 0; i < NP; i++)
            if (i % 3 == 2 && (k || i % 5 != 4))
                want[nwant++] = (uint32_t)i;
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, want, nwant);
    }
    fx_authz_doc_free(good);
    fx_authz_doc_free(bad);
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_matched_exactly_the_limit)
{
    pol v[FX_AUTHZ_MAX_MATCHED + 1];
    char ids[FX_AUTHZ_MAX_MATCHED + 1][16];
    for (int i = 0; i <= FX_AUTHZ_MAX_MATCHED; i++) {
        snprintf(ids[i], sizeof(ids[i]), "p%d", i);
        v[i] = (pol){ids[i], PERMIT, {NULL}, {NULL}, "true", NULL};
    }
    uint32_t want[FX_AUTHZ_MAX_MATCHED + 1];
    for (uint32_t i = 0; i <= FX_AUTHZ_MAX_MATCHED; i++)
        want[i] = i;
    for (size_t n = FX_AUTHZ_MAX_MATCHED; n <= FX_AUTHZ_MAX_MATCHED + 1; n++) {
        fx_policy_set *s = build(v, n);
        fx_authz_request r = request_on(s, "profiles", "GET", NULL);
        fx_authz_decision d;
        fx_policy_eval(s, &r, &d);
        assert_decision(&d, 1, FX_AUTHZ_PERMITTED, want, n);
        fx_policy_set_unref(s);
    }
}
END_TEST

/* ---- building --------------------------------------------------------------------------------- */

START_TEST(test_duplicate_ids)
{
    static const pol v[] = {
        {"a", PERMIT, {NULL}, {NULL}, "true", "one.yaml"},
        {"b", PERMIT, {NULL}, {NULL}, "true", "one.yaml"},
        {"a", FORBID, {NULL}, {NULL}, "true", "two.yaml"},
        {"b", PERMIT, {NULL}, {NULL}, "true", "two.yaml"},
        {"A", PERMIT, {NULL}, {NULL}, "true", "two.yaml"}, /* ids are case-sensitive */
        {"a ", PERMIT, {NULL}, {NULL}, "true", "two.yaml"},
    };
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, v, N_(v), &d, 0), 2);
    ck_assert_uint_eq(d.n, 2);
    ASSERT_DIAG(&d, 0, "two.yaml", POS_LINE(2), ID_COL,
                "duplicate policy id 'a' (first defined at one.yaml:1:3)");
    ASSERT_DIAG(&d, 1, "two.yaml", POS_LINE(3), ID_COL,
                "duplicate policy id 'b' (first defined at one.yaml:11:3)");
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_uint_eq(d.n, 2);
    fx_authz_diags_free(&d);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_ptr_null(d.v);
}
END_TEST

START_TEST(test_many_ids)
{
    /* enough ids to grow the id table several times; every duplicate is still found */
    enum { NP = 3000 };
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    fx_authz_diags d = {0};
    char id[32];
    for (int i = 0; i < NP; i++) {
        snprintf(id, sizeof(id), "policy-%d", i);
        fx_policy_spec sp = {.file = "many.yaml", .pos = {i + 1, 3}, .id = id, .idlen = strlen(id),
                             .id_pos = {i + 1, 7}, .effect = PERMIT, .when = "true", .whenlen = 4};
        ck_assert_int_eq(fx_policy_builder_add(b, &sp, &d), 0);
    }
    for (int i = 0; i < NP; i += 499) {
        snprintf(id, sizeof(id), "policy-%d", i);
        fx_policy_spec sp = {.file = "dup.yaml", .pos = {1, 3}, .id = id, .idlen = strlen(id),
                             .id_pos = {1, 7}, .effect = PERMIT, .when = "true", .whenlen = 4};
        ck_assert_int_eq(fx_policy_builder_add(b, &sp, &d), -1);
        char want[96];
        snprintf(want, sizeof(want), "first defined at many.yaml:%d:3", i + 1);
        ck_assert_ptr_nonnull(strstr(d.v[d.n - 1].msg, want));
    }
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);
}
END_TEST

START_TEST(test_unknown_route)
{
    static const pol v[] = {
        {"typo", PERMIT, {"profiles", "documents-reed"}, {NULL}, "true", NULL},
        {"far", PERMIT, {"billing"}, {NULL}, "true", NULL},
        {"case", PERMIT, {"Profiles"}, {NULL}, "true", NULL},
        {"good", PERMIT, {"documents-write"}, {NULL}, "true", NULL},
    };
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, v, N_(v), &d, 0), 3);
    ck_assert_uint_eq(d.n, 3);
    ASSERT_DIAG(&d, 0, "test.yaml", POS_LINE(0) + 1, ROUTE_COL(1),
                "policy 'typo': no route is named 'documents-reed' (did you mean 'documents-read'?)");
    ASSERT_DIAG(&d, 1, "test.yaml", POS_LINE(1) + 1, ROUTE_COL(0),
                "policy 'far': no route is named 'billing'");
    ck_assert_ptr_null(strstr(d.v[1].msg, "did you mean"));
    ASSERT_DIAG(&d, 2, "test.yaml", POS_LINE(2) + 1, ROUTE_COL(0),
                "no route is named 'Profiles' (did you mean 'profiles'?)");
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);

    /* a builder that knows no routes at all (a non-NULL, empty list) */
    static const char *const none[] = {NULL};
    b = fx_policy_builder_new(none, 0);
    ck_assert_int_eq(add_all(b, v + 3, 1, &d, 0), 1);
    ASSERT_DIAG(&d, 0, "test.yaml", POS_LINE(0) + 1, ROUTE_COL(0),
                "policy 'good': no route is named 'documents-write'");
    ck_assert_ptr_null(strstr(d.v[0].msg, "did you mean"));
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);
}
END_TEST

START_TEST(test_routes_are_copied)
{
    char names[2][16] = {"alpha", "beta"};
    const char *const list[] = {names[0], names[1]};
    fx_policy_builder *b = fx_policy_builder_new(list, 2);
    memset(names, 'z', sizeof(names));
    static const pol v[] = {{"p", PERMIT, {"beta"}, {NULL}, "true", NULL}};
    fx_authz_diags d = {0};
    ck_assert_int_eq(add_all(b, v, 1, &d, 0), 0);
    fx_policy_set *s = fx_policy_builder_finish(b, &d);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(fx_policy_set_route(s, "alpha", 5), 0);
    ck_assert_int_eq(fx_policy_set_route(s, "beta", 4), 1);
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_any_route)
{
    /* routes == NULL: every name is accepted; the set knows the names its policies use */
    static const pol v[] = {
        {"a", PERMIT, {"svc-a"}, {NULL}, "true", NULL},
        {"b", FORBID, {"svc-b", "svc-a"}, {NULL}, "token.x == 1", NULL},
        {"g", PERMIT, {NULL}, {NULL}, "token.g == true", NULL},
        {"a2", PERMIT, {"svc-a"}, {NULL}, "token.y == 1", NULL},
    };
    fx_authz_diags d = {0};
    fx_policy_set *s = build_with(NULL, 0, v, N_(v), &d);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(d.n, 0);
    int ra = fx_policy_set_route(s, "svc-a", 5), rb = fx_policy_set_route(s, "svc-b", 5);
    ck_assert_int_ge(ra, 0);
    ck_assert_int_ge(rb, 0);
    ck_assert_int_ne(ra, rb);
    ck_assert_int_eq(fx_policy_set_route(s, "svc-c", 5), -1);
    fx_authz_doc *x = parse_doc("{\"x\": 1, \"g\": true, \"y\": 1}");
    fx_authz_doc *g = parse_doc("{\"g\": true}");
    fx_authz_decision dec;
    fx_authz_request r = request_on(s, "svc-a", "GET", g);
    fx_policy_eval(s, &r, &dec);
    uint32_t m02[] = {0, 2};
    assert_decision(&dec, 1, FX_AUTHZ_PERMITTED, m02, 2);
    r.token = x;
    fx_policy_eval(s, &r, &dec);
    uint32_t m1[] = {1};
    assert_decision(&dec, 0, FX_AUTHZ_FORBIDDEN, m1, 1);
    r = request_on(s, "svc-b", "GET", g);
    fx_policy_eval(s, &r, &dec);
    uint32_t m2[] = {2};
    assert_decision(&dec, 1, FX_AUTHZ_PERMITTED, m2, 1);
    r = request_on(s, "svc-c", "GET", g); /* unknown: -1, global only */
    ck_assert_int_eq(r.route_index, -1);
    fx_policy_eval(s, &r, &dec);
    assert_decision(&dec, 1, FX_AUTHZ_PERMITTED, m2, 1);
    fx_authz_doc_free(x);
    fx_authz_doc_free(g);
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_when_errors_mapped)
{
    static const pol v[] = {
        {"ok", PERMIT, {NULL}, {NULL}, "true", NULL},
        {"eq", PERMIT, {NULL}, {NULL}, "token.sub = 'x'", NULL},
        {"typo", PERMIT, {NULL}, {NULL}, "tokn.sub == 'x'", NULL},
        {"deep", PERMIT, {NULL}, {NULL}, "true && 1", NULL},
        {"empty", PERMIT, {NULL}, {NULL}, "", NULL},
    };
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(routes3, 3);
    map_calls = 0;
    ck_assert_int_eq(add_all(b, v, N_(v), &d, 1), 4);
    ck_assert_int_eq(map_calls, 4); /* only for errors */
    ck_assert_uint_eq(d.n, 4);
    ASSERT_DIAG(&d, 0, "test.yaml", 1001, 11 + 10, "policy 'eq': when: '=' is not an operator");
    ASSERT_DIAG(&d, 1, "test.yaml", 1002, 11 + 0,
                "policy 'typo': when: unknown name 'tokn' (did you mean 'token'?)");
    ASSERT_DIAG(&d, 2, "test.yaml", 1003, 11 + 8, "policy 'deep': when: '&&' needs booleans");
    ASSERT_DIAG(&d, 3, "test.yaml", 1004, 11 + 0, "policy 'empty': when: empty expression");
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);

    /* without a when_map: the scalar's own position */
    b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, v + 1, 1, &d, 0), 1);
    ASSERT_DIAG(&d, 0, "test.yaml", POS_LINE(0) + 3, WHEN_COL, "policy 'eq': when: '='");
    fx_policy_builder_free(b);
    fx_authz_diags_free(&d);
}
END_TEST

START_TEST(test_all_or_nothing)
{
    static const pol v[] = {
        {"first", PERMIT, {NULL}, {NULL}, "true", NULL},
        {"broken", PERMIT, {NULL}, {NULL}, "token.sub ==", NULL},
        {"last", PERMIT, {NULL}, {NULL}, "true", NULL},
    };
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, v, N_(v), &d, 0), 1);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_uint_eq(d.n, 1);
    fx_authz_diags_free(&d);

    /* several errors in one policy: all reported */
    static const pol worse[] = {
        {"first", PERMIT, {NULL}, {NULL}, "true", NULL},
        {"first", PERMIT, {"nope", "profiles", "nope2"}, {NULL}, "==", NULL},
    };
    b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, worse, N_(worse), &d, 0), 1);
    ck_assert_uint_eq(d.n, 4);
    ck_assert_ptr_nonnull(strstr(d.v[0].msg, "duplicate policy id 'first'"));
    ck_assert_ptr_nonnull(strstr(d.v[1].msg, "no route is named 'nope'"));
    ck_assert_ptr_nonnull(strstr(d.v[2].msg, "no route is named 'nope2'"));
    ck_assert_ptr_nonnull(strstr(d.v[3].msg, "when:"));
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);

    /* a reader's own error fails the builder with nothing added here */
    b = fx_policy_builder_new(routes3, 3);
    ck_assert_int_eq(add_all(b, v, 1, &d, 0), 0);
    fx_policy_builder_fail(b);
    ck_assert_int_eq(add_all(b, v + 2, 1, &d, 0), 0);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_uint_eq(d.n, 0);

    /* a builder freed without finishing; finish(NULL) */
    b = fx_policy_builder_new(routes3, 3);
    add_all(b, v, 1, &d, 0);
    fx_policy_builder_free(b);
    fx_policy_builder_free(NULL);
    ck_assert_ptr_null(fx_policy_builder_finish(NULL, &d));
}
END_TEST

START_TEST(test_policy_limit)
{
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    fx_authz_diags d = {0};
    char id[32];
    for (int i = 0; i < FX_POLICY_MAX_POLICIES; i++) {
        int n = snprintf(id, sizeof(id), "p%d", i);
        fx_policy_spec sp = {.file = "big.yaml", .pos = {i + 1, 3}, .id = id, .idlen = (size_t)n,
                             .id_pos = {i + 1, 7}, .effect = PERMIT, .when = "true", .whenlen = 4};
        if (fx_policy_builder_add(b, &sp, &d) != 0)
            ck_abort_msg("policy %d refused: %s", i, d.n ? d.v[0].msg : "?");
    }
    fx_policy_spec sp = {.file = "big.yaml", .pos = {7, 9}, .id = "one-more", .idlen = 8,
                         .id_pos = {7, 13}, .effect = PERMIT, .when = "true", .whenlen = 4};
    ck_assert_int_eq(fx_policy_builder_add(b, &sp, &d), -1);
    ASSERT_DIAG(&d, 0, "big.yaml", 7, 9, "more than 100000 policies in one set");
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);
}
END_TEST

START_TEST(test_refcount)
{
    static const pol v[] = {{"p", PERMIT, {NULL}, {NULL}, "true", NULL}};
    fx_policy_set *s = build(v, 1);
    ck_assert_ptr_eq(fx_policy_set_ref(s), s);
    ck_assert_ptr_eq(fx_policy_set_ref(s), s);
    fx_policy_set_unref(s);
    fx_policy_set_unref(s);
    /* still alive: one reference left */
    fx_authz_request r = request_on(s, "profiles", "GET", NULL);
    fx_authz_decision d;
    fx_policy_eval(s, &r, &d);
    ck_assert_int_eq(d.allow, 1);
    ck_assert_str_eq(fx_policy_id(s, 0), "p");
    fx_policy_set_unref(s); /* freed (ASan reports a leak or a use after free otherwise) */
    ck_assert_ptr_null(fx_policy_set_ref(NULL));
    fx_policy_set_unref(NULL);
    ck_assert_uint_eq(fx_policy_set_count(NULL), 0);
    ck_assert_uint_eq(fx_policy_set_needs(NULL), 0);
}
END_TEST

/* ---- documents ------------------------------------------------------------------------------ */

static char *nested(size_t levels, const char *open, const char *inner, const char *close)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc(levels * (lo + lc) + li + 1);
    ck_assert_ptr_nonnull(s);
    size_t o = 0;
    for (size_t i = 0; i < levels; i++, o += lo)
        memcpy(s + o, open, lo);
    memcpy(s + o, inner, li);
    o += li;
    for (size_t i = 0; i < levels; i++, o += lc)
        memcpy(s + o, close, lc);
    s[o] = '\0';
    return s;
}

START_TEST(test_doc_parse)
{
    char err[256];
    static const struct {
        const char *json;
        const char *fragment;
    } bad[] = {
        {"", "invalid JSON at line"},
        {"{", "invalid JSON at line 1"},
        {"{\"a\": }", "invalid JSON at line 1 column"},
        {"{\"a\": 1,}", "invalid JSON"},
        {"{\"a\": 1}\n{\"b\": 2}", "invalid JSON at line 2"},
        {"{\"a\": 1, \"a\": 2}", "invalid JSON"}, /* duplicate member */
        {"{\"a\": \"\\u0000\"}", "invalid JSON"},  /* a NUL inside a string */
        {"{'a': 1}", "invalid JSON"},
        {"{\"a\": NaN}", "invalid JSON"},
        {"\xff", "invalid JSON"},
    };
    for (size_t i = 0; i < N_(bad); i++) {
        err[0] = '\0';
        ck_assert_ptr_null(fx_authz_doc_parse(bad[i].json, strlen(bad[i].json), err, sizeof(err)));
        ck_assert_msg(strstr(err, bad[i].fragment) != NULL, "'%s': '%s'", bad[i].json, err);
    }
    /* JSON values that are not objects are documents too */
    static const char *const good[] = {"{}", "[]", "1", "\"x\"", "null", " {\"a\": [1, {\"b\": null}]} "};
    for (size_t i = 0; i < N_(good); i++) {
        fx_authz_doc *doc = fx_authz_doc_parse(good[i], strlen(good[i]), err, sizeof(err));
        ck_assert_msg(doc != NULL, "'%s': %s", good[i], err);
        fx_authz_doc_free(doc);
    }
    fx_authz_doc_free(NULL);
    /* len is honoured: the bytes after it are not read */
    fx_authz_doc *doc = fx_authz_doc_parse("{}garbage", 2, err, sizeof(err));
    ck_assert_ptr_nonnull(doc);
    fx_authz_doc_free(doc);
    /* a short error buffer is truncated, not overrun */
    char small[8];
    memset(small, 'x', sizeof(small));
    ck_assert_ptr_null(fx_authz_doc_parse("{", 1, small, sizeof(small)));
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

START_TEST(test_doc_size_limit)
{
    char err[256];
    size_t mib = (size_t)1 << 20;
    char *big = malloc(mib + 2);
    ck_assert_ptr_nonnull(big);
    /* exactly 1 MiB: a string of 1 MiB - 2 bytes in quotes */
    big[0] = '"';
    memset(big + 1, 'a', mib - 2);
    big[mib - 1] = '"';
    fx_authz_doc *doc = fx_authz_doc_parse(big, mib, err, sizeof(err));
    ck_assert_msg(doc != NULL, "1 MiB: %s", err);
    fx_authz_doc_free(doc);
    /* one byte more */
    big[mib - 1] = 'a';
    big[mib] = '"';
    ck_assert_ptr_null(fx_authz_doc_parse(big, mib + 1, err, sizeof(err)));
    ck_assert_str_eq(err, "JSON document is larger than 1 MiB");
    /* the size is checked first: even trailing spaces do not count as free */
    memset(big, ' ', mib + 1);
    big[0] = '1';
    ck_assert_ptr_null(fx_authz_doc_parse(big, mib + 1, err, sizeof(err)));
    ck_assert_str_eq(err, "JSON document is larger than 1 MiB");
    free(big);
}
END_TEST

START_TEST(test_doc_nesting_limit)
{
    char err[256];
    static const char *const open[] = {"[", "{\"a\":"};
    static const char *const close[] = {"]", "}"};
    for (int k = 0; k < 2; k++) {
        char *s = nested(64, open[k], "1", close[k]);
        fx_authz_doc *doc = fx_authz_doc_parse(s, strlen(s), err, sizeof(err));
        ck_assert_msg(doc != NULL, "64 levels of %s: %s", open[k], err);
        fx_authz_doc_free(doc);
        free(s);
        s = nested(64, open[k], k ? "{}" : "[]", close[k]); /* 65 containers */
        ck_assert_ptr_null(fx_authz_doc_parse(s, strlen(s), err, sizeof(err)));
        ck_assert_str_eq(err, "JSON document nests deeper than 64 levels");
        free(s);
        s = nested(1000, open[k], "1", close[k]);
        ck_assert_ptr_null(fx_authz_doc_parse(s, strlen(s), err, sizeof(err)));
        free(s);
    }
    /* depth is the deepest branch, not the sum */
    char *deep = nested(63, "[", "1", "]");
    size_t n = strlen(deep);
    char *wide = malloc(2 * n + 8);
    snprintf(wide, 2 * n + 8, "[%s,%s]", deep, deep);
    fx_authz_doc *doc = fx_authz_doc_parse(wide, strlen(wide), err, sizeof(err));
    ck_assert_msg(doc != NULL, "%s", err);
    fx_authz_doc_free(doc);
    free(deep);
    free(wide);
}
END_TEST

/* ---- explain ---------------------------------------------------------------------------------- */

START_TEST(test_explain_outcomes)
{
    static const pol v[] = {
        {"read-route", PERMIT, {"documents-read"}, {NULL}, "true", NULL},
        {"writes-only", PERMIT, {NULL}, {"PUT", "DELETE"}, "true", NULL},
        {"owner", PERMIT, {"documents-write", "profiles"}, {NULL},
         "has(token.sub) && token.sub == request.params.id && token.level > 2", NULL},
        {"suspended", FORBID, {NULL}, {NULL}, "token.status == 'suspended'", NULL},
        {"anyone", PERMIT, {NULL}, {NULL}, "true", NULL},
        {"role", PERMIT, {NULL}, {NULL}, "'admin' in token.roles || token.level > 9", NULL},
    };
    fx_policy_set *s = build(v, N_(v));
    fx_authz_doc *tok = parse_doc("{\"sub\": \"42\", \"level\": 1}");
    static const fx_authz_kv params[] = {{S("id"), S("42")}};
    fx_authz_request r = request_on(s, "profiles", "GET", tok);
    r.params = params;
    r.nparams = 1;
    items it = {.n = 0};
    fx_authz_decision d, de;
    fx_policy_explain(s, &r, &d, on_item, &it);
    fx_policy_eval(s, &r, &de);
    ck_assert_int_eq(d.allow, de.allow);
    ck_assert_int_eq(d.reason, de.reason);
    ck_assert_uint_eq(d.nmatched, de.nmatched);
    uint32_t m4[] = {4};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m4, 1);
    ck_assert_uint_eq(it.n, N_(v)); /* every policy, in file order */
    for (uint32_t i = 0; i < it.n; i++)
        ck_assert_uint_eq(it.v[i].policy, i);
    ck_assert_int_eq(it.v[0].outcome, FX_POLICY_NOT_FOR_ROUTE);
    ck_assert_int_eq(it.v[1].outcome, FX_POLICY_NOT_FOR_METHOD);
    ck_assert_int_eq(it.v[2].outcome, FX_POLICY_WHEN_FALSE);
    ck_assert_msg(str_is(it.v[2].why, "token.level > 2"), "why: '%.*s'", (int)it.v[2].why.len,
                  it.v[2].why.p);
    ck_assert(str_is(it.v[2].missing, ""));
    ck_assert_int_eq(it.v[3].outcome, FX_POLICY_WHEN_FALSE);
    ck_assert(str_is(it.v[3].why, "token.status == 'suspended'"));
    ck_assert(str_is(it.v[3].missing, "token.status"));
    ck_assert_int_eq(it.v[4].outcome, FX_POLICY_MATCHED);
    ck_assert(str_is(it.v[4].why, ""));
    ck_assert(str_is(it.v[4].missing, ""));
    ck_assert_int_eq(it.v[5].outcome, FX_POLICY_WHEN_FALSE);
    ck_assert(str_is(it.v[5].why, "'admin' in token.roles || token.level > 9"));
    ck_assert(str_is(it.v[5].missing, "token.roles"));
    for (size_t i = 0; i < 2; i++) {
        ck_assert(str_is(it.v[i].why, ""));
        ck_assert(str_is(it.v[i].missing, ""));
    }

    /* an unknown route: every policy with routes is NOT_FOR_ROUTE; the method is checked
     * after the route */
    it.n = 0;
    r = request_on(s, NULL, "POST", NULL);
    fx_policy_explain(s, &r, &d, on_item, &it);
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m4, 1);
    ck_assert_int_eq(it.v[0].outcome, FX_POLICY_NOT_FOR_ROUTE);
    ck_assert_int_eq(it.v[1].outcome, FX_POLICY_NOT_FOR_METHOD);
    ck_assert_int_eq(it.v[2].outcome, FX_POLICY_NOT_FOR_ROUTE);
    ck_assert_int_eq(it.v[3].outcome, FX_POLICY_WHEN_FALSE);
    ck_assert(str_is(it.v[3].missing, "token.status"));
    ck_assert_int_eq(it.v[4].outcome, FX_POLICY_MATCHED);
    it.n = 0;
    r = request_on(s, "documents-read", "DELETE", NULL);
    fx_policy_explain(s, &r, &d, on_item, &it);
    ck_assert_int_eq(it.v[0].outcome, FX_POLICY_MATCHED);
    ck_assert_int_eq(it.v[1].outcome, FX_POLICY_MATCHED);
    uint32_t m014[] = {0, 1, 4};
    assert_decision(&d, 1, FX_AUTHZ_PERMITTED, m014, 3);

    /* forbidden: the forbid is MATCHED, and the permits that matched are reported as
     * MATCHED too (the decision lists only the forbid) */
    fx_authz_doc *sus = parse_doc("{\"status\": \"suspended\"}");
    it.n = 0;
    r = request_on(s, "profiles", "GET", sus);
    fx_policy_explain(s, &r, &d, on_item, &it);
    uint32_t m3[] = {3};
    assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, m3, 1);
    ck_assert_int_eq(it.v[3].outcome, FX_POLICY_MATCHED);
    ck_assert_int_eq(it.v[4].outcome, FX_POLICY_MATCHED);
    ck_assert_int_eq(it.v[2].outcome, FX_POLICY_WHEN_FALSE);
    ck_assert(str_is(it.v[2].why, "has(token.sub)"));
    ck_assert(str_is(it.v[2].missing, "token.sub"));

    /* no callback: the decision only; no set: deny */
    fx_policy_explain(s, &r, &d, NULL, NULL);
    assert_decision(&d, 0, FX_AUTHZ_FORBIDDEN, m3, 1);
    it.n = 0;
    fx_policy_explain(NULL, &r, &d, on_item, &it);
    assert_decision(&d, 0, FX_AUTHZ_NO_MATCH, NULL, 0);
    ck_assert_uint_eq(it.n, 0);
    fx_authz_doc_free(sus);
    fx_authz_doc_free(tok);
    fx_policy_set_unref(s);
}
END_TEST

/* ---- accessors -------------------------------------------------------------------------------- */

START_TEST(test_accessors)
{
    static const pol v[] = {
        {"h", PERMIT, {NULL}, {NULL}, "request.headers['x'] == 'y'", "a.yaml"},
        {"q", FORBID, {"profiles"}, {NULL}, "has(request.query.q)", "b.yaml"},
        {"plain", PERMIT, {NULL}, {"GET"}, "request.method == 'GET' && request.path == '/'", NULL},
    };
    fx_policy_set *s = build(v, N_(v));
    ck_assert_uint_eq(fx_policy_set_count(s), 3);
    ck_assert_uint_eq(fx_policy_set_needs(s), FX_AUTHZ_NEEDS_HEADERS | FX_AUTHZ_NEEDS_QUERY);
    ck_assert_str_eq(fx_policy_id(s, 0), "h");
    ck_assert_str_eq(fx_policy_id(s, 2), "plain");
    ck_assert_ptr_null(fx_policy_id(s, 3));
    ck_assert_int_eq(fx_policy_effect_of(s, 0), PERMIT);
    ck_assert_int_eq(fx_policy_effect_of(s, 1), FORBID);
    int line = 0, col = 0;
    ck_assert_str_eq(fx_policy_file(s, 1, &line, &col), "b.yaml");
    ck_assert_int_eq(line, POS_LINE(1));
    ck_assert_int_eq(col, 3);
    ck_assert_str_eq(fx_policy_file(s, 2, &line, &col), "test.yaml");
    ck_assert_ptr_null(fx_policy_file(s, 3, &line, &col));
    fx_policy_set_unref(s);

    static const pol w[] = {
        {"t", PERMIT, {NULL}, {NULL}, "has(token)", NULL},
        {"c", PERMIT, {NULL}, {NULL}, "'x' in context", NULL},
        {"p", PERMIT, {NULL}, {NULL}, "request.params.id == '1'", NULL},
    };
    s = build(w, N_(w));
    ck_assert_uint_eq(fx_policy_set_needs(s),
                      FX_AUTHZ_NEEDS_TOKEN | FX_AUTHZ_NEEDS_CONTEXT | FX_AUTHZ_NEEDS_PARAMS);
    fx_policy_set_unref(s);
    s = build(NULL, 0);
    ck_assert_uint_eq(fx_policy_set_needs(s), 0);
    fx_policy_set_unref(s);
}
END_TEST

START_TEST(test_diags)
{
    fx_authz_diags d = {0};
    for (int i = 0; i < 20; i++)
        fx_authz_diag_add(&d, i % 2 ? "f.yaml" : NULL, i, i + 1, "message %d", i);
    fx_authz_diag_add(NULL, "x", 1, 1, "ignored");
    ck_assert_uint_eq(d.n, 20);
    ck_assert_str_eq(d.v[0].file, "<input>");
    ck_assert_str_eq(d.v[19].file, "f.yaml");
    ck_assert_str_eq(d.v[19].msg, "message 19");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fx_authz_diags_print(&d, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "<input>:0:1: error: message 0\nf.yaml:1:2: error: message 1\n"));
    free(buf);
    fx_authz_diags_free(&d);
    fx_authz_diags_free(&d);
}
END_TEST

/* ---- no allocation, threads --------------------------------------------------------------------- */

static const pol busy[] = {
    {"documents-read", PERMIT, {"documents-read"}, {NULL}, "'documents:read' in token.scope", NULL},
    {"owner-or-admin-writes", PERMIT, {"documents-write"}, {NULL},
     "token.sub == request.params.id || 'admin' in token.roles", NULL},
    {"suspended", FORBID, {NULL}, {NULL}, "token.status == 'suspended'", NULL},
    {"headers", PERMIT, {"profiles"}, {"GET"}, "lower(request.headers['X-Tenant']) == context.tenant", NULL},
    {"many", PERMIT, {NULL}, {NULL}, "size(token.roles) > 3 && token.roles[0].startsWith('a') && request.method == 'PUT'", NULL},
};

static fx_authz_doc *busy_token, *busy_context;
static const fx_authz_kv busy_params[] = {{S("id"), S("42")}};
static const fx_authz_kv busy_headers[] = {{S("x-tenant"), S("ACME")}};

static fx_authz_request busy_request(const fx_policy_set *s, int k)
{
    static const char *const routes[] = {"documents-read", "documents-write", "profiles", NULL};
    fx_authz_request r = request_on(s, routes[k % 4], k % 3 ? "GET" : "PUT", busy_token);
    r.params = busy_params;
    r.nparams = 1;
    r.headers = busy_headers;
    r.nheaders = 1;
    r.context = k % 5 ? busy_context : NULL;
    return r;
}

#include "alloc_hooks.h"

#ifdef HAVE_ALLOC_HOOKS
START_TEST(test_eval_does_not_allocate)
{
    alloc_hooks_install();
    fx_policy_set *s = build(busy, N_(busy));
    for (int k = 0; k < 40; k++) {
        fx_authz_request r = busy_request(s, k);
        fx_authz_decision d;
        alloc_counting = 1;
        fx_policy_eval(s, &r, &d);
        alloc_counting = 0;
        ck_assert_msg(alloc_count == 0, "request %d: %zu allocations", k, (size_t)alloc_count);
    }
    fx_policy_set_unref(s);
}
END_TEST
#endif

typedef struct worker {
    fx_policy_set *s;
    int mismatches;
    fx_authz_decision want[12];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    fx_policy_set *s = w->s; /* this thread's own reference */
    for (int i = 0; i < 20000; i++) {
        fx_authz_request r = busy_request(s, i % 12);
        fx_authz_decision d;
        fx_policy_eval(s, &r, &d);
        const fx_authz_decision *x = &w->want[i % 12];
        if (d.allow != x->allow || d.reason != x->reason || d.nmatched != x->nmatched)
            w->mismatches++;
    }
    fx_policy_set_unref(s);
    return NULL;
}

START_TEST(test_threads)
{
    /* one set, four threads, each with its own reference; the last unref frees it */
    fx_policy_set *s = build(busy, N_(busy));
    worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i].s = fx_policy_set_ref(s);
        w[i].mismatches = 0;
        for (int k = 0; k < 12; k++) {
            fx_authz_request r = busy_request(s, k);
            fx_policy_eval(s, &r, &w[i].want[k]);
        }
    }
    int allowed = 0;
    for (int k = 0; k < 12; k++)
        allowed += w[0].want[k].allow;
    ck_assert_int_gt(allowed, 0);
    ck_assert_int_lt(allowed, 12);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    fx_policy_set_unref(s);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].mismatches, 0);
    }
}
END_TEST

/* ---- the suite ------------------------------------------------------------------------------------ */

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("decide");
    tcase_add_test(tc, test_default_deny);
    tcase_add_test(tc, test_forbid_overrides_permit);
    tcase_add_test(tc, test_routes_index);
    tcase_add_test(tc, test_methods_filter);
    tcase_add_test(tc, test_matched_file_order_and_count);
    tcase_add_test(tc, test_matched_exactly_the_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("build");
    tcase_set_timeout(tc, 120); /* 100,000 policies under ASan */
    tcase_add_test(tc, test_duplicate_ids);
    tcase_add_test(tc, test_many_ids);
    tcase_add_test(tc, test_unknown_route);
    tcase_add_test(tc, test_routes_are_copied);
    tcase_add_test(tc, test_any_route);
    tcase_add_test(tc, test_when_errors_mapped);
    tcase_add_test(tc, test_all_or_nothing);
    tcase_add_test(tc, test_policy_limit);
    tcase_add_test(tc, test_refcount);
    suite_add_tcase(s, tc);
    tc = tcase_create("documents");
    tcase_add_test(tc, test_doc_parse);
    tcase_add_test(tc, test_doc_size_limit);
    tcase_add_test(tc, test_doc_nesting_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("explain");
    tcase_add_test(tc, test_explain_outcomes);
    tcase_add_test(tc, test_accessors);
    tcase_add_test(tc, test_diags);
    suite_add_tcase(s, tc);
    tc = tcase_create("runtime");
#ifdef HAVE_ALLOC_HOOKS
    tcase_add_test(tc, test_eval_does_not_allocate);
#endif
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

static void fixtures(void)
{
    char err[256];
    static const char tok[] = "{\"sub\": \"42\", \"scope\": \"documents:read\","
                              " \"roles\": [\"a1\", \"b\", \"c\", \"d\"], \"status\": \"active\"}";
    static const char ctx[] = "{\"tenant\": \"acme\"}";
    busy_token = fx_authz_doc_parse(tok, strlen(tok), err, sizeof(err));
    busy_context = fx_authz_doc_parse(ctx, strlen(ctx), err, sizeof(err));
    if (!busy_token || !busy_context)
        abort();
}

int main(void)
{
    fixtures();
    SRunner *sr = srunner_create(policy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fx_authz_doc_free(busy_token);
    fx_authz_doc_free(busy_context);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * fuzz_expr.c — libFuzzer harness for the policy expression language
 * (authz/expr.c): the input is one expression, as a `when` of a policy file.
 *
 *   compile     fx_expr_compile(); a refusal must have a message and an
 *               offset inside the input
 *   evaluate    an expression that compiles is evaluated and explained
 *               against three fixed requests (built once): a full one with
 *               a token and a context, an anonymous one, and an all-zero
 *               one. eval and explain must agree, and what explain quotes
 *               (why, missing) must be bytes of the input
 *   negate      "!(" input ")", when it compiles, must be the opposite
 *
 * Everything compiled is freed on every run, so leaks show up under ASan.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   build-fuzz/tests/fuzz/fuzz_expr -max_len=4200 tests/data/expr
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S(x) {x, sizeof(x) - 1}

static const char token_json[] =
    "{\"sub\": \"42\", \"roles\": [\"editor\", \"Admin\"], \"scope\": \"documents:read profile\","
    " \"status\": \"active\", \"age\": 30, \"ratio\": 0.5, \"flag\": true, \"nothing\": null,"
    " \"email\": \"Ann@Example.COM\", \"name\": \"Zo\\u00eb\", \"idx\": 1, \"key\": \"sub\","
    " \"org\": {\"id\": \"acme\", \"tier\": 2, \"tags\": [\"a\", \"b\"], \"meta\": {\"x\": [1, [2, [3]]]}},"
    " \"mixed\": [1, \"1\", true, null, [1, 2], {\"a\": 1}, 2.5, -7]}";
static const char context_json[] =
    "{\"ip\": \"10.1.2.3\", \"tenant\": \"acme\", \"limits\": {\"max\": 10}, \"groups\": [\"g1\"]}";

static const fx_authz_kv params[] = {{S("id"), S("42")}, {S("doc"), S("Report")}};
static const fx_authz_kv headers[] = {
    {S("Authorization"), S("Bearer abc.def")},
    {S("X-Api-Key"), S("k1")},
    {S("x-api-key"), S("k2")},
    {S("X-Tenant"), S("ACME")},
};
static const fx_authz_kv query[] = {{S("q"), S("hello world")}, {S("page"), S("2")}, {S("Flag"), S("")}};

static fx_authz_request reqs[3];

static void init(void)
{
    char err[256];
    fx_authz_doc *tok = fx_authz_doc_parse(token_json, strlen(token_json), err, sizeof(err));
    fx_authz_doc *ctx = fx_authz_doc_parse(context_json, strlen(context_json), err, sizeof(err));
    if (!tok || !ctx) {
        fprintf(stderr, "fuzz_expr: fixture: %s\n", err);
        abort();
    }
    reqs[0] = (fx_authz_request){
        .method = S("PUT"), .path = S("/api/documents/42"), .route = S("documents-write"),
        .route_index = 1,
        .params = params, .nparams = sizeof(params) / sizeof(params[0]),
        .headers = headers, .nheaders = sizeof(headers) / sizeof(headers[0]),
        .query = query, .nquery = sizeof(query) / sizeof(query[0]),
        .token = tok, .context = ctx,
    };
    reqs[1] = (fx_authz_request){.method = S("GET"), .path = S("/public/x"), .route = S("public"),
                                 .route_index = -1};
    memset(&reqs[2], 0, sizeof(reqs[2]));
}

/* A quote of explain's must be a slice of the expression (the expression keeps its own copy
 * of the source, so compare bytes, not pointers). */
static void check_quote(const fx_authz_str *q, const uint8_t *data, size_t size, const char *what)
{
    if (!q->p)
        abort();
    if (q->len == 0)
        return;
    if (q->len > size || !memmem(data, size, q->p, q->len)) {
        fprintf(stderr, "fuzz_expr: %s '%.*s' is not part of the expression\n", what,
                (int)(q->len > 200 ? 200 : q->len), q->p);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reqs[0].token)
        init();
    fx_expr_error err;
    fx_expr *e = fx_expr_compile((const char *)data, size, &err);
    if (!e) {
        if (!memchr(err.msg, '\0', sizeof(err.msg)) || !err.msg[0] ||
            err.offset > (size > FX_POLICY_MAX_EXPR_BYTES ? FX_POLICY_MAX_EXPR_BYTES : size)) {
            fprintf(stderr, "fuzz_expr: bad error: offset %zu of %zu: %.256s\n", err.offset, size,
                    err.msg);
            abort();
        }
        return 0;
    }
    int v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = fx_expr_eval(e, &reqs[i]);
        fx_authz_str why = {NULL, 0}, missing = {NULL, 0};
        int ve = fx_expr_explain(e, &reqs[i], &why, &missing);
        if ((v[i] != 0 && v[i] != 1) || ve != v[i]) {
            fprintf(stderr, "fuzz_expr: request %d: eval %d, explain %d\n", i, v[i], ve);
            abort();
        }
        check_quote(&why, data, size, "why");
        check_quote(&missing, data, size, "missing");
    }
    unsigned needs = fx_expr_needs(e);
    if (needs & ~0x1fu)
        abort();
    fx_expr_free(e);

    /* !( input ) */
    char *neg = malloc(size + 4);
    if (!neg)
        return 0;
    memcpy(neg, "!(", 2);
    memcpy(neg + 2, data, size);
    neg[size + 2] = ')';
    fx_expr *n = fx_expr_compile(neg, size + 3, &err);
    if (n) {
        for (int i = 0; i < 3; i++) {
            int nv = fx_expr_eval(n, &reqs[i]);
            if (nv == v[i]) {
                fprintf(stderr, "fuzz_expr: request %d: e is %d and !(e) is %d\n", i, v[i], nv);
                abort();
            }
        }
        fx_expr_free(n);
    }
    free(neg);
    return 0;
}

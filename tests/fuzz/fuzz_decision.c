/*
 * fuzz_decision.c — libFuzzer harness for the decision API's input
 * (authz/check.c, fx_authz_checks_parse) and what the gateway does with a
 * parsed check: the request view is built from it and decided and
 * explained against a fixed policy set, with the check's own context and
 * (allow_claims) token object as documents the policies walk.
 *
 * The first byte picks allow_claims (0: the decision API, 1: `ficus policy
 * eval`); the rest is the JSON body. Everything is freed on every run.
 *
 *   build-fuzz/tests/fuzz/fuzz_decision -max_len=65536 tests/data/decision
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ficus_authz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char policies[] =
    "policies:\n"
    "  - id: read\n"
    "    effect: permit\n"
    "    methods: [GET, HEAD]\n"
    "    when: \"'documents:read' in token.scope || 'admin' in token.roles\"\n"
    "  - id: owner\n"
    "    effect: permit\n"
    "    routes: [documents]\n"
    "    when: \"token.sub == request.params.id && request.headers['x-tenant'] == context.tenant\"\n"
    "  - id: suspended\n"
    "    effect: forbid\n"
    "    when: \"token.status == 'suspended' || size(request.path) > 200 || request.query.debug == '1'\"\n"
    "  - id: deep\n"
    "    effect: permit\n"
    "    when: \"context.a.b[0].c.lower().startsWith('x') && token['org']['id'] >= 7\"\n";

static fx_policy_set *set;

static void init(void)
{
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    if (!b || fx_policy_builder_add_buffer(b, "fuzz.yaml", policies, sizeof(policies) - 1, &d) < 0 ||
        !(set = fx_policy_builder_finish(b, &d))) {
        fx_authz_diags_print(&d, stderr);
        abort();
    }
    fx_authz_diags_free(&d);
}

static void on_item(void *arg, const fx_policy_explain_item *it)
{
    size_t *n = arg;
    *n += it->why.len + it->missing.len + it->outcome;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!set)
        init();
    if (size < 1)
        return 0;
    fx_authz_checks checks;
    char err[300];
    if (fx_authz_checks_parse((const char *)data + 1, size - 1, data[0] & 1, &checks, err, sizeof(err)) < 0) {
        if (!err[0])
            abort(); /* every refusal says why */
        return 0;
    }
    for (size_t i = 0; i < checks.n; i++) {
        const fx_authz_check *c = &checks.v[i];
        fx_authz_kv params[1] = {{{"id", 2}, {c->path, strlen(c->path)}}};
        fx_authz_kv query[1] = {{{"debug", 5}, {c->query ? c->query : "", c->query ? strlen(c->query) : 0}}};
        fx_authz_request r = {
            .method = {c->method, strlen(c->method)},
            .path = {c->path, strlen(c->path)},
            .route = {"documents", 9},
            .route_index = fx_policy_set_route(set, "documents", 9),
            .params = params, .nparams = 1,
            .headers = c->headers, .nheaders = c->nheaders,
            .query = query, .nquery = 1,
            .token = c->claims,
            .context = c->context,
        };
        fx_authz_decision d, e;
        fx_policy_eval(set, &r, &d);
        size_t n = 0;
        fx_policy_explain(set, &r, &e, on_item, &n);
        if (d.allow != e.allow || d.reason != e.reason || d.nmatched != e.nmatched)
            abort(); /* explain must decide as eval does */
    }
    fx_authz_checks_free(&checks);
    return 0;
}

/*
 * fuzz_policy.c — libFuzzer harness for the policy readers of libfxauthz
 * (authz/policy_file.c) and, through the builder, the expression compiler
 * (authz/expr.c) and the policy set (authz/policy.c).
 *
 * Every input goes to both readers:
 *
 *   1. fx_policy_builder_add_buffer() twice, with known route names and with
 *      any route name accepted; a set that builds decides one fixed request
 *      (with a token and a context) through fx_policy_eval and
 *      fx_policy_explain, then is released;
 *   2. fx_policy_cases_load_buffer(); the cases are freed.
 *
 * What is checked besides the sanitizers: a refusal always says why (at
 * least one diagnostic), a success says nothing, and every diagnostic lies
 * inside the input (1 <= line <= lines, 1 <= col <= line length + 1).
 * Everything is freed on every run, so leaks show up under ASan.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   build-fuzz/tests/fuzz/fuzz_policy -max_len=4096 tests/data/policy/valid tests/data/policy/invalid
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ficus_authz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const routes[] = {"documents-read", "documents-write", "health"};

static const char token_json[] = "{\"sub\":\"42\",\"roles\":[\"admin\",\"reader\"],\"scope\":\"documents:read\","
                                 "\"status\":\"active\",\"org\":{\"id\":7}}";
static const char context_json[] = "{\"break_glass\":false,\"ip\":\"10.0.0.1\"}";

/* Line breaks as libyaml counts them: CR LF, CR, LF, NEL, LS, PS. */
static size_t line_break(const uint8_t *s, size_t n, size_t i)
{
    if (s[i] == '\n')
        return 1;
    if (s[i] == '\r')
        return i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
    if (s[i] == 0xc2 && i + 1 < n && s[i + 1] == 0x85)
        return 2;
    if (s[i] == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
        return 3;
    return 0;
}

/* Is line:col inside the input? */
static int inside(const uint8_t *s, size_t n, int line, int col)
{
    int l = 1;
    size_t start = 0, i = 0;
    while (l < line && i < n) {
        size_t b = line_break(s, n, i);
        if (b) {
            i += b;
            start = i;
            l++;
        } else {
            i++;
        }
    }
    if (l != line)
        return 0;
    size_t end = start;
    while (end < n && !line_break(s, n, end))
        end++;
    return col >= 1 && (size_t)col <= end - start + 1;
}

static void check_diags(const fx_authz_diags *d, size_t from, int rc, const uint8_t *data, size_t size)
{
    if (rc != 0 && d->n == from) {
        fprintf(stderr, "fuzz_policy: refused without a diagnostic\n");
        abort();
    }
    if (rc == 0 && d->n != from) {
        fx_authz_diags_print(d, stderr);
        fprintf(stderr, "fuzz_policy: diagnostics but success\n");
        abort();
    }
    for (size_t i = from; i < d->n; i++) {
        if (!d->v[i].msg || !d->v[i].file || !inside(data, size, d->v[i].line, d->v[i].col)) {
            fx_authz_diags_print(d, stderr);
            fprintf(stderr, "fuzz_policy: diagnostic %zu is outside the input\n", i);
            abort();
        }
    }
}

/* What explain reports, policy by policy, tallied to check eval's decision. */
typedef struct tally {
    const fx_policy_set *s;
    size_t permits, forbids;
} tally;

static void on_explain(void *arg, const fx_policy_explain_item *it)
{
    tally *t = arg;
    if (it->outcome != FX_POLICY_MATCHED)
        return;
    if (fx_policy_effect_of(t->s, it->policy) == FX_POLICY_FORBID)
        t->forbids++;
    else
        t->permits++;
}

static void decide(const fx_policy_set *s, const fx_authz_doc *token, const fx_authz_doc *context)
{
    static const fx_authz_kv params[] = {{{"id", 2}, {"42", 2}}};
    static const fx_authz_kv headers[] = {{{"X-Tenant", 8}, {"acme", 4}}};
    static const fx_authz_kv query[] = {{{"page", 4}, {"2", 1}}};
    fx_authz_request req = {
        .method = {"PUT", 3},
        .path = {"/api/documents/42", 17},
        .route = {"documents-write", 15},
        .route_index = fx_policy_set_route(s, "documents-write", 15),
        .params = params,
        .nparams = 1,
        .headers = headers,
        .nheaders = 1,
        .query = query,
        .nquery = 1,
        .token = token,
        .context = context,
    };
    fx_authz_decision dec, again;
    fx_policy_eval(s, &req, &dec);
    tally t = {s, 0, 0};
    fx_policy_explain(s, &req, &again, on_explain, &t);
    fx_authz_reason want = t.forbids ? FX_AUTHZ_FORBIDDEN : t.permits ? FX_AUTHZ_PERMITTED : FX_AUTHZ_NO_MATCH;
    if (dec.allow != again.allow || dec.reason != again.reason || dec.reason != want ||
        dec.allow != (want == FX_AUTHZ_PERMITTED)) {
        fprintf(stderr, "fuzz_policy: eval and explain disagree\n");
        abort();
    }
    (void)fx_policy_set_needs(s);
    for (uint32_t i = 0; i < fx_policy_set_count(s); i++) {
        int line, col;
        (void)fx_policy_id(s, i);
        (void)fx_policy_file(s, i, &line, &col);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fx_authz_doc *token, *context;
    if (!token) {
        char err[256];
        token = fx_authz_doc_parse(token_json, strlen(token_json), err, sizeof(err));
        context = fx_authz_doc_parse(context_json, strlen(context_json), err, sizeof(err));
        if (!token || !context)
            abort();
    }
    const char *text = (const char *)data;
    fx_authz_diags d = {0};

    for (int any = 0; any < 2; any++) {
        fx_policy_builder *b = any ? fx_policy_builder_new(NULL, 0) : fx_policy_builder_new(routes, 3);
        if (!b)
            abort();
        int rc = fx_policy_builder_add_buffer(b, "fuzz.yaml", text, size, &d);
        check_diags(&d, 0, rc, data, size);
        fx_policy_set *s = fx_policy_builder_finish(b, &d);
        if ((s != NULL) != (rc == 0)) {
            fprintf(stderr, "fuzz_policy: finish and add_buffer disagree\n");
            abort();
        }
        if (s)
            decide(s, token, context);
        fx_policy_set_unref(s);
        fx_authz_diags_free(&d);
    }

    fx_policy_cases cases = {0};
    int rc = fx_policy_cases_load_buffer(&cases, "fuzz-tests.yaml", text, size, &d);
    check_diags(&d, 0, rc, data, size);
    if ((rc == 0) != (d.n == 0) || (rc != 0 && cases.n != 0))
        abort();
    for (size_t i = 0; i < cases.n; i++) {
        const fx_policy_case *c = &cases.v[i];
        if (!c->name || !c->method || !c->path || c->path[0] != '/' || !inside(data, size, c->line, c->col))
            abort();
    }
    fx_policy_cases_free(&cases);
    fx_authz_diags_free(&d);
    return 0;
}

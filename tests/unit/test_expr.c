/*
 * test_expr.c — Check suite "expr" for the policy expression language
 * (authz/expr.c), through fx_expr_compile / _eval / _explain / _needs.
 *
 *   fixtures     one request (method, path, route, params, headers with a
 *                duplicate name, decoded query), a token and a context
 *                (JSON, parsed once in main), an anonymous request and an
 *                all-zero request
 *   eval table   one row per expression and its value against the
 *                fixture; every row also runs through fx_expr_explain,
 *                which must agree
 *   error table  one row per expression that must not compile: the byte
 *                offset and a fragment of the message
 *   then         limits (length, nesting, list items, long chains),
 *                explain (why, missing, short-circuit), needs, no
 *                allocation while evaluating (under ASan only: its
 *                allocator hooks), and the regressions found in review
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_internal.h"

/* Any UBSan report fails the test it happens in (meson does not set UBSAN_OPTIONS). */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

#define S(x) {x, sizeof(x) - 1}

/* ---- fixtures --------------------------------------------------------------------------- */

static const char token_json[] =
    "{"
    "\"sub\": \"42\","
    "\"roles\": [\"editor\", \"Admin\"],"
    "\"scope\": \"documents:read  documents:write profile\","
    "\"status\": \"active\","
    "\"age\": 30,"
    "\"ratio\": 0.5,"
    "\"one_real\": 1.0,"
    "\"neg\": -5,"
    "\"flag\": true,"
    "\"off\": false,"
    "\"nothing\": null,"
    "\"email\": \"Ann@Example.COM\","
    "\"name\": \"Zo\\u00eb \\u00dcn\\u00efcode\","
    "\"smile\": \"a\\ud83d\\ude00b\","
    "\"org\": {\"id\": \"acme\", \"tier\": 2, \"tags\": [\"a\", \"b\"],"
    "          \"meta\": {\"deep\": {\"x\": 1}}},"
    "\"dotted.key\": \"dk\","
    "\"teams\": [{\"name\": \"red\", \"lead\": true}, {\"name\": \"blue\"}],"
    "\"empty\": \"\","
    "\"emptylist\": [],"
    "\"emptymap\": {},"
    "\"idx\": 1,"
    "\"key\": \"sub\","
    "\"nums\": [1, 2.5, 3],"
    "\"mixed\": [1, \"1\", true, null, [1, 2], {\"a\": 1}]"
    "}";

static const char context_json[] =
    "{\"ip\": \"10.1.2.3\", \"tenant\": \"acme\", \"limits\": {\"max\": 10},"
    " \"groups\": [\"g1\", \"g2\"], \"n\": 3}";

static const fx_authz_kv params[] = {{S("id"), S("42")}, {S("doc"), S("Report")}};
static const fx_authz_kv headers[] = {
    {S("Authorization"), S("Bearer abc.def")},
    {S("X-Api-Key"), S("k1")},
    {S("x-api-key"), S("k2")}, /* a second header of the same name: the first wins */
    {S("Content-Type"), S("application/json")},
};
static const fx_authz_kv query[] = {{S("q"), S("hello world")}, {S("page"), S("2")}, {S("Flag"), S("")}};

static fx_authz_doc *token_doc, *context_doc;
static fx_authz_request req, anon, zero;

static fx_authz_doc *parse_doc(const char *json)
{
    char err[256];
    fx_authz_doc *d = fx_authz_doc_parse(json, strlen(json), err, sizeof(err));
    if (!d) {
        fprintf(stderr, "test_expr: fixture JSON: %s\n", err);
        abort();
    }
    return d;
}

static void fixtures(void)
{
    token_doc = parse_doc(token_json);
    context_doc = parse_doc(context_json);
    req = (fx_authz_request){
        .method = S("PUT"),
        .path = S("/api/documents/42"),
        .route = S("documents-write"),
        .route_index = 1,
        .params = params,
        .nparams = sizeof(params) / sizeof(params[0]),
        .headers = headers,
        .nheaders = sizeof(headers) / sizeof(headers[0]),
        .query = query,
        .nquery = sizeof(query) / sizeof(query[0]),
        .token = token_doc,
        .context = context_doc,
    };
    anon = (fx_authz_request){.method = S("GET"), .path = S("/public/x"), .route = S("public"),
                              .route_index = -1};
    memset(&zero, 0, sizeof(zero));
}

/* ---- helpers ------------------------------------------------------------------------------ */

static fx_expr *compile_ok(const char *src, size_t len)
{
    fx_expr_error err;
    fx_expr *e = fx_expr_compile(src, len, &err);
    ck_assert_msg(e != NULL, "'%.*s' did not compile: offset %zu: %s", (int)len, src, err.offset,
                  err.msg);
    return e;
}

/* Compiles, evaluates and explains; both must agree. Returns the value. */
static int value_of(const char *src, const fx_authz_request *r)
{
    fx_expr *e = compile_ok(src, strlen(src));
    int v = fx_expr_eval(e, r);
    fx_authz_str why = {NULL, 0}, missing = {NULL, 0};
    int ve = fx_expr_explain(e, r, &why, &missing);
    ck_assert_msg(v == ve, "'%s': eval says %d, explain says %d", src, v, ve);
    ck_assert_ptr_nonnull(why.p);
    ck_assert_ptr_nonnull(missing.p);
    fx_expr_free(e);
    return v;
}

static void compile_fails(const char *src, size_t len, size_t offset, const char *fragment)
{
    fx_expr_error err;
    if (!len)
        len = strlen(src);
    memset(&err, 0x55, sizeof(err));
    fx_expr *e = fx_expr_compile(src, len, &err);
    ck_assert_msg(e == NULL, "'%.*s' compiled, expected an error at %zu (%s)", (int)len, src,
                  offset, fragment);
    ck_assert_msg(memchr(err.msg, '\0', sizeof(err.msg)) != NULL, "message not terminated");
    ck_assert_msg(strstr(err.msg, fragment) != NULL, "'%.*s': message '%s' lacks '%s'", (int)len,
                  src, err.msg, fragment);
    ck_assert_msg(err.offset == offset, "'%.*s': offset %zu, expected %zu (%s)", (int)len, src,
                  err.offset, offset, err.msg);
}

/* A heap copy of `n` repetitions of `unit` between `pre` and `post`. */
static char *repeat(const char *pre, const char *unit, size_t n, const char *post)
{
    size_t lp = strlen(pre), lu = strlen(unit), lq = strlen(post);
    char *s = malloc(lp + lu * n + lq + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, pre, lp);
    for (size_t i = 0; i < n; i++)
        memcpy(s + lp + i * lu, unit, lu);
    memcpy(s + lp + n * lu, post, lq + 1);
    return s;
}

/* ---- the evaluation table ------------------------------------------------------------------ */

typedef struct eval_row {
    const char *src;
    int want;
} eval_row;

static const eval_row eval_rows[] = {
    /* literals */
    {"true", 1},
    {"false", 0},
    {"!false", 1},
    {"!!true", 1},
    {"null == null", 1},
    {"null != null", 0},
    {"1 == 1", 1},
    {"0 == 0", 1},
    {"-5 == token.neg", 1},
    {"- 5 == token.neg", 1},
    {"-0 == 0", 1},
    {"9223372036854775807 > 0", 1},
    {"-9223372036854775808 < 0", 1},
    {"-9223372036854775808 < 9223372036854775807", 1},
    {"'a' == \"a\"", 1},
    {"\"it's\" == 'it\\'s'", 1},
    {"'say \"hi\"' == \"say \\\"hi\\\"\"", 1},
    {"'a\\nb' != 'a b'", 1},
    {"size('a\\nb') == 3", 1},
    {"size('\\t\\r\\n\\\\') == 4", 1},
    {"'\\\\' == \"\\\\\"", 1},
    {"'' == token.empty", 1},
    {"'\xc3\xbc' == '\xc3\xbc'", 1}, /* UTF-8 inside a string literal */
    {"[] == token.emptylist", 1},
    {"[1, 2] == [1, 2]", 1},
    {"[1, 2] != [2, 1]", 1},
    {"[[1], ['a']] == [[1], ['a']]", 1},
    /* whitespace of every kind between tokens */
    {"\ttrue\n&&\r\n true ", 1},
    {"token . sub == '42'", 1},
    {"token.sub.startsWith\n('4')", 1},
    /* == and != */
    {"token.sub == '42'", 1},
    {"token.sub != '42'", 0},
    {"token.sub != '43'", 1},
    {"token.status == 'active'", 1},
    {"token.flag == true", 1},
    {"token.flag != false", 1},
    {"token.off == false", 1},
    {"token.org.tags == ['a', 'b']", 1},
    {"token.org.tags != ['a']", 1},
    {"['a', 'b'] == token.org.tags", 1},
    {"token.org.meta == token.org.meta", 1},
    {"token.org.meta.deep == token.org.meta.deep", 1},
    {"token.org == token.org.meta", 0},
    {"token.mixed[4] == [1, 2]", 1},
    /* ordering: ints, reals, strings */
    {"token.age > 29", 1},
    {"token.age >= 30", 1},
    {"token.age <= 30", 1},
    {"token.age < 30", 0},
    {"token.age > 30", 0},
    {"token.neg < 0", 1},
    {"1 < 2", 1},
    {"2 <= 1", 0},
    {"'a' < 'b'", 1},
    {"'abc' < 'abd'", 1},
    {"'ab' < 'abc'", 1},
    {"'abc' > 'ab'", 1},
    {"'B' < 'a'", 1}, /* bytes, not case-folded */
    {"request.method > 'GET'", 1},
    {"request.method >= 'PUT'", 1},
    {"'a' <= 'a'", 1},
    /* ints and reals compare by value */
    {"token.one_real == 1", 1},
    {"1 == token.one_real", 1},
    {"token.one_real != 1", 0},
    {"token.ratio < 1", 1},
    {"token.ratio > 0", 1},
    {"token.ratio >= 1", 0},
    {"token.nums[1] > 2", 1},
    {"token.nums[1] < 3", 1},
    {"token.nums[1] == 2", 0},
    {"token.nums[1] != 2", 1},
    {"[1, 2] == [token.one_real, 2]", 1},
    /* missing fields: the comparison is false, both ways; ! of it is true */
    {"token.nope == 'x'", 0},
    {"token.nope != 'x'", 0},
    {"!(token.nope == 'x')", 1},
    {"!(token.nope != 'x')", 1},
    {"token.nope < 1", 0},
    {"token.nope >= 1", 0},
    {"token.nope == token.nope", 0},
    {"token.nope != token.nope", 0},
    {"token.org.nope.deeper == 1", 0},
    {"token.sub.x == 1", 0},
    {"token.roles[2] == 'x'", 0},
    {"token.roles[2] != 'x'", 0},
    {"token.roles[-1] == 'Admin'", 0},
    {"request.params.nope == 'x'", 0},
    {"request.params.nope != 'x'", 0},
    {"request.headers['x-nope'] != ''", 0},
    {"request.query.nope != ''", 0},
    {"context.nope == 1", 0},
    {"context.nope != 1", 0},
    /* type mismatches: false, both ways */
    {"token.age == '30'", 0},
    {"token.age != '30'", 0},
    {"token.sub == 42", 0},
    {"token.sub != 42", 0},
    {"token.flag == 1", 0},
    {"token.flag != 1", 0},
    {"token.roles == 'editor'", 0},
    {"token.roles != 'editor'", 0},
    {"token.org == 'acme'", 0},
    {"token.age < '31'", 0},
    {"token.age >= '3'", 0},
    {"token.sub < 43", 0},
    {"token.roles < token.roles", 0},
    {"token.org <= token.org", 0},
    {"token.nothing < 1", 0},
    {"request.headers == request.headers", 0},
    /* null */
    {"token.nothing == null", 1},
    {"token.nothing != null", 0},
    {"null == token.nothing", 1},
    {"token.sub != null", 1},
    {"token.sub == null", 0},
    {"token.age != null", 1},
    {"token.flag != null", 1},
    {"token.off != null", 1},
    {"token.emptylist != null", 1},
    {"token.emptymap != null", 1},
    {"token.empty != null", 1},
    {"token.nope == null", 0},
    {"token.nope != null", 0},
    {"request.params.id != null", 1},
    {"request.params.nope != null", 0},
    {"null != 1", 1},
    {"null == 'x'", 0},
    {"null in token.mixed", 1},
    /* && || ! and precedence */
    {"true && true", 1},
    {"true && false", 0},
    {"false || true", 1},
    {"false || false", 0},
    {"true || false && false", 1},
    {"(true || false) && false", 0},
    {"!false && false", 0},
    {"!(false && false)", 1},
    {"false || false || false || true", 1},
    {"true && true && true && false", 0},
    {"!token.flag == false", 1},
    {"token.flag && !token.off", 1},
    {"token.nope || true", 1},
    {"token.sub && true", 0}, /* a string is not true */
    {"!token.sub", 1},        /* ... and ! of anything not true is true */
    {"!token.nope", 1},
    {"token.nothing || false", 0},
    /* in: lists */
    {"'editor' in token.roles", 1},
    {"'Admin' in token.roles", 1},
    {"'admin' in token.roles", 0},
    {"'viewer' in token.roles", 0},
    {"1 in token.nums", 1},
    {"3 in token.nums", 1},
    {"2 in token.nums", 0},
    {"'1' in token.mixed", 1},
    {"true in token.mixed", 1},
    {"[1, 2] in token.mixed", 1},
    {"token.org.tags in [['a', 'b'], ['c']]", 1},
    {"request.method in ['GET', 'HEAD']", 0},
    {"request.method in ['PUT', 'PATCH']", 1},
    {"token.sub in [request.params.id]", 1},
    {"1 in []", 0},
    {"token.age in [29, 30]", 1},
    {"token.one_real in [1]", 1},
    {"'g1' in context.groups", 1},
    /* in: maps (key presence) */
    {"'id' in token.org", 1},
    {"'nope' in token.org", 0},
    {"'Id' in token.org", 0},
    {"'max' in context.limits", 1},
    {"'ip' in context", 1},
    {"'id' in request.params", 1},
    {"'ID' in request.params", 0},
    {"'x-api-key' in request.headers", 1},
    {"'X-API-KEY' in request.headers", 1},
    {"'authorization' in request.headers", 1},
    {"'cookie' in request.headers", 0},
    {"'page' in request.query", 1},
    {"'Flag' in request.query", 1},
    {"'flag' in request.query", 0},
    {"'a' in token.emptymap", 0},
    {"1 in token.org", 0},
    /* in: space-separated strings (an OAuth scope) match whole words */
    {"'documents:read' in token.scope", 1},
    {"'documents:write' in token.scope", 1},
    {"'profile' in token.scope", 1},
    {"'documents' in token.scope", 0},
    {"'read' in token.scope", 0},
    {"'documents:read documents:write' in token.scope", 0},
    {"'' in token.scope", 0},
    {"' ' in token.scope", 0},
    {"'doc' in 'docs read'", 0},
    {"'docs' in 'docs read'", 1},
    {"'read' in 'docs read'", 1},
    {"'read' in ' read '", 1},
    {"'Read' in 'docs read'", 0},
    {"lower('PROFILE') in token.scope", 1},
    {"'profile' in lower('DOCS PROFILE')", 1},
    {"'a' in 'a\tb'", 0}, /* only spaces separate words */
    {"1 in token.scope", 0},
    {"'42' in token.sub", 1},
    /* in with missing operands */
    {"'x' in token.nope", 0},
    {"!('x' in token.nope)", 1},
    {"token.nope in token.roles", 0},
    {"token.nope in token.org", 0},
    {"token.nope in token.scope", 0},
    {"token.nope in [null]", 0},
    /* has */
    {"has(token.sub)", 1},
    {"has(token.nope)", 0},
    {"has(token.nothing)", 1},
    {"has(token.emptymap)", 1},
    {"has(token.org.id)", 1},
    {"has(token.org.nope)", 0},
    {"has(token.org.meta.deep.x)", 1},
    {"has(token.roles[1])", 1},
    {"has(token.roles[2])", 0},
    {"has(token['dotted.key'])", 1},
    {"has(token)", 1},
    {"has(context)", 1},
    {"has(context.ip)", 1},
    {"has(context.nope)", 0},
    {"has(request.method)", 1},
    {"has(request.params.id)", 1},
    {"has(request.params.nope)", 0},
    {"has(request.headers['X-Api-Key'])", 1},
    {"has(request.headers['x-missing'])", 0},
    {"has(request.headers)", 1},
    {"has(request.query.page)", 1},
    {"has(request.query.Flag)", 1},
    {"has(request.query.flag)", 0},
    {"!has(token.nope)", 1},
    {"has( token.sub )", 1},
    {"has((token.sub))", 1}, /* parentheses around a field keep it a field */
    /* size: code points of strings, items of lists, members of maps */
    {"size(token.sub) == 2", 1},
    {"size(token.name) == 11", 1},
    {"size(token.smile) == 3", 1},
    {"size('h\xc3\xa9llo') == 5", 1},
    {"size('') == 0", 1},
    {"size(token.empty) == 0", 1},
    {"size(token.roles) == 2", 1},
    {"token.roles.size() == 2", 1},
    {"size(token.emptylist) == 0", 1},
    {"size([1, 2, 3]) == 3", 1},
    {"size([]) == 0", 1},
    {"size(token.org) == 4", 1},
    {"size(token.emptymap) == 0", 1},
    {"size(context) == 5", 1},
    {"size(request.params) == 2", 1},
    {"size(request.headers) == 4", 1},
    {"size(request.query) == 3", 1},
    {"size(request.method) == 3", 1},
    {"request.path.size() == 17", 1},
    {"size(token.age) == 0", 0}, /* not sizeable: false both ways */
    {"size(token.age) != 0", 0},
    {"size(token.nope) == 0", 0},
    {"size(token.nope) != 0", 0},
    {"size(token.roles) > 1", 1},
    {"size(lower(token.name)) == 11", 1},
    /* startsWith / endsWith, both call styles */
    {"request.path.startsWith('/api/')", 1},
    {"startsWith(request.path, '/api/')", 1},
    {"request.path.startsWith('/API/')", 0},
    {"request.path.endsWith('/42')", 1},
    {"endsWith(request.path, '/42')", 1},
    {"request.path.endsWith('42/')", 0},
    {"request.path.startsWith('')", 1},
    {"request.path.endsWith('')", 1},
    {"'abc'.startsWith('abcd')", 0},
    {"'abc'.endsWith('xabc')", 0},
    {"'abc'.startsWith('abc')", 1},
    {"'abc'.endsWith('abc')", 1},
    {"token.age.startsWith('3')", 0},
    {"token.nope.startsWith('')", 0},
    {"!token.nope.startsWith('')", 1},
    {"token.sub.startsWith(token.nope)", 0},
    {"request.headers['authorization'].startsWith('Bearer ')", 1},
    {"context.ip.startsWith('10.')", 1},
    {"startsWith(token.email, 'ann')", 0},
    /* lower(): a case-folded view (ASCII); the other side keeps its case */
    {"lower(token.email) == 'ann@example.com'", 1},
    {"token.email.lower() == 'ann@example.com'", 1},
    {"'ann@example.com' == lower(token.email)", 1},
    {"lower(token.email) == 'Ann@Example.COM'", 0},
    {"lower(token.email) == lower('ANN@EXAMPLE.COM')", 1},
    {"token.email == 'ann@example.com'", 0},
    {"lower(token.email) != 'ann@example.com'", 0},
    {"lower(token.email).startsWith('ann@')", 1},
    {"startsWith(lower(token.email), 'ann@')", 1},
    {"lower(token.email).endsWith('.com')", 1},
    {"token.email.startsWith(lower('ANN'))", 0},
    {"lower(token.email) > 'ann'", 1},
    {"lower(token.email) < 'b'", 1},
    {"token.email < 'B'", 1},
    {"lower(request.method) == 'put'", 1},
    {"lower(request.method) in ['get', 'put']", 1},
    {"'admin' in [lower(token.roles[1])]", 1},
    {"lower(token.roles[1]) in token.roles", 0},
    {"lower('\xc3\x9c') == '\xc3\xbc'", 0}, /* only ASCII folds */
    {"lower('ABC').lower() == 'abc'", 1},
    {"lower(token.age) == '30'", 0}, /* not a string: false both ways */
    {"lower(token.age) != '30'", 0},
    {"lower(token.nope) == ''", 0},
    {"request.headers[lower('X-API-KEY')] == 'k1'", 1},
    /* field access: dots, ['key'], [0], [expr] */
    {"token.org.id == 'acme'", 1},
    {"token['org']['id'] == 'acme'", 1},
    {"token[\"org\"].id == 'acme'", 1},
    {"token['dotted.key'] == 'dk'", 1},
    {"token.dotted.key == 'dk'", 0},
    {"token.roles[0] == 'editor'", 1},
    {"token.roles[1] == 'Admin'", 1},
    {"token[context.tenant] == 'x'", 0},
    {"token.teams[0].name == 'red'", 1},
    {"token.teams[1]['name'] == 'blue'", 1},
    {"token.teams[0].lead == true", 1},
    {"token.teams[1].lead == true", 0},
    {"token.teams[1].lead != true", 0},
    {"token.mixed[4][1] == 2", 1},
    {"token.mixed[5].a == 1", 1},
    {"token.org.meta.deep.x == 1", 1},
    {"token.roles['0'] == 'editor'", 0}, /* a list has no keys */
    {"token.org[0] == 'acme'", 0},        /* a map has no indices */
    {"token.roles[token.ratio] == 'editor'", 0},
    {"token.roles[token.nope] == 'editor'", 0},
    {"token.roles[4294967296] == 'editor'", 0},
    {"token.in == 1", 0},   /* keywords are field names after a dot */
    {"token.true == 1", 0},
    {"context.limits.max == 10", 1},
    {"context['ip'] == '10.1.2.3'", 1},
    {"context.n == 3", 1},
    {"context.n > token.org.tier", 1},
    /* request */
    {"request.method == 'PUT'", 1},
    {"request.method == 'put'", 0},
    {"request.path == '/api/documents/42'", 1},
    {"request.route == 'documents-write'", 1},
    {"request.params.id == '42'", 1},
    {"request.params['id'] == '42'", 1},
    {"request.params.id == token.sub", 1},
    {"token.sub == request.params.id", 1},
    {"request.params.doc == 'Report'", 1},
    {"request.params.Doc == 'Report'", 0}, /* params keys are exact */
    {"request.headers['authorization'] == 'Bearer abc.def'", 1},
    {"request.headers['AUTHORIZATION'] == 'Bearer abc.def'", 1},
    {"request.headers['Authorization'] == 'Bearer abc.def'", 1},
    {"request.headers.authorization == 'Bearer abc.def'", 1},
    {"request.headers.Authorization == 'Bearer abc.def'", 1},
    {"request.headers['x-api-key'] == 'k1'", 1}, /* the first of a name wins */
    {"request.headers['X-API-KEY'] == 'k2'", 0},
    {"request.headers['content-type'] == 'application/json'", 1},
    {"request.headers['content-type'] == 'APPLICATION/JSON'", 0}, /* values keep their case */
    {"request.headers[0] == 'Bearer abc.def'", 0},
    {"request.query.q == 'hello world'", 1},
    {"request.query['page'] == '2'", 1},
    {"request.query.Flag == ''", 1},
    {"'hello' in request.query.q", 1},
    /* the example policies of DESIGN.md */
    {"'documents:read' in token.scope", 1},
    {"token.sub == request.params.id || 'admin' in token.roles", 1},
    {"token.status == 'suspended'", 0},
};
#define NEVAL (sizeof(eval_rows) / sizeof(eval_rows[0]))

START_TEST(test_eval_table)
{
    const eval_row *row = &eval_rows[_i];
    int got = value_of(row->src, &req);
    ck_assert_msg(got == row->want, "'%s' is %d, expected %d", row->src, got, row->want);
}
END_TEST

/* Anonymous (no token, no context) and all-zero requests. */
static const eval_row anon_rows[] = {
    {"token.sub == 'x'", 0},
    {"token.sub != 'x'", 0},
    {"!(token.sub == 'x')", 1},
    {"has(token)", 0},
    {"has(token.sub)", 0},
    {"!has(token)", 1},
    {"token == null", 0},
    {"token != null", 0},
    {"'a' in token.roles", 0},
    {"size(token) == 0", 0},
    {"has(context)", 1}, /* no context: an empty object */
    {"size(context) == 0", 1},
    {"context.x == 1", 0},
    {"has(context.x)", 0},
    {"'x' in context", 0},
    {"request.params.id == '1'", 0},
    {"has(request.params.id)", 0},
    {"size(request.params) == 0", 1},
    {"size(request.headers) == 0", 1},
    {"request.headers['x'] != 'y'", 0},
    {"request.method == 'GET'", 1},
    {"request.route == 'public'", 1},
    {"request.path.startsWith('/public/')", 1},
};
#define NANON (sizeof(anon_rows) / sizeof(anon_rows[0]))

START_TEST(test_eval_anonymous)
{
    const eval_row *row = &anon_rows[_i];
    int got = value_of(row->src, &anon);
    ck_assert_msg(got == row->want, "'%s' is %d, expected %d", row->src, got, row->want);
}
END_TEST

/* ---- compile errors ---------------------------------------------------------------------- */

typedef struct err_row {
    const char *src;
    size_t len; /* 0: strlen */
    size_t offset;
    const char *fragment;
} err_row;

static const err_row err_rows[] = {
    /* empty */
    {"", 0, 0, "empty expression"},
    {"  \t\n ", 0, 0, "empty expression"},
    /* parentheses, brackets, lists, calls */
    {"(true", 0, 5, "expected ')' to close a '(', found the end of the expression"},
    {"((true)", 0, 7, "expected ')' to close a '('"},
    {"(true && (false)", 0, 16, "to close a '('"},
    {"true)", 0, 4, "expected an operator or the end of the expression, found ')'"},
    {"(true))", 0, 6, "found ')'"},
    {")", 0, 0, "expected a value, found ')'"},
    {"()", 0, 1, "expected a value, found ')'"},
    {"size(token.sub == 1", 0, 19, "expected ',' or ')' after a function argument"},
    {"size(token.sub]", 0, 14, "expected ',' or ')'"},
    {"[1, 2", 0, 5, "expected ',' or ']' in a list"},
    {"1 in [1, 2,]", 0, 11, "expected a value, found ']'"},
    {"[1, 2,] == [1, 2]", 0, 6, "expected a value, found ']'"},
    {"1 in [1.0 == 1]", 0, 7, "malformed number"},
    {"token.roles[0", 0, 13, "expected ']'"},
    {"token.roles[]", 0, 12, "expected a value, found ']'"},
    {"token.roles]", 0, 11, "found ']'"},
    /* strings */
    {"'abc", 0, 0, "unterminated string: no closing '"},
    {"token.sub == \"abc", 0, 13, "unterminated string: no closing \""},
    {"token.sub == 'abc\\'", 0, 13, "unterminated string"},
    {"token.sub == 'abc\\", 0, 13, "unterminated string"},
    {"token.sub == 'a\nb'", 0, 15, "a line break inside a string literal"},
    {"token.sub == 'a\rb'", 0, 15, "a line break"},
    {"token.sub == 'a\\qb'", 0, 15, "unknown escape '\\q'"},
    {"token.sub == 'a\\x41'", 0, 15, "unknown escape '\\x'"},
    {"token.sub == '\\u0041'", 0, 14, "unknown escape '\\u'"},
    {"token.sub == '\\0'", 0, 14, "unknown escape"},
    /* bytes */
    {"token.sub == '\xff'", 0, 14, "not valid UTF-8"},
    {"token.sub == '\xc3'", 0, 14, "not valid UTF-8"},
    {"token.sub == '\xc3", 0, 14, "not valid UTF-8"},
    {"token.sub == '\xc0\x80'", 0, 14, "not valid UTF-8"},         /* overlong NUL */
    {"token.sub == '\xe0\x80\xaf'", 0, 14, "not valid UTF-8"},     /* overlong '/' */
    {"token.sub == '\xed\xa0\x80'", 0, 14, "not valid UTF-8"},     /* a surrogate */
    {"token.sub == '\xf4\x90\x80\x80'", 0, 14, "not valid UTF-8"}, /* > U+10FFFF */
    {"token.sub == '\x80'", 0, 14, "not valid UTF-8"},
    {"true\0", 5, 4, "NUL byte"},
    {"token.sub == '\0'", 16, 14, "NUL byte"},
    {"token.s\xc3\xa9 == 'a'", 0, 7, "unexpected byte 0xc3"},
    {"token.sub == 'a' # comment", 0, 17, "unexpected character '#'"},
    {"@", 0, 0, "unexpected character '@'"},
    {"token.sub == `a`", 0, 13, "unexpected character '`'"},
    {"token.sub == '1' + 1", 0, 17, "unexpected character '+'"},
    {"token.sub\x01 == '1'", 0, 9, "unexpected byte 0x01"},
    /* names */
    {"tokn.sub == 'a'", 0, 0, "unknown name 'tokn' (did you mean 'token'?)"},
    {"contxt.ip == 'a'", 0, 0, "(did you mean 'context'?)"},
    {"requets.method == 'a'", 0, 0, "(did you mean 'request'?)"},
    {"Token.sub == 'a'", 0, 0, "unknown name 'Token' (did you mean 'token'?)"},
    {"user.id == 'a'", 0, 0, "unknown name 'user'; an expression reads token, request and context"},
    {"sub == 'a'", 0, 0, "unknown name 'sub'"},
    {"request.header['x'] == 'a'", 0, 8,
     "request has no field 'header' (did you mean 'headers'?); it has method, path, route, "
     "params, headers and query"},
    {"request.param.id == 'a'", 0, 8, "(did you mean 'params'?)"},
    {"request.body == 'a'", 0, 8, "request has no field 'body'"},
    {"request.Method == 'GET'", 0, 8, "(did you mean 'method'?)"},
    {"request == 'a'", 0, 0, "'request' alone is not a value"},
    {"request['method'] == 'a'", 0, 0, "'request' alone is not a value"},
    {"request.1 == 'a'", 0, 8, "expected a field of request after '.', found a number"},
    {"request.method.x == 'a'", 0, 15, "request.method is a string and has no fields"},
    {"request.path[0] == 'a'", 0, 12, "request.path is a string and cannot be indexed"},
    {"request.route['x'] == 'a'", 0, 13, "request.route is a string and cannot be indexed"},
    {"request.params.id.x == 'a'", 0, 0, "request.params values are strings and have no fields"},
    {"request.headers['a']['b'] == 'a'", 0, 0, "request.headers values are strings"},
    {"request.query.a.b == 'a'", 0, 0, "request.query values are strings"},
    {"token. == 'a'", 0, 7, "expected a field name after '.', found '=='"},
    {"token.", 0, 6, "expected a field name after '.', found the end of the expression"},
    {"token.1 == 'a'", 0, 6, "expected a field name after '.', found a number"},
    {"'x'.y == 1", 0, 4, "only a field can have fields"},
    {"size(token.roles).x == 1", 0, 18, "only a field can have fields"},
    {"'x'.'y'", 0, 4, "expected a method name after '.', found a string"},
    {"in", 0, 0, "expected a value, found 'in'"},
    {"'a' in in", 0, 7, "expected a value, found 'in'"},
    /* functions */
    {"startswith(token.sub, 'x')", 0, 0, "unknown function 'startswith' (did you mean 'startsWith'?)"},
    {"token.sub.startswith('x')", 0, 10, "(did you mean 'startsWith'?)"},
    {"token.roles.siz() == 1", 0, 12, "unknown function 'siz' (did you mean 'size'?)"},
    {"has_(token.sub)", 0, 0, "(did you mean 'has'?)"},
    {"upper(token.sub) == 'A'", 0, 0,
     "unknown function 'upper'; the functions are has, size, startsWith, endsWith and lower"},
    {"contains(token.sub, 'a')", 0, 0, "unknown function 'contains'"},
    {"token.sub.matches('a')", 0, 10, "unknown function 'matches'"},
    {"token(1)", 0, 0, "unknown function 'token'"},
    /* arity, both call styles */
    {"startsWith(token.sub)", 0, 0, "startsWith takes 2 arguments (1 given)"},
    {"endsWith(token.sub, 'a', 'b')", 0, 0, "endsWith takes 2 arguments (3 given)"},
    {"token.sub.startsWith()", 0, 10, "startsWith takes 1 argument after its receiver (0 given)"},
    {"token.sub.endsWith('a', 'b')", 0, 10, "endsWith takes 1 argument after its receiver (2 given)"},
    {"size() == 0", 0, 0, "size takes 1 argument (0 given)"},
    {"size(token.sub, 1) == 0", 0, 0, "size takes 1 argument (2 given)"},
    {"token.sub.size(1) == 0", 0, 10, "size takes 0 arguments after its receiver (1 given)"},
    {"lower() == 'a'", 0, 0, "lower takes 1 argument (0 given)"},
    {"token.sub.lower('a') == 'a'", 0, 10, "lower takes 0 arguments after its receiver (1 given)"},
    {"has()", 0, 0, "has takes 1 argument (0 given)"},
    {"has(token.a, token.b)", 0, 0, "has takes 1 argument (2 given)"},
    {"size(1, 2, 3, 4, 5, 6) == 1", 0, 0, "size takes 1 argument (6 given)"},
    /* has() takes a field */
    {"has(1)", 0, 4, "has() takes a field, such as has(token.email)"},
    {"has('token.sub')", 0, 4, "has() takes a field"},
    {"has(lower(token.sub))", 0, 4, "has() takes a field"},
    {"has(token.sub == '1')", 0, 4, "has() takes a field"},
    {"token.sub.has()", 0, 10, "has is a function, not a method: write has(x.y)"},
    /* static types */
    {"[1] == 1", 0, 4, "a list and an int never compare: this comparison is always false"},
    {"1 != [1]", 0, 2, "an int and a list never compare"},
    {"'a' == 1", 0, 4, "a string and an int never compare"},
    {"true == 'true'", 0, 5, "a bool and a string never compare"},
    {"size(token.sub) == '2'", 0, 16, "an int and a string never compare"},
    {"lower(token.sub) == 1", 0, 17, "a string and an int never compare"},
    {"has(token.sub) == 1", 0, 15, "a bool and an int never compare"},
    {"request.params == 'a'", 0, 15, "a map and a string never compare"},
    {"request.method == 1", 0, 15, "a string and an int never compare"},
    {"true < false", 0, 5, "'<', '<=', '>' and '>=' compare numbers or strings, not a bool"},
    {"1 > true", 0, 2, "not a bool"},
    {"null < 1", 0, 5, "not null"},
    {"[1] <= [2]", 0, 4, "not a list"},
    {"request.headers >= 1", 0, 16, "not a map"},
    {"'a' < 1", 0, 4, "a string cannot be ordered against an int"},
    {"request.method > 1", 0, 15, "a string cannot be ordered against an int"},
    {"token.flag > false", 0, 11, "not a bool"},
    {"request.params.id == 42", 0, 18, "a string and an int never compare"}, /* params are strings */
    {"request.query.page == 2", 0, 19, "a string and an int never compare"},
    {"1 in 2", 0, 5, "'in' needs a list, a map or a space-separated string on its right, not an int"},
    {"'a' in true", 0, 7, "not a bool"},
    {"'a' in null", 0, 7, "not null"},
    {"'a' in size(token.sub)", 0, 7, "not an int"},
    {"size(1) == 1", 0, 5, "size() takes a string, a list or a map, not an int"},
    {"size(true) == 1", 0, 5, "not a bool"},
    {"startsWith(1, 'a')", 0, 11, "startsWith takes strings, not an int"},
    {"token.sub.startsWith(1)", 0, 21, "startsWith takes strings, not an int"},
    {"endsWith('a', [1])", 0, 14, "endsWith takes strings, not a list"},
    {"lower(true) == 'a'", 0, 6, "lower takes strings, not a bool"},
    {"token.roles[true] == 'a'", 0, 12, "an index must be a string or an int, not a bool"},
    {"token.roles[[0]] == 'a'", 0, 12, "an index must be a string or an int, not a list"},
    {"token[null] == 'a'", 0, 6, "not null"},
    {"1 && true", 0, 0, "'&&' needs booleans on both sides, but this is an int"},
    {"true || 'x'", 0, 8, "'||' needs booleans on both sides, but this is a string"},
    {"true && request.params", 0, 8, "but this is a map"},
    {"!1", 0, 1, "'!' needs a boolean, but this is an int"},
    {"!'x' in token.scope", 0, 1, "'!' needs a boolean, but this is a string"},
    {"!request.method", 0, 1, "'!' needs a boolean, but this is a string"},
    /* a `when` is a boolean */
    {"'a'", 0, 0, "a `when` must be a boolean, but this is a string"},
    {"1", 0, 0, "a `when` must be a boolean, but this is an int"},
    {"-1", 0, 0, "but this is an int"},
    {"null", 0, 0, "but this is null"},
    {"[true]", 0, 0, "but this is a list"},
    {"size(token.roles)", 0, 0, "but this is an int"},
    {"lower(token.sub)", 0, 0, "but this is a string"},
    {"request.method", 0, 0, "but this is a string"},
    {"request.query", 0, 0, "but this is a map"},
    {"request.headers['a']", 0, 0, "but this is a string"},
    {"(('a'))", 0, 2, "but this is a string"}, /* errors point at the value, inside its parentheses */
    /* operators that are not */
    {"token.sub = '1'", 0, 10, "'=' is not an operator: use '==' to compare"},
    {"token.sub === '1'", 0, 12, "'=' is not an operator"},
    {"token.flag & true", 0, 11, "'&' is not an operator: use '&&'"},
    {"token.flag | true", 0, 11, "'|' is not an operator: use '||'"},
    {"true and false", 0, 5, "'and' is not an operator: use '&&'"},
    {"true or false", 0, 5, "'or' is not an operator: use '||'"},
    {"token.flag and token.off", 0, 11, "'and' is not an operator: use '&&'"},
    {"not true", 0, 0, "'not' is not an operator: use '!'"},
    {"and", 0, 0, "'and' is not an operator"},
    {"true && or", 0, 8, "'or' is not an operator"},
    {"!= 1", 0, 0, "expected a value, found '!='"},
    {"true &&", 0, 7, "expected a value, found the end of the expression"},
    {"&& true", 0, 0, "expected a value, found '&&'"},
    {"token.sub == == '1'", 0, 13, "expected a value, found '=='"},
    {"token.sub == '1' token.sub", 0, 17, "expected an operator or the end of the expression, found 'token'"},
    {"true true", 0, 5, "found 'true'"},
    {"true (", 0, 5, "found '('"},
    {"-token.age == 1", 0, 0, "'-' is only allowed before a number"},
    {"--1 == 1", 0, 0, "'-' is only allowed before a number"},
    {"1 - 1 == 0", 0, 2, "found '-'"},
    /* comparisons do not chain */
    {"1 < 2 < 3", 0, 6, "comparisons do not chain (a < b < c): write a < b && b < c"},
    {"token.flag == true == true", 0, 19, "comparisons do not chain"},
    {"'a' in token.roles in [true]", 0, 19, "comparisons do not chain"},
    {"1 <= 2 >= 1", 0, 7, "comparisons do not chain"},
    /* numbers */
    {"9223372036854775808 == 1", 0, 0, "integer literal is out of range (64-bit)"},
    {"99999999999999999999 == 1", 0, 0, "integer literal is out of range (64-bit)"},
    {"token.age == 18446744073709551616", 0, 13, "out of range"},
    {"-9223372036854775809 < 0", 0, 1, "integer literal is out of range (64-bit)"},
    {"[9223372036854775808] == [1]", 0, 1, "out of range"},
    {"1.5 > 1", 0, 1, "malformed number: only decimal integers are supported"},
    {"token.ratio < 0.6", 0, 15, "only decimal integers"},
    {"1e3 > 1", 0, 1, "only decimal integers"},
    {"0x10 == 16", 0, 1, "only decimal integers"},
    {"1_000 == 1000", 0, 1, "only decimal integers"},
    {"007 == 7", 0, 0, "malformed number: no leading zeros (octal is not supported)"},
    {"-01 == -1", 0, 1, "no leading zeros"},
};
#define NERR (sizeof(err_rows) / sizeof(err_rows[0]))

START_TEST(test_error_table)
{
    const err_row *row = &err_rows[_i];
    compile_fails(row->src, row->len ? row->len : strlen(row->src), row->offset, row->fragment);
}
END_TEST

/* ---- limits -------------------------------------------------------------------------------- */

START_TEST(test_length_limit)
{
    /* exactly FX_POLICY_MAX_EXPR_BYTES: fine; one more: refused before anything else */
    char *src = repeat("true", " ", FX_POLICY_MAX_EXPR_BYTES - 4, "");
    ck_assert_uint_eq(strlen(src), FX_POLICY_MAX_EXPR_BYTES);
    fx_expr *e = compile_ok(src, strlen(src));
    ck_assert_int_eq(fx_expr_eval(e, &req), 1);
    fx_expr_free(e);
    free(src);
    src = repeat("true", " ", FX_POLICY_MAX_EXPR_BYTES - 3, "");
    compile_fails(src, strlen(src), FX_POLICY_MAX_EXPR_BYTES, "expression is longer than 4096 bytes");
    free(src);
    /* a long string literal near the limit */
    src = repeat("token.sub != '", "x", FX_POLICY_MAX_EXPR_BYTES - 15, "'");
    ck_assert_uint_eq(strlen(src), FX_POLICY_MAX_EXPR_BYTES);
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
    /* the length check comes first: a NUL beyond the limit is not what is reported */
    src = repeat("", "\xff", FX_POLICY_MAX_EXPR_BYTES + 1, "");
    compile_fails(src, strlen(src), FX_POLICY_MAX_EXPR_BYTES, "longer than");
    free(src);
}
END_TEST

typedef struct nest_row {
    const char *pre, *unit, *mid, *close, *post;
    size_t unit_len; /* bytes per level before the core: the offset of the error */
} nest_row;

/* Each builds FX_EXPR_MAX_DEPTH levels (compiles) and one more (refused at that level). */
static const nest_row nest_rows[] = {
    {"", "(", "true", ")", "", 1},
    {"", "!", "true", "", "", 1},
    {"", "[", "1", "]", " != []", 1},
    {"", "lower(", "'a'", ")", " == 'a'", 6},
    {"", "size([", "1", "]) > 0 && true", "", 6}, /* each level: a call and a list */
};
#define NNEST (sizeof(nest_rows) / sizeof(nest_rows[0]))

static char *nest(const nest_row *r, size_t levels)
{
    char *open = repeat(r->pre, r->unit, levels, r->mid);
    char *all = repeat(open, r->close, levels, r->post);
    free(open);
    return all;
}

START_TEST(test_nesting_limit)
{
    const nest_row *r = &nest_rows[_i];
    size_t levels = FX_EXPR_MAX_DEPTH;
    if (strcmp(r->unit, "size([") == 0)
        levels = FX_EXPR_MAX_DEPTH / 2;
    char *src = nest(r, levels);
    fx_expr *e = compile_ok(src, strlen(src));
    fx_expr_eval(e, &req);
    fx_expr_free(e);
    free(src);
    src = nest(r, levels + 1);
    fx_expr_error err;
    e = fx_expr_compile(src, strlen(src), &err);
    ck_assert_msg(e == NULL, "%zu levels of '%s' compiled", levels + 1, r->unit);
    ck_assert_str_eq(err.msg, "expression nests deeper than 32 levels");
    free(src);
}
END_TEST

START_TEST(test_nesting_offsets)
{
    /* the error points at the opener that goes one level too deep */
    char *src = repeat("", "(", FX_EXPR_MAX_DEPTH + 1, "true");
    compile_fails(src, strlen(src), FX_EXPR_MAX_DEPTH, "nests deeper than 32 levels");
    free(src);
    src = repeat("", "!", FX_EXPR_MAX_DEPTH + 1, "true");
    compile_fails(src, strlen(src), FX_EXPR_MAX_DEPTH, "nests deeper than 32 levels");
    free(src);
    /* 33 chained method calls: each is a level (evaluation recurses through them) */
    src = repeat("token.sub", ".lower()", FX_EXPR_MAX_DEPTH, " == '42'");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
    src = repeat("token.sub", ".lower()", FX_EXPR_MAX_DEPTH + 1, " == '42'");
    compile_fails(src, strlen(src), strlen("token.sub") + 8 * FX_EXPR_MAX_DEPTH + 1,
                  "nests deeper than 32 levels");
    free(src);
    /* depth is nesting, not length: many levels one after the other are fine */
    src = repeat("true", " && ((((true))))", 100, "");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
}
END_TEST

START_TEST(test_path_segment_limit)
{
    /* a field path has at most 64 parts (selections and indexes) */
    char *src = repeat("has(token", ".a", 64, ")");
    ck_assert_int_eq(value_of(src, &req), 0);
    free(src);
    src = repeat("has(token", ".a", 65, ")");
    compile_fails(src, 0, 4 + 5 + 2 * 64 + 1, "a field path has at most 64 parts");
    free(src);
    src = repeat("has(token", "[0]", 64, ")");
    ck_assert_int_eq(value_of(src, &req), 0);
    free(src);
    src = repeat("has(token", "[0]", 65, ")");
    fx_expr_error err;
    ck_assert_ptr_null(fx_expr_compile(src, strlen(src), &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "at most 64 parts"));
    free(src);
}
END_TEST

START_TEST(test_long_chains)
{
    /* && and || chains are one node each: no limit but the length */
    char *src = repeat("true", " && true", 500, "");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
    src = repeat("true", " && true", 500, " && false");
    ck_assert_int_eq(value_of(src, &req), 0);
    free(src);
    src = repeat("false", " || false", 450, " || true");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
    src = repeat("token.flag", " && token.flag || token.off", 120, "");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
}
END_TEST

START_TEST(test_list_literal_limit)
{
    /* 256 items compile; the 257th is refused at its own offset */
    char *src = repeat("300 in [", "1, ", 255, "300]");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
    src = repeat("300 in [", "1, ", 256, "300]");
    compile_fails(src, strlen(src), 8 + 3 * 256, "a list literal has at most 256 items");
    free(src);
    src = repeat("'b' in [", "'a', ", 255, "'b']");
    ck_assert_int_eq(value_of(src, &req), 1);
    free(src);
}
END_TEST

/* ---- explain ----------------------------------------------------------------------------- */

typedef struct explain_row {
    const char *src;
    const fx_authz_request *r;
    int want;
    const char *why;     /* NULL: the whole expression */
    const char *missing; /* "" : none */
} explain_row;

static const explain_row explain_rows[] = {
    /* the first false conjunct of a top-level && */
    {"token.sub == '42' && token.status == 'suspended' && token.nope == 1", &req, 0,
     "token.status == 'suspended'", ""},
    {"token.sub == '42' && token.status == 'active'", &req, 1, NULL, ""},
    {"token.nope == 1 && token.sub == '42'", &req, 0, "token.nope == 1", "token.nope"},
    {"token.sub == '42' && has(token.email) && 'admin' in token.roles", &req, 0,
     "'admin' in token.roles", ""},
    {"true && (token.flag || token.nope == 1) && false", &req, 0, "false", ""},
    {"true && size(token.roles) > 5", &req, 0, "size(token.roles) > 5", ""},
    {"true && token.roles.size() > 5", &req, 0, "token.roles.size() > 5", ""},
    {"true && [1, 2] == [1]", &req, 0, "[1, 2] == [1]", ""},
    {"true && token.sub.startsWith('9')", &req, 0, "token.sub.startsWith('9')", ""},
    {"true   &&   request.method == 'GET'  ", &req, 0, "request.method == 'GET'", ""},
    /* short-circuit: what is not evaluated is not looked for */
    {"false && token.nope == 1", &req, 0, "false", ""},
    {"token.off && token.nope == 1", &req, 0, "token.off", ""},
    {"true || token.nope == 1", &req, 1, NULL, ""},
    {"false || token.off && token.nope == 1 || token.sub == '0'", &req, 0, NULL, ""},
    /* not a top-level &&: the whole expression */
    {"token.sub == 'x' || token.nope == 1", &req, 0, NULL, "token.nope"},
    {"token.sub == 'x'", &req, 0, NULL, ""},
    {"!token.flag", &req, 0, NULL, ""},
    /* the first missing field, as written */
    {"token.a1 == 1 || token.a2 == 1", &req, 0, NULL, "token.a1"},
    {"token.org.nope.x == 1", &req, 0, NULL, "token.org.nope.x"},
    {"request.headers['X-Nope'] == 'a'", &req, 0, NULL, "request.headers['X-Nope']"},
    {"request.params.nope == 'a'", &req, 0, NULL, "request.params.nope"},
    {"has(token.email2)", &req, 0, NULL, "token.email2"},
    {"'x' in context.nope", &req, 0, NULL, "context.nope"},
    {"token.roles[9] == 'a'", &req, 0, NULL, "token.roles[9]"},
    {"token.sub == 'x'", &anon, 0, NULL, "token.sub"},
    {"true && has(token)", &anon, 0, "has(token)", "token"},
    /* a type mismatch is not a missing field */
    {"token.age == '30'", &req, 0, NULL, ""},
};
#define NEXPLAIN (sizeof(explain_rows) / sizeof(explain_rows[0]))

START_TEST(test_explain)
{
    const explain_row *row = &explain_rows[_i];
    fx_expr *e = compile_ok(row->src, strlen(row->src));
    fx_authz_str why = {NULL, 99}, missing = {NULL, 99};
    int v = fx_expr_explain(e, row->r, &why, &missing);
    ck_assert_int_eq(v, row->want);
    ck_assert_int_eq(fx_expr_eval(e, row->r), row->want);
    /* on false: the conjunct, or the whole expression (as written, it has no outer spaces
     * in these rows); on true, why is not looked at */
    const char *want_why = row->why ? row->why : row->src;
    ck_assert_ptr_nonnull(why.p);
    if (row->want == 0)
        ck_assert_msg(why.len == strlen(want_why) && memcmp(why.p, want_why, why.len) == 0,
                      "'%s': why is '%.*s', expected '%s'", row->src, (int)why.len, why.p, want_why);
    ck_assert_ptr_nonnull(missing.p);
    ck_assert_msg(missing.len == strlen(row->missing) &&
                      memcmp(missing.p, row->missing, missing.len) == 0,
                  "'%s': missing is '%.*s', expected '%s'", row->src, (int)missing.len, missing.p,
                  row->missing);
    fx_expr_free(e);
}
END_TEST

START_TEST(test_explain_borrows_from_the_expression)
{
    /* why and missing point into the expression's own copy of the source */
    char *src = strdup("token.sub == '42' && token.nope == 1");
    fx_expr *e = compile_ok(src, strlen(src));
    memset(src, 'x', strlen(src));
    free(src);
    fx_authz_str why, missing;
    ck_assert_int_eq(fx_expr_explain(e, &req, &why, &missing), 0);
    ck_assert_int_eq((int)why.len, 15);
    ck_assert(memcmp(why.p, "token.nope == 1", 15) == 0);
    ck_assert(missing.len == 10 && memcmp(missing.p, "token.nope", 10) == 0);
    /* explain after explain: missing starts empty again */
    ck_assert_int_eq(fx_expr_explain(e, &anon, &why, &missing), 0);
    ck_assert(missing.len == 9 && memcmp(missing.p, "token.sub", 9) == 0);
    fx_expr_free(e);
    fx_expr_free(NULL);
}
END_TEST

/* ---- needs ------------------------------------------------------------------------------- */

typedef struct needs_row {
    const char *src;
    unsigned needs;
} needs_row;

static const needs_row needs_rows[] = {
    {"true", 0},
    {"request.method == 'GET' && request.path == '/' && request.route == 'r'", 0},
    {"request.headers['a'] == 'b'", FX_AUTHZ_NEEDS_HEADERS},
    {"has(request.query.x)", FX_AUTHZ_NEEDS_QUERY},
    {"'id' in request.params", FX_AUTHZ_NEEDS_PARAMS},
    {"context.ip == '1'", FX_AUTHZ_NEEDS_CONTEXT},
    {"has(token)", FX_AUTHZ_NEEDS_TOKEN},
    {"false && token.sub == request.params.id", FX_AUTHZ_NEEDS_TOKEN | FX_AUTHZ_NEEDS_PARAMS},
    {"size(request.headers) > 1 || request.query.a == context.b || token.x == 1",
     FX_AUTHZ_NEEDS_HEADERS | FX_AUTHZ_NEEDS_QUERY | FX_AUTHZ_NEEDS_CONTEXT | FX_AUTHZ_NEEDS_TOKEN},
    {"'token' == 'context'", 0},
};
#define NNEEDS (sizeof(needs_rows) / sizeof(needs_rows[0]))

START_TEST(test_needs)
{
    const needs_row *row = &needs_rows[_i];
    fx_expr *e = compile_ok(row->src, strlen(row->src));
    ck_assert_uint_eq(fx_expr_needs(e), row->needs);
    fx_expr_free(e);
}
END_TEST

/* ---- no allocation while evaluating -------------------------------------------------------- */

#include "alloc_hooks.h"

#ifdef HAVE_ALLOC_HOOKS
START_TEST(test_eval_does_not_allocate)
{
    alloc_hooks_install();
    for (size_t i = 0; i < NEVAL; i++) {
        fx_expr_error err;
        fx_expr *e = fx_expr_compile(eval_rows[i].src, strlen(eval_rows[i].src), &err);
        if (!e)
            continue;
        fx_authz_str why, missing;
        alloc_counting = 1;
        fx_expr_eval(e, &req);
        fx_expr_eval(e, &anon);
        fx_expr_explain(e, &req, &why, &missing);
        fx_expr_explain(e, &anon, &why, &missing);
        alloc_counting = 0;
        ck_assert_msg(alloc_count == 0, "'%s' allocated %zu times while evaluating", eval_rows[i].src,
                      (size_t)alloc_count);
        fx_expr_free(e);
    }
}
END_TEST
#endif

/* ---- regressions: bugs found in review, one test each --------------------------------------- */

START_TEST(test_index_literal_out_of_range)
{
    /* 2^63 is refused everywhere else ("integer literal is out of range"); as a constant
     * index it was read as [0] (the lexer's INT64_MIN sentinel cast to a list index) */
    compile_fails("token.roles[9223372036854775808] == 'editor'", 0, 12, "out of range");
}
END_TEST

START_TEST(test_index_by_field)
{
    /* [expr] whose expression is itself a field path: the inner path's segments must not
     * be counted into the outer path (token.roles[token.idx] once read token.roles.idx[..]) */
    ck_assert_int_eq(value_of("token.roles[token.idx] == 'Admin'", &req), 1);
    ck_assert_int_eq(value_of("token.roles[(token.idx)] == 'Admin'", &req), 1);
    ck_assert_int_eq(value_of("token[token.key] == '42'", &req), 1);
    ck_assert_int_eq(value_of("token.teams[token.idx].name == 'blue'", &req), 1);
}
END_TEST

START_TEST(test_index_by_field_of_a_request_map)
{
    /* the same, where it was a false compile error: "request.headers values are strings and
     * have no fields" */
    ck_assert_int_eq(value_of("request.headers[token.key] == 'x'", &req), 0);
    ck_assert_int_eq(value_of("request.params[request.query.Flag] == 'x'", &req), 0);
    ck_assert_int_eq(value_of("has(request.query[context.tenant])", &req), 0);
}
END_TEST

START_TEST(test_index_by_field_explain)
{
    fx_expr *e = compile_ok("token.roles[token.nope] == 'a'", strlen("token.roles[token.nope] == 'a'"));
    fx_authz_str why, missing;
    ck_assert_int_eq(fx_expr_explain(e, &req, &why, &missing), 0);
    ck_assert_msg(missing.len == 10 && memcmp(missing.p, "token.nope", 10) == 0,
                  "missing is '%.*s', expected 'token.nope'", (int)missing.len, missing.p);
    fx_expr_free(e);
}
END_TEST

START_TEST(test_index_by_field_nesting_is_linear)
{
    /* with overlapping segments, check_node visited the inner paths again for every outer
     * one: compile time doubled per level (26 levels: about a second, 32: minutes); the
     * tcase timeout catches that */
    char *open = repeat("token", "[token", FX_EXPR_MAX_DEPTH, ".idx");
    char *src = repeat(open, "]", FX_EXPR_MAX_DEPTH, " == 1");
    fx_expr *e = compile_ok(src, strlen(src));
    fx_expr_eval(e, &req);
    fx_expr_free(e);
    free(open);
    free(src);
}
END_TEST

START_TEST(test_static_checks_inside_has)
{
    /* the same comparison is refused outside has(); check_node must look into has() too */
    compile_fails("token.roles[(1 == 'x')] == 'a'", 0, 15, "never compare");
    compile_fails("has(token.roles[(1 == 'x')])", 0, 19, "never compare");
    compile_fails("has(token.roles[[0]])", 0, 16, "an index must be a string or an int");
}
END_TEST

START_TEST(test_explain_why_keeps_parentheses)
{
    /* why is "the part of the source that made it false": a span that starts or ends in a
     * parenthesized operand must include its parentheses */
    static const struct {
        const char *src, *why;
    } rows[] = {
        {"true && !(token.age == 30)", "!(token.age == 30)"},
        {"true && (token.age) == 31", "(token.age) == 31"},
        {"true && token.age == (31)", "token.age == (31)"},
        {"true && (false || token.off)", "(false || token.off)"},
    };
    /* not a top-level &&: the whole expression */
    static const char *const whole[] = {
        "!(token.sub == '42')",
        "(false && token.nope == 1) || token.sub == '0'",
        "(token.age) == 31",
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        fx_expr *e = compile_ok(whole[i], strlen(whole[i]));
        fx_authz_str why, missing;
        ck_assert_int_eq(fx_expr_explain(e, &req, &why, &missing), 0);
        ck_assert_msg(why.len == strlen(whole[i]) && memcmp(why.p, whole[i], why.len) == 0,
                      "'%s': why is '%.*s'", whole[i], (int)why.len, why.p);
        fx_expr_free(e);
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fx_expr *e = compile_ok(rows[i].src, strlen(rows[i].src));
        fx_authz_str why, missing;
        ck_assert_int_eq(fx_expr_explain(e, &req, &why, &missing), 0);
        ck_assert_msg(why.len == strlen(rows[i].why) && memcmp(why.p, rows[i].why, why.len) == 0,
                      "'%s': why is '%.*s', expected '%s'", rows[i].src, (int)why.len, why.p,
                      rows[i].why);
        fx_expr_free(e);
    }
}
END_TEST

START_TEST(test_missing_inside_list_literal)
{
    /* "a missing field makes its comparison false": also when it sits in a list literal */
    ck_assert_int_eq(value_of("[token.nope] == [1]", &req), 0);
    ck_assert_int_eq(value_of("[token.nope] != [1]", &req), 0);
    ck_assert_int_eq(value_of("[1, token.nope] != [1, 2]", &req), 0);
    ck_assert_int_eq(value_of("[[token.nope]] != [[1]]", &req), 0);
    /* ... whatever the lengths: the lists are not comparable, not unequal */
    ck_assert_int_eq(value_of("[1, token.nope] != [1, 2, 3]", &req), 0);
    ck_assert_int_eq(value_of("token.roles != [token.nope]", &req), 0);
}
END_TEST

START_TEST(test_missing_names_the_field)
{
    /* `missing` is the field ("token.roles"), also when it was written in parentheses */
    fx_expr *e = compile_ok("(token.nope) == 1", 17);
    fx_authz_str why, missing;
    ck_assert_int_eq(fx_expr_explain(e, &req, &why, &missing), 0);
    ck_assert_msg(missing.len == 10 && memcmp(missing.p, "token.nope", 10) == 0,
                  "missing is '%.*s', expected 'token.nope'", (int)missing.len, missing.p);
    fx_expr_free(e);
}
END_TEST

START_TEST(test_function_call_across_a_line_break)
{
    /* a line break is whitespace everywhere (method calls too), also between a function
     * name and its '(' — YAML block scalars keep line breaks */
    ck_assert_int_eq(value_of("has\n(token.sub)", &req), 1);
    ck_assert_int_eq(value_of("size\r\n(token.roles) == 2", &req), 1);
}
END_TEST

START_TEST(test_zero_request)
{
    /* an all-zero request: empty strings whose pointers are NULL, no params, no token.
     * Comparing them must not pass NULL to memcmp (UBSan: nonnull argument). */
    ck_assert_int_eq(value_of("request.method == ''", &zero), 1);
    ck_assert_int_eq(value_of("request.route < 'a'", &zero), 1);
    ck_assert_int_eq(value_of("request.path.startsWith('')", &zero), 1);
    ck_assert_int_eq(value_of("lower(request.route) == ''", &zero), 1);
    ck_assert_int_eq(value_of("size(request.path) == 0", &zero), 1);
    ck_assert_int_eq(value_of("has(request.params.x)", &zero), 0);
}
END_TEST

/* ---- the suite ------------------------------------------------------------------------------- */

static Suite *expr_suite(void)
{
    Suite *s = suite_create("expr");
    TCase *tc = tcase_create("eval");
    tcase_add_loop_test(tc, test_eval_table, 0, (int)NEVAL);
    tcase_add_loop_test(tc, test_eval_anonymous, 0, (int)NANON);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_error_table, 0, (int)NERR);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_length_limit);
    tcase_add_loop_test(tc, test_nesting_limit, 0, (int)NNEST);
    tcase_add_test(tc, test_nesting_offsets);
    tcase_add_test(tc, test_long_chains);
    tcase_add_test(tc, test_path_segment_limit);
    tcase_add_test(tc, test_list_literal_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("explain");
    tcase_add_loop_test(tc, test_explain, 0, (int)NEXPLAIN);
    tcase_add_test(tc, test_explain_borrows_from_the_expression);
    tcase_add_loop_test(tc, test_needs, 0, (int)NNEEDS);
#ifdef HAVE_ALLOC_HOOKS
    tcase_add_test(tc, test_eval_does_not_allocate);
#endif
    suite_add_tcase(s, tc);
    tc = tcase_create("regressions");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_index_literal_out_of_range);
    tcase_add_test(tc, test_index_by_field);
    tcase_add_test(tc, test_index_by_field_of_a_request_map);
    tcase_add_test(tc, test_index_by_field_explain);
    tcase_add_test(tc, test_index_by_field_nesting_is_linear);
    tcase_add_test(tc, test_static_checks_inside_has);
    tcase_add_test(tc, test_explain_why_keeps_parentheses);
    tcase_add_test(tc, test_missing_inside_list_literal);
    tcase_add_test(tc, test_missing_names_the_field);
    tcase_add_test(tc, test_function_call_across_a_line_break);
    tcase_add_test(tc, test_zero_request);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    fixtures();
    SRunner *sr = srunner_create(expr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fx_authz_doc_free(token_doc);
    fx_authz_doc_free(context_doc);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

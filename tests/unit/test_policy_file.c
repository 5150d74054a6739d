/*
 * test_policy_file.c — Check suite "policy_file" for the YAML readers of
 * libfxauthz (authz/policy_file.c): policy files and policy test files,
 * through the public API only.
 *
 *   valid policies   the contract's example, every key, empty files; what the
 *                    builder got (ids, effects, positions, methods, routes)
 *   bad policies     one table row per broken file: the exact line:col of the
 *                    diagnostic and a fragment of its message
 *   when positions   an expression error inside `when` reported at its exact
 *                    byte of the file, for every YAML scalar style (through
 *                    expr.c's "unknown name" error at a known offset)
 *   all or nothing   one bad policy fails the whole set
 *   test files       every field, YAML → JSON by the core schema, errors in
 *                    a table like the policies', nothing appended on error
 *   files            add_file / load_file, read errors and the size limit,
 *                    the files of tests/data/policy (the fuzz seeds)
 *
 * The data directory comes from $FX_TEST_DATA, else FX_TEST_DATA_DIR.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ficus_authz.h"
#include "policy_internal.h"

static const char *const known_routes[] = {"documents-read", "documents-write", "health"};
#define NKNOWN (sizeof(known_routes) / sizeof(known_routes[0]))

/* ---- helpers ------------------------------------------------------------------------ */

static char *diags_text(const fx_authz_diags *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    fx_authz_diags_print(d, f);
    fclose(f);
    if (len > 3000) /* Check's messages are bounded */
        strcpy(buf + 2990, "...\n");
    return buf;
}

/* Is there a diagnostic at line:col whose message contains `frag`? */
static int has_diag(const fx_authz_diags *d, int line, int col, const char *frag)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].line == line && d->v[i].col == col && strstr(d->v[i].msg, frag))
            return 1;
    return 0;
}

#define ck_assert_diag(d, line, col, frag)                                                          \
    do {                                                                                            \
        char *all_ = diags_text(d);                                                                 \
        int ok_ = has_diag(d, line, col, frag);                                                     \
        ck_assert_msg(ok_, "expected %d:%d \"%s\"; got:\n%s", line, col, frag, all_);               \
        free(all_);                                                                                 \
    } while (0)

/* Loads one policy file from memory (routes known: known_routes); the set or NULL. */
static fx_policy_set *load_policies(const char *yaml, int *rc, fx_authz_diags *d)
{
    fx_policy_builder *b = fx_policy_builder_new(known_routes, NKNOWN);
    ck_assert_ptr_nonnull(b);
    *rc = fx_policy_builder_add_buffer(b, "p.yaml", yaml, strlen(yaml), d);
    return fx_policy_builder_finish(b, d);
}

static fx_policy_set *load_ok(const char *yaml)
{
    fx_authz_diags d = {0};
    int rc;
    fx_policy_set *s = load_policies(yaml, &rc, &d);
    char *all = diags_text(&d);
    ck_assert_msg(rc == 0 && s && d.n == 0, "expected a set; got rc %d and:\n%s", rc, all);
    free(all);
    fx_authz_diags_free(&d);
    return s;
}

static const char *json_of(const fx_authz_doc *doc, char *buf, size_t cap)
{
    char *s = json_dumps(DOC_JSON(doc), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ck_assert_ptr_nonnull(s);
    snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

/* ---- valid policy files ------------------------------------------------------------------ */

static const char contract[] = "policies:\n"
                               "  - id: documents-read\n"
                               "    effect: permit                        # permit | forbid\n"
                               "    routes: [documents-read]              # optional\n"
                               "    when: \"'documents:read' in token.scope\"\n"
                               "  - id: owner-or-admin-writes\n"
                               "    effect: permit\n"
                               "    routes: [documents-write]\n"
                               "    when: \"token.sub == request.params.id || 'admin' in token.roles\"\n"
                               "  - id: suspended\n"
                               "    effect: forbid\n"
                               "    when: \"token.status == 'suspended'\"\n";

START_TEST(test_contract_example)
{
    fx_policy_set *s = load_ok(contract);
    ck_assert_uint_eq(fx_policy_set_count(s), 3);
    ck_assert_str_eq(fx_policy_id(s, 0), "documents-read");
    ck_assert_str_eq(fx_policy_id(s, 1), "owner-or-admin-writes");
    ck_assert_str_eq(fx_policy_id(s, 2), "suspended");
    ck_assert_int_eq(fx_policy_effect_of(s, 0), FX_POLICY_PERMIT);
    ck_assert_int_eq(fx_policy_effect_of(s, 2), FX_POLICY_FORBID);
    int line = 0, col = 0;
    ck_assert_str_eq(fx_policy_file(s, 1, &line, &col), "p.yaml");
    ck_assert_int_eq(line, 6); /* the list item: "  - id: ..." */
    ck_assert_int_eq(col, 5);
    fx_policy_set_unref(s);
}
END_TEST

/* Routes and methods reach the builder: a GET-only policy on one route. */
START_TEST(test_routes_and_methods_applied)
{
    fx_policy_set *s = load_ok("policies:\n"
                               "  - id: read-only\n"
                               "    description: GET and HEAD on documents-read\n"
                               "    effect: permit\n"
                               "    routes: [documents-read]\n"
                               "    methods: [GET, HEAD]\n"
                               "    when: 'true'\n");
    ck_assert_uint_eq(fx_policy_set_count(s), 1);
    int r = fx_policy_set_route(s, "documents-read", 14), w = fx_policy_set_route(s, "documents-write", 15);
    ck_assert_int_ge(r, 0);
    fx_authz_request req = {.method = {"GET", 3}, .path = {"/d/1", 4}, .route = {"documents-read", 14},
                            .route_index = r};
    fx_authz_decision dec;
    fx_policy_eval(s, &req, &dec);
    ck_assert_int_eq(dec.allow, 1);
    req.method = (fx_authz_str){"POST", 4};
    fx_policy_eval(s, &req, &dec);
    ck_assert_int_eq(dec.allow, 0);
    req.method = (fx_authz_str){"HEAD", 4};
    req.route_index = w;
    req.route = (fx_authz_str){"documents-write", 15};
    fx_policy_eval(s, &req, &dec);
    ck_assert_int_eq(dec.allow, 0);
    fx_policy_set_unref(s);
}
END_TEST

/* A file that means no policies says `policies: []` (an empty file is an error: see the
 * table); an id may be written as a number. */
START_TEST(test_empty_and_scalar_forms)
{
    static const char *const empty[] = {
        "policies: []\n",
        "---\npolicies: [] # none yet\n...\n",
        "\xef\xbb\xbf# a byte order mark\npolicies: []\n",
    };
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        fx_policy_set *s = load_ok(empty[i]);
        ck_assert_uint_eq(fx_policy_set_count(s), 0);
        fx_policy_set_unref(s);
    }
    fx_policy_set *s = load_ok("policies:\n- {id: 42, effect: forbid, when: true}\n- id: a:b.c_d-e\n"
                               "  effect: permit\n  when: >-\n    true\n");
    ck_assert_uint_eq(fx_policy_set_count(s), 2);
    ck_assert_str_eq(fx_policy_id(s, 0), "42");
    ck_assert_str_eq(fx_policy_id(s, 1), "a:b.c_d-e");
    fx_policy_set_unref(s);
}
END_TEST

/* Two files into one builder: positions name their own file; a duplicate id across files is
 * the builder's error, at the second id. */
START_TEST(test_two_files)
{
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    const char *a = "policies:\n  - id: one\n    effect: permit\n    when: 'true'\n";
    const char *c = "policies:\n  - id: two\n    effect: permit\n    when: 'true'\n";
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "a.yaml", a, strlen(a), &d), 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "c.yaml", c, strlen(c), &d), 0);
    fx_policy_set *s = fx_policy_builder_finish(b, &d);
    ck_assert_ptr_nonnull(s);
    int line, col;
    ck_assert_str_eq(fx_policy_file(s, 1, &line, &col), "c.yaml");
    fx_policy_set_unref(s);

    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "a.yaml", a, strlen(a), &d), 0);
    const char *dup = "policies:\n  - effect: permit\n    id:   one\n    when: 'true'\n";
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "d.yaml", dup, strlen(dup), &d), -1);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_diag(&d, 3, 11, "one");
    ck_assert_str_eq(d.v[0].file, "d.yaml");
    fx_authz_diags_free(&d);
}
END_TEST

/* ---- broken policy files ------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *yaml;
    int line, col;
    const char *frag;
} bad_case;

#define POLICY(body) "policies:\n  - id: a\n    effect: permit\n" body
static const bad_case bad_policies[] = {
    /* the input itself */
    {"unterminated flow list", "policies: [\n  {id: a, effect: permit, when: 'true'}\n", 3, 1,
     "YAML syntax error: did not find expected ',' or ']'"},
    {"unterminated, no line break at the end", "policies: [a", 1, 13, "did not find expected ',' or ']'"},
    {"unbalanced flow mapping", "policies: [{id: a, effect: permit, when: 'true']\n", 1, 48,
     "YAML syntax error"},
    {"unterminated quote", POLICY("    when: \"token.sub == 'a'\n"), 5, 1,
     "found unexpected end of stream (while scanning a quoted scalar that starts at line 4, column 11)"},
    {"bad indentation", "policies:\n  - id: a\n     effect: permit\n", 3, 12, "mapping values are not allowed"},
    {"tab indentation", "policies:\n\t- id: a\n", 2, 1, "tabs"},
    {"invalid UTF-8", "policies:\n  - id: a\n    description: caf\xe9\n", 3, 21, "not valid UTF-8"},
    {"truncated UTF-8", "policies:\n  - id: \xe2\x82", 2, 9, "not valid UTF-8"},
    {"control character", "policies:\n  - id: a\x01\n", 2, 10, "control character U+0001"},
    {"alias", "policies:\n  - *p\n", 2, 5, "alias '*p': anchors and aliases are not allowed"},
    {"anchor", "policies:\n  - &p {id: a, effect: permit, when: 'true'}\n  - *p\n", 2, 5,
     "anchor '&p': anchors and aliases are not allowed"},
    {"billion laughs", "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n", 1, 4, "anchor '&a'"},
    {"tag", "policies:\n  - id: !!str a\n", 2, 9, "YAML tag '!!str'"},
    {"second document", "policies: []\n---\npolicies: []\n", 2, 1, "a second YAML document"},
    {"second document after end marker", "policies: []\n...\n--- {}\n", 3, 1, "a second YAML document"},
    {"nesting too deep",
     "policies: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     1, 74, "nesting is deeper than 64 levels"}, /* the top-level mapping is the first level */
    /* the file's shape; an empty file never means "no policies" (a truncated file would lose
     * its forbids on a reload): that is `policies: []` */
    {"empty file", "", 1, 1, "the file has no policies (it is empty or null)"},
    {"comments only", "# nothing\n", 1, 1, "a file that means none says `policies: []`"},
    {"an empty document", "# a\n\n---\n# b\n", 5, 1, "the file has no policies"},
    {"policies null", "policies:\n", 1, 1, "policies: empty; write `policies: []`"},
    {"policies ~", "policies: ~\n", 1, 1, "policies: empty"},
    {"no policies key", "{}\n", 1, 1, "no `policies` key"},
    {"top-level list", "- id: a\n", 1, 1, "expected a mapping with a `policies` list at the top level, got a list"},
    {"top-level string", "policies\n", 1, 1, "got a string"},
    {"unknown top-level key", "polices: []\n", 1, 1, "unknown top-level key 'polices' (did you mean 'policies'?)"},
    {"unknown top-level key, nothing close", "rules: []\n", 1, 1, "a policy file has one key: policies"},
    {"policies is a mapping", "policies: {id: a}\n", 1, 11, "policies: expected a list of policies, got a mapping"},
    {"policy is a string", "policies:\n  - documents-read\n", 2, 5, "policies[0]: expected a policy"},
    {"duplicate top-level key", "policies: []\npolicies: []\n", 2, 1,
     "duplicate key 'policies' (first at line 1, column 1)"},
    {"non-scalar key", "policies:\n  - {[a]: 1, id: a, effect: permit, when: 'true'}\n", 2, 6,
     "a key must be a name, not a list"},
    /* the keys of a policy */
    {"unknown key", POLICY("    wen: 'true'\n    when: 'true'\n"), 4, 5,
     "policies[0]: unknown key 'wen' (did you mean 'when'?)"},
    {"unknown key, nothing close", POLICY("    priority: 1\n    when: 'true'\n"), 4, 5,
     "a policy has id, effect, routes, methods, when, description"},
    {"duplicate key", POLICY("    when: 'true'\n    effect: forbid\n"), 5, 5,
     "duplicate key 'effect' (first at line 3, column 5)"},
    {"missing id", "policies:\n  - effect: permit\n    when: 'true'\n", 2, 5, "policies[0]: missing `id`"},
    {"missing effect", "policies:\n  - id: a\n    when: 'true'\n", 2, 5, "missing `effect` (permit or forbid)"},
    {"missing when", "policies:\n  - id: a\n    effect: permit\n", 2, 5, "missing `when`"},
    {"missing when in flow", "policies: [{id: a, effect: permit}]\n", 1, 12, "missing `when`"},
    {"id is a list", "policies:\n  - id: [a]\n    effect: permit\n    when: 'true'\n", 2, 9,
     "policies[0].id: expected an id (a string), got a list"},
    {"id is empty", "policies:\n  - id:\n    effect: permit\n    when: 'true'\n", 2, 8, "got an empty value"},
    {"id is an empty string", "policies:\n  - id: ''\n    effect: permit\n    when: 'true'\n", 2, 9,
     "got an empty string"},
    {"id with a space", "policies:\n  - id: read docs\n    effect: permit\n    when: 'true'\n", 2, 9,
     "'read docs' has ' ' at byte 5: an id is made of letters, digits and . _ : -"},
    {"id with a slash", "policies:\n  - id: \"a/b\"\n    effect: permit\n    when: 'true'\n", 2, 9, "has '/'"},
    {"id too long",
     "policies:\n  - id: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaa\n    effect: permit\n    when: 'true'\n",
     2, 9, "the id is 130 bytes long; at most 128"},
    {"effect misspelled", "policies:\n  - id: a\n    effect: permt\n    when: 'true'\n", 3, 13,
     "expected permit or forbid, got 'permt' (did you mean 'permit'?)"},
    {"effect in capitals", "policies:\n  - id: a\n    effect: Forbid\n    when: 'true'\n", 3, 13,
     "(did you mean 'forbid'?)"},
    {"effect far off", "policies:\n  - id: a\n    effect: allow\n    when: 'true'\n", 3, 13,
     "expected permit or forbid, got 'allow'"},
    {"effect is a list", "policies:\n  - id: a\n    effect: [permit]\n    when: 'true'\n", 3, 13,
     "expected permit or forbid, got a list"},
    {"empty when", POLICY("    when: \"\"\n"), 4, 11, "empty `when`: write `when: \"true\"` to match every request"},
    {"null when", POLICY("    when:\n"), 4, 10, "empty `when`"},
    {"blank when", POLICY("    when: \" \\t \\n \"\n"), 4, 11, "empty `when`"},
    {"when is a list", POLICY("    when: [a, b]\n"), 4, 11,
     "policies[0].when: expected an expression (a string), got a list"},
    {"when is a mapping", POLICY("    when:\n      a: b\n"), 5, 7, "got a mapping"},
    {"routes empty", POLICY("    routes: []\n    when: 'true'\n"), 4, 13,
     "omit `routes` to apply the policy to every route"},
    {"routes null", POLICY("    routes:\n    when: 'true'\n"), 4, 12, "got an empty value (omit `routes`"},
    {"routes a string", POLICY("    routes: documents-read\n    when: 'true'\n"), 4, 13,
     "expected a list of route names, got a string (write [documents-read])"},
    {"route empty string", POLICY("    routes: [documents-read, '']\n    when: 'true'\n"), 4, 30,
     "routes[1]: expected a route name, got an empty string"},
    {"route a list", POLICY("    routes: [[documents-read]]\n    when: 'true'\n"), 4, 14,
     "routes[0]: expected a route name, got a list"},
    {"unknown route", POLICY("    routes: [health, documents-raed]\n    when: 'true'\n"), 4, 22,
     "documents-raed"},
    {"methods lower case", POLICY("    methods: [GET, post]\n    when: 'true'\n"), 4, 20,
     "methods[1]: methods are case-sensitive: did you mean 'POST'?"},
    {"methods mixed case", POLICY("    methods:\n      - Get\n    when: 'true'\n"), 5, 9,
     "methods are case-sensitive: did you mean 'GET'?"},
    {"methods not a token", POLICY("    methods: ['GET /']\n    when: 'true'\n"), 4, 15, "is not an HTTP method"},
    {"methods empty", POLICY("    methods: []\n    when: 'true'\n"), 4, 14,
     "omit `methods` to apply the policy to every method"},
    {"methods a mapping", POLICY("    methods: {GET: 1}\n    when: 'true'\n"), 4, 14,
     "expected a list of HTTP methods, got a mapping"},
    {"description a list", POLICY("    description: [a]\n    when: 'true'\n"), 4, 18,
     "description: expected a string, got a list"},
    {"second policy's index in the path", "policies:\n  - {id: a, effect: permit, when: 'true'}\n  - {id: b}\n",
     3, 5, "policies[1]: missing `effect`"},
    /* expressions (expr.c's errors, positioned through when_map) */
    {"expression error", POLICY("    when: token.sub == bogus\n"), 4, 24, "policy 'a': when: "},
};
#undef POLICY
#define NBAD_POLICIES (sizeof(bad_policies) / sizeof(bad_policies[0]))

START_TEST(test_bad_policy)
{
    const bad_case *c = &bad_policies[_i];
    fx_authz_diags d = {0};
    int rc;
    fx_policy_set *s = load_policies(c->yaml, &rc, &d);
    char *all = diags_text(&d);
    ck_assert_msg(rc == -1 && !s, "%s: loaded (rc %d)", c->name, rc);
    ck_assert_msg(has_diag(&d, c->line, c->col, c->frag), "%s: expected %d:%d \"%s\"; got:\n%s", c->name,
                  c->line, c->col, c->frag, all);
    for (size_t i = 0; i < d.n; i++)
        ck_assert_str_eq(d.v[i].file, "p.yaml");
    free(all);
    fx_authz_diags_free(&d);
}
END_TEST

/* Every error of a file is reported, not just the first. */
START_TEST(test_all_errors_reported)
{
    fx_authz_diags d = {0};
    int rc;
    fx_policy_set *s = load_policies("policies:\n"
                                     "  - id: a\n"
                                     "    effect: permt\n"
                                     "    methods: [get]\n"
                                     "    when: ''\n"
                                     "  - id: b\n"
                                     "    effect: permit\n"
                                     "    routes: []\n"
                                     "    when: 'true'\n"
                                     "  - id: c\n"
                                     "    effect: forbid\n"
                                     "    when: token.x == bogus\n",
                                     &rc, &d);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(rc, -1);
    ck_assert_uint_eq(d.n, 5);
    ck_assert_diag(&d, 3, 13, "did you mean 'permit'?");
    ck_assert_diag(&d, 4, 15, "did you mean 'GET'?");
    ck_assert_diag(&d, 5, 11, "empty `when`");
    ck_assert_diag(&d, 8, 13, "routes");
    ck_assert_diag(&d, 12, 22, "bogus");
    fx_authz_diags_free(&d);
}
END_TEST

/* All or nothing: one good and one bad policy — the set is NULL. */
START_TEST(test_all_or_nothing)
{
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(known_routes, NKNOWN);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "good.yaml", contract, strlen(contract), &d), 0);
    const char *mixed = "policies:\n"
                        "  - id: fine\n"
                        "    effect: permit\n"
                        "    when: 'true'\n"
                        "  - id: broken\n"
                        "    effect: permit\n"
                        "    when: ''\n";
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "mixed.yaml", mixed, strlen(mixed), &d), -1);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_diag(&d, 7, 11, "empty `when`");
    fx_authz_diags_free(&d);

    /* an error of the input itself fails the builder too */
    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "good.yaml", contract, strlen(contract), &d), 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "bad.yaml", "a: [", 4, &d), -1);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_authz_diags_free(&d);
}
END_TEST

/* ---- `when` positions: an error at a known byte of the value, at its line:col in the file -------- */

typedef struct when_case {
    const char *name;
    const char *yaml; /* the whole file; the expression has an error at `bogus` or at its end */
    int line, col;
    const char *frag;
} when_case;

#define HEAD "policies:\n  - id: a\n    effect: permit\n"
static const when_case when_cases[] = {
    {"plain", HEAD "    when: token.sub == 'a' && bogus == 1\n", 4, 31, "bogus"},
    {"plain, error at offset 0", HEAD "    when: bogus == 1\n", 4, 11, "bogus"},
    {"plain, folded over lines", HEAD "    when: token.sub == 'a' &&\n      token.x == 2 &&\n        bogus == 1\n",
     6, 9, "bogus"},
    {"plain, an empty line in between", HEAD "    when: token.sub == 'a'\n\n      &&   bogus == 1\n", 6, 12,
     "bogus"},
    {"plain, end of the expression", HEAD "    when: token.sub ==   \n", 4, 23, "end"},
    {"plain in a flow mapping", "policies: [{id: a, effect: permit, when: token.x == 1 &&\n   bogus}]\n", 2, 4,
     "bogus"},
    {"single-quoted", HEAD "    when: 'token.sub == ''a'' && bogus == 1'\n", 4, 34, "bogus"},
    {"single-quoted, folded", HEAD "    when: 'token.sub == ''a''\n       &&\n\n     bogus'\n", 7, 6, "bogus"},
    {"single-quoted, end", HEAD "    when: 'token.sub == '\n", 4, 25, "end"},
    {"double-quoted", HEAD "    when: \"token.sub == 'a' && bogus == 1\"\n", 4, 32, "bogus"},
    {"double-quoted, escapes", HEAD "    when: \"token.sub == \\\"a\\\" &&\\t\\u0020bogus == 1\"\n", 4, 41,
     "bogus"},
    {"double-quoted, error at an escape", HEAD "    when: \"token.sub == 'a' && \\x62ogus == 1\"\n", 4, 32,
     "bogus"},
    {"double-quoted, escaped line break", HEAD "    when: \"token.sub == 'a' \\\n       && bogus == 1\"\n", 5,
     11, "bogus"},
    {"double-quoted, folded lines", HEAD "    when: \"token.sub == 'a'\n      &&\n      bogus\"\n", 6, 7, "bogus"},
    {"double-quoted, end", HEAD "    when: \"token.sub == \"\n", 4, 25, "end"},
    {"literal", HEAD "    when: |\n      token.sub == 'a' &&\n        bogus == 1\n", 6, 9, "bogus"},
    {"literal, leading empty lines", HEAD "    when: |-\n\n\n      token.sub == 'a' && bogus\n", 7, 27, "bogus"},
    {"literal, indentation indicator", HEAD "    when: |2\n        token.sub == 'a' &&\n      bogus == 1\n", 6, 7,
     "bogus"},
    {"literal, comment after the indicator", HEAD "    when: |+ # keep\n      bogus\n\n", 5, 7, "bogus"},
    {"literal, end", HEAD "    when: |\n      token.sub ==\n", 5, 19, "end"},
    {"folded", HEAD "    when: >\n      token.sub == 'a' &&\n      token.x == 1 &&\n      bogus == 1\n", 7, 7,
     "bogus"},
    {"folded, more-indented line", HEAD "    when: >-\n      token.sub == 'a' &&\n\n         bogus == 1\n", 7, 10,
     "bogus"},
    {"folded, stripped, more empty lines after than the value has bytes",
     HEAD "    when: >-\n      token.x == 1 &&\n      bogus\n"
          "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"
     "  - {id: b, effect: permit, when: 'true'}\n",
     6, 7, "bogus"},
    {"folded in a list item at column 0", "policies:\n- id: a\n  effect: permit\n  when: >\n    token.x == 1\n"
                                          "    && bogus\n",
     6, 8, "bogus"},
    {"multi-byte characters count as bytes", HEAD "    when: \"token.sub == 'é€😀' && bogus\"\n", 4, 40, "bogus"},
    {"multi-byte characters before the scalar", "policies:\n  - {id: a, description: 'é€', effect: permit, "
                                                "when: token.x == bogus}\n",
     2, 68, "bogus"},
    {"CR LF line ends", "policies:\r\n  - id: a\r\n    effect: permit\r\n    when: token.sub == 'a' &&\r\n"
                        "      bogus == 1\r\n",
     5, 7, "bogus"},
    {"byte order mark", "\xef\xbb\xbfpolicies: [{id: a, effect: permit, when: bogus}]\n", 1, 45, "bogus"},
};
#undef HEAD
#define NWHEN (sizeof(when_cases) / sizeof(when_cases[0]))

START_TEST(test_when_position)
{
    const when_case *c = &when_cases[_i];
    fx_authz_diags d = {0};
    int rc;
    fx_policy_set *s = load_policies(c->yaml, &rc, &d);
    char *all = diags_text(&d);
    ck_assert_msg(rc == -1 && !s, "%s: loaded", c->name);
    ck_assert_msg(d.n == 1, "%s: expected one diagnostic; got:\n%s", c->name, all);
    ck_assert_msg(d.v[0].line == c->line && d.v[0].col == c->col && strstr(d.v[0].msg, c->frag),
                  "%s: expected %d:%d \"%s\"; got:\n%s", c->name, c->line, c->col, c->frag, all);
    ck_assert_msg(strstr(d.v[0].msg, "policy 'a'"), "%s: not an expression error:\n%s", c->name, all);
    free(all);
    fx_authz_diags_free(&d);
}
END_TEST

/* ---- policy test files ---------------------------------------------------------------------- */

static const char full_tests[] = "tests:\n"
                                 "  - name: owner can edit own document\n"
                                 "    request: { method: PUT, path: /api/documents/42 }\n"
                                 "    token: { sub: \"42\", roles: [] }\n"
                                 "    expect: allow\n"
                                 "  - name: every field\n"
                                 "    request:\n"
                                 "      method: GET\n"
                                 "      path: /api/documents/7\n"
                                 "      route: documents-read\n"
                                 "      headers: { X-Request-Id: abc, accept: application/json, X-Empty: }\n"
                                 "      query: { page: 2, q: \"a b\" }\n"
                                 "      params: { id: 7 }\n"
                                 "    token:\n"
                                 "      sub: alice\n"
                                 "      roles: [reader, editor]\n"
                                 "      org: { id: acme, tier: ~ }\n"
                                 "    context: { break_glass: true }\n"
                                 "    expect: deny\n"
                                 "    policies: [documents-read, suspended]\n"
                                 "  - name: nothing matches\n"
                                 "    request: { method: GET, path: / }\n"
                                 "    token: ~\n"
                                 "    context:\n"
                                 "    expect: deny\n"
                                 "    policies: []\n";

START_TEST(test_cases_every_field)
{
    fx_policy_cases cs = {0};
    fx_authz_diags d = {0};
    char buf[512];
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "t.yaml", full_tests, strlen(full_tests), &d), 0);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(cs.n, 3);

    fx_policy_case *c = &cs.v[0];
    ck_assert_str_eq(c->name, "owner can edit own document");
    ck_assert_str_eq(c->file, "t.yaml");
    ck_assert_int_eq(c->line, 2);
    ck_assert_int_eq(c->col, 5);
    ck_assert_str_eq(c->method, "PUT");
    ck_assert_str_eq(c->path, "/api/documents/42");
    ck_assert_ptr_null(c->route);
    ck_assert_uint_eq(c->nheaders + c->nquery + c->nparams, 0);
    ck_assert_str_eq(json_of(c->token, buf, sizeof(buf)), "{\"roles\":[],\"sub\":\"42\"}");
    ck_assert_ptr_null(c->context);
    ck_assert_int_eq(c->expect_allow, 1);
    ck_assert_int_eq(c->has_expect_policies, 0);

    c = &cs.v[1];
    ck_assert_int_eq(c->line, 6);
    ck_assert_str_eq(c->route, "documents-read");
    ck_assert_uint_eq(c->nheaders, 3);
    ck_assert_str_eq(c->headers[0].name.p, "X-Request-Id"); /* kept as written */
    ck_assert_str_eq(c->headers[0].value.p, "abc");
    ck_assert_uint_eq(c->headers[0].value.len, 3);
    ck_assert_str_eq(c->headers[1].name.p, "accept");
    ck_assert_str_eq(c->headers[2].value.p, "");
    ck_assert_uint_eq(c->nquery, 2);
    ck_assert_str_eq(c->query[0].name.p, "page");
    ck_assert_str_eq(c->query[0].value.p, "2"); /* stored as strings */
    ck_assert_str_eq(c->query[1].value.p, "a b");
    ck_assert_uint_eq(c->nparams, 1);
    ck_assert_str_eq(c->params[0].name.p, "id");
    ck_assert_str_eq(c->params[0].value.p, "7");
    ck_assert_str_eq(json_of(c->token, buf, sizeof(buf)),
                     "{\"org\":{\"id\":\"acme\",\"tier\":null},\"roles\":[\"reader\",\"editor\"],\"sub\":\"alice\"}");
    ck_assert_str_eq(json_of(c->context, buf, sizeof(buf)), "{\"break_glass\":true}");
    ck_assert_int_eq(c->expect_allow, 0);
    ck_assert_int_eq(c->has_expect_policies, 1);
    ck_assert_uint_eq(c->nexpect_policies, 2);
    ck_assert_str_eq(c->expect_policies[0], "documents-read");
    ck_assert_str_eq(c->expect_policies[1], "suspended");

    c = &cs.v[2];
    ck_assert_ptr_null(c->token);
    ck_assert_ptr_null(c->context);
    ck_assert_int_eq(c->has_expect_policies, 1); /* [] : no policy may match */
    ck_assert_uint_eq(c->nexpect_policies, 0);

    /* a second file appends, and keeps its own name */
    const char *more = "tests: [{name: more, request: {method: DELETE, path: /x}, expect: deny}]\n";
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "u.yaml", more, strlen(more), &d), 0);
    ck_assert_uint_eq(cs.n, 4);
    ck_assert_str_eq(cs.v[3].file, "u.yaml");
    ck_assert_str_eq(cs.v[3].method, "DELETE");
    ck_assert_str_eq(cs.v[0].name, "owner can edit own document");
    fx_policy_cases_free(&cs);
    ck_assert_uint_eq(cs.n, 0);
    ck_assert_ptr_null(cs.v);
    fx_policy_cases_free(&cs); /* twice is harmless */
    fx_authz_diags_free(&d);
}
END_TEST

/* Scalars of token and context → JSON: the YAML 1.2 core schema for plain scalars only. */
typedef struct json_case {
    const char *yaml, *json;
} json_case;

static const json_case json_cases[] = {
    {"~", "null"},           {"null", "null"},         {"Null", "null"},          {"NULL", "null"},
    {"", "null"},            {"true", "true"},         {"True", "true"},          {"FALSE", "false"},
    {"42", "42"},            {"-7", "-7"},             {"+3", "3"},               {"007", "7"},
    {"0", "0"},              {"9223372036854775807", "9223372036854775807"},
    {"-9223372036854775808", "-9223372036854775808"},
    {"1.5", "1.5"},          {".5", "0.5"},            {"-2.", "-2.0"},           {"1e3", "1000.0"},
    {"2.5E-1", "0.25"},      {"'42'", "\"42\""},       {"\"true\"", "\"true\""},  {"'~'", "\"~\""},
    {"yes", "\"yes\""},      {"no", "\"no\""},         {"0x1F", "\"0x1F\""},      {"0o17", "\"0o17\""},
    {".inf", "\".inf\""},    {".nan", "\".nan\""},     {"1e", "\"1e\""},          {"1_000", "\"1_000\""},
    {"12:30", "\"12:30\""},  {"[1, 'a', b]", "[1,\"a\",\"b\"]"},
    {"{a: {b: [true]}}", "{\"a\":{\"b\":[true]}}"},   {"|\n      42", "\"42\\n\""}, {">-\n      1.5", "\"1.5\""},
    {"\"\\u00e9\\n\"", "\"é\\n\""},
};
#define NJSON (sizeof(json_cases) / sizeof(json_cases[0]))

START_TEST(test_token_scalars)
{
    const json_case *jc = &json_cases[_i];
    char yaml[256], want[256], buf[256];
    snprintf(yaml, sizeof(yaml), "tests:\n- name: n\n  request: {method: GET, path: /}\n  expect: deny\n"
                                 "  token:\n    v: %s\n",
             jc->yaml);
    snprintf(want, sizeof(want), "{\"v\":%s}", jc->json);
    fx_policy_cases cs = {0};
    fx_authz_diags d = {0};
    int rc = fx_policy_cases_load_buffer(&cs, "t.yaml", yaml, strlen(yaml), &d);
    char *all = diags_text(&d);
    ck_assert_msg(rc == 0, "%s: %s", jc->yaml, all);
    free(all);
    ck_assert_uint_eq(cs.n, 1);
    ck_assert_str_eq(json_of(cs.v[0].token, buf, sizeof(buf)), want);
    fx_policy_cases_free(&cs);
    fx_authz_diags_free(&d);
}
END_TEST

#define CASE(body) "tests:\n  - name: n\n" body
#define REQ "    request: {method: GET, path: /}\n"
static const bad_case bad_tests[] = {
    {"top-level list", "- name: n\n", 1, 1, "expected a mapping with a `tests` list at the top level"},
    {"unknown top-level key", "test: []\n", 1, 1, "unknown top-level key 'test' (did you mean 'tests'?)"},
    {"tests is a string", "tests: all\n", 1, 8, "tests: expected a list of tests, got a string"},
    {"test is a list", "tests:\n  - [a]\n", 2, 5, "tests[0]: expected a test"},
    {"alias", "tests:\n  - &t {name: n}\n", 2, 5, "anchors and aliases are not allowed in a policy test file"},
    {"syntax", "tests: [\n", 2, 1, "YAML syntax error"},
    {"second document", "tests: []\n---\n", 2, 1, "a second YAML document"},
    {"invalid UTF-8", CASE("    expect: d\xc3\n"), 3, 15, "not valid UTF-8"},
    {"missing name", "tests:\n  - request: {method: GET, path: /}\n    expect: deny\n", 2, 5,
     "tests[0]: missing `name`"},
    {"missing request", CASE("    expect: deny\n"), 2, 5, "tests[0]: missing `request`"},
    {"missing expect", CASE(REQ), 2, 5, "tests[0]: missing `expect` (allow or deny)"},
    {"unknown key", CASE(REQ "    expect: deny\n    tokens: {}\n"), 5, 5,
     "unknown key 'tokens' (did you mean 'token'?)"},
    {"duplicate key", CASE(REQ "    expect: deny\n    expect: allow\n"), 5, 5, "duplicate key 'expect'"},
    {"name empty", "tests:\n  - name: ''\n" REQ "    expect: deny\n", 2, 11, "got an empty string"},
    {"name a mapping", "tests:\n  - name: {a: b}\n" REQ "    expect: deny\n", 2, 11, "got a mapping"},
    {"expect misspelled", CASE(REQ "    expect: alow\n"), 4, 13,
     "expected allow or deny, got 'alow' (did you mean 'allow'?)"},
    {"expect capitalised", CASE(REQ "    expect: Deny\n"), 4, 13, "(did you mean 'deny'?)"},
    {"expect a boolean-looking word", CASE(REQ "    expect: true\n"), 4, 13, "expected allow or deny, got 'true'"},
    {"request a string", CASE("    request: GET /\n    expect: deny\n"), 3, 14,
     "tests[0].request: expected a mapping with method and path, got a string"},
    {"request without method", CASE("    request: {path: /}\n    expect: deny\n"), 3, 14,
     "tests[0].request: missing `method`"},
    {"request without path", CASE("    request: {method: GET}\n    expect: deny\n"), 3, 14, "missing `path`"},
    {"request unknown key", CASE("    request: {method: GET, path: /, header: {}}\n    expect: deny\n"), 3, 37,
     "unknown key 'header' (did you mean 'headers'?)"},
    {"method lower case", CASE("    request: {method: get, path: /}\n    expect: deny\n"), 3, 23,
     "request.method: methods are case-sensitive: did you mean 'GET'?"},
    {"method a list", CASE("    request: {method: [GET], path: /}\n    expect: deny\n"), 3, 23, "got a list"},
    {"path relative", CASE("    request: {method: GET, path: api/x}\n    expect: deny\n"), 3, 34,
     "expected a path starting with '/', got 'api/x'"},
    {"path with a query", CASE("    request: {method: GET, path: '/x?a=1'}\n    expect: deny\n"), 3, 34,
     "give its parameters under `query`"},
    {"headers a list", CASE("    request: {method: GET, path: /, headers: [a]}\n    expect: deny\n"), 3, 46,
     "request.headers: expected a mapping of names to values, got a list"},
    {"header value a list", CASE("    request: {method: GET, path: /, headers: {X-A: [1]}}\n    expect: deny\n"), 3,
     52, "request.headers.X-A: expected a string, got a list"},
    {"header name invalid", CASE("    request: {method: GET, path: /, headers: {'X A': 1}}\n    expect: deny\n"), 3,
     47, "'X A' is not a valid header name"},
    {"duplicate query name", CASE("    request:\n      method: GET\n      path: /\n      query: {a: 1, a: 2}\n"
                                  "    expect: deny\n"),
     6, 21, "duplicate key 'a'"},
    {"params a string", CASE("    request: {method: GET, path: /, params: id}\n    expect: deny\n"), 3, 45,
     "request.params: expected a mapping"},
    {"route a list", CASE("    request: {method: GET, path: /, route: [a]}\n    expect: deny\n"), 3, 44,
     "request.route: expected a route name, got a list"},
    {"token a string", CASE(REQ "    token: eyJhbGciOi\n    expect: deny\n"), 4, 12,
     "tests[0].token: expected the token's claims (a mapping; leave `token` out for no token), got a string"},
    {"token a list", CASE(REQ "    token: [a]\n    expect: deny\n"), 4, 12, "got a list"},
    {"token duplicate claim", CASE(REQ "    token: {sub: a, sub: b}\n    expect: deny\n"), 4, 21,
     "duplicate key 'sub' (first at line 4, column 13)"},
    {"token nested duplicate", CASE(REQ "    token:\n      org: {id: 1, id: 2}\n    expect: deny\n"), 5, 20,
     "duplicate key 'id' (first at line 5, column 13)"},
    {"token integer out of range", CASE(REQ "    token: {n: 9223372036854775808}\n    expect: deny\n"), 4, 16,
     "does not fit in a 64-bit integer (quote it to make it a string)"},
    {"token float out of range", CASE(REQ "    token: {n: [1, 1e999]}\n    expect: deny\n"), 4, 20,
     "tests[0].token.n[1]: 1e999 is out of the range of a number"},
    {"token non-scalar key", CASE(REQ "    token: {[a]: 1}\n    expect: deny\n"), 4, 13, "a key must be a name"},
    {"context a list", CASE(REQ "    context: [a]\n    expect: deny\n"), 4, 14,
     "tests[0].context: expected a mapping, got a list"},
    {"policies a string", CASE(REQ "    expect: deny\n    policies: documents-read\n"), 5, 15,
     "tests[0].policies: expected a list of policy ids ([] when no policy may match), got a string"},
    {"policies null", CASE(REQ "    expect: deny\n    policies:\n"), 5, 14, "got an empty value"},
    {"policy id invalid", CASE(REQ "    expect: deny\n    policies: [ok, 'not ok']\n"), 5, 20,
     "tests[0].policies[1]: 'not ok' has ' '"},
    {"second test's index in the path", "tests:\n  - {name: a, request: {method: GET, path: /}, expect: deny}\n"
                                        "  - {name: b, request: {method: GET, path: /}, expect: maybe}\n",
     3, 56, "tests[1].expect"},
};
#undef CASE
#undef REQ
#define NBAD_TESTS (sizeof(bad_tests) / sizeof(bad_tests[0]))

START_TEST(test_bad_tests)
{
    const bad_case *c = &bad_tests[_i];
    fx_policy_cases cs = {0};
    fx_authz_diags d = {0};
    int rc = fx_policy_cases_load_buffer(&cs, "t.yaml", c->yaml, strlen(c->yaml), &d);
    char *all = diags_text(&d);
    ck_assert_msg(rc == -1, "%s: loaded", c->name);
    ck_assert_msg(cs.n == 0, "%s: %zu cases appended", c->name, cs.n);
    ck_assert_msg(has_diag(&d, c->line, c->col, c->frag), "%s: expected %d:%d \"%s\"; got:\n%s", c->name,
                  c->line, c->col, c->frag, all);
    free(all);
    fx_policy_cases_free(&cs);
    fx_authz_diags_free(&d);
}
END_TEST

/* A file with one good and one bad test appends nothing; the cases already there stay. */
START_TEST(test_cases_all_or_nothing)
{
    fx_policy_cases cs = {0};
    fx_authz_diags d = {0};
    const char *good = "tests: [{name: kept, request: {method: GET, path: /}, expect: allow}]\n";
    const char *mixed = "tests:\n"
                        "  - name: fine\n"
                        "    request: {method: GET, path: /a}\n"
                        "    token: {sub: a, roles: [x]}\n"
                        "    expect: allow\n"
                        "  - name: broken\n"
                        "    request: {method: GET, path: /b}\n"
                        "    expect: alow\n";
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "good.yaml", good, strlen(good), &d), 0);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "mixed.yaml", mixed, strlen(mixed), &d), -1);
    ck_assert_uint_eq(cs.n, 1);
    ck_assert_str_eq(cs.v[0].name, "kept");
    ck_assert_uint_eq(d.n, 1);
    ck_assert_diag(&d, 8, 13, "did you mean 'allow'?");
    /* an empty (or truncated) file is an error, so tests cannot vanish unnoticed; an
     * explicit empty list adds nothing and is fine */
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "e.yaml", "", 0, &d), -1);
    ck_assert_diag(&d, 1, 1, "tests: []");
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "e.yaml", "# none\n", 7, &d), -1);
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "e.yaml", "tests:\n", 7, &d), -1);
    ck_assert_diag(&d, 1, 1, "write `tests: []`");
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "e.yaml", "tests: []\n", 10, &d), 0);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(cs.n, 1);
    fx_policy_cases_free(&cs);
    fx_authz_diags_free(&d);
}
END_TEST

/* ---- files ----------------------------------------------------------------------------------- */

static char *temp_file(const char *text, size_t len)
{
    char *path = strdup("/tmp/test_policy_file.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

START_TEST(test_files)
{
    fx_authz_diags d = {0};
    char *path = temp_file(contract, strlen(contract));
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_file(b, path, &d), 0);
    fx_policy_set *s = fx_policy_builder_finish(b, &d);
    ck_assert_ptr_nonnull(s);
    int line, col;
    ck_assert_str_eq(fx_policy_file(s, 0, &line, &col), path);
    fx_policy_set_unref(s);
    unlink(path);
    free(path);

    path = temp_file(full_tests, strlen(full_tests));
    fx_policy_cases cs = {0};
    ck_assert_int_eq(fx_policy_cases_load_file(&cs, path, &d), 0);
    ck_assert_uint_eq(cs.n, 3);
    ck_assert_str_eq(cs.v[1].file, path);
    fx_policy_cases_free(&cs);
    unlink(path);
    free(path);
    ck_assert_uint_eq(d.n, 0);

    /* read errors: line 0 */
    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_file(b, "/nonexistent/policies.yaml", &d), -1);
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    ck_assert_diag(&d, 0, 0, "cannot open the file: No such file or directory");
    ck_assert_str_eq(d.v[0].file, "/nonexistent/policies.yaml");
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_file(&cs, "/tmp", &d), -1);
    ck_assert_diag(&d, 0, 0, "cannot read the file: Is a directory");
    fx_authz_diags_free(&d);

    /* the size limit, for files and buffers */
    size_t big = FX_POLICY_MAX_FILE_BYTES + 1;
    char *text = malloc(big);
    ck_assert_ptr_nonnull(text);
    memset(text, '\n', big);
    path = temp_file(text, big);
    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_file(b, path, &d), -1);
    fx_policy_builder_free(b);
    ck_assert_diag(&d, 0, 0, "larger than 4194304 bytes");
    fx_authz_diags_free(&d);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "big.yaml", text, big, &d), -1);
    ck_assert_diag(&d, 0, 0, "larger than");
    fx_authz_diags_free(&d);
    /* exactly at the limit is fine */
    memcpy(text, "policies: []", 12);
    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "max.yaml", text, big - 1, &d), 0);
    fx_policy_builder_free(b);
    unlink(path);
    free(path);
    free(text);
    fx_authz_diags_free(&d);
}
END_TEST

START_TEST(test_null_arguments)
{
    fx_authz_diags d = {0};
    ck_assert_int_eq(fx_policy_builder_add_buffer(NULL, "x", "policies: []", 12, &d), -1);
    ck_assert_int_eq(fx_policy_cases_load_buffer(NULL, "x", "tests: []", 9, &d), -1);
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, NULL, "policies: []", 12, NULL), 0); /* no diags wanted */
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, NULL, NULL, 0, NULL), -1); /* empty */
    ck_assert_ptr_null(fx_policy_builder_finish(b, &d));
    fx_policy_cases cs = {0};
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, NULL, "tests: x", 8, NULL), -1);
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, NULL, NULL, 3, &d), -1);
    ck_assert_uint_eq(cs.n, 0);
    fx_policy_cases_free(NULL);
    ck_assert_uint_ge(d.n, 3);
    fx_authz_diags_free(&d);
}
END_TEST

/* Hostile shapes load (or fail) quickly and free everything. */
START_TEST(test_hostile_inputs)
{
    size_t n = 200000;
    char *text = malloc(n * 4 + 64);
    ck_assert_ptr_nonnull(text);
    /* a mapping with 200,000 keys, all the same: duplicates are found by sorting */
    size_t o = (size_t)sprintf(text, "policies: []\nx: {");
    for (size_t i = 0; i < n / 2; i++)
        o += (size_t)sprintf(text + o, "a: ,");
    text[o++] = '}';
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "keys.yaml", text, o, &d), -1);
    fx_policy_builder_free(b);
    ck_assert_uint_eq(d.n, 1001); /* the first 1000, then how many more */
    ck_assert_diag(&d, 2, 9, "duplicate key 'a' (first at line 2, column 5)");
    ck_assert_str_eq(d.v[1000].msg, "99000 more errors from here on are not shown");
    fx_authz_diags_free(&d);
    /* one long line of multi-byte characters, then an error at its end */
    o = (size_t)sprintf(text, "policies: [{id: a, effect: permit, description: '");
    for (size_t i = 0; i < n / 2; i++)
        o += (size_t)sprintf(text + o, "é");
    o += (size_t)sprintf(text + o, "', when: bogus}]\n");
    b = fx_policy_builder_new(NULL, 0);
    ck_assert_int_eq(fx_policy_builder_add_buffer(b, "long.yaml", text, o, &d), -1);
    fx_policy_builder_free(b);
    ck_assert_diag(&d, 1, (int)(o - 7), "bogus");
    fx_authz_diags_free(&d);
    /* deep nesting just under the limit is fine for a token */
    o = (size_t)sprintf(text, "tests: [{name: n, request: {method: GET, path: /}, expect: deny, token: {a: ");
    for (int i = 0; i < 58; i++)
        text[o++] = '[';
    for (int i = 0; i < 58; i++)
        text[o++] = ']';
    o += (size_t)sprintf(text + o, "}}]\n");
    fx_policy_cases cs = {0};
    ck_assert_int_eq(fx_policy_cases_load_buffer(&cs, "deep.yaml", text, o, &d), 0);
    ck_assert_uint_eq(cs.n, 1);
    fx_policy_cases_free(&cs);
    free(text);
    fx_authz_diags_free(&d);
}
END_TEST

/* tests/data/policy: valid/ loads, invalid/ fails where its first line says. */
START_TEST(test_data_files)
{
    const char *data = getenv("FX_TEST_DATA") ? getenv("FX_TEST_DATA") : FX_TEST_DATA_DIR;
    const char *sub[] = {"valid", "invalid"};
    size_t seen = 0;
    for (int v = 0; v < 2; v++) {
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/policy/%s", data, sub[v]);
        DIR *dp = opendir(dir);
        ck_assert_msg(dp != NULL, "cannot open %s", dir);
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (!strstr(e->d_name, ".yaml"))
                continue;
            char path[2048];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            fx_authz_diags d = {0};
            int rc;
            if (!strncmp(e->d_name, "tests-", 6)) {
                fx_policy_cases cs = {0};
                rc = fx_policy_cases_load_file(&cs, path, &d);
                fx_policy_cases_free(&cs);
            } else {
                fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
                rc = fx_policy_builder_add_file(b, path, &d);
                fx_policy_set *s = fx_policy_builder_finish(b, &d);
                ck_assert_int_eq(rc == 0, s != NULL);
                fx_policy_set_unref(s);
            }
            char *all = diags_text(&d);
            if (v == 0) {
                ck_assert_msg(rc == 0 && d.n == 0, "%s:\n%s", path, all);
            } else {
                FILE *f = fopen(path, "r");
                char first[256] = "";
                ck_assert_ptr_nonnull(f);
                ck_assert_ptr_nonnull(fgets(first, sizeof(first), f));
                fclose(f);
                int line, col, off = 0;
                ck_assert_msg(sscanf(first, "# expect %d:%d %n", &line, &col, &off) == 2 && off > 0,
                              "%s: no '# expect LINE:COL fragment' line", path);
                first[strcspn(first, "\n")] = '\0';
                ck_assert_msg(rc == -1 && has_diag(&d, line, col, first + off), "%s: expected %d:%d %s; got:\n%s",
                              path, line, col, first + off, all);
            }
            free(all);
            fx_authz_diags_free(&d);
            seen++;
        }
        closedir(dp);
    }
    ck_assert_uint_ge(seen, 8);
}
END_TEST

static Suite *policy_file_suite(void)
{
    Suite *s = suite_create("policy_file");
    TCase *tc = tcase_create("policies");
    tcase_add_test(tc, test_contract_example);
    tcase_add_test(tc, test_routes_and_methods_applied);
    tcase_add_test(tc, test_empty_and_scalar_forms);
    tcase_add_test(tc, test_two_files);
    tcase_add_loop_test(tc, test_bad_policy, 0, (int)NBAD_POLICIES);
    tcase_add_test(tc, test_all_errors_reported);
    tcase_add_test(tc, test_all_or_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("when");
    tcase_add_loop_test(tc, test_when_position, 0, (int)NWHEN);
    suite_add_tcase(s, tc);

    tc = tcase_create("tests");
    tcase_add_test(tc, test_cases_every_field);
    tcase_add_loop_test(tc, test_token_scalars, 0, (int)NJSON);
    tcase_add_loop_test(tc, test_bad_tests, 0, (int)NBAD_TESTS);
    tcase_add_test(tc, test_cases_all_or_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_set_timeout(tc, 120); /* a 4 MiB file and 100,000 keys under ASan */
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_null_arguments);
    tcase_add_test(tc, test_hostile_inputs);
    tcase_add_test(tc, test_data_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(policy_file_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

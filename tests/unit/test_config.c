/*
 * test_config.c — Check suite "config" for gateway/config.c.
 *
 * Table-driven over files:
 *   tests/data/config/valid/NAME.yaml    must load without a diagnostic;
 *   tests/data/config/invalid/NAME.yaml  must fail, and the first diagnostic
 *                                        line must equal NAME.expect.
 * The data directory comes from $FX_TEST_DATA, else from the compile-time
 * FX_TEST_DATA_DIR; main() changes into it, so files are named relative to
 * it ("config/invalid/alias.yaml") exactly as the .expect files spell them.
 *
 * Then tables for the scalar grammars (durations, sizes, addresses), checks
 * of the built snapshot (defaults, templates, methods, env expansion), and
 * the error machinery itself (all errors reported, sorted, capped; did you
 * mean; diagnostics format; file limits).
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "llhttp.h"

static char **valid_files, **invalid_files;
static int nvalid, ninvalid;

/* --- helpers --------------------------------------------------------------- */

/* Every diagnostic as fx_diags_print writes it. Caller frees. */
static char *diags_text(const fx_diags *d)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ck_assert_ptr_nonnull(f);
    fx_diags_print(d, f);
    fclose(f);
    return out;
}

/* Line `i` (0-based) of the printed diagnostics, without '\n'. Caller frees. */
static char *diag_line(const fx_diags *d, size_t i)
{
    char *all = diags_text(d), *p = all;
    for (; i > 0 && p; i--) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    char *line = strndup(p ? p : "", p ? strcspn(p, "\n") : 0);
    free(all);
    return line;
}

static fx_config *load_str(const char *yaml, fx_diags *d)
{
    return fx_config_load_buffer("test.yaml", yaml, strlen(yaml), d);
}

static int has_message(const fx_diags *d, const char *needle)
{
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->v[i].message, needle))
            return 1;
    return 0;
}

#define LISTEN "listen:\n  - address: \"127.0.0.1:0\"\n"
#define UPSTREAMS "upstreams:\n  monolith: { targets: [\"127.0.0.1:8000\"] }\n"
#define ROUTES "routes:\n  - name: all\n    match: { prefix: / }\n    upstream: monolith\n"

/* Loads a config that must be valid; fails the test with its diagnostics. */
static fx_config *load_ok(const char *what, fx_config *c, fx_diags *d)
{
    if (!c || d->n) {
        char *text = diags_text(d);
        ck_abort_msg("%s should load, got:\n%s", what, text);
        free(text);
    }
    return c;
}

/* --- the corpora ----------------------------------------------------------- */

START_TEST(test_valid_file)
{
    const char *file = valid_files[_i];
    fx_diags d = {0};
    fx_config *c = load_ok(file, fx_config_load(file, &d), &d);
    ck_assert_int_eq(atomic_load(&c->refs), 1);
    ck_assert_str_eq(c->file, file);
    ck_assert_uint_ge(c->nlistens, 1);
    ck_assert_uint_ge(c->nroutes, 1);
    for (size_t i = 0; i < c->nroutes; i++) {
        ck_assert_int_ge(c->routes[i].upstream, 0);
        ck_assert_int_lt(c->routes[i].upstream, (int)c->nupstreams);
    }
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_invalid_file)
{
    const char *file = invalid_files[_i];
    char expect_path[PATH_MAX], expect[4096] = "";
    snprintf(expect_path, sizeof(expect_path), "%.*s.expect", (int)(strlen(file) - 5), file);
    FILE *f = fopen(expect_path, "r");
    ck_assert_msg(f != NULL, "%s: missing %s", file, expect_path);
    ck_assert_ptr_nonnull(fgets(expect, sizeof(expect), f));
    fclose(f);
    expect[strcspn(expect, "\n")] = '\0';

    fx_diags d = {0};
    fx_config *c = fx_config_load(file, &d);
    ck_assert_msg(c == NULL, "%s loaded, but should fail with: %s", file, expect);
    ck_assert_uint_ge(d.n, 1);
    char *first = diag_line(&d, 0);
    ck_assert_msg(strcmp(first, expect) == 0, "%s:\nexpected: %s\n     got: %s", file, expect, first);
    free(first);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_corpus_size)
{
    ck_assert_int_ge(nvalid, 5);
    ck_assert_int_ge(ninvalid, 30);
}
END_TEST

/* --- the built snapshot ---------------------------------------------------- */

START_TEST(test_defaults)
{
    fx_diags d = {0};
    fx_config *c = load_ok("minimal", fx_config_load("config/valid/minimal.yaml", &d), &d);
    ck_assert_uint_ge(c->workers, 1);
    ck_assert_uint_le(c->workers, 256);
    ck_assert_int_eq(c->has_admin, 0);
    ck_assert_ptr_null(c->admin.text);
    ck_assert_uint_eq(c->limits.max_header_bytes, 32 * 1024);
    ck_assert_uint_eq(c->limits.max_body_bytes, 10 * 1024 * 1024);
    ck_assert_uint_eq(c->limits.max_uri_bytes, 8 * 1024);
    ck_assert_uint_eq(c->limits.header_timeout_ms, 10000);
    ck_assert_uint_eq(c->limits.idle_timeout_ms, 60000);
    ck_assert_uint_eq(c->limits.drain_timeout_ms, 30000);
    ck_assert_uint_eq(c->limits.max_connections, 10000);
    ck_assert_uint_eq(c->nupstreams, 1);
    ck_assert_str_eq(c->upstreams[0].name, "monolith");
    ck_assert_uint_eq(c->upstreams[0].keepalive, 64);
    ck_assert_uint_eq(c->upstreams[0].connect_timeout_ms, 2000);
    ck_assert_uint_eq(c->upstreams[0].timeout_ms, 30000);
    ck_assert_uint_eq(c->nroutes, 1);
    ck_assert_int_eq(c->routes[0].kind, FX_MATCH_PREFIX);
    ck_assert_str_eq(c->routes[0].path, "/");
    ck_assert_uint_eq(c->routes[0].methods, 0);
    ck_assert_ptr_null(c->routes[0].host);
    ck_assert_int_eq(c->routes[0].auth, FX_AUTH_REQUIRED);
    ck_assert_int_eq(c->log.access, FX_LOG_STDOUT);
    ck_assert_int_eq(c->log.level, 1);
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_full)
{
    fx_diags d = {0};
    fx_config *c = load_ok("full", fx_config_load("config/valid/full.yaml", &d), &d);
    ck_assert_uint_eq(c->nlistens, 2);
    ck_assert_str_eq(c->listens[0].addr.text, "0.0.0.0:8080");
    ck_assert_int_eq(c->listens[0].line, 3);
    ck_assert_int_eq(c->listens[1].addr.sa.ss_family, AF_INET6);
    ck_assert_int_eq(c->has_admin, 1);
    ck_assert_str_eq(c->admin.text, "127.0.0.1:9901");
    ck_assert_uint_eq(c->workers, 4);
    ck_assert_uint_eq(c->limits.max_header_bytes, 16 * 1024);
    ck_assert_uint_eq(c->limits.max_body_bytes, 1024 * 1024);
    ck_assert_uint_eq(c->limits.max_uri_bytes, 4096);
    ck_assert_uint_eq(c->limits.header_timeout_ms, 5000);
    ck_assert_uint_eq(c->limits.idle_timeout_ms, 120000);
    ck_assert_uint_eq(c->limits.drain_timeout_ms, 0);
    ck_assert_uint_eq(c->limits.max_connections, 500);

    ck_assert_uint_eq(c->nupstreams, 2);
    ck_assert_str_eq(c->upstreams[0].name, "monolith");
    ck_assert_uint_eq(c->upstreams[0].keepalive, 0);
    ck_assert_uint_eq(c->upstreams[0].connect_timeout_ms, 250);
    ck_assert_uint_eq(c->upstreams[0].timeout_ms, 3600000);
    ck_assert_str_eq(c->upstreams[1].name, "documents");
    ck_assert_uint_eq(c->upstreams[1].ntargets, 2);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->upstreams[1].targets[1].sa;
    ck_assert_str_eq(c->upstreams[1].targets[1].text, "localhost:8102");
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    ck_assert_uint_eq(ntohs(sin->sin_port), 8102);

    ck_assert_uint_eq(c->nroutes, 4);
    const fx_route_conf *r = &c->routes[0];
    ck_assert_str_eq(r->name, "documents-read");
    ck_assert_int_eq(r->kind, FX_MATCH_TEMPLATE);
    ck_assert_str_eq(r->path, "/api/documents/{id}");
    ck_assert_uint_eq(r->path_len, strlen("/api/documents/{id}"));
    ck_assert_uint_eq(r->methods, FX_METHOD_BIT(HTTP_GET) | FX_METHOD_BIT(HTTP_HEAD));
    ck_assert_str_eq(r->host, "api.example.com");
    ck_assert_int_eq(r->upstream, 1);
    ck_assert_int_eq(r->auth, FX_AUTH_OPTIONAL);
    ck_assert_int_eq(r->line, 24);
    r = &c->routes[1];
    ck_assert_uint_eq(r->methods,
                      FX_METHOD_BIT(HTTP_PUT) | FX_METHOD_BIT(HTTP_PATCH) | FX_METHOD_BIT(HTTP_DELETE));
    ck_assert_int_eq(r->upstream, 0);
    r = &c->routes[2];
    ck_assert_int_eq(r->kind, FX_MATCH_EXACT);
    ck_assert_uint_eq(r->nsegs, 0);
    ck_assert_int_eq(r->auth, FX_AUTH_NONE);
    ck_assert_int_eq(c->routes[3].auth, FX_AUTH_REQUIRED);
    ck_assert_int_eq(c->log.access, FX_LOG_FILE);
    ck_assert_str_eq(c->log.access_file, "/var/log/ficus/access.log");
    ck_assert_int_eq(c->log.level, 0);
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_all_methods)
{
    static const char yaml[] = LISTEN UPSTREAMS
        "routes:\n  - name: m\n    match: { prefix: /, methods: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, "
        "TRACE, CONNECT] }\n    upstream: monolith\n";
    fx_diags d = {0};
    fx_config *c = load_ok("methods", load_str(yaml, &d), &d);
    uint64_t want = FX_METHOD_BIT(HTTP_GET) | FX_METHOD_BIT(HTTP_HEAD) | FX_METHOD_BIT(HTTP_POST) |
                    FX_METHOD_BIT(HTTP_PUT) | FX_METHOD_BIT(HTTP_PATCH) | FX_METHOD_BIT(HTTP_DELETE) |
                    FX_METHOD_BIT(HTTP_OPTIONS) | FX_METHOD_BIT(HTTP_TRACE) | FX_METHOD_BIT(HTTP_CONNECT);
    ck_assert_uint_eq(c->routes[0].methods, want);
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

static void assert_seg(const fx_path_seg *s, const char *text, int is_param)
{
    ck_assert_int_eq(s->is_param, is_param);
    ck_assert_uint_eq(s->len, strlen(text));
    ck_assert_str_eq(s->text, text);
}

START_TEST(test_templates)
{
    fx_diags d = {0};
    fx_config *c = load_ok("templates", fx_config_load("config/valid/templates.yaml", &d), &d);
    const fx_route_conf *r = &c->routes[0];
    ck_assert_int_eq(r->kind, FX_MATCH_TEMPLATE);
    ck_assert_uint_eq(r->nsegs, 5);
    assert_seg(&r->segs[0], "api", 0);
    assert_seg(&r->segs[1], "documents", 0);
    assert_seg(&r->segs[2], "doc_id", 1);
    assert_seg(&r->segs[3], "comments", 0);
    assert_seg(&r->segs[4], "comment_id", 1);

    ck_assert_int_eq(c->routes[1].kind, FX_MATCH_EXACT);
    ck_assert_int_eq(c->routes[3].kind, FX_MATCH_TEMPLATE);
    ck_assert_uint_eq(c->routes[3].nsegs, 3);
    assert_seg(&c->routes[3].segs[2], "id", 1);
    ck_assert_int_eq(c->routes[4].kind, FX_MATCH_PREFIX);
    ck_assert_str_eq(c->routes[4].host, "docs.example.com");

    /* a trailing '/' leaves an empty literal last segment */
    r = &c->routes[7];
    ck_assert_str_eq(r->name, "trailing");
    ck_assert_uint_eq(r->nsegs, 3);
    assert_seg(&r->segs[0], "files", 0);
    assert_seg(&r->segs[1], "name", 1);
    assert_seg(&r->segs[2], "", 0);
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_template_errors)
{
    static const struct {
        const char *path, *msg;
    } t[] = {
        {"/a/{id}x", "a parameter must be a whole path segment"},
        {"/a/x{id}", "a parameter must be a whole path segment"},
        {"/a/{id", "a parameter must be a whole path segment"},
        {"/a/id}", "a parameter must be a whole path segment"},
        {"/a/{{id}}", "a parameter must be a whole path segment"},
        {"/a/{}", "bad parameter name '{}'"},
        {"/a/{9}", "bad parameter name '{9}'"},
        {"/a/{a-b}", "bad parameter name '{a-b}'"},
        {"/{id}/{id}", "parameter '{id}' appears twice"},
        {"/a b", "contains a space"},
        {"/caf\xc3\xa9", "non-ASCII"},
        {"/a#b", "contains '#'"},
        {"a/{id}", "must start with '/'"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 LISTEN UPSTREAMS "routes:\n  - name: r\n    match: { path: \"%s\" }\n    upstream: monolith\n",
                 t[i].path);
        fx_diags d = {0};
        fx_config *c = load_str(yaml, &d);
        ck_assert_msg(c == NULL, "%s loaded", t[i].path);
        ck_assert_uint_eq(d.n, 1);
        ck_assert_msg(strstr(d.v[0].message, t[i].msg), "%s: %s", t[i].path, d.v[0].message);
        ck_assert_msg(strstr(d.v[0].message, "routes[0].match.path: ") == d.v[0].message, "%s", d.v[0].message);
        ck_assert_int_eq(d.v[0].line, 7);
        fx_diags_free(&d);
    }
}
END_TEST

START_TEST(test_env)
{
    setenv("FICUS_TEST_MONOLITH", "127.0.0.1:9", 1);
    fx_diags d = {0};
    fx_config *c = load_ok("env", fx_config_load("config/valid/env.yaml", &d), &d);
    ck_assert_str_eq(c->upstreams[0].targets[0].text, "127.0.0.1:9");
    ck_assert_str_eq(c->log.access_file, "/tmp/ficus-${literal}.log");
    fx_config_unref(c);
    fx_diags_free(&d);

    /* set but empty: expands to "", which the address check refuses */
    setenv("FICUS_TEST_MONOLITH", "", 1);
    c = fx_config_load("config/valid/env.yaml", &d);
    ck_assert_ptr_null(c);
    ck_assert(has_message(&d, "upstreams.monolith.targets[0]: invalid address '': empty address"));
    fx_diags_free(&d);
    setenv("FICUS_TEST_MONOLITH", "127.0.0.1:8000", 1); /* as main() left it */

    /* several references in one value */
    setenv("FICUS_TEST_HOST", "127.0.0.1", 1);
    setenv("FICUS_TEST_PORT", "8125", 1);
    c = load_ok("env2",
                load_str(LISTEN ROUTES
                         "upstreams:\n  monolith: { targets: [\"${FICUS_TEST_HOST}:${FICUS_TEST_PORT}\"] }\n",
                         &d),
                &d);
    ck_assert_str_eq(c->upstreams[0].targets[0].text, "127.0.0.1:8125");
    fx_config_unref(c);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_refs)
{
    fx_diags d = {0};
    fx_config *c = load_ok("refs", load_str(LISTEN UPSTREAMS ROUTES, &d), &d);
    ck_assert_int_eq(atomic_load(&c->refs), 1);
    ck_assert_ptr_eq(fx_config_ref(c), c);
    ck_assert_int_eq(atomic_load(&c->refs), 2);
    fx_config_unref(c);
    ck_assert_int_eq(atomic_load(&c->refs), 1);
    ck_assert_str_eq(c->routes[0].name, "all"); /* still alive */
    fx_config_unref(c);                         /* freed: ASan would see a leak otherwise */
    fx_config_unref(NULL);
    fx_diags_free(&d);
}
END_TEST

/* --- scalar grammars ------------------------------------------------------- */

START_TEST(test_durations)
{
    static const struct {
        const char *in;
        int ok;
        uint64_t ms;
    } t[] = {
        {"250ms", 1, 250},
        {"10s", 1, 10000},
        {"5m", 1, 300000},
        {"1h", 1, 3600000},
        {"0s", 1, 0},
        {"0ms", 1, 0},
        {"007s", 1, 7000},
        {"18446744073709551615ms", 1, UINT64_MAX},
        {"5124095576030h", 1, UINT64_C(5124095576030) * 3600000},
        {"5124095576031h", 0, 0},
        {"18446744073709551616ms", 0, 0},
        {"99999999999999999999999s", 0, 0},
        {"", 0, 0},
        {"10", 0, 0},
        {"s", 0, 0},
        {"ms", 0, 0},
        {"-1s", 0, 0},
        {"+1s", 0, 0},
        {"1.5s", 0, 0},
        {"10 s", 0, 0},
        {" 10s", 0, 0},
        {"10s ", 0, 0},
        {"10S", 0, 0},
        {"10sec", 0, 0},
        {"1d", 0, 0},
        {"1h30m", 0, 0},
        {"0x10s", 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint64_t v = 12345;
        int r = fx_parse_duration_ms(t[i].in, &v);
        ck_assert_msg(r == (t[i].ok ? 0 : -1), "'%s': got %d", t[i].in, r);
        if (t[i].ok)
            ck_assert_msg(v == t[i].ms, "'%s': got %llu", t[i].in, (unsigned long long)v);
        else
            ck_assert_msg(v == 12345, "'%s': output written on failure", t[i].in);
    }
    ck_assert_int_eq(fx_parse_duration_ms(NULL, &(uint64_t){0}), -1);
}
END_TEST

START_TEST(test_sizes)
{
    static const struct {
        const char *in;
        int ok;
        size_t bytes;
    } t[] = {
        {"512", 1, 512},
        {"0", 1, 0},
        {"512KiB", 1, 512 * 1024},
        {"10MiB", 1, 10 * 1024 * 1024},
        {"1GiB", 1, (size_t)1 << 30},
        {"32768", 1, 32768},
        {"18446744073709551615", 1, SIZE_MAX},
        {"17179869183GiB", 1, (size_t)17179869183 << 30},
        {"17179869184GiB", 0, 0},
        {"18446744073709551616", 0, 0},
        {"", 0, 0},
        {"KiB", 0, 0},
        {"10MB", 0, 0},
        {"10kib", 0, 0},
        {"10K", 0, 0},
        {"10B", 0, 0},
        {"-1", 0, 0},
        {"1.5MiB", 0, 0},
        {"10 KiB", 0, 0},
        {" 10", 0, 0},
        {"1TiB", 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t v = 12345;
        int r = fx_parse_size(t[i].in, &v);
        ck_assert_msg(r == (t[i].ok ? 0 : -1), "'%s': got %d", t[i].in, r);
        if (t[i].ok)
            ck_assert_msg(v == t[i].bytes, "'%s': got %zu", t[i].in, v);
        else
            ck_assert_msg(v == 12345, "'%s': output written on failure", t[i].in);
    }
    ck_assert_int_eq(fx_parse_size(NULL, &(size_t){0}), -1);
}
END_TEST

START_TEST(test_addresses)
{
    static const struct {
        const char *in;
        int family; /* 0: must fail */
        const char *ip;
        unsigned port;
    } t[] = {
        {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080},
        {"0.0.0.0:0", AF_INET, "0.0.0.0", 0},
        {"localhost:80", AF_INET, "127.0.0.1", 80},
        {"LocalHost:80", AF_INET, "127.0.0.1", 80},
        {"10.1.2.3:65535", AF_INET, "10.1.2.3", 65535},
        {"[::1]:443", AF_INET6, "::1", 443},
        {"[::]:0", AF_INET6, "::", 0},
        {"[2001:db8::1]:8080", AF_INET6, "2001:db8::1", 8080},
        {"[::ffff:10.0.0.1]:80", AF_INET6, "::ffff:10.0.0.1", 80},
        {"", 0, NULL, 0},
        {"127.0.0.1", 0, NULL, 0},
        {"127.0.0.1:", 0, NULL, 0},
        {":8080", 0, NULL, 0},
        {"127.0.0.1:65536", 0, NULL, 0},
        {"127.0.0.1:99999999999999999999", 0, NULL, 0},
        {"127.0.0.1:-1", 0, NULL, 0},
        {"127.0.0.1:http", 0, NULL, 0},
        {"127.0.0.1:80 ", 0, NULL, 0},
        {" 127.0.0.1:80", 0, NULL, 0},
        {"1.2.3:80", 0, NULL, 0},
        {"256.1.1.1:80", 0, NULL, 0},
        {"example.com:80", 0, NULL, 0},
        {"::1:80", 0, NULL, 0},
        {"[::1]80", 0, NULL, 0},
        {"[::1]", 0, NULL, 0},
        {"[::1:80", 0, NULL, 0},
        {"[]:80", 0, NULL, 0},
        {"[127.0.0.1]:80", 0, NULL, 0},
        {"[fe80::1%eth0]:80", 0, NULL, 0},
        {"[localhost]:80", 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_addr a;
        const char *why = NULL;
        int r = fx_addr_parse(t[i].in, &a, &why);
        if (!t[i].family) {
            ck_assert_msg(r == -1, "'%s' parsed", t[i].in);
            ck_assert_msg(why && *why, "'%s': no reason", t[i].in);
            ck_assert_ptr_null(a.text);
            continue;
        }
        ck_assert_msg(r == 0, "'%s': %s", t[i].in, why);
        ck_assert_str_eq(a.text, t[i].in);
        ck_assert_int_eq(a.sa.ss_family, t[i].family);
        char buf[INET6_ADDRSTRLEN];
        unsigned port;
        if (t[i].family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a.sa;
            ck_assert_uint_eq(a.salen, sizeof(*s4));
            inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof(buf));
            port = ntohs(s4->sin_port);
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.sa;
            ck_assert_uint_eq(a.salen, sizeof(*s6));
            inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof(buf));
            port = ntohs(s6->sin6_port);
        }
        ck_assert_str_eq(buf, t[i].ip);
        ck_assert_uint_eq(port, t[i].port);
        free(a.text);
    }
    fx_addr a;
    ck_assert_int_eq(fx_addr_parse("nonsense", &a, NULL), -1); /* why may be NULL */
}
END_TEST

/* --- errors ---------------------------------------------------------------- */

START_TEST(test_did_you_mean)
{
    static const struct {
        const char *yaml, *msg;
    } t[] = {
        {LISTEN UPSTREAMS "rotes: []\n", "unknown top-level key 'rotes' (did you mean 'routes'?)"},
        {LISTEN UPSTREAMS ROUTES "Log: {}\n", "unknown top-level key 'Log' (did you mean 'log'?)"},
        {LISTEN UPSTREAMS ROUTES "limits: { max_body_byte: 1 }\n",
         "unknown key 'max_body_byte' in limits (did you mean 'max_body_bytes'?)"},
        {LISTEN ROUTES "upstreams:\n  monolith: { targets: [\"127.0.0.1:1\"], keepalve: 1 }\n",
         "unknown key 'keepalve' in upstreams.monolith (did you mean 'keepalive'?)"},
        {LISTEN UPSTREAMS "routes:\n  - name: a\n    match: { prefx: /a/ }\n    upstream: monolith\n",
         "unknown key 'prefx' in routes[0].match (did you mean 'prefix'?)"},
        {LISTEN UPSTREAMS "routes:\n  - name: a\n    match: { prefix: /a/ }\n    upstream: monolith\n    shadw: x\n",
         "unknown key 'shadw' in routes[0] (did you mean 'shadow'?)"},
        {LISTEN UPSTREAMS "routes:\n  - name: a\n    match: { prefix: /a/ }\n    upstream: monolit\n",
         "routes[0].upstream: unknown upstream 'monolit' (did you mean 'monolith'?)"},
        {LISTEN UPSTREAMS "routes:\n  - name: a\n    match: { prefix: /a/, methods: [GTE] }\n    upstream: monolith\n",
         "routes[0].match.methods[0]: unknown method 'GTE' (did you mean 'GET'?)"},
        {LISTEN UPSTREAMS
         "routes:\n  - name: a\n    match: { prefix: /a/, methods: [delete] }\n    upstream: monolith\n",
         "unknown method 'delete' (did you mean 'DELETE'?)"},
        {LISTEN UPSTREAMS ROUTES "log: { level: warning }\n", "got 'warning' (did you mean 'warn'?)"},
        {LISTEN UPSTREAMS ROUTES "log: { level: eror }\n", "got 'eror' (did you mean 'error'?)"},
        /* too far from anything: no suggestion */
        {LISTEN UPSTREAMS ROUTES "completely_different: 1\n", "unknown top-level key 'completely_different'"},
        {LISTEN UPSTREAMS "routes:\n  - name: a\n    match: { prefix: /a/ }\n    upstream: payments\n",
         "routes[0].upstream: unknown upstream 'payments'"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_diags d = {0};
        fx_config *c = load_str(t[i].yaml, &d);
        ck_assert_ptr_null(c);
        char *text = diags_text(&d);
        ck_assert_msg(has_message(&d, t[i].msg), "case %zu: want '%s' in:\n%s", i, t[i].msg, text);
        if (!strstr(t[i].msg, "did you mean"))
            ck_assert_msg(!strstr(text, "did you mean"), "case %zu: unexpected suggestion:\n%s", i, text);
        free(text);
        fx_diags_free(&d);
    }
}
END_TEST

START_TEST(test_multiple_errors)
{
    static const char yaml[] =
        "listen:\n"
        "  - address: \"127.0.0.1:99999\"\n"            /* 2 */
        "workers: 0\n"                                  /* 3 */
        "limits: { header_timeout: 10, max_body_bytes: 1MB }\n" /* 4 */
        "upstreams:\n"
        "  monolith:\n"
        "    targets: []\n"                             /* 7 */
        "    timeot: 5s\n"                              /* 8 */
        "routes:\n"
        "  - name: a\n"
        "    match: { prefix: /a/ }\n"
        "    upstream: monolith\n"
        "  - name: a\n"                                 /* 13 */
        "    match: { prefix: /b/ }\n"
        "    upstream: nowhere\n"                       /* 15 */
        "    fallback: monolith\n"                      /* 16 */
        "log: { level: loud }\n";                       /* 17 */
    static const char *const want[] = {
        ("test.yaml:2:14: error: listen[0].address: invalid address '127.0.0.1:99999': the port is out of range "
         "(0..65535)"),
        "test.yaml:3:10: error: workers: expected 'auto' or an integer from 1 to 256, got '0'",
        "test.yaml:4:27: error: limits.header_timeout: duration '10' needs a unit: ms, s, m or h (like 10s)",
        "test.yaml:4:47: error: limits.max_body_bytes: bad size '1MB' (units are KiB, MiB and GiB, like 512KiB)",
        "test.yaml:7:14: error: upstreams.monolith.targets: must list at least one address",
        "test.yaml:8:5: error: unknown key 'timeot' in upstreams.monolith (did you mean 'timeout'?)",
        "test.yaml:13:11: error: routes[1].name: duplicate route name 'a' (first used by routes[0], line 10)",
        "test.yaml:15:15: error: routes[1].upstream: unknown upstream 'nowhere'",
        "test.yaml:16:5: error: routes[1].fallback: 'fallback' is not supported by this build yet",
        "test.yaml:17:15: error: log.level: expected debug, info, warn or error, got 'loud'",
    };
    fx_diags d = {0};
    fx_config *c = load_str(yaml, &d);
    ck_assert_ptr_null(c);
    char *text = diags_text(&d);
    ck_assert_msg(d.n == sizeof(want) / sizeof(want[0]), "got %zu errors:\n%s", d.n, text);
    for (size_t i = 0; i < d.n; i++) {
        char *line = diag_line(&d, i);
        ck_assert_msg(strcmp(line, want[i]) == 0, "line %zu:\nexpected: %s\n     got: %s", i, want[i], line);
        free(line);
    }
    free(text);
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_error_cap)
{
    /* 1500 routes to an unknown upstream: 1000 shown, then a summary */
    size_t cap = 1 << 20, len = 0;
    char *yaml = malloc(cap);
    ck_assert_ptr_nonnull(yaml);
    len += (size_t)snprintf(yaml + len, cap - len, LISTEN UPSTREAMS "routes:\n");
    for (int i = 0; i < 1500; i++)
        len += (size_t)snprintf(yaml + len, cap - len,
                                "  - { name: r%d, match: { prefix: /r%d/ }, upstream: nowhere }\n", i, i);
    fx_diags d = {0};
    ck_assert_ptr_null(fx_config_load_buffer("big.yaml", yaml, len, &d));
    ck_assert_uint_eq(d.n, 1001);
    ck_assert_int_eq(d.v[0].line, 6);
    ck_assert_int_eq(d.v[999].line, 1005);
    ck_assert_int_eq(d.v[1000].line, 0);
    ck_assert_str_eq(d.v[1000].message, "too many errors: 1500 in all, only the first 1000 are shown");
    fx_diags_free(&d);
    free(yaml);
}
END_TEST

START_TEST(test_diags_format)
{
    fx_diags d = {0};
    fx_diags_add(&d, "a.yaml", 3, 7, "routes[%d].upstream: unknown upstream '%s'", 2, "x");
    fx_diags_add(&d, "a.yaml", 0, 0, "cannot read: %s", "No such file or directory");
    fx_diags_add(&d, NULL, 1, 1, "no file");
    ck_assert_uint_eq(d.n, 3);
    char *text = diags_text(&d);
    ck_assert_str_eq(text, "a.yaml:3:7: error: routes[2].upstream: unknown upstream 'x'\n"
                           "a.yaml: error: cannot read: No such file or directory\n"
                           "<config>:1:1: error: no file\n");
    free(text);
    fx_diags_free(&d);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_ptr_null(d.v);
    fx_diags_free(&d); /* twice is fine */
}
END_TEST

START_TEST(test_missing_file)
{
    fx_diags d = {0};
    ck_assert_ptr_null(fx_config_load("config/no-such-file.yaml", &d));
    ck_assert_uint_eq(d.n, 1);
    char *line = diag_line(&d, 0);
    ck_assert_str_eq(line, "config/no-such-file.yaml: error: cannot read: No such file or directory");
    free(line);
    fx_diags_free(&d);

    ck_assert_ptr_null(fx_config_load("config", &d)); /* a directory */
    line = diag_line(&d, 0);
    ck_assert_str_eq(line, "config: error: cannot read: Is a directory");
    free(line);
    fx_diags_free(&d);
}
END_TEST

/* A valid config padded with comment lines to exactly `size` bytes. */
static char *padded_config(size_t size)
{
    static const char base[] = LISTEN UPSTREAMS ROUTES;
    char *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, base, sizeof(base) - 1);
    for (size_t i = sizeof(base) - 1; i < size; i++)
        buf[i] = (i % 64 == 0) ? '#' : (i % 64 == 63 || i == size - 1) ? '\n' : 'x';
    buf[sizeof(base) - 1] = '#';
    return buf;
}

START_TEST(test_size_limit)
{
    const size_t limit = (size_t)4 << 20;
    fx_diags d = {0};
    char *buf = padded_config(limit + 1);
    ck_assert_ptr_null(fx_config_load_buffer("big.yaml", buf, limit + 1, &d));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.v[0].message, "the file is too large (4194305 bytes; the limit is 4 MiB)");
    fx_diags_free(&d);
    fx_config *c = load_ok("4 MiB", fx_config_load_buffer("big.yaml", buf, limit, &d), &d);
    fx_config_unref(c);

    /* the same through a file */
    char path[] = "/tmp/fx-test-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, limit + 1), (ssize_t)(limit + 1));
    close(fd);
    ck_assert_ptr_null(fx_config_load(path, &d));
    ck_assert_uint_eq(d.n, 1);
    ck_assert_int_eq(d.v[0].line, 0);
    ck_assert(strstr(d.v[0].message, "too large") != NULL);
    fx_diags_free(&d);
    unlink(path);
    free(buf);
}
END_TEST

START_TEST(test_buffer_edges)
{
    fx_diags d = {0};
    ck_assert_ptr_null(fx_config_load_buffer(NULL, NULL, 0, &d));
    char *line = diag_line(&d, 0);
    ck_assert_str_eq(line,
                     "<config>:1:1: error: the configuration is empty (it needs at least 'listen', 'upstreams' and "
                     "'routes')");
    free(line);
    fx_diags_free(&d);

    /* the buffer need not be NUL-terminated: only len bytes are read */
    static const char yaml[] = LISTEN UPSTREAMS ROUTES "garbage: [";
    size_t len = sizeof(yaml) - 1 - strlen("garbage: [");
    fx_config *c = load_ok("prefix", fx_config_load_buffer("t", yaml, len, &d), &d);
    fx_config_unref(c);

    /* an explicit document marker and a comment-only tail are fine */
    c = load_ok("markers", load_str("---\n" LISTEN UPSTREAMS ROUTES "...\n# end\n", &d), &d);
    fx_config_unref(c);

    /* null values where a section is expected */
    ck_assert_ptr_null(load_str(LISTEN UPSTREAMS ROUTES "limits:\n", &d));
    ck_assert(has_message(&d, "limits: expected a mapping, got an empty value"));
    fx_diags_free(&d);
}
END_TEST

START_TEST(test_unreachable)
{
    static const struct {
        const char *a, *b;
        int dead;
    } t[] = {
        {"{ prefix: / }", "{ prefix: /api/ }", 1},
        {"{ prefix: /api }", "{ path: /api/x }", 1},
        {"{ prefix: /api/ }", "{ path: \"/api/{id}\" }", 1},
        {"{ prefix: /api/d }", "{ path: \"/api/{id}\" }", 0},
        {"{ prefix: /api/ }", "{ prefix: /ap }", 0},
        {"{ prefix: /api/, methods: [GET] }", "{ prefix: /api/x/ }", 0},
        {"{ prefix: /api/, methods: [GET, PUT] }", "{ prefix: /api/x/, methods: [PUT] }", 1},
        {"{ prefix: /api/, host: a.example }", "{ prefix: /api/x/ }", 0},
        {"{ prefix: /api/, host: a.example }", "{ prefix: /api/x/, host: A.Example }", 1},
        {"{ prefix: /api/ }", "{ prefix: /api/x/, host: a.example }", 1},
        {"{ path: /x }", "{ path: /x }", 1},
        {"{ path: /x, methods: [GET] }", "{ path: /x, methods: [POST] }", 0},
        {"{ path: /x }", "{ prefix: /x }", 0},
        {"{ path: \"/a/{id}\" }", "{ path: \"/a/{other}\" }", 1},
        {"{ path: \"/a/{id}\" }", "{ path: /a/me }", 1},
        {"{ path: /a/me }", "{ path: \"/a/{id}\" }", 0},
        {"{ path: \"/a/{id}\" }", "{ path: /a/ }", 0},
        {"{ path: \"/a/{id}\" }", "{ path: /a/b/c }", 0},
        {"{ path: \"/a/{id}/x\" }", "{ path: \"/a/{id}/y\" }", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 LISTEN UPSTREAMS "routes:\n  - { name: first, match: %s, upstream: monolith }\n"
                                  "  - { name: second, match: %s, upstream: monolith }\n",
                 t[i].a, t[i].b);
        fx_diags d = {0};
        fx_config *c = load_str(yaml, &d);
        if (t[i].dead) {
            ck_assert_msg(c == NULL, "case %zu: %s then %s: not flagged", i, t[i].a, t[i].b);
            ck_assert_uint_eq(d.n, 1);
            ck_assert_str_eq(d.v[0].message, "routes[1]: route 'second' can never match: routes[0] ('first', line "
                                             "6) takes all its requests first");
            ck_assert_int_eq(d.v[0].line, 7);
        } else {
            char *text = diags_text(&d);
            ck_assert_msg(c != NULL, "case %zu: %s then %s:\n%s", i, t[i].a, t[i].b, text);
            free(text);
            fx_config_unref(c);
        }
        fx_diags_free(&d);
    }
}
END_TEST

START_TEST(test_unreachable_names_earliest)
{
    /* r2 is taken by r0 (GET only) for GETs only, by r1 entirely; r3 by r1
     * and by the dead r2: the earliest live cover is named each time */
    static const char yaml[] = LISTEN UPSTREAMS
        "routes:\n"
        "  - { name: r0, match: { prefix: /a/, methods: [GET] }, upstream: monolith }\n"
        "  - { name: r1, match: { prefix: /a }, upstream: monolith }\n"
        "  - { name: r2, match: { prefix: /a/b/ }, upstream: monolith }\n"
        "  - { name: r3, match: { path: \"/a/b/{id}\", methods: [GET] }, upstream: monolith }\n"
        "  - { name: r4, match: { path: /b }, upstream: monolith }\n"
        "  - { name: r5, match: { path: \"/{x}\" }, upstream: monolith }\n"
        "  - { name: r6, match: { path: /b, methods: [PUT] }, upstream: monolith }\n";
    fx_diags d = {0};
    ck_assert_ptr_null(load_str(yaml, &d));
    char *text = diags_text(&d);
    ck_assert_msg(d.n == 3, "%s", text);
    ck_assert_str_eq(d.v[0].message,
                     "routes[2]: route 'r2' can never match: routes[1] ('r1', line 7) takes all its requests first");
    ck_assert_str_eq(d.v[1].message,
                     "routes[3]: route 'r3' can never match: routes[0] ('r0', line 6) takes all its requests first");
    ck_assert_str_eq(d.v[2].message,
                     "routes[6]: route 'r6' can never match: routes[4] ('r4', line 10) takes all its requests first");
    free(text);
    fx_diags_free(&d);
}
END_TEST

/* --- main ------------------------------------------------------------------ */

static int is_yaml(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0;
}

static char **list_yaml(const char *dir, int *n)
{
    struct dirent **ents;
    *n = scandir(dir, &ents, is_yaml, alphasort);
    if (*n < 0) {
        fprintf(stderr, "test_config: cannot list %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    char **names = calloc((size_t)*n + 1, sizeof(*names));
    for (int i = 0; i < *n; i++) {
        if (asprintf(&names[i], "%s/%s", dir, ents[i]->d_name) < 0)
            exit(1);
        free(ents[i]);
    }
    free(ents);
    return names;
}

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("files");
    tcase_add_loop_test(tc, test_valid_file, 0, nvalid);
    tcase_add_loop_test(tc, test_invalid_file, 0, ninvalid);
    tcase_add_test(tc, test_corpus_size);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshot");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_full);
    tcase_add_test(tc, test_all_methods);
    tcase_add_test(tc, test_templates);
    tcase_add_test(tc, test_template_errors);
    tcase_add_test(tc, test_env);
    tcase_add_test(tc, test_refs);
    tcase_add_test(tc, test_unreachable);
    tcase_add_test(tc, test_unreachable_names_earliest);
    suite_add_tcase(s, tc);

    tc = tcase_create("grammars");
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_sizes);
    tcase_add_test(tc, test_addresses);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_did_you_mean);
    tcase_add_test(tc, test_multiple_errors);
    tcase_add_test(tc, test_error_cap);
    tcase_add_test(tc, test_diags_format);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_size_limit);
    tcase_add_test(tc, test_buffer_edges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *data = getenv("FX_TEST_DATA");
#ifdef FX_TEST_DATA_DIR
    if (!data || !*data)
        data = FX_TEST_DATA_DIR;
#endif
    if (!data || !*data) {
        fprintf(stderr, "test_config: set FX_TEST_DATA to the tests/data directory\n");
        return 1;
    }
    if (chdir(data) != 0) {
        fprintf(stderr, "test_config: cannot enter %s: %s\n", data, strerror(errno));
        return 1;
    }
    valid_files = list_yaml("config/valid", &nvalid);
    invalid_files = list_yaml("config/invalid", &ninvalid);
    /* the valid corpus names this one; the invalid one relies on this staying unset */
    setenv("FICUS_TEST_MONOLITH", "127.0.0.1:8000", 1);
    unsetenv("FICUS_TEST_SURELY_UNSET");

    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int i = 0; i < nvalid; i++)
        free(valid_files[i]);
    for (int i = 0; i < ninvalid; i++)
        free(invalid_files[i]);
    free(valid_files);
    free(invalid_files);
    return failed ? 1 : 0;
}

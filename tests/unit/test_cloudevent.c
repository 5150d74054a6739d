/*
 * test_cloudevent.c — Check suite "cloudevent" for gateway/cloudevent.c.
 *
 *   json cases       one table row per text: valid or not (RFC 8259 grammar,
 *                    escapes and surrogate pairs, raw UTF-8, nesting ≤ 64)
 *   content types    which media types count as JSON
 *   time             fixed instants, then random ones against gmtime_r
 *   uuid7            layout (version, variant, 48-bit ms), 100,000 unique,
 *                    ordered by ms
 *   keys             one row per template + request: the key, or a phrase of
 *                    the refusal; the claims come from a real token, minted and
 *                    verified with the authz library
 *   events           every built event is parsed with jansson and each
 *                    attribute checked: data as JSON, string or base64 (decoded
 *                    here with an own decoder), omitted, none, escaping and
 *                    U+FFFD replacement, attribute order, one golden event
 *   timing           prints ns per event with a 500-byte JSON body (no assertion)
 */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudevent.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* ---- JSON check ----------------------------------------------------------------------------- */

typedef struct json_case {
    const char *text;
    size_t len; /* 0: strlen(text) */
    int valid;
} json_case;

/* a row whose text holds NUL bytes */
#define BIN(s, v) {(s), sizeof(s) - 1, (v)}

/* clang-format off */
static const json_case json_cases[] = {
    /* values */
    {"0", 0, 1}, {"-0", 0, 1}, {"123", 0, 1}, {"-1.5e+10", 0, 1}, {"1E-2", 0, 1}, {"0.5", 0, 1},
    {"1e400", 0, 1}, {"123456789012345678901234567890", 0, 1},
    {"true", 0, 1}, {"false", 0, 1}, {"null", 0, 1}, {"\"\"", 0, 1}, {"\"x\"", 0, 1},
    {"[]", 0, 1}, {"{}", 0, 1}, {" \t\r\n[ 1 , 2 ]\n", 0, 1}, {"{ \"a\" : [ 1, { \"b\" : null } ] }", 0, 1},
    {"{\"a\":1,\"a\":2}", 0, 1}, /* duplicate names: RFC 8259 only says SHOULD be unique */
    {"[[],[[]],{},{\"\":{}}]", 0, 1},
    /* escapes */
    {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", 0, 1}, {"\"\\u0041\\u00e9\\uFFFF\"", 0, 1},
    BIN("\"\\u0000\"", 1), {"\"\\ud83d\\ude00\"", 0, 1}, {"\"\\uDBFF\\uDFFF\"", 0, 1},
    /* raw UTF-8: 2, 3, 4 bytes, the largest of each, U+10FFFF, DEL */
    {"\"caf\xC3\xA9\"", 0, 1}, {"\"\xE2\x82\xAC\"", 0, 1}, {"\"\xF0\x9F\x98\x80\"", 0, 1},
    {"\"\xDF\xBF\xEF\xBF\xBF\"", 0, 1}, {"\"\xF4\x8F\xBF\xBF\"", 0, 1}, {"\"\x7F\"", 0, 1},
    {"\"\xED\x9F\xBF\xEE\x80\x80\"", 0, 1}, /* U+D7FF, U+E000: either side of the surrogates */

    /* empty, garbage, several values */
    {"", 0, 0}, {" ", 0, 0}, {"1 2", 0, 0}, {"[1]x", 0, 0}, {"{}}", 0, 0}, {"[]]", 0, 0}, {"]", 0, 0},
    {"[", 0, 0}, {"{", 0, 0}, {"{\"a\":1", 0, 0}, {"'x'", 0, 0}, {"\xEF\xBB\xBF{}", 0, 0} /* BOM */,
    BIN("{}\0", 0), BIN("[1,\0 2]", 0), {"\v1", 0, 0}, {"1\f", 0, 0},
    /* commas and colons */
    {"[1,]", 0, 0}, {"[,1]", 0, 0}, {"[1,,2]", 0, 0}, {"[1 2]", 0, 0}, {"{\"a\":1,}", 0, 0},
    {"{,}", 0, 0}, {"{\"a\" 1}", 0, 0}, {"{\"a\":}", 0, 0}, {"{1:2}", 0, 0}, {"{a:1}", 0, 0},
    {"{\"a\"::1}", 0, 0}, {"{\"a\":1 \"b\":2}", 0, 0}, {"[1:2]", 0, 0}, {"{\"a\",1}", 0, 0},
    /* numbers */
    {"01", 0, 0}, {"-01", 0, 0}, {"00", 0, 0}, {"-", 0, 0}, {"1.", 0, 0}, {".5", 0, 0}, {"+1", 0, 0},
    {"1e", 0, 0}, {"1e+", 0, 0}, {"1.e3", 0, 0}, {"0x10", 0, 0}, {"1_0", 0, 0}, {"- 1", 0, 0},
    {"NaN", 0, 0}, {"Infinity", 0, 0}, {"-Infinity", 0, 0}, {"[1e5.0]", 0, 0},
    /* literals */
    {"tru", 0, 0}, {"nul", 0, 0}, {"True", 0, 0}, {"NULL", 0, 0}, {"truex", 0, 0}, {"falsey", 0, 0},
    /* strings */
    {"\"abc", 0, 0}, {"\"", 0, 0}, {"\"\\\"", 0, 0}, {"\"\\x\"", 0, 0}, {"\"\\U0041\"", 0, 0},
    {"\"\\u12\"", 0, 0}, {"\"\\u12G4\"", 0, 0}, {"\"\\", 0, 0}, {"\"\\u", 0, 0},
    {"\"a\nb\"", 0, 0}, {"\"a\tb\"", 0, 0}, {"\"\x01\"", 0, 0}, {"\"\x1F\"", 0, 0}, BIN("\"\0\"", 0),
    /* lone or misordered surrogate escapes */
    {"\"\\uD83D\"", 0, 0}, {"\"\\uDE00\"", 0, 0}, {"\"\\uD83Dx\"", 0, 0}, {"\"\\uD83D\\u0041\"", 0, 0},
    {"\"\\uDE00\\uD83D\"", 0, 0}, {"\"\\uD83D\\uD83D\"", 0, 0}, {"\"\\uD83D\\\"", 0, 0}, {"\"\\uD83D\\n\"", 0, 0},
    /* ill-formed raw UTF-8 */
    {"\"\x80\"", 0, 0}, {"\"\xBF\"", 0, 0}, {"\"\xC0\xAF\"", 0, 0}, {"\"\xC1\xBF\"", 0, 0},
    {"\"\xE0\x80\xAF\"", 0, 0}, {"\"\xE0\x9F\xBF\"", 0, 0}, {"\"\xF0\x80\x80\xAF\"", 0, 0},
    {"\"\xF0\x8F\xBF\xBF\"", 0, 0}, {"\"\xED\xA0\x80\"", 0, 0}, {"\"\xED\xBF\xBF\"", 0, 0},
    {"\"\xF4\x90\x80\x80\"", 0, 0}, {"\"\xF5\x80\x80\x80\"", 0, 0}, {"\"\xFF\"", 0, 0}, {"\"\xFE\"", 0, 0},
    {"\"\xC3\"", 0, 0}, {"\"\xE2\x82\"", 0, 0}, {"\"\xF0\x9F\x98\"", 0, 0}, {"\"\xC3\xC3\xA9\"", 0, 0},
    {"\"\xC3", 0, 0}, {"\"\xF0\x9F\x98", 0, 0}, {"[\xC3\xA9]", 0, 0},
};
/* clang-format on */

START_TEST(test_json_table)
{
    const json_case *c = &json_cases[_i];
    size_t n = c->len ? c->len : strlen(c->text);
    ck_assert_msg(fx_ce_json_valid(c->text, n) == c->valid, "row %d (%.*s): want %s", _i, (int)n, c->text,
                  c->valid ? "valid" : "invalid");
    /* every proper prefix of a valid text that is not a number is invalid (no reading past n) */
    if (c->valid && (c->text[0] == '[' || c->text[0] == '{' || c->text[0] == '"'))
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(!fx_ce_json_valid(c->text, k), "row %d: prefix of %zu bytes taken as valid", _i, k);
}
END_TEST

static char *nested(const char *open, const char *inner, const char *close, int depth)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = xmalloc((size_t)depth * (lo + lc) + li + 1), *w = s;
    for (int i = 0; i < depth; i++, w += lo)
        memcpy(w, open, lo);
    memcpy(w, inner, li);
    w += li;
    for (int i = 0; i < depth; i++, w += lc)
        memcpy(w, close, lc);
    *w = '\0';
    return s;
}

START_TEST(test_json_nesting)
{
    static const struct {
        const char *open, *inner, *close;
    } shapes[] = {{"[", "", "]"}, {"{\"a\":", "1", "}"}, {"[{\"k\":", "[]", "}]"}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        /* the third shape opens two containers per step (and [] adds one) */
        int per = i == 2 ? 2 : 1, extra = i == 2 ? 1 : 0;
        int ok_depth = (64 - extra) / per;
        char *s = nested(shapes[i].open, shapes[i].inner, shapes[i].close, ok_depth);
        ck_assert_msg(fx_ce_json_valid(s, strlen(s)), "shape %zu at depth %d", i, ok_depth * per + extra);
        free(s);
        s = nested(shapes[i].open, shapes[i].inner, shapes[i].close, ok_depth + 1);
        ck_assert_msg(!fx_ce_json_valid(s, strlen(s)), "shape %zu at depth %d", i, (ok_depth + 1) * per + extra);
        free(s);
    }
    /* two 63-deep siblings inside one array: depth 64 twice; depth, not count, is limited */
    char *a = nested("[", "", "]", 63);
    size_t n = strlen(a);
    char *two = xmalloc(2 * n + 4);
    sprintf(two, "[%s,%s]", a, a);
    ck_assert(fx_ce_json_valid(two, strlen(two)));
    free(two);
    free(a);
    /* a million '[' is refused at the 65th, without recursion */
    size_t big = 1000000;
    char *deep = xmalloc(big);
    memset(deep, '[', big);
    ck_assert(!fx_ce_json_valid(deep, big));
    ck_assert(!fx_ce_json_valid(NULL, 0));
    free(deep);
}
END_TEST

/* Large texts: a 4 MiB array of strings and a 4 MiB string (linear, no allocation to fail). */
START_TEST(test_json_large)
{
    size_t n = 4u << 20;
    char *s = xmalloc(n);
    s[0] = '[';
    size_t i = 1;
    while (i + 8 < n) {
        memcpy(s + i, "\"\xC3\xA9\\n\",", 7);
        i += 7;
    }
    memcpy(s + i, "1]", 2);
    ck_assert(fx_ce_json_valid(s, i + 2));
    memset(s, 'a', n);
    s[0] = s[n - 1] = '"';
    ck_assert(fx_ce_json_valid(s, n));
    s[n / 2] = '\x1F';
    ck_assert(!fx_ce_json_valid(s, n));
    free(s);
}
END_TEST

/* ---- content types -------------------------------------------------------------------------- */

static const struct {
    const char *ct;
    int json;
} ct_cases[] = {
    {"application/json", 1},
    {"APPLICATION/JSON", 1},
    {"Application/Json", 1},
    {"application/json; charset=utf-8", 1},
    {"application/json;charset=utf-8", 1},
    {" application/json \t", 1},
    {"application/json ; q=1", 1},
    {"application/cloudevents+json", 1},
    {"application/problem+json", 1},
    {"application/vnd.api+JSON; ext=x", 1},
    {"text/x.y+json", 1},
    {"application/jsonx", 0},
    {"application/json-seq", 0},
    {"application/x-json", 0},
    {"application/json5", 0},
    {"text/json", 0},
    {"text/plain", 0},
    {"application/+json", 0},
    {"+json", 0},
    {"json", 0},
    {"application/", 0},
    {"/json", 0},
    {"application/ json", 0},
    {"application /json", 0},
    {"application/json/x", 0},
    {"application/x+json+xml", 0},
    {"", 0},
    {";", 0},
    {"; application/json", 0},
};

START_TEST(test_content_types)
{
    for (size_t i = 0; i < sizeof(ct_cases) / sizeof(ct_cases[0]); i++)
        ck_assert_msg(fx_ce_content_type_is_json(fx_slice_cstr(ct_cases[i].ct)) == ct_cases[i].json, "'%s'",
                      ct_cases[i].ct);
    ck_assert(!fx_ce_content_type_is_json(FX_SLICE_NULL));
    /* the slice's length bounds it: "application/json" read as its first 12 bytes */
    ck_assert(!fx_ce_content_type_is_json(fx_slice_make("application/json", 12)));
    ck_assert(fx_ce_content_type_is_json(fx_slice_make("application/jsonXYZ", 16)));
}
END_TEST

/* ---- time ------------------------------------------------------------------------------------ */

START_TEST(test_time_fixed)
{
    static const struct {
        uint64_t ms;
        const char *want;
    } t[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {999, "1970-01-01T00:00:00.999Z"},
        {94694399000, "1972-12-31T23:59:59.000Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {2147483648000, "2038-01-19T03:14:08.000Z"},
        {1795694400000, "2026-11-26T12:00:00.000Z"},
        {4107542400000, "2100-03-01T00:00:00.000Z"},
        {4107542399999, "2100-02-28T23:59:59.999Z"}, /* 2100 is not a leap year */
        {UINT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
        {UINT64_C(253402300800000), "9999-12-31T23:59:59.999Z"}, /* later: held at the last showable instant */
        {UINT64_MAX, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char out[25];
        memset(out, 'x', sizeof(out));
        fx_ce_time(t[i].ms, out);
        ck_assert_str_eq(out, t[i].want);
    }
}
END_TEST

START_TEST(test_time_against_gmtime)
{
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t ms = x % UINT64_C(253402300800000);
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        ck_assert_ptr_nonnull(gmtime_r(&secs, &tm));
        char want[64], got[25];
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        fx_ce_time(ms, got);
        ck_assert_msg(!strcmp(want, got), "%llu: %s, want %s", (unsigned long long)ms, got, want);
    }
}
END_TEST

/* ---- UUIDv7 ------------------------------------------------------------------------------------ */

static void check_uuid_layout(const char *u, uint64_t ms)
{
    ck_assert_uint_eq(strlen(u), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ck_assert_msg(u[i] == '-', "%s: no dash at %d", u, i);
        else
            ck_assert_msg(strchr("0123456789abcdef", u[i]) && u[i], "%s: not lower-case hex at %d", u, i);
    }
    ck_assert_msg(u[14] == '7', "%s: version", u);
    ck_assert_msg(strchr("89ab", u[19]), "%s: variant", u);
    char ts[13];
    memcpy(ts, u, 8);
    memcpy(ts + 8, u + 9, 4);
    ts[12] = '\0';
    ck_assert_uint_eq(strtoull(ts, NULL, 16), ms & UINT64_C(0xFFFFFFFFFFFF));
}

START_TEST(test_uuid7_layout)
{
    static const uint64_t ms[] = {0, 1, 255, 256, 1795694400000, UINT64_C(0xFFFFFFFFFFFF)};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        char u[37];
        ck_assert_int_eq(fx_ce_uuid7(ms[i], u), 0);
        check_uuid_layout(u, ms[i]);
    }
    char u[37];
    ck_assert_int_eq(fx_ce_uuid7(1795694400123, u), 0);
    ck_assert(!strncmp(u, "01a217ba-127b-7", 15)); /* 1795694400123 = 0x01a217ba127b */
}
END_TEST

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 36);
}

START_TEST(test_uuid7_unique)
{
    enum { N = 100000 };
    char(*ids)[37] = xmalloc(sizeof(*ids) * N);
    /* all in one millisecond: only the 74 random bits tell them apart */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(fx_ce_uuid7(1795694400000, ids[i]), 0);
    qsort(ids, N, sizeof(*ids), cmp_id);
    for (int i = 1; i < N; i++)
        ck_assert_msg(memcmp(ids[i - 1], ids[i], 36) != 0, "duplicate id %s", ids[i]);
    /* the random bits vary: every hex digit position after the timestamp takes more than one value */
    for (int pos = 15; pos < 36; pos++) {
        if (pos == 18 || pos == 23)
            continue;
        int seen = 0;
        for (int i = 0; i < 64; i++)
            seen |= 1 << (ids[i * (N / 64)][pos] % 32);
        ck_assert_msg(__builtin_popcount((unsigned)seen) > 1, "digit %d never changes", pos);
    }
    free(ids);
}
END_TEST

START_TEST(test_uuid7_ordered_by_ms)
{
    char prev[37], cur[37];
    uint64_t ms = 1795694400000 - 300;
    ck_assert_int_eq(fx_ce_uuid7(ms, prev), 0);
    for (int i = 0; i < 1000; i++) {
        ms += 1 + (uint64_t)(i % 3) * 255; /* steps that carry across byte boundaries */
        ck_assert_int_eq(fx_ce_uuid7(ms, cur), 0);
        ck_assert_msg(strcmp(prev, cur) < 0, "%s (earlier) >= %s", prev, cur);
        memcpy(prev, cur, sizeof(cur));
    }
}
END_TEST

/* ---- keys ------------------------------------------------------------------------------------- */

#define NOW 1795694400
static const char secret[] = "test-only-cloudevent-hs256-secret-32bytes+";
static fx_jwt_keyset *keys;
static fx_jwt_claims *claims;

static void claims_setup(void)
{
    char err[256] = "";
    keys = fx_jwt_keyset_new();
    ck_assert_int_eq(
        fx_jwt_keyset_add_secret(keys, "k1", FX_JWT_ALG_HS256, (const unsigned char *)secret, strlen(secret), err,
                                 sizeof(err)),
        0);
    static const char *const aud[] = {"ficus"};
    fx_jwt_issuer iss = {"https://id.example.com", aud, 1, keys};
    char *tok = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)secret, strlen(secret), "k1",
                            "{\"iss\":\"https://id.example.com\",\"aud\":\"ficus\",\"sub\":\"user-7\","
                            "\"tenant\":\"acme\",\"n\":42,\"neg\":-5,\"zero\":0,\"f\":1.5,\"e\":1e20,"
                            "\"t\":true,\"no\":false,\"flag\":\"true\",\"num\":\"1.5\","
                            "\"obj\":{\"id\":\"o-1\",\"n\":7,\"deep\":{\"x\":\"y\"},\"q\\\"k\":\"quoted\"},"
                            "\"org\":{\"id\":\"nested\"},\"org.id\":\"dotted-top\","
                            "\"arr\":[\"a\",\"b\"],\"nul\":null,\"ctl\":\"a\\nb\",\"del\":\"a\\u007fb\","
                            "\"uni\":\"caf\\u00e9 \\ud83d\\ude00\",\"esc\":\"q\\\"b\\\\s/\",\"empty\":\"\","
                            "\"esc\\u0041key\":\"unescaped-name\",\"long\":\"abcdefghij\"}",
                            NOW, 3600, err, sizeof(err));
    ck_assert_msg(tok, "mint: %s", err);
    const char *detail = NULL;
    fx_jwt_reason r = fx_jwt_verify(&iss, 1, tok, strlen(tok), NOW, 30, &claims, &detail);
    ck_assert_msg(r == FX_JWT_OK, "verify: %s", detail ? detail : fx_jwt_reason_name(r));
    free(tok);
}

static void claims_teardown(void)
{
    fx_jwt_claims_unref(claims);
    fx_jwt_keyset_unref(keys);
    claims = NULL;
    keys = NULL;
}

typedef struct key_case {
    const char *tmpl;
    const char *params[3][2]; /* name, raw value */
    int anonymous;
    size_t cap;       /* 0: 256 */
    const char *want; /* the key, or NULL: refused */
    const char *why;  /* refused: a phrase the sentence contains */
} key_case;

/* clang-format off */
static const key_case key_cases[] = {
    /* literal text and parameters */
    {"orders", {{0}}, 0, 0, "orders", NULL},
    {"doc-{id}", {{"id", "42"}}, 0, 0, "doc-42", NULL},
    {"{a}:{b}/{a}", {{"a", "x"}, {"b", "y"}}, 0, 0, "x:y/x", NULL},
    {"{id}", {{"other", "1"}, {"id", "2"}}, 0, 0, "2", NULL},
    {"{id}", {{"id", "a%20b"}}, 0, 0, "a b", NULL},
    {"{id}", {{"id", "%41%42%63"}}, 0, 0, "ABc", NULL},
    {"{id}", {{"id", "%c3%a9%C3%A9"}}, 0, 0, "\xC3\xA9\xC3\xA9", NULL},
    {"{id}", {{"id", "%F0%9F%98%80"}}, 0, 0, "\xF0\x9F\x98\x80", NULL},
    {"{id}", {{"id", "a+b"}}, 0, 0, "a+b", NULL},
    {"{id}", {{"id", "a%2Fb"}}, 0, 0, "a/b", NULL},
    {"{id}", {{"id", "%25"}}, 0, 0, "%", NULL},
    {"{id}", {{"id", "%7E"}}, 0, 0, "~", NULL},
    /* bad escapes */
    {"{id}", {{"id", "%"}}, 0, 0, NULL, "bad percent-escape at byte 1"},
    {"{id}", {{"id", "ab%4"}}, 0, 0, NULL, "bad percent-escape at byte 3"},
    {"{id}", {{"id", "%G1"}}, 0, 0, NULL, "bad percent-escape"},
    {"{id}", {{"id", "%1G"}}, 0, 0, NULL, "bad percent-escape"},
    {"{id}", {{"id", "%%41"}}, 0, 0, NULL, "bad percent-escape"},
    /* decoded control characters (C0, DEL, C1) */
    {"{id}", {{"id", "%00"}}, 0, 0, NULL, "control character (0x00)"},
    {"{id}", {{"id", "a%0Ab"}}, 0, 0, NULL, "control character (0x0a)"},
    {"{id}", {{"id", "%1f"}}, 0, 0, NULL, "control character"},
    {"{id}", {{"id", "%7F"}}, 0, 0, NULL, "control character (0x7f)"},
    {"{id}", {{"id", "%C2%85"}}, 0, 0, NULL, "control character (0x85)"},
    {"{id}", {{"id", "%C2%A0"}}, 0, 0, "\xC2\xA0", NULL}, /* U+00A0 is not a control */
    /* decoded ill-formed UTF-8 */
    {"{id}", {{"id", "%C3%28"}}, 0, 0, NULL, "valid UTF-8"},
    {"{id}", {{"id", "%C0%AF"}}, 0, 0, NULL, "valid UTF-8"},
    {"{id}", {{"id", "%E0%80%AF"}}, 0, 0, NULL, "valid UTF-8"},
    {"{id}", {{"id", "%ED%A0%80"}}, 0, 0, NULL, "valid UTF-8"},
    {"{id}", {{"id", "%F4%90%80%80"}}, 0, 0, NULL, "valid UTF-8"},
    {"{id}", {{"id", "ab%FF"}}, 0, 0, NULL, "valid UTF-8 (at decoded byte 3)"},
    {"{id}", {{"id", "%E2%82"}}, 0, 0, NULL, "valid UTF-8"},
    /* claims: strings and integers */
    {"{token.tenant}/{id}", {{"id", "42"}}, 0, 0, "acme/42", NULL},
    {"{token.sub}", {{0}}, 0, 0, "user-7", NULL},
    {"n{token.n}", {{0}}, 0, 0, "n42", NULL},
    {"{token.neg}", {{0}}, 0, 0, "-5", NULL},
    {"{token.zero}", {{0}}, 0, 0, "0", NULL},
    {"{token.flag}", {{0}}, 0, 0, "true", NULL},  /* the string "true" */
    {"{token.num}", {{0}}, 0, 0, "1.5", NULL},    /* the string "1.5" */
    {"{token.uni}", {{0}}, 0, 0, "caf\xC3\xA9 \xF0\x9F\x98\x80", NULL},
    {"{token.esc}", {{0}}, 0, 0, "q\"b\\s/", NULL},
    {"x{token.empty}", {{0}}, 0, 0, "x", NULL},
    {"{token.escAkey}", {{0}}, 0, 0, "unescaped-name", NULL}, /* a member name written with an escape */
    /* dotted names: a top-level member of the whole name first, else a walk */
    {"{token.org.id}", {{0}}, 0, 0, "dotted-top", NULL},
    {"{token.obj.id}", {{0}}, 0, 0, "o-1", NULL},
    {"{token.obj.n}", {{0}}, 0, 0, "7", NULL},
    {"{token.obj.deep.x}", {{0}}, 0, 0, "y", NULL},
    {"{token.obj.q\"k}", {{0}}, 0, 0, "quoted", NULL},
    {"{token.obj.nope}", {{0}}, 0, 0, NULL, "the token has no 'obj.nope' claim"},
    {"{token.tenant.x}", {{0}}, 0, 0, NULL, "no 'tenant.x' claim"},
    {"{token.obj.deep.x.y}", {{0}}, 0, 0, NULL, "no 'obj.deep.x.y' claim"},
    /* claims refused */
    {"{token.missing}", {{0}}, 0, 0, NULL, "the token has no 'missing' claim"},
    {"{token.nul}", {{0}}, 0, 0, NULL, "the token's 'nul' claim is null"},
    {"{token.t}", {{0}}, 0, 0, NULL, "'t' claim is a boolean; a key takes only a string or an integer"},
    {"{token.no}", {{0}}, 0, 0, NULL, "a boolean"},
    {"{token.f}", {{0}}, 0, 0, NULL, "'f' claim is a number with a fraction or exponent"},
    {"{token.e}", {{0}}, 0, 0, NULL, "fraction or exponent"},
    {"{token.obj}", {{0}}, 0, 0, NULL, "'obj' claim is an object"},
    {"{token.obj.deep}", {{0}}, 0, 0, NULL, "an object"},
    {"{token.arr}", {{0}}, 0, 0, NULL, "'arr' claim is an array"},
    {"{token.ctl}", {{0}}, 0, 0, NULL, "'ctl' claim contains a control character"},
    {"{token.del}", {{0}}, 0, 0, NULL, "control character"},
    {"{token.sub}", {{0}}, 1, 0, NULL, "the request has no token"},
    /* empty and too long: the key must fit in cap - 1 */
    {"{token.empty}", {{0}}, 0, 0, NULL, "the key is empty"},
    {"{id}", {{"id", ""}}, 0, 0, NULL, "the key is empty"},
    {"{id}", {{"id", "abcd"}}, 0, 5, "abcd", NULL},
    {"{id}", {{"id", "abcde"}}, 0, 5, NULL, "longer than 4 bytes"},
    {"{id}", {{"id", "%61%62%63%64"}}, 0, 5, "abcd", NULL}, /* the decoded length counts */
    {"abcd", {{0}}, 0, 5, "abcd", NULL},
    {"abcde", {{0}}, 0, 5, NULL, "longer than 4 bytes"},
    {"ab{id}", {{"id", "cde"}}, 0, 5, NULL, "longer than 4 bytes"},
    {"{token.long}", {{0}}, 0, 11, "abcdefghij", NULL},
    {"{token.long}", {{0}}, 0, 10, NULL, "longer than 9 bytes"},
    {"x{token.long}", {{0}}, 0, 11, NULL, "longer than 10 bytes"},
    {"{token.n}", {{0}}, 0, 3, "42", NULL},
    {"{token.n}", {{0}}, 0, 2, NULL, "longer than 1 bytes"},
    /* templates the loader would have refused */
    {"{id", {{"id", "1"}}, 0, 0, NULL, "'{' without '}'"},
    {"{nope}", {{"id", "1"}}, 0, 0, NULL, "'{nope}', which the route did not bind"},
};
/* clang-format on */

START_TEST(test_key_table)
{
    const key_case *c = &key_cases[_i];
    fx_ce_param params[3];
    size_t np = 0;
    for (; np < 3 && c->params[np][0]; np++) {
        params[np].name = fx_slice_cstr(c->params[np][0]);
        params[np].value = fx_slice_cstr(c->params[np][1]);
    }
    size_t cap = c->cap ? c->cap : 256;
    char *out = xmalloc(cap), why[256];
    memset(out, 'Z', cap);
    strcpy(why, "untouched");
    long n = fx_ce_render_key(c->tmpl, params, np, c->anonymous ? NULL : claims, out, cap, why, sizeof(why));
    if (c->want) {
        ck_assert_msg(n >= 0, "row %d '%s': refused: %s", _i, c->tmpl, why);
        ck_assert_int_eq(n, (long)strlen(c->want));
        ck_assert_str_eq(out, c->want);
    } else {
        ck_assert_msg(n == -1, "row %d '%s': rendered '%s', want refusal", _i, c->tmpl, n >= 0 ? out : "?");
        ck_assert_msg(strstr(why, c->why), "row %d '%s': why '%s' lacks '%s'", _i, c->tmpl, why, c->why);
        ck_assert_msg(out[0] == '\0', "row %d: out not emptied on refusal", _i);
    }
    free(out);
}
END_TEST

START_TEST(test_key_no_why_buffer)
{
    char out[8];
    fx_ce_param p = {FX_SLICE_LIT("id"), FX_SLICE_LIT("%zz")};
    ck_assert_int_eq(fx_ce_render_key("{id}", &p, 1, NULL, out, sizeof(out), NULL, 0), -1);
    ck_assert_int_eq(fx_ce_render_key("{id}", &p, 1, NULL, out, 0, NULL, 0), -1);
    char tiny[4];
    ck_assert_int_eq(fx_ce_render_key("{token.tenant}", NULL, 0, claims, out, sizeof(out), tiny, sizeof(tiny)), 4);
    ck_assert_int_eq(fx_ce_render_key("{token.nope}", NULL, 0, claims, out, sizeof(out), tiny, sizeof(tiny)), -1);
    ck_assert_str_eq(tiny, "the"); /* truncated, terminated */
    /* a parameter value is a slice: bytes after its length are not read */
    fx_ce_param q = {FX_SLICE_LIT("id"), fx_slice_make("12%41", 2)};
    ck_assert_int_eq(fx_ce_render_key("{id}", &q, 1, NULL, out, sizeof(out), NULL, 0), 2);
    ck_assert_str_eq(out, "12");
    q.value = fx_slice_make("12%41", 4); /* "12%4": the escape is cut */
    ck_assert_int_eq(fx_ce_render_key("{id}", &q, 1, NULL, out, sizeof(out), NULL, 0), -1);
}
END_TEST

/* ---- events ---------------------------------------------------------------------------------- */

static fx_ce_input base_input(void)
{
    fx_ce_input in = {
        .id = "0190163d-8694-739b-aea5-966c26f8ad91",
        .source_route = "documents-write",
        .type = "document.updated",
        .key = "42",
        .time_ms = 1795694400000,
        .request_id = FX_SLICE_LIT("req-1"),
        .actor = "user-7",
        .method = FX_SLICE_LIT("PUT"),
        .status = 200,
        .has_data = 1,
        .content_type = FX_SLICE_LIT("application/json"),
        .body = "{\"title\":\"x\"}",
        .body_len = 13,
    };
    return in;
}

/* Builds and parses; every built event must be JSON that jansson reads whole. */
static json_t *build(const fx_ce_input *in, char **raw)
{
    char *out = NULL;
    size_t n = 0;
    ck_assert_int_eq(fx_ce_build(in, &out, &n), 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(strlen(out), n); /* NUL-terminated, no NUL inside */
    json_error_t err;
    json_t *ev = json_loadb(out, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    ck_assert_msg(ev, "not JSON (%s at %d): %s", err.text, err.position, out);
    ck_assert(json_is_object(ev));
    if (raw)
        *raw = out;
    else
        free(out);
    return ev;
}

static const char *str_of(json_t *ev, const char *name)
{
    json_t *v = json_object_get(ev, name);
    ck_assert_msg(json_is_string(v), "'%s' missing or not a string", name);
    return json_string_value(v);
}

/* The attribute names in order must be exactly `want` (NULL-terminated). */
static void check_order(json_t *ev, const char *const *want)
{
    size_t i = 0;
    for (void *it = json_object_iter(ev); it; it = json_object_iter_next(ev, it), i++) {
        ck_assert_msg(want[i], "extra attribute '%s'", json_object_iter_key(it));
        ck_assert_str_eq(json_object_iter_key(it), want[i]);
    }
    ck_assert_msg(!want[i], "missing attribute '%s'", want[i]);
}

static void check_common(json_t *ev, const fx_ce_input *in)
{
    ck_assert_str_eq(str_of(ev, "specversion"), "1.0");
    ck_assert_str_eq(str_of(ev, "id"), in->id);
    char src[128];
    snprintf(src, sizeof(src), "/ficus/%s", in->source_route);
    ck_assert_str_eq(str_of(ev, "source"), src);
    ck_assert_str_eq(str_of(ev, "type"), in->type);
    ck_assert_str_eq(str_of(ev, "subject"), in->key);
    ck_assert_str_eq(str_of(ev, "partitionkey"), in->key);
    char t[25];
    fx_ce_time(in->time_ms, t);
    ck_assert_str_eq(str_of(ev, "time"), t);
    json_t *st = json_object_get(ev, "ficusstatus");
    ck_assert(json_is_integer(st));
    ck_assert_int_eq(json_integer_value(st), in->status);
}

START_TEST(test_event_golden)
{
    fx_ce_input in = base_input();
    in.body = "{\"a\": [1, 2.5e3, \"\\u00e9\"]}";
    in.body_len = strlen(in.body);
    char *raw;
    json_decref(build(&in, &raw));
    ck_assert_str_eq(raw, "{\"specversion\":\"1.0\",\"id\":\"0190163d-8694-739b-aea5-966c26f8ad91\","
                          "\"source\":\"/ficus/documents-write\",\"type\":\"document.updated\",\"subject\":\"42\","
                          "\"partitionkey\":\"42\",\"time\":\"2026-11-26T12:00:00.000Z\","
                          "\"datacontenttype\":\"application/json\",\"data\":{\"a\": [1, 2.5e3, \"\\u00e9\"]},"
                          "\"ficusrequestid\":\"req-1\",\"ficusactor\":\"user-7\",\"ficusmethod\":\"PUT\","
                          "\"ficusstatus\":200}");
    free(raw);
}
END_TEST

START_TEST(test_event_json_data)
{
    static const char *const order[] = {"specversion", "id", "source", "type", "subject", "partitionkey", "time",
                                        "datacontenttype", "data", "ficusrequestid", "ficusactor", "ficusmethod",
                                        "ficusstatus", NULL};
    static const struct {
        const char *ct, *body;
    } t[] = {
        {"application/json", "{\"title\":\"x\",\"n\":[1,2,{\"\xC3\xA9\":null}],\"s\":\"\\ud83d\\ude00\"}"},
        {"application/problem+json; charset=utf-8", " \n[true, false, null, -0.5e-3]\t"},
        {"APPLICATION/JSON", "\"just a string\""},
        {"application/json", "-12345"},
        {"application/vnd.x+json", "{\"\":{\"\":{\"\":[]}}}"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_ce_input in = base_input();
        in.content_type = fx_slice_cstr(t[i].ct);
        in.body = t[i].body;
        in.body_len = strlen(t[i].body);
        json_t *ev = build(&in, NULL);
        check_common(ev, &in);
        check_order(ev, order);
        ck_assert_str_eq(str_of(ev, "datacontenttype"), t[i].ct);
        json_t *want = json_loads(t[i].body, JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(want);
        ck_assert_msg(json_equal(json_object_get(ev, "data"), want), "row %zu: data differs", i);
        ck_assert_str_eq(str_of(ev, "ficusrequestid"), "req-1");
        ck_assert_str_eq(str_of(ev, "ficusactor"), "user-7");
        ck_assert_str_eq(str_of(ev, "ficusmethod"), "PUT");
        json_decref(want);
        json_decref(ev);
    }
    /* numbers beyond int64 / double are valid RFC 8259 (jansson refuses them): embedded as written */
    static const char *const big[] = {"12345678901234567890", "[1e400,-1e-400]"};
    for (size_t i = 0; i < 2; i++) {
        fx_ce_input in = base_input();
        in.body = big[i];
        in.body_len = strlen(big[i]);
        char *out, want[64];
        size_t n;
        ck_assert_int_eq(fx_ce_build(&in, &out, &n), 0);
        snprintf(want, sizeof(want), ",\"data\":%s,\"ficusrequestid\":", big[i]);
        ck_assert_msg(strstr(out, want), "%s", out);
        free(out);
    }
    /* a body 64 levels deep is embedded (the event itself is then 65 deep) */
    fx_ce_input in = base_input();
    char *deep = nested("[", "", "]", 64);
    in.body = deep;
    in.body_len = strlen(deep);
    json_t *ev = build(&in, NULL);
    ck_assert(json_is_array(json_object_get(ev, "data")));
    json_decref(ev);
    free(deep);
}
END_TEST

#define ESCAPES "q\"b\\s/\b\f\n\r\t\x01\x1F\x7F\0end caf\xC3\xA9 \xF0\x9F\x98\x80"

START_TEST(test_event_string_data)
{
    static const char *const order[] = {"specversion", "id", "source", "type", "subject", "partitionkey", "time",
                                        "datacontenttype", "data", "ficusrequestid", "ficusactor", "ficusmethod",
                                        "ficusstatus", NULL};
    static const struct {
        const char *ct, *body;
        size_t len;
        const char *want_ct;
    } t[] = {
        {"", "plain text", 10, "text/plain; charset=utf-8"},
        {"   ", "spaces only count as none", 26, "text/plain; charset=utf-8"},
        {"text/csv", "a,b\r\n1,2\r\n", 10, "text/csv"},
        /* JSON declared but not JSON: a string, the content type kept */
        {"application/json", "{\"a\":1,}", 8, "application/json"},
        {"application/json", "", 0, "application/json"},
        {"", "", 0, "text/plain; charset=utf-8"},
        /* every byte that needs an escape, NUL included, and multi-byte UTF-8 */
        {"text/plain", ESCAPES, sizeof(ESCAPES) - 1, "text/plain"},
        /* valid JSON but not a JSON content type: a string */
        {"text/plain", "{\"a\":1}", 7, "text/plain"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_ce_input in = base_input();
        in.content_type = fx_slice_cstr(t[i].ct);
        in.body = t[i].body;
        in.body_len = t[i].len;
        char *raw;
        json_t *ev = build(&in, &raw);
        check_common(ev, &in);
        check_order(ev, order);
        ck_assert_str_eq(str_of(ev, "datacontenttype"), t[i].want_ct);
        json_t *d = json_object_get(ev, "data");
        ck_assert_msg(json_is_string(d), "row %zu: data is not a string", i);
        ck_assert_uint_eq(json_string_length(d), t[i].len);
        ck_assert(!memcmp(json_string_value(d), t[i].body, t[i].len));
        if (i == 6) /* short forms where JSON has them, \u00XX for the other controls, DEL raw */
            ck_assert_msg(strstr(raw, "\"data\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7F\\u0000end"), "%s",
                          raw);
        free(raw);
        json_decref(ev);
    }
}
END_TEST

/* An own base64 decoder (standard alphabet, padding required): -1 on anything else. */
static long b64_decode(const char *s, unsigned char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0, pad++;
                continue;
            }
            const char *p = strchr(al, s[i + k]);
            if (!p || !s[i + k] || pad)
                return -1;
            v[k] = (int)(p - al);
        }
        uint32_t x = (uint32_t)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
        out[o++] = (unsigned char)(x >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(x >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)x;
    }
    return (long)o;
}

START_TEST(test_event_base64_data)
{
    static const char *const order[] = {"specversion", "id", "source", "type", "subject", "partitionkey", "time",
                                        "datacontenttype", "data_base64", "ficusrequestid", "ficusactor",
                                        "ficusmethod", "ficusstatus", NULL};
    static const struct {
        const char *ct, *body;
        size_t len;
        const char *want_ct, *want_b64;
    } t[] = {
        {"", "\xFF", 1, "application/octet-stream", "/w=="},
        {"", "\xFF\xFE", 2, "application/octet-stream", "//4="},
        {"", "\xFF\xFE\xFD", 3, "application/octet-stream", "//79"},
        {"", "\xFF\xFE\xFD\xFC", 4, "application/octet-stream", "//79/A=="},
        {"image/png", "\x89PNG\r\n\x1A\n\0\0", 10, "image/png", "iVBORw0KGgoAAA=="},
        /* JSON declared, not UTF-8 */
        {"application/json", "{\"a\":\"\xC3\x28\"}", 10, "application/json", NULL},
        {"text/plain", "overlong \xC0\xAF", 11, "text/plain", NULL},
        {"text/plain", "surrogate \xED\xA0\x80", 13, "text/plain", NULL},
        {"text/plain", "cut \xF0\x9F\x98", 7, "text/plain", NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_ce_input in = base_input();
        in.content_type = fx_slice_cstr(t[i].ct);
        in.body = t[i].body;
        in.body_len = t[i].len;
        json_t *ev = build(&in, NULL);
        check_common(ev, &in);
        check_order(ev, order);
        ck_assert_str_eq(str_of(ev, "datacontenttype"), t[i].want_ct);
        const char *b = str_of(ev, "data_base64");
        if (t[i].want_b64)
            ck_assert_str_eq(b, t[i].want_b64);
        unsigned char dec[64];
        ck_assert_int_eq(b64_decode(b, dec), (long)t[i].len);
        ck_assert(!memcmp(dec, t[i].body, t[i].len));
        json_decref(ev);
    }
}
END_TEST

/* 1 MiB of random bytes (base64) and 1 MiB of text: exact sizing holds for large bodies too. */
START_TEST(test_event_large_bodies)
{
    size_t n = 1u << 20;
    unsigned char *body = xmalloc(n), *dec = xmalloc(n + 3);
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        body[i] = (unsigned char)x;
    }
    body[0] = 0xFF; /* certainly not UTF-8 */
    fx_ce_input in = base_input();
    in.content_type = FX_SLICE_NULL;
    in.body = (const char *)body;
    in.body_len = n;
    json_t *ev = build(&in, NULL);
    const char *b = str_of(ev, "data_base64");
    ck_assert_uint_eq(strlen(b), (n + 2) / 3 * 4);
    ck_assert_int_eq(b64_decode(b, dec), (long)n);
    ck_assert(!memcmp(dec, body, n));
    json_decref(ev);
    for (size_t i = 0; i < n; i++)
        body[i] = (unsigned char)(i % 5 == 0 ? '"' : i % 7 == 0 ? '\n' : 'a' + i % 26);
    ev = build(&in, NULL);
    json_t *d = json_object_get(ev, "data");
    ck_assert_uint_eq(json_string_length(d), n);
    ck_assert(!memcmp(json_string_value(d), body, n));
    json_decref(ev);
    free(body);
    free(dec);
}
END_TEST

START_TEST(test_event_omitted_and_none)
{
    static const char *const order_omitted[] = {"specversion", "id", "source", "type", "subject", "partitionkey",
                                                "time", "ficusrequestid", "ficusactor", "ficusmethod", "ficusstatus",
                                                "ficusdataomitted", NULL};
    static const char *const order_none[] = {"specversion", "id", "source", "type", "subject", "partitionkey",
                                             "time", "ficusrequestid", "ficusactor", "ficusmethod", "ficusstatus",
                                             NULL};
    fx_ce_input in = base_input();
    in.omitted = FX_CE_DATA_TOO_LARGE;
    json_t *ev = build(&in, NULL);
    check_common(ev, &in);
    check_order(ev, order_omitted);
    ck_assert_str_eq(str_of(ev, "ficusdataomitted"), "too_large");
    json_decref(ev);

    in.omitted = FX_CE_DATA_INCOMPLETE;
    in.body = NULL; /* nothing captured */
    in.body_len = 0;
    ev = build(&in, NULL);
    check_order(ev, order_omitted);
    ck_assert_str_eq(str_of(ev, "ficusdataomitted"), "incomplete");
    json_decref(ev);

    /* data: none — no data attributes, whatever else the input says */
    in = base_input();
    in.has_data = 0;
    in.omitted = FX_CE_DATA_TOO_LARGE;
    ev = build(&in, NULL);
    check_common(ev, &in);
    check_order(ev, order_none);
    json_decref(ev);
}
END_TEST

START_TEST(test_event_anonymous_and_status)
{
    static const char *const order[] = {"specversion", "id", "source", "type", "subject", "partitionkey", "time",
                                        "datacontenttype", "data", "ficusrequestid", "ficusmethod", "ficusstatus",
                                        NULL};
    static const int statuses[] = {200, 201, 204, 299, 0, -1, 2147483647};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        fx_ce_input in = base_input();
        in.actor = NULL;
        in.status = statuses[i];
        json_t *ev = build(&in, NULL);
        check_common(ev, &in);
        check_order(ev, order);
        json_decref(ev);
    }
}
END_TEST

/* NULL strings and empty slices count as "" (no crash, still JSON). */
START_TEST(test_event_null_inputs)
{
    fx_ce_input in = {.time_ms = 0, .status = 204, .has_data = 1};
    json_t *ev = build(&in, NULL);
    static const char *const empty[] = {"id", "type", "subject", "partitionkey", "ficusrequestid", "ficusmethod"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
        ck_assert_str_eq(str_of(ev, empty[i]), "");
    ck_assert_str_eq(str_of(ev, "source"), "/ficus/");
    ck_assert_str_eq(str_of(ev, "data"), ""); /* no body: an empty string body */
    ck_assert_str_eq(str_of(ev, "datacontenttype"), "text/plain; charset=utf-8");
    ck_assert_ptr_null(json_object_get(ev, "ficusactor"));
    json_decref(ev);
}
END_TEST

/* Outside strings: escaped; ill-formed UTF-8 becomes U+FFFD (one per maximal ill-formed subpart). */
START_TEST(test_event_escaping)
{
#define FFFD "\xEF\xBF\xBD"
    static const struct {
        const char *in;
        size_t len;
        const char *want; /* as jansson decodes it */
    } t[] = {
        {"plain", 5, "plain"},
        {"a\"b\\c/d", 7, "a\"b\\c/d"},
        {"\n\r\t\b\f\x01\x1F\x7F", 8, "\n\r\t\b\f\x01\x1F\x7F"},
        {"\xFF", 1, FFFD},
        {"a\xFF" "b", 3, "a" FFFD "b"},
        {"\xC3(", 2, FFFD "("},
        {"\xC0\xAF", 2, FFFD FFFD},                  /* C0 is never a lead: two subparts */
        {"\xE0\xA0x", 3, FFFD "x"},                  /* E0 A0 is a valid prefix: one subpart */
        {"\xE0\x80\xAF", 3, FFFD FFFD FFFD},         /* 80 is not allowed after E0 */
        {"\xF0\x9F\x98", 3, FFFD},                   /* a cut 4-byte sequence */
        {"\xF0\x9F\x98\xF0\x9F\x98\x80", 7, FFFD "\xF0\x9F\x98\x80"},
        {"\xED\xA0\x80", 3, FFFD FFFD FFFD},         /* an encoded surrogate */
        {"\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
        {"caf\xC3\xA9", 5, "caf\xC3\xA9"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        fx_ce_input in = base_input();
        char *s = strndup(t[i].in, t[i].len);
        in.request_id = fx_slice_make(t[i].in, t[i].len);
        in.method = fx_slice_make(t[i].in, t[i].len);
        in.key = s;
        in.actor = s;
        in.type = s;
        in.source_route = s;
        in.id = s;
        in.content_type = fx_slice_make(t[i].in, t[i].len);
        in.body = "x";
        in.body_len = 1;
        json_t *ev = build(&in, NULL);
        static const char *const names[] = {"ficusrequestid", "ficusmethod", "subject", "partitionkey", "ficusactor",
                                            "type", "id", "datacontenttype"};
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            ck_assert_msg(!strcmp(str_of(ev, names[k]), t[i].want), "row %zu: %s is '%s'", i, names[k],
                          str_of(ev, names[k]));
        char src[64];
        snprintf(src, sizeof(src), "/ficus/%s", t[i].want);
        ck_assert_str_eq(str_of(ev, "source"), src);
        json_decref(ev);
        free(s);
    }
    /* a NUL inside a slice is escaped, not a terminator */
    fx_ce_input in = base_input();
    in.request_id = fx_slice_make("a\0b", 3);
    char *raw;
    json_t *ev = build(&in, &raw);
    ck_assert(strstr(raw, "\"ficusrequestid\":\"a\\u0000b\""));
    json_decref(ev);
    free(raw);
#undef FFFD
}
END_TEST

/* ---- timing (prints, asserts nothing about speed) ------------------------------------------- */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

START_TEST(test_timing)
{
    char body[600];
    size_t n = 0;
    n += (size_t)sprintf(body + n, "{\"id\":42,\"title\":\"Quarterly report\",\"tags\":[\"finance\",\"q3\"],");
    while (n < 480)
        n += (size_t)sprintf(body + n, "\"k%zu\":\"value with \\\"quotes\\\" and caf\xC3\xA9\",", n);
    n += (size_t)sprintf(body + n, "\"end\":true}");
    ck_assert(fx_ce_json_valid(body, n));
    fx_ce_input in = base_input();
    in.body = body;
    in.body_len = n;
    enum { ROUNDS = 100000 };
    size_t total = 0;
    double t0 = now_ns();
    for (int i = 0; i < ROUNDS; i++) {
        char *out;
        size_t len;
        ck_assert_int_eq(fx_ce_build(&in, &out, &len), 0);
        total += len;
        free(out);
    }
    double t1 = now_ns();
    char id[37], key[64];
    for (int i = 0; i < ROUNDS; i++)
        fx_ce_uuid7(1795694400000 + (uint64_t)i, id);
    double t2 = now_ns();
    fx_ce_param p = {FX_SLICE_LIT("id"), FX_SLICE_LIT("doc%2D42")};
    for (int i = 0; i < ROUNDS; i++)
        ck_assert_int_gt(fx_ce_render_key("{token.tenant}/{id}", &p, 1, claims, key, sizeof(key), NULL, 0), 0);
    double t3 = now_ns();
    printf("cloudevent timing: build %.0f ns/event (%zu-byte JSON body, %zu-byte event), uuid7 %.0f ns, "
           "render_key %.0f ns\n",
           (t1 - t0) / ROUNDS, n, total / ROUNDS, (t2 - t1) / ROUNDS, (t3 - t2) / ROUNDS);
}
END_TEST

static Suite *cloudevent_suite(void)
{
    Suite *s = suite_create("cloudevent");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_json_table, 0, (int)(sizeof(json_cases) / sizeof(json_cases[0])));
    tcase_add_test(tc, test_json_nesting);
    tcase_add_test(tc, test_json_large);
    tcase_add_test(tc, test_content_types);
    tcase_add_test(tc, test_time_fixed);
    tcase_add_test(tc, test_time_against_gmtime);
    tcase_add_test(tc, test_uuid7_layout);
    tcase_add_test(tc, test_uuid7_unique);
    tcase_add_test(tc, test_uuid7_ordered_by_ms);
    tcase_add_test(tc, test_event_golden);
    tcase_add_test(tc, test_event_json_data);
    tcase_add_test(tc, test_event_string_data);
    tcase_add_test(tc, test_event_base64_data);
    tcase_add_test(tc, test_event_large_bodies);
    tcase_add_test(tc, test_event_omitted_and_none);
    tcase_add_test(tc, test_event_anonymous_and_status);
    tcase_add_test(tc, test_event_escaping);
    tcase_add_test(tc, test_event_null_inputs);
    suite_add_tcase(s, tc);

    TCase *tk = tcase_create("keys");
    tcase_add_checked_fixture(tk, claims_setup, claims_teardown);
    tcase_add_loop_test(tk, test_key_table, 0, (int)(sizeof(key_cases) / sizeof(key_cases[0])));
    tcase_add_test(tk, test_key_no_why_buffer);
    tcase_add_test(tk, test_timing);
    suite_add_tcase(s, tk);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cloudevent_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

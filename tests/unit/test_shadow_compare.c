/*
 * test_shadow_compare.c — the primary's answer against the shadow's
 * (gateway/shadow_compare.c): status, headers with the noise left out,
 * JSON bodies compared semantically with ignored paths, other bodies byte
 * for byte, and the summary a person reads.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadow_compare.h"

#define H(n, v) {FX_SLICE_LIT(n), FX_SLICE_LIT(v), 0}

static fx_shadow_answer json_answer(int status, const char *body)
{
    static fx_http_header ct[] = {H("Content-Type", "application/json")};
    return (fx_shadow_answer){.status = status, .headers = ct, .nheaders = 1, .body = body,
                              .body_len = strlen(body)};
}

static unsigned cmp_bodies(const char *a, const char *b, char *const *ignore, size_t n, fx_shadow_diff *d)
{
    fx_shadow_answer pa = json_answer(200, a), pb = json_answer(200, b);
    return fx_shadow_compare(FX_SHADOW_BODY, ignore, n, &pa, &pb, d);
}

START_TEST(test_status)
{
    fx_shadow_answer a = {.status = 200}, b = {.status = 500};
    fx_shadow_diff d;
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_STATUS, NULL, 0, &a, &b, &d), FX_SHADOW_STATUS);
    ck_assert_str_eq(d.summary, "status 200 != 500");
    /* not compared when `compare` leaves it out */
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_BODY, NULL, 0, &a, &b, &d), 0);
    ck_assert_str_eq(d.summary, "");
    b.status = 200;
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_STATUS, NULL, 0, &a, &b, &d), 0);
}
END_TEST

START_TEST(test_json_semantics)
{
    fx_shadow_diff d;
    /* key order, whitespace and number spelling do not count */
    ck_assert_uint_eq(cmp_bodies("{\"a\":1,\"b\":[1,2,{\"c\":null}]}", " { \"b\" : [ 1 , 2.0 , {\"c\":null} ] , \"a\" : 1e0 } ",
                                 NULL, 0, &d),
                      0);
    ck_assert_uint_eq(cmp_bodies("\"x\"", "\"x\"", NULL, 0, &d), 0);
    /* values, types, lengths and missing keys do */
    ck_assert_uint_eq(cmp_bodies("{\"a\":{\"b\":[1,2,3]}}", "{\"a\":{\"b\":[1,2,4]}}", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.a.b[2]: 3 != 4");
    ck_assert_uint_eq(cmp_bodies("{\"a\":1}", "{\"a\":\"1\"}", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.a: 1 != \"1\"");
    ck_assert_uint_eq(cmp_bodies("[1,2]", "[1,2,3]", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $[2]: (missing) != 3");
    ck_assert_uint_eq(cmp_bodies("{\"a\":1}", "{\"a\":1,\"z\":true}", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.z: (missing) != true");
    ck_assert_uint_eq(cmp_bodies("{\"a\":1,\"y\":false}", "{\"a\":1}", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.y: false != (missing)");
    ck_assert_uint_eq(cmp_bodies("true", "false", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_uint_eq(cmp_bodies("null", "{}", NULL, 0, &d), FX_SHADOW_BODY);
    /* big integers compare exactly, not through a double */
    ck_assert_uint_eq(cmp_bodies("9007199254740993", "9007199254740992", NULL, 0, &d), FX_SHADOW_BODY);
    /* strings with NUL and escapes compare by their decoded bytes */
    ck_assert_uint_eq(cmp_bodies("\"a\\u0000b\"", "\"a\\u0000c\"", NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_uint_eq(cmp_bodies("\"\\u00e9\"", "\"\xc3\xa9\"", NULL, 0, &d), 0);
}
END_TEST

START_TEST(test_ignore_paths)
{
    fx_shadow_diff d;
    char *ign1[] = {"$.updated_at"};
    ck_assert_uint_eq(cmp_bodies("{\"id\":1,\"updated_at\":\"2026\"}", "{\"id\":1,\"updated_at\":\"2027\"}", ign1, 1, &d),
                      0);
    /* missing on one side is fine at an ignored path */
    ck_assert_uint_eq(cmp_bodies("{\"id\":1,\"updated_at\":\"2026\"}", "{\"id\":1}", ign1, 1, &d), 0);
    /* but only there */
    ck_assert_uint_eq(cmp_bodies("{\"id\":1,\"updated_at\":\"x\"}", "{\"id\":2,\"updated_at\":\"y\"}", ign1, 1, &d),
                      FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.id: 1 != 2");
    /* wildcards: every element's etag, every key's x */
    char *ign2[] = {"$.items[*].etag", "$.*.x", "$.list[1]"};
    ck_assert_uint_eq(cmp_bodies("{\"items\":[{\"n\":1,\"etag\":\"a\"},{\"n\":2,\"etag\":\"b\"}],\"p\":{\"x\":1},"
                                 "\"list\":[0,1,2]}",
                                 "{\"items\":[{\"n\":1,\"etag\":\"c\"},{\"n\":2}],\"p\":{\"x\":9},\"list\":[0,7,2]}", ign2,
                                 3, &d),
                      0);
    ck_assert_uint_eq(cmp_bodies("{\"items\":[{\"n\":1,\"etag\":\"a\"}]}", "{\"items\":[{\"n\":5,\"etag\":\"a\"}]}", ign2,
                                 3, &d),
                      FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body $.items[0].n: 1 != 5");
    /* a path deeper than the value is not the value */
    char *ign3[] = {"$.a.b"};
    ck_assert_uint_eq(cmp_bodies("{\"a\":1}", "{\"a\":2}", ign3, 1, &d), FX_SHADOW_BODY);
    /* header names in ignore do not touch bodies */
    char *ign5[] = {"x-trace"};
    ck_assert_uint_eq(cmp_bodies("{\"a\":1}", "{\"a\":2}", ign5, 1, &d), FX_SHADOW_BODY);
}
END_TEST

START_TEST(test_bytes_when_not_json)
{
    fx_shadow_diff d;
    static fx_http_header text[] = {H("Content-Type", "text/plain")};
    fx_shadow_answer a = {.status = 200, .headers = text, .nheaders = 1, .body = "{\"a\":1}", .body_len = 7};
    fx_shadow_answer b = {.status = 200, .headers = text, .nheaders = 1, .body = "{ \"a\":1}", .body_len = 8};
    /* the same JSON, but not labelled JSON: bytes */
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_BODY, NULL, 0, &a, &b, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body differs at byte 1 (7 and 8 bytes)");
    b.body = "{\"a\":1}";
    b.body_len = 7;
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_BODY, NULL, 0, &a, &b, &d), 0);
    /* labelled JSON but not valid JSON on one side: bytes too */
    fx_shadow_answer j = json_answer(200, "{\"a\":1}"), bad = json_answer(200, "{\"a\":1");
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_BODY, NULL, 0, &j, &bad, &d), FX_SHADOW_BODY);
    ck_assert_str_eq(d.summary, "body differs at byte 6 (7 and 6 bytes)");
    /* empty bodies are equal */
    fx_shadow_answer e1 = {.status = 204}, e2 = {.status = 204};
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_BODY | FX_SHADOW_STATUS, NULL, 0, &e1, &e2, &d), 0);
}
END_TEST

START_TEST(test_headers)
{
    fx_shadow_diff d;
    fx_http_header ha[] = {H("Content-Type", "application/json"), H("Date", "Mon"), H("X-Request-Id", "1"),
                           H("Content-Length", "10"), H("Cache-Control", "no-store"), H("Vary", "a"),
                           H("vary", "b"), H("X-Trace", "t1"), H("Proxy-Foo", "1")};
    fx_http_header hb[] = {H("content-type", "application/json"), H("Date", "Tue"), H("X-Request-Id", "2"),
                           H("Transfer-Encoding", "chunked"), H("cache-control", "no-store"), H("VARY", "a"),
                           H("Vary", "b"), H("X-Trace", "t2"), H("Server", "other")};
    fx_shadow_answer a = {.status = 200, .headers = ha, .nheaders = 9}, b = {.status = 200, .headers = hb, .nheaders = 9};
    char *ign[] = {"x-trace", "$.ignored"};
    /* names match ignoring case, values in order; Date, X-Request-Id, framing, Server, Proxy-* are noise */
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_HEADERS, ign, 2, &a, &b, &d), 0);
    /* without the ignore, X-Trace differs */
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_HEADERS, NULL, 0, &a, &b, &d), FX_SHADOW_HEADERS);
    ck_assert_str_eq(d.summary, "header X-Trace: \"t1\" != \"t2\"");
    /* order of a repeated header's values counts */
    hb[5] = (fx_http_header)H("Vary", "b");
    hb[6] = (fx_http_header)H("Vary", "a");
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_HEADERS, ign, 2, &a, &b, &d), FX_SHADOW_HEADERS);
    ck_assert_str_eq(d.summary, "header Vary: \"a, b\" != \"b, a\"");
    hb[5] = (fx_http_header)H("VARY", "a");
    hb[6] = (fx_http_header)H("Vary", "b");
    /* a header only the shadow has */
    hb[8] = (fx_http_header)H("Set-Cookie", "s=1");
    ck_assert_uint_eq(fx_shadow_compare(FX_SHADOW_HEADERS, ign, 2, &a, &b, &d), FX_SHADOW_HEADERS);
    ck_assert_str_eq(d.summary, "header Set-Cookie: (missing) != \"s=1\"");
}
END_TEST

START_TEST(test_summary_of_several_kinds)
{
    fx_shadow_diff d;
    fx_http_header ha[] = {H("Content-Type", "application/json"), H("ETag", "1")};
    fx_http_header hb[] = {H("Content-Type", "application/json"), H("ETag", "2")};
    fx_shadow_answer a = {.status = 200, .headers = ha, .nheaders = 2, .body = "{\"a\":1}", .body_len = 7};
    fx_shadow_answer b = {.status = 201, .headers = hb, .nheaders = 2, .body = "{\"a\":2}", .body_len = 7};
    unsigned all = FX_SHADOW_STATUS | FX_SHADOW_HEADERS | FX_SHADOW_BODY;
    ck_assert_uint_eq(fx_shadow_compare(all, NULL, 0, &a, &b, &d), all);
    ck_assert_str_eq(d.summary, "status 200 != 201; header ETag: \"1\" != \"2\"; body $.a: 1 != 2");
    ck_assert_uint_eq(d.kinds, all);
}
END_TEST

START_TEST(test_deep_and_long)
{
    fx_shadow_diff d;
    /* 64 levels (the validator's limit) compare; 65 are not JSON to the validator: bytes */
    char a[300], b[300];
    int n = 0;
    for (int i = 0; i < 64; i++)
        a[n++] = '[';
    a[n++] = '1';
    for (int i = 0; i < 64; i++)
        a[n++] = ']';
    a[n] = '\0';
    memcpy(b, a, (size_t)n + 1);
    b[64] = '2';
    ck_assert_uint_eq(cmp_bodies(a, b, NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_ptr_nonnull(strstr(d.summary, "body $[0][0]"));
    /* a long value is cut in the summary */
    char la[300], lb[300];
    snprintf(la, sizeof(la), "{\"k\":\"%0200d\"}", 1);
    snprintf(lb, sizeof(lb), "{\"k\":\"%0200d\"}", 2);
    ck_assert_uint_eq(cmp_bodies(la, lb, NULL, 0, &d), FX_SHADOW_BODY);
    ck_assert_uint_lt(strlen(d.summary), 200);
}
END_TEST

static Suite *shadow_suite(void)
{
    Suite *s = suite_create("shadow_compare");
    TCase *tc = tcase_create("compare");
    tcase_add_test(tc, test_status);
    tcase_add_test(tc, test_json_semantics);
    tcase_add_test(tc, test_ignore_paths);
    tcase_add_test(tc, test_bytes_when_not_json);
    tcase_add_test(tc, test_headers);
    tcase_add_test(tc, test_summary_of_several_kinds);
    tcase_add_test(tc, test_deep_and_long);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shadow_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

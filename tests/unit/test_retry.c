/*
 * test_retry.c — Check suite "retry" for gateway/retry.c (the retry budget, what a retry setting
 * reacts to) and the retry counters it feeds in gateway/stats.c.
 *
 *   budget arithmetic   3 retries with no requests; +1 per 5 requests; the 10-second window slides
 *                       (old requests stop paying for retries, old retries stop counting); a bucket
 *                       reused after 10 s starts from zero; an outage is held to ~1.2× load
 *   settings            FX_RETRY_* bits and 5xx status bits from a loaded config, route over upstream
 *   stats               fx_stats_retry counts retries by reason and budget refusals per upstream,
 *                       by name across workers; fallbacks are counted by route
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "retry.h"
#include "stats.h"

#define SEC 1000000ull
#define T0 (1000 * SEC) /* the tests' clock starts at 1000 s */

/* How many retries the budget grants at `now`, taking them until it refuses (at most 1000). */
static unsigned drain(fx_retry_budget *b, uint64_t now)
{
    unsigned n = 0;
    while (n < 1000 && fx_retry_budget_take(b, now))
        n++;
    return n;
}

/* ---- budget arithmetic ------------------------------------------------------------------------- */

START_TEST(minimum_without_requests)
{
    fx_retry_budget b = {0};
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0), 1);
    ck_assert_uint_eq(drain(&b, T0), FX_RETRY_BUDGET_MIN);
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0), 0);
    ck_assert_int_eq(fx_retry_budget_take(&b, T0 + SEC / 2), 0); /* a refusal counts nothing */
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0 + 9 * SEC), 0);
}
END_TEST

START_TEST(twenty_percent_of_requests)
{
    fx_retry_budget b = {0};
    for (int i = 0; i < 100; i++)
        fx_retry_budget_request(&b, T0 + (uint64_t)(i % 10) * SEC / 10);
    ck_assert_uint_eq(drain(&b, T0 + SEC / 2), FX_RETRY_BUDGET_MIN + 20);
    /* 4 more requests: not yet a whole retry; the 5th is */
    for (int i = 0; i < 4; i++)
        fx_retry_budget_request(&b, T0 + SEC / 2);
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0 + SEC / 2), 0);
    fx_retry_budget_request(&b, T0 + SEC / 2);
    ck_assert_uint_eq(drain(&b, T0 + SEC / 2), 1);
}
END_TEST

START_TEST(window_slides)
{
    fx_retry_budget b = {0};
    for (int i = 0; i < 50; i++)
        fx_retry_budget_request(&b, T0); /* second 1000 */
    ck_assert_uint_eq(drain(&b, T0 + 2 * SEC), 3 + 10); /* taken in second 1002 */
    /* second 1009: both still in the window */
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0 + 9 * SEC), 0);
    /* second 1010: the requests of 1000 are out (nothing pays for the retries), the retries of 1002 are in */
    ck_assert_int_eq(fx_retry_budget_allows(&b, T0 + 10 * SEC), 0);
    /* second 1012: the retries of 1002 are out too: the minimum again */
    ck_assert_uint_eq(drain(&b, T0 + 12 * SEC), FX_RETRY_BUDGET_MIN);
}
END_TEST

START_TEST(reused_bucket_starts_from_zero)
{
    fx_retry_budget b = {0};
    for (int i = 0; i < 1000; i++)
        fx_retry_budget_request(&b, T0 + 3 * SEC);
    ck_assert_uint_eq(drain(&b, T0 + 3 * SEC), 3 + 200);
    /* 10 s later the same bucket holds second 1013: neither the 1000 requests nor the 203 retries count */
    fx_retry_budget_request(&b, T0 + 13 * SEC);
    ck_assert_uint_eq(drain(&b, T0 + 13 * SEC), FX_RETRY_BUDGET_MIN);
}
END_TEST

/* An upstream always failing, 50 requests a second for a minute, each wanting 3 retries: retries stay
 * within 20% (+3 per 10 s) of the requests, not 3×. */
START_TEST(outage_is_bounded)
{
    fx_retry_budget b = {0};
    uint64_t requests = 0, retries = 0;
    for (uint64_t ms = 0; ms < 60000; ms += 20) {
        uint64_t now = T0 + ms * 1000;
        fx_retry_budget_request(&b, now);
        requests++;
        for (int k = 0; k < 3; k++)
            retries += (uint64_t)fx_retry_budget_take(&b, now);
    }
    ck_assert_uint_eq(requests, 3000);
    ck_assert_uint_le(retries, requests / 5 + 6 * FX_RETRY_BUDGET_MIN);
    ck_assert_uint_ge(retries, requests / 6); /* and the budget is used, not starved */
}
END_TEST

/* ---- settings ---------------------------------------------------------------------------------- */

#define HEAD "listen:\n  - address: \"127.0.0.1:0\"\n"

static fx_config *load(const char *yaml)
{
    fx_diags d = {0};
    fx_config *c = fx_config_load_buffer_ex("retry.yaml", yaml, strlen(yaml), FX_FEAT_ALL, &d);
    for (size_t i = 0; !c && i < d.n; i++)
        fprintf(stderr, "%s:%d: %s\n", d.v[i].file, d.v[i].line, d.v[i].message);
    ck_assert_msg(c != NULL, "config did not load");
    fx_diags_free(&d);
    return c;
}

static const char *const CFG = HEAD "upstreams:\n"
                                    "  up1:\n"
                                    "    targets: [\"127.0.0.1:1\"]\n"
                                    "    retries: { attempts: 2, on: [timeout] }\n"
                                    "  up2: { targets: [\"127.0.0.1:2\"] }\n"
                                    "routes:\n"
                                    "  - name: a\n"
                                    "    match: { prefix: /a/ }\n"
                                    "    upstream: up1\n"
                                    "    fallback: up2\n"
                                    "    retries: { attempts: 3, on: [connect-failure, 503, 599] }\n"
                                    "  - { name: b, match: { prefix: /b/ }, upstream: up1 }\n"
                                    "  - name: c\n"
                                    "    match: { prefix: /c/ }\n"
                                    "    upstream: up2\n"
                                    "    retries: { on: [5xx] }\n";

START_TEST(settings_from_config)
{
    fx_config *c = load(CFG);
    const fx_retries_conf *a = c->routes[0].retries, *up = c->upstreams[0].retries, *all = c->routes[2].retries;
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_CONNECT, 0), 1);
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_RESET, 0), 0); /* a list replaces the default */
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_TIMEOUT, 0), 0);
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_5XX, 503), 1);
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_5XX, 599), 1); /* in the second word of the bits */
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_5XX, 502), 0);
    ck_assert_int_eq(fx_retry_wants(a, FX_RETRY_R_5XX, 404), 0);
    ck_assert_uint_eq(a->attempts, 3);
    ck_assert_int_eq(fx_retry_wants(up, FX_RETRY_R_TIMEOUT, 0), 1);
    ck_assert_int_eq(fx_retry_wants(up, FX_RETRY_R_CONNECT, 0), 0);
    ck_assert_ptr_null(c->routes[1].retries); /* route b: the upstream's setting applies (proxy.c) */
    /* `on: [5xx]`: every 5xx and nothing else; attempts defaults to 1 */
    ck_assert_uint_eq(all->attempts, 1);
    for (int s = 500; s <= 599; s++)
        ck_assert_int_eq(fx_retry_wants(all, FX_RETRY_R_5XX, s), 1);
    ck_assert_int_eq(fx_retry_wants(all, FX_RETRY_R_5XX, 600), 0);
    ck_assert_int_eq(fx_retry_wants(all, FX_RETRY_R_CONNECT, 0), 0);
    ck_assert_int_eq(fx_retry_wants(NULL, FX_RETRY_R_CONNECT, 0), 0);
    ck_assert_int_eq(c->routes[0].fallback, 1);
    ck_assert_int_eq(c->routes[1].fallback, -1);
    fx_config_unref(c);
}
END_TEST

/* ---- stats ------------------------------------------------------------------------------------- */

START_TEST(stats_count_retries_refusals_and_fallbacks)
{
    fx_config *c = load(CFG);
    fx_stats_worker w[2];
    ck_assert_int_eq(fx_stats_init(&w[0], c, T0), 0);
    ck_assert_int_eq(fx_stats_init(&w[1], c, T0), 0);
    /* worker 0: 10 requests to up1 → 3 + 2 retries, then refused */
    for (int i = 0; i < 10; i++)
        fx_stats_upstream_request(&w[0], c, 0, T0);
    unsigned granted = 0;
    for (int i = 0; i < 8; i++)
        granted += (unsigned)fx_stats_retry(&w[0], c, 0, i % 2 ? FX_RETRY_R_RESET : FX_RETRY_R_CONNECT, T0);
    ck_assert_uint_eq(granted, 5);
    /* worker 1 has its own budget: its minimum still stands */
    ck_assert_int_eq(fx_stats_retry(&w[1], c, 0, FX_RETRY_R_5XX, T0), 1);
    /* a request that ended on route a's fallback (up2) after a timeout */
    fx_stats_req r = {.cfg = c, .route = 0, .upstream = 1, .status = 200, .duration_us = 100,
                      .fell_back = 1, .fallback_reason = FX_RETRY_R_TIMEOUT};
    fx_stats_record(&w[1], &r, T0);
    r.fell_back = 0; /* a plain request: no fallback counted */
    fx_stats_record(&w[1], &r, T0);

    fx_stats_sums s;
    fx_stats_collect_begin(&s, T0 + SEC);
    ck_assert_int_eq(fx_stats_collect(&s, &w[0]), 0);
    ck_assert_int_eq(fx_stats_collect(&s, &w[1]), 0);
    fx_stats_collect_done(&s);
    const fx_stats_upstream_sum *u = fx_stats_find_upstream(&s, "up1");
    ck_assert_ptr_nonnull(u);
    ck_assert_uint_eq(u->retries[FX_RETRY_R_CONNECT], 3); /* i = 0, 2, 4 */
    ck_assert_uint_eq(u->retries[FX_RETRY_R_RESET], 2);   /* i = 1, 3 */
    ck_assert_uint_eq(u->retries[FX_RETRY_R_5XX], 1);
    ck_assert_uint_eq(u->budget_exhausted, 3);
    const fx_stats_side_sum *side = fx_stats_find_side(&s, "a", "up2");
    ck_assert_ptr_nonnull(side);
    ck_assert_uint_eq(side->fallbacks[FX_RETRY_R_TIMEOUT], 1);
    ck_assert_uint_eq(side->fallbacks[FX_RETRY_R_CONNECT] + side->fallbacks[FX_RETRY_R_RESET] +
                          side->fallbacks[FX_RETRY_R_5XX],
                      0);
    ck_assert_uint_eq(side->requests, 2);
    fx_stats_sums_free(&s);
    fx_stats_free(&w[0]);
    fx_stats_free(&w[1]);
    fx_config_unref(c);
}
END_TEST

static Suite *retry_suite(void)
{
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, minimum_without_requests);
    tcase_add_test(tc, twenty_percent_of_requests);
    tcase_add_test(tc, window_slides);
    tcase_add_test(tc, reused_bucket_starts_from_zero);
    tcase_add_test(tc, outage_is_bounded);
    tcase_add_test(tc, settings_from_config);
    tcase_add_test(tc, stats_count_retries_refusals_and_fallbacks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(retry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

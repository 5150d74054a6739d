/*
 * test_stats.c — Check suite "stats" for gateway/stats.c (per-route request metrics).
 *
 *   helpers        configs from YAML (every planned key allowed, so splits load
 *                  whatever this build has), a request recorded by route and
 *                  upstream NAME at an injected CLOCK_MONOTONIC time, the admin's
 *                  sum over workers
 *   latency bins   the bin of a duration lies within its bounds, bins are 4 per
 *                  octave and monotonic; ficus_request_duration_seconds buckets
 *                  are `le` (a duration equal to a bound is in it)
 *   the ring       buckets roll over with the clock: 60 seconds in, the 61st out,
 *                  a reused bucket starts from zero, totals are unaffected
 *   p99            from histograms merged over workers, within the ±9.1% stats.h
 *                  promises of the exact p99, for several distributions
 *   reload         a rebind keeps counts by name (routes reordered, an upstream
 *                  renamed away), drops removed routes and upstreams, and counts a
 *                  request routed on the previous snapshot under its name
 *   odds and ends  error kinds, the window length of a young process, a request
 *                  ending on an upstream its route does not name; recording
 *                  allocates nothing once a pair's cells exist (ASan's hooks)
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_hooks.h"
#include "config.h"
#include "stats.h"

#define SEC 1000000ull
#define T0 (1000 * SEC) /* the tests' clock starts at 1000 s */

/* ---- helpers ------------------------------------------------------------------------------ */

static fx_config *load(const char *yaml)
{
    fx_diags d = {0};
    fx_config *c = fx_config_load_buffer_ex("stats.yaml", yaml, strlen(yaml), FX_FEAT_ALL, &d);
    if (!c) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s:%d: %s\n", d.v[i].file, d.v[i].line, d.v[i].message);
    }
    ck_assert_msg(c != NULL, "config did not load");
    fx_diags_free(&d);
    return c;
}

#define HEAD "listen:\n  - address: \"127.0.0.1:0\"\n"

/* routes a → up1, b → up2, s → split(up1 90, up2 10) */
static const char *const CFG1 = HEAD "upstreams:\n"
                                     "  up1: { targets: [\"127.0.0.1:1\"] }\n"
                                     "  up2: { targets: [\"127.0.0.1:2\"] }\n"
                                     "routes:\n"
                                     "  - { name: a, match: { prefix: /a/ }, upstream: up1 }\n"
                                     "  - { name: b, match: { prefix: /b/ }, upstream: up2 }\n"
                                     "  - name: s\n"
                                     "    match: { prefix: /s/ }\n"
                                     "    split: [ { upstream: up1, weight: 90 }, { upstream: up2, weight: 10 } ]\n";

static int route_idx(const fx_config *c, const char *name)
{
    for (size_t i = 0; i < c->nroutes; i++)
        if (!strcmp(c->routes[i].name, name))
            return (int)i;
    ck_abort_msg("no route %s", name);
    return -1;
}

static int ups_idx(const fx_config *c, const char *name)
{
    for (size_t i = 0; i < c->nupstreams; i++)
        if (!strcmp(c->upstreams[i].name, name))
            return (int)i;
    ck_abort_msg("no upstream %s", name);
    return -1;
}

static void rec(fx_stats_worker *sw, const fx_config *c, const char *route, const char *ups, int status,
                uint64_t dur_us, const char *err, uint64_t now)
{
    fx_stats_req r = {.cfg = c,
                      .route = route ? route_idx(c, route) : -1,
                      .upstream = ups ? ups_idx(c, ups) : -1,
                      .status = status,
                      .duration_us = dur_us,
                      .upstream_error = err};
    fx_stats_record(sw, &r, now);
}

static void sum(fx_stats_sums *s, fx_stats_worker *w, size_t n, uint64_t now)
{
    fx_stats_collect_begin(s, now);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(fx_stats_collect(s, &w[i]), 0);
    fx_stats_collect_done(s);
}

static uint64_t total(const fx_stats_sums *s, const char *route, const char *ups)
{
    const fx_stats_side_sum *x = fx_stats_find_side(s, route, ups);
    return x ? x->requests : 0;
}

static uint64_t last(const fx_stats_sums *s, const char *route, const char *ups)
{
    const fx_stats_side_sum *x = fx_stats_find_side(s, route, ups);
    return x ? x->last.requests : 0;
}

/* ---- latency bins ---------------------------------------------------------------------------- */

START_TEST(lat_bins_hold_their_values)
{
    /* the first steps by hand: 32 µs · 2^(k/4) = 32, 38.05, 45.25, 53.82, 64 */
    static const struct {
        uint64_t us;
        unsigned bin;
    } fixed[] = {{0, 0}, {31, 0}, {32, 1}, {38, 1}, {39, 2}, {45, 2}, {46, 3}, {53, 3}, {54, 4}, {63, 4}, {64, 5}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        ck_assert_msg(fx_stats_lat_bin(fixed[i].us) == fixed[i].bin, "%llu µs: bin %u, want %u",
                      (unsigned long long)fixed[i].us, fx_stats_lat_bin(fixed[i].us), fixed[i].bin);
    unsigned prev = 0;
    for (uint64_t us = 1; us < 300 * SEC; us = us + 1 + us / 97) {
        unsigned b = fx_stats_lat_bin(us);
        ck_assert_uint_ge(b, prev);
        ck_assert_uint_lt(b, FX_STATS_LAT_BINS);
        double lo, hi;
        fx_stats_lat_bounds(b, &lo, &hi);
        ck_assert_msg((double)us >= lo * (1 - 1e-6) && (double)us < hi * (1 + 1e-6), "%llu µs in bin %u [%g, %g)",
                      (unsigned long long)us, b, lo, hi);
        if (b > 0 && b < FX_STATS_LAT_BINS - 1)
            ck_assert_double_eq_tol(hi / lo, pow(2, 0.25), 1e-9);
        prev = b;
    }
    ck_assert_uint_eq(fx_stats_lat_bin(32ull << 22), FX_STATS_LAT_BINS - 1);
    ck_assert_uint_eq(fx_stats_lat_bin((32ull << 22) - 1), FX_STATS_LAT_BINS - 2);
    ck_assert_uint_eq(fx_stats_lat_bin(UINT64_MAX), FX_STATS_LAT_BINS - 1);
}
END_TEST

START_TEST(duration_buckets_are_le)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w;
    ck_assert_int_eq(fx_stats_init(&w, c, T0), 0);
    uint64_t durs[] = {499, 500, 501, 1000, 30000000, 30000001, 90 * SEC};
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++)
        rec(&w, c, "a", "up1", 200, durs[i], NULL, T0);
    fx_stats_sums s;
    sum(&s, &w, 1, T0);
    const fx_stats_side_sum *x = fx_stats_find_side(&s, "a", "up1");
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq(x->dur[0], 2); /* 499, 500: le 0.0005 */
    ck_assert_uint_eq(x->dur[1], 2); /* 501, 1000: le 0.001 */
    ck_assert_uint_eq(x->dur[FX_STATS_DUR_BOUNDS - 1], 1); /* 30 s exactly: le 30 */
    ck_assert_uint_eq(x->dur[FX_STATS_DUR_BOUNDS], 2);     /* over 30 s: only +Inf */
    uint64_t n = 0;
    for (unsigned k = 0; k <= FX_STATS_DUR_BOUNDS; k++)
        n += x->dur[k];
    ck_assert_uint_eq(n, x->requests);
    ck_assert_uint_eq(x->dur_sum_us, 499 + 500 + 501 + 1000 + 30000000 + 30000001 + 90 * SEC);
    fx_stats_sums_free(&s);
    fx_stats_free(&w);
    fx_config_unref(c);
}
END_TEST

/* ---- the ring ------------------------------------------------------------------------------------ */

START_TEST(ring_rolls_over_with_the_clock)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w;
    ck_assert_int_eq(fx_stats_init(&w, c, T0 - 100 * SEC), 0);
    for (int i = 0; i < 10; i++)
        rec(&w, c, "a", "up1", i < 3 ? 503 : 200, 1000, NULL, T0 + 200000); /* second 1000 */
    fx_stats_sums s;
    /* in the window for the 60 seconds 1000 ... 1059 */
    uint64_t at[] = {T0 + 500000, T0 + 30 * SEC, T0 + 59 * SEC + 999999};
    for (size_t i = 0; i < 3; i++) {
        sum(&s, &w, 1, at[i]);
        const fx_stats_side_sum *x = fx_stats_find_side(&s, "a", "up1");
        ck_assert_uint_eq(x->last.requests, 10);
        ck_assert_uint_eq(x->last.errors, 3);
        const fx_stats_upstream_sum *u = fx_stats_find_upstream(&s, "up1");
        ck_assert_uint_eq(u->last.requests, 10);
        ck_assert_uint_eq(u->last.errors, 3);
        fx_stats_sums_free(&s);
    }
    /* second 1060: the bucket of second 1000 is a minute old */
    sum(&s, &w, 1, T0 + 60 * SEC);
    ck_assert_uint_eq(last(&s, "a", "up1"), 0);
    ck_assert_uint_eq(total(&s, "a", "up1"), 10);
    ck_assert_uint_eq(fx_stats_find_side(&s, "a", "up1")->errors, 3);
    fx_stats_sums_free(&s);
    /* 1060 reuses the bucket of 1000: it starts from zero */
    rec(&w, c, "a", "up1", 200, 1000, NULL, T0 + 60 * SEC + 1);
    sum(&s, &w, 1, T0 + 60 * SEC + 2);
    ck_assert_uint_eq(last(&s, "a", "up1"), 1);
    ck_assert_uint_eq(fx_stats_find_side(&s, "a", "up1")->last.errors, 0);
    ck_assert_uint_eq(total(&s, "a", "up1"), 11);
    fx_stats_sums_free(&s);
    /* a steady 1 request/s for 3 minutes: always the last 60 of them */
    for (uint64_t t = 2000; t < 2180; t++) {
        rec(&w, c, "b", "up2", 200, 1000, NULL, t * SEC + 10);
        if (t >= 2059) {
            sum(&s, &w, 1, t * SEC + 500000);
            ck_assert_uint_eq(last(&s, "b", "up2"), 60);
            ck_assert_double_eq_tol((double)last(&s, "b", "up2") / fx_stats_window_seconds(&s), 60 / 59.5, 1e-9);
            fx_stats_sums_free(&s);
        }
    }
    /* and a clock far ahead sees none of it */
    sum(&s, &w, 1, 5000 * SEC);
    ck_assert_uint_eq(last(&s, "b", "up2"), 0);
    ck_assert_uint_eq(total(&s, "b", "up2"), 180);
    fx_stats_sums_free(&s);
    fx_stats_free(&w);
    fx_config_unref(c);
}
END_TEST

START_TEST(window_of_a_young_process)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w;
    ck_assert_int_eq(fx_stats_init(&w, c, T0), 0);
    fx_stats_sums s;
    sum(&s, &w, 1, T0 + 10 * SEC);
    ck_assert_double_eq_tol(fx_stats_window_seconds(&s), 10.0, 1e-9);
    fx_stats_sums_free(&s);
    sum(&s, &w, 1, T0 + 100 * SEC + 250000);
    ck_assert_double_eq_tol(fx_stats_window_seconds(&s), 59.25, 1e-9);
    fx_stats_sums_free(&s);
    sum(&s, &w, 1, T0 + 1000); /* never below a second: a burst in the first moment is not a huge rate */
    ck_assert_double_eq_tol(fx_stats_window_seconds(&s), 1.0, 1e-9);
    fx_stats_sums_free(&s);
    fx_stats_free(&w);
    fx_config_unref(c);
}
END_TEST

/* ---- p99 -------------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A latency (µs) of distribution `kind`. */
static uint64_t draw(int kind, uint64_t *r)
{
    double u = (double)(rng_next(r) >> 11) / 9007199254740992.0;
    switch (kind) {
    case 0: /* log-uniform 100 µs .. 2 s */
        return (uint64_t)(100 * pow(2e4, u));
    case 1: /* fast with a slow tail: 95% ~ 300 µs, 5% 50 ms .. 5 s */
        return u < 0.95 ? 250 + rng_next(r) % 100 : (uint64_t)(50000 * pow(100, (double)(rng_next(r) % 1000) / 1000));
    case 2: /* uniform 1 .. 20 ms */
        return 1000 + rng_next(r) % 19000;
    default: /* every sample one value, at the top edge of a bin (the worst case of the estimate) */
        return 45;
    }
}

START_TEST(p99_from_merged_histograms_within_the_documented_error)
{
    fx_config *c = load(CFG1);
    enum { NW = 3, N = 30011 };
    static uint64_t all[N];
    for (int kind = 0; kind < 4; kind++) {
        fx_stats_worker w[NW];
        for (int i = 0; i < NW; i++)
            ck_assert_int_eq(fx_stats_init(&w[i], c, T0), 0);
        uint64_t r = 0x9e3779b97f4a7c15ull + (uint64_t)kind;
        for (int n = 0; n < N; n++) {
            all[n] = draw(kind, &r);
            /* spread over workers and over the seconds of the minute */
            rec(&w[n % NW], c, "a", "up1", 200, all[n], NULL, T0 + (uint64_t)(n % 60) * SEC);
        }
        qsort(all, N, sizeof(all[0]), cmp_u64);
        fx_stats_sums s;
        sum(&s, w, NW, T0 + 59 * SEC);
        const fx_stats_side_sum *x = fx_stats_find_side(&s, "a", "up1");
        ck_assert_uint_eq(x->last.requests, N);
        static const double qs[] = {0.5, 0.9, 0.99, 0.999};
        for (size_t k = 0; k < 4; k++) {
            uint64_t rank = (uint64_t)ceil(qs[k] * N - 1e-9);
            double exact = (double)all[rank - 1] / 1e6;
            double est = fx_stats_quantile(&x->last, qs[k]);
            ck_assert_msg(fabs(est / exact - 1) <= 0.0906, "distribution %d, q %.3f: estimate %.6f s, exact %.6f s",
                          kind, qs[k], est, exact);
        }
        /* the same as the upstream's (its ring saw the same requests) */
        ck_assert_double_eq(fx_stats_quantile(&fx_stats_find_upstream(&s, "up1")->last, 0.99),
                            fx_stats_quantile(&x->last, 0.99));
        fx_stats_sums_free(&s);
        for (int i = 0; i < NW; i++)
            fx_stats_free(&w[i]);
    }
    fx_stats_window empty = {0};
    ck_assert_double_eq(fx_stats_quantile(&empty, 0.99), -1);
    fx_config_unref(c);
}
END_TEST

START_TEST(p99_names_the_sample_at_its_rank)
{
    /* 99 fast requests and 1 slow: p99 is the 99th, a fast one; one more slow one makes it slow */
    fx_stats_window w = {0};
    w.lat[fx_stats_lat_bin(200)] = 99;
    w.lat[fx_stats_lat_bin(2 * SEC)] = 1;
    ck_assert_double_le(fx_stats_quantile(&w, 0.99), 200e-6 * 1.0906);
    ck_assert_double_ge(fx_stats_quantile(&w, 0.99), 200e-6 / 1.0906);
    ck_assert_double_ge(fx_stats_quantile(&w, 1.0), 2 / 1.0906);
    w.lat[fx_stats_lat_bin(200)] = 98;
    w.lat[fx_stats_lat_bin(2 * SEC)] = 2;
    ck_assert_double_ge(fx_stats_quantile(&w, 0.99), 2 / 1.0906);
}
END_TEST

/* ---- reload ---------------------------------------------------------------------------------------- */

/* CFG1 with the routes reordered, route b gone, a new route c, up2 renamed to up3 */
static const char *const CFG2 = HEAD "upstreams:\n"
                                     "  up3: { targets: [\"127.0.0.1:2\"] }\n"
                                     "  up1: { targets: [\"127.0.0.1:9\"] }\n"
                                     "routes:\n"
                                     "  - { name: c, match: { prefix: /c/ }, upstream: up3 }\n"
                                     "  - name: s\n"
                                     "    match: { prefix: /s/ }\n"
                                     "    split: [ { upstream: up1, weight: 50 }, { upstream: up3, weight: 50 } ]\n"
                                     "  - { name: a, match: { prefix: /a/ }, upstream: up1 }\n";

START_TEST(rebind_keeps_counts_by_name)
{
    fx_config *c1 = load(CFG1), *c2 = load(CFG2);
    fx_stats_worker w;
    ck_assert_int_eq(fx_stats_init(&w, c1, T0), 0);
    for (int i = 0; i < 5; i++)
        rec(&w, c1, "a", "up1", 200, 1000, NULL, T0);
    rec(&w, c1, "a", NULL, 401, 100, NULL, T0);
    rec(&w, c1, "b", "up2", 502, 100, "connect", T0);
    rec(&w, c1, "s", "up1", 200, 100, NULL, T0);
    rec(&w, c1, "s", "up2", 200, 100, NULL, T0);
    rec(&w, c1, NULL, NULL, 404, 100, NULL, T0);

    /* the in-flight request of the old snapshot: counted after the rebind, by name */
    fx_stats_req straggler = {.cfg = c1, .route = route_idx(c1, "a"), .upstream = ups_idx(c1, "up1"),
                              .status = 200, .duration_us = 5000};
    fx_stats_req removed = {.cfg = c1, .route = route_idx(c1, "b"), .upstream = ups_idx(c1, "up2"),
                            .status = 200, .duration_us = 5000};

    ck_assert_int_eq(fx_stats_bind(&w, c2), 0);
    fx_stats_record(&w, &straggler, T0 + SEC);
    fx_stats_record(&w, &removed, T0 + SEC); /* route b is gone: dropped, and counted as such */
    for (int i = 0; i < 3; i++)
        rec(&w, c2, "a", "up1", 200, 1000, NULL, T0 + SEC);
    rec(&w, c2, "s", "up3", 500, 100, NULL, T0 + SEC);
    rec(&w, c2, "c", "up3", 200, 100, NULL, T0 + SEC);

    fx_stats_sums s;
    sum(&s, &w, 1, T0 + 2 * SEC);
    ck_assert_uint_eq(total(&s, "a", "up1"), 5 + 1 + 3);
    ck_assert_uint_eq(last(&s, "a", "up1"), 9);
    ck_assert_uint_eq(total(&s, "a", NULL), 1);
    ck_assert_uint_eq(fx_stats_find_side(&s, "a", NULL)->codes[401 - FX_STATS_CODE_MIN], 1);
    ck_assert_uint_eq(total(&s, "s", "up1"), 1);
    ck_assert_ptr_null(fx_stats_find_side(&s, "s", "up2")); /* up2 is gone */
    ck_assert_ptr_null(fx_stats_find_side(&s, "b", "up2")); /* route b is gone */
    ck_assert_uint_eq(total(&s, "s", "up3"), 1);
    ck_assert_uint_eq(fx_stats_find_side(&s, "s", "up3")->errors, 1);
    ck_assert_uint_eq(total(&s, "c", "up3"), 1);
    ck_assert_uint_eq(total(&s, NULL, NULL), 1); /* no route: always kept */
    ck_assert_uint_eq(s.dropped, 1);
    const fx_stats_upstream_sum *u1 = fx_stats_find_upstream(&s, "up1");
    ck_assert_uint_eq(u1->requests, 5 + 1 + 1 + 3); /* forwarded to up1 from routes a and s */
    ck_assert_ptr_null(fx_stats_find_upstream(&s, "up2"));
    ck_assert_uint_eq(fx_stats_find_upstream(&s, "up3")->requests, 2);
    /* sorted: by route, "none" last */
    ck_assert_ptr_null(s.sides[s.nsides - 1].route);
    for (size_t i = 1; i + 1 < s.nsides; i++)
        ck_assert_int_le(strcmp(s.sides[i - 1].route, s.sides[i].route), 0);
    fx_stats_sums_free(&s);

    /* and back: up2's counts started over (it was removed), a's keep going */
    ck_assert_int_eq(fx_stats_bind(&w, c1), 0);
    rec(&w, c1, "b", "up2", 200, 100, NULL, T0 + 3 * SEC);
    rec(&w, c1, "a", "up1", 200, 100, NULL, T0 + 3 * SEC);
    sum(&s, &w, 1, T0 + 3 * SEC);
    ck_assert_uint_eq(total(&s, "b", "up2"), 1);
    ck_assert_uint_eq(fx_stats_find_side(&s, "b", "up2")->errors, 0);
    ck_assert_uint_eq(fx_stats_find_upstream(&s, "up2")->kinds[FX_STATS_ERR_CONNECT], 0);
    ck_assert_uint_eq(total(&s, "a", "up1"), 10);
    ck_assert_ptr_null(fx_stats_find_side(&s, "c", "up3"));
    fx_stats_sums_free(&s);
    fx_stats_free(&w);
    fx_config_unref(c1);
    fx_config_unref(c2);
}
END_TEST

START_TEST(workers_sum_and_error_kinds)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(fx_stats_init(&w[i], c, T0), 0);
    rec(&w[0], c, "b", "up2", 502, 100, "connect", T0);
    rec(&w[1], c, "b", "up2", 502, 100, "connect", T0);
    rec(&w[1], c, "b", "up2", 504, 100, "timeout", T0);
    rec(&w[1], c, "b", "up2", 502, 100, "malformed", T0);
    rec(&w[0], c, "b", "up2", 200, 100, "client_stalled", T0); /* not the upstream's error */
    rec(&w[0], c, "b", "up2", 502, 100, "breaker_open", T0);   /* a kind this build does not know */
    /* an upstream the route does not name (a fallback added by other code): still counted */
    rec(&w[0], c, "a", "up2", 200, 100, NULL, T0);
    rec(&w[1], c, "a", "up2", 200, 100, NULL, T0);
    fx_stats_sums s;
    sum(&s, w, 2, T0);
    const fx_stats_upstream_sum *u = fx_stats_find_upstream(&s, "up2");
    ck_assert_uint_eq(u->kinds[FX_STATS_ERR_CONNECT], 2);
    ck_assert_uint_eq(u->kinds[FX_STATS_ERR_TIMEOUT], 1);
    ck_assert_uint_eq(u->kinds[FX_STATS_ERR_MALFORMED], 1);
    ck_assert_uint_eq(u->kinds[FX_STATS_ERR_RESET], 0);
    ck_assert_uint_eq(u->kinds[FX_STATS_ERR_OTHER], 1);
    ck_assert_uint_eq(u->requests, 8);
    ck_assert_uint_eq(u->errors, 5);
    const fx_stats_side_sum *x = fx_stats_find_side(&s, "b", "up2");
    ck_assert_uint_eq(x->codes[502 - FX_STATS_CODE_MIN], 4);
    ck_assert_uint_eq(x->codes[504 - FX_STATS_CODE_MIN], 1);
    ck_assert_uint_eq(x->codes[200 - FX_STATS_CODE_MIN], 1);
    ck_assert_uint_eq(x->last.requests, 6);
    ck_assert_uint_eq(x->last.errors, 5);
    ck_assert_uint_eq(total(&s, "a", "up2"), 2);
    fx_stats_sums_free(&s);
    ck_assert_int_eq(fx_stats_error_kind(NULL), -1);
    ck_assert_int_eq(fx_stats_error_kind("event_timeout"), -1);
    ck_assert_int_eq(fx_stats_error_kind("connect_timeout"), FX_STATS_ERR_CONNECT_TIMEOUT);
    ck_assert_int_eq(fx_stats_error_kind("reset"), FX_STATS_ERR_RESET);
    for (int i = 0; i < 2; i++)
        fx_stats_free(&w[i]);
    fx_config_unref(c);
}
END_TEST

START_TEST(request_without_a_snapshot_is_dropped_and_counted)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w;
    memset(&w, 0, sizeof(w));
    fx_stats_free(&w); /* never initialised: nothing to do */
    ck_assert_int_eq(fx_stats_init(&w, c, T0), 0);
    fx_stats_req r = {.cfg = NULL, .route = 0, .upstream = 0, .status = 200, .duration_us = 1};
    fx_stats_record(&w, &r, T0);
    fx_stats_sums s;
    sum(&s, &w, 1, T0);
    ck_assert_uint_eq(s.dropped, 1);
    ck_assert_uint_eq(s.nsides, 0);
    fx_stats_sums_free(&s);
    fx_stats_free(&w);
    fx_config_unref(c);
}
END_TEST

#ifdef HAVE_ALLOC_HOOKS
START_TEST(record_does_not_allocate_once_warm)
{
    fx_config *c = load(CFG1);
    fx_stats_worker w;
    ck_assert_int_eq(fx_stats_init(&w, c, T0), 0);
    alloc_hooks_install();
    alloc_counting = 1;
    rec(&w, c, "a", "up1", 200, 1000, NULL, T0); /* the pair's and the upstream's first: two cells */
    alloc_counting = 0;
    ck_assert_uint_ge(alloc_count, 2);
    alloc_count = 0;
    alloc_counting = 1;
    for (uint64_t t = 0; t < 200; t++) /* every bucket of the ring reused, errors, every kind of bin */
        rec(&w, c, "a", "up1", t % 7 ? 200 : 502, t * t * 37, t % 7 ? NULL : "reset", T0 + t * SEC);
    alloc_counting = 0;
    ck_assert_uint_eq(alloc_count, 0);
    fx_stats_free(&w);
    fx_config_unref(c);
}
END_TEST
#endif

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, lat_bins_hold_their_values);
    tcase_add_test(tc, duration_buckets_are_le);
    tcase_add_test(tc, ring_rolls_over_with_the_clock);
    tcase_add_test(tc, window_of_a_young_process);
    tcase_add_test(tc, p99_from_merged_histograms_within_the_documented_error);
    tcase_add_test(tc, p99_names_the_sample_at_its_rank);
    tcase_add_test(tc, rebind_keeps_counts_by_name);
    tcase_add_test(tc, workers_sum_and_error_kinds);
    tcase_add_test(tc, request_without_a_snapshot_is_dropped_and_counted);
#ifdef HAVE_ALLOC_HOOKS
    tcase_add_test(tc, record_does_not_allocate_once_warm);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * test_balance.c — Check suite "balance" for gateway/balance.c.
 *
 *   hash          pinned known answers (stickiness depends on the hash never
 *                 changing), avalanche, length and seed sensitivity
 *   weighted      the 64-bit range maps onto the weights exactly; 100,000
 *                 draws from xorshift128+ land within 1% of each share;
 *                 weight 0 is never drawn
 *   rendezvous    a value keeps its side; 10,000 values spread by the
 *                 weights; 10/90 → 20/80 moves 9–11% of them, all towards
 *                 the side that grew; three sides; equal weights starve
 *                 nobody; weight 0 never chosen
 *   request       the sticky value from a header, a cookie, the client
 *                 address and a verified token's claim; without it the
 *                 choice falls back to the weighted draw
 *
 * Splits are built by hand on a config whose upstreams only have names:
 * that is all the balancer reads.
 */
#include <check.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "balance.h"
#include "log.h"
#include "ficus_authz.h"
#include "http1.h"

static fx_upstream_conf ups[] = {
    {.name = (char *)"monolith"},
    {.name = (char *)"profiles"},
    {.name = (char *)"documents"},
    {.name = (char *)"search"},
};
static fx_config cfg = {.upstreams = ups, .nupstreams = sizeof(ups) / sizeof(ups[0])};

#define NVALUES 10000

static fx_slice value(char *buf, size_t cap, int i)
{
    int n = snprintf(buf, cap, "user-%d", i);
    return fx_slice_make(buf, (size_t)n);
}

/* Where each of NVALUES values lands (index into split). */
static void place_all(const fx_split_conf *split, size_t n, size_t *out)
{
    char buf[32];
    for (int i = 0; i < NVALUES; i++)
        out[i] = fx_balance_rendezvous(&cfg, split, n, value(buf, sizeof(buf), i));
}

/* --- hash -------------------------------------------------------------------------------- */

/* The values are fixed forever: a new hash would move every sticky user at once. */
START_TEST(test_hash_known_answers)
{
    ck_assert_uint_eq(fx_balance_hash("", 0, 0), UINT64_C(0x48218226ff3cd4bf));
    ck_assert_uint_eq(fx_balance_hash("a", 1, 0), UINT64_C(0xf90c7d162504524b));
    ck_assert_uint_eq(fx_balance_hash("user-42", 7, 0), UINT64_C(0xe0646487e6b95df4));
    ck_assert_uint_eq(fx_balance_hash("0123456789abcdef0", 17, 7), UINT64_C(0x5ee1705acabd377b));
}
END_TEST

/* Trailing zero bytes, the seed and every block count. */
START_TEST(test_hash_sensitivity)
{
    static const char z[16] = {0};
    uint64_t seen[17];
    for (size_t n = 0; n <= 16; n++) {
        seen[n] = fx_balance_hash(z, n, 0);
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(seen[k] != seen[n], "%zu and %zu zero bytes hash the same", k, n);
    }
    ck_assert_uint_ne(fx_balance_hash("abc", 3, 1), fx_balance_hash("abc", 3, 2));
    ck_assert_uint_ne(fx_balance_hash("0123456789abcdefX", 17, 0), fx_balance_hash("0123456789abcdefY", 17, 0));
    ck_assert_uint_ne(fx_balance_hash("X123456789abcdef0", 17, 0), fx_balance_hash("Y123456789abcdef0", 17, 0));
}
END_TEST

/* Flipping one input bit flips about half of the output bits, for every input bit. */
START_TEST(test_hash_avalanche)
{
    unsigned char in[24];
    uint64_t rng[2] = {0x1234567u, 0x89abcdefu};
    for (size_t bit = 0; bit < sizeof(in) * 8; bit++) {
        unsigned long flips = 0;
        for (int t = 0; t < 200; t++) {
            for (size_t i = 0; i < sizeof(in); i++)
                in[i] = (unsigned char)fx_rng_next(rng);
            uint64_t a = fx_balance_hash(in, sizeof(in), 0);
            in[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            flips += (unsigned long)__builtin_popcountll(a ^ fx_balance_hash(in, sizeof(in), 0));
        }
        double mean = flips / 200.0;
        ck_assert_msg(mean > 30.0 && mean < 34.0, "input bit %zu flips %.2f output bits on average", bit, mean);
    }
}
END_TEST

/* --- weighted random ---------------------------------------------------------------------- */

/* Evenly spaced numbers over the 64-bit range give each side exactly its share. */
START_TEST(test_weighted_exact_mapping)
{
    const fx_split_conf split[] = {{0, 1}, {1, 0}, {2, 3}};
    size_t count[3] = {0};
    const uint64_t step = UINT64_MAX / 4000 + 1;
    for (uint64_t i = 0; i < 4000; i++)
        count[fx_balance_weighted(split, 3, i * step)]++;
    ck_assert_uint_eq(count[0], 1000);
    ck_assert_uint_eq(count[1], 0);
    ck_assert_uint_eq(count[2], 3000);
    ck_assert_uint_eq(fx_balance_weighted(split, 3, 0), 0);
    ck_assert_uint_eq(fx_balance_weighted(split, 3, UINT64_MAX), 2);
}
END_TEST

/* Each side's share of n picks (count) is its weight's share within tol; a side of weight 0 gets none. */
static void assert_shares(size_t k, const unsigned *w, size_t nsides, const size_t *count, int n, double tol)
{
    unsigned total = 0;
    for (size_t i = 0; i < nsides; i++)
        total += w[i];
    for (size_t i = 0; i < nsides; i++) {
        double want = (double)w[i] / total, got = (double)count[i] / n;
        ck_assert_msg(fabs(got - want) < tol, "case %zu side %zu: %.4f of the picks, want %.4f", k, i, got, want);
        if (!w[i])
            ck_assert_msg(count[i] == 0, "case %zu: side %zu of weight 0 picked %zu times", k, i, count[i]);
    }
}

START_TEST(test_weighted_draws)
{
    static const struct {
        unsigned w[4];
        size_t n;
    } t[] = {
        {{10, 90}, 2},
        {{1, 1}, 2},
        {{5, 0, 3, 2}, 4},
        {{1, 999999}, 2},
    };
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
        fx_split_conf split[4];
        for (size_t i = 0; i < t[k].n; i++)
            split[i] = (fx_split_conf){(int)i, t[k].w[i]};
        uint64_t rng[2] = {0x9e3779b97f4a7c15u, 0xdeadbeef12345678u + k};
        size_t count[4] = {0};
        const int draws = 100000;
        for (int i = 0; i < draws; i++)
            count[fx_balance_weighted(split, t[k].n, fx_rng_next(rng))]++;
        assert_shares(k, t[k].w, t[k].n, count, draws, 0.01);
    }
}
END_TEST

/* --- rendezvous --------------------------------------------------------------------------- */

START_TEST(test_sticky_same_value_same_side)
{
    const fx_split_conf split[] = {{1, 10}, {0, 90}};
    char buf[32];
    size_t first[200];
    for (int i = 0; i < 200; i++)
        first[i] = fx_balance_rendezvous(&cfg, split, 2, value(buf, sizeof(buf), i));
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 200; i++)
            ck_assert_uint_eq(fx_balance_rendezvous(&cfg, split, 2, value(buf, sizeof(buf), i)), first[i]);
    /* the side follows the upstream, not its place in the list */
    const fx_split_conf swapped[] = {{0, 90}, {1, 10}};
    for (int i = 0; i < 200; i++)
        ck_assert_uint_eq(split[first[i]].upstream,
                          swapped[fx_balance_rendezvous(&cfg, swapped, 2, value(buf, sizeof(buf), i))].upstream);
}
END_TEST

/* Sticky values spread like the weights, and weight 0 gets none. */
START_TEST(test_sticky_spread)
{
    static const struct {
        unsigned w[4];
        size_t n;
    } t[] = {
        {{10, 90}, 2},
        {{1, 2, 3}, 3},
        {{0, 1, 0, 1}, 4},
        {{1, 1, 1, 1}, 4}, /* hash quality: nobody starved */
    };
    static size_t at[NVALUES];
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
        fx_split_conf split[4];
        for (size_t i = 0; i < t[k].n; i++)
            split[i] = (fx_split_conf){(int)i, t[k].w[i]};
        place_all(split, t[k].n, at);
        size_t count[4] = {0};
        for (int i = 0; i < NVALUES; i++)
            count[at[i]]++;
        /* sd of a share over 10,000 values is at most 0.005: 0.02 is 4 of them */
        assert_shares(k, t[k].w, t[k].n, count, NVALUES, 0.02);
    }
}
END_TEST

/* 10/90 → 20/80: about 10% move, all from the side that shrank to the side that grew. */
START_TEST(test_sticky_consistent)
{
    static size_t before[NVALUES], after[NVALUES];
    const fx_split_conf a[] = {{1, 10}, {0, 90}}, b[] = {{1, 20}, {0, 80}};
    place_all(a, 2, before);
    place_all(b, 2, after);
    int moved = 0;
    for (int i = 0; i < NVALUES; i++) {
        if (before[i] == after[i])
            continue;
        ck_assert_msg(before[i] == 1 && after[i] == 0, "user-%d moved from the growing side to the shrinking one",
                      i);
        moved++;
    }
    ck_assert_msg(moved >= NVALUES * 9 / 100 && moved <= NVALUES * 11 / 100, "%d of %d values moved", moved,
                  NVALUES);
    /* the same weights scaled: nobody moves (only ratios count) */
    const fx_split_conf c[] = {{1, 100}, {0, 900}};
    place_all(c, 2, after);
    ck_assert_int_eq(memcmp(before, after, sizeof(before)), 0);
}
END_TEST

/* Three sides, 1/2/3 → 2/2/2: a value moves from X to Y only when Y grew or X shrank, so nothing leaves
 * the side that grew and nothing joins the side that shrank. */
START_TEST(test_sticky_three_sides)
{
    static size_t before[NVALUES], after[NVALUES];
    const fx_split_conf a[] = {{2, 1}, {1, 2}, {3, 3}}, b[] = {{2, 2}, {1, 2}, {3, 2}};
    place_all(a, 3, before);
    place_all(b, 3, after);
    int moved = 0, count[3] = {0};
    for (int i = 0; i < NVALUES; i++) {
        count[after[i]]++;
        if (before[i] == after[i])
            continue;
        ck_assert_msg(before[i] != 0 && after[i] != 2, "user-%d moved from side %zu to side %zu", i, before[i],
                      after[i]);
        moved++;
    }
    for (int k = 0; k < 3; k++)
        ck_assert_msg(abs(count[k] - NVALUES / 3) < NVALUES / 50, "side %d has %d of %d values", k, count[k],
                      NVALUES);
    /* side 0 gains 1/6 of the values, the least that must move; with two weights changing at once
     * rendezvous moves a little more (about 21% here), a modulo scheme most of them */
    ck_assert_msg(moved > NVALUES / 6 - NVALUES / 50 && moved < NVALUES / 4, "%d of %d values moved", moved,
                  NVALUES);

    /* draining one side (weight 0) moves exactly its values, and spreads them over the others */
    const fx_split_conf d[] = {{2, 1}, {1, 0}, {3, 3}};
    place_all(d, 3, after);
    size_t to[3] = {0};
    for (int i = 0; i < NVALUES; i++) {
        ck_assert_uint_ne(after[i], 1);
        if (before[i] != 1)
            ck_assert_uint_eq(after[i], before[i]);
        else
            to[after[i]]++;
    }
    ck_assert_msg(to[0] > 0 && to[2] > to[0], "drained values went %zu / %zu", to[0], to[2]);
}
END_TEST

/* --- from the request --------------------------------------------------------------------- */

static fx_arena arena;

static void parse(const char *raw, fx_http_msg *m)
{
    fx_http_error err;
    ck_assert_msg(fx_http_parse_request(&arena, raw, strlen(raw), m, &err) == 0, "%s", err.detail);
}

static int slice_is(fx_slice s, const char *want)
{
    return want ? s.p && s.n == strlen(want) && !memcmp(s.p, want, s.n) : s.p == NULL;
}

START_TEST(test_sticky_value_sources)
{
    fx_arena_init(&arena, 4096);
    fx_http_msg m;
    parse("GET /p/1 HTTP/1.1\r\nHost: x\r\nX-Tenant:  acme \r\nX-Empty: \r\n"
          "Cookie: a=1; sid=\"s-77\"\r\nCookie: other=2\r\n\r\n",
          &m);
    char buf[64];
    fx_split_conf split[] = {{0, 1}, {1, 1}};
    fx_route_conf r = {.split = split, .nsplit = 2, .upstream = 0};
    static const struct {
        int kind;
        const char *name;
        const char *want; /* NULL: absent */
    } t[] = {
        {FX_STICKY_HEADER, "x-tenant", "acme"},   /* trimmed; names are stored lower-cased */
        {FX_STICKY_HEADER, "x-empty", NULL},      /* empty counts as absent */
        {FX_STICKY_HEADER, "x-missing", NULL},
        {FX_STICKY_COOKIE, "sid", "s-77"},        /* quotes removed */
        {FX_STICKY_COOKIE, "other", "2"},         /* from the second Cookie header */
        {FX_STICKY_COOKIE, "SID", NULL},          /* cookie names are case-sensitive */
        {FX_STICKY_COOKIE, "absent", NULL},
        {FX_STICKY_CLIENT_IP, NULL, "192.0.2.7"},
        {FX_STICKY_TOKEN, "sub", NULL},           /* no verified token */
        {FX_STICKY_NONE, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        r.sticky = t[i].kind;
        r.sticky_name = (char *)t[i].name;
        fx_slice v = fx_balance_sticky_value(&r, &m, NULL, "192.0.2.7", buf, sizeof(buf));
        ck_assert_msg(slice_is(v, t[i].want), "row %zu: got '%.*s', want %s", i, (int)v.n, v.p ? v.p : "",
                      t[i].want ? t[i].want : "none");
    }
    fx_arena_free(&arena);
}
END_TEST

/* With the value, the choice is the rendezvous side every time; without it, weighted draws that
 * reach both sides; a route without a split keeps its upstream. */
START_TEST(test_choose)
{
    fx_arena_init(&arena, 4096);
    fx_http_msg with, without;
    parse("GET /p/1 HTTP/1.1\r\nHost: x\r\nX-User: user-3\r\n\r\n", &with);
    parse("GET /p/1 HTTP/1.1\r\nHost: x\r\n\r\n", &without);
    fx_split_conf split[] = {{1, 50}, {0, 50}};
    fx_route_conf r = {.split = split, .nsplit = 2, .upstream = 1, .sticky = FX_STICKY_HEADER,
                       .sticky_name = (char *)"x-user"};
    uint64_t rng[2] = {1, 2};
    int want = split[fx_balance_rendezvous(&cfg, split, 2, FX_SLICE_LIT("user-3"))].upstream;
    int seen[2] = {0};
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(fx_balance_choose(&cfg, &r, &with, NULL, "127.0.0.1", rng), want);
        int u = fx_balance_choose(&cfg, &r, &without, NULL, "127.0.0.1", rng);
        ck_assert(u == 0 || u == 1);
        seen[u]++;
    }
    ck_assert_msg(seen[0] > 50 && seen[1] > 50, "fallback draws: %d / %d", seen[0], seen[1]);

    fx_route_conf plain = {.upstream = 3};
    ck_assert_int_eq(fx_balance_choose(&cfg, &plain, &without, NULL, "127.0.0.1", rng), 3);
    fx_arena_free(&arena);
}
END_TEST

/* token.CLAIM: the claim of a verified token (HS256 made here), rendered the way auth.forward does. */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

START_TEST(test_sticky_token_claim)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef-balance";
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[256], token[1024], sig64[128];
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"iss\",\"aud\":\"aud\",\"sub\":\"user-3\",\"org\":{\"id\":42},\"exp\":%ld}",
             (long)time(NULL) + 600);
    b64url((const unsigned char *)header, strlen(header), token);
    strcat(token, ".");
    b64url((const unsigned char *)payload, strlen(payload), token + strlen(token));
    unsigned char mac[64];
    size_t maclen = 0;
    ck_assert_ptr_nonnull(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret),
                                    (const unsigned char *)token, strlen(token), mac, sizeof(mac), &maclen));
    b64url(mac, maclen, sig64);
    strcat(token, ".");
    strcat(token, sig64);

    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[200];
    ck_assert_int_eq(fx_jwt_keyset_add_secret(ks, NULL, FX_JWT_ALG_HS256, (const unsigned char *)secret,
                                              strlen(secret), err, sizeof(err)),
                     0);
    const char *aud[] = {"aud"};
    fx_jwt_issuer is = {.issuer = "iss", .audiences = aud, .naudiences = 1, .keys = ks};
    fx_jwt_claims *claims = NULL;
    const char *detail = NULL;
    ck_assert_int_eq(fx_jwt_verify(&is, 1, token, strlen(token), time(NULL), 30, &claims, &detail), FX_JWT_OK);

    fx_arena_init(&arena, 4096);
    fx_http_msg m;
    parse("GET /p/1 HTTP/1.1\r\nHost: x\r\n\r\n", &m);
    fx_split_conf split[] = {{1, 10}, {0, 90}};
    fx_route_conf r = {.split = split, .nsplit = 2, .sticky = FX_STICKY_TOKEN, .sticky_name = (char *)"sub"};
    char buf[FX_BALANCE_VALUE_MAX];
    ck_assert(slice_is(fx_balance_sticky_value(&r, &m, claims, "127.0.0.1", buf, sizeof(buf)), "user-3"));
    r.sticky_name = (char *)"org.id";
    ck_assert(slice_is(fx_balance_sticky_value(&r, &m, claims, "127.0.0.1", buf, sizeof(buf)), "42"));
    r.sticky_name = (char *)"tenant";
    ck_assert(slice_is(fx_balance_sticky_value(&r, &m, claims, "127.0.0.1", buf, sizeof(buf)), NULL));

    /* the same user on the same side as a header carrying the same value would put it */
    r.sticky_name = (char *)"sub";
    uint64_t rng[2] = {5, 6};
    int want = split[fx_balance_rendezvous(&cfg, split, 2, FX_SLICE_LIT("user-3"))].upstream;
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(fx_balance_choose(&cfg, &r, &m, claims, "127.0.0.1", rng), want);

    fx_jwt_claims_unref(claims);
    fx_jwt_keyset_unref(ks);
    fx_arena_free(&arena);
}
END_TEST

static Suite *balance_suite(void)
{
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("hash");
    tcase_add_test(tc, test_hash_known_answers);
    tcase_add_test(tc, test_hash_sensitivity);
    tcase_add_test(tc, test_hash_avalanche);
    suite_add_tcase(s, tc);

    tc = tcase_create("weighted");
    tcase_add_test(tc, test_weighted_exact_mapping);
    tcase_add_test(tc, test_weighted_draws);
    suite_add_tcase(s, tc);

    tc = tcase_create("rendezvous");
    tcase_add_test(tc, test_sticky_same_value_same_side);
    tcase_add_test(tc, test_sticky_spread);
    tcase_add_test(tc, test_sticky_consistent);
    tcase_add_test(tc, test_sticky_three_sides);
    suite_add_tcase(s, tc);

    tc = tcase_create("request");
    tcase_add_test(tc, test_sticky_value_sources);
    tcase_add_test(tc, test_choose);
    tcase_add_test(tc, test_sticky_token_claim);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balance_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

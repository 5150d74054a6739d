/*
 * test_health.c — Check suite "health" for gateway/health.c.
 *
 *   registry       one state per upstream (name + targets), shared by every
 *                  caller that asks, freed with its last reference
 *   ejection       FX_EJECT_AFTER failures in a row eject a target from one
 *                  worker only, for 10 s, 20 s, 40 s, ... at most 5 min; a
 *                  success resets count and interval
 *   knob           FICUS_TEST_EJECT_BASE_MS replaces the 10 s (tests only)
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static fx_upstream_conf upstream(const char *name, fx_addr *targets, size_t n)
{
    return (fx_upstream_conf){.name = (char *)name, .targets = targets, .ntargets = n};
}

static fx_addr T[2] = {{.text = (char *)"127.0.0.1:8001"}, {.text = (char *)"127.0.0.1:8002"}};

/* How long target t stays ejected from worker w, from now (0: not ejected). */
static uint64_t ejected_for(const fx_health_state *st, unsigned w, size_t t)
{
    uint64_t until = atomic_load(&st->slots[w * st->ntargets + t].ejected_until_ms), now = mono_ms();
    return until > now ? until - now : 0;
}

static void fail_n(fx_health_state *st, unsigned w, size_t t, int n)
{
    for (int i = 0; i < n; i++)
        fx_health_outcome(st, w, t, 0);
}

START_TEST(test_registry_shares_by_name_and_targets)
{
    fx_health *h = fx_health_new(2);
    ck_assert_ptr_nonnull(h);
    fx_upstream_conf a = upstream("docs", T, 2), same = upstream("docs", T, 2), fewer = upstream("docs", T, 1),
                     other = upstream("users", T, 2);
    fx_health_state *s1 = fx_health_state_get(h, &a), *s2 = fx_health_state_get(h, &same);
    fx_health_state *s3 = fx_health_state_get(h, &fewer), *s4 = fx_health_state_get(h, &other);
    ck_assert_ptr_eq(s1, s2);
    ck_assert_ptr_ne(s1, s3);
    ck_assert_ptr_ne(s1, s4);
    ck_assert_uint_eq(s1->ntargets, 2);
    ck_assert_uint_eq(s1->nworkers, 2);
    fail_n(s1, 1, 0, FX_EJECT_AFTER);
    fx_health_state_put(h, s2);
    /* still referenced: the same state, its ejection kept */
    fx_health_state *s5 = fx_health_state_get(h, &a);
    ck_assert_ptr_eq(s5, s1);
    ck_assert_uint_eq(atomic_load(&s5->ejections[0]), 1);
    fx_health_state_put(h, s1);
    fx_health_state_put(h, s5);
    fx_health_state_put(h, s3);
    fx_health_state_put(h, s4);
    /* the last reference went: a new one starts clean */
    fx_health_state *s6 = fx_health_state_get(h, &a);
    ck_assert_uint_eq(atomic_load(&s6->ejections[0]), 0);
    fx_health_state_put(h, s6);
    ck_assert_ptr_null(fx_health_state_get(NULL, &a));
    fx_health_free(h);
}
END_TEST

START_TEST(test_ejection_grows_and_success_resets)
{
    unsetenv("FICUS_TEST_EJECT_BASE_MS");
    fx_health *h = fx_health_new(2);
    fx_upstream_conf u = upstream("docs", T, 2);
    fx_health_state *st = fx_health_state_get(h, &u);

    fail_n(st, 0, 1, FX_EJECT_AFTER - 1);
    ck_assert_uint_eq(ejected_for(st, 0, 1), 0);
    fx_health_outcome(st, 0, 1, 1); /* a success in between: the count starts over */
    fail_n(st, 0, 1, FX_EJECT_AFTER - 1);
    ck_assert_uint_eq(ejected_for(st, 0, 1), 0);
    fx_health_outcome(st, 0, 1, 0);
    uint64_t d = ejected_for(st, 0, 1);
    ck_assert(d > 9000 && d <= 10000);
    ck_assert_uint_eq(ejected_for(st, 1, 1), 0); /* the other worker still sends to it */
    ck_assert_uint_eq(ejected_for(st, 0, 0), 0);
    ck_assert_uint_eq(atomic_load(&st->ejections[1]), 1);

    /* ejections in a row: 20 s, 40 s, ... capped at 5 min */
    uint64_t want[] = {20000, 40000, 80000, 160000, 300000, 300000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        fail_n(st, 0, 1, FX_EJECT_AFTER);
        d = ejected_for(st, 0, 1);
        ck_assert_msg(d > want[i] - 1000 && d <= want[i], "ejection %zu: %llu ms, want %llu", i + 2,
                      (unsigned long long)d, (unsigned long long)want[i]);
    }
    ck_assert_uint_eq(atomic_load(&st->ejections[1]), 7);

    /* a success resets the interval: the next ejection is 10 s again */
    fx_health_outcome(st, 0, 1, 1);
    fail_n(st, 0, 1, FX_EJECT_AFTER);
    d = ejected_for(st, 0, 1);
    ck_assert(d > 9000 && d <= 10000);

    /* out-of-range callers are ignored, not written past the arrays */
    fx_health_outcome(st, 2, 0, 0);
    fx_health_outcome(st, 0, 2, 0);
    fx_health_outcome(NULL, 0, 0, 0);
    fx_health_state_put(h, st);
    fx_health_free(h);
}
END_TEST

START_TEST(test_base_knob)
{
    setenv("FICUS_TEST_EJECT_BASE_MS", "500", 1);
    fx_health *h = fx_health_new(1);
    unsetenv("FICUS_TEST_EJECT_BASE_MS");
    fx_upstream_conf u = upstream("docs", T, 1);
    fx_health_state *st = fx_health_state_get(h, &u);
    fail_n(st, 0, 0, FX_EJECT_AFTER);
    uint64_t d = ejected_for(st, 0, 0);
    ck_assert(d > 0 && d <= 500);
    fail_n(st, 0, 0, FX_EJECT_AFTER);
    d = ejected_for(st, 0, 0);
    ck_assert(d > 500 && d <= 1000);
    fx_health_state_put(h, st);
    fx_health_free(h);

    setenv("FICUS_TEST_EJECT_BASE_MS", "ten", 1); /* not a number: the documented 10 s */
    h = fx_health_new(1);
    unsetenv("FICUS_TEST_EJECT_BASE_MS");
    st = fx_health_state_get(h, &u);
    fail_n(st, 0, 0, FX_EJECT_AFTER);
    d = ejected_for(st, 0, 0);
    ck_assert(d > 9000 && d <= 10000);
    fx_health_state_put(h, st);
    fx_health_free(h);
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_registry_shares_by_name_and_targets);
    tcase_add_test(tc, test_ejection_grows_and_success_resets);
    tcase_add_test(tc, test_base_knob);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(health_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

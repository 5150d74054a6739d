/*
 * test_arena.c — Check suite "arena" for gateway/arena.c.
 *
 *   alignment       every pointer is 16-byte aligned, whatever the sizes asked
 *   small_many      thousands of small allocations over many blocks keep their bytes
 *   big             allocations larger than the block size, first or in between
 *   dup             memdup / strndup copy and terminate
 *   reset           rewinds, keeps the first block and hands its memory out again
 *   reset_big       the same after an oversized allocation (the common header-copy case)
 *   reset_loop      a keep-alive connection's lifetime: no growth, no leak (ASan/LSan)
 *   free            free after use, free of an unused arena, free twice
 *
 * Allocations are written to in full, so ASan reports any block that is
 * smaller than what the arena handed out.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define ALIGNED16(p) ((((uintptr_t)(p)) & 15u) == 0)

START_TEST(test_alignment)
{
    fx_arena a;
    fx_arena_init(&a, 512);
    static const size_t sizes[] = {1,  2,  3,  7,   8,   9,   15,  16,  17,
                                   31, 33, 63, 100, 255, 511, 512, 513, 4000};
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = fx_arena_alloc(&a, sizes[i]);
            ck_assert_ptr_nonnull(p);
            ck_assert_msg(ALIGNED16(p), "alloc(%zu) returned %p, not 16-byte aligned", sizes[i],
                          (void *)p);
            memset(p, 0xab, sizes[i]);
        }
    }
    /* memdup / strndup go through the same path */
    ck_assert(ALIGNED16(fx_arena_memdup(&a, "abc", 3)));
    ck_assert(ALIGNED16(fx_arena_strndup(&a, "abcdef", 5)));
    fx_arena_free(&a);
}
END_TEST

/* Small allocations of varying size across many blocks: each keeps its own bytes. */
START_TEST(test_small_many)
{
    enum { N = 5000 };
    fx_arena a;
    fx_arena_init(&a, 256);
    unsigned char **ptrs = calloc(N, sizeof(*ptrs));
    size_t *lens = calloc(N, sizeof(*lens));
    ck_assert_ptr_nonnull(ptrs);
    ck_assert_ptr_nonnull(lens);
    size_t want_allocated = 0;
    for (size_t i = 0; i < N; i++) {
        lens[i] = 1 + (i * 7) % 48;
        ptrs[i] = fx_arena_alloc(&a, lens[i]);
        ck_assert_ptr_nonnull(ptrs[i]);
        ck_assert(ALIGNED16(ptrs[i]));
        memset(ptrs[i], (int)(i & 0xff), lens[i]);
        want_allocated += (lens[i] + 15) & ~(size_t)15;
    }
    ck_assert_uint_eq(a.allocated, want_allocated);
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < lens[i]; k++)
            ck_assert_msg(ptrs[i][k] == (unsigned char)(i & 0xff),
                          "allocation %zu byte %zu was overwritten by a later allocation", i, k);
    /* no two allocations overlap */
    for (size_t i = 1; i < N; i++)
        ck_assert(ptrs[i] != ptrs[i - 1]);
    free(ptrs);
    free(lens);
    fx_arena_free(&a);
    ck_assert_ptr_null(a.head);
    ck_assert_uint_eq(a.allocated, 0);
}
END_TEST

START_TEST(test_big)
{
    fx_arena a;
    fx_arena_init(&a, 128);

    /* big as the very first allocation */
    unsigned char *b1 = fx_arena_alloc(&a, 1000);
    ck_assert_ptr_nonnull(b1);
    ck_assert(ALIGNED16(b1));
    memset(b1, 1, 1000);

    /* small, then big in between, then small again */
    unsigned char *s1 = fx_arena_alloc(&a, 40);
    ck_assert_ptr_nonnull(s1);
    memset(s1, 2, 40);
    unsigned char *b2 = fx_arena_alloc(&a, 10000);
    ck_assert_ptr_nonnull(b2);
    ck_assert(ALIGNED16(b2));
    memset(b2, 3, 10000);
    unsigned char *s2 = fx_arena_alloc(&a, 40);
    ck_assert_ptr_nonnull(s2);
    memset(s2, 4, 40);

    /* exactly the block size, and one more */
    unsigned char *e1 = fx_arena_alloc(&a, 128);
    ck_assert_ptr_nonnull(e1);
    memset(e1, 5, 128);
    unsigned char *e2 = fx_arena_alloc(&a, 129);
    ck_assert_ptr_nonnull(e2);
    memset(e2, 6, 129);

    for (size_t i = 0; i < 1000; i++)
        ck_assert_int_eq(b1[i], 1);
    for (size_t i = 0; i < 40; i++) {
        ck_assert_int_eq(s1[i], 2);
        ck_assert_int_eq(s2[i], 4);
    }
    for (size_t i = 0; i < 10000; i++)
        ck_assert_int_eq(b2[i], 3);
    for (size_t i = 0; i < 128; i++)
        ck_assert_int_eq(e1[i], 5);
    ck_assert_uint_eq(a.allocated, 1008 + 48 + 10000 + 48 + 128 + 144);

    /* a size whose rounding would wrap around */
    ck_assert_ptr_null(fx_arena_alloc(&a, SIZE_MAX - 3));
    fx_arena_free(&a);
}
END_TEST

START_TEST(test_dup)
{
    fx_arena a;
    fx_arena_init(&a, 64);
    const char src[] = "Host: example.com\r\n";
    char *d = fx_arena_memdup(&a, src, sizeof(src) - 1);
    ck_assert_ptr_nonnull(d);
    ck_assert(d != src);
    ck_assert_int_eq(memcmp(d, src, sizeof(src) - 1), 0);

    char *s = fx_arena_strndup(&a, "example.com:8080", 11);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "example.com");

    /* empty inputs still give a usable, distinct pointer */
    char *e = fx_arena_strndup(&a, "", 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e, "");
    ck_assert_ptr_nonnull(fx_arena_memdup(&a, src, 0));

    /* a copy larger than the block size */
    char big[1000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    char *bd = fx_arena_memdup(&a, big, sizeof(big));
    ck_assert_ptr_nonnull(bd);
    ck_assert_int_eq(memcmp(bd, big, sizeof(big)), 0);
    char *bs = fx_arena_strndup(&a, big, sizeof(big));
    ck_assert_ptr_nonnull(bs);
    ck_assert_uint_eq(strlen(bs), sizeof(big));

    /* the earlier copies are intact */
    ck_assert_str_eq(s, "example.com");
    ck_assert_int_eq(memcmp(d, src, sizeof(src) - 1), 0);
    fx_arena_free(&a);
}
END_TEST

/* Reset rewinds the first block: the next allocation is the first one's memory. */
START_TEST(test_reset)
{
    fx_arena a;
    fx_arena_init(&a, 256);
    fx_arena_reset(&a); /* reset of an unused arena is a no-op */
    ck_assert_ptr_null(a.head);

    void *first = fx_arena_alloc(&a, 32);
    ck_assert_ptr_nonnull(first);
    fx_arena_block *first_block = a.head;
    for (int i = 0; i < 100; i++)
        memset(fx_arena_alloc(&a, 48), 0x5a, 48); /* several blocks */
    ck_assert(a.head != first_block);

    fx_arena_reset(&a);
    ck_assert_uint_eq(a.allocated, 0);
    ck_assert_msg(a.head == first_block, "reset did not keep the first block");
    void *again = fx_arena_alloc(&a, 32);
    ck_assert_msg(again == first, "after reset the first block's memory is not reused");
    memset(again, 0, 32);
    ck_assert_uint_eq(a.allocated, 32);
    fx_arena_free(&a);
}
END_TEST

/*
 * The request arena's typical life: a few small allocations, then the copy
 * of a header block bigger than a block, then reset at the end of the
 * request. The first block must survive the reset (arena.h: "The first
 * block is kept across resets").
 */
START_TEST(test_reset_after_big)
{
    fx_arena a;
    fx_arena_init(&a, 256);
    void *first = fx_arena_alloc(&a, 16);
    ck_assert_ptr_nonnull(first);
    fx_arena_block *first_block = a.head;
    void *big = fx_arena_alloc(&a, 4096);
    ck_assert_ptr_nonnull(big);
    memset(big, 0x11, 4096);

    fx_arena_reset(&a);
    ck_assert_uint_eq(a.allocated, 0);
    ck_assert_msg(
        a.head == first_block,
        "reset after an oversized allocation freed the first block too (head %p, want %p)",
        (void *)a.head, (void *)first_block);
    fx_arena_free(&a);
}
END_TEST

/* Many request lifetimes on one arena: memory does not grow, nothing leaks. */
START_TEST(test_reset_loop)
{
    fx_arena a;
    fx_arena_init(&a, 1024);
    void *base = NULL;
    for (int req = 0; req < 2000; req++) {
        void *p = fx_arena_alloc(&a, 64);
        ck_assert_ptr_nonnull(p);
        if (!base)
            base = p;
        ck_assert_msg(p == base, "request %d: first allocation not from the kept block", req);
        for (int i = 0; i < 40; i++) {
            size_t n = (size_t)(16 + (req + i) % 200);
            char *q = fx_arena_alloc(&a, n);
            ck_assert_ptr_nonnull(q);
            memset(q, req & 0xff, n);
        }
        if (req % 10 == 0) {
            char *b = fx_arena_alloc(&a, 5000);
            ck_assert_ptr_nonnull(b);
            memset(b, 1, 5000);
            /* a small one after the big one must still work */
            ck_assert_ptr_nonnull(fx_arena_strndup(&a, "x-request-id", 12));
        }
        fx_arena_reset(&a);
        ck_assert_uint_eq(a.allocated, 0);
    }
    fx_arena_free(&a);
}
END_TEST

START_TEST(test_free)
{
    fx_arena a;
    fx_arena_init(&a, 0); /* 0 picks the default block size */
    ck_assert_uint_gt(a.block_size, 0);
    fx_arena_free(&a); /* never used */
    ck_assert_ptr_null(a.head);

    fx_arena_init(&a, 64);
    for (int i = 0; i < 50; i++)
        ck_assert_ptr_nonnull(fx_arena_alloc(&a, (size_t)(1 + i * 13)));
    fx_arena_free(&a);
    ck_assert_ptr_null(a.head);
    ck_assert_uint_eq(a.allocated, 0);
    fx_arena_free(&a); /* twice is harmless */

    /* usable again after free */
    ck_assert_ptr_nonnull(fx_arena_alloc(&a, 10));
    fx_arena_free(&a);
}
END_TEST

static Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_alignment);
    tcase_add_test(tc, test_small_many);
    tcase_add_test(tc, test_big);
    tcase_add_test(tc, test_dup);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_reset_after_big);
    tcase_add_test(tc, test_reset_loop);
    tcase_add_test(tc, test_free);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(arena_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * alloc_hooks.h — "this code does not allocate", checked by counting the
 * process's mallocs with AddressSanitizer's allocator hooks (the test build
 * runs with ASan). Shared by the suites of code that promises it (expr,
 * policy). Without ASan HAVE_ALLOC_HOOKS stays undefined and the suites
 * leave those tests out rather than pretend to run them.
 *
 *   alloc_hooks_install();     once per test: installs, and proves the hook counts
 *   alloc_counting = 1; ...; alloc_counting = 0;   then alloc_count is the number seen
 */
#ifndef FX_TEST_ALLOC_HOOKS_H
#define FX_TEST_ALLOC_HOOKS_H

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ALLOC_HOOKS 1
#endif
#endif

#ifdef HAVE_ALLOC_HOOKS
#include <check.h>
#include <stdlib.h>

/* ASan's allocator calls these on every malloc and free of the process. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static volatile int alloc_counting;
static volatile size_t alloc_count;

static void alloc_on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    if (alloc_counting)
        alloc_count++;
}

static void alloc_on_free(const volatile void *p) { (void)p; }

static void alloc_hooks_install(void)
{
    static int installed;
    if (!installed)
        ck_assert_int_ne(__sanitizer_install_malloc_and_free_hooks(alloc_on_malloc, alloc_on_free), 0);
    installed = 1;
    /* the hook itself is seen to count */
    alloc_counting = 1;
    free(malloc(16));
    alloc_counting = 0;
    ck_assert_uint_eq(alloc_count, 1);
    alloc_count = 0;
}
#endif

#endif

/*
 * arena.c — per-request bump allocator (see arena.h).
 *
 * Blocks form a singly linked list, newest first. Oversized allocations
 * get a block of their own so one big header block does not waste the
 * rest of a default-sized block.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fx_arena_block {
    fx_arena_block *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(16) unsigned char data[];
};

static fx_arena_block *block_new(size_t size)
{
    fx_arena_block *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

void fx_arena_init(fx_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 4096;
    a->allocated = 0;
}

void *fx_arena_alloc(fx_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    fx_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        fx_arena_block *nb = block_new(size);
        if (!nb)
            return NULL;
        if (b && need > a->block_size) {
            /* keep filling the current block: put the big one behind it */
            nb->next = b->next;
            b->next = nb;
            nb->used = need;
            a->allocated += need;
            return nb->data;
        }
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->allocated += need;
    return p;
}

void *fx_arena_memdup(fx_arena *a, const void *p, size_t n)
{
    void *d = fx_arena_alloc(a, n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

char *fx_arena_strndup(fx_arena *a, const char *p, size_t n)
{
    char *d = fx_arena_alloc(a, n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

void fx_arena_reset(fx_arena *a)
{
    /* keep the oldest default-sized block (the common request fits in it), free the rest */
    fx_arena_block *keep = NULL;
    for (fx_arena_block *b = a->head; b; b = b->next)
        if (b->size == a->block_size)
            keep = b;
    fx_arena_block *b = a->head;
    while (b) {
        fx_arena_block *next = b->next;
        if (b != keep)
            free(b);
        b = next;
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
    a->allocated = 0;
}

void fx_arena_free(fx_arena *a)
{
    fx_arena_block *b = a->head;
    while (b) {
        fx_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->allocated = 0;
}

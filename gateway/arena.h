/*
 * arena.h — a bump allocator whose allocations die together.
 *
 * Each request owns one arena: the copied header block, the parsed header
 * table, route parameters and the serialized upstream head live in it and
 * are released in one fx_arena_reset() when the request ends. The first
 * block is kept across resets so a keep-alive connection does not go back
 * to malloc for every request.
 */
#ifndef FX_ARENA_H
#define FX_ARENA_H

#include <stddef.h>

typedef struct fx_arena_block fx_arena_block;

typedef struct fx_arena {
    fx_arena_block *head;  /* current block (newest) */
    size_t block_size;     /* default size of a new block */
    size_t allocated;      /* bytes handed out since the last reset */
} fx_arena;

void fx_arena_init(fx_arena *a, size_t block_size);
/* Returns NULL only when malloc fails. Alignment: 16 bytes. */
void *fx_arena_alloc(fx_arena *a, size_t n);
void *fx_arena_memdup(fx_arena *a, const void *p, size_t n);
char *fx_arena_strndup(fx_arena *a, const char *p, size_t n);
/* Frees every block but the first and rewinds it. */
void fx_arena_reset(fx_arena *a);
void fx_arena_free(fx_arena *a);

#endif

/*
 * jwt_cache.c — a per-thread cache of verified tokens, so a client that
 * sends the same token on every request pays for RSA or ECDSA once.
 *
 * A bounded LRU: `capacity` entries allocated up front, a chained hash
 * table of entry indices (buckets: a power of two at least the capacity)
 * and a doubly linked recency list (head: most recent, tail: the next to
 * be evicted). Entries are keyed by a seeded 64-bit hash of the whole
 * token, but a hit also compares the whole token, so two tokens with the
 * same hash can never share claims. An entry counts only for the
 * generation it was stored under (the caller bumps the generation when
 * keys or issuers change) and while now < valid_until (exp + skew); a
 * stale entry found by a lookup is dropped on the spot.
 *
 * Only verified tokens are stored, so an attacker cannot fill a bucket
 * chain without valid tokens; the per-cache random seed keeps chains short
 * even then. One cache per worker thread: nothing here takes a lock.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "internal.h"

#define NIL UINT32_MAX
#define MAX_CAPACITY (1u << 24)

typedef struct entry {
    uint64_t hash;
    char *token; /* a copy; tokcap bytes allocated, reused by the next token that fits */
    size_t len, tokcap;
    fx_jwt_claims *claims; /* one reference; NULL: the entry is free */
    int64_t valid_until;
    uint64_t generation;
    uint32_t prev, next; /* recency list, or the free list (next) */
    uint32_t chain;      /* next entry in the same bucket */
} entry;

struct fx_jwt_cache {
    size_t capacity, n;
    entry *e;
    uint32_t *buckets;
    size_t mask;
    uint32_t head, tail, free_head;
    uint64_t seed;
    fx_jwt_cache_hash_fn hash;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

/* Eight bytes at a time, each word mixed before it is folded in. Not cryptographic: the
 * full compare on hit is what makes a hit correct; the seed only keeps chains short. */
static uint64_t token_hash(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ mix(w)) * 0x9e3779b97f4a7c15ULL;
        h = h << 31 | h >> 33;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h ^= mix(w ^ n);
    return mix(h);
}

fx_jwt_cache *fx_jwt_cache_new(size_t capacity)
{
    if (capacity > MAX_CAPACITY)
        capacity = MAX_CAPACITY;
    fx_jwt_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t nb = 1;
    while (nb < capacity)
        nb <<= 1;
    c->capacity = capacity;
    c->e = calloc(capacity ? capacity : 1, sizeof(*c->e));
    c->buckets = malloc(nb * sizeof(*c->buckets));
    if (!c->e || !c->buckets) {
        free(c->e);
        free(c->buckets);
        free(c);
        return NULL;
    }
    c->mask = nb - 1;
    for (size_t i = 0; i < nb; i++)
        c->buckets[i] = NIL;
    for (size_t i = 0; i < capacity; i++)
        c->e[i].next = i + 1 < capacity ? (uint32_t)(i + 1) : NIL;
    c->free_head = capacity ? 0 : NIL;
    c->head = c->tail = NIL;
    if (RAND_bytes((unsigned char *)&c->seed, sizeof(c->seed)) != 1)
        c->seed = (uint64_t)(uintptr_t)c ^ 0x5bd1e9955bd1e995ULL;
    c->hash = token_hash;
    return c;
}

void fx_jwt_cache_free(fx_jwt_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->capacity; i++) {
        fx_jwt_claims_unref(c->e[i].claims);
        free(c->e[i].token);
    }
    free(c->e);
    free(c->buckets);
    free(c);
}

void fx_jwt_cache_set_hash(fx_jwt_cache *c, fx_jwt_cache_hash_fn fn)
{
    /* only on an empty cache: stored entries were placed by the old hash */
    if (c && c->n == 0)
        c->hash = fn ? fn : token_hash;
}

size_t fx_jwt_cache_size(const fx_jwt_cache *c)
{
    return c ? c->n : 0;
}

/* ---- the recency list -------------------------------------------------------------------- */

static void lru_unlink(fx_jwt_cache *c, uint32_t i)
{
    entry *e = &c->e[i];
    if (e->prev != NIL)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != NIL)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
}

static void lru_push_front(fx_jwt_cache *c, uint32_t i)
{
    entry *e = &c->e[i];
    e->prev = NIL;
    e->next = c->head;
    if (c->head != NIL)
        c->e[c->head].prev = i;
    c->head = i;
    if (c->tail == NIL)
        c->tail = i;
}

/* ---- entries ---------------------------------------------------------------------------------- */

static uint32_t find(const fx_jwt_cache *c, uint64_t h, const char *token, size_t len)
{
    for (uint32_t i = c->buckets[h & c->mask]; i != NIL; i = c->e[i].chain) {
        const entry *e = &c->e[i];
        if (e->hash == h && e->len == len && memcmp(e->token, token, len) == 0)
            return i;
    }
    return NIL;
}

static void drop(fx_jwt_cache *c, uint32_t i)
{
    entry *e = &c->e[i];
    uint32_t *link = &c->buckets[e->hash & c->mask];
    while (*link != i)
        link = &c->e[*link].chain;
    *link = e->chain;
    lru_unlink(c, i);
    fx_jwt_claims_unref(e->claims);
    e->claims = NULL;
    e->len = 0;
    e->next = c->free_head;
    c->free_head = i;
    c->n--;
}

const fx_jwt_claims *fx_jwt_cache_get(fx_jwt_cache *c, const char *token, size_t len,
                                      int64_t now, uint64_t generation)
{
    if (!c || !token || c->n == 0 || len > FX_JWT_MAX_TOKEN)
        return NULL;
    uint64_t h = c->hash(token, len, c->seed);
    uint32_t i = find(c, h, token, len);
    if (i == NIL)
        return NULL;
    entry *e = &c->e[i];
    if (e->generation != generation || now >= e->valid_until) {
        drop(c, i);
        return NULL;
    }
    if (c->head != i) {
        lru_unlink(c, i);
        lru_push_front(c, i);
    }
    return e->claims;
}

void fx_jwt_cache_put(fx_jwt_cache *c, const char *token, size_t len, fx_jwt_claims *claims,
                      int64_t valid_until, uint64_t generation)
{
    if (!c || !token || !claims || c->capacity == 0 || len == 0 || len > FX_JWT_MAX_TOKEN)
        return;
    uint64_t h = c->hash(token, len, c->seed);
    uint32_t i = find(c, h, token, len);
    if (i != NIL) {
        entry *e = &c->e[i];
        fx_jwt_claims_ref(claims);
        fx_jwt_claims_unref(e->claims);
        e->claims = claims;
        e->valid_until = valid_until;
        e->generation = generation;
        if (c->head != i) {
            lru_unlink(c, i);
            lru_push_front(c, i);
        }
        return;
    }
    if (c->free_head == NIL)
        drop(c, c->tail);
    i = c->free_head;
    entry *e = &c->e[i];
    if (e->tokcap < len) {
        char *t = realloc(e->token, len);
        if (!t)
            return;
        e->token = t;
        e->tokcap = len;
    }
    c->free_head = e->next;
    memcpy(e->token, token, len);
    e->len = len;
    e->hash = h;
    e->claims = fx_jwt_claims_ref(claims);
    e->valid_until = valid_until;
    e->generation = generation;
    e->chain = c->buckets[h & c->mask];
    c->buckets[h & c->mask] = i;
    lru_push_front(c, i);
    c->n++;
}

/*
 * monolith.c — the "legacy monolith" of the ficus demo: the application the
 * gateway fronts and, one route at a time, strangles.
 *
 * It is deliberately plain: one process, one event loop (libevent's evhttp),
 * everything in memory, no JSON or crypto library. It has two faces:
 *   - /api/{profiles,documents,tasks}[/{id}]: a small JSON resource API with
 *     seed data, the thing the demo migrates away from;
 *   - /_test/...: endpoints the gateway's integration tests and benchmark use to
 *     make an upstream misbehave on demand (echo, any status, slowness, big and
 *     chunked bodies, extra headers, connection close).
 *
 * Map of this file, top to bottom:
 *   sha256    FIPS 180-4 SHA-256, so /_test/echo can fingerprint bodies
 *   json out  string escaping into evbuffers; valid JSON even from odd bytes
 *   json in   a validator that walks an object's top-level members, so a
 *             stored resource can get its "id" forced without a JSON library
 *   store     the collections: hash for lookup, list for a stable listing order
 *   replies   one place that sets Content-Type, logs and sends
 *   pending   requests answered later (slow, chunked) and how they survive a
 *             client that hangs up first
 *   handlers  /api, /healthz, /_test/...
 *   main      CLI, listener, signals, teardown
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* req->major/minor: 2.1 has no getter */
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "listen.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

#define API_MAX_BODY MIB        /* /api bodies; larger gets 413 */
#define HTTP_MAX_BODY (2 * MIB) /* evhttp's limit, global (it has no per-path one) */
#define BYTES_MAX (64 * MIB)    /* /_test/bytes and /_test/chunked */
#define PIECE (64 * KIB)        /* largest slice of the pattern per evbuffer chain */
#define CHUNK (16 * KIB)        /* /_test/chunked chunk size */
#define CHUNKS_PER_DRAIN 4      /* chunks queued each time the socket drains */
#define SLOW_MAX_MS 600000ul
#define PATTERN_LEN (MIB + 26) /* 1 MiB for /_test/1m, +26 so any i%26 offset fits */
#define ID_MAX 64
#define JSON_MAX_DEPTH 64 /* the validator recurses: bound it */

#define CT_JSON "application/json"
#define CT_TEXT "text/plain"
#define CT_OCTETS "application/octet-stream"

/* A byte range that is not NUL-terminated: a piece of a path or query. */
struct slice {
    const char *p;
    size_t len;
};

struct sha256 {
    uint32_t h[8];
    uint64_t total;   /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;      /* bytes waiting in block */
};

/* One stored resource. json is the object as served, "id" first. */
struct item {
    struct item *hnext;       /* hash chain */
    struct item *prev, *next; /* listing order: insertion */
    char *json;
    size_t json_len;
    char id[];
};

struct collection {
    const char *name;
    struct item **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    struct item *head, *tail;
    unsigned long next_id; /* for POST */
};

enum { KIND_PROFILES, KIND_DOCUMENTS, KIND_TASKS, KIND_COUNT };

/* A request that is answered after its handler returned. */
struct pending {
    struct pending *prev, *next;
    struct app *app;
    struct evhttp_request *req;
    struct event *timer; /* slow */
    unsigned long ms;    /* slow: what to report */
    size_t total, sent;  /* chunked */
};

struct app {
    struct event_base *base;
    struct evhttp *http;
    struct event *sigterm, *sigint;
    /* Reply bodies are staged here. evhttp moves (not copies) the contents
     * out when sending, so one buffer serves every request of this thread. */
    struct evbuffer *out;
    /* 'a' + i % 26: the body of /_test/1m, and referenced (zero copy) by
     * /_test/bytes and /_test/chunked. Freed only after evhttp, whose
     * buffers may still point into it. */
    char *pattern;
    struct collection coll[KIND_COUNT];
    struct pending *pending;
    int quiet;
};

/* ---- sha256 ------------------------------------------------------------ */

/* First 32 bits of the fractional parts of the cube roots of the first 64
 * primes (FIPS 180-4, 4.2.2). */
static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_init(struct sha256 *s)
{
    /* fractional parts of the square roots of the first 8 primes (5.3.3) */
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof(h0));
    s->total = 0;
    s->fill = 0;
}

static void sha256_compress(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    uint32_t e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ch + sha256_k[t] + w[t];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

static void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->total += len;
    if (s->fill) {
        size_t take = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        len -= take;
        if (s->fill < 64)
            return;
        sha256_compress(s->h, s->block);
        s->fill = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha256_compress(s->h, p);
    memcpy(s->block, p, len);
    s->fill = len;
}

/* Pads (a 1 bit, zeros, the bit length as 64-bit big endian) and writes
 * the digest as 64 lowercase hex digits plus NUL. */
static void sha256_hex(struct sha256 *s, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = s->fill < 56 ? 56 - s->fill : 120 - s->fill;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 32; i++) {
        uint8_t byte = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
    out[64] = '\0';
}

/* ---- json out ---------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (2..4), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4;
    else
        return 0;
    /* no overlong forms, no surrogates, nothing above U+10FFFF */
    if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Appends s as a JSON string. Bytes that are not UTF-8 (headers may carry
 * obs-text) are escaped as if Latin-1, so the output always parses. */
static void json_str(struct evbuffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;
    evbuffer_add(b, "\"", 1);
    while (i < len) {
        char esc[7];
        size_t esc_len = 0, n = 1;
        if (u[i] == '"' || u[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)u[i];
            esc_len = 2;
        } else if (u[i] < 0x20 || (u[i] >= 0x80 && !(n = utf8_seq(u + i, len - i)))) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[u[i] >> 4];
            esc[5] = hex[u[i] & 15];
            esc_len = 6;
            n = 1;
        }
        if (esc_len) {
            evbuffer_add(b, s + run, i - run);
            evbuffer_add(b, esc, esc_len);
            run = i + 1;
        }
        i += n;
    }
    evbuffer_add(b, s + run, len - run);
    evbuffer_add(b, "\"", 1);
}

/* ---- json in ----------------------------------------------------------- */

/* Each json_* takes the start of a token and returns the byte after it, or
 * NULL when the input is not JSON there. None reads past end. */

static const char *json_value(const char *p, const char *end, int depth);

static const char *json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const char *json_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\')
            continue;
        if (++p == end)
            return NULL;
        if (*p == 'u') {
            if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]))
                return NULL;
            p += 4;
        } else if (*p == '\0' || !strchr("\"\\/bfnrt", *p)) {
            return NULL;
        }
    }
    return NULL;
}

static const char *json_digits(const char *p, const char *end)
{
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p == start ? NULL : p;
}

static const char *json_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++; /* a leading zero stands alone: "01" fails at the caller */
    else if (!(p = json_digits(p, end)))
        return NULL;
    if (p < end && *p == '.' && !(p = json_digits(p + 1, end)))
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        p = json_digits(p, end);
    }
    return p;
}

static const char *json_word(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* An object or array; members of objects are "key": value. */
static const char *json_container(const char *p, const char *end, int depth)
{
    char close = *p == '{' ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH)
        return NULL;
    p = json_ws(p + 1, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (p >= end || *p != '"' || !(p = json_string(p, end)))
                return NULL;
            p = json_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = json_ws(p + 1, end);
        }
        if (!(p = json_value(p, end, depth + 1)))
            return NULL;
        p = json_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = json_ws(p + 1, end);
    }
}

static const char *json_value(const char *p, const char *end, int depth)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"':
        return json_string(p, end);
    case '{':
    case '[':
        return json_container(p, end, depth);
    case 't':
        return json_word(p, end, "true");
    case 'f':
        return json_word(p, end, "false");
    case 'n':
        return json_word(p, end, "null");
    default:
        return json_number(p, end);
    }
}

/*
 * The object in body, rewritten as {"id":"<id>", <its other members>}:
 * members are copied verbatim, every top-level "id" member is dropped.
 * Returns a malloc'd NUL-terminated string, or NULL when body is not exactly
 * one JSON object (or on OOM). id must need no escaping (the router checks).
 * A key spelled with escapes ("\u0069d") is not recognised as "id": fine for
 * a demo, and the forced "id" still comes first.
 */
static char *object_with_id(const char *body, size_t len, const char *id, size_t *out_len)
{
    const char *end = body + len;
    const char *p = json_ws(body, end);
    size_t idlen = strlen(id);
    /* every copied member had a '{' or ',' before it in body: len bounds them */
    char *out = malloc(len + idlen + 16);
    size_t n;
    if (!out)
        return NULL;
    n = (size_t)sprintf(out, "{\"id\":\"%s\"", id);
    if (p >= end || *p != '{')
        goto bad;
    p = json_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            const char *member = p, *key_end;
            if (p >= end || *p != '"' || !(key_end = json_string(p, end)))
                goto bad;
            p = json_ws(key_end, end);
            if (p >= end || *p != ':')
                goto bad;
            if (!(p = json_value(json_ws(p + 1, end), end, 1)))
                goto bad;
            if (!(key_end - member == 4 && memcmp(member, "\"id\"", 4) == 0)) {
                out[n++] = ',';
                memcpy(out + n, member, (size_t)(p - member));
                n += (size_t)(p - member);
            }
            p = json_ws(p, end);
            if (p < end && *p == '}') {
                p++;
                break;
            }
            if (p >= end || *p != ',')
                goto bad;
            p = json_ws(p + 1, end);
        }
    }
    if (json_ws(p, end) != end)
        goto bad;
    out[n++] = '}';
    out[n] = '\0';
    *out_len = n;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- store ------------------------------------------------------------- */

static size_t hash_id(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

static int coll_init(struct collection *c, const char *name)
{
    c->name = name;
    c->nbuckets = 16;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->next_id = 1;
    return c->buckets ? 0 : -1;
}

static struct item *coll_find(const struct collection *c, const char *id)
{
    struct item *it = c->buckets[hash_id(id) & (c->nbuckets - 1)];
    while (it && strcmp(it->id, id) != 0)
        it = it->hnext;
    return it;
}

/* Keeps chains short as a benchmark POSTs thousands of items. A failed
 * grow is harmless: the table just stays denser. */
static void coll_grow(struct collection *c)
{
    size_t nb = c->nbuckets * 2;
    struct item **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (struct item *it = c->head; it; it = it->next) {
        size_t i = hash_id(it->id) & (nb - 1);
        it->hnext = b[i];
        b[i] = it;
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

/* Stores json (taking ownership) under id. Returns 1 if created, 0 if it
 * replaced an item (which keeps its place in the listing), -1 on OOM (json
 * is freed then too). *stored receives the item. */
static int coll_put(struct collection *c, const char *id, char *json, size_t json_len,
                    struct item **stored)
{
    struct item *it = coll_find(c, id);
    if (it) {
        free(it->json);
        it->json = json;
        it->json_len = json_len;
        *stored = it;
        return 0;
    }
    size_t idlen = strlen(id);
    it = calloc(1, sizeof(*it) + idlen + 1);
    if (!it) {
        free(json);
        return -1;
    }
    memcpy(it->id, id, idlen + 1);
    it->json = json;
    it->json_len = json_len;
    if (c->count >= c->nbuckets)
        coll_grow(c);
    size_t i = hash_id(id) & (c->nbuckets - 1);
    it->hnext = c->buckets[i];
    c->buckets[i] = it;
    it->prev = c->tail;
    if (c->tail)
        c->tail->next = it;
    else
        c->head = it;
    c->tail = it;
    c->count++;
    *stored = it;
    return 1;
}

static int coll_delete(struct collection *c, const char *id)
{
    struct item **link = &c->buckets[hash_id(id) & (c->nbuckets - 1)];
    while (*link && strcmp((*link)->id, id) != 0)
        link = &(*link)->hnext;
    struct item *it = *link;
    if (!it)
        return -1;
    *link = it->hnext;
    if (it->prev)
        it->prev->next = it->next;
    else
        c->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        c->tail = it->prev;
    c->count--;
    free(it->json);
    free(it);
    return 0;
}

static void coll_free(struct collection *c)
{
    struct item *it = c->head;
    while (it) {
        struct item *next = it->next;
        free(it->json);
        free(it);
        it = next;
    }
    free(c->buckets);
    memset(c, 0, sizeof(*c));
}

/* A numeric id nobody uses yet (a PUT may have taken the next one). */
static void coll_new_id(struct collection *c, char id[ID_MAX + 1])
{
    do
        snprintf(id, ID_MAX + 1, "%lu", c->next_id++);
    while (coll_find(c, id));
}

/* Seed data goes through the same path as a PUT, so it is stored exactly
 * as a client would see it. */
static int store_seed(struct app *app)
{
    static const struct {
        int kind;
        const char *id, *json;
    } seed[] = {
        {KIND_PROFILES, "1", "{\"name\":\"Ada\",\"team\":\"core\"}"},
        {KIND_PROFILES, "2", "{\"name\":\"Grace\",\"team\":\"compilers\"}"},
        {KIND_DOCUMENTS, "1",
         "{\"title\":\"Migration plan\",\"author\":\"1\",\"body\":\"Extract documents first.\"}"},
        {KIND_DOCUMENTS, "2", "{\"title\":\"Runbook\",\"author\":\"2\",\"body\":\"...\"}"},
        {KIND_TASKS, "1",
         "{\"title\":\"Move documents out of the monolith\",\"owner\":\"1\",\"done\":false}"},
    };
    static const char *names[KIND_COUNT] = {"profiles", "documents", "tasks"};
    for (int k = 0; k < KIND_COUNT; k++)
        if (coll_init(&app->coll[k], names[k]) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(seed) / sizeof(seed[0]); i++) {
        struct collection *c = &app->coll[seed[i].kind];
        struct item *it;
        size_t len;
        char *json = object_with_id(seed[i].json, strlen(seed[i].json), seed[i].id, &len);
        if (!json || coll_put(c, seed[i].id, json, len, &it) < 0)
            return -1;
        unsigned long n = strtoul(seed[i].id, NULL, 10);
        if (n >= c->next_id)
            c->next_id = n + 1;
    }
    return 0;
}

/* ---- replies ----------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

/* One short line per request on stderr; the URI is the client's, so it is
 * cut and stripped of control bytes before it reaches a terminal. */
static void log_request(const struct app *app, struct evhttp_request *req, int code)
{
    if (app->quiet)
        return;
    const char *uri = evhttp_request_get_uri(req);
    char safe[160];
    size_t n = 0;
    for (; uri && uri[n] && n < sizeof(safe) - 1; n++)
        safe[n] = (unsigned char)uri[n] < 0x20 || uri[n] == 0x7f ? '?' : uri[n];
    safe[n] = '\0';
    fprintf(stderr, "monolith: %s %s %d\n", method_name(evhttp_request_get_command(req)), safe,
            code);
}

/* Sends app->out as the body. ctype NULL: the handler set Content-Type. */
static void reply(struct app *app, struct evhttp_request *req, int code, const char *ctype)
{
    if (ctype)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    log_request(app, req, code);
    evhttp_send_reply(req, code, NULL, app->out);
    /* evhttp moved the body out; make sure nothing leaks into the next reply */
    if (evbuffer_get_length(app->out))
        evbuffer_drain(app->out, evbuffer_get_length(app->out));
}

static void reply_error(struct app *app, struct evhttp_request *req, int code, const char *msg)
{
    evbuffer_add_printf(app->out, "{\"error\":\"%s\"}", msg);
    reply(app, req, code, CT_JSON);
}

static void reply_not_allowed(struct app *app, struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(app, req, 405, "method not allowed");
}

/* OPTIONS is answered rather than refused: saying what is allowed is its job. */
static void reply_options(struct app *app, struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply(app, req, 204, NULL);
}

/* ---- pending ----------------------------------------------------------- */

/*
 * evhttp hands a request to us and gets it back with the final send. If the
 * client hangs up in between, evhttp frees the connection but *detaches* the
 * unanswered request (its connection becomes NULL) and leaves it to us. The
 * connection's close callback is the only notice we get, so every pending
 * request registers one; it is cleared again just before the final send.
 */

static void pending_free(struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->app->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->timer)
        event_free(p->timer);
    free(p);
}

static void on_client_gone(struct evhttp_connection *evcon, void *arg)
{
    struct pending *p = arg;
    /* Detached: the client left and the request is ours to free. Still
     * attached: the server is being torn down (evhttp_free) and the
     * connection frees the request right after this callback. */
    if (evhttp_request_get_connection(p->req) == NULL)
        evhttp_request_free(p->req);
    pending_free(p);
}

static struct pending *pending_new(struct app *app, struct evhttp_request *req)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->app = app;
    p->req = req;
    p->next = app->pending;
    if (p->next)
        p->next->prev = p;
    app->pending = p;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_gone, p);
    return p;
}

/* Before the final send: from here on evhttp owns the request again. */
static void pending_finish(struct pending *p)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    pending_free(p);
}

static void on_slow_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct app *app = p->app;
    struct evhttp_request *req = p->req;
    unsigned long ms = p->ms;
    pending_finish(p);
    evbuffer_add_printf(app->out, "{\"slept_ms\":%lu}", ms);
    reply(app, req, 200, CT_JSON);
}

static void on_chunk_drained(struct evhttp_connection *evcon, void *arg);

/* Queues a few chunks and asks to be called again when the socket has
 * taken them, so a slow reader holds at most CHUNKS_PER_DRAIN chunks here. */
static void chunked_more(struct pending *p)
{
    struct app *app = p->app;
    for (int i = 0; i < CHUNKS_PER_DRAIN && p->sent < p->total; i++) {
        size_t n = p->total - p->sent < CHUNK ? p->total - p->sent : CHUNK;
        evbuffer_add_reference(app->out, app->pattern + p->sent % 26, n, NULL, NULL);
        p->sent += n;
        /* evhttp keeps one drain callback per connection: the last one set wins */
        if (i == CHUNKS_PER_DRAIN - 1 && p->sent < p->total)
            evhttp_send_reply_chunk_with_cb(p->req, app->out, on_chunk_drained, p);
        else
            evhttp_send_reply_chunk(p->req, app->out);
    }
    if (p->sent == p->total) {
        struct evhttp_request *req = p->req;
        pending_finish(p);
        evhttp_send_reply_end(req);
    }
}

static void on_chunk_drained(struct evhttp_connection *evcon, void *arg)
{
    chunked_more(arg);
}

/* ---- handlers ---------------------------------------------------------- */

/* Digits only, at most max; ten digits at most, so the sum cannot wrap. */
static int parse_uint(struct slice s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (s.len == 0 || s.len > 10)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s.p[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static struct slice slice_str(const char *s)
{
    struct slice r = {s, s ? strlen(s) : 0};
    return r;
}

static int slice_eq(struct slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Walks "k=v&k2=v2", one pair per call, values still encoded. 0 at the end. */
static int query_next(const char **q, struct slice *key, struct slice *val)
{
    const char *s = *q;
    while (*s == '&')
        s++;
    if (*s == '\0')
        return 0;
    const char *amp = strchrnul(s, '&');
    const char *eq = memchr(s, '=', (size_t)(amp - s));
    key->p = s;
    key->len = (size_t)((eq ? eq : amp) - s);
    val->p = eq ? eq + 1 : amp;
    val->len = (size_t)(amp - val->p);
    *q = amp;
    return 1;
}

static int hex_val(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Form decoding ('+' is a space, %XX a byte) into out (in.len + 1 bytes).
 * A NUL byte or a broken escape is an error: results become C strings. */
static int url_decode(struct slice in, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= in.len || !is_hex(in.p[i + 1]) || !is_hex(in.p[i + 2]))
                return -1;
            c = (char)(hex_val(in.p[i + 1]) << 4 | hex_val(in.p[i + 2]));
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *query_of(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    return q ? q : "";
}

/* Ids are what a path segment can carry unencoded, so they go into JSON
 * and Location headers as they are. */
static int valid_id(struct slice id)
{
    if (id.len == 0 || id.len > ID_MAX)
        return 0;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.p[i];
        if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return 0;
    }
    return 1;
}

static void api_list(struct app *app, struct evhttp_request *req, const struct collection *c)
{
    evbuffer_add(app->out, "{\"items\":[", 10);
    for (const struct item *it = c->head; it; it = it->next) {
        if (it != c->head)
            evbuffer_add(app->out, ",", 1);
        evbuffer_add(app->out, it->json, it->json_len);
    }
    evbuffer_add(app->out, "]}", 2);
    reply(app, req, 200, CT_JSON);
}

/* PUT, PATCH and POST: validate the body, force the id, store, echo it back. */
static void api_store(struct app *app, struct evhttp_request *req, struct collection *c,
                      const char *id)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in), json_len;
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    struct item *it;
    char *json = object_with_id(body, len, id, &json_len);
    if (!json) {
        reply_error(app, req, 400, "body must be a JSON object");
        return;
    }
    int created = coll_put(c, id, json, json_len, &it);
    if (created < 0) {
        reply_error(app, req, 500, "out of memory");
        return;
    }
    if (created) {
        char location[ID_MAX + 64];
        snprintf(location, sizeof(location), "/api/%s/%s", c->name, id);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", location);
    }
    evbuffer_add(app->out, it->json, it->json_len);
    reply(app, req, created ? 201 : 200, CT_JSON);
}

static void handle_api(struct app *app, struct evhttp_request *req, const char *rest)
{
    static const char allow_coll[] = "GET, HEAD, POST, OPTIONS";
    static const char allow_item[] = "GET, HEAD, PUT, PATCH, DELETE, OPTIONS";
    const char *slash = strchr(rest, '/');
    struct slice kind = {rest, slash ? (size_t)(slash - rest) : strlen(rest)};
    struct slice id = slice_str(slash ? slash + 1 : "");
    struct collection *c = NULL;
    char idz[ID_MAX + 1];

    for (int k = 0; k < KIND_COUNT; k++)
        if (slice_eq(kind, app->coll[k].name))
            c = &app->coll[k];
    /* "/api/kind/" is the collection too; anything deeper is no resource */
    if (!c || (id.len && !valid_id(id))) {
        reply_error(app, req, 404, "not found");
        return;
    }
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > API_MAX_BODY) {
        reply_error(app, req, 413, "body too large");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (id.len == 0) {
        if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD) {
            api_list(app, req, c);
        } else if (cmd == EVHTTP_REQ_POST) {
            coll_new_id(c, idz);
            api_store(app, req, c, idz);
        } else if (cmd == EVHTTP_REQ_OPTIONS) {
            reply_options(app, req, allow_coll);
        } else {
            reply_not_allowed(app, req, allow_coll);
        }
        return;
    }
    memcpy(idz, id.p, id.len);
    idz[id.len] = '\0';
    const struct item *it = coll_find(c, idz);
    switch (cmd) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        if (!it) {
            reply_error(app, req, 404, "not found");
            return;
        }
        evbuffer_add(app->out, it->json, it->json_len);
        reply(app, req, 200, CT_JSON);
        return;
    case EVHTTP_REQ_PATCH:
        /* a PATCH replaces too (no merge), but only what exists */
        if (!it) {
            reply_error(app, req, 404, "not found");
            return;
        }
        api_store(app, req, c, idz);
        return;
    case EVHTTP_REQ_PUT:
        api_store(app, req, c, idz);
        return;
    case EVHTTP_REQ_DELETE:
        if (coll_delete(c, idz) < 0)
            reply_error(app, req, 404, "not found");
        else
            reply(app, req, 204, NULL);
        return;
    case EVHTTP_REQ_OPTIONS:
        reply_options(app, req, allow_item);
        return;
    default:
        reply_not_allowed(app, req, allow_item);
        return;
    }
}

static void handle_healthz(struct app *app, struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        reply_not_allowed(app, req, "GET, HEAD");
        return;
    }
    evbuffer_add_reference(app->out, "ok", 2, NULL, NULL);
    reply(app, req, 200, CT_TEXT);
}

static void test_small(struct app *app, struct evhttp_request *req)
{
    /* static bytes, referenced not copied: the benchmark's hot path */
    evbuffer_add_reference(app->out, "hello\n", 6, NULL, NULL);
    reply(app, req, 200, CT_TEXT);
}

static void test_1m(struct app *app, struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", "1048576");
    evbuffer_add_reference(app->out, app->pattern, MIB, NULL, NULL);
    reply(app, req, 200, CT_OCTETS);
}

static void test_echo(struct app *app, struct evhttp_request *req)
{
    struct evbuffer *b = app->out;
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyval *kv;
    struct sha256 sha;
    char hex[65];
    int first = 1;

    evbuffer_add_printf(b, "{\"method\":\"%s\",\"uri\":",
                        method_name(evhttp_request_get_command(req)));
    json_str(b, uri ? uri : "", uri ? strlen(uri) : 0);
    evbuffer_add_printf(b, ",\"version\":\"%d.%d\",\"headers\":[", req->major, req->minor);
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        evbuffer_add(b, first ? "[" : ",[", first ? 1 : 2);
        json_str(b, kv->key, strlen(kv->key));
        evbuffer_add(b, ",", 1);
        json_str(b, kv->value, strlen(kv->value));
        evbuffer_add(b, "]", 1);
        first = 0;
    }
    /* hash the body where it lies, chain by chain */
    sha256_init(&sha);
    int nvec = evbuffer_peek(body, -1, NULL, NULL, 0);
    struct evbuffer_iovec *vec = nvec > 0 ? calloc((size_t)nvec, sizeof(*vec)) : NULL;
    if (nvec > 0 && !vec) {
        evbuffer_drain(b, evbuffer_get_length(b));
        reply_error(app, req, 500, "out of memory");
        return;
    }
    if (vec)
        nvec = evbuffer_peek(body, -1, NULL, vec, nvec);
    for (int i = 0; i < nvec; i++)
        sha256_update(&sha, vec[i].iov_base, vec[i].iov_len);
    free(vec);
    sha256_hex(&sha, hex);
    evbuffer_add_printf(b, "],\"body_len\":%zu,\"body_sha256\":\"%s\"}",
                        evbuffer_get_length(body), hex);
    reply(app, req, 200, CT_JSON);
}

static void test_status(struct app *app, struct evhttp_request *req, struct slice arg)
{
    unsigned long code;
    /* 1xx cannot be a final response; anything unusable is a bad request */
    if (parse_uint(arg, 599, &code) < 0 || code < 200)
        code = 400;
    evbuffer_add_printf(app->out, "{\"status\":%lu}", code);
    reply(app, req, (int)code, CT_JSON);
}

static void test_slow(struct app *app, struct evhttp_request *req)
{
    const char *q = query_of(req);
    struct slice key, val;
    unsigned long ms = 0;
    int found = 0;
    while (query_next(&q, &key, &val))
        if (slice_eq(key, "ms"))
            found = parse_uint(val, SLOW_MAX_MS, &ms) == 0;
    if (!found) {
        reply_error(app, req, 400, "ms must be 0..600000");
        return;
    }
    struct pending *p = pending_new(app, req);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    if (!p || !(p->timer = evtimer_new(app->base, on_slow_timer, p)) ||
        evtimer_add(p->timer, &tv) < 0) {
        if (p)
            pending_finish(p);
        reply_error(app, req, 500, "cannot start timer");
        return;
    }
    p->ms = ms;
}

static int parse_size(struct slice arg, size_t *n)
{
    unsigned long v;
    if (parse_uint(arg, BYTES_MAX, &v) < 0)
        return -1;
    *n = v;
    return 0;
}

static void test_bytes(struct app *app, struct evhttp_request *req, struct slice arg)
{
    size_t n;
    char len[24];
    if (parse_size(arg, &n) < 0) {
        reply_error(app, req, 400, "size must be 0..67108864");
        return;
    }
    for (size_t off = 0; off < n; off += PIECE)
        evbuffer_add_reference(app->out, app->pattern + off % 26,
                               n - off < PIECE ? n - off : PIECE, NULL, NULL);
    snprintf(len, sizeof(len), "%zu", n);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
    reply(app, req, 200, CT_OCTETS);
}

static void test_chunked(struct app *app, struct evhttp_request *req, struct slice arg)
{
    size_t n;
    if (parse_size(arg, &n) < 0) {
        reply_error(app, req, 400, "size must be 0..67108864");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", CT_OCTETS);
    log_request(app, req, 200);
    evhttp_send_reply_start(req, 200, NULL);
    /* HEAD has no body, and evhttp would never call a drain callback for it */
    struct pending *p = n && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD
                            ? pending_new(app, req)
                            : NULL;
    if (!p) {
        evhttp_send_reply_end(req);
        return;
    }
    p->total = n;
    chunked_more(p);
}

/* ?set=Name:Value&set=... ; framing headers stay evhttp's business. */
static void test_headers(struct app *app, struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *q = query_of(req);
    struct slice key, val;
    int has_type = 0;
    while (query_next(&q, &key, &val)) {
        if (!slice_eq(key, "set"))
            continue;
        char *h = malloc(val.len + 1), *colon = NULL, *v;
        int ok = h && url_decode(val, h) == 0 && (colon = strchr(h, ':')) && colon != h;
        if (ok) {
            *colon = '\0';
            for (const char *c = h; *c; c++)
                ok &= is_tchar((unsigned char)*c);
            for (v = colon + 1; *v == ' ' || *v == '\t';)
                v++;
            for (const char *c = v; *c; c++)
                ok &= ((unsigned char)*c >= 0x20 || *c == '\t') && *c != 0x7f;
            ok = ok && strcasecmp(h, "Content-Length") && strcasecmp(h, "Transfer-Encoding");
            has_type |= ok && !strcasecmp(h, "Content-Type");
            ok = ok && evhttp_add_header(out, h, v) == 0;
        }
        free(h);
        if (!ok) {
            evhttp_clear_headers(out);
            reply_error(app, req, 400, "bad set=Name:Value");
            return;
        }
    }
    evbuffer_add(app->out, "{}", 2);
    reply(app, req, 200, has_type ? NULL : CT_JSON);
}

static void test_close(struct app *app, struct evhttp_request *req)
{
    /* evhttp sees the header and closes after the reply */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evbuffer_add_reference(app->out, "bye", 3, NULL, NULL);
    reply(app, req, 200, CT_TEXT);
}

static void handle_test(struct app *app, struct evhttp_request *req, const char *rest)
{
    if (!strcmp(rest, "echo"))
        test_echo(app, req);
    else if (!strncmp(rest, "status/", 7))
        test_status(app, req, slice_str(rest + 7));
    else if (!strcmp(rest, "slow"))
        test_slow(app, req);
    else if (!strncmp(rest, "bytes/", 6))
        test_bytes(app, req, slice_str(rest + 6));
    else if (!strncmp(rest, "chunked/", 8))
        test_chunked(app, req, slice_str(rest + 8));
    else if (!strcmp(rest, "headers"))
        test_headers(app, req);
    else if (!strcmp(rest, "close"))
        test_close(app, req);
    else if (!strcmp(rest, "1m"))
        test_1m(app, req);
    else
        reply_error(app, req, 404, "not found");
}

/* Every request lands here; paths are matched raw (not percent-decoded). */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    if (!path || path[0] != '/')
        reply_error(app, req, 404, "not found");
    else if (!strcmp(path, "/_test/small")) /* the benchmark's path: first */
        test_small(app, req);
    else if (!strncmp(path, "/api/", 5))
        handle_api(app, req, path + 5);
    else if (!strncmp(path, "/_test/", 7))
        handle_test(app, req, path + 7);
    else if (!strcmp(path, "/healthz"))
        handle_healthz(app, req);
    else
        reply_error(app, req, 404, "not found");
}

/* ---- main -------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: monolith --listen HOST:PORT [--quiet]\n"
               "  the example legacy application behind ficus; PORT 0 picks a free port\n");
}

/* Safe on a partly built app: every field is checked. evhttp goes first,
 * so pending requests are released while their connections still exist. */
static void app_free(struct app *app)
{
    if (app->http)
        evhttp_free(app->http);
    while (app->pending)
        pending_free(app->pending);
    if (app->sigterm)
        event_free(app->sigterm);
    if (app->sigint)
        event_free(app->sigint);
    if (app->out)
        evbuffer_free(app->out);
    free(app->pattern);
    for (int k = 0; k < KIND_COUNT; k++)
        if (app->coll[k].buckets)
            coll_free(&app->coll[k]);
    if (app->base)
        event_base_free(app->base);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct app app;
    const char *listen = NULL;
    char host[256];
    unsigned short port;
    int c, rc = 1;

    memset(&app, 0, sizeof(app));
    while ((c = getopt_long(argc, argv, "l:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'q': app.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!listen || optind != argc || ex_parse_listen(listen, host, sizeof(host), &port) < 0) {
        usage(stderr);
        return 2;
    }
    /* a client that hangs up mid-write must cost a connection, not the process */
    signal(SIGPIPE, SIG_IGN);

    app.pattern = malloc(PATTERN_LEN);
    if (!app.pattern || store_seed(&app) < 0) {
        fprintf(stderr, "monolith: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < PATTERN_LEN; i++)
        app.pattern[i] = (char)('a' + i % 26);

    if (!(app.base = event_base_new()) || !(app.http = evhttp_new(app.base)) ||
        !(app.out = evbuffer_new())) {
        fprintf(stderr, "monolith: cannot set up libevent\n");
        goto out;
    }
    evhttp_set_gencb(app.http, on_request, &app);
    evhttp_set_max_body_size(app.http, HTTP_MAX_BODY);
    evhttp_set_allowed_methods(app.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(app.http, host, port);
    if (!bound) {
        fprintf(stderr, "monolith: cannot listen on %s\n", listen);
        goto out;
    }
    if (ex_print_bound(evhttp_bound_socket_get_fd(bound), "monolith") < 0) {
        perror("monolith: getsockname");
        goto out;
    }

    app.sigterm = evsignal_new(app.base, SIGTERM, on_signal, app.base);
    app.sigint = evsignal_new(app.base, SIGINT, on_signal, app.base);
    if (!app.sigterm || !app.sigint || event_add(app.sigterm, NULL) < 0 ||
        event_add(app.sigint, NULL) < 0) {
        fprintf(stderr, "monolith: cannot install signal handlers\n");
        goto out;
    }
    rc = event_base_dispatch(app.base) < 0 ? 1 : 0;
out:
    app_free(&app);
    libevent_global_shutdown();
    return rc;
}

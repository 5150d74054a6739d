/*
 * fuzz_http1.c — libFuzzer harness for the HTTP/1.1 codec (gateway/http1.c).
 *
 * Input layout: the first byte chooses what the rest is, the rest is wire
 * bytes as a client or an upstream would send them.
 *
 *   bit 0      1: a request (fx_http_parse_request), 0: a response
 *              (fx_http_parse_response)
 *   bit 1      responses: the request asked to upgrade
 *   bit 2      responses: the request was HEAD (else GET)
 *   bits 3-5   seed of the piece sizes the body is fed in
 *   bits 6-7   body limit: none, 16, 256 or 4096 bytes
 *
 *   scan_and_parse   fx_http_scan_head over the bytes; a complete head is
 *                    copied into a buffer of its exact size (so ASan sees
 *                    any read past it) and parsed with an arena
 *   check_msg        what every accepted head must satisfy: slices inside
 *                    the head, header values without CR/LF/NUL, sane framing
 *   feed_chunked     the rest of the input (after the head, or all of it when
 *                    there is no head) through two chunked decoders: one fed
 *                    in a single call, one in pseudo-random pieces. Both must
 *                    decode the same bytes, end at the same byte and fail on
 *                    the same inputs; a third one runs with a body limit.
 *
 * Any violated invariant aborts (a crash for libFuzzer). Everything is freed
 * on every run, so leaks show up under -fsanitize=address.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz_http1
 *   build-fuzz/tests/fuzz/fuzz_http1 -max_len=4096 tests/data/http1
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int within(fx_slice s, const char *buf, size_t len)
{
    return s.p >= buf && s.p + s.n <= buf + len;
}

static void check_msg(const fx_http_msg *m, const char *head, size_t len, int is_request)
{
    CHECK(m->head_len == len);
    CHECK(m->http_minor == 0 || m->http_minor == 1);
    CHECK(m->body >= FX_BODY_NONE && m->body <= FX_BODY_EOF);
    if (m->body == FX_BODY_LENGTH)
        CHECK(m->content_length > 0);
    if (m->body == FX_BODY_CHUNKED)
        CHECK(m->http_minor == 1);
    for (size_t i = 0; i < m->nheaders; i++) {
        const fx_http_header *h = &m->headers[i];
        CHECK(h->name.n > 0 && within(h->name, head, len));
        CHECK(h->value.p && within(h->value, head, len));
        /* what is forwarded must not be able to start a new line or header */
        for (size_t k = 0; k < h->value.n; k++)
            CHECK(h->value.p[k] != '\r' && h->value.p[k] != '\n' && h->value.p[k] != '\0');
        for (size_t k = 0; k < h->name.n; k++)
            CHECK(h->name.p[k] > 0x20 && h->name.p[k] != ':' && h->name.p[k] < 0x7f);
    }
    if (is_request) {
        CHECK(m->method != HTTP_CONNECT && m->method != HTTP_TRACE);
        CHECK(within(m->target, head, len) && m->target.n > 0);
        CHECK(m->path.p && m->path.n > 0);
        CHECK(m->path.p[0] == '/' || (m->path.n == 1 && m->path.p[0] == '*'));
        /* absolute-form without a path gets a literal "/" */
        CHECK(within(m->path, head, len) || (m->absolute_form && m->path.n == 1));
        if (m->query.p)
            CHECK(within(m->query, head, len));
        for (size_t k = 0; k < m->target.n; k++)
            CHECK((unsigned char)m->target.p[k] > 0x20 && (unsigned char)m->target.p[k] < 0x7f);
        if (m->http_minor == 1)
            CHECK(m->host.p != NULL);
        if (m->host.p) {
            CHECK(within(m->host, head, len));
            CHECK(m->host_name.p && within(m->host_name, head, len));
        }
        if (m->upgrade)
            CHECK(m->body == FX_BODY_NONE);
        if (m->request_id.p)
            CHECK(m->request_id.n > 0 && m->request_id.n <= 128);
    } else {
        CHECK(m->status >= 100 && m->status <= 599);
        if (m->status == 204 || m->status == 304 || m->status < 200)
            CHECK(m->body == FX_BODY_NONE);
        if (m->body == FX_BODY_EOF)
            CHECK(!m->keep_alive);
    }
}

/* ---- chunked bodies ------------------------------------------------------------ */

typedef struct sink {
    uint8_t *buf;
    size_t n, cap;
} sink;

static int on_data(void *ctx, const char *p, size_t n)
{
    sink *s = ctx;
    CHECK(n > 0 || p != NULL);
    CHECK(s->n + n <= s->cap); /* never more decoded bytes than were fed */
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

typedef struct run {
    long rc; /* 0 or the first negative code */
    size_t consumed;
    int done;
} run;

/* xorshift: piece sizes from the selector byte, repeatable for a given input */
static uint32_t next_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static run feed(const uint8_t *body, size_t len, int is_request, uint64_t limit, uint32_t seed,
                sink *s)
{
    fx_http_chunked c;
    run r = {0, 0, 0};
    fx_http_chunked_init(&c, is_request, limit, on_data, s);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (seed) {
            size_t want = 1 + next_rand(&seed) % 16;
            if (want < n)
                n = want;
        }
        /* each piece in its own allocation so ASan catches reads past it */
        char *piece = malloc(n);
        CHECK(piece != NULL);
        memcpy(piece, body + off, n);
        const char *why = NULL;
        long got = fx_http_chunked_feed(&c, piece, n, &why);
        free(piece);
        if (got < 0) {
            CHECK(got == FX_CHUNKED_ERROR || got == FX_CHUNKED_TOO_BIG);
            CHECK(why != NULL && *why);
            r.rc = got;
            break;
        }
        CHECK((size_t)got <= n);
        r.consumed += (size_t)got;
        off += n;
        if ((size_t)got < n) {
            CHECK(c.done);
            break;
        }
    }
    r.done = c.done;
    /* total also counts the piece that went over the limit (never passed on) */
    CHECK(c.total == s->n || r.rc == FX_CHUNKED_TOO_BIG);
    if (limit && r.rc == 0)
        CHECK(c.total <= limit);
    if (c.done) {
        const char *why = NULL;
        CHECK(fx_http_chunked_feed(&c, "0\r\n\r\n", 5, &why) == 0);
    }
    return r;
}

static void feed_chunked(const uint8_t *body, size_t len, int is_request, uint64_t limit,
                         uint32_t seed)
{
    sink whole = {malloc(len + 1), 0, len};
    sink parts = {malloc(len + 1), 0, len};
    CHECK(whole.buf && parts.buf);

    run a = feed(body, len, is_request, 0, 0, &whole);
    run b = feed(body, len, is_request, 0, seed | 1, &parts);
    /* the way bytes arrive must not change what they mean */
    CHECK((a.rc < 0) == (b.rc < 0));
    CHECK(a.done == b.done);
    if (a.done)
        CHECK(a.consumed == b.consumed);
    if (a.rc == 0)
        CHECK(whole.n == parts.n && memcmp(whole.buf, parts.buf, whole.n) == 0);
    if (a.done)
        CHECK(a.consumed <= len);

    if (limit) {
        parts.n = 0;
        run l = feed(body, len, is_request, limit, seed | 1, &parts);
        if (l.rc == FX_CHUNKED_TOO_BIG)
            CHECK(a.rc == 0 ? whole.n > limit : 1);
        else if (l.rc == 0)
            CHECK(a.rc == 0 && whole.n <= limit);
    }
    free(whole.buf);
    free(parts.buf);
}

/* ---- heads ----------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    int is_request = sel & 1;
    int req_upgrade = (sel >> 1) & 1;
    int req_method = (sel & 4) ? HTTP_HEAD : HTTP_GET;
    uint32_t seed = 0x9e3779b9u ^ (uint32_t)((sel >> 3) & 7) * 0x85ebca6bu;
    static const uint64_t limits[] = {0, 16, 256, 4096};
    uint64_t limit = limits[(sel >> 6) & 3];

    size_t head_len = 0, skip = 0;
    fx_http_error err = {0, NULL, 0};
    int rc =
        fx_http_scan_head((const char *)in, len, 2048, 512, is_request, &head_len, &skip, &err);
    CHECK(rc >= -1 && rc <= 1);
    size_t body_off = 0;
    if (rc < 0) {
        CHECK(err.detail != NULL);
        CHECK(err.status >= 400 && err.status <= 599);
    } else if (rc == 1) {
        CHECK(skip + head_len <= len && head_len >= 4);
        CHECK(memcmp(in + skip + head_len - 4, "\r\n\r\n", 4) == 0);
        char *head = malloc(head_len);
        CHECK(head != NULL);
        memcpy(head, in + skip, head_len);

        fx_arena arena;
        fx_arena_init(&arena, 256); /* small blocks: the header table grows across blocks */
        fx_http_msg m;
        int prc;
        if (is_request)
            prc = fx_http_parse_request(&arena, head, head_len, &m, &err);
        else
            prc = fx_http_parse_response(&arena, head, head_len, req_method, req_upgrade, &m, &err);
        if (prc == 0) {
            check_msg(&m, head, head_len, is_request);
        } else {
            CHECK(prc == -1);
            CHECK(err.detail != NULL && err.offset <= head_len);
            CHECK(is_request ? (err.status >= 400 && err.status <= 505) : err.status == 502);
        }
        /* the arena is reused by the next request on a connection */
        fx_arena_reset(&arena);
        CHECK(fx_arena_alloc(&arena, 8) != NULL);
        fx_arena_free(&arena);
        free(head);
        body_off = skip + head_len;
    }
    feed_chunked(in + body_off, len - body_off, is_request, limit, seed);
    return 0;
}

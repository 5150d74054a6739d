/*
 * test_http1.c — Check suite "http1" for gateway/http1.c, table-driven.
 *
 *   scan_cases      fx_http_scan_head: where a head ends, what it skips, and the
 *                   raw byte checks (bare LF/CR, NUL, obs-fold, 431, 414)
 *   req_cases       request heads through the gateway's own pipeline (scan, copy
 *                   to a buffer of exactly the head's size, fx_http_parse_request):
 *                   valid ones with every parsed field checked, invalid ones with
 *                   the status the client must get
 *   resp_cases      fx_http_parse_response: framing, bodiless statuses, 101
 *   chunk tests     fx_http_chunked_*: decoding whole and byte by byte, extensions,
 *                   trailers, where the body ends, the size limit, and malformed
 *                   framing that must be refused
 *   single tests    a 414 and a 431 built at run time, many headers, small tables
 *
 * Every head is copied into a malloc'd buffer of its exact length, so ASan
 * reports any read past the end of the head.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static char *dup_exact(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(d);
    memcpy(d, p, n);
    return d;
}

static int slice_is(fx_slice s, const char *want)
{
    return s.p && fx_slice_eq(s, fx_slice_cstr(want));
}

static int inside(fx_slice s, const char *buf, size_t len)
{
    return s.p >= buf && s.p + s.n <= buf + len;
}

static const fx_http_header *find_header(const fx_http_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (fx_slice_ieq_lit(m->headers[i].name, name))
            return &m->headers[i];
    return NULL;
}

/* ==== fx_http_scan_head =================================================== */

typedef struct scan_case {
    const char *name;
    const char *raw;
    size_t len;      /* 0: strlen(raw) */
    size_t max_head; /* 0: 32768 */
    int no_max_head; /* pass max_head 0 (no limit) */
    size_t max_uri;  /* 0: no check */
    int response;
    int rc;
    int status;      /* for rc -1 */
    size_t head_len; /* for rc 1; 0: the whole input after skip */
    size_t skip;
} scan_case;

#define RQ "GET / HTTP/1.1\r\nHost: a\r\n\r\n" /* 27 bytes */
#define LIT(s) .raw = s, .len = sizeof(s) - 1

/* clang-format off */
static const scan_case scan_cases[] = {
    {.name = "complete head", .raw = RQ, .rc = 1, .head_len = 27},
    {.name = "complete head, body bytes follow", .raw = RQ "hello", .rc = 1, .head_len = 27},
    {.name = "complete head, next request follows", .raw = RQ RQ, .rc = 1, .head_len = 27},
    {.name = "empty buffer", .raw = "", .rc = 0},
    {.name = "request line only", .raw = "GET / HTTP/1.1", .rc = 0},
    {.name = "request line and CR", .raw = "GET / HTTP/1.1\r", .rc = 0},
    {.name = "one header line", .raw = "GET / HTTP/1.1\r\nHost: a\r\n", .rc = 0},
    {.name = "final CR without LF yet", .raw = "GET / HTTP/1.1\r\nHost: a\r\n\r", .rc = 0},
    {.name = "leading CRLF skipped", .raw = "\r\n" RQ, .rc = 1, .head_len = 27, .skip = 2},
    {.name = "two leading CRLFs skipped", .raw = "\r\n\r\n" RQ, .rc = 1, .head_len = 27, .skip = 4},
    {.name = "leading CRLF, head incomplete", .raw = "\r\nGET / HT", .rc = 0, .skip = 2},
    {.name = "only CRLFs so far", .raw = "\r\n\r\n", .rc = 0, .skip = 4},
    {.name = "bare LF ends the request line", .raw = "GET / HTTP/1.1\nHost: a\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "bare LF ends a header line", .raw = "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
     .rc = -1,
     .status = 400},
    {.name = "bare LF as the final line", .raw = "GET / HTTP/1.1\r\nHost: a\r\n\n", .rc = -1,
     .status = 400},
    {.name = "bare LF LF", .raw = "GET / HTTP/1.1\n\n", .rc = -1, .status = 400},
    {.name = "bare LF first", .raw = "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "bare LF after leading CRLF", .raw = "\r\n\nGET / HTTP/1.1\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "bare LF before the head is complete", .raw = "GET / HTTP/1.1\r\nX: a\n", .rc = -1,
     .status = 400},
    {.name = "bare CR in the request line", .raw = "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "bare CR ends a line", .raw = "GET / HTTP/1.1\rHost: a\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "bare CR in a value", .raw = "GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "CR CR LF", .raw = "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", .rc = -1, .status = 400},
    {.name = "NUL in a value", LIT("GET / HTTP/1.1\r\nX: a\0b\r\nHost: a\r\n\r\n"), .rc = -1,
     .status = 400},
    {.name = "NUL in the request line", LIT("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), .rc = -1,
     .status = 400},
    {.name = "NUL before the head is complete", LIT("GET /\0"), .rc = -1, .status = 400},
    {.name = "obs-fold with SP", .raw = "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", .rc = -1,
     .status = 400},
    {.name = "obs-fold with HTAB", .raw = "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
     .rc = -1,
     .status = 400},
    {.name = "whitespace line after the request line", .raw = "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
     .rc = -1, .status = 400},
    {.name = "tab line after the request line", .raw = "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n",
     .rc = -1,
     .status = 400},
    /* 431 */
    {.name = "431: no end within max_head",
     .raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaa",
     .max_head = 32, .rc = -1, .status = 431},
    {.name = "431: exactly max_head bytes, no end", .raw = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123",
     .max_head = 32, .rc = -1, .status = 431},
    {.name = "431: complete head longer than max_head",
     .raw = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n",
     .max_head = 32, .rc = -1, .status = 431},
    {.name = "head of exactly max_head bytes", .raw = RQ, .max_head = 27, .rc = 1, .head_len = 27},
    {.name = "head one byte over max_head", .raw = RQ, .max_head = 26, .rc = -1, .status = 431},
    {.name = "below max_head: wait", .raw = "GET / HTTP/1.1\r\nHost", .max_head = 32, .rc = 0},
    {.name = "leading CRLF does not count against max_head", .raw = "\r\n" RQ, .max_head = 27,
     .rc = 1,
     .head_len = 27, .skip = 2},
    {.name = "max_head 0: no limit", .raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaa",
     .no_max_head = 1, .rc = 0},
    /* 414 */
    {.name = "414: target over max_uri", .raw = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n",
     .max_uri = 10,
     .rc = -1, .status = 414},
    {.name = "target of exactly max_uri", .raw = "GET /012345678 HTTP/1.1\r\nHost: a\r\n\r\n",
     .max_uri = 10,
     .rc = 1},
    {.name = "414 before the head is complete", .raw = "GET /0123456789abcdef", .max_uri = 10,
     .rc = -1,
     .status = 414},
    {.name = "max_uri 0: no check", .raw = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n", .rc = 1},
    {.name = "long header value is not a long target",
     .raw = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcdef\r\n\r\n",
     .max_uri = 10, .rc = 1},
    /* responses */
    {.name = "response head", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", .response = 1,
     .rc = 1,
     .head_len = 38},
    {.name = "response head, body follows", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
     .response = 1, .rc = 1, .head_len = 38},
    {.name = "response incomplete", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
     .response = 1, .rc = 0},
    {.name = "response: long reason is not a 414",
     .raw = "HTTP/1.1 200 A very long reason phrase\r\n\r\n",
     .max_uri = 4, .response = 1, .rc = 1},
    {.name = "response too large: 502", .raw = "HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaa",
     .max_head = 32,
     .response = 1, .rc = -1, .status = 502},
    /* http1.h: fx_http_error.status is "502 for responses" */
    {.name = "response bare LF: 502", .raw = "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
     .response = 1,
     .rc = -1, .status = 502},
    {.name = "response obs-fold: 502", .raw = "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
     .response = 1, .rc = -1,
     .status = 502},
    {.name = "response NUL: 502", LIT("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), .response = 1,
     .rc = -1, .status = 502},
};
/* clang-format on */

START_TEST(test_scan_table)
{
    const scan_case *tc = &scan_cases[_i];
    size_t len = tc->len ? tc->len : strlen(tc->raw);
    char *buf = dup_exact(tc->raw, len);
    size_t max_head = tc->no_max_head ? 0 : tc->max_head ? tc->max_head : 32768;
    size_t head_len = 0xdead, skip = 0xdead;
    fx_http_error err = {0, NULL, 0};
    int rc =
        fx_http_scan_head(buf, len, max_head, tc->max_uri, !tc->response, &head_len, &skip, &err);
    ck_assert_msg(rc == tc->rc, "%s: rc %d, want %d (status %d: %s)", tc->name, rc, tc->rc,
                  err.status, err.detail ? err.detail : "-");
    if (rc == 1) {
        size_t want = tc->head_len ? tc->head_len : len - tc->skip;
        ck_assert_msg(head_len == want, "%s: head_len %zu, want %zu", tc->name, head_len, want);
        ck_assert_msg(skip == tc->skip, "%s: skip %zu, want %zu", tc->name, skip, tc->skip);
        ck_assert(skip + head_len <= len);
        ck_assert(memcmp(buf + skip + head_len - 4, "\r\n\r\n", 4) == 0);
    } else if (rc == 0) {
        ck_assert_msg(skip == tc->skip, "%s: skip %zu, want %zu", tc->name, skip, tc->skip);
    } else {
        ck_assert_msg(err.status == tc->status, "%s: status %d (%s), want %d", tc->name, err.status,
                      err.detail ? err.detail : "-", tc->status);
        ck_assert_msg(err.detail && *err.detail, "%s: no detail", tc->name);
        ck_assert_msg(err.offset <= len, "%s: offset %zu past the input", tc->name, err.offset);
    }
    free(buf);
}
END_TEST

/* ==== requests ============================================================ */

typedef struct hdr_expect {
    const char *name;
    const char *value; /* NULL: not checked */
    unsigned flags;
} hdr_expect;

typedef struct req_case {
    const char *name;
    const char *raw;
    int status; /* 0: valid; else the refusal status */
    /* expectations for valid heads */
    const char *method; /* llhttp_method_name() */
    const char *path;
    const char *query;     /* NULL: no '?' */
    const char *host;      /* NULL: "example.com" unless nohost */
    const char *host_name; /* NULL: same as host */
    int nohost;
    int v10; /* HTTP/1.0 */
    int body;
    uint64_t cl;
    int close; /* keep_alive expected 0 */
    int expect;
    int upgrade;
    int absolute;
    const char *rid;
    hdr_expect hdrs[8];
} req_case;

#define BAD(nm, raw_, st)                                                                          \
    {                                                                                              \
        .name = nm, .raw = raw_, .status = st                                                      \
    }
#define H "Host: example.com\r\n"
#define GET_ "GET / HTTP/1.1\r\n" H

/* clang-format off */
static const req_case req_cases[] = {
    /* ---- valid -------------------------------------------------------------- */
    {.name = "minimal GET", .raw = "GET / HTTP/1.1\r\n" H "\r\n", .method = "GET", .path = "/",
     .hdrs = {{"Host", "example.com", FX_HDR_HOST}}},
    {.name = "path and query", .raw = "GET /a/b?x=1&y=2 HTTP/1.1\r\n" H "\r\n", .method = "GET",
     .path = "/a/b", .query = "x=1&y=2"},
    {.name = "empty query", .raw = "GET /a? HTTP/1.1\r\n" H "\r\n", .method = "GET", .path = "/a",
     .query = ""},
    {.name = "query with slashes and dots", .raw = "GET /a?next=/b/../c HTTP/1.1\r\n" H "\r\n",
     .method = "GET", .path = "/a", .query = "next=/b/../c"},
    {.name = "percent-encoded path kept as received", .raw = "GET /a%20b/%41 HTTP/1.1\r\n" H "\r\n",
     .method = "GET", .path = "/a%20b/%41"},
    {.name = "dots that are not dot-segments",
     .raw = "GET /a/..b/.well-known/.../c. HTTP/1.1\r\n" H "\r\n",
     .method = "GET", .path = "/a/..b/.well-known/.../c."},
    {.name = "Host with port", .raw = "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
     .method = "GET",
     .path = "/", .host = "example.com:8080", .host_name = "example.com"},
    {.name = "IPv6 Host", .raw = "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", .method = "GET",
     .path = "/",
     .host = "[::1]:8080", .host_name = "[::1]"},
    {.name = "IPv4 Host", .raw = "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", .method = "GET",
     .path = "/",
     .host = "10.0.0.1"},
    {.name = "Host value OWS trimmed", .raw = "GET / HTTP/1.1\r\nHost:   example.com  \r\n\r\n",
     .method = "GET", .path = "/"},
    {.name = "header name case-insensitive", .raw = "GET / HTTP/1.1\r\nhOsT: example.com\r\n\r\n",
     .method = "GET", .path = "/"},
    {.name = "HTTP/1.0 without Host", .raw = "GET /x HTTP/1.0\r\n\r\n", .method = "GET",
     .path = "/x",
     .nohost = 1, .v10 = 1, .close = 1},
    {.name = "HTTP/1.0 with Host", .raw = "GET /x HTTP/1.0\r\n" H "\r\n", .method = "GET",
     .path = "/x",
     .v10 = 1, .close = 1},
    {.name = "HTTP/1.0 keep-alive", .raw = "GET / HTTP/1.0\r\n" H "Connection: keep-alive\r\n\r\n",
     .method = "GET", .path = "/", .v10 = 1, .hdrs = {{"Connection", "keep-alive", FX_HDR_HOP}}},
    {.name = "HTTP/1.0 Keep-Alive mixed case",
     .raw = "GET / HTTP/1.0\r\n" H "Connection: Keep-Alive\r\n\r\n",
     .method = "GET", .path = "/", .v10 = 1},
    {.name = "HTTP/1.0 keep-alive, close",
     .raw = "GET / HTTP/1.0\r\n" H "Connection: keep-alive, close\r\n\r\n",
     .method = "GET", .path = "/", .v10 = 1, .close = 1},
    {.name = "HTTP/1.1 close", .raw = GET_ "Connection: close\r\n\r\n", .method = "GET",
     .path = "/",
     .close = 1},
    {.name = "HTTP/1.1 Close mixed case", .raw = GET_ "Connection: CLOSE\r\n\r\n", .method = "GET",
     .path = "/", .close = 1},
    {.name = "HTTP/1.1 close in a list", .raw = GET_ "Connection: x-a, close ,keep-alive\r\n\r\n",
     .method = "GET", .path = "/", .close = 1},
    {.name = "HTTP/1.1 close in a second Connection header",
     .raw = GET_ "Connection: keep-alive\r\nConnection: close\r\n\r\n", .method = "GET",
     .path = "/",
     .close = 1},
    {.name = "HTTP/1.1 keep-alive explicit", .raw = GET_ "Connection: keep-alive\r\n\r\n",
     .method = "GET",
     .path = "/"},
    {.name = "POST with Content-Length",
     .raw = "POST /f HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n",
     .method = "POST", .path = "/f", .body = FX_BODY_LENGTH, .cl = 5,
     .hdrs = {{"Content-Length", "5", FX_HDR_FRAMING}}},
    {.name = "Content-Length with OWS",
     .raw = "POST /f HTTP/1.1\r\n" H "Content-Length:  42 \r\n\r\n",
     .method = "POST", .path = "/f", .body = FX_BODY_LENGTH, .cl = 42},
    {.name = "Content-Length 0", .raw = "POST /f HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n",
     .method = "POST", .path = "/f", .body = FX_BODY_NONE, .cl = 0},
    {.name = "Content-Length with leading zeros",
     .raw = "PUT /f HTTP/1.1\r\n" H "Content-Length: 007\r\n\r\n",
     .method = "PUT", .path = "/f", .body = FX_BODY_LENGTH, .cl = 7},
    {.name = "Content-Length large",
     .raw = "PUT /f HTTP/1.1\r\n" H "Content-Length: 10737418240\r\n\r\n",
     .method = "PUT", .path = "/f", .body = FX_BODY_LENGTH, .cl = 10737418240ull},
    {.name = "chunked", .raw = "POST /f HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n",
     .method = "POST", .path = "/f", .body = FX_BODY_CHUNKED,
     .hdrs = {{"Transfer-Encoding", "chunked", FX_HDR_FRAMING}}},
    {.name = "Chunked mixed case",
     .raw = "POST /f HTTP/1.1\r\n" H "Transfer-Encoding: Chunked\r\n\r\n",
     .method = "POST", .path = "/f", .body = FX_BODY_CHUNKED},
    {.name = "GET with a body", .raw = "GET / HTTP/1.1\r\n" H "Content-Length: 3\r\n\r\n",
     .method = "GET",
     .path = "/", .body = FX_BODY_LENGTH, .cl = 3},
    {.name = "Expect: 100-continue",
     .raw = "PUT /f HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 9\r\n\r\n",
     .method = "PUT", .path = "/f", .body = FX_BODY_LENGTH, .cl = 9, .expect = 1,
     .hdrs = {{"Expect", "100-continue", FX_HDR_EXPECT}}},
    {.name = "Expect: 100-Continue mixed case",
     .raw = "PUT /f HTTP/1.1\r\n" H "Expect: 100-Continue\r\nContent-Length: 9\r\n\r\n",
     .method = "PUT", .path = "/f", .body = FX_BODY_LENGTH, .cl = 9, .expect = 1},
    {.name = "Expect ignored in HTTP/1.0",
     .raw = "PUT /f HTTP/1.0\r\n" H "Expect: 100-continue\r\nContent-Length: 9\r\n\r\n",
     .method = "PUT", .path = "/f", .v10 = 1, .close = 1, .body = FX_BODY_LENGTH, .cl = 9,
     .expect = 0},
    {.name = "websocket upgrade",
     .raw = GET_ "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
     .method = "GET", .path = "/", .upgrade = 1,
     .hdrs = {{"Connection", "Upgrade", FX_HDR_HOP},
              {"Upgrade", "websocket", FX_HDR_HOP | FX_HDR_UPGRADE},
              {"Sec-WebSocket-Key", NULL, 0}}},
    {.name = "websocket upgrade, Connection list",
     .raw = GET_ "Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
     .method = "GET", .path = "/", .upgrade = 1},
    {.name = "h2c upgrade is not an upgrade",
     .raw = GET_ "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
     .method = "GET", .path = "/", .upgrade = 0,
     .hdrs = {{"Upgrade", "h2c", FX_HDR_HOP | FX_HDR_UPGRADE}, {"HTTP2-Settings", NULL,
     FX_HDR_HOP}}},
    {.name = "h2c anywhere in the Upgrade list",
     .raw = GET_ "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
     .method = "GET", .path = "/", .upgrade = 0},
    {.name = "Upgrade without Connection: upgrade", .raw = GET_ "Upgrade: websocket\r\n\r\n",
     .method = "GET",
     .path = "/", .upgrade = 0, .hdrs = {{"Upgrade", "websocket", FX_HDR_HOP | FX_HDR_UPGRADE}}},
    {.name = "Upgrade in HTTP/1.0",
     .raw = "GET / HTTP/1.0\r\n" H "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     .method = "GET", .path = "/", .v10 = 1, .close = 1, .upgrade = 0},
    {.name = "absolute-form",
     .raw = "GET http://api.example.com/x/y?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
     .method = "GET", .path = "/x/y", .query = "q=1", .host = "api.example.com", .absolute = 1},
    {.name = "absolute-form with port",
     .raw = "GET http://api.example.com:8080/x HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n",
     .method = "GET", .path = "/x", .host = "api.example.com:8080", .host_name = "api.example.com",
     .absolute = 1},
    {.name = "absolute-form, upper-case scheme",
     .raw = "GET HTTP://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
     .method = "GET", .path = "/x", .host = "api.example.com", .absolute = 1},
    {.name = "absolute-form without path",
     .raw = "GET http://api.example.com HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
     .method = "GET", .path = "/", .host = "api.example.com", .absolute = 1},
    {.name = "absolute-form, HTTP/1.0 without Host",
     .raw = "GET http://api.example.com/x HTTP/1.0\r\n\r\n",
     .method = "GET", .path = "/x", .host = "api.example.com", .v10 = 1, .close = 1, .absolute = 1},
    {.name = "OPTIONS *", .raw = "OPTIONS * HTTP/1.1\r\n" H "\r\n", .method = "OPTIONS",
     .path = "*"},
    {.name = "OPTIONS with a path", .raw = "OPTIONS /x HTTP/1.1\r\n" H "\r\n", .method = "OPTIONS",
     .path = "/x"},
    {.name = "HEAD", .raw = "HEAD /x HTTP/1.1\r\n" H "\r\n", .method = "HEAD", .path = "/x"},
    {.name = "PUT", .raw = "PUT /x HTTP/1.1\r\n" H "Content-Length: 1\r\n\r\n", .method = "PUT",
     .path = "/x",
     .body = FX_BODY_LENGTH, .cl = 1},
    {.name = "PATCH", .raw = "PATCH /x HTTP/1.1\r\n" H "Content-Length: 1\r\n\r\n",
     .method = "PATCH",
     .path = "/x", .body = FX_BODY_LENGTH, .cl = 1},
    {.name = "DELETE", .raw = "DELETE /x/1 HTTP/1.1\r\n" H "\r\n", .method = "DELETE",
     .path = "/x/1"},
    {.name = "hop-by-hop headers",
     .raw = GET_ "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n"
                 "Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Authenticate: Basic\r\nX-App: 1\r\n\r\n",
     .method = "GET", .path = "/",
     .hdrs = {{"Keep-Alive", "timeout=5", FX_HDR_HOP}, {"TE", "trailers", FX_HDR_HOP},
              {"Trailer", "X-T", FX_HDR_HOP}, {"Proxy-Connection", NULL, FX_HDR_HOP},
              {"Proxy-Authorization", NULL, FX_HDR_HOP}, {"Proxy-Authenticate", NULL, FX_HDR_HOP},
              {"X-App", "1", 0}}},
    {.name = "names listed in Connection are hop-by-hop",
     .raw = GET_ "Connection: X-Secret, x-other\r\nX-Secret: s\r\nX-Other: o\r\nX-Kept: k\r\n\r\n",
     .method = "GET", .path = "/",
     .hdrs = {{"Connection", NULL, FX_HDR_HOP}, {"X-Secret", "s", FX_HDR_HOP}, {"X-Other", "o",
     FX_HDR_HOP},
              {"X-Kept", "k", 0}}},
    {.name = "Connection cannot make Host or framing hop-by-hop",
     .raw = "POST / HTTP/1.1\r\n" H "Connection: host, content-length\r\nContent-Length: 2\r\n\r\n",
     .method = "POST", .path = "/", .body = FX_BODY_LENGTH, .cl = 2,
     .hdrs = {{"Host", NULL, FX_HDR_HOST}, {"Content-Length", "2", FX_HDR_FRAMING}}},
    {.name = "X-Forwarded-* and X-Request-Id",
     .raw = GET_ "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"
                 "X-Request-Id: abc-123_x.y:z\r\n\r\n",
     .method = "GET", .path = "/", .rid = "abc-123_x.y:z",
     .hdrs = {{"X-Forwarded-For", "1.2.3.4", FX_HDR_XFF}, {"X-Forwarded-Proto", "https",
     FX_HDR_XFWD},
              {"X-Forwarded-Host", "evil", FX_HDR_XFWD}, {"X-Request-Id", NULL,
     FX_HDR_REQUEST_ID}}},
    {.name = "X-Forwarded-For mixed case", .raw = GET_ "x-forwarded-for: 5.6.7.8\r\n\r\n",
     .method = "GET",
     .path = "/", .hdrs = {{"X-Forwarded-For", "5.6.7.8", FX_HDR_XFF}}},
    {.name = "request id with a space is dropped", .raw = GET_ "X-Request-Id: abc def\r\n\r\n",
     .method = "GET",
     .path = "/", .rid = NULL, .hdrs = {{"X-Request-Id", "abc def", FX_HDR_REQUEST_ID}}},
    {.name = "request id with markup is dropped", .raw = GET_ "X-Request-Id: <script>\r\n\r\n",
     .method = "GET",
     .path = "/", .rid = NULL},
    {.name = "request id with a quote is dropped", .raw = GET_ "X-Request-Id: a\"b\r\n\r\n",
     .method = "GET",
     .path = "/", .rid = NULL},
    {.name = "empty request id is dropped", .raw = GET_ "X-Request-Id:\r\n\r\n", .method = "GET",
     .path = "/",
     .rid = NULL},
    {.name = "request id of 128 chars is kept",
     .raw = GET_ "X-Request-Id: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n\r\n",
     .method = "GET", .path = "/",
     .rid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    {.name = "request id of 129 chars is dropped",
     .raw = GET_ "X-Request-Id: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX\r\n\r\n",
     .method = "GET", .path = "/", .rid = NULL},
    {.name = "empty header value", .raw = GET_ "X-Empty:\r\nX-Next: n\r\n\r\n", .method = "GET",
     .path = "/",
     .hdrs = {{"X-Empty", "", 0}, {"X-Next", "n", 0}}},
    {.name = "value with inner spaces and obs-text", .raw = GET_ "X-A:  a  b \xc3\xa9 \r\n\r\n",
     .method = "GET",
     .path = "/", .hdrs = {{"X-A", "a  b \xc3\xa9", 0}}},
    {.name = "value with HTAB inside", .raw = GET_ "X-A: a\tb\r\n\r\n", .method = "GET",
     .path = "/",
     .hdrs = {{"X-A", "a\tb", 0}}},
    {.name = "token characters in a name", .raw = GET_ "X-!#$%&'*+-.^_`|~: v\r\n\r\n",
     .method = "GET",
     .path = "/", .hdrs = {{"X-!#$%&'*+-.^_`|~", "v", 0}}},

    /* ---- framing: Content-Length --------------------------------------------- */
    BAD("CL and TE", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    BAD("TE and CL", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    BAD("CL 0 and TE",
     "POST / HTTP/1.1\r\n" H "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    BAD("duplicate CL, same value",
     "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    BAD("duplicate CL, different values",
     "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    BAD("CL +5", "POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", 400),
    BAD("CL -5", "POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n", 400),
    BAD("CL with inner space", "POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n", 400),
    BAD("CL hex", "POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 400),
    BAD("CL comma list, same values", "POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", 400),
    BAD("CL comma list", "POST / HTTP/1.1\r\n" H "Content-Length: 5,6\r\n\r\n", 400),
    BAD("CL empty", "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400),
    BAD("CL 19 digits", "POST / HTTP/1.1\r\n" H "Content-Length: 1234567890123456789\r\n\r\n", 400),
    BAD("CL over 2^64", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551617\r\n\r\n",
     400),
    BAD("CL 5.0", "POST / HTTP/1.1\r\n" H "Content-Length: 5.0\r\n\r\n", 400),
    /* ---- framing: Transfer-Encoding ------------------------------------------ */
    BAD("TE gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400),
    BAD("TE chunked, gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n",
     400),
    BAD("TE gzip, chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n",
     400),
    BAD("TE identity", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 400),
    BAD("TE xchunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 400),
    BAD("TE chunkedx", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunkedx\r\n\r\n", 400),
    BAD("TE chunked;x", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;x\r\n\r\n", 400),
    BAD("TE chunked, chunked",
     "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    BAD("TE empty", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400),
    BAD("duplicate TE headers",
     "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    BAD("TE gzip then TE chunked",
     "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 400),
    /* ---- Host ------------------------------------------------------------------ */
    BAD("missing Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400),
    BAD("missing Host, other headers", "GET / HTTP/1.1\r\nX-Host: example.com\r\n\r\n", 400),
    BAD("duplicate Host", "GET / HTTP/1.1\r\n" H H "\r\n", 400),
    BAD("duplicate Host, different values",
     "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 400),
    BAD("duplicate Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    BAD("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    BAD("Host with a space", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400),
    BAD("Host with a slash", "GET / HTTP/1.1\r\nHost: example.com/x\r\n\r\n", 400),
    BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400),
    BAD("Host with a bad port", "GET / HTTP/1.1\r\nHost: example.com:http\r\n\r\n", 400),
    BAD("Host with a long port", "GET / HTTP/1.1\r\nHost: example.com:123456\r\n\r\n", 400),
    BAD("Host with an empty name", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    BAD("Host with an unclosed IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    BAD("Host with junk after the IPv6 literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
    BAD("Host with a comma list", "GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n", 400),
    BAD("absolute-form with userinfo", "GET http://user@example.com/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute-form without authority", "GET http:///x HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute-form with a bad authority", "GET http://exa%mple.com:x/ HTTP/1.1\r\n" H "\r\n",
     400),
    BAD("absolute-form with an invalid Host header",
     "GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    /* ---- request line ------------------------------------------------------------ */
    BAD("HTTP/0.9 request line", "GET /\r\n\r\n", 400),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\n" H "\r\n", 400),
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\n" H "\r\n", 400),
    BAD("HTTP/0.9 version", "GET / HTTP/0.9\r\n" H "\r\n", 400),
    BAD("lower-case version", "GET / http/1.1\r\n" H "\r\n", 400),
    BAD("version HTTP/1.10", "GET / HTTP/1.10\r\n" H "\r\n", 400),
    BAD("version HTTP/1", "GET / HTTP/1\r\n" H "\r\n", 400),
    BAD("double space after method", "GET  / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("double space before version", "GET /  HTTP/1.1\r\n" H "\r\n", 400),
    BAD("trailing space after version", "GET / HTTP/1.1 \r\n" H "\r\n", 400),
    BAD("tab separators", "GET\t/\tHTTP/1.1\r\n" H "\r\n", 400),
    BAD("leading space", " GET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("lower-case method", "get / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("unknown method", "FOO / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target without leading slash", "GET index.html HTTP/1.1\r\n" H "\r\n", 400),
    BAD("asterisk-form with GET", "GET * HTTP/1.1\r\n" H "\r\n", 400),
    BAD("double-slash path with dot-dot", "GET //example.com/../x HTTP/1.1\r\n" H "\r\n", 400),
    BAD("fragment", "GET /a#b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("fragment after the query", "GET /a?x=1#b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("double quote in target", "GET /a\"b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("backslash in target", "GET /a\\..\\b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("DEL in target", "GET /a\x7f HTTP/1.1\r\n" H "\r\n", 400),
    BAD("byte >= 0x80 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400),
    /* ---- dot-segments ----------------------------------------------------------- */
    BAD("dot-dot segment", "GET /a/../b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("dot segment", "GET /./ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("dot segment mid-path", "GET /a/./b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("trailing dot segment", "GET /a/. HTTP/1.1\r\n" H "\r\n", 400),
    BAD("trailing dot-dot segment", "GET /a/.. HTTP/1.1\r\n" H "\r\n", 400),
    BAD("dot-dot before the query", "GET /a/..?x=1 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("encoded dot-dot", "GET /%2e%2e/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("encoded dot, upper case", "GET /a/%2E HTTP/1.1\r\n" H "\r\n", 400),
    BAD("encoded dot-dot, mixed", "GET /a/.%2E/b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("encoded dot-dot, mixed other way", "GET /a/%2e./b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute-form with dot-dot", "GET http://example.com/a/../b HTTP/1.1\r\n" H "\r\n", 400),
    /* ---- methods ---------------------------------------------------------------- */
    BAD("CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
    BAD("TRACE", "TRACE / HTTP/1.1\r\n" H "\r\n", 405),
    /* ---- Expect ----------------------------------------------------------------- */
    BAD("Expect: foo", "PUT / HTTP/1.1\r\n" H "Expect: foo\r\nContent-Length: 1\r\n\r\n", 417),
    BAD("Expect: 100-continue, foo",
     "PUT / HTTP/1.1\r\n" H "Expect: 100-continue, foo\r\nContent-Length: 1\r\n\r\n", 417),
    BAD("Expect: 200-ok", "GET / HTTP/1.1\r\n" H "Expect: 200-ok\r\n\r\n", 417),
    /* ---- header lines ------------------------------------------------------------- */
    BAD("empty header name", "GET / HTTP/1.1\r\n" H ": v\r\n\r\n", 400),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    BAD("tab before colon", "GET / HTTP/1.1\r\n" H "X-A\t: v\r\n\r\n", 400),
    BAD("space inside a name", "GET / HTTP/1.1\r\n" H "X A: v\r\n\r\n", 400),
    BAD("line without colon", "GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n", 400),
    BAD("separator in a name", "GET / HTTP/1.1\r\n" H "X(A): v\r\n\r\n", 400),
    BAD("control char in a value", "GET / HTTP/1.1\r\n" H "X-A: a\x01z\r\n\r\n", 400),
    BAD("ESC in a value", "GET / HTTP/1.1\r\n" H "X-A: a\x1b[31m\r\n\r\n", 400),
    BAD("DEL in a value", "GET / HTTP/1.1\r\n" H "X-A: a\x7fz\r\n\r\n", 400),
    BAD("control char in Host", "GET / HTTP/1.1\r\nHost: exa\x01mple.com\r\n\r\n", 400),
    BAD("obs-fold", "GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400),
    BAD("bare LF in headers", "GET / HTTP/1.1\r\n" H "X-A: a\nX-B: b\r\n\r\n", 400),
    BAD("bare CR in headers", "GET / HTTP/1.1\r\n" H "X-A: a\rX-B: b\r\n\r\n", 400),
    /* ---- upgrade with a body ------------------------------------------------------ */
    BAD("Upgrade with Content-Length",
     GET_ "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n", 400),
    BAD("Upgrade with chunked",
     GET_ "Connection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
};
/* clang-format on */

/* The gateway's path: scan, copy the head out, parse the copy. */
static int run_request(const char *raw, size_t len, fx_arena *a, fx_http_msg *m, fx_http_error *err,
                       char **headp, size_t *head_lenp)
{
    size_t head_len = 0, skip = 0;
    *headp = NULL;
    int rc = fx_http_scan_head(raw, len, 32768, 8192, 1, &head_len, &skip, err);
    if (rc < 0)
        return -1;
    ck_assert_msg(rc == 1, "head incomplete (rc %d)", rc);
    *headp = dup_exact(raw + skip, head_len);
    *head_lenp = head_len;
    return fx_http_parse_request(a, *headp, head_len, m, err);
}

START_TEST(test_request_table)
{
    const req_case *tc = &req_cases[_i];
    size_t len = strlen(tc->raw);
    fx_arena a;
    fx_arena_init(&a, 1024);
    fx_http_msg m;
    fx_http_error err = {0, NULL, 0};
    char *head = NULL;
    size_t hl = 0;
    int rc = run_request(tc->raw, len, &a, &m, &err, &head, &hl);

    if (getenv("FX_TEST_VERBOSE"))
        fprintf(stderr, "request %-50s -> %d %s\n", tc->name, rc ? err.status : 0,
                rc ? err.detail : "");
    if (tc->status) {
        ck_assert_msg(rc == -1, "%s: accepted, want %d", tc->name, tc->status);
        ck_assert_msg(err.status == tc->status, "%s: status %d (%s), want %d", tc->name, err.status,
                      err.detail ? err.detail : "-", tc->status);
        ck_assert_msg(err.detail && *err.detail, "%s: no detail", tc->name);
        ck_assert_msg(err.offset <= len, "%s: offset %zu past the head", tc->name, err.offset);
        goto out;
    }
    ck_assert_msg(rc == 0, "%s: refused with %d (%s at %zu)", tc->name, err.status,
                  err.detail ? err.detail : "-", err.offset);
    ck_assert_uint_eq(hl, len);
    ck_assert_uint_eq(m.head_len, len);
    ck_assert_msg(!strcmp(llhttp_method_name((llhttp_method_t)m.method), tc->method),
                  "%s: method %s, want %s", tc->name, llhttp_method_name((llhttp_method_t)m.method),
                  tc->method);
    ck_assert(slice_is(m.method_s, tc->method));
    ck_assert_msg(slice_is(m.path, tc->path), "%s: path '%.*s', want '%s'", tc->name, (int)m.path.n,
                  m.path.p ? m.path.p : "", tc->path);
    if (tc->query)
        ck_assert_msg(slice_is(m.query, tc->query) || (m.query.p && !*tc->query && m.query.n == 0),
                      "%s: query '%.*s', want '%s'", tc->name, (int)m.query.n,
                      m.query.p ? m.query.p : "(none)", tc->query);
    else
        ck_assert_msg(m.query.p == NULL, "%s: query '%.*s', want none", tc->name, (int)m.query.n,
                      m.query.p);
    if (tc->nohost) {
        ck_assert_ptr_null(m.host.p);
        ck_assert_ptr_null(m.host_name.p);
    } else {
        const char *host = tc->host ? tc->host : "example.com";
        const char *name = tc->host_name ? tc->host_name : host;
        ck_assert_msg(slice_is(m.host, host), "%s: host '%.*s', want '%s'", tc->name, (int)m.host.n,
                      m.host.p ? m.host.p : "", host);
        ck_assert_msg(slice_is(m.host_name, name), "%s: host_name '%.*s', want '%s'", tc->name,
                      (int)m.host_name.n, m.host_name.p ? m.host_name.p : "", name);
        ck_assert(inside(m.host, head, hl) && inside(m.host_name, head, hl));
    }
    ck_assert_int_eq(m.http_minor, tc->v10 ? 0 : 1);
    ck_assert_msg(m.body == tc->body, "%s: body kind %d, want %d", tc->name, m.body, tc->body);
    ck_assert_msg(m.content_length == tc->cl, "%s: content_length %llu, want %llu", tc->name,
                  (unsigned long long)m.content_length, (unsigned long long)tc->cl);
    ck_assert_msg(m.keep_alive == !tc->close, "%s: keep_alive %d", tc->name, m.keep_alive);
    ck_assert_msg(m.expect_continue == tc->expect, "%s: expect_continue %d", tc->name,
                  m.expect_continue);
    ck_assert_msg(m.upgrade == tc->upgrade, "%s: upgrade %d", tc->name, m.upgrade);
    ck_assert_msg(m.absolute_form == tc->absolute, "%s: absolute_form %d", tc->name,
                  m.absolute_form);
    if (tc->rid)
        ck_assert_msg(slice_is(m.request_id, tc->rid), "%s: request_id '%.*s'", tc->name,
                      (int)m.request_id.n, m.request_id.p ? m.request_id.p : "");
    else
        ck_assert_msg(m.request_id.p == NULL, "%s: request_id '%.*s' kept, want dropped", tc->name,
                      (int)m.request_id.n, m.request_id.p);
    /* every slice points into the copied head (absolute-form without a path has a literal "/") */
    ck_assert(inside(m.target, head, hl) && inside(m.method_s, head, hl));
    if (!(tc->absolute && m.path.n == 1))
        ck_assert(inside(m.path, head, hl));
    if (m.query.p)
        ck_assert(inside(m.query, head, hl));
    if (m.request_id.p)
        ck_assert(inside(m.request_id, head, hl));
    for (size_t i = 0; i < m.nheaders; i++) {
        ck_assert(inside(m.headers[i].name, head, hl));
        ck_assert(m.headers[i].value.p != NULL);
        ck_assert(inside(m.headers[i].value, head, hl));
    }
    for (size_t k = 0; k < COUNT(tc->hdrs) && tc->hdrs[k].name; k++) {
        const hdr_expect *he = &tc->hdrs[k];
        const fx_http_header *h = find_header(&m, he->name);
        ck_assert_msg(h != NULL, "%s: header %s missing", tc->name, he->name);
        if (he->value)
            ck_assert_msg(slice_is(h->value, he->value) || (!*he->value && h->value.n == 0),
                          "%s: %s value '%.*s', want '%s'", tc->name, he->name, (int)h->value.n,
                          h->value.p, he->value);
        ck_assert_msg(h->flags == he->flags, "%s: %s flags 0x%x, want 0x%x", tc->name, he->name,
                      h->flags, he->flags);
    }
out:
    free(head);
    fx_arena_free(&a);
}
END_TEST

/* The parser refuses on its own what the scanner lets through, even without a scan. */
START_TEST(test_request_without_scan)
{
    static const struct {
        const char *raw;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400},       /* obs-fold */
        {"GET / HTTP/1.1\r\n" H "X-A: a\nX-B: b\r\n\r\n", 400},     /* bare LF */
        {"GET / HTTP/1.1\r\n" H "\r\nGET / HTTP/1.1\r\n\r\n", 400}, /* bytes after the head */
        {"GET / HTTP/1.1\r\n" H, 400},                              /* incomplete */
        {"", 400},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t len = strlen(cases[i].raw);
        char *head = dup_exact(cases[i].raw, len);
        fx_arena a;
        fx_arena_init(&a, 512);
        fx_http_msg m;
        fx_http_error err = {0, NULL, 0};
        int rc = fx_http_parse_request(&a, head, len, &m, &err);
        ck_assert_msg(rc == -1, "case %zu accepted", i);
        ck_assert_msg(err.status == cases[i].status, "case %zu: status %d (%s)", i, err.status,
                      err.detail);
        free(head);
        fx_arena_free(&a);
    }
}
END_TEST

/* 414 and 431 through the whole pipeline with the default limits. */
START_TEST(test_request_limits)
{
    size_t n = 9000;
    char *raw = malloc(n + 64);
    ck_assert_ptr_nonnull(raw);
    size_t len = 0;
    len += (size_t)sprintf(raw, "GET /");
    memset(raw + len, 'a', n);
    len += n;
    len += (size_t)sprintf(raw + len, " HTTP/1.1\r\nHost: a\r\n\r\n");
    fx_arena a;
    fx_arena_init(&a, 1024);
    fx_http_msg m;
    fx_http_error err = {0, NULL, 0};
    char *head = NULL;
    size_t hl = 0;
    ck_assert_int_eq(run_request(raw, len, &a, &m, &err, &head, &hl), -1);
    ck_assert_int_eq(err.status, 414);
    free(head);
    free(raw);

    /* 40000 bytes of headers against max_head 32768 */
    size_t cap = 41000;
    raw = malloc(cap);
    ck_assert_ptr_nonnull(raw);
    len = (size_t)sprintf(raw, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; len < 40000; i++)
        len += (size_t)snprintf(raw + len, cap - len, "X-H%d: %0100d\r\n", i, i);
    len += (size_t)snprintf(raw + len, cap - len, "\r\n");
    head = NULL;
    ck_assert_int_eq(run_request(raw, len, &a, &m, &err, &head, &hl), -1);
    ck_assert_int_eq(err.status, 431);
    free(head);
    free(raw);
    fx_arena_free(&a);
}
END_TEST

/* More headers than the first table allocation: all of them kept, in order. */
START_TEST(test_many_headers)
{
    enum { N = 300 };
    size_t cap = N * 32 + 64;
    char *raw = malloc(cap);
    ck_assert_ptr_nonnull(raw);
    size_t len = (size_t)snprintf(raw, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(raw + len, cap - len, "X-H%d: v%d\r\n", i, i);
    len += (size_t)snprintf(raw + len, cap - len, "\r\n");
    fx_arena a;
    fx_arena_init(&a, 512);
    fx_http_msg m;
    fx_http_error err = {0, NULL, 0};
    char *head = NULL;
    size_t hl = 0;
    ck_assert_int_eq(run_request(raw, len, &a, &m, &err, &head, &hl), 0);
    ck_assert_uint_eq(m.nheaders, N + 1);
    for (int i = 0; i < N; i++) {
        char name[32], value[32];
        snprintf(name, sizeof(name), "X-H%d", i);
        snprintf(value, sizeof(value), "v%d", i);
        ck_assert(slice_is(m.headers[i + 1].name, name));
        ck_assert(slice_is(m.headers[i + 1].value, value));
    }
    /* the arena can be reused for the next request on the connection */
    free(head);
    fx_arena_reset(&a);
    const char next[] = "GET /n HTTP/1.1\r\nHost: b\r\n\r\n";
    ck_assert_int_eq(run_request(next, sizeof(next) - 1, &a, &m, &err, &head, &hl), 0);
    ck_assert_uint_eq(m.nheaders, 1);
    ck_assert(slice_is(m.path, "/n"));
    free(head);
    free(raw);
    fx_arena_free(&a);
}
END_TEST

/* ==== responses =========================================================== */

typedef struct resp_case {
    const char *name;
    const char *raw;
    int head; /* the request was HEAD (else GET) */
    int req_upgrade;
    int status; /* 0 valid, else refusal status */
    int code;
    int v10;
    int body;
    uint64_t cl;
    int close;
    int upgrade;
    const char *reason;
} resp_case;

/* clang-format off */
static const resp_case resp_cases[] = {
    {.name = "200 with Content-Length", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
     .code = 200,
     .body = FX_BODY_LENGTH, .cl = 5, .reason = "OK"},
    {.name = "200 with Content-Length 0", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
     .code = 200,
     .body = FX_BODY_NONE},
    {.name = "200 chunked", .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     .code = 200,
     .body = FX_BODY_CHUNKED},
    {.name = "200 until EOF", .raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
     .code = 200,
     .body = FX_BODY_EOF, .close = 1},
    {.name = "200 close",
     .raw = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
     .code = 200, .body = FX_BODY_LENGTH, .cl = 1, .close = 1},
    {.name = "HTTP/1.0 200", .raw = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", .code = 200,
     .v10 = 1,
     .body = FX_BODY_LENGTH, .cl = 1, .close = 1},
    {.name = "HTTP/1.0 200 keep-alive",
     .raw = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
     .code = 200, .v10 = 1, .body = FX_BODY_LENGTH, .cl = 1},
    {.name = "404 with a long reason",
     .raw = "HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n",
     .code = 404, .reason = "Not Found Here"},
    {.name = "204 without framing has no body", .raw = "HTTP/1.1 204 No Content\r\n\r\n",
     .code = 204},
    {.name = "204 with Content-Length has no body",
     .raw = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
     .code = 204},
    {.name = "304 with Content-Length has no body",
     .raw = "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
     .code = 304},
    {.name = "304 chunked has no body",
     .raw = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
     .code = 304},
    {.name = "HEAD: Content-Length but no body",
     .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", .head = 1,
     .code = 200},
    {.name = "HEAD: chunked but no body",
     .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .head = 1,
     .code = 200},
    {.name = "HEAD: no framing, no body, keep-alive", .raw = "HTTP/1.1 200 OK\r\n\r\n", .head = 1,
     .code = 200},
    {.name = "100 Continue", .raw = "HTTP/1.1 100 Continue\r\n\r\n", .code = 100},
    {.name = "103 Early Hints", .raw = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
     .code = 103},
    {.name = "101 when asked",
     .raw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     .req_upgrade = 1, .code = 101, .upgrade = 1, .close = 1},
    {.name = "500", .raw = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n",
     .code = 500,
     .body = FX_BODY_LENGTH, .cl = 2},
    BAD("101 not asked",
     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 502),
    BAD("101 without Connection: upgrade",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 502),
    BAD("status 4 digits", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status 2 digits", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status not a number", "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status 099", "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status 600", "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("not HTTP", "ICY 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("HTTP/2", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("HTTP/1.2", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("lower-case version", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("double space", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("leading space", " HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("request instead of response", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 502),
    BAD("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     502),
    BAD("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     502),
    BAD("duplicate CL, same", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
     502),
    BAD("duplicate CL, different",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n", 502),
    BAD("CL comma list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", 502),
    BAD("CL negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 502),
    BAD("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502),
    BAD("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 502),
    BAD("TE chunked, gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 502),
    BAD("TE identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", 502),
    BAD("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
    BAD("duplicate TE",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
    BAD("empty header name", "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", 502),
    BAD("control char in a value", "HTTP/1.1 200 OK\r\nX-A: a\x01z\r\nContent-Length: 0\r\n\r\n",
     502),
};
/* clang-format on */

START_TEST(test_response_table)
{
    const resp_case *tc = &resp_cases[_i];
    size_t len = strlen(tc->raw);
    char *head = dup_exact(tc->raw, len);
    fx_arena a;
    fx_arena_init(&a, 1024);
    fx_http_msg m;
    fx_http_error err = {0, NULL, 0};
    int rc = fx_http_parse_response(&a, head, len, tc->head ? HTTP_HEAD : HTTP_GET, tc->req_upgrade,
                                    &m, &err);
    if (getenv("FX_TEST_VERBOSE"))
        fprintf(stderr, "response %-50s -> %d %s\n", tc->name, rc ? err.status : 0,
                rc ? err.detail : "");
    if (tc->status) {
        ck_assert_msg(rc == -1, "%s: accepted, want %d", tc->name, tc->status);
        ck_assert_msg(err.status == tc->status, "%s: status %d (%s), want %d", tc->name, err.status,
                      err.detail ? err.detail : "-", tc->status);
        ck_assert_msg(err.detail && *err.detail, "%s: no detail", tc->name);
    } else {
        ck_assert_msg(rc == 0, "%s: refused with %d (%s)", tc->name, err.status,
                      err.detail ? err.detail : "-");
        ck_assert_int_eq(m.status, tc->code);
        ck_assert_int_eq(m.http_minor, tc->v10 ? 0 : 1);
        ck_assert_msg(m.body == tc->body, "%s: body kind %d, want %d", tc->name, m.body, tc->body);
        if (tc->body == FX_BODY_LENGTH)
            ck_assert_uint_eq(m.content_length, tc->cl);
        ck_assert_msg(m.keep_alive == !tc->close, "%s: keep_alive %d", tc->name, m.keep_alive);
        ck_assert_msg(m.upgrade == tc->upgrade, "%s: upgrade %d", tc->name, m.upgrade);
        ck_assert_uint_eq(m.head_len, len);
        if (tc->reason)
            ck_assert_msg(slice_is(m.reason, tc->reason), "%s: reason '%.*s'", tc->name,
                          (int)m.reason.n, m.reason.p ? m.reason.p : "");
        for (size_t i = 0; i < m.nheaders; i++)
            ck_assert(inside(m.headers[i].name, head, len) &&
                      inside(m.headers[i].value, head, len));
    }
    free(head);
    fx_arena_free(&a);
}
END_TEST

/* ==== chunked bodies ======================================================== */

typedef struct sink {
    char buf[8192];
    size_t n;
    int fail; /* make the callback fail */
} sink;

static int on_data(void *ctx, const char *p, size_t n)
{
    sink *s = ctx;
    if (s->fail)
        return -1;
    ck_assert_msg(s->n + n <= sizeof(s->buf), "decoded body larger than the test sink");
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

typedef struct chunk_result {
    long rc;         /* last negative code, or 0 */
    size_t consumed; /* bytes the decoder took */
    int done;
    const char *why;
} chunk_result;

/* Feeds `in` in pieces of `piece` bytes (0: all at once) until an error or the end of the body. */
static chunk_result decode(const char *in, size_t len, size_t piece, int is_request, uint64_t limit,
                           sink *s)
{
    fx_http_chunked c;
    chunk_result r = {0, 0, 0, NULL};
    fx_http_chunked_init(&c, is_request, limit, on_data, s);
    char *copy = dup_exact(in, len);
    size_t off = 0;
    while (off < len) {
        size_t n = piece && piece < len - off ? piece : len - off;
        /* each piece in its own buffer: ASan sees reads past it */
        char *p = dup_exact(copy + off, n);
        long got = fx_http_chunked_feed(&c, p, n, &r.why);
        free(p);
        if (got < 0) {
            r.rc = got;
            break;
        }
        ck_assert_msg((size_t)got <= n, "feed consumed %ld of %zu bytes", got, n);
        r.consumed += (size_t)got;
        off += n;
        if ((size_t)got < n) {
            ck_assert_msg(c.done, "feed stopped early (%ld of %zu) without finishing the body", got,
                          n);
            break;
        }
    }
    r.done = c.done;
    free(copy);
    return r;
}

typedef struct chunk_ok_case {
    const char *name;
    const char *raw;
    const char *decoded;
    size_t consumed; /* 0: all of raw */
} chunk_ok_case;

/* clang-format off */
static const chunk_ok_case chunk_ok[] = {
    {"simple", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0},
    {"one chunk", "b\r\nhello world\r\n0\r\n\r\n", "hello world", 0},
    {"upper-case hex", "B\r\nhello world\r\n0\r\n\r\n", "hello world", 0},
    {"leading zeros in size", "005\r\nhello\r\n000\r\n\r\n", "hello", 0},
    {"empty body", "0\r\n\r\n", "", 0},
    {"data with CR LF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 0},
    {"data that looks like framing", "6\r\n0\r\n\r\nX\r\n0\r\n\r\n", "0\r\n\r\nX", 0},
    {"extension", "5;name=value\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"extension without value", "5;flag\r\nhello\r\n0;last\r\n\r\n", "hello", 0},
    {"quoted extension", "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"two extensions", "5;a;b=2\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"quoted, then another extension", "5;a=\"x\";b=2\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"trailer", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", "hello", 0},
    {"two trailers", "5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", "hello", 0},
    {"next request follows", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "hello",
     15},
    {"next bytes follow trailers", "3\r\nabc\r\n0\r\nX-T: v\r\n\r\nNEXT", "abc", 21},
    {"pipelined chunked bodies", "1\r\na\r\n0\r\n\r\n1\r\nb\r\n0\r\n\r\n", "a", 11},
};
/* clang-format on */

START_TEST(test_chunked_ok)
{
    const chunk_ok_case *tc = &chunk_ok[_i];
    size_t len = strlen(tc->raw);
    size_t want_consumed = tc->consumed ? tc->consumed : len;
    static const size_t pieces[] = {0, 1, 2, 3, 7};
    for (int is_request = 0; is_request <= 1; is_request++) {
        for (size_t k = 0; k < COUNT(pieces); k++) {
            sink s = {.n = 0};
            chunk_result r = decode(tc->raw, len, pieces[k], is_request, 0, &s);
            ck_assert_msg(r.rc == 0, "%s (pieces of %zu): error %ld (%s)", tc->name, pieces[k],
                          r.rc, r.why ? r.why : "-");
            ck_assert_msg(r.done, "%s (pieces of %zu): body not finished", tc->name, pieces[k]);
            ck_assert_msg(r.consumed == want_consumed, "%s (pieces of %zu): consumed %zu, want %zu",
                          tc->name, pieces[k], r.consumed, want_consumed);
            ck_assert_msg(s.n == strlen(tc->decoded) && !memcmp(s.buf, tc->decoded, s.n),
                          "%s (pieces of %zu): decoded '%.*s', want '%s'", tc->name, pieces[k],
                          (int)s.n, s.buf, tc->decoded);
        }
    }
}
END_TEST

/* Every split of a body into two feeds gives the same bytes and the same end. */
START_TEST(test_chunked_every_split)
{
    const char raw[] =
        "4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\nNEXT";
    size_t len = sizeof(raw) - 1, body_len = len - 4;
    for (size_t cut = 0; cut <= len; cut++) {
        sink s = {.n = 0};
        fx_http_chunked c;
        const char *why = NULL;
        fx_http_chunked_init(&c, 1, 0, on_data, &s);
        char *a = dup_exact(raw, cut), *b = dup_exact(raw + cut, len - cut);
        long r1 = fx_http_chunked_feed(&c, a, cut, &why);
        ck_assert_msg(r1 >= 0, "cut %zu: first feed %ld (%s)", cut, r1, why);
        long r2 = 0;
        if ((size_t)r1 == cut)
            r2 = fx_http_chunked_feed(&c, b, len - cut, &why);
        ck_assert_msg(r2 >= 0, "cut %zu: second feed %ld (%s)", cut, r2, why);
        ck_assert_msg((size_t)(r1 + r2) == body_len, "cut %zu: consumed %ld, want %zu", cut,
                      r1 + r2, body_len);
        ck_assert(c.done);
        ck_assert_uint_eq(c.total, 23);
        ck_assert_uint_eq(s.n, 23);
        ck_assert(!memcmp(s.buf, "Wikipedia in\r\n\r\nchunks.", 23));
        /* after the end, nothing more is taken */
        ck_assert_int_eq(fx_http_chunked_feed(&c, "X", 1, &why), 0);
        free(a);
        free(b);
    }
}
END_TEST

START_TEST(test_chunked_limit)
{
    const char raw[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    size_t len = sizeof(raw) - 1;
    static const size_t pieces[] = {0, 1, 4};
    for (size_t k = 0; k < COUNT(pieces); k++) {
        sink s = {.n = 0};
        chunk_result r = decode(raw, len, pieces[k], 1, 10, &s);
        ck_assert_msg(r.rc == FX_CHUNKED_TOO_BIG, "pieces of %zu: rc %ld, want FX_CHUNKED_TOO_BIG",
                      pieces[k], r.rc);
        ck_assert_ptr_nonnull(r.why);
        ck_assert_uint_le(s.n, 10); /* nothing over the limit was passed on */
        s.n = 0;
        r = decode(raw, len, pieces[k], 1, 11, &s); /* exactly the limit is fine */
        ck_assert_int_eq(r.rc, 0);
        ck_assert(r.done);
        ck_assert_uint_eq(s.n, 11);
    }
}
END_TEST

START_TEST(test_chunked_callback_fails)
{
    sink s = {.n = 0, .fail = 1};
    chunk_result r = decode("5\r\nhello\r\n0\r\n\r\n", 15, 0, 1, 0, &s);
    ck_assert_int_eq(r.rc, FX_CHUNKED_CB_FAILED);
    ck_assert_ptr_nonnull(r.why);
}
END_TEST

/* Malformed chunked framing: every one must be refused (never decoded as a body). */
/* clang-format off */
static const struct {
    const char *name;
    const char *raw;
    size_t len; /* 0: strlen */
} chunk_bad[] = {
    {"size -1", "-1\r\nhello\r\n0\r\n\r\n", 0},
    {"size 0x10", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n", 0},
    {"size +5", "+5\r\nhello\r\n0\r\n\r\n", 0},
    {"size overflow, 17 hex digits", "FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", 0},
    {"size overflow, 2^64", "10000000000000000\r\nhello\r\n0\r\n\r\n", 0},
    {"size not hex", "g\r\nhello\r\n0\r\n\r\n", 0},
    {"empty size", "\r\nhello\r\n0\r\n\r\n", 0},
    {"space before size", " 5\r\nhello\r\n0\r\n\r\n", 0},
    {"tab before size", "\t5\r\nhello\r\n0\r\n\r\n", 0},
    {"space after size", "5 \r\nhello\r\n0\r\n\r\n", 0},
    {"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 0},
    {"data shorter than size", "5\r\nhell\r\n0\r\n\r\n", 0},
    {"bare LF after size line", "5\nhello\r\n0\r\n\r\n", 0},
    {"bare CR after size line", "5\rhello\r\n0\r\n\r\n", 0},
    {"bare LF after data", "5\r\nhello\n0\r\n\r\n", 0},
    {"bare CR after data", "5\r\nhello\r0\r\n\r\n", 0},
    {"bare LF after last chunk", "5\r\nhello\r\n0\n\r\n", 0},
    {"bare LF ending the body", "5\r\nhello\r\n0\r\n\n", 0},
    {"bare LF ending a trailer", "5\r\nhello\r\n0\r\nX-T: v\n\r\n", 0},
    {"obs-fold in a trailer", "5\r\nhello\r\n0\r\nX-T: v\r\n w\r\n\r\n", 0},
    {"trailer without colon", "5\r\nhello\r\n0\r\nbogus\r\n\r\n", 0},
    {"empty extension name", "5;=x\r\nhello\r\n0\r\n\r\n", 0},
    {"empty extension value", "5;a=\r\nhello\r\n0\r\n\r\n", 0},
    {"empty extension", "5;;\r\nhello\r\n0\r\n\r\n", 0},
    {"bare LF in an extension", "5;a=b\nhello\r\n0\r\n\r\n", 0},
    {"NUL in size line", "5\0\r\nhello\r\n0\r\n\r\n", 16},
};
/* clang-format on */

static size_t chunk_bad_len(size_t i)
{
    return chunk_bad[i].len ? chunk_bad[i].len : strlen(chunk_bad[i].raw);
}

START_TEST(test_chunked_bad)
{
    size_t len = chunk_bad_len((size_t)_i);
    const char *raw = chunk_bad[_i].raw;
    static const size_t pieces[] = {0, 1};
    for (int is_request = 0; is_request <= 1; is_request++) {
        for (size_t k = 0; k < COUNT(pieces); k++) {
            sink s = {.n = 0};
            chunk_result r = decode(raw, len, pieces[k], is_request, 0, &s);
            ck_assert_msg(r.rc < 0,
                          "%s (%s, pieces of %zu): accepted — consumed %zu of %zu bytes, done=%d, "
                          "decoded %zu bytes '%.*s'",
                          chunk_bad[_i].name, is_request ? "request" : "response", pieces[k],
                          r.consumed, len, r.done, s.n, (int)s.n, s.buf);
            ck_assert_msg(r.rc == FX_CHUNKED_ERROR, "%s: rc %ld, want FX_CHUNKED_ERROR",
                          chunk_bad[_i].name, r.rc);
            ck_assert_ptr_nonnull(r.why);
        }
    }
}
END_TEST

/* ==== small tables ============================================================ */

START_TEST(test_status_text_and_idempotent)
{
    ck_assert_str_eq(fx_http_status_text(404), "Not Found");
    ck_assert_str_eq(fx_http_status_text(431), "Request Header Fields Too Large");
    ck_assert_str_eq(fx_http_status_text(502), "Bad Gateway");
    ck_assert_str_eq(fx_http_status_text(299), "Unknown");
    static const int codes[] = {400, 401, 403, 404, 405, 408, 413, 414, 417, 431, 502, 503, 504};
    for (size_t i = 0; i < COUNT(codes); i++)
        ck_assert_str_ne(fx_http_status_text(codes[i]), "Unknown");
    ck_assert(fx_http_method_idempotent(HTTP_GET));
    ck_assert(fx_http_method_idempotent(HTTP_HEAD));
    ck_assert(fx_http_method_idempotent(HTTP_PUT));
    ck_assert(fx_http_method_idempotent(HTTP_DELETE));
    ck_assert(fx_http_method_idempotent(HTTP_OPTIONS));
    ck_assert(!fx_http_method_idempotent(HTTP_POST));
    ck_assert(!fx_http_method_idempotent(HTTP_PATCH));
}
END_TEST

static Suite *http1_suite(void)
{
    Suite *s = suite_create("http1");
    TCase *tc = tcase_create("scan");
    tcase_add_loop_test(tc, test_scan_table, 0, (int)COUNT(scan_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("request");
    tcase_add_loop_test(tc, test_request_table, 0, (int)COUNT(req_cases));
    tcase_add_test(tc, test_request_without_scan);
    tcase_add_test(tc, test_request_limits);
    tcase_add_test(tc, test_many_headers);
    suite_add_tcase(s, tc);

    tc = tcase_create("response");
    tcase_add_loop_test(tc, test_response_table, 0, (int)COUNT(resp_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("chunked");
    tcase_add_loop_test(tc, test_chunked_ok, 0, (int)COUNT(chunk_ok));
    tcase_add_test(tc, test_chunked_every_split);
    tcase_add_test(tc, test_chunked_limit);
    tcase_add_test(tc, test_chunked_callback_fails);
    tcase_add_loop_test(tc, test_chunked_bad, 0, (int)COUNT(chunk_bad));
    suite_add_tcase(s, tc);

    tc = tcase_create("tables");
    tcase_add_test(tc, test_status_text_and_idempotent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http1_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

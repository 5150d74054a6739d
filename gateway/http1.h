/*
 * http1.h — the strict HTTP/1.1 codec (requests from clients, responses
 * from upstreams), built on llhttp plus the checks llhttp does not make.
 *
 * Types first. A message head is parsed in one piece: the caller finds the
 * end of the head with fx_http_scan_head() (which also makes the raw
 * line-ending checks), copies it into the request arena, and parses that
 * copy; every fx_slice in the result points into the copy. Bodies are
 * then decoded incrementally: Content-Length bodies are only counted by
 * the caller, chunked ones go through fx_http_body_feed() (llhttp).
 */
#ifndef FX_HTTP1_H
#define FX_HTTP1_H

#include <stdint.h>

#include "arena.h"
#include "llhttp.h"
#include "slice.h"

/* Header flags, set while parsing: what the proxy must do with the header. */
enum {
    FX_HDR_HOP = 1u << 0,         /* hop-by-hop (RFC 9110 §7.6.1) or named in Connection: drop */
    FX_HDR_FRAMING = 1u << 1,     /* Content-Length / Transfer-Encoding: the gateway sets its own */
    FX_HDR_HOST = 1u << 2,
    FX_HDR_EXPECT = 1u << 3,
    FX_HDR_XFF = 1u << 4,         /* X-Forwarded-For: appended to */
    FX_HDR_XFWD = 1u << 5,        /* X-Forwarded-Proto / -Host: replaced */
    FX_HDR_REQUEST_ID = 1u << 6,
    FX_HDR_UPGRADE = 1u << 7,
};

typedef struct fx_http_header {
    fx_slice name;
    fx_slice value;
    unsigned flags;
} fx_http_header;

enum fx_body_kind {
    FX_BODY_NONE = 0,
    FX_BODY_LENGTH,               /* Content-Length */
    FX_BODY_CHUNKED,              /* Transfer-Encoding: chunked */
    FX_BODY_EOF,                  /* responses only: until the upstream closes */
};

typedef struct fx_http_msg {
    /* request line */
    int method;                   /* llhttp_method_t */
    fx_slice method_s;
    fx_slice target;              /* as received */
    fx_slice path;                /* origin path, without query (absolute-form: the path part) */
    fx_slice query;               /* after '?', without it; p NULL when absent */
    fx_slice host;                /* Host, or the absolute-form authority; with port */
    fx_slice host_name;           /* host without port, for routing */
    /* status line (responses) */
    int status;
    fx_slice reason;
    int http_minor;               /* 0 or 1 (major is always 1) */

    fx_http_header *headers;
    size_t nheaders;

    int body;                     /* enum fx_body_kind */
    uint64_t content_length;
    unsigned keep_alive : 1;      /* persistent connection per RFC 9112 §9.3 */
    unsigned expect_continue : 1;
    unsigned upgrade : 1;         /* request asks for a protocol switch (not h2c) */
    unsigned absolute_form : 1;
    fx_slice request_id;          /* client's X-Request-Id when acceptable */
    size_t head_len;              /* bytes of the head including the final CRLF */
} fx_http_msg;

/* Why a message was refused: the status to answer and a message for a person. */
typedef struct fx_http_error {
    int status;                   /* 400, 405, 414, 417, 431, 501; 502 for responses */
    const char *detail;           /* static string */
    size_t offset;                /* byte offset in the head where it went wrong */
} fx_http_error;

/*
 * Scans buf[0..len) for the end of a message head ("\r\n\r\n"), checking
 * every byte seen on the way: each LF preceded by CR, each CR followed by
 * LF, no NUL, no obs-fold (CRLF followed by SP/HTAB), request target no
 * longer than max_uri (0 = no check; requests only). Returns 1 with
 * *head_len set when the head is complete, 0 when more bytes are needed
 * (and len < max_head), -1 with *err set on a violation or when max_head
 * bytes hold no complete head (431). Leading empty lines (CRLF) before a
 * request line are counted in *skip and must be discarded by the caller.
 */
int fx_http_scan_head(const char *buf, size_t len, size_t max_head, size_t max_uri, int is_request,
                      size_t *head_len, size_t *skip, fx_http_error *err);

/*
 * Parses a complete request head (from fx_http_scan_head) that stays alive
 * for as long as `msg` is used. Headers are allocated from `arena`.
 * Returns 0, or -1 with *err filled (the request must be refused and the
 * connection closed).
 */
int fx_http_parse_request(fx_arena *arena, const char *head, size_t len, fx_http_msg *msg,
                          fx_http_error *err);

/*
 * Parses a complete response head. `req_method` decides whether a body
 * follows (HEAD), `req_upgrade` whether 101 is acceptable. Returns 0, or
 * -1 with *err (status 502).
 */
int fx_http_parse_response(fx_arena *arena, const char *head, size_t len, int req_method,
                           int req_upgrade, fx_http_msg *msg, fx_http_error *err);

/* --- chunked body decoding (llhttp after the head) ----------------------- */

typedef int (*fx_http_body_cb)(void *ctx, const char *p, size_t n);

typedef struct fx_http_chunked {
    llhttp_t parser;
    fx_http_body_cb on_data;
    void *ctx;
    uint64_t total;               /* decoded body bytes so far */
    uint64_t limit;               /* 0 = none; over it: FX_CHUNKED_TOO_BIG */
    int done;
    int bad_trailer;
    int bad_ext;
    size_t ext_len;               /* bytes of the chunk extension name/value being read */
    const char *cur;              /* the piece being fed (for trailer checks) */
    char tail[2];                 /* the last two bytes consumed: the body must end in CRLF */
} fx_http_chunked;

enum { FX_CHUNKED_ERROR = -1, FX_CHUNKED_TOO_BIG = -2, FX_CHUNKED_CB_FAILED = -3 };

/* Prepares decoding of a chunked body (request or response). */
void fx_http_chunked_init(fx_http_chunked *c, int is_request, uint64_t limit, fx_http_body_cb cb,
                          void *ctx);
/*
 * Feeds encoded bytes; calls on_data for each decoded piece. Returns the
 * number of bytes consumed (less than n only when the body ended: the rest
 * belongs to the next message), or a negative FX_CHUNKED_* code.
 */
long fx_http_chunked_feed(fx_http_chunked *c, const char *p, size_t n, const char **why);

/* Name of a status code ("Not Found"); "Unknown" when unknown. */
const char *fx_http_status_text(int status);

/* Whether the method is idempotent (RFC 9110 §9.2.2). */
int fx_http_method_idempotent(int method);

/* Dot-segments ("/../", "%2e%2e", "..;x") or encoded slashes ("%2f", "%5c") in a path (without
 * its query): the edge refuses such a request (400); the decision API answers "bad_path". */
int fx_http_path_has_dot_segment(fx_slice path);

/* Host = uri-host [ ":" port ] → the host without its port (an IP literal keeps its brackets),
 * as the router wants it. 0, or -1 when it is not a valid Host value. */
int fx_http_split_host(fx_slice host, fx_slice *name);

/* The first header named `name` (any case), or NULL; *count (if not NULL) gets how many there are. */
const fx_http_header *fx_http_find_header(const fx_http_msg *m, const char *name, int *count);

#endif

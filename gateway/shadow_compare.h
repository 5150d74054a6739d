/*
 * shadow_compare.h — is the shadow upstream's answer the same as the
 * primary's? The comparison behind `routes[].shadow` (issue 7): status,
 * headers and body, each only when `shadow.compare` lists it, with
 * `shadow.ignore` taking JSON paths and header names out.
 *
 * Pure functions of their inputs (jansson parses JSON bodies): no libevent,
 * callable from any thread. The shadow exchange (shadow.c) calls
 * fx_shadow_compare once both answers are in.
 */
#ifndef FX_SHADOW_COMPARE_H
#define FX_SHADOW_COMPARE_H

#include <stddef.h>

#include "config.h"
#include "http1.h"
#include "slice.h"

/* One answer as the comparison sees it. headers may be NULL when nheaders is 0. */
typedef struct fx_shadow_answer {
    int status;
    const fx_http_header *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
} fx_shadow_answer;

typedef struct fx_shadow_diff {
    unsigned kinds;        /* FX_SHADOW_STATUS | FX_SHADOW_HEADERS | FX_SHADOW_BODY that differ */
    char summary[400];     /* the first difference of each kind, for people: "status 200 != 500; ..." */
} fx_shadow_diff;

/*
 * Compares the parts `compare` names (FX_SHADOW_* bits) of two answers.
 *
 * - status: equal codes.
 * - headers: every header name present on either side (case ignored), with
 *   its values in order, except the names in `ignore` and those that say
 *   nothing about the answer: hop-by-hop and framing headers (Connection,
 *   Keep-Alive, Transfer-Encoding, Content-Length, TE, Trailer, Upgrade,
 *   Proxy-*), Date, Server and X-Request-Id.
 * - body: when both answers are JSON (Content-Type application/json or
 *   +json, and the body parses), semantically: object key order does not
 *   count, numbers compare by value (1 and 1.0 are equal), and the values at
 *   the `ignore` JSON paths ($.a.b, $.items[*].etag, $.*.x) are left out
 *   (missing on one side counts as equal there too). Otherwise byte for
 *   byte.
 *
 * `ignore` holds JSON paths (starting with '$', as config.c validated them)
 * and lower-cased header names. Returns the kinds that differ (0: the same)
 * and fills *diff.
 */
unsigned fx_shadow_compare(unsigned compare, char *const *ignore, size_t nignore, const fx_shadow_answer *primary,
                           const fx_shadow_answer *shadow, fx_shadow_diff *diff);

#endif

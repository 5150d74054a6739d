/*
 * shadow.h — shadow traffic (`routes[].shadow`, issue 7): a copy of a
 * sampled request goes to a second upstream, its answer is compared with the
 * primary's (shadow_compare.h), and differences are counted and kept.
 *
 * Types first. A shadow exchange belongs to the WORKER, not to the client
 * connection: the client may be gone long before the shadow answers, and
 * the client never waits for the shadow (the copy is sent and read from the
 * event loop; nothing in the primary's path waits on it). The proxy starts
 * an exchange when it forwards a request, feeds it the primary's answer as
 * that streams to the client, and lets go of it when the answer is complete
 * or failed. The exchange compares once both answers are in, and frees
 * itself.
 *
 * Counters and the first FX_SHADOW_MAX_PAIRS mismatching pairs are kept per
 * worker and per route NAME (fx_shadow_route): the worker is their only
 * writer (relaxed atomic loads and stores, like stats.h); the admin sums
 * every worker's. The per-worker mutex is taken by the admin and by the
 * worker only when it adds a route cell or a pair: never for a request that
 * is not shadowed.
 */
#ifndef FX_SHADOW_H
#define FX_SHADOW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "http1.h"
#include "server.h"

struct evbuffer;

#define FX_SHADOW_MAX_PAIRS 20                   /* mismatching pairs kept per route (the first ones) */
#define FX_SHADOW_MAX_BODY (1024 * 1024)         /* answer bodies captured for the comparison */
#define FX_SHADOW_MAX_REQUEST_BODY (64 * 1024)   /* a request with a larger body is not shadowed */
#define FX_SHADOW_MAX_LIVE 256                   /* exchanges in flight per worker: a slow shadow cannot
                                                    make the gateway hold more; over it, requests are skipped */

/* ficus_shadow_errors_total{kind} */
enum fx_shadow_error_kind {
    FX_SHADOW_ERR_CONNECT = 0,    /* refused, unreachable, or upstreams.connect_timeout */
    FX_SHADOW_ERR_TIMEOUT,        /* no answer within upstreams.timeout */
    FX_SHADOW_ERR_RESET,          /* closed or reset before the answer was complete */
    FX_SHADOW_ERR_MALFORMED,      /* an answer that is not valid HTTP/1.1 */
    FX_SHADOW_NERRORS
};
extern const char *const fx_shadow_error_names[FX_SHADOW_NERRORS];

/* ficus_shadow_mismatches_total{kind}: index 0 status, 1 headers, 2 body (FX_SHADOW_* bit order). */
extern const char *const fx_shadow_kind_names[3];

/* A mismatching pair, as GET /admin/shadow/{route} shows it. */
typedef struct fx_shadow_pair {
    struct timespec time;         /* CLOCK_REALTIME when the request started */
    char request_id[33];
    char method[16];
    char path[256];               /* truncated */
    int primary_status, shadow_status;
    unsigned kinds;               /* FX_SHADOW_* bits that differ */
    char summary[400];
} fx_shadow_pair;

/* One route of one worker, by name. */
typedef struct fx_shadow_route {
    struct fx_shadow_route *next;
    char *name;
    atomic_ulong requests;        /* copies sent (or tried) to the shadow upstream */
    atomic_ulong skipped;         /* sampled but not shadowed: the body was too large or not whole yet, or
                                     FX_SHADOW_MAX_LIVE copies were already out */
    atomic_ulong body_too_large;  /* an answer over FX_SHADOW_MAX_BODY: bodies were not compared */
    atomic_ulong mismatches[3];
    atomic_ulong compared;        /* both answers were in and were compared */
    atomic_ulong mismatched;      /* of those, the ones that differed in any compared part */
    atomic_ulong errors[FX_SHADOW_NERRORS];
    fx_shadow_pair pairs[FX_SHADOW_MAX_PAIRS]; /* under `lock` */
    unsigned npairs;
} fx_shadow_route;

typedef struct fx_shadow_exchange fx_shadow_exchange;

typedef struct fx_shadow_worker {
    pthread_mutex_t lock;         /* the list of routes and their pairs (admin ↔ worker) */
    fx_shadow_route *routes;
    fx_shadow_exchange *live;     /* exchanges in flight (worker only) */
    unsigned nlive;
} fx_shadow_worker;

/* --- the worker side ---------------------------------------------------------------------- */

/* A new worker's state, or NULL when out of memory. */
fx_shadow_worker *fx_shadow_worker_new(void);
/* A reload: drops the cells of routes that are gone or no longer shadowed. */
void fx_shadow_bind(fx_shadow_worker *sw, const fx_config *cfg);
/* The worker loop ended: abandons every exchange in flight (their connections close). */
void fx_shadow_close_all(fx_shadow_worker *sw);
void fx_shadow_worker_free(fx_shadow_worker *sw);

/*
 * The proxy forwards a request of route r (routed on cfg): decides whether
 * it is shadowed (method in shadow.methods, then `percent` sampled with the
 * worker's rng) and, if so, sends a copy of `head` and `body` (all of the
 * request's body, or body_whole is 0 and the request is counted as skipped)
 * to the shadow upstream. Returns the exchange, which the proxy must end
 * with fx_shadow_primary_done or _abandon, or NULL (not shadowed).
 */
fx_shadow_exchange *fx_shadow_start(fx_worker *w, fx_config *cfg, const fx_route_conf *r, const fx_http_msg *req,
                                    const char *head, size_t head_len, struct evbuffer *body, int body_whole,
                                    fx_slice request_id);

/* The primary's answer as it streams to the client: its head (copied), then its body bytes. */
void fx_shadow_primary_head(fx_shadow_exchange *x, const fx_http_msg *resp);
void fx_shadow_primary_body(fx_shadow_exchange *x, const char *p, size_t n);
/* The first n bytes of src, without consuming them. */
void fx_shadow_primary_body_buf(fx_shadow_exchange *x, struct evbuffer *src, size_t n);
/* The primary's answer is complete; the proxy forgets x. */
void fx_shadow_primary_done(fx_shadow_exchange *x);
/* The primary failed or its connection went away: nothing to compare; the proxy forgets x. */
void fx_shadow_primary_abandon(fx_shadow_exchange *x);

/* --- the admin side ---------------------------------------------------------------------- */

/* A route's figures summed over workers, with up to FX_SHADOW_MAX_PAIRS pairs, oldest first. */
typedef struct fx_shadow_sum {
    unsigned long requests, skipped, body_too_large;
    unsigned long mismatches[3];
    unsigned long compared, mismatched;
    unsigned long errors[FX_SHADOW_NERRORS];
    fx_shadow_pair pairs[FX_SHADOW_MAX_PAIRS];
    unsigned npairs;
} fx_shadow_sum;

/* Sums route `name` over the workers (any thread; takes each worker's lock). */
void fx_shadow_collect(fx_server *s, const char *name, fx_shadow_sum *out);

#endif

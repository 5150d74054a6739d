/*
 * stats.h — per-route and per-upstream request metrics: counters since
 * start (ficus_requests_total, ficus_request_duration_seconds,
 * ficus_upstream_errors_total) and the last minute (requests/s, share of
 * 5xx, p99) that /admin/routes and /admin/upstreams show.
 *
 * Types first. Each worker owns one fx_stats_worker and is its only
 * writer: a request ends with one fx_stats_record() that touches only
 * this worker's cells, with plain (relaxed atomic) loads and stores — no
 * lock, no read-modify-write another thread contends on. The admin (main
 * thread) reads every worker's cells and sums them (fx_stats_collect).
 *
 * Cells are kept by NAME, not by config index: a (route, upstream) pair and
 * an upstream keep their counts across a reload that keeps the names, and
 * are dropped by the reload that removes the route or the upstream. A cell
 * is allocated the first time a request of its pair ends in this worker,
 * so routes without traffic cost nothing.
 *
 * The last minute is a ring of 60 one-second buckets per cell, each with a
 * latency histogram of log-spaced bins (4 per octave from 32 µs): a p99
 * read from the summed bins is within ±9.1% of the latency of the request
 * at that rank (2^(1/8) - 1: the estimate is the geometric middle of the
 * bin that holds it), for latencies from 32 µs to 134 s.
 */
#ifndef FX_STATS_H
#define FX_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "retry.h"

/* --- latency bins of the last-minute ring --------------------------------------- */

#define FX_STATS_WINDOW 60            /* seconds (buckets) in the ring */
#define FX_STATS_LAT_MIN_US 32        /* bin 0 holds [0, 32 µs) */
#define FX_STATS_LAT_PER_OCTAVE 4
#define FX_STATS_LAT_OCTAVES 22       /* 32 µs · 2^22 = 134 s */
/* bin 0: below 32 µs; bins 1..88: 4 per octave; bin 89: 134 s and more */
#define FX_STATS_LAT_BINS (2 + FX_STATS_LAT_PER_OCTAVE * FX_STATS_LAT_OCTAVES)

/* ficus_request_duration_seconds buckets (seconds; then +Inf) */
#define FX_STATS_DUR_BOUNDS 15
extern const double fx_stats_dur_bounds[FX_STATS_DUR_BOUNDS];

/* ficus_requests_total{code}: codes 100-599 (the only ones a response can carry) */
#define FX_STATS_CODE_MIN 100
#define FX_STATS_NCODES 500

/* ficus_upstream_errors_total{kind}: the proxy's `upstream_error` values that are the
 * upstream's doing (client_stalled and event_timeout are not); an unknown value is "other". */
enum fx_stats_error_kind {
    FX_STATS_ERR_CONNECT = 0,     /* connect refused or failed, no pool */
    FX_STATS_ERR_CONNECT_TIMEOUT, /* upstreams.connect_timeout */
    FX_STATS_ERR_RESET,           /* closed or reset before the response was complete */
    FX_STATS_ERR_TIMEOUT,         /* upstreams.timeout waiting for it */
    FX_STATS_ERR_MALFORMED,       /* a response head or body that is not valid HTTP/1.1 */
    FX_STATS_ERR_INTERNAL,        /* the gateway ran out of memory handling the response */
    FX_STATS_ERR_OVERLOADED,      /* the circuit breaker refused it (max_pending, max_connections) */
    FX_STATS_ERR_TLS,             /* the TLS handshake failed (certificate not verified, no common version...) */
    FX_STATS_ERR_OTHER,
    FX_STATS_NKINDS
};
extern const char *const fx_stats_error_kind_names[FX_STATS_NKINDS];

/* The `route` and `upstream` label of requests that matched no route or were not forwarded. */
#define FX_STATS_NONE "(none)"

/* One second of one cell. `stamp` is the second + 1 it holds (0: being reset); a reader
 * that sees the stamp change while it reads skips the bucket (seqlock). */
typedef struct fx_stats_second {
    atomic_uint_least64_t stamp;
    atomic_uint requests;
    atomic_uint errors;           /* 5xx sent to the client */
    atomic_uint lat[FX_STATS_LAT_BINS];
} fx_stats_second;

/* A (route, upstream) pair in one worker. */
typedef struct fx_stats_side {
    struct fx_stats_side *_Atomic next;
    char *route;                  /* NULL: no route matched */
    char *upstream;               /* NULL: answered without forwarding (404, 401, 403, 413, ...) */
    atomic_ulong codes[FX_STATS_NCODES];
    atomic_ulong dur[FX_STATS_DUR_BOUNDS + 1]; /* not cumulative; the last is over the last bound */
    atomic_ulong dur_sum_us;
    atomic_ulong fallbacks[FX_RETRY_NREASONS]; /* ended on the route's fallback (this upstream), by reason */
    fx_stats_second ring[FX_STATS_WINDOW];
} fx_stats_side;

/* An upstream in one worker: every request forwarded to it, whatever its route. */
typedef struct fx_stats_upstream {
    struct fx_stats_upstream *_Atomic next;
    char *name;
    atomic_ulong requests, errors;
    atomic_ulong kinds[FX_STATS_NKINDS];
    atomic_ulong retries[FX_RETRY_NREASONS]; /* ficus_retries_total, by reason */
    atomic_ulong budget_exhausted; /* retries the budget refused */
    fx_retry_budget budget;       /* this worker's retry budget for the upstream (read by the worker only) */
    fx_stats_second ring[FX_STATS_WINDOW];
} fx_stats_upstream;

/* Per route of the bound config: the pairs a request of it can end in (its upstream, each
 * side of its split, its fallback, and -1: not forwarded), looked up by a short scan. */
typedef struct fx_stats_slot {
    int upstream;                 /* index into cfg->upstreams, -1: not forwarded */
    fx_stats_side *side;          /* NULL until a request of this pair ends here */
} fx_stats_slot;

typedef struct fx_stats_route_map {
    fx_stats_slot *slots;
    size_t nslots;
} fx_stats_route_map;

typedef struct fx_stats_worker {
    int inited;
    /* Held by the worker while it unlinks and frees cells (fx_stats_bind), and by the
     * admin while it reads them; never taken on the request path (new cells are pushed
     * at the head of the lists without it). */
    pthread_mutex_t lock;
    _Atomic(fx_stats_side *) sides;
    _Atomic(fx_stats_upstream *) upstreams;
    const fx_config *cfg;         /* what the maps index (the worker holds its reference); NULL: unbound */
    fx_stats_route_map *routes;   /* [cfg->nroutes] */
    fx_stats_upstream **ups;      /* [cfg->nupstreams], NULL until used */
    fx_stats_side *none;          /* no route matched; NULL until used */
    uint64_t started_us;          /* CLOCK_MONOTONIC at init: the window of a younger process is shorter */
    atomic_ulong dropped;         /* requests not counted: their route or upstream was removed by a
                                     reload while they ran, or a cell could not be allocated */
} fx_stats_worker;

/* What fx_stats_record needs of a request that ended. */
typedef struct fx_stats_req {
    const fx_config *cfg;         /* the snapshot it was routed on (NULL only with route -1) */
    int route;                    /* index into cfg->routes, -1: no route matched */
    int upstream;                 /* index into cfg->upstreams, -1: not forwarded */
    int status;                   /* sent to the client */
    uint64_t duration_us;         /* first byte of the head to the response complete */
    const char *upstream_error;   /* the access log's upstream_error, or NULL */
    int fell_back;                /* it ended on its route's fallback (`upstream`), ... */
    int fallback_reason;          /* ... because of this (enum fx_retry_reason) */
} fx_stats_req;

/* --- the worker side ---------------------------------------------------------------- */

/* Worker setup (before its thread runs): binds to cfg. 0, or -1 when out of memory. */
int fx_stats_init(fx_stats_worker *sw, const fx_config *cfg, uint64_t now_us);
/*
 * Worker thread, at a reload, before the worker adopts cfg: keeps the cells whose names
 * cfg still has and frees the others. -1 when out of memory: then the worker is unbound
 * and its requests are counted as dropped until the next reload binds it.
 */
int fx_stats_bind(fx_stats_worker *sw, const fx_config *cfg);
/* Worker thread: one request ended. now_us: CLOCK_MONOTONIC (tests pass their own clock). */
void fx_stats_record(fx_stats_worker *sw, const fx_stats_req *r, uint64_t now_us);
/* Worker thread: a request's first attempt goes to upstream ui of cfg (the retry budget counts it). */
void fx_stats_upstream_request(fx_stats_worker *sw, const fx_config *cfg, int ui, uint64_t now_us);
/* Worker thread: may a request to upstream ui of cfg be retried (reason: enum fx_retry_reason)? 1: yes,
 * counted as a retry; 0: the upstream's retry budget is spent (counted as such) or no cell could be had. */
int fx_stats_retry(fx_stats_worker *sw, const fx_config *cfg, int ui, int reason, uint64_t now_us);
/* After the worker thread is gone. A zeroed, never initialised struct is fine. */
void fx_stats_free(fx_stats_worker *sw);

/* The kind a proxy `upstream_error` value is counted as, or -1 when it is not counted. */
int fx_stats_error_kind(const char *upstream_error);

/* --- the admin side: sums over workers ---------------------------------------------- */

/* A last-minute sum. */
typedef struct fx_stats_window {
    uint64_t requests, errors;
    uint64_t lat[FX_STATS_LAT_BINS];
} fx_stats_window;

typedef struct fx_stats_side_sum {
    char *route, *upstream;       /* copies; NULL as in fx_stats_side */
    uint64_t codes[FX_STATS_NCODES];
    uint64_t requests, errors;    /* since start: all codes, 5xx */
    uint64_t dur[FX_STATS_DUR_BOUNDS + 1];
    uint64_t dur_sum_us;
    uint64_t fallbacks[FX_RETRY_NREASONS];
    fx_stats_window last;
} fx_stats_side_sum;

typedef struct fx_stats_upstream_sum {
    char *name;
    uint64_t requests, errors;
    uint64_t kinds[FX_STATS_NKINDS];
    uint64_t retries[FX_RETRY_NREASONS];
    uint64_t budget_exhausted;
    fx_stats_window last;
} fx_stats_upstream_sum;

typedef struct fx_stats_sums {
    fx_stats_side_sum *sides;     /* sorted by (route, upstream) after fx_stats_collect_done; "none" last */
    size_t nsides, capsides;
    fx_stats_upstream_sum *ups;
    size_t nups, capups;
    uint64_t now_us;
    uint64_t started_us;          /* the earliest worker start */
    uint64_t dropped;
} fx_stats_sums;

/* Admin: starts a sum at now_us (CLOCK_MONOTONIC), adds one worker at a time, then sorts. -1: out of memory. */
void fx_stats_collect_begin(fx_stats_sums *s, uint64_t now_us);
int fx_stats_collect(fx_stats_sums *s, fx_stats_worker *sw);
void fx_stats_collect_done(fx_stats_sums *s);
void fx_stats_sums_free(fx_stats_sums *s);

/* The pair's or upstream's sum (route/upstream NULL: "none"), or NULL when nothing was counted. */
const fx_stats_side_sum *fx_stats_find_side(const fx_stats_sums *s, const char *route, const char *upstream);
const fx_stats_upstream_sum *fx_stats_find_upstream(const fx_stats_sums *s, const char *name);

/* Adds b into a. */
void fx_stats_window_merge(fx_stats_window *a, const fx_stats_window *b);
/* The seconds the last-minute figures cover at s->now_us: up to 60, less in the first minute. */
double fx_stats_window_seconds(const fx_stats_sums *s);
/* The q-quantile (0 < q ≤ 1) of a window's latencies in seconds (see the top of this file for
 * the error), or -1 when it has no requests. Below 32 µs it says 32 µs; from 134 s on, 134 s. */
double fx_stats_quantile(const fx_stats_window *w, double q);

/* The latency bin of a duration (exposed for the tests), and the bounds of a bin in µs. */
unsigned fx_stats_lat_bin(uint64_t us);
void fx_stats_lat_bounds(unsigned bin, double *lo_us, double *hi_us);

#endif

/*
 * upstream.h — per-worker upstream connection pools.
 *
 * Each worker keeps, for each upstream, its own round-robin cursor and a
 * list of idle keep-alive connections (at most `keepalive`). A pooled
 * connection that the upstream closes, or that sends anything while idle,
 * is dropped at once. Nothing here is shared between threads but the
 * upstream's health state (health.h), read with relaxed atomic loads.
 *
 * Target choice: round-robin over the targets that are neither down (active
 * checks) nor ejected by this worker (passive outlier detection); when none
 * is left, over all of them (panic mode, as Envoy: better the upstream's own
 * answer than a guess).
 *
 * Circuit breaker (upstreams.X.max_connections / max_pending), enforced per
 * worker with each worker's share ceil(limit / workers):
 *   max_connections  connections this worker has open to the upstream (busy,
 *                    idle and connecting). At the limit, an idle connection
 *                    to another target is closed to make room; with none
 *                    idle the request is refused.
 *   max_pending      requests waiting for their connection to be established.
 * ficus never queues a request for a connection: over a limit it is answered
 * 503 at once, never after a timeout.
 */
#ifndef FX_UPSTREAM_H
#define FX_UPSTREAM_H

#include "config.h"
#include "server.h"

#include "sock.h"

typedef struct fx_upconn fx_upconn;

struct fx_upconn {
    fx_pool *pool;
    size_t target;                /* index into the upstream's targets */
    fx_sock *sock;
    fx_upconn *prev, *next;       /* idle list links */
    unsigned connected : 1;
    unsigned reused : 1;          /* came from the idle pool */
    unsigned idle : 1;
    unsigned pending : 1;         /* counted in the pool's `connecting` until connected or freed */
};

struct fx_health_state;

struct fx_pool {
    fx_worker *worker;
    const fx_upstream_conf *conf; /* points into `cfg` */
    fx_config *cfg;               /* a reference: conf stays valid as long as the pool lives */
    unsigned inflight;            /* connections handed out and not yet back or freed */
    unsigned users;               /* requests routed to this pool and not finished */
    int retired;                  /* its upstream left the config: freed when inflight hits 0 */
    size_t rr;                    /* round-robin cursor: one step per request */
    fx_upconn **idle;             /* per target, most recently used first */
    unsigned nidle;               /* over all targets; bounded by conf->keepalive */
    unsigned connecting;          /* handed out, connect not finished: the breaker's pending requests */
    struct fx_health_state *health; /* shared with the other workers and the checker; NULL: none */
    char refusal[200];            /* the last breaker refusal message */
};

fx_pool *fx_pool_new(fx_worker *w, fx_config *cfg, const fx_upstream_conf *conf);
/* A reload kept this pool for `conf` of the new snapshot `cfg`. */
void fx_pool_adopt(fx_pool *p, fx_config *cfg, const fx_upstream_conf *conf);
/* Frees the pool and its idle connections (no connection may be in flight). */
void fx_pool_free(fx_pool *p);
void fx_pool_close_idle(fx_pool *p);
/* The upstream left the config: close idle connections, free once the last in-flight returns. */
void fx_pool_retire(fx_pool *p);
/* A request routed here holds the pool until it ends (a reload may retire it meanwhile). */
void fx_pool_hold(fx_pool *p);
void fx_pool_release(fx_pool *p);
/* Can this pool serve `conf` (same name and the same targets in the same order)? */
int fx_pool_matches(const fx_pool *p, const fx_upstream_conf *conf);

/*
 * A connection to the next target in round-robin order: an idle pooled one
 * to that target when there is one (reused = 1), else a new non-blocking
 * connect (connected = 0). The caller
 * sets the socket callbacks. NULL when even a socket cannot be made.
 */
fx_upconn *fx_pool_get(fx_pool *p, const char **why);
/* Same; *status says how to answer a NULL: 503 when the circuit breaker refused
 * ("upstream X is overloaded (max_pending)"), else 502. */
fx_upconn *fx_pool_acquire(fx_pool *p, const char **why, int *status);
/* The connect of c finished (it no longer counts as pending). */
void fx_upconn_connected(fx_upconn *c);
/* What an exchange with target t brought (passive outlier detection): ok = a response
 * below 500; a failure = connect failure or timeout, reset, timeout, malformed, 5xx. */
void fx_pool_outcome(fx_pool *p, size_t target, int ok);
/* Returns a healthy, fully read connection to the idle list (or frees it if full). */
void fx_pool_put(fx_pool *p, fx_upconn *c);
/* Closes and frees a connection that is not in the idle list. */
void fx_upconn_free(fx_upconn *c);

#endif

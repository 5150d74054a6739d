/*
 * health.h — upstream target health: active checks (`upstreams.X.health`),
 * passive outlier ejection, and the circuit breaker's counters.
 *
 * Types first. Who touches what:
 *   fx_health_state  one per upstream (keyed by name + targets, like a pool),
 *                    shared by every worker's pool of that upstream and by
 *                    the checker. Reference-counted under the registry's
 *                    mutex (taken only when a pool is made or freed, never
 *                    on the request path). Its fields are either atomics
 *                    read with relaxed loads, or a worker's own slot that
 *                    only that worker writes.
 *   fx_health        the registry of states, and the active checker: main
 *                    thread only (fx_server_run's event_base, like jwks.c).
 *                    The checker probes each target of an upstream with
 *                    `health` every interval and flips `down[t]`.
 *
 * Target choice (upstream.c) skips a target that is down (active checks) or
 * ejected by this worker (passive); when every target is, it uses them all
 * anyway (Envoy's panic mode: the upstream's own answer beats a guess).
 *
 * Passive outlier ejection (always on, per worker): FX_EJECT_AFTER
 * consecutive failures (connect failure or timeout, reset, response
 * timeout, malformed response, 5xx) eject the target from this worker for
 * 10 s, then 20 s, 40 s, ... at most 5 min for each ejection in a row; one
 * success resets both the count and the interval. FICUS_TEST_EJECT_BASE_MS
 * (read once at start, for tests only) replaces the 10 s base.
 */
#ifndef FX_HEALTH_H
#define FX_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct evbuffer;

#define FX_EJECT_AFTER 5              /* consecutive failures that eject a target (per worker) */
#define FX_EJECT_BASE_MS 10000u       /* first ejection; doubled for each one in a row */
#define FX_EJECT_MAX_MS 300000u       /* cap of the ejection interval */

enum { FX_BREAKER_CONNECTIONS = 0, FX_BREAKER_PENDING, FX_BREAKER_NLIMITS };
extern const char *const fx_breaker_limit_names[FX_BREAKER_NLIMITS]; /* "max_connections", "max_pending" */

/* One worker's view of one target. fails / level: that worker only; ejected_until_ms is read by the admin. */
typedef struct fx_health_slot {
    unsigned fails;               /* consecutive failures since the last success */
    unsigned level;               /* ejections in a row: the next interval is base << level */
    _Atomic uint64_t ejected_until_ms; /* CLOCK_MONOTONIC ms; 0 or past: not ejected */
} fx_health_slot;

typedef struct fx_health_state {
    struct fx_health_state *next; /* registry list (under its mutex) */
    unsigned refs;                /* under the registry's mutex */
    char *name;
    char **targets;               /* as written */
    size_t ntargets;
    unsigned nworkers;
    uint64_t eject_base_ms;
    atomic_uchar *down;           /* [target]: 1 = failed its active checks (the checker writes) */
    atomic_ulong *ejections;      /* [target]: ficus_upstream_ejections_total, all workers */
    fx_health_slot *slots;        /* [worker * ntargets + target] */
    atomic_ulong breaker_open[FX_BREAKER_NLIMITS]; /* ficus_breaker_open_total{limit} */
} fx_health_state;

typedef struct fx_health fx_health;

/* ---- the registry (any thread; not on the request path) -------------------------------------- */

/* The registry and an idle checker for `nworkers` workers. NULL when out of memory. */
fx_health *fx_health_new(unsigned nworkers);
/* The state of upstream `u` (made on first use) with one reference for the caller; NULL-safe
 * (h NULL or out of memory: NULL, and the pool runs without health). */
fx_health_state *fx_health_state_get(fx_health *h, const fx_upstream_conf *u);
void fx_health_state_put(fx_health *h, fx_health_state *st);

/* ---- the request path (worker threads) ------------------------------------------------------ */

/* Can worker `w` send to target t now (not down, not ejected by w)? `now_ms`: CLOCK_MONOTONIC. */
static inline int fx_health_usable(const fx_health_state *st, unsigned w, size_t t, uint64_t now_ms)
{
    if (atomic_load_explicit(&st->down[t], memory_order_relaxed))
        return 0;
    uint64_t until = atomic_load_explicit(&st->slots[w * st->ntargets + t].ejected_until_ms, memory_order_relaxed);
    return until <= now_ms;
}
/* The outcome of one exchange with target t from worker w: ok resets, a failure may eject. */
void fx_health_outcome(fx_health_state *st, unsigned w, size_t t, int ok);

/* ---- the checker (main thread) ----------------------------------------------------------------- */

/* Probes the targets of every upstream of cfg with `health`; a reload calls it again: checks of
 * an unchanged upstream keep their counters, removed ones stop (their targets count as up). */
int fx_health_configure(fx_health *h, struct event_base *base, const fx_config *cfg);
/* ficus_upstream_health, ficus_upstream_ejections_total, ficus_breaker_open_total for cfg. */
void fx_health_metrics(fx_health *h, const fx_config *cfg, struct evbuffer *out);
/* ,"health":{...},"targets_state":[...] of upstream u, for GET /admin/upstreams. */
void fx_health_upstream_json(fx_health *h, const fx_upstream_conf *u, struct evbuffer *out);
/* Stops every probe and frees its events (before the event_base goes). */
void fx_health_stop(fx_health *h);
/* Frees the registry: only once no pool holds a state. NULL-safe. */
void fx_health_free(fx_health *h);

#endif

/*
 * stats.c — per-route and per-upstream request metrics (see stats.h).
 *
 *   latency bins        fx_stats_lat_bin: duration → log-spaced bin (integer math only)
 *   the ring            ring_add (worker: a bucket of an older second is reset first),
 *                       ring_sum (admin: buckets of the last 60 seconds, seqlock-checked)
 *   cells               new_side / new_upstream: allocated at a pair's first request,
 *                       pushed at the head of the worker's lists without the lock
 *   binding             fx_stats_bind: route maps for a config, cells kept by name
 *   recording           fx_stats_record: one request → its pair's cell and its upstream's
 *   retries             fx_stats_upstream_request / fx_stats_retry: the upstream's retry budget
 *                       (retry.h) and ficus_retries_total; fallbacks are counted by fx_stats_record
 *   summing             fx_stats_collect*: every worker's cells merged by name (admin)
 *   reading             fx_stats_quantile, fx_stats_window_seconds
 *
 * Single writer: a worker is the only thread that writes its counters, so an
 * increment is a relaxed load and a relaxed store (no locked instruction);
 * the admin's relaxed loads see each counter whole, maybe a moment old.
 */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double fx_stats_dur_bounds[FX_STATS_DUR_BOUNDS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                         0.25,   0.5,   1,      2.5,   5,    10,    30};
/* the same in µs, compared on the request path (`le`: a duration equal to a bound is in it) */
static const uint64_t dur_bounds_us[FX_STATS_DUR_BOUNDS] = {500,    1000,    2500,    5000,    10000,
                                                            25000,  50000,   100000,  250000,  500000,
                                                            1000000, 2500000, 5000000, 10000000, 30000000};

const char *const fx_stats_error_kind_names[FX_STATS_NKINDS] = {
    "connect", "connect_timeout", "reset", "timeout", "malformed", "internal", "overloaded", "tls", "other"};

#define RELAXED memory_order_relaxed

static inline void bump_ul(atomic_ulong *x, unsigned long v)
{
    atomic_store_explicit(x, atomic_load_explicit(x, RELAXED) + v, RELAXED);
}

static inline void bump_u(atomic_uint *x)
{
    atomic_store_explicit(x, atomic_load_explicit(x, RELAXED) + 1, RELAXED);
}

int fx_stats_error_kind(const char *e)
{
    if (!e || !strcmp(e, "client_stalled") || !strcmp(e, "event_timeout"))
        return -1; /* the client's or the events spool's doing, not the upstream's */
    for (int k = 0; k < FX_STATS_ERR_OTHER; k++)
        if (!strcmp(e, fx_stats_error_kind_names[k]))
            return k;
    return FX_STATS_ERR_OTHER;
}

/* ---- latency bins -------------------------------------------------------------------------- */

unsigned fx_stats_lat_bin(uint64_t us)
{
    if (us < FX_STATS_LAT_MIN_US)
        return 0;
    uint64_t q = us / FX_STATS_LAT_MIN_US;
    unsigned e = 63 - (unsigned)__builtin_clzll(q); /* us in [32 µs · 2^e, 32 µs · 2^(e+1)) */
    if (e >= FX_STATS_LAT_OCTAVES)
        return FX_STATS_LAT_BINS - 1;
    uint64_t base = (uint64_t)FX_STATS_LAT_MIN_US << e;
    /* the quarter-octave steps 2^(1/4), 2^(1/2), 2^(3/4) in millionths; us < 2^28 here, no overflow */
    static const uint64_t step[FX_STATS_LAT_PER_OCTAVE - 1] = {1189207, 1414214, 1681793};
    unsigned k = 0;
    while (k < FX_STATS_LAT_PER_OCTAVE - 1 && us * 1000000u >= base * step[k])
        k++;
    return 1 + e * FX_STATS_LAT_PER_OCTAVE + k;
}

void fx_stats_lat_bounds(unsigned bin, double *lo_us, double *hi_us)
{
    if (bin == 0) {
        *lo_us = 0;
        *hi_us = FX_STATS_LAT_MIN_US;
        return;
    }
    *lo_us = FX_STATS_LAT_MIN_US * exp2((double)(bin - 1) / FX_STATS_LAT_PER_OCTAVE);
    *hi_us = bin >= FX_STATS_LAT_BINS - 1 ? INFINITY : FX_STATS_LAT_MIN_US * exp2((double)bin / FX_STATS_LAT_PER_OCTAVE);
}

static unsigned dur_bucket(uint64_t us)
{
    unsigned i = 0;
    while (i < FX_STATS_DUR_BOUNDS && us > dur_bounds_us[i])
        i++;
    return i;
}

/* ---- the ring ---------------------------------------------------------------------------------- */

static void ring_add(fx_stats_second *ring, uint64_t sec, int error, unsigned bin)
{
    fx_stats_second *b = &ring[sec % FX_STATS_WINDOW];
    uint64_t stamp = sec + 1;
    if (atomic_load_explicit(&b->stamp, RELAXED) != stamp) {
        /* a minute-old bucket: mark it as being reset, so a reader that overlaps skips it */
        atomic_store_explicit(&b->stamp, 0, RELAXED);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&b->requests, 0, RELAXED);
        atomic_store_explicit(&b->errors, 0, RELAXED);
        for (unsigned i = 0; i < FX_STATS_LAT_BINS; i++)
            atomic_store_explicit(&b->lat[i], 0, RELAXED);
        atomic_store_explicit(&b->stamp, stamp, memory_order_release);
    }
    bump_u(&b->requests);
    if (error)
        bump_u(&b->errors);
    bump_u(&b->lat[bin]);
}

/* Adds the buckets of seconds (now_sec - 60, now_sec] to w. */
static void ring_sum(fx_stats_window *w, fx_stats_second *ring, uint64_t now_sec)
{
    for (unsigned i = 0; i < FX_STATS_WINDOW; i++) {
        fx_stats_second *b = &ring[i];
        uint64_t s1 = atomic_load_explicit(&b->stamp, memory_order_acquire);
        if (s1 == 0 || s1 - 1 > now_sec || now_sec - (s1 - 1) >= FX_STATS_WINDOW)
            continue;
        uint32_t lat[FX_STATS_LAT_BINS];
        uint32_t req = atomic_load_explicit(&b->requests, RELAXED);
        uint32_t err = atomic_load_explicit(&b->errors, RELAXED);
        for (unsigned k = 0; k < FX_STATS_LAT_BINS; k++)
            lat[k] = atomic_load_explicit(&b->lat[k], RELAXED);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->stamp, RELAXED) != s1)
            continue; /* reset for a new second while we read: it is not in this minute any more */
        w->requests += req;
        w->errors += err;
        for (unsigned k = 0; k < FX_STATS_LAT_BINS; k++)
            w->lat[k] += lat[k];
    }
}

/* ---- cells ----------------------------------------------------------------------------------- */

static int same_name(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static fx_stats_side *new_side(fx_stats_worker *sw, const char *route, const char *upstream)
{
    fx_stats_side *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if ((route && !(s->route = strdup(route))) || (upstream && !(s->upstream = strdup(upstream)))) {
        free(s->route);
        free(s);
        return NULL;
    }
    /* published whole: the admin may walk the list right now */
    atomic_store_explicit(&s->next, atomic_load_explicit(&sw->sides, RELAXED), RELAXED);
    atomic_store_explicit(&sw->sides, s, memory_order_release);
    return s;
}

static fx_stats_upstream *new_upstream(fx_stats_worker *sw, const char *name)
{
    fx_stats_upstream *u = calloc(1, sizeof(*u));
    if (!u || !(u->name = strdup(name))) {
        free(u);
        return NULL;
    }
    atomic_store_explicit(&u->next, atomic_load_explicit(&sw->upstreams, RELAXED), RELAXED);
    atomic_store_explicit(&sw->upstreams, u, memory_order_release);
    return u;
}

static void free_side(fx_stats_side *s)
{
    free(s->route);
    free(s->upstream);
    free(s);
}

static void free_upstream(fx_stats_upstream *u)
{
    free(u->name);
    free(u);
}

/* ---- binding --------------------------------------------------------------------------------- */

static int route_index(const fx_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (!strcmp(cfg->routes[i].name, name))
            return (int)i;
    return -1;
}

static int upstream_index(const fx_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (!strcmp(cfg->upstreams[i].name, name))
            return (int)i;
    return -1;
}

static void add_slot(fx_stats_route_map *m, int upstream)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].upstream == upstream)
            return;
    m->slots[m->nslots++] = (fx_stats_slot){upstream, NULL};
}

static void free_maps(fx_stats_route_map *routes, size_t n, fx_stats_upstream **ups)
{
    for (size_t i = 0; routes && i < n; i++)
        free(routes[i].slots);
    free(routes);
    free(ups);
}

/* The pairs a request of each route can end in: its upstream, its split's sides, its fallback, none. */
static fx_stats_route_map *build_maps(const fx_config *cfg)
{
    fx_stats_route_map *m = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*m));
    for (size_t i = 0; m && i < cfg->nroutes; i++) {
        const fx_route_conf *r = &cfg->routes[i];
        if (!(m[i].slots = calloc(r->nsplit + 3, sizeof(*m[i].slots)))) {
            free_maps(m, cfg->nroutes, NULL);
            return NULL;
        }
        add_slot(&m[i], r->upstream);
        for (size_t k = 0; k < r->nsplit; k++)
            add_slot(&m[i], r->split[k].upstream);
        if (r->fallback >= 0 && (size_t)r->fallback < cfg->nupstreams)
            add_slot(&m[i], r->fallback);
        add_slot(&m[i], -1);
    }
    return m;
}

static void unbind(fx_stats_worker *sw)
{
    pthread_mutex_lock(&sw->lock);
    free_maps(sw->routes, sw->cfg ? sw->cfg->nroutes : 0, sw->ups);
    sw->routes = NULL;
    sw->ups = NULL;
    sw->cfg = NULL;
    pthread_mutex_unlock(&sw->lock);
}

int fx_stats_bind(fx_stats_worker *sw, const fx_config *cfg)
{
    fx_stats_route_map *routes = build_maps(cfg);
    fx_stats_upstream **ups = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*ups));
    if (!routes || !ups) {
        free_maps(routes, cfg->nroutes, ups);
        unbind(sw);
        return -1;
    }
    pthread_mutex_lock(&sw->lock);
    /* pairs: kept while the config has both names; re-linked to the new maps */
    _Atomic(fx_stats_side *) *link = &sw->sides;
    for (fx_stats_side *s = atomic_load_explicit(link, RELAXED), *next; s; s = next) {
        next = atomic_load_explicit(&s->next, RELAXED);
        int ri = s->route ? route_index(cfg, s->route) : -1;
        int ui = s->upstream ? upstream_index(cfg, s->upstream) : -1;
        if ((s->route && ri < 0) || (s->upstream && ui < 0)) {
            atomic_store_explicit(link, next, RELAXED);
            free_side(s);
            continue;
        }
        for (size_t k = 0; ri >= 0 && k < routes[ri].nslots; k++)
            if (routes[ri].slots[k].upstream == ui)
                routes[ri].slots[k].side = s;
        link = &s->next;
    }
    _Atomic(fx_stats_upstream *) *ulink = &sw->upstreams;
    for (fx_stats_upstream *u = atomic_load_explicit(ulink, RELAXED), *next; u; u = next) {
        next = atomic_load_explicit(&u->next, RELAXED);
        int ui = upstream_index(cfg, u->name);
        if (ui < 0) {
            atomic_store_explicit(ulink, next, RELAXED);
            free_upstream(u);
            continue;
        }
        ups[ui] = u;
        ulink = &u->next;
    }
    free_maps(sw->routes, sw->cfg ? sw->cfg->nroutes : 0, sw->ups);
    sw->routes = routes;
    sw->ups = ups;
    sw->cfg = cfg;
    pthread_mutex_unlock(&sw->lock);
    return 0;
}

int fx_stats_init(fx_stats_worker *sw, const fx_config *cfg, uint64_t now_us)
{
    memset(sw, 0, sizeof(*sw));
    if (pthread_mutex_init(&sw->lock, NULL) != 0)
        return -1;
    sw->inited = 1;
    sw->started_us = now_us;
    return fx_stats_bind(sw, cfg);
}

void fx_stats_free(fx_stats_worker *sw)
{
    if (!sw->inited)
        return;
    for (fx_stats_side *s = atomic_load(&sw->sides), *next; s; s = next) {
        next = atomic_load(&s->next);
        free_side(s);
    }
    for (fx_stats_upstream *u = atomic_load(&sw->upstreams), *next; u; u = next) {
        next = atomic_load(&u->next);
        free_upstream(u);
    }
    free_maps(sw->routes, sw->cfg ? sw->cfg->nroutes : 0, sw->ups);
    pthread_mutex_destroy(&sw->lock);
    memset(sw, 0, sizeof(*sw));
}

/* ---- recording (worker thread) ------------------------------------------------------------------ */

/* The cell of (route ri, upstream ui) of the bound config; NULL when it cannot be had. */
static fx_stats_side *pair_cell(fx_stats_worker *sw, int ri, int ui)
{
    const char *rname = sw->cfg->routes[ri].name;
    const char *uname = ui >= 0 ? sw->cfg->upstreams[ui].name : NULL;
    fx_stats_route_map *m = &sw->routes[ri];
    for (size_t k = 0; k < m->nslots; k++) {
        if (m->slots[k].upstream != ui)
            continue;
        if (!m->slots[k].side)
            m->slots[k].side = new_side(sw, rname, uname);
        return m->slots[k].side;
    }
    /* an upstream the route's config does not name (rare): found by name each time */
    for (fx_stats_side *s = atomic_load_explicit(&sw->sides, RELAXED); s; s = atomic_load_explicit(&s->next, RELAXED))
        if (same_name(s->route, rname) && same_name(s->upstream, uname))
            return s;
    return new_side(sw, rname, uname);
}

void fx_stats_record(fx_stats_worker *sw, const fx_stats_req *r, uint64_t now_us)
{
    if (!sw->inited)
        return;
    int ri = r->route, ui = r->upstream;
    if (ri >= 0 || ui >= 0) {
        if (!sw->cfg || !r->cfg) {
            bump_ul(&sw->dropped, 1);
            return;
        }
        if (r->cfg != sw->cfg) {
            /* routed on an older snapshot (a reload landed while it ran): its names in the new one */
            if (ri >= 0 && (ri = route_index(sw->cfg, r->cfg->routes[ri].name)) < 0) {
                bump_ul(&sw->dropped, 1);
                return;
            }
            if (ui >= 0 && (ui = upstream_index(sw->cfg, r->cfg->upstreams[ui].name)) < 0) {
                bump_ul(&sw->dropped, 1);
                return;
            }
        }
    }
    fx_stats_side *side;
    if (ri < 0)
        side = sw->none ? sw->none : (sw->none = new_side(sw, NULL, NULL));
    else
        side = pair_cell(sw, ri, ui);
    fx_stats_upstream *up = NULL;
    if (ui >= 0 && !(up = sw->ups[ui]))
        up = sw->ups[ui] = new_upstream(sw, sw->cfg->upstreams[ui].name);
    if (!side || (ui >= 0 && !up)) {
        bump_ul(&sw->dropped, 1);
        return;
    }
    uint64_t sec = now_us / 1000000u;
    unsigned bin = fx_stats_lat_bin(r->duration_us);
    int error = r->status >= 500 && r->status <= 599;

    if (r->status >= FX_STATS_CODE_MIN && r->status < FX_STATS_CODE_MIN + FX_STATS_NCODES)
        bump_ul(&side->codes[r->status - FX_STATS_CODE_MIN], 1);
    bump_ul(&side->dur[dur_bucket(r->duration_us)], 1);
    bump_ul(&side->dur_sum_us, r->duration_us);
    ring_add(side->ring, sec, error, bin);
    if (r->fell_back && r->fallback_reason >= 0 && r->fallback_reason < FX_RETRY_NREASONS)
        bump_ul(&side->fallbacks[r->fallback_reason], 1);

    if (up) {
        bump_ul(&up->requests, 1);
        if (error)
            bump_ul(&up->errors, 1);
        int kind = fx_stats_error_kind(r->upstream_error);
        if (kind >= 0)
            bump_ul(&up->kinds[kind], 1);
        ring_add(up->ring, sec, error, bin);
    }
}

/* The cell of upstream ui of cfg (a request's snapshot, maybe older than the bound one); NULL when it
 * cannot be had. */
static fx_stats_upstream *upstream_cell(fx_stats_worker *sw, const fx_config *cfg, int ui)
{
    if (!sw->inited || !sw->cfg || !cfg || ui < 0 || (size_t)ui >= cfg->nupstreams)
        return NULL;
    if (cfg != sw->cfg && (ui = upstream_index(sw->cfg, cfg->upstreams[ui].name)) < 0)
        return NULL;
    if (!sw->ups[ui])
        sw->ups[ui] = new_upstream(sw, sw->cfg->upstreams[ui].name);
    return sw->ups[ui];
}

void fx_stats_upstream_request(fx_stats_worker *sw, const fx_config *cfg, int ui, uint64_t now_us)
{
    fx_stats_upstream *u = upstream_cell(sw, cfg, ui);
    if (u)
        fx_retry_budget_request(&u->budget, now_us);
}

int fx_stats_retry(fx_stats_worker *sw, const fx_config *cfg, int ui, int reason, uint64_t now_us)
{
    fx_stats_upstream *u = upstream_cell(sw, cfg, ui);
    if (!u || reason < 0 || reason >= FX_RETRY_NREASONS)
        return 0;
    if (!fx_retry_budget_take(&u->budget, now_us)) {
        bump_ul(&u->budget_exhausted, 1);
        return 0;
    }
    bump_ul(&u->retries[reason], 1);
    return 1;
}

/* ---- summing (admin) ------------------------------------------------------------------------------ */

void fx_stats_collect_begin(fx_stats_sums *s, uint64_t now_us)
{
    memset(s, 0, sizeof(*s));
    s->now_us = now_us;
    s->started_us = now_us;
}

static fx_stats_side_sum *side_sum(fx_stats_sums *s, const char *route, const char *upstream)
{
    for (size_t i = 0; i < s->nsides; i++)
        if (same_name(s->sides[i].route, route) && same_name(s->sides[i].upstream, upstream))
            return &s->sides[i];
    if (s->nsides == s->capsides) {
        size_t cap = s->capsides ? s->capsides * 2 : 16;
        fx_stats_side_sum *v = realloc(s->sides, cap * sizeof(*v));
        if (!v)
            return NULL;
        s->sides = v;
        s->capsides = cap;
    }
    fx_stats_side_sum *x = &s->sides[s->nsides];
    memset(x, 0, sizeof(*x));
    if ((route && !(x->route = strdup(route))) || (upstream && !(x->upstream = strdup(upstream)))) {
        free(x->route);
        return NULL;
    }
    s->nsides++;
    return x;
}

static fx_stats_upstream_sum *upstream_sum(fx_stats_sums *s, const char *name)
{
    for (size_t i = 0; i < s->nups; i++)
        if (!strcmp(s->ups[i].name, name))
            return &s->ups[i];
    if (s->nups == s->capups) {
        size_t cap = s->capups ? s->capups * 2 : 8;
        fx_stats_upstream_sum *v = realloc(s->ups, cap * sizeof(*v));
        if (!v)
            return NULL;
        s->ups = v;
        s->capups = cap;
    }
    fx_stats_upstream_sum *x = &s->ups[s->nups];
    memset(x, 0, sizeof(*x));
    if (!(x->name = strdup(name)))
        return NULL;
    s->nups++;
    return x;
}

int fx_stats_collect(fx_stats_sums *s, fx_stats_worker *sw)
{
    if (!sw->inited)
        return 0;
    int rc = 0;
    uint64_t now_sec = s->now_us / 1000000u;
    pthread_mutex_lock(&sw->lock);
    if (sw->started_us < s->started_us)
        s->started_us = sw->started_us;
    s->dropped += atomic_load_explicit(&sw->dropped, RELAXED);
    for (fx_stats_side *c = atomic_load_explicit(&sw->sides, memory_order_acquire); c;
         c = atomic_load_explicit(&c->next, memory_order_acquire)) {
        fx_stats_side_sum *x = side_sum(s, c->route, c->upstream);
        if (!x) {
            rc = -1;
            break;
        }
        for (unsigned i = 0; i < FX_STATS_NCODES; i++) {
            uint64_t v = atomic_load_explicit(&c->codes[i], RELAXED);
            x->codes[i] += v;
            x->requests += v;
            if (i + FX_STATS_CODE_MIN >= 500)
                x->errors += v;
        }
        for (unsigned i = 0; i <= FX_STATS_DUR_BOUNDS; i++)
            x->dur[i] += atomic_load_explicit(&c->dur[i], RELAXED);
        x->dur_sum_us += atomic_load_explicit(&c->dur_sum_us, RELAXED);
        for (unsigned k = 0; k < FX_RETRY_NREASONS; k++)
            x->fallbacks[k] += atomic_load_explicit(&c->fallbacks[k], RELAXED);
        ring_sum(&x->last, c->ring, now_sec);
    }
    for (fx_stats_upstream *c = atomic_load_explicit(&sw->upstreams, memory_order_acquire); c && rc == 0;
         c = atomic_load_explicit(&c->next, memory_order_acquire)) {
        fx_stats_upstream_sum *x = upstream_sum(s, c->name);
        if (!x) {
            rc = -1;
            break;
        }
        x->requests += atomic_load_explicit(&c->requests, RELAXED);
        x->errors += atomic_load_explicit(&c->errors, RELAXED);
        for (unsigned k = 0; k < FX_STATS_NKINDS; k++)
            x->kinds[k] += atomic_load_explicit(&c->kinds[k], RELAXED);
        for (unsigned k = 0; k < FX_RETRY_NREASONS; k++)
            x->retries[k] += atomic_load_explicit(&c->retries[k], RELAXED);
        x->budget_exhausted += atomic_load_explicit(&c->budget_exhausted, RELAXED);
        ring_sum(&x->last, c->ring, now_sec);
    }
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

/* NULL (none) after every name */
static int cmp_name(const char *a, const char *b)
{
    if (!a || !b)
        return (a == NULL) - (b == NULL);
    return strcmp(a, b);
}

static int cmp_side_sum(const void *pa, const void *pb)
{
    const fx_stats_side_sum *a = pa, *b = pb;
    int c = cmp_name(a->route, b->route);
    return c ? c : cmp_name(a->upstream, b->upstream);
}

static int cmp_upstream_sum(const void *pa, const void *pb)
{
    return strcmp(((const fx_stats_upstream_sum *)pa)->name, ((const fx_stats_upstream_sum *)pb)->name);
}

void fx_stats_collect_done(fx_stats_sums *s)
{
    if (s->nsides)
        qsort(s->sides, s->nsides, sizeof(*s->sides), cmp_side_sum);
    if (s->nups)
        qsort(s->ups, s->nups, sizeof(*s->ups), cmp_upstream_sum);
}

void fx_stats_sums_free(fx_stats_sums *s)
{
    for (size_t i = 0; i < s->nsides; i++) {
        free(s->sides[i].route);
        free(s->sides[i].upstream);
    }
    for (size_t i = 0; i < s->nups; i++)
        free(s->ups[i].name);
    free(s->sides);
    free(s->ups);
    memset(s, 0, sizeof(*s));
}

const fx_stats_side_sum *fx_stats_find_side(const fx_stats_sums *s, const char *route, const char *upstream)
{
    for (size_t i = 0; i < s->nsides; i++)
        if (same_name(s->sides[i].route, route) && same_name(s->sides[i].upstream, upstream))
            return &s->sides[i];
    return NULL;
}

const fx_stats_upstream_sum *fx_stats_find_upstream(const fx_stats_sums *s, const char *name)
{
    for (size_t i = 0; i < s->nups; i++)
        if (!strcmp(s->ups[i].name, name))
            return &s->ups[i];
    return NULL;
}

/* ---- reading -------------------------------------------------------------------------------------- */

void fx_stats_window_merge(fx_stats_window *a, const fx_stats_window *b)
{
    a->requests += b->requests;
    a->errors += b->errors;
    for (unsigned k = 0; k < FX_STATS_LAT_BINS; k++)
        a->lat[k] += b->lat[k];
}

double fx_stats_window_seconds(const fx_stats_sums *s)
{
    /* the oldest bucket began 59 whole seconds before the current one, which is partly gone */
    double span = (FX_STATS_WINDOW - 1) + (double)(s->now_us % 1000000u) / 1e6;
    double age = (double)(s->now_us - s->started_us) / 1e6;
    double w = age < span ? age : span;
    return w < 1.0 ? 1.0 : w;
}

double fx_stats_quantile(const fx_stats_window *w, double q)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < FX_STATS_LAT_BINS; k++)
        n += w->lat[k];
    if (n == 0)
        return -1;
    /* the rank of the sample the quantile names: ceil(q·n), kept off float noise (0.99·100 ≠ 99) */
    uint64_t rank = (uint64_t)ceil(q * (double)n - 1e-9);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    uint64_t cum = 0;
    unsigned bin = 0;
    for (; bin < FX_STATS_LAT_BINS; bin++) {
        cum += w->lat[bin];
        if (cum >= rank)
            break;
    }
    double lo, hi;
    fx_stats_lat_bounds(bin, &lo, &hi);
    if (bin == 0)
        return FX_STATS_LAT_MIN_US / 1e6;
    if (bin == FX_STATS_LAT_BINS - 1)
        return lo / 1e6;
    return sqrt(lo * hi) / 1e6;
}

/*
 * upstream.c — per-worker keep-alive pools and round-robin (see upstream.h).
 *
 *   pick_target     round-robin over the usable targets (health.h), all when none is
 *   fx_pool_acquire idle connection (LIFO, warmest first) or a new connect, unless
 *                   the circuit breaker refuses (per-worker share of the limits)
 *   fx_pool_outcome passive outlier detection: each exchange's result (health.c)
 *   fx_pool_put     back to the idle list, bounded by `keepalive`
 *   on_idle_*       an idle connection that speaks or closes is dropped
 */
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"
#include "tls.h"

static fx_health *registry(const fx_pool *p)
{
    return p->worker && p->worker->server ? p->worker->server->health : NULL;
}

fx_pool *fx_pool_new(fx_worker *w, fx_config *cfg, const fx_upstream_conf *conf)
{
    fx_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->worker = w;
    p->conf = conf;
    p->cfg = fx_config_ref(cfg);
    /* spread workers over targets so they do not all start on the first */
    p->rr = w->id;
    p->idle = calloc(conf->ntargets ? conf->ntargets : 1, sizeof(*p->idle));
    /* NULL (no registry, out of memory): this pool runs without health and breaker counters */
    p->health = fx_health_state_get(registry(p), conf);
    if (!p->idle) {
        fx_health_state_put(registry(p), p->health);
        fx_config_unref(p->cfg);
        free(p);
        return NULL;
    }
    return p;
}

void fx_pool_adopt(fx_pool *p, fx_config *cfg, const fx_upstream_conf *conf)
{
    fx_config *old = p->cfg;
    p->cfg = fx_config_ref(cfg);
    p->conf = conf;
    fx_config_unref(old);
    /* the same TLS settings may name files that changed (a rotated CA or client certificate): kept
     * connections were verified with the old ones, so only new connections, on the new context, go on */
    if (conf->tls)
        fx_pool_close_idle(p);
}

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

int fx_pool_matches(const fx_pool *p, const fx_upstream_conf *conf)
{
    const fx_upstream_conf *o = p->conf;
    if (strcmp(o->name, conf->name) != 0 || o->ntargets != conf->ntargets)
        return 0;
    for (size_t i = 0; i < o->ntargets; i++)
        if (strcmp(o->targets[i].text, conf->targets[i].text) != 0)
            return 0;
    /* a connection made under other TLS settings (or none) must never serve this upstream */
    const fx_tls_client_conf *a = o->tls, *b = conf->tls;
    if (!a != !b)
        return 0;
    return !a || (a->verify == b->verify && same_str(a->ca, b->ca) && same_str(a->server_name, b->server_name) &&
                  same_str(a->client_cert, b->client_cert) && same_str(a->client_key, b->client_key));
}

static void pool_maybe_free(fx_pool *p)
{
    if (p->retired && p->inflight == 0 && p->nidle == 0 && p->users == 0)
        fx_pool_free(p);
}

void fx_pool_hold(fx_pool *p)
{
    p->users++;
}

void fx_pool_release(fx_pool *p)
{
    p->users--;
    pool_maybe_free(p);
}

void fx_pool_retire(fx_pool *p)
{
    fx_pool_close_idle(p); /* before `retired`: freeing idle ones must not free the pool */
    p->retired = 1;
    pool_maybe_free(p);
}

static void idle_unlink(fx_upconn *c)
{
    fx_pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->idle[c->target] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->idle = 0;
    p->nidle--;
}

void fx_upconn_free(fx_upconn *c)
{
    fx_pool *p = c->pool;
    if (c->idle)
        idle_unlink(c);
    else
        p->inflight--;
    if (c->pending)
        p->connecting--;
    fx_sock_free(c->sock);
    free(c);
    pool_maybe_free(p);
}

/* Closes the idle connections; the pool stays usable. */
void fx_pool_close_idle(fx_pool *p)
{
    if (!p->idle)
        return;
    for (size_t t = 0; t < p->conf->ntargets; t++)
        while (p->idle[t])
            fx_upconn_free(p->idle[t]);
}

void fx_pool_free(fx_pool *p)
{
    if (!p)
        return;
    p->retired = 0; /* no recursion from the frees below */
    fx_pool_close_idle(p);
    free(p->idle);
    fx_health_state_put(registry(p), p->health);
    fx_config_unref(p->cfg); /* last: close_idle read p->conf */
    free(p);
}

/* An idle connection must stay silent: data or EOF means it is no longer usable. */
static void on_idle_read(fx_sock *s, void *arg)
{
    fx_upconn_free(arg);
}

static void on_idle_event(fx_sock *s, int what, void *arg)
{
    fx_upconn_free(arg);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The next target in round-robin order that is not down or ejected; if all are, the next one. */
static size_t pick_target(fx_pool *p)
{
    size_t n = p->conf->ntargets;
    size_t first = p->rr++ % n;
    fx_health_state *st = p->health;
    if (!st || st->ntargets != n || p->worker->id >= st->nworkers)
        return first;
    uint64_t now = 0;
    for (size_t k = 0; k < n; k++) {
        size_t t = (first + k) % n;
        if (atomic_load_explicit(&st->down[t], memory_order_relaxed))
            continue;
        /* this worker's own slot: only it writes the ejection, so it may clear an expired one */
        _Atomic uint64_t *until = &st->slots[p->worker->id * n + t].ejected_until_ms;
        uint64_t u = atomic_load_explicit(until, memory_order_relaxed);
        if (u) {
            if (!now)
                now = now_ms();
            if (u > now)
                continue;
            atomic_store_explicit(until, 0, memory_order_relaxed);
        }
        p->rr += k; /* the next request starts after the target chosen */
        return t;
    }
    return first; /* panic: every target is down or ejected; let the upstream answer */
}

void fx_pool_outcome(fx_pool *p, size_t target, int ok)
{
    if (p && p->health)
        fx_health_outcome(p->health, p->worker->id, target, ok);
}

void fx_upconn_connected(fx_upconn *c)
{
    c->connected = 1;
    if (c->pending) {
        c->pending = 0;
        c->pool->connecting--;
    }
}

/* This worker's share of a breaker limit: ceil(limit / workers); 0 = no limit. */
static unsigned share(const fx_pool *p, unsigned limit)
{
    unsigned n = p->worker && p->worker->server && p->worker->server->nworkers ? p->worker->server->nworkers : 1;
    return limit ? (limit + n - 1) / n : 0;
}

static void close_one_idle(fx_pool *p)
{
    for (size_t t = 0; t < p->conf->ntargets; t++) {
        if (p->idle[t]) {
            fx_upconn_free(p->idle[t]);
            return;
        }
    }
}

static const char *refuse(fx_pool *p, int limit, int *status)
{
    *status = 503;
    if (p->health)
        atomic_fetch_add_explicit(&p->health->breaker_open[limit], 1, memory_order_relaxed);
    snprintf(p->refusal, sizeof(p->refusal), "upstream %s is overloaded (%s)", p->conf->name,
             fx_breaker_limit_names[limit]);
    return p->refusal;
}

fx_upconn *fx_pool_get(fx_pool *p, const char **why)
{
    int status;
    return fx_pool_acquire(p, why, &status);
}

fx_upconn *fx_pool_acquire(fx_pool *p, const char **why, int *status)
{
    const fx_upstream_conf *u = p->conf;
    *status = 502;
    size_t t = pick_target(p);
    if (p->idle[t]) {
        fx_upconn *c = p->idle[t];
        idle_unlink(c);
        p->inflight++;
        c->reused = 1;
        fx_sock_setcb(c->sock, NULL, NULL, NULL, NULL);
        fx_sock_set_read_timeout(c->sock, 0);
        return c;
    }
    /* a new connection: within this worker's share of the breaker limits? */
    unsigned maxc = share(p, u->max_connections);
    if (maxc && p->inflight + p->nidle >= maxc) {
        if (!p->nidle) {
            *why = refuse(p, FX_BREAKER_CONNECTIONS, status);
            return NULL;
        }
        close_one_idle(p); /* an idle one to another target makes room */
    }
    unsigned maxp = share(p, u->max_pending);
    if (maxp && p->connecting >= maxp) {
        *why = refuse(p, FX_BREAKER_PENDING, status);
        return NULL;
    }
    fx_upconn *c = calloc(1, sizeof(*c));
    if (!c) {
        *why = "out of memory";
        return NULL;
    }
    c->pool = p;
    c->target = t;
    const fx_addr *a = &u->targets[t];
    int err = 0;
    c->sock = fx_sock_connect(p->worker->base, (const struct sockaddr *)&a->sa, a->salen, &err);
    if (!c->sock) {
        /* immediate failure (no route, out of sockets); the caller answers 502 */
        free(c);
        fx_pool_outcome(p, t, 0);
        *why = err == ECONNREFUSED ? "connection refused" : "cannot connect to upstream";
        return NULL;
    }
    if (u->tls && fx_sock_tls(c->sock, fx_tls_client_ssl(u->tls->ctx, u->tls, a), 0) < 0) {
        fx_sock_free(c->sock);
        free(c);
        *why = "out of memory starting TLS";
        return NULL;
    }
    c->connected = !c->sock->connecting && !c->sock->tls_hs;
    if (!c->connected) {
        c->pending = 1;
        p->connecting++;
    }
    p->inflight++;
    return c;
}

void fx_pool_put(fx_pool *p, fx_upconn *c)
{
    if (p->nidle >= p->conf->keepalive || p->worker->draining || p->retired) {
        fx_upconn_free(c);
        return;
    }
    p->inflight--;
    if (c->pending) {
        c->pending = 0;
        p->connecting--;
    }
    c->pool = p;
    c->idle = 1;
    c->prev = NULL;
    c->next = p->idle[c->target];
    if (c->next)
        c->next->prev = c;
    p->idle[c->target] = c;
    p->nidle++;
    fx_sock_setcb(c->sock, on_idle_read, NULL, on_idle_event, c);
    /* idle upstream connections do not live forever: the upstream may drop them first */
    fx_sock_set_read_timeout(c->sock, 60000);
    fx_sock_read_enable(c->sock);
}

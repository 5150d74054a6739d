/*
 * upstream.c — per-worker keep-alive pools and round-robin (see upstream.h).
 *
 *   fx_pool_get     idle connection (LIFO, warmest first) or a new connect
 *   fx_pool_put     back to the idle list, bounded by `keepalive`
 *   on_idle_*       an idle connection that speaks or closes is dropped
 */
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
    if (!p->idle) {
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
}

int fx_pool_matches(const fx_pool *p, const fx_upstream_conf *conf)
{
    const fx_upstream_conf *o = p->conf;
    if (strcmp(o->name, conf->name) != 0 || o->ntargets != conf->ntargets)
        return 0;
    for (size_t i = 0; i < o->ntargets; i++)
        if (strcmp(o->targets[i].text, conf->targets[i].text) != 0)
            return 0;
    return 1;
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

fx_upconn *fx_pool_get(fx_pool *p, const char **why)
{
    const fx_upstream_conf *u = p->conf;
    size_t t = p->rr++ % u->ntargets;
    if (p->idle[t]) {
        fx_upconn *c = p->idle[t];
        idle_unlink(c);
        p->inflight++;
        c->reused = 1;
        fx_sock_setcb(c->sock, NULL, NULL, NULL, NULL);
        fx_sock_set_read_timeout(c->sock, 0);
        return c;
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
        *why = err == ECONNREFUSED ? "connection refused" : "cannot connect to upstream";
        return NULL;
    }
    c->connected = !c->sock->connecting;
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

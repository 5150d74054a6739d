/*
 * upstream.c — per-worker keep-alive pools and round-robin (see upstream.h).
 *
 *   fx_pool_get     idle connection (LIFO, warmest first) or a new connect
 *   fx_pool_put     back to the idle list, bounded by `keepalive`
 *   on_idle_*       an idle connection that speaks or closes is dropped
 */
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int fx_pool_init(fx_pool *p, fx_worker *w, const fx_upstream_conf *conf)
{
    memset(p, 0, sizeof(*p));
    p->worker = w;
    p->conf = conf;
    /* spread workers over targets so they do not all start on the first */
    p->rr = w->id;
    p->idle = calloc(conf->ntargets ? conf->ntargets : 1, sizeof(*p->idle));
    return p->idle ? 0 : -1;
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
    if (c->idle)
        idle_unlink(c);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
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
    fx_pool_close_idle(p);
    free(p->idle);
    p->idle = NULL;
}

/* An idle connection must stay silent: data or EOF means it is no longer usable. */
static void on_idle_read(struct bufferevent *bev, void *arg)
{
    fx_upconn_free(arg);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
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
        c->reused = 1;
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        return c;
    }
    fx_upconn *c = calloc(1, sizeof(*c));
    if (!c) {
        *why = "out of memory";
        return NULL;
    }
    c->pool = p;
    c->target = t;
    c->bev = bufferevent_socket_new(p->worker->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        free(c);
        *why = "cannot create a socket";
        return NULL;
    }
    const fx_addr *a = &u->targets[t];
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&a->sa, (int)a->salen) < 0) {
        /* immediate failure (e.g. no route); report it as refused */
        bufferevent_free(c->bev);
        free(c);
        *why = "connect failed";
        return NULL;
    }
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

void fx_pool_put(fx_pool *p, fx_upconn *c)
{
    if (p->nidle >= p->conf->keepalive || p->worker->draining) {
        fx_upconn_free(c);
        return;
    }
    c->pool = p;
    c->idle = 1;
    c->prev = NULL;
    c->next = p->idle[c->target];
    if (c->next)
        c->next->prev = c;
    p->idle[c->target] = c;
    p->nidle++;
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    /* idle upstream connections do not live forever: the upstream may drop them first */
    struct timeval tv = {60, 0};
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
}

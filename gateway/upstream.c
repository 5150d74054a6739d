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
    fx_sock_free(c->sock);
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
    fx_sock_setcb(c->sock, on_idle_read, NULL, on_idle_event, c);
    /* idle upstream connections do not live forever: the upstream may drop them first */
    fx_sock_set_read_timeout(c->sock, 60000);
    fx_sock_read_enable(c->sock);
}

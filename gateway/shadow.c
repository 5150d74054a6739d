/*
 * shadow.c — shadow exchanges (see shadow.h).
 *
 *   route cells        route_cell / fx_shadow_bind: counters and pairs by route name
 *   fx_shadow_start    sampling, the copy of the request, the shadow connection
 *   shadow side        on_up_read / on_up_event / on_connect_timeout: the shadow's answer,
 *                      read with the proxy's codec, body captured up to FX_SHADOW_MAX_BODY
 *   primary side       fx_shadow_primary_*: the proxy hands over the primary's answer
 *   settle             once both sides are in: compare, count, keep the pair; free
 *   fx_shadow_collect  the admin's sum over workers
 *
 * An exchange lives on the worker's `live` list from start to settle. Its
 * config reference keeps the route, the upstream and the ignore list alive
 * across reloads; its pool hold keeps the shadow pool alive when a reload
 * retires it.
 */
#include "shadow.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "clock.h"
#include "log.h"
#include "shadow_compare.h"
#include "sock.h"
#include "upstream.h"

#define MAX_RESPONSE_HEAD (64 * 1024)

const char *const fx_shadow_error_names[FX_SHADOW_NERRORS] = {"connect", "timeout", "reset", "malformed"};
const char *const fx_shadow_kind_names[3] = {"status", "headers", "body"};

struct fx_shadow_exchange {
    fx_shadow_exchange *prev, *next;
    fx_shadow_worker *sw;
    fx_worker *w;
    fx_config *cfg;               /* a reference: route and ups point into it */
    const fx_route_conf *route;
    const fx_upstream_conf *ups;
    fx_pool *pool;                /* held */
    fx_upconn *up;
    struct event *timer;          /* connect timeout, then the whole answer's deadline */
    fx_arena arena;
    const char *head;             /* the request copy (arena), kept for one fresh retry */
    size_t head_len;
    const char *body;
    size_t body_len;
    int method;
    fx_shadow_pair meta;          /* request id, method, path, time */

    /* the shadow's answer */
    fx_http_msg resp;
    uint64_t s_left;
    fx_http_chunked s_chunked;
    struct evbuffer *s_body;
    unsigned s_head : 1, s_done : 1, s_failed : 1, s_any : 1, s_over : 1, retried : 1;

    /* the primary's answer */
    int p_status;
    fx_http_header *p_headers;
    size_t p_nheaders;
    struct evbuffer *p_body;
    unsigned p_head : 1, p_done : 1, p_gone : 1, p_over : 1;
};

static unsigned long ld(atomic_ulong *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* Single writer (this worker): a plain load and store, no read-modify-write. */
static void bump(atomic_ulong *a)
{
    atomic_store_explicit(a, ld(a) + 1, memory_order_relaxed);
}

/* ---- route cells ------------------------------------------------------------------------------ */

/* The cell of route `name` (worker thread), or NULL: never made, or dropped by a reload that removed the
 * route's shadow while a copy was out (its late answer is not counted). */
static fx_shadow_route *find_cell(fx_shadow_worker *sw, const char *name)
{
    for (fx_shadow_route *r = sw->routes; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

/* The cell of route `name`, made on first use (worker thread). NULL when out of memory. */
static fx_shadow_route *route_cell(fx_shadow_worker *sw, const char *name)
{
    fx_shadow_route *r = find_cell(sw, name);
    if (r)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r || !(r->name = strdup(name))) {
        free(r);
        return NULL;
    }
    pthread_mutex_lock(&sw->lock);
    r->next = sw->routes;
    sw->routes = r;
    pthread_mutex_unlock(&sw->lock);
    return r;
}

fx_shadow_worker *fx_shadow_worker_new(void)
{
    fx_shadow_worker *sw = calloc(1, sizeof(*sw));
    if (sw && pthread_mutex_init(&sw->lock, NULL) != 0) {
        free(sw);
        return NULL;
    }
    return sw;
}

void fx_shadow_bind(fx_shadow_worker *sw, const fx_config *cfg)
{
    if (!sw)
        return;
    pthread_mutex_lock(&sw->lock);
    for (fx_shadow_route **pp = &sw->routes; *pp;) {
        fx_shadow_route *r = *pp;
        int keep = 0;
        for (size_t i = 0; i < cfg->nroutes && !keep; i++)
            keep = cfg->routes[i].shadow && strcmp(cfg->routes[i].name, r->name) == 0;
        if (keep) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        free(r->name);
        free(r);
    }
    pthread_mutex_unlock(&sw->lock);
}

static void exchange_free(fx_shadow_exchange *x);

void fx_shadow_close_all(fx_shadow_worker *sw)
{
    while (sw && sw->live)
        exchange_free(sw->live);
}

void fx_shadow_worker_free(fx_shadow_worker *sw)
{
    if (!sw)
        return;
    fx_shadow_close_all(sw);
    for (fx_shadow_route *r = sw->routes, *n; r; r = n) {
        n = r->next;
        free(r->name);
        free(r);
    }
    pthread_mutex_destroy(&sw->lock);
    free(sw);
}

/* ---- the exchange -------------------------------------------------------------------------------- */

static void exchange_free(fx_shadow_exchange *x)
{
    fx_shadow_worker *sw = x->sw;
    sw->nlive--;
    if (x->prev)
        x->prev->next = x->next;
    else
        sw->live = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->timer)
        event_free(x->timer);
    if (x->up)
        fx_upconn_free(x->up);
    if (x->pool)
        fx_pool_release(x->pool); /* after the connection: a retired pool may go with it */
    if (x->s_body)
        evbuffer_free(x->s_body);
    if (x->p_body)
        evbuffer_free(x->p_body);
    fx_arena_free(&x->arena);
    fx_config_unref(x->cfg);
    free(x);
}

/* Both sides are in (or one will never be): compare when both answered, then free. */
static void settle(fx_shadow_exchange *x)
{
    if (!(x->s_done || x->s_failed) || !(x->p_done || x->p_gone))
        return;
    if (x->s_done && x->p_done) {
        fx_shadow_route *cell = find_cell(x->sw, x->route->name);
        const fx_shadow_conf *sh = x->route->shadow;
        unsigned compare = sh->compare;
        if ((compare & FX_SHADOW_BODY) && (x->s_over || x->p_over)) {
            compare &= ~(unsigned)FX_SHADOW_BODY;
            if (cell)
                bump(&cell->body_too_large);
        }
        fx_shadow_answer pa = {.status = x->p_status, .headers = x->p_headers, .nheaders = x->p_nheaders};
        fx_shadow_answer sa = {.status = x->resp.status, .headers = x->resp.headers, .nheaders = x->resp.nheaders};
        if (compare & FX_SHADOW_BODY) {
            pa.body_len = evbuffer_get_length(x->p_body);
            pa.body = pa.body_len ? (const char *)evbuffer_pullup(x->p_body, -1) : "";
            sa.body_len = evbuffer_get_length(x->s_body);
            sa.body = sa.body_len ? (const char *)evbuffer_pullup(x->s_body, -1) : "";
        }
        fx_shadow_diff diff;
        unsigned kinds = fx_shadow_compare(compare, sh->ignore, sh->nignore, &pa, &sa, &diff);
        if (cell) {
            bump(&cell->compared);
            if (kinds)
                bump(&cell->mismatched);
        }
        if (cell && kinds) {
            for (int k = 0; k < 3; k++)
                if (kinds & (1u << k))
                    bump(&cell->mismatches[k]);
            if (cell->npairs < FX_SHADOW_MAX_PAIRS) { /* the worker is the only writer: read without the lock */
                fx_shadow_pair *p = &x->meta;
                p->primary_status = x->p_status;
                p->shadow_status = x->resp.status;
                p->kinds = kinds;
                snprintf(p->summary, sizeof(p->summary), "%s", diff.summary);
                pthread_mutex_lock(&x->sw->lock);
                cell->pairs[cell->npairs++] = *p;
                pthread_mutex_unlock(&x->sw->lock);
            }
        }
    }
    exchange_free(x);
}

static void shadow_failed(fx_shadow_exchange *x, int kind, const char *detail)
{
    if (x->s_done || x->s_failed)
        return;
    x->s_failed = 1;
    fx_shadow_route *cell = find_cell(x->sw, x->route->name);
    if (cell)
        bump(&cell->errors[kind]);
    fx_log(FX_LOG_DEBUG, "shadow %s (route %s): %s [request %s]", x->ups->name, x->route->name, detail,
           x->meta.request_id);
    if (x->up) {
        fx_upconn_free(x->up);
        x->up = NULL;
    }
    if (x->timer)
        evtimer_del(x->timer);
    settle(x);
}

static void shadow_complete(fx_shadow_exchange *x)
{
    x->s_done = 1;
    if (x->timer)
        evtimer_del(x->timer);
    fx_upconn *u = x->up;
    x->up = NULL;
    if (x->resp.keep_alive && evbuffer_get_length(u->sock->in) == 0 && evbuffer_get_length(u->sock->out) == 0 &&
        !x->w->draining) {
        u->connected = 1;
        fx_pool_put(u->pool, u);
    } else {
        fx_upconn_free(u);
    }
    settle(x);
}

static int s_chunk(void *ctx, const char *p, size_t n)
{
    fx_shadow_exchange *x = ctx;
    if (!x->s_over && evbuffer_get_length(x->s_body) + n > FX_SHADOW_MAX_BODY) {
        x->s_over = 1;
        evbuffer_drain(x->s_body, evbuffer_get_length(x->s_body));
    }
    if (!x->s_over)
        evbuffer_add(x->s_body, p, n);
    return 0;
}

/* Body bytes of the shadow's answer: kept up to the bound, always consumed. */
static void s_take(fx_shadow_exchange *x, struct evbuffer *in, size_t n)
{
    if (!x->s_over && evbuffer_get_length(x->s_body) + n > FX_SHADOW_MAX_BODY) {
        x->s_over = 1;
        evbuffer_drain(x->s_body, evbuffer_get_length(x->s_body));
    }
    if (x->s_over)
        evbuffer_drain(in, n);
    else
        evbuffer_remove_buffer(in, x->s_body, n);
}

/* Reads what the shadow sent. Returns 1 when the exchange may be gone. */
static int s_pump(fx_shadow_exchange *x)
{
    struct evbuffer *in = x->up->sock->in;
    while (!x->s_head) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        x->s_any = 1;
        size_t want = len < MAX_RESPONSE_HEAD ? len : MAX_RESPONSE_HEAD;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        size_t head_len = 0, skip = 0;
        fx_http_error err;
        int rc = fx_http_scan_head(buf, want, MAX_RESPONSE_HEAD, 0, 0, &head_len, &skip, &err);
        if (rc == 0)
            return 0;
        char *head = rc > 0 ? fx_arena_memdup(&x->arena, buf, head_len) : NULL;
        if (rc > 0)
            evbuffer_drain(in, head_len);
        if (!head || fx_http_parse_response(&x->arena, head, head_len, x->method, 0, &x->resp, &err) < 0) {
            shadow_failed(x, FX_SHADOW_ERR_MALFORMED, rc < 0 || head ? err.detail : "out of memory");
            return 1;
        }
        if (x->resp.status < 200)
            continue; /* interim answers are not compared */
        x->s_head = 1;
        if (x->resp.body == FX_BODY_LENGTH)
            x->s_left = x->resp.content_length;
        else if (x->resp.body == FX_BODY_CHUNKED)
            fx_http_chunked_init(&x->s_chunked, 0, 0, s_chunk, x);
        else if (x->resp.body == FX_BODY_NONE) {
            shadow_complete(x);
            return 1;
        }
    }
    size_t avail = evbuffer_get_length(in);
    if (!avail)
        return 0;
    if (x->resp.body == FX_BODY_LENGTH) {
        size_t n = avail < x->s_left ? avail : (size_t)x->s_left;
        s_take(x, in, n);
        x->s_left -= n;
        if (x->s_left == 0) {
            shadow_complete(x);
            return 1;
        }
    } else if (x->resp.body == FX_BODY_CHUNKED) {
        while (evbuffer_get_length(in) && !x->s_chunked.done) {
            struct evbuffer_iovec v[8];
            int nv = evbuffer_peek(in, -1, NULL, v, 8);
            if (nv > 8)
                nv = 8;
            size_t used = 0;
            for (int i = 0; i < nv && !x->s_chunked.done; i++) {
                const char *why = NULL;
                long r = fx_http_chunked_feed(&x->s_chunked, v[i].iov_base, v[i].iov_len, &why);
                if (r < 0) {
                    shadow_failed(x, FX_SHADOW_ERR_MALFORMED, why ? why : "bad chunked body");
                    return 1;
                }
                used += (size_t)r;
            }
            evbuffer_drain(in, used);
        }
        if (x->s_chunked.done) {
            shadow_complete(x);
            return 1;
        }
    } else { /* FX_BODY_EOF: until the shadow closes */
        s_take(x, in, avail);
    }
    return 0;
}

static void on_up_read(fx_sock *s, void *arg)
{
    (void)s;
    s_pump(arg);
}

static void on_up_write(fx_sock *s, void *arg)
{
    (void)s;
    (void)arg;
}

static int send_copy(fx_shadow_exchange *x);
static void arm_deadline(fx_shadow_exchange *x);

/* A copy sent again on a fresh connection may run twice at the shadow: only without a body and for
 * an idempotent method (the proxy's own stale-connection retry has the same rule). */
static int resendable(const fx_shadow_exchange *x)
{
    return x->body_len == 0 && fx_http_method_idempotent(x->method);
}

static void on_up_event(fx_sock *s, int what, void *arg)
{
    fx_shadow_exchange *x = arg;
    if (what & FX_SOCK_CONNECTED) {
        fx_upconn_connected(x->up);
        fx_sock_set_read_timeout(s, x->ups->timeout_ms);
        arm_deadline(x);
        return;
    }
    if (what & FX_SOCK_TIMEOUT) {
        shadow_failed(x, FX_SHADOW_ERR_TIMEOUT, "no answer within upstreams.timeout");
        return;
    }
    if (what & FX_SOCK_EOF) {
        if (evbuffer_get_length(s->in) && s_pump(x))
            return;
        if (x->s_head && x->resp.body == FX_BODY_EOF) {
            shadow_complete(x);
            return;
        }
        if (!x->s_any && x->up->reused && !x->retried && resendable(x)) {
            /* a pooled connection the shadow had closed: once more on a fresh one */
            x->retried = 1;
            fx_upconn_free(x->up);
            x->up = NULL;
            send_copy(x);
            return;
        }
        shadow_failed(x, FX_SHADOW_ERR_RESET, "closed before the answer was complete");
        return;
    }
    if (what & FX_SOCK_ERROR) {
        if (!x->s_any && x->up->reused && !x->retried && resendable(x)) {
            x->retried = 1;
            fx_upconn_free(x->up);
            x->up = NULL;
            send_copy(x);
            return;
        }
        shadow_failed(x, x->up->connected ? FX_SHADOW_ERR_RESET : FX_SHADOW_ERR_CONNECT, strerror(s->error));
    }
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fx_shadow_exchange *x = arg;
    if (x->up && (x->up->connected || x->up->reused))
        shadow_failed(x, FX_SHADOW_ERR_TIMEOUT, "the whole answer did not come within upstreams.timeout");
    else
        shadow_failed(x, FX_SHADOW_ERR_CONNECT, "connect timed out (upstreams.connect_timeout)");
}

/* Once connected, the whole answer must be in within upstreams.timeout (a shadow that trickles bytes
 * must not hold an exchange — and one of FX_SHADOW_MAX_LIVE — for ever). */
static void arm_deadline(fx_shadow_exchange *x)
{
    uint64_t ms = x->ups->timeout_ms;
    struct timeval tv = fx_ms_tv(ms);
    evtimer_add(x->timer, &tv);
}

/* Connects (or reuses) and queues the copy. Returns 1 when the exchange may be gone. */
static int send_copy(fx_shadow_exchange *x)
{
    const char *why = "no pool";
    x->up = fx_pool_get(x->pool, &why);
    if (!x->up) {
        shadow_failed(x, FX_SHADOW_ERR_CONNECT, why);
        return 1;
    }
    fx_sock_setcb(x->up->sock, on_up_read, on_up_write, on_up_event, x);
    fx_sock_read_enable(x->up->sock);
    if (!x->up->connected && !x->up->reused) {
        uint64_t ms = x->ups->connect_timeout_ms;
        struct timeval tv = fx_ms_tv(ms);
        evtimer_add(x->timer, &tv);
    } else {
        fx_sock_set_read_timeout(x->up->sock, x->ups->timeout_ms);
        arm_deadline(x);
    }
    evbuffer_add(x->up->sock->out, x->head, x->head_len);
    if (x->body_len)
        evbuffer_add(x->up->sock->out, x->body, x->body_len);
    fx_sock_flush(x->up->sock); /* a failure comes back through on_up_event */
    return 0;
}

fx_shadow_exchange *fx_shadow_start(fx_worker *w, fx_config *cfg, const fx_route_conf *r, const fx_http_msg *req,
                                    const char *head, size_t head_len, struct evbuffer *body, int body_whole,
                                    fx_slice request_id)
{
    const fx_shadow_conf *sh = r->shadow;
    fx_shadow_worker *sw = w->shadow;
    if (!sh || !sw || req->upgrade || !(sh->methods & FX_METHOD_BIT(req->method)))
        return NULL;
    if (sh->percent < 100 && fx_rng_next(w->rng) % 100 >= sh->percent)
        return NULL;
    fx_shadow_route *cell = route_cell(sw, r->name);
    size_t body_len = body ? evbuffer_get_length(body) : 0;
    if (!body_whole || body_len > FX_SHADOW_MAX_REQUEST_BODY || sw->nlive >= FX_SHADOW_MAX_LIVE || cfg != w->cfg ||
        sh->upstream < 0 ||
        (size_t)sh->upstream >= w->npools || !w->pools[sh->upstream]) {
        /* a body still streaming or too large to copy; too many copies out already; or a reload landed
         * meanwhile (the pools moved) */
        if (cell)
            bump(&cell->skipped);
        return NULL;
    }
    fx_shadow_exchange *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    fx_arena_init(&x->arena, 4096);
    x->sw = sw;
    x->w = w;
    x->cfg = fx_config_ref(cfg);
    x->route = r;
    x->ups = &cfg->upstreams[sh->upstream];
    x->pool = w->pools[sh->upstream];
    fx_pool_hold(x->pool);
    x->method = req->method;
    x->next = sw->live;
    if (x->next)
        x->next->prev = x;
    sw->live = x;
    sw->nlive++;
    char *hc = fx_arena_memdup(&x->arena, head, head_len);
    char *bc = body_len ? fx_arena_alloc(&x->arena, body_len) : NULL;
    x->timer = evtimer_new(w->base, on_connect_timeout, x);
    x->s_body = evbuffer_new();
    x->p_body = evbuffer_new();
    if (!hc || (body_len && !bc) || !x->timer || !x->s_body || !x->p_body) {
        x->p_gone = x->s_failed = 1; /* nothing sent, nothing counted */
        exchange_free(x);
        return NULL;
    }
    if (body_len)
        evbuffer_copyout(body, bc, body_len);
    x->head = hc;
    x->head_len = head_len;
    x->body = bc;
    x->body_len = body_len;
    if (!(sh->compare & FX_SHADOW_BODY))
        x->p_over = x->s_over = 1; /* bodies not compared: not kept either (read and dropped) */
    clock_gettime(CLOCK_REALTIME, &x->meta.time);
    snprintf(x->meta.request_id, sizeof(x->meta.request_id), "%.*s", (int)(request_id.n > 32 ? 32 : request_id.n),
             request_id.p ? request_id.p : "");
    snprintf(x->meta.method, sizeof(x->meta.method), "%.*s", (int)req->method_s.n, req->method_s.p);
    snprintf(x->meta.path, sizeof(x->meta.path), "%.*s", (int)(req->path.n > 255 ? 255 : req->path.n),
             req->path.p ? req->path.p : "");
    if (cell)
        bump(&cell->requests);
    send_copy(x);
    /* even if the connect failed at once, the exchange waits for the primary (p_gone/p_done) */
    return x;
}

/* ---- the primary's side ------------------------------------------------------------------------- */

void fx_shadow_primary_head(fx_shadow_exchange *x, const fx_http_msg *resp)
{
    x->p_head = 1;
    x->p_status = resp->status;
    x->p_headers = resp->nheaders ? fx_arena_alloc(&x->arena, resp->nheaders * sizeof(*x->p_headers)) : NULL;
    if (!x->p_headers)
        return;
    for (size_t i = 0; i < resp->nheaders; i++) {
        const fx_http_header *h = &resp->headers[i];
        char *n = fx_arena_memdup(&x->arena, h->name.p, h->name.n);
        char *v = fx_arena_memdup(&x->arena, h->value.p, h->value.n ? h->value.n : 1);
        if (!n || !v) {
            x->p_nheaders = i;
            return;
        }
        x->p_headers[i] = (fx_http_header){fx_slice_make(n, h->name.n), fx_slice_make(v, h->value.n), h->flags};
    }
    x->p_nheaders = resp->nheaders;
}

void fx_shadow_primary_body(fx_shadow_exchange *x, const char *p, size_t n)
{
    if (x->p_over || n == 0)
        return;
    if (evbuffer_get_length(x->p_body) + n > FX_SHADOW_MAX_BODY) {
        x->p_over = 1;
        evbuffer_drain(x->p_body, evbuffer_get_length(x->p_body));
        return;
    }
    evbuffer_add(x->p_body, p, n);
}

static int primary_piece(void *arg, const char *p, size_t n)
{
    fx_shadow_exchange *x = arg;
    fx_shadow_primary_body(x, p, n);
    return x->p_over;
}

void fx_shadow_primary_body_buf(fx_shadow_exchange *x, struct evbuffer *src, size_t n)
{
    if (!x->p_over)
        fx_evbuffer_peek_each(src, n, primary_piece, x);
}

void fx_shadow_primary_done(fx_shadow_exchange *x)
{
    if (x->p_head)
        x->p_done = 1;
    else
        x->p_gone = 1;
    settle(x);
}

void fx_shadow_primary_abandon(fx_shadow_exchange *x)
{
    x->p_gone = 1;
    settle(x);
}

/* ---- the admin's sum ---------------------------------------------------------------------------- */

static int earlier(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

void fx_shadow_collect(fx_server *s, const char *name, fx_shadow_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->nworkers; i++) {
        fx_shadow_worker *sw = s->workers[i].shadow;
        if (!sw)
            continue;
        pthread_mutex_lock(&sw->lock);
        for (fx_shadow_route *r = sw->routes; r; r = r->next) {
            if (strcmp(r->name, name) != 0)
                continue;
            out->requests += ld(&r->requests);
            out->skipped += ld(&r->skipped);
            out->body_too_large += ld(&r->body_too_large);
            for (int k = 0; k < 3; k++)
                out->mismatches[k] += ld(&r->mismatches[k]);
            out->compared += ld(&r->compared);
            out->mismatched += ld(&r->mismatched);
            for (int k = 0; k < FX_SHADOW_NERRORS; k++)
                out->errors[k] += ld(&r->errors[k]);
            /* keep the earliest FX_SHADOW_MAX_PAIRS over all workers, oldest first (insertion) */
            for (unsigned j = 0; j < r->npairs; j++) {
                const fx_shadow_pair *p = &r->pairs[j];
                unsigned at = out->npairs;
                while (at > 0 && earlier(&p->time, &out->pairs[at - 1].time))
                    at--;
                if (at >= FX_SHADOW_MAX_PAIRS)
                    continue;
                unsigned last = out->npairs < FX_SHADOW_MAX_PAIRS ? out->npairs : FX_SHADOW_MAX_PAIRS - 1;
                memmove(&out->pairs[at + 1], &out->pairs[at], (last - at) * sizeof(*p));
                out->pairs[at] = *p;
                if (out->npairs < FX_SHADOW_MAX_PAIRS)
                    out->npairs++;
            }
        }
        pthread_mutex_unlock(&sw->lock);
    }
}

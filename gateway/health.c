/*
 * health.c — target health states, passive ejection and active checks (see health.h).
 *
 *   fx_health_state_get / _put   the registry: one state per upstream (name + targets),
 *                                shared by the workers' pools and the checker
 *   fx_health_outcome            a worker's passive outlier detection (its own slot)
 *   fx_health_configure          main thread: one check set per upstream with `health`;
 *                                a reload keeps the sets whose upstream and checks stay
 *   on_tick → probe_start        every interval, one GET per target (never two at once)
 *   on_probe_read / _event /
 *   on_probe_deadline → probe_done   2xx passes, anything else fails; `unhealthy`
 *                                failures in a row mark a target down, `healthy`
 *                                passes in a row mark it up again
 *   fx_health_metrics / _upstream_json   what /metrics and /admin/upstreams say
 *
 * Probes are HTTP/1.1 over a bufferevent on the main thread's event_base:
 * "GET path", Connection: close, and only the status line is read. An
 * upstream with `tls` is probed over TLS (bufferevent_openssl) with its own
 * context, name and verification, so a target whose certificate fails is down.
 */
#include "health.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "tls.h"

#define PROBE_MAX_STATUS_LINE 4096

const char *const fx_breaker_limit_names[FX_BREAKER_NLIMITS] = {"max_connections", "max_pending"};

typedef struct check_set check_set;

/* One target's checks. */
typedef struct probe {
    check_set *set;
    size_t t;
    struct bufferevent *bev;      /* the probe in flight, or NULL */
    struct event *deadline;
    unsigned passes, fails;       /* in a row, since the last change of state */
    uint64_t checks_ok, checks_failed;
    char last_error[160];         /* why the last failed probe failed ("" after a pass) */
} probe;

/* The checks of one upstream. */
struct check_set {
    check_set *next;
    fx_health *h;
    fx_health_state *st;          /* a reference */
    char *path;
    uint64_t interval_ms, timeout_ms;
    unsigned healthy, unhealthy;
    fx_addr *addrs;               /* copies of the targets (text not owned: st->targets) */
    fx_tls_client_conf tls;       /* tls.ctx: a reference, NULL for plain HTTP; server_name owned */
    struct event *tick;
    probe *probes;                /* [st->ntargets] */
};

struct fx_health {
    pthread_mutex_t lock;         /* the registry: states list and their refs */
    fx_health_state *states;
    unsigned nworkers;
    uint64_t eject_base_ms;
    struct event_base *base;      /* the checker's (main thread), once configured */
    check_set *sets;
};

/* ---- the registry ------------------------------------------------------------------------------ */

fx_health *fx_health_new(unsigned nworkers)
{
    fx_health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    h->nworkers = nworkers ? nworkers : 1;
    h->eject_base_ms = FX_EJECT_BASE_MS;
    /* tests only: a short first ejection keeps the return of an ejected target testable */
    const char *knob = getenv("FICUS_TEST_EJECT_BASE_MS");
    if (knob && *knob) {
        char *end;
        unsigned long long v = strtoull(knob, &end, 10);
        if (*end == '\0' && v > 0 && v <= FX_EJECT_MAX_MS) {
            h->eject_base_ms = v;
            fx_log(FX_LOG_WARN, "FICUS_TEST_EJECT_BASE_MS: outlier ejection starts at %llu ms (a test setting)", v);
        }
    }
    return h;
}

static int state_matches(const fx_health_state *st, const fx_upstream_conf *u)
{
    if (strcmp(st->name, u->name) != 0 || st->ntargets != u->ntargets)
        return 0;
    for (size_t i = 0; i < u->ntargets; i++)
        if (strcmp(st->targets[i], u->targets[i].text) != 0)
            return 0;
    return 1;
}

static void state_free(fx_health_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; st->targets && i < st->ntargets; i++)
        free(st->targets[i]);
    free(st->targets);
    free(st->name);
    free(st->down);
    free(st->ejections);
    free(st->slots);
    free(st);
}

static fx_health_state *state_new(const fx_health *h, const fx_upstream_conf *u)
{
    fx_health_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    size_t n = u->ntargets ? u->ntargets : 1;
    st->ntargets = u->ntargets;
    st->nworkers = h->nworkers;
    st->eject_base_ms = h->eject_base_ms;
    st->name = strdup(u->name);
    st->targets = calloc(n, sizeof(*st->targets));
    st->down = calloc(n, sizeof(*st->down));
    st->ejections = calloc(n, sizeof(*st->ejections));
    st->slots = calloc(n * h->nworkers, sizeof(*st->slots));
    int ok = st->name && st->targets && st->down && st->ejections && st->slots;
    for (size_t i = 0; ok && i < u->ntargets; i++)
        ok = (st->targets[i] = strdup(u->targets[i].text)) != NULL;
    if (!ok) {
        state_free(st);
        return NULL;
    }
    return st;
}

fx_health_state *fx_health_state_get(fx_health *h, const fx_upstream_conf *u)
{
    if (!h)
        return NULL;
    pthread_mutex_lock(&h->lock);
    fx_health_state *st = h->states;
    while (st && !state_matches(st, u))
        st = st->next;
    if (!st && (st = state_new(h, u))) {
        st->next = h->states;
        h->states = st;
    }
    if (st)
        st->refs++;
    pthread_mutex_unlock(&h->lock);
    return st;
}

void fx_health_state_put(fx_health *h, fx_health_state *st)
{
    if (!h || !st)
        return;
    pthread_mutex_lock(&h->lock);
    if (--st->refs == 0) {
        for (fx_health_state **pp = &h->states; *pp; pp = &(*pp)->next) {
            if (*pp == st) {
                *pp = st->next;
                break;
            }
        }
        state_free(st);
    }
    pthread_mutex_unlock(&h->lock);
}

/* ---- passive outlier detection (worker threads) ------------------------------------------------- */

void fx_health_outcome(fx_health_state *st, unsigned w, size_t t, int ok)
{
    if (!st || w >= st->nworkers || t >= st->ntargets)
        return;
    fx_health_slot *s = &st->slots[w * st->ntargets + t];
    if (ok) {
        s->fails = 0;
        s->level = 0;
        return;
    }
    if (++s->fails < FX_EJECT_AFTER)
        return;
    s->fails = 0;
    uint64_t ms = st->eject_base_ms;
    for (unsigned i = 0; i < s->level && ms < FX_EJECT_MAX_MS; i++)
        ms *= 2;
    if (ms > FX_EJECT_MAX_MS)
        ms = FX_EJECT_MAX_MS;
    s->level++;
    atomic_store_explicit(&s->ejected_until_ms, fx_mono_ms() + ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->ejections[t], 1, memory_order_relaxed);
    fx_log(FX_LOG_WARN, "upstream %s: target %s ejected by worker %u for %llu ms after %d failures in a row",
           st->name, st->targets[t], w, (unsigned long long)ms, FX_EJECT_AFTER);
}

/* Workers that have target t ejected right now. */
static unsigned ejected_by(const fx_health_state *st, size_t t, uint64_t now)
{
    unsigned n = 0;
    for (unsigned w = 0; w < st->nworkers; w++)
        if (atomic_load_explicit(&st->slots[w * st->ntargets + t].ejected_until_ms, memory_order_relaxed) > now)
            n++;
    return n;
}

/* ---- active checks (main thread) ---------------------------------------------------------------- */

static void probe_done(probe *p, int ok, const char *why)
{
    check_set *set = p->set;
    fx_health_state *st = set->st;
    if (p->bev) {
        bufferevent_free(p->bev);
        p->bev = NULL;
    }
    evtimer_del(p->deadline);
    int down = atomic_load_explicit(&st->down[p->t], memory_order_relaxed);
    if (ok) {
        p->checks_ok++;
        p->last_error[0] = '\0';
        p->fails = 0;
        if (down && ++p->passes >= set->healthy) {
            p->passes = 0;
            atomic_store_explicit(&st->down[p->t], 0, memory_order_relaxed);
            fx_log(FX_LOG_INFO, "upstream %s: target %s is up again (%u health checks passed)", st->name,
                   st->targets[p->t], set->healthy);
        }
        return;
    }
    p->checks_failed++;
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    p->passes = 0;
    if (!down && ++p->fails >= set->unhealthy) {
        p->fails = 0;
        atomic_store_explicit(&st->down[p->t], 1, memory_order_relaxed);
        fx_log(FX_LOG_WARN, "upstream %s: target %s is down: %u health checks of GET %s failed, the last: %s",
               st->name, st->targets[p->t], set->unhealthy, set->path, why);
    }
}

static void on_probe_read(struct bufferevent *bev, void *arg)
{
    probe *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > PROBE_MAX_STATUS_LINE)
            probe_done(p, 0, "the response has no status line");
        return;
    }
    char line[64] = {0};
    evbuffer_copyout(in, line, sizeof(line) - 1);
    int code = 0;
    /* "HTTP/1.x NNN ..." */
    if (strncmp(line, "HTTP/1.", 7) == 0 && line[8] == ' ' && line[9] >= '1' && line[9] <= '5' && line[10] >= '0' &&
        line[10] <= '9' && line[11] >= '0' && line[11] <= '9')
        code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (code >= 200 && code <= 299) {
        probe_done(p, 1, NULL);
        return;
    }
    char why[64];
    if (code)
        snprintf(why, sizeof(why), "status %d", code);
    else
        snprintf(why, sizeof(why), "not an HTTP/1.x response");
    probe_done(p, 0, why);
}

static void on_probe_event(struct bufferevent *bev, short what, void *arg)
{
    probe *p = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    char why[160];
    SSL *ssl = p->set->tls.ctx ? bufferevent_openssl_get_ssl(bev) : NULL;
    unsigned long tls_err = ssl ? bufferevent_get_openssl_error(bev) : 0;
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if ((what & BEV_EVENT_ERROR) && ssl && p->set->tls.verify && verify != X509_V_OK) {
        snprintf(why, sizeof(why), "TLS: certificate verify failed: %s", X509_verify_cert_error_string(verify));
    } else if ((what & BEV_EVENT_ERROR) && tls_err) {
        const char *r = ERR_reason_error_string(tls_err);
        snprintf(why, sizeof(why), "TLS: %s", r ? r : "handshake failed");
    } else if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(why, sizeof(why), "%s", err ? strerror(err) : "connection failed");
    } else {
        snprintf(why, sizeof(why), "the connection closed before a status line");
    }
    probe_done(p, 0, why);
}

static void on_probe_deadline(evutil_socket_t fd, short what, void *arg)
{
    probe *p = arg;
    char why[64];
    snprintf(why, sizeof(why), "no answer within %llu ms", (unsigned long long)p->set->timeout_ms);
    probe_done(p, 0, why);
}

static void probe_start(probe *p)
{
    check_set *set = p->set;
    if (p->bev)
        return; /* the previous one is still out (its deadline ends it) */
    const fx_addr *a = &set->addrs[p->t];
    if (set->tls.ctx) {
        SSL *ssl = fx_tls_client_ssl(set->tls.ctx, &set->tls, a);
        p->bev = ssl ? bufferevent_openssl_socket_new(set->h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL; /* frees ssl when it fails */
        if (p->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(p->bev, 1);
    } else {
        p->bev = bufferevent_socket_new(set->h->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!p->bev) {
        probe_done(p, 0, "out of memory or sockets");
        return;
    }
    bufferevent_setcb(p->bev, on_probe_read, NULL, on_probe_event, p);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(p->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ficus-health-check\r\nConnection: close\r\n\r\n",
                        set->path, set->st->targets[p->t]);
    struct timeval tv = fx_ms_tv(set->timeout_ms);
    evtimer_add(p->deadline, &tv);
    if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&a->sa, (int)a->salen) < 0)
        probe_done(p, 0, "cannot open a connection");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    check_set *set = arg;
    for (size_t t = 0; t < set->st->ntargets; t++)
        probe_start(&set->probes[t]);
}

static void set_free(check_set *set)
{
    if (!set)
        return;
    for (size_t t = 0; set->probes && t < set->st->ntargets; t++) {
        if (set->probes[t].bev)
            bufferevent_free(set->probes[t].bev);
        if (set->probes[t].deadline)
            event_free(set->probes[t].deadline);
    }
    if (set->tick)
        event_free(set->tick);
    free(set->probes);
    free(set->addrs);
    free(set->path);
    SSL_CTX_free(set->tls.ctx);
    free(set->tls.server_name);
    fx_health_state_put(set->h, set->st);
    free(set);
}

/* The upstream's TLS settings of the current snapshot (a kept set takes the new context too). */
static int set_tls(check_set *set, const fx_upstream_conf *u)
{
    SSL_CTX_free(set->tls.ctx);
    free(set->tls.server_name);
    memset(&set->tls, 0, sizeof(set->tls));
    if (!u->tls || !u->tls->ctx)
        return 0;
    set->tls.verify = u->tls->verify;
    if (u->tls->server_name && !(set->tls.server_name = strdup(u->tls->server_name)))
        return -1;
    SSL_CTX_up_ref(u->tls->ctx);
    set->tls.ctx = u->tls->ctx;
    return 0;
}

static check_set *set_new(fx_health *h, const fx_upstream_conf *u)
{
    check_set *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->h = h;
    if (!(set->st = fx_health_state_get(h, u))) {
        free(set);
        return NULL;
    }
    const fx_health_conf *hc = u->health;
    size_t n = u->ntargets ? u->ntargets : 1;
    set->path = strdup(hc->path ? hc->path : "/");
    set->interval_ms = hc->interval_ms ? hc->interval_ms : 1;
    set->timeout_ms = hc->timeout_ms ? hc->timeout_ms : 1;
    set->healthy = hc->healthy ? hc->healthy : 1;
    set->unhealthy = hc->unhealthy ? hc->unhealthy : 1;
    set->addrs = calloc(n, sizeof(*set->addrs));
    set->probes = calloc(n, sizeof(*set->probes));
    set->tick = event_new(h->base, -1, EV_PERSIST, on_tick, set);
    int ok = set->path && set->addrs && set->probes && set->tick && set_tls(set, u) == 0;
    for (size_t t = 0; ok && t < u->ntargets; t++) {
        set->addrs[t] = u->targets[t];
        set->addrs[t].text = set->st->targets[t]; /* for the TLS name when there is no server_name */
        set->probes[t].set = set;
        set->probes[t].t = t;
        ok = (set->probes[t].deadline = evtimer_new(h->base, on_probe_deadline, &set->probes[t])) != NULL;
    }
    struct timeval tv = fx_ms_tv(set->interval_ms);
    if (!ok || event_add(set->tick, &tv) < 0) {
        set_free(set);
        return NULL;
    }
    return set;
}

static int same_checks(const check_set *set, const fx_upstream_conf *u)
{
    const fx_health_conf *hc = u->health;
    return state_matches(set->st, u) && strcmp(set->path, hc->path ? hc->path : "/") == 0 &&
           set->interval_ms == hc->interval_ms && set->timeout_ms == hc->timeout_ms &&
           set->healthy == hc->healthy && set->unhealthy == hc->unhealthy;
}

int fx_health_configure(fx_health *h, struct event_base *base, const fx_config *cfg)
{
    if (!h || !base)
        return 0;
    h->base = base;
    check_set *old = h->sets, *fresh = NULL, **tail = &fresh;
    int rc = 0;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_upstream_conf *u = &cfg->upstreams[i];
        if (!u->health || u->ntargets == 0)
            continue;
        check_set *set = NULL;
        for (check_set **pp = &old; *pp; pp = &(*pp)->next) {
            if (same_checks(*pp, u)) {
                set = *pp;
                *pp = set->next;
                if (set_tls(set, u) < 0)
                    fx_log(FX_LOG_ERROR, "upstream %s: out of memory; its health checks go without TLS", u->name);
                break;
            }
        }
        if (!set) {
            if (!(set = set_new(h, u))) {
                fx_log(FX_LOG_ERROR, "upstream %s: cannot start its health checks (out of memory)", u->name);
                rc = -1;
                continue;
            }
            on_tick(-1, 0, set); /* the first round now: a dead target is found within `unhealthy` rounds */
        }
        set->next = NULL;
        *tail = set;
        tail = &set->next;
    }
    h->sets = fresh;
    /* checks that ended: their targets count as up, unless a new set checks the same upstream */
    for (check_set *set = old, *next; set; set = next) {
        next = set->next;
        int still = 0;
        for (check_set *s = fresh; s; s = s->next)
            still |= s->st == set->st;
        if (!still)
            for (size_t t = 0; t < set->st->ntargets; t++)
                atomic_store_explicit(&set->st->down[t], 0, memory_order_relaxed);
        set_free(set);
    }
    return rc;
}

void fx_health_stop(fx_health *h)
{
    if (!h)
        return;
    for (check_set *set = h->sets, *next; set; set = next) {
        next = set->next;
        set_free(set);
    }
    h->sets = NULL;
}

void fx_health_free(fx_health *h)
{
    if (!h)
        return;
    fx_health_stop(h);
    while (h->states) {
        /* a leak elsewhere would leave one: free it rather than keep it */
        fx_health_state *st = h->states;
        h->states = st->next;
        state_free(st);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ---- what the admin shows ---------------------------------------------------------------------- */

static void label(struct evbuffer *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n') {
            evbuffer_add(b, "\\n", 2);
            continue;
        }
        if (*s == '"' || *s == '\\')
            evbuffer_add(b, "\\", 1);
        evbuffer_add(b, s, 1);
    }
}

static const check_set *find_set(const fx_health *h, const fx_health_state *st)
{
    for (const check_set *s = h->sets; s; s = s->next)
        if (s->st == st)
            return s;
    return NULL;
}

void fx_health_metrics(fx_health *h, const fx_config *cfg, struct evbuffer *b)
{
    if (!h)
        return;
    fx_health_state **sts = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*sts));
    if (!sts)
        return;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        sts[i] = fx_health_state_get(h, &cfg->upstreams[i]);
    uint64_t now = fx_mono_ms();
    evbuffer_add_printf(b, "# HELP ficus_upstream_health Whether a target takes traffic: 1 up, 0 down (failed "
                           "its health checks, or ejected by a worker for consecutive failures).\n"
                           "# TYPE ficus_upstream_health gauge\n");
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_health_state *st = sts[i];
        for (size_t t = 0; st && t < st->ntargets; t++) {
            int up = !atomic_load_explicit(&st->down[t], memory_order_relaxed) && ejected_by(st, t, now) == 0;
            evbuffer_add_printf(b, "ficus_upstream_health{upstream=\"");
            label(b, st->name);
            evbuffer_add_printf(b, "\",target=\"");
            label(b, st->targets[t]);
            evbuffer_add_printf(b, "\"} %d\n", up);
        }
    }
    evbuffer_add_printf(b, "# HELP ficus_upstream_ejections_total Targets ejected by a worker's outlier "
                           "detection (consecutive failures).\n"
                           "# TYPE ficus_upstream_ejections_total counter\n");
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_health_state *st = sts[i];
        for (size_t t = 0; st && t < st->ntargets; t++) {
            evbuffer_add_printf(b, "ficus_upstream_ejections_total{upstream=\"");
            label(b, st->name);
            evbuffer_add_printf(b, "\",target=\"");
            label(b, st->targets[t]);
            evbuffer_add_printf(b, "\"} %lu\n",
                                (unsigned long)atomic_load_explicit(&st->ejections[t], memory_order_relaxed));
        }
    }
    evbuffer_add_printf(b, "# HELP ficus_breaker_open_total Requests answered 503 at once because an upstream's "
                           "circuit breaker limit was reached.\n"
                           "# TYPE ficus_breaker_open_total counter\n");
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_health_state *st = sts[i];
        for (int l = 0; st && l < FX_BREAKER_NLIMITS; l++) {
            evbuffer_add_printf(b, "ficus_breaker_open_total{upstream=\"");
            label(b, st->name);
            evbuffer_add_printf(b, "\",limit=\"%s\"} %lu\n", fx_breaker_limit_names[l],
                                (unsigned long)atomic_load_explicit(&st->breaker_open[l], memory_order_relaxed));
        }
    }
    for (size_t i = 0; i < cfg->nupstreams; i++)
        fx_health_state_put(h, sts[i]);
    free(sts);
}

static void json_text(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            evbuffer_add_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            evbuffer_add_printf(b, "\\u%04x", ch);
        else
            evbuffer_add(b, s, 1);
    }
    evbuffer_add(b, "\"", 1);
}

void fx_health_upstream_json(fx_health *h, const fx_upstream_conf *u, struct evbuffer *b)
{
    fx_health_state *st = fx_health_state_get(h, u);
    if (!st)
        return;
    const check_set *set = find_set(h, st);
    if (u->health) {
        evbuffer_add_printf(b, ",\"health\":{\"path\":");
        json_text(b, u->health->path ? u->health->path : "/");
        evbuffer_add_printf(b, ",\"interval_ms\":%" PRIu64 ",\"timeout_ms\":%" PRIu64 ",\"healthy\":%u,\"unhealthy\":%u}",
                            u->health->interval_ms, u->health->timeout_ms, u->health->healthy, u->health->unhealthy);
    }
    evbuffer_add_printf(b, ",\"max_pending\":%u,\"max_connections\":%u,\"breaker_open\":{", u->max_pending,
                        u->max_connections);
    for (int l = 0; l < FX_BREAKER_NLIMITS; l++)
        evbuffer_add_printf(b, "%s\"%s\":%lu", l ? "," : "", fx_breaker_limit_names[l],
                            (unsigned long)atomic_load_explicit(&st->breaker_open[l], memory_order_relaxed));
    evbuffer_add_printf(b, "},\"targets_state\":[");
    uint64_t now = fx_mono_ms();
    for (size_t t = 0; t < st->ntargets; t++) {
        int down = atomic_load_explicit(&st->down[t], memory_order_relaxed);
        unsigned ej = ejected_by(st, t, now);
        const probe *p = set ? &set->probes[t] : NULL;
        evbuffer_add_printf(b, "%s{\"address\":", t ? "," : "");
        json_text(b, st->targets[t]);
        evbuffer_add_printf(b, ",\"state\":\"%s\",\"active_check\":\"%s\",\"ejected_by_workers\":%u,"
                               "\"ejections\":%lu",
                            down ? "down" : ej ? "ejected" : "up", !p ? "off" : down ? "failing" : "passing", ej,
                            (unsigned long)atomic_load_explicit(&st->ejections[t], memory_order_relaxed));
        if (p) {
            evbuffer_add_printf(b, ",\"checks_ok\":%" PRIu64 ",\"checks_failed\":%" PRIu64 ",\"last_error\":",
                                p->checks_ok, p->checks_failed);
            if (p->last_error[0])
                json_text(b, p->last_error);
            else
                evbuffer_add(b, "null", 4);
        }
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "]", 1);
    fx_health_state_put(h, st);
}

/*
 * server.c — workers, listeners, reload and the process lifecycle (see server.h).
 *
 *   fx_server_start   one listening socket per worker per address (SO_REUSEPORT),
 *                     then the worker threads, each running its own event_base
 *   fx_server_run     the main thread: signals, the admin listener, --watch;
 *                     drain → hard stop after the grace period
 *   fx_server_reload  main thread: load + validate off the hot path, open new
 *                     listeners, publish the snapshot, tell the workers
 *   worker_reload     a worker adopts the snapshot: pools matched by upstream
 *                     (name + targets), listeners moved, opened or closed,
 *                     request metrics re-bound by route and upstream name
 *   on_ctl            a worker's mailbox: drain / stop / reload / keys / events bits
 *   on_keys           main thread: new jwks_uri key sets (jwks.c) into every
 *                     worker's mailbox
 *   health            the active checks (health.c) run on the main thread's
 *                     event_base from fx_server_run; a reload reconfigures them
 *
 * The kernel spreads new connections over the workers' sockets; a worker
 * never touches another's connections, pools or buffers. In-flight requests
 * hold a reference to the snapshot they started with and finish on it.
 */
#include "server.h"

#include "authorize.h"
#include "clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <sys/stat.h>

#include "admin.h"
#include "events.h"
#include "health.h"
#include "jwks.h"
#include "log.h"
#include "proxy.h"
#include "shadow.h"
#include "upstream.h"

fx_config *fx_server_config(fx_server *s)
{
    fx_config *c = atomic_load_explicit(&s->cfg, memory_order_acquire);
    return fx_config_ref(c);
}

const char *fx_worker_date(fx_worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

void fx_worker_request_id(fx_worker *w, char out[33])
{
    fx_log_id(w->rng, out);
}

/* The end of a loop turn: this turn's events go to the events thread together. */
static void on_ev_flush(evutil_socket_t fd, short what, void *arg)
{
    fx_worker *w = arg;
    if (w->ev_out)
        fx_events_submit_chain(w->server->events, w->ev_out, w->ev_out_oldest);
    w->ev_out = w->ev_out_oldest = NULL;
}

void fx_worker_submit_event(fx_worker *w, struct fx_event_ticket *t)
{
    t->next = w->ev_out;
    if (!w->ev_out) {
        w->ev_out_oldest = t;
        event_active(w->ev_flush, EV_TIMEOUT, 0); /* after the callbacks already queued in this turn */
    }
    w->ev_out = t;
}

int fx_worker_random(fx_worker *w, unsigned char *out, size_t n)
{
    if (n > 64)
        return -1;
    if (w->rand_left < n) {
        if (RAND_bytes(w->rand_pool, (int)sizeof(w->rand_pool)) != 1)
            return -1;
        w->rand_left = sizeof(w->rand_pool);
    }
    unsigned char *p = w->rand_pool + sizeof(w->rand_pool) - w->rand_left;
    memcpy(out, p, n);
    memset(p, 0, n); /* each byte is handed out once */
    w->rand_left -= (unsigned)n;
    return 0;
}

const char *const fx_tls_hs_names[FX_TLS_HS_N] = {"ok", "failed", "abandoned"};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    fx_worker *w = arg;
    struct ssl_ctx_st *tls = NULL;
    /* the listeners follow the worker's snapshot, index for index */
    for (size_t i = 0; i < w->nlisteners && i < w->cfg->nlistens; i++)
        if (w->listeners[i] == l && w->cfg->listens[i].tls)
            tls = w->cfg->listens[i].tls->ctx;
    fx_proxy_accept(w, fd, sa, salen, tls);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep serving what we have; the listener retries on the next event */
    fx_log(FX_LOG_ERROR, "accept: %s", evutil_socket_error_to_string(err));
}

static void free_listeners(fx_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

static int same_addr(const fx_addr *a, const fx_addr *b)
{
    return a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

static void worker_reload(fx_worker *w, unsigned gen)
{
    fx_server *s = w->server;
    fx_config *n = fx_server_config(s), *o = w->cfg;
    if (n == o || w->draining) {
        fx_config_unref(n);
        free(w->pending_fds);
        w->pending_fds = NULL;
        atomic_store(&w->reload_acked, gen);
        return;
    }
    /* pools: keep the warm ones whose upstream is unchanged */
    fx_pool **np = calloc(n->nupstreams ? n->nupstreams : 1, sizeof(*np));
    struct evconnlistener **nl = calloc(n->nlistens ? n->nlistens : 1, sizeof(*nl));
    if (!np || !nl) {
        /* keep serving on the old snapshot rather than half-apply the new one */
        fx_log(FX_LOG_ERROR, "worker %u: out of memory applying a reload; keeping the old config", w->id);
        free(np);
        free(nl);
        fx_config_unref(n);
        atomic_store(&w->reload_acked, gen);
        return;
    }
    for (size_t u = 0; u < n->nupstreams; u++) {
        for (size_t k = 0; k < w->npools; k++) {
            if (w->pools[k] && fx_pool_matches(w->pools[k], &n->upstreams[u])) {
                np[u] = w->pools[k];
                fx_pool_adopt(np[u], n, &n->upstreams[u]);
                w->pools[k] = NULL;
                break;
            }
        }
        if (!np[u])
            np[u] = fx_pool_new(w, n, &n->upstreams[u]);
    }
    for (size_t k = 0; k < w->npools; k++)
        if (w->pools[k])
            fx_pool_retire(w->pools[k]);
    free(w->pools);
    w->pools = np;
    w->npools = n->nupstreams;

    /* listeners: move the ones whose address stays, adopt the sockets the main thread opened */
    for (size_t i = 0; i < n->nlistens; i++) {
        int fd = w->pending_fds ? w->pending_fds[i] : -1;
        if (fd < 0) {
            for (size_t j = 0; j < w->nlisteners && j < o->nlistens; j++) {
                if (w->listeners[j] && same_addr(&o->listens[j].addr, &n->listens[i].addr)) {
                    nl[i] = w->listeners[j];
                    w->listeners[j] = NULL;
                    break;
                }
            }
        } else {
            nl[i] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, fd);
            if (nl[i])
                evconnlistener_set_error_cb(nl[i], on_accept_error);
            else
                close(fd);
        }
    }
    free_listeners(w);
    w->listeners = nl;
    w->nlisteners = n->nlistens;
    free(w->pending_fds);
    w->pending_fds = NULL;

    w->access = s->access;
    w->access.owned = 0;
    w->decisions = s->decisions;
    w->decisions.owned = 0;
    /* counters follow route and upstream names; before o goes, the maps being replaced index it */
    if (fx_stats_bind(&w->stats, n) < 0)
        fx_log(FX_LOG_ERROR, "worker %u: out of memory re-binding request metrics; this worker's requests "
                             "are not counted until the next reload", w->id);
    fx_shadow_bind(w->shadow, n); /* shadow counters of routes that are gone go with them */
    w->cfg = n;
    fx_config_unref(o);
    atomic_store(&w->reload_acked, gen);
}

static void worker_drain(fx_worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    free_listeners(w);
    for (size_t i = 0; i < w->npools; i++)
        fx_pool_close_idle(w->pools[i]);
    fx_proxy_drain(w);
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    fx_worker *w = arg;
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    unsigned orders = atomic_exchange(&w->ctl, 0);
    if (orders & FX_CTL_STOP) {
        event_base_loopbreak(w->base);
        return;
    }
    if (orders & FX_CTL_KEYS)
        fx_authn_take_keys(&w->authn);
    if (orders & FX_CTL_EVENTS)
        fx_proxy_events_returned(w);
    if (orders & FX_CTL_RELOAD)
        worker_reload(w, atomic_load(&w->server->reload_gen_published));
    if (orders & FX_CTL_DRAIN) {
        worker_drain(w);
        if (w->nconns == 0)
            event_base_loopexit(w->base, NULL);
    }
}

static void *worker_main(void *arg)
{
    fx_worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    event_base_dispatch(w->base);
    on_ev_flush(-1, 0, w); /* a loop stopped mid-turn: its events still go */
    fx_proxy_close_all(w);
    fx_shadow_close_all(w->shadow); /* after the clients: their exchanges are let go first */
    for (size_t i = 0; i < w->npools; i++)
        fx_pool_close_idle(w->pools[i]);
    free_listeners(w);
    /* run pending finalizers so sockets close when this worker is done */
    for (int i = 0; i < 4; i++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    return NULL;
}

/* A listening socket for one worker. *port_out carries the port picked for ":0" to the next workers. */
static int open_listener(const fx_addr *a, unsigned *port, char *shown, size_t shown_len)
{
    struct sockaddr_storage ss = a->sa;
    if (*port) {
        if (ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)*port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)*port);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, a->salen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned p;
        if (bound.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, host, sizeof(host));
            p = ntohs(((struct sockaddr_in *)&bound)->sin_port);
            snprintf(shown, shown_len, "%s:%u", host, p);
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, host, sizeof(host));
            p = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
            snprintf(shown, shown_len, "[%s]:%u", host, p);
        }
        *port = p;
    }
    return fd;
}

/* Opens one socket per worker for listen `l` of cfg; fds[w] gets them. -1 after logging why. */
static int open_listen_sockets(fx_server *s, const fx_config *cfg, size_t l, int *fds, fx_diags *d)
{
    unsigned port = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        fds[i] = -1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        char shown[80] = "";
        fds[i] = open_listener(&cfg->listens[l].addr, &port, shown, sizeof(shown));
        if (fds[i] < 0) {
            int e = errno;
            if (d)
                fx_diags_add(d, cfg->file, cfg->listens[l].line, cfg->listens[l].col,
                             "listen[%zu].address: cannot listen on %s: %s", l,
                             cfg->listens[l].addr.text, strerror(e));
            else
                fx_log(FX_LOG_ERROR, "%s:%d:%d: error: listen[%zu].address: cannot listen on %s: %s",
                       cfg->file, cfg->listens[l].line, cfg->listens[l].col, l,
                       cfg->listens[l].addr.text, strerror(e));
            for (unsigned k = 0; k < i; k++)
                close(fds[k]);
            return -1;
        }
        if (i == 0)
            fx_log(FX_LOG_INFO, "listening on %s (%u workers)", shown, s->nworkers);
    }
    return 0;
}

int fx_server_start(fx_server *s, fx_config *cfg, const char *config_path)
{
    memset(s, 0, sizeof(*s));
    atomic_store(&s->cfg, cfg);
    s->access.fd = s->old_access.fd = -1;
    s->decisions.fd = s->old_decisions.fd = -1;
    s->config_path = strdup(config_path);
    s->nworkers = cfg->workers ? cfg->workers : 1;
    s->workers = calloc(s->nworkers, sizeof(fx_worker));
    if (!s->workers || !s->config_path)
        return -1;
    for (unsigned i = 0; i < s->nworkers; i++)
        s->workers[i].ctl_fd = -1;
    if (!(s->jwks = fx_jwks_new())) {
        fx_log(FX_LOG_ERROR, "cannot create the jwks_uri fetcher: %s", strerror(errno));
        return -1;
    }
    if (!(s->health = fx_health_new(s->nworkers))) {
        fx_log(FX_LOG_ERROR, "cannot create the upstream health registry: out of memory");
        return -1;
    }
    if (fx_access_log_open(&s->access, cfg->log.access, cfg->log.access_file) < 0) {
        fx_log(FX_LOG_ERROR, "log.access: cannot open '%s': %s", cfg->log.access_file,
               strerror(errno));
        return -1;
    }
    if (fx_access_log_open(&s->decisions, cfg->log.decisions, cfg->log.decisions_file) < 0) {
        fx_log(FX_LOG_ERROR, "log.decisions: cannot open '%s': %s", cfg->log.decisions_file,
               strerror(errno));
        return -1;
    }
    if (fx_route_stats_bind(&s->route_stats, cfg) < 0 || fx_authn_worker_init(&s->api_authn) < 0)
        return -1;
    if (cfg->events) {
        /* before the listeners: the spool's undelivered events go out before any new ones */
        char err[512];
        if (!(s->events = fx_events_start(cfg->events, err, sizeof(err)))) {
            fx_log(FX_LOG_ERROR, "%s", err);
            return -1;
        }
    }
    s->api_authn.bell = fx_jwks_get_bell(s->jwks); /* an unknown kid asks for a refetch, as at the edge */
    if (getrandom(s->api_rng, sizeof(s->api_rng), 0) != sizeof(s->api_rng) || (s->api_rng[0] | s->api_rng[1]) == 0) {
        s->api_rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        s->api_rng[1] = 0x9e3779b97f4a7c15ull;
    }
    int *fds = calloc((cfg->nlistens ? cfg->nlistens : 1) * s->nworkers, sizeof(int));
    if (!fds)
        return -1;
    for (size_t l = 0; l < cfg->nlistens; l++) {
        if (open_listen_sockets(s, cfg, l, fds + l * s->nworkers, NULL) < 0) {
            for (size_t k = 0; k < l * s->nworkers; k++)
                close(fds[k]);
            free(fds);
            return -1;
        }
    }
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    int rc = 0;
    for (unsigned i = 0; i < s->nworkers && rc == 0; i++) {
        fx_worker *w = &s->workers[i];
        w->id = i;
        w->server = s;
        w->cfg = fx_config_ref(cfg);
        w->access = s->access;
        w->access.owned = 0;
        w->decisions = s->decisions;
        w->decisions.owned = 0;
        uint64_t seed[2] = {0, 0};
        if (getrandom(seed, sizeof(seed), 0) != sizeof(seed) || (seed[0] | seed[1]) == 0) {
            seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
            seed[1] = 0x9e3779b97f4a7c15ull ^ i;
        }
        w->rng[0] = seed[0];
        w->rng[1] = seed[1];
        if (fx_authn_worker_init(&w->authn) < 0) {
            rc = -1;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (fx_stats_init(&w->stats, cfg, (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u) < 0) {
            rc = -1;
            break;
        }
        w->authn.bell = fx_jwks_get_bell(s->jwks);
        if (!(w->shadow = fx_shadow_worker_new())) {
            rc = -1;
            break;
        }
        w->base = event_base_new_with_config(ec);
        w->pools = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*w->pools));
        w->listeners = calloc(cfg->nlistens ? cfg->nlistens : 1, sizeof(*w->listeners));
        if (!w->base || !w->pools || !w->listeners) {
            rc = -1;
            break;
        }
        w->npools = cfg->nupstreams;
        for (size_t u = 0; u < cfg->nupstreams && rc == 0; u++)
            if (!(w->pools[u] = fx_pool_new(w, cfg, &cfg->upstreams[u])))
                rc = -1;
        w->nlisteners = cfg->nlistens;
        for (size_t l = 0; l < cfg->nlistens; l++) {
            int fd = fds[l * s->nworkers + i];
            fds[l * s->nworkers + i] = -1;
            w->listeners[l] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, fd);
            if (!w->listeners[l]) {
                close(fd);
                rc = -1;
                continue;
            }
            evconnlistener_set_error_cb(w->listeners[l], on_accept_error);
        }
        w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->ctl_fd < 0)
            rc = -1;
        else if (!(w->ctl_ev = event_new(w->base, w->ctl_fd, EV_READ | EV_PERSIST, on_ctl, w)) ||
                 event_add(w->ctl_ev, NULL) < 0)
            rc = -1;
        if (!(w->ev_flush = event_new(w->base, -1, 0, on_ev_flush, w)))
            rc = -1;
    }
    for (size_t k = 0; k < cfg->nlistens * s->nworkers; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    free(fds);
    event_config_free(ec);
    if (rc < 0)
        return -1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            fx_log(FX_LOG_ERROR, "cannot start worker thread %u", i);
            return -1;
        }
    }
    return 0;
}

/* ---- reload (main thread) ------------------------------------------------------------ */

static void tell_workers(fx_server *s, unsigned orders)
{
    uint64_t one = 1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (s->workers[i].ctl_fd < 0)
            continue;
        atomic_fetch_or(&s->workers[i].ctl, orders);
        ssize_t r = write(s->workers[i].ctl_fd, &one, sizeof(one));
        (void)r;
    }
}

/* jwks.c has new key sets: into every worker's mailbox, then wake them. */
static void on_keys(fx_jwks_table *t, void *arg)
{
    fx_server *s = arg;
    for (unsigned i = 0; i < s->nworkers; i++)
        fx_authn_offer_keys(&s->workers[i].authn, t);
    fx_authn_offer_keys(&s->api_authn, t);
    fx_authn_take_keys(&s->api_authn); /* the decision API runs here, on the main thread */
    tell_workers(s, FX_CTL_KEYS);
}

/* Has every worker applied the last reload? Waits up to `ms`. */
static int workers_caught_up(fx_server *s, int ms)
{
    for (int waited = 0;; waited++) {
        int all = 1;
        for (unsigned i = 0; i < s->nworkers; i++)
            if (s->workers[i].thread && atomic_load(&s->workers[i].reload_acked) != s->reload_gen)
                all = 0;
        if (all)
            return 1;
        if (waited >= ms)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int same_sink(int a, const char *afile, int b, const char *bfile)
{
    if (a != b)
        return 0;
    if (a != FX_LOG_FILE)
        return 1;
    return afile && bfile && strcmp(afile, bfile) == 0;
}

static int same_log(const fx_log_conf *a, const fx_log_conf *b)
{
    return same_sink(a->access, a->access_file, b->access, b->access_file);
}

static int same_decision_log(const fx_log_conf *a, const fx_log_conf *b)
{
    return same_sink(a->decisions, a->decisions_file, b->decisions, b->decisions_file);
}

int fx_server_reload(fx_server *s, fx_diags *d)
{
    if (atomic_load(&s->draining)) {
        fx_diags_add(d, s->config_path, 0, 0, "the gateway is shutting down; reload refused");
        return -1;
    }
    if (!workers_caught_up(s, 2000)) {
        fx_diags_add(d, s->config_path, 0, 0, "the previous reload is still being applied; try again");
        atomic_fetch_add(&s->reloads_error, 1);
        return -1;
    }
    /* the workers are done with the sinks before the previous reload */
    fx_access_log_close(&s->old_access);
    fx_access_log_close(&s->old_decisions);

    fx_config *n = fx_config_load(s->config_path, d);
    fx_config *o = fx_server_config(s);
    int ok = n != NULL;
    if (ok && n->workers != s->nworkers)
        fx_log(FX_LOG_WARN, "%s: workers: changing from %u to %u takes a restart; keeping %u",
               n->file, s->nworkers, n->workers, s->nworkers);

    /* listeners new in this config: open them now, so a port in use fails the reload */
    int *fds = NULL;
    if (ok) {
        fds = calloc((n->nlistens ? n->nlistens : 1) * s->nworkers, sizeof(int));
        ok = fds != NULL;
        for (size_t l = 0; ok && l < n->nlistens; l++) {
            int keep = 0;
            for (size_t j = 0; j < o->nlistens; j++)
                keep |= same_addr(&o->listens[j].addr, &n->listens[l].addr);
            if (keep) {
                for (unsigned i = 0; i < s->nworkers; i++)
                    fds[l * s->nworkers + i] = -1;
            } else if (open_listen_sockets(s, n, l, fds + l * s->nworkers, d) < 0) {
                for (size_t k = 0; k < l * s->nworkers; k++)
                    if (fds[k] >= 0)
                        close(fds[k]);
                ok = 0;
            }
        }
    }
    /* the rest can fail too; then everything this reload opened is closed again below */
    int opened = ok, prepared = 0;
    if (ok && s->admin)
        ok = prepared = fx_admin_prepare(s->admin, n, d) == 0;
    fx_access_log access = {.fd = -1}, decisions = {.fd = -1};
    if (ok && !same_log(&n->log, &o->log) &&
        fx_access_log_open(&access, n->log.access, n->log.access_file) < 0) {
        fx_diags_add(d, n->file, 0, 0, "log.access: cannot open '%s': %s", n->log.access_file,
                     strerror(errno));
        ok = 0;
    }
    if (ok && !same_decision_log(&n->log, &o->log) &&
        fx_access_log_open(&decisions, n->log.decisions, n->log.decisions_file) < 0) {
        fx_diags_add(d, n->file, 0, 0, "log.decisions: cannot open '%s': %s", n->log.decisions_file,
                     strerror(errno));
        ok = 0;
    }
    if (ok && fx_route_stats_bind(&s->route_stats, n) < 0) {
        fx_diags_add(d, n->file, 0, 0, "out of memory");
        ok = 0;
    }
    /* events: the spool and the producer stay as they were started; a first `events` section starts them
     * (the last step that can fail, so undoing it is stopping it) */
    char everr[512];
    if (ok && s->events && n->events && fx_events_compatible(s->events, n->events, everr, sizeof(everr)) < 0) {
        fx_diags_add(d, n->file, 0, 0, "%s", everr);
        ok = 0;
    }
    if (ok && !s->events && n->events) {
        if (!(s->events = fx_events_start(n->events, everr, sizeof(everr)))) {
            fx_diags_add(d, n->file, 0, 0, "%s", everr);
            ok = 0;
        }
    }
    if (!ok && opened) {
        fx_access_log_close(&access);
        fx_access_log_close(&decisions);
        for (size_t k = 0; k < n->nlistens * s->nworkers; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (prepared)
            fx_admin_abort(s->admin);
    }
    if (!ok) {
        free(fds);
        if (n)
            fx_config_unref(n);
        fx_config_unref(o);
        atomic_fetch_add(&s->reloads_error, 1);
        return -1;
    }
    if (!same_log(&n->log, &o->log)) {
        s->old_access = s->access;
        s->access = access;
    }
    if (!same_decision_log(&n->log, &o->log)) {
        s->old_decisions = s->decisions;
        s->decisions = decisions;
    }
    fx_log_set_level(n->log.level);
    for (unsigned i = 0; i < s->nworkers; i++) {
        fx_worker *w = &s->workers[i];
        w->pending_fds = malloc((n->nlistens ? n->nlistens : 1) * sizeof(int));
        for (size_t l = 0; w->pending_fds && l < n->nlistens; l++)
            w->pending_fds[l] = fds[l * s->nworkers + i];
        if (!w->pending_fds)
            for (size_t l = 0; l < n->nlistens; l++)
                if (fds[l * s->nworkers + i] >= 0)
                    close(fds[l * s->nworkers + i]);
    }
    free(fds);
    fx_config *prev = atomic_exchange(&s->cfg, n);
    fx_config_unref(prev); /* the server's own reference; workers and requests hold theirs */
    s->reload_gen++;
    atomic_store(&s->reload_gen_published, s->reload_gen);
    tell_workers(s, FX_CTL_RELOAD);
    fx_jwks_configure(s->jwks, n); /* unchanged jwks_uri keep their keys; new ones are fetched */
    fx_health_configure(s->health, s->main_base, n); /* unchanged checks keep their counters */
    if (s->admin)
        fx_admin_commit(s->admin, n);
    size_t npol = n->policies ? fx_policy_set_count(n->policies->set) : 0;
    size_t opol = o->policies ? fx_policy_set_count(o->policies->set) : 0;
    fx_config_unref(o);
    atomic_fetch_add(&s->reloads_ok, 1);
    fx_log(FX_LOG_INFO, "reloaded %s (sha256 %.12s…: %zu routes, %zu upstreams, %zu policies, was %zu)", n->file,
           n->hash, n->nroutes, n->nupstreams, npol, opol);
    return 0;
}

static void reload_and_log(fx_server *s, const char *why)
{
    fx_diags d = {0};
    if (fx_server_reload(s, &d) < 0) {
        fx_log(FX_LOG_ERROR, "%s: reload failed; the running config stays. %zu error%s:", why, d.n,
               d.n == 1 ? "" : "s");
        fx_diags_print(&d, stderr);
    }
    fx_diags_free(&d);
}

typedef struct main_ctx {
    fx_server *s;
    struct event *drain_timer;
    struct event *poll_timer;
    struct event *watch_timer;
    uint64_t watched;             /* watch_stamp() as last seen by --watch */
    int watch_pending;            /* it changed; reload when the next poll sees it unchanged */
    int stopping;
} main_ctx;

static uint64_t mix_stat(uint64_t h, const char *path)
{
    struct stat st;
    uint64_t v[6] = {0, 0, 0, 0, 0, 1}; /* a missing file counts as a state of its own */
    if (stat(path, &st) == 0) {
        v[0] = (uint64_t)st.st_ino;
        v[1] = (uint64_t)st.st_dev;
        v[2] = (uint64_t)st.st_size;
        v[3] = (uint64_t)st.st_mtim.tv_sec;
        v[4] = (uint64_t)st.st_mtim.tv_nsec;
        v[5] = 0;
    }
    for (int i = 0; i < 6; i++)
        h = (h ^ v[i]) * 0x100000001b3ull;
    return h;
}

/* What --watch compares: the config file, every policy file of the running config, and
 * the directories those are in (a file added that a glob would match changes its
 * directory). */
static uint64_t watch_stamp(fx_server *s)
{
    uint64_t h = mix_stat(0xcbf29ce484222325ull, s->config_path);
    fx_config *cfg = fx_server_config(s);
    for (size_t i = 0; cfg->policies && i < cfg->policies->nfiles; i++) {
        const char *f = cfg->policies->files[i];
        h = mix_stat(h, f);
        const char *slash = strrchr(f, '/');
        char dir[4096];
        snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - f) : 1, slash ? f : ".");
        h = mix_stat(h, dir[0] ? dir : "/");
    }
    fx_config_unref(cfg);
    return h;
}

/* --watch: poll the files twice a second (editors replace files, so inotify on the
 * path alone would miss a rename); reload once they changed and then stayed put
 * for one poll, so a file caught mid-write is not reloaded half-written */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    main_ctx *m = arg;
    if (m->stopping)
        return;
    uint64_t stamp = watch_stamp(m->s);
    if (stamp != m->watched) {
        m->watched = stamp;
        m->watch_pending = 1;
        return;
    }
    if (m->watch_pending) {
        m->watch_pending = 0;
        reload_and_log(m->s, "--watch");
        m->watched = watch_stamp(m->s); /* the new config may name other policy files */
    }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    main_ctx *m = arg;
    fx_log(FX_LOG_WARN, "drain period over: closing the remaining connections");
    tell_workers(m->s, FX_CTL_STOP);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    main_ctx *m = arg;
    for (unsigned i = 0; i < m->s->nworkers; i++)
        if (m->s->workers[i].thread && pthread_tryjoin_np(m->s->workers[i].thread, NULL) == 0)
            m->s->workers[i].thread = 0;
    for (unsigned i = 0; i < m->s->nworkers; i++)
        if (m->s->workers[i].thread)
            return;
    event_base_loopbreak(m->s->main_base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    main_ctx *m = arg;
    fx_server *s = m->s;
    if (sig == SIGHUP) {
        reload_and_log(s, "SIGHUP");
        return;
    }
    if (m->stopping) {
        fx_log(FX_LOG_WARN, "second %s: stopping now", sig == SIGINT ? "SIGINT" : "SIGTERM");
        tell_workers(s, FX_CTL_STOP);
        return;
    }
    m->stopping = 1;
    atomic_store(&s->draining, 1);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->drain_started_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    fx_config *cfg = fx_server_config(s);
    uint64_t ms = cfg->limits.drain_timeout_ms;
    fx_config_unref(cfg);
    fx_log(FX_LOG_INFO, "%s: draining (up to %llu ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
           (unsigned long long)ms);
    tell_workers(s, FX_CTL_DRAIN);
    struct timeval tv = fx_ms_tv(ms);
    evtimer_add(m->drain_timer, &tv);
    struct timeval p = {0, 20000};
    event_add(m->poll_timer, &p);
}

int fx_server_run(fx_server *s)
{
    s->main_base = event_base_new();
    if (!s->main_base)
        return 1;
    main_ctx m = {.s = s};
    m.drain_timer = evtimer_new(s->main_base, on_drain_timeout, &m);
    m.poll_timer = event_new(s->main_base, -1, EV_PERSIST, on_poll, &m);
    struct event *sigs[3];
    int signos[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(s->main_base, signos[i], on_signal, &m);
        event_add(sigs[i], NULL);
    }
    fx_config *cfg = fx_server_config(s);
    {
        /* always present (without a listener when admin.address is absent): a reload may add one */
        s->admin = fx_admin_start(s, s->main_base, cfg);
        /* jwks_uri key sets: fetched from now on; /readyz answers 503 until they are in */
        if (s->admin && fx_jwks_start(s->jwks, s->main_base, cfg, on_keys, s) < 0) {
            fx_admin_free(s->admin);
            s->admin = NULL;
        }
        /* active health checks: from now on, beside the key fetches */
        if (s->admin)
            fx_health_configure(s->health, s->main_base, cfg);
        if (!s->admin) {
            fx_jwks_stop(s->jwks);
            fx_config_unref(cfg);
            for (int i = 0; i < 3; i++)
                event_free(sigs[i]);
            event_free(m.drain_timer);
            event_free(m.poll_timer);
            return 1;
        }
    }
    fx_config_unref(cfg);
    if (s->watch) {
        m.watched = watch_stamp(s);
        m.watch_timer = event_new(s->main_base, -1, EV_PERSIST, on_watch, &m);
        struct timeval half = {0, 500000};
        event_add(m.watch_timer, &half);
    }
    event_base_dispatch(s->main_base);
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    event_free(m.drain_timer);
    event_free(m.poll_timer);
    if (m.watch_timer)
        event_free(m.watch_timer);
    fx_admin_free(s->admin);
    s->admin = NULL;
    fx_jwks_stop(s->jwks);
    fx_health_stop(s->health);
    fx_log(FX_LOG_INFO, "stopped");
    return 0;
}

void fx_server_free(fx_server *s)
{
    if (s->workers) {
        tell_workers(s, FX_CTL_STOP);
        for (unsigned i = 0; i < s->nworkers; i++) {
            fx_worker *w = &s->workers[i];
            if (w->thread)
                pthread_join(w->thread, NULL);
            w->thread = 0;
            fx_proxy_close_all(w); /* an event still being captured is handed over now */
            if (s->events && w->ev_out)
                on_ev_flush(-1, 0, w);
        }
    }
    if (s->events) {
        /* after the workers: every event they made is in its inbox; what Kafka does not acknowledge
         * within the drain period stays in the spool for the next start */
        fx_config *c = atomic_load(&s->cfg);
        uint64_t grace = c ? c->limits.drain_timeout_ms : 5000;
        if (s->drain_started_ms) {
            /* what is left of the drain period (at least a second to flush what is ready) */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            uint64_t spent = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 - s->drain_started_ms;
            grace = spent + 1000 < grace ? grace - spent : 1000;
        }
        fx_events_stop(s->events, grace);
        s->events = NULL;
    }
    if (s->workers) {
        for (unsigned i = 0; i < s->nworkers; i++) {
            fx_worker *w = &s->workers[i];
            for (fx_event_ticket *t = fx_events_take_returned(w), *n; t; t = n) {
                n = t->next;
                fx_event_ticket_free(t);
            }
            free_listeners(w);
            if (w->pools) {
                for (size_t p = 0; p < w->npools; p++)
                    fx_pool_free(w->pools[p]);
                free(w->pools);
            }
            if (w->pending_fds) {
                for (size_t l = 0; w->cfg && l < atomic_load(&s->cfg)->nlistens; l++)
                    if (w->pending_fds[l] >= 0)
                        close(w->pending_fds[l]);
                free(w->pending_fds);
            }
            if (w->ctl_ev)
                event_free(w->ctl_ev);
            if (w->ev_flush)
                event_free(w->ev_flush);
            if (w->ctl_fd >= 0)
                close(w->ctl_fd);
            if (w->base)
                event_base_free(w->base);
            if (w->cfg)
                fx_config_unref(w->cfg);
            fx_authn_worker_free(&w->authn);
            fx_stats_free(&w->stats);
            fx_shadow_worker_free(w->shadow); /* its exchanges were closed by worker_main */
            w->shadow = NULL;
        }
        free(s->workers);
        s->workers = NULL;
    }
    fx_admin_free(s->admin);
    s->admin = NULL;
    fx_jwks_free(s->jwks); /* the workers are gone: nobody rings its bell any more */
    s->jwks = NULL;
    fx_health_free(s->health); /* after the pools: they held its states */
    s->health = NULL;
    if (s->main_base)
        event_base_free(s->main_base);
    s->main_base = NULL;
    fx_access_log_close(&s->access);
    fx_access_log_close(&s->old_access);
    fx_access_log_close(&s->decisions);
    fx_access_log_close(&s->old_decisions);
    fx_route_stats_free(s->route_stats);
    fx_authn_worker_free(&s->api_authn);
    free(s->config_path);
    s->config_path = NULL;
    fx_config *c = atomic_exchange(&s->cfg, NULL);
    if (c)
        fx_config_unref(c);
}

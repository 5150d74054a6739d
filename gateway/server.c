/*
 * server.c — workers, listeners and the process lifecycle (see server.h).
 *
 *   fx_server_start   one listening socket per worker per address (SO_REUSEPORT),
 *                     then the worker threads, each running its own event_base
 *   fx_server_run     the main thread: signals → drain → hard stop after the grace period
 *   worker_main       a worker's loop; on_ctl takes the main thread's drain/stop orders
 *
 * The kernel spreads new connections over the workers' sockets; a worker
 * never touches another's connections, pools or buffers.
 */
#include "server.h"

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
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "upstream.h"

enum { CTL_DRAIN = 1, CTL_STOP = 2 };

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

/* xorshift128+: fast, good enough for ids (not for secrets) */
static uint64_t rng_next(fx_worker *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

void fx_worker_request_id(fx_worker *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = rng_next(w), b = rng_next(w);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    fx_proxy_accept(arg, fd, sa, salen);
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

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    fx_worker *w = arg;
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    if (v >= CTL_STOP) {
        event_base_loopbreak(w->base);
        return;
    }
    if (!w->draining) {
        w->draining = 1;
        free_listeners(w);
        for (size_t i = 0; i < w->npools; i++)
            fx_pool_close_idle(&w->pools[i]);
        fx_proxy_drain(w);
    }
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
    fx_worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    event_base_dispatch(w->base);
    fx_proxy_close_all(w);
    for (size_t i = 0; i < w->npools; i++)
        fx_pool_close_idle(&w->pools[i]);
    free_listeners(w);
    /* libevent closes freed bufferevents from finalizer callbacks: run them now,
     * so the sockets close when this worker is done, not when the process exits */
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

int fx_server_start(fx_server *s, fx_config *cfg)
{
    memset(s, 0, sizeof(*s));
    atomic_store(&s->cfg, cfg);
    s->nworkers = cfg->workers ? cfg->workers : 1;
    s->workers = calloc(s->nworkers, sizeof(fx_worker));
    if (!s->workers)
        return -1;
    fx_access_log access;
    if (fx_access_log_open(&access, cfg->log.access, cfg->log.access_file) < 0) {
        fx_log(FX_LOG_ERROR, "log.access: cannot open '%s': %s", cfg->log.access_file,
               strerror(errno));
        return -1;
    }
    unsigned *ports = calloc(cfg->nlistens ? cfg->nlistens : 1, sizeof(unsigned));
    if (!ports)
        return -1;
    for (unsigned i = 0; i < s->nworkers; i++)
        s->workers[i].ctl_fd = -1;
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    for (unsigned i = 0; i < s->nworkers; i++) {
        fx_worker *w = &s->workers[i];
        w->id = i;
        w->server = s;
        w->ctl_fd = -1;
        w->access = access;
        w->access.owned = i == 0 ? access.owned : 0;
        uint64_t seed[2] = {0, 0};
        if (getrandom(seed, sizeof(seed), 0) != sizeof(seed) || (seed[0] | seed[1]) == 0) {
            seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
            seed[1] = 0x9e3779b97f4a7c15ull ^ i;
        }
        w->rng[0] = seed[0];
        w->rng[1] = seed[1];
        w->base = event_base_new_with_config(ec);
        if (!w->base)
            goto fail;
        w->npools = cfg->nupstreams;
        w->pools = calloc(w->npools ? w->npools : 1, sizeof(fx_pool));
        if (!w->pools)
            goto fail;
        for (size_t u = 0; u < cfg->nupstreams; u++)
            if (fx_pool_init(&w->pools[u], w, &cfg->upstreams[u]) < 0)
                goto fail;
        w->listeners = calloc(cfg->nlistens, sizeof(*w->listeners));
        if (!w->listeners)
            goto fail;
        for (size_t l = 0; l < cfg->nlistens; l++) {
            char shown[80] = "";
            int fd = open_listener(&cfg->listens[l].addr, &ports[l], shown, sizeof(shown));
            if (fd < 0) {
                fx_log(FX_LOG_ERROR, "%s:%d:%d: error: listen %s: %s", cfg->file,
                       cfg->listens[l].line, cfg->listens[l].col, cfg->listens[l].addr.text,
                       strerror(errno));
                goto fail;
            }
            w->listeners[l] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1,
                                                 fd);
            if (!w->listeners[l]) {
                close(fd);
                goto fail;
            }
            w->nlisteners = l + 1;
            evconnlistener_set_error_cb(w->listeners[l], on_accept_error);
            if (i == 0)
                fx_log(FX_LOG_INFO, "listening on %s (%u workers)", shown, s->nworkers);
        }
        w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->ctl_fd < 0)
            goto fail;
        w->ctl_ev = event_new(w->base, w->ctl_fd, EV_READ | EV_PERSIST, on_ctl, w);
        if (!w->ctl_ev || event_add(w->ctl_ev, NULL) < 0)
            goto fail;
    }
    event_config_free(ec);
    ec = NULL;
    free(ports);
    ports = NULL;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            fx_log(FX_LOG_ERROR, "cannot start worker thread %u", i);
            s->nworkers = i; /* the started ones are stopped by fx_server_free */
            return -1;
        }
    }
    return 0;
fail:
    if (ec)
        event_config_free(ec);
    free(ports);
    for (unsigned i = 0; i < s->nworkers; i++)
        s->workers[i].thread = 0;
    return -1;
}

typedef struct main_ctx {
    fx_server *s;
    struct event *drain_timer;
    struct event *poll_timer;
    int stopping;
} main_ctx;

static void tell_workers(fx_server *s, uint64_t v)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        ssize_t r = write(s->workers[i].ctl_fd, &v, sizeof(v));
        (void)r;
    }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    main_ctx *m = arg;
    fx_log(FX_LOG_WARN, "drain period over: closing the remaining connections");
    tell_workers(m->s, CTL_STOP);
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
        fx_log(FX_LOG_WARN, "SIGHUP: configuration reload is not built yet; keeping the running config");
        return;
    }
    if (m->stopping) {
        fx_log(FX_LOG_WARN, "second %s: stopping now", sig == SIGINT ? "SIGINT" : "SIGTERM");
        tell_workers(s, CTL_STOP);
        return;
    }
    m->stopping = 1;
    atomic_store(&s->draining, 1);
    fx_config *cfg = fx_server_config(s);
    uint64_t ms = cfg->limits.drain_timeout_ms;
    fx_config_unref(cfg);
    fx_log(FX_LOG_INFO, "%s: draining (up to %llu ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
           (unsigned long long)ms);
    tell_workers(s, CTL_DRAIN);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
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
    event_base_dispatch(s->main_base);
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    event_free(m.drain_timer);
    event_free(m.poll_timer);
    fx_log(FX_LOG_INFO, "stopped");
    return 0;
}

void fx_server_free(fx_server *s)
{
    if (s->workers) {
        tell_workers(s, CTL_STOP);
        for (unsigned i = 0; i < s->nworkers; i++) {
            fx_worker *w = &s->workers[i];
            if (w->thread)
                pthread_join(w->thread, NULL);
            free_listeners(w);
            if (w->pools) {
                for (size_t p = 0; p < w->npools; p++)
                    fx_pool_free(&w->pools[p]);
                free(w->pools);
            }
            if (w->ctl_ev)
                event_free(w->ctl_ev);
            if (w->ctl_fd >= 0)
                close(w->ctl_fd);
            if (w->base)
                event_base_free(w->base);
            if (w->access.owned)
                fx_access_log_close(&w->access);
        }
        free(s->workers);
        s->workers = NULL;
    }
    if (s->main_base)
        event_base_free(s->main_base);
    s->main_base = NULL;
    fx_config *c = atomic_exchange(&s->cfg, NULL);
    if (c)
        fx_config_unref(c);
}

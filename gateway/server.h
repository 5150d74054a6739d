/*
 * server.h — the process: workers (one thread + event_base + listener
 * sockets each), the current config snapshot, start, drain and stop.
 *
 * Types first. Nothing here is touched on the request path except through
 * the worker a connection belongs to; the only shared mutable things are
 * the current-config pointer (swapped atomically) and a few atomic
 * counters (active connections).
 */
#ifndef FX_SERVER_H
#define FX_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "authn.h"
#include "config.h"
#include "log.h"
#include "stats.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct fx_server fx_server;
typedef struct fx_conn fx_conn;
typedef struct fx_pool fx_pool;

/* Orders from the main thread to a worker (bits in fx_worker.ctl). FX_CTL_KEYS: new
 * jwks_uri key sets wait in the worker's authn mailbox (fx_authn_take_keys). */
enum {
    FX_CTL_DRAIN = 1u << 0, FX_CTL_STOP = 1u << 1, FX_CTL_RELOAD = 1u << 2, FX_CTL_KEYS = 1u << 3,
    FX_CTL_EVENTS = 1u << 4, /* event tickets came back (events.h: fx_events_take_returned) */
};

/* How a client's TLS handshake ended (ficus_tls_handshakes_total{result}). */
enum { FX_TLS_HS_OK, FX_TLS_HS_FAILED, FX_TLS_HS_ABANDONED, FX_TLS_HS_N };
extern const char *const fx_tls_hs_names[FX_TLS_HS_N];

typedef struct fx_worker {
    unsigned id;
    fx_server *server;
    pthread_t thread;
    struct event_base *base;
    fx_config *cfg;               /* this worker's snapshot; its pools and listeners follow it */
    struct evconnlistener **listeners; /* aligned with cfg->listens */
    size_t nlisteners;
    int *pending_fds;             /* reload: one socket per listen of the new config, -1 = keep */
    int ctl_fd;                   /* eventfd: "look at ctl" */
    struct event *ctl_ev;
    atomic_uint ctl;              /* FX_CTL_* bits set by the main thread */
    atomic_uint reload_acked;     /* generation of the last reload this worker applied */
    fx_pool **pools;              /* aligned with cfg->upstreams */
    size_t npools;
    fx_conn *conns;               /* every client connection of this worker */
    unsigned nconns;
    int draining;
    uint64_t rng[2];              /* xorshift128+ for request ids */
    time_t date_sec;              /* cached Date header value */
    char date[40];
    fx_access_log access;         /* a copy of the server's sink (never owned here) */
    fx_access_log decisions;      /* the same for the decision log */
    fx_authn_worker authn;        /* verified-token cache and rejection counters */
    fx_stats_worker stats;        /* request metrics by route and upstream (stats.h): this worker
                                     writes them, the admin sums every worker's */
    unsigned char rand_pool[1024];/* CSPRNG output (RAND_bytes), handed out by fx_worker_random */
    unsigned rand_left;           /* unused bytes at the end of rand_pool (0 at start: refill) */
    _Atomic(struct fx_event_ticket *) ev_returned; /* tickets back from the events thread (a stack) */
    struct fx_event_ticket *ev_out, *ev_out_oldest; /* made this loop turn, newest first: handed over
                                                     together at the end of the turn (ev_flush) */
    struct event *ev_flush;
    struct fx_shadow_worker *shadow; /* shadow exchanges and their counters (shadow.h) */
    atomic_ulong tls_handshakes[FX_TLS_HS_N]; /* client handshakes on TLS listeners, by how they ended */
} fx_worker;

struct fx_admin;
struct fx_jwks;
struct fx_health;
struct fx_events;
struct fx_event_ticket;

struct fx_server {
    _Atomic(fx_config *) cfg;     /* newest snapshot; workers adopt it on FX_CTL_RELOAD */
    char *config_path;
    fx_worker *workers;
    unsigned nworkers;
    atomic_uint nconns;           /* client connections, all workers */
    atomic_int draining;
    struct event_base *main_base;
    unsigned reload_gen;          /* main thread only */
    atomic_uint reload_gen_published;
    atomic_ulong reloads_ok;
    atomic_ulong reloads_error;
    fx_access_log access;         /* current access log sink */
    fx_access_log old_access;     /* the previous one, closed once every worker moved on */
    fx_access_log decisions;      /* decision log sink (log.decisions), and its previous one */
    fx_access_log old_decisions;
    struct fx_route_stats *route_stats; /* authz counters by route name (main thread adds) */
    fx_authn_worker api_authn;    /* the decision API's token cache (main thread) */
    uint64_t api_rng[2];          /* its decision ids */
    struct fx_admin *admin;
    struct fx_jwks *jwks;         /* jwks_uri fetcher (main thread); its bell is rung by workers */
    struct fx_health *health;     /* target health states (pools read them) and the active checker
                                     (main thread) */
    int watch;                    /* --watch: reload when the file changes */
    uint64_t drain_started_ms;    /* CLOCK_MONOTONIC ms of the SIGTERM/SIGINT that began the drain; 0: none */
    struct fx_events *events;     /* the events thread, when the config has `events` (started at start or
                                     at the first reload that adds the section) */
};

/* Opens listeners and starts the worker threads. 0, or -1 after logging why. */
int fx_server_start(fx_server *s, fx_config *cfg, const char *config_path);
/*
 * Main thread: loads config_path again and, if it is valid and its new
 * listeners can be opened, makes it the running snapshot (workers adopt it
 * at their next loop turn; in-flight requests finish on the old one).
 * Returns 0, or -1 with every error in `diags` and the old config kept.
 */
int fx_server_reload(fx_server *s, fx_diags *diags);
/* Watch the config file and reload when it changes (polls every second). */
void fx_server_watch(fx_server *s);
/* Runs the main loop (signals) until drained or stopped; returns the exit code. */
int fx_server_run(fx_server *s);
void fx_server_free(fx_server *s);

/* The newest snapshot with one reference taken for the caller (any thread). */
fx_config *fx_server_config(fx_server *s);
/* The worker's snapshot with one reference taken (worker thread only). */
static inline fx_config *fx_worker_config(fx_worker *w)
{
    return fx_config_ref(w->cfg);
}

/* Fills w->date with the current IMF-fixdate (cached per second). */
const char *fx_worker_date(fx_worker *w);
/* 32 lowercase hex characters + NUL. */
void fx_worker_request_id(fx_worker *w, char out[33]);
/* Hands an event ticket to the events thread at the end of this loop turn, together with the
 * turn's other tickets (one push, one wake-up, one spool commit for all of them). */
void fx_worker_submit_event(fx_worker *w, struct fx_event_ticket *t);
/* n (≤ 64) bytes from a CSPRNG, drawn 1 KiB at a time (event ids). 0, or -1 if RAND_bytes failed. */
int fx_worker_random(fx_worker *w, unsigned char *out, size_t n);

#endif

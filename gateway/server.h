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

#include "config.h"
#include "log.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct fx_server fx_server;
typedef struct fx_conn fx_conn;
typedef struct fx_pool fx_pool;

typedef struct fx_worker {
    unsigned id;
    fx_server *server;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener **listeners;
    size_t nlisteners;
    int ctl_fd;                   /* eventfd: the main thread's "drain" / "stop" */
    struct event *ctl_ev;
    fx_pool *pools;               /* one per upstream of the config, indexed like it */
    size_t npools;
    fx_conn *conns;               /* every client connection of this worker */
    unsigned nconns;
    int draining;
    uint64_t rng[2];              /* xorshift128+ for request ids */
    time_t date_sec;              /* cached Date header value */
    char date[40];
    fx_access_log access;
} fx_worker;

struct fx_server {
    _Atomic(fx_config *) cfg;     /* current snapshot */
    fx_worker *workers;
    unsigned nworkers;
    atomic_uint nconns;           /* client connections, all workers */
    atomic_int draining;
    struct event_base *main_base;
};

/* Opens listeners and starts the worker threads. 0, or -1 after logging why. */
int fx_server_start(fx_server *s, fx_config *cfg);
/* Runs the main loop (signals) until drained or stopped; returns the exit code. */
int fx_server_run(fx_server *s);
void fx_server_free(fx_server *s);

/* The current snapshot with one reference taken for the caller. */
fx_config *fx_server_config(fx_server *s);

/* Fills w->date with the current IMF-fixdate (cached per second). */
const char *fx_worker_date(fx_worker *w);
/* 32 lowercase hex characters + NUL. */
void fx_worker_request_id(fx_worker *w, char out[33]);

#endif

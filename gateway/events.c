/*
 * events.c — the events thread (see events.h).
 *
 *   fx_events_start   spool open + recovery, embedded broker, producer, thread
 *   on_wake           the inbox: tickets from workers → spool (one commit per
 *                     batch) → async tickets back → backlog
 *   produce_backlog   the backlog, in order, into the producer until it is full
 *   on_delivery       delivery reports: done mark, counters, sync tickets back;
 *                     permanent failures to the dead-letter topic or quarantine
 *   on_tick           retries after a full queue, done marks committed, a
 *                     producer that hit a fatal error replaced
 *   fx_events_stop    flush within the grace period, hand back every ticket
 *
 * Ownership: an event's bytes live in one `pend` from intake to its delivery
 * report (librdkafka references them without copying). Every pend is on
 * exactly one list: the backlog (waiting to be produced, ordered by intake)
 * or in flight (produced, waiting for its report). A ticket goes back to its
 * worker exactly once.
 *
 * Counters the main thread reads (/metrics, /admin/events) are atomics or
 * sit behind `stats_lock`, which only this thread and the admin take —
 * never a worker.
 */
#include "events.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "devbroker.h"
#include "log.h"
#include "server.h"
#include "spool.h"

#define TICK_MS 50
#define MAX_TOPICS 256
/* Delivery-time histogram buckets, seconds. */
static const double delivery_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10,   30, 60};
#define NBUCKETS (sizeof(delivery_buckets) / sizeof(delivery_buckets[0]))

/* failure reasons, the `reason` label of ficus_events_failed_total */
enum { R_TOO_LARGE, R_AUTHORIZATION, R_UNKNOWN_TOPIC, R_INVALID, R_SPOOL, R_SPOOL_FULL, R_NREASONS };
static const char *const reason_names[R_NREASONS] = {"too_large", "authorization", "unknown_topic",
                                                     "invalid", "spool_error", "spool_full"};

typedef struct pend {
    struct pend *prev, *next;
    uint64_t order;               /* intake order (recovered events first) */
    uint64_t seq;                 /* spool sequence number; 0: not in the spool */
    uint64_t created_ms;
    char *topic;                  /* where it goes now (the dead-letter topic after a permanent failure) */
    char *orig_topic;             /* NULL unless dead-lettered */
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    fx_event_ticket *waiter;      /* delivery: sync — back on the ack */
    char dead_reason[160];
} pend;

typedef struct plist {
    pend *head, *tail;
    size_t n;
} plist;

typedef struct topic_stats {
    char *topic;
    unsigned long published;
    unsigned long failed[R_NREASONS];
} topic_stats;

struct fx_events {
    /* fixed at start */
    int embedded;
    char *brokers;                /* bootstrap.servers */
    char *spool_dir;
    char *dead_letter_topic;
    fx_kv *kafka;
    size_t nkafka;
    fx_devbroker *broker;

    fx_spool *spool;
    rd_kafka_t *rk;
    pthread_t thread;
    int thread_started;
    struct event_base *base;
    int wake_fd;                  /* eventfd: the inbox has tickets, or stop */
    int rk_pipe[2];               /* librdkafka writes a byte here when its queue has something */
    struct event *wake_ev, *rk_ev, *tick_ev;
    _Atomic(fx_event_ticket *) inbox;
    atomic_int stopping;
    uint64_t grace_ms;

    /* events thread only */
    plist backlog, inflight;
    uint64_t next_order;
    int need_recreate;
    uint64_t hold_until_ms;       /* after a retriable delivery error: produce nothing before this */
    uint64_t hold_ms;             /* the current pause: 100 ms, doubling to 5 s, reset by a success */
    int spool_dirty;              /* done marks or appends buffered */
    uint64_t last_commit_warn_ms;
    rd_kafka_resp_err_t last_err_code;
    uint64_t last_err_ms;

    /* read by the admin */
    pthread_mutex_t stats_lock;
    topic_stats topics[MAX_TOPICS];
    size_t ntopics;
    char last_error[256];
    atomic_ulong recreated;
    atomic_ulong producer_errors;
    atomic_ulong quarantined;
    atomic_ulong dead_lettered;
    atomic_ulong undone;
    atomic_ulong backlog_n, inflight_n;
    atomic_ulong hist[NBUCKETS + 1];
    atomic_ulong hist_sum_us;
    atomic_ulong hist_count;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- lists ------------------------------------------------------------------------------ */

static void pl_push(plist *l, pend *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->n++;
}

static void pl_remove(plist *l, pend *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
    l->n--;
}

/* Inserts p keeping the list ordered by intake (events that must be produced again go back
 * among the others in their original order). */
static void pl_insert_ordered(plist *l, pend *p)
{
    pend *at = l->tail;
    while (at && at->order > p->order)
        at = at->prev;
    if (!at) {
        p->prev = NULL;
        p->next = l->head;
        if (l->head)
            l->head->prev = p;
        else
            l->tail = p;
        l->head = p;
    } else {
        p->prev = at;
        p->next = at->next;
        if (at->next)
            at->next->prev = p;
        else
            l->tail = p;
        at->next = p;
    }
    l->n++;
}

static void pend_free(pend *p)
{
    free(p->topic);
    free(p->orig_topic);
    free(p->key);
    free(p->value);
    free(p);
}

static void publish_gauges(fx_events *ev)
{
    atomic_store_explicit(&ev->backlog_n, ev->backlog.n, memory_order_relaxed);
    atomic_store_explicit(&ev->inflight_n, ev->inflight.n, memory_order_relaxed);
    if (ev->spool)
        atomic_store_explicit(&ev->undone, fx_spool_undone(ev->spool), memory_order_relaxed);
}

/* ---- counters --------------------------------------------------------------------------- */

static topic_stats *stats_for(fx_events *ev, const char *topic)
{
    for (size_t i = 0; i < ev->ntopics; i++)
        if (!strcmp(ev->topics[i].topic, topic))
            return &ev->topics[i];
    if (ev->ntopics == MAX_TOPICS)
        return NULL;
    char *t = strdup(topic);
    if (!t)
        return NULL;
    topic_stats *s = &ev->topics[ev->ntopics++];
    memset(s, 0, sizeof(*s));
    s->topic = t;
    return s;
}

static void count_published(fx_events *ev, const char *topic)
{
    pthread_mutex_lock(&ev->stats_lock);
    topic_stats *s = stats_for(ev, topic);
    if (s)
        s->published++;
    pthread_mutex_unlock(&ev->stats_lock);
}

static void count_failed(fx_events *ev, const char *topic, int reason)
{
    pthread_mutex_lock(&ev->stats_lock);
    topic_stats *s = stats_for(ev, topic);
    if (s)
        s->failed[reason]++;
    pthread_mutex_unlock(&ev->stats_lock);
}

static void set_last_error(fx_events *ev, const char *msg)
{
    pthread_mutex_lock(&ev->stats_lock);
    snprintf(ev->last_error, sizeof(ev->last_error), "%s", msg);
    pthread_mutex_unlock(&ev->stats_lock);
}

static void observe_delivery(fx_events *ev, uint64_t created_ms)
{
    uint64_t now = now_ms();
    uint64_t us = now > created_ms ? (now - created_ms) * 1000 : 0;
    double s = (double)us / 1e6;
    size_t b = 0;
    while (b < NBUCKETS && s > delivery_buckets[b])
        b++;
    atomic_fetch_add_explicit(&ev->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ev->hist_sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&ev->hist_count, 1, memory_order_relaxed);
}

/* ---- tickets ---------------------------------------------------------------------------- */

fx_event_ticket *fx_event_ticket_new(const char *topic, const char *key, size_t key_len, char *value_owned,
                                     size_t value_len)
{
    fx_event_ticket *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->topic = strdup(topic);
    t->key = malloc(key_len + 1);
    if (!t->topic || !t->key) {
        free(t->topic);
        free(t->key);
        free(t);
        return NULL;
    }
    memcpy(t->key, key, key_len);
    t->key[key_len] = '\0';
    t->key_len = key_len;
    t->value = value_owned;
    t->value_len = value_len;
    return t;
}

void fx_event_ticket_free(fx_event_ticket *t)
{
    if (!t)
        return;
    free(t->topic);
    free(t->key);
    free(t->value);
    free(t);
}

/* A lock-free stack push; returns 1 when the stack was empty (the reader needs a wake-up). */
static int stack_push(_Atomic(fx_event_ticket *) *top, fx_event_ticket *t)
{
    fx_event_ticket *old = atomic_load_explicit(top, memory_order_relaxed);
    do
        t->next = old;
    while (!atomic_compare_exchange_weak_explicit(top, &old, t, memory_order_release, memory_order_relaxed));
    return old == NULL;
}

/* Takes the whole stack and reverses it: oldest first. */
static fx_event_ticket *stack_take(_Atomic(fx_event_ticket *) *top)
{
    fx_event_ticket *t = atomic_exchange_explicit(top, NULL, memory_order_acquire), *out = NULL;
    while (t) {
        fx_event_ticket *n = t->next;
        t->next = out;
        out = t;
        t = n;
    }
    return out;
}

void fx_events_submit_chain(fx_events *ev, fx_event_ticket *newest, fx_event_ticket *oldest)
{
    fx_event_ticket *old = atomic_load_explicit(&ev->inbox, memory_order_relaxed);
    do
        oldest->next = old;
    while (!atomic_compare_exchange_weak_explicit(&ev->inbox, &old, newest, memory_order_release,
                                                  memory_order_relaxed));
    if (old == NULL) {
        uint64_t one = 1;
        ssize_t r = write(ev->wake_fd, &one, sizeof(one));
        (void)r;
    }
}

void fx_events_submit(fx_events *ev, fx_event_ticket *t)
{
    fx_events_submit_chain(ev, t, t);
}

/* Back to the worker that submitted it (any thread). */
static void ticket_return(fx_event_ticket *t, int failed, const char *why)
{
    if (failed) {
        t->failed = 1;
        snprintf(t->why, sizeof(t->why), "%.*s", (int)sizeof(t->why) - 1, why);
    }
    fx_worker *w = t->worker;
    if (stack_push(&w->ev_returned, t)) {
        atomic_fetch_or(&w->ctl, FX_CTL_EVENTS);
        uint64_t one = 1;
        ssize_t r = write(w->ctl_fd, &one, sizeof(one));
        (void)r;
    }
}

fx_event_ticket *fx_events_take_returned(fx_worker *w)
{
    return stack_take(&w->ev_returned);
}

/* ---- producing -------------------------------------------------------------------------- */

/* Errors after which producing the same message again cannot succeed. */
static int permanent_reason(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return R_TOO_LARGE;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return R_AUTHORIZATION;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return R_UNKNOWN_TOPIC;
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return R_INVALID;
    default:
        return -1;
    }
}

static void finish_pend(fx_events *ev, pend *p, int failed, const char *why)
{
    if (p->seq) {
        fx_spool_done(ev->spool, p->seq);
        ev->spool_dirty = 1;
    }
    if (p->waiter)
        ticket_return(p->waiter, failed, why);
    p->waiter = NULL;
    pend_free(p);
}

/*
 * A permanent failure: the event goes to the dead-letter topic when there
 * is one (and it is not already on its way there), else into the spool's
 * dead-letter file. It never blocks the events behind it.
 */
static void fail_permanently(fx_events *ev, pend *p, rd_kafka_resp_err_t err)
{
    int reason = permanent_reason(err);
    if (reason < 0)
        reason = R_INVALID;
    const char *topic = p->orig_topic ? p->orig_topic : p->topic;
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    if (!p->orig_topic) {
        count_failed(ev, topic, reason);
        fx_log(FX_LOG_ERROR, "events: event for topic '%s' (key '%.*s', spool seq %llu) failed permanently: %s",
               topic, (int)(p->key_len > 200 ? 200 : p->key_len), p->key, (unsigned long long)p->seq, why);
    }
    if (ev->dead_letter_topic && !p->orig_topic) {
        char *dl = strdup(ev->dead_letter_topic);
        if (dl) {
            p->orig_topic = p->topic;
            p->topic = dl;
            snprintf(p->dead_reason, sizeof(p->dead_reason), "%s", why);
            pl_insert_ordered(&ev->backlog, p);
            return;
        }
    }
    char err2[512];
    fx_spool_event se = {.seq = p->seq, .created_ms = p->created_ms, .topic = topic, .topic_len = strlen(topic),
                         .key = p->key, .key_len = p->key_len, .value = p->value, .value_len = p->value_len};
    const char *full = p->orig_topic ? p->dead_reason : why;
    char reason_text[400];
    if (p->orig_topic)
        snprintf(reason_text, sizeof(reason_text), "%s; dead-letter topic '%s': %s", full, p->topic, why);
    else
        snprintf(reason_text, sizeof(reason_text), "%s", full);
    if (fx_spool_quarantine(ev->spool, &se, reason_text, err2, sizeof(err2)) < 0) {
        /* Not even the dead-letter file takes it: keep it undone in the spool (produced again at the
         * next start) rather than lose it. */
        fx_log(FX_LOG_ERROR, "events: cannot quarantine event seq %llu: %s; it stays in the spool",
               (unsigned long long)p->seq, err2);
        p->seq = 0;
    } else {
        atomic_fetch_add(&ev->quarantined, 1);
        fx_log(FX_LOG_ERROR, "events: event seq %llu quarantined in %s/dead-letter.log (%s)",
               (unsigned long long)p->seq, ev->spool_dir, reason_text);
    }
    finish_pend(ev, p, 1, reason_text);
}

static void produce_backlog(fx_events *ev)
{
    if (ev->hold_until_ms && fx_mono_ms() < ev->hold_until_ms)
        return; /* the tick comes back */
    while (ev->rk && ev->backlog.head && !ev->need_recreate) {
        pend *p = ev->backlog.head;
        rd_kafka_resp_err_t err;
        if (p->orig_topic) {
            err = rd_kafka_producev(ev->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_KEY(p->key, p->key_len),
                                    RD_KAFKA_V_VALUE(p->value, p->value_len),
                                    RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
                                    RD_KAFKA_V_HEADER("ficus-original-topic", p->orig_topic, -1),
                                    RD_KAFKA_V_HEADER("ficus-failure", p->dead_reason, -1),
                                    RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        } else {
            err = rd_kafka_producev(ev->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_KEY(p->key, p->key_len),
                                    RD_KAFKA_V_VALUE(p->value, p->value_len),
                                    RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
                                    RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break; /* backpressure: the rest waits, in order, for delivery reports to make room */
        pl_remove(&ev->backlog, p);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            pl_push(&ev->inflight, p);
        } else if (permanent_reason(err) >= 0) {
            fail_permanently(ev, p, err);
        } else {
            /* _FATAL: the producer is unusable until replaced; anything else: tried again at the tick */
            pl_insert_ordered(&ev->backlog, p);
            if (err == RD_KAFKA_RESP_ERR__FATAL) {
                ev->need_recreate = 1;
            } else {
                char msg[256];
                snprintf(msg, sizeof(msg), "produce: %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
                atomic_fetch_add(&ev->producer_errors, 1);
                set_last_error(ev, msg);
                uint64_t now = fx_mono_ms();
                if (err != ev->last_err_code || now - ev->last_err_ms > 10000) {
                    fx_log(FX_LOG_WARN, "events: %s (the events wait and are tried again)", msg);
                    ev->last_err_code = err;
                    ev->last_err_ms = now;
                }
            }
            break;
        }
    }
    publish_gauges(ev);
}

/* Pauses producing after a retriable error: 100 ms, doubling up to 5 s while errors repeat. */
static void hold_backlog(fx_events *ev, rd_kafka_resp_err_t err)
{
    uint64_t now = fx_mono_ms();
    if (now < ev->hold_until_ms)
        return; /* one pause per burst of reports */
    ev->hold_ms = ev->hold_ms ? (ev->hold_ms * 2 > 5000 ? 5000 : ev->hold_ms * 2) : 100;
    ev->hold_until_ms = now + ev->hold_ms;
    char msg[256];
    snprintf(msg, sizeof(msg), "delivery: %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    atomic_fetch_add(&ev->producer_errors, 1);
    set_last_error(ev, msg);
    if (err != ev->last_err_code || now - ev->last_err_ms > 10000) {
        fx_log(FX_LOG_WARN, "events: %s; producing again in %llu ms", msg, (unsigned long long)ev->hold_ms);
        ev->last_err_code = err;
        ev->last_err_ms = now;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    fx_events *ev = opaque;
    pend *p = m->_private;
    if (!p)
        return;
    pl_remove(&ev->inflight, p);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ev->hold_ms = 0;
        if (p->orig_topic) {
            atomic_fetch_add(&ev->dead_lettered, 1);
            finish_pend(ev, p, 1, p->dead_reason);
        } else {
            count_published(ev, p->topic);
            observe_delivery(ev, p->created_ms);
            finish_pend(ev, p, 0, NULL);
        }
        return;
    }
    if (permanent_reason(m->err) >= 0) {
        fail_permanently(ev, p, m->err);
        return;
    }
    /* Purged for a producer replacement, a local timeout the operator configured, a fatal
     * error, a broker error librdkafka gave up on: produced again, in its place among the others.
     * Not at once: a broker that keeps refusing would make this a busy loop. */
    if (m->err == RD_KAFKA_RESP_ERR__FATAL)
        ev->need_recreate = 1;
    else if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        hold_backlog(ev, m->err);
    pl_insert_ordered(&ev->backlog, p);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    fx_events *ev = opaque;
    atomic_fetch_add(&ev->producer_errors, 1);
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    set_last_error(ev, msg);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        ev->need_recreate = 1;
        return; /* logged with its cause when the producer is replaced */
    }
    /* the same error again within 10 s (a broker that stays down) is counted, not logged */
    uint64_t now = fx_mono_ms();
    if (err != (int)ev->last_err_code || now - ev->last_err_ms > 10000) {
        fx_log(FX_LOG_WARN, "events: producer: %s", msg);
        ev->last_err_code = (rd_kafka_resp_err_t)err;
        ev->last_err_ms = now;
    }
}

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    fx_log(level <= 3 ? FX_LOG_ERROR : level <= 4 ? FX_LOG_WARN : level <= 6 ? FX_LOG_INFO : FX_LOG_DEBUG,
           "events: librdkafka %s: %s", fac, buf);
}

static rd_kafka_t *producer_new(fx_events *ev, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[512];
    /* defaults an operator may override in events.kafka */
    static const char *const defaults[][2] = {
        {"message.timeout.ms", "0"},          /* never give up on an event: the spool holds it anyway */
        {"partitioner", "murmur2_random"},    /* the Java client's: keys land where Java producers put them */
        {"linger.ms", "5"},
        {"client.id", "ficus"},
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], e, sizeof(e));
    for (size_t i = 0; i < ev->nkafka; i++) {
        if (!ev->kafka[i].key)
            continue;
        if (rd_kafka_conf_set(conf, ev->kafka[i].key, ev->kafka[i].value, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "events.kafka.%s: %s", ev->kafka[i].key, e);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    /* what the delivery guarantee rests on: not overridable (config.c refuses these keys) */
    const char *owned[][2] = {
        {"bootstrap.servers", ev->brokers}, {"enable.idempotence", "true"}, {"acks", "all"}};
    for (size_t i = 0; i < 3; i++) {
        if (rd_kafka_conf_set(conf, owned[i][0], owned[i][1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "events: %s: %s", owned[i][0], e);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, ev);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        snprintf(err, errlen, "events: cannot create the Kafka producer: %s", e);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_io_event_enable(q, ev->rk_pipe[1], "1", 1);
    rd_kafka_queue_destroy(q);
    return rk;
}

/* Polls librdkafka until its queue is empty (delivery reports, errors). */
static void poll_producer(fx_events *ev)
{
    while (ev->rk && rd_kafka_poll(ev->rk, 0) > 0)
        ;
}

/*
 * A fatal error (the idempotent producer lost its guarantees): the events in
 * flight go back to the backlog in their order, and a new producer takes
 * over. The spool never noticed anything.
 */
static void recreate_producer(fx_events *ev)
{
    if (ev->rk) { /* NULL: an earlier replacement could not create the new producer */
        char reason[512] = "";
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(ev->rk, reason, sizeof(reason));
        fx_log(FX_LOG_ERROR, "events: producer fatal error %s: %s; replacing the producer (%zu events in flight "
                             "go again)",
               rd_kafka_err2name(code), reason, ev->inflight.n);
        rd_kafka_purge(ev->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
        poll_producer(ev);
        rd_kafka_t *old = ev->rk;
        ev->rk = NULL;
        rd_kafka_destroy(old);
    }
    /* whatever did not come back as a delivery report goes again too */
    while (ev->inflight.head) {
        pend *p = ev->inflight.head;
        pl_remove(&ev->inflight, p);
        pl_insert_ordered(&ev->backlog, p);
    }
    char err[512];
    ev->rk = producer_new(ev, err, sizeof(err));
    if (!ev->rk) {
        fx_log(FX_LOG_ERROR, "%s; trying again shortly", err);
        return; /* need_recreate stays set: the tick tries again */
    }
    ev->need_recreate = 0;
    atomic_fetch_add(&ev->recreated, 1);
}

static void commit_spool(fx_events *ev)
{
    if (!ev->spool_dirty)
        return;
    char err[512];
    if (fx_spool_commit(ev->spool, err, sizeof(err)) < 0) {
        uint64_t now = fx_mono_ms();
        if (now - ev->last_commit_warn_ms > 5000) {
            fx_log(FX_LOG_ERROR, "events: spool commit failed: %s (retrying)", err);
            ev->last_commit_warn_ms = now;
        }
        return;
    }
    ev->spool_dirty = 0;
}

/* ---- the inbox -------------------------------------------------------------------------- */

static void take_inbox(fx_events *ev)
{
    fx_event_ticket *list = stack_take(&ev->inbox);
    if (!list)
        return;
    fx_event_ticket *async_back = NULL, **async_tail = &async_back;
    int spool_failed = 0;
    char err[512] = "";
    for (fx_event_ticket *t = list, *next; t; t = next) {
        next = t->next;
        t->next = NULL;
        if (t->kind == FX_TICKET_DROPPED) {
            count_failed(ev, t->topic, R_SPOOL_FULL);
            ticket_return(t, 0, NULL);
            continue;
        }
        pend *p = calloc(1, sizeof(*p));
        if (!p) {
            /* keep the bytes in the ticket: it goes back failed, the worker logs it */
            count_failed(ev, t->topic, R_SPOOL);
            ticket_return(t, 1, "out of memory in the events thread");
            continue;
        }
        p->order = ++ev->next_order;
        p->created_ms = t->created_ms;
        p->topic = t->topic;
        p->key = t->key;
        p->key_len = t->key_len;
        p->value = t->value;
        p->value_len = t->value_len;
        t->topic = t->key = t->value = NULL;
        fx_spool_event se = {.created_ms = p->created_ms, .topic = p->topic, .topic_len = strlen(p->topic),
                             .key = p->key, .key_len = p->key_len, .value = p->value, .value_len = p->value_len};
        if (fx_spool_append(ev->spool, &se, err, sizeof(err)) == 0) {
            p->seq = se.seq;
            ev->spool_dirty = 1;
        } else {
            count_failed(ev, p->topic, R_SPOOL);
            fx_log(FX_LOG_ERROR, "events: event for topic '%s' not spooled (%s); producing it from memory", p->topic,
                   err);
        }
        if (t->wait_ack)
            p->waiter = t;
        else {
            *async_tail = t;
            async_tail = &t->next;
        }
        pl_push(&ev->backlog, p);
    }
    if (ev->spool_dirty) {
        if (fx_spool_commit(ev->spool, err, sizeof(err)) < 0) {
            spool_failed = 1;
            fx_log(FX_LOG_ERROR, "events: spool commit failed: %s (the events are produced from memory; the "
                                 "spool retries)",
                   err);
        } else {
            ev->spool_dirty = 0;
        }
    }
    publish_gauges(ev); /* before the tickets go back: their events count as undone from now */
    for (fx_event_ticket *t = async_back, *next; t; t = next) {
        next = t->next;
        ticket_return(t, spool_failed, spool_failed ? "the event could not be written to the spool" : NULL);
    }
    produce_backlog(ev);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    fx_events *ev = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    take_inbox(ev);
    if (atomic_load(&ev->stopping))
        event_base_loopbreak(ev->base);
}

static void on_rk(evutil_socket_t fd, short what, void *arg)
{
    fx_events *ev = arg;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    poll_producer(ev);
    if (ev->need_recreate)
        recreate_producer(ev);
    produce_backlog(ev);
    /* done marks wait for the next commit (the next batch, or the tick): losing them in a crash
     * only means those events are produced once more */
    publish_gauges(ev);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    fx_events *ev = arg;
    poll_producer(ev);
    if (ev->need_recreate)
        recreate_producer(ev);
    if (ev->rk)
        produce_backlog(ev);
    commit_spool(ev);
    publish_gauges(ev);
}

static void *events_main(void *arg)
{
    fx_events *ev = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    produce_backlog(ev); /* what recovery found */
    event_base_dispatch(ev->base);

    /* stopping: the last tickets, then flush within the grace period */
    take_inbox(ev);
    uint64_t deadline = fx_mono_ms() + ev->grace_ms;
    while ((ev->inflight.n || ev->backlog.n) && fx_mono_ms() < deadline) {
        if (ev->need_recreate)
            recreate_producer(ev);
        if (ev->rk) {
            produce_backlog(ev);
            rd_kafka_poll(ev->rk, 50);
            poll_producer(ev);
        } else {
            usleep(50000);
        }
        commit_spool(ev);
    }
    size_t left = ev->inflight.n + ev->backlog.n;
    if (left)
        fx_log(FX_LOG_WARN, "events: %zu events not acknowledged by Kafka within %llu ms; they stay in the spool "
                            "and are produced at the next start",
               left, (unsigned long long)ev->grace_ms);
    commit_spool(ev);
    publish_gauges(ev);
    return NULL;
}

/* ---- start and stop --------------------------------------------------------------------- */

static void on_recovered(void *arg, const fx_spool_event *se)
{
    fx_events *ev = arg;
    pend *p = calloc(1, sizeof(*p));
    if (p) {
        p->topic = strndup(se->topic, se->topic_len);
        p->key = malloc(se->key_len + 1);
        p->value = malloc(se->value_len + 1);
    }
    if (!p || !p->topic || !p->key || !p->value) {
        fx_log(FX_LOG_ERROR, "events: out of memory recovering spool seq %llu; it stays in the spool",
               (unsigned long long)se->seq);
        if (p)
            pend_free(p);
        return;
    }
    memcpy(p->key, se->key, se->key_len);
    p->key[se->key_len] = '\0';
    p->key_len = se->key_len;
    memcpy(p->value, se->value, se->value_len);
    p->value[se->value_len] = '\0';
    p->value_len = se->value_len;
    p->seq = se->seq;
    p->created_ms = se->created_ms;
    p->order = ++ev->next_order;
    pl_push(&ev->backlog, p);
}

static void on_damage(void *arg, const char *file, uint64_t offset, uint64_t len, const char *why)
{
    fx_events *ev = arg;
    fx_log(FX_LOG_ERROR, "events: spool %s/%s: damaged record at offset %llu (%llu bytes skipped): %s",
           ev->spool_dir, file, (unsigned long long)offset, (unsigned long long)len, why);
}

static void events_free(fx_events *ev)
{
    if (!ev)
        return;
    for (int l = 0; l < 2; l++) {
        plist *pl = l ? &ev->inflight : &ev->backlog;
        while (pl->head) {
            pend *p = pl->head;
            pl_remove(pl, p);
            if (p->waiter)
                ticket_return(p->waiter, 1, "the gateway stopped before Kafka acknowledged the event (it stays "
                                            "in the spool)");
            p->waiter = NULL;
            pend_free(p);
        }
    }
    /* tickets nobody took: back to their workers */
    for (fx_event_ticket *t = stack_take(&ev->inbox), *n; t; t = n) {
        n = t->next;
        ticket_return(t, 1, "the gateway stopped");
    }
    if (ev->tick_ev)
        event_free(ev->tick_ev);
    if (ev->rk_ev)
        event_free(ev->rk_ev);
    if (ev->wake_ev)
        event_free(ev->wake_ev);
    if (ev->base)
        event_base_free(ev->base);
    if (ev->wake_fd >= 0)
        close(ev->wake_fd);
    for (int i = 0; i < 2; i++)
        if (ev->rk_pipe[i] >= 0)
            close(ev->rk_pipe[i]);
    if (ev->spool)
        fx_spool_close(ev->spool);
    if (ev->broker)
        fx_devbroker_stop(ev->broker);
    for (size_t i = 0; i < ev->ntopics; i++)
        free(ev->topics[i].topic);
    for (size_t i = 0; i < ev->nkafka; i++) {
        free(ev->kafka[i].key);
        free(ev->kafka[i].value);
    }
    free(ev->kafka);
    free(ev->brokers);
    free(ev->spool_dir);
    free(ev->dead_letter_topic);
    pthread_mutex_destroy(&ev->stats_lock);
    free(ev);
}

fx_events *fx_events_start(const fx_events_conf *conf, char *err, size_t errlen)
{
    fx_events *ev = calloc(1, sizeof(*ev));
    if (!ev) {
        snprintf(err, errlen, "events: out of memory");
        return NULL;
    }
    pthread_mutex_init(&ev->stats_lock, NULL);
    ev->wake_fd = ev->rk_pipe[0] = ev->rk_pipe[1] = -1;
    ev->embedded = conf->embedded;
    ev->spool_dir = strdup(conf->spool_dir);
    ev->dead_letter_topic = conf->dead_letter_topic ? strdup(conf->dead_letter_topic) : NULL;
    if (conf->nkafka && (ev->kafka = calloc(conf->nkafka, sizeof(*ev->kafka)))) {
        ev->nkafka = conf->nkafka;
        for (size_t i = 0; i < conf->nkafka; i++)
            if (conf->kafka[i].key) {
                ev->kafka[i].key = strdup(conf->kafka[i].key);
                ev->kafka[i].value = strdup(conf->kafka[i].value);
            }
    }
    if (!ev->spool_dir || (conf->nkafka && !ev->kafka)) {
        snprintf(err, errlen, "events: out of memory");
        goto fail;
    }
    ev->spool = fx_spool_open(conf->spool_dir, on_recovered, on_damage, ev, err, errlen);
    if (!ev->spool)
        goto fail;
    /* two segments (the newest and the one before it) fit well within the bound */
    fx_spool_set_segment_bytes(ev->spool, conf->spool_max_bytes / 8);
    if (ev->backlog.n)
        fx_log(FX_LOG_INFO, "events: %zu undelivered events recovered from the spool %s; producing them first",
               ev->backlog.n, conf->spool_dir);
    if (conf->embedded) {
        char e[256];
        ev->broker = fx_devbroker_start(1, 4, e, sizeof(e));
        if (!ev->broker) {
            snprintf(err, errlen, "events.brokers: cannot start the embedded broker: %s", e);
            goto fail;
        }
        ev->brokers = strdup(fx_devbroker_bootstraps(ev->broker));
        fx_log(FX_LOG_INFO, "events: embedded broker (development only) at %s", ev->brokers);
    } else {
        ev->brokers = strdup(conf->brokers);
    }
    if (!ev->brokers) {
        snprintf(err, errlen, "events: out of memory");
        goto fail;
    }
    if (pipe2(ev->rk_pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
        (ev->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(err, errlen, "events: cannot create the thread's wake-up fds: %s", strerror(errno));
        goto fail;
    }
    if (!(ev->rk = producer_new(ev, err, errlen)))
        goto fail;
    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        ev->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    struct timeval tick = {0, TICK_MS * 1000};
    if (!ev->base || !(ev->wake_ev = event_new(ev->base, ev->wake_fd, EV_READ | EV_PERSIST, on_wake, ev)) ||
        !(ev->rk_ev = event_new(ev->base, ev->rk_pipe[0], EV_READ | EV_PERSIST, on_rk, ev)) ||
        !(ev->tick_ev = event_new(ev->base, -1, EV_PERSIST, on_tick, ev)) || event_add(ev->wake_ev, NULL) < 0 ||
        event_add(ev->rk_ev, NULL) < 0 || event_add(ev->tick_ev, &tick) < 0) {
        snprintf(err, errlen, "events: cannot set up the events thread's loop");
        goto fail;
    }
    publish_gauges(ev);
    if (pthread_create(&ev->thread, NULL, events_main, ev) != 0) {
        snprintf(err, errlen, "events: cannot start the events thread");
        goto fail;
    }
    ev->thread_started = 1;
    return ev;
fail:
    if (ev->rk)
        rd_kafka_destroy(ev->rk);
    ev->rk = NULL;
    events_free(ev);
    return NULL;
}

void fx_events_stop(fx_events *ev, uint64_t grace_ms)
{
    if (!ev)
        return;
    if (ev->thread_started) {
        ev->grace_ms = grace_ms;
        atomic_store(&ev->stopping, 1);
        uint64_t one = 1;
        ssize_t r = write(ev->wake_fd, &one, sizeof(one));
        (void)r;
        pthread_join(ev->thread, NULL);
    }
    /* the producer goes first: its delivery reports still name pends that events_free releases */
    if (ev->rk) {
        rd_kafka_purge(ev->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
        poll_producer(ev);
        rd_kafka_destroy(ev->rk);
        ev->rk = NULL;
    }
    events_free(ev);
}

/* ---- what reload may change ------------------------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int fx_events_compatible(const fx_events *ev, const fx_events_conf *conf, char *err, size_t errlen)
{
    const char *key = NULL;
    if (!conf)
        return 0; /* events removed: the runtime finishes what it holds */
    if (ev->embedded != conf->embedded || (!conf->embedded && !str_eq(ev->brokers, conf->brokers)))
        key = "events.brokers";
    else if (!str_eq(ev->spool_dir, conf->spool_dir))
        key = "events.spool_dir";
    else if (!str_eq(ev->dead_letter_topic, conf->dead_letter_topic))
        key = "events.dead_letter_topic";
    else if (ev->nkafka != conf->nkafka)
        key = "events.kafka";
    for (size_t i = 0; !key && i < conf->nkafka; i++)
        if (!str_eq(ev->kafka[i].key, conf->kafka[i].key) || !str_eq(ev->kafka[i].value, conf->kafka[i].value))
            key = "events.kafka";
    if (!key)
        return 0;
    snprintf(err, errlen, "%s: changing it needs a restart (the spool and the Kafka producer are opened at start)",
             key);
    return -1;
}

int fx_events_spool_full(const fx_events *ev, uint64_t max_bytes)
{
    return fx_spool_bytes_now(ev->spool) >= max_bytes;
}

void fx_events_counts(fx_events *ev, uint64_t *published, uint64_t *undone)
{
    uint64_t sum = 0;
    pthread_mutex_lock(&ev->stats_lock);
    for (size_t i = 0; i < ev->ntopics; i++)
        sum += ev->topics[i].published;
    pthread_mutex_unlock(&ev->stats_lock);
    *published = sum;
    *undone = atomic_load_explicit(&ev->undone, memory_order_relaxed);
}

const char *fx_events_embedded_bootstrap(const fx_events *ev)
{
    return ev->broker ? ev->brokers : NULL;
}

/* ---- admin ------------------------------------------------------------------------------ */

void fx_events_metrics(fx_events *ev, struct evbuffer *b)
{
    pthread_mutex_lock(&ev->stats_lock);
    evbuffer_add_printf(b, "# HELP ficus_events_published_total Change events acknowledged by Kafka, by topic.\n"
                           "# TYPE ficus_events_published_total counter\n");
    for (size_t i = 0; i < ev->ntopics; i++)
        evbuffer_add_printf(b, "ficus_events_published_total{topic=\"%s\"} %lu\n", ev->topics[i].topic,
                            ev->topics[i].published);
    evbuffer_add_printf(b, "# HELP ficus_events_failed_total Change events that failed, by topic and reason "
                           "(permanent Kafka errors, spool errors, spool full with when_full: drop).\n"
                           "# TYPE ficus_events_failed_total counter\n");
    for (size_t i = 0; i < ev->ntopics; i++)
        for (int r = 0; r < R_NREASONS; r++)
            if (ev->topics[i].failed[r])
                evbuffer_add_printf(b, "ficus_events_failed_total{topic=\"%s\",reason=\"%s\"} %lu\n",
                                    ev->topics[i].topic, reason_names[r], ev->topics[i].failed[r]);
    pthread_mutex_unlock(&ev->stats_lock);
    evbuffer_add_printf(b,
                        "# HELP ficus_events_spooled Events in the spool not yet acknowledged by Kafka.\n"
                        "# TYPE ficus_events_spooled gauge\nficus_events_spooled %lu\n"
                        "# HELP ficus_events_spool_bytes Size of the spool on disk.\n"
                        "# TYPE ficus_events_spool_bytes gauge\nficus_events_spool_bytes %llu\n"
                        "# HELP ficus_events_dead_lettered_total Events sent to events.dead_letter_topic.\n"
                        "# TYPE ficus_events_dead_lettered_total counter\nficus_events_dead_lettered_total %lu\n"
                        "# HELP ficus_events_quarantined_total Events written to the spool's dead-letter file.\n"
                        "# TYPE ficus_events_quarantined_total counter\nficus_events_quarantined_total %lu\n"
                        "# HELP ficus_events_producer_errors_total Errors the Kafka producer reported.\n"
                        "# TYPE ficus_events_producer_errors_total counter\n"
                        "ficus_events_producer_errors_total %lu\n"
                        "# HELP ficus_events_producer_restarts_total Producers replaced after a fatal error.\n"
                        "# TYPE ficus_events_producer_restarts_total counter\n"
                        "ficus_events_producer_restarts_total %lu\n",
                        atomic_load(&ev->undone), (unsigned long long)fx_spool_bytes_now(ev->spool),
                        atomic_load(&ev->dead_lettered), atomic_load(&ev->quarantined),
                        atomic_load(&ev->producer_errors), atomic_load(&ev->recreated));
    evbuffer_add_printf(b, "# HELP ficus_events_delivery_seconds From the gateway making an event to Kafka's "
                           "acknowledgement.\n# TYPE ficus_events_delivery_seconds histogram\n");
    unsigned long cum = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cum += atomic_load(&ev->hist[i]);
        if (i < NBUCKETS)
            evbuffer_add_printf(b, "ficus_events_delivery_seconds_bucket{le=\"%g\"} %lu\n", delivery_buckets[i],
                                cum);
        else
            evbuffer_add_printf(b, "ficus_events_delivery_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
    }
    evbuffer_add_printf(b, "ficus_events_delivery_seconds_sum %.6f\nficus_events_delivery_seconds_count %lu\n",
                        (double)atomic_load(&ev->hist_sum_us) / 1e6, atomic_load(&ev->hist_count));
}

static void json_string(struct evbuffer *b, const char *s)
{
    size_t len = strlen(s), cap = len * 6 + 1; /* the longest escape of a byte is \u00XX */
    char *buf = malloc(cap);
    size_t n = buf ? fx_json_escape(buf, cap, s, len) : 0;
    evbuffer_add_printf(b, "\"%.*s\"", (int)(n < cap ? n : 0), buf ? buf : "");
    free(buf);
}

void fx_events_admin_json(fx_events *ev, const fx_events_conf *conf, struct evbuffer *b)
{
    static const char *const fulls[] = {"reject", "drop"}, *const deliveries[] = {"async", "sync"};
    evbuffer_add_printf(b, "{\"brokers\":");
    json_string(b, ev->embedded ? "embedded" : ev->brokers);
    evbuffer_add_printf(b, ",\"bootstrap\":");
    json_string(b, ev->brokers);
    evbuffer_add_printf(b, ",\"embedded\":%s", ev->embedded ? "true" : "false");
    if (conf)
        evbuffer_add_printf(b, ",\"delivery\":\"%s\",\"when_full\":\"%s\"", deliveries[conf->delivery & 1],
                            fulls[conf->when_full & 1]);
    evbuffer_add_printf(b, ",\"spool\":{\"dir\":");
    json_string(b, ev->spool_dir);
    evbuffer_add_printf(b, ",\"bytes\":%llu", (unsigned long long)fx_spool_bytes_now(ev->spool));
    if (conf)
        evbuffer_add_printf(b, ",\"max_bytes\":%llu", (unsigned long long)conf->spool_max_bytes);
    evbuffer_add_printf(b, ",\"undone\":%lu},\"producer\":{\"backlog\":%lu,\"in_flight\":%lu,\"errors\":%lu,"
                           "\"restarts\":%lu,\"last_error\":",
                        atomic_load(&ev->undone), atomic_load(&ev->backlog_n), atomic_load(&ev->inflight_n),
                        atomic_load(&ev->producer_errors), atomic_load(&ev->recreated));
    pthread_mutex_lock(&ev->stats_lock);
    if (ev->last_error[0])
        json_string(b, ev->last_error);
    else
        evbuffer_add_printf(b, "null");
    /* property names only: values may be secrets (sasl.password, ssl.key.password) */
    evbuffer_add_printf(b, ",\"kafka_properties\":[");
    for (size_t i = 0; i < ev->nkafka; i++) {
        evbuffer_add_printf(b, "%s", i ? "," : "");
        json_string(b, ev->kafka[i].key ? ev->kafka[i].key : "");
    }
    evbuffer_add_printf(b, "]},\"dead_letter_topic\":");
    if (ev->dead_letter_topic)
        json_string(b, ev->dead_letter_topic);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ",\"dead_lettered\":%lu,\"quarantined\":%lu,\"topics\":[",
                        atomic_load(&ev->dead_lettered), atomic_load(&ev->quarantined));
    for (size_t i = 0; i < ev->ntopics; i++) {
        evbuffer_add_printf(b, "%s{\"topic\":", i ? "," : "");
        json_string(b, ev->topics[i].topic);
        evbuffer_add_printf(b, ",\"published\":%lu,\"failed\":{", ev->topics[i].published);
        int first = 1;
        for (int r = 0; r < R_NREASONS; r++)
            if (ev->topics[i].failed[r]) {
                evbuffer_add_printf(b, "%s\"%s\":%lu", first ? "" : ",", reason_names[r], ev->topics[i].failed[r]);
                first = 0;
            }
        evbuffer_add_printf(b, "}}");
    }
    pthread_mutex_unlock(&ev->stats_lock);
    evbuffer_add_printf(b, "]}\n");
}

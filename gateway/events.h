/*
 * events.h — change events from the gateway to Kafka: the events thread,
 * its spool (spool.h) and its librdkafka producer.
 *
 * A worker that saw a 2xx answer to a state-changing request on a route with
 * `events` builds the CloudEvent (cloudevent.h) and hands it over in a
 * ticket (fx_events_submit: a lock-free push and, at most once per batch, an
 * eventfd write). The events thread appends each batch to the spool, makes
 * it durable with one fdatasync, produces every event with the idempotent
 * producer, and marks it done in the spool on its delivery report. The ticket
 * comes back to the worker exactly once — when the event is spooled
 * (delivery: async) or acknowledged by Kafka (delivery: sync) — through the
 * worker's mailbox (FX_CTL_EVENTS); the worker holds the client's response
 * until then.
 *
 * Nothing here blocks a worker. The events thread never blocks on Kafka
 * either: librdkafka's queue wakes it through an fd (rd_kafka_queue_io_event_enable)
 * and a full producer queue is backpressure — the events wait, in order, in
 * memory and in the spool.
 */
#ifndef FX_EVENTS_H
#define FX_EVENTS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct fx_events fx_events;
struct fx_worker;
struct evbuffer;

enum fx_ticket_kind {
    FX_TICKET_EVENT = 0,   /* an event to spool and produce */
    FX_TICKET_DROPPED,     /* the spool was full (when_full: drop): counted, nothing else */
};

typedef struct fx_event_ticket {
    struct fx_event_ticket *next;  /* the queues' link */
    struct fx_worker *worker;      /* where the ticket goes back to */
    void *owner;                   /* the waiting connection; NULL once it went away (worker thread only) */
    int kind;                      /* enum fx_ticket_kind */
    int wait_ack;                  /* delivery: sync — come back on the broker's ack, not at the spool */
    uint64_t created_ms;
    char *topic;                   /* malloc'ed, owned by the ticket until submitted */
    char *key;
    size_t key_len;
    char *value;                   /* the CloudEvent JSON */
    size_t value_len;
    /* set by the events thread before the ticket comes back */
    int failed;                    /* the event could not be spooled or was not acknowledged */
    char why[160];
} fx_event_ticket;

/*
 * Opens the spool (recovering what an earlier run left undone), starts the
 * embedded broker if `brokers: embedded`, creates the producer and starts
 * the events thread. NULL with err set (a sentence an operator can act on).
 */
fx_events *fx_events_start(const fx_events_conf *conf, char *err, size_t errlen);
/*
 * Stops taking tickets, produces what it can within grace_ms, commits the
 * spool (what was not acknowledged stays there for the next start), returns
 * every ticket still held to its worker's mailbox, stops the thread.
 */
void fx_events_stop(fx_events *ev, uint64_t grace_ms);

/* Would a reload to `conf` keep this runtime? 0, or -1 with the key that needs a restart in err. */
int fx_events_compatible(const fx_events *ev, const fx_events_conf *conf, char *err, size_t errlen);

/* Worker thread: is the spool at or over max_bytes? */
int fx_events_spool_full(const fx_events *ev, uint64_t max_bytes);

/* A new ticket (calloc); topic, key and value are copied. NULL when out of memory. */
fx_event_ticket *fx_event_ticket_new(const char *topic, const char *key, size_t key_len, char *value_owned,
                                     size_t value_len);
void fx_event_ticket_free(fx_event_ticket *t);
/* Any thread: hands the ticket to the events thread. */
void fx_events_submit(fx_events *ev, fx_event_ticket *t);
/* The same for a chain linked by ->next, NEWEST first, ending at `oldest`: one push, one wake-up
 * (a worker gathers the tickets of one loop turn and hands them over together). */
void fx_events_submit_chain(fx_events *ev, fx_event_ticket *newest, fx_event_ticket *oldest);
/* Worker thread: the tickets that came back to w since the last call, oldest first (a list via ->next). */
fx_event_ticket *fx_events_take_returned(struct fx_worker *w);

/* Events acknowledged by Kafka (all topics) and events in the spool not yet acknowledged (any thread). */
void fx_events_counts(fx_events *ev, uint64_t *published, uint64_t *undone);

/* The embedded broker's bootstrap address, or NULL. */
const char *fx_events_embedded_bootstrap(const fx_events *ev);

/* For /metrics and /admin/events (main thread; reads counters the events thread writes).
 * conf: the running snapshot's events section (for the settings a reload may change), or NULL. */
void fx_events_metrics(fx_events *ev, struct evbuffer *out);
void fx_events_admin_json(fx_events *ev, const fx_events_conf *conf, struct evbuffer *out);

#endif

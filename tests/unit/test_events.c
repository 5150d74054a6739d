/*
 * test_events.c — Check suite "events" for gateway/events.c (the events thread).
 *
 *   fixture        per test: a temp directory (the spool lives in DIR/spool,
 *                  all of it removed at the end), a standalone dev broker
 *                  (devbroker.h) so the test can take it down or make it fail
 *                  requests, the topic created with 4 partitions, a worker
 *                  that is only a mailbox (its ctl_fd is an eventfd), and
 *                  fx_events started against the broker's bootstrap address
 *   tickets        each ticket carries its number in ->owner (the events
 *                  thread moves topic, key and value out of it), so the
 *                  collector can tell that each came back exactly once
 *   consumer       a librdkafka consumer assigned partitions 0..3 from the
 *                  beginning, polled until N messages or a deadline; it keeps
 *                  key, value and the headers the contract names
 *   tests          async return at spool commit, sync return on the ack, a
 *                  stop with undelivered events and the restart that produces
 *                  them, permanent failures (quarantine file, dead-letter
 *                  topic), a fatal producer error, a dropped ticket, reload
 *                  compatibility, the spool lock
 *
 * Every wait is bounded (WAIT_MS); a wait that runs out fails the test with
 * what was seen so far. The tests' directories live under one directory that
 * main makes and removes, failed tests or not.
 */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <ftw.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devbroker.h"
#include "events.h"
#include "log.h"
#include "server.h"
#include "spool.h"
#include "tmpdir.h"

#define WAIT_MS 20000
#define TOPIC "documents"
#define MAX_TICKETS 2048

/* ---- helpers --------------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}



/* What came back to the worker: how often each ticket number, how many failed, the last reason. */
typedef struct returned {
    unsigned seen[MAX_TICKETS];
    size_t n, nfailed;
    char last_why[160];
} returned;

typedef struct fixture {
    char dir[256];
    char spool[300];
    fx_devbroker *broker;
    fx_worker *w;
    fx_events_conf conf;
    fx_events *ev;
    returned back;
} fixture;

static void collect(fixture *f)
{
    for (fx_event_ticket *t = fx_events_take_returned(f->w), *next; t; t = next) {
        next = t->next;
        uintptr_t id = (uintptr_t)t->owner;
        ck_assert_msg(id < MAX_TICKETS, "a ticket came back with an owner the test never set");
        f->back.seen[id]++;
        f->back.n++;
        if (t->failed) {
            f->back.nfailed++;
            snprintf(f->back.last_why, sizeof(f->back.last_why), "%s", t->why);
        }
        fx_event_ticket_free(t);
    }
}

/* Waits (at most ms) until n tickets in all have come back; returns whether they did. */
static int wait_returned(fixture *f, size_t n, uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        collect(f);
        if (f->back.n >= n)
            return 1;
        uint64_t now = mono_ms();
        if (now >= end)
            return 0;
        /* the events thread writes the eventfd when the mailbox goes from empty to not empty */
        struct pollfd p = {.fd = f->w->ctl_fd, .events = POLLIN};
        uint64_t left = end - now;
        if (poll(&p, 1, left < 50 ? (int)left : 50) > 0) {
            uint64_t v;
            ssize_t r = read(f->w->ctl_fd, &v, sizeof(v));
            (void)r;
        }
    }
}

/* Waits until fx_events_counts says published >= want_pub and undone == want_undone. */
static int wait_counts(fx_events *ev, uint64_t want_pub, uint64_t want_undone, uint64_t ms, uint64_t *pub,
                       uint64_t *undone)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        fx_events_counts(ev, pub, undone);
        if (*pub >= want_pub && *undone == want_undone)
            return 1;
        if (mono_ms() >= end)
            return 0;
        usleep(10000);
    }
}

static void broker_cmd(fixture *f, const char *line)
{
    char reply[256];
    ck_assert_msg(fx_devbroker_command(f->broker, line, reply, sizeof(reply)) == 0, "devbroker '%s': %s", line,
                  reply);
}

/* Made by main before the tests and removed by main after them, so that the directory of a test
 * that failed part way (its forked process exits at the failed assertion) goes too. */
static char suite_root[200];

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/test.XXXXXX", suite_root);
    ck_assert_msg(mkdtemp(f->dir) != NULL, "mkdtemp %s: %s", f->dir, strerror(errno));
    snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
    char err[512];
    f->broker = fx_devbroker_start(1, 4, err, sizeof(err));
    ck_assert_msg(f->broker != NULL, "devbroker: %s", err);
    ck_assert_msg(fx_devbroker_create_topic(f->broker, TOPIC, 4, err, sizeof(err)) == 0, "create topic: %s", err);
    f->w = calloc(1, sizeof(*f->w));
    ck_assert(f->w != NULL);
    f->w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert(f->w->ctl_fd >= 0);
    f->conf = (fx_events_conf){.embedded = 0,
                               .brokers = (char *)fx_devbroker_bootstraps(f->broker),
                               .spool_dir = f->spool,
                               .spool_max_bytes = (size_t)1 << 30,
                               .max_data_bytes = 1 << 20};
}

static void fixture_start(fixture *f)
{
    char err[512] = "";
    f->ev = fx_events_start(&f->conf, err, sizeof(err));
    ck_assert_msg(f->ev != NULL, "fx_events_start: %s", err);
}

/* Stops the runtime (every held ticket comes back and is freed), the broker, removes the directory. */
static void fixture_done(fixture *f)
{
    if (f->ev)
        fx_events_stop(f->ev, 2000);
    f->ev = NULL;
    collect(f);
    fx_devbroker_stop(f->broker);
    close(f->w->ctl_fd);
    free(f->w);
    fx_test_rm_rf(f->dir);
}

/* Ticket number id for TOPIC, key k<id % nkeys>, value a small CloudEvent carrying seq id. */
static fx_event_ticket *make_ticket(fixture *f, unsigned id, unsigned nkeys, int wait_ack)
{
    char key[32];
    int kl = snprintf(key, sizeof(key), "k%u", id % nkeys);
    char *value = NULL;
    int vl = asprintf(&value, "{\"specversion\":\"1.0\",\"id\":\"ev-%u\",\"seq\":%u,\"data\":{\"n\":%u}}", id, id,
                      id);
    ck_assert(vl > 0);
    fx_event_ticket *t = fx_event_ticket_new(TOPIC, key, (size_t)kl, value, (size_t)vl);
    ck_assert(t != NULL);
    t->worker = f->w;
    t->owner = (void *)(uintptr_t)id;
    t->wait_ack = wait_ack;
    t->created_ms = (uint64_t)time(NULL) * 1000;
    return t;
}

static void submit(fixture *f, unsigned id, unsigned nkeys, int wait_ack)
{
    fx_events_submit(f->ev, make_ticket(f, id, nkeys, wait_ack));
}

/* The number in "seq":N of a value, or -1. */
static long value_seq(const char *v, size_t len)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) - 1 ? len : sizeof(buf) - 1), v);
    const char *p = strstr(buf, "\"seq\":");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

static char *metrics_text(fx_events *ev)
{
    struct evbuffer *b = evbuffer_new();
    ck_assert(b != NULL);
    fx_events_metrics(ev, b);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert(s != NULL);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* The value of the sample whose name (with labels) is exactly `series`, or -1 when absent. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, series, n) && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    return -1;
}

/* ---- consumer -------------------------------------------------------------------- */

typedef struct consumed {
    char key[32];
    long seq;
    int partition;
    int cloudevents_ct;          /* content-type: application/cloudevents+json */
    char orig_topic[64];         /* ficus-original-topic, "" when absent */
    char failure[200];           /* ficus-failure, "" when absent */
} consumed;

static void header_copy(rd_kafka_headers_t *h, const char *name, char *out, size_t outlen)
{
    const void *v;
    size_t n;
    out[0] = '\0';
    if (h && rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
        snprintf(out, outlen, "%.*s", (int)n, (const char *)v);
}

/* Reads `topic` from the beginning until `want` messages arrived or ms passed; returns how many
 * (at most cap are kept in out). */
static size_t consume(fixture *f, const char *topic, size_t want, uint64_t ms, consumed *out, size_t cap)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *props[][2] = {{"bootstrap.servers", fx_devbroker_bootstraps(f->broker)},
                              {"group.id", "fx-test-events"},
                              {"enable.auto.commit", "false"},
                              {"enable.partition.eof", "false"},
                              {"log_level", "3"}};
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        ck_assert_msg(rd_kafka_conf_set(c, props[i][0], props[i][1], err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s",
                      err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    ck_assert_msg(rk != NULL, "consumer: %s", err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < 4; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert(rd_kafka_assign(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    size_t n = 0;
    uint64_t end = mono_ms() + ms;
    while (n < want && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            if (n < cap) {
                consumed *o = &out[n];
                memset(o, 0, sizeof(*o));
                snprintf(o->key, sizeof(o->key), "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
                o->seq = value_seq(m->payload, m->len);
                o->partition = m->partition;
                rd_kafka_headers_t *h = NULL;
                rd_kafka_message_headers(m, &h);
                char ct[64];
                header_copy(h, "content-type", ct, sizeof(ct));
                o->cloudevents_ct = !strcmp(ct, "application/cloudevents+json");
                header_copy(h, "ficus-original-topic", o->orig_topic, sizeof(o->orig_topic));
                header_copy(h, "ficus-failure", o->failure, sizeof(o->failure));
            }
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

/* ---- tests ----------------------------------------------------------------------- */

/* delivery: async — every ticket back once at spool commit; all of it in Kafka, in order per key. */
START_TEST(test_async_thousand)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    enum { N = 1000, KEYS = 17 };
    for (unsigned i = 0; i < N; i++)
        submit(&f, i, KEYS, 0);
    ck_assert_msg(wait_returned(&f, N, WAIT_MS), "only %zu of %d tickets came back", f.back.n, N);
    ck_assert_uint_eq(f.back.nfailed, 0);
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(f.back.seen[i] == 1, "ticket %u came back %u times", i, f.back.seen[i]);

    uint64_t pub, undone;
    ck_assert_msg(wait_counts(f.ev, N, 0, WAIT_MS, &pub, &undone), "published %llu, undone %llu",
                  (unsigned long long)pub, (unsigned long long)undone);
    ck_assert_uint_eq(pub, N);

    static consumed got[N + 16];
    size_t n = consume(&f, TOPIC, N, WAIT_MS, got, N + 16);
    ck_assert_msg(n == N, "consumed %zu of %d", n, N);
    unsigned count[N] = {0};
    long last[KEYS];
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    int part_of_key[KEYS];
    for (int k = 0; k < KEYS; k++)
        part_of_key[k] = -1;
    for (size_t i = 0; i < n; i++) {
        long s = got[i].seq;
        ck_assert_msg(s >= 0 && s < N, "message %zu: no seq in its value", i);
        count[s]++;
        char want_key[32];
        snprintf(want_key, sizeof(want_key), "k%ld", s % KEYS);
        ck_assert_msg(!strcmp(got[i].key, want_key), "seq %ld has key '%s', not '%s'", s, got[i].key, want_key);
        ck_assert_msg(got[i].cloudevents_ct, "seq %ld: no content-type: application/cloudevents+json", s);
        int k = (int)(s % KEYS);
        ck_assert_msg(s > last[k], "key %s: seq %ld after %ld", want_key, s, last[k]);
        last[k] = s;
        ck_assert_msg(part_of_key[k] < 0 || part_of_key[k] == got[i].partition, "key %s in two partitions",
                      want_key);
        part_of_key[k] = got[i].partition;
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(count[i] == 1, "seq %u consumed %u times", i, count[i]);
    fixture_done(&f);
}
END_TEST

/* delivery: sync — the ticket waits for the broker's ack, across an outage. */
START_TEST(test_sync_waits_for_ack)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    uint64_t pub, undone;
    /* a first event so the producer is connected and has its producer id when the broker goes */
    submit(&f, 0, 1, 1);
    ck_assert_msg(wait_returned(&f, 1, WAIT_MS), "the first sync ticket did not come back");
    ck_assert_msg(f.back.nfailed == 0, "first ticket failed: %s", f.back.last_why);
    fx_events_counts(f.ev, &pub, &undone);
    ck_assert_uint_eq(pub, 1); /* sync: back only after the ack was counted */

    broker_cmd(&f, "down");
    submit(&f, 1, 1, 1);
    ck_assert_msg(!wait_returned(&f, 2, 1000), "a sync ticket came back while the broker was down (failed %zu: %s)",
                  f.back.nfailed, f.back.last_why);
    fx_events_counts(f.ev, &pub, &undone);
    ck_assert_uint_eq(pub, 1);
    ck_assert_uint_eq(undone, 1);

    broker_cmd(&f, "up");
    ck_assert_msg(wait_returned(&f, 2, WAIT_MS), "the sync ticket did not come back after the broker came up");
    ck_assert_msg(f.back.nfailed == 0, "sync ticket failed: %s", f.back.last_why);
    ck_assert_uint_eq(f.back.seen[1], 1);
    fx_events_counts(f.ev, &pub, &undone);
    ck_assert_uint_eq(pub, 2);

    consumed got[8];
    size_t n = consume(&f, TOPIC, 2, WAIT_MS, got, 8);
    ck_assert_msg(n == 2, "consumed %zu of 2", n);
    int saw1 = 0;
    for (size_t i = 0; i < n; i++)
        saw1 |= got[i].seq == 1 && !strcmp(got[i].key, "k0");
    ck_assert_msg(saw1, "the event made during the outage is not in Kafka");
    fixture_done(&f);
}
END_TEST

/* A stop while the broker is down keeps the events in the spool; the next start produces them. */
START_TEST(test_stop_keeps_undelivered)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    enum { N = 50 };
    broker_cmd(&f, "down");
    for (unsigned i = 0; i < N; i++)
        submit(&f, i, 5, 0);
    /* async: back at the spool commit, with nothing acknowledged */
    ck_assert_msg(wait_returned(&f, N, WAIT_MS), "only %zu of %d tickets came back with the broker down", f.back.n,
                  N);
    ck_assert_uint_eq(f.back.nfailed, 0);
    /* the undone gauge is published just after the tickets go back: give it a moment */
    uint64_t pub, undone;
    ck_assert_msg(wait_counts(f.ev, 0, N, 2000, &pub, &undone), "undone %llu, not %d", (unsigned long long)undone,
                  N);
    ck_assert_uint_eq(pub, 0);

    uint64_t t0 = mono_ms();
    fx_events_stop(f.ev, 200);
    uint64_t took = mono_ms() - t0;
    f.ev = NULL;
    collect(&f);
    ck_assert_uint_eq(f.back.n, N); /* nothing came back twice */
    ck_assert_msg(took < 5000, "fx_events_stop(200 ms) took %llu ms with the broker down", (unsigned long long)took);

    broker_cmd(&f, "up");
    fixture_start(&f);
    ck_assert_msg(wait_counts(f.ev, N, 0, WAIT_MS, &pub, &undone), "after restart: published %llu, undone %llu",
                  (unsigned long long)pub, (unsigned long long)undone);
    ck_assert_uint_eq(pub, N);

    /* every event is acknowledged by now; the ones in flight at the fatal error were produced again, so
     * the topic may hold duplicates: read all of it (up to 4 N, 3 s), not just the first N messages */
    static consumed got[4 * N];
    size_t n = consume(&f, TOPIC, 4 * N, 3000, got, 4 * N);
    unsigned count[N] = {0};
    for (size_t i = 0; i < n && i < 4 * N; i++) {
        ck_assert_msg(got[i].seq >= 0 && got[i].seq < N, "unexpected value seq %ld", got[i].seq);
        count[got[i].seq]++;
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(count[i] >= 1, "event %u is missing after the restart (consumed %zu)", i, n);
    fixture_done(&f);
}
END_TEST

/* Reads DIR/dead-letter.log whole; *len its size. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, r;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            ck_assert(buf != NULL);
        }
        r = fread(buf + n, 1, cap - n, fp);
        n += r;
    } while (r > 0);
    fclose(fp);
    *len = n;
    return buf;
}

/* A permanent failure without a dead-letter topic: quarantined in the spool's dead-letter file. */
START_TEST(test_permanent_failure_quarantine)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    uint64_t pub, undone;
    submit(&f, 0, 1, 0);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "warm-up event not published");

    broker_cmd(&f, "request-errors Produce 1 MSG_SIZE_TOO_LARGE");
    submit(&f, 1, 1, 1); /* sync: back when it is settled */
    ck_assert_msg(wait_returned(&f, 2, WAIT_MS), "the failing event's ticket did not come back");
    ck_assert_msg(f.back.nfailed == 1, "a sync event Kafka refused came back not failed");
    ck_assert_msg(strstr(f.back.last_why, "MSG_SIZE_TOO_LARGE"), "why: %s", f.back.last_why);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "undone stays %llu", (unsigned long long)undone);
    ck_assert_uint_eq(pub, 1);

    char path[400];
    snprintf(path, sizeof(path), "%s/dead-letter.log", f.spool);
    size_t len = 0;
    unsigned char *buf = read_file(path, &len);
    ck_assert_msg(buf != NULL, "%s: %s", path, strerror(errno));
    fx_spool_event se;
    const char *reason = NULL, *why = NULL;
    size_t reason_len = 0;
    long r = fx_spool_decode_dead(buf, len, &se, &reason, &reason_len, &why);
    ck_assert_msg(r > 0, "dead-letter.log does not start with a dead letter: %s", r < 0 ? why : "truncated");
    ck_assert_msg((size_t)r == len, "dead-letter.log holds more than the one event (%zu bytes, first record %ld)",
                  len, r);
    ck_assert(se.topic_len == strlen(TOPIC) && !memcmp(se.topic, TOPIC, se.topic_len));
    ck_assert(se.key_len == 2 && !memcmp(se.key, "k0", 2));
    ck_assert_int_eq(value_seq(se.value, se.value_len), 1);
    ck_assert_msg(memmem(reason, reason_len, "MSG_SIZE_TOO_LARGE", 18), "reason: %.*s", (int)reason_len, reason);
    free(buf);

    char *m = metrics_text(f.ev);
    ck_assert_msg(metric(m, "ficus_events_quarantined_total") == 1, "%s", m);
    ck_assert_msg(metric(m, "ficus_events_failed_total{topic=\"" TOPIC "\",reason=\"too_large\"}") == 1, "%s", m);
    free(m);

    /* it blocks nothing behind it */
    for (unsigned i = 2; i < 7; i++)
        submit(&f, i, 1, 0);
    ck_assert_msg(wait_counts(f.ev, 6, 0, WAIT_MS, &pub, &undone), "later events: published %llu, undone %llu",
                  (unsigned long long)pub, (unsigned long long)undone);
    consumed got[16];
    size_t n = consume(&f, TOPIC, 6, WAIT_MS, got, 16);
    ck_assert_msg(n == 6, "consumed %zu of 6", n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i].seq != 1, "the refused event reached the topic");
    fixture_done(&f);
}
END_TEST

/* A permanent failure with a dead-letter topic: the event goes there, with why. */
START_TEST(test_permanent_failure_dead_letter_topic)
{
    fixture f;
    fixture_init(&f);
    char err[256];
    ck_assert_msg(fx_devbroker_create_topic(f.broker, "dlq", 4, err, sizeof(err)) == 0, "%s", err);
    f.conf.dead_letter_topic = "dlq";
    fixture_start(&f);
    uint64_t pub, undone;
    submit(&f, 0, 1, 0);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "warm-up event not published");

    broker_cmd(&f, "request-errors Produce 1 MSG_SIZE_TOO_LARGE");
    submit(&f, 1, 1, 0);
    ck_assert_msg(wait_returned(&f, 2, WAIT_MS), "tickets did not come back");
    ck_assert_uint_eq(f.back.nfailed, 0); /* async: spooled is all it promises */

    consumed got[8];
    size_t n = consume(&f, "dlq", 1, WAIT_MS, got, 8);
    ck_assert_msg(n == 1, "the dead-letter topic holds %zu events", n);
    ck_assert_int_eq(got[0].seq, 1);
    ck_assert_str_eq(got[0].key, "k0");
    ck_assert_str_eq(got[0].orig_topic, TOPIC);
    ck_assert_msg(strstr(got[0].failure, "MSG_SIZE_TOO_LARGE"), "ficus-failure: '%s'", got[0].failure);
    ck_assert(got[0].cloudevents_ct);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "undone stays %llu", (unsigned long long)undone);

    char *m = metrics_text(f.ev);
    ck_assert_msg(metric(m, "ficus_events_dead_lettered_total") == 1, "%s", m);
    ck_assert_msg(metric(m, "ficus_events_quarantined_total") == 0, "%s", m);
    free(m);
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/dead-letter.log", f.spool);
    ck_assert_msg(stat(path, &st) < 0 || st.st_size == 0, "a dead-lettered event was also quarantined");

    submit(&f, 2, 1, 0);
    ck_assert_msg(wait_counts(f.ev, 2, 0, WAIT_MS, &pub, &undone), "a later event was not published");
    fixture_done(&f);
}
END_TEST

/* A fatal error of the idempotent producer: the producer is replaced and nothing is lost. */
START_TEST(test_fatal_error_replaces_producer)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    enum { N = 100 };
    uint64_t pub, undone;
    submit(&f, 0, 4, 0);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "warm-up event not published");

    broker_cmd(&f, "request-errors Produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER");
    for (unsigned i = 1; i < N; i++)
        submit(&f, i, 4, 0);
    ck_assert_msg(wait_returned(&f, N, WAIT_MS), "only %zu of %d tickets came back", f.back.n, N);
    ck_assert_uint_eq(f.back.nfailed, 0);
    int ok = wait_counts(f.ev, N, 0, WAIT_MS, &pub, &undone);
    char *m = metrics_text(f.ev);
    ck_assert_msg(ok, "published %llu of %d, undone %llu\n%s", (unsigned long long)pub, N,
                  (unsigned long long)undone, m);
    ck_assert_msg(metric(m, "ficus_events_producer_restarts_total") == 1, "%s", m);
    free(m);

    /* every event is acknowledged by now; the ones in flight at the fatal error were produced again, so
     * the topic may hold duplicates: read all of it (up to 4 N, 3 s), not just the first N messages */
    static consumed got[4 * N];
    size_t n = consume(&f, TOPIC, 4 * N, 3000, got, 4 * N);
    unsigned count[N] = {0};
    for (size_t i = 0; i < n && i < 4 * N; i++) {
        ck_assert_msg(got[i].seq >= 0 && got[i].seq < N, "unexpected value seq %ld", got[i].seq);
        count[got[i].seq]++;
    }
    for (unsigned i = 0; i < N; i++)
        ck_assert_msg(count[i] >= 1, "event %u is missing (consumed %zu)", i, n);
    fixture_done(&f);
}
END_TEST

/* A dropped ticket (spool full, when_full: drop) is counted and comes back; nothing is produced. */
START_TEST(test_dropped_ticket)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    fx_event_ticket *t = fx_event_ticket_new(TOPIC, "k0", 2, NULL, 0);
    ck_assert(t != NULL);
    t->kind = FX_TICKET_DROPPED;
    t->worker = f.w;
    t->owner = (void *)(uintptr_t)7;
    fx_events_submit(f.ev, t);
    ck_assert_msg(wait_returned(&f, 1, WAIT_MS), "the dropped ticket did not come back");
    ck_assert_uint_eq(f.back.seen[7], 1);
    char *m = metrics_text(f.ev);
    ck_assert_msg(metric(m, "ficus_events_failed_total{topic=\"" TOPIC "\",reason=\"spool_full\"}") == 1, "%s", m);
    ck_assert_msg(metric(m, "ficus_events_spooled") == 0, "%s", m);
    free(m);
    uint64_t pub, undone;
    fx_events_counts(f.ev, &pub, &undone);
    ck_assert_uint_eq(pub, 0);
    ck_assert_uint_eq(undone, 0);
    fixture_done(&f);
}
END_TEST

/* What a reload may change and what needs a restart. */
START_TEST(test_compatible)
{
    fixture f;
    fixture_init(&f);
    fx_kv kv[2] = {{"linger.ms", "5"}, {"compression.type", "lz4"}};
    f.conf.kafka = kv;
    f.conf.nkafka = 1;
    fixture_start(&f);
    char err[256];
    fx_events_conf c = f.conf;
    ck_assert_int_eq(fx_events_compatible(f.ev, &c, err, sizeof(err)), 0);

    /* the settings workers read from the snapshot */
    c.delivery = 1;
    c.when_full = 1;
    c.spool_max_bytes = 4096;
    c.max_data_bytes = 77;
    ck_assert_msg(fx_events_compatible(f.ev, &c, err, sizeof(err)) == 0, "%s", err);

    static const struct {
        const char *what, *key;
    } need_restart[] = {{"brokers", "events.brokers"}, {"embedded", "events.brokers"},
                        {"spool_dir", "events.spool_dir"}, {"kafka value", "events.kafka"},
                        {"kafka added", "events.kafka"}, {"dead_letter_topic", "events.dead_letter_topic"}};
    for (size_t i = 0; i < sizeof(need_restart) / sizeof(need_restart[0]); i++) {
        c = f.conf;
        fx_kv other = {"linger.ms", "50"};
        char spool2[320];
        switch (i) {
        case 0: c.brokers = "127.0.0.1:1"; break;
        case 1: c.embedded = 1; break;
        case 2: snprintf(spool2, sizeof(spool2), "%s/other", f.dir); c.spool_dir = spool2; break;
        case 3: c.kafka = &other; break;
        case 4: c.nkafka = 2; break;
        case 5: c.dead_letter_topic = "dlq"; break;
        }
        err[0] = '\0';
        ck_assert_msg(fx_events_compatible(f.ev, &c, err, sizeof(err)) == -1, "%s changed: still compatible",
                      need_restart[i].what);
        ck_assert_msg(strstr(err, need_restart[i].key), "%s changed: err '%s' does not name %s", need_restart[i].what,
                      err, need_restart[i].key);
    }
    fixture_done(&f);
}
END_TEST

/* A second runtime on the same spool directory is refused while the first runs. */
START_TEST(test_spool_lock)
{
    fixture f;
    fixture_init(&f);
    fixture_start(&f);
    char err[512] = "";
    fx_events *second = fx_events_start(&f.conf, err, sizeof(err));
    if (second)
        fx_events_stop(second, 0);
    ck_assert_msg(second == NULL, "a second fx_events started on the spool the first one holds");
    ck_assert_msg(strstr(err, "in use by another gateway") && strstr(err, "spool.lock") && strstr(err, f.spool),
                  "err: %s", err);
    /* the first one still works */
    uint64_t pub, undone;
    submit(&f, 0, 1, 0);
    ck_assert_msg(wait_counts(f.ev, 1, 0, WAIT_MS, &pub, &undone), "the first runtime stopped publishing");
    fixture_done(&f);
}
END_TEST

static Suite *events_suite(void)
{
    Suite *s = suite_create("events");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 110);
    tcase_add_test(tc, test_async_thousand);
    tcase_add_test(tc, test_sync_waits_for_ack);
    tcase_add_test(tc, test_stop_keeps_undelivered);
    tcase_add_test(tc, test_permanent_failure_quarantine);
    tcase_add_test(tc, test_permanent_failure_dead_letter_topic);
    tcase_add_test(tc, test_fatal_error_replaces_producer);
    tcase_add_test(tc, test_dropped_ticket);
    tcase_add_test(tc, test_compatible);
    tcase_add_test(tc, test_spool_lock);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    fx_log_set_level(FX_LOG_WARN);
    const char *tmp = getenv("TMPDIR");
    snprintf(suite_root, sizeof(suite_root), "%s/fx_events_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(suite_root)) {
        fprintf(stderr, "test_events: mkdtemp %s: %s\n", suite_root, strerror(errno));
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(events_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fx_test_rm_rf(suite_root);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

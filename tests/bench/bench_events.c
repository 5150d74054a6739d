/*
 * bench_events — the producer path alone: events handed to the events thread
 * (events.c) the way workers hand them over, appended to the spool (group
 * commit, fdatasync), produced with the idempotent producer to the embedded
 * broker (librdkafka's mock cluster, in this process), acknowledged, and
 * marked done in the spool. Prints events per second from the first
 * submission to the last acknowledgement.
 *
 *   bench_events [EVENTS [VALUE_BYTES [KEYS]]]     defaults 200000 600 1000
 *
 * The spool lives in a fresh directory under $TMPDIR (or /tmp), removed at
 * the end. Target (issue 6): at least 100,000 events/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "server.h"
#include "../unit/tmpdir.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t drain_returned(fx_worker *w)
{
    size_t n = 0;
    for (fx_event_ticket *t = fx_events_take_returned(w), *next; t; t = next) {
        next = t->next;
        fx_event_ticket_free(t);
        n++;
    }
    return n;
}


int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    long vbytes = argc > 2 ? atol(argv[2]) : 600;
    long nkeys = argc > 3 ? atol(argv[3]) : 1000;
    if (n <= 0 || vbytes < 64 || nkeys <= 0) {
        fprintf(stderr, "usage: bench_events [EVENTS [VALUE_BYTES>=64 [KEYS]]]\n");
        return 2;
    }
    fx_log_set_level(FX_LOG_WARN);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/ficus-bench-events-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char spool[4200];
    snprintf(spool, sizeof(spool), "%s/spool", dir);
    fx_events_conf conf = {.embedded = 1, .spool_dir = spool, .spool_max_bytes = (size_t)8 << 30,
                           .max_data_bytes = 1 << 20};
    char err[512];
    fx_events *ev = fx_events_start(&conf, err, sizeof(err));
    if (!ev) {
        fprintf(stderr, "bench_events: %s\n", err);
        fx_test_rm_rf(dir);
        return 1;
    }
    /* a worker as far as tickets are concerned: its mailbox is polled here */
    static fx_worker w;
    w.ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    /* a CloudEvent-sized JSON value */
    char *proto = malloc((size_t)vbytes + 1);
    memset(proto, 'x', (size_t)vbytes);
    memcpy(proto, "{\"data\":\"", 9);
    memcpy(proto + vbytes - 2, "\"}", 2);
    proto[vbytes] = '\0';

    /* warm-up: the producer's first connection, metadata and producer id are not what is measured */
    size_t back = 0;
    long warm = 1000;
    for (long i = 0; i < warm; i++) {
        char *value = malloc((size_t)vbytes);
        memcpy(value, proto, (size_t)vbytes);
        fx_event_ticket *t = fx_event_ticket_new("bench", "warm", 4, value, (size_t)vbytes);
        t->worker = &w;
        fx_events_submit(ev, t);
    }
    uint64_t published = 0, undone = 0;
    for (double end = now_s() + 30; now_s() < end && published < (uint64_t)warm; usleep(1000)) {
        back += drain_returned(&w);
        fx_events_counts(ev, &published, &undone);
    }
    if (published < (uint64_t)warm) {
        fprintf(stderr, "bench_events: the warm-up events were not acknowledged within 30 s\n");
        return 1;
    }
    n += warm; /* the counters include the warm-up; the loop below makes n - warm more */

    double t0 = now_s();
    for (long i = warm; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "%ld", i % nkeys);
        char *value = malloc((size_t)vbytes);
        memcpy(value, proto, (size_t)vbytes);
        fx_event_ticket *t = fx_event_ticket_new("bench", key, (size_t)kl, value, (size_t)vbytes);
        if (!t) {
            fprintf(stderr, "bench_events: out of memory\n");
            return 1;
        }
        t->worker = &w;
        t->created_ms = (uint64_t)time(NULL) * 1000;
        fx_events_submit(ev, t);
        if ((i & 1023) == 0)
            back += drain_returned(&w);
    }
    double t_submitted = now_s();
    double deadline = t_submitted + 120;
    while (now_s() < deadline) {
        back += drain_returned(&w);
        fx_events_counts(ev, &published, &undone);
        if (published >= (uint64_t)n && undone == 0)
            break;
        usleep(1000);
    }
    double t1 = now_s();
    back += drain_returned(&w);
    fx_events_stop(ev, 5000);
    back += drain_returned(&w);
    free(proto);
    close(w.ctl_fd);
    fx_test_rm_rf(dir);
    if (published < (uint64_t)n) {
        fprintf(stderr, "bench_events: only %llu of %ld events acknowledged within 120 s\n",
                (unsigned long long)published, n);
        return 1;
    }
    printf("events %ld, value %ld bytes, %ld keys: submitted in %.3f s, all acknowledged after %.3f s: "
           "%.0f events/s (tickets back: %zu)\n",
           n - warm, vbytes, nkeys, t_submitted - t0, t1 - t0, (double)(n - warm) / (t1 - t0), back);
    return 0;
}

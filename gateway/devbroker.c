/*
 * devbroker.c — the development broker (devbroker.h): librdkafka's mock
 * cluster in this process, with fault injection.
 *
 *   names          Kafka error names and protocol API names to codes, topic names
 *   mock calls     the pause after each call that works around a lost wake-up
 *                  of the mock thread
 *   fx_devbroker_start / _stop / _bootstraps
 *                  the cluster and the rd_kafka_t it needs for its bookkeeping
 *   fx_devbroker_command
 *                  the one-line fault-injection commands
 *   fx_devbroker_main
 *                  `ficus devbroker`: flags, bootstrap file, then one poll loop
 *                  over stdin (commands) and a self-pipe (signals)
 *
 * The mock cluster runs on its own thread; every rd_kafka_mock_* call below
 * is a synchronous request to that thread, so the calls are safe from any
 * thread; b->lock keeps commands from interleaving and guards b->hollow.
 */
#include "devbroker.h"

#include "log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* librdkafka 2.0's mock gives topics that a client auto-creates this many partitions, and has no
 * setting for it (its cluster defaults are private) */
#define MOCK_AUTO_PARTITIONS 4
#define TOPIC_NAME_MAX 249 /* Kafka's limit */
#define LINE_MAX_BYTES 4096 /* a command line, newline included */
#define FX_STR_(x) #x
#define FX_STR(x) FX_STR_(x)

struct fx_devbroker {
    rd_kafka_t *rk; /* the cluster's own handle: bookkeeping and logs, never produces */
    rd_kafka_mock_cluster_t *mc;
    int brokers;
    int partitions; /* for topics created here without a count */
    char *bootstraps;
    pthread_mutex_t lock; /* one command at a time: `down` is several mock calls; and: */
    char **hollow;        /* topics topic-error created without partitions (cmd_topic_error) */
    size_t nhollow;
};

/* ------------------------------------------------------------------------ names */

/* the Kafka protocol's request types (ApiKey) a test may want to break */
static const struct {
    const char *name;
    int16_t key;
} api_names[] = {
    {"Produce", 0},         {"Fetch", 1},           {"ListOffsets", 2},         {"Metadata", 3},
    {"OffsetCommit", 8},    {"OffsetFetch", 9},     {"FindCoordinator", 10},    {"JoinGroup", 11},
    {"Heartbeat", 12},      {"LeaveGroup", 13},     {"SyncGroup", 14},          {"DescribeGroups", 15},
    {"ListGroups", 16},     {"SaslHandshake", 17},  {"ApiVersions", 18},        {"InitProducerId", 22},
    {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25}, {"EndTxn", 26},        {"TxnOffsetCommit", 28},
};

static int api_parse(const char *s, int16_t *key)
{
    for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++)
        if (!strcasecmp(s, api_names[i].name)) {
            *key = api_names[i].key;
            return 0;
        }
    return -1;
}

/*
 * A Kafka error by its name as rd_kafka_err2name() spells it (TOPIC_AUTHORIZATION_FAILED,
 * _TRANSPORT), case-insensitive, with or without the RD_KAFKA_RESP_ERR_ prefix; NONE is
 * no error. Only broker errors travel in a protocol response: internal ones (negative) are
 * refused unless `transport_ok` lets _TRANSPORT through (the mock then disconnects).
 */
static int err_parse(const char *s, int transport_ok, rd_kafka_resp_err_t *out)
{
    if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
        s += 18;
    if (!strcasecmp(s, "NONE")) {
        *out = RD_KAFKA_RESP_ERR_NO_ERROR;
        return 0;
    }
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (!descs[i].name || strcasecmp(s, descs[i].name))
            continue;
        if (descs[i].code < 0 && !(transport_ok && descs[i].code == RD_KAFKA_RESP_ERR__TRANSPORT))
            return -1;
        *out = descs[i].code;
        return 0;
    }
    return -1;
}

static int topic_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOPIC_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

/* a whole decimal number in [lo, hi] */
static int int_parse(const char *s, int lo, int hi, int *out)
{
    if (!*s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* ------------------------------------------------------------------------ mock calls */

/*
 * Every rd_kafka_mock_* call that changes the cluster is an op queued to the mock thread, which
 * serves its queue and only then drains its wake-up pipe: an op queued in between (the next
 * call of the same command, right after the previous one returned) loses its wake-up and waits
 * for the thread's 1 s poll timeout. A few milliseconds after each op close that window, so
 * `down` on 3 brokers or a topic-error takes milliseconds, not seconds.
 */
static rd_kafka_resp_err_t settled(rd_kafka_resp_err_t e)
{
    struct timespec gap = {0, 10 * 1000 * 1000};
    while (nanosleep(&gap, &gap) < 0 && errno == EINTR) {
    }
    return e;
}

static int replication(const fx_devbroker *b)
{
    return b->brokers < 3 ? b->brokers : 3;
}

/* ------------------------------------------------------------------------ the cluster */

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    fx_log(level <= LOG_ERR ? FX_LOG_ERROR : FX_LOG_WARN, "devbroker: %s: %s", fac, buf);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

fx_devbroker *fx_devbroker_start(int brokers, int partitions, char *err, size_t errlen)
{
    if (brokers < 1 || brokers > 3) {
        set_err(err, errlen, "devbroker: %d brokers: use 1 to 3", brokers);
        return NULL;
    }
    if (partitions < 1 || partitions > 64) {
        set_err(err, errlen, "devbroker: %d partitions: use 1 to 64", partitions);
        return NULL;
    }
    fx_devbroker *b = calloc(1, sizeof(*b));
    if (!b) {
        set_err(err, errlen, "devbroker: out of memory");
        return NULL;
    }
    b->brokers = brokers;
    b->partitions = partitions;
    pthread_mutex_init(&b->lock, NULL);

    /* The handle has no bootstrap.servers: it exists because the mock cluster hangs off one.
     * Only warnings and errors reach our log (librdkafka's notices about the missing
     * bootstrap.servers are not news here). */
    char cerr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "ficus-devbroker", cerr, sizeof(cerr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", cerr, sizeof(cerr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        set_err(err, errlen, "devbroker: librdkafka configuration: %s", cerr);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, cerr, sizeof(cerr)); /* takes conf on success */
    if (!b->rk) {
        rd_kafka_conf_destroy(conf);
        set_err(err, errlen, "devbroker: creating the cluster's librdkafka handle: %s", cerr);
        goto fail;
    }
    b->mc = rd_kafka_mock_cluster_new(b->rk, brokers);
    if (!b->mc) {
        set_err(err, errlen, "devbroker: the mock cluster did not start (no free loopback port? see the log above)");
        goto fail;
    }
    const char *bs = rd_kafka_mock_cluster_bootstraps(b->mc);
    if (!bs || !(b->bootstraps = strdup(bs))) {
        set_err(err, errlen, "devbroker: the mock cluster has no bootstrap address");
        goto fail;
    }
    return b;
fail:
    fx_devbroker_stop(b);
    return NULL;
}

const char *fx_devbroker_bootstraps(const fx_devbroker *b)
{
    return b->bootstraps;
}

void fx_devbroker_stop(fx_devbroker *b)
{
    if (!b)
        return;
    if (b->mc)
        rd_kafka_mock_cluster_destroy(b->mc);
    if (b->rk)
        rd_kafka_destroy(b->rk);
    pthread_mutex_destroy(&b->lock);
    for (size_t i = 0; i < b->nhollow; i++)
        free(b->hollow[i]);
    free(b->hollow);
    free(b->bootstraps);
    free(b);
}

int fx_devbroker_create_topic(fx_devbroker *b, const char *topic, int partitions, char *err, size_t errlen)
{
    if (!topic_name_ok(topic)) {
        set_err(err, errlen, "topic '%.64s': use 1 to %d of the characters a-z A-Z 0-9 . _ -", topic, TOPIC_NAME_MAX);
        return -1;
    }
    if (partitions == 0)
        partitions = b->partitions;
    if (partitions < 1 || partitions > 64) {
        set_err(err, errlen, "topic '%s': %d partitions: use 1 to 64", topic, partitions);
        return -1;
    }
    pthread_mutex_lock(&b->lock);
    int rc = 0;
    rd_kafka_resp_err_t e = settled(rd_kafka_mock_topic_create(b->mc, topic, partitions, replication(b)));
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        set_err(err, errlen, "topic '%s' already exists (a client's metadata request creates topics with %d "
                             "partitions: create it before producing to it)", topic, MOCK_AUTO_PARTITIONS);
        rc = -1;
    } else if (e) {
        set_err(err, errlen, "topic '%s': %s", topic, rd_kafka_err2str(e));
        rc = -1;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ------------------------------------------------------------------------ commands */

static int set_all_brokers(fx_devbroker *b, int up, char *reply, size_t replylen)
{
    for (int id = 1; id <= b->brokers; id++) {
        rd_kafka_resp_err_t e =
            settled(up ? rd_kafka_mock_broker_set_up(b->mc, id) : rd_kafka_mock_broker_set_down(b->mc, id));
        if (e) {
            snprintf(reply, replylen, "error: broker %d: %s", id, rd_kafka_err2str(e));
            return -1;
        }
    }
    snprintf(reply, replylen, "ok %s (%d broker%s)", up ? "up" : "down", b->brokers, b->brokers == 1 ? "" : "s");
    return 0;
}

static int hollow_find(const fx_devbroker *b, const char *topic)
{
    for (size_t i = 0; i < b->nhollow; i++)
        if (!strcmp(b->hollow[i], topic))
            return 1;
    return 0;
}

static int hollow_add(fx_devbroker *b, const char *topic)
{
    char **h = realloc(b->hollow, (b->nhollow + 1) * sizeof(*h));
    if (!h)
        return -1;
    b->hollow = h;
    if (!(h[b->nhollow] = strdup(topic)))
        return -1;
    b->nhollow++;
    return 0;
}

/*
 * A topic error reaches clients in Metadata only. librdkafka 2.0 fails the messages with a
 * missing-topic error (UNKNOWN_TOPIC_OR_PART, TOPIC_EXCEPTION) after its propagation delay; any
 * other error it takes as permanent only when the topic has no partitions, and with partitions
 * it waits for the error to pass. So for those a topic that does not exist yet is created
 * without partitions ("hollow") to carry the error, and keeps none: the mock cannot add
 * partitions later, so that error cannot be cleared. A topic that exists keeps its partitions.
 */
static int cmd_topic_error(fx_devbroker *b, const char *topic, const char *errname, char *reply, size_t replylen)
{
    rd_kafka_resp_err_t e;
    if (!topic_name_ok(topic)) {
        snprintf(reply, replylen, "error: topic-error: bad topic name '%.64s'", topic);
        return -1;
    }
    if (err_parse(errname, 0, &e) < 0) {
        snprintf(reply, replylen, "error: topic-error: unknown Kafka error '%.64s' (a name like "
                                  "TOPIC_AUTHORIZATION_FAILED or UNKNOWN_TOPIC_OR_PART, or NONE to clear)", errname);
        return -1;
    }
    if (!e && hollow_find(b, topic)) {
        snprintf(reply, replylen, "error: topic-error: '%s' was created by topic-error without partitions and the "
                                  "mock cannot add any: use another topic name", topic);
        return -1;
    }
    /* A missing-topic error fails the messages whatever the partitions: no need to hollow the
     * topic. NONE on a topic nobody has made yet: a plain topic with our count, not the mock's. */
    int missing = e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
    rd_kafka_resp_err_t ce =
        settled(rd_kafka_mock_topic_create(b->mc, topic, e && !missing ? 0 : b->partitions, replication(b)));
    if (ce && ce != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        snprintf(reply, replylen, "error: topic-error: creating topic '%s': %s", topic, rd_kafka_err2str(ce));
        return -1;
    }
    int hollow = e && !missing && !ce;
    if (hollow && hollow_add(b, topic) < 0) {
        snprintf(reply, replylen, "error: out of memory");
        return -1;
    }
    rd_kafka_mock_topic_set_error(b->mc, topic, e);
    settled(RD_KAFKA_RESP_ERR_NO_ERROR);
    snprintf(reply, replylen, "ok topic-error %s %s%s", topic, e ? rd_kafka_err2name(e) : "NONE",
             missing  ? " (producers fail once topic.metadata.propagation.max.ms has passed)"
             : hollow ? " (new topic without partitions: producers fail at once)"
             : e      ? " (existing topic: producers hold their messages until message.timeout.ms)"
                      : "");
    return 0;
}

static int cmd_request_errors(fx_devbroker *b, const char *api, const char *count, const char *errname, char *reply,
                              size_t replylen)
{
    int16_t key;
    int n;
    rd_kafka_resp_err_t e;
    if (api_parse(api, &key) < 0) {
        snprintf(reply, replylen, "error: request-errors: unknown API '%.64s' (Produce, Metadata, Fetch, "
                                  "InitProducerId, ApiVersions, ...)", api);
        return -1;
    }
    if (int_parse(count, 1, 100000, &n) < 0) {
        snprintf(reply, replylen, "error: request-errors: count '%.32s': a number from 1 to 100000", count);
        return -1;
    }
    if (err_parse(errname, 1, &e) < 0 || e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(reply, replylen, "error: request-errors: '%.64s' is not an error a request can fail with (a "
                                  "Kafka error name like NOT_ENOUGH_REPLICAS, or _TRANSPORT to disconnect)", errname);
        return -1;
    }
    rd_kafka_resp_err_t *errs = malloc((size_t)n * sizeof(*errs));
    if (!errs) {
        snprintf(reply, replylen, "error: out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        errs[i] = e;
    rd_kafka_mock_push_request_errors_array(b->mc, key, (size_t)n, errs);
    free(errs);
    snprintf(reply, replylen, "ok the next %d %s request%s fail with %s", n, api, n == 1 ? "" : "s",
             rd_kafka_err2name(e));
    return 0;
}

static const char commands_help[] =
    "down | up | topic-error TOPIC ERR | request-errors API N ERR | create TOPIC [PARTITIONS] | bootstrap";

int fx_devbroker_command(fx_devbroker *b, const char *line, char *reply, size_t replylen)
{
    char buf[LINE_MAX_BYTES];
    char *argv[5];
    int argc = 0;
    if (strlen(line) >= sizeof(buf)) {
        snprintf(reply, replylen, "error: command longer than %d bytes with its newline", LINE_MAX_BYTES);
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *save = NULL, *tok = strtok_r(buf, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == 5) {
            snprintf(reply, replylen, "error: too many words (commands: %s)", commands_help);
            return -1;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        snprintf(reply, replylen, "error: empty command (commands: %s)", commands_help);
        return -1;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "create") && (argc == 2 || argc == 3)) { /* fx_devbroker_create_topic takes the lock */
        int n = 0;
        char err[512];
        if (argc == 3 && int_parse(argv[2], 1, 64, &n) < 0) {
            snprintf(reply, replylen, "error: create: partitions '%.32s': a number from 1 to 64", argv[2]);
            return -1;
        }
        if (fx_devbroker_create_topic(b, argv[1], n, err, sizeof(err)) < 0) {
            snprintf(reply, replylen, "error: create: %s", err);
            return -1;
        }
        n = n ? n : b->partitions;
        snprintf(reply, replylen, "ok created %s with %d partition%s", argv[1], n, n == 1 ? "" : "s");
        return 0;
    }
    int rc = -1;
    pthread_mutex_lock(&b->lock);
    if ((!strcmp(cmd, "down") || !strcmp(cmd, "up")) && argc == 1) {
        rc = set_all_brokers(b, !strcmp(cmd, "up"), reply, replylen);
    } else if (!strcmp(cmd, "bootstrap") && argc == 1) {
        snprintf(reply, replylen, "ok %s", b->bootstraps);
        rc = 0;
    } else if (!strcmp(cmd, "topic-error") && argc == 3) {
        rc = cmd_topic_error(b, argv[1], argv[2], reply, replylen);
    } else if (!strcmp(cmd, "request-errors") && argc == 4) {
        rc = cmd_request_errors(b, argv[1], argv[2], argv[3], reply, replylen);
    } else {
        int known = !strcmp(cmd, "down") || !strcmp(cmd, "up") || !strcmp(cmd, "bootstrap") || !strcmp(cmd, "create") ||
                    !strcmp(cmd, "topic-error") || !strcmp(cmd, "request-errors");
        snprintf(reply, replylen, "error: %s '%.64s' (commands: %s)", known ? "wrong arguments for" : "unknown command",
                 cmd, commands_help);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ------------------------------------------------------------------------ ficus devbroker */

static const char devbroker_usage[] =
    "usage: ficus devbroker [--brokers N] [--partitions N] [--topic NAME[:PARTITIONS]]... [--bootstrap-file FILE]\n"
    "  --brokers N          brokers in the cluster, 1 to 3 (default 1)\n"
    "  --partitions N       partitions of the topics created by --topic or `create TOPIC`, 1 to 64\n"
    "                       (default 4; topics a client auto-creates always get 4)\n"
    "  --topic NAME[:N]     create a topic at start (repeatable)\n"
    "  --bootstrap-file F   write the bootstrap address to F (removed at exit)\n"
    "commands on stdin, one a line, each answered with one line on stdout:\n"
    "  down | up | topic-error TOPIC ERR | request-errors API N ERR | create TOPIC [PARTITIONS] | bootstrap\n"
    "signals: SIGUSR1 down, SIGUSR2 up, SIGTERM/SIGINT stop\n";

/* The write end of the signal self-pipe: the one piece of process-wide state, because a signal
 * handler reaches nothing else. Set and cleared by fx_devbroker_main only. */
static int signal_pipe_wr = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    if (signal_pipe_wr >= 0 && write(signal_pipe_wr, &c, 1) < 0) {
        /* pipe full: that many signals pending already, the loop will get to them */
    }
    errno = saved;
}

static int write_bootstrap_file(const char *path, const char *bootstraps)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        fprintf(stderr, "ficus devbroker: --bootstrap-file %s: path too long\n", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "ficus devbroker: --bootstrap-file %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int bad = fprintf(f, "%s\n", bootstraps) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) {
        fprintf(stderr, "ficus devbroker: --bootstrap-file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void reply_line(const char *s)
{
    printf("%s\n", s);
    fflush(stdout);
}

/* every complete line of buf[0..*len) answered; the rest moved to the front */
static void run_lines(fx_devbroker *b, char *buf, size_t *len, int *discarding)
{
    size_t start = 0;
    for (size_t i = 0; i < *len; i++) {
        if (buf[i] != '\n')
            continue;
        buf[i] = '\0';
        const char *line = buf + start;
        start = i + 1;
        if (*discarding) { /* the tail of an overlong line, already answered */
            *discarding = 0;
            continue;
        }
        const char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#') /* blank lines and comments: for scripts, no answer */
            continue;
        char reply[1024];
        fx_devbroker_command(b, line, reply, sizeof(reply));
        reply_line(reply);
    }
    memmove(buf, buf + start, *len - start);
    *len -= start;
    if (*len == LINE_MAX_BYTES) { /* no newline in a full buffer */
        if (!*discarding)
            reply_line("error: command longer than " FX_STR(LINE_MAX_BYTES) " bytes with its newline");
        *discarding = 1;
        *len = 0;
    }
}

static int parse_topic_flag(fx_devbroker *b, const char *arg)
{
    char name[TOPIC_NAME_MAX + 2];
    int n = 0;
    const char *colon = strchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
    if (len >= sizeof(name) || (colon && int_parse(colon + 1, 1, 64, &n) < 0)) {
        fprintf(stderr, "ficus devbroker: --topic '%s': NAME or NAME:PARTITIONS (1 to 64)\n", arg);
        return -1;
    }
    memcpy(name, arg, len);
    name[len] = '\0';
    char err[512];
    if (fx_devbroker_create_topic(b, name, n, err, sizeof(err)) < 0) {
        fprintf(stderr, "ficus devbroker: --topic: %s\n", err);
        return -1;
    }
    return 0;
}

int fx_devbroker_main(int argc, char **argv)
{
    int brokers = 1, partitions = MOCK_AUTO_PARTITIONS;
    const char *bootstrap_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(devbroker_usage, stdout);
            return 0;
        }
        int is_int = !strcmp(a, "--brokers") || !strcmp(a, "--partitions");
        if (!is_int && strcmp(a, "--bootstrap-file") && strcmp(a, "--topic")) {
            fprintf(stderr, "ficus devbroker: unknown argument '%s'\n\n%s", a, devbroker_usage);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ficus devbroker: %s needs a value\n\n%s", a, devbroker_usage);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--brokers") && int_parse(v, 1, 3, &brokers) < 0) {
            fprintf(stderr, "ficus devbroker: --brokers '%s': a number from 1 to 3\n", v);
            return 2;
        }
        if (!strcmp(a, "--partitions") && int_parse(v, 1, 64, &partitions) < 0) {
            fprintf(stderr, "ficus devbroker: --partitions '%s': a number from 1 to 64\n", v);
            return 2;
        }
        if (!strcmp(a, "--bootstrap-file"))
            bootstrap_file = v;
    }

    char err[512];
    fx_devbroker *b = fx_devbroker_start(brokers, partitions, err, sizeof(err));
    if (!b) {
        fprintf(stderr, "ficus %s\n", err);
        return 1;
    }
    for (int i = 1; i < argc; i++) /* the flags were checked above; topics need the cluster */
        if (!strcmp(argv[i], "--topic") && parse_topic_flag(b, argv[++i]) < 0) {
            fx_devbroker_stop(b);
            return 2;
        }

    int sp[2];
    if (pipe(sp) < 0) {
        fprintf(stderr, "ficus devbroker: pipe: %s\n", strerror(errno));
        fx_devbroker_stop(b);
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(sp[i], F_SETFD, FD_CLOEXEC);
        fcntl(sp[i], F_SETFL, O_NONBLOCK);
    }
    signal_pipe_wr = sp[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    const int sigs[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a reader of our stdout that went away is not a reason to die */

    int rc = 0;
    if (bootstrap_file && write_bootstrap_file(bootstrap_file, fx_devbroker_bootstraps(b)) < 0) {
        rc = 1;
        bootstrap_file = NULL;
        goto out;
    }
    printf("devbroker: bootstrap %s\n", fx_devbroker_bootstraps(b));
    fflush(stdout);
    fx_log(FX_LOG_INFO, "devbroker: %d broker%s at %s; commands on stdin, SIGUSR1 down, SIGUSR2 up", brokers,
           brokers == 1 ? "" : "s", fx_devbroker_bootstraps(b));

    char line[LINE_MAX_BYTES];
    size_t len = 0;
    int discarding = 0, in_fd = STDIN_FILENO, running = 1;
    while (running) {
        struct pollfd pf[2] = {{.fd = sp[0], .events = POLLIN}, {.fd = in_fd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "ficus devbroker: poll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (pf[0].revents & POLLIN) {
            unsigned char sigs_got[16];
            ssize_t n = read(sp[0], sigs_got, sizeof(sigs_got));
            for (ssize_t i = 0; i < n; i++) {
                if (sigs_got[i] == SIGTERM || sigs_got[i] == SIGINT) {
                    running = 0;
                } else {
                    char reply[256];
                    fx_devbroker_command(b, sigs_got[i] == SIGUSR1 ? "down" : "up", reply, sizeof(reply));
                    /* on stderr: stdout carries only answers to stdin's commands */
                    fx_log(FX_LOG_INFO, "devbroker: %s: %s", sigs_got[i] == SIGUSR1 ? "SIGUSR1" : "SIGUSR2", reply);
                }
            }
        }
        if (pf[1].revents & POLLNVAL) { /* stdin closed: run on, signals still work */
            in_fd = -1;
        } else if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(in_fd, line + len, sizeof(line) - len);
            if (n > 0) {
                len += (size_t)n;
                run_lines(b, line, &len, &discarding);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                if (len && !discarding) { /* a last line without its newline */
                    line[len++] = '\n';
                    run_lines(b, line, &len, &discarding);
                }
                in_fd = -1; /* EOF (/dev/null, a closed pipe): keep serving */
            }
        }
    }

out:
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    signal_pipe_wr = -1;
    close(sp[0]);
    close(sp[1]);
    if (bootstrap_file)
        unlink(bootstrap_file);
    fx_devbroker_stop(b);
    return rc;
}

/*
 * documents-service.c — the feature the ficus demo extracts from the
 * monolith: documents, served from a materialized view that is built from
 * the gateway's change events, not from the monolith's database.
 *
 *   documents-service --listen HOST:PORT --brokers HOST:PORT[,..] --store FILE
 *                     [--group NAME] [--policies DIR] [--quiet]
 *
 * One process, one thread, one libevent loop for HTTP (evhttp) and Kafka:
 *   - a librdkafka consumer in group --group reads the topics `profiles` and
 *     `documents` (CloudEvents, docs/events.md). Offsets are never committed
 *     to Kafka: they live in the store (store.c, SQLite) and commit in the
 *     same transaction as the view rows they produced, so the file is always
 *     a consistent resume point. The rebalance callback assigns each partition
 *     at its stored next offset, or at the beginning when none is stored: a
 *     first start, or a deleted store, rebuilds the view from the topics.
 *     The store also keeps the cluster id its offsets belong to: a different
 *     one (the embedded dev broker restarted empty) clears the view and reads
 *     the new topics from the beginning (check_cluster).
 *   - the consumer queue signals a pipe (rd_kafka_queue_io_event_enable), and
 *     the loop drains it with rd_kafka_consumer_poll(.., 0): nothing blocks.
 *     One drain is one transaction. A timer polls too, as a safety net, and
 *     recomputes the lag from the cached watermarks (rd_kafka_get_watermark_
 *     offsets: updated by every fetch response, never a network round trip).
 *   - HTTP: GET /api/documents/{id}, GET /api/documents?author=ID[&limit=N]
 *     [&after=ID] (pages by id: "next" is the cursor when there are more), /healthz
 *     (503 until partitions are assigned and every one has caught up once),
 *     /metrics (Prometheus text, readable by the dashboard: CORS *).
 *
 * Trust: this service believes the identity headers the gateway forwards
 * (X-User-Id, X-User-Roles, X-User-Scope). The gateway strips client-sent
 * copies; nothing here can. So it must be reachable only through the gateway:
 * bind it to loopback (script/server runs it with --listen 127.0.0.1:8101) or
 * a network only the gateway reaches, never a public address.
 *
 * Authorization, early and in one place: identity comes only from those
 * headers, and per-document decisions are made by the authz
 * library (authz/ficus_authz.h) evaluating the deployment's own policy files
 * (--policies, default policies/) for route documents-read — the same files
 * and the same evaluator the gateway runs at the edge. We link the library
 * rather than call POST /authz/v1/check because a list of N documents would
 * be N checks (or a batch) over HTTP on every read, each a network hop that
 * can fail, while in-process evaluation is allocation-free and cannot be
 * unavailable; the price is reloading the files on change (a restart here).
 * The deployment's files decide route-level reads (editor, admin, scope);
 * "the author may read their own document" needs the document, which the
 * edge never sees, so it is one more policy in the same language (BUILTIN_
 * POLICY below), given the document as `context.document`.
 *
 * Map of this file:
 *   app        the process state: loop, consumer, store, policies, counters
 *   replies    one place that sets X-Served-By and sends; problem+json
 *   authz      claims from the forwarded headers, one decision per document
 *   handlers   /api/documents, /healthz, /metrics
 *   kafka      config, rebalance (assign at stored offsets), the drain, lag
 *   main       CLI, listener, signals, teardown
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <librdkafka/rdkafka.h>

#include "ficus_authz.h"
#include "listen.h"
#include "policy_dir.h"
#include "store.h"

#define NAME "documents-service"
#define BATCH_MAX 500        /* messages per transaction; the loop serves HTTP between batches */
#define TICK_MS 200          /* safety-net poll and lag refresh */
#define ROLES_MAX 32
#define ID_MAX 256
#define ROUTE "documents-read"
#define LIST_DEFAULT 100     /* GET /api/documents: items per page without ?limit= */
#define LIST_MAX 1000
#define LIST_MAX_TEXT "1000"
#define HEADERS_MAX 16384    /* bytes of request headers (a gateway-forwarded GET needs a few hundred) */
#define BODY_MAX 4096        /* this service only reads: no request needs a body */
#define CLUSTER_WAIT_MS 2000 /* at an assignment the metadata is in: only an odd broker makes this wait */

enum { TOPIC_PROFILES, TOPIC_DOCUMENTS, TOPIC_COUNT };
static const char *const topic_names[TOPIC_COUNT] = {"profiles", "documents"};

/* The per-document rule: the author reads their own document. Loaded with the deployment's
 * files into one set; it only adds a permit, so any forbid of theirs still wins (as far as
 * the forwarded claims, sub and roles, can trigger it: rules on other claims act at the edge). */
static const char BUILTIN_POLICY[] =
    "policies:\n"
    "  - id: documents-service-author-reads\n"
    "    effect: permit\n"
    "    routes: [" ROUTE "]\n"
    "    description: the author of a document may read it (context.document is the view row)\n"
    "    when: \"token.sub == context.document.author\"\n";

/* One assigned partition. */
struct part {
    int topic;     /* TOPIC_* */
    int32_t partition;
    int64_t next;  /* the next offset to apply; -1: none stored and none consumed yet */
    int64_t lag;   /* from the last refresh; -1: not known yet */
};

struct app {
    struct event_base *base;
    struct evhttp *http;
    struct event *sigterm, *sigint, *kafka_ev, *tick;
    struct evbuffer *out; /* reply bodies are staged here (evhttp moves them out) */
    docstore *store;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int pipe_fd[2];
    fx_policy_set *policies;
    int route_index;
    struct part *parts;
    size_t nparts, capparts;
    int assigned;   /* a rebalance gave us partitions */
    int ready;      /* latched: caught up once */
    int fatal;      /* the store failed: stop without committing */
    int quiet;
    uint64_t resets;  /* views cleared for a new cluster id or a cut log */
    int rebuild;      /* a partition went back (its log was cut): clear and reread after this batch */
    char *cluster;    /* the cluster id of the last assignment (NULL: the brokers give none) */
    uint64_t applied[TOPIC_COUNT];
    uint64_t skipped[TOPIC_COUNT][8];
};

/* ---- app ------------------------------------------------------------------------------------ */

static void say(const struct app *app, const char *fmt, ...)
{
    va_list ap;
    if (app->quiet)
        return;
    va_start(ap, fmt);
    fputs(NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void fail_store(struct app *app)
{
    fprintf(stderr, NAME ": %s; stopping (the batch is not committed: a restart resumes at the last commit)\n",
            docstore_error(app->store));
    app->fatal = 1;
    event_base_loopbreak(app->base);
}

static int topic_index(const char *name)
{
    for (int i = 0; i < TOPIC_COUNT; i++)
        if (!strcmp(name, topic_names[i]))
            return i;
    return -1;
}

static struct part *part_find(struct app *app, int topic, int32_t partition)
{
    for (size_t i = 0; i < app->nparts; i++)
        if (app->parts[i].topic == topic && app->parts[i].partition == partition)
            return &app->parts[i];
    return NULL;
}

/* ---- replies -------------------------------------------------------------------------------- */

static void reply(struct app *app, struct evhttp_request *req, int status, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Served-By", NAME);
    if (ctype)
        evhttp_add_header(h, "Content-Type", ctype);
    evhttp_send_reply(req, status, NULL, app->out);
}

/* RFC 9457 problem details; detail must need no JSON escaping beyond what json_dumps does. */
static void reply_problem(struct app *app, struct evhttp_request *req, int status, const char *title,
                          const char *detail)
{
    json_t *p = json_pack("{s:s,s:s,s:i,s:s}", "type", "about:blank", "title", title, "status", status,
                          "detail", detail);
    char *s = p ? json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(p);
    evbuffer_drain(app->out, evbuffer_get_length(app->out));
    if (s)
        evbuffer_add(app->out, s, strlen(s));
    free(s);
    reply(app, req, status, "application/problem+json");
}

/* ---- authz ---------------------------------------------------------------------------------- */

/*
 * A forwarded claim back as JSON, undoing the gateway's rendering (fx_jwt_claim_render,
 * authz/ficus_authz.h): an array of strings and numbers arrives joined with ",", any other
 * array as compact JSON ("[...]"), a string as it is. So "[..." that parses as a JSON array
 * is that array; anything else is split at "," into a list — except, with split_commas 0
 * and no "," in it, kept as one string: a `scope` claim is an OAuth space-separated string,
 * and the policy language's `'x' in token.scope` matches its words. The rendering cannot
 * tell ["a,b"] from ["a","b"]: a value with a "," inside one element is split (docs: the
 * gateway would have to render such an array as JSON for it to arrive intact).
 */
static json_t *claim_of_header(const char *h, int split_commas)
{
    if (h[0] == '[') {
        json_t *v = json_loads(h, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_array(v))
            return v;
        json_decref(v);
    }
    if (!split_commas && !strchr(h, ','))
        return json_string(h);
    json_t *arr = json_array();
    for (const char *p = h; arr && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n)
            json_array_append_new(arr, json_stringn(p, n));
        p = comma ? comma + 1 : p + strlen(p);
    }
    return arr;
}

/*
 * The caller as claims {"sub": X-User-Id, "roles": X-User-Roles, "scope": X-User-Scope},
 * each as the gateway rendered it (claim_of_header); a missing header is a missing claim.
 * NULL without X-User-Id: nobody the gateway vouched for.
 */
static fx_authz_doc *claims_of(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *sub = evhttp_find_header(in, "X-User-Id");
    const char *roles = evhttp_find_header(in, "X-User-Roles");
    const char *scope = evhttp_find_header(in, "X-User-Scope");
    if (!sub || !*sub)
        return NULL;
    json_t *c = json_pack("{s:s}", "sub", sub);
    if (c && roles)
        json_object_set_new(c, "roles", claim_of_header(roles, 1));
    if (c && scope)
        json_object_set_new(c, "scope", claim_of_header(scope, 0));
    char *text = c ? json_dumps(c, JSON_COMPACT) : NULL;
    json_decref(c);
    char err[128];
    fx_authz_doc *doc = text ? fx_authz_doc_parse(text, strlen(text), err, sizeof(err)) : NULL;
    free(text);
    return doc;
}

/* Whether the caller may read this document: the deployment's policies for documents-read. */
static int may_read(struct app *app, const fx_authz_doc *claims, const char *id, const char *author)
{
    json_t *ctx = json_pack("{s:{s:s,s:o}}", "document", "id", id, "author",
                            author ? json_string(author) : json_null());
    char *text = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
    json_decref(ctx);
    char err[128];
    fx_authz_doc *context = text ? fx_authz_doc_parse(text, strlen(text), err, sizeof(err)) : NULL;
    free(text);
    if (!context)
        return 0; /* cannot decide: deny */
    char path[ID_MAX + 32];
    int plen = snprintf(path, sizeof(path), "/api/documents/%s", id);
    fx_authz_kv params[] = {{{"id", 2}, {id, strlen(id)}}};
    fx_authz_request r = {
        .method = {"GET", 3},
        .path = {path, plen > 0 && (size_t)plen < sizeof(path) ? (size_t)plen : 0},
        .route = {ROUTE, sizeof(ROUTE) - 1},
        .route_index = app->route_index,
        .params = params,
        .nparams = 1,
        .token = claims,
        .context = context,
    };
    fx_authz_decision d;
    fx_policy_eval(app->policies, &r, &d);
    fx_authz_doc_free(context);
    return d.allow;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static void handle_get(struct app *app, struct evhttp_request *req, const char *raw_id)
{
    size_t len = 0;
    char *id = evhttp_uridecode(raw_id, 0, &len);
    if (!id || !len || len != strlen(id) || len > ID_MAX || strchr(id, '/')) {
        free(id);
        reply_problem(app, req, 404, "Not Found", "no such document");
        return;
    }
    fx_authz_doc *claims = claims_of(req);
    int found = 0;
    char *author = NULL, *json = NULL;
    if (claims) /* nobody learns whether a document exists before saying who they are */
        json = docstore_get(app->store, id, &author, &found);
    if (!claims)
        reply_problem(app, req, 401, "Unauthorized",
                      "no X-User-Id: call this service through the gateway, which forwards the caller's identity");
    else if (found < 0)
        reply_problem(app, req, 500, "Internal Server Error", docstore_error(app->store));
    else if (!found)
        reply_problem(app, req, 404, "Not Found", "no such document in the view");
    else if (!may_read(app, claims, id, author))
        reply_problem(app, req, 403, "Forbidden", "only the author, an editor or an admin may read this document");
    else {
        evbuffer_add(app->out, json, strlen(json));
        reply(app, req, 200, "application/json");
    }
    fx_authz_doc_free(claims);
    free(json);
    free(author);
    free(id);
}

struct list_ctx {
    struct app *app;
    const fx_authz_doc *claims;
    long n, limit;
    char *last;  /* the id of the last item sent: the cursor when there are more */
    int more;
};

/* One row of the page: sent when the caller may read it; a readable row past the limit
 * only says that there are more, and stops the walk. */
static int list_row(void *arg, const docstore_row *row)
{
    struct list_ctx *c = arg;
    if (!may_read(c->app, c->claims, row->id, row->author))
        return 0;
    if (c->n == c->limit) {
        c->more = 1;
        return 1;
    }
    if (c->n++)
        evbuffer_add(c->app->out, ",", 1);
    evbuffer_add(c->app->out, row->json, strlen(row->json));
    free(c->last);
    c->last = strdup(row->id);
    return 0;
}

/* ?limit=: 1..LIST_MAX, LIST_DEFAULT when absent; -1 when not such a number. */
static long list_limit(const char *v)
{
    if (!v)
        return LIST_DEFAULT;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return *v >= '0' && *v <= '9' && !*end && !errno && n >= 1 && n <= LIST_MAX ? n : -1;
}

static void handle_list(struct app *app, struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        reply_problem(app, req, 400, "Bad Request", "the query string does not parse");
        return;
    }
    const char *author = evhttp_find_header(&q, "author");
    const char *after = evhttp_find_header(&q, "after");
    long limit = list_limit(evhttp_find_header(&q, "limit"));
    fx_authz_doc *claims = claims_of(req);
    if (!claims) {
        reply_problem(app, req, 401, "Unauthorized",
                      "no X-User-Id: call this service through the gateway, which forwards the caller's identity");
    } else if (limit < 0) {
        reply_problem(app, req, 400, "Bad Request", "limit must be a whole number from 1 to " LIST_MAX_TEXT);
    } else {
        struct list_ctx c = {app, claims, 0, limit, NULL, 0};
        evbuffer_add(app->out, "{\"items\":[", 10);
        if (docstore_list_page(app->store, author && *author ? author : NULL, after && *after ? after : NULL,
                               list_row, &c) < 0) {
            evbuffer_drain(app->out, evbuffer_get_length(app->out));
            reply_problem(app, req, 500, "Internal Server Error", docstore_error(app->store));
        } else {
            evbuffer_add(app->out, "]", 1);
            if (c.more && c.last) { /* the cursor: pass it as ?after= for the next page */
                json_t *next = json_string(c.last);
                char *text = next ? json_dumps(next, JSON_ENCODE_ANY) : NULL;
                json_decref(next);
                if (text)
                    evbuffer_add_printf(app->out, ",\"next\":%s", text);
                free(text);
            }
            evbuffer_add(app->out, "}", 1);
            reply(app, req, 200, "application/json");
        }
        free(c.last);
    }
    fx_authz_doc_free(claims);
    evhttp_clear_headers(&q);
}

/* Sum of the known lags; *known = 0 when some partition's is not known yet. */
static int64_t total_lag(const struct app *app, int *known)
{
    int64_t sum = 0;
    *known = 1;
    for (size_t i = 0; i < app->nparts; i++) {
        if (app->parts[i].lag < 0)
            *known = 0;
        else
            sum += app->parts[i].lag;
    }
    return sum;
}

static void handle_healthz(struct app *app, struct evhttp_request *req)
{
    int known;
    int64_t lag = total_lag(app, &known);
    evbuffer_add_printf(app->out, "{\"status\":\"%s\",\"lag\":%" PRId64 ",\"lag_known\":%s,\"partitions\":%zu}",
                        app->ready ? "ready" : "catching_up", lag, known ? "true" : "false", app->nparts);
    reply(app, req, app->ready ? 200 : 503, "application/json");
}

static void handle_metrics(struct app *app, struct evhttp_request *req)
{
    struct evbuffer *b = app->out;
    evbuffer_add_printf(b, "# HELP documents_service_consumer_lag Messages between the applied position and the "
                           "partition's high watermark.\n# TYPE documents_service_consumer_lag gauge\n");
    for (size_t i = 0; i < app->nparts; i++)
        if (app->parts[i].lag >= 0)
            evbuffer_add_printf(b, "documents_service_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"} %" PRId64 "\n",
                                topic_names[app->parts[i].topic], app->parts[i].partition, app->parts[i].lag);
    evbuffer_add_printf(b, "# HELP documents_service_events_applied_total Change events applied to the view.\n"
                           "# TYPE documents_service_events_applied_total counter\n");
    for (int t = 0; t < TOPIC_COUNT; t++)
        evbuffer_add_printf(b, "documents_service_events_applied_total{topic=\"%s\"} %" PRIu64 "\n", topic_names[t],
                            app->applied[t]);
    evbuffer_add_printf(b, "# HELP documents_service_events_skipped_total Malformed messages skipped.\n"
                           "# TYPE documents_service_events_skipped_total counter\n");
    for (int t = 0; t < TOPIC_COUNT; t++)
        for (size_t r = 0; r < docstore_nskip_reasons; r++)
            evbuffer_add_printf(b, "documents_service_events_skipped_total{topic=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                                topic_names[t], docstore_skip_reasons[r], app->skipped[t][r]);
    evbuffer_add_printf(b, "# HELP documents_service_view_documents Documents in the materialized view.\n"
                           "# TYPE documents_service_view_documents gauge\n"
                           "documents_service_view_documents %" PRId64 "\n"
                           "# HELP documents_service_ready 1 once every assigned partition caught up.\n"
                           "# TYPE documents_service_ready gauge\n"
                           "documents_service_ready %d\n"
                           "# HELP documents_service_view_resets_total Views cleared and rebuilt because the "
                           "cluster id changed.\n"
                           "# TYPE documents_service_view_resets_total counter\n"
                           "documents_service_view_resets_total %" PRIu64 "\n",
                        docstore_count(app->store), app->ready, app->resets);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Access-Control-Allow-Origin", "*");
    reply(app, req, 200, "text/plain; version=0.0.4");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    evbuffer_drain(app->out, evbuffer_get_length(app->out));
    if (!path)
        reply_problem(app, req, 404, "Not Found", "no such resource");
    else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_problem(app, req, 405, "Method Not Allowed",
                      "this service only reads: writes go to the monolith, and reach here as events");
    } else if (!strcmp(path, "/api/documents"))
        handle_list(app, req);
    else if (!strncmp(path, "/api/documents/", 15))
        handle_get(app, req, path + 15);
    else if (!strcmp(path, "/healthz"))
        handle_healthz(app, req);
    else if (!strcmp(path, "/metrics"))
        handle_metrics(app, req);
    else
        reply_problem(app, req, 404, "Not Found", "no such resource");
}

/* ---- kafka ---------------------------------------------------------------------------------- */

/* Lag per assigned partition from the cached watermarks; latches readiness. */
static void refresh_lag(struct app *app)
{
    int caught_up = app->assigned && app->nparts > 0;
    for (size_t i = 0; i < app->nparts; i++) {
        struct part *p = &app->parts[i];
        int64_t lo = -1, hi = -1;
        rd_kafka_get_watermark_offsets(app->rk, topic_names[p->topic], p->partition, &lo, &hi);
        /* before the first message the position is the log start (0 for an empty log) */
        int64_t pos = p->next >= 0 ? p->next : hi == 0 ? 0 : lo;
        /* a position past the log's end is not "caught up": the log was cut (or the topic made
         * anew) and librdkafka resets to the beginning; where it is comes with the next message
         * or end-of-partition event (on_partition_eof) */
        if (hi >= 0 && pos > hi)
            pos = -1;
        if (hi < 0 || pos < 0)
            p->lag = hi > 0 ? hi : -1; /* an upper bound once the end is known */
        else
            p->lag = hi > pos ? hi - pos : 0;
        if (!(hi >= 0 && pos >= 0 && pos >= hi))
            caught_up = 0;
    }
    if (caught_up && !app->ready) {
        app->ready = 1;
        say(app, "caught up: %" PRId64 " documents in the view; ready", docstore_count(app->store));
    }
}

/* Ends the open batch: its view rows and offsets become durable together. */
static int commit_batch(struct app *app)
{
    if (app->fatal || !docstore_in_transaction(app->store))
        return 0;
    if (docstore_commit(app->store) < 0) {
        fail_store(app);
        return -1;
    }
    return 0;
}

/*
 * The stored offsets are positions in one cluster's logs. Another cluster — the dev broker
 * restarted empty, or the service pointed elsewhere — has other logs under the same names:
 * an offset of the old one may lie past the new end (librdkafka would silently read from the
 * beginning, on top of rows that no longer exist) or inside it (skipping events). So the
 * store remembers the cluster id, and a different one empties it: the view is rebuilt from
 * the beginning of the new topics. At an assignment the metadata (and its cluster id) is
 * already cached: rd_kafka_clusterid does not wait. 0, or -1 when the store failed.
 */
static int check_cluster(struct app *app, rd_kafka_t *rk)
{
    char *now = rd_kafka_clusterid(rk, CLUSTER_WAIT_MS);
    if (!now) {
        say(app, "the brokers give no cluster id: cannot tell a restarted (emptied) broker from the old one");
        return 0;
    }
    int found;
    char *stored = docstore_cluster(app->store, &found);
    int ret = 0;
    if (found < 0) {
        ret = -1;
    } else if (!found || strcmp(stored, now)) {
        if (found)
            fprintf(stderr, NAME ": the cluster id changed from %s to %s (a new or emptied broker): clearing the "
                            "view and its offsets, rebuilding the view from the beginning of the topics\n",
                    stored, now);
        ret = docstore_reset(app->store, now);
        if (ret == 0 && found) {
            app->ready = 0;
            app->resets++;
        }
    }
    free(stored);
    free(app->cluster);
    app->cluster = strdup(now);
    rd_kafka_mem_free(rk, now);
    return ret;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    struct app *app = opaque;
    /* what was applied so far belongs to the old assignment: make it durable first */
    commit_batch(app);
    app->nparts = 0;
    app->assigned = 0;
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS || app->fatal) {
        say(app, "partitions revoked");
        rd_kafka_assign(rk, NULL);
        return;
    }
    if ((size_t)parts->cnt > app->capparts) {
        struct part *np = realloc(app->parts, (size_t)parts->cnt * sizeof(*np));
        if (!np) {
            fprintf(stderr, NAME ": out of memory at assignment\n");
            rd_kafka_assign(rk, NULL);
            return;
        }
        app->parts = np;
        app->capparts = (size_t)parts->cnt;
    }
    if (check_cluster(app, rk) < 0) {
        rd_kafka_assign(rk, NULL);
        fail_store(app);
        return;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = topic_index(tp->topic);
        if (t < 0)
            continue;
        int64_t next = docstore_next_offset(app->store, tp->topic, tp->partition);
        if (next < -1) { /* not "nothing stored": replaying everything on top of the view is wrong */
            app->nparts = 0;
            rd_kafka_assign(rk, NULL);
            fail_store(app);
            return;
        }
        tp->offset = next >= 0 ? next : RD_KAFKA_OFFSET_BEGINNING;
        app->parts[app->nparts++] = (struct part){t, tp->partition, next, -1};
        if (next >= 0)
            say(app, "assigned %s[%" PRId32 "] at stored offset %" PRId64, tp->topic, tp->partition, next);
        else
            say(app, "assigned %s[%" PRId32 "] from the beginning (nothing stored)", tp->topic, tp->partition);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    if (e)
        fprintf(stderr, NAME ": assign: %s\n", rd_kafka_err2str(e));
    app->assigned = e == RD_KAFKA_RESP_ERR_NO_ERROR;
}

static void apply_message(struct app *app, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    int t = topic_index(topic);
    struct part *p = t >= 0 ? part_find(app, t, m->partition) : NULL;
    if (!p)
        return; /* from a partition revoked meanwhile: its next owner applies it */
    if (docstore_begin(app->store) < 0) {
        fail_store(app);
        return;
    }
    const char *reason = NULL;
    docstore_outcome o = docstore_apply(app->store, topic, m->partition, m->offset, m->key, m->key_len, m->payload,
                                        m->len, &reason);
    if (o == DOCSTORE_FAILED) {
        fail_store(app);
        return;
    }
    if (p->next >= 0 && m->offset < p->next) {
        fprintf(stderr, NAME ": %s[%" PRId32 "] continues at %" PRId64 ", before the stored %" PRId64
                        " (the log was cut or made anew under the same cluster id)\n",
                topic, m->partition, m->offset, p->next);
        app->rebuild = 1;
    }
    p->next = m->offset + 1;
    if (o == DOCSTORE_APPLIED) {
        app->applied[t]++;
        return;
    }
    for (size_t r = 0; r < docstore_nskip_reasons; r++)
        if (!strcmp(reason, docstore_skip_reasons[r]))
            app->skipped[t][r]++;
    say(app, "skipped %s[%" PRId32 "]@%" PRId64 ": %s", topic, m->partition, m->offset, reason);
}

/* The end of a partition (enable.partition.eof): the consumer's position is exactly m->offset
 * now, every message before it delivered. After a reset past the end of a cut log that is
 * where we are, whatever the store said. */
static void on_partition_eof(struct app *app, rd_kafka_message_t *m)
{
    int t = m->rkt ? topic_index(rd_kafka_topic_name(m->rkt)) : -1;
    struct part *p = t >= 0 ? part_find(app, t, m->partition) : NULL;
    if (!p || p->next == m->offset)
        return;
    if (p->next > m->offset) {
        fprintf(stderr, NAME ": %s[%" PRId32 "] ends at %" PRId64 ", before the stored %" PRId64
                        " (the log was cut or made anew under the same cluster id)\n",
                topic_names[t], m->partition, m->offset, p->next);
        app->rebuild = 1;
    }
    p->next = m->offset;
}

/*
 * A partition went back: the broker lost its log (the dev broker restarted empty, and its
 * cluster id happens to be the old one) and librdkafka reset to the beginning. Rows of the
 * old log would stay in the view forever, and other partitions may sit at offsets the new
 * logs only reach later (skipping their events). So, inside the batch's transaction: clear
 * the view, the tables and the offsets, and reread every assigned partition from the
 * beginning (a new assignment drops the messages already fetched for the old positions).
 */
static void rebuild_view(struct app *app)
{
    app->rebuild = 0;
    if (docstore_begin(app->store) < 0 || docstore_reset(app->store, app->cluster) < 0) {
        fail_store(app);
        return;
    }
    fprintf(stderr, NAME ": clearing the view and its offsets, rebuilding the view from the beginning of the topics\n");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)app->nparts);
    for (size_t i = 0; i < app->nparts; i++) {
        struct part *p = &app->parts[i];
        rd_kafka_topic_partition_list_add(l, topic_names[p->topic], p->partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
        p->next = -1;
        p->lag = -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(app->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        fprintf(stderr, NAME ": assign: %s\n", rd_kafka_err2str(e));
    app->assigned = e == RD_KAFKA_RESP_ERR_NO_ERROR;
    app->ready = 0;
    app->resets++;
}

/* One drain of the consumer queue, as one transaction. */
static void drain(struct app *app)
{
    int n = 0;
    rd_kafka_message_t *m;
    while (!app->fatal && !app->rebuild && n < BATCH_MAX && (m = rd_kafka_consumer_poll(app->rk, 0))) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            on_partition_eof(app, m);
        } else if (m->err) {
            say(app, "consumer: %s", rd_kafka_message_errstr(m));
        } else {
            apply_message(app, m);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    if (app->rebuild && !app->fatal)
        rebuild_view(app);
    commit_batch(app);
    if (n == BATCH_MAX && !app->fatal)
        event_active(app->kafka_ev, EV_READ, 0); /* more waiting: after the HTTP requests that are */
    refresh_lag(app);
}

static void on_kafka_ready(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    drain(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    drain(arg);
}

static rd_kafka_t *kafka_new(struct app *app, const char *brokers, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", brokers},
        {"group.id", group},
        {"client.id", NAME},
        {"enable.auto.commit", "false"},       /* offsets live in the store */
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},     /* a stored offset past the log's end: read it all again */
        {"enable.partition.eof", "true"},      /* the position after such a reset (on_partition_eof) */
        {"allow.auto.create.topics", "true"},  /* a first start before the first write still gets assigned */
        {"topic.metadata.refresh.interval.ms", "5000"},
        /* a restarted instance gets its partitions back in seconds: the dev broker's group
         * coordinator only forgets the old member when its session times out */
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "1000"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, NAME ": kafka setting %s: %s\n", kv[i][0], err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, app);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, NAME ": cannot create the Kafka consumer: %s\n", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* rebalances and errors come through the consumer queue too */
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(TOPIC_COUNT);
    for (int t = 0; t < TOPIC_COUNT; t++)
        rd_kafka_topic_partition_list_add(topics, topic_names[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        fprintf(stderr, NAME ": cannot subscribe to profiles and documents: %s\n", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* ---- main ----------------------------------------------------------------------------------- */

/* Every *.yaml of dir plus BUILTIN_POLICY, as one set (all or nothing). */
static fx_policy_set *load_policies(const char *dir)
{
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
    int n = ex_policy_dir_add(b, dir, &d);
    if (n <= 0) {
        fprintf(stderr, NAME ": --policies %s: %s\n", dir, n < 0 ? strerror(errno) : "no *.yaml policy files there");
        fx_policy_builder_free(b);
        fx_authz_diags_free(&d);
        return NULL;
    }
    fx_policy_builder_add_buffer(b, NAME " (built in)", BUILTIN_POLICY, sizeof(BUILTIN_POLICY) - 1, &d);
    fx_policy_set *set = fx_policy_builder_finish(b, &d);
    fx_authz_diags_print(&d, stderr);
    fx_authz_diags_free(&d);
    return set;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: " NAME " --listen HOST:PORT --brokers HOST:PORT[,..] --store FILE\n"
               "         [--group NAME] [--policies DIR] [--quiet]\n"
               "  serves documents from a view built from the profiles and documents topics;\n"
               "  --group defaults to " NAME ", --policies to policies; PORT 0 picks a free port\n");
}

/* Safe on a partly built app. The consumer goes before the store: closing it revokes the
 * partitions, and the rebalance callback commits into the store. */
static void app_free(struct app *app)
{
    if (app->rk) {
        if (!app->fatal)
            commit_batch(app);
        if (app->queue)
            rd_kafka_queue_io_event_enable(app->queue, -1, NULL, 0);
        rd_kafka_consumer_close(app->rk);
        if (app->queue)
            rd_kafka_queue_destroy(app->queue);
        rd_kafka_destroy(app->rk);
    }
    if (app->http)
        evhttp_free(app->http);
    if (app->kafka_ev)
        event_free(app->kafka_ev);
    if (app->tick)
        event_free(app->tick);
    for (int i = 0; i < 2; i++)
        if (app->pipe_fd[i] >= 0)
            close(app->pipe_fd[i]);
    if (app->sigterm)
        event_free(app->sigterm);
    if (app->sigint)
        event_free(app->sigint);
    if (app->out)
        evbuffer_free(app->out);
    docstore_close(app->store);
    if (app->policies)
        fx_policy_set_unref(app->policies);
    free(app->parts);
    free(app->cluster);
    if (app->base)
        event_base_free(app->base);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"brokers", required_argument, NULL, 'b'},
        {"store", required_argument, NULL, 's'},
        {"group", required_argument, NULL, 'g'},
        {"policies", required_argument, NULL, 'p'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct app app;
    const char *listen = NULL, *brokers = NULL, *store = NULL, *group = NAME, *policies = "policies";
    char host[256], err[512];
    unsigned short port;
    int c, rc = 1;

    memset(&app, 0, sizeof(app));
    app.pipe_fd[0] = app.pipe_fd[1] = -1;
    while ((c = getopt_long(argc, argv, "l:b:s:g:p:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'b': brokers = optarg; break;
        case 's': store = optarg; break;
        case 'g': group = optarg; break;
        case 'p': policies = optarg; break;
        case 'q': app.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!listen || !brokers || !*brokers || !store || !*store || !*group || optind != argc ||
        ex_parse_listen(listen, host, sizeof(host), &port) < 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    if (!(app.policies = load_policies(policies)))
        goto out;
    app.route_index = fx_policy_set_route(app.policies, ROUTE, sizeof(ROUTE) - 1);
    if (!(app.store = docstore_open(store, err, sizeof(err)))) {
        fprintf(stderr, NAME ": %s\n", err);
        goto out;
    }
    if (!(app.base = event_base_new()) || !(app.http = evhttp_new(app.base)) || !(app.out = evbuffer_new())) {
        fprintf(stderr, NAME ": cannot set up libevent\n");
        goto out;
    }
    evhttp_set_gencb(app.http, on_request, &app);
    evhttp_set_max_headers_size(app.http, HEADERS_MAX);
    evhttp_set_max_body_size(app.http, BODY_MAX);
    evhttp_set_allowed_methods(app.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(app.http, host, port);
    if (!bound) {
        fprintf(stderr, NAME ": cannot listen on %s: %s\n", listen, strerror(errno));
        goto out;
    }

    if (!(app.rk = kafka_new(&app, brokers, group)))
        goto out;
    if (pipe2(app.pipe_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        perror(NAME ": pipe");
        goto out;
    }
    app.queue = rd_kafka_queue_get_consumer(app.rk);
    rd_kafka_queue_io_event_enable(app.queue, app.pipe_fd[1], "k", 1);
    struct timeval tick = {0, TICK_MS * 1000};
    app.kafka_ev = event_new(app.base, app.pipe_fd[0], EV_READ | EV_PERSIST, on_kafka_ready, &app);
    app.tick = event_new(app.base, -1, EV_PERSIST, on_tick, &app);
    app.sigterm = evsignal_new(app.base, SIGTERM, on_signal, app.base);
    app.sigint = evsignal_new(app.base, SIGINT, on_signal, app.base);
    if (!app.kafka_ev || !app.tick || !app.sigterm || !app.sigint || event_add(app.kafka_ev, NULL) < 0 ||
        event_add(app.tick, &tick) < 0 || event_add(app.sigterm, NULL) < 0 || event_add(app.sigint, NULL) < 0) {
        fprintf(stderr, NAME ": cannot set up the event loop\n");
        goto out;
    }
    if (ex_print_bound(evhttp_bound_socket_get_fd(bound), NAME) < 0) {
        perror(NAME ": getsockname");
        goto out;
    }
    say(&app, "consuming profiles and documents from %s as group %s; store %s", brokers, group, store);
    rc = event_base_dispatch(app.base) < 0 || app.fatal ? 1 : 0;
out:
    app_free(&app);
    libevent_global_shutdown();
    return rc;
}

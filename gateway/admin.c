/*
 * admin.c — the admin listener (see admin.h).
 *
 *   fx_admin_start / _config_changed   listen, move on reload
 *   on_admin_accept, on_admin_read      one request at a time per connection,
 *                                       parsed by the same strict codec as client traffic
 *   handle                              the endpoint table
 *   metrics_text, config_json           the documents it serves (and /admin/events: events.c)
 *   dashboard                           GET /admin/: the strangler-fig page (dashboard.html, embedded
 *                                       at build time with its Content-Security-Policy)
 *   request_metrics, routes_json,       per-route and per-upstream request figures: every
 *   upstreams_json                      worker's counters summed here (stats.h)
 *   shadow_metrics, shadow_json         shadow traffic: counters and mismatching pairs summed
 *                                       over workers (shadow.h)
 *
 * Admin traffic is small and rare: responses are built in memory with
 * evbuffer_add_printf and the connection is served from the main thread.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "authorize.h"
#include "clock.h"
#include "dashboard_html.h" /* generated from dashboard.html by embed_dashboard.py */
#include "events.h"
#include "health.h"
#include "http1.h"
#include "jwks.h"
#include "log.h"
#include "shadow.h"
#include "sock.h"
#include "stats.h"

#define ADMIN_MAX_HEAD (16 * 1024)
#define ADMIN_MAX_BODY (1024 * 1024)
#define ADMIN_IDLE_MS 30000

typedef struct admin_conn admin_conn;

struct fx_admin {
    fx_server *server;
    struct event_base *base;
    struct evconnlistener *listener;
    fx_addr addr;                 /* copy of the address it listens on */
    char addr_text[80];
    struct evconnlistener *pending; /* prepared by a reload, not yet switched to */
    char pending_text[80];
    admin_conn *conns;
};

struct admin_conn {
    fx_admin *admin;
    admin_conn *prev, *next;
    fx_sock *sock;
    struct event *timer;
    fx_arena arena;
    int closing;
};

static void conn_free(admin_conn *c)
{
    fx_admin *a = c->admin;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    fx_sock_free(c->sock);
    if (c->timer)
        event_free(c->timer);
    fx_arena_free(&c->arena);
    free(c);
}

/* ---- responses --------------------------------------------------------------------------- */

/* `extra`: more header lines, each ending in CRLF ("" for none) */
static void respond_with(admin_conn *c, int status, const char *ctype, const char *extra, struct evbuffer *body,
                         int keep)
{
    struct evbuffer *out = c->sock->out;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n%s%s\r\n",
                        status, fx_http_status_text(status), ctype, evbuffer_get_length(body), extra,
                        keep ? "" : "Connection: close\r\n");
    evbuffer_add_buffer(out, body);
    fx_sock_flush(c->sock);
    if (!keep)
        c->closing = 1;
}

static void respond(admin_conn *c, int status, const char *ctype, struct evbuffer *body, int keep)
{
    respond_with(c, status, ctype, "", body, keep);
}

static void json_str(struct evbuffer *b, const char *s)
{
    char tmp[512];
    size_t n = s ? strlen(s) : 0;
    evbuffer_add(b, "\"", 1);
    while (n) {
        size_t take = n > 100 ? 100 : n;
        size_t w = fx_json_escape(tmp, sizeof(tmp), s, take);
        evbuffer_add(b, tmp, w <= sizeof(tmp) ? w : 0);
        s += take;
        n -= take;
    }
    evbuffer_add(b, "\"", 1);
}

static void problem(admin_conn *c, int status, const char *detail, int keep)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":",
                        fx_http_status_text(status), status);
    json_str(b, detail);
    evbuffer_add(b, "}\n", 2);
    respond(c, status, "application/problem+json", b, keep);
    evbuffer_free(b);
}

static void iso_time(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- documents ------------------------------------------------------------------------------ */

#define ADD_LIT(b, lit) evbuffer_add((b), (lit), sizeof(lit) - 1)

/* Every worker's request metrics, summed now. Out of memory leaves them partial (and logged). */
static void stats_sums(fx_server *s, fx_stats_sums *out)
{
    fx_stats_collect_begin(out, fx_mono_us());
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        if (fx_stats_collect(out, &s->workers[i].stats) < 0) {
            fx_log(FX_LOG_ERROR, "admin: out of memory summing request metrics; the figures are partial");
            break;
        }
    fx_stats_collect_done(out);
}

/* A route or upstream name as a label value or JSON string; NULL is FX_STATS_NONE. Names are
 * [A-Za-z0-9_.-] (config.c), so JSON and Prometheus escaping agree. */
static void name_str(struct evbuffer *b, const char *name)
{
    json_str(b, name ? name : FX_STATS_NONE);
}

/* routes[].retries and routes[].fallback (retry.h): every configured upstream's retries and budget
 * refusals, every route with a fallback's fallbacks (summed over the upstreams its requests ended on). */
static void retry_metrics(const fx_stats_sums *st, const fx_config *cfg, struct evbuffer *b)
{
    evbuffer_add_printf(b, "# HELP ficus_retries_total Retries of requests on the same upstream's next target "
                           "(routes[].retries), by upstream and the failure retried.\n"
                           "# TYPE ficus_retries_total counter\n");
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const fx_stats_upstream_sum *x = fx_stats_find_upstream(st, cfg->upstreams[u].name);
        for (unsigned k = 0; k < FX_RETRY_NREASONS; k++) {
            ADD_LIT(b, "ficus_retries_total{upstream=");
            name_str(b, cfg->upstreams[u].name);
            evbuffer_add_printf(b, ",reason=\"%s\"} %" PRIu64 "\n", fx_retry_reason_names[k],
                                x ? x->retries[k] : 0);
        }
    }
    evbuffer_add_printf(b, "# HELP ficus_retry_budget_exhausted_total Retries not made because the upstream's "
                           "retry budget (%d%% of its requests of the last %d s, at least %d) was spent.\n"
                           "# TYPE ficus_retry_budget_exhausted_total counter\n",
                        FX_RETRY_BUDGET_PERCENT, FX_RETRY_BUDGET_SECONDS, FX_RETRY_BUDGET_MIN);
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const fx_stats_upstream_sum *x = fx_stats_find_upstream(st, cfg->upstreams[u].name);
        ADD_LIT(b, "ficus_retry_budget_exhausted_total{upstream=");
        name_str(b, cfg->upstreams[u].name);
        evbuffer_add_printf(b, "} %" PRIu64 "\n", x ? x->budget_exhausted : 0);
    }
    evbuffer_add_printf(b, "# HELP ficus_fallbacks_total Requests sent to their route's fallback upstream, by "
                           "route and the primary's failure.\n"
                           "# TYPE ficus_fallbacks_total counter\n");
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const fx_route_conf *r = &cfg->routes[i];
        if (r->fallback < 0)
            continue;
        uint64_t n[FX_RETRY_NREASONS] = {0};
        for (size_t j = 0; j < st->nsides; j++)
            if (st->sides[j].route && !strcmp(st->sides[j].route, r->name))
                for (unsigned k = 0; k < FX_RETRY_NREASONS; k++)
                    n[k] += st->sides[j].fallbacks[k];
        for (unsigned k = 0; k < FX_RETRY_NREASONS; k++) {
            ADD_LIT(b, "ficus_fallbacks_total{route=");
            name_str(b, r->name);
            evbuffer_add_printf(b, ",reason=\"%s\"} %" PRIu64 "\n", fx_retry_reason_names[k], n[k]);
        }
    }
}

static void request_metrics(const fx_stats_sums *st, const fx_config *cfg, struct evbuffer *b)
{
    evbuffer_add_printf(b, "# HELP ficus_requests_total Requests answered, by route, the upstream they were "
                           "forwarded to, and the status code sent to the client (" FX_STATS_NONE
                           ": no route matched, or the gateway answered before forwarding).\n"
                           "# TYPE ficus_requests_total counter\n");
    for (size_t i = 0; i < st->nsides; i++) {
        const fx_stats_side_sum *x = &st->sides[i];
        for (unsigned k = 0; k < FX_STATS_NCODES; k++) {
            if (!x->codes[k])
                continue;
            ADD_LIT(b, "ficus_requests_total{route=");
            name_str(b, x->route);
            ADD_LIT(b, ",upstream=");
            name_str(b, x->upstream);
            evbuffer_add_printf(b, ",code=\"%u\"} %" PRIu64 "\n", k + FX_STATS_CODE_MIN, x->codes[k]);
        }
    }
    evbuffer_add_printf(b, "# HELP ficus_request_duration_seconds From the first byte of the request head to "
                           "the response complete, by route.\n"
                           "# TYPE ficus_request_duration_seconds histogram\n");
    /* the sums are sorted by route: each route's pairs are adjacent */
    for (size_t i = 0; i < st->nsides;) {
        uint64_t dur[FX_STATS_DUR_BOUNDS + 1] = {0}, sum_us = 0;
        size_t j = i;
        for (; j < st->nsides && (st->sides[j].route == st->sides[i].route ||
                                  (st->sides[j].route && st->sides[i].route &&
                                   !strcmp(st->sides[j].route, st->sides[i].route)));
             j++) {
            for (unsigned k = 0; k <= FX_STATS_DUR_BOUNDS; k++)
                dur[k] += st->sides[j].dur[k];
            sum_us += st->sides[j].dur_sum_us;
        }
        uint64_t cum = 0;
        for (unsigned k = 0; k <= FX_STATS_DUR_BOUNDS; k++) {
            cum += dur[k];
            ADD_LIT(b, "ficus_request_duration_seconds_bucket{route=");
            name_str(b, st->sides[i].route);
            if (k < FX_STATS_DUR_BOUNDS)
                evbuffer_add_printf(b, ",le=\"%g\"} %" PRIu64 "\n", fx_stats_dur_bounds[k], cum);
            else
                evbuffer_add_printf(b, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        ADD_LIT(b, "ficus_request_duration_seconds_sum{route=");
        name_str(b, st->sides[i].route);
        evbuffer_add_printf(b, "} %.6f\n", (double)sum_us / 1e6);
        ADD_LIT(b, "ficus_request_duration_seconds_count{route=");
        name_str(b, st->sides[i].route);
        evbuffer_add_printf(b, "} %" PRIu64 "\n", cum);
        i = j;
    }
    evbuffer_add_printf(b, "# HELP ficus_upstream_request_duration_seconds The same durations by the upstream that "
                           "answered (requests the gateway answered itself are not in it).\n"
                           "# TYPE ficus_upstream_request_duration_seconds histogram\n");
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const char *name = cfg->upstreams[u].name;
        uint64_t dur[FX_STATS_DUR_BOUNDS + 1] = {0}, sum_us = 0;
        for (size_t i = 0; i < st->nsides; i++) {
            if (!st->sides[i].upstream || strcmp(st->sides[i].upstream, name))
                continue;
            for (unsigned k = 0; k <= FX_STATS_DUR_BOUNDS; k++)
                dur[k] += st->sides[i].dur[k];
            sum_us += st->sides[i].dur_sum_us;
        }
        uint64_t cum = 0;
        for (unsigned k = 0; k <= FX_STATS_DUR_BOUNDS; k++) {
            cum += dur[k];
            ADD_LIT(b, "ficus_upstream_request_duration_seconds_bucket{upstream=");
            name_str(b, name);
            if (k < FX_STATS_DUR_BOUNDS)
                evbuffer_add_printf(b, ",le=\"%g\"} %" PRIu64 "\n", fx_stats_dur_bounds[k], cum);
            else
                evbuffer_add_printf(b, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        ADD_LIT(b, "ficus_upstream_request_duration_seconds_sum{upstream=");
        name_str(b, name);
        evbuffer_add_printf(b, "} %.6f\n", (double)sum_us / 1e6);
        ADD_LIT(b, "ficus_upstream_request_duration_seconds_count{upstream=");
        name_str(b, name);
        evbuffer_add_printf(b, "} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(b, "# HELP ficus_upstream_errors_total Requests an upstream failed, by upstream and kind "
                           "(the access log's upstream_error).\n"
                           "# TYPE ficus_upstream_errors_total counter\n");
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const fx_stats_upstream_sum *x = fx_stats_find_upstream(st, cfg->upstreams[u].name);
        for (unsigned k = 0; k < FX_STATS_NKINDS; k++) {
            ADD_LIT(b, "ficus_upstream_errors_total{upstream=");
            name_str(b, cfg->upstreams[u].name);
            evbuffer_add_printf(b, ",kind=\"%s\"} %" PRIu64 "\n", fx_stats_error_kind_names[k],
                                x ? x->kinds[k] : 0);
        }
    }
    retry_metrics(st, cfg, b);
}

/* ficus_shadow_*: every route of the running config that has `shadow`, summed over workers. */
static void shadow_metrics(fx_server *s, const fx_config *cfg, struct evbuffer *b)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"ficus_shadow_requests_total", "Requests copied to the route's shadow upstream."},
        {"ficus_shadow_mismatches_total", "Shadow answers that differed from the primary's, by kind."},
        {"ficus_shadow_errors_total", "Shadow copies that got no complete answer, by kind."},
        {"ficus_shadow_skipped_total",
         "Sampled requests not shadowed: body over 64 KiB or not whole yet, or 256 copies out."},
        {"ficus_shadow_body_too_large_total", "Compared pairs whose bodies were not compared (over 1 MiB)."},
    };
    int any = 0;
    for (size_t i = 0; i < cfg->nroutes; i++)
        any |= cfg->routes[i].shadow != NULL;
    if (!any)
        return;
    fx_shadow_sum *sums = calloc(cfg->nroutes, sizeof(*sums));
    if (!sums)
        return;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].shadow)
            fx_shadow_collect(s, cfg->routes[i].name, &sums[i]);
    for (int f = 0; f < 5; f++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", fam[f].name, fam[f].help, fam[f].name);
        for (size_t i = 0; i < cfg->nroutes; i++) {
            const fx_shadow_sum *x = &sums[i];
            if (!cfg->routes[i].shadow)
                continue;
            int nk = f == 1 ? 3 : f == 2 ? FX_SHADOW_NERRORS : 1;
            for (int k = 0; k < nk; k++) {
                unsigned long v = f == 0 ? x->requests : f == 1 ? x->mismatches[k] : f == 2 ? x->errors[k]
                                  : f == 3 ? x->skipped : x->body_too_large;
                evbuffer_add_printf(b, "%s{route=", fam[f].name);
                json_str(b, cfg->routes[i].name);
                if (f == 1 || f == 2)
                    evbuffer_add_printf(b, ",kind=\"%s\"", f == 1 ? fx_shadow_kind_names[k] : fx_shadow_error_names[k]);
                evbuffer_add_printf(b, "} %lu\n", v);
            }
        }
    }
    free(sums);
}

/* GET /admin/shadow/{route}: the route's shadow figures and its first mismatching pairs. -1: no such
 * route with `shadow` in the running config. */
static int shadow_json(fx_server *s, fx_slice name, struct evbuffer *b)
{
    fx_config *cfg = fx_server_config(s);
    const fx_route_conf *r = NULL;
    for (size_t i = 0; i < cfg->nroutes && !r; i++)
        if (cfg->routes[i].shadow && fx_slice_eq(name, fx_slice_cstr(cfg->routes[i].name)))
            r = &cfg->routes[i];
    if (!r) {
        fx_config_unref(cfg);
        return -1;
    }
    fx_shadow_sum *x = malloc(sizeof(*x));
    if (!x) {
        fx_config_unref(cfg);
        return -1;
    }
    fx_shadow_collect(s, r->name, x);
    evbuffer_add(b, "{\"route\":", 9);
    json_str(b, r->name);
    evbuffer_add(b, ",\"upstream\":", 12);
    json_str(b, cfg->upstreams[r->shadow->upstream].name);
    evbuffer_add_printf(b, ",\"percent\":%u,\"requests\":%lu,\"skipped\":%lu,\"body_too_large\":%lu,\"mismatches\":{",
                        r->shadow->percent, x->requests, x->skipped, x->body_too_large);
    for (int k = 0; k < 3; k++)
        evbuffer_add_printf(b, "%s\"%s\":%lu", k ? "," : "", fx_shadow_kind_names[k], x->mismatches[k]);
    evbuffer_add(b, "},\"errors\":{", 12);
    for (int k = 0; k < FX_SHADOW_NERRORS; k++)
        evbuffer_add_printf(b, "%s\"%s\":%lu", k ? "," : "", fx_shadow_error_names[k], x->errors[k]);
    evbuffer_add(b, "},\"pairs\":[", 11);
    for (unsigned i = 0; i < x->npairs; i++) {
        const fx_shadow_pair *p = &x->pairs[i];
        struct tm tm;
        gmtime_r(&p->time.tv_sec, &tm);
        evbuffer_add_printf(b, "%s{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"request_id\":", i ? "," : "",
                            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                            p->time.tv_nsec / 1000000);
        json_str(b, p->request_id);
        evbuffer_add(b, ",\"method\":", 10);
        json_str(b, p->method);
        evbuffer_add(b, ",\"path\":", 8);
        json_str(b, p->path);
        evbuffer_add_printf(b, ",\"primary_status\":%d,\"shadow_status\":%d,\"kinds\":[", p->primary_status,
                            p->shadow_status);
        for (int k = 0, n = 0; k < 3; k++)
            if (p->kinds & (1u << k))
                evbuffer_add_printf(b, "%s\"%s\"", n++ ? "," : "", fx_shadow_kind_names[k]);
        evbuffer_add(b, "],\"diff\":", 9);
        json_str(b, p->summary);
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "]}\n", 3);
    free(x);
    fx_config_unref(cfg);
    return 0;
}

static void metrics_text(fx_server *s, struct evbuffer *b)
{
    fx_config *cfg = fx_server_config(s);
    evbuffer_add_printf(b,
                        "# HELP ficus_config_reloads_total Configuration reloads, by result.\n"
                        "# TYPE ficus_config_reloads_total counter\n"
                        "ficus_config_reloads_total{result=\"ok\"} %lu\n"
                        "ficus_config_reloads_total{result=\"error\"} %lu\n",
                        (unsigned long)atomic_load(&s->reloads_ok),
                        (unsigned long)atomic_load(&s->reloads_error));
    evbuffer_add_printf(b,
                        "# HELP ficus_config_info The running configuration (value is always 1).\n"
                        "# TYPE ficus_config_info gauge\n"
                        "ficus_config_info{hash=\"%s\"} 1\n"
                        "# HELP ficus_config_loaded_timestamp_seconds When the running configuration was loaded.\n"
                        "# TYPE ficus_config_loaded_timestamp_seconds gauge\n"
                        "ficus_config_loaded_timestamp_seconds %lld\n",
                        cfg->hash, (long long)cfg->loaded_at);
    evbuffer_add_printf(b, "# HELP ficus_jwt_rejections_total Tokens refused at the edge, by reason.\n"
                           "# TYPE ficus_jwt_rejections_total counter\n");
    for (int r = FX_JWT_MISSING; r <= FX_JWT_BAD_ISSUER; r++) {
        /* the workers' and the decision API's: both verify with the same code */
        unsigned long sum = atomic_load_explicit(&s->api_authn.rejections[r], memory_order_relaxed);
        for (unsigned i = 0; i < s->nworkers; i++)
            sum += atomic_load_explicit(&s->workers[i].authn.rejections[r], memory_order_relaxed);
        evbuffer_add_printf(b, "ficus_jwt_rejections_total{reason=\"%s\"} %lu\n",
                            fx_jwt_reason_name((fx_jwt_reason)r), sum);
    }
    fx_jwks_metrics(s->jwks, cfg, b);
    fx_health_metrics(s->health, cfg, b); /* target health, ejections, circuit breaker (health.h) */
    evbuffer_add_printf(b, "# HELP ficus_authz_decisions_total Authorization decisions (edge and decision API), "
                           "by route and decision (would_deny: audit mode let it through).\n"
                           "# TYPE ficus_authz_decisions_total counter\n");
    for (const fx_route_stats *st = s->route_stats; st; st = st->next) {
        unsigned long v[3] = {atomic_load_explicit(&st->allow, memory_order_relaxed),
                              atomic_load_explicit(&st->deny, memory_order_relaxed),
                              atomic_load_explicit(&st->would_deny, memory_order_relaxed)};
        static const char *const names[3] = {"allow", "deny", "would_deny"};
        for (int k = 0; k < 3; k++) {
            evbuffer_add(b, "ficus_authz_decisions_total{route=", 34);
            json_str(b, st->name);
            evbuffer_add_printf(b, ",decision=\"%s\"} %lu\n", names[k], v[k]);
        }
    }
    evbuffer_add_printf(b,
                        "# HELP ficus_connections_active Client connections open now.\n"
                        "# TYPE ficus_connections_active gauge\n"
                        "ficus_connections_active %u\n",
                        atomic_load(&s->nconns));
    evbuffer_add_printf(b, "# HELP ficus_tls_handshakes_total Client TLS handshakes, by result (failed: a TLS "
                           "error such as no common version or cipher; abandoned: the client closed or timed out "
                           "before finishing).\n# TYPE ficus_tls_handshakes_total counter\n");
    for (int r = 0; r < FX_TLS_HS_N; r++) {
        unsigned long sum = 0;
        for (unsigned i = 0; i < s->nworkers; i++)
            sum += atomic_load_explicit(&s->workers[i].tls_handshakes[r], memory_order_relaxed);
        evbuffer_add_printf(b, "ficus_tls_handshakes_total{result=\"%s\"} %lu\n", fx_tls_hs_names[r], sum);
    }
    if (s->events)
        fx_events_metrics(s->events, b);
    fx_stats_sums st;
    stats_sums(s, &st);
    request_metrics(&st, cfg, b);
    fx_stats_sums_free(&st);
    shadow_metrics(s, cfg, b);
    fx_config_unref(cfg);
}

static const char *method_name(int m)
{
    return llhttp_method_name((llhttp_method_t)m);
}

static void addr_json(struct evbuffer *b, const fx_addr *a)
{
    json_str(b, a->text);
}

/* ,"match":{...} of a route */
static void route_match_json(struct evbuffer *b, const fx_route_conf *r)
{
    evbuffer_add_printf(b, ",\"match\":{\"%s\":", r->kind == FX_MATCH_PREFIX ? "prefix" : "path");
    json_str(b, r->path);
    if (r->methods) {
        evbuffer_add(b, ",\"methods\":[", 12);
        int first = 1;
        for (int m = 0; m < 64; m++) {
            if (!(r->methods & FX_METHOD_BIT(m)))
                continue;
            evbuffer_add_printf(b, "%s\"%s\"", first ? "" : ",", method_name(m));
            first = 0;
        }
        evbuffer_add(b, "]", 1);
    }
    if (r->host) {
        evbuffer_add(b, ",\"host\":", 8);
        json_str(b, r->host);
    }
    evbuffer_add(b, "}", 1);
}

/*
 * The running config, from the typed snapshot (so it shows what the gateway
 * uses, defaults included). No field of the current schema holds a secret;
 * secret-bearing keys of later features must be written here as "<redacted>".
 */
static void config_json(fx_server *s, struct evbuffer *b)
{
    static const char *const sinks[] = {"off", "stdout", "stderr", "file"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    static const char *const auths[] = {"required", "optional", "none"};
    fx_config *cfg = fx_server_config(s);
    char when[32];
    iso_time(cfg->loaded_at, when);
    evbuffer_add(b, "{\"file\":", 8);
    json_str(b, cfg->file);
    evbuffer_add_printf(b, ",\"hash\":\"%s\",\"loaded_at\":\"%s\",\"config\":{\"listen\":[", cfg->hash,
                        when);
    for (size_t i = 0; i < cfg->nlistens; i++) {
        evbuffer_add_printf(b, "%s{\"address\":", i ? "," : "");
        addr_json(b, &cfg->listens[i].addr);
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "],", 2);
    if (cfg->has_admin) {
        evbuffer_add_printf(b, "\"admin\":{\"address\":");
        addr_json(b, &cfg->admin);
        evbuffer_add(b, "},", 2);
    }
    const fx_limits_conf *l = &cfg->limits;
    evbuffer_add_printf(b,
                        "\"workers\":%u,\"limits\":{\"max_header_bytes\":%zu,\"max_body_bytes\":%zu,"
                        "\"max_uri_bytes\":%zu,\"header_timeout_ms\":%" PRIu64
                        ",\"idle_timeout_ms\":%" PRIu64 ",\"drain_timeout_ms\":%" PRIu64
                        ",\"max_connections\":%u},\"upstreams\":{",
                        cfg->workers, l->max_header_bytes, l->max_body_bytes, l->max_uri_bytes,
                        l->header_timeout_ms, l->idle_timeout_ms, l->drain_timeout_ms,
                        l->max_connections);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_upstream_conf *u = &cfg->upstreams[i];
        if (i)
            evbuffer_add(b, ",", 1);
        json_str(b, u->name);
        evbuffer_add(b, ":{\"targets\":[", 13);
        for (size_t t = 0; t < u->ntargets; t++) {
            if (t)
                evbuffer_add(b, ",", 1);
            addr_json(b, &u->targets[t]);
        }
        evbuffer_add_printf(b,
                            "],\"keepalive\":%u,\"connect_timeout_ms\":%" PRIu64
                            ",\"timeout_ms\":%" PRIu64 "}",
                            u->keepalive, u->connect_timeout_ms, u->timeout_ms);
    }
    evbuffer_add(b, "},\"routes\":[", 12);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const fx_route_conf *r = &cfg->routes[i];
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, r->name);
        route_match_json(b, r);
        evbuffer_add(b, ",\"upstream\":", 12);
        json_str(b, cfg->upstreams[r->upstream].name);
        evbuffer_add_printf(b, ",\"auth\":\"%s\"}", auths[r->auth < 3 ? r->auth : 0]);
    }
    evbuffer_add(b, "]", 1);
    if (cfg->policies) {
        evbuffer_add(b, ",\"policies\":{\"files\":[", 22);
        for (size_t i = 0; i < cfg->policies->nfiles; i++) {
            if (i)
                evbuffer_add(b, ",", 1);
            json_str(b, cfg->policies->files[i]);
        }
        evbuffer_add_printf(b, "],\"mode\":\"%s\",\"count\":%zu}",
                            cfg->policies->mode == FX_POLICY_AUDIT ? "audit" : "enforce",
                            fx_policy_set_count(cfg->policies->set));
    }
    evbuffer_add_printf(b, ",\"log\":{\"access\":");
    if (cfg->log.access == FX_LOG_FILE)
        json_str(b, cfg->log.access_file);
    else
        json_str(b, sinks[cfg->log.access & 3]);
    evbuffer_add(b, ",\"decisions\":", 13);
    if (cfg->log.decisions == FX_LOG_FILE)
        json_str(b, cfg->log.decisions_file);
    else
        json_str(b, sinks[cfg->log.decisions & 3]);
    evbuffer_add_printf(b, ",\"level\":\"%s\"}}}\n", levels[cfg->log.level & 3]);
    fx_config_unref(cfg);
}

/* "last_minute":{...},"total":{...} */
static void figures_json(struct evbuffer *b, const fx_stats_window *w, double secs, uint64_t requests,
                         uint64_t errors)
{
    evbuffer_add_printf(b, "\"last_minute\":{\"requests\":%" PRIu64 ",\"requests_per_second\":%.3f,"
                           "\"errors\":%" PRIu64 ",\"error_rate\":",
                        w->requests, (double)w->requests / secs, w->errors);
    if (w->requests)
        evbuffer_add_printf(b, "%.4f", (double)w->errors / (double)w->requests);
    else
        ADD_LIT(b, "null");
    double p99 = fx_stats_quantile(w, 0.99);
    if (p99 >= 0)
        evbuffer_add_printf(b, ",\"p99_seconds\":%.6f},", p99);
    else
        ADD_LIT(b, ",\"p99_seconds\":null},");
    evbuffer_add_printf(b, "\"total\":{\"requests\":%" PRIu64 ",\"errors\":%" PRIu64 "}", requests, errors);
}

static void side_figures_json(struct evbuffer *b, const fx_stats_side_sum *x, double secs)
{
    static const fx_stats_window empty;
    figures_json(b, x ? &x->last : &empty, secs, x ? x->requests : 0, x ? x->errors : 0);
}

/*
 * GET /admin/routes: each route of the running config, in order, with its sides (the upstream,
 * or each side of its split with its weight; its fallback) and per side the last minute and the
 * totals since start; `gateway` is what the gateway answered itself before forwarding (401, 403,
 * ...); the route's own figures cover all of it, and sides of earlier configs too.
 */
/* ,"shadow":{...}: the route's shadow upstream and its comparison figures since start; mismatch_rate
 * is mismatched / compared (answers that could not be compared — shadow errors, a failed primary —
 * are not in it). The pairs themselves are at /admin/shadow/ROUTE. */
static void route_shadow_json(fx_server *s, struct evbuffer *b, const fx_config *cfg, const fx_route_conf *r)
{
    fx_shadow_sum *sum = calloc(1, sizeof(*sum));
    if (!sum)
        return;
    fx_shadow_collect(s, r->name, sum);
    unsigned long errors = 0;
    for (int k = 0; k < FX_SHADOW_NERRORS; k++)
        errors += sum->errors[k];
    ADD_LIT(b, ",\"shadow\":{\"upstream\":");
    json_str(b, cfg->upstreams[r->shadow->upstream].name);
    evbuffer_add_printf(b,
                        ",\"percent\":%u,\"requests\":%lu,\"compared\":%lu,\"mismatched\":%lu,"
                        "\"mismatches\":{\"status\":%lu,\"headers\":%lu,\"body\":%lu},\"errors\":%lu,"
                        "\"skipped\":%lu",
                        r->shadow->percent, sum->requests, sum->compared, sum->mismatched, sum->mismatches[0],
                        sum->mismatches[1], sum->mismatches[2], errors, sum->skipped);
    if (sum->compared)
        evbuffer_add_printf(b, ",\"mismatch_rate\":%.4f}", (double)sum->mismatched / (double)sum->compared);
    else
        ADD_LIT(b, ",\"mismatch_rate\":null}");
    free(sum);
}

static void routes_json(fx_server *s, struct evbuffer *b)
{
    fx_config *cfg = fx_server_config(s);
    fx_stats_sums st;
    stats_sums(s, &st);
    double secs = fx_stats_window_seconds(&st);
    evbuffer_add_printf(b, "{\"window_seconds\":%.3f,\"uncounted\":%" PRIu64 ",\"routes\":[", secs, st.dropped);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const fx_route_conf *r = &cfg->routes[i];
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, r->name);
        route_match_json(b, r);
        ADD_LIT(b, ",\"upstream\":");
        json_str(b, cfg->upstreams[r->upstream].name);
        if (r->nsplit) {
            ADD_LIT(b, ",\"split\":[");
            for (size_t k = 0; k < r->nsplit; k++) {
                evbuffer_add_printf(b, "%s{\"upstream\":", k ? "," : "");
                json_str(b, cfg->upstreams[r->split[k].upstream].name);
                evbuffer_add_printf(b, ",\"weight\":%u}", r->split[k].weight);
            }
            ADD_LIT(b, "]");
        }
        ADD_LIT(b, ",\"sides\":[");
        size_t nsides = r->nsplit ? r->nsplit : 1;
        for (size_t k = 0; k < nsides; k++) {
            const char *up = cfg->upstreams[r->nsplit ? r->split[k].upstream : r->upstream].name;
            evbuffer_add_printf(b, "%s{\"upstream\":", k ? "," : "");
            json_str(b, up);
            if (r->nsplit)
                evbuffer_add_printf(b, ",\"weight\":%u", r->split[k].weight);
            ADD_LIT(b, ",");
            side_figures_json(b, fx_stats_find_side(&st, r->name, up), secs);
            ADD_LIT(b, "}");
        }
        if (r->fallback >= 0 && (size_t)r->fallback < cfg->nupstreams) {
            const char *up = cfg->upstreams[r->fallback].name;
            ADD_LIT(b, ",{\"upstream\":");
            json_str(b, up);
            ADD_LIT(b, ",\"fallback\":true,");
            side_figures_json(b, fx_stats_find_side(&st, r->name, up), secs);
            ADD_LIT(b, "}");
        }
        ADD_LIT(b, "],\"gateway\":{");
        side_figures_json(b, fx_stats_find_side(&st, r->name, NULL), secs);
        /* the route: every pair counted under its name */
        fx_stats_window all = {0};
        uint64_t requests = 0, errors = 0;
        for (size_t k = 0; k < st.nsides; k++) {
            const fx_stats_side_sum *x = &st.sides[k];
            if (x->route && !strcmp(x->route, r->name)) {
                fx_stats_window_merge(&all, &x->last);
                requests += x->requests;
                errors += x->errors;
            }
        }
        ADD_LIT(b, "},");
        figures_json(b, &all, secs, requests, errors);
        if (r->shadow)
            route_shadow_json(s, b, cfg, r);
        ADD_LIT(b, "}");
    }
    ADD_LIT(b, "],\"unrouted\":{");
    side_figures_json(b, fx_stats_find_side(&st, NULL, NULL), secs);
    ADD_LIT(b, "}}\n");
    fx_stats_sums_free(&st);
    fx_config_unref(cfg);
}

/* GET /admin/upstreams: each upstream of the running config, its settings, and every request
 * forwarded to it (whatever the route): the last minute, totals since start, errors by kind. */
static void upstreams_json(fx_server *s, struct evbuffer *b)
{
    fx_config *cfg = fx_server_config(s);
    fx_stats_sums st;
    stats_sums(s, &st);
    double secs = fx_stats_window_seconds(&st);
    static const fx_stats_window empty;
    evbuffer_add_printf(b, "{\"window_seconds\":%.3f,\"upstreams\":[", secs);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const fx_upstream_conf *u = &cfg->upstreams[i];
        const fx_stats_upstream_sum *x = fx_stats_find_upstream(&st, u->name);
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, u->name);
        ADD_LIT(b, ",\"targets\":[");
        for (size_t t = 0; t < u->ntargets; t++) {
            if (t)
                ADD_LIT(b, ",");
            addr_json(b, &u->targets[t]);
        }
        evbuffer_add_printf(b, "],\"keepalive\":%u,\"connect_timeout_ms\":%" PRIu64 ",\"timeout_ms\":%" PRIu64,
                            u->keepalive, u->connect_timeout_ms, u->timeout_ms);
        fx_health_upstream_json(s->health, u, b); /* health, breaker, targets_state (health.h) */
        ADD_LIT(b, ",");
        figures_json(b, x ? &x->last : &empty, secs, x ? x->requests : 0, x ? x->errors : 0);
        ADD_LIT(b, ",\"errors_by_kind\":{");
        for (unsigned k = 0; k < FX_STATS_NKINDS; k++)
            evbuffer_add_printf(b, "%s\"%s\":%" PRIu64, k ? "," : "", fx_stats_error_kind_names[k],
                                x ? x->kinds[k] : 0);
        ADD_LIT(b, "}}");
    }
    ADD_LIT(b, "]}\n");
    fx_stats_sums_free(&st);
    fx_config_unref(cfg);
}

/* ---- the dashboard ------------------------------------------------------------------------------ */

/*
 * GET /admin/: the strangler-fig page. It runs only its own inline style and script (allowed by
 * hash in fx_dashboard_csp), reads this listener's JSON and /metrics, and fetches the consumer
 * /metrics URLs the operator puts in ?consumers= (connect-src http: https:). GET /admin answers
 * with a redirect that keeps the query, so /admin?consumers=... works too.
 */
static void dashboard(admin_conn *c, const fx_http_msg *m, struct evbuffer *b, int keep)
{
    if (fx_slice_eq(m->path, FX_SLICE_LIT("/admin"))) {
        char loc[64 + 8192];
        if (m->query.p && m->query.n < sizeof(loc) - 64)
            snprintf(loc, sizeof(loc), "Location: /admin/?%.*s\r\n", (int)m->query.n, m->query.p);
        else
            snprintf(loc, sizeof(loc), "Location: /admin/\r\n");
        ADD_LIT(b, "see /admin/\n");
        respond_with(c, 301, "text/plain; charset=utf-8", loc, b, keep);
        return;
    }
    char extra[1024]; /* embed_dashboard.py keeps the policy under 700 bytes */
    snprintf(extra, sizeof(extra),
             "Content-Security-Policy: %s\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
             "X-Frame-Options: DENY\r\n",
             fx_dashboard_csp);
    evbuffer_add_reference(b, fx_dashboard_html, fx_dashboard_html_len, NULL, NULL);
    respond_with(c, 200, "text/html; charset=utf-8", extra, b, keep);
}

/* ---- requests ---------------------------------------------------------------------------------- */

/*
 * POST /authz/v1/check: one check or {"checks": [...]}, each decided as the
 * edge would decide that request (authorize.h), each logged in the decision
 * log with its own decision id.
 */
static void authz_check(admin_conn *c, const fx_http_msg *m, const char *body, size_t len, int keep)
{
    fx_server *s = c->admin->server;
    fx_authz_checks checks;
    char err[300];
    if (m->body == FX_BODY_NONE || len == 0) {
        problem(c, 400, "send the check as a JSON body: {\"token\": ..., \"method\": ..., \"path\": ...}", keep);
        return;
    }
    if (fx_authz_checks_parse(body, len, 0, &checks, err, sizeof(err)) < 0) {
        problem(c, 400, err, keep);
        return;
    }
    char rid[33];
    fx_slice request_id = m->request_id;
    if (!request_id.n) {
        fx_log_id(s->api_rng, rid);
        request_id = fx_slice_make(rid, 32);
    }
    fx_config *cfg = fx_server_config(s);
    struct evbuffer *b = evbuffer_new();
    fx_arena a; /* one check's request view at a time: a batch does not pile up memory */
    fx_arena_init(&a, 4096);
    if (checks.batch)
        evbuffer_add(b, "{\"results\":[", 12);
    for (size_t i = 0; i < checks.n; i++) {
        fx_authz_check_result res;
        fx_arena_reset(&a);
        fx_authz_check_run(cfg, &s->api_authn, &checks.v[i], s->api_rng, &a, &res);
        if (res.decided) {
            fx_authz_log_info info = {"api", request_id, res.route ? res.route->name : NULL,
                                      fx_slice_cstr(checks.v[i].method), fx_slice_cstr(checks.v[i].path),
                                      res.claims};
            fx_authz_log(&s->decisions, cfg, &res.o, &info);
        }
        char pol[FX_AUTHZ_POLICIES_JSON_MAX] = "[]";
        if (res.decided)
            fx_authz_policies_json(cfg, &res.o.d, pol, sizeof(pol));
        evbuffer_add_printf(b, "%s{\"allow\":%s,\"reason\":\"%s\",\"policies\":%s", i ? "," : "",
                            res.allow ? "true" : "false", res.reason, pol);
        if (res.decided)
            evbuffer_add_printf(b, ",\"decision_id\":\"%s\"%s", res.o.id,
                                res.o.would_deny ? ",\"would_deny\":true" : "");
        if (res.token_detail) {
            evbuffer_add(b, ",\"detail\":", 10);
            json_str(b, res.token_detail);
        }
        if (res.route) {
            evbuffer_add(b, ",\"route\":", 9);
            json_str(b, res.route->name);
        }
        evbuffer_add_printf(b, ",\"request_id\":\"%.*s\"}", (int)request_id.n, request_id.p);
        if (res.claims)
            fx_jwt_claims_unref(res.claims);
    }
    evbuffer_add(b, checks.batch ? "]}\n" : "\n", checks.batch ? 3 : 1);
    fx_arena_free(&a);
    fx_authz_checks_free(&checks);
    fx_config_unref(cfg);
    respond(c, 200, "application/json", b, keep);
    evbuffer_free(b);
}

static void handle(admin_conn *c, const fx_http_msg *m, const char *body, size_t body_len)
{
    fx_server *s = c->admin->server;
    int keep = m->keep_alive;
    struct evbuffer *b = evbuffer_new();
    fx_slice path = m->path;
    int get = m->method == HTTP_GET;

    if (fx_slice_eq(path, FX_SLICE_LIT("/healthz"))) {
        if (!get)
            goto not_allowed;
        evbuffer_add_printf(b, "{\"status\":\"ok\"}\n");
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/readyz"))) {
        if (!get)
            goto not_allowed;
        int draining = atomic_load(&s->draining);
        const char *waiting = NULL;
        fx_config *cfg = fx_server_config(s);
        int ready = !draining && fx_jwks_ready(s->jwks, cfg, &waiting);
        /* and every worker has taken the newest key sets, so no request meets an older table */
        for (unsigned i = 0; ready && i < s->nworkers; i++)
            ready = fx_authn_keys_taken(&s->workers[i].authn);
        if (ready || draining) {
            evbuffer_add_printf(b, "{\"status\":\"%s\"}\n", draining ? "draining" : "ready");
        } else {
            char why[600];
            if (waiting)
                snprintf(why, sizeof(why), "no key set yet from the jwks_uri of issuer '%s'", waiting);
            else
                snprintf(why, sizeof(why), "the workers have not taken the newest key sets yet");
            evbuffer_add_printf(b, "{\"status\":\"starting\",\"detail\":");
            json_str(b, why);
            evbuffer_add(b, "}\n", 2);
        }
        fx_config_unref(cfg); /* after the message: `waiting` points into it */
        respond(c, ready ? 200 : 503, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/metrics"))) {
        if (!get)
            goto not_allowed;
        metrics_text(s, b);
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/")) || fx_slice_eq(path, FX_SLICE_LIT("/admin"))) {
        if (!get)
            goto not_allowed;
        dashboard(c, m, b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/config"))) {
        if (!get)
            goto not_allowed;
        config_json(s, b);
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/routes"))) {
        if (!get)
            goto not_allowed;
        routes_json(s, b);
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/upstreams"))) {
        if (!get)
            goto not_allowed;
        upstreams_json(s, b);
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/events"))) {
        if (!get)
            goto not_allowed;
        if (!s->events) {
            evbuffer_free(b);
            problem(c, 404, "change events are not configured (no 'events' section)", keep);
            return;
        }
        fx_config *cfg = fx_server_config(s);
        fx_events_admin_json(s->events, cfg->events, b);
        fx_config_unref(cfg);
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_starts_with(path, FX_SLICE_LIT("/admin/shadow/"))) {
        if (!get)
            goto not_allowed;
        fx_slice name = fx_slice_make(path.p + 14, path.n - 14);
        if (shadow_json(s, name, b) < 0) {
            evbuffer_free(b);
            problem(c, 404, "no route of the running config has that name and a shadow", keep);
            return;
        }
        respond(c, 200, "application/json", b, keep);
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/authz/v1/check"))) {
        if (m->method != HTTP_POST)
            goto not_allowed;
        evbuffer_free(b);
        authz_check(c, m, body, body_len, keep);
        return;
    } else if (fx_slice_eq(path, FX_SLICE_LIT("/admin/reload"))) {
        if (m->method != HTTP_POST)
            goto not_allowed;
        fx_diags d = {0};
        if (fx_server_reload(s, &d) == 0) {
            fx_config *cfg = fx_server_config(s);
            evbuffer_add_printf(b, "{\"status\":\"reloaded\",\"hash\":\"%s\"}\n", cfg->hash);
            fx_config_unref(cfg);
            respond(c, 200, "application/json", b, keep);
        } else {
            fx_log(FX_LOG_ERROR, "POST /admin/reload: reload failed; the running config stays. "
                                 "%zu error%s:", d.n, d.n == 1 ? "" : "s");
            fx_diags_print(&d, stderr);
            evbuffer_add_printf(b, "{\"status\":\"error\",\"errors\":[");
            for (size_t i = 0; i < d.n; i++) {
                char line[1200];
                if (d.v[i].line)
                    snprintf(line, sizeof(line), "%s:%d:%d: error: %s", d.v[i].file, d.v[i].line,
                             d.v[i].col, d.v[i].message);
                else
                    snprintf(line, sizeof(line), "%s: error: %s", d.v[i].file, d.v[i].message);
                if (i)
                    evbuffer_add(b, ",", 1);
                json_str(b, line);
            }
            evbuffer_add(b, "]}\n", 3);
            respond(c, 400, "application/json", b, keep);
        }
        fx_diags_free(&d);
    } else {
        evbuffer_free(b);
        problem(c, 404, "no such admin endpoint", keep);
        return;
    }
    evbuffer_free(b);
    return;
not_allowed:
    evbuffer_free(b);
    problem(c, 405, "method not allowed on this endpoint", keep);
}

static void process(admin_conn *c)
{
    while (!c->closing) {
        struct evbuffer *in = c->sock->in;
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        size_t want = len < ADMIN_MAX_HEAD + 16 ? len : ADMIN_MAX_HEAD + 16;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        size_t head_len = 0, skip = 0;
        fx_http_error err;
        int rc = fx_http_scan_head(buf, want, ADMIN_MAX_HEAD, 8192, 1, &head_len, &skip, &err);
        if (rc == 0)
            return;
        if (rc < 0) {
            problem(c, err.status, err.detail, 0);
            return;
        }
        fx_http_msg m;
        char *head = fx_arena_memdup(&c->arena, buf + skip, head_len);
        if (!head || fx_http_parse_request(&c->arena, head, head_len, &m, &err) < 0) {
            evbuffer_drain(in, len);
            problem(c, head ? err.status : 503, head ? err.detail : "out of memory", 0);
            return;
        }
        if (m.body == FX_BODY_CHUNKED) {
            evbuffer_drain(in, len);
            problem(c, 411, "send a Content-Length body to the admin API", 0);
            return;
        }
        if (m.body == FX_BODY_LENGTH && m.content_length > ADMIN_MAX_BODY) {
            evbuffer_drain(in, len);
            problem(c, 413, "admin request bodies are limited to 1 MiB", 0);
            return;
        }
        size_t body = m.body == FX_BODY_LENGTH ? (size_t)m.content_length : 0;
        if (len < skip + head_len + body)
            return; /* wait for the whole body (bounded above) */
        const char *all = (const char *)evbuffer_pullup(in, (ev_ssize_t)(skip + head_len + body));
        handle(c, &m, all ? all + skip + head_len : NULL, all ? body : 0);
        evbuffer_drain(in, skip + head_len + body);
        fx_arena_reset(&c->arena);
    }
}

static void on_admin_read(fx_sock *s, void *arg)
{
    admin_conn *c = arg;
    struct timeval tv = {ADMIN_IDLE_MS / 1000, 0};
    evtimer_add(c->timer, &tv);
    process(c);
    if (c->closing && fx_sock_pending(c->sock) == 0)
        conn_free(c);
}

static void on_admin_drain(fx_sock *s, void *arg)
{
    admin_conn *c = arg;
    if (c->closing && fx_sock_pending(c->sock) == 0)
        conn_free(c);
}

static void on_admin_event(fx_sock *s, int what, void *arg)
{
    conn_free(arg);
}

static void on_admin_timer(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

static void on_admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg)
{
    fx_admin *a = arg;
    admin_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->admin = a;
    c->sock = fx_sock_new(a->base, fd);
    c->timer = evtimer_new(a->base, on_admin_timer, c);
    fx_arena_init(&c->arena, 4096);
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    if (!c->sock || !c->timer) {
        if (!c->sock)
            close(fd);
        conn_free(c);
        return;
    }
    c->sock->low_water = 0;
    fx_sock_setcb(c->sock, on_admin_read, on_admin_drain, on_admin_event, c);
    struct timeval tv = {ADMIN_IDLE_MS / 1000, 0};
    evtimer_add(c->timer, &tv);
}

static struct evconnlistener *admin_listen(fx_admin *a, const fx_addr *addr, char *shown,
                                           size_t shown_len)
{
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->salen) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
            snprintf(shown, shown_len, "%s:%u", host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        } else {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
            snprintf(shown, shown_len, "[%s]:%u", host,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        }
    }
    struct evconnlistener *l =
        evconnlistener_new(a->base, on_admin_accept, a, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!l)
        close(fd);
    return l;
}

fx_admin *fx_admin_start(fx_server *s, struct event_base *base, const fx_config *cfg)
{
    fx_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->server = s;
    a->base = base;
    if (cfg->has_admin) {
        a->listener = admin_listen(a, &cfg->admin, a->addr_text, sizeof(a->addr_text));
        if (!a->listener) {
            fx_log(FX_LOG_ERROR, "%s: error: admin.address: cannot listen on %s: %s", cfg->file,
                   cfg->admin.text, strerror(errno));
            free(a);
            return NULL;
        }
        a->addr = cfg->admin;
        a->addr.text = NULL;
        fx_log(FX_LOG_INFO, "admin listening on %s", a->addr_text);
    }
    return a;
}

static int same_admin(const fx_admin *a, const fx_config *cfg)
{
    return a->listener && cfg->has_admin && a->addr.salen == cfg->admin.salen &&
           memcmp(&a->addr.sa, &cfg->admin.sa, a->addr.salen) == 0;
}

int fx_admin_prepare(fx_admin *a, const fx_config *cfg, fx_diags *diags)
{
    fx_admin_abort(a);
    if (!cfg->has_admin || same_admin(a, cfg))
        return 0;
    a->pending = admin_listen(a, &cfg->admin, a->pending_text, sizeof(a->pending_text));
    if (!a->pending) {
        fx_diags_add(diags, cfg->file, 0, 0, "admin.address: cannot listen on %s: %s",
                     cfg->admin.text, strerror(errno));
        return -1;
    }
    return 0;
}

void fx_admin_abort(fx_admin *a)
{
    if (a->pending)
        evconnlistener_free(a->pending);
    a->pending = NULL;
}

void fx_admin_commit(fx_admin *a, const fx_config *cfg)
{
    if (cfg->has_admin && same_admin(a, cfg))
        return;
    if (a->listener)
        evconnlistener_free(a->listener);
    a->listener = a->pending;
    a->pending = NULL;
    if (a->listener) {
        a->addr = cfg->admin;
        a->addr.text = NULL;
        snprintf(a->addr_text, sizeof(a->addr_text), "%s", a->pending_text);
        fx_log(FX_LOG_INFO, "admin listening on %s", a->addr_text);
    } else {
        memset(&a->addr, 0, sizeof(a->addr));
        fx_log(FX_LOG_INFO, "admin listener closed (no admin.address in the new config)");
    }
}

void fx_admin_free(fx_admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_free(a->conns);
    fx_admin_abort(a);
    if (a->listener)
        evconnlistener_free(a->listener);
    free(a);
}

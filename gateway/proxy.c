/*
 * proxy.c — the life of a client connection (see proxy.h).
 *
 *   accept ─▶ READ_HEAD ─▶ route ─▶ PROXY ─────────────▶ finish ─▶ READ_HEAD (keep-alive)
 *                │                    │  request body ▶ upstream (Content-Length moved,
 *                │                    │                chunked re-framed)
 *                │                    │  response head ◀ upstream (checked, rewritten)
 *                │                    │  response body ◀ upstream (streamed)
 *                │                    └▶ TUNNEL after 101 (WebSocket, any Upgrade)
 *                └▶ problem+json error ─▶ CLOSING (flush, then close)
 *
 * Sections, in order: helpers and timers; answering with our own errors;
 * the request head; the upstream head; request body pump; response head and
 * body pump; finishing a request; tunnels; connection events; accept/drain.
 *
 * One request at a time per connection: pipelined requests wait, unread, in
 * the input buffer until the previous response is queued, so responses are
 * always in order. Backpressure in both directions: when the peer's output
 * buffer holds more than FX_HIGH_WATER bytes we stop reading from the source
 * until it has drained to FX_LOW_WATER.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "authn.h"
#include "authorize.h"
#include "balance.h"
#include "clock.h"
#include "cloudevent.h"
#include "events.h"
#include "http1.h"
#include "log.h"
#include "retry.h"
#include "router.h"
#include "shadow.h"
#include "tls.h"
#include "upstream.h"

#define FX_HIGH_WATER (512 * 1024)
#define FX_LOW_WATER (128 * 1024)
#define FX_MAX_RESPONSE_HEAD (64 * 1024)
/* Request body bytes read (and, if chunked, validated) before the upstream is
 * contacted: a malformed small body is refused without the upstream ever
 * seeing the request, and a request that never sent a body byte upstream can
 * be retried. Larger bodies stream from here on. */
#define FX_STAGE_BYTES (64 * 1024)

enum conn_state { CS_READ_HEAD, CS_PROXY, CS_TUNNEL, CS_CLOSING };

enum resp_out { OUT_NONE, OUT_LENGTH, OUT_CHUNKED, OUT_CLOSE };

/* A request on a route with `events` (section "change events" below). While the state is
 * EV_CAPTURE or EV_WAIT, the client's response is held in c->held. */
enum ev_state {
    EV_NONE,      /* no event for this request (yet) */
    EV_CAPTURE,   /* 2xx seen; capturing the response body for the event's data */
    EV_WAIT,      /* submitted; waiting for the ticket (spooled, or acknowledged with delivery: sync) */
    EV_DONE,      /* the ticket came back (or never will matter): the response flows */
};

struct fx_conn {
    fx_worker *w;
    fx_conn *prev, *next;
    fx_sock *sock;
    struct event *timer;
    char client_ip[INET6_ADDRSTRLEN];
    int state;
    uint64_t last_activity_ms;    /* last byte read or written, for stall timeouts */
    uint64_t head_deadline_ms;    /* when the current head must be complete */
    unsigned head_started : 1;    /* a byte of the next request has arrived */
    unsigned close_after : 1;     /* close once the current response is flushed */
    unsigned served : 1;          /* at least one request answered (keep-alive idle) */
    unsigned tls_counted : 1;     /* its TLS handshake is in ficus_tls_handshakes_total */

    /* the current request; everything below is reset between requests */
    fx_arena arena;
    fx_config *cfg;
    fx_http_msg req;
    fx_route_match match;
    const fx_upstream_conf *ups;
    fx_pool *pool;
    fx_jwt_claims *claims;        /* the verified caller, or NULL (anonymous) */
    const char *auth_reason;      /* for the log when a token was refused */
    const char *authz;            /* for the log: "allow", "deny" or "would_deny"; NULL: not decided */
    char decision_id[33];         /* joins the access log line to the decision log line */
    char rid[33];
    fx_slice request_id;
    uint64_t t0_us;
    uint64_t bytes_in, bytes_out;
    int status;
    const char *upstream_error;   /* for the log */

    /* request body towards the upstream */
    uint64_t req_left;
    fx_http_chunked req_chunked;
    unsigned req_done : 1;
    unsigned req_body_started : 1;/* a body byte was sent upstream: no retry */
    struct evbuffer *stage;       /* body bytes read before the upstream is contacted */
    char *up_head;                /* serialized upstream head (arena), kept for one retry */
    size_t up_head_len;
    unsigned retried : 1;
    /* retries and fallback (routes[].retries, routes[].fallback; "retries and fallback" below) */
    unsigned body_kept : 1;       /* the whole body went upstream by reference: `stage` can send it again */
    unsigned attempt_noted : 1;   /* the upstream's retry budget counted this request */
    unsigned fell_back : 1;       /* on the route's fallback now (at most once per request) */
    unsigned overloaded : 1;      /* the circuit breaker refused the last attempt: no retry into it */
    int fb_reason;                /* enum fx_retry_reason that sent it there */
    unsigned tries;               /* retries made on the first upstream */

    /* upstream side */
    fx_upconn *up;
    struct event *up_timer;       /* connect timeout */
    fx_http_msg resp;
    uint64_t resp_left;
    fx_http_chunked resp_chunked;
    int resp_out;                 /* enum resp_out */
    unsigned resp_head_done : 1;
    unsigned resp_started : 1;    /* response head queued to the client */
    unsigned resp_done : 1;
    unsigned resp_any_byte : 1;   /* the upstream sent something */
    unsigned up_paused : 1;       /* upstream reads paused by client backpressure */
    unsigned client_paused : 1;   /* client reads paused by upstream backpressure */

    /* change event (routes[].events) */
    const fx_route_events_conf *ev;  /* a 2xx to this request publishes; NULL: no event */
    char *ev_key;                 /* rendered before forwarding (arena) */
    size_t ev_key_len;
    int ev_state;                 /* enum ev_state */
    unsigned ev_drop : 1;         /* the spool was full and when_full is drop */
    unsigned ev_over : 1;         /* the captured body went over events.max_data_bytes */
    unsigned ev_finish : 1;       /* the response is complete: finish once the ticket is back */
    struct evbuffer *ev_body;     /* the captured request or response body */
    struct evbuffer *held;        /* the client's response, held until the ticket is back */
    fx_event_ticket *ticket;      /* submitted, not back yet */
    uint64_t ev_wait_ms;          /* when the wait for the ticket began */

    /* shadow copy (routes[].shadow): the worker owns the exchange; this request feeds it the primary's answer */
    fx_shadow_exchange *sh;
    unsigned sh_decided : 1;      /* fx_shadow_start was asked (once per request, not again on a retry) */
};

static void client_process(fx_conn *c);
static void conn_free(fx_conn *c);
static void on_client_read(fx_sock *s, void *arg);
static void on_client_write(fx_sock *s, void *arg);
static void on_client_event(fx_sock *s, int what, void *arg);
static void on_up_read(fx_sock *s, void *arg);
static void on_up_write(fx_sock *s, void *arg);
static void on_up_event(fx_sock *s, int what, void *arg);
static void finish_request(fx_conn *c);
static void release_upstream(fx_conn *c);
static int pump_response(fx_conn *c);
static int upstream_connect(fx_conn *c);
static void pump_request_body(fx_conn *c);

/* ---- helpers and timers --------------------------------------------------------- */

static void arm_timer(fx_conn *c, uint64_t ms)
{
    struct timeval tv = fx_ms_tv(ms);
    evtimer_add(c->timer, &tv);
}

static const fx_limits_conf *limits(fx_conn *c)
{
    return &c->cfg->limits;
}

static int holding(const fx_conn *c)
{
    return c->ev_state == EV_CAPTURE || c->ev_state == EV_WAIT;
}

/* Where response bytes for the client go: the socket, or the held buffer while an event is pending. */
static struct evbuffer *client_out(fx_conn *c)
{
    return holding(c) ? c->held : c->sock->out;
}

static void flush_client(fx_conn *c)
{
    if (!holding(c))
        fx_sock_flush(c->sock);
}

static void flush_up(fx_conn *c)
{
    if (c->up)
        fx_sock_flush(c->up->sock);
}

static char *put(char *o, const char *p, size_t n)
{
    memcpy(o, p, n);
    return o + n;
}

static char *put_s(char *o, fx_slice s)
{
    return put(o, s.p, s.n);
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

/* ---- our own answers: problem+json (RFC 9457) ------------------------------------- */

static void ensure_request_id(fx_conn *c)
{
    if (c->request_id.n)
        return;
    if (c->req.request_id.n) {
        c->request_id = c->req.request_id;
    } else {
        fx_worker_request_id(c->w, c->rid);
        c->request_id = fx_slice_make(c->rid, 32);
    }
}

static void access_log(fx_conn *c);
static void record_request(fx_conn *c);

/*
 * Queues a complete error response. `keep` says whether the connection may
 * stay open (only when nothing of the request is left unread).
 */
static void ev_detach(fx_conn *c);
static int ev_emit(fx_conn *c, int omitted);
static void ev_flush_held(fx_conn *c);

static void send_problem_with(fx_conn *c, int status, const char *detail, int keep,
                              const char *extra_headers)
{
    if (holding(c))
        ev_detach(c); /* our own answer replaces a held 2xx (only when making the response head failed) */
    ensure_request_id(c);
    fx_worker *w = c->w;
    const char *title = fx_http_status_text(status);
    char body[1024], esc[600];
    size_t el = fx_json_escape(esc, sizeof(esc) - 1, detail, strlen(detail));
    if (el > sizeof(esc) - 1)
        el = 0;
    int bl = snprintf(body, sizeof(body),
                      "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,"
                      "\"detail\":\"%.*s\",\"request_id\":\"%.*s\"}\n",
                      title, status, (int)el, esc, (int)c->request_id.n, c->request_id.p);
    if (bl < 0 || (size_t)bl >= sizeof(body))
        bl = 0;
    if (w->draining)
        keep = 0;
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/problem+json\r\n"
                      "Content-Length: %d\r\nX-Request-Id: %.*s\r\n%s%s\r\n",
                      status, title, fx_worker_date(w), bl, (int)c->request_id.n,
                      c->request_id.p, extra_headers ? extra_headers : "",
                      keep ? "" : "Connection: close\r\n");
    if (hl < 0 || (size_t)hl >= sizeof(head))
        hl = 0;
    struct evbuffer *out = client_out(c);
    evbuffer_add(out, head, (size_t)hl);
    evbuffer_add(out, body, (size_t)bl);
    flush_client(c);
    c->bytes_out += (uint64_t)hl + (uint64_t)bl;
    c->status = status;
    c->resp_started = 1;
    c->resp_done = 1;
    if (!keep)
        c->close_after = 1;
}

static void send_problem(fx_conn *c, int status, const char *detail, int keep)
{
    send_problem_with(c, status, detail, keep, NULL);
}

/* An error before or instead of forwarding: answer it, log it, move on. */
static void reject(fx_conn *c, int status, const char *detail, int keep)
{
    if (c->resp_started) {
        /* too late for a status: the client sees a truncated response (with what was held for an
         * event: its event still goes out, marked incomplete if its body was being captured) */
        if (holding(c)) {
            if (c->ev_state == EV_CAPTURE)
                ev_emit(c, FX_CE_DATA_INCOMPLETE);
            ev_flush_held(c);
            if (c->ticket)
                c->ticket->owner = NULL;
            c->ticket = NULL;
        }
        c->close_after = 1;
        c->resp_done = 1;
        c->status = c->status ? c->status : status;
        finish_request(c);
        return;
    }
    send_problem(c, status, detail, keep);
    finish_request(c);
}

/* ---- the request head -------------------------------------------------------------- */

static void begin_request(fx_conn *c)
{
    c->cfg = fx_worker_config(c->w);
    c->t0_us = fx_mono_us();
}

static void ev_end(fx_conn *c);

static void end_request(fx_conn *c)
{
    ev_end(c);
    if (c->sh)
        fx_shadow_primary_abandon(c->sh); /* no complete answer: the shadow's is not compared */
    c->sh = NULL;
    c->sh_decided = 0;
    if (c->up) {
        fx_upconn_free(c->up);
        c->up = NULL;
    }
    if (c->up_timer)
        evtimer_del(c->up_timer);
    if (c->pool)
        fx_pool_release(c->pool); /* before the config: a retired pool may go with it */
    c->pool = NULL;
    if (c->claims)
        fx_jwt_claims_unref(c->claims);
    c->claims = NULL;
    c->auth_reason = NULL;
    c->authz = NULL;
    if (c->cfg) {
        fx_config_unref(c->cfg);
        c->cfg = NULL;
    }
    if (c->stage)
        evbuffer_drain(c->stage, evbuffer_get_length(c->stage));
    fx_arena_reset(&c->arena);
    memset(&c->req, 0, sizeof(c->req));
    memset(&c->resp, 0, sizeof(c->resp));
    c->match.route = NULL;
    c->ups = NULL;
    c->request_id = FX_SLICE_NULL;
    c->bytes_in = c->bytes_out = 0;
    c->status = 0;
    c->upstream_error = NULL;
    c->req_left = 0;
    memset(&c->req_chunked, 0, sizeof(c->req_chunked));
    c->req_done = c->req_body_started = c->retried = 0;
    c->body_kept = c->attempt_noted = c->fell_back = c->overloaded = 0;
    c->fb_reason = 0;
    c->tries = 0;
    c->up_head = NULL;
    c->up_head_len = 0;
    c->resp_left = 0;
    c->resp_out = OUT_NONE;
    c->resp_head_done = c->resp_started = c->resp_done = c->resp_any_byte = 0;
    c->up_paused = c->client_paused = 0;
    c->head_started = 0;
}

/*
 * Policies decide (authorize.h). A deny is a 403 that names the decision id,
 * which the decision log line carries with the policies behind it; the
 * client learns nothing about the policies themselves. Returns -1 when
 * the request was answered.
 */
static int authorize(fx_conn *c, const fx_route_conf *r, int body_unread)
{
    fx_authz_request ar;
    fx_authz_outcome o;
    int keep = !body_unread && c->req.keep_alive;
    if (fx_authz_request_http(&ar, c->cfg, &c->match, &c->req, c->claims, &c->arena) < 0) {
        send_problem(c, 503, "out of memory", 0); /* fail closed */
        finish_request(c);
        return -1;
    }
    char what[100], detail[200];
    if (fx_authz_repeated(c->cfg, &ar, what, sizeof(what))) {
        snprintf(detail, sizeof(detail), "%s appears more than once, and a policy reads it", what);
        send_problem(c, 400, detail, keep);
        finish_request(c);
        return -1;
    }
    fx_authz_decide(c->cfg, r, &ar, c->w->rng, &o);
    memcpy(c->decision_id, o.id, sizeof(o.id));
    c->authz = o.would_deny ? "would_deny" : o.allow ? "allow" : "deny";
    fx_authz_log_info info = {"edge", c->request_id, r->name, c->req.method_s, c->req.path, c->claims};
    fx_authz_log(&c->w->decisions, c->cfg, &o, &info);
    if (o.allow)
        return 0;
    snprintf(detail, sizeof(detail), "denied by policy (decision %s)", o.id);
    send_problem(c, 403, detail, keep);
    finish_request(c);
    return -1;
}

/* ---- change events (routes[].events) ------------------------------------------------------ */

/*
 * A state-changing request on a route with `events`: the key is rendered and
 * the spool checked before the request is forwarded (so nothing changes
 * without its event). On a 2xx the client's response is held (c->held)
 * while the event is made — at once for data: request | none, once the body
 * is captured for data: response — and handed to the events thread; the
 * response flows when the ticket comes back (spooled; with delivery: sync,
 * acknowledged by Kafka).
 */

/* Before forwarding. Returns -1 when the request was answered. */
static int ev_begin(fx_conn *c, const fx_route_conf *r, int body_unread)
{
    const fx_route_events_conf *e = r->events;
    if (!e || !(e->on & FX_METHOD_BIT(c->req.method)))
        return 0;
    int keep = !body_unread && c->req.keep_alive;
    fx_events *rt = c->w->server->events;
    const fx_events_conf *ec = c->cfg->events;
    char detail[300], why[200], key[1024];
    if (!rt || !ec) {
        send_problem(c, 503, "change events are not running (see the gateway's log)", keep);
        finish_request(c);
        return -1;
    }
    fx_ce_param params[FX_ROUTE_MAX_PARAMS];
    for (size_t i = 0; i < c->match.nparams; i++) {
        params[i].name = c->match.params[i].name;
        params[i].value = c->match.params[i].value;
    }
    long kl = fx_ce_render_key(e->key, params, c->match.nparams, c->claims, key, sizeof(key), why, sizeof(why));
    if (kl < 0) {
        snprintf(detail, sizeof(detail), "cannot make the key of this request's change event: %s", why);
        send_problem(c, 400, detail, keep);
        finish_request(c);
        return -1;
    }
    if (fx_events_spool_full(rt, ec->spool_max_bytes)) {
        if (ec->when_full == FX_SPOOL_REJECT) {
            send_problem_with(c, 503,
                              "the change-event spool is full (events.spool_max_bytes); the request was not "
                              "forwarded",
                              keep, "Retry-After: 5\r\n");
            finish_request(c);
            return -1;
        }
        c->ev_drop = 1; /* when_full: drop — forwarded; a 2xx is counted as a dropped event */
    }
    if (!(c->ev_key = fx_arena_memdup(&c->arena, key, (size_t)kl + 1))) {
        send_problem(c, 503, "out of memory", 0);
        finish_request(c);
        return -1;
    }
    c->ev_key_len = (size_t)kl;
    c->ev = e;
    return 0;
}

/* Body bytes for the event's data, up to events.max_data_bytes. */
static void ev_capture(fx_conn *c, const char *p, size_t n)
{
    if (c->ev_over || n == 0)
        return;
    if (!c->ev_body)
        c->ev_body = evbuffer_new();
    if (!c->ev_body || evbuffer_get_length(c->ev_body) + n > c->cfg->events->max_data_bytes ||
        evbuffer_add(c->ev_body, p, n) < 0) {
        c->ev_over = 1;
        if (c->ev_body)
            evbuffer_drain(c->ev_body, evbuffer_get_length(c->ev_body));
    }
}

static int ev_capture_piece(void *arg, const char *p, size_t n)
{
    fx_conn *c = arg;
    ev_capture(c, p, n);
    return c->ev_over;
}

/* The first n bytes of src, without consuming them. */
static void ev_capture_buf(fx_conn *c, struct evbuffer *src, size_t n)
{
    fx_evbuffer_peek_each(src, n, ev_capture_piece, c);
}

static int ev_capturing_request(const fx_conn *c)
{
    return c->ev && !c->ev_drop && c->ev->data == FX_EVENT_DATA_REQUEST && c->ev_state == EV_NONE;
}

static int ev_capturing_response(const fx_conn *c)
{
    return c->ev_state == EV_CAPTURE && c->ev->data == FX_EVENT_DATA_RESPONSE;
}

/* The held response goes to the client as it is, and stops being held. */
static void ev_flush_held(fx_conn *c)
{
    c->ev_state = EV_DONE;
    if (c->held && evbuffer_get_length(c->held))
        evbuffer_add_buffer(c->sock->out, c->held);
    flush_client(c);
}

/*
 * Makes the event and hands it over; the client's response stays held until
 * the ticket is back. -1 (logged) when it could not be made: then nothing
 * waits for it.
 */
static int ev_emit(fx_conn *c, int omitted)
{
    const fx_route_events_conf *e = c->ev;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    char id[37], actor[256];
    fx_ce_input in = {.id = id, .source_route = c->match.route->name, .type = e->type, .key = c->ev_key,
                      .time_ms = ms, .request_id = c->request_id, .method = c->req.method_s,
                      .status = c->resp.status, .has_data = e->data != FX_EVENT_DATA_NONE, .body = ""};
    if (c->claims && fx_jwt_claim_render(c->claims, "sub", actor, sizeof(actor)) > 0)
        in.actor = actor;
    if (in.has_data) {
        const fx_http_msg *m = e->data == FX_EVENT_DATA_RESPONSE ? &c->resp : &c->req;
        const fx_http_header *h = fx_http_find_header(m, "content-type", NULL);
        in.content_type = h ? h->value : FX_SLICE_NULL;
        if (c->ev_over)
            omitted = FX_CE_DATA_TOO_LARGE;
        in.omitted = omitted;
        size_t n = c->ev_body ? evbuffer_get_length(c->ev_body) : 0;
        if (omitted == FX_CE_DATA_COMPLETE && n) {
            in.body = (const char *)evbuffer_pullup(c->ev_body, -1);
            in.body_len = n;
        } else if (omitted == FX_CE_DATA_COMPLETE) {
            in.has_data = 0; /* an empty body (204, a DELETE): nothing to carry */
        }
    }
    char *value = NULL;
    size_t vlen = 0;
    fx_event_ticket *t = NULL;
    unsigned char rnd[10];
    if (fx_worker_random(c->w, rnd, sizeof(rnd)) == 0)
        fx_ce_uuid7_from(ms, rnd, id);
    else
        id[0] = '\0';
    if (!id[0] || (in.has_data && !in.body) || fx_ce_build(&in, &value, &vlen) < 0 ||
        !(t = fx_event_ticket_new(e->topic, c->ev_key, c->ev_key_len, value, vlen))) {
        free(value);
        fx_log(FX_LOG_ERROR, "events: cannot make the change event of request %.*s (route %s, key '%s'): out of "
                             "memory or no randomness; the event is lost",
               (int)c->request_id.n, c->request_id.p, c->match.route->name, c->ev_key);
        ev_flush_held(c); /* nothing to wait for: what was held goes out */
        return -1;
    }
    if (vlen + c->ev_key_len + 256 > c->cfg->events->max_message_bytes && in.has_data &&
        in.omitted == FX_CE_DATA_COMPLETE) {
        /* larger than the producer may send (message.max.bytes): it would only be dead-lettered;
         * the event goes without its data instead, and says so */
        fx_event_ticket_free(t);
        t = NULL;
        value = NULL;
        in.omitted = FX_CE_DATA_TOO_LARGE;
        if (fx_ce_build(&in, &value, &vlen) < 0 ||
            !(t = fx_event_ticket_new(e->topic, c->ev_key, c->ev_key_len, value, vlen))) {
            free(value);
            fx_log(FX_LOG_ERROR, "events: out of memory making the change event of request %.*s; the event is lost",
                   (int)c->request_id.n, c->request_id.p);
            ev_flush_held(c);
            return -1;
        }
    }
    t->worker = c->w;
    t->owner = c;
    t->wait_ack = c->cfg->events->delivery == FX_DELIVERY_SYNC;
    t->created_ms = ms;
    c->ticket = t;
    c->ev_state = EV_WAIT;
    c->ev_wait_ms = fx_mono_ms();
    fx_worker_submit_event(c->w, t);
    return 0;
}

/* A 2xx head from the upstream (called before it is written for the client). */
static void ev_response_head(fx_conn *c)
{
    if (!c->ev || c->resp.status < 200 || c->resp.status > 299)
        return;
    if (c->ev_drop) {
        fx_event_ticket *t = fx_event_ticket_new(c->ev->topic, c->ev_key, c->ev_key_len, NULL, 0);
        if (t) {
            t->kind = FX_TICKET_DROPPED;
            t->worker = c->w;
            fx_worker_submit_event(c->w, t);
        }
        fx_log(FX_LOG_WARN, "events: spool full (when_full: drop): no event for request %.*s (route %s, key '%s')",
               (int)c->request_id.n, c->request_id.p, c->match.route->name, c->ev_key);
        return;
    }
    if (!c->held && !(c->held = evbuffer_new())) {
        fx_log(FX_LOG_ERROR, "events: out of memory: no event for request %.*s", (int)c->request_id.n,
               c->request_id.p);
        return;
    }
    c->ev_state = EV_CAPTURE;
    if (c->ev->data == FX_EVENT_DATA_RESPONSE) {
        if (c->ev_body)
            evbuffer_drain(c->ev_body, evbuffer_get_length(c->ev_body));
        c->ev_over = 0;
        return; /* made when the body is complete (or too large) */
    }
    int omitted = c->ev->data == FX_EVENT_DATA_REQUEST && !c->req_done ? FX_CE_DATA_INCOMPLETE : FX_CE_DATA_COMPLETE;
    ev_emit(c, omitted);
}

/* The ticket is back (or will never matter): the held response goes to the client. */
static void ev_release(fx_conn *c)
{
    ev_flush_held(c);
    c->last_activity_ms = fx_mono_ms(); /* the wait was ours, not the client's */
    if (c->ev_finish) {
        c->ev_finish = 0;
        finish_request(c);
        return;
    }
    if (c->up) {
        if (c->up_paused && evbuffer_get_length(c->sock->out) <= FX_HIGH_WATER) {
            c->up_paused = 0;
            fx_sock_read_enable(c->up->sock);
        }
        if (evbuffer_get_length(c->up->sock->in))
            pump_response(c);
    }
}

/* Nobody will wait for this request's event any more: an event still being captured goes out without
 * its data, a ticket still out is left to come back on its own, the held response is dropped. */
static void ev_detach(fx_conn *c)
{
    if (c->ev_state == EV_CAPTURE)
        ev_emit(c, FX_CE_DATA_INCOMPLETE);
    if (c->ticket)
        c->ticket->owner = NULL;
    c->ticket = NULL;
    if (c->held)
        evbuffer_drain(c->held, evbuffer_get_length(c->held));
    c->ev_state = c->ev ? EV_DONE : EV_NONE;
    c->ev_finish = 0;
}

/* Waited limits.idle_timeout for the ticket: the client learns the change was made but not confirmed. */
static void ev_timed_out(fx_conn *c)
{
    int sync = c->cfg->events->delivery == FX_DELIVERY_SYNC;
    fx_log(FX_LOG_WARN, "events: the event of request %.*s was not %s within limits.idle_timeout; answering 504 "
                        "(the event is not lost: it is delivered when it can be)",
           (int)c->request_id.n, c->request_id.p, sync ? "acknowledged by Kafka" : "written to the spool");
    ev_detach(c);
    c->resp_started = 0;
    c->upstream_error = "event_timeout";
    reject(c, 504,
           sync ? "the upstream made the change, but Kafka did not acknowledge its event in time; the event is "
                  "kept and will be delivered"
                : "the upstream made the change, but its event was not written to the spool in time; the "
                  "gateway still holds it and produces it to Kafka",
           0);
}

/* The request ends (normally or not). */
static void ev_end(fx_conn *c)
{
    ev_detach(c);
    if (c->ev_body)
        evbuffer_drain(c->ev_body, evbuffer_get_length(c->ev_body));
    c->ev = NULL;
    c->ev_key = NULL;
    c->ev_key_len = 0;
    c->ev_state = EV_NONE;
    c->ev_drop = c->ev_over = c->ev_finish = 0;
}

void fx_proxy_events_returned(fx_worker *w)
{
    fx_event_ticket *t = fx_events_take_returned(w), *next;
    for (; t; t = next) {
        next = t->next;
        fx_conn *c = t->owner;
        if (c) {
            if (t->failed)
                fx_log(FX_LOG_WARN, "events: request %.*s: %s", (int)c->request_id.n, c->request_id.p, t->why);
            c->ticket = NULL;
            ev_release(c);
        }
        fx_event_ticket_free(t);
    }
}

static void read_head(fx_conn *c)
{
    struct evbuffer *in = c->sock->in;
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (!c->cfg)
        begin_request(c);
    const fx_limits_conf *lim = limits(c);
    if (!c->head_started) {
        c->head_started = 1;
        c->t0_us = fx_mono_us();
        c->head_deadline_ms = c->t0_us / 1000 + lim->header_timeout_ms;
        arm_timer(c, lim->header_timeout_ms);
    }
    size_t want = len < lim->max_header_bytes + 16 ? len : lim->max_header_bytes + 16;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
    size_t head_len = 0, skip = 0;
    fx_http_error err;
    int rc = fx_http_scan_head(buf, want, lim->max_header_bytes, lim->max_uri_bytes, 1, &head_len,
                               &skip, &err);
    if (rc == 0)
        return; /* wait for more; the header timer bounds the wait */
    char detail[256];
    if (rc < 0) {
        c->bytes_in += want;
        snprintf(detail, sizeof(detail), "%s (at byte %zu)", err.detail, err.offset);
        evbuffer_drain(in, len);
        reject(c, err.status, detail, 0);
        return;
    }
    char *head = fx_arena_memdup(&c->arena, buf + skip, head_len);
    evbuffer_drain(in, skip + head_len);
    c->bytes_in += skip + head_len;
    if (!head) {
        reject(c, 503, "out of memory", 0);
        return;
    }
    if (fx_http_parse_request(&c->arena, head, head_len, &c->req, &err) < 0) {
        snprintf(detail, sizeof(detail), "%s (at byte %zu)", err.detail, err.offset);
        evbuffer_drain(in, evbuffer_get_length(in));
        reject(c, err.status, detail, 0);
        return;
    }
    ensure_request_id(c);
    /* from here on the body (if any) is not read yet: errors must close */
    int body_unread = c->req.body != FX_BODY_NONE;

    if (c->req.body == FX_BODY_LENGTH && c->req.content_length > lim->max_body_bytes) {
        reject(c, 413, "request body is larger than limits.max_body_bytes", 0);
        return;
    }
    if (c->cfg != c->w->cfg) {
        /* a reload landed while the head was arriving: route on the worker's
         * snapshot, which is the one its upstream pools belong to */
        fx_config_unref(c->cfg);
        c->cfg = fx_worker_config(c->w);
    }
    const fx_route_conf *r =
        fx_router_match(c->cfg, c->req.method, c->req.host_name, c->req.path, &c->match);
    if (!r) {
        snprintf(detail, sizeof(detail), "no route matches %.*s %.*s", (int)c->req.method_s.n,
                 c->req.method_s.p, (int)(c->req.path.n > 200 ? 200 : c->req.path.n),
                 c->req.path.p);
        reject(c, 404, detail, !body_unread && c->req.keep_alive);
        return;
    }
    fx_authn_result ar;
    fx_authn_check(&c->w->authn, c->cfg, r, &c->req, &ar);
    if (ar.reason != FX_JWT_OK) {
        /* RFC 6750 §3: the challenge says why, in words that carry no key material */
        char challenge[400], why[200];
        size_t k = 0;
        for (const char *p = ar.detail; *p && k < sizeof(why) - 1; p++)
            why[k++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '\'' : *p;
        why[k] = '\0';
        snprintf(challenge, sizeof(challenge),
                 "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"%s\"\r\n",
                 why);
        c->auth_reason = fx_jwt_reason_name(ar.reason);
        c->ups = &c->cfg->upstreams[r->upstream];
        send_problem_with(c, 401, ar.detail, !body_unread && c->req.keep_alive, challenge);
        finish_request(c);
        return;
    }
    c->claims = ar.claims;
    /* the side of a split is chosen once the caller is known: a split can be sticky on a claim */
    int up = fx_balance_choose(c->cfg, r, &c->req, c->claims, c->client_ip, c->w->rng);
    c->ups = &c->cfg->upstreams[up];
    if (r->authz && authorize(c, r, body_unread) < 0)
        return;
    if (r->events && ev_begin(c, r, body_unread) < 0)
        return;
    c->pool = (size_t)up < c->w->npools ? c->w->pools[up] : NULL;
    if (c->pool)
        fx_pool_hold(c->pool);
    c->state = CS_PROXY;
    evtimer_del(c->timer);
    c->last_activity_ms = fx_mono_ms();
    arm_timer(c, lim->idle_timeout_ms);
    if (c->req.body == FX_BODY_NONE) {
        c->req_done = 1;
        upstream_connect(c);
        return;
    }
    if (c->req.expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(client_out(c), cont, sizeof(cont) - 1);
        c->bytes_out += sizeof(cont) - 1;
        flush_client(c);
    }
    if (c->req.body == FX_BODY_LENGTH)
        c->req_left = c->req.content_length;
    pump_request_body(c);
}

/* ---- the upstream request head -------------------------------------------------------- */

/* A rendered claim is a header value only if it has no control characters. */
static int header_value_ok(const char *v, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

/*
 * routes[].rewrite: strip_prefix comes off the path, then prefix goes in front, the two joined by exactly
 * one '/' ("/v2" + "/documents/42" and "/v2/" + "/documents/42" both give "/v2/documents/42"); a path
 * stripped to nothing becomes the prefix alone, or "/". The config made strip_prefix start every path the
 * route matches; a path that does not start with it anyway is not stripped.
 */
static char *put_rewritten_path(char *o, const fx_route_conf *r, fx_slice path)
{
    fx_slice rest = path, sp = fx_slice_cstr(r->strip_prefix);
    if (sp.n && fx_slice_starts_with(rest, sp))
        rest = fx_slice_make(rest.p + sp.n, rest.n - sp.n);
    size_t an = r->add_prefix ? strlen(r->add_prefix) : 0;
    int slash = an && r->add_prefix[an - 1] == '/';
    if (an)
        o = put(o, r->add_prefix, an);
    if (rest.n && rest.p[0] == '/') {
        if (slash)
            rest = fx_slice_make(rest.p + 1, rest.n - 1);
    } else if (!slash && (rest.n || !an)) {
        *o++ = '/';
    }
    return put_s(o, rest);
}

static int serialize_upstream_head(fx_conn *c)
{
    const fx_http_msg *m = &c->req;
    const fx_auth_conf *auth = c->cfg->auth;
    const fx_route_conf *route = c->match.route;
    int rewrite = route && (route->strip_prefix || route->add_prefix);
    fx_slice xff_prev[16];
    size_t nxff = 0;
    size_t size = 256 + m->target.n + c->request_id.n + m->host.n * 2 + 64;
    if (rewrite && route->add_prefix)
        size += strlen(route->add_prefix) + 1;

    /* identity: the verified claims, rendered now; client-sent copies are dropped below */
    fx_slice fwd[32];
    size_t nfwd = auth && auth->nforward < 32 ? auth->nforward : 0;
    for (size_t i = 0; i < nfwd; i++) {
        fwd[i] = FX_SLICE_NULL;
        if (!c->claims)
            continue;
        char *buf = fx_arena_alloc(&c->arena, 2048);
        int n = buf ? fx_jwt_claim_render(c->claims, auth->forward[i].claim, buf, 2048) : -1;
        if (n < 0)
            continue;
        if (!header_value_ok(buf, n)) {
            fx_log(FX_LOG_WARN, "auth.forward: claim '%s' has control characters; %s not sent",
                   auth->forward[i].claim, auth->forward[i].header);
            continue;
        }
        fwd[i] = fx_slice_make(buf, (size_t)n);
        size += strlen(auth->forward[i].header) + (size_t)n + 4;
    }
    int drop_authorization = !fx_authn_forward_token(c->cfg);
    for (size_t i = 0; i < m->nheaders; i++) {
        const fx_http_header *h = &m->headers[i];
        size += h->name.n + h->value.n + 4;
        if ((h->flags & FX_HDR_XFF) && nxff < 16)
            xff_prev[nxff++] = h->value;
    }
    char *o = fx_arena_alloc(&c->arena, size), *start = o;
    if (!o)
        return -1;
    /* request line: origin-form always */
    o = put_s(o, m->method_s);
    *o++ = ' ';
    if (rewrite) {
        o = put_rewritten_path(o, route, m->path);
        if (m->query.p) {
            *o++ = '?';
            o = put_s(o, m->query);
        }
    } else if (m->absolute_form) {
        o = put_s(o, m->path);
        if (m->query.p) {
            *o++ = '?';
            o = put_s(o, m->query);
        }
    } else {
        o = put_s(o, m->target);
    }
    o = PUT_LIT(o, " HTTP/1.1\r\nHost: ");
    if (m->host.n) {
        o = put_s(o, m->host);
    } else {
        const fx_addr *a = &c->ups->targets[0];
        o = put(o, a->text, strlen(a->text));
    }
    o = PUT_LIT(o, "\r\n");
    for (size_t i = 0; i < m->nheaders; i++) {
        const fx_http_header *h = &m->headers[i];
        if (h->flags & (FX_HDR_HOP | FX_HDR_FRAMING | FX_HDR_HOST | FX_HDR_EXPECT | FX_HDR_XFF |
                        FX_HDR_XFWD | FX_HDR_REQUEST_ID))
            continue;
        if (auth && (fx_authn_is_identity_header(c->cfg, h->name) ||
                     (drop_authorization && fx_slice_ieq_lit(h->name, "authorization"))))
            continue; /* a client never speaks for the gateway's identity headers */
        o = put_s(o, h->name);
        o = PUT_LIT(o, ": ");
        o = put_s(o, h->value);
        o = PUT_LIT(o, "\r\n");
    }
    o = PUT_LIT(o, "X-Forwarded-For: ");
    for (size_t i = 0; i < nxff; i++) {
        o = put_s(o, xff_prev[i]);
        o = PUT_LIT(o, ", ");
    }
    o = put(o, c->client_ip, strlen(c->client_ip));
    if (c->sock->ssl)
        o = PUT_LIT(o, "\r\nX-Forwarded-Proto: https\r\n");
    else
        o = PUT_LIT(o, "\r\nX-Forwarded-Proto: http\r\n");
    if (m->host.n) {
        o = PUT_LIT(o, "X-Forwarded-Host: ");
        o = put_s(o, m->host);
        o = PUT_LIT(o, "\r\n");
    }
    o = PUT_LIT(o, "X-Request-Id: ");
    o = put_s(o, c->request_id);
    o = PUT_LIT(o, "\r\n");
    for (size_t i = 0; i < nfwd; i++) {
        if (!fwd[i].p)
            continue;
        o = put(o, auth->forward[i].header, strlen(auth->forward[i].header));
        o = PUT_LIT(o, ": ");
        o = put_s(o, fwd[i]);
        o = PUT_LIT(o, "\r\n");
    }
    if (m->upgrade) {
        for (size_t i = 0; i < m->nheaders; i++) {
            const fx_http_header *h = &m->headers[i];
            if (h->flags & FX_HDR_UPGRADE) {
                o = PUT_LIT(o, "Upgrade: ");
                o = put_s(o, h->value);
                o = PUT_LIT(o, "\r\n");
                break;
            }
        }
        o = PUT_LIT(o, "Connection: upgrade\r\n");
    }
    if (m->body == FX_BODY_LENGTH) {
        o = PUT_LIT(o, "Content-Length: ");
        o = put_u64(o, m->content_length);
        o = PUT_LIT(o, "\r\n");
    } else if (m->body == FX_BODY_CHUNKED) {
        o = PUT_LIT(o, "Transfer-Encoding: chunked\r\n");
    } else if (m->method == HTTP_POST || m->method == HTTP_PUT || m->method == HTTP_PATCH) {
        o = PUT_LIT(o, "Content-Length: 0\r\n");
    }
    o = PUT_LIT(o, "\r\n");
    c->up_head = start;
    c->up_head_len = (size_t)(o - start);
    return 0;
}

static int reattempt(fx_conn *c, int reason, int status, const char *what);

/* Passive outlier detection (health.h): how the exchange with the current target went. */
static void note_outcome(fx_conn *c, int ok)
{
    if (c->up)
        fx_pool_outcome(c->up->pool, c->up->target, ok);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    fx_conn *c = arg;
    c->upstream_error = "connect_timeout";
    fx_log(FX_LOG_WARN, "upstream %s: connect to %s timed out", c->ups->name,
           c->ups->targets[c->up ? c->up->target : 0].text);
    if (reattempt(c, FX_RETRY_R_CONNECT, 0, "connect timed out"))
        return;
    note_outcome(c, 0);
    reject(c, 504, "upstream connect timed out", 0);
}

static void set_response_timeout(fx_conn *c)
{
    fx_sock_set_read_timeout(c->up->sock, c->ups->timeout_ms);
}

/* routes[].shadow: a copy of the head and the staged body (only a whole one) to the shadow upstream,
 * before the stage moves to the primary. Nothing here waits for the shadow. */
static void shadow_begin(fx_conn *c)
{
    c->sh_decided = 1;
    if (c->match.route && c->match.route->shadow)
        c->sh = fx_shadow_start(c->w, c->cfg, c->match.route, &c->req, c->up_head, c->up_head_len, c->stage,
                                c->req_done, c->request_id);
}

/* Connects (or reuses) and queues the head. Returns -1 when the request was already answered. */
static int upstream_connect(fx_conn *c)
{
    const char *why = "no upstream pool";
    if (!c->up_head && serialize_upstream_head(c) < 0) {
        reject(c, 503, "out of memory", 0);
        return -1;
    }
    if (!c->attempt_noted && c->ups) {
        c->attempt_noted = 1;
        fx_stats_upstream_request(&c->w->stats, c->cfg, (int)(c->ups - c->cfg->upstreams), fx_mono_us());
    }
    int refused = 502;
    c->up = c->pool ? fx_pool_acquire(c->pool, &why, &refused) : NULL;
    if (!c->up && refused == 503) {
        /* the circuit breaker (upstream.h): at once, never after a timeout; a retry or the fallback may
         * still take it */
        c->upstream_error = "overloaded";
        c->overloaded = 1; /* the same full upstream would refuse a retry too: only the fallback */
        if (reattempt(c, FX_RETRY_R_CONNECT, 0, why))
            return 0;
        reject(c, 503, why, 0);
        return -1;
    }
    if (!c->up) {
        c->upstream_error = "connect";
        if (c->pool && reattempt(c, FX_RETRY_R_CONNECT, 0, why))
            return 0;
        reject(c, 502, why, 0);
        return -1;
    }
    c->overloaded = 0;
    if (!c->sh_decided)
        shadow_begin(c); /* the copy goes with the first attempt that got a connection */
    fx_sock_setcb(c->up->sock, on_up_read, on_up_write, on_up_event, c);
    c->up->sock->low_water = FX_LOW_WATER;
    fx_sock_read_enable(c->up->sock);
    if (!c->up->connected && !c->up->reused) {
        if (!c->up_timer)
            c->up_timer = evtimer_new(c->w->base, on_connect_timeout, c);
        uint64_t ms = c->ups->connect_timeout_ms;
        struct timeval tv = fx_ms_tv(ms);
        evtimer_add(c->up_timer, &tv);
    } else if (c->req_done || c->req.body == FX_BODY_NONE) {
        set_response_timeout(c);
    }
    struct evbuffer *out = c->up->sock->out;
    evbuffer_add(out, c->up_head, c->up_head_len);
    c->body_kept = 0;
    if (c->stage && evbuffer_get_length(c->stage)) {
        c->req_body_started = 1;
        /* a whole body is sent by reference and stays in the stage for a retry or the fallback */
        if (c->req_done && evbuffer_add_buffer_reference(out, c->stage) == 0)
            c->body_kept = 1;
        else
            evbuffer_add_buffer(out, c->stage);
    }
    if (!c->req_done)
        pump_request_body(c); /* flushes */
    else
        flush_up(c);
    return 0;
}

/*
 * Feeds what `in` holds (at most 8 chain pieces per call) to a chunked decoder
 * and drains what it consumed into *consumed. Returns 0, or the decoder's
 * negative FX_CHUNKED_* code with *why set (nothing drained).
 */
static long feed_chunked(fx_http_chunked *ch, struct evbuffer *in, size_t *consumed,
                         const char **why)
{
    struct evbuffer_iovec vec[8];
    int nv = evbuffer_peek(in, -1, NULL, vec, 8);
    if (nv > 8)
        nv = 8;
    size_t used = 0;
    for (int i = 0; i < nv && !ch->done; i++) {
        long r = fx_http_chunked_feed(ch, vec[i].iov_base, vec[i].iov_len, why);
        if (r < 0) {
            *consumed = used;
            return r;
        }
        used += (size_t)r;
    }
    evbuffer_drain(in, used);
    *consumed = used;
    return 0;
}

/* ---- request body: client ▶ upstream --------------------------------------------------- */

static struct evbuffer *body_sink(fx_conn *c)
{
    if (c->up)
        return c->up->sock->out;
    if (!c->stage)
        c->stage = evbuffer_new();
    return c->stage;
}

static int chunk_to_upstream(void *ctx, const char *p, size_t n)
{
    fx_conn *c = ctx;
    struct evbuffer *out = body_sink(c);
    if (!out)
        return -1;
    if (ev_capturing_request(c))
        ev_capture(c, p, n);
    char hdr[24];
    int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
    evbuffer_add(out, hdr, (size_t)hl);
    evbuffer_add(out, p, n);
    evbuffer_add(out, "\r\n", 2);
    return 0;
}

static void request_body_done(fx_conn *c)
{
    c->req_done = 1;
    if (c->up && (c->up->connected || c->up->reused))
        set_response_timeout(c);
    /* a pipelined next request waits in the input buffer until this response is done */
}

static void pump_request_body(fx_conn *c)
{
    if (c->req_done || c->resp_done)
        return; /* after the response, body bytes have nowhere to go (the connection closes) */
    struct evbuffer *in = c->sock->in;
    struct evbuffer *out = body_sink(c);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0 || !out)
        return;
    if (c->up)
        c->req_body_started = 1;
    if (c->req.body == FX_BODY_LENGTH) {
        size_t n = avail < c->req_left ? avail : (size_t)c->req_left;
        if (ev_capturing_request(c))
            ev_capture_buf(c, in, n);
        evbuffer_remove_buffer(in, out, n);
        c->req_left -= n;
        c->bytes_in += n;
        if (c->req_left == 0)
            request_body_done(c);
    } else {
        if (!c->req_chunked.parser.settings)
            fx_http_chunked_init(&c->req_chunked, 1, limits(c)->max_body_bytes, chunk_to_upstream,
                                 c);
        size_t consumed = 0;
        const char *why = NULL;
        long r = feed_chunked(&c->req_chunked, in, &consumed, &why);
        c->bytes_in += consumed;
        if (r < 0) {
            evbuffer_drain(in, evbuffer_get_length(in));
            reject(c, r == FX_CHUNKED_TOO_BIG ? 413 : 400, why, 0);
            return;
        }
        if (c->req_chunked.done) {
            evbuffer_add(out, "0\r\n\r\n", 5);
            request_body_done(c);
        }
    }
    if (!c->up) {
        if (c->req_done || evbuffer_get_length(out) >= FX_STAGE_BYTES)
            upstream_connect(c);
        return;
    }
    flush_up(c);
    if (!c->req_done && evbuffer_get_length(out) > FX_HIGH_WATER) {
        fx_sock_read_disable(c->sock);
        c->client_paused = 1;
    }
}

/* ---- response: upstream ▶ client -------------------------------------------------------- */

static void upstream_failed(fx_conn *c, int status, const char *detail, const char *kind);

static int resp_chunk_to_client(void *ctx, const char *p, size_t n)
{
    fx_conn *c = ctx;
    struct evbuffer *out = client_out(c);
    if (ev_capturing_response(c))
        ev_capture(c, p, n);
    if (c->sh)
        fx_shadow_primary_body(c->sh, p, n);
    if (c->resp_out == OUT_CHUNKED) {
        char hdr[24];
        int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
        evbuffer_add(out, hdr, (size_t)hl);
        evbuffer_add(out, p, n);
        evbuffer_add(out, "\r\n", 2);
        c->bytes_out += (uint64_t)hl + n + 2;
    } else {
        evbuffer_add(out, p, n);
        c->bytes_out += n;
    }
    return 0;
}

static void response_complete(fx_conn *c)
{
    if (c->resp_out == OUT_CHUNKED) {
        evbuffer_add(client_out(c), "0\r\n\r\n", 5);
        c->bytes_out += 5;
    }
    c->resp_done = 1;
    if (c->sh) {
        fx_shadow_primary_done(c->sh); /* both answers in: the worker compares, the client does not wait */
        c->sh = NULL;
    }
    if (c->ev_state == EV_CAPTURE)
        ev_emit(c, FX_CE_DATA_COMPLETE);
    if (holding(c)) {
        /* the upstream is done: back to its pool now; the client waits for the event's ticket */
        if (c->req_done) {
            release_upstream(c);
        } else {
            /* answered before the request body was read: the rest of the body is not forwarded
             * anywhere (never to a new upstream connection), and this connection ends with the answer */
            if (c->up) {
                fx_upconn_free(c->up);
                c->up = NULL;
            }
            c->close_after = 1;
            fx_sock_read_disable(c->sock);
        }
        c->ev_finish = 1;
        return;
    }
    finish_request(c);
}

static int write_response_head(fx_conn *c)
{
    const fx_http_msg *r = &c->resp;
    const fx_http_msg *q = &c->req;
    int pass_cl = q->method == HTTP_HEAD || r->status == 304;
    size_t size = 256 + r->reason.n + c->request_id.n;
    for (size_t i = 0; i < r->nheaders; i++)
        size += r->headers[i].name.n + r->headers[i].value.n + 4;
    char *o = fx_arena_alloc(&c->arena, size), *start = o;
    if (!o)
        return -1;

    /* framing towards the client */
    int keep = q->keep_alive && !c->w->draining && !c->close_after;
    switch (r->body) {
    case FX_BODY_LENGTH:
        c->resp_out = OUT_LENGTH;
        break;
    case FX_BODY_CHUNKED:
    case FX_BODY_EOF:
        c->resp_out = q->http_minor == 1 ? OUT_CHUNKED : OUT_CLOSE;
        if (c->resp_out == OUT_CLOSE)
            keep = 0;
        break;
    default:
        c->resp_out = OUT_NONE;
    }
    if (r->upgrade)
        keep = 0;

    o = PUT_LIT(o, "HTTP/1.1 ");
    o = put_u64(o, (uint64_t)r->status);
    *o++ = ' ';
    o = put_s(o, r->reason);
    o = PUT_LIT(o, "\r\n");
    for (size_t i = 0; i < r->nheaders; i++) {
        const fx_http_header *h = &r->headers[i];
        if (h->flags & FX_HDR_FRAMING) {
            if (!(pass_cl && h->name.n == 14))
                continue;
        } else if (h->flags & (FX_HDR_HOP | FX_HDR_REQUEST_ID)) {
            continue;
        }
        o = put_s(o, h->name);
        o = PUT_LIT(o, ": ");
        o = put_s(o, h->value);
        o = PUT_LIT(o, "\r\n");
    }
    if (c->resp_out == OUT_LENGTH) {
        o = PUT_LIT(o, "Content-Length: ");
        o = put_u64(o, r->content_length);
        o = PUT_LIT(o, "\r\n");
    } else if (c->resp_out == OUT_CHUNKED) {
        o = PUT_LIT(o, "Transfer-Encoding: chunked\r\n");
    } else if (c->resp_out == OUT_NONE && !pass_cl && r->status >= 200 && r->status != 204 &&
               !r->upgrade) {
        o = PUT_LIT(o, "Content-Length: 0\r\n");
    }
    o = PUT_LIT(o, "X-Request-Id: ");
    o = put_s(o, c->request_id);
    o = PUT_LIT(o, "\r\n");
    if (r->upgrade) {
        for (size_t i = 0; i < r->nheaders; i++)
            if (r->headers[i].flags & FX_HDR_UPGRADE) {
                o = PUT_LIT(o, "Upgrade: ");
                o = put_s(o, r->headers[i].value);
                o = PUT_LIT(o, "\r\n");
                break;
            }
        o = PUT_LIT(o, "Connection: upgrade\r\n");
    } else if (!keep) {
        o = PUT_LIT(o, "Connection: close\r\n");
    } else if (q->http_minor == 0) {
        o = PUT_LIT(o, "Connection: keep-alive\r\n");
    }
    o = PUT_LIT(o, "\r\n");
    size_t n = (size_t)(o - start);
    evbuffer_add(client_out(c), start, n);
    c->bytes_out += n;
    c->status = r->status;
    c->resp_started = 1;
    if (!keep)
        c->close_after = 1;
    return 0;
}

static void start_tunnel(fx_conn *c);

/* Returns 1 when the request ended (the connection may be gone): touch nothing after. */
static int pump_response(fx_conn *c)
{
    if (c->resp_done)
        return 0; /* complete, waiting for the event's ticket: later bytes are not ours */
    struct evbuffer *in = c->up->sock->in;
    char detail[256];
    while (!c->resp_head_done) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        c->resp_any_byte = 1;
        size_t want = len < FX_MAX_RESPONSE_HEAD ? len : FX_MAX_RESPONSE_HEAD;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        size_t head_len = 0, skip = 0;
        fx_http_error err;
        int rc = fx_http_scan_head(buf, want, FX_MAX_RESPONSE_HEAD, 0, 0, &head_len, &skip, &err);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            snprintf(detail, sizeof(detail), "malformed upstream response: %s", err.detail);
            upstream_failed(c, 502, detail, "malformed");
            return 1;
        }
        char *head = fx_arena_memdup(&c->arena, buf, head_len);
        evbuffer_drain(in, head_len);
        if (!head || fx_http_parse_response(&c->arena, head, head_len, c->req.method,
                                            c->req.upgrade, &c->resp, &err) < 0) {
            snprintf(detail, sizeof(detail), "malformed upstream response: %s",
                     head ? err.detail : "out of memory");
            upstream_failed(c, 502, detail, "malformed");
            return 1;
        }
        if (c->resp.status < 200 && c->resp.status != 101)
            continue; /* interim responses (100, 103) are not passed on */
        if (c->resp.status >= 500 && c->resp.status <= 599 &&
            reattempt(c, FX_RETRY_R_5XX, c->resp.status, "answered 5xx"))
            return 1; /* its body is not read: that connection is closed */
        c->resp_head_done = 1;
        note_outcome(c, c->resp.status < 500);
        ev_response_head(c);
        if (write_response_head(c) < 0) {
            upstream_failed(c, 502, "out of memory", "internal");
            return 1;
        }
        if (c->sh)
            fx_shadow_primary_head(c->sh, &c->resp);
        if (c->resp.upgrade) {
            start_tunnel(c);
            return 1;
        }
        if (c->resp_out == OUT_LENGTH)
            c->resp_left = c->resp.content_length;
        else if (c->resp.body == FX_BODY_CHUNKED)
            fx_http_chunked_init(&c->resp_chunked, 0, 0, resp_chunk_to_client, c);
        if (c->resp.body == FX_BODY_NONE) {
            response_complete(c);
            return 1;
        }
    }

    struct evbuffer *out = client_out(c);
    size_t avail = evbuffer_get_length(in);
    if (avail) {
        switch (c->resp.body) {
        case FX_BODY_LENGTH: {
            size_t n = avail < c->resp_left ? avail : (size_t)c->resp_left;
            if (ev_capturing_response(c))
                ev_capture_buf(c, in, n);
            if (c->sh)
                fx_shadow_primary_body_buf(c->sh, in, n);
            evbuffer_remove_buffer(in, out, n);
            c->resp_left -= n;
            c->bytes_out += n;
            if (c->resp_left == 0) {
                response_complete(c);
                return 1;
            }
            break;
        }
        case FX_BODY_CHUNKED: {
            size_t consumed = 0;
            const char *why = NULL;
            if (feed_chunked(&c->resp_chunked, in, &consumed, &why) < 0) {
                snprintf(detail, sizeof(detail), "malformed upstream chunked body: %s", why);
                upstream_failed(c, 502, detail, "malformed");
                return 1;
            }
            if (c->resp_chunked.done) {
                response_complete(c);
                return 1;
            }
            break;
        }
        case FX_BODY_EOF:
            if (c->resp_out == OUT_CHUNKED) {
                struct evbuffer_iovec vec[8];
                int nv = evbuffer_peek(in, -1, NULL, vec, 8);
                if (nv > 8)
                    nv = 8;
                size_t consumed = 0;
                for (int i = 0; i < nv; i++) {
                    resp_chunk_to_client(c, vec[i].iov_base, vec[i].iov_len);
                    consumed += vec[i].iov_len;
                }
                evbuffer_drain(in, consumed);
            } else {
                if (ev_capturing_response(c))
                    ev_capture_buf(c, in, avail);
                if (c->sh)
                    fx_shadow_primary_body_buf(c->sh, in, avail);
                c->bytes_out += avail;
                evbuffer_add_buffer(out, in);
            }
            break;
        default:
            break;
        }
    }
    /* a body too large for the event's data: the event is complete without it */
    if (ev_capturing_response(c) && c->ev_over)
        ev_emit(c, FX_CE_DATA_TOO_LARGE);
    flush_client(c);
    /* while capturing, the held buffer is bounded by events.max_data_bytes instead */
    if (c->ev_state != EV_CAPTURE && evbuffer_get_length(out) > FX_HIGH_WATER && !c->up_paused) {
        fx_sock_read_disable(c->up->sock);
        c->up_paused = 1;
    }
    return 0;
}

/* ---- finishing a request ------------------------------------------------------------------ */

static void release_upstream(fx_conn *c)
{
    if (!c->up)
        return;
    fx_upconn *u = c->up;
    c->up = NULL;
    if (c->up_timer)
        evtimer_del(c->up_timer);
    int reusable = c->resp_done && c->req_done && c->resp_head_done && c->resp.keep_alive &&
                   !c->resp.upgrade && evbuffer_get_length(u->sock->in) == 0 &&
                   evbuffer_get_length(u->sock->out) == 0 && !c->w->draining;
    if (reusable) {
        u->connected = 1;
        fx_pool_put(u->pool, u);
    } else {
        fx_upconn_free(u);
    }
}

static void access_log(fx_conn *c)
{
    const fx_access_log *al = &c->w->access;
    if (al->fd < 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048], path[700], method[64];
    size_t pl = fx_json_escape(path, sizeof(path), c->req.path.p ? c->req.path.p : "",
                               c->req.path.n > 512 ? 512 : c->req.path.n);
    if (pl > sizeof(path))
        pl = 0;
    size_t ml = fx_json_escape(method, sizeof(method), c->req.method_s.p ? c->req.method_s.p : "",
                               c->req.method_s.n > 20 ? 20 : c->req.method_s.n);
    if (ml > sizeof(method))
        ml = 0;
    const char *route = c->match.route ? c->match.route->name : "";
    const char *ups = c->ups ? c->ups->name : "";
    uint64_t dur = fx_mono_us() - c->t0_us;
    char subject[300] = "", subj[128];
    if (c->claims) {
        int sl = fx_jwt_claim_render(c->claims, "sub", subj, sizeof(subj));
        if (sl > 0) {
            size_t el = fx_json_escape(subject + 12, sizeof(subject) - 14, subj, (size_t)sl);
            if (el <= sizeof(subject) - 14) {
                memcpy(subject, ",\"subject\":\"", 12);
                subject[12 + el] = '"';
                subject[13 + el] = '\0';
            } else {
                subject[0] = '\0';
            }
        }
    }
    char again[96] = ""; /* retries and fallback: "upstream" is the one that answered */
    int agl = c->tries ? snprintf(again, sizeof(again), ",\"retries\":%u", c->tries) : 0;
    if (c->fell_back && agl >= 0 && (size_t)agl < sizeof(again))
        snprintf(again + agl, sizeof(again) - (size_t)agl, ",\"fallback\":true,\"fallback_reason\":\"%s\"",
                 fx_retry_reason_names[c->fb_reason]);
    char tls[128] = ""; /* names from OpenSSL's tables: no escaping needed */
    if (c->sock && c->sock->ssl)
        snprintf(tls, sizeof(tls), ",\"tls_version\":\"%s\",\"tls_cipher\":\"%s\"", fx_tls_version(c->sock->ssl),
                 fx_tls_cipher(c->sock->ssl));
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"request_id\":\"%.*s\","
                     "\"client\":\"%s\",\"method\":\"%.*s\",\"path\":\"%.*s\",\"route\":\"%s\","
                     "\"upstream\":\"%s\",\"status\":%d,\"bytes_in\":%" PRIu64
                     ",\"bytes_out\":%" PRIu64 ",\"duration_us\":%" PRIu64 "%s%s%s%s%s%s%s%s%s%s%s%s%s%s}\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, (int)c->request_id.n, c->request_id.p,
                     c->client_ip, (int)ml, method, (int)pl, path, route, ups, c->status,
                     c->bytes_in, c->bytes_out, dur,
                     c->upstream_error ? ",\"upstream_error\":\"" : "",
                     c->upstream_error ? c->upstream_error : "", c->upstream_error ? "\"" : "",
                     subject, c->auth_reason ? ",\"auth_error\":\"" : "",
                     c->auth_reason ? c->auth_reason : "", c->auth_reason ? "\"" : "",
                     c->authz ? ",\"authz\":\"" : "", c->authz ? c->authz : "",
                     c->authz ? "\",\"decision_id\":\"" : "", c->authz ? c->decision_id : "",
                     c->authz ? "\"" : "", again, tls);
    if (n > 0 && (size_t)n < sizeof(line))
        fx_access_log_write(al, line, (size_t)n);
}

/*
 * The request's line in this worker's metrics (stats.h), beside its access log line. The upstream
 * is the one it was forwarded to (its head was serialized for it), -1 when the gateway answered
 * before forwarding (no route, 401, 403, ...).
 */
static void record_request(fx_conn *c)
{
    uint64_t now = fx_mono_us();
    const fx_config *cfg = c->cfg;
    fx_stats_req r = {.cfg = cfg, .route = -1, .upstream = -1, .status = c->status,
                      .duration_us = now - c->t0_us, .upstream_error = c->upstream_error};
    r.fell_back = c->fell_back;
    r.fallback_reason = c->fb_reason;
    if (cfg && c->match.route) {
        ptrdiff_t i = c->match.route - cfg->routes;
        r.route = i >= 0 && (size_t)i < cfg->nroutes ? (int)i : -1;
    }
    if (cfg && r.route >= 0 && c->ups && c->up_head) {
        ptrdiff_t i = c->ups - cfg->upstreams;
        r.upstream = i >= 0 && (size_t)i < cfg->nupstreams ? (int)i : -1;
    }
    fx_stats_record(&c->w->stats, &r, now);
}

static void close_when_flushed(fx_conn *c)
{
    c->state = CS_CLOSING;
    fx_sock_read_disable(c->sock);
    c->sock->low_water = 0;
    flush_client(c);
    if (evbuffer_get_length(client_out(c)) == 0 || c->sock->failed) {
        conn_free(c);
        return;
    }
    /* a client that never reads its last response must not hold the connection forever */
    evtimer_del(c->timer);
    arm_timer(c, 5000);
}

static void finish_request(fx_conn *c)
{
    if (c->status) {
        access_log(c);
        record_request(c);
    }
    if (!c->req_done && c->state == CS_PROXY)
        c->close_after = 1; /* unread body left on the wire: this connection is done */
    release_upstream(c);
    int close = c->close_after || c->w->draining;
    end_request(c);
    if (close) {
        close_when_flushed(c);
        return;
    }
    c->state = CS_READ_HEAD;
    c->served = 1;
    evtimer_del(c->timer);
    c->last_activity_ms = fx_mono_ms();
    flush_client(c);
    fx_sock_read_enable(c->sock);
    if (evbuffer_get_length(c->sock->in) > 0) {
        /* a pipelined request is waiting: handle it from the loop, not recursively */
        fx_sock_kick(c->sock);
    }
    /* idle keep-alive wait; the config is not held while idle (the worker's own
     * snapshot is read here, on its thread, without a reference) */
    arm_timer(c, c->w->cfg->limits.idle_timeout_ms);
}

/* Upstream gave up before or during the response. */
static void upstream_failed(fx_conn *c, int status, const char *detail, const char *kind)
{
    if (!c->upstream_error)
        c->upstream_error = kind;
    if (strcmp(kind, "internal") != 0)
        note_outcome(c, 0);
    if (c->up)
        fx_log(FX_LOG_WARN, "upstream %s (%s): %s [request %.*s]", c->ups->name,
               c->ups->targets[c->up->target].text, detail, (int)c->request_id.n,
               c->request_id.p);
    if (c->up) {
        fx_upconn_free(c->up);
        c->up = NULL;
    }
    if (c->resp_started) {
        /* mid-response: the only honest signal left is closing the connection (over TLS without
         * close_notify, so a client reading to the end cannot take it for a complete response) */
        c->sock->abortive = 1;
        c->status = c->status ? c->status : status;
        access_log(c);
        record_request(c);
        end_request(c);
        conn_free(c);
        return;
    }
    reject(c, status, detail, 0);
}

/* ---- tunnels (after 101) -------------------------------------------------------------------- */

static void tunnel_relay(fx_conn *c, fx_sock *from, fx_sock *to)
{
    size_t n = evbuffer_get_length(from->in);
    if (n) {
        if (from == c->sock)
            c->bytes_in += n;
        else
            c->bytes_out += n;
        evbuffer_add_buffer(to->out, from->in);
        fx_sock_flush(to);
    }
    c->last_activity_ms = fx_mono_ms();
    if (evbuffer_get_length(to->out) > FX_HIGH_WATER)
        fx_sock_read_disable(from);
}

static void on_tunnel_up_read(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    tunnel_relay(c, s, c->sock);
}

static void on_tunnel_up_write(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    if (c->state == CS_TUNNEL)
        fx_sock_read_enable(c->sock);
}

static void tunnel_end(fx_conn *c)
{
    access_log(c);
    if (c->up) {
        /* let what the client sent last reach the upstream: shut the socket down politely */
        fx_upconn_free(c->up);
        c->up = NULL;
    }
    end_request(c);
    close_when_flushed(c);
}

static void on_tunnel_up_event(fx_sock *s, int what, void *arg)
{
    fx_conn *c = arg;
    if (what & (FX_SOCK_EOF | FX_SOCK_ERROR | FX_SOCK_TIMEOUT)) {
        tunnel_relay(c, s, c->sock);
        tunnel_end(c);
    }
}

static void start_tunnel(fx_conn *c)
{
    c->state = CS_TUNNEL;
    fx_sock_setcb(c->up->sock, on_tunnel_up_read, on_tunnel_up_write, on_tunnel_up_event, c);
    fx_sock_set_read_timeout(c->up->sock, 0);
    fx_sock_read_enable(c->up->sock);
    fx_sock_read_enable(c->sock);
    flush_client(c); /* the 101 head */
    record_request(c); /* the response is the 101: a tunnel's life is not the request's latency */
    /* anything either side sent early */
    tunnel_relay(c, c->up->sock, c->sock);
    tunnel_relay(c, c->sock, c->up->sock);
}

/* ---- connection events ------------------------------------------------------------------------ */

static void client_process(fx_conn *c)
{
    switch (c->state) {
    case CS_READ_HEAD:
        if (evbuffer_get_length(client_out(c)) > FX_HIGH_WATER) {
            /* a client pipelining without reading: wait until it drains */
            fx_sock_read_disable(c->sock);
            c->client_paused = 1;
            return;
        }
        read_head(c);
        break;
    case CS_PROXY:
        c->last_activity_ms = fx_mono_ms();
        if (c->req_done) {
            /* pipelined bytes wait for this response; bound what we take in meanwhile */
            if (evbuffer_get_length(c->sock->in) > FX_HIGH_WATER) {
                fx_sock_read_disable(c->sock);
                c->client_paused = 1;
            }
            break;
        }
        pump_request_body(c);
        break;
    case CS_TUNNEL:
        tunnel_relay(c, c->sock, c->up->sock);
        break;
    default:
        /* closing: discard */
        evbuffer_drain(c->sock->in, evbuffer_get_length(c->sock->in));
    }
}

static void count_handshake(fx_conn *c);

static void on_client_read(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    if (!c->tls_counted && s->ssl)
        count_handshake(c); /* the handshake is done: sock.c reads nothing for us before */
    client_process(c);
}

static void on_client_write(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    c->last_activity_ms = fx_mono_ms();
    switch (c->state) {
    case CS_CLOSING:
        if (evbuffer_get_length(client_out(c)) == 0)
            conn_free(c);
        return;
    case CS_PROXY:
        if (c->up_paused && c->up && !holding(c)) {
            c->up_paused = 0;
            fx_sock_read_enable(c->up->sock);
        }
        return;
    case CS_TUNNEL:
        if (c->up)
            fx_sock_read_enable(c->up->sock);
        return;
    case CS_READ_HEAD:
        if (c->client_paused) {
            c->client_paused = 0;
            fx_sock_read_enable(c->sock);
            fx_sock_kick(c->sock);
        }
        return;
    }
}

static void on_client_event(fx_sock *s, int what, void *arg)
{
    fx_conn *c = arg;
    if (!(what & (FX_SOCK_EOF | FX_SOCK_ERROR)))
        return;
    switch (c->state) {
    case CS_READ_HEAD:
        if (c->head_started && evbuffer_get_length(s->in) > 0 && c->cfg && !(what & FX_SOCK_ERROR)) {
            /* a half-closed client can still read our answer */
            c->bytes_in += evbuffer_get_length(s->in);
            evbuffer_drain(s->in, evbuffer_get_length(s->in));
            reject(c, 400, "connection closed before the request head was complete", 0);
            return;
        }
        end_request(c);
        conn_free(c);
        return;
    case CS_PROXY:
        if (c->req_done && (what & FX_SOCK_EOF) && !(what & FX_SOCK_ERROR)) {
            /* half-close after a complete request: still answer it, then close */
            c->close_after = 1;
            return;
        }
        c->status = c->resp_started ? c->status : 499; /* client closed request */
        access_log(c);
        record_request(c);
        end_request(c);
        conn_free(c);
        return;
    case CS_TUNNEL:
        if (c->up)
            tunnel_relay(c, c->sock, c->up->sock);
        access_log(c);
        end_request(c);
        conn_free(c);
        return;
    default:
        conn_free(c);
    }
}

static void on_up_read(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    c->last_activity_ms = fx_mono_ms();
    pump_response(c);
}

static void on_up_write(fx_sock *s, void *arg)
{
    fx_conn *c = arg;
    if (c->client_paused && c->state == CS_PROXY) {
        c->client_paused = 0;
        fx_sock_read_enable(c->sock);
        pump_request_body(c);
    }
}

static void retry_fresh(fx_conn *c)
{
    /* a kept-alive connection the upstream had already closed: one retry on a new one */
    fx_upconn_free(c->up);
    c->up = NULL;
    c->retried = 1;
    upstream_connect(c);
}

/* ---- retries and fallback (routes[].retries, upstreams.X.retries, routes[].fallback) ----------- */

/* A new attempt of the request: the failed connection (with whatever it sent) is dropped, the response
 * starts over, and the head (and a kept body) go out again — on the next target of the same pool, or
 * on `to`, the fallback's pool. */
static int attempt_again(fx_conn *c, fx_pool *to, const fx_upstream_conf *ups)
{
    note_outcome(c, 0);
    if (c->up) {
        fx_upconn_free(c->up); /* a 5xx's body is never read: closing is cheaper than an unbounded drain */
        c->up = NULL;
    }
    if (c->up_timer)
        evtimer_del(c->up_timer);
    memset(&c->resp, 0, sizeof(c->resp));
    memset(&c->resp_chunked, 0, sizeof(c->resp_chunked));
    c->resp_left = 0;
    c->resp_out = OUT_NONE;
    c->resp_head_done = c->resp_any_byte = c->up_paused = 0;
    c->upstream_error = NULL; /* the log and the metrics tell how the last attempt ended */
    if (to) {
        fx_pool_hold(to);
        if (c->pool)
            fx_pool_release(c->pool);
        c->pool = to;
        c->ups = ups;
        c->up_head = NULL;      /* re-made: without a client Host it names this upstream's target */
        c->attempt_noted = 0;   /* a first attempt for the fallback's budget */
    }
    upstream_connect(c);
    return 1;
}

/* The worker's pool of the upstream named like cfg's upstream `ui` (pools follow the worker's snapshot,
 * which a reload may have moved past the request's). */
static fx_pool *pool_named(fx_conn *c, int ui)
{
    if (c->cfg == c->w->cfg)
        return (size_t)ui < c->w->npools ? c->w->pools[ui] : NULL;
    const char *name = c->cfg->upstreams[ui].name;
    for (size_t i = 0; i < c->w->npools; i++)
        if (c->w->pools[i] && !strcmp(c->w->pools[i]->conf->name, name))
            /* the same targets too: c->ups (the request's config) indexes the pool's targets */
            return fx_pool_matches(c->w->pools[i], &c->cfg->upstreams[ui]) ? c->w->pools[i] : NULL;
    return NULL;
}

/*
 * An attempt failed (reason: enum fx_retry_reason; status: the 5xx) before anything of its response
 * reached the client. Retries first: the same upstream's next target, while the route's retries (else
 * the upstream's) list the reason, attempts remain and the upstream's budget (retry.h) allows; then
 * the route's fallback, once. Returns 1 when a new attempt was made (which may itself have answered
 * the request: touch nothing after), 0 when the caller fails the request as it would have.
 *
 * Only a request that can be sent again whole: no body, or a body that was complete in the stage
 * when the upstream was contacted (a streamed body is gone). Retries: idempotent methods only (GET,
 * HEAD, OPTIONS, PUT, DELETE: RFC 9110 §9.2.2; TRACE is left out, a gateway has no reason to repeat
 * it). The fallback: idempotent methods, and other methods only after a connect failure, when not
 * a byte of the request reached the primary.
 */
static int reattempt(fx_conn *c, int reason, int status, const char *what)
{
    const fx_route_conf *r = c->match.route;
    if (!r || !c->cfg || !c->ups || c->state != CS_PROXY || c->resp_started || c->resp_done || !c->req_done)
        return 0;
    if (c->req.body != FX_BODY_NONE && !c->body_kept)
        return 0;
    int idem = fx_http_method_idempotent(c->req.method);
    const char *target = c->up ? c->ups->targets[c->up->target].text : "its next target";
    if (idem && !c->fell_back && !c->overloaded) {
        const fx_retries_conf *rc = r->retries ? r->retries : c->ups->retries;
        if (rc && c->tries < rc->attempts && fx_retry_wants(rc, reason, status)) {
            if (fx_stats_retry(&c->w->stats, c->cfg, (int)(c->ups - c->cfg->upstreams), reason, fx_mono_us())) {
                c->tries++;
                fx_log(FX_LOG_WARN, "upstream %s (%s) %s; retry %u of %u on its next target [request %.*s]",
                       c->ups->name, target, what, c->tries, rc->attempts, (int)c->request_id.n, c->request_id.p);
                return attempt_again(c, NULL, NULL);
            }
            fx_log(FX_LOG_WARN, "upstream %s (%s) %s; not retried: its retry budget (%d%% of the requests of the "
                                "last %d s, at least %d) is spent [request %.*s]",
                   c->ups->name, target, what, FX_RETRY_BUDGET_PERCENT, FX_RETRY_BUDGET_SECONDS,
                   FX_RETRY_BUDGET_MIN, (int)c->request_id.n, c->request_id.p);
        }
    }
    if (r->fallback < 0 || (size_t)r->fallback >= c->cfg->nupstreams || c->fell_back ||
        !(idem || reason == FX_RETRY_R_CONNECT))
        return 0;
    const fx_upstream_conf *fb = &c->cfg->upstreams[r->fallback];
    fx_pool *to = fb != c->ups ? pool_named(c, r->fallback) : NULL; /* a split's side may be the fallback */
    if (!to)
        return 0;
    c->fell_back = 1;
    c->fb_reason = reason;
    fx_log(FX_LOG_WARN, "upstream %s (%s) %s; route %s falls back to upstream %s [request %.*s]", c->ups->name,
           target, what, r->name, fb->name, (int)c->request_id.n, c->request_id.p);
    return attempt_again(c, to, fb);
}

static void on_up_event(fx_sock *s, int what, void *arg)
{
    fx_conn *c = arg;
    if (c->resp_done && !(what & FX_SOCK_CONNECTED)) {
        /* the response is complete (the client waits for its event): this connection is not reusable */
        fx_upconn_free(c->up);
        c->up = NULL;
        return;
    }
    if (what & FX_SOCK_CONNECTED) {
        fx_upconn_connected(c->up);
        if (c->up_timer)
            evtimer_del(c->up_timer);
        if (c->req_done)
            set_response_timeout(c);
        return;
    }
    if (what & FX_SOCK_TIMEOUT) {
        if (!c->resp_head_done && reattempt(c, FX_RETRY_R_TIMEOUT, 0, "did not respond within upstreams.timeout"))
            return;
        c->upstream_error = "timeout";
        upstream_failed(c, 504, "upstream did not respond within upstreams.timeout", "timeout");
        return;
    }
    if (what & FX_SOCK_EOF) {
        /* read what is left first */
        if (evbuffer_get_length(s->in) && pump_response(c))
            return;
        if (c->state != CS_PROXY || !c->up || c->up->sock != s)
            return;
        if (c->resp_head_done && c->resp.body == FX_BODY_EOF) {
            response_complete(c);
            return;
        }
        if (!c->resp_any_byte && c->up->reused && !c->retried && !c->req_body_started) {
            retry_fresh(c);
            return;
        }
        if (!c->resp_head_done && reattempt(c, FX_RETRY_R_RESET, 0, "closed the connection before the response"))
            return;
        upstream_failed(c, 502,
                        c->resp_head_done ? "upstream closed the connection mid-response"
                        : c->resp_any_byte ? "upstream closed the connection mid-head"
                                           : "upstream closed the connection without responding",
                        "reset");
        return;
    }
    if (what & FX_SOCK_ERROR) {
        int err = s->error;
        if (s->ssl && s->tls_error[0] && !c->up->connected) {
            /* the handshake failed: nothing of the request went out, so a retry or the fallback may take it */
            char detail[200];
            snprintf(detail, sizeof(detail), "TLS handshake with the upstream failed: %s", s->tls_error);
            if (!c->resp_head_done && reattempt(c, FX_RETRY_R_CONNECT, 0, detail))
                return;
            upstream_failed(c, 502, detail, "tls");
            return;
        }
        if (!c->resp_any_byte && c->up->reused && !c->retried && !c->req_body_started) {
            retry_fresh(c);
            return;
        }
        if (!c->resp_head_done && reattempt(c, c->up->connected ? FX_RETRY_R_RESET : FX_RETRY_R_CONNECT, 0,
                                            c->up->connected ? "reset the connection" : "refused the connection"))
            return;
        char detail[160];
        const char *kind = c->up->connected ? "reset" : "connect";
        snprintf(detail, sizeof(detail), "%s: %s",
                 c->up->connected ? "upstream connection failed" : "cannot connect to upstream",
                 s->tls_error[0] ? s->tls_error : strerror(err));
        upstream_failed(c, 502, detail, kind);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    fx_conn *c = arg;
    uint64_t now = fx_mono_ms();
    switch (c->state) {
    case CS_READ_HEAD:
        if (!c->head_started || evbuffer_get_length(c->sock->in) == 0) {
            /* idle keep-alive (or a connection that never spoke) */
            end_request(c);
            conn_free(c);
            return;
        }
        reject(c, 408, "request head not received within limits.header_timeout", 0);
        return;
    case CS_PROXY: {
        fx_config *cfg = c->cfg;
        uint64_t idle = cfg->limits.idle_timeout_ms;
        uint64_t since = now - c->last_activity_ms;
        if (c->ev_state == EV_WAIT) {
            uint64_t waited = now - c->ev_wait_ms;
            if (waited < idle)
                arm_timer(c, idle - waited);
            else
                ev_timed_out(c);
            return;
        }
        int waiting_upstream = c->req_done && !c->resp_started; /* upstream timers decide */
        if (waiting_upstream || since < idle) {
            arm_timer(c, waiting_upstream ? idle : idle - since);
            return;
        }
        if (!c->req_done) {
            reject(c, 408, "request body stalled for limits.idle_timeout", 0);
            return;
        }
        /* the client stopped reading the response */
        c->upstream_error = "client_stalled";
        access_log(c);
        record_request(c);
        end_request(c);
        conn_free(c);
        return;
    }
    case CS_TUNNEL: {
        uint64_t idle = c->w->cfg->limits.idle_timeout_ms;
        uint64_t since = now - c->last_activity_ms;
        if (since < idle) {
            arm_timer(c, idle - since);
            return;
        }
        tunnel_end(c);
        return;
    }
    default:
        conn_free(c);
    }
}

/* ---- accept, drain, free ------------------------------------------------------------------------ */

/* A client's TLS handshake is counted once, when it ends: at the first request (on_client_read) or here. */
static void count_handshake(fx_conn *c)
{
    if (!c->sock || !c->sock->ssl || c->tls_counted)
        return;
    c->tls_counted = 1;
    int r = SSL_is_init_finished(c->sock->ssl) ? FX_TLS_HS_OK
            : c->sock->tls_error[0]            ? FX_TLS_HS_FAILED
                                               : FX_TLS_HS_ABANDONED;
    if (r == FX_TLS_HS_FAILED)
        fx_log(FX_LOG_DEBUG, "TLS handshake with %s failed: %s", c->client_ip, c->sock->tls_error);
    atomic_fetch_add_explicit(&c->w->tls_handshakes[r], 1, memory_order_relaxed);
}

static void conn_free(fx_conn *c)
{
    fx_worker *w = c->w;
    count_handshake(c);
    end_request(c);
    if (c->up_timer)
        event_free(c->up_timer);
    if (c->timer)
        event_free(c->timer);
    fx_sock_free(c->sock);
    if (c->stage)
        evbuffer_free(c->stage);
    if (c->held)
        evbuffer_free(c->held);
    if (c->ev_body)
        evbuffer_free(c->ev_body);
    fx_arena_free(&c->arena);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_fetch_sub_explicit(&w->server->nconns, 1, memory_order_relaxed);
    free(c);
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void fx_proxy_accept(fx_worker *w, int fd, const struct sockaddr *sa, int salen, struct ssl_ctx_st *tls)
{
    fx_server *s = w->server;
    unsigned n = atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed) + 1;
    unsigned max = w->cfg->limits.max_connections;
    if (n > max || w->draining) {
        /* overload: a short answer, then close; never queue unbounded work */
        char rid[33], busy[512], body[256];
        fx_worker_request_id(w, rid);
        int n1 = snprintf(body, sizeof(body),
                          "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
                          "\"detail\":\"%s\",\"request_id\":\"%s\"}\n",
                          w->draining ? "the gateway is shutting down" : "limits.max_connections reached",
                          rid);
        int bl = snprintf(busy, sizeof(busy),
                          "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\n"
                          "Content-Type: application/problem+json\r\nContent-Length: %d\r\n"
                          "X-Request-Id: %s\r\nConnection: close\r\n\r\n%s",
                          fx_worker_date(w), n1, rid, body);
        if (!tls) { /* over TLS a plaintext answer would be noise: just close */
            ssize_t wr = send(fd, busy, (size_t)bl, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)wr;
        }
        evutil_closesocket(fd);
        atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
        return;
    }
    fx_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
        return;
    }
    c->w = w;
    fx_arena_init(&c->arena, 8192);
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->client_ip,
                  sizeof(c->client_ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->client_ip,
                  sizeof(c->client_ip));
    else
        strcpy(c->client_ip, "unix");
    (void)salen;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->sock = fx_sock_new(w->base, fd);
    if (c->sock && tls && fx_sock_tls(c->sock, fx_tls_server_ssl(tls), 1) < 0) {
        fx_sock_free(c->sock); /* closes fd */
        c->sock = NULL;
        fd = -1;
    }
    c->timer = evtimer_new(w->base, on_timer, c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    if (!c->sock || !c->timer) {
        if (!c->sock && fd >= 0)
            evutil_closesocket(fd);
        conn_free(c);
        return;
    }
    fx_sock_setcb(c->sock, on_client_read, on_client_write, on_client_event, c);
    c->sock->low_water = FX_LOW_WATER;
    c->state = CS_READ_HEAD;
    arm_timer(c, w->cfg->limits.header_timeout_ms);
}

void fx_proxy_drain(fx_worker *w)
{
    fx_conn *c = w->conns;
    while (c) {
        fx_conn *next = c->next;
        if (c->state == CS_READ_HEAD && !c->head_started)
            conn_free(c);
        else
            c->close_after = 1;
        c = next;
    }
}

void fx_proxy_close_all(fx_worker *w)
{
    while (w->conns)
        conn_free(w->conns);
}

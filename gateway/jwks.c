/*
 * jwks.c — remote JWK Sets, fetched on the main thread (see jwks.h).
 *
 *   fx_jwks_start / _configure   one source per distinct jwks_uri; a reload keeps
 *                                the sources whose URI stays (keys and schedule)
 *   on_timer → start_fetch       background refresh, retry with backoff, deferred
 *                                refetch; one fetch in flight per source
 *   on_bell                      a worker met an unknown kid: refetch, but at most
 *                                once per jwks_min_refresh since the last fetch
 *   on_response / on_deadline    the outcome: a new key set (published to the
 *                                workers), the same bytes again, or a failure that
 *                                keeps the last good set
 *   publish                      a new fx_jwks_table for the workers' mailboxes
 *   fx_jwks_ready / _metrics     what /readyz and /metrics (admin.c) say about it
 *
 * HTTP is libevent's evhttp client; https goes over bufferevent_openssl with
 * the peer verified against OpenSSL's default trust store (SSL_CERT_FILE /
 * SSL_CERT_DIR honoured), the host name (or IP) checked and SNI sent. Plain
 * http is accepted by the config only for loopback hosts. Redirects are not
 * followed; bodies are capped at 1 MiB; a fetch has 10 s.
 *
 * Connections are freed from a zero timer after their callback has returned:
 * evhttp still uses them while it calls us.
 */
#include "jwks.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define JWKS_MAX_BODY (1024 * 1024)
#define JWKS_MAX_HEADERS (64 * 1024)
#define JWKS_TIMEOUT_S 10
#define JWKS_RETRY_MIN_MS 1000

/* ficus_jwks_fetches_total{result}: the order of the counters in a source */
enum { FETCH_NEW, FETCH_UNCHANGED, FETCH_ERROR, FETCH_INVALID, FETCH_NRESULTS };
static const char *const result_names[FETCH_NRESULTS] = {"ok", "unchanged", "error", "invalid"};

typedef struct source source;
typedef struct fetch fetch;

/* One HTTP exchange. Owned by its source while in flight, then by the graveyard. */
struct fetch {
    fx_jwks *jw;
    source *src;                  /* NULL once detached (done or the source went away) */
    fetch *next;                  /* graveyard link */
    struct evhttp_connection *conn;
    struct event *timer;          /* the deadline; then the deferred free */
    int done;                     /* the request callback ran (or it was given up) */
    int have_err;
    enum evhttp_request_error err;
    long verify_err;              /* X509_V_OK, or the first certificate error */
    int verify_depth;
    char verify_subject[160];
};

struct source {
    source *next;
    fx_jwks *jw;
    char *uri;
    char *label;                  /* the first issuer naming it (logs) */
    int tls;
    char *host;                   /* for connect, SNI and the certificate check (no brackets) */
    char *authority;              /* for the Host header */
    unsigned port;
    char *path;                   /* path and query */
    uint64_t refresh_ms, min_refresh_ms;
    fx_jwt_keyset *keys;          /* the last good set, or NULL */
    uint64_t fingerprint;
    size_t nkeys;
    time_t last_ok;               /* wall clock of the last good fetch (ok or unchanged) */
    fetch *inflight;
    struct event *timer;
    uint64_t due_ms;              /* the timer's deadline (monotonic), 0 when not armed */
    uint64_t last_start_ms;       /* when the last fetch started, 0 = never */
    uint64_t last_end_ms;
    int wanted;                   /* an unknown kid asked for a refetch not started yet */
    unsigned failures;            /* in a row */
    unsigned long counts[FETCH_NRESULTS];
};

struct fx_jwks {
    fx_jwks_bell bell;
    struct event_base *base;
    struct event *bell_ev;
    struct evdns_base *dns;
    SSL_CTX *ssl_ctx;
    source *sources;
    fetch *graveyard;             /* finished fetches whose connection awaits its free */
    fx_jwks_deliver_fn deliver;
    void *deliver_arg;
};

/* ---- the table ------------------------------------------------------------------------------ */

fx_jwks_table *fx_jwks_table_ref(fx_jwks_table *t)
{
    if (t)
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void fx_jwks_table_unref(fx_jwks_table *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->entries[i].uri);
        if (t->entries[i].keys)
            fx_jwt_keyset_unref(t->entries[i].keys);
    }
    free(t);
}

const fx_jwks_entry *fx_jwks_table_find(const fx_jwks_table *t, const char *uri)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (!strcmp(t->entries[i].uri, uri))
            return &t->entries[i];
    return NULL;
}

/* FNV-1a, 64 bit: mixing fingerprints and URIs into the table's fingerprint */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void publish(fx_jwks *jw)
{
    size_t n = 0;
    for (source *s = jw->sources; s; s = s->next)
        n++;
    fx_jwks_table *t = calloc(1, sizeof(*t) + n * sizeof(fx_jwks_entry));
    if (!t) {
        fx_log(FX_LOG_ERROR, "jwks: out of memory publishing key sets; workers keep the previous ones");
        return;
    }
    atomic_init(&t->refs, 1);
    uint64_t h = 0xcbf29ce484222325ull;
    for (source *s = jw->sources; s; s = s->next) {
        fx_jwks_entry *e = &t->entries[t->n];
        if (!(e->uri = strdup(s->uri)))
            continue;
        if (s->keys) {
            e->keys = fx_jwt_keyset_ref(s->keys);
            e->fingerprint = s->fingerprint;
            h = fnv(h, s->uri, strlen(s->uri) + 1);
            h = fnv(h, &s->fingerprint, sizeof(s->fingerprint));
        }
        t->n++;
    }
    t->fingerprint = h;
    jw->deliver(t, jw->deliver_arg);
    fx_jwks_table_unref(t);
}

/* ---- the bell -------------------------------------------------------------------------------- */

void fx_jwks_bell_ring(fx_jwks_bell *b)
{
    if (!b || b->fd < 0)
        return;
    /* while a ring is pending, a plain load is all a worker pays */
    if (atomic_load_explicit(&b->rung, memory_order_relaxed) || atomic_exchange(&b->rung, 1))
        return;
    uint64_t one = 1;
    ssize_t r = write(b->fd, &one, sizeof(one));
    (void)r; /* EAGAIN: the counter is already non-zero, the main thread will look */
}

/* The flag goes down once nothing asked for is still pending, so the next unknown kid rings again. */
static void bell_settle(fx_jwks *jw)
{
    for (source *s = jw->sources; s; s = s->next)
        if (s->wanted || s->inflight)
            return;
    atomic_store(&jw->bell.rung, 0);
}

/* ---- URIs ------------------------------------------------------------------------------------ */

/* https://HOST[:PORT]/PATH?QUERY (the config checked the scheme and the loopback rule). */
static int parse_uri(source *s, const char **why)
{
    const char *u = s->uri, *a;
    if (!strncmp(u, "https://", 8)) {
        s->tls = 1;
        s->port = 443;
        a = u + 8;
    } else if (!strncmp(u, "http://", 7)) {
        s->port = 80;
        a = u + 7;
    } else {
        *why = "not an http(s) URL";
        return -1;
    }
    size_t alen = strcspn(a, "/?#");
    if (memchr(a, '@', alen)) {
        *why = "user information in the URL is not supported";
        return -1;
    }
    const char *h = a, *hend, *rest;
    if (*a == '[') {
        h = a + 1;
        hend = memchr(h, ']', alen);
        if (!hend) {
            *why = "unterminated IPv6 address";
            return -1;
        }
        rest = hend + 1;
    } else {
        hend = memchr(a, ':', alen);
        if (!hend)
            hend = a + alen;
        rest = hend;
    }
    if (hend == h) {
        *why = "no host";
        return -1;
    }
    if (rest < a + alen) {
        if (*rest != ':' || rest + 1 == a + alen) {
            *why = "bad port";
            return -1;
        }
        unsigned long p = 0;
        for (const char *c = rest + 1; c < a + alen; c++) {
            if (*c < '0' || *c > '9' || (p = p * 10 + (unsigned long)(*c - '0')) > 65535) {
                *why = "bad port";
                return -1;
            }
        }
        if (p == 0) {
            *why = "bad port";
            return -1;
        }
        s->port = (unsigned)p;
    }
    const char *path = a + alen;
    size_t plen = strcspn(path, "#");
    s->host = strndup(h, (size_t)(hend - h));
    s->authority = strndup(a, alen);
    if (plen == 0 || path[0] == '?') {
        s->path = malloc(plen + 2);
        if (s->path) {
            s->path[0] = '/';
            memcpy(s->path + 1, path, plen);
            s->path[plen + 1] = '\0';
        }
    } else {
        s->path = strndup(path, plen);
    }
    if (!s->host || !s->authority || !s->path) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* ---- fetching ---------------------------------------------------------------------------------- */

static void schedule(source *s, uint64_t at_ms);
static void on_deadline(evutil_socket_t fd, short what, void *arg);

/* The first certificate problem, kept for the log line (the handshake fails on it). */
static int on_verify(int ok, X509_STORE_CTX *ctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    fetch *f = ssl ? SSL_get_app_data(ssl) : NULL;
    if (!ok && f && f->verify_err == X509_V_OK) {
        f->verify_err = X509_STORE_CTX_get_error(ctx);
        f->verify_depth = X509_STORE_CTX_get_error_depth(ctx);
        X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
        if (cert)
            X509_NAME_oneline(X509_get_subject_name(cert), f->verify_subject, sizeof(f->verify_subject));
    }
    return ok;
}

static SSL_CTX *make_ssl_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        fx_log(FX_LOG_ERROR, "jwks: cannot create a TLS context; https jwks_uri fetches fail");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        fx_log(FX_LOG_WARN, "jwks: cannot load OpenSSL's default trust store; https jwks_uri fetches will fail");
    return ctx;
}

/* Moves a finished fetch to the graveyard; its connection is freed on the next loop turn. */
static void bury(fetch *f)
{
    f->src = NULL;
    f->next = f->jw->graveyard;
    f->jw->graveyard = f;
    struct timeval zero = {0, 0};
    evtimer_add(f->timer, &zero);
}

static void fetch_free(fetch *f)
{
    if (f->conn)
        evhttp_connection_free(f->conn); /* pending requests go without callbacks */
    if (f->timer)
        event_free(f->timer);
    free(f);
}

/* Not inside an evhttp callback of this fetch: drop it whatever its state. */
static void fetch_abort(fetch *f)
{
    fx_jwks *jw = f->jw;
    for (fetch **p = &jw->graveyard; *p; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            break;
        }
    }
    if (f->src && f->src->inflight == f)
        f->src->inflight = NULL;
    fetch_free(f);
}

static uint64_t retry_delay(const source *s)
{
    unsigned shift = s->failures > 1 ? s->failures - 1 : 0;
    uint64_t d = JWKS_RETRY_MIN_MS << (shift > 16 ? 16 : shift);
    return d < s->refresh_ms ? d : s->refresh_ms;
}

/* The end of a fetch, good or bad: count, log, keep or replace the keys, plan the next one. */
static void finish(source *s, int result, const char *why)
{
    fx_jwks *jw = s->jw;
    uint64_t now = fx_mono_ms();
    s->inflight = NULL;
    s->last_end_ms = now;
    s->counts[result]++;
    if (result == FETCH_NEW || result == FETCH_UNCHANGED) {
        if (s->failures)
            fx_log(FX_LOG_INFO, "jwks: issuer '%s': %s answers again after %u failed fetch%s", s->label, s->uri,
                   s->failures, s->failures == 1 ? "" : "es");
        s->failures = 0;
        s->last_ok = time(NULL);
        schedule(s, now + s->refresh_ms);
    } else {
        s->failures++;
        uint64_t d = retry_delay(s);
        if (s->keys)
            fx_log(FX_LOG_WARN, "jwks: issuer '%s': fetching %s failed: %s; keeping the last good key set "
                                "(%zu key%s); next try in %" PRIu64 " ms",
                   s->label, s->uri, why, s->nkeys, s->nkeys == 1 ? "" : "s", d);
        else
            fx_log(FX_LOG_ERROR, "jwks: issuer '%s': fetching %s failed: %s; no key set yet, so its tokens "
                                 "are refused and the gateway is not ready; next try in %" PRIu64 " ms",
                   s->label, s->uri, why, d);
        schedule(s, now + d);
    }
    bell_settle(jw);
}

/* A 200 response's body: the same bytes as before, a new key set, or something unusable. */
static void take_body(source *s, const unsigned char *body, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint64_t fp = 0;
    if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen >= 8)
        memcpy(&fp, md, sizeof(fp));
    fp |= 1; /* never 0, which means "no keys" */
    if (s->keys && fp == s->fingerprint) {
        finish(s, FETCH_UNCHANGED, NULL);
        return;
    }
    char err[256] = "";
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    int bad = !ks || fx_jwt_keyset_add_jwks(ks, (const char *)body, len, err, sizeof(err)) < 0;
    if (!bad && fx_jwt_keyset_count(ks) == 0) {
        snprintf(err, sizeof(err), "the key set has no signing keys");
        bad = 1;
    }
    if (bad) {
        if (ks)
            fx_jwt_keyset_unref(ks);
        char why[320];
        snprintf(why, sizeof(why), "not a usable JWK Set: %s", ks ? err : "out of memory");
        finish(s, FETCH_INVALID, why);
        return;
    }
    size_t before = s->nkeys;
    int first = s->keys == NULL;
    if (s->keys)
        fx_jwt_keyset_unref(s->keys);
    s->keys = ks;
    s->fingerprint = fp;
    s->nkeys = fx_jwt_keyset_count(ks);
    if (first)
        fx_log(FX_LOG_INFO, "jwks: issuer '%s': %zu key%s from %s", s->label, s->nkeys, s->nkeys == 1 ? "" : "s",
               s->uri);
    else
        fx_log(FX_LOG_INFO, "jwks: issuer '%s': the key set at %s changed (%zu key%s, before %zu)", s->label,
               s->uri, s->nkeys, s->nkeys == 1 ? "" : "s", before);
    publish(s->jw); /* before finish() lowers the bell: the workers get the keys first */
    finish(s, FETCH_NEW, NULL);
}

static const char *request_error_text(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timed out";
    case EVREQ_HTTP_EOF: return "the connection closed before a complete response";
    case EVREQ_HTTP_INVALID_HEADER: return "malformed HTTP response";
    case EVREQ_HTTP_BUFFER_ERROR: return "read or write error";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "the response is larger than 1 MiB (or its headers than 64 KiB)";
    default: return "HTTP error";
    }
}

static void on_request_error(enum evhttp_request_error e, void *arg)
{
    fetch *f = arg;
    f->have_err = 1;
    f->err = e;
}

/* Why a request got no response: certificate, TLS, DNS, socket or HTTP level, most specific first. */
static void failure_text(fetch *f, char *out, size_t cap)
{
    struct bufferevent *bev = f->conn ? evhttp_connection_get_bufferevent(f->conn) : NULL;
    if (f->verify_err != X509_V_OK) {
        snprintf(out, cap, "TLS certificate verification failed: %s (depth %d, subject %s)",
                 X509_verify_cert_error_string(f->verify_err), f->verify_depth,
                 f->verify_subject[0] ? f->verify_subject : "?");
        return;
    }
    unsigned long ssl_err = 0, e;
    if (bev && f->src && f->src->tls)
        while ((e = bufferevent_get_openssl_error(bev)) != 0)
            ssl_err = e;
    if (ssl_err) {
        char buf[200];
        ERR_error_string_n(ssl_err, buf, sizeof(buf));
        snprintf(out, cap, "TLS handshake failed: %s", buf);
        return;
    }
    int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
    if (dns) {
        snprintf(out, cap, "cannot resolve '%s': %s", f->src ? f->src->host : "?", evutil_gai_strerror(dns));
        return;
    }
    if (f->have_err) {
        snprintf(out, cap, "%s", request_error_text(f->err));
        return;
    }
    /* evhttp resets the socket before it tells us, so errno no longer says why */
    snprintf(out, cap, "cannot connect to %s port %u (refused, unreachable or timed out)",
             f->src ? f->src->host : "?", f->src ? f->src->port : 0);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    fetch *f = arg;
    source *s = f->src;
    if (f->done || !s)
        return;
    f->done = 1;
    evtimer_del(f->timer);
    int code = req ? evhttp_request_get_response_code(req) : 0;
    char why[400];
    if (code == 0) {
        failure_text(f, why, sizeof(why));
        finish(s, FETCH_ERROR, why);
    } else if (code != 200) {
        const char *loc = code >= 300 && code < 400
                              ? evhttp_find_header(evhttp_request_get_input_headers(req), "Location")
                              : NULL;
        if (loc)
            snprintf(why, sizeof(why), "HTTP %d: redirect to '%.200s' not followed (configure the final URL)",
                     code, loc);
        else
            snprintf(why, sizeof(why), "HTTP %d", code);
        finish(s, FETCH_ERROR, why);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len > JWKS_MAX_BODY) {
            finish(s, FETCH_INVALID, "the response is larger than 1 MiB");
        } else {
            const unsigned char *body = len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
            take_body(s, body ? body : (const unsigned char *)"", body ? len : 0);
        }
    }
    bury(f);
}

/* The fetch deadline, or (once done) the deferred free of a finished fetch. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    fetch *f = arg;
    if (f->done) {
        fetch_abort(f);
        return;
    }
    source *s = f->src;
    f->done = 1;
    fetch_abort(f); /* frees the connection: no callback follows */
    if (s) {
        char why[64];
        snprintf(why, sizeof(why), "no complete response within %d s", JWKS_TIMEOUT_S);
        finish(s, FETCH_ERROR, why);
    }
}

static void start_fetch(source *s)
{
    fx_jwks *jw = s->jw;
    s->wanted = 0;
    s->last_start_ms = fx_mono_ms();
    fetch *f = calloc(1, sizeof(*f));
    if (!f) {
        finish(s, FETCH_ERROR, "out of memory");
        return;
    }
    f->jw = jw;
    f->src = s;
    f->verify_err = X509_V_OK;
    f->timer = evtimer_new(jw->base, on_deadline, f);
    struct bufferevent *bev = NULL;
    SSL *ssl = NULL;
    const char *why = "out of memory";
    if (!f->timer)
        goto fail;
    if (s->tls) {
        if (!jw->ssl_ctx)
            jw->ssl_ctx = make_ssl_ctx();
        if (!jw->ssl_ctx || !(ssl = SSL_new(jw->ssl_ctx))) {
            why = "cannot create a TLS session";
            goto fail;
        }
        SSL_set_app_data(ssl, f);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int named = 1;
        if (is_ip_literal(s->host))
            named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), s->host) == 1;
        else
            named = SSL_set_tlsext_host_name(ssl, s->host) == 1 && SSL_set1_host(ssl, s->host) == 1;
        if (!named) {
            SSL_free(ssl);
            why = "cannot set the TLS host name to check";
            goto fail;
        }
        bev = bufferevent_openssl_socket_new(jw->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!bev) {
            SSL_free(ssl);
            goto fail;
        }
        /* a peer that closes without close_notify after a complete, length-delimited body is fine;
         * a body cut short fails as JSON anyway */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(jw->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!bev)
            goto fail;
    }
    /* non-blocking DNS for provider host names (/etc/hosts, resolv.conf), made when first needed */
    if (!jw->dns && !is_ip_literal(s->host) &&
        !(jw->dns = evdns_base_new(jw->base, EVDNS_BASE_INITIALIZE_NAMESERVERS)))
        jw->dns = evdns_base_new(jw->base, 0);
    f->conn = evhttp_connection_base_bufferevent_new(jw->base, jw->dns, bev, s->host, (ev_uint16_t)s->port);
    if (!f->conn) {
        bufferevent_free(bev);
        goto fail;
    }
    evhttp_connection_set_timeout(f->conn, JWKS_TIMEOUT_S);
    evhttp_connection_set_retries(f->conn, 0);
    evhttp_connection_set_max_body_size(f->conn, JWKS_MAX_BODY);
    evhttp_connection_set_max_headers_size(f->conn, JWKS_MAX_HEADERS);
    struct evhttp_request *req = evhttp_request_new(on_response, f);
    if (!req)
        goto fail;
    evhttp_request_set_error_cb(req, on_request_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", s->authority);
    evhttp_add_header(h, "Accept", "application/jwk-set+json, application/json");
    evhttp_add_header(h, "User-Agent", "ficus/" FICUS_VERSION);
    evhttp_add_header(h, "Connection", "close");
    s->inflight = f;
    struct timeval dl = {JWKS_TIMEOUT_S, 0};
    evtimer_add(f->timer, &dl);
    /* a connect that fails at once calls on_response from inside evhttp_make_request */
    if (evhttp_make_request(f->conn, req, EVHTTP_REQ_GET, s->path) < 0 && !f->done) {
        f->done = 1;
        s->inflight = NULL;
        fetch_free(f);
        finish(s, FETCH_ERROR, "cannot start the request");
    }
    return;
fail:
    s->inflight = NULL;
    fetch_free(f);
    finish(s, FETCH_ERROR, why);
}

/* ---- scheduling ------------------------------------------------------------------------------ */

static void schedule(source *s, uint64_t at_ms)
{
    uint64_t now = fx_mono_ms();
    s->due_ms = at_ms;
    struct timeval tv = fx_ms_tv(at_ms > now ? at_ms - now : 0);
    evtimer_add(s->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    source *s = arg;
    s->due_ms = 0;
    if (!s->inflight)
        start_fetch(s);
}

/*
 * A worker met an unknown kid. Every source may be the one (the token's
 * issuer is not known before it is verified); each refetches now if its
 * last fetch started at least jwks_min_refresh ago, else when that is over.
 * A source with a fetch in flight lets that fetch answer.
 */
static void on_bell(evutil_socket_t fd, short what, void *arg)
{
    fx_jwks *jw = arg;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    uint64_t now = fx_mono_ms();
    for (source *s = jw->sources; s; s = s->next) {
        if (s->inflight || s->wanted)
            continue;
        s->wanted = 1;
        uint64_t allowed = s->last_start_ms ? s->last_start_ms + s->min_refresh_ms : now;
        if (!s->due_ms || allowed < s->due_ms)
            schedule(s, allowed);
    }
    bell_settle(jw);
}

/* ---- sources --------------------------------------------------------------------------------- */

static void source_free(source *s)
{
    if (s->inflight)
        fetch_abort(s->inflight);
    if (s->timer)
        event_free(s->timer);
    if (s->keys)
        fx_jwt_keyset_unref(s->keys);
    free(s->uri);
    free(s->label);
    free(s->host);
    free(s->authority);
    free(s->path);
    free(s);
}

static source *source_new(fx_jwks *jw, const fx_issuer_conf *ic)
{
    source *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->jw = jw;
    s->uri = strdup(ic->jwks_uri);
    s->label = strdup(ic->issuer ? ic->issuer : "?");
    s->refresh_ms = ic->jwks_refresh_ms;
    s->min_refresh_ms = ic->jwks_min_refresh_ms;
    s->timer = evtimer_new(jw->base, on_timer, s);
    const char *why = "out of memory";
    if (!s->uri || !s->label || !s->timer || parse_uri(s, &why) < 0) {
        fx_log(FX_LOG_ERROR, "jwks: issuer '%s': cannot use jwks_uri '%s': %s", ic->issuer ? ic->issuer : "?",
               ic->jwks_uri, why);
        source_free(s);
        return NULL;
    }
    return s;
}

void fx_jwks_configure(fx_jwks *jw, const fx_config *cfg)
{
    if (!jw || !jw->base)
        return;
    /* made when first needed (loading the trust store takes a while); a reload drops it, so a
     * changed trust store (SSL_CERT_FILE's file) counts from the reload on */
    if (jw->ssl_ctx)
        SSL_CTX_free(jw->ssl_ctx); /* sessions in flight hold their own reference */
    jw->ssl_ctx = NULL;
    source *old = jw->sources, *fresh = NULL, **tail = &fresh;
    const fx_auth_conf *a = cfg->auth;
    uint64_t now = fx_mono_ms();
    for (size_t i = 0; a && i < a->nissuers; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        if (!ic->jwks_uri)
            continue;
        source *s = NULL;
        for (source *k = fresh; k && !s; k = k->next) /* two issuers, one URI: one source */
            if (!strcmp(k->uri, ic->jwks_uri))
                s = k;
        if (s) {
            if (ic->jwks_refresh_ms < s->refresh_ms)
                s->refresh_ms = ic->jwks_refresh_ms;
            if (ic->jwks_min_refresh_ms < s->min_refresh_ms)
                s->min_refresh_ms = ic->jwks_min_refresh_ms;
            continue;
        }
        for (source **p = &old; *p; p = &(*p)->next) {
            if (!strcmp((*p)->uri, ic->jwks_uri)) {
                s = *p;
                *p = s->next;
                break;
            }
        }
        if (s) {
            /* kept: same keys, same schedule, only the periods may have changed */
            free(s->label);
            s->label = strdup(ic->issuer ? ic->issuer : "?");
            if (!s->label)
                s->label = strdup("?");
            s->refresh_ms = ic->jwks_refresh_ms;
            s->min_refresh_ms = ic->jwks_min_refresh_ms;
            if (!s->inflight && s->keys && s->last_end_ms && s->due_ms > s->last_end_ms + s->refresh_ms)
                schedule(s, s->last_end_ms + s->refresh_ms);
        } else if ((s = source_new(jw, ic))) {
            schedule(s, now); /* new: fetch right away */
        } else {
            continue;
        }
        s->next = NULL;
        *tail = s;
        tail = &s->next;
    }
    jw->sources = fresh;
    int removed = old != NULL;
    while (old) {
        source *s = old;
        old = s->next;
        fx_log(FX_LOG_INFO, "jwks: %s is no longer configured; its key set is dropped", s->uri);
        source_free(s);
    }
    if (removed)
        publish(jw);
    bell_settle(jw);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

fx_jwks *fx_jwks_new(void)
{
    fx_jwks *jw = calloc(1, sizeof(*jw));
    if (!jw)
        return NULL;
    atomic_init(&jw->bell.rung, 0);
    jw->bell.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (jw->bell.fd < 0) {
        free(jw);
        return NULL;
    }
    return jw;
}

fx_jwks_bell *fx_jwks_get_bell(fx_jwks *jw)
{
    return jw ? &jw->bell : NULL;
}

int fx_jwks_start(fx_jwks *jw, struct event_base *base, const fx_config *cfg, fx_jwks_deliver_fn deliver,
                  void *arg)
{
    jw->base = base;
    jw->deliver = deliver;
    jw->deliver_arg = arg;
    jw->bell_ev = event_new(base, jw->bell.fd, EV_READ | EV_PERSIST, on_bell, jw);
    if (!jw->bell_ev || event_add(jw->bell_ev, NULL) < 0) {
        fx_log(FX_LOG_ERROR, "jwks: cannot watch the refetch eventfd");
        return -1;
    }
    fx_jwks_configure(jw, cfg);
    return 0;
}

static const source *find_source(const fx_jwks *jw, const char *uri)
{
    for (const source *s = jw ? jw->sources : NULL; s; s = s->next)
        if (!strcmp(s->uri, uri))
            return s;
    return NULL;
}

int fx_jwks_ready(const fx_jwks *jw, const fx_config *cfg, const char **waiting)
{
    const fx_auth_conf *a = cfg->auth;
    for (size_t i = 0; a && i < a->nissuers; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        const source *s = ic->jwks_uri ? find_source(jw, ic->jwks_uri) : NULL;
        if (ic->jwks_uri && (!s || !s->keys)) {
            if (waiting)
                *waiting = ic->issuer;
            return 0;
        }
    }
    return 1;
}

/* NAME{issuer="ISSUER" (a Prometheus label value: backslash, quote and newline escaped) */
static void series(struct evbuffer *out, const char *name, const char *issuer)
{
    evbuffer_add_printf(out, "%s{issuer=\"", name);
    for (const char *p = issuer; *p; p++) {
        if (*p == '\\' || *p == '"')
            evbuffer_add_printf(out, "\\%c", *p);
        else if (*p == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add(out, "\"", 1);
}

void fx_jwks_metrics(const fx_jwks *jw, const fx_config *cfg, struct evbuffer *out)
{
    const fx_auth_conf *a = cfg->auth;
    size_t n = 0;
    for (size_t i = 0; a && i < a->nissuers; i++)
        n += a->issuers[i].jwks_uri != NULL;
    if (n == 0)
        return;
    evbuffer_add_printf(out, "# HELP ficus_jwks_fetches_total Fetches of jwks_uri key sets, by issuer and result "
                             "(ok: a new key set; unchanged: the same bytes; error: no usable response; "
                             "invalid: not a usable JWK Set).\n"
                             "# TYPE ficus_jwks_fetches_total counter\n");
    for (size_t i = 0; i < a->nissuers; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        const source *s = ic->jwks_uri ? find_source(jw, ic->jwks_uri) : NULL;
        for (int r = 0; ic->jwks_uri && r < FETCH_NRESULTS; r++) {
            series(out, "ficus_jwks_fetches_total", ic->issuer);
            evbuffer_add_printf(out, ",result=\"%s\"} %lu\n", result_names[r], s ? s->counts[r] : 0ul);
        }
    }
    evbuffer_add_printf(out, "# HELP ficus_jwks_keys Keys in the key set in use for a jwks_uri issuer "
                             "(0: none yet).\n"
                             "# TYPE ficus_jwks_keys gauge\n");
    for (size_t i = 0; i < a->nissuers; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        const source *s = ic->jwks_uri ? find_source(jw, ic->jwks_uri) : NULL;
        if (!ic->jwks_uri)
            continue;
        series(out, "ficus_jwks_keys", ic->issuer);
        evbuffer_add_printf(out, "} %zu\n", s && s->keys ? s->nkeys : 0);
    }
    evbuffer_add_printf(out, "# HELP ficus_jwks_last_success_timestamp_seconds When a jwks_uri last answered "
                             "with a usable key set (0: never).\n"
                             "# TYPE ficus_jwks_last_success_timestamp_seconds gauge\n");
    for (size_t i = 0; i < a->nissuers; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        const source *s = ic->jwks_uri ? find_source(jw, ic->jwks_uri) : NULL;
        if (!ic->jwks_uri)
            continue;
        series(out, "ficus_jwks_last_success_timestamp_seconds", ic->issuer);
        evbuffer_add_printf(out, "} %lld\n", s ? (long long)s->last_ok : 0ll);
    }
}

void fx_jwks_stop(fx_jwks *jw)
{
    if (!jw)
        return;
    while (jw->sources) {
        source *s = jw->sources;
        jw->sources = s->next;
        source_free(s);
    }
    while (jw->graveyard)
        fetch_abort(jw->graveyard);
    if (jw->bell_ev)
        event_free(jw->bell_ev);
    jw->bell_ev = NULL;
    if (jw->dns)
        evdns_base_free(jw->dns, 0);
    jw->dns = NULL;
    if (jw->ssl_ctx)
        SSL_CTX_free(jw->ssl_ctx);
    jw->ssl_ctx = NULL;
    jw->base = NULL;
}

void fx_jwks_free(fx_jwks *jw)
{
    if (!jw)
        return;
    fx_jwks_stop(jw);
    if (jw->bell.fd >= 0)
        close(jw->bell.fd);
    free(jw);
}

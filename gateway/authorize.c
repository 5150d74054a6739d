/*
 * authorize.c — authorization at the edge and for the decision API (see
 * authorize.h).
 *
 *   fx_authz_request_http    the policies' view of a parsed request
 *   fx_authz_query_parse     query string → decoded name/value pairs
 *   fx_authz_decide          enforce or audit, timing, counters, id
 *   fx_authz_log             the decision log line
 *   fx_route_stats_*         per-route-name counters that outlive reloads
 */
#include "authorize.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "llhttp.h"

/* ---- the request as policies see it ------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes into `a`; a '%' not followed by two hex digits stays as it is. -1: no memory. */
static int decode(const char *p, size_t n, fx_arena *a, fx_authz_str *out)
{
    *out = (fx_authz_str){p, n};
    if (!memchr(p, '%', n) && !memchr(p, '+', n))
        return 0;
    char *o = fx_arena_alloc(a, n + 1);
    if (!o)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (p[i] == '+') {
            o[k++] = ' ';
        } else if (p[i] == '%' && i + 2 < n && (h = hexval((unsigned char)p[i + 1])) >= 0 && (l = hexval((unsigned char)p[i + 2])) >= 0) {
            o[k++] = (char)(h * 16 + l);
            i += 2;
        } else {
            o[k++] = p[i];
        }
    }
    *out = (fx_authz_str){o, k};
    return 0;
}

long fx_authz_query_parse(fx_slice q, fx_arena *a, fx_authz_kv **out)
{
    *out = NULL;
    if (!q.p || q.n == 0)
        return 0;
    size_t n = 1;
    for (size_t i = 0; i < q.n; i++)
        n += q.p[i] == '&';
    fx_authz_kv *kv = fx_arena_alloc(a, n * sizeof(*kv));
    if (!kv)
        return -1;
    size_t k = 0;
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (e > p) {
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ne = eq ? eq : e;
            kv[k].value = (fx_authz_str){"", 0};
            if (decode(p, (size_t)(ne - p), a, &kv[k].name) < 0 ||
                (eq && decode(eq + 1, (size_t)(e - eq - 1), a, &kv[k].value) < 0))
                return -1;
            k++;
        }
        p = amp ? amp + 1 : end;
    }
    *out = kv;
    return (long)k;
}

/* A route's path params as policy pairs (slices into m), in `a`. 0, or -1 when out of memory. */
static int params_of(const fx_route_match *m, fx_arena *a, fx_authz_request *out)
{
    if (!m->nparams)
        return 0;
    fx_authz_kv *kv = fx_arena_alloc(a, m->nparams * sizeof(*kv));
    if (!kv)
        return -1;
    for (size_t i = 0; i < m->nparams; i++) {
        kv[i].name = (fx_authz_str){m->params[i].name.p, m->params[i].name.n};
        kv[i].value = (fx_authz_str){m->params[i].value.p, m->params[i].value.n};
    }
    out->params = kv;
    out->nparams = m->nparams;
    return 0;
}

int fx_authz_request_http(fx_authz_request *out, const fx_config *cfg, const fx_route_match *m,
                          const fx_http_msg *req, const fx_jwt_claims *claims, fx_arena *a)
{
    memset(out, 0, sizeof(*out));
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    unsigned needs = fx_policy_set_needs(set);
    const fx_route_conf *r = m->route;
    out->method = (fx_authz_str){req->method_s.p, req->method_s.n};
    out->path = (fx_authz_str){req->path.p, req->path.n};
    out->route = (fx_authz_str){r ? r->name : "", r ? strlen(r->name) : 0};
    out->route_index = r ? r->policy_route : -1;
    out->token = claims ? fx_jwt_claims_doc(claims) : NULL;
    if ((needs & FX_AUTHZ_NEEDS_PARAMS) && params_of(m, a, out) < 0)
        return -1; /* never decide on less than the request: the caller answers 503 */
    if ((needs & FX_AUTHZ_NEEDS_HEADERS) && req->nheaders) {
        fx_authz_kv *kv = fx_arena_alloc(a, req->nheaders * sizeof(*kv));
        if (!kv)
            return -1;
        for (size_t i = 0; i < req->nheaders; i++) {
            kv[i].name = (fx_authz_str){req->headers[i].name.p, req->headers[i].name.n};
            kv[i].value = (fx_authz_str){req->headers[i].value.p, req->headers[i].value.n};
        }
        out->headers = kv;
        out->nheaders = req->nheaders;
    }
    if (needs & FX_AUTHZ_NEEDS_QUERY) {
        fx_authz_kv *kv;
        long n = fx_authz_query_parse(req->query, a, &kv);
        if (n < 0)
            return -1;
        out->nquery = (size_t)n;
        out->query = kv;
    }
    return 0;
}

/* The first name of kv[] that `reads` says a policy reads and that appears again before it. */
static const fx_authz_str *repeated_in(const fx_authz_kv *kv, size_t n, int ci, const fx_policy_set *set,
                                       int (*reads)(const fx_policy_set *, const char *, size_t))
{
    for (size_t i = 0; i < n; i++) {
        const fx_authz_str *name = &kv[i].name;
        if (!reads(set, name->p, name->len))
            continue;
        for (size_t j = 0; j < i; j++)
            if (kv[j].name.len == name->len &&
                (ci ? strncasecmp(kv[j].name.p, name->p, name->len) : memcmp(kv[j].name.p, name->p, name->len)) == 0)
                return name;
    }
    return NULL;
}

const char *fx_authz_repeated(const fx_config *cfg, const fx_authz_request *req, char *buf, size_t cap)
{
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    const fx_authz_str *n = repeated_in(req->headers, req->nheaders, 1, set, fx_policy_set_reads_header);
    const char *what = "header";
    if (!n) {
        n = repeated_in(req->query, req->nquery, 0, set, fx_policy_set_reads_query);
        what = "query parameter";
    }
    if (!n)
        return NULL;
    snprintf(buf, cap, "the %s '%.*s'", what, (int)(n->len > 64 ? 64 : n->len), n->p);
    return buf;
}

/* ---- deciding ------------------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fx_authz_decide(const fx_config *cfg, const fx_route_conf *r, const fx_authz_request *req,
                     uint64_t rng[2], fx_authz_outcome *out)
{
    memset(out, 0, sizeof(*out));
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    uint64_t t0 = mono_ns();
    fx_policy_eval(set, req, &out->d); /* no set: default deny */
    out->eval_ns = mono_ns() - t0;
    int audit = cfg->policies && cfg->policies->mode == FX_POLICY_AUDIT;
    out->allow = out->d.allow || audit;
    out->would_deny = audit && !out->d.allow;
    fx_log_id(rng, out->id);
    fx_route_stats *st = r ? r->stats : NULL;
    if (st)
        atomic_fetch_add_explicit(out->would_deny ? &st->would_deny : out->allow ? &st->allow : &st->deny, 1,
                                  memory_order_relaxed);
}

/* ---- the decision log ------------------------------------------------------------------ */

size_t fx_authz_policies_json(const fx_config *cfg, const fx_authz_decision *d, char *buf, size_t cap)
{
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    size_t k = 0;
    if (cap < 3)
        return 0;
    buf[k++] = '[';
    size_t n = d->nmatched < FX_AUTHZ_MAX_MATCHED ? d->nmatched : FX_AUTHZ_MAX_MATCHED;
    for (size_t i = 0; set && i < n; i++) {
        const char *id = fx_policy_id(set, d->matched[i]);
        size_t at = k + (i ? 1 : 0) + 1; /* after the comma and the opening quote */
        if (at + 3 > cap)                /* the closing quote, ']' and NUL */
            break;
        size_t el = fx_json_escape(buf + at, cap - at - 3, id, strlen(id));
        if (el > cap - at - 3)
            break;
        if (i)
            buf[k++] = ',';
        buf[k++] = '"';
        k += el;
        buf[k++] = '"';
    }
    buf[k++] = ']';
    buf[k] = '\0';
    return k;
}

/* "key":"escaped value" appended at o (bounded by end); returns the new end of text. */
static char *put_field(char *o, char *end, const char *key, const char *v, size_t n)
{
    size_t kl = strlen(key);
    if (o + kl + 6 + n * 6 >= end)
        return o;
    o += sprintf(o, ",\"%s\":\"", key);
    o += fx_json_escape(o, (size_t)(end - o), v, n);
    *o++ = '"';
    *o = '\0';
    return o;
}

void fx_authz_log(const fx_access_log *sink, const fx_config *cfg, const fx_authz_outcome *o,
                  const fx_authz_log_info *info)
{
    if (!sink || sink->fd < 0)
        return;
    char line[8192], when[40], pol[FX_AUTHZ_POLICIES_JSON_MAX];
    char *p = line, *end = line + sizeof(line) - 256;
    fx_log_time(when);
    p += snprintf(p, (size_t)(end - p), "{\"time\":\"%s\",\"decision_id\":\"%s\"", when, o->id);
    if (info->request_id.n)
        p = put_field(p, end, "request_id", info->request_id.p, info->request_id.n > 128 ? 128 : info->request_id.n);
    p += snprintf(p, (size_t)(end - p), ",\"source\":\"%s\"", info->source);
    if (info->route)
        p = put_field(p, end, "route", info->route, strlen(info->route));
    if (info->claims) {
        char sub[256];
        int sl = fx_jwt_claim_render(info->claims, "sub", sub, sizeof(sub));
        if (sl > 0)
            p = put_field(p, end, "subject", sub, (size_t)sl);
    }
    p = put_field(p, end, "method", info->method.p ? info->method.p : "", info->method.n > 20 ? 20 : info->method.n);
    p = put_field(p, end, "path", info->path.p ? info->path.p : "", info->path.n > 512 ? 512 : info->path.n);
    fx_authz_policies_json(cfg, &o->d, pol, sizeof(pol));
    p += snprintf(p, (size_t)(line + sizeof(line) - p),
                  ",\"decision\":\"%s\",\"mode\":\"%s\"%s,\"reason\":\"%s\",\"policies\":%s,\"eval_ns\":%" PRIu64 "}\n",
                  o->d.allow ? "allow" : "deny",
                  cfg->policies && cfg->policies->mode == FX_POLICY_AUDIT ? "audit" : "enforce",
                  o->would_deny ? ",\"would_deny\":true" : "", fx_authz_reason_name(o->d.reason), pol, o->eval_ns);
    if (p > line && p < line + sizeof(line))
        fx_access_log_write(sink, line, (size_t)(p - line));
}

/* ---- counters --------------------------------------------------------------------------- */

int fx_route_stats_bind(fx_route_stats **registry, fx_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        fx_route_conf *r = &cfg->routes[i];
        fx_route_stats *st = *registry, *last = NULL;
        for (; st && strcmp(st->name, r->name) != 0; st = st->next)
            last = st;
        if (!st) {
            st = calloc(1, sizeof(*st));
            if (!st || !(st->name = strdup(r->name))) {
                free(st);
                return -1;
            }
            if (last)
                last->next = st;
            else
                *registry = st;
        }
        r->stats = st;
    }
    return 0;
}

void fx_route_stats_free(fx_route_stats *st)
{
    while (st) {
        fx_route_stats *next = st->next;
        free(st->name);
        free(st);
        st = next;
    }
}

/* ---- the decision API and `ficus policy eval` ---------------------------------------------- */

int fx_authz_method_number(const char *name)
{
    /* llhttp's own table (llhttp_method_name() aborts on a number it has no name for) */
#define FX_METHOD_CASE(num, id, text) \
    if (!strcmp(name, #text))          \
        return num;
    HTTP_METHOD_MAP(FX_METHOD_CASE)
#undef FX_METHOD_CASE
    return -1;
}

const fx_route_conf *fx_authz_route(const fx_config *cfg, const char *method, fx_slice host_value,
                                   const char *path, fx_arena *a, fx_authz_request *out, const char **reason)
{
    int mn = fx_authz_method_number(method);
    if (mn < 0) {
        *reason = "bad_method";
        return NULL;
    }
    if (fx_http_path_has_dot_segment(fx_slice_cstr(path))) {
        *reason = "bad_path"; /* the edge answers 400: never a decision for it */
        return NULL;
    }
    /* the router wants the host without port, any case: split as the edge splits Host */
    fx_slice host = FX_SLICE_NULL;
    if (host_value.p && fx_http_split_host(host_value, &host) < 0) {
        *reason = "bad_host";
        return NULL;
    }
    fx_route_match *m = fx_arena_alloc(a, sizeof(*m));
    if (!m) {
        *reason = "out_of_memory";
        return NULL;
    }
    if (!fx_router_match(cfg, mn, host, fx_slice_cstr(path), m)) {
        *reason = "no_route";
        return NULL;
    }
    out->params = NULL; /* the route's template decides the params, nothing else */
    out->nparams = 0;
    if (params_of(m, a, out) < 0) {
        *reason = "out_of_memory";
        return NULL;
    }
    out->route = (fx_authz_str){m->route->name, strlen(m->route->name)};
    out->route_index = m->route->policy_route;
    return m->route;
}

void fx_authz_check_run(const fx_config *cfg, fx_authn_worker *aw, const fx_authz_check *ck, uint64_t rng[2],
                        fx_arena *a, fx_authz_check_result *res)
{
    memset(res, 0, sizeof(*res));
    fx_authz_request *req = &res->req;
    req->method = (fx_authz_str){ck->method, strlen(ck->method)};
    req->path = (fx_authz_str){ck->path, strlen(ck->path)};
    req->route = (fx_authz_str){"", 0};
    req->route_index = -1;
    req->headers = ck->headers;
    req->nheaders = ck->nheaders;
    req->context = ck->context;
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    if (ck->query && (fx_policy_set_needs(set) & FX_AUTHZ_NEEDS_QUERY)) {
        fx_authz_kv *q = NULL;
        long nq = fx_authz_query_parse(fx_slice_cstr(ck->query), a, &q);
        if (nq < 0) {
            res->reason = "out_of_memory";
            return;
        }
        req->query = q;
        req->nquery = (size_t)nq;
    }
    const fx_route_conf *r = fx_authz_route(cfg, ck->method, ck->host ? fx_slice_cstr(ck->host) : FX_SLICE_NULL,
                                            ck->path, a, req, &res->reason);
    if (!r)
        return;
    res->route = r;
    if (!r->authz) {
        res->reason = "auth_none";
        res->allow = 1;
        return;
    }
    char what[100];
    if (fx_authz_repeated(cfg, req, what, sizeof(what))) {
        res->reason = "ambiguous"; /* the edge answers 400: a name policies read is repeated */
        return;
    }
    if (!cfg->auth) {
        /* as at the edge: without an auth section no token is looked at (anonymous) */
        res->token_ignored = ck->token || ck->claims;
    } else if (ck->claims) {
        req->token = ck->claims;
    } else if (ck->token) {
        fx_authn_result ar;
        fx_authn_verify(aw, cfg, ck->token, strlen(ck->token), &ar);
        if (ar.reason != FX_JWT_OK) {
            res->reason = "invalid_token";
            res->token_detail = ar.detail;
            return;
        }
        res->claims = ar.claims;
        req->token = fx_jwt_claims_doc(ar.claims);
    } else if (r->auth == FX_AUTH_REQUIRED) {
        res->reason = "missing_token";
        return;
    }
    fx_authz_decide(cfg, r, req, rng, &res->o);
    res->decided = 1;
    res->allow = res->o.allow;
    res->reason = fx_authz_reason_name(res->o.d.reason);
}

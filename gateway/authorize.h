/*
 * authorize.h — authorization at the edge and for the decision API: the
 * request as policies see it, the decision (enforce or audit), its log
 * line and its counters. The policy engine itself is authz/ (through
 * ficus_authz.h only).
 *
 * Types first. fx_authz_decide runs on a worker thread (the edge) or the
 * main thread (the decision API); it reads only the immutable config
 * snapshot and bumps atomic counters.
 */
#ifndef FX_AUTHORIZE_H
#define FX_AUTHORIZE_H

#include <stdatomic.h>
#include <stdint.h>

#include "arena.h"
#include "authn.h"
#include "config.h"
#include "ficus_authz.h"
#include "http1.h"
#include "log.h"
#include "router.h"
#include "slice.h"

/* ficus_authz_decisions_total{route,decision} for one route name: kept by the server across
 * reloads (a route that comes back keeps counting), linked from each snapshot's routes. */
typedef struct fx_route_stats {
    struct fx_route_stats *next;
    char *name;
    atomic_ulong allow, deny, would_deny;
} fx_route_stats;

typedef struct fx_authz_outcome {
    int allow;                 /* what the gateway does: 1 also for an audit-mode would-deny */
    int would_deny;            /* policies.mode audit and the policies said no */
    fx_authz_decision d;       /* the policies' own answer */
    uint64_t eval_ns;
    char id[33];               /* the decision id: in the decision log, the access log and
                                  the decision API's answer */
} fx_authz_outcome;

/* What a decision log line says besides the outcome. */
typedef struct fx_authz_log_info {
    const char *source;        /* "edge" or "api" */
    fx_slice request_id;
    const char *route;         /* NULL: no route matched */
    fx_slice method, path;
    const fx_jwt_claims *claims;
} fx_authz_log_info;

/*
 * The request as policies see it, from a parsed HTTP request and its route
 * match: params, headers and the decoded query are built (in `a`) only if
 * some policy reads them. Slices point into `req`, `m` and `a`. 0, or -1 when out of
 * memory: then the request must not be decided on what was built (the caller answers 503).
 */
int fx_authz_request_http(fx_authz_request *out, const fx_config *cfg, const fx_route_match *m,
                          const fx_http_msg *req, const fx_jwt_claims *claims, fx_arena *a);
/* The query string split at '&' and '=', percent-decoded ('+' is a space), into `a`: the
 * number of pairs, or -1 when out of memory. */
long fx_authz_query_parse(fx_slice query, fx_arena *a, fx_authz_kv **out);
/* A header or query name a policy reads that the request has more than once ("the header
 * 'x-tenant'", in buf), or NULL. Policies see the first copy; the upstream may read another,
 * so such a request is refused (400), never decided. */
const char *fx_authz_repeated(const fx_config *cfg, const fx_authz_request *req, char *buf, size_t cap);

/*
 * Decides a request of route `r` (one with r->authz): with no policies
 * section every such request is denied (default deny); policies.mode audit
 * allows and marks would_deny. Counts it and draws a decision id.
 */
void fx_authz_decide(const fx_config *cfg, const fx_route_conf *r, const fx_authz_request *req,
                     uint64_t rng[2], fx_authz_outcome *out);

/* One JSON line into the decision log (log.decisions). */
void fx_authz_log(const fx_access_log *sink, const fx_config *cfg, const fx_authz_outcome *o,
                  const fx_authz_log_info *info);
/* The JSON array of the matching policies' ids into buf: returns the length. A buffer of
 * FX_AUTHZ_POLICIES_JSON_MAX holds the 16 a decision keeps at the longest id (128 bytes of
 * [A-Za-z0-9._:-], which need no escaping); a smaller one gets the ids that fit. */
#define FX_AUTHZ_POLICIES_JSON_MAX (FX_AUTHZ_MAX_MATCHED * 131 + 8)
size_t fx_authz_policies_json(const fx_config *cfg, const fx_authz_decision *d, char *buf, size_t cap);

/* ---- the decision API and `ficus policy eval` ------------------------------------------ */

/* One check decided as the edge would decide the same request. */
typedef struct fx_authz_check_result {
    const char *reason;         /* permitted, forbidden, no_policy; or no_route, auth_none,
                                   missing_token, invalid_token, bad_method, bad_path, bad_host,
                                   ambiguous (a name policies read is repeated) */
    const fx_route_conf *route; /* NULL: no route matched */
    int decided;                /* the policies ran (o is filled) */
    int allow;
    fx_authz_outcome o;
    fx_authz_request req;       /* what the policies saw (slices into the check and the arena) */
    fx_jwt_claims *claims;      /* a verified token's claims (a reference), or NULL */
    const char *token_detail;   /* invalid_token: why (static text, no key material) */
    int token_ignored;          /* the config has no auth section: a token is not looked at */
} fx_authz_check_result;

/*
 * Routes the check (method, host, path), verifies its token with `aw`
 * exactly as at the edge (a token given as claims, for `ficus policy
 * eval`, is taken as it is), and decides. The caller frees res->claims.
 */
void fx_authz_check_run(const fx_config *cfg, fx_authn_worker *aw, const fx_authz_check *ck, uint64_t rng[2],
                        fx_arena *a, fx_authz_check_result *res);

/*
 * Routes a request given by its parts as the edge routes it: method name, Host header value
 * (p NULL: none), path without its query. Fills out->route, route_index and params (in `a`).
 * The route, or NULL with *reason: bad_method, bad_path (dot-segments: the edge answers 400),
 * bad_host, no_route, out_of_memory. The decision API and `ficus policy test -c` share it.
 */
const fx_route_conf *fx_authz_route(const fx_config *cfg, const char *method, fx_slice host_value,
                                   const char *path, fx_arena *a, fx_authz_request *out, const char **reason);

/* llhttp's number for a method name, or -1. */
int fx_authz_method_number(const char *name);

/* Main thread: links every route of `cfg` (not yet published) to its counters. */
int fx_route_stats_bind(fx_route_stats **registry, fx_config *cfg);
void fx_route_stats_free(fx_route_stats *registry);

#endif

/*
 * router.c — first-match routing over a config snapshot.
 *
 *   fx_router_match     walk the routes in order
 *   fx_route_matches    one route: host, method bitmask, then the path
 *   match_template      segment-by-segment compare, binding {params}
 *
 * Paths are matched byte for byte as received (no percent-decoding): the
 * HTTP codec has already refused dot-segments, so "/api/../admin" can
 * never reach a route under a different prefix.
 */
#include "router.h"

#include <stdint.h>

static int host_matches(const fx_route_conf *r, fx_slice host)
{
    if (!r->host)
        return 1;
    return fx_slice_ieq(host, fx_slice_cstr(r->host));
}

static int match_template(const fx_route_conf *r, fx_slice path, fx_route_match *out)
{
    const char *p = path.p, *end = path.p + path.n;
    size_t np = 0;

    if (path.n == 0 || *p != '/')
        return 0;
    for (size_t i = 0; i < r->nsegs; i++) {
        const fx_path_seg *seg = &r->segs[i];
        if (p >= end || *p != '/')
            return 0;
        p++;
        const char *s = p;
        while (p < end && *p != '/')
            p++;
        size_t len = (size_t)(p - s);
        if (seg->is_param) {
            if (len == 0)
                return 0; /* {id} never binds an empty segment */
            if (out && np < FX_ROUTE_MAX_PARAMS) {
                out->params[np].name = fx_slice_make(seg->text, seg->len);
                out->params[np].value = fx_slice_make(s, len);
                np++;
            }
        } else if (len != seg->len || memcmp(s, seg->text, len) != 0) {
            return 0;
        }
    }
    /* a template matches the whole path; one trailing slash is not the same resource */
    if (p != end)
        return 0;
    if (out)
        out->nparams = np;
    return 1;
}

int fx_route_matches(const fx_route_conf *r, int method, fx_slice host, fx_slice path,
                     fx_route_match *out)
{
    if (r->methods && (method < 0 || method > 63 || !(r->methods & FX_METHOD_BIT(method))))
        return 0;
    if (!host_matches(r, host))
        return 0;
    switch (r->kind) {
    case FX_MATCH_PREFIX:
        if (path.n < r->path_len || memcmp(path.p, r->path, r->path_len) != 0)
            return 0;
        if (out)
            out->nparams = 0;
        return 1;
    case FX_MATCH_EXACT:
        if (path.n != r->path_len || memcmp(path.p, r->path, r->path_len) != 0)
            return 0;
        if (out)
            out->nparams = 0;
        return 1;
    case FX_MATCH_TEMPLATE:
        return match_template(r, path, out);
    }
    return 0;
}

const fx_route_conf *fx_router_match(const fx_config *cfg, int method, fx_slice host, fx_slice path,
                                     fx_route_match *out)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const fx_route_conf *r = &cfg->routes[i];
        if (fx_route_matches(r, method, host, path, out)) {
            if (out)
                out->route = r;
            return r;
        }
    }
    if (out) {
        out->route = NULL;
        out->nparams = 0;
    }
    return NULL;
}

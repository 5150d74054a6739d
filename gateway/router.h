/*
 * router.h — request → route, against the routes of a config snapshot.
 *
 * Routes are tried in file order; the first whose host, methods and path
 * match wins. Template routes bind their {params} as slices of the
 * request path (no copies). The router does no allocation.
 */
#ifndef FX_ROUTER_H
#define FX_ROUTER_H

#include "config.h"
#include "slice.h"

typedef struct fx_route_param {
    fx_slice name;
    fx_slice value;
} fx_route_param;

typedef struct fx_route_match {
    const fx_route_conf *route;
    size_t nparams;
    fx_route_param params[FX_ROUTE_MAX_PARAMS];
} fx_route_match;

/*
 * `method` is llhttp's method number; `host` the Host (or absolute-form
 * authority) without port, any case; `path` the request path without the
 * query string. Returns the route or NULL (404).
 */
const fx_route_conf *fx_router_match(const fx_config *cfg, int method, fx_slice host, fx_slice path,
                                     fx_route_match *out);

/* Does a single route match? (Used by the router and by `ficus check`.) */
int fx_route_matches(const fx_route_conf *r, int method, fx_slice host, fx_slice path,
                     fx_route_match *out);

#endif

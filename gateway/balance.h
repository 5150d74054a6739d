/*
 * balance.h — the side of a split (routes[].split, routes[].sticky).
 *
 * Without `sticky` each request draws a side at random, in proportion to
 * the weights. With it, the side is a weighted rendezvous hash (highest
 * random weight) of the request's sticky value: every side with weight > 0
 * scores -weight / ln(u), u in (0,1) a hash of (value, the side's upstream
 * name), and the highest score wins. The same value therefore lands on the
 * same side in every worker, process and reload for as long as the weights
 * (and the names) stay, and when the weights change only the values that
 * must move do: 10/90 → 20/80 moves about 10% of the values, all of them
 * from the side that shrank to the side that grew. A request without the value
 * (no token, claim, header or cookie) falls back to the weighted random draw.
 *
 * Nothing here allocates or keeps state: the random state is the worker's.
 */
#ifndef FX_BALANCE_H
#define FX_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ficus_authz.h"
#include "http1.h"
#include "slice.h"

/* Room for a rendered token claim used as the sticky value; a longer claim is
 * hashed by its first FX_BALANCE_VALUE_MAX - 1 bytes. */
#define FX_BALANCE_VALUE_MAX 512

/*
 * A 64-bit hash of p[0..n) under `seed` (not keyed against an attacker:
 * a client who picks its own sticky value can pick its side anyway). Fixed
 * forever: stickiness across restarts and versions depends on it.
 */
uint64_t fx_balance_hash(const void *p, size_t n, uint64_t seed);

/* Weighted random: the index into split[0..n) for the random number `rnd`
 * (uniform over 64 bits). A side of weight 0 is never chosen; the weights
 * must not all be 0 (the config refuses that). */
size_t fx_balance_weighted(const fx_split_conf *split, size_t n, uint64_t rnd);

/* Weighted rendezvous: the index into split[0..n) for the sticky value;
 * sides are named by cfg->upstreams[split[i].upstream].name. */
size_t fx_balance_rendezvous(const fx_config *cfg, const fx_split_conf *split, size_t n, fx_slice value);

/*
 * The route's sticky value in this request: the claim of the verified token
 * (rendered into buf, cap bytes), the first header of that name, the cookie,
 * or the client's address. FX_SLICE_NULL when the route is not sticky or the
 * request lacks the value (an empty value counts as absent).
 */
fx_slice fx_balance_sticky_value(const fx_route_conf *r, const fx_http_msg *req, const fx_jwt_claims *claims,
                                 const char *client_ip, char *buf, size_t cap);

/*
 * The upstream (index into cfg->upstreams) for a request on route `r`:
 * r->upstream without a split; else the sticky side when the request has
 * the value, the weighted random side (drawing from rng) when it has not.
 */
int fx_balance_choose(const fx_config *cfg, const fx_route_conf *r, const fx_http_msg *req,
                      const fx_jwt_claims *claims, const char *client_ip, uint64_t rng[2]);

#endif

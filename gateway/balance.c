/*
 * balance.c — the side of a split (see balance.h).
 *
 *   fx_balance_hash          the 64-bit hash behind stickiness (below)
 *   fx_balance_weighted      a random number → a side, in proportion to the weights
 *   fx_balance_rendezvous    a sticky value → a side, weighted highest random weight
 *   fx_balance_sticky_value  the value a route is sticky on, found in the request
 *   fx_balance_choose        all of it for one request (proxy.c)
 *
 * The hash. Blocks of 8 bytes (little-endian; the last one, possibly empty,
 * zero-padded) are folded one by one into a 64-bit state with
 * state = mix(state ^ block), where mix is the splitmix64 finalizer: a
 * bijection of 64-bit words in which every input bit flips each output bit
 * with probability close to 1/2. The state starts from mix(seed ^ K) with the
 * length folded in, so inputs that differ only in trailing zero bytes differ.
 * It is fast on the short strings hashed here (an upstream name, a user id),
 * every output bit depends on every input bit, and it is fixed forever:
 * changing it would move every sticky user at once.
 *
 * Rendezvous. For a value v, h = hash(v, SEED); each side i then gets
 * u_i = hash(name_i, h) mapped into (0,1) and the score -w_i / ln(u_i), which
 * is distributed so that side i wins with probability w_i / sum(w) (it is
 * the weighted "exponential race" of highest-random-weight hashing). Raising
 * one weight only raises that side's score, and lowering one only lowers
 * it, so a value moves from side X to side Y only when Y grew or X shrank:
 * nothing leaves a side that grew, nothing joins a side that shrank. With
 * two sides that is the least movement possible (10/90 → 20/80 moves 10%).
 */
#include "balance.h"

#include <math.h>
#include <string.h>

#include "log.h"
#include "authn.h"

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
#define LENMUL UINT64_C(0xc2b2ae3d27d4eb4f)
/* the seed of the value's hash: any constant, but this one for good */
#define STICKY_SEED UINT64_C(0x6669637573737469) /* "ficussti" */

/* splitmix64's finalizer (Stafford's mix13) */
static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* n <= 8 bytes as a little-endian word, zero-padded: the same on every host */
static inline uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

uint64_t fx_balance_hash(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = mix(seed ^ GOLDEN) ^ ((uint64_t)n * LENMUL);
    for (; n > 8; p += 8, n -= 8)
        h = mix(h ^ load_le(p, 8));
    return mix(h ^ load_le(p, n));
}


size_t fx_balance_weighted(const fx_split_conf *split, size_t n, uint64_t rnd)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += split[i].weight;
    /* rnd scaled to [0, total) by a 128-bit product: no modulo bias worth the name */
    uint64_t pick = (uint64_t)(((unsigned __int128)rnd * total) >> 64), acc = 0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        if (!split[i].weight)
            continue;
        acc += split[i].weight;
        if (pick < acc)
            return i;
        last = i;
    }
    return last; /* all weights 0: refused by the config, but never out of range */
}

/* the top 52 bits, centred in their interval: strictly inside (0,1), so ln(u) < 0 */
static inline double unit_open(uint64_t h)
{
    return ((double)(h >> 12) + 0.5) * 0x1p-52;
}

size_t fx_balance_rendezvous(const fx_config *cfg, const fx_split_conf *split, size_t n, fx_slice value)
{
    uint64_t hv = fx_balance_hash(value.p, value.n, STICKY_SEED);
    size_t best = 0;
    double best_score = -1.0;
    for (size_t i = 0; i < n; i++) {
        if (!split[i].weight)
            continue;
        const char *name = cfg->upstreams[split[i].upstream].name;
        double u = unit_open(fx_balance_hash(name, strlen(name), hv));
        double score = -(double)split[i].weight / log(u);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

fx_slice fx_balance_sticky_value(const fx_route_conf *r, const fx_http_msg *req, const fx_jwt_claims *claims,
                                 const char *client_ip, char *buf, size_t cap)
{
    fx_slice v = FX_SLICE_NULL;
    switch (r->sticky) {
    case FX_STICKY_TOKEN: {
        int n = claims ? fx_jwt_claim_render(claims, r->sticky_name, buf, cap) : -1;
        if (n > 0)
            v = fx_slice_make(buf, (size_t)n);
        break;
    }
    case FX_STICKY_HEADER: {
        const fx_http_header *h = fx_http_find_header(req, r->sticky_name, NULL);
        if (h)
            v = fx_slice_trim(h->value);
        break;
    }
    case FX_STICKY_COOKIE:
        if (!fx_authn_cookie(req, r->sticky_name, &v))
            v = FX_SLICE_NULL;
        break;
    case FX_STICKY_CLIENT_IP:
        if (client_ip)
            v = fx_slice_cstr(client_ip);
        break;
    default:
        break;
    }
    return v.n ? v : FX_SLICE_NULL;
}

int fx_balance_choose(const fx_config *cfg, const fx_route_conf *r, const fx_http_msg *req,
                      const fx_jwt_claims *claims, const char *client_ip, uint64_t rng[2])
{
    if (!r->nsplit)
        return r->upstream;
    char buf[FX_BALANCE_VALUE_MAX];
    fx_slice v = fx_balance_sticky_value(r, req, claims, client_ip, buf, sizeof(buf));
    size_t i = v.p ? fx_balance_rendezvous(cfg, r->split, r->nsplit, v)
                   : fx_balance_weighted(r->split, r->nsplit, fx_rng_next(rng));
    return r->split[i].upstream;
}

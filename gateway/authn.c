/*
 * authn.c — the request's token, verified (see authn.h).
 *
 *   find_token        auth.token_from in order: a header ("Bearer" scheme for
 *                     Authorization) or a cookie (fx_authn_cookie, also the
 *                     value of a split sticky on a cookie: balance.c)
 *   fx_authn_check    route mode → token → cache → fx_jwt_verify → result
 *   fx_authn_*_keys   the worker's mailbox for the key sets of jwks_uri issuers
 *
 * The verification itself (alg pinning, signature, claims) is the authz
 * library's; this file only decides which token and which issuers, and
 * remembers verified tokens per worker until they expire. A cache entry
 * counts only under the generation it was verified in: the config's auth
 * fingerprint mixed with the fingerprint of the worker's jwks_uri key sets,
 * so a key rotated out at the provider stops verifying cached tokens too.
 */
#include "authn.h"

#include <string.h>
#include <time.h>

#define FX_JWT_CACHE_ENTRIES 10000

int fx_authn_worker_init(fx_authn_worker *aw)
{
    memset(aw, 0, sizeof(*aw));
    atomic_init(&aw->jwks_next, NULL);
    aw->cache = fx_jwt_cache_new(FX_JWT_CACHE_ENTRIES);
    aw->no_keys = fx_jwt_keyset_new();
    return aw->cache && aw->no_keys ? 0 : -1;
}

void fx_authn_worker_free(fx_authn_worker *aw)
{
    if (aw->cache)
        fx_jwt_cache_free(aw->cache);
    aw->cache = NULL;
    fx_jwks_table_unref(atomic_exchange(&aw->jwks_next, NULL));
    fx_jwks_table_unref(aw->jwks);
    aw->jwks = NULL;
    if (aw->no_keys)
        fx_jwt_keyset_unref(aw->no_keys);
    aw->no_keys = NULL;
}

/* One owner at a time: the slot's pointer moves by exchange, so neither side frees what the other holds. */
void fx_authn_offer_keys(fx_authn_worker *aw, fx_jwks_table *t)
{
    fx_jwks_table_unref(atomic_exchange(&aw->jwks_next, fx_jwks_table_ref(t)));
}

void fx_authn_take_keys(fx_authn_worker *aw)
{
    fx_jwks_table *t = atomic_exchange(&aw->jwks_next, NULL);
    if (!t)
        return;
    fx_jwks_table_unref(aw->jwks);
    aw->jwks = t;
}

int fx_authn_keys_taken(fx_authn_worker *aw)
{
    return atomic_load(&aw->jwks_next) == NULL;
}

/* splitmix64's finalizer: the cache generation from the two fingerprints */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* "Bearer <token>": scheme case-insensitive (RFC 7235), one or more spaces, token68. */
static int bearer(fx_slice v, fx_slice *tok)
{
    if (v.n < 7 || strncasecmp(v.p, "Bearer", 6) != 0 || (v.p[6] != ' '))
        return 0;
    fx_slice t = fx_slice_trim(fx_slice_make(v.p + 7, v.n - 7));
    if (t.n == 0 || memchr(t.p, ' ', t.n))
        return 0;
    *tok = t;
    return 1;
}

/* The first cookie `name` (case-sensitive, RFC 6265) in any Cookie header, quotes removed. */
int fx_authn_cookie(const fx_http_msg *m, const char *name, fx_slice *out)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->nheaders; i++) {
        if (!fx_slice_ieq_lit(m->headers[i].name, "cookie"))
            continue;
        fx_slice v = m->headers[i].value;
        const char *p = v.p, *end = v.p + v.n;
        while (p < end) {
            const char *s = p;
            while (p < end && *p != ';')
                p++;
            fx_slice pair = fx_slice_trim(fx_slice_make(s, (size_t)(p - s)));
            if (p < end)
                p++;
            const char *eq = memchr(pair.p, '=', pair.n);
            if (!eq || (size_t)(eq - pair.p) != nl || memcmp(pair.p, name, nl) != 0)
                continue;
            fx_slice val = fx_slice_make(eq + 1, (size_t)(pair.p + pair.n - eq - 1));
            if (val.n >= 2 && val.p[0] == '"' && val.p[val.n - 1] == '"')
                val = fx_slice_make(val.p + 1, val.n - 2);
            *out = val;
            return 1;
        }
    }
    return 0;
}

/*
 * The first token source that is present wins. Returns 1 with *tok, 0 when
 * none is present, -1 when a source is present but unusable (two
 * Authorization headers, a non-Bearer scheme): that is a malformed token,
 * not an anonymous request.
 */
static int find_token(const fx_auth_conf *a, const fx_http_msg *m, fx_slice *tok)
{
    for (size_t i = 0; i < a->ntoken_from; i++) {
        const fx_token_from_conf *tf = &a->token_from[i];
        if (tf->kind == FX_TOKEN_COOKIE) {
            if (fx_authn_cookie(m, tf->name, tok))
                return tok->n ? 1 : -1;
            continue;
        }
        int count = 0;
        const fx_http_header *h = fx_http_find_header(m, tf->name, &count);
        if (!h)
            continue;
        if (count > 1)
            return -1;
        if (!strcasecmp(tf->name, "authorization"))
            return bearer(h->value, tok) ? 1 : -1;
        *tok = fx_slice_trim(h->value);
        return tok->n ? 1 : -1;
    }
    return 0;
}

static const char *reason_detail(fx_jwt_reason r)
{
    switch (r) {
    case FX_JWT_MISSING: return "no token";
    case FX_JWT_MALFORMED: return "the token is malformed";
    case FX_JWT_BAD_SIGNATURE: return "the token's signature does not verify";
    case FX_JWT_UNKNOWN_KID: return "the token's key is not known";
    case FX_JWT_ALG_MISMATCH: return "the token's algorithm is not the one its key is pinned to";
    case FX_JWT_EXPIRED: return "the token has expired";
    case FX_JWT_NOT_YET_VALID: return "the token is not valid yet";
    case FX_JWT_BAD_AUDIENCE: return "the token is not meant for this audience";
    case FX_JWT_BAD_ISSUER: return "the token's issuer is not trusted";
    default: return "the token was refused";
    }
}

void fx_authn_check(fx_authn_worker *aw, const fx_config *cfg, const fx_route_conf *route,
                    const fx_http_msg *req, fx_authn_result *out)
{
    out->reason = FX_JWT_OK;
    out->detail = NULL;
    out->claims = NULL;
    const fx_auth_conf *a = cfg->auth;
    if (!a || route->auth == FX_AUTH_NONE)
        return;
    fx_slice tok;
    int found = find_token(a, req, &tok);
    if (found == 0) {
        if (route->auth == FX_AUTH_REQUIRED) {
            out->reason = FX_JWT_MISSING;
            out->detail = reason_detail(FX_JWT_MISSING);
            atomic_fetch_add_explicit(&aw->rejections[FX_JWT_MISSING], 1, memory_order_relaxed);
        }
        return;
    }
    if (found < 0) {
        out->reason = FX_JWT_MALFORMED;
        out->detail = "the credentials are not a single Bearer token";
        atomic_fetch_add_explicit(&aw->rejections[FX_JWT_MALFORMED], 1, memory_order_relaxed);
        return;
    }
    fx_authn_verify(aw, cfg, tok.p, tok.n, out);
}

void fx_authn_verify(fx_authn_worker *aw, const fx_config *cfg, const char *token, size_t len,
                     fx_authn_result *out)
{
    const fx_auth_conf *a = cfg->auth;
    fx_slice tok = fx_slice_make(token, len);
    out->reason = FX_JWT_OK;
    out->detail = NULL;
    out->claims = NULL;
    if (!a) {
        out->reason = FX_JWT_BAD_ISSUER;
        out->detail = "the configuration has no auth section: no issuer is trusted";
        return;
    }
    int64_t now = (int64_t)time(NULL);
    int64_t skew = (int64_t)(a->clock_skew_ms / 1000);
    uint64_t gen = aw->jwks ? mix(a->fingerprint ^ aw->jwks->fingerprint) : a->fingerprint;
    const fx_jwt_claims *hit = fx_jwt_cache_get(aw->cache, tok.p, tok.n, now, gen);
    if (hit) {
        out->claims = fx_jwt_claims_ref((fx_jwt_claims *)hit);
        atomic_fetch_add_explicit(&aw->accepted, 1, memory_order_relaxed);
        return;
    }
    fx_jwt_issuer iss[16];
    size_t n = 0;
    int remote = 0;
    for (size_t i = 0; i < a->nissuers && n < 16; i++) {
        const fx_issuer_conf *ic = &a->issuers[i];
        const fx_jwt_keyset *keys = ic->keyset;
        if (ic->jwks_uri) {
            /* the worker's own reference; no key set yet: an empty one, so the token is an
             * unknown kid (which asks for a refetch), not an unknown issuer */
            const fx_jwks_entry *e = fx_jwks_table_find(aw->jwks, ic->jwks_uri);
            keys = e && e->keys ? e->keys : aw->no_keys;
            remote = 1;
        }
        if (!keys)
            continue;
        iss[n].issuer = ic->issuer;
        iss[n].audiences = (const char *const *)ic->audiences;
        iss[n].naudiences = ic->naudiences;
        iss[n].keys = keys;
        n++;
    }
    fx_jwt_claims *claims = NULL;
    const char *detail = NULL;
    fx_jwt_reason r = fx_jwt_verify(iss, n, tok.p, tok.n, now, skew, &claims, &detail);
    if (r != FX_JWT_OK) {
        out->reason = r;
        out->detail = detail ? detail : reason_detail(r);
        atomic_fetch_add_explicit(&aw->rejections[r], 1, memory_order_relaxed);
        if (r == FX_JWT_UNKNOWN_KID && remote)
            fx_jwks_bell_ring(aw->bell); /* maybe rotated at the provider; the main thread rate-limits */
        return;
    }
    fx_jwt_cache_put(aw->cache, tok.p, tok.n, claims, fx_jwt_claims_exp(claims) + skew, gen);
    out->claims = claims;
    atomic_fetch_add_explicit(&aw->accepted, 1, memory_order_relaxed);
}

int fx_authn_is_identity_header(const fx_config *cfg, fx_slice name)
{
    const fx_auth_conf *a = cfg->auth;
    if (!a)
        return 0;
    for (size_t i = 0; i < a->nforward; i++)
        if (fx_slice_ieq_lit(name, a->forward[i].header))
            return 1;
    return 0;
}

int fx_authn_forward_token(const fx_config *cfg)
{
    return !cfg->auth || cfg->auth->forward_token;
}

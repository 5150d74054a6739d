/*
 * authn.h — authentication at the edge: find the token a request carries,
 * verify it (through authz/ficus_authz.h, with a per-worker cache), and
 * say who the caller is.
 *
 * Types first. Runs on the worker thread; the state it keeps is the
 * worker's verification cache, its rejection counters and its reference to
 * the key sets of jwks_uri issuers (jwks.h), which the main thread replaces
 * through the worker's mailbox.
 */
#ifndef FX_AUTHN_H
#define FX_AUTHN_H

#include <stdatomic.h>

#include "config.h"
#include "ficus_authz.h"
#include "http1.h"
#include "jwks.h"
#include "slice.h"

/* Per-worker state: the cache, the counters /metrics sums up, the remote key sets. */
typedef struct fx_authn_worker {
    fx_jwt_cache *cache;
    atomic_ulong rejections[FX_JWT_BAD_ISSUER + 1]; /* indexed by fx_jwt_reason */
    atomic_ulong accepted;
    fx_jwks_table *jwks;          /* worker-local reference: the key sets of jwks_uri issuers */
    _Atomic(fx_jwks_table *) jwks_next; /* mailbox: put by the main thread, taken on FX_CTL_KEYS */
    fx_jwks_bell *bell;           /* unknown kid at a jwks_uri issuer: ask for a refetch */
    fx_jwt_keyset *no_keys;       /* an empty set for jwks_uri issuers not fetched yet */
} fx_authn_worker;

typedef struct fx_authn_result {
    fx_jwt_reason reason;          /* FX_JWT_OK also when no token was needed */
    const char *detail;            /* static; for the 401 and the log */
    fx_jwt_claims *claims;         /* a reference, or NULL (anonymous); the caller unrefs */
} fx_authn_result;

int fx_authn_worker_init(fx_authn_worker *aw);
void fx_authn_worker_free(fx_authn_worker *aw);

/* Main thread: puts `t` (a new reference is taken) in the worker's mailbox; the caller then
 * wakes the worker with FX_CTL_KEYS. An older table not taken yet is dropped. */
void fx_authn_offer_keys(fx_authn_worker *aw, fx_jwks_table *t);
/* Worker thread (FX_CTL_KEYS): adopts the table in the mailbox, if any. */
void fx_authn_take_keys(fx_authn_worker *aw);
/* Any thread: has the worker taken the last table offered? */
int fx_authn_keys_taken(fx_authn_worker *aw);

/*
 * Authenticates `req` for `route`: auth none → nothing is checked; optional
 * → a token, if present, must be valid; required (default) → a valid token
 * must be present. With no `auth` section, every route is treated as
 * `none`... unless it asks for auth, which `ficus check` refuses.
 */
void fx_authn_check(fx_authn_worker *aw, const fx_config *cfg, const fx_route_conf *route,
                    const fx_http_msg *req, fx_authn_result *out);

/* Verifies a token given as such (the decision API): the same issuers, keys, cache and
 * counters as fx_authn_check. */
void fx_authn_verify(fx_authn_worker *aw, const fx_config *cfg, const char *token, size_t len,
                     fx_authn_result *out);

/* Is this header one the gateway owns for identity (auth.forward), so a client copy is dropped? */
int fx_authn_is_identity_header(const fx_config *cfg, fx_slice name);

/* Should the request's Authorization header go upstream (auth.forward_token)? */
int fx_authn_forward_token(const fx_config *cfg);

/* The value of the first cookie `name` in the request's Cookie headers (surrounding quotes removed; may be
 * empty): 1 with *out pointing into the request, or 0 when there is none. Used for cookie tokens and for
 * splits sticky on a cookie. */
int fx_authn_cookie(const fx_http_msg *m, const char *name, fx_slice *out);

#endif

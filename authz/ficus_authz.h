/*
 * ficus_authz.h — the public interface of ficus's authorization library.
 *
 * The gateway uses this library through this header only, and so can an
 * extracted service: link libfxauthz (no libevent dependency) and verify
 * the same tokens, with the same rules, in-process.
 *
 * This part: JSON Web Tokens. Keys are pinned to one algorithm each;
 * verification is strict (see docs/security.md for what is checked where).
 * Types first, then functions. Every function that can fail returns a
 * status and, where a person must act, a message that never contains key
 * material.
 */
#ifndef FICUS_AUTHZ_H
#define FICUS_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types ------------------------------------------------------------------------ */

/* Algorithms a key can be pinned to. 0 is "none", which is never accepted. */
typedef enum fx_jwt_algorithm {
    FX_JWT_ALG_NONE = 0,
    FX_JWT_ALG_HS256, FX_JWT_ALG_HS384, FX_JWT_ALG_HS512,
    FX_JWT_ALG_RS256, FX_JWT_ALG_RS384, FX_JWT_ALG_RS512,
    FX_JWT_ALG_ES256, FX_JWT_ALG_ES384,
    FX_JWT_ALG_PS256,
} fx_jwt_algorithm;

/* Why a token was refused. The names (fx_jwt_reason_name) are the metric labels
 * of ficus_jwt_rejections_total{reason}. */
typedef enum fx_jwt_reason {
    FX_JWT_OK = 0,
    FX_JWT_MISSING,        /* "missing": no token where one is required */
    FX_JWT_MALFORMED,      /* "malformed": not three base64url segments of JSON, bad types, too big */
    FX_JWT_BAD_SIGNATURE,  /* "bad_signature" */
    FX_JWT_UNKNOWN_KID,    /* "unknown_kid": no key with that kid (or no kid and no unique key) */
    FX_JWT_ALG_MISMATCH,   /* "alg_mismatch": header alg is not the key's pinned alg (or is none) */
    FX_JWT_EXPIRED,        /* "expired": exp missing or in the past */
    FX_JWT_NOT_YET_VALID,  /* "not_yet_valid": nbf or iat in the future */
    FX_JWT_BAD_AUDIENCE,   /* "bad_audience": aud missing or none of the issuer's audiences */
    FX_JWT_BAD_ISSUER,     /* "bad_issuer": iss missing or not a configured issuer */
} fx_jwt_reason;

/* An immutable set of keys (after loading), reference-counted, shareable across threads. */
typedef struct fx_jwt_keyset fx_jwt_keyset;

/* Verified claims: immutable, reference-counted, shareable across threads. */
typedef struct fx_jwt_claims fx_jwt_claims;

/* One trusted issuer for fx_jwt_verify (all pointers borrowed). */
typedef struct fx_jwt_issuer {
    const char *issuer;                 /* the exact "iss" value */
    const char *const *audiences;       /* "aud" must contain one of these */
    size_t naudiences;
    const fx_jwt_keyset *keys;
} fx_jwt_issuer;

/* A per-thread verification cache (bounded LRU). Not thread-safe by design. */
typedef struct fx_jwt_cache fx_jwt_cache;

/* Largest token fx_jwt_verify looks at; longer ones are FX_JWT_MALFORMED. */
#define FX_JWT_MAX_TOKEN 8192

/* ---- algorithms and reasons ----------------------------------------------------------- */

/* "HS256"... ; NULL for FX_JWT_ALG_NONE. */
const char *fx_jwt_alg_name(fx_jwt_algorithm alg);
/* Exact, case-sensitive ("hs256" and "none" give FX_JWT_ALG_NONE). */
fx_jwt_algorithm fx_jwt_alg_parse(const char *s, size_t len);
const char *fx_jwt_reason_name(fx_jwt_reason r);

/* ---- keys -------------------------------------------------------------------------------- */

fx_jwt_keyset *fx_jwt_keyset_new(void);
fx_jwt_keyset *fx_jwt_keyset_ref(fx_jwt_keyset *ks);
void fx_jwt_keyset_unref(fx_jwt_keyset *ks);
size_t fx_jwt_keyset_count(const fx_jwt_keyset *ks);
/* Whether a key with this kid is in the set. */
int fx_jwt_keyset_has_kid(const fx_jwt_keyset *ks, const char *kid, size_t len);

/*
 * Adds every key of a JWK Set (RFC 7517 JSON: {"keys":[...]}): RSA (n, e),
 * EC P-256 / P-384 (crv, x, y), oct (k). Each key's algorithm comes from its
 * "alg" (required for RSA and oct; EC may omit it: the curve decides). Keys
 * with "use" other than "sig" are skipped. Weak keys (HMAC secrets shorter
 * than 32/48/64 bytes for HS256/384/512, RSA under 2048 bits, an EC curve
 * that does not match the alg) are errors. Returns 0, or -1 with `err` set
 * (and nothing added).
 */
int fx_jwt_keyset_add_jwks(fx_jwt_keyset *ks, const char *json, size_t len, char *err,
                           size_t errlen);
/* A public key in PEM (SubjectPublicKeyInfo) pinned to `alg` (RS*, PS256, ES*). kid may be NULL. */
int fx_jwt_keyset_add_pem(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg,
                          const char *pem, size_t len, char *err, size_t errlen);
/* An HMAC secret pinned to `alg` (HS*). kid may be NULL. */
int fx_jwt_keyset_add_secret(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg,
                             const unsigned char *secret, size_t len, char *err, size_t errlen);

/* ---- verification ------------------------------------------------------------------------- */

/*
 * Verifies `token` against the issuers: structure and sizes first, then the
 * header (alg, kid), the key (selected by kid within the issuer named by
 * "iss"; with no kid, only an issuer with exactly one key of the header's
 * alg matches), the signature, then exp (required), nbf, iat, iss and aud,
 * with `skew_s` seconds of clock skew. jku, x5u, jwk and x5c headers are
 * ignored, never fetched. On FX_JWT_OK *claims gets a new reference; on
 * refusal *detail (if not NULL) gets a static, human-readable sentence.
 */
fx_jwt_reason fx_jwt_verify(const fx_jwt_issuer *issuers, size_t nissuers, const char *token,
                            size_t len, int64_t now, int64_t skew_s, fx_jwt_claims **claims,
                            const char **detail);

fx_jwt_claims *fx_jwt_claims_ref(fx_jwt_claims *c);
void fx_jwt_claims_unref(fx_jwt_claims *c);
/* "exp" of verified claims (always present). */
int64_t fx_jwt_claims_exp(const fx_jwt_claims *c);
/*
 * A claim rendered for a header: string as is, integer in decimal, true /
 * false, an array of strings or numbers joined with ","; objects and nested
 * arrays as compact JSON. Dotted names ("org.id") walk into objects.
 * Returns the length written (truncated to cap - 1, NUL-terminated), or -1
 * when the claim is absent or null.
 */
int fx_jwt_claim_render(const fx_jwt_claims *c, const char *name, char *buf, size_t cap);
/* The decoded payload as compact JSON (for policies and logs); borrowed, NUL-terminated. */
const char *fx_jwt_claims_json(const fx_jwt_claims *c);

/* ---- cache --------------------------------------------------------------------------------- */

fx_jwt_cache *fx_jwt_cache_new(size_t capacity);
void fx_jwt_cache_free(fx_jwt_cache *cache);
/*
 * The claims of a token verified earlier (borrowed; valid until the next
 * cache call), or NULL. An entry counts only for the same `generation` (the
 * caller changes it whenever the keys or issuers change) and while
 * now < exp + skew. Hits compare the whole token, not just its hash.
 */
const fx_jwt_claims *fx_jwt_cache_get(fx_jwt_cache *cache, const char *token, size_t len,
                                      int64_t now, uint64_t generation);
/* Remembers verified claims (takes a new reference), evicting the least recently used. */
void fx_jwt_cache_put(fx_jwt_cache *cache, const char *token, size_t len,
                      fx_jwt_claims *claims, int64_t valid_until, uint64_t generation);

/* ---- minting (dev and tests: `ficus token`) --------------------------------------------------- */

/*
 * Signs a token: header {"alg", "typ":"JWT", "kid"?}, payload = claims_json
 * (an object) plus "iat" and "exp" = now + ttl_s unless the claims set them.
 * `key` is a PEM private key for RS/PS/ES, or the raw secret for HS.
 * Returns a malloc'd NUL-terminated token, or NULL with `err` set.
 */
char *fx_jwt_mint(fx_jwt_algorithm alg, const unsigned char *key, size_t keylen, const char *kid,
                  const char *claims_json, int64_t now, int64_t ttl_s, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif

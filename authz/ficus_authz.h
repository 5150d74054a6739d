/*
 * ficus_authz.h — the public interface of ficus's authorization library.
 *
 * The gateway uses this library through this header only, and so can an
 * extracted service: link libfxauthz (no libevent dependency) and verify
 * the same tokens, with the same rules, in-process.
 *
 * Two parts. JSON Web Tokens: keys are pinned to one algorithm each;
 * verification is strict (see docs/security.md for what is checked where).
 * Policies: policy files (docs/policy-language.md) are compiled once into an
 * immutable set, indexed by route, and evaluated with no allocation and no
 * parsing — the same code the gateway runs on every request.
 * Within each part, types first, then functions. Every function that can fail returns a
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

/* =========================================================================================
 * Policies
 * ========================================================================================= */

/* ---- types ------------------------------------------------------------------------ */

/* A positioned problem found while loading policies or policy tests:
 * "FILE:LINE:COL: error: MESSAGE" (line and col 1-based; 0 when unknown). */
typedef struct fx_authz_diag {
    char *file;
    int line, col;
    char *msg;
} fx_authz_diag;

typedef struct fx_authz_diags {
    fx_authz_diag *v;
    size_t n, cap;
} fx_authz_diags;

/* A JSON value (an object, usually): a token's claims or a request's context. */
typedef struct fx_authz_doc fx_authz_doc;

/* A byte string that is not NUL-terminated (slices of the caller's memory). */
typedef struct fx_authz_str {
    const char *p;
    size_t len;
} fx_authz_str;

typedef struct fx_authz_kv {
    fx_authz_str name, value;
} fx_authz_kv;

/*
 * What a policy sees of a request. Everything is borrowed for the duration
 * of one evaluation. Header names are matched case-insensitively (the
 * first header of a name wins); params and query keys exactly. Query values
 * are the decoded values. `route_index` comes from fx_policy_set_route()
 * (-1: a route the set does not know; only policies without `routes` apply).
 */
typedef struct fx_authz_request {
    fx_authz_str method, path, route;
    int route_index;
    const fx_authz_kv *params;
    size_t nparams;
    const fx_authz_kv *headers;
    size_t nheaders;
    const fx_authz_kv *query;
    size_t nquery;
    const fx_authz_doc *token;   /* verified claims (fx_jwt_claims_doc), or NULL: anonymous */
    const fx_authz_doc *context; /* NULL: an empty object */
} fx_authz_request;

typedef enum fx_policy_effect {
    FX_POLICY_PERMIT = 1,
    FX_POLICY_FORBID = 2,
} fx_policy_effect;

typedef enum fx_authz_reason {
    FX_AUTHZ_NO_MATCH = 0, /* "no_policy": no policy permits (default deny) */
    FX_AUTHZ_FORBIDDEN,    /* "forbidden": a matching forbid (it overrides any permit) */
    FX_AUTHZ_PERMITTED,    /* "permitted": a matching permit and no matching forbid */
} fx_authz_reason;

/* At most this many matching policy indices are kept in a decision (nmatched counts all). */
#define FX_AUTHZ_MAX_MATCHED 16

typedef struct fx_authz_decision {
    int allow;              /* 1 only for FX_AUTHZ_PERMITTED */
    fx_authz_reason reason;
    size_t nmatched;        /* the policies that decided: the forbids that matched when
                               forbidden, else the permits that matched */
    uint32_t matched[FX_AUTHZ_MAX_MATCHED]; /* their indices (fx_policy_id), in file order */
} fx_authz_decision;

/* Why a policy did or did not take part in a decision (fx_policy_explain). */
typedef enum fx_policy_outcome {
    FX_POLICY_NOT_FOR_ROUTE = 1, /* `routes` does not list the request's route */
    FX_POLICY_NOT_FOR_METHOD,    /* `methods` does not list the request's method */
    FX_POLICY_WHEN_FALSE,        /* `when` was false (see fx_policy_explain_item.why) */
    FX_POLICY_MATCHED,
} fx_policy_outcome;

typedef struct fx_policy_explain_item {
    uint32_t policy;             /* index */
    fx_policy_outcome outcome;
    /* FX_POLICY_WHEN_FALSE: the part of the `when` source that made it false (the first
     * false operand of a top-level &&, else the whole expression); borrowed from the set. */
    fx_authz_str why;
    /* The first field the evaluation looked for and did not find ("token.roles"), or an
     * empty string: a missing field makes its comparison false. Borrowed from the set. */
    fx_authz_str missing;
} fx_policy_explain_item;

/* Loads policy files, then becomes an immutable set. */
typedef struct fx_policy_builder fx_policy_builder;

/* An immutable, reference-counted policy set, shareable across threads. */
typedef struct fx_policy_set fx_policy_set;

/* fx_policy_set_needs(): which parts of a request the set's expressions read, so a caller
 * can skip building what no policy looks at. */
#define FX_AUTHZ_NEEDS_HEADERS 0x1u
#define FX_AUTHZ_NEEDS_QUERY   0x2u
#define FX_AUTHZ_NEEDS_PARAMS  0x4u
#define FX_AUTHZ_NEEDS_CONTEXT 0x8u
#define FX_AUTHZ_NEEDS_TOKEN   0x10u

/* One case of a policy test file (a YAML file under policies/tests; docs/policy-language.md). */
typedef struct fx_policy_case {
    char *name;
    char *file;
    int line, col;               /* the case's position */
    char *method, *path;
    char *route;                 /* NULL: not given (the caller's router decides) */
    fx_authz_kv *params, *headers, *query; /* malloc'd copies, NUL-terminated strings */
    size_t nparams, nheaders, nquery;
    fx_authz_doc *token;         /* NULL: no token (anonymous) */
    fx_authz_doc *context;       /* NULL: none */
    int expect_allow;            /* expect: allow | deny */
    char **expect_policies;      /* `policies:` the matching policy ids, when given */
    size_t nexpect_policies;
    int has_expect_policies;
} fx_policy_case;

typedef struct fx_policy_cases {
    fx_policy_case *v;
    size_t n, cap;
} fx_policy_cases;

/* ---- diagnostics and documents ------------------------------------------------------------ */

void fx_authz_diags_free(fx_authz_diags *d);
/* Prints every diagnostic as "FILE:LINE:COL: error: MESSAGE\n" to a stdio FILE *. */
void fx_authz_diags_print(const fx_authz_diags *d, void *stdio_file);

/* Parses JSON text (at most 1 MiB, nesting at most 64). NULL with `err` set on failure. */
fx_authz_doc *fx_authz_doc_parse(const char *json, size_t len, char *err, size_t errlen);
void fx_authz_doc_free(fx_authz_doc *d);
/* Verified claims as a document (borrowed: lives as long as the claims). */
const fx_authz_doc *fx_jwt_claims_doc(const fx_jwt_claims *c);

/* ---- loading ------------------------------------------------------------------------------ */

/*
 * `routes` are the route names policies may refer to (copied); NULL accepts
 * any name (a service loading policies without the gateway's config).
 */
fx_policy_builder *fx_policy_builder_new(const char *const *routes, size_t nroutes);
/* Reads and compiles one policy file (YAML). Returns 0, or -1 with positioned diagnostics. */
int fx_policy_builder_add_file(fx_policy_builder *b, const char *path, fx_authz_diags *d);
/* The same for text in memory; `name` is the file name used in diagnostics. */
int fx_policy_builder_add_buffer(fx_policy_builder *b, const char *name, const char *buf,
                                 size_t len, fx_authz_diags *d);
/* Frees the builder and returns the set, or NULL if any file added had an error (all or
 * nothing: a caller that keeps its old set on NULL never runs on half a policy set). */
fx_policy_set *fx_policy_builder_finish(fx_policy_builder *b, fx_authz_diags *d);
void fx_policy_builder_free(fx_policy_builder *b);

fx_policy_set *fx_policy_set_ref(fx_policy_set *s);
void fx_policy_set_unref(fx_policy_set *s);
size_t fx_policy_set_count(const fx_policy_set *s);
unsigned fx_policy_set_needs(const fx_policy_set *s);
/*
 * Does some policy read this request header (names compare case-insensitively) or this
 * query parameter? Also 1 for every name when a policy reads one by a computed name.
 * Policies see the first of repeated headers or parameters; a caller that forwards the
 * request must refuse one whose repeated name a policy reads (the upstream may read
 * another copy than the policy did). The gateway answers 400.
 */
int fx_policy_set_reads_header(const fx_policy_set *s, const char *name, size_t len);
int fx_policy_set_reads_query(const fx_policy_set *s, const char *name, size_t len);
/* The index of a route name for fx_authz_request.route_index, or -1. */
int fx_policy_set_route(const fx_policy_set *s, const char *name, size_t len);
const char *fx_policy_id(const fx_policy_set *s, uint32_t policy);
fx_policy_effect fx_policy_effect_of(const fx_policy_set *s, uint32_t policy);
/* Where the policy was written (for messages). */
const char *fx_policy_file(const fx_policy_set *s, uint32_t policy, int *line, int *col);

/* ---- evaluation ----------------------------------------------------------------------------- */

/*
 * Decides `req` with Cedar's semantics: no matching policy → deny; any
 * matching forbid → deny; else a matching permit → allow. Only the
 * policies of req->route_index and those without `routes` are looked at.
 * No allocation, no parsing, no locks: call it from any thread.
 */
void fx_policy_eval(const fx_policy_set *s, const fx_authz_request *req, fx_authz_decision *out);
/* "permitted" / "forbidden" / "no_policy". */
const char *fx_authz_reason_name(fx_authz_reason r);
/*
 * The same decision, with every policy of the set reported to `fn` in file
 * order: why it did or did not match. Slower than fx_policy_eval (it does
 * not skip anything); for `ficus policy eval` and tests.
 */
void fx_policy_explain(const fx_policy_set *s, const fx_authz_request *req, fx_authz_decision *out,
                       void (*fn)(void *arg, const fx_policy_explain_item *item), void *arg);

/* ---- policy tests ----------------------------------------------------------------------------- */

/* Appends the cases of one test file (YAML: `tests: [...]`). 0, or -1 with diagnostics
 * (then nothing of that file is appended). */
int fx_policy_cases_load_file(fx_policy_cases *cases, const char *path, fx_authz_diags *d);
int fx_policy_cases_load_buffer(fx_policy_cases *cases, const char *name, const char *buf,
                                size_t len, fx_authz_diags *d);
void fx_policy_cases_free(fx_policy_cases *cases);

/* ---- decision requests (the decision API's JSON) ------------------------------------------ */

/*
 * One check: {"token": "...", "method": "PUT", "path": "/api/documents/42?x=1",
 * "host": "...", "headers": {...}, "context": {...}}. method and path are
 * required; the query is the part of path after '?'. With allow_claims,
 * "token" may also be an object of claims taken as they are (for
 * `ficus policy eval`; the decision API never allows it).
 */
typedef struct fx_authz_check {
    char *method, *path, *query, *host; /* malloc'd, NUL-terminated; query/host NULL if absent */
    char *token;                        /* the JWT to verify, or NULL */
    fx_authz_doc *claims;               /* allow_claims: the token given as an object */
    fx_authz_kv *headers;               /* malloc'd strings */
    size_t nheaders;
    fx_authz_doc *context;              /* NULL: none */
} fx_authz_check;

typedef struct fx_authz_checks {
    fx_authz_check *v;
    size_t n;
    int batch; /* the body was {"checks": [...]} */
} fx_authz_checks;

/* At most this many checks in one batch. */
#define FX_AUTHZ_MAX_CHECKS 1000

/* Parses a decision request (one check or a batch). 0, or -1 with `err` saying what is
 * wrong and where ("checks[3].method: ..."); nothing is kept on error. */
int fx_authz_checks_parse(const char *json, size_t len, int allow_claims, fx_authz_checks *out,
                          char *err, size_t errlen);
void fx_authz_checks_free(fx_authz_checks *c);

#ifdef __cplusplus
}
#endif

#endif

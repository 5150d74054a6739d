/*
 * internal.h — what the files of the JWT part of libfxauthz share, and the
 * few hooks the unit tests and the fuzz harness reach for. Not installed,
 * not for the gateway: it uses ficus_authz.h only.
 *
 * Types first: a key (pinned to one algorithm, with its material parsed
 * once), the key set, then strict base64url (b64.c), and the internal
 * entry points of jwt.c and jwt_cache.c.
 */
#ifndef FX_AUTHZ_INTERNAL_H
#define FX_AUTHZ_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "ficus_authz.h"

/* ---- types ------------------------------------------------------------------------ */

/* Which material a key holds. An HS alg only ever meets FX_KEY_SECRET. */
typedef enum fx_jwt_key_kind {
    FX_KEY_SECRET = 1,
    FX_KEY_RSA,
    FX_KEY_EC,
} fx_jwt_key_kind;

typedef struct fx_jwt_key {
    char *kid; /* NULL: the key has no kid */
    size_t kidlen;
    fx_jwt_algorithm alg; /* the one algorithm this key verifies */
    fx_jwt_key_kind kind;
    unsigned char *secret; /* FX_KEY_SECRET */
    size_t secretlen;
    EVP_PKEY *pkey; /* FX_KEY_RSA / FX_KEY_EC */
    char *pem;      /* the public key as SPKI PEM, NUL-terminated: what libjwt reads */
    size_t pemlen;
    size_t sigsize; /* exact signature length in bytes (RSA: modulus; EC: 2 * coordinate) */
    BIGNUM *order;  /* FX_KEY_EC: the group order n, for the 0 < r, s < n check */
} fx_jwt_key;

struct fx_jwt_keyset {
    atomic_uint refs;
    size_t n, cap;
    fx_jwt_key *keys;
};

/* Which code checks the signature (see docs/security.md). */
typedef enum fx_jwt_backend {
    FX_JWT_BACKEND_AUTO = 0, /* libjwt for HS* with typ absent or "JWT", else OpenSSL */
    FX_JWT_BACKEND_LIBJWT,   /* jwt_decode() wherever it can (HS*, RS*, ES*; typ absent/"JWT") */
    FX_JWT_BACKEND_OPENSSL,  /* EVP directly; every alg */
} fx_jwt_backend;

/* ---- strict base64url (RFC 7515 §2: no padding, no other alphabet) -------------------- */

/*
 * Is `s` canonical unpadded base64url? Only A-Z a-z 0-9 - _, a length not
 * 1 mod 4, and zero bits left over in the last character (so every byte
 * string has exactly one accepted encoding). The empty string is valid.
 */
int fx_b64url_valid(const char *s, size_t len);
/* Decoded size of a valid encoding of `len` characters. */
size_t fx_b64url_decoded_len(size_t len);
/* Decodes a valid encoding into out (fx_b64url_decoded_len bytes); -1 if not valid. */
int fx_b64url_decode(const char *s, size_t len, unsigned char *out, size_t *outlen);
/* Encoded length (no NUL) of n bytes. */
size_t fx_b64url_encoded_len(size_t n);
/* Encodes n bytes into out (fx_b64url_encoded_len(n) + 1 bytes, NUL-terminated). */
void fx_b64url_encode(const unsigned char *in, size_t n, char *out);

/* ---- jwt.c ----------------------------------------------------------------------------- */

/* fx_jwt_verify with a forced backend (tests and the differential fuzz harness). A forced
 * libjwt backend for a token libjwt cannot take (PS256, typ other than JWT) falls back to
 * OpenSSL, as AUTO does. */
fx_jwt_reason fx_jwt_verify_with(const fx_jwt_issuer *issuers, size_t nissuers, const char *token,
                                 size_t len, int64_t now, int64_t skew_s, fx_jwt_claims **claims,
                                 const char **detail, fx_jwt_backend backend);

/* HMAC key sizes (RFC 7518 §3.2: at least the hash output) and RSA limits. */
size_t fx_jwt_min_secret(fx_jwt_algorithm alg);
#define FX_JWT_RSA_MIN_BITS 2048
#define FX_JWT_RSA_MAX_BITS 8192

/* ---- jwk.c ----------------------------------------------------------------------------- */

/* Checks an asymmetric key against `alg` (type, size, curve). 0, or -1 with err set. */
int fx_jwt_check_pkey(const EVP_PKEY *pkey, fx_jwt_algorithm alg, char *err, size_t errlen);

/* ---- jwt_cache.c ----------------------------------------------------------------------- */

/* Replaces the cache's token hash (tests: force every token into one hash value). */
typedef uint64_t (*fx_jwt_cache_hash_fn)(const char *token, size_t len, uint64_t seed);
void fx_jwt_cache_set_hash(fx_jwt_cache *cache, fx_jwt_cache_hash_fn fn);
/* Entries currently held (tests). */
size_t fx_jwt_cache_size(const fx_jwt_cache *cache);

#endif

/*
 * fuzz_jwt.c — libFuzzer harness for the JWT part of libfxauthz (authz/jwt.c,
 * jwk.c, jwt_cache.c, b64.c).
 *
 * The first byte picks what the rest of the input is:
 *
 *   0, 1  a token: fx_jwt_verify() against fixed issuers (the interop JWK Set
 *         of tests/data/jwt/interop, so its tokens make good seeds, plus an
 *         HS256 secret), then differentially: the libjwt and the OpenSSL
 *         backend forced in turn must give the same reason. Accepted tokens
 *         go through claims rendering and the cache.
 *   2     a JWK Set for fx_jwt_keyset_add_jwks(); a set that loads is queried
 *         and verifies a token signed with a key from the interop set.
 *   3     a PEM public key for fx_jwt_keyset_add_pem(), for every alg.
 *   4     claims JSON for fx_jwt_mint() (HS256); a minted token is verified.
 *
 * Everything is freed on every run, so leaks show up under ASan.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   build-fuzz/tests/fuzz/fuzz_jwt -max_len=9000 tests/data/jwt/fuzz
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ficus_authz.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

static const char fuzz_secret[] = "fuzz-only-hs256-secret-of-32+bytes!!";
static fx_jwt_keyset *interop, *local;
static fx_jwt_issuer issuers[2];
static const char *const aud_interop[] = {"interop"};
static const char *const aud_local[] = {"fuzz", "just-social"};

static void init(void)
{
    char path[1024], err[256];
    snprintf(path, sizeof(path), "%s/jwt/interop/jwks.json", FX_TEST_DATA_DIR);
    FILE *f = fopen(path, "rb");
    static char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f)
        fclose(f);
    interop = fx_jwt_keyset_new();
    if (fx_jwt_keyset_add_jwks(interop, buf, n, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_jwt: %s: %s\n", path, err);
        abort();
    }
    local = fx_jwt_keyset_new();
    if (fx_jwt_keyset_add_secret(local, "fuzz", FX_JWT_ALG_HS256,
                                 (const unsigned char *)fuzz_secret, strlen(fuzz_secret), err,
                                 sizeof(err)) != 0)
        abort();
    issuers[0] = (fx_jwt_issuer){"https://interop.example.com", aud_interop, 1, interop};
    issuers[1] = (fx_jwt_issuer){"https://fuzz.example.com", aud_local, 2, local};
}

static void use_claims(fx_jwt_claims *c, const uint8_t *tok, size_t len)
{
    static const char *const names[] = {"sub", "roles", "org.id", "aud", "exp", "a.b.c", ""};
    char out[64];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        fx_jwt_claim_render(c, names[i], out, sizeof(out));
    if (!fx_jwt_claims_json(c))
        abort();
    fx_jwt_cache *cache = fx_jwt_cache_new(2);
    fx_jwt_cache_put(cache, (const char *)tok, len, c, fx_jwt_claims_exp(c), 1);
    if (fx_jwt_cache_get(cache, (const char *)tok, len, NOW, 1) != c &&
        NOW < fx_jwt_claims_exp(c))
        abort();
    fx_jwt_cache_free(cache);
}

static void fuzz_token(const uint8_t *tok, size_t len)
{
    fx_jwt_claims *c = NULL;
    const char *detail = NULL;
    fx_jwt_reason r = fx_jwt_verify(issuers, 2, (const char *)tok, len, NOW, 30, &c, &detail);
    if ((r == FX_JWT_OK) != (c != NULL) || (r != FX_JWT_OK && !detail))
        abort();
    if (c) {
        use_claims(c, tok, len);
        fx_jwt_claims_unref(c);
    }
    fx_jwt_reason rl = fx_jwt_verify_with(issuers, 2, (const char *)tok, len, NOW, 30, NULL, NULL,
                                          FX_JWT_BACKEND_LIBJWT);
    fx_jwt_reason ro = fx_jwt_verify_with(issuers, 2, (const char *)tok, len, NOW, 30, NULL, NULL,
                                          FX_JWT_BACKEND_OPENSSL);
    if (rl != ro || (r != rl && r != ro)) {
        fprintf(stderr, "backends disagree: auto %s, libjwt %s, openssl %s\n",
                fx_jwt_reason_name(r), fx_jwt_reason_name(rl), fx_jwt_reason_name(ro));
        abort();
    }
}

static void fuzz_jwks(const uint8_t *json, size_t len)
{
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256];
    err[0] = '\0';
    int r = fx_jwt_keyset_add_jwks(ks, (const char *)json, len, err, sizeof(err));
    if (r != 0 && (!err[0] || fx_jwt_keyset_count(ks) != 0))
        abort(); /* a refusal says why and adds nothing */
    if (r == 0) {
        if (fx_jwt_keyset_count(ks) == 0)
            abort();
        fx_jwt_keyset_has_kid(ks, "hs", 2);
        fx_jwt_issuer is = {"https://interop.example.com", aud_interop, 1, ks};
        char *t = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)fuzz_secret,
                              strlen(fuzz_secret), "hs",
                              "{\"iss\":\"https://interop.example.com\",\"aud\":\"interop\"}", NOW,
                              60, err, sizeof(err));
        if (t)
            fx_jwt_verify(&is, 1, t, strlen(t), NOW, 30, NULL, NULL);
        free(t);
    }
    fx_jwt_keyset_unref(ks);
}

static void fuzz_pem(const uint8_t *pem, size_t len)
{
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256];
    for (int a = FX_JWT_ALG_NONE; a <= FX_JWT_ALG_PS256; a++)
        fx_jwt_keyset_add_pem(ks, NULL, (fx_jwt_algorithm)a, (const char *)pem, len, err,
                              sizeof(err));
    fx_jwt_keyset_add_secret(ks, NULL, FX_JWT_ALG_HS256, pem, len, err, sizeof(err));
    fx_jwt_keyset_unref(ks);
}

static void fuzz_mint(const uint8_t *json, size_t len)
{
    char *claims = malloc(len + 1);
    if (!claims)
        return;
    memcpy(claims, json, len);
    claims[len] = '\0';
    char err[256];
    char *t = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)fuzz_secret,
                          strlen(fuzz_secret), "fuzz", claims, NOW, 60, err, sizeof(err));
    if (t) {
        fx_jwt_claims *c = NULL;
        if (fx_jwt_verify(issuers, 2, t, strlen(t), NOW, 30, &c, NULL) == FX_JWT_OK)
            use_claims(c, (const uint8_t *)t, strlen(t));
        fx_jwt_claims_unref(c);
        free(t);
    }
    free(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!interop)
        init();
    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
    case 1: fuzz_token(data + 1, size - 1); break;
    case 2: fuzz_jwks(data + 1, size - 1); break;
    case 3: fuzz_pem(data + 1, size - 1); break;
    default: fuzz_mint(data + 1, size - 1); break;
    }
    return 0;
}

/*
 * bench_jwt.c — verifications per second on one core, for HS256, RS256,
 * ES256 and PS256: uncached (fx_jwt_verify, through the backend the alg
 * normally takes and through the other one forced), and cached
 * (fx_jwt_cache_get hits, for one token and for 1000 distinct tokens in
 * turn, as a worker sees them with many clients).
 *
 * Keys are generated at start (RSA 2048, P-256); tokens are minted with
 * fx_jwt_mint and carry a typical payload (iss, aud, sub, iat, exp, roles,
 * scope). Each cell runs for `seconds` (argument, default 1) after a short
 * warm-up. Build a release tree for numbers worth quoting:
 *
 *   meson setup build-rel --buildtype=release && ninja -C build-rel
 *   build-rel/tests/bench_jwt [seconds]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ficus_authz.h"
#include "internal.h"

#define NOW 1700000000
#define NTOKENS 1000

static const char secret[] = "bench-only-hs256-secret-of-32+bytes!!";
static fx_jwt_issuer issuer;
static const char *const auds[] = {"just-social"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *pem(EVP_PKEY *k, int priv)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (priv)
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PUBKEY(b, k);
    char *d;
    long n = BIO_get_mem_data(b, &d);
    char *s = strndup(d, (size_t)n);
    BIO_free(b);
    if (!s)
        abort();
    return s;
}

static char *mint(fx_jwt_algorithm alg, const char *key, size_t keylen, const char *kid, int n)
{
    char claims[512], err[256];
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"https://id.example.com\",\"aud\":\"just-social\",\"sub\":\"user-%d\","
             "\"roles\":[\"reader\",\"writer\"],\"scope\":\"documents:read documents:write\"}",
             n);
    char *t = fx_jwt_mint(alg, (const unsigned char *)key, keylen, kid, claims, NOW, 3600, err,
                          sizeof(err));
    if (!t) {
        fprintf(stderr, "bench_jwt: mint %s: %s\n", fx_jwt_alg_name(alg), err);
        exit(1);
    }
    return t;
}

/* Verifications per second of one token. */
static double rate_verify(const char *tok, fx_jwt_backend backend, double seconds)
{
    size_t len = strlen(tok);
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 16; i++, n++) {
            fx_jwt_claims *c = NULL;
            if (fx_jwt_verify_with(&issuer, 1, tok, len, NOW, 30, &c, NULL, backend) != FX_JWT_OK)
                abort();
            fx_jwt_claims_unref(c);
        }
        t = now_s() - t0;
    } while (t < seconds);
    return (double)n / t;
}

/* Cache hits per second, cycling through `ntok` tokens already in the cache. */
static double rate_cached(char **toks, int ntok, double seconds)
{
    fx_jwt_cache *cache = fx_jwt_cache_new(2 * NTOKENS);
    size_t *lens = malloc(sizeof(*lens) * (size_t)ntok);
    if (!cache || !lens)
        abort();
    for (int i = 0; i < ntok; i++) {
        lens[i] = strlen(toks[i]);
        fx_jwt_claims *c = NULL;
        if (fx_jwt_verify(&issuer, 1, toks[i], lens[i], NOW, 30, &c, NULL) != FX_JWT_OK)
            abort();
        fx_jwt_cache_put(cache, toks[i], lens[i], c, fx_jwt_claims_exp(c) + 30, 1);
        fx_jwt_claims_unref(c);
    }
    long n = 0;
    int k = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 256; i++, n++) {
            if (!fx_jwt_cache_get(cache, toks[k], lens[k], NOW, 1))
                abort();
            if (++k == ntok)
                k = 0;
        }
        t = now_s() - t0;
    } while (t < seconds);
    fx_jwt_cache_free(cache);
    free(lens);
    return (double)n / t;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (seconds <= 0)
        seconds = 1.0;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !ec)
        abort();
    char *rsa_pub = pem(rsa, 0), *rsa_priv = pem(rsa, 1);
    char *ec_pub = pem(ec, 0), *ec_priv = pem(ec, 1);
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256];
    if (fx_jwt_keyset_add_secret(ks, "hs", FX_JWT_ALG_HS256, (const unsigned char *)secret,
                                 strlen(secret), err, sizeof(err)) ||
        fx_jwt_keyset_add_pem(ks, "rs", FX_JWT_ALG_RS256, rsa_pub, strlen(rsa_pub), err,
                              sizeof(err)) ||
        fx_jwt_keyset_add_pem(ks, "ps", FX_JWT_ALG_PS256, rsa_pub, strlen(rsa_pub), err,
                              sizeof(err)) ||
        fx_jwt_keyset_add_pem(ks, "es", FX_JWT_ALG_ES256, ec_pub, strlen(ec_pub), err,
                              sizeof(err))) {
        fprintf(stderr, "bench_jwt: %s\n", err);
        return 1;
    }
    issuer = (fx_jwt_issuer){"https://id.example.com", auds, 1, ks};

    static const struct {
        fx_jwt_algorithm alg;
        const char *kid;
        int libjwt; /* does AUTO take libjwt for a typ "JWT" token of this alg? */
    } rows[] = {{FX_JWT_ALG_HS256, "hs", 1},
                {FX_JWT_ALG_RS256, "rs", 0},
                {FX_JWT_ALG_ES256, "es", 0},
                {FX_JWT_ALG_PS256, "ps", 0}};
    printf("bench_jwt: one thread, %.1f s per cell, OpenSSL %s\n\n", seconds,
           OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("| alg   | token bytes | uncached, default path |   uncached, other path | cached, 1 token "
           "| cached, 1000 tokens |\n");
    printf("| ----- | ----------: | ---------------------: | ---------------------: | --------------"
           ": | ------------------: |\n");
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        const char *key = rows[r].alg == FX_JWT_ALG_HS256   ? secret
                          : rows[r].alg == FX_JWT_ALG_ES256 ? ec_priv
                                                            : rsa_priv;
        char **toks = malloc(sizeof(*toks) * NTOKENS);
        if (!toks)
            abort();
        for (int i = 0; i < NTOKENS; i++)
            toks[i] = mint(rows[r].alg, key, strlen(key), rows[r].kid, i);
        rate_verify(toks[0], FX_JWT_BACKEND_AUTO, seconds / 10); /* warm-up */
        double def = rate_verify(toks[0], FX_JWT_BACKEND_AUTO, seconds);
        /* the other backend, for comparison: libjwt where it can verify the alg */
        fx_jwt_backend other = rows[r].libjwt ? FX_JWT_BACKEND_OPENSSL : FX_JWT_BACKEND_LIBJWT;
        double alt = rows[r].alg == FX_JWT_ALG_PS256 ? 0 : rate_verify(toks[0], other, seconds);
        double c1 = rate_cached(toks, 1, seconds);
        double cn = rate_cached(toks, NTOKENS, seconds);
        char defcell[48], altcell[48];
        snprintf(defcell, sizeof(defcell), "%.0f/s (%s)", def, rows[r].libjwt ? "libjwt" : "OpenSSL");
        /* PS256: libjwt 1.10 has no PSS, so "forced libjwt" falls back to OpenSSL */
        if (rows[r].alg == FX_JWT_ALG_PS256)
            snprintf(altcell, sizeof(altcell), "n/a (no PSS in libjwt)");
        else
            snprintf(altcell, sizeof(altcell), "%.0f/s (%s)", alt,
                     rows[r].libjwt ? "OpenSSL" : "libjwt");
        printf("| %-5s | %11zu | %22s | %22s | %13.0f/s | %17.0f/s |\n",
               fx_jwt_alg_name(rows[r].alg), strlen(toks[0]), defcell, altcell, c1, cn);
        for (int i = 0; i < NTOKENS; i++)
            free(toks[i]);
        free(toks);
    }
    fx_jwt_keyset_unref(ks);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    free(rsa_pub);
    free(rsa_priv);
    free(ec_pub);
    free(ec_priv);
    return 0;
}

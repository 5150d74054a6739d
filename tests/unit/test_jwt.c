/*
 * test_jwt.c — Check suite "jwt" for the JWT part of libfxauthz
 * (authz/jwt.c, jwk.c, jwt_cache.c, b64.c).
 *
 *   fixtures       RSA and EC keys are generated in this process
 *                  (EVP_PKEY_Q_keygen); nothing private is committed. Four
 *                  issuers: A (one key of every alg, each with a kid), B (two
 *                  HS256 keys), C (keys without kid), D (one RS256 key)
 *   token builder  tokens are put together and signed here, with OpenSSL
 *                  directly and an own base64url encoder, so the library is
 *                  never checked against itself
 *   attack corpus  one table row per token that must be refused, with the
 *                  exact reason; every row runs through both backends too
 *   valid tokens   every alg, with every accepted typ, through both backends
 *   then           claims rendering, the cache, JWK Sets, PEM and secrets,
 *                  minting, interop vectors made by PyJWT (tests/data/jwt)
 */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "ficus_authz.h"
#include "internal.h"

#define NOW 1700000000
#define SKEW 30

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* ---- fixtures -------------------------------------------------------------------------- */

/* Test-only secrets, long enough for their alg. */
static const char hs256_secret[] = "test-only-hs256-secret-not-for-production!";
static const char hs384_secret[] = "test-only-hs384-secret-not-for-production-48+bytes!!";
static const char hs512_secret[] =
    "test-only-hs512-secret-not-for-production-at-least-64-bytes-long!!";
static const char other_secret[] = "test-only-another-hs256-secret-of-32+bytes";
static const char b2_secret[] = "test-only-issuer-b-second-hs256-secret!!";

static EVP_PKEY *rsa_a, *rsa_b, *rsa_weak, *ec256, *ec256_b, *ec384, *ec_k1;
static char *rsa_a_pub, *rsa_weak_pub, *ec256_pub, *ec384_pub, *ec_k1_pub;
static char *rsa_a_priv, *ec256_priv, *ec384_priv, *rsa_weak_priv;
static fx_jwt_keyset *ks_a, *ks_b, *ks_c, *ks_d;
static const char *const aud_a[] = {"just-social", "admin-ui"};
static const char *const aud_other[] = {"just-social"};
static fx_jwt_issuer issuers[4];

static char *pem_pub(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *d;
    long n = BIO_get_mem_data(b, &d);
    char *s = strndup(d, (size_t)n);
    BIO_free(b);
    return s;
}

static char *pem_priv(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *d;
    long n = BIO_get_mem_data(b, &d);
    char *s = strndup(d, (size_t)n);
    BIO_free(b);
    return s;
}

static void add_pem(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg, const char *pem)
{
    char err[256];
    if (fx_jwt_keyset_add_pem(ks, kid, alg, pem, strlen(pem), err, sizeof(err)) != 0) {
        fprintf(stderr, "fixture: %s\n", err);
        abort();
    }
}

static void add_secret(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg, const char *s)
{
    char err[256];
    if (fx_jwt_keyset_add_secret(ks, kid, alg, (const unsigned char *)s, strlen(s), err,
                                 sizeof(err)) != 0) {
        fprintf(stderr, "fixture: %s\n", err);
        abort();
    }
}

static void fixtures(void)
{
    rsa_a = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_b = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec256_b = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    ec_k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    if (!rsa_a || !rsa_b || !rsa_weak || !ec256 || !ec256_b || !ec384 || !ec_k1)
        abort();
    rsa_a_pub = pem_pub(rsa_a);
    rsa_weak_pub = pem_pub(rsa_weak);
    ec256_pub = pem_pub(ec256);
    ec384_pub = pem_pub(ec384);
    ec_k1_pub = pem_pub(ec_k1);
    rsa_a_priv = pem_priv(rsa_a);
    ec256_priv = pem_priv(ec256);
    ec384_priv = pem_priv(ec384);
    rsa_weak_priv = pem_priv(rsa_weak);

    ks_a = fx_jwt_keyset_new();
    add_secret(ks_a, "hs1", FX_JWT_ALG_HS256, hs256_secret);
    add_secret(ks_a, "hs384", FX_JWT_ALG_HS384, hs384_secret);
    add_secret(ks_a, "hs512", FX_JWT_ALG_HS512, hs512_secret);
    add_pem(ks_a, "rs1", FX_JWT_ALG_RS256, rsa_a_pub);
    add_pem(ks_a, "rs384", FX_JWT_ALG_RS384, rsa_a_pub);
    add_pem(ks_a, "rs512", FX_JWT_ALG_RS512, rsa_a_pub);
    add_pem(ks_a, "ps1", FX_JWT_ALG_PS256, rsa_a_pub);
    add_pem(ks_a, "es1", FX_JWT_ALG_ES256, ec256_pub);
    add_pem(ks_a, "es384", FX_JWT_ALG_ES384, ec384_pub);
    ks_b = fx_jwt_keyset_new();
    add_secret(ks_b, "b1", FX_JWT_ALG_HS256, hs256_secret);
    add_secret(ks_b, "b2", FX_JWT_ALG_HS256, b2_secret);
    ks_c = fx_jwt_keyset_new();
    add_secret(ks_c, NULL, FX_JWT_ALG_HS256, other_secret);
    add_pem(ks_c, NULL, FX_JWT_ALG_RS256, rsa_a_pub);
    ks_d = fx_jwt_keyset_new();
    add_pem(ks_d, "d1", FX_JWT_ALG_RS256, rsa_a_pub);
    issuers[0] = (fx_jwt_issuer){"https://id.example.com", aud_a, 2, ks_a};
    issuers[1] = (fx_jwt_issuer){"https://two.example.com", aud_other, 1, ks_b};
    issuers[2] = (fx_jwt_issuer){"https://nokid.example.com", aud_other, 1, ks_c};
    issuers[3] = (fx_jwt_issuer){"https://rsonly.example.com", aud_other, 1, ks_d};
}

/* ---- an own base64url encoder (not the library's) --------------------------------------- */

static char *enc(const void *data, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *o = xmalloc(n / 3 * 4 + 5), *w = o;
    size_t bits = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        bits = bits << 8 | p[i];
        nb += 8;
        while (nb >= 6) {
            *w++ = al[(bits >> (nb - 6)) & 63];
            nb -= 6;
        }
    }
    if (nb)
        *w++ = al[(bits << (6 - nb)) & 63];
    *w = '\0';
    return o;
}

static char *encs(const char *s)
{
    return enc(s, strlen(s));
}

/* ---- signers -------------------------------------------------------------------------- */

typedef enum signer {
    S_NONE = 0,     /* empty signature */
    S_HS256,        /* the secrets of issuer A's hs1 / hs384 / hs512 */
    S_HS384,
    S_HS512,
    S_HS256_OTHER,  /* issuer C's secret */
    S_HS256_RSAPEM, /* HMAC-SHA256 keyed with rsa_a's public key PEM: the confusion attack */
    S_RS256,        /* rsa_a, PKCS#1 v1.5 */
    S_RS384,
    S_RS512,
    S_RS256_B,      /* the attacker's RSA key */
    S_PS256,        /* rsa_a, PSS */
    S_PS256_MAXSALT, /* rsa_a, PSS with the longest salt instead of the hash length */
    S_ES256,        /* ec256, r || s */
    S_ES256_B,      /* the attacker's P-256 key */
    S_ES384,
    S_ES256_DER,    /* ec256, DER instead of r || s */
    S_ES256_ZERO,   /* r = s = 0 */
    S_ES256_R_N,    /* r = n, s = 1 */
    S_ES256_S_N,    /* a valid r, s = n */
    S_ES256_R_0,    /* r = 0, a valid s */
    S_ES384_ZERO,
} signer;

static size_t hmac(const char *md, const char *key, const void *in, size_t n, unsigned char *out)
{
    size_t len = 0;
    EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, key, strlen(key), in, n, out, 64, &len);
    return len;
}

/* pss: 0 PKCS#1 v1.5, 1 PSS with a salt of the hash length (RFC 7518), 2 the longest salt */
static size_t evp_sign(EVP_PKEY *k, const char *md, int pss, const void *in, size_t n,
                       unsigned char *out)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    size_t len = 1024;
    if (EVP_DigestSignInit_ex(m, &pc, md, NULL, NULL, k, NULL) != 1)
        abort();
    if (pss && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(
                    pc, pss == 1 ? RSA_PSS_SALTLEN_DIGEST : RSA_PSS_SALTLEN_MAX) != 1))
        abort();
    if (EVP_DigestSign(m, out, &len, in, n) != 1)
        abort();
    EVP_MD_CTX_free(m);
    return len;
}

static void order_bytes(int nid, unsigned char *out, size_t half)
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
    BN_bn2binpad(EC_GROUP_get0_order(g), out, (int)half);
    EC_GROUP_free(g);
}

/* ECDSA, then DER → r || s, each padded to the coordinate size. */
static size_t ec_sign(EVP_PKEY *k, const char *md, size_t half, const void *in, size_t n,
                      unsigned char *out)
{
    unsigned char der[256];
    size_t dl = evp_sign(k, md, 0, in, n, der);
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    const BIGNUM *r, *ss;
    ECDSA_SIG_get0(s, &r, &ss);
    BN_bn2binpad(r, out, (int)half);
    BN_bn2binpad(ss, out + half, (int)half);
    ECDSA_SIG_free(s);
    return 2 * half;
}

static size_t sign(signer s, const char *in, size_t n, unsigned char *out)
{
    switch (s) {
    case S_NONE: return 0;
    case S_HS256: return hmac("SHA256", hs256_secret, in, n, out);
    case S_HS384: return hmac("SHA384", hs384_secret, in, n, out);
    case S_HS512: return hmac("SHA512", hs512_secret, in, n, out);
    case S_HS256_OTHER: return hmac("SHA256", other_secret, in, n, out);
    case S_HS256_RSAPEM: return hmac("SHA256", rsa_a_pub, in, n, out);
    case S_RS256: return evp_sign(rsa_a, "SHA256", 0, in, n, out);
    case S_RS384: return evp_sign(rsa_a, "SHA384", 0, in, n, out);
    case S_RS512: return evp_sign(rsa_a, "SHA512", 0, in, n, out);
    case S_RS256_B: return evp_sign(rsa_b, "SHA256", 0, in, n, out);
    case S_PS256: return evp_sign(rsa_a, "SHA256", 1, in, n, out);
    case S_PS256_MAXSALT: return evp_sign(rsa_a, "SHA256", 2, in, n, out);
    case S_ES256: return ec_sign(ec256, "SHA256", 32, in, n, out);
    case S_ES256_B: return ec_sign(ec256_b, "SHA256", 32, in, n, out);
    case S_ES384: return ec_sign(ec384, "SHA384", 48, in, n, out);
    case S_ES256_DER: return evp_sign(ec256, "SHA256", 0, in, n, out);
    case S_ES256_ZERO: memset(out, 0, 64); return 64;
    case S_ES256_R_N:
        order_bytes(NID_X9_62_prime256v1, out, 32);
        memset(out + 32, 0, 32);
        out[63] = 1;
        return 64;
    case S_ES256_S_N:
        ec_sign(ec256, "SHA256", 32, in, n, out);
        order_bytes(NID_X9_62_prime256v1, out + 32, 32);
        return 64;
    case S_ES256_R_0:
        ec_sign(ec256, "SHA256", 32, in, n, out);
        memset(out, 0, 32);
        return 64;
    case S_ES384_ZERO: memset(out, 0, 96); return 96;
    }
    abort();
}

/* ---- the token builder ---------------------------------------------------------------------- */

typedef struct tokspec {
    const char *header, *payload; /* JSON texts, encoded here */
    signer sig;
    const char *raw_h, *raw_p, *raw_s; /* segments used verbatim instead */
    const char *alt_header, *alt_payload; /* swapped in after signing */
    const char *append;                   /* appended to the whole token */
    const char *whole;                    /* the whole token, verbatim */
    int two_segments;                     /* drop ".signature" */
    int noncanon_sig;                     /* set the unused low bits of the last sig char */
    int nul_at;                           /* > 0: a NUL byte replaces this offset */
    size_t pad_to;                        /* grow the payload until the token is this long */
} tokspec;

typedef struct token {
    char *s;
    size_t len;
} token;

static size_t enc_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* payload with a "pad" member of n 'x' characters added before its closing brace */
static char *padded(const char *payload, size_t n)
{
    size_t len = strlen(payload);
    char *out = xmalloc(len + n + 16);
    memcpy(out, payload, len - 1);
    char *w = out + len - 1;
    w += sprintf(w, ",\"pad\":\"");
    memset(w, 'x', n);
    strcpy(w + n, "\"}");
    return out;
}

static token build(const tokspec *t)
{
    token out;
    if (t->whole) {
        out.s = strdup(t->whole);
        out.len = strlen(t->whole);
        return out;
    }
    char *payload = strdup(t->payload ? t->payload : "{}");
    char *h = t->raw_h ? strdup(t->raw_h) : encs(t->header);
    unsigned char sig[1024];
    if (t->pad_to) {
        size_t sl = enc_len(sign(t->sig, "x", 1, sig));
        size_t n = 0;
        while (strlen(h) + 2 + enc_len(strlen(payload) + n + 9) + sl < t->pad_to)
            n++;
        free(payload);
        payload = padded(t->payload, n);
    }
    char *p = t->raw_p ? strdup(t->raw_p) : encs(payload);
    char *in = xmalloc(strlen(h) + strlen(p) + 2);
    sprintf(in, "%s.%s", h, p);
    size_t sl = sign(t->sig, in, strlen(in), sig);
    free(in);
    char *s = t->raw_s ? strdup(t->raw_s) : enc(sig, sl);
    if (t->noncanon_sig) {
        size_t n = strlen(s);
        const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        s[n - 1] = al[(strchr(al, s[n - 1]) - al) | 1];
    }
    if (t->alt_header) {
        free(h);
        h = encs(t->alt_header);
    }
    if (t->alt_payload) {
        free(p);
        p = encs(t->alt_payload);
    }
    const char *app = t->append ? t->append : "";
    out.s = xmalloc(strlen(h) + strlen(p) + strlen(s) + strlen(app) + 4);
    if (t->two_segments)
        sprintf(out.s, "%s.%s%s", h, p, app);
    else
        sprintf(out.s, "%s.%s.%s%s", h, p, s, app);
    out.len = strlen(out.s);
    if (t->nul_at > 0 && (size_t)t->nul_at < out.len)
        out.s[t->nul_at] = '\0';
    free(h);
    free(p);
    free(s);
    free(payload);
    return out;
}

/* ---- the attack corpus ------------------------------------------------------------------------ */

#define ISS_A "\"iss\":\"https://id.example.com\""
#define AUD_A "\"aud\":\"just-social\""
#define EXP_OK "\"exp\":1700003600"
#define IAT_OK "\"iat\":1700000000"
/* a valid payload for issuer A, and the same with one member replaced */
#define P_A "{" ISS_A "," AUD_A ",\"sub\":\"42\"," EXP_OK "," IAT_OK "}"
#define P_A_WITH(extra) "{" ISS_A "," AUD_A ",\"sub\":\"42\"," extra "}"
#define P_A2 "{" ISS_A "," AUD_A ",\"sub\":\"43\"," EXP_OK "}"
#define P_B "{\"iss\":\"https://two.example.com\"," AUD_A "," EXP_OK "}"
#define P_C "{\"iss\":\"https://nokid.example.com\"," AUD_A "," EXP_OK "}"
#define P_D "{\"iss\":\"https://rsonly.example.com\"," AUD_A "," EXP_OK "}"
#define H(alg, kid) "{\"alg\":\"" alg "\",\"typ\":\"JWT\",\"kid\":\"" kid "\"}"
#define H_AT(alg, kid) "{\"alg\":\"" alg "\",\"typ\":\"at+jwt\",\"kid\":\"" kid "\"}"
#define H_NOKID(alg) "{\"alg\":\"" alg "\",\"typ\":\"JWT\"}"
#define BOMB10 "[[[[[[[[[["
#define BOMB100 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10 BOMB10
#define BOMB_END10 "]]]]]]]]]]"
#define BOMB_END100                                                                              \
    BOMB_END10 BOMB_END10 BOMB_END10 BOMB_END10 BOMB_END10 BOMB_END10 BOMB_END10 BOMB_END10       \
        BOMB_END10 BOMB_END10
/* objects nested 16 deep: inside the payload object that makes 17 levels */
#define NEST16 "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}}"
/* 15 deep: 16 levels with the payload object, the most accepted */
#define NEST15 "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}"

typedef struct bad_case {
    const char *name;
    tokspec t;
    fx_jwt_reason want;
    const char *detail; /* if set: a part of the detail sentence, to pin down which check */
} bad_case;

#define MAL FX_JWT_MALFORMED
#define SIG FX_JWT_BAD_SIGNATURE
#define ALG FX_JWT_ALG_MISMATCH
#define KID FX_JWT_UNKNOWN_KID

/* clang-format off */
static const bad_case corpus[] = {
    /* alg none, in every spelling */
    {"alg none, empty signature", {.header = "{\"alg\":\"none\",\"typ\":\"JWT\"}", .payload = P_A}, ALG, NULL},
    {"alg None", {.header = "{\"alg\":\"None\"}", .payload = P_A}, ALG, NULL},
    {"alg NONE", {.header = "{\"alg\":\"NONE\"}", .payload = P_A}, ALG, NULL},
    {"alg nOnE with the kid of an HS key", {.header = "{\"alg\":\"nOnE\",\"kid\":\"hs1\"}", .payload = P_A}, ALG, NULL},
    {"alg none with an HS256 signature", {.header = "{\"alg\":\"none\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, ALG, NULL},
    {"alg none, two segments", {.header = "{\"alg\":\"none\"}", .payload = P_A, .two_segments = 1}, MAL, NULL},
    {"alg none, no kid, issuer with keys without kid", {.header = "{\"alg\":\"none\"}", .payload = P_C}, ALG, NULL},
    /* RS/HS confusion */
    {"HS256 keyed with the RSA public key PEM, kid of the RSA key", {.header = H("HS256", "rs1"), .payload = P_A, .sig = S_HS256_RSAPEM}, ALG, NULL},
    {"HS256 keyed with the RSA public key PEM, no kid, RS-only issuer", {.header = H_NOKID("HS256"), .payload = P_D, .sig = S_HS256_RSAPEM}, ALG, NULL},
    {"HS256 keyed with the RSA public key PEM, kid of the PS256 key", {.header = H("HS256", "ps1"), .payload = P_A, .sig = S_HS256_RSAPEM}, ALG, NULL},
    {"HS256 keyed with the RSA public key PEM, kid of an HS key", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256_RSAPEM}, SIG, NULL},
    {"RS256 token against an HS key", {.header = H("RS256", "hs1"), .payload = P_A, .sig = S_RS256}, ALG, NULL},
    {"ES256 token against the ES384 key", {.header = H("ES256", "es384"), .payload = P_A, .sig = S_ES256}, ALG, NULL},
    {"PS256 header, RS256 key", {.header = H("PS256", "rs1"), .payload = P_A, .sig = S_PS256}, ALG, NULL},
    {"RS256 header, PS256 key", {.header = H("RS256", "ps1"), .payload = P_A, .sig = S_RS256}, ALG, NULL},
    {"RS384 header, RS256 key", {.header = H("RS384", "rs1"), .payload = P_A, .sig = S_RS384}, ALG, NULL},
    {"PKCS#1 v1.5 signature under a PS256 header and key", {.header = H("PS256", "ps1"), .payload = P_A, .sig = S_RS256}, SIG, NULL},
    {"PS256 with the longest salt (RFC 7518 §3.5: the hash length)", {.header = H("PS256", "ps1"), .payload = P_A, .sig = S_PS256_MAXSALT}, SIG, NULL},
    {"PSS signature under an RS256 header and key", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_PS256}, SIG, NULL},
    /* ECDSA */
    {"ES256 r = s = 0", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_ZERO}, SIG, "outside [1, n-1]"},
    {"ES256 r = n", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_R_N}, SIG, "outside [1, n-1]"},
    {"ES256 s = n", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_S_N}, SIG, "outside [1, n-1]"},
    {"ES256 r = 0", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_R_0}, SIG, "outside [1, n-1]"},
    {"ES384 r = s = 0", {.header = H("ES384", "es384"), .payload = P_A, .sig = S_ES384_ZERO}, SIG, "outside [1, n-1]"},
    {"ES256 r = s = 0 with typ at+jwt (OpenSSL path)", {.header = H_AT("ES256", "es1"), .payload = P_A, .sig = S_ES256_ZERO}, SIG, "outside [1, n-1]"},
    {"ES256 r = n with typ at+jwt (OpenSSL path)", {.header = H_AT("ES256", "es1"), .payload = P_A, .sig = S_ES256_R_N}, SIG, "outside [1, n-1]"},
    {"ES256 signature in DER instead of r || s", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_DER}, SIG, "wrong length"},
    {"ES256 signed by another key", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256_B}, SIG, NULL},
    /* the signature segment */
    {"HS256 signature stripped", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .raw_s = ""}, SIG, "no signature"},
    {"RS256 signature stripped", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .raw_s = ""}, SIG, NULL},
    {"ES256 signature stripped", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256, .raw_s = ""}, SIG, NULL},
    {"HS256 signature + \"AAAA\"", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .append = "AAAA"}, SIG, "wrong length"},
    {"RS256 signature + \"AAAA\"", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = "AAAA"}, SIG, "wrong length"},
    {"ES256 signature + \"AAAA\"", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256, .append = "AAAA"}, SIG, "wrong length"},
    {"RS256 signature + \".\"", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = "."}, MAL, NULL},
    {"RS256 signature + \"==\"", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = "=="}, MAL, NULL},
    {"RS256 signature + \"!!!!\" (skipped by Debian's decoder)", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = "!!!!"}, MAL, NULL},
    {"ES256 signature + \"*\"", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256, .append = "*"}, MAL, NULL},
    {"RS256 signature + \" \"", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = " "}, MAL, NULL},
    {"RS256 signature + \"\\n\"", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .append = "\n"}, MAL, NULL},
    {"HS256 signature + \"+/\" (standard base64)", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .append = "+/"}, MAL, NULL},
    {"HS256 signature, unused low bits set", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .noncanon_sig = 1}, MAL, NULL},
    {"HS256 signature of HS384 length", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS384}, SIG, "wrong length"},
    {"HS256 signed with another secret", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256_OTHER}, SIG, NULL},
    {"HS256 signed with another secret, typ at+jwt", {.header = H_AT("HS256", "hs1"), .payload = P_A, .sig = S_HS256_OTHER}, SIG, NULL},
    {"RS256 signed by another key", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256_B}, SIG, NULL},
    /* tampering */
    {"HS256 payload tampered", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .alt_payload = P_A_WITH(EXP_OK ",\"admin\":true")}, SIG, NULL},
    {"RS256 payload tampered", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .alt_payload = P_A_WITH("\"exp\":1800000000")}, SIG, NULL},
    {"ES256 payload tampered", {.header = H("ES256", "es1"), .payload = P_A, .sig = S_ES256, .alt_payload = P_A_WITH("\"exp\":1800000000")}, SIG, NULL},
    {"PS256 payload tampered", {.header = H("PS256", "ps1"), .payload = P_A, .sig = S_PS256, .alt_payload = P_A_WITH("\"exp\":1800000000")}, SIG, NULL},
    {"RS256 at+jwt payload tampered (OpenSSL path)", {.header = H_AT("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .alt_payload = P_A_WITH("\"exp\":1800000000")}, SIG, NULL},
    {"header tampered: typ dropped after signing", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .alt_header = "{\"alg\":\"HS256\",\"kid\":\"hs1\"}"}, SIG, NULL},
    {"header tampered: typ at+jwt after signing", {.header = H("RS256", "rs1"), .payload = P_A, .sig = S_RS256, .alt_header = H_AT("RS256", "rs1")}, SIG, NULL},
    /* time */
    {"expired", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":1699990000"), .sig = S_HS256}, FX_JWT_EXPIRED, NULL},
    {"expired exactly at exp + skew", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":1699999970"), .sig = S_HS256}, FX_JWT_EXPIRED, NULL},
    {"exp missing", {.header = H("HS256", "hs1"), .payload = P_A_WITH(IAT_OK), .sig = S_HS256}, FX_JWT_EXPIRED, NULL},
    {"exp negative", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":-1"), .sig = S_HS256}, FX_JWT_EXPIRED, NULL},
    {"exp 0", {.header = H("ES256", "es1"), .payload = P_A_WITH("\"exp\":0"), .sig = S_ES256}, FX_JWT_EXPIRED, NULL},
    {"nbf in the future", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"nbf\":1700000031"), .sig = S_HS256}, FX_JWT_NOT_YET_VALID, NULL},
    {"nbf far in the future", {.header = H("RS256", "rs1"), .payload = P_A_WITH(EXP_OK ",\"nbf\":9223372036854775807"), .sig = S_RS256}, FX_JWT_NOT_YET_VALID, NULL},
    {"iat in the future", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"iat\":1700000031"), .sig = S_HS256}, FX_JWT_NOT_YET_VALID, NULL},
    /* audience */
    {"wrong aud", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":\"other\"," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud array without ours", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":[\"a\",\"b\"]," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud missing", {.header = H("HS256", "hs1"), .payload = "{" ISS_A "," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud empty array", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":[]," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud in another case", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":\"Just-Social\"," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud of another issuer only", {.header = H("HS256", "b1"), .payload = "{\"iss\":\"https://two.example.com\",\"aud\":\"admin-ui\"," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_AUDIENCE, NULL},
    {"aud as a number", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":7," EXP_OK "}", .sig = S_HS256}, MAL, NULL},
    {"aud array with a number", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"aud\":[\"just-social\",7]," EXP_OK "}", .sig = S_HS256}, MAL, NULL},
    /* issuer */
    {"wrong iss", {.header = H("HS256", "hs1"), .payload = "{\"iss\":\"https://evil.example.com\"," AUD_A "," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_ISSUER, NULL},
    {"iss missing", {.header = H("HS256", "hs1"), .payload = "{" AUD_A "," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_ISSUER, NULL},
    {"iss with a trailing slash", {.header = H("HS256", "hs1"), .payload = "{\"iss\":\"https://id.example.com/\"," AUD_A "," EXP_OK "}", .sig = S_HS256}, FX_JWT_BAD_ISSUER, NULL},
    {"iss as an array", {.header = H("HS256", "hs1"), .payload = "{\"iss\":[\"https://id.example.com\"]," AUD_A "," EXP_OK "}", .sig = S_HS256}, MAL, NULL},
    /* kid */
    {"unknown kid", {.header = H("HS256", "nope"), .payload = P_A, .sig = S_HS256}, KID, NULL},
    {"kid with path traversal", {.header = H("HS256", "../../etc/passwd"), .payload = P_A, .sig = S_HS256}, KID, NULL},
    {"kid /dev/null", {.header = H("HS256", "/dev/null"), .payload = P_A, .sig = S_HS256}, KID, NULL},
    {"kid with SQL", {.header = H("HS256", "x' OR '1'='1"), .payload = P_A, .sig = S_HS256}, KID, NULL},
    {"kid of another issuer's key", {.header = H("HS256", "b1"), .payload = P_A, .sig = S_HS256}, KID, NULL},
    {"kid as a number", {.header = "{\"alg\":\"HS256\",\"kid\":1}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"kid with \\u0000", {.header = "{\"alg\":\"HS256\",\"kid\":\"hs1\\u0000\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"no kid, issuer with two HS256 keys", {.header = H_NOKID("HS256"), .payload = P_B, .sig = S_HS256}, KID, NULL},
    {"no kid, the issuer's only key has another alg", {.header = H_NOKID("ES256"), .payload = P_D, .sig = S_ES256}, ALG, NULL},
    {"no kid, the issuer's two keys have other algs", {.header = H_NOKID("ES256"), .payload = P_C, .sig = S_ES256}, KID, NULL},
    /* segments and encoding */
    {"header not base64url ('+')", {.raw_h = "eyJhbGciOiJIUzI1NiIs+nR5cCI6IkpXVCJ9", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"payload not base64url ('/')", {.header = H("HS256", "hs1"), .raw_p = "eyJpc3Mi/iJ9", .sig = S_HS256}, MAL, NULL},
    {"header with '=' padding", {.raw_h = "eyJhbGciOiJIUzI1NiJ9==", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"payload with a space", {.header = H("HS256", "hs1"), .raw_p = "eyJpc3Mi OiJ4In0", .sig = S_HS256}, MAL, NULL},
    {"header of length 1 mod 4", {.raw_h = "eyJhbGciOiJIUzI1NiJ9A", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"empty header", {.raw_h = "", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"empty payload", {.header = H("HS256", "hs1"), .raw_p = "", .sig = S_HS256}, MAL, NULL},
    {"header not JSON", {.header = "alg: HS256", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"payload not JSON", {.header = H("HS256", "hs1"), .payload = "iss=https://id.example.com", .sig = S_HS256}, MAL, NULL},
    {"header a JSON array", {.header = "[\"HS256\"]", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"payload a JSON string", {.header = H("HS256", "hs1"), .payload = "\"" P_A "\"", .sig = S_HS256}, MAL, NULL},
    {"payload with trailing garbage", {.header = H("HS256", "hs1"), .payload = P_A "x", .sig = S_HS256}, MAL, NULL},
    {"payload with invalid UTF-8", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"name\":\"\xc3\x28\""), .sig = S_HS256}, MAL, NULL},
    {"alg twice (HS256, none)", {.header = "{\"alg\":\"HS256\",\"alg\":\"none\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"alg twice (none, HS256)", {.header = "{\"alg\":\"none\",\"alg\":\"HS256\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"exp twice", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":1,\"exp\":1700003600"), .sig = S_HS256}, MAL, NULL},
    {"iss twice", {.header = H("HS256", "hs1"), .payload = "{" ISS_A ",\"iss\":\"https://two.example.com\"," AUD_A "," EXP_OK "}", .sig = S_HS256}, MAL, NULL},
    {"4 segments", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .append = ".AAAA"}, MAL, NULL},
    {"5 segments (JWE-shaped)", {.whole = "eyJhbGciOiJSU0EtT0FFUCJ9.AAAA.AAAA.AAAA.AAAA"}, MAL, NULL},
    {"2 segments", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .two_segments = 1}, MAL, NULL},
    {"1 segment", {.whole = "eyJhbGciOiJIUzI1NiJ9"}, MAL, NULL},
    {"only dots", {.whole = ".."}, MAL, NULL},
    {"empty token", {.whole = ""}, FX_JWT_MISSING, NULL},
    {"NUL byte inside the payload segment", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .nul_at = 60}, MAL, NULL},
    {"huge token (> 8 KiB), validly signed", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .pad_to = 8193}, MAL, NULL},
    {"huge token (64 KiB), validly signed", {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256, .pad_to = 65536}, MAL, NULL},
    {"nested JSON bomb in the payload", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"x\":" BOMB100 BOMB100 BOMB100 BOMB_END100 BOMB_END100 BOMB_END100), .sig = S_HS256}, MAL, NULL},
    {"unbalanced JSON bomb in the payload", {.header = H("HS256", "hs1"), .payload = "{\"x\":" BOMB100 BOMB100 BOMB100 BOMB100, .sig = S_HS256}, MAL, NULL},
    {"nested JSON bomb in the header", {.header = "{\"alg\":\"HS256\",\"x\":" BOMB100 BOMB_END100 "}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"payload nested 17 deep", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"n\":" NEST16), .sig = S_HS256}, MAL, NULL},
    /* types of registered claims */
    {"exp as a string", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":\"1700003600\""), .sig = S_HS256}, MAL, NULL},
    {"exp as a float", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":1700003600.0"), .sig = S_HS256}, MAL, NULL},
    {"exp in exponent form", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":17e8"), .sig = S_HS256}, MAL, NULL},
    {"exp 1e400", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":1e400"), .sig = S_HS256}, MAL, NULL},
    {"exp 99999999999999999999", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":99999999999999999999"), .sig = S_HS256}, MAL, NULL},
    {"exp -99999999999999999999", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":-99999999999999999999"), .sig = S_HS256}, MAL, NULL},
    {"exp true", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":true"), .sig = S_HS256}, MAL, NULL},
    {"exp null", {.header = H("HS256", "hs1"), .payload = P_A_WITH("\"exp\":null"), .sig = S_HS256}, MAL, NULL},
    {"nbf as a string", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"nbf\":\"0\""), .sig = S_HS256}, MAL, NULL},
    {"iat as a float", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"iat\":1.5"), .sig = S_HS256}, MAL, NULL},
    {"sub as a number", {.header = H("HS256", "hs1"), .payload = "{" ISS_A "," AUD_A ",\"sub\":42," EXP_OK "}", .sig = S_HS256}, MAL, NULL},
    {"jti as an object", {.header = H("HS256", "hs1"), .payload = P_A_WITH(EXP_OK ",\"jti\":{}"), .sig = S_HS256}, MAL, NULL},
    /* alg spelling */
    {"alg hs256", {.header = H("hs256", "hs1"), .payload = P_A, .sig = S_HS256}, ALG, NULL},
    {"alg Hs256", {.header = H("Hs256", "hs1"), .payload = P_A, .sig = S_HS256}, ALG, NULL},
    {"alg rs256", {.header = H("rs256", "rs1"), .payload = P_A, .sig = S_RS256}, ALG, NULL},
    {"alg \"HS256 \"", {.header = H("HS256 ", "hs1"), .payload = P_A, .sig = S_HS256}, ALG, NULL},
    {"alg ES512 (not implemented)", {.header = H("ES512", "es1"), .payload = P_A, .sig = S_ES256}, ALG, NULL},
    {"alg as a number", {.header = "{\"alg\":256,\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"alg missing", {.header = "{\"typ\":\"JWT\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    /* headers that must change nothing, or be refused */
    {"jku pointing elsewhere, signed by the attacker", {.header = "{\"alg\":\"RS256\",\"kid\":\"rs1\",\"jku\":\"https://evil.example/jwks.json\"}", .payload = P_A, .sig = S_RS256_B}, SIG, NULL},
    {"embedded jwk, signed by the attacker, no kid", {.header = "{\"alg\":\"RS256\",\"jwk\":{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"AAAA\"}}", .payload = P_A, .sig = S_RS256_B}, SIG, NULL},
    {"x5u and x5c, signed by the attacker", {.header = "{\"alg\":\"RS256\",\"kid\":\"rs1\",\"x5u\":\"https://evil.example/c.pem\",\"x5c\":[\"AAAA\"]}", .payload = P_A, .sig = S_RS256_B}, SIG, NULL},
    {"typ foo", {.header = "{\"alg\":\"HS256\",\"typ\":\"foo\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"typ as a number", {.header = "{\"alg\":\"HS256\",\"typ\":1,\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"typ JWS", {.header = "{\"alg\":\"HS256\",\"typ\":\"JWS\",\"kid\":\"hs1\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"crit present", {.header = "{\"alg\":\"HS256\",\"kid\":\"hs1\",\"crit\":[\"exp\"]}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"b64 false", {.header = "{\"alg\":\"HS256\",\"kid\":\"hs1\",\"b64\":false,\"crit\":[\"b64\"]}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
    {"cty JWT (nested token)", {.header = "{\"alg\":\"HS256\",\"kid\":\"hs1\",\"cty\":\"JWT\"}", .payload = P_A, .sig = S_HS256}, MAL, NULL},
};
/* clang-format on */
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

static int contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

START_TEST(test_corpus)
{
    const bad_case *c = &corpus[_i];
    token t = build(&c->t);
    static const fx_jwt_backend backends[] = {FX_JWT_BACKEND_AUTO, FX_JWT_BACKEND_LIBJWT,
                                              FX_JWT_BACKEND_OPENSSL};
    for (size_t b = 0; b < 3; b++) {
        fx_jwt_claims *cl = (fx_jwt_claims *)&cl; /* must be reset to NULL */
        const char *detail = NULL;
        fx_jwt_reason r =
            fx_jwt_verify_with(issuers, 4, t.s, t.len, NOW, SKEW, &cl, &detail, backends[b]);
        ck_assert_msg(r == c->want, "case '%s' (backend %zu): got %s (%s), want %s", c->name, b,
                      fx_jwt_reason_name(r), detail ? detail : "-", fx_jwt_reason_name(c->want));
        ck_assert_ptr_null(cl);
        ck_assert_msg(detail && *detail, "case '%s': no detail", c->name);
        ck_assert_msg(!c->detail || strstr(detail, c->detail), "case '%s': detail '%s' lacks '%s'",
                      c->name, detail, c->detail);
        ck_assert(!contains(detail, "BEGIN") && !contains(detail, "test-only"));
        /* the gateway quotes it in WWW-Authenticate: error_description="..." */
        for (const char *q = detail; *q; q++)
            ck_assert_msg(*q >= 0x20 && *q < 0x7f && *q != '"' && *q != '\\',
                          "case '%s': detail '%s' is not a plain quoted-string", c->name, detail);
    }
    free(t.s);
}
END_TEST

START_TEST(test_corpus_is_large_enough)
{
    ck_assert_uint_ge(NCORPUS, 45);
    /* every reason but OK is exercised */
    int seen[16] = {0};
    for (size_t i = 0; i < NCORPUS; i++)
        seen[corpus[i].want] = 1;
    for (int r = FX_JWT_MISSING; r <= FX_JWT_BAD_ISSUER; r++)
        ck_assert_msg(seen[r], "no corpus case for %s", fx_jwt_reason_name((fx_jwt_reason)r));
}
END_TEST

START_TEST(test_null_and_empty)
{
    const char *d = NULL;
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, NULL, 0, NOW, SKEW, NULL, &d), FX_JWT_MISSING);
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, "x", 0, NOW, SKEW, NULL, &d), FX_JWT_MISSING);
    tokspec ts = {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256};
    token t = build(&ts);
    ck_assert_int_eq(fx_jwt_verify(NULL, 0, t.s, t.len, NOW, SKEW, NULL, &d), FX_JWT_BAD_ISSUER);
    /* an issuer with no keys at all */
    fx_jwt_issuer empty = {"https://id.example.com", aud_a, 2, NULL};
    ck_assert_int_eq(fx_jwt_verify(&empty, 1, t.s, t.len, NOW, SKEW, NULL, &d), FX_JWT_UNKNOWN_KID);
    fx_jwt_keyset *none = fx_jwt_keyset_new(); /* e.g. a JWK Set not fetched yet */
    fx_jwt_issuer unfetched = {"https://id.example.com", aud_a, 2, none};
    ck_assert_int_eq(fx_jwt_verify(&unfetched, 1, t.s, t.len, NOW, SKEW, NULL, &d),
                     FX_JWT_UNKNOWN_KID);
    tokspec nokid = {.header = H_NOKID("HS256"), .payload = P_A, .sig = S_HS256};
    token t2 = build(&nokid);
    ck_assert_int_eq(fx_jwt_verify(&unfetched, 1, t2.s, t2.len, NOW, SKEW, NULL, &d),
                     FX_JWT_UNKNOWN_KID);
    free(t2.s);
    fx_jwt_keyset_unref(none);
    /* no audiences configured: nothing can match */
    fx_jwt_issuer noaud = {"https://id.example.com", NULL, 0, ks_a};
    ck_assert_int_eq(fx_jwt_verify(&noaud, 1, t.s, t.len, NOW, SKEW, NULL, &d),
                     FX_JWT_BAD_AUDIENCE);
    /* detail may be NULL, claims may be NULL */
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t.s, t.len, NOW, SKEW, NULL, NULL), FX_JWT_OK);
    free(t.s);
}
END_TEST

/* ---- valid tokens ---------------------------------------------------------------------------- */

typedef struct good_case {
    const char *alg, *kid; /* kid NULL: no kid */
    signer sig;
    const char *payload;
} good_case;

/* clang-format off */
static const good_case goods[] = {
    {"HS256", "hs1", S_HS256, P_A},
    {"HS384", "hs384", S_HS384, P_A},
    {"HS512", "hs512", S_HS512, P_A},
    {"RS256", "rs1", S_RS256, P_A},
    {"RS384", "rs384", S_RS384, P_A},
    {"RS512", "rs512", S_RS512, P_A},
    {"ES256", "es1", S_ES256, P_A},
    {"ES384", "es384", S_ES384, P_A},
    {"PS256", "ps1", S_PS256, P_A},
    /* without kid: the issuer's only key of the alg */
    {"HS256", NULL, S_HS256_OTHER, P_C},
    {"RS256", NULL, S_RS256, P_C},
    {"RS256", NULL, S_RS256, P_D},
    {"ES384", NULL, S_ES384, P_A},
    /* the second key of issuer B, by kid */
    {"HS256", "b2", S_NONE, NULL},
    /* claims at the edges */
    {"HS256", "hs1", S_HS256, "{" ISS_A ",\"aud\":[\"x\",\"admin-ui\"]," EXP_OK "}"},
    {"HS256", "hs1", S_HS256, P_A_WITH("\"exp\":1699999971")},          /* expired 29 s ago: skew */
    {"HS256", "hs1", S_HS256, P_A_WITH(EXP_OK ",\"nbf\":1700000030")},  /* nbf 30 s ahead: skew */
    {"HS256", "hs1", S_HS256, P_A_WITH(EXP_OK ",\"iat\":1700000030")},
    {"HS256", "hs1", S_HS256, P_A_WITH("\"exp\":9223372036854775807")}, /* the largest exp */
    {"ES256", "es1", S_ES256, P_A_WITH(EXP_OK ",\"n\":" NEST15)},
    {"RS256", "rs1", S_RS256, P_A_WITH(EXP_OK ",\"jti\":\"abc\",\"custom\":{\"exp\":\"x\"}")},
};
/* clang-format on */
#define NGOODS (sizeof(goods) / sizeof(goods[0]))

/* Every accepted typ: NULL (absent) and the JWT spellings go to libjwt, the rest to OpenSSL. */
static const char *const typs[] = {NULL, "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt",
                                   "application/jwt"};

static token good_token(const good_case *g, const char *typ, const char *extra_header)
{
    char header[512];
    int n = snprintf(header, sizeof(header), "{\"alg\":\"%s\"", g->alg);
    if (typ)
        n += snprintf(header + n, sizeof(header) - (size_t)n, ",\"typ\":\"%s\"", typ);
    if (g->kid)
        n += snprintf(header + n, sizeof(header) - (size_t)n, ",\"kid\":\"%s\"", g->kid);
    if (extra_header)
        n += snprintf(header + n, sizeof(header) - (size_t)n, ",%s", extra_header);
    snprintf(header + n, sizeof(header) - (size_t)n, "}");
    tokspec ts = {.header = header, .payload = g->payload, .sig = g->sig};
    if (g->sig == S_NONE) { /* issuer B's second key: sign here with its secret */
        ts.payload = P_B;
        char *h = encs(header), *p = encs(P_B);
        char in[1024], mac[64];
        snprintf(in, sizeof(in), "%s.%s", h, p);
        size_t ml = hmac("SHA256", b2_secret, in, strlen(in), (unsigned char *)mac);
        char *s = enc(mac, ml);
        token t = {xmalloc(strlen(in) + strlen(s) + 2), 0};
        sprintf(t.s, "%s.%s", in, s);
        t.len = strlen(t.s);
        free(h);
        free(p);
        free(s);
        return t;
    }
    return build(&ts);
}

START_TEST(test_valid)
{
    const good_case *g = &goods[_i];
    for (size_t ty = 0; ty < sizeof(typs) / sizeof(typs[0]); ty++) {
        token t = good_token(g, typs[ty], NULL);
        static const fx_jwt_backend backends[] = {FX_JWT_BACKEND_AUTO, FX_JWT_BACKEND_LIBJWT,
                                                  FX_JWT_BACKEND_OPENSSL};
        for (size_t b = 0; b < 3; b++) {
            fx_jwt_claims *cl = NULL;
            const char *detail = "unset";
            fx_jwt_reason r =
                fx_jwt_verify_with(issuers, 4, t.s, t.len, NOW, SKEW, &cl, &detail, backends[b]);
            ck_assert_msg(r == FX_JWT_OK, "good[%d] %s kid %s typ %s backend %zu: %s (%s)", _i,
                          g->alg, g->kid ? g->kid : "-", typs[ty] ? typs[ty] : "-", b,
                          fx_jwt_reason_name(r), detail ? detail : "-");
            ck_assert_ptr_null(detail);
            ck_assert_ptr_nonnull(cl);
            ck_assert_ptr_nonnull(fx_jwt_claims_json(cl));
            fx_jwt_claims_unref(cl);
        }
        free(t.s);
    }
}
END_TEST

/* jku, x5u, jwk, x5c and x5t change nothing: the configured key verifies. */
START_TEST(test_key_headers_ignored)
{
    good_case g = {"RS256", "rs1", S_RS256, P_A};
    token t = good_token(&g, "JWT",
                         "\"jku\":\"https://evil.example/jwks.json\",\"x5u\":\"https://evil\","
                         "\"x5c\":[\"AAAA\"],\"x5t\":\"AAAA\",\"jwk\":{\"kty\":\"RSA\","
                         "\"n\":\"AAAA\",\"e\":\"AQAB\"}");
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t.s, t.len, NOW, SKEW, NULL, NULL), FX_JWT_OK);
    free(t.s);
}
END_TEST

/* The size cap: the longest token at or under 8192 bytes passes, any longer one does not. */
START_TEST(test_size_boundary)
{
    int ok_seen = 0, refused_seen = 0;
    for (size_t target = 8180; target <= 8200; target++) {
        tokspec ts = {.header = H("HS256", "hs1"), .payload = P_A, .sig = S_HS256,
                      .pad_to = target};
        token t = build(&ts);
        fx_jwt_reason r = fx_jwt_verify(issuers, 4, t.s, t.len, NOW, SKEW, NULL, NULL);
        if (t.len <= FX_JWT_MAX_TOKEN) {
            ck_assert_msg(r == FX_JWT_OK, "len %zu: %s", t.len, fx_jwt_reason_name(r));
            ok_seen |= t.len >= 8188;
        } else {
            ck_assert_msg(r == FX_JWT_MALFORMED, "len %zu: %s", t.len, fx_jwt_reason_name(r));
            refused_seen = 1;
        }
        free(t.s);
    }
    ck_assert(ok_seen && refused_seen);
}
END_TEST

/* The backends, called on the same signed bytes: libjwt signs (fx_jwt_mint), both verify. */
START_TEST(test_backends_agree_on_minted)
{
    static const struct {
        fx_jwt_algorithm alg;
        const char *kid;
    } m[] = {{FX_JWT_ALG_HS256, "hs1"}, {FX_JWT_ALG_HS384, "hs384"}, {FX_JWT_ALG_HS512, "hs512"},
             {FX_JWT_ALG_RS256, "rs1"}, {FX_JWT_ALG_RS384, "rs384"}, {FX_JWT_ALG_RS512, "rs512"},
             {FX_JWT_ALG_ES256, "es1"}, {FX_JWT_ALG_ES384, "es384"}, {FX_JWT_ALG_PS256, "ps1"}};
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        const char *key;
        switch (m[i].alg) {
        case FX_JWT_ALG_HS256: key = hs256_secret; break;
        case FX_JWT_ALG_HS384: key = hs384_secret; break;
        case FX_JWT_ALG_HS512: key = hs512_secret; break;
        case FX_JWT_ALG_ES256: key = ec256_priv; break;
        case FX_JWT_ALG_ES384: key = ec384_priv; break;
        default: key = rsa_a_priv;
        }
        /* ES signatures have r or s with a leading zero byte 1 time in 128: sign often */
        int rounds = m[i].alg == FX_JWT_ALG_ES256 || m[i].alg == FX_JWT_ALG_ES384 ? 200 : 3;
        for (int k = 0; k < rounds; k++) {
            char err[256] = "", claims[128];
            snprintf(claims, sizeof(claims), "{" ISS_A "," AUD_A ",\"n\":%d}", k);
            char *tok = fx_jwt_mint(m[i].alg, (const unsigned char *)key, strlen(key), m[i].kid,
                                    claims, NOW, 3600, err, sizeof(err));
            ck_assert_msg(tok, "mint %s: %s", fx_jwt_alg_name(m[i].alg), err);
            for (int b = FX_JWT_BACKEND_LIBJWT; b <= FX_JWT_BACKEND_OPENSSL; b++) {
                fx_jwt_reason r = fx_jwt_verify_with(issuers, 4, tok, strlen(tok), NOW, SKEW, NULL,
                                                     NULL, (fx_jwt_backend)b);
                ck_assert_msg(r == FX_JWT_OK, "%s round %d backend %d: %s",
                              fx_jwt_alg_name(m[i].alg), k, b, fx_jwt_reason_name(r));
            }
            /* flip one bit of the signature: both refuse */
            size_t n = strlen(tok);
            tok[n - 5] = tok[n - 5] == 'A' ? 'B' : 'A';
            for (int b = FX_JWT_BACKEND_LIBJWT; b <= FX_JWT_BACKEND_OPENSSL; b++)
                ck_assert_int_eq(fx_jwt_verify_with(issuers, 4, tok, n, NOW, SKEW, NULL, NULL,
                                                    (fx_jwt_backend)b),
                                 FX_JWT_BAD_SIGNATURE);
            free(tok);
        }
    }
}
END_TEST

/* ---- claims ------------------------------------------------------------------------------------ */

static fx_jwt_claims *claims_of(const char *payload)
{
    tokspec ts = {.header = H("HS256", "hs1"), .payload = payload, .sig = S_HS256};
    token t = build(&ts);
    fx_jwt_claims *c = NULL;
    const char *d = NULL;
    fx_jwt_reason r = fx_jwt_verify(issuers, 4, t.s, t.len, NOW, SKEW, &c, &d);
    ck_assert_msg(r == FX_JWT_OK, "%s", d ? d : "");
    free(t.s);
    return c;
}

#define RENDER_PAYLOAD                                                                         \
    "{" ISS_A "," AUD_A "," EXP_OK ",\"sub\":\"42\",\"n\":-7,\"t\":true,\"f\":false,"           \
    "\"nul\":null,\"roles\":[\"admin\",\"dev\"],\"nums\":[1,2,3],\"mixed\":[\"a\",1.5],"        \
    "\"objs\":[{\"a\":1}],\"nested\":[[\"a\"]],\"bools\":[true],\"empty\":[],"                   \
    "\"org\":{\"id\":\"o1\",\"tier\":{\"x\":1}},\"pi\":1.5,"                                    \
    "\"https://example.com/roles\":[\"r1\",\"r2\"],\"a.b\":\"literal\",\"a\":{\"b\":\"walked\"},"  \
    "\"c\":{\"d.e\":1},\"long\":\"abcdefghij\",\"big\":9007199254740993,\"uni\":\"Zo\\u00eb\","        \
    "\"comma\":[\"not,admin\"],\"brack\":[\"[\\\"admin\\\"]\"],\"sbrack\":\"[\\\"admin\\\"]\",\"q\":\"\\\"x\"}"

START_TEST(test_claim_render)
{
    fx_jwt_claims *c = claims_of(RENDER_PAYLOAD);
    static const struct {
        const char *name, *want; /* want NULL: -1 */
    } cases[] = {
        {"sub", "42"},
        {"n", "-7"},
        {"t", "true"},
        {"f", "false"},
        {"nul", NULL},
        {"absent", NULL},
        {"roles", "admin,dev"},
        {"nums", "1,2,3"},
        {"mixed", "a,1.5"},
        {"objs", "[{\"a\":1}]"},
        {"nested", "[[\"a\"]]"},
        {"bools", "[true]"},
        {"empty", ""},
        {"org", "{\"id\":\"o1\",\"tier\":{\"x\":1}}"},
        {"org.id", "o1"},
        {"org.tier.x", "1"},
        {"org.tier", "{\"x\":1}"},
        {"org.nope", NULL},
        {"org.id.x", NULL},
        {"org.", NULL},
        {".org", NULL},
        {"pi", "1.5"},
        {"https://example.com/roles", "r1,r2"},
        {"a.b", "literal"}, /* an exact top-level name wins over the walk */
        {"c.d.e", NULL},    /* the walk splits at every dot */
        {"exp", "1700003600"},
        {"big", "9007199254740993"},
        {"uni", "Zo\xc3\xab"},
        /* never ambiguous for a reader that takes a leading '[' as JSON */
        {"comma", "[\"not,admin\"]"},
        {"brack", "[\"[\\\"admin\\\"]\"]"},
        {"sbrack", "\"[\\\"admin\\\"]\""},
        {"q", "\"\\\"x\""},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        memset(buf, '#', sizeof(buf));
        int n = fx_jwt_claim_render(c, cases[i].name, buf, sizeof(buf));
        if (!cases[i].want) {
            ck_assert_msg(n == -1, "%s: got %d", cases[i].name, n);
            continue;
        }
        ck_assert_msg(n == (int)strlen(cases[i].want), "%s: length %d", cases[i].name, n);
        ck_assert_str_eq(buf, cases[i].want);
    }
    /* truncation: cap - 1 bytes and a NUL */
    char small[4] = "zzz";
    ck_assert_int_eq(fx_jwt_claim_render(c, "long", small, sizeof(small)), 3);
    ck_assert_str_eq(small, "abc");
    ck_assert_int_eq(fx_jwt_claim_render(c, "roles", small, sizeof(small)), 3);
    ck_assert_str_eq(small, "adm");
    ck_assert_int_eq(fx_jwt_claim_render(c, "org", small, 1), 0);
    ck_assert_str_eq(small, "");
    small[0] = 'q';
    ck_assert_int_eq(fx_jwt_claim_render(c, "sub", small, 0), 0);
    ck_assert_int_eq(small[0], 'q');
    ck_assert_int_eq(fx_jwt_claim_render(c, NULL, small, sizeof(small)), -1);
    ck_assert_int_eq(fx_jwt_claim_render(NULL, "sub", small, sizeof(small)), -1);
    fx_jwt_claims_unref(c);
}
END_TEST

START_TEST(test_claims_json_and_exp)
{
    const char *payload = "{" ISS_A "," AUD_A "," EXP_OK ",\"z\":1,\"a\":[1,{\"b\":null}]}";
    fx_jwt_claims *c = claims_of(payload);
    ck_assert_str_eq(fx_jwt_claims_json(c), payload); /* compact, in the token's order */
    ck_assert_int_eq(fx_jwt_claims_exp(c), 1700003600);
    fx_jwt_claims *c2 = fx_jwt_claims_ref(c);
    ck_assert_ptr_eq(c, c2);
    fx_jwt_claims_unref(c);
    ck_assert_str_eq(fx_jwt_claims_json(c2), payload); /* still alive */
    fx_jwt_claims_unref(c2);
    fx_jwt_claims_unref(NULL);
    ck_assert_ptr_null(fx_jwt_claims_ref(NULL));
    ck_assert_ptr_null(fx_jwt_claims_json(NULL));
}
END_TEST

/* ---- cache ------------------------------------------------------------------------------------- */

static uint64_t same_hash(const char *tok, size_t len, uint64_t seed)
{
    (void)tok, (void)len, (void)seed;
    return 42;
}

START_TEST(test_cache_hit_miss)
{
    fx_jwt_cache *k = fx_jwt_cache_new(8);
    fx_jwt_claims *a = claims_of(P_A);
    const char *ta = "token-a", *tb = "token-b";
    ck_assert_ptr_null(fx_jwt_cache_get(k, ta, strlen(ta), NOW, 1));
    fx_jwt_cache_put(k, ta, strlen(ta), a, NOW + 100, 1);
    fx_jwt_claims_unref(a); /* the cache holds its own reference */
    const fx_jwt_claims *got = fx_jwt_cache_get(k, ta, strlen(ta), NOW, 1);
    ck_assert_ptr_eq(got, a);
    ck_assert_int_eq(fx_jwt_claims_exp(got), 1700003600);
    ck_assert_ptr_null(fx_jwt_cache_get(k, tb, strlen(tb), NOW, 1));
    ck_assert_ptr_null(fx_jwt_cache_get(k, ta, strlen(ta) - 1, NOW, 1)); /* a prefix */
    ck_assert_ptr_null(fx_jwt_cache_get(k, "token-a+", 8, NOW, 1));     /* longer */
    ck_assert_uint_eq(fx_jwt_cache_size(k), 1);
    fx_jwt_cache_free(k);
}
END_TEST

START_TEST(test_cache_expiry)
{
    fx_jwt_cache *k = fx_jwt_cache_new(8);
    fx_jwt_claims *a = claims_of(P_A);
    fx_jwt_cache_put(k, "t", 1, a, NOW + 10, 1);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, "t", 1, NOW + 9, 1), a);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW + 10, 1)); /* now < valid_until only */
    ck_assert_uint_eq(fx_jwt_cache_size(k), 0);                   /* dropped on the spot */
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW, 1));       /* gone, even if time is back */
    fx_jwt_claims_unref(a);
    fx_jwt_cache_free(k);
}
END_TEST

START_TEST(test_cache_generation)
{
    fx_jwt_cache *k = fx_jwt_cache_new(8);
    fx_jwt_claims *a = claims_of(P_A), *b = claims_of(P_A2);
    fx_jwt_cache_put(k, "t", 1, a, NOW + 100, 7);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, "t", 1, NOW, 7), a);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW, 8)); /* keys changed */
    ck_assert_uint_eq(fx_jwt_cache_size(k), 0);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW, 7));
    /* a put of the same token replaces claims, valid_until and generation */
    fx_jwt_cache_put(k, "t", 1, a, NOW + 100, 8);
    fx_jwt_cache_put(k, "t", 1, b, NOW + 50, 9);
    ck_assert_uint_eq(fx_jwt_cache_size(k), 1);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW, 8));
    fx_jwt_cache_put(k, "t", 1, b, NOW + 50, 9);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, "t", 1, NOW, 9), b);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "t", 1, NOW + 50, 9));
    fx_jwt_claims_unref(a);
    fx_jwt_claims_unref(b);
    fx_jwt_cache_free(k);
}
END_TEST

START_TEST(test_cache_eviction)
{
    fx_jwt_cache *k = fx_jwt_cache_new(2);
    fx_jwt_claims *a = claims_of(P_A);
    fx_jwt_cache_put(k, "A", 1, a, NOW + 100, 1);
    fx_jwt_cache_put(k, "B", 1, a, NOW + 100, 1);
    ck_assert_ptr_nonnull(fx_jwt_cache_get(k, "A", 1, NOW, 1)); /* A is now the most recent */
    fx_jwt_cache_put(k, "C", 1, a, NOW + 100, 1);                /* evicts B */
    ck_assert_uint_eq(fx_jwt_cache_size(k), 2);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "B", 1, NOW, 1));
    ck_assert_ptr_nonnull(fx_jwt_cache_get(k, "A", 1, NOW, 1));
    ck_assert_ptr_nonnull(fx_jwt_cache_get(k, "C", 1, NOW, 1));
    fx_jwt_cache_put(k, "D", 1, a, NOW + 100, 1); /* evicts A (C was used last) */
    ck_assert_ptr_null(fx_jwt_cache_get(k, "A", 1, NOW, 1));
    ck_assert_ptr_nonnull(fx_jwt_cache_get(k, "C", 1, NOW, 1));
    ck_assert_ptr_nonnull(fx_jwt_cache_get(k, "D", 1, NOW, 1));
    /* many more tokens than entries, with growing lengths (buffers are reused) */
    char tok[300];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(tok, sizeof(tok), "%0*d", 1 + i % 250, i);
        fx_jwt_cache_put(k, tok, (size_t)n, a, NOW + 100, 1);
        ck_assert_ptr_eq(fx_jwt_cache_get(k, tok, (size_t)n, NOW, 1), a);
        ck_assert_uint_le(fx_jwt_cache_size(k), 2);
    }
    fx_jwt_claims_unref(a);
    fx_jwt_cache_free(k);
}
END_TEST

/* Two tokens with the same hash (forced): a hit compares the whole token. */
START_TEST(test_cache_full_compare)
{
    fx_jwt_cache *k = fx_jwt_cache_new(4);
    fx_jwt_cache_set_hash(k, same_hash);
    fx_jwt_claims *a = claims_of(P_A), *b = claims_of(P_A2);
    const char *ta = "eyJ.same-length-token.AAAA", *tb = "eyJ.same-length-token.AAAB";
    fx_jwt_cache_put(k, ta, strlen(ta), a, NOW + 100, 1);
    ck_assert_ptr_null(fx_jwt_cache_get(k, tb, strlen(tb), NOW, 1));
    fx_jwt_cache_put(k, tb, strlen(tb), b, NOW + 100, 1);
    ck_assert_uint_eq(fx_jwt_cache_size(k), 2);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, ta, strlen(ta), NOW, 1), a);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, tb, strlen(tb), NOW, 1), b);
    ck_assert_ptr_null(fx_jwt_cache_get(k, "x", 1, NOW, 1));
    /* drop the one in the middle of the chain, the others stay reachable */
    fx_jwt_cache_put(k, "c", 1, a, NOW + 100, 1);
    ck_assert_ptr_null(fx_jwt_cache_get(k, tb, strlen(tb), NOW, 2));
    ck_assert_ptr_eq(fx_jwt_cache_get(k, ta, strlen(ta), NOW, 1), a);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, "c", 1, NOW, 1), a);
    fx_jwt_claims_unref(a);
    fx_jwt_claims_unref(b);
    fx_jwt_cache_free(k);
}
END_TEST

START_TEST(test_cache_edges)
{
    fx_jwt_claims *a = claims_of(P_A);
    fx_jwt_cache *z = fx_jwt_cache_new(0); /* a cache that keeps nothing */
    ck_assert_ptr_nonnull(z);
    fx_jwt_cache_put(z, "t", 1, a, NOW + 100, 1);
    ck_assert_ptr_null(fx_jwt_cache_get(z, "t", 1, NOW, 1));
    fx_jwt_cache_free(z);
    fx_jwt_cache *k = fx_jwt_cache_new(4);
    char *big = xmalloc(FX_JWT_MAX_TOKEN + 1);
    memset(big, 'a', FX_JWT_MAX_TOKEN + 1);
    fx_jwt_cache_put(k, big, FX_JWT_MAX_TOKEN + 1, a, NOW + 100, 1); /* never verified: ignored */
    ck_assert_uint_eq(fx_jwt_cache_size(k), 0);
    fx_jwt_cache_put(k, big, FX_JWT_MAX_TOKEN, a, NOW + 100, 1);
    ck_assert_ptr_eq(fx_jwt_cache_get(k, big, FX_JWT_MAX_TOKEN, NOW, 1), a);
    fx_jwt_cache_put(k, "", 0, a, NOW + 100, 1);
    fx_jwt_cache_put(k, "t", 1, NULL, NOW + 100, 1);
    ck_assert_uint_eq(fx_jwt_cache_size(k), 1);
    ck_assert_ptr_null(fx_jwt_cache_get(NULL, "t", 1, NOW, 1));
    fx_jwt_cache_free(k);
    fx_jwt_cache_free(NULL);
    free(big);
    fx_jwt_claims_unref(a);
}
END_TEST

/* What a worker does: verify once, then serve from the cache until exp + skew. */
START_TEST(test_cache_with_verify)
{
    fx_jwt_cache *k = fx_jwt_cache_new(16);
    good_case g = {"RS256", "rs1", S_RS256, P_A};
    token t = good_token(&g, "JWT", NULL);
    ck_assert_ptr_null(fx_jwt_cache_get(k, t.s, t.len, NOW, 1));
    fx_jwt_claims *c = NULL;
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t.s, t.len, NOW, SKEW, &c, NULL), FX_JWT_OK);
    fx_jwt_cache_put(k, t.s, t.len, c, fx_jwt_claims_exp(c) + SKEW, 1);
    fx_jwt_claims_unref(c);
    const fx_jwt_claims *hit = fx_jwt_cache_get(k, t.s, t.len, NOW + 3600, 1);
    ck_assert_ptr_nonnull(hit);
    char sub[16];
    ck_assert_int_eq(fx_jwt_claim_render(hit, "sub", sub, sizeof(sub)), 2);
    ck_assert_ptr_null(fx_jwt_cache_get(k, t.s, t.len, 1700003600 + SKEW, 1));
    free(t.s);
    fx_jwt_cache_free(k);
}
END_TEST

/* ---- JWK Sets ------------------------------------------------------------------------------------ */

static char *bn_b64(EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
        abort();
    unsigned char buf[1200];
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    BN_bn2binpad(bn, buf, (int)n);
    BN_free(bn);
    return enc(buf, n);
}

/* {"kty":"RSA",...} for a key; `extra` is spliced in as members (may be "") */
static char *jwk_rsa(EVP_PKEY *k, const char *extra)
{
    char *n = bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0), *e = bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    char *out = xmalloc(strlen(n) + strlen(extra) + 64);
    sprintf(out, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s%s}", n, e, *extra ? "," : "",
            extra);
    free(n);
    free(e);
    return out;
}

static char *jwk_ec(EVP_PKEY *k, const char *crv, size_t coord, const char *extra)
{
    char *x = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, coord);
    char *y = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, coord);
    char *out = xmalloc(strlen(x) + strlen(y) + strlen(extra) + 80);
    sprintf(out, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s%s}", crv, x, y,
            *extra ? "," : "", extra);
    free(x);
    free(y);
    return out;
}

static char *jwk_oct(const char *secret, const char *extra)
{
    char *k = encs(secret);
    char *out = xmalloc(strlen(k) + strlen(extra) + 40);
    sprintf(out, "{\"kty\":\"oct\",\"k\":\"%s\"%s%s}", k, *extra ? "," : "", extra);
    free(k);
    return out;
}

/* {"keys":[a, b, ...]}, taking the members (NULL ends) */
static char *jwks(char *first, ...)
{
    size_t cap = 64;
    va_list ap;
    va_start(ap, first);
    for (char *m = first; m; m = va_arg(ap, char *))
        cap += strlen(m) + 1;
    va_end(ap);
    char *out = xmalloc(cap);
    strcpy(out, "{\"keys\":[");
    va_start(ap, first);
    int i = 0;
    for (char *m = first; m; m = va_arg(ap, char *), i++) {
        if (i)
            strcat(out, ",");
        strcat(out, m);
        free(m);
    }
    va_end(ap);
    strcat(out, "]}");
    return out;
}

START_TEST(test_jwks_load_and_verify)
{
    char *set = jwks(jwk_rsa(rsa_a, "\"kid\":\"r\",\"alg\":\"RS256\",\"use\":\"sig\""),
                     jwk_rsa(rsa_a, "\"kid\":\"p\",\"alg\":\"PS256\""),
                     jwk_ec(ec256, "P-256", 32, "\"kid\":\"e\""), /* EC: the curve decides */
                     jwk_ec(ec384, "P-384", 48, "\"kid\":\"e384\",\"alg\":\"ES384\""),
                     jwk_oct(hs256_secret, "\"kid\":\"h\",\"alg\":\"HS256\""),
                     jwk_oct(hs512_secret, "\"kid\":\"h5\",\"alg\":\"HS512\",\"key_ops\":[\"sign\","
                                           "\"verify\"]"),
                     /* skipped: encryption keys, unknown types, algs not implemented here */
                     jwk_rsa(rsa_b, "\"kid\":\"enc\",\"alg\":\"RSA-OAEP\",\"use\":\"enc\""),
                     jwk_rsa(rsa_b, "\"kid\":\"enc2\",\"alg\":\"RS256\",\"use\":\"enc\""),
                     jwk_rsa(rsa_b, "\"kid\":\"ops\",\"alg\":\"RS256\",\"key_ops\":[\"encrypt\"]"),
                     jwk_rsa(rsa_b, "\"kid\":\"ps512\",\"alg\":\"PS512\""),
                     strdup("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"kid\":\"ed\"}"),
                     strdup("{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\",\"kid\":\"p521\"}"),
                     (char *)NULL);
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256] = "";
    ck_assert_msg(fx_jwt_keyset_add_jwks(ks, set, strlen(set), err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(fx_jwt_keyset_count(ks), 6);
    ck_assert(fx_jwt_keyset_has_kid(ks, "e384", 4));
    ck_assert(!fx_jwt_keyset_has_kid(ks, "e38", 3));
    ck_assert(!fx_jwt_keyset_has_kid(ks, "enc", 3));
    ck_assert(!fx_jwt_keyset_has_kid(ks, "ed", 2));
    ck_assert(!fx_jwt_keyset_has_kid(ks, NULL, 0));

    const char *auds[] = {"just-social"};
    fx_jwt_issuer is = {"https://id.example.com", auds, 1, ks};
    static const good_case g[] = {{"RS256", "r", S_RS256, P_A},   {"PS256", "p", S_PS256, P_A},
                                  {"ES256", "e", S_ES256, P_A},   {"ES384", "e384", S_ES384, P_A},
                                  {"HS256", "h", S_HS256, P_A},   {"HS512", "h5", S_HS512, P_A},
                                  {"ES256", NULL, S_ES256, P_A}};
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        for (int b = FX_JWT_BACKEND_LIBJWT; b <= FX_JWT_BACKEND_OPENSSL; b++) {
            token t = good_token(&g[i], "JWT", NULL);
            fx_jwt_reason r =
                fx_jwt_verify_with(&is, 1, t.s, t.len, NOW, SKEW, NULL, NULL, (fx_jwt_backend)b);
            ck_assert_msg(r == FX_JWT_OK, "%s %s: %s", g[i].alg, g[i].kid ? g[i].kid : "-",
                          fx_jwt_reason_name(r));
            free(t.s);
        }
    }
    /* the skipped RSA key of the attacker is not there to verify with */
    good_case ge = {"RS256", "enc2", S_RS256_B, P_A};
    token t = good_token(&ge, "JWT", NULL);
    ck_assert_int_eq(fx_jwt_verify(&is, 1, t.s, t.len, NOW, SKEW, NULL, NULL), FX_JWT_UNKNOWN_KID);
    free(t.s);
    fx_jwt_keyset_unref(fx_jwt_keyset_ref(ks));
    fx_jwt_keyset_unref(ks);
    free(set);
}
END_TEST

typedef struct jwks_bad {
    const char *name;
    char *json;
    const char *msg; /* a part of the error message */
} jwks_bad;

START_TEST(test_jwks_refused)
{
    char *rsa_ok = jwk_rsa(rsa_a, "\"kid\":\"ok\",\"alg\":\"RS256\"");
    char *weak_secret = encs("0123456789abcdef0123456789abcde"); /* 31 bytes */
    char *oct48 = encs(hs384_secret);
    char bad_point[400], short_x[400], padded_n[4000], even_e[4000];
    {
        char *x = bn_b64(ec256, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        snprintf(bad_point, sizeof(bad_point),
                 "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x, x);
        /* (x, x) is not on the curve */
        snprintf(short_x, sizeof(short_x),
                 "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%.40s\",\"y\":\"%s\"}]}", x, x);
        free(x);
        char *n = bn_b64(rsa_a, OSSL_PKEY_PARAM_RSA_N, 0);
        snprintf(padded_n, sizeof(padded_n),
                 "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"n\":\"%s=\",\"e\":\"AQAB\"}]}", n);
        snprintf(even_e, sizeof(even_e),
                 "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"AQAA\"}]}", n);
        free(n);
    }
    char weak_oct[300], hs384_as_512[300];
    snprintf(weak_oct, sizeof(weak_oct),
             "{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS256\",\"kid\":\"w\",\"k\":\"%s\"}]}",
             weak_secret);
    snprintf(hs384_as_512, sizeof(hs384_as_512),
             "{\"keys\":[{\"kty\":\"oct\",\"alg\":\"HS512\",\"k\":\"%s\"}]}", oct48);
    jwks_bad cases[] = {
        {"not JSON", strdup("{\"keys\":["), "not valid JSON"},
        {"empty input", strdup(""), "not valid JSON"},
        {"an array", strdup("[]"), "\"keys\" array"},
        {"keys missing", strdup("{}"), "\"keys\" array"},
        {"keys an object", strdup("{\"keys\":{}}"), "\"keys\" array"},
        {"no keys", strdup("{\"keys\":[]}"), "no usable signature key"},
        {"only an encryption key",
         jwks(jwk_rsa(rsa_a, "\"use\":\"enc\",\"alg\":\"RS256\""), (char *)NULL),
         "no usable signature key"},
        {"duplicate member", strdup("{\"keys\":[],\"keys\":[]}"), "not valid JSON"},
        {"key not an object", strdup("{\"keys\":[1]}"), "keys[0]: is not a JSON object"},
        {"kty missing", strdup("{\"keys\":[{\"k\":\"AAAA\"}]}"), "\"kty\""},
        {"use not a string", strdup("{\"keys\":[{\"kty\":\"oct\",\"use\":1}]}"), "\"use\""},
        {"key_ops not an array", strdup("{\"keys\":[{\"kty\":\"oct\",\"key_ops\":\"verify\"}]}"),
         "\"key_ops\""},
        {"kid not a string", strdup("{\"keys\":[{\"kty\":\"oct\",\"kid\":5}]}"), "\"kid\""},
        {"kid empty", strdup("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"\"}]}"), "\"kid\""},
        {"alg none", strdup("{\"keys\":[{\"kty\":\"oct\",\"alg\":\"none\",\"k\":\"AAAA\"}]}"),
         "never accepted"},
        {"alg in lower case", strdup("{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"rs256\"}]}"),
         "case-sensitive"},
        {"alg not a string", strdup("{\"keys\":[{\"kty\":\"RSA\",\"alg\":256}]}"), "\"alg\""},
        {"RSA without alg", jwks(jwk_rsa(rsa_a, "\"kid\":\"x\""), (char *)NULL), "needs \"alg\""},
        {"oct without alg", jwks(jwk_oct(hs256_secret, ""), (char *)NULL), "needs \"alg\""},
        {"RSA key with an HMAC alg", jwks(jwk_rsa(rsa_a, "\"alg\":\"HS256\""), (char *)NULL),
         "can only be RS256"},
        {"oct key with an RSA alg", jwks(jwk_oct(hs256_secret, "\"alg\":\"RS256\""), (char *)NULL),
         "can only be HS256"},
        {"EC key with an RSA alg",
         jwks(jwk_ec(ec256, "P-256", 32, "\"alg\":\"RS256\""), (char *)NULL), "does not match"},
        {"weak RSA (1024 bits)", jwks(jwk_rsa(rsa_weak, "\"alg\":\"RS256\""), (char *)NULL),
         "RSA key of 1024 bits refused"},
        {"weak HS256 secret (31 bytes)", strdup(weak_oct), "HS256 secret of 31 bytes refused"},
        {"HS512 secret of 48 bytes", strdup(hs384_as_512), "bytes refused: at least 64 bytes"},
        {"P-256 key for ES384",
         jwks(jwk_ec(ec256, "P-256", 32, "\"alg\":\"ES384\""), (char *)NULL), "does not match"},
        {"P-384 key for ES256",
         jwks(jwk_ec(ec384, "P-384", 48, "\"alg\":\"ES256\""), (char *)NULL), "does not match"},
        {"secp256k1 key for ES256",
         jwks(jwk_ec(ec_k1, "secp256k1", 32, "\"alg\":\"ES256\""), (char *)NULL),
         "does not match"},
        {"EC point not on the curve", strdup(bad_point), "not on the curve"},
        {"EC x too short", strdup(short_x), "full length"},
        {"RSA n padded with '='", strdup(padded_n), "\"n\" is not a non-empty base64url"},
        {"RSA e even", strdup(even_e), "must be odd"},
        {"RSA e missing", strdup("{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"n\":\"AQAB\"}]}"),
         "\"e\" is missing"},
        {"RSA private key", jwks(jwk_rsa(rsa_a, "\"alg\":\"RS256\",\"d\":\"AQAB\""), (char *)NULL),
         "private key"},
        {"EC private key", jwks(jwk_ec(ec256, "P-256", 32, "\"d\":\"AQAB\""), (char *)NULL),
         "private key"},
        {"duplicate kid", jwks(strdup(rsa_ok), strdup(rsa_ok), (char *)NULL), "duplicate \"kid\""},
        {"a good key, then a weak one: nothing added",
         jwks(jwk_rsa(rsa_a, "\"kid\":\"g\",\"alg\":\"RS256\""),
              jwk_rsa(rsa_weak, "\"kid\":\"w\",\"alg\":\"RS256\""), (char *)NULL),
         "keys[1] (kid 'w'): RSA key of 1024 bits"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_jwt_keyset *ks = fx_jwt_keyset_new();
        char err[256] = "";
        int r = fx_jwt_keyset_add_jwks(ks, cases[i].json, strlen(cases[i].json), err, sizeof(err));
        ck_assert_msg(r == -1, "%s: accepted", cases[i].name);
        ck_assert_msg(strstr(err, cases[i].msg), "%s: message '%s' lacks '%s'", cases[i].name, err,
                      cases[i].msg);
        ck_assert_uint_eq(fx_jwt_keyset_count(ks), 0);
        /* never key material in the message */
        ck_assert_msg(!strstr(err, weak_secret) && !strstr(err, oct48), "%s: %s", cases[i].name,
                      err);
        fx_jwt_keyset_unref(ks);
        free(cases[i].json);
    }
    /* a kid already in the set from an earlier add */
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char *one = jwks(strdup(rsa_ok), (char *)NULL);
    char err[256];
    ck_assert_int_eq(fx_jwt_keyset_add_jwks(ks, one, strlen(one), err, sizeof(err)), 0);
    ck_assert_int_eq(fx_jwt_keyset_add_jwks(ks, one, strlen(one), err, sizeof(err)), -1);
    ck_assert_uint_eq(fx_jwt_keyset_count(ks), 1);
    /* too big, before any parsing */
    char *huge = calloc(1, 1024 * 1024 + 2);
    memset(huge, ' ', 1024 * 1024 + 1);
    ck_assert_int_eq(fx_jwt_keyset_add_jwks(ks, huge, strlen(huge), err, sizeof(err)), -1);
    ck_assert(strstr(err, "1 MiB"));
    ck_assert_int_eq(fx_jwt_keyset_add_jwks(ks, NULL, 0, err, sizeof(err)), -1);
    ck_assert_int_eq(fx_jwt_keyset_add_jwks(ks, "{", 1, NULL, 0), -1); /* no err buffer */
    free(huge);
    free(one);
    fx_jwt_keyset_unref(ks);
    free(rsa_ok);
    free(weak_secret);
    free(oct48);
}
END_TEST

/* ---- PEM keys and secrets ------------------------------------------------------------------------- */

START_TEST(test_pem_and_secret)
{
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256];
#define REFUSED(call, part)                                                                     \
    do {                                                                                        \
        err[0] = '\0';                                                                          \
        ck_assert_int_eq((call), -1);                                                           \
        ck_assert_msg(strstr(err, part), "'%s' lacks '%s'", err, part);                         \
        ck_assert(!strstr(err, "BEGIN PRIVATE") && !strstr(err, "test-only"));                  \
    } while (0)
    ck_assert_int_eq(fx_jwt_keyset_add_pem(ks, "r", FX_JWT_ALG_RS256, rsa_a_pub,
                                           strlen(rsa_a_pub), err, sizeof(err)),
                     0);
    ck_assert_int_eq(fx_jwt_keyset_add_pem(ks, NULL, FX_JWT_ALG_ES384, ec384_pub,
                                           strlen(ec384_pub), err, sizeof(err)),
                     0);
    REFUSED(fx_jwt_keyset_add_pem(ks, "r", FX_JWT_ALG_RS384, rsa_a_pub, strlen(rsa_a_pub), err,
                                  sizeof(err)),
            "duplicate kid");
    REFUSED(fx_jwt_keyset_add_pem(ks, "w", FX_JWT_ALG_RS256, rsa_weak_pub, strlen(rsa_weak_pub),
                                  err, sizeof(err)),
            "1024 bits");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_ES256, rsa_a_pub, strlen(rsa_a_pub), err,
                                  sizeof(err)),
            "ES256 needs an EC key");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_RS256, ec256_pub, strlen(ec256_pub), err,
                                  sizeof(err)),
            "RS256 needs an RSA key");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_ES384, ec256_pub, strlen(ec256_pub), err,
                                  sizeof(err)),
            "ES384 needs P-384");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_ES256, ec_k1_pub, strlen(ec_k1_pub), err,
                                  sizeof(err)),
            "ES256 needs P-256");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_HS256, rsa_a_pub, strlen(rsa_a_pub), err,
                                  sizeof(err)),
            "not HS256");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_NONE, rsa_a_pub, strlen(rsa_a_pub), err,
                                  sizeof(err)),
            "not none");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_RS256, rsa_a_priv, strlen(rsa_a_priv), err,
                                  sizeof(err)),
            "not a PEM public key");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_RS256, "garbage", 7, err, sizeof(err)),
            "not a PEM public key");
    REFUSED(fx_jwt_keyset_add_pem(ks, "x", FX_JWT_ALG_RS256, "", 0, err, sizeof(err)),
            "no PEM public key");
    REFUSED(fx_jwt_keyset_add_pem(ks, "", FX_JWT_ALG_RS256, rsa_a_pub, strlen(rsa_a_pub), err,
                                  sizeof(err)),
            "kid must have");

    const unsigned char *s = (const unsigned char *)hs512_secret;
    ck_assert_int_eq(fx_jwt_keyset_add_secret(ks, "h", FX_JWT_ALG_HS256, s, 32, err, sizeof(err)),
                     0);
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_HS256, s, 31, err, sizeof(err)),
            "HS256 secret of 31 bytes refused: at least 32 bytes");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_HS384, s, 47, err, sizeof(err)),
            "HS384 secret of 47 bytes refused: at least 48 bytes");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_HS512, s, 63, err, sizeof(err)),
            "HS512 secret of 63 bytes refused: at least 64 bytes");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_HS256, s, 0, err, sizeof(err)),
            "0 bytes refused");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_RS256, s, 64, err, sizeof(err)),
            "not RS256");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h", FX_JWT_ALG_HS256, s, 64, err, sizeof(err)),
            "duplicate kid");
    REFUSED(fx_jwt_keyset_add_secret(ks, "h2", FX_JWT_ALG_HS256, NULL, 64, err, sizeof(err)),
            "no secret");
    ck_assert_int_eq(fx_jwt_keyset_add_secret(ks, "h3", FX_JWT_ALG_HS512, s, 64, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(fx_jwt_keyset_count(ks), 4);
    ck_assert_uint_eq(fx_jwt_keyset_count(NULL), 0);
#undef REFUSED
    fx_jwt_keyset_unref(ks);
    fx_jwt_keyset_unref(NULL);
}
END_TEST

/* ---- minting ----------------------------------------------------------------------------------- */

/* The header and payload of a minted token, decoded with the library's strict decoder. */
static char *segment(const char *tok, int which)
{
    const char *p = tok;
    for (int i = 0; i < which; i++)
        p = strchr(p, '.') + 1;
    const char *e = strchr(p, '.');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char *out = calloc(1, n + 1);
    size_t len;
    ck_assert_int_eq(fx_b64url_decode(p, n, (unsigned char *)out, &len), 0);
    return out;
}

START_TEST(test_mint_round_trip)
{
    char err[256] = "";
    char *t = fx_jwt_mint(FX_JWT_ALG_RS256, (const unsigned char *)rsa_a_priv, strlen(rsa_a_priv),
                          "rs1", "{" ISS_A "," AUD_A ",\"sub\":\"7\",\"roles\":[\"a\",\"b\"]}", NOW,
                          600, err, sizeof(err));
    ck_assert_msg(t, "%s", err);
    char *h = segment(t, 0), *p = segment(t, 1);
    ck_assert(strstr(h, "\"alg\":\"RS256\"") && strstr(h, "\"typ\":\"JWT\"") &&
              strstr(h, "\"kid\":\"rs1\""));
    ck_assert(strstr(p, "\"iat\":1700000000") && strstr(p, "\"exp\":1700000600"));
    fx_jwt_claims *c = NULL;
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t, strlen(t), NOW, SKEW, &c, NULL), FX_JWT_OK);
    char buf[32];
    ck_assert_int_eq(fx_jwt_claim_render(c, "roles", buf, sizeof(buf)), 3);
    ck_assert_str_eq(buf, "a,b");
    ck_assert_int_eq(fx_jwt_claims_exp(c), NOW + 600);
    fx_jwt_claims_unref(c);
    free(h);
    free(p);
    free(t);

    /* exp and iat given: kept; no kid: none in the header; NULL claims: {} */
    t = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)other_secret, strlen(other_secret),
                    NULL, "{\"iss\":\"https://nokid.example.com\"," AUD_A ",\"exp\":1700000100,"
                          "\"iat\":1699999999}",
                    NOW, 600, err, sizeof(err));
    ck_assert_msg(t, "%s", err);
    h = segment(t, 0);
    ck_assert(!strstr(h, "kid"));
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t, strlen(t), NOW, SKEW, &c, NULL), FX_JWT_OK);
    ck_assert_int_eq(fx_jwt_claims_exp(c), 1700000100);
    fx_jwt_claims_unref(c);
    free(h);
    free(t);
    t = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)other_secret, strlen(other_secret),
                    NULL, NULL, NOW, -10, err, sizeof(err));
    ck_assert_msg(t, "%s", err);
    p = segment(t, 1);
    ck_assert(strstr(p, "\"iat\":1700000000") && strstr(p, "\"exp\":1699999990"));
    ck_assert_uint_eq(strlen(p), strlen("{\"iat\":1700000000,\"exp\":1699999990}"));
    free(p);
    free(t);
    /* PS256 is minted by the library itself (libjwt 1.10 has no PSS) */
    t = fx_jwt_mint(FX_JWT_ALG_PS256, (const unsigned char *)rsa_a_priv, strlen(rsa_a_priv), "ps1",
                    "{" ISS_A "," AUD_A "}", NOW, 60, err, sizeof(err));
    ck_assert_msg(t, "%s", err);
    h = segment(t, 0);
    ck_assert_str_eq(h, "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"kid\":\"ps1\"}");
    ck_assert_int_eq(fx_jwt_verify(issuers, 4, t, strlen(t), NOW, SKEW, NULL, NULL), FX_JWT_OK);
    free(h);
    free(t);
}
END_TEST

START_TEST(test_mint_refused)
{
    char err[256];
    const unsigned char *rsa = (const unsigned char *)rsa_a_priv;
#define MINT_REFUSED(call, part)                                                                \
    do {                                                                                        \
        err[0] = '\0';                                                                          \
        char *t_ = (call);                                                                      \
        ck_assert_ptr_null(t_);                                                                 \
        ck_assert_msg(strstr(err, part), "'%s' lacks '%s'", err, part);                         \
    } while (0)
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_NONE, rsa, 10, NULL, NULL, NOW, 60, err, sizeof(err)),
                 "never minted");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)"short", 5, NULL, NULL, NOW,
                             60, err, sizeof(err)),
                 "5 bytes refused");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_HS256, NULL, 0, NULL, NULL, NOW, 60, err, sizeof(err)),
                 "no key");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_RS256, rsa, strlen(rsa_a_priv), NULL, "[1]", NOW, 60, err,
                             sizeof(err)),
                 "must be a JSON object");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_RS256, rsa, strlen(rsa_a_priv), NULL, "{\"a\":1,\"a\":2}",
                             NOW, 60, err, sizeof(err)),
                 "not valid JSON");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_ES256, rsa, strlen(rsa_a_priv), NULL, NULL, NOW, 60, err,
                             sizeof(err)),
                 "ES256 needs an EC key");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_ES384, (const unsigned char *)ec256_priv,
                             strlen(ec256_priv), NULL, NULL, NOW, 60, err, sizeof(err)),
                 "ES384 needs P-384");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_RS256, (const unsigned char *)rsa_weak_priv,
                             strlen(rsa_weak_priv), NULL, NULL, NOW, 60, err, sizeof(err)),
                 "1024 bits");
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_RS256, (const unsigned char *)rsa_a_pub,
                             strlen(rsa_a_pub), NULL, NULL, NOW, 60, err, sizeof(err)),
                 "not an unencrypted PEM private key");
    /* an encrypted key fails to load: no passphrase prompt on the terminal */
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, rsa_a, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)"pass");
    char *d;
    long n = BIO_get_mem_data(b, &d);
    MINT_REFUSED(fx_jwt_mint(FX_JWT_ALG_RS256, (const unsigned char *)d, (size_t)n, NULL, NULL,
                             NOW, 60, err, sizeof(err)),
                 "not an unencrypted PEM private key");
    BIO_free(b);
#undef MINT_REFUSED
}
END_TEST

/* ---- interop: tokens signed by PyJWT (tests/data/jwt/interop, see its README) ------------------- */

static char *slurp(const char *name, size_t *len)
{
    const char *dir = getenv("FX_TEST_DATA") ? getenv("FX_TEST_DATA") : FX_TEST_DATA_DIR;
    char path[1024];
    snprintf(path, sizeof(path), "%s/jwt/interop/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "cannot open %s", path);
    char *buf = xmalloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

START_TEST(test_interop_pyjwt)
{
    size_t n;
    char *set = slurp("jwks.json", &n);
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    char err[256];
    ck_assert_msg(fx_jwt_keyset_add_jwks(ks, set, n, err, sizeof(err)) == 0, "%s", err);
    const char *auds[] = {"interop"};
    fx_jwt_issuer is = {"https://interop.example.com", auds, 1, ks};
    char *list = slurp("tokens.txt", &n);
    /* lines: "<expected reason> <name> <token>" */
    int count = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !line[0])
            continue;
        char want[32], name[64], tok[FX_JWT_MAX_TOKEN + 1];
        ck_assert_int_eq(sscanf(line, "%31s %63s %8192s", want, name, tok), 3);
        for (int b = FX_JWT_BACKEND_AUTO; b <= FX_JWT_BACKEND_OPENSSL; b++) {
            const char *detail = NULL;
            fx_jwt_reason r = fx_jwt_verify_with(&is, 1, tok, strlen(tok), 1700000000, 30, NULL,
                                                 &detail, (fx_jwt_backend)b);
            ck_assert_msg(strcmp(fx_jwt_reason_name(r), want) == 0, "%s backend %d: %s (%s)", name,
                          b, fx_jwt_reason_name(r), detail ? detail : "-");
        }
        count++;
    }
    ck_assert_int_ge(count, 9);
    free(list);
    free(set);
    fx_jwt_keyset_unref(ks);
}
END_TEST

/* ---- base64url and names ------------------------------------------------------------------------- */

START_TEST(test_b64url)
{
    unsigned char in[70], out[70];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n < sizeof(in); n++) {
        char *e = enc(in, n), lib[100];
        fx_b64url_encode(in, n, lib);
        ck_assert_str_eq(lib, e); /* the library's encoder agrees with the test's */
        ck_assert_uint_eq(fx_b64url_encoded_len(n), strlen(e));
        ck_assert(fx_b64url_valid(e, strlen(e)));
        size_t len = 0;
        ck_assert_int_eq(fx_b64url_decode(e, strlen(e), out, &len), 0);
        ck_assert_uint_eq(len, n);
        ck_assert_uint_eq(fx_b64url_decoded_len(strlen(e)), n);
        ck_assert(memcmp(in, out, n) == 0);
        free(e);
    }
    /* every byte outside the alphabet is refused, wherever it is */
    for (int ch = 0; ch < 256; ch++) {
        char s[5] = "AAAA";
        s[1] = (char)ch;
        int in_alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                       (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        ck_assert_int_eq(fx_b64url_valid(s, 4), in_alpha);
    }
    ck_assert(!fx_b64url_valid("A", 1));
    ck_assert(!fx_b64url_valid("AAAAA", 5));
    ck_assert(fx_b64url_valid("", 0));
    ck_assert(fx_b64url_valid("AA", 2) && !fx_b64url_valid("AB", 2)); /* 4 unused bits */
    ck_assert(fx_b64url_valid("AAE", 3) && !fx_b64url_valid("AAB", 3)); /* 2 unused bits */
    ck_assert(!fx_b64url_valid("AA==", 4));
    size_t len;
    ck_assert_int_eq(fx_b64url_decode("A+AA", 4, out, &len), -1);
}
END_TEST

START_TEST(test_names)
{
    static const char *const names[] = {NULL,    "HS256", "HS384", "HS512", "RS256",
                                        "RS384", "RS512", "ES256", "ES384", "PS256"};
    for (int a = 0; a <= FX_JWT_ALG_PS256; a++) {
        const char *n = fx_jwt_alg_name((fx_jwt_algorithm)a);
        if (!names[a]) {
            ck_assert_ptr_null(n);
            continue;
        }
        ck_assert_str_eq(n, names[a]);
        ck_assert_int_eq(fx_jwt_alg_parse(n, strlen(n)), a);
    }
    ck_assert_ptr_null(fx_jwt_alg_name((fx_jwt_algorithm)99));
    static const char *const bad[] = {"none", "None", "NONE", "hs256", "Hs256", "HS256 ",
                                      " HS256", "HS2560", "HS25", "", "ES512", "PS384", "EdDSA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(fx_jwt_alg_parse(bad[i], strlen(bad[i])), FX_JWT_ALG_NONE);
    ck_assert_int_eq(fx_jwt_alg_parse("HS256", 4), FX_JWT_ALG_NONE);
    ck_assert_int_eq(fx_jwt_alg_parse("HS256\0x", 7), FX_JWT_ALG_NONE);
    ck_assert_int_eq(fx_jwt_alg_parse(NULL, 5), FX_JWT_ALG_NONE);
    static const char *const reasons[] = {"ok",           "missing",       "malformed",
                                          "bad_signature", "unknown_kid",  "alg_mismatch",
                                          "expired",      "not_yet_valid", "bad_audience",
                                          "bad_issuer"};
    for (int r = 0; r <= FX_JWT_BAD_ISSUER; r++)
        ck_assert_str_eq(fx_jwt_reason_name((fx_jwt_reason)r), reasons[r]);
}
END_TEST

/* ---- the suite --------------------------------------------------------------------------------- */

static Suite *jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("verify");
    tcase_set_timeout(tc, 120); /* hundreds of ECDSA tokens through libjwt, under ASan */
    tcase_add_loop_test(tc, test_corpus, 0, (int)NCORPUS);
    tcase_add_test(tc, test_corpus_is_large_enough);
    tcase_add_test(tc, test_null_and_empty);
    tcase_add_loop_test(tc, test_valid, 0, (int)NGOODS);
    tcase_add_test(tc, test_key_headers_ignored);
    tcase_add_test(tc, test_size_boundary);
    tcase_add_test(tc, test_backends_agree_on_minted);
    tcase_add_test(tc, test_interop_pyjwt);
    suite_add_tcase(s, tc);
    tc = tcase_create("claims");
    tcase_add_test(tc, test_claim_render);
    tcase_add_test(tc, test_claims_json_and_exp);
    suite_add_tcase(s, tc);
    tc = tcase_create("cache");
    tcase_add_test(tc, test_cache_hit_miss);
    tcase_add_test(tc, test_cache_expiry);
    tcase_add_test(tc, test_cache_generation);
    tcase_add_test(tc, test_cache_eviction);
    tcase_add_test(tc, test_cache_full_compare);
    tcase_add_test(tc, test_cache_edges);
    tcase_add_test(tc, test_cache_with_verify);
    suite_add_tcase(s, tc);
    tc = tcase_create("keys");
    tcase_add_test(tc, test_jwks_load_and_verify);
    tcase_add_test(tc, test_jwks_refused);
    tcase_add_test(tc, test_pem_and_secret);
    suite_add_tcase(s, tc);
    tc = tcase_create("mint");
    tcase_add_test(tc, test_mint_round_trip);
    tcase_add_test(tc, test_mint_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("b64");
    tcase_add_test(tc, test_b64url);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    fixtures();
    SRunner *sr = srunner_create(jwt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

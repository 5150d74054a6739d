/*
 * jwk.c — key sets: JWK Sets, PEM public keys and HMAC secrets in, keys
 * pinned to one algorithm out.
 *
 * Every key is checked once here, when it is loaded, so verification
 * never has to: the material matches the algorithm (a secret for HS*, an
 * RSA key for RS* and PS256, an EC key on the alg's curve for ES*), HMAC
 * secrets are at least as long as the hash output, RSA moduli are 2048 to
 * 8192 bits, EC points are on their curve. Asymmetric keys are parsed into
 * an EVP_PKEY once (the OpenSSL path verifies with it) and written back as
 * a normalized SPKI PEM (what libjwt reads).
 *
 * A JWK Set is added all or nothing: keys are built into a scratch set and
 * moved over only when every member was accepted. Error messages name the
 * key by its index and kid, never by its material.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "internal.h"

/* A JWK Set larger than this is refused before parsing; so is one with more keys. */
#define JWKS_MAX_BYTES (1024 * 1024)
#define JWKS_MAX_KEYS 256
#define KID_MAX 256

/* ---- keyset lifetime ----------------------------------------------------------------- */

static void key_clear(fx_jwt_key *k)
{
    free(k->kid);
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secretlen);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
    free(k->pem);
    BN_free(k->order);
    memset(k, 0, sizeof(*k));
}

fx_jwt_keyset *fx_jwt_keyset_new(void)
{
    fx_jwt_keyset *ks = calloc(1, sizeof(*ks));
    if (ks)
        atomic_init(&ks->refs, 1);
    return ks;
}

fx_jwt_keyset *fx_jwt_keyset_ref(fx_jwt_keyset *ks)
{
    if (ks)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

void fx_jwt_keyset_unref(fx_jwt_keyset *ks)
{
    if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++)
        key_clear(&ks->keys[i]);
    free(ks->keys);
    free(ks);
}

size_t fx_jwt_keyset_count(const fx_jwt_keyset *ks)
{
    return ks ? ks->n : 0;
}

static const fx_jwt_key *find_kid(const fx_jwt_keyset *ks, const char *kid, size_t len)
{
    for (size_t i = 0; ks && i < ks->n; i++)
        if (ks->keys[i].kid && ks->keys[i].kidlen == len && memcmp(ks->keys[i].kid, kid, len) == 0)
            return &ks->keys[i];
    return NULL;
}

int fx_jwt_keyset_has_kid(const fx_jwt_keyset *ks, const char *kid, size_t len)
{
    return kid && find_kid(ks, kid, len) != NULL;
}

/* Takes the key (moves it in, clears *k). */
static int keyset_push(fx_jwt_keyset *ks, fx_jwt_key *k)
{
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 4;
        fx_jwt_key *v = realloc(ks->keys, cap * sizeof(*v));
        if (!v)
            return -1;
        ks->keys = v;
        ks->cap = cap;
    }
    ks->keys[ks->n++] = *k;
    memset(k, 0, sizeof(*k));
    return 0;
}

/* ---- checks shared by every source ----------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *alg_label(fx_jwt_algorithm a)
{
    return fx_jwt_alg_name(a) ? fx_jwt_alg_name(a) : "none";
}

static int is_hs(fx_jwt_algorithm a)
{
    return a == FX_JWT_ALG_HS256 || a == FX_JWT_ALG_HS384 || a == FX_JWT_ALG_HS512;
}

static int is_rsa_alg(fx_jwt_algorithm a)
{
    return a == FX_JWT_ALG_RS256 || a == FX_JWT_ALG_RS384 || a == FX_JWT_ALG_RS512 ||
           a == FX_JWT_ALG_PS256;
}

static int is_ec_alg(fx_jwt_algorithm a)
{
    return a == FX_JWT_ALG_ES256 || a == FX_JWT_ALG_ES384;
}

int fx_jwt_check_pkey(const EVP_PKEY *pkey, fx_jwt_algorithm alg, char *err, size_t errlen)
{
    if (is_rsa_alg(alg)) {
        if (!EVP_PKEY_is_a(pkey, "RSA"))
            return set_err(err, errlen, "%s needs an RSA key", alg_label(alg));
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < FX_JWT_RSA_MIN_BITS || bits > FX_JWT_RSA_MAX_BITS)
            return set_err(err, errlen, "RSA key of %d bits refused: %s keys must have %d to %d bits",
                           bits, alg_label(alg), FX_JWT_RSA_MIN_BITS, FX_JWT_RSA_MAX_BITS);
        return 0;
    }
    if (is_ec_alg(alg)) {
        if (!EVP_PKEY_is_a(pkey, "EC"))
            return set_err(err, errlen, "%s needs an EC key", alg_label(alg));
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof(group), &glen))
            group[0] = '\0';
        int want = alg == FX_JWT_ALG_ES256 ? NID_X9_62_prime256v1 : NID_secp384r1;
        if (OBJ_txt2nid(group) != want)
            return set_err(err, errlen, "EC key on curve '%s' refused: %s needs %s",
                           group[0] ? group : "?", alg_label(alg),
                           alg == FX_JWT_ALG_ES256 ? "P-256" : "P-384");
        return 0;
    }
    return set_err(err, errlen, "%s is not an algorithm for a public key", alg_label(alg));
}

size_t fx_jwt_min_secret(fx_jwt_algorithm alg)
{
    switch (alg) {
    case FX_JWT_ALG_HS256: return 32;
    case FX_JWT_ALG_HS384: return 48;
    case FX_JWT_ALG_HS512: return 64;
    default: return 0;
    }
}

static int check_secret(fx_jwt_algorithm alg, size_t len, char *err, size_t errlen)
{
    if (!is_hs(alg))
        return set_err(err, errlen, "a secret can only be pinned to HS256, HS384 or HS512, not %s",
                       alg_label(alg));
    if (len < fx_jwt_min_secret(alg))
        return set_err(err, errlen,
                       "%s secret of %zu bytes refused: at least %zu bytes are required "
                       "(RFC 7518 §3.2)",
                       alg_label(alg), len, fx_jwt_min_secret(alg));
    return 0;
}

static int copy_kid(fx_jwt_key *k, const char *kid, size_t len)
{
    if (!kid)
        return 0;
    k->kid = malloc(len + 1);
    if (!k->kid)
        return -1;
    memcpy(k->kid, kid, len);
    k->kid[len] = '\0';
    k->kidlen = len;
    return 0;
}

/* Fills pem, sigsize and (EC) order from k->pkey, after fx_jwt_check_pkey. */
static int finish_pkey(fx_jwt_key *k, char *err, size_t errlen)
{
    EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    int ok = cx && EVP_PKEY_public_check(cx) == 1;
    EVP_PKEY_CTX_free(cx);
    if (!ok)
        return set_err(err, errlen, "the %s public key fails OpenSSL's validity check",
                       alg_label(k->alg));
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;
    if (!b || !PEM_write_bio_PUBKEY(b, k->pkey) || (n = BIO_get_mem_data(b, &data)) <= 0) {
        BIO_free(b);
        return set_err(err, errlen, "out of memory");
    }
    k->pem = malloc((size_t)n + 1);
    if (!k->pem) {
        BIO_free(b);
        return set_err(err, errlen, "out of memory");
    }
    memcpy(k->pem, data, (size_t)n);
    k->pem[n] = '\0';
    k->pemlen = (size_t)n;
    BIO_free(b);

    if (k->kind == FX_KEY_RSA) {
        k->sigsize = (size_t)EVP_PKEY_get_size(k->pkey);
        return 0;
    }
    int nid = k->alg == FX_JWT_ALG_ES256 ? NID_X9_62_prime256v1 : NID_secp384r1;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
    if (!g || !(k->order = BN_dup(EC_GROUP_get0_order(g)))) {
        EC_GROUP_free(g);
        return set_err(err, errlen, "out of memory");
    }
    k->sigsize = 2 * (size_t)BN_num_bytes(k->order);
    EC_GROUP_free(g);
    return 0;
}

/* ---- PEM and secrets --------------------------------------------------------------------- */

int fx_jwt_keyset_add_pem(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg,
                          const char *pem, size_t len, char *err, size_t errlen)
{
    if (!ks || !pem || len == 0 || len > JWKS_MAX_BYTES)
        return set_err(err, errlen, "no PEM public key given (or larger than 1 MiB)");
    if (!is_rsa_alg(alg) && !is_ec_alg(alg))
        return set_err(err, errlen,
                       "a PEM public key can be pinned to RS256, RS384, RS512, PS256, ES256 or "
                       "ES384, not %s",
                       alg_label(alg));
    if (kid && (kid[0] == '\0' || strlen(kid) > KID_MAX))
        return set_err(err, errlen, "kid must have 1 to %d bytes", KID_MAX);
    if (kid && find_kid(ks, kid, strlen(kid)))
        return set_err(err, errlen, "duplicate kid '%.64s': a kid must name one key", kid);
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!pk)
        return set_err(err, errlen, "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', "
                                    "SubjectPublicKeyInfo)");
    fx_jwt_key k = {.alg = alg, .pkey = pk, .kind = is_ec_alg(alg) ? FX_KEY_EC : FX_KEY_RSA};
    if (fx_jwt_check_pkey(pk, alg, err, errlen) < 0 || finish_pkey(&k, err, errlen) < 0) {
        key_clear(&k);
        return -1;
    }
    if (copy_kid(&k, kid, kid ? strlen(kid) : 0) < 0 || keyset_push(ks, &k) < 0) {
        key_clear(&k);
        return set_err(err, errlen, "out of memory");
    }
    return 0;
}

int fx_jwt_keyset_add_secret(fx_jwt_keyset *ks, const char *kid, fx_jwt_algorithm alg,
                             const unsigned char *secret, size_t len, char *err, size_t errlen)
{
    if (!ks || !secret)
        return set_err(err, errlen, "no secret given");
    if (check_secret(alg, len, err, errlen) < 0)
        return -1;
    if (kid && (kid[0] == '\0' || strlen(kid) > KID_MAX))
        return set_err(err, errlen, "kid must have 1 to %d bytes", KID_MAX);
    if (kid && find_kid(ks, kid, strlen(kid)))
        return set_err(err, errlen, "duplicate kid '%.64s': a kid must name one key", kid);
    fx_jwt_key k = {.alg = alg, .kind = FX_KEY_SECRET, .secretlen = len};
    k.secret = malloc(len);
    if (!k.secret || copy_kid(&k, kid, kid ? strlen(kid) : 0) < 0) {
        key_clear(&k);
        return set_err(err, errlen, "out of memory");
    }
    memcpy(k.secret, secret, len);
    if (keyset_push(ks, &k) < 0) {
        key_clear(&k);
        return set_err(err, errlen, "out of memory");
    }
    return 0;
}

/* ---- JWK Sets ------------------------------------------------------------------------------ */

/* Where a JWK's message starts: "keys[3] (kid 'abc'): ". */
typedef struct jwk_ctx {
    char where[KID_MAX + 48];
    char *err;
    size_t errlen;
} jwk_ctx;

static int jwk_fail(jwk_ctx *c, const char *msg)
{
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s%s", c->where, msg);
    return -1;
}

/* A required (or, with `optional`, possibly absent) base64url member; decoded into *out. */
static int jwk_b64(jwk_ctx *c, json_t *jwk, const char *name, unsigned char **out, size_t *outlen)
{
    json_t *v = json_object_get(jwk, name);
    char msg[96];
    if (!v) {
        snprintf(msg, sizeof(msg), "member \"%s\" is missing", name);
        return jwk_fail(c, msg);
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (!s || len == 0 || !fx_b64url_valid(s, len)) {
        snprintf(msg, sizeof(msg), "member \"%s\" is not a non-empty base64url string", name);
        return jwk_fail(c, msg);
    }
    *out = malloc(fx_b64url_decoded_len(len) + 1);
    if (!*out)
        return jwk_fail(c, "out of memory");
    fx_b64url_decode(s, len, *out, outlen);
    return 0;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (!params || !cx || EVP_PKEY_fromdata_init(cx) != 1 ||
        EVP_PKEY_fromdata(cx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
    EVP_PKEY_CTX_free(cx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *jwk_rsa(jwk_ctx *c, json_t *jwk)
{
    if (json_object_get(jwk, "d") || json_object_get(jwk, "p")) {
        jwk_fail(c, "contains RSA private key members (\"d\", \"p\"): publish only the public key");
        return NULL;
    }
    unsigned char *n = NULL, *e = NULL;
    size_t nlen = 0, elen = 0;
    EVP_PKEY *pk = NULL;
    if (jwk_b64(c, jwk, "n", &n, &nlen) < 0 || jwk_b64(c, jwk, "e", &e, &elen) < 0)
        goto out;
    /* e: odd, at least 3, at most 64 bits; this bounds the work of every verification */
    size_t ez = 0;
    while (ez < elen && e[ez] == 0)
        ez++;
    if (elen - ez > 8 || elen == ez || (e[elen - 1] & 1) == 0 ||
        (elen - ez == 1 && e[elen - 1] < 3)) {
        jwk_fail(c, "RSA exponent \"e\" must be odd, at least 3 and at most 64 bits");
        goto out;
    }
    if (nlen > FX_JWT_RSA_MAX_BITS / 8 + 1) {
        jwk_fail(c, "RSA modulus \"n\" is longer than 8192 bits");
        goto out;
    }
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    if (!pk)
        jwk_fail(c, "RSA key (\"n\", \"e\") is not valid");
out:
    free(n);
    free(e);
    return pk;
}

static EVP_PKEY *jwk_ec(jwk_ctx *c, json_t *jwk, int nid, size_t coord)
{
    if (json_object_get(jwk, "d")) {
        jwk_fail(c, "contains the EC private key member \"d\": publish only the public key");
        return NULL;
    }
    unsigned char *x = NULL, *y = NULL, *pt = NULL;
    size_t xlen = 0, ylen = 0;
    EVP_PKEY *pk = NULL;
    if (jwk_b64(c, jwk, "x", &x, &xlen) < 0 || jwk_b64(c, jwk, "y", &y, &ylen) < 0)
        goto out;
    if (xlen != coord || ylen != coord) {
        jwk_fail(c, "EC coordinates \"x\" and \"y\" must have the full length of the curve's "
                    "field (RFC 7518 §6.2.1.2)");
        goto out;
    }
    pt = malloc(1 + 2 * coord);
    if (!pt) {
        jwk_fail(c, "out of memory");
        goto out;
    }
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, coord);
    memcpy(pt + 1 + coord, y, coord);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * coord))
        pk = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (!pk)
        jwk_fail(c, "EC point (\"x\", \"y\") is not on the curve");
out:
    free(x);
    free(y);
    free(pt);
    return pk;
}

/* What "alg" of a JWK means: a supported alg, one we skip, or an error. */
enum { JWK_SKIP = 1 };

static int jwk_alg(jwk_ctx *c, json_t *jwk, fx_jwt_algorithm *alg)
{
    json_t *v = json_object_get(jwk, "alg");
    *alg = FX_JWT_ALG_NONE;
    if (!v)
        return 0;
    const char *s = json_string_value(v);
    if (!s)
        return jwk_fail(c, "\"alg\" is not a string");
    *alg = fx_jwt_alg_parse(s, json_string_length(v));
    if (*alg != FX_JWT_ALG_NONE)
        return 0;
    if (strcasecmp(s, "none") == 0)
        return jwk_fail(c, "\"alg\" \"none\" is never accepted");
    /* spelled like a supported alg in another case: a mistake, not another algorithm */
    for (int a = FX_JWT_ALG_HS256; a <= FX_JWT_ALG_PS256; a++)
        if (strcasecmp(s, fx_jwt_alg_name((fx_jwt_algorithm)a)) == 0)
            return jwk_fail(c, "\"alg\" must be spelled exactly (algorithm names are "
                               "case-sensitive)");
    return JWK_SKIP; /* an algorithm this library does not implement (RFC 7517 §5: ignore) */
}

/* One member of "keys". 0 with *k filled, JWK_SKIP, or -1. */
static int jwk_one(jwk_ctx *c, json_t *jwk, fx_jwt_key *k)
{
    if (!json_is_object(jwk))
        return jwk_fail(c, "is not a JSON object");
    json_t *kty = json_object_get(jwk, "kty"), *use = json_object_get(jwk, "use");
    json_t *ops = json_object_get(jwk, "key_ops");
    if (!json_is_string(kty))
        return jwk_fail(c, "\"kty\" is missing or not a string");
    if (use && !json_is_string(use))
        return jwk_fail(c, "\"use\" is not a string");
    if (use && strcmp(json_string_value(use), "sig") != 0)
        return JWK_SKIP; /* an encryption key */
    if (ops) {
        if (!json_is_array(ops))
            return jwk_fail(c, "\"key_ops\" is not an array");
        int verify = 0;
        size_t i;
        json_t *op;
        json_array_foreach(ops, i, op) {
            if (!json_is_string(op))
                return jwk_fail(c, "\"key_ops\" has a member that is not a string");
            verify |= strcmp(json_string_value(op), "verify") == 0;
        }
        if (!verify)
            return JWK_SKIP;
    }
    fx_jwt_algorithm alg;
    int r = jwk_alg(c, jwk, &alg);
    if (r != 0)
        return r;

    const char *t = json_string_value(kty);
    if (strcmp(t, "oct") == 0) {
        if (alg == FX_JWT_ALG_NONE)
            return jwk_fail(c, "an \"oct\" key needs \"alg\" (HS256, HS384 or HS512)");
        if (!is_hs(alg))
            return jwk_fail(c, "an \"oct\" key can only be HS256, HS384 or HS512");
        unsigned char *sec = NULL;
        size_t len = 0;
        if (jwk_b64(c, jwk, "k", &sec, &len) < 0)
            return -1;
        char msg[160];
        if (len > 4096) {
            OPENSSL_cleanse(sec, len);
            free(sec);
            return jwk_fail(c, "\"k\" is longer than 4096 bytes");
        }
        if (check_secret(alg, len, msg, sizeof(msg)) < 0) {
            OPENSSL_cleanse(sec, len);
            free(sec);
            return jwk_fail(c, msg);
        }
        *k = (fx_jwt_key){.alg = alg, .kind = FX_KEY_SECRET, .secret = sec, .secretlen = len};
        return 0;
    }
    if (strcmp(t, "RSA") == 0) {
        if (alg == FX_JWT_ALG_NONE)
            return jwk_fail(c, "an \"RSA\" key needs \"alg\" (RS256, RS384, RS512 or PS256): "
                               "a key is pinned to one algorithm");
        if (!is_rsa_alg(alg))
            return jwk_fail(c, "an \"RSA\" key can only be RS256, RS384, RS512 or PS256");
        *k = (fx_jwt_key){.alg = alg, .kind = FX_KEY_RSA};
    } else if (strcmp(t, "EC") == 0) {
        json_t *crv = json_object_get(jwk, "crv");
        if (!json_is_string(crv))
            return jwk_fail(c, "an \"EC\" key needs \"crv\"");
        const char *cs = json_string_value(crv);
        fx_jwt_algorithm want;
        if (strcmp(cs, "P-256") == 0)
            want = FX_JWT_ALG_ES256;
        else if (strcmp(cs, "P-384") == 0)
            want = FX_JWT_ALG_ES384;
        else if (alg == FX_JWT_ALG_NONE)
            return JWK_SKIP; /* P-521, secp256k1, ...: not implemented here */
        else
            return jwk_fail(c, "EC curve does not match \"alg\" (ES256 needs P-256, ES384 "
                               "needs P-384)");
        if (alg == FX_JWT_ALG_NONE)
            alg = want;
        if (alg != want)
            return jwk_fail(c, "EC curve does not match \"alg\" (ES256 needs P-256, ES384 "
                               "needs P-384)");
        *k = (fx_jwt_key){.alg = alg, .kind = FX_KEY_EC};
    } else {
        return JWK_SKIP; /* OKP and future key types (RFC 7517 §5) */
    }

    k->pkey = k->kind == FX_KEY_RSA
                  ? jwk_rsa(c, jwk)
                  : jwk_ec(c, jwk, alg == FX_JWT_ALG_ES256 ? NID_X9_62_prime256v1 : NID_secp384r1,
                           alg == FX_JWT_ALG_ES256 ? 32 : 48);
    if (!k->pkey)
        return -1;
    char msg[160];
    if (fx_jwt_check_pkey(k->pkey, alg, msg, sizeof(msg)) < 0 ||
        finish_pkey(k, msg, sizeof(msg)) < 0) {
        key_clear(k);
        return jwk_fail(c, msg);
    }
    return 0;
}

int fx_jwt_keyset_add_jwks(fx_jwt_keyset *ks, const char *json, size_t len, char *err,
                           size_t errlen)
{
    jwk_ctx c = {.where = "JWK Set: ", .err = err, .errlen = errlen};
    if (!ks || !json)
        return jwk_fail(&c, "no input");
    if (len > JWKS_MAX_BYTES)
        return jwk_fail(&c, "larger than 1 MiB");
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char msg[200];
        snprintf(msg, sizeof(msg), "not valid JSON (line %d, column %d: %s)", je.line, je.column,
                 je.text);
        return jwk_fail(&c, msg);
    }
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_object(root) || !json_is_array(keys)) {
        json_decref(root);
        return jwk_fail(&c, "must be an object with a \"keys\" array (RFC 7517 §5)");
    }
    if (json_array_size(keys) > JWKS_MAX_KEYS) {
        json_decref(root);
        return jwk_fail(&c, "has more than 256 keys");
    }

    fx_jwt_keyset *tmp = fx_jwt_keyset_new();
    int rc = tmp ? 0 : jwk_fail(&c, "out of memory");
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk) {
        if (rc < 0)
            break;
        json_t *kid = json_object_get(jwk, "kid");
        const char *kids = json_string_value(kid);
        size_t kidlen = json_string_length(kid);
        if (kids && kidlen <= KID_MAX) {
            /* the kid names the key in messages; anything unprintable shows as '?' */
            char shown[65];
            size_t n = kidlen < 64 ? kidlen : 64;
            for (size_t j = 0; j < n; j++)
                shown[j] = kids[j] >= 0x20 && kids[j] < 0x7f && kids[j] != '\'' ? kids[j] : '?';
            shown[n] = '\0';
            snprintf(c.where, sizeof(c.where), "JWK Set: keys[%zu] (kid '%s'): ", i, shown);
        } else
            snprintf(c.where, sizeof(c.where), "JWK Set: keys[%zu]: ", i);
        if (kid && (!kids || kidlen == 0 || kidlen > KID_MAX)) {
            rc = jwk_fail(&c, "\"kid\" is not a string of 1 to 256 bytes");
            break;
        }
        fx_jwt_key k = {0};
        int r = jwk_one(&c, jwk, &k);
        if (r == JWK_SKIP)
            continue;
        if (r < 0) {
            rc = -1;
            break;
        }
        if (kids && (find_kid(ks, kids, kidlen) || find_kid(tmp, kids, kidlen))) {
            key_clear(&k);
            rc = jwk_fail(&c, "duplicate \"kid\": a kid must name one key");
            break;
        }
        if (copy_kid(&k, kids, kidlen) < 0 || keyset_push(tmp, &k) < 0) {
            key_clear(&k);
            rc = jwk_fail(&c, "out of memory");
        }
    }
    if (rc == 0 && tmp->n == 0) {
        snprintf(c.where, sizeof(c.where), "JWK Set: ");
        rc = jwk_fail(&c, "no usable signature key (RSA, EC P-256/P-384 or oct with a "
                          "supported \"alg\" and \"use\" absent or \"sig\")");
    }
    if (rc == 0 && ks->n + tmp->n > ks->cap) {
        fx_jwt_key *v = realloc(ks->keys, (ks->n + tmp->n) * sizeof(*v));
        if (!v)
            rc = jwk_fail(&c, "out of memory");
        else {
            ks->keys = v;
            ks->cap = ks->n + tmp->n;
        }
    }
    if (rc == 0) {
        memcpy(ks->keys + ks->n, tmp->keys, tmp->n * sizeof(*tmp->keys));
        ks->n += tmp->n;
        tmp->n = 0;
    }
    fx_jwt_keyset_unref(tmp);
    json_decref(root);
    return rc;
}

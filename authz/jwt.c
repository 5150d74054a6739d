/*
 * jwt.c — JWS compact tokens: verification, verified claims, minting.
 *
 * fx_jwt_verify() decides everything itself and asks a backend one yes/no
 * question at the end: "is this the signature of these bytes under this
 * key?". The steps, each refusing with its own reason:
 *
 *   1. size cap (FX_JWT_MAX_TOKEN) before anything is decoded;
 *   2. exactly three segments, each canonical base64url (b64.c);
 *   3. header and payload: a JSON object each, nesting depth bounded,
 *      parsed by jansson with JSON_REJECT_DUPLICATES; header members and
 *      registered claims type-checked;
 *   4. "alg" compared byte for byte with the names we implement ("none"
 *      and every other spelling are refused);
 *   5. the issuer named by "iss", then the key: by "kid" within that
 *      issuer, or, without a kid, the issuer's only key of the token's
 *      alg (none or several: unknown kid); the key's pinned alg must equal
 *      the header's;
 *   6. the signature: exact length for the key, ES r and s in [1, n-1],
 *      then the backend;
 *   7. exp (required), nbf, iat with clock skew, then aud.
 *
 * Backends (docs/security.md says why): libjwt's jwt_decode() for HS256,
 * HS384 and HS512 when "typ" is absent or "JWT" (libjwt refuses other typ
 * values); OpenSSL directly for everything else: RS* and ES* (libjwt 1.10
 * takes keys only as PEM and decodes the PEM again for every token, about
 * 0.7 ms with OpenSSL 3, which would let forged tokens pin a core), PS256
 * (libjwt 1.10 has no PSS) and any alg with typ "at+jwt" and the like.
 * Either backend can be forced (fx_jwt_verify_with) so the tests and the
 * fuzz harness hold them against each other. By the time a backend runs,
 * every known way libjwt 1.10 can be fooled has been excluded.
 *
 * Below: names, small helpers, the two backends, verify, claims, minting.
 */
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "internal.h"

/* Nesting allowed in the header (a "jwk" member holds an object with an array) and in the
 * payload (claims like Keycloak's resource_access.<client>.roles go four deep). */
#define HEADER_MAX_DEPTH 8
#define PAYLOAD_MAX_DEPTH 16

/* ---- names -------------------------------------------------------------------------------- */

static const char *const alg_names[] = {
    [FX_JWT_ALG_HS256] = "HS256", [FX_JWT_ALG_HS384] = "HS384", [FX_JWT_ALG_HS512] = "HS512",
    [FX_JWT_ALG_RS256] = "RS256", [FX_JWT_ALG_RS384] = "RS384", [FX_JWT_ALG_RS512] = "RS512",
    [FX_JWT_ALG_ES256] = "ES256", [FX_JWT_ALG_ES384] = "ES384", [FX_JWT_ALG_PS256] = "PS256",
};
#define NALGS (sizeof(alg_names) / sizeof(alg_names[0]))

const char *fx_jwt_alg_name(fx_jwt_algorithm alg)
{
    return (unsigned)alg < NALGS ? alg_names[alg] : NULL;
}

fx_jwt_algorithm fx_jwt_alg_parse(const char *s, size_t len)
{
    for (size_t a = 1; s && a < NALGS; a++)
        if (len == 5 && memcmp(s, alg_names[a], 5) == 0)
            return (fx_jwt_algorithm)a;
    return FX_JWT_ALG_NONE;
}

const char *fx_jwt_reason_name(fx_jwt_reason r)
{
    switch (r) {
    case FX_JWT_OK: return "ok";
    case FX_JWT_MISSING: return "missing";
    case FX_JWT_MALFORMED: return "malformed";
    case FX_JWT_BAD_SIGNATURE: return "bad_signature";
    case FX_JWT_UNKNOWN_KID: return "unknown_kid";
    case FX_JWT_ALG_MISMATCH: return "alg_mismatch";
    case FX_JWT_EXPIRED: return "expired";
    case FX_JWT_NOT_YET_VALID: return "not_yet_valid";
    case FX_JWT_BAD_AUDIENCE: return "bad_audience";
    case FX_JWT_BAD_ISSUER: return "bad_issuer";
    }
    return "unknown";
}

static const char *md_name(fx_jwt_algorithm a)
{
    switch (a) {
    case FX_JWT_ALG_HS384:
    case FX_JWT_ALG_RS384:
    case FX_JWT_ALG_ES384: return "SHA384";
    case FX_JWT_ALG_HS512:
    case FX_JWT_ALG_RS512: return "SHA512";
    default: return "SHA256";
    }
}

static const EVP_MD *md_legacy(fx_jwt_algorithm a)
{
    const char *n = md_name(a);
    return n[3] == '3' ? EVP_sha384() : n[3] == '5' ? EVP_sha512() : EVP_sha256();
}

static jwt_alg_t libjwt_alg(fx_jwt_algorithm a)
{
    switch (a) {
    case FX_JWT_ALG_HS256: return JWT_ALG_HS256;
    case FX_JWT_ALG_HS384: return JWT_ALG_HS384;
    case FX_JWT_ALG_HS512: return JWT_ALG_HS512;
    case FX_JWT_ALG_RS256: return JWT_ALG_RS256;
    case FX_JWT_ALG_RS384: return JWT_ALG_RS384;
    case FX_JWT_ALG_RS512: return JWT_ALG_RS512;
    case FX_JWT_ALG_ES256: return JWT_ALG_ES256;
    case FX_JWT_ALG_ES384: return JWT_ALG_ES384;
    default: return JWT_ALG_INVAL; /* PS256: not in libjwt 1.10 */
    }
}

static int is_hs(fx_jwt_algorithm a)
{
    return a == FX_JWT_ALG_HS256 || a == FX_JWT_ALG_HS384 || a == FX_JWT_ALG_HS512;
}

static int is_es(fx_jwt_algorithm a)
{
    return a == FX_JWT_ALG_ES256 || a == FX_JWT_ALG_ES384;
}

/* The key material an alg needs: the structural half of "no RS/HS confusion". */
static fx_jwt_key_kind kind_for(fx_jwt_algorithm a)
{
    return is_hs(a) ? FX_KEY_SECRET : is_es(a) ? FX_KEY_EC : FX_KEY_RSA;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/*
 * Is the nesting of a JSON text at most `max`? Brackets inside strings do
 * not count. Run before jansson so a bracket bomb never reaches its
 * recursive parser; on invalid JSON the answer does not matter, jansson
 * refuses the text anyway.
 */
static int depth_ok(const unsigned char *p, size_t n, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max)
                return 0;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return 1;
}

/* ---- backends --------------------------------------------------------------------------- */

/*
 * libjwt 1.10: jwt_decode() on a NUL-terminated copy, with the key's own
 * material (never NULL, never empty), then the alg it used must be the
 * key's. Everything libjwt gets wrong has been excluded by the caller.
 */
static int verify_libjwt(const fx_jwt_key *k, const char *token, size_t len)
{
    const unsigned char *mat =
        k->kind == FX_KEY_SECRET ? k->secret : (const unsigned char *)k->pem;
    size_t matlen = k->kind == FX_KEY_SECRET ? k->secretlen : k->pemlen;
    if (!mat || matlen == 0 || matlen > INT_MAX || len > FX_JWT_MAX_TOKEN)
        return -1;
    char copy[FX_JWT_MAX_TOKEN + 1];
    memcpy(copy, token, len);
    copy[len] = '\0';
    jwt_t *j = NULL;
    int rc = jwt_decode(&j, copy, mat, (int)matlen);
    int ok = rc == 0 && j && jwt_get_alg(j) == libjwt_alg(k->alg);
    if (j)
        jwt_free(j);
    return ok ? 0 : -1;
}

/* JWS ECDSA signatures are r || s (RFC 7518 §3.4); OpenSSL wants DER. */
static unsigned char *ec_sig_der(const unsigned char *sig, size_t siglen, int *derlen)
{
    size_t half = siglen / 2;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    unsigned char *der = NULL;
    *derlen = 0;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        *derlen = i2d_ECDSA_SIG(es, &der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    if (*derlen <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    return der;
}

/* OpenSSL directly: HMAC with a constant-time compare, or EVP_DigestVerify. */
static int verify_openssl(const fx_jwt_key *k, const unsigned char *in, size_t inlen,
                          const unsigned char *sig, size_t siglen)
{
    if (k->kind == FX_KEY_SECRET) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (!k->secret || k->secretlen == 0 ||
            !HMAC(md_legacy(k->alg), k->secret, (int)k->secretlen, in, inlen, mac, &maclen))
            return -1;
        int ok = maclen == siglen && CRYPTO_memcmp(mac, sig, siglen) == 0;
        OPENSSL_cleanse(mac, sizeof(mac));
        return ok ? 0 : -1;
    }
    if (!k->pkey)
        return -1;
    unsigned char *der = NULL;
    int derlen = 0;
    if (k->kind == FX_KEY_EC) {
        if (!(der = ec_sig_der(sig, siglen, &derlen)))
            return -1;
        sig = der;
        siglen = (size_t)derlen;
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = m && EVP_DigestVerifyInit_ex(m, &pc, md_name(k->alg), NULL, NULL, k->pkey, NULL) == 1;
    if (ok && k->kind == FX_KEY_RSA) {
        if (k->alg == FX_JWT_ALG_PS256)
            /* RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash */
            ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) == 1 &&
                 EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
        else
            ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1;
    }
    ok = ok && EVP_DigestVerify(m, sig, siglen, in, inlen) == 1;
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

/* Ours, before either backend: 0 < r < n and 0 < s < n (the "psychic signature" check). */
static int ec_sig_in_range(const fx_jwt_key *k, const unsigned char *sig, size_t siglen)
{
    size_t half = siglen / 2;
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    int ok = r && s && k->order && !BN_is_zero(r) && !BN_is_zero(s) && BN_cmp(r, k->order) < 0 &&
             BN_cmp(s, k->order) < 0;
    BN_free(r);
    BN_free(s);
    return ok;
}

/* ---- verification ------------------------------------------------------------------------- */

struct fx_jwt_claims {
    atomic_uint refs;
    int64_t exp;
    json_t *payload;
    char *json; /* compact form of payload */
};

/* typ values accepted, compared case-insensitively (media types are, RFC 7515 §4.1.9). */
static int typ_ok(const char *t)
{
    return strcasecmp(t, "JWT") == 0 || strcasecmp(t, "application/jwt") == 0 ||
           strcasecmp(t, "at+jwt") == 0 || strcasecmp(t, "application/at+jwt") == 0;
}

static const fx_jwt_issuer *find_issuer(const fx_jwt_issuer *is, size_t n, json_t *iss)
{
    const char *s = json_string_value(iss);
    size_t len = json_string_length(iss);
    for (size_t i = 0; s && i < n; i++)
        if (is[i].issuer && strlen(is[i].issuer) == len && memcmp(is[i].issuer, s, len) == 0)
            return &is[i];
    return NULL;
}

static int aud_matches(const fx_jwt_issuer *is, json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    for (size_t i = 0; s && i < is->naudiences; i++)
        if (is->audiences[i] && strlen(is->audiences[i]) == len &&
            memcmp(is->audiences[i], s, len) == 0)
            return 1;
    return 0;
}

static int aud_ok(const fx_jwt_issuer *is, json_t *aud)
{
    if (json_is_string(aud))
        return aud_matches(is, aud);
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v) {
        if (aud_matches(is, v))
            return 1;
    }
    return 0;
}

/* Registered claims (RFC 7519 §4.1) have types; anything else is malformed. NumericDates
 * must be JSON integers: a string, a float or an out-of-range number is refused. */
static const char *claim_types_bad(json_t *p)
{
    static const char *const strs[] = {"iss", "sub", "jti"};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        json_t *v = json_object_get(p, strs[i]);
        if (v && !json_is_string(v))
            return "a registered claim (iss, sub or jti) is not a string";
    }
    static const char *const dates[] = {"exp", "nbf", "iat"};
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        json_t *v = json_object_get(p, dates[i]);
        if (v && !json_is_integer(v))
            return "exp, nbf or iat is not an integer (NumericDate in whole seconds)";
    }
    json_t *aud = json_object_get(p, "aud");
    if (aud && json_is_array(aud)) {
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v) {
            if (!json_is_string(v))
                return "aud is an array with a member that is not a string";
        }
    } else if (aud && !json_is_string(aud)) {
        return "aud is neither a string nor an array of strings";
    }
    return NULL;
}

/* Decodes a validated segment and parses it as a JSON object. */
static json_t *segment_json(const char *seg, size_t len, unsigned char *buf, int maxdepth)
{
    size_t n = 0;
    if (fx_b64url_decode(seg, len, buf, &n) < 0 || !depth_ok(buf, n, maxdepth))
        return NULL;
    json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

fx_jwt_reason fx_jwt_verify_with(const fx_jwt_issuer *issuers, size_t nissuers, const char *token,
                                 size_t len, int64_t now, int64_t skew_s, fx_jwt_claims **claims,
                                 const char **detail, fx_jwt_backend backend)
{
    fx_jwt_reason reason = FX_JWT_OK;
    const char *why = NULL;
    json_t *hdr = NULL, *pay = NULL;
    if (claims)
        *claims = NULL;
    if (skew_s < 0)
        skew_s = 0;

#define REFUSE(r, msg)                                                                         \
    do {                                                                                       \
        reason = (r);                                                                          \
        why = (msg);                                                                           \
        goto out;                                                                              \
    } while (0)

    if (!token || len == 0)
        REFUSE(FX_JWT_MISSING, "no token");
    if (len > FX_JWT_MAX_TOKEN)
        REFUSE(FX_JWT_MALFORMED, "token longer than 8192 bytes");

    /* 1-2: three segments, canonical base64url */
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1)))
        REFUSE(FX_JWT_MALFORMED, "a token has exactly three dot-separated segments");
    const char *h = token, *p = d1 + 1, *s = d2 + 1;
    size_t hlen = (size_t)(d1 - h), plen = (size_t)(d2 - p), slen = (size_t)(token + len - s);
    if (hlen == 0 || plen == 0)
        REFUSE(FX_JWT_MALFORMED, "empty header or payload segment");
    if (!fx_b64url_valid(h, hlen) || !fx_b64url_valid(p, plen) || !fx_b64url_valid(s, slen))
        REFUSE(FX_JWT_MALFORMED, "a segment is not canonical unpadded base64url");

    /* 3: JSON, types */
    unsigned char buf[FX_JWT_MAX_TOKEN];
    if (!(hdr = segment_json(h, hlen, buf, HEADER_MAX_DEPTH)))
        REFUSE(FX_JWT_MALFORMED, "the header is not a JSON object (or has duplicate members or "
                                 "is nested too deep)");
    json_t *alg = json_object_get(hdr, "alg"), *typ = json_object_get(hdr, "typ");
    json_t *kid = json_object_get(hdr, "kid");
    if (!json_is_string(alg))
        REFUSE(FX_JWT_MALFORMED, "the header has no string alg");
    if (typ && (!json_is_string(typ) || !typ_ok(json_string_value(typ))))
        REFUSE(FX_JWT_MALFORMED, "the header typ is not JWT or at+jwt");
    if (kid && !json_is_string(kid))
        REFUSE(FX_JWT_MALFORMED, "the header kid is not a string");
    if (json_object_get(hdr, "crit") || json_object_get(hdr, "b64"))
        REFUSE(FX_JWT_MALFORMED, "the header has crit or b64: no JWS extension is understood");
    if (json_object_get(hdr, "cty"))
        REFUSE(FX_JWT_MALFORMED, "the header has cty: nested tokens are not accepted");
    if (!(pay = segment_json(p, plen, buf, PAYLOAD_MAX_DEPTH)))
        REFUSE(FX_JWT_MALFORMED, "the payload is not a JSON object (or has duplicate members, "
                                 "is nested too deep or has a number out of range)");
    if ((why = claim_types_bad(pay)))
        REFUSE(FX_JWT_MALFORMED, why);

    /* 4: alg, exactly */
    fx_jwt_algorithm a = fx_jwt_alg_parse(json_string_value(alg), json_string_length(alg));
    if (a == FX_JWT_ALG_NONE)
        REFUSE(FX_JWT_ALG_MISMATCH, "alg is none or not a supported algorithm (names are "
                                    "case-sensitive)");

    /* 5: issuer, key */
    json_t *iss = json_object_get(pay, "iss");
    if (!iss)
        REFUSE(FX_JWT_BAD_ISSUER, "the token has no iss");
    const fx_jwt_issuer *is = find_issuer(issuers, nissuers, iss);
    if (!is)
        REFUSE(FX_JWT_BAD_ISSUER, "iss is not a configured issuer");
    const fx_jwt_keyset *ks = is->keys;
    const fx_jwt_key *key = NULL;
    if (kid) {
        const char *ks_kid = json_string_value(kid);
        size_t kl = json_string_length(kid);
        for (size_t i = 0; ks && i < ks->n && !key; i++)
            if (ks->keys[i].kid && ks->keys[i].kidlen == kl &&
                memcmp(ks->keys[i].kid, ks_kid, kl) == 0)
                key = &ks->keys[i];
        if (!key)
            REFUSE(FX_JWT_UNKNOWN_KID, "no key of the issuer has the token's kid");
        if (key->alg != a)
            REFUSE(FX_JWT_ALG_MISMATCH, "the token's alg is not the alg its key is pinned to");
    } else {
        size_t found = 0;
        for (size_t i = 0; ks && i < ks->n; i++)
            if (ks->keys[i].alg == a && found++ == 0)
                key = &ks->keys[i];
        /* the issuer's only key, pinned to another alg: that is an alg mismatch; no key at
         * all (a JWK Set not fetched yet) or several: no key is named, an unknown kid */
        if (found == 0 && ks && ks->n == 1)
            REFUSE(FX_JWT_ALG_MISMATCH, "the issuer's only key is pinned to another alg");
        if (found == 0)
            REFUSE(FX_JWT_UNKNOWN_KID, "the token has no kid and the issuer has no key for its "
                                       "alg");
        if (found > 1)
            REFUSE(FX_JWT_UNKNOWN_KID, "the token has no kid and the issuer has several keys for "
                                       "its alg");
    }
    if (key->kind != kind_for(a))
        REFUSE(FX_JWT_ALG_MISMATCH, "the token's alg does not fit its key's material");

    /* 6: signature */
    unsigned char sig[FX_JWT_MAX_TOKEN];
    size_t siglen = 0;
    fx_b64url_decode(s, slen, sig, &siglen);
    if (siglen == 0)
        REFUSE(FX_JWT_BAD_SIGNATURE, "the token has no signature");
    size_t want = key->kind == FX_KEY_SECRET ? (size_t)EVP_MD_get_size(md_legacy(a))
                                             : key->sigsize;
    if (siglen != want)
        REFUSE(FX_JWT_BAD_SIGNATURE, "the signature has the wrong length for its key");
    if (key->kind == FX_KEY_EC && !ec_sig_in_range(key, sig, siglen))
        REFUSE(FX_JWT_BAD_SIGNATURE, "the ECDSA signature has r or s outside [1, n-1]");
    int libjwt_can = libjwt_alg(a) != JWT_ALG_INVAL &&
                     (!typ || strcasecmp(json_string_value(typ), "JWT") == 0);
    int use_libjwt = libjwt_can && (backend == FX_JWT_BACKEND_LIBJWT ||
                                    (backend == FX_JWT_BACKEND_AUTO && is_hs(a)));
    int bad = use_libjwt ? verify_libjwt(key, token, len)
                         : verify_openssl(key, (const unsigned char *)token, (size_t)(d2 - token),
                                          sig, siglen);
    if (bad)
        REFUSE(FX_JWT_BAD_SIGNATURE, "the signature does not verify");

    /* 7: time, audience */
    json_t *exp = json_object_get(pay, "exp"), *nbf = json_object_get(pay, "nbf");
    json_t *iat = json_object_get(pay, "iat");
    if (!exp)
        REFUSE(FX_JWT_EXPIRED, "the token has no exp");
    int64_t e = (int64_t)json_integer_value(exp);
    if (now >= sat_add(e, skew_s))
        REFUSE(FX_JWT_EXPIRED, "the token has expired");
    if (nbf && (int64_t)json_integer_value(nbf) > sat_add(now, skew_s))
        REFUSE(FX_JWT_NOT_YET_VALID, "the token is not valid yet (nbf)");
    if (iat && (int64_t)json_integer_value(iat) > sat_add(now, skew_s))
        REFUSE(FX_JWT_NOT_YET_VALID, "the token was issued in the future (iat)");
    json_t *aud = json_object_get(pay, "aud");
    if (!aud)
        REFUSE(FX_JWT_BAD_AUDIENCE, "the token has no aud");
    if (!aud_ok(is, aud))
        REFUSE(FX_JWT_BAD_AUDIENCE, "aud names none of the issuer's audiences");

    if (claims) {
        fx_jwt_claims *c = calloc(1, sizeof(*c));
        if (c)
            c->json = json_dumps(pay, JSON_COMPACT);
        if (!c || !c->json) {
            free(c);
            REFUSE(FX_JWT_MALFORMED, "out of memory");
        }
        atomic_init(&c->refs, 1);
        c->exp = e;
        c->payload = pay;
        pay = NULL;
        *claims = c;
    }
#undef REFUSE
out:
    json_decref(hdr);
    json_decref(pay);
    if (detail)
        *detail = reason == FX_JWT_OK ? NULL : why;
    return reason;
}

fx_jwt_reason fx_jwt_verify(const fx_jwt_issuer *issuers, size_t nissuers, const char *token,
                            size_t len, int64_t now, int64_t skew_s, fx_jwt_claims **claims,
                            const char **detail)
{
    return fx_jwt_verify_with(issuers, nissuers, token, len, now, skew_s, claims, detail,
                              FX_JWT_BACKEND_AUTO);
}

/* ---- claims -------------------------------------------------------------------------------- */

fx_jwt_claims *fx_jwt_claims_ref(fx_jwt_claims *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void fx_jwt_claims_unref(fx_jwt_claims *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    json_decref(c->payload);
    free(c->json);
    free(c);
}

int64_t fx_jwt_claims_exp(const fx_jwt_claims *c)
{
    return c ? c->exp : 0;
}

const char *fx_jwt_claims_json(const fx_jwt_claims *c)
{
    return c ? c->json : NULL;
}

/* The payload is the document policies read (policy_internal.h: a doc is a json_t). */
const fx_authz_doc *fx_jwt_claims_doc(const fx_jwt_claims *c)
{
    return c ? (const fx_authz_doc *)(const void *)c->payload : NULL;
}

/* A bounded writer: keeps what fits in cap - 1 bytes, always NUL-terminated. */
typedef struct out_buf {
    char *buf;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    if (o->cap == 0)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static int put_json(out_buf *o, json_t *v)
{
    char *j = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!j)
        return -1;
    put(o, j, strlen(j));
    free(j);
    return 0;
}

static void put_scalar(out_buf *o, json_t *v)
{
    char num[32];
    if (json_is_string(v)) {
        put(o, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(o, num, (size_t)n);
    } else {
        put_json(o, v); /* reals, in jansson's shortest round-trip form */
    }
}

/* The claim `name`: a top-level member of that exact name, else a walk along its dots. */
static json_t *claim_lookup(json_t *root, const char *name)
{
    json_t *v = json_object_get(root, name);
    if (v || !strchr(name, '.'))
        return v;
    v = root;
    for (const char *seg = name;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(v) || !(v = json_object_getn(v, seg, n)))
            return NULL;
        if (!dot)
            return v;
        seg = dot + 1;
    }
}

int fx_jwt_claim_render(const fx_jwt_claims *c, const char *name, char *buf, size_t cap)
{
    if (!c || !name)
        return -1;
    json_t *v = claim_lookup(c->payload, name);
    if (!v || json_is_null(v))
        return -1;
    out_buf o = {.buf = buf, .cap = buf ? cap : 0};
    if (o.cap)
        buf[0] = '\0';
    if (json_is_true(v) || json_is_false(v)) {
        put(&o, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
    } else if (json_is_object(v)) {
        if (put_json(&o, v) < 0)
            return -1;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        /* joined with ',' only when that cannot be misread: no element holds a ',' or starts like JSON
         * ('[', '{', '"'), so a reader that takes a leading '[' as JSON is never fooled (["not,admin"]
         * must not arrive as the two roles "not" and "admin") */
        int flat = 1;
        json_array_foreach(v, i, e) {
            const char *s = json_is_string(e) ? json_string_value(e) : NULL;
            flat &= json_is_number(e) || (s && !strchr(s, ',') && !strchr("[{\"", s[0] ? s[0] : 'x'));
        }
        if (!flat) {
            if (put_json(&o, v) < 0)
                return -1;
        } else {
            json_array_foreach(v, i, e) {
                if (i > 0)
                    put(&o, ",", 1);
                put_scalar(&o, e);
            }
        }
    } else if (json_is_string(v) && strchr("[{\"", json_string_value(v)[0] ? json_string_value(v)[0] : 'x')) {
        /* a string that would read as JSON goes as a JSON string ("\"[...]\""): never taken for a list */
        if (put_json(&o, v) < 0)
            return -1;
    } else {
        put_scalar(&o, v);
    }
    return (int)o.len;
}

/* ---- minting --------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static char *mint_fail(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

/* Never asks for a passphrase on the terminal: an encrypted key simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* PS256 (not in libjwt 1.10): header and payload encoded here, signed with OpenSSL. */
static char *mint_ps256(EVP_PKEY *pk, const char *kid, const char *payload, char *err,
                        size_t errlen)
{
    json_t *hdr = json_pack("{s:s, s:s}", "alg", "PS256", "typ", "JWT");
    if (hdr && kid)
        json_object_set_new(hdr, "kid", json_string(kid));
    char *hj = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    json_decref(hdr);
    if (!hj)
        return mint_fail(err, errlen, "out of memory");
    size_t hl = strlen(hj), pl = strlen(payload);
    size_t inlen = fx_b64url_encoded_len(hl) + 1 + fx_b64url_encoded_len(pl);
    size_t sigmax = (size_t)EVP_PKEY_get_size(pk);
    char *tok = malloc(inlen + 1 + fx_b64url_encoded_len(sigmax) + 1);
    unsigned char *sig = malloc(sigmax);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    size_t siglen = sigmax;
    char *res = NULL;
    if (tok && sig && m) {
        fx_b64url_encode((const unsigned char *)hj, hl, tok);
        size_t o = strlen(tok);
        tok[o++] = '.';
        fx_b64url_encode((const unsigned char *)payload, pl, tok + o);
        if (EVP_DigestSignInit_ex(m, &pc, "SHA256", NULL, NULL, pk, NULL) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1 &&
            EVP_DigestSign(m, sig, &siglen, (const unsigned char *)tok, inlen) == 1) {
            tok[inlen] = '.';
            fx_b64url_encode(sig, siglen, tok + inlen + 1);
            res = tok;
            tok = NULL;
        }
    }
    EVP_MD_CTX_free(m);
    free(sig);
    free(tok);
    free(hj);
    return res ? res : mint_fail(err, errlen, "PS256 signing failed");
}

char *fx_jwt_mint(fx_jwt_algorithm alg, const unsigned char *key, size_t keylen, const char *kid,
                  const char *claims_json, int64_t now, int64_t ttl_s, char *err, size_t errlen)
{
    if (!fx_jwt_alg_name(alg))
        return mint_fail(err, errlen, "no algorithm: \"none\" tokens are never minted");
    if (!key || keylen == 0 || keylen > INT_MAX)
        return mint_fail(err, errlen, "no key given");
    json_error_t je;
    json_t *claims = claims_json
                         ? json_loads(claims_json, JSON_REJECT_DUPLICATES, &je)
                         : json_object();
    if (!claims)
        return mint_fail(err, errlen, "claims are not valid JSON (line %d, column %d: %s)",
                         je.line, je.column, je.text);
    if (!json_is_object(claims)) {
        json_decref(claims);
        return mint_fail(err, errlen, "claims must be a JSON object");
    }
    if (!json_object_get(claims, "iat"))
        json_object_set_new(claims, "iat", json_integer(now));
    if (!json_object_get(claims, "exp"))
        json_object_set_new(claims, "exp", json_integer(sat_add(now, ttl_s)));
    char *payload = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!payload)
        return mint_fail(err, errlen, "out of memory");

    char *res = NULL;
    EVP_PKEY *pk = NULL;
    char *pem = NULL; /* the private key as we checked it, for libjwt */
    size_t pemlen = 0;
    if (is_hs(alg)) {
        if (keylen < fx_jwt_min_secret(alg)) {
            mint_fail(err, errlen, "%s secret of %zu bytes refused: at least %zu bytes are required",
                      fx_jwt_alg_name(alg), keylen, fx_jwt_min_secret(alg));
            goto out;
        }
    } else {
        BIO *b = BIO_new_mem_buf(key, (int)keylen);
        pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
        BIO_free(b);
        if (!pk) {
            mint_fail(err, errlen, "not an unencrypted PEM private key");
            goto out;
        }
        if (fx_jwt_check_pkey(pk, alg, err, errlen) < 0)
            goto out;
        if (alg == FX_JWT_ALG_PS256) {
            res = mint_ps256(pk, kid, payload, err, errlen);
            goto out;
        }
        BIO *w = BIO_new(BIO_s_secmem());
        char *data = NULL;
        long n = 0;
        if (w && PEM_write_bio_PrivateKey(w, pk, NULL, NULL, 0, NULL, NULL) == 1 &&
            (n = BIO_get_mem_data(w, &data)) > 0 && (pem = OPENSSL_secure_malloc((size_t)n)))
            memcpy(pem, data, pemlen = (size_t)n);
        BIO_free(w);
        if (!pem) {
            mint_fail(err, errlen, "out of memory");
            goto out;
        }
    }

    jwt_t *j = NULL;
    if (jwt_new(&j) != 0 || jwt_add_grants_json(j, payload) != 0 ||
        (kid && jwt_add_header(j, "kid", kid) != 0) ||
        jwt_set_alg(j, libjwt_alg(alg), pem ? (const unsigned char *)pem : key,
                    (int)(pem ? pemlen : keylen)) != 0) {
        mint_fail(err, errlen, "libjwt could not set up the token");
    } else {
        char *t = jwt_encode_str(j);
        if (!t)
            mint_fail(err, errlen, "libjwt could not sign the token");
        else if (!(res = strdup(t)))
            mint_fail(err, errlen, "out of memory");
        free(t);
    }
    if (j)
        jwt_free(j);
out:
    if (pem)
        OPENSSL_secure_clear_free(pem, pemlen);
    EVP_PKEY_free(pk);
    free(payload);
    return res;
}

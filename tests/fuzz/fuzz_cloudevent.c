/*
 * fuzz_cloudevent.c — libFuzzer harness for gateway/cloudevent.c.
 *
 * One input is used four ways:
 *   json check     fx_ce_json_valid against jansson on the same bytes: they
 *                  must agree, except where jansson is the stricter or looser
 *                  by design (numbers it cannot hold; nesting deeper than 64)
 *   events         built with the input as body (JSON content type, none) and
 *                  with the input cut into every outside string (content type,
 *                  request id, method, key, actor, type, route, body); each
 *                  event must parse with jansson, keep the valid-UTF-8 strings
 *                  exactly, and carry the body back: JSON equal, string equal,
 *                  base64 decoding to the same bytes
 *   key, param     the input as a raw path parameter, against a reference
 *                  percent-decoder written here
 *   key, claim     the input as a claim name, against fx_jwt_claim_render on a
 *                  real token (minted and verified once at start-up)
 *
 *   build-fuzz/tests/fuzz/fuzz_cloudevent -max_len=65536 tests/data/cloudevent
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevent.h"

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            fprintf(stderr, "fuzz_cloudevent: %s:%d: ", __FILE__, __LINE__);                                          \
            fprintf(stderr, __VA_ARGS__);                                                                             \
            fputc('\n', stderr);                                                                                      \
            abort();                                                                                                  \
        }                                                                                                             \
    } while (0)

static fx_jwt_claims *claims; /* set once, read-only afterwards */

static void init_claims(void)
{
    static const char secret[] = "fuzz-only-cloudevent-hs256-secret-of-32+";
    char err[256] = "";
    fx_jwt_keyset *ks = fx_jwt_keyset_new();
    CHECK(fx_jwt_keyset_add_secret(ks, "k", FX_JWT_ALG_HS256, (const unsigned char *)secret, strlen(secret), err,
                                   sizeof(err)) == 0,
          "key: %s", err);
    static const char *const aud[] = {"ficus"};
    fx_jwt_issuer iss = {"https://id.example.com", aud, 1, ks};
    char *tok = fx_jwt_mint(FX_JWT_ALG_HS256, (const unsigned char *)secret, strlen(secret), "k",
                            "{\"iss\":\"https://id.example.com\",\"aud\":\"ficus\",\"sub\":\"u\",\"tenant\":\"acme\","
                            "\"n\":42,\"f\":1.5,\"t\":true,\"nul\":null,\"arr\":[1,\"x\"],\"a.b\":\"top\","
                            "\"a\":{\"b\":\"walked\",\"c\":{\"d\":7}},\"q\\\"k\":\"quoted\",\"e\\u00e9\":\"\\n\","
                            "\"\":\"empty-name\",\"x\":{\"\":{\"y\":\"z\"}}}",
                            1795694400, 3600, err, sizeof(err));
    CHECK(tok, "mint: %s", err);
    CHECK(fx_jwt_verify(&iss, 1, tok, strlen(tok), 1795694400, 0, &claims, NULL) == FX_JWT_OK, "verify");
    free(tok);
    fx_jwt_keyset_unref(ks);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    init_claims();
    return 0;
}

/* ---- oracles ---------------------------------------------------------------------------------- */

static size_t depth_of(json_t *v)
{
    size_t d = 0, i;
    const char *k;
    json_t *e;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            size_t x = depth_of(e);
            d = x > d ? x : d;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        json_object_foreach(v, k, e) {
            size_t x = depth_of(e);
            d = x > d ? x : d;
        }
        return d + 1;
    }
    return 0;
}

/* jansson validates UTF-8 (overlongs, surrogates, > U+10FFFF) when it makes a string. */
static int utf8_ok(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

static int b64_decode(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t x = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *p = s[i + k] ? strchr(al, s[i + k]) : NULL;
            if (s[i + k] == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '='))
                pad++;
            else if (!p || pad)
                return -1;
            x = x << 6 | (p ? (uint32_t)(p - al) : 0);
        }
        out[o++] = (unsigned char)(x >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(x >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)x;
    }
    *outlen = o;
    return 0;
}

/* ---- the JSON check against jansson ---------------------------------------------------------- */

static void check_json(const uint8_t *data, size_t size)
{
    int valid = fx_ce_json_valid((const char *)data, size);
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (valid && !j)
        CHECK(json_error_code(&err) == json_error_numeric_overflow, "valid here, jansson: %s at %d", err.text,
              err.position);
    /* jansson takes a NUL byte after a number for the end ("1\0", "[1\0]"); RFC 8259 has no raw
     * NUL anywhere, so a text with one is never valid */
    if (!valid && j)
        CHECK(depth_of(j) > 64 || memchr(data, 0, size), "invalid here, jansson read it (depth %zu)", depth_of(j));
    if (j && valid)
        CHECK(depth_of(j) <= 64, "valid at depth %zu", depth_of(j));
    json_decref(j);
}

/* ---- events -------------------------------------------------------------------------------------- */

static const char *get_str(json_t *ev, const char *name, size_t *len)
{
    json_t *v = json_object_get(ev, name);
    CHECK(json_is_string(v), "'%s' missing or not a string", name);
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

/* A string from outside comes back exactly when it was valid UTF-8. */
static void check_outside(json_t *ev, const char *name, const char *prefix, const char *s, size_t n)
{
    size_t got_len, pl = strlen(prefix);
    const char *got = get_str(ev, name, &got_len);
    CHECK(got_len >= pl && !memcmp(got, prefix, pl), "'%s' lost its prefix", name);
    if (utf8_ok(s, n))
        CHECK(got_len == pl + n && !memcmp(got + pl, s, n), "'%s' changed", name);
}

static void build_and_check(const fx_ce_input *in)
{
    char *out = NULL;
    size_t n = 0;
    CHECK(fx_ce_build(in, &out, &n) == 0 && out, "build failed");
    CHECK(strlen(out) == n, "length %zu, NUL at %zu", n, strlen(out));

    const char *body = in->body ? in->body : "";
    size_t blen = in->body ? in->body_len : 0;
    fx_slice ct = fx_slice_trim(in->content_type);
    enum { NONE, OMITTED, JSON, STRING, BASE64 } form;
    json_t *want = NULL;
    json_error_t berr;
    if (!in->has_data) {
        form = NONE;
    } else if (in->omitted) {
        form = OMITTED;
    } else if (fx_ce_content_type_is_json(ct) && !memchr(body, 0, blen) &&
               (want = json_loadb(body, blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &berr)) && depth_of(want) <= 64) {
        form = JSON;
    } else {
        form = utf8_ok(body, blen) ? STRING : BASE64;
    }

    json_error_t err;
    /* no JSON_REJECT_DUPLICATES: a JSON body may repeat names (RFC 8259 allows it) */
    json_t *ev = json_loadb(out, n, JSON_ALLOW_NUL, &err);
    if (!ev) {
        /* only a body number jansson cannot hold, embedded as JSON (the check said valid) */
        CHECK(json_error_code(&err) == json_error_numeric_overflow && fx_ce_content_type_is_json(ct) &&
                  fx_ce_json_valid(body, blen) && form != NONE && form != OMITTED,
              "event is not JSON (%s at %d): %s", err.text, err.position, out);
        json_decref(want);
        free(out);
        return;
    }
    CHECK(json_is_object(ev), "event is not an object");
    CHECK(!strcmp(get_str(ev, "specversion", NULL), "1.0"), "specversion");
    check_outside(ev, "id", "", in->id, strlen(in->id));
    check_outside(ev, "source", "/ficus/", in->source_route, strlen(in->source_route));
    check_outside(ev, "type", "", in->type, strlen(in->type));
    check_outside(ev, "subject", "", in->key, strlen(in->key));
    check_outside(ev, "partitionkey", "", in->key, strlen(in->key));
    check_outside(ev, "ficusrequestid", "", in->request_id.p, in->request_id.n);
    check_outside(ev, "ficusmethod", "", in->method.p, in->method.n);
    if (in->actor)
        check_outside(ev, "ficusactor", "", in->actor, strlen(in->actor));
    else
        CHECK(!json_object_get(ev, "ficusactor"), "anonymous event with an actor");
    CHECK(json_integer_value(json_object_get(ev, "ficusstatus")) == in->status, "status");

    json_t *data = json_object_get(ev, "data"), *b64 = json_object_get(ev, "data_base64"),
           *omitted = json_object_get(ev, "ficusdataomitted"), *dct = json_object_get(ev, "datacontenttype");
    switch (form) {
    case NONE:
    case OMITTED:
        CHECK(!data && !b64 && !dct, "data without data");
        CHECK(form == NONE ? !omitted : json_is_string(omitted), "ficusdataomitted");
        break;
    case JSON:
        CHECK(data && !b64 && !omitted && json_equal(data, want), "JSON body not carried back");
        check_outside(ev, "datacontenttype", "", ct.p, ct.n);
        break;
    case STRING: {
        CHECK(json_is_string(data) && !b64 && !omitted, "not a string body");
        CHECK(json_string_length(data) == blen && !memcmp(json_string_value(data), body, blen),
              "string body not carried back");
        check_outside(ev, "datacontenttype", "", ct.n ? ct.p : "text/plain; charset=utf-8",
                      ct.n ? ct.n : strlen("text/plain; charset=utf-8"));
        break;
    }
    case BASE64: {
        CHECK(json_is_string(b64) && !data && !omitted, "not a base64 body");
        size_t dl = 0, el = json_string_length(b64);
        unsigned char *dec = malloc(el / 4 * 3 + 3);
        CHECK(dec && b64_decode(json_string_value(b64), el, dec, &dl) == 0, "bad base64");
        CHECK(dl == blen && !memcmp(dec, body, blen), "base64 body not carried back");
        free(dec);
        check_outside(ev, "datacontenttype", "", ct.n ? ct.p : "application/octet-stream",
                      ct.n ? ct.n : strlen("application/octet-stream"));
        break;
    }
    }
    json_decref(want);
    json_decref(ev);
    free(out);
}

static fx_ce_input base(void)
{
    fx_ce_input in = {
        .id = "0190163d-8694-739b-aea5-966c26f8ad91",
        .source_route = "documents-write",
        .type = "document.updated",
        .key = "42",
        .time_ms = 1795694400000,
        .request_id = FX_SLICE_LIT("req"),
        .actor = "u",
        .method = FX_SLICE_LIT("PUT"),
        .status = 200,
        .has_data = 1,
    };
    return in;
}

static void check_events(const uint8_t *data, size_t size)
{
    fx_ce_input in = base();
    in.body = (const char *)data;
    in.body_len = size;
    in.content_type = FX_SLICE_LIT("application/json; charset=utf-8");
    build_and_check(&in);
    in.content_type = FX_SLICE_NULL;
    build_and_check(&in);

    /* the input cut into eight pieces: every outside string at once */
    fx_slice part[8];
    for (int i = 0; i < 8; i++)
        part[i] = fx_slice_make((const char *)data + size * (size_t)i / 8,
                                size * (size_t)(i + 1) / 8 - size * (size_t)i / 8);
    char *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = strndup(part[3 + i].p, part[3 + i].n); /* C strings stop at a NUL */
    if (!s[0] || !s[1] || !s[2] || !s[3])
        abort();
    unsigned flags = size ? data[0] : 0;
    in.content_type = part[0];
    in.request_id = part[1];
    in.method = part[2];
    in.key = s[0];
    in.actor = flags & 0x20 ? NULL : s[1];
    in.type = s[2];
    in.source_route = s[3];
    in.id = s[3];
    in.body = part[7].n ? part[7].p : NULL;
    in.body_len = part[7].n;
    in.has_data = !(flags & 0x10);
    in.omitted = (int)(flags % 3);
    in.status = (int)(flags * 7) - 500;
    build_and_check(&in);
    /* and the last piece under a JSON content type */
    in.content_type = FX_SLICE_LIT("application/vnd.x+json");
    in.omitted = FX_CE_DATA_COMPLETE;
    in.has_data = 1;
    build_and_check(&in);
    for (int i = 0; i < 4; i++)
        free(s[i]);
}

/* ---- keys -------------------------------------------------------------------------------------- */

static int hexv(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Control characters: C0, DEL, C1 (U+0080..U+009F as C2 80..C2 9F). */
static int has_control(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7F || (s[i] == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] < 0xA0))
            return 1;
    return 0;
}

static void check_param_key(const uint8_t *data, size_t size)
{
    enum { CAP = 128 };
    /* reference decode */
    unsigned char ref[CAP + 8];
    size_t rn = 0;
    int bad_escape = 0, too_long = 0;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = data[i];
        if (c == '%') {
            int h = i + 2 < size ? hexv(data[i + 1]) : -1, l = h >= 0 ? hexv(data[i + 2]) : -1;
            if (l < 0) {
                bad_escape = 1;
                break;
            }
            c = (unsigned char)(h << 4 | l);
            i += 2;
        }
        if (2 + rn + 1 > CAP - 1) { /* "k-" and the decoded value must fit in CAP - 1 */
            too_long = 1;
            continue;
        }
        ref[rn++] = c;
    }
    fx_ce_param p = {FX_SLICE_LIT("id"), fx_slice_make((const char *)data, size)};
    char out[CAP], why[160];
    long r = fx_ce_render_key("k-{id}", &p, 1, NULL, out, CAP, why, sizeof(why));
    if (bad_escape) {
        CHECK(r == -1 && (strstr(why, "percent-escape") || strstr(why, "longer than")), "bad escape taken: %s",
              r >= 0 ? out : why);
        return;
    }
    if (too_long) {
        CHECK(r == -1, "a key longer than the room was rendered");
        return;
    }
    int ok = utf8_ok((const char *)ref, rn) && !has_control(ref, rn);
    if (!ok) {
        CHECK(r == -1 && (strstr(why, "control character") || strstr(why, "UTF-8")), "bad value taken: %s",
              r >= 0 ? out : why);
        return;
    }
    CHECK(r == (long)rn + 2, "rendered %ld bytes, want %zu (%s)", r, rn + 2, r < 0 ? why : out);
    CHECK(!memcmp(out, "k-", 2) && !memcmp(out + 2, ref, rn) && out[r] == '\0', "decoded differently");
}

static void check_claim_key(const uint8_t *data, size_t size)
{
    char name[64], tmpl[80], out[64], ref[64], why[160];
    size_t n = 0;
    for (; n < size && n < sizeof(name) - 1 && data[n] && data[n] != '{' && data[n] != '}'; n++)
        name[n] = (char)data[n];
    name[n] = '\0';
    snprintf(tmpl, sizeof(tmpl), "{token.%s}", name);
    long r = fx_ce_render_key(tmpl, NULL, 0, claims, out, sizeof(out), why, sizeof(why));
    int c = fx_jwt_claim_render(claims, name, ref, sizeof(ref));
    if (c < 0)
        CHECK(r == -1 && (strstr(why, "has no") || strstr(why, "is null") || strstr(why, "has no token") ||
                          strstr(why, "template")),
              "claim '%s' absent, rendered '%s' / why '%s'", name, r >= 0 ? out : "", why);
    if (r >= 0)
        CHECK(c == r && !memcmp(out, ref, (size_t)r) && !has_control((unsigned char *)out, (size_t)r),
              "claim '%s': '%s' vs render '%s'", name, out, ref);
    /* "{token.}" or a name of only the prefix: a parameter lookup, refused */
    if (n == 0)
        CHECK(r == -1, "empty claim name rendered");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_json(data, size);
    check_events(data, size);
    check_param_key(data, size);
    check_claim_key(data, size);
    return 0;
}

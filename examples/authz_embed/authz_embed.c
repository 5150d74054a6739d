/*
 * authz_embed.c — an extracted service that authorizes in-process with the
 * authz library (authz/ficus_authz.h), the same code the gateway runs at
 * the edge: it verifies the caller's token itself and decides with the
 * deployment's policy files, without calling the gateway or the monolith.
 *
 *   authz_embed --policies DIR --issuer ISS --audience AUD
 *               --key KID:ALG:PUBLIC.pem [--key ...] [--route NAME ...]
 *               [--clock-skew SECONDS]   (default 30, as auth.clock_skew)
 *
 * It reads one request per line on stdin, as JSON (a service would take
 * these from its own HTTP layer; jansson parses them here):
 *
 *   {"route": "documents-write", "params": {"id": "42"}, "method": "PUT",
 *    "path": "/api/documents/42", "headers": {"X-Tenant": "acme"},
 *    "token": "eyJ..."}
 *
 * and writes one line per request: {"allow":true,"reason":"permitted",
 * "policies":["owner-or-admin-writes"]}, or {"allow":false,"reason":
 * "invalid_token","detail":"..."} when the token is refused. Exit 0 at end
 * of input; 1 when the keys or policies do not load (errors on stderr as
 * FILE:LINE:COL: error: MESSAGE).
 *
 * The integration tests (tests/integration/test_authz.py) run it beside
 * the gateway on a shared table of cases: the edge, the decision API and
 * this program must agree on every one.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ficus_authz.h"
#include "policy_dir.h"

#define MAX_KV 64

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(65536);
    *len = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf)
        buf[*len] = '\0';
    return buf;
}

/* Every *.yaml of dir, compiled into one set (all or nothing). */
static fx_policy_set *load_policies(const char *dir, const char *const *routes, size_t nroutes)
{
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(nroutes ? routes : NULL, nroutes);
    if (ex_policy_dir_add(b, dir, &d) < 0) {
        perror(dir);
        fx_policy_builder_free(b);
        return NULL;
    }
    fx_policy_set *set = fx_policy_builder_finish(b, &d);
    fx_authz_diags_print(&d, stderr);
    fx_authz_diags_free(&d);
    return set;
}

/* {"name": "value", ...} → kv pairs borrowing the JSON strings. */
static size_t kv_of(json_t *obj, fx_authz_kv *kv)
{
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (n == MAX_KV || !json_is_string(v))
            continue;
        kv[n].name = (fx_authz_str){k, strlen(k)};
        kv[n].value = (fx_authz_str){json_string_value(v), json_string_length(v)};
        n++;
    }
    return n;
}

static const char *str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void decide(const fx_policy_set *set, const fx_jwt_issuer *iss, int64_t skew, json_t *in)
{
    const char *route = str_of(in, "route"), *method = str_of(in, "method"), *path = str_of(in, "path");
    const char *q = strchr(path, '?'); /* request.path is the path without its query */
    size_t pathlen = q ? (size_t)(q - path) : strlen(path);
    fx_authz_kv params[MAX_KV], headers[MAX_KV];
    fx_authz_request req = {
        .method = {method, strlen(method)},
        .path = {path, pathlen},
        .route = {route, strlen(route)},
        .route_index = fx_policy_set_route(set, route, strlen(route)),
        .params = params,
        .nparams = kv_of(json_object_get(in, "params"), params),
        .headers = headers,
        .nheaders = kv_of(json_object_get(in, "headers"), headers),
    };
    /* the token: verified exactly as the gateway verifies it (keys pinned to algorithms) */
    fx_jwt_claims *claims = NULL;
    const char *token = str_of(in, "token");
    if (*token) {
        const char *detail = NULL;
        fx_jwt_reason r = fx_jwt_verify(iss, 1, token, strlen(token), (int64_t)time(NULL), skew, &claims, &detail);
        if (r != FX_JWT_OK) {
            printf("{\"allow\":false,\"reason\":\"invalid_token\",\"detail\":\"%s\"}\n", fx_jwt_reason_name(r));
            return;
        }
        req.token = fx_jwt_claims_doc(claims);
    }
    fx_authz_decision d;
    fx_policy_eval(set, &req, &d);
    printf("{\"allow\":%s,\"reason\":\"%s\",\"policies\":[", d.allow ? "true" : "false",
           fx_authz_reason_name(d.reason));
    for (size_t i = 0; i < d.nmatched && i < FX_AUTHZ_MAX_MATCHED; i++)
        printf("%s\"%s\"", i ? "," : "", fx_policy_id(set, d.matched[i]));
    printf("]}\n");
    if (claims)
        fx_jwt_claims_unref(claims);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *issuer = NULL, *audience = NULL;
    int64_t skew = 30;
    const char *routes[256];
    size_t nroutes = 0;
    fx_jwt_keyset *keys = fx_jwt_keyset_new();
    char err[256];
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (!strcmp(opt, "--policies")) {
            dir = val;
        } else if (!strcmp(opt, "--issuer")) {
            issuer = val;
        } else if (!strcmp(opt, "--audience")) {
            audience = val;
        } else if (!strcmp(opt, "--clock-skew")) {
            skew = atoll(val);
        } else if (!strcmp(opt, "--route") && nroutes < 256) {
            routes[nroutes++] = val;
        } else if (!strcmp(opt, "--key")) { /* KID:ALG:FILE */
            char kid[128], alg[16];
            const char *c1 = strchr(val, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            size_t len;
            char *pem;
            if (!c2 || (size_t)(c1 - val) >= sizeof(kid) || (size_t)(c2 - c1 - 1) >= sizeof(alg) ||
                !(pem = read_file(c2 + 1, &len))) {
                fprintf(stderr, "authz_embed: --key KID:ALG:FILE, got '%s'\n", val);
                return 1;
            }
            snprintf(kid, sizeof(kid), "%.*s", (int)(c1 - val), val);
            snprintf(alg, sizeof(alg), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
            int rc = fx_jwt_keyset_add_pem(keys, kid, fx_jwt_alg_parse(alg, strlen(alg)), pem, len, err, sizeof(err));
            free(pem);
            if (rc < 0) {
                fprintf(stderr, "authz_embed: %s: %s\n", c2 + 1, err);
                return 1;
            }
        } else {
            fprintf(stderr, "authz_embed: unknown option '%s'\n", opt);
            return 1;
        }
    }
    if (!dir || !issuer || !audience) {
        fprintf(stderr, "usage: authz_embed --policies DIR --issuer ISS --audience AUD --key KID:ALG:FILE "
                        "[--route NAME ...]\n");
        return 1;
    }
    fx_policy_set *set = load_policies(dir, routes, nroutes);
    if (!set)
        return 1;
    const char *auds[1] = {audience};
    fx_jwt_issuer iss = {issuer, auds, 1, keys};
    char line[65536];
    while (fgets(line, sizeof(line), stdin)) {
        json_error_t je;
        json_t *in = json_loads(line, 0, &je);
        if (!json_is_object(in))
            printf("{\"allow\":false,\"reason\":\"bad_input\"}\n");
        else
            decide(set, &iss, skew, in);
        json_decref(in);
        fflush(stdout);
    }
    fx_policy_set_unref(set);
    fx_jwt_keyset_unref(keys);
    return 0;
}

/*
 * check.c — the decision API's request body (ficus_authz.h,
 * fx_authz_checks_parse): one check or {"checks": [...]}, strictly typed.
 * Unknown fields are errors (a misspelt "contxt" must not silently drop
 * the context a service meant to send); every error names its field.
 */
#include "policy_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATH_BYTES 8192
#define MAX_HEADERS 100
#define MAX_HEADER_BYTES 8192

static void __attribute__((format(printf, 3, 4))) set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void check_free(fx_authz_check *c)
{
    free(c->method);
    free(c->path);
    free(c->query);
    free(c->host);
    free(c->token);
    fx_authz_doc_free(c->claims);
    for (size_t i = 0; i < c->nheaders; i++) {
        free((char *)c->headers[i].name.p);
        free((char *)c->headers[i].value.p);
    }
    free(c->headers);
    fx_authz_doc_free(c->context);
}

void fx_authz_checks_free(fx_authz_checks *c)
{
    for (size_t i = 0; i < c->n; i++)
        check_free(&c->v[i]);
    free(c->v);
    memset(c, 0, sizeof(*c));
}

static int is_tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Control characters other than HTAB (which header values may hold), and DEL. */
static int has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return 1;
    return 0;
}

/* A request target as the edge accepts it: visible ASCII only. */
static int target_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '#')
            return 0;
    return 1;
}

static const char *const fields[] = {"token", "method", "path", "host", "headers", "context", NULL};

static int parse_one(const json_t *o, const char *where, int allow_claims, fx_authz_check *c, char *err,
                     size_t errlen)
{
    if (!json_is_object(o)) {
        set_err(err, errlen, "%s%sa check is a JSON object", where, *where ? ": " : "");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int known = 0;
        for (int i = 0; fields[i]; i++)
            known |= !strcmp(k, fields[i]);
        if (!known) {
            set_err(err, errlen, "%s%sunknown field '%.64s' (the fields are token, method, path, host, headers "
                    "and context)", where, *where ? "." : "", k);
            return -1;
        }
    }
    const char *sep = *where ? "." : "";
    /* method: an upper-case token */
    v = json_object_get(o, "method");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 32) {
        set_err(err, errlen, "%s%smethod: required, a string such as \"GET\"", where, sep);
        return -1;
    }
    const char *m = json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++)
        if (!is_tchar((unsigned char)m[i]) || islower((unsigned char)m[i])) {
            set_err(err, errlen, "%s%smethod: '%.32s' is not an upper-case HTTP method", where, sep, m);
            return -1;
        }
    /* path: origin form, the query after '?' */
    v = json_object_get(o, "path");
    if (!json_is_string(v) || json_string_value(v)[0] != '/') {
        set_err(err, errlen, "%s%spath: required, a string starting with '/'", where, sep);
        return -1;
    }
    const char *p = json_string_value(v);
    size_t pl = json_string_length(v);
    if (pl > MAX_PATH_BYTES || !target_ok(p, pl)) {
        set_err(err, errlen, "%s%spath: at most %d bytes of visible ASCII, no '#' (percent-encode the rest)",
                where, sep, MAX_PATH_BYTES);
        return -1;
    }
    if (!(c->method = strdup(m)))
        goto oom;
    const char *q = memchr(p, '?', pl);
    if (!(c->path = strndup(p, q ? (size_t)(q - p) : pl)))
        goto oom;
    if (q && !(c->query = strndup(q + 1, pl - (size_t)(q - p) - 1)))
        goto oom;
    if ((v = json_object_get(o, "host"))) {
        if (!json_is_string(v) || json_string_length(v) > 255 || has_ctl(json_string_value(v), json_string_length(v))) {
            set_err(err, errlen, "%s%shost: a host name string", where, sep);
            return -1;
        }
        if (!(c->host = strdup(json_string_value(v))))
            goto oom;
    }
    if ((v = json_object_get(o, "token")) && !json_is_null(v)) {
        if (json_is_string(v)) {
            if (json_string_length(v) > FX_JWT_MAX_TOKEN) {
                set_err(err, errlen, "%s%stoken: longer than %d bytes", where, sep, FX_JWT_MAX_TOKEN);
                return -1;
            }
            if (!(c->token = strdup(json_string_value(v))))
                goto oom;
        } else if (allow_claims && json_is_object(v)) {
            c->claims = JSON_DOC(json_deep_copy(v));
            if (!c->claims)
                goto oom;
        } else {
            set_err(err, errlen, "%s%stoken: %s", where, sep,
                    allow_claims ? "a JWT string or an object of claims" : "a JWT string");
            return -1;
        }
    }
    if ((v = json_object_get(o, "headers"))) {
        if (!json_is_object(v) || json_object_size(v) > MAX_HEADERS) {
            set_err(err, errlen, "%s%sheaders: an object of at most %d name: string pairs", where, sep, MAX_HEADERS);
            return -1;
        }
        c->headers = calloc(json_object_size(v) + 1, sizeof(*c->headers));
        if (!c->headers)
            goto oom;
        const char *hk;
        json_t *hv;
        json_object_foreach(v, hk, hv) {
            size_t kl = strlen(hk);
            if (!json_is_string(hv) || kl == 0 || kl > 256 || json_string_length(hv) > MAX_HEADER_BYTES ||
                has_ctl(json_string_value(hv), json_string_length(hv))) {
                set_err(err, errlen, "%s%sheaders.%.64s: a string without control characters (at most %d bytes)",
                        where, sep, hk, MAX_HEADER_BYTES);
                return -1;
            }
            for (size_t i = 0; i < kl; i++)
                if (!is_tchar((unsigned char)hk[i])) {
                    set_err(err, errlen, "%s%sheaders: '%.64s' is not a header name", where, sep, hk);
                    return -1;
                }
            char *kn = strdup(hk), *vv = strndup(json_string_value(hv), json_string_length(hv));
            if (!kn || !vv) {
                free(kn);
                free(vv);
                goto oom;
            }
            c->headers[c->nheaders].name = (fx_authz_str){kn, kl};
            c->headers[c->nheaders].value = (fx_authz_str){vv, json_string_length(hv)};
            c->nheaders++;
        }
    }
    if ((v = json_object_get(o, "context")) && !json_is_null(v)) {
        if (!json_is_object(v)) {
            set_err(err, errlen, "%s%scontext: an object", where, sep);
            return -1;
        }
        if (!(c->context = JSON_DOC(json_deep_copy(v))))
            goto oom;
    }
    return 0;
oom:
    set_err(err, errlen, "out of memory");
    return -1;
}

int fx_authz_checks_parse(const char *json, size_t len, int allow_claims, fx_authz_checks *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len > ((size_t)1 << 20)) {
        set_err(err, errlen, "the body is larger than 1 MiB");
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        set_err(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (fx_json_too_deep(root, 64)) { /* refused before anything else looks at it */
        set_err(err, errlen, "the body nests deeper than 64 levels");
        goto done;
    }
    json_t *checks = json_is_object(root) ? json_object_get(root, "checks") : NULL;
    if (checks) {
        if (json_object_size(root) != 1) {
            set_err(err, errlen, "a batch is {\"checks\": [...]} and nothing else");
            goto done;
        }
        if (!json_is_array(checks) || json_array_size(checks) == 0 ||
            json_array_size(checks) > FX_AUTHZ_MAX_CHECKS) {
            set_err(err, errlen, "checks: a list of 1 to %d checks", FX_AUTHZ_MAX_CHECKS);
            goto done;
        }
        out->batch = 1;
        out->v = calloc(json_array_size(checks), sizeof(*out->v));
        if (!out->v) {
            set_err(err, errlen, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < json_array_size(checks); i++) {
            char where[32];
            snprintf(where, sizeof(where), "checks[%zu]", i);
            out->n++;
            if (parse_one(json_array_get(checks, i), where, allow_claims, &out->v[i], err, errlen) < 0)
                goto done;
        }
    } else {
        out->v = calloc(1, sizeof(*out->v));
        if (!out->v) {
            set_err(err, errlen, "out of memory");
            goto done;
        }
        out->n = 1;
        if (parse_one(root, "", allow_claims, &out->v[0], err, errlen) < 0)
            goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        fx_authz_checks_free(out);
    return rc;
}

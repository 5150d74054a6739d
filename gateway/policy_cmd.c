/*
 * policy_cmd.c — `ficus policy test` and `ficus policy eval` (contract in
 * DESIGN.md and docs/policy-language.md).
 *
 *   fx_policy_cmd     argument parsing, dispatch
 *   cmd_test          load the cases and the policies (from -c FILE, or the
 *                     *.yaml files of the cases' parent directory), decide
 *                     each case as the edge would, one line per failure, a
 *                     last line "N passed, N failed"
 *   cmd_eval          one request from JSON, decided and explained
 *
 * With a config, a case is routed by the gateway's own router (its params
 * come from the route template) and a route with `auth: none` is allowed
 * without policies, as at the edge. Tokens in test cases are claims, taken
 * as they are: these commands test policies, not signatures.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "authn.h"
#include "authorize.h"
#include "config.h"
#include "ficus_authz.h"
#include "log.h"
#include "router.h"

int fx_policy_cmd(int argc, char **argv, const char *usage);

/* ---- helpers ---------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yaml and *.yml files of dir, sorted (malloc'd). -1 if dir cannot be read. */
static int yaml_files(const char *dir, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' ||
            !((l > 5 && !strcmp(e->d_name + l - 5, ".yaml")) || (l > 4 && !strcmp(e->d_name + l - 4, ".yml"))))
            continue;
        char *path;
        if (asprintf(&path, "%s/%s", dir, e->d_name) < 0)
            continue;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(*out, cap * sizeof(*v));
            if (!v) {
                free(path);
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = path;
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof(char *), cmp_str);
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void json_out(FILE *f, const char *s, size_t n)
{
    char buf[2048];
    fputc('"', f);
    while (n) {
        size_t take = n > 300 ? 300 : n;
        size_t w = fx_json_escape(buf, sizeof(buf), s, take);
        fwrite(buf, 1, w <= sizeof(buf) ? w : 0, f);
        s += take;
        n -= take;
    }
    fputc('"', f);
}

static int has_id(const fx_policy_set *set, const fx_authz_decision *d, const char *id)
{
    size_t n = d->nmatched < FX_AUTHZ_MAX_MATCHED ? d->nmatched : FX_AUTHZ_MAX_MATCHED;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(fx_policy_id(set, d->matched[i]), id))
            return 1;
    return 0;
}

static void matched_list(const fx_policy_set *set, const fx_authz_decision *d, char *buf, size_t cap)
{
    size_t k = 0, n = d->nmatched < FX_AUTHZ_MAX_MATCHED ? d->nmatched : FX_AUTHZ_MAX_MATCHED;
    buf[0] = '\0';
    for (size_t i = 0; i < n && k + 2 < cap; i++) {
        int w = snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", fx_policy_id(set, d->matched[i]));
        if (w < 0 || (size_t)w >= cap - k)
            break;
        k += (size_t)w;
    }
}

/* ---- ficus policy test ------------------------------------------------------------------------ */

/* An id the case's `policies` lists twice (the comparison below counts), or NULL. */
static const char *dup_id(const fx_policy_case *k)
{
    for (size_t i = 0; i < k->nexpect_policies; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(k->expect_policies[i], k->expect_policies[j]))
                return k->expect_policies[i];
    return NULL;
}

typedef struct case_outcome {
    int allow;
    const char *reason;
    fx_authz_decision d;
    int decided;
    const char *error; /* the case could not be decided (no route, route mismatch) */
    char errbuf[300];
} case_outcome;

static void run_case(const fx_config *cfg, const fx_policy_set *set, const fx_policy_case *k, fx_arena *a,
                     case_outcome *o)
{
    memset(o, 0, sizeof(*o));
    fx_authz_request r = {0};
    r.method = (fx_authz_str){k->method, strlen(k->method)};
    r.path = (fx_authz_str){k->path, strlen(k->path)};
    r.headers = k->headers;
    r.nheaders = k->nheaders;
    r.query = k->query;
    r.nquery = k->nquery;
    r.token = cfg && !cfg->auth ? NULL : k->token; /* no auth section: the edge looks at no token */
    r.context = k->context;
    r.params = k->params;
    r.nparams = k->nparams;
    r.route = (fx_authz_str){k->route ? k->route : "", k->route ? strlen(k->route) : 0};
    r.route_index = set && k->route ? fx_policy_set_route(set, k->route, strlen(k->route)) : -1;
    if (cfg) {
        fx_slice host = FX_SLICE_NULL;
        for (size_t i = 0; i < k->nheaders; i++)
            if (k->headers[i].name.len == 4 && !strncasecmp(k->headers[i].name.p, "host", 4))
                host = fx_slice_make(k->headers[i].value.p, k->headers[i].value.len);
        const char *why = NULL;
        const fx_route_conf *rc = fx_authz_route(cfg, k->method, host, k->path, a, &r, &why);
        if (!rc) {
            if (!strcmp(why, "bad_path"))
                snprintf(o->errbuf, sizeof(o->errbuf), "the gateway refuses the path %s (dot-segments or "
                         "encoded slashes: 400), so no policy decides it", k->path);
            else if (!strcmp(why, "bad_host"))
                snprintf(o->errbuf, sizeof(o->errbuf), "the Host header is not a valid host, so the gateway "
                         "refuses the request (400)");
            else if (!strcmp(why, "out_of_memory"))
                snprintf(o->errbuf, sizeof(o->errbuf), "out of memory");
            else
                snprintf(o->errbuf, sizeof(o->errbuf), "no route of the config matches %s %s", k->method, k->path);
            o->error = o->errbuf;
            return;
        }
        if (k->route && strcmp(k->route, rc->name) != 0) {
            snprintf(o->errbuf, sizeof(o->errbuf), "the case names route '%s' but %s %s matches route '%s'",
                     k->route, k->method, k->path, rc->name);
            o->error = o->errbuf;
            return;
        }
        if (!rc->authz) {
            o->allow = 1;
            o->reason = "auth_none";
            return;
        }
        if (cfg->auth && rc->auth == FX_AUTH_REQUIRED && !k->token) {
            o->reason = "missing_token"; /* the edge answers 401 */
            return;
        }
    }
    fx_policy_eval(set, &r, &o->d);
    o->decided = 1;
    o->allow = o->d.allow;
    o->reason = fx_authz_reason_name(o->d.reason);
}

static int cmd_test(const char *dir, const char *config)
{
    fx_policy_cases cases = {0};
    fx_authz_diags ad = {0};
    size_t load_failed = 0;
    char **files = NULL;
    size_t nfiles = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "ficus policy test: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    if (S_ISDIR(st.st_mode)) {
        if (yaml_files(dir, &files, &nfiles) < 0) {
            fprintf(stderr, "ficus policy test: %s: %s\n", dir, strerror(errno));
            return 2;
        }
    } else {
        files = malloc(sizeof(char *));
        if (!files || !(files[0] = strdup(dir)))
            return 2;
        nfiles = 1;
    }
    if (nfiles == 0) {
        fprintf(stderr, "ficus policy test: %s: no *.yaml test files\n", dir);
        free(files);
        return 1;
    }
    for (size_t i = 0; i < nfiles; i++)
        if (fx_policy_cases_load_file(&cases, files[i], &ad) < 0)
            load_failed++;
    strv_free(files, nfiles);

    /* the policies */
    fx_config *cfg = NULL;
    fx_policy_set *own = NULL;
    const fx_policy_set *set = NULL;
    if (config) {
        fx_diags d = {0};
        cfg = fx_config_load(config, &d);
        if (!cfg) {
            fx_diags_print(&d, stderr);
            fx_diags_free(&d);
            load_failed++;
        } else {
            set = cfg->policies ? cfg->policies->set : NULL;
            if (!set)
                fprintf(stderr, "%s: warning: no 'policies' section: every route that is not 'auth: none' is "
                                "denied\n", config);
        }
    } else {
        /* the policies are the YAML files next to the tests directory: policies/tests → policies */
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", dir);
        size_t l = strlen(parent);
        while (l > 1 && parent[l - 1] == '/')
            parent[--l] = '\0';
        if (!S_ISDIR(st.st_mode)) { /* a single file: its directory's parent */
            char *s = strrchr(parent, '/');
            if (s)
                *s = '\0';
            else
                snprintf(parent, sizeof(parent), ".");
            l = strlen(parent);
        }
        char *s = strrchr(parent, '/');
        if (s == parent)
            parent[1] = '\0';
        else if (s)
            *s = '\0';
        else
            snprintf(parent, sizeof(parent), ".");
        char **pf = NULL;
        size_t npf = 0;
        if (yaml_files(parent, &pf, &npf) < 0) {
            fprintf(stderr, "ficus policy test: %s: %s\n", parent, strerror(errno));
            load_failed++;
        }
        fx_policy_builder *b = fx_policy_builder_new(NULL, 0);
        for (size_t i = 0; b && i < npf; i++)
            fx_policy_builder_add_file(b, pf[i], &ad);
        if (b && npf == 0)
            fprintf(stderr, "ficus policy test: warning: no policy files in %s: every case is denied\n", parent);
        strv_free(pf, npf);
        own = fx_policy_builder_finish(b, &ad);
        if (!own)
            load_failed++;
        set = own;
    }
    fx_authz_diags_print(&ad, stderr);
    fx_authz_diags_free(&ad);

    size_t passed = 0, failed = load_failed;
    fx_arena arena; /* one case's request view at a time */
    fx_arena_init(&arena, 4096);
    if (!load_failed) {
        for (size_t i = 0; i < cases.n; i++) {
            const fx_policy_case *k = &cases.v[i];
            case_outcome o;
            fx_arena_reset(&arena);
            run_case(cfg, set, k, &arena, &o);
            char why[600] = "";
            if (o.error) {
                snprintf(why, sizeof(why), "%s", o.error);
            } else if (o.allow != k->expect_allow) {
                char ids[400];
                if (o.decided)
                    matched_list(set, &o.d, ids, sizeof(ids));
                else
                    ids[0] = '\0';
                snprintf(why, sizeof(why), "expected %s, got %s (%s%s%s)", k->expect_allow ? "allow" : "deny",
                         o.allow ? "allow" : "deny", o.reason, *ids ? ": " : "", ids);
            } else if (k->has_expect_policies && dup_id(k)) {
                snprintf(why, sizeof(why), "`policies` names '%s' twice", dup_id(k));
            } else if (k->has_expect_policies) {
                size_t n = o.decided ? o.d.nmatched : 0;
                int same = n == k->nexpect_policies;
                for (size_t j = 0; same && j < k->nexpect_policies; j++)
                    same = has_id(set, &o.d, k->expect_policies[j]);
                if (!same) {
                    char ids[400];
                    if (o.decided)
                        matched_list(set, &o.d, ids, sizeof(ids));
                    else
                        ids[0] = '\0';
                    snprintf(why, sizeof(why), "%s as expected, but the matching policies are [%s]",
                             o.allow ? "allow" : "deny", ids);
                }
            }
            if (*why) {
                printf("%s:%d:%d: FAIL: %s: %s\n", k->file, k->line, k->col, k->name, why);
                failed++;
            } else {
                passed++;
            }
        }
    }
    fx_arena_free(&arena);
    printf("%zu passed, %zu failed\n", passed, failed);
    fx_policy_cases_free(&cases);
    fx_policy_set_unref(own);
    if (cfg)
        fx_config_unref(cfg);
    return failed ? 1 : 0;
}

/* ---- ficus policy eval ----------------------------------------------------------------------- */

typedef struct explain_out {
    FILE *f;
    const fx_policy_set *set;
    size_t shown, other_routes;
} explain_out;

static void on_explain(void *arg, const fx_policy_explain_item *it)
{
    explain_out *x = arg;
    static const char *const names[] = {"", "not_for_route", "not_for_method", "when_false", "matched"};
    if (it->outcome == FX_POLICY_NOT_FOR_ROUTE) {
        x->other_routes++;
        return;
    }
    int line = 0, col = 0;
    const char *file = fx_policy_file(x->set, it->policy, &line, &col);
    const char *id = fx_policy_id(x->set, it->policy);
    fprintf(x->f, "%s\n    {\"id\": ", x->shown ? "," : "");
    json_out(x->f, id, strlen(id));
    fprintf(x->f, ", \"effect\": \"%s\", \"outcome\": \"%s\"",
            fx_policy_effect_of(x->set, it->policy) == FX_POLICY_FORBID ? "forbid" : "permit",
            names[it->outcome <= FX_POLICY_MATCHED ? it->outcome : 0]);
    if (it->why.len) {
        fprintf(x->f, ", \"false\": ");
        json_out(x->f, it->why.p, it->why.len);
    }
    if (it->missing.len) {
        fprintf(x->f, ", \"missing\": ");
        json_out(x->f, it->missing.p, it->missing.len);
    }
    char at[PATH_MAX + 32];
    int n = snprintf(at, sizeof(at), "%s:%d:%d", file ? file : "?", line, col);
    fprintf(x->f, ", \"at\": ");
    json_out(x->f, at, n > 0 && (size_t)n < sizeof(at) ? (size_t)n : 0);
    fputc('}', x->f);
    x->shown++;
}

static int read_all(const char *path, char **out, size_t *len)
{
    FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            if (cap >= ((size_t)1 << 20) + 1) /* bounded: fx_authz_checks_parse refuses more */
                break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int cmd_eval(const char *config, const char *input)
{
    char *text = NULL;
    size_t len = 0;
    if (read_all(input, &text, &len) < 0) {
        fprintf(stderr, "ficus policy eval: --input %s: %s\n", input, strerror(errno));
        return 1;
    }
    fx_authz_checks checks;
    char err[300];
    int rc = fx_authz_checks_parse(text, len, 1, &checks, err, sizeof(err));
    free(text);
    if (rc < 0) {
        fprintf(stderr, "ficus policy eval: --input %s: %s\n", input, err);
        return 1;
    }
    if (checks.batch) {
        fprintf(stderr, "ficus policy eval: --input %s: one request, not a batch of checks\n", input);
        fx_authz_checks_free(&checks);
        return 1;
    }
    fx_diags d = {0};
    fx_config *cfg = fx_config_load(config, &d);
    if (!cfg) {
        fx_diags_print(&d, stderr);
        fx_diags_free(&d);
        fx_authz_checks_free(&checks);
        return 1;
    }
    fx_authn_worker aw;
    fx_arena a;
    fx_arena_init(&a, 4096);
    uint64_t rng[2] = {0x2545f4914f6cdd1dull, (uint64_t)time(NULL)};
    if (fx_authn_worker_init(&aw) < 0) {
        fx_authn_worker_free(&aw);
        fx_config_unref(cfg);
        fx_authz_checks_free(&checks);
        return 1;
    }
    const fx_authz_check *ck = &checks.v[0];
    fx_authz_check_result res;
    fx_authz_check_run(cfg, &aw, ck, rng, &a, &res);
    const fx_policy_set *set = cfg->policies ? cfg->policies->set : NULL;
    FILE *f = stdout;
    fprintf(f, "{\n  \"allow\": %s,\n  \"reason\": \"%s\",\n", res.allow ? "true" : "false", res.reason);
    if (res.decided && res.o.would_deny)
        fprintf(f, "  \"would_deny\": true,\n");
    fprintf(f, "  \"mode\": \"%s\",\n", cfg->policies && cfg->policies->mode == FX_POLICY_AUDIT ? "audit" : "enforce");
    fprintf(f, "  \"route\": ");
    if (res.route)
        json_out(f, res.route->name, strlen(res.route->name));
    else
        fputs("null", f);
    fprintf(f, ",\n  \"token\": \"%s\"",
            res.token_ignored  ? "ignored (the config has no auth section, as at the edge)"
            : ck->claims       ? "claims as given (not verified)"
            : !ck->token       ? "none"
            : res.claims       ? "verified"
            : res.token_detail ? "refused"
                               : "not checked");
    if (res.token_detail) {
        fprintf(f, ",\n  \"token_error\": ");
        json_out(f, res.token_detail, strlen(res.token_detail));
    }
    char pol[FX_AUTHZ_POLICIES_JSON_MAX] = "[]";
    if (res.decided)
        fx_authz_policies_json(cfg, &res.o.d, pol, sizeof(pol));
    fprintf(f, ",\n  \"policies\": %s", pol);
    if (res.decided && set) {
        explain_out x = {f, set, 0, 0};
        fx_authz_decision dd;
        fprintf(f, ",\n  \"explain\": [");
        fx_policy_explain(set, &res.req, &dd, on_explain, &x);
        fprintf(f, "%s],\n  \"policies_of_other_routes\": %zu", x.shown ? "\n  " : "", x.other_routes);
    }
    fprintf(f, "\n}\n");
    if (res.claims)
        fx_jwt_claims_unref(res.claims);
    fx_arena_free(&a);
    fx_authn_worker_free(&aw);
    fx_config_unref(cfg);
    fx_authz_checks_free(&checks);
    return 0;
}

/* ---- dispatch --------------------------------------------------------------------------------- */

int fx_policy_cmd(int argc, char **argv, const char *usage)
{
    const char *sub = argc > 2 ? argv[2] : NULL;
    const char *config = NULL, *input = NULL, *dir = NULL;
    for (int i = 3; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            input = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "ficus policy: unknown argument '%s'\n\n%s", argv[i], usage);
            return 2;
        }
    }
    if (sub && !strcmp(sub, "test") && dir && !input)
        return cmd_test(dir, config);
    if (sub && !strcmp(sub, "eval") && config && input && !dir)
        return cmd_eval(config, input);
    fprintf(stderr, "ficus policy: use 'policy test DIR [-c FILE]' or 'policy eval -c FILE --input FILE.json'\n\n%s",
            usage);
    return 2;
}

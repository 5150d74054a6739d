/*
 * bench_policy.c — nanoseconds per authorization decision (fx_policy_eval),
 * p50 / p99 / p99.9 / max, for policy sets of 10, 100 and 1,000 policies.
 *
 * The sets are generated as policy files (YAML text, loaded through
 * fx_policy_builder_add_buffer exactly as the gateway loads them): 1,000
 * policies are 3 global ones (a suspended-account forbid, an admin permit,
 * a kill switch read from the request context) and 997 spread over 200
 * routes, 5 per route (reads by scope, writes by owner or role, a tenant
 * check on a header, a path and list check, a route-specific forbid).
 * Smaller sets keep the ratio: 100 → 20 routes, 10 → 2 routes.
 *
 * Requests: 4,096 prepared ones (random route, method, token claims with
 * roles, a space-separated scope, org, tenant; path params; headers), taken
 * round robin so the branch predictor cannot learn one answer. Each
 * decision is timed alone with CLOCK_MONOTONIC (the clock's own cost is
 * measured and printed; it is included in the figures). Build release for
 * numbers worth quoting:
 *
 *   meson setup build-rel --buildtype=release && ninja -C build-rel
 *   build-rel/tests/bench_policy [decisions per set, default 1000000]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ficus_authz.h"

#define NREQ 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The policy file: 3 globals, then `total - 3` route policies, 5 per route in turn (the last
 * route may get fewer), so the set has exactly `total` policies. */
static char *make_policies(int total, int nroutes)
{
    size_t cap = (size_t)total * 300 + 4096, n = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    n += (size_t)snprintf(s + n, cap - n,
                          "policies:\n"
                          "  - id: suspended\n    effect: forbid\n    when: \"token.status == 'suspended'\"\n"
                          "  - id: admins\n    effect: permit\n    when: \"'admin' in token.roles\"\n"
                          "  - id: kill-switch\n    effect: forbid\n"
                          "    when: \"has(context.maintenance) && context.maintenance == true\"\n");
    for (int i = 0; i < total - 3; i++) {
        int r = (i / 5) % nroutes;
        switch (i % 5) {
        case 0:
            n += (size_t)snprintf(s + n, cap - n,
                                  "  - id: r%d-read\n    effect: permit\n    routes: [r%d]\n    methods: [GET, HEAD]\n"
                                  "    when: \"'r%d:read' in token.scope || 'reader' in token.roles\"\n", r, r, r);
            break;
        case 1:
            n += (size_t)snprintf(s + n, cap - n,
                                  "  - id: r%d-owner-writes\n    effect: permit\n    routes: [r%d]\n"
                                  "    methods: [PUT, PATCH, DELETE]\n"
                                  "    when: \"token.sub == request.params.id || ('editor' in token.roles && "
                                  "token.org.id == %d)\"\n", r, r, r % 50);
            break;
        case 2:
            n += (size_t)snprintf(s + n, cap - n,
                                  "  - id: r%d-tenant\n    effect: forbid\n    routes: [r%d]\n"
                                  "    when: \"has(request.headers['x-tenant']) && request.headers['x-tenant'] != "
                                  "token.tenant\"\n", r, r);
            break;
        case 3:
            n += (size_t)snprintf(s + n, cap - n,
                                  "  - id: r%d-create\n    effect: permit\n    routes: [r%d]\n    methods: [POST]\n"
                                  "    when: \"request.path.startsWith('/api/r%d/') && size(token.roles) > 0 && "
                                  "token.roles[0] != 'guest' && token.level >= %d\"\n", r, r, r, r % 5);
            break;
        default:
            n += (size_t)snprintf(s + n, cap - n,
                                  "  - id: r%d-blocked-org\n    effect: forbid\n    routes: [r%d]\n"
                                  "    when: \"token.org.id in [%d, %d, %d] && !('admin' in token.roles)\"\n", r, r,
                                  r % 97 + 1000, r % 89 + 2000, r % 83 + 3000);
            break;
        }
    }
    return s;
}

typedef struct prepared {
    fx_authz_request req;
    fx_authz_kv params[1], headers[3];
    char route[16], path[64], id[16], tenant[16];
} prepared;

static int bench(int npolicies, int nroutes, long decisions)
{
    char *text = make_policies(npolicies, nroutes);
    const char **names = calloc((size_t)nroutes, sizeof(char *));
    char (*namebuf)[16] = calloc((size_t)nroutes, 16);
    if (!text || !names || !namebuf)
        return -1;
    for (int r = 0; r < nroutes; r++) {
        snprintf(namebuf[r], 16, "r%d", r);
        names[r] = namebuf[r];
    }
    fx_authz_diags d = {0};
    fx_policy_builder *b = fx_policy_builder_new(names, (size_t)nroutes);
    uint64_t t0 = now_ns();
    fx_policy_builder_add_buffer(b, "bench.yaml", text, strlen(text), &d);
    fx_policy_set *set = fx_policy_builder_finish(b, &d);
    uint64_t load_ns = now_ns() - t0;
    if (!set) {
        fx_authz_diags_print(&d, stderr);
        return -1;
    }
    if ((int)fx_policy_set_count(set) != npolicies) {
        fprintf(stderr, "expected %d policies, got %zu\n", npolicies, fx_policy_set_count(set));
        return -1;
    }

    /* tokens: a few shapes, parsed once (as the gateway's cache keeps verified claims) */
    static const char *const toks[] = {
        "{\"sub\":\"17\",\"roles\":[\"reader\"],\"scope\":\"r1:read r2:read profile\",\"org\":{\"id\":3},"
        "\"tenant\":\"acme\",\"level\":2}",
        "{\"sub\":\"42\",\"roles\":[\"editor\",\"reviewer\"],\"scope\":\"openid\",\"org\":{\"id\":1001},"
        "\"tenant\":\"acme\",\"level\":4}",
        "{\"sub\":\"7\",\"roles\":[\"guest\"],\"scope\":\"\",\"org\":{\"id\":12},\"tenant\":\"globex\",\"level\":0}",
        "{\"sub\":\"99\",\"roles\":[\"admin\"],\"status\":\"suspended\",\"org\":{\"id\":1},\"tenant\":\"acme\"}",
        "{\"sub\":\"5\",\"scope\":\"r0:read r3:read r4:read r5:read r6:read r7:read\",\"org\":{\"id\":2002},"
        "\"tenant\":\"initech\",\"level\":3,\"roles\":[]}",
    };
    enum { NTOK = sizeof(toks) / sizeof(toks[0]) };
    fx_authz_doc *docs[NTOK];
    char err[200];
    for (int i = 0; i < NTOK; i++)
        if (!(docs[i] = fx_authz_doc_parse(toks[i], strlen(toks[i]), err, sizeof(err)))) {
            fprintf(stderr, "%s\n", err);
            return -1;
        }
    fx_authz_doc *ctx_on = fx_authz_doc_parse("{\"maintenance\":true}", 20, err, sizeof(err));
    static const char *const methods[] = {"GET", "GET", "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"};
    prepared *p = calloc(NREQ, sizeof(*p));
    if (!p)
        return -1;
    for (int i = 0; i < NREQ; i++) {
        prepared *q = &p[i];
        int r = (int)(rnd() % (uint64_t)nroutes);
        snprintf(q->route, sizeof(q->route), "r%d", r);
        snprintf(q->id, sizeof(q->id), "%d", (int)(rnd() % 100));
        snprintf(q->path, sizeof(q->path), "/api/r%d/%s", r, q->id);
        snprintf(q->tenant, sizeof(q->tenant), "%s", rnd() % 4 ? "acme" : "globex");
        const char *m = methods[rnd() % 8];
        q->params[0] = (fx_authz_kv){{"id", 2}, {q->id, strlen(q->id)}};
        q->headers[0] = (fx_authz_kv){{"Host", 4}, {"api.example.com", 15}};
        q->headers[1] = (fx_authz_kv){{"Accept", 6}, {"application/json", 16}};
        q->headers[2] = (fx_authz_kv){{"X-Tenant", 8}, {q->tenant, strlen(q->tenant)}};
        q->req = (fx_authz_request){
            .method = {m, strlen(m)},
            .path = {q->path, strlen(q->path)},
            .route = {q->route, strlen(q->route)},
            .route_index = fx_policy_set_route(set, q->route, strlen(q->route)),
            .params = q->params, .nparams = 1,
            .headers = q->headers, .nheaders = rnd() % 3 ? 3 : 2,
            .token = docs[rnd() % NTOK],
            .context = rnd() % 50 ? NULL : ctx_on,
        };
    }
    /* the clock's own cost */
    uint64_t *lat = malloc((size_t)decisions * sizeof(uint64_t));
    if (!lat)
        return -1;
    for (long i = 0; i < 100000; i++) {
        uint64_t a = now_ns();
        lat[i] = now_ns() - a;
    }
    qsort(lat, 100000, sizeof(uint64_t), cmp_u64);
    uint64_t clock_ns = lat[50000];

    fx_authz_decision dec;
    long allowed = 0;
    for (long i = 0; i < decisions / 10; i++) { /* warm-up */
        fx_policy_eval(set, &p[i % NREQ].req, &dec);
        allowed += dec.allow;
    }
    allowed = 0;
    uint64_t total0 = now_ns();
    for (long i = 0; i < decisions; i++) {
        const fx_authz_request *rq = &p[i % NREQ].req;
        uint64_t a = now_ns();
        fx_policy_eval(set, rq, &dec);
        lat[i] = now_ns() - a;
        allowed += dec.allow;
    }
    uint64_t total = now_ns() - total0;
    qsort(lat, (size_t)decisions, sizeof(uint64_t), cmp_u64);
    printf("%5d policies %4d routes  p50 %5llu ns  p99 %5llu ns  p99.9 %6llu ns  max %7llu ns  "
           "(%.1f%% allowed; load %.1f ms; clock_gettime %llu ns included; %.2f M decisions/s)\n",
           npolicies, nroutes, (unsigned long long)lat[decisions / 2],
           (unsigned long long)lat[(size_t)((double)decisions * 0.99)],
           (unsigned long long)lat[(size_t)((double)decisions * 0.999)],
           (unsigned long long)lat[decisions - 1], 100.0 * (double)allowed / (double)decisions,
           (double)load_ns / 1e6, (unsigned long long)clock_ns, (double)decisions / ((double)total / 1e3));
    free(lat);
    free(p);
    for (int i = 0; i < NTOK; i++)
        fx_authz_doc_free(docs[i]);
    fx_authz_doc_free(ctx_on);
    fx_policy_set_unref(set);
    fx_authz_diags_free(&d);
    free(text);
    free(names);
    free(namebuf);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n < 1000)
        n = 1000;
    if (bench(10, 2, n) < 0 || bench(100, 20, n) < 0 || bench(1000, 200, n) < 0)
        return 1;
    return 0;
}

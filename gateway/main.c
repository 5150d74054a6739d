/*
 * main.c — the `ficus` command line (contract in docs/architecture.md):
 *
 *   ficus serve [-c FILE]     run the gateway (default config/ficus.yaml)
 *   ficus check [-c FILE]     validate; errors as FILE:LINE:COL: error: MESSAGE
 *   ficus policy test|eval    policy tests and explain (policy_cmd.c)
 *   ficus token               mint a token (dev and tests)
 *   ficus devbroker           a Kafka-protocol broker in memory for dev and tests (devbroker.c)
 *   ficus version             version and the libraries it runs on
 *
 * Exit codes: 0 ok, 1 invalid config or failed start, 2 usage error.
 */
#include <event2/event.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "config.h"
#include "devbroker.h"
#include "ficus_authz.h"
#include "llhttp.h"
#include "log.h"
#include "server.h"

/* policy_cmd.c */
int fx_policy_cmd(int argc, char **argv, const char *usage);

#ifndef FICUS_VERSION
#define FICUS_VERSION "dev"
#endif

static const char usage[] =
    "usage: ficus <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [-c FILE] [--watch]\n"
    "                    run the gateway (FILE defaults to config/ficus.yaml);\n"
    "                    --watch reloads the config when the file changes\n"
    "  check [-c FILE]   validate the configuration; exit 0 valid, 1 invalid\n"
    "  token --key FILE --alg ALG [--kid K] [--claims JSON] [--ttl 1h]\n"
    "                    mint a signed token (dev and tests): FILE is a PEM private\n"
    "                    key (RS/PS/ES) or the secret itself (HS)\n"
    "  policy test DIR [-c FILE]\n"
    "                    run the policy test cases in DIR (*.yaml); with -c the policies,\n"
    "                    routes and path params come from FILE, else the policies are\n"
    "                    the *.yaml files of DIR's parent directory\n"
    "  policy eval -c FILE --input FILE.json\n"
    "                    decide one request and explain which policies matched and why\n"
    "  devbroker [--brokers N] [--partitions N] [--topic NAME[:N]] [--bootstrap-file FILE]\n"
    "                    a Kafka-protocol broker in memory for dev and tests (librdkafka's\n"
    "                    mock cluster); fault-injection commands on stdin\n"
    "  version           print the version and the library versions\n";

static const char *config_arg(int argc, char **argv, int *bad, int *watch)
{
    const char *file = "config/ficus.yaml";
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            file = argv[++i];
        } else if (watch && !strcmp(argv[i], "--watch")) {
            *watch = 1;
        } else {
            fprintf(stderr, "ficus %s: unknown argument '%s'\n\n%s", argv[1], argv[i], usage);
            *bad = 1;
        }
    }
    return file;
}

static int cmd_token(int argc, char **argv)
{
    const char *keyfile = NULL, *algname = NULL, *kid = NULL, *claims = "{}", *ttl = "1h";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--key")      ? &keyfile
                            : !strcmp(a, "--alg")    ? &algname
                            : !strcmp(a, "--kid")    ? &kid
                            : !strcmp(a, "--claims") ? &claims
                            : !strcmp(a, "--ttl")    ? &ttl
                                                     : NULL;
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "ficus token: %s '%s'\n\n%s", slot ? "missing value for" : "unknown argument",
                    a, usage);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!keyfile || !algname) {
        fprintf(stderr, "ficus token: --key and --alg are required\n\n%s", usage);
        return 2;
    }
    fx_jwt_algorithm alg = fx_jwt_alg_parse(algname, strlen(algname));
    if (alg == FX_JWT_ALG_NONE) {
        fprintf(stderr, "ficus token: --alg '%s': use HS256, HS384, HS512, RS256, RS384, RS512, ES256, "
                        "ES384 or PS256\n", algname);
        return 2;
    }
    uint64_t ttl_ms = 0;
    if (fx_parse_duration_ms(ttl, &ttl_ms) < 0 || ttl_ms < 1000) {
        fprintf(stderr, "ficus token: --ttl '%s': a duration of at least 1s, like 15m or 1h\n", ttl);
        return 2;
    }
    FILE *f = fopen(keyfile, "rb");
    if (!f) {
        fprintf(stderr, "ficus token: --key %s: %s\n", keyfile, strerror(errno));
        return 1;
    }
    unsigned char key[65536];
    size_t n = fread(key, 1, sizeof(key), f);
    fclose(f);
    if (n == sizeof(key)) {
        fprintf(stderr, "ficus token: --key %s: larger than 64 KiB\n", keyfile);
        return 1;
    }
    /* a secret file written with echo ends in a newline that is not part of the secret */
    int hmac = alg == FX_JWT_ALG_HS256 || alg == FX_JWT_ALG_HS384 || alg == FX_JWT_ALG_HS512;
    if (hmac && n && key[n - 1] == '\n')
        n--;
    char err[256];
    char *tok = fx_jwt_mint(alg, key, n, kid, claims, (int64_t)time(NULL), (int64_t)(ttl_ms / 1000), err,
                            sizeof(err));
    OPENSSL_cleanse(key, sizeof(key));
    if (!tok) {
        fprintf(stderr, "ficus token: %s\n", err);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

static int cmd_version(void)
{
    printf("ficus %s\n", FICUS_VERSION);
    printf("  libevent %s\n", event_get_version());
    printf("  llhttp %d.%d.%d (strict mode)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
           LLHTTP_VERSION_PATCH);
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  libyaml %s\n", yaml_get_version_string());
    printf("  librdkafka %s\n", rd_kafka_version_str());
    return 0;
}

/* auth without policies: legal, and every route that is not `auth: none` answers 403. Said
 * at `check` and at start, so nobody learns it from their users. */
static void warn_default_deny(const fx_config *cfg, FILE *out)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nroutes; i++)
        n += cfg->routes[i].authz != 0;
    if (!cfg->policies && n)
        fprintf(out, "%s: warning: 'auth' is configured but 'policies' is not: policies default to deny, so the "
                     "%zu route%s that %s not 'auth: none' will answer 403 to every request\n",
                cfg->file, n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
}

static int cmd_check(const char *file)
{
    fx_diags d = {0};
    fx_config *cfg = fx_config_load(file, &d);
    if (!cfg) {
        fx_diags_print(&d, stderr);
        fprintf(stderr, "%s: %zu error%s\n", file, d.n, d.n == 1 ? "" : "s");
        fx_diags_free(&d);
        return 1;
    }
    size_t npol = cfg->policies ? fx_policy_set_count(cfg->policies->set) : 0;
    printf("%s: ok: %zu listener%s, %zu upstream%s, %zu route%s, %zu polic%s (sha256 %.12s)\n", file,
           cfg->nlistens, cfg->nlistens == 1 ? "" : "s", cfg->nupstreams,
           cfg->nupstreams == 1 ? "" : "s", cfg->nroutes, cfg->nroutes == 1 ? "" : "s", npol,
           npol == 1 ? "y" : "ies", cfg->hash);
    warn_default_deny(cfg, stderr);
    fx_config_unref(cfg);
    fx_diags_free(&d);
    return 0;
}

static int cmd_serve(const char *file, int watch)
{
    fx_diags d = {0};
    fx_config *cfg = fx_config_load(file, &d);
    if (!cfg) {
        fx_diags_print(&d, stderr);
        fx_diags_free(&d);
        return 1;
    }
    fx_diags_free(&d);
    warn_default_deny(cfg, stderr);
    fx_log_set_level(cfg->log.level);
    signal(SIGPIPE, SIG_IGN);
    fx_server s;
    if (fx_server_start(&s, cfg, file) < 0) {
        fx_server_free(&s);
        return 1;
    }
    s.watch = watch;
    fx_log(FX_LOG_INFO, "ficus %s serving %s (%zu routes, %zu upstreams)", FICUS_VERSION, file,
           cfg->nroutes, cfg->nupstreams);
    int rc = fx_server_run(&s);
    fx_server_free(&s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version"))
        return cmd_version();
    if (!strcmp(cmd, "token"))
        return cmd_token(argc, argv);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "policy"))
        return fx_policy_cmd(argc, argv, usage);
    if (!strcmp(cmd, "devbroker"))
        return fx_devbroker_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve") || !strcmp(cmd, "check")) {
        int bad = 0, watch = 0;
        int serve = !strcmp(cmd, "serve");
        const char *file = config_arg(argc, argv, &bad, serve ? &watch : NULL);
        if (bad)
            return 2;
        return serve ? cmd_serve(file, watch) : cmd_check(file);
    }
    fprintf(stderr, "ficus: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}

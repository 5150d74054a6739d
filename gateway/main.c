/*
 * main.c — the `ficus` command line (contract in docs/architecture.md):
 *
 *   ficus serve [-c FILE]     run the gateway (default config/ficus.yaml)
 *   ficus check [-c FILE]     validate; errors as FILE:LINE:COL: error: MESSAGE
 *   ficus version             version and the libraries it runs on
 *
 * Exit codes: 0 ok, 1 invalid config or failed start, 2 usage error.
 */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "config.h"
#include "llhttp.h"
#include "log.h"
#include "server.h"

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

static int cmd_version(void)
{
    printf("ficus %s\n", FICUS_VERSION);
    printf("  libevent %s\n", event_get_version());
    printf("  llhttp %d.%d.%d (strict mode)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
           LLHTTP_VERSION_PATCH);
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  libyaml %s\n", yaml_get_version_string());
    return 0;
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
    printf("%s: ok: %zu listener%s, %zu upstream%s, %zu route%s, 0 policies (sha256 %.12s)\n", file,
           cfg->nlistens, cfg->nlistens == 1 ? "" : "s", cfg->nupstreams,
           cfg->nupstreams == 1 ? "" : "s", cfg->nroutes, cfg->nroutes == 1 ? "" : "s", cfg->hash);
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
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
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

/*
 * fuzz_config.c — libFuzzer harness for the config loader (gateway/config.c).
 *
 * The input is a whole config file: it goes through fx_config_load_buffer()
 * (libyaml, the tree, every section check), and a snapshot that loads is
 * referenced and released again. It is loaded a second time with every
 * planned feature allowed, so the values stored for planned keys are built
 * and freed as well (a load that refuses nothing else must then succeed). Short inputs also feed the scalar
 * grammars directly, since those take operator text too. Diagnostics are
 * printed to /dev/null so their formatting runs as well. Everything is
 * freed on every run: leaks show up under -fsanitize=address.
 *
 *   clang -fsanitize=fuzzer,address,undefined -I gateway -I /usr/share/include/llhttp \
 *         tests/fuzz/fuzz_config.c gateway/config.c gateway/arena.c -lyaml -lcrypto
 *   ./a.out -max_len=8192 tests/data/config/valid
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

/* Are all errors refusals of planned keys? A refusal ends with this; config
 * text quoted in other messages has its quotes escaped, so cannot fake it. */
static int only_refusals(const fx_diags *d)
{
    static const char tail[] = "' is not supported by this build yet";
    for (size_t i = 0; i < d->n; i++) {
        size_t n = strlen(d->v[i].message);
        if (n < sizeof(tail) - 1 || strcmp(d->v[i].message + n - (sizeof(tail) - 1), tail))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        devnull = fopen("/dev/null", "w");

    fx_diags d = {0};
    fx_config *c = fx_config_load_buffer("fuzz.yaml", (const char *)data, size, &d);
    if (c) {
        /* a snapshot is all or nothing: a loaded one has no diagnostics */
        if (d.n)
            abort();
        fx_config_unref(fx_config_ref(c));
        fx_config_unref(c);
    } else if (d.n == 0) {
        abort(); /* a failed load must say why */
    }
    if (devnull)
        fx_diags_print(&d, devnull);
    int refused_only = !c && d.n > 0 && d.n < 1000 && only_refusals(&d);
    fx_diags_free(&d);

    /* the planned keys' values, stored and freed */
    c = fx_config_load_buffer_ex("fuzz.yaml", (const char *)data, size, FX_FEAT_ALL, &d);
    if (c) {
        if (d.n)
            abort();
        fx_config_unref(c);
    } else if (d.n == 0 || refused_only) {
        abort(); /* allowing the features must take away exactly the refusals */
    }
    fx_diags_free(&d);

    if (size <= 64) {
        char s[65];
        memcpy(s, data, size);
        s[size] = '\0';
        uint64_t ms;
        size_t bytes;
        fx_addr a;
        const char *why;
        fx_parse_duration_ms(s, &ms);
        fx_parse_size(s, &bytes);
        if (fx_addr_parse(s, &a, &why) == 0)
            free(a.text);
    }
    return 0;
}

/*
 * fuzz_config.c — libFuzzer harness for the config loader (gateway/config.c).
 *
 * The input is a whole config file: it goes through fx_config_load_buffer()
 * (libyaml, the tree, every section check), and a snapshot that loads is
 * referenced and released again. Short inputs also feed the scalar
 * grammars directly, since those take operator text too. Diagnostics are
 * printed to /dev/null so their formatting runs as well. Everything is
 * freed on every run: leaks show up under -fsanitize=address.
 *
 *   clang -fsanitize=fuzzer,address,undefined -I gateway -I /usr/share/include/llhttp \
 *         tests/fuzz/fuzz_config.c gateway/config.c gateway/arena.c -lyaml
 *   ./a.out -max_len=8192 tests/data/config/valid
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

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

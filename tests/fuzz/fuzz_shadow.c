/*
 * fuzz_shadow — the shadow comparison (gateway/shadow_compare.c) on
 * arbitrary bodies and ignore paths. The input is cut at 0xFF bytes into:
 * the primary's body, the shadow's body, then ignore entries (JSON paths or
 * header names). Both bodies are labelled application/json, so valid JSON
 * takes the semantic path and anything else the byte path.
 *
 * Checked besides "no crash, no sanitizer report": an answer equals itself
 * (no difference of any kind), and the comparison is symmetric (the same
 * kinds differ whichever side is the primary).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shadow_compare.h"

#define CHECK(x)                                                                                                     \
    do {                                                                                                             \
        if (!(x))                                                                                                    \
            abort();                                                                                                 \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *parts[10];
    size_t lens[10], np = 0;
    const char *p = (const char *)data, *end = p + size;
    while (np < 10) {
        const char *cut = memchr(p, 0xff, (size_t)(end - p));
        parts[np] = p;
        lens[np++] = (size_t)((cut ? cut : end) - p);
        if (!cut)
            break;
        p = cut + 1;
    }
    if (np < 2)
        return 0;
    /* ignore entries as NUL-terminated strings (config.c would have refused bad ones; this code must
     * still not misbehave on them) */
    char *ignore[8];
    size_t ni = 0;
    for (size_t i = 2; i < np && ni < 8; i++) {
        ignore[ni] = malloc(lens[i] + 1);
        memcpy(ignore[ni], parts[i], lens[i]);
        ignore[ni][lens[i]] = '\0';
        if (strlen(ignore[ni]) == 0) {
            free(ignore[ni]);
            continue;
        }
        ni++;
    }
    fx_http_header ct = {FX_SLICE_LIT("Content-Type"), FX_SLICE_LIT("application/json"), 0};
    fx_shadow_answer a = {.status = 200, .headers = &ct, .nheaders = 1, .body = parts[0], .body_len = lens[0]};
    fx_shadow_answer b = {.status = 200, .headers = &ct, .nheaders = 1, .body = parts[1], .body_len = lens[1]};
    unsigned all = FX_SHADOW_STATUS | FX_SHADOW_HEADERS | FX_SHADOW_BODY;
    fx_shadow_diff d1, d2;
    CHECK(fx_shadow_compare(all, ignore, ni, &a, &a, &d1) == 0);
    unsigned k1 = fx_shadow_compare(all, ignore, ni, &a, &b, &d1);
    unsigned k2 = fx_shadow_compare(all, ignore, ni, &b, &a, &d2);
    CHECK(k1 == k2);
    CHECK((k1 == 0) == (d1.summary[0] == '\0'));
    for (size_t i = 0; i < ni; i++)
        free(ignore[i]);
    return 0;
}

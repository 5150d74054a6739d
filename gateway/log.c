/*
 * log.c — stderr diagnostics, the access and decision log sinks, and the
 * random ids that join log lines (see log.h).
 */
#include "log.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t fx_rng_next(uint64_t rng[2])
{
    uint64_t s1 = rng[0];
    const uint64_t s0 = rng[1];
    rng[0] = s0;
    s1 ^= s1 << 23;
    rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng[1] + s0;
}

void fx_log_id(uint64_t rng[2], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = fx_rng_next(rng), b = fx_rng_next(rng);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

void fx_log_time(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100, (int)(ts.tv_nsec / 1000000) % 1000);
}

static int log_level = FX_LOG_INFO; /* set once in main before workers start */

void fx_log_set_level(int level)
{
    log_level = level;
}

void fx_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < log_level)
        return;
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "ficus[%s]: ", names[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(buf) - 2)
        len = sizeof(buf) - 2;
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}

int fx_access_log_open(fx_access_log *al, int sink, const char *file)
{
    al->owned = 0;
    switch (sink) {
    case FX_LOG_STDOUT:
        al->fd = 1;
        return 0;
    case FX_LOG_STDERR:
        al->fd = 2;
        return 0;
    case FX_LOG_FILE:
        al->fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (al->fd < 0)
            return -1;
        al->owned = 1;
        return 0;
    default:
        al->fd = -1;
        return 0;
    }
}

void fx_access_log_close(fx_access_log *al)
{
    if (al->owned && al->fd >= 0)
        close(al->fd);
    al->fd = -1;
    al->owned = 0;
}

void fx_access_log_write(const fx_access_log *al, const char *line, size_t len)
{
    if (al->fd < 0)
        return;
    while (len) {
        ssize_t w = write(al->fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk must not stop the proxy */
        line += w;
        len -= (size_t)w;
    }
}

/* The length of a well-formed UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp, min;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

size_t fx_json_escape(char *buf, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[6];
        size_t k = 0;
        size_t u = c >= 0x80 ? utf8_seq((const unsigned char *)s + i, n - i) : 0;
        if (u) { /* well-formed UTF-8 is written as it is: "Zoë" stays "Zoë" */
            if (o + u > cap)
                return cap + 1;
            memcpy(buf + o, s + i, u);
            o += u;
            i += u - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) { /* control bytes, DEL and bytes that are not UTF-8:
                                              escaped, so a line is always valid JSON */
            tmp[k++] = '\\';
            tmp[k++] = 'u';
            tmp[k++] = '0';
            tmp[k++] = '0';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        } else {
            tmp[k++] = (char)c;
        }
        if (o + k > cap)
            return cap + 1;
        memcpy(buf + o, tmp, k);
        o += k;
    }
    return o;
}

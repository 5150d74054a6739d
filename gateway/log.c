/*
 * log.c — stderr diagnostics and the access log sink (see log.h).
 */
#include "log.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

size_t fx_json_escape(char *buf, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[6];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) { /* non-ASCII too: lines stay valid JSON */
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

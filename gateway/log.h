/*
 * log.h — the daemon's own messages (stderr), the JSON access and decision
 * logs (same sink type), and the ids that join their lines.
 *
 * fx_log() writes "ficus[LEVEL]: message" lines to stderr; the level
 * threshold comes from the config and is set once at start. The access
 * log is one JSON object per request, written with a single write(2) so
 * lines from different workers never interleave.
 */
#ifndef FX_LOG_H
#define FX_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { FX_LOG_DEBUG = 0, FX_LOG_INFO = 1, FX_LOG_WARN = 2, FX_LOG_ERROR = 3 };

void fx_log_set_level(int level);
void fx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Access log sink: fd 1, 2, an opened file, or -1 (off). */
typedef struct fx_access_log {
    int fd;
    int owned; /* close on fx_access_log_close */
} fx_access_log;

/* sink: enum fx_log_sink from config.h; file used for FX_LOG_FILE. 0 or -1 (errno). */
int fx_access_log_open(fx_access_log *al, int sink, const char *file);
void fx_access_log_close(fx_access_log *al);
void fx_access_log_write(const fx_access_log *al, const char *line, size_t len);

/* Now as RFC 3339 UTC with milliseconds: "2026-11-26T12:00:00.000Z". */
void fx_log_time(char out[40]);

/* The next number of a caller-owned xorshift128+ state (not all zero): fast, good enough for ids
 * and load spreading, not for secrets. */
uint64_t fx_rng_next(uint64_t rng[2]);

/* 32 lowercase hex characters + NUL from a caller-owned xorshift128+ state (request and
 * decision ids: unique enough to join log lines, not secrets). */
void fx_log_id(uint64_t rng[2], char out[33]);

/* Appends s as JSON string content (no quotes) into buf; returns bytes written or the
 * size needed when it would not fit (the caller then truncates). */
size_t fx_json_escape(char *buf, size_t cap, const char *s, size_t n);

#endif

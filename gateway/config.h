/*
 * config.h — the operator's YAML, parsed once into typed, immutable structs.
 *
 * Types first, then the functions. A loaded fx_config is a snapshot: it is
 * never modified after fx_config_load() returns; workers take a reference
 * (fx_config_ref) for each request and drop it when the request ends, so a
 * reload can swap the current pointer while old requests finish on the
 * snapshot they started with.
 *
 * Errors are collected, not fatal at the first one: fx_config_load() keeps
 * going and records every problem it can find, each with the YAML position
 * of the node at fault, so `ficus check` can print them all in one run.
 */
#ifndef FX_CONFIG_H
#define FX_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/* --- errors -------------------------------------------------------------- */

typedef struct fx_diag {
    char *file;    /* file the position refers to */
    int line;      /* 1-based; 0 when the error has no position */
    int col;       /* 1-based */
    char *message; /* "routes[3].upstream: unknown upstream 'documnets' (did you mean 'documents'?)" */
} fx_diag;

typedef struct fx_diags {
    fx_diag *v;
    size_t n, cap;
} fx_diags;

void fx_diags_add(fx_diags *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Writes each as "FILE:LINE:COL: error: MESSAGE\n" (or "FILE: error: ..." without position). */
void fx_diags_print(const fx_diags *d, void *stdio_file);
void fx_diags_free(fx_diags *d);

/* --- addresses ----------------------------------------------------------- */

typedef struct fx_addr {
    char *text;                   /* as written: "127.0.0.1:8080", "[::1]:8080" */
    struct sockaddr_storage sa;   /* resolved numerically (no DNS at load) */
    socklen_t salen;
} fx_addr;

/* Parses "HOST:PORT" / "[V6]:PORT" numerically. Returns 0 or -1 with *why set to a static message. */
int fx_addr_parse(const char *text, fx_addr *out, const char **why);

/* --- the snapshot ---------------------------------------------------------- */

typedef struct fx_listen_conf {
    fx_addr addr;
    int line, col;
} fx_listen_conf;

typedef struct fx_limits_conf {
    size_t max_header_bytes;      /* default 32 KiB; request line + headers; over: 431 */
    size_t max_body_bytes;        /* default 10 MiB; over: 413 */
    size_t max_uri_bytes;         /* default 8 KiB; request target; over: 414 */
    uint64_t header_timeout_ms;   /* default 10 s: whole header block must arrive in this; else 408 */
    uint64_t idle_timeout_ms;     /* default 60 s: keep-alive idle, and stalls while reading a body */
    uint64_t drain_timeout_ms;    /* default 30 s: SIGTERM grace period for in-flight requests */
    unsigned max_connections;     /* default 10000, across all workers; over: 503 and close */
} fx_limits_conf;

typedef struct fx_upstream_conf {
    char *name;
    fx_addr *targets;
    size_t ntargets;
    unsigned keepalive;           /* idle connections kept per worker; default 64 */
    uint64_t connect_timeout_ms;  /* default 2 s; over: 504 */
    uint64_t timeout_ms;          /* default 30 s: wait for response head, and between body reads; over: 504 */
    int line, col;
} fx_upstream_conf;

enum fx_match_kind {
    FX_MATCH_PREFIX = 1,          /* match.prefix: "/api/" */
    FX_MATCH_EXACT,               /* match.path without {params}: "/healthz" */
    FX_MATCH_TEMPLATE,            /* match.path with params: "/api/documents/{id}" */
};

/* A template binds at most this many {params}; more is a config error. */
#define FX_ROUTE_MAX_PARAMS 16

/* One path segment of a template: literal text or a {param}. */
typedef struct fx_path_seg {
    char *text;                   /* literal bytes, or the param name */
    size_t len;
    int is_param;
} fx_path_seg;

/* Method bits: FX_METHOD_BIT(llhttp method number). 0 means "any". */
#define FX_METHOD_BIT(m) (UINT64_C(1) << (m))

enum fx_auth_mode { FX_AUTH_REQUIRED = 0, FX_AUTH_OPTIONAL, FX_AUTH_NONE };

typedef struct fx_route_conf {
    char *name;
    int kind;                     /* enum fx_match_kind */
    char *path;                   /* prefix, exact path or template as written */
    size_t path_len;
    fx_path_seg *segs;            /* FX_MATCH_TEMPLATE: segments split at '/' */
    size_t nsegs;
    uint64_t methods;             /* bitmask of FX_METHOD_BIT; 0 = any method */
    char *host;                   /* optional, lower-cased, without port; NULL = any */
    int upstream;                 /* index into fx_config.upstreams */
    int auth;                     /* enum fx_auth_mode (parsed; enforced by the authn issue) */
    int line, col;
} fx_route_conf;

enum fx_log_sink { FX_LOG_OFF = 0, FX_LOG_STDOUT, FX_LOG_STDERR, FX_LOG_FILE };

typedef struct fx_log_conf {
    int access;                   /* enum fx_log_sink; default stdout */
    char *access_file;            /* FX_LOG_FILE */
    int level;                    /* 0 debug, 1 info (default), 2 warn, 3 error */
} fx_log_conf;

typedef struct fx_config {
    atomic_int refs;
    char *file;                   /* path it was loaded from */
    char hash[65];                /* SHA-256 (hex) of the bytes it was built from */
    time_t loaded_at;
    fx_listen_conf *listens;
    size_t nlistens;
    fx_addr admin;                /* admin.address; admin.text NULL when absent */
    int has_admin;
    unsigned workers;             /* resolved: "auto" becomes the number of CPUs */
    fx_limits_conf limits;
    fx_upstream_conf *upstreams;
    size_t nupstreams;
    fx_route_conf *routes;
    size_t nroutes;
    fx_log_conf log;
} fx_config;

/*
 * Loads and validates FILE. On success returns a snapshot with one
 * reference and leaves `diags` empty. On failure returns NULL and `diags`
 * holds every error found (never a partially built config).
 */
fx_config *fx_config_load(const char *file, fx_diags *diags);
/* Same, from memory (tests, fuzzing); `name` is used in positions. */
fx_config *fx_config_load_buffer(const char *name, const char *buf, size_t len, fx_diags *diags);

static inline fx_config *fx_config_ref(fx_config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}
void fx_config_unref(fx_config *c);

/* Duration "250ms" / "10s" / "5m" / "1h" → milliseconds. 0 ok, -1 bad. */
int fx_parse_duration_ms(const char *s, uint64_t *out);
/* Size "512", "512KiB", "10MiB", "1GiB" → bytes. 0 ok, -1 bad. */
int fx_parse_size(const char *s, size_t *out);

#endif

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

/* --- planned features ------------------------------------------------------ */

/*
 * The schema is whole: every key of the design is parsed and validated here,
 * also for features whose code is not in this build yet. Each such key belongs
 * to one feature; while the feature is not built, a present key is refused
 * ("'KEY' is not supported by this build yet") after its value was checked, so
 * an operator sees every mistake in one run and nothing is silently ignored.
 * The values are stored in the types below for the code that will use them;
 * a feature that gets built adds its bit to FX_FEATURES_BUILT in config.c.
 */
enum fx_feature {
    FX_FEAT_AUTH = 1u << 0,         /* auth (JWT at the edge) */
    FX_FEAT_POLICIES = 1u << 1,     /* policies, log.decisions */
    FX_FEAT_EVENTS = 1u << 2,       /* events, routes[].events */
    FX_FEAT_SPLIT = 1u << 3,        /* routes[].split, routes[].sticky */
    FX_FEAT_SHADOW = 1u << 4,       /* routes[].shadow */
    FX_FEAT_FALLBACK = 1u << 5,     /* routes[].fallback */
    FX_FEAT_RETRIES = 1u << 6,      /* routes[].retries, upstreams.X.retries */
    FX_FEAT_REWRITE = 1u << 7,      /* routes[].rewrite */
    FX_FEAT_HEALTH = 1u << 8,       /* upstreams.X.health */
    FX_FEAT_BREAKER = 1u << 9,      /* upstreams.X.max_pending, upstreams.X.max_connections */
    FX_FEAT_TLS_LISTEN = 1u << 10,  /* listen[].tls */
    FX_FEAT_TLS_UPSTREAM = 1u << 11, /* upstreams.X.tls */
    FX_FEAT_JWKS_URI = 1u << 12,    /* auth.issuers[].jwks_uri, jwks_refresh, jwks_min_refresh */
};
#define FX_FEAT_ALL ((1u << 13) - 1)

/* File paths below are stored resolved: a relative path in the YAML is taken
 * relative to the directory of the config file. Each file was checked to
 * exist when the snapshot was built. */

/* listen[].tls.certificates[]: a certificate picked by SNI. */
typedef struct fx_tls_cert_conf {
    char *cert, *key;
    char **server_names;          /* lower-cased; "*.example.com" covers one label */
    size_t nserver_names;
    char *ocsp_response;          /* DER OCSP response stapled for this certificate; NULL: none */
} fx_tls_cert_conf;

/* listen[].tls */
typedef struct fx_tls_server_conf {
    char *cert, *key;             /* the default certificate */
    int min_version;              /* 0x0303 (TLS1.2, default) or 0x0304 (TLS1.3) */
    char *ciphers;                /* OpenSSL cipher list for TLS 1.2; NULL: OpenSSL's default */
    char *ciphersuites;           /* TLS 1.3 suites, ':'-separated; NULL: OpenSSL's default */
    char **alpn;                  /* protocol ids offered; default none (no ALPN) */
    size_t nalpn;
    fx_tls_cert_conf *certs;      /* more certificates, selected by SNI */
    size_t ncerts;
    int session_tickets;          /* default 1: resumption by tickets (tls.h: rotated keys) */
    char *ocsp_response;          /* DER OCSP response stapled for `cert`; NULL: none */
    struct ssl_ctx_st *ctx;       /* built at load (tls.c); SNI contexts hang on it */
} fx_tls_server_conf;

/* upstreams.X.tls */
typedef struct fx_tls_client_conf {
    int verify;                   /* default 1: certificate and name are verified */
    char *ca;                     /* NULL: the system's trust store */
    char *server_name;            /* SNI and the name verified; NULL: the target's address */
    char *client_cert, *client_key; /* both or neither (mutual TLS) */
    struct ssl_ctx_st *ctx;       /* built at load (tls.c) */
} fx_tls_client_conf;

/* upstreams.X.health */
typedef struct fx_health_conf {
    char *path;                   /* GET PATH; 2xx is healthy */
    uint64_t interval_ms;         /* default 5 s */
    uint64_t timeout_ms;          /* default 1 s, at most interval */
    unsigned healthy;             /* consecutive passes to mark a target up; default 2 */
    unsigned unhealthy;           /* consecutive failures to mark it down; default 3 */
} fx_health_conf;

/* What a retry (or nothing) reacts to: FX_RETRY_* bits, and 5xx codes. */
enum { FX_RETRY_CONNECT = 1, FX_RETRY_RESET = 2, FX_RETRY_TIMEOUT = 4 };

/* routes[].retries, upstreams.X.retries */
typedef struct fx_retries_conf {
    unsigned attempts;            /* retries after the first try; default 1 */
    unsigned on;                  /* FX_RETRY_* bits; default connect + reset */
    uint64_t status[2];           /* bit (code - 500) of status[(code - 500) / 64]: retried 5xx codes */
} fx_retries_conf;

/* routes[].split[] */
typedef struct fx_split_conf {
    int upstream;                 /* index into fx_config.upstreams */
    unsigned weight;              /* 0 drains the side */
} fx_split_conf;

enum fx_sticky_kind { FX_STICKY_NONE = 0, FX_STICKY_TOKEN, FX_STICKY_HEADER, FX_STICKY_COOKIE, FX_STICKY_CLIENT_IP };

/* routes[].shadow.compare bits */
enum { FX_SHADOW_STATUS = 1, FX_SHADOW_HEADERS = 2, FX_SHADOW_BODY = 4 };

/* routes[].shadow */
typedef struct fx_shadow_conf {
    int upstream;                 /* index into fx_config.upstreams */
    unsigned percent;             /* 0-100; default 100 */
    unsigned compare;             /* FX_SHADOW_* bits; default status + body */
    char **ignore;                /* "$.json.path" or header names (lower-cased) */
    size_t nignore;
    uint64_t methods;             /* FX_METHOD_BIT mask; default GET, HEAD, OPTIONS */
} fx_shadow_conf;

enum fx_event_data { FX_EVENT_DATA_NONE = 0, FX_EVENT_DATA_REQUEST, FX_EVENT_DATA_RESPONSE };

/* routes[].events */
typedef struct fx_route_events_conf {
    char *topic;
    char *type;                   /* CloudEvents type */
    char *key;                    /* template: literal text, {param}, {token.CLAIM} */
    int data;                     /* enum fx_event_data; default response */
    uint64_t on;                  /* FX_METHOD_BIT mask; default POST, PUT, PATCH, DELETE */
} fx_route_events_conf;

enum fx_jwt_alg {
    FX_ALG_HS256 = 1, FX_ALG_HS384, FX_ALG_HS512,
    FX_ALG_RS256, FX_ALG_RS384, FX_ALG_RS512,
    FX_ALG_ES256, FX_ALG_ES384, FX_ALG_PS256,
};

/* auth.issuers[].keys[] */
typedef struct fx_jwt_key_conf {
    char *kid;                    /* NULL: no kid */
    int alg;                      /* enum fx_jwt_alg */
    char *pem_file;               /* RS/ES/PS: public key file */
    char *secret_env;             /* HS: name of the variable holding the secret (the secret itself
                                     is read when the key is loaded, never kept in the snapshot) */
} fx_jwt_key_conf;

/* auth.issuers[]: exactly one of jwks_file, jwks_uri, keys */
typedef struct fx_issuer_conf {
    char *issuer;
    char **audiences;
    size_t naudiences;
    char *jwks_file;
    char *jwks_uri;
    uint64_t jwks_refresh_ms;     /* jwks_uri: default 10 min */
    uint64_t jwks_min_refresh_ms; /* jwks_uri: refetch on unknown kid at most this often; default 30 s */
    fx_jwt_key_conf *keys;
    size_t nkeys;
    struct fx_jwt_keyset *keyset; /* jwks_file / keys: loaded with the config (authz/ficus_authz.h);
                                     jwks_uri: NULL, the fetcher owns those keys */
} fx_issuer_conf;

enum fx_token_source { FX_TOKEN_HEADER = 1, FX_TOKEN_COOKIE };

typedef struct fx_token_from_conf {
    int kind;                     /* enum fx_token_source */
    char *name;                   /* header (as written) or cookie name */
} fx_token_from_conf;

typedef struct fx_forward_conf {
    char *header;                 /* as written */
    char *claim;
} fx_forward_conf;

/* auth */
typedef struct fx_auth_conf {
    fx_issuer_conf *issuers;
    size_t nissuers;
    uint64_t clock_skew_ms;       /* default 30 s */
    fx_token_from_conf *token_from; /* default header:Authorization */
    size_t ntoken_from;
    fx_forward_conf *forward;
    size_t nforward;
    int forward_token;            /* default 1 */
    uint64_t fingerprint;         /* of issuers, audiences, skew and key material: a verified-token
                                     cache entry counts only under the same fingerprint */
} fx_auth_conf;

enum fx_policy_mode { FX_POLICY_ENFORCE = 0, FX_POLICY_AUDIT };

/* policies */
typedef struct fx_policies_conf {
    char **files;                 /* the globs expanded: sorted, each file once */
    size_t nfiles;
    int mode;                     /* enum fx_policy_mode */
    struct fx_policy_set *set;    /* the files compiled (authz/ficus_authz.h), with the config */
} fx_policies_conf;

enum fx_when_full { FX_SPOOL_REJECT = 0, FX_SPOOL_DROP };
enum fx_delivery { FX_DELIVERY_ASYNC = 0, FX_DELIVERY_SYNC };

typedef struct fx_kv {
    char *key, *value;
} fx_kv;

/* events */
typedef struct fx_events_conf {
    int embedded;                 /* brokers: embedded */
    char *brokers;                /* else "host:port,host:port" (spaces removed) */
    char *spool_dir;              /* default var/spool */
    size_t spool_max_bytes;       /* default 1 GiB */
    int when_full;                /* enum fx_when_full */
    int delivery;                 /* enum fx_delivery */
    char *dead_letter_topic;      /* NULL: quarantined in the spool */
    size_t max_data_bytes;        /* bound of a captured body; default 1 MiB */
    fx_kv *kafka;                 /* passed to librdkafka as is */
    size_t nkafka;
    size_t max_message_bytes;     /* the producer's message.max.bytes (kafka, else librdkafka's 1000000) */
} fx_events_conf;

/* --- the snapshot ---------------------------------------------------------- */

typedef struct fx_listen_conf {
    fx_addr addr;
    int line, col;
    fx_tls_server_conf *tls;      /* NULL: plain TCP */
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
    /* planned features; NULL / 0 when absent */
    fx_health_conf *health;
    fx_tls_client_conf *tls;
    fx_retries_conf *retries;     /* default for the routes to this upstream */
    unsigned max_pending;         /* breaker: requests waiting for a connection; each worker enforces
                                     ceil(limit / workers); 0 = no limit */
    unsigned max_connections;     /* breaker: open connections to the upstream; each worker enforces
                                     ceil(limit / workers); 0 = no limit */
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
    int upstream;                 /* index into fx_config.upstreams; with a split: its first side of
                                     weight > 0, so code without splits still has one upstream */
    int auth;                     /* enum fx_auth_mode */
    int authz;                    /* policies decide this route: auth is not none and the config
                                     has an auth or a policies section */
    int policy_route;             /* this route's index in the policy set (fx_authz_request) */
    struct fx_route_stats *stats; /* set by the server before the snapshot is published */
    int line, col;
    /* planned features; NULL / 0 / -1 when absent */
    fx_split_conf *split;
    size_t nsplit;
    int sticky;                   /* enum fx_sticky_kind */
    char *sticky_name;            /* claim, header or cookie name */
    fx_shadow_conf *shadow;
    int fallback;                 /* index into fx_config.upstreams, or -1 */
    fx_route_events_conf *events;
    char *strip_prefix;           /* rewrite.strip_prefix */
    char *add_prefix;             /* rewrite.prefix */
    fx_retries_conf *retries;
} fx_route_conf;

enum fx_log_sink { FX_LOG_OFF = 0, FX_LOG_STDOUT, FX_LOG_STDERR, FX_LOG_FILE };

typedef struct fx_log_conf {
    int access;                   /* enum fx_log_sink; default stdout */
    char *access_file;            /* FX_LOG_FILE */
    int level;                    /* 0 debug, 1 info (default), 2 warn, 3 error */
    int decisions;                /* enum fx_log_sink; default stdout */
    char *decisions_file;         /* FX_LOG_FILE */
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
    char *dir;                    /* directory relative paths were resolved against ("" = cwd) */
    /* planned sections; NULL when absent */
    fx_auth_conf *auth;
    fx_policies_conf *policies;
    fx_events_conf *events;
} fx_config;

/*
 * Loads and validates FILE. On success returns a snapshot with one
 * reference and leaves `diags` empty. On failure returns NULL and `diags`
 * holds every error found (never a partially built config).
 */
fx_config *fx_config_load(const char *file, fx_diags *diags);
/* Same, from memory (tests, fuzzing); `name` is used in positions. */
fx_config *fx_config_load_buffer(const char *name, const char *buf, size_t len, fx_diags *diags);
/*
 * Same, and the keys of the features in `allow` (FX_FEAT_* bits) are
 * accepted although this build does not have them: for tests and the fuzz
 * harness, which check what is stored for them. The daemon never does this.
 */
fx_config *fx_config_load_buffer_ex(const char *name, const char *buf, size_t len, unsigned allow,
                                    fx_diags *diags);

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

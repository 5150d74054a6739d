/*
 * config.c — the operator's YAML → a validated, immutable fx_config.
 *
 * A load runs in three steps, all inside fx_config_load_buffer():
 *
 *  1. read_tree(): libyaml's event parser builds a small tree of ynodes in
 *     an arena (scalars, lists, mappings, each with its 1-based position).
 *     This is where the input itself is refused: syntax and encoding errors
 *     (one positioned error taken from libyaml), aliases and anchors (no
 *     billion laughs), a second document, nesting deeper than MAX_DEPTH.
 *  2. build_*(): each section is walked with its path ("routes[3].match")
 *     and copied into the malloc'd fx_config. Every mapping goes through
 *     check_keys() first: duplicate keys and unknown keys (with a
 *     did-you-mean) are errors. Errors are collected and the walk goes on.
 *  3. cross checks: duplicate route names, routes that can never match,
 *     listen addresses used twice, references between sections.
 *
 * The schema is whole: the keys of features not built yet (TLS termination
 * and TLS to upstreams; enum fx_feature) are parsed and
 * checked like the others by the "planned" builders further down, stored in
 * their config.h types, and then refused by check_keys() with "'KEY' is not
 * supported by this build yet" unless the feature is in FX_FEATURES_BUILT
 * (or the caller allowed it: tests). Relative file paths are resolved
 * against the config file's directory; files the gateway will read must
 * exist now.
 *
 * Errors are gathered in the load's own list, sorted by position and only
 * then copied to the caller's fx_diags, so `ficus check` prints them in
 * file order. On any error the half-built config is freed: the caller gets
 * a complete snapshot or NULL, nothing in between.
 */
#include "config.h"

#include "ficus_authz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <yaml.h>

#include "arena.h"
#include "llhttp.h"
#include "tls.h"

#define MAX_FILE_BYTES ((size_t)4 << 20)
#define MAX_DEPTH 64       /* nesting of lists/mappings; the schema needs 7 */
#define MAX_SHOWN_ERRORS 1000
#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* --- diagnostics ----------------------------------------------------------- */

void fx_diags_add(fx_diags *d, const char *file, int line, int col, const char *fmt, ...)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        fx_diag *v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return;
        d->v = v;
        d->cap = cap;
    }
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    char *f = NULL;
    if (file && !(f = strdup(file))) {
        free(msg);
        return;
    }
    d->v[d->n++] = (fx_diag){f, line, col, msg};
}

void fx_diags_print(const fx_diags *d, void *stdio_file)
{
    FILE *out = stdio_file;
    for (size_t i = 0; i < d->n; i++) {
        const fx_diag *e = &d->v[i];
        const char *file = e->file ? e->file : "<config>";
        if (e->line > 0)
            fprintf(out, "%s:%d:%d: error: %s\n", file, e->line, e->col, e->message);
        else
            fprintf(out, "%s: error: %s\n", file, e->message);
    }
}

void fx_diags_free(fx_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].message);
    }
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

/* --- scalar grammars ------------------------------------------------------- */

static bool is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

/* Leading decimal digits of s into *v; returns the first non-digit, or NULL
 * on overflow or when there is no digit. */
static const char *parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;
    const char *p = s;
    for (; is_digit(*p); p++) {
        unsigned dig = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - dig) / 10)
            return NULL;
        n = n * 10 + dig;
    }
    if (p == s)
        return NULL;
    *v = n;
    return p;
}

enum { GRAMMAR_OK = 0, GRAMMAR_BAD, GRAMMAR_UNIT, GRAMMAR_NEGATIVE, GRAMMAR_OVERFLOW };

static int duration_ms(const char *s, uint64_t *out)
{
    uint64_t v, mul;
    if (!s)
        return GRAMMAR_BAD;
    if (s[0] == '-' && is_digit(s[1]))
        return GRAMMAR_NEGATIVE;
    if (!is_digit(s[0]))
        return GRAMMAR_BAD;
    const char *unit = parse_u64(s, &v);
    if (!unit)
        return GRAMMAR_OVERFLOW;
    if (!*unit)
        return GRAMMAR_UNIT;
    if (!strcmp(unit, "ms"))
        mul = 1;
    else if (!strcmp(unit, "s"))
        mul = 1000;
    else if (!strcmp(unit, "m"))
        mul = 60 * 1000;
    else if (!strcmp(unit, "h"))
        mul = 60 * 60 * 1000;
    else
        return GRAMMAR_BAD;
    if (v > UINT64_MAX / mul)
        return GRAMMAR_OVERFLOW;
    *out = v * mul;
    return GRAMMAR_OK;
}

static int size_bytes(const char *s, size_t *out)
{
    uint64_t v, mul;
    if (!s)
        return GRAMMAR_BAD;
    if (s[0] == '-' && is_digit(s[1]))
        return GRAMMAR_NEGATIVE;
    if (!is_digit(s[0]))
        return GRAMMAR_BAD;
    const char *unit = parse_u64(s, &v);
    if (!unit)
        return GRAMMAR_OVERFLOW;
    if (!*unit)
        mul = 1;
    else if (!strcmp(unit, "KiB"))
        mul = KIB;
    else if (!strcmp(unit, "MiB"))
        mul = MIB;
    else if (!strcmp(unit, "GiB"))
        mul = MIB * 1024;
    else
        return GRAMMAR_UNIT;
    if (v > UINT64_MAX / mul || v * mul > SIZE_MAX)
        return GRAMMAR_OVERFLOW;
    *out = (size_t)(v * mul);
    return GRAMMAR_OK;
}

int fx_parse_duration_ms(const char *s, uint64_t *out)
{
    return duration_ms(s, out) == GRAMMAR_OK ? 0 : -1;
}

int fx_parse_size(const char *s, size_t *out)
{
    return size_bytes(s, out) == GRAMMAR_OK ? 0 : -1;
}

/* --- addresses ------------------------------------------------------------- */

int fx_addr_parse(const char *text, fx_addr *out, const char **why)
{
    const char *ignored;
    const char *host, *port;
    size_t hlen;
    bool v6 = false;

    if (!why)
        why = &ignored;
    memset(out, 0, sizeof(*out));
    if (!text || !*text) {
        *why = "empty address";
        return -1;
    }
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb) {
            *why = "missing ']' after the IPv6 address";
            return -1;
        }
        if (rb[1] != ':') {
            *why = "expected ':PORT' after ']'";
            return -1;
        }
        host = text + 1;
        hlen = (size_t)(rb - host);
        port = rb + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon) {
            *why = "missing ':PORT'";
            return -1;
        }
        host = text;
        hlen = (size_t)(colon - text);
        if (memchr(host, ':', hlen)) {
            *why = "IPv6 addresses go in brackets, like [::1]:8080";
            return -1;
        }
        port = colon + 1;
    }
    if (hlen == 0) {
        *why = "missing host (0.0.0.0 or [::] listen on all interfaces)";
        return -1;
    }

    unsigned long pnum = 0;
    if (!*port) {
        *why = "missing port";
        return -1;
    }
    for (const char *p = port; *p; p++) {
        if (!is_digit(*p)) {
            *why = "the port is not a number";
            return -1;
        }
        pnum = pnum * 10 + (unsigned long)(*p - '0');
        if (pnum > 65535) {
            *why = "the port is out of range (0..65535)";
            return -1;
        }
    }

    char hbuf[INET6_ADDRSTRLEN];
    if (hlen >= sizeof(hbuf)) {
        *why = v6 ? "not a numeric IPv6 address"
                  : "not a numeric IPv4 address (names are not resolved; only localhost is known)";
        return -1;
    }
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';

    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->sa;
        if (inet_pton(AF_INET6, hbuf, &s6->sin6_addr) != 1) {
            *why = "not a numeric IPv6 address";
            return -1;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)pnum);
        out->salen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->sa;
        const char *h = strcasecmp(hbuf, "localhost") == 0 ? "127.0.0.1" : hbuf;
        if (inet_pton(AF_INET, h, &s4->sin_addr) != 1) {
            *why = "not a numeric IPv4 address (names are not resolved; only localhost is known)";
            return -1;
        }
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)pnum);
        out->salen = sizeof(*s4);
    }
    if (!(out->text = strdup(text))) {
        memset(out, 0, sizeof(*out));
        *why = "out of memory";
        return -1;
    }
    return 0;
}

static unsigned addr_port(const fx_addr *a)
{
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
}

static bool addr_same(const fx_addr *a, const fx_addr *b)
{
    return a->text && b->text && a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

/* --- freeing --------------------------------------------------------------- */

static void addr_free(fx_addr *a)
{
    free(a->text);
    a->text = NULL;
}

static void strv_free(char **v, size_t n);

static void tls_server_free(fx_tls_server_conf *t)
{
    if (!t)
        return;
    free(t->cert);
    free(t->key);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->ocsp_response);
    SSL_CTX_free(t->ctx);
    strv_free(t->alpn, t->nalpn);
    for (size_t i = 0; i < t->ncerts; i++) {
        free(t->certs[i].cert);
        free(t->certs[i].key);
        free(t->certs[i].ocsp_response);
        strv_free(t->certs[i].server_names, t->certs[i].nserver_names);
    }
    free(t->certs);
    free(t);
}

static void upstream_planned_free(fx_upstream_conf *u)
{
    if (u->health)
        free(u->health->path);
    free(u->health);
    if (u->tls) {
        free(u->tls->ca);
        free(u->tls->server_name);
        free(u->tls->client_cert);
        free(u->tls->client_key);
        SSL_CTX_free(u->tls->ctx);
    }
    free(u->tls);
    free(u->retries);
}

static void route_planned_free(fx_route_conf *r)
{
    free(r->split);
    free(r->sticky_name);
    if (r->shadow)
        strv_free(r->shadow->ignore, r->shadow->nignore);
    free(r->shadow);
    if (r->events) {
        free(r->events->topic);
        free(r->events->type);
        free(r->events->key);
    }
    free(r->events);
    free(r->strip_prefix);
    free(r->add_prefix);
    free(r->retries);
}

static void auth_free(fx_auth_conf *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nissuers; i++) {
        fx_issuer_conf *is = &a->issuers[i];
        free(is->issuer);
        strv_free(is->audiences, is->naudiences);
        free(is->jwks_file);
        free(is->jwks_uri);
        for (size_t j = 0; j < is->nkeys; j++) {
            free(is->keys[j].kid);
            free(is->keys[j].pem_file);
            free(is->keys[j].secret_env);
        }
        free(is->keys);
        fx_jwt_keyset_unref(is->keyset);
    }
    free(a->issuers);
    for (size_t i = 0; i < a->ntoken_from; i++)
        free(a->token_from[i].name);
    free(a->token_from);
    for (size_t i = 0; i < a->nforward; i++) {
        free(a->forward[i].header);
        free(a->forward[i].claim);
    }
    free(a->forward);
    free(a);
}

static void events_free(fx_events_conf *e)
{
    if (!e)
        return;
    free(e->brokers);
    free(e->spool_dir);
    free(e->dead_letter_topic);
    for (size_t i = 0; i < e->nkafka; i++) {
        free(e->kafka[i].key);
        free(e->kafka[i].value);
    }
    free(e->kafka);
    free(e);
}

/* Frees any config, complete or half built: every array is allocated at its
 * final length and zeroed before it is filled. */
static void config_free(fx_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    free(cfg->dir);
    for (size_t i = 0; i < cfg->nlistens; i++) {
        addr_free(&cfg->listens[i].addr);
        tls_server_free(cfg->listens[i].tls);
    }
    free(cfg->listens);
    addr_free(&cfg->admin);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        fx_upstream_conf *u = &cfg->upstreams[i];
        free(u->name);
        for (size_t j = 0; j < u->ntargets; j++)
            addr_free(&u->targets[j]);
        free(u->targets);
        upstream_planned_free(u);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        fx_route_conf *r = &cfg->routes[i];
        free(r->name);
        free(r->path);
        free(r->host);
        for (size_t j = 0; j < r->nsegs; j++)
            free(r->segs[j].text);
        free(r->segs);
        route_planned_free(r);
    }
    free(cfg->routes);
    free(cfg->log.access_file);
    free(cfg->log.decisions_file);
    auth_free(cfg->auth);
    if (cfg->policies) {
        strv_free(cfg->policies->files, cfg->policies->nfiles);
        fx_policy_set_unref(cfg->policies->set);
    }
    free(cfg->policies);
    events_free(cfg->events);
    free(cfg);
}

void fx_config_unref(fx_config *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

/* --- the YAML tree --------------------------------------------------------- */

enum { Y_SCALAR = 1, Y_SEQ, Y_MAP };

typedef struct ynode ynode;
struct ynode {
    int type;
    int line, col;      /* 1-based */
    bool plain;         /* scalar written without quotes (so "" / ~ / null are null) */
    const char *s;      /* Y_SCALAR: the value, NUL-terminated */
    size_t len;
    ynode **kids;       /* Y_SEQ: items; Y_MAP: key, value, key, value, ... */
    size_t n;           /* Y_SEQ: items; Y_MAP: pairs */
};

#define MAP_KEY(m, i) ((m)->kids[2 * (i)])
#define MAP_VAL(m, i) ((m)->kids[2 * (i) + 1])

typedef struct cerr {
    int line, col;
    size_t seq;         /* order of discovery: ties keep it */
    char *msg;
} cerr;

/* One load. Everything temporary lives in the arena; the config is malloc'd. */
typedef struct cx {
    const char *file;
    const char *buf;
    size_t len;
    fx_arena a;
    cerr *errs;
    size_t nerrs, caperrs;
    size_t errors;      /* counted even when an error could not be stored */
    bool oom;
    fx_config *cfg;
    bool upstreams_ok;  /* route → upstream names can be resolved */
    bool *route_ok;     /* per route: fully parsed, take part in cross checks */
    unsigned features;  /* FX_FEAT_* whose keys are accepted: built ones, plus the caller's */
    const char *dir;    /* relative paths start here ("" = the working directory) */
    bool has_events;    /* the top-level 'events' section is present */
    EVP_MD_CTX *auth_fp; /* fingerprint of the trust material, while auth is built */
} cx;

static void cx_verr(cx *c, int line, int col, const char *fmt, va_list ap)
{
    c->errors++;
    if (c->nerrs == c->caperrs) {
        size_t cap = c->caperrs ? c->caperrs * 2 : 16;
        cerr *v = realloc(c->errs, cap * sizeof(*v));
        if (!v)
            return;
        c->errs = v;
        c->caperrs = cap;
    }
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    c->errs[c->nerrs] = (cerr){line, col, c->nerrs, msg};
    c->nerrs++;
}

static void __attribute__((format(printf, 4, 5))) cx_err(cx *c, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cx_verr(c, line, col, fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 3, 4))) node_err(cx *c, const ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cx_verr(c, n ? n->line : 0, n ? n->col : 0, fmt, ap);
    va_end(ap);
}

static void cx_oom(cx *c)
{
    if (!c->oom)
        cx_err(c, 0, 0, "out of memory");
    c->oom = true;
}

static void *cx_alloc(cx *c, size_t n)
{
    void *p = fx_arena_alloc(&c->a, n ? n : 1);
    if (!p)
        cx_oom(c);
    return p;
}

static char *__attribute__((format(printf, 2, 3))) cx_printf(cx *c, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : cx_alloc(c, (size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s ? s : (char *)"?";
}

/* A config string for a message: at most `max` bytes, control bytes and
 * quotes escaped. */
static const char *show_n(cx *c, const char *s, size_t max)
{
    size_t n = strlen(s), lim = n > max ? max - 3 : n;
    char *out = cx_alloc(c, lim * 4 + 4);
    if (!out)
        return "?";
    char *o = out;
    for (size_t i = 0; i < lim; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\'') {
            sprintf(o, "\\x%02x", ch);
            o += 4;
        } else {
            *o++ = (char)ch;
        }
    }
    if (lim < n)
        o = stpcpy(o, "...");
    *o = '\0';
    return out;
}

static const char *show(cx *c, const char *s)
{
    return show_n(c, s, 60);
}

/* File paths are shown whole up to a longer limit: a cut path is no help. */
static const char *show_path(cx *c, const char *s)
{
    return show_n(c, s, 240);
}

static char *cx_strdup(cx *c, const char *s)
{
    char *d = strdup(s);
    if (!d)
        cx_oom(c);
    return d;
}

static void *cx_calloc(cx *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        cx_oom(c);
    return p;
}

/* Byte offset of a libyaml mark (0-based line, column in characters). */
static size_t mark_offset(const cx *c, size_t line, size_t col)
{
    size_t i = 0;
    while (line > 0 && i < c->len) {
        if (c->buf[i++] == '\n')
            line--;
    }
    while (col > 0 && i < c->len && c->buf[i] != '\n') {
        i++;
        while (i < c->len && ((unsigned char)c->buf[i] & 0xc0) == 0x80)
            i++;
        col--;
    }
    return i;
}

static void yaml_error(cx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) {
        cx_oom(c);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* the reader only knows the byte offset: turn it into line:col */
        int line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < c->len; i++) {
            unsigned char ch = (unsigned char)c->buf[i];
            if (ch == '\n') {
                line++;
                col = 1;
            } else if ((ch & 0xc0) != 0x80) {
                col++;
            }
        }
        const char *what = p->problem ? p->problem : "unreadable input";
        const char *kind = strstr(what, "UTF-8") ? "the file is not valid UTF-8" : "the file is not YAML text";
        if (p->problem_value >= 0) /* an octet, or a code point for "invalid Unicode character" */
            cx_err(c, line, col, "%s (%s: 0x%02X)", kind, what, (unsigned)p->problem_value);
        else
            cx_err(c, line, col, "%s (%s)", kind, what);
        return;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    size_t off = mark_offset(c, p->problem_mark.line, p->problem_mark.column);
    const char *hint =
        off < c->len && c->buf[off] == '\t' ? " (tabs are not allowed in YAML indentation; use spaces)" : "";
    if (p->context && (p->context_mark.line != p->problem_mark.line ||
                       p->context_mark.column != p->problem_mark.column))
        cx_err(c, line, col, "YAML syntax error: %s %s started at line %d, column %d%s", problem, p->context,
               (int)p->context_mark.line + 1, (int)p->context_mark.column + 1, hint);
    else if (p->context)
        cx_err(c, line, col, "YAML syntax error: %s %s%s", problem, p->context, hint);
    else
        cx_err(c, line, col, "YAML syntax error: %s%s", problem, hint);
}

typedef struct frame {
    ynode *node;
    ynode **v;
    size_t n, cap;
} frame;

static bool frame_push(cx *c, frame *f, ynode *kid)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        ynode **v = realloc(f->v, cap * sizeof(*v));
        if (!v) {
            cx_oom(c);
            return false;
        }
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = kid;
    return true;
}

static ynode *new_node(cx *c, int type, yaml_mark_t m)
{
    ynode *n = cx_alloc(c, sizeof(*n));
    if (n)
        *n = (ynode){.type = type, .line = (int)m.line + 1, .col = (int)m.column + 1};
    return n;
}

/* Builds the tree of the one document in the buffer. NULL: either an error
 * was recorded, or the stream holds no document (c->errors tells which). */
static ynode *read_tree(cx *c)
{
    yaml_parser_t p;
    frame st[MAX_DEPTH];
    int depth = 0, ndocs = 0;
    ynode *root = NULL;
    bool done = false, failed = false;

    if (!yaml_parser_initialize(&p)) {
        cx_oom(c);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)c->buf, c->len);
    /* no BOM sniffing: a UTF-16 file is refused as invalid UTF-8 */
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

    while (!done && !failed) {
        yaml_event_t ev;
        ynode *n = NULL;
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_error(c, &p);
            failed = true;
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        const yaml_char_t *anchor = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1) {
                cx_err(c, line, col, "only one YAML document is allowed in a config file");
                failed = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            cx_err(c, line, col, "aliases are not allowed in ficus config");
            failed = true;
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            if (!anchor && (n = new_node(c, Y_SCALAR, ev.start_mark))) {
                n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                n->len = ev.data.scalar.length;
                n->s = fx_arena_strndup(&c->a, (const char *)ev.data.scalar.value, n->len);
                if (!n->s) {
                    cx_oom(c);
                    failed = true;
                } else if (strlen(n->s) != n->len) {
                    cx_err(c, line, col, "strings must not contain NUL characters");
                }
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                          : ev.data.mapping_start.anchor;
            if (anchor)
                break;
            if (depth == MAX_DEPTH) {
                cx_err(c, line, col, "nesting is too deep (more than %d levels)", MAX_DEPTH);
                failed = true;
                break;
            }
            st[depth] = (frame){
                .node = new_node(c, ev.type == YAML_SEQUENCE_START_EVENT ? Y_SEQ : Y_MAP, ev.start_mark)};
            if (!st[depth].node) {
                failed = true;
                break;
            }
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            if (depth == 0)
                break; /* libyaml pairs starts and ends; never trust it blindly */
            frame *f = &st[--depth];
            n = f->node;
            n->kids = f->n ? fx_arena_memdup(&c->a, f->v, f->n * sizeof(*f->v)) : NULL;
            n->n = n->type == Y_MAP ? f->n / 2 : f->n;
            free(f->v);
            if (f->n && !n->kids) {
                cx_oom(c);
                failed = true;
            }
            break;
        }
        default:
            break;
        }
        if (anchor) {
            cx_err(c, line, col, "anchors and aliases are not allowed in ficus config (anchor '&%s')",
                   show(c, (const char *)anchor));
            failed = true;
        }
        if (n && !failed) {
            if (depth > 0)
                failed = !frame_push(c, &st[depth - 1], n);
            else
                root = n;
        }
        yaml_event_delete(&ev);
    }
    while (depth > 0)
        free(st[--depth].v);
    yaml_parser_delete(&p);
    return failed ? NULL : root;
}

/* --- paths, types, keys ---------------------------------------------------- */

static const char *pkey(cx *c, const char *base, const char *key)
{
    return *base ? cx_printf(c, "%s.%s", base, show(c, key)) : show(c, key);
}

static const char *pidx(cx *c, const char *base, size_t i)
{
    return cx_printf(c, "%s[%zu]", base, i);
}

static bool is_null(const ynode *n)
{
    return n->type == Y_SCALAR && n->plain &&
           (n->len == 0 || !strcmp(n->s, "~") || !strcmp(n->s, "null") || !strcmp(n->s, "Null") ||
            !strcmp(n->s, "NULL"));
}

static const char *kind_name(const ynode *n)
{
    if (is_null(n))
        return "an empty value";
    return n->type == Y_MAP ? "a mapping" : n->type == Y_SEQ ? "a list" : "a string";
}

static const char *type_name(int type)
{
    return type == Y_MAP ? "a mapping" : type == Y_SEQ ? "a list" : "a string";
}

/* Is n of the type wanted? Reports "PATH: expected X, got Y" if not. */
static bool want(cx *c, const ynode *n, int type, const char *path)
{
    if (n->type == type && !is_null(n))
        return true;
    if (*path)
        node_err(c, n, "%s: expected %s, got %s", path, type_name(type), kind_name(n));
    else
        node_err(c, n, "expected %s at the top level, got %s", type_name(type), kind_name(n));
    return false;
}

static bool key_is(const ynode *k, const char *name)
{
    return k->type == Y_SCALAR && k->len == strlen(name) && !memcmp(k->s, name, k->len);
}

/* The value of the first `name` key of map, or NULL. */
static const ynode *map_get(const ynode *map, const char *name)
{
    for (size_t i = 0; i < map->n; i++)
        if (key_is(MAP_KEY(map, i), name))
            return MAP_VAL(map, i);
    return NULL;
}

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest candidate within edit distance 2 (and not a total rewrite of a
 * short word), or one that shares all but at most the last letter of the
 * shorter one ("warning" → "warn", "enforcing" → "enforce"); NULL if none is
 * close. */
static const char *closest(const char *got, const char *const *cands, size_t ncands)
{
    const char *best = NULL;
    size_t bestd = 3, glen = strlen(got);
    for (size_t i = 0; i < ncands; i++) {
        if (!cands[i])
            continue;
        size_t clen = strlen(cands[i]), d = levenshtein(got, cands[i]);
        if (strcasecmp(got, cands[i]) == 0)
            d = 1;
        else if (d > 2 && glen >= 3 && clen >= 3) {
            size_t shorter = glen < clen ? glen : clen, common = 0;
            while (common < shorter && got[common] == cands[i][common])
                common++;
            if (common == shorter || (common >= 5 && common + 1 >= shorter))
                d = 2;
        }
        if (d < bestd && d < glen) {
            best = cands[i];
            bestd = d;
        }
    }
    return best;
}

/* closest() as " (did you mean 'x'?)", or "". */
static const char *suggest(cx *c, const char *got, const char *const *cands, size_t ncands)
{
    const char *best = closest(got, cands, ncands);
    return best ? cx_printf(c, " (did you mean '%s'?)", best) : "";
}

static size_t list_len(const char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

static int cmp_key_nodes(const void *pa, const void *pb)
{
    const ynode *a = *(const ynode *const *)pa, *b = *(const ynode *const *)pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->s, b->s, n);
    if (r)
        return r;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return (a->col > b->col) - (a->col < b->col);
}

/* A key of a feature this build may not have (see enum fx_feature). */
typedef struct planned_key {
    const char *name;
    unsigned feature;
} planned_key;

/*
 * Checks the keys of a mapping: each must be a string, used once, and one of
 * `known` (NULL: any name is fine, the caller checks it) or of `planned`. A
 * planned key whose feature is not built is refused with "not supported by
 * this build yet"; the caller still validates its value.
 */
static void check_keys(cx *c, const ynode *map, const char *path, const char *const *known,
                       const planned_key *planned)
{
    const ynode **keys = map->n ? malloc(map->n * sizeof(*keys)) : NULL;
    size_t nkeys = 0;
    if (map->n && !keys)
        cx_oom(c);

    for (size_t i = 0; i < map->n; i++) {
        const ynode *k = MAP_KEY(map, i);
        if (k->type != Y_SCALAR) {
            node_err(c, k, "%s%skeys must be strings, got %s", path, *path ? ": " : "", kind_name(k));
            continue;
        }
        if (keys)
            keys[nkeys++] = k;
        if (!known)
            continue;
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = key_is(k, known[j]);
        if (ok)
            continue;
        size_t np = 0;
        for (; planned && planned[np].name; np++) {
            if (!ok && key_is(k, planned[np].name)) {
                ok = true;
                if (!(c->features & planned[np].feature))
                    node_err(c, k, "%s: '%s' is not supported by this build yet", pkey(c, path, k->s), k->s);
            }
        }
        if (ok)
            continue;
        /* suggestions come from both lists: a typo of a planned key is still a typo */
        size_t nk = list_len(known);
        const char **all = cx_alloc(c, (nk + np + 1) * sizeof(*all));
        const char *hint = "";
        if (all) {
            memcpy(all, known, nk * sizeof(*all));
            for (size_t j = 0; j < np; j++)
                all[nk + j] = planned[j].name;
            hint = suggest(c, k->s, all, nk + np);
        }
        if (*path)
            node_err(c, k, "unknown key '%s' in %s%s", show(c, k->s), path, hint);
        else
            node_err(c, k, "unknown top-level key '%s'%s", show(c, k->s), hint);
    }

    /* duplicates: sort by (name, position) so each later copy follows its first */
    if (nkeys > 1) {
        qsort(keys, nkeys, sizeof(*keys), cmp_key_nodes);
        size_t first = 0;
        for (size_t i = 1; i < nkeys; i++) {
            if (keys[i]->len == keys[first]->len && !memcmp(keys[i]->s, keys[first]->s, keys[i]->len)) {
                if (*path)
                    node_err(c, keys[i], "%s: duplicate key '%s' (first at line %d)", path, show(c, keys[i]->s),
                             keys[first]->line);
                else
                    node_err(c, keys[i], "duplicate top-level key '%s' (first at line %d)", show(c, keys[i]->s),
                             keys[first]->line);
            } else {
                first = i;
            }
        }
    }
    free(keys);
}

static const ynode *require(cx *c, const ynode *map, const char *path, const char *key)
{
    const ynode *v = map_get(map, key);
    if (!v) {
        if (*path)
            node_err(c, map, "%s: missing required key '%s'", path, key);
        else
            node_err(c, map, "missing required key '%s'", key);
    }
    return v;
}

/* --- typed values ---------------------------------------------------------- */

static bool is_name_char(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_';
}

/* ${NAME} → getenv(NAME); "$${" writes a literal "${". */
static const char *expand_env(cx *c, const ynode *n, const char *path)
{
    const char *s = n->s;
    if (!strchr(s, '$'))
        return s;
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    if (!f) {
        cx_oom(c);
        return NULL;
    }
    bool ok = true;
    for (const char *p = s; *p && ok;) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            fputs("${", f);
            p += 3;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *name = p + 2, *e = name;
            while (is_name_char(*e))
                e++;
            if (e == name || is_digit(*name) || *e != '}') {
                node_err(c, n, "%s: bad environment reference in '%s' (write ${NAME}, or $${ for a literal '${')",
                         path, show(c, s));
                ok = false;
                break;
            }
            char *var = cx_printf(c, "%.*s", (int)(e - name), name);
            const char *val = getenv(var);
            if (!val) {
                node_err(c, n, "%s: environment variable '%s' is not set", path, var);
                ok = false;
                break;
            }
            fputs(val, f);
            p = e + 1;
        } else {
            fputc(*p++, f);
        }
    }
    if (fclose(f) != 0 || !out) {
        free(out);
        cx_oom(c);
        return NULL;
    }
    const char *r = ok ? fx_arena_strndup(&c->a, out, olen) : NULL;
    if (ok && !r)
        cx_oom(c);
    free(out);
    return r;
}

/* A scalar value (environment references expanded), or NULL after an error. */
static const char *get_str(cx *c, const ynode *n, const char *path)
{
    if (!want(c, n, Y_SCALAR, path))
        return NULL;
    return expand_env(c, n, path);
}

static bool get_uint(cx *c, const ynode *n, const char *path, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return false;
    uint64_t v;
    const char *end = parse_u64(s, &v);
    if (!end || *end || v < min || v > max) {
        node_err(c, n, "%s: expected an integer from %llu to %llu, got '%s'", path, (unsigned long long)min,
                 (unsigned long long)max, show(c, s));
        return false;
    }
    *out = v;
    return true;
}

static bool get_duration(cx *c, const ynode *n, const char *path, uint64_t min_ms, uint64_t *out)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return false;
    uint64_t v = 0;
    switch (duration_ms(s, &v)) {
    case GRAMMAR_OK:
        break;
    case GRAMMAR_UNIT:
        node_err(c, n, "%s: duration '%s' needs a unit: ms, s, m or h (like %ss)", path, show(c, s), show(c, s));
        return false;
    case GRAMMAR_NEGATIVE:
        node_err(c, n, "%s: duration '%s' is negative", path, show(c, s));
        return false;
    case GRAMMAR_OVERFLOW:
        node_err(c, n, "%s: duration '%s' is too large", path, show(c, s));
        return false;
    default:
        node_err(c, n, "%s: bad duration '%s' (expected an integer and a unit: 250ms, 10s, 5m, 1h)", path,
                 show(c, s));
        return false;
    }
    if (v < min_ms) {
        node_err(c, n, "%s: duration must be at least %llums, got '%s'", path, (unsigned long long)min_ms,
                 show(c, s));
        return false;
    }
    *out = v;
    return true;
}

static const char *size_text(cx *c, size_t v)
{
    if (v && v % MIB == 0)
        return cx_printf(c, "%zuMiB", v / MIB);
    if (v && v % KIB == 0)
        return cx_printf(c, "%zuKiB", v / KIB);
    return cx_printf(c, "%zu", v);
}

static bool get_size(cx *c, const ynode *n, const char *path, size_t min, size_t max, size_t *out)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return false;
    size_t v = 0;
    switch (size_bytes(s, &v)) {
    case GRAMMAR_OK:
        break;
    case GRAMMAR_UNIT:
        node_err(c, n, "%s: bad size '%s' (units are KiB, MiB and GiB, like 512KiB)", path, show(c, s));
        return false;
    case GRAMMAR_NEGATIVE:
        node_err(c, n, "%s: size '%s' is negative", path, show(c, s));
        return false;
    case GRAMMAR_OVERFLOW:
        node_err(c, n, "%s: size '%s' is too large", path, show(c, s));
        return false;
    default:
        node_err(c, n, "%s: bad size '%s' (expected bytes, or an integer and a unit: 512KiB, 10MiB, 1GiB)",
                 path, show(c, s));
        return false;
    }
    if (v < min || v > max) {
        if (max == SIZE_MAX)
            node_err(c, n, "%s: must be at least %s, got '%s'", path, size_text(c, min), show(c, s));
        else
            node_err(c, n, "%s: must be between %s and %s, got '%s'", path, size_text(c, min), size_text(c, max),
                     show(c, s));
        return false;
    }
    *out = v;
    return true;
}

static bool get_addr(cx *c, const ynode *n, const char *path, bool port0_ok, fx_addr *out)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return false;
    const char *why = NULL;
    if (fx_addr_parse(s, out, &why) < 0) {
        node_err(c, n, "%s: invalid address '%s': %s", path, show(c, s), why);
        return false;
    }
    if (!port0_ok && addr_port(out) == 0) {
        node_err(c, n, "%s: invalid address '%s': the port must be from 1 to 65535", path, show(c, s));
        addr_free(out);
        return false;
    }
    return true;
}

/* One of `words` (exact); its index, or -1 after an error with a suggestion. */
static int get_word(cx *c, const ynode *n, const char *path, const char *const *words, size_t nwords)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return -1;
    for (size_t i = 0; i < nwords; i++)
        if (!strcmp(s, words[i]))
            return (int)i;
    const char *list = "";
    for (size_t i = 0; i < nwords; i++)
        list = cx_printf(c, "%s%s%s", list, i == 0 ? "" : i + 1 == nwords ? " or " : ", ", words[i]);
    node_err(c, n, "%s: expected %s, got '%s'%s", path, list, show(c, s), suggest(c, s, words, nwords));
    return -1;
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_name_char(*s) && *s != '.' && *s != '-')
            return false;
    return true;
}

/* --- sections -------------------------------------------------------------- */

static const char *const top_keys[] = {"listen", "admin", "workers", "limits", "upstreams", "routes", "log", NULL};
static const planned_key top_planned[] = {
    {"auth", FX_FEAT_AUTH}, {"policies", FX_FEAT_POLICIES}, {"events", FX_FEAT_EVENTS}, {NULL, 0}};
static const char *const listen_keys[] = {"address", NULL};
static const planned_key listen_planned[] = {{"tls", FX_FEAT_TLS_LISTEN}, {NULL, 0}};
static const char *const admin_keys[] = {"address", NULL};
static const char *const limits_keys[] = {"max_header_bytes", "max_body_bytes", "max_uri_bytes", "header_timeout",
                                          "idle_timeout",     "drain_timeout",  "max_connections", NULL};
static const char *const upstream_keys[] = {"targets", "keepalive", "connect_timeout", "timeout", NULL};
static const planned_key upstream_planned[] = {
    {"health", FX_FEAT_HEALTH},           {"tls", FX_FEAT_TLS_UPSTREAM},        {"retries", FX_FEAT_RETRIES},
    {"max_pending", FX_FEAT_BREAKER},     {"max_connections", FX_FEAT_BREAKER}, {NULL, 0}};
static const char *const route_keys[] = {"name", "match", "upstream", "auth", NULL};
static const planned_key route_planned[] = {
    {"split", FX_FEAT_SPLIT},       {"sticky", FX_FEAT_SPLIT},   {"shadow", FX_FEAT_SHADOW},
    {"fallback", FX_FEAT_FALLBACK}, {"events", FX_FEAT_EVENTS},  {"rewrite", FX_FEAT_REWRITE},
    {"retries", FX_FEAT_RETRIES},   {NULL, 0}};
static const char *const match_keys[] = {"path", "prefix", "methods", "host", NULL};
static const char *const log_keys[] = {"access", "level", NULL};
static const planned_key log_planned[] = {{"decisions", FX_FEAT_POLICIES}, {NULL, 0}};

/* Features whose code is in this build (FX_FEAT_* bits): their keys are
 * accepted. A stage that builds one adds its bit here. */
#define FX_FEATURES_BUILT                                                                                    \
    (FX_FEAT_AUTH | FX_FEAT_JWKS_URI | FX_FEAT_POLICIES | FX_FEAT_EVENTS | FX_FEAT_SPLIT | FX_FEAT_REWRITE \
     | FX_FEAT_SHADOW | FX_FEAT_FALLBACK | FX_FEAT_RETRIES | FX_FEAT_HEALTH | FX_FEAT_BREAKER              \
     | FX_FEAT_TLS_LISTEN | FX_FEAT_TLS_UPSTREAM)

/* Defined with the planned keys, further down. */
static void build_listen_tls(cx *c, const ynode *n, const char *path, fx_listen_conf *l);
static void build_health(cx *c, const ynode *n, const char *path, fx_upstream_conf *u);
static fx_retries_conf *build_retries(cx *c, const ynode *n, const char *path);
static void build_upstream_tls(cx *c, const ynode *n, const char *path, fx_upstream_conf *u);

static void build_listen(cx *c, const ynode *n)
{
    const char *path = "listen";
    if (!want(c, n, Y_SEQ, path))
        return;
    if (n->n == 0) {
        node_err(c, n, "%s: must list at least one address", path);
        return;
    }
    fx_config *cfg = c->cfg;
    if (!(cfg->listens = cx_calloc(c, n->n, sizeof(*cfg->listens))))
        return;
    cfg->nlistens = n->n;
    for (size_t i = 0; i < n->n; i++) {
        const ynode *item = n->kids[i];
        const char *ipath = pidx(c, path, i);
        fx_listen_conf *l = &cfg->listens[i];
        l->line = item->line;
        l->col = item->col;
        if (!want(c, item, Y_MAP, ipath))
            continue;
        check_keys(c, item, ipath, listen_keys, listen_planned);
        const ynode *a = require(c, item, ipath, "address");
        if (a)
            get_addr(c, a, pkey(c, ipath, "address"), true, &l->addr);
        if ((a = map_get(item, "tls")))
            build_listen_tls(c, a, pkey(c, ipath, "tls"), l);
    }
}

static void build_admin(cx *c, const ynode *n)
{
    const char *path = "admin";
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, admin_keys, NULL);
    const ynode *a = require(c, n, path, "address");
    if (a && get_addr(c, a, "admin.address", true, &c->cfg->admin))
        c->cfg->has_admin = 1;
}

static void build_workers(cx *c, const ynode *n)
{
    if (n->type != Y_SCALAR || is_null(n)) {
        node_err(c, n, "workers: expected 'auto' or an integer from 1 to 256, got %s", kind_name(n));
        return;
    }
    const char *s = expand_env(c, n, "workers");
    if (!s || !strcmp(s, "auto"))
        return; /* auto is resolved once the load succeeds */
    uint64_t v;
    const char *end = parse_u64(s, &v);
    if (end && !*end && v >= 1 && v <= 256)
        c->cfg->workers = (unsigned)v;
    else
        node_err(c, n, "workers: expected 'auto' or an integer from 1 to 256, got '%s'", show(c, s));
}

static void build_limits(cx *c, const ynode *n)
{
    const char *path = "limits";
    fx_limits_conf *l = &c->cfg->limits;
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, limits_keys, NULL);
    const ynode *v;
    uint64_t u;
    if ((v = map_get(n, "max_header_bytes")))
        get_size(c, v, "limits.max_header_bytes", KIB, MIB, &l->max_header_bytes);
    if ((v = map_get(n, "max_body_bytes")))
        get_size(c, v, "limits.max_body_bytes", 0, SIZE_MAX, &l->max_body_bytes);
    if ((v = map_get(n, "max_uri_bytes")))
        get_size(c, v, "limits.max_uri_bytes", 1, MIB, &l->max_uri_bytes);
    if ((v = map_get(n, "header_timeout")))
        get_duration(c, v, "limits.header_timeout", 1, &l->header_timeout_ms);
    if ((v = map_get(n, "idle_timeout")))
        get_duration(c, v, "limits.idle_timeout", 1, &l->idle_timeout_ms);
    if ((v = map_get(n, "drain_timeout")))
        get_duration(c, v, "limits.drain_timeout", 0, &l->drain_timeout_ms);
    if ((v = map_get(n, "max_connections")) && get_uint(c, v, "limits.max_connections", 1, 10000000, &u))
        l->max_connections = (unsigned)u;
}

static void build_upstream(cx *c, const ynode *n, const char *path, fx_upstream_conf *u)
{
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, upstream_keys, upstream_planned);
    const ynode *v;
    uint64_t x;
    if ((v = require(c, n, path, "targets"))) {
        const char *tpath = pkey(c, path, "targets");
        if (!want(c, v, Y_SEQ, tpath)) {
            /* reported */
        } else if (v->n == 0) {
            node_err(c, v, "%s: must list at least one address", tpath);
        } else if ((u->targets = cx_calloc(c, v->n, sizeof(*u->targets)))) {
            u->ntargets = v->n;
            for (size_t i = 0; i < v->n; i++)
                get_addr(c, v->kids[i], pidx(c, tpath, i), false, &u->targets[i]);
        }
    }
    if ((v = map_get(n, "keepalive")) && get_uint(c, v, pkey(c, path, "keepalive"), 0, 100000, &x))
        u->keepalive = (unsigned)x;
    if ((v = map_get(n, "connect_timeout")))
        get_duration(c, v, pkey(c, path, "connect_timeout"), 1, &u->connect_timeout_ms);
    if ((v = map_get(n, "timeout")))
        get_duration(c, v, pkey(c, path, "timeout"), 1, &u->timeout_ms);
    if ((v = map_get(n, "health")))
        build_health(c, v, pkey(c, path, "health"), u);
    if ((v = map_get(n, "tls")))
        build_upstream_tls(c, v, pkey(c, path, "tls"), u);
    if ((v = map_get(n, "retries")))
        u->retries = build_retries(c, v, pkey(c, path, "retries"));
    if ((v = map_get(n, "max_pending")) && get_uint(c, v, pkey(c, path, "max_pending"), 1, 10000000, &x))
        u->max_pending = (unsigned)x;
    if ((v = map_get(n, "max_connections")) && get_uint(c, v, pkey(c, path, "max_connections"), 1, 10000000, &x))
        u->max_connections = (unsigned)x;
}

static void build_upstreams(cx *c, const ynode *n)
{
    const char *path = "upstreams";
    if (!want(c, n, Y_MAP, path))
        return;
    if (n->n == 0) {
        node_err(c, n, "%s: must define at least one upstream", path);
        return;
    }
    check_keys(c, n, path, NULL, NULL);
    fx_config *cfg = c->cfg;
    if (!(cfg->upstreams = cx_calloc(c, n->n, sizeof(*cfg->upstreams))))
        return;
    cfg->nupstreams = n->n;
    for (size_t i = 0; i < n->n; i++) {
        const ynode *k = MAP_KEY(n, i);
        fx_upstream_conf *u = &cfg->upstreams[i];
        u->keepalive = 64;
        u->connect_timeout_ms = 2000;
        u->timeout_ms = 30000;
        u->line = k->line;
        u->col = k->col;
        if (k->type != Y_SCALAR)
            continue; /* reported by check_keys */
        if (!valid_name(k->s))
            node_err(c, k, "upstreams: invalid upstream name '%s' (use letters, digits, '_', '.' and '-')",
                     show(c, k->s));
        if (!(u->name = cx_strdup(c, k->s)))
            continue;
        build_upstream(c, MAP_VAL(n, i), pkey(c, path, k->s), u);
    }
    c->upstreams_ok = true;
}

static const struct {
    const char *name;
    int method;
} methods[] = {
    {"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},   {"POST", HTTP_POST},
    {"PUT", HTTP_PUT},         {"PATCH", HTTP_PATCH}, {"DELETE", HTTP_DELETE},
    {"OPTIONS", HTTP_OPTIONS}, {"TRACE", HTTP_TRACE}, {"CONNECT", HTTP_CONNECT},
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/* "GET, HEAD" for a method mask. */
static const char *methods_text(cx *c, uint64_t mask)
{
    const char *out = "";
    for (size_t i = 0; i < NMETHODS; i++)
        if (mask & FX_METHOD_BIT(methods[i].method))
            out = cx_printf(c, "%s%s%s", out, *out ? ", " : "", methods[i].name);
    return out;
}

static bool build_methods(cx *c, const ynode *n, const char *path, uint64_t *out)
{
    if (!want(c, n, Y_SEQ, path))
        return false;
    if (n->n == 0) {
        node_err(c, n, "%s: must not be empty (leave 'methods' out to match any method)", path);
        return false;
    }
    const char *names[NMETHODS];
    for (size_t i = 0; i < NMETHODS; i++)
        names[i] = methods[i].name;
    bool ok = true;
    uint64_t mask = 0;
    for (size_t i = 0; i < n->n; i++) {
        const char *ipath = pidx(c, path, i);
        const char *s = get_str(c, n->kids[i], ipath);
        if (!s) {
            ok = false;
            continue;
        }
        size_t j = 0;
        while (j < NMETHODS && strcmp(s, methods[j].name))
            j++;
        if (j == NMETHODS) {
            node_err(c, n->kids[i], "%s: unknown method '%s'%s", ipath, show(c, s), suggest(c, s, names, NMETHODS));
            ok = false;
        } else if (mask & FX_METHOD_BIT(methods[j].method)) {
            node_err(c, n->kids[i], "%s: method '%s' is listed twice", ipath, s);
            ok = false;
        } else {
            mask |= FX_METHOD_BIT(methods[j].method);
        }
    }
    *out = mask;
    return ok;
}

static bool build_host(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    const char *s = get_str(c, n, path);
    if (!s)
        return false;
    size_t len = strlen(s);
    bool ok = len > 0 && len <= 253;
    if (ok && s[0] == '[') {
        /* an IPv6 literal, as it appears in a Host header */
        struct in6_addr a6;
        char buf[INET6_ADDRSTRLEN];
        ok = s[len - 1] == ']' && len - 2 < sizeof(buf);
        if (ok) {
            memcpy(buf, s + 1, len - 2);
            buf[len - 2] = '\0';
            ok = inet_pton(AF_INET6, buf, &a6) == 1;
        }
    } else if (ok && strchr(s, ':')) {
        node_err(c, n, "%s: host '%s' must not include a port", path, show(c, s));
        return false;
    } else {
        for (const char *p = s; ok && *p; p++)
            ok = is_name_char(*p) || *p == '.' || *p == '-';
    }
    if (!ok) {
        node_err(c, n, "%s: invalid host '%s' (expected a host name like api.example.com)", path, show(c, s));
        return false;
    }
    if (!(r->host = cx_strdup(c, s)))
        return false;
    for (char *p = r->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return true;
}

/* Characters a path pattern may hold: printable ASCII, minus what would end
 * the path in a request target. Braces are checked by the caller. */
static bool path_chars_ok(cx *c, const ynode *n, const char *path, const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f) {
            node_err(c, n,
                     "%s: '%s' contains a space, control or non-ASCII byte (write it percent-encoded, as it "
                     "appears in a request)",
                     path, show(c, s));
            return false;
        }
        if (ch == '?' || ch == '#') {
            node_err(c, n, "%s: '%s' contains '%c' (only the path is matched, not the query)", path, show(c, s), ch);
            return false;
        }
    }
    return true;
}

/* Splits a template at '/' (the leading '/' is not a segment) into literal
 * segments and {param} segments. */
static bool split_template(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    const char *tpl = r->path;
    size_t nsegs = 0;
    for (const char *p = tpl; *p; p++)
        nsegs += *p == '/';
    if (!(r->segs = cx_calloc(c, nsegs, sizeof(*r->segs))))
        return false;
    r->nsegs = nsegs;

    bool ok = true;
    const char *p = tpl + 1;
    for (size_t i = 0; i < nsegs; i++) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        fx_path_seg *seg = &r->segs[i];
        const char *open = memchr(p, '{', len), *close = memchr(p, '}', len);
        if (open || close) {
            const char *name = p + 1;
            size_t nlen = len >= 2 ? len - 2 : 0;
            bool whole = len >= 2 && p[0] == '{' && p[len - 1] == '}' && !memchr(name, '{', nlen) &&
                         !memchr(name, '}', nlen);
            bool name_ok = whole && nlen > 0 && !is_digit(name[0]);
            for (size_t j = 0; name_ok && j < nlen; j++)
                name_ok = is_name_char(name[j]);
            if (!whole) {
                node_err(c, n, "%s: a parameter must be a whole path segment, like /{id}/, in '%s'", path,
                         show(c, tpl));
                ok = false;
                break;
            }
            if (!name_ok) {
                node_err(c, n, "%s: bad parameter name '{%s}' in '%s' (letters, digits and '_', not starting with "
                               "a digit)",
                         path, show(c, cx_printf(c, "%.*s", (int)nlen, name)), show(c, tpl));
                ok = false;
                break;
            }
            for (size_t j = 0; j < i; j++) {
                if (r->segs[j].is_param && r->segs[j].len == nlen && !memcmp(r->segs[j].text, name, nlen)) {
                    node_err(c, n, "%s: parameter '{%.*s}' appears twice in '%s'", path, (int)nlen, name,
                             show(c, tpl));
                    ok = false;
                }
            }
            size_t nparams = 1;
            for (size_t j = 0; j < i; j++)
                nparams += r->segs[j].is_param;
            if (nparams == FX_ROUTE_MAX_PARAMS + 1) {
                node_err(c, n, "%s: more than %d parameters in '%s'", path, FX_ROUTE_MAX_PARAMS,
                         show(c, tpl));
                ok = false;
            }
            seg->is_param = 1;
            seg->len = nlen;
            seg->text = strndup(name, nlen);
        } else {
            seg->len = len;
            seg->text = strndup(p, len);
        }
        if (!seg->text) {
            cx_oom(c);
            return false;
        }
        p += len + 1;
    }
    return ok;
}

static bool build_match(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    if (!want(c, n, Y_MAP, path))
        return false;
    check_keys(c, n, path, match_keys, NULL);
    bool ok = true;
    const ynode *pth = map_get(n, "path"), *pfx = map_get(n, "prefix"), *v;
    if (pth && pfx) {
        node_err(c, n, "%s: use either 'path' or 'prefix', not both", path);
        ok = false;
    } else if (!pth && !pfx) {
        node_err(c, n, "%s: needs 'path' or 'prefix'", path);
        ok = false;
    } else {
        const ynode *pn = pth ? pth : pfx;
        const char *ppath = pkey(c, path, pth ? "path" : "prefix");
        const char *s = get_str(c, pn, ppath);
        if (!s) {
            ok = false;
        } else if (s[0] != '/') {
            node_err(c, pn, "%s: '%s' must start with '/'", ppath, show(c, s));
            ok = false;
        } else if (!path_chars_ok(c, pn, ppath, s)) {
            ok = false;
        } else if (pfx && strpbrk(s, "{}")) {
            node_err(c, pn, "%s: a prefix cannot have parameters; use 'path' for '%s'", ppath, show(c, s));
            ok = false;
        } else if (!(r->path = cx_strdup(c, s))) {
            ok = false;
        } else {
            r->path_len = strlen(s);
            if (pfx)
                r->kind = FX_MATCH_PREFIX;
            else if (!strpbrk(s, "{}"))
                r->kind = FX_MATCH_EXACT;
            else {
                r->kind = FX_MATCH_TEMPLATE;
                ok = split_template(c, pn, ppath, r);
            }
        }
    }
    if ((v = map_get(n, "methods")))
        ok &= build_methods(c, v, pkey(c, path, "methods"), &r->methods);
    if ((v = map_get(n, "host")))
        ok &= build_host(c, v, pkey(c, path, "host"), r);
    return ok;
}

/* HTTP token characters (RFC 9110): header and cookie names. */
static bool is_tchar(int ch)
{
    return is_name_char(ch) || (ch && strchr("!#$%&'*+-.^`|~", ch));
}

static bool token_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

/* A claim name: printable ASCII without spaces or braces ("sub", "https://ns/roles"). */
static bool claim_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '{' || *s == '}')
            return false;
    return true;
}

/* A DNS name (letters, digits, '-', '_', dots between labels); with
 * `wildcard`, "*." may start it. */
static bool host_name_ok(const char *s, bool wildcard)
{
    if (wildcard && s[0] == '*' && s[1] == '.')
        s += 2;
    size_t len = strlen(s);
    if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.' || strstr(s, ".."))
        return false;
    for (; *s; s++)
        if (!is_name_char(*s) && *s != '.' && *s != '-')
            return false;
    return true;
}

/* A Kafka topic name. */
static bool topic_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 249 || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (; *s; s++)
        if (!is_name_char(*s) && *s != '.' && *s != '-')
            return false;
    return true;
}

static void to_lower(char *s)
{
    for (; s && *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* The key node of `name` in map, or NULL. */
static const ynode *map_key(const ynode *map, const char *name)
{
    for (size_t i = 0; i < map->n; i++)
        if (key_is(MAP_KEY(map, i), name))
            return MAP_KEY(map, i);
    return NULL;
}

static bool get_bool(cx *c, const ynode *n, const char *path, int *out)
{
    static const char *const words[] = {"true", "false"};
    int w = get_word(c, n, path, words, 2);
    if (w < 0)
        return false;
    *out = w == 0;
    return true;
}

/* A scalar that must not be empty. */
static const char *get_nonempty(cx *c, const ynode *n, const char *path)
{
    const char *s = get_str(c, n, path);
    if (s && !*s) {
        node_err(c, n, "%s: must not be empty", path);
        return NULL;
    }
    return s;
}

/*
 * The items of a non-empty list of non-empty scalars, as an arena array with
 * one entry per item (NULL where the item was reported). Items equal to an
 * earlier one (ignoring case with `nocase`) are reported and set to NULL.
 * Returns the list length, or -1 when the list itself was reported.
 */
static long get_list(cx *c, const ynode *n, const char *path, bool nocase, const char ***out)
{
    if (!want(c, n, Y_SEQ, path))
        return -1;
    if (n->n == 0) {
        node_err(c, n, "%s: must not be empty", path);
        return -1;
    }
    const char **v = cx_alloc(c, n->n * sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < n->n; i++) {
        const char *ipath = pidx(c, path, i);
        v[i] = get_nonempty(c, n->kids[i], ipath);
        for (size_t j = 0; v[i] && j < i; j++) {
            if (v[j] && (nocase ? !strcasecmp(v[i], v[j]) : !strcmp(v[i], v[j]))) {
                node_err(c, n->kids[i], "%s: '%s' is listed twice (first at %s[%zu])", ipath, show(c, v[i]), path,
                         j);
                v[i] = NULL;
            }
        }
    }
    *out = v;
    return (long)n->n;
}

/* A malloc'd array of n strings, all NULL. */
static char **strv_new(cx *c, size_t n)
{
    return cx_calloc(c, n, sizeof(char *));
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}


/* --- files ------------------------------------------------------------------ */

/* A path from the config, resolved against the config file's directory; malloc'd. */
static char *resolve_path(cx *c, const char *s)
{
    if (s[0] == '/' || !*c->dir)
        return cx_strdup(c, s);
    size_t dl = strlen(c->dir);
    char *r;
    if (asprintf(&r, "%s%s%s", c->dir, c->dir[dl - 1] == '/' ? "" : "/", s) < 0) {
        cx_oom(c);
        return NULL;
    }
    return r;
}

/* " (looked for 'DIR/X': ...)" when resolving changed the path, else "". */
static const char *looked_for(cx *c, const char *as_written, const char *full)
{
    if (!strcmp(as_written, full))
        return "";
    return cx_printf(c, " (looked for '%s': relative paths start at the config file's directory)",
                     show_path(c, full));
}

/* A file that must exist and be readable now; *out gets its resolved path. */
static bool get_file(cx *c, const ynode *n, const char *path, char **out)
{
    const char *s = get_nonempty(c, n, path);
    if (!s)
        return false;
    char *full = resolve_path(c, s);
    if (!full)
        return false;
    struct stat st;
    if (stat(full, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            node_err(c, n, "%s: file '%s' does not exist%s", path, show_path(c, s), looked_for(c, s, full));
        else
            node_err(c, n, "%s: cannot use '%s': %s%s", path, show_path(c, s), strerror(errno),
                     looked_for(c, s, full));
    } else if (S_ISDIR(st.st_mode)) {
        node_err(c, n, "%s: '%s' is a directory, not a file%s", path, show_path(c, s), looked_for(c, s, full));
    } else if (access(full, R_OK) != 0) {
        node_err(c, n, "%s: cannot read '%s': %s%s", path, show_path(c, s), strerror(errno),
                 looked_for(c, s, full));
    } else {
        *out = full;
        return true;
    }
    free(full);
    return false;
}

/* --- upstream references ---------------------------------------------------- */

/* An upstream's index by name; -1 after an error (said nothing when the
 * upstreams section itself is broken). */
static int upstream_index(cx *c, const ynode *n, const char *path)
{
    const char *s = get_str(c, n, path);
    if (!s || !c->upstreams_ok)
        return -1;
    const fx_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].name && !strcmp(cfg->upstreams[i].name, s))
            return (int)i;
    const char **names = cx_alloc(c, (cfg->nupstreams + 1) * sizeof(*names));
    const char *hint = "";
    if (names) {
        for (size_t i = 0; i < cfg->nupstreams; i++)
            names[i] = cfg->upstreams[i].name;
        hint = suggest(c, s, names, cfg->nupstreams);
    }
    node_err(c, n, "%s: unknown upstream '%s'%s", path, show(c, s), hint);
    return -1;
}

/* --- planned: upstreams ---------------------------------------------------------
 * Everything from here to the sections parses keys of features that may not
 * be built (enum fx_feature); check_keys() refuses them when they are not. */

static const char *const health_keys[] = {"path", "interval", "timeout", "healthy", "unhealthy", NULL};
static const char *const retries_keys[] = {"attempts", "on", NULL};
static const char *const utls_keys[] = {"verify", "ca", "server_name", "client_cert", "client_key", NULL};

static void build_health(cx *c, const ynode *n, const char *path, fx_upstream_conf *u)
{
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, health_keys, NULL);
    fx_health_conf *h = u->health = cx_calloc(c, 1, sizeof(*h));
    if (!h)
        return;
    *h = (fx_health_conf){.interval_ms = 5000, .timeout_ms = 1000, .healthy = 2, .unhealthy = 3};
    const ynode *v, *tv = map_get(n, "timeout"), *iv = map_get(n, "interval");
    uint64_t x;
    if ((v = require(c, n, path, "path"))) {
        const char *ppath = pkey(c, path, "path");
        const char *s = get_str(c, v, ppath);
        bool ok = s && s[0] == '/';
        for (const char *p = s; ok && *p; p++)
            ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '#';
        if (s && !ok)
            node_err(c, v, "%s: expected a path starting with '/' (printable ASCII, no spaces), got '%s'", ppath,
                     show(c, s));
        else if (s)
            h->path = cx_strdup(c, s);
    }
    bool interval_ok = true, timeout_ok = false;
    if (iv)
        interval_ok = get_duration(c, iv, pkey(c, path, "interval"), 100, &h->interval_ms);
    if (tv)
        timeout_ok = get_duration(c, tv, pkey(c, path, "timeout"), 1, &h->timeout_ms);
    if (tv && timeout_ok && interval_ok && h->timeout_ms > h->interval_ms)
        node_err(c, tv, "%s.timeout: a check must end before the next one starts: '%s' is longer than the "
                        "interval ('%s')",
                 path, show(c, tv->s), iv ? show(c, iv->s) : "5s");
    if (!tv && h->timeout_ms > h->interval_ms)
        h->timeout_ms = h->interval_ms;
    if ((v = map_get(n, "healthy")) && get_uint(c, v, pkey(c, path, "healthy"), 1, 100, &x))
        h->healthy = (unsigned)x;
    if ((v = map_get(n, "unhealthy")) && get_uint(c, v, pkey(c, path, "unhealthy"), 1, 100, &x))
        h->unhealthy = (unsigned)x;
}

static fx_retries_conf *build_retries(cx *c, const ynode *n, const char *path)
{
    static const char *const words[] = {"connect-failure", "reset", "timeout", "5xx"};
    if (!want(c, n, Y_MAP, path))
        return NULL;
    check_keys(c, n, path, retries_keys, NULL);
    fx_retries_conf *r = cx_calloc(c, 1, sizeof(*r));
    if (!r)
        return NULL;
    r->attempts = 1;
    r->on = FX_RETRY_CONNECT | FX_RETRY_RESET;
    const ynode *v;
    uint64_t x;
    if ((v = map_get(n, "attempts")) && get_uint(c, v, pkey(c, path, "attempts"), 1, 10, &x))
        r->attempts = (unsigned)x;
    const char **items;
    const char *opath = pkey(c, path, "on");
    long nitems = (v = map_get(n, "on")) ? get_list(c, v, opath, false, &items) : -1;
    if (nitems > 0)
        r->on = 0;
    for (long i = 0; i < nitems; i++) {
        const char *s = items[i];
        if (!s)
            continue;
        uint64_t code;
        const char *end = parse_u64(s, &code);
        if (end && !*end) {
            if (code < 500 || code > 599)
                node_err(c, v->kids[i], "%s[%ld]: only 5xx status codes (500 to 599) are retried, got '%s'", opath,
                         i, show(c, s));
            else
                r->status[(code - 500) / 64] |= UINT64_C(1) << ((code - 500) % 64);
            continue;
        }
        size_t w = 0;
        while (w < 4 && strcmp(s, words[w]))
            w++;
        if (w == 0)
            r->on |= FX_RETRY_CONNECT;
        else if (w == 1)
            r->on |= FX_RETRY_RESET;
        else if (w == 2)
            r->on |= FX_RETRY_TIMEOUT;
        else if (w == 3)
            r->status[0] = r->status[1] = ~UINT64_C(0);
        else
            node_err(c, v->kids[i],
                     "%s[%ld]: expected connect-failure, reset, timeout, 5xx or a status code from 500 to 599, "
                     "got '%s'%s",
                     opath, i, show(c, s), suggest(c, s, words, 4));
    }
    if (r->status[1])
        r->status[1] &= (UINT64_C(1) << (100 - 64)) - 1; /* codes 500..599 only */
    return r;
}

static void build_upstream_tls(cx *c, const ynode *n, const char *path, fx_upstream_conf *u)
{
    if (!want(c, n, Y_MAP, path))
        return;
    size_t errors = c->errors;
    check_keys(c, n, path, utls_keys, NULL);
    fx_tls_client_conf *t = u->tls = cx_calloc(c, 1, sizeof(*t));
    if (!t)
        return;
    t->verify = 1;
    const ynode *v, *ca = map_get(n, "ca"), *cc = map_get(n, "client_cert"), *ck = map_get(n, "client_key");
    if ((v = map_get(n, "verify")))
        get_bool(c, v, pkey(c, path, "verify"), &t->verify);
    if (ca && get_file(c, ca, pkey(c, path, "ca"), &t->ca) && !t->verify)
        node_err(c, ca, "%s.ca: is not used when verify is false (remove one of them)", path);
    if ((v = map_get(n, "server_name"))) {
        const char *spath = pkey(c, path, "server_name");
        const char *s = get_str(c, v, spath);
        if (s && !host_name_ok(s, false))
            node_err(c, v, "%s: invalid host name '%s' (like api.internal.example.com, without a port)", spath,
                     show(c, s));
        else if (s && (t->server_name = cx_strdup(c, s)))
            to_lower(t->server_name);
    }
    if (cc)
        get_file(c, cc, pkey(c, path, "client_cert"), &t->client_cert);
    if (ck)
        get_file(c, ck, pkey(c, path, "client_key"), &t->client_key);
    if (!cc != !ck)
        node_err(c, cc ? map_key(n, "client_cert") : map_key(n, "client_key"),
                 "%s: 'client_cert' and 'client_key' go together (mutual TLS needs both)", path);
    if (c->errors != errors)
        return;
    /* the context is made now, so `ficus check` and a reload see a bad file at its key */
    fx_tls_error e;
    if (!(t->ctx = fx_tls_client_ctx(t, &e))) {
        const ynode *at = e.where[0] ? map_get(n, e.where) : NULL;
        node_err(c, at ? at : n, "%s%s%s: %s", path, e.where[0] ? "." : "", e.where, e.msg);
    }
}

/* --- planned: listen[].tls ------------------------------------------------------ */

static const char *const ltls_keys[] = {"cert", "key", "min_version", "ciphers", "ciphersuites", "alpn",
                                        "certificates", "session_tickets", "ocsp_response", NULL};
static const char *const sni_keys[] = {"cert", "key", "server_names", "ocsp_response", NULL};

/* The names a listener's SNI certificates serve, to find a name served twice. */
typedef struct sni_name {
    const char *name;
    size_t cert;
} sni_name;

static void build_sni_cert(cx *c, const ynode *n, const char *path, fx_tls_cert_conf *t, sni_name **seen,
                           size_t *nseen, size_t idx)
{
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, sni_keys, NULL);
    const ynode *v;
    if ((v = require(c, n, path, "cert")))
        get_file(c, v, pkey(c, path, "cert"), &t->cert);
    if ((v = require(c, n, path, "key")))
        get_file(c, v, pkey(c, path, "key"), &t->key);
    if ((v = map_get(n, "ocsp_response")))
        get_file(c, v, pkey(c, path, "ocsp_response"), &t->ocsp_response);
    if (!(v = require(c, n, path, "server_names")))
        return;
    const char *npath = pkey(c, path, "server_names");
    const char **names;
    long nn = get_list(c, v, npath, true, &names);
    if (nn <= 0 || !(t->server_names = strv_new(c, (size_t)nn)))
        return;
    t->nserver_names = (size_t)nn;
    sni_name *grown = realloc(*seen, (*nseen + (size_t)nn) * sizeof(**seen));
    if (!grown) {
        cx_oom(c);
        return;
    }
    *seen = grown;
    for (long i = 0; i < nn; i++) {
        if (!names[i])
            continue;
        if (!host_name_ok(names[i], true)) {
            node_err(c, v->kids[i], "%s[%ld]: invalid server name '%s' (a host name, or *.example.com)", npath, i,
                     show(c, names[i]));
            continue;
        }
        if (!(t->server_names[i] = cx_strdup(c, names[i])))
            return;
        to_lower(t->server_names[i]);
        for (size_t j = 0; j < *nseen; j++) {
            if (!strcmp((*seen)[j].name, t->server_names[i]) && (*seen)[j].cert != idx) {
                node_err(c, v->kids[i], "%s[%ld]: '%s' is already served by certificates[%zu]", npath, i,
                         show(c, names[i]), (*seen)[j].cert);
                break;
            }
        }
        (*seen)[(*nseen)++] = (sni_name){t->server_names[i], idx};
    }
}

/* The node of "cert", "key", "certificates[1].cert" ... under a listener's tls map (the map if not found). */
static const ynode *tls_err_node(const ynode *n, const char *where)
{
    const ynode *at = NULL;
    size_t i;
    char key[32];
    if (sscanf(where, "certificates[%zu].%31s", &i, key) == 2) {
        const ynode *list = map_get(n, "certificates");
        if (list && list->type == Y_SEQ && i < list->n && list->kids[i]->type == Y_MAP)
            at = map_get(list->kids[i], key);
    } else if (where[0]) {
        at = map_get(n, where);
    }
    return at ? at : n;
}

static void build_listen_tls(cx *c, const ynode *n, const char *path, fx_listen_conf *l)
{
    static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
                                         "TLS_AES_128_CCM_8_SHA256"};
    static const char *const versions[] = {"TLS1.2", "TLS1.3"};
    static const char *const protos[] = {"http/1.1"};
    if (!want(c, n, Y_MAP, path))
        return;
    size_t errors = c->errors;
    check_keys(c, n, path, ltls_keys, NULL);
    fx_tls_server_conf *t = l->tls = cx_calloc(c, 1, sizeof(*t));
    if (!t)
        return;
    t->min_version = 0x0303;
    t->session_tickets = 1;
    const ynode *v;
    if ((v = require(c, n, path, "cert")))
        get_file(c, v, pkey(c, path, "cert"), &t->cert);
    if ((v = require(c, n, path, "key")))
        get_file(c, v, pkey(c, path, "key"), &t->key);
    if ((v = map_get(n, "ocsp_response")))
        get_file(c, v, pkey(c, path, "ocsp_response"), &t->ocsp_response);
    if ((v = map_get(n, "session_tickets")))
        get_bool(c, v, pkey(c, path, "session_tickets"), &t->session_tickets);
    if ((v = map_get(n, "min_version"))) {
        const char *mpath = pkey(c, path, "min_version");
        const char *s = get_str(c, v, mpath);
        if (s && (!strcmp(s, "TLS1.0") || !strcmp(s, "TLS1.1") || !strcmp(s, "TLS1") || !strncmp(s, "SSL", 3)))
            node_err(c, v, "%s: '%s' is too old and never offered; expected TLS1.2 or TLS1.3", mpath, show(c, s));
        else if (s) {
            int w = get_word(c, v, mpath, versions, 2);
            if (w >= 0)
                t->min_version = w == 0 ? 0x0303 : 0x0304;
        }
    }
    if ((v = map_get(n, "ciphers"))) {
        const char *cpath = pkey(c, path, "ciphers");
        const char *s = get_nonempty(c, v, cpath);
        bool ok = s != NULL;
        for (const char *p = s; ok && *p; p++)
            ok = is_name_char(*p) || strchr(":+-!@=,. ", *p);
        if (s && !ok)
            node_err(c, v, "%s: '%s' is not an OpenSSL cipher list (like ECDHE+AESGCM:ECDHE+CHACHA20)", cpath,
                     show(c, s));
        else if (s)
            t->ciphers = cx_strdup(c, s);
    }
    if ((v = map_get(n, "ciphersuites"))) {
        const char *cpath = pkey(c, path, "ciphersuites");
        const char *s = get_nonempty(c, v, cpath);
        bool ok = s != NULL;
        for (const char *p = s; ok && *p;) {
            size_t len = strcspn(p, ":");
            const char *one = cx_printf(c, "%.*s", (int)len, p);
            size_t i = 0;
            while (i < 5 && strcmp(one, suites[i]))
                i++;
            if (i == 5) {
                node_err(c, v, "%s: unknown TLS 1.3 cipher suite '%s'%s", cpath, show(c, one),
                         suggest(c, one, suites, 5));
                ok = false;
            }
            p += len + (p[len] == ':');
        }
        if (ok)
            t->ciphersuites = cx_strdup(c, s);
    }
    const char **items;
    long ni;
    if ((v = map_get(n, "alpn")) && (ni = get_list(c, v, pkey(c, path, "alpn"), false, &items)) > 0 &&
        (t->alpn = strv_new(c, (size_t)ni))) {
        t->nalpn = (size_t)ni;
        for (long i = 0; i < ni; i++)
            if (items[i] && get_word(c, v->kids[i], pidx(c, pkey(c, path, "alpn"), (size_t)i), protos, 1) == 0)
                t->alpn[i] = cx_strdup(c, items[i]);
    }
    if ((v = map_get(n, "certificates"))) {
        const char *cpath = pkey(c, path, "certificates");
        if (!want(c, v, Y_SEQ, cpath))
            return;
        if (v->n == 0) {
            node_err(c, v, "%s: must not be empty (leave it out to serve one certificate)", cpath);
            return;
        }
        if (!(t->certs = cx_calloc(c, v->n, sizeof(*t->certs))))
            return;
        t->ncerts = v->n;
        sni_name *seen = NULL;
        size_t nseen = 0;
        for (size_t i = 0; i < v->n; i++)
            build_sni_cert(c, v->kids[i], pidx(c, cpath, i), &t->certs[i], &seen, &nseen, i);
        free(seen);
    }
    if (c->errors != errors || !t->cert || !t->key)
        return;
    /* the context is made now, so `ficus check` and a reload see a bad file at its key */
    fx_tls_error e;
    if (!(t->ctx = fx_tls_server_ctx(t, &e)))
        node_err(c, tls_err_node(n, e.where), "%s%s%s: %s", path, e.where[0] ? "." : "", e.where, e.msg);
}

/* --- planned: route keys -------------------------------------------------------- */

static const char *const split_keys[] = {"upstream", "weight", NULL};
static const char *const shadow_keys[] = {"upstream", "percent", "compare", "ignore", "methods", NULL};
static const char *const revents_keys[] = {"topic", "type", "key", "data", "on", NULL};
static const char *const rewrite_keys[] = {"strip_prefix", "prefix", NULL};

#define SAFE_METHODS (FX_METHOD_BIT(HTTP_GET) | FX_METHOD_BIT(HTTP_HEAD) | FX_METHOD_BIT(HTTP_OPTIONS))
#define WRITE_METHODS                                                                                        \
    (FX_METHOD_BIT(HTTP_POST) | FX_METHOD_BIT(HTTP_PUT) | FX_METHOD_BIT(HTTP_PATCH) | FX_METHOD_BIT(HTTP_DELETE))


static bool build_split(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    if (!want(c, n, Y_SEQ, path))
        return false;
    if (n->n == 0) {
        node_err(c, n, "%s: must list at least one upstream", path);
        return false;
    }
    if (!(r->split = cx_calloc(c, n->n, sizeof(*r->split))))
        return false;
    r->nsplit = n->n;
    bool ok = true, weights_ok = true;
    uint64_t sum = 0, x;
    for (size_t i = 0; i < n->n; i++) {
        const ynode *item = n->kids[i], *v;
        const char *ipath = pidx(c, path, i);
        fx_split_conf *sp = &r->split[i];
        sp->upstream = -1;
        if (!want(c, item, Y_MAP, ipath)) {
            ok = weights_ok = false;
            continue;
        }
        check_keys(c, item, ipath, split_keys, NULL);
        if ((v = require(c, item, ipath, "upstream"))) {
            const char *upath = pkey(c, ipath, "upstream");
            sp->upstream = upstream_index(c, v, upath);
            for (size_t j = 0; sp->upstream >= 0 && j < i; j++) {
                if (r->split[j].upstream == sp->upstream) {
                    node_err(c, v, "%s: '%s' is already in this split (%s[%zu])", upath,
                             c->cfg->upstreams[sp->upstream].name, path, j);
                    sp->upstream = -1;
                }
            }
        }
        ok &= sp->upstream >= 0;
        if ((v = require(c, item, ipath, "weight")) && get_uint(c, v, pkey(c, ipath, "weight"), 0, 1000000, &x)) {
            sp->weight = (unsigned)x;
            sum += x;
        } else {
            ok = weights_ok = false;
        }
    }
    if (weights_ok && sum == 0) {
        node_err(c, n, "%s: the weights add up to 0; give at least one upstream a weight above 0", path);
        ok = false;
    }
    /* the primary, for code that knows no splits: the first side that gets traffic */
    for (size_t i = 0; ok && i < r->nsplit && r->upstream < 0; i++)
        if (r->split[i].weight)
            r->upstream = r->split[i].upstream;
    return ok;
}

static void build_sticky(cx *c, const ynode *n, const char *path, fx_route_conf *r, bool has_split)
{
    static const char *const forms[] = {"client_ip"};
    const char *s = get_str(c, n, path);
    if (!s)
        return;
    int kind = FX_STICKY_NONE;
    const char *name = NULL;
    bool ok = true;
    if (!strcmp(s, "client_ip")) {
        kind = FX_STICKY_CLIENT_IP;
    } else if (!strncmp(s, "token.", 6)) {
        kind = FX_STICKY_TOKEN;
        ok = claim_ok(name = s + 6);
    } else if (!strncmp(s, "header:", 7)) {
        kind = FX_STICKY_HEADER;
        ok = token_ok(name = s + 7);
    } else if (!strncmp(s, "cookie:", 7)) {
        kind = FX_STICKY_COOKIE;
        ok = token_ok(name = s + 7);
    }
    if (!kind || !ok) {
        const char *hint = "";
        if (!strncmp(s, "token:", 6) && claim_ok(s + 6))
            hint = cx_printf(c, " (did you mean 'token.%s'?)", show(c, s + 6));
        else if ((!strncmp(s, "header.", 7) || !strncmp(s, "cookie.", 7)) && token_ok(s + 7))
            hint = cx_printf(c, " (did you mean '%.6s:%s'?)", s, show(c, s + 7));
        else if (!kind)
            hint = suggest(c, s, forms, 1);
        node_err(c, n, "%s: expected token.CLAIM, header:NAME, cookie:NAME or client_ip, got '%s'%s", path,
                 show(c, s), hint);
        return;
    }
    r->sticky = kind;
    if (name && (r->sticky_name = cx_strdup(c, name)) && kind == FX_STICKY_HEADER)
        to_lower(r->sticky_name);
    if (!has_split)
        node_err(c, n, "%s: only a route with 'split' can be sticky", path);
    else if (kind == FX_STICKY_TOKEN && r->auth == FX_AUTH_NONE)
        node_err(c, n, "%s: '%s' needs a verified token, but the route has auth: none", path, show(c, s));
}

/* "$.a.b", "$.items[*].id", "$.list[0]": the subset of JSONPath shadow.ignore takes. */
static bool json_path_ok(const char *s)
{
    if (s[0] != '$' || !s[1])
        return false;
    for (const char *p = s + 1; *p;) {
        if (*p == '.') {
            const char *q = ++p;
            if (*p == '*')
                p++;
            else
                while (is_name_char(*p) || *p == '-')
                    p++;
            if (p == q)
                return false;
        } else if (*p == '[') {
            const char *q = ++p;
            if (*p == '*')
                p++;
            else
                while (is_digit(*p))
                    p++;
            if (p == q || *p != ']')
                return false;
            p++;
        } else {
            return false;
        }
    }
    return true;
}

static void build_shadow(cx *c, const ynode *n, const char *path, fx_route_conf *r, bool match_ok)
{
    static const char *const compares[] = {"status", "headers", "body"};
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, shadow_keys, NULL);
    fx_shadow_conf *sh = r->shadow = cx_calloc(c, 1, sizeof(*sh));
    if (!sh)
        return;
    *sh = (fx_shadow_conf){.upstream = -1, .percent = 100, .compare = FX_SHADOW_STATUS | FX_SHADOW_BODY,
                           .methods = SAFE_METHODS};
    const ynode *v, *mv = map_get(n, "methods");
    uint64_t x;
    if ((v = require(c, n, path, "upstream"))) {
        sh->upstream = upstream_index(c, v, pkey(c, path, "upstream"));
        if (sh->upstream >= 0 && !r->split && sh->upstream == r->upstream)
            node_err(c, v, "%s.upstream: '%s' is already the route's upstream; shadow copies go to another one",
                     path, c->cfg->upstreams[sh->upstream].name);
    }
    if ((v = map_get(n, "percent")) && get_uint(c, v, pkey(c, path, "percent"), 0, 100, &x))
        sh->percent = (unsigned)x;
    const char **items;
    long ni;
    if ((v = map_get(n, "compare")) && (ni = get_list(c, v, pkey(c, path, "compare"), false, &items)) > 0) {
        sh->compare = 0;
        for (long i = 0; i < ni; i++) {
            int w = items[i] ? get_word(c, v->kids[i], pidx(c, pkey(c, path, "compare"), (size_t)i), compares, 3)
                             : -1;
            if (w >= 0)
                sh->compare |= 1u << w;
        }
    }
    if ((v = map_get(n, "ignore")) && (ni = get_list(c, v, pkey(c, path, "ignore"), true, &items)) > 0 &&
        (sh->ignore = strv_new(c, (size_t)ni))) {
        sh->nignore = (size_t)ni;
        for (long i = 0; i < ni; i++) {
            const char *s = items[i];
            if (!s)
                continue;
            if (s[0] == '$' ? !json_path_ok(s) : !token_ok(s))
                node_err(c, v->kids[i],
                         "%s.ignore[%ld]: expected a JSON path like $.updated_at or a header name, got '%s'", path, i,
                         show(c, s));
            else if ((sh->ignore[i] = cx_strdup(c, s)) && s[0] != '$')
                to_lower(sh->ignore[i]);
        }
    }
    bool methods_ok = true;
    if (mv)
        methods_ok = build_methods(c, mv, pkey(c, path, "methods"), &sh->methods);
    if (match_ok && methods_ok && r->methods && !(r->methods & sh->methods))
        node_err(c, mv ? mv : n,
                 "%s: no request of this route is shadowed: the route takes %s, shadow.methods %s %s (a shadowed "
                 "write runs twice: list it in shadow.methods to mean it)",
                 mv ? pkey(c, path, "methods") : path, methods_text(c, r->methods),
                 mv ? "is" : "defaults to", methods_text(c, sh->methods));
}

static void build_fallback(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    r->fallback = upstream_index(c, n, path);
    if (r->fallback >= 0 && !r->split && r->fallback == r->upstream)
        node_err(c, n, "%s: '%s' is already the route's upstream; a fallback must be another upstream", path,
                 c->cfg->upstreams[r->fallback].name);
}

/* events.key: literal text, {param} of the route's template, {token.CLAIM}. */
static void check_key_template(cx *c, const ynode *n, const char *path, const char *s, const fx_route_conf *r,
                               bool match_ok)
{
    const char *params[FX_ROUTE_MAX_PARAMS + 1];
    size_t np = 0;
    for (size_t i = 0; match_ok && i < r->nsegs && np < FX_ROUTE_MAX_PARAMS; i++)
        if (r->segs[i].is_param)
            params[np++] = r->segs[i].text;
    for (const char *p = s; *p; p++) {
        if (*p == '}') {
            node_err(c, n, "%s: '}' without '{' in '%s'", path, show(c, s));
            return;
        }
        if (*p != '{')
            continue;
        const char *e = strchr(p + 1, '}');
        if (!e) {
            node_err(c, n, "%s: '{' without '}' in '%s'", path, show(c, s));
            return;
        }
        const char *name = cx_printf(c, "%.*s", (int)(e - p - 1), p + 1);
        if (!strncmp(name, "token.", 6)) {
            if (!claim_ok(name + 6)) {
                node_err(c, n, "%s: bad claim name in '{%s}'", path, show(c, name));
                return;
            }
            if (r->auth == FX_AUTH_NONE) {
                node_err(c, n, "%s: '{%s}' needs a verified token, but the route has auth: none", path,
                         show(c, name));
                return;
            }
        } else if (match_ok) {
            size_t i = 0;
            while (i < np && strcmp(name, params[i]))
                i++;
            if (i == np) {
                const char *best = closest(name, params, np);
                node_err(c, n, "%s: '{%s}' is not a parameter of the route's path '%s'%s", path, show(c, name),
                         show(c, r->path), best ? cx_printf(c, " (did you mean '{%s}'?)", best) : "");
                return;
            }
        }
        p = e;
    }
}

static void build_route_events(cx *c, const ynode *n, const char *path, fx_route_conf *r, bool match_ok)
{
    static const char *const datas[] = {"response", "request", "none"};
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, revents_keys, NULL);
    fx_route_events_conf *ev = r->events = cx_calloc(c, 1, sizeof(*ev));
    if (!ev)
        return;
    ev->data = FX_EVENT_DATA_RESPONSE;
    ev->on = WRITE_METHODS;
    const ynode *v, *onv = map_get(n, "on");
    const char *s;
    if ((v = require(c, n, path, "topic")) && (s = get_str(c, v, pkey(c, path, "topic")))) {
        if (!topic_ok(s))
            node_err(c, v, "%s.topic: invalid topic name '%s' (letters, digits, '.', '_' and '-', at most 249)",
                     path, show(c, s));
        else
            ev->topic = cx_strdup(c, s);
    }
    if ((v = require(c, n, path, "type")) && (s = get_nonempty(c, v, pkey(c, path, "type"))))
        ev->type = cx_strdup(c, s);
    if ((v = require(c, n, path, "key")) && (s = get_str(c, v, pkey(c, path, "key")))) {
        if (!*s)
            node_err(c, v, "%s.key: must not be empty (the entity id, like \"{id}\", keeps one entity's events "
                           "in order)",
                     path);
        else
            check_key_template(c, v, pkey(c, path, "key"), s, r, match_ok);
        if (*s)
            ev->key = cx_strdup(c, s);
    }
    if ((v = map_get(n, "data"))) {
        int w = get_word(c, v, pkey(c, path, "data"), datas, 3);
        if (w >= 0)
            ev->data = w == 0 ? FX_EVENT_DATA_RESPONSE : w == 1 ? FX_EVENT_DATA_REQUEST : FX_EVENT_DATA_NONE;
    }
    bool on_ok = true;
    if (onv)
        on_ok = build_methods(c, onv, pkey(c, path, "on"), &ev->on);
    if (match_ok && on_ok && r->methods && !(r->methods & ev->on))
        node_err(c, onv ? onv : n, "%s: no request of this route publishes an event: the route takes %s, %s %s",
                 onv ? pkey(c, path, "on") : path, methods_text(c, r->methods),
                 onv ? "events.on is" : "events.on defaults to", methods_text(c, ev->on));
    if (!c->has_events)
        node_err(c, n, "%s: publishing needs the top-level 'events' section (brokers and spool)", path);
}

/* rewrite paths: like a prefix in match */
static bool rewrite_path_ok(cx *c, const ynode *n, const char *path, const char *s)
{
    if (s[0] != '/') {
        node_err(c, n, "%s: '%s' must start with '/'", path, show(c, s));
        return false;
    }
    if (!path_chars_ok(c, n, path, s))
        return false;
    if (strpbrk(s, "{}")) {
        node_err(c, n, "%s: '%s' cannot have parameters", path, show(c, s));
        return false;
    }
    return true;
}

static void build_rewrite(cx *c, const ynode *n, const char *path, fx_route_conf *r, bool match_ok)
{
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, rewrite_keys, NULL);
    const ynode *sp = map_get(n, "strip_prefix"), *ap = map_get(n, "prefix");
    if (!sp && !ap) {
        node_err(c, n, "%s: needs 'strip_prefix', 'prefix' or both", path);
        return;
    }
    const char *s;
    if (sp && (s = get_str(c, sp, pkey(c, path, "strip_prefix"))) &&
        rewrite_path_ok(c, sp, pkey(c, path, "strip_prefix"), s)) {
        /* every path of the route must start with it, or some requests would be forwarded unchanged */
        size_t fixed = !match_ok ? 0 : r->kind == FX_MATCH_TEMPLATE ? strcspn(r->path, "{") : r->path_len;
        if (match_ok && (strlen(s) > fixed || memcmp(r->path, s, strlen(s))))
            node_err(c, sp, "%s.strip_prefix: '%s' does not start every path of this route ('%s')", path, show(c, s),
                     show(c, r->path));
        else
            r->strip_prefix = cx_strdup(c, s);
    }
    if (ap && (s = get_str(c, ap, pkey(c, path, "prefix"))) && rewrite_path_ok(c, ap, pkey(c, path, "prefix"), s))
        r->add_prefix = cx_strdup(c, s);
}

/* --- planned: auth -------------------------------------------------------------- */

static const char *const auth_keys[] = {"issuers", "clock_skew", "token_from", "forward", "forward_token", NULL};
static const char *const issuer_keys[] = {"issuer", "audiences", "jwks_file", "keys", NULL};
static const planned_key issuer_planned[] = {{"jwks_uri", FX_FEAT_JWKS_URI},
                                             {"jwks_refresh", FX_FEAT_JWKS_URI},
                                             {"jwks_min_refresh", FX_FEAT_JWKS_URI},
                                             {NULL, 0}};
static const char *const key_keys[] = {"kid", "alg", "pem_file", "secret_env", NULL};

static const char *const algs[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                   "RS512", "ES256", "ES384", "PS256"};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

/* https://HOST[:PORT]/..., or http:// to a loopback host (tests). */
static void check_uri(cx *c, const ynode *n, const char *path, const char *s)
{
    bool plain = !strncmp(s, "http://", 7);
    if (strncmp(s, "https://", 8) && !plain) {
        node_err(c, n, "%s: expected an https:// URL, got '%s'", path, show(c, s));
        return;
    }
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            node_err(c, n, "%s: '%s' contains a space, control or non-ASCII byte (percent-encode it)", path,
                     show(c, s));
            return;
        }
    }
    const char *host = s + (plain ? 7 : 8);
    size_t hlen = strcspn(host, "/?#");
    const char *h = cx_printf(c, "%.*s", (int)hlen, host);
    if (strchr(h, '@')) {
        node_err(c, n, "%s: user information ('user:password@') in the URL is not supported", path);
        return;
    }
    const char *port;
    if (h[0] == '[') {
        size_t in = strcspn(h + 1, "]");
        port = h[1 + in] ? h + 2 + in : NULL;
        h = cx_printf(c, "%.*s", (int)in, h + 1);
        if (!port) {
            node_err(c, n, "%s: '%s': unterminated IPv6 address", path, show(c, s));
            return;
        }
    } else {
        port = strchr(h, ':');
        h = cx_printf(c, "%.*s", (int)strcspn(h, ":"), h);
    }
    if (!*h) {
        node_err(c, n, "%s: '%s' has no host", path, show(c, s));
        return;
    }
    if (port && *port) {
        unsigned long p = 0;
        bool ok = port[0] == ':' && port[1];
        for (const char *q = port + 1; ok && *q; q++)
            ok = *q >= '0' && *q <= '9' && (p = p * 10 + (unsigned long)(*q - '0')) <= 65535;
        if (!ok || p == 0) {
            node_err(c, n, "%s: '%s': bad port (expected 1 to 65535)", path, show(c, s));
            return;
        }
    }
    struct in_addr a4;
    bool loopback = !strcasecmp(h, "localhost") || !strcmp(h, "::1") ||
                    (inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
    if (plain && !loopback)
        node_err(c, n, "%s: plain http is only allowed to a loopback host (127.0.0.1, [::1], localhost); use https "
                       "for '%s'",
                 path, show(c, s));
}

static void build_jwt_key(cx *c, const ynode *n, const char *path, fx_jwt_key_conf *k, const fx_issuer_conf *is,
                          size_t idx)
{
    static const size_t hs_min[] = {32, 48, 64};
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, key_keys, NULL);
    const ynode *v, *pem = map_get(n, "pem_file"), *sec = map_get(n, "secret_env");
    const char *s;
    if ((v = map_get(n, "kid")) && (s = get_nonempty(c, v, pkey(c, path, "kid")))) {
        for (size_t j = 0; j < idx; j++) {
            if (is->keys[j].kid && !strcmp(is->keys[j].kid, s)) {
                node_err(c, v, "%s.kid: kid '%s' is already used by keys[%zu] of this issuer", path, show(c, s), j);
                s = NULL;
                break;
            }
        }
        if (s)
            k->kid = cx_strdup(c, s);
    }
    if ((v = require(c, n, path, "alg")) && (s = get_str(c, v, pkey(c, path, "alg")))) {
        if (!strcasecmp(s, "none")) {
            node_err(c, v, "%s.alg: '%s' is never accepted: every token must be signed", path, show(c, s));
        } else {
            int a = get_word(c, v, pkey(c, path, "alg"), algs, NALGS);
            if (a >= 0)
                k->alg = FX_ALG_HS256 + a;
        }
    }
    bool hmac = k->alg >= FX_ALG_HS256 && k->alg <= FX_ALG_HS512;
    if (pem && sec)
        node_err(c, map_key(n, "secret_env"), "%s: use either 'pem_file' or 'secret_env', not both", path);
    else if (!pem && !sec)
        node_err(c, n, "%s: needs 'pem_file' (RS, ES and PS algorithms) or 'secret_env' (HS algorithms)", path);
    else if (k->alg && hmac && pem)
        node_err(c, map_key(n, "pem_file"), "%s: %s is an HMAC algorithm, its key is a shared secret: use "
                                            "'secret_env', not 'pem_file'",
                 path, algs[k->alg - 1]);
    else if (k->alg && !hmac && sec)
        node_err(c, map_key(n, "secret_env"), "%s: %s verifies with a public key: use 'pem_file', not 'secret_env'",
                 path, algs[k->alg - 1]);
    if (pem)
        get_file(c, pem, pkey(c, path, "pem_file"), &k->pem_file);
    if (sec && (s = get_nonempty(c, sec, pkey(c, path, "secret_env")))) {
        bool name_ok = !is_digit(s[0]);
        for (const char *p = s; name_ok && *p; p++)
            name_ok = is_name_char(*p);
        const char *val = name_ok ? getenv(s) : NULL;
        if (!name_ok)
            node_err(c, sec, "%s.secret_env: '%s' is not an environment variable name (letters, digits and '_')",
                     path, show(c, s));
        else if (!val)
            node_err(c, sec, "%s.secret_env: environment variable '%s' is not set", path, s);
        else if (k->alg && hmac && strlen(val) < hs_min[k->alg - FX_ALG_HS256])
            node_err(c, sec, "%s.secret_env: the secret in '%s' is %zu bytes; %s needs at least %zu", path, s,
                     strlen(val), algs[k->alg - 1], hs_min[k->alg - FX_ALG_HS256]);
        k->secret_env = cx_strdup(c, s);
    }
}

#define MAX_KEY_FILE (1024 * 1024)

/* Reads a key file (bounded); malloc'd, *len set; NULL after an error at `n`. */
static char *read_key_file(cx *c, const ynode *n, const char *path, const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        node_err(c, n, "%s: cannot read '%s': %s", path, file, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_KEY_FILE + 1);
    size_t got = buf ? fread(buf, 1, MAX_KEY_FILE + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || got > MAX_KEY_FILE) {
        node_err(c, n, "%s: cannot use '%s': %s", path, file,
                 !buf ? "out of memory" : bad ? "read error" : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

static void fp_add(cx *c, const void *p, size_t n)
{
    if (c->auth_fp) {
        uint64_t len = n;
        EVP_DigestUpdate(c->auth_fp, &len, sizeof(len)); /* length-prefixed: no ambiguity */
        EVP_DigestUpdate(c->auth_fp, p, n);
    }
}

/*
 * The issuer's keys, loaded now (authz library), so that a malformed or weak
 * key is a config error at its place and a running gateway never meets one.
 */
static void load_issuer_keys(cx *c, const ynode *n, const char *path, fx_issuer_conf *is)
{
    char err[256];
    fp_add(c, is->issuer, strlen(is->issuer));
    for (size_t i = 0; i < is->naudiences; i++)
        fp_add(c, is->audiences[i], strlen(is->audiences[i]));
    if (is->jwks_uri) {
        fp_add(c, is->jwks_uri, strlen(is->jwks_uri));
        return;
    }
    if (!(is->keyset = fx_jwt_keyset_new())) {
        cx_oom(c);
        return;
    }
    if (is->jwks_file) {
        const ynode *fn = map_get(n, "jwks_file");
        const char *kpath = pkey(c, path, "jwks_file");
        size_t len = 0;
        char *buf = read_key_file(c, fn, kpath, is->jwks_file, &len);
        if (!buf)
            return;
        fp_add(c, buf, len);
        if (fx_jwt_keyset_add_jwks(is->keyset, buf, len, err, sizeof(err)) < 0)
            node_err(c, fn, "%s: %s", kpath, err);
        else if (fx_jwt_keyset_count(is->keyset) == 0)
            node_err(c, fn, "%s: the key set has no signing keys", kpath);
        free(buf);
        return;
    }
    const ynode *keys = map_get(n, "keys");
    for (size_t i = 0; keys && i < is->nkeys && i < keys->n; i++) {
        const fx_jwt_key_conf *k = &is->keys[i];
        const ynode *kn = keys->kids[i];
        const char *kpath = pidx(c, pkey(c, path, "keys"), i);
        fx_jwt_algorithm alg = (fx_jwt_algorithm)k->alg; /* FX_ALG_* and FX_JWT_ALG_* share values */
        if (k->kid)
            fp_add(c, k->kid, strlen(k->kid));
        fp_add(c, &alg, sizeof(alg));
        if (k->pem_file) {
            const ynode *pn = map_get(kn, "pem_file");
            size_t len = 0;
            char *buf = read_key_file(c, pn, pkey(c, kpath, "pem_file"), k->pem_file, &len);
            if (!buf)
                continue;
            fp_add(c, buf, len);
            if (fx_jwt_keyset_add_pem(is->keyset, k->kid, alg, buf, len, err, sizeof(err)) < 0)
                node_err(c, pn, "%s.pem_file: %s", kpath, err);
            free(buf);
        } else if (k->secret_env) {
            const ynode *sn = map_get(kn, "secret_env");
            const char *val = getenv(k->secret_env);
            if (!val)
                continue; /* reported by build_jwt_key */
            fp_add(c, val, strlen(val));
            if (fx_jwt_keyset_add_secret(is->keyset, k->kid, alg, (const unsigned char *)val,
                                         strlen(val), err, sizeof(err)) < 0)
                node_err(c, sn, "%s.secret_env: %s", kpath, err);
        }
    }
}

static void build_issuer(cx *c, const ynode *n, const char *path, fx_auth_conf *a, size_t idx)
{
    fx_issuer_conf *is = &a->issuers[idx];
    size_t errors_before = c->errors;
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, issuer_keys, issuer_planned);
    const ynode *v, *file = map_get(n, "jwks_file"), *uri = map_get(n, "jwks_uri"), *keys = map_get(n, "keys");
    const char *s;
    if ((v = require(c, n, path, "issuer")) && (s = get_nonempty(c, v, pkey(c, path, "issuer")))) {
        for (size_t j = 0; j < idx; j++) {
            if (a->issuers[j].issuer && !strcmp(a->issuers[j].issuer, s)) {
                node_err(c, v, "%s.issuer: '%s' is already configured by auth.issuers[%zu]", path, show(c, s), j);
                s = NULL;
                break;
            }
        }
        if (s)
            is->issuer = cx_strdup(c, s);
    }
    const char **items;
    long ni;
    if ((v = require(c, n, path, "audiences")) &&
        (ni = get_list(c, v, pkey(c, path, "audiences"), false, &items)) > 0 &&
        (is->audiences = strv_new(c, (size_t)ni))) {
        is->naudiences = (size_t)ni;
        for (long i = 0; i < ni; i++)
            if (items[i])
                is->audiences[i] = cx_strdup(c, items[i]);
    }
    int nsrc = !!file + !!uri + !!keys;
    if (nsrc == 0)
        node_err(c, n, "%s: needs one of 'jwks_file', 'jwks_uri' or 'keys'", path);
    else if (nsrc > 1)
        node_err(c, n, "%s: use only one of 'jwks_file', 'jwks_uri' and 'keys'", path);
    if (file)
        get_file(c, file, pkey(c, path, "jwks_file"), &is->jwks_file);
    if (uri && (s = get_nonempty(c, uri, pkey(c, path, "jwks_uri")))) {
        check_uri(c, uri, pkey(c, path, "jwks_uri"), s);
        is->jwks_uri = cx_strdup(c, s);
    }
    if (keys) {
        const char *kpath = pkey(c, path, "keys");
        if (!want(c, keys, Y_SEQ, kpath)) {
            /* reported */
        } else if (keys->n == 0) {
            node_err(c, keys, "%s: must list at least one key", kpath);
        } else if ((is->keys = cx_calloc(c, keys->n, sizeof(*is->keys)))) {
            is->nkeys = keys->n;
            for (size_t i = 0; i < keys->n; i++)
                build_jwt_key(c, keys->kids[i], pidx(c, kpath, i), &is->keys[i], is, i);
        }
    }
    is->jwks_refresh_ms = 600000;
    is->jwks_min_refresh_ms = 30000;
    const ynode *rv = map_get(n, "jwks_refresh"), *mv = map_get(n, "jwks_min_refresh");
    bool r_ok = rv && get_duration(c, rv, pkey(c, path, "jwks_refresh"), 1000, &is->jwks_refresh_ms);
    bool m_ok = mv && get_duration(c, mv, pkey(c, path, "jwks_min_refresh"), 1000, &is->jwks_min_refresh_ms);
    if (!uri) {
        if (rv)
            node_err(c, map_key(n, "jwks_refresh"), "%s.jwks_refresh: only applies to 'jwks_uri'", path);
        if (mv)
            node_err(c, map_key(n, "jwks_min_refresh"), "%s.jwks_min_refresh: only applies to 'jwks_uri'", path);
    } else if ((r_ok || !rv) && (m_ok || !mv) && (rv || mv) && is->jwks_min_refresh_ms > is->jwks_refresh_ms) {
        node_err(c, mv ? mv : rv, "%s: jwks_min_refresh ('%s') must not be longer than jwks_refresh ('%s')", path,
                 mv ? show(c, mv->s) : "30s", rv ? show(c, rv->s) : "10m");
    }
    if (c->errors == errors_before && (c->features & FX_FEAT_AUTH) && is->issuer)
        load_issuer_keys(c, n, path, is);
}

/* Headers the gateway owns: a claim forwarded in one would break framing or
 * routing, or let identity be confused with the gateway's own headers. */
static bool reserved_header(const char *h)
{
    static const char *const names[] = {"host",       "content-length", "transfer-encoding", "connection",
                                        "keep-alive", "te",             "trailer",           "upgrade",
                                        "proxy-authorization", "proxy-authenticate", "authorization", "cookie",
                                        "x-request-id", "traceparent", "tracestate", "forwarded"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(h, names[i]))
            return true;
    return !strncasecmp(h, "x-forwarded-", 12);
}

static void build_auth_body(cx *c, const ynode *n, fx_auth_conf *a);

static void build_auth(cx *c, const ynode *n)
{
    const char *path = "auth";
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, auth_keys, NULL);
    fx_auth_conf *a = c->cfg->auth = cx_calloc(c, 1, sizeof(*a));
    if (!a)
        return;
    c->auth_fp = EVP_MD_CTX_new();
    if (c->auth_fp && !EVP_DigestInit_ex(c->auth_fp, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(c->auth_fp);
        c->auth_fp = NULL;
    }
    build_auth_body(c, n, a);
    if (c->auth_fp) {
        fp_add(c, &a->clock_skew_ms, sizeof(a->clock_skew_ms));
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(c->auth_fp, md, &mdlen) && mdlen >= 8)
            memcpy(&a->fingerprint, md, sizeof(a->fingerprint));
        EVP_MD_CTX_free(c->auth_fp);
        c->auth_fp = NULL;
    }
}

static void build_auth_body(cx *c, const ynode *n, fx_auth_conf *a)
{
    const char *path = "auth";
    a->clock_skew_ms = 30000;
    a->forward_token = 1;
    const ynode *v;
    if ((v = require(c, n, path, "issuers"))) {
        if (!want(c, v, Y_SEQ, "auth.issuers")) {
            /* reported */
        } else if (v->n == 0) {
            node_err(c, v, "auth.issuers: must list at least one issuer");
        } else if ((a->issuers = cx_calloc(c, v->n, sizeof(*a->issuers)))) {
            a->nissuers = v->n;
            for (size_t i = 0; i < v->n; i++)
                build_issuer(c, v->kids[i], pidx(c, "auth.issuers", i), a, i);
        }
    }
    if ((v = map_get(n, "clock_skew")) && get_duration(c, v, "auth.clock_skew", 0, &a->clock_skew_ms) &&
        a->clock_skew_ms > 300000) {
        node_err(c, v, "auth.clock_skew: at most 5m, got '%s' (a long skew keeps expired tokens usable)",
                 show(c, v->s));
        a->clock_skew_ms = 300000;
    }
    const char **items;
    long ni;
    if ((v = map_get(n, "token_from")) && (ni = get_list(c, v, "auth.token_from", true, &items)) > 0 &&
        (a->token_from = cx_calloc(c, (size_t)ni, sizeof(*a->token_from)))) {
        a->ntoken_from = (size_t)ni;
        for (long i = 0; i < ni; i++) {
            const char *s = items[i];
            if (!s)
                continue;
            int kind = !strncmp(s, "header:", 7) ? FX_TOKEN_HEADER : !strncmp(s, "cookie:", 7) ? FX_TOKEN_COOKIE : 0;
            if (!kind || !token_ok(s + 7))
                node_err(c, v->kids[i], "auth.token_from[%ld]: expected header:NAME or cookie:NAME, got '%s'", i,
                         show(c, s));
            else if ((a->token_from[i].name = cx_strdup(c, s + 7)))
                a->token_from[i].kind = kind;
        }
    } else if (!v && (a->token_from = cx_calloc(c, 1, sizeof(*a->token_from))) &&
               (a->token_from[0].name = cx_strdup(c, "Authorization"))) {
        a->ntoken_from = 1;
        a->token_from[0].kind = FX_TOKEN_HEADER;
    }
    if ((v = map_get(n, "forward")) && want(c, v, Y_MAP, "auth.forward")) {
        check_keys(c, v, "auth.forward", NULL, NULL);
        if (v->n && (a->forward = cx_calloc(c, v->n, sizeof(*a->forward)))) {
            a->nforward = v->n;
            for (size_t i = 0; i < v->n; i++) {
                const ynode *k = MAP_KEY(v, i), *val = MAP_VAL(v, i);
                if (k->type != Y_SCALAR)
                    continue; /* reported */
                const char *fpath = pkey(c, "auth.forward", k->s);
                bool ok = true;
                if (!token_ok(k->s)) {
                    node_err(c, k, "auth.forward: '%s' is not a header name", show(c, k->s));
                    ok = false;
                } else if (reserved_header(k->s)) {
                    node_err(c, k, "auth.forward: '%s' is managed by the gateway and cannot carry a claim",
                             show(c, k->s));
                    ok = false;
                }
                for (size_t j = 0; ok && j < i; j++) {
                    const ynode *kj = MAP_KEY(v, j);
                    if (kj->type == Y_SCALAR && strcmp(kj->s, k->s) && !strcasecmp(kj->s, k->s)) {
                        node_err(c, k, "auth.forward: '%s' is the same header as '%s' (line %d): header names "
                                       "ignore case",
                                 show(c, k->s), show(c, kj->s), kj->line);
                        ok = false;
                    }
                }
                const char *claim = get_str(c, val, fpath);
                if (claim && !claim_ok(claim))
                    node_err(c, val, "%s: expected a claim name like sub or roles, got '%s'", fpath, show(c, claim));
                else if (claim && ok) {
                    a->forward[i].header = cx_strdup(c, k->s);
                    a->forward[i].claim = cx_strdup(c, claim);
                }
            }
        }
    }
    if ((v = map_get(n, "forward_token")))
        get_bool(c, v, "auth.forward_token", &a->forward_token);
}

/* --- policies ---------------------------------------------------------------------- */

static const char *const policies_keys[] = {"files", "mode", NULL};

static int cmp_strp(const void *pa, const void *pb)
{
    return strcmp(*(char *const *)pa, *(char *const *)pb);
}

/* The glob for a pattern from the config: its directory part is the config
 * file's directory, escaped, so only the operator's wildcards act. */
static char *glob_pattern(cx *c, const char *pat)
{
    if (pat[0] == '/' || !*c->dir)
        return cx_strdup(c, pat);
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    if (!f) {
        cx_oom(c);
        return NULL;
    }
    for (const char *p = c->dir; *p; p++) {
        if (strchr("*?[\\", *p))
            fputc('\\', f);
        fputc(*p, f);
    }
    if (c->dir[strlen(c->dir) - 1] != '/')
        fputc('/', f);
    fputs(pat, f);
    if (fclose(f) != 0 || !out) {
        free(out);
        cx_oom(c);
        return NULL;
    }
    return out;
}

static void build_policies(cx *c, const ynode *n)
{
    static const char *const modes[] = {"enforce", "audit"};
    const char *path = "policies";
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, policies_keys, NULL);
    fx_policies_conf *p = c->cfg->policies = cx_calloc(c, 1, sizeof(*p));
    if (!p)
        return;
    const ynode *v;
    const char **items;
    long ni;
    if ((v = require(c, n, path, "files")) && (ni = get_list(c, v, "policies.files", false, &items)) > 0) {
        char **found = NULL;
        size_t nfound = 0;
        for (long i = 0; i < ni; i++) {
            const char *s = items[i];
            if (!s)
                continue;
            const char *slash = strrchr(s, '/');
            bool wild = strpbrk(slash ? slash + 1 : s, "*?[") != NULL;
            if (slash && strcspn(s, "*?[") < (size_t)(slash - s)) {
                node_err(c, v->kids[i], "policies.files[%ld]: wildcards may only be used in the file name, not in "
                                        "directories ('%s')",
                         i, show(c, s));
                continue;
            }
            char *pat = glob_pattern(c, s), *full = resolve_path(c, s);
            glob_t g;
            int gr = pat ? glob(pat, GLOB_ERR, NULL, &g) : GLOB_NOSPACE;
            size_t before = nfound;
            for (size_t j = 0; gr == 0 && j < g.gl_pathc; j++) {
                struct stat st;
                if (stat(g.gl_pathv[j], &st) != 0 || !S_ISREG(st.st_mode))
                    continue;
                char **grown = realloc(found, (nfound + 1) * sizeof(*found));
                if (!grown || !(grown[nfound] = strdup(g.gl_pathv[j]))) {
                    if (grown)
                        found = grown;
                    cx_oom(c);
                    break;
                }
                found = grown;
                nfound++;
            }
            if (gr == 0)
                globfree(&g);
            if (gr == GLOB_NOSPACE)
                cx_oom(c);
            else if (nfound == before && full)
                node_err(c, v->kids[i], wild ? "policies.files[%ld]: '%s' matches no file%s"
                                             : "policies.files[%ld]: file '%s' does not exist%s",
                         i, show_path(c, s), looked_for(c, s, full));
            free(pat);
            free(full);
        }
        if (nfound > 1)
            qsort(found, nfound, sizeof(*found), cmp_strp);
        size_t k = 0;
        for (size_t i = 0; i < nfound; i++) {
            if (k && !strcmp(found[k - 1], found[i]))
                free(found[i]);
            else
                found[k++] = found[i];
        }
        p->files = found;
        p->nfiles = k;
    }
    if ((v = map_get(n, "mode"))) {
        int w = get_word(c, v, "policies.mode", modes, 2);
        if (w >= 0)
            p->mode = w == 0 ? FX_POLICY_ENFORCE : FX_POLICY_AUDIT;
    }
}

/* --- planned: events -------------------------------------------------------------- */

static const char *const events_keys[] = {"brokers",   "spool_dir",         "spool_max_bytes", "when_full",
                                          "delivery",  "dead_letter_topic", "max_data_bytes",  "kafka",
                                          NULL};

/* "host:port,host:port" (spaces after commas allowed) → the same without
 * spaces, or NULL after an error. Names are fine here: librdkafka resolves them. */
static char *broker_list(cx *c, const ynode *n, const char *path, const char *s)
{
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    if (!f) {
        cx_oom(c);
        return NULL;
    }
    bool ok = true, first = true;
    for (const char *p = s; ok;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        const char *one = cx_printf(c, "%.*s", (int)len, p);
        const char *colon = strrchr(one, ':');
        const char *host = one;
        size_t hlen = colon ? (size_t)(colon - one) : 0;
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
            struct in6_addr a6;
            ok = inet_pton(AF_INET6, cx_printf(c, "%.*s", (int)hlen - 2, host + 1), &a6) == 1;
        } else {
            ok = hlen > 0 && host_name_ok(cx_printf(c, "%.*s", (int)hlen, host), false);
        }
        uint64_t port = 0;
        const char *end = colon ? parse_u64(colon + 1, &port) : NULL;
        ok = ok && end && !*end && port >= 1 && port <= 65535;
        if (!ok) {
            node_err(c, n, "%s: invalid broker address '%s'%s (expected embedded, or host:port,host:port)", path,
                     show(c, one), strcmp(one, s) ? cx_printf(c, " in '%s'", show(c, s)) : "");
            break;
        }
        fprintf(f, "%s%s", first ? "" : ",", one);
        first = false;
        p += strcspn(p, ",");
        if (!*p)
            break;
        p++;
    }
    if (fclose(f) != 0 || !out) {
        free(out);
        cx_oom(c);
        return NULL;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static void build_events(cx *c, const ynode *n)
{
    static const char *const fulls[] = {"reject", "drop"}, *const deliveries[] = {"async", "sync"};
    /* properties ficus sets itself: the delivery guarantee depends on them */
    static const char *const owned[] = {"bootstrap.servers", "metadata.broker.list", "enable.idempotence", "acks",
                                        "request.required.acks"};
    const char *path = "events";
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, events_keys, NULL);
    fx_events_conf *e = c->cfg->events = cx_calloc(c, 1, sizeof(*e));
    if (!e)
        return;
    e->spool_max_bytes = MIB * 1024;
    e->max_data_bytes = MIB;
    e->max_message_bytes = 1000000; /* librdkafka's default message.max.bytes */
    const ynode *v;
    const char *s;
    if ((v = require(c, n, path, "brokers")) && (s = get_nonempty(c, v, "events.brokers"))) {
        if (!strcmp(s, "embedded"))
            e->embedded = 1;
        else
            e->brokers = broker_list(c, v, "events.brokers", s);
    }
    if ((v = map_get(n, "spool_dir"))) {
        if ((s = get_nonempty(c, v, "events.spool_dir")))
            e->spool_dir = resolve_path(c, s);
    } else {
        e->spool_dir = resolve_path(c, "var/spool");
    }
    if ((v = map_get(n, "spool_max_bytes")))
        get_size(c, v, "events.spool_max_bytes", MIB, SIZE_MAX, &e->spool_max_bytes);
    int w;
    if ((v = map_get(n, "when_full")) && (w = get_word(c, v, "events.when_full", fulls, 2)) >= 0)
        e->when_full = w == 0 ? FX_SPOOL_REJECT : FX_SPOOL_DROP;
    if ((v = map_get(n, "delivery")) && (w = get_word(c, v, "events.delivery", deliveries, 2)) >= 0)
        e->delivery = w == 0 ? FX_DELIVERY_ASYNC : FX_DELIVERY_SYNC;
    if ((v = map_get(n, "dead_letter_topic")) && (s = get_str(c, v, "events.dead_letter_topic"))) {
        if (!topic_ok(s))
            node_err(c, v, "events.dead_letter_topic: invalid topic name '%s' (letters, digits, '.', '_' and '-', "
                           "at most 249)",
                     show(c, s));
        else
            e->dead_letter_topic = cx_strdup(c, s);
    }
    if ((v = map_get(n, "max_data_bytes")))
        get_size(c, v, "events.max_data_bytes", 0, 64 * MIB, &e->max_data_bytes);
    if ((v = map_get(n, "kafka")) && want(c, v, Y_MAP, "events.kafka")) {
        check_keys(c, v, "events.kafka", NULL, NULL);
        rd_kafka_conf_t *kconf = rd_kafka_conf_new();
        if (v->n && (e->kafka = cx_calloc(c, v->n, sizeof(*e->kafka)))) {
            e->nkafka = v->n;
            for (size_t i = 0; i < v->n; i++) {
                const ynode *k = MAP_KEY(v, i), *val = MAP_VAL(v, i);
                if (k->type != Y_SCALAR)
                    continue; /* reported */
                const char *kpath = pkey(c, "events.kafka", k->s);
                bool ok = k->len > 0;
                for (const char *p = k->s; ok && *p; p++)
                    ok = (*p >= 'a' && *p <= 'z') || is_digit(*p) || *p == '.' || *p == '_';
                size_t o = 0;
                while (o < sizeof(owned) / sizeof(owned[0]) && strcmp(k->s, owned[o]))
                    o++;
                if (!ok)
                    node_err(c, k, "%s: '%s' is not a librdkafka property name (like compression.type)", kpath,
                             show(c, k->s));
                else if (o < 2)
                    node_err(c, k, "%s: set by ficus from events.brokers", kpath);
                else if (o < sizeof(owned) / sizeof(owned[0]))
                    node_err(c, k, "%s: set by ficus (idempotent producer, acks=all) for the delivery guarantee",
                             kpath);
                const char *sv = get_str(c, val, kpath);
                char why[512];
                if (sv && ok && o == sizeof(owned) / sizeof(owned[0]) && kconf &&
                    rd_kafka_conf_set(kconf, k->s, sv, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
                    /* librdkafka's own check, at load time: unknown property, bad value */
                    node_err(c, strstr(why, "No such configuration property") ? k : val, "%s: %s", kpath, why);
                } else if (sv && ok) {
                    e->kafka[i].key = cx_strdup(c, k->s);
                    e->kafka[i].value = cx_strdup(c, sv);
                    if (!strcmp(k->s, "message.max.bytes"))
                        e->max_message_bytes = strtoull(sv, NULL, 10); /* librdkafka checked the number */
                }
            }
        }
        if (kconf)
            rd_kafka_conf_destroy(kconf);
    }
}

static bool build_upstream_ref(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    r->upstream = upstream_index(c, n, path);
    return r->upstream >= 0;
}

static bool build_route(cx *c, const ynode *n, const char *path, fx_route_conf *r)
{
    static const char *const auth_words[] = {"required", "optional", "none"};
    r->line = n->line;
    r->col = n->col;
    r->upstream = -1;
    r->fallback = -1;
    if (!want(c, n, Y_MAP, path))
        return false;
    check_keys(c, n, path, route_keys, route_planned);
    bool ok = true;
    const ynode *v;
    if ((v = require(c, n, path, "name"))) {
        const char *npath = pkey(c, path, "name");
        const char *s = get_str(c, v, npath);
        if (s && !valid_name(s)) {
            node_err(c, v, "%s: invalid route name '%s' (use letters, digits, '_', '.' and '-')", npath, show(c, s));
            s = NULL;
        }
        ok &= s && (r->name = cx_strdup(c, s));
    } else {
        ok = false;
    }
    bool match_ok = false;
    if ((v = require(c, n, path, "match")))
        ok &= match_ok = build_match(c, v, pkey(c, path, "match"), r);
    else
        ok = false;
    const ynode *split = map_get(n, "split");
    if (split) {
        /* the split names the upstreams; an 'upstream' beside it would be ambiguous */
        if (map_get(n, "upstream"))
            node_err(c, map_key(n, "split"), "%s: a route has either 'upstream' or 'split', not both",
                     pkey(c, path, "split"));
        ok &= build_split(c, split, pkey(c, path, "split"), r);
    } else if ((v = require(c, n, path, "upstream"))) {
        ok &= build_upstream_ref(c, v, pkey(c, path, "upstream"), r);
    } else {
        ok = false;
    }
    if ((v = map_get(n, "auth"))) {
        int a = get_word(c, v, pkey(c, path, "auth"), auth_words, 3);
        if (a < 0)
            ok = false;
        else
            r->auth = a == 0 ? FX_AUTH_REQUIRED : a == 1 ? FX_AUTH_OPTIONAL : FX_AUTH_NONE;
    }
    /* planned keys: errors here do not keep the route out of the cross checks */
    if ((v = map_get(n, "sticky")))
        build_sticky(c, v, pkey(c, path, "sticky"), r, split != NULL);
    if ((v = map_get(n, "shadow")))
        build_shadow(c, v, pkey(c, path, "shadow"), r, match_ok);
    if ((v = map_get(n, "fallback")))
        build_fallback(c, v, pkey(c, path, "fallback"), r);
    if ((v = map_get(n, "events")))
        build_route_events(c, v, pkey(c, path, "events"), r, match_ok);
    if ((v = map_get(n, "rewrite")))
        build_rewrite(c, v, pkey(c, path, "rewrite"), r, match_ok);
    if ((v = map_get(n, "retries")))
        r->retries = build_retries(c, v, pkey(c, path, "retries"));
    return ok;
}

static int cmp_route_names(const void *pa, const void *pb)
{
    const fx_route_conf *a = *(const fx_route_conf *const *)pa, *b = *(const fx_route_conf *const *)pb;
    int r = strcmp(a->name, b->name);
    return r ? r : (a > b) - (a < b);
}

/* Does route a (earlier) take every request route b (later) would match? */
static bool shadows(const fx_route_conf *a, const fx_route_conf *b)
{
    if (a->methods && (!b->methods || (b->methods & ~a->methods)))
        return false;
    if (a->host && (!b->host || strcmp(a->host, b->host)))
        return false;
    if (a->kind == FX_MATCH_PREFIX) {
        /* b's requests all start with b's text up to its first parameter */
        size_t fixed = b->kind == FX_MATCH_TEMPLATE ? strcspn(b->path, "{") : b->path_len;
        return a->path_len <= fixed && !memcmp(a->path, b->path, a->path_len);
    }
    if (b->kind == FX_MATCH_PREFIX)
        return false;
    if (a->kind == FX_MATCH_EXACT)
        return b->kind == FX_MATCH_EXACT && !strcmp(a->path, b->path);
    /* a is a template: b must have the same shape, with a's params over
     * any non-empty segment of b (b's own params included) */
    size_t nb = b->kind == FX_MATCH_TEMPLATE ? b->nsegs : 0;
    const char *bp = b->path + 1;
    size_t count = 1;
    if (b->kind == FX_MATCH_EXACT)
        for (const char *p = bp; *p; p++)
            count += *p == '/';
    else
        count = nb;
    if (count != a->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++) {
        const fx_path_seg *as = &a->segs[i];
        const char *text;
        size_t len;
        int param;
        if (b->kind == FX_MATCH_TEMPLATE) {
            text = b->segs[i].text;
            len = b->segs[i].len;
            param = b->segs[i].is_param;
        } else {
            const char *e = strchr(bp, '/');
            text = bp;
            len = e ? (size_t)(e - bp) : strlen(bp);
            param = 0;
            bp += len + 1;
        }
        if (as->is_param) {
            if (!param && len == 0)
                return false;
        } else if (param || len != as->len || memcmp(text, as->text, len)) {
            return false;
        }
    }
    return true;
}

/*
 * Unreachable routes. Comparing every pair is quadratic, which a generated
 * table of tens of thousands of routes turns into minutes, so earlier routes
 * are indexed by what a later route must share with them to be shadowed:
 * a prefix route by its prefix (looked up at each length of the later
 * route's fixed text that some prefix has), an exact route by its path, a
 * template by its segment count and first segment. shadows() decides.
 */
enum { RK_PREFIX = 1, RK_EXACT, RK_TEMPLATE };

typedef struct rslot {
    uint64_t h;
    const char *key;
    size_t len;
    size_t head;        /* newest route with this key, + 1; 0: empty slot */
} rslot;

typedef struct route_index {
    rslot *slots;
    size_t mask;
    size_t *next;       /* per route: the next older route with its key, + 1 */
    bool *plen;         /* plen[L]: some prefix route has a prefix of length L */
    size_t maxplen;
} route_index;

static uint64_t fnv_seed(int kind)
{
    return UINT64_C(14695981039346656037) ^ (uint64_t)kind;
}

static uint64_t fnv_step(uint64_t h, unsigned char ch)
{
    return (h ^ ch) * UINT64_C(1099511628211);
}

static uint64_t fnv(int kind, const char *s, size_t len)
{
    uint64_t h = fnv_seed(kind);
    for (size_t i = 0; i < len; i++)
        h = fnv_step(h, (unsigned char)s[i]);
    return h;
}

/* The slot for (kind, key): its own, or the empty one where it would go. A
 * stored key starts with its kind byte, so equal bytes of two kinds never
 * share a slot. The table is at most half full: the probe always ends. */
static rslot *ri_slot(route_index *x, int kind, uint64_t h, const char *key, size_t len)
{
    for (size_t i = (size_t)h & x->mask;; i = (i + 1) & x->mask) {
        rslot *sl = &x->slots[i];
        if (!sl->head || (sl->h == h && sl->len == len + 1 && sl->key[0] == (char)kind &&
                          !memcmp(sl->key + 1, key, len)))
            return sl;
    }
}

static void ri_add(cx *c, route_index *x, int kind, const char *key, size_t len, size_t route)
{
    uint64_t h = fnv(kind, key, len);
    rslot *sl = ri_slot(x, kind, h, key, len);
    if (!sl->head) {
        char *k = cx_alloc(c, len + 2);
        if (!k)
            return;
        k[0] = (char)kind;
        memcpy(k + 1, key, len);
        k[len + 1] = '\0';
        *sl = (rslot){h, k, len + 1, 0};
    }
    x->next[route] = sl->head;
    sl->head = route + 1;
}

/* Among the routes under one key, the earliest that shadows b. */
static size_t ri_first(const cx *c, const route_index *x, const rslot *sl, const fx_route_conf *b, size_t best)
{
    for (size_t i = sl->head; i; i = x->next[i - 1])
        if (i - 1 < best && shadows(&c->cfg->routes[i - 1], b))
            best = i - 1;
    return best;
}

/* A path's template key: segment count and first segment ("{}" for a param). */
static const char *template_key(cx *c, size_t nsegs, const char *seg0, size_t len0)
{
    return cx_printf(c, "%zu/%.*s", nsegs, (int)len0, seg0);
}

static void check_unreachable(cx *c, const ynode *n)
{
    const fx_config *cfg = c->cfg;
    size_t nr = cfg->nroutes, cap = 16;
    route_index x = {0};
    while (cap < 2 * nr)
        cap *= 2;
    for (size_t i = 0; i < nr; i++)
        if (c->route_ok[i] && cfg->routes[i].kind == FX_MATCH_PREFIX && cfg->routes[i].path_len > x.maxplen)
            x.maxplen = cfg->routes[i].path_len;
    x.mask = cap - 1;
    x.slots = calloc(cap, sizeof(*x.slots));
    x.next = calloc(nr ? nr : 1, sizeof(*x.next));
    x.plen = calloc(x.maxplen + 1, sizeof(*x.plen));
    if (!x.slots || !x.next || !x.plen) {
        cx_oom(c);
        goto out;
    }

    for (size_t j = 0; j < nr; j++) {
        if (!c->route_ok[j])
            continue;
        const fx_route_conf *b = &cfg->routes[j];
        size_t best = SIZE_MAX;

        /* earlier prefixes of b's text up to its first parameter */
        size_t fixed = b->kind == FX_MATCH_TEMPLATE ? strcspn(b->path, "{") : b->path_len;
        uint64_t h = fnv_seed(RK_PREFIX);
        for (size_t len = 1; len <= fixed && len <= x.maxplen; len++) {
            h = fnv_step(h, (unsigned char)b->path[len - 1]);
            if (x.plen[len])
                best = ri_first(c, &x, ri_slot(&x, RK_PREFIX, h, b->path, len), b, best);
        }
        /* the same exact path; templates of b's shape */
        const char *seg0 = b->path + 1;
        size_t len0 = strcspn(seg0, "/"), nsegs = 0;
        int param0 = 0;
        if (b->kind == FX_MATCH_EXACT) {
            best = ri_first(c, &x, ri_slot(&x, RK_EXACT, fnv(RK_EXACT, b->path, b->path_len), b->path,
                                                   b->path_len),
                                b, best);
            for (const char *p = b->path; *p; p++)
                nsegs += *p == '/';
        } else if (b->kind == FX_MATCH_TEMPLATE) {
            nsegs = b->nsegs;
            param0 = b->segs[0].is_param;
        }
        if (nsegs) {
            const char *keys[2] = {param0 ? NULL : template_key(c, nsegs, seg0, len0),
                                   param0 || len0 ? template_key(c, nsegs, "{}", 2) : NULL};
            for (int k = 0; k < 2; k++)
                if (keys[k])
                    best = ri_first(c, &x,
                                        ri_slot(&x, RK_TEMPLATE, fnv(RK_TEMPLATE, keys[k], strlen(keys[k])),
                                                    keys[k], strlen(keys[k])),
                                        b, best);
        }
        if (best != SIZE_MAX)
            node_err(c, n->kids[j],
                     "routes[%zu]: route '%s' can never match: routes[%zu] ('%s', line %d) takes all its requests "
                     "first",
                     j, b->name, best, cfg->routes[best].name, cfg->routes[best].line);

        /* then b joins the index for the routes after it */
        if (b->kind == FX_MATCH_PREFIX) {
            ri_add(c, &x, RK_PREFIX, b->path, b->path_len, j);
            x.plen[b->path_len] = true;
        } else if (b->kind == FX_MATCH_EXACT) {
            ri_add(c, &x, RK_EXACT, b->path, b->path_len, j);
        } else {
            const char *k = b->segs[0].is_param ? template_key(c, b->nsegs, "{}", 2)
                                                : template_key(c, b->nsegs, seg0, len0);
            ri_add(c, &x, RK_TEMPLATE, k, strlen(k), j);
        }
    }
out:
    free(x.slots);
    free(x.next);
    free(x.plen);
}

static void build_routes(cx *c, const ynode *n)
{
    const char *path = "routes";
    if (!want(c, n, Y_SEQ, path))
        return;
    if (n->n == 0) {
        node_err(c, n, "%s: must list at least one route", path);
        return;
    }
    fx_config *cfg = c->cfg;
    if (!(cfg->routes = cx_calloc(c, n->n, sizeof(*cfg->routes))) ||
        !(c->route_ok = cx_calloc(c, n->n, sizeof(*c->route_ok))))
        return;
    cfg->nroutes = n->n;
    for (size_t i = 0; i < n->n; i++)
        c->route_ok[i] = build_route(c, n->kids[i], pidx(c, path, i), &cfg->routes[i]);

    /* unique names */
    const fx_route_conf **by_name = cx_alloc(c, n->n * sizeof(*by_name));
    size_t nn = 0;
    for (size_t i = 0; by_name && i < n->n; i++)
        if (cfg->routes[i].name)
            by_name[nn++] = &cfg->routes[i];
    if (nn > 1) {
        qsort(by_name, nn, sizeof(*by_name), cmp_route_names);
        for (size_t i = 1, first = 0; i < nn; i++) {
            if (strcmp(by_name[i]->name, by_name[first]->name)) {
                first = i;
                continue;
            }
            size_t fi = (size_t)(by_name[first] - cfg->routes), li = (size_t)(by_name[i] - cfg->routes);
            const ynode *nm = map_get(n->kids[li], "name");
            node_err(c, nm, "routes[%zu].name: duplicate route name '%s' (first used by routes[%zu], line %d)", li,
                     by_name[i]->name, fi, by_name[first]->line);
            c->route_ok[li] = false;
        }
    }

    check_unreachable(c, n);
}

/* stdout | stderr | off | FILE (resolved against the config file's directory) */
static void get_sink(cx *c, const ynode *v, const char *path, int *sink, char **file)
{
    const char *s = get_str(c, v, path);
    if (!s) {
        /* reported */
    } else if (!strcmp(s, "stdout")) {
        *sink = FX_LOG_STDOUT;
    } else if (!strcmp(s, "stderr")) {
        *sink = FX_LOG_STDERR;
    } else if (!strcmp(s, "off")) {
        *sink = FX_LOG_OFF;
    } else if (!*s) {
        node_err(c, v, "%s: expected stdout, stderr, off or a file path, got ''", path);
    } else if ((*file = resolve_path(c, s))) {
        *sink = FX_LOG_FILE;
    }
}

static void build_log(cx *c, const ynode *n)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    const char *path = "log";
    fx_log_conf *l = &c->cfg->log;
    if (!want(c, n, Y_MAP, path))
        return;
    check_keys(c, n, path, log_keys, log_planned);
    const ynode *v;
    if ((v = map_get(n, "access")))
        get_sink(c, v, "log.access", &l->access, &l->access_file);
    if ((v = map_get(n, "decisions")))
        get_sink(c, v, "log.decisions", &l->decisions, &l->decisions_file);
    if ((v = map_get(n, "level"))) {
        int lv = get_word(c, v, "log.level", levels, 4);
        if (lv >= 0)
            l->level = lv;
    }
}

static int cmp_listen_addrs(const void *pa, const void *pb)
{
    const fx_listen_conf *a = *(const fx_listen_conf *const *)pa, *b = *(const fx_listen_conf *const *)pb;
    if (a->addr.salen != b->addr.salen)
        return a->addr.salen < b->addr.salen ? -1 : 1;
    int r = memcmp(&a->addr.sa, &b->addr.sa, a->addr.salen);
    return r ? r : (a > b) - (a < b);
}

/* Two listeners on one address would both bind (SO_REUSEPORT) and split
 * its traffic without a word; port 0 (any free port) may repeat. */
static void check_listen_addrs(cx *c)
{
    const fx_config *cfg = c->cfg;
    const fx_listen_conf **v = cx_alloc(c, (cfg->nlistens + 1) * sizeof(*v));
    size_t nv = 0;
    for (size_t i = 0; v && i < cfg->nlistens; i++) {
        const fx_listen_conf *l = &cfg->listens[i];
        if (!l->addr.text || addr_port(&l->addr) == 0)
            continue;
        v[nv++] = l;
        if (cfg->has_admin && addr_same(&cfg->admin, &l->addr))
            cx_err(c, l->line, l->col, "listen[%zu].address: '%s' is also the admin address", i,
                   show(c, l->addr.text));
    }
    if (nv > 1)
        qsort(v, nv, sizeof(*v), cmp_listen_addrs);
    for (size_t i = 1, first = 0; i < nv; i++) {
        if (!addr_same(&v[i]->addr, &v[first]->addr)) {
            first = i;
            continue;
        }
        cx_err(c, v[i]->line, v[i]->col, "listen[%zu].address: '%s' is already used by listen[%zu] (line %d)",
               (size_t)(v[i] - cfg->listens), show(c, v[i]->addr.text), (size_t)(v[first] - cfg->listens),
               v[first]->line);
    }
}

static void build(cx *c, const ynode *root)
{
    if (!want(c, root, Y_MAP, ""))
        return;
    check_keys(c, root, "", top_keys, top_planned);
    const ynode *v;
    c->has_events = map_get(root, "events") != NULL;
    if ((v = require(c, root, "", "listen")))
        build_listen(c, v);
    if ((v = map_get(root, "admin")))
        build_admin(c, v);
    if ((v = map_get(root, "workers")))
        build_workers(c, v);
    if ((v = map_get(root, "limits")))
        build_limits(c, v);
    if ((v = require(c, root, "", "upstreams")))
        build_upstreams(c, v);
    if ((v = require(c, root, "", "routes")))
        build_routes(c, v);
    if ((v = map_get(root, "log")))
        build_log(c, v);
    if ((v = map_get(root, "auth")))
        build_auth(c, v);
    if ((v = map_get(root, "policies"))) {
        build_policies(c, v);
        const ynode *mode = v->type == Y_MAP ? map_get(v, "mode") : NULL;
        const fx_config *cfg = c->cfg;
        if (mode && cfg->policies && cfg->policies->mode == FX_POLICY_AUDIT && cfg->log.decisions == FX_LOG_OFF)
            node_err(c, mode, "policies.mode: audit only logs the decisions it would deny, but log.decisions is off");
    }
    if ((v = map_get(root, "events")))
        build_events(c, v);
    check_listen_addrs(c);
}

/* --- loading --------------------------------------------------------------- */

static int cmp_errs(const void *pa, const void *pb)
{
    const cerr *a = pa, *b = pb;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* Sorted by position, into the caller's list. */
static void flush_errors(cx *c, fx_diags *diags)
{
    if (c->nerrs > 1)
        qsort(c->errs, c->nerrs, sizeof(*c->errs), cmp_errs);
    for (size_t i = 0; i < c->nerrs; i++) {
        if (i < MAX_SHOWN_ERRORS)
            fx_diags_add(diags, c->file, c->errs[i].line, c->errs[i].col, "%s", c->errs[i].msg);
        free(c->errs[i].msg);
    }
    if (c->errors > MAX_SHOWN_ERRORS)
        fx_diags_add(diags, c->file, 0, 0, "too many errors: %zu in all, only the first %d are shown", c->errors,
                     MAX_SHOWN_ERRORS);
    free(c->errs);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

/* SHA-256 of the bytes the snapshot was built from, as 64 hex digits: the config file and,
 * after it, for each policy file (in the order they load) its base name, a NUL and its
 * bytes — so an edited policy changes the hash /metrics and /admin/config show, and the
 * hash does not depend on the directory ficus was started from. */
static void config_hash(const fx_config *cfg, const char *buf, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, buf, len);
    for (size_t i = 0; ok && cfg->policies && i < cfg->policies->nfiles; i++) {
        const char *f = cfg->policies->files[i], *base = strrchr(f, '/');
        base = base ? base + 1 : f;
        ok = EVP_DigestUpdate(ctx, base, strlen(base) + 1);
        FILE *fp = fopen(f, "rb");
        char chunk[8192];
        size_t n;
        while (ok && fp && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
            ok = EVP_DigestUpdate(ctx, chunk, n);
        if (fp)
            fclose(fp);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != 32) {
        out[0] = '\0';
        return;
    }
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/*
 * After the config itself is valid: compile the policy files against its
 * route names (all or nothing: one error anywhere fails the load, so a
 * reload with a bad policy keeps the running set), and mark the routes
 * policies decide. Errors keep the policy file's own positions.
 */
static int load_policy_set(fx_config *cfg, fx_diags *diags)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        fx_route_conf *r = &cfg->routes[i];
        r->authz = r->auth != FX_AUTH_NONE && (cfg->auth || cfg->policies);
        r->policy_route = -1;
    }
    if (!cfg->policies)
        return 0;
    const char **names = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(char *));
    fx_policy_builder *b = NULL;
    if (names) {
        for (size_t i = 0; i < cfg->nroutes; i++)
            names[i] = cfg->routes[i].name;
        b = fx_policy_builder_new(names, cfg->nroutes);
    }
    free(names);
    if (!b) {
        fx_diags_add(diags, cfg->file, 0, 0, "out of memory loading the policies");
        return -1;
    }
    fx_authz_diags ad = {0};
    for (size_t i = 0; i < cfg->policies->nfiles; i++)
        fx_policy_builder_add_file(b, cfg->policies->files[i], &ad);
    fx_policy_set *set = fx_policy_builder_finish(b, &ad);
    for (size_t i = 0; i < ad.n && i < MAX_SHOWN_ERRORS; i++)
        fx_diags_add(diags, ad.v[i].file, ad.v[i].line, ad.v[i].col, "%s", ad.v[i].msg);
    if (!set && ad.n == 0)
        fx_diags_add(diags, cfg->file, 0, 0, "the policies could not be loaded (out of memory)");
    fx_authz_diags_free(&ad);
    if (!set)
        return -1;
    cfg->policies->set = set;
    for (size_t i = 0; i < cfg->nroutes; i++)
        cfg->routes[i].policy_route = fx_policy_set_route(set, cfg->routes[i].name, strlen(cfg->routes[i].name));
    return 0;
}

fx_config *fx_config_load_buffer(const char *name, const char *buf, size_t len, fx_diags *diags)
{
    return fx_config_load_buffer_ex(name, buf, len, 0, diags);
}

fx_config *fx_config_load_buffer_ex(const char *name, const char *buf, size_t len, unsigned allow,
                                    fx_diags *diags)
{
    if (!name)
        name = "<config>";
    if (len > MAX_FILE_BYTES) {
        fx_diags_add(diags, name, 0, 0, "the file is too large (%zu bytes; the limit is 4 MiB)", len);
        return NULL;
    }
    if (!buf) { /* NULL is an empty buffer, whatever len says */
        buf = "";
        len = 0;
    }
    cx c = {.file = name, .buf = buf, .len = len, .features = FX_FEATURES_BUILT | (allow & FX_FEAT_ALL)};
    fx_arena_init(&c.a, 16384);

    /* relative paths in the file start at its directory */
    const char *slash = strrchr(name, '/');
    fx_config *cfg = c.cfg = calloc(1, sizeof(*cfg));
    if (cfg)
        cfg->dir = !slash ? strdup("") : slash == name ? strdup("/") : strndup(name, (size_t)(slash - name));
    if (!cfg || !(cfg->file = strdup(name)) || !cfg->dir) {
        cx_oom(&c);
    } else {
        c.dir = cfg->dir;
        cfg->limits = (fx_limits_conf){
            .max_header_bytes = 32 * KIB,
            .max_body_bytes = 10 * MIB,
            .max_uri_bytes = 8 * KIB,
            .header_timeout_ms = 10000,
            .idle_timeout_ms = 60000,
            .drain_timeout_ms = 30000,
            .max_connections = 10000,
        };
        cfg->log.access = FX_LOG_STDOUT;
        cfg->log.decisions = FX_LOG_STDOUT;
        cfg->log.level = 1;
        ynode *root = read_tree(&c);
        if (root)
            build(&c, root);
        else if (!c.errors)
            cx_err(&c, 1, 1, "the configuration is empty (it needs at least 'listen', 'upstreams' and 'routes')");
        if (!cfg->workers)
            cfg->workers = online_cpus();
    }

    bool failed = c.errors > 0;
    flush_errors(&c, diags);
    if (!failed && load_policy_set(cfg, diags) < 0)
        failed = true;
    free(c.route_ok);
    fx_arena_free(&c.a);
    if (failed) {
        config_free(cfg);
        return NULL;
    }
    atomic_init(&cfg->refs, 1);
    config_hash(cfg, buf, len, cfg->hash);
    cfg->loaded_at = time(NULL);
    return cfg;
}

fx_config *fx_config_load(const char *file, fx_diags *diags)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fx_diags_add(diags, file, 0, 0, "cannot read: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > MAX_FILE_BYTES) {
        fx_diags_add(diags, file, 0, 0, "the file is too large (%jd bytes; the limit is 4 MiB)", (intmax_t)st.st_size);
        close(fd);
        return NULL;
    }
    /* read at most one byte past the limit: pipes and /proc files have no size */
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t len = 0;
    int err = buf ? 0 : ENOMEM;
    while (buf && len <= MAX_FILE_BYTES) {
        ssize_t r = read(fd, buf + len, MAX_FILE_BYTES + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = errno;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (err) {
        fx_diags_add(diags, file, 0, 0, "cannot read: %s", strerror(err));
        free(buf);
        return NULL;
    }
    if (len > MAX_FILE_BYTES) {
        fx_diags_add(diags, file, 0, 0, "the file is too large (more than 4 MiB)");
        free(buf);
        return NULL;
    }
    fx_config *cfg = fx_config_load_buffer(file, buf, len, diags);
    free(buf);
    return cfg;
}

/*
 * policy_internal.h — what the policy files of libfxauthz share: the
 * expression compiler (expr.c), the policy set and its builder (policy.c)
 * and the YAML readers of policy files and policy tests (policy_file.c).
 * Not installed, not for the gateway: it uses ficus_authz.h only.
 *
 *   fx_src_pos, fx_authz_diag_add   positions and diagnostics
 *   fx_policy_spec, _builder_add     one policy as read from a file, handed
 *                                    to the builder, which checks what needs
 *                                    the whole set (ids, routes) and compiles
 *   fx_expr_*                        compile once, evaluate with no allocation
 *
 * An fx_authz_doc is a jansson json_t (DOC_JSON / JSON_DOC convert).
 */
#ifndef FX_AUTHZ_POLICY_INTERNAL_H
#define FX_AUTHZ_POLICY_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ficus_authz.h"

#define DOC_JSON(d) ((const json_t *)(const void *)(d))
#define JSON_DOC(j) ((fx_authz_doc *)(void *)(j))

/* Limits shared by the loaders (docs/policy-language.md lists them). */
#define FX_POLICY_MAX_FILE_BYTES ((size_t)4 << 20)
#define FX_POLICY_MAX_EXPR_BYTES 4096
#define FX_POLICY_MAX_ID_BYTES 128
#define FX_POLICY_MAX_POLICIES 100000
#define FX_EXPR_MAX_DEPTH 32 /* nesting of parentheses, operators and calls */

/* ---- positions and diagnostics ------------------------------------------------------- */

typedef struct fx_src_pos {
    int line, col; /* 1-based; 0 when unknown */
} fx_src_pos;

/* Appends a diagnostic; `d` may be NULL (the caller wants none). Out of memory, the message
 * is dropped: callers decide success by their return value, never by d->n. */
void fx_authz_diag_add(fx_authz_diags *d, const char *file, int line, int col, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));

/* Are objects and arrays nested more than `max` levels (a scalar inside `max` is fine)?
 * The limit of every JSON document the library takes (policy.c). */
int fx_json_too_deep(const json_t *j, int max);

/* The candidate `got` is probably a typo of (the same letters in another case, or within two
 * edits, one for words of three letters or fewer), or NULL: the "did you mean" of every
 * message. `cands` has ncands entries or ends at a NULL (ncands SIZE_MAX). policy_file.c. */
const char *fx_authz_closest(const char *got, size_t len, const char *const *cands, size_t ncands);

/* ---- one policy, as read from a file -------------------------------------------------- */

typedef struct fx_policy_spec {
    const char *file;
    fx_src_pos pos; /* the policy's list item */
    const char *id;
    size_t idlen;
    fx_src_pos id_pos;
    fx_policy_effect effect;
    int has_routes; /* `routes` given (then nroutes >= 1) */
    const fx_authz_str *routes;
    const fx_src_pos *route_pos;
    size_t nroutes;
    int has_methods;
    const fx_authz_str *methods; /* upper-case method tokens, checked by the reader */
    const fx_src_pos *method_pos;
    size_t nmethods;
    const char *when; /* the expression text (the YAML scalar's value) */
    size_t whenlen;
    fx_src_pos when_pos; /* the scalar */
    /* Maps a byte offset in `when` to its position in the file (the reader knows the
     * scalar's style: quotes, escapes, folded lines). */
    void (*when_map)(void *arg, size_t off, fx_src_pos *out);
    void *when_map_arg;
} fx_policy_spec;

/* Checks what needs the whole set (duplicate ids, unknown routes), compiles `when`, and
 * adds the policy. 0, or -1 with positioned diagnostics (the builder is then failed).
 * Everything `spec` points to (strings, positions, when_map and its argument) is borrowed
 * for this call only; the builder copies what it keeps. Names reach messages as they are:
 * a caller other than policy_file.c must refuse control characters in ids and routes. */
int fx_policy_builder_add(fx_policy_builder *b, const fx_policy_spec *spec, fx_authz_diags *d);
/* A reader found an error of its own: the builder is failed (finish returns NULL). */
void fx_policy_builder_fail(fx_policy_builder *b);

/* ---- expressions (expr.c) ------------------------------------------------------------- */

typedef struct fx_expr fx_expr;

typedef struct fx_expr_error {
    size_t offset; /* byte offset in the source */
    char msg[256];
} fx_expr_error;

/* Compiles `src` (not NUL-terminated). NULL with `err` set. The result keeps a copy of
 * the source (explain quotes from it). */
fx_expr *fx_expr_compile(const char *src, size_t len, fx_expr_error *err);
void fx_expr_free(fx_expr *e);
/* FX_AUTHZ_NEEDS_* of this expression. */
unsigned fx_expr_needs(const fx_expr *e);

/* The header and query names the expression reads by name (request.headers['x-tenant'],
 * request.query.page), one call each; returns FX_EXPR_READS_* bits for reads by a computed
 * name (request.headers[token.h]), which may read any name. */
#define FX_EXPR_READS_HEADER 1
#define FX_EXPR_READS_QUERY 2
unsigned fx_expr_reads(const fx_expr *e, void (*fn)(void *arg, int kind, const char *name, size_t len),
                       void *arg);

/* Evaluates to true (1) or not (0: false, missing fields, type mismatches, non-boolean). */
int fx_expr_eval(const fx_expr *e, const fx_authz_request *req);
/* As fx_expr_eval; on 0 also says which part was false and the first missing field. */
int fx_expr_explain(const fx_expr *e, const fx_authz_request *req, fx_authz_str *why,
                    fx_authz_str *missing);

#endif

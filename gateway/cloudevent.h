/*
 * cloudevent.h — a change event as CloudEvents 1.0 structured JSON (the
 * event contract of DESIGN.md), and the pieces it is made of: the key
 * template, the id (UUIDv7), the time, and the JSON check that decides
 * whether a captured body is embedded as JSON.
 *
 * Pure functions of their inputs (plus OpenSSL's RAND_bytes for ids): no
 * libevent, no librdkafka, callable from any thread.
 */
#ifndef FX_CLOUDEVENT_H
#define FX_CLOUDEVENT_H

#include <stddef.h>
#include <stdint.h>

#include "ficus_authz.h"
#include "slice.h"

/* Why a body is not in the event although the route asks for it. */
enum fx_ce_omitted {
    FX_CE_DATA_COMPLETE = 0,   /* data present (or data: none) */
    FX_CE_DATA_TOO_LARGE,      /* the body was larger than events.max_data_bytes */
    FX_CE_DATA_INCOMPLETE,     /* the body did not arrive whole (peer closed, error) */
};

typedef struct fx_ce_param {
    fx_slice name, value;      /* a path parameter, as the router bound it (raw) */
} fx_ce_param;

/*
 * Renders a key template: literal text, {param} (a path parameter,
 * percent-decoded; a decoded value must be valid UTF-8 without control
 * characters), {token.CLAIM} (fx_jwt_claim_render: strings as is, integers
 * in decimal; dotted names walk into objects). The template was checked at
 * config load (names exist), so the only runtime failures are a claim the
 * token lacks (or null, or not a string or integer; or no token at all: an
 * auth: optional route), a bad parameter value, or the result being empty
 * or longer than cap - 1 (cap ≥ 2). out is "" after a failure; why may be
 * NULL.
 * Returns the length written to out (NUL-terminated), or -1 with a sentence
 * in why ("the token has no 'tenant' claim", ...).
 *
 * Parameters: %XX (either case) decodes, a '%' without two hex digits is an
 * error, '+' stays '+'. "Control characters" are C0, DEL and C1 (U+0080 to
 * U+009F). A decoded '/' is accepted: a Kafka key is opaque bytes, and
 * http1.c already refuses "%2f" in request paths, so it cannot make the
 * router and the upstream see different entities.
 * Claims: only strings and integers (the type is read from the claims, so
 * the string "true" is accepted and the boolean true refused); a string
 * claim with a control character is refused like a parameter.
 */
long fx_ce_render_key(const char *tmpl, const fx_ce_param *params, size_t nparams, const fx_jwt_claims *claims,
                      char *out, size_t cap, char *why, size_t whylen);

/* A UUIDv7 (RFC 9562: 48-bit Unix ms, version 7, variant 10, 74 random bits
 * from RAND_bytes) in its 36-character lower-case form + NUL. Ids sort by
 * their ms; within one ms the order is random (no counter). -1 if RAND_bytes
 * failed. */
int fx_ce_uuid7(uint64_t unix_ms, char out[37]);
/* The same from 10 random bytes the caller drew from a CSPRNG (a worker draws them in bulk:
 * fx_worker_random), without a RAND_bytes call per id. */
void fx_ce_uuid7_from(uint64_t unix_ms, const unsigned char rnd[10], char out[37]);

/* RFC 3339 UTC with milliseconds: "2026-11-26T12:00:00.000Z" (24 chars + NUL).
 * Instants after 9999-12-31T23:59:59.999Z are written as that one. */
void fx_ce_time(uint64_t unix_ms, char out[25]);

/*
 * Strict RFC 8259 JSON text check (one value, optional surrounding
 * whitespace, UTF-8 validated, nesting ≤ 64). 1 valid, 0 not.
 * Escapes are checked (\u surrogates must pair: high then low); raw control
 * characters, overlong UTF-8, encoded surrogates and code points above
 * U+10FFFF are invalid. Numbers are not range-checked (RFC 8259 allows any
 * size; 1e400 is valid). Linear time, no allocation, no recursion.
 */
int fx_ce_json_valid(const char *p, size_t n);

/* Is this Content-Type a JSON media type (application/json, or any
 * type/subtype with the +json suffix, parameters ignored, any case)? */
int fx_ce_content_type_is_json(fx_slice content_type);

typedef struct fx_ce_input {
    const char *id;            /* fx_ce_uuid7 */
    const char *source_route;  /* route name: source "/ficus/<route>" */
    const char *type;          /* events.type */
    const char *key;           /* the rendered key: subject and partitionkey */
    uint64_t time_ms;
    fx_slice request_id;
    const char *actor;         /* token.sub, or NULL (anonymous: no ficusactor) */
    fx_slice method;
    int status;
    /* data: has_data 0 for "data: none" (no data, no datacontenttype) */
    int has_data;
    fx_slice content_type;     /* of the captured body; may be empty */
    const char *body;          /* the captured body (when omitted == COMPLETE) */
    size_t body_len;
    int omitted;               /* enum fx_ce_omitted */
} fx_ce_input;

/*
 * The event as one JSON object, malloc'ed (*out, *outlen; NUL-terminated).
 * Attribute order: specversion, id, source, type, subject, partitionkey,
 * time, datacontenttype, data | data_base64, ficusrequestid, ficusactor,
 * ficusmethod, ficusstatus, ficusdataomitted. The body goes in as
 *   - JSON ("data": <the body as is>) when the content type is JSON and
 *     fx_ce_json_valid() says it is; datacontenttype = the content type
 *   - a string ("data": "...") when it is valid UTF-8; datacontenttype = the
 *     content type, or "text/plain; charset=utf-8" when there was none
 *   - base64 ("data_base64") otherwise; datacontenttype = the content type,
 *     or "application/octet-stream"
 * When omitted != COMPLETE there is no data and "ficusdataomitted" is
 * "too_large" or "incomplete" (and no datacontenttype: it describes data).
 * With has_data 0, omitted is ignored. A content type of only spaces counts
 * as none. Strings are escaped as JSON requires ('"', '\\', control
 * characters; short forms \n \t ... where JSON has them, else \u00XX); an
 * ill-formed UTF-8 sequence in a string from outside (request id, method,
 * content type, key, actor, ...) becomes U+FFFD, so the event is always
 * valid JSON. A NULL const char * member counts as "" (actor: absent).
 * The output is sized exactly and allocated once. 0, or -1 when out of
 * memory (*out NULL).
 */
int fx_ce_build(const fx_ce_input *in, char **out, size_t *outlen);

#endif

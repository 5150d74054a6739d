/*
 * http1.c — strict HTTP/1.1 message heads and chunked bodies.
 *
 *   fx_http_scan_head      find the end of a head; raw byte checks llhttp skips
 *   fx_http_parse_request  llhttp over the head + our own semantic checks
 *   fx_http_parse_response the same for upstream responses
 *   fx_http_chunked_*      chunked body decoding with llhttp
 *   classify_header        which headers the proxy drops, replaces or reads
 *
 * Debian's llhttp 8.1 in strict mode still lets through several things
 * that are request-smuggling vectors when two parsers disagree (obs-fold,
 * bare LF, empty header names, HTTP/0.9 and 2.0 request lines, missing or
 * duplicate Host, "gzip, chunked", Transfer-Encoding on HTTP/1.0). Every
 * one of those is refused here, before any byte goes to an upstream. The
 * rule is: refuse, never repair.
 */
#include "http1.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- raw scan ------------------------------------------------------------ */

static int scan_head(const char *buf, size_t len, size_t max_head, size_t max_uri, int is_request,
                     size_t *head_len, size_t *skip, fx_http_error *err)
{
    size_t i = 0;
    /* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line */
    while (is_request && i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n' && i < 8)
        i += 2;
    *skip = i;
    const size_t start = i;
    if (max_head && len > start + max_head)
        len = start + max_head;

    /* line by line with memchr: the head is mostly long runs of ordinary bytes */
    for (size_t line = start; line < len;) {
        const char *seg = buf + line;
        const char *nl = memchr(seg, '\n', len - line);
        size_t seglen = nl ? (size_t)(nl - seg) : len - line; /* bytes before the LF */
        const char *nul = memchr(seg, '\0', seglen);
        if (nul) {
            *err = (fx_http_error){400, "NUL byte in message head", (size_t)(nul - buf) - start};
            return -1;
        }
        const char *cr = memchr(seg, '\r', seglen);
        if (cr && (nl ? cr != nl - 1 : cr != buf + len - 1)) {
            *err = (fx_http_error){400, "bare CR in message head", (size_t)(cr - buf) - start};
            return -1;
        }
        if (line == start && is_request && max_uri) {
            const char *sp = memchr(seg, ' ', seglen);
            if (sp) {
                const char *t = sp + 1, *tend = seg + seglen;
                const char *sp2 = memchr(t, ' ', (size_t)(tend - t));
                size_t tlen = (size_t)((sp2 ? sp2 : tend) - t);
                if (tlen > max_uri) {
                    *err = (fx_http_error){414, "request target is longer than limits.max_uri_bytes",
                                           (size_t)(t - buf) - start};
                    return -1;
                }
            }
        }
        if (!nl)
            break; /* incomplete line: wait for more */
        size_t lf = (size_t)(nl - buf);
        if (seglen == 0 || nl[-1] != '\r') {
            *err = (fx_http_error){400, "bare LF in message head (lines must end with CRLF)",
                                   lf - start};
            return -1;
        }
        if (seglen == 1) {
            if (line == start) {
                *err = (fx_http_error){400, "empty lines before the request line", 0};
                return -1;
            }
            *head_len = lf + 1 - start;
            return 1;
        }
        if (lf + 1 < len && (buf[lf + 1] == ' ' || buf[lf + 1] == '\t')) {
            *err = (fx_http_error){400,
                                   line == start ? "whitespace at the start of a header line"
                                                 : "obsolete line folding (obs-fold) is not accepted",
                                   lf + 1 - start};
            return -1;
        }
        line = lf + 1;
    }
    if (max_head && len >= start + max_head) {
        *err = (fx_http_error){431, "request head is larger than limits.max_header_bytes",
                               max_head};
        if (!is_request)
            err->detail = "upstream response head too large";
        return -1;
    }
    return 0;
}

int fx_http_scan_head(const char *buf, size_t len, size_t max_head, size_t max_uri, int is_request,
                      size_t *head_len, size_t *skip, fx_http_error *err)
{
    int rc = scan_head(buf, len, max_head, max_uri, is_request, head_len, skip, err);
    if (rc < 0 && !is_request)
        err->status = 502; /* a bad upstream response is a bad gateway, whatever the flaw */
    return rc;
}

/* ---- llhttp callbacks for heads --------------------------------------------- */

typedef struct head_ctx {
    fx_arena *arena;
    fx_http_msg *msg;
    size_t cap;
    int in_value;      /* last callback was a value */
    const char *fail;  /* our own refusal from inside a callback */
    int fail_status;
} head_ctx;

static int grow_headers(head_ctx *h)
{
    size_t ncap = h->cap ? h->cap * 2 : 32;
    fx_http_header *nv = fx_arena_alloc(h->arena, ncap * sizeof(*nv));
    if (!nv)
        return -1;
    if (h->msg->nheaders)
        memcpy(nv, h->msg->headers, h->msg->nheaders * sizeof(*nv));
    h->msg->headers = nv;
    h->cap = ncap;
    return 0;
}

static int extend(fx_slice *s, const char *at, size_t n)
{
    if (!s->p) {
        *s = fx_slice_make(at, n);
        return 0;
    }
    if (s->p + s->n != at)
        return -1; /* the head is contiguous; pieces must be adjacent */
    s->n += n;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    head_ctx *h = p->data;
    return extend(&h->msg->target, at, n) ? -1 : 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    head_ctx *h = p->data;
    return extend(&h->msg->method_s, at, n) ? -1 : 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    head_ctx *h = p->data;
    return extend(&h->msg->reason, at, n) ? -1 : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    head_ctx *h = p->data;
    fx_http_msg *m = h->msg;
    if (h->in_value || m->nheaders == 0 || h->msg->headers[m->nheaders - 1].value.p) {
        if (m->nheaders == h->cap && grow_headers(h))
            return -1;
        m->headers[m->nheaders++] = (fx_http_header){FX_SLICE_NULL, FX_SLICE_NULL, 0};
        h->in_value = 0;
    }
    return extend(&m->headers[m->nheaders - 1].name, at, n) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    head_ctx *h = p->data;
    fx_http_msg *m = h->msg;
    if (m->nheaders == 0)
        return -1;
    h->in_value = 1;
    fx_http_header *hd = &m->headers[m->nheaders - 1];
    if (!hd->value.p) {
        hd->value = fx_slice_make(at, n);
        return 0;
    }
    return extend(&hd->value, at, n) ? -1 : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    head_ctx *h = p->data;
    fx_http_msg *m = h->msg;
    if (m->nheaders == 0)
        return -1;
    fx_http_header *hd = &m->headers[m->nheaders - 1];
    if (!hd->value.p)
        hd->value = fx_slice_make(hd->name.p + hd->name.n, 0); /* empty value */
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    /* stop right after the head: bodies are framed by the caller */
    return HPE_PAUSED;
}

static const llhttp_settings_t head_settings = {
    .on_url = on_url,
    .on_method = on_method,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

/* ---- semantic checks ---------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    if (isalnum(c))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int valid_token(fx_slice s)
{
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!is_tchar((unsigned char)s.p[i]))
            return 0;
    return 1;
}

/* field-value: VCHAR, obs-text, SP, HTAB; no CR, LF, NUL or other controls */
static int valid_value(fx_slice s)
{
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Host = uri-host [ ":" port ]; reg-name or IP-literal. Returns 0 ok. */
int fx_http_split_host(fx_slice host, fx_slice *name)
{
    const char *p = host.p, *end = host.p + host.n;
    if (host.n == 0) {
        *name = host;
        return 0; /* empty Host is allowed for HTTP/1.1 only with an authority-less URI; refuse below */
    }
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', host.n);
        if (!rb)
            return -1;
        for (const char *q = p + 1; q < rb; q++)
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
                return -1;
        *name = fx_slice_make(p, (size_t)(rb + 1 - p));
        if (rb + 1 == end)
            return 0;
        if (rb[1] != ':')
            return -1;
        colon = rb + 1;
    } else {
        for (const char *q = p; q < end; q++) {
            unsigned char c = (unsigned char)*q;
            if (c == ':') {
                colon = q;
                break;
            }
            if (!(isalnum(c) || strchr("-._~!$&'()*+,;=%", c)))
                return -1;
        }
        *name = fx_slice_make(p, (size_t)((colon ? colon : end) - p));
        if (name->n == 0)
            return -1;
    }
    if (colon) {
        size_t digits = (size_t)(end - colon - 1);
        if (digits > 5)
            return -1;
        for (const char *q = colon + 1; q < end; q++)
            if (!isdigit((unsigned char)*q))
                return -1;
    }
    return 0;
}

static int parse_content_length(fx_slice v, uint64_t *out)
{
    if (v.n == 0 || v.n > 18)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = n;
    return 0;
}

/* Calls fn for each comma-separated, trimmed, non-empty element of v. */
#define FOREACH_LIST_ITEM(v, item, body)                                                           \
    do {                                                                                           \
        const char *_p = (v).p, *_end = (v).p + (v).n;                                           \
        while (_p < _end) {                                                                        \
            const char *_s = _p;                                                                   \
            while (_p < _end && *_p != ',')                                                        \
                _p++;                                                                              \
            fx_slice item = fx_slice_trim(fx_slice_make(_s, (size_t)(_p - _s)));                  \
            if (_p < _end)                                                                         \
                _p++;                                                                              \
            if (item.n == 0)                                                                       \
                continue;                                                                          \
            body                                                                                   \
        }                                                                                          \
    } while (0)

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    "proxy-authenticate", "proxy-authorization", NULL,
};

static unsigned classify_header(fx_slice name)
{
    switch (name.n) {
    case 4:
        if (fx_slice_ieq_lit(name, "host"))
            return FX_HDR_HOST;
        break;
    case 6:
        if (fx_slice_ieq_lit(name, "expect"))
            return FX_HDR_EXPECT;
        break;
    case 14:
        if (fx_slice_ieq_lit(name, "content-length"))
            return FX_HDR_FRAMING;
        break;
    case 17:
        if (fx_slice_ieq_lit(name, "transfer-encoding"))
            return FX_HDR_FRAMING;
        if (fx_slice_ieq_lit(name, "x-forwarded-proto"))
            return FX_HDR_XFWD;
        break;
    case 15:
        if (fx_slice_ieq_lit(name, "x-forwarded-for"))
            return FX_HDR_XFF;
        break;
    case 16:
        if (fx_slice_ieq_lit(name, "x-forwarded-host"))
            return FX_HDR_XFWD;
        break;
    case 12:
        if (fx_slice_ieq_lit(name, "x-request-id"))
            return FX_HDR_REQUEST_ID;
        break;
    default:
        break;
    }
    for (int i = 0; hop_by_hop[i]; i++)
        if (fx_slice_ieq_lit(name, hop_by_hop[i]))
            return FX_HDR_HOP | (fx_slice_ieq_lit(name, "upgrade") ? FX_HDR_UPGRADE : 0);
    return 0;
}

static int fail(fx_http_error *err, int status, const char *detail, const char *head,
                const char *at)
{
    err->status = status;
    err->detail = detail;
    err->offset = at && at >= head ? (size_t)(at - head) : 0;
    return -1;
}

/*
 * Paths that the router and an upstream could resolve differently: dot-segments
 * ("/./", "/../", also spelled "%2e" and with path parameters like "..;x", which
 * some servers strip), and encoded slashes or backslashes ("%2f", "%5c") that a
 * decoding upstream turns into separators.
 */
int fx_http_path_has_dot_segment(fx_slice path)
{
    const char *p = path.p, *end = path.p + path.n;
    for (const char *q = p; q + 2 < end; q++)
        if (q[0] == '%' && ((q[1] == '2' && (q[2] == 'f' || q[2] == 'F')) ||
                            (q[1] == '5' && (q[2] == 'c' || q[2] == 'C'))))
            return 1;
    while (p < end) {
        if (*p++ != '/')
            continue;
        const char *s = p;
        while (p < end && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        const char *semi = memchr(s, ';', n);
        if (semi)
            n = (size_t)(semi - s);
        int dots = 0, other = 0;
        for (size_t i = 0; i < n && !other;) {
            if (s[i] == '.') {
                dots++;
                i++;
            } else if (i + 3 <= n && s[i] == '%' && s[i + 1] == '2' &&
                       (s[i + 2] == 'e' || s[i + 2] == 'E')) {
                dots++;
                i += 3;
            } else {
                other = 1;
            }
        }
        if (!other && (dots == 1 || dots == 2))
            return 1;
    }
    return 0;
}

static int check_target(fx_http_msg *m, const char *head, fx_http_error *err)
{
    fx_slice t = m->target;
    if (t.n == 0)
        return fail(err, 400, "empty request target", head, t.p);
    for (size_t i = 0; i < t.n; i++) {
        unsigned char c = (unsigned char)t.p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
            c == '^' || c == '`' || c == '{' || c == '|' || c == '}')
            return fail(err, 400, "invalid character in request target", head, t.p + i);
    }
    if (memchr(t.p, '#', t.n))
        return fail(err, 400, "fragment in request target", head, memchr(t.p, '#', t.n));
    fx_slice path = t;
    if (t.p[0] == '/') {
        /* origin-form */
    } else if (t.n == 1 && t.p[0] == '*') {
        if (m->method != HTTP_OPTIONS)
            return fail(err, 400, "asterisk-form target is only valid for OPTIONS", head, t.p);
        m->path = t;
        m->query = FX_SLICE_NULL;
        return 0;
    } else if (t.n > 7 && strncasecmp(t.p, "http://", 7) == 0) {
        /* absolute-form (RFC 9112 §3.2.2): its authority replaces Host */
        const char *a = t.p + 7, *end = t.p + t.n;
        const char *slash = a;
        while (slash < end && *slash != '/' && *slash != '?')
            slash++;
        fx_slice authority = fx_slice_make(a, (size_t)(slash - a));
        if (authority.n == 0 || memchr(authority.p, '@', authority.n))
            return fail(err, 400, "absolute-form target without a valid authority", head, a);
        m->host = authority;
        m->absolute_form = 1;
        path = fx_slice_make(slash, (size_t)(end - slash));
        if (path.n == 0 || *slash == '?') {
            /* "http://host" or "http://host?q": the path is "/" (RFC 9112 §3.2.2) */
            m->query = slash < end ? fx_slice_make(slash + 1, (size_t)(end - slash - 1))
                                   : FX_SLICE_NULL;
            m->path = FX_SLICE_LIT("/");
            return 0;
        }
    } else {
        return fail(err, 400, "request target must be origin-form (\"/path\") or absolute-form",
                    head, t.p);
    }
    const char *q = memchr(path.p, '?', path.n);
    if (q) {
        m->query = fx_slice_make(q + 1, (size_t)(path.p + path.n - q - 1));
        path.n = (size_t)(q - path.p);
    } else {
        m->query = FX_SLICE_NULL;
    }
    if (fx_http_path_has_dot_segment(path))
        return fail(err, 400,
                    "dot-segments or encoded slashes (\"/../\", \"%2e%2e\", \"%2f\") in the request path",
                    head, path.p);
    m->path = path;
    return 0;
}

/* Connection header tokens: close / keep-alive / upgrade / names of hop-by-hop headers. */
static void apply_connection_tokens(fx_http_msg *m, int *has_close, int *has_keepalive,
                                    int *has_upgrade)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        fx_http_header *h = &m->headers[i];
        if (!fx_slice_ieq_lit(h->name, "connection"))
            continue;
        FOREACH_LIST_ITEM(h->value, tok, {
            if (fx_slice_ieq_lit(tok, "close"))
                *has_close = 1;
            else if (fx_slice_ieq_lit(tok, "keep-alive"))
                *has_keepalive = 1;
            else if (fx_slice_ieq_lit(tok, "upgrade"))
                *has_upgrade = 1;
            for (size_t j = 0; j < m->nheaders; j++)
                if (fx_slice_ieq(m->headers[j].name, tok) &&
                    !(m->headers[j].flags & (FX_HDR_FRAMING | FX_HDR_HOST)))
                    m->headers[j].flags |= FX_HDR_HOP;
        });
    }
}

static int check_framing(fx_http_msg *m, const char *head, fx_http_error *err, int status,
                         int is_request)
{
    const fx_http_header *cl = NULL, *te = NULL;
    for (size_t i = 0; i < m->nheaders; i++) {
        fx_http_header *h = &m->headers[i];
        if (!(h->flags & FX_HDR_FRAMING))
            continue;
        if (h->name.n == 14) {
            if (cl)
                return fail(err, status, "more than one Content-Length header", head, h->name.p);
            cl = h;
        } else {
            if (te)
                return fail(err, status, "more than one Transfer-Encoding header", head,
                            h->name.p);
            te = h;
        }
    }
    if (cl && te)
        return fail(err, status, "both Content-Length and Transfer-Encoding", head, te->name.p);
    if (te) {
        if (m->http_minor == 0)
            return fail(err, status, "Transfer-Encoding in an HTTP/1.0 message", head,
                        te->name.p);
        if (!fx_slice_ieq_lit(fx_slice_trim(te->value), "chunked"))
            return fail(err, status,
                        is_request ? "Transfer-Encoding other than a single \"chunked\""
                                   : "upstream sent a Transfer-Encoding other than \"chunked\"",
                        head, te->value.p);
        m->body = FX_BODY_CHUNKED;
    } else if (cl) {
        if (parse_content_length(fx_slice_trim(cl->value), &m->content_length))
            return fail(err, status, "invalid Content-Length", head, cl->value.p);
        m->body = m->content_length ? FX_BODY_LENGTH : FX_BODY_NONE;
    } else {
        m->body = is_request ? FX_BODY_NONE : FX_BODY_EOF;
    }
    return 0;
}

static int run_llhttp(llhttp_type_t type, head_ctx *hc, const char *head, size_t len,
                      fx_http_error *err, int status)
{
    llhttp_t parser;
    llhttp_init(&parser, type, &head_settings);
    parser.data = hc;
    llhttp_errno_t e = llhttp_execute(&parser, head, len);
    if (e != HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&parser);
        const char *reason = llhttp_get_error_reason(&parser);
        if (e == HPE_OK)
            return fail(err, status, "incomplete message head", head, head + len);
        (void)reason;
        /* llhttp's reasons are static strings */
        return fail(err, status, reason && *reason ? reason : "malformed message head", head,
                    pos);
    }
    const char *pos = llhttp_get_error_pos(&parser);
    if (pos != head + len)
        return fail(err, status, "bytes after the end of the head", head, pos);
    if (parser.http_major != 1 || parser.http_minor > 1)
        return fail(err, status, "HTTP version must be 1.0 or 1.1", head, head);
    hc->msg->http_minor = parser.http_minor;
    if (type == HTTP_REQUEST)
        hc->msg->method = parser.method;
    else
        hc->msg->status = parser.status_code;
    return 0;
}

static int check_header_lines(fx_http_msg *m, const char *head, fx_http_error *err, int status)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        fx_http_header *h = &m->headers[i];
        if (!valid_token(h->name))
            return fail(err, status, h->name.n ? "invalid character in header name"
                                               : "empty header name",
                        head, h->name.p);
        h->value = fx_slice_trim(h->value);
        if (!valid_value(h->value))
            return fail(err, status, "control character in header value", head, h->value.p);
        h->flags = classify_header(h->name);
    }
    return 0;
}

/* Version token exactly "HTTP/1.0" or "HTTP/1.1" (llhttp accepts more, e.g. 0.9 or lower case). */
static int check_version_text(const char *p, size_t n)
{
    return n == 8 && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '0' || p[7] == '1');
}

int fx_http_parse_request(fx_arena *arena, const char *head, size_t len, fx_http_msg *m,
                          fx_http_error *err)
{
    memset(m, 0, sizeof(*m));
    head_ctx hc = {.arena = arena, .msg = m};
    if (run_llhttp(HTTP_REQUEST, &hc, head, len, err, 400))
        return -1;
    m->head_len = len;

    /* request line: METHOD SP target SP HTTP/1.x CRLF, single spaces */
    const char *eol = memchr(head, '\r', len);
    if (!m->method_s.p || !m->target.p || !eol)
        return fail(err, 400, "malformed request line", head, head);
    if (m->method_s.p != head || head[m->method_s.n] != ' ' ||
        m->target.p != head + m->method_s.n + 1 || m->target.p[m->target.n] != ' ')
        return fail(err, 400, "request line must be METHOD SP target SP version", head, head);
    const char *ver = m->target.p + m->target.n + 1;
    if (!check_version_text(ver, (size_t)(eol - ver)))
        return fail(err, 400, "HTTP version must be HTTP/1.0 or HTTP/1.1", head, ver);

    if (m->method == HTTP_CONNECT || m->method == HTTP_TRACE)
        return fail(err, 405, "method not allowed at this gateway", head, head);
    if (check_header_lines(m, head, err, 400))
        return -1;
    if (check_target(m, head, err))
        return -1;

    /* Host: exactly one in HTTP/1.1; at most one in 1.0 */
    const fx_http_header *host = NULL;
    for (size_t i = 0; i < m->nheaders; i++) {
        if (!(m->headers[i].flags & FX_HDR_HOST))
            continue;
        if (host)
            return fail(err, 400, "more than one Host header", head, m->headers[i].name.p);
        host = &m->headers[i];
    }
    if (!host && m->http_minor == 1)
        return fail(err, 400, "missing Host header (required in HTTP/1.1)", head, head + len);
    if (host) {
        fx_slice hn;
        if (fx_http_split_host(host->value, &hn) || (host->value.n == 0 && !m->absolute_form))
            return fail(err, 400, "invalid Host header", head, host->value.p);
        if (!m->absolute_form)
            m->host = host->value;
    }
    if (m->host.p && fx_http_split_host(m->host, &m->host_name))
        return fail(err, 400, "invalid authority in request target", head, m->host.p);

    if (check_framing(m, head, err, 400, 1))
        return -1;

    int has_close = 0, has_keepalive = 0, has_upgrade = 0;
    apply_connection_tokens(m, &has_close, &has_keepalive, &has_upgrade);
    m->keep_alive = m->http_minor == 1 ? !has_close : (has_keepalive && !has_close);

    for (size_t i = 0; i < m->nheaders; i++) {
        fx_http_header *h = &m->headers[i];
        if (h->flags & FX_HDR_EXPECT) {
            if (!fx_slice_ieq_lit(h->value, "100-continue"))
                return fail(err, 417, "only \"Expect: 100-continue\" is supported", head,
                            h->value.p);
            if (m->http_minor == 1)
                m->expect_continue = 1;
        } else if (h->flags & FX_HDR_REQUEST_ID) {
            /* keep a client's id only if it is short and plain; otherwise we make our own */
            int ok = h->value.n > 0 && h->value.n <= 128;
            for (size_t k = 0; ok && k < h->value.n; k++) {
                unsigned char c = (unsigned char)h->value.p[k];
                ok = isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
            }
            if (ok && !m->request_id.p)
                m->request_id = h->value;
        } else if ((h->flags & FX_HDR_UPGRADE) && has_upgrade && m->http_minor == 1) {
            /* h2c would let a client speak HTTP/2 past our parser: never tunnel it */
            int h2c = 0;
            FOREACH_LIST_ITEM(h->value, tok, {
                if (fx_slice_ieq_lit(tok, "h2c"))
                    h2c = 1;
            });
            if (!h2c)
                m->upgrade = 1;
        }
    }
    if (m->upgrade && m->body != FX_BODY_NONE)
        return fail(err, 400, "an Upgrade request must not have a body", head, head);
    return 0;
}

int fx_http_parse_response(fx_arena *arena, const char *head, size_t len, int req_method,
                           int req_upgrade, fx_http_msg *m, fx_http_error *err)
{
    memset(m, 0, sizeof(*m));
    head_ctx hc = {.arena = arena, .msg = m};
    if (run_llhttp(HTTP_RESPONSE, &hc, head, len, err, 502))
        return -1;
    m->head_len = len;
    if (!check_version_text(head, len >= 8 ? 8 : len) || len < 13 || head[8] != ' ')
        return fail(err, 502, "upstream status line is not \"HTTP/1.x NNN reason\"", head, head);
    if (m->status < 100 || m->status > 599)
        return fail(err, 502, "upstream status code out of range", head, head + 9);
    if (check_header_lines(m, head, err, 502))
        return -1;
    if (check_framing(m, head, err, 502, 0))
        return -1;
    int has_close = 0, has_keepalive = 0, has_upgrade = 0;
    apply_connection_tokens(m, &has_close, &has_keepalive, &has_upgrade);
    m->keep_alive = m->http_minor == 1 ? !has_close : (has_keepalive && !has_close);
    if (m->status == 101) {
        if (!req_upgrade || !has_upgrade)
            return fail(err, 502, "upstream switched protocols without being asked", head, head);
        m->upgrade = 1;
        m->body = FX_BODY_NONE;
        m->keep_alive = 0;
    } else if (m->status < 200 || m->status == 204 || m->status == 304 ||
               req_method == HTTP_HEAD) {
        /* RFC 9112 §6.3: these never have a body, whatever the headers say */
        if (m->body == FX_BODY_EOF || m->body == FX_BODY_CHUNKED)
            m->body = FX_BODY_NONE;
        if (m->body == FX_BODY_LENGTH)
            m->body = FX_BODY_NONE;
    }
    if (m->body == FX_BODY_EOF)
        m->keep_alive = 0;
    return 0;
}

/* ---- chunked bodies ---------------------------------------------------------------- */

static int chunked_on_body(llhttp_t *p, const char *at, size_t n)
{
    fx_http_chunked *c = p->data;
    c->total += n;
    if (c->limit && c->total > c->limit)
        return HPE_USER;
    if (c->on_data && c->on_data(c->ctx, at, n))
        return HPE_USER;
    return 0;
}

static int chunked_on_complete(llhttp_t *p)
{
    fx_http_chunked *c = p->data;
    c->done = 1;
    return HPE_PAUSED;
}

/* Extensions are legal but ignored (never forwarded); llhttp 8.1 checks their
 * characters but lets an empty name ("5;=x") or value ("5;a=") through. */
static int chunked_on_ext(llhttp_t *p, const char *at, size_t n)
{
    fx_http_chunked *c = p->data;
    c->ext_len += n;
    return 0;
}

static int chunked_on_ext_complete(llhttp_t *p)
{
    fx_http_chunked *c = p->data;
    size_t n = c->ext_len;
    c->ext_len = 0;
    if (n == 0) {
        c->bad_ext = 1;
        return HPE_USER;
    }
    return 0;
}

/* Trailer fields are dropped, but must still be well-formed: no obs-fold, no controls. */
static int chunked_on_trailer_value(llhttp_t *p, const char *at, size_t n)
{
    fx_http_chunked *c = p->data;
    /* llhttp hands an obs-fold continuation over as a value piece right after CRLF */
    size_t off = (size_t)(at - c->cur);
    char b0 = off >= 2 ? at[-2] : off == 1 ? c->tail[1] : c->tail[0];
    char b1 = off >= 1 ? at[-1] : c->tail[1];
    if ((b0 == '\r' && b1 == '\n') || !valid_value(fx_slice_make(at, n))) {
        c->bad_trailer = 1;
        return HPE_USER;
    }
    return 0;
}

static const llhttp_settings_t chunked_settings = {
    .on_body = chunked_on_body,
    .on_header_value = chunked_on_trailer_value,
    .on_message_complete = chunked_on_complete,
    .on_chunk_extension_name = chunked_on_ext,
    .on_chunk_extension_value = chunked_on_ext,
    .on_chunk_extension_name_complete = chunked_on_ext_complete,
    .on_chunk_extension_value_complete = chunked_on_ext_complete,
};

void fx_http_chunked_init(fx_http_chunked *c, int is_request, uint64_t limit, fx_http_body_cb cb,
                          void *ctx)
{
    /* Bring a fresh parser to the start of a chunked body with a minimal head. */
    static const char req_head[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char resp_head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    memset(c, 0, sizeof(*c));
    c->on_data = cb;
    c->ctx = ctx;
    c->limit = limit;
    llhttp_init(&c->parser, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &chunked_settings);
    c->parser.data = c;
    c->cur = is_request ? req_head : resp_head;
    llhttp_execute(&c->parser, c->cur, strlen(c->cur));
    c->tail[0] = '\r';
    c->tail[1] = '\n';
}

static void remember_tail(fx_http_chunked *c, const char *p, size_t n)
{
    if (n >= 2) {
        c->tail[0] = p[n - 2];
        c->tail[1] = p[n - 1];
    } else if (n == 1) {
        c->tail[0] = c->tail[1];
        c->tail[1] = p[0];
    }
}

long fx_http_chunked_feed(fx_http_chunked *c, const char *p, size_t n, const char **why)
{
    if (c->done)
        return 0;
    c->cur = p;
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (e == HPE_OK) {
        remember_tail(c, p, n);
        return (long)n;
    }
    if (e == HPE_PAUSED) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        remember_tail(c, p, used);
        /* llhttp 8.1 accepts a bare LF as the last line of a chunked body (after the
         * last chunk or the trailers); a peer that parses differently would disagree
         * on where this message ends, so refuse it. */
        if (c->tail[0] != '\r' || c->tail[1] != '\n') {
            *why = "chunked body must end with CRLF";
            c->done = 0;
            return FX_CHUNKED_ERROR;
        }
        return (long)used;
    }
    if (e == HPE_USER) {
        if (c->bad_trailer) {
            *why = "invalid trailer field (obs-fold or control character)";
            return FX_CHUNKED_ERROR;
        }
        if (c->bad_ext) {
            *why = "empty chunk extension name or value";
            return FX_CHUNKED_ERROR;
        }
        if (c->limit && c->total > c->limit) {
            *why = "body larger than limits.max_body_bytes";
            return FX_CHUNKED_TOO_BIG;
        }
        *why = "could not pass the body on";
        return FX_CHUNKED_CB_FAILED;
    }
    *why = llhttp_get_error_reason(&c->parser);
    if (!*why || !**why)
        *why = "invalid chunked encoding";
    return FX_CHUNKED_ERROR;
}

/* ---- small tables ------------------------------------------------------------------- */

const char *fx_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

int fx_http_method_idempotent(int method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_PUT:
    case HTTP_DELETE:
        return 1;
    default:
        return 0;
    }
}

const fx_http_header *fx_http_find_header(const fx_http_msg *m, const char *name, int *count)
{
    const fx_http_header *found = NULL;
    int n = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        if (fx_slice_ieq_lit(m->headers[i].name, name)) {
            if (!found)
                found = &m->headers[i];
            n++;
        }
    }
    if (count)
        *count = n;
    return found;
}

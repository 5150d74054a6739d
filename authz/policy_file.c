/*
 * policy_file.c — the YAML readers of libfxauthz: policy files
 * (fx_policy_builder_add_file / _buffer) and policy test files
 * (fx_policy_cases_load_file / _buffer). DESIGN.md "Policy contract" is the
 * schema, docs/policy-language.md the user's view.
 *
 * A file goes through four steps:
 *
 *  1. check_stream(): libyaml's event parser reads the whole stream once and
 *     refuses what the loader must never see: syntax and encoding errors
 *     (one positioned diagnostic in libyaml's words), anchors and aliases
 *     (no billion laughs, no cycles), tags, a second document, nesting
 *     deeper than MAX_DEPTH.
 *  2. yaml_parser_load(): the document — nodes with their marks and styles.
 *  3. check_keys(): every mapping of the document, known or not, has scalar
 *     keys, each once (sorted, so 100,000 keys cost no more than a sort).
 *  4. read_policy_file() / read_test_file(): the schema. Each error is
 *     positioned at its node and the walk goes on, so one run shows them
 *     all. A policy with no error of its own goes to fx_policy_builder_add(),
 *     which checks ids and routes across files and compiles `when`; any
 *     error fails the builder. A test file with an error adds no case.
 *
 * A file's diagnostics (the reader's and the builder's) are gathered, sorted
 * by position and handed over in file order; past MAX_ERRORS only counted.
 *
 * Positions: libyaml's marks count characters, diagnostics count bytes
 * (char_byte() converts, with a checkpoint every CP_EVERY characters). An
 * error inside `when` is a byte offset in the scalar's value; when_map()
 * replays libyaml's scanning of that scalar (plain, quoted, block, with
 * escapes and folding) over the source to find the byte each value byte
 * came from, and checks that the replay gives the value back exactly (if
 * not, the scalar's own position is used).
 *
 * Below: types, input and positions, diagnostics, the stream check and the
 * load, schema helpers, `when` positions, policy files, test files (YAML →
 * JSON for token and context), the public functions (and file input).
 */
#include "policy_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DEPTH 64    /* nesting of lists and mappings; the schemas need 4 plus a token's own */
#define CP_EVERY 64     /* characters between two checkpoints of char_byte() */
#define SHOWN 48        /* bytes of the user's text quoted in a message */
#define MAX_ERRORS 1000 /* diagnostics kept per file; the rest are counted */

/* ---- types ------------------------------------------------------------------------- */

/* One file being read. */
typedef struct yfile {
    const char *name; /* for diagnostics */
    const char *what; /* "policy file" / "policy test file" */
    const unsigned char *buf;
    size_t len;
    fx_authz_diags mine; /* this file's diagnostics (and the builder's), sorted at the end */
    int nerr;            /* errors found by the reader */
    fx_src_pos more_at;  /* the first error past MAX_ERRORS */
    int addfail;         /* fx_policy_builder_add refused a policy */
    yaml_document_t doc;
    int have_doc;
    unsigned char *keybad; /* [node]: a mapping with a duplicate or non-scalar key */
    uint32_t *cp;          /* cp[k]: byte offset of character k * CP_EVERY */
    size_t ncp;
    int cp_done;
} yfile;

/* User text quoted in a message: at most SHOWN bytes, control characters escaped. */
typedef struct shown {
    char s[SHOWN * 4 + 8];
} shown;

/* The source of one `when` scalar, for when_map(). */
typedef struct when_src {
    yfile *f;
    const yaml_node_t *n;
    int key_col;       /* the `when` key's column: the indentation of its mapping */
    fx_src_pos *map;   /* [len + 1]: where each value byte came from; built on first use */
    int tried;
} when_src;

/* A replay of libyaml's scanning of one scalar (when_map). */
typedef struct walk {
    const unsigned char *s;
    size_t len, i; /* the file, and where the replay is */
    int line, col; /* the position of s[i] */
    const unsigned char *val;
    size_t vlen, v; /* the value, and how much of it the replay gave back */
    fx_src_pos *map;
    fx_src_pos last; /* just after the source of the last value byte */
    int bad;         /* the replay went its own way: give up */
} walk;

/* A line break seen by the replay of a block scalar, with what it puts into the value. */
typedef struct brk_seen {
    fx_src_pos at;
    unsigned char b[3];
    size_t n;
} brk_seen;

/* ---- input and positions ----------------------------------------------------------- */

/* The length of the line break at s[i] as libyaml counts lines (CR LF, CR, LF, NEL, LS,
 * PS), or 0. */
static size_t brk(const unsigned char *s, size_t len, size_t i)
{
    if (i >= len)
        return 0;
    if (s[i] == '\n')
        return 1;
    if (s[i] == '\r')
        return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
    if (s[i] == 0xc2 && i + 1 < len && s[i + 1] == 0x85)
        return 2;
    if (s[i] == 0xe2 && i + 2 < len && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
        return 3;
    return 0;
}

/* Does a line break end just before s[i]? */
static int brk_before(const unsigned char *s, size_t i)
{
    if (i >= 1 && (s[i - 1] == '\n' || s[i - 1] == '\r'))
        return 1;
    if (i >= 2 && s[i - 2] == 0xc2 && s[i - 1] == 0x85)
        return 1;
    return i >= 3 && s[i - 3] == 0xe2 && s[i - 2] == 0x80 && (s[i - 1] == 0xa8 || s[i - 1] == 0xa9);
}

static int is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

static void cp_build(yfile *f)
{
    f->cp_done = 1;
    f->cp = malloc((f->len / CP_EVERY + 2) * sizeof(*f->cp));
    if (!f->cp)
        return; /* char_byte() then counts from the start */
    size_t k = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (is_cont(f->buf[i]))
            continue;
        if (k % CP_EVERY == 0)
            f->cp[k / CP_EVERY] = (uint32_t)i;
        k++;
    }
    if (k % CP_EVERY == 0)
        f->cp[k / CP_EVERY] = (uint32_t)f->len;
    f->ncp = k / CP_EVERY + 1;
}

/* The byte offset of character `index` (libyaml's mark.index). */
static size_t char_byte(yfile *f, size_t index)
{
    if (!f->cp_done)
        cp_build(f);
    size_t i = 0, k = 0;
    if (f->cp && f->ncp) {
        size_t c = index / CP_EVERY < f->ncp ? index / CP_EVERY : f->ncp - 1;
        i = f->cp[c];
        k = c * CP_EVERY;
    }
    while (k < index && i < f->len) {
        i++;
        while (i < f->len && is_cont(f->buf[i]))
            i++;
        k++;
    }
    return i;
}

/* A libyaml mark as line:col, the column in bytes. */
static fx_src_pos mark_pos(yfile *f, yaml_mark_t m)
{
    size_t at = char_byte(f, m.index);
    size_t start = char_byte(f, m.index >= m.column ? m.index - m.column : 0);
    if (at >= f->len && m.column == 0 && m.line > 0 && f->len && !brk_before(f->buf, f->len)) {
        /* At the end of a last line with no line break, libyaml starts a line of its own
         * that is not in the file: point at the end of the last line instead. */
        for (start = f->len; start > 0 && !brk_before(f->buf, start);)
            start--;
        return (fx_src_pos){(int)m.line, (int)(f->len - start) + 1};
    }
    return (fx_src_pos){(int)m.line + 1, (int)(at - start) + 1};
}

/* line:col of a byte offset, counted from the start (libyaml's reader errors only). */
static fx_src_pos byte_pos(const unsigned char *s, size_t len, size_t off)
{
    int line = 1;
    size_t start = 0;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off;) {
        size_t b = brk(s, len, i);
        if (b) {
            i += b;
            line++;
            start = i;
        } else {
            i++;
        }
    }
    return (fx_src_pos){line, (int)(off - start) + 1};
}

static fx_src_pos npos(yfile *f, const yaml_node_t *n) { return mark_pos(f, n->start_mark); }

/* ---- diagnostics ------------------------------------------------------------------- */

static void ferr(yfile *f, fx_src_pos at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ferr(yfile *f, fx_src_pos at, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (++f->nerr <= MAX_ERRORS)
        fx_authz_diag_add(&f->mine, f->name, at.line, at.col, "%s", msg);
    else if (f->nerr == MAX_ERRORS + 1)
        f->more_at = at;
}

typedef struct diag_ix {
    fx_authz_diag d;
    size_t i;
} diag_ix;

static int diag_cmp(const void *pa, const void *pb)
{
    const diag_ix *a = pa, *b = pb;
    if (a->d.line != b->d.line)
        return a->d.line < b->d.line ? -1 : 1;
    if (a->d.col != b->d.col)
        return a->d.col < b->d.col ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* The file's diagnostics, in file order, go to the caller's list (if any). */
static void diags_hand_over(yfile *f, fx_authz_diags *to)
{
    fx_authz_diags *m = &f->mine;
    if (f->nerr > MAX_ERRORS)
        fx_authz_diag_add(m, f->name, f->more_at.line, f->more_at.col,
                          "%d more errors from here on are not shown", f->nerr - MAX_ERRORS);
    diag_ix *v = m->n > 1 ? malloc(m->n * sizeof(*v)) : NULL;
    if (v) {
        for (size_t i = 0; i < m->n; i++)
            v[i] = (diag_ix){m->v[i], i};
        qsort(v, m->n, sizeof(*v), diag_cmp);
        for (size_t i = 0; i < m->n; i++)
            m->v[i] = v[i].d;
        free(v);
    }
    if (to && m->n && to->cap - to->n < m->n) {
        fx_authz_diag *nv = realloc(to->v, (to->n + m->n) * sizeof(*nv));
        if (nv) {
            to->v = nv;
            to->cap = to->n + m->n;
        }
    }
    if (to && m->n && to->cap - to->n >= m->n) {
        memcpy(to->v + to->n, m->v, m->n * sizeof(*m->v));
        to->n += m->n;
        m->n = 0;
    }
    fx_authz_diags_free(m);
}

static void oom(yfile *f, fx_src_pos at) { ferr(f, at, "out of memory"); }

static size_t utf8_width(const unsigned char *s, size_t n)
{
    size_t w = s[0] < 0x80 ? 1
               : (s[0] & 0xe0) == 0xc0 ? 2
               : (s[0] & 0xf0) == 0xe0 ? 3
               : (s[0] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (w == 0 || w > n)
        return 0;
    for (size_t k = 1; k < w; k++)
        if (!is_cont(s[k]))
            return 0;
    return w;
}

static shown show(const void *p, size_t n)
{
    shown r;
    const unsigned char *s = p;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i >= SHOWN) {
            memcpy(r.s + o, "...", 3);
            o += 3;
            break;
        }
        size_t w = utf8_width(s + i, n - i);
        if (w > 1 && !(s[i] == 0xc2 && s[i + 1] < 0xa0)) { /* C1 controls are escaped */
            memcpy(r.s + o, s + i, w);
            o += w;
            i += w;
        } else if (s[i] < 0x20 || s[i] >= 0x7f) {
            o += (size_t)snprintf(r.s + o, 5, "\\x%02x", s[i]);
            i++;
        } else {
            r.s[o++] = (char)s[i++];
        }
    }
    r.s[o] = '\0';
    return r;
}

#define SV(n) ((const char *)(n)->data.scalar.value)
#define SL(n) ((n)->data.scalar.length)
#define SHOWN_NODE(n) show((n)->data.scalar.value, (n)->data.scalar.length).s

/* libyaml's problem, in plain words, at the place it names. */
static void yaml_problem(yfile *f, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unreadable input";
    if (p->error == YAML_MEMORY_ERROR) {
        ferr(f, (fx_src_pos){0, 0}, "out of memory reading YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        fx_src_pos at = byte_pos(f->buf, f->len, p->problem_offset);
        if (strstr(problem, "control character"))
            ferr(f, at, "the %s contains control character U+%04X, which YAML does not allow", f->what,
                 (unsigned)p->problem_value);
        else if (strstr(problem, "Unicode"))
            ferr(f, at, "the %s contains an invalid Unicode character (U+%04X)", f->what,
                 (unsigned)p->problem_value);
        else if (strstr(problem, "UTF-8") && p->problem_value >= 0)
            ferr(f, at, "the %s is not valid UTF-8 text (%s 0x%02X)", f->what, problem,
                 (unsigned)p->problem_value);
        else if (strstr(problem, "UTF-8"))
            ferr(f, at, "the %s is not valid UTF-8 text (%s)", f->what, problem);
        else
            ferr(f, at, "cannot read the %s as text: %s", f->what, problem);
        return;
    }
    fx_src_pos at = mark_pos(f, p->problem_mark);
    size_t off = char_byte(f, p->problem_mark.index);
    const char *hint = "";
    if (off < f->len && f->buf[off] == '\t')
        hint = " (YAML indentation cannot use tabs: use spaces)";
    else if (off < f->len && (f->buf[off] == '@' || f->buf[off] == '`'))
        hint = " ('@' and '`' cannot start a plain value: quote it)";
    if (p->context && (p->context_mark.line != p->problem_mark.line ||
                       p->context_mark.column != p->problem_mark.column)) {
        fx_src_pos cat = mark_pos(f, p->context_mark);
        ferr(f, at, "YAML syntax error: %s (%s that starts at line %d, column %d)%s", problem, p->context,
             cat.line, cat.col, hint);
    } else if (p->context) {
        ferr(f, at, "YAML syntax error: %s (%s)%s", problem, p->context, hint);
    } else {
        ferr(f, at, "YAML syntax error: %s%s", problem, hint);
    }
}

/* ---- the stream check and the load ----------------------------------------------- */

/* The source text at a byte offset up to the next blank (an anchor or a tag as written). */
static shown source_word(yfile *f, size_t off)
{
    size_t n = 0;
    while (off + n < f->len && n < 64 && f->buf[off + n] > ' ')
        n++;
    return show(f->buf + off, n);
}

/* Reads the whole stream event by event; 0, or -1 with one diagnostic. */
static int check_stream(yfile *f)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        oom(f, (fx_src_pos){0, 0});
        return -1;
    }
    yaml_parser_set_input_string(&p, f->buf, f->len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING); /* a UTF-16 file is not UTF-8 text */
    int depth = 0, ndocs = 0, ok = 1, done = 0, deep = 0;
    while (ok && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_problem(f, &p);
            ok = 0;
            break;
        }
        const yaml_char_t *anchor = NULL, *tag = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1) {
                ferr(f, mark_pos(f, ev.start_mark),
                     "a second YAML document: a %s holds one document (remove this '---' or "
                     "start another file)",
                     f->what);
                ok = 0;
            }
            break;
        case YAML_ALIAS_EVENT:
            ferr(f, mark_pos(f, ev.start_mark),
                 "alias '%s': anchors and aliases are not allowed in a %s; write the value out",
                 source_word(f, char_byte(f, ev.start_mark.index)).s, f->what);
            ok = 0;
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                          : ev.data.mapping_start.anchor;
            tag = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.tag
                                                       : ev.data.mapping_start.tag;
            deep = ++depth > MAX_DEPTH;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        /* a node's start mark is where its properties (anchor, tag) are written */
        if (anchor)
            ferr(f, mark_pos(f, ev.start_mark),
                 "anchor '&%s': anchors and aliases are not allowed in a %s; write the value out",
                 show(anchor, strlen((const char *)anchor)).s, f->what);
        else if (tag)
            ferr(f, mark_pos(f, ev.start_mark),
                 "YAML tag '%s': tags are not used in a %s (quote a value to make it a string)",
                 source_word(f, char_byte(f, ev.start_mark.index)).s, f->what);
        else if (deep)
            ferr(f, mark_pos(f, ev.start_mark), "nesting is deeper than %d levels", MAX_DEPTH);
        if (anchor || tag || deep)
            ok = 0;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return ok ? 0 : -1;
}

/* The root node of the file's one document; NULL for an empty file or after an error
 * (f->nerr tells which). */
static yaml_node_t *load(yfile *f)
{
    if (check_stream(f) < 0)
        return NULL;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        oom(f, (fx_src_pos){0, 0});
        return NULL;
    }
    yaml_parser_set_input_string(&p, f->buf, f->len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&p, &f->doc)) { /* the document is freed by libyaml */
        yaml_problem(f, &p);
        yaml_parser_delete(&p);
        return NULL;
    }
    f->have_doc = 1;
    yaml_parser_delete(&p);
    return yaml_document_get_root_node(&f->doc);
}

static void yfile_done(yfile *f)
{
    if (f->have_doc)
        yaml_document_delete(&f->doc);
    free(f->keybad);
    free(f->cp);
}

/* ---- schema helpers ---------------------------------------------------------------- */

static yaml_node_t *node_at(yfile *f, int i) { return yaml_document_get_node(&f->doc, i); }

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = SV(n);
    return SL(n) == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
    if (is_null(n))
        return "an empty value";
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a string";
}

static int has_nul(const yaml_node_t *n) { return memchr(SV(n), 0, SL(n)) != NULL; }

static int str_is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* Edit distance (insert, delete, substitute) of short words; large for long ones. */
static size_t distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b), prev[65], cur[65];
    if (la > 64 || lb > 64)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(*prev));
    }
    return prev[lb];
}

const char *fx_authz_closest(const char *got, size_t len, const char *const *cands, size_t ncands)
{
    const char *best = NULL;
    size_t bestd = len <= 3 ? 2 : 3;
    for (size_t i = 0; cands && i < ncands && cands[i]; i++) {
        size_t d = strlen(cands[i]) == len && !strncasecmp(got, cands[i], len) ? 0
                                                                               : distance(got, len, cands[i]);
        if (d < bestd) {
            best = cands[i];
            bestd = d;
        }
    }
    return best;
}

/* " (did you mean 'x'?)" or "". */
typedef struct hint {
    char s[96];
} hint;

static hint suggest(const char *got, size_t len, const char *const *cands)
{
    hint h = {""};
    const char *best = fx_authz_closest(got, len, cands, SIZE_MAX);
    if (best)
        snprintf(h.s, sizeof(h.s), " (did you mean '%s'?)", best);
    return h;
}

/* The value of the first `key` of a mapping, or NULL; *keyn gets the key node. */
static yaml_node_t *get(yfile *f, const yaml_node_t *map, const char *key, yaml_node_t **keyn)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(f, pr->key);
        if (k && k->type == YAML_SCALAR_NODE && str_is(SV(k), SL(k), key)) {
            if (keyn)
                *keyn = k;
            return node_at(f, pr->value);
        }
    }
    return NULL;
}

/* The value of a required key, or NULL with "PATH: missing `key` (WHY)". */
static yaml_node_t *need(yfile *f, const yaml_node_t *map, const char *path, const char *key,
                         const char *why, yaml_node_t **keyn)
{
    yaml_node_t *v = get(f, map, key, keyn);
    if (!v)
        ferr(f, npos(f, map), "%s: missing `%s` (%s)", path, key, why);
    return v;
}

typedef struct keyref {
    const char *s;
    size_t len, order;
    const yaml_node_t *n;
} keyref;

static int keyref_cmp(const void *pa, const void *pb)
{
    const keyref *a = pa, *b = pb;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, m);
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void key_bad(yfile *f, const yaml_node_t *map)
{
    if (f->keybad)
        f->keybad[map - f->doc.nodes.start] = 1;
}

/* Had a mapping a key error? (Any, when check_keys() ran out of memory.) */
static int is_key_bad(const yfile *f, const yaml_node_t *map)
{
    return !f->keybad || f->keybad[map - f->doc.nodes.start];
}

/* Every key of every mapping of the document is a scalar and appears once (whatever the
 * mapping: the schema's, a token's claims, or one that is an error anyway). */
static void check_keys(yfile *f)
{
    keyref *keys = NULL;
    size_t cap = 0;
    if (!(f->keybad = calloc((size_t)(f->doc.nodes.top - f->doc.nodes.start) + 1, 1)))
        oom(f, (fx_src_pos){0, 0});
    for (yaml_node_t *map = f->doc.nodes.start; map < f->doc.nodes.top; map++) {
        if (map->type != YAML_MAPPING_NODE)
            continue;
        size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start), nk = 0;
        if (n > cap) {
            free(keys);
            cap = n;
            if (!(keys = malloc(cap * sizeof(*keys)))) {
                oom(f, npos(f, map));
                return;
            }
        }
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *k = node_at(f, map->data.mapping.pairs.start[i].key);
            if (k && k->type != YAML_SCALAR_NODE) {
                ferr(f, npos(f, k), "a key must be a name, not %s", kind(k));
                key_bad(f, map);
            } else if (k)
                keys[nk++] = (keyref){SV(k), SL(k), i, k};
        }
        if (nk < 2)
            continue;
        qsort(keys, nk, sizeof(*keys), keyref_cmp);
        for (size_t i = 1, first = 0; i < nk; i++) {
            if (keys[i].len == keys[first].len && !memcmp(keys[i].s, keys[first].s, keys[i].len)) {
                fx_src_pos p = npos(f, keys[first].n);
                ferr(f, npos(f, keys[i].n), "duplicate key '%s' (first at line %d, column %d)",
                     SHOWN_NODE(keys[i].n), p.line, p.col);
                key_bad(f, map);
            } else {
                first = i;
            }
        }
    }
    free(keys);
}

/* Every key of a mapping of the schema is one of `known`; `about` is appended to an unknown
 * key's message when no known key is close. */
static void check_known(yfile *f, const yaml_node_t *map, const char *path, const char *const *known,
                        const char *about)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(f, pr->key);
        if (!k || k->type != YAML_SCALAR_NODE) /* check_keys() said so */
            continue;
        int ok = 0;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = str_is(SV(k), SL(k), known[j]);
        if (ok)
            continue;
        hint h = suggest(SV(k), SL(k), known);
        if (*path)
            ferr(f, npos(f, k), "%s: unknown key '%s'%s", path, SHOWN_NODE(k), *h.s ? h.s : about);
        else
            ferr(f, npos(f, k), "unknown top-level key '%s'%s", SHOWN_NODE(k), *h.s ? h.s : about);
    }
}

/* A scalar with a value (not nothing, a list or a mapping)? Else "PATH: expected WHAT, got X". */
static int want_str(yfile *f, const yaml_node_t *n, const char *path, const char *what)
{
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        if (!SL(n))
            ferr(f, npos(f, n), "%s: expected %s, got an empty string", path, what);
        else if (has_nul(n))
            ferr(f, npos(f, n), "%s: a NUL character ('\\0') is not allowed here", path);
        return SL(n) && !has_nul(n);
    }
    ferr(f, npos(f, n), "%s: expected %s, got %s", path, what, kind(n));
    return 0;
}

/* HTTP token characters (RFC 9110 tchar). */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* An HTTP method: an upper-case token ("GET", "PROPFIND"). */
static int check_method(yfile *f, const yaml_node_t *n, const char *path)
{
    const char *s = SV(n);
    size_t len = SL(n), lower = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_tchar(c)) {
            ferr(f, npos(f, n), "%s: '%s' is not an HTTP method (letters such as GET or POST)", path,
                 SHOWN_NODE(n));
            return 0;
        }
        lower += c >= 'a' && c <= 'z';
    }
    if (lower) {
        char up[SHOWN + 1];
        size_t k = len < SHOWN ? len : SHOWN;
        for (size_t i = 0; i < k; i++)
            up[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
        up[k] = '\0';
        ferr(f, npos(f, n), "%s: methods are case-sensitive: did you mean '%s'?", path, up);
        return 0;
    }
    return 1;
}

/* A policy id: 1..FX_POLICY_MAX_ID_BYTES of [A-Za-z0-9._:-]. */
static int check_id(yfile *f, const yaml_node_t *n, const char *path)
{
    const char *s = SV(n);
    size_t len = SL(n);
    if (len > FX_POLICY_MAX_ID_BYTES) {
        ferr(f, npos(f, n), "%s: the id is %zu bytes long; at most %d are allowed", path, len,
             FX_POLICY_MAX_ID_BYTES);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
              c == '_' || c == ':' || c == '-')) {
            size_t w = utf8_width((const unsigned char *)s + i, len - i);
            ferr(f, npos(f, n),
                 "%s: '%s' has '%s' at byte %zu: an id is made of letters, digits and . _ : -", path,
                 SHOWN_NODE(n), show(s + i, w ? w : 1).s, i + 1);
            return 0;
        }
    }
    return 1;
}

/* A name a person reads in messages (a route, a test): no control characters. */
static int check_name(yfile *f, const yaml_node_t *n, const char *path)
{
    for (size_t i = 0; i < SL(n); i++) {
        unsigned char c = (unsigned char)SV(n)[i];
        if (c < 0x20 || c == 0x7f) {
            ferr(f, npos(f, n), "%s: '%s' contains a control character", path, SHOWN_NODE(n));
            return 0;
        }
    }
    return 1;
}

static char *dup_str(yfile *f, const yaml_node_t *n)
{
    char *s = strndup(SV(n), SL(n));
    if (!s)
        oom(f, npos(f, n));
    return s;
}

/* ---- `when` positions ---------------------------------------------------------------- */

static fx_src_pos here(const walk *w) { return (fx_src_pos){w->line, w->col}; }

/* The value bytes b[0..n) came from the source at `at`; `end` is just after that source. */
static void emit(walk *w, const void *b, size_t n, fx_src_pos at, fx_src_pos end)
{
    const unsigned char *p = b;
    for (size_t k = 0; k < n; k++) {
        if (w->bad || w->v >= w->vlen || w->val[w->v] != p[k]) {
            w->bad = 1;
            return;
        }
        w->map[w->v++] = at;
    }
    w->last = end;
}

static void step(walk *w, size_t n)
{
    w->i += n;
    w->col += (int)n;
}

static size_t brk_here(const walk *w) { return brk(w->s, w->len, w->i); }

static int blank_here(const walk *w) { return w->i < w->len && (w->s[w->i] == ' ' || w->s[w->i] == '\t'); }

/* Passes a line break; *at gets its position and b what libyaml puts into a value for it
 * (LF for CR LF, CR, LF and NEL; LS and PS as they are). Returns the bytes put. */
static size_t pass_break(walk *w, fx_src_pos *at, unsigned char b[3])
{
    size_t bl = brk_here(w), n = 1;
    *at = here(w);
    if (bl == 3) {
        memcpy(b, w->s + w->i, 3);
        n = 3;
    } else {
        b[0] = '\n';
    }
    w->i += bl;
    w->line++;
    w->col = 1;
    return n;
}

/* One character of content, copied as it is. */
static void content(walk *w)
{
    size_t n = utf8_width(w->s + w->i, w->len - w->i);
    fx_src_pos at = here(w);
    step(w, n ? n : 1);
    emit(w, w->s + w->i - (n ? n : 1), n ? n : 1, at, here(w));
}

/*
 * A run of blanks and line breaks inside a plain or quoted scalar, joined as libyaml joins
 * it: blanks within a line are kept; one line break folds into a space, n breaks into n-1
 * newlines; blanks around breaks are dropped; a first break that is LS or PS is kept.
 * `escaped`: the run follows a backslash-escaped line break, which itself gives nothing.
 */
static void ws_run(walk *w, size_t end, int escaped)
{
    int leading = escaped, first_lf = 0, ntrail = 0;
    for (size_t i = w->i; i < end;) {
        size_t bl = brk(w->s, w->len, i);
        if (bl) {
            if (!leading) {
                leading = 1;
                first_lf = bl != 3;
            } else {
                ntrail++;
            }
            i += bl;
        } else if (w->s[i] == ' ' || w->s[i] == '\t') {
            i++;
        } else {
            break;
        }
    }
    if (!leading) {
        while (w->i < end && blank_here(w))
            content(w);
        return;
    }
    int seen = escaped;
    while (w->i < end && !w->bad) {
        if (brk_here(w)) {
            fx_src_pos at;
            unsigned char b[3];
            size_t n = pass_break(w, &at, b);
            if (seen || !first_lf)
                emit(w, b, n, at, at);
            else if (!ntrail)
                emit(w, " ", 1, at, at);
            seen = 1;
        } else if (blank_here(w)) {
            step(w, 1);
        } else {
            break;
        }
    }
}

static void walk_plain(walk *w, size_t end)
{
    while (w->i < end && !w->bad) {
        if (brk_here(w) || blank_here(w))
            ws_run(w, end, 0);
        else
            content(w);
    }
}

static size_t utf8_put(uint32_t c, unsigned char *o)
{
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xc0 | c >> 6);
        o[1] = (unsigned char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xe0 | c >> 12);
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | c >> 18);
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (c & 0x3f));
    return 4;
}

/* A backslash escape of a double-quoted scalar (libyaml's set, YAML 1.1 plus '/'). */
static void walk_escape(walk *w)
{
    static const char simple_from[] = "0abt\tnvfre \"/\\";
    static const char simple_to[] = "\0\a\b\t\t\n\v\f\r\x1b \"/\\";
    fx_src_pos at = here(w);
    unsigned char e = w->i + 1 < w->len ? w->s[w->i + 1] : 0, out[4];
    size_t n = 0, hex = 0;
    const char *k = e ? strchr(simple_from, e) : NULL;
    if (k) {
        out[0] = (unsigned char)simple_to[k - simple_from];
        n = 1;
    } else if (e == 'N' || e == '_') {
        n = utf8_put(e == 'N' ? 0x85 : 0xa0, out);
    } else if (e == 'L' || e == 'P') {
        n = utf8_put(e == 'L' ? 0x2028 : 0x2029, out);
    } else if (e == 'x' || e == 'u' || e == 'U') {
        hex = e == 'x' ? 2 : e == 'u' ? 4 : 8;
    } else {
        w->bad = 1;
        return;
    }
    step(w, 2);
    if (hex) {
        uint32_t c = 0;
        for (size_t j = 0; j < hex; j++, step(w, 1)) {
            unsigned char h = w->i < w->len ? w->s[w->i] : 0;
            int v = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
            if (v < 0 || c > 0x10ffff) {
                w->bad = 1;
                return;
            }
            c = c << 4 | (uint32_t)v;
        }
        if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) {
            w->bad = 1;
            return;
        }
        n = utf8_put(c, out);
    }
    emit(w, out, n, at, here(w));
}

static void walk_quoted(walk *w, int dbl)
{
    step(w, 1); /* the opening quote */
    while (w->i < w->len && !w->bad) {
        unsigned char c = w->s[w->i];
        if (!dbl && c == '\'') {
            if (w->i + 1 < w->len && w->s[w->i + 1] == '\'') {
                fx_src_pos at = here(w);
                step(w, 2);
                emit(w, "'", 1, at, here(w));
                continue;
            }
            w->last = here(w); /* the closing quote: an error at the very end points at it */
            return;
        }
        if (dbl && c == '"') {
            w->last = here(w);
            return;
        }
        if (dbl && c == '\\' && brk(w->s, w->len, w->i + 1)) {
            fx_src_pos at;
            unsigned char b[3];
            step(w, 1);
            pass_break(w, &at, b);
            ws_run(w, w->len, 1);
        } else if (dbl && c == '\\') {
            walk_escape(w);
        } else if (brk_here(w) || blank_here(w)) {
            ws_run(w, w->len, 0);
        } else {
            content(w);
        }
    }
    w->bad = 1; /* no closing quote */
}

/* Indentation and empty lines before a line of a block scalar (libyaml's
 * scan_block_scalar_breaks): the breaks go to trail[]; the indentation is found here when
 * not given. Returns the column reached (spaces passed on the line). */
static int block_breaks(walk *w, int *indent, int parent, brk_seen *trail, size_t *ntrail, size_t cap)
{
    int max = 0, col;
    for (;;) {
        col = 0;
        while ((!*indent || col < *indent) && w->i < w->len && w->s[w->i] == ' ') {
            step(w, 1);
            col++;
        }
        if (col > max)
            max = col;
        if ((!*indent || col < *indent) && w->i < w->len && w->s[w->i] == '\t') {
            w->bad = 1;
            return -1;
        }
        if (!brk_here(w))
            break;
        brk_seen spare, *t = *ntrail < cap ? &trail[*ntrail] : &spare; /* see emit_trail() */
        t->n = pass_break(w, &t->at, t->b);
        (*ntrail)++;
    }
    if (!*indent) {
        *indent = max;
        if (*indent < parent + 1)
            *indent = parent + 1;
        if (*indent < 1)
            *indent = 1;
    }
    return col;
}

/* The empty lines before a line (or, with keep chomping, at the end) go into the value. Only
 * the first `cap` (more than the value's length) were kept: more cannot be in the value. */
static void emit_trail(walk *w, const brk_seen *trail, size_t ntrail, size_t cap)
{
    if (ntrail > cap)
        w->bad = 1;
    for (size_t t = 0; t < ntrail && !w->bad; t++)
        emit(w, trail[t].b, trail[t].n, trail[t].at, trail[t].at);
}

static void walk_block(walk *w, int parent)
{
    int literal = w->s[w->i] == '|', chomp = 0, incr = 0;
    step(w, 1);
    for (int k = 0; k < 2 && w->i < w->len; k++) {
        unsigned char c = w->s[w->i];
        if ((c == '+' || c == '-') && !chomp) {
            chomp = c == '+' ? 1 : -1;
            step(w, 1);
        } else if (c >= '1' && c <= '9' && !incr) {
            incr = c - '0';
            step(w, 1);
        }
    }
    while (blank_here(w))
        step(w, 1);
    if (w->i < w->len && w->s[w->i] == '#')
        while (w->i < w->len && !brk_here(w))
            step(w, 1);
    if (w->i < w->len && !brk_here(w)) {
        w->bad = 1;
        return;
    }
    if (brk_here(w)) {
        fx_src_pos at;
        unsigned char b[3];
        pass_break(w, &at, b);
    }
    size_t cap = w->vlen + 2, ntrail = 0;
    brk_seen *trail = malloc(cap * sizeof(*trail));
    brk_seen lead = {{0, 0}, {0}, 0}; /* the line break after the last line read */
    if (!trail) {
        w->bad = 1;
        return;
    }
    int indent = incr ? (parent >= 0 ? parent + incr : incr) : 0, leading_blank = 0;
    int col = block_breaks(w, &indent, parent, trail, &ntrail, cap);
    while (col == indent && w->i < w->len && !w->bad) {
        int trailing_blank = blank_here(w);
        if (!literal && lead.n == 1 && !leading_blank && !trailing_blank) {
            if (!ntrail)
                emit(w, " ", 1, lead.at, lead.at);
        } else if (lead.n) {
            emit(w, lead.b, lead.n, lead.at, lead.at);
        }
        lead.n = 0;
        emit_trail(w, trail, ntrail, cap);
        ntrail = 0;
        leading_blank = blank_here(w);
        while (w->i < w->len && !brk_here(w) && !w->bad)
            content(w);
        if (brk_here(w))
            lead.n = pass_break(w, &lead.at, lead.b);
        col = block_breaks(w, &indent, parent, trail, &ntrail, cap);
    }
    if (chomp != -1 && lead.n)
        emit(w, lead.b, lead.n, lead.at, lead.at);
    if (chomp == 1)
        emit_trail(w, trail, ntrail, cap);
    free(trail);
}

static void when_build(when_src *ws)
{
    yfile *f = ws->f;
    const yaml_node_t *n = ws->n;
    ws->tried = 1;
    fx_src_pos *map = malloc((SL(n) + 1) * sizeof(*map));
    if (!map)
        return;
    fx_src_pos start = npos(f, n);
    walk w = {
        .s = f->buf,
        .len = f->len,
        .i = char_byte(f, n->start_mark.index),
        .line = start.line,
        .col = start.col,
        .val = n->data.scalar.value,
        .vlen = SL(n),
        .map = map,
        .last = start,
    };
    switch (n->data.scalar.style) {
    case YAML_PLAIN_SCALAR_STYLE:
        walk_plain(&w, char_byte(f, n->end_mark.index));
        break;
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        if (w.i < w.len && w.s[w.i] == (n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ? '\'' : '"'))
            walk_quoted(&w, n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        else
            w.bad = 1;
        break;
    case YAML_LITERAL_SCALAR_STYLE:
    case YAML_FOLDED_SCALAR_STYLE:
        if (w.i < w.len && (w.s[w.i] == '|' || w.s[w.i] == '>'))
            walk_block(&w, ws->key_col);
        else
            w.bad = 1;
        break;
    default:
        w.bad = 1;
    }
    if (w.bad || w.v != w.vlen) {
        free(map);
        return;
    }
    map[w.vlen] = w.last;
    ws->map = map;
}

/* fx_policy_spec.when_map: a byte offset in the value of `when` → its place in the file. */
static void when_map(void *arg, size_t off, fx_src_pos *out)
{
    when_src *ws = arg;
    if (!ws->tried)
        when_build(ws);
    if (off > SL(ws->n))
        off = SL(ws->n);
    *out = ws->map ? ws->map[off] : npos(ws->f, ws->n);
}

/* ---- policy files ------------------------------------------------------------------- */

static const char *const policy_file_keys[] = {"policies", NULL};
static const char *const policy_keys[] = {"id", "effect", "routes", "methods", "when", "description", NULL};
static const char *const effects[] = {"permit", "forbid", NULL};

/* `routes` or `methods` of a policy: a non-empty list of names. */
static int read_names(yfile *f, const yaml_node_t *n, const char *path, int methods, fx_authz_str **names,
                      fx_src_pos **pos, size_t *count)
{
    const char *what = methods ? "a list of HTTP methods" : "a list of route names";
    const char *omit = methods ? "omit `methods` to apply the policy to every method"
                               : "omit `routes` to apply the policy to every route";
    if (n->type != YAML_SEQUENCE_NODE) {
        if (n->type == YAML_SCALAR_NODE && !is_null(n))
            ferr(f, npos(f, n), "%s: expected %s, got a string (write [%s])", path, what, SHOWN_NODE(n));
        else
            ferr(f, npos(f, n), "%s: expected %s, got %s (%s)", path, what, kind(n), omit);
        return -1;
    }
    size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (k == 0) {
        ferr(f, npos(f, n), "%s: an empty list matches nothing: %s", path, omit);
        return -1;
    }
    *names = calloc(k, sizeof(**names));
    *pos = calloc(k, sizeof(**pos));
    if (!*names || !*pos) {
        oom(f, npos(f, n));
        return -1;
    }
    int ok = 1;
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *item = node_at(f, n->data.sequence.items.start[i]);
        char ipath[96];
        snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
        if (!item || !want_str(f, item, ipath, methods ? "an HTTP method" : "a route name")) {
            ok = 0;
            continue;
        }
        if (!(methods ? check_method(f, item, ipath) : check_name(f, item, ipath))) {
            ok = 0;
            continue;
        }
        (*names)[i] = (fx_authz_str){SV(item), SL(item)};
        (*pos)[i] = npos(f, item);
    }
    *count = k;
    return ok ? 0 : -1;
}

static int only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\n", s[i]) || !s[i])
            return 0;
    return 1;
}

static void read_policy(yfile *f, fx_policy_builder *b, const yaml_node_t *item, size_t idx)
{
    char path[48], kpath[64];
    snprintf(path, sizeof(path), "policies[%zu]", idx);
    if (item->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, item), "%s: expected a policy (a mapping with id, effect and when), got %s", path,
             kind(item));
        return;
    }
    int nerr = f->nerr;
    check_known(f, item, path, policy_keys, " (a policy has id, effect, routes, methods, when, description)");
    fx_policy_spec sp = {.file = f->name, .pos = npos(f, item)};
    fx_authz_str *routes = NULL, *methods = NULL;
    fx_src_pos *route_pos = NULL, *method_pos = NULL;
    when_src ws = {.f = f};

    yaml_node_t *n = need(f, item, path, "id", "every policy needs a unique id", NULL);
    snprintf(kpath, sizeof(kpath), "%s.id", path);
    if (n && want_str(f, n, kpath, "an id (a string)") && check_id(f, n, kpath)) {
        sp.id = SV(n);
        sp.idlen = SL(n);
        sp.id_pos = npos(f, n);
    }

    n = need(f, item, path, "effect", "permit or forbid", NULL);
    snprintf(kpath, sizeof(kpath), "%s.effect", path);
    if (n && want_str(f, n, kpath, "permit or forbid")) {
        if (str_is(SV(n), SL(n), "permit"))
            sp.effect = FX_POLICY_PERMIT;
        else if (str_is(SV(n), SL(n), "forbid"))
            sp.effect = FX_POLICY_FORBID;
        else
            ferr(f, npos(f, n), "%s: expected permit or forbid, got '%s'%s", kpath, SHOWN_NODE(n),
                 suggest(SV(n), SL(n), effects).s);
    }

    if ((n = get(f, item, "routes", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.routes", path);
        if (read_names(f, n, kpath, 0, &routes, &route_pos, &sp.nroutes) == 0) {
            sp.has_routes = 1;
            sp.routes = routes;
            sp.route_pos = route_pos;
        }
    }
    if ((n = get(f, item, "methods", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.methods", path);
        if (read_names(f, n, kpath, 1, &methods, &method_pos, &sp.nmethods) == 0) {
            sp.has_methods = 1;
            sp.methods = methods;
            sp.method_pos = method_pos;
        }
    }

    yaml_node_t *key = NULL;
    n = need(f, item, path, "when", "the condition; `when: \"true\"` matches every request", &key);
    snprintf(kpath, sizeof(kpath), "%s.when", path);
    if (n && n->type != YAML_SCALAR_NODE) {
        ferr(f, npos(f, n), "%s: expected an expression (a string), got %s", kpath, kind(n));
    } else if (n && (is_null(n) || only_space(SV(n), SL(n)))) {
        ferr(f, npos(f, n), "%s: empty `when`: write `when: \"true\"` to match every request", kpath);
    } else if (n && SL(n) > FX_POLICY_MAX_EXPR_BYTES) {
        ferr(f, npos(f, n), "%s: the expression is %zu bytes long; at most %d are allowed (split the policy)",
             kpath, SL(n), FX_POLICY_MAX_EXPR_BYTES);
    } else if (n) {
        sp.when = SV(n);
        sp.whenlen = SL(n);
        sp.when_pos = npos(f, n);
        ws.n = n;
        ws.key_col = key ? (int)key->start_mark.column : -1;
        sp.when_map = when_map;
        sp.when_map_arg = &ws;
    }

    if ((n = get(f, item, "description", NULL)) && !is_null(n) && n->type != YAML_SCALAR_NODE) {
        snprintf(kpath, sizeof(kpath), "%s.description", path);
        ferr(f, npos(f, n), "%s: expected a string, got %s", kpath, kind(n));
    }

    if (f->nerr == nerr && !is_key_bad(f, item) && fx_policy_builder_add(b, &sp, &f->mine) < 0)
        f->addfail = 1;
    free(routes);
    free(route_pos);
    free(methods);
    free(method_pos);
    free(ws.map);
}

/*
 * The one top-level key of a policy or test file (`key`: "policies" / "tests") and its
 * list of `items`, or NULL after positioned errors. An empty or truncated file is an error,
 * never an empty list: losing a file's forbids (or tests) on a reload must not look like
 * success. A file that means none says `KEY: []` (then an empty sequence is returned).
 */
static yaml_node_t *top_list(yfile *f, const char *key, const char *const *keys, const char *items)
{
    yaml_node_t *root = load(f);
    if (f->nerr)
        return NULL;
    check_keys(f);
    if (!root || is_null(root)) {
        ferr(f, root ? npos(f, root) : (fx_src_pos){1, 1},
             "the file has no %s (it is empty or null); a file that means none says `%s: []`", items, key);
        return NULL;
    }
    if (root->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, root), "expected a mapping with a `%s` list at the top level, got %s", key, kind(root));
        return NULL;
    }
    char why[64];
    snprintf(why, sizeof(why), " (a %s file has one key: %s)", !strcmp(key, "tests") ? "policy test" : "policy",
             key);
    check_known(f, root, "", keys, why);
    yaml_node_t *keyn = NULL;
    yaml_node_t *list = get(f, root, key, &keyn);
    if (!list)
        ferr(f, npos(f, root), "no `%s` key; a file that means no %s says `%s: []`", key, items, key);
    else if (is_null(list))
        ferr(f, npos(f, keyn ? keyn : list), "%s: empty; write `%s: []` for a file with no %s", key, key, items);
    else if (list->type != YAML_SEQUENCE_NODE)
        ferr(f, npos(f, list), "%s: expected a list of %s, got %s", key, items, kind(list));
    else
        return list;
    return NULL;
}

static int read_policy_file(yfile *f, fx_policy_builder *b)
{
    yaml_node_t *list = top_list(f, "policies", policy_file_keys, "policies");
    if (list) {
        size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
        if (n > FX_POLICY_MAX_POLICIES)
            ferr(f, npos(f, list), "policies: %zu policies in one file; at most %d are allowed", n,
                 FX_POLICY_MAX_POLICIES);
        for (size_t i = 0; i < n && n <= FX_POLICY_MAX_POLICIES; i++) {
            yaml_node_t *item = node_at(f, list->data.sequence.items.start[i]);
            if (item)
                read_policy(f, b, item, i);
        }
    }
    return f->nerr || f->addfail ? -1 : 0;
}

/* ---- test files ------------------------------------------------------------------------ */

static const char *const test_file_keys[] = {"tests", NULL};
static const char *const case_keys[] = {"name", "request", "token", "context", "expect", "policies", NULL};
static const char *const request_keys[] = {"method", "path", "headers", "query", "params", "route", NULL};
static const char *const expects[] = {"allow", "deny", NULL};

static void case_free(fx_policy_case *c)
{
    free(c->name);
    free(c->file);
    free(c->method);
    free(c->path);
    free(c->route);
    fx_authz_kv *lists[3] = {c->params, c->headers, c->query};
    size_t counts[3] = {c->nparams, c->nheaders, c->nquery};
    for (int l = 0; l < 3; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            free((void *)lists[l][i].name.p);
            free((void *)lists[l][i].value.p);
        }
        free(lists[l]);
    }
    fx_authz_doc_free(c->token);
    fx_authz_doc_free(c->context);
    for (size_t i = 0; i < c->nexpect_policies; i++)
        free(c->expect_policies[i]);
    free(c->expect_policies);
}

/* The YAML 1.2 core schema for a plain scalar: a decimal integer? */
static int is_int(const char *s, size_t len)
{
    size_t i = len && (s[0] == '-' || s[0] == '+');
    if (i == len)
        return 0;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* ... a decimal float: [-+]? (.d+ | d+(.d*)?) ([eE][-+]?d+)? */
static int is_float(const char *s, size_t len)
{
    size_t i = len && (s[0] == '-' || s[0] == '+'), digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (!digits)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, e++;
        if (!e)
            return 0;
    }
    return i == len;
}

/* A scalar as JSON: plain scalars by the YAML 1.2 core schema (null, booleans, decimal
 * integers and floats), everything else — and every quoted scalar — a string. */
static json_t *scalar_json(yfile *f, const yaml_node_t *n, const char *path)
{
    const char *s = SV(n);
    size_t len = SL(n);
    json_t *j = NULL;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (is_null(n))
            return json_null();
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
            return json_true();
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
            return json_false();
        if (is_int(s, len)) {
            errno = 0;
            long long v = strtoll(s, NULL, 10);
            if (errno == ERANGE) {
                ferr(f, npos(f, n), "%s: %s does not fit in a 64-bit integer (quote it to make it a string)",
                     path, SHOWN_NODE(n));
                return NULL;
            }
            j = json_integer(v);
        } else if (is_float(s, len)) {
            double v = strtod(s, NULL);
            if (!isfinite(v)) {
                ferr(f, npos(f, n), "%s: %s is out of the range of a number (quote it to make it a string)",
                     path, SHOWN_NODE(n));
                return NULL;
            }
            j = json_real(v);
        }
    }
    if (!j && !(j = json_stringn(s, len)))
        ferr(f, npos(f, n), "%s: the string is not valid UTF-8", path);
    return j;
}

/* A node as JSON (token claims, context); NULL after reporting why. Depth is bounded by
 * check_stream(). */
static json_t *node_json(yfile *f, const yaml_node_t *n, const char *path)
{
    char kpath[256];
    int bad = 0;
    if (n->type == YAML_SCALAR_NODE)
        return scalar_json(f, n, path);
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        if (!a) {
            oom(f, npos(f, n));
            return NULL;
        }
        size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        for (size_t i = 0; i < k; i++) {
            yaml_node_t *item = node_at(f, n->data.sequence.items.start[i]);
            snprintf(kpath, sizeof(kpath), "%s[%zu]", path, i);
            json_t *v = item ? node_json(f, item, kpath) : NULL;
            if (!v || json_array_append_new(a, v) < 0)
                bad = 1;
        }
        if (bad) {
            json_decref(a);
            return NULL;
        }
        return a;
    }
    if (n->type != YAML_MAPPING_NODE)
        return NULL;
    json_t *o = json_object();
    if (!o) {
        oom(f, npos(f, n));
        return NULL;
    }
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(f, pr->key), *v = node_at(f, pr->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) { /* check_keys() said so */
            bad = 1;
            continue;
        }
        snprintf(kpath, sizeof(kpath), "%s.%s", path, SHOWN_NODE(k));
        if (has_nul(k)) {
            ferr(f, npos(f, k), "%s: a NUL character ('\\0') is not allowed in a name", kpath);
            bad = 1;
            continue;
        }
        json_t *j = node_json(f, v, kpath);
        if (!j || json_object_set_new(o, SV(k), j) < 0)
            bad = 1;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* `headers`, `query` or `params` of a request: a mapping of names to scalars. */
static void read_kvs(yfile *f, const yaml_node_t *n, const char *path, int headers, fx_authz_kv **out,
                     size_t *count)
{
    if (is_null(n))
        return;
    if (n->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, n), "%s: expected a mapping of names to values, got %s", path, kind(n));
        return;
    }
    size_t k = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!k || !(*out = calloc(k, sizeof(**out)))) {
        if (k)
            oom(f, npos(f, n));
        return;
    }
    for (size_t i = 0; i < k; i++) {
        yaml_node_t *key = node_at(f, n->data.mapping.pairs.start[i].key);
        yaml_node_t *v = node_at(f, n->data.mapping.pairs.start[i].value);
        if (!key || !v || key->type != YAML_SCALAR_NODE)
            continue;
        char kpath[400];
        snprintf(kpath, sizeof(kpath), "%s.%s", path, SHOWN_NODE(key));
        if (!SL(key) || has_nul(key)) {
            ferr(f, npos(f, key), "%s: expected a name, got '%s'", path, SHOWN_NODE(key));
            continue;
        }
        if (headers) {
            size_t j = 0;
            while (j < SL(key) && is_tchar((unsigned char)SV(key)[j]))
                j++;
            if (j < SL(key)) {
                ferr(f, npos(f, key), "%s: '%s' is not a valid header name", path, SHOWN_NODE(key));
                continue;
            }
        }
        if (v->type != YAML_SCALAR_NODE) {
            ferr(f, npos(f, v), "%s: expected a string, got %s", kpath, kind(v));
            continue;
        }
        if (has_nul(v)) {
            ferr(f, npos(f, v), "%s: a NUL character ('\\0') is not allowed here", kpath);
            continue;
        }
        char *name = dup_str(f, key), *value = dup_str(f, v);
        if (!name || !value) {
            free(name);
            free(value);
            continue;
        }
        (*out)[(*count)++] = (fx_authz_kv){{name, SL(key)}, {value, SL(v)}};
    }
}

static void read_request(yfile *f, const yaml_node_t *req, const char *cpath, fx_policy_case *c)
{
    char path[64], kpath[96];
    snprintf(path, sizeof(path), "%s.request", cpath);
    if (req->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, req), "%s: expected a mapping with method and path, got %s", path, kind(req));
        return;
    }
    check_known(f, req, path, request_keys, " (a request has method, path, headers, query, params, route)");
    yaml_node_t *n = need(f, req, path, "method", "GET, POST, ...", NULL);
    snprintf(kpath, sizeof(kpath), "%s.method", path);
    if (n && want_str(f, n, kpath, "an HTTP method") && check_method(f, n, kpath))
        c->method = dup_str(f, n);
    n = need(f, req, path, "path", "the request's path, such as /api/documents/42", NULL);
    snprintf(kpath, sizeof(kpath), "%s.path", path);
    if (n && want_str(f, n, kpath, "a path starting with '/'")) {
        const char *q = memchr(SV(n), '?', SL(n));
        if (SV(n)[0] != '/')
            ferr(f, npos(f, n), "%s: expected a path starting with '/', got '%s'", kpath, SHOWN_NODE(n));
        else if (q)
            ferr(f, npos(f, n), "%s: '%s' has a query string: give its parameters under `query`", kpath,
                 SHOWN_NODE(n));
        else
            c->path = dup_str(f, n);
    }
    if ((n = get(f, req, "headers", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.headers", path);
        read_kvs(f, n, kpath, 1, &c->headers, &c->nheaders);
    }
    if ((n = get(f, req, "query", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.query", path);
        read_kvs(f, n, kpath, 0, &c->query, &c->nquery);
    }
    if ((n = get(f, req, "params", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.params", path);
        read_kvs(f, n, kpath, 0, &c->params, &c->nparams);
    }
    if ((n = get(f, req, "route", NULL)) && !is_null(n)) {
        snprintf(kpath, sizeof(kpath), "%s.route", path);
        if (want_str(f, n, kpath, "a route name") && check_name(f, n, kpath))
            c->route = dup_str(f, n);
    }
}

/* `token` or `context`: a mapping → a JSON object; nothing → NULL. */
static fx_authz_doc *read_doc(yfile *f, const yaml_node_t *n, const char *path, const char *what)
{
    if (is_null(n))
        return NULL;
    if (n->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, n), "%s: expected %s, got %s", path, what, kind(n));
        return NULL;
    }
    return JSON_DOC(node_json(f, n, path));
}

static void read_case(yfile *f, const yaml_node_t *item, size_t idx, fx_policy_cases *out)
{
    char path[48], kpath[64];
    snprintf(path, sizeof(path), "tests[%zu]", idx);
    if (item->type != YAML_MAPPING_NODE) {
        ferr(f, npos(f, item), "%s: expected a test (a mapping with name, request and expect), got %s", path,
             kind(item));
        return;
    }
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 8;
        fx_policy_case *v = realloc(out->v, cap * sizeof(*v));
        if (!v) {
            oom(f, npos(f, item));
            return;
        }
        out->v = v;
        out->cap = cap;
    }
    fx_policy_case *c = &out->v[out->n++];
    memset(c, 0, sizeof(*c));
    fx_src_pos at = npos(f, item);
    c->line = at.line;
    c->col = at.col;
    if (!(c->file = strdup(f->name)))
        oom(f, at);
    check_known(f, item, path, case_keys, " (a test has name, request, token, context, expect, policies)");

    yaml_node_t *n = need(f, item, path, "name", "what the test checks, in a few words", NULL);
    snprintf(kpath, sizeof(kpath), "%s.name", path);
    if (n && want_str(f, n, kpath, "a name (a string)") && check_name(f, n, kpath))
        c->name = dup_str(f, n);

    if ((n = need(f, item, path, "request", "a mapping with method and path", NULL)))
        read_request(f, n, path, c);

    if ((n = get(f, item, "token", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.token", path);
        c->token = read_doc(f, n, kpath, "the token's claims (a mapping; leave `token` out for no token)");
    }
    if ((n = get(f, item, "context", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.context", path);
        c->context = read_doc(f, n, kpath, "a mapping");
    }

    n = need(f, item, path, "expect", "allow or deny", NULL);
    snprintf(kpath, sizeof(kpath), "%s.expect", path);
    if (n && want_str(f, n, kpath, "allow or deny")) {
        if (str_is(SV(n), SL(n), "allow"))
            c->expect_allow = 1;
        else if (!str_is(SV(n), SL(n), "deny"))
            ferr(f, npos(f, n), "%s: expected allow or deny, got '%s'%s", kpath, SHOWN_NODE(n),
                 suggest(SV(n), SL(n), expects).s);
    }

    if ((n = get(f, item, "policies", NULL))) {
        snprintf(kpath, sizeof(kpath), "%s.policies", path);
        size_t k = n->type == YAML_SEQUENCE_NODE
                       ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
                       : 0;
        if (n->type != YAML_SEQUENCE_NODE) {
            ferr(f, npos(f, n), "%s: expected a list of policy ids ([] when no policy may match), got %s",
                 kpath, kind(n));
        } else if (k && !(c->expect_policies = calloc(k, sizeof(char *)))) {
            oom(f, npos(f, n));
        } else {
            c->has_expect_policies = 1;
            for (size_t i = 0; i < k; i++) {
                yaml_node_t *id = node_at(f, n->data.sequence.items.start[i]);
                char ipath[96];
                snprintf(ipath, sizeof(ipath), "%s[%zu]", kpath, i);
                if (id && want_str(f, id, ipath, "a policy id") && check_id(f, id, ipath) &&
                    (c->expect_policies[c->nexpect_policies] = dup_str(f, id)))
                    c->nexpect_policies++;
            }
        }
    }
}

static int read_test_file(yfile *f, fx_policy_cases *out)
{
    yaml_node_t *list = top_list(f, "tests", test_file_keys, "tests");
    size_t n = list ? (size_t)(list->data.sequence.items.top - list->data.sequence.items.start) : 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(f, list->data.sequence.items.start[i]);
        if (item)
            read_case(f, item, i, out);
    }
    return f->nerr ? -1 : 0;
}

/* ---- the public functions ------------------------------------------------------------ */

/* Reads a whole file of at most FX_POLICY_MAX_FILE_BYTES into *out (malloc'd). Errors are
 * diagnostics at line 0. */
static int read_whole(yfile *f, char **out, size_t *outlen)
{
    char eb[128];
    FILE *fp = fopen(f->name, "rb");
    if (!fp) {
        ferr(f, (fx_src_pos){0, 0}, "cannot open the file: %s", strerror_r(errno, eb, sizeof(eb)));
        return -1;
    }
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap);
    int err = 0;
    while (buf) {
        if (n == cap) {
            if (cap > FX_POLICY_MAX_FILE_BYTES)
                break;
            size_t ncap = cap * 2 > FX_POLICY_MAX_FILE_BYTES + 1 ? FX_POLICY_MAX_FILE_BYTES + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0) {
            if (ferror(fp))
                err = errno ? errno : EIO;
            break;
        }
    }
    fclose(fp);
    if (!buf)
        ferr(f, (fx_src_pos){0, 0}, "out of memory reading the file");
    else if (err)
        ferr(f, (fx_src_pos){0, 0}, "cannot read the file: %s", strerror_r(err, eb, sizeof(eb)));
    else if (n > FX_POLICY_MAX_FILE_BYTES)
        ferr(f, (fx_src_pos){0, 0}, "the file is larger than %zu bytes (4 MiB): split it",
             FX_POLICY_MAX_FILE_BYTES);
    if (f->nerr) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* The checks of the arguments common to the four loaders; 0 if the text can be read. */
static int check_input(yfile *f, const void *where, const char *buf, size_t len)
{
    if (!where)
        ferr(f, (fx_src_pos){0, 0}, "nothing to load into");
    else if (!buf && len)
        ferr(f, (fx_src_pos){0, 0}, "no text to read");
    else if (len > FX_POLICY_MAX_FILE_BYTES)
        ferr(f, (fx_src_pos){0, 0}, "the file is larger than %zu bytes (4 MiB): split it",
             FX_POLICY_MAX_FILE_BYTES);
    return f->nerr ? -1 : 0;
}

int fx_policy_builder_add_buffer(fx_policy_builder *b, const char *name, const char *buf, size_t len,
                                 fx_authz_diags *d)
{
    yfile f = {
        .name = name ? name : "<input>",
        .what = "policy file",
        .buf = (const unsigned char *)(buf ? buf : ""),
        .len = buf ? len : 0,
    };
    int r = check_input(&f, b, buf, len) < 0 ? -1 : read_policy_file(&f, b);
    if (r < 0 && b)
        fx_policy_builder_fail(b);
    diags_hand_over(&f, d);
    yfile_done(&f);
    return r;
}

int fx_policy_builder_add_file(fx_policy_builder *b, const char *path, fx_authz_diags *d)
{
    yfile f = {.name = path ? path : "<input>", .what = "policy file"};
    char *buf = NULL;
    size_t len = 0;
    if (check_input(&f, b, "", 0) == 0 && !path)
        ferr(&f, (fx_src_pos){0, 0}, "no file name");
    if (f.nerr || read_whole(&f, &buf, &len) < 0) {
        if (b)
            fx_policy_builder_fail(b);
        diags_hand_over(&f, d);
        return -1;
    }
    int r = fx_policy_builder_add_buffer(b, path, buf, len, d);
    free(buf);
    return r;
}

int fx_policy_cases_load_buffer(fx_policy_cases *cases, const char *name, const char *buf, size_t len,
                                fx_authz_diags *d)
{
    fx_policy_cases mine = {0};
    yfile f = {
        .name = name ? name : "<input>",
        .what = "policy test file",
        .buf = (const unsigned char *)(buf ? buf : ""),
        .len = buf ? len : 0,
    };
    int r = check_input(&f, cases, buf, len) < 0 ? -1 : read_test_file(&f, &mine);
    if (r == 0 && mine.n) {
        if (cases->cap - cases->n < mine.n) {
            fx_policy_case *v = realloc(cases->v, (cases->n + mine.n) * sizeof(*v));
            if (v) {
                cases->v = v;
                cases->cap = cases->n + mine.n;
            } else {
                oom(&f, (fx_src_pos){0, 0});
                r = -1;
            }
        }
        if (r == 0) {
            memcpy(cases->v + cases->n, mine.v, mine.n * sizeof(*mine.v));
            cases->n += mine.n;
            mine.n = 0;
        }
    }
    fx_policy_cases_free(&mine);
    diags_hand_over(&f, d);
    yfile_done(&f);
    return r;
}

int fx_policy_cases_load_file(fx_policy_cases *cases, const char *path, fx_authz_diags *d)
{
    yfile f = {.name = path ? path : "<input>", .what = "policy test file"};
    char *buf = NULL;
    size_t len = 0;
    if (check_input(&f, cases, "", 0) == 0 && !path)
        ferr(&f, (fx_src_pos){0, 0}, "no file name");
    if (f.nerr || read_whole(&f, &buf, &len) < 0) {
        diags_hand_over(&f, d);
        return -1;
    }
    int r = fx_policy_cases_load_buffer(cases, path, buf, len, d);
    free(buf);
    return r;
}

void fx_policy_cases_free(fx_policy_cases *cases)
{
    if (!cases)
        return;
    for (size_t i = 0; i < cases->n; i++)
        case_free(&cases->v[i]);
    free(cases->v);
    memset(cases, 0, sizeof(*cases));
}

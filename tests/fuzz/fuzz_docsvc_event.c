/*
 * fuzz_docsvc_event.c — libFuzzer harness for examples/documents-service/store.c:
 * docstore_apply, which turns one Kafka message (a CloudEvent the gateway
 * published, so outside input) into rows of the SQLite view.
 *
 * One input is one message:
 *   byte 0     bit 0 the topic (0 profiles, 1 documents), bits 1-2 the
 *              partition, bit 3 no value at all (a tombstone)
 *   byte 1     the key's length n (0: no key), cut to what is left
 *   n bytes    the key
 *   the rest   the value
 *
 * The store is one SQLite file in a mkdtemp directory, kept across inputs as
 * the service keeps it across messages, so a profile event re-enriches the
 * documents of earlier inputs. It starts afresh every 10,000 inputs, or when
 * the view passes 500 rows (every input lists them all). A failure may thus
 * need the inputs before it; the file is left in place when one aborts.
 *
 * Each message gets its own transaction (begin, apply, commit), then:
 *   outcome   APPLIED with no reason, or SKIPPED with one of
 *             docstore_skip_reasons; never FAILED, the store is healthy
 *   offsets   the message's partition's next offset is its offset + 1, every
 *             other partition's is what it was
 *   view      docstore_count >= 0 and equal to the rows docstore_list gives,
 *             sorted by id, each a JSON object with "author_profile" (an
 *             object or null), whose author column is its non-empty string
 *             "author" (else NULL); rows of one author carry the same
 *             author_profile, and its "id", when it has one, names the author
 *   applied   what an APPLIED message says happened, read back through
 *             docstore_get and docstore_list by author (id: the key up to a
 *             NUL, else the subject): a document.updated row is its data
 *             plus author_profile, a document.deleted id has no row, every
 *             row of a profile.updated id carries its data, of a
 *             profile.deleted id null
 *   ids       a row's "id", when it has one, names the row: the same string,
 *             or an integer written in decimal (store.c keys a document by
 *             the message key, else the subject, and skips it as id_mismatch
 *             when data.id names another; data without "id" is applied)
 *
 *   build-fuzz/tests/fuzz/fuzz_docsvc_event -max_len=65536 tests/data/docsvc
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            fprintf(stderr, "fuzz_docsvc_event: %s:%d: ", __FILE__, __LINE__);                                        \
            fprintf(stderr, __VA_ARGS__);                                                                             \
            fputc('\n', stderr);                                                                                      \
            abort();                                                                                                  \
        }                                                                                                             \
    } while (0)

enum { NTOPIC = 2, NPART = 4, REOPEN_INPUTS = 10000, REOPEN_ROWS = 500 };

static const char *const topics[NTOPIC] = {"profiles", "documents"};

/* The harness's one store (libFuzzer runs inputs one at a time in one thread). */
static struct {
    char dir[256];
    char path[300];
    docstore *store;
    unsigned inputs;              /* applied since the store was opened */
    int64_t next[NTOPIC][NPART];  /* the stored next offset of each partition, -1 when none */
} h;

/* ---- the store ------------------------------------------------------------------------------- */

static void remove_files(void)
{
    char p[320];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", h.path, suffixes[i]);
        unlink(p);
    }
}

static void store_fresh(void)
{
    docstore_close(h.store);
    remove_files();
    char err[512] = "";
    h.store = docstore_open(h.path, err, sizeof(err));
    CHECK(h.store, "docstore_open: %s", err);
    h.inputs = 0;
    for (int t = 0; t < NTOPIC; t++)
        for (int p = 0; p < NPART; p++)
            h.next[t][p] = -1;
}

static void cleanup(void)
{
    docstore_close(h.store);
    h.store = NULL;
    remove_files();
    rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(h.dir, sizeof(h.dir), "%s/fuzz_docsvc_event-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(h.dir), "mkdtemp %s failed", h.dir);
    snprintf(h.path, sizeof(h.path), "%s/view.db", h.dir);
    store_fresh();
    atexit(cleanup);
    return 0;
}

/* ---- the view -------------------------------------------------------------------------------- */

struct view_check {
    int64_t rows;
    char *prev_id;     /* the row before, for the order */
    json_t *profiles;  /* author → the author_profile its first row carried */
};

static const char *nonempty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* Whether a JSON "id" names the row (or author) `id`: that string, or an integer in decimal. */
static int names(json_t *v, const char *id)
{
    char num[32];
    if (json_is_string(v))
        return strlen(id) == json_string_length(v) && !memcmp(json_string_value(v), id, json_string_length(v));
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return !strcmp(num, id);
    }
    return 0;
}

/* For a failure message: v as compact JSON (malloc'd; it leaks, the harness aborts right after). */
static char *dump(json_t *v)
{
    char *d = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return d ? d : strdup("(none)");
}

static void on_row(void *arg, const docstore_row *row)
{
    struct view_check *c = arg;
    CHECK(row->id && row->json, "a row without id or JSON");
    CHECK(!c->prev_id || strcmp(c->prev_id, row->id) < 0, "row \"%s\" listed after \"%s\"", row->id, c->prev_id);
    free(c->prev_id);
    c->prev_id = strdup(row->id);
    CHECK(c->prev_id, "out of memory");
    c->rows++;

    json_error_t err = {0};
    json_t *doc = json_loads(row->json, 0, &err);
    CHECK(json_is_object(doc), "row \"%s\" is not a JSON object (%s): %.300s", row->id, err.text, row->json);

    json_t *id = json_object_get(doc, "id");
    CHECK(!id || names(id, row->id), "row \"%s\" has \"id\":%s", row->id, dump(id));

    const char *author = nonempty_string(json_object_get(doc, "author"));
    CHECK(row->author ? author && !strcmp(author, row->author) : !author,
          "row \"%s\": author column \"%s\", JSON \"author\" \"%s\"", row->id, row->author ? row->author : "(null)",
          author ? author : "(none)");

    json_t *profile = json_object_get(doc, "author_profile");
    CHECK(json_is_object(profile) || json_is_null(profile), "row \"%s\": author_profile missing or not an object",
          row->id);
    if (!row->author) {
        CHECK(json_is_null(profile), "row \"%s\" has no author but an author_profile", row->id);
    } else {
        json_t *pid = json_object_get(profile, "id");
        CHECK(!pid || names(pid, row->author), "row \"%s\" of author \"%s\" has the profile of %s", row->id,
              row->author, dump(pid));
        json_t *seen = json_object_get(c->profiles, row->author);
        if (seen && !json_equal(seen, profile)) {
            CHECK(0, "rows of author \"%s\" disagree on author_profile: %s in an earlier row, %s in \"%s\"",
                  row->author, dump(seen), dump(profile), row->id);
        } else if (!seen) {
            json_object_set(c->profiles, row->author, profile);
        }
    }
    json_decref(doc);
}

static int64_t check_view(docstore *s)
{
    int64_t count = docstore_count(s);
    CHECK(count >= 0, "docstore_count: %s", docstore_error(s));
    struct view_check c = {0, NULL, json_object()};
    CHECK(c.profiles, "out of memory");
    CHECK(docstore_list(s, NULL, on_row, &c) == 0, "docstore_list: %s", docstore_error(s));
    CHECK(c.rows == count, "docstore_count says %lld rows, docstore_list gave %lld", (long long)count,
          (long long)c.rows);
    free(c.prev_id);
    json_decref(c.profiles);
    return count;
}

/* ---- an applied message, read back ---------------------------------------------------------- */

struct author_check {
    json_t *want; /* every row's author_profile */
    const char *author;
};

static void on_author_row(void *arg, const docstore_row *row)
{
    struct author_check *c = arg;
    CHECK(row->author && !strcmp(row->author, c->author), "listing author \"%s\" gave row \"%s\" of \"%s\"",
          c->author, row->id, row->author ? row->author : "(null)");
    json_t *doc = json_loads(row->json, 0, NULL);
    json_t *got = json_object_get(doc, "author_profile");
    CHECK(got && json_equal(got, c->want), "after profile %s of \"%s\", row \"%s\" has author_profile %s",
          dump(c->want), c->author, row->id, dump(got));
    json_decref(doc);
}

static void check_applied(docstore *s, const char *key, size_t keylen, const char *value, size_t len)
{
    json_t *ev = value ? json_loadb(value, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    CHECK(json_is_object(ev), "applied a value that is not a JSON object");
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *data = json_object_get(ev, "data");
    char *id = key ? strndup(key, keylen) : NULL;
    if (!id || !*id) {
        free(id);
        const char *subject = nonempty_string(json_object_get(ev, "subject"));
        id = subject ? strdup(subject) : NULL;
    }
    CHECK(type && id, "applied an event without a type or without an id in key and subject");

    if (!strcmp(type, "document.updated") || !strcmp(type, "document.deleted")) {
        char *author = NULL;
        int found;
        char *json = docstore_get(s, id, &author, &found);
        CHECK(found >= 0, "docstore_get: %s", docstore_error(s));
        if (!strcmp(type, "document.deleted")) {
            CHECK(!found, "document \"%s\" deleted, still in the view", id);
        } else {
            CHECK(found == 1, "document \"%s\" updated, not in the view", id);
            json_t *row = json_loads(json, 0, NULL), *want = json_deep_copy(data);
            CHECK(json_is_object(row) && json_is_object(want), "row \"%s\": not an object", id);
            json_object_set(want, "author_profile", json_object_get(row, "author_profile"));
            CHECK(json_equal(row, want), "document \"%s\": data %s, row %s", id, dump(data), json);
            json_decref(row);
            json_decref(want);
        }
        free(json);
        free(author);
    } else {
        CHECK(!strcmp(type, "profile.updated") || !strcmp(type, "profile.deleted"), "applied type \"%s\"", type);
        struct author_check c = {!strcmp(type, "profile.updated") ? data : json_null(), id};
        CHECK(c.want, "profile.updated applied without data");
        CHECK(docstore_list(s, id, on_author_row, &c) == 0, "docstore_list: %s", docstore_error(s));
    }
    free(id);
    json_decref(ev);
}

/* ---- one message ----------------------------------------------------------------------------- */

static int known_reason(const char *reason)
{
    for (size_t i = 0; i < docstore_nskip_reasons; i++)
        if (!strcmp(reason, docstore_skip_reasons[i]))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags = size > 0 ? data[0] : 0;
    size_t pos = size < 2 ? size : 2;
    size_t keylen = size > 1 ? data[1] : 0;
    if (keylen > size - pos)
        keylen = size - pos;
    const char *key = keylen ? (const char *)data + pos : NULL;
    pos += keylen;
    const char *value = flags & 8 ? NULL : (const char *)data + pos;
    size_t len = value ? size - pos : 0;
    int t = flags & 1, p = (flags >> 1) & 3;

    if (h.inputs >= REOPEN_INPUTS)
        store_fresh();
    h.inputs++;
    docstore *s = h.store;
    int64_t offset = h.next[t][p] < 0 ? 0 : h.next[t][p];

    CHECK(docstore_begin(s) == 0, "docstore_begin: %s", docstore_error(s));
    const char *reason = "(not set)";
    docstore_outcome o = docstore_apply(s, topics[t], p, offset, key, keylen, value, len, &reason);
    CHECK(o == DOCSTORE_APPLIED || o == DOCSTORE_SKIPPED, "outcome %d on a healthy store: %s", (int)o,
          docstore_error(s));
    if (o == DOCSTORE_SKIPPED)
        CHECK(reason && known_reason(reason), "skipped for \"%s\", not one of docstore_skip_reasons",
              reason ? reason : "(null)");
    else
        CHECK(!reason, "applied with a reason \"%s\"", reason);
    CHECK(docstore_commit(s) == 0, "docstore_commit: %s", docstore_error(s));
    if (o == DOCSTORE_APPLIED)
        check_applied(s, key, keylen, value, len);
    CHECK(!docstore_in_transaction(s), "still in a transaction after the commit");

    h.next[t][p] = offset + 1;
    for (int tt = 0; tt < NTOPIC; tt++)
        for (int pp = 0; pp < NPART; pp++) {
            int64_t next = docstore_next_offset(s, topics[tt], pp);
            CHECK(next == h.next[tt][pp], "%s[%d]: next offset %lld, expected %lld (message %s[%d]@%lld)",
                  topics[tt], pp, (long long)next, (long long)h.next[tt][pp], topics[t], p, (long long)offset);
        }

    if (check_view(s) > REOPEN_ROWS)
        store_fresh();
    return 0;
}

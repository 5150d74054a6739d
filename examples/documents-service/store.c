/*
 * store.c — the documents service's state store (store.h).
 *
 * Why SQLite (Debian's libsqlite3) and not an append-only file: the view is
 * only correct together with the offsets it was built from. One SQLite
 * transaction commits a poll batch's view rows *and* the partitions' next
 * offsets, so after any crash the file holds a consistent pair: a restart
 * resumes exactly after the last applied message, with no event applied
 * twice and none lost. WAL mode gives crash safety without blocking readers;
 * synchronous=NORMAL may lose the last commits on power loss, but then it
 * loses their offsets with them, and those messages are simply read again.
 * An append-only file would need its own framing, checksums, compaction and
 * an index for "every document of author X" — SQLite has all of them.
 *
 * Tables:
 *   profiles(id, json)           the profile topic as a table, keyed by id
 *   documents(id, author, json)  the latest document of each id, as published
 *   view(id, author, json)       the stream-table join: each document with
 *                                "author_profile" = its author's profile
 *   offsets(topic, partition, next)
 *   meta(key, value)             "cluster": the Kafka cluster id the offsets belong to
 *
 * Map of this file:
 *   schema    open, pragmas, tables, prepared statements; the cluster id, reset
 *   events    a CloudEvent's value → (type, id, data) or a skip reason
 *   join      (re)computing view rows: one document, or every row of an author
 *   apply     one message: the change, its view rows, its offset
 *   reads     get, list (whole or a page), count for the HTTP side
 */
#include "store.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const docstore_skip_reasons[] = {"not_json", "no_id", "unknown_type", "no_data", "id_mismatch",
                                             "duplicate_member"};
const size_t docstore_nskip_reasons = sizeof(docstore_skip_reasons) / sizeof(docstore_skip_reasons[0]);

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK,
    Q_OFFSET_GET, Q_OFFSET_SET,
    Q_PROFILE_GET, Q_PROFILE_PUT, Q_PROFILE_DEL,
    Q_DOC_PUT, Q_DOC_DEL, Q_DOCS_OF_AUTHOR,
    Q_VIEW_PUT, Q_VIEW_DEL, Q_VIEW_GET, Q_VIEW_ALL, Q_VIEW_OF_AUTHOR, Q_VIEW_COUNT,
    Q_VIEW_PAGE, Q_VIEW_PAGE_OF_AUTHOR, Q_META_GET, Q_META_SET,
    Q_COUNT
};

static const char *const queries[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_OFFSET_GET] = "SELECT next FROM offsets WHERE topic = ?1 AND partition = ?2",
    [Q_OFFSET_SET] = "INSERT INTO offsets(topic, partition, next) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT(topic, partition) DO UPDATE SET next = excluded.next",
    [Q_PROFILE_GET] = "SELECT json FROM profiles WHERE id = ?1",
    [Q_PROFILE_PUT] = "INSERT INTO profiles(id, json) VALUES (?1, ?2) "
                      "ON CONFLICT(id) DO UPDATE SET json = excluded.json",
    [Q_PROFILE_DEL] = "DELETE FROM profiles WHERE id = ?1",
    [Q_DOC_PUT] = "INSERT INTO documents(id, author, json) VALUES (?1, ?2, ?3) "
                  "ON CONFLICT(id) DO UPDATE SET author = excluded.author, json = excluded.json",
    [Q_DOC_DEL] = "DELETE FROM documents WHERE id = ?1",
    [Q_DOCS_OF_AUTHOR] = "SELECT id, json FROM documents WHERE author = ?1",
    [Q_VIEW_PUT] = "INSERT INTO view(id, author, json) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT(id) DO UPDATE SET author = excluded.author, json = excluded.json",
    [Q_VIEW_DEL] = "DELETE FROM view WHERE id = ?1",
    [Q_VIEW_GET] = "SELECT json, author FROM view WHERE id = ?1",
    [Q_VIEW_ALL] = "SELECT id, author, json FROM view ORDER BY id",
    [Q_VIEW_OF_AUTHOR] = "SELECT id, author, json FROM view WHERE author = ?1 ORDER BY id",
    [Q_VIEW_COUNT] = "SELECT count(*) FROM view",
    /* ?1 NULL: from the first id on */
    [Q_VIEW_PAGE] = "SELECT id, author, json FROM view WHERE ?1 IS NULL OR id > ?1 ORDER BY id",
    [Q_VIEW_PAGE_OF_AUTHOR] = "SELECT id, author, json FROM view WHERE author = ?2 AND (?1 IS NULL OR id > ?1) "
                              "ORDER BY id",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_SET] = "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "CREATE TABLE IF NOT EXISTS profiles(id TEXT PRIMARY KEY, json TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS documents(id TEXT PRIMARY KEY, author TEXT, json TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS documents_author ON documents(author);"
    "CREATE TABLE IF NOT EXISTS view(id TEXT PRIMARY KEY, author TEXT, json TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS view_author ON view(author);"
    "CREATE TABLE IF NOT EXISTS offsets(topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "next INTEGER NOT NULL, PRIMARY KEY(topic, partition));"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);";

struct docstore {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    int in_tx;
    char *path;
    char err[512];
};

static sqlite3_stmt *stmt(docstore *s, int q);
static int run(docstore *s, sqlite3_stmt *st, const char *what);

/* ---- schema ------------------------------------------------------------------------------- */

static void set_err(docstore *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
}

/* A failed SQLite call: what it was doing, the file, and SQLite's own words. */
static int db_fail(docstore *s, const char *what)
{
    set_err(s, "store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
    return -1;
}

static void unlink_leftover(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (!p)
        return;
    snprintf(p, n, "%s%s", path, suffix);
    unlink(p); /* absent is the usual case */
    free(p);
}

docstore *docstore_open(const char *path, char *err, size_t errlen)
{
    docstore *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        snprintf(err, errlen, "store %s: out of memory", path);
        free(s);
        return NULL;
    }
    /* A WAL without its database would be replayed into the new, empty file:
     * whoever deleted the store meant all of it. */
    if (access(path, F_OK) != 0) {
        unlink_leftover(path, "-wal");
        unlink_leftover(path, "-shm");
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "store %s: cannot open: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        docstore_close(s);
        return NULL;
    }
    char *msg = NULL;
    sqlite3_busy_timeout(s->db, 2000);
    if (sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "store %s: cannot create the tables: %s (is it a SQLite file of this service?)",
                 path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        docstore_close(s);
        return NULL;
    }
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "store %s: preparing \"%s\": %s", path, queries[i], sqlite3_errmsg(s->db));
            docstore_close(s);
            return NULL;
        }
    }
    return s;
}

void docstore_close(docstore *s)
{
    if (!s)
        return;
    if (s->in_tx) /* not committed by the caller: a batch that failed */
        run(s, stmt(s, Q_ROLLBACK), "rollback");
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db); /* the last connection checkpoints and removes the WAL */
    free(s->path);
    free(s);
}

const char *docstore_error(const docstore *s)
{
    return s->err;
}

/* A statement ready to bind: reset from its last use. */
static sqlite3_stmt *stmt(docstore *s, int q)
{
    sqlite3_reset(s->q[q]);
    sqlite3_clear_bindings(s->q[q]);
    return s->q[q];
}

/* Runs a statement that returns no rows. */
static int run(docstore *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, what);
}

static void bind_text(sqlite3_stmt *st, int i, const char *p, size_t len)
{
    if (p)
        sqlite3_bind_text(st, i, p, (int)len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int docstore_begin(docstore *s)
{
    if (s->in_tx)
        return 0;
    if (run(s, stmt(s, Q_BEGIN), "begin") < 0)
        return -1;
    s->in_tx = 1;
    return 0;
}

int docstore_commit(docstore *s)
{
    if (!s->in_tx)
        return 0;
    s->in_tx = 0;
    if (run(s, stmt(s, Q_COMMIT), "commit") == 0)
        return 0;
    run(s, stmt(s, Q_ROLLBACK), "rollback");
    return db_fail(s, "commit");
}

/* Abandons the open transaction; the message of what failed stays in s->err. */
static void rollback(docstore *s)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    s->in_tx = 0;
    run(s, stmt(s, Q_ROLLBACK), "rollback");
    memcpy(s->err, keep, sizeof(keep));
}

int docstore_in_transaction(const docstore *s)
{
    return s->in_tx;
}

int64_t docstore_next_offset(docstore *s, const char *topic, int32_t partition)
{
    sqlite3_stmt *st = stmt(s, Q_OFFSET_GET);
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, partition);
    int rc = sqlite3_step(st);
    int64_t next = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? -1 : -2;
    if (next == -2)
        db_fail(s, "reading an offset");
    sqlite3_reset(st);
    return next;
}

char *docstore_cluster(docstore *s, int *found)
{
    sqlite3_stmt *st = stmt(s, Q_META_GET);
    sqlite3_bind_text(st, 1, "cluster", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    char *id = rc == SQLITE_ROW ? strdup((const char *)sqlite3_column_text(st, 0)) : NULL;
    *found = rc == SQLITE_ROW && id ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        db_fail(s, "reading the cluster id");
    else if (rc == SQLITE_ROW && !id)
        set_err(s, "store %s: out of memory", s->path);
    sqlite3_reset(st);
    return id;
}

/* Everything goes in one transaction: a crash halfway leaves the old store, whose cluster id
 * still differs, so the next start resets again. */
int docstore_reset(docstore *s, const char *cluster)
{
    static const char wipe[] = "DELETE FROM view; DELETE FROM documents; DELETE FROM profiles; DELETE FROM offsets;";
    int own = !s->in_tx;
    if (own && docstore_begin(s) < 0)
        return -1;
    if (sqlite3_exec(s->db, wipe, NULL, NULL, NULL) != SQLITE_OK) {
        db_fail(s, "clearing the view for a new cluster");
        if (own)
            rollback(s);
        return -1;
    }
    sqlite3_stmt *st = stmt(s, Q_META_SET);
    sqlite3_bind_text(st, 1, "cluster", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cluster, -1, SQLITE_TRANSIENT);
    if (cluster && run(s, st, "storing the cluster id") < 0) {
        if (own)
            rollback(s);
        return -1;
    }
    return own ? docstore_commit(s) : 0;
}

/* ---- events ------------------------------------------------------------------------------- */

enum kind { PROFILE_UPDATED, PROFILE_DELETED, DOCUMENT_UPDATED, DOCUMENT_DELETED };

struct event {
    enum kind kind;
    const char *id;  /* borrowed from the parsed value or the key copy */
    json_t *data;    /* borrowed: the object, for *_UPDATED */
};

static int kind_of(const char *type, enum kind *k)
{
    static const struct { const char *type; enum kind kind; } types[] = {
        {"profile.updated", PROFILE_UPDATED}, {"profile.deleted", PROFILE_DELETED},
        {"document.updated", DOCUMENT_UPDATED}, {"document.deleted", DOCUMENT_DELETED},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(type, types[i].type)) {
            *k = types[i].kind;
            return 0;
        }
    return -1;
}

static const char *nonempty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* Whether a data.id (string, or integer as the monolith might write it) names `id`. */
static int same_id(json_t *v, const char *id)
{
    char num[32];
    if (json_is_string(v))
        return !strcmp(json_string_value(v), id) && strlen(id) == json_string_length(v);
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return !strcmp(num, id);
    }
    return 0;
}

/*
 * Decodes a CloudEvent (docs/events.md). The id is the message key: the
 * gateway renders it from the route's {id}, the resource the monolith wrote.
 * data.id is the request body's word, echoed by the monolith (which drops a
 * literal "id" member but not "\u0069d"), so it only has to agree: an event
 * whose data.id or subject names another resource is skipped (id_mismatch),
 * never applied to the one it names. Without a key (a producer other than
 * the gateway), the subject. Returns NULL on success, or the skip reason.
 */
static const char *decode(json_t *ev, const char *key, struct event *out)
{
    if (!json_is_object(ev))
        return "not_json";
    const char *type = nonempty_string(json_object_get(ev, "type"));
    if (!type || kind_of(type, &out->kind) < 0)
        return "unknown_type";
    out->data = NULL;
    if (out->kind == PROFILE_UPDATED || out->kind == DOCUMENT_UPDATED) {
        out->data = json_object_get(ev, "data");
        if (!json_is_object(out->data))
            return "no_data";
    }
    json_t *subject = json_object_get(ev, "subject");
    out->id = key ? key : nonempty_string(subject);
    if (!out->id)
        return "no_id";
    if (subject && !same_id(subject, out->id))
        return "id_mismatch";
    json_t *data_id = out->data ? json_object_get(out->data, "id") : NULL;
    if (data_id && !same_id(data_id, out->id))
        return "id_mismatch";
    return NULL;
}

/* ---- join --------------------------------------------------------------------------------- */

/* The profile of an author as parsed JSON, or json_null() when unknown. */
static json_t *profile_of(docstore *s, const char *author)
{
    json_t *p = NULL;
    if (author) {
        sqlite3_stmt *st = stmt(s, Q_PROFILE_GET);
        sqlite3_bind_text(st, 1, author, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            p = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        sqlite3_reset(st);
    }
    return p ? p : json_null();
}

/* The view row of one document: its JSON as published plus "author_profile". */
static int view_put(docstore *s, const char *id, const char *author, const char *doc_json, json_t *profile)
{
    json_t *doc = json_loads(doc_json, 0, NULL);
    if (!doc || json_object_set(doc, "author_profile", profile) < 0) {
        json_decref(doc);
        set_err(s, "store %s: document %s: its stored JSON does not parse", s->path, id);
        return -1;
    }
    char *out = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!out) {
        set_err(s, "store %s: out of memory", s->path);
        return -1;
    }
    sqlite3_stmt *st = stmt(s, Q_VIEW_PUT);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, author, author ? strlen(author) : 0);
    sqlite3_bind_text(st, 3, out, -1, SQLITE_TRANSIENT);
    free(out);
    return run(s, st, "writing a view row");
}

/*
 * A profile changed (or went): every view row of that author gets it again,
 * one document at a time while the statement steps (an author with many
 * documents is never held in memory at once). Writing `view` while reading
 * `documents` on one connection is fine for SQLite: different tables, and
 * view_put uses only its own statement.
 */
static int reenrich_author(docstore *s, const char *author)
{
    json_t *profile = profile_of(s, author);
    sqlite3_stmt *st = stmt(s, Q_DOCS_OF_AUTHOR);
    sqlite3_bind_text(st, 1, author, -1, SQLITE_TRANSIENT);
    int rc, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ret = view_put(s, (const char *)sqlite3_column_text(st, 0), author, (const char *)sqlite3_column_text(st, 1),
                       profile);
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(s, "reading the documents of an author");
    sqlite3_reset(st);
    json_decref(profile);
    return ret;
}

/* ---- apply -------------------------------------------------------------------------------- */

static int apply_event(docstore *s, const struct event *e)
{
    sqlite3_stmt *st;
    switch (e->kind) {
    case PROFILE_UPDATED: {
        char *json = json_dumps(e->data, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!json) {
            set_err(s, "store %s: out of memory", s->path);
            return -1;
        }
        st = stmt(s, Q_PROFILE_PUT);
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, json, -1, SQLITE_TRANSIENT);
        free(json);
        if (run(s, st, "writing a profile") < 0)
            return -1;
        return reenrich_author(s, e->id);
    }
    case PROFILE_DELETED:
        st = stmt(s, Q_PROFILE_DEL);
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
        if (run(s, st, "deleting a profile") < 0)
            return -1;
        return reenrich_author(s, e->id);
    case DOCUMENT_UPDATED: {
        /* an author that is not a non-empty string joins nothing: "author_profile": null */
        const char *author = nonempty_string(json_object_get(e->data, "author"));
        char *json = json_dumps(e->data, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!json) {
            set_err(s, "store %s: out of memory", s->path);
            return -1;
        }
        st = stmt(s, Q_DOC_PUT);
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
        bind_text(st, 2, author, author ? strlen(author) : 0);
        sqlite3_bind_text(st, 3, json, -1, SQLITE_TRANSIENT);
        int rc = run(s, st, "writing a document");
        if (rc == 0) {
            json_t *profile = profile_of(s, author);
            rc = view_put(s, e->id, author, json, profile);
            json_decref(profile);
        }
        free(json);
        return rc;
    }
    case DOCUMENT_DELETED:
        st = stmt(s, Q_DOC_DEL);
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
        if (run(s, st, "deleting a document") < 0)
            return -1;
        st = stmt(s, Q_VIEW_DEL);
        sqlite3_bind_text(st, 1, e->id, -1, SQLITE_TRANSIENT);
        return run(s, st, "deleting a view row");
    }
    return -1;
}

docstore_outcome docstore_apply(docstore *s, const char *topic, int32_t partition, int64_t offset,
                                const char *key, size_t keylen, const char *value, size_t len,
                                const char **reason)
{
    /* the key as a C string (ids are text; a key with a NUL is cut there) */
    char *k = key && keylen ? strndup(key, keylen) : NULL;
    /* duplicate members are refused, not resolved: jansson would keep the last one, and the
     * monolith may have stored the first ("\u0069d" is not the "id" it drops) */
    json_error_t jerr;
    json_t *ev = value ? json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    struct event e;
    int ret = 0;
    if (ev)
        *reason = decode(ev, k && *k ? k : NULL, &e);
    else
        *reason = value && json_error_code(&jerr) == json_error_duplicate_key ? "duplicate_member" : "not_json";
    /* a store failure here leaves half an event in the open transaction: the caller must
     * not commit it (the service stops; a restart resumes at the last commit) */
    if (!*reason)
        ret = apply_event(s, &e);
    json_decref(ev);
    free(k);
    if (ret < 0)
        return DOCSTORE_FAILED;
    sqlite3_stmt *st = stmt(s, Q_OFFSET_SET);
    sqlite3_bind_text(st, 1, topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, partition);
    sqlite3_bind_int64(st, 3, offset + 1);
    if (run(s, st, "writing an offset") < 0)
        return DOCSTORE_FAILED;
    return *reason ? DOCSTORE_SKIPPED : DOCSTORE_APPLIED;
}

/* ---- reads -------------------------------------------------------------------------------- */

char *docstore_get(docstore *s, const char *id, char **author, int *found)
{
    sqlite3_stmt *st = stmt(s, Q_VIEW_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    char *json = NULL;
    *author = NULL;
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (rc == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(st, 1);
        json = strdup((const char *)sqlite3_column_text(st, 0));
        *author = a ? strdup(a) : NULL;
        if (!json || (a && !*author)) {
            free(json);
            free(*author);
            *author = NULL;
            json = NULL;
            *found = -1;
        }
    } else if (rc != SQLITE_DONE) {
        db_fail(s, "reading the view");
    }
    sqlite3_reset(st);
    return json;
}

int docstore_list(docstore *s, const char *author, void (*fn)(void *arg, const docstore_row *row), void *arg)
{
    sqlite3_stmt *st = stmt(s, author ? Q_VIEW_OF_AUTHOR : Q_VIEW_ALL);
    if (author)
        sqlite3_bind_text(st, 1, author, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        docstore_row row = {(const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                            (const char *)sqlite3_column_text(st, 2)};
        fn(arg, &row);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, "listing the view");
}

int docstore_list_page(docstore *s, const char *author, const char *after,
                       int (*fn)(void *arg, const docstore_row *row), void *arg)
{
    sqlite3_stmt *st = stmt(s, author ? Q_VIEW_PAGE_OF_AUTHOR : Q_VIEW_PAGE);
    if (after)
        sqlite3_bind_text(st, 1, after, -1, SQLITE_TRANSIENT);
    if (author)
        sqlite3_bind_text(st, 2, author, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        docstore_row row = {(const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                            (const char *)sqlite3_column_text(st, 2)};
        if (fn(arg, &row))
            break;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(s, "listing the view");
}

int64_t docstore_count(docstore *s)
{
    sqlite3_stmt *st = stmt(s, Q_VIEW_COUNT);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return n;
}

/*
 * test_docsvc_store.c — Check suite "docsvc_store" for examples/documents-service/store.c.
 *
 *   helpers       a store in a fresh temp dir; events written as CloudEvent JSON the way
 *                 the gateway publishes them; the view row of an id, parsed with jansson
 *   the join      a document gets its author's profile (or null), a profile re-enriches
 *                 exactly that author's rows, an author change moves a row, deletes remove
 *   malformed     each skip reason, and the offset advancing past a skipped message
 *   durability    offsets and rows commit together: an uncommitted batch leaves neither,
 *                 a committed one survives reopening, a deleted file starts empty
 *   ids           the message key names the resource: a data.id or subject naming another one,
 *                 and duplicate members ("\u0069d" next to "id"), are skipped, never applied
 *   cluster       the stored cluster id, and a reset that empties everything but it
 *   reads         listing sorted by id, by author, pages after a cursor, and the count;
 *                 a profile re-enriching more documents than one statement step holds
 */
#include <check.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/docsvc-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/view.db", dir);
}

static void teardown(void)
{
    char p[160];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        unlink(p);
    }
    rmdir(dir);
}

static docstore *open_store(void)
{
    char err[256] = "";
    docstore *s = docstore_open(path, err, sizeof(err));
    ck_assert_msg(s != NULL, "docstore_open: %s", err);
    return s;
}

/* Applies one message in its own transaction; returns the outcome, *reason the skip reason. */
static docstore_outcome put(docstore *s, const char *topic, int64_t offset, const char *key, const char *value,
                            const char **reason)
{
    const char *r = NULL;
    ck_assert_int_eq(docstore_begin(s), 0);
    docstore_outcome o = docstore_apply(s, topic, 0, offset, key, key ? strlen(key) : 0, value, strlen(value), &r);
    ck_assert_int_eq(docstore_commit(s), 0);
    if (reason)
        *reason = r;
    return o;
}

static void put_ok(docstore *s, const char *topic, int64_t offset, const char *key, const char *value)
{
    const char *reason = NULL;
    ck_assert_msg(put(s, topic, offset, key, value, &reason) == DOCSTORE_APPLIED, "not applied (%s): %s",
                  reason ? reason : "failed", value);
}

static char ev[1024];

static const char *profile_ev(const char *id, const char *name)
{
    snprintf(ev, sizeof(ev),
             "{\"specversion\":\"1.0\",\"id\":\"e\",\"type\":\"profile.updated\",\"subject\":\"%s\","
             "\"data\":{\"id\":\"%s\",\"name\":\"%s\"}}", id, id, name);
    return ev;
}

static const char *doc_ev(const char *id, const char *author, const char *title)
{
    snprintf(ev, sizeof(ev),
             "{\"specversion\":\"1.0\",\"id\":\"e\",\"type\":\"document.updated\",\"subject\":\"%s\","
             "\"data\":{\"id\":\"%s\",\"title\":\"%s\",\"author\":\"%s\"}}", id, id, title, author);
    return ev;
}

static const char *deleted_ev(const char *type, const char *id)
{
    snprintf(ev, sizeof(ev), "{\"specversion\":\"1.0\",\"id\":\"e\",\"type\":\"%s\",\"subject\":\"%s\"}", type, id);
    return ev;
}

/* The view row of id, parsed (NULL when absent). */
static json_t *row(docstore *s, const char *id)
{
    char *author = NULL;
    int found;
    char *json = docstore_get(s, id, &author, &found);
    ck_assert_int_ge(found, 0);
    free(author);
    if (!json)
        return NULL;
    json_t *v = json_loads(json, 0, NULL);
    ck_assert_msg(v != NULL, "view row of %s is not JSON: %s", id, json);
    free(json);
    return v;
}

/* The "name" of a row's author_profile, or "null". */
static const char *profile_name(json_t *r)
{
    json_t *p = json_object_get(r, "author_profile");
    ck_assert_ptr_nonnull(p);
    return json_is_null(p) ? "null" : json_string_value(json_object_get(p, "name"));
}

START_TEST(test_document_joins_profile)
{
    docstore *s = open_store();
    put_ok(s, "profiles", 0, "u1", profile_ev("u1", "Ada"));
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));
    json_t *r = row(s, "d1");
    ck_assert_ptr_nonnull(r);
    /* the document as published, member order kept, plus author_profile last */
    char *text = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ck_assert_str_eq(text, "{\"id\":\"d1\",\"title\":\"One\",\"author\":\"u1\","
                           "\"author_profile\":{\"id\":\"u1\",\"name\":\"Ada\"}}");
    free(text);
    json_decref(r);
    char *author = NULL;
    int found;
    free(docstore_get(s, "d1", &author, &found));
    ck_assert_str_eq(author, "u1");
    free(author);
    ck_assert_ptr_null(row(s, "nope"));
    docstore_close(s);
}
END_TEST

START_TEST(test_profile_reenriches_only_its_author)
{
    docstore *s = open_store();
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));
    put_ok(s, "documents", 1, "d2", doc_ev("d2", "u1", "Two"));
    put_ok(s, "documents", 2, "d3", doc_ev("d3", "u2", "Three"));
    json_t *r = row(s, "d1");
    ck_assert_str_eq(profile_name(r), "null"); /* the profile came later */
    json_decref(r);

    put_ok(s, "profiles", 0, "u1", profile_ev("u1", "Ada"));
    put_ok(s, "profiles", 1, "u2", profile_ev("u2", "Grace"));
    put_ok(s, "profiles", 2, "u1", profile_ev("u1", "Ada L."));
    const char *want[][2] = {{"d1", "Ada L."}, {"d2", "Ada L."}, {"d3", "Grace"}};
    for (size_t i = 0; i < 3; i++) {
        r = row(s, want[i][0]);
        ck_assert_str_eq(profile_name(r), want[i][1]);
        json_decref(r);
    }
    /* a profile deleted: its rows stay, with a null profile */
    put_ok(s, "profiles", 3, "u2", deleted_ev("profile.deleted", "u2"));
    r = row(s, "d3");
    ck_assert_str_eq(profile_name(r), "null");
    json_decref(r);
    docstore_close(s);
}
END_TEST

START_TEST(test_author_change_and_delete)
{
    docstore *s = open_store();
    put_ok(s, "profiles", 0, "u1", profile_ev("u1", "Ada"));
    put_ok(s, "profiles", 1, "u2", profile_ev("u2", "Grace"));
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));
    put_ok(s, "documents", 1, "d1", doc_ev("d1", "u2", "One, moved"));
    put_ok(s, "profiles", 2, "u1", profile_ev("u1", "Ada again")); /* must not touch d1 now */
    json_t *r = row(s, "d1");
    ck_assert_str_eq(profile_name(r), "Grace");
    ck_assert_str_eq(json_string_value(json_object_get(r, "title")), "One, moved");
    json_decref(r);
    ck_assert_int_eq(docstore_count(s), 1);

    put_ok(s, "documents", 2, "d1", deleted_ev("document.deleted", "d1"));
    ck_assert_ptr_null(row(s, "d1"));
    ck_assert_int_eq(docstore_count(s), 0);
    /* a later profile update does not resurrect it */
    put_ok(s, "profiles", 3, "u2", profile_ev("u2", "Grace H."));
    ck_assert_int_eq(docstore_count(s), 0);
    docstore_close(s);
}
END_TEST

static const struct {
    const char *key, *value, *reason;
} malformed[] = {
    {"k", "not json", "not_json"},
    {"k", "", "not_json"},
    {"k", "[1,2]", "not_json"},
    {"k", "{\"type\":\"document.updated\",\"data\":{\"id\":\"d9\"}", "not_json"}, /* cut short */
    {NULL, "{\"type\":\"document.updated\",\"data\":{\"title\":\"x\"}}", "no_id"},
    {NULL, "{\"type\":\"document.deleted\"}", "no_id"},
    {"k", "{\"type\":\"document.exploded\",\"data\":{\"id\":\"d9\"}}", "unknown_type"},
    {"k", "{\"data\":{\"id\":\"d9\"}}", "unknown_type"},
    {"k", "{\"type\":7,\"data\":{\"id\":\"d9\"}}", "unknown_type"},
    {"k", "{\"type\":\"document.updated\",\"subject\":\"d9\"}", "no_data"},
    {"k", "{\"type\":\"profile.updated\",\"data\":\"text\"}", "no_data"},
    {"2", "{\"type\":\"profile.updated\",\"subject\":\"2\",\"data\":{\"id\":\"1\",\"name\":\"x\"}}", "id_mismatch"},
    {"2", "{\"type\":\"profile.updated\",\"subject\":\"1\",\"data\":{\"id\":\"2\",\"name\":\"x\"}}", "id_mismatch"},
    {"2", "{\"type\":\"document.deleted\",\"subject\":\"1\"}", "id_mismatch"},
    {"2", "{\"type\":\"profile.updated\",\"data\":{\"id\":2.0}}", "id_mismatch"},
    {"2", "{\"type\":\"profile.updated\",\"data\":{\"id\":\"2\",\"\\u0069d\":\"1\"}}", "duplicate_member"},
    {"2", "{\"type\":\"profile.updated\",\"type\":\"profile.deleted\"}", "duplicate_member"},
};

START_TEST(test_malformed_skipped_offset_advances)
{
    docstore *s = open_store();
    const char *reason = NULL;
    docstore_outcome o = put(s, "documents", 40 + _i, malformed[_i].key, malformed[_i].value, &reason);
    ck_assert_int_eq(o, DOCSTORE_SKIPPED);
    ck_assert_str_eq(reason, malformed[_i].reason);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), 41 + _i);
    ck_assert_int_eq(docstore_count(s), 0);
    int known = 0;
    for (size_t r = 0; r < docstore_nskip_reasons; r++)
        known |= !strcmp(docstore_skip_reasons[r], reason);
    ck_assert_msg(known, "reason %s is not in docstore_skip_reasons", reason);
    docstore_close(s);
}
END_TEST

/*
 * The review's case: PUT /api/profiles/2 with {"\u0069d":"1",...}. The monolith drops only a
 * literal "id", stores profile 2 with both members, and the gateway publishes it keyed "2".
 * Profile 1 in the view must stay as it was.
 */
START_TEST(test_escaped_id_cannot_overwrite_another_profile)
{
    docstore *s = open_store();
    put_ok(s, "profiles", 0, "1", profile_ev("1", "One"));
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "1", "by one"));
    const char *reason = NULL;
    const char *forged = "{\"specversion\":\"1.0\",\"type\":\"profile.updated\",\"subject\":\"2\","
                         "\"data\":{\"id\":\"2\",\"\\u0069d\":\"1\",\"name\":\"Mallory\"}}";
    ck_assert_int_eq(put(s, "profiles", 1, "2", forged, &reason), DOCSTORE_SKIPPED);
    ck_assert_str_eq(reason, "duplicate_member");
    /* without the literal "id" (an upstream that drops none): data.id names another resource */
    const char *other = "{\"type\":\"profile.updated\",\"subject\":\"2\",\"data\":{\"\\u0069d\":\"1\",\"name\":\"Mallory\"}}";
    ck_assert_int_eq(put(s, "profiles", 2, "2", other, &reason), DOCSTORE_SKIPPED);
    ck_assert_str_eq(reason, "id_mismatch");
    json_t *r = row(s, "d1");
    ck_assert_str_eq(profile_name(r), "One");
    json_decref(r);
    ck_assert_int_eq(docstore_next_offset(s, "profiles", 0), 3);
    /* the key decides even when data has no id at all, and an integer data.id may match it */
    put_ok(s, "profiles", 3, "1", "{\"type\":\"profile.updated\",\"data\":{\"name\":\"Uno\"}}");
    put_ok(s, "documents", 1, "7", "{\"type\":\"document.updated\",\"data\":{\"id\":7,\"author\":\"1\"}}");
    r = row(s, "d1");
    ck_assert_str_eq(profile_name(r), "Uno");
    json_decref(r);
    r = row(s, "7");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(profile_name(r), "Uno");
    json_decref(r);
    docstore_close(s);
}
END_TEST

START_TEST(test_id_from_key_when_no_subject)
{
    docstore *s = open_store();
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));
    put_ok(s, "documents", 1, "d1", "{\"type\":\"document.deleted\"}");
    ck_assert_ptr_null(row(s, "d1"));
    docstore_close(s);
}
END_TEST

START_TEST(test_batch_commits_rows_and_offsets_together)
{
    docstore *s = open_store();
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), -1);
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));

    /* a batch that is never committed (the process died, or the store failed) */
    const char *reason;
    ck_assert_int_eq(docstore_begin(s), 0);
    const char *v = doc_ev("d2", "u1", "Two");
    ck_assert_int_eq(docstore_apply(s, "documents", 0, 1, "d2", 2, v, strlen(v), &reason), DOCSTORE_APPLIED);
    v = doc_ev("d3", "u1", "Three");
    ck_assert_int_eq(docstore_apply(s, "documents", 1, 0, "d3", 2, v, strlen(v), &reason), DOCSTORE_APPLIED);
    ck_assert(docstore_in_transaction(s));
    ck_assert_int_eq(docstore_count(s), 3); /* visible inside the transaction */
    docstore_close(s);                      /* rolls back */

    s = open_store();
    ck_assert_int_eq(docstore_count(s), 1);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), 1);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 1), -1);
    ck_assert_ptr_null(row(s, "d2"));
    docstore_close(s);

    /* the store deleted: everything starts over */
    ck_assert_int_eq(unlink(path), 0);
    s = open_store();
    ck_assert_int_eq(docstore_count(s), 0);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), -1);
    docstore_close(s);
}
END_TEST

START_TEST(test_cluster_id_and_reset)
{
    docstore *s = open_store();
    int found = 7;
    ck_assert_ptr_null(docstore_cluster(s, &found));
    ck_assert_int_eq(found, 0);
    put_ok(s, "profiles", 0, "u1", profile_ev("u1", "Ada"));
    put_ok(s, "documents", 4, "d1", doc_ev("d1", "u1", "One"));
    ck_assert_int_eq(docstore_reset(s, "cluster-A"), 0);
    ck_assert_int_eq(docstore_count(s), 0);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), -1);
    ck_assert_int_eq(docstore_next_offset(s, "profiles", 0), -1);
    /* the profiles table went too: a document applied now joins nothing */
    put_ok(s, "documents", 0, "d2", doc_ev("d2", "u1", "Two"));
    json_t *r = row(s, "d2");
    ck_assert_str_eq(profile_name(r), "null");
    json_decref(r);
    docstore_close(s);

    s = open_store(); /* durable */
    char *id = docstore_cluster(s, &found);
    ck_assert_int_eq(found, 1);
    ck_assert_str_eq(id, "cluster-A");
    free(id);
    ck_assert_int_eq(docstore_count(s), 1);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), 1);
    docstore_close(s);
}
END_TEST

/* A store that fails under the reader: an error, not "nothing stored" (which would replay). */
START_TEST(test_next_offset_error_is_not_none)
{
    docstore *s = open_store();
    put_ok(s, "documents", 0, "d1", doc_ev("d1", "u1", "One"));
    /* the offsets table dropped behind the store's back: its prepared statement cannot run */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE offsets", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(docstore_next_offset(s, "documents", 0), -2);
    ck_assert_msg(strstr(docstore_error(s), "reading an offset") != NULL, "error: %s", docstore_error(s));
    docstore_close(s);
}
END_TEST

static void collect(void *arg, const docstore_row *r)
{
    char *buf = arg;
    strcat(buf, r->id);
    strcat(buf, r->author ? r->author : "-");
    strcat(buf, " ");
}

START_TEST(test_list_sorted_and_by_author)
{
    docstore *s = open_store();
    put_ok(s, "documents", 0, "b", doc_ev("b", "u1", "B"));
    put_ok(s, "documents", 1, "c", doc_ev("c", "u2", "C"));
    put_ok(s, "documents", 2, "a", doc_ev("a", "u1", "A"));
    put_ok(s, "documents", 3, "n", "{\"type\":\"document.updated\",\"data\":{\"id\":\"n\",\"title\":\"no author\"}}");
    char buf[128] = "";
    ck_assert_int_eq(docstore_list(s, NULL, collect, buf), 0);
    ck_assert_str_eq(buf, "au1 bu1 cu2 n- ");
    buf[0] = '\0';
    ck_assert_int_eq(docstore_list(s, "u1", collect, buf), 0);
    ck_assert_str_eq(buf, "au1 bu1 ");
    buf[0] = '\0';
    ck_assert_int_eq(docstore_list(s, "nobody", collect, buf), 0);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(docstore_count(s), 4);
    docstore_close(s);
}
END_TEST

struct page {
    char buf[256];
    int n, limit;
};

static int collect_page(void *arg, const docstore_row *r)
{
    struct page *p = arg;
    if (p->n == p->limit)
        return 1;
    p->n++;
    strcat(p->buf, r->id);
    strcat(p->buf, " ");
    return 0;
}

START_TEST(test_list_page_after_cursor)
{
    docstore *s = open_store();
    const char *ids[] = {"e", "a", "c", "b", "d"};
    for (int i = 0; i < 5; i++)
        put_ok(s, "documents", i, ids[i], doc_ev(ids[i], i % 2 ? "u2" : "u1", "x"));
    struct page p = {"", 0, 2};
    ck_assert_int_eq(docstore_list_page(s, NULL, NULL, collect_page, &p), 0);
    ck_assert_str_eq(p.buf, "a b ");
    p = (struct page){"", 0, 2};
    ck_assert_int_eq(docstore_list_page(s, NULL, "b", collect_page, &p), 0);
    ck_assert_str_eq(p.buf, "c d ");
    p = (struct page){"", 0, 9};
    ck_assert_int_eq(docstore_list_page(s, "u1", "a", collect_page, &p), 0);
    ck_assert_str_eq(p.buf, "c d e "); /* u1 wrote e, c and d */
    docstore_close(s);
}
END_TEST

/* One profile update re-enriches every document of its author, iterating a statement
 * (more rows than any batch), and leaves the other author's rows alone. */
START_TEST(test_profile_reenriches_many_documents)
{
    docstore *s = open_store();
    char id[16];
    ck_assert_int_eq(docstore_begin(s), 0);
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "d%04d", i);
        const char *v = doc_ev(id, i % 3 ? "u1" : "u2", "x");
        const char *reason;
        ck_assert_int_eq(docstore_apply(s, "documents", 0, i, id, strlen(id), v, strlen(v), &reason),
                         DOCSTORE_APPLIED);
    }
    ck_assert_int_eq(docstore_commit(s), 0);
    put_ok(s, "profiles", 0, "u1", profile_ev("u1", "Ada"));
    for (int i = 0; i < 3000; i += 7) {
        snprintf(id, sizeof(id), "d%04d", i);
        json_t *r = row(s, id);
        ck_assert_str_eq(profile_name(r), i % 3 ? "Ada" : "null");
        json_decref(r);
    }
    docstore_close(s);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("docsvc_store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_document_joins_profile);
    tcase_add_test(tc, test_profile_reenriches_only_its_author);
    tcase_add_test(tc, test_author_change_and_delete);
    tcase_add_loop_test(tc, test_malformed_skipped_offset_advances, 0, (int)(sizeof(malformed) / sizeof(malformed[0])));
    tcase_add_test(tc, test_id_from_key_when_no_subject);
    tcase_add_test(tc, test_batch_commits_rows_and_offsets_together);
    tcase_add_test(tc, test_list_sorted_and_by_author);
    tcase_add_test(tc, test_list_page_after_cursor);
    tcase_add_test(tc, test_profile_reenriches_many_documents);
    tcase_add_test(tc, test_escaped_id_cannot_overwrite_another_profile);
    tcase_add_test(tc, test_cluster_id_and_reset);
    tcase_add_test(tc, test_next_offset_error_is_not_none);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

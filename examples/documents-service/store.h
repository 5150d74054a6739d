/*
 * store.h — the documents service's state store (store.c): a SQLite file
 * that holds the materialized view together with the Kafka offsets it was
 * built from, and the code that turns one change event into view rows.
 *
 * Types first, then functions. Every function that can fail returns -1 (or
 * NULL) and leaves a message in docstore_error().
 */
#ifndef DOCSVC_STORE_H
#define DOCSVC_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct docstore docstore;

/* What docstore_apply did with one message. */
typedef enum docstore_outcome {
    DOCSTORE_APPLIED = 0,
    DOCSTORE_SKIPPED = 1, /* malformed: *reason says why; its offset still advances */
    DOCSTORE_FAILED = -1, /* the store itself failed (docstore_error) */
} docstore_outcome;

/* The reasons of events_skipped_total{reason}, all of them (for zero-valued series). */
extern const char *const docstore_skip_reasons[];
extern const size_t docstore_nskip_reasons;

/* One row of the view, for docstore_list's callback (borrowed for the call). */
typedef struct docstore_row {
    const char *id, *author; /* author NULL: the document names none */
    const char *json;        /* the enriched document */
} docstore_row;

/* Opens (creating when absent) the store at path. A missing main file also
 * means its -wal/-shm leftovers are removed: they belong to a deleted store. */
docstore *docstore_open(const char *path, char *err, size_t errlen);
void docstore_close(docstore *s);
const char *docstore_error(const docstore *s);

/* One transaction around a poll batch: the view rows and the offsets commit together. */
int docstore_begin(docstore *s);
int docstore_commit(docstore *s);
int docstore_in_transaction(const docstore *s);

/* The stored next offset of a partition; -1 when none is stored, -2 when the store failed
 * (docstore_error): a caller must not mistake a failure for "read it all again". */
int64_t docstore_next_offset(docstore *s, const char *topic, int32_t partition);

/* The Kafka cluster id the offsets belong to: malloc'd, or NULL when none is stored (found = 0)
 * or on error (found = -1). */
char *docstore_cluster(docstore *s, int *found);
/* A different cluster (the broker restarted empty, or another one): its offsets mean nothing
 * here. Empties the view, both tables and the offsets and stores `cluster` (NULL: keeps the
 * stored one), in one transaction (its own, or the caller's open one). 0, or -1. */
int docstore_reset(docstore *s, const char *cluster);

/*
 * Applies one message of `topic` at `offset` (inside a transaction): the
 * change to profiles/documents, the view rows it changes, and offsets.next =
 * offset + 1 — also for a skipped message.
 */
docstore_outcome docstore_apply(docstore *s, const char *topic, int32_t partition, int64_t offset,
                                const char *key, size_t keylen, const char *value, size_t len,
                                const char **reason);

/* The view row of a document: malloc'd JSON (and *author, malloc'd or NULL), or NULL when
 * unknown (found = 0) or on error (found = -1). */
char *docstore_get(docstore *s, const char *id, char **author, int *found);
/* Every view row (of `author` when not NULL), sorted by id. 0, or -1. */
int docstore_list(docstore *s, const char *author, void (*fn)(void *arg, const docstore_row *row), void *arg);
/* The view rows (of `author` when not NULL) with an id after `after` (NULL: from the start),
 * sorted by id, until fn returns non-zero. Holds one row at a time. 0, or -1. */
int docstore_list_page(docstore *s, const char *author, const char *after,
                       int (*fn)(void *arg, const docstore_row *row), void *arg);
/* Rows in the view, or -1. */
int64_t docstore_count(docstore *s);

#endif

/*
 * jwks.h — remote key sets: `auth.issuers[].jwks_uri`, fetched by the
 * gateway itself and handed to the workers.
 *
 * Types first. Who touches what:
 *   fx_jwks         the fetcher; main thread only (fx_server_run's event_base,
 *                   beside the signals and the admin listener). One source per
 *                   distinct URI: fetched before the gateway reports ready,
 *                   refreshed every jwks_refresh, refetched on an unknown kid
 *                   at most once per jwks_min_refresh, one fetch in flight at
 *                   a time; a failed or unusable fetch keeps the last good set.
 *   fx_jwks_table   an immutable, reference-counted snapshot of every source's
 *                   current key set. A new one is made whenever a set changes
 *                   and given to each worker through its mailbox; a worker
 *                   keeps its own reference and reads it without a lock.
 *   fx_jwks_bell    how a worker asks for a refetch (unknown kid): an atomic
 *                   flag and an eventfd the main thread watches. Ringing is a
 *                   load, at most one exchange and one write(2); never a lock.
 */
#ifndef FX_JWKS_H
#define FX_JWKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ficus_authz.h"

struct event_base;
struct evbuffer;

typedef struct fx_jwks fx_jwks;

/* One URI's keys as of the last good fetch. */
typedef struct fx_jwks_entry {
    char *uri;
    fx_jwt_keyset *keys;          /* a reference; NULL: no fetch has succeeded yet */
    uint64_t fingerprint;         /* of the fetched bytes (0 when keys is NULL) */
} fx_jwks_entry;

typedef struct fx_jwks_table {
    atomic_uint refs;
    uint64_t fingerprint;         /* of every entry: changes whenever any key set does */
    size_t n;
    fx_jwks_entry entries[];
} fx_jwks_table;

typedef struct fx_jwks_bell {
    atomic_uint rung;             /* 1: a refetch was asked for and is not served yet */
    int fd;                       /* eventfd, read by the main thread */
} fx_jwks_bell;

/* Gives a new table to the workers (main thread; the callee takes its own references). */
typedef void (*fx_jwks_deliver_fn)(fx_jwks_table *t, void *arg);

/* ---- the table (any thread) ------------------------------------------------------------- */

fx_jwks_table *fx_jwks_table_ref(fx_jwks_table *t);
void fx_jwks_table_unref(fx_jwks_table *t);
/* The entry for `uri`, or NULL. */
const fx_jwks_entry *fx_jwks_table_find(const fx_jwks_table *t, const char *uri);

/* ---- the bell (worker threads) ---------------------------------------------------------- */

/* Asks the main thread to refetch every jwks_uri (it rate-limits). NULL-safe. */
void fx_jwks_bell_ring(fx_jwks_bell *b);

/* ---- the fetcher (main thread) ------------------------------------------------------------- */

/* The object and its bell; nothing is fetched yet. NULL when out of memory / fds. */
fx_jwks *fx_jwks_new(void);
fx_jwks_bell *fx_jwks_get_bell(fx_jwks *jw);
/*
 * Starts fetching the jwks_uri issuers of cfg on `base`; every key set that
 * changes is delivered through `deliver`. 0, or -1 after logging why.
 */
int fx_jwks_start(fx_jwks *jw, struct event_base *base, const fx_config *cfg,
                  fx_jwks_deliver_fn deliver, void *arg);
/*
 * A reload: URIs still named keep their key set and schedule (no refetch),
 * new ones are fetched now, removed ones are dropped (their fetch aborted).
 */
void fx_jwks_configure(fx_jwks *jw, const fx_config *cfg);
/* Has every jwks_uri issuer of cfg a key set? If not, *waiting names one issuer. */
int fx_jwks_ready(const fx_jwks *jw, const fx_config *cfg, const char **waiting);
/* ficus_jwks_fetches_total{issuer,result}, ficus_jwks_keys{issuer}, ... for the issuers of cfg. */
void fx_jwks_metrics(const fx_jwks *jw, const fx_config *cfg, struct evbuffer *out);
/* Aborts fetches and frees every event (before the event_base goes); the bell stays. */
void fx_jwks_stop(fx_jwks *jw);
/* Frees everything, the bell included: only once no worker can ring it. NULL-safe. */
void fx_jwks_free(fx_jwks *jw);

#endif

/*
 * retry.h — what a failed upstream attempt may do next: routes[].retries /
 * upstreams.X.retries (again, on the same upstream's next target) and
 * routes[].fallback (once, on another upstream), and the retry budget that
 * keeps retries from multiplying load during an outage.
 *
 * The budget is per upstream and per worker (it lives in the worker's stats
 * cell of the upstream, stats.h): over the last FX_RETRY_BUDGET_SECONDS
 * seconds, retries may number at most FX_RETRY_BUDGET_MIN plus
 * FX_RETRY_BUDGET_PERCENT % of the requests sent to the upstream (first
 * attempts, failed or not; retries themselves do not raise the budget).
 * With every request failing, load is at most 1.2× (plus 3 per 10 s), not
 * (1 + attempts)×. Nothing here is shared between threads.
 */
#ifndef FX_RETRY_H
#define FX_RETRY_H

#include <stdint.h>

#include "config.h"

/* Why an attempt failed: the `reason` label of ficus_retries_total and ficus_fallbacks_total. */
enum fx_retry_reason {
    FX_RETRY_R_CONNECT = 0,       /* connect refused, failed or timed out: nothing reached the upstream */
    FX_RETRY_R_RESET,             /* closed or reset before the response head */
    FX_RETRY_R_TIMEOUT,           /* upstreams.timeout before the response head */
    FX_RETRY_R_5XX,               /* a 5xx response head */
    FX_RETRY_NREASONS
};
extern const char *const fx_retry_reason_names[FX_RETRY_NREASONS];

#define FX_RETRY_BUDGET_SECONDS 10
#define FX_RETRY_BUDGET_PERCENT 20
#define FX_RETRY_BUDGET_MIN 3

/* One upstream's budget in one worker: a ring of one-second buckets. Zeroed is empty. */
typedef struct fx_retry_budget {
    uint64_t stamp[FX_RETRY_BUDGET_SECONDS]; /* the second + 1 a bucket holds; 0: never used */
    uint32_t requests[FX_RETRY_BUDGET_SECONDS];
    uint32_t retries[FX_RETRY_BUDGET_SECONDS];
} fx_retry_budget;

/* A request (first attempt) goes to the upstream. now_us: CLOCK_MONOTONIC. */
void fx_retry_budget_request(fx_retry_budget *b, uint64_t now_us);
/* Whether one more retry fits the budget now (nothing counted). */
int fx_retry_budget_allows(const fx_retry_budget *b, uint64_t now_us);
/* Takes one retry from the budget: 1 (counted), or 0 when the budget is spent. */
int fx_retry_budget_take(fx_retry_budget *b, uint64_t now_us);

/* Whether `rc` retries a failure of this reason (for FX_RETRY_R_5XX: of this status code). */
int fx_retry_wants(const fx_retries_conf *rc, int reason, int status);

#endif

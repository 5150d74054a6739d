/*
 * retry.c — the retry budget and what a retry setting reacts to (see retry.h).
 *
 *   ring        bucket(): the bucket of a second, emptied when it held an older one
 *   window      window(): requests and retries of the last FX_RETRY_BUDGET_SECONDS
 *   budget      fx_retry_budget_request / _allows / _take
 *   settings    fx_retry_wants: FX_RETRY_* bits and 5xx status bits of fx_retries_conf
 */
#include "retry.h"

const char *const fx_retry_reason_names[FX_RETRY_NREASONS] = {"connect", "reset", "timeout", "5xx"};

/* ---- ring ------------------------------------------------------------------------------------ */

static unsigned bucket(fx_retry_budget *b, uint64_t sec)
{
    unsigned i = (unsigned)(sec % FX_RETRY_BUDGET_SECONDS);
    if (b->stamp[i] != sec + 1) {
        b->stamp[i] = sec + 1;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
    return i;
}

/* Sums of the seconds (sec - FX_RETRY_BUDGET_SECONDS, sec]. */
static void window(const fx_retry_budget *b, uint64_t sec, uint64_t *requests, uint64_t *retries)
{
    *requests = *retries = 0;
    for (unsigned i = 0; i < FX_RETRY_BUDGET_SECONDS; i++) {
        uint64_t s = b->stamp[i];
        if (s == 0 || s - 1 > sec || sec - (s - 1) >= FX_RETRY_BUDGET_SECONDS)
            continue;
        *requests += b->requests[i];
        *retries += b->retries[i];
    }
}

/* ---- budget ---------------------------------------------------------------------------------- */

void fx_retry_budget_request(fx_retry_budget *b, uint64_t now_us)
{
    unsigned i = bucket(b, now_us / 1000000u);
    if (b->requests[i] < UINT32_MAX)
        b->requests[i]++;
}

int fx_retry_budget_allows(const fx_retry_budget *b, uint64_t now_us)
{
    uint64_t requests, retries;
    window(b, now_us / 1000000u, &requests, &retries);
    /* one more must fit: retries + 1 ≤ MIN + PERCENT % of requests (whole retries only: 4 requests buy
     * none, the 5th one), in integers */
    return (retries + 1) * 100 <= (uint64_t)FX_RETRY_BUDGET_MIN * 100 + requests * FX_RETRY_BUDGET_PERCENT;
}

int fx_retry_budget_take(fx_retry_budget *b, uint64_t now_us)
{
    if (!fx_retry_budget_allows(b, now_us))
        return 0;
    unsigned i = bucket(b, now_us / 1000000u);
    if (b->retries[i] < UINT32_MAX)
        b->retries[i]++;
    return 1;
}

/* ---- settings -------------------------------------------------------------------------------- */

int fx_retry_wants(const fx_retries_conf *rc, int reason, int status)
{
    if (!rc)
        return 0;
    switch (reason) {
    case FX_RETRY_R_CONNECT:
        return (rc->on & FX_RETRY_CONNECT) != 0;
    case FX_RETRY_R_RESET:
        return (rc->on & FX_RETRY_RESET) != 0;
    case FX_RETRY_R_TIMEOUT:
        return (rc->on & FX_RETRY_TIMEOUT) != 0;
    case FX_RETRY_R_5XX:
        if (status < 500 || status > 599)
            return 0;
        return (rc->status[(status - 500) / 64] >> ((status - 500) % 64)) & 1;
    default:
        return 0;
    }
}

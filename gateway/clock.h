/*
 * clock.h — the monotonic clock in the units the gateway counts in, and a
 * libevent timeout from milliseconds. One definition for every module
 * (timers, deadlines, latencies); wall-clock times (CloudEvent `time`, log
 * lines) read CLOCK_REALTIME where they are made.
 */
#ifndef FX_CLOCK_H
#define FX_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t fx_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t fx_mono_ms(void)
{
    return fx_mono_us() / 1000u;
}

static inline struct timeval fx_ms_tv(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
}

#endif

/* Latency histograms and counters that one thread writes and another reads (metrics).
 *
 * A counter written by a single thread is an atomic updated with a relaxed load and store:
 * no locked instruction on the hot path, and no data race for the thread that reads it. A
 * histogram keeps per-bucket counts (not cumulative), the sum in microseconds and the count;
 * the reader makes them cumulative when it renders them. The bucket bounds are fixed so that
 * every histogram of the process can be added up and rendered the same way. */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_BUCKETS 14 /* finite bounds; one more bucket counts everything above */

/* Upper bounds of the buckets, in microseconds (0.5 ms … 10 s). */
static const int64_t hist_bounds_us[HIST_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000,
};

struct hist {
    atomic_ullong bucket[HIST_BUCKETS + 1];
    atomic_ullong sum_us;
    atomic_ullong count;
};

/* Adds v to a counter only this thread writes. */
static inline void stat_add(atomic_ullong *x, unsigned long long v)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline unsigned long long stat_get(const atomic_ullong *x)
{
    return atomic_load_explicit((atomic_ullong *)x, memory_order_relaxed);
}

/* Records one observation of us microseconds (single writer). */
static inline void hist_observe(struct hist *h, int64_t us)
{
    int i = 0;
    if (us < 0)
        us = 0;
    while (i < HIST_BUCKETS && us > hist_bounds_us[i])
        i++;
    stat_add(&h->bucket[i], 1);
    stat_add(&h->sum_us, (unsigned long long)us);
    stat_add(&h->count, 1);
}

/* The same for a histogram several threads write. */
static inline void hist_observe_shared(struct hist *h, int64_t us)
{
    int i = 0;
    if (us < 0)
        us = 0;
    while (i < HIST_BUCKETS && us > hist_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)us, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

/* A plain copy, for adding histograms up before rendering. */
struct hist_snap {
    unsigned long long bucket[HIST_BUCKETS + 1];
    unsigned long long sum_us;
    unsigned long long count;
};

static inline void hist_add_to(struct hist_snap *s, const struct hist *h)
{
    for (int i = 0; i <= HIST_BUCKETS; i++)
        s->bucket[i] += stat_get(&h->bucket[i]);
    s->sum_us += stat_get(&h->sum_us);
    s->count += stat_get(&h->count);
}

#endif

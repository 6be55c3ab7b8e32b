/*
 * The histogram's cold half: merging and reading percentiles (a walk over
 * the buckets, about 3,700 of them); recording is inline in histogram.h.
 */
#include <string.h>

#include "histogram.h"

void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void bench_hist_merge(bench_hist_t *into, const bench_hist_t *from)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->count += from->count;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

void bench_hist_bucket_range(unsigned i, uint64_t *lo, uint64_t *hi)
{
    if (i < 2 * BENCH_HIST_HALF) {
        *lo = *hi = i;
        return;
    }
    unsigned shift = i / BENCH_HIST_HALF - 1;
    uint64_t top = i % BENCH_HIST_HALF + BENCH_HIST_HALF;
    *lo = top << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

uint64_t bench_hist_percentile(const bench_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100)
        return h->max;
    /* ceil(p% of count), at least 1; the slack keeps 99.9% of 1000 at 999
     * where 99.9 / 100 * 1000 comes out a hair above it. */
    double r = p * (double)h->count / 100 * (1 - 1e-12);
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r || rank == 0)
        rank++;
    uint64_t seen = 0;
    unsigned i = 0;
    for (; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    uint64_t lo, hi;
    bench_hist_bucket_range(i, &lo, &hi);
    uint64_t v = lo + (hi - lo) / 2;
    return v < h->min ? h->min : v > h->max ? h->max : v;
}

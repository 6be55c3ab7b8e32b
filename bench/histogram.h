/*
 * A log-linear latency histogram in the manner of HdrHistogram: values below
 * 128 have a bucket each; above, every power of two is split into 64 equal
 * buckets, so a bucket is at most 1/64 (1.6 %) of its lower bound wide and a
 * percentile read at the bucket's midpoint is within 0.8 % of the recorded
 * value.  Fixed memory (BENCH_HIST_BUCKETS counters cover all of uint64_t),
 * O(1) to record, no samples kept; each thread fills its own, and the
 * histograms are merged after the threads are joined.
 */
#ifndef REKI_BENCH_HISTOGRAM_H
#define REKI_BENCH_HISTOGRAM_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 6 /* 64 buckets per power of two */
#define BENCH_HIST_HALF (1u << BENCH_HIST_SUB_BITS)
/* The largest index is UINT64_MAX's: shift 63 - 6 = 57, top bits 127, so
 * 57 * 64 + 127 = 3775. */
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_HALF)

typedef struct bench_hist {
    uint64_t count;
    uint64_t min, max; /* exact, not bucketed */
    uint64_t counts[BENCH_HIST_BUCKETS];
} bench_hist_t;

/* The bucket of v: v itself below 2 * BENCH_HIST_HALF; above, the shift that
 * leaves v's top 7 bits, times 64, plus those bits. */
static inline unsigned bench_hist_index(uint64_t v)
{
    if (v < 2 * BENCH_HIST_HALF)
        return (unsigned)v;
    unsigned shift = 63u - (unsigned)__builtin_clzll(v) - BENCH_HIST_SUB_BITS;
    return shift * BENCH_HIST_HALF + (unsigned)(v >> shift);
}

static inline void bench_hist_record(bench_hist_t *h, uint64_t v)
{
    h->counts[bench_hist_index(v)]++;
    h->count++;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_init(bench_hist_t *h);
/* into += from. */
void bench_hist_merge(bench_hist_t *into, const bench_hist_t *from);
/* The lowest and highest value bucket i holds. */
void bench_hist_bucket_range(unsigned i, uint64_t *lo, uint64_t *hi);
/* The value at percentile p (0 < p <= 100): the midpoint of the bucket
 * holding the sample of rank ceil(p% of count), clamped to [min, max];
 * 0 for an empty histogram.  p = 100 is the exact max. */
uint64_t bench_hist_percentile(const bench_hist_t *h, double p);

#endif /* REKI_BENCH_HISTOGRAM_H */

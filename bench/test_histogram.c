/*
 * Self-check of the latency histogram (ctest bench-histogram): every bucket
 * holds the values its index maps to and is at most 1/64 of its lower bound
 * wide; percentiles of known distributions come out within the stated 0.8 %
 * (exactly, below 128); merging per-thread histograms equals recording into
 * one.  Checks stay on under NDEBUG.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* |got - want| <= want / 128 (0.78 %). */
static int near(uint64_t got, uint64_t want)
{
    uint64_t d = got > want ? got - want : want - got;
    return d <= want / 128;
}

static void check_one_bucket(uint64_t v)
{
    unsigned i = bench_hist_index(v);
    uint64_t lo, hi;
    CHECK(i < BENCH_HIST_BUCKETS);
    bench_hist_bucket_range(i, &lo, &hi);
    CHECK(lo <= v && v <= hi);
    CHECK(hi - lo <= lo / 64);
    CHECK(lo == 0 || bench_hist_index(lo - 1) == i - 1); /* buckets are contiguous */
    CHECK(hi == UINT64_MAX || bench_hist_index(hi + 1) == i + 1);
}

static void check_buckets(void)
{
    for (uint64_t v = 0; v < 70000; v++)
        check_one_bucket(v);
    uint64_t s = 88172645463325252ull;
    for (int k = 0; k < 100000; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        check_one_bucket(s >> (s & 63)); /* every magnitude */
    }
    check_one_bucket(UINT64_MAX);
    CHECK(bench_hist_index(UINT64_MAX) == BENCH_HIST_BUCKETS - 1);
}

static void check_uniform(bench_hist_t *h)
{
    bench_hist_init(h);
    for (uint64_t v = 1; v <= 1000000; v++)
        bench_hist_record(h, v);
    CHECK(h->count == 1000000 && h->min == 1 && h->max == 1000000);
    CHECK(near(bench_hist_percentile(h, 50), 500000));
    CHECK(near(bench_hist_percentile(h, 99), 990000));
    CHECK(near(bench_hist_percentile(h, 99.9), 999000));
    CHECK(bench_hist_percentile(h, 100) == 1000000);
    CHECK(near(bench_hist_percentile(h, 0.0001), 1));
}

static void check_exact_and_tail(bench_hist_t *h)
{
    bench_hist_init(h);
    CHECK(bench_hist_percentile(h, 50) == 0);
    for (uint64_t v = 0; v < 100; v++)
        bench_hist_record(h, v);
    CHECK(bench_hist_percentile(h, 50) == 49); /* rank 50 of 0..99 */
    CHECK(bench_hist_percentile(h, 99) == 98);
    CHECK(bench_hist_percentile(h, 99.9) == 99);
    /* 990 fast claims, 9 slow, one stall: each percentile lands on its own. */
    bench_hist_init(h);
    for (int k = 0; k < 990; k++)
        bench_hist_record(h, 1000);
    for (int k = 0; k < 9; k++)
        bench_hist_record(h, 250000);
    bench_hist_record(h, 7654321);
    CHECK(near(bench_hist_percentile(h, 50), 1000));
    CHECK(near(bench_hist_percentile(h, 99), 1000));
    CHECK(near(bench_hist_percentile(h, 99.9), 250000));
    CHECK(bench_hist_percentile(h, 100) == 7654321);
}

static void check_merge(bench_hist_t *one, bench_hist_t *a, bench_hist_t *b)
{
    bench_hist_init(one);
    bench_hist_init(a);
    bench_hist_init(b);
    uint64_t s = 2463534242ull;
    for (int k = 0; k < 200000; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t v = (s & 0xfffff) + 200;
        bench_hist_record(one, v);
        bench_hist_record(k % 3 ? a : b, v);
    }
    bench_hist_merge(a, b);
    CHECK(a->count == one->count && a->min == one->min && a->max == one->max);
    CHECK(memcmp(a->counts, one->counts, sizeof a->counts) == 0);
    CHECK(bench_hist_percentile(a, 99.9) == bench_hist_percentile(one, 99.9));
}

int main(void)
{
    bench_hist_t *h = malloc(3 * sizeof *h);
    if (h == NULL)
        return 1;
    check_buckets();
    check_uniform(&h[0]);
    check_exact_and_tail(&h[0]);
    check_merge(&h[0], &h[1], &h[2]);
    free(h);
    if (failures)
        fprintf(stderr, "test_histogram: %d checks failed\n", failures);
    else
        printf("test_histogram: ok (%u buckets, %zu bytes each)\n", BENCH_HIST_BUCKETS,
               sizeof(bench_hist_t));
    return failures ? 1 : 0;
}

/*
 * Output of the bench programs: the machine and build they ran on, a human
 * table on stdout, and JSON / CSV files with one record per configuration
 * (bench, implementation, threads, keys, seconds, ops/s median/min/max, git
 * sha, compiler, flags), as style.md asks.
 */
#ifndef REKI_BENCH_REPORT_H
#define REKI_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct bench_stat {
    double median, min, max;
} bench_stat_t;

typedef struct bench_result {
    const char *bench;
    const char *impl;
    unsigned threads;
    size_t keys;
    double seconds; /* asked-for length of one timed round */
    unsigned rounds;
    bench_stat_t ops;       /* operations per second */
    uint64_t errors;        /* operations that returned something unexpected */
    bool budget_hit;        /* a round ran out of new keys before its time */
    const char *extra_name; /* optional second figure (bytes_per_actor), or NULL */
    bench_stat_t extra;
} bench_result_t;

typedef struct bench_results {
    bench_result_t *v;
    size_t n, cap;
} bench_results_t;

typedef struct bench_machine {
    char cpu[128];
    unsigned cores;
    char kernel[160];
    char date[32];
    const char *compiler;
    const char *flags;
    const char *git;
    const char *reki_version;
} bench_machine_t;

/* --latency: percentiles of one operation, in nanoseconds. */
typedef struct bench_lat {
    uint64_t p50, p99, p999, max;
} bench_lat_t;

/* --latency: one implementation at one thread count. */
typedef struct bench_lat_result {
    const char *impl;
    unsigned threads;
    size_t keys;    /* the churn set */
    size_t stable;  /* keys live throughout */
    double seconds; /* asked-for length of the round */
    double elapsed;
    uint64_t ops;     /* claim + stop cycles */
    uint64_t started; /* claims that ran the start (the rest found the key live) */
    uint64_t errors;
    bench_lat_t claim, stop;
} bench_lat_result_t;

/* Sorts x in place and fills the median, min and max of n values. */
void bench_stat_of(double *x, size_t n, bench_stat_t *out);

int bench_results_add(bench_results_t *rs, const bench_result_t *r);
void bench_results_free(bench_results_t *rs);
const bench_result_t *bench_results_find(const bench_results_t *rs, const char *bench,
                                         const char *impl, unsigned threads);

void bench_machine_get(bench_machine_t *m);
void bench_machine_print(FILE *f, const bench_machine_t *m);

/* The throughput table of one bench: a row per thread count, a column per
 * implementation (median and half the min-max spread), then reki's ratio to
 * each other implementation, all from the same run. */
void bench_table_print(FILE *f, const bench_results_t *rs, const char *bench, const char *what);

/* Whole-file writers; 0 or an errno value. */
int bench_json_write(const char *path, const bench_machine_t *m, const bench_results_t *rs);
int bench_csv_write(const char *path, const bench_machine_t *m, const bench_results_t *rs);
/* --latency: two records per result, bench "latency_claim" and
 * "latency_stop", each with p50_ns, p99_ns, p999_ns, max_ns. */
int bench_lat_json_write(const char *path, const bench_machine_t *m, const bench_lat_result_t *v,
                         size_t n);

#endif /* REKI_BENCH_REPORT_H */

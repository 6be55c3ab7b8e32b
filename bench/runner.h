/*
 * Runs the selected workloads and collects one result per workload, thread
 * count and implementation.
 */
#ifndef REKI_BENCH_RUNNER_H
#define REKI_BENCH_RUNNER_H

#include "bench.h"
#include "options.h"
#include "report.h"

typedef struct runner {
    const bench_opts_t *o;
    bench_results_t *rs;
    bench_keyset_t keys;  /* registered: "key:000000" ... */
    bench_keyset_t miss;  /* never registered: "mis:000000" ... */
    bench_keyset_t fresh; /* new keys for one round: "new:000000" ... */
    reki_rt_t *rt;        /* read-only workloads' runtime */
    unsigned done, total; /* progress */
    unsigned failures;
} runner_t;

/* How many implementations run workload w under the options. */
unsigned runner_count(const runner_t *r, const bench_workload_t *w);
/* Runs w at every thread count; 0, or a code when its set-up failed. */
int runner_workload(runner_t *r, const bench_workload_t *w);

#endif /* REKI_BENCH_RUNNER_H */

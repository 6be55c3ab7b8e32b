/*
 * reki-bench --latency: claim and stop latency percentiles under churn, next
 * to a large set of live keys.
 */
#ifndef REKI_BENCH_LATENCY_H
#define REKI_BENCH_LATENCY_H

#include "bench.h"
#include "options.h"

/* Runs every implementation with a stop named in o->impls (default
 * "reki,mutex,rwlock") at every thread count, claiming keys of churn;
 * prints the table (and o->json); returns the process exit status. */
int bench_latency_main(const bench_opts_t *o, const bench_keyset_t *churn);

#endif /* REKI_BENCH_LATENCY_H */

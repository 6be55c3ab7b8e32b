/*
 * reki-bench's options.
 */
#ifndef REKI_BENCH_OPTIONS_H
#define REKI_BENCH_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_opts {
    double seconds;
    double warmup;
    unsigned rounds;
    size_t keys;
    size_t budget; /* new keys one round of los_new or mixed may use */
    unsigned threads[16];
    unsigned nthreads;
    const char *workloads; /* comma list; NULL = all */
    const char *impls;     /* comma list; NULL = all */
    const char *json;
    const char *csv;
    unsigned workers; /* reki_rt_opts.workers; 0 = one per CPU */
    bool quick;
    bool list;
    bool callgrind;
    uint64_t callgrind_ops;
    bool latency;
    size_t stable; /* --latency: keys registered and left live (default 1,000,000) */
    /* Given on the command line (and not overridden by a later --quick), so
     * --latency's own defaults leave them alone. */
    bool seconds_given, warmup_given, threads_given, stable_given;
} bench_opts_t;

/* 0: run; 1: help was printed, exit 0; -1: bad usage (printed), exit 2. */
int bench_opts_parse(int argc, char **argv, bench_opts_t *o);
/* A comma list of counts 1..1024 into v (room for max); 0 or -1. */
int bench_parse_counts(const char *s, unsigned *v, unsigned max, unsigned *n);
/* Whether name is in the comma list (a NULL list holds everything). */
bool bench_list_has(const char *list, const char *name);

#endif /* REKI_BENCH_OPTIONS_H */

/*
 * Results: statistics over rounds, the human table, JSON and CSV.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_stat_of(double *x, size_t n, bench_stat_t *out)
{
    if (n == 0) {
        *out = (bench_stat_t){0, 0, 0};
        return;
    }
    qsort(x, n, sizeof *x, cmp_double);
    out->min = x[0];
    out->max = x[n - 1];
    out->median = n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int bench_results_add(bench_results_t *rs, const bench_result_t *r)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        bench_result_t *v = realloc(rs->v, cap * sizeof *v);
        if (v == NULL)
            return ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n++] = *r;
    return 0;
}

void bench_results_free(bench_results_t *rs)
{
    free(rs->v);
    *rs = (bench_results_t){0};
}

const bench_result_t *bench_results_find(const bench_results_t *rs, const char *bench,
                                         const char *impl, unsigned threads)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].threads == threads && strcmp(rs->v[i].bench, bench) == 0 &&
            strcmp(rs->v[i].impl, impl) == 0)
            return &rs->v[i];
    return NULL;
}

/*
 * The human table: one block per bench, a row per thread count, a column per
 * implementation, then reki's ratio to each of the others (same run, same
 * thread count).
 */
#include <string.h>

#include "report.h"

#define MAX_COLS 16
#define MAX_ROWS 32

typedef struct layout {
    const char *impl[MAX_COLS];
    unsigned nimpl;
    unsigned threads[MAX_ROWS];
    unsigned nthreads;
    bool has_reki;
} layout_t;

/* has_reki ends up true only if reki has something to be compared with. */
static void layout_of(const bench_results_t *rs, const char *bench, layout_t *l)
{
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < rs->n; i++) {
        const bench_result_t *r = &rs->v[i];
        if (strcmp(r->bench, bench) != 0)
            continue;
        unsigned j = 0;
        while (j < l->nimpl && strcmp(l->impl[j], r->impl) != 0)
            j++;
        if (j == l->nimpl && l->nimpl < MAX_COLS)
            l->impl[l->nimpl++] = r->impl;
        l->has_reki |= strcmp(r->impl, "reki") == 0;
        j = 0;
        while (j < l->nthreads && l->threads[j] != r->threads)
            j++;
        if (j == l->nthreads && l->nthreads < MAX_ROWS)
            l->threads[l->nthreads++] = r->threads;
    }
    l->has_reki &= l->nimpl > 1;
}

static void print_cell(FILE *f, const bench_result_t *r)
{
    if (r == NULL) {
        fprintf(f, " %15s", "-");
        return;
    }
    double spread = r->ops.median > 0 ? 50.0 * (r->ops.max - r->ops.min) / r->ops.median : 0;
    fprintf(f, " %8.2fM ±%3.0f%%%s", r->ops.median / 1e6, spread, r->errors ? "!" : " ");
}

static void print_row(FILE *f, const bench_results_t *rs, const char *bench, const layout_t *l,
                      unsigned threads)
{
    fprintf(f, "%7u", threads);
    for (unsigned j = 0; j < l->nimpl; j++)
        print_cell(f, bench_results_find(rs, bench, l->impl[j], threads));
    const bench_result_t *reki = bench_results_find(rs, bench, "reki", threads);
    if (l->has_reki)
        fprintf(f, "  |");
    for (unsigned j = 0; l->has_reki && j < l->nimpl; j++) {
        if (strcmp(l->impl[j], "reki") == 0)
            continue;
        const bench_result_t *o = bench_results_find(rs, bench, l->impl[j], threads);
        if (reki && o && o->ops.median > 0)
            fprintf(f, " %10.2fx", reki->ops.median / o->ops.median);
        else
            fprintf(f, " %11s", "-");
    }
    fputc('\n', f);
}

static void print_notes(FILE *f, const bench_results_t *rs, const char *bench)
{
    for (size_t i = 0; i < rs->n; i++) {
        const bench_result_t *r = &rs->v[i];
        if (strcmp(r->bench, bench) != 0)
            continue;
        if (r->errors)
            fprintf(f, "  ! %s, %u threads: %llu unexpected results\n", r->impl, r->threads,
                    (unsigned long long)r->errors);
        if (r->budget_hit)
            fprintf(f, "  note: %s, %u threads: used up its new keys before the round's end\n",
                    r->impl, r->threads);
        if (r->extra_name)
            fprintf(f, "  %s, %u threads: %s %.1f (min %.1f, max %.1f)\n", r->impl, r->threads,
                    r->extra_name, r->extra.median, r->extra.min, r->extra.max);
    }
}

void bench_table_print(FILE *f, const bench_results_t *rs, const char *bench, const char *what)
{
    layout_t l;
    layout_of(rs, bench, &l);
    if (l.nimpl == 0)
        return;
    fprintf(f, "\n== %s: %s\n", bench, what);
    fprintf(f, "   ops/s, median of rounds ± half the min-max spread\n");
    fprintf(f, "threads");
    for (unsigned j = 0; j < l.nimpl; j++)
        fprintf(f, " %15s", l.impl[j]);
    if (l.has_reki)
        fprintf(f, "  |");
    for (unsigned j = 0; l.has_reki && j < l.nimpl; j++) {
        char h[32];
        if (strcmp(l.impl[j], "reki") == 0)
            continue;
        snprintf(h, sizeof h, "reki/%s", l.impl[j]);
        fprintf(f, " %11s", h);
    }
    fputc('\n', f);
    for (unsigned i = 0; i < l.nthreads; i++)
        print_row(f, rs, bench, &l, l.threads[i]);
    print_notes(f, rs, bench);
}

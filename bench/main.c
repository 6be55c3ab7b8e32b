/*
 * reki-bench: reki against the registries a user would otherwise pick, side
 * by side in one run (issue 4).  BENCHMARKS.md explains the method.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "goals.h"
#include "insn.h"
#include "latency.h"
#include "runner.h"

static void list(void)
{
    printf("workloads:\n");
    for (const bench_workload_t *const *w = bench_workloads; *w; w++)
        printf("  %-12s %s\n", (*w)->name, (*w)->what);
    printf("implementations (registry workloads):\n");
    for (const bench_impl_t *const *im = bench_impls; *im; im++)
        printf("  %-12s %s\n", (*im)->name, (*im)->what);
    printf("implementations (send workloads):\n");
    for (const bench_send_impl_t *const *s = bench_send_impls; *s; s++)
        printf("  %-12s %s\n", (*s)->name, (*s)->what);
}

static bool selected(const bench_opts_t *o, const bench_workload_t *w)
{
    return bench_list_has(o->workloads, w->name);
}

static int make_keys(runner_t *r)
{
    const bench_opts_t *o = r->o;
    bool fresh = false;
    for (const bench_workload_t *const *w = bench_workloads; *w; w++)
        fresh |= selected(o, *w) && ((*w)->flags & BENCH_W_NEWKEYS);
    int rc = bench_keyset_make(&r->keys, "key:", 0, o->keys);
    if (rc == 0)
        rc = bench_keyset_make(&r->miss, "mis:", 0, o->keys);
    if (rc == 0 && fresh && !o->callgrind && !o->latency)
        rc = bench_keyset_make(&r->fresh, "new:", 0, o->budget);
    return rc;
}

static void report(const runner_t *r, const bench_machine_t *m)
{
    bench_machine_print(stdout, m);
    printf("method:   %u timed rounds of %g s after a %g s warm-up, per configuration;\n"
           "          %zu keys, new-key budget %zu per round\n",
           r->o->rounds, r->o->seconds, r->o->warmup, r->o->keys, r->o->budget);
    for (const bench_workload_t *const *w = bench_workloads; *w; w++)
        bench_table_print(stdout, r->rs, (*w)->name, (*w)->what);
    bench_goals_print(stdout, r->rs);
}

static int write_files(const runner_t *r, const bench_machine_t *m)
{
    int err = 0;
    if (r->o->json && (err = bench_json_write(r->o->json, m, r->rs)) != 0)
        fprintf(stderr, "reki-bench: %s: %s\n", r->o->json, strerror(err));
    if (r->o->csv && (err = bench_csv_write(r->o->csv, m, r->rs)) != 0)
        fprintf(stderr, "reki-bench: %s: %s\n", r->o->csv, strerror(err));
    return err;
}

static int run_all(runner_t *r)
{
    for (const bench_workload_t *const *w = bench_workloads; *w; w++)
        if (selected(r->o, *w))
            r->total += runner_count(r, *w) * r->o->nthreads;
    if (r->total == 0) {
        fprintf(stderr, "reki-bench: nothing selected (see --list)\n");
        return 2;
    }
    fprintf(stderr, "reki-bench: %u configurations\n", r->total);
    for (const bench_workload_t *const *w = bench_workloads; *w; w++)
        if (selected(r->o, *w))
            runner_workload(r, *w);
    bench_machine_t m;
    bench_machine_get(&m);
    report(r, &m);
    int status = write_files(r, &m) ? 1 : 0;
    for (size_t i = 0; i < r->rs->n; i++)
        if (r->rs->v[i].errors)
            status = 1;
    return r->failures ? 1 : status;
}

int main(int argc, char **argv)
{
    bench_opts_t o;
    int rc = bench_opts_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (o.list) {
        list();
        return 0;
    }
    bench_results_t rs = {0};
    runner_t r = {.o = &o, .rs = &rs};
    if (make_keys(&r) != 0) {
        fprintf(stderr, "reki-bench: out of memory for the key sets\n");
        return 1;
    }
    /* The main thread prefills and frees the tables: register it where an
     * implementation needs that (cds_lfht's RCU). */
    for (const bench_impl_t *const *im = bench_impls; *im; im++)
        if ((*im)->thread_enter)
            (*im)->thread_enter();
    int status = o.callgrind ? bench_insn_main(&o, &r.keys)
                 : o.latency ? bench_latency_main(&o, &r.keys)
                             : run_all(&r);
    for (const bench_impl_t *const *im = bench_impls; *im; im++)
        if ((*im)->thread_leave)
            (*im)->thread_leave();
    bench_results_free(&rs);
    bench_keyset_free(&r.keys);
    bench_keyset_free(&r.miss);
    bench_keyset_free(&r.fresh);
    return status;
}

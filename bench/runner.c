/*
 * The run: for each workload and thread count, every implementation gets a
 * warm-up round, then the timed rounds go round-robin over the
 * implementations (round 1 of each, then round 2 of each ...), so a slow
 * patch of a shared machine hurts all of them alike and the ratios stay
 * honest.  Read-only workloads keep one table per implementation for all
 * their rounds; the others build a fresh runtime and table for every round,
 * outside the timed part.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

typedef struct contender {
    const char *name;
    const bench_impl_t *impl;      /* registry workloads */
    const bench_send_impl_t *send; /* send workloads */
    void *table;                   /* read-only workloads: lives across rounds */
    double *rates;
    uint64_t errors;
    bool budget_hit;
    bool failed;
    bool broken; /* its shared table could not be built */
} contender_t;

/* Registers the key set and checks that every key then looks up.  A start
 * reported as REKI_OK rather than REKI_STARTED is not a set-up failure here;
 * los_new counts it as an unexpected result. */
static int prefill(const runner_t *r, const bench_impl_t *im, void *table)
{
    for (size_t i = 0; i < r->keys.n; i++) {
        const bench_key_t *k = &r->keys.keys[i];
        reki_pid_t pid, again;
        int rc = im->lookup_or_start(table, k->bytes, k->len, &pid);
        if (rc < 0)
            return rc;
        if (im->lookup(table, k->bytes, k->len, &again) != 0 || again != pid)
            return REKI_ENOTFOUND;
    }
    return 0;
}

static int setup(const runner_t *r, const bench_workload_t *w, contender_t *c, unsigned t,
                 bench_wctx_t *ctx)
{
    if (w->flags & BENCH_W_SEND)
        return c->send->open(ctx->rt, t, (w->flags & BENCH_W_MANY) != 0, &ctx->send);
    /* Every table is sized for the registered keys only: new-key workloads
     * pay for growing it, as a registry that cannot know its final size does. */
    int rc = c->impl->create(ctx->rt, r->keys.n, &ctx->table);
    if (rc == 0 && (w->flags & BENCH_W_PREFILL)) {
        rc = prefill(r, c->impl, ctx->table);
        if (rc != 0)
            c->impl->destroy(ctx->table);
    }
    return rc;
}

static void teardown(const bench_workload_t *w, contender_t *c, bench_wctx_t *ctx)
{
    if (w->flags & BENCH_W_SEND)
        c->send->close(ctx->send);
    else
        c->impl->destroy(ctx->table);
}

/* One round of one contender; 0 and *rate, or a REKI_E* code / errno. */
static int round_once(runner_t *r, const bench_workload_t *w, contender_t *c, unsigned t,
                      double seconds, double *rate)
{
    bench_wctx_t ctx = {.impl = c->impl,
                        .table = c->table,
                        .rt = r->rt,
                        .keys = &r->keys,
                        .miss = &r->miss,
                        .fresh = &r->fresh};
    bool own = !(w->flags & BENCH_W_SHARED);
    int rc = 0;
    if (own) {
        reki_rt_opts_t ro = {.workers = r->o->workers};
        rc = reki_rt_new(&ro, &ctx.rt);
        if (rc == 0 && (rc = setup(r, w, c, t, &ctx)) != 0)
            reki_rt_free(ctx.rt);
        if (rc != 0)
            return rc;
    }
    bench_run_t run = {.arg = &ctx, .fn = (w->flags & BENCH_W_SEND) ? c->send->fn : w->fn};
    if (c->impl) {
        run.thread_enter = c->impl->thread_enter;
        run.thread_leave = c->impl->thread_leave;
    }
    bench_round_t out;
    rc = bench_round_run(&run, t, seconds, &out);
    if (own) {
        teardown(w, c, &ctx);
        reki_rt_free(ctx.rt);
    }
    if (rc == 0) {
        *rate = out.elapsed > 0 ? (double)out.ops / out.elapsed : 0;
        c->errors += out.errors;
        c->budget_hit |= out.budget_hit;
    }
    return rc;
}

static void record(runner_t *r, const bench_workload_t *w, contender_t *c, unsigned t)
{
    bench_result_t res = {.bench = w->name,
                          .impl = c->name,
                          .threads = t,
                          .keys = r->keys.n,
                          .seconds = r->o->seconds,
                          .rounds = r->o->rounds,
                          .errors = c->errors,
                          .budget_hit = c->budget_hit};
    bench_stat_of(c->rates, r->o->rounds, &res.ops);
    bench_results_add(r->rs, &res);
    r->done++;
    fprintf(stderr, "[%3u/%u] %-12s %2u threads  %-9s %9.3fM ops/s (min %.3fM, max %.3fM)%s\n",
            r->done, r->total, w->name, t, c->name, res.ops.median / 1e6, res.ops.min / 1e6,
            res.ops.max / 1e6, c->errors ? "  UNEXPECTED RESULTS" : "");
}

static void fail(runner_t *r, const bench_workload_t *w, contender_t *c, unsigned t, int rc)
{
    fprintf(stderr, "reki-bench: %s, %s, %u threads: %s (%d); skipped\n", w->name, c->name, t,
            rc < 0 ? reki_strerror(rc) : strerror(rc), rc);
    c->failed = true;
    r->failures++;
    r->done++;
}

/* warm: run each contender's warm-up round first.  Read-only workloads warm
 * up at every thread count (cheap: the table is built); the others, whose
 * every round builds a fresh runtime and table anyway, only at the first. */
static void run_threads(runner_t *r, const bench_workload_t *w, contender_t *cs, unsigned n,
                        unsigned t, bool warm)
{
    fprintf(stderr, "[%3u/%u] running %s at %u threads: %u implementations x %u rounds...\n",
            r->done, r->total, w->name, t, n, r->o->rounds);
    for (unsigned j = 0; j < n; j++) {
        if (cs[j].broken)
            continue;
        cs[j].errors = 0;
        cs[j].budget_hit = false;
        cs[j].failed = false;
        double ignored;
        int rc = warm && r->o->warmup > 0 ? round_once(r, w, &cs[j], t, r->o->warmup, &ignored) : 0;
        if (rc != 0)
            fail(r, w, &cs[j], t, rc);
    }
    for (unsigned k = 0; k < r->o->rounds; k++) {
        for (unsigned j = 0; j < n; j++) {
            if (cs[j].failed || cs[j].broken)
                continue;
            int rc = round_once(r, w, &cs[j], t, r->o->seconds, &cs[j].rates[k]);
            if (rc != 0)
                fail(r, w, &cs[j], t, rc);
        }
    }
    for (unsigned j = 0; j < n; j++)
        if (!cs[j].failed && !cs[j].broken)
            record(r, w, &cs[j], t);
}

static unsigned contenders(const runner_t *r, const bench_workload_t *w, contender_t *cs)
{
    unsigned n = 0;
    if (w->flags & BENCH_W_SEND) {
        for (const bench_send_impl_t *const *s = bench_send_impls; *s; s++)
            if (bench_list_has(r->o->impls, (*s)->name))
                cs[n++] = (contender_t){.name = (*s)->name, .send = *s};
        return n;
    }
    for (const bench_impl_t *const *im = bench_impls; *im; im++)
        if (((*im)->caps & w->caps) == w->caps && bench_list_has(r->o->impls, (*im)->name))
            cs[n++] = (contender_t){.name = (*im)->name, .impl = *im};
    return n;
}

unsigned runner_count(const runner_t *r, const bench_workload_t *w)
{
    contender_t cs[16];
    return contenders(r, w, cs);
}

/* Builds each contender's table once for every round of a read-only
 * workload; a contender whose set-up fails is left out, not the workload. */
static int shared_setup(runner_t *r, const bench_workload_t *w, contender_t *cs, unsigned n)
{
    reki_rt_opts_t ro = {.workers = r->o->workers};
    int rc = reki_rt_new(&ro, &r->rt);
    for (unsigned j = 0; rc == 0 && j < n; j++) {
        bench_wctx_t ctx = {.rt = r->rt};
        int err = setup(r, w, &cs[j], 0, &ctx);
        cs[j].table = ctx.table;
        if (err != 0) {
            fprintf(stderr, "reki-bench: %s, %s: set-up failed: %s (%d); left out\n", w->name,
                    cs[j].name, reki_strerror(err), err);
            cs[j].broken = true;
            r->failures++;
            r->done += r->o->nthreads;
        }
    }
    return rc;
}

int runner_workload(runner_t *r, const bench_workload_t *w)
{
    contender_t cs[16];
    unsigned n = contenders(r, w, cs);
    if (n == 0)
        return 0;
    double *rates = calloc((size_t)n * r->o->rounds, sizeof *rates);
    if (rates == NULL)
        return REKI_ENOMEM;
    for (unsigned j = 0; j < n; j++)
        cs[j].rates = rates + (size_t)j * r->o->rounds;
    bool shared = w->flags & BENCH_W_SHARED;
    int rc = shared ? shared_setup(r, w, cs, n) : 0;
    if (rc != 0) {
        fprintf(stderr, "reki-bench: %s: set-up failed: %s\n", w->name, reki_strerror(rc));
        r->failures++;
        free(rates);
        return rc;
    }
    for (unsigned i = 0; i < r->o->nthreads; i++)
        run_threads(r, w, cs, n, r->o->threads[i], shared || i == 0);
    if (shared) {
        for (unsigned j = 0; j < n; j++)
            if (!cs[j].broken)
                cs[j].impl->destroy(cs[j].table);
        reki_rt_free(r->rt);
        r->rt = NULL;
    }
    free(rates);
    return 0;
}

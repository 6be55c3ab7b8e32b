/*
 * --latency: how long one claim takes, not how many fit in a second.  Each
 * implementation first starts --stable keys ("stb:000000" ..., default
 * 1,000,000) that stay live, so claims run against a table the size of a
 * busy registry.  Then each of T threads loops: pick a random key of the
 * --keys churn set ("key:000000" ...), time lookup_or_start (the claim and
 * the start of its actor), then time the stop of the key.  Each call sits
 * between two CLOCK_MONOTONIC reads (their own cost, measured and printed, is
 * inside every figure) and goes into the thread's own log-linear histogram
 * (histogram.h); the histograms are merged after the join.
 *
 * One runtime and table per implementation, in turn, kept for all thread
 * counts (a million starts take a while); the churn keys are stopped before
 * every round, so each round starts from the stable set alone.  A round is
 * the harness's (bench_round_run): a warm-up of --warmup s, then one timed
 * round of --seconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "histogram.h"
#include "latency.h"
#include "report.h"

#define BATCH 64

/* One thread's figures; aligned, so no two threads share a line. */
typedef struct lat_thread {
    _Alignas(64) bench_hist_t claim;
    bench_hist_t stop;
    uint64_t started;
} lat_thread_t;

typedef struct lat_round {
    const bench_impl_t *impl;
    void *table;
    const bench_keyset_t *churn;
    lat_thread_t *per; /* indexed by bench_thread_t.index */
} lat_round_t;

typedef struct lat_main {
    const bench_opts_t *o;
    const bench_keyset_t *churn;
    bench_keyset_t stable;
    lat_thread_t *per; /* room for the largest thread count */
    bench_lat_result_t *res;
    size_t nres;
    unsigned failures;
} lat_main_t;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The timed loop.  clock_gettime is an opaque call, so neither registry
 * call can move across a read; pids go into the harness's sink. */
static uint64_t claim_stop(bench_thread_t *th, void *arg)
{
    const lat_round_t *c = arg;
    lat_thread_t *me = &c->per[th->index];
    const bench_impl_t *im = c->impl;
    void *t = c->table;
    uint64_t s = th->seed, ops = 0, sink = 0, errors = 0, started = 0;
    while (!bench_should_stop(th)) {
        for (int i = 0; i < BATCH; i++) {
            const bench_key_t *k = bench_pick(c->churn, &s);
            reki_pid_t pid = 0;
            uint64_t t0 = now_ns();
            int rc = im->lookup_or_start(t, k->bytes, k->len, &pid);
            uint64_t t1 = now_ns();
            int rs = im->stop(t, k->bytes, k->len);
            uint64_t t2 = now_ns();
            bench_hist_record(&me->claim, t1 - t0);
            bench_hist_record(&me->stop, t2 - t1);
            started += rc == REKI_STARTED;
            errors += (rc < 0) + (rs != 0 && rs != REKI_ENOTFOUND);
            sink += pid;
        }
        ops += BATCH;
    }
    me->started = started;
    th->sink = sink;
    th->errors = errors;
    return ops;
}

/* Starts every stable key and checks that it then looks up. */
static int stable_start(const bench_impl_t *im, void *t, const bench_keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        const bench_key_t *k = &ks->keys[i];
        reki_pid_t pid, again;
        int rc = im->lookup_or_start(t, k->bytes, k->len, &pid);
        if (rc < 0)
            return rc;
        if (im->lookup(t, k->bytes, k->len, &again) != 0 || again != pid)
            return REKI_ENOTFOUND;
    }
    return 0;
}

/* One round at t threads; per-thread histograms start empty, and so does
 * the churn set. */
static int lat_round(lat_round_t *c, unsigned t, double seconds, bench_round_t *out)
{
    for (unsigned i = 0; i < t; i++) {
        bench_hist_init(&c->per[i].claim);
        bench_hist_init(&c->per[i].stop);
        c->per[i].started = 0;
    }
    for (size_t i = 0; i < c->churn->n; i++)
        c->impl->stop(c->table, c->churn->keys[i].bytes, c->churn->keys[i].len);
    bench_run_t run = {.arg = c,
                       .fn = claim_stop,
                       .thread_enter = c->impl->thread_enter,
                       .thread_leave = c->impl->thread_leave};
    return bench_round_run(&run, t, seconds, out);
}

static bench_lat_t lat_of(const bench_hist_t *h)
{
    return (bench_lat_t){.p50 = bench_hist_percentile(h, 50),
                         .p99 = bench_hist_percentile(h, 99),
                         .p999 = bench_hist_percentile(h, 99.9),
                         .max = h->max};
}

/* Merges the threads' histograms into thread 0's and fills *res. */
static void summarize(const lat_main_t *m, const lat_round_t *c, unsigned t,
                      const bench_round_t *out, bench_lat_result_t *res)
{
    lat_thread_t *all = &c->per[0];
    for (unsigned i = 1; i < t; i++) {
        bench_hist_merge(&all->claim, &c->per[i].claim);
        bench_hist_merge(&all->stop, &c->per[i].stop);
        all->started += c->per[i].started;
    }
    *res = (bench_lat_result_t){.impl = c->impl->name,
                                .threads = t,
                                .keys = m->churn->n,
                                .stable = m->stable.n,
                                .seconds = m->o->seconds,
                                .elapsed = out->elapsed,
                                .ops = out->ops,
                                .started = all->started,
                                .errors = out->errors,
                                .claim = lat_of(&all->claim),
                                .stop = lat_of(&all->stop)};
}

static int one_config(lat_main_t *m, const bench_impl_t *im, void *table, unsigned t)
{
    lat_round_t c = {.impl = im, .table = table, .churn = m->churn, .per = m->per};
    bench_round_t out;
    int rc = m->o->warmup > 0 ? lat_round(&c, t, m->o->warmup, &out) : 0;
    if (rc == 0)
        rc = lat_round(&c, t, m->o->seconds, &out);
    if (rc != 0)
        return rc;
    bench_lat_result_t *r = &m->res[m->nres++];
    summarize(m, &c, t, &out, r);
    fprintf(stderr,
            "latency: %-7s %2u threads %9.3fM cycles/s  claim p50 %llu p99.9 %llu ns, "
            "stop p50 %llu p99.9 %llu ns%s\n",
            im->name, t, r->elapsed > 0 ? (double)r->ops / r->elapsed / 1e6 : 0,
            (unsigned long long)r->claim.p50, (unsigned long long)r->claim.p999,
            (unsigned long long)r->stop.p50, (unsigned long long)r->stop.p999,
            r->errors ? "  UNEXPECTED RESULTS" : "");
    return 0;
}

/* Builds im's runtime and stable set, runs every thread count, frees it. */
static int run_impl(lat_main_t *m, const bench_impl_t *im)
{
    reki_rt_opts_t ro = {.workers = m->o->workers};
    reki_rt_t *rt = NULL;
    void *table = NULL;
    double t0 = bench_now();
    int rc = reki_rt_new(&ro, &rt);
    if (rc == 0 && (rc = im->create(rt, m->stable.n + m->churn->n, &table)) == 0 &&
        (rc = stable_start(im, table, &m->stable)) != 0)
        im->destroy(table);
    if (rc != 0) {
        reki_rt_free(rt);
        return rc;
    }
    fprintf(stderr, "latency: %-7s %zu stable keys started in %.2f s\n", im->name, m->stable.n,
            bench_now() - t0);
    for (unsigned i = 0; rc == 0 && i < m->o->nthreads; i++)
        rc = one_config(m, im, table, m->o->threads[i]);
    im->destroy(table);
    reki_rt_free(rt);
    return rc;
}

/* The median of back-to-back clock reads: the timer's share of each figure. */
static uint64_t clock_cost(void)
{
    bench_hist_t h;
    bench_hist_init(&h);
    for (int i = 0; i < 100000; i++) {
        uint64_t t0 = now_ns();
        bench_hist_record(&h, now_ns() - t0);
    }
    return bench_hist_percentile(&h, 50);
}

static void print_lat(const bench_lat_t *l)
{
    printf(" | %8llu %8llu %8llu %10llu", (unsigned long long)l->p50, (unsigned long long)l->p99,
           (unsigned long long)l->p999, (unsigned long long)l->max);
}

static void report(const lat_main_t *m, const bench_machine_t *mach, uint64_t clock_ns)
{
    const bench_opts_t *o = m->o;
    bench_machine_print(stdout, mach);
    printf("method:   per implementation, %zu stable keys started and left live; then per\n"
           "          thread count a %g s warm-up and one %g s round of claim + stop cycles\n"
           "          on random keys of %zu churning keys\n",
           m->stable.n, o->warmup, o->seconds, m->churn->n);
    printf(
        "\n== latency: lookup_or_start (claim + start of an idle actor), then stop\n"
        "   ns per call, log-linear histogram (within 0.8 %%; max exact); back-to-back\n"
        "   CLOCK_MONOTONIC reads are %llu ns apart, and that much of each figure is the clock\n",
        (unsigned long long)clock_ns);
    printf("%-8s %7s %10s %7s | %8s %8s %8s %10s | %8s %8s %8s %10s\n", "impl", "threads",
           "cycles/s", "starts", "claim50", "claim99", "claim999", "claim max", "stop50", "stop99",
           "stop999", "stop max");
    for (size_t i = 0; i < m->nres; i++) {
        const bench_lat_result_t *r = &m->res[i];
        double rate = r->elapsed > 0 ? (double)r->ops / r->elapsed : 0;
        printf("%-8s %7u %9.3fM %6.1f%%", r->impl, r->threads, rate / 1e6,
               r->ops ? 100.0 * (double)r->started / (double)r->ops : 0);
        print_lat(&r->claim);
        print_lat(&r->stop);
        printf("%s\n", r->errors ? "  !" : "");
    }
    for (size_t i = 0; i < m->nres; i++)
        if (m->res[i].errors)
            printf("  ! %s, %u threads: %llu unexpected results\n", m->res[i].impl,
                   m->res[i].threads, (unsigned long long)m->res[i].errors);
}

/* The implementations to run: those named (default reki,mutex,rwlock: the
 * serial baseline starts a million keys one request at a time) that stop. */
static unsigned pick(const bench_opts_t *o, const bench_impl_t **v)
{
    const char *list = o->impls ? o->impls : "reki,mutex,rwlock";
    unsigned n = 0;
    for (const bench_impl_t *const *im = bench_impls; *im; im++) {
        if (!bench_list_has(list, (*im)->name))
            continue;
        if ((*im)->caps & BENCH_CAP_STOP)
            v[n++] = *im;
        else if (o->impls)
            fprintf(stderr, "latency: %s has no stop; left out\n", (*im)->name);
    }
    return n;
}

static int finish(lat_main_t *m)
{
    bench_machine_t mach;
    bench_machine_get(&mach);
    report(m, &mach, clock_cost());
    int status = m->failures ? 1 : 0;
    for (size_t i = 0; i < m->nres; i++)
        status |= m->res[i].errors != 0;
    int err = m->o->json ? bench_lat_json_write(m->o->json, &mach, m->res, m->nres) : 0;
    if (err) {
        fprintf(stderr, "reki-bench: %s: %s\n", m->o->json, strerror(err));
        status = 1;
    }
    return status;
}

static int alloc_main(lat_main_t *m, unsigned nimpl)
{
    unsigned most = 1;
    for (unsigned i = 0; i < m->o->nthreads; i++)
        most = m->o->threads[i] > most ? m->o->threads[i] : most;
    m->per = aligned_alloc(_Alignof(lat_thread_t), most * sizeof *m->per);
    m->res = calloc((size_t)nimpl * m->o->nthreads, sizeof *m->res);
    if (m->per == NULL || m->res == NULL)
        return REKI_ENOMEM;
    return bench_keyset_make(&m->stable, "stb:", 0, m->o->stable);
}

static int run_all(lat_main_t *m, const bench_impl_t *const *impls, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int rc = run_impl(m, impls[i]);
        if (rc != 0) {
            fprintf(stderr, "reki-bench: --latency: %s: %s (%d); skipped\n", impls[i]->name,
                    rc < 0 ? reki_strerror(rc) : strerror(rc), rc);
            m->failures++;
        }
    }
    return finish(m);
}

int bench_latency_main(const bench_opts_t *o, const bench_keyset_t *churn)
{
    const bench_impl_t *impls[16];
    unsigned n = pick(o, impls);
    if (n == 0) {
        fprintf(stderr, "reki-bench: --latency: no implementation with a stop selected\n");
        return 2;
    }
    lat_main_t m = {.o = o, .churn = churn};
    int status = 1;
    if (alloc_main(&m, n) != 0)
        fprintf(stderr, "reki-bench: --latency: out of memory\n");
    else
        status = run_all(&m, impls, n);
    bench_keyset_free(&m.stable);
    free(m.per);
    free(m.res);
    return status;
}

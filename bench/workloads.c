/*
 * The registry workloads: one loop per workload, run by every thread of a
 * round against whichever implementation the context names.  Each loop
 * checks the stop flag once per BATCH operations, folds every pid it gets
 * into a sink, and counts results that contradict the workload (a miss in a
 * hit workload) as errors, which the report shows.
 */
#include "bench.h"

#define BATCH 64

static uint64_t lookup_hit(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    int (*get)(void *, const void *, size_t, reki_pid_t *) = w->impl->lookup;
    void *t = w->table;
    uint64_t s = th->seed, ops = 0, sink = 0, errors = 0;
    while (!bench_should_stop(th)) {
        for (int i = 0; i < BATCH; i++) {
            const bench_key_t *k = bench_pick(w->keys, &s);
            reki_pid_t pid = 0;
            errors += get(t, k->bytes, k->len, &pid) != 0;
            sink += pid;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

static uint64_t lookup_miss(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    int (*get)(void *, const void *, size_t, reki_pid_t *) = w->impl->lookup;
    void *t = w->table;
    uint64_t s = th->seed, ops = 0, sink = 0, errors = 0;
    while (!bench_should_stop(th)) {
        for (int i = 0; i < BATCH; i++) {
            const bench_key_t *k = bench_pick(w->miss, &s);
            reki_pid_t pid = 0;
            int rc = get(t, k->bytes, k->len, &pid);
            errors += rc != REKI_ENOTFOUND;
            sink += (uint64_t)rc;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

static uint64_t lookup_or_start_hot(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    int (*get)(void *, const void *, size_t, reki_pid_t *) = w->impl->lookup_or_start;
    void *t = w->table;
    const bench_key_t *k = &w->keys->keys[0];
    uint64_t ops = 0, sink = 0, errors = 0;
    while (!bench_should_stop(th)) {
        for (int i = 0; i < BATCH; i++) {
            reki_pid_t pid = 0;
            errors += get(t, k->bytes, k->len, &pid) != 0;
            sink += pid;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

/* This thread's share of the round's new keys. */
static void fresh_slice(const bench_thread_t *th, const bench_keyset_t *fresh, size_t *lo,
                        size_t *hi)
{
    *lo = fresh->n * th->index / th->nthreads;
    *hi = fresh->n * (th->index + 1) / th->nthreads;
}

static uint64_t lookup_or_start_new(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    int (*get)(void *, const void *, size_t, reki_pid_t *) = w->impl->lookup_or_start;
    void *t = w->table;
    size_t next, end;
    fresh_slice(th, w->fresh, &next, &end);
    uint64_t ops = 0, sink = 0, errors = 0;
    while (!bench_should_stop(th)) {
        if (end - next < BATCH) {
            th->budget_hit = true;
            break;
        }
        for (int i = 0; i < BATCH; i++) {
            const bench_key_t *k = &w->fresh->keys[next++];
            reki_pid_t pid = 0;
            errors += get(t, k->bytes, k->len, &pid) != REKI_STARTED;
            sink += pid;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

/* One op is a whole cycle: start the key's actor (or find it, if another
 * thread just started it), then stop it, so the next start must wait for
 * nothing but its own work. */
static uint64_t churn(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    const bench_impl_t *im = w->impl;
    void *t = w->table;
    uint64_t s = th->seed, ops = 0, sink = 0, errors = 0;
    while (!bench_should_stop(th)) {
        for (int i = 0; i < BATCH; i++) {
            const bench_key_t *k = bench_pick(w->keys, &s);
            reki_pid_t pid = 0;
            int rc = im->lookup_or_start(t, k->bytes, k->len, &pid);
            errors += rc < 0;
            sink += pid;
            rc = im->stop(t, k->bytes, k->len);
            errors += rc != 0 && rc != REKI_ENOTFOUND;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

/* 9 lookups of registered keys, then 1 lookup_or_start of a new key. */
static uint64_t mixed(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    const bench_impl_t *im = w->impl;
    void *t = w->table;
    size_t next, end;
    fresh_slice(th, w->fresh, &next, &end);
    uint64_t s = th->seed, ops = 0, sink = 0, errors = 0;
    unsigned tenth = 0;
    while (!bench_should_stop(th)) {
        if (end - next < BATCH / 10 + 1) {
            th->budget_hit = true;
            break;
        }
        for (int i = 0; i < BATCH; i++) {
            reki_pid_t pid = 0;
            if (++tenth == 10) {
                tenth = 0;
                const bench_key_t *k = &w->fresh->keys[next++];
                errors += im->lookup_or_start(t, k->bytes, k->len, &pid) != REKI_STARTED;
            } else {
                const bench_key_t *k = bench_pick(w->keys, &s);
                errors += im->lookup(t, k->bytes, k->len, &pid) != 0;
            }
            sink += pid;
        }
        ops += BATCH;
    }
    th->sink = sink;
    th->errors = errors;
    return ops;
}

#define SHARED_PREFILLED (BENCH_W_SHARED | BENCH_W_PREFILL)

static const bench_workload_t w_lookup_hit = {
    .name = "lookup_hit",
    .what = "lookup of a random registered key",
    .caps = BENCH_CAP_LOOKUP,
    .flags = SHARED_PREFILLED,
    .fn = lookup_hit,
};
static const bench_workload_t w_lookup_miss = {
    .name = "lookup_miss",
    .what = "lookup of a random key never registered",
    .caps = BENCH_CAP_LOOKUP,
    .flags = SHARED_PREFILLED,
    .fn = lookup_miss,
};
static const bench_workload_t w_hot = {
    .name = "los_hot",
    .what = "lookup_or_start of one registered key by every thread",
    .caps = BENCH_CAP_LOOKUP,
    .flags = SHARED_PREFILLED,
    .fn = lookup_or_start_hot,
};
static const bench_workload_t w_new = {
    .name = "los_new",
    .what = "lookup_or_start of a new key: each op starts a light actor",
    .caps = BENCH_CAP_START,
    .flags = BENCH_W_NEWKEYS,
    .fn = lookup_or_start_new,
};
static const bench_workload_t w_churn = {
    .name = "churn",
    .what = "lookup_or_start then stop of a random key of the set (one cycle per op)",
    .caps = BENCH_CAP_START | BENCH_CAP_STOP,
    .fn = churn,
};
static const bench_workload_t w_mixed = {
    .name = "mixed",
    .what = "90% lookup of a registered key, 10% lookup_or_start of a new key",
    .caps = BENCH_CAP_LOOKUP,
    .flags = BENCH_W_PREFILL | BENCH_W_NEWKEYS,
    .fn = mixed,
};
/* The send workloads' loops belong to their implementations (send_*.c). */
static const bench_workload_t w_send_1to1 = {
    .name = "send_1to1",
    .what = "send from each thread to a receiver of its own",
    .flags = BENCH_W_SEND,
};
static const bench_workload_t w_send_nto1 = {
    .name = "send_nto1",
    .what = "send from every thread to one receiver",
    .flags = BENCH_W_SEND | BENCH_W_MANY,
};

const bench_workload_t *const bench_workloads[] = {
    &w_lookup_hit, &w_lookup_miss, &w_hot,       &w_new, &w_churn,
    &w_mixed,      &w_send_1to1,   &w_send_nto1, NULL,
};

const bench_impl_t *const bench_impls[] = {
    &bench_impl_reki,
    &bench_impl_mutex,
    &bench_impl_rwlock,
    &bench_impl_serial,
    &bench_impl_ck_ht,
    &bench_impl_cds_lfht,
    &bench_impl_floor,
    NULL,
};

const bench_send_impl_t *const bench_send_impls[] = {&bench_send_reki, &bench_send_mutex, NULL};

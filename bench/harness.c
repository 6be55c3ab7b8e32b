/*
 * One timed round: n threads wait at a start line, the clock starts when the
 * last of them is ready, the main thread sleeps for the round's length and
 * raises the stop flag, and the round ends when the last thread returns.
 *
 * The threads spin with sched_yield at the start line because rounds run
 * with more threads than cores: a pure spin would keep the main thread, and
 * the runtime's workers, off the CPU.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *round_thread(void *p)
{
    bench_thread_t *th = p;
    bench_run_t *run = th->run;
    if (run->thread_enter)
        run->thread_enter();
    /* release/acquire: the ready count and the go flag order the set-up of
     * every thread before the clock starts. */
    atomic_fetch_add_explicit(&run->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&run->go, memory_order_acquire))
        sched_yield();
    th->ops = run->fn(th, run->arg);
    th->t_end = bench_now();
    atomic_fetch_add_explicit(&run->finished, 1, memory_order_relaxed);
    if (run->thread_leave)
        run->thread_leave();
    return NULL;
}

static void sleep_until_done(bench_run_t *run, unsigned n, double deadline)
{
    for (;;) {
        double left = deadline - bench_now();
        if (left <= 0 || atomic_load_explicit(&run->finished, memory_order_relaxed) == n)
            return;
        if (left > 0.002)
            left = 0.002;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void collect(const bench_thread_t *th, unsigned n, double t_start, bench_round_t *out)
{
    memset(out, 0, sizeof *out);
    double t_end = t_start;
    for (unsigned i = 0; i < n; i++) {
        out->ops += th[i].ops;
        out->errors += th[i].errors;
        out->budget_hit |= th[i].budget_hit;
        if (th[i].t_end > t_end)
            t_end = th[i].t_end;
    }
    out->elapsed = t_end - t_start;
}

/* Keeps every thread's sink alive past the optimiser. */
volatile uint64_t bench_sink;

int bench_round_run(bench_run_t *run, unsigned n, double seconds, bench_round_t *out)
{
    bench_thread_t *th = aligned_alloc(64, sizeof *th * n);
    pthread_t *tid = malloc(sizeof *tid * n);
    if (th == NULL || tid == NULL) {
        free(th);
        free(tid);
        return ENOMEM;
    }
    memset(th, 0, sizeof *th * n);
    atomic_store(&run->stop, false);
    atomic_store(&run->ready, 0);
    atomic_store(&run->go, false);
    atomic_store(&run->finished, 0);
    unsigned started = 0;
    int err = 0;
    for (; started < n; started++) {
        th[started] = (bench_thread_t){
            .run = run, .index = started, .nthreads = n, .seed = bench_seed(started)};
        err = pthread_create(&tid[started], NULL, round_thread, &th[started]);
        if (err != 0)
            break;
    }
    if (err == 0) {
        while (atomic_load_explicit(&run->ready, memory_order_acquire) < n)
            sched_yield();
        run->t_start = bench_now();
        atomic_store_explicit(&run->go, true, memory_order_release);
        sleep_until_done(run, n, run->t_start + seconds);
    }
    /* On a failed start the threads already made see stop before go. */
    atomic_store_explicit(&run->stop, true, memory_order_relaxed);
    atomic_store_explicit(&run->go, true, memory_order_release);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (err == 0) {
        collect(th, n, run->t_start, out);
        uint64_t s = 0;
        for (unsigned i = 0; i < n; i++)
            s += th[i].sink;
        bench_sink += s;
    }
    free(th);
    free(tid);
    return err;
}

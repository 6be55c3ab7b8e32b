/*
 * reki-torture: options, the coordinator (quiescent checks, hang watchdog),
 * the final teardown checks and the summary.  See torture.h for what is
 * checked and docs/testing.md for how to run it.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "torture.h"
#ifdef REKI_FAULT_INJECTION
#include "core/fault.h"
#endif

struct options {
    unsigned threads, seconds, keys, workers, check_ms, settle_ms, hang_ms;
    unsigned long long ops;
    uint64_t seed;
    bool churn;
    unsigned fail_allocs; /* 0, or fail about one allocation in this many */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: reki-torture [--threads N] [--seconds S] [--keys K] [--seed X]\n"
            "                    [--ops N] [--workers W] [--check-ms MS] [--settle-ms MS]\n"
            "                    [--hang-ms MS] [--no-churn] [--fail-allocs N] [--reap-eager]\n"
            "                    [--verbose]\n"
            "  --threads N    torture threads (default: 2 x online CPUs, at most %d)\n"
            "  --seconds S    run time (default 10); with --ops, whichever ends first\n"
            "  --keys K       size of the key set (default 8, at most 65535)\n"
            "  --seed X       seed (decimal or 0x hex); printed at start, replays a run\n"
            "  --ops N        operations per thread, then stop (0 = no limit)\n"
            "  --workers W    runtime worker threads (default 2)\n"
            "  --check-ms MS  time between quiescent checks (default 500)\n"
            "  --settle-ms MS how long a quiescent point may take to settle (default 10000)\n"
            "  --hang-ms MS   an operation taking longer is a hang (default 60000)\n"
            "  --no-churn     do not create and free whole registries and runtimes\n"
            "  --fail-allocs N  fail one library allocation in about N, every 2 ms\n"
            "                 (needs a -DREKI_FAULT_INJECTION=ON build)\n"
            "  --reap-eager   registries reap every entry that stays FREE, whatever their\n"
            "                 budget (REKI_DEBUG_REAP=1): claims race the reaper all the time\n",
            T_MAX_THREADS);
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f != NULL) {
        if (fread(&s, sizeof(s), 1, f) != 1)
            s = 0;
        fclose(f);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return s ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longs[] = {
        {"threads", required_argument, NULL, 't'},
        {"seconds", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 'x'},
        {"ops", required_argument, NULL, 'o'},
        {"workers", required_argument, NULL, 'w'},
        {"check-ms", required_argument, NULL, 'c'},
        {"settle-ms", required_argument, NULL, 'S'},
        {"hang-ms", required_argument, NULL, 'H'},
        {"no-churn", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"fail-allocs", required_argument, NULL, 'F'},
        {"reap-eager", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (struct options){.threads = (unsigned)(cpus > 0 ? 2 * cpus : 4),
                          .seconds = 10,
                          .keys = 8,
                          .workers = 2,
                          .check_ms = 500,
                          .settle_ms = 10000,
                          .hang_ms = 60000,
                          .seed = random_seed(),
                          .churn = true};
    if (o->threads > T_MAX_THREADS)
        o->threads = T_MAX_THREADS;
    int c;
    unsigned long long v = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 't':
            ok = parse_uint(optarg, T_MAX_THREADS, &v) && v > 0;
            o->threads = (unsigned)v;
            break;
        case 's':
            ok = parse_uint(optarg, 1000000, &v);
            o->seconds = (unsigned)v;
            break;
        case 'k':
            ok = parse_uint(optarg, 65535, &v) && v > 0;
            o->keys = (unsigned)v;
            break;
        case 'x':
            ok = parse_uint(optarg, UINT64_MAX, &v);
            o->seed = v;
            break;
        case 'o': ok = parse_uint(optarg, UINT64_MAX, &o->ops); break;
        case 'R': setenv("REKI_DEBUG_REAP", "1", 1); break;
        case 'w':
            ok = parse_uint(optarg, 1024, &v) && v > 0;
            o->workers = (unsigned)v;
            break;
        case 'c':
            ok = parse_uint(optarg, 3600000, &v) && v > 0;
            o->check_ms = (unsigned)v;
            break;
        case 'S':
            ok = parse_uint(optarg, 3600000, &v);
            o->settle_ms = (unsigned)v;
            break;
        case 'H':
            ok = parse_uint(optarg, 3600000, &v) && v > 0;
            o->hang_ms = (unsigned)v;
            break;
        case 'n': o->churn = false; break;
        case 'F':
            ok = parse_uint(optarg, 1000000, &v) && v > 0;
            o->fail_allocs = (unsigned)v;
            break;
        case 'v': t_verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        default: ok = false;
        }
        if (!ok) {
            if (c != '?')
                fprintf(stderr, "reki-torture: bad value '%s' for option\n", optarg);
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
#ifndef REKI_FAULT_INJECTION
    if (o->fail_allocs != 0) {
        fprintf(stderr, "reki-torture: --fail-allocs needs a -DREKI_FAULT_INJECTION=ON build\n");
        return -1;
    }
#endif
    return 0;
}

/* ------------------------------------------------------------ coordinator -- */

static struct tthread *threads;
static uint64_t inject_rng;

/* Arm (or disarm) the next allocation failure: one at a time, somewhere in
 * the next fail_allocs allocations of any thread. */
static void inject(const struct options *o, bool on)
{
#ifdef REKI_FAULT_INJECTION
    if (o->fail_allocs != 0)
        reki__fault_alloc_fail_at(on ? 1 + (long)(t_splitmix(&inject_rng) % o->fail_allocs) : 0);
#else
    (void)o;
    (void)on;
#endif
}

static void watchdog(const struct options *o)
{
    uint64_t now = t_now_ms();
    for (unsigned i = 0; i < o->threads; i++) {
        int op = atomic_load(&threads[i].cur_op);
        uint64_t since = atomic_load(&threads[i].op_start_ms);
        if (op >= 0 && now > since + o->hang_ms) {
            violation("hang: t%u has been in %s for %llu ms (op #%llu)", i, op_name(op),
                      (unsigned long long)(now - since), threads[i].opno);
            fprintf(stderr, "reki-torture: seed %#" PRIx64 ": FAILED (hang)\n", o->seed);
            fflush(NULL);
            _exit(3);
        }
    }
}

/* Park every torture thread between operations; false if all finished. */
static void pause_all(const struct options *o)
{
    pthread_mutex_lock(&ctl.mu);
    atomic_store(&ctl.pause, 1);
    while (ctl.parked + ctl.done < o->threads) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&ctl.cv, &ctl.mu, &ts);
        pthread_mutex_unlock(&ctl.mu);
        watchdog(o);
        pthread_mutex_lock(&ctl.mu);
    }
    pthread_mutex_unlock(&ctl.mu);
}

static void resume_all(void)
{
    pthread_mutex_lock(&ctl.mu);
    atomic_store(&ctl.pause, 0);
    pthread_cond_broadcast(&ctl.cv);
    pthread_mutex_unlock(&ctl.mu);
}

static unsigned checks_done;

static void quiescent_point(struct world *w, const struct options *o)
{
    pause_all(o);
    inject(o, false); /* the checks themselves allocate */
    for (unsigned i = 0; i < o->threads; i++)
        inbox_drain(&threads[i]);
    quiescent_check(w, o->settle_ms);
    /* Nothing is exiting now, and no torture thread runs: the history of
     * exits can be forgotten without missing a stale pid in flight. */
    if (pidset_fill(w->exited) >= 20)
        pidset_clear(w->exited);
    checks_done++;
    resume_all();
}

static bool all_done(const struct options *o)
{
    pthread_mutex_lock(&ctl.mu);
    bool done = ctl.done == o->threads;
    pthread_mutex_unlock(&ctl.mu);
    return done;
}

static void coordinate(struct world *w, const struct options *o)
{
    uint64_t start = t_now_ms();
    uint64_t end = start + (uint64_t)o->seconds * 1000u;
    uint64_t next_check = start + o->check_ms;
    while (!all_done(o)) {
        uint64_t now = t_now_ms();
        if (now >= end)
            break;
        if (now >= next_check || pidset_fill(w->exited) >= 25) {
            quiescent_point(w, o);
            next_check = t_now_ms() + o->check_ms;
        }
        watchdog(o);
        inject(o, true);
        t_sleep_us(2000);
    }
    inject(o, false);
    atomic_store(&ctl.stop, 1);
    resume_all();
    while (!all_done(o)) {
        watchdog(o);
        t_sleep_us(5000);
    }
}

/* ---------------------------------------------------------------- report -- */

static void summary(const struct options *o, uint64_t elapsed_ms)
{
    static const char *const rnames[RES_N] = {"ok",       "started",  "notfound", "edead",
                                              "timedout", "tool_err", "other"};
    unsigned long long per_kind[OP_NKINDS][RES_N] = {{0}};
    unsigned long long total = 0;
    for (unsigned i = 0; i < o->threads; i++)
        for (unsigned k = 0; k < OP_NKINDS; k++)
            for (unsigned r = 0; r < RES_N; r++) {
                per_kind[k][r] += threads[i].counts[k][r];
                total += threads[i].counts[k][r];
            }
    unsigned long long max_ms[OP_NKINDS] = {0};
    for (unsigned i = 0; i < o->threads; i++)
        for (unsigned k = 0; k < OP_NKINDS; k++)
            if (threads[i].max_ms[k] > max_ms[k])
                max_ms[k] = threads[i].max_ms[k];
    printf("%-16s %10s", "operation", "total");
    for (unsigned r = 0; r < RES_N; r++)
        printf(" %9s", rnames[r]);
    printf(" %9s\n", "max_ms");
    for (unsigned k = 0; k < OP_NKINDS; k++) {
        unsigned long long sum = 0;
        for (unsigned r = 0; r < RES_N; r++)
            sum += per_kind[k][r];
        printf("%-16s %10llu", op_name((int)k), sum);
        for (unsigned r = 0; r < RES_N; r++)
            printf(" %9llu", per_kind[k][r]);
        printf(" %9llu\n", max_ms[k]);
    }
    double secs = elapsed_ms > 0 ? (double)elapsed_ms / 1000.0 : 1.0;
    printf("reki-torture: seed %#" PRIx64 ", %u threads, %.1f s, %llu operations (%.0f/s), "
           "%u quiescent checks, %llu violations\n",
           o->seed, o->threads, secs, total, (double)total / secs, checks_done,
           (unsigned long long)atomic_load(&t_violations));
}

static void final_checks(struct world *w, const struct options *o)
{
    for (unsigned i = 0; i < o->threads; i++)
        inbox_drain(&threads[i]);
    atomic_store(&t_phase, "final check");
    quiescent_check(w, o->settle_ms);
    printf(
        "world: %llu registered actors, %llu loose, %llu init failures, %llu messages "
        "(%llu handled, %llu dropped, %llu received), %llu monitors\n",
        (unsigned long long)atomic_load(&w->inits), (unsigned long long)atomic_load(&w->u_inits),
        (unsigned long long)atomic_load(&w->init_fails),
        (unsigned long long)atomic_load(&w->accepted), (unsigned long long)atomic_load(&w->handled),
        (unsigned long long)atomic_load(&w->dropped), (unsigned long long)atomic_load(&w->received),
        (unsigned long long)atomic_load(&w->mon_set));
    /* Half the inboxes are freed here, the rest by reki_rt_free. */
    for (unsigned i = 0; i < o->threads; i += 2) {
        reki_inbox_free(threads[i].inbox);
        threads[i].inbox = NULL;
    }
    atomic_store(&t_phase, "reki_registry_free");
    reki_registry_free(w->reg);
    for (unsigned k = 0; k < w->nkeys; k++)
        if (atomic_load(&w->ks[k].live) != 0)
            violation("after reki_registry_free: the actor of key %u has not terminated", k);
    atomic_store(&t_phase, "reki_rt_free");
    reki_rt_free(w->rt); /* frees the virtual registry: its messages are dropped */
    atomic_store(&t_phase, "after reki_rt_free");
    vkeys_report(w, "after reki_rt_free");
    vkeys_free(w);
    struct {
        const char *what;
        unsigned long long a, b;
    } pairs[] = {
        {"registered actors started/terminated", atomic_load(&w->inits), atomic_load(&w->terms)},
        {"loose actors started/terminated", atomic_load(&w->u_inits), atomic_load(&w->u_terms)},
        {"messages accepted/consumed", atomic_load(&w->accepted),
         atomic_load(&w->handled) + atomic_load(&w->dropped) + atomic_load(&w->received)},
        {"monitors set/fired", atomic_load(&w->mon_set), atomic_load(&w->mon_fired)},
        {"exits asked/done", atomic_load(&w->exits_asked), atomic_load(&w->exits_done)},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (pairs[i].a != pairs[i].b)
            violation("after reki_rt_free: %s: %llu != %llu", pairs[i].what, pairs[i].a,
                      pairs[i].b);
}

int main(int argc, char **argv)
{
    struct options o;
    t_set_thread_name("main");
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("reki-torture %s: seed %#" PRIx64 " threads %u seconds %u keys %u workers %u%s\n",
           reki_version_string(), o.seed, o.threads, o.seconds, o.keys, o.workers,
           o.churn ? "" : " (no churn)");
    reki_rt_t *rt = NULL;
    reki_rt_opts_t ro = {o.workers};
    int rc = reki_rt_new(&ro, &rt);
    if (rc != REKI_OK) {
        fprintf(stderr, "reki_rt_new: %s\n", reki_strerror(rc));
        return 2;
    }
    struct world *w = world_new(rt, o.keys, o.threads, true);
    threads = calloc(o.threads, sizeof(*threads));
    if (w == NULL || threads == NULL || vkeys_init(w) != REKI_OK) {
        fprintf(stderr, "reki-torture: setup failed\n");
        return 2;
    }
    ctl.nthreads = o.threads;
    ctl.ops_limit = o.ops;
    ctl.churn = o.churn;
    t_oom_mode = o.fail_allocs != 0;
    inject_rng = o.seed;
    pthread_t *tids = calloc(o.threads, sizeof(*tids));
    for (unsigned i = 0; i < o.threads; i++) {
        if (tids == NULL || tthread_init(&threads[i], w, i, o.seed) != REKI_OK ||
            pthread_create(&tids[i], NULL, torture_thread, &threads[i]) != 0) {
            fprintf(stderr, "reki-torture: could not start thread %u\n", i);
            return 2;
        }
    }
    uint64_t t0 = t_now_ms();
    coordinate(w, &o);
    for (unsigned i = 0; i < o.threads; i++)
        pthread_join(tids[i], NULL);
    uint64_t elapsed = t_now_ms() - t0;
    final_checks(w, &o);
    summary(&o, elapsed);
    for (unsigned i = 0; i < o.threads; i++)
        free(threads[i].in_last_seq);
    free(threads);
    free(tids);
    world_free(w);
    unsigned long long v = atomic_load(&t_violations);
    if (v != 0) {
        violation_summary();
        printf("reki-torture: FAILED with %llu violations; replay with --seed %#" PRIx64
               " --threads %u --keys %u\n",
               v, o.seed, o.threads, o.keys);
        return 1;
    }
    printf("reki-torture: PASSED\n");
    return 0;
}

/*
 * reki-bench-runtime: the runtime services of issue 9, each beside a
 * baseline run in the same process.
 *
 *   timers   arm+cancel pairs per second on one thread (beside a mutex
 *            lock/unlock pair, the machine's cost of the cheapest lock);
 *            library memory per pending timer with 1,000,000 pending
 *            (RSS growth); lateness percentiles of timers due 1-200 ms
 *            later while the workers are not saturated.
 *   call     reki_call round trip from a plain thread to a light actor and
 *            back, beside a hand-written request/reply over one mutex and two
 *            condition variables: calls/s and latency percentiles.
 *   idle     CPU of a runtime with nothing to do, and CPU per message at
 *            one message per millisecond.
 *
 * Usage: reki-bench-runtime [--quick] [--only timers|call|idle]
 * --quick shrinks every count (a smoke run); figures from it mean little.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <reki/reki.h>

#include "histogram.h"

static int quick;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void check(int rc, const char *what)
{
    if (rc != REKI_OK) {
        fprintf(stderr, "reki-bench-runtime: %s: %s\n", what, reki_strerror(rc));
        exit(1);
    }
}

static void print_hist(const char *name, const bench_hist_t *h, double unit, const char *u)
{
    printf("  %-34s p50 %8.1f  p99 %8.1f  p99.9 %8.1f  max %8.1f %s  (n=%llu)\n", name,
           (double)bench_hist_percentile(h, 50) / unit, (double)bench_hist_percentile(h, 99) / unit,
           (double)bench_hist_percentile(h, 99.9) / unit, (double)h->max / unit, u,
           (unsigned long long)h->count);
}

/* --------------------------------------------------------------- actors -- */

static reki_next_t sink_handle(void *state, void *msg, reki_pid_t self)
{
    (void)msg;
    (void)self;
    atomic_fetch_add((atomic_long *)state, 1);
    return REKI_CONTINUE;
}

static const reki_behavior_t sink_b = {.handle = sink_handle};

/* Timed messages: the handler records lateness (us past the deadline). */
struct timed {
    uint64_t due_ns;
};
static bench_hist_t late_hist;
static atomic_long late_done;
static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;

static reki_next_t late_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    struct timed *t = msg;
    uint64_t now = now_ns();
    pthread_mutex_lock(&late_lock);
    bench_hist_record(&late_hist, now > t->due_ns ? (now - t->due_ns) / 1000 : 0);
    pthread_mutex_unlock(&late_lock);
    atomic_fetch_add(&late_done, 1);
    return REKI_CONTINUE;
}

static const reki_behavior_t late_b = {.handle = late_handle};

static reki_next_t echo_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    reki_reply(*(reki_rt_t **)state, reki_caller(), msg);
    return REKI_CONTINUE;
}

static const reki_behavior_t echo_b = {.handle = echo_handle};

/* A runtime and one light actor that counts what it handles into *handled. */
static reki_pid_t sink_runtime(reki_rt_t **rt, atomic_long *handled)
{
    check(reki_rt_new(NULL, rt), "rt_new");
    reki_pid_t pid;
    check(reki_spawn(*rt, &sink_b, handled, NULL, &pid), "spawn");
    return pid;
}

/* --------------------------------------------------------------- timers -- */

static void bench_timers(void)
{
    printf("timers\n");
    atomic_long handled = 0;
    reki_rt_t *rt;
    reki_pid_t pid = sink_runtime(&rt, &handled);
    static char msg;

    /* Arm + cancel pairs, one thread. */
    long n = quick ? 200000 : 20000000;
    reki_timer_t t;
    void *back;
    for (int round = 0; round < 3; round++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            check(reki_send_after(rt, pid, &msg, 30000, &t), "send_after");
            check(reki_timer_cancel(rt, t, &back), "cancel");
        }
        double pairs = (double)n / ((double)(now_ns() - t0) / 1e9);
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            pthread_mutex_lock(&m);
            pthread_mutex_unlock(&m);
        }
        double locks = (double)n / ((double)(now_ns() - t0) / 1e9);
        printf("  arm+cancel, 1 thread, round %d:     %6.2fM pairs/s   (mutex lock+unlock pairs: "
               "%6.2fM/s, ratio %.2f)\n",
               round, pairs / 1e6, locks / 1e6, pairs / locks);
    }

    /* Memory: 1,000,000 pending timers (the library's nodes, and nothing
     * else: the messages are one static byte). */
    long pending = quick ? 20000 : 1000000;
    reki_timer_t *ids = malloc(sizeof(*ids) * (size_t)pending);
    long rss0 = rss_bytes();
    for (long i = 0; i < pending; i++)
        check(reki_send_after(rt, pid, &msg, 600000 + (uint32_t)(i % 100000), &ids[i]), "arm");
    long rss1 = rss_bytes();
    printf("  %ld pending timers: RSS +%.1f MiB = %.1f bytes per timer\n", pending,
           (double)(rss1 - rss0) / 1048576.0, (double)(rss1 - rss0) / (double)pending);
    uint64_t t0 = now_ns();
    for (long i = 0; i < pending; i++)
        check(reki_timer_cancel(rt, ids[i], &back), "cancel");
    printf("  cancelling them: %.1f ns each\n", (double)(now_ns() - t0) / (double)pending);
    free(ids);

    /* Lateness: timers due 1-200 ms after arming, armed at 20,000/s, handled
     * by 8 light actors (the workers are far from saturated). */
    bench_hist_init(&late_hist);
    atomic_store(&late_done, 0);
    enum { TARGETS = 8 };
    reki_pid_t tg[TARGETS];
    for (int i = 0; i < TARGETS; i++)
        check(reki_spawn(rt, &late_b, NULL, NULL, &tg[i]), "spawn");
    long timers = quick ? 2000 : 40000;
    struct timed *tm = malloc(sizeof(*tm) * (size_t)timers);
    uint64_t seed = 12345;
    for (long i = 0; i < timers; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t ms = 1 + (uint32_t)((seed >> 33) % 200);
        tm[i].due_ns = now_ns() + (uint64_t)ms * 1000000u;
        check(reki_send_after(rt, tg[i % TARGETS], &tm[i], ms, NULL), "arm");
        if (i % 20 == 19)
            sleep_ms(1);
    }
    while (atomic_load(&late_done) < timers)
        sleep_ms(5);
    print_hist("lateness past the deadline", &late_hist, 1000.0, "ms");
    free(tm);
    reki_rt_free(rt);
}

/* ----------------------------------------------------------------- call -- */

/* The baseline: one server thread, one request slot, a mutex and two
 * condition variables, as a user would write request/reply by hand. */
struct handrolled {
    pthread_mutex_t lock;
    pthread_cond_t req_cv, rep_cv;
    void *req, *rep;
    int has_req, has_rep, stop;
};

static void *hand_server(void *arg)
{
    struct handrolled *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->has_req && !h->stop)
            pthread_cond_wait(&h->req_cv, &h->lock);
        if (h->stop)
            break;
        h->has_req = 0;
        h->rep = h->req;
        h->has_rep = 1;
        pthread_cond_signal(&h->rep_cv);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static void *hand_call(struct handrolled *h, void *msg)
{
    pthread_mutex_lock(&h->lock);
    h->req = msg;
    h->has_req = 1;
    pthread_cond_signal(&h->req_cv);
    while (!h->has_rep)
        pthread_cond_wait(&h->rep_cv, &h->lock);
    h->has_rep = 0;
    void *r = h->rep;
    pthread_mutex_unlock(&h->lock);
    return r;
}

static void bench_call(void)
{
    printf("call (a plain thread -> a light actor -> reply)\n");
    reki_rt_t *rt;
    check(reki_rt_new(NULL, &rt), "rt_new");
    reki_pid_t pid;
    check(reki_spawn(rt, &echo_b, &rt, NULL, &pid), "spawn");
    struct handrolled h = {.lock = PTHREAD_MUTEX_INITIALIZER,
                           .req_cv = PTHREAD_COND_INITIALIZER,
                           .rep_cv = PTHREAD_COND_INITIALIZER};
    pthread_t server;
    pthread_create(&server, NULL, hand_server, &h);
    long n = quick ? 2000 : 100000;
    static char msg;
    for (int round = 0; round < 3; round++) {
        bench_hist_t hr, hh;
        bench_hist_init(&hr);
        bench_hist_init(&hh);
        uint64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            uint64_t s = now_ns();
            void *rep;
            check(reki_call(rt, pid, &msg, -1, &rep), "call");
            bench_hist_record(&hr, now_ns() - s);
        }
        double reki_rate = (double)n / ((double)(now_ns() - t0) / 1e9);
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            uint64_t s = now_ns();
            if (hand_call(&h, &msg) != &msg)
                abort();
            bench_hist_record(&hh, now_ns() - s);
        }
        double hand_rate = (double)n / ((double)(now_ns() - t0) / 1e9);
        printf("  round %d: reki_call %.0f calls/s, mutex+condvar %.0f calls/s: ratio %.2f\n",
               round, reki_rate, hand_rate, reki_rate / hand_rate);
        print_hist("reki_call round trip", &hr, 1000.0, "us");
        print_hist("mutex+condvar round trip", &hh, 1000.0, "us");
    }
    pthread_mutex_lock(&h.lock);
    h.stop = 1;
    pthread_cond_signal(&h.req_cv);
    pthread_mutex_unlock(&h.lock);
    pthread_join(server, NULL);
    reki_rt_free(rt);
}

/* ----------------------------------------------------------------- idle -- */

static void bench_idle(void)
{
    printf("idle\n");
    atomic_long handled = 0;
    reki_rt_t *rt;
    reki_pid_t pid = sink_runtime(&rt, &handled);
    /* A timer armed and fired first, so the timer thread's linger is over. */
    static char msg;
    check(reki_send_after(rt, pid, &msg, 1, NULL), "arm");
    long secs = quick ? 1 : 3;
    sleep_ms(300);
    uint64_t c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), w0 = now_ns();
    sleep_ms(secs * 1000);
    uint64_t c1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), w1 = now_ns();
    printf("  idle runtime: %.3f %% of one CPU over %ld s\n",
           100.0 * (double)(c1 - c0) / (double)(w1 - w0), secs);
    /* One message per millisecond; the sender's own CPU is taken out. */
    long msgs = secs * 1000;
    long before = atomic_load(&handled);
    c0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t s0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t next = now_ns();
    for (long i = 0; i < msgs; i++) {
        next += 1000000;
        struct timespec ts = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
            ;
        check(reki_send(rt, pid, &msg), "send");
    }
    while (atomic_load(&handled) - before < msgs)
        sleep_ms(1);
    c1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t s1 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    double per = (double)((c1 - c0) - (s1 - s0)) / (double)msgs / 1000.0;
    printf("  1 message per ms: %.1f us of CPU per message outside the sender (%ld messages)\n",
           per, msgs);
    reki_rt_free(rt);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: reki-bench-runtime [--quick] [--only timers|call|idle]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!only || !strcmp(only, "timers"))
        bench_timers();
    if (!only || !strcmp(only, "call"))
        bench_call();
    if (!only || !strcmp(only, "idle"))
        bench_idle();
    return 0;
}

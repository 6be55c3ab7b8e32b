/*
 * reki-bench-vkey: virtual actors (issue 10), each figure against its
 * baseline in the same process.
 *
 *   live     reki_send_key to a live key  vs  reki_lookup + reki_send
 *            (one sending thread, KEYS live keys, round robin): ns per
 *            message, median of ROUNDS alternating rounds, and the ratio.
 *   cold     reki_send_key to a new key (the registry starts its actor)
 *            vs  reki_lookup_or_start + reki_send: ns per key until every
 *            message is handled.
 *   cycle    passivation and re-activation: KEYS keys with idle_ms 1, a
 *            message to each, then wait until all have exited idle; cycles
 *            (idle exit + re-start by a message) per second.
 *   million  N virtual actors (default 1,000,000) activated once and
 *            passivated (idle_ms 100); then 1 % of them kept busy for 2 s:
 *            RSS before, at N live, after passivation; messages/s of the 1 %;
 *            process CPU of the 99 % idle (a window with none active).
 *
 * usage: reki-bench-vkey [--quick] [--keys K] [--rounds R] [--million N]
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <reki/reki.h>

#include "report.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Bytes the process's malloc has handed out and not got back. */
static long heap_kib(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static atomic_ulong handled;
static char token;
#define MSG ((void *)&token)

static reki_next_t h_count(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return REKI_CONTINUE;
}

static const reki_behavior_t counter = {NULL, h_count, NULL, NULL};

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &counter, NULL, NULL, out);
}

static size_t mkkey(char *buf, const char *pfx, unsigned long i)
{
    return (size_t)snprintf(buf, 32, "%s%lu", pfx, i);
}

static void wait_handled(unsigned long n)
{
    while (atomic_load_explicit(&handled, memory_order_relaxed) < n)
        sched_yield();
}

static double median(double *v, int n)
{
    bench_stat_t st;
    bench_stat_of(v, (size_t)n, &st);
    return st.median;
}

/* ------------------------------------------------------------------ live -- */

static void bench_live(unsigned keys, int rounds, unsigned long per_round)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_registry_opts_t o = {.start = start};
    if (reki_rt_new(NULL, &rt) || reki_registry_new(rt, &o, &reg))
        abort();
    char(*kb)[32] = malloc((size_t)keys * 32);
    size_t *kl = malloc(keys * sizeof *kl);
    for (unsigned i = 0; i < keys; i++) {
        reki_pid_t pid;
        kl[i] = mkkey(kb[i], "live", i);
        if (reki_lookup_or_start(reg, kb[i], kl[i], start, NULL, -1, &pid) < 0)
            abort();
    }
    double *base = calloc((size_t)rounds, sizeof(double));
    double *vk = calloc((size_t)rounds, sizeof(double));
    unsigned long total = 0;
    for (int r = 0; r < rounds; r++) {
        for (int which = 0; which < 2; which++) {
            uint64_t t0 = now_ns();
            for (unsigned long i = 0; i < per_round; i++) {
                unsigned k = (unsigned)(i % keys);
                if (which == 0) {
                    reki_pid_t pid;
                    if (reki_lookup(reg, kb[k], kl[k], &pid) != REKI_OK ||
                        reki_send(rt, pid, MSG) != REKI_OK)
                        abort();
                } else if (reki_send_key(reg, kb[k], kl[k], MSG) != REKI_OK) {
                    abort();
                }
            }
            double ns = (double)(now_ns() - t0) / (double)per_round;
            total += per_round;
            wait_handled(total); /* each round starts with empty mailboxes */
            (which == 0 ? base : vk)[r] = ns;
        }
    }
    double b = median(base, rounds), v = median(vk, rounds);
    printf(
        "live     lookup+send %.1f ns/msg   send_key %.1f ns/msg   ratio %.2fx  (goal <= 1.2x)\n",
        b, v, v / b);
    reki_rt_free(rt);
    free(base);
    free(vk);
    free(kb);
    free(kl);
}

/* ------------------------------------------------------------------ cold -- */

static void bench_cold(unsigned long keys, int rounds)
{
    double *base = calloc((size_t)rounds, sizeof(double));
    double *vk = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        for (int which = 0; which < 2; which++) {
            reki_rt_t *rt;
            reki_registry_t *reg;
            reki_registry_opts_t o = {.capacity = keys, .start = start};
            if (reki_rt_new(NULL, &rt) || reki_registry_new(rt, &o, &reg))
                abort();
            atomic_store(&handled, 0);
            char k[32];
            uint64_t t0 = now_ns();
            for (unsigned long i = 0; i < keys; i++) {
                size_t kl = mkkey(k, "cold", i);
                if (which == 0) {
                    reki_pid_t pid;
                    if (reki_lookup_or_start(reg, k, kl, start, NULL, -1, &pid) < 0 ||
                        reki_send(rt, pid, MSG) != REKI_OK)
                        abort();
                } else if (reki_send_key(reg, k, kl, MSG) != REKI_OK) {
                    abort();
                }
            }
            wait_handled(keys);
            (which == 0 ? base : vk)[r] = (double)(now_ns() - t0) / (double)keys;
            reki_rt_free(rt);
        }
    }
    double b = median(base, rounds), v = median(vk, rounds);
    printf("cold     lookup_or_start+send %.1f ns/key   send_key %.1f ns/key   ratio %.2fx  "
           "(goal <= 1.2x)\n",
           b, v, v / b);
    free(base);
    free(vk);
}

/* ----------------------------------------------------------------- cycle -- */

static void bench_cycle(unsigned long keys, int rounds)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_registry_opts_t o = {.capacity = keys, .start = start, .idle_ms = 1};
    if (reki_rt_new(NULL, &rt) || reki_registry_new(rt, &o, &reg))
        abort();
    atomic_store(&handled, 0);
    char k[32];
    double c0 = cpu_s();
    uint64_t t0 = now_ns(), idle_wait = 0;
    for (int r = 0; r < rounds; r++) {
        for (unsigned long i = 0; i < keys; i++) {
            size_t kl = mkkey(k, "cyc", i);
            if (reki_send_key(reg, k, kl, MSG) != REKI_OK)
                abort();
        }
        wait_handled(keys * (unsigned long)(r + 1));
        uint64_t w0 = now_ns();
        while (reki_count(reg) > 0)
            sched_yield();
        idle_wait += now_ns() - w0;
    }
    double secs = (double)(now_ns() - t0) / 1e9, cpu = cpu_s() - c0;
    double cycles = (double)keys * rounds;
    printf("cycle    %lu keys x %d: %.2fM cycles/s (idle exit + re-activation; goal >= 1M/s on 2 "
           "cores), %.2f us CPU/cycle, waiting for idle %.0f%% of the time\n",
           keys, rounds, cycles / secs / 1e6, cpu / cycles * 1e6,
           100.0 * (double)idle_wait / 1e9 / secs);
    reki_rt_free(rt);
}

/* --------------------------------------------------------------- million -- */

struct sender {
    reki_registry_t *reg;
    unsigned long active;
    atomic_int *stop;
    unsigned long sent;
};

static void bench_million(unsigned long n)
{
    long rss0 = rss_kib(), heap0 = heap_kib();
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_registry_opts_t o = {.start = start,
                              .idle_ms = 100}; /* no capacity hint: the reaper sizes it */
    if (reki_rt_new(NULL, &rt) || reki_registry_new(rt, &o, &reg))
        abort();
    atomic_store(&handled, 0);
    char k[32];
    uint64_t t0 = now_ns();
    for (unsigned long i = 0; i < n; i++) {
        size_t kl = mkkey(k, "m", i);
        if (reki_send_key(reg, k, kl, MSG) != REKI_OK)
            abort();
    }
    wait_handled(n);
    double act_s = (double)(now_ns() - t0) / 1e9;
    long rss_live = rss_kib();
    size_t live = reki_count(reg);
    while (reki_count(reg) > 0)
        sleep_ms(10);
    sleep_ms(300); /* the reaper frees entries as keys stay free */
    reki_registry_stats_t st;
    reki_registry_stats(reg, &st);
    long heap_pass = heap_kib();
    malloc_trim(0); /* glibc keeps freed pages; give them back to compare RSS */
    long rss_pass = rss_kib();
    /* 1 % active for 2 s: one thread sends round robin to them. */
    unsigned long active = n / 100;
    double c0 = cpu_s();
    uint64_t a0 = now_ns();
    unsigned long sent = 0;
    while (now_ns() - a0 < 2000000000ull) {
        for (unsigned long i = 0; i < active; i++) {
            size_t kl = mkkey(k, "m", i * 100);
            if (reki_send_key(reg, k, kl, MSG) != REKI_OK)
                abort();
        }
        sent += active;
        while (atomic_load(&handled) + 200000 < n + sent)
            sched_yield(); /* keep mailboxes short */
    }
    wait_handled(n + sent);
    double a_s = (double)(now_ns() - a0) / 1e9, a_cpu = cpu_s() - c0;
    long rss_active = rss_kib();
    size_t active_live = reki_count(reg);
    while (reki_count(reg) > 0)
        sleep_ms(10);
    sleep_ms(200);
    double i0 = cpu_s();
    uint64_t w0 = now_ns();
    sleep_ms(2000);
    double idle_cpu = (cpu_s() - i0) / ((double)(now_ns() - w0) / 1e9);
    printf("million  %lu keys activated in %.2f s (%.2fM/s), %zu still live then (the others had "
           "passivated): RSS %+ld KiB over the start\n",
           n, act_s, (double)n / act_s / 1e6, live, rss_live - rss0);
    printf("         all passivated: malloc'd bytes in use %+ld KiB over the start, RSS %+ld KiB "
           "after malloc_trim; %zu entries left of %lu keys (reaped %llu)\n",
           heap_pass - heap0, rss_pass - rss0, st.entries, n, (unsigned long long)st.reaped);
    printf("         1%% active (%lu keys, %zu live): %.2fM msgs/s, CPU %.0f%% of one core, RSS "
           "%+ld KiB\n",
           active, active_live, (double)sent / a_s / 1e6, 100.0 * a_cpu / a_s, rss_active - rss0);
    printf("         99%% idle (none active): CPU %.3f%% of one core\n", 100.0 * idle_cpu);
    reki_rt_free(rt);
}

int main(int argc, char **argv)
{
    unsigned keys = 1000;
    int rounds = 7;
    unsigned long million = 1000000, cold = 200000, cyc = 100000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            rounds = 3;
            million = 20000;
            cold = 5000;
            cyc = 5000;
        } else if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
            keys = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--million") && i + 1 < argc) {
            million = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--keys K] [--rounds R] [--million N]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || keys < 1 || million < 100)
        return 2;
    printf("reki-bench-vkey %s, %ld CPUs\n", reki_version_string(), sysconf(_SC_NPROCESSORS_ONLN));
    /* First, so that its RSS figures start from a process that has not
     * grown its heap for the others. */
    bench_million(million);
    bench_live(keys, rounds, rounds > 3 ? 1000000 : 100000);
    bench_cold(cold, rounds > 3 ? 5 : 3);
    bench_cycle(cyc, rounds > 3 ? 10 : 3);
    return 0;
}

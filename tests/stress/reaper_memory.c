/*
 * Memory stays bounded when keys never come back: a registry through which
 * --distinct keys (default 10,000,000) are started and stopped, with at most
 * --live (default 10,000) alive at once, must end with an index (entries and
 * map capacity) within 2x of a registry that only ever held --live keys
 * (through as many starts), and with a peak RSS within 2x of that one's.
 *
 * Without the reaper every key leaves a FREE entry behind (an entry outlives
 * its actor so that the key restarts with one CAS): 10 million entries and a
 * map grown to match, which this test fails by orders of magnitude.
 *
 * Threads each own a stripe of the key space and keep a ring of their live
 * keys: start the next key, stop the oldest once the ring is full.
 *
 * usage: stress_reaper_memory [--threads N] [--distinct N] [--live N] [--no-rss]
 */
#include <pthread.h>
#include <stdbool.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reki/reki.h"

static reki_rt_t *rt;

static reki_next_t idle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

/* Actors started, and terminated: a stop only begins an actor's exit, and
 * the callers wait for exits to catch up so that at most `live` actors
 * exist, exiting ones included. */
static atomic_long started, terminated;

static void on_terminate(void *state, int reason)
{
    (void)state;
    (void)reason;
    atomic_fetch_add_explicit(&terminated, 1, memory_order_relaxed);
}

static int start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    static const reki_behavior_t b = {.handle = idle, .terminate = on_terminate};
    atomic_fetch_add_explicit(&started, 1, memory_order_relaxed);
    return reki_spawn(r, &b, NULL, NULL, out);
}

static atomic_long peak_rss;

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Peak RSS while the keys churn (thread 0 samples). */
static void sample(void)
{
    long r = rss_kib();
    if (r > atomic_load(&peak_rss))
        atomic_store(&peak_rss, r);
}

struct stripe {
    reki_registry_t *reg;
    unsigned id, nthreads;
    long first, count, keyspace, ring_len, live;
    long failures;
};

static int key_of(char *buf, long i)
{
    return snprintf(buf, 24, "user:%011ld", i);
}

static void stop_key(struct stripe *s, long k)
{
    char key[24];
    if (reki_stop(s->reg, key, (size_t)key_of(key, k)) != REKI_OK)
        s->failures++;
}

/* Keys first + id, first + id + nthreads, ... (keyspace/nthreads of them,
 * then again from the first), count starts in all, at most ring_len of them
 * registered at once.  The last ring_len stay registered. */
static void *run_stripe(void *arg)
{
    struct stripe *s = arg;
    long *ring = calloc((size_t)s->ring_len, sizeof(*ring));
    long head = 0, n = 0;
    long own = s->keyspace / s->nthreads; /* keys of this stripe */
    for (long i = s->id; i < s->count; i += s->nthreads) {
        long k = s->first + s->id + s->nthreads * ((i / s->nthreads) % own);
        if (n == s->ring_len) {
            stop_key(s, ring[head]);
            n--;
        }
        while (atomic_load_explicit(&started, memory_order_relaxed) -
                   atomic_load_explicit(&terminated, memory_order_relaxed) >=
               s->live)
            sched_yield();
        char key[24];
        reki_pid_t pid;
        int rc = reki_lookup_or_start(s->reg, key, (size_t)key_of(key, k), start, NULL, -1, &pid);
        if (rc != REKI_STARTED)
            s->failures++;
        if (s->id == 0 && (i & 4095) == 0)
            sample();
        ring[head] = k;
        head = (head + 1) % s->ring_len;
        n++;
    }
    free(ring);
    return NULL;
}

/* Run count starts (keys first.. mod keyspace) through reg on nthreads
 * threads, at most `live` alive; the index as it ends (`live` registered). */
static long churn(reki_registry_t *reg, unsigned nthreads, long first, long count,
                  long keyspace, long live, reki_registry_stats_t *end)
{
    pthread_t tid[64];
    struct stripe s[64];
    for (unsigned t = 0; t < nthreads; t++) {
        s[t] = (struct stripe){reg, t, nthreads, first, count, keyspace, live / nthreads - 16,
                               live, 0};
        pthread_create(&tid[t], NULL, run_stripe, &s[t]);
    }
    long failures = 0;
    for (unsigned t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        failures += s[t].failures;
    }
    reki_registry_stats(reg, end);
    return failures;
}

int main(int argc, char **argv)
{
    unsigned nthreads = 2;
    long distinct = 10000000, live = 10000;
    bool rss = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-rss") == 0) {
            rss = false; /* sanitizers keep freed memory in quarantine */
            continue;
        }
        if (i + 1 == argc)
            break;
        if (strcmp(argv[i], "--threads") == 0)
            nthreads = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--distinct") == 0)
            distinct = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--live") == 0)
            live = atol(argv[i + 1]);
        i++;
    }
    if (nthreads < 1 || nthreads > 64 || live < nthreads || distinct < 4 * live) {
        fprintf(stderr, "usage: %s [--threads 1..64] [--distinct N >= 4*live] [--live N]\n",
                argv[0]);
        return 2;
    }
    printf("reaper_memory: threads %u distinct %ld live %ld\n", nthreads, distinct, live);
    if (reki_rt_new(NULL, &rt) != REKI_OK)
        return 1;

    /* The reference: a registry that only ever holds `live` keys, run
     * through them as many times. */
    reki_registry_t *ref, *reg;
    reki_registry_stats_t rs, as;
    long rss0 = rss_kib();
    reki_registry_new(rt, NULL, &ref);
    long failures = churn(ref, nthreads, 0, distinct, live, live, &rs);
    reki_registry_free(ref);
    long rss_ref = atomic_exchange(&peak_rss, 0);

    reki_registry_new(rt, NULL, &reg);
    failures += churn(reg, nthreads, 0, distinct, distinct, live, &as);
    long rss_distinct = atomic_exchange(&peak_rss, 0);
    reki_registry_free(reg);
    printf("reference, %ld starts of %ld keys: entries %zu capacity %zu\n", distinct, live,
           rs.entries, rs.capacity);
    printf("%ld distinct keys: entries %zu capacity %zu reaped %llu rebuilds %llu\n", distinct,
           as.entries, as.capacity, (unsigned long long)as.reaped,
           (unsigned long long)as.rebuilds);
    printf("peak rss: at the start %ld KiB, reference %ld KiB, distinct keys %ld KiB\n", rss0,
           rss_ref, rss_distinct);

    int bad = 0;
    if (failures) {
        fprintf(stderr, "FAIL: %ld starts or stops did not succeed\n", failures);
        bad = 1;
    }
    if (as.entries > 2 * rs.entries || as.capacity > 2 * rs.capacity) {
        fprintf(stderr, "FAIL: index not within 2x of the reference\n");
        bad = 1;
    }
    if (rss && rss_distinct > 2 * rss_ref) {
        fprintf(stderr, "FAIL: peak RSS past 2x of the reference's\n");
        bad = 1;
    }
    reki_rt_free(rt);
    printf("%s\n", bad ? "FAILED" : "passed");
    return bad;
}

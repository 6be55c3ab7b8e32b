/*
 * Stress test of the exit transition, pinning a bug reki-torture found: a
 * killed actor's terminate could run while reki_alive(its pid) was still
 * true and its registry entry still named it, so a lookup that began after
 * terminate returned could return the dead pid (reki__proc_exit published
 * the exit reason before it killed the pid and marked the entry, and the
 * exit path keyed off the reason).
 *
 * Threads start busy actors (each handle re-sends its message to itself, so
 * the actor is always running or runnable), a registered one and a batch of
 * loose ones, and end them with reki_kill or reki_stop.  Each terminate checks that its pid is dead and that a lookup
 * of its key does not return it; after terminate returns, the next lookup
 * of the key by the thread that ended it must not return it either.
 *
 * usage: stress_exit_transition [--threads N] [--seconds S] [--seed X]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reki/reki.h"

#define NKEYS 16

static reki_rt_t *rt;
static reki_registry_t *reg;
static atomic_long violations, terminates, cycles;
static atomic_int stop;

struct actor {
    reki_pid_t self;
    int key;          /* -1: not registered */
    atomic_int *done; /* set when terminate has run */
};

static void key_of(int k, char *buf)
{
    snprintf(buf, 16, "key-%02d", k);
}

static void violation(const char *what, reki_pid_t pid)
{
    if (atomic_fetch_add(&violations, 1) < 10)
        fprintf(stderr, "VIOLATION: %s (pid %#llx)\n", what, (unsigned long long)pid);
}

static int init(reki_pid_t self, void *arg, void **state)
{
    struct actor *a = arg;
    a->self = self;
    *state = a;
    return 0;
}

static reki_next_t handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    if (reki_send(rt, self, msg) != REKI_OK)
        free(msg); /* exited meanwhile: the message is still ours */
    return REKI_CONTINUE;
}

static void terminate(void *state, int reason)
{
    struct actor *a = state;
    char key[16];
    reki_pid_t seen = 0;
    (void)reason;
    if (reki_alive(rt, a->self))
        violation("terminate ran while reki_alive(pid) was true", a->self);
    if (a->key >= 0) {
        key_of(a->key, key);
        if (reki_lookup(reg, key, strlen(key), &seen) == REKI_OK && seen == a->self)
            violation("terminate ran while a lookup of its key returned it", a->self);
    }
    atomic_store(a->done, 1);
    atomic_fetch_add(&terminates, 1);
    free(a);
}

static void drop(void *msg)
{
    free(msg);
}

static const reki_behavior_t busy = {init, handle, terminate, drop};

struct start_arg {
    int key;
    atomic_int *done;
};

static int start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct start_arg *s = arg;
    struct actor *a = calloc(1, sizeof(*a));
    (void)key;
    (void)keylen;
    if (a == NULL)
        return REKI_ENOMEM;
    a->key = s->key;
    a->done = s->done;
    int rc = reki_spawn(r, &busy, a, NULL, out);
    if (rc != REKI_OK)
        free(a);
    return rc;
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define BATCH 32 /* loose actors ended per cycle besides the registered one */

static void kick(reki_pid_t pid)
{
    int *msg = malloc(sizeof(*msg));
    if (msg != NULL && reki_send(rt, pid, msg) != REKI_OK)
        free(msg);
}

static void one_cycle(uint64_t *rng)
{
    int k = (int)(next(rng) % NKEYS);
    char key[16];
    atomic_int done[BATCH + 1] = {0};
    struct start_arg s = {k, &done[BATCH]};
    reki_pid_t pid = 0, loose[BATCH];
    key_of(k, key);
    /* Many busy actors at once: a kill is more often preempted mid-way. */
    for (int i = 0; i < BATCH; i++) {
        struct start_arg ls = {-1, &done[i]};
        if (start(rt, "", 0, &ls, &loose[i]) != REKI_OK)
            abort();
        kick(loose[i]);
    }
    bool keyed = reki_lookup_or_start(reg, key, strlen(key), start, &s, -1, &pid) == REKI_STARTED;
    if (keyed) {
        kick(pid);
        if (next(rng) & 1)
            reki_kill(rt, pid);
        else
            reki_stop(reg, key, strlen(key));
    } else {
        atomic_store(&done[BATCH], 1); /* another thread owns the key now */
    }
    for (int i = 0; i < BATCH; i++)
        reki_kill(rt, loose[i]);
    for (int i = 0; i <= BATCH; i++)
        while (!atomic_load(&done[i]))
            sched_yield();
    /* Once terminate has returned, no lookup may return the pid. */
    reki_pid_t seen = 0;
    if (keyed && reki_lookup(reg, key, strlen(key), &seen) == REKI_OK && seen == pid)
        violation("a lookup after terminate returned the dead pid", pid);
    atomic_fetch_add(&cycles, 1);
}

static void *run(void *arg)
{
    uint64_t rng = *(uint64_t *)arg;
    while (!atomic_load(&stop))
        one_cycle(&rng);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 4, seconds = 3;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = (unsigned)strtoul(argv[i + 1], NULL, 0);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = (unsigned)strtoul(argv[i + 1], NULL, 0);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 0);
    }
    if (threads == 0 || threads > 64) {
        fprintf(stderr, "usage: %s [--threads 1..64] [--seconds S] [--seed X]\n", argv[0]);
        return 2;
    }
    printf("stress_exit_transition: seed %#llx threads %u seconds %u\n", (unsigned long long)seed,
           threads, seconds);
    reki_rt_opts_t o = {2};
    if (reki_rt_new(&o, &rt) != REKI_OK || reki_registry_new(rt, NULL, &reg) != REKI_OK)
        return 2;
    pthread_t tid[64];
    uint64_t seeds[64];
    for (unsigned i = 0; i < threads; i++) {
        seeds[i] = (seed ^ (0x9e3779b97f4a7c15ull * (i + 1))) | 1;
        pthread_create(&tid[i], NULL, run, &seeds[i]);
    }
    struct timespec ts = {(time_t)seconds, 0};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    reki_registry_free(reg);
    reki_rt_free(rt);
    printf("stress_exit_transition: %ld cycles, %ld terminates, %ld violations\n",
           atomic_load(&cycles), atomic_load(&terminates), atomic_load(&violations));
    return atomic_load(&violations) == 0 && atomic_load(&cycles) > 0 ? 0 : 1;
}

/*
 * Lost wake-ups in the worker pool (lib/runtime/sched.c): plain threads send to
 * actors that are idle most of the time, so that workers go to sleep between
 * messages and every send may have to wake one.  Each message must be
 * handled within a bound; one that waits past it means a push left a proc
 * queued while every worker slept (found by review in the coalesced wake-up
 * of 0.2: a push's ec_seq bump read as the value to sleep on).  With
 * REKI_DEBUG_YIELD the window is widened by yields in idle_wait and push.
 *
 *   stress_wakeups [--threads N] [--seconds S] [--seed X] [--workers W]
 */
#include <reki/reki.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define BOUND_MS 2000 /* generous: a sanitizer build on a loaded machine */
#define ACTORS 16

static reki_rt_t *rt;
static reki_pid_t actors[ACTORS];
static atomic_long handled, late;
static atomic_int stop_flag;
static unsigned seconds = 4, threads = 6, workers = 2, seed = 1;

struct msg {
    atomic_int done;
};

static reki_next_t handle(void *state, void *m, reki_pid_t self)
{
    (void)state;
    (void)self;
    atomic_store_explicit(&((struct msg *)m)->done, 1, memory_order_release);
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return REKI_CONTINUE;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *sender(void *arg)
{
    unsigned r = (unsigned)(uintptr_t)arg;
    struct msg m;
    while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        atomic_init(&m.done, 0);
        r = r * 1103515245u + 12345u;
        if (reki_send(rt, actors[(r >> 8) % ACTORS], &m) != REKI_OK) {
            fprintf(stderr, "stress_wakeups: send failed\n");
            exit(1);
        }
        double t0 = now_ms();
        while (!atomic_load_explicit(&m.done, memory_order_acquire)) {
            if (now_ms() - t0 > BOUND_MS) {
                fprintf(stderr,
                        "stress_wakeups: a message waited over %d ms: lost wake-up (seed %u)\n",
                        BOUND_MS, seed);
                atomic_fetch_add(&late, 1);
                exit(1); /* rt_free would hang too: nothing more to learn */
            }
            usleep(20 + (r >> 20) % 200); /* let the workers go to sleep */
        }
        if ((r >> 12) % 4 == 0)
            usleep((r >> 16) % 500);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--threads") == 0)
            threads = v;
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = v;
        else if (strcmp(argv[i], "--seed") == 0)
            seed = v;
        else if (strcmp(argv[i], "--workers") == 0)
            workers = v;
    }
    printf("stress_wakeups: threads %u workers %u seconds %u seed %u\n", threads, workers, seconds,
           seed);
    reki_rt_opts_t o = {.workers = workers};
    if (reki_rt_new(&o, &rt) != REKI_OK)
        return 1;
    static const reki_behavior_t b = {.handle = handle};
    for (int i = 0; i < ACTORS; i++)
        if (reki_spawn(rt, &b, NULL, NULL, &actors[i]) != REKI_OK)
            return 1;
    pthread_t t[64];
    threads = threads > 64 ? 64 : threads;
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, sender, (void *)(uintptr_t)(seed * 7919u + i));
    sleep(seconds);
    atomic_store(&stop_flag, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    reki_rt_free(rt);
    printf("stress_wakeups: %ld messages handled, none late\n", atomic_load(&handled));
    return atomic_load(&late) ? 1 : 0;
}

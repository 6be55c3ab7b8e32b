/*
 * reki_rt_free hung in pthread_join of the timer thread: the thread checked
 * `stop` (not yet set), then read its wake word after reki_rt_free had set
 * stop and bumped the word, and slept on the bumped value for good.  Found
 * by the fuzzer (a runtime created and freed at once).  Here: many runtimes
 * created and freed at once, from several threads, each free bounded.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <reki/reki.h>

static atomic_long freed;

static void *churn(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        reki_rt_t *rt;
        reki_rt_opts_t o = {1};
        cr_assert_eq(reki_rt_new(&o, &rt), REKI_OK);
        reki_rt_free(rt);
        atomic_fetch_add(&freed, 1);
    }
    return NULL;
}

Test(rt_free, never_misses_the_timer_threads_stop, .timeout = 300.0)
{
    const char *s = getenv("REKI_TEST_SCALE");
    double scale = s ? atof(s) : 1.0;
    long per = (long)(1500 * scale) + 20;
    enum { THREADS = 3 };
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn, (void *)(intptr_t)per), 0);
    /* Progress watchdog: a hung free stops the count for good. */
    long last = -1;
    for (int idle = 0; atomic_load(&freed) < per * THREADS;) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        long now = atomic_load(&freed);
        idle = now == last ? idle + 1 : 0;
        last = now;
        cr_assert_lt(idle, 200, "no runtime freed for 20 s: reki_rt_free hangs (%ld of %ld)", now,
                     per * THREADS);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
}

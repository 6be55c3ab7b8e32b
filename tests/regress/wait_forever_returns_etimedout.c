/*
 * Bug: reki_lookup_or_start(..., timeout_ms = -1, ...) returns
 * REKI_ETIMEDOUT.
 *
 * lib/registry/claim.c wait_change() loops while the entry word equals the state the
 * caller saw (`seen`), then decides its result by loading the word a second
 * time: `return word == seen ? REKI_ETIMEDOUT : REKI_OK`.  The states a
 * caller waits on, STARTING and EXITING, carry no generation, so the word can
 * leave `seen` and come back between the two loads: STARTING -> FREE (the
 * start failed, or its actor already exited) -> STARTING (the next caller
 * claimed the key).  The loop saw the change and ended, the second load sees
 * `seen` again, and a caller that asked to wait forever (no deadline: the
 * futex wait never times out) gets REKI_ETIMEDOUT; one with a timeout gets
 * it before its deadline.  tests/unit/test_contention
 * churn_never_two_live_actors_per_key hits it under TSan (errors != 0,
 * rc -110).
 *
 * Here 8 threads call reki_lookup_or_start on one key whose start always
 * fails at once, with timeout -1, for a few seconds.  Every call must return
 * the start's error; REKI_ETIMEDOUT is the bug.  (Probabilistic: the window
 * is two adjacent loads; on a loaded 2-core machine it shows within seconds,
 * faster with -DREKI_SANITIZE=thread.)
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "reki/reki.h"

#define THREADS 8
#define SECONDS 8

static reki_registry_t *reg;
static atomic_int stop;
static atomic_long timeouts, other, calls;

static int failing_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)rt;
    (void)key;
    (void)keylen;
    (void)arg;
    (void)out;
    return -5;
}

static void *hammer(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        reki_pid_t pid;
        int rc = reki_lookup_or_start(reg, "k", 1, failing_start, NULL, -1, &pid);
        atomic_fetch_add(&calls, 1);
        if (rc == REKI_ETIMEDOUT)
            atomic_fetch_add(&timeouts, 1);
        else if (rc != -5)
            atomic_fetch_add(&other, 1);
    }
    return NULL;
}

Test(regress, wait_forever_never_times_out, .timeout = 120.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int s = 0; s < SECONDS * 10 && atomic_load(&timeouts) == 0; s++)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    reki_registry_free(reg);
    reki_rt_free(rt);
    cr_assert(atomic_load(&timeouts) == 0 && atomic_load(&other) == 0,
              "%ld of %ld calls with timeout_ms = -1 returned REKI_ETIMEDOUT (%ld other "
              "results that are not the start's error)",
              atomic_load(&timeouts), atomic_load(&calls), atomic_load(&other));
}

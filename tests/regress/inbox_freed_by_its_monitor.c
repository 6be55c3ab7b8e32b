/*
 * Bug: a down function that frees the inbox it watches hangs forever.
 *
 * An inbox has no thread: whoever kills its pid (reki_kill, reki_stop of a
 * key it is registered under, reki_registry_free, reki_rt_free) runs its
 * exit path, monitors included, on its own thread (lib/runtime/actor.c
 * reki__kill_pid -> reki__proc_finish).  `finished` is set only after that
 * exit path, monitors included, has returned (reki__inbox_exited).  A down
 * function that calls reki_inbox_free on the inbox whose death it reports
 * (a natural cleanup: "free the subject when its pid dies") enters
 * inbox_release, whose kill finds the pid dead, then waits for `finished`
 * (lib/runtime/inbox.c) -- which its own caller sets after it returns: the thread
 * waits on itself.  Before the change that added the handshake the free
 * went through (the exit path then ran inside a read-side section).
 *
 * Here the inbox is registered under a key and reki_stop(key) runs its exit
 * path; the test fails if reki_stop has not returned within 5 s.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "reki/reki.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static reki_inbox_t *inbox;
static atomic_int in_down;
static atomic_int stop_returned;

static void down_frees_inbox(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    atomic_store(&in_down, 1);
    reki_inbox_free(inbox);
}

static int start_is_inbox(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)r;
    (void)key;
    (void)keylen;
    (void)arg;
    *out = reki_inbox_pid(inbox);
    return 0;
}

static void *stopper(void *arg)
{
    (void)arg;
    reki_stop(reg, "k", 1);
    atomic_store(&stop_returned, 1);
    return NULL;
}

Test(regress, inbox_freed_by_its_own_monitor, .timeout = 30.0)
{
    reki_pid_t pid;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    cr_assert_eq(reki_inbox_new(rt, &inbox), REKI_OK);
    cr_assert_eq(reki_monitor(rt, reki_inbox_pid(inbox), down_frees_inbox, NULL), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "k", 1, start_is_inbox, NULL, -1, &pid), REKI_STARTED);

    pthread_t t;
    pthread_create(&t, NULL, stopper, NULL);
    for (int i = 0; i < 500 && !atomic_load(&stop_returned); i++)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    cr_assert(atomic_load(&in_down), "the down function never ran");
    cr_assert(atomic_load(&stop_returned),
              "reki_stop has not returned after 5 s: the down function's reki_inbox_free "
              "waits for the exit path that is calling it");
    pthread_join(t, NULL);
    reki_registry_free(reg);
    reki_rt_free(rt);
}

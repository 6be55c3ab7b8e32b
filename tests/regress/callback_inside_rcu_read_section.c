/*
 * Bug: user callbacks ran inside RCU read-side sections.
 *
 * reki_foreach called fn inside one; killing an inbox's pid runs the inbox's
 * whole exit path (registry links, monitors' down callbacks) inline, inside
 * reki__kill_pid's read-side section, and so did the shutdown sweeps that kill
 * inbox pids: reki_rt_free's (it kills every live pid) and
 * reki_registry_free's.  The RCU flavour (urcu-bp) is process-wide, so a
 * callback that blocks stalls every grace period in the process: pid slots
 * and registry memory are not reclaimed meanwhile, and anything that waits
 * for RCU callbacks waits for the callback.  reki_rt_free of a second,
 * unrelated runtime (it ends with rcu_barrier) then cannot return, and a
 * callback that waits for that deadlocks.
 *
 * Each deadlock test parks one callback on a semaphore that is posted only
 * after reki_rt_free of another runtime returned: with the bug it never
 * returns and the test fails by its timeout.  The last test counts pid slots:
 * while a callback is parked, spawned and killed actors' slots must still be
 * recycled (they are, once grace periods pass), instead of each spawn taking
 * a fresh one.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#include "reki/reki.h"

/* A pid's low 26 bits are its slot index (lib/runtime/runtime.h, REKI__IDX_BITS). */
#define PID_INDEX(pid) ((pid) & ((UINT64_C(1) << 26) - 1))

static sem_t entered; /* the callback is running (inside the library) */
static sem_t release; /* the callback may return */

static void sems_init(void)
{
    cr_assert_eq(sem_init(&entered, 0, 0), 0);
    cr_assert_eq(sem_init(&release, 0, 0), 0);
}

static void sem_wait_all(sem_t *s)
{
    while (sem_wait(s) != 0)
        ;
}

static reki_next_t ignore(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static const reki_behavior_t ignorer = {.handle = ignore};

static int start_actor(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &ignorer, NULL, NULL, out);
}

/* A runtime unrelated to the parked callback: create it, spawn and kill a
 * few actors, free it.  reki_rt_free waits for RCU callbacks (rcu_barrier),
 * so it returns only if grace periods can complete. */
static void free_unrelated_runtime(void)
{
    reki_rt_t *rt2;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt2), REKI_OK);
    for (int i = 0; i < 4; i++) {
        reki_pid_t pid;
        cr_assert_eq(reki_spawn(rt2, &ignorer, NULL, NULL, &pid), REKI_OK);
        cr_assert_eq(reki_kill(rt2, pid), REKI_OK);
    }
    reki_rt_free(rt2);
}

/* The callbacks: say they are in, wait until told to return. */
static int parked_visit(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    (void)arg;
    sem_post(&entered);
    sem_wait_all(&release);
    return 0;
}

static void parked_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    sem_post(&entered);
    sem_wait_all(&release);
}

static void *foreach_thread(void *arg)
{
    reki_registry_t *reg = arg;
    return (void *)(intptr_t)reki_foreach(reg, parked_visit, NULL);
}

struct kill_arg {
    reki_rt_t *rt;
    reki_pid_t pid;
};

static void *kill_thread(void *arg)
{
    struct kill_arg *k = arg;
    return (void *)(intptr_t)reki_kill(k->rt, k->pid);
}

static void *rt_free_thread(void *arg)
{
    reki_rt_free(arg);
    return NULL;
}

static void *registry_free_thread(void *arg)
{
    reki_registry_free(arg);
    return NULL;
}

/* Park a callback on another thread, run free_unrelated_runtime, release. */
static void park_and_free_unrelated(void *(*fn)(void *), void *arg, void **ret)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    sem_wait_all(&entered);
    free_unrelated_runtime(); /* with the bug: never returns */
    sem_post(&release);
    cr_assert_eq(pthread_join(t, ret), 0);
}

Test(regress, foreach_fn_does_not_stall_grace_periods, .timeout = 20.0)
{
    sems_init();
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_pid_t pid;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "k", 1, start_actor, NULL, -1, &pid), REKI_STARTED);
    void *ret;
    park_and_free_unrelated(foreach_thread, reg, &ret);
    cr_assert_eq((intptr_t)ret, REKI_OK);
    reki_registry_free(reg);
    reki_rt_free(rt);
}

Test(regress, inbox_kill_down_does_not_stall_grace_periods, .timeout = 20.0)
{
    sems_init();
    reki_rt_t *rt;
    reki_inbox_t *in;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    struct kill_arg k = {rt, reki_inbox_pid(in)};
    cr_assert_eq(reki_monitor(rt, k.pid, parked_down, NULL), REKI_OK);
    void *ret;
    park_and_free_unrelated(kill_thread, &k, &ret);
    cr_assert_eq((intptr_t)ret, REKI_OK);
    reki_inbox_free(in);
    reki_rt_free(rt);
}

Test(regress, rt_free_sweep_down_does_not_stall_grace_periods, .timeout = 20.0)
{
    sems_init();
    reki_rt_t *rt;
    reki_inbox_t *in;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    cr_assert_eq(reki_monitor(rt, reki_inbox_pid(in), parked_down, NULL), REKI_OK);
    /* reki_rt_free kills the inbox's pid in its sweep, then frees the inbox. */
    park_and_free_unrelated(rt_free_thread, rt, NULL);
}

static int start_inbox(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)rt;
    (void)key;
    (void)keylen;
    *out = reki_inbox_pid(arg);
    return 0;
}

Test(regress, registry_free_sweep_down_does_not_stall_grace_periods, .timeout = 20.0)
{
    sems_init();
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_inbox_t *in;
    reki_pid_t pid;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "k", 1, start_inbox, in, -1, &pid), REKI_STARTED);
    cr_assert_eq(pid, reki_inbox_pid(in));
    cr_assert_eq(reki_monitor(rt, pid, parked_down, NULL), REKI_OK);
    /* reki_registry_free stops (kills) every registered pid, the inbox's too. */
    park_and_free_unrelated(registry_free_thread, reg, NULL);
    reki_inbox_free(in);
    reki_rt_free(rt);
}

/* ------------------------------------------------- pid slot recycling -- */

#define CYCLES 200000

static sem_t down_sem;

static void count_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    sem_post(&down_sem);
}

Test(regress, pid_slots_recycled_while_foreach_fn_runs, .timeout = 30.0)
{
    sems_init();
    cr_assert_eq(sem_init(&down_sem, 0, 0), 0);
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_pid_t pid;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 2}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "k", 1, start_actor, NULL, -1, &pid), REKI_STARTED);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, foreach_thread, reg), 0);
    sem_wait_all(&entered);

    /* Spawn, kill and wait for the actor's exit path (its monitor fires after
     * terminate), CYCLES times.  At most one of these actors lives at a time,
     * so with slots recycled after each grace period the indexes stay low;
     * with the bug no grace period completes and every spawn takes a new
     * slot. */
    uint64_t max_idx = 0;
    for (int i = 0; i < CYCLES; i++) {
        cr_assert_eq(reki_spawn(rt, &ignorer, NULL, NULL, &pid), REKI_OK);
        if (PID_INDEX(pid) > max_idx)
            max_idx = PID_INDEX(pid);
        cr_assert_eq(reki_monitor(rt, pid, count_down, NULL), REKI_OK);
        cr_assert_eq(reki_kill(rt, pid), REKI_OK);
        sem_wait_all(&down_sem);
    }
    sem_post(&release);
    void *ret;
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, REKI_OK);
    reki_registry_free(reg);
    reki_rt_free(rt);
    cr_assert_lt(max_idx, CYCLES / 2,
                 "largest pid slot index %llu after %d spawn+kill cycles while a foreach fn "
                 "ran: killed actors' slots were not recycled",
                 (unsigned long long)max_idx, CYCLES);
}

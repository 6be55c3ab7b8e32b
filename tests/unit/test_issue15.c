/*
 * gen_registry issue #15, inverted.  In gen_registry a worker that exits
 * stays in the ETS table until the registry process handles the EXIT
 * signal, so a lookup_or_start made right after the exit returns the dead
 * pid (99 % of the time in the anchor measurements).  Here an actor ends
 * itself (REKI_STOP, REKI_CRASH, killing itself) or is killed, the caller
 * observes the exit (reki_alive false, or a monitor fired), and the very
 * next reki_lookup_or_start must start a new actor: zero stale returns over
 * 10,000 rounds.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static struct probe p;

static void setup(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, &reg), REKI_OK);
}

static void teardown(void)
{
    t_fixture_down(&rt, &reg);
}

TestSuite(issue15, .init = setup, .fini = teardown, .timeout = 600.0);

enum observe { BY_ALIVE, BY_MONITOR };

struct tally {
    long rounds, stale, stale_lookups, not_started, dead_returned, errors;
};

static void flag_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    atomic_store((atomic_int *)arg, 1);
}

/* Ends `pid` by round-robin means and waits until the exit is observed. */
static bool end_and_observe(reki_pid_t pid, long round, enum observe how)
{
    atomic_int down = 0;
    if (how == BY_MONITOR && reki_monitor(rt, pid, flag_down, &down) != REKI_OK)
        return false;
    int rc;
    switch (round % 4) {
    case 0: rc = t_send(rt, pid, T_STOP, 0); break;
    case 1: rc = t_send(rt, pid, T_CRASH, 0); break;
    case 2: rc = t_send(rt, pid, T_KILL_SELF, 0); break;
    default: rc = reki_kill(rt, pid); break;
    }
    if (rc != REKI_OK)
        return false;
    bool seen;
    if (how == BY_MONITOR)
        T_WAIT_UNTIL(seen, atomic_load(&down) != 0);
    else
        T_WAIT_UNTIL(seen, !reki_alive(rt, pid));
    return seen;
}

static void rounds_on_key(const char *key, size_t keylen, long rounds, enum observe how,
                          struct tally *t)
{
    struct start_ctx s;
    start_ctx_init(&s, rt, &p);
    reki_pid_t pid;
    if (reki_lookup_or_start(reg, key, keylen, t_start, &s, -1, &pid) != REKI_STARTED) {
        t->errors++;
        return;
    }
    for (long r = 0; r < rounds; r++) {
        if (!end_and_observe(pid, r, how)) {
            t->errors++;
            return;
        }
        reki_pid_t got = 0;
        if (reki_lookup(reg, key, keylen, &got) == REKI_OK && got == pid)
            t->stale_lookups++;
        int rc = reki_lookup_or_start(reg, key, keylen, t_start, &s, -1, &got);
        t->rounds++;
        if (rc != REKI_OK && rc != REKI_STARTED) {
            t->errors++;
            return;
        }
        t->stale += got == pid;
        t->not_started += rc != REKI_STARTED;
        t->dead_returned += !reki_alive(rt, got);
        pid = got;
    }
}

static void check(const struct tally *t, long rounds)
{
    cr_assert_eq(t->errors, 0, "an operation failed");
    cr_assert_eq(t->rounds, rounds);
    cr_assert_eq(t->stale, 0, "%ld of %ld lookup_or_start calls returned the dead pid", t->stale,
                 t->rounds);
    cr_assert_eq(t->stale_lookups, 0, "%ld lookups returned the dead pid", t->stale_lookups);
    cr_assert_eq(t->not_started, 0, "%ld calls found a live actor where none could be",
                 t->not_started);
    cr_assert_eq(t->dead_returned, 0, "%ld calls returned a pid that was not alive",
                 t->dead_returned);
}

Test(issue15, exit_observed_by_reki_alive)
{
    long rounds = t_scaled(10000, 200);
    struct tally t = {0};
    rounds_on_key("worker", 6, rounds, BY_ALIVE, &t);
    check(&t, rounds);
}

Test(issue15, exit_observed_by_a_monitor)
{
    long rounds = t_scaled(10000, 200);
    struct tally t = {0};
    rounds_on_key("worker", 6, rounds, BY_MONITOR, &t);
    check(&t, rounds);
    cr_assert_eq(t_ldl(&p.violations), 0);
}

/* The same from more threads than cores, each on its own key. */
struct job {
    long rounds;
    enum observe how;
    char key[16];
    struct tally t;
};

static void *job_thread(void *arg)
{
    struct job *j = arg;
    rounds_on_key(j->key, strlen(j->key), j->rounds, j->how, &j->t);
    return NULL;
}

Test(issue15, many_threads_each_on_its_own_key)
{
    enum { THREADS = 6 };
    long per = t_scaled(10000, 200) / THREADS;
    struct job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct job){.rounds = per, .how = i % 2 ? BY_MONITOR : BY_ALIVE};
        t_key(jobs[i].key, sizeof jobs[i].key, i);
    }
    t_run_threads(THREADS, job_thread, jobs, sizeof jobs[0]);
    for (int i = 0; i < THREADS; i++)
        check(&jobs[i].t, per);
}

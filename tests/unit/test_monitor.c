/*
 * Monitors: each fires exactly once, with the exit reason, after terminate
 * has returned; a monitor on a dead pid is refused and never fires.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "support.h"

static reki_rt_t *rt;
static struct probe p;

static void setup(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, NULL), REKI_OK);
}

static void teardown(void)
{
    t_fixture_down(&rt, NULL);
}

TestSuite(monitor, .init = setup, .fini = teardown, .timeout = 120.0);

/* A monitor that checks, when it fires, that terminate already returned. */
struct watch {
    atomic_int terminated;
    atomic_int fired;
    atomic_int early; /* fired before terminate returned */
    int reason;
    reki_pid_t pid;
};

static void watch_down(reki_pid_t pid, int reason, void *arg)
{
    struct watch *w = arg;
    if (atomic_load(&w->terminated) == 0)
        atomic_store(&w->early, 1);
    w->reason = reason;
    w->pid = pid;
    atomic_fetch_add(&w->fired, 1);
}

static void spawn_watched(struct watch *w, unsigned flags, reki_pid_t *pid)
{
    struct counter_args a = {.rt = rt, .probe = &p, .terminated = &w->terminated};
    cr_assert_eq(t_counter_spawn_args(&a, flags, pid), REKI_OK);
    cr_assert_eq(reki_monitor(rt, *pid, watch_down, w), REKI_OK);
}

static void expect_down(struct watch *w, reki_pid_t pid, int reason)
{
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->fired) >= 1);
    cr_assert(ok, "monitor never fired");
    cr_assert_eq(t_ldi(&w->early), 0, "monitor fired before terminate returned");
    cr_assert_eq(w->reason, reason, "reason %d, expected %d", w->reason, reason);
    cr_assert_eq(w->pid, pid, "monitor got another pid");
}

Test(monitor, fires_once_with_each_reason)
{
    const struct {
        int kind, reason;
    } cases[] = {{T_STOP, REKI_EXIT_NORMAL},
                 {T_CRASH, REKI_EXIT_ABNORMAL},
                 {T_ODD, REKI_EXIT_ABNORMAL},
                 {T_KILL_SELF, REKI_EXIT_KILLED},
                 {-1, REKI_EXIT_KILLED}};
    enum { N = sizeof cases / sizeof cases[0] };
    static struct watch w[2][N];
    for (unsigned f = 0; f < 2; f++)
        for (int i = 0; i < N; i++) {
            reki_pid_t pid;
            spawn_watched(&w[f][i], f ? REKI_SPAWN_DEDICATED : 0, &pid);
            if (cases[i].kind < 0)
                cr_assert_eq(reki_kill(rt, pid), REKI_OK);
            else
                cr_assert_eq(t_send(rt, pid, cases[i].kind, 0), REKI_OK);
            expect_down(&w[f][i], pid, cases[i].reason);
        }
    reki_rt_free(rt);
    rt = NULL;
    for (unsigned f = 0; f < 2; f++)
        for (int i = 0; i < N; i++)
            cr_assert_eq(t_ldi(&w[f][i].fired), 1, "case %d fired %d times", i,
                         t_ldi(&w[f][i].fired));
}

Test(monitor, fires_at_rt_free_with_shutdown)
{
    static struct watch w[8];
    reki_pid_t pids[8];
    for (int i = 0; i < 8; i++)
        spawn_watched(&w[i], i % 2 ? REKI_SPAWN_DEDICATED : 0, &pids[i]);
    reki_rt_free(rt);
    rt = NULL;
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(t_ldi(&w[i].fired), 1, "rt_free must fire monitors before returning");
        cr_assert_eq(t_ldi(&w[i].early), 0);
        cr_assert_eq(w[i].reason, REKI_EXIT_SHUTDOWN);
        cr_assert_eq(w[i].pid, pids[i]);
    }
}

Test(monitor, many_monitors_on_one_pid_each_fire_once)
{
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    enum { N = 50 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_CRASH, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == N);
    cr_assert(ok, "%ld of %d monitors fired", t_ldl(&p.downs), N);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), N);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_ABNORMAL]), N);
}

Test(monitor, on_a_dead_pid_is_edead_and_never_fires)
{
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, !reki_alive(rt, pid));
    cr_assert(ok);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_EDEAD);
    T_WAIT_UNTIL(ok, atomic_load(&p.terminates) == 1);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_EDEAD);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), 0);
}

/* Monitors added while the actor dies: every accepted one fires once, every
 * refused one never. */
struct mon_arg {
    reki_pid_t pid;
    long accepted, refused, other;
    atomic_int *go;
};

/* Each thread's monitors are bounded: under an unfair scheduler (valgrind's
 * default one) the dying actor may not run for seconds, and an unbounded
 * loop of accepted monitors then grows until the OOM killer ends the test.
 * A thread that reaches the bound waits for the death and checks that the
 * pid then refuses. */
#define MON_MAX_PER_THREAD 20000

static void *mon_thread(void *arg)
{
    struct mon_arg *a = arg;
    t_wait_flag(a->go);
    while (a->accepted < MON_MAX_PER_THREAD) {
        int rc = reki_monitor(rt, a->pid, t_down, &p);
        if (rc == REKI_OK) {
            a->accepted++;
        } else if (rc == REKI_EDEAD) {
            a->refused++;
            return NULL;
        } else {
            a->other++;
            return NULL;
        }
    }
    bool dead;
    T_WAIT_UNTIL(dead, !reki_alive(rt, a->pid));
    int rc = dead ? reki_monitor(rt, a->pid, t_down, &p) : REKI_ETIMEDOUT;
    if (rc == REKI_EDEAD)
        a->refused++;
    else
        a->other++;
    return NULL;
}

Test(monitor, monitors_racing_with_exit_fire_exactly_once, .timeout = 300.0)
{
    enum { THREADS = 6 };
    long rounds = t_scaled(200, 10), accepted = 0;
    for (long r = 0; r < rounds; r++) {
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, r % 2 ? REKI_SPAWN_DEDICATED : 0, &pid), REKI_OK);
        atomic_int go = 0;
        struct mon_arg args[THREADS];
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++) {
            args[i] = (struct mon_arg){.pid = pid, .go = &go};
            cr_assert_eq(pthread_create(&t[i], NULL, mon_thread, &args[i]), 0);
        }
        atomic_store(&go, 1);
        if (r % 3 == 0)
            cr_assert_eq(reki_kill(rt, pid), REKI_OK);
        else
            cr_assert_eq(t_send(rt, pid, r % 3 == 1 ? T_STOP : T_CRASH, 0), REKI_OK);
        for (int i = 0; i < THREADS; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(args[i].other, 0);
            accepted += args[i].accepted;
        }
    }
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == accepted);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), accepted, "accepted %ld monitors, %ld fired", accepted,
                 t_ldl(&p.downs));
    cr_assert_eq(t_ldl(&p.bad_reasons), 0);
}

/* A monitor may call back into the runtime: here it reports to an inbox. */
struct report {
    reki_rt_t *rt;
    reki_pid_t to;
};

static void report_down(reki_pid_t pid, int reason, void *arg)
{
    struct report *r = arg;
    long *v = malloc(sizeof *v);
    *v = (long)(pid & 0xffff) * 10 + reason;
    if (reki_send(r->rt, r->to, v) != REKI_OK)
        free(v);
}

Test(monitor, monitor_callback_may_call_into_the_runtime)
{
    reki_inbox_t *in = t_inbox(rt);
    struct report r = {rt, reki_inbox_pid(in)};
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, report_down, &r), REKI_OK);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    void *got;
    cr_assert_eq(reki_inbox_recv(in, &got, t_wait_ms()), REKI_OK);
    cr_assert_eq(*(long *)got, (long)(pid & 0xffff) * 10 + REKI_EXIT_KILLED);
    free(got);
    reki_inbox_free(in);
}

Test(monitor, inbox_free_fires_monitors_once)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    reki_pid_t pid = reki_inbox_pid(in);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    reki_inbox_free(in);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 2);
    cr_assert(ok);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_EDEAD);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), 2);
    cr_assert_eq(t_ldl(&p.bad_reasons), 0);
}

/* ------------------------------------------------------- demonitor -- */

Test(monitor, a_cancelled_monitor_never_fires)
{
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    enum { N = 10 };
    reki_monitor_ref_t ref[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_monitor_ex(rt, pid, t_down, &p, &ref[i]), REKI_OK);
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(reki_demonitor(rt, &ref[i]), REKI_OK);
    cr_assert_eq(reki_demonitor(rt, &ref[0]), REKI_ENOTFOUND, "cancelled twice");
    cr_assert_eq(reki_demonitor(rt, NULL), REKI_EINVAL);
    cr_assert_eq(reki_demonitor(NULL, &ref[1]), REKI_EINVAL);
    cr_assert_eq(t_send(rt, pid, T_CRASH, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.terminates) == 1);
    cr_assert(ok);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), N / 2, "%ld monitors fired, %d were left", t_ldl(&p.downs),
                 N / 2);
    /* After the exit: the others fired and cannot be cancelled. */
}

Test(monitor, a_fired_monitor_cannot_be_cancelled)
{
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    reki_monitor_ref_t ref;
    cr_assert_eq(reki_monitor_ex(rt, pid, t_down, &p, &ref), REKI_OK);
    cr_assert_neq(ref.id, 0);
    cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(reki_demonitor(rt, &ref), REKI_ENOTFOUND);
    reki_monitor_ref_t none = {pid, 0};
    cr_assert_eq(reki_monitor_ex(rt, pid, t_down, &p, &none), REKI_EDEAD);
    cr_assert_eq(none.id, 0, "*out set on failure");
}

struct canceller {
    reki_pid_t pid;
    long monitors, cancelled;
    atomic_int *go;
};

static void *cancel_thread(void *arg)
{
    struct canceller *c = arg;
    t_wait_flag(c->go);
    for (;;) {
        reki_monitor_ref_t ref;
        if (reki_monitor_ex(rt, c->pid, t_down, &p, &ref) != REKI_OK)
            break; /* the actor died */
        c->monitors++;
        if (reki_demonitor(rt, &ref) == REKI_OK)
            c->cancelled++;
        if (c->monitors >= t_scaled(20000, 200))
            break;
    }
    return NULL;
}

/* Monitors set and cancelled while the actor dies: each fires exactly once
 * unless its cancellation returned REKI_OK. */
Test(monitor, cancellations_racing_with_exit_fire_the_rest_exactly_once)
{
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    enum { THREADS = 4 };
    atomic_int go = 0;
    struct canceller c[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (struct canceller){.pid = pid, .go = &go};
        cr_assert_eq(pthread_create(&t[i], NULL, cancel_thread, &c[i]), 0);
    }
    atomic_store(&go, 1);
    t_sleep_ms(2);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    long monitors = 0, cancelled = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        monitors += c[i].monitors;
        cancelled += c[i].cancelled;
    }
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), monitors - cancelled,
                 "%ld monitors set, %ld cancelled, %ld fired", monitors, cancelled,
                 t_ldl(&p.downs));
}

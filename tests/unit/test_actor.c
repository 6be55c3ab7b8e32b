/*
 * One actor's life: spawn, init, handle, exit reasons, terminate, and what
 * happens to messages queued behind an exit.
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

TestSuite(actor, .init = setup, .fini = teardown, .timeout = 60.0);

Test(actor, spawn_send_handle)
{
    reki_inbox_t *in = t_inbox(rt);
    cr_assert_not_null(in);
    reki_pid_t pid = 0;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    cr_assert_neq(pid, 0);
    cr_assert(reki_alive(rt, pid));
    cr_assert_eq(t_ldl(&p.inits), 1, "init runs inside reki_spawn");
    for (long v = 1; v <= 3; v++)
        cr_assert_eq(t_send(rt, pid, T_INCR, v), REKI_OK);
    cr_assert_eq(t_counter_get(rt, pid, in), 6);
    cr_assert_eq(t_ldl(&p.handled), 4);
    reki_inbox_free(in);
}

Test(actor, init_error_is_what_spawn_returns)
{
    const int codes[] = {-77, REKI_ENOMEM, REKI_EINVAL, -1};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        struct counter_args a = {.rt = rt, .probe = &p, .init_error = codes[i]};
        reki_pid_t pid = 42;
        cr_assert_eq(t_counter_spawn_args(&a, 0, &pid), codes[i]);
        cr_assert_eq(pid, 42, "*out written although init failed");
        cr_assert_eq(t_counter_spawn_args(&a, REKI_SPAWN_DEDICATED, &pid), codes[i]);
        cr_assert_eq(pid, 42);
    }
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.terminates), 0, "terminate ran for an actor that never lived");
}

/* init sends to itself, then fails: the queued messages go to drop and
 * nothing else of the actor is seen. */
struct selfsend {
    reki_rt_t *rt;
    int n;
    int result;
    atomic_int *handle_ran_early;
};

static int selfsend_init(reki_pid_t self, void *arg, void **state)
{
    struct selfsend *s = arg;
    for (int i = 0; i < s->n; i++)
        if (t_send(s->rt, self, T_INCR, 1) != REKI_OK)
            atomic_fetch_add(&p.violations, 1);
    *state = arg;
    return s->result;
}

static reki_next_t selfsend_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    atomic_fetch_add(&p.handled, 1);
    free(msg);
    return REKI_CONTINUE;
}

static const reki_behavior_t selfsend_b = {
    .init = selfsend_init, .handle = selfsend_handle, .drop = t_drop};

Test(actor, failed_init_drops_messages_sent_to_self)
{
    struct selfsend s = {.rt = rt, .n = 5, .result = -5};
    reki_pid_t pid = 0;
    cr_assert_eq(reki_spawn(rt, &selfsend_b, &s, NULL, &pid), -5);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.violations), 0, "init could not send to itself");
    cr_assert_eq(t_ldl(&p.handled), 0);
    cr_assert_eq(t_ldl(&p.dropped), 5);
}

Test(actor, positive_init_return_is_success)
{
    struct selfsend s = {.rt = rt, .n = 3, .result = 5};
    reki_pid_t pid = 0;
    cr_assert_eq(reki_spawn(rt, &selfsend_b, &s, NULL, &pid), REKI_OK);
    cr_assert(reki_alive(rt, pid));
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.handled) == 3);
    cr_assert(ok, "messages sent to self in init were not handled");
    cr_assert_eq(t_ldl(&p.dropped), 0);
}

/* Without init, the state is arg. */
static reki_next_t state_is_arg_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    if (state != (void *)&p)
        atomic_fetch_add(&p.violations, 1);
    atomic_fetch_add(&p.handled, 1);
    free(msg);
    return REKI_STOP;
}

Test(actor, without_init_the_state_is_arg)
{
    reki_behavior_t b = {.handle = state_is_arg_handle, .drop = t_drop};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &b, &p, NULL, &pid), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.violations), 0);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_NORMAL]), 1);
}

/* Exit by each means; terminate runs once with the matching reason. */
static void check_exit(int kind, int reason, unsigned flags)
{
    probe_reset(&p);
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, flags, &pid), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    if (kind < 0)
        cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    else
        cr_assert_eq(t_send(rt, pid, kind, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok, "no exit (kind %d, flags %u)", kind, flags);
    cr_assert(!reki_alive(rt, pid));
    cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_EDEAD);
    cr_assert_eq(reki_kill(rt, pid), REKI_EDEAD);
    cr_assert_eq(t_ldl(&p.terminates), 1);
    cr_assert_eq(t_ldl(&p.reasons[reason]), 1, "kind %d: wrong reason", kind);
    cr_assert_eq(t_ldl(&p.down_reasons[reason]), 1);
    cr_assert_eq(t_ldl(&p.bad_reasons), 0);
    cr_assert_eq(t_ldl(&p.violations), 0);
}

Test(actor, terminate_once_with_the_right_reason)
{
    for (unsigned flags = 0; flags <= REKI_SPAWN_DEDICATED; flags += REKI_SPAWN_DEDICATED) {
        check_exit(T_STOP, REKI_EXIT_NORMAL, flags);
        check_exit(T_CRASH, REKI_EXIT_ABNORMAL, flags);
        check_exit(T_ODD, REKI_EXIT_ABNORMAL, flags);
        check_exit(T_KILL_SELF, REKI_EXIT_KILLED, flags);
        check_exit(-1, REKI_EXIT_KILLED, flags);
    }
}

Test(actor, terminate_at_rt_free_is_shutdown)
{
    for (int i = 0; i < 10; i++) {
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, i % 2 ? REKI_SPAWN_DEDICATED : 0, &pid), REKI_OK);
        cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    }
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.terminates), 10);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), 10);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_SHUTDOWN]), 10);
}

/* init queues: GATE, INCR, STOP, then n more; the actor handles three and
 * the n others are dropped once each, before its monitors fire.  The gate
 * holds the actor until the test has set its monitor. */
struct behind_stop {
    struct counter_args a;
    int n;
    atomic_int gate;
};

static int behind_stop_init(reki_pid_t self, void *arg, void **state)
{
    struct behind_stop *b = arg;
    int rc = t_counter.init(self, &b->a, state);
    if (rc != 0)
        return rc;
    int bad = t_send_gate(b->a.rt, self, &b->gate) != REKI_OK;
    bad |= t_send(b->a.rt, self, T_INCR, 1) != REKI_OK;
    bad |= t_send(b->a.rt, self, T_STOP, 0) != REKI_OK;
    for (int i = 0; i < b->n; i++)
        bad |= t_send(b->a.rt, self, T_INCR, 1) != REKI_OK;
    if (bad)
        atomic_fetch_add(&p.violations, 1);
    return 0;
}

static long drops_at_down = -1;
static void down_counting_drops(reki_pid_t pid, int reason, void *arg)
{
    drops_at_down = atomic_load(&p.dropped);
    t_down(pid, reason, arg);
}

Test(actor, messages_queued_behind_a_stop_are_dropped_once)
{
    reki_behavior_t b = t_counter;
    b.init = behind_stop_init;
    static struct behind_stop bs = {.n = 1000};
    bs.a = (struct counter_args){.rt = rt, .probe = &p};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &b, &bs, NULL, &pid), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, down_counting_drops, &p), REKI_OK);
    atomic_store(&bs.gate, 1);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(drops_at_down, bs.n, "monitor fired before every queued message was dropped");
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.violations), 0);
    cr_assert_eq(t_ldl(&p.handled), 3);
    cr_assert_eq(t_ldl(&p.dropped), bs.n);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_NORMAL]), 1);
}

/* Same, with the queue built by another thread while the actor is held in
 * a handler: everything sent before the STOP is handled is dropped. */
static void stop_behind_gate(unsigned flags)
{
    probe_reset(&p);
    atomic_int gate = 0;
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, flags, &pid), REKI_OK);
    cr_assert_eq(t_send_gate(rt, pid, &gate), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK);
    const int n = 500;
    for (int i = 0; i < n; i++)
        cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    atomic_store(&gate, 1);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.handled), 2);
    cr_assert_eq(t_ldl(&p.dropped), n);
}

Test(actor, messages_behind_a_stop_sent_while_busy)
{
    stop_behind_gate(REKI_SPAWN_DEDICATED);
    stop_behind_gate(0);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.dropped), 500, "a message was dropped twice");
}

/* reki_kill takes effect at once, even while a handler runs; terminate
 * waits for that handler to return. */
static void kill_while_busy(unsigned flags)
{
    probe_reset(&p);
    atomic_int gate = 0, terminated = 0;
    struct counter_args a = {.rt = rt, .probe = &p, .terminated = &terminated};
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn_args(&a, flags, &pid), REKI_OK);
    cr_assert_eq(t_send_gate(rt, pid, &gate), REKI_OK);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.handled) == 1);
    cr_assert(ok, "the gate message was never handled");
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert(!reki_alive(rt, pid), "kill returned before the exit took effect");
    cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_EDEAD);
    cr_assert_eq(reki_kill(rt, pid), REKI_EDEAD);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_EDEAD);
    cr_assert_eq(t_ldi(&terminated), 0, "terminate ran while handle was running");
    atomic_store(&gate, 1);
    T_WAIT_UNTIL(ok, atomic_load(&terminated) == 1);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_KILLED]), 1);
    T_WAIT_UNTIL(ok, atomic_load(&p.dropped) == 10);
    cr_assert(ok, "queued messages not dropped after a kill");
    cr_assert_eq(t_ldl(&p.handled), 1);
}

/* Two runtimes hand out the same slot indexes; a pid of one must be dead in
 * the other, or a message meant for one actor reaches another. */
Test(actor, a_pid_is_dead_in_another_runtime)
{
    reki_rt_t *other = NULL;
    cr_assert_eq(reki_rt_new(NULL, &other), REKI_OK);
    reki_inbox_t *in = t_inbox(rt), *other_in = t_inbox(other);
    reki_pid_t mine, theirs;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &mine), REKI_OK);
    cr_assert_eq(t_counter_spawn(other, &p, 0, &theirs), REKI_OK);
    cr_assert_neq(mine, theirs);
    cr_assert(!reki_alive(other, mine));
    cr_assert(!reki_alive(rt, theirs));
    cr_assert(!reki_alive(other, reki_inbox_pid(in)));
    cr_assert_eq(t_send(other, mine, T_INCR, 5), REKI_EDEAD);
    cr_assert_eq(t_send(rt, theirs, T_INCR, 7), REKI_EDEAD);
    cr_assert_eq(reki_kill(other, mine), REKI_EDEAD);
    cr_assert_eq(reki_monitor(other, mine, t_down, &p), REKI_EDEAD);
    cr_assert_eq(t_counter_get(rt, mine, in), 0, "a send through the other runtime arrived");
    cr_assert_eq(t_counter_get(other, theirs, other_in), 0);
    cr_assert(reki_alive(rt, mine));
    cr_assert(reki_alive(other, theirs));
    reki_inbox_free(other_in);
    reki_inbox_free(in);
    reki_rt_free(other);
}

Test(actor, kill_takes_effect_before_it_returns)
{
    kill_while_busy(REKI_SPAWN_DEDICATED);
    kill_while_busy(0);
}

/* Handle is never run twice at once for one actor: a plain counter
 * incremented from many senders ends exact. */
struct incr_arg {
    reki_rt_t *rt;
    reki_pid_t pid;
    long n;
    long fails;
};

static void *incr_thread(void *arg)
{
    struct incr_arg *a = arg;
    for (long i = 0; i < a->n; i++)
        if (t_send(a->rt, a->pid, T_INCR, 1) != REKI_OK)
            a->fails++;
    return NULL;
}

static void one_handle_at_a_time(unsigned flags)
{
    reki_inbox_t *in = t_inbox(rt);
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, flags, &pid), REKI_OK);
    enum { THREADS = 8 };
    struct incr_arg args[THREADS];
    long n = t_scaled(10000, 100);
    for (int i = 0; i < THREADS; i++)
        args[i] = (struct incr_arg){.rt = rt, .pid = pid, .n = n};
    t_run_threads(THREADS, incr_thread, args, sizeof args[0]);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(args[i].fails, 0);
    cr_assert_eq(t_counter_get(rt, pid, in), THREADS * n);
    reki_inbox_free(in);
}

Test(actor, one_handle_at_a_time, .timeout = 300.0)
{
    one_handle_at_a_time(0);
    one_handle_at_a_time(REKI_SPAWN_DEDICATED);
}

/* Many threads kill one actor at once: exactly one kill succeeds. */
struct killer {
    reki_pid_t pid;
    atomic_int *go;
    int rc;
};

static void *kill_thread(void *arg)
{
    struct killer *k = arg;
    t_wait_flag(k->go);
    k->rc = reki_kill(rt, k->pid);
    return NULL;
}

Test(actor, concurrent_kills_succeed_exactly_once, .timeout = 120.0)
{
    enum { KILLERS = 8 };
    long rounds = t_scaled(100, 10);
    for (long r = 0; r < rounds; r++) {
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, r % 2 ? REKI_SPAWN_DEDICATED : 0, &pid), REKI_OK);
        atomic_int go = 0;
        struct killer k[KILLERS];
        for (int i = 0; i < KILLERS; i++)
            k[i] = (struct killer){.pid = pid, .go = &go};
        pthread_t t[KILLERS];
        for (int i = 0; i < KILLERS; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, kill_thread, &k[i]), 0);
        atomic_store(&go, 1);
        int ok = 0;
        for (int i = 0; i < KILLERS; i++) {
            pthread_join(t[i], NULL);
            cr_assert(k[i].rc == REKI_OK || k[i].rc == REKI_EDEAD, "kill returned %d", k[i].rc);
            ok += k[i].rc == REKI_OK;
        }
        cr_assert_eq(ok, 1, "round %ld: %d kills succeeded", r, ok);
    }
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.terminates), rounds);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_KILLED]), rounds);
}

/*
 * Sending under load: per-sender order, sends racing with the receiver's
 * exit (every accepted message handled or dropped exactly once), many light
 * actors, and dedicated actors that block without stalling light ones.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdlib.h>

#include "support.h"

static struct probe p;

static void setup(void)
{
    probe_reset(&p);
    t_set_drop_probe(&p);
}

TestSuite(send, .init = setup, .timeout = 600.0);

/* ------------------------------------------------ per-sender order -- */

struct seq_arg {
    reki_rt_t *rt;
    reki_pid_t to;
    long sender, n, fails;
};

static void *seq_thread(void *arg)
{
    struct seq_arg *a = arg;
    for (long i = 0; i < a->n; i++)
        if (t_send(a->rt, a->to, T_SEQ, a->sender << 32 | i) != REKI_OK)
            a->fails++;
    return NULL;
}

static void per_sender_order(unsigned flags, int threads, long n)
{
    probe_reset(&p);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, flags, &pid), REKI_OK);
    struct seq_arg args[16];
    cr_assert_leq(threads, 16);
    for (int i = 0; i < threads; i++)
        args[i] = (struct seq_arg){.rt = rt, .to = pid, .sender = i, .n = n};
    t_run_threads(threads, seq_thread, args, sizeof args[0]);
    for (int i = 0; i < threads; i++)
        cr_assert_eq(args[i].fails, 0);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.handled) == threads * n);
    cr_assert(ok, "handled %ld of %ld", t_ldl(&p.handled), threads * n);
    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.violations), 0, "a sender's messages were handled out of order");
    cr_assert_eq(t_ldl(&p.dropped), 0);
}

Test(send, four_senders_keep_their_order)
{
    per_sender_order(0, 4, t_scaled(50000, 1000));
}

Test(send, eight_senders_keep_their_order_dedicated)
{
    per_sender_order(REKI_SPAWN_DEDICATED, 8, t_scaled(25000, 500));
}

/* ------------------------------------------ sends racing with exit -- */

/* Each message is a slot; handle and drop each count on the slot, so a
 * message handled twice, dropped twice, or both, shows up as a count of 2,
 * and a lost one as 0. */
struct slot {
    atomic_int seen;
    int sent_ok;
    int kind; /* T_INCR, or T_STOP / T_CRASH for the one that ends the actor */
};

static reki_next_t slot_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    struct slot *s = msg;
    atomic_fetch_add(&s->seen, 1);
    atomic_fetch_add(&p.handled, 1);
    return s->kind == T_STOP ? REKI_STOP : s->kind == T_CRASH ? REKI_CRASH : REKI_CONTINUE;
}

static void slot_drop(void *msg)
{
    struct slot *s = msg;
    atomic_fetch_add(&s->seen, 1);
    atomic_fetch_add(&p.dropped, 1);
}

static void slot_terminate(void *state, int reason)
{
    (void)state;
    probe_note_reason(p.reasons, &p, reason);
    atomic_fetch_add(&p.terminates, 1);
}

static const reki_behavior_t slot_b = {
    .handle = slot_handle, .terminate = slot_terminate, .drop = slot_drop};

struct race_arg {
    reki_rt_t *rt;
    reki_pid_t to;
    struct slot *slots;
    long n;
    atomic_int *go;
};

static void *race_sender(void *arg)
{
    struct race_arg *a = arg;
    t_wait_flag(a->go);
    for (long i = 0; i < a->n; i++) {
        int rc = reki_send(a->rt, a->to, &a->slots[i]);
        a->slots[i].sent_ok = rc == REKI_OK;
        if (rc != REKI_OK && rc != REKI_EDEAD)
            atomic_fetch_add(&p.violations, 1);
    }
    return NULL;
}

enum { RACE_SENDERS = 4 };

/* One round: senders flood an actor while the main thread ends it by
 * `how` (-1 kill, else the kind of a message it sends). */
static void race_round(reki_rt_t *rt, unsigned flags, int how, long per_sender, struct slot *slots)
{
    reki_spawn_opts_t o = {.flags = flags};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &slot_b, NULL, &o, &pid), REKI_OK);
    atomic_int go = 0;
    struct race_arg args[RACE_SENDERS];
    pthread_t t[RACE_SENDERS];
    for (int i = 0; i < RACE_SENDERS; i++) {
        args[i] = (struct race_arg){rt, pid, slots + i * per_sender, per_sender, &go};
        for (long m = 0; m < per_sender; m++)
            args[i].slots[m].kind = T_INCR;
        cr_assert_eq(pthread_create(&t[i], NULL, race_sender, &args[i]), 0);
    }
    long before = atomic_load(&p.handled) + atomic_load(&p.dropped);
    atomic_store(&go, 1);
    /* Let some traffic through first, so the exit lands mid-stream. */
    uint64_t deadline = t_now_ms() + (uint64_t)t_wait_ms();
    while (atomic_load(&p.handled) + atomic_load(&p.dropped) < before + per_sender / 4 &&
           reki_alive(rt, pid) && t_now_ms() < deadline)
        sched_yield();
    struct slot *last = &slots[RACE_SENDERS * per_sender];
    last->kind = how;
    if (how < 0) {
        cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    } else {
        int rc = reki_send(rt, pid, last);
        cr_assert_eq(rc, REKI_OK);
        last->sent_ok = 1;
    }
    for (int i = 0; i < RACE_SENDERS; i++)
        pthread_join(t[i], NULL);
    /* A stop message may still be queued behind the flood; let it land, or
     * the actor would end at rt_free with another reason. */
    bool dead;
    T_WAIT_UNTIL(dead, !reki_alive(rt, pid));
    cr_assert(dead, "the actor did not exit");
}

static void sends_racing_with_exit(unsigned flags, int how)
{
    probe_reset(&p);
    long per_sender = t_scaled(20000, 500), rounds = t_scaled(20, 3);
    long total = RACE_SENDERS * per_sender + 1;
    struct slot *slots = calloc((size_t)(total * rounds), sizeof *slots);
    cr_assert_not_null(slots);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    for (long r = 0; r < rounds; r++)
        race_round(rt, flags, how, per_sender, slots + r * total);
    /* Messages still in flight are dropped by rt_free at the latest. */
    reki_rt_free(rt);
    long ok = 0;
    for (long i = 0; i < total * rounds; i++) {
        int seen = atomic_load(&slots[i].seen);
        cr_assert_eq(seen, slots[i].sent_ok, "message %ld: sent %s, handled+dropped %d times", i,
                     slots[i].sent_ok ? "OK" : "refused", seen);
        ok += slots[i].sent_ok;
    }
    cr_assert_eq(t_ldl(&p.handled) + t_ldl(&p.dropped), ok);
    cr_assert_eq(t_ldl(&p.terminates), rounds);
    cr_assert_eq(t_ldl(&p.violations), 0, "a send returned something other than OK/EDEAD");
    free(slots);
}

Test(send, sends_racing_with_kill_light)
{
    sends_racing_with_exit(0, -1);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_KILLED]), t_ldl(&p.terminates));
}

Test(send, sends_racing_with_kill_dedicated)
{
    sends_racing_with_exit(REKI_SPAWN_DEDICATED, -1);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_KILLED]), t_ldl(&p.terminates));
}

Test(send, sends_racing_with_stop_message)
{
    sends_racing_with_exit(0, T_STOP);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_NORMAL]), t_ldl(&p.terminates));
}

Test(send, sends_racing_with_crash_message)
{
    sends_racing_with_exit(REKI_SPAWN_DEDICATED, T_CRASH);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_ABNORMAL]), t_ldl(&p.terminates));
}

/* -------------------------------------------------- many light actors -- */

Test(send, hundred_thousand_light_actors_each_handle_a_message)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    long n = t_scaled(100000, 1000);
    for (long i = 0; i < n; i++) {
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK, "spawn %ld", i);
        cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    }
    cr_assert_eq(t_ldl(&p.inits), n);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.handled) == n);
    cr_assert(ok, "handled %ld of %ld", t_ldl(&p.handled), n);
    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.terminates), n);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), n);
    cr_assert_eq(t_ldl(&p.dropped), 0);
}

/* ------------------------------------------------- dedicated threads -- */

/* More blocked dedicated actors than workers: if they ran on the workers,
 * no light actor could answer until the gate opened. */
Test(send, blocking_dedicated_actors_do_not_stall_light_ones)
{
    reki_rt_opts_t o = {.workers = 2};
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(&o, &rt), REKI_OK);
    reki_inbox_t *in = t_inbox(rt);
    enum { BLOCKERS = 8, LIGHT = 100 };
    atomic_int gate = 0;
    for (int i = 0; i < BLOCKERS; i++) {
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, REKI_SPAWN_DEDICATED, &pid), REKI_OK);
        cr_assert_eq(t_send_gate(rt, pid, &gate), REKI_OK);
    }
    bool all_blocked;
    T_WAIT_UNTIL(all_blocked, atomic_load(&p.handled) == BLOCKERS);
    long answers = 0;
    for (int i = 0; i < LIGHT && all_blocked; i++) {
        reki_pid_t pid;
        if (t_counter_spawn(rt, &p, 0, &pid) == REKI_OK && t_send(rt, pid, T_INCR, i) == REKI_OK &&
            t_counter_get(rt, pid, in) == i)
            answers++;
        else
            break;
    }
    atomic_store(&gate, 1); /* before asserting: rt_free would wait on them */
    cr_assert(all_blocked, "only %ld dedicated actors ran at once", t_ldl(&p.handled));
    cr_assert_eq(answers, LIGHT, "light actors stalled behind blocked dedicated ones");
    reki_inbox_free(in);
    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.violations), 0);
}

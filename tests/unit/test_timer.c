/*
 * Timers (reki_send_after, reki_timer_cancel): delivery no earlier than
 * asked, ownership of the message on every return code, cancellation, and
 * the races: cancel against expiry, sends against an exit with timers
 * pending, rt_free with timers pending.  Every message is accounted for
 * exactly once: handled, dropped, returned by a cancel, or refused.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

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

TestSuite(timer, .init = setup, .fini = teardown, .timeout = 120.0);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A timed message: the handler checks it did not come early. */
struct timed {
    uint64_t armed_ns;
    uint32_t ms;
    long seq;
};

struct clock_actor {
    atomic_long handled, dropped, early, late_ms_max, out_of_order;
    atomic_long last_seq;
    atomic_long handled_seq_sum, dropped_seq_sum;
    atomic_int gate; /* handle waits while 0 (for mailbox-bound tests) */
    bool use_gate;
};

static reki_next_t clock_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct clock_actor *c = state;
    struct timed *m = msg;
    if (c->use_gate)
        while (!atomic_load(&c->gate))
            t_sleep_ms(1);
    uint64_t waited = now_ns() - m->armed_ns;
    if (waited < (uint64_t)m->ms * 1000000u)
        atomic_fetch_add(&c->early, 1);
    long late = (long)(waited / 1000000u) - (long)m->ms;
    long prev = atomic_load(&c->late_ms_max);
    while (late > prev && !atomic_compare_exchange_weak(&c->late_ms_max, &prev, late))
        ;
    if (m->seq < atomic_load(&c->last_seq))
        atomic_fetch_add(&c->out_of_order, 1);
    atomic_store(&c->last_seq, m->seq);
    atomic_fetch_add(&c->handled_seq_sum, m->seq);
    atomic_fetch_add(&c->handled, 1);
    free(m);
    return REKI_CONTINUE;
}

static struct clock_actor *drop_sink;

static void clock_drop(void *msg)
{
    struct timed *m = msg;
    atomic_fetch_add(&drop_sink->dropped_seq_sum, m->seq);
    atomic_fetch_add(&drop_sink->dropped, 1);
    free(m);
}

static const reki_behavior_t clock_b = {.handle = clock_handle, .drop = clock_drop};

static reki_pid_t spawn_clock(struct clock_actor *c, unsigned flags, uint32_t max_queue)
{
    drop_sink = c;
    reki_spawn_opts_t o = {.flags = flags, .max_queue = max_queue};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &clock_b, c, &o, &pid), REKI_OK);
    return pid;
}

static struct timed *tmsg(uint32_t ms, long seq)
{
    struct timed *m = malloc(sizeof(*m));
    cr_assert(m);
    m->ms = ms;
    m->seq = seq;
    m->armed_ns = now_ns();
    return m;
}

Test(timer, fires_no_earlier_than_asked_across_wheel_levels)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    /* Level 0 (< 64 ticks), level 1 (< 4096), and ones that cascade. */
    const uint32_t ms[] = {1, 2, 5, 17, 63, 64, 65, 100, 127, 128, 200, 350};
    enum { N = sizeof(ms) / sizeof(ms[0]) };
    for (int i = 0; i < N; i++) {
        reki_timer_t t = 0;
        cr_assert_eq(reki_send_after(rt, pid, tmsg(ms[i], i), ms[i], &t), REKI_OK);
        cr_assert_neq(t, 0);
    }
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == N);
    cr_assert(ok, "%ld of %d timers fired", t_ldl(&c.handled), N);
    cr_assert_eq(t_ldl(&c.early), 0, "%ld timers fired early", t_ldl(&c.early));
    cr_assert_eq(t_ldl(&c.out_of_order), 0, "timers fired out of deadline order");
}

Test(timer, zero_ms_is_a_send_and_names_no_timer)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    reki_timer_t t = 42;
    cr_assert_eq(reki_send_after(rt, pid, tmsg(0, 1), 0, &t), REKI_OK);
    cr_assert_eq(t, 0);
    cr_assert_eq(reki_send_after(rt, pid, tmsg(0, 2), 0, NULL), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == 2);
    cr_assert(ok);
}

Test(timer, cancel_gives_the_message_back_once)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    struct timed *m = tmsg(60000, 7);
    reki_timer_t t;
    cr_assert_eq(reki_send_after(rt, pid, m, 60000, &t), REKI_OK);
    void *back = NULL;
    cr_assert_eq(reki_timer_cancel(rt, t, &back), REKI_OK);
    cr_assert_eq(back, m, "cancel returned another message");
    cr_assert_eq(reki_timer_cancel(rt, t, &back), REKI_ENOTFOUND);
    free(m);
    cr_assert_eq(t_ldl(&c.handled) + t_ldl(&c.dropped), 0);
}

Test(timer, cancel_without_msg_hands_it_to_drop)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    reki_timer_t t;
    cr_assert_eq(reki_send_after(rt, pid, tmsg(60000, 3), 60000, &t), REKI_OK);
    cr_assert_eq(reki_timer_cancel(rt, t, NULL), REKI_OK);
    cr_assert_eq(t_ldl(&c.dropped), 1);
    cr_assert_eq(reki_timer_cancel(rt, t, NULL), REKI_ENOTFOUND);
    cr_assert_eq(t_ldl(&c.dropped), 1);
}

Test(timer, a_fired_timer_cannot_be_cancelled_and_ids_are_not_reused)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    reki_timer_t t1, t2;
    cr_assert_eq(reki_send_after(rt, pid, tmsg(1, 1), 1, &t1), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == 1);
    cr_assert(ok);
    void *back = NULL;
    cr_assert_eq(reki_timer_cancel(rt, t1, &back), REKI_ENOTFOUND);
    cr_assert_null(back, "*msg set on failure");
    /* The node is reused: the old id must still not cancel the new timer. */
    cr_assert_eq(reki_send_after(rt, pid, tmsg(60000, 2), 60000, &t2), REKI_OK);
    cr_assert_neq(t1, t2);
    cr_assert_eq(reki_timer_cancel(rt, t1, NULL), REKI_ENOTFOUND);
    cr_assert_eq(reki_timer_cancel(rt, t2, NULL), REKI_OK);
}

Test(timer, bad_input_is_einval_and_changes_nothing)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    struct timed *m = tmsg(10, 1);
    reki_timer_t t = 0;
    cr_assert_eq(reki_send_after(NULL, pid, m, 10, &t), REKI_EINVAL);
    cr_assert_eq(t, 0);
    cr_assert_eq(reki_timer_cancel(NULL, 1, NULL), REKI_EINVAL);
    cr_assert_eq(reki_timer_cancel(rt, 0, NULL), REKI_EINVAL);
    cr_assert_eq(reki_timer_cancel(rt, 12345, NULL), REKI_EINVAL, "generation 0");
    cr_assert_eq(reki_timer_cancel(rt, (uint64_t)1 << 32 | 3u, NULL), REKI_EINVAL,
                 "a sentinel's index");
    cr_assert_eq(reki_timer_cancel(rt, (uint64_t)1 << 32 | 0x7ffffff0u, NULL), REKI_EINVAL,
                 "an index never issued");
    /* A dead pid: the message is still ours. */
    reki_pid_t dead;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &dead), REKI_OK);
    cr_assert_eq(reki_kill(rt, dead), REKI_OK);
    cr_assert_eq(reki_send_after(rt, dead, m, 10, &t), REKI_EDEAD);
    cr_assert_eq(reki_send_after(rt, dead, m, 0, &t), REKI_EDEAD);
    cr_assert_eq(t, 0);
    cr_assert_eq(reki_send_after(rt, 0, m, 10, NULL), REKI_EDEAD);
    t_sleep_ms(30);
    cr_assert_eq(t_ldl(&c.handled) + t_ldl(&c.dropped), 0);
    free(m);
}

/* Timer ids are per runtime: another runtime's ids (which name nodes at the
 * same indices, some of them being delivered) never cancel anything here. */
Test(timer, another_runtimes_ids_cancel_nothing)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    reki_rt_t *other;
    cr_assert_eq(reki_rt_new(NULL, &other), REKI_OK);
    reki_pid_t opid;
    cr_assert_eq(t_counter_spawn(other, &p, 0, &opid), REKI_OK);
    enum { N = 300 };
    static reki_timer_t ids[N];
    static int token;
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_send_after(other, opid, &token, 60000, &ids[i]), REKI_OK);
    long n = t_scaled(3000, 200);
    for (long i = 0; i < n; i++) {
        cr_assert_eq(reki_send_after(rt, pid, tmsg(1, i), 1, NULL), REKI_OK);
        int rc = reki_timer_cancel(rt, ids[i % N], NULL);
        cr_assert(rc == REKI_EINVAL || rc == REKI_ENOTFOUND, "a foreign id cancelled a timer");
    }
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == n);
    cr_assert(ok, "%ld of %ld fired", t_ldl(&c.handled), n);
    for (int i = 0; i < N; i++) {
        void *back = NULL;
        cr_assert_eq(reki_timer_cancel(other, ids[i], &back), REKI_OK);
        cr_assert_eq(back, &token);
    }
    reki_rt_free(other);
}

Test(timer, an_exit_drops_pending_timers_exactly_once)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    enum { N = 100 };
    reki_timer_t t[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_send_after(rt, pid, tmsg(60000, i), 60000 + (uint32_t)i, &t[i]), REKI_OK);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.dropped) == N);
    cr_assert(ok, "%ld of %d pending timers dropped", t_ldl(&c.dropped), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_timer_cancel(rt, t[i], NULL), REKI_ENOTFOUND);
    cr_assert_eq(t_ldl(&c.dropped), N);
    cr_assert_eq(t_ldl(&c.handled), 0);
}

Test(timer, rt_free_drops_pending_timers)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    enum { N = 50 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(reki_send_after(rt, pid, tmsg(3600000, i), 3600000, NULL), REKI_OK);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&c.dropped), N);
}

Test(timer, a_due_timer_is_delivered_past_the_mailbox_bound)
{
    static struct clock_actor c;
    c.use_gate = true;
    reki_pid_t pid = spawn_clock(&c, REKI_SPAWN_DEDICATED, 1);
    cr_assert_eq(reki_send(rt, pid, tmsg(0, 0)), REKI_OK); /* taken: handle waits on the gate */
    bool ok;
    T_WAIT_UNTIL(ok, reki_mailbox_len(rt, pid) == 0);
    cr_assert(ok);
    cr_assert_eq(reki_send(rt, pid, tmsg(0, 1)), REKI_OK); /* the mailbox is full */
    struct timed *refused = tmsg(0, 2);
    cr_assert_eq(reki_send_after(rt, pid, refused, 0, NULL), REKI_EFULL);
    cr_assert_eq(reki_send_after(rt, pid, tmsg(5, 3), 5, NULL), REKI_OK);
    T_WAIT_UNTIL(ok, reki_mailbox_len(rt, pid) == 2);
    cr_assert(ok, "the due timer was not queued past the bound");
    atomic_store(&c.gate, 1);
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == 3);
    cr_assert(ok);
    free(refused);
}

static void inbox_drop(void *msg)
{
    atomic_fetch_add(&p.dropped, 1);
    free(msg);
}

Test(timer, an_inbox_receives_timers_and_its_drop_takes_cancelled_ones)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    cr_assert_eq(reki_inbox_set_drop(in, inbox_drop), REKI_OK);
    reki_pid_t pid = reki_inbox_pid(in);
    struct timed *m = tmsg(20, 1);
    cr_assert_eq(reki_send_after(rt, pid, m, 20, NULL), REKI_OK);
    reki_timer_t t;
    cr_assert_eq(reki_send_after(rt, pid, tmsg(60000, 2), 60000, &t), REKI_OK);
    void *got;
    cr_assert_eq(reki_inbox_recv(in, &got, t_wait_ms()), REKI_OK);
    cr_assert_eq(got, m);
    cr_assert_geq(now_ns() - m->armed_ns, 20u * 1000000u);
    free(got);
    cr_assert_eq(reki_timer_cancel(rt, t, NULL), REKI_OK);
    cr_assert_eq(t_ldl(&p.dropped), 1);
    cr_assert_eq(reki_send_after(rt, pid, tmsg(60000, 3), 60000, NULL), REKI_OK);
    reki_inbox_free(in); /* its pending timer goes to its drop */
    cr_assert_eq(t_ldl(&p.dropped), 2);
}

/* --------------------------------------------------------------- races -- */

struct racer {
    reki_pid_t pid;
    long base, armed, refused, cancelled, cancelled_sum, refused_sum;
    atomic_int *go;
};

/* Arms short timers and cancels every other one right away: each message
 * is handled, returned by the cancel, or dropped, exactly once. */
static void *cancel_racer(void *arg)
{
    struct racer *r = arg;
    t_wait_flag(r->go);
    long n = t_scaled(20000, 500);
    for (long i = 0; i < n; i++) {
        long seq = r->base + i;
        struct timed *m = tmsg(1, seq);
        reki_timer_t t;
        int rc = reki_send_after(rt, r->pid, m, (uint32_t)(i % 3) + 1, &t);
        if (rc != REKI_OK) {
            cr_assert_eq(rc, REKI_EDEAD);
            r->refused++;
            r->refused_sum += seq;
            free(m);
            continue;
        }
        r->armed++;
        if (i % 2 == 0) {
            if (i % 4 == 0)
                t_sleep_ms(0);
            void *back = NULL;
            if (reki_timer_cancel(rt, t, &back) == REKI_OK) {
                cr_assert_eq(back, m);
                r->cancelled++;
                r->cancelled_sum += seq;
                free(back);
            }
        }
    }
    return NULL;
}

static void run_racers(bool kill_midway)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    enum { THREADS = 4 };
    atomic_int go = 0;
    struct racer r[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct racer){.pid = pid, .base = (long)i << 32, .go = &go};
        cr_assert_eq(pthread_create(&th[i], NULL, cancel_racer, &r[i]), 0);
    }
    atomic_store(&go, 1);
    if (kill_midway) {
        t_sleep_ms(20);
        cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    }
    long armed = 0, cancelled = 0, sum_armed_left = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        armed += r[i].armed;
        cancelled += r[i].cancelled;
    }
    (void)sum_armed_left;
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) + t_ldl(&c.dropped) == armed - cancelled);
    t_sleep_ms(20); /* nothing more may come */
    cr_assert_eq(t_ldl(&c.handled) + t_ldl(&c.dropped), armed - cancelled,
                 "%ld armed, %ld cancelled, %ld handled, %ld dropped", armed, cancelled,
                 t_ldl(&c.handled), t_ldl(&c.dropped));
    cr_assert_eq(t_ldl(&c.early), 0);
    if (!kill_midway)
        cr_assert_eq(t_ldl(&c.dropped), 0);
}

Test(timer, cancel_racing_expiry_accounts_every_message_once)
{
    run_racers(false);
}

Test(timer, arming_racing_an_exit_accounts_every_message_once)
{
    run_racers(true);
}

/* Nothing is lost or doubled with many timers pending at once. */
Test(timer, many_pending_timers_fire_once_each)
{
    static struct clock_actor c;
    reki_pid_t pid = spawn_clock(&c, 0, 0);
    long n = t_scaled(100000, 2000);
    long sum = 0;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(reki_send_after(rt, pid, tmsg(0, i), (uint32_t)(i % 150) + 1, NULL), REKI_OK);
        sum += i;
    }
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&c.handled) == n);
    cr_assert(ok, "%ld of %ld fired", t_ldl(&c.handled), n);
    cr_assert_eq(t_ldl(&c.handled_seq_sum), sum);
}

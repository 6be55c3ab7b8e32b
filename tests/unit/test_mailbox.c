/*
 * Mailbox bounds (reki_spawn_opts_t.max_queue, REKI_EFULL) and
 * reki_mailbox_len: a bounded actor refuses past its bound and leaves the
 * message with the sender; every accepted message is handled exactly once;
 * the length counts messages queued and not yet taken.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

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

TestSuite(mailbox, .init = setup, .fini = teardown, .timeout = 120.0);

/* An actor whose first handle waits for `open`; it counts what it handles. */
struct gate {
    atomic_int entered, open;
    atomic_long handled, dropped;
};

static reki_next_t gate_handle(void *state, void *msg, reki_pid_t self)
{
    (void)msg;
    (void)self;
    struct gate *g = state;
    atomic_store(&g->entered, 1);
    while (!atomic_load(&g->open))
        t_sleep_ms(1);
    atomic_fetch_add(&g->handled, 1);
    return REKI_CONTINUE;
}

static void gate_drop(void *msg)
{
    atomic_fetch_add(&((struct gate *)msg)->dropped, 1);
}

static const reki_behavior_t gate_b = {.handle = gate_handle, .drop = gate_drop};

static reki_pid_t spawn_gate(struct gate *g, uint32_t max_queue)
{
    reki_spawn_opts_t o = {.flags = REKI_SPAWN_DEDICATED, .max_queue = max_queue};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &gate_b, g, &o, &pid), REKI_OK);
    return pid;
}

Test(mailbox, a_bounded_mailbox_refuses_past_its_bound)
{
    static struct gate g; /* drops may run after the test body, in teardown */
    reki_pid_t pid = spawn_gate(&g, 4);
    cr_assert_eq(reki_send(rt, pid, &g), REKI_OK);
    cr_assert(t_wait_flag(&g.entered), "the first message was never handled");
    cr_assert_eq(reki_mailbox_len(rt, pid), 0, "a message being handled is not queued");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(reki_send(rt, pid, &g), REKI_OK, "message %d of the bound refused", i);
    cr_assert_eq(reki_mailbox_len(rt, pid), 4);
    cr_assert_eq(reki_send(rt, pid, &g), REKI_EFULL);
    cr_assert_eq(reki_send(rt, pid, &g), REKI_EFULL);
    cr_assert_eq(reki_mailbox_len(rt, pid), 4, "a refused message was counted");
    atomic_store(&g.open, 1);
    uint64_t deadline = t_now_ms() + (uint64_t)t_wait_ms();
    while (atomic_load(&g.handled) < 5 && t_now_ms() < deadline)
        t_sleep_ms(1);
    cr_assert_eq(atomic_load(&g.handled), 5, "accepted messages handled: %ld",
                 atomic_load(&g.handled));
    cr_assert_eq(reki_mailbox_len(rt, pid), 0);
    cr_assert_eq(reki_send(rt, pid, &g), REKI_OK, "room again after the queue drained");
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
}

Test(mailbox, length_of_an_unbounded_mailbox_and_of_dead_pids)
{
    static struct gate g; /* drops may run after the test body, in teardown */
    reki_pid_t pid = spawn_gate(&g, 0);
    cr_assert_eq(reki_send(rt, pid, &g), REKI_OK);
    cr_assert(t_wait_flag(&g.entered));
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(reki_send(rt, pid, &g), REKI_OK);
    cr_assert_eq(reki_mailbox_len(rt, pid), 1000);
    cr_assert_eq(reki_mailbox_len(NULL, pid), 0);
    cr_assert_eq(reki_mailbox_len(rt, 0), 0);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert_eq(reki_mailbox_len(rt, pid), 0, "a dead pid has no mailbox");
    atomic_store(&g.open, 1);
}

struct flood {
    reki_pid_t to;
    long n, accepted, full, other;
    struct gate *g;
};

static void *flood_thread(void *arg)
{
    struct flood *f = arg;
    for (long i = 0; i < f->n; i++) {
        int rc = reki_send(rt, f->to, f->g);
        f->accepted += rc == REKI_OK;
        f->full += rc == REKI_EFULL;
        f->other += rc != REKI_OK && rc != REKI_EFULL;
    }
    return NULL;
}

/* Senders racing on a small bound: each message is accepted or refused,
 * and exactly the accepted ones are handled (none dropped while alive). */
Test(mailbox, racing_senders_on_a_bound_lose_nothing)
{
    enum { SENDERS = 6 };
    static struct gate g; /* drops may run after the test body, in teardown */
    atomic_store(&g.open, 1);
    reki_pid_t pid = spawn_gate(&g, 8);
    struct flood f[SENDERS];
    pthread_t t[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        f[i] = (struct flood){.to = pid, .n = t_scaled(20000, 500), .g = &g};
        cr_assert_eq(pthread_create(&t[i], NULL, flood_thread, &f[i]), 0);
    }
    long accepted = 0, full = 0, other = 0;
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(t[i], NULL);
        accepted += f[i].accepted;
        full += f[i].full;
        other += f[i].other;
    }
    cr_assert_eq(other, 0);
    cr_assert_gt(accepted, 0);
    uint64_t deadline = t_now_ms() + (uint64_t)t_wait_ms();
    while (atomic_load(&g.handled) < accepted && t_now_ms() < deadline)
        t_sleep_ms(1);
    cr_assert_eq(atomic_load(&g.handled), accepted, "%ld accepted (%ld refused), %ld handled",
                 accepted, full, atomic_load(&g.handled));
    cr_assert_eq(atomic_load(&g.dropped), 0);
    cr_assert_eq(reki_mailbox_len(rt, pid), 0);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
}

/*
 * The runtime as a whole: creation with any worker count, scheduling light
 * actors that talk to each other, and reki_rt_free with work still pending.
 * The leak check of rt_free comes from the ASan and valgrind runs.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "support.h"

static struct probe p;

static void setup(void)
{
    probe_reset(&p);
    t_set_drop_probe(&p);
}

TestSuite(runtime, .init = setup, .timeout = 120.0);

Test(runtime, new_and_free_with_any_worker_count)
{
    const unsigned counts[] = {0, 1, 2, 3, 16};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        reki_rt_opts_t o = {.workers = counts[i]};
        reki_rt_t *rt = NULL;
        cr_assert_eq(reki_rt_new(&o, &rt), REKI_OK, "workers %u", counts[i]);
        cr_assert_not_null(rt);
        reki_inbox_t *in = t_inbox(rt);
        reki_pid_t pid;
        cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
        cr_assert_eq(t_send(rt, pid, T_INCR, 5), REKI_OK);
        cr_assert_eq(t_counter_get(rt, pid, in), 5, "workers %u", counts[i]);
        reki_inbox_free(in);
        reki_rt_free(rt);
    }
    reki_rt_t *rt = NULL;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK, "NULL options mean the defaults");
    reki_rt_free(rt);
}

/* A ring of light actors passes a token around: each hop is a send from a
 * worker to an actor that is not yet scheduled, the wake-up path. */
struct ring {
    reki_rt_t *rt;
    reki_pid_t next;
    reki_pid_t done;
};

static reki_next_t ring_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct ring *r = state;
    long *hops = msg;
    if (--*hops == 0) {
        if (reki_send(r->rt, r->done, hops) != REKI_OK)
            free(hops);
    } else if (reki_send(r->rt, r->next, hops) != REKI_OK) {
        atomic_fetch_add(&p.violations, 1);
        free(hops);
    }
    return REKI_CONTINUE;
}

static void run_ring(unsigned workers, int actors, long hops)
{
    reki_rt_opts_t o = {.workers = workers};
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(&o, &rt), REKI_OK);
    reki_inbox_t *in = t_inbox(rt);
    cr_assert_not_null(in);
    struct ring *ring = calloc((size_t)actors, sizeof *ring);
    reki_pid_t *pids = calloc((size_t)actors, sizeof *pids);
    reki_behavior_t b = {.handle = ring_handle, .drop = free};
    for (int i = 0; i < actors; i++)
        cr_assert_eq(reki_spawn(rt, &b, &ring[i], NULL, &pids[i]), REKI_OK);
    /* Each actor reads its ring entry only when a message arrives, and every
     * message is sent after this loop: the send orders these writes. */
    for (int i = 0; i < actors; i++)
        ring[i] = (struct ring){rt, pids[(i + 1) % actors], reki_inbox_pid(in)};
    long *token = malloc(sizeof *token);
    *token = hops;
    cr_assert_eq(reki_send(rt, pids[0], token), REKI_OK);
    void *got = NULL;
    cr_assert_eq(reki_inbox_recv(in, &got, t_wait_ms()), REKI_OK, "token lost (workers %u)",
                 workers);
    cr_assert_eq(*(long *)got, 0);
    free(got);
    reki_inbox_free(in);
    reki_rt_free(rt);
    free(ring);
    free(pids);
    cr_assert_eq(t_ldl(&p.violations), 0);
}

Test(runtime, light_actors_pass_a_token_around_a_ring, .timeout = 300.0)
{
    long hops = t_scaled(100000, 1000);
    run_ring(1, 100, hops);
    run_ring(2, 100, hops);
    run_ring(8, 3, hops);
}

/* rt_free with live light and dedicated actors, full mailboxes, an open
 * inbox holding messages, and a registry never freed. */
static reki_next_t slow_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    (void)state;
    atomic_fetch_add(&p.handled, 1);
    if (atomic_load(&p.handled) % 64 == 0)
        t_sleep_ms(1);
    free(msg);
    return REKI_CONTINUE;
}

static void slow_terminate(void *state, int reason)
{
    (void)state;
    probe_note_reason(p.reasons, &p, reason);
    atomic_fetch_add(&p.terminates, 1);
}

Test(runtime, rt_free_with_live_actors_and_queued_messages, .timeout = 300.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_behavior_t b = {.handle = slow_handle, .terminate = slow_terminate, .drop = t_drop};
    const int actors = 200, per_actor = (int)t_scaled(200, 10);
    long sent = 0;
    for (int i = 0; i < actors; i++) {
        reki_spawn_opts_t o = {.flags = i % 20 == 0 ? REKI_SPAWN_DEDICATED : 0};
        reki_pid_t pid;
        cr_assert_eq(reki_spawn(rt, &b, NULL, &o, &pid), REKI_OK);
        for (int m = 0; m < per_actor; m++)
            if (t_send(rt, pid, T_INCR, 1) == REKI_OK)
                sent++;
    }
    cr_assert_eq(sent, (long)actors * per_actor);

    /* Left open: rt_free frees it and drops what it holds. */
    reki_inbox_opts_t io = {.drop = t_drop};
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new_ex(rt, &io, &in), REKI_OK);
    for (int m = 0; m < 10; m++)
        cr_assert_eq(t_send(rt, reki_inbox_pid(in), T_INCR, 1), REKI_OK);
    reki_registry_t *reg;
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    struct probe rp;
    probe_reset(&rp);
    struct start_ctx s;
    start_ctx_init(&s, rt, &rp);
    for (long k = 0; k < 100; k++) {
        char key[32];
        reki_pid_t pid;
        cr_assert_eq(
            reki_lookup_or_start(reg, key, t_key(key, sizeof key, k), t_start, &s, -1, &pid),
            REKI_STARTED);
        cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    }

    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.terminates), actors);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), actors);
    cr_assert_eq(t_ldl(&rp.terminates), 100, "registered actors not terminated");
    cr_assert_eq(t_ldl(&rp.reasons[REKI_EXIT_SHUTDOWN]), 100);
    /* Every message was handled once or dropped once (drops of all three
     * kinds of receiver count into p). */
    long handled = atomic_load(&p.handled) + atomic_load(&rp.handled);
    long dropped = atomic_load(&p.dropped);
    cr_assert_eq(handled + dropped, sent + 10 + 100, "handled %ld, dropped %ld, sent %ld", handled,
                 dropped, sent + 110);
    cr_assert_geq(dropped, 10, "the inbox's messages were not dropped");
}

/* Callbacks that run during rt_free may call into rt, and spawns fail. */
struct late {
    reki_rt_t *rt;
    atomic_int spawn_rc, inbox_rc, registry_rc, ran;
};

static reki_next_t late_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    return REKI_CONTINUE;
}

static void late_terminate(void *state, int reason)
{
    struct late *l = state;
    (void)reason;
    reki_behavior_t b = {.handle = late_handle};
    reki_pid_t pid = 0;
    atomic_store(&l->spawn_rc, reki_spawn(l->rt, &b, NULL, NULL, &pid));
    reki_inbox_t *in = NULL;
    atomic_store(&l->inbox_rc, reki_inbox_new(l->rt, &in));
    if (in != NULL)
        reki_inbox_free(in);
    reki_registry_t *reg = NULL;
    atomic_store(&l->registry_rc, reki_registry_new(l->rt, NULL, &reg));
    if (reg != NULL)
        reki_registry_free(reg);
    atomic_store(&l->ran, 1);
}

Test(runtime, calls_from_callbacks_during_rt_free_get_eshutdown)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    struct late l = {.rt = rt};
    reki_behavior_t b = {.handle = late_handle, .terminate = late_terminate};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &b, &l, NULL, &pid), REKI_OK);
    reki_rt_free(rt);
    cr_assert_eq(t_ldi(&l.ran), 1);
    cr_assert_eq(t_ldi(&l.spawn_rc), REKI_ESHUTDOWN, "spawn during rt_free returned %d",
                 t_ldi(&l.spawn_rc));
    cr_assert_eq(t_ldi(&l.inbox_rc), REKI_ESHUTDOWN, "inbox_new during rt_free: %d",
                 t_ldi(&l.inbox_rc));
    cr_assert_eq(t_ldi(&l.registry_rc), REKI_ESHUTDOWN, "registry_new during rt_free: %d",
                 t_ldi(&l.registry_rc));
}

/* Plain (non-atomic) writes made by handlers are visible once rt_free
 * returns. */
static reki_next_t write_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    long *slot = state;
    *slot += *(long *)msg;
    free(msg);
    return REKI_CONTINUE;
}

Test(runtime, actor_writes_happen_before_rt_free_returns)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    enum { N = 64 };
    static long slots[N];
    reki_behavior_t b = {.handle = write_handle, .drop = free};
    for (int i = 0; i < N; i++) {
        reki_pid_t pid;
        cr_assert_eq(reki_spawn(rt, &b, &slots[i], NULL, &pid), REKI_OK);
        long *v = malloc(sizeof *v);
        *v = i + 1;
        cr_assert_eq(reki_send(rt, pid, v), REKI_OK);
    }
    reki_rt_free(rt);
    /* Each message was handled or dropped; handled ones wrote their slot. */
    for (int i = 0; i < N; i++)
        cr_assert(slots[i] == 0 || slots[i] == i + 1, "slot %d = %ld", i, slots[i]);
}

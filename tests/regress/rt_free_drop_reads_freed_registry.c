/*
 * Bug: use after free in reki_rt_free: a drop callback read a freed registry.
 *
 * A send that races with an actor's exit (it resolved the pid before the
 * exit and enqueues after the exit path drained the mailbox) is handed to
 * drop later, by retire_cb on liburcu's call_rcu thread, after a grace
 * period.  reki_rt_free freed the registries still open on the runtime
 * (reki__registry_free_all then; free_children in lib/runtime/runtime.c now)
 * before its rcu_barrier ran those callbacks, so a drop that calls
 * reki_lookup(reg, ...), which the header allows, read the freed registry:
 * ASan reports heap-use-after-free in reki_lookup <- drop <-
 * reki__mbox_drain <- retire_cb.  The same order freed the registries before
 * the inboxes still open (reki__inbox_free_all), whose unreceived messages go
 * to the inbox's drop at once.
 *
 * Shown by AddressSanitizer: build with -DREKI_SANITIZE=address.  Without it
 * the freed memory is usually still readable and the tests pass.
 *
 * The first test needs sends that race with exits at shutdown: forwarding
 * actors (each hands every message on to the next actor, looked up by key)
 * and dedicated sender actors that keep sending to them until they are
 * killed, in that order of pid slots, so reki_rt_free's sweep kills the
 * forwarders while the senders still send to them.  Whether a late message
 * is still waiting for its grace period when the registry is freed is a race,
 * so the test runs many rounds.  The second test is deterministic.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "reki/reki.h"

#define ROUNDS 40
#define FORWARDERS 64
#define SENDERS 6
#define WARMUP_MSGS 20000 /* forwarded before reki_rt_free starts */

static reki_rt_t *rt;
static reki_registry_t *reg;
static reki_pid_t fwd_pids[FORWARDERS];
static int token; /* every message is &token */
static atomic_ulong forwarded;
static atomic_ulong drops;

static void key_of(unsigned i, char *buf, size_t *len)
{
    *len = (size_t)snprintf(buf, 16, "fwd-%u", i);
}

/* Looks the first forwarder up in the registry: what the bug makes read
 * freed memory. */
static void drop_msg(void *msg)
{
    (void)msg;
    reki_pid_t pid;
    (void)reki_lookup(reg, "fwd-0", 5, &pid);
    atomic_fetch_add_explicit(&drops, 1, memory_order_relaxed);
}

static reki_next_t forward(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    unsigned next = ((unsigned)(uintptr_t)state + 1) % FORWARDERS;
    char key[16];
    size_t len;
    key_of(next, key, &len);
    reki_pid_t to;
    if (reki_lookup(reg, key, len, &to) == REKI_OK)
        (void)reki_send(rt, to, msg); /* a failed send leaves &token with us */
    atomic_fetch_add_explicit(&forwarded, 1, memory_order_relaxed);
    return REKI_CONTINUE;
}

static int start_forwarder(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    reki_behavior_t b = {.handle = forward, .drop = drop_msg};
    return reki_spawn(r, &b, arg, NULL, out);
}

/* A dedicated actor: on its first message, send to the forwarders round and
 * round until it is killed (by reki_rt_free's sweep). */
static reki_next_t flood(void *state, void *msg, reki_pid_t self)
{
    (void)msg;
    unsigned i = (unsigned)(uintptr_t)state * 7;
    while (reki_alive(rt, self))
        (void)reki_send(rt, fwd_pids[i++ % FORWARDERS], &token);
    return REKI_STOP;
}

static void one_round(void)
{
    atomic_store(&forwarded, 0);
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 2}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    for (unsigned i = 0; i < FORWARDERS; i++) {
        char key[16];
        size_t len;
        key_of(i, key, &len);
        int rc = reki_lookup_or_start(reg, key, len, start_forwarder, (void *)(uintptr_t)i, -1,
                                      &fwd_pids[i]);
        cr_assert_eq(rc, REKI_STARTED);
    }
    /* Spawned after the forwarders: higher pid slots, swept later. */
    reki_spawn_opts_t so = {.flags = REKI_SPAWN_DEDICATED};
    reki_behavior_t fb = {.handle = flood, .drop = drop_msg};
    for (unsigned s = 0; s < SENDERS; s++) {
        reki_pid_t pid;
        cr_assert_eq(reki_spawn(rt, &fb, (void *)(uintptr_t)s, &so, &pid), REKI_OK);
        cr_assert_eq(reki_send(rt, pid, &token), REKI_OK);
    }
    /* Some circulating messages too, then wait until the flood is on. */
    for (unsigned i = 0; i < FORWARDERS; i++)
        cr_assert_eq(reki_send(rt, fwd_pids[i], &token), REKI_OK);
    while (atomic_load(&forwarded) < WARMUP_MSGS)
        sched_yield();
    /* The registry is left open: reki_rt_free frees it.  Senders and
     * forwarders keep sending while its sweep kills them. */
    reki_rt_free(rt);
}

Test(regress, late_drop_after_rt_free_reads_live_registry, .timeout = 60.0)
{
    for (int r = 0; r < ROUNDS; r++)
        one_round();
    cr_assert_gt(atomic_load(&drops), 0);
}

Test(regress, inbox_drop_at_rt_free_reads_live_registry, .timeout = 30.0)
{
    atomic_store(&drops, 0);
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "fwd-0", 5, start_forwarder, NULL, -1, &pid),
                 REKI_STARTED);
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new_ex(rt, &(reki_inbox_opts_t){.drop = drop_msg}, &in), REKI_OK);
    cr_assert_eq(reki_send(rt, reki_inbox_pid(in), &token), REKI_OK);
    /* Registry and inbox left open: reki_rt_free frees both, and the inbox's
     * unreceived message goes to drop_msg, which looks up in reg. */
    reki_rt_free(rt);
    cr_assert_eq(atomic_load(&drops), 1);
}

/*
 * The registry API one call at a time: keys as byte strings, lookup,
 * lookup_or_start, stop, count, foreach, registry_free.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static struct probe p;
static struct start_ctx s;

static void setup(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, &reg), REKI_OK);
    start_ctx_init(&s, rt, &p);
}

static void teardown(void)
{
    t_fixture_down(&rt, &reg);
}

TestSuite(registry, .init = setup, .fini = teardown, .timeout = 120.0);

static int los(const void *key, size_t len, reki_pid_t *out)
{
    return reki_lookup_or_start(reg, key, len, t_start, &s, -1, out);
}

Test(registry, lookup_or_start_then_lookup)
{
    reki_pid_t a = 0, b = 0, c = 0;
    cr_assert_eq(reki_lookup(reg, "k", 1, &a), REKI_ENOTFOUND);
    cr_assert_eq(los("k", 1, &a), REKI_STARTED);
    cr_assert(reki_alive(rt, a));
    cr_assert_eq(reki_lookup(reg, "k", 1, &b), REKI_OK);
    cr_assert_eq(b, a);
    cr_assert_eq(los("k", 1, &c), REKI_OK);
    cr_assert_eq(c, a);
    cr_assert_eq(reki_lookup_or_start(reg, "k", 1, t_start, &s, 0, &c), REKI_OK,
                 "a hit needs no waiting, even with timeout 0");
    cr_assert_eq(c, a);
    cr_assert_eq(t_ldl(&s.starts), 1);
}

Test(registry, keys_are_byte_strings)
{
    const char k1[] = {'a', 'b'};
    const char k2[] = {'a', 'b', '\0'};
    const char k3[] = {'a', '\0', 'b'};
    const char k4[] = {'\0'};
    const unsigned char k5[] = {0xff, 0xfe, 0x00, 0x80};
    const void *keys[] = {k1, k2, k3, k4, k5};
    const size_t lens[] = {sizeof k1, sizeof k2, sizeof k3, sizeof k4, sizeof k5};
    reki_pid_t pids[5];
    for (int i = 0; i < 5; i++)
        cr_assert_eq(los(keys[i], lens[i], &pids[i]), REKI_STARTED, "key %d", i);
    for (int i = 0; i < 5; i++) {
        reki_pid_t got;
        cr_assert_eq(reki_lookup(reg, keys[i], lens[i], &got), REKI_OK);
        cr_assert_eq(got, pids[i]);
        for (int j = 0; j < i; j++)
            cr_assert_neq(pids[i], pids[j], "keys %d and %d collide", i, j);
    }
    cr_assert_eq(reki_count(reg), 5);
}

Test(registry, the_key_is_copied)
{
    char key[16] = "copied-key";
    reki_pid_t pid, got;
    cr_assert_eq(los(key, strlen(key), &pid), REKI_STARTED);
    memset(key, 'x', sizeof key);
    cr_assert_eq(reki_lookup(reg, "copied-key", 10, &got), REKI_OK);
    cr_assert_eq(got, pid);
    cr_assert_eq(reki_lookup(reg, key, 10, &got), REKI_ENOTFOUND);
}

Test(registry, stop_takes_effect_before_it_returns)
{
    static atomic_int terminated; /* the second actor terminates in teardown */
    s.actor.terminated = &terminated;
    reki_pid_t pid, got;
    cr_assert_eq(los("k", 1, &pid), REKI_STARTED);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(reki_stop(reg, "k", 1), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    cr_assert_eq(reki_lookup(reg, "k", 1, &got), REKI_ENOTFOUND);
    cr_assert_eq(reki_stop(reg, "k", 1), REKI_ENOTFOUND);
    cr_assert_eq(reki_stop(reg, "never", 5), REKI_ENOTFOUND);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), 1);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_SHUTDOWN]), 1);
    cr_assert_eq(los("k", 1, &got), REKI_STARTED);
    cr_assert_neq(got, pid);
}

/* reki_stop from inside the actor's own handle. */
struct self_stopper {
    reki_registry_t *reg;
    atomic_int rc;
    atomic_int done;
};

static reki_next_t self_stop_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct self_stopper *st = state;
    free(msg);
    atomic_store(&st->rc, reki_stop(st->reg, "self", 4));
    atomic_store(&st->done, 1);
    return REKI_CONTINUE;
}

static int self_stop_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    reki_behavior_t b = {.handle = self_stop_handle, .terminate = NULL, .drop = t_drop};
    return reki_spawn(r, &b, arg, NULL, out);
}

Test(registry, stop_from_inside_the_actors_own_handle)
{
    struct self_stopper st = {.reg = reg};
    reki_pid_t pid, got;
    cr_assert_eq(reki_lookup_or_start(reg, "self", 4, self_stop_start, &st, -1, &pid),
                 REKI_STARTED);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
    cr_assert(t_wait_flag(&st.done));
    cr_assert_eq(t_ldi(&st.rc), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_SHUTDOWN]), 1);
    cr_assert_eq(reki_lookup(reg, "self", 4, &got), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 0);
}

Test(registry, count_is_exact)
{
    cr_assert_eq(reki_count(reg), 0);
    char key[32];
    reki_pid_t pids[20];
    for (long i = 0; i < 20; i++) {
        cr_assert_eq(los(key, t_key(key, sizeof key, i), &pids[i]), REKI_STARTED);
        cr_assert_eq(reki_count(reg), (size_t)i + 1);
    }
    for (long i = 0; i < 5; i++) {
        cr_assert_eq(reki_stop(reg, key, t_key(key, sizeof key, i)), REKI_OK);
        cr_assert_eq(reki_count(reg), (size_t)(19 - i), "count not decremented by stop");
    }
    for (long i = 5; i < 10; i++) {
        cr_assert_eq(reki_monitor(rt, pids[i], t_down, &p), REKI_OK);
        cr_assert_eq(reki_kill(rt, pids[i]), REKI_OK);
    }
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 5);
    cr_assert(ok);
    cr_assert_eq(reki_count(reg), 10, "dead actors still counted after their monitors fired");
    s.fail_code = -99;
    cr_assert_eq(los("failing", 7, &pids[0]), -99);
    cr_assert_eq(reki_count(reg), 10, "a failed start counted");
}

struct visit {
    int calls;
    int stop_after;
    int bad;
    reki_pid_t seen[64];
    char keys[64][16];
};

static int visit_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct visit *v = arg;
    reki_pid_t got;
    if (keylen >= 16 || reki_lookup(reg, key, keylen, &got) != REKI_OK || got != pid)
        v->bad++;
    if (v->calls < 64) {
        v->seen[v->calls] = pid;
        memcpy(v->keys[v->calls], key, keylen < 15 ? keylen : 15);
    }
    v->calls++;
    return v->stop_after > 0 && v->calls == v->stop_after ? 42 : 0;
}

Test(registry, foreach_visits_every_live_entry_once)
{
    struct visit v = {0};
    cr_assert_eq(reki_foreach(reg, visit_fn, &v), REKI_OK);
    cr_assert_eq(v.calls, 0);
    char key[32];
    reki_pid_t pids[10];
    for (long i = 0; i < 10; i++)
        cr_assert_eq(los(key, t_key(key, sizeof key, i), &pids[i]), REKI_STARTED);
    cr_assert_eq(reki_stop(reg, "key-3", 5), REKI_OK);
    cr_assert_eq(reki_foreach(reg, visit_fn, &v), REKI_OK);
    cr_assert_eq(v.calls, 9);
    cr_assert_eq(v.bad, 0, "foreach passed a key/pid pair that lookup disagrees with");
    for (long i = 0; i < 10; i++) {
        int hits = 0;
        for (int j = 0; j < v.calls; j++)
            hits += v.seen[j] == pids[i];
        cr_assert_eq(hits, i == 3 ? 0 : 1, "key-%ld visited %d times", i, hits);
    }
}

Test(registry, foreach_stops_early_and_returns_the_value)
{
    char key[32];
    reki_pid_t pid;
    for (long i = 0; i < 10; i++)
        cr_assert_eq(los(key, t_key(key, sizeof key, i), &pid), REKI_STARTED);
    struct visit v = {.stop_after = 3};
    cr_assert_eq(reki_foreach(reg, visit_fn, &v), 42);
    cr_assert_eq(v.calls, 3);
}

/* fn may call any reki function but the *_free ones. */
static int meddling_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)pid;
    int *bad = arg;
    char copy[32], other[40];
    if (keylen >= 4 && memcmp(key, "new-", 4) == 0)
        return 0; /* started by this walk: it may or may not be visited */
    memcpy(copy, key, keylen);
    if (reki_stop(reg, copy, keylen) != REKI_OK)
        (*bad)++;
    int n = snprintf(other, sizeof other, "new-%.*s", (int)keylen, copy);
    reki_pid_t got;
    if (reki_lookup_or_start(reg, other, (size_t)n, t_start, &s, -1, &got) != REKI_STARTED)
        (*bad)++;
    return 0;
}

Test(registry, foreach_callback_may_stop_and_start)
{
    char key[32];
    reki_pid_t pid;
    for (long i = 0; i < 10; i++)
        cr_assert_eq(los(key, t_key(key, sizeof key, i), &pid), REKI_STARTED);
    int bad = 0;
    int rc = reki_foreach(reg, meddling_fn, &bad);
    cr_assert_eq(rc, REKI_OK);
    cr_assert_eq(bad, 0);
    for (long i = 0; i < 10; i++) {
        size_t len = t_key(key, sizeof key, i);
        cr_assert_eq(reki_lookup(reg, key, len, &pid), REKI_ENOTFOUND);
        char other[40];
        int n = snprintf(other, sizeof other, "new-%s", key);
        cr_assert_eq(reki_lookup(reg, other, (size_t)n, &pid), REKI_OK);
    }
}

Test(registry, registry_free_stops_registered_actors_only)
{
    reki_pid_t loose, pids[20];
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &loose), REKI_OK);
    char key[32];
    for (long i = 0; i < 20; i++) {
        cr_assert_eq(los(key, t_key(key, sizeof key, i), &pids[i]), REKI_STARTED);
        cr_assert_eq(reki_monitor(rt, pids[i], t_down, &p), REKI_OK);
    }
    reki_registry_free(reg);
    reg = NULL;
    cr_assert_eq(t_ldl(&p.terminates), 20, "registry_free returned before terminate");
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), 20);
    for (long i = 0; i < 20; i++)
        cr_assert(!reki_alive(rt, pids[i]));
    cr_assert(reki_alive(rt, loose), "registry_free stopped an unregistered actor");
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == 20);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_SHUTDOWN]), 20);
}

Test(registry, two_registries_are_independent)
{
    reki_registry_t *other;
    cr_assert_eq(reki_registry_new(rt, NULL, &other), REKI_OK);
    reki_pid_t a, b, got;
    cr_assert_eq(los("k", 1, &a), REKI_STARTED);
    cr_assert_eq(reki_lookup(other, "k", 1, &got), REKI_ENOTFOUND);
    cr_assert_eq(reki_lookup_or_start(other, "k", 1, t_start, &s, -1, &b), REKI_STARTED);
    cr_assert_neq(a, b);
    cr_assert_eq(reki_count(other), 1);
    reki_registry_free(other);
    cr_assert_eq(reki_lookup(reg, "k", 1, &got), REKI_OK);
    cr_assert_eq(got, a);
    cr_assert(!reki_alive(rt, b));
}

Test(registry, grows_far_beyond_its_capacity_hint)
{
    reki_registry_t *small;
    reki_registry_opts_t o = {.capacity = 1};
    cr_assert_eq(reki_registry_new(rt, &o, &small), REKI_OK);
    long n = t_scaled(20000, 500);
    char key[32];
    reki_pid_t *pids = calloc((size_t)n, sizeof *pids);
    for (long i = 0; i < n; i++)
        cr_assert_eq(
            reki_lookup_or_start(small, key, t_key(key, sizeof key, i), t_start, &s, -1, &pids[i]),
            REKI_STARTED);
    cr_assert_eq(reki_count(small), (size_t)n);
    for (long i = 0; i < n; i++) {
        reki_pid_t got;
        cr_assert_eq(reki_lookup(small, key, t_key(key, sizeof key, i), &got), REKI_OK);
        cr_assert_eq(got, pids[i]);
    }
    reki_registry_free(small);
    free(pids);
}

/* The supervisor pattern: a monitor restarts its actor's key.  It runs after
 * terminate, on the exiting actor's thread, so the key must already be free
 * for it (a wait there would wait on itself). */
struct restarter {
    atomic_int rc;
    reki_pid_t pid;
};

static void restart_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    struct restarter *r = arg;
    int rc = reki_lookup_or_start(reg, "sup", 3, t_start, &s, t_wait_ms(), &r->pid);
    atomic_store(&r->rc, rc);
}

Test(registry, a_monitor_may_restart_the_key)
{
    reki_pid_t pid;
    cr_assert_eq(los("sup", 3, &pid), REKI_STARTED);
    for (int how = 0; how < 3; how++) {
        static struct restarter r;
        atomic_store(&r.rc, 1000);
        cr_assert_eq(reki_monitor(rt, pid, restart_down, &r), REKI_OK);
        if (how == 0)
            cr_assert_eq(t_send(rt, pid, T_CRASH, 0), REKI_OK);
        else if (how == 1)
            cr_assert_eq(reki_kill(rt, pid), REKI_OK);
        else
            cr_assert_eq(reki_stop(reg, "sup", 3), REKI_OK);
        bool ok;
        T_WAIT_UNTIL(ok, t_ldi(&r.rc) != 1000);
        cr_assert(ok, "the monitor never returned");
        cr_assert_eq(t_ldi(&r.rc), REKI_STARTED, "restart from the monitor (how %d): %d", how,
                     t_ldi(&r.rc));
        cr_assert_neq(r.pid, pid);
        reki_pid_t got;
        cr_assert_eq(reki_lookup(reg, "sup", 3, &got), REKI_OK);
        cr_assert_eq(got, r.pid);
        pid = r.pid;
    }
}

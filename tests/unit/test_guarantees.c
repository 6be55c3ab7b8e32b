/*
 * The eight registry guarantees of api.md, one test (or a few) each; every
 * test here fails if its guarantee breaks.
 */
#include <criterion/criterion.h>
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

TestSuite(guarantee, .init = setup, .fini = teardown, .timeout = 300.0);

static struct los_call call_on(const char *key, struct start_ctx *ctx, int timeout_ms)
{
    return (struct los_call){.reg = reg,
                             .key = key,
                             .keylen = strlen(key),
                             .start = t_start,
                             .arg = ctx,
                             .timeout_ms = timeout_ms};
}

/* Ends the actor `pid` registered under `key` by one of five means, and
 * returns once its exit has taken effect (it need not have terminated). */
static void end_actor(const char *key, reki_pid_t pid, int how)
{
    switch (how % 5) {
    case 0: cr_assert_eq(reki_stop(reg, key, strlen(key)), REKI_OK); break;
    case 1: cr_assert_eq(reki_kill(rt, pid), REKI_OK); break;
    case 2: cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK); break;
    case 3: cr_assert_eq(t_send(rt, pid, T_CRASH, 0), REKI_OK); break;
    default: cr_assert_eq(t_send(rt, pid, T_KILL_SELF, 0), REKI_OK); break;
    }
    bool dead;
    T_WAIT_UNTIL(dead, !reki_alive(rt, pid));
    cr_assert(dead, "actor never exited (how %d)", how % 5);
}

/* ------------------------------------------- 1. one actor per key -- */

/* Each actor holds an exclusive flag from init to the end of a slow
 * terminate; a successor whose init ran before that would find it taken. */
Test(guarantee, g1_successor_starts_only_after_terminate_returned)
{
    static atomic_int exclusive; /* the last actor terminates in teardown */
    s.actor.exclusive = &exclusive;
    s.actor.terminate_sleep_ms = 5;
    enum { CALLERS = 4 };
    long rounds = t_scaled(200, 20);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "g1", 2, t_start, &s, -1, &pid), REKI_STARTED);
    for (long r = 0; r < rounds; r++) {
        end_actor("g1", pid, (int)r);
        struct los_call c[CALLERS];
        for (int i = 0; i < CALLERS; i++) {
            c[i] = call_on("g1", &s, -1);
            t_los_spawn(&c[i]);
        }
        int started = 0;
        for (int i = 0; i < CALLERS; i++) {
            t_los_join(&c[i]);
            cr_assert(c[i].rc == REKI_OK || c[i].rc == REKI_STARTED, "rc %d", c[i].rc);
            cr_assert_neq(c[i].pid, pid, "round %ld: the dead actor was returned", r);
            cr_assert_eq(c[i].pid, c[0].pid, "two callers got different actors");
            started += c[i].rc == REKI_STARTED;
        }
        cr_assert_eq(started, 1, "round %ld: %d callers started", r, started);
        pid = c[0].pid;
    }
    cr_assert_eq(t_ldl(&p.violations), 0,
                 "an actor's init ran before its predecessor's "
                 "terminate returned");
    cr_assert_eq(t_ldl(&s.overlaps), 0, "two start functions ran at once for one key");
    cr_assert_eq(t_ldl(&s.starts), rounds + 1);
}

/* While a start is held open, other callers of the key never run start. */
Test(guarantee, g1_at_most_one_start_runs_per_key)
{
    atomic_int hold = 1;
    s.hold = &hold;
    enum { CALLERS = 12 };
    struct los_call c[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        c[i] = call_on("one", &s, -1);
        t_los_spawn(&c[i]);
    }
    cr_assert(t_wait_flag(&s.entered));
    for (int i = 0; i < CALLERS; i++)
        cr_assert(t_wait_flag(&c[i].calling));
    t_sleep_ms(t_settle_ms());
    cr_assert_eq(t_ldl(&s.starts), 1, "a second start ran while the first was open");
    atomic_store(&hold, 0);
    for (int i = 0; i < CALLERS; i++)
        t_los_join(&c[i]);
    cr_assert_eq(t_ldl(&s.starts), 1);
    cr_assert_eq(t_ldl(&s.overlaps), 0);
    for (int i = 0; i < CALLERS; i++)
        cr_assert_eq(c[i].pid, c[0].pid);
}

/* --------------------------------------- 2. waiters share the outcome -- */

/* Holds the start of `key`, gathers `n` waiters behind it, then releases. */
static void share(const char *key, struct los_call *starter, struct los_call *w, int n)
{
    atomic_int hold = 1;
    s.hold = &hold;
    atomic_store(&s.entered, 0);
    *starter = call_on(key, &s, -1);
    t_los_spawn(starter);
    cr_assert(t_wait_flag(&s.entered));
    for (int i = 0; i < n; i++) {
        w[i] = call_on(key, &s, -1);
        t_los_spawn(&w[i]);
    }
    for (int i = 0; i < n; i++)
        cr_assert(t_wait_flag(&w[i].calling));
    t_sleep_ms(t_settle_ms()); /* let them reach their wait */
    atomic_store(&hold, 0);
    t_los_join(starter);
    for (int i = 0; i < n; i++)
        t_los_join(&w[i]);
    s.hold = NULL;
}

enum { WAITERS = 6 };

Test(guarantee, g2_waiters_share_a_success)
{
    struct los_call st, w[WAITERS];
    share("ok", &st, w, WAITERS);
    cr_assert_eq(st.rc, REKI_STARTED);
    for (int i = 0; i < WAITERS; i++) {
        cr_assert_eq(w[i].rc, REKI_OK, "waiter %d: %d", i, w[i].rc);
        cr_assert_eq(w[i].pid, st.pid);
    }
    cr_assert_eq(t_ldl(&s.starts), 1);
}

Test(guarantee, g2_waiters_share_an_error)
{
    s.fail_code = -1234;
    struct los_call st, w[WAITERS];
    share("err", &st, w, WAITERS);
    cr_assert_eq(st.rc, -1234);
    for (int i = 0; i < WAITERS; i++)
        cr_assert_eq(w[i].rc, -1234, "waiter %d got %d, not the start's error", i, w[i].rc);
    cr_assert_eq(t_ldl(&s.starts), 1, "a waiter ran start again instead of sharing");
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(reg, "err", 3, &pid), REKI_ENOTFOUND);
}

Test(guarantee, g2_waiters_share_a_dead_pid_outcome)
{
    s.dead_pid = 1;
    struct los_call st, w[WAITERS];
    share("dead", &st, w, WAITERS);
    cr_assert_eq(st.rc, REKI_EDEAD);
    for (int i = 0; i < WAITERS; i++)
        cr_assert_eq(w[i].rc, REKI_EDEAD, "waiter %d got %d", i, w[i].rc);
    cr_assert_eq(t_ldl(&s.starts), 1);
}

Test(guarantee, g2_a_waiter_times_out_and_the_start_goes_on)
{
    atomic_int hold = 1;
    s.hold = &hold;
    struct los_call st = call_on("slow", &s, -1);
    t_los_spawn(&st);
    cr_assert(t_wait_flag(&s.entered));
    reki_pid_t pid = 0x77;
    cr_assert_eq(reki_lookup_or_start(reg, "slow", 4, t_start, &s, 0, &pid), REKI_ETIMEDOUT);
    cr_assert_eq(reki_lookup_or_start(reg, "slow", 4, t_start, &s, 30, &pid), REKI_ETIMEDOUT);
    cr_assert_eq(pid, 0x77, "*out written on ETIMEDOUT");
    cr_assert_eq(reki_lookup(reg, "slow", 4, &pid), REKI_ENOTFOUND);
    cr_assert_eq(t_ldi(&st.done), 0, "the start gave up when a waiter did");
    atomic_store(&hold, 0);
    t_los_join(&st);
    cr_assert_eq(st.rc, REKI_STARTED);
    cr_assert_eq(reki_lookup(reg, "slow", 4, &pid), REKI_OK);
    cr_assert_eq(pid, st.pid);
    cr_assert_eq(t_ldl(&s.starts), 1);
}

/* ------------------------------ 3. no registry-wide lock around start -- */

struct others {
    reki_pid_t b_pid;
    atomic_int done;
    int bad;
};

static void *other_keys(void *arg)
{
    struct others *o = arg;
    struct start_ctx c;
    start_ctx_init(&c, rt, &p);
    reki_pid_t got;
    o->bad += reki_lookup(reg, "B", 1, &got) != REKI_OK || got != o->b_pid;
    o->bad += reki_lookup_or_start(reg, "B", 1, t_start, &c, -1, &got) != REKI_OK;
    o->bad += reki_lookup_or_start(reg, "C", 1, t_start, &c, -1, &got) != REKI_STARTED;
    o->bad += reki_stop(reg, "C", 1) != REKI_OK;
    o->bad += reki_lookup_or_start(reg, "D", 1, t_start, &c, -1, &got) != REKI_STARTED;
    o->bad += reki_count(reg) != 2;
    atomic_store(&o->done, 1);
    return NULL;
}

Test(guarantee, g3_a_held_start_delays_no_other_key)
{
    struct others o = {0};
    cr_assert_eq(reki_lookup_or_start(reg, "B", 1, t_start, &s, -1, &o.b_pid), REKI_STARTED);
    struct start_ctx held;
    start_ctx_init(&held, rt, &p);
    atomic_int hold = 1;
    held.hold = &hold;
    struct los_call a = call_on("A", &held, -1);
    t_los_spawn(&a);
    cr_assert(t_wait_flag(&held.entered));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_keys, &o), 0);
    bool finished = t_wait_flag(&o.done); /* A stays held all along */
    bool a_was_open = atomic_load(&a.done) == 0;
    atomic_store(&hold, 0);
    pthread_join(t, NULL);
    t_los_join(&a);
    cr_assert(finished, "operations on other keys waited for key A's start");
    cr_assert(a_was_open);
    cr_assert_eq(o.bad, 0);
    cr_assert_eq(a.rc, REKI_STARTED);
}

/* ---------------------------------------------------- 4. no stale pids -- */

Test(guarantee, g4_no_lookup_after_an_exit_returns_the_pid)
{
    long rounds = t_scaled(2000, 50);
    for (long r = 0; r < rounds; r++) {
        reki_pid_t pid, got;
        cr_assert_eq(reki_lookup_or_start(reg, "g4", 2, t_start, &s, -1, &pid), REKI_STARTED);
        end_actor("g4", pid, (int)r);
        int rc = reki_lookup(reg, "g4", 2, &got);
        cr_assert_eq(rc, REKI_ENOTFOUND, "round %ld: lookup after exit returned %d", r, rc);
    }
}

struct reader {
    _Atomic reki_pid_t *last_dead;
    atomic_int *stop;
    struct start_ctx *ctx;
    long hits, stale;
};

static void *stale_reader(void *arg)
{
    struct reader *rd = arg;
    while (!atomic_load(rd->stop)) {
        reki_pid_t dead = atomic_load(rd->last_dead), got;
        if (reki_lookup(reg, "hot", 3, &got) == REKI_OK) {
            rd->hits++;
            rd->stale += got == dead;
        }
        dead = atomic_load(rd->last_dead);
        int rc = reki_lookup_or_start(reg, "hot", 3, t_start, rd->ctx, -1, &got);
        if (rc == REKI_OK || rc == REKI_STARTED)
            rd->stale += got == dead;
    }
    return NULL;
}

/* Readers race with exits: a pid published as dead (after the exit took
 * effect) is never returned by a call that began after it was published. */
Test(guarantee, g4_concurrent_readers_never_see_a_published_death)
{
    enum { READERS = 4 };
    _Atomic reki_pid_t last_dead = 0;
    atomic_int stop = 0;
    struct reader rd[READERS];
    for (int i = 0; i < READERS; i++)
        rd[i] = (struct reader){.last_dead = &last_dead, .stop = &stop, .ctx = &s};
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, stale_reader, &rd[i]), 0);
    long rounds = t_scaled(3000, 100);
    for (long r = 0; r < rounds; r++) {
        reki_pid_t pid;
        int rc = reki_lookup_or_start(reg, "hot", 3, t_start, &s, -1, &pid);
        cr_assert(rc == REKI_OK || rc == REKI_STARTED);
        if (r % 2)
            rc = reki_kill(rt, pid);
        else
            rc = reki_stop(reg, "hot", 3);
        /* A reader may have killed nothing, but another round may already
         * have ended this pid: only a kill/stop we made counts. */
        if (rc == REKI_OK)
            atomic_store(&last_dead, pid);
    }
    atomic_store(&stop, 1);
    long hits = 0, stale = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
        hits += rd[i].hits;
        stale += rd[i].stale;
    }
    cr_assert_eq(stale, 0, "%ld stale pids returned (%ld hits)", stale, hits);
    cr_assert_gt(hits, 0, "the readers never hit: the test checked nothing");
}

/* --------------------------------------- 5. failed starts leave nothing -- */

static int bad_pid_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)r;
    (void)key;
    (void)keylen;
    *out = *(reki_pid_t *)arg;
    atomic_fetch_add(&s.starts, 1);
    return 0;
}

static int positive_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    int rc = t_start(r, key, keylen, arg, out);
    return rc == 0 ? 3 : rc;
}

static void expect_clean(const char *key)
{
    reki_pid_t got;
    cr_assert_eq(reki_lookup(reg, key, strlen(key), &got), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 0);
    cr_assert_eq(reki_stop(reg, key, strlen(key)), REKI_ENOTFOUND);
}

Test(guarantee, g5_failed_starts_leave_nothing)
{
    reki_pid_t pid;
    s.fail_code = -5;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(reki_lookup_or_start(reg, "f", 1, t_start, &s, -1, &pid), -5);
        expect_clean("f");
    }
    cr_assert_eq(t_ldl(&s.starts), 3, "the next call must start again");
    s.fail_code = REKI_ENOMEM;
    cr_assert_eq(reki_lookup_or_start(reg, "f", 1, t_start, &s, -1, &pid), REKI_ENOMEM);
    expect_clean("f");

    s.fail_code = 0;
    s.dead_pid = 1;
    cr_assert_eq(reki_lookup_or_start(reg, "f", 1, t_start, &s, -1, &pid), REKI_EDEAD);
    expect_clean("f");
    reki_pid_t stale = 0;
    cr_assert_eq(reki_lookup_or_start(reg, "f", 1, bad_pid_start, &stale, -1, &pid), REKI_EDEAD,
                 "start returned 0 and pid 0");
    expect_clean("f");
    stale = 0xfeedfacecafebeefull;
    cr_assert_eq(reki_lookup_or_start(reg, "f", 1, bad_pid_start, &stale, -1, &pid), REKI_EDEAD);
    expect_clean("f");

    s.dead_pid = 0;
    cr_assert_eq(reki_lookup_or_start(reg, "f", 1, positive_start, &s, -1, &pid), REKI_STARTED,
                 "a start returning a positive value succeeded");
    cr_assert(reki_alive(rt, pid));
    reki_pid_t got;
    cr_assert_eq(reki_lookup(reg, "f", 1, &got), REKI_OK);
    cr_assert_eq(got, pid);
}

/* ------------------------------------- 6. re-entrancy is an error -- */

struct reenter {
    const char *own;   /* the key this start is starting */
    const char *inner; /* another key, started from inside */
    struct reenter *next;
    int own_rc, inner_rc, lookup_rc;
};

static int reentrant_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct reenter *e = arg;
    reki_pid_t pid;
    /* Bounded, so that a library that waits instead fails with ETIMEDOUT. */
    e->own_rc = reki_lookup_or_start(reg, key, keylen, reentrant_start, e, t_wait_ms(), &pid);
    e->lookup_rc = reki_lookup(reg, key, keylen, &pid);
    if (e->inner != NULL) {
        reki_start_fn f = e->next != NULL ? reentrant_start : t_start;
        void *a = e->next != NULL ? (void *)e->next : (void *)&s;
        e->inner_rc =
            reki_lookup_or_start(reg, e->inner, strlen(e->inner), f, a, t_wait_ms(), &pid);
    }
    return t_start(r, key, keylen, &s, out);
}

Test(guarantee, g6_reentering_start_for_its_own_key_is_edeadlk)
{
    struct reenter e = {.own = "A", .inner = "B"};
    reki_pid_t pid, got;
    cr_assert_eq(reki_lookup_or_start(reg, "A", 1, reentrant_start, &e, -1, &pid), REKI_STARTED);
    cr_assert_eq(e.own_rc, REKI_EDEADLK);
    cr_assert_eq(e.lookup_rc, REKI_ENOTFOUND);
    cr_assert_eq(e.inner_rc, REKI_STARTED, "another key failed inside a start");
    cr_assert_eq(reki_lookup(reg, "A", 1, &got), REKI_OK);
    cr_assert_eq(got, pid);
    cr_assert_eq(reki_lookup(reg, "B", 1, &got), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "A", 1, reentrant_start, &e, -1, &got), REKI_OK);
    cr_assert_eq(reki_count(reg), 2);
}

/* A (start) -> B (start) -> A: the thread would wait on itself. */
Test(guarantee, g6_reentry_through_another_keys_start_is_edeadlk)
{
    struct reenter inner = {.own = "B", .inner = "A"};
    struct reenter outer = {.own = "A", .inner = "B", .next = &inner};
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "A", 1, reentrant_start, &outer, -1, &pid),
                 REKI_STARTED);
    cr_assert_eq(outer.own_rc, REKI_EDEADLK);
    cr_assert_eq(inner.own_rc, REKI_EDEADLK);
    cr_assert_eq(inner.inner_rc, REKI_EDEADLK,
                 "B's start re-entering A (still starting on this "
                 "thread) got %d",
                 inner.inner_rc);
    cr_assert_eq(outer.inner_rc, REKI_STARTED);
}

/* init runs inside reki_spawn, inside start: re-entry from there too. */
static int reentrant_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    int *rc = arg;
    reki_pid_t pid;
    *rc = reki_lookup_or_start(reg, "I", 1, t_start, &s, t_wait_ms(), &pid);
    *state = arg;
    return 0;
}

static reki_next_t ignore_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    return REKI_CONTINUE;
}

static int init_reenter_start(reki_rt_t *r, const void *key, size_t keylen, void *arg,
                              reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    reki_behavior_t b = {.init = reentrant_init, .handle = ignore_handle, .drop = t_drop};
    return reki_spawn(r, &b, arg, NULL, out);
}

Test(guarantee, g6_reentry_from_the_actors_init_is_edeadlk)
{
    int rc = 0;
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "I", 1, init_reenter_start, &rc, -1, &pid),
                 REKI_STARTED);
    cr_assert_eq(rc, REKI_EDEADLK);
}

/* ------------------------------------ 7. nothing is lost at shutdown -- */

static long fill_registry(long actors, long per_actor, atomic_int *gate)
{
    long sent = 0;
    char key[32];
    for (long i = 0; i < actors; i++) {
        reki_pid_t pid;
        cr_assert_eq(
            reki_lookup_or_start(reg, key, t_key(key, sizeof key, i), t_start, &s, -1, &pid),
            REKI_STARTED);
        if (gate != NULL && i == 0)
            cr_assert_eq(t_send_gate(rt, pid, gate), REKI_OK);
        for (long m = 0; m < per_actor; m++)
            sent += t_send(rt, pid, T_INCR, 1) == REKI_OK;
    }
    return sent + (gate != NULL);
}

static void *open_gate_later(void *arg)
{
    t_sleep_ms(t_settle_ms());
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

Test(guarantee, g7_registry_free_terminates_all_and_drops_the_rest)
{
    long actors = 100;
    atomic_int gate = 0;
    long sent = fill_registry(actors, t_scaled(100, 10), &gate);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, open_gate_later, &gate), 0);
    reki_registry_free(reg);
    reg = NULL;
    /* registry_free waits for every terminate, which follows the drops. */
    cr_assert_eq(t_ldl(&p.terminates), actors);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), actors);
    cr_assert_eq(t_ldl(&p.handled) + t_ldl(&p.dropped), sent,
                 "handled %ld + dropped %ld != sent %ld", t_ldl(&p.handled), t_ldl(&p.dropped),
                 sent);
    pthread_join(t, NULL);
}

Test(guarantee, g7_rt_free_frees_open_registries_too)
{
    long actors = 100;
    long sent = fill_registry(actors, t_scaled(100, 10), NULL);
    reki_rt_free(rt);
    rt = NULL;
    reg = NULL;
    cr_assert_eq(t_ldl(&p.terminates), actors);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), actors);
    cr_assert_eq(t_ldl(&p.handled) + t_ldl(&p.dropped), sent);
}

/* --------------------------------------------------- 8. reads scale -- */

/* The functional side of guarantee 8: hits complete while other threads
 * are stalled at the worst places: inside a start on the same key, inside a
 * start on another key, and inside a foreach callback. */
struct stall {
    atomic_int in_walk, release;
};

static int stalled_walk(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    struct stall *st = arg;
    atomic_store(&st->in_walk, 1);
    t_wait_flag(&st->release);
    return 1;
}

static void *walker(void *arg)
{
    reki_foreach(reg, stalled_walk, arg);
    return NULL;
}

struct hitter {
    long id;
    reki_pid_t hot;
    atomic_int done;
    long bad;
};

static void *hit_thread(void *arg)
{
    struct hitter *h = arg;
    struct start_ctx never;
    start_ctx_init(&never, rt, &p);
    never.fail_code = -1; /* a hit must not call it */
    for (int i = 0; i < 1000; i++) {
        reki_pid_t got;
        h->bad += reki_lookup(reg, "hot", 3, &got) != REKI_OK || got != h->hot;
        h->bad += reki_lookup_or_start(reg, "hot", 3, t_start, &never, 0, &got) != REKI_OK ||
                  got != h->hot;
        h->bad += reki_lookup(reg, "pending", 7, &got) != REKI_ENOTFOUND;
        h->bad +=
            reki_lookup_or_start(reg, "pending", 7, t_start, &never, 0, &got) != REKI_ETIMEDOUT;
    }
    h->bad += atomic_load(&never.starts) != 0;
    /* Writers on other keys must not wait for the stalled reader either. */
    char key[32];
    struct start_ctx c;
    start_ctx_init(&c, rt, &p);
    for (long i = 0; i < 20; i++) {
        reki_pid_t got;
        size_t len = t_key(key, sizeof key, i + 1000 * h->id);
        h->bad += reki_lookup_or_start(reg, key, len, t_start, &c, -1, &got) != REKI_STARTED;
        h->bad += reki_stop(reg, key, len) != REKI_OK;
    }
    atomic_store(&h->done, 1);
    return NULL;
}

Test(guarantee, g8_hits_complete_while_other_threads_stall)
{
    enum { HITTERS = 4 };
    struct hitter h[HITTERS];
    reki_pid_t hot;
    cr_assert_eq(reki_lookup_or_start(reg, "hot", 3, t_start, &s, -1, &hot), REKI_STARTED);
    /* Stall 1: a start held open on "pending". */
    struct start_ctx held;
    start_ctx_init(&held, rt, &p);
    atomic_int hold = 1;
    held.hold = &hold;
    struct los_call pending = call_on("pending", &held, -1);
    t_los_spawn(&pending);
    cr_assert(t_wait_flag(&held.entered));
    /* Stall 2: a walk parked inside its callback. */
    struct stall st = {0};
    pthread_t w;
    cr_assert_eq(pthread_create(&w, NULL, walker, &st), 0);
    cr_assert(t_wait_flag(&st.in_walk));

    pthread_t t[HITTERS];
    for (int i = 0; i < HITTERS; i++) {
        h[i] = (struct hitter){.id = i, .hot = hot};
        cr_assert_eq(pthread_create(&t[i], NULL, hit_thread, &h[i]), 0);
    }
    bool all = true;
    for (int i = 0; i < HITTERS; i++)
        all = all && t_wait_flag(&h[i].done);
    atomic_store(&st.release, 1);
    atomic_store(&hold, 0);
    for (int i = 0; i < HITTERS; i++)
        pthread_join(t[i], NULL);
    pthread_join(w, NULL);
    t_los_join(&pending);
    cr_assert(all, "a hit or another key's start/stop waited for a stalled thread");
    for (int i = 0; i < HITTERS; i++)
        cr_assert_eq(h[i].bad, 0, "hitter %d: %ld wrong answers", i, h[i].bad);
    cr_assert_eq(pending.rc, REKI_STARTED);
}

/* ------------------------- 1 and 6 around an actor that is terminating -- */

/* While the key's previous actor is still in terminate, callers wait for
 * it (bounded by their timeout), then start anew. */
Test(guarantee, g1_callers_wait_for_a_slow_terminate_then_start)
{
    static atomic_int gate, exclusive;
    s.actor.terminate_gate = &gate;
    s.actor.exclusive = &exclusive;
    reki_pid_t old, got = 0x55;
    cr_assert_eq(reki_lookup_or_start(reg, "slowterm", 8, t_start, &s, -1, &old), REKI_STARTED);
    cr_assert_eq(reki_stop(reg, "slowterm", 8), REKI_OK);
    cr_assert_eq(reki_lookup(reg, "slowterm", 8, &got), REKI_ENOTFOUND);
    cr_assert_eq(reki_lookup_or_start(reg, "slowterm", 8, t_start, &s, 0, &got), REKI_ETIMEDOUT);
    cr_assert_eq(reki_lookup_or_start(reg, "slowterm", 8, t_start, &s, 30, &got), REKI_ETIMEDOUT);
    cr_assert_eq(got, 0x55);
    cr_assert_eq(reki_count(reg), 0);
    struct los_call c = call_on("slowterm", &s, -1);
    t_los_spawn(&c);
    cr_assert(t_wait_flag(&c.calling));
    t_sleep_ms(t_settle_ms());
    bool waited = atomic_load(&c.done) == 0;
    long starts_meanwhile = t_ldl(&s.starts);
    atomic_store(&gate, 1);
    t_los_join(&c);
    cr_assert(waited, "a start went ahead while the previous actor was in terminate");
    cr_assert_eq(starts_meanwhile, 1);
    cr_assert_eq(c.rc, REKI_STARTED);
    cr_assert_neq(c.pid, old);
    cr_assert_eq(t_ldl(&p.violations), 0);
}

/* An actor restarting its own key while it is itself exiting would wait
 * for its own terminate: REKI_EDEADLK, from terminate and from handle. */
Test(guarantee, g6_an_exiting_actor_restarting_its_own_key_is_edeadlk)
{
    static atomic_int rc_terminate = 1, rc_handle = 1;
    s.actor.reenter_reg = reg;
    s.actor.reenter_key = "self";
    s.actor.reenter_rc = &rc_terminate;
    s.actor.reenter_in_terminate = true;
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "self", 4, t_start, &s, -1, &pid), REKI_STARTED);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&p.downs) == 1);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&rc_terminate), REKI_EDEADLK, "from terminate: %d",
                 atomic_load(&rc_terminate));

    s.actor.reenter_in_terminate = false;
    s.actor.reenter_rc = &rc_handle;
    cr_assert_eq(reki_lookup_or_start(reg, "self", 4, t_start, &s, -1, &pid), REKI_STARTED);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_KILL_REENTER, 0), REKI_OK);
    T_WAIT_UNTIL(ok, t_ldl(&p.downs) == 2);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&rc_handle), REKI_EDEADLK, "from handle after killing itself: %d",
                 atomic_load(&rc_handle));
    /* The key works again from outside. */
    cr_assert_eq(reki_lookup_or_start(reg, "self", 4, t_start, &s, -1, &pid), REKI_STARTED);
}

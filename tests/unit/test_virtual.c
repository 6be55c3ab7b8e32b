/*
 * Virtual actors (reki_send_key, reki_await, restarts, passivation, events).
 *
 * Every test accounts for every message: handled exactly once (a per-message
 * flag counts duplicates) by an actor of its key, in per-sender order (each
 * key keeps the last sequence number it saw per sender), or dropped once by
 * the registry's drop.  Handlers of one key never overlap (guarantee 1), so
 * the per-key state is checked without locks, through relaxed atomics.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define NKEYS 64
#define NSENDERS 8
#define MAXSEQ 200000

enum { V_PLAIN = 0, V_STOP = 1, V_CRASH = 2, V_GATE = 3 };

struct vworld;

struct vmsg {
    int key;
    int sender;
    long seq;
    int action;
};

struct vworld {
    reki_rt_t *rt;
    reki_registry_t *reg;
    /* what actors saw */
    atomic_long handled, dropped, dup, out_of_order, wrong_key;
    atomic_long last[NKEYS][NSENDERS]; /* last seq handled, per key and sender */
    atomic_char *seen;                 /* per message: times handled or dropped */
    /* lives */
    atomic_long starts, start_calls, inits, terminates, live_actors, overlap;
    atomic_long reasons[5];
    atomic_int active[NKEYS]; /* an actor of the key is between init and terminate's end */
    /* behaviour knobs */
    int stop_every;  /* an actor stops after this many messages (0 = never) */
    int crash_every; /* ... every crash_every-th stop is a crash instead */
    int start_fail;  /* start returns this (0 = succeed) */
    atomic_int fail_key_once[NKEYS];
    int start_sleep_ms;     /* start sleeps this long for key 0 only */
    int terminate_sleep_ms; /* terminate sleeps (guarantee 1's window) */
    atomic_int gate;        /* V_GATE messages wait while 0 */
    atomic_int in_gate;     /* a V_GATE handle is waiting */
    atomic_ulong last_handle_ms, last_term_ms;
    uint32_t max_queue; /* of started actors */
    /* events */
    atomic_long ev[5];
    atomic_long ev_exit_reason[5];
    atomic_long ev_gaveup_detail;
    atomic_long ev_bad; /* EXITED for a pid whose STARTED was not reported first */
    atomic_uint_fast64_t started_pid[NKEYS];
};

static struct vworld *W;

static int key_index(const void *key, size_t keylen)
{
    char buf[32];
    if (keylen >= sizeof buf)
        return -1;
    memcpy(buf, key, keylen);
    buf[keylen] = 0;
    return atoi(buf + 1);
}

static size_t vkey(char *buf, int k)
{
    return (size_t)snprintf(buf, 16, "k%d", k);
}

struct vstate {
    struct vworld *w;
    int key;
    int handled;
    int lives; /* stops so far of this key's actors, for crash_every */
};

static atomic_long stops_total;

static int v_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    struct vstate *s = arg;
    struct vworld *w = s->w;
    atomic_fetch_add(&w->inits, 1);
    if (atomic_exchange(&w->active[s->key], 1) != 0)
        atomic_fetch_add(&w->overlap, 1);
    atomic_fetch_add(&w->live_actors, 1);
    *state = s;
    return 0;
}

static void note(struct vworld *w, struct vmsg *m, bool drop)
{
    long idx = (long)m->sender * MAXSEQ + m->seq;
    if (atomic_fetch_add(&w->seen[idx], 1) != 0)
        atomic_fetch_add(&w->dup, 1);
    if (drop)
        atomic_fetch_add(&w->dropped, 1);
}

static reki_next_t v_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct vstate *s = state;
    struct vworld *w = s->w;
    struct vmsg *m = msg;
    if (m->action == V_GATE) {
        atomic_store(&w->in_gate, 1);
        while (!atomic_load(&w->gate))
            t_sleep_ms(1);
    }
    if (m->key != s->key)
        atomic_fetch_add(&w->wrong_key, 1);
    long prev = atomic_load_explicit(&w->last[m->key][m->sender], memory_order_relaxed);
    if (m->seq <= prev)
        atomic_fetch_add(&w->out_of_order, 1);
    atomic_store_explicit(&w->last[m->key][m->sender], m->seq, memory_order_relaxed);
    note(w, m, false);
    int action = m->action;
    free(m);
    s->handled++;
    reki_next_t next = REKI_CONTINUE;
    if (action == V_STOP)
        next = REKI_STOP;
    else if (action == V_CRASH)
        next = REKI_CRASH;
    else if (w->stop_every && s->handled >= w->stop_every) {
        long n = atomic_fetch_add(&stops_total, 1) + 1;
        next = (w->crash_every && n % w->crash_every == 0) ? REKI_CRASH : REKI_STOP;
    }
    atomic_store(&w->last_handle_ms, t_now_ms());
    /* counted last: the test may free the world once handled reaches its total */
    atomic_fetch_add(&w->handled, 1);
    return next;
}

static void v_terminate(void *state, int reason)
{
    struct vstate *s = state;
    struct vworld *w = s->w;
    if (reason >= 0 && reason <= 4)
        atomic_fetch_add(&w->reasons[reason], 1);
    if (w->terminate_sleep_ms)
        t_sleep_ms(w->terminate_sleep_ms);
    atomic_fetch_sub(&w->live_actors, 1);
    atomic_store(&w->last_term_ms, t_now_ms());
    atomic_store(&w->active[s->key], 0);
    atomic_fetch_add(&w->terminates, 1);
    free(s);
}

static void v_msg_drop(void *msg)
{
    /* messages by pid: none in these tests */
    (void)msg;
    atomic_fetch_add(&W->wrong_key, 1);
}

static const reki_behavior_t vbeh = {v_init, v_handle, v_terminate, v_msg_drop};

static int v_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct vworld *w = arg;
    atomic_fetch_add(&w->start_calls, 1);
    int k = key_index(key, keylen);
    if (k < 0 || k >= NKEYS)
        return REKI_EINVAL;
    if (w->start_sleep_ms && k == 0)
        t_sleep_ms(w->start_sleep_ms);
    if (w->start_fail)
        return w->start_fail;
    if (atomic_exchange(&w->fail_key_once[k], 0))
        return -12345;
    struct vstate *s = calloc(1, sizeof *s);
    if (!s)
        return REKI_ENOMEM;
    s->w = w;
    s->key = k;
    reki_spawn_opts_t o = {.flags = 0, .max_queue = w->max_queue};
    int rc = reki_spawn(rt, &vbeh, s, &o, out);
    if (rc != REKI_OK) {
        free(s);
        return rc;
    }
    atomic_fetch_add(&w->starts, 1);
    return 0;
}

static void v_drop(void *msg)
{
    note(W, msg, true);
    free(msg);
}

static void v_event(const void *key, size_t keylen, reki_pid_t pid, int event, int detail,
                    void *arg)
{
    struct vworld *w = arg;
    int k = key_index(key, keylen);
    if (event < 1 || event > 4 || k < 0 || k >= NKEYS) {
        atomic_fetch_add(&w->ev_bad, 1);
        return;
    }
    if (event == REKI_EVENT_STARTED)
        atomic_store(&w->started_pid[k], pid);
    if (event == REKI_EVENT_EXITED) {
        if (atomic_load(&w->started_pid[k]) != pid)
            atomic_fetch_add(&w->ev_bad, 1);
        if (detail >= 0 && detail <= 4)
            atomic_fetch_add(&w->ev_exit_reason[detail], 1);
    }
    if (event == REKI_EVENT_GAVE_UP)
        atomic_store(&w->ev_gaveup_detail, detail);
    atomic_fetch_add(&w->ev[event], 1); /* last: the test reads the rest once it counts */
}

static struct vworld *world_new(void)
{
    struct vworld *w = calloc(1, sizeof *w);
    cr_assert(w);
    w->seen = calloc((size_t)NSENDERS * MAXSEQ, 1);
    cr_assert(w->seen);
    for (int k = 0; k < NKEYS; k++)
        for (int s = 0; s < NSENDERS; s++)
            atomic_init(&w->last[k][s], -1);
    atomic_store(&stops_total, 0);
    W = w;
    return w;
}

static reki_registry_opts_t vopts(struct vworld *w)
{
    reki_registry_opts_t o = {0};
    o.start = v_start;
    o.start_arg = w;
    o.drop = v_drop;
    o.on_event = v_event;
    o.event_arg = w;
    return o;
}

static void world_up(struct vworld *w, const reki_registry_opts_t *o)
{
    cr_assert_eq(reki_rt_new(NULL, &w->rt), REKI_OK);
    cr_assert_eq(reki_registry_new(w->rt, o, &w->reg), REKI_OK);
}

static void world_free(struct vworld *w)
{
    free(w->seen);
    free(w);
    W = NULL;
}

static int send_one(struct vworld *w, int key, int sender, long seq, int action)
{
    struct vmsg *m = malloc(sizeof *m);
    cr_assert(m);
    m->key = key;
    m->sender = sender;
    m->seq = seq;
    m->action = action;
    char kb[16];
    size_t kl = vkey(kb, key);
    int rc = reki_send_key(w->reg, kb, kl, m);
    if (rc != REKI_OK)
        free(m);
    return rc;
}

static bool wait_total(struct vworld *w, long total)
{
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->handled) + atomic_load(&w->dropped) >= total);
    return ok;
}

static void assert_clean(struct vworld *w)
{
    cr_assert_eq(atomic_load(&w->dup), 0, "duplicates: %ld", atomic_load(&w->dup));
    cr_assert_eq(atomic_load(&w->out_of_order), 0, "out of order: %ld",
                 atomic_load(&w->out_of_order));
    cr_assert_eq(atomic_load(&w->wrong_key), 0);
    cr_assert_eq(atomic_load(&w->overlap), 0, "two actors of one key overlapped");
    cr_assert_eq(atomic_load(&w->ev_bad), 0);
}

TestSuite(virtual, .timeout = 240.0);

/* ------------------------------------------------------------------ basics -- */

Test(virtual, bad_arguments)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = {0};
    cr_assert_eq(reki_rt_new(NULL, &w->rt), REKI_OK);
    o.restart = 3;
    o.start = v_start;
    reki_registry_t *r = NULL;
    cr_assert_eq(reki_registry_new(w->rt, &o, &r), REKI_EINVAL);
    o.restart = -1;
    cr_assert_eq(reki_registry_new(w->rt, &o, &r), REKI_EINVAL);
    o.restart = REKI_RESTART_TRANSIENT;
    o.start = NULL;
    cr_assert_eq(reki_registry_new(w->rt, &o, &r), REKI_EINVAL, "a restart needs a start");
    /* no start: reki_send_key is EINVAL and takes nothing */
    cr_assert_eq(reki_registry_new(w->rt, NULL, &w->reg), REKI_OK);
    int x;
    cr_assert_eq(reki_send_key(w->reg, "k1", 2, &x), REKI_EINVAL);
    reki_registry_free(w->reg);
    o = vopts(w);
    cr_assert_eq(reki_registry_new(w->rt, &o, &w->reg), REKI_OK);
    cr_assert_eq(reki_send_key(NULL, "k1", 2, &x), REKI_EINVAL);
    cr_assert_eq(reki_send_key(w->reg, NULL, 2, &x), REKI_EINVAL);
    cr_assert_eq(reki_send_key(w->reg, "k1", 0, &x), REKI_EINVAL);
    cr_assert_eq(reki_send_key(w->reg, "k1", REKI_KEY_MAX + 1, &x), REKI_EINVAL);
    reki_pid_t pid;
    cr_assert_eq(reki_await(w->reg, "k1", 2, -2, &pid), REKI_EINVAL);
    cr_assert_eq(reki_await(w->reg, "k1", 2, 0, NULL), REKI_EINVAL);
    cr_assert_eq(reki_await(w->reg, "k1", 2, 0, &pid), REKI_ETIMEDOUT);
    cr_assert_eq(reki_count(w->reg), 0, "nothing was started");
    cr_assert_eq(atomic_load(&w->start_calls), 0);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    world_free(w);
}

Test(virtual, cold_key_starts_and_messages_arrive_in_order)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    world_up(w, &o);
    long n = t_scaled(2000, 50);
    for (long i = 0; i < n; i++)
        cr_assert_eq(send_one(w, 3, 0, i, V_PLAIN), REKI_OK);
    cr_assert(wait_total(w, n));
    reki_pid_t pid, pid2;
    cr_assert_eq(reki_lookup(w->reg, "k3", 2, &pid), REKI_OK);
    cr_assert_eq(reki_await(w->reg, "k3", 2, 0, &pid2), REKI_OK);
    cr_assert_eq(pid, pid2);
    cr_assert_eq(atomic_load(&w->starts), 1, "one actor for the key");
    cr_assert_eq(atomic_load(&w->handled), n);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_STARTED]), 1);
    reki_registry_free(w->reg);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_EXITED]), 1, "EXITED before free returns");
    cr_assert_eq(atomic_load(&w->ev_exit_reason[REKI_EXIT_SHUTDOWN]), 1);
    reki_rt_free(w->rt);
    assert_clean(w);
    cr_assert_eq(atomic_load(&w->dropped), 0);
    world_free(w);
}

/* A start that takes long delays neither its sender nor other keys. */
Test(virtual, slow_start_delays_nothing)
{
    struct vworld *w = world_new();
    w->start_sleep_ms = 600; /* key 0 only */
    reki_registry_opts_t o = vopts(w);
    world_up(w, &o);
    uint64_t t0 = t_now_ms();
    cr_assert_eq(send_one(w, 0, 0, 0, V_PLAIN), REKI_OK);
    cr_assert_eq(send_one(w, 0, 0, 1, V_PLAIN), REKI_OK);
    uint64_t sent = t_now_ms() - t0;
    cr_assert_lt(sent, 300, "the sender of the slow key waited %llu ms", (unsigned long long)sent);
    cr_assert_eq(send_one(w, 1, 1, 0, V_PLAIN), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->handled) >= 1);
    cr_assert(ok);
    uint64_t fast = t_now_ms() - t0;
    cr_assert_eq(atomic_load(&w->last[1][1]), 0, "key 1 handled first");
    cr_assert_lt(fast, 450, "another key waited %llu ms for the slow start",
                 (unsigned long long)fast);
    cr_assert(wait_total(w, 3));
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* ---------------------------------------------------------------- leftovers -- */

/* Messages behind a REKI_STOP go to the next actor, first, in order. */
Test(virtual, leftovers_go_to_the_next_actor_in_order)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    world_up(w, &o);
    atomic_store(&w->gate, 0);
    long n = 50;
    /* The first actor blocks on the gate, then stops with 49 queued. */
    cr_assert_eq(send_one(w, 5, 0, 0, V_GATE), REKI_OK);
    cr_assert_eq(send_one(w, 5, 0, 1, V_STOP), REKI_OK);
    for (long i = 2; i < n; i++)
        cr_assert_eq(send_one(w, 5, 0, i, i % 10 == 0 ? V_STOP : V_PLAIN), REKI_OK);
    atomic_store(&w->gate, 1);
    cr_assert(wait_total(w, n));
    cr_assert_eq(atomic_load(&w->dropped), 0);
    cr_assert_eq(atomic_load(&w->handled), n);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->reasons[REKI_EXIT_NORMAL]) >= 5);
    cr_assert(ok);
    /* one actor per REKI_STOP (seq 1, 10, 20, 30, 40), then one for the rest */
    cr_assert_eq(atomic_load(&w->starts), 6);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* reki_kill and reki_stop: what the actor left goes to the registry's drop,
 * once; messages sent after the kill reach a new actor. */
static void killed_leftovers(bool stop)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.restart = REKI_RESTART_PERMANENT; /* never after KILLED or SHUTDOWN */
    world_up(w, &o);
    atomic_store(&w->gate, 0);
    cr_assert_eq(send_one(w, 7, 0, 0, V_GATE), REKI_OK);
    long n = 20;
    for (long i = 1; i < n; i++)
        cr_assert_eq(send_one(w, 7, 0, i, V_PLAIN), REKI_OK);
    reki_pid_t pid;
    bool ok;
    T_WAIT_UNTIL(ok, reki_lookup(w->reg, "k7", 2, &pid) == REKI_OK);
    cr_assert(ok);
    T_WAIT_UNTIL(ok, atomic_load(&w->in_gate) && reki_mailbox_len(w->rt, pid) == (size_t)(n - 1));
    cr_assert(ok);
    if (stop)
        cr_assert_eq(reki_stop(w->reg, "k7", 2), REKI_OK);
    else
        cr_assert_eq(reki_kill(w->rt, pid), REKI_OK);
    atomic_store(&w->gate, 1);
    T_WAIT_UNTIL(ok, atomic_load(&w->dropped) == n - 1);
    cr_assert(ok, "dropped %ld", atomic_load(&w->dropped));
    cr_assert_eq(atomic_load(&w->handled), 1);
    T_WAIT_UNTIL(ok, atomic_load(&w->terminates) == 1);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&w->starts), 1, "no restart after a kill or reki_stop");
    cr_assert_eq(send_one(w, 7, 0, n, V_PLAIN), REKI_OK);
    cr_assert(wait_total(w, n + 1));
    cr_assert_eq(atomic_load(&w->starts), 2);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

Test(virtual, kill_drops_leftovers_once)
{
    killed_leftovers(false);
}

Test(virtual, stop_drops_leftovers_once)
{
    killed_leftovers(true);
}

/* ------------------------------------------------------------- passivation -- */

Test(virtual, idle_actor_passivates_and_comes_back)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.idle_ms = 40;
    world_up(w, &o);
    uint64_t t0 = t_now_ms();
    cr_assert_eq(send_one(w, 9, 0, 0, V_PLAIN), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->terminates) == 1);
    cr_assert(ok);
    uint64_t lived = t_now_ms() - t0;
    cr_assert_geq(lived, 40, "passivated after %llu ms", (unsigned long long)lived);
    uint64_t quiet = atomic_load(&w->last_term_ms) - atomic_load(&w->last_handle_ms);
    cr_assert_geq(quiet, 40, "passivated %llu ms after its last handle (idle_ms 40)",
                  (unsigned long long)quiet);
    cr_assert_eq(atomic_load(&w->reasons[REKI_EXIT_IDLE]), 1);
    T_WAIT_UNTIL(ok, atomic_load(&w->ev_exit_reason[REKI_EXIT_IDLE]) == 1);
    cr_assert(ok);
    reki_pid_t pid;
    T_WAIT_UNTIL(ok, reki_count(w->reg) == 0);
    cr_assert(ok);
    cr_assert_eq(reki_lookup(w->reg, "k9", 2, &pid), REKI_ENOTFOUND);
    /* activity keeps it: a message every 10 ms for 200 ms */
    cr_assert_eq(send_one(w, 9, 0, 1, V_PLAIN), REKI_OK);
    for (long i = 2; i < 22; i++) {
        t_sleep_ms(10);
        cr_assert_eq(send_one(w, 9, 0, i, V_PLAIN), REKI_OK);
    }
    cr_assert(wait_total(w, 22));
    cr_assert_eq(atomic_load(&w->starts), 2, "busy actors are not passivated");
    T_WAIT_UNTIL(ok, atomic_load(&w->terminates) == 2);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&w->reasons[REKI_EXIT_IDLE]), 2);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    cr_assert_eq(atomic_load(&w->dropped), 0);
    world_free(w);
}

/* Messages racing the idle exit: every one handled, none dropped. */
static void *idle_racer(void *arg)
{
    int s = *(int *)arg;
    struct vworld *w = W;
    long n = t_scaled(3000, 100);
    unsigned seed = (unsigned)s * 7919u + 1;
    for (long i = 0; i < n; i++) {
        int k = (int)(rand_r(&seed) % 4);
        while (send_one(w, k, s, i, V_PLAIN) != REKI_OK)
            ;
        if (rand_r(&seed) % 8 == 0)
            t_sleep_ms(1 + (int)(rand_r(&seed) % 3));
        /* Now and then a pause of several idle periods, so that idle exits
         * happen while the other senders go on, on a loaded machine too
         * (CI's ASan run once saw none in 12,000 messages). */
        if (rand_r(&seed) % 64 == 0)
            t_sleep_ms(5 + (int)(rand_r(&seed) % 6));
    }
    return NULL;
}

Test(virtual, messages_racing_idle_exit_are_not_lost)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.idle_ms = 1;
    world_up(w, &o);
    int ids[4] = {0, 1, 2, 3};
    t_run_threads(4, idle_racer, ids, sizeof ids[0]);
    long total = 4 * t_scaled(3000, 100);
    cr_assert(wait_total(w, total));
    cr_assert_eq(atomic_load(&w->dropped), 0);
    cr_assert_eq(atomic_load(&w->handled), total);
    cr_assert_gt(atomic_load(&w->reasons[REKI_EXIT_IDLE]), 0, "no idle exit happened");
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* Passivated keys leave nothing behind: their entries are reaped. */
Test(virtual, passivated_keys_are_reaped)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.idle_ms = 2;
    o.on_event = NULL;
    world_up(w, &o);
    long n = t_scaled(20000, 500);
    reki_registry_t *reg = w->reg;
    for (long i = 0; i < n; i++) {
        char kb[32];
        int kl = snprintf(kb, sizeof kb, "k0-%ld", i); /* key_index 0 */
        struct vmsg *m = malloc(sizeof *m);
        *m = (struct vmsg){0, 0, i, V_PLAIN};
        cr_assert_eq(reki_send_key(reg, kb, (size_t)kl, m), REKI_OK);
    }
    cr_assert(wait_total(w, n));
    bool ok;
    T_WAIT_UNTIL(ok, reki_count(reg) == 0);
    cr_assert(ok);
    reki_registry_stats_t st;
    /* the reaper works as keys go free, down to its floor of 256 entries */
    size_t bound = (size_t)n / 4 > 256 ? (size_t)n / 4 : 256;
    T_WAIT_UNTIL(ok, reki_registry_stats(reg, &st) == REKI_OK && st.entries <= bound);
    cr_assert(ok, "entries %zu of %ld keys", st.entries, n);
    reki_registry_free(reg);
    reki_rt_free(w->rt);
    cr_assert_eq(atomic_load(&w->dup), 0);
    world_free(w);
}

/* ---------------------------------------------------------------- restarts -- */

Test(virtual, transient_restarts_after_crash_and_gives_up_past_intensity)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.restart = REKI_RESTART_TRANSIENT;
    o.max_restarts = 3;
    o.restart_period_ms = 60000;
    world_up(w, &o);
    cr_assert_eq(send_one(w, 2, 0, 0, V_CRASH), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->starts) == 2 && reki_count(w->reg) == 1);
    cr_assert(ok, "restarted after the crash, with no message waiting");
    /* normal stop: TRANSIENT does not restart */
    cr_assert_eq(send_one(w, 2, 0, 1, V_STOP), REKI_OK);
    T_WAIT_UNTIL(ok, atomic_load(&w->terminates) == 2 && reki_count(w->reg) == 0);
    cr_assert(ok);
    t_sleep_ms(50);
    cr_assert_eq(atomic_load(&w->starts), 2);
    /* The key went free: the count starts over.  A fresh start, then
     * crashes: restarts 1, 2 and 3 are allowed, the fourth crash gives up. */
    for (long i = 2; i < 6; i++) {
        cr_assert_eq(send_one(w, 2, 0, i, V_CRASH), REKI_OK);
        T_WAIT_UNTIL(ok, atomic_load(&w->handled) == i + 1);
        cr_assert(ok);
    }
    T_WAIT_UNTIL(ok, atomic_load(&w->ev[REKI_EVENT_GAVE_UP]) == 1);
    cr_assert(ok, "gave up");
    cr_assert_eq(atomic_load(&w->ev_gaveup_detail), 3);
    T_WAIT_UNTIL(ok, reki_count(w->reg) == 0 && atomic_load(&w->terminates) == 6);
    cr_assert(ok);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(w->reg, "k2", 2, &pid), REKI_ENOTFOUND);
    /* a new message starts the key afresh */
    cr_assert_eq(send_one(w, 2, 0, 6, V_PLAIN), REKI_OK);
    cr_assert(wait_total(w, 7));
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_STARTED]), atomic_load(&w->starts));
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_EXITED]), atomic_load(&w->terminates));
    world_free(w);
}

Test(virtual, permanent_restarts_after_normal_exit_temporary_never)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.restart = REKI_RESTART_PERMANENT;
    o.max_restarts = 100;
    world_up(w, &o);
    cr_assert_eq(send_one(w, 1, 0, 0, V_STOP), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->starts) == 2 && reki_count(w->reg) == 1);
    cr_assert(ok);
    reki_registry_free(w->reg);
    w->reg = NULL;
    /* TEMPORARY: a crash with nothing queued leaves the key free */
    o.restart = REKI_RESTART_TEMPORARY;
    cr_assert_eq(reki_registry_new(w->rt, &o, &w->reg), REKI_OK);
    cr_assert_eq(send_one(w, 1, 0, 1, V_CRASH), REKI_OK);
    T_WAIT_UNTIL(ok, atomic_load(&w->terminates) == 3);
    cr_assert(ok);
    t_sleep_ms(50);
    cr_assert_eq(atomic_load(&w->starts), 3);
    cr_assert_eq(reki_count(w->reg), 0);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* Between exit and restart, lookups miss and reki_await / lookup_or_start
 * wait for the restarted actor; it starts after terminate returned. */
Test(virtual, restart_keeps_the_key_bound_and_waits_for_terminate)
{
    struct vworld *w = world_new();
    w->terminate_sleep_ms = 150;
    reki_registry_opts_t o = vopts(w);
    o.restart = REKI_RESTART_TRANSIENT;
    world_up(w, &o);
    cr_assert_eq(send_one(w, 4, 0, 0, V_PLAIN), REKI_OK);
    reki_pid_t first, p2, p3;
    cr_assert_eq(reki_await(w->reg, "k4", 2, t_wait_ms(), &first), REKI_OK);
    cr_assert_eq(send_one(w, 4, 0, 1, V_CRASH), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, reki_lookup(w->reg, "k4", 2, &p2) == REKI_ENOTFOUND);
    cr_assert(ok);
    cr_assert_eq(reki_await(w->reg, "k4", 2, t_wait_ms(), &p2), REKI_OK);
    cr_assert_neq(p2, first);
    cr_assert_eq(reki_lookup_or_start(w->reg, "k4", 2, v_start, w, -1, &p3), REKI_OK);
    cr_assert_eq(p3, p2);
    cr_assert_eq(atomic_load(&w->overlap), 0, "the restart overlapped terminate");
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* ----------------------------------------------------------- failed starts -- */

Test(virtual, failed_start_drops_queued_messages_once)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    world_up(w, &o);
    atomic_store(&w->fail_key_once[6], 1);
    cr_assert_eq(send_one(w, 6, 0, 0, V_PLAIN), REKI_OK, "REKI_OK even if the start fails");
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&w->dropped) == 1);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_START_FAILED]), 1);
    cr_assert_eq(send_one(w, 6, 0, 1, V_PLAIN), REKI_OK);
    cr_assert(wait_total(w, 2));
    cr_assert_eq(atomic_load(&w->handled), 1);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* A full mailbox refuses (the message stays the caller's); messages queued
 * for the key are not refused when they move into the new actor. */
Test(virtual, bound_refuses_live_sends_not_queued_ones)
{
    struct vworld *w = world_new();
    w->max_queue = 4;
    w->start_sleep_ms = 200; /* key 0: messages queue while it starts */
    reki_registry_opts_t o = vopts(w);
    world_up(w, &o);
    atomic_store(&w->gate, 0);
    cr_assert_eq(send_one(w, 0, 0, 0, V_GATE), REKI_OK);
    for (long i = 1; i < 10; i++)
        cr_assert_eq(send_one(w, 0, 0, i, V_PLAIN), REKI_OK, "queued for the key: never full");
    reki_pid_t pid;
    cr_assert_eq(reki_await(w->reg, "k0", 2, t_wait_ms(), &pid), REKI_OK);
    int rc = send_one(w, 0, 0, 10, V_PLAIN);
    cr_assert_eq(rc, REKI_EFULL, "live actor at its bound: %d", rc);
    atomic_store(&w->gate, 1);
    cr_assert(wait_total(w, 10));
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* ------------------------------------------------------------------- stress -- */

struct sender_arg {
    int id;
    long n;
};

static void *stress_sender(void *arg)
{
    struct sender_arg *a = arg;
    struct vworld *w = W;
    unsigned seed = (unsigned)a->id * 104729u + 17;
    for (long i = 0; i < a->n; i++) {
        int k = (int)(rand_r(&seed) % 16);
        int rc;
        while ((rc = send_one(w, k, a->id, i, V_PLAIN)) != REKI_OK)
            if (rc != REKI_ENOMEM)
                abort();
        if (rand_r(&seed) % 512 == 0)
            t_sleep_ms(2); /* let some keys go idle */
    }
    return NULL;
}

/* Several senders; actors stop every few messages, crash now and then, and
 * are passivated now and then: every message counted once, in order. */
Test(virtual, stress_stop_crash_idle_every_message_once)
{
    struct vworld *w = world_new();
    w->stop_every = 5;
    w->crash_every = 4;
    reki_registry_opts_t o = vopts(w);
    o.idle_ms = 1;
    o.restart = REKI_RESTART_TRANSIENT;
    o.max_restarts = 1000000;
    world_up(w, &o);
    struct sender_arg args[6];
    long n = t_scaled(20000, 300);
    for (int i = 0; i < 6; i++)
        args[i] = (struct sender_arg){i, n};
    t_run_threads(6, stress_sender, args, sizeof args[0]);
    cr_assert(wait_total(w, 6 * n));
    cr_assert_eq(atomic_load(&w->dropped), 0);
    cr_assert_eq(atomic_load(&w->handled), 6 * n);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    cr_assert_gt(atomic_load(&w->reasons[REKI_EXIT_NORMAL]), 0);
    cr_assert_gt(atomic_load(&w->reasons[REKI_EXIT_ABNORMAL]), 0);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_STARTED]), atomic_load(&w->starts));
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_EXITED]), atomic_load(&w->terminates));
    cr_assert_eq(atomic_load(&w->starts), atomic_load(&w->terminates));
    world_free(w);
}

/* Freeing the registry with messages queued everywhere: each is handled or
 * dropped exactly once, and every event is reported before free returns. */
Test(virtual, registry_free_accounts_for_every_message)
{
    struct vworld *w = world_new();
    w->stop_every = 3;
    reki_registry_opts_t o = vopts(w);
    o.restart = REKI_RESTART_PERMANENT;
    o.max_restarts = 1000000;
    world_up(w, &o);
    long n = t_scaled(5000, 200);
    for (long i = 0; i < n; i++)
        cr_assert_eq(send_one(w, (int)(i % 32), 0, i, V_PLAIN), REKI_OK);
    reki_registry_free(w->reg);
    cr_assert_eq(atomic_load(&w->handled) + atomic_load(&w->dropped), n);
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_STARTED]), atomic_load(&w->starts));
    cr_assert_eq(atomic_load(&w->ev[REKI_EVENT_EXITED]), atomic_load(&w->starts));
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/* rt_free alone (the registry is freed by it). */
Test(virtual, rt_free_accounts_for_every_message)
{
    struct vworld *w = world_new();
    w->stop_every = 2;
    reki_registry_opts_t o = vopts(w);
    o.idle_ms = 1;
    world_up(w, &o);
    long n = t_scaled(5000, 200);
    for (long i = 0; i < n; i++)
        cr_assert_eq(send_one(w, (int)(i % 32), 0, i, V_PLAIN), REKI_OK);
    reki_rt_free(w->rt);
    cr_assert_eq(atomic_load(&w->handled) + atomic_load(&w->dropped), n);
    assert_clean(w);
    world_free(w);
}

/* An inbox registered under a key (a start may return any live pid): what
 * was queued for the key while it started reaches the inbox, in order, and
 * what the inbox never received goes to its own drop when it is freed. */
static reki_inbox_t *the_inbox;

static int inbox_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)rt;
    (void)key;
    (void)keylen;
    (void)arg;
    t_sleep_ms(100); /* messages queue for the key meanwhile */
    *out = reki_inbox_pid(the_inbox);
    return 0;
}

Test(virtual, inbox_under_a_key_gets_queued_messages)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.start = inbox_start;
    o.on_event = NULL;
    world_up(w, &o);
    cr_assert_eq(reki_inbox_new(w->rt, &the_inbox), REKI_OK);
    cr_assert_eq(reki_inbox_set_drop(the_inbox, v_drop), REKI_OK);
    for (long i = 0; i < 5; i++)
        cr_assert_eq(send_one(w, 8, 0, i, V_PLAIN), REKI_OK);
    for (long i = 0; i < 3; i++) {
        void *m;
        cr_assert_eq(reki_inbox_recv(the_inbox, &m, t_wait_ms()), REKI_OK);
        cr_assert_eq(((struct vmsg *)m)->seq, i, "in order");
        note(w, m, false);
        free(m);
    }
    for (long i = 5; i < 7; i++)
        cr_assert_eq(send_one(w, 8, 0, i, V_PLAIN), REKI_OK);
    reki_inbox_free(the_inbox);
    cr_assert_eq(atomic_load(&w->dropped), 4, "the inbox's drop got what it never received");
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    cr_assert_eq(atomic_load(&w->dup), 0);
    world_free(w);
}

/* Starts that wait for other keys' starts: the start threads grow past one
 * per CPU when every one is stuck, so the inner starts run (a start thread
 * pool that only grew when a start was queued left them waiting forever). */
static reki_registry_t *nest_reg;
static atomic_int nest_rc[8];

static int nest_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    int k = key_index(key, keylen);
    if (k < 4) {
        /* an outer key: start key k + 4 by sending to it, and wait for it */
        char kb[16];
        size_t kl = vkey(kb, k + 4);
        struct vmsg *m = malloc(sizeof *m);
        *m = (struct vmsg){k + 4, 1, k, V_PLAIN};
        int rc = reki_send_key(nest_reg, kb, kl, m);
        reki_pid_t inner;
        if (rc == REKI_OK)
            rc = reki_await(nest_reg, kb, kl, 20000, &inner);
        atomic_store(&nest_rc[k], rc == REKI_OK ? 1 : rc);
        /* its own key, from its own start: an error, not a wait */
        reki_pid_t me;
        if (reki_await(nest_reg, key, keylen, 20000, &me) != REKI_EDEADLK)
            atomic_store(&nest_rc[k], -999);
    }
    return v_start(rt, key, keylen, arg, out);
}

Test(virtual, starts_waiting_on_other_starts_get_threads)
{
    struct vworld *w = world_new();
    reki_registry_opts_t o = vopts(w);
    o.start = nest_start;
    world_up(w, &o);
    nest_reg = w->reg;
    uint64_t t0 = t_now_ms();
    for (int k = 0; k < 4; k++)
        cr_assert_eq(send_one(w, k, 0, k, V_PLAIN), REKI_OK);
    cr_assert(wait_total(w, 8));
    uint64_t took = t_now_ms() - t0;
    for (int k = 0; k < 4; k++)
        cr_assert_eq(atomic_load(&nest_rc[k]), 1, "outer start %d: %d", k,
                     atomic_load(&nest_rc[k]));
    cr_assert_lt(took, 5000, "nested starts took %llu ms", (unsigned long long)took);
    reki_registry_free(w->reg);
    reki_rt_free(w->rt);
    assert_clean(w);
    world_free(w);
}

/*
 * Request and reply (reki_call, reki_caller, reki_reply): round trips,
 * deferred replies, late replies refused and kept by the replier, calls to
 * oneself, to the dead, to a full mailbox, a target that exits before it
 * replies, and the races: reply against timeout, two replies to one call.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
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

TestSuite(call, .init = setup, .fini = teardown, .timeout = 120.0);

enum op {
    ECHO,       /* reply value + 1 now */
    DEFER,      /* keep the caller; the next KICK replies to it */
    KICK,       /* reply value to the deferred caller */
    NO_REPLY,   /* never reply */
    STOP,       /* exit without replying */
    SLEEP_ECHO, /* sleep value ms, then reply; count refused replies */
    CALL_SELF,  /* reki_call on self: the result goes to `self_rc` */
    CALL_OTHER, /* reki_call to `other` from inside handle, reply its reply */
    GATE,       /* wait for the gate to open */
    CALLER_OF,  /* reply reki_caller() itself */
    NESTED      /* free an inbox and fail a spawn (both drain a mailbox), then reply */
};

struct req {
    enum op op;
    long value;
};

struct server {
    reki_pid_t deferred, other;
    atomic_long refused, replied, entered, handled, dropped, nonzero_caller_on_send;
    atomic_int self_rc, gate;
};

static struct server *sink;

static struct req *req(enum op op, long value)
{
    struct req *r = malloc(sizeof(*r));
    cr_assert(r);
    r->op = op;
    r->value = value;
    return r;
}

static long *boxed(long v)
{
    long *b = malloc(sizeof(*b));
    *b = v;
    return b;
}

static void reply_or_keep(struct server *s, reki_pid_t to, long v)
{
    long *b = boxed(v);
    int rc = reki_reply(rt, to, b);
    if (rc == REKI_OK) {
        atomic_fetch_add(&s->replied, 1);
    } else {
        if (rc != REKI_EDEAD)
            atomic_store(&s->self_rc, rc);
        atomic_fetch_add(&s->refused, 1);
        free(b); /* refused: still ours */
    }
}

static int failing_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    (void)arg;
    (void)state;
    return -1;
}

static reki_next_t never_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static const reki_behavior_t failing_b = {.init = failing_init, .handle = never_handle};

static reki_next_t server_handle(void *state, void *msg, reki_pid_t self)
{
    struct server *s = state;
    struct req *r = msg;
    reki_pid_t caller = reki_caller();
    atomic_fetch_add(&s->entered, 1);
    reki_next_t next = REKI_CONTINUE;
    switch (r->op) {
    case ECHO:
        if (caller == 0)
            atomic_fetch_add(&s->nonzero_caller_on_send, 0);
        reply_or_keep(s, caller, r->value + 1);
        break;
    case DEFER: s->deferred = caller; break;
    case KICK:
        if (caller != 0)
            atomic_fetch_add(&s->nonzero_caller_on_send, 1);
        reply_or_keep(s, s->deferred, r->value);
        break;
    case NO_REPLY: break;
    case STOP: next = REKI_STOP; break;
    case SLEEP_ECHO:
        t_sleep_ms((int)r->value);
        reply_or_keep(s, caller, r->value);
        break;
    case CALL_SELF: {
        void *rep = NULL;
        atomic_store(&s->self_rc, reki_call(rt, self, r, 1000, &rep));
        break;
    }
    case CALL_OTHER: {
        void *rep = NULL;
        struct req *inner = req(ECHO, r->value);
        int rc = reki_call(rt, s->other, inner, 5000, &rep);
        if (rc == REKI_OK) {
            reply_or_keep(s, caller, *(long *)rep);
            free(rep);
        } else {
            free(inner);
            reply_or_keep(s, caller, -1);
        }
        break;
    }
    case GATE:
        while (!atomic_load(&s->gate))
            t_sleep_ms(1);
        break;
    case CALLER_OF: reply_or_keep(s, caller, (long)caller); break;
    case NESTED: {
        reki_inbox_t *in;
        if (reki_inbox_new(rt, &in) == REKI_OK) {
            reki_inbox_set_drop(in, free);
            reki_send(rt, reki_inbox_pid(in), boxed(1)); /* left for free: dropped */
            reki_inbox_free(in);
        }
        reki_pid_t dead;
        reki_spawn(rt, &failing_b, NULL, NULL, &dead);
        reply_or_keep(s, reki_caller(), r->value);
        break;
    }
    }
    free(r);
    atomic_fetch_add(&s->handled, 1); /* last: what handle wrote is visible */
    return next;
}

static void server_drop(void *msg)
{
    atomic_fetch_add(&sink->dropped, 1);
    free(msg);
}

static const reki_behavior_t server_b = {.handle = server_handle, .drop = server_drop};

static reki_pid_t spawn_server(struct server *s, unsigned flags, uint32_t max_queue)
{
    sink = s;
    reki_spawn_opts_t o = {.flags = flags, .max_queue = max_queue};
    reki_pid_t pid;
    cr_assert_eq(reki_spawn(rt, &server_b, s, &o, &pid), REKI_OK);
    return pid;
}

static long call_long(reki_pid_t to, enum op op, long v, int timeout_ms, int *rc_out)
{
    struct req *r = req(op, v);
    void *rep = NULL;
    int rc = reki_call(rt, to, r, timeout_ms, &rep);
    *rc_out = rc;
    if (rc != REKI_OK) {
        cr_assert(rep == r || rep == NULL, "*reply %p on failure %d", rep, rc);
        free(rep); /* msg when still ours, else NULL */
        return 0;
    }
    long out = *(long *)rep;
    free(rep);
    return out;
}

Test(call, round_trip_light_and_dedicated)
{
    static struct server s1, s2;
    reki_pid_t light = spawn_server(&s1, 0, 0);
    reki_pid_t ded = spawn_server(&s2, REKI_SPAWN_DEDICATED, 0);
    for (long i = 0; i < 200; i++) {
        int rc;
        cr_assert_eq(call_long(light, ECHO, i, -1, &rc), i + 1);
        cr_assert_eq(rc, REKI_OK);
        cr_assert_eq(call_long(ded, ECHO, i, 5000, &rc), i + 1);
        cr_assert_eq(rc, REKI_OK);
    }
    cr_assert_eq(reki_caller(), 0, "a plain thread handles no call");
}

Test(call, caller_is_zero_for_a_send_and_names_a_live_pid_during_a_call)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    int rc;
    long caller = call_long(pid, CALLER_OF, 0, 5000, &rc);
    cr_assert_eq(rc, REKI_OK);
    cr_assert_neq(caller, 0);
    cr_assert(!reki_alive(rt, (reki_pid_t)caller), "the reply address outlived its call");
    /* A plain send: reki_caller() is 0 inside handle (KICK counts nonzero). */
    cr_assert_eq(reki_send(rt, pid, req(DEFER, 0)), REKI_OK);
    cr_assert_eq(reki_send(rt, pid, req(KICK, 1)), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.handled) == 3);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&s.nonzero_caller_on_send), 0);
    cr_assert_eq(t_ldl(&s.refused), 1, "a reply to pid 0 was not refused");
}

struct bg_call {
    reki_pid_t to;
    enum op op;
    long value;
    int timeout_ms;
    int rc;
    long result;
    pthread_t th;
};

static void *bg_call_main(void *arg)
{
    struct bg_call *c = arg;
    c->result = call_long(c->to, c->op, c->value, c->timeout_ms, &c->rc);
    return NULL;
}

static void bg_start(struct bg_call *c)
{
    cr_assert_eq(pthread_create(&c->th, NULL, bg_call_main, c), 0);
}

/* Draining another mailbox inside handle (a failed spawn, an inbox freed)
 * must not clear reki_caller: the reply still reaches the call. */
Test(call, caller_survives_nested_drains_inside_handle)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    int rc;
    cr_assert_eq(call_long(pid, NESTED, 7, 5000, &rc), 7);
    cr_assert_eq(rc, REKI_OK);
    cr_assert_eq(t_ldl(&s.refused), 0);
}

Test(call, deferred_reply_from_a_later_message)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    struct bg_call c = {.to = pid, .op = DEFER, .timeout_ms = 10000};
    bg_start(&c);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.handled) == 1);
    cr_assert(ok);
    cr_assert_eq(reki_send(rt, pid, req(KICK, 77)), REKI_OK);
    pthread_join(c.th, NULL);
    cr_assert_eq(c.rc, REKI_OK);
    cr_assert_eq(c.result, 77);
}

Test(call, a_late_reply_is_refused_and_stays_the_repliers)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    struct req *r = req(SLEEP_ECHO, 200);
    void *rep = (void *)1;
    cr_assert_eq(reki_call(rt, pid, r, 20, &rep), REKI_ETIMEDOUT);
    cr_assert_null(rep, "on a timeout *reply says the message was taken");
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.refused) == 1);
    cr_assert(ok, "the late reply was not refused");
    cr_assert_eq(t_ldl(&s.replied), 0);
}

Test(call, calling_oneself_is_edeadlk)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    atomic_store(&s.self_rc, 1);
    struct req *r = req(CALL_SELF, 0);
    cr_assert_eq(reki_send(rt, pid, r), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldi(&s.self_rc) != 1);
    cr_assert(ok);
    cr_assert_eq(t_ldi(&s.self_rc), REKI_EDEADLK);
}

Test(call, a_light_actor_may_call_another)
{
    static struct server a, b;
    reki_pid_t pb = spawn_server(&b, 0, 0);
    a.other = pb;
    reki_pid_t pa = spawn_server(&a, 0, 0);
    sink = &a;
    int rc;
    cr_assert_eq(call_long(pa, CALL_OTHER, 41, 5000, &rc), 42);
    cr_assert_eq(rc, REKI_OK);
}

Test(call, the_dead_the_full_and_bad_input)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, REKI_SPAWN_DEDICATED, 1);
    struct req *r = req(ECHO, 1);
    void *rep = (void *)1;
    cr_assert_eq(reki_call(NULL, pid, r, 10, &rep), REKI_EINVAL);
    cr_assert_eq(reki_call(rt, pid, r, 10, NULL), REKI_EINVAL);
    cr_assert_eq(reki_call(rt, pid, r, -2, &rep), REKI_EINVAL);
    cr_assert_eq(reki_reply(NULL, pid, r), REKI_EINVAL);
    cr_assert_eq(reki_reply(rt, 0, r), REKI_EINVAL);
    cr_assert_eq(reki_reply(rt, pid, r), REKI_EDEAD, "an actor is not a reply address");
    cr_assert_eq(reki_call(rt, 0, r, 10, &rep), REKI_EDEAD);
    /* Full: one taken (waiting on the gate), one queued. */
    cr_assert_eq(reki_send(rt, pid, req(GATE, 0)), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.entered) == 1);
    cr_assert(ok);
    cr_assert_eq(reki_send(rt, pid, req(NO_REPLY, 0)), REKI_OK);
    cr_assert_eq(reki_call(rt, pid, r, 1000, &rep), REKI_EFULL);
    cr_assert_eq(rep, r);
    atomic_store(&s.gate, 1);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    T_WAIT_UNTIL(ok, !reki_alive(rt, pid));
    rep = NULL;
    cr_assert_eq(reki_call(rt, pid, r, 1000, &rep), REKI_EDEAD);
    cr_assert_eq(rep, r, "refused: *reply must give msg back");
    cr_assert_eq(reki_call(rt, pid, r, 1000, &rep), REKI_EDEAD);
    free(r); /* every refusal left it with us */
    cr_assert_eq(t_ldl(&s.entered), 1);
}

Test(call, a_target_that_exits_before_replying_ends_the_call)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    uint64_t t0 = t_now_ms();
    void *rep = (void *)1;
    cr_assert_eq(reki_call(rt, pid, req(STOP, 0), 10000, &rep), REKI_EDEAD);
    cr_assert_null(rep, "the message was handled: *reply must say it was taken");
    cr_assert_lt(t_now_ms() - t0, 5000, "the call waited out its timeout");
}

Test(call, a_target_killed_while_the_call_waits_drops_the_message)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, REKI_SPAWN_DEDICATED, 0);
    cr_assert_eq(reki_send(rt, pid, req(GATE, 0)), REKI_OK);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.entered) == 1);
    struct bg_call c = {.to = pid, .op = ECHO, .value = 1, .timeout_ms = 20000};
    bg_start(&c);
    T_WAIT_UNTIL(ok, reki_mailbox_len(rt, pid) == 1);
    cr_assert(ok);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    atomic_store(&s.gate, 1);
    pthread_join(c.th, NULL);
    cr_assert_eq(c.rc, REKI_EDEAD);
    cr_assert_eq(t_ldl(&s.dropped), 1, "the call's message was not dropped once");
}

Test(call, a_reply_address_refuses_sends_and_timers_and_dies_by_kill)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    struct bg_call c = {.to = pid, .op = DEFER, .timeout_ms = 20000};
    bg_start(&c);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.handled) == 1);
    cr_assert(ok);
    reki_pid_t caller = s.deferred;
    cr_assert(reki_alive(rt, caller));
    int x;
    cr_assert_eq(reki_send(rt, caller, &x), REKI_EDEAD);
    cr_assert_eq(reki_send_after(rt, caller, &x, 10, NULL), REKI_EDEAD);
    cr_assert_eq(reki_kill(rt, caller), REKI_OK);
    pthread_join(c.th, NULL);
    cr_assert_eq(c.rc, REKI_EDEAD);
    T_WAIT_UNTIL(ok, !reki_alive(rt, caller));
    cr_assert(ok);
}

Test(call, rt_free_ends_a_waiting_call)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    struct bg_call c = {.to = pid, .op = NO_REPLY, .timeout_ms = -1};
    bg_start(&c);
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.handled) == 1);
    cr_assert(ok);
    reki_rt_free(rt);
    rt = NULL;
    pthread_join(c.th, NULL);
    cr_assert_eq(c.rc, REKI_EDEAD);
}

Test(call, an_inbox_answers_a_call)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    struct bg_call c = {.to = reki_inbox_pid(in), .op = ECHO, .value = 5, .timeout_ms = 10000};
    bg_start(&c);
    void *m;
    cr_assert_eq(reki_inbox_recv(in, &m, 10000), REKI_OK);
    reki_pid_t caller = reki_caller();
    cr_assert_neq(caller, 0);
    cr_assert_eq(reki_reply(rt, caller, boxed(((struct req *)m)->value * 2)), REKI_OK);
    free(m);
    pthread_join(c.th, NULL);
    cr_assert_eq(c.rc, REKI_OK);
    cr_assert_eq(c.result, 10);
    reki_inbox_free(in);
}

/* --------------------------------------------------------------- races -- */

struct replier {
    reki_pid_t caller;
    atomic_int *go;
    int rc;
};

static void *replier_main(void *arg)
{
    struct replier *r = arg;
    t_wait_flag(r->go);
    long *b = boxed(1);
    r->rc = reki_reply(rt, r->caller, b);
    if (r->rc != REKI_OK)
        free(b);
    return NULL;
}

Test(call, of_two_replies_exactly_one_wins)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    long rounds = t_scaled(300, 20);
    for (long i = 0; i < rounds; i++) {
        struct bg_call c = {.to = pid, .op = DEFER, .timeout_ms = 20000};
        long before = t_ldl(&s.handled);
        bg_start(&c);
        bool ok;
        T_WAIT_UNTIL(ok, t_ldl(&s.handled) == before + 1);
        cr_assert(ok);
        atomic_int go = 0;
        struct replier r[3];
        pthread_t th[3];
        for (int k = 0; k < 3; k++) {
            r[k] = (struct replier){.caller = s.deferred, .go = &go};
            cr_assert_eq(pthread_create(&th[k], NULL, replier_main, &r[k]), 0);
        }
        atomic_store(&go, 1);
        int wins = 0;
        for (int k = 0; k < 3; k++) {
            pthread_join(th[k], NULL);
            wins += r[k].rc == REKI_OK;
            cr_assert(r[k].rc == REKI_OK || r[k].rc == REKI_EDEAD);
        }
        pthread_join(c.th, NULL);
        cr_assert_eq(wins, 1);
        cr_assert_eq(c.rc, REKI_OK);
    }
}

struct racer {
    reki_pid_t pid;
    long ok, timedout;
};

static void *timeout_racer(void *arg)
{
    struct racer *r = arg;
    long n = t_scaled(2000, 100);
    for (long i = 0; i < n; i++) {
        int rc;
        /* The server sleeps 0-2 ms; the call waits 1 ms: both outcomes. */
        call_long(r->pid, SLEEP_ECHO, i % 3, 1, &rc);
        cr_assert(rc == REKI_OK || rc == REKI_ETIMEDOUT, "rc %d", rc);
        if (rc == REKI_OK)
            r->ok++;
        else
            r->timedout++;
    }
    return NULL;
}

/* Each call ends exactly one way: its reply is taken (call OK, reply OK) or
 * refused (call ETIMEDOUT, reply EDEAD kept by the replier). */
Test(call, reply_racing_timeout_is_decided_once)
{
    static struct server s;
    reki_pid_t pid = spawn_server(&s, 0, 0);
    enum { THREADS = 4 };
    struct racer r[THREADS] = {0};
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i].pid = pid;
        cr_assert_eq(pthread_create(&th[i], NULL, timeout_racer, &r[i]), 0);
    }
    long ok_calls = 0, timedout = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok_calls += r[i].ok;
        timedout += r[i].timedout;
    }
    bool ok;
    T_WAIT_UNTIL(ok, t_ldl(&s.replied) + t_ldl(&s.refused) == ok_calls + timedout);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&s.replied), ok_calls, "%ld replies taken, %ld calls returned OK",
                 t_ldl(&s.replied), ok_calls);
    cr_assert_eq(t_ldl(&s.refused), timedout);
    cr_assert_eq(t_ldi(&s.self_rc), 0, "a reply failed with something else than REKI_EDEAD");
}

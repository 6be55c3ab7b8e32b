/*
 * Shared fixtures of the unit tests (see support.h).
 */
#include "support.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ knobs -- */

static double env_double(const char *name, double fallback)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return fallback;
    char *end;
    double v = strtod(s, &end);
    return (end != s && v > 0) ? v : fallback;
}

double t_scale(void)
{
    return env_double("REKI_TEST_SCALE", 1.0);
}

long t_scaled(long n, long floor)
{
    long v = (long)((double)n * t_scale());
    return v < floor ? floor : v;
}

int t_settle_ms(void)
{
    return (int)env_double("REKI_TEST_SETTLE_MS", 200);
}

int t_wait_ms(void)
{
    return (int)env_double("REKI_TEST_WAIT_MS", 60000);
}

void t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void t_backoff(unsigned *polls)
{
    if ((*polls)++ < 1000)
        sched_yield();
    else
        t_sleep_ms(1);
}

bool t_wait_flag(atomic_int *flag)
{
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(flag) != 0);
    return ok;
}

/* ------------------------------------------------------------ probe -- */

long t_ldl(atomic_long *a)
{
    return atomic_load(a);
}

int t_ldi(atomic_int *a)
{
    return atomic_load(a);
}

void probe_reset(struct probe *p)
{
    memset(p, 0, sizeof *p);
}

void probe_note_reason(atomic_long *by_reason, struct probe *p, int reason)
{
    if (reason < 0 || reason > 4)
        atomic_fetch_add(&p->bad_reasons, 1);
    else
        atomic_fetch_add(&by_reason[reason], 1);
}

/* ---------------------------------------------------- test messages -- */

/* Messages carry no context, so drops count into one probe per test
 * process (Criterion runs each test in a process of its own). */
static struct probe *_Atomic drop_probe;

void t_set_drop_probe(struct probe *p)
{
    atomic_store(&drop_probe, p);
}

int t_fixture_up(struct probe *p, reki_rt_t **rt, reki_registry_t **reg)
{
    probe_reset(p);
    t_set_drop_probe(p);
    int rc = reki_rt_new(NULL, rt);
    if (rc == REKI_OK && reg != NULL)
        rc = reki_registry_new(*rt, NULL, reg);
    return rc;
}

void t_fixture_down(reki_rt_t **rt, reki_registry_t **reg)
{
    if (reg != NULL) {
        reki_registry_free(*reg);
        *reg = NULL;
    }
    reki_rt_free(*rt);
    *rt = NULL;
}

void t_drop(void *msg)
{
    struct probe *p = atomic_load(&drop_probe);
    if (p != NULL)
        atomic_fetch_add(&p->dropped, 1);
    free(msg);
}

static int send_msg(reki_rt_t *rt, reki_pid_t to, struct tmsg *m)
{
    int rc = reki_send(rt, to, m);
    if (rc != REKI_OK)
        free(m); /* refused: the message is still ours */
    return rc;
}

int t_send(reki_rt_t *rt, reki_pid_t to, int kind, long value)
{
    struct tmsg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return REKI_ENOMEM;
    m->kind = kind;
    m->value = value;
    return send_msg(rt, to, m);
}

int t_send_gate(reki_rt_t *rt, reki_pid_t to, atomic_int *gate)
{
    struct tmsg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return REKI_ENOMEM;
    m->kind = T_GATE;
    m->gate = gate;
    return send_msg(rt, to, m);
}

/* ---------------------------------------------------- counter actor -- */

struct counter {
    struct counter_args a;
    long value;
    uint32_t next_seq[64];
};

static int counter_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    const struct counter_args *a = arg;
    if (a->init_error != 0)
        return a->init_error;
    struct counter *c = calloc(1, sizeof *c);
    if (c == NULL)
        return REKI_ENOMEM;
    c->a = *a;
    c->value = a->initial;
    if (a->exclusive != NULL) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(a->exclusive, &expect, 1))
            atomic_fetch_add(&a->probe->violations, 1);
    }
    atomic_fetch_add(&a->probe->inits, 1);
    *state = c;
    return 0;
}

static void counter_reply(struct counter *c, reki_pid_t to)
{
    long *v = malloc(sizeof *v);
    if (v == NULL) {
        atomic_fetch_add(&c->a.probe->violations, 1);
        return;
    }
    *v = c->value;
    if (reki_send(c->a.rt, to, v) != REKI_OK)
        free(v); /* the asker gave up and freed its inbox */
}

static void counter_seq(struct counter *c, long value)
{
    long sender = value >> 32;
    uint32_t seq = (uint32_t)(value & 0xffffffffL);
    if (sender < 0 || sender >= 64 || c->next_seq[sender] != seq)
        atomic_fetch_add(&c->a.probe->violations, 1);
    else
        c->next_seq[sender] = seq + 1;
}

/* Calls reki_lookup_or_start on the actor's own key from inside one of its
 * callbacks; bounded, so that a library that waits fails with ETIMEDOUT. */
static void counter_reenter(struct counter *c)
{
    struct start_ctx s;
    start_ctx_init(&s, c->a.rt, c->a.probe);
    reki_pid_t pid;
    int rc = reki_lookup_or_start(c->a.reenter_reg, c->a.reenter_key, strlen(c->a.reenter_key),
                                  t_start, &s, t_wait_ms(), &pid);
    atomic_store(c->a.reenter_rc, rc);
}

static reki_next_t counter_handle(void *state, void *msg, reki_pid_t self)
{
    struct counter *c = state;
    struct tmsg *m = msg;
    reki_next_t next = REKI_CONTINUE;
    atomic_fetch_add(&c->a.probe->handled, 1);
    switch (m->kind) {
    case T_INCR: c->value += m->value; break;
    case T_GET: counter_reply(c, m->reply); break;
    case T_STOP: next = REKI_STOP; break;
    case T_CRASH: next = REKI_CRASH; break;
    case T_ODD: next = (reki_next_t)7; break;
    case T_KILL_SELF:
        if (reki_kill(c->a.rt, self) != REKI_OK)
            atomic_fetch_add(&c->a.probe->violations, 1);
        break;
    case T_GATE:
        if (!t_wait_flag(m->gate))
            atomic_fetch_add(&c->a.probe->violations, 1);
        break;
    case T_SEQ: counter_seq(c, m->value); break;
    case T_KILL_REENTER:
        if (reki_kill(c->a.rt, self) != REKI_OK)
            atomic_fetch_add(&c->a.probe->violations, 1);
        counter_reenter(c);
        break;
    default: atomic_fetch_add(&c->a.probe->violations, 1); break;
    }
    free(m);
    return next;
}

static void counter_terminate(void *state, int reason)
{
    struct counter *c = state;
    struct probe *p = c->a.probe;
    if (c->a.terminate_sleep_ms > 0)
        t_sleep_ms(c->a.terminate_sleep_ms);
    if (c->a.terminate_gate != NULL && !t_wait_flag(c->a.terminate_gate))
        atomic_fetch_add(&p->violations, 1);
    if (c->a.reenter_in_terminate)
        counter_reenter(c);
    if (c->a.exclusive != NULL) {
        int expect = 1;
        if (!atomic_compare_exchange_strong(c->a.exclusive, &expect, 0))
            atomic_fetch_add(&p->violations, 1);
    }
    probe_note_reason(p->reasons, p, reason);
    atomic_fetch_add(&p->terminates, 1);
    if (c->a.terminated != NULL)
        atomic_store(c->a.terminated, 1);
    free(c);
}

const reki_behavior_t t_counter = {
    .init = counter_init,
    .handle = counter_handle,
    .terminate = counter_terminate,
    .drop = t_drop,
};

int t_counter_spawn_args(const struct counter_args *a, unsigned flags, reki_pid_t *out)
{
    reki_spawn_opts_t o = {.flags = flags};
    /* init only reads *a during reki_spawn, so a const arg is safe here. */
    return reki_spawn(a->rt, &t_counter, (void *)(uintptr_t)a, &o, out);
}

int t_counter_spawn(reki_rt_t *rt, struct probe *p, unsigned flags, reki_pid_t *out)
{
    struct counter_args a = {.rt = rt, .probe = p};
    return t_counter_spawn_args(&a, flags, out);
}

long t_counter_get(reki_rt_t *rt, reki_pid_t pid, reki_inbox_t *in)
{
    struct tmsg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -1;
    m->kind = T_GET;
    m->reply = reki_inbox_pid(in);
    if (send_msg(rt, pid, m) != REKI_OK)
        return -1;
    void *r;
    if (reki_inbox_recv(in, &r, t_wait_ms()) != REKI_OK)
        return -2;
    long v = *(long *)r;
    free(r);
    return v;
}

reki_inbox_t *t_inbox(reki_rt_t *rt)
{
    reki_inbox_opts_t o = {.drop = free};
    reki_inbox_t *in = NULL;
    if (reki_inbox_new_ex(rt, &o, &in) != REKI_OK)
        return NULL;
    return in;
}

/* --------------------------------------------------- start function -- */

void start_ctx_init(struct start_ctx *s, reki_rt_t *rt, struct probe *p)
{
    memset(s, 0, sizeof *s);
    s->actor.rt = rt;
    s->actor.probe = p;
}

int t_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    struct start_ctx *s = arg;
    if (atomic_fetch_add(&s->running, 1) > 0)
        atomic_fetch_add(&s->overlaps, 1);
    atomic_fetch_add(&s->starts, 1);
    atomic_store(&s->entered, 1);
    if (s->hold != NULL) {
        bool released;
        T_WAIT_UNTIL(released, atomic_load(s->hold) == 0);
        if (!released)
            atomic_fetch_add(&s->actor.probe->violations, 1);
    }
    int rc = s->fail_code;
    if (rc == 0) {
        struct counter_args a = s->actor;
        a.rt = rt;
        rc = t_counter_spawn_args(&a, 0, out);
        if (rc == REKI_OK && s->dead_pid && reki_kill(rt, *out) != REKI_OK)
            atomic_fetch_add(&s->actor.probe->violations, 1);
    }
    atomic_fetch_sub(&s->running, 1);
    return rc;
}

static void *los_thread(void *arg)
{
    struct los_call *c = arg;
    if (c->go != NULL)
        t_wait_flag(c->go);
    atomic_store(&c->calling, 1);
    c->rc =
        reki_lookup_or_start(c->reg, c->key, c->keylen, c->start, c->arg, c->timeout_ms, &c->pid);
    atomic_store(&c->done, 1);
    return NULL;
}

void t_los_spawn(struct los_call *c)
{
    atomic_store(&c->calling, 0);
    atomic_store(&c->done, 0);
    if (pthread_create(&c->thread, NULL, los_thread, c) != 0)
        abort();
}

void t_los_join(struct los_call *c)
{
    pthread_join(c->thread, NULL);
}

/* ----------------------------------------------------------- misc -- */

void t_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    struct probe *p = arg;
    probe_note_reason(p->down_reasons, p, reason);
    atomic_fetch_add(&p->downs, 1);
}

size_t t_key(char *buf, size_t cap, long i)
{
    int n = snprintf(buf, cap, "key-%ld", i);
    return n < 0 ? 0 : (size_t)n;
}

void t_run_threads(int n, void *(*fn)(void *), void *args, size_t size)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    if (t == NULL)
        abort();
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * size) != 0)
            abort();
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    free(t);
}

/*
 * Inbox operations (each torture thread owns one inbox, others send to it;
 * it is replaced now and then so that senders race with reki_inbox_free) and
 * the bad-argument calls every function must refuse with REKI_EINVAL.
 */
#include <stdlib.h>
#include <string.h>

#include "torture.h"

static void inbox_take(struct tthread *t, struct msg *m, reki_pid_t self)
{
    if (m == NULL || m->to != self) {
        violation("inbox %#llx received a message for %#llx", (unsigned long long)self,
                  m != NULL ? (unsigned long long)m->to : 0ull);
    } else if (m->sender < t->w->nthreads) {
        if (m->seq <= t->in_last_seq[m->sender])
            violation("inbox %#llx: seq %llu from t%u received after seq %llu (FIFO)",
                      (unsigned long long)self, (unsigned long long)m->seq, m->sender,
                      (unsigned long long)t->in_last_seq[m->sender]);
        t->in_last_seq[m->sender] = m->seq;
    }
    if (m != NULL)
        msg_consume(m, &t->w->received, "reki_inbox_recv");
}

static unsigned inbox_recv_some(struct tthread *t, unsigned max, int timeout)
{
    reki_pid_t self = reki_inbox_pid(t->inbox);
    unsigned n = 0;
    while (n < max) {
        void *m = NULL;
        int rc = reki_inbox_recv(t->inbox, &m, timeout);
        if (rc == REKI_ETIMEDOUT)
            break;
        if (rc != REKI_OK) {
            violation("reki_inbox_recv returned %d (%s)", rc, reki_strerror(rc));
            break;
        }
        inbox_take(t, m, self);
        n++;
    }
    return n;
}

void inbox_drain(struct tthread *t)
{
    if (t->inbox != NULL)
        inbox_recv_some(t, ~0u, 0);
}

static void inbox_send(struct tthread *t, unsigned to)
{
    struct world *w = t->w;
    reki_pid_t pid = atomic_load(&inbox_pids[to]);
    if (pid == 0)
        return;
    struct msg *m = msg_new(w, M_PLAIN, t->idx, ++t->seq, -1, pid, 0);
    uint64_t t0 = t_clock_now();
    int rc = msg_send(w, pid, m);
    if (rc == REKI_OK) {
        uint64_t stamp = exited_stamp(w, pid);
        if (stamp != 0 && stamp < t0)
            violation("reki_send accepted a message for inbox %#llx, freed before the send",
                      (unsigned long long)pid);
        return;
    }
    if (rc != REKI_EDEAD && !t_oom(rc))
        violation("reki_send to an inbox returned %d (%s)", rc, reki_strerror(rc));
    msg_refused(m);
}

/* A fresh inbox for t, published to the senders. */
static void inbox_create(struct tthread *t, uint64_t r)
{
    struct world *w = t->w;
    int rc;
    memset(t->in_last_seq, 0, (T_MAX_THREADS + 1u) * sizeof(*t->in_last_seq));
    if (r & 1) {
        reki_inbox_opts_t o = {t_msg_drop};
        rc = reki_inbox_new_ex(w->rt, &o, &t->inbox);
    } else if ((rc = reki_inbox_new(w->rt, &t->inbox)) == REKI_OK) {
        rc = reki_inbox_set_drop(t->inbox, t_msg_drop);
    }
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("creating an inbox returned %d (%s)", rc, reki_strerror(rc));
        t->inbox = NULL; /* with --fail-allocs, made again by a later op_inbox */
        return;
    }
    atomic_store(&inbox_pids[t->idx], reki_inbox_pid(t->inbox));
}

static void inbox_replace(struct tthread *t, uint64_t r)
{
    struct world *w = t->w;
    reki_pid_t old = reki_inbox_pid(t->inbox);
    atomic_store(&inbox_pids[t->idx], 0);
    reki_inbox_free(t->inbox);
    t->inbox = NULL;
    note_exit(w, old);
    if (reki_alive(w->rt, old))
        violation("inbox pid %#llx alive after reki_inbox_free", (unsigned long long)old);
    struct msg *m = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, -1, old, 0);
    int rc = msg_send(w, old, m);
    if (rc != REKI_EDEAD) {
        violation("reki_send to a freed inbox returned %d (%s)", rc, reki_strerror(rc));
        if (rc == REKI_OK)
            return; /* the library owns it now, wrongly */
    }
    msg_refused(m);
    inbox_create(t, r);
}

void op_inbox(struct tthread *t, uint64_t r1, uint64_t r2)
{
    unsigned what = t_bits(r1, 32, 7, 100);
    if (t->inbox == NULL) {
        if (t_oom_mode)
            inbox_create(t, r2);
        return;
    }
    if (what < 45) {
        unsigned to = t_bits(r2, 0, 16, t->w->nthreads);
        for (unsigned i = 0; i <= t_bits(r2, 16, 2, 4); i++)
            inbox_send(t, to);
    } else if (what < 80) {
        inbox_recv_some(t, 32, 0);
    } else if (what < 97) {
        inbox_recv_some(t, 1, 1);
    } else {
        inbox_replace(t, r2);
    }
}

/* ---------------------------------------------------------- bad arguments -- */

static int never_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)rt;
    (void)key;
    (void)keylen;
    (void)arg;
    (void)out;
    violation("a start function ran for a call with bad arguments");
    return T_EFAIL;
}

static int never_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    (void)arg;
    (void)state;
    violation("init ran for a reki_spawn with bad arguments");
    return T_EINIT;
}

static reki_next_t never_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_STOP;
}

static void never_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    violation("a down function ran for a reki_monitor with bad arguments");
}

static void expect(int rc, int want, const char *what)
{
    /* Some calls allocate before they look at the pid (reki_monitor). */
    if (rc != want && !t_oom(rc))
        violation("%s returned %d (%s), expected %d", what, rc, reki_strerror(rc), want);
}

static void badargs_registry(struct world *w, unsigned which)
{
    static unsigned char big[REKI_KEY_MAX + 1];
    reki_pid_t pid = 0;
    const void *k = w->kbytes[0];
    size_t kl = w->klen[0];
    switch (which) {
    case 0:
        expect(reki_lookup(w->reg, k, 0, &pid), REKI_EINVAL, "reki_lookup keylen 0");
        expect(reki_lookup(w->reg, big, sizeof(big), &pid), REKI_EINVAL,
               "reki_lookup keylen REKI_KEY_MAX+1");
        break;
    case 1:
        expect(reki_lookup(w->reg, NULL, kl, &pid), REKI_EINVAL, "reki_lookup key NULL");
        expect(reki_lookup(w->reg, k, kl, NULL), REKI_EINVAL, "reki_lookup out NULL");
        expect(reki_lookup(NULL, k, kl, &pid), REKI_EINVAL, "reki_lookup reg NULL");
        break;
    case 2:
        expect(reki_lookup_or_start(w->reg, k, kl, NULL, NULL, 0, &pid), REKI_EINVAL,
               "reki_lookup_or_start start NULL");
        expect(reki_lookup_or_start(w->reg, k, kl, never_start, NULL, -2, &pid), REKI_EINVAL,
               "reki_lookup_or_start timeout -2");
        break;
    case 3:
        expect(reki_lookup_or_start(w->reg, k, 0, never_start, NULL, -1, &pid), REKI_EINVAL,
               "reki_lookup_or_start keylen 0");
        expect(reki_lookup_or_start(w->reg, big, sizeof(big), never_start, NULL, -1, &pid),
               REKI_EINVAL, "reki_lookup_or_start keylen REKI_KEY_MAX+1");
        expect(reki_lookup_or_start(w->reg, k, kl, never_start, NULL, -1, NULL), REKI_EINVAL,
               "reki_lookup_or_start out NULL");
        break;
    case 4:
        expect(reki_stop(w->reg, k, 0), REKI_EINVAL, "reki_stop keylen 0");
        expect(reki_stop(NULL, k, kl), REKI_EINVAL, "reki_stop reg NULL");
        expect(reki_stop(w->reg, NULL, kl), REKI_EINVAL, "reki_stop key NULL");
        break;
    default:
        expect(reki_foreach(w->reg, NULL, NULL), REKI_EINVAL, "reki_foreach fn NULL");
        expect(reki_foreach(NULL, NULL, NULL), REKI_EINVAL, "reki_foreach reg NULL");
        if (reki_count(NULL) != 0)
            violation("reki_count(NULL) is not 0");
        break;
    }
}

static void badargs_runtime(struct tthread *t, unsigned which)
{
    struct world *w = t->w;
    reki_pid_t pid = 0;
    int dummy = 0;
    const reki_behavior_t no_handle = {never_init, NULL, NULL, NULL};
    const reki_behavior_t ok = {never_init, never_handle, NULL, NULL};
    const reki_spawn_opts_t bad_flags = {.flags = 0x80u};
    switch (which) {
    case 0:
        expect(reki_send(NULL, 1, &dummy), REKI_EINVAL, "reki_send rt NULL");
        expect(reki_send(w->rt, 0, &dummy), REKI_EDEAD, "reki_send to pid 0");
        expect(reki_kill(NULL, 1), REKI_EINVAL, "reki_kill rt NULL");
        expect(reki_kill(w->rt, 0), REKI_EDEAD, "reki_kill pid 0");
        break;
    case 1:
        if (reki_alive(NULL, 1) || reki_alive(w->rt, 0))
            violation("reki_alive true for rt NULL or pid 0");
        expect(reki_monitor(w->rt, 1, NULL, NULL), REKI_EINVAL, "reki_monitor fn NULL");
        expect(reki_monitor(NULL, 1, never_down, NULL), REKI_EINVAL, "reki_monitor rt NULL");
        expect(reki_monitor(w->rt, 0, never_down, NULL), REKI_EDEAD, "reki_monitor pid 0");
        break;
    case 2:
        expect(reki_spawn(w->rt, &no_handle, NULL, NULL, &pid), REKI_EINVAL,
               "reki_spawn handle NULL");
        expect(reki_spawn(w->rt, NULL, NULL, NULL, &pid), REKI_EINVAL, "reki_spawn b NULL");
        expect(reki_spawn(w->rt, &ok, NULL, &bad_flags, &pid), REKI_EINVAL,
               "reki_spawn unknown flags");
        expect(reki_spawn(w->rt, &ok, NULL, NULL, NULL), REKI_EINVAL, "reki_spawn out NULL");
        expect(reki_spawn(NULL, &ok, NULL, NULL, &pid), REKI_EINVAL, "reki_spawn rt NULL");
        break;
    default: {
        void *m = NULL;
        if (t->inbox == NULL)
            break;
        expect(reki_inbox_recv(t->inbox, NULL, 0), REKI_EINVAL, "reki_inbox_recv msg NULL");
        expect(reki_inbox_recv(t->inbox, &m, -2), REKI_EINVAL, "reki_inbox_recv timeout -2");
        expect(reki_inbox_recv(NULL, &m, 0), REKI_EINVAL, "reki_inbox_recv in NULL");
        expect(reki_inbox_set_drop(NULL, NULL), REKI_EINVAL, "reki_inbox_set_drop in NULL");
        expect(reki_inbox_new(NULL, NULL), REKI_EINVAL, "reki_inbox_new rt NULL");
        if (reki_inbox_pid(NULL) != 0)
            violation("reki_inbox_pid(NULL) is not 0");
        if (reki_strerror(12345) == NULL || reki_strerror(REKI_EDEAD) == NULL)
            violation("reki_strerror returned NULL");
        break;
    }
    }
}

void op_badargs(struct tthread *t, uint64_t r1)
{
    unsigned which = t_bits(r1, 32, 4, 10);
    if (which < 6)
        badargs_registry(t->w, which);
    else
        badargs_runtime(t, which - 6);
}

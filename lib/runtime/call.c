/*
 * Request and reply: reki_call, reki_caller, reki_reply.
 *
 * A call's reply address is a proc of kind CALLER with a pid of its own,
 * alive exactly while the call waits: the message travels with that pid
 * (its envelope's `caller`, which reki_caller returns while the message is
 * handled), reki_reply resolves it like any pid, and a reply after the call
 * ended finds the pid dead.  A CALLER has no mailbox: sends to it are
 * refused, and reki_kill on it makes its call return REKI_EDEAD.
 *
 * The call's state is one futex word, moved once out of WAITING by a CAS:
 *   WAITING -> CLAIMED -> REPLIED   reki_reply (CLAIMED keeps a second
 *                                   replier out while the first stores)
 *   WAITING -> DOWN                 the target exited (a monitor), or kill
 *   WAITING -> TIMEDOUT             the caller gave up
 * Whoever wins owns the outcome; a reply that loses is refused (REKI_EDEAD)
 * and stays the replier's.
 *
 * The call record lives in the CALLER proc (its `state`), freed with it.
 * Two references keep it: the calling thread's and the monitor's (its
 * callback may still be running after demonitor failed); the last one
 * retires the proc (after an RCU grace period, so a replier that resolved
 * the pid reads valid memory).  The target's exit path, which runs the
 * monitor, finishes before reki_rt_free stops waiting for live procs, so no
 * retirement comes after the runtime's last barrier.
 */
#include "runtime/runtime.h"

enum { WAITING = 0, CLAIMED = 1, REPLIED = 2, DOWN = 3, TIMEDOUT = 4 };

struct call {
    _Atomic uint32_t state; /* futex */
    _Atomic uint32_t refs;
    _Atomic uint32_t sleeping; /* the caller is (about to be) in futex_wait */
    void *reply;               /* written before the release store of REPLIED */
};

/* Rounds a caller polls its state before it sleeps: a reply from a light
 * actor on another core comes within microseconds, and a futex sleep and
 * wake cost more than that on both sides. */
#define CALL_SPIN 2000

static struct call *call_of(struct reki__proc *p)
{
    return p->state;
}

static void call_unref(struct reki__proc *p)
{
    /* acq_rel: the last holder sees every other holder's accesses. */
    if (atomic_fetch_sub_explicit(&call_of(p)->refs, 1, memory_order_acq_rel) == 1)
        reki__proc_retire(p); /* retire_cb frees the call record too */
}

/* After a state change: wake the caller if it sleeps.  seq_cst: Dekker
 * with call_wait's "sleeping = 1; re-check state". */
static void call_wake(struct call *c)
{
    if (atomic_load_explicit(&c->sleeping, memory_order_seq_cst))
        reki__futex_wake(&c->state, 1);
}

/* Move WAITING to `to` and wake the caller; false if already decided. */
static bool call_decide(struct call *c, uint32_t to)
{
    uint32_t w = WAITING;
    /* seq_cst: pairs with the caller's loads of the state (and Dekker). */
    if (!atomic_compare_exchange_strong_explicit(&c->state, &w, to, memory_order_seq_cst,
                                                 memory_order_acquire))
        return false;
    call_wake(c);
    return true;
}

static void call_down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    struct reki__proc *p = arg;
    call_decide(call_of(p), DOWN);
    call_unref(p);
}

int reki__call_abort(struct reki__proc *p)
{
    return call_decide(call_of(p), DOWN) ? REKI_OK : REKI_EDEAD;
}

void reki__call_free(struct reki__proc *p)
{
    reki__free(p->state);
}

/* Wait until the state leaves WAITING (or CLAIMED); returns the outcome. */
static uint32_t call_wait(struct call *c, const struct timespec *deadline)
{
    for (int i = 0; i < CALL_SPIN; i++) {
        uint32_t s = atomic_load_explicit(&c->state, memory_order_acquire);
        if (s != WAITING && s != CLAIMED)
            return s;
        REKI__CPU_RELAX();
    }
    atomic_store_explicit(&c->sleeping, 1, memory_order_seq_cst);
    for (;;) {
        uint32_t s = atomic_load_explicit(&c->state, memory_order_seq_cst);
        if (s != WAITING && s != CLAIMED)
            return s;
        /* CLAIMED: a replier is between its two stores; it will wake us. */
        int rc = reki__futex_wait(&c->state, s, s == CLAIMED ? NULL : deadline);
        if (rc == REKI_ETIMEDOUT && s == WAITING && call_decide(c, TIMEDOUT))
            return TIMEDOUT;
    }
}

/* The call is over: its pid dies (monitors of it fire), the target's
 * monitor goes, the references drop. */
static void call_end(reki_rt_t *rt, struct reki__proc *p, const reki_monitor_ref_t *ref)
{
    reki__proc_exit(p, REKI_EXIT_NORMAL);
    reki__proc_run_exited(p, REKI_EXIT_NORMAL);
    if (ref && reki_demonitor(rt, ref) == REKI_OK)
        call_unref(p); /* the monitor's: it will never run */
    call_unref(p);
    reki__rt_proc_done(rt);
}

int reki_call(reki_rt_t *rt, reki_pid_t to, void *msg, int timeout_ms, void **reply)
{
    if (!rt || !reply || timeout_ms < -1)
        return REKI_EINVAL;
    *reply = msg; /* on failure: msg is still the caller's, unless taken below */
    if (to != 0 && to == reki__tls_current())
        return REKI_EDEADLK; /* our own handle would have to reply */
    struct timespec ts;
    const struct timespec *deadline = reki__deadline(&ts, timeout_ms) ? &ts : NULL;
    struct call *c = reki__malloc(sizeof(*c));
    if (!c)
        return REKI_ENOMEM;
    atomic_init(&c->state, WAITING);
    atomic_init(&c->refs, 2); /* ours and the monitor's */
    atomic_init(&c->sleeping, 0);
    c->reply = NULL;
    struct reki__proc *p;
    int rc = reki__proc_new(rt, &reki__beh_none, c, REKI__CALLER, 0, &p);
    if (rc != REKI_OK) {
        reki__free(c);
        return rc == REKI_ESHUTDOWN ? REKI_EDEAD : rc; /* every actor is exiting */
    }
    /* Before the send: an exit that comes after it must be seen. */
    reki_monitor_ref_t ref;
    rc = reki_monitor_ex(rt, to, call_down, p, &ref);
    if (rc != REKI_OK) {
        atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
        call_end(rt, p, NULL);
        return rc;
    }
    rc = REKI_EDEAD;
    bool was_empty;
    reki__rcu_read_lock();
    struct reki__proc *q = reki__pid_resolve(&rt->pids, to);
    if (q && q->kind != REKI__CALLER) {
        rc = reki__mbox_push_ex(q, msg, p->pid, true, &was_empty);
        if (rc == REKI_OK && was_empty)
            reki__proc_wake(q);
    }
    reki__rcu_read_unlock();
    if (rc != REKI_OK) {
        call_end(rt, p, &ref); /* msg is still ours */
        return rc;
    }
    uint32_t s = call_wait(c, deadline);
    /* Taken: the reply, or NULL (msg was or will be handled or dropped). */
    *reply = s == REPLIED ? c->reply : NULL;
    call_end(rt, p, &ref);
    return s == REPLIED ? REKI_OK : s == TIMEDOUT ? REKI_ETIMEDOUT : REKI_EDEAD;
}

int reki_reply(reki_rt_t *rt, reki_pid_t caller, void *reply)
{
    if (!rt || caller == 0)
        return REKI_EINVAL;
    int rc = REKI_EDEAD;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, caller);
    if (p && p->kind == REKI__CALLER) {
        struct call *c = call_of(p);
        uint32_t w = WAITING;
        if (atomic_compare_exchange_strong_explicit(&c->state, &w, CLAIMED, memory_order_acquire,
                                                    memory_order_relaxed)) {
            c->reply = reply;
            /* release: the reply (and what it points to) to the caller;
             * seq_cst: Dekker with the caller's sleeping flag. */
            atomic_store_explicit(&c->state, REPLIED, memory_order_seq_cst);
            call_wake(c);
            rc = REKI_OK;
        }
    }
    reki__rcu_read_unlock();
    return rc;
}

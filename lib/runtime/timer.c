/*
 * Timers: reki_send_after and reki_timer_cancel on one timing wheel per
 * runtime (wheel.c), advanced by one thread per runtime.
 *
 * Locking.  One spinlock guards the wheel, its node slab and every proc's
 * list of pending timers (proc->timers).  Arming and cancelling hold it for
 * a few stores (O(1)); the timer thread holds it to advance the wheel and
 * take due timers off it, never while it delivers (user code may run then:
 * a drop, a wake-up).
 *
 * Ownership.  A timer is pending while its node is on the wheel; exactly one
 * of three takes it off, under the lock, and owns its message from then on:
 * the timer thread (it queues the message: it was accepted at arming, so the
 * mailbox bound does not apply), reki_timer_cancel (the message goes back to
 * the caller or to drop) or the target's exit path (reki__timers_close: to
 * drop).  Taking a node off bumps its generation, so the id stops matching.
 * The exit path also marks the proc's list closed, so no timer is armed on
 * a proc whose timers were closed: none is ever left behind.
 *
 * Memory.  A node names its proc.  A node is on a proc's list until one of
 * the three takes it, and the exit path empties the list before the proc is
 * retired; whoever takes a node does so inside an RCU read-side section
 * begun before it took the lock, so the proc stays valid until it is done.
 *
 * The thread.  It sleeps on a futex until the next tick that can hold a due
 * timer: the next tick while level 0 has timers (1 ms resolution), the next
 * cascade (at most 64 ms) while only longer timers wait, and with no timer
 * at all, after LINGER_MS of ticking, until an arming wakes it.  It publishes
 * that tick (sleep_until) under the lock; an arming due before it wakes the
 * thread (one futex wake, and only the first such arming does it).  So an
 * arming makes a system call only when the thread sleeps past its deadline:
 * never while a shorter timer waits, never while the thread ticks.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "runtime/runtime.h"
#include "core/wheel.h"

#define CLOSED 0x80000000u /* proc->timers: the exit path has closed the list */
#define LINGER_MS 100      /* keep ticking this long after the last timer */

struct reki__timers {
    reki__spin_t lock;
    struct reki__wheel w;
    uint64_t sleep_until;  /* under lock: the tick the thread wakes at; UINT64_MAX none */
    _Atomic uint32_t wake; /* futex word: bumped to wake the thread */
    _Atomic int stop;
    struct timespec epoch; /* tick 0 */
    uint64_t key;          /* ids are (gen << 32 | index) ^ key: bit 63 set, per runtime */
    pthread_t thread;
    reki_rt_t *rt;
};

static uint64_t now_ns(const struct reki__timers *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)((int64_t)(ts.tv_sec - t->epoch.tv_sec) * 1000000000 +
                      (ts.tv_nsec - t->epoch.tv_nsec));
}

static uint64_t now_tick(const struct reki__timers *t)
{
    return now_ns(t) / 1000000;
}

static void tick_time(const struct reki__timers *t, uint64_t tick, struct timespec *ts)
{
    ts->tv_sec = t->epoch.tv_sec + (time_t)(tick / 1000);
    ts->tv_nsec = t->epoch.tv_nsec + (long)(tick % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Take node idx off its proc's list (lock held). */
static void proc_unlink(struct reki__wheel *w, uint32_t idx)
{
    struct reki__tnode *n = reki__wheel_node(w, idx);
    if (n->pprev)
        reki__wheel_node(w, n->pprev)->pnext = n->pnext;
    else
        n->proc->timers = n->pnext;
    if (n->pnext)
        reki__wheel_node(w, n->pnext)->pprev = n->pprev;
}

/* The tick the thread should next wake at (lock held). */
static uint64_t next_wake(struct reki__timers *t, uint64_t now, uint64_t linger_until)
{
    if (t->w.pending == 0)
        return now < linger_until ? t->w.now : UINT64_MAX;
    return reki__wheel_next(&t->w);
}

static void deliver(struct reki__proc *p, void *msg, bool idle)
{
    bool was_empty;
    if (idle) {
        /* An idle tick: the proc's own business, never counted, never
         * dropped.  Out of memory: the actor just stays (no later tick). */
        struct reki__env *e = reki__malloc(sizeof(*e));
        if (!e)
            return;
        atomic_init(&e->via, REKI__VIA_IDLE | (uint64_t)(uintptr_t)msg);
        /* release: the consumer acquires msg before it reads via. */
        atomic_store_explicit(&e->msg, NULL, memory_order_release);
        reki__mbox_push_env(p, e, false, false, &was_empty);
        if (was_empty)
            reki__proc_wake(p);
        return;
    }
    /* Accepted at arming: the bound does not apply, and an envelope that
     * cannot be allocated now is retried (it delays, never loses). */
    while (reki__mbox_push_ex(p, msg, 0, false, &was_empty) == REKI_ENOMEM) {
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
    }
    if (was_empty)
        reki__proc_wake(p);
}

static void *timer_main(void *arg)
{
    struct reki__timers *t = arg;
    uint64_t linger_until = 0;
    for (;;) {
        reki__rcu_read_lock();
        reki__spin_lock(&t->lock);
        if (atomic_load_explicit(&t->stop, memory_order_acquire)) {
            reki__spin_unlock(&t->lock);
            reki__rcu_read_unlock();
            return NULL;
        }
        uint64_t now = now_tick(t);
        reki__wheel_advance(&t->w, now);
        /* Take the due timers (in the order they fell due) off their procs. */
        uint32_t first = 0, last = 0, idx;
        while ((idx = reki__wheel_pop_due(&t->w)) != 0) {
            struct reki__tnode *n = reki__wheel_node(&t->w, idx);
            proc_unlink(&t->w, idx);
            n->next = 0;
            if (last)
                reki__wheel_node(&t->w, last)->next = idx;
            else
                first = idx;
            last = idx;
        }
        if (first || t->w.pending)
            linger_until = now + LINGER_MS;
        uint64_t until = next_wake(t, now, linger_until);
        t->sleep_until = until;
        uint32_t seen = atomic_load_explicit(&t->wake, memory_order_acquire);
        reki__spin_unlock(&t->lock);

        /* Ours now: read without the lock (nodes never move). */
        for (idx = first; idx; idx = reki__wheel_node(&t->w, idx)->next) {
            struct reki__tnode *n = reki__wheel_node(&t->w, idx);
            deliver(n->proc, n->msg, n->idle);
        }
        reki__rcu_read_unlock();
        if (first) {
            reki__spin_lock(&t->lock);
            for (idx = first; idx;) {
                uint32_t next = reki__wheel_node(&t->w, idx)->next;
                reki__wheel_free(&t->w, idx);
                idx = next;
            }
            reki__spin_unlock(&t->lock);
            continue; /* delivering took time: look at the clock again */
        }
        struct timespec ts;
        if (until != UINT64_MAX)
            tick_time(t, until, &ts);
        reki__futex_wait(&t->wake, seen, until != UINT64_MAX ? &ts : NULL);
    }
}

static void wake_thread(struct reki__timers *t)
{
    atomic_fetch_add_explicit(&t->wake, 1, memory_order_release);
    reki__futex_wake(&t->wake, 1);
}

int reki__timers_start(reki_rt_t *rt)
{
    struct reki__timers *t = reki__malloc(sizeof(*t));
    if (!t)
        return REKI_ENOMEM;
    memset(t, 0, sizeof(*t));
    atomic_init(&t->lock.held, 0);
    atomic_init(&t->wake, 0);
    atomic_init(&t->stop, 0);
    t->rt = rt;
    t->sleep_until = UINT64_MAX;
    clock_gettime(CLOCK_MONOTONIC, &t->epoch);
    /* Another runtime's ids (or made-up ones) decode to nodes never issued
     * here or to generations that do not match: REKI_EINVAL or ENOTFOUND,
     * never another timer.  Bit 63: gen < 2^31, so no id is 0. */
    if (getrandom(&t->key, sizeof(t->key), GRND_NONBLOCK) != (ssize_t)sizeof(t->key))
        t->key = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull ^ (uint64_t)t->epoch.tv_nsec;
    t->key |= (uint64_t)1 << 63;
    if (reki__wheel_init(&t->w, 0) != REKI_OK) {
        reki__free(t);
        return REKI_ENOMEM;
    }
    int rc = reki__thread_create(&t->thread, timer_main, t);
    if (rc != REKI_OK) {
        reki__wheel_destroy(&t->w);
        reki__free(t);
        return rc;
    }
    rt->timers = t;
    return REKI_OK;
}

void reki__timers_stop(reki_rt_t *rt)
{
    struct reki__timers *t = rt->timers;
    if (!t)
        return;
    /* Under the lock, like an arming: the thread either sees stop in its
     * next critical section or read `wake` before our bump (its futex wait
     * then returns at once).  Without the lock it could check stop, miss
     * it, then read the bumped word and sleep for good. */
    reki__spin_lock(&t->lock);
    atomic_store_explicit(&t->stop, 1, memory_order_relaxed);
    reki__spin_unlock(&t->lock);
    wake_thread(t);
    pthread_join(t->thread, NULL);
    t->thread = 0;
}

void reki__timers_destroy(reki_rt_t *rt)
{
    struct reki__timers *t = rt->timers;
    if (!t)
        return;
    reki__wheel_destroy(&t->w);
    reki__free(t);
    rt->timers = NULL;
}

void reki__timers_close(struct reki__proc *p)
{
    struct reki__timers *t = p->rt->timers;
    if (!t)
        return; /* the runtime's creation failed before timers */
    reki__spin_lock(&t->lock);
    uint32_t first = p->timers & CLOSED ? 0 : p->timers;
    p->timers = CLOSED;
    for (uint32_t idx = first; idx; idx = reki__wheel_node(&t->w, idx)->pnext)
        reki__wheel_remove(&t->w, idx);
    reki__spin_unlock(&t->lock);
    if (!first)
        return;
    /* Ours now (off the wheel, ids dead): drop outside the lock. */
    for (uint32_t idx = first; idx; idx = reki__wheel_node(&t->w, idx)->pnext) {
        struct reki__tnode *n = reki__wheel_node(&t->w, idx);
        if (!n->idle && p->beh->drop)
            p->beh->drop(n->msg);
    }
    reki__spin_lock(&t->lock);
    for (uint32_t idx = first; idx;) {
        uint32_t next = reki__wheel_node(&t->w, idx)->pnext;
        reki__wheel_free(&t->w, idx);
        idx = next;
    }
    reki__spin_unlock(&t->lock);
}

/* ------------------------------------------------------------- public -- */

/* Arm a timer on p (inside the caller's read-side section); lock taken. */
static int arm(struct reki__timers *t, struct reki__proc *p, void *msg, uint32_t ms, bool idle,
               reki_timer_t *out)
{
    /* Tick k is processed no earlier than k ms after the epoch: the first
     * tick at or after now + ms. */
    uint64_t expires = (now_ns(t) + (uint64_t)ms * 1000000 + 999999) / 1000000;
    int rc = REKI_EDEAD;
    bool wake = false;
    reki__spin_lock(&t->lock);
    if (!(p->timers & CLOSED)) {
        uint32_t idx = reki__wheel_alloc(&t->w);
        if (!idx) {
            rc = REKI_ENOMEM;
        } else {
            struct reki__tnode *n = reki__wheel_node(&t->w, idx);
            n->msg = msg;
            n->proc = p;
            n->idle = idle;
            n->pprev = 0;
            n->pnext = p->timers;
            if (p->timers)
                reki__wheel_node(&t->w, p->timers)->pprev = idx;
            p->timers = idx;
            reki__wheel_add(&t->w, idx, expires);
            *out = ((uint64_t)n->gen << 32 | idx) ^ t->key;
            if (expires < t->sleep_until) {
                t->sleep_until = 0; /* woken once: it recomputes */
                wake = true;
            }
            rc = REKI_OK;
        }
    }
    reki__spin_unlock(&t->lock);
    if (wake)
        wake_thread(t);
    return rc;
}

int reki__timer_idle(struct reki__proc *p, uint32_t ms)
{
    reki_timer_t id;
    return arm(p->rt->timers, p, (void *)(uintptr_t)ms, ms, true, &id);
}

int reki_send_after(reki_rt_t *rt, reki_pid_t to, void *msg, uint32_t ms, reki_timer_t *out)
{
    if (!rt)
        return REKI_EINVAL;
    if (ms == 0) {
        int rc = reki_send(rt, to, msg);
        if (rc == REKI_OK && out)
            *out = 0; /* a send: no timer to cancel */
        return rc;
    }
    if (atomic_load_explicit(&rt->shutdown, memory_order_acquire))
        return REKI_ESHUTDOWN;
    int rc = REKI_EDEAD;
    reki_timer_t id = 0;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, to);
    if (p && p->kind != REKI__CALLER)
        rc = arm(rt->timers, p, msg, ms, false, &id);
    reki__rcu_read_unlock();
    if (rc == REKI_OK && out)
        *out = id;
    return rc;
}

int reki_timer_cancel(reki_rt_t *rt, reki_timer_t timer, void **msg)
{
    if (!rt || timer == 0)
        return REKI_EINVAL;
    struct reki__timers *t = rt->timers;
    uint64_t enc = timer ^ t->key;
    uint32_t idx = (uint32_t)enc, gen = (uint32_t)(enc >> 32);
    if (gen == 0 || gen > REKI__WHEEL_GEN_MAX)
        return REKI_EINVAL; /* never an id of this runtime */
    int rc = REKI_ENOTFOUND;
    void *m = NULL;
    void (*drop)(void *) = NULL;
    reki__rcu_read_lock();
    reki__spin_lock(&t->lock);
    if (!reki__wheel_issued(&t->w, idx)) {
        rc = REKI_EINVAL; /* never an id of this runtime */
    } else {
        struct reki__tnode *n = reki__wheel_node(&t->w, idx);
        if (n->gen == gen && n->state == REKI__TNODE_PENDING && !n->idle) {
            reki__wheel_remove(&t->w, idx);
            proc_unlink(&t->w, idx);
            m = n->msg;
            drop = n->proc->beh->drop;
            reki__wheel_free(&t->w, idx);
            rc = REKI_OK;
        }
    }
    reki__spin_unlock(&t->lock);
    reki__rcu_read_unlock();
    if (rc == REKI_OK) {
        if (msg)
            *msg = m;
        else if (drop)
            drop(m);
    }
    return rc;
}

/*
 * Actors: spawn, send, kill, the exit transition and the exit path.
 *
 * Exit is one atomic transition, made under the proc's lock by whichever
 * thread ends the actor (its handler's return, reki_kill, reki_stop,
 * reki_rt_free): `reason` is set and the pid slot is marked dead.  From that
 * store on, reki_alive is false, sends return REKI_EDEAD and registry lookups
 * miss the pid (they check its liveness).  The registry links' "marked" hooks
 * run in the same critical section (entry -> EXITING, count - 1).
 *
 * The exit path then runs on the actor's own thread (a worker for light
 * actors): queued messages go to drop, terminate runs, registry links are
 * removed (the key may start again), monitors fire.  A send that resolved the
 * pid just before the transition may still be enqueueing; it is inside an RCU
 * read-side section, so the proc's memory is freed, and its late messages
 * dropped, only after a grace period (retire_cb).
 *
 * Scheduling (light actors): `sched` goes IDLE -> SCHEDULED by a CAS made by
 * whoever finds work for an idle actor (the sender that made the mailbox
 * non-empty, a killer); the worker returns it to IDLE when the mailbox looks
 * empty, then re-checks the mailbox after a full fence (Dekker with the
 * sender's enqueue-then-CAS), so no wake-up is lost.
 */
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define RUN_BATCH 64 /* messages per turn before yielding the worker: fairness */

static void retire_cb(struct rcu_head *head)
{
    struct reki__proc *p = REKI__CONTAINER_OF(head, struct reki__proc, rcu);
    reki__rcu_reclaim_acquire();
    /* acquire: pairs with the release store of DONE in reki__proc_finish. */
    (void)atomic_load_explicit(&p->sched, memory_order_acquire);
    /* Sends that resolved the pid before the exit have all finished now
     * (their enqueue, and their wake-up of an inbox's eventfd). */
    reki__mbox_drain(p);
    if (p->kind == REKI__INBOX) {
        int fd = atomic_load_explicit(&p->in.efd, memory_order_acquire);
        if (fd >= 0)
            close(fd);
        reki__free((void *)p->beh); /* an inbox's own: reki_inbox_set_drop writes it */
    }
    reki__pid_release(&p->rt->pids, p->pid);
    if (p->kind == REKI__CALLER)
        reki__call_free(p);
    reki__free(p);
    reki__rcu_callback_done();
}

void reki__proc_retire(struct reki__proc *p)
{
    reki__call_rcu(&p->rcu, retire_cb);
}

bool reki__proc_exit(struct reki__proc *p, int reason)
{
    reki__spin_lock(&p->lock);
    if (atomic_load_explicit(&p->reason, memory_order_relaxed) != REKI__ALIVE) {
        reki__spin_unlock(&p->lock);
        return false;
    }
    /* Order matters.  Registry entries leave the pid first (marked hooks:
     * LIVE -> EXITING), so an entry word that holds a pid names a live actor
     * and lookups need not check the slot.  Then the pid dies.  Then `reason`
     * (read without the lock): whoever sees it set also sees the pid dead.
     * seq_cst: the reason store is half of the Dekker pair with the worker's
     * "IDLE; fence; check reason". */
    reki__proc_run_marked(p);
    REKI__YIELD();
    reki__pid_kill(&p->rt->pids, p->pid);
    REKI__YIELD();
    atomic_store_explicit(&p->reason, reason, memory_order_seq_cst);
    reki__spin_unlock(&p->lock);
    return true;
}

void reki__proc_finish(struct reki__proc *p)
{
    /* Wait out the exit transition's critical section: its marked hooks
     * (registry entries EXITING, count) complete before terminate runs. */
    reki__spin_lock(&p->lock);
    int reason = atomic_load_explicit(&p->reason, memory_order_relaxed);
    reki__spin_unlock(&p->lock);
    reki_pid_t prev = reki__tls_set_current(p->pid);
    /* Pending timers first: their messages go to drop like queued ones. */
    reki__timers_close(p);
    if (p->kind != REKI__INBOX)
        reki__mbox_drain(p); /* an inbox's owner may still be receiving: it drains at free */
    if (p->beh->terminate && !p->no_terminate)
        p->beh->terminate(p->state, reason);
    REKI__YIELD();
    reki__proc_run_exited(p, reason);
    reki__tls_set_current(prev);
    reki_rt_t *rt = p->rt;
    if (p->kind != REKI__INBOX) {
        /* release: pairs with retire_cb's acquire; senders' CAS from IDLE
         * fails from now on.  An inbox keeps IDLE/SCHEDULED, so a send that
         * raced with its exit still wakes a receiver. */
        atomic_store_explicit(&p->sched, REKI__DONE, memory_order_release);
        reki__proc_retire(p); /* an inbox is retired by reki_inbox_free */
    } else {
        reki__inbox_exited(p); /* last use of p: reki_inbox_free may retire it */
    }
    reki__rt_proc_done(rt);
}

void reki__proc_wake(struct reki__proc *p)
{
    uint32_t idle = REKI__IDLE;
    /* acq_rel: release our enqueue to the consumer; seq_cst as the second
     * half of the Dekker pair with the consumer's "IDLE; fence; re-check". */
    if (!atomic_compare_exchange_strong_explicit(&p->sched, &idle, REKI__SCHEDULED,
                                                 memory_order_seq_cst, memory_order_seq_cst))
        return;
    if (p->kind == REKI__LIGHT) {
        reki__sched_push(p->rt, p);
        return;
    }
    reki__futex_wake(&p->sched, 1);
    if (p->kind != REKI__INBOX)
        return;
    /* An inbox polled through reki_inbox_fd: this CAS from IDLE is the one
     * wake-up per drain, and the only system call a sender makes for it.
     * acquire: pairs with the release that published the fd. */
    int fd = atomic_load_explicit(&p->in.efd, memory_order_acquire);
    if (fd >= 0)
        reki__eventfd_signal(fd);
}

int reki__kill_pid(reki_rt_t *rt, reki_pid_t pid, int reason)
{
    int rc = REKI_EDEAD;
    struct reki__proc *inbox = NULL;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, pid);
    if (p && p->kind == REKI__CALLER) {
        rc = reki__call_abort(p); /* a reply address: its call stops waiting */
    } else if (p && reki__proc_exit(p, reason)) {
        rc = REKI_OK;
        if (p->kind == REKI__INBOX)
            inbox = p;
        /* A light or dedicated actor's thread runs its exit path; an
         * inbox's receiver wakes to find the pid dead (reki_inbox_recv). */
        reki__proc_wake(p);
    }
    reki__rcu_read_unlock();
    /* An inbox has no thread of its own: the killer runs its exit path
     * (monitors: user code) here, outside the read-side section.  The proc
     * stays valid: reki_inbox_free waits for this exit path to finish
     * before it retires the proc (reki__inbox_exited). */
    if (inbox)
        reki__proc_finish(inbox);
    return rc;
}

static void run_batch(struct reki__proc *p);

/* The mailbox emptied: go idle unless work arrived.  Once IDLE is stored,
 * another worker may run p, see it exit and retire it; the read-side section
 * keeps p's memory valid for the re-check that follows. */
static void run_idle(struct reki__proc *p)
{
    reki__rcu_read_lock();
    atomic_store_explicit(&p->sched, REKI__IDLE, memory_order_seq_cst);
    REKI__FENCE();
    if (!reki__mbox_empty(p) ||
        atomic_load_explicit(&p->reason, memory_order_seq_cst) != REKI__ALIVE)
        reki__proc_wake(p);
    reki__rcu_read_unlock();
}

/* A hook said no (a fenced registry past its deadline, fence.c): under the
 * actor's lock, where the hooks list is stable.  Runs only while some
 * registry of the runtime is fenced. */
static bool hooks_refuse(struct reki__proc *p)
{
    bool no = false;
    reki__spin_lock(&p->lock);
    for (struct reki__hook *h = p->links; h && !no; h = h->next)
        no = h->may_handle && !h->may_handle(h);
    reki__spin_unlock(&p->lock);
    return no;
}

bool reki__proc_handle_one(struct reki__proc *p, void *msg, reki_pid_t caller,
                           struct reki__env *kenv)
{
    /* relaxed: a fence is attached before its registry's first start (so
     * before this actor's link, which the mailbox pop has acquired). */
    if (REKI__UNLIKELY(atomic_load_explicit(&p->rt->gated, memory_order_relaxed) != 0) &&
        hooks_refuse(p))
        (void)reki__proc_exit(p, REKI_EXIT_SHUTDOWN);
    if (atomic_load_explicit(&p->reason, memory_order_acquire) != REKI__ALIVE) {
        /* Dequeued after the exit: never handled.  By key, it goes to the
         * key's next actor; otherwise to drop. */
        if (kenv)
            reki__mbox_leftover(kenv);
        else if (p->beh->drop)
            p->beh->drop(msg);
        reki__proc_finish(p);
        return false;
    }
    reki__free(kenv);
    p->idle_quiet = 0;
    /* reki_caller is the handled message's, for the handle only. */
    reki_pid_t prev = reki__tls_swap_caller(caller);
    reki_next_t next = p->beh->handle(p->state, msg, p->pid);
    reki__tls_swap_caller(prev);
    if (next == REKI_CONTINUE)
        return true;
    reki__proc_exit(p, next == REKI_STOP ? REKI_EXIT_NORMAL : REKI_EXIT_ABNORMAL);
    reki__proc_finish(p);
    return false;
}

bool reki__proc_idle_tick(struct reki__proc *p, uint32_t period)
{
    /* Runs between two handles, on the actor's own thread: a handle still
     * running is activity by construction.  Three ticks with no handle
     * since the first (the first may come just after a handle) and an
     * empty mailbox: idle for at least two periods (idle_ms), at most
     * three, then it exits. */
    if (p->idle_quiet < 3)
        p->idle_quiet++;
    if (p->idle_quiet >= 3 && atomic_load_explicit(&p->qlen, memory_order_relaxed) == 0 &&
        reki__proc_exit(p, REKI_EXIT_IDLE)) {
        reki__proc_finish(p);
        return false;
    }
    reki__rcu_read_lock();
    /* Out of memory: no more ticks, the actor stays until a later handle
     * cannot re-arm either; never an exit by mistake. */
    (void)reki__timer_idle(p, period);
    reki__rcu_read_unlock();
    return true;
}

void reki__proc_run(struct reki__proc *p)
{
    /* acquire: pairs with the CAS that scheduled p (the run queue itself is
     * invisible to TSan); carries the spawner's writes to the worker. */
    (void)atomic_load_explicit(&p->sched, memory_order_acquire);
    reki_pid_t prev = reki__tls_set_current(p->pid);
    run_batch(p);
    reki__tls_set_current(prev);
}

static void run_batch(struct reki__proc *p)
{
    for (int n = 0; n < RUN_BATCH; n++) {
        if (atomic_load_explicit(&p->reason, memory_order_acquire) != REKI__ALIVE) {
            reki__proc_finish(p);
            return;
        }
        void *msg;
        reki_pid_t caller;
        struct reki__env *kenv;
        int rc = reki__mbox_pop(p, &msg, &caller, &kenv);
        if (rc == REKI__POP_EMPTY) {
            run_idle(p);
            return;
        }
        if (rc == REKI__POP_BUSY)
            break; /* a sender is mid-enqueue: come back after others ran */
        if (rc == REKI__POP_IDLE) {
            if (!reki__proc_idle_tick(p, (uint32_t)(uintptr_t)msg))
                return;
            continue;
        }
        if (!reki__proc_handle_one(p, msg, caller, kenv))
            return;
    }
    /* Still SCHEDULED: requeue for fairness.  The release store is for the
     * next worker's acquire in reki__proc_run: our handle calls happen-before
     * its own (the run queue's exchange is invisible to TSan). */
    reki_rt_t *rt = p->rt; /* read before the release: p is the next worker's after it */
    atomic_store_explicit(&p->sched, REKI__SCHEDULED, memory_order_release);
    reki__sched_push(rt, p);
}

/* ------------------------------------------------------------- public -- */

static void proc_init(struct reki__proc *p, reki_rt_t *rt, const struct reki__beh *beh, void *arg,
                      uint8_t kind)
{
    memset(p, 0, sizeof(*p));
    __cds_wfcq_init(&p->mq_head, &p->mq_tail);
    atomic_init(&p->sched, REKI__INIT);
    atomic_init(&p->reason, REKI__ALIVE);
    atomic_init(&p->qlen, 0);
    atomic_init(&p->lock.held, 0);
    p->kind = kind;
    p->rt = rt;
    p->beh = beh;
    if (kind == REKI__INBOX) {
        atomic_init(&p->in.finished, 0);
        atomic_init(&p->in.efd, -1);
    } else {
        p->state = arg;
    }
}

int reki__proc_new(reki_rt_t *rt, const struct reki__beh *beh, void *arg, uint8_t kind,
                   uint32_t max_queue, struct reki__proc **out)
{
    /* Counted before the shutdown check: reki_rt_free waits for every proc
     * that got past it (seq_cst on both sides). */
    reki__rt_proc_begin(rt);
    if (atomic_load_explicit(&rt->shutdown, memory_order_seq_cst)) {
        reki__rt_proc_done(rt);
        return REKI_ESHUTDOWN;
    }
    struct reki__proc *p = reki__malloc(sizeof(*p));
    if (!p) {
        reki__rt_proc_done(rt);
        return REKI_ENOMEM;
    }
    proc_init(p, rt, beh, arg, kind);
    p->max_queue = max_queue;
    int rc = reki__pid_alloc(&rt->pids, p, &p->pid);
    if (rc != REKI_OK) {
        reki__free(p);
        reki__rt_proc_done(rt);
        return rc;
    }
    reki__pid_publish(&rt->pids, p->pid);
    *out = p;
    return REKI_OK;
}

/* After init: let messages in, and honour a shutdown that began meanwhile.
 * From the IDLE store on, p may run, exit and be retired elsewhere: the
 * read-side section keeps it valid until we are done with it. */
static void proc_activate(struct reki__proc *p)
{
    reki__rcu_read_lock();
    atomic_store_explicit(&p->sched, REKI__IDLE, memory_order_seq_cst);
    REKI__FENCE();
    if (atomic_load_explicit(&p->rt->shutdown, memory_order_seq_cst))
        reki__proc_exit(p, REKI_EXIT_SHUTDOWN);
    if (!reki__mbox_empty(p) ||
        atomic_load_explicit(&p->reason, memory_order_seq_cst) != REKI__ALIVE)
        reki__proc_wake(p);
    reki__rcu_read_unlock();
}

int reki_spawn(reki_rt_t *rt, const reki_behavior_t *b, void *arg, const reki_spawn_opts_t *opts,
               reki_pid_t *out)
{
    if (!rt || !b || !b->handle || !out)
        return REKI_EINVAL;
    unsigned flags = opts ? opts->flags : 0;
    if (flags & ~REKI_SPAWN_DEDICATED)
        return REKI_EINVAL;
    uint8_t kind = (flags & REKI_SPAWN_DEDICATED) ? REKI__DEDICATED : REKI__LIGHT;
    struct reki__proc *p;
    const struct reki__beh *beh = reki__beh_intern(rt, b);
    if (!beh)
        return REKI_ENOMEM;
    int rc = reki__proc_new(rt, beh, arg, kind, opts ? opts->max_queue : 0, &p);
    if (rc != REKI_OK)
        return rc;
    if (kind == REKI__DEDICATED && (rc = reki__dedicated_start(p)) != REKI_OK) {
        p->no_terminate = 1;
        reki__proc_exit(p, REKI_EXIT_ABNORMAL);
        reki__proc_finish(p);
        return rc;
    }
    if (b->init) {
        void *state = arg;
        rc = b->init(p->pid, arg, &state);
        if (rc < 0) {
            /* The actor never lived: no terminate; queued messages dropped. */
            p->no_terminate = 1;
            reki__proc_exit(p, REKI_EXIT_ABNORMAL);
            if (kind == REKI__LIGHT)
                reki__proc_finish(p);
            else
                reki__dedicated_abort(p);
            return rc;
        }
        p->state = state;
    }
    *out = p->pid;
    proc_activate(p); /* p may be gone once it returns */
    return REKI_OK;
}

int reki_send(reki_rt_t *rt, reki_pid_t to, void *msg)
{
    if (REKI__UNLIKELY(!rt))
        return REKI_EINVAL;
    bool was_empty;
    int rc = REKI_EDEAD;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, to);
    if (p && p->kind != REKI__CALLER) { /* a reply address takes only reki_reply */
        rc = reki__mbox_push(p, msg, &was_empty);
        if (rc == REKI_OK && was_empty)
            reki__proc_wake(p);
    }
    reki__rcu_read_unlock();
    return rc;
}

int reki_kill(reki_rt_t *rt, reki_pid_t pid)
{
    if (!rt)
        return REKI_EINVAL;
    return reki__kill_pid(rt, pid, REKI_EXIT_KILLED);
}

bool reki_alive(reki_rt_t *rt, reki_pid_t pid)
{
    return rt && reki__pid_alive(&rt->pids, pid);
}

size_t reki_mailbox_len(reki_rt_t *rt, reki_pid_t pid)
{
    if (!rt)
        return 0;
    size_t n = 0;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, pid);
    if (p)
        n = atomic_load_explicit(&p->qlen, memory_order_relaxed);
    reki__rcu_read_unlock();
    return n;
}

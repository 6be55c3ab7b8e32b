/*
 * Dedicated-thread actors (REKI_SPAWN_DEDICATED): one thread runs one actor,
 * so its handler may block without stalling the worker pool.
 *
 * The thread sleeps on the proc's `sched` word: IDLE means "asleep or about
 * to be"; a sender that fills the mailbox CASes IDLE -> SCHEDULED and wakes
 * the futex (reki__proc_wake).  The thread stores IDLE, fences and re-checks
 * the mailbox before sleeping, the same Dekker pair the workers use.
 *
 * Threads are joined by reki_rt_free, or earlier by the next dedicated spawn
 * once they have finished, so none outlives the runtime.
 */
#include "runtime/runtime.h"

static void dthread_loop(struct reki__proc *p)
{
    for (;;) {
        uint32_t s = atomic_load_explicit(&p->sched, memory_order_acquire);
        if (s == REKI__INIT) { /* the spawner is still running init */
            reki__futex_wait(&p->sched, REKI__INIT, NULL);
            continue;
        }
        if (atomic_load_explicit(&p->reason, memory_order_acquire) != REKI__ALIVE) {
            reki__proc_finish(p);
            return;
        }
        void *msg;
        reki_pid_t caller;
        struct reki__env *kenv;
        int rc = reki__mbox_pop(p, &msg, &caller, &kenv);
        if (rc == REKI__POP_MSG) {
            if (!reki__proc_handle_one(p, msg, caller, kenv))
                return;
            continue;
        }
        if (rc == REKI__POP_IDLE) {
            if (!reki__proc_idle_tick(p, (uint32_t)(uintptr_t)msg))
                return;
            continue;
        }
        if (rc == REKI__POP_BUSY) {
            sched_yield(); /* a sender is mid-enqueue */
            continue;
        }
        atomic_store_explicit(&p->sched, REKI__IDLE, memory_order_seq_cst);
        REKI__FENCE();
        if (!reki__mbox_empty(p) ||
            atomic_load_explicit(&p->reason, memory_order_seq_cst) != REKI__ALIVE)
            continue;
        reki__futex_wait(&p->sched, REKI__IDLE, NULL);
    }
}

static void *dthread_main(void *arg)
{
    struct reki__proc *p = arg;
    struct reki__dthread *dt = p->ext;
    reki__tls_set_current(p->pid);
    /* The proc may be freed once its exit path is done: nothing after the
     * loop touches it. */
    dthread_loop(p);
    atomic_store_explicit(&dt->finished, 1, memory_order_release);
    return NULL;
}

int reki__dedicated_start(struct reki__proc *p)
{
    reki_rt_t *rt = p->rt;
    reki__dedicated_reap(rt, false);
    struct reki__dthread *dt = reki__calloc(1, sizeof(*dt));
    if (!dt)
        return REKI_ENOMEM;
    p->ext = dt;
    /* Listed before it runs, so reki_rt_free always finds it to join. */
    pthread_mutex_lock(&rt->objs_lock);
    int rc = reki__thread_create(&dt->tid, dthread_main, p);
    if (rc == REKI_OK) {
        dt->next = rt->dthreads;
        rt->dthreads = dt;
    }
    pthread_mutex_unlock(&rt->objs_lock);
    if (rc != REKI_OK) {
        p->ext = NULL;
        reki__free(dt);
    }
    return rc;
}

void reki__dedicated_abort(struct reki__proc *p)
{
    reki_rt_t *rt = p->rt;
    struct reki__dthread *dt = p->ext;
    pthread_mutex_lock(&rt->objs_lock);
    for (struct reki__dthread **pp = &rt->dthreads; *pp; pp = &(*pp)->next)
        if (*pp == dt) {
            *pp = dt->next;
            break;
        }
    pthread_mutex_unlock(&rt->objs_lock);
    /* release: the thread acquire-loads sched and sees the exit.  It may
     * finish and retire p at once: the read-side section covers the wake. */
    reki__rcu_read_lock();
    atomic_store_explicit(&p->sched, REKI__SCHEDULED, memory_order_seq_cst);
    reki__futex_wake(&p->sched, 1);
    reki__rcu_read_unlock();
    pthread_join(dt->tid, NULL);
    reki__free(dt);
}

void reki__dedicated_reap(reki_rt_t *rt, bool all)
{
    struct reki__dthread *done = NULL;
    pthread_mutex_lock(&rt->objs_lock);
    for (struct reki__dthread **pp = &rt->dthreads; *pp;) {
        struct reki__dthread *dt = *pp;
        if (all || atomic_load_explicit(&dt->finished, memory_order_acquire)) {
            *pp = dt->next;
            dt->next = done;
            done = dt;
        } else {
            pp = &dt->next;
        }
    }
    pthread_mutex_unlock(&rt->objs_lock);
    while (done) {
        struct reki__dthread *next = done->next;
        pthread_join(done->tid, NULL);
        reki__free(done);
        done = next;
    }
}

/*
 * Registry entries: creation, the link to their actor, release to FREE and
 * retirement.
 *
 * An entry outlives its actors.  It is LIVE from the moment
 * reki__entry_link stores the pid, under the actor's lock, so the actor's
 * exit hooks (run under or after that lock) always see it.  The "marked"
 * hook runs at the exit transition: LIVE -> EXITING and count - 1, so
 * reki_count is exact the moment an actor exits.  The "exited" hook runs
 * after terminate returned: EXITING -> FREE(g + 1).  Only then may the key
 * start again (guarantee 1), by one CAS on the same entry.
 *
 * Whoever moved the entry out of FREE (the claim's winner) holds it until it
 * goes back to FREE: the winner through STARTING, then the actor's exit path
 * through EXITING.  The holder alone writes `gen` and `outcome`; the proc's
 * lock orders the winner's writes before the exit path's reads.
 *
 * The release's tail (wake waiters, the reaper's step, the drain signal of a
 * closing registry) runs inside an RCU read-side section: reki_registry_free
 * waits for a grace period after the last FREE store before it frees
 * anything, so that tail never touches freed memory.
 *
 * Retirement (after the reaper unlinked a DEAD entry): call_rcu, so that no
 * lookup that found the entry in the table still reads it; then ck_hp_free
 * on the runtime's reaper record, so that no waiter blocked on the entry's
 * futex (protected by a hazard pointer, since it must not hold a read-side
 * section across a sleep) still holds it.  A stalled waiter delays only the
 * entry it waits on, never the reclamation of anything else.
 */
#include <string.h>

#include "registry/registry.h"

static void link_marked(struct reki__hook *h, reki_pid_t pid)
{
    struct reki__entry *e = REKI__CONTAINER_OF(h, struct reki__entry, link);
    uint64_t expect = pid;
    /* seq_cst: with the pid slot's dead store, the exit transition. */
    if (atomic_compare_exchange_strong_explicit(&e->word, &expect, REKI__E_EXITING,
                                                memory_order_seq_cst, memory_order_relaxed))
        atomic_fetch_sub_explicit(&e->reg->count, 1, memory_order_relaxed);
    /* No wake here (we are under the actor's spinlock): a caller waiting on
     * this entry can do nothing before the key is FREE, and the release
     * wakes it then. */
}

static void link_exited(struct reki__hook *h, reki_pid_t pid, int reason)
{
    reki__fence_exited(REKI__CONTAINER_OF(h, struct reki__entry, link));
    reki__vkey_exited(REKI__CONTAINER_OF(h, struct reki__entry, link), pid, reason);
}

struct reki__entry *reki__entry_new(reki_registry_t *reg, const void *key, size_t keylen,
                                    ck_ht_hash_t h)
{
    struct reki__entry *e = reki__malloc(sizeof(*e) + keylen);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, keylen);
    e->keylen = (uint32_t)keylen;
    e->hash = h;
    e->reg = reg;
    e->rt = reg->rt;
    atomic_init(&e->owner, reki__thread_token());
    atomic_init(&e->linked, 0);
    e->gen = 0;
    e->link.marked = link_marked;
    e->link.exited = link_exited;
    reki__fence_hook_init(e);
    atomic_init(&e->qgen, 0);
    atomic_init(&e->qtime, 0);
    atomic_init(&e->seq, 0);
    atomic_init(&e->waiters, 0);
    atomic_init(&e->outcome, 0);
    atomic_init(&e->queued, 0);
    atomic_init(&e->plock.held, 0);
    e->npend = 0;
    __cds_wfcq_init(&e->pq_head, &e->pq_tail);
    __cds_wfcq_init(&e->kq.lh, &e->kq.lt);
    e->kq.nleft = 0;
    e->restarts = 0;
    e->window = 0;
    atomic_init(&e->linking, NULL);
    cds_wfcq_node_init(&e->snode);
    atomic_init(&e->spub, 0);
    /* release: readers find e through ck_ht (invisible to TSan) and
     * acquire-load word first: everything above happens-before their reads. */
    atomic_store_explicit(&e->word, REKI__E_STARTING, memory_order_release);
    return e;
}

int reki__entry_insert(reki_registry_t *reg, struct reki__entry *e)
{
    uint64_t w;
    int rc = REKI_OK;
    pthread_mutex_lock(&reg->wlock);
    if (atomic_load_explicit(&reg->closing, memory_order_relaxed))
        rc = REKI_ESHUTDOWN;
    else if (reki__table_get(reg, e->hash, e->key, e->keylen, &w))
        rc = REKI__E_LOST; /* another caller claimed the key first */
    else if (!reki__table_put(reg, e))
        rc = REKI_ENOMEM;
    pthread_mutex_unlock(&reg->wlock);
    if (rc == REKI_OK) {
        REKI__YIELD();
        reki__reaper_after_insert(reg); /* one more entry: keep the budget */
    }
    return rc;
}

int reki__entry_claim(reki_registry_t *reg, struct reki__entry *e, uint64_t w, const void *owner)
{
    /* seq_cst: Dekker with reki_registry_free's "closing; grace period;
     * scan": a claim that did not see closing is over before the scan. */
    if (atomic_load_explicit(&reg->closing, memory_order_seq_cst))
        return REKI_ESHUTDOWN;
    /* acq_rel: acquires the previous holder's writes (gen, outcome); the
     * winner's later writes are released by its link or its release. */
    if (!atomic_compare_exchange_strong_explicit(&e->word, &w, REKI__E_STARTING,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return REKI__E_LOST;
    atomic_store_explicit(&e->owner, owner, memory_order_relaxed);
    return REKI_OK;
}

void reki__entry_after_reap(reki_registry_t *reg)
{
    /* Reaped: unlinked under the writer lock, which orders us after it. */
    pthread_mutex_lock(&reg->wlock);
    pthread_mutex_unlock(&reg->wlock);
}

void reki__entry_changed(struct reki__entry *e)
{
    /* seq_cst: Dekker with a waiter's "waiters + 1; read seq; read word",
     * the word having been stored seq_cst before this call.  A waiter not
     * counted yet reads the new word after its increment and does not
     * sleep; one counted is woken through seq. */
    if (atomic_load_explicit(&e->waiters, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&e->seq, 1, memory_order_seq_cst);
        reki__futex_wake(&e->seq, INT32_MAX);
    }
}

struct link_pub {
    struct reki__entry *e;
    reki_pid_t pid;
    struct reki__proc *p;
    bool was_empty; /* the key's queue went into an empty mailbox */
    bool arm_idle;  /* give the actor its idle tick */
};

/* Under the actor's lock: an actor gets one idle tick, from the first of
 * its registries with idle_ms (a start may return a pid already registered
 * elsewhere; two ticks would halve its idle time). */
static bool first_idle_link(struct reki__entry *e, struct reki__proc *p)
{
    if (!e->reg->idle_period || (p->kind != REKI__LIGHT && p->kind != REKI__DEDICATED))
        return false;
    for (struct reki__hook *h = p->links; h; h = h->next) {
        struct reki__entry *o = REKI__CONTAINER_OF(h, struct reki__entry, link);
        if (o != e && o->reg->idle_period)
            return false;
    }
    return true;
}

/* Under plock and the actor's lock. */
static void link_publish(void *arg)
{
    struct link_pub *lp = arg;
    lp->was_empty = reki__vkey_splice(lp->e, lp->p);
    lp->arm_idle = first_idle_link(lp->e, lp->p);
    atomic_store_explicit(&lp->e->linked, lp->pid, memory_order_relaxed);
    atomic_store_explicit(&lp->e->owner, NULL, memory_order_relaxed);
    /* seq_cst: release for lookups' acquire of word (publishes linked too),
     * and the store half of the Dekker pair in reki__entry_changed. */
    atomic_store_explicit(&lp->e->word, lp->pid, memory_order_seq_cst);
    /* Under the actor's lock: its exit hooks, which release e, wait for us. */
    atomic_fetch_add_explicit(&lp->e->reg->count, 1, memory_order_relaxed);
}

int reki__entry_link(struct reki__entry *e, reki_pid_t pid)
{
    reki_rt_t *rt = e->rt;
    reki_registry_t *reg = e->reg;
    struct link_pub lp = {e, pid, NULL, false, false};
    int rc = REKI_EDEAD;
    /* The actor's EXITED waits until our STARTED is reported. */
    if (reg->on_event)
        atomic_store_explicit(&e->linking, reki__thread_token(), memory_order_relaxed);
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, pid);
    if (p && !reki__fence_may_link(e, p->kind))
        rc = REKI_EINVAL;
    else if (p) {
        lp.p = p;
        /* plock: no message by key is queued for the key between the
         * splice and the publication of the pid. */
        reki__spin_lock(&e->plock);
        rc = reki__proc_add_hook(p, &e->link, true, link_publish, &lp);
        reki__spin_unlock(&e->plock);
    }
    /* Waiters wake after the actor's spinlock is released (no system call
     * under it); e and p are valid inside this read-side section even if
     * the actor has exited and e was released meanwhile. */
    if (rc == REKI_OK) {
        if (lp.was_empty)
            reki__proc_wake(p);
        reki__entry_changed(e);
        reki__vkey_linked(e, p, lp.arm_idle);
    }
    reki__rcu_read_unlock();
    if (reg->on_event) {
        if (rc == REKI_OK)
            reki__vkey_event(e, pid, REKI_EVENT_STARTED, 0);
        /* release: the exit path's acquire sees the event done. */
        atomic_store_explicit(&e->linking, NULL, memory_order_release);
    }
    return rc;
}

/* The FREE store and its tail: the key may start again. */
void reki__entry_free_word(struct reki__entry *e)
{
    /* seq_cst: the key is free from here on.  Release for outcome and gen
     * (the next claimer's CAS acquires them); seq_cst for the Dekker pair
     * with reki_registry_free's "closing; grace period; scan words". */
    atomic_store_explicit(&e->word, REKI__E_FREE_BIT | (e->gen & REKI__E_GEN_MASK),
                          memory_order_seq_cst);
    REKI__YIELD();
}

void reki__entry_release_tail(struct reki__entry *e)
{
    reki_registry_t *reg = e->reg;
    reki__entry_changed(e);
    if (atomic_load_explicit(&reg->closing, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&reg->drain_seq, 1, memory_order_seq_cst);
        reki__futex_wake(&reg->drain_seq, INT32_MAX);
    } else {
        reki__reaper_note_free(reg, e);
    }
}

static void entry_rcu_cb(struct rcu_head *head)
{
    reki__rcu_reclaim_acquire();
    struct reki__entry *e = REKI__CONTAINER_OF(head, struct reki__entry, rcu);
    reki_rt_t *rt = e->rt;
    pthread_mutex_lock(&rt->hp_lock);
    ck_hp_free(rt->reaper, &e->hazard, e, e);
    pthread_mutex_unlock(&rt->hp_lock);
    reki__rcu_callback_done();
}

void reki__entry_retire(struct reki__entry *e)
{
    reki__call_rcu(&e->rcu, entry_rcu_cb);
}

void reki__entry_destroy(void *p)
{
    struct reki__entry *e = p;
    /* acquire: pairs with each waiter's release decrement, the last thing it
     * does with e before clearing its hazard pointer (TSan sees this edge). */
    (void)atomic_load_explicit(&e->waiters, memory_order_acquire);
    reki__free(e);
}

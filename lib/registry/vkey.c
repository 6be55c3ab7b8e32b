/*
 * Virtual actors: reki_send_key, reki_await, the key's queue between its
 * actors, restarts, passivation's registry side, and events.
 *
 * The key's queue.  Each entry has a queue of messages by key (envelopes)
 * that wait for the key's next actor, under the entry's plock.  A sender
 * appends to it only while the entry is held (STARTING or EXITING), and
 * checks that under plock; the holder takes it under plock, in the same
 * critical section as the store of word that ends its hold:
 *   - a link splices it into the new actor's mailbox, then publishes the
 *     pid (link_publish, under plock and the actor's lock), so every
 *     message queued for the key is ahead of every message sent to the pid
 *     after it was published;
 *   - a release to FREE finds it empty (after handing what it held to the
 *     registry's drop), or the holder stays holder and queues a start.
 * So a message accepted while the key is held is taken by that holder, and
 * pending is never left behind in a FREE entry.
 *
 * Leftovers.  A message by key carries its entry's keyq.  The exit path of
 * the key's actor (mailbox drain, or the message it popped after the exit)
 * appends such messages to the keyq, in mailbox order, before the entry's
 * exited hook runs; that hook puts them in front of the key's queue, which
 * then holds only messages sent after them by the same senders.
 *
 * The race with an exit.  A sender to the live actor enqueues under the
 * actor's lock, after checking that it lives (send_live); the exit
 * transition stores `reason` under that lock.  So a message by key is in
 * the mailbox before the transition, and the exit path's drain (after it)
 * finds it, or it was never enqueued and goes round by key: the entry is
 * EXITING by then, and the message joins the key's queue.
 *
 * The exact point after which a message goes to the next actor: the exit
 * transition.  A message the actor has popped and finds, on the check that
 * follows, to be after the transition is a leftover too; one popped before
 * it is handled by this actor.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "registry/registry.h"

#define RETRY REKI__E_LOST

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool closing(reki_registry_t *reg)
{
    return atomic_load_explicit(&reg->closing, memory_order_seq_cst) ||
           atomic_load_explicit(&reg->rt->shutdown, memory_order_seq_cst);
}

void reki__vkey_event(struct reki__entry *e, reki_pid_t pid, int event, int detail)
{
    reki_registry_t *reg = e->reg;
    if (reg->on_event)
        reg->on_event(e->key, e->keylen, pid, event, detail, reg->event_arg);
}

/* Every message of a detached queue to the registry's drop. */
static void drop_queue(reki_registry_t *reg, struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
    struct cds_wfcq_node *n;
    while ((n = __cds_wfcq_dequeue_blocking(h, t)) != NULL) {
        struct reki__env *env = REKI__CONTAINER_OF(n, struct reki__env, node);
        void *msg = atomic_load_explicit(&env->msg, memory_order_acquire);
        reki__free(env);
        if (reg->drop)
            reg->drop(msg);
    }
}

bool reki__vkey_splice(struct reki__entry *e, struct reki__proc *p)
{
    if (e->npend == 0)
        return false;
    /* Counted before they can be taken: the consumer's decrements follow. */
    atomic_fetch_add_explicit(&p->qlen, e->npend, memory_order_relaxed);
    e->npend = 0;
    /* The mailbox is the destination: like an enqueue, safe against other
     * senders and the consumer.  plock excludes other users of the source. */
    enum cds_wfcq_ret r =
        __cds_wfcq_splice_blocking(&p->mq_head, &p->mq_tail, &e->pq_head, &e->pq_tail);
    return r == CDS_WFCQ_RET_DEST_EMPTY;
}

void reki__vkey_linked(struct reki__entry *e, struct reki__proc *p, bool arm_idle)
{
    reki_registry_t *reg = e->reg;
    /* seq_cst: Dekker with reki_await's "awaiters + 1; read seq; look up",
     * the word having been stored seq_cst. */
    if (atomic_load_explicit(&reg->awaiters, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&reg->await_seq, 1, memory_order_seq_cst);
        reki__futex_wake(&reg->await_seq, INT32_MAX);
    }
    if (arm_idle)
        (void)reki__timer_idle(p, reg->idle_period); /* out of memory: never idles */
}

/*
 * The holder lets e go.  If a start is wanted (restart), or allowed and
 * messages wait for the key, e stays held (STARTING) and a start is queued.
 * Otherwise waiting messages go to the registry's drop (outside every lock,
 * while e is still held, so the registry outlives the drops) and e goes FREE
 * with outcome, in the critical section that finds the key's queue empty.
 */
static void let_go(struct reki__entry *e, int outcome, bool start, bool may_start)
{
    reki_registry_t *reg = e->reg;
    for (;;) {
        reki__rcu_read_lock();
        reki__spin_lock(&e->plock);
        if (start || (may_start && e->npend)) {
            atomic_store_explicit(&e->owner, NULL, memory_order_relaxed);
            atomic_store_explicit(&e->word, REKI__E_STARTING, memory_order_seq_cst);
            reki__spin_unlock(&e->plock);
            /* Inside the read-side section: reki_registry_free frees the
             * start threads a grace period after the last entry went FREE,
             * and the start we queue may make it FREE at once. */
            reki__starter_push(reg, e);
            reki__rcu_read_unlock();
            return;
        }
        if (e->npend == 0) {
            /* A key with no actor and nothing waiting starts its next life
             * with a fresh restart intensity (the entry may be reaped, too). */
            e->restarts = 0;
            e->window = 0;
            e->gen++;
            atomic_store_explicit(&e->outcome, outcome, memory_order_relaxed);
            atomic_store_explicit(&e->owner, NULL, memory_order_relaxed);
            reki__entry_free_word(e);
            reki__spin_unlock(&e->plock);
            reki__entry_release_tail(e);
            reki__rcu_read_unlock();
            return;
        }
        struct __cds_wfcq_head h;
        struct cds_wfcq_tail t;
        __cds_wfcq_init(&h, &t);
        __cds_wfcq_splice_blocking(&h, &t, &e->pq_head, &e->pq_tail);
        e->npend = 0;
        reki__spin_unlock(&e->plock);
        reki__rcu_read_unlock();
        drop_queue(reg, &h, &t);
    }
}

void reki__entry_release(struct reki__entry *e, int outcome)
{
    let_go(e, outcome, false, false);
}

static bool wants_restart(const reki_registry_t *reg, int reason)
{
    if (reason == REKI_EXIT_ABNORMAL)
        return reg->restart == REKI_RESTART_TRANSIENT || reg->restart == REKI_RESTART_PERMANENT;
    if (reason == REKI_EXIT_NORMAL)
        return reg->restart == REKI_RESTART_PERMANENT;
    return false; /* KILLED, SHUTDOWN (reki_stop too), IDLE */
}

void reki__vkey_exited(struct reki__entry *e, reki_pid_t pid, int reason)
{
    reki_registry_t *reg = e->reg;
    if (reg->on_event) {
        /* STARTED first: the linker may still be reporting it. */
        const void *self = reki__thread_token(), *l;
        while ((l = atomic_load_explicit(&e->linking, memory_order_acquire)) != NULL && l != self)
            sched_yield();
        reki__vkey_event(e, pid, REKI_EVENT_EXITED, reason);
    }
    bool shut = closing(reg);
    bool ended = reason == REKI_EXIT_KILLED || reason == REKI_EXIT_SHUTDOWN;
    if (e->kq.nleft) {
        if (shut || ended || !reg->start) {
            drop_queue(reg, &e->kq.lh, &e->kq.lt);
        } else {
            /* In front of the key's queue: leftovers ++ queue. */
            reki__spin_lock(&e->plock);
            __cds_wfcq_splice_blocking(&e->kq.lh, &e->kq.lt, &e->pq_head, &e->pq_tail);
            __cds_wfcq_splice_blocking(&e->pq_head, &e->pq_tail, &e->kq.lh, &e->kq.lt);
            e->npend += e->kq.nleft;
            reki__spin_unlock(&e->plock);
        }
        e->kq.nleft = 0;
    }
    bool restart = !shut && reg->start && wants_restart(reg, reason);
    if (restart) {
        uint64_t now = now_ms();
        if (now - e->window >= reg->restart_period_ms) {
            e->window = now;
            e->restarts = 0;
        }
        if (e->restarts >= reg->max_restarts) {
            reki__vkey_event(e, pid, REKI_EVENT_GAVE_UP, (int)e->restarts);
            let_go(e, 0, false, false); /* FREE: the count starts over */
            return;
        }
        e->restarts++;
    }
    let_go(e, 0, restart, !shut && reg->start != NULL);
}

void reki__vkey_run_start(struct reki__entry *e)
{
    reki_registry_t *reg = e->reg;
    atomic_store_explicit(&e->owner, reki__thread_token(), memory_order_relaxed);
    reki_pid_t pid = 0;
    int rc = REKI_ESHUTDOWN;
    unsigned shard = UINT_MAX;
    if (!closing(reg) && (rc = reki__fence_enter(e, &shard)) == REKI_OK) {
        rc = reg->start(reg->rt, e->key, e->keylen, reg->start_arg, &pid);
        REKI__YIELD();
    }
    if (rc >= 0)
        rc = reki__entry_link(e, pid);
    reki__fence_leave(e, shard, rc >= 0);
    if (rc < 0) {
        reki__vkey_event(e, 0, REKI_EVENT_START_FAILED, rc);
        let_go(e, rc, false, false); /* its messages to drop; waiters share rc */
    }
}

/* ------------------------------------------------------------- public -- */

struct send {
    reki_registry_t *reg;
    const void *key;
    size_t keylen;
    void *msg;
    ck_ht_hash_t h;
    struct reki__env *env; /* ours until queued */
};

/* The envelope names e's key queue (NULL: a plain message).  msg last,
 * with release: the consumer acquires it before it reads via, then frees. */
static void env_bind(struct reki__env *env, struct reki__entry *e, void *msg)
{
    atomic_store_explicit(&env->via, e ? (uint64_t)(uintptr_t)&e->kq | REKI__VIA_KEY : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&env->msg, msg, memory_order_release);
}

/* Append to the key's queue of an entry we hold or saw held (plock held). */
static void enqueue_pending(struct reki__entry *e, struct reki__env *env, void *msg)
{
    env_bind(env, e, msg);
    cds_wfcq_node_init(&env->node);
    cds_wfcq_enqueue(&e->pq_head, &e->pq_tail, &env->node);
    e->npend++;
}

/* No entry: insert one, held (STARTING), with the message already queued. */
static int send_insert(struct send *s)
{
    reki_registry_t *reg = s->reg;
    struct reki__entry *e = reki__entry_new(reg, s->key, s->keylen, s->h);
    if (!e)
        return REKI_ENOMEM;
    atomic_store_explicit(&e->owner, NULL, memory_order_relaxed);
    /* Not in the table yet, but under plock all the same: a sender that
     * finds it later takes plock, and that is the edge TSan sees. */
    reki__spin_lock(&e->plock);
    enqueue_pending(e, s->env, s->msg);
    reki__spin_unlock(&e->plock);
    int rc = reki__entry_insert(reg, e);
    if (rc != REKI_OK) {
        reki__free(e); /* never published; the envelope is still ours */
        return rc;
    }
    s->env = NULL;
    reki__rcu_read_lock(); /* as in let_go */
    reki__starter_push(reg, e);
    reki__rcu_read_unlock();
    return REKI_OK;
}

/* The key's actor, by pid (inside the read-side section that read w).
 * The enqueue happens under the actor's lock, after a check that it lives:
 * the exit transition stores `reason` under the same lock, so the message
 * is in the mailbox before the transition (the exit path's drain, which
 * begins after it, finds it: handled, or a leftover for the next actor) or
 * it is not sent at all and goes round by key (the word is EXITING by
 * then).  Once enqueued, the envelope is never touched by the sender: the
 * consumer may free it at once. */
static int send_live(struct send *s, struct reki__entry *e, reki_pid_t pid)
{
    struct reki__proc *p = reki__pid_resolve(&s->reg->rt->pids, pid);
    if (!p)
        return RETRY; /* exited since: the word is EXITING by now */
    struct reki__env *env = s->env;
    if (p->kind == REKI__CALLER)
        return REKI_EINVAL; /* a reply address registered by a start: never a target */
    /* An inbox keeps what it was sent (its own drop at its free). */
    env_bind(env, p->kind == REKI__INBOX ? NULL : e, s->msg);
    bool was_empty = false;
    int rc = RETRY;
    reki__spin_lock(&p->lock);
    if (atomic_load_explicit(&p->reason, memory_order_relaxed) == REKI__ALIVE)
        rc = reki__mbox_push_env(p, env, true, true, &was_empty);
    reki__spin_unlock(&p->lock);
    if (rc != REKI_OK)
        return rc; /* REKI_EFULL, or dead: the envelope is still ours */
    s->env = NULL;
    if (was_empty)
        reki__proc_wake(p);
    return REKI_OK;
}

static int attempt(struct send *s)
{
    reki_registry_t *reg = s->reg;
    uint64_t w = 0;
    reki__rcu_read_lock();
    struct reki__entry *e = reki__table_get(reg, s->h, s->key, s->keylen, &w);
    if (!e) {
        reki__rcu_read_unlock();
        return send_insert(s);
    }
    int rc;
    if (reki__word_is_pid(w)) {
        rc = send_live(s, e, w);
        reki__rcu_read_unlock();
        return rc;
    }
    if (reki__word_is_free(w)) {
        /* Held by no thread (owner NULL): the start runs on a start thread. */
        rc = reki__entry_claim(reg, e, w, NULL);
        if (rc != REKI_OK) {
            reki__rcu_read_unlock();
            return rc;
        }
        reki__spin_lock(&e->plock);
        enqueue_pending(e, s->env, s->msg);
        reki__spin_unlock(&e->plock);
        s->env = NULL;
        reki__starter_push(reg, e); /* inside the read-side section: as in let_go */
        reki__rcu_read_unlock();
        return REKI_OK;
    }
    if (w == REKI__E_DEAD) {
        reki__rcu_read_unlock();
        reki__entry_after_reap(reg);
        return RETRY;
    }
    /* Held (STARTING or EXITING): queue for the next actor, if still held. */
    reki__spin_lock(&e->plock);
    w = atomic_load_explicit(&e->word, memory_order_acquire);
    rc = RETRY;
    if (w == REKI__E_STARTING || w == REKI__E_EXITING) {
        enqueue_pending(e, s->env, s->msg);
        s->env = NULL;
        rc = REKI_OK;
    }
    reki__spin_unlock(&e->plock);
    reki__rcu_read_unlock();
    return rc;
}

int reki_send_key(reki_registry_t *reg, const void *key, size_t keylen, void *msg)
{
    if (REKI__UNLIKELY(!reg || !key || keylen < 1 || keylen > REKI_KEY_MAX || !reg->start))
        return REKI_EINVAL;
    struct send s = {reg, key, keylen, msg, {0}, reki__malloc(sizeof(struct reki__env))};
    if (!s.env)
        return REKI_ENOMEM;
    reki__table_hash(reg, key, keylen, &s.h);
    int rc;
    while ((rc = attempt(&s)) == RETRY)
        ;
    reki__free(s.env); /* NULL once queued */
    return rc;
}

int reki_await(reki_registry_t *reg, const void *key, size_t keylen, int timeout_ms,
               reki_pid_t *out)
{
    if (!reg || !key || keylen < 1 || keylen > REKI_KEY_MAX || !out || timeout_ms < -1)
        return REKI_EINVAL;
    ck_ht_hash_t h;
    reki__table_hash(reg, key, keylen, &h);
    if (reki__table_hit(reg, h, key, keylen, out))
        return REKI_OK;
    /* The key's own start, waiting for itself, would wait out its timeout. */
    uint64_t w = 0;
    reki__rcu_read_lock();
    struct reki__entry *e = reki__table_get(reg, h, key, keylen, &w);
    bool self = e && w == REKI__E_STARTING &&
                atomic_load_explicit(&e->owner, memory_order_relaxed) == reki__thread_token();
    reki__rcu_read_unlock();
    if (self)
        return REKI_EDEADLK;
    if (timeout_ms == 0)
        return atomic_load_explicit(&reg->closing, memory_order_acquire) ? REKI_ESHUTDOWN
                                                                         : REKI_ETIMEDOUT;
    struct timespec ts;
    const struct timespec *deadline = reki__deadline(&ts, timeout_ms) ? &ts : NULL;
    /* Counted before closing is looked at: reki_registry_free stores
     * closing, then waits for the count to drop to 0 (seq_cst both). */
    atomic_fetch_add_explicit(&reg->awaiters, 1, memory_order_seq_cst);
    int rc;
    for (;;) {
        uint32_t seq = atomic_load_explicit(&reg->await_seq, memory_order_seq_cst);
        if (reki__table_hit(reg, h, key, keylen, out)) {
            rc = REKI_OK;
            break;
        }
        if (atomic_load_explicit(&reg->closing, memory_order_seq_cst)) {
            rc = REKI_ESHUTDOWN;
            break;
        }
        if (reki__futex_wait(&reg->await_seq, seq, deadline) == REKI_ETIMEDOUT) {
            rc = reki__table_hit(reg, h, key, keylen, out) ? REKI_OK : REKI_ETIMEDOUT;
            break;
        }
    }
    /* release: our last use of reg; reki_registry_free waits for it. */
    atomic_fetch_sub_explicit(&reg->awaiters, 1, memory_order_release);
    return rc;
}

/*
 * Mailboxes: liburcu's wait-free concurrent queue (wfcqueue), many senders,
 * one consumer (the proc's worker, dedicated thread or inbox owner).
 *
 * Per-sender FIFO: a sender's enqueues are ordered by its own program order
 * (each is one exchange on the tail), and the consumer dequeues in tail order.
 * The user's message pointer travels in a small envelope; its release store
 * pairs with the consumer's acquire load, which is the happens-before edge
 * ThreadSanitizer sees (it cannot see inside liburcu), and which carries the
 * sender's writes to the message to the handler.
 *
 * qlen counts messages queued and not yet taken (reki_mailbox_len, and the
 * bound of reki_spawn_opts_t.max_queue): a sender reserves its place with
 * one fetch_add before the enqueue and gives it back if over the bound; the
 * consumer decrements after each dequeue.  Idle ticks are not counted.
 *
 * Messages by key (reki_send_key) carry their key's queue in `via`: the
 * consumer hands their envelope back with the message, so that the exit
 * path can keep it (no allocation) as a leftover for the key's next actor.
 */
#include "runtime/runtime.h"

int reki__mbox_push(struct reki__proc *p, void *msg, bool *was_empty)
{
    return reki__mbox_push_ex(p, msg, 0, true, was_empty);
}

int reki__mbox_push_env(struct reki__proc *p, struct reki__env *e, bool counted, bool bounded,
                        bool *was_empty)
{
    /* Counted before the enqueue, so the consumer's decrement never comes
     * first; a bounded mailbox refuses past its bound (the increment is the
     * reservation, given back on refusal).  `counted` is the caller's word,
     * not read from e: e may be the consumer's (and freed) once released. */
    if (counted) {
        uint32_t n = atomic_fetch_add_explicit(&p->qlen, 1, memory_order_relaxed);
        if (bounded && p->max_queue && n >= p->max_queue) {
            atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
            return REKI_EFULL;
        }
    }
    cds_wfcq_node_init(&e->node);
    /* cds_wfcq_enqueue returns false when the queue was empty before.  Its
     * exchange on the tail is a full barrier (urcu's uatomic_xchg). */
    *was_empty = !cds_wfcq_enqueue(&p->mq_head, &p->mq_tail, &e->node);
    return REKI_OK;
}

int reki__mbox_push_ex(struct reki__proc *p, void *msg, reki_pid_t caller, bool bounded,
                       bool *was_empty)
{
    struct reki__env *e = reki__malloc(sizeof(*e));
    if (!e)
        return REKI_ENOMEM;
    atomic_init(&e->via, caller);
    /* release: pairs with the acquire in reki__mbox_pop. */
    atomic_store_explicit(&e->msg, msg, memory_order_release);
    int rc = reki__mbox_push_env(p, e, true, bounded, was_empty);
    if (rc != REKI_OK)
        reki__free(e);
    return rc;
}

int reki__mbox_pop(struct reki__proc *p, void **msg, reki_pid_t *caller, struct reki__env **kenv)
{
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_nonblocking(&p->mq_head, &p->mq_tail);
    if (n == NULL)
        return REKI__POP_EMPTY;
    if (n == CDS_WFCQ_WOULDBLOCK)
        return REKI__POP_BUSY;
    struct reki__env *e = REKI__CONTAINER_OF(n, struct reki__env, node);
    void *m = atomic_load_explicit(&e->msg, memory_order_acquire);
    uint64_t via = atomic_load_explicit(&e->via, memory_order_relaxed);
    bool tagged = (via & REKI__VIA_TAG) != 0;
    if (tagged && (via & REKI__VIA_KIND) == (REKI__VIA_IDLE & REKI__VIA_KIND)) {
        reki__free(e); /* an idle tick: never counted */
        *msg = (void *)(uintptr_t)(via & REKI__VIA_LOW);
        return REKI__POP_IDLE;
    }
    atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
    *msg = m;
    if (caller)
        *caller = tagged ? 0 : via;
    /* By key: the envelope goes with the message, to be freed or to be the
     * exit path's leftover. */
    if (tagged && kenv) {
        *kenv = e;
        return REKI__POP_MSG;
    }
    if (kenv)
        *kenv = NULL;
    reki__free(e);
    return REKI__POP_MSG;
}

bool reki__mbox_empty(struct reki__proc *p)
{
    return cds_wfcq_empty(&p->mq_head, &p->mq_tail);
}

void reki__mbox_leftover(struct reki__env *kenv)
{
    uint64_t via = atomic_load_explicit(&kenv->via, memory_order_relaxed);
    struct reki__keyq *kq = (struct reki__keyq *)(uintptr_t)(via & REKI__VIA_LOW);
    cds_wfcq_node_init(&kenv->node);
    cds_wfcq_enqueue(&kq->lh, &kq->lt, &kenv->node);
    kq->nleft++;
}

size_t reki__mbox_drain(struct reki__proc *p)
{
    size_t n = 0;
    for (;;) {
        void *msg;
        struct reki__env *kenv;
        int rc = reki__mbox_pop(p, &msg, NULL, &kenv);
        if (rc == REKI__POP_EMPTY)
            return n;
        if (rc == REKI__POP_BUSY) {
            /* A sender is between its tail exchange and its link store: it
             * is running (or preempted) and will finish in a few cycles. */
            sched_yield();
            continue;
        }
        if (rc == REKI__POP_IDLE)
            continue;
        if (kenv && p->kind != REKI__INBOX) {
            reki__mbox_leftover(kenv);
            continue;
        }
        /* An inbox drains when it is freed, long after its exit path: what
         * came by key is its own, like what came by pid. */
        reki__free(kenv);
        if (p->beh->drop)
            p->beh->drop(msg);
        n++;
    }
}

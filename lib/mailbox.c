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
 * consumer decrements after each dequeue.
 */
#include "internal.h"

struct envelope {
    struct cds_wfcq_node node;
    _Atomic(void *) msg;
    reki_pid_t caller; /* reki_call's reply address, or 0 (same malloc size class) */
};

int reki__mbox_push(struct reki__proc *p, void *msg, bool *was_empty)
{
    return reki__mbox_push_ex(p, msg, 0, true, was_empty);
}

int reki__mbox_push_ex(struct reki__proc *p, void *msg, reki_pid_t caller, bool bounded,
                       bool *was_empty)
{
    /* Counted before the enqueue, so the consumer's decrement never comes
     * first; a bounded mailbox refuses past its bound (the increment is the
     * reservation, given back on refusal). */
    uint32_t n = atomic_fetch_add_explicit(&p->qlen, 1, memory_order_relaxed);
    if (bounded && p->max_queue && n >= p->max_queue) {
        atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
        return REKI_EFULL;
    }
    struct envelope *e = reki__malloc(sizeof(*e));
    if (!e) {
        atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
        return REKI_ENOMEM;
    }
    cds_wfcq_node_init(&e->node);
    e->caller = caller;
    /* release: pairs with the acquire in reki__mbox_pop. */
    atomic_store_explicit(&e->msg, msg, memory_order_release);
    /* cds_wfcq_enqueue returns false when the queue was empty before. */
    *was_empty = !cds_wfcq_enqueue(&p->mq_head, &p->mq_tail, &e->node);
    return REKI_OK;
}

int reki__mbox_pop(struct reki__proc *p, void **msg, reki_pid_t *caller)
{
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_nonblocking(&p->mq_head, &p->mq_tail);
    if (n == NULL)
        return 0;
    if (n == CDS_WFCQ_WOULDBLOCK)
        return -1;
    struct envelope *e = REKI__CONTAINER_OF(n, struct envelope, node);
    *msg = atomic_load_explicit(&e->msg, memory_order_acquire);
    if (caller)
        *caller = e->caller;
    reki__free(e);
    atomic_fetch_sub_explicit(&p->qlen, 1, memory_order_relaxed);
    return 1;
}

bool reki__mbox_empty(struct reki__proc *p)
{
    return cds_wfcq_empty(&p->mq_head, &p->mq_tail);
}

size_t reki__mbox_drain(struct reki__proc *p)
{
    size_t n = 0;
    for (;;) {
        void *msg;
        int rc = reki__mbox_pop(p, &msg, NULL);
        if (rc == 0)
            return n;
        if (rc < 0) {
            /* A sender is between its tail exchange and its link store: it
             * is running (or preempted) and will finish in a few cycles. */
            sched_yield();
            continue;
        }
        if (p->beh->drop)
            p->beh->drop(msg);
        n++;
    }
}

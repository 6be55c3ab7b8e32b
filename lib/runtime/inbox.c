/*
 * Inboxes: a pid that a plain thread receives on (a Gleam Subject made in
 * main).  The receiving thread is the mailbox's single consumer; it sleeps on
 * the proc's `sched` word like a dedicated actor's thread.
 *
 * Killing an inbox's pid (reki_kill, reki_rt_free, a registry stop) is its
 * exit: sends fail from then on, links and monitors run at once (there is no
 * terminate).  Messages accepted before it stay receivable until
 * reki_inbox_free, which drops what is left.
 */
#include <sys/eventfd.h>
#include <unistd.h>

#include "runtime/runtime.h"

struct reki_inbox {
    struct reki__proc *p;
    struct reki__list node; /* rt->inboxes */
    bool drained;           /* receiver only: dead and empty after a grace period */
};

static void inbox_release(reki_inbox_t *in);

int reki_inbox_new(reki_rt_t *rt, reki_inbox_t **out)
{
    return reki_inbox_new_ex(rt, NULL, out);
}

int reki_inbox_new_ex(reki_rt_t *rt, const reki_inbox_opts_t *opts, reki_inbox_t **out)
{
    if (!rt || !out)
        return REKI_EINVAL;
    reki_inbox_t *in = reki__malloc(sizeof(*in));
    if (!in)
        return REKI_ENOMEM;
    in->drained = false;
    /* The inbox's own behavior (not interned): reki_inbox_set_drop writes
     * its drop; retire_cb frees it with the proc. */
    struct reki__beh *beh = reki__malloc(sizeof(*beh));
    if (!beh) {
        reki__free(in);
        return REKI_ENOMEM;
    }
    *beh = (struct reki__beh){.drop = opts ? opts->drop : NULL};
    int rc = reki__proc_new(rt, beh, NULL, REKI__INBOX, 0, &in->p);
    if (rc != REKI_OK) {
        reki__free(beh);
        reki__free(in);
        return rc;
    }
    atomic_store_explicit(&in->p->sched, REKI__SCHEDULED, memory_order_release);
    /* Checked under objs_lock: reki_rt_free sets shutdown before it takes
     * the lock to free the listed inboxes, so none is added after. */
    pthread_mutex_lock(&rt->objs_lock);
    bool closed = atomic_load_explicit(&rt->shutdown, memory_order_seq_cst);
    if (!closed)
        reki__list_add(&rt->inboxes, &in->node);
    pthread_mutex_unlock(&rt->objs_lock);
    if (closed) {
        inbox_release(in);
        return REKI_ESHUTDOWN;
    }
    *out = in;
    return REKI_OK;
}

reki_pid_t reki_inbox_pid(const reki_inbox_t *in)
{
    return in ? in->p->pid : 0;
}

int reki_inbox_set_drop(reki_inbox_t *in, void (*drop)(void *msg))
{
    if (!in)
        return REKI_EINVAL;
    ((struct reki__beh *)in->p->beh)->drop = drop; /* the inbox's own (reki_inbox_new_ex) */
    return REKI_OK;
}

/* SCHEDULED -> IDLE (unless the exit path already wrote DONE): from now on
 * the next sender's, or the killer's, CAS from IDLE wakes the receiver.
 * Returns the value to sleep on. */
static uint32_t inbox_go_idle(struct reki__proc *p)
{
    uint32_t s = REKI__SCHEDULED;
    if (atomic_compare_exchange_strong_explicit(&p->sched, &s, REKI__IDLE, memory_order_seq_cst,
                                                memory_order_seq_cst))
        s = REKI__IDLE;
    return s;
}

/* After inbox_go_idle: is there something to look at, a message or the
 * death?  Dekker with a sender's "enqueue; CAS IDLE -> SCHEDULED" and with
 * the killer's "reason; CAS IDLE -> SCHEDULED" (reki__kill_pid): one of the
 * two sides sees the other. */
static bool inbox_pending(struct reki__proc *p)
{
    REKI__FENCE();
    return !reki__mbox_empty(p) ||
           atomic_load_explicit(&p->reason, memory_order_seq_cst) != REKI__ALIVE;
}

static void inbox_resume(struct reki__proc *p)
{
    uint32_t idle = REKI__IDLE;
    atomic_compare_exchange_strong_explicit(&p->sched, &idle, REKI__SCHEDULED, memory_order_acquire,
                                            memory_order_acquire);
}

/* Sleep until a sender wakes us; REKI_ETIMEDOUT at the deadline. */
static int inbox_sleep(struct reki__proc *p, const struct timespec *deadline)
{
    uint32_t s = inbox_go_idle(p);
    if (inbox_pending(p))
        return REKI_OK;
    int rc = reki__futex_wait(&p->sched, s, deadline);
    if (s == REKI__IDLE)
        inbox_resume(p);
    return rc;
}

/* The queue is empty and the pid dead: once every sender that saw the pid
 * alive has finished its enqueue (a grace period: they enqueue inside a
 * read-side section), an empty queue stays empty. */
static bool inbox_dead_and_drained(reki_inbox_t *in)
{
    if (atomic_load_explicit(&in->p->reason, memory_order_acquire) == REKI__ALIVE)
        return false;
    if (!in->drained) {
        reki__rcu_synchronize();
        in->drained = true;
        return reki__mbox_empty(in->p);
    }
    return true;
}

int reki_inbox_fd(reki_inbox_t *in)
{
    if (!in)
        return REKI_EINVAL;
    struct reki__proc *p = in->p;
    int fd = atomic_load_explicit(&p->in.efd, memory_order_acquire);
    if (fd >= 0)
        return fd;
    if (!reki__alloc_ok())
        return REKI_ENOMEM;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return REKI_ENOMEM;
    int none = -1;
    /* release: senders acquire it in reki__proc_wake.  A racing call (the
     * contract has one receiving thread, but be safe) keeps the first fd. */
    if (!atomic_compare_exchange_strong_explicit(&p->in.efd, &none, fd, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        close(fd);
        return none;
    }
    /* Readable from the start: messages may already wait. */
    reki__eventfd_signal(fd);
    return fd;
}

/* reki_inbox_recv(in, &m, 0) found nothing: go IDLE, so that the next
 * sender's CAS from IDLE signals the eventfd, and make the fd unreadable;
 * true if something arrived (or the pid died) meanwhile, to look again.  A
 * sender that enqueued before our IDLE found the proc SCHEDULED and
 * signalled nothing: inbox_pending sees its message. */
static bool inbox_disarm(struct reki__proc *p)
{
    int fd = atomic_load_explicit(&p->in.efd, memory_order_acquire);
    if (fd < 0)
        return false;
    inbox_go_idle(p);
    reki__eventfd_clear(fd);
    if (!inbox_pending(p))
        return false;
    inbox_resume(p);
    return true;
}

int reki_inbox_recv(reki_inbox_t *in, void **msg, int timeout_ms)
{
    if (!in || !msg || timeout_ms < -1)
        return REKI_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = reki__deadline(&ts, timeout_ms) ? &ts : NULL;
    /* reki_caller: the received message's caller, 0 for a send or none. */
    reki_pid_t caller = 0;
    reki__tls_swap_caller(0);
    for (;;) {
        int rc = reki__mbox_pop(in->p, msg, &caller, NULL);
        if (rc == REKI__POP_MSG) {
            reki__tls_swap_caller(caller);
            return REKI_OK;
        }
        if (rc == REKI__POP_IDLE)
            continue; /* never armed on an inbox */
        if (rc == REKI__POP_BUSY) {
            sched_yield(); /* a sender is mid-enqueue */
            continue;
        }
        if (inbox_dead_and_drained(in))
            return REKI_EDEAD;
        if (timeout_ms == 0) {
            if (inbox_disarm(in->p))
                continue; /* a message or the death arrived meanwhile */
            return REKI_ETIMEDOUT;
        }
        if (inbox_sleep(in->p, deadline) == REKI_ETIMEDOUT) {
            if (reki__mbox_pop(in->p, msg, &caller, NULL) != REKI__POP_MSG)
                return REKI_ETIMEDOUT;
            reki__tls_swap_caller(caller);
            return REKI_OK;
        }
    }
}

static void inbox_retire(struct reki__proc *p)
{
    reki__mbox_drain(p);
    reki__proc_retire(p); /* late senders' messages are dropped after a grace period */
}

void reki__inbox_exited(struct reki__proc *p)
{
    if (p->free_on_finish) {
        /* reki_inbox_free ran inside this exit path (a monitor freed the
         * inbox it watched) and left the proc to us: we are its last user. */
        inbox_retire(p);
        return;
    }
    /* Inside a read-side section: p is retired (call_rcu) once the owner
     * sees `finished`, and freed only after this section. */
    reki__rcu_read_lock();
    /* release: pairs with inbox_release's acquire; the exit path (monitors,
     * links) happens-before the proc is retired. */
    atomic_store_explicit(&p->in.finished, 1, memory_order_release);
    reki__futex_wake(&p->in.finished, INT32_MAX);
    reki__rcu_read_unlock();
}

static void inbox_release(reki_inbox_t *in)
{
    struct reki__proc *p = in->p;
    reki__kill_pid(p->rt, p->pid, REKI_EXIT_NORMAL);
    reki__free(in);
    if (reki__tls_current() == p->pid) {
        /* Called from this inbox's own exit path (one of its monitors): that
         * path finishes after we return, and retires the proc then. */
        p->free_on_finish = 1;
        return;
    }
    /* Whoever killed the pid runs its exit path (monitors may block, and
     * call back in): wait for it before the proc goes. */
    while (!atomic_load_explicit(&p->in.finished, memory_order_acquire))
        reki__futex_wait(&p->in.finished, 0, NULL);
    inbox_retire(p);
}

void reki_inbox_free(reki_inbox_t *in)
{
    if (!in)
        return;
    reki_rt_t *rt = in->p->rt;
    pthread_mutex_lock(&rt->objs_lock);
    reki__list_del(&in->node);
    pthread_mutex_unlock(&rt->objs_lock);
    inbox_release(in);
}

void reki__inbox_free_all(reki_rt_t *rt)
{
    pthread_mutex_lock(&rt->objs_lock);
    while (rt->inboxes.next != &rt->inboxes) {
        struct reki__list *n = rt->inboxes.next;
        reki__list_del(n);
        pthread_mutex_unlock(&rt->objs_lock);
        inbox_release(REKI__CONTAINER_OF(n, reki_inbox_t, node));
        pthread_mutex_lock(&rt->objs_lock);
    }
    pthread_mutex_unlock(&rt->objs_lock);
}

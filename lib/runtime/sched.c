/*
 * The worker pool that runs light actors (M:N).
 *
 * Each worker owns a run queue (a wfcqueue: any thread enqueues wait-free;
 * dequeuers — the owner and idle thieves — take a mutex).  A worker that
 * schedules an actor puts it on its own queue (cache locality: the message it
 * just sent is hot); other threads spread actors round-robin with a counter
 * of their own.  An actor is in at most one queue at a time (its `sched`
 * word), so per-actor order is kept however actors move between workers.
 *
 * Sleeping uses an event count: a worker announces itself in `sleepers`,
 * reads `ec_seq`, re-checks every queue and only then waits on `ec_seq`; a
 * pusher enqueues, fences, and bumps `ec_seq` if anyone sleeps.  Either the
 * sleeper sees the work or the pusher sees the sleeper: no lost wake-up.
 * Only one wake-up is on its way at a time (`waking`): a burst of pushes to
 * a sleeping pool makes one futex call, not one per message; each worker
 * clears the flag as it goes to sleep (after reading `ec_seq`, see
 * idle_wait) and as it wakes.
 * Workers spin briefly first, since a futex round trip costs more than most
 * handlers, but only while spinning pays: each worker keeps a spin budget
 * that doubles (up to SPIN_MAX rounds) when work arrived during a spin and
 * halves when the spin ended in sleep anyway.  Under a steady stream of
 * messages the budget stays high and no worker sleeps between them; at a
 * trickle (one message per millisecond) it falls to nothing within a few
 * messages, so a wake-up costs one futex round trip and no spinning.  A
 * sleep shorter than a full spin would have lasted grows the budget again.
 */
#include "runtime/runtime.h"

#define SPIN_MAX 256       /* rounds; every 8th yields the CPU */
#define SPIN_MIN 8         /* a spin that succeeded grows back from here */
#define SPIN_PAYS_NS 20000 /* about what SPIN_MAX rounds take: a shorter sleep means spin */

static struct cds_wfcq_node *pop(struct reki__worker *w)
{
    pthread_mutex_lock(&w->dq_lock);
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_nonblocking(&w->head, &w->tail);
    pthread_mutex_unlock(&w->dq_lock);
    return n;
}

/* A proc to run, or NULL.  *busy is set when some queue is mid-enqueue. */
static struct reki__proc *pop_any(reki_rt_t *rt, struct reki__worker *w, bool *busy)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct reki__worker *q = &rt->workers[(w->id + i) % rt->nworkers];
        if (cds_wfcq_empty(&q->head, &q->tail))
            continue;
        struct cds_wfcq_node *n = pop(q);
        if (n == CDS_WFCQ_WOULDBLOCK) {
            *busy = true;
            continue;
        }
        if (n)
            return REKI__CONTAINER_OF(n, struct reki__proc, rq_node);
    }
    return NULL;
}

static bool any_work(reki_rt_t *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (!cds_wfcq_empty(&rt->workers[i].head, &rt->workers[i].tail))
            return true;
    return false;
}

/* Wait for work; false when the pool is stopping and nothing is left. */
static bool idle_wait(reki_rt_t *rt, struct reki__worker *w)
{
    for (unsigned i = 0; i < w->spin; i++) {
        if (any_work(rt)) {
            w->spin = w->spin * 2 > SPIN_MAX ? SPIN_MAX : w->spin * 2;
            return true;
        }
        if (i & 7)
            REKI__CPU_RELAX();
        else
            sched_yield();
    }
    /* The spin (if any) found nothing: next time, spin less; a worker that
     * no longer spins starts again from SPIN_MIN when sleeping proves short
     * (it wakes to find work queued at once, below). */
    w->spin /= 2;
    atomic_fetch_add_explicit(&rt->sleepers, 1, memory_order_seq_cst);
    REKI__YIELD();
    uint32_t seq = atomic_load_explicit(&rt->ec_seq, memory_order_seq_cst);
    /* A wake-up announced before this point may have gone to another
     * worker: have the next push announce one again (reki__sched_push).
     * Cleared only after seq is read: a push that takes the flag from now
     * on bumps ec_seq after that read, so the futex_wait below cannot sleep
     * through it; a push that found the flag taken before the clear did its
     * enqueue before it, so the re-check below sees the work.  (Clearing
     * before reading seq let a push's bump be read as the value to sleep on,
     * leaving the flag set with every worker asleep.) */
    atomic_store_explicit(&rt->waking, 0, memory_order_seq_cst);
    REKI__YIELD();
    bool stop = atomic_load_explicit(&rt->stop, memory_order_seq_cst);
    bool work = any_work(rt);
    if (!work && !stop) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        reki__futex_wait(&rt->ec_seq, seq, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t slept = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
        if (slept < SPIN_PAYS_NS) /* a full spin would have caught this work */
            w->spin = w->spin * 2 < SPIN_MIN ? SPIN_MIN
                                             : (w->spin * 2 > SPIN_MAX ? SPIN_MAX : w->spin * 2);
    } else if (work && w->spin < SPIN_MIN) {
        w->spin = SPIN_MIN; /* work came while we went to sleep: spinning would have paid */
    }
    atomic_fetch_sub_explicit(&rt->sleepers, 1, memory_order_seq_cst);
    /* Awake: let the next push wake another sleeper, to share a burst. */
    atomic_store_explicit(&rt->waking, 0, memory_order_seq_cst);
    return work || !stop;
}

static void *worker_main(void *arg)
{
    struct reki__worker *w = arg;
    reki_rt_t *rt = w->rt;
    reki__tls_set_worker(w);
    for (;;) {
        bool busy = false;
        struct reki__proc *p = pop_any(rt, w, &busy);
        if (p) {
            reki__proc_run(p);
            continue;
        }
        if (busy) {
            sched_yield(); /* a pusher was preempted mid-enqueue */
            continue;
        }
        if (!idle_wait(rt, w))
            break;
    }
    reki__tls_set_worker(NULL);
    return NULL;
}

void reki__sched_push(reki_rt_t *rt, struct reki__proc *p)
{
    struct reki__worker *w = reki__tls_worker();
    if (!w || w->rt != rt)
        w = &rt->workers[reki__tls_next_rr() % rt->nworkers];
    cds_wfcq_node_init(&p->rq_node);
    cds_wfcq_enqueue(&w->head, &w->tail, &p->rq_node);
    REKI__YIELD();
    /* Dekker with idle_wait: enqueue, fence, read sleepers. */
    REKI__FENCE();
    if (atomic_load_explicit(&rt->sleepers, memory_order_seq_cst) > 0 &&
        !atomic_exchange_explicit(&rt->waking, 1, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&rt->ec_seq, 1, memory_order_seq_cst);
        reki__futex_wake(&rt->ec_seq, 1);
    }
}

int reki__sched_start(reki_rt_t *rt, unsigned nworkers)
{
    rt->workers = reki__aligned_alloc(64, nworkers * sizeof(*rt->workers));
    if (!rt->workers)
        return REKI_ENOMEM;
    rt->nworkers = nworkers;
    for (unsigned i = 0; i < nworkers; i++) {
        struct reki__worker *w = &rt->workers[i];
        __cds_wfcq_init(&w->head, &w->tail);
        pthread_mutex_init(&w->dq_lock, NULL);
        w->rt = rt;
        w->id = i;
        w->spin = SPIN_MAX;
        w->started = false;
    }
    for (unsigned i = 0; i < nworkers; i++) {
        int rc = reki__thread_create(&rt->workers[i].tid, worker_main, &rt->workers[i]);
        if (rc != REKI_OK) {
            reki__sched_stop(rt);
            return rc;
        }
        rt->workers[i].started = true;
    }
    return REKI_OK;
}

void reki__sched_stop(reki_rt_t *rt)
{
    if (!rt->workers)
        return;
    atomic_store_explicit(&rt->stop, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&rt->ec_seq, 1, memory_order_seq_cst);
    reki__futex_wake(&rt->ec_seq, (int)rt->nworkers);
    /* Join all before destroying any dequeue lock: a worker still running
     * may be stealing from another's queue. */
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].started)
            pthread_join(rt->workers[i].tid, NULL);
    for (unsigned i = 0; i < rt->nworkers; i++)
        pthread_mutex_destroy(&rt->workers[i].dq_lock);
    reki__free(rt->workers);
    rt->workers = NULL;
}

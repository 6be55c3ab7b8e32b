/*
 * The registry's start threads: where reki_send_key's starts, restarts and
 * starts for leftover messages run, so that no sender waits for a start.
 *
 * The queue.  A wfcqueue of entries (through entry->snode): a push is one
 * wait-free enqueue; threads take starts one at a time under a one-byte
 * spinlock (wfcqueue's dequeuers must exclude each other; the critical
 * section is a few loads and stores).  A thread with nothing to do spins
 * briefly, then sleeps on a futex; a pusher makes a system call only when a
 * thread sleeps (Dekker: the sleeper counts itself, then looks at the queue
 * again; the pusher enqueues, a full barrier, then reads the count).  The
 * first design, a mutex and a condition variable, spent most of a cold
 * key's time in futex calls (lock contention between the pusher and the
 * threads, a signal per push).
 *
 * Threads.  One is made with the registry (so a queued start always has a
 * thread to run it).  More are made when a start is queued and no thread is
 * free to take it: at once up to one per online CPU, and beyond that, up to
 * REKI__STARTERS_MAX, only when no thread has taken a start for SLOW_NS
 * (every one is stuck in a start).  So a start that blocks delays other
 * keys' by at most about that much, while quick starts in bulk do not pay
 * for threads that only take turns on the same cores (measured: 16 threads
 * made a cold key cost 2.8x what 2 threads did, on 2 cores).  Threads live
 * until reki_registry_free, which frees the pool only once every entry is
 * FREE, so no start is queued or running then.
 */
#include <time.h>
#include <unistd.h>

#include "registry.h"

#define SLOW_NS 1000000       /* a start running this long counts as blocked */
#define SPINS 64              /* looks at an empty queue before sleeping */
#define REAP_IDLE_STEPS 65536 /* reaper steps before a sleep, at most */

struct reki__starter {
    struct __cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    reki__spin_t take; /* dequeuers exclude each other */
    _Atomic long queued;
    _Atomic unsigned free;     /* threads not running a start */
    _Atomic unsigned sleepers; /* threads asleep or about to be */
    _Atomic uint32_t wake;     /* futex word */
    _Atomic int stop;
    _Atomic uint64_t last_take; /* ns when a thread last took a start */
    pthread_mutex_t grow;       /* thread creation and nthreads */
    _Atomic unsigned nthreads;
    unsigned eager; /* threads made without waiting: online CPUs */
    reki_registry_t *reg;
    pthread_t threads[REKI__STARTERS_MAX];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct reki__entry *take(struct reki__starter *s)
{
    if (cds_wfcq_empty(&s->head, &s->tail))
        return NULL;
    reki__spin_lock(&s->take);
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_blocking(&s->head, &s->tail);
    reki__spin_unlock(&s->take);
    if (!n)
        return NULL;
    atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->free, 1, memory_order_relaxed);
    atomic_store_explicit(&s->last_take, mono_ns(), memory_order_relaxed);
    struct reki__entry *e = REKI__CONTAINER_OF(n, struct reki__entry, snode);
    /* acquire: pairs with the pusher's release (the wfcqueue itself is
     * invisible to TSan): the holder's writes to e happen-before the start. */
    (void)atomic_load_explicit(&e->spub, memory_order_acquire);
    return e;
}

static void *starter_main(void *arg)
{
    struct reki__starter *s = arg;
    unsigned spins = 0;
    for (;;) {
        struct reki__entry *e = take(s);
        if (e) {
            reki__vkey_run_start(e);
            atomic_fetch_add_explicit(&s->free, 1, memory_order_relaxed);
            spins = 0;
            continue;
        }
        if (atomic_load_explicit(&s->stop, memory_order_acquire))
            return NULL; /* nothing queued, and nothing will be */
        if (++spins < SPINS) {
            sched_yield();
            continue;
        }
        /* About to sleep: reap what passivations left FREE (bounded, and
         * only while steps find entries to reap). */
        for (unsigned i = 0; i < REAP_IDLE_STEPS && cds_wfcq_empty(&s->head, &s->tail) &&
                             reki__reaper_step(s->reg) > 0;
             i++)
            ;
        uint32_t seen = atomic_load_explicit(&s->wake, memory_order_seq_cst);
        atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
        if (cds_wfcq_empty(&s->head, &s->tail) &&
            !atomic_load_explicit(&s->stop, memory_order_seq_cst))
            reki__futex_wait(&s->wake, seen, NULL);
        atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_relaxed);
        spins = 0;
    }
}

int reki__starter_new(reki_registry_t *reg)
{
    struct reki__starter *s = reki__calloc(1, sizeof(*s));
    if (!s)
        return REKI_ENOMEM;
    __cds_wfcq_init(&s->head, &s->tail);
    atomic_init(&s->take.held, 0);
    atomic_init(&s->queued, 0);
    atomic_init(&s->free, 1);
    atomic_init(&s->sleepers, 0);
    atomic_init(&s->wake, 0);
    atomic_init(&s->stop, 0);
    atomic_init(&s->last_take, 0);
    atomic_init(&s->nthreads, 1);
    pthread_mutex_init(&s->grow, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->reg = reg;
    s->eager = cpus < 2 ? 2 : cpus > REKI__STARTERS_MAX ? REKI__STARTERS_MAX : (unsigned)cpus;
    int rc = reki__thread_create(&s->threads[0], starter_main, s);
    if (rc != REKI_OK) {
        pthread_mutex_destroy(&s->grow);
        reki__free(s);
        return rc;
    }
    reg->starter = s;
    return REKI_OK;
}

/* A start is queued and no thread may be free for it: maybe one more. */
static void maybe_grow(struct reki__starter *s)
{
    pthread_mutex_lock(&s->grow);
    unsigned n = atomic_load_explicit(&s->nthreads, memory_order_relaxed);
    if (n < REKI__STARTERS_MAX &&
        atomic_load_explicit(&s->queued, memory_order_relaxed) >
            (long)atomic_load_explicit(&s->free, memory_order_relaxed) &&
        (n < s->eager ||
         mono_ns() - atomic_load_explicit(&s->last_take, memory_order_relaxed) > SLOW_NS)) {
        /* Counted free before it runs, so that the next push does not
         * make another for the same start.  A thread that cannot be made
         * is no loss: the existing ones run the start. */
        atomic_fetch_add_explicit(&s->free, 1, memory_order_relaxed);
        if (reki__thread_create(&s->threads[n], starter_main, s) == REKI_OK)
            atomic_store_explicit(&s->nthreads, n + 1, memory_order_relaxed);
        else
            atomic_fetch_sub_explicit(&s->free, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->grow);
}

void reki__starter_push(reki_registry_t *reg, struct reki__entry *e)
{
    struct reki__starter *s = reg->starter;
    /* release: the taker's acquire; our writes to e (its queue, owner). */
    atomic_store_explicit(&e->spub, 1, memory_order_release);
    cds_wfcq_node_init(&e->snode);
    long q = atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed) + 1;
    /* The enqueue's exchange is a full barrier: a thread that counted
     * itself asleep before it looked at the queue is seen below. */
    cds_wfcq_enqueue(&s->head, &s->tail, &e->snode);
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&s->wake, 1, memory_order_seq_cst);
        reki__futex_wake(&s->wake, 1);
    }
    if (q > (long)atomic_load_explicit(&s->free, memory_order_relaxed) &&
        atomic_load_explicit(&s->nthreads, memory_order_relaxed) < REKI__STARTERS_MAX)
        maybe_grow(s);
}

void reki__starter_kick(reki_registry_t *reg)
{
    struct reki__starter *s = reg->starter;
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&s->wake, 1, memory_order_seq_cst);
        reki__futex_wake(&s->wake, 1);
    }
}

void reki__starter_free(reki_registry_t *reg)
{
    struct reki__starter *s = reg->starter;
    if (!s)
        return;
    atomic_store_explicit(&s->stop, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&s->wake, 1, memory_order_seq_cst);
    reki__futex_wake(&s->wake, INT32_MAX);
    unsigned n = atomic_load_explicit(&s->nthreads, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->grow);
    reki__free(s);
    reg->starter = NULL;
}

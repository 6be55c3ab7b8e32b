/*
 * The registry's start threads: where reki_send_key's starts, restarts and
 * starts for leftover messages run, so that no sender waits for a start.
 *
 * The queue.  A wfcqueue of entries (through entry->snode): a push is one
 * wait-free enqueue; threads take starts one at a time under a one-byte
 * spinlock (wfcqueue's dequeuers must exclude each other; the critical
 * section is a few loads and stores).  A thread with nothing to do yields a
 * few times, then sleeps on a futex; a pusher makes a system call only when
 * a thread sleeps (Dekker: the sleeper counts itself, fences, then looks at
 * the queue again; the pusher enqueues, a full barrier, then reads the
 * count).  The first design, a mutex and a condition variable, spent most
 * of a cold key's time in futex calls (lock contention between the pusher
 * and the threads, a signal per push).
 *
 * Threads.  One worker is made with the registry, and a pusher that finds
 * no free worker makes another at once, up to one per online CPU.  Beyond
 * that, up to REKI__STARTERS_MAX, the supervisor decides: a thread of its own
 * that sleeps while no start waits, and while starts wait and no worker is
 * free, looks every SLOW_NS and adds a worker when none has taken a start
 * for SLOW_NS (every worker is stuck in a start).  So a start that blocks
 * delays other keys' by about SLOW_NS at most (until 16 block at once),
 * and quick starts in bulk do not pay for threads that only take turns on
 * the same cores (measured: 16 threads made a cold key cost 2.8x what 2
 * did, on 2 cores).  A pusher wakes the supervisor only when it sleeps
 * without a deadline (no start was waiting).
 *
 * Counting.  `free` is taken before a dequeue and given back if the queue
 * was empty, so a pusher never sees a start queued and a worker counted
 * free that has in fact taken another start.
 *
 * Threads live until reki_registry_free, which frees the pool only once
 * every entry is FREE (no start queued or running) and a grace period has
 * passed (pushes run inside read-side sections).  Before sleeping, workers
 * run reaper steps, so that the FREE entries a wave of passivations leaves
 * behind are reaped once the wave is over (reaper.c).
 */
#include <time.h>
#include <unistd.h>

#include "registry/registry.h"

#define SLOW_NS 1000000       /* a start running this long counts as blocked */
#define SPINS 64              /* looks at an empty queue before sleeping */
#define REAP_IDLE_STEPS 65536 /* reaper steps before a sleep, at most */

struct reki__starter {
    struct __cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    reki__spin_t take; /* dequeuers exclude each other */
    _Atomic long queued;
    _Atomic long free;         /* workers not running a start */
    _Atomic unsigned sleepers; /* workers asleep or about to be */
    _Atomic uint32_t wake;     /* futex word of the workers */
    _Atomic uint32_t sup;      /* futex word of the supervisor */
    _Atomic int sup_idle;      /* the supervisor sleeps with no deadline */
    _Atomic int stop;
    _Atomic uint64_t last_take; /* ns when a worker last took a start */
    pthread_mutex_t grow;       /* thread creation and nthreads */
    _Atomic unsigned nthreads;
    unsigned eager; /* workers made by pushers: online CPUs */
    reki_registry_t *reg;
    pthread_t supervisor;
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
    atomic_fetch_sub_explicit(&s->free, 1, memory_order_seq_cst);
    reki__spin_lock(&s->take);
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_blocking(&s->head, &s->tail);
    reki__spin_unlock(&s->take);
    if (!n) {
        atomic_fetch_add_explicit(&s->free, 1, memory_order_seq_cst);
        return NULL;
    }
    atomic_fetch_sub_explicit(&s->queued, 1, memory_order_seq_cst);
    atomic_store_explicit(&s->last_take, mono_ns(), memory_order_relaxed);
    struct reki__entry *e = REKI__CONTAINER_OF(n, struct reki__entry, snode);
    /* acquire: pairs with the pusher's release (the wfcqueue itself is
     * invisible to TSan): the holder's writes to e happen-before the start. */
    (void)atomic_load_explicit(&e->spub, memory_order_acquire);
    return e;
}

/* Reaper steps until one finds nothing to reap (bounded). */
static void reap_before_sleep(struct reki__starter *s)
{
    for (unsigned i = 0; i < REAP_IDLE_STEPS && cds_wfcq_empty(&s->head, &s->tail); i++) {
        if (reki__reaper_step(s->reg) == 0)
            return;
    }
}

static void *worker_main(void *arg)
{
    struct reki__starter *s = arg;
    unsigned spins = 0;
    for (;;) {
        struct reki__entry *e = take(s);
        if (e) {
            reki__vkey_run_start(e);
            atomic_fetch_add_explicit(&s->free, 1, memory_order_seq_cst);
            spins = 0;
            continue;
        }
        if (atomic_load_explicit(&s->stop, memory_order_acquire))
            return NULL; /* nothing queued, and nothing will be */
        if (++spins < SPINS) {
            sched_yield();
            continue;
        }
        reap_before_sleep(s);
        uint32_t seen = atomic_load_explicit(&s->wake, memory_order_seq_cst);
        atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
        /* The queue's emptiness is read with plain loads inside liburcu. */
        REKI__FENCE();
        if (cds_wfcq_empty(&s->head, &s->tail) &&
            !atomic_load_explicit(&s->stop, memory_order_seq_cst))
            reki__futex_wait(&s->wake, seen, NULL);
        atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_relaxed);
        spins = 0;
    }
}

/* Under grow: one more worker, counted free before it runs. */
static void add_worker(struct reki__starter *s)
{
    unsigned n = atomic_load_explicit(&s->nthreads, memory_order_relaxed);
    if (n >= REKI__STARTERS_MAX)
        return;
    atomic_fetch_add_explicit(&s->free, 1, memory_order_seq_cst);
    /* A thread that cannot be made is no loss: the others run the start. */
    if (reki__thread_create(&s->threads[n], worker_main, s) == REKI_OK)
        atomic_store_explicit(&s->nthreads, n + 1, memory_order_release);
    else
        atomic_fetch_sub_explicit(&s->free, 1, memory_order_seq_cst);
}

static bool starved(struct reki__starter *s)
{
    return atomic_load_explicit(&s->queued, memory_order_seq_cst) >
           atomic_load_explicit(&s->free, memory_order_seq_cst);
}

static void *supervisor_main(void *arg)
{
    struct reki__starter *s = arg;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        uint32_t seen = atomic_load_explicit(&s->sup, memory_order_seq_cst);
        if (!starved(s)) {
            atomic_store_explicit(&s->sup_idle, 1, memory_order_seq_cst);
            if (!starved(s) && !atomic_load_explicit(&s->stop, memory_order_seq_cst))
                reki__futex_wait(&s->sup, seen, NULL);
            atomic_store_explicit(&s->sup_idle, 0, memory_order_seq_cst);
            continue;
        }
        uint64_t idle = mono_ns() - atomic_load_explicit(&s->last_take, memory_order_relaxed);
        if (idle > SLOW_NS) {
            pthread_mutex_lock(&s->grow);
            if (starved(s))
                add_worker(s);
            pthread_mutex_unlock(&s->grow);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SLOW_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        reki__futex_wait(&s->sup, seen, &ts);
    }
    return NULL;
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
    atomic_init(&s->sup, 0);
    atomic_init(&s->sup_idle, 0);
    atomic_init(&s->stop, 0);
    atomic_init(&s->last_take, 0);
    atomic_init(&s->nthreads, 1);
    pthread_mutex_init(&s->grow, NULL);
    s->reg = reg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->eager = cpus < 2 ? 2 : cpus > REKI__STARTERS_MAX ? REKI__STARTERS_MAX : (unsigned)cpus;
    int rc = reki__thread_create(&s->threads[0], worker_main, s);
    if (rc == REKI_OK) {
        rc = reki__thread_create(&s->supervisor, supervisor_main, s);
        if (rc != REKI_OK) {
            atomic_store_explicit(&s->stop, 1, memory_order_seq_cst);
            atomic_fetch_add_explicit(&s->wake, 1, memory_order_seq_cst);
            reki__futex_wake(&s->wake, INT32_MAX);
            pthread_join(s->threads[0], NULL);
        }
    }
    if (rc != REKI_OK) {
        pthread_mutex_destroy(&s->grow);
        reki__free(s);
        return rc;
    }
    reg->starter = s;
    return REKI_OK;
}

void reki__starter_push(reki_registry_t *reg, struct reki__entry *e)
{
    struct reki__starter *s = reg->starter;
    /* release: the taker's acquire; our writes to e (its queue, owner). */
    atomic_store_explicit(&e->spub, 1, memory_order_release);
    cds_wfcq_node_init(&e->snode);
    atomic_fetch_add_explicit(&s->queued, 1, memory_order_seq_cst);
    /* The enqueue's exchange is a full barrier: a worker that counted
     * itself asleep before it looked at the queue is seen below. */
    cds_wfcq_enqueue(&s->head, &s->tail, &e->snode);
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&s->wake, 1, memory_order_seq_cst);
        reki__futex_wake(&s->wake, 1);
    }
    if (!starved(s))
        return;
    if (atomic_load_explicit(&s->nthreads, memory_order_relaxed) < s->eager) {
        pthread_mutex_lock(&s->grow);
        if (starved(s) && atomic_load_explicit(&s->nthreads, memory_order_relaxed) < s->eager)
            add_worker(s);
        pthread_mutex_unlock(&s->grow);
    } else if (atomic_load_explicit(&s->sup_idle, memory_order_seq_cst)) {
        /* Dekker with the supervisor's "sup_idle = 1; starved?; sleep". */
        atomic_fetch_add_explicit(&s->sup, 1, memory_order_seq_cst);
        reki__futex_wake(&s->sup, 1);
    }
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
    atomic_fetch_add_explicit(&s->sup, 1, memory_order_seq_cst);
    reki__futex_wake(&s->sup, 1);
    pthread_join(s->supervisor, NULL);
    /* The supervisor has stopped: nthreads changes no more. */
    unsigned n = atomic_load_explicit(&s->nthreads, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->grow);
    reki__free(s);
    reg->starter = NULL;
}

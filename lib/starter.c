/*
 * The registry's start threads: where reki_send_key's starts, restarts and
 * starts for leftover messages run, so that no sender waits for a start.
 *
 * One thread is made with the registry (so a queued start always has a
 * thread to run it).  More are made when a start is queued and no thread is
 * free to take it: at once up to one per online CPU, and beyond that, up to
 * REKI__STARTERS_MAX, only when every thread has been busy with its start
 * for over SLOW_NS, so that a start that blocks delays other keys' by at
 * most that much, while quick starts in bulk do not pay for threads that
 * only take turns on the same cores (measured: 16 threads made a cold key
 * cost 2.8x what 2 threads did, on 2 cores).  Threads sleep on a condition variable when the
 * queue is empty (no CPU while idle) and live until reki_registry_free,
 * which frees the pool only once every entry is FREE, so no start is queued
 * or running then.
 *
 * The queue is FIFO through entry->snext, under `lock`; an entry is on it
 * at most once, since only its holder queues it and the start job is the
 * holder from then on.
 */
#include <time.h>
#include <unistd.h>

#include "registry.h"

#define SLOW_NS 1000000 /* a start running this long counts as blocked */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct reki__starter {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct reki__entry *head, *tail; /* queued starts */
    size_t queued;
    unsigned free; /* threads not running a start (waiting, or about to take one) */
    unsigned nthreads;
    unsigned eager; /* threads made without waiting: online CPUs */
    bool stop;
    reki_registry_t *reg;
    uint64_t last_take; /* ns when a thread last took a start (under lock) */
    pthread_t threads[REKI__STARTERS_MAX];
};

static void *starter_main(void *arg)
{
    struct reki__starter *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->cv, &s->lock);
        if (!s->head)
            break; /* stop, and nothing left */
        struct reki__entry *e = s->head;
        s->head = e->snext;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        s->free--;
        s->last_take = mono_ns();
        pthread_mutex_unlock(&s->lock);
        reki__vkey_run_start(e);
        pthread_mutex_lock(&s->lock);
        s->free++;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int reki__starter_new(reki_registry_t *reg)
{
    struct reki__starter *s = reki__calloc(1, sizeof(*s));
    if (!s)
        return REKI_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->reg = reg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->eager = cpus < 2 ? 2 : cpus > REKI__STARTERS_MAX ? REKI__STARTERS_MAX : (unsigned)cpus;
    s->free = 1;
    s->nthreads = 1;
    int rc = reki__thread_create(&s->threads[0], starter_main, s);
    if (rc != REKI_OK) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->lock);
        reki__free(s);
        return rc;
    }
    reg->starter = s;
    return REKI_OK;
}

void reki__starter_push(reki_registry_t *reg, struct reki__entry *e)
{
    struct reki__starter *s = reg->starter;
    e->snext = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->snext = e;
    else
        s->head = e;
    s->tail = e;
    s->queued++;
    /* Every free thread will take one: grow only when the queue is longer,
     * and past `eager` only when no thread has taken a start for SLOW_NS
     * (every one is stuck in a start).  A thread that cannot be made is no
     * loss: the existing ones run the start. */
    if (s->queued > s->free && s->nthreads < REKI__STARTERS_MAX &&
        (s->nthreads < s->eager || mono_ns() - s->last_take > SLOW_NS) &&
        reki__thread_create(&s->threads[s->nthreads], starter_main, s) == REKI_OK) {
        s->nthreads++;
        s->free++;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

void reki__starter_free(reki_registry_t *reg)
{
    struct reki__starter *s = reg->starter;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lock);
    reki__free(s);
    reg->starter = NULL;
}

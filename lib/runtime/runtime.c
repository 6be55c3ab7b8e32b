/*
 * The runtime: pid table, worker pool, hazard-pointer domain, and the
 * shutdown sequence of reki_rt_free.
 *
 * Shutdown: set `shutdown` (new spawns fail; a spawn already past its check
 * is counted in `live` and re-checks after publishing its pid), then exit
 * every live proc with REKI_EXIT_SHUTDOWN and wait for every exit path to
 * finish, re-sweeping in case a callback spawned meanwhile.  Then the RCU
 * callbacks run (rcu_barrier): messages that raced an exit go to their drop,
 * which may still call reki_lookup or send to an inbox.  Then inboxes are
 * freed (their unreceived messages dropped), the callbacks run again, and
 * only then are registries freed, workers and dedicated threads joined, and
 * the last callbacks (entry and table reclamation) flushed before the memory
 * goes.  No user callback runs inside a read-side section at any step.
 */
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define MAX_WORKERS 1024u

void reki__rt_proc_begin(reki_rt_t *rt)
{
    /* seq_cst: the Dekker pair with reki_rt_free (the spawner checks
     * shutdown after this; rt_free sums after storing shutdown). */
    atomic_fetch_add_explicit(&rt->live[reki__tls_shard()].n, 1, memory_order_seq_cst);
}

/* Live procs.  Exact once shutdown is set: every proc that lives was
 * counted before the shutdown store, which comes before these loads, so no
 * live proc is missed; a count may be seen without its decrement (the sum
 * is then too high, and the waiter waits on), never the other way round
 * within one shard. */
static long rt_live(reki_rt_t *rt)
{
    long n = 0;
    for (unsigned i = 0; i < REKI__SHARDS; i++)
        n += atomic_load_explicit(&rt->live[i].n, memory_order_seq_cst);
    return n;
}

void reki__rt_proc_done(reki_rt_t *rt)
{
    unsigned sid = reki__tls_shard();
    if (!atomic_load_explicit(&rt->shutdown, memory_order_seq_cst)) {
        atomic_fetch_sub_explicit(&rt->live[sid].n, 1, memory_order_release);
        return;
    }
    /* Under the lock, so reki_rt_free cannot see zero and free rt while we
     * are still about to signal it. */
    pthread_mutex_lock(&rt->wait_lock);
    atomic_fetch_sub_explicit(&rt->live[sid].n, 1, memory_order_seq_cst);
    pthread_cond_broadcast(&rt->wait_cv);
    pthread_mutex_unlock(&rt->wait_lock);
}

static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : (n > (long)MAX_WORKERS ? MAX_WORKERS : (unsigned)n);
}

static int rt_init_locks(reki_rt_t *rt)
{
    if (reki__cond_init(&rt->wait_cv) != REKI_OK)
        return REKI_ENOMEM;
    pthread_mutex_init(&rt->wait_lock, NULL);
    pthread_mutex_init(&rt->objs_lock, NULL);
    reki__list_init(&rt->children);
    pthread_mutex_init(&rt->hp_lock, NULL);
    reki__list_init(&rt->inboxes);
    return REKI_OK;
}

static void rt_destroy_locks(reki_rt_t *rt)
{
    pthread_cond_destroy(&rt->wait_cv);
    pthread_mutex_destroy(&rt->wait_lock);
    pthread_mutex_destroy(&rt->objs_lock);
    pthread_mutex_destroy(&rt->hp_lock);
}

int reki__rt_attach(reki_rt_t *rt, struct reki__rt_child *c)
{
    /* Checked under objs_lock: reki_rt_free sets shutdown before it takes
     * the lock to free the attached children, so none is added after. */
    pthread_mutex_lock(&rt->objs_lock);
    bool closed = atomic_load_explicit(&rt->shutdown, memory_order_acquire);
    if (!closed)
        reki__list_add(&rt->children, &c->node);
    pthread_mutex_unlock(&rt->objs_lock);
    return closed ? REKI_ESHUTDOWN : REKI_OK;
}

void reki__rt_detach(reki_rt_t *rt, struct reki__rt_child *c)
{
    pthread_mutex_lock(&rt->objs_lock);
    reki__list_del(&c->node);
    pthread_mutex_unlock(&rt->objs_lock);
}

/* reki_rt_free: destroy every child the user has not freed. */
static void free_children(reki_rt_t *rt)
{
    pthread_mutex_lock(&rt->objs_lock);
    while (rt->children.next != &rt->children) {
        struct reki__list *n = rt->children.next;
        reki__list_del(n);
        pthread_mutex_unlock(&rt->objs_lock);
        struct reki__rt_child *c = REKI__CONTAINER_OF(n, struct reki__rt_child, node);
        c->destroy(c);
        pthread_mutex_lock(&rt->objs_lock);
    }
    pthread_mutex_unlock(&rt->objs_lock);
}

int reki_rt_new(const reki_rt_opts_t *opts, reki_rt_t **out)
{
    if (!out || (opts && opts->workers > MAX_WORKERS))
        return REKI_EINVAL;
    unsigned nworkers = (opts && opts->workers) ? opts->workers : default_workers();
    reki_rt_t *rt = reki__aligned_alloc(64, sizeof(*rt));
    if (!rt)
        return REKI_ENOMEM;
    memset(rt, 0, sizeof(*rt));
    int rc = reki__pidtab_init(&rt->pids);
    if (rc != REKI_OK)
        goto fail_rt;
    if ((rc = rt_init_locks(rt)) != REKI_OK)
        goto fail_pids;
    reki__rt_list_add(rt);
    if ((rc = reki__timers_start(rt)) != REKI_OK)
        goto fail_list;
    if ((rc = reki__sched_start(rt, nworkers)) != REKI_OK)
        goto fail_timers;
    *out = rt;
    return REKI_OK;
fail_timers:
    reki__timers_stop(rt);
    reki__timers_destroy(rt);
fail_list:
    reki__rt_list_remove(rt);
    reki__hp_destroy(rt);
    rt_destroy_locks(rt);
fail_pids:
    reki__pidtab_destroy(&rt->pids);
fail_rt:
    reki__free(rt);
    return rc;
}

static void shutdown_one(reki_pid_t pid, void *arg)
{
    reki__kill_pid(arg, pid, REKI_EXIT_SHUTDOWN);
}

static void stop_all_procs(reki_rt_t *rt)
{
    atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
    for (;;) {
        reki__pid_foreach_live(&rt->pids, shutdown_one, rt);
        pthread_mutex_lock(&rt->wait_lock);
        struct timespec ts;
        reki__deadline(&ts, 20);
        while (rt_live(rt) > 0 && pthread_cond_timedwait(&rt->wait_cv, &rt->wait_lock, &ts) == 0)
            ;
        bool done = rt_live(rt) == 0;
        pthread_mutex_unlock(&rt->wait_lock);
        if (done)
            return;
    }
}

void reki_rt_free(reki_rt_t *rt)
{
    if (!rt)
        return;
    stop_all_procs(rt);
    /* Every proc's exit path has closed its timers: none is pending. */
    reki__timers_stop(rt);
    /* Messages that raced an exit reach their drop in RCU callbacks: let
     * them run while the registries and inboxes they may call still exist,
     * then the inboxes' own drops, and only then free the registries. */
    reki__rcu_barrier();
    reki__inbox_free_all(rt);
    reki__rcu_barrier();
    free_children(rt);
    reki__sched_stop(rt);
    reki__dedicated_reap(rt, true);
    /* Runs every reclamation callback queued so far, ours included. */
    reki__rcu_barrier();
    reki__rcu_reclaim_acquire();
    reki__rt_list_remove(rt);
    reki__hp_destroy(rt);
    reki__timers_destroy(rt);
    reki__beh_free_all(rt); /* after the last barrier: no proc is left */
    rt_destroy_locks(rt);
    reki__pidtab_destroy(&rt->pids);
    reki__free(rt);
}

/*
 * The registry's read side and lifecycle: reki_lookup, reki_stop,
 * reki_count, reki_foreach, reki_registry_new/free.
 *
 * reki_lookup linearizes at its acquire load of the entry word: it returns a
 * pid only if, at that instant, the entry named it, which means the actor was
 * alive, since the exit transition moves every entry naming the pid to
 * EXITING before it kills the pid slot.  A lookup that begins after an
 * actor's exit therefore never returns that actor's pid.  The read path is:
 * hash, one ck_ht probe, one load of the entry word (on the key's cache
 * line), inside an urcu-bp read-side section (thread-local counter only).
 */
#include <string.h>

#include "registry/registry.h"

static bool key_ok(const void *key, size_t keylen)
{
    return key && keylen >= 1 && keylen <= REKI_KEY_MAX;
}

static void destroy_child(struct reki__rt_child *c);

int reki_registry_new(reki_rt_t *rt, const reki_registry_opts_t *opts, reki_registry_t **out)
{
    if (!rt || !out)
        return REKI_EINVAL;
    reki_registry_opts_t o = {0};
    if (opts)
        o = *opts;
    if (o.restart < REKI_RESTART_TEMPORARY || o.restart > REKI_RESTART_PERMANENT ||
        (o.restart != REKI_RESTART_TEMPORARY && !o.start))
        return REKI_EINVAL;
    /* Waiters protect entries with rt's hazard pointers (claim.c). */
    int rc = reki__hp_use(rt, reki__entry_destroy);
    if (rc != REKI_OK)
        return rc;
    reki_registry_t *reg = reki__calloc(1, sizeof(*reg));
    if (!reg)
        return REKI_ENOMEM;
    reg->rt = rt;
    reg->start = o.start;
    reg->start_arg = o.start_arg;
    reg->idle_period = o.idle_ms ? o.idle_ms / 2 + (o.idle_ms & 1) : 0;
    reg->restart = o.restart;
    reg->max_restarts = o.max_restarts ? o.max_restarts : 3;
    reg->restart_period_ms = o.restart_period_ms ? o.restart_period_ms : 5000;
    reg->drop = o.drop;
    reg->on_event = o.on_event;
    reg->event_arg = o.event_arg;
    atomic_init(&reg->await_seq, 0);
    atomic_init(&reg->awaiters, 0);
    rc = reki__table_init(reg, o.capacity);
    if (rc != REKI_OK) {
        reki__free(reg);
        return rc;
    }
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&reg->wlock, &ma);
    pthread_mutexattr_destroy(&ma);
    reki__reaper_init(reg);
    atomic_init(&reg->count, 0);
    atomic_init(&reg->closing, 0);
    atomic_init(&reg->iterating, 0);
    atomic_init(&reg->drain_seq, 0);
    /* Last: the start threads run reaper steps on reg from the start. */
    if (o.start && (rc = reki__starter_new(reg)) != REKI_OK) {
        reki__reaper_destroy(reg);
        pthread_mutex_destroy(&reg->wlock);
        reki__table_destroy(reg);
        reki__free(reg);
        return rc;
    }
    /* Attached last: reki_rt_free destroys it if the user does not. */
    reg->child.destroy = destroy_child;
    if ((rc = reki__rt_attach(rt, &reg->child)) != REKI_OK) {
        reki__starter_free(reg);
        reki__reaper_destroy(reg);
        pthread_mutex_destroy(&reg->wlock);
        reki__table_destroy(reg);
        reki__free(reg);
        return rc;
    }
    *out = reg;
    return REKI_OK;
}

/* Every entry of reg, taken under wlock, into a fresh array (caller frees).
 * The caller pins the entries first (iterating, or closing): the reaper
 * unlinks none of them while pinned, so they stay valid without a read-side
 * section. */
static int snapshot(reki_registry_t *reg, struct reki__entry ***out, size_t *n)
{
    pthread_mutex_lock(&reg->wlock);
    size_t cap = atomic_load_explicit(&reg->entries, memory_order_relaxed);
    struct reki__entry **arr = reki__malloc((cap ? cap : 1) * sizeof(*arr));
    if (!arr) {
        pthread_mutex_unlock(&reg->wlock);
        return REKI_ENOMEM;
    }
    size_t k = 0;
    for (struct reki__list *l = reg->all.next; l != &reg->all && k < cap; l = l->next)
        arr[k++] = REKI__CONTAINER_OF(l, struct reki__entry, all);
    pthread_mutex_unlock(&reg->wlock);
    *out = arr;
    *n = k;
    return REKI_OK;
}

/* Closing: no entry is inserted or reaped any more (both check closing
 * under wlock), so `all` is stable and walked without the lock.  Stop every
 * live actor; true once every entry is FREE. */
static bool stop_all(reki_registry_t *reg)
{
    bool drained = true;
    for (struct reki__list *l = reg->all.next; l != &reg->all; l = l->next) {
        struct reki__entry *e = REKI__CONTAINER_OF(l, struct reki__entry, all);
        uint64_t w = atomic_load_explicit(&e->word, memory_order_seq_cst);
        if (reki__word_is_pid(w))
            reki__kill_pid(reg->rt, w, REKI_EXIT_SHUTDOWN);
        if (!reki__word_is_free(w))
            drained = false;
    }
    return drained;
}

static void registry_destroy(reki_registry_t *reg)
{
    atomic_store_explicit(&reg->closing, 1, memory_order_seq_cst);
    /* reki_await callers return REKI_ESHUTDOWN; wait until they have left. */
    atomic_fetch_add_explicit(&reg->await_seq, 1, memory_order_seq_cst);
    reki__futex_wake(&reg->await_seq, INT32_MAX);
    while (atomic_load_explicit(&reg->awaiters, memory_order_acquire) > 0)
        sched_yield();
    /* Every claim that did not see closing has made its CAS or insert, and
     * every reaper step that did not see it has ended. */
    reki__rcu_synchronize();
    for (;;) {
        uint32_t seq = atomic_load_explicit(&reg->drain_seq, memory_order_seq_cst);
        if (stop_all(reg))
            break;
        struct timespec ts;
        reki__deadline(&ts, 20);
        reki__futex_wait(&reg->drain_seq, seq, &ts);
    }
    /* Every entry is FREE: the releases' tails (read-side sections) end
     * within a grace period, and the messages that raced the actors' exits
     * reach their drop (which may still call reki_lookup on reg) at the
     * barrier. */
    reki__rcu_synchronize();
    reki__rcu_barrier();
    reki__starter_free(reg); /* no start is queued or running: every entry is FREE */
    for (struct reki__list *l = reg->all.next, *next; l != &reg->all; l = next) {
        next = l->next;
        reki__free(REKI__CONTAINER_OF(l, struct reki__entry, all));
    }
    reki__table_destroy(reg);
    reki__reaper_destroy(reg);
    reki__fence_destroy(reg);
    pthread_mutex_destroy(&reg->wlock);
    reki__free(reg);
}

void reki_registry_free(reki_registry_t *reg)
{
    if (!reg)
        return;
    reki__rt_detach(reg->rt, &reg->child);
    registry_destroy(reg);
}

/* reki_rt_free, for a registry the user did not free (detached already). */
static void destroy_child(struct reki__rt_child *c)
{
    registry_destroy(REKI__CONTAINER_OF(c, reki_registry_t, child));
}

int reki_lookup(reki_registry_t *reg, const void *key, size_t keylen, reki_pid_t *out)
{
    if (REKI__UNLIKELY(!reg || !out || !key_ok(key, keylen)))
        return REKI_EINVAL;
    ck_ht_hash_t h;
    reki__table_hash(reg, key, keylen, &h);
    return reki__table_hit(reg, h, key, keylen, out) ? REKI_OK : REKI_ENOTFOUND;
}

int reki_stop(reki_registry_t *reg, const void *key, size_t keylen)
{
    reki_pid_t pid;
    int rc = reki_lookup(reg, key, keylen, &pid);
    if (rc != REKI_OK)
        return rc;
    /* Lost a race with another exit: then there is no live actor to stop. */
    return reki__kill_pid(reg->rt, pid, REKI_EXIT_SHUTDOWN) == REKI_OK ? REKI_OK : REKI_ENOTFOUND;
}

size_t reki_count(const reki_registry_t *reg)
{
    return reg ? atomic_load_explicit(&reg->count, memory_order_relaxed) : 0;
}

int reki_registry_stats(const reki_registry_t *reg, reki_registry_stats_t *out)
{
    if (!reg || !out)
        return REKI_EINVAL;
    out->live = atomic_load_explicit(&reg->count, memory_order_relaxed);
    out->entries = atomic_load_explicit(&reg->entries, memory_order_relaxed);
    out->capacity = atomic_load_explicit(&reg->capacity, memory_order_relaxed);
    out->reaped = atomic_load_explicit(&reg->reaped, memory_order_relaxed);
    out->rebuilds = atomic_load_explicit(&reg->rebuilds, memory_order_relaxed);
    return REKI_OK;
}

int reki_foreach(reki_registry_t *reg,
                 int (*fn)(const void *key, size_t keylen, reki_pid_t pid, void *arg), void *arg)
{
    if (!reg || !fn)
        return REKI_EINVAL;
    struct reki__entry **arr;
    size_t n;
    int rc = REKI_OK;
    /* seq_cst: the reaper checks it under wlock, which the snapshot takes
     * after: no entry in the snapshot is unlinked until we unpin. */
    atomic_fetch_add_explicit(&reg->iterating, 1, memory_order_seq_cst);
    if (snapshot(reg, &arr, &n) != REKI_OK) {
        atomic_fetch_sub_explicit(&reg->iterating, 1, memory_order_seq_cst);
        return REKI_ENOMEM;
    }
    /* fn runs outside any read-side section: it may block, or call back in. */
    for (size_t i = 0; i < n && rc == REKI_OK; i++) {
        uint64_t w = atomic_load_explicit(&arr[i]->word, memory_order_acquire);
        if (reki__word_is_pid(w) && reki__pid_alive(&reg->rt->pids, w))
            rc = fn(arr[i]->key, arr[i]->keylen, w, arg);
    }
    atomic_fetch_sub_explicit(&reg->iterating, 1, memory_order_seq_cst);
    reki__free(arr);
    return rc;
}

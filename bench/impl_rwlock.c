/*
 * Baseline "rwlock": the mutex baseline's table under a pthread_rwlock.
 * Lookups share the read lock; a miss in lookup_or_start retakes the lock
 * for writing, checks again and starts with it held.
 */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"
#include "chain.h"

typedef struct rwtable {
    pthread_rwlock_t lock;
    chain_t c;
    reki_rt_t *rt;
} rwtable_t;

static int rw_create(reki_rt_t *rt, size_t capacity, void **out)
{
    rwtable_t *t = calloc(1, sizeof *t);
    if (t == NULL || chain_init(&t->c, capacity) != 0) {
        free(t);
        return REKI_ENOMEM;
    }
    pthread_rwlock_init(&t->lock, NULL);
    t->rt = rt;
    *out = t;
    return 0;
}

static void kill_one(reki_pid_t pid, void *rt)
{
    reki_kill(rt, pid);
}

static void rw_destroy(void *p)
{
    rwtable_t *t = p;
    chain_destroy(&t->c, kill_one, t->rt);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

static int rw_lookup(void *p, const void *key, size_t len, reki_pid_t *out)
{
    rwtable_t *t = p;
    uint64_t h = bench_hash(key, len);
    pthread_rwlock_rdlock(&t->lock);
    chain_node_t *e = chain_find(&t->c, key, len, h);
    if (e)
        *out = e->pid;
    pthread_rwlock_unlock(&t->lock);
    return e ? 0 : REKI_ENOTFOUND;
}

static int rw_insert_locked(rwtable_t *t, const void *key, size_t len, uint64_t h, reki_pid_t *out)
{
    chain_node_t *e = chain_find(&t->c, key, len, h);
    if (e) {
        *out = e->pid;
        return 0;
    }
    reki_pid_t pid;
    int rc = bench_start(t->rt, key, len, NULL, &pid);
    if (rc < 0)
        return rc;
    rc = chain_insert(&t->c, key, len, h, pid);
    if (rc != 0) {
        reki_kill(t->rt, pid);
        return rc;
    }
    *out = pid;
    return REKI_STARTED;
}

static int rw_lookup_or_start(void *p, const void *key, size_t len, reki_pid_t *out)
{
    rwtable_t *t = p;
    uint64_t h = bench_hash(key, len);
    pthread_rwlock_rdlock(&t->lock);
    chain_node_t *e = chain_find(&t->c, key, len, h);
    if (e)
        *out = e->pid;
    pthread_rwlock_unlock(&t->lock);
    if (e)
        return 0;
    pthread_rwlock_wrlock(&t->lock);
    int rc = rw_insert_locked(t, key, len, h, out);
    pthread_rwlock_unlock(&t->lock);
    return rc;
}

static int rw_stop(void *p, const void *key, size_t len)
{
    rwtable_t *t = p;
    reki_pid_t pid;
    pthread_rwlock_wrlock(&t->lock);
    int rc = chain_remove(&t->c, key, len, bench_hash(key, len), &pid);
    pthread_rwlock_unlock(&t->lock);
    if (rc == 0)
        reki_kill(t->rt, pid);
    return rc;
}

const bench_impl_t bench_impl_rwlock = {
    .name = "rwlock",
    .what = "chained hash table under one pthread_rwlock, start under the write lock",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START | BENCH_CAP_STOP,
    .create = rw_create,
    .destroy = rw_destroy,
    .lookup = rw_lookup,
    .lookup_or_start = rw_lookup_or_start,
    .stop = rw_stop,
};

/*
 * Baseline "mutex": the registry a user writes by hand.  A chained table
 * under one pthread_mutex; lookup_or_start runs the start function with the
 * mutex held, which is the simple way to keep one actor per key (and exactly
 * what reki's guarantee 3 avoids).
 */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"
#include "chain.h"

typedef struct mtable {
    pthread_mutex_t lock;
    chain_t c;
    reki_rt_t *rt;
} mtable_t;

static int m_create(reki_rt_t *rt, size_t capacity, void **out)
{
    mtable_t *t = calloc(1, sizeof *t);
    if (t == NULL || chain_init(&t->c, capacity) != 0) {
        free(t);
        return REKI_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->rt = rt;
    *out = t;
    return 0;
}

static void kill_one(reki_pid_t pid, void *rt)
{
    reki_kill(rt, pid);
}

static void m_destroy(void *p)
{
    mtable_t *t = p;
    chain_destroy(&t->c, kill_one, t->rt);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static int m_lookup(void *p, const void *key, size_t len, reki_pid_t *out)
{
    mtable_t *t = p;
    uint64_t h = bench_hash(key, len);
    pthread_mutex_lock(&t->lock);
    chain_node_t *e = chain_find(&t->c, key, len, h);
    if (e)
        *out = e->pid;
    pthread_mutex_unlock(&t->lock);
    return e ? 0 : REKI_ENOTFOUND;
}

static int m_lookup_or_start(void *p, const void *key, size_t len, reki_pid_t *out)
{
    mtable_t *t = p;
    uint64_t h = bench_hash(key, len);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    chain_node_t *e = chain_find(&t->c, key, len, h);
    if (e) {
        *out = e->pid;
    } else {
        reki_pid_t pid;
        rc = bench_start(t->rt, key, len, NULL, &pid);
        if (rc >= 0) {
            rc = chain_insert(&t->c, key, len, h, pid);
            if (rc == 0) {
                *out = pid;
                rc = REKI_STARTED;
            } else {
                reki_kill(t->rt, pid);
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

static int m_stop(void *p, const void *key, size_t len)
{
    mtable_t *t = p;
    reki_pid_t pid;
    pthread_mutex_lock(&t->lock);
    int rc = chain_remove(&t->c, key, len, bench_hash(key, len), &pid);
    pthread_mutex_unlock(&t->lock);
    if (rc == 0)
        reki_kill(t->rt, pid);
    return rc;
}

const bench_impl_t bench_impl_mutex = {
    .name = "mutex",
    .what = "chained hash table under one pthread_mutex, start under the lock",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START | BENCH_CAP_STOP,
    .create = m_create,
    .destroy = m_destroy,
    .lookup = m_lookup,
    .lookup_or_start = m_lookup_or_start,
    .stop = m_stop,
};

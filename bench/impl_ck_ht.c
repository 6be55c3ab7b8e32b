/*
 * Floor "ck_ht": bare ck_ht_hash + ck_ht_get_spmc with no registry logic,
 * the cost reki's lookup adds its logic to.  lookup_or_start is the plain
 * get-or-create a ck_ht user writes: a writer mutex held across check, start
 * and put (ck_ht allows one writer at a time).
 */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"
#include "ckmap.h"

typedef struct cktable {
    ckmap_t map;
    pthread_mutex_t wlock;
    reki_rt_t *rt;
} cktable_t;

static int ck_create(reki_rt_t *rt, size_t capacity, void **out)
{
    cktable_t *t = calloc(1, sizeof *t);
    if (t == NULL || ckmap_init(&t->map, capacity) != 0) {
        free(t);
        return REKI_ENOMEM;
    }
    pthread_mutex_init(&t->wlock, NULL);
    t->rt = rt;
    *out = t;
    return 0;
}

static void kill_one(reki_pid_t pid, void *rt)
{
    reki_kill(rt, pid);
}

static void ck_destroy(void *p)
{
    cktable_t *t = p;
    ckmap_destroy(&t->map, kill_one, t->rt);
    pthread_mutex_destroy(&t->wlock);
    free(t);
}

static int ck_lookup(void *p, const void *key, size_t len, reki_pid_t *out)
{
    cktable_t *t = p;
    return ckmap_get(&t->map, key, len, out) ? 0 : REKI_ENOTFOUND;
}

static int ck_lookup_or_start(void *p, const void *key, size_t len, reki_pid_t *out)
{
    cktable_t *t = p;
    if (ckmap_get(&t->map, key, len, out))
        return 0;
    int rc = 0;
    pthread_mutex_lock(&t->wlock);
    if (!ckmap_get(&t->map, key, len, out)) {
        reki_pid_t pid;
        rc = bench_start(t->rt, key, len, NULL, &pid);
        if (rc >= 0) {
            rc = ckmap_put(&t->map, key, len, pid);
            if (rc == 0) {
                *out = pid;
                rc = REKI_STARTED;
            } else {
                reki_kill(t->rt, pid);
            }
        }
    }
    pthread_mutex_unlock(&t->wlock);
    return rc;
}

const bench_impl_t bench_impl_ck_ht = {
    .name = "ck_ht",
    .what = "floor: bare ck_ht_hash + ck_ht_get_spmc; get-or-create under a writer mutex",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START,
    .create = ck_create,
    .destroy = ck_destroy,
    .lookup = ck_lookup,
    .lookup_or_start = ck_lookup_or_start,
};

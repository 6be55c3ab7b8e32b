/*
 * Floor "floor": no table at all.  lookup_or_start starts an actor every
 * time and stop ends the one the calling thread started last, so a start or
 * a start/stop cycle costs exactly the runtime's spawn, kill and exit path,
 * which every implementation pays on top of its table.  It bounds what any
 * registry can reach in los_new and churn: reki / floor is the share of the
 * cycle the runtime leaves to the registry.  (Only for those workloads: it
 * keeps no key, so it takes no part in lookups.)
 */
#include <stdlib.h>

#include "bench.h"

static _Thread_local reki_pid_t last;

static int f_create(reki_rt_t *rt, size_t capacity, void **out)
{
    (void)capacity;
    *out = rt;
    return 0;
}

static void f_destroy(void *t)
{
    (void)t; /* the runtime ends the actors still alive */
}

static int f_lookup_or_start(void *t, const void *key, size_t len, reki_pid_t *out)
{
    int rc = bench_start(t, key, len, NULL, out);
    if (rc < 0)
        return rc;
    last = *out;
    return REKI_STARTED;
}

static int f_stop(void *t, const void *key, size_t len)
{
    (void)key;
    (void)len;
    reki_pid_t pid = last;
    last = 0;
    return pid && reki_kill(t, pid) == REKI_OK ? 0 : REKI_ENOTFOUND;
}

const bench_impl_t bench_impl_floor = {
    .name = "floor",
    .what = "no table: every start spawns, stop kills the thread's last actor (runtime cost only)",
    .caps = BENCH_CAP_START | BENCH_CAP_STOP,
    .create = f_create,
    .destroy = f_destroy,
    .lookup_or_start = f_lookup_or_start,
    .stop = f_stop,
};

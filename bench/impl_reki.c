/*
 * reki itself: the registry's own calls, with the shared start function.
 */
#include "bench.h"

static int reki_create(reki_rt_t *rt, size_t capacity, void **out)
{
    reki_registry_opts_t o = {.capacity = capacity};
    reki_registry_t *reg = NULL;
    int rc = reki_registry_new(rt, &o, &reg);
    *out = reg;
    return rc;
}

static void reki_destroy(void *t)
{
    reki_registry_free(t);
}

static int reki_get(void *t, const void *key, size_t len, reki_pid_t *out)
{
    return reki_lookup(t, key, len, out);
}

static int reki_get_or_start(void *t, const void *key, size_t len, reki_pid_t *out)
{
    return reki_lookup_or_start(t, key, len, bench_start, NULL, -1, out);
}

static int reki_remove(void *t, const void *key, size_t len)
{
    return reki_stop(t, key, len);
}

const bench_impl_t bench_impl_reki = {
    .name = "reki",
    .what = "reki_lookup / reki_lookup_or_start / reki_stop",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START | BENCH_CAP_STOP,
    .create = reki_create,
    .destroy = reki_destroy,
    .lookup = reki_get,
    .lookup_or_start = reki_get_or_start,
    .stop = reki_remove,
};

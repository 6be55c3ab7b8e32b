/*
 * The actor every implementation starts: an idle light actor.  Its handler
 * accepts anything and carries on; the registry workloads never message it,
 * so its cost is the spawn alone.
 */
#include <stddef.h>

#include "bench.h"

static reki_next_t idle_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static const reki_behavior_t idle_behavior = {.handle = idle_handle};

int bench_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &idle_behavior, NULL, NULL, out);
}

/*
 * What several regression programs need and nothing else: a start function
 * that spawns a light actor which ignores its messages.
 */
#ifndef REKI_REGRESS_IDLE_ACTOR_H
#define REKI_REGRESS_IDLE_ACTOR_H

#include "reki/reki.h"

static inline reki_next_t idle_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static inline int idle_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg,
                             reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    static const reki_behavior_t b = {.handle = idle_handle};
    return reki_spawn(rt, &b, NULL, NULL, out);
}

#endif

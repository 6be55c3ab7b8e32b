/*
 * Send through reki: receivers are light actors whose handler counts.
 */
#include <stdlib.h>

#include "send.h"

typedef struct rsend {
    reki_rt_t *rt;
    unsigned n;
    bool many;
    reki_pid_t *pids;
    send_counter_t *counts;
} rsend_t;

static reki_next_t count_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    send_count(state, msg);
    return REKI_CONTINUE;
}

static const reki_behavior_t counter_behavior = {.handle = count_handle};

static void r_close(void *p)
{
    rsend_t *s = p;
    for (unsigned i = 0; i < s->n; i++)
        if (s->pids[i] != 0)
            reki_kill(s->rt, s->pids[i]);
    free(s->pids);
    free(s->counts);
    free(s);
}

static int r_open(reki_rt_t *rt, unsigned nthreads, bool many_to_one, void **out)
{
    rsend_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return REKI_ENOMEM;
    s->rt = rt;
    s->many = many_to_one;
    s->n = many_to_one ? 1 : nthreads;
    s->pids = calloc(s->n, sizeof *s->pids);
    int rc = s->pids ? send_counters_new(nthreads, &s->counts) : REKI_ENOMEM;
    for (unsigned i = 0; rc == 0 && i < s->n; i++)
        rc = reki_spawn(rt, &counter_behavior, s->counts, NULL, &s->pids[i]);
    if (rc != 0) {
        r_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int r_send(void *p, unsigned to, void *msg)
{
    rsend_t *s = p;
    return reki_send(s->rt, s->pids[to], msg);
}

static uint64_t r_thread(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    rsend_t *s = w->send;
    return send_loop(th, s->counts, r_send, s, s->many ? 0 : th->index);
}

const bench_send_impl_t bench_send_reki = {
    .name = "reki",
    .what = "reki_send to light actors",
    .open = r_open,
    .close = r_close,
    .fn = r_thread,
};

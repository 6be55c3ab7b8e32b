/*
 * Virtual actors under torture: a second registry of the main world, with
 * its own start, passivation (idle_ms 1), TRANSIENT restarts and a drop, fed
 * by reki_send_key.  Its actors stop every few messages and crash now and
 * then; the torture's kills and stops reach them through the ring of pids.
 *
 * Invariants: every message accepted by reki_send_key is consumed exactly
 * once (handled by an actor of its key, or dropped by the registry: the
 * message's consumed flag), each key sees each sender's messages in
 * increasing order, and at every quiescent point and at the end, accepted
 * == handled + dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

struct vactor {
    struct world *w;
    int key;
    unsigned handled, stop_after;
};

static void vk_drop(void *msg)
{
    struct msg *m = msg;
    msg_consume(m, &m->w->vdropped, "virtual registry drop");
}

static int vk_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    *state = arg;
    return 0;
}

static reki_next_t vk_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct vactor *a = state;
    struct world *w = a->w;
    struct msg *m = msg;
    if (m->key != a->key)
        violation("message by key %d handled by an actor of key %d", m->key, a->key);
    if (m->sender < w->nthreads) {
        atomic_ullong *last = &w->vlast[(size_t)a->key * w->nthreads + m->sender];
        unsigned long long prev = atomic_load_explicit(last, memory_order_relaxed);
        if (m->seq <= prev)
            violation("key %d got seq %llu from sender %u after %llu", a->key,
                      (unsigned long long)m->seq, m->sender, prev);
        atomic_store_explicit(last, m->seq, memory_order_relaxed);
    }
    uint64_t arg = m->arg;
    msg_consume(m, &w->vhandled, "virtual actor handle");
    if (++a->handled < a->stop_after)
        return REKI_CONTINUE;
    return (arg & 7) == 0 ? REKI_CRASH : REKI_STOP;
}

static void vk_terminate(void *state, int reason)
{
    (void)reason;
    free(state);
}

static void vk_msg_drop(void *msg)
{
    /* sent by pid through the ring: consumed as the main world's */
    t_msg_drop(msg);
}

static const reki_behavior_t vk_beh = {vk_init, vk_handle, vk_terminate, vk_msg_drop};

static int vk_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct world *w = arg;
    int k = key_index(key, keylen, w->nkeys);
    if (k < 0) {
        violation("virtual start for an unknown key (len %zu)", keylen);
        return REKI_EINVAL;
    }
    struct vactor *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return REKI_ENOMEM;
    a->w = w;
    a->key = k;
    a->stop_after = 1 + (unsigned)(atomic_fetch_add(&w->vstarts, 1) % 13);
    int rc = reki_spawn(rt, &vk_beh, a, NULL, out);
    if (rc != REKI_OK)
        free(a);
    return rc;
}

int vkeys_init(struct world *w)
{
    w->vlast = calloc((size_t)w->nkeys * w->nthreads, sizeof(*w->vlast));
    if (w->vlast == NULL)
        return REKI_ENOMEM;
    reki_registry_opts_t o = {0};
    o.start = vk_start;
    o.start_arg = w;
    o.idle_ms = 1;
    o.restart = REKI_RESTART_TRANSIENT;
    o.max_restarts = 1000000;
    o.drop = vk_drop;
    return reki_registry_new(w->rt, &o, &w->vreg);
}

void vkeys_free(struct world *w)
{
    free(w->vlast);
    w->vlast = NULL;
}

int op_send_key(struct tthread *t, int k, uint64_t r1, uint64_t r2)
{
    struct world *w = t->w;
    if (w->vreg == NULL)
        return REKI_OK;
    unsigned n = 1 + t_bits(r1, 37, 3, 8);
    int rc = REKI_OK;
    for (unsigned i = 0; i < n; i++) {
        struct msg *m = msg_new(w, M_PLAIN, t->idx, ++t->vseq, k, 0, r2 >> i);
        if (m == NULL)
            return REKI_ENOMEM;
        rc = reki_send_key(w->vreg, w->kbytes[k], w->klen[k], m);
        if (rc != REKI_OK) {
            msg_refused(m);
            if (!t_oom(rc))
                violation("reki_send_key of key %d returned %d (%s)", k, rc, reki_strerror(rc));
            return rc;
        }
        atomic_fetch_add(&w->vaccepted, 1);
    }
    /* Now and then, a kill or stop of the key's actor (its leftovers are
     * then dropped, once). */
    if (t_bits(r2, 60, 4, 16) == 0) {
        reki_pid_t pid;
        if (reki_lookup(w->vreg, w->kbytes[k], w->klen[k], &pid) == REKI_OK)
            (void)((r2 & 1) ? reki_kill(w->rt, pid) : reki_stop(w->vreg, w->kbytes[k], w->klen[k]));
    }
    return rc;
}

bool vkeys_settled(struct world *w)
{
    return atomic_load(&w->vaccepted) == atomic_load(&w->vhandled) + atomic_load(&w->vdropped);
}

void vkeys_report(struct world *w, const char *when)
{
    if (!vkeys_settled(w))
        violation("%s: messages by key accepted %llu, handled %llu + dropped %llu", when,
                  (unsigned long long)atomic_load(&w->vaccepted),
                  (unsigned long long)atomic_load(&w->vhandled),
                  (unsigned long long)atomic_load(&w->vdropped));
}

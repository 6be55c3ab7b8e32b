/*
 * Interned behaviors: each runtime keeps one copy of every distinct
 * (handle, terminate, drop) triple spawned with, so a proc holds one pointer
 * instead of three (an idle light actor in 128 bytes).  A program has as
 * many triples as it has kinds of actor: the list stays short, is only ever
 * prepended to (a CAS on its head), read without a lock, and freed with the
 * runtime once no proc is left.
 */
#include "runtime/runtime.h"

const struct reki__beh reki__beh_none = {0};

static const struct reki__beh *find(const struct reki__beh *n, const struct reki__beh *stop,
                                    const reki_behavior_t *b)
{
    for (; n != stop; n = n->next)
        if (n->handle == b->handle && n->terminate == b->terminate && n->drop == b->drop)
            return n;
    return NULL;
}

const struct reki__beh *reki__beh_intern(reki_rt_t *rt, const reki_behavior_t *b)
{
    if (!b || (!b->handle && !b->terminate && !b->drop))
        return &reki__beh_none;
    /* acquire: pairs with the release CAS that published each node. */
    struct reki__beh *head = atomic_load_explicit(&rt->behs, memory_order_acquire);
    const struct reki__beh *found = find(head, NULL, b);
    if (found)
        return found;
    struct reki__beh *n = reki__malloc(sizeof(*n));
    if (!n)
        return NULL;
    n->handle = b->handle;
    n->terminate = b->terminate;
    n->drop = b->drop;
    for (;;) {
        n->next = head;
        struct reki__beh *seen = head;
        if (atomic_compare_exchange_weak_explicit(&rt->behs, &head, n, memory_order_acq_rel,
                                                  memory_order_acquire))
            return n;
        /* Someone prepended meanwhile: maybe the same triple. */
        if ((found = find(head, seen, b)) != NULL) {
            reki__free(n);
            return found;
        }
    }
}

void reki__beh_free_all(reki_rt_t *rt)
{
    struct reki__beh *n = atomic_load_explicit(&rt->behs, memory_order_acquire);
    while (n) {
        struct reki__beh *next = n->next;
        reki__free(n);
        n = next;
    }
    atomic_store_explicit(&rt->behs, NULL, memory_order_relaxed);
}

/*
 * Fences: a registry that serves only some of its keys, and only until a
 * deadline.  The cluster (lib/cluster/) owns shards of the key space through
 * etcd leases; this is the part of that guarantee that must hold inside the
 * registry, where no cluster code runs.
 *
 * A fence splits keys into `nshards` shards (SipHash-1-3 under a key that is
 * the same on every node of a cluster) and holds, per shard, an `owned` flag,
 * a count of starts in flight (`users`) and a count of live actors (`live`);
 * and one deadline, `until` (CLOCK_BOOTTIME ns) for the whole registry.
 *
 *  - A start (claim.c, vkey.c) enters the fence first: users[s]++, then
 *    owned[s] and the clock are checked; a refused start fails with
 *    REKI_ESHUTDOWN (its key's messages go to the registry's drop).  A start
 *    that linked its actor counts it in live[s] (the entry remembers s); the
 *    actor's exit, after terminate returned, takes it back.
 *  - Releasing a shard: owned[s] = 0, then the cluster waits until
 *    users[s] is 0.  Dekker with the start: each side stores (seq_cst) then
 *    loads the other's word, so either the start sees owned 0 or the release
 *    sees its users count and waits for it.  After the quiesce, no new
 *    actor appears in s; the cluster stops the live ones and waits for
 *    live[s] to reach 0 before it gives the shard up in etcd.
 *  - The deadline: every handle of an actor linked in a fenced registry
 *    (the entry link's may_handle hook, actor.c) and every start compares
 *    the clock with `until`; a handle also needs its shard still owned
 *    under the token its activation started with.  Past it, the actor exits with
 *    REKI_EXIT_SHUTDOWN instead of handling.  The check runs on the thread
 *    that would handle, right before the handle, so a process that was
 *    paused (SIGSTOP, a long stall) past its deadline handles nothing more
 *    when it resumes, whatever its other threads are doing.
 *
 * Lifetime: a fence is attached once and lives as long as its registry (it
 * is freed with it), so hooks and starts read it without any protection;
 * detaching only opens it (`active` 0: everything passes).
 */
#include <limits.h>
#include <time.h>

#include "registry/registry.h"

uint64_t reki__fence_now_ns(void)
{
    /* BOOTTIME, not MONOTONIC: it keeps counting while the machine is
     * suspended, as etcd's clock does. */
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool entry_may_handle(struct reki__hook *h)
{
    struct reki__entry *e = REKI__CONTAINER_OF(h, struct reki__entry, link);
    /* acquire: pairs with the release that attached the fence. */
    struct reki__fence *f = atomic_load_explicit(&e->reg->fence, memory_order_acquire);
    if (!f || !atomic_load_explicit(&f->active, memory_order_acquire))
        return true;
    if (reki__fence_now_ns() >= atomic_load_explicit(&f->until, memory_order_acquire))
        return false;
    /* And the shard is still ours under the claim this activation started
     * with: an actor linked by a start that was in flight while the shard
     * was lost (and claimed again, with a new token) must not handle.
     * fshard was written by the start before the link, which the caller's
     * lock orders before this read. */
    if (!e->fshard)
        return true;
    unsigned s = e->fshard - 1;
    return atomic_load_explicit(&f->shard[s].owned, memory_order_acquire) &&
           atomic_load_explicit(&f->shard[s].token, memory_order_relaxed) ==
               atomic_load_explicit(&e->ftoken, memory_order_relaxed);
}

void reki__fence_hook_init(struct reki__entry *e)
{
    e->link.may_handle = entry_may_handle;
}

int reki__fence_attach(reki_registry_t *reg, unsigned nshards, uint64_t k0, uint64_t k1,
                       struct reki__fence **out)
{
    if (!reg || !out || nshards == 0 || nshards > REKI__FENCE_MAX_SHARDS)
        return REKI_EINVAL;
    pthread_mutex_lock(&reg->wlock);
    struct reki__fence *f = atomic_load_explicit(&reg->fence, memory_order_relaxed);
    int rc = REKI_OK;
    if (f && (atomic_load_explicit(&f->active, memory_order_relaxed) || f->nshards != nshards)) {
        rc = REKI_EINVAL; /* one fence per registry, and its shape is fixed */
    } else if (atomic_load_explicit(&reg->entries, memory_order_relaxed) != 0) {
        /* A key ever started (an entry, FREE or not: a start may be on its
         * way) would escape the fence.  Entries are inserted under wlock,
         * held here: a later insert's start sees the fence. */
        rc = REKI_EINVAL;
    } else if (!f) {
        f = reki__calloc(1, sizeof(*f) + nshards * sizeof(f->shard[0]));
        if (!f)
            rc = REKI_ENOMEM;
        else
            f->nshards = nshards;
    }
    if (rc == REKI_OK) {
        reki__hashkey_set(&f->key, k0, k1);
        atomic_store_explicit(&f->until, 0, memory_order_relaxed);
        for (unsigned s = 0; s < nshards; s++)
            atomic_store_explicit(&f->shard[s].owned, 0, memory_order_relaxed);
        atomic_store_explicit(&f->active, 1, memory_order_release);
        /* release: the fence's fields before any hook or start reads it. */
        atomic_store_explicit(&reg->fence, f, memory_order_release);
        atomic_fetch_add_explicit(&reg->rt->gated, 1, memory_order_seq_cst);
        *out = f;
    }
    pthread_mutex_unlock(&reg->wlock);
    return rc;
}

void reki__fence_detach(reki_registry_t *reg)
{
    pthread_mutex_lock(&reg->wlock);
    struct reki__fence *f = atomic_load_explicit(&reg->fence, memory_order_relaxed);
    if (f && atomic_load_explicit(&f->active, memory_order_relaxed)) {
        atomic_store_explicit(&f->active, 0, memory_order_release);
        atomic_fetch_sub_explicit(&reg->rt->gated, 1, memory_order_seq_cst);
    }
    pthread_mutex_unlock(&reg->wlock);
}

void reki__fence_destroy(reki_registry_t *reg)
{
    struct reki__fence *f = atomic_load_explicit(&reg->fence, memory_order_acquire);
    if (!f)
        return;
    reki__fence_detach(reg);
    reki__free(f);
}

unsigned reki__fence_shard(const struct reki__fence *f, const void *key, size_t keylen)
{
    /* Multiply-shift onto [0, nshards): every bit of the hash counts. */
    uint64_t h = reki__hash(&f->key, key, keylen);
    return (unsigned)(((unsigned __int128)h * f->nshards) >> 64);
}

void reki__fence_set_until(struct reki__fence *f, uint64_t until_ns)
{
    /* release: what the cluster learned before extending the deadline. */
    atomic_store_explicit(&f->until, until_ns, memory_order_release);
}

void reki__fence_set_owned(struct reki__fence *f, unsigned s, int64_t token)
{
    if (token)
        atomic_store_explicit(&f->shard[s].token, token, memory_order_relaxed);
    /* seq_cst: the release's half of the Dekker pair with enter (and the
     * token's release to enter's acquire of owned). */
    atomic_store_explicit(&f->shard[s].owned, token ? 1 : 0, memory_order_seq_cst);
}

bool reki__fence_owned(const struct reki__fence *f, unsigned s)
{
    return atomic_load_explicit(&f->shard[s].owned, memory_order_acquire) != 0;
}

uint32_t reki__fence_live(const struct reki__fence *f, unsigned s)
{
    /* acquire: pairs with the exit's release decrement (terminate returned). */
    return atomic_load_explicit(&f->shard[s].live, memory_order_acquire);
}

int reki__fence_enter(struct reki__entry *e, unsigned *shard)
{
    struct reki__fence *f = atomic_load_explicit(&e->reg->fence, memory_order_acquire);
    *shard = UINT_MAX;
    if (!f || !atomic_load_explicit(&f->active, memory_order_acquire))
        return REKI_OK;
    unsigned s = reki__fence_shard(f, e->key, e->keylen);
    /* seq_cst: the start's half of the Dekker pair with set_owned(0). */
    atomic_fetch_add_explicit(&f->shard[s].users, 1, memory_order_seq_cst);
    if (!atomic_load_explicit(&f->shard[s].owned, memory_order_seq_cst) ||
        reki__fence_now_ns() >= atomic_load_explicit(&f->until, memory_order_acquire)) {
        atomic_fetch_sub_explicit(&f->shard[s].users, 1, memory_order_release);
        return REKI_ESHUTDOWN;
    }
    /* Counted live before the link: once linked, the actor may exit (and
     * take the count back) before this thread runs again.  The token is
     * this activation's, whatever claims come later. */
    atomic_fetch_add_explicit(&f->shard[s].live, 1, memory_order_relaxed);
    atomic_store_explicit(&e->ftoken,
                          atomic_load_explicit(&f->shard[s].token, memory_order_relaxed),
                          memory_order_relaxed);
    e->fshard = s + 1;
    *shard = s;
    return REKI_OK;
}

void reki__fence_leave(struct reki__entry *e, unsigned s, bool linked)
{
    if (s == UINT_MAX)
        return;
    /* e->fshard is the exit path's from the link on (it may already have
     * run): this thread uses its own copy of s. */
    struct reki__fence *f = atomic_load_explicit(&e->reg->fence, memory_order_acquire);
    if (!linked) {
        /* No actor, so no exit path reads fshard. */
        e->fshard = 0;
        atomic_store_explicit(&e->ftoken, 0, memory_order_relaxed);
        atomic_fetch_sub_explicit(&f->shard[s].live, 1, memory_order_release);
    }
    /* release: pairs with quiesce's load; the link (or its failure) first. */
    atomic_fetch_sub_explicit(&f->shard[s].users, 1, memory_order_release);
}

void reki__fence_exited(struct reki__entry *e)
{
    if (!e->fshard)
        return;
    struct reki__fence *f = atomic_load_explicit(&e->reg->fence, memory_order_acquire);
    unsigned s = e->fshard - 1;
    e->fshard = 0;
    atomic_store_explicit(&e->ftoken, 0, memory_order_relaxed);
    /* release: terminate returned before the cluster sees the shard empty. */
    atomic_fetch_sub_explicit(&f->shard[s].live, 1, memory_order_release);
}

int reki__fence_token(reki_registry_t *reg, const void *key, size_t keylen, int64_t *out)
{
    ck_ht_hash_t h;
    uint64_t w = 0;
    reki__table_hash(reg, key, keylen, &h);
    reki__rcu_read_lock();
    struct reki__entry *e = reki__table_get(reg, h, key, keylen, &w);
    int64_t t = e ? atomic_load_explicit(&e->ftoken, memory_order_relaxed) : 0;
    reki__rcu_read_unlock();
    if (!t)
        return REKI_ENOTFOUND;
    *out = t;
    return REKI_OK;
}

bool reki__fence_may_link(struct reki__entry *e, int kind)
{
    /* Only actors whose every handle passes the deadline check: an inbox's
     * owner receives on its own thread, a CALLER has no mailbox. */
    return !e->fshard || kind == REKI__LIGHT || kind == REKI__DEDICATED;
}

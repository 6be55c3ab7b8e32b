/*
 * The pid table: pid -> proc, with generations so a stale pid is harmless.
 *
 * A pid is (generation << 26 | index).  Slot `live` holds the occupant's pid
 * while it lives; the exit transition stores pid | DEAD_BIT.  Liveness is one
 * acquire load compared with the pid: no lock, no write.  Slots live in
 * chunks that are allocated on demand and never move, so readers need no lock
 * to index them; a slot is recycled (next generation) only after an RCU grace
 * period following its occupant's exit, so a reader that saw `live == pid`
 * inside a read-side section reads that occupant's proc pointer.
 *
 * Allocation takes a mutex: spawns are not the read path, and a short
 * uncontended mutex costs less than a spawn's malloc.
 */
#include <string.h>

#include "internal.h"

int reki__pidtab_init(struct reki__pidtab *t)
{
    static _Atomic unsigned tables;
    memset(t, 0, sizeof(*t));
    t->tag = atomic_fetch_add_explicit(&tables, 1, memory_order_relaxed) % (REKI__GEN_STEP - 1) + 1;
    for (unsigned i = 0; i < REKI__NCHUNKS; i++)
        atomic_init(&t->chunks[i], NULL);
    if (pthread_mutex_init(&t->lock, NULL) != 0)
        return REKI_ENOMEM;
    return REKI_OK;
}

void reki__pidtab_destroy(struct reki__pidtab *t)
{
    for (unsigned i = 0; i < REKI__NCHUNKS; i++)
        reki__free(atomic_load_explicit(&t->chunks[i], memory_order_relaxed));
    reki__free(t->free_idx);
    pthread_mutex_destroy(&t->lock);
}

static struct reki__slot *slot_of(struct reki__pidtab *t, uint64_t idx)
{
    /* acquire: pairs with the release that published the chunk. */
    struct reki__slot *c =
        atomic_load_explicit(&t->chunks[idx >> REKI__CHUNK_BITS], memory_order_acquire);
    return c ? &c[idx & (REKI__CHUNK_SLOTS - 1)] : NULL;
}

/* Under t->lock: a never-used index, allocating its chunk if needed. */
static int fresh_index(struct reki__pidtab *t, uint32_t *idx)
{
    if (t->next >= (UINT64_C(1) << REKI__IDX_BITS))
        return REKI_ENOMEM;
    unsigned c = t->next >> REKI__CHUNK_BITS;
    if (!atomic_load_explicit(&t->chunks[c], memory_order_relaxed)) {
        struct reki__slot *chunk = reki__calloc(REKI__CHUNK_SLOTS, sizeof(*chunk));
        if (!chunk)
            return REKI_ENOMEM;
        /* release: readers acquire-load the chunk pointer (slot_of). */
        atomic_store_explicit(&t->chunks[c], chunk, memory_order_release);
    }
    *idx = t->next++;
    return REKI_OK;
}

int reki__pid_alloc(struct reki__pidtab *t, struct reki__proc *p, reki_pid_t *pid)
{
    uint32_t idx;
    int rc = REKI_OK;
    pthread_mutex_lock(&t->lock);
    if (t->nfree > 0)
        idx = t->free_idx[--t->nfree];
    else
        rc = fresh_index(t, &idx);
    pthread_mutex_unlock(&t->lock);
    if (rc != REKI_OK)
        return rc;
    struct reki__slot *s = slot_of(t, idx);
    uint64_t last = atomic_load_explicit(&s->live, memory_order_relaxed) & ~REKI__DEAD_BIT;
    uint64_t gen = last ? (last >> REKI__IDX_BITS) + REKI__GEN_STEP : t->tag;
    atomic_store_explicit(&s->proc, p, memory_order_relaxed);
    /* Dead under the new pid: published by reki__pid_publish. */
    *pid = (gen << REKI__IDX_BITS) | idx;
    atomic_store_explicit(&s->live, *pid | REKI__DEAD_BIT, memory_order_relaxed);
    return REKI_OK;
}

void reki__pid_publish(struct reki__pidtab *t, reki_pid_t pid)
{
    struct reki__slot *s = slot_of(t, pid & REKI__IDX_MASK);
    /* seq_cst: release for the proc's fields (pairs with the acquire in
     * reki__pid_resolve), and ordered before the spawner's shutdown check
     * (Dekker with reki_rt_free's store of rt->shutdown and its sweep). */
    atomic_store_explicit(&s->live, pid, memory_order_seq_cst);
}

void reki__pid_kill(struct reki__pidtab *t, reki_pid_t pid)
{
    struct reki__slot *s = slot_of(t, pid & REKI__IDX_MASK);
    /* seq_cst: the exit transition; every liveness check after it fails. */
    atomic_store_explicit(&s->live, pid | REKI__DEAD_BIT, memory_order_seq_cst);
}

void reki__pid_release(struct reki__pidtab *t, reki_pid_t pid)
{
    uint32_t idx = (uint32_t)(pid & REKI__IDX_MASK);
    struct reki__slot *s = slot_of(t, idx);
    atomic_store_explicit(&s->proc, NULL, memory_order_relaxed);
    if ((pid >> REKI__IDX_BITS) > REKI__GEN_MAX - REKI__GEN_STEP)
        return; /* generations exhausted: retire the slot, never reuse a pid */
    pthread_mutex_lock(&t->lock);
    if (t->nfree == t->cap_free) {
        size_t cap = t->cap_free ? t->cap_free * 2 : 1024;
        uint32_t *n = reki__malloc(cap * sizeof(*n));
        if (!n) {
            /* Leak the index rather than fail a free: the slot stays dead. */
            pthread_mutex_unlock(&t->lock);
            return;
        }
        if (t->nfree)
            memcpy(n, t->free_idx, t->nfree * sizeof(*n));
        reki__free(t->free_idx);
        t->free_idx = n;
        t->cap_free = cap;
    }
    t->free_idx[t->nfree++] = idx;
    pthread_mutex_unlock(&t->lock);
}

struct reki__proc *reki__pid_resolve(struct reki__pidtab *t, reki_pid_t pid)
{
    if (REKI__UNLIKELY(pid < REKI__PID_MIN || (pid & REKI__DEAD_BIT)))
        return NULL;
    struct reki__slot *s = slot_of(t, pid & REKI__IDX_MASK);
    /* acquire: pairs with reki__pid_publish; the proc is initialized. */
    if (!s || atomic_load_explicit(&s->live, memory_order_acquire) != pid)
        return NULL;
    return atomic_load_explicit(&s->proc, memory_order_relaxed);
}

bool reki__pid_alive(struct reki__pidtab *t, reki_pid_t pid)
{
    if (REKI__UNLIKELY(pid < REKI__PID_MIN || (pid & REKI__DEAD_BIT)))
        return false;
    struct reki__slot *s = slot_of(t, pid & REKI__IDX_MASK);
    /* acquire: pairs with publish and kill; a lookup that sees the pid alive
     * also sees everything its spawner did. */
    return s && atomic_load_explicit(&s->live, memory_order_acquire) == pid;
}

void reki__pid_foreach_live(struct reki__pidtab *t, void (*fn)(reki_pid_t, void *), void *arg)
{
    pthread_mutex_lock(&t->lock);
    uint32_t n = t->next;
    pthread_mutex_unlock(&t->lock);
    /* Slots never move or go away before the table: no read-side section
     * is needed to read them, and fn (which may run user code) runs outside
     * any.  fn gets the pid, which it resolves again itself. */
    for (uint32_t i = 0; i < n; i++) {
        struct reki__slot *s = slot_of(t, i);
        uint64_t live = atomic_load_explicit(&s->live, memory_order_acquire);
        if (live != 0 && !(live & REKI__DEAD_BIT))
            fn(live, arg);
    }
}

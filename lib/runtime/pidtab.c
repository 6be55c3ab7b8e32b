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
 * Allocation is sharded: each thread allocates from its shard (a mutex, a
 * free list and a block of 64 fresh slots taken with one fetch_add), so
 * threads that spawn at once share no cache line; a freed slot goes back to
 * the shard that owns its block.
 */
#include <string.h>

#include "runtime/runtime.h"

#define CHUNK_BYTES ((size_t)REKI__CHUNK_SLOTS * sizeof(struct reki__slot))

int reki__pidtab_init(struct reki__pidtab *t)
{
    static _Atomic unsigned tables;
    memset(t, 0, sizeof(*t));
    t->tag = atomic_fetch_add_explicit(&tables, 1, memory_order_relaxed) % (REKI__GEN_STEP - 1) + 1;
    for (unsigned i = 0; i < REKI__NCHUNKS; i++) {
        atomic_init(&t->chunks[i], NULL);
        atomic_init(&t->owners[i], NULL);
    }
    atomic_init(&t->blocks, 0);
    for (unsigned i = 0; i < REKI__SHARDS; i++) {
        if (pthread_mutex_init(&t->shard[i].lock, NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&t->shard[i].lock);
            return REKI_ENOMEM;
        }
        t->shard[i].used = REKI__BLOCK_SLOTS; /* no block yet */
    }
    return REKI_OK;
}

void reki__pidtab_destroy(struct reki__pidtab *t)
{
    for (unsigned i = 0; i < REKI__NCHUNKS; i++) {
        struct reki__slot *c = atomic_load_explicit(&t->chunks[i], memory_order_relaxed);
        if (c)
            reki__unmap_pages(c, CHUNK_BYTES);
        reki__free((void *)atomic_load_explicit(&t->owners[i], memory_order_relaxed));
    }
    for (unsigned i = 0; i < REKI__SHARDS; i++) {
        reki__free(t->shard[i].free_idx);
        pthread_mutex_destroy(&t->shard[i].lock);
    }
}

#define BLOCKS_PER_CHUNK (REKI__CHUNK_SLOTS / REKI__BLOCK_SLOTS)

static struct reki__slot *slot_of(struct reki__pidtab *t, uint64_t idx)
{
    /* acquire: pairs with the release that published the chunk. */
    struct reki__slot *c =
        atomic_load_explicit(&t->chunks[idx >> REKI__CHUNK_BITS], memory_order_acquire);
    return c ? &c[idx & (REKI__CHUNK_SLOTS - 1)] : NULL;
}

/* A fresh block for shard `sid` (its lock held): one fetch_add on the
 * table's block counter per REKI__BLOCK_SLOTS spawns.  Its chunk is
 * allocated by whichever shard needs it first (a CAS decides). */
static int fresh_block(struct reki__pidtab *t, unsigned sid)
{
    uint32_t b = atomic_fetch_add_explicit(&t->blocks, 1, memory_order_relaxed);
    if ((uint64_t)(b + 1) * REKI__BLOCK_SLOTS > (UINT64_C(1) << REKI__IDX_BITS)) {
        atomic_fetch_sub_explicit(&t->blocks, 1, memory_order_relaxed);
        return REKI_ENOMEM;
    }
    uint32_t first = b * REKI__BLOCK_SLOTS;
    unsigned c = first >> REKI__CHUNK_BITS;
    /* The owners first: a chunk whose pointer is published has them. */
    _Atomic uint8_t *owners = atomic_load_explicit(&t->owners[c], memory_order_acquire);
    if (!owners) {
        _Atomic uint8_t *mine = reki__calloc(BLOCKS_PER_CHUNK, sizeof(*mine));
        if (!mine)
            return REKI_ENOMEM; /* the block is lost: its slots stay 0, never used */
        if (atomic_compare_exchange_strong_explicit(&t->owners[c], &owners, mine,
                                                    memory_order_acq_rel, memory_order_acquire))
            owners = mine;
        else
            reki__free((void *)mine);
    }
    struct reki__slot *chunk = atomic_load_explicit(&t->chunks[c], memory_order_acquire);
    if (!chunk) {
        struct reki__slot *mine = reki__map_pages(CHUNK_BYTES); /* zero-filled */
        if (!mine)
            return REKI_ENOMEM;
        /* release: readers acquire-load the chunk pointer (slot_of). */
        if (!atomic_compare_exchange_strong_explicit(&t->chunks[c], &chunk, mine,
                                                     memory_order_acq_rel, memory_order_acquire))
            reki__unmap_pages(mine, CHUNK_BYTES);
    }
    atomic_store_explicit(&owners[b % BLOCKS_PER_CHUNK], (uint8_t)sid, memory_order_relaxed);
    t->shard[sid].block = first;
    t->shard[sid].used = 0;
    return REKI_OK;
}

int reki__pid_alloc(struct reki__pidtab *t, struct reki__proc *p, reki_pid_t *pid)
{
    unsigned sid = reki__tls_shard();
    struct reki__pidshard *sh = &t->shard[sid];
    uint32_t idx;
    int rc = REKI_OK;
    pthread_mutex_lock(&sh->lock);
    if (sh->nfree > 0)
        idx = sh->free_idx[--sh->nfree];
    else if (sh->used < REKI__BLOCK_SLOTS || (rc = fresh_block(t, sid)) == REKI_OK)
        idx = sh->block + sh->used++;
    pthread_mutex_unlock(&sh->lock);
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
    /* Back to the shard that owns its block (written before the slot was
     * first handed out, under that shard's lock; we got here through the
     * pid's publication and exit, which happen after). */
    _Atomic uint8_t *owners =
        atomic_load_explicit(&t->owners[idx >> REKI__CHUNK_BITS], memory_order_acquire);
    unsigned sid = atomic_load_explicit(
        &owners[(idx & (REKI__CHUNK_SLOTS - 1)) / REKI__BLOCK_SLOTS], memory_order_relaxed);
    struct reki__pidshard *sh = &t->shard[sid];
    pthread_mutex_lock(&sh->lock);
    if (sh->nfree == sh->cap_free) {
        size_t cap = sh->cap_free ? sh->cap_free * 2 : 1024;
        uint32_t *n = reki__malloc(cap * sizeof(*n));
        if (!n) {
            /* Leak the index rather than fail a free: the slot stays dead. */
            pthread_mutex_unlock(&sh->lock);
            return;
        }
        if (sh->nfree)
            memcpy(n, sh->free_idx, sh->nfree * sizeof(*n));
        reki__free(sh->free_idx);
        sh->free_idx = n;
        sh->cap_free = cap;
    }
    sh->free_idx[sh->nfree++] = idx;
    pthread_mutex_unlock(&sh->lock);
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
    /* Blocks below it were handed out; a chunk not yet published holds no
     * live pid (slot_of is NULL: skipped). */
    uint32_t n = atomic_load_explicit(&t->blocks, memory_order_acquire) * REKI__BLOCK_SLOTS;
    /* Slots never move or go away before the table: no read-side section
     * is needed to read them, and fn (which may run user code) runs outside
     * any.  fn gets the pid, which it resolves again itself. */
    for (uint32_t i = 0; i < n; i++) {
        struct reki__slot *s = slot_of(t, i);
        if (!s) { /* a block whose chunk could not be allocated */
            i |= REKI__CHUNK_SLOTS - 1;
            continue;
        }
        uint64_t live = atomic_load_explicit(&s->live, memory_order_acquire);
        if (live != 0 && !(live & REKI__DEAD_BIT))
            fn(live, arg);
    }
}

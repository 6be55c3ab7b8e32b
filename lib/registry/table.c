/*
 * The index: a ck_ht in byte-string mode, one writer at a time (reg->wlock),
 * any number of lock-free readers inside RCU read-side sections.
 *
 * ck_ht's weak spot is removal: a removed slot becomes a tombstone and never
 * becomes empty again in that map (ck_ht_gc moves live keys up over
 * tombstones but writes no empty slot), so a registry whose keys come and go
 * fills its map with tombstones until every insert walks the whole probe
 * limit (measured: 46 us per insert at 10,000 keys after a few hundred
 * thousand distinct keys).  And ck grows a map by rehashing all of it at
 * once, under our writer lock.
 *
 * So the writer rebuilds the table incrementally instead: when tombstones
 * pass capacity/4 (same size), when the load passes 3/8 (twice the size,
 * before ck's own growth at 1/2) or falls under 3/16 (shrink), it starts a
 * fresh ck_ht, and every later write under wlock also copies up to
 * REBUILD_STEP entries of the `all` list into it.  Writes made meanwhile go
 * to both tables.  When the cursor reaches the end, the new table holds every
 * entry and is published with one release store; readers that still probe
 * the old one finish on it, and it is freed after a grace period.  No write
 * does more than REBUILD_STEP copies, so no whole-map pass ever runs under
 * the lock.
 *
 * Keys are not copied by ck_ht: it keeps a pointer to the key inside our
 * entry, which lives at least as long as a table slot names it.
 */
#include <string.h>

#include "registry/registry.h"

#ifdef CK_HT_PP
/* A pointer-packed ck_ht rehashes keys with its own hash when it grows, and
 * its readers do not re-check the deletion counter. */
#error "reki needs ck_ht built without CK_HT_PP"
#endif

#define REBUILD_STEP 16u
#define MIN_CAPACITY 64u
/* ck's map sizes are 32-bit: 2^31 slots at most. */
#define MAX_MAP ((size_t)1 << 31)

/* Maps of BIG_MAP bytes or more are mapped from the kernel and unmapped
 * when freed: a registry whose keys come and go rebuilds its map often, and
 * glibc, once such a block has been freed, serves the next ones from the
 * heap, where maps freed a grace period late fragment it (measured: the
 * process kept twice the memory of one whose keys stayed). */
#define BIG_MAP ((size_t)128 << 10)

struct block {
    struct rcu_head rcu;
    size_t mapped; /* bytes mmapped, or 0 (malloc) */
    max_align_t data[];
};

static void *tbl_malloc(size_t n)
{
    size_t total = sizeof(struct block) + n;
    struct block *b;
    if (total >= BIG_MAP) {
        if (!(b = reki__map_pages(total)))
            return NULL;
        b->mapped = total;
    } else {
        if (!(b = reki__malloc(total)))
            return NULL;
        b->mapped = 0;
    }
    return b->data;
}

static void block_release(struct block *b)
{
    if (b->mapped)
        reki__unmap_pages(b, b->mapped);
    else
        reki__free(b);
}

static void block_free_cb(struct rcu_head *head)
{
    reki__rcu_reclaim_acquire();
    block_release(REKI__CONTAINER_OF(head, struct block, rcu));
    reki__rcu_callback_done();
}

static void tbl_free(void *p, size_t n, bool defer)
{
    (void)n;
    if (!p)
        return;
    struct block *b = REKI__CONTAINER_OF(p, struct block, data);
    if (defer)
        reki__call_rcu(&b->rcu, block_free_cb);
    else
        block_release(b);
}

static void *tbl_realloc(void *p, size_t old, size_t n, bool defer)
{
    void *q = tbl_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    tbl_free(p, old, defer);
    return q;
}

static struct ck_malloc tbl_allocator = {
    .malloc = tbl_malloc,
    .realloc = tbl_realloc,
    .free = tbl_free,
};

/* The smallest map (at least min_capacity) that holds n entries at load
 * 5/16 or less, which is also the reaper's budget (reaper.c): a registry
 * the reaper keeps within budget never grows past it. */
static size_t capacity_for(const reki_registry_t *reg, size_t n)
{
    size_t cap = reg->min_capacity;
    while (cap / 16 * 5 < n && cap < MAX_MAP)
        cap <<= 1;
    return cap;
}

static struct reki__table *table_new(size_t capacity)
{
    struct reki__table *t = reki__malloc(sizeof(*t));
    if (!t)
        return NULL;
    /* ck rounds up to a power of two (capacity is one) and hashes with the
     * callback only in pointer-packed builds, excluded above. */
    if (!ck_ht_init(&t->ht, CK_HT_MODE_BYTESTRING, NULL, &tbl_allocator, capacity, 0)) {
        reki__free(t);
        return NULL;
    }
    t->capacity = capacity;
    t->removed = 0;
    return t;
}

static void table_free_cb(struct rcu_head *head)
{
    reki__rcu_reclaim_acquire();
    struct reki__table *t = REKI__CONTAINER_OF(head, struct reki__table, rcu);
    ck_ht_destroy(&t->ht);
    reki__free(t);
    reki__rcu_callback_done();
}

int reki__table_init(reki_registry_t *reg, size_t capacity)
{
    if (capacity > REKI_REGISTRY_CAPACITY_MAX)
        return REKI_EINVAL;
    reki__hashkey_init(&reg->hkey);
    reki__list_init(&reg->all);
    /* Room for `capacity` keys within the reaper's budget (5/16). */
    reg->min_capacity = MIN_CAPACITY;
    reg->min_capacity = capacity_for(reg, capacity);
    struct reki__table *t = table_new(reg->min_capacity);
    if (!t)
        return REKI_ENOMEM;
    reg->next = NULL;
    reg->cursor = NULL;
    atomic_init(&reg->entries, 0);
    atomic_init(&reg->rebuilds, 0);
    atomic_init(&reg->capacity, t->capacity);
    /* release: the registry is published to other threads after this. */
    atomic_store_explicit(&reg->tab, t, memory_order_release);
    return REKI_OK;
}

/* Only with no reader left (reki_registry_free, after a grace period). */
void reki__table_destroy(reki_registry_t *reg)
{
    struct reki__table *t = atomic_load_explicit(&reg->tab, memory_order_relaxed);
    ck_ht_destroy(&t->ht);
    reki__free(t);
    if (reg->next) {
        ck_ht_destroy(&reg->next->ht);
        reki__free(reg->next);
        reg->next = NULL;
    }
}

struct reki__entry *reki__table_get_aliased(struct reki__table *t, ck_ht_hash_t h, const void *key,
                                            size_t keylen, uint64_t *w)
{
    /* The probe's key pointer is some entry's own buffer: probe again with a
     * copy, whose address no slot holds, so ck compares length and bytes. */
    unsigned char copy[REKI_KEY_MAX];
    memcpy(copy, key, keylen);
    ck_ht_entry_t ent;
    ck_ht_entry_key_set(&ent, copy, (uint16_t)keylen);
    *w = 0;
    if (!ck_ht_get_spmc(&t->ht, h, &ent))
        return NULL;
    struct reki__entry *e = ck_ht_entry_value(&ent);
    *w = atomic_load_explicit(&e->word, memory_order_acquire);
    return e;
}

static bool ht_put(struct reki__table *t, struct reki__entry *e)
{
    /* ck_ht_put_spmc reuses the first tombstone on the probe path without
     * looking further for the key, so it must never be given a key that is
     * in t: claims check the key absent from the current table under wlock,
     * a rebuild's target holds only entries the cursor copied (new entries
     * join `all` behind the cursor) and loses every entry removed. */
    ck_ht_entry_t ent;
    ck_ht_entry_set(&ent, e->hash, e->key, (uint16_t)e->keylen, e);
    if (!ck_ht_put_spmc(&t->ht, e->hash, &ent))
        return false;
    /* ck grows at load 1/2 by itself if we did not rebuild in time. */
    while ((size_t)ck_ht_count(&t->ht) * 2 > t->capacity)
        t->capacity <<= 1;
    return true;
}

static void ht_remove(struct reki__table *t, struct reki__entry *e)
{
    ck_ht_entry_t ent;
    ck_ht_entry_key_set(&ent, e->key, (uint16_t)e->keylen);
    if (ck_ht_remove_spmc(&t->ht, e->hash, &ent))
        t->removed++;
}

/* Copy up to REBUILD_STEP entries into next; publish it once all are in. */
static void rebuild_step(reki_registry_t *reg)
{
    for (unsigned i = 0; i < REBUILD_STEP && reg->cursor != &reg->all; i++) {
        struct reki__entry *e = REKI__CONTAINER_OF(reg->cursor, struct reki__entry, all);
        if (!ht_put(reg->next, e))
            return; /* out of memory: try again at the next write */
        reg->cursor = reg->cursor->next;
    }
    if (reg->cursor != &reg->all)
        return;
    struct reki__table *old = atomic_load_explicit(&reg->tab, memory_order_relaxed);
    /* release: the new map's slots and every entry it names (pairs with
     * reki__table_get's acquire). */
    atomic_store_explicit(&reg->tab, reg->next, memory_order_release);
    atomic_store_explicit(&reg->capacity, reg->next->capacity, memory_order_relaxed);
    reg->next = NULL;
    atomic_store_explicit(&reg->rebuilds,
                          atomic_load_explicit(&reg->rebuilds, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    reki__call_rcu(&old->rcu, table_free_cb);
}

/* Start a rebuild if the current table needs one, and advance one.  A map
 * is rebuilt at its own size when tombstones pass 1/4 of it, grown to twice
 * its size when the load passes 3/8, and shrunk to capacity_for(n) when the
 * load falls under 3/16 and a smaller map fits. */
static void table_maintain(reki_registry_t *reg)
{
    if (!reg->next) {
        struct reki__table *t = atomic_load_explicit(&reg->tab, memory_order_relaxed);
        size_t n = atomic_load_explicit(&reg->entries, memory_order_relaxed);
        size_t cap = t->capacity;
        if (n > cap / 8 * 3 && cap < MAX_MAP)
            cap <<= 1;
        else if (n < cap / 16 * 3 && capacity_for(reg, n) < cap)
            cap = capacity_for(reg, n);
        else if (t->removed < t->capacity / 4)
            return;
        reg->next = table_new(cap);
        if (!reg->next)
            return; /* out of memory: the current table still works */
        reg->cursor = reg->all.next;
    }
    rebuild_step(reg);
}

/* Under wlock; readers outside it (the reaper's budget) load it relaxed. */
static void entries_add(reki_registry_t *reg, size_t d)
{
    size_t n = atomic_load_explicit(&reg->entries, memory_order_relaxed);
    atomic_store_explicit(&reg->entries, n + d, memory_order_relaxed);
}

bool reki__table_put(reki_registry_t *reg, struct reki__entry *e)
{
    struct reki__table *t = atomic_load_explicit(&reg->tab, memory_order_relaxed);
    if (reg->next && !ht_put(reg->next, e))
        return false;
    if (!ht_put(t, e)) {
        if (reg->next)
            ht_remove(reg->next, e);
        return false;
    }
    /* New entries go to the head of `all`, behind a rebuild's cursor: they
     * are in next already. */
    reki__list_add(&reg->all, &e->all);
    entries_add(reg, 1);
    atomic_store_explicit(&reg->capacity, t->capacity, memory_order_relaxed);
    table_maintain(reg);
    return true;
}

void reki__table_remove(reki_registry_t *reg, struct reki__entry *e)
{
    struct reki__table *t = atomic_load_explicit(&reg->tab, memory_order_relaxed);
    ht_remove(t, e);
    if (reg->next)
        ht_remove(reg->next, e);
    if (reg->cursor == &e->all)
        reg->cursor = e->all.next;
    reki__list_del(&e->all);
    entries_add(reg, (size_t)-1);
    table_maintain(reg);
}

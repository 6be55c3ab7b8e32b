/*
 * The index: a ck_ht in byte-string mode, one writer at a time (reg->wlock),
 * any number of lock-free readers inside RCU read-side sections.
 *
 * ck_ht frees old maps with defer = true when it grows or is compacted;
 * the allocator below turns that into call_rcu, so a reader still probing an
 * old map keeps it until its read-side section ends.  Keys are not copied by
 * ck_ht: it keeps a pointer to the key inside our entry, which lives at least
 * as long as the table slot naming it.
 */
#include <string.h>

#include "registry.h"

struct block {
    struct rcu_head rcu;
    max_align_t data[];
};

static void *tbl_malloc(size_t n)
{
    struct block *b = reki__malloc(sizeof(*b) + n);
    return b ? b->data : NULL;
}

static void block_free_cb(struct rcu_head *head)
{
    reki__rcu_reclaim_acquire();
    reki__free(REKI__CONTAINER_OF(head, struct block, rcu));
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
        reki__free(b);
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

static void table_hash_cb(ck_ht_hash_t *h, const void *key, size_t keylen, uint64_t seed)
{
    h->value = reki__hash(key, keylen, seed);
}

bool reki__table_init(reki_registry_t *reg, size_t capacity)
{
    /* The seed varies per table so that keys chosen against one process's
     * hash layout do not collide in another's. */
    uint64_t seed = (uint64_t)(uintptr_t)reg ^ ((uint64_t)time(NULL) << 17) ^ 0x9e3779b97f4a7c15u;
    if (capacity < 64)
        capacity = 64;
    /* ck_ht rounds the first map up to a power of two, then doubles it
     * whenever it passes half full; gc_capacity follows the same rule. */
    reg->gc_capacity = 64;
    while (reg->gc_capacity < capacity)
        reg->gc_capacity <<= 1;
    reg->gc_removed = 0;
    return ck_ht_init(&reg->ht, CK_HT_MODE_BYTESTRING, table_hash_cb, &tbl_allocator, capacity,
                      seed);
}

void reki__table_destroy(reki_registry_t *reg)
{
    ck_ht_destroy(&reg->ht);
}

bool reki__table_put(reki_registry_t *reg, struct reki__entry *e)
{
    ck_ht_entry_t ent;
    ck_ht_entry_set(&ent, e->hash, e->key, (uint16_t)e->keylen, e);
    if (!ck_ht_put_spmc(&reg->ht, e->hash, &ent))
        return false;
    while ((size_t)ck_ht_count(&reg->ht) * 2 > reg->gc_capacity)
        reg->gc_capacity <<= 1;
    return true;
}

void reki__table_remove(reki_registry_t *reg, struct reki__entry *e)
{
    ck_ht_entry_t ent;
    ck_ht_entry_key_set(&ent, e->key, (uint16_t)e->keylen);
    ck_ht_remove_spmc(&reg->ht, e->hash, &ent);
    /* A removal leaves a tombstone, and a table whose keys come and go
     * without growing (start, exit, start again) fills with them: the probe
     * bound only rises, and every miss walks the tombstones.  ck_ht_gc moves
     * live slots up over tombstones and recomputes the bound; readers retry
     * on the map's deletion counter, which ck checks in every probe when it
     * is not pointer-packed (Debian's build is not).  It scans the whole map,
     * so running it once per capacity/4 removals costs 4 slot reads per
     * removal, and keeps the map at most 3/4 full of live keys and
     * tombstones. */
#ifndef CK_HT_PP
    if (++reg->gc_removed >= reg->gc_capacity / 4) {
        reg->gc_removed = 0;
        ck_ht_gc(&reg->ht, 0, 0);
    }
#endif
}

size_t reki__table_snapshot(reki_registry_t *reg, struct reki__entry **out, size_t max)
{
    ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *ent;
    size_t n = 0;
    while (n < max && ck_ht_next(&reg->ht, &it, &ent))
        out[n++] = ck_ht_entry_value(ent);
    return n;
}

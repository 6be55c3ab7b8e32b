/* The store of passivated values (see store.h). */
#include "store.h"

#include <ck_ht.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define SHARDS 64

struct record {
    uint32_t klen;
    uint32_t vlen;
    char bytes[]; /* key, then value */
};

struct shard {
    pthread_mutex_t lock;
    ck_ht_t ht;
} __attribute__((aligned(64)));

struct store {
    struct shard shard[SHARDS];
    uint64_t seed;
    atomic_size_t count;
    atomic_size_t bytes;
};

static void *ht_malloc(size_t n)
{
    return malloc(n);
}

static void *ht_realloc(void *p, size_t old, size_t n, bool defer)
{
    (void)old;
    (void)defer;
    return realloc(p, n);
}

static void ht_free(void *p, size_t n, bool defer)
{
    (void)n;
    (void)defer;
    free(p);
}

static struct ck_malloc allocator = {.malloc = ht_malloc, .realloc = ht_realloc, .free = ht_free};

int store_new(store_t **out)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    if (getrandom(&s->seed, sizeof(s->seed), 0) != sizeof(s->seed))
        s->seed = (uint64_t)(uintptr_t)s ^ 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&s->shard[i].lock, NULL);
        if (!ck_ht_init(&s->shard[i].ht, CK_HT_MODE_BYTESTRING, NULL, &allocator, 64, s->seed)) {
            while (--i >= 0)
                ck_ht_destroy(&s->shard[i].ht);
            free(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

void store_free(store_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < SHARDS; i++) {
        ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
        ck_ht_entry_t *e;
        while (ck_ht_next(&s->shard[i].ht, &it, &e))
            free(ck_ht_entry_value(e));
        ck_ht_destroy(&s->shard[i].ht);
        pthread_mutex_destroy(&s->shard[i].lock);
    }
    free(s);
}

/* The hash under the shared seed; its top bits pick the shard (ck_ht uses the low ones). */
static struct shard *locate(store_t *s, const void *key, size_t klen, ck_ht_hash_t *h)
{
    ck_ht_hash(h, &s->shard[0].ht, key, (uint16_t)klen);
    return &s->shard[h->value >> 58];
}

int store_take(store_t *s, const void *key, size_t klen, store_val_t *out)
{
    ck_ht_hash_t h;
    struct shard *sh = locate(s, key, klen, &h);
    ck_ht_entry_t e;
    ck_ht_entry_key_set(&e, key, (uint16_t)klen);
    pthread_mutex_lock(&sh->lock);
    bool found = ck_ht_remove_spmc(&sh->ht, h, &e);
    pthread_mutex_unlock(&sh->lock);
    if (!found)
        return 0;
    struct record *r = ck_ht_entry_value(&e);
    size_t vlen = r->vlen;
    /* The record becomes the value buffer: move the value to its front. */
    memmove(r, r->bytes + r->klen, vlen);
    atomic_fetch_sub_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->bytes, sizeof(*r) + klen + vlen, memory_order_relaxed);
    out->val = (char *)r;
    out->len = vlen;
    out->cap = sizeof(*r) + klen + vlen;
    return 1;
}

int store_put(store_t *s, const void *key, size_t klen, const void *val, size_t vlen)
{
    return store_putv(s, key, klen, NULL, 0, val, vlen);
}

int store_putv(store_t *s, const void *key, size_t klen, const void *head, size_t hlen,
               const void *val, size_t vlen)
{
    if (klen > CK_HT_KEY_LENGTH || hlen > UINT32_MAX || vlen > UINT32_MAX - hlen)
        return -1;
    struct record *r = malloc(sizeof(*r) + klen + hlen + vlen);
    if (!r)
        return -1;
    r->klen = (uint32_t)klen;
    r->vlen = (uint32_t)(hlen + vlen);
    memcpy(r->bytes, key, klen);
    if (hlen)
        memcpy(r->bytes + klen, head, hlen);
    if (vlen)
        memcpy(r->bytes + klen + hlen, val, vlen);
    vlen += hlen;
    ck_ht_hash_t h;
    struct shard *sh = locate(s, key, klen, &h);
    ck_ht_entry_t e;
    ck_ht_entry_set(&e, h, r->bytes, (uint16_t)klen, r);
    pthread_mutex_lock(&sh->lock);
    /* put, not set: a key has at most one value here (see store.h). */
    bool ok = ck_ht_put_spmc(&sh->ht, h, &e);
    pthread_mutex_unlock(&sh->lock);
    if (!ok) {
        free(r);
        return -1;
    }
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->bytes, sizeof(*r) + klen + vlen, memory_order_relaxed);
    return 0;
}

size_t store_count(store_t *s)
{
    return atomic_load_explicit(&s->count, memory_order_relaxed);
}

size_t store_bytes(store_t *s)
{
    return atomic_load_explicit(&s->bytes, memory_order_relaxed);
}

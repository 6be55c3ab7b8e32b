/*
 * Private declarations of the registry: the table, its entries and their
 * state machine (see docs/design.md for the full diagram).
 *
 *   entry->word:  STARTING --start ok--> pid (LIVE) --exit transition--> EXITING
 *                    |                                                     |
 *                    +--start failed / dead pid--> DEAD <--terminate done--+
 *
 * DEAD entries are unlinked from the table in the same writer-lock hold that
 * stores DEAD, then retired: freed after an RCU grace period (lookups) and
 * once no hazard pointer (waiters) names them.  An entry never leaves DEAD,
 * so a key's next actor always gets a fresh entry.
 */
#ifndef REKI_REGISTRY_H
#define REKI_REGISTRY_H

#include "hash.h"
#include "internal.h"

#define REKI__E_STARTING UINT64_C(1)
#define REKI__E_EXITING UINT64_C(2)
#define REKI__E_DEAD UINT64_C(3)

/* Cold fields first, so that the word a lookup reads shares a cache line
 * with the key bytes ck_ht has just compared. */
struct reki__entry {
    struct rcu_head rcu;
    ck_hp_hazard_t hazard;
    struct reki__hook link; /* on the actor's exit hooks while LIVE */
    reki_registry_t *reg;
    reki_rt_t *rt;
    const void *owner; /* thread token of the starter, while STARTING */
    reki_pid_t linked; /* the pid once linked (stays after EXITING) */
    ck_ht_hash_t hash;
    _Atomic uint32_t seq;     /* futex: bumped after every change of word */
    _Atomic uint32_t waiters; /* callers blocked on seq (skip the wake syscall) */
    _Atomic int outcome;      /* why it went DEAD: a start's error, or 0 */
    uint32_t keylen;
    /* A state above, or the pid of a live actor: the exit transition moves it
     * to EXITING before the pid slot dies, so a pid read here was alive. */
    _Atomic uint64_t word;
    unsigned char key[];
};

struct reki_registry {
    reki_rt_t *rt;
    ck_ht_t ht;
    pthread_mutex_t wlock;  /* serializes ck_ht writers; never held across user code */
    pthread_cond_t drained; /* with wlock: reki_registry_free waits for entries == 0 */
    size_t entries;         /* entries in ht (under wlock) */
    size_t gc_removed;      /* removals since the last ck_ht_gc (under wlock) */
    size_t gc_capacity;     /* slots in ht's map, as ck_ht sizes it (under wlock) */
    _Atomic size_t count;   /* live registered actors */
    _Atomic int closing;
    struct reki__list node; /* rt->registries */
};

static inline bool reki__word_is_pid(uint64_t w)
{
    return w >= REKI__PID_MIN;
}

/* table.c */
bool reki__table_init(reki_registry_t *reg, size_t capacity);
void reki__table_destroy(reki_registry_t *reg);
static inline void reki__table_hash(reki_registry_t *reg, const void *key, size_t keylen,
                                    ck_ht_hash_t *h)
{
    h->value = reki__hash(key, keylen, reg->ht.seed);
}

/* The entry under key, or NULL.  Inside an RCU read-side section, or under wlock. */
static inline struct reki__entry *reki__table_get(reki_registry_t *reg, ck_ht_hash_t h,
                                                  const void *key, size_t keylen)
{
    ck_ht_entry_t ent;
    ck_ht_entry_key_set(&ent, key, (uint16_t)keylen);
    if (!ck_ht_get_spmc(&reg->ht, h, &ent))
        return NULL;
    return ck_ht_entry_value(&ent);
}
/* The read path shared by reki_lookup and reki_lookup_or_start's hit: one
 * probe, one acquire load of the entry word (pairs with link_publish's
 * release).  A pid there was alive at that load, which is the linearization
 * point: the exit transition clears the word before it kills the pid slot. */
static inline bool reki__table_hit(reki_registry_t *reg, ck_ht_hash_t h, const void *key,
                                   size_t keylen, reki_pid_t *out)
{
    reki__rcu_read_lock();
    struct reki__entry *e = reki__table_get(reg, h, key, keylen);
    uint64_t w = e ? atomic_load_explicit(&e->word, memory_order_acquire) : 0;
    reki__rcu_read_unlock();
    if (!reki__word_is_pid(w))
        return false;
    *out = w;
    return true;
}

/* Under wlock.  false: out of memory. */
bool reki__table_put(reki_registry_t *reg, struct reki__entry *e);
void reki__table_remove(reki_registry_t *reg, struct reki__entry *e);
/* Under wlock: up to max entries into out; returns how many. */
size_t reki__table_snapshot(reki_registry_t *reg, struct reki__entry **out, size_t max);

/* entry.c */
struct reki__entry *reki__entry_new(reki_registry_t *reg, const void *key, size_t keylen,
                                    ck_ht_hash_t h);
/* Link a started pid to e (publishes LIVE) or REKI_EDEAD. */
int reki__entry_link(struct reki__entry *e, reki_pid_t pid);
/* Store DEAD with outcome, unlink, wake waiters, retire.  Not under wlock. */
void reki__entry_kill(struct reki__entry *e, int outcome);
/* Wake whoever waits on e after its word changed. */
void reki__entry_changed(struct reki__entry *e);

#endif /* REKI_REGISTRY_H */

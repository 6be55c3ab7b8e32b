/*
 * Private declarations of the registry: the table, its entries and their
 * state machine (docs/design.md has the full diagram and the proofs).
 *
 *   entry->word:
 *                 claim CAS (one winner)          link (under the actor's lock)
 *   FREE(g) ----------------------------> STARTING ------------------------> pid (LIVE)
 *     ^  ^                                   |                                  |
 *     |  +---- start failed / dead pid ------+                                  | exit transition
 *     |        (outcome = error)                                                v
 *     +------------------- terminate returned ------------------------------ EXITING
 *     |
 *     +--- reaper CAS FREE(g) -> DEAD, unlink (under wlock) --> call_rcu --> ck_hp_free
 *
 * A key seen before keeps its entry: the next start of that key is one CAS
 * FREE(g) -> STARTING, with no lock, no allocation and no table write.  Only
 * a key with no entry is inserted, under the writer lock (ck_ht has one
 * writer).  FREE carries a generation g, bumped at every FREE store, so the
 * reaper's CAS FREE(g) -> DEAD fails for an entry that was used meanwhile,
 * whatever state it went back to.
 */
#ifndef REKI_REGISTRY_H
#define REKI_REGISTRY_H

#include <ck_ht.h>

#include "core/hash.h"
#include "runtime/runtime.h"

#define REKI__E_STARTING UINT64_C(1)
#define REKI__E_EXITING UINT64_C(2)
#define REKI__E_DEAD UINT64_C(3)
/* FREE(g) = FREE_BIT | g.  Pids never have bit 63 set (runtime/runtime.h). */
#define REKI__E_FREE_BIT (UINT64_C(1) << 63)
#define REKI__E_GEN_MASK (REKI__E_FREE_BIT - 1)

/* Cold fields first, so that the word a lookup reads shares a cache line
 * with the key bytes ck_ht has just compared. */
struct reki__entry {
    struct rcu_head rcu;
    ck_hp_hazard_t hazard;
    struct reki__hook link;     /* on the actor's exit hooks while LIVE */
    struct reki__list all;      /* reg->all, under wlock */
    struct cds_wfcq_node rnode; /* the reaper's queue */
    reki_registry_t *reg;
    reki_rt_t *rt;
    _Atomic(const void *) owner; /* thread token of the starter, while STARTING */
    _Atomic uint64_t linked;     /* the pid once linked (stays after EXITING) */
    uint64_t gen;                /* this incarnation's generation (owned by the holder) */
    ck_ht_hash_t hash;
    _Atomic uint64_t qgen;    /* generation when queued for the reaper */
    _Atomic uint64_t qtime;   /* coarse ms when queued */
    _Atomic uint32_t seq;     /* futex: bumped after every change of word */
    _Atomic uint32_t waiters; /* callers blocked on seq (skip the wake syscall) */
    _Atomic int outcome;      /* why the last start failed, or 0 */
    _Atomic uint8_t queued;   /* on the reaper's queue */
    uint32_t keylen;
    uint32_t fshard; /* fenced shard + 1 while counted live (fence.c; holder, then exit path) */
    _Atomic int64_t ftoken; /* the fenced activation's token (fence.c), or 0 */
    /* Virtual actors (vkey.c).  The key's queue: messages by key waiting
     * for the key's next actor, under plock, taken only by the holder (the
     * link splices it into the new actor's mailbox; a settle drops it).
     * plock also orders each store of word that decides who takes it. */
    reki__spin_t plock;
    uint32_t npend; /* under plock */
    struct __cds_wfcq_head pq_head;
    struct cds_wfcq_tail pq_tail;
    struct reki__keyq kq;          /* leftovers of the exiting actor (its exit path) */
    uint32_t restarts;             /* counted in the window (holder only) */
    uint64_t window;               /* ms when the window opened (holder only) */
    _Atomic(const void *) linking; /* token of the thread about to report STARTED */
    struct cds_wfcq_node snode;    /* the start threads' queue */
    _Atomic int spub;              /* release/acquire of a queued start (TSan) */
    /* A state above, or the pid of a live actor: the exit transition moves it
     * to EXITING before the pid slot dies, so a pid read here was alive. */
    _Atomic uint64_t word;
    unsigned char key[];
};

/* One ck_ht and the size of its map as ck sizes it (a power of two). */
struct reki__table {
    ck_ht_t ht;
    size_t capacity;
    size_t removed; /* tombstones left by removals since it was built */
    struct rcu_head rcu;
};

struct reki_registry {
    reki_rt_t *rt;
    struct reki__hashkey hkey; /* SipHash key, from getrandom */
    /* Readers acquire-load tab inside a read-side section.  The writer
     * replaces it (incremental rebuild, table.c); the old one is freed after
     * a grace period. */
    _Atomic(struct reki__table *) tab;
    pthread_mutex_t wlock;      /* the ck_ht writer; never held across user code */
    struct reki__table *next;   /* rebuild target (under wlock), or NULL */
    struct reki__list *cursor;  /* rebuild position in `all` (under wlock) */
    struct reki__list all;      /* every entry in tab (under wlock) */
    size_t min_capacity;        /* maps never shrink below this */
    _Atomic size_t entries;     /* entries in tab; written under wlock */
    _Atomic size_t capacity;    /* tab's capacity; written under wlock */
    _Atomic size_t count;       /* live registered actors */
    _Atomic int closing;        /* reki_registry_free has begun */
    _Atomic int iterating;      /* reki_foreach calls running: the reaper waits */
    _Atomic uint32_t drain_seq; /* futex: bumped at FREE stores while closing */
    bool reap_eager;            /* REKI_DEBUG_REAP: reap every entry that stays FREE */
    size_t budget_floor;        /* the reaper's budget with no live actor (its least) */
    _Atomic uint64_t reaped;    /* written under wlock */
    _Atomic uint64_t rebuilds;  /* written under wlock */
    /* The reaper (reaper.c): entries that went FREE, oldest first. */
    pthread_mutex_t rlock; /* the queue's single dequeuer (trylock) */
    struct __cds_wfcq_head rq_head;
    struct cds_wfcq_tail rq_tail;
    struct reki__rt_child child; /* attached to rt (reki_rt_free frees it) */
    /* Virtual actors (vkey.c, starter.c). */
    reki_start_fn start;
    void *start_arg;
    uint32_t idle_period; /* ms between idle ticks: idle_ms / 2 rounded up; 0 none */
    int restart;
    uint32_t max_restarts, restart_period_ms;
    void (*drop)(void *msg);
    void (*on_event)(const void *key, size_t keylen, reki_pid_t pid, int event, int detail,
                     void *arg);
    void *event_arg;
    struct reki__starter *starter;       /* NULL without start */
    _Atomic uint32_t await_seq;          /* futex: bumped at links while awaiters > 0 */
    _Atomic uint32_t awaiters;           /* reki_await calls waiting */
    _Atomic(struct reki__fence *) fence; /* fence.c; set once, freed with reg */
};

/* fence.c: a registry that serves only the shards it owns, until a
 * deadline (the cluster's lease).  See fence.c's comment. */
#define REKI__FENCE_MAX_SHARDS 65536u
struct reki__fence {
    _Atomic uint64_t until;  /* CLOCK_BOOTTIME ns: no handle nor start from then on */
    _Atomic uint32_t active; /* 0: open (detached) */
    unsigned nshards;
    struct reki__hashkey key;
    struct {
        _Atomic uint32_t users; /* starts between enter and leave */
        _Atomic uint32_t live;  /* actors linked, until their terminate returned */
        _Atomic uint8_t owned;
        _Atomic int64_t token; /* the claim's, set with owned */
    } shard[];
};
uint64_t reki__fence_now_ns(void);
int reki__fence_attach(reki_registry_t *reg, unsigned nshards, uint64_t k0, uint64_t k1,
                       struct reki__fence **out);
void reki__fence_detach(reki_registry_t *reg);
void reki__fence_destroy(reki_registry_t *reg);
unsigned reki__fence_shard(const struct reki__fence *f, const void *key, size_t keylen);
void reki__fence_set_until(struct reki__fence *f, uint64_t until_ns);
void reki__fence_set_owned(struct reki__fence *f, unsigned s, int64_t token); /* 0: not owned */
bool reki__fence_owned(const struct reki__fence *f, unsigned s);
uint32_t reki__fence_live(const struct reki__fence *f, unsigned s);
void reki__fence_hook_init(struct reki__entry *e);
int reki__fence_enter(struct reki__entry *e, unsigned *shard);
void reki__fence_leave(struct reki__entry *e, unsigned shard, bool linked);
void reki__fence_exited(struct reki__entry *e);
int reki__fence_token(reki_registry_t *reg, const void *key, size_t keylen, int64_t *out);
bool reki__fence_may_link(struct reki__entry *e, int kind);

static inline bool reki__word_is_pid(uint64_t w)
{
    return w - REKI__PID_MIN < REKI__E_FREE_BIT - REKI__PID_MIN;
}

static inline bool reki__word_is_free(uint64_t w)
{
    return (w & REKI__E_FREE_BIT) != 0;
}

/* ------------------------------------------------------------ table.c -- */

/* Most keys a registry may be sized for: the most actors one runtime holds. */
_Static_assert(REKI_REGISTRY_CAPACITY_MAX == ((size_t)1 << REKI__IDX_BITS),
               "REKI_REGISTRY_CAPACITY_MAX is the pid table's size");

int reki__table_init(reki_registry_t *reg, size_t capacity);
void reki__table_destroy(reki_registry_t *reg);
static inline void reki__table_hash(reki_registry_t *reg, const void *key, size_t keylen,
                                    ck_ht_hash_t *h)
{
    h->value = reki__hash(&reg->hkey, key, keylen);
}

struct reki__entry *reki__table_get_aliased(struct reki__table *t, ck_ht_hash_t h, const void *key,
                                            size_t keylen, uint64_t *w);

/* The entry under key and its word (*w), or NULL.  Inside an RCU read-side
 * section, or under wlock.  Matches on equal length and equal bytes only:
 * ck_ht takes a slot whose stored key pointer equals the probe's pointer
 * before it compares lengths, so a caller holding an entry's own key buffer
 * (reki_foreach's fn) and asking for a prefix of it would get that entry.
 * ck's match is re-checked by length, and an aliased probe is redone on a
 * copy.  The word is acquire-loaded first (pairs with the release that
 * published the entry): the entry's fields are read after it. */
static inline struct reki__entry *reki__table_get(reki_registry_t *reg, ck_ht_hash_t h,
                                                  const void *key, size_t keylen, uint64_t *w)
{
    /* acquire: pairs with the release that published the table. */
    struct reki__table *t = atomic_load_explicit(&reg->tab, memory_order_acquire);
    ck_ht_entry_t ent;
    ck_ht_entry_key_set(&ent, key, (uint16_t)keylen);
    if (!ck_ht_get_spmc(&t->ht, h, &ent))
        return NULL;
    struct reki__entry *e = ck_ht_entry_value(&ent);
    *w = atomic_load_explicit(&e->word, memory_order_acquire);
    if (REKI__UNLIKELY(e->keylen != keylen))
        return reki__table_get_aliased(t, h, key, keylen, w);
    return e;
}

/* The read path shared by reki_lookup and reki_lookup_or_start's hit: one
 * probe, one acquire load of the entry word (pairs with link_publish's
 * release).  A pid there was alive at that load, which is the linearization
 * point: the exit transition clears the word before it kills the pid slot. */
static inline bool reki__table_hit(reki_registry_t *reg, ck_ht_hash_t h, const void *key,
                                   size_t keylen, reki_pid_t *out)
{
    uint64_t w = 0;
    reki__rcu_read_lock();
    reki__table_get(reg, h, key, keylen, &w);
    reki__rcu_read_unlock();
    if (!reki__word_is_pid(w))
        return false;
    *out = w;
    return true;
}

/* Under wlock.  false: out of memory (nothing changed). */
bool reki__table_put(reki_registry_t *reg, struct reki__entry *e);
void reki__table_remove(reki_registry_t *reg, struct reki__entry *e);

/* ------------------------------------------------------------ entry.c -- */

struct reki__entry *reki__entry_new(reki_registry_t *reg, const void *key, size_t keylen,
                                    ck_ht_hash_t h);
/* "Go round again": a claim or an insert lost to another caller (distinct
 * from every REKI_* code, REKI_STARTED included). */
#define REKI__E_LOST 2
/* Insert a new, held (STARTING) entry under wlock: REKI_OK (then a reaper
 * step if over budget), REKI__E_LOST (the key has an entry now: e is not
 * published, the caller frees it), REKI_ENOMEM or REKI_ESHUTDOWN. */
int reki__entry_insert(reki_registry_t *reg, struct reki__entry *e);
/* Claim e, seen FREE(g) (w) inside the caller's read-side section: one CAS
 * FREE(g) -> STARTING, the claim's linearization point.  REKI_OK (held, with
 * owner stored), REKI__E_LOST or REKI_ESHUTDOWN. */
int reki__entry_claim(reki_registry_t *reg, struct reki__entry *e, uint64_t w, const void *owner);
/* An entry was seen DEAD (reaped): wait until its unlink is done. */
void reki__entry_after_reap(reki_registry_t *reg);
/* ck_hp's destructor for a retired entry (the runtime's hazard-pointer domain). */
void reki__entry_destroy(void *entry);
/* Link a started pid to e (publishes LIVE) or REKI_EDEAD. */
int reki__entry_link(struct reki__entry *e, reki_pid_t pid);
/* STARTING or EXITING -> FREE(gen + 1) with outcome, then wake waiters and
 * let the reaper see it; messages queued for the key go to the registry's
 * drop first (vkey.c).  Called by the entry's holder, with no lock held. */
void reki__entry_release(struct reki__entry *e, int outcome);
/* Under plock, inside a read-side section, by the holder: store FREE(gen)
 * (gen and outcome already written). */
void reki__entry_free_word(struct reki__entry *e);
/* After that store, still inside the read-side section: wake waiters, let
 * the reaper or a closing registry see it. */
void reki__entry_release_tail(struct reki__entry *e);
/* Wake whoever waits on e after its word changed. */
void reki__entry_changed(struct reki__entry *e);
/* After a grace period and once no hazard pointer names e: free it. */
void reki__entry_retire(struct reki__entry *e);

/* ------------------------------------------------------------- vkey.c -- */

/* Report an event, if the registry has on_event. */
void reki__vkey_event(struct reki__entry *e, reki_pid_t pid, int event, int detail);
/* Under plock, inside the actor's lock (link_publish): move the key's queue
 * into p's mailbox ahead of anything sent after; true if it was empty. */
bool reki__vkey_splice(struct reki__entry *e, struct reki__proc *p);
/* After a link: wake reki_await callers, arm the idle tick (arm_idle: the
 * actor's first link to a registry with idle_ms). */
void reki__vkey_linked(struct reki__entry *e, struct reki__proc *p, bool arm_idle);
/* The exited hook of a link: leftovers, restart or not, release. */
void reki__vkey_exited(struct reki__entry *e, reki_pid_t pid, int reason);
/* On a start thread: start e (held, STARTING) with the registry's start. */
void reki__vkey_run_start(struct reki__entry *e);

/* ---------------------------------------------------------- starter.c -- */

#define REKI__STARTERS_MAX 16
int reki__starter_new(reki_registry_t *reg);
/* Queue a start of e (held, STARTING); never fails once the pool exists. */
void reki__starter_push(reki_registry_t *reg, struct reki__entry *e);
/* Wake a sleeping start thread, if any, to run reaper steps. */
void reki__starter_kick(reki_registry_t *reg);
/* No start is queued or running any more: join the threads, free. */
void reki__starter_free(reki_registry_t *reg);

/* ----------------------------------------------------------- reaper.c -- */

void reki__reaper_init(reki_registry_t *reg);
void reki__reaper_destroy(reki_registry_t *reg);
/* e just went FREE: queue it (once) and do a bounded step of reaping. */
void reki__reaper_note_free(reki_registry_t *reg, struct reki__entry *e);
/* A key was inserted: a step if the registry is over its budget. */
void reki__reaper_after_insert(reki_registry_t *reg);
/* A bounded step: unlink entries that stayed FREE, while the registry holds
 * more than its budget or they are older than the reaper's epoch. */
size_t reki__reaper_step(reki_registry_t *reg); /* entries taken to reap */

#endif /* REKI_REGISTRY_H */

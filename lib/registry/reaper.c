/*
 * The reaper: unlinks registry entries that stayed FREE, and frees them once
 * no reader can hold them.
 *
 * An entry that goes FREE is queued once (its `queued` flag) on the
 * registry's wait-free queue (liburcu wfcqueue: the releasing thread's
 * enqueue is one exchange), oldest first, with the generation it was freed
 * at.  The queue is the reaper's epoch: an entry reaches the head only after
 * every entry freed before it was looked at.  At the head:
 *   - not FREE (claimed again): dropped from the queue; it is queued again
 *     at its next FREE;
 *   - FREE at another generation (used and freed again while queued): a
 *     second chance, back to the tail with the new generation;
 *   - FREE at the same generation, so it stayed FREE for a whole epoch: it
 *     is reaped if the registry holds more entries than its budget (5/16 of
 *     the map its live actors need, below the 3/8 at which the table grows)
 *     or it has been FREE for REAP_AGE_MS; otherwise the step ends
 *     (everything behind it is younger).
 * Reaping is a CAS FREE(g) -> DEAD under the writer lock, then ck_ht removal:
 * a claimer that read FREE(g) and loses the race sees DEAD, takes the writer
 * lock once (ordering it after the removal) and inserts a fresh entry.  The
 * entry is freed after an RCU grace period (no lookup still reads it) and
 * once no hazard pointer names it (no waiter sleeps on it): entry.c.
 *
 * Who runs it: the thread that frees an entry (the actor's exit path, on a
 * worker or dedicated thread, or a failed start's caller), and the thread
 * that inserts a new key, each for one bounded step (REAP_STEP entries, one
 * writer-lock hold), if no other thread is reaping (trylock).  A registry
 * with start threads (virtual actors) also has them run steps before they
 * sleep, so the FREE entries that a wave of passivations leaves behind are
 * reaped once the wave is over, when no free or insert comes to do it.  So a registry
 * keeps pace with its own churn and costs nothing when idle, and no step
 * scans the table.  A running reki_foreach pins every entry (the reaper
 * waits), and reki_registry_free stops it.
 */
#include <stdlib.h>
#include <time.h>

#include "registry/registry.h"

#define REAP_STEP 16u
#define REAP_AGE_MS 1000u
/* Entries kept whatever the live count: a small registry's keys (and its
 * starts in flight, which count as entries but not as live) keep theirs. */
#define REAP_MIN_BUDGET 256u
#define AGE_STRIDE 64u

static size_t budget(reki_registry_t *reg);

void reki__reaper_init(reki_registry_t *reg)
{
    /* A test knob (docs/testing.md): reap every entry that stayed FREE for
     * one pass of the queue, whatever the budget, so that claims race the
     * reaper all the time. */
    const char *eager = getenv("REKI_DEBUG_REAP");
    reg->reap_eager = eager && *eager && *eager != '0';
    reg->budget_floor = 0;
    reg->budget_floor = budget(reg); /* with no live actor: its least */
    atomic_init(&reg->reaped, 0);
    pthread_mutex_init(&reg->rlock, NULL);
    __cds_wfcq_init(&reg->rq_head, &reg->rq_tail);
}

void reki__reaper_destroy(reki_registry_t *reg)
{
    pthread_mutex_destroy(&reg->rlock);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void enqueue(reki_registry_t *reg, struct reki__entry *e, uint64_t gen)
{
    atomic_store_explicit(&e->qgen, gen, memory_order_relaxed);
    atomic_store_explicit(&e->qtime, 0, memory_order_relaxed); /* stamped at the head */
    cds_wfcq_node_init(&e->rnode);
    cds_wfcq_enqueue(&reg->rq_head, &reg->rq_tail, &e->rnode);
}

/* Queue e if it is FREE and not queued.  seq_cst on both sides: Dekker with
 * give_back's "queued = 0; load word". */
static void queue_if_free(reki_registry_t *reg, struct reki__entry *e)
{
    uint64_t w = atomic_load_explicit(&e->word, memory_order_seq_cst);
    if (reki__word_is_free(w) && !atomic_exchange_explicit(&e->queued, 1, memory_order_seq_cst))
        enqueue(reg, e, w & REKI__E_GEN_MASK);
}

static void give_back(reki_registry_t *reg, struct reki__entry *e)
{
    atomic_store_explicit(&e->queued, 0, memory_order_seq_cst);
    queue_if_free(reg, e);
}

/* Entries the registry may hold, FREE ones included: 5/16 of the map that
 * its live actors alone would need, so FREE entries never make the map grow
 * (it grows at 3/8).  Derived from the live count, not from the current
 * map, which would let a map grown by a burst keep its FREE entries. */
static size_t budget(reki_registry_t *reg)
{
    size_t live = atomic_load_explicit(&reg->count, memory_order_relaxed);
    size_t cap = reg->min_capacity;
    while (cap / 16 * 5 < live)
        cap <<= 1;
    return cap / 16 * 5 > REAP_MIN_BUDGET ? cap / 16 * 5 : REAP_MIN_BUDGET;
}

static bool over_budget(reki_registry_t *reg, size_t pending)
{
    if (reg->reap_eager)
        return true;
    size_t n = atomic_load_explicit(&reg->entries, memory_order_relaxed) - pending;
    /* The budget is never below budget_floor: most calls need not read the
     * live count, whose line every start and exit writes. */
    return n > reg->budget_floor && n > budget(reg);
}

void reki__reaper_note_free(reki_registry_t *reg, struct reki__entry *e)
{
    /* Within budget only age can make an entry reapable: look once every
     * AGE_STRIDE frees on this thread, not at each (a clock read and the
     * queue's head line). */
    static _Thread_local unsigned tick;
    queue_if_free(reg, e);
    /* A full step: there is more to reap.  A registry with start threads
     * hands the rest to one of them (woken only if asleep). */
    if ((over_budget(reg, 0) || (++tick & (AGE_STRIDE - 1)) == 0) &&
        reki__reaper_step(reg) == REAP_STEP && reg->starter)
        reki__starter_kick(reg);
}

void reki__reaper_after_insert(reki_registry_t *reg)
{
    if (over_budget(reg, 0))
        reki__reaper_step(reg);
}

/* Under rlock: CAS each of batch to DEAD and unlink it, or give it back. */
static void reap(reki_registry_t *reg, struct reki__entry **batch, size_t n)
{
    struct reki__entry *kept[REAP_STEP];
    size_t k = 0, nkept = 0;
    pthread_mutex_lock(&reg->wlock);
    bool hold = atomic_load_explicit(&reg->closing, memory_order_seq_cst) ||
                atomic_load_explicit(&reg->iterating, memory_order_seq_cst);
    for (size_t i = 0; i < n; i++) {
        struct reki__entry *e = batch[i];
        uint64_t expect = REKI__E_FREE_BIT | atomic_load_explicit(&e->qgen, memory_order_relaxed);
        /* acq_rel: acquires the last holder's writes; the claimers' CAS on
         * the same word is the other side. */
        if (!hold &&
            atomic_compare_exchange_strong_explicit(&e->word, &expect, REKI__E_DEAD,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            reki__table_remove(reg, e);
            batch[k++] = e;
            atomic_store_explicit(&reg->reaped,
                                  atomic_load_explicit(&reg->reaped, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        } else {
            kept[nkept++] = e;
        }
    }
    pthread_mutex_unlock(&reg->wlock);
    for (size_t i = 0; i < k; i++) {
        reki__entry_changed(batch[i]); /* a caller that saw FREE goes round */
        reki__entry_retire(batch[i]);
    }
    for (size_t i = 0; i < nkept; i++)
        give_back(reg, kept[i]);
}

/* Look at the head; false when the step should end there. */
static bool examine(reki_registry_t *reg, struct reki__entry **batch, size_t *n, uint64_t now)
{
    struct cds_wfcq_node *node = __cds_wfcq_first_nonblocking(&reg->rq_head, &reg->rq_tail);
    if (!node || node == CDS_WFCQ_WOULDBLOCK)
        return false;
    struct reki__entry *e = REKI__CONTAINER_OF(node, struct reki__entry, rnode);
    uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
    uint64_t qgen = atomic_load_explicit(&e->qgen, memory_order_relaxed);
    uint64_t qtime = atomic_load_explicit(&e->qtime, memory_order_relaxed);
    if (qtime == 0) /* its age counts from the first step that sees it at the head */
        atomic_store_explicit(&e->qtime, qtime = now, memory_order_relaxed);
    bool old = now > qtime && now - qtime >= REAP_AGE_MS;
    if (reki__word_is_free(w) && (w & REKI__E_GEN_MASK) == qgen && !over_budget(reg, *n) && !old)
        return false; /* young and within budget: so is everything behind it */
    /* The head can be linked to a successor that an enqueuer has not
     * finished linking: then it is not dequeued (WOULDBLOCK), and must stay
     * as it is until a later step. */
    if (__cds_wfcq_dequeue_nonblocking(&reg->rq_head, &reg->rq_tail) != node)
        return false;
    if (!reki__word_is_free(w) || atomic_load_explicit(&e->waiters, memory_order_seq_cst) > 0)
        give_back(reg, e); /* in use, or callers wait on it: queued again if FREE */
    else if ((w & REKI__E_GEN_MASK) != qgen)
        enqueue(reg, e, w & REKI__E_GEN_MASK); /* used meanwhile: second chance */
    else
        batch[(*n)++] = e;
    return true;
}

size_t reki__reaper_step(reki_registry_t *reg)
{
    /* Inside a read-side section (nested in the caller's, if any):
     * reki_registry_free stores closing, then waits a grace period before it
     * walks the entries, so a step that missed closing is over by then. */
    reki__rcu_read_lock();
    if (atomic_load_explicit(&reg->closing, memory_order_seq_cst) ||
        pthread_mutex_trylock(&reg->rlock) != 0) {
        reki__rcu_read_unlock();
        return 0;
    }
    struct reki__entry *batch[REAP_STEP];
    size_t n = 0;
    uint64_t now = now_ms();
    for (unsigned i = 0; i < REAP_STEP && examine(reg, batch, &n, now); i++)
        ;
    if (n > 0)
        reap(reg, batch, n);
    pthread_mutex_unlock(&reg->rlock);
    reki__rcu_read_unlock();
    return n;
}

/*
 * reki_lookup_or_start: the hit path, the claim, the start and the wait.
 *
 * Hit: exactly reki_lookup's read path; no lock, no read-modify-write.
 *
 * Claim of a key seen before: its entry is FREE(g), and the claim is one
 * CAS FREE(g) -> STARTING on the entry word, made inside the read-side
 * section that found the entry: of all racing callers (and the reaper, whose
 * CAS is FREE(g) -> DEAD), exactly one succeeds.  That CAS is the claim's
 * linearization point.  No lock, no allocation, no table write.
 *
 * Claim of a key with no entry: a fresh STARTING entry is inserted under the
 * writer lock (ck_ht has one writer; the lock is held for the table
 * operation only); of all racing callers exactly one inserts, and the insert
 * is the linearization point.
 *
 * The winner runs start with no lock held, then links the pid (LIVE, under
 * the actor's lock) or releases the entry to FREE with start's error.
 *
 * Wait: any other state (STARTING, EXITING, or a pid whose exit is under way)
 * means "not yet": the caller protects the entry with a hazard pointer, leaves
 * its RCU section and sleeps on the entry's futex until the word changes.
 * STARTING -> pid shares the start's pid; STARTING -> FREE with an error
 * shares the error; EXITING -> FREE (terminate done) sends the caller round
 * again to claim.  DEAD (reaped) sends it round after the unlink.  A caller
 * finding its own thread's STARTING entry gets REKI_EDEADLK.
 */
#include <limits.h>

#include "registry/registry.h"

#define RETRY REKI__E_LOST

struct call {
    reki_registry_t *reg;
    const void *key;
    size_t keylen;
    ck_ht_hash_t h;
    reki_start_fn start;
    void *arg;
    const struct timespec *deadline;
    int timeout_ms;
    reki_pid_t *out;
};

static int run_start(struct call *c, struct reki__entry *e)
{
    reki_pid_t pid = 0;
    unsigned shard;
    int rc = reki__fence_enter(e, &shard);
    if (rc == REKI_OK)
        rc = c->start(c->reg->rt, c->key, c->keylen, c->arg, &pid);
    REKI__YIELD();
    if (rc >= 0)
        rc = reki__entry_link(e, pid);
    reki__fence_leave(e, shard, rc >= 0);
    if (rc < 0) {
        reki__vkey_event(e, 0, REKI_EVENT_START_FAILED, rc);
        /* Waiters share the error; messages queued by key meanwhile go to
         * the registry's drop; the key is free. */
        reki__entry_release(e, rc);
        return rc;
    }
    *c->out = pid;
    return REKI_STARTED;
}

/* No entry under the key: try to claim it. */
static int claim(struct call *c)
{
    reki_registry_t *reg = c->reg;
    struct reki__entry *e = reki__entry_new(reg, c->key, c->keylen, c->h);
    if (!e)
        return REKI_ENOMEM;
    int rc = reki__entry_insert(reg, e);
    if (rc != REKI_OK) {
        reki__free(e); /* never published */
        return rc;
    }
    return run_start(c, e);
}

/* e was seen FREE(g) (w) inside the caller's read-side section, which this
 * function ends.  One CAS decides the claim. */
static int claim_free(struct call *c, struct reki__entry *e, uint64_t w)
{
    int rc = reki__entry_claim(c->reg, e, w, reki__thread_token());
    reki__rcu_read_unlock();
    if (rc != REKI_OK)
        return rc;
    REKI__YIELD();
    return run_start(c, e);
}

/* Sleep until e's word is no longer `seen` (e protected by hp). */
static int wait_change(struct call *c, struct reki__entry *e, uint64_t seen, uint32_t seq)
{
    /* The result is decided by the load that ends the loop: an entry lives
     * through many starts and exits, so the word may change and come back
     * to `seen` (a new STARTING, a new EXITING) before a second load. */
    while (atomic_load_explicit(&e->word, memory_order_acquire) == seen) {
        if (c->timeout_ms == 0)
            return REKI_ETIMEDOUT;
        if (reki__futex_wait(&e->seq, seq, c->deadline) == REKI_ETIMEDOUT &&
            atomic_load_explicit(&e->word, memory_order_acquire) == seen)
            return REKI_ETIMEDOUT;
        seq = atomic_load_explicit(&e->seq, memory_order_acquire);
    }
    return REKI_OK;
}

/* e was seen in state `w` inside the caller's read-side section, which this
 * function ends.  Wait for it to change; RETRY, or a final result. */
static int wait_entry(struct call *c, struct reki__entry *e, uint64_t w)
{
    reki_rt_t *rt = c->reg->rt;
    ck_hp_record_t *hp = reki__hp_record(rt);
    if (!hp) {
        reki__rcu_read_unlock();
        return REKI_ENOMEM;
    }
    /* Protected before the read-side section ends: the reaper's scan comes
     * after a grace period that includes this section, so it sees the
     * hazard pointer (ck_hp_set_fence orders it before our later reads). */
    ck_hp_set_fence(hp, 0, e);
    atomic_fetch_add_explicit(&e->waiters, 1, memory_order_seq_cst);
    uint32_t seq = atomic_load_explicit(&e->seq, memory_order_seq_cst);
    reki__rcu_read_unlock();

    int rc = wait_change(c, e, w, seq);
    uint64_t now = atomic_load_explicit(&e->word, memory_order_acquire);
    int outcome = atomic_load_explicit(&e->outcome, memory_order_relaxed);
    /* release: e's last use by this thread; the reaper acquires it. */
    atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_release);
    ck_hp_clear(hp);

    if (rc != REKI_OK)
        return rc;
    /* The start we waited on failed: share its error.  The entry may have
     * been reaped since (DEAD keeps the outcome of its last release). */
    if (w == REKI__E_STARTING && (reki__word_is_free(now) || now == REKI__E_DEAD) && outcome < 0)
        return outcome;
    if (reki__word_is_pid(now) && reki__pid_alive(&rt->pids, now)) {
        *c->out = now;
        return REKI_OK;
    }
    return RETRY;
}

static int attempt(struct call *c)
{
    reki_registry_t *reg = c->reg;
    reki__rcu_read_lock();
    uint64_t w;
    struct reki__entry *e = reki__table_get(reg, c->h, c->key, c->keylen, &w);
    if (!e) {
        reki__rcu_read_unlock();
        return claim(c);
    }
    if (reki__word_is_pid(w) && reki__pid_alive(&reg->rt->pids, w)) {
        reki__rcu_read_unlock();
        *c->out = w;
        return REKI_OK;
    }
    if (reki__word_is_free(w))
        return claim_free(c, e, w);
    if (w == REKI__E_STARTING &&
        atomic_load_explicit(&e->owner, memory_order_relaxed) == reki__thread_token()) {
        reki__rcu_read_unlock();
        return REKI_EDEADLK;
    }
    /* The key's actor is exiting and this thread runs its callbacks (its
     * handle after reki_stop of its own key, its terminate, its drop): the
     * key frees only when this thread returns, so waiting would hang. */
    reki_pid_t self = reki__tls_current();
    if (self != 0 && (w == REKI__E_EXITING || reki__word_is_pid(w)) &&
        atomic_load_explicit(&e->linked, memory_order_relaxed) == self) {
        reki__rcu_read_unlock();
        return REKI_EDEADLK;
    }
    if (w == REKI__E_DEAD) {
        reki__rcu_read_unlock();
        reki__entry_after_reap(reg);
        return RETRY;
    }
    return wait_entry(c, e, w);
}

int reki_lookup_or_start(reki_registry_t *reg, const void *key, size_t keylen, reki_start_fn start,
                         void *arg, int timeout_ms, reki_pid_t *out)
{
    if (REKI__UNLIKELY(!reg || !key || keylen < 1 || keylen > REKI_KEY_MAX || !start || !out ||
                       timeout_ms < -1))
        return REKI_EINVAL;
    struct call c = {reg, key, keylen, {0}, start, arg, NULL, timeout_ms, out};
    reki__table_hash(reg, key, keylen, &c.h);

    /* The hit, and the claim of a FREE entry, from one probe. */
    uint64_t w = 0;
    reki__rcu_read_lock();
    struct reki__entry *e = reki__table_get(reg, c.h, key, keylen, &w);
    if (REKI__LIKELY(reki__word_is_pid(w))) {
        reki__rcu_read_unlock();
        *out = w;
        return REKI_OK;
    }
    if (e && reki__word_is_free(w)) {
        int rc = claim_free(&c, e, w); /* ends the read-side section */
        if (rc != RETRY)
            return rc;
    } else {
        reki__rcu_read_unlock();
    }

    struct timespec ts;
    c.deadline = reki__deadline(&ts, timeout_ms) ? &ts : NULL;
    int rc;
    while ((rc = attempt(&c)) == RETRY)
        ;
    return rc;
}

/*
 * Bug: the reaper ignores CDS_WFCQ_WOULDBLOCK from its dequeue.
 *
 * lib/registry/reaper.c examine() peeks the head of the reaper queue with
 * __cds_wfcq_first_nonblocking, decides, then calls
 * __cds_wfcq_dequeue_nonblocking and ignores its result.  When the head is
 * the only linked node and another thread is half-way through
 * cds_wfcq_enqueue (it has exchanged the tail but not yet stored
 * old_tail->next: a releaser preempted inside reki__reaper_note_free), the
 * dequeue returns CDS_WFCQ_WOULDBLOCK and leaves the node in the queue.
 * examine() then treats the entry as dequeued anyway:
 *   - in use: give_back() clears `queued` while the node is still queued, so
 *     the entry's next FREE enqueues it a second time (node_init + append of
 *     a node that is in the list): the stalled enqueuer's node is lost, or
 *     the list becomes a cycle;
 *   - FREE at a new generation: enqueue() re-appends it while still queued
 *     (the same corruption);
 *   - reapable: it goes into the batch (up to 16 times, once per examine),
 *     is unlinked and retired while still on the queue: use after free once
 *     ck_hp frees it.
 *
 * The test is white-box (lib/registry/registry.h): it plays the stalled enqueuer by
 * doing the first half of cds_wfcq_enqueue by hand (tail exchange, no link),
 * which is exactly the state a releaser preempted between the two stores
 * leaves.  Expected: the stalled node, once its enqueue completes, is on the
 * queue.  Actual: the in-use head was "given back" while still queued, got
 * queued again at its next FREE, and the stalled node is unreachable (in a
 * real run: an entry with queued = 1 that the reaper never sees again, and a
 * store into a retired entry).
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "registry/registry.h"

#include "idle_actor.h"

static atomic_int downs;

static void down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    atomic_fetch_add(&downs, 1);
}

/* Stop key "a" and wait until its exit path (entry release included: links
 * run before monitors) has returned. */
static void stop_and_wait(reki_rt_t *rt, reki_registry_t *reg, reki_pid_t pid)
{
    int before = atomic_load(&downs);
    cr_assert_eq(reki_monitor(rt, pid, down, NULL), REKI_OK);
    cr_assert_eq(reki_stop(reg, "a", 1), REKI_OK);
    while (atomic_load(&downs) == before)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

static bool reachable(reki_registry_t *reg, struct cds_wfcq_node *n)
{
    for (struct cds_wfcq_node *p = reg->rq_head.node.next; p; p = p->next)
        if (p == n)
            return true;
    return false;
}

Test(regress, reaper_dequeue_wouldblock_loses_node, .timeout = 30.0)
{
    setenv("REKI_DEBUG_REAP", "1", 1);
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_pid_t pid;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, idle_start, NULL, -1, &pid), REKI_STARTED);
    struct reki__entry *e = REKI__CONTAINER_OF(reg->all.next, struct reki__entry, all);

    /* No reaper step runs while we hold its lock (trylock). */
    pthread_mutex_lock(&reg->rlock);
    stop_and_wait(rt, reg, pid); /* e FREE, queued: the only node */
    cr_assert(reki__word_is_free(atomic_load(&e->word)));
    cr_assert_eq(reg->rq_head.node.next, &e->rnode);
    /* Claimed again: e is in use while it sits at the head. */
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, idle_start, NULL, -1, &pid), REKI_STARTED);

    /* Another releaser, half-way through cds_wfcq_enqueue: tail exchanged,
     * old tail's next not yet stored. */
    struct cds_wfcq_node stalled = {.next = NULL};
    struct cds_wfcq_node *old = __atomic_exchange_n(&reg->rq_tail.p, &stalled, __ATOMIC_SEQ_CST);
    cr_assert_eq(old, &e->rnode);
    pthread_mutex_unlock(&reg->rlock);

    reki__reaper_step(reg); /* head in use: dequeue would block */
    bool still_head = reg->rq_head.node.next == &e->rnode;
    uint8_t queued = atomic_load(&e->queued);

    /* e goes FREE again: released by its actor's exit path. */
    pthread_mutex_lock(&reg->rlock);
    stop_and_wait(rt, reg, pid);
    pthread_mutex_unlock(&reg->rlock);
    reki__reaper_step(reg);

    /* The stalled enqueuer resumes: its second store. */
    __atomic_store_n(&old->next, &stalled, __ATOMIC_RELEASE);
    bool found = reachable(reg, &stalled);

    /* Take our stack node off before anything else walks the queue. */
    reg->rq_head.node.next = NULL;
    reg->rq_tail.p = &reg->rq_head.node;
    reki_registry_free(reg);
    reki_rt_free(rt);

    cr_assert(found && !(still_head && queued == 0),
              "reaper step with an enqueue in flight: entry still at the head with queued=%d "
              "(still_head=%d); node enqueued concurrently reachable afterwards: %d "
              "(the entry was enqueued twice)",
              queued, still_head, found);
}

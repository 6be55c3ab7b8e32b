/*
 * The RCU flavour: liburcu "bulletproof" (urcu-bp).  It registers reader
 * threads on first use and unregisters them at thread exit, so a library
 * embedded in someone else's server can be called from threads it has never
 * seen, with no registration call in the API.  Its read-side lock is a
 * thread-local counter update (plus a compiler barrier when the kernel has
 * membarrier): no store to shared memory, no atomic read-modify-write.
 *
 * What RCU protects here: the ck_ht maps (old maps are freed after a grace
 * period when the table grows), registry entries (freed after removal), and
 * procs (an actor's memory and its pid slot outlive every sender or lookup
 * that resolved the pid before the actor died).
 *
 * ThreadSanitizer cannot see the grace period inside the uninstrumented
 * liburcu, so in TSan builds every read-side unlock releases, and every
 * reclaimer acquires, one shared sync object: the happens-before edge that the
 * grace period really provides.  Callbacks release it too when they end, and
 * reki_rt_free acquires it after rcu_barrier: the barrier's edge.
 */
#include "core/core.h"

#if defined(REKI_TSAN)
#include <sanitizer/tsan_interface.h>
static char rcu_hb;
#define HB_RELEASE() __tsan_release(&rcu_hb)
#define HB_ACQUIRE() __tsan_acquire(&rcu_hb)
#else
#define HB_RELEASE() ((void)0)
#define HB_ACQUIRE() ((void)0)
#endif

#if defined(REKI_TSAN)
/* Out of line only here; elsewhere the header inlines urcu-bp's fast path. */
void reki__rcu_read_lock(void)
{
    urcu_bp_read_lock();
}

void reki__rcu_read_unlock(void)
{
    HB_RELEASE();
    urcu_bp_read_unlock();
}
#endif

void reki__rcu_reclaim_acquire(void)
{
    HB_ACQUIRE();
}

void reki__rcu_callback_done(void)
{
    HB_RELEASE();
}

void reki__call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
    HB_RELEASE(); /* the retiring thread's last accesses precede the callback */
    urcu_bp_call_rcu(head, fn);
}

void reki__rcu_barrier(void)
{
    urcu_bp_barrier();
    HB_ACQUIRE();
}

void reki__rcu_synchronize(void)
{
    urcu_bp_synchronize_rcu();
    HB_ACQUIRE();
}

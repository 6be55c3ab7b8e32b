/*
 * Small synchronization primitives: a one-byte spinlock made of a C11 atomic
 * (visible to ThreadSanitizer), and futex waits with absolute deadlines on
 * CLOCK_MONOTONIC so that a waiter's timeout is immune to wall-clock jumps.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/core.h"

#ifdef REKI_TSAN
_Thread_local _Atomic int reki__fence_word;
#endif

void reki__spin_lock(reki__spin_t *l)
{
    for (unsigned spins = 0;; spins++) {
        /* acquire: pairs with the release in reki__spin_unlock. */
        if (!atomic_exchange_explicit(&l->held, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
            /* The holder may be preempted (more threads than cores): yield
             * rather than burn the rest of our time slice. */
            if (++spins > 64)
                sched_yield();
            else
                REKI__CPU_RELAX();
        }
    }
}

void reki__spin_unlock(reki__spin_t *l)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
}

bool reki__deadline(struct timespec *ts, int timeout_ms)
{
    if (timeout_ms < 0)
        return false;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    return true;
}

int reki__futex_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
    long rc = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE, val, deadline, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == -1 && errno == ETIMEDOUT)
        return REKI_ETIMEDOUT;
    return REKI_OK;
}

void reki__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

int reki__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return REKI_ENOMEM;
    /* Timed waits use reki__deadline's CLOCK_MONOTONIC. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc == 0 ? REKI_OK : REKI_ENOMEM;
}

void reki__eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
}

void reki__eventfd_clear(int fd)
{
    uint64_t v;
    ssize_t n;
    do
        n = read(fd, &v, sizeof(v));
    while (n < 0 && errno == EINTR);
}

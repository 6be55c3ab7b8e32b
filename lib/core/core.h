/*
 * The core layer (lib/core): allocation, synchronisation, RCU, lists.  Every
 * other layer builds on it; it needs nothing from them.  Nothing here is
 * installed.  Non-static internal symbols carry the reki__ prefix.
 *
 * Memory-ordering conventions: every atomic names its order; "pairs with"
 * comments name the other side.  liburcu and ck are called out of line under
 * ThreadSanitizer (REKI_TSAN), whose view of them is empty, so every object we
 * hand across threads through them is also published by a C11 release store
 * that the receiving side acquire-loads first.
 */
#ifndef REKI_CORE_H
#define REKI_CORE_H

/* ThreadSanitizer from the compiler itself, also when a project builds reki
 * with -fsanitize=thread in its own CFLAGS rather than through
 * REKI_SANITIZE: gcc defines __SANITIZE_THREAD__, clang has the feature. */
#if !defined(REKI_TSAN)
#if defined(__SANITIZE_THREAD__)
#define REKI_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REKI_TSAN 1
#endif
#endif
#endif
/* liburcu's inline fast paths use volatile accesses that TSan misreads: out
 * of line under TSan (REKI_SANITIZE builds never define it). */
#if defined(REKI_TSAN) && defined(_LGPL_SOURCE)
#undef _LGPL_SOURCE
#endif

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <urcu-bp.h>
#include <urcu/wfcqueue.h>

#include "reki/reki.h"

#define REKI__CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#if defined(__GNUC__)
#define REKI__LIKELY(x) __builtin_expect(!!(x), 1)
#define REKI__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define REKI__LIKELY(x) (x)
#define REKI__UNLIKELY(x) (x)
#endif

#if defined(__x86_64__) || defined(__i386__)
#define REKI__CPU_RELAX() __builtin_ia32_pause()
#else
#define REKI__CPU_RELAX() atomic_signal_fence(memory_order_seq_cst)
#endif

/* A full fence.  gcc's ThreadSanitizer rejects atomic_thread_fence; there a
 * seq_cst read-modify-write (a locked instruction on x86, so as strong for
 * the hardware) stands in for it. */
#ifdef REKI_TSAN
/* Thread-local, so that it orders like a fence without adding a
 * happens-before edge between threads that would hide races from TSan. */
extern _Thread_local _Atomic int reki__fence_word;
#define REKI__FENCE() ((void)atomic_fetch_add_explicit(&reki__fence_word, 0, memory_order_seq_cst))
#else
#define REKI__FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif

/* ------------------------------------------------------------ alloc.c -- */

void *reki__malloc(size_t size);
void *reki__calloc(size_t n, size_t size);
void *reki__aligned_alloc(size_t align, size_t size);
void reki__free(void *p);
/* An allocation point that is not malloc (a file descriptor): false when
 * fault injection fails it. */
bool reki__alloc_ok(void);
/* Zeroed pages straight from the kernel (large, short-lived blocks); NULL on
 * failure.  reki__unmap_pages gives them back. */
void *reki__map_pages(size_t size);
void reki__unmap_pages(void *p, size_t size);
/* pthread_create with fault injection; returns 0 or REKI_EAGAIN. */
int reki__thread_create(pthread_t *tid, void *(*fn)(void *), void *arg);

#ifdef REKI_DEBUG_YIELD
void reki__debug_yield(void);
#define REKI__YIELD() reki__debug_yield()
#else
#define REKI__YIELD() ((void)0)
#endif

/* ------------------------------------------------------------ sync.c -- */

/* A test-and-test-and-set lock made of a C11 atomic, so that ThreadSanitizer
 * sees its acquire/release (ck_spinlock's inline assembly is invisible to it),
 * and one byte instead of a 40-byte pthread mutex in every actor. Held only
 * for a handful of stores: never across user code or a system call. */
typedef struct reki__spin {
    _Atomic unsigned char held;
} reki__spin_t;

void reki__spin_lock(reki__spin_t *l);
void reki__spin_unlock(reki__spin_t *l);

/* Absolute CLOCK_MONOTONIC deadline timeout_ms from now; false for -1 (none). */
bool reki__deadline(struct timespec *ts, int timeout_ms);
/* Sleep while *addr == val, until woken or the deadline (NULL: none).
 * Returns 0 (woken, changed, or spurious) or REKI_ETIMEDOUT. */
int reki__futex_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *deadline);
void reki__futex_wake(_Atomic uint32_t *addr, int n);
/* A condition variable whose timed waits take reki__deadline's clock. */
int reki__cond_init(pthread_cond_t *cv);
/* Add 1 to an eventfd (non-blocking; a full counter is readable anyway). */
void reki__eventfd_signal(int fd);
/* Read an eventfd's counter to zero (non-blocking). */
void reki__eventfd_clear(int fd);

/* ------------------------------------------------------------- rcu.c -- */

/* urcu-bp: registration is automatic, so threads we have never seen (the
 * host's) can read.  Under TSan, the grace period is made visible with
 * annotations: each read-side unlock releases, each reclaimer acquires. */
#ifdef REKI_TSAN
void reki__rcu_read_lock(void);
void reki__rcu_read_unlock(void);
#else
static inline void reki__rcu_read_lock(void)
{
    urcu_bp_read_lock();
}
static inline void reki__rcu_read_unlock(void)
{
    urcu_bp_read_unlock();
}
#endif
void reki__rcu_reclaim_acquire(void);
/* Last call of every RCU callback (TSan: rcu_barrier's happens-before). */
void reki__rcu_callback_done(void);
void reki__call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *));
void reki__rcu_barrier(void);
/* Wait for a grace period (not inside a read-side section). */
void reki__rcu_synchronize(void);

/* ------------------------------------------------------------ list.c -- */

/* A circular doubly linked list; the caller locks. */
struct reki__list {
    struct reki__list *next, *prev;
};

void reki__list_init(struct reki__list *l);
void reki__list_add(struct reki__list *head, struct reki__list *n);
void reki__list_del(struct reki__list *n);

#endif /* REKI_CORE_H */

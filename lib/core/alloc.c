/*
 * Allocation and thread creation, in one place so that fault injection
 * (REKI_FAULT_INJECTION) can fail the Nth of them, and the debug-yield hook
 * (REKI_DEBUG_YIELD) that widens race windows in test builds.
 */
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/core.h"
#include "core/fault.h"

#ifdef REKI_FAULT_INJECTION
/* Countdowns: 0 = off; n > 0 = the nth call from now fails.  Process-wide and
 * atomic because the calls under test may allocate on several threads. */
static _Atomic long alloc_fail_at, alloc_count;
static _Atomic long thread_fail_at, thread_count;

void reki__fault_alloc_fail_at(long n)
{
    atomic_store_explicit(&alloc_count, 0, memory_order_relaxed);
    atomic_store_explicit(&alloc_fail_at, n, memory_order_relaxed);
}

long reki__fault_alloc_count(void)
{
    return atomic_load_explicit(&alloc_count, memory_order_relaxed);
}

void reki__fault_thread_fail_at(long n)
{
    atomic_store_explicit(&thread_count, 0, memory_order_relaxed);
    atomic_store_explicit(&thread_fail_at, n, memory_order_relaxed);
}

long reki__fault_thread_count(void)
{
    return atomic_load_explicit(&thread_count, memory_order_relaxed);
}

static bool should_fail(_Atomic long *count, _Atomic long *fail_at)
{
    long n = atomic_fetch_add_explicit(count, 1, memory_order_relaxed) + 1;
    long at = atomic_load_explicit(fail_at, memory_order_relaxed);
    if (at > 0 && n == at) {
        atomic_store_explicit(fail_at, 0, memory_order_relaxed);
        return true;
    }
    return false;
}
#define ALLOC_FAILS() should_fail(&alloc_count, &alloc_fail_at)
#define THREAD_FAILS() should_fail(&thread_count, &thread_fail_at)
#else
#define ALLOC_FAILS() false
#define THREAD_FAILS() false
#endif

void *reki__malloc(size_t size)
{
    if (ALLOC_FAILS())
        return NULL;
    return malloc(size);
}

bool reki__alloc_ok(void)
{
    return !ALLOC_FAILS();
}

void *reki__map_pages(size_t size)
{
    if (ALLOC_FAILS())
        return NULL;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

void reki__unmap_pages(void *p, size_t size)
{
    munmap(p, size);
}

void *reki__calloc(size_t n, size_t size)
{
    if (ALLOC_FAILS())
        return NULL;
    return calloc(n, size);
}

void *reki__aligned_alloc(size_t align, size_t size)
{
    if (ALLOC_FAILS())
        return NULL;
    size = (size + align - 1) / align * align; /* C11: size a multiple of align */
    return aligned_alloc(align, size);
}

void reki__free(void *p)
{
    free(p);
}

int reki__thread_create(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    if (THREAD_FAILS())
        return REKI_EAGAIN;
    return pthread_create(tid, NULL, fn, arg) == 0 ? REKI_OK : REKI_EAGAIN;
}

#ifdef REKI_DEBUG_YIELD
void reki__debug_yield(void)
{
    /* xorshift per thread: cheap, and no shared state to serialize on. */
    static _Thread_local uint64_t x;
    if (x == 0)
        x = (uint64_t)(uintptr_t)&x | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if ((x & 3) == 0)
        sched_yield();
}
#endif

/*
 * Test hooks for fault injection.  Compiled into the library only with the
 * CMake option REKI_FAULT_INJECTION=ON (which defines REKI_FAULT_INJECTION);
 * without it these functions do not exist.  Not installed, not public API.
 *
 * The countdowns are process-wide and atomic: "the Nth allocation" counts the
 * library's own allocations on every thread.
 */
#ifndef REKI_FAULT_H
#define REKI_FAULT_H

#include "reki/reki.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make the nth library allocation from now fail (1 = the next one), once.
 * 0 turns injection off.  Also resets the counter read by reki__fault_alloc_count. */
REKI_API void reki__fault_alloc_fail_at(long n);
/* Allocations the library attempted since the last reki__fault_alloc_fail_at. */
REKI_API long reki__fault_alloc_count(void);
/* Same pair for pthread_create (worker and dedicated-actor threads). */
REKI_API void reki__fault_thread_fail_at(long n);
REKI_API long reki__fault_thread_count(void);

#ifdef __cplusplus
}
#endif

#endif /* REKI_FAULT_H */

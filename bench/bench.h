/*
 * reki-bench: shared declarations of the harness, the key sets, the
 * implementations (reki and the baselines) and the workloads.
 *
 * Every implementation answers the same three registry calls through one
 * small table of function pointers, so each workload runs the same loop, the
 * same keys and the same start function against all of them; only the table
 * behind the pointers changes.  The indirect call costs every implementation
 * the same few instructions; the instruction-count mode subtracts it.
 */
#ifndef REKI_BENCH_H
#define REKI_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reki/reki.h"

/* ------------------------------------------------------------------ keys -- */

/* One key in a fixed 16-byte slot, so a key set is a dense array. */
typedef struct bench_key {
    char bytes[15];
    uint8_t len;
} bench_key_t;

typedef struct bench_keyset {
    bench_key_t *keys;
    size_t n;
} bench_keyset_t;

/* The n keys "<prefix>%06zu" style, 10 bytes each for a 4-byte prefix.
 * Returns 0 or REKI_ENOMEM. */
int bench_keyset_make(bench_keyset_t *ks, const char *prefix, size_t first, size_t n);
void bench_keyset_free(bench_keyset_t *ks);

static inline uint64_t bench_xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A uniformly random key of ks (multiply-shift instead of a division). */
static inline const bench_key_t *bench_pick(const bench_keyset_t *ks, uint64_t *s)
{
    uint64_t r = bench_xorshift(s) >> 32;
    return &ks->keys[(r * ks->n) >> 32];
}

uint64_t bench_seed(unsigned thread_index);

/* The hash of the hand-written tables (mutex, rwlock, cds_lfht): 64-bit
 * FNV-1a, what such code usually carries, with murmur3's final mix: FNV's low
 * bits barely differ between keys that differ in their last bytes, and these
 * tables index buckets by the low bits (cds_lfht, whose split-ordered list
 * then grows without end on long chains, most of all).  ck_ht uses its own
 * ck_ht_hash. */
static inline uint64_t bench_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* -------------------------------------------------------- actors started -- */

/* The start function every implementation uses: spawns one idle light actor.
 * Counts nothing and allocates nothing of the bench's own. */
int bench_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out);

/* ------------------------------------------------------- implementations -- */

#define BENCH_CAP_LOOKUP 0x1u /* lookup (and lookup_or_start of registered keys) */
#define BENCH_CAP_STOP 0x2u   /* stop: remove the key and end its actor */
#define BENCH_CAP_START 0x4u  /* lookup_or_start of keys it does not hold */

typedef struct bench_impl {
    const char *name;
    const char *what;
    unsigned caps;
    /* A fresh empty table for about capacity keys; 0 or a REKI_E* code. */
    int (*create)(reki_rt_t *rt, size_t capacity, void **out);
    /* Frees the table and ends every actor it started. */
    void (*destroy)(void *t);
    /* 0 and *out, or REKI_ENOTFOUND. */
    int (*lookup)(void *t, const void *key, size_t len, reki_pid_t *out);
    /* REKI_OK (found), REKI_STARTED (ran bench_start), or a negative code. */
    int (*lookup_or_start)(void *t, const void *key, size_t len, reki_pid_t *out);
    /* 0 or REKI_ENOTFOUND; NULL without BENCH_CAP_STOP. */
    int (*stop)(void *t, const void *key, size_t len);
    /* Optional per-thread set-up and tear-down (RCU registration). */
    void (*thread_enter)(void);
    void (*thread_leave)(void);
} bench_impl_t;

extern const bench_impl_t bench_impl_reki;
extern const bench_impl_t bench_impl_mutex;
extern const bench_impl_t bench_impl_rwlock;
extern const bench_impl_t bench_impl_serial;
extern const bench_impl_t bench_impl_ck_ht;
extern const bench_impl_t bench_impl_cds_lfht;
extern const bench_impl_t bench_impl_floor;

/* All implementations, reki first; NULL-terminated. */
extern const bench_impl_t *const bench_impls[];

/* ------------------------------------------------------------- harness -- */

typedef struct bench_run bench_run_t;

/* What one thread of one round sees.  Padded: threads write only their own. */
typedef struct bench_thread {
    bench_run_t *run;
    unsigned index;
    unsigned nthreads;
    uint64_t seed;
    /* out */
    uint64_t ops;
    uint64_t errors;
    uint64_t sink;
    bool budget_hit;
    double t_end;
    char pad[64];
} bench_thread_t;

/* One round: n threads each run fn(th, arg) from a common start until
 * bench_should_stop says so.  The elapsed time ends when the last thread
 * returns, so work a thread finishes after the deadline (draining a mailbox)
 * counts. */
struct bench_run {
    atomic_bool stop;
    atomic_uint ready;
    atomic_bool go;
    atomic_uint finished;
    double t_start;
    void *arg;
    uint64_t (*fn)(bench_thread_t *th, void *arg);
    void (*thread_enter)(void);
    void (*thread_leave)(void);
};

typedef struct bench_round {
    uint64_t ops;
    uint64_t errors;
    double elapsed;
    bool budget_hit;
} bench_round_t;

static inline bool bench_should_stop(const bench_thread_t *th)
{
    /* relaxed: the flag only ends the loop; the join orders the results. */
    return atomic_load_explicit(&th->run->stop, memory_order_relaxed);
}

double bench_now(void);
/* Runs one round; returns 0 or an errno from pthread_create. */
int bench_round_run(bench_run_t *run, unsigned nthreads, double seconds, bench_round_t *out);

/* ------------------------------------------------------------- workloads -- */

#define BENCH_W_SHARED 0x1u  /* read-only: one table serves every round */
#define BENCH_W_PREFILL 0x2u /* the key set is registered before timing */
#define BENCH_W_NEWKEYS 0x4u /* consumes keys of the per-round budget */
#define BENCH_W_SEND 0x8u    /* message passing, not the registry */
#define BENCH_W_MANY 0x10u   /* send: every thread to one receiver */

typedef struct bench_wctx {
    const bench_impl_t *impl;
    void *table;
    reki_rt_t *rt;
    const bench_keyset_t *keys;  /* the registered key set */
    const bench_keyset_t *miss;  /* keys never registered */
    const bench_keyset_t *fresh; /* the new-key budget, split among threads */
    void *send;                  /* per-round state of a send workload */
} bench_wctx_t;

typedef struct bench_workload {
    const char *name;
    const char *what;
    unsigned caps;                                 /* implementation capabilities needed */
    unsigned flags;                                /* BENCH_W_* */
    uint64_t (*fn)(bench_thread_t *th, void *arg); /* arg: bench_wctx_t */
} bench_workload_t;

extern const bench_workload_t *const bench_workloads[];

/* ------------------------------------------------------------------ send -- */

/* Send workloads have implementations of their own (a reki light actor, a
 * hand-written mutex+condvar mailbox on a thread). */
typedef struct bench_send_impl {
    const char *name;
    const char *what;
    /* Per-round receivers for nthreads senders; many_to_one: one receiver. */
    int (*open)(reki_rt_t *rt, unsigned nthreads, bool many_to_one, void **out);
    void (*close)(void *s);
    uint64_t (*fn)(bench_thread_t *th, void *arg); /* arg: bench_wctx_t */
} bench_send_impl_t;

extern const bench_send_impl_t bench_send_reki;
extern const bench_send_impl_t bench_send_mutex;
extern const bench_send_impl_t *const bench_send_impls[];

#endif /* REKI_BENCH_H */

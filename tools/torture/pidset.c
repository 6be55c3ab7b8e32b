/*
 * The set of exited pids: a fixed open-addressing table of (pid, stamp)
 * slots, claimed by compare-and-swap on the pid word and never removed except
 * by pidset_clear at a quiescent point.  Linear probing from a mixed hash.
 *
 * A stamp comes from the global clock after the exit was observed, so
 * "stamp < clock read before the operation began" means the exit happened
 * before the operation began.  A slot whose pid is visible but whose stamp is
 * still 0 is an add in progress: readers treat it as absent (a missed
 * detection, never a false one).  When the table is half full further adds
 * are dropped and counted, and the coordinator clears it at its next
 * quiescent point.
 */
#include <stdlib.h>

#include "torture.h"

struct slot {
    atomic_ullong pid;
    atomic_ullong stamp;
};

struct pidset {
    struct slot *slots;
    size_t mask;
    atomic_size_t used;
    atomic_ullong dropped;
    atomic_ullong generation;
};

/* Starts at 1: stamp 0 means "none". */
static atomic_ullong t_clock = 1;

uint64_t t_clock_now(void)
{
    /* seq_cst pairs with the seq_cst fetch_add in pidset_add: a stamp below
     * the value read here was taken before this load. */
    return atomic_load(&t_clock);
}

struct pidset *pidset_new(unsigned log2_slots)
{
    struct pidset *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->slots = calloc((size_t)1 << log2_slots, sizeof(*s->slots));
    if (s->slots == NULL) {
        free(s);
        return NULL;
    }
    s->mask = ((size_t)1 << log2_slots) - 1;
    return s;
}

void pidset_free(struct pidset *s)
{
    if (s == NULL)
        return;
    free(s->slots);
    free(s);
}

static size_t hash_pid(reki_pid_t pid)
{
    uint64_t x = pid;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

void pidset_add(struct pidset *s, reki_pid_t pid)
{
    if (pid == 0)
        return;
    if (atomic_load_explicit(&s->used, memory_order_relaxed) > (s->mask + 1) / 2) {
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        return;
    }
    for (size_t i = hash_pid(pid), n = 0; n <= s->mask; i++, n++) {
        struct slot *sl = &s->slots[i & s->mask];
        unsigned long long cur = atomic_load_explicit(&sl->pid, memory_order_acquire);
        if (cur == pid)
            return;
        if (cur == 0) {
            unsigned long long zero = 0;
            if (!atomic_compare_exchange_strong_explicit(&sl->pid, &zero, pid, memory_order_acq_rel,
                                                         memory_order_acquire)) {
                if (zero == pid)
                    return;
                continue;
            }
            atomic_fetch_add_explicit(&s->used, 1, memory_order_relaxed);
            /* seq_cst: ordered after the exit this thread observed, and
             * paired with t_clock_now's load. */
            uint64_t stamp = atomic_fetch_add(&t_clock, 1);
            /* release pairs with the acquire in pidset_stamp */
            atomic_store_explicit(&sl->stamp, stamp, memory_order_release);
            return;
        }
    }
    atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
}

uint64_t pidset_stamp(struct pidset *s, reki_pid_t pid)
{
    if (pid == 0)
        return 0;
    for (size_t i = hash_pid(pid), n = 0; n <= s->mask; i++, n++) {
        struct slot *sl = &s->slots[i & s->mask];
        unsigned long long cur = atomic_load_explicit(&sl->pid, memory_order_acquire);
        if (cur == 0)
            return 0;
        if (cur == pid)
            return atomic_load_explicit(&sl->stamp, memory_order_acquire);
    }
    return 0;
}

bool pidset_contains(struct pidset *s, reki_pid_t pid)
{
    if (pid == 0)
        return false;
    for (size_t i = hash_pid(pid), n = 0; n <= s->mask; i++, n++) {
        unsigned long long cur =
            atomic_load_explicit(&s->slots[i & s->mask].pid, memory_order_acquire);
        if (cur == 0)
            return false;
        if (cur == pid)
            return true;
    }
    return false;
}

unsigned pidset_fill(struct pidset *s)
{
    return (unsigned)(atomic_load_explicit(&s->used, memory_order_relaxed) * 100 / (s->mask + 1));
}

void pidset_clear(struct pidset *s)
{
    /* The generation changes first so that a down function racing with the
     * clear (it may run on a worker at any time) knows not to trust a miss. */
    atomic_fetch_add(&s->generation, 1);
    for (size_t i = 0; i <= s->mask; i++) {
        atomic_store_explicit(&s->slots[i].stamp, 0, memory_order_relaxed);
        atomic_store_explicit(&s->slots[i].pid, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&s->used, 0, memory_order_relaxed);
    atomic_fetch_add(&s->generation, 1);
}

uint64_t pidset_generation(struct pidset *s)
{
    return atomic_load(&s->generation);
}

uint64_t pidset_dropped(struct pidset *s)
{
    return atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

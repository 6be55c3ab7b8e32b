/*
 * The timing wheel itself (lib/core/wheel.h), driven by a synthetic clock: every
 * node comes due in the advance whose range holds its expiry, never earlier
 * and never later, across cascades of every level; ids' generations move on;
 * a node whose generation would wrap is retired.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "runtime/runtime.h"
#include "core/wheel.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Arms n timers at random delays below max_delay (some in the past), then
 * advances in random steps; checks each due node's expiry lies in the step. */
static void run(long n, uint64_t max_delay, uint64_t max_step)
{
    struct reki__wheel w;
    cr_assert_eq(reki__wheel_init(&w, 1000), REKI_OK);
    uint64_t *want = calloc((size_t)n + REKI__WHEEL_FIRST, sizeof(*want));
    cr_assert(want);
    for (long i = 0; i < n; i++) {
        uint32_t idx = reki__wheel_alloc(&w);
        cr_assert_neq(idx, 0);
        uint64_t at = 1000 + next_rand() % max_delay;
        if (i % 97 == 0)
            at = 500; /* in the past: due at the next tick processed */
        reki__wheel_node(&w, idx)->msg = (void *)(uintptr_t)1;
        reki__wheel_add(&w, idx, at);
        want[idx] = at < 1000 ? 1000 : at;
    }
    cr_assert_eq(w.pending, (size_t)n);
    uint64_t done = 999; /* every tick <= done has been processed */
    long fired = 0;
    while (w.pending > 0) {
        cr_assert(done < 1000 + max_delay, "%zu nodes never came due", w.pending);
        uint64_t upto = done + 1 + next_rand() % max_step;
        reki__wheel_advance(&w, upto);
        uint32_t idx;
        while ((idx = reki__wheel_pop_due(&w)) != 0) {
            cr_assert(want[idx] > done && want[idx] <= upto,
                      "node due at %llu came in the step (%llu, %llu]",
                      (unsigned long long)want[idx], (unsigned long long)done,
                      (unsigned long long)upto);
            want[idx] = 0;
            fired++;
        }
        done = upto;
        /* The timer thread sleeps until reki__wheel_next: no pending timer
         * may expire before it. */
        uint64_t next = reki__wheel_next(&w);
        for (uint32_t i = REKI__WHEEL_FIRST; w.pending > 0 && i < REKI__WHEEL_FIRST + (uint32_t)n;
             i++)
            cr_assert(want[i] == 0 || want[i] >= next, "a timer due at %llu sleeps until %llu",
                      (unsigned long long)want[i], (unsigned long long)next);
    }
    cr_assert_eq(fired, n);
    free(want);
    reki__wheel_destroy(&w);
}

Test(wheel, level0_only)
{
    run(5000, 64, 3);
}

Test(wheel, two_levels_single_ticks)
{
    run(20000, 4096, 1);
}

Test(wheel, every_level_big_steps)
{
    run(100000, (uint64_t)1 << 26, 70000);
}

Test(wheel, remove_and_reuse_bump_generations)
{
    struct reki__wheel w;
    cr_assert_eq(reki__wheel_init(&w, 0), REKI_OK);
    uint32_t a = reki__wheel_alloc(&w);
    struct reki__tnode *n = reki__wheel_node(&w, a);
    cr_assert_eq(n->gen, 1);
    n->proc = (void *)&w;
    reki__wheel_add(&w, a, 10);
    reki__wheel_remove(&w, a);
    cr_assert_eq(w.pending, 0);
    cr_assert_eq(n->gen, 2, "a removed node's id must die");
    reki__wheel_free(&w, a);
    cr_assert_eq(reki__wheel_alloc(&w), a, "a freed node is reused");
    cr_assert_eq(n->gen, 2);
    /* A node whose generation wrapped is never handed out again. */
    n->gen = 0;
    reki__wheel_free(&w, a);
    uint32_t b = reki__wheel_alloc(&w);
    cr_assert_neq(b, a);
    cr_assert_eq(reki__wheel_advance(&w, 100), 0);
    reki__wheel_destroy(&w);
}

/*
 * Bug: reki_registry_new mishandled huge capacity hints.
 *
 * lib/registry/table.c rounds opts.capacity up to a power of two by doubling a
 * size_t from 64 while it is below the capacity: for a capacity above 2^63
 * the doubling wraps to 0 and the loop never ends, so reki_registry_new never
 * returned.  Below that, the capacity went on to ck_ht, which rounds it up to
 * a power of two in a uint32_t: every capacity in (2^31, 2^32] rounds to 0
 * there and larger ones are truncated to 32 bits (2^40 to 0), so ck made a
 * tiny map and reki_registry_new returned REKI_OK for a capacity it never
 * honoured.  A capacity that cannot be honoured must be refused with
 * REKI_EINVAL or REKI_ENOMEM (either is accepted here), promptly, leaving
 * nothing behind.  A large but reasonable one must still work.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "reki/reki.h"

#include "idle_actor.h"

/* reki_registry_new(capacity) must refuse; a hang is a Criterion timeout. */
static void expect_refused(size_t capacity)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    reki_registry_t *const sentinel = (reki_registry_t *)(uintptr_t)0x5a5a5a5a;
    reki_registry_t *reg = sentinel;
    reki_registry_opts_t ro = {.capacity = capacity};
    int rc = reki_registry_new(rt, &ro, &reg);
    if (rc == REKI_OK)
        reki_registry_free(reg);
    cr_assert(rc == REKI_EINVAL || rc == REKI_ENOMEM,
              "capacity %zu (%#zx): reki_registry_new returned %d (%s), want REKI_EINVAL or "
              "REKI_ENOMEM",
              capacity, capacity, rc, reki_strerror(rc));
    cr_assert(reg == sentinel || reg == NULL, "*out changed on error");
    reki_rt_free(rt);
}

Test(regress, capacity_size_max_refused, .timeout = 10.0)
{
    expect_refused(SIZE_MAX);
}

Test(regress, capacity_above_2_63_refused, .timeout = 10.0)
{
    expect_refused(((size_t)1 << 63) + 1);
}

Test(regress, capacity_2_40_refused, .timeout = 10.0)
{
    expect_refused((size_t)1 << 40);
}

Test(regress, capacity_2_32_refused, .timeout = 10.0)
{
    expect_refused((size_t)1 << 32);
}

Test(regress, capacity_one_million_works, .timeout = 10.0)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 1}, &rt), REKI_OK);
    reki_registry_opts_t ro = {.capacity = 1000000};
    int rc = reki_registry_new(rt, &ro, &reg);
    cr_assert_eq(rc, REKI_OK, "capacity 1000000: reki_registry_new returned %d (%s)", rc,
                 reki_strerror(rc));
    reki_pid_t started = 0, found = 0;
    cr_assert_eq(reki_lookup_or_start(reg, "key", 3, idle_start, NULL, -1, &started), REKI_STARTED);
    cr_assert_eq(reki_lookup(reg, "key", 3, &found), REKI_OK);
    cr_assert_eq(found, started);
    cr_assert_eq(reki_lookup(reg, "other", 5, &found), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 1);
    reki_registry_free(reg);
    reki_rt_free(rt);
}

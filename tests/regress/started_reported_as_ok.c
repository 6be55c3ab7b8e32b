/*
 * Bug: reki_lookup_or_start never returned REKI_STARTED.
 *
 * lib/registry/claim.c used an internal "go round again" code RETRY equal to 1, the
 * value of REKI_STARTED.  The winner's run_start returned REKI_STARTED, the
 * retry loop read it as RETRY, went round, found its own freshly linked
 * actor and returned REKI_OK: a caller could not tell that its start ran.
 * Found by tests/unit (every test expecting REKI_STARTED).
 */
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "reki/reki.h"

static atomic_int starts;

static reki_next_t ignore(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    atomic_fetch_add(&starts, 1);
    reki_behavior_t b = {.handle = ignore};
    return reki_spawn(rt, &b, NULL, NULL, out);
}

Test(regress, lookup_or_start_reports_started, .timeout = 30.0)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    reki_pid_t first = 0, second = 0;
    int rc = reki_lookup_or_start(reg, "k", 1, start, NULL, -1, &first);
    cr_assert_eq(rc, REKI_STARTED, "first call ran start but returned %d (%s)", rc,
                 reki_strerror(rc));
    rc = reki_lookup_or_start(reg, "k", 1, start, NULL, -1, &second);
    cr_assert_eq(rc, REKI_OK, "second call returned %d", rc);
    cr_assert_eq(second, first);
    cr_assert_eq(atomic_load(&starts), 1);
    reki_registry_free(reg);
    reki_rt_free(rt);
}

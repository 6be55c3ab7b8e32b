/*
 * Thread-creation failure (reki_rt_new's workers, dedicated actors) and
 * actors that crash in init: each call returns its documented error
 * (REKI_EAGAIN, init's own code), leaves nothing behind, and the runtime and
 * registry keep working.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fault.h"
#include "fault_support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;

static void setup(void)
{
    f_setup(&rt, &reg);
}

TestSuite(fault_thread, .init = setup, .timeout = 120);

#define FTEST(name) F_TEST(fault_thread, name)

/* ---------------------------------------------------------- runtime -- */

FTEST(rt_new_each_worker)
{
    struct f_rt_case r = {.workers = 3};
    struct fcase fc = {"reki_rt_new", f_rt_call, f_rt_undo, f_nothing, &r, REKI_EAGAIN};
    cr_assert_geq(f_every_thread(&fc), 3, "one thread per worker at least");
}

/* -------------------------------------------------- dedicated actors -- */

struct spawn_ctx {
    reki_pid_t pid;
};

static int dedicated_call(void *ctx)
{
    struct spawn_ctx *c = ctx;
    reki_spawn_opts_t o = {.flags = REKI_SPAWN_DEDICATED};
    return reki_spawn(rt, &f_actor, NULL, &o, &c->pid);
}

static void dedicated_undo(void *ctx)
{
    struct spawn_ctx *c = ctx;
    cr_assert_eq(reki_kill(rt, c->pid), REKI_OK);
    cr_assert(f_settle(0, 0));
}

static void none_alive(void *ctx)
{
    (void)ctx;
    cr_assert(f_settle(0, 0), "no actor left alive (live %ld)", f_live());
}

FTEST(spawn_dedicated)
{
    struct spawn_ctx c;
    struct fcase fc = {
        "reki_spawn (dedicated)", dedicated_call, dedicated_undo, none_alive, &c, REKI_EAGAIN};
    cr_assert_eq(f_every_thread(&fc), 1);
    cr_assert_eq(atomic_load(&fp.inits), 2, "init never ran for a failed spawn");
}

struct los_ctx {
    struct fstart s;
    reki_pid_t pid;
};

static int los_call(void *ctx)
{
    struct los_ctx *c = ctx;
    return reki_lookup_or_start(reg, "dedicated", 9, f_start, &c->s, -1, &c->pid);
}

static void los_undo(void *ctx)
{
    (void)ctx;
    cr_assert_eq(reki_stop(reg, "dedicated", 9), REKI_OK);
    cr_assert(f_settle(0, 0));
}

static void los_same(void *ctx)
{
    (void)ctx;
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(reg, "dedicated", 9, &pid), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 0);
    none_alive(NULL);
}

FTEST(lookup_or_start_dedicated)
{
    struct los_ctx c = {.s = {.spawn_flags = REKI_SPAWN_DEDICATED}};
    struct fcase fc = {
        "reki_lookup_or_start (dedicated)", los_call, los_undo, los_same, &c, REKI_EAGAIN};
    cr_assert_eq(f_every_thread(&fc), 1);
}

/* ----------------------------------------------------- init crashes -- */

static void check_broken_start(struct fstart *s)
{
    reki_pid_t pid = 0;
    long dropped = atomic_load(&fp.dropped);
    cr_assert_eq(reki_lookup_or_start(reg, "broken", 6, f_start, s, -1, &pid), F_EINIT,
                 "init's code is lookup_or_start's result");
    cr_assert_eq(reki_lookup(reg, "broken", 6, &pid), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 0);
    cr_assert(f_settle(0, atomic_load(&fp.handled) + dropped + 1),
              "the message init sent itself was dropped");
}

FTEST(init_crash_in_start)
{
    struct fstart s = {.b = &f_broken};
    check_broken_start(&s);
    check_broken_start(&s);
    struct fstart ok = {0};
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "broken", 6, f_start, &ok, -1, &pid), REKI_STARTED,
                 "a later start of the key works");
}

FTEST(init_crash_in_dedicated_start)
{
    struct fstart s = {.b = &f_broken, .spawn_flags = REKI_SPAWN_DEDICATED};
    check_broken_start(&s);
    struct fstart ok = {.spawn_flags = REKI_SPAWN_DEDICATED};
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "broken", 6, f_start, &ok, -1, &pid), REKI_STARTED);
}

struct waiter {
    reki_pid_t pid;
    int rc;
    struct fstart s;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    w->rc = reki_lookup_or_start(reg, "shared", 6, f_start, &w->s, -1, &w->pid);
    return NULL;
}

FTEST(init_crash_shared_with_waiters)
{
    struct waiter w = {0};
    pthread_t starter, waiter;
    struct waiter first = {.s = {.b = &f_broken, .hold = true}};
    cr_assert_eq(pthread_create(&starter, NULL, wait_thread, &first), 0);
    while (!atomic_load(&first.s.ran))
        sched_yield();
    cr_assert_eq(pthread_create(&waiter, NULL, wait_thread, &w), 0);
    /* The waiter is blocked on the running start (it cannot be observed;
     * whether it arrives before or after the release, the outcome holds). */
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&first.s.release, 1);
    pthread_join(starter, NULL);
    pthread_join(waiter, NULL);
    cr_assert_eq(first.rc, F_EINIT);
    if (atomic_load(&w.s.ran) == 0)
        cr_assert_eq(w.rc, F_EINIT, "a waiter shares the start's error");
    else
        cr_assert_eq(w.rc, REKI_STARTED, "a caller arriving after the failure starts anew");
}

FTEST(spawn_dedicated_init_crash)
{
    reki_spawn_opts_t o = {.flags = REKI_SPAWN_DEDICATED};
    reki_pid_t pid = 0;
    cr_assert_eq(reki_spawn(rt, &f_broken, NULL, &o, &pid), F_EINIT);
    cr_assert_eq(pid, 0, "*out is untouched on failure");
    cr_assert(f_settle(0, 1), "the message init sent itself was dropped");
}

/* ---------------------------------------------------- virtual actors -- */

static int vstart_fn(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    return f_start(r, key, keylen, arg, out);
}

static int vregistry_call(void *ctx)
{
    reki_registry_t **r = ctx;
    static struct fstart s;
    *r = NULL;
    reki_registry_opts_t o = {0};
    o.start = vstart_fn;
    o.start_arg = &s;
    int rc = reki_registry_new(rt, &o, r);
    if (rc != REKI_OK)
        cr_assert_null(*r, "*out is untouched on failure");
    return rc;
}

static void vregistry_undo(void *ctx)
{
    reki_registry_t **r = ctx;
    reki_registry_free(*r);
}

FTEST(registry_new_start_thread)
{
    reki_registry_t *r = NULL;
    struct fcase fc = {"reki_registry_new (start thread)",
                       vregistry_call,
                       vregistry_undo,
                       f_nothing,
                       &r,
                       REKI_EAGAIN};
    cr_assert_eq(f_every_thread(&fc), 2, "a start thread and the supervisor, with the registry");
}

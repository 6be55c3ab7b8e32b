/*
 * Fixtures of the fault-injection tests; see fault_support.h.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fault.h"
#include "fault_support.h"

#if defined(__SANITIZE_ADDRESS__)
#define F_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define F_LSAN 1
#endif
#endif
#ifdef F_LSAN
#include <sanitizer/lsan_interface.h>
#endif

struct fprobe fp;
reki_rt_t *f_broken_rt;

void f_setup(reki_rt_t **rt, reki_registry_t **reg)
{
    memset(&fp, 0, sizeof(fp));
    reki_rt_opts_t o = {1};
    cr_assert_eq(reki_rt_new(&o, rt), REKI_OK);
    f_broken_rt = *rt;
    cr_assert_eq(reki_registry_new(*rt, NULL, reg), REKI_OK);
}

void f_finish(reki_rt_t *rt, reki_registry_t *reg)
{
    reki__fault_alloc_fail_at(0);
    reki__fault_thread_fail_at(0);
    reki_registry_free(reg);
    reki_rt_free(rt);
    f_check_leaks();
    cr_expect_eq(atomic_load(&fp.bad), 0, "a callback saw something wrong");
    cr_expect_eq(atomic_load(&fp.inits), atomic_load(&fp.terminates),
                 "every actor that lived terminated");
}

void f_nothing(void *ctx)
{
    (void)ctx;
}

int f_rt_call(void *ctx)
{
    struct f_rt_case *c = ctx;
    reki_rt_opts_t o = {c->workers};
    c->rt = NULL;
    int rc = reki_rt_new(&o, &c->rt);
    if (rc != REKI_OK)
        cr_assert_null(c->rt, "*out is untouched on failure");
    return rc;
}

void f_rt_undo(void *ctx)
{
    struct f_rt_case *c = ctx;
    reki_rt_free(c->rt);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

long *f_msg(void)
{
    long *m = malloc(sizeof(*m));
    cr_assert_not_null(m);
    *m = 42;
    return m;
}

static int actor_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    (void)arg;
    (void)state;
    atomic_fetch_add(&fp.inits, 1);
    return 0;
}

static reki_next_t actor_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    if (msg == NULL || *(long *)msg != 42)
        atomic_fetch_add(&fp.bad, 1);
    free(msg);
    atomic_fetch_add(&fp.handled, 1);
    return REKI_CONTINUE;
}

static void actor_terminate(void *state, int reason)
{
    (void)state;
    if (reason < REKI_EXIT_NORMAL || reason > REKI_EXIT_SHUTDOWN)
        atomic_fetch_add(&fp.bad, 1);
    atomic_fetch_add(&fp.terminates, 1);
}

static void actor_drop(void *msg)
{
    free(msg);
    atomic_fetch_add(&fp.dropped, 1);
}

static int broken_init(reki_pid_t self, void *arg, void **state)
{
    (void)arg;
    (void)state;
    if (reki_send(f_broken_rt, self, f_msg()) != REKI_OK)
        atomic_fetch_add(&fp.bad, 1);
    return F_EINIT;
}

static reki_next_t broken_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    atomic_fetch_add(&fp.bad, 1); /* an actor whose init failed never runs */
    return REKI_STOP;
}

static void broken_terminate(void *state, int reason)
{
    (void)state;
    (void)reason;
    atomic_fetch_add(&fp.bad, 1);
}

const reki_behavior_t f_actor = {actor_init, actor_handle, actor_terminate, actor_drop};
const reki_behavior_t f_broken = {broken_init, broken_handle, broken_terminate, actor_drop};

int f_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    struct fstart *s = arg;
    atomic_fetch_add(&s->ran, 1);
    while (s->hold && !atomic_load(&s->release))
        sleep_ms(1);
    reki_spawn_opts_t o = {.flags = s->spawn_flags};
    return reki_spawn(rt, s->b != NULL ? s->b : &f_actor, NULL, &o, out);
}

long f_live(void)
{
    return atomic_load(&fp.inits) - atomic_load(&fp.terminates);
}

bool f_settle(long live, long sent)
{
    for (int i = 0; i < 20000; i++) {
        if (f_live() == live && atomic_load(&fp.handled) + atomic_load(&fp.dropped) == sent) {
            /* RCU callbacks (reclamation) run on liburcu's thread: give
             * them time to finish, so that they do not take a failure
             * meant for the call under test. */
            sleep_ms(3);
            return true;
        }
        sleep_ms(1);
    }
    return false;
}

typedef void (*fail_at_fn)(long n);
typedef long (*count_fn)(void);

static long every(const struct fcase *c, fail_at_fn fail_at, count_fn count)
{
    fail_at(0);
    int rc = c->call(c->ctx);
    long n = count();
    cr_assert(rc >= 0, "%s: the uninjected call failed: %d (%s)", c->name, rc, reki_strerror(rc));
    c->undo(c->ctx);
    cr_log_info("%s: %ld to fail in turn", c->name, n);
    for (long i = 1; i <= n; i++) {
        c->same(c->ctx);
        fail_at(i);
        rc = c->call(c->ctx);
        long seen = count();
        fail_at(0);
        if (seen < i) {
            /* This call needed fewer (first-use allocations are done): the
             * failure was never injected. */
            cr_assert(rc >= 0, "%s: failed with %d without an injected failure", c->name, rc);
            c->undo(c->ctx);
            continue;
        }
        cr_expect_eq(rc, c->want, "%s: failure %ld of %ld injected, got %d (%s)", c->name, i, n, rc,
                     reki_strerror(rc));
        if (rc >= 0) {
            c->undo(c->ctx);
            continue;
        }
        c->same(c->ctx);
        /* and it keeps working */
        rc = c->call(c->ctx);
        cr_assert(rc >= 0, "%s: the call after failure %ld failed: %d (%s)", c->name, i, rc,
                  reki_strerror(rc));
        c->undo(c->ctx);
    }
    c->same(c->ctx);
    return n;
}

long f_every_alloc(const struct fcase *c)
{
    return every(c, reki__fault_alloc_fail_at, reki__fault_alloc_count);
}

long f_every_thread(const struct fcase *c)
{
    return every(c, reki__fault_thread_fail_at, reki__fault_thread_count);
}

void f_check_leaks(void)
{
#ifdef F_LSAN
    cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (above)");
#endif
}

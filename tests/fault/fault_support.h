/*
 * Fixtures of the fault-injection tests: an actor that counts its lives in
 * a probe, start functions, and the loop that fails each allocation (or
 * thread creation) of a call in turn.
 *
 * The hooks of lib/core/fault.h count process-wide, so each test runs in its own
 * process (Criterion forks one per test) and lets the runtime go idle before
 * each counted call: a worker that allocates meanwhile would take the
 * injected failure instead of the call under test.
 */
#ifndef REKI_FAULT_SUPPORT_H
#define REKI_FAULT_SUPPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "reki/reki.h"

struct fprobe {
    atomic_long inits, terminates, handled, dropped, downs, bad;
};

extern struct fprobe fp;

/* Counts inits, terminates, handled and dropped messages into fp; arg is
 * unused; messages are malloc'd longs. */
extern const reki_behavior_t f_actor;
/* Like f_actor, but init sends itself a message (on f_broken_rt) and fails
 * with F_EINIT. */
extern const reki_behavior_t f_broken;
extern reki_rt_t *f_broken_rt;
#define F_EINIT (-1003)

long *f_msg(void);

/* Start functions: arg is a struct fstart. */
struct fstart {
    unsigned spawn_flags;
    const reki_behavior_t *b;
    atomic_int ran;
    atomic_int release; /* when hold is set: start waits until release != 0 */
    bool hold;
};
int f_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out);

/* Live f_actors: inits - terminates. */
long f_live(void);
/* Wait (bounded) until every message sent is consumed and `live` actors
 * remain; then let background work (RCU callbacks) finish. */
bool f_settle(long live, long sent);

/* One call under test, its undo after a success, and the state it must
 * leave unchanged after a failure. */
struct fcase {
    const char *name;
    int (*call)(void *ctx);  /* returns the library's code */
    void (*undo)(void *ctx); /* after a success */
    void (*same)(void *ctx); /* asserts the state is as before the call */
    void *ctx;
    int want; /* the failure code: REKI_ENOMEM or REKI_EAGAIN */
};

/* Count the allocations of one successful call, then fail each in turn:
 * each failed call must return c->want and leave the state as before, and
 * the next normal call must succeed.  Returns the count. */
long f_every_alloc(const struct fcase *c);
/* The same for thread creations. */
long f_every_thread(const struct fcase *c);

/* The runtime (one worker) and registry each test starts from; fp is reset
 * and f_broken_rt points at the runtime. */
void f_setup(reki_rt_t **rt, reki_registry_t **reg);
/* The end of each test body (Criterion ignores assertions in .fini): clears
 * both fault hooks, frees reg and rt, checks for leaks and that every actor
 * that lived terminated. */
void f_finish(reki_rt_t *rt, reki_registry_t *reg);

/* A test of suite whose body is followed by f_finish(rt, reg), with the rt
 * and reg of the test file. */
#define F_TEST(suite, name)        \
    static void name##_body(void); \
    Test(suite, name)              \
    {                              \
        name##_body();             \
        f_finish(rt, reg);         \
    }                              \
    static void name##_body(void)

/* An fcase step with nothing to do or check. */
void f_nothing(void *ctx);
/* An fcase for reki_rt_new: ctx is a struct f_rt_case. */
struct f_rt_case {
    reki_rt_t *rt;
    unsigned workers;
};
int f_rt_call(void *ctx);
void f_rt_undo(void *ctx);

/* In an ASan build, fail the test if LeakSanitizer finds unreachable memory
 * now (Criterion's test processes exit with 0 whatever LeakSanitizer says at
 * exit).  Call when everything the test made has been freed. */
void f_check_leaks(void);

#endif

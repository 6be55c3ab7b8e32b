/*
 * Allocation failure: for each entry point, fail every allocation a
 * successful call makes, one at a time.  Each failed call returns
 * REKI_ENOMEM, changes nothing (no key registered, no actor left alive, no
 * message taken), leaks nothing (the ASan build's LeakSanitizer checks at
 * exit) and the next normal call succeeds.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fault.h"
#include "fault_support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static long sent; /* messages accepted by reki_send in this test */

static void setup(void)
{
    f_setup(&rt, &reg);
    /* First-use allocations (this thread's hazard-pointer record, the pid
     * table's first chunk) happen here, not in the counted calls. */
    struct fstart s = {0};
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "warm", 4, f_start, &s, -1, &pid), REKI_STARTED);
    cr_assert_eq(reki_stop(reg, "warm", 4), REKI_OK);
    cr_assert(f_settle(0, 0));
    sent = 0;
}

TestSuite(fault_alloc, .init = setup, .timeout = 120);

#define FTEST(name) F_TEST(fault_alloc, name)

/* ------------------------------------------------------ lookup_or_start -- */

struct los_ctx {
    struct fstart s;
    reki_pid_t pid;
};

static int los_call(void *ctx)
{
    struct los_ctx *c = ctx;
    return reki_lookup_or_start(reg, "key", 3, f_start, &c->s, -1, &c->pid);
}

static void los_undo(void *ctx)
{
    (void)ctx;
    cr_assert_eq(reki_stop(reg, "key", 3), REKI_OK);
    cr_assert(f_settle(0, sent), "the stopped actor terminated");
}

static void los_same(void *ctx)
{
    (void)ctx;
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(reg, "key", 3, &pid), REKI_ENOTFOUND, "the key stays unregistered");
    cr_assert_eq(reki_count(reg), 0);
    cr_assert(f_settle(0, sent), "no actor left alive (live %ld)", f_live());
}

FTEST(lookup_or_start)
{
    struct los_ctx c = {0};
    struct fcase fc = {"reki_lookup_or_start", los_call, los_undo, los_same, &c, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0, "starting an actor allocates");
}

FTEST(lookup_or_start_dedicated)
{
    struct los_ctx c = {.s = {.spawn_flags = REKI_SPAWN_DEDICATED}};
    struct fcase fc = {
        "reki_lookup_or_start (dedicated)", los_call, los_undo, los_same, &c, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

static int hit_call(void *ctx)
{
    struct los_ctx *c = ctx;
    return reki_lookup_or_start(reg, "hit", 3, f_start, &c->s, 0, &c->pid);
}

FTEST(lookup_or_start_hit_allocates_nothing)
{
    struct los_ctx c = {0};
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, "hit", 3, f_start, &c.s, -1, &pid), REKI_STARTED);
    struct fcase fc = {
        "reki_lookup_or_start (hit)", hit_call, f_nothing, f_nothing, &c, REKI_ENOMEM};
    cr_assert_eq(f_every_alloc(&fc), 0, "the hit path allocates nothing");
    cr_assert_eq(c.pid, pid);
}

/* ------------------------------------------------------------ spawn -- */

struct spawn_ctx {
    unsigned flags;
    reki_pid_t pid;
};

static int spawn_call(void *ctx)
{
    struct spawn_ctx *c = ctx;
    reki_spawn_opts_t o = {.flags = c->flags};
    c->pid = 0;
    int rc = reki_spawn(rt, &f_actor, NULL, &o, &c->pid);
    if (rc != REKI_OK)
        cr_assert_eq(c->pid, 0, "*out is untouched on failure");
    return rc;
}

static void spawn_undo(void *ctx)
{
    struct spawn_ctx *c = ctx;
    cr_assert_eq(reki_kill(rt, c->pid), REKI_OK);
    cr_assert(f_settle(0, sent));
}

static void spawn_same(void *ctx)
{
    (void)ctx;
    cr_assert(f_settle(0, sent), "no actor left alive (live %ld)", f_live());
}

FTEST(spawn)
{
    struct spawn_ctx c = {0};
    struct fcase fc = {"reki_spawn", spawn_call, spawn_undo, spawn_same, &c, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

FTEST(spawn_dedicated)
{
    struct spawn_ctx c = {REKI_SPAWN_DEDICATED, 0};
    struct fcase fc = {
        "reki_spawn (dedicated)", spawn_call, spawn_undo, spawn_same, &c, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

/* ------------------------------------------------------------- send -- */

struct send_ctx {
    reki_pid_t to;
    long live;
    long *msg;
};

static int send_call(void *ctx)
{
    struct send_ctx *c = ctx;
    c->msg = f_msg();
    int rc = reki_send(rt, c->to, c->msg);
    if (rc != REKI_OK)
        free(c->msg); /* still ours: a library that kept it double-frees */
    return rc;
}

static void send_undo(void *ctx)
{
    struct send_ctx *c = ctx;
    sent++;
    cr_assert(f_settle(c->live, sent), "the message was handled");
}

static void send_same(void *ctx)
{
    struct send_ctx *c = ctx;
    cr_assert(f_settle(c->live, sent), "a refused message is neither handled nor dropped");
}

FTEST(send)
{
    struct send_ctx c = {0, 1, NULL};
    cr_assert_eq(reki_spawn(rt, &f_actor, NULL, NULL, &c.to), REKI_OK);
    struct fcase fc = {"reki_send", send_call, send_undo, send_same, &c, REKI_ENOMEM};
    f_every_alloc(&fc);
    /* The actor still works: one more message is handled. */
    cr_assert_eq(send_call(&c), REKI_OK);
    send_undo(&c);
}

FTEST(send_to_inbox)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    struct send_ctx c = {reki_inbox_pid(in), 0, NULL};
    reki__fault_alloc_fail_at(0);
    cr_assert_eq(send_call(&c), REKI_OK);
    long n = reki__fault_alloc_count();
    void *got;
    cr_assert_eq(reki_inbox_recv(in, &got, -1), REKI_OK);
    cr_assert_eq(got, c.msg);
    free(got);
    for (long i = 1; i <= n; i++) {
        reki__fault_alloc_fail_at(i);
        cr_expect_eq(send_call(&c), REKI_ENOMEM, "allocation %ld of %ld failed", i, n);
        reki__fault_alloc_fail_at(0);
        cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT,
                     "a refused message is not queued");
    }
    cr_assert_eq(send_call(&c), REKI_OK);
    cr_assert_eq(reki_inbox_recv(in, &got, -1), REKI_OK);
    free(got);
    reki_inbox_free(in);
}

/* ------------------------------------------------------------ inbox -- */

static int inbox_call(void *ctx)
{
    reki_inbox_t **in = ctx;
    *in = NULL;
    int rc = reki_inbox_new(rt, in);
    if (rc != REKI_OK)
        cr_assert_null(*in, "*out is untouched on failure");
    return rc;
}

static void inbox_undo(void *ctx)
{
    reki_inbox_t **in = ctx;
    reki_inbox_free(*in);
}

FTEST(inbox_new)
{
    reki_inbox_t *in = NULL;
    struct fcase fc = {"reki_inbox_new", inbox_call, inbox_undo, f_nothing, &in, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

/* --------------------------------------------------------- registry -- */

static int registry_call(void *ctx)
{
    reki_registry_t **r = ctx;
    *r = NULL;
    int rc = reki_registry_new(rt, NULL, r);
    if (rc != REKI_OK)
        cr_assert_null(*r, "*out is untouched on failure");
    return rc;
}

static void registry_undo(void *ctx)
{
    reki_registry_t **r = ctx;
    reki_registry_free(*r);
}

FTEST(registry_new)
{
    reki_registry_t *r = NULL;
    struct fcase fc = {"reki_registry_new", registry_call, registry_undo, f_nothing, &r,
                       REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

/* The first registry of a runtime also sets up the runtime's hazard-pointer
 * domain (reki__hp_use): every allocation of that first call fails in turn
 * on a fresh runtime, and the call after a failure sets the domain up and
 * works (a waiter then protects its entry with a hazard pointer). */
struct first_ctx {
    reki_rt_t *rt;
};

struct held_start {
    reki_registry_t *r;
    struct fstart s;
    reki_pid_t pid;
    int rc;
};

static void *start_held(void *arg)
{
    struct held_start *h = arg;
    h->rc = reki_lookup_or_start(h->r, "k", 1, f_start, &h->s, -1, &h->pid);
    return NULL;
}

static void *release_later(void *arg)
{
    struct held_start *h = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&h->s.release, 1);
    return NULL;
}

/* A start held on another thread while this one waits for it (released
 * 20 ms later by a third): the waiter protects the key's entry with a
 * hazard pointer of r's runtime. */
static void wait_on_held_start(reki_registry_t *r)
{
    struct held_start h = {.r = r, .s = {.hold = true}};
    pthread_t t, u;
    cr_assert_eq(pthread_create(&t, NULL, start_held, &h), 0);
    while (atomic_load(&h.s.ran) == 0)
        sched_yield();
    cr_assert_eq(pthread_create(&u, NULL, release_later, &h), 0);
    struct fstart s = {0};
    reki_pid_t pid;
    int rc = reki_lookup_or_start(r, "k", 1, f_start, &s, -1, &pid);
    pthread_join(u, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(h.rc, REKI_STARTED);
    cr_assert(rc == REKI_OK && pid == h.pid, "the waiter got the held start's actor (%d)", rc);
    cr_assert_eq(reki_stop(r, "k", 1), REKI_OK);
}

static int first_call(void *ctx)
{
    struct first_ctx *c = ctx;
    reki_registry_t *r = NULL;
    int rc = reki_registry_new(c->rt, NULL, &r);
    if (rc != REKI_OK) {
        cr_assert_null(r, "*out is untouched on failure");
        return rc;
    }
    reki_registry_free(r);
    return rc;
}

FTEST(first_registry_of_a_runtime)
{
    long allocs = 0;
    for (long n = 1;; n++) {
        struct first_ctx c = {0};
        reki_rt_opts_t o = {1};
        cr_assert_eq(reki_rt_new(&o, &c.rt), REKI_OK);
        reki__fault_alloc_fail_at(n);
        int rc = first_call(&c);
        long made = reki__fault_alloc_count();
        reki__fault_alloc_fail_at(0);
        if (rc == REKI_OK) {
            allocs = made;
            reki_rt_free(c.rt);
            break;
        }
        cr_assert_eq(rc, REKI_ENOMEM, "allocation %ld failed: %s", n, reki_strerror(rc));
        /* The next call on the same runtime sets the domain up and works,
         * waiters included. */
        reki_registry_t *r = NULL;
        cr_assert_eq(reki_registry_new(c.rt, NULL, &r), REKI_OK, "after failing allocation %ld", n);
        wait_on_held_start(r);
        reki_registry_free(r);
        reki_rt_free(c.rt);
        cr_assert_lt(n, 1000, "no end to the allocations");
    }
    /* A registry, its table and the domain's first record at least. */
    cr_assert_gt(allocs, 2, "the first registry allocates its domain too (%ld)", allocs);
    f_check_leaks();
}

/* ---------------------------------------------------------- runtime -- */

FTEST(rt_new)
{
    struct f_rt_case r = {.workers = 2};
    struct fcase fc = {"reki_rt_new", f_rt_call, f_rt_undo, f_nothing, &r, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

/* ------------------------------------------------- monitor, foreach -- */

struct mon_ctx {
    reki_pid_t pid;
};

static void down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
    atomic_fetch_add(&fp.downs, 1);
}

static int monitor_call(void *ctx)
{
    struct mon_ctx *c = ctx;
    return reki_monitor(rt, c->pid, down, NULL);
}

FTEST(monitor)
{
    struct mon_ctx c;
    cr_assert_eq(reki_spawn(rt, &f_actor, NULL, NULL, &c.pid), REKI_OK);
    struct fcase fc = {"reki_monitor", monitor_call, f_nothing, f_nothing, &c, REKI_ENOMEM};
    long n = f_every_alloc(&fc);
    cr_assert_gt(n, 0);
    /* Successful monitors: the first count and one after each failure. */
    long ok = atomic_load(&fp.downs);
    cr_assert_eq(ok, 0);
    cr_assert_eq(reki_kill(rt, c.pid), REKI_OK);
    cr_assert(f_settle(0, 0));
    bool fired = false;
    for (int i = 0; i < 5000 && !fired; i++) {
        fired = atomic_load(&fp.downs) == 1 + n;
        if (!fired)
            sched_yield();
    }
    cr_assert(fired, "exactly the monitors that succeeded fired (%ld of %ld)",
              atomic_load(&fp.downs), 1 + n);
}

static int count_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    ++*(int *)arg;
    return 0;
}

static int foreach_call(void *ctx)
{
    *(int *)ctx = 0;
    return reki_foreach(reg, count_fn, ctx);
}

FTEST(foreach)
{
    int visits = 0;
    struct los_ctx c = {0};
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, f_start, &c.s, -1, &c.pid), REKI_STARTED);
    struct fcase fc = {"reki_foreach", foreach_call, f_nothing, f_nothing, &visits, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
    cr_assert_eq(foreach_call(&visits), REKI_OK);
    cr_assert_eq(visits, 1);
}

/* ---------------------------------------------------- virtual actors -- */

static struct fstart vstart; /* hold: starts wait for release */

static void vdrop(void *msg)
{
    atomic_fetch_add(&fp.dropped, 1);
    free(msg);
}

static reki_registry_opts_t vopts(void)
{
    reki_registry_opts_t o = {0};
    o.start = f_start;
    o.start_arg = &vstart;
    o.drop = vdrop;
    o.idle_ms = 60000;
    o.restart = REKI_RESTART_TRANSIENT;
    return o;
}

static int vregistry_call(void *ctx)
{
    reki_registry_t **r = ctx;
    *r = NULL;
    reki_registry_opts_t o = vopts();
    int rc = reki_registry_new(rt, &o, r);
    if (rc != REKI_OK)
        cr_assert_null(*r, "*out is untouched on failure");
    return rc;
}

FTEST(registry_new_virtual)
{
    reki_registry_t *r = NULL;
    struct fcase fc = {"reki_registry_new (start threads)",
                       vregistry_call,
                       registry_undo,
                       f_nothing,
                       &r,
                       REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
}

struct skey_ctx {
    reki_registry_t *vreg;
    const char *key;
    long *msg;
    long live; /* actors alive before the call */
};

static int skey_call(void *ctx)
{
    struct skey_ctx *c = ctx;
    c->msg = f_msg();
    int rc = reki_send_key(c->vreg, c->key, strlen(c->key), c->msg);
    if (rc != REKI_OK)
        free(c->msg); /* still ours: a library that kept it double-frees */
    return rc;
}

static void skey_live_undo(void *ctx)
{
    struct skey_ctx *c = ctx;
    sent++;
    cr_assert(f_settle(c->live, sent), "the message was handled");
}

static void skey_same(void *ctx)
{
    struct skey_ctx *c = ctx;
    cr_assert(f_settle(c->live, sent), "a refused message is neither handled nor dropped");
}

/* A live key: only the envelope is allocated. */
FTEST(send_key_live)
{
    reki_registry_t *vreg;
    reki_registry_opts_t o = vopts();
    cr_assert_eq(reki_registry_new(rt, &o, &vreg), REKI_OK);
    atomic_store(&vstart.release, 1);
    vstart.hold = false;
    struct skey_ctx c = {vreg, "live", NULL, 1};
    cr_assert_eq(skey_call(&c), REKI_OK);
    sent++;
    cr_assert(f_settle(1, sent));
    struct fcase fc = {
        "reki_send_key (live)", skey_call, skey_live_undo, skey_same, &c, REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
    reki_registry_free(vreg);
    cr_assert(f_settle(0, sent));
}

/* A cold key: envelope, entry, index.  The start waits (hold), so its own
 * allocations come after the counted call. */
static void skey_cold_undo(void *ctx)
{
    struct skey_ctx *c = ctx;
    sent++;
    atomic_store(&vstart.release, 1);
    cr_assert(f_settle(1, sent), "started, and the message handled");
    cr_assert_eq(reki_stop(c->vreg, c->key, strlen(c->key)), REKI_OK);
    cr_assert(f_settle(0, sent));
    atomic_store(&vstart.release, 0);
}

static void skey_cold_same(void *ctx)
{
    struct skey_ctx *c = ctx;
    skey_same(ctx);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(c->vreg, c->key, strlen(c->key), &pid), REKI_ENOTFOUND);
}

FTEST(send_key_cold)
{
    reki_registry_t *vreg;
    reki_registry_opts_t o = vopts();
    cr_assert_eq(reki_registry_new(rt, &o, &vreg), REKI_OK);
    vstart.hold = true;
    atomic_store(&vstart.release, 0);
    struct skey_ctx c = {vreg, "cold", NULL, 0};
    struct fcase fc = {"reki_send_key (cold)", skey_call, skey_cold_undo,
                       skey_cold_same,         &c,        REKI_ENOMEM};
    cr_assert_gt(f_every_alloc(&fc), 0);
    vstart.hold = false;
    reki_registry_free(vreg);
    cr_assert(f_settle(0, sent));
}

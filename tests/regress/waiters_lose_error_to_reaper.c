/*
 * Bug: waiters on a failed start do not share its error when the reaper
 * unlinks the entry first (guarantee 2); one of them runs start again.
 *
 * A failed start releases its entry, STARTING -> FREE(g+1) with the error in
 * `outcome` (lib/registry/entry.c reki__entry_release), wakes the waiters, then runs
 * a reaper step on the same thread (reki__reaper_note_free).  When the
 * registry holds more entries than the reaper's budget (lib/registry/reaper.c: 5/16
 * of the map its *live* actors need, so entries that are STARTING count
 * against it but do not raise it), the fresh FREE entry at the head of the
 * reaper queue is reaped at once: FREE -> DEAD.  A waiter that wakes after
 * that reads DEAD, not FREE, so lib/registry/claim.c wait_entry's "the start we
 * waited on failed: share its error" test (w == STARTING && word is FREE &&
 * outcome < 0) fails, it goes round, finds no entry, inserts one and runs
 * start itself.  The same happens with REKI_DEBUG_REAP=1 in every registry
 * (tests/unit/test_guarantees g2_waiters_share_an_error fails with it).
 *
 * Here 24 other keys have starts in progress, and REKI_DEBUG_REAP=1 makes
 * the registry reap every entry that stays FREE whatever its budget (the
 * budget has since grown to at least 256 entries, which 25 entries no longer
 * pass); each round holds one failing start with waiters asleep behind it.
 * Expected: start runs once per round and every waiter returns its error.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "reki/reki.h"

#define BLOCKERS 24
#define WAITERS 4
#define ROUNDS 20

static reki_registry_t *reg;
static atomic_int blockers_entered;
static atomic_int blockers_hold = 1;
static atomic_int hold;
static atomic_int entered;
static atomic_int starts;

static void sleep_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

static reki_next_t ignore(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_CONTINUE;
}

static int blocking_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    atomic_fetch_add(&blockers_entered, 1);
    while (atomic_load(&blockers_hold))
        sleep_ms(1);
    reki_behavior_t b = {.handle = ignore};
    return reki_spawn(rt, &b, NULL, NULL, out);
}

static int failing_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)rt;
    (void)key;
    (void)keylen;
    (void)arg;
    (void)out;
    if (atomic_fetch_add(&starts, 1) == 0) {
        atomic_store(&entered, 1);
        while (atomic_load(&hold))
            sleep_ms(1);
    }
    return -1234;
}

static void *blocker(void *arg)
{
    char key[16];
    int n = snprintf(key, sizeof(key), "blk%d", (int)(intptr_t)arg);
    reki_pid_t pid;
    reki_lookup_or_start(reg, key, (size_t)n, blocking_start, NULL, -1, &pid);
    return NULL;
}

struct call {
    char key[16];
    size_t keylen;
    int rc;
    pthread_t tid;
    _Atomic pid_t ktid; /* kernel thread id, once running */
};

/* Whether the thread is blocked in futex(2) (Linux: /proc/self/task/TID/
 * syscall starts with the syscall number while it is blocked in one). */
static bool in_futex_wait(_Atomic pid_t *ktid)
{
    pid_t tid = atomic_load(ktid);
    if (tid == 0)
        return false;
    char path[64], buf[32] = {0};
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool futex = fgets(buf, sizeof(buf), f) && atoi(buf) == SYS_futex;
    fclose(f);
    return futex;
}

static void *caller(void *arg)
{
    struct call *c = arg;
    atomic_store(&c->ktid, (pid_t)syscall(SYS_gettid));
    reki_pid_t pid;
    c->rc = reki_lookup_or_start(reg, c->key, c->keylen, failing_start, NULL, -1, &pid);
    return NULL;
}

Test(regress, waiters_share_an_error_with_the_reaper_busy, .timeout = 120.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(&(reki_rt_opts_t){.workers = 2}, &rt), REKI_OK);
    setenv("REKI_DEBUG_REAP", "1", 1); /* read by reki_registry_new */
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);
    pthread_t bt[BLOCKERS];
    for (int i = 0; i < BLOCKERS; i++)
        pthread_create(&bt[i], NULL, blocker, (void *)(intptr_t)i);
    while (atomic_load(&blockers_entered) < BLOCKERS)
        sleep_ms(1);

    int bad_rounds = 0, bad_rc = 0, extra_starts = 0;
    for (int r = 0; r < ROUNDS; r++) {
        struct call st, w[WAITERS];
        atomic_store(&starts, 0);
        atomic_store(&entered, 0);
        atomic_store(&hold, 1);
        st.keylen = (size_t)snprintf(st.key, sizeof(st.key), "err%d", r);
        pthread_create(&st.tid, NULL, caller, &st);
        while (!atomic_load(&entered))
            sleep_ms(1);
        for (int i = 0; i < WAITERS; i++) {
            w[i] = st;
            atomic_store(&w[i].ktid, 0);
            pthread_create(&w[i].tid, NULL, caller, &w[i]);
        }
        /* The waiters must be asleep on the entry before the start fails:
         * one that arrived later would rightly start again (guarantee 5). */
        for (int i = 0; i < WAITERS; i++)
            while (!in_futex_wait(&w[i].ktid))
                sleep_ms(1);
        atomic_store(&hold, 0);
        pthread_join(st.tid, NULL);
        for (int i = 0; i < WAITERS; i++) {
            pthread_join(w[i].tid, NULL);
            bad_rc += w[i].rc != -1234;
        }
        int n = atomic_load(&starts);
        extra_starts += n - 1;
        bad_rounds += n != 1;
    }

    atomic_store(&blockers_hold, 0);
    for (int i = 0; i < BLOCKERS; i++)
        pthread_join(bt[i], NULL);
    reki_registry_free(reg);
    reki_rt_free(rt);
    cr_assert(bad_rounds == 0 && bad_rc == 0,
              "%d of %d rounds ran start more than once (%d extra starts by waiters that "
              "should have shared the error); %d waiter results were not the error",
              bad_rounds, ROUNDS, extra_starts, bad_rc);
}

/*
 * Error codes and bad arguments: reki_strerror covers every code, every
 * EINVAL path returns REKI_EINVAL and changes nothing, and stale, zero or
 * made-up pids are harmless.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define SENTINEL_PID ((reki_pid_t)0x5e5e5e5e5e5e5e5eull)

static const int all_codes[] = {REKI_OK,        REKI_STARTED,  REKI_ENOTFOUND, REKI_EDEAD,
                                REKI_EAGAIN,    REKI_ENOMEM,   REKI_EINVAL,    REKI_EDEADLK,
                                REKI_ESHUTDOWN, REKI_ETIMEDOUT};
#define N_CODES (sizeof all_codes / sizeof all_codes[0])

Test(errors, codes_equal_negative_errno, .timeout = 10.0)
{
    cr_assert_eq(REKI_ENOTFOUND, -ENOENT);
    cr_assert_eq(REKI_EDEAD, -ESRCH);
    cr_assert_eq(REKI_EAGAIN, -EAGAIN);
    cr_assert_eq(REKI_ENOMEM, -ENOMEM);
    cr_assert_eq(REKI_EINVAL, -EINVAL);
    cr_assert_eq(REKI_EDEADLK, -EDEADLK);
    cr_assert_eq(REKI_ESHUTDOWN, -ESHUTDOWN);
    cr_assert_eq(REKI_ETIMEDOUT, -ETIMEDOUT);
}

Test(errors, strerror_covers_every_code, .timeout = 10.0)
{
    const char *unknown = reki_strerror(-9999);
    cr_assert_not_null(unknown);
    cr_assert_str_eq(unknown, "unknown reki error");
    for (size_t i = 0; i < N_CODES; i++) {
        const char *s = reki_strerror(all_codes[i]);
        cr_assert_not_null(s, "code %d", all_codes[i]);
        cr_assert(strlen(s) > 0, "code %d", all_codes[i]);
        cr_assert_str_neq(s, unknown, "code %d has no message of its own", all_codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, reki_strerror(all_codes[j]), "codes %d and %d share \"%s\"",
                              all_codes[i], all_codes[j], s);
    }
}

Test(errors, strerror_unknown_codes, .timeout = 10.0)
{
    const int odd[] = {INT_MIN, INT_MAX, -1, 2, 3, -4, -23, -36, -109, -111, 12345, -12345};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = reki_strerror(odd[i]);
        cr_assert_not_null(s, "code %d", odd[i]);
        cr_assert_str_eq(s, "unknown reki error", "code %d", odd[i]);
    }
}

Test(errors, version_string, .timeout = 10.0)
{
    const char *v = reki_version_string();
    cr_assert_not_null(v);
    unsigned a, b, c;
    char tail;
    cr_assert_eq(sscanf(v, "%u.%u.%u%c", &a, &b, &c, &tail), 3, "version \"%s\"", v);
}

Test(errors, rt_new_einval_leaves_out_untouched, .timeout = 30.0)
{
    reki_rt_t *sentinel = (reki_rt_t *)(uintptr_t)0x1234;
    reki_rt_t *rt = sentinel;
    cr_assert_eq(reki_rt_new(NULL, NULL), REKI_EINVAL);
    reki_rt_opts_t big = {.workers = 1025};
    cr_assert_eq(reki_rt_new(&big, &rt), REKI_EINVAL);
    cr_assert_eq(rt, sentinel);
    reki_rt_opts_t one = {.workers = 1};
    cr_assert_eq(reki_rt_new(&one, &rt), REKI_OK);
    cr_assert_neq(rt, sentinel);
    reki_rt_free(rt);
    reki_rt_free(NULL);
}

static int init_calls;
static int counting_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    init_calls++;
    *state = arg;
    return 0;
}
static reki_next_t plain_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    return REKI_CONTINUE;
}

Test(errors, spawn_einval_changes_nothing, .timeout = 30.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_behavior_t b = {.init = counting_init, .handle = plain_handle};
    reki_behavior_t no_handle = {.init = counting_init};
    reki_pid_t pid = SENTINEL_PID;
    int arg = 0;
    cr_assert_eq(reki_spawn(NULL, &b, &arg, NULL, &pid), REKI_EINVAL);
    cr_assert_eq(reki_spawn(rt, NULL, &arg, NULL, &pid), REKI_EINVAL);
    cr_assert_eq(reki_spawn(rt, &no_handle, &arg, NULL, &pid), REKI_EINVAL);
    cr_assert_eq(reki_spawn(rt, &b, &arg, NULL, NULL), REKI_EINVAL);
    const unsigned bad_flags[] = {0x2u, 0x4u, 0x80000000u, REKI_SPAWN_DEDICATED | 0x100u};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        reki_spawn_opts_t o = {.flags = bad_flags[i]};
        cr_assert_eq(reki_spawn(rt, &b, &arg, &o, &pid), REKI_EINVAL, "flags %#x", bad_flags[i]);
    }
    cr_assert_eq(pid, SENTINEL_PID, "*out written on EINVAL");
    cr_assert_eq(init_calls, 0, "init ran on EINVAL");
    reki_spawn_opts_t ok = {.flags = REKI_SPAWN_DEDICATED};
    cr_assert_eq(reki_spawn(rt, &b, &arg, &ok, &pid), REKI_OK);
    cr_assert_eq(init_calls, 1);
    reki_rt_free(rt);
}

Test(errors, actor_calls_einval, .timeout = 30.0)
{
    struct probe p;
    probe_reset(&p);
    t_set_drop_probe(&p);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    int msg = 0;
    cr_assert_eq(reki_send(NULL, pid, &msg), REKI_EINVAL);
    cr_assert_eq(reki_kill(NULL, pid), REKI_EINVAL);
    cr_assert_eq(reki_alive(NULL, pid), false);
    cr_assert_eq(reki_monitor(NULL, pid, t_down, &p), REKI_EINVAL);
    cr_assert_eq(reki_monitor(rt, pid, NULL, &p), REKI_EINVAL);
    cr_assert(reki_alive(rt, pid), "a bad call changed the actor");
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    bool fired;
    T_WAIT_UNTIL(fired, atomic_load(&p.downs) == 1);
    cr_assert(fired);
    cr_assert_eq(t_ldl(&p.handled), 0);
    cr_assert_eq(t_ldl(&p.dropped), 0, "a refused message reached drop");
    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.downs), 1, "the rejected monitor fired");
}

Test(errors, inbox_einval, .timeout = 30.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_inbox_t *sentinel = (reki_inbox_t *)(uintptr_t)0x4321;
    reki_inbox_t *in = sentinel;
    reki_inbox_opts_t o = {0};
    cr_assert_eq(reki_inbox_new(NULL, &in), REKI_EINVAL);
    cr_assert_eq(reki_inbox_new(rt, NULL), REKI_EINVAL);
    cr_assert_eq(reki_inbox_new_ex(NULL, &o, &in), REKI_EINVAL);
    cr_assert_eq(reki_inbox_new_ex(rt, &o, NULL), REKI_EINVAL);
    cr_assert_eq(in, sentinel);
    cr_assert_eq(reki_inbox_set_drop(NULL, free), REKI_EINVAL);
    cr_assert_eq(reki_inbox_pid(NULL), 0);

    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    int a = 1;
    cr_assert_eq(reki_send(rt, reki_inbox_pid(in), &a), REKI_OK);
    void *got = NULL;
    cr_assert_eq(reki_inbox_recv(NULL, &got, 0), REKI_EINVAL);
    cr_assert_eq(reki_inbox_recv(in, NULL, 0), REKI_EINVAL);
    cr_assert_eq(reki_inbox_recv(in, &got, -2), REKI_EINVAL);
    cr_assert_eq(reki_inbox_recv(in, &got, INT_MIN), REKI_EINVAL);
    cr_assert_null(got);
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK, "a bad recv consumed the message");
    cr_assert_eq(got, &a);
    reki_inbox_free(in);
    reki_inbox_free(NULL);
    reki_rt_free(rt);
}

Test(errors, registry_einval_changes_nothing, .timeout = 30.0)
{
    struct probe p;
    probe_reset(&p);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_registry_t *sentinel = (reki_registry_t *)(uintptr_t)0x777;
    reki_registry_t *reg = sentinel;
    cr_assert_eq(reki_registry_new(NULL, NULL, &reg), REKI_EINVAL);
    cr_assert_eq(reki_registry_new(rt, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reg, sentinel);
    cr_assert_eq(reki_registry_new(rt, NULL, &reg), REKI_OK);

    struct start_ctx s;
    start_ctx_init(&s, rt, &p);
    static char big[REKI_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    reki_pid_t pid = SENTINEL_PID;
    const int tmo = -1;
    cr_assert_eq(reki_lookup_or_start(NULL, "a", 1, t_start, &s, tmo, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, NULL, 1, t_start, &s, tmo, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, NULL, &s, tmo, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, t_start, &s, tmo, NULL), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 0, t_start, &s, tmo, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, big, REKI_KEY_MAX + 1, t_start, &s, tmo, &pid),
                 REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, t_start, &s, -2, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup_or_start(reg, "a", 1, t_start, &s, INT_MIN, &pid), REKI_EINVAL);
    cr_assert_eq(t_ldl(&s.starts), 0, "start ran on EINVAL");
    cr_assert_eq(pid, SENTINEL_PID);
    cr_assert_eq(reki_count(reg), 0);

    cr_assert_eq(reki_lookup(NULL, "a", 1, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup(reg, NULL, 1, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup(reg, "a", 1, NULL), REKI_EINVAL);
    cr_assert_eq(reki_lookup(reg, "a", 0, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup(reg, big, REKI_KEY_MAX + 1, &pid), REKI_EINVAL);
    cr_assert_eq(reki_lookup(reg, big, REKI_KEY_MAX, &pid), REKI_ENOTFOUND);
    cr_assert_eq(pid, SENTINEL_PID);

    cr_assert_eq(reki_stop(NULL, "a", 1), REKI_EINVAL);
    cr_assert_eq(reki_stop(reg, NULL, 1), REKI_EINVAL);
    cr_assert_eq(reki_stop(reg, "a", 0), REKI_EINVAL);
    cr_assert_eq(reki_stop(reg, big, REKI_KEY_MAX + 1), REKI_EINVAL);
    cr_assert_eq(reki_count(NULL), 0);
    cr_assert_eq(reki_foreach(NULL, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki_foreach(reg, NULL, NULL), REKI_EINVAL);

    /* The largest legal key works end to end, and a bad stop left it alone. */
    cr_assert_eq(reki_lookup_or_start(reg, big, REKI_KEY_MAX, t_start, &s, tmo, &pid),
                 REKI_STARTED);
    cr_assert_eq(reki_stop(reg, big, 0), REKI_EINVAL);
    reki_pid_t again;
    cr_assert_eq(reki_lookup(reg, big, REKI_KEY_MAX, &again), REKI_OK);
    cr_assert_eq(again, pid);
    cr_assert_eq(reki_count(reg), 1);
    reki_registry_free(reg);
    reki_registry_free(NULL);
    reki_rt_free(rt);
}

Test(errors, zero_stale_and_made_up_pids_are_harmless, .timeout = 30.0)
{
    struct probe p;
    probe_reset(&p);
    t_set_drop_probe(&p);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    reki_pid_t dead;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &dead), REKI_OK);
    cr_assert_eq(reki_kill(rt, dead), REKI_OK);
    const reki_pid_t bad[] = {
        0, dead, dead + 1, dead - 1, 0xdeadbeefdeadbeefull, UINT64_MAX, (reki_pid_t)1 << 63, 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (i > 1 && bad[i] != dead && reki_alive(rt, bad[i]))
            continue; /* a made-up value that happens to be a live pid */
        struct tmsg m = {.kind = T_INCR, .value = 1};
        cr_assert_eq(reki_send(rt, bad[i], &m), REKI_EDEAD, "pid %#llx",
                     (unsigned long long)bad[i]);
        cr_assert_eq(m.kind, T_INCR, "the refused message was touched");
        cr_assert_eq(reki_kill(rt, bad[i]), REKI_EDEAD);
        cr_assert(!reki_alive(rt, bad[i]));
        cr_assert_eq(reki_monitor(rt, bad[i], t_down, &p), REKI_EDEAD);
    }
    reki_rt_free(rt);
    cr_assert_eq(t_ldl(&p.dropped), 0, "a refused message went to drop");
    cr_assert_eq(t_ldl(&p.downs), 0, "a monitor on a dead pid fired");
    cr_assert_eq(t_ldl(&p.terminates), 1);
}

Test(errors, pids_are_never_reused, .timeout = 120.0)
{
    struct probe p;
    probe_reset(&p);
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    long n = t_scaled(20000, 100);
    reki_pid_t *pids = calloc((size_t)n, sizeof *pids);
    cr_assert_not_null(pids);
    for (long i = 0; i < n; i++) {
        cr_assert_eq(t_counter_spawn(rt, &p, 0, &pids[i]), REKI_OK);
        cr_assert_neq(pids[i], 0);
        cr_assert_eq(reki_kill(rt, pids[i]), REKI_OK);
    }
    reki_rt_free(rt);
    /* Sort and look for duplicates. */
    for (long gap = n / 2; gap > 0; gap /= 2)
        for (long i = gap; i < n; i++)
            for (long j = i; j >= gap && pids[j - gap] > pids[j]; j -= gap) {
                reki_pid_t t = pids[j];
                pids[j] = pids[j - gap];
                pids[j - gap] = t;
            }
    for (long i = 1; i < n; i++)
        cr_assert_neq(pids[i], pids[i - 1], "pid %#llx reused", (unsigned long long)pids[i]);
    free(pids);
}

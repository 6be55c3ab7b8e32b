/*
 * Discord gen_registry's test suite (test/gen_registry_test.exs), ported to
 * reki: describe blocks become name prefixes.  ExampleWorker is the counter
 * actor (its value is the worker's start argument); GenRegistry.reduce is
 * reki_foreach.  The supervisor child-spec tests have no C counterpart.
 * Where gen_registry needs wait_until for the registry to notice an exit,
 * reki is checked after the exit's monitor fired (the entry dies before
 * monitors run).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static reki_inbox_t *in;
static struct probe p;

static void start_registry(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, &reg), REKI_OK);
    in = t_inbox(rt);
}

static void stop_all(void)
{
    reki_inbox_free(in);
    t_fixture_down(&rt, &reg);
}

TestSuite(gen_registry, .init = start_registry, .fini = stop_all, .timeout = 60.0);

/* ExampleWorker.start_link(value): value < 0 plays the ":invalid" arg. */
static int example_worker(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    long value = (long)(intptr_t)arg;
    if (value < 0)
        return -1001;
    struct counter_args a = {.rt = r, .probe = &p, .initial = value};
    return t_counter_spawn_args(&a, 0, out);
}

static int los(long id, long value, reki_pid_t *out)
{
    char key[32];
    return reki_lookup_or_start(reg, key, t_key(key, sizeof key, id), example_worker,
                                (void *)(intptr_t)value, -1, out);
}

static int lookup(long id, reki_pid_t *out)
{
    char key[32];
    return reki_lookup(reg, key, t_key(key, sizeof key, id), out);
}

static int stop(long id)
{
    char key[32];
    return reki_stop(reg, key, t_key(key, sizeof key, id));
}

/* Waits until the monitored actor's monitor has fired. */
static void await_exit(long downs_before)
{
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) > downs_before);
    cr_assert(ok, "the actor never exited");
}

enum { TEST_ID = 100, UNKNOWN = 999 };

Test(gen_registry, lookup_unknown_id)
{
    reki_pid_t pid;
    cr_assert_eq(lookup(UNKNOWN, &pid), REKI_ENOTFOUND);
}

Test(gen_registry, lookup_known_id)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(lookup(TEST_ID, &got), REKI_OK);
    cr_assert_eq(got, pid);
}

Test(gen_registry, lookup_mixed_ids)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(lookup(TEST_ID, &got), REKI_OK);
    cr_assert_eq(got, pid);
    cr_assert_eq(lookup(UNKNOWN, &got), REKI_ENOTFOUND);
}

Test(gen_registry, lookup_removed_after_the_process_exits)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(lookup(TEST_ID, &got), REKI_OK);
    cr_assert_eq(stop(TEST_ID), REKI_OK);
    cr_assert_eq(lookup(TEST_ID, &got), REKI_ENOTFOUND);
}

Test(gen_registry, lookup_or_start_unknown_id_starts_a_new_process)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(UNKNOWN, 0, &pid), REKI_STARTED);
    cr_assert_eq(lookup(UNKNOWN, &got), REKI_OK);
    cr_assert_eq(got, pid);
}

Test(gen_registry, lookup_or_start_known_id_returns_the_running_process)
{
    reki_pid_t pid, again;
    cr_assert_eq(reki_count(reg), 0);
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(los(TEST_ID, 0, &again), REKI_OK);
    cr_assert_eq(again, pid);
    cr_assert_eq(reki_count(reg), 1);
}

Test(gen_registry, lookup_or_start_arguments_are_passed_through)
{
    reki_pid_t first, second, retrieved;
    cr_assert_eq(los(1, 11, &first), REKI_STARTED);
    cr_assert_eq(los(2, 22, &second), REKI_STARTED);
    cr_assert_eq(t_counter_get(rt, first, in), 11);
    cr_assert_eq(t_counter_get(rt, second, in), 22);
    cr_assert_eq(los(1, 0, &retrieved), REKI_OK);
    cr_assert_eq(t_counter_get(rt, retrieved, in), 11);
}

Test(gen_registry, lookup_or_start_invalid_arguments_return_the_error_and_register_nothing)
{
    reki_pid_t pid;
    cr_assert_eq(los(TEST_ID, -1, &pid), -1001);
    cr_assert_eq(lookup(TEST_ID, &pid), REKI_ENOTFOUND);
    cr_assert_eq(reki_count(reg), 0);
}

Test(gen_registry, lookup_or_start_invalid_start_does_not_affect_running_processes)
{
    reki_pid_t pids[6], pid;
    for (long i = 1; i <= 5; i++)
        cr_assert_eq(los(i, 0, &pids[i]), REKI_STARTED);
    cr_assert_eq(reki_count(reg), 5);
    cr_assert_eq(los(TEST_ID, -1, &pid), -1001);
    cr_assert_eq(reki_count(reg), 5);
    for (long i = 1; i <= 5; i++) {
        cr_assert_eq(los(i, 0, &pid), REKI_OK);
        cr_assert_eq(pid, pids[i]);
        cr_assert(reki_alive(rt, pid));
    }
}

Test(gen_registry, lookup_or_start_id_can_be_reused_if_the_process_exits)
{
    reki_pid_t pid, again, new_pid;
    cr_assert_eq(los(TEST_ID, 1, &pid), REKI_STARTED);
    cr_assert_eq(t_counter_get(rt, pid, in), 1);
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(los(TEST_ID, 0, &again), REKI_OK);
    cr_assert_eq(again, pid);
    cr_assert_eq(stop(TEST_ID), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    cr_assert_eq(reki_count(reg), 0);
    cr_assert_eq(los(TEST_ID, 2, &new_pid), REKI_STARTED);
    cr_assert_neq(new_pid, pid);
    cr_assert_eq(t_counter_get(rt, new_pid, in), 2);
    cr_assert_eq(reki_count(reg), 1);
}

/* The Spy tests: a hit is served without calling start; a miss calls start
 * with the caller's key and argument. */
struct spy {
    int calls;
    char key[32];
    size_t keylen;
    void *arg;
};

static struct spy spy;

static int spying_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    spy.calls++;
    spy.keylen = keylen < sizeof spy.key ? keylen : sizeof spy.key;
    memcpy(spy.key, key, spy.keylen);
    spy.arg = arg;
    return example_worker(r, key, keylen, arg, out);
}

Test(gen_registry, lookup_or_start_a_hit_does_not_call_start)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(TEST_ID, 5, &pid), REKI_STARTED);
    memset(&spy, 0, sizeof spy);
    char key[32];
    size_t len = t_key(key, sizeof key, TEST_ID);
    cr_assert_eq(reki_lookup_or_start(reg, key, len, spying_start, (void *)(intptr_t)5, -1, &got),
                 REKI_OK);
    cr_assert_eq(got, pid);
    cr_assert_eq(spy.calls, 0);
}

Test(gen_registry, lookup_or_start_a_miss_calls_start_with_key_and_arg)
{
    memset(&spy, 0, sizeof spy);
    char key[32];
    size_t len = t_key(key, sizeof key, TEST_ID);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup_or_start(reg, key, len, spying_start, (void *)(intptr_t)7, -1, &pid),
                 REKI_STARTED);
    cr_assert_eq(spy.calls, 1);
    cr_assert_eq(spy.keylen, len);
    cr_assert(memcmp(spy.key, key, len) == 0);
    cr_assert_eq(spy.arg, (void *)(intptr_t)7);
    cr_assert_eq(t_counter_get(rt, pid, in), 7);
}

Test(gen_registry, stop_unknown_id)
{
    cr_assert_eq(stop(UNKNOWN), REKI_ENOTFOUND);
}

Test(gen_registry, stop_known_id)
{
    reki_pid_t pid;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert(reki_alive(rt, pid));
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(stop(TEST_ID), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    cr_assert_eq(reki_count(reg), 0);
}

Test(gen_registry, count_empty_registry)
{
    cr_assert_eq(reki_count(reg), 0);
}

Test(gen_registry, count_populated_registry)
{
    for (long i = 1; i <= 5; i++) {
        reki_pid_t pid;
        cr_assert_eq(los(i, 0, &pid), REKI_STARTED);
        cr_assert_eq(reki_count(reg), (size_t)i);
    }
}

Test(gen_registry, count_decreases_when_process_stopped)
{
    reki_pid_t pid;
    cr_assert_eq(reki_count(reg), 0);
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(stop(TEST_ID), REKI_OK);
    cr_assert_eq(reki_count(reg), 0);
}

Test(gen_registry, count_decreases_when_process_exits)
{
    reki_pid_t pid;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(t_send(rt, pid, T_STOP, 0), REKI_OK); /* GenServer.stop: a normal exit */
    await_exit(0);
    cr_assert_eq(reki_count(reg), 0);
}

/* reduce/3: an accumulator of {id, pid} pairs, compared after sorting. */
struct pair {
    long id;
    reki_pid_t pid;
};

struct acc {
    int n;
    struct pair items[16];
};

static int collect(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct acc *a = arg;
    char text[32] = {0};
    memcpy(text, key, keylen < 31 ? keylen : 31);
    if (a->n < 16)
        a->items[a->n] = (struct pair){strtol(text + 4, NULL, 10), pid};
    a->n++;
    return 0;
}

static void sort_pairs(struct acc *a)
{
    for (int i = 1; i < a->n; i++)
        for (int j = i; j > 0 && a->items[j - 1].id > a->items[j].id; j--) {
            struct pair t = a->items[j];
            a->items[j] = a->items[j - 1];
            a->items[j - 1] = t;
        }
}

Test(gen_registry, reduce_empty_registry_empty_accumulator)
{
    struct acc a = {0};
    cr_assert_eq(reki_foreach(reg, collect, &a), REKI_OK);
    cr_assert_eq(a.n, 0);
}

Test(gen_registry, reduce_empty_registry_populated_accumulator)
{
    struct acc a = {.n = 3, .items = {{1, 0}, {2, 0}, {3, 0}}};
    cr_assert_eq(reki_foreach(reg, collect, &a), REKI_OK);
    cr_assert_eq(a.n, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(a.items[i].id, i + 1);
}

Test(gen_registry, reduce_populated_registry_empty_accumulator)
{
    struct acc expected = {0}, actual = {0};
    for (long i = 1; i <= 5; i++) {
        reki_pid_t pid;
        cr_assert_eq(los(i, 0, &pid), REKI_STARTED);
        expected.items[expected.n++] = (struct pair){i, pid};
    }
    cr_assert_eq(reki_foreach(reg, collect, &actual), REKI_OK);
    sort_pairs(&actual);
    cr_assert_eq(actual.n, expected.n);
    for (int i = 0; i < expected.n; i++) {
        cr_assert_eq(actual.items[i].id, expected.items[i].id);
        cr_assert_eq(actual.items[i].pid, expected.items[i].pid);
    }
}

Test(gen_registry, reduce_populated_registry_populated_accumulator)
{
    struct acc expected = {.n = 3, .items = {{1, 0}, {2, 0}, {3, 0}}};
    struct acc actual = expected;
    for (long i = 4; i <= 5; i++) {
        reki_pid_t pid;
        cr_assert_eq(los(i, 0, &pid), REKI_STARTED);
        expected.items[expected.n++] = (struct pair){i, pid};
    }
    cr_assert_eq(reki_foreach(reg, collect, &actual), REKI_OK);
    sort_pairs(&actual);
    cr_assert_eq(actual.n, expected.n);
    for (int i = 0; i < expected.n; i++) {
        cr_assert_eq(actual.items[i].id, expected.items[i].id);
        cr_assert_eq(actual.items[i].pid, expected.items[i].pid);
    }
}

Test(gen_registry, registered_process_exit_count_decrements)
{
    reki_pid_t pid;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert(reki_alive(rt, pid));
    cr_assert_eq(reki_count(reg), 1);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    await_exit(0);
    cr_assert_eq(reki_count(reg), 0);
}

Test(gen_registry, registered_process_exit_id_is_removed_from_the_registry)
{
    reki_pid_t pid, got;
    cr_assert_eq(los(TEST_ID, 0, &pid), REKI_STARTED);
    cr_assert_eq(lookup(TEST_ID, &got), REKI_OK);
    cr_assert_eq(got, pid);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    /* No waiting: reki forgets a dead actor at once. */
    cr_assert_eq(lookup(TEST_ID, &got), REKI_ENOTFOUND);
}

Test(gen_registry, stopping_a_registry_exits_all_registered_processes)
{
    reki_pid_t pids[5];
    for (long i = 0; i < 5; i++)
        cr_assert_eq(los(i + 1, 0, &pids[i]), REKI_STARTED);
    for (int i = 0; i < 5; i++)
        cr_assert(reki_alive(rt, pids[i]));
    reki_registry_free(reg);
    reg = NULL;
    for (int i = 0; i < 5; i++)
        cr_assert(!reki_alive(rt, pids[i]));
    cr_assert_eq(t_ldl(&p.terminates), 5);
}

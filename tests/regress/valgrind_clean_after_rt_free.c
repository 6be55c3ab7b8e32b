/*
 * Bug: a program that uses reki and frees everything is not valgrind-clean.
 *
 * reki defers frees with liburcu's call_rcu, which (without a call_rcu_data
 * of the caller's) starts liburcu's default call_rcu worker thread on first
 * use and never joins it.  At exit valgrind reports that thread's TLS block
 * as "possibly lost" (allocate_dtv <- pthread_create <- urcu_bp_get_default_
 * call_rcu_data <- urcu_bp_call_rcu <- reki__proc_retire / inbox_release),
 * which is an error under --errors-for-leak-kinds=definite,possible: the
 * guarantee "leave no memory behind (valgrind and LeakSanitizer clean)"
 * fails for every reki program.
 *
 * This is a plain program run under valgrind by CMake (see CMakeLists.txt):
 * it exercises actors, monitors, an inbox holding messages, a registry, and
 * frees everything; valgrind must find no error and no leak.
 */
#include <stdio.h>
#include <stdlib.h>

#include "reki/reki.h"

static reki_next_t handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    return REKI_CONTINUE;
}

static const reki_behavior_t worker = {.handle = handle, .drop = free};

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &worker, NULL, NULL, out);
}

static void down(reki_pid_t pid, int reason, void *arg)
{
    (void)pid;
    (void)reason;
    (void)arg;
}

static int send_int(reki_rt_t *rt, reki_pid_t to, int v)
{
    int *m = malloc(sizeof *m);
    if (m == NULL)
        return REKI_ENOMEM;
    *m = v;
    int rc = reki_send(rt, to, m);
    if (rc != REKI_OK)
        free(m);
    return rc;
}

int main(void)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_inbox_t *in;
    reki_inbox_opts_t io = {.drop = free};
    if (reki_rt_new(NULL, &rt) != REKI_OK || reki_registry_new(rt, NULL, &reg) != REKI_OK ||
        reki_inbox_new_ex(rt, &io, &in) != REKI_OK)
        return 1;
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        reki_pid_t pid;
        bad |= reki_lookup_or_start(reg, key, (size_t)n, start, NULL, -1, &pid) != REKI_STARTED;
        bad |= reki_monitor(rt, pid, down, NULL) != REKI_OK;
        bad |= send_int(rt, pid, i) != REKI_OK;
        if (i % 3 == 0)
            bad |= reki_kill(rt, pid) != REKI_OK;
        else if (i % 3 == 1)
            bad |= reki_stop(reg, key, (size_t)n) != REKI_OK;
        bad |= send_int(rt, reki_inbox_pid(in), i) != REKI_OK;
    }
    reki_inbox_t *freed;
    bad |= reki_inbox_new(rt, &freed) != REKI_OK;
    reki_inbox_free(freed);
    reki_rt_free(rt); /* frees reg and in too */
    if (bad)
        fprintf(stderr, "a call returned an unexpected code\n");
    return bad;
}

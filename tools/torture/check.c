/*
 * The check at a quiescent point: no torture thread is inside an operation,
 * so once every accepted message is consumed and every exit asked for from
 * inside a handle has reached terminate, nothing changes any more and the
 * registry must agree exactly with the model:
 *  - each key is either registered to the counted actor last initialised for
 *    it, alive, with a live count of 1, or unregistered with a live count of 0;
 *  - no start is running;
 *  - reki_count equals the number of registered keys;
 *  - reki_foreach visits exactly the registered keys, once each, with the
 *    same pids;
 *  - the index agrees: its live count is reki_count, and it holds at least
 *    one entry per registered key and at most one per key of the set (an
 *    entry outlives its actor as FREE and is reused by the key's next start,
 *    or reaped: never a second entry for one key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

struct key_view {
    int rc;
    reki_pid_t pid;
    int live;
    int starting;
    reki_pid_t cur;
    bool alive;
};

static void view_key(struct world *w, unsigned k, struct key_view *v)
{
    v->pid = 0;
    v->rc = reki_lookup(w->reg, w->kbytes[k], w->klen[k], &v->pid);
    v->live = atomic_load(&w->ks[k].live);
    v->starting = atomic_load(&w->ks[k].starting);
    v->cur = atomic_load(&w->ks[k].cur);
    v->alive = v->rc == REKI_OK && reki_alive(w->rt, v->pid);
}

static bool key_settled(const struct key_view *v)
{
    if (v->starting != 0)
        return false;
    if (v->rc == REKI_OK)
        return v->live == 1 && v->cur == v->pid && v->alive;
    return v->rc == REKI_ENOTFOUND && v->live == 0;
}

static unsigned long long consumed(struct world *w)
{
    return atomic_load(&w->handled) + atomic_load(&w->dropped) + atomic_load(&w->received);
}

static bool world_settled(struct world *w)
{
    if (atomic_load(&w->accepted) != consumed(w))
        return false;
    if (atomic_load(&w->exits_asked) != atomic_load(&w->exits_done))
        return false;
    if (!vkeys_settled(w))
        return false;
    for (unsigned k = 0; k < w->nkeys; k++) {
        struct key_view v;
        view_key(w, k, &v);
        if (!key_settled(&v))
            return false;
    }
    return true;
}

static void report_unsettled(struct world *w, unsigned settle_ms)
{
    violation("no quiescence after %u ms: messages accepted %llu, consumed %llu; exits asked "
              "%llu, done %llu",
              settle_ms, (unsigned long long)atomic_load(&w->accepted), consumed(w),
              (unsigned long long)atomic_load(&w->exits_asked),
              (unsigned long long)atomic_load(&w->exits_done));
    vkeys_report(w, "no quiescence");
    for (unsigned k = 0; k < w->nkeys; k++) {
        struct key_view v;
        view_key(w, k, &v);
        if (!key_settled(&v))
            violation("  key %u: lookup %d pid %#llx alive %d; live actors %d, last init "
                      "%#llx, starts running %d",
                      k, v.rc, (unsigned long long)v.pid, v.alive, v.live,
                      (unsigned long long)v.cur, v.starting);
    }
}

struct walk {
    struct world *w;
    const reki_pid_t *expect;
    unsigned char *seen;
    unsigned visited;
};

static int walk_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct walk *wk = arg;
    int k = key_index(key, keylen, wk->w->nkeys);
    if (k < 0) {
        violation("reki_foreach visited a key that was never registered (len %zu)", keylen);
        return 0;
    }
    if (wk->seen[k]++)
        violation("reki_foreach visited key %d twice", k);
    if (wk->expect[k] != pid)
        violation("reki_foreach gave key %d pid %#llx, reki_lookup gives %#llx", k,
                  (unsigned long long)pid, (unsigned long long)wk->expect[k]);
    wk->visited++;
    return 0;
}

static void compare_views(struct world *w)
{
    reki_pid_t *expect = calloc(w->nkeys, sizeof(*expect));
    unsigned char *seen = calloc(w->nkeys, 1);
    if (expect == NULL || seen == NULL)
        abort();
    size_t registered = 0;
    for (unsigned k = 0; k < w->nkeys; k++) {
        if (reki_lookup(w->reg, w->kbytes[k], w->klen[k], &expect[k]) == REKI_OK)
            registered++;
        else
            expect[k] = 0;
    }
    size_t count = reki_count(w->reg);
    if (count != registered)
        violation("reki_count is %zu but %zu keys are registered", count, registered);
    reki_registry_stats_t st;
    if (reki_registry_stats(w->reg, &st) != REKI_OK)
        violation("reki_registry_stats failed");
    else if (st.live != count || st.entries < registered || st.entries > w->nkeys)
        violation("index: %zu live, %zu entries, for %zu registered of %u keys", st.live,
                  st.entries, registered, w->nkeys);
    struct walk wk = {w, expect, seen, 0};
    int rc = reki_foreach(w->reg, walk_fn, &wk);
    /* A churn's check runs while --fail-allocs injects failures. */
    for (int i = 0; i < 100 && t_oom(rc); i++) {
        memset(seen, 0, w->nkeys);
        wk.visited = 0;
        rc = reki_foreach(w->reg, walk_fn, &wk);
    }
    if (t_oom(rc)) {
        free(expect);
        free(seen);
        return;
    }
    if (rc != REKI_OK)
        violation("reki_foreach returned %d (%s)", rc, reki_strerror(rc));
    for (unsigned k = 0; k < w->nkeys; k++)
        if (expect[k] != 0 && !seen[k])
            violation("reki_foreach missed registered key %u", k);
    free(expect);
    free(seen);
}

bool quiescent_check(struct world *w, unsigned settle_ms)
{
    uint64_t deadline = t_now_ms() + settle_ms;
    while (!world_settled(w)) {
        if (t_now_ms() > deadline) {
            report_unsettled(w, settle_ms);
            return false;
        }
        t_sleep_us(200);
    }
    compare_views(w);
    return true;
}

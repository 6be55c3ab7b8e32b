/*
 * Whole registries and runtimes created, used and freed while the rest of
 * the tool runs.  After reki_registry_free returns, every actor registered in
 * it has terminated; after reki_rt_free returns, every actor of the runtime
 * has terminated, every accepted message has been handled or dropped and
 * every monitor has fired (guarantee 7, and the Ordering of reki_rt_free).
 *
 * A "calm" use leaves messages queued when the free begins, so the free
 * itself must drop them.  Handles that call into the registry are used only
 * when the world is settled before the free: reki_registry_free must not run
 * concurrently with calls on its registry.
 */
#include <stdio.h>
#include <stdlib.h>

#include "torture.h"

struct churn {
    struct world *w;
    uint64_t rng;
    bool calm;   /* no exits, messages left queued for the free */
    bool settle; /* the world is settled before the free: any handle kind */
    bool loose;  /* loose actors and inboxes allowed (their runtime dies too) */
    reki_pid_t loose_pids[4];
};

static enum msg_kind churn_kind(struct churn *c, uint64_t r)
{
    static const enum msg_kind calm[] = {M_PLAIN, M_SLOW};
    static const enum msg_kind exits[] = {M_PLAIN, M_SLOW, M_STOP, M_CRASH, M_KILL_SELF};
    static const enum msg_kind any[] = {M_PLAIN,     M_SLOW,   M_STOP,    M_CRASH,
                                        M_KILL_SELF, M_LOOKUP, M_FORWARD, M_STOP_KEY};
    if (c->calm)
        return calm[r % 2];
    if (c->settle)
        return any[r % 8];
    return exits[r % 5];
}

static void churn_send(struct churn *c, reki_pid_t pid, int key, uint64_t r)
{
    struct msg *m = msg_new(c->w, churn_kind(c, r), T_ANON_SENDER, 0, key, pid, r >> 8);
    int rc = msg_send(c->w, pid, m);
    if (rc != REKI_OK) {
        if (rc != REKI_EDEAD && !t_oom(rc))
            violation("churn: reki_send returned %d (%s)", rc, reki_strerror(rc));
        msg_refused(m);
    }
}

static void churn_start(struct churn *c, int k, uint64_t r)
{
    static const enum start_mode calm[] = {S_OK, S_SLOW, S_FAIL, S_INIT_FAIL};
    static const enum start_mode loose[] = {S_OK,      S_SLOW, S_FAIL,      S_INIT_FAIL,
                                            S_REENTER, S_DEAD, S_FAIL_LATE, S_OK};
    enum start_mode mode = c->loose && !c->calm ? loose[r % 8] : calm[r % 4];
    /* keeping only the low bits keeps a slow start short (its sleep is bits 20..) */
    uint64_t bits = (r >> 8) & 0xfffffull;
    reki_pid_t pid = 0;
    checked_los(c->w, k, mode, false, ((r >> 3) & 1) ? -1 : 0, bits, &pid);
}

static void churn_exit(struct churn *c, int k, uint64_t r)
{
    struct world *w = c->w;
    reki_pid_t pid = 0;
    if ((r & 1) && reki_lookup(w->reg, w->kbytes[k], w->klen[k], &pid) == REKI_OK) {
        int rc = reki_kill(w->rt, pid);
        if (rc != REKI_OK && rc != REKI_EDEAD)
            violation("churn: reki_kill returned %d (%s)", rc, reki_strerror(rc));
        return;
    }
    int rc = reki_stop(w->reg, w->kbytes[k], w->klen[k]);
    if (rc != REKI_OK && rc != REKI_ENOTFOUND)
        violation("churn: reki_stop returned %d (%s)", rc, reki_strerror(rc));
}

static void churn_loose(struct churn *c, uint64_t r)
{
    reki_pid_t pid = 0;
    /* one churn in eight carries a dedicated-thread actor */
    int rc = spawn_loose(c->w, (r & 7) == 0, &pid);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("churn: reki_spawn returned %d (%s)", rc, reki_strerror(rc));
        return;
    }
    c->loose_pids[(r >> 3) & 3] = pid;
    for (unsigned i = 0; i < ((r >> 5) & 3); i++)
        churn_send(c, pid, -1, r >> (7 + 4 * i));
    if ((r >> 20) & 1) {
        rc = monitor_pid(c->w, pid);
        if (rc != REKI_OK && rc != REKI_EDEAD && !t_oom(rc))
            violation("churn: reki_monitor returned %d (%s)", rc, reki_strerror(rc));
    }
}

static void churn_op(struct churn *c)
{
    struct world *w = c->w;
    uint64_t r = t_splitmix(&c->rng);
    int k = (int)(r % w->nkeys);
    unsigned what = t_bits(r, 8, 8, 100);
    reki_pid_t pid = 0;
    if (what < 40) {
        churn_start(c, k, r >> 16);
    } else if (what < 75) {
        if (reki_lookup(w->reg, w->kbytes[k], w->klen[k], &pid) == REKI_OK)
            churn_send(c, pid, k, r >> 16);
    } else if (what < 85) {
        if (!c->calm)
            churn_exit(c, k, r >> 16);
    } else if (c->loose) {
        churn_loose(c, r >> 16);
    }
}

static void check_counts(struct world *w, const char *after)
{
    for (unsigned k = 0; k < w->nkeys; k++) {
        int live = atomic_load(&w->ks[k].live);
        if (live != 0)
            violation("after %s: %d actor(s) of key %u have not terminated", after, live, k);
    }
    unsigned long long inits = atomic_load(&w->inits), terms = atomic_load(&w->terms);
    if (inits != terms)
        violation("after %s: %llu registered actors started, %llu terminated", after, inits, terms);
}

static void check_all_done(struct world *w, const char *after)
{
    check_counts(w, after);
    unsigned long long ui = atomic_load(&w->u_inits), ut = atomic_load(&w->u_terms);
    if (ui != ut)
        violation("after %s: %llu loose actors started, %llu terminated", after, ui, ut);
    unsigned long long acc = atomic_load(&w->accepted);
    unsigned long long con =
        atomic_load(&w->handled) + atomic_load(&w->dropped) + atomic_load(&w->received);
    if (acc != con)
        violation("after %s: %llu messages accepted, %llu handled or dropped", after, acc, con);
    unsigned long long ms = atomic_load(&w->mon_set), mf = atomic_load(&w->mon_fired);
    if (ms != mf)
        violation("after %s: %llu monitors set, %llu fired", after, ms, mf);
    unsigned long long ea = atomic_load(&w->exits_asked), ed = atomic_load(&w->exits_done);
    if (ea != ed)
        violation("after %s: %llu exits asked from handle, %llu terminated", after, ea, ed);
}

void churn_registry(reki_rt_t *rt, unsigned nthreads, uint64_t seed)
{
    struct churn c = {.rng = seed};
    uint64_t r = t_splitmix(&c.rng);
    c.calm = r & 1;
    c.settle = !c.calm;
    if ((c.w = world_new(rt, 4, nthreads, false)) == NULL) {
        if (!t_oom_mode)
            violation("registry churn: could not set up a registry");
        return;
    }
    for (unsigned i = 0, n = 4 + t_bits(r, 1, 5, 16); i < n; i++)
        churn_op(&c);
    if (c.settle && !quiescent_check(c.w, 10000)) {
        /* Its actors may still touch the world: leak it, the violation is reported. */
        reki_registry_free(c.w->reg);
        return;
    }
    reki_registry_free(c.w->reg);
    check_counts(c.w, "reki_registry_free");
    if (c.calm) {
        unsigned long long acc = atomic_load(&c.w->accepted);
        unsigned long long con = atomic_load(&c.w->handled) + atomic_load(&c.w->dropped);
        if (acc != con)
            violation("after reki_registry_free: %llu messages accepted, %llu handled or "
                      "dropped",
                      acc, con);
    }
    world_free(c.w);
}

static void churn_inbox(struct churn *c, uint64_t r)
{
    struct world *w = c->w;
    reki_inbox_t *in = NULL;
    reki_inbox_opts_t o = {t_msg_drop};
    int rc = reki_inbox_new_ex(w->rt, &o, &in);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("churn: reki_inbox_new_ex returned %d (%s)", rc, reki_strerror(rc));
        return;
    }
    reki_pid_t pid = reki_inbox_pid(in);
    for (unsigned i = 0; i < (r & 7); i++) {
        struct msg *m = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, -1, pid, 0);
        if ((rc = msg_send(w, pid, m)) != REKI_OK) {
            if (!t_oom(rc))
                violation("churn: send to a live inbox refused");
            msg_refused(m);
        }
    }
    for (unsigned i = 0; i < ((r >> 3) & 3); i++) {
        void *got = NULL;
        rc = reki_inbox_recv(in, &got, 0);
        if (rc == REKI_OK)
            msg_consume(got, &w->received, "reki_inbox_recv");
        else if (rc != REKI_ETIMEDOUT)
            violation("churn: reki_inbox_recv returned %d (%s)", rc, reki_strerror(rc));
    }
    /* Half the inboxes are left for reki_rt_free to free. */
    if ((r >> 5) & 1)
        reki_inbox_free(in);
}

void churn_runtime(unsigned nthreads, uint64_t seed)
{
    struct churn c = {.rng = seed, .loose = true};
    uint64_t r = t_splitmix(&c.rng);
    unsigned mode = (unsigned)(r & 3);
    c.calm = mode == 0 || mode == 3;
    c.settle = mode == 2;
    reki_rt_opts_t opts = {1u + (unsigned)((r >> 2) & 1)};
    reki_rt_t *rt = NULL;
    int rc = reki_rt_new(&opts, &rt);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("runtime churn: reki_rt_new returned %d (%s)", rc, reki_strerror(rc));
        return;
    }
    if ((c.w = world_new(rt, 4, nthreads, false)) == NULL) {
        if (!t_oom_mode)
            violation("runtime churn: could not set up a registry");
        reki_rt_free(rt);
        return;
    }
    for (unsigned i = 0, n = 4 + t_bits(r, 3, 5, 20); i < n; i++)
        churn_op(&c);
    if (c.settle && !quiescent_check(c.w, 10000)) {
        reki_rt_free(rt);
        return;
    }
    /* After the settling: messages left in an inbox are never consumed
     * before it is freed. */
    if ((r >> 8) & 1)
        churn_inbox(&c, r >> 9);
    if (mode >= 2) {
        reki_registry_free(c.w->reg);
        check_counts(c.w, "reki_registry_free");
    }
    uint64_t t0 = t_now_ms();
    reki_rt_free(rt);
    if (t_verbose)
        fprintf(stderr, "[%s] runtime churn mode %u: reki_rt_free took %llu ms\n", t_thread_name(),
                mode, (unsigned long long)(t_now_ms() - t0));
    check_all_done(c.w, "reki_rt_free");
    world_free(c.w);
}

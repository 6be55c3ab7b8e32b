/*
 * One torture thread: draws an operation and its arguments from its own
 * generator (exactly two draws per operation, whatever happens, so that a
 * seed replays the same sequence), runs it against the shared world and
 * checks the result.  Targets of sends, kills, monitors and liveness checks
 * come from a small ring of pids the thread has seen, so many of them are
 * stale by the time they are used: that is the point.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

struct control ctl = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
atomic_ullong inbox_pids[T_MAX_THREADS];

/* Weights out of 10000, in enum op_kind order. */
static const unsigned weights[OP_NKINDS] = {
    2400, /* lookup */
    1900, /* lookup_or_start */
    1800, /* send */
    400,  /* kill */
    400,  /* stop */
    300,  /* monitor */
    300,  /* alive */
    100,  /* foreach */
    200,  /* count */
    400,  /* spawn */
    1000, /* inbox */
    180,  /* bad arguments */
    15,   /* registry churn */
    5,    /* runtime churn */
    600,  /* send_key */
};

static const char *const names[OP_NKINDS] = {
    "lookup", "lookup_or_start", "send",  "kill",    "stop",      "monitor",  "alive",    "foreach",
    "count",  "spawn",           "inbox", "badargs", "reg_churn", "rt_churn", "send_key",
};

const char *op_name(int kind)
{
    return kind >= 0 && kind < OP_NKINDS ? names[kind] : "?";
}

static enum op_kind pick_op(uint64_t r1)
{
    unsigned x = t_bits(r1, 0, 16, 10000);
    for (unsigned k = 0; k < OP_NKINDS; k++) {
        if (x < weights[k])
            return (enum op_kind)k;
        x -= weights[k];
    }
    return OP_LOOKUP;
}

static enum op_result classify(int rc)
{
    switch (rc) {
    case REKI_OK: return RES_OK;
    case REKI_STARTED: return RES_STARTED;
    case REKI_ENOTFOUND: return RES_NOTFOUND;
    case REKI_EDEAD: return RES_EDEAD;
    case REKI_ETIMEDOUT: return RES_TIMEDOUT;
    case T_EFAIL:
    case T_EINIT: return RES_TOOL;
    default: return RES_OTHER;
    }
}

/* ------------------------------------------------------------------ ring -- */

static void ring_put(struct tthread *t, reki_pid_t pid, int key)
{
    struct ring_ent *e = &t->ring[t->ring_pos++ % T_RING];
    /* Loose actors live only while a ring holds them: bounded in number. */
    if (e->key < 0 && e->pid != 0) {
        int rc = reki_kill(t->w->rt, e->pid);
        if (rc == REKI_OK)
            note_exit(t->w, e->pid);
        else if (rc != REKI_EDEAD)
            violation("reki_kill of a loose actor returned %d (%s)", rc, reki_strerror(rc));
    }
    e->pid = pid;
    e->key = key;
}

static struct ring_ent ring_get(struct tthread *t, uint64_t r)
{
    return t->ring[r % T_RING];
}

/* ------------------------------------------------------------ operations -- */

static int op_lookup(struct tthread *t, int k)
{
    struct world *w = t->w;
    reki_pid_t pid = 0;
    uint64_t t0 = t_clock_now();
    int rc = reki_lookup(w->reg, w->kbytes[k], w->klen[k], &pid);
    if (rc == REKI_OK) {
        if (pid == 0)
            violation("reki_lookup of key %d returned OK with pid 0", k);
        check_not_stale(w, pid, t0, "reki_lookup");
        ring_put(t, pid, k);
    } else if (rc != REKI_ENOTFOUND) {
        violation("reki_lookup of key %d returned %d (%s)", k, rc, reki_strerror(rc));
    }
    return rc;
}

static int op_los(struct tthread *t, int k, uint64_t r1, uint64_t r2)
{
    static const enum start_mode modes[16] = {
        S_OK,   S_OK,   S_OK,        S_OK,   S_OK,   S_OK,        S_SLOW,    S_SLOW,
        S_FAIL, S_FAIL, S_FAIL_LATE, S_DEAD, S_DEAD, S_INIT_FAIL, S_REENTER, S_NESTED,
    };
    static const int timeouts[8] = {-1, -1, 0, 1, 2, 5, 20, 100};
    enum start_mode mode = modes[t_bits(r1, 32, 4, 16)];
    int timeout = timeouts[t_bits(r1, 36, 3, 8)];
    bool dedicated = t_bits(r1, 39, 6, 64) == 0;
    reki_pid_t pid = 0;
    int rc = checked_los(t->w, k, mode, dedicated, timeout, r2, &pid);
    if (rc == REKI_OK || rc == REKI_STARTED)
        ring_put(t, pid, k);
    return rc;
}

static const enum msg_kind send_kinds[32] = {
    M_PLAIN, M_PLAIN, M_PLAIN,  M_PLAIN,  M_PLAIN,  M_PLAIN,   M_PLAIN,     M_PLAIN,
    M_PLAIN, M_PLAIN, M_PLAIN,  M_PLAIN,  M_PLAIN,  M_PLAIN,   M_PLAIN,     M_PLAIN,
    M_PLAIN, M_PLAIN, M_STOP,   M_STOP,   M_CRASH,  M_CRASH,   M_KILL_SELF, M_STOP_KEY,
    M_SLOW,  M_SLOW,  M_LOOKUP, M_LOOKUP, M_LOOKUP, M_FORWARD, M_FORWARD,   M_PLAIN,
};

static int send_one(struct tthread *t, struct ring_ent e, enum msg_kind kind, uint64_t arg)
{
    struct world *w = t->w;
    struct msg *m = msg_new(w, kind, t->idx, ++t->seq, e.key, e.pid, arg);
    uint64_t t0 = t_clock_now();
    int rc = msg_send(w, e.pid, m);
    if (rc == REKI_OK) {
        uint64_t stamp = exited_stamp(w, e.pid);
        if (e.pid == 0 || (stamp != 0 && stamp < t0))
            violation("reki_send accepted a message for pid %#llx, exited before the send",
                      (unsigned long long)e.pid);
        return rc;
    }
    if (rc != REKI_EDEAD && !t_oom(rc))
        violation("reki_send to %#llx returned %d (%s)", (unsigned long long)e.pid, rc,
                  reki_strerror(rc));
    msg_refused(m);
    return rc;
}

/* A plain message by timer (0-3 ms; ms 0 is a send), half of them cancelled
 * at once: a cancel that returns the message takes it back from the
 * accounting.  Timed messages have no sender order to keep. */
static int timer_one(struct tthread *t, struct ring_ent e, uint64_t r)
{
    struct world *w = t->w;
    struct msg *m = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, e.key, e.pid, 0);
    uint32_t ms = (uint32_t)(r & 3);
    reki_timer_t id = 99;
    int rc = reki_send_after(w->rt, e.pid, m, ms, &id);
    if (rc != REKI_OK) {
        if (rc != REKI_EDEAD && !t_oom(rc))
            violation("reki_send_after to %#llx returned %d (%s)", (unsigned long long)e.pid, rc,
                      reki_strerror(rc));
        msg_refused(m);
        return rc;
    }
    atomic_fetch_add(&w->accepted, 1);
    if ((ms == 0) != (id == 0))
        violation("reki_send_after of %u ms named timer %llu", ms, (unsigned long long)id);
    if (id != 0 && (r & 4)) {
        void *back = NULL;
        int c = reki_timer_cancel(w->rt, id, (r & 8) ? NULL : &back);
        if (c == REKI_OK && !(r & 8)) {
            if (back != m)
                violation("reki_timer_cancel returned another message");
            atomic_fetch_sub(&w->accepted, 1); /* ours again */
            msg_refused(m);
        } else if (c != REKI_OK && c != REKI_ENOTFOUND) {
            violation("reki_timer_cancel returned %d (%s)", c, reki_strerror(c));
        }
    }
    return REKI_OK;
}

/* A call to an actor that does not reply: it times out (0-1 ms) or sees the
 * target die; *reply says whether the message was taken. */
static int call_one(struct tthread *t, struct ring_ent e, uint64_t r)
{
    struct world *w = t->w;
    struct msg *m = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, e.key, e.pid, 0);
    void *reply = NULL;
    int rc = reki_call(w->rt, e.pid, m, (int)(r & 1), &reply);
    if (rc == REKI_OK || (rc != REKI_ETIMEDOUT && rc != REKI_EDEAD && !t_oom(rc)))
        violation("reki_call to an actor that never replies returned %d (%s)", rc,
                  reki_strerror(rc));
    if (reply == m) {
        msg_refused(m);
    } else if (reply == NULL) {
        atomic_fetch_add(&w->accepted, 1);
    } else {
        violation("reki_call's *reply is neither msg nor NULL");
    }
    return rc == REKI_ETIMEDOUT ? REKI_OK : rc;
}

static int op_send(struct tthread *t, int k, uint64_t r1, uint64_t r2)
{
    struct ring_ent e = ring_get(t, r1 >> 32);
    unsigned how = t_bits(r1, 44, 4, 16);
    if (how < 2)
        return timer_one(t, e, r2);
    if (how == 2)
        return call_one(t, e, r2);
    if ((r1 >> 36) & 1) {
        e.key = k;
        if (op_lookup(t, k) != REKI_OK)
            e.pid = 0; /* exercises sends to the zero pid */
        else
            e.pid = t->ring[(t->ring_pos - 1) % T_RING].pid;
    }
    /* A burst to one target exercises per-sender FIFO order. */
    unsigned burst = 1 + t_bits(r1, 37, 2, 4);
    int rc = REKI_OK;
    for (unsigned i = 0; i < burst; i++) {
        enum msg_kind kind = send_kinds[t_bits(r2, 5 * i, 5, 32)];
        rc = send_one(t, e, kind, r2 >> (20 + i));
        if (rc != REKI_OK)
            break;
    }
    return rc;
}

static int op_kill(struct tthread *t, uint64_t r1)
{
    struct world *w = t->w;
    struct ring_ent e = ring_get(t, r1 >> 32);
    uint64_t t0 = t_clock_now();
    int rc = reki_kill(w->rt, e.pid);
    if (rc == REKI_OK) {
        uint64_t stamp = exited_stamp(w, e.pid);
        if (e.pid == 0 || (stamp != 0 && stamp < t0))
            violation("reki_kill of pid %#llx returned OK, but it had exited before",
                      (unsigned long long)e.pid);
        note_exit(w, e.pid);
        if (reki_alive(w->rt, e.pid))
            violation("pid %#llx alive after reki_kill returned OK", (unsigned long long)e.pid);
    } else if (rc != REKI_EDEAD) {
        violation("reki_kill returned %d (%s)", rc, reki_strerror(rc));
    }
    return rc;
}

static int op_stop(struct tthread *t, int k, uint64_t r1)
{
    struct world *w = t->w;
    reki_pid_t before = 0;
    if ((r1 >> 32) & 1 && reki_lookup(w->reg, w->kbytes[k], w->klen[k], &before) != REKI_OK)
        before = 0;
    int rc = reki_stop(w->reg, w->kbytes[k], w->klen[k]);
    if (rc == REKI_OK) {
        /* The actor seen registered before the stop has exited: either it was
         * the one stopped, or it exited before and another replaced it. */
        if (before != 0) {
            if (reki_alive(w->rt, before))
                violation("pid %#llx registered under key %d alive after reki_stop of "
                          "the key returned OK",
                          (unsigned long long)before, k);
            note_exit(w, before);
        }
    } else if (rc != REKI_ENOTFOUND) {
        violation("reki_stop of key %d returned %d (%s)", k, rc, reki_strerror(rc));
    }
    return rc;
}

static int op_monitor(struct tthread *t, uint64_t r1)
{
    struct ring_ent e = ring_get(t, r1 >> 32);
    uint64_t t0 = t_clock_now();
    int rc = monitor_pid(t->w, e.pid);
    if (rc == REKI_OK) {
        uint64_t stamp = exited_stamp(t->w, e.pid);
        if (e.pid == 0 || (stamp != 0 && stamp < t0))
            violation("reki_monitor of pid %#llx returned OK, but it had exited before",
                      (unsigned long long)e.pid);
    } else if (rc != REKI_EDEAD && !t_oom(rc)) {
        violation("reki_monitor returned %d (%s)", rc, reki_strerror(rc));
    }
    return rc;
}

static int op_alive(struct tthread *t, uint64_t r1)
{
    struct ring_ent e = ring_get(t, r1 >> 32);
    uint64_t t0 = t_clock_now();
    bool alive = reki_alive(t->w->rt, e.pid);
    uint64_t stamp = exited_stamp(t->w, e.pid);
    if (alive && (e.pid == 0 || (stamp != 0 && stamp < t0)))
        violation("reki_alive true for pid %#llx, exited before the call",
                  (unsigned long long)e.pid);
    return alive ? REKI_OK : REKI_EDEAD;
}

struct fe {
    struct tthread *t;
    uint64_t t0;
    unsigned char *seen;
    unsigned visits, stop_after;
};

static int fe_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct fe *f = arg;
    struct world *w = f->t->w;
    int k = key_index(key, keylen, w->nkeys);
    if (k < 0) {
        violation("reki_foreach visited a key never registered (len %zu)", keylen);
        return 0;
    }
    if (f->seen[k]++)
        violation("reki_foreach visited key %d twice in one walk", k);
    check_not_stale(w, pid, f->t0, "reki_foreach");
    if (f->visits % 3 == 0) {
        reki_pid_t again = 0;
        int rc = reki_lookup(w->reg, key, keylen, &again);
        if (rc != REKI_OK && rc != REKI_ENOTFOUND)
            violation("reki_lookup inside reki_foreach returned %d", rc);
    }
    return ++f->visits == f->stop_after ? 7 : 0;
}

static int op_foreach(struct tthread *t, uint64_t r1)
{
    struct world *w = t->w;
    struct fe f = {t, t_clock_now(), calloc(w->nkeys, 1), 0, t_bits(r1, 32, 4, 16)};
    if (f.seen == NULL)
        abort();
    int rc = reki_foreach(w->reg, fe_fn, &f);
    bool stopped = f.stop_after != 0 && f.visits == f.stop_after;
    if (rc != (stopped ? 7 : REKI_OK) && !t_oom(rc))
        violation("reki_foreach returned %d after %u visits (stop asked after %u)", rc, f.visits,
                  f.stop_after);
    if (f.visits > w->nkeys)
        violation("reki_foreach visited %u entries, %u keys exist", f.visits, w->nkeys);
    free(f.seen);
    return rc == 7 ? REKI_OK : rc;
}

static int op_count(struct tthread *t)
{
    size_t n = reki_count(t->w->reg);
    if (n > t->w->nkeys)
        violation("reki_count is %zu with %u keys", n, t->w->nkeys);
    return REKI_OK;
}

static int op_spawn(struct tthread *t, uint64_t r1, uint64_t r2)
{
    reki_pid_t pid = 0;
    bool dedicated = t_bits(r1, 32, 5, 32) == 0;
    int rc = spawn_loose(t->w, dedicated, &pid);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("reki_spawn returned %d (%s)", rc, reki_strerror(rc));
        return rc;
    }
    ring_put(t, pid, -1);
    struct ring_ent e = {pid, -1};
    for (unsigned i = 0; i < t_bits(r1, 37, 2, 4); i++)
        if (send_one(t, e, send_kinds[t_bits(r2, 5 * i, 5, 32)], r2 >> (20 + i)) != REKI_OK)
            break;
    return rc;
}

static int run_op(struct tthread *t, enum op_kind kind, uint64_t r1, uint64_t r2)
{
    int k = (int)t_bits(r1, 16, 16, t->w->nkeys);
    switch (kind) {
    case OP_LOOKUP: return op_lookup(t, k);
    case OP_LOS: return op_los(t, k, r1, r2);
    case OP_SEND: return op_send(t, k, r1, r2);
    case OP_KILL: return op_kill(t, r1);
    case OP_STOP: return op_stop(t, k, r1);
    case OP_MONITOR: return op_monitor(t, r1);
    case OP_ALIVE: return op_alive(t, r1);
    case OP_FOREACH: return op_foreach(t, r1);
    case OP_COUNT: return op_count(t);
    case OP_SPAWN: return op_spawn(t, r1, r2);
    case OP_INBOX: op_inbox(t, r1, r2); return REKI_OK;
    case OP_BADARGS: op_badargs(t, r1); return REKI_OK;
    case OP_REG_CHURN:
        if (ctl.churn)
            churn_registry(t->w->rt, t->w->nthreads, r2);
        return REKI_OK;
    case OP_SEND_KEY: return op_send_key(t, k, r1, r2);
    case OP_RT_CHURN:
        if (ctl.churn)
            churn_runtime(t->w->nthreads, r2);
        return REKI_OK;
    default: return REKI_OK;
    }
}

/* ---------------------------------------------------------------- thread -- */

int tthread_init(struct tthread *t, struct world *w, unsigned idx, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    t->idx = idx;
    t->w = w;
    t->rng = seed ^ (0x9e3779b97f4a7c15ull * (idx + 1u));
    atomic_init(&t->cur_op, -1);
    snprintf(t->name, sizeof(t->name), "t%u", idx);
    for (unsigned i = 0; i < T_RING; i++)
        t->ring[i].key = 0;
    t->in_last_seq = calloc(T_MAX_THREADS + 1u, sizeof(*t->in_last_seq));
    if (t->in_last_seq == NULL)
        return REKI_ENOMEM;
    int rc = reki_inbox_new(w->rt, &t->inbox);
    if (rc != REKI_OK)
        return rc;
    rc = reki_inbox_set_drop(t->inbox, t_msg_drop);
    if (rc != REKI_OK)
        return rc;
    atomic_store(&inbox_pids[idx], reki_inbox_pid(t->inbox));
    return REKI_OK;
}

static void park(void)
{
    pthread_mutex_lock(&ctl.mu);
    ctl.parked++;
    pthread_cond_broadcast(&ctl.cv);
    while (atomic_load(&ctl.pause))
        pthread_cond_wait(&ctl.cv, &ctl.mu);
    ctl.parked--;
    pthread_mutex_unlock(&ctl.mu);
}

void *torture_thread(void *arg)
{
    struct tthread *t = arg;
    t_set_thread_name(t->name);
    while (!atomic_load(&ctl.stop)) {
        if (ctl.ops_limit != 0 && t->opno >= ctl.ops_limit)
            break;
        if (atomic_load(&ctl.pause))
            park();
        uint64_t r1 = t_splitmix(&t->rng);
        uint64_t r2 = t_splitmix(&t->rng);
        enum op_kind kind = pick_op(r1);
        uint64_t began = t_now_ms();
        atomic_store(&t->op_start_ms, began);
        atomic_store(&t->cur_op, (int)kind);
        int rc = run_op(t, kind, r1, r2);
        atomic_store(&t->cur_op, -1);
        uint64_t took = t_now_ms() - began;
        if (took > t->max_ms[kind])
            t->max_ms[kind] = took;
        t->counts[kind][classify(rc)]++;
        t_trace(t->opno, op_name(kind), (int)t_bits(r1, 16, 16, t->w->nkeys), rc);
        t->opno++;
    }
    pthread_mutex_lock(&ctl.mu);
    ctl.done++;
    pthread_cond_broadcast(&ctl.cv);
    pthread_mutex_unlock(&ctl.mu);
    return NULL;
}

/*
 * The tool's actors, messages and monitors, each checking what the library
 * promises about the calls it receives:
 *  - init of a counted actor finds its key's live counter at 0 (one actor per
 *    key), terminate finds it at 1;
 *  - handle is never re-entered, never runs after terminate, gets messages
 *    addressed to this pid, looked up under this actor's key, in send order
 *    per sender;
 *  - terminate runs once, with a reason that matches how the actor ended;
 *  - each message is consumed (handled, dropped or received) exactly once;
 *  - a down function runs once, after terminate, when the pid is dead.
 */
#include <stdlib.h>
#include <string.h>

#include "torture.h"

#define ACTOR_MAGIC 0x41435452u
#define MSG_MAGIC 0x4d534721u
#define MON_MAGIC 0x4d4f4e21u
#define DEAD_MAGIC 0xdeadbeefu

struct actor {
    uint32_t magic;
    struct world *w;
    int key; /* -1 for loose actors */
    reki_pid_t self;
    atomic_int in_handle;
    atomic_int terminated;
    int ending;      /* reason the actor asked for itself, or -1 */
    bool exit_asked; /* counted in w->exits_asked */
    uint64_t *last_seq;
};

/* The actor whose handle this thread is running, if any. */
static _Thread_local struct actor *handling;

bool t_in_own_handle(struct world *w, int key)
{
    return handling != NULL && handling->w == w && handling->key == key;
}

/* -------------------------------------------------------------- messages -- */

struct msg *msg_new(struct world *w, enum msg_kind kind, unsigned sender, uint64_t seq, int key,
                    reki_pid_t to, uint64_t arg)
{
    struct msg *m = malloc(sizeof(*m));
    if (m == NULL)
        abort(); /* the tool's own memory: nothing to check without it */
    m->magic = MSG_MAGIC;
    atomic_init(&m->consumed, 0);
    m->kind = kind;
    m->sender = sender;
    m->seq = seq;
    m->key = key;
    m->to = to;
    m->w = w;
    m->arg = arg;
    return m;
}

/* Claim the message for one consumer; false if it was consumed already. */
static bool msg_claim(struct msg *m, const char *by)
{
    if (m == NULL) {
        violation("%s got a NULL message", by);
        return false;
    }
    if (m->magic != MSG_MAGIC) {
        violation("%s got a message with bad magic %#x (freed or foreign)", by, m->magic);
        return false;
    }
    if (atomic_exchange_explicit(&m->consumed, 1, memory_order_acq_rel) != 0) {
        violation("%s: message %p (seq %llu) consumed twice", by, (void *)m,
                  (unsigned long long)m->seq);
        return false;
    }
    return true;
}

static void msg_release(struct msg *m, atomic_ullong *counter)
{
    atomic_fetch_add(counter, 1);
    m->magic = DEAD_MAGIC;
    free(m);
}

void msg_consume(struct msg *m, atomic_ullong *counter, const char *by)
{
    if (msg_claim(m, by))
        msg_release(m, counter);
}

void msg_refused(struct msg *m)
{
    if (atomic_load(&m->consumed) != 0)
        violation("a message refused by reki_send was also consumed");
    m->magic = DEAD_MAGIC;
    free(m);
}

int msg_send(struct world *w, reki_pid_t to, struct msg *m)
{
    int rc = reki_send(w->rt, to, m);
    if (rc == REKI_OK)
        atomic_fetch_add(&w->accepted, 1);
    return rc;
}

void t_msg_drop(void *msg)
{
    struct msg *m = msg;
    if (msg_claim(m, "drop"))
        msg_release(m, &m->w->dropped);
}

/* ---------------------------------------------------------------- actors -- */

static struct actor *actor_new(struct world *w, int key, reki_pid_t self)
{
    struct actor *a = calloc(1, sizeof(*a));
    uint64_t *seqs = calloc(w->nthreads + 1u, sizeof(*seqs));
    if (a == NULL || seqs == NULL) {
        free(a);
        free(seqs);
        return NULL;
    }
    a->magic = ACTOR_MAGIC;
    a->w = w;
    a->key = key;
    a->self = self;
    a->ending = -1;
    a->last_seq = seqs;
    return a;
}

static void self_send(struct world *w, reki_pid_t self, int key)
{
    struct msg *m = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, key, self, 0);
    int rc = msg_send(w, self, m);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            violation("send to itself from init returned %d (%s)", rc, reki_strerror(rc));
        msg_refused(m);
    }
}

static int init_counted(reki_pid_t self, void *arg, void **state)
{
    const struct spawn_arg *sa = arg;
    struct world *w = sa->w;
    struct actor *a = actor_new(w, sa->key, self);
    if (a == NULL)
        return REKI_ENOMEM;
    struct keystate *ks = &w->ks[sa->key];
    /* acq_rel pairs with terminate's decrement of the previous actor. */
    int prev = atomic_fetch_add_explicit(&ks->live, 1, memory_order_acq_rel);
    if (prev != 0)
        violation("init of pid %#llx for key %d while %d other actor(s) of the key live "
                  "(previous pid %#llx)",
                  (unsigned long long)self, sa->key, prev,
                  (unsigned long long)atomic_load(&ks->cur));
    atomic_store(&ks->cur, self);
    atomic_fetch_add(&w->inits, 1);
    if (sa->self_send)
        self_send(w, self, sa->key);
    *state = a;
    return 0;
}

static int init_loose(reki_pid_t self, void *arg, void **state)
{
    const struct spawn_arg *sa = arg;
    struct actor *a = actor_new(sa->w, -1, self);
    if (a == NULL)
        return REKI_ENOMEM;
    atomic_fetch_add(&sa->w->u_inits, 1);
    if (sa->self_send)
        self_send(sa->w, self, -1);
    *state = a;
    return 0;
}

static int init_broken(reki_pid_t self, void *arg, void **state)
{
    const struct spawn_arg *sa = arg;
    (void)state;
    /* The message must go to drop when spawn fails. */
    self_send(sa->w, self, -1);
    atomic_fetch_add(&sa->w->init_fails, 1);
    return T_EINIT;
}

static bool actor_ok(struct actor *a, const char *by)
{
    if (a == NULL || a->magic != ACTOR_MAGIC) {
        violation("%s called with a bad state %p (magic %#x)", by, (void *)a,
                  a != NULL ? a->magic : 0u);
        return false;
    }
    return true;
}

static void check_msg_for(struct actor *a, struct msg *m)
{
    if (m->to != a->self)
        violation("message for pid %#llx handled by pid %#llx", (unsigned long long)m->to,
                  (unsigned long long)a->self);
    if (m->w != a->w)
        violation("message of another world handled by pid %#llx", (unsigned long long)a->self);
    if (m->key >= 0 && m->key != a->key)
        violation("pid %#llx was found under key %d but was started for key %d",
                  (unsigned long long)a->self, m->key, a->key);
    if (m->sender < a->w->nthreads) {
        if (m->seq <= a->last_seq[m->sender])
            violation("pid %#llx: message seq %llu from t%u handled after seq %llu (FIFO)",
                      (unsigned long long)a->self, (unsigned long long)m->seq, m->sender,
                      (unsigned long long)a->last_seq[m->sender]);
        a->last_seq[m->sender] = m->seq;
    }
}

static void ask_exit(struct actor *a, int reason)
{
    if (a->ending < 0)
        a->ending = reason;
    if (!a->exit_asked) {
        a->exit_asked = true;
        atomic_fetch_add(&a->w->exits_asked, 1);
    }
}

static void handle_lookup(struct actor *a, const struct msg *m)
{
    struct world *w = a->w;
    int k = (int)(m->arg % w->nkeys);
    reki_pid_t pid = 0;
    uint64_t t0 = t_clock_now();
    int rc = reki_lookup(w->reg, w->kbytes[k], w->klen[k], &pid);
    if (rc == REKI_OK)
        check_not_stale(w, pid, t0, "reki_lookup from handle");
    else if (rc != REKI_ENOTFOUND)
        violation("reki_lookup from handle returned %d (%s)", rc, reki_strerror(rc));
    if ((m->arg >> 16) & 1)
        checked_los(w, k, S_OK, false, (int)((m->arg >> 17) & 3), m->arg >> 20, &pid);
}

static void handle_forward(struct actor *a, const struct msg *m)
{
    struct world *w = a->w;
    int k = (int)(m->arg % w->nkeys);
    reki_pid_t pid = 0;
    uint64_t t0 = t_clock_now();
    if (reki_lookup(w->reg, w->kbytes[k], w->klen[k], &pid) != REKI_OK)
        return;
    struct msg *f = msg_new(w, M_PLAIN, T_ANON_SENDER, 0, k, pid, 0);
    int rc = msg_send(w, pid, f);
    if (rc != REKI_OK) {
        if (rc != REKI_EDEAD && !t_oom(rc))
            violation("reki_send from handle returned %d (%s)", rc, reki_strerror(rc));
        msg_refused(f);
    } else if (exited_stamp(w, pid) != 0 && exited_stamp(w, pid) < t0) {
        violation("reki_send accepted a message for pid %#llx, exited before the send",
                  (unsigned long long)pid);
    }
}

static void handle_kill_self(struct actor *a)
{
    int rc = reki_kill(a->w->rt, a->self);
    if (rc == REKI_OK) {
        note_exit(a->w, a->self);
        ask_exit(a, REKI_EXIT_KILLED);
        if (reki_alive(a->w->rt, a->self))
            violation("pid %#llx alive after reki_kill on itself returned OK",
                      (unsigned long long)a->self);
    } else if (rc != REKI_EDEAD) {
        violation("reki_kill on itself returned %d (%s)", rc, reki_strerror(rc));
    }
}

static void handle_stop_key(struct actor *a, const struct msg *m)
{
    struct world *w = a->w;
    int k = a->key >= 0 ? a->key : (int)(m->arg % w->nkeys);
    int rc = reki_stop(w->reg, w->kbytes[k], w->klen[k]);
    if (rc == REKI_OK && a->key >= 0) {
        /* Only this actor can be registered under its key while it runs:
         * a successor starts only after its terminate. */
        note_exit(w, a->self);
        ask_exit(a, REKI_EXIT_SHUTDOWN);
        if (reki_alive(w->rt, a->self))
            violation("pid %#llx alive after reki_stop of its own key returned OK",
                      (unsigned long long)a->self);
    } else if (rc != REKI_OK && rc != REKI_ENOTFOUND) {
        violation("reki_stop from handle returned %d (%s)", rc, reki_strerror(rc));
    }
}

static reki_next_t act(struct actor *a, const struct msg *m)
{
    switch (m->kind) {
    case M_STOP: ask_exit(a, REKI_EXIT_NORMAL); return REKI_STOP;
    case M_CRASH:
        ask_exit(a, REKI_EXIT_ABNORMAL);
        /* Any value other than CONTINUE and STOP is a crash. */
        return (m->arg & 1) ? (reki_next_t)7 : REKI_CRASH;
    case M_KILL_SELF: handle_kill_self(a); return REKI_CONTINUE;
    case M_STOP_KEY: handle_stop_key(a, m); return REKI_CONTINUE;
    case M_SLOW: t_sleep_us(50 + (unsigned)(m->arg % 250)); return REKI_CONTINUE;
    case M_LOOKUP: handle_lookup(a, m); return REKI_CONTINUE;
    case M_FORWARD: handle_forward(a, m); return REKI_CONTINUE;
    default: return REKI_CONTINUE;
    }
}

static reki_next_t handle_any(void *state, void *msg, reki_pid_t self)
{
    struct actor *a = state;
    struct msg *m = msg;
    if (!actor_ok(a, "handle"))
        return REKI_CONTINUE;
    if (self != a->self)
        violation("handle of pid %#llx called with self %#llx", (unsigned long long)a->self,
                  (unsigned long long)self);
    if (atomic_exchange_explicit(&a->in_handle, 1, memory_order_acquire) != 0)
        violation("two handle calls at once for pid %#llx", (unsigned long long)self);
    if (atomic_load(&a->terminated))
        violation("handle called after terminate for pid %#llx", (unsigned long long)self);
    if (!msg_claim(m, "handle")) {
        atomic_store_explicit(&a->in_handle, 0, memory_order_release);
        return REKI_CONTINUE;
    }
    check_msg_for(a, m);
    handling = a;
    reki_next_t next = act(a, m);
    handling = NULL;
    atomic_store_explicit(&a->in_handle, 0, memory_order_release);
    /* Counted last, so that "all accepted messages consumed" also means no
     * handle is still acting on one. */
    msg_release(m, &a->w->handled);
    return next;
}

static bool reason_fits(const struct actor *a, int reason)
{
    switch (a->ending) {
    case -1: /* ended from outside: by reki_kill, reki_stop or a free */
        return reason == REKI_EXIT_KILLED || reason == REKI_EXIT_SHUTDOWN;
    case REKI_EXIT_NORMAL:
    case REKI_EXIT_ABNORMAL:
        /* a kill or stop may have taken effect while the handle ran */
        return reason == a->ending || reason == REKI_EXIT_KILLED || reason == REKI_EXIT_SHUTDOWN;
    default: return reason == a->ending;
    }
}

static void terminate_any(void *state, int reason)
{
    struct actor *a = state;
    if (!actor_ok(a, "terminate"))
        return;
    struct world *w = a->w;
    if (atomic_exchange(&a->terminated, 1) != 0)
        violation("terminate called twice for pid %#llx", (unsigned long long)a->self);
    if (atomic_load_explicit(&a->in_handle, memory_order_acquire) != 0)
        violation("terminate of pid %#llx while its handle runs", (unsigned long long)a->self);
    if (!reason_fits(a, reason))
        violation("terminate of pid %#llx with reason %d, but it asked for %d",
                  (unsigned long long)a->self, reason, a->ending);
    if (reki_alive(w->rt, a->self))
        violation("pid %#llx still alive in its terminate (reason %d, key %d, asked %d)",
                  (unsigned long long)a->self, reason, a->key, a->ending);
    note_exit(w, a->self);
    if (a->key >= 0) {
        /* release pairs with the next init's acq_rel increment. */
        int prev = atomic_fetch_sub_explicit(&w->ks[a->key].live, 1, memory_order_release);
        if (prev != 1)
            violation("terminate of pid %#llx (key %d) found %d live actors of the key",
                      (unsigned long long)a->self, a->key, prev);
        atomic_fetch_add(&w->terms, 1);
    } else {
        atomic_fetch_add(&w->u_terms, 1);
    }
    if (a->exit_asked)
        atomic_fetch_add(&w->exits_done, 1);
    a->magic = DEAD_MAGIC;
    free(a->last_seq);
    free(a);
}

static reki_next_t handle_broken(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    violation("handle called for pid %#llx whose init failed", (unsigned long long)self);
    return REKI_STOP;
}

static void terminate_broken(void *state, int reason)
{
    (void)state;
    violation("terminate called (reason %d) for an actor whose init failed", reason);
}

const reki_behavior_t beh_counted = {init_counted, handle_any, terminate_any, t_msg_drop};
const reki_behavior_t beh_loose = {init_loose, handle_any, terminate_any, t_msg_drop};
const reki_behavior_t beh_broken = {init_broken, handle_broken, terminate_broken, t_msg_drop};

int spawn_counted(struct world *w, int key, bool dedicated, bool self_send_, reki_pid_t *out)
{
    struct spawn_arg sa = {w, key, self_send_};
    reki_spawn_opts_t opts = {.flags = dedicated ? REKI_SPAWN_DEDICATED : 0u};
    return reki_spawn(w->rt, &beh_counted, &sa, &opts, out);
}

int spawn_loose(struct world *w, bool dedicated, reki_pid_t *out)
{
    struct spawn_arg sa = {w, -1, !dedicated};
    reki_spawn_opts_t opts = {.flags = dedicated ? REKI_SPAWN_DEDICATED : 0u};
    return reki_spawn(w->rt, &beh_loose, &sa, &opts, out);
}

/* -------------------------------------------------------------- monitors -- */

struct monrec {
    uint32_t magic;
    struct world *w;
    reki_pid_t pid;
    uint64_t gen;
    uint64_t dropped;
    atomic_int fired;
};

static void down_fn(reki_pid_t pid, int reason, void *arg)
{
    struct monrec *r = arg;
    if (r == NULL || r->magic != MON_MAGIC) {
        violation("down function called with a bad argument (pid %#llx)", (unsigned long long)pid);
        return;
    }
    struct world *w = r->w;
    if (pid != r->pid)
        violation("down function for pid %#llx called with pid %#llx", (unsigned long long)r->pid,
                  (unsigned long long)pid);
    if (atomic_exchange(&r->fired, 1) != 0)
        violation("down function for pid %#llx called twice", (unsigned long long)pid);
    if (reason < REKI_EXIT_NORMAL || reason > REKI_EXIT_SHUTDOWN)
        violation("down function for pid %#llx with reason %d", (unsigned long long)pid, reason);
    if (reki_alive(w->rt, pid))
        violation("down function for pid %#llx while it is alive", (unsigned long long)pid);
    if (w->exited != NULL) {
        /* terminate stamped the pid before returning; trust a miss only if
         * the set was not cleared and dropped nothing since the monitor. */
        uint64_t g1 = pidset_generation(w->exited);
        bool noted = pidset_contains(w->exited, pid);
        uint64_t g2 = pidset_generation(w->exited);
        if (!noted && g1 == r->gen && g2 == r->gen && pidset_dropped(w->exited) == r->dropped)
            violation("down function for pid %#llx before its terminate", (unsigned long long)pid);
    }
    r->magic = DEAD_MAGIC;
    free(r);
    atomic_fetch_add(&w->mon_fired, 1);
}

int monitor_pid(struct world *w, reki_pid_t pid)
{
    struct monrec *r = malloc(sizeof(*r));
    if (r == NULL)
        abort();
    r->magic = MON_MAGIC;
    r->w = w;
    r->pid = pid;
    r->gen = w->exited != NULL ? pidset_generation(w->exited) : 0;
    r->dropped = w->exited != NULL ? pidset_dropped(w->exited) : 0;
    atomic_init(&r->fired, 0);
    /* Counted before the call: the down function may run before it returns. */
    atomic_fetch_add(&w->mon_set, 1);
    int rc = reki_monitor(w->rt, pid, down_fn, r);
    if (rc != REKI_OK) {
        atomic_fetch_sub(&w->mon_set, 1);
        if (atomic_load(&r->fired) != 0)
            violation("reki_monitor returned %d but its down function ran", rc);
        free(r);
    }
    return rc;
}

/*
 * libFuzzer target: the input is decoded into a sequence of API calls on a
 * live runtime and registry, and each result is checked against api.md and
 * a model of the registry.  Keys of every length (0, 1, ..., REKI_KEY_MAX,
 * REKI_KEY_MAX + 1, SIZE_MAX), NULL pointers, timeouts (-1, 0, small, below
 * -1), zero, stale and made-up pids.  A broken contract aborts, which is how
 * libFuzzer learns of it.
 *
 * One runtime lives across inputs (starting one per input would cost more
 * than the input); each input gets a fresh registry, and at its end every
 * actor it started must have terminated and every message it sent must have
 * been handled or dropped exactly once.  A few inputs also create and free a
 * runtime of their own.
 *
 * The model: each key of a small universe is absent, live (registered pid),
 * dying (a stop or crash message is on its way, so the pid may or may not
 * still be registered) or exiting (killed, stopped or terminated: lookups
 * miss it, but a start waits until the key is free, so a short timeout may
 * run out).  Exits observed by terminate are recorded; no call
 * may return or accept a pid whose terminate ran before the call began.
 *
 * An entry outlives its actor (FREE, reused by the key's next start, or
 * reaped): the index never holds more entries than keys were ever started
 * (the universe, plus the data keys an input starts), nor fewer than live
 * actors.  The first input byte chooses whether the input's registries reap
 * every FREE entry at once (REKI_DEBUG_REAP), so that reuse and reaping
 * both meet every call sequence.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reki/reki.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_api: contract broken at line %d: ", __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            abort();                                                             \
        }                                                                        \
    } while (0)

#define NKEYS 8
#define MAX_PIDS 300    /* more than the operations of one input */
#define E_START (-1005) /* a start function's own error */
#define E_INIT (-1006)  /* an init's own error */

/* ------------------------------------------------------------- input -- */

struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t u64(struct in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | u8(in);
    return v;
}

/* -------------------------------------------------------------- state -- */

static reki_rt_t *rt;
static unsigned char keybuf[NKEYS][REKI_KEY_MAX];
static const size_t keylens[NKEYS] = {1, 2, 3, 8, 16, 100, REKI_KEY_MAX - 1, REKI_KEY_MAX};
static unsigned char wild[REKI_KEY_MAX + 1]; /* for bad lengths and data keys */

/* Written by callbacks on the runtime's threads. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static reki_pid_t exited[4096];
static size_t nexited;
static atomic_long inits, terms, handled, dropped, downs, bad;
static atomic_long other_rt_terms; /* terminates of actors of do_rt_churn's runtime */

enum kstate { K_ABSENT, K_LIVE, K_DYING, K_EXITING };

struct model {
    reki_registry_t *reg;
    enum kstate st[NKEYS];
    reki_pid_t pid[NKEYS];
    reki_pid_t pids[MAX_PIDS]; /* every pid seen, for stale calls */
    size_t npids;
    long accepted; /* messages reki_send took */
    long monitors; /* monitors set */
    reki_inbox_t *inbox;
    long inbox_queued;
    bool rt_churned;
    size_t data_starts;      /* lookup_or_start calls on keys outside the universe */
    reki_timer_t timers[64]; /* armed, for cancels (pending or not) */
    int ntimers;
    reki_registry_t *vreg; /* virtual actors (do_vkey), made on first use */
};

/* Exits recorded so far: a call that begins now must not return any of
 * them (exits recorded while it runs may be of pids it legitimately saw). */
static size_t exits_now(void)
{
    pthread_mutex_lock(&mu);
    size_t n = nexited;
    pthread_mutex_unlock(&mu);
    return n;
}

static bool exited_before(reki_pid_t pid, size_t n)
{
    pthread_mutex_lock(&mu);
    bool found = false;
    for (size_t i = 0; i < n && i < nexited && !found; i++)
        found = exited[i] == pid;
    pthread_mutex_unlock(&mu);
    return found;
}

static bool was_exited(reki_pid_t pid)
{
    return exited_before(pid, SIZE_MAX);
}

static void note_exited(reki_pid_t pid)
{
    pthread_mutex_lock(&mu);
    if (nexited < sizeof(exited) / sizeof(exited[0]))
        exited[nexited++] = pid;
    pthread_mutex_unlock(&mu);
}

static void remember(struct model *m, reki_pid_t pid)
{
    CHECK(m->npids < MAX_PIDS, "more pids than operations");
    m->pids[m->npids++] = pid;
}

/* ------------------------------------------------------------- actors -- */

enum { MSG_PLAIN = 1, MSG_STOP = 2, MSG_CRASH = 3 };

struct actor {
    reki_rt_t *rt;
    reki_pid_t self;
};

/* arg: the actor's runtime, NULL for the shared one. */
static int actor_init(reki_pid_t self, void *arg, void **state)
{
    struct actor *a = malloc(sizeof(*a));
    if (a == NULL)
        return REKI_ENOMEM;
    a->rt = arg != NULL ? arg : rt;
    a->self = self;
    *state = a;
    atomic_fetch_add(&inits, 1);
    return 0;
}

static reki_next_t actor_handle(void *state, void *msg, reki_pid_t self)
{
    struct actor *a = state;
    int kind = *(int *)msg;
    if (a->self != self)
        atomic_fetch_add(&bad, 1);
    free(msg);
    atomic_fetch_add(&handled, 1);
    return kind == MSG_STOP ? REKI_STOP : kind == MSG_CRASH ? REKI_CRASH : REKI_CONTINUE;
}

static void actor_terminate(void *state, int reason)
{
    struct actor *a = state;
    if (reason < REKI_EXIT_NORMAL || reason > REKI_EXIT_IDLE || reki_alive(a->rt, a->self))
        atomic_fetch_add(&bad, 1);
    if (a->rt == rt) /* pids of another runtime may have the same values */
        note_exited(a->self);
    else
        atomic_fetch_add(&other_rt_terms, 1);
    free(a);
    atomic_fetch_add(&terms, 1);
}

static void msg_drop(void *msg)
{
    free(msg);
    atomic_fetch_add(&dropped, 1);
}

static int broken_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    (void)arg;
    (void)state;
    return E_INIT;
}

static const reki_behavior_t beh = {actor_init, actor_handle, actor_terminate, msg_drop};
static const reki_behavior_t broken = {broken_init, actor_handle, actor_terminate, msg_drop};

static void down(reki_pid_t pid, int reason, void *arg)
{
    (void)arg;
    if (reason < REKI_EXIT_NORMAL || reason > REKI_EXIT_SHUTDOWN || reki_alive(rt, pid))
        atomic_fetch_add(&bad, 1);
    atomic_fetch_add(&downs, 1);
}

/* ------------------------------------------------------------ starts -- */

enum smode { S_OK, S_FAIL, S_DEAD, S_INIT, S_REENTER, S_DEDICATED, S_NMODES };

struct sctx {
    struct model *m;
    enum smode mode;
    const void *key;
    size_t keylen;
    int ran;
    reki_pid_t made;
};

static int start_fn(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct sctx *s = arg;
    s->ran++;
    CHECK(r == rt, "start got another runtime");
    CHECK(keylen == s->keylen && memcmp(key, s->key, keylen) == 0, "start got another key");
    reki_pid_t seen;
    CHECK(reki_lookup(s->m->reg, key, keylen, &seen) == REKI_ENOTFOUND,
          "lookup hit while the key's start runs");
    reki_spawn_opts_t o = {.flags = s->mode == S_DEDICATED ? REKI_SPAWN_DEDICATED : 0u};
    int rc;
    switch (s->mode) {
    case S_FAIL: return E_START;
    case S_INIT:
        rc = reki_spawn(r, &broken, NULL, NULL, out);
        CHECK(rc == E_INIT, "spawn with a failing init returned %d", rc);
        return rc;
    case S_REENTER: {
        struct sctx inner = {s->m, S_OK, s->key, s->keylen, 0, 0};
        rc = reki_lookup_or_start(s->m->reg, key, keylen, start_fn, &inner, -1, &seen);
        CHECK(rc == REKI_EDEADLK && inner.ran == 0, "re-entrant start returned %d", rc);
        break;
    }
    default: break;
    }
    rc = reki_spawn(r, &beh, NULL, &o, out);
    CHECK(rc == REKI_OK, "spawn in start returned %d", rc);
    s->made = *out;
    if (s->mode == S_DEAD) {
        CHECK(reki_kill(r, *out) == REKI_OK, "kill of a fresh actor failed");
        return 0;
    }
    return 0;
}

/* -------------------------------------------------------------- keys -- */

struct key {
    const void *p;
    size_t len;
    int idx; /* universe index, or -1 */
    bool valid;
};

static int universe_index(const void *p, size_t len)
{
    for (int i = 0; i < NKEYS; i++)
        if (len == keylens[i] && memcmp(p, keybuf[i], len) == 0)
            return i;
    return -1;
}

static struct key pick_key(struct in *in)
{
    static const size_t bad_lens[4] = {0, REKI_KEY_MAX + 1, SIZE_MAX, (size_t)1 << 40};
    uint8_t b = u8(in);
    struct key k = {NULL, 0, -1, false};
    if (b < 200) {
        k.idx = b % NKEYS;
        k.p = keybuf[k.idx];
        k.len = keylens[k.idx];
        k.valid = true;
    } else if (b < 230) {
        /* A key made of input bytes: usually not in the universe. */
        size_t len = 1 + u8(in) % 32;
        for (size_t i = 0; i < len; i++)
            wild[i] = u8(in);
        k.p = wild;
        k.len = len;
        k.idx = universe_index(wild, len);
        k.valid = true;
    } else if (b < 250) {
        k.p = wild;
        k.len = bad_lens[b % 4];
    } else {
        k.p = NULL;
        k.len = 1 + b % 8;
    }
    return k;
}

static int pick_timeout(struct in *in)
{
    static const int t[8] = {-1, 0, 1, 2, 5, -2, -1000, 0};
    return t[u8(in) % 8];
}

static reki_pid_t pick_pid(struct model *m, struct in *in)
{
    uint8_t b = u8(in);
    if (b < 160 && m->npids > 0)
        return m->pids[b % m->npids];
    if (b < 200) {
        int k = b % NKEYS;
        return m->st[k] != K_ABSENT ? m->pid[k] : 0;
    }
    if (b < 230)
        return 0;
    return u64(in); /* made up */
}

/* ---------------------------------------------------------- the calls -- */

static void check_key_result(struct model *m, const struct key *k, int rc, reki_pid_t pid,
                             size_t exits, const char *what)
{
    if (!k->valid) {
        CHECK(rc == REKI_EINVAL, "%s with a bad key returned %d", what, rc);
        return;
    }
    if (rc == REKI_OK)
        CHECK(!exited_before(pid, exits), "%s returned a pid whose terminate had run", what);
    if (k->idx < 0) {
        CHECK(rc == REKI_ENOTFOUND, "%s of a key never used returned %d", what, rc);
        return;
    }
    switch (m->st[k->idx]) {
    case K_ABSENT:
    case K_EXITING:
        CHECK(rc == REKI_ENOTFOUND, "%s of an absent or exited key returned %d", what, rc);
        break;
    case K_LIVE:
        CHECK(rc == REKI_OK && pid == m->pid[k->idx], "%s of a live key returned %d", what, rc);
        break;
    case K_DYING:
        CHECK(rc == REKI_ENOTFOUND || (rc == REKI_OK && pid == m->pid[k->idx]),
              "%s of a dying key returned %d", what, rc);
        break;
    }
}

static void do_lookup(struct model *m, struct in *in)
{
    struct key k = pick_key(in);
    reki_pid_t pid = 0;
    bool null_out = u8(in) == 0xff;
    size_t exits = exits_now();
    int rc = reki_lookup(m->reg, k.p, k.len, null_out ? NULL : &pid);
    if (null_out) {
        CHECK(rc == REKI_EINVAL, "lookup with out NULL returned %d", rc);
        return;
    }
    check_key_result(m, &k, rc, pid, exits, "reki_lookup");
}

static void los_result(struct model *m, const struct key *k, struct sctx *s, int rc, reki_pid_t pid,
                       size_t exits)
{
    int i = k->idx;
    if (s->ran) {
        /* A start runs only once the key's previous actor is gone. */
        CHECK(m->st[i] != K_LIVE, "a start ran for a live key");
        m->st[i] = K_ABSENT;
        switch (s->mode) {
        case S_FAIL: CHECK(rc == E_START, "failed start: lookup_or_start returned %d", rc); return;
        case S_INIT: CHECK(rc == E_INIT, "init crash: lookup_or_start returned %d", rc); return;
        case S_DEAD:
            CHECK(rc == REKI_EDEAD, "dead pid: lookup_or_start returned %d", rc);
            remember(m, s->made);
            return;
        default:
            CHECK(rc == REKI_STARTED && pid == s->made, "start ran: lookup_or_start returned %d",
                  rc);
            remember(m, pid);
            m->st[i] = K_LIVE;
            m->pid[i] = pid;
            return;
        }
    }
    CHECK(rc == REKI_OK || rc == REKI_ETIMEDOUT, "lookup_or_start returned %d, no start ran", rc);
    if (rc == REKI_OK) {
        CHECK(i >= 0 && (m->st[i] == K_LIVE || m->st[i] == K_DYING) && pid == m->pid[i],
              "lookup_or_start returned a pid that is not the key's");
        CHECK(!exited_before(pid, exits), "lookup_or_start returned a pid whose terminate had run");
    } else {
        CHECK(i >= 0 && (m->st[i] == K_DYING || m->st[i] == K_EXITING),
              "lookup_or_start timed out on a key not exiting (state %d)", i >= 0 ? m->st[i] : -1);
    }
}

static void do_los(struct model *m, struct in *in)
{
    struct key k = pick_key(in);
    uint8_t b = u8(in);
    struct sctx s = {m, (enum smode)(b % S_NMODES), k.p, k.len, 0, 0};
    int timeout = pick_timeout(in);
    bool null_start = (b >> 4) == 0xf, null_out = (b >> 4) == 0xe;
    reki_pid_t pid = 0;
    size_t exits = exits_now();
    int rc = reki_lookup_or_start(m->reg, k.p, k.len, null_start ? NULL : start_fn, &s, timeout,
                                  null_out ? NULL : &pid);
    if (!k.valid || null_start || null_out || timeout < -1) {
        CHECK(rc == REKI_EINVAL && s.ran == 0, "lookup_or_start with bad arguments: %d", rc);
        return;
    }
    if (k.idx < 0) {
        /* A data key outside the universe: the model does not track it. */
        m->data_starts++;
        CHECK(rc == REKI_STARTED || rc < 0, "lookup_or_start of a fresh key returned %d", rc);
        if (rc == REKI_STARTED) {
            remember(m, pid);
            CHECK(reki_stop(m->reg, k.p, k.len) == REKI_OK, "stop of a fresh key failed");
        }
        return;
    }
    los_result(m, &k, &s, rc, pid, exits);
}

static void do_stop(struct model *m, struct in *in)
{
    struct key k = pick_key(in);
    int rc = reki_stop(m->reg, k.p, k.len);
    if (!k.valid) {
        CHECK(rc == REKI_EINVAL, "stop with a bad key returned %d", rc);
        return;
    }
    if (k.idx < 0) {
        CHECK(rc == REKI_ENOTFOUND, "stop of a never used key returned %d", rc);
        return;
    }
    enum kstate st = m->st[k.idx];
    CHECK(st != K_LIVE || rc == REKI_OK, "stop of a live key returned %d", rc);
    CHECK(st == K_LIVE || st == K_DYING || rc == REKI_ENOTFOUND,
          "stop of an absent or exited key returned %d", rc);
    CHECK(rc == REKI_OK || rc == REKI_ENOTFOUND, "stop returned %d", rc);
    if (rc == REKI_OK) {
        CHECK(!reki_alive(rt, m->pid[k.idx]), "stopped actor alive");
        m->st[k.idx] = K_EXITING;
    } else if (st == K_DYING) {
        m->st[k.idx] = K_EXITING; /* it has exited; its terminate may be pending */
    }
}

static bool pid_known_live(struct model *m, reki_pid_t pid)
{
    for (int i = 0; i < NKEYS; i++)
        if (m->st[i] == K_LIVE && m->pid[i] == pid)
            return true;
    return false;
}

static void forget(struct model *m, reki_pid_t pid)
{
    for (int i = 0; i < NKEYS; i++)
        if (m->st[i] != K_ABSENT && m->pid[i] == pid)
            m->st[i] = K_EXITING;
}

static void do_kill(struct model *m, struct in *in)
{
    reki_pid_t pid = pick_pid(m, in);
    bool stale = was_exited(pid);
    bool live = pid_known_live(m, pid);
    int rc = reki_kill(u8(in) == 0xff ? NULL : rt, pid);
    if (rc == REKI_EINVAL)
        return;
    CHECK(rc == REKI_OK || rc == REKI_EDEAD, "kill returned %d", rc);
    CHECK(!(stale || pid == 0) || rc == REKI_EDEAD, "kill of a dead pid returned %d", rc);
    CHECK(!live || rc == REKI_OK, "kill of a live registered pid returned %d", rc);
    if (rc == REKI_OK) {
        CHECK(!reki_alive(rt, pid), "killed pid alive");
        forget(m, pid);
    }
}

static void do_send(struct model *m, struct in *in)
{
    reki_pid_t pid = pick_pid(m, in);
    uint8_t b = u8(in);
    int kind = 1 + b % 3;
    bool to_inbox = m->inbox != NULL && (b & 0x80);
    if (to_inbox)
        pid = reki_inbox_pid(m->inbox);
    bool stale = was_exited(pid);
    bool live = pid_known_live(m, pid);
    int *msg = malloc(sizeof(*msg));
    CHECK(msg != NULL, "out of memory");
    *msg = kind;
    int rc = reki_send(rt, pid, msg);
    CHECK(rc == REKI_OK || rc == REKI_EDEAD, "send returned %d", rc);
    CHECK(!(stale || pid == 0) || rc == REKI_EDEAD, "send to a dead pid returned %d", rc);
    CHECK(!live || rc == REKI_OK, "send to a live registered pid returned %d", rc);
    if (rc != REKI_OK) {
        free(msg);
        return;
    }
    m->accepted++;
    m->inbox_queued += to_inbox;
    if (kind != MSG_PLAIN)
        for (int i = 0; i < NKEYS; i++)
            if (m->st[i] == K_LIVE && m->pid[i] == pid)
                m->st[i] = K_DYING;
}

static void do_alive_monitor(struct model *m, struct in *in)
{
    reki_pid_t pid = pick_pid(m, in);
    bool stale = was_exited(pid) || pid == 0;
    bool live = pid_known_live(m, pid);
    bool alive = reki_alive(rt, pid);
    CHECK(!(stale && alive), "reki_alive true for a dead pid");
    CHECK(!live || alive, "reki_alive false for a live registered pid");
    CHECK(!reki_alive(NULL, pid), "reki_alive(NULL) true");
    uint8_t b = u8(in);
    int rc = reki_monitor(b == 0xff ? NULL : rt, pid, b == 0xfe ? NULL : down, NULL);
    if (b >= 0xfe) {
        CHECK(rc == REKI_EINVAL, "monitor with NULL returned %d", rc);
        return;
    }
    CHECK(rc == REKI_OK || rc == REKI_EDEAD, "monitor returned %d", rc);
    CHECK(!stale || rc == REKI_EDEAD, "monitor of a dead pid returned %d", rc);
    CHECK(!live || rc == REKI_OK, "monitor of a live registered pid returned %d", rc);
    if (rc == REKI_OK)
        m->monitors++;
}

static void do_spawn(struct model *m, struct in *in)
{
    uint8_t b = u8(in);
    reki_spawn_opts_t o = {b & 0x81u}; /* 0x80: an unknown flag */
    const reki_behavior_t *which = (b & 2) ? &broken : &beh;
    reki_pid_t pid = 0;
    int rc = reki_spawn(rt, which, NULL, (b & 4) ? NULL : &o, &pid);
    if (!(b & 4) && (b & 0x80)) {
        CHECK(rc == REKI_EINVAL && pid == 0, "spawn with unknown flags returned %d", rc);
        return;
    }
    if (which == &broken) {
        CHECK(rc == E_INIT && pid == 0, "spawn with failing init returned %d", rc);
        return;
    }
    CHECK(rc == REKI_OK && pid != 0, "spawn returned %d", rc);
    remember(m, pid);
    /* Loose actors do not outlive the input: each is killed now or later. */
    if (b & 8)
        CHECK(reki_kill(rt, pid) == REKI_OK, "kill of a fresh actor failed");
}

struct walk {
    struct model *m;
    unsigned seen, stop_after;
    size_t exits;
};

static int walk_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct walk *w = arg;
    int i = universe_index(key, keylen);
    CHECK(i >= 0 && (w->m->st[i] == K_LIVE || w->m->st[i] == K_DYING) && w->m->pid[i] == pid,
          "foreach visited an entry the model does not have");
    CHECK(!exited_before(pid, w->exits), "foreach visited a pid whose terminate had run");
    return ++w->seen == w->stop_after ? 9 : 0;
}

static void do_count_foreach(struct model *m, struct in *in)
{
    size_t live = 0, dying = 0;
    for (int i = 0; i < NKEYS; i++) {
        live += m->st[i] == K_LIVE;
        dying += m->st[i] == K_DYING;
    }
    size_t c = reki_count(m->reg);
    CHECK(c >= live && c <= live + dying, "count %zu, model %zu live %zu dying", c, live, dying);
    CHECK(reki_count(NULL) == 0, "count(NULL) not 0");
    uint8_t b = u8(in);
    struct walk w = {m, 0, b % 4, exits_now()};
    int rc = reki_foreach(m->reg, b == 0xff ? NULL : walk_fn, &w);
    if (b == 0xff) {
        CHECK(rc == REKI_EINVAL, "foreach with fn NULL returned %d", rc);
        return;
    }
    CHECK(rc == (w.stop_after != 0 && w.seen == w.stop_after ? 9 : REKI_OK), "foreach returned %d",
          rc);
    reki_registry_stats_t st;
    CHECK(reki_registry_stats(m->reg, &st) == REKI_OK, "registry_stats failed");
    CHECK(st.entries >= live && st.entries <= NKEYS + m->data_starts,
          "index holds %zu entries: %zu live keys, %d keys and %zu data keys started", st.entries,
          live, NKEYS, m->data_starts);
    CHECK(st.capacity >= 64 && (st.capacity & (st.capacity - 1)) == 0, "capacity %zu", st.capacity);
    CHECK(reki_registry_stats(NULL, &st) == REKI_EINVAL, "registry_stats(NULL)");
    CHECK(w.seen >= (w.stop_after != 0 && w.stop_after < live ? w.stop_after : live),
          "foreach missed live entries");
}

static long inbox_received;

static void do_inbox(struct model *m, struct in *in)
{
    uint8_t b = u8(in);
    void *msg = NULL;
    int rc;
    if (m->inbox == NULL) {
        reki_inbox_opts_t o = {msg_drop};
        rc = (b & 1) ? reki_inbox_new_ex(rt, &o, &m->inbox) : reki_inbox_new(rt, &m->inbox);
        CHECK(rc == REKI_OK, "inbox_new returned %d", rc);
        if (!(b & 1))
            CHECK(reki_inbox_set_drop(m->inbox, msg_drop) == REKI_OK, "set_drop failed");
        return;
    }
    switch (b % 4) {
    case 0: {
        /* -1 only when a message is queued: nobody else would send one. */
        static const int t[4] = {0, 1, -2, -1000};
        int timeout = m->inbox_queued > 0 && (b & 8) ? -1 : t[u8(in) % 4];
        rc = reki_inbox_recv(m->inbox, (b & 4) ? NULL : &msg, timeout);
        if ((b & 4) || timeout < -1) {
            CHECK(rc == REKI_EINVAL, "inbox_recv with bad arguments returned %d", rc);
            return;
        }
        CHECK(rc == (m->inbox_queued > 0 ? REKI_OK : REKI_ETIMEDOUT), "inbox_recv returned %d", rc);
        if (rc == REKI_OK) {
            free(msg);
            inbox_received++;
            m->inbox_queued--;
        }
        return;
    }
    case 1: {
        reki_pid_t pid = reki_inbox_pid(m->inbox);
        reki_inbox_free(m->inbox);
        m->inbox = NULL;
        m->inbox_queued = 0;
        CHECK(!reki_alive(rt, pid), "freed inbox alive");
        int probe = 0;
        CHECK(reki_send(rt, pid, &probe) == REKI_EDEAD, "send to a freed inbox accepted");
        return;
    }
    default: {
        int *one = malloc(sizeof(*one));
        CHECK(one != NULL, "out of memory");
        *one = MSG_PLAIN;
        CHECK(reki_send(rt, reki_inbox_pid(m->inbox), one) == REKI_OK, "send to inbox refused");
        m->accepted++;
        m->inbox_queued++;
        return;
    }
    }
}

/* Timers to actors (never to the inbox: its model counts what it can
 * receive now).  A cancel that returns the message takes it out of the
 * accounting; one with msg NULL hands it to drop. */
static void do_timer(struct model *m, struct in *in)
{
    uint8_t b = u8(in);
    if ((b & 3) == 3 && m->ntimers > 0) {
        reki_timer_t t = m->timers[u8(in) % m->ntimers];
        void *msg = NULL;
        int rc = reki_timer_cancel(rt, t, (b & 4) ? NULL : &msg);
        CHECK(rc == REKI_OK || rc == REKI_ENOTFOUND, "timer_cancel returned %d", rc);
        if (rc == REKI_OK) {
            CHECK(reki_timer_cancel(rt, t, NULL) == REKI_ENOTFOUND, "a timer cancelled twice");
            if (!(b & 4)) {
                CHECK(msg != NULL && *(int *)msg == MSG_PLAIN, "cancel returned another message");
                free(msg);
                m->accepted--;
            }
        }
        return;
    }
    if (b == 0xfe) {
        int x = 0;
        CHECK(reki_send_after(NULL, 1, &x, 1, NULL) == REKI_EINVAL, "send_after rt NULL");
        CHECK(reki_timer_cancel(rt, 0, NULL) == REKI_EINVAL, "timer_cancel 0");
        CHECK(reki_timer_cancel(NULL, 1, NULL) == REKI_EINVAL, "timer_cancel rt NULL");
        return;
    }
    reki_pid_t pid = pick_pid(m, in);
    if (m->inbox != NULL && pid == reki_inbox_pid(m->inbox))
        return;
    static const uint32_t delays[4] = {0, 1, 3, 60000};
    uint32_t ms = delays[(b >> 3) % 4];
    bool stale = was_exited(pid);
    int *msg = malloc(sizeof(*msg));
    CHECK(msg != NULL, "out of memory");
    *msg = MSG_PLAIN;
    reki_timer_t t = 99;
    int rc = reki_send_after(rt, pid, msg, ms, &t);
    CHECK(rc == REKI_OK || rc == REKI_EDEAD, "send_after returned %d", rc);
    CHECK(!(stale || pid == 0) || rc == REKI_EDEAD, "send_after to a dead pid returned %d", rc);
    if (rc != REKI_OK) {
        free(msg);
        return;
    }
    m->accepted++;
    CHECK(ms == 0 ? t == 0 : t != 0, "timer id %llu for %u ms", (unsigned long long)t, ms);
    if (t != 0 && m->ntimers < 64)
        m->timers[m->ntimers++] = t;
}

/* Calls to actors that never reply: each ends by timeout or the target's
 * death, and *reply says whether the message was taken. */
static void do_call(struct model *m, struct in *in)
{
    uint8_t b = u8(in);
    reki_pid_t pid = pick_pid(m, in);
    if (m->inbox != NULL && pid == reki_inbox_pid(m->inbox))
        return;
    int x = 0;
    CHECK(reki_reply(rt, pid, &x) == (pid == 0 ? REKI_EINVAL : REKI_EDEAD),
          "reply to an actor's pid accepted");
    if (b & 0x80) {
        void *r;
        CHECK(reki_call(rt, pid, &x, -2, &r) == REKI_EINVAL, "call with timeout -2");
        CHECK(reki_call(rt, pid, &x, 0, NULL) == REKI_EINVAL, "call with reply NULL");
        return;
    }
    int *msg = malloc(sizeof(*msg));
    CHECK(msg != NULL, "out of memory");
    *msg = MSG_PLAIN;
    void *reply = (void *)&x;
    int rc = reki_call(rt, pid, msg, b & 1, &reply);
    CHECK(rc == REKI_ETIMEDOUT || rc == REKI_EDEAD, "call returned %d", rc);
    CHECK(reply == msg || reply == NULL, "call's *reply is neither msg nor NULL");
    CHECK(rc != REKI_ETIMEDOUT || reply == NULL, "timed out but msg not taken");
    if (reply == msg)
        free(msg);
    else
        m->accepted++;
    CHECK(reki_caller() == 0, "a plain thread has a caller");
}

/* Virtual actors: reki_send_key and reki_await on a registry with a start,
 * passivation (1 ms) and TRANSIENT restarts.  Every message accepted by key
 * is handled or dropped (counted with the others at finish). */
static int vstart_fn(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(r, &beh, NULL, NULL, out);
}

static void do_vkey(struct model *m, struct in *in)
{
    if (m->vreg == NULL) {
        reki_registry_opts_t o = {0};
        o.start = vstart_fn;
        o.idle_ms = 1;
        o.restart = REKI_RESTART_TRANSIENT;
        o.max_restarts = 2;
        o.restart_period_ms = 50;
        o.drop = msg_drop;
        CHECK(reki_registry_new(rt, &o, &m->vreg) == REKI_OK, "virtual registry_new failed");
    }
    struct key k = pick_key(in);
    uint8_t b = u8(in);
    if (b & 0x80) {
        reki_pid_t pid = 0;
        int rc = reki_await(m->vreg, k.p, k.len, b & 1, &pid);
        if (!k.valid)
            CHECK(rc == REKI_EINVAL, "await with a bad key returned %d", rc);
        else
            CHECK(rc == REKI_OK || rc == REKI_ETIMEDOUT, "await returned %d", rc);
        CHECK(rc != REKI_OK || pid != 0, "await returned pid 0");
        return;
    }
    int *msg = malloc(sizeof(*msg));
    CHECK(msg != NULL, "out of memory");
    *msg = 1 + b % 3;
    int rc = reki_send_key(m->vreg, k.p, k.len, msg);
    if (!k.valid)
        CHECK(rc == REKI_EINVAL, "send_key with a bad key returned %d", rc);
    else
        CHECK(rc == REKI_OK, "send_key returned %d", rc);
    if (rc != REKI_OK) {
        free(msg);
        return;
    }
    m->accepted++;
}

static void do_rt_churn(struct model *m, struct in *in)
{
    if (m->rt_churned)
        return; /* a runtime costs milliseconds: one per input */
    m->rt_churned = true;
    static const unsigned workers[4] = {1, 2, 0, 1025};
    reki_rt_opts_t o = {workers[u8(in) % 4]};
    reki_rt_t *r = NULL;
    int rc = reki_rt_new(&o, &r);
    if (o.workers > 1024) {
        CHECK(rc == REKI_EINVAL && r == NULL, "rt_new with 1025 workers returned %d", rc);
        return;
    }
    CHECK(rc == REKI_OK, "rt_new returned %d", rc);
    reki_registry_t *reg;
    CHECK(reki_registry_new(r, NULL, &reg) == REKI_OK, "registry_new failed");
    reki_pid_t pid;
    long before = atomic_load(&other_rt_terms);
    CHECK(reki_spawn(r, &beh, r, NULL, &pid) == REKI_OK, "spawn failed");
    int *msg = malloc(sizeof(*msg));
    CHECK(msg != NULL, "out of memory");
    *msg = MSG_PLAIN;
    CHECK(reki_send(r, pid, msg) == REKI_OK, "send failed");
    m->accepted++;
    if (u8(in) & 1)
        reki_registry_free(reg);
    reki_rt_free(r);
    CHECK(atomic_load(&other_rt_terms) == before + 1, "rt_free returned before terminate ran");
}

static void do_misc(struct model *m, struct in *in)
{
    int code = (int)u64(in);
    CHECK(reki_strerror(code) != NULL, "strerror NULL");
    reki_pid_t pid;
    int x = 0;
    CHECK(reki_send(NULL, pick_pid(m, in), &x) == REKI_EINVAL, "send rt NULL");
    CHECK(reki_spawn(rt, NULL, NULL, NULL, &pid) == REKI_EINVAL, "spawn b NULL");
    CHECK(reki_spawn(rt, &beh, NULL, NULL, NULL) == REKI_EINVAL, "spawn out NULL");
    CHECK(reki_registry_new(NULL, NULL, NULL) == REKI_EINVAL, "registry_new NULL");
    CHECK(reki_inbox_new(rt, NULL) == REKI_EINVAL, "inbox_new out NULL");
    CHECK(reki_inbox_pid(NULL) == 0, "inbox_pid(NULL)");
    CHECK(reki_rt_new(NULL, NULL) == REKI_EINVAL, "rt_new out NULL");
    /* Any capacity: refused beyond REKI_REGISTRY_CAPACITY_MAX, never a hang. */
    reki_registry_opts_t o = {.capacity = (size_t)u64(in)};
    if (o.capacity <= REKI_REGISTRY_CAPACITY_MAX)
        o.capacity &= 0xfff; /* an honoured capacity, kept small: inputs stay fast */
    reki_registry_t *r = NULL;
    int rc = reki_registry_new(rt, &o, &r);
    if (o.capacity > REKI_REGISTRY_CAPACITY_MAX)
        CHECK(rc == REKI_EINVAL && r == NULL, "capacity %zu accepted (%d)", o.capacity, rc);
    else
        CHECK(rc == REKI_OK, "capacity %zu refused (%d)", o.capacity, rc);
    reki_registry_free(r);
}

/* Wait (bounded) until every dying or exiting key's actor has terminated. */
static void settle(struct model *m)
{
    for (int i = 0; i < NKEYS; i++) {
        if (m->st[i] != K_DYING && m->st[i] != K_EXITING)
            continue;
        for (int spin = 0; spin < 20000 && !was_exited(m->pid[i]); spin++) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        CHECK(was_exited(m->pid[i]), "an actor sent a stop message never terminated");
        /* Its terminate ran, but the key frees only after it returned: a
         * start may still wait a little. */
        m->st[i] = K_EXITING;
    }
}

static void replace_registry(struct model *m)
{
    /* Only registered actors are waited for: let the others finish first. */
    settle(m);
    reki_registry_free(m->reg);
    for (int i = 0; i < NKEYS; i++)
        if (m->st[i] == K_LIVE)
            CHECK(was_exited(m->pid[i]), "registry_free returned before terminate ran");
    memset(m->st, 0, sizeof(m->st));
    CHECK(reki_registry_new(rt, NULL, &m->reg) == REKI_OK, "registry_new failed");
}

/* -------------------------------------------------------------- entry -- */

static void setup(void)
{
    for (int i = 0; i < NKEYS; i++)
        for (size_t j = 0; j < keylens[i]; j++)
            keybuf[i][j] = (unsigned char)('a' + (i * 7 + j) % 26);
    reki_rt_opts_t o = {2};
    CHECK(reki_rt_new(&o, &rt) == REKI_OK, "rt_new failed");
}

static void finish(struct model *m)
{
    reki_inbox_free(m->inbox);
    reki_registry_free(m->vreg);
    reki_registry_free(m->reg);
    for (size_t i = 0; i < m->npids; i++)
        reki_kill(rt, m->pids[i]);
    /* Every actor of this input terminates, every message is consumed. */
    for (int spin = 0; spin < 50000; spin++) {
        if (atomic_load(&inits) == atomic_load(&terms) &&
            atomic_load(&handled) + atomic_load(&dropped) + inbox_received == m->accepted &&
            atomic_load(&downs) == m->monitors)
            break;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(&inits) == atomic_load(&terms), "%ld actors started, %ld terminated",
          atomic_load(&inits), atomic_load(&terms));
    CHECK(atomic_load(&handled) + atomic_load(&dropped) + inbox_received == m->accepted,
          "%ld messages accepted, %ld handled, %ld dropped, %ld received", m->accepted,
          atomic_load(&handled), atomic_load(&dropped), inbox_received);
    CHECK(atomic_load(&downs) == m->monitors, "%ld monitors set, %ld fired", m->monitors,
          atomic_load(&downs));
    CHECK(atomic_load(&bad) == 0, "a callback saw its actor alive after exit, or a bad reason");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    struct in in = {data, size};
    struct model m = {0};
    atomic_store(&inits, 0);
    atomic_store(&terms, 0);
    atomic_store(&handled, 0);
    atomic_store(&dropped, 0);
    atomic_store(&downs, 0);
    inbox_received = 0;
    nexited = 0;
    setenv("REKI_DEBUG_REAP", in.n > 0 && (in.p[0] & 0x80) ? "1" : "0", 1);
    CHECK(reki_registry_new(rt, NULL, &m.reg) == REKI_OK, "registry_new failed");
    for (unsigned ops = 0; in.n > 0 && ops < 256; ops++) {
        switch (u8(&in) % 16) {
        case 0:
        case 1: do_lookup(&m, &in); break;
        case 2:
        case 3: do_los(&m, &in); break;
        case 4: do_stop(&m, &in); break;
        case 5: do_kill(&m, &in); break;
        case 6: do_send(&m, &in); break;
        case 7: do_alive_monitor(&m, &in); break;
        case 8: do_spawn(&m, &in); break;
        case 9: do_count_foreach(&m, &in); break;
        case 10: do_inbox(&m, &in); break;
        case 11: settle(&m); break;
        case 12: (u8(&in) & 1) ? replace_registry(&m) : do_rt_churn(&m, &in); break;
        case 13: (u8(&in) & 1) ? do_vkey(&m, &in) : do_misc(&m, &in); break;
        case 14: do_timer(&m, &in); break;
        case 15: do_call(&m, &in); break;
        default: do_misc(&m, &in); break;
        }
    }
    finish(&m);
    return 0;
}
